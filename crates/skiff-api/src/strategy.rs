//! Per-kind rules, as Kubernetes' registry strategies: defaulting, validation with field paths,
//! immutable fields, what create resets, and version conversion.
//!
//! Everything works on `serde_json::Value`: the rules are written against the JSON shape of the
//! `v1` (or the resource's own version) objects, as upstream's `SetDefaults_*` and
//! `Validate*` functions are written against the Go structs.

mod defaults;
mod validate;

use serde_json::{Map, Value, json};

use crate::ResourceInfo;

/// The kind of a validation failure; maps to the `reason` of a `StatusCause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    /// A reference to something that does not exist (e.g. a volumeMount naming no volume).
    NotFound,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` Kubernetes uses, e.g. "FieldValueRequired".
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    /// The words Kubernetes prints for the kind, e.g. "Invalid value".
    pub fn words(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::NotFound => "Not found",
        }
    }
}

/// One validation failure at a field path such as `spec.template.spec.containers[0].name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    /// The offending value, rendered as Kubernetes does (strings quoted), if any.
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    /// The message Kubernetes prints for this error, e.g.
    /// `spec.replicas: Invalid value: -1: must be greater than or equal to 0`.
    ///
    /// As upstream's `field.Error.Error()`: Required, Forbidden and TooLong never show the
    /// value; the detail follows after `: ` when there is one.
    pub fn message(&self) -> String {
        let mut s = format!("{}: {}", self.field, self.kind.words());
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        if let (true, Some(v)) = (shows_value, &self.value) {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `field: Required value: detail`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }

    /// `field: Invalid value: <value>: detail`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl Into<String>) -> Self {
        Self::new(
            FieldErrorKind::Invalid,
            field,
            Some(crate::validation::go_value(value)),
            detail,
        )
    }

    /// `field: Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self::new(
            FieldErrorKind::Duplicate,
            field,
            Some(crate::validation::go_value(value)),
            "",
        )
    }

    /// `field: Unsupported value: <value>: supported values: "A", "B"`.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(crate::validation::go_value(value)),
            format!("supported values: {}", list.join(", ")),
        )
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    /// `field: Not found: <value>`.
    pub fn not_found(field: impl Into<String>, value: &Value) -> Self {
        Self::new(
            FieldErrorKind::NotFound,
            field,
            Some(crate::validation::go_value(value)),
            "",
        )
    }

    fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
}

/// Applies Kubernetes' defaults to `obj` in place (on create and update).
///
/// This covers upstream's `SetDefaults_*` functions plus what the default admission plugins
/// add to Pods (default tolerations, `priority`, `serviceAccountName`). Pod templates inside
/// workloads get the pod-spec defaults, not the Pod-only ones. Kinds without defaults are left
/// unchanged.
pub fn default(info: &ResourceInfo, obj: &mut Value) {
    defaults::apply(info, obj);
}

/// Resets what a client may not set on create (e.g. a Pod's status becomes `phase: Pending`;
/// most kinds' status is cleared).
///
/// Also as upstream: `metadata.generation` becomes 1 for kinds that track it, a Namespace gets
/// the `kubernetes` finalizer, and a Job without `manualSelector: true` gets its generated
/// selector (this needs `metadata.uid`, which the apiserver sets before calling this). A Node
/// keeps the status its kubelet registers it with.
pub fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    defaults::prepare_for_create(info, obj);
}

/// What a main-resource update may not change, as upstream's `PrepareForUpdate`: the status of
/// kinds with a `status` subresource (and of Pods) is kept from `old`, a Namespace's
/// `spec.finalizers` is kept, and `metadata.generation` is kept or, for kinds that track it,
/// bumped when anything outside `metadata` and `status` changed. Call after [`default`].
pub fn prepare_for_update(info: &ResourceInfo, new: &mut Value, old: &Value) {
    defaults::prepare_for_update(info, new, old);
}

/// What a `/status` update may change: only `status`. Everything outside `metadata` and
/// `status` is kept from `old`, as are `metadata.ownerReferences`, `deletionTimestamp` and
/// `generation` (upstream's status strategies).
pub fn prepare_for_status_update(info: &ResourceInfo, new: &mut Value, old: &Value) {
    defaults::prepare_for_status_update(info, new, old);
}

/// Whether `metadata.generation` is set to 1 on create and bumped on spec changes.
pub fn tracks_generation(info: &ResourceInfo) -> bool {
    matches!(
        (info.group, info.kind),
        ("", "ReplicationController")
            | (
                "apps",
                "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet"
            )
            | ("batch", "Job" | "CronJob")
            | ("policy", "PodDisruptionBudget")
            | ("autoscaling", "HorizontalPodAutoscaler")
            | ("networking.k8s.io", "Ingress")
            | ("discovery.k8s.io", "EndpointSlice")
    )
}

/// One of the priority classes Kubernetes creates at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemPriorityClass {
    pub name: &'static str,
    pub value: i64,
    pub description: &'static str,
}

/// The built-in priority classes, as upstream's scheduling registry creates them: the only
/// names that may start with `system-`, each with its fixed value.
pub const SYSTEM_PRIORITY_CLASSES: &[SystemPriorityClass] = &[
    SystemPriorityClass {
        name: "system-node-critical",
        value: 2_000_001_000,
        description: "Used for system critical pods that must not be moved from their current node.",
    },
    SystemPriorityClass {
        name: "system-cluster-critical",
        value: 2_000_000_000,
        description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    },
];

/// Validates a new object (metadata included).
pub fn validate_create(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    validate::validate_create(info, obj)
}

/// Validates an update of the main resource: the rules of create plus immutable fields.
pub fn validate_update(info: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> {
    validate::validate_update(info, new, old)
}

/// Decodes `obj` through the kind's typed `k8s-openapi` struct and back. This prunes fields
/// the schema does not know (as Kubernetes drops them) and returns their paths, or fails
/// with a message naming the field whose value has the wrong type.
///
/// The paths are bare (`spec.replicass`, `spec.template.spec.containers[0].imagee`); the
/// apiserver words them (`unknown field "spec.replicass"`). What the round trip does, and
/// what it keeps (pinned by tests):
/// - keys come out in the typed struct's order, `apiVersion` and `kind` first, `metadata`
///   always present;
/// - empty objects and maps the input had survive (`securityContext: {}`, `labels: {}`);
///   upstream drops an empty `labels` map (Go `omitempty`), Skiff keeps it;
/// - `null` fields disappear and are not reported;
/// - required scalars the input lacked appear with their zero value (a container without
///   `name` gets `name: ""`), as the Go structs without `omitempty` do;
/// - times are re-rendered in UTC to the second (`metav1.Time`) or microsecond
///   (`MicroTime`); numeric quantities become strings (`cpu: 1` → `"1"`).
///
/// A kind the table does not know is returned unchanged.
pub fn normalize(info: &ResourceInfo, obj: Value) -> Result<(Value, Vec<String>), String> {
    // Decode as the version the object says it is, if that is a version of this resource.
    let (group, version) = match obj.get("apiVersion").and_then(Value::as_str) {
        Some(av) => {
            let (g, v) = split_api_version(av);
            if g == info.group && crate::resources::find(g, v, info.plural).is_some() {
                (g, v)
            } else {
                (info.group, info.version)
            }
        }
        None => (info.group, info.version),
    };
    let out = match roundtrip(group, version, info.kind, &obj) {
        Some(r) => r?,
        None => return Ok((obj, Vec::new())),
    };
    let mut unknown = Vec::new();
    find_dropped(&obj, &out, &mut String::new(), &mut unknown);
    Ok((out, unknown))
}

/// Splits `apps/v1` into ("apps", "v1") and `v1` into ("", "v1").
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Runs `$body` with `$t` bound to the `k8s-openapi` type of (group, version, kind), or
/// evaluates `$none` when there is none.
macro_rules! with_typed {
    ($group:expr, $version:expr, $kind:expr, $t:ident => $body:expr, _ => $none:expr) => {{
        use k8s_openapi::api;
        match ($group, $version, $kind) {
            ("", "v1", "Namespace") => {
                type $t = api::core::v1::Namespace;
                $body
            }
            ("", "v1", "Pod") => {
                type $t = api::core::v1::Pod;
                $body
            }
            ("", "v1", "Node") => {
                type $t = api::core::v1::Node;
                $body
            }
            ("", "v1", "Service") => {
                type $t = api::core::v1::Service;
                $body
            }
            ("", "v1", "Endpoints") => {
                type $t = api::core::v1::Endpoints;
                $body
            }
            ("", "v1", "ReplicationController") => {
                type $t = api::core::v1::ReplicationController;
                $body
            }
            ("", "v1", "ConfigMap") => {
                type $t = api::core::v1::ConfigMap;
                $body
            }
            ("", "v1", "Secret") => {
                type $t = api::core::v1::Secret;
                $body
            }
            ("", "v1", "Event") => {
                type $t = api::core::v1::Event;
                $body
            }
            ("", "v1", "ServiceAccount") => {
                type $t = api::core::v1::ServiceAccount;
                $body
            }
            ("", "v1", "PersistentVolume") => {
                type $t = api::core::v1::PersistentVolume;
                $body
            }
            ("", "v1", "PersistentVolumeClaim") => {
                type $t = api::core::v1::PersistentVolumeClaim;
                $body
            }
            ("", "v1", "ResourceQuota") => {
                type $t = api::core::v1::ResourceQuota;
                $body
            }
            ("", "v1", "LimitRange") => {
                type $t = api::core::v1::LimitRange;
                $body
            }
            ("apps", "v1", "Deployment") => {
                type $t = api::apps::v1::Deployment;
                $body
            }
            ("apps", "v1", "ReplicaSet") => {
                type $t = api::apps::v1::ReplicaSet;
                $body
            }
            ("apps", "v1", "DaemonSet") => {
                type $t = api::apps::v1::DaemonSet;
                $body
            }
            ("apps", "v1", "StatefulSet") => {
                type $t = api::apps::v1::StatefulSet;
                $body
            }
            ("apps", "v1", "ControllerRevision") => {
                type $t = api::apps::v1::ControllerRevision;
                $body
            }
            ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
                type $t = api::autoscaling::v1::HorizontalPodAutoscaler;
                $body
            }
            ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
                type $t = api::autoscaling::v2::HorizontalPodAutoscaler;
                $body
            }
            ("batch", "v1", "Job") => {
                type $t = api::batch::v1::Job;
                $body
            }
            ("batch", "v1", "CronJob") => {
                type $t = api::batch::v1::CronJob;
                $body
            }
            ("certificates.k8s.io", "v1", "CertificateSigningRequest") => {
                type $t = api::certificates::v1::CertificateSigningRequest;
                $body
            }
            ("coordination.k8s.io", "v1", "Lease") => {
                type $t = api::coordination::v1::Lease;
                $body
            }
            ("discovery.k8s.io", "v1", "EndpointSlice") => {
                type $t = api::discovery::v1::EndpointSlice;
                $body
            }
            ("networking.k8s.io", "v1", "Ingress") => {
                type $t = api::networking::v1::Ingress;
                $body
            }
            ("rbac.authorization.k8s.io", "v1", "Role") => {
                type $t = api::rbac::v1::Role;
                $body
            }
            ("rbac.authorization.k8s.io", "v1", "RoleBinding") => {
                type $t = api::rbac::v1::RoleBinding;
                $body
            }
            ("rbac.authorization.k8s.io", "v1", "ClusterRole") => {
                type $t = api::rbac::v1::ClusterRole;
                $body
            }
            ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
                type $t = api::rbac::v1::ClusterRoleBinding;
                $body
            }
            ("policy", "v1", "PodDisruptionBudget") => {
                type $t = api::policy::v1::PodDisruptionBudget;
                $body
            }
            ("scheduling.k8s.io", "v1", "PriorityClass") => {
                type $t = api::scheduling::v1::PriorityClass;
                $body
            }
            ("storage.k8s.io", "v1", "StorageClass") => {
                type $t = api::storage::v1::StorageClass;
                $body
            }
            ("events.k8s.io", "v1", "Event") => {
                type $t = api::events::v1::Event;
                $body
            }
            _ => $none,
        }
    }};
}

/// Registers the JSON schema of a kind's `k8s-openapi` type (and everything it refers to) with
/// `generator`, returning the reference to it; `None` if the kind has no typed model.
pub fn schema(
    info: &ResourceInfo,
    generator: &mut schemars::SchemaGenerator,
) -> Option<schemars::Schema> {
    with_typed!(info.group, info.version, info.kind, T => Some(generator.subschema_for::<T>()), _ => None)
}

/// Decodes `obj` as the typed struct and encodes it again; `None` for an unknown kind.
fn roundtrip(group: &str, version: &str, kind: &str, obj: &Value) -> Option<Result<Value, String>> {
    with_typed!(group, version, kind, T => Some(typed_roundtrip::<T>(obj)), _ => None)
}

fn typed_roundtrip<T>(obj: &Value) -> Result<Value, String>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    // Tracking the path costs an allocation per field: only a failure needs it, for its message.
    if let Ok(typed) = T::deserialize(obj) {
        return serde_json::to_value(&typed).map_err(|e| e.to_string());
    }
    let typed: T = serde_path_to_error::deserialize(obj).map_err(|e| {
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Appends to `out` the paths of non-null fields in `input` that `output` lacks. `path` is
/// the path so far, extended and restored in place: a path string is made only for a field
/// that was dropped.
fn find_dropped(input: &Value, output: &Value, path: &mut String, out: &mut Vec<String>) {
    let len = path.len();
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match o.get(k) {
                    None => out.push(path.clone()),
                    Some(ov) => find_dropped(v, ov, path, out),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            use std::fmt::Write;
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                let _ = write!(path, "[{n}]");
                find_dropped(iv, ov, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Converts an object between versions of one resource (e.g. autoscaling/v1 and v2
/// HorizontalPodAutoscalers). Identity when the versions match, apart from `apiVersion`,
/// which always names `to_version`.
///
/// For HorizontalPodAutoscalers, v1's `targetCPUUtilizationPercentage` is v2's `Resource`
/// metric for `cpu` with an `Utilization` target, and the status' `currentCPUUtilization
/// Percentage` the matching current metric. Unlike upstream, v2 metrics that v1 cannot express
/// are dropped in v1 rather than kept in annotations.
pub fn convert(info: &ResourceInfo, mut obj: Value, to_version: &str) -> Value {
    let from_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|av| split_api_version(av).1.to_string())
        .unwrap_or_else(|| info.version.to_string());
    let api_version = if info.group.is_empty() {
        to_version.to_string()
    } else {
        format!("{}/{}", info.group, to_version)
    };
    if info.group == "autoscaling" && info.kind == "HorizontalPodAutoscaler" {
        match (from_version.as_str(), to_version) {
            ("v1", "v2") => hpa_v1_to_v2(&mut obj),
            ("v2", "v1") => hpa_v2_to_v1(&mut obj),
            _ => {}
        }
    }
    if let Some(m) = obj.as_object_mut() {
        // Most objects already start with the right apiVersion and then kind: no rebuild.
        let mut keys = m.keys();
        let in_place = keys.next().is_some_and(|k| k == "apiVersion")
            && keys.next().is_some_and(|k| k == "kind")
            && m.get("apiVersion").and_then(Value::as_str) == Some(api_version.as_str());
        if !in_place {
            let kind = m.shift_remove("kind");
            let rest = std::mem::take(m);
            m.insert("apiVersion".into(), Value::String(api_version));
            m.insert(
                "kind".into(),
                kind.unwrap_or_else(|| Value::String(info.kind.into())),
            );
            for (k, v) in rest {
                if k != "apiVersion" {
                    m.insert(k, v);
                }
            }
        }
    }
    obj
}

fn hpa_v1_to_v2(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let target = spec.shift_remove("targetCPUUtilizationPercentage");
        let mut rest = std::mem::take(spec);
        let metrics = target.filter(|t| !t.is_null()).map(|t| {
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}])
        });
        for key in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
            if let Some(v) = rest.shift_remove(key) {
                spec.insert(key.into(), v);
            }
        }
        if let Some(m) = metrics {
            spec.insert("metrics".into(), m);
        }
        spec.append(&mut rest);
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(cur) = status
            .shift_remove("currentCPUUtilizationPercentage")
            .filter(|c| !c.is_null())
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cur}}}]),
        );
    }
}

/// The averageUtilization of the first `Resource` cpu metric in `metrics`, under `field`
/// ("target" for spec metrics, "current" for status metrics).
fn cpu_utilization(metrics: Option<&Value>, field: &str) -> Option<Value> {
    metrics?.as_array()?.iter().find_map(|m| {
        let r = m.get("resource")?;
        if m.get("type")?.as_str()? != "Resource" || r.get("name")?.as_str()? != "cpu" {
            return None;
        }
        r.get(field)?.get("averageUtilization").cloned()
    })
}

fn hpa_v2_to_v1(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let target = cpu_utilization(spec.get("metrics"), "target");
        spec.shift_remove("metrics");
        spec.shift_remove("behavior");
        if let Some(t) = target {
            spec.insert("targetCPUUtilizationPercentage".into(), t);
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let cur = cpu_utilization(status.get("currentMetrics"), "current");
        status.shift_remove("currentMetrics");
        status.shift_remove("conditions");
        if let Some(c) = cur {
            status.insert("currentCPUUtilizationPercentage".into(), c);
        }
    }
}

/// Whether the kind has a `status` that only the `/status` subresource may change.
pub fn has_status_subresource(info: &ResourceInfo) -> bool {
    info.subresources.contains(&"status")
}

/// The object map of `v[key]`, created (or replaced, if not an object) as needed.
pub(crate) fn child<'a>(v: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = v
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

#[cfg(test)]
mod tests;
