//! Defaulting (upstream `pkg/apis/*/v1/defaults.go` plus the default admission plugins) and
//! the create/update preparation of the registry strategies.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::child;
use crate::ResourceInfo;
use crate::quantity::Quantity;

/// Sets `m[key] = value` when the key is absent or null.
fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    match m.get(key) {
        None | Some(Value::Null) => {
            m.insert(key.to_string(), value);
        }
        _ => {}
    }
}

/// Whether `m[key]` is absent, null, "" or an empty list/map (Go's zero value for it).
fn is_unset(m: &Map<String, Value>, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

fn each_object_in<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut())
        .filter_map(Value::as_object_mut)
}

pub(super) fn apply(info: &ResourceInfo, obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    match (info.group, info.kind) {
        ("", "Pod") => default_pod(m),
        ("", "ReplicationController") => default_rc(m),
        ("", "Service") => default_service(m),
        ("", "Namespace") => default_namespace(m),
        ("", "Secret") => default_secret(m),
        ("", "Node") => default_node(m),
        ("", "Endpoints") => {
            for subset in each_object_in(m, "subsets") {
                for port in each_object_in(subset, "ports") {
                    set_default(port, "protocol", json!("TCP"));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in each_object_in(m, "ports") {
                set_default(port, "protocol", json!("TCP"));
            }
        }
        ("apps", "Deployment") => default_deployment(m),
        ("apps", "ReplicaSet") => {
            let spec = child(m, "spec");
            set_default(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("apps", "DaemonSet") => default_daemonset(m),
        ("apps", "StatefulSet") => default_statefulset(m),
        ("batch", "Job") => default_job(m),
        ("batch", "CronJob") => default_cronjob(m),
        ("", "PersistentVolume") => {
            let spec = child(m, "spec");
            if is_unset(spec, "persistentVolumeReclaimPolicy") {
                spec.insert("persistentVolumeReclaimPolicy".into(), json!("Retain"));
            }
            set_default(spec, "volumeMode", json!("Filesystem"));
            if let Some(h) = spec.get_mut("hostPath").and_then(Value::as_object_mut) {
                set_default(h, "type", json!(""));
            }
        }
        ("", "PersistentVolumeClaim") => {
            set_default(child(m, "spec"), "volumeMode", json!("Filesystem"));
        }
        ("", "LimitRange") => {
            let spec = child(m, "spec");
            for item in each_object_in(spec, "limits") {
                default_limit_range_item(item);
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            set_default(m, "reclaimPolicy", json!("Delete"));
            set_default(m, "volumeBindingMode", json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let v2 = info.version == "v2";
            let spec = child(m, "spec");
            set_default(spec, "minReplicas", json!(1));
            if v2 && is_unset(spec, "metrics") {
                spec.insert(
                    "metrics".into(),
                    json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                );
            }
            if v2 && spec.get("behavior").is_some_and(Value::is_object) {
                default_hpa_behavior(child(spec, "behavior"));
            }
        }
        _ => {}
    }
}

/// A set `spec.behavior` gets every unset field of both directions, as upstream: scale up at
/// once by 4 pods or 100% per 15 s (whichever is more), scale down by 100% per 15 s. The
/// scale-down window stays unset: the controller's
/// `--horizontal-pod-autoscaler-downscale-stabilization` applies.
fn default_hpa_behavior(b: &mut Map<String, Value>) {
    let rules = |r: &mut Map<String, Value>, policies: Value| {
        set_default(r, "selectPolicy", json!("Max"));
        if r.get("policies")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            r.insert("policies".into(), policies);
        }
    };
    let up = child(b, "scaleUp");
    set_default(up, "stabilizationWindowSeconds", json!(0));
    rules(
        up,
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
    );
    rules(
        child(b, "scaleDown"),
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
    );
}

/// Defaults of `spec.template.spec` in a workload.
fn default_template(spec: &mut Map<String, Value>) {
    if let Some(tspec) = spec
        .get_mut("template")
        .and_then(Value::as_object_mut)
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        default_pod_spec(tspec);
    }
}

/// `SetDefaults_PodSpec` and what it calls for containers and volumes.
fn default_pod_spec(spec: &mut Map<String, Value>) {
    if is_unset(spec, "dnsPolicy") {
        spec.insert("dnsPolicy".into(), json!("ClusterFirst"));
    }
    if is_unset(spec, "restartPolicy") {
        spec.insert("restartPolicy".into(), json!("Always"));
    }
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    if is_unset(spec, "schedulerName") {
        spec.insert("schedulerName".into(), json!("default-scheduler"));
    }
    // The deprecated `serviceAccount` mirrors `serviceAccountName` (Go conversion).
    if is_unset(spec, "serviceAccountName")
        && let Some(sa) = spec
            .get("serviceAccount")
            .filter(|v| v.is_string())
            .cloned()
    {
        spec.insert("serviceAccountName".into(), sa);
    }
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each_object_in(spec, key) {
            default_container(c);
        }
    }
    for v in each_object_in(spec, "volumes") {
        default_volume(v);
    }
}

/// `SetDefaults_Container`, ports, probes, env field refs.
fn default_container(c: &mut Map<String, Value>) {
    if is_unset(c, "imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let policy = if image_tag(image) == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    if is_unset(c, "terminationMessagePath") {
        c.insert(
            "terminationMessagePath".into(),
            json!("/dev/termination-log"),
        );
    }
    if is_unset(c, "terminationMessagePolicy") {
        c.insert("terminationMessagePolicy".into(), json!("File"));
    }
    for p in each_object_in(c, "ports") {
        if is_unset(p, "protocol") {
            p.insert("protocol".into(), json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            default_handler(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(Value::as_object_mut) {
                default_handler(h);
            }
        }
    }
    for e in each_object_in(c, "env") {
        if let Some(fr) = e
            .get_mut("valueFrom")
            .and_then(Value::as_object_mut)
            .and_then(|vf| vf.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
            && is_unset(fr, "apiVersion")
        {
            fr.insert("apiVersion".into(), json!("v1"));
        }
    }
}

/// `SetDefaults_HTTPGetAction`.
fn default_handler(h: &mut Map<String, Value>) {
    if let Some(g) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        if is_unset(g, "path") {
            g.insert("path".into(), json!("/"));
        }
        if is_unset(g, "scheme") {
            g.insert("scheme".into(), json!("HTTP"));
        }
    }
}

/// The tag of an image reference: `Some("latest")` when there is neither tag nor digest, as
/// upstream's `parsers.ParseImageName`; `None` when only a digest is given.
pub(crate) fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest => None,
        None => Some("latest"),
    }
}

/// `SetDefaults_Volume` and the sources' defaults.
fn default_volume(v: &mut Map<String, Value>) {
    if v.keys().all(|k| k == "name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for src in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
            set_default(s, "defaultMode", json!(420));
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        set_default(h, "type", json!(""));
    }
}

/// `SetDefaults_Pod` plus the admission plugins that always run (ServiceAccount without the
/// token volume, DefaultTolerationSeconds). Priority is the apiserver's admission.
fn default_pod(m: &mut Map<String, Value>) {
    let spec = child(m, "spec");
    // If limits are set but requests are not, requests default to limits.
    for key in ["initContainers", "containers"] {
        for c in each_object_in(spec, key) {
            let Some(limits) = c
                .get("resources")
                .and_then(|r| r.get("limits"))
                .and_then(Value::as_object)
                .cloned()
            else {
                continue;
            };
            let resources = child(c, "resources");
            let requests = child(resources, "requests");
            for (k, v) in limits {
                set_default(requests, &k, v);
            }
        }
    }
    default_pod_spec(spec);
    set_default(spec, "enableServiceLinks", json!(true));
    if is_unset(spec, "serviceAccountName") {
        spec.insert("serviceAccountName".into(), json!("default"));
    }
    if is_unset(spec, "serviceAccount") {
        let sa = spec["serviceAccountName"].clone();
        spec.insert("serviceAccount".into(), sa);
    }
    // `priority` and `preemptionPolicy` are not defaulted: the apiserver's Priority admission
    // sets them from the pod's PriorityClass (a default here would read as the client's own
    // value, which admission refuses when it differs from the class's).
    // DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for 300s unless the
    // pod already tolerates them with NoExecute.
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !tolerations.is_array() {
        *tolerations = Value::Array(Vec::new());
    }
    let list = tolerations.as_array_mut().expect("array");
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (k == key || (k.is_empty() && op == "Exists"))
        });
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

fn default_rc(m: &mut Map<String, Value>) {
    let labels = m
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|md| md.get("labels"))
        .filter(|l| l.as_object().is_some_and(|o| !o.is_empty()))
        .cloned();
    if let Some(labels) = labels {
        if is_unset(child(m, "spec"), "selector") {
            child(m, "spec").insert("selector".into(), labels.clone());
        }
        let md = child(m, "metadata");
        if is_unset(md, "labels") {
            md.insert("labels".into(), labels);
        }
    }
    let spec = child(m, "spec");
    set_default(spec, "replicas", json!(1));
    default_template(spec);
}

fn default_deployment(m: &mut Map<String, Value>) {
    let spec = child(m, "spec");
    set_default(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    if is_unset(strategy, "type") {
        strategy.insert("type".into(), json!("RollingUpdate"));
    }
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = child(strategy, "rollingUpdate");
        set_default(ru, "maxUnavailable", json!("25%"));
        set_default(ru, "maxSurge", json!("25%"));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

fn default_daemonset(m: &mut Map<String, Value>) {
    let spec = child(m, "spec");
    let strategy = child(spec, "updateStrategy");
    if is_unset(strategy, "type") {
        strategy.insert("type".into(), json!("RollingUpdate"));
    }
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = child(strategy, "rollingUpdate");
        set_default(ru, "maxUnavailable", json!(1));
        set_default(ru, "maxSurge", json!(0));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
}

fn default_statefulset(m: &mut Map<String, Value>) {
    let spec = child(m, "spec");
    if is_unset(spec, "podManagementPolicy") {
        spec.insert("podManagementPolicy".into(), json!("OrderedReady"));
    }
    let strategy = child(spec, "updateStrategy");
    if is_unset(strategy, "type") {
        strategy.insert("type".into(), json!("RollingUpdate"));
        set_default(strategy, "rollingUpdate", json!({}));
    }
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
        && let Some(ru) = strategy
            .get_mut("rollingUpdate")
            .and_then(Value::as_object_mut)
    {
        set_default(ru, "partition", json!(0));
    }
    set_default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    // Claim templates are claims: they get a claim's defaults, status included.
    for claim in each_object_in(spec, "volumeClaimTemplates") {
        set_default(child(claim, "spec"), "volumeMode", json!("Filesystem"));
        set_default(claim, "status", json!({"phase": "Pending"}));
    }
    default_template(spec);
}

fn default_job(m: &mut Map<String, Value>) {
    let template_labels = m
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|md| md.get("labels"))
        .filter(|l| l.as_object().is_some_and(|o| !o.is_empty()))
        .cloned();
    let spec = child(m, "spec");
    let no_completions = spec.get("completions").is_none_or(Value::is_null);
    let no_parallelism = spec.get("parallelism").is_none_or(Value::is_null);
    if no_completions && no_parallelism {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null())
    {
        json!(i32::MAX)
    } else {
        json!(6)
    };
    set_default(spec, "backoffLimit", backoff);
    if is_unset(spec, "completionMode") {
        spec.insert("completionMode".into(), json!("NonIndexed"));
    }
    set_default(spec, "suspend", json!(false));
    set_default(spec, "manualSelector", json!(false));
    let replacement = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    default_template(spec);
    if let Some(labels) = template_labels {
        let md = child(m, "metadata");
        if is_unset(md, "labels") {
            md.insert("labels".into(), labels);
        }
    }
}

/// `SetDefaults_CronJob`; the job template's pod spec gets the pod-spec defaults (upstream's
/// defaulting walks into it), the job template's own spec does not get a Job's.
fn default_cronjob(m: &mut Map<String, Value>) {
    let spec = child(m, "spec");
    if is_unset(spec, "concurrencyPolicy") {
        spec.insert("concurrencyPolicy".into(), json!("Allow"));
    }
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = spec
        .get_mut("jobTemplate")
        .and_then(Value::as_object_mut)
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        default_template(job_spec);
    }
}

/// `SetDefaults_LimitRangeItem`: for `Container` items the default limit falls back to `max`,
/// the default request to the default limit, then to `min`. Maps left empty stay absent (Go's
/// `omitempty`).
fn default_limit_range_item(item: &mut Map<String, Value>) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let field = |item: &Map<String, Value>, key: &str| {
        item.get(key)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let mut default = field(item, "default");
    let mut request = field(item, "defaultRequest");
    for (k, v) in field(item, "max") {
        default.entry(k).or_insert(v);
    }
    for (k, v) in default.iter().chain(&field(item, "min")) {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (key, map) in [("default", default), ("defaultRequest", request)] {
        if !map.is_empty() {
            item.insert(key.into(), Value::Object(map));
        }
    }
}

fn default_service(m: &mut Map<String, Value>) {
    let spec = child(m, "spec");
    if is_unset(spec, "sessionAffinity") {
        spec.insert("sessionAffinity".into(), json!("None"));
    }
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.shift_remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let cfg = child(spec, "sessionAffinityConfig");
            let cip = child(cfg, "clientIP");
            set_default(cip, "timeoutSeconds", json!(10800));
        }
        _ => {}
    }
    if is_unset(spec, "type") {
        spec.insert("type".into(), json!("ClusterIP"));
    }
    for p in each_object_in(spec, "ports") {
        if is_unset(p, "protocol") {
            p.insert("protocol".into(), json!("TCP"));
        }
        let unset_target = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if unset_target && let Some(port) = p.get("port").cloned() {
            p.insert("targetPort".into(), port);
        }
    }
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips);
    if externally_accessible && is_unset(spec, "externalTrafficPolicy") {
        spec.insert("externalTrafficPolicy".into(), json!("Cluster"));
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        // Set by the registry on allocation upstream; Skiff is single-stack IPv4.
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        if is_unset(spec, "ipFamilies") {
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
        }
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

fn default_namespace(m: &mut Map<String, Value>) {
    let name = m
        .get("metadata")
        .and_then(|md| md.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        let labels = child(child(m, "metadata"), "labels");
        labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
    }
}

/// `type: Opaque`, and `stringData` folded into `data` (upstream's conversion does this, so
/// stored Secrets never carry `stringData`).
fn default_secret(m: &mut Map<String, Value>) {
    if is_unset(m, "type") {
        m.insert("type".into(), json!("Opaque"));
    }
    if let Some(Value::Object(sd)) = m.shift_remove("stringData") {
        let data = child(m, "data");
        for (k, v) in sd {
            let s = v.as_str().unwrap_or_default();
            let enc = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
            data.insert(k, Value::String(enc));
        }
    }
}

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
fn default_node(m: &mut Map<String, Value>) {
    let Some(status) = m.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if is_unset(status, "allocatable")
        && let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), cap);
    }
}

pub(super) fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    if super::tracks_generation(info) {
        child(m, "metadata").insert("generation".into(), json!(1));
    }
    let status = match (info.group, info.kind) {
        ("", "Pod") => {
            let qos = pod_qos(m.get("spec").unwrap_or(&Value::Null));
            Some(json!({"phase": "Pending", "qosClass": qos}))
        }
        ("", "Namespace") => {
            let spec = child(m, "spec");
            let fins = spec
                .entry("finalizers")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !fins.is_array() {
                *fins = Value::Array(Vec::new());
            }
            let list = fins.as_array_mut().expect("array");
            if !list.iter().any(|f| f == "kubernetes") {
                list.push(json!("kubernetes"));
            }
            Some(json!({"phase": "Active"}))
        }
        ("", "Service") => Some(json!({"loadBalancer": {}})),
        ("", "ReplicationController") | ("apps", "ReplicaSet" | "StatefulSet") => {
            Some(json!({"replicas": 0}))
        }
        ("apps", "Deployment") | ("batch", "Job") => Some(json!({})),
        ("apps", "DaemonSet") => {
            child(m, "metadata");
            let ann = child(child(m, "metadata"), "annotations");
            ann.insert(
                "deprecated.daemonset.template.generation".into(),
                json!("1"),
            );
            Some(json!({
                "currentNumberScheduled": 0,
                "desiredNumberScheduled": 0,
                "numberMisscheduled": 0,
                "numberReady": 0,
            }))
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            if info.version == "v1" {
                Some(json!({"currentReplicas": 0, "desiredReplicas": 0}))
            } else {
                Some(json!({"desiredReplicas": 0}))
            }
        }
        ("networking.k8s.io", "Ingress") => Some(json!({"loadBalancer": {}})),
        ("certificates.k8s.io", "CertificateSigningRequest")
        | ("batch", "CronJob")
        | ("", "ResourceQuota") => Some(json!({})),
        // A new claim waits for the binding controller.
        ("", "PersistentVolumeClaim") => Some(json!({"phase": "Pending"})),
        // So does a new volume, stamped with when it entered the phase: its creation (the
        // apiserver sets `creationTimestamp` before calling this).
        ("", "PersistentVolume") => {
            let created = m
                .get("metadata")
                .and_then(|md| md.get("creationTimestamp"))
                .filter(|t| t.is_string())
                .cloned();
            let mut status = json!({"phase": "Pending"});
            if let Some(t) = created {
                status["lastPhaseTransitionTime"] = t;
            }
            Some(status)
        }
        // Go writes the budget's counters even when zero.
        ("policy", "PodDisruptionBudget") => Some(json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        })),
        _ => None,
    };
    if let Some(s) = status {
        m.insert("status".into(), s);
    }
    if (info.group, info.kind) == ("batch", "Job") {
        generate_job_selector(m);
    }
}

/// Upstream's `generateSelector`: unless `manualSelector` is true, the pod template gets the
/// job-name and controller-uid labels and the selector matches the controller uid.
fn generate_job_selector(m: &mut Map<String, Value>) {
    let manual = m
        .get("spec")
        .and_then(|s| s.get("manualSelector"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let md = m.get("metadata");
    let uid = md
        .and_then(|md| md.get("uid"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = md
        .and_then(|md| md.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let (false, Some(uid), Some(name)) = (manual, uid, name) else {
        return;
    };
    let spec = child(m, "spec");
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        set_default(labels, k, Value::String(v.clone()));
    }
    let ml = child(child(spec, "selector"), "matchLabels");
    set_default(ml, "batch.kubernetes.io/controller-uid", Value::String(uid));
}

/// A Pod's QoS class from its containers' cpu and memory requests and limits, as upstream's
/// `ComputePodQOS` (requests missing for a limited resource count as equal to the limit).
pub(crate) fn pod_qos(spec: &Value) -> &'static str {
    let mut requests: std::collections::BTreeMap<String, Quantity> = Default::default();
    let mut limits: std::collections::BTreeMap<String, Quantity> = Default::default();
    let mut guaranteed = true;
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let res = c.get("resources");
        let lim = res.and_then(|r| r.get("limits")).and_then(Value::as_object);
        let mut req: Map<String, Value> = res
            .and_then(|r| r.get("requests"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(lim) = lim {
            for (k, v) in lim {
                req.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        for (k, v) in &req {
            if (k == "cpu" || k == "memory")
                && let Some(q) = Quantity::from_json(v).filter(|q| !q.is_zero())
            {
                *requests.entry(k.clone()).or_insert(Quantity::ZERO) += q;
            }
        }
        let mut found = 0;
        if let Some(lim) = lim {
            for (k, v) in lim {
                if (k == "cpu" || k == "memory")
                    && let Some(q) = Quantity::from_json(v).filter(|q| !q.is_zero())
                {
                    *limits.entry(k.clone()).or_insert(Quantity::ZERO) += q;
                    found += 1;
                }
            }
        }
        if found < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
    {
        return "Guaranteed";
    }
    "Burstable"
}

/// Everything but `apiVersion`, `kind`, `metadata` and `status`.
fn spec_part(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) fn prepare_for_update(info: &ResourceInfo, new: &mut Value, old: &Value) {
    let (Some(n), Some(o)) = (new.as_object_mut(), old.as_object()) else {
        return;
    };
    let keeps_status =
        super::has_status_subresource(info) || (info.group, info.kind) == ("", "Pod");
    if keeps_status {
        match o.get("status") {
            Some(s) => {
                n.insert("status".into(), s.clone());
            }
            None => {
                n.shift_remove("status");
            }
        }
    }
    if (info.group, info.kind) == ("", "Namespace") {
        let fins = o.get("spec").and_then(|s| s.get("finalizers")).cloned();
        let spec = child(n, "spec");
        match fins {
            Some(f) => {
                spec.insert("finalizers".into(), f);
            }
            None => {
                spec.shift_remove("finalizers");
            }
        }
    }
    let old_gen = o
        .get("metadata")
        .and_then(|md| md.get("generation"))
        .and_then(Value::as_i64);
    let changed = spec_part(n) != spec_part(o);
    let generation = match old_gen {
        Some(g) if super::tracks_generation(info) && changed => Some(g + 1),
        g => g,
    };
    let md = child(n, "metadata");
    match generation {
        Some(g) => {
            md.insert("generation".into(), json!(g));
        }
        None => {
            md.shift_remove("generation");
        }
    }
    if (info.group, info.kind) == ("apps", "DaemonSet") {
        let template =
            |v: &Map<String, Value>| v.get("spec").and_then(|s| s.get("template")).cloned();
        let key = "deprecated.daemonset.template.generation";
        let old_tg = o
            .get("metadata")
            .and_then(|md| md.get("annotations"))
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i64>().ok());
        if let Some(tg) = old_tg {
            let tg = if template(n) != template(o) {
                tg + 1
            } else {
                tg
            };
            let ann = child(child(n, "metadata"), "annotations");
            ann.insert(key.into(), Value::String(tg.to_string()));
        }
    }
}

pub(super) fn prepare_for_status_update(_info: &ResourceInfo, new: &mut Value, old: &Value) {
    let (Some(n), Some(o)) = (new.as_object_mut(), old.as_object()) else {
        return;
    };
    let status = n.shift_remove("status");
    let mut md = n.shift_remove("metadata").unwrap_or_else(|| json!({}));
    let old_md = o.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(mdm) = md.as_object_mut() {
        for key in ["ownerReferences", "deletionTimestamp", "generation"] {
            match old_md.get(key) {
                Some(v) => {
                    mdm.insert(key.into(), v.clone());
                }
                None => {
                    mdm.shift_remove(key);
                }
            }
        }
    }
    let mut out = Map::new();
    for (k, v) in o {
        match k.as_str() {
            "metadata" => {
                out.insert(k.clone(), md.clone());
            }
            "status" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if !out.contains_key("metadata") {
        out.insert("metadata".into(), md);
    }
    if let Some(s) = status {
        out.insert("status".into(), s);
    }
    *n = out;
}
