//! The identity and access generators: `create serviceaccount|token|role|clusterrole|
//! rolebinding|clusterrolebinding`, building the objects kubectl builds (one rule per API
//! group, subjects in flag order), with its validation messages, `--dry-run` and `-o`.

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Map, Value, json};

use super::Session;
use super::objects::{Output, Shape, go_order, render};
use super::resources::{self, Resource};

const RBAC: &str = "rbac.authorization.k8s.io";

/// The flags every one of these generators takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateOptions {
    /// none, client (print the object, send nothing) or server (the server checks the object
    /// and stores nothing).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "unchanged",
        default_value = "none"
    )]
    pub dry_run: String,
    /// Output format: json, yaml or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// The manager recorded in the object's managedFields.
    #[arg(long, default_value = "kubectl-create")]
    pub field_manager: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRun {
    None,
    Client,
    Server,
}

impl CreateOptions {
    /// `--dry-run` as kubectl reads it, booleans and the bare flag included (deprecated).
    pub fn dry_run(&self) -> anyhow::Result<DryRun> {
        Ok(match self.dry_run.as_str() {
            "none" => DryRun::None,
            "client" => DryRun::Client,
            "server" => DryRun::Server,
            "unchanged" => {
                eprintln!("--dry-run is deprecated and can be replaced with --dry-run=client.");
                DryRun::Client
            }
            "1" | "t" | "T" | "true" | "TRUE" | "True" => {
                eprintln!(
                    "--dry-run={} is deprecated (boolean value) and can be replaced with --dry-run=client.",
                    self.dry_run
                );
                DryRun::Client
            }
            "0" | "f" | "F" | "false" | "FALSE" | "False" => {
                eprintln!(
                    "--dry-run={} is deprecated (boolean value) and can be replaced with --dry-run=none.",
                    self.dry_run
                );
                DryRun::None
            }
            other => bail!(
                "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
            ),
        })
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServiceAccountArgs {
    pub name: Vec<String>,
    #[command(flatten)]
    pub opts: CreateOptions,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    pub name: Vec<String>,
    /// Audience of the token (repeatable); default: the apiserver's.
    #[arg(long)]
    pub audience: Vec<String>,
    /// Requested lifetime (`10m`, `1h`); 0 or unset lets the server choose.
    #[arg(long, default_value = "0s")]
    pub duration: String,
    /// Kind of the object to bind the token to: Node, Pod or Secret.
    #[arg(long, default_value = "")]
    pub bound_object_kind: String,
    /// Name of the object to bind the token to (the token expires when it is deleted).
    #[arg(long, default_value = "")]
    pub bound_object_name: String,
    /// UID of the object to bind the token to (default: the object's).
    #[arg(long, default_value = "")]
    pub bound_object_uid: String,
    /// Output format: json, yaml or name (default: the token alone).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RoleArgs {
    pub name: Vec<String>,
    /// Verbs the rule allows (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub verb: Vec<String>,
    /// Resources the rule applies to: `pods`, `rs.apps`, `pods/log` (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub resource: Vec<String>,
    /// Names of the objects the rule is limited to (repeat for several).
    #[arg(long)]
    pub resource_name: Vec<String>,
    #[command(flatten)]
    pub opts: CreateOptions,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterRoleArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    /// Partial URLs the rule allows: `/logs/*` (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub non_resource_url: Vec<String>,
    /// Labels of the ClusterRoles to aggregate: `k=v[,k2=v2]`.
    #[arg(long)]
    pub aggregation_rule: Vec<String>,
}

/// Who a binding binds, in the order kubectl lists them: users, groups, service accounts.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SubjectArgs {
    /// Users to bind (repeatable).
    #[arg(long)]
    pub user: Vec<String>,
    /// Groups to bind (repeatable).
    #[arg(long)]
    pub group: Vec<String>,
    /// Service accounts to bind, as NAMESPACE:NAME (repeatable).
    #[arg(long)]
    pub serviceaccount: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RoleBindingArgs {
    pub name: Vec<String>,
    /// The Role to bind.
    #[arg(long, default_value = "")]
    pub role: String,
    /// The ClusterRole to bind.
    #[arg(long, default_value = "")]
    pub clusterrole: String,
    #[command(flatten)]
    pub subjects: SubjectArgs,
    #[command(flatten)]
    pub opts: CreateOptions,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterRoleBindingArgs {
    pub name: Vec<String>,
    /// The ClusterRole to bind (required).
    #[arg(long)]
    pub clusterrole: Option<String>,
    #[command(flatten)]
    pub subjects: SubjectArgs,
    #[command(flatten)]
    pub opts: CreateOptions,
}

/// The one NAME a generator takes, with kubectl's message otherwise.
fn one_name(words: &[String], command: &str) -> anyhow::Result<String> {
    match words {
        [name] => Ok(name.clone()),
        _ => bail!(
            "exactly one NAME is required, got {}\nSee 'skiffctl create {command} -h' for help and examples",
            words.len()
        ),
    }
}

fn first_seen(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

/// One `--resource` value: `resource[.group][/subresource]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceArg {
    resource: String,
    group: String,
    subresource: String,
}

fn parse_resources(words: &[String]) -> Vec<ResourceArg> {
    let mut out = Vec::new();
    for w in words {
        let (main, sub) = w.split_once('/').unwrap_or((w, ""));
        let (resource, group) = main.split_once('.').unwrap_or((main, ""));
        let r = ResourceArg {
            resource: resource.into(),
            group: group.into(),
            subresource: sub.into(),
        };
        if r.resource == "*" && !main.contains('.') && !w.contains('/') {
            // A bare `*` is every resource: the others add nothing.
            return vec![r];
        }
        out.push(r);
    }
    out
}

/// Verbs in order, once each; `*` alone when given.
fn verbs_of(words: &[String]) -> Vec<String> {
    if words.iter().any(|v| v == "*") {
        return vec!["*".into()];
    }
    first_seen(words)
}

const STANDARD_VERBS: &[&str] = &[
    "*",
    "get",
    "delete",
    "list",
    "create",
    "update",
    "patch",
    "watch",
    "proxy",
    "deletecollection",
    "use",
    "bind",
    "escalate",
    "impersonate",
];
const NON_RESOURCE_VERBS: &[&str] = &[
    "*", "get", "post", "put", "delete", "patch", "head", "options",
];

/// The verbs that only mean something on some resources, and those resources (group, plural).
fn special_verb(verb: &str) -> Option<&'static [(&'static str, &'static str)]> {
    Some(match verb {
        "use" => &[
            ("policy", "podsecuritypolicies"),
            ("extensions", "podsecuritypolicies"),
        ],
        "bind" | "escalate" => &[(RBAC, "roles"), (RBAC, "clusterroles")],
        "impersonate" => &[
            ("", "users"),
            ("", "serviceaccounts"),
            ("", "groups"),
            ("authentication.k8s.io", "userextras"),
        ],
        _ => return None,
    })
}

/// The served resource `r` names (its group, if given, must match), as kubectl's RESTMapper
/// finds it: plural, singular, kind or short name, core first.
fn lookup<'a>(all: &'a [Resource], r: &ResourceArg) -> Option<&'a Resource> {
    let word = if r.group.is_empty() {
        r.resource.clone()
    } else {
        format!("{}.{}", r.resource, r.group)
    };
    resources::resolve(all, &word)
        .ok()
        .filter(|found| found.len() == 1 && !found[0].categories.contains(&word.to_lowercase()))
        .map(|found| found[0])
}

/// kubectl's checks of a rule's resources against its verbs.
fn validate_resources(
    all: &[Resource],
    verbs: &[String],
    resources: &[ResourceArg],
) -> anyhow::Result<()> {
    for r in resources {
        if r.resource.is_empty() {
            bail!("resource must be specified if apiGroup/subresource specified");
        }
        if r.resource == "*" {
            return Ok(());
        }
        let found = lookup(all, r);
        let (group, resource) = match found {
            Some(f) => (f.group.as_str(), f.plural.as_str()),
            None => (r.group.as_str(), r.resource.as_str()),
        };
        let mut special = false;
        for v in verbs {
            if let Some(allowed) = special_verb(v) {
                if !allowed.contains(&(group, resource)) {
                    bail!("can not perform '{v}' on '{resource}' in group '{group}'");
                }
                special = true;
            }
        }
        if found.is_none() && !special {
            // kubectl prints its RESTMapper's "no match" without `error: `.
            let text = if r.group.is_empty() {
                format!("the server doesn't have a resource type {:?}", r.resource)
            } else {
                format!(
                    "the server doesn't have a resource type {:?} in group {:?}",
                    r.resource, r.group
                )
            };
            return Err(super::Unprefixed(text).into());
        }
    }
    Ok(())
}

/// The rules kubectl generates: one per API group (groups sorted), its resources in the order
/// given, then one for the non-resource URLs.
fn policy_rules(
    all: &[Resource],
    verbs: &[String],
    resources: &[ResourceArg],
    names: &[String],
    urls: &[String],
) -> Vec<Value> {
    let mut by_group: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in resources {
        let (group, mut resource) = match lookup(all, r) {
            Some(f) => (f.group.clone(), f.plural.clone()),
            None => (r.group.clone(), r.resource.clone()),
        };
        if !r.subresource.is_empty() {
            resource = format!("{resource}/{}", r.subresource);
        }
        let list = by_group.entry(group).or_default();
        if !list.contains(&resource) {
            list.push(resource);
        }
    }
    let mut rules = Vec::new();
    for (group, resources) in by_group {
        let mut rule = json!({ "verbs": verbs, "apiGroups": [group], "resources": resources });
        if !names.is_empty() {
            rule["resourceNames"] = json!(names);
        }
        rules.push(rule);
    }
    if !urls.is_empty() {
        rules.push(json!({ "verbs": verbs, "nonResourceURLs": urls }));
    }
    rules
}

/// `--aggregation-rule` values (`k=v,k2=v2`, repeatable) as a label map.
fn aggregation_labels(values: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for value in values {
        for pair in value.split(',') {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                anyhow!(
                    "invalid argument \"{value}\" for \"--aggregation-rule\" flag: malformed pair, expect string=string\nSee 'skiffctl create clusterrole --help' for usage."
                )
            })?;
            out.insert(k.trim().into(), Value::String(v.trim().into()));
        }
    }
    Ok(out)
}

/// A Role, or a ClusterRole when `cluster` (its URLs and aggregation labels) is given, from
/// the flags and validated as kubectl validates them.
fn role_object(
    all: &[Resource],
    a: &RoleArgs,
    cluster: Option<&ClusterRoleArgs>,
    namespace: Option<&str>,
) -> anyhow::Result<Value> {
    let command = if cluster.is_some() {
        "clusterrole"
    } else {
        "role"
    };
    let name = one_name(&a.name, command)?;
    let verbs = verbs_of(&a.verb);
    let resources = parse_resources(&a.resource);
    let names = first_seen(&a.resource_name);
    let (urls, aggregation) = match cluster {
        Some(c) => (
            first_seen(&c.non_resource_url),
            aggregation_labels(&c.aggregation_rule)?,
        ),
        None => (Vec::new(), Map::new()),
    };
    if name.is_empty() {
        bail!("name must be specified");
    }
    let mut metadata = json!({ "name": name });
    if let Some(ns) = namespace.filter(|_| cluster.is_none()) {
        metadata["namespace"] = json!(ns);
    }
    if !aggregation.is_empty() {
        if !urls.is_empty() || !verbs.is_empty() || !resources.is_empty() || !names.is_empty() {
            bail!(
                "aggregation rule must be specified without nonResourceURLs, verbs, resources or resourceNames"
            );
        }
        return Ok(json!({
            "apiVersion": format!("{RBAC}/v1"), "kind": "ClusterRole", "metadata": metadata,
            "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": aggregation }] }
        }));
    }
    if verbs.is_empty() {
        bail!("at least one verb must be specified");
    }
    if cluster.is_some() && resources.is_empty() && urls.is_empty() {
        bail!("one of resource or nonResourceURL must be specified");
    }
    if !resources.is_empty() || cluster.is_none() {
        for v in &verbs {
            if !STANDARD_VERBS.contains(&v.as_str()) {
                eprintln!("Warning: '{v}' is not a standard resource verb");
            }
        }
        if resources.is_empty() {
            bail!("at least one resource must be specified");
        }
        validate_resources(all, &verbs, &resources)?;
    }
    if !urls.is_empty() {
        if let Some(v) = verbs
            .iter()
            .find(|v| !NON_RESOURCE_VERBS.contains(&v.as_str()))
        {
            bail!("invalid verb: '{v}' for nonResourceURL");
        }
        for url in urls.iter().filter(|u| *u != "*") {
            if !url.starts_with('/') {
                bail!("nonResourceURL should start with /");
            }
            if url[..url.len() - 1].contains('*') {
                bail!("nonResourceURL only supports wildcard matches when '*' is at the end");
            }
        }
    }
    Ok(json!({
        "apiVersion": format!("{RBAC}/v1"),
        "kind": if cluster.is_some() { "ClusterRole" } else { "Role" },
        "metadata": metadata,
        "rules": policy_rules(all, &verbs, &resources, &names, &urls),
    }))
}

/// What a binding refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding<'a> {
    /// A RoleBinding in `namespace` (when given with -n) to a Role or ClusterRole.
    Namespaced {
        role: &'a str,
        clusterrole: &'a str,
        namespace: Option<&'a str>,
    },
    /// A ClusterRoleBinding to a ClusterRole.
    Cluster { clusterrole: Option<&'a str> },
}

/// A RoleBinding or ClusterRoleBinding from the flags.
fn binding_object(words: &[String], b: Binding, who: &SubjectArgs) -> anyhow::Result<Value> {
    let (kind, role_kind, role, namespace) = match b {
        Binding::Namespaced {
            role,
            clusterrole,
            namespace,
        } => {
            let name = one_name(words, "rolebinding")?;
            if name.is_empty() {
                bail!("name must be specified");
            }
            if clusterrole.is_empty() == role.is_empty() {
                bail!("exactly one of clusterrole or role must be specified");
            }
            if role.is_empty() {
                ("RoleBinding", "ClusterRole", clusterrole, namespace)
            } else {
                ("RoleBinding", "Role", role, namespace)
            }
        }
        Binding::Cluster { clusterrole } => {
            let Some(clusterrole) = clusterrole else {
                bail!("required flag(s) \"clusterrole\" not set");
            };
            one_name(words, "clusterrolebinding")?;
            ("ClusterRoleBinding", "ClusterRole", clusterrole, None)
        }
    };
    let mut subjects = Vec::new();
    for user in &who.user {
        subjects.push(json!({ "kind": "User", "apiGroup": RBAC, "name": user }));
    }
    for group in &who.group {
        subjects.push(json!({ "kind": "Group", "apiGroup": RBAC, "name": group }));
    }
    for sa in &who.serviceaccount {
        match sa.split(':').collect::<Vec<_>>().as_slice() {
            [ns, n] if !ns.is_empty() && !n.is_empty() => {
                subjects.push(json!({ "kind": "ServiceAccount", "name": n, "namespace": ns }));
            }
            _ => bail!("serviceaccount must be <namespace>:<name>"),
        }
    }
    let mut metadata = json!({ "name": words[0] });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut obj = json!({
        "apiVersion": format!("{RBAC}/v1"), "kind": kind, "metadata": metadata,
        "roleRef": { "apiGroup": RBAC, "kind": role_kind, "name": role }
    });
    if !subjects.is_empty() {
        obj["subjects"] = json!(subjects);
    }
    Ok(obj)
}

/// Nanoseconds in a Go duration (`1h30m`, `-5s`, `0`), or the error pflag reports for it.
fn go_duration(s: &str) -> anyhow::Result<i128> {
    let invalid = || {
        anyhow!(
            "invalid argument \"{s}\" for \"--duration\" flag: time: invalid duration \"{s}\"\nSee 'skiffctl create token --help' for usage."
        )
    };
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(invalid());
        }
        let n: f64 = rest[..end].parse().map_err(|_| invalid())?;
        let tail = &rest[end..];
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let unit = &tail[..unit_end];
        let scale = match unit {
            "" => bail!(
                "invalid argument \"{s}\" for \"--duration\" flag: time: missing unit in duration \"{s}\"\nSee 'skiffctl create token --help' for usage."
            ),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => bail!(
                "invalid argument \"{s}\" for \"--duration\" flag: time: unknown unit \"{other}\" in duration \"{s}\"\nSee 'skiffctl create token --help' for usage."
            ),
        };
        total += n * scale;
        rest = &tail[unit_end..];
    }
    let ns = total.round() as i128;
    Ok(if negative { -ns } else { ns })
}

/// The TokenRequest `create token` sends, validated as kubectl validates the flags.
fn token_request(a: &TokenArgs) -> anyhow::Result<(String, Value)> {
    let name = one_name(&a.name, "token")?;
    if name.is_empty() {
        bail!("service account name is required");
    }
    let duration = go_duration(&a.duration)?;
    if duration < 0 {
        bail!("--duration must be greater than or equal to 0");
    }
    if duration % 1_000_000_000 != 0 {
        bail!("--duration cannot be expressed in units less than seconds");
    }
    if a.audience.iter().any(String::is_empty) {
        bail!("--audience must not be an empty string");
    }
    const KINDS: &[&str] = &["Node", "Pod", "Secret"];
    if a.bound_object_kind.is_empty() {
        if !a.bound_object_name.is_empty() {
            bail!("--bound-object-name can only be set if --bound-object-kind is provided");
        }
        if !a.bound_object_uid.is_empty() {
            bail!("--bound-object-uid can only be set if --bound-object-kind is provided");
        }
    } else {
        if !KINDS.contains(&a.bound_object_kind.as_str()) {
            bail!(
                "supported --bound-object-kind values are {}",
                KINDS.join(", ")
            );
        }
        if a.bound_object_name.is_empty() {
            bail!("--bound-object-name is required if --bound-object-kind is provided");
        }
    }
    let mut spec = Map::new();
    if !a.audience.is_empty() {
        spec.insert("audiences".into(), json!(a.audience));
    }
    if duration > 0 {
        spec.insert(
            "expirationSeconds".into(),
            json!((duration / 1_000_000_000) as i64),
        );
    }
    if !a.bound_object_kind.is_empty() {
        let mut bound = json!({ "kind": a.bound_object_kind, "apiVersion": "v1",
                                "name": a.bound_object_name });
        if !a.bound_object_uid.is_empty() {
            bound["uid"] = json!(a.bound_object_uid);
        }
        spec.insert("boundObjectRef".into(), bound);
    }
    Ok((
        name,
        json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {}, "spec": spec }),
    ))
}

/// The message of an error from the server, without kubectl's `Error from server (Reason): `
/// (for the generators that wrap it: `failed to create rolebinding: ...`).
fn server_message(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    match text.strip_prefix("Error from server (") {
        Some(rest) => rest
            .split_once("): ")
            .map(|(_, m)| m.to_string())
            .unwrap_or(text),
        None => text,
    }
}

/// Sends (or, for `--dry-run=client`, only prints) a generated object and prints the result
/// as kubectl does: `role.rbac.authorization.k8s.io/NAME created`, or per `-o`.
async fn submit(
    s: &Session,
    collection: &str,
    shown_kind: &str,
    shape: Shape,
    obj: Value,
    opts: &CreateOptions,
    wrap: Option<&str>,
) -> anyhow::Result<()> {
    let output = Output::parse(opts.output.as_deref())?;
    let dry_run = opts.dry_run()?;
    let obj = if dry_run == DryRun::Client {
        obj
    } else {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if dry_run == DryRun::Server {
            q.append_pair("dryRun", "All");
        }
        if !opts.field_manager.is_empty() {
            q.append_pair("fieldManager", &opts.field_manager);
        }
        q.append_pair("fieldValidation", "Strict");
        let path = format!("{collection}?{}", q.finish());
        match s
            .send(http::Method::POST, &path, "application/json", Some(&obj))
            .await
        {
            Ok(created) => created,
            Err(e) => match wrap {
                Some(what) => bail!("failed to create {what}: {}", server_message(&e)),
                None => return Err(e),
            },
        }
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match output {
        None => {
            let suffix = match dry_run {
                DryRun::None => "",
                DryRun::Client => " (dry run)",
                DryRun::Server => " (server dry run)",
            };
            println!("{shown_kind}/{name} created{suffix}");
        }
        Some(Output::Name) => println!("{shown_kind}/{}", super::objects::name_of(&obj)),
        Some(o) => print!("{}", render(&go_order(shape, &obj), o == Output::Json)?),
    }
    Ok(())
}

/// The namespace kubectl writes into a generated object: only one given with `-n`.
fn given_namespace(s: &Session) -> Option<&str> {
    s.namespace_given.then_some(s.namespace.as_str())
}

pub async fn create_serviceaccount(s: &Session, a: &ServiceAccountArgs) -> anyhow::Result<()> {
    let name = one_name(&a.name, "serviceaccount")?;
    if name.is_empty() {
        bail!("name must be specified");
    }
    let mut metadata = json!({ "name": name });
    if let Some(ns) = given_namespace(s) {
        metadata["namespace"] = json!(ns);
    }
    let sa = json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata });
    submit(
        s,
        &format!("/api/v1/namespaces/{}/serviceaccounts", s.namespace),
        "serviceaccount",
        Shape::ServiceAccount,
        sa,
        &a.opts,
        Some("serviceaccount"),
    )
    .await
}

/// `create role` (`cluster` None) or `create clusterrole`.
pub async fn create_role(
    s: &Session,
    a: &RoleArgs,
    cluster: Option<&ClusterRoleArgs>,
) -> anyhow::Result<()> {
    // Validation needs discovery (to resolve `rs.apps`), even for --dry-run=client, as
    // kubectl's does.
    let all = resources::discover(s).await?;
    let obj = role_object(&all, a, cluster, given_namespace(s))?;
    let (collection, shown, shape) = if cluster.is_some() {
        (
            format!("/apis/{RBAC}/v1/clusterroles"),
            format!("clusterrole.{RBAC}"),
            Shape::ClusterRole,
        )
    } else {
        (
            format!("/apis/{RBAC}/v1/namespaces/{}/roles", s.namespace),
            format!("role.{RBAC}"),
            Shape::Role,
        )
    };
    submit(s, &collection, &shown, shape, obj, &a.opts, None).await
}

pub async fn create_rolebinding(s: &Session, a: &RoleBindingArgs) -> anyhow::Result<()> {
    let b = Binding::Namespaced {
        role: &a.role,
        clusterrole: &a.clusterrole,
        namespace: given_namespace(s),
    };
    let obj = binding_object(&a.name, b, &a.subjects)?;
    submit(
        s,
        &format!("/apis/{RBAC}/v1/namespaces/{}/rolebindings", s.namespace),
        &format!("rolebinding.{RBAC}"),
        Shape::RoleBinding,
        obj,
        &a.opts,
        Some("rolebinding"),
    )
    .await
}

pub async fn create_clusterrolebinding(
    s: &Session,
    a: &ClusterRoleBindingArgs,
) -> anyhow::Result<()> {
    let b = Binding::Cluster {
        clusterrole: a.clusterrole.as_deref(),
    };
    let obj = binding_object(&a.name, b, &a.subjects)?;
    submit(
        s,
        &format!("/apis/{RBAC}/v1/clusterrolebindings"),
        &format!("clusterrolebinding.{RBAC}"),
        Shape::RoleBinding,
        obj,
        &a.opts,
        Some("clusterrolebinding"),
    )
    .await
}

pub async fn create_token(s: &Session, a: &TokenArgs) -> anyhow::Result<()> {
    let output = Output::parse(a.output.as_deref())?;
    let (name, request) = token_request(a)?;
    let path = format!(
        "/api/v1/namespaces/{}/serviceaccounts/{name}/token",
        s.namespace
    );
    let got = s
        .send(
            http::Method::POST,
            &path,
            "application/json",
            Some(&request),
        )
        .await
        .map_err(|e| anyhow!("failed to create token: {}", server_message(&e)))?;
    let token = got["status"]["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        bail!("failed to create token: no token in server response");
    }
    use std::io::{IsTerminal as _, Write as _};
    let mut out = std::io::stdout();
    match output {
        // As kubectl: a newline after the token only on a terminal, so `$(...)` and pipes
        // get the bare token.
        None if out.is_terminal() => writeln!(out, "{token}"),
        None => write!(out, "{token}"),
        Some(Output::Name) => writeln!(
            out,
            "tokenrequest.authentication.k8s.io/{}",
            super::objects::name_of(&got)
        ),
        Some(o) => write!(
            out,
            "{}",
            render(&go_order(Shape::TokenRequest, &got), o == Output::Json)?
        ),
    }
    .and_then(|()| out.flush())
    .context("writing the token")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, plural: &str, kind: &str, short: &[&str]) -> Resource {
        Resource {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced: true,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: vec!["all".into()],
            verbs: vec!["list".into()],
        }
    }

    fn served() -> Vec<Resource> {
        vec![
            res("", "pods", "Pod", &["po"]),
            res("apps", "replicasets", "ReplicaSet", &["rs"]),
            res("apps", "deployments", "Deployment", &["deploy"]),
            res(RBAC, "roles", "Role", &[]),
        ]
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    fn role_args(verbs: &[&str], resources: &[&str]) -> RoleArgs {
        RoleArgs {
            name: strings(&["r"]),
            verb: strings(verbs),
            resource: strings(resources),
            resource_name: vec![],
            opts: CreateOptions {
                dry_run: "none".into(),
                output: None,
                field_manager: "kubectl-create".into(),
            },
        }
    }

    fn cluster(verbs: &[&str], resources: &[&str], urls: &[&str], agg: &[&str]) -> ClusterRoleArgs {
        ClusterRoleArgs {
            role: role_args(verbs, resources),
            non_resource_url: strings(urls),
            aggregation_rule: strings(agg),
        }
    }

    #[test]
    fn roles_get_one_rule_per_group_with_resources_resolved() {
        let mut a = role_args(
            &["get", "list", "get"],
            &["rs.apps", "po", "pods/log", "deploy", "pods"],
        );
        a.resource_name = strings(&["web", "web", "db"]);
        let role = role_object(&served(), &a, None, Some("dev")).unwrap();
        assert_eq!(
            role,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": { "name": "r", "namespace": "dev" },
                "rules": [
                    { "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"],
                      "resourceNames": ["web", "db"] },
                    { "verbs": ["get", "list"], "apiGroups": ["apps"],
                      "resources": ["replicasets", "deployments"], "resourceNames": ["web", "db"] }
                ]
            })
        );
        let star = role_object(
            &served(),
            &role_args(&["get", "*"], &["pods", "*"]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            star["rules"],
            json!([{ "verbs": ["*"], "apiGroups": [""], "resources": ["*"] }])
        );
    }

    #[test]
    fn role_validation_says_what_kubectl_says() {
        let err = |a: RoleArgs| {
            role_object(&served(), &a, None, None)
                .unwrap_err()
                .to_string()
        };
        let cerr = |c: ClusterRoleArgs| {
            role_object(&served(), &c.role, Some(&c), None)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(role_args(&[], &["pods"])),
            "at least one verb must be specified"
        );
        assert_eq!(
            err(role_args(&["get"], &[])),
            "at least one resource must be specified"
        );
        assert_eq!(
            err(role_args(&["bind"], &["pods"])),
            "can not perform 'bind' on 'pods' in group ''"
        );
        assert!(role_object(&served(), &role_args(&["bind"], &["roles"]), None, None).is_ok());
        assert_eq!(
            err(role_args(&["get"], &[".apps"])),
            "resource must be specified if apiGroup/subresource specified"
        );
        assert_eq!(
            cerr(cluster(&["get"], &[], &[], &[])),
            "one of resource or nonResourceURL must be specified"
        );
        assert_eq!(
            cerr(cluster(&["list"], &[], &["/logs"], &[])),
            "invalid verb: 'list' for nonResourceURL"
        );
        assert_eq!(
            cerr(cluster(&["get"], &[], &["/a*/b"], &[])),
            "nonResourceURL only supports wildcard matches when '*' is at the end"
        );
        assert_eq!(
            cerr(cluster(&["get"], &[], &["logs"], &[])),
            "nonResourceURL should start with /"
        );
        assert!(
            cerr(cluster(&["get"], &[], &[], &["a=b"]))
                .starts_with("aggregation rule must be specified without")
        );
        let mut two = role_args(&["get"], &["pods"]);
        two.name = strings(&["a", "b"]);
        assert!(err(two).starts_with("exactly one NAME is required, got 2"));
    }

    #[test]
    fn cluster_roles_take_urls_and_aggregation_rules() {
        let c = cluster(
            &["get"],
            &["pods"],
            &["/healthz", "/logs/*", "/healthz"],
            &[],
        );
        let cr = role_object(&served(), &c.role, Some(&c), Some("ignored")).unwrap();
        assert_eq!(cr["metadata"], json!({ "name": "r" }));
        assert_eq!(
            cr["rules"][1],
            json!({ "verbs": ["get"], "nonResourceURLs": ["/healthz", "/logs/*"] })
        );
        let c = cluster(
            &[],
            &[],
            &[],
            &["rbac.example.com/aggregate-to-monitoring=true,b=c"],
        );
        let cr = role_object(&served(), &c.role, Some(&c), None).unwrap();
        assert_eq!(
            cr["aggregationRule"],
            json!({ "clusterRoleSelectors": [{ "matchLabels": {
                "rbac.example.com/aggregate-to-monitoring": "true", "b": "c" } }] })
        );
        let c = cluster(&[], &[], &[], &["nope"]);
        assert!(
            role_object(&served(), &c.role, Some(&c), None)
                .unwrap_err()
                .to_string()
                .contains("malformed pair, expect string=string")
        );
    }

    #[test]
    fn bindings_list_users_groups_then_service_accounts() {
        let who = SubjectArgs {
            user: strings(&["alice"]),
            group: strings(&["devs"]),
            serviceaccount: strings(&["kube-system:bot"]),
        };
        let name = strings(&["b"]);
        let to_view = Binding::Namespaced {
            role: "",
            clusterrole: "view",
            namespace: None,
        };
        assert_eq!(
            binding_object(&name, to_view, &who).unwrap(),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": "b" },
                "roleRef": { "apiGroup": RBAC, "kind": "ClusterRole", "name": "view" },
                "subjects": [
                    { "kind": "User", "apiGroup": RBAC, "name": "alice" },
                    { "kind": "Group", "apiGroup": RBAC, "name": "devs" },
                    { "kind": "ServiceAccount", "name": "bot", "namespace": "kube-system" }
                ]
            })
        );
        let crb = binding_object(
            &name,
            Binding::Cluster {
                clusterrole: Some("view"),
            },
            &who,
        )
        .unwrap();
        assert_eq!(crb["kind"], "ClusterRoleBinding");
        assert_eq!(crb["metadata"], json!({ "name": "b" }));
        let err =
            |b: Binding, who: &SubjectArgs| binding_object(&name, b, who).unwrap_err().to_string();
        assert_eq!(
            err(
                Binding::Namespaced {
                    role: "r",
                    clusterrole: "view",
                    namespace: None
                },
                &who
            ),
            "exactly one of clusterrole or role must be specified"
        );
        let to_role = Binding::Namespaced {
            role: "r",
            clusterrole: "",
            namespace: Some("dev"),
        };
        let rb = binding_object(&name, to_role, &SubjectArgs::default()).unwrap();
        assert_eq!(rb["roleRef"]["kind"], "Role");
        assert_eq!(rb["metadata"]["namespace"], "dev");
        assert!(rb.get("subjects").is_none());
        assert_eq!(
            err(Binding::Cluster { clusterrole: None }, &who),
            "required flag(s) \"clusterrole\" not set"
        );
        let bad = SubjectArgs {
            serviceaccount: strings(&["bot"]),
            ..SubjectArgs::default()
        };
        assert_eq!(
            err(to_role, &bad),
            "serviceaccount must be <namespace>:<name>"
        );
    }

    fn token_args() -> TokenArgs {
        TokenArgs {
            name: strings(&["bot"]),
            audience: vec![],
            duration: "0s".into(),
            bound_object_kind: String::new(),
            bound_object_name: String::new(),
            bound_object_uid: String::new(),
            output: None,
        }
    }

    #[test]
    fn token_requests_carry_only_what_was_asked() {
        let (name, req) = token_request(&token_args()).unwrap();
        assert_eq!(name, "bot");
        assert_eq!(req["spec"], json!({}));
        let mut a = token_args();
        a.duration = "1h30m".into();
        a.audience = strings(&["https://x"]);
        a.bound_object_kind = "Pod".into();
        a.bound_object_name = "web".into();
        assert_eq!(
            token_request(&a).unwrap().1["spec"],
            json!({ "audiences": ["https://x"], "expirationSeconds": 5400,
                    "boundObjectRef": { "kind": "Pod", "apiVersion": "v1", "name": "web" } })
        );
        let err = |f: &dyn Fn(&mut TokenArgs)| {
            let mut a = token_args();
            f(&mut a);
            token_request(&a).unwrap_err().to_string()
        };
        assert_eq!(
            err(&|a| a.duration = "-1s".into()),
            "--duration must be greater than or equal to 0"
        );
        assert_eq!(
            err(&|a| a.duration = "1500ms".into()),
            "--duration cannot be expressed in units less than seconds"
        );
        assert_eq!(
            err(&|a| a.duration = "10".into()),
            "invalid argument \"10\" for \"--duration\" flag: time: missing unit in duration \"10\"\nSee 'skiffctl create token --help' for usage."
        );
        assert_eq!(
            err(&|a| a.bound_object_name = "x".into()),
            "--bound-object-name can only be set if --bound-object-kind is provided"
        );
        assert_eq!(
            err(&|a| a.bound_object_kind = "Deployment".into()),
            "supported --bound-object-kind values are Node, Pod, Secret"
        );
        assert_eq!(
            err(&|a| a.bound_object_kind = "Pod".into()),
            "--bound-object-name is required if --bound-object-kind is provided"
        );
        assert_eq!(
            err(&|a| a.audience = strings(&[""])),
            "--audience must not be an empty string"
        );
    }

    #[test]
    fn dry_run_values_read_as_kubectl_reads_them() {
        let mut o = role_args(&[], &[]).opts;
        for (value, want) in [
            ("none", DryRun::None),
            ("client", DryRun::Client),
            ("server", DryRun::Server),
            ("unchanged", DryRun::Client),
            ("true", DryRun::Client),
            ("false", DryRun::None),
        ] {
            o.dry_run = value.into();
            assert_eq!(o.dry_run().unwrap(), want, "{value}");
        }
        o.dry_run = "maybe".into();
        assert_eq!(
            o.dry_run().unwrap_err().to_string(),
            "Invalid dry-run value (maybe). Must be \"none\", \"server\", or \"client\"."
        );
        assert_eq!(
            server_message(&anyhow!(
                "Error from server (AlreadyExists): serviceaccounts \"a\" already exists"
            )),
            "serviceaccounts \"a\" already exists"
        );
    }
}
