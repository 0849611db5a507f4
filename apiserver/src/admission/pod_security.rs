//! Pod Security admission (the `PodSecurity` plugin): evaluates pods and pod templates against the
//! Pod Security Standards a namespace selects with its `pod-security.kubernetes.io/*` labels.
//!
//! This module is pure: it reads objects as JSON values and returns decisions; the apiserver turns
//! a [`Decision`] into a 403 Status, `Warning:` headers and audit annotations. The checks, their
//! order and every message follow Kubernetes 1.33's `k8s.io/pod-security-admission` so that
//! clients and people see the same text as on a real cluster.
//!
//! Entry points:
//! - [`Config`] (defaults and exemptions) with [`Config::admit_pod`], [`Config::admit_workload`],
//!   [`Config::review_namespace`] and [`Config::namespace_warnings`]: the whole plugin flow.
//! - The building blocks under them: [`namespace_policy`], [`check_pod`], [`check_template`],
//!   [`namespace_label_errors`], [`namespace_warnings`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// The prefix of the namespace labels and of the audit annotations.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// Audit annotation keys, already prefixed as the in-tree plugin records them.
pub const ENFORCE_POLICY_ANNOTATION: &str = "pod-security.kubernetes.io/enforce-policy";
pub const AUDIT_VIOLATIONS_ANNOTATION: &str = "pod-security.kubernetes.io/audit-violations";
pub const EXEMPT_ANNOTATION: &str = "pod-security.kubernetes.io/exempt";
pub const ERROR_ANNOTATION: &str = "pod-security.kubernetes.io/error";

/// The newest policy version with checks of its own in Kubernetes 1.33 (the sysctls list grew
/// in 1.32); newer versions and `latest` evaluate exactly as this one.
const NEWEST_POLICY_MINOR: u64 = 32;

/// How many existing pods a namespace label change is checked against, as upstream.
const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;

/// A Pod Security Standard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    #[default]
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err(ParseError::Level),
        }
    }
}

/// A policy version: `latest` or `v1.N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    #[default]
    Latest,
    V1(u64),
}

impl Version {
    /// The minor version whose checks apply.
    fn policy_minor(self) -> u64 {
        match self {
            Version::Latest => NEWEST_POLICY_MINOR,
            Version::V1(minor) => minor.min(NEWEST_POLICY_MINOR),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::V1(minor) => write!(f, "v1.{minor}"),
        }
    }
}

impl FromStr for Version {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s == "latest" {
            return Ok(Version::Latest);
        }
        // Upstream accepts `v1.` followed by a number without leading zeros.
        let minor = s.strip_prefix("v1.").ok_or(ParseError::Version)?;
        let digits_ok = !minor.is_empty()
            && minor.bytes().all(|b| b.is_ascii_digit())
            && (minor == "0" || !minor.starts_with('0'));
        if !digits_ok {
            return Err(ParseError::Version);
        }
        minor
            .parse::<u64>()
            .map(Version::V1)
            .map_err(|_| ParseError::Version)
    }
}

/// Why a label value (or a default) is not a level or a version; the text is upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("must be one of privileged, baseline, restricted")]
    Level,
    #[error(r#"must be "latest" or "v1.x""#)]
    Version,
}

/// A level at a version, shown as `baseline:latest` or `restricted:v1.30`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub fn new(level: Level, version: Version) -> Self {
        LevelVersion { level, version }
    }

    /// Upstream's equivalence: any two privileged policies are the same policy.
    fn equivalent(&self, other: &LevelVersion) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// The cluster-wide policy for namespaces without labels (upstream's
/// `PodSecurityConfiguration.defaults`): privileged at `latest` for every mode unless configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    pub enforce: Level,
    pub enforce_version: Version,
    pub audit: Level,
    pub audit_version: Version,
    pub warn: Level,
    pub warn_version: Version,
}

/// Requests the plugin lets through unevaluated (upstream's `exemptions`); none by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exemptions {
    /// Authenticated user names.
    pub usernames: Vec<String>,
    /// `spec.runtimeClassName` values.
    pub runtime_classes: Vec<String>,
    /// Namespace names.
    pub namespaces: Vec<String>,
}

impl Exemptions {
    fn namespace(&self, namespace: &str) -> bool {
        !namespace.is_empty() && self.namespaces.iter().any(|n| n == namespace)
    }

    fn username(&self, username: &str) -> bool {
        !username.is_empty() && self.usernames.iter().any(|u| u == username)
    }

    fn runtime_class(&self, spec: &Value) -> bool {
        match field(spec, "runtimeClassName").and_then(Value::as_str) {
            Some(class) if !class.is_empty() => self.runtime_classes.iter().any(|c| c == class),
            _ => false,
        }
    }
}

/// An invalid `pod-security.kubernetes.io/*` label value, shaped like upstream's field error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelError {
    pub label: String,
    pub value: String,
    pub error: ParseError,
}

impl LabelError {
    /// The field path of a Status cause: `metadata.labels[pod-security.kubernetes.io/enforce]`.
    pub fn field(&self) -> String {
        format!("metadata.labels[{}]", self.label)
    }

    /// The message of a Status cause (`FieldValueInvalid`), without the field.
    pub fn body(&self) -> String {
        format!("Invalid value: {}: {}", go_quote(&self.value), self.error)
    }
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field(), self.body())
    }
}

/// The policy in force in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
    /// Invalid label values. Upstream still evaluates (an invalid enforce level enforces
    /// `restricted`, invalid audit and warn levels fail open to `privileged`, an invalid version
    /// means `latest`) and records the errors in the `error` audit annotation.
    pub errors: Vec<LabelError>,
}

impl NamespacePolicy {
    /// The policy of a namespace without labels.
    pub fn from_defaults(defaults: &Defaults) -> Self {
        NamespacePolicy {
            enforce: LevelVersion::new(defaults.enforce, defaults.enforce_version),
            audit: LevelVersion::new(defaults.audit, defaults.audit_version),
            warn: LevelVersion::new(defaults.warn, defaults.warn_version),
            errors: Vec::new(),
        }
    }

    /// True when no mode checks anything.
    pub fn fully_privileged(&self) -> bool {
        self.enforce.level == Level::Privileged
            && self.audit.level == Level::Privileged
            && self.warn.level == Level::Privileged
    }

    fn equivalent(&self, other: &NamespacePolicy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }

    /// The errors as upstream's aggregate prints them (one error alone, several in brackets).
    fn errors_text(&self) -> String {
        aggregate(self.errors.iter().map(ToString::to_string).collect())
    }
}

/// The policy a namespace's labels select, starting from the cluster defaults.
///
/// Invalid values do not make this fail: like upstream, the result carries them in
/// [`NamespacePolicy::errors`] and is still the policy to evaluate pods with.
pub fn namespace_policy(labels: &BTreeMap<String, String>, defaults: &Defaults) -> NamespacePolicy {
    let mut policy = NamespacePolicy::from_defaults(defaults);
    if labels.is_empty() {
        return policy;
    }
    let mut errors = Vec::new();
    let mut note = |label: &str, value: &str, error: ParseError| {
        errors.push(LabelError {
            label: label.to_string(),
            value: value.to_string(),
            error,
        })
    };

    let mut has_enforce_level = false;
    if let Some(value) = labels.get(ENFORCE_LEVEL_LABEL) {
        match value.parse() {
            Ok(level) => {
                policy.enforce.level = level;
                has_enforce_level = true;
            }
            // Fail closed for enforce.
            Err(e) => {
                policy.enforce.level = Level::Restricted;
                note(ENFORCE_LEVEL_LABEL, value, e);
            }
        }
    }
    if let Some(value) = labels.get(ENFORCE_VERSION_LABEL) {
        policy.enforce.version = parse_version(value, ENFORCE_VERSION_LABEL, &mut note);
    }
    if let Some(value) = labels.get(AUDIT_LEVEL_LABEL) {
        policy.audit.level = value.parse().unwrap_or_else(|e| {
            note(AUDIT_LEVEL_LABEL, value, e);
            Level::Privileged // Fail open for audit.
        });
    }
    if let Some(value) = labels.get(AUDIT_VERSION_LABEL) {
        policy.audit.version = parse_version(value, AUDIT_VERSION_LABEL, &mut note);
    }
    let has_warn_level = labels.contains_key(WARN_LEVEL_LABEL);
    if let Some(value) = labels.get(WARN_LEVEL_LABEL) {
        policy.warn.level = value.parse().unwrap_or_else(|e| {
            note(WARN_LEVEL_LABEL, value, e);
            Level::Privileged // Fail open for warn.
        });
    }
    let has_warn_version = labels.contains_key(WARN_VERSION_LABEL);
    if let Some(value) = labels.get(WARN_VERSION_LABEL) {
        policy.warn.version = parse_version(value, WARN_VERSION_LABEL, &mut note);
    }
    // A namespace that only sets an enforce level also warns at it, so that `kubectl apply` of a
    // workload shows what its pods would be refused for.
    if !has_warn_level && has_enforce_level && policy.enforce.level > policy.warn.level {
        policy.warn.level = policy.enforce.level;
        if !has_warn_version {
            policy.warn.version = policy.enforce.version;
        }
    }
    policy.errors = errors;
    policy
}

fn parse_version(
    value: &str,
    label: &str,
    note: &mut impl FnMut(&str, &str, ParseError),
) -> Version {
    value.parse().unwrap_or_else(|e| {
        note(label, value, e);
        Version::Latest
    })
}

/// The invalid `pod-security.kubernetes.io/*` labels, each as upstream's field error text
/// (`metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "x": must be one of
/// privileged, baseline, restricted`).
pub fn namespace_label_errors(labels: &BTreeMap<String, String>) -> Vec<String> {
    namespace_policy(labels, &Defaults::default())
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The message of the 422 Invalid Status for a namespace with invalid labels:
/// `Namespace "x" is invalid: metadata.labels[...]: Invalid value: ...`.
/// Each [`LabelError`] is also a cause (`FieldValueInvalid`, [`LabelError::field`],
/// [`LabelError::body`]).
pub fn invalid_namespace_message(name: &str, errors: &[LabelError]) -> String {
    let errors = aggregate(errors.iter().map(ToString::to_string).collect());
    if errors.is_empty() {
        format!("Namespace {} is invalid", go_quote(name))
    } else {
        format!("Namespace {} is invalid: {errors}", go_quote(name))
    }
}

/// What the plugin decided about one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Set when the request must be refused: the message of a 403 Forbidden Status
    /// (reason `Forbidden`, details `{name, kind: "pods"}`).
    pub enforce_error: Option<String>,
    /// One `Warning:` header each (code 299, agent `-`).
    pub warnings: Vec<String>,
    /// Audit annotations to record on the request's audit event, keys already prefixed.
    pub audit_annotations: BTreeMap<String, String>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.enforce_error.is_none()
    }

    fn exempt(reason: &str) -> Self {
        let mut decision = Decision::default();
        decision
            .audit_annotations
            .insert(EXEMPT_ANNOTATION.to_string(), reason.to_string());
        decision
    }
}

/// Evaluates a pod (its `metadata` and `spec`) against a namespace policy: enforce, audit and warn.
/// Exemptions are not applied here; [`Config::admit_pod`] applies them first.
pub fn check_pod(policy: &NamespacePolicy, pod_meta: &Value, pod_spec: &Value) -> Decision {
    let name = field(pod_meta, "name")
        .and_then(Value::as_str)
        .unwrap_or("");
    evaluate(policy, pod_meta, pod_spec, Some(name))
}

/// The kinds whose pod templates are checked (audit and warn only), by API group and kind.
pub const WORKLOAD_KINDS: &[(&str, &str)] = &[
    ("", "PodTemplate"),
    ("", "ReplicationController"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
];

/// True for the kinds [`check_template`] understands.
pub fn is_workload(group: &str, kind: &str) -> bool {
    WORKLOAD_KINDS.iter().any(|&(g, k)| g == group && k == kind)
}

static NULL: Value = Value::Null;

/// The pod template (`metadata` + `spec`) inside a workload object, or None when it has none
/// (a ReplicationController without a template, or a kind that is not a workload).
pub fn pod_template<'a>(kind: &str, object: &'a Value) -> Option<&'a Value> {
    let spec = field(object, "spec").unwrap_or(&NULL);
    match kind {
        "PodTemplate" => Some(field(object, "template").unwrap_or(&NULL)),
        // The only kind whose template is optional.
        "ReplicationController" => field(spec, "template"),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            Some(field(spec, "template").unwrap_or(&NULL))
        }
        "CronJob" => {
            let job_spec = field(spec, "jobTemplate")
                .and_then(|t| field(t, "spec"))
                .unwrap_or(&NULL);
            Some(field(job_spec, "template").unwrap_or(&NULL))
        }
        _ => None,
    }
}

/// Evaluates the pod template of a workload object (see [`WORKLOAD_KINDS`]): audit and warn
/// only, as upstream never refuses a workload for the pods it would create.
pub fn check_template(policy: &NamespacePolicy, kind: &str, object: &Value) -> Decision {
    match pod_template(kind, object) {
        Some(template) => evaluate(
            policy,
            field(template, "metadata").unwrap_or(&NULL),
            field(template, "spec").unwrap_or(&NULL),
            None,
        ),
        None => Decision::default(),
    }
}

/// Upstream's `EvaluatePod`: `enforce_name` is the pod's name when the enforce mode applies.
fn evaluate(
    policy: &NamespacePolicy,
    meta: &Value,
    spec: &Value,
    enforce_name: Option<&str>,
) -> Decision {
    let pod = PodView { meta, spec };
    let mut decision = Decision::default();
    if !policy.errors.is_empty() {
        decision.audit_annotations.insert(
            ERROR_ANNOTATION.to_string(),
            format!("Failed to parse policy: {}", policy.errors_text()),
        );
    }
    // Modes often share a level and version; evaluate each once.
    let mut cache: Vec<(LevelVersion, Vec<Violation>)> = Vec::new();
    let mut results = |lv: LevelVersion| -> Vec<Violation> {
        if let Some((_, v)) = cache.iter().find(|(c, _)| *c == lv) {
            return v.clone();
        }
        let v = violations(lv, &pod);
        cache.push((lv, v.clone()));
        v
    };

    if let Some(name) = enforce_name {
        decision.audit_annotations.insert(
            ENFORCE_POLICY_ANNOTATION.to_string(),
            policy.enforce.to_string(),
        );
        let found = results(policy.enforce);
        if !found.is_empty() {
            let reason = format!(
                "violates PodSecurity {}: {}",
                go_quote(&policy.enforce.to_string()),
                forbidden_detail(&found)
            );
            decision.enforce_error = Some(if name.is_empty() {
                format!("pods is forbidden: {reason}")
            } else {
                format!("pods {} is forbidden: {reason}", go_quote(name))
            });
        }
    }
    let found = results(policy.audit);
    if !found.is_empty() {
        decision.audit_annotations.insert(
            AUDIT_VIOLATIONS_ANNOTATION.to_string(),
            would_violate(&policy.audit, &found),
        );
    }
    // No warnings on a request that is refused anyway.
    if decision.allowed() {
        let found = results(policy.warn);
        if !found.is_empty() {
            decision.warnings.push(would_violate(&policy.warn, &found));
        }
    }
    decision
}

fn would_violate(lv: &LevelVersion, found: &[Violation]) -> String {
    format!(
        "would violate PodSecurity {}: {}",
        go_quote(&lv.to_string()),
        forbidden_detail(found)
    )
}

/// `reason (detail), reason (detail)`.
fn forbidden_detail(found: &[Violation]) -> String {
    found
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `reason, reason`: what existing pods are summarised by when a namespace label changes.
fn forbidden_reasons(found: &[Violation]) -> String {
    found
        .iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The warnings for a namespace whose enforce level is about to become `enforce`, given the
/// pods now in it (upstream's `EvaluatePodsInNamespace`, without its 1s time limit: at most the
/// first 3000 pods are checked, one per controller first).
pub fn namespace_warnings(namespace: &str, enforce: &LevelVersion, pods: &[Value]) -> Vec<String> {
    pods_in_namespace_warnings(namespace, enforce, pods, &Exemptions::default())
}

fn pods_in_namespace_warnings(
    namespace: &str,
    enforce: &LevelVersion,
    pods: &[Value],
    exemptions: &Exemptions,
) -> Vec<String> {
    // Pods of a controller mostly look alike: check one of each controller before the others.
    let mut seen_controllers = HashSet::new();
    let mut first = Vec::new();
    let mut repeats = Vec::new();
    for pod in pods {
        let spec = field(pod, "spec").unwrap_or(&NULL);
        if exemptions.runtime_class(spec) {
            continue;
        }
        match controller_uid(pod) {
            Some(uid) if !seen_controllers.insert(uid) => repeats.push(pod),
            _ => first.push(pod),
        }
    }
    first.extend(repeats);
    let total = first.len();
    let checked = total.min(NAMESPACE_MAX_PODS_TO_CHECK);

    // Warning text -> (lexically first pod name, number of pods).
    let mut by_warning: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for pod in &first[..checked] {
        let meta = field(pod, "metadata").unwrap_or(&NULL);
        let spec = field(pod, "spec").unwrap_or(&NULL);
        let found = violations(*enforce, &PodView { meta, spec });
        if found.is_empty() {
            continue;
        }
        let name = field(meta, "name").and_then(Value::as_str).unwrap_or("");
        let entry = by_warning
            .entry(forbidden_reasons(&found))
            .or_insert_with(|| (name.to_string(), 0));
        if name < entry.0.as_str() {
            entry.0 = name.to_string();
        }
        entry.1 += 1;
    }

    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !by_warning.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {} violate the new PodSecurity enforce level {}",
            go_quote(namespace),
            go_quote(&enforce.to_string())
        ));
    }
    let mut pod_warnings: Vec<String> = by_warning
        .into_iter()
        .map(|(warning, (name, count))| match count {
            1 => format!("{name}: {warning}"),
            2 => format!("{name} (and 1 other pod): {warning}"),
            n => format!("{name} (and {} other pods): {warning}", n - 1),
        })
        .collect();
    pod_warnings.sort();
    warnings.extend(pod_warnings);
    warnings
}

fn controller_uid(pod: &Value) -> Option<&str> {
    let refs = field(pod, "metadata")
        .and_then(|m| field(m, "ownerReferences"))
        .and_then(Value::as_array)?;
    refs.iter()
        .find(|r| flag(r, "controller"))
        .map(|r| field(r, "uid").and_then(Value::as_str).unwrap_or(""))
}

/// The cluster's Pod Security configuration (upstream's `PodSecurityConfiguration`), and the
/// plugin's request flow over the functions above.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub defaults: Defaults,
    pub exemptions: Exemptions,
}

/// Who and where a pod or workload request is.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The request's namespace.
    pub namespace: &'a str,
    /// The labels of that namespace as stored.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The authenticated user name.
    pub username: &'a str,
    /// The subresource (`""` for the object itself, `"ephemeralcontainers"`, ...).
    pub subresource: &'a str,
}

/// What to do about a namespace create or update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceReview {
    /// Non-empty: refuse with 422 Invalid ([`invalid_namespace_message`]).
    pub invalid: Vec<LabelError>,
    /// `Warning:` headers to send now.
    pub warnings: Vec<String>,
    /// Set when the enforce level became stricter: list the namespace's pods and add
    /// [`Config::namespace_warnings`] for this level to the warnings.
    pub check_existing_pods: Option<LevelVersion>,
}

/// Pod subresources that cannot change what the checks read.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

impl Config {
    /// The policy of a namespace with these labels.
    pub fn namespace_policy(&self, labels: &BTreeMap<String, String>) -> NamespacePolicy {
        namespace_policy(labels, &self.defaults)
    }

    /// A pod create or update (`old_pod` on update), or a write to a pod subresource.
    pub fn admit_pod(
        &self,
        request: &Request<'_>,
        pod: &Value,
        old_pod: Option<&Value>,
    ) -> Decision {
        if IGNORED_POD_SUBRESOURCES.contains(&request.subresource) {
            return Decision::default();
        }
        if self.exemptions.namespace(request.namespace) {
            return Decision::exempt("namespace");
        }
        if self.exemptions.username(request.username) {
            return Decision::exempt("user");
        }
        let policy = self.namespace_policy(request.namespace_labels);
        if policy.errors.is_empty() && policy.fully_privileged() {
            // Upstream names privileged:latest here whatever the namespace's version.
            let mut decision = Decision::default();
            decision.audit_annotations.insert(
                ENFORCE_POLICY_ANNOTATION.to_string(),
                LevelVersion::new(Level::Privileged, Version::Latest).to_string(),
            );
            return decision;
        }
        if old_pod.is_some_and(|old| !significant_pod_update(pod, old)) {
            return Decision::default();
        }
        let meta = field(pod, "metadata").unwrap_or(&NULL);
        let spec = field(pod, "spec").unwrap_or(&NULL);
        if self.exemptions.runtime_class(spec) {
            return Decision::exempt("runtimeClass");
        }
        check_pod(&policy, meta, spec)
    }

    /// A workload create or update ([`is_workload`] kinds): audit and warn only.
    pub fn admit_workload(&self, request: &Request<'_>, kind: &str, object: &Value) -> Decision {
        if !request.subresource.is_empty() {
            return Decision::default();
        }
        if self.exemptions.namespace(request.namespace) {
            return Decision::exempt("namespace");
        }
        if self.exemptions.username(request.username) {
            return Decision::exempt("user");
        }
        let policy = self.namespace_policy(request.namespace_labels);
        if policy.errors.is_empty()
            && policy.warn.level == Level::Privileged
            && policy.audit.level == Level::Privileged
        {
            return Decision::default();
        }
        let Some(template) = pod_template(kind, object) else {
            return Decision::default();
        };
        let spec = field(template, "spec").unwrap_or(&NULL);
        if self.exemptions.runtime_class(spec) {
            return Decision::exempt("runtimeClass");
        }
        check_template(&policy, kind, object)
    }

    /// A namespace create (`old_labels` None) or update; subresources (`status`, `finalize`)
    /// are not reviewed.
    pub fn review_namespace(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        old_labels: Option<&BTreeMap<String, String>>,
    ) -> NamespaceReview {
        let new = self.namespace_policy(labels);
        let mut review = NamespaceReview::default();
        let Some(old_labels) = old_labels else {
            if !new.errors.is_empty() {
                review.invalid = new.errors;
            } else if self.exemptions.namespace(name) {
                review
                    .warnings
                    .extend(self.exempt_namespace_warning(name, &new, labels));
            }
            return review;
        };
        let old = self.namespace_policy(old_labels);
        // Labels that were already invalid in the same way do not block other updates.
        if !new.errors.is_empty() && (old.errors.is_empty() || new.errors != old.errors) {
            review.invalid = new.errors;
            return review;
        }
        // Only a stricter enforce level can newly refuse existing pods.
        if new.enforce == old.enforce
            || new.enforce.level == Level::Privileged
            || (new.enforce.version == old.enforce.version
                && new.enforce.level <= old.enforce.level)
        {
            return review;
        }
        if self.exemptions.namespace(name) {
            review
                .warnings
                .extend(self.exempt_namespace_warning(name, &new, labels));
            return review;
        }
        review.check_existing_pods = Some(new.enforce);
        review
    }

    /// The warnings about the pods of `namespace` under a new enforce level (see
    /// [`NamespaceReview::check_existing_pods`]); pods of exempt runtime classes are skipped.
    pub fn namespace_warnings(
        &self,
        namespace: &str,
        enforce: &LevelVersion,
        pods: &[Value],
    ) -> Vec<String> {
        pods_in_namespace_warnings(namespace, enforce, pods, &self.exemptions)
    }

    /// Tells whoever labels an exempt namespace that its labels will be ignored.
    fn exempt_namespace_warning(
        &self,
        name: &str,
        policy: &NamespacePolicy,
        labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        if policy.fully_privileged()
            || policy.equivalent(&NamespacePolicy::from_defaults(&self.defaults))
        {
            return None;
        }
        let mut modes = Vec::new();
        let mut mode = |mode: &str, lv: &LevelVersion, level_label: &str, version_label: &str| {
            if lv.level != Level::Privileged
                && (labels.contains_key(level_label) || labels.contains_key(version_label))
            {
                modes.push(format!("{mode}={lv}"));
            }
        };
        mode(
            "enforce",
            &policy.enforce,
            ENFORCE_LEVEL_LABEL,
            ENFORCE_VERSION_LABEL,
        );
        mode(
            "audit",
            &policy.audit,
            AUDIT_LEVEL_LABEL,
            AUDIT_VERSION_LABEL,
        );
        mode("warn", &policy.warn, WARN_LEVEL_LABEL, WARN_VERSION_LABEL);
        Some(format!(
            "namespace {} is exempt from Pod Security, and the policy ({}) will be ignored",
            go_quote(name),
            modes.join(", ")
        ))
    }
}

/// Whether a pod update can change the outcome: upstream re-evaluates only when containers are
/// added or removed or an image changes, the only mutable fields the checks could care about.
pub fn significant_pod_update(pod: &Value, old_pod: &Value) -> bool {
    let spec = field(pod, "spec").unwrap_or(&NULL);
    let old_spec = field(old_pod, "spec").unwrap_or(&NULL);
    for list in ["containers", "initContainers"] {
        let new = array(spec, list);
        let old = array(old_spec, list);
        if new.len() != old.len() || new.iter().zip(old).any(|(n, o)| image(n) != image(o)) {
            return true;
        }
    }
    let old_ephemeral = array(old_spec, "ephemeralContainers");
    array(spec, "ephemeralContainers").iter().any(|c| {
        match old_ephemeral
            .iter()
            .find(|o| container_name(o) == container_name(c))
        {
            Some(o) => image(o) != image(c),
            None => true,
        }
    })
}

fn image(container: &Value) -> Option<&str> {
    field(container, "image").and_then(Value::as_str)
}

// ---------------------------------------------------------------------------------------------
// The checks.

/// One failed check.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Violation {
    reason: String,
    detail: String,
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// The pod being checked.
struct PodView<'a> {
    meta: &'a Value,
    spec: &'a Value,
}

impl<'a> PodView<'a> {
    /// Init containers, containers, then ephemeral containers, as upstream visits them.
    fn containers(&self) -> impl Iterator<Item = &'a Value> {
        let spec = self.spec;
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .flat_map(move |list| array(spec, list).iter())
    }

    fn security_context(&self) -> Option<&'a Value> {
        field(self.spec, "securityContext")
    }

    fn windows(&self) -> bool {
        field(self.spec, "os")
            .and_then(|os| field(os, "name"))
            .and_then(Value::as_str)
            == Some("windows")
    }

    fn annotations(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        field(self.meta, "annotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
    }
}

/// A check in upstream's registry: its ID (checks run in ID order, baseline before
/// restricted), the first policy minor version it exists in, and the baseline check it
/// replaces at the restricted level.
struct Check {
    id: &'static str,
    level: Level,
    since: u64,
    overrides: Option<&'static str>,
    run: fn(&PodView<'_>, u64) -> Option<Violation>,
}

const fn check(
    id: &'static str,
    level: Level,
    run: fn(&PodView<'_>, u64) -> Option<Violation>,
) -> Check {
    Check {
        id,
        level,
        since: 0,
        overrides: None,
        run,
    }
}

const CHECKS: &[Check] = &[
    check("appArmorProfile", Level::Baseline, app_armor_profile),
    check(
        "capabilities_baseline",
        Level::Baseline,
        capabilities_baseline,
    ),
    check("hostNamespaces", Level::Baseline, host_namespaces),
    check("hostPathVolumes", Level::Baseline, host_path_volumes),
    check("hostPorts", Level::Baseline, host_ports),
    check("privileged", Level::Baseline, privileged),
    check("procMount", Level::Baseline, proc_mount),
    check("seLinuxOptions", Level::Baseline, se_linux_options),
    check("seccompProfile_baseline", Level::Baseline, seccomp_baseline),
    check("sysctls", Level::Baseline, sysctls),
    check("windowsHostProcess", Level::Baseline, windows_host_process),
    Check {
        since: 8,
        ..check(
            "allowPrivilegeEscalation",
            Level::Restricted,
            allow_privilege_escalation,
        )
    },
    Check {
        since: 22,
        overrides: Some("capabilities_baseline"),
        ..check(
            "capabilities_restricted",
            Level::Restricted,
            capabilities_restricted,
        )
    },
    Check {
        overrides: Some("hostPathVolumes"),
        ..check("restrictedVolumes", Level::Restricted, restricted_volumes)
    },
    check("runAsNonRoot", Level::Restricted, run_as_non_root),
    Check {
        since: 23,
        ..check("runAsUser", Level::Restricted, run_as_user)
    },
    Check {
        since: 19,
        overrides: Some("seccompProfile_baseline"),
        ..check(
            "seccompProfile_restricted",
            Level::Restricted,
            seccomp_restricted,
        )
    },
];

/// What `lv` finds wrong with a pod, in upstream's order.
fn violations(lv: LevelVersion, pod: &PodView<'_>) -> Vec<Violation> {
    let minor = lv.version.policy_minor();
    let active = |c: &&Check| c.since <= minor;
    let overridden: Vec<&str> = match lv.level {
        Level::Restricted => CHECKS
            .iter()
            .filter(active)
            .filter(|c| c.level == Level::Restricted)
            .filter_map(|c| c.overrides)
            .collect(),
        _ => Vec::new(),
    };
    CHECKS
        .iter()
        .filter(active)
        .filter(|c| match lv.level {
            Level::Privileged => false,
            Level::Baseline => c.level == Level::Baseline,
            Level::Restricted => !overridden.contains(&c.id),
        })
        .filter_map(|c| (c.run)(pod, minor))
        .collect()
}

fn app_armor_profile(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let bad_type = |sc: &Value| -> Option<String> {
        let profile = field(sc, "appArmorProfile")?;
        let kind = field(profile, "type").and_then(Value::as_str).unwrap_or("");
        (!matches!(kind, "RuntimeDefault" | "Localhost")).then(|| kind.to_string())
    };
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(kind) = pod.security_context().and_then(bad_type) {
        setters.push("pod".to_string());
        bad_values.insert(kind);
    }
    let mut bad_containers = Vec::new();
    for c in pod.containers() {
        if let Some(kind) = security_context(c).and_then(bad_type) {
            bad_containers.push(container_name(c));
            bad_values.insert(kind);
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    let mut bad_annotations: Vec<String> = pod
        .annotations()
        .filter(|(k, v)| {
            k.starts_with(ANNOTATION_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    let mut bad_values: Vec<String> = bad_values.into_iter().collect();
    if !bad_annotations.is_empty() {
        bad_annotations.sort();
        setters.push(pluralize("annotation", "annotations", bad_annotations.len()).to_string());
        bad_values.extend(bad_annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad_values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&bad_values)
        ),
    )
}

fn capabilities_baseline(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    const DEFAULT_CAPABILITIES: &[&str] = &[
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    let mut bad_containers = Vec::new();
    let mut added = BTreeSet::new();
    for c in pod.containers() {
        let Some(caps) = security_context(c).and_then(|sc| field(sc, "capabilities")) else {
            continue;
        };
        let mut valid = true;
        for cap in strings(caps, "add") {
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                valid = false;
                added.insert(cap.to_string());
            }
        }
        if !valid {
            bad_containers.push(container_name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_containers),
            join_quote(&added.into_iter().collect::<Vec<_>>())
        ),
    )
}

fn host_namespaces(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    let shared: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|ns| flag(pod.spec, ns))
        .map(|ns| format!("{ns}=true"))
        .collect();
    if shared.is_empty() {
        return None;
    }
    violation("host namespaces", shared.join(", "))
}

fn host_path_volumes(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    let volumes: Vec<&str> = array(pod.spec, "volumes")
        .iter()
        .filter(|v| field(v, "hostPath").is_some())
        .map(container_name)
        .collect();
    if volumes.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", volumes.len()),
            join_quote(&volumes)
        ),
    )
}

fn host_ports(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    // Upstream sorts the ports as strings.
    let mut ports = BTreeSet::new();
    for c in pod.containers() {
        let mut valid = true;
        for port in array(c, "ports") {
            let host_port = field(port, "hostPort").and_then(Value::as_i64).unwrap_or(0);
            if host_port != 0 {
                valid = false;
                ports.insert(host_port.to_string());
            }
        }
        if !valid {
            bad_containers.push(container_name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn privileged(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| security_context(c).is_some_and(|sc| flag(sc, "privileged")))
        .map(container_name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

fn proc_mount(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut types = BTreeSet::new();
    for c in pod.containers() {
        let Some(mount) = security_context(c).and_then(|sc| field(sc, "procMount")) else {
            continue;
        };
        let mount = mount.as_str().unwrap_or("");
        if mount != "Default" {
            bad_containers.push(container_name(c));
            types.insert(mount.to_string());
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad_containers),
            join_quote(&types.into_iter().collect::<Vec<_>>())
        ),
    )
}

fn se_linux_options(pod: &PodView<'_>, minor: u64) -> Option<Violation> {
    let allowed_type = |t: &str| {
        matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t"
        ) || (minor >= 31 && t == "container_engine_t")
    };
    let mut bad_types = BTreeSet::new();
    let mut set_user = false;
    let mut set_role = false;
    let mut valid = |sc: &Value| -> bool {
        let Some(opts) = field(sc, "seLinuxOptions") else {
            return true;
        };
        let text = |key| field(opts, key).and_then(Value::as_str).unwrap_or("");
        let mut ok = true;
        if !allowed_type(text("type")) {
            ok = false;
            bad_types.insert(text("type").to_string());
        }
        if !text("user").is_empty() {
            ok = false;
            set_user = true;
        }
        if !text("role").is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    if pod.security_context().is_some_and(|sc| !valid(sc)) {
        setters.push("pod".to_string());
    }
    let bad_containers: Vec<&str> = pod
        .containers()
        .filter(|c| security_context(c).is_some_and(|sc| !valid(sc)))
        .map(container_name)
        .collect();
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types.into_iter().collect::<Vec<_>>())
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn valid_seccomp_type(sc: &Value) -> Option<Result<(), String>> {
    let profile = field(sc, "seccompProfile")?;
    let kind = field(profile, "type").and_then(Value::as_str).unwrap_or("");
    Some(match kind {
        "RuntimeDefault" | "Localhost" => Ok(()),
        other => Err(other.to_string()),
    })
}

fn seccomp_baseline(pod: &PodView<'_>, minor: u64) -> Option<Violation> {
    if minor < 19 {
        return seccomp_annotations(pod);
    }
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(Err(kind)) = pod.security_context().and_then(valid_seccomp_type) {
        setters.push("pod".to_string());
        bad_values.insert(kind);
    }
    let mut bad_containers = Vec::new();
    for c in pod.containers() {
        if let Some(Err(kind)) = security_context(c).and_then(valid_seccomp_type) {
            bad_containers.push(container_name(c));
            bad_values.insert(kind);
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&bad_values.into_iter().collect::<Vec<_>>())
        ),
    )
}

/// Policy versions before 1.19 read seccomp from the alpha annotations.
fn seccomp_annotations(pod: &PodView<'_>) -> Option<Violation> {
    const POD_KEY: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let annotation = |key: &str| {
        pod.annotations()
            .find(|(k, _)| *k == key)
            .filter(|(_, v)| !valid(v))
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
    };
    let mut forbidden = BTreeSet::new();
    forbidden.extend(annotation(POD_KEY));
    for c in pod.containers() {
        forbidden.extend(annotation(&format!(
            "{CONTAINER_PREFIX}{}",
            container_name(c)
        )));
    }
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn sysctls(pod: &PodView<'_>, minor: u64) -> Option<Violation> {
    let allowed = |name: &str| {
        matches!(
            name,
            "kernel.shm_rmid_forced"
                | "net.ipv4.ip_local_port_range"
                | "net.ipv4.tcp_syncookies"
                | "net.ipv4.ping_group_range"
                | "net.ipv4.ip_unprivileged_port_start"
        ) || (minor >= 27 && name == "net.ipv4.ip_local_reserved_ports")
            || (minor >= 29
                && matches!(
                    name,
                    "net.ipv4.tcp_keepalive_time"
                        | "net.ipv4.tcp_fin_timeout"
                        | "net.ipv4.tcp_keepalive_intvl"
                        | "net.ipv4.tcp_keepalive_probes"
                ))
            || (minor >= 32 && matches!(name, "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem"))
    };
    let forbidden: Vec<&str> = pod
        .security_context()
        .map(|sc| array(sc, "sysctls"))
        .unwrap_or_default()
        .iter()
        .map(|s| field(s, "name").and_then(Value::as_str).unwrap_or(""))
        .filter(|name| !allowed(name))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    let host_process =
        |sc: &Value| field(sc, "windowsOptions").is_some_and(|w| flag(w, "hostProcess"));
    let mut setters = Vec::new();
    if pod.security_context().is_some_and(host_process) {
        setters.push("pod".to_string());
    }
    let bad_containers: Vec<&str> = pod
        .containers()
        .filter(|c| security_context(c).is_some_and(host_process))
        .map(container_name)
        .collect();
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn allow_privilege_escalation(pod: &PodView<'_>, minor: u64) -> Option<Violation> {
    // From 1.25 Windows pods are exempt: the API refuses the field on them.
    if minor >= 25 && pod.windows() {
        return None;
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| {
            security_context(c)
                .and_then(|sc| field(sc, "allowPrivilegeEscalation"))
                .and_then(Value::as_bool)
                .unwrap_or(true)
        })
        .map(container_name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn capabilities_restricted(pod: &PodView<'_>, minor: u64) -> Option<Violation> {
    if minor >= 25 && pod.windows() {
        return None;
    }
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in pod.containers() {
        let Some(caps) = security_context(c).and_then(|sc| field(sc, "capabilities")) else {
            missing_drop_all.push(container_name(c));
            continue;
        };
        if !strings(caps, "drop").any(|cap| cap == "ALL") {
            missing_drop_all.push(container_name(c));
        }
        let mut added_forbidden = false;
        for cap in strings(caps, "add") {
            if cap != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden.insert(cap.to_string());
            }
        }
        if added_forbidden {
            adding_forbidden.push(container_name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(&forbidden.into_iter().collect::<Vec<_>>())
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn restricted_volumes(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    const ALLOWED: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    // In upstream's order of precedence, for a volume that (invalidly) sets several.
    const RESTRICTED: &[&str] = &[
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "nfs",
        "iscsi",
        "glusterfs",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "fc",
        "azureFile",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
    ];
    let mut bad_volumes = Vec::new();
    let mut bad_types = BTreeSet::new();
    for volume in array(pod.spec, "volumes") {
        if ALLOWED.iter().any(|t| field(volume, t).is_some()) {
            continue;
        }
        bad_volumes.push(container_name(volume));
        let kind = RESTRICTED
            .iter()
            .find(|t| field(volume, t).is_some())
            .copied()
            .unwrap_or("unknown");
        bad_types.insert(kind);
    }
    if bad_volumes.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad_volumes.len()),
            join_quote(&bad_volumes),
            pluralize("uses", "use", bad_volumes.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                bad_types.len()
            ),
            join_quote(&bad_types.into_iter().collect::<Vec<_>>())
        ),
    )
}

fn run_as_non_root(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    let non_root = |sc: &Value| field(sc, "runAsNonRoot").and_then(Value::as_bool);
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match pod.security_context().and_then(non_root) {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in pod.containers() {
        match security_context(c).and_then(non_root) {
            Some(false) => explicitly_bad.push(container_name(c)),
            Some(true) => {}
            None if !pod_non_root => implicitly_bad.push(container_name(c)),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicitly_bad.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicitly_bad)
            ),
        );
    }
    None
}

fn run_as_user(pod: &PodView<'_>, _: u64) -> Option<Violation> {
    let root = |sc: &Value| field(sc, "runAsUser").and_then(Value::as_i64) == Some(0);
    let mut setters = Vec::new();
    if pod.security_context().is_some_and(root) {
        setters.push("pod".to_string());
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| security_context(c).is_some_and(root))
        .map(container_name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

fn seccomp_restricted(pod: &PodView<'_>, minor: u64) -> Option<Violation> {
    if minor >= 25 && pod.windows() {
        return None;
    }
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_set = false;
    match pod.security_context().and_then(valid_seccomp_type) {
        Some(Err(kind)) => {
            setters.push("pod".to_string());
            bad_values.insert(kind);
        }
        Some(Ok(())) => pod_set = true,
        None => {}
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in pod.containers() {
        match security_context(c).and_then(valid_seccomp_type) {
            Some(Err(kind)) => {
                explicitly_bad.push(container_name(c));
                bad_values.insert(kind);
            }
            Some(Ok(())) => {}
            None if !pod_set => implicitly_bad.push(container_name(c)),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&bad_values.into_iter().collect::<Vec<_>>())
            ),
        );
    }
    if !implicitly_bad.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
                containers_phrase(&implicitly_bad)
            ),
        );
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Reading JSON and writing upstream's phrases.

/// A field, with `null` read as absent (as a Go nil pointer).
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

fn flag(v: &Value, key: &str) -> bool {
    field(v, key).and_then(Value::as_bool) == Some(true)
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    field(v, key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn strings<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    array(v, key).iter().map(|s| s.as_str().unwrap_or(""))
}

fn security_context(container: &Value) -> Option<&Value> {
    field(container, "securityContext")
}

/// The `name` of a container or a volume.
fn container_name(v: &Value) -> &str {
    field(v, "name").and_then(Value::as_str).unwrap_or("")
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 { singular } else { plural }
}

/// `"a", "b"`: items in double quotes without escaping, as upstream's `joinQuote`.
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", items.join("\", \""))
}

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Go's `%q` of a string: double quotes with Go escapes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's aggregate error text: one message alone, several as `[a, b]`, duplicates once.
fn aggregate(messages: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for m in messages {
        if !unique.contains(&m) {
            unique.push(m);
        }
    }
    match unique.len() {
        0 => String::new(),
        1 => unique.remove(0),
        _ => format!("[{}]", unique.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Runs one check, by its upstream ID, at the newest policy version.
    fn run(id: &str, meta: Value, spec: Value) -> Option<(String, String)> {
        let check = CHECKS.iter().find(|c| c.id == id).expect("known check");
        (check.run)(
            &PodView {
                meta: &meta,
                spec: &spec,
            },
            NEWEST_POLICY_MINOR,
        )
        .map(|v| (v.reason, v.detail))
    }

    fn fails(id: &str, spec: Value) -> (String, String) {
        run(id, json!({}), spec).unwrap_or_else(|| panic!("{id} should fail"))
    }

    fn passes(id: &str, spec: Value) {
        assert_eq!(run(id, json!({}), spec), None, "{id} should pass");
    }

    fn pair(reason: &str, detail: &str) -> (String, String) {
        (reason.to_string(), detail.to_string())
    }

    /// A container with this securityContext.
    fn c(name: &str, security_context: Value) -> Value {
        json!({"name": name, "image": "busybox", "securityContext": security_context})
    }

    /// A pod that passes the restricted level.
    fn restricted_spec() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [c("app", json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            }))],
        })
    }

    fn policy(pairs: &[(&str, &str)]) -> NamespacePolicy {
        namespace_policy(&labels(pairs), &Defaults::default())
    }

    #[test]
    fn checks_run_in_upstream_order() {
        // Upstream sorts check IDs (bytewise) within a level, baseline first.
        for level in [Level::Baseline, Level::Restricted] {
            let ids: Vec<&str> = CHECKS
                .iter()
                .filter(|c| c.level == level)
                .map(|c| c.id)
                .collect();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(ids, sorted);
        }
        assert!(
            CHECKS
                .iter()
                .take_while(|c| c.level == Level::Baseline)
                .count()
                == 11
        );
    }

    #[test]
    fn app_armor_profile() {
        passes(
            "appArmorProfile",
            json!({
                "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
                "containers": [c("a", json!({"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}))],
            }),
        );
        assert_eq!(
            fails(
                "appArmorProfile",
                json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}})
            ),
            pair(
                "forbidden AppArmor profile",
                r#"pod must not set AppArmor profile type to "Unconfined""#
            )
        );
        assert_eq!(
            fails(
                "appArmorProfile",
                json!({
                    "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                    "containers": [c("foo", json!({"appArmorProfile": {"type": "Unconfined"}}))],
                })
            ),
            pair(
                "forbidden AppArmor profile",
                r#"pod and container "foo" must not set AppArmor profile type to "Unconfined""#
            )
        );
        let meta = json!({"annotations": {
            "container.apparmor.security.beta.kubernetes.io/a": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
            "container.apparmor.security.beta.kubernetes.io/c": "localhost/x",
            "container.apparmor.security.beta.kubernetes.io/d": "",
            "container.apparmor.security.beta.kubernetes.io/e": "bogus",
        }});
        assert_eq!(
            run("appArmorProfile", meta, json!({})),
            Some(pair(
                "forbidden AppArmor profiles",
                r#"annotations must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/a="unconfined"", "container.apparmor.security.beta.kubernetes.io/e="bogus"""#
            ))
        );
    }

    #[test]
    fn capabilities_baseline() {
        passes(
            "capabilities_baseline",
            json!({"containers": [c("a", json!({"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]}}))]}),
        );
        assert_eq!(
            fails(
                "capabilities_baseline",
                json!({"containers": [
                    c("a", json!({"capabilities": {"add": ["FOO", "BAR"]}})),
                    c("b", json!({"capabilities": {"add": ["BAR", "BAZ"]}})),
                ]})
            ),
            pair(
                "non-default capabilities",
                r#"containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add"#
            )
        );
    }

    #[test]
    fn host_namespaces() {
        passes(
            "hostNamespaces",
            json!({"hostNetwork": false, "hostPID": null}),
        );
        assert_eq!(
            fails(
                "hostNamespaces",
                json!({"hostNetwork": true, "hostPID": true, "hostIPC": true})
            ),
            pair(
                "host namespaces",
                "hostNetwork=true, hostPID=true, hostIPC=true"
            )
        );
        assert_eq!(
            fails("hostNamespaces", json!({"hostIPC": true})),
            pair("host namespaces", "hostIPC=true")
        );
    }

    #[test]
    fn host_path_volumes() {
        passes(
            "hostPathVolumes",
            json!({"volumes": [{"name": "c", "emptyDir": {}}]}),
        );
        assert_eq!(
            fails(
                "hostPathVolumes",
                json!({"volumes": [
                    {"name": "a", "hostPath": {"path": "/"}},
                    {"name": "b", "hostPath": {}},
                    {"name": "c", "emptyDir": {}},
                ]})
            ),
            pair("hostPath volumes", r#"volumes "a", "b""#)
        );
        assert_eq!(
            fails(
                "hostPathVolumes",
                json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]})
            ),
            pair("hostPath volumes", r#"volume "h""#)
        );
    }

    #[test]
    fn host_ports() {
        passes(
            "hostPorts",
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 0}]}]}),
        );
        assert_eq!(
            fails(
                "hostPorts",
                json!({"containers": [
                    {"name": "a", "ports": [{"hostPort": 0}]},
                    {"name": "b", "ports": [{"hostPort": 0}, {"hostPort": 20}]},
                ]})
            ),
            pair("hostPort", r#"container "b" uses hostPort 20"#)
        );
        assert_eq!(
            fails(
                "hostPorts",
                json!({"initContainers": [
                    {"name": "b", "ports": [{"hostPort": 10}, {"hostPort": 20}]},
                ], "containers": [
                    {"name": "c", "ports": [{"hostPort": 10}, {"hostPort": 30}]},
                ]})
            ),
            pair(
                "hostPort",
                r#"containers "b", "c" use hostPorts 10, 20, 30"#
            )
        );
    }

    #[test]
    fn privileged() {
        passes(
            "privileged",
            json!({"containers": [c("a", json!({"privileged": false})), {"name": "b"}]}),
        );
        assert_eq!(
            fails(
                "privileged",
                json!({"containers": [
                {"name": "a"},
                c("b", json!({})),
                c("c", json!({"privileged": false})),
                c("d", json!({"privileged": true})),
            ], "ephemeralContainers": [c("e", json!({"privileged": true}))]})
            ),
            pair(
                "privileged",
                r#"containers "d", "e" must not set securityContext.privileged=true"#
            )
        );
    }

    #[test]
    fn proc_mount() {
        passes(
            "procMount",
            json!({"containers": [c("a", json!({"procMount": "Default"})), c("b", json!({"procMount": null}))]}),
        );
        assert_eq!(
            fails(
                "procMount",
                json!({"containers": [
                    c("c", json!({"procMount": "Default"})),
                    c("d", json!({"procMount": "Unmasked"})),
                    c("e", json!({"procMount": "other"})),
                ]})
            ),
            pair(
                "procMount",
                r#"containers "d", "e" must not set securityContext.procMount to "Unmasked", "other""#
            )
        );
    }

    #[test]
    fn se_linux_options() {
        passes(
            "seLinuxOptions",
            json!({
                "securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1"}},
                "containers": [c("a", json!({"seLinuxOptions": {"type": "container_engine_t"}}))],
            }),
        );
        assert_eq!(
            fails(
                "seLinuxOptions",
                json!({
                    "securityContext": {"seLinuxOptions": {"type": "foo_t"}},
                    "containers": [
                        c("a", json!({"seLinuxOptions": {"type": "bar_t", "user": "u"}})),
                        c("b", json!({"seLinuxOptions": {"role": "r"}})),
                    ],
                })
            ),
            pair(
                "seLinuxOptions",
                r#"pod and containers "a", "b" set forbidden securityContext.seLinuxOptions: types "bar_t", "foo_t"; user may not be set; role may not be set"#
            )
        );
        // container_engine_t is allowed from policy version 1.31 on.
        let spec = json!({"securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}});
        let pod = PodView {
            meta: &NULL,
            spec: &spec,
        };
        assert!(
            violations(LevelVersion::new(Level::Baseline, Version::V1(30)), &pod)
                .iter()
                .any(|v| v.reason == "seLinuxOptions")
        );
        assert!(violations(LevelVersion::new(Level::Baseline, Version::V1(31)), &pod).is_empty());
    }

    #[test]
    fn seccomp_profile_baseline() {
        passes(
            "seccompProfile_baseline",
            json!({
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [c("a", json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "p"}})), {"name": "b"}],
            }),
        );
        assert_eq!(
            fails(
                "seccompProfile_baseline",
                json!({
                    "securityContext": {"seccompProfile": {"type": "Unconfined"}},
                    "containers": [c("a", json!({"seccompProfile": {"type": "Unconfined"}})), c("b", json!({"seccompProfile": {"type": "Other"}}))],
                })
            ),
            pair(
                "seccompProfile",
                r#"pod and containers "a", "b" must not set securityContext.seccompProfile.type to "Other", "Unconfined""#
            )
        );
        // Policy versions before 1.19 read the alpha annotations instead.
        let meta = json!({"annotations": {
            "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
            "container.seccomp.security.alpha.kubernetes.io/a": "docker/default",
            "container.seccomp.security.alpha.kubernetes.io/b": "bogus",
        }});
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let found = violations(
            LevelVersion::new(Level::Baseline, Version::V1(18)),
            &PodView {
                meta: &meta,
                spec: &spec,
            },
        );
        assert_eq!(
            forbidden_detail(&found),
            r#"seccompProfile (forbidden annotations container.seccomp.security.alpha.kubernetes.io/b="bogus", seccomp.security.alpha.kubernetes.io/pod="unconfined")"#
        );
    }

    #[test]
    fn sysctls() {
        passes(
            "sysctls",
            json!({"securityContext": {"sysctls": [
                {"name": "kernel.shm_rmid_forced", "value": "0"},
                {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"},
            ]}}),
        );
        assert_eq!(
            fails(
                "sysctls",
                json!({"securityContext": {"sysctls": [
                    {"name": "net.ipv4.ip_forward"},
                    {"name": "net.ipv4.tcp_syncookies"},
                    {"name": "kernel.msgmax"},
                ]}})
            ),
            pair("forbidden sysctls", "net.ipv4.ip_forward, kernel.msgmax")
        );
        // tcp_rmem joined the safe list in policy version 1.32.
        let spec = json!({"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem"}]}});
        let pod = PodView {
            meta: &NULL,
            spec: &spec,
        };
        assert_eq!(
            violations(LevelVersion::new(Level::Baseline, Version::V1(31)), &pod).len(),
            1
        );
        assert!(violations(LevelVersion::new(Level::Baseline, Version::V1(32)), &pod).is_empty());
    }

    #[test]
    fn windows_host_process() {
        passes(
            "windowsHostProcess",
            json!({"securityContext": {"windowsOptions": {"hostProcess": false}}}),
        );
        assert_eq!(
            fails(
                "windowsHostProcess",
                json!({
                    "securityContext": {"windowsOptions": {"hostProcess": true}},
                    "containers": [c("a", json!({"windowsOptions": {"hostProcess": true}})), c("b", json!({"windowsOptions": {"hostProcess": false}}))],
                })
            ),
            pair(
                "hostProcess",
                r#"pod and container "a" must not set securityContext.windowsOptions.hostProcess=true"#
            )
        );
    }

    #[test]
    fn allow_privilege_escalation() {
        passes(
            "allowPrivilegeEscalation",
            json!({"containers": [c("a", json!({"allowPrivilegeEscalation": false}))]}),
        );
        // Windows pods are exempt.
        passes(
            "allowPrivilegeEscalation",
            json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}),
        );
        assert_eq!(
            fails(
                "allowPrivilegeEscalation",
                json!({"containers": [
                    {"name": "a"},
                    c("b", json!({"allowPrivilegeEscalation": null})),
                    c("c", json!({"allowPrivilegeEscalation": true})),
                    c("d", json!({"allowPrivilegeEscalation": false})),
                ]})
            ),
            pair(
                "allowPrivilegeEscalation != false",
                r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#
            )
        );
    }

    #[test]
    fn capabilities_restricted() {
        passes(
            "capabilities_restricted",
            json!({"containers": [c("a", json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}))]}),
        );
        assert_eq!(
            fails(
                "capabilities_restricted",
                json!({"containers": [
                    c("a", json!({"capabilities": {"add": ["FOO", "BAR"]}})),
                    c("b", json!({"capabilities": {"add": ["BAR", "BAZ"]}})),
                    c("c", json!({"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL", "FOO"]}})),
                ]})
            ),
            pair(
                "unrestricted capabilities",
                r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add"#
            )
        );
        assert_eq!(
            fails(
                "capabilities_restricted",
                json!({"os": {"name": "linux"}, "containers": [{"name": "a"}]})
            ),
            pair(
                "unrestricted capabilities",
                r#"container "a" must set securityContext.capabilities.drop=["ALL"]"#
            )
        );
    }

    #[test]
    fn restricted_volumes() {
        passes(
            "restrictedVolumes",
            json!({"volumes": [
                {"name": "a", "configMap": {"name": "x"}},
                {"name": "b", "emptyDir": {}},
                {"name": "c", "projected": {"sources": []}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "x"}},
                {"name": "e", "image": {"reference": "x"}},
            ]}),
        );
        assert_eq!(
            fails(
                "restrictedVolumes",
                json!({"volumes": [
                    {"name": "a", "emptyDir": {}},
                    {"name": "b", "hostPath": {"path": "/"}},
                    {"name": "c", "nfs": {"server": "s", "path": "/"}},
                    {"name": "d", "hostPath": {"path": "/x"}},
                    {"name": "e"},
                ]})
            ),
            pair(
                "restricted volume types",
                r#"volumes "b", "c", "d", "e" use restricted volume types "hostPath", "nfs", "unknown""#
            )
        );
        assert_eq!(
            fails(
                "restrictedVolumes",
                json!({"volumes": [{"name": "g", "gitRepo": {"repository": "r"}}]})
            ),
            pair(
                "restricted volume types",
                r#"volume "g" uses restricted volume type "gitRepo""#
            )
        );
    }

    #[test]
    fn run_as_non_root() {
        passes(
            "runAsNonRoot",
            json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "a"}]}),
        );
        passes(
            "runAsNonRoot",
            json!({"containers": [c("a", json!({"runAsNonRoot": true}))]}),
        );
        assert_eq!(
            fails(
                "runAsNonRoot",
                json!({"containers": [{"name": "a"}, c("b", json!({"runAsNonRoot": true})), c("c", json!({}))]})
            ),
            pair(
                "runAsNonRoot != true",
                r#"pod or containers "a", "c" must set securityContext.runAsNonRoot=true"#
            )
        );
        // Explicit false is reported instead of missing values.
        assert_eq!(
            fails(
                "runAsNonRoot",
                json!({
                    "securityContext": {"runAsNonRoot": false},
                    "containers": [c("a", json!({"runAsNonRoot": false})), {"name": "b"}],
                })
            ),
            pair(
                "runAsNonRoot != true",
                r#"pod and container "a" must not set securityContext.runAsNonRoot=false"#
            )
        );
    }

    #[test]
    fn run_as_user() {
        passes(
            "runAsUser",
            json!({"securityContext": {"runAsUser": 1000}, "containers": [c("a", json!({"runAsUser": 1}))]}),
        );
        assert_eq!(
            fails(
                "runAsUser",
                json!({
                    "securityContext": {"runAsUser": 0},
                    "containers": [c("a", json!({"runAsUser": 0})), c("b", json!({"runAsUser": 0})), c("c", json!({"runAsUser": 1}))],
                })
            ),
            pair(
                "runAsUser=0",
                r#"pod and containers "a", "b" must not set runAsUser=0"#
            )
        );
    }

    #[test]
    fn seccomp_profile_restricted() {
        passes(
            "seccompProfile_restricted",
            json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "a"}]}),
        );
        passes(
            "seccompProfile_restricted",
            json!({"containers": [c("a", json!({"seccompProfile": {"type": "Localhost"}}))]}),
        );
        passes(
            "seccompProfile_restricted",
            json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}),
        );
        assert_eq!(
            fails(
                "seccompProfile_restricted",
                json!({"containers": [{"name": "a"}, {"name": "b"}]})
            ),
            pair(
                "seccompProfile",
                r#"pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#
            )
        );
        assert_eq!(
            fails(
                "seccompProfile_restricted",
                json!({
                    "securityContext": {"seccompProfile": {"type": "Unconfined"}},
                    "containers": [c("a", json!({"seccompProfile": {"type": "Unconfined"}})), {"name": "b"}],
                })
            ),
            pair(
                "seccompProfile",
                r#"pod and container "a" must not set securityContext.seccompProfile.type to "Unconfined""#
            )
        );
    }

    #[test]
    fn baseline_enforce_error_lists_every_violation_in_order() {
        let meta = json!({"name": "p", "namespace": "ns"});
        let spec = json!({
            "hostNetwork": true,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [c("c", json!({"privileged": true}))],
        });
        let decision = check_pod(&policy(&[(ENFORCE_LEVEL_LABEL, "baseline")]), &meta, &spec);
        assert_eq!(
            decision.enforce_error.as_deref(),
            Some(
                r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), hostPath volumes (volume "h"), privileged (container "c" must not set securityContext.privileged=true)"#
            )
        );
        // A refused request gets no warnings; the enforced policy is always recorded.
        assert!(decision.warnings.is_empty());
        assert_eq!(
            decision.audit_annotations,
            BTreeMap::from([(
                ENFORCE_POLICY_ANNOTATION.to_string(),
                "baseline:latest".to_string()
            )])
        );
    }

    #[test]
    fn restricted_messages_for_a_plain_pod_match_kubectl_output() {
        // The pod of the Kubernetes documentation's Pod Security examples.
        let meta = json!({"name": "nginx"});
        let spec = json!({"containers": [{"name": "nginx", "image": "nginx"}]});
        let expected = r#"allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;

        let enforced = check_pod(
            &policy(&[(ENFORCE_LEVEL_LABEL, "restricted")]),
            &meta,
            &spec,
        );
        assert_eq!(
            enforced.enforce_error,
            Some(format!(
                r#"pods "nginx" is forbidden: violates PodSecurity "restricted:latest": {expected}"#
            ))
        );

        let warned = check_pod(
            &policy(&[
                (WARN_LEVEL_LABEL, "restricted"),
                (AUDIT_LEVEL_LABEL, "restricted"),
                (AUDIT_VERSION_LABEL, "v1.30"),
            ]),
            &meta,
            &spec,
        );
        assert!(warned.allowed());
        assert_eq!(
            warned.warnings,
            vec![format!(
                r#"would violate PodSecurity "restricted:latest": {expected}"#
            )]
        );
        assert_eq!(
            warned.audit_annotations.get(AUDIT_VIOLATIONS_ANNOTATION),
            Some(&format!(
                r#"would violate PodSecurity "restricted:v1.30": {expected}"#
            ))
        );
        assert_eq!(
            warned
                .audit_annotations
                .get(ENFORCE_POLICY_ANNOTATION)
                .map(String::as_str),
            Some("privileged:latest")
        );
    }

    #[test]
    fn restricted_includes_baseline_checks_first_and_replaces_overridden_ones() {
        let meta = json!({"name": "p"});
        let mut spec = restricted_spec();
        spec["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}]);
        spec["containers"][0]["securityContext"]["privileged"] = json!(true);
        spec["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
        let decision = check_pod(
            &policy(&[
                (ENFORCE_LEVEL_LABEL, "restricted"),
                (ENFORCE_VERSION_LABEL, "v1.33"),
            ]),
            &meta,
            &spec,
        );
        assert_eq!(
            decision.enforce_error.as_deref(),
            Some(
                r#"pods "p" is forbidden: violates PodSecurity "restricted:v1.33": privileged (container "app" must not set securityContext.privileged=true), unrestricted capabilities (container "app" must not include "SYS_ADMIN" in securityContext.capabilities.add), restricted volume types (volume "h" uses restricted volume type "hostPath")"#
            )
        );
        assert!(
            check_pod(
                &policy(&[(ENFORCE_LEVEL_LABEL, "restricted")]),
                &meta,
                &restricted_spec()
            )
            .allowed()
        );
    }

    #[test]
    fn pod_without_a_name_yet() {
        let spec = json!({"hostPID": true});
        let decision = check_pod(
            &policy(&[(ENFORCE_LEVEL_LABEL, "baseline")]),
            &json!({"generateName": "x-"}),
            &spec,
        );
        assert_eq!(
            decision.enforce_error.as_deref(),
            Some(
                r#"pods is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true)"#
            )
        );
    }

    #[test]
    fn policy_from_labels_and_defaults() {
        let defaults = Defaults {
            enforce: Level::Baseline,
            enforce_version: Version::V1(30),
            ..Defaults::default()
        };
        let p = namespace_policy(&BTreeMap::new(), &defaults);
        assert_eq!(p.enforce.to_string(), "baseline:v1.30");
        assert_eq!(p.warn.to_string(), "privileged:latest");

        // An enforce label alone also sets warn to the same level and version.
        let p = policy(&[
            (ENFORCE_LEVEL_LABEL, "baseline"),
            (ENFORCE_VERSION_LABEL, "v1.29"),
        ]);
        assert_eq!(
            (
                p.enforce.to_string(),
                p.warn.to_string(),
                p.audit.to_string()
            ),
            (
                "baseline:v1.29".into(),
                "baseline:v1.29".into(),
                "privileged:latest".into()
            )
        );
        let p = policy(&[
            (ENFORCE_LEVEL_LABEL, "restricted"),
            (WARN_VERSION_LABEL, "v1.25"),
        ]);
        assert_eq!(p.warn.to_string(), "restricted:v1.25");
        let p = policy(&[
            (ENFORCE_LEVEL_LABEL, "baseline"),
            (WARN_LEVEL_LABEL, "privileged"),
        ]);
        assert_eq!(p.warn.level, Level::Privileged);
        assert!(p.errors.is_empty());
    }

    #[test]
    fn invalid_labels_fail_closed_for_enforce_and_open_for_audit_and_warn() {
        let p = policy(&[
            (ENFORCE_LEVEL_LABEL, "bogus"),
            (ENFORCE_VERSION_LABEL, "v1.01"),
            (AUDIT_LEVEL_LABEL, "x"),
            (WARN_LEVEL_LABEL, "y"),
            (WARN_VERSION_LABEL, "1.30"),
        ]);
        assert_eq!(p.enforce.to_string(), "restricted:latest");
        assert_eq!(p.audit.level, Level::Privileged);
        assert_eq!(p.warn.to_string(), "privileged:latest");
        assert_eq!(
            p.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": must be one of privileged, baseline, restricted"#,
                r#"metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "v1.01": must be "latest" or "v1.x""#,
                r#"metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "x": must be one of privileged, baseline, restricted"#,
                r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "y": must be one of privileged, baseline, restricted"#,
                r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.30": must be "latest" or "v1.x""#,
            ]
        );
        // The pod is evaluated with the fallback policy and the errors are audited.
        let decision = check_pod(&p, &json!({"name": "p"}), &restricted_spec());
        assert!(decision.allowed());
        assert!(decision.audit_annotations[ERROR_ANNOTATION].starts_with(
            r#"Failed to parse policy: [metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": "#
        ));
        let one = policy(&[(ENFORCE_LEVEL_LABEL, "bogus")]);
        assert_eq!(
            invalid_namespace_message("ns", &one.errors),
            r#"Namespace "ns" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": must be one of privileged, baseline, restricted"#
        );
        assert_eq!(
            namespace_label_errors(&labels(&[(ENFORCE_LEVEL_LABEL, "baseline")])),
            Vec::<String>::new()
        );
        assert_eq!(
            namespace_label_errors(&labels(&[(AUDIT_VERSION_LABEL, "v2.0")])).len(),
            1
        );
    }

    #[test]
    fn versions_parse_as_upstream() {
        assert_eq!("latest".parse(), Ok(Version::Latest));
        assert_eq!("v1.0".parse(), Ok(Version::V1(0)));
        assert_eq!("v1.33".parse(), Ok(Version::V1(33)));
        for bad in ["", "v1.", "v1.01", "v2.1", "1.30", "v1.3a", "Latest"] {
            assert_eq!(bad.parse::<Version>(), Err(ParseError::Version), "{bad}");
        }
        assert_eq!("Baseline".parse::<Level>(), Err(ParseError::Level));
    }

    #[test]
    fn old_policy_versions_skip_newer_checks() {
        // runAsUser=0 is only checked from 1.23, dropping capabilities only from 1.22.
        let mut spec = restricted_spec();
        spec["securityContext"]["runAsUser"] = json!(0);
        spec["containers"][0]["securityContext"]["capabilities"] = json!({"add": ["SYS_TIME"]});
        let pod = PodView {
            meta: &NULL,
            spec: &spec,
        };
        let at = |minor| {
            forbidden_reasons(&violations(
                LevelVersion::new(Level::Restricted, Version::V1(minor)),
                &pod,
            ))
        };
        assert_eq!(at(21), "non-default capabilities");
        assert_eq!(at(22), "unrestricted capabilities");
        assert_eq!(at(23), "unrestricted capabilities, runAsUser=0");
    }

    #[test]
    fn workloads_warn_and_audit_but_never_enforce() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"hostIPC": true, "containers": [{"name": "web"}]}}},
        });
        let decision = check_template(
            &policy(&[(ENFORCE_LEVEL_LABEL, "baseline")]),
            "Deployment",
            &deployment,
        );
        assert_eq!(
            decision,
            Decision {
                enforce_error: None,
                warnings: vec![r#"would violate PodSecurity "baseline:latest": host namespaces (hostIPC=true)"#.to_string()],
                audit_annotations: BTreeMap::new(),
            }
        );
        let cronjob = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [c("x", json!({"privileged": true}))]}}}}}});
        let decision = check_template(
            &policy(&[(AUDIT_LEVEL_LABEL, "baseline")]),
            "CronJob",
            &cronjob,
        );
        assert_eq!(
            decision
                .audit_annotations
                .get(AUDIT_VIOLATIONS_ANNOTATION)
                .map(String::as_str),
            Some(
                r#"would violate PodSecurity "baseline:latest": privileged (container "x" must not set securityContext.privileged=true)"#
            )
        );
        assert!(decision.warnings.is_empty());
        // A ReplicationController without a template has nothing to check.
        assert_eq!(
            pod_template("ReplicationController", &json!({"spec": {}})),
            None
        );
        assert!(is_workload("batch", "Job") && !is_workload("apps", "Job"));
    }

    #[test]
    fn admission_flow_applies_exemptions_and_short_cuts() {
        let config = Config {
            defaults: Defaults::default(),
            exemptions: Exemptions {
                usernames: vec!["system:serviceaccount:kube-system:daemon-set-controller".into()],
                runtime_classes: vec!["kata".into()],
                namespaces: vec!["kube-system".into()],
            },
        };
        let strict = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
        let none = BTreeMap::new();
        let request = |namespace, namespace_labels, username, subresource| Request {
            namespace,
            namespace_labels,
            username,
            subresource,
        };
        let bad = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}});

        let d = config.admit_pod(&request("default", &strict, "alice", ""), &bad, None);
        assert!(!d.allowed());
        // Subresources that cannot change the spec are not evaluated; ephemeralcontainers is.
        assert_eq!(
            config.admit_pod(&request("default", &strict, "alice", "status"), &bad, None),
            Decision::default()
        );
        assert!(
            !config
                .admit_pod(
                    &request("default", &strict, "alice", "ephemeralcontainers"),
                    &bad,
                    None
                )
                .allowed()
        );
        assert_eq!(
            config.admit_pod(&request("kube-system", &strict, "alice", ""), &bad, None),
            Decision::exempt("namespace")
        );
        assert_eq!(
            config.admit_pod(
                &request(
                    "default",
                    &strict,
                    "system:serviceaccount:kube-system:daemon-set-controller",
                    ""
                ),
                &bad,
                None
            ),
            Decision::exempt("user")
        );
        let mut kata = bad.clone();
        kata["spec"]["runtimeClassName"] = json!("kata");
        assert_eq!(
            config.admit_pod(&request("default", &strict, "alice", ""), &kata, None),
            Decision::exempt("runtimeClass")
        );
        // A fully privileged namespace records privileged:latest.
        assert_eq!(
            config
                .admit_pod(&request("default", &none, "alice", ""), &bad, None)
                .audit_annotations,
            BTreeMap::from([(
                ENFORCE_POLICY_ANNOTATION.to_string(),
                "privileged:latest".to_string()
            )])
        );
        // An update that changes no image is let through.
        let mut relabelled = bad.clone();
        relabelled["metadata"]["labels"] = json!({"x": "y"});
        assert_eq!(
            config.admit_pod(
                &request("default", &strict, "alice", ""),
                &relabelled,
                Some(&bad)
            ),
            Decision::default()
        );
        let mut new_image = bad.clone();
        new_image["spec"]["containers"][0]["image"] = json!("y");
        assert!(
            !config
                .admit_pod(
                    &request("default", &strict, "alice", ""),
                    &new_image,
                    Some(&bad)
                )
                .allowed()
        );

        // Workloads: warnings only, and nothing at all for privileged warn+audit.
        let rs = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}});
        let d = config.admit_workload(&request("default", &strict, "alice", ""), "ReplicaSet", &rs);
        assert!(d.allowed() && d.warnings.len() == 1);
        let enforce_only = labels(&[
            (ENFORCE_LEVEL_LABEL, "restricted"),
            (WARN_LEVEL_LABEL, "privileged"),
        ]);
        assert_eq!(
            config.admit_workload(
                &request("default", &enforce_only, "alice", ""),
                "ReplicaSet",
                &rs
            ),
            Decision::default()
        );
        assert_eq!(
            config.admit_workload(
                &request("default", &strict, "alice", "scale"),
                "ReplicaSet",
                &rs
            ),
            Decision::default()
        );
    }

    #[test]
    fn significant_updates() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}], "ephemeralContainers": [{"name": "e", "image": "x"}]}});
        assert!(!significant_pod_update(&pod, &pod));
        let mut added = pod.clone();
        added["spec"]["ephemeralContainers"] =
            json!([{"name": "e", "image": "x"}, {"name": "f", "image": "x"}]);
        assert!(significant_pod_update(&added, &pod));
        let mut init = pod.clone();
        init["spec"]["initContainers"] = json!([{"name": "i"}]);
        assert!(significant_pod_update(&init, &pod));
    }

    #[test]
    fn namespace_review() {
        let config = Config {
            exemptions: Exemptions {
                namespaces: vec!["kube-system".into()],
                ..Exemptions::default()
            },
            ..Config::default()
        };
        let bogus = labels(&[(ENFORCE_LEVEL_LABEL, "bogus")]);
        let baseline = labels(&[(ENFORCE_LEVEL_LABEL, "baseline")]);
        let restricted = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);

        // Create: invalid labels are refused; nothing else to check.
        assert_eq!(config.review_namespace("ns", &bogus, None).invalid.len(), 1);
        assert_eq!(
            config.review_namespace("ns", &restricted, None),
            NamespaceReview::default()
        );
        // Update: refused when the invalid labels are new, tolerated when unchanged.
        assert_eq!(
            config
                .review_namespace("ns", &bogus, Some(&baseline))
                .invalid
                .len(),
            1
        );
        let mut bogus_relabelled = bogus.clone();
        bogus_relabelled.insert("team".into(), "a".into());
        assert_eq!(
            config
                .review_namespace("ns", &bogus_relabelled, Some(&bogus))
                .invalid
                .len(),
            0
        );
        // Stricter enforce: check existing pods; looser or same: nothing.
        assert_eq!(
            config
                .review_namespace("ns", &restricted, Some(&baseline))
                .check_existing_pods,
            Some(LevelVersion::new(Level::Restricted, Version::Latest))
        );
        assert_eq!(
            config.review_namespace("ns", &baseline, Some(&restricted)),
            NamespaceReview::default()
        );
        let pinned = labels(&[
            (ENFORCE_LEVEL_LABEL, "baseline"),
            (ENFORCE_VERSION_LABEL, "v1.30"),
        ]);
        assert!(
            config
                .review_namespace("ns", &pinned, Some(&baseline))
                .check_existing_pods
                .is_some()
        );
        // Exempt namespaces are told their labels are ignored.
        assert_eq!(
            config
                .review_namespace("kube-system", &restricted, None)
                .warnings,
            vec![
                r#"namespace "kube-system" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"#
            ]
        );
    }

    #[test]
    fn warnings_about_existing_pods() {
        let pod = |name: &str, owner: Option<&str>, spec: Value| {
            let mut meta = json!({"name": name, "namespace": "ns"});
            if let Some(uid) = owner {
                meta["ownerReferences"] =
                    json!([{"uid": uid, "controller": true, "kind": "ReplicaSet", "name": "rs"}]);
            }
            json!({"metadata": meta, "spec": spec})
        };
        let host_net = json!({"hostNetwork": true, "containers": [{"name": "a"}]});
        let privileged = json!({"containers": [c("a", json!({"privileged": true}))]});
        let pods = vec![
            pod("web-2", Some("u1"), host_net.clone()),
            pod("web-1", Some("u1"), host_net.clone()),
            pod("web-3", Some("u1"), host_net.clone()),
            pod("db", None, privileged),
            pod("ok", None, json!({"containers": [{"name": "a"}]})),
        ];
        let enforce = LevelVersion::new(Level::Baseline, Version::Latest);
        assert_eq!(
            namespace_warnings("ns", &enforce, &pods),
            vec![
                r#"existing pods in namespace "ns" violate the new PodSecurity enforce level "baseline:latest""#,
                "db: privileged",
                "web-1 (and 2 other pods): host namespaces",
            ]
        );
        assert_eq!(
            namespace_warnings("ns", &enforce, &pods[..2]),
            vec![
                r#"existing pods in namespace "ns" violate the new PodSecurity enforce level "baseline:latest""#,
                "web-1 (and 1 other pod): host namespaces",
            ]
        );
        assert!(namespace_warnings("ns", &enforce, &pods[4..]).is_empty());
    }

    #[test]
    fn namespace_check_stops_at_3000_pods() {
        let pods: Vec<Value> = (0..3001)
            .map(|i| json!({"metadata": {"name": format!("p{i:04}")}, "spec": {"hostPID": true}}))
            .collect();
        let enforce = LevelVersion::new(Level::Baseline, Version::V1(33));
        assert_eq!(
            namespace_warnings("big", &enforce, &pods),
            vec![
                "new PodSecurity enforce level only checked against the first 3000 of 3001 existing pods",
                r#"existing pods in namespace "big" violate the new PodSecurity enforce level "baseline:v1.33""#,
                "p0000 (and 2999 other pods): host namespaces",
            ]
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(go_quote("x\ny\u{1}"), r#""x\ny\x01""#);
        assert_eq!(go_quote("ünï"), "\"ünï\"");
    }
}
