//! The audit log, as kube-apiserver writes it (`--audit-policy-file`, `--audit-log-path`): an
//! `audit.k8s.io/v1` Policy decides per request at what level it is recorded, each request's
//! stages become `Event`s, and one writer thread appends them as JSON lines, rotating the file
//! by size.
//!
//! Request handling never waits for the disk: events go through a bounded channel, and when it
//! is full they are dropped and counted (`apiserver_audit_error_total{plugin="buffered"}`), as
//! kube-apiserver's buffered backend does.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method};
use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::auth::{Attributes, Decision, UserInfo};
use crate::error::ApiError;

/// The response header that carries a request's audit ID (and the request header a client may
/// set it with).
pub const AUDIT_ID_HEADER: &str = "audit-id";
/// The annotation authorization leaves on every event: `allow` or `forbid`.
pub const DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";
/// The authorizers' reason for their decision.
pub const REASON_ANNOTATION: &str = "authorization.k8s.io/reason";

/// Events waiting for the writer before new ones are dropped (kube-apiserver's default
/// `--audit-log-batch-buffer-size`).
pub const DEFAULT_BUFFER_SIZE: usize = 10_000;
/// The log is rotated at this size when `--audit-log-maxsize` is 0, as kube-apiserver's log
/// library does.
const DEFAULT_MAX_SIZE_MB: u64 = 100;
/// Longer User-Agents are cut, with this suffix, as kube-apiserver cuts them.
const MAX_USER_AGENT: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Levels and stages.

/// How much of a request is recorded. Ordered: each level records what the ones before do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

const LEVELS: [(&str, Level); 4] = [
    ("None", Level::None),
    ("Metadata", Level::Metadata),
    ("Request", Level::Request),
    ("RequestResponse", Level::RequestResponse),
];

/// When in a request's life an event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

const STAGES: [(&str, Stage); 4] = [
    ("RequestReceived", Stage::RequestReceived),
    ("ResponseStarted", Stage::ResponseStarted),
    ("ResponseComplete", Stage::ResponseComplete),
    ("Panic", Stage::Panic),
];

// ---------------------------------------------------------------------------------------------
// The policy file.

/// Lists in a policy may be written as `null` (an empty YAML key): that is an empty list.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyFile {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    rules: Vec<RuleFile>,
    #[serde(default, deserialize_with = "nullable")]
    omit_stages: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    omit_managed_fields: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleFile {
    #[serde(default, deserialize_with = "nullable")]
    level: String,
    #[serde(default, deserialize_with = "nullable")]
    users: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    user_groups: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    verbs: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    resources: Vec<GroupResources>,
    #[serde(default, deserialize_with = "nullable")]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs", deserialize_with = "nullable")]
    non_resource_urls: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

/// Resources of one API group a rule matches (`pods`, `pods/log`, `*`, `*/status`,
/// `pods/*`), optionally only those with the given names.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default, deserialize_with = "nullable")]
    pub group: String,
    #[serde(default, deserialize_with = "nullable")]
    pub resources: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub resource_names: Vec<String>,
}

/// One rule of a policy; the first that matches a request sets its level.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub level: Option<Level>,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<String>,
    pub non_resource_urls: Vec<String>,
    /// The rule's own stages and the policy's.
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: Option<bool>,
}

/// A validated audit policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

/// What the policy says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestConfig {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

/// Why a policy file was refused; the apiserver does not start with one.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    // The cause is in the message, as kube-apiserver words it, rather than a chained source
    // that error reports would print twice.
    #[error("loading audit policy file: failed to read file path {path:?}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("loading audit policy file: {message}: from file {path}")]
    Invalid { path: PathBuf, message: String },
}

/// A field error, worded as Kubernetes' `field.Error`.
fn invalid(field: &str, value: &str, detail: &str) -> String {
    format!("{field}: Invalid value: {value}: {detail}")
}

fn quoted_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", items.join(", "))
}

fn parse_stages(names: &[String], field: &str, errs: &mut Vec<String>) -> Vec<Stage> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match STAGES.iter().find(|(n, _)| n == name) {
            Some((_, s)) => out.push(*s),
            None => errs.push(invalid(
                &format!("{field}[{i}]"),
                &format!("{name:?}"),
                "allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic",
            )),
        }
    }
    out
}

fn union_stages(a: &[Stage], b: &[Stage]) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::new();
    for s in a.iter().chain(b) {
        if !out.contains(s) {
            out.push(*s);
        }
    }
    out
}

fn validate_rule(r: &RuleFile, p: &str, errs: &mut Vec<String>) -> Option<Level> {
    let level = match LEVELS.iter().find(|(n, _)| *n == r.level) {
        Some((_, l)) => Some(*l),
        None if r.level.is_empty() => {
            errs.push(format!("{p}.level: Required value"));
            None
        }
        None => {
            errs.push(format!(
                "{p}.level: Unsupported value: {:?}: supported values: \"None\", \"Metadata\", \"Request\", \"RequestResponse\"",
                r.level
            ));
            None
        }
    };
    for (i, url) in r.non_resource_urls.iter().enumerate() {
        if url == "*" {
            continue;
        }
        let field = format!("{p}.nonResourceURLs[{i}]");
        if !url.starts_with('/') {
            errs.push(invalid(
                &field,
                &format!("{url:?}"),
                "non-resource URL rules must begin with a '/' character",
            ));
        }
        let last = url.chars().last().map_or(0, char::len_utf8);
        if url[..url.len() - last].contains('*') {
            errs.push(invalid(
                &field,
                &format!("{url:?}"),
                "non-resource URL wildcards '*' must be the final character of the rule",
            ));
        }
    }
    for gr in &r.resources {
        if !gr.group.is_empty() {
            let msgs = skiff_api::validation::is_dns1123_subdomain(&gr.group);
            if !msgs.is_empty() {
                errs.push(invalid(
                    &format!("{p}.resources.group"),
                    &format!("{:?}", gr.group),
                    &msgs.join(","),
                ));
            }
        }
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            errs.push(invalid(
                &format!("{p}.resources.resourceNames"),
                &quoted_list(&gr.resource_names),
                "using resourceNames requires at least one resource",
            ));
        }
    }
    if !r.non_resource_urls.is_empty() && (!r.resources.is_empty() || !r.namespaces.is_empty()) {
        errs.push(invalid(
            &format!("{p}.nonResourceURLs"),
            &quoted_list(&r.non_resource_urls),
            "rules cannot apply to both regular resources and non-resource URLs",
        ));
    }
    level
}

impl Policy {
    /// Reads and validates a policy file (YAML or JSON).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read(path).map_err(|error| PolicyError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Policy::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and validates a policy; the error is kube-apiserver's message.
    pub fn parse(text: &[u8]) -> Result<Policy, String> {
        let file: PolicyFile =
            serde_yaml::from_slice(text).map_err(|e| format!("failed decoding: {e}"))?;
        let shown = || String::from_utf8_lossy(text).trim().to_string();
        let Some(kind) = file.kind.as_deref().filter(|k| !k.is_empty()) else {
            return Err(format!(
                "failed decoding: Object 'Kind' is missing in '{}'",
                shown()
            ));
        };
        let Some(api_version) = file.api_version.as_deref().filter(|v| !v.is_empty()) else {
            return Err(format!(
                "failed decoding: Object 'apiVersion' is missing in '{}'",
                shown()
            ));
        };
        if kind != "Policy" || api_version != "audit.k8s.io/v1" {
            return Err(format!(
                "failed decoding: no kind {kind:?} is registered for version {api_version:?}"
            ));
        }
        let mut errs = Vec::new();
        let policy_stages = parse_stages(&file.omit_stages, "omitStages", &mut errs);
        let mut rules = Vec::new();
        for (i, r) in file.rules.iter().enumerate() {
            let p = format!("rules[{i}]");
            let level = validate_rule(r, &p, &mut errs);
            let stages = parse_stages(&r.omit_stages, &format!("{p}.omitStages"), &mut errs);
            rules.push(Rule {
                level,
                users: r.users.clone(),
                user_groups: r.user_groups.clone(),
                verbs: r.verbs.clone(),
                resources: r.resources.clone(),
                namespaces: r.namespaces.clone(),
                non_resource_urls: r.non_resource_urls.clone(),
                omit_stages: union_stages(&policy_stages, &stages),
                omit_managed_fields: r.omit_managed_fields,
            });
        }
        match errs.len() {
            0 => {}
            1 => return Err(errs.remove(0)),
            _ => return Err(format!("[{}]", errs.join(", "))),
        }
        if rules.is_empty() {
            return Err("loaded illegal policy with 0 rules".into());
        }
        Ok(Policy {
            rules,
            omit_stages: policy_stages,
            omit_managed_fields: file.omit_managed_fields,
        })
    }

    /// The level and stages for a request: the first matching rule's, else `None`.
    /// `user` is `None` for a request whose authentication failed.
    pub fn evaluate(&self, user: Option<&UserInfo>, attrs: &Attributes<'_>) -> RequestConfig {
        for rule in &self.rules {
            if rule.matches(user, attrs) {
                return RequestConfig {
                    level: rule.level.unwrap_or(Level::None),
                    omit_stages: rule.omit_stages.clone(),
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                };
            }
        }
        RequestConfig {
            level: Level::None,
            omit_stages: self.omit_stages.clone(),
            omit_managed_fields: self.omit_managed_fields,
        }
    }
}

fn has(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

impl Rule {
    /// Whether the rule applies: every list it sets must admit the request.
    pub fn matches(&self, user: Option<&UserInfo>, attrs: &Attributes<'_>) -> bool {
        if !self.users.is_empty() && !user.is_some_and(|u| has(&self.users, &u.name)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !user.is_some_and(|u| u.groups.iter().any(|g| has(&self.user_groups, g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !has(&self.verbs, attrs.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(attrs);
        }
        if !self.non_resource_urls.is_empty() {
            return !attrs.resource_request
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(attrs.path, spec));
        }
        true
    }

    fn matches_resource(&self, attrs: &Attributes<'_>) -> bool {
        if !attrs.resource_request {
            return false;
        }
        // Cluster-scoped requests have the empty namespace.
        if !self.namespaces.is_empty() && !has(&self.namespaces, attrs.namespace.unwrap_or("")) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let sub = attrs.subresource.unwrap_or("");
        let combined = attrs.combined_resource();
        let name = attrs.name.unwrap_or("");
        self.resources
            .iter()
            .filter(|gr| gr.group == attrs.group)
            .any(|gr| {
                gr.resources.is_empty()
                    || (gr.resource_names.is_empty() || has(&gr.resource_names, name))
                        && gr.resources.iter().any(|res| {
                            res == "*"
                                || *res == combined
                                || (!sub.is_empty() && res.strip_prefix("*/") == Some(sub))
                                || res.strip_suffix("/*") == Some(attrs.resource)
                        })
            })
    }
}

/// `*`, an exact path, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

// ---------------------------------------------------------------------------------------------
// Events.

/// `authentication.k8s.io/v1` UserInfo, as events carry it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EventUser {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&UserInfo> for EventUser {
    fn from(u: &UserInfo) -> Self {
        EventUser {
            username: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: u.extra.clone(),
        }
    }
}

/// What a resource request is about.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The `metav1.Status` of the response: the code, and for failures the status, message,
/// reason and details the client got.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ResponseStatus {
    pub metadata: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
}

fn is_zero(c: &u16) -> bool {
    *c == 0
}

impl From<&ApiError> for ResponseStatus {
    fn from(e: &ApiError) -> Self {
        ResponseStatus {
            status: "Failure".into(),
            message: e.message.clone(),
            reason: e.reason.into(),
            details: e.details.clone(),
            code: e.code,
            ..Default::default()
        }
    }
}

/// An `audit.k8s.io/v1` Event, its fields in kube-apiserver's order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: EventUser,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<EventUser>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    #[serde(with = "micro_time")]
    pub request_received_timestamp: Timestamp,
    #[serde(with = "micro_time")]
    pub stage_timestamp: Timestamp,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Timestamps as `metav1.MicroTime`.
mod micro_time {
    use jiff::Timestamp;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&skiff_common::time::rfc3339_micro(*t))
    }
}

impl Event {
    /// A new event for a request received at `received`: who, what and from where.
    pub fn new(
        level: Level,
        audit_id: &str,
        received: Timestamp,
        request: &RequestInfo,
        user: Option<&UserInfo>,
        attrs: &Attributes<'_>,
    ) -> Event {
        let object_ref = attrs.resource_request.then(|| ObjectRef {
            resource: attrs.resource.into(),
            namespace: attrs.namespace.unwrap_or_default().into(),
            name: attrs.name.unwrap_or_default().into(),
            api_group: attrs.group.into(),
            api_version: attrs.version.into(),
            subresource: attrs.subresource.unwrap_or_default().into(),
            ..Default::default()
        });
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level,
            audit_id: audit_id.into(),
            stage: Stage::RequestReceived,
            request_uri: request.uri.clone(),
            verb: attrs.verb.into(),
            user: user.map(EventUser::from).unwrap_or_default(),
            impersonated_user: None,
            source_ips: request.source_ips.clone(),
            user_agent: request.user_agent.clone(),
            object_ref,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: received,
            stage_timestamp: received,
            annotations: BTreeMap::new(),
        }
    }

    /// One line of the log.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// What an event records about the HTTP request itself.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// Path and query, as the client sent them.
    pub uri: String,
    pub user_agent: String,
    pub source_ips: Vec<String>,
}

impl RequestInfo {
    pub fn from_parts(parts: &Parts) -> Self {
        let mut user_agent = header(&parts.headers, http::header::USER_AGENT.as_str())
            .unwrap_or_default()
            .to_string();
        if user_agent.len() > MAX_USER_AGENT {
            let mut cut = MAX_USER_AGENT;
            while !user_agent.is_char_boundary(cut) {
                cut -= 1;
            }
            user_agent.truncate(cut);
            user_agent.push_str("...TRUNCATED");
        }
        let remote = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        RequestInfo {
            uri: parts.uri.path_and_query().map_or_else(
                || parts.uri.path().to_string(),
                |pq| pq.as_str().to_string(),
            ),
            user_agent,
            source_ips: source_ips(&parts.headers, remote),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The client's addresses as kube-apiserver lists them: `X-Forwarded-For`, then `X-Real-Ip`,
/// then the connection's peer, each once.
fn source_ips(headers: &HeaderMap, remote: Option<std::net::IpAddr>) -> Vec<String> {
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    if let Some(fwd) = header(headers, "x-forwarded-for") {
        ips.extend(
            fwd.split(',')
                .filter_map(|p| p.trim().parse::<std::net::IpAddr>().ok()),
        );
    }
    let real = header(headers, "x-real-ip").and_then(|v| v.trim().parse::<std::net::IpAddr>().ok());
    for ip in real.into_iter().chain(remote) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips.iter().map(ToString::to_string).collect()
}

/// Removes `metadata.managedFields` from an object, or from each item of a list.
fn strip_managed_fields(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            if let Some(m) = item.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("managedFields");
            }
        }
    }
}

/// A body as JSON: protobuf bodies (kubectl's typed creates) in the form a JSON client would
/// have sent, YAML too; `None` when it is none of these.
fn decode(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    if let Ok((_, _, obj)) = skiff_api::protobuf::decode(bytes) {
        return Some(obj);
    }
    serde_json::from_slice(bytes)
        .ok()
        .or_else(|| serde_yaml::from_slice(bytes).ok())
}

// ---------------------------------------------------------------------------------------------
// The backend: a bounded channel and one writer thread.

/// `--audit-*` flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--audit-policy-file`.
    pub policy_file: Option<PathBuf>,
    /// `--audit-log-path`; `-` is standard output.
    pub log_path: Option<PathBuf>,
    /// `--audit-log-maxsize` in megabytes; 0 means the default, 100.
    pub max_size_mb: u64,
    /// `--audit-log-maxbackup`; 0 keeps every rotated file.
    pub max_backups: usize,
    /// `--audit-log-maxage` in days; 0 keeps rotated files whatever their age.
    pub max_age_days: u64,
    /// Events held for the writer before new ones are dropped; 0 means the default.
    pub buffer_size: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

enum Msg {
    Event(Box<Event>),
    /// Answered once everything sent before it is written.
    Sync(std::sync::mpsc::Sender<()>),
}

/// The policy and where events go; one per apiserver.
pub struct Auditor {
    policy: Policy,
    tx: SyncSender<Msg>,
    events: Counter,
    errors: Family<PluginLabel, Counter>,
}

impl Auditor {
    /// Loads the policy and opens the log, or says why not. `None` when no events would be
    /// written: no log path, or (as kube-apiserver) a log path but no policy.
    pub fn start(
        opts: &Options,
        metrics: &crate::metrics::Metrics,
    ) -> anyhow::Result<Option<Arc<Auditor>>> {
        let policy = opts.policy_file.as_deref().map(Policy::load).transpose()?;
        let Some(path) = opts.log_path.clone() else {
            return Ok(None);
        };
        let Some(policy) = policy else {
            tracing::info!("no audit policy file provided, no events will be recorded");
            return Ok(None);
        };
        let out = Output::open(&path, opts)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(if opts.buffer_size == 0 {
            DEFAULT_BUFFER_SIZE
        } else {
            opts.buffer_size
        });
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_loop(rx, out))?;
        let events = Counter::default();
        let errors = Family::<PluginLabel, Counter>::default();
        metrics.register(
            "apiserver_audit_event",
            "Counter of audit events generated and sent to the audit backend",
            events.clone(),
        );
        metrics.register(
            "apiserver_audit_error",
            "Counter of audit events that failed to be audited properly; plugin=buffered counts events dropped because the buffer was full",
            errors.clone(),
        );
        tracing::info!(path = %path.display(), "writing the audit log");
        Ok(Some(Arc::new(Auditor {
            policy,
            tx,
            events,
            errors,
        })))
    }

    /// Hands an event to the writer, unless its stage is omitted; never waits.
    fn send(&self, ev: &Event, omit: &[Stage]) {
        if omit.contains(&ev.stage) {
            return;
        }
        self.events.inc();
        match self.tx.try_send(Msg::Event(Box::new(ev.clone()))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.errors
                    .get_or_create(&PluginLabel {
                        plugin: "buffered".into(),
                    })
                    .inc();
            }
            Err(TrySendError::Disconnected(_)) => {
                self.errors
                    .get_or_create(&PluginLabel {
                        plugin: "log".into(),
                    })
                    .inc();
            }
        }
    }

    /// Waits (up to `timeout`) until every event sent so far is written: at shutdown.
    pub fn sync(&self, timeout: Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Sync(tx)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

fn write_loop(rx: Receiver<Msg>, mut out: Output) {
    // Writes whatever is queued, then flushes once: a burst costs one flush, and an event
    // never waits in the buffer for the next one.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Event(ev) => {
                    if let Err(e) = out.write_line(ev.to_line().as_bytes()) {
                        tracing::error!(error = %e, "writing the audit log failed");
                    }
                }
                Msg::Sync(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "writing the audit log failed");
        }
    }
    let _ = out.flush();
}

/// Standard output, or a file rotated by size as kube-apiserver's log library rotates it:
/// renamed to `<name>-<UTC time>.<ext>` (`audit-2024-05-01T12-00-00.000.log`), the oldest
/// removed beyond `--audit-log-maxbackup` and `--audit-log-maxage`.
enum Output {
    Stdout(io::Stdout),
    File(RotatingFile),
}

struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_size: u64,
    max_backups: usize,
    max_age: Option<Duration>,
}

impl Output {
    fn open(path: &Path, opts: &Options) -> anyhow::Result<Output> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout(io::stdout()));
        }
        let (file, size) = open_log(path)
            .map_err(|e| anyhow::anyhow!("opening the audit log {}: {e}", path.display()))?;
        let mb = if opts.max_size_mb == 0 {
            DEFAULT_MAX_SIZE_MB
        } else {
            opts.max_size_mb
        };
        Ok(Output::File(RotatingFile {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            size,
            max_size: mb * 1024 * 1024,
            max_backups: opts.max_backups,
            max_age: (opts.max_age_days > 0)
                .then(|| Duration::from_secs(opts.max_age_days * 24 * 3600)),
        }))
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.write_all(line),
            Output::File(f) => f.write_line(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.flush(),
            Output::File(f) => f.file.flush(),
        }
    }
}

/// Opens (creating, owner-only) the log for appending; returns it with its size.
fn open_log(path: &Path) -> io::Result<(File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir)?;
    }
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let file = o.open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// `<dir>/<stem>-<time>.<ext>` for a log at `<dir>/<stem>.<ext>`.
fn backup_name(path: &Path, at: Timestamp) -> PathBuf {
    let (stem, ext) = stem_and_ext(path);
    let time = at.strftime("%Y-%m-%dT%H-%M-%S.%3f");
    path.with_file_name(format!("{stem}-{time}{ext}"))
}

fn stem_and_ext(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
        _ => (name, String::new()),
    }
}

impl RotatingFile {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        std::fs::rename(&self.path, backup_name(&self.path, Timestamp::now()))?;
        let (file, size) = open_log(&self.path)?;
        self.file = BufWriter::new(file);
        self.size = size;
        if let Err(e) = self.prune() {
            tracing::warn!(error = %e, "removing old audit logs failed");
        }
        Ok(())
    }

    /// Removes rotated files beyond the count and age limits, oldest first.
    fn prune(&self) -> io::Result<()> {
        if self.max_backups == 0 && self.max_age.is_none() {
            return Ok(());
        }
        let (stem, ext) = stem_and_ext(&self.path);
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        let prefix = format!("{stem}-");
        let mut backups: Vec<(Timestamp, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(time) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(ext.as_str()))
            else {
                continue;
            };
            let parsed = jiff::civil::DateTime::strptime("%Y-%m-%dT%H-%M-%S%.f", time)
                .ok()
                .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp());
            if let Some(t) = parsed {
                backups.push((t, entry.path()));
            }
        }
        backups.sort_by_key(|b| std::cmp::Reverse(b.0));
        let now = Timestamp::now();
        for (i, (t, path)) in backups.iter().enumerate() {
            let too_many = self.max_backups > 0 && i >= self.max_backups;
            let too_old = self.max_age.is_some_and(|age| {
                now.duration_since(*t)
                    .try_into()
                    .is_ok_and(|d: Duration| d > age)
            });
            if too_many || too_old {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// One request's audit.

/// Subresources whose responses stream (kube-apiserver's long-running requests, with `watch`).
const STREAMING_SUBRESOURCES: [&str; 5] = ["attach", "exec", "proxy", "log", "portforward"];

/// The audit of one request: its ID (always), and its event when the policy records it.
/// Made by `dispatch` before anything else and finished with the response.
pub struct Record {
    auditor: Option<Arc<Auditor>>,
    id: String,
    received: Timestamp,
    request: RequestInfo,
    method: Method,
    event: Option<Event>,
    config: RequestConfig,
    long_running: bool,
    /// A copy of the request body as the handler reads it (writes only, when auditing).
    body: Option<Arc<Mutex<Vec<u8>>>>,
    /// Set when authentication failed: only `ResponseStarted` is written, with this message.
    unauthenticated: Option<String>,
    /// Set once the last event is written (a panic).
    done: bool,
}

impl Record {
    pub fn start(auditor: Option<&Arc<Auditor>>, parts: &Parts) -> Record {
        // A client may name its request; the ID is kept as sent.
        let id = header(&parts.headers, AUDIT_ID_HEADER)
            .filter(|s| !s.is_empty())
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
        Record {
            auditor: auditor.cloned(),
            id,
            received: Timestamp::now(),
            request: if auditor.is_some() {
                RequestInfo::from_parts(parts)
            } else {
                RequestInfo::default()
            },
            method: parts.method.clone(),
            event: None,
            config: RequestConfig {
                level: Level::None,
                omit_stages: Vec::new(),
                omit_managed_fields: false,
            },
            long_running: false,
            body: None,
            unauthenticated: None,
            done: false,
        }
    }

    /// The request's audit ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The body, copied as the handler reads it, for the event's `requestObject` and to name
    /// created objects.
    pub fn capture(&mut self, body: Body) -> Body {
        if self.auditor.is_none()
            || !matches!(self.method, Method::POST | Method::PUT | Method::PATCH)
        {
            return body;
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        self.body = Some(buf.clone());
        Body::from_stream(body.into_data_stream().inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                if b.len() <= crate::request::MAX_BODY {
                    b.extend_from_slice(bytes);
                }
            }
        }))
    }

    fn evaluate(&mut self, user: Option<&UserInfo>, attrs: &Attributes<'_>) -> bool {
        let Some(auditor) = &self.auditor else {
            return false;
        };
        self.config = auditor.policy.evaluate(user, attrs);
        if self.config.level == Level::None {
            return false;
        }
        self.long_running = attrs.verb == "watch"
            || attrs
                .subresource
                .is_some_and(|s| STREAMING_SUBRESOURCES.contains(&s));
        self.event = Some(Event::new(
            self.config.level,
            &self.id,
            self.received,
            &self.request,
            user,
            attrs,
        ));
        true
    }

    /// The request was authenticated as `user` (before impersonation): the policy decides
    /// its level, and `RequestReceived` is written.
    pub fn begin(&mut self, user: &UserInfo, attrs: &Attributes<'_>) {
        if self.evaluate(Some(user), attrs) {
            self.emit(Stage::RequestReceived);
        }
    }

    /// Authentication failed: the event has no user, and is written once the 401 is sent.
    pub fn unauthenticated(&mut self, headers: &HeaderMap, had_cert: bool, attrs: &Attributes<'_>) {
        if !self.evaluate(None, attrs) {
            return;
        }
        let mut methods = Vec::new();
        if let Some(auth) = header(headers, "authorization") {
            let mut words = auth.trim().split(' ');
            match words.next() {
                Some(w) if w.eq_ignore_ascii_case("basic") => methods.push("basic"),
                Some(w) if w.eq_ignore_ascii_case("bearer") && words.next().is_some() => {
                    methods.push("bearer")
                }
                _ => {}
            }
        }
        if had_cert {
            methods.push("x509");
        }
        self.unauthenticated = Some(if methods.is_empty() {
            "Authentication failed, no credentials provided".into()
        } else {
            format!("Authentication failed, attempted: {}", methods.join(", "))
        });
    }

    /// The request acts as `user` (`Impersonate-User`).
    pub fn impersonated(&mut self, user: &UserInfo) {
        if let Some(ev) = &mut self.event {
            ev.impersonated_user = Some(user.into());
        }
    }

    /// Authorization's answer, as the `authorization.k8s.io/*` annotations.
    pub fn authorized(&mut self, decision: &Decision) {
        let (d, reason) = match decision {
            Decision::Allow => ("allow", ""),
            Decision::Deny(r) | Decision::NoOpinion(r) => ("forbid", r.as_str()),
        };
        self.annotate(DECISION_ANNOTATION, d);
        self.annotate(REASON_ANNOTATION, reason);
    }

    pub fn annotate(&mut self, key: &str, value: &str) {
        if let Some(ev) = &mut self.event {
            ev.annotations.insert(key.into(), value.into());
        }
    }

    /// The handler panicked: a `Panic` event is the last.
    pub fn panicked(&mut self, payload: &(dyn std::any::Any + Send)) {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if let Some(ev) = &mut self.event {
            ev.response_status = Some(ResponseStatus {
                status: "Failure".into(),
                reason: "InternalError".into(),
                message: format!("APIServer panic'd: {what}"),
                code: 500,
                ..Default::default()
            });
        }
        self.emit(Stage::Panic);
        self.done = true;
    }

    /// The request failed with `e`: its Status is the event's `responseStatus`.
    pub fn failed(&mut self, e: &ApiError) {
        if let Some(ev) = &mut self.event
            && self.unauthenticated.is_none()
        {
            ev.response_status = Some(e.into());
        }
    }

    fn emit(&mut self, stage: Stage) {
        if let (Some(auditor), Some(ev)) = (&self.auditor, &mut self.event) {
            ev.stage = stage;
            ev.stage_timestamp = if stage == Stage::RequestReceived {
                ev.request_received_timestamp
            } else {
                Timestamp::now()
            };
            auditor.send(ev, &self.config.omit_stages);
        }
    }

    /// Fills the request's object into the event: names a created object, and at `Request`
    /// level and above records what was sent (for a patch, the patch).
    fn record_request_object(&mut self) {
        let Some(buf) = self.body.take() else { return };
        let bytes = std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(ev) = &mut self.event else { return };
        let Some(mut obj) = decode(&bytes) else {
            return;
        };
        if self.method != Method::PATCH
            && let Some(r) = &mut ev.object_ref
        {
            let meta = |k: &str| {
                obj.pointer(&format!("/metadata/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            for (field, key) in [
                (&mut r.namespace, "namespace"),
                (&mut r.name, "name"),
                (&mut r.uid, "uid"),
                (&mut r.resource_version, "resourceVersion"),
            ] {
                if field.is_empty() {
                    *field = meta(key);
                }
            }
        }
        if self.config.level >= Level::Request {
            if self.config.omit_managed_fields {
                strip_managed_fields(&mut obj);
            }
            ev.request_object = Some(obj);
        }
    }

    /// Writes the response's events and returns the response with its `Audit-Id` header. A
    /// streaming response gets `ResponseStarted` now and `ResponseComplete` when its body is
    /// done (or the client goes away); others get `ResponseComplete`, with the response
    /// object at `RequestResponse` level.
    pub async fn finish(mut self, mut resp: Response) -> Response {
        if let Ok(v) = HeaderValue::from_str(&self.id) {
            resp.headers_mut().insert(AUDIT_ID_HEADER, v);
        }
        if self.done || self.event.is_none() {
            return resp;
        }
        let code = resp.status().as_u16();
        if let Some(message) = self.unauthenticated.take() {
            if let Some(ev) = &mut self.event {
                ev.response_status = Some(ResponseStatus {
                    message,
                    code,
                    ..Default::default()
                });
            }
            self.emit(Stage::ResponseStarted);
            return resp;
        }
        if let Some(ev) = &mut self.event {
            ev.response_status
                .get_or_insert_with(ResponseStatus::default)
                .code = code;
        }
        self.record_request_object();
        if self.long_running {
            self.emit(Stage::ResponseStarted);
            if !(200..300).contains(&code) && code != 101 {
                self.emit(Stage::ResponseComplete);
                return resp;
            }
            // The guard travels with the stream's state: dropped when the stream ends or the
            // body is dropped.
            let done = CompleteOnDrop(Some(self));
            let (parts, body) = resp.into_parts();
            let stream = futures::stream::unfold(
                (body.into_data_stream(), done),
                |(mut s, done)| async move { s.next().await.map(|chunk| (chunk, (s, done))) },
            );
            return Response::from_parts(parts, Body::from_stream(stream));
        }
        if self.config.level >= Level::RequestResponse {
            let (parts, body) = resp.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            if let Some(ev) = &mut self.event
                && let Some(mut obj) = decode(&bytes)
            {
                if self.config.omit_managed_fields {
                    strip_managed_fields(&mut obj);
                }
                ev.response_object = Some(obj);
            }
            resp = Response::from_parts(parts, Body::from(bytes));
        }
        self.emit(Stage::ResponseComplete);
        resp
    }
}

/// Writes a streaming request's `ResponseComplete` when its body is dropped: the stream ended
/// or the client went away.
struct CompleteOnDrop(Option<Record>);

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        if let Some(mut r) = self.0.take() {
            r.emit(Stage::ResponseComplete);
        }
    }
}

#[cfg(test)]
mod tests;
