//! ResourceQuota arithmetic shared by the apiserver's `ResourceQuota` admission and the
//! controller-manager's quota controller: what an object uses of each quota resource (upstream's
//! pod, service, claim and object-count evaluators), which quotas an object falls under
//! (tracked resources and scopes), and the refusals with Kubernetes' wording.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::quantity::{Format, Quantity};

/// Amounts by resource name (`requests.cpu`, `pods`, `count/deployments.apps`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// The resources the pod evaluator tracks by name (more by prefix: [`tracks`]).
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// The compute resources a quota makes every container state (upstream's
/// backward-compatibility rule: quota on cpu or memory requires explicit values).
const MUST_SPECIFY: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// How a claim's storage class is charged: `<class>.storageclass.storage.k8s.io/<resource>`.
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

fn one() -> Quantity {
    Quantity::from_value(1, Format::DecimalSI)
}

/// A JSON map of quantities; entries that are not quantities are skipped.
pub fn resource_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Quantity::from_json(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON map of `list`, each quantity in its canonical form.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, q)| (k.clone(), json!(q.to_string())))
            .collect(),
    )
}

/// `a + b`, key by key.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, q) in b {
        let sum = out.get(k).map_or(*q, |v| *v + *q);
        out.insert(k.clone(), sum);
    }
    out
}

/// `a - b` key by key, never below zero; keys of `b` alone are zero (upstream's
/// `SubtractWithNonNegativeResult`).
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    for (k, q) in a {
        let left = b
            .get(k)
            .map_or(q.as_nanos(), |o| q.as_nanos() - o.as_nanos());
        out.insert(k.clone(), Quantity::from_nanos(left.max(0), q.format()));
    }
    for k in b.keys() {
        out.entry(k.clone()).or_insert(Quantity::ZERO);
    }
    out
}

/// The entries of `a` whose names are in `names`.
pub fn mask<'a>(a: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|k| Some((k.clone(), *a.get(k)?)))
        .collect()
}

/// `name=value` pairs sorted by name, comma-separated, as quota messages print them.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, q)| format!("{k}={q}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The larger of `a` and `b`, key by key.
fn max(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, q) in b {
        if out.get(k).is_none_or(|v| v < q) {
            out.insert(k.clone(), *q);
        }
    }
    out
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn containers<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Whether a pod still counts against compute quota: not Succeeded or Failed, and not past the
/// end of its deletion grace period (upstream's `QuotaV1Pod`).
pub fn pod_counts(pod: &Value, now: jiff::Timestamp) -> bool {
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return false;
    }
    let deleted = str_at(pod, "/metadata/deletionTimestamp")
        .parse::<jiff::Timestamp>()
        .ok();
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    match (deleted, grace) {
        (Some(at), Some(grace)) => now <= at + jiff::SignedDuration::from_secs(grace),
        _ => true,
    }
}

/// A pod's effective requests or limits (`field`): its containers' sum, its sidecars (init
/// containers with `restartPolicy: Always`) added, at least what each init container needs
/// while it runs, plus the pod's overhead (upstream's `PodRequests`/`PodLimits`).
pub fn pod_resources(pod: &Value, field: &str) -> ResourceList {
    let of = |c: &Value| resource_list(c.pointer(&format!("/resources/{field}")));
    let mut sum = ResourceList::new();
    for c in containers(pod, "containers") {
        sum = add(&sum, &of(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in containers(pod, "initContainers") {
        if str_at(c, "/restartPolicy") == "Always" {
            sidecars = add(&sidecars, &of(c));
            init_max = max(&init_max, &sidecars);
        } else {
            init_max = max(&init_max, &add(&of(c), &sidecars));
        }
    }
    let total = max(&add(&sum, &sidecars), &init_max);
    add(&total, &resource_list(pod.pointer("/spec/overhead")))
}

/// What a pod (or one container) with these requests and limits uses of compute quota
/// (upstream's `podComputeUsageHelper`).
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::from([("pods".to_string(), one())]);
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.to_string(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (r, q) in requests {
        if r.starts_with("hugepages-") {
            out.insert(r.clone(), *q);
            out.insert(format!("requests.{r}"), *q);
        } else if is_extended(r) {
            out.insert(format!("requests.{r}"), *q);
        }
    }
    out
}

/// An extended resource (`example.com/gpu`): a domain outside `kubernetes.io`, and not a
/// `requests.` quota name.
fn is_extended(name: &str) -> bool {
    let Some((domain, _)) = name.split_once('/') else {
        return false;
    };
    !(domain == "kubernetes.io"
        || domain.ends_with(".kubernetes.io")
        || name.starts_with("requests."))
}

/// The object-count resource of a kind: `count/<plural>` or `count/<plural>.<group>`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The older object-count names of core kinds (`services`, `secrets`, ...).
fn legacy_count_name(group: &str, plural: &str) -> Option<&'static str> {
    if !group.is_empty() {
        return None;
    }
    [
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
    ]
    .into_iter()
    .find(|n| *n == plural)
}

/// What an object of `group`/`plural` uses of quota.
pub fn usage(group: &str, plural: &str, obj: &Value, now: jiff::Timestamp) -> ResourceList {
    let mut out = ResourceList::from([(count_name(group, plural), one())]);
    if let Some(legacy) = legacy_count_name(group, plural) {
        out.insert(legacy.to_string(), one());
    }
    match (group, plural) {
        ("", "pods") if pod_counts(obj, now) => {
            let requests = pod_resources(obj, "requests");
            let limits = pod_resources(obj, "limits");
            out = add(&out, &compute_usage(&requests, &limits));
        }
        ("", "services") => {
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            let count = |n: usize| Quantity::from_value(n as i64, Format::DecimalSI);
            let (node_ports, lbs) = match str_at(obj, "/spec/type") {
                "NodePort" => (ports.len(), 0),
                "LoadBalancer" => {
                    let allocate = obj
                        .pointer("/spec/allocateLoadBalancerNodePorts")
                        .and_then(Value::as_bool)
                        != Some(false);
                    let with_port = ports
                        .iter()
                        .filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0)
                        .count();
                    (if allocate { ports.len() } else { with_port }, 1)
                }
                _ => (0, 0),
            };
            out.insert("services.nodeports".into(), count(node_ports));
            out.insert("services.loadbalancers".into(), count(lbs));
        }
        ("", "persistentvolumeclaims") => {
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !class.is_empty() {
                out.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    one(),
                );
            }
            // A claim being expanded is charged the larger of what it asks and what it got.
            let requested = resource_list(obj.pointer("/spec/resources/requests"))
                .get("storage")
                .copied();
            let allocated = resource_list(obj.pointer("/status/allocatedResources"))
                .get("storage")
                .copied();
            if let Some(storage) = requested.into_iter().chain(allocated).max() {
                out.insert("requests.storage".into(), storage);
                if !class.is_empty() {
                    out.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                        storage,
                    );
                }
            }
        }
        _ => {}
    }
    out
}

/// Whether the evaluator of `group`/`plural` accounts for quota resource `name`.
pub fn tracks(group: &str, plural: &str, name: &str) -> bool {
    if name == count_name(group, plural) || legacy_count_name(group, plural) == Some(name) {
        return true;
    }
    match (group, plural) {
        ("", "pods") => {
            POD_RESOURCES.contains(&name)
                || name.starts_with("hugepages-")
                || name.starts_with("requests.hugepages-")
                || name.strip_prefix("requests.").is_some_and(is_extended)
        }
        ("", "services") => matches!(name, "services.nodeports" | "services.loadbalancers"),
        ("", "persistentvolumeclaims") => {
            name == "requests.storage"
                || name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}requests.storage"))
                || name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"))
        }
        _ => false,
    }
}

/// The kind a quota resource name counts, as (group, plural), when it names one directly
/// (`pods`, `count/deployments.apps`); compute and storage names give their evaluator's kind.
pub fn kind_of(name: &str) -> Option<(String, String)> {
    if let Some(counted) = name.strip_prefix("count/") {
        return Some(match counted.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), counted.to_string()),
        });
    }
    ["pods", "services", "persistentvolumeclaims"]
        .into_iter()
        .chain(["replicationcontrollers", "resourcequotas", "secrets"])
        .chain(["configmaps"])
        .find(|p| tracks("", p, name))
        .map(|p| (String::new(), p.to_string()))
}

/// One scope a quota is restricted to: `spec.scopes` entries (operator `Exists`) and
/// `spec.scopeSelector.matchExpressions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub name: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// The scopes of a quota.
pub fn scopes(quota: &Value) -> Vec<Scope> {
    let mut out: Vec<Scope> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| Scope {
            name: s.to_string(),
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(Scope {
            name: str_at(e, "/scopeName").to_string(),
            operator: str_at(e, "/operator").to_string(),
            values: e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        });
    }
    out
}

/// A pod of the `BestEffort` QoS class: no container sets a cpu or memory request or limit.
pub fn is_best_effort(pod: &Value) -> bool {
    !containers(pod, "containers")
        .chain(containers(pod, "initContainers"))
        .any(|c| {
            ["requests", "limits"].iter().any(|f| {
                let list = resource_list(c.pointer(&format!("/resources/{f}")));
                ["cpu", "memory"]
                    .iter()
                    .any(|r| list.get(*r).is_some_and(|q| !q.is_zero()))
            })
        })
}

/// Whether a pod falls in a scope. Only pods can: other kinds match no scope.
fn pod_in_scope(scope: &Scope, pod: &Value) -> bool {
    let terminating = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0);
    match scope.name.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            // Upstream matches a label set holding the class name, present even when empty.
            let class = str_at(pod, "/spec/priorityClassName");
            match scope.operator.as_str() {
                "Exists" => !class.is_empty(),
                "In" => scope.values.iter().any(|v| v == class),
                "NotIn" => !scope.values.iter().any(|v| v == class),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The resources of `hard` that a quota with `scopes` charges `obj` for; `None` when the
/// quota does not apply to it (it tracks nothing the object uses, or a scope excludes it).
pub fn matching<'a>(
    hard: impl IntoIterator<Item = &'a String>,
    scopes: &[Scope],
    group: &str,
    plural: &str,
    obj: &Value,
) -> Option<BTreeSet<String>> {
    let tracked: BTreeSet<String> = hard
        .into_iter()
        .filter(|n| tracks(group, plural, n))
        .cloned()
        .collect();
    if tracked.is_empty() {
        return None;
    }
    let pod = (group, plural) == ("", "pods");
    let in_scopes = scopes.iter().all(|s| pod && pod_in_scope(s, obj));
    in_scopes.then_some(tracked)
}

/// Upstream's pod constraint: when a quota tracks cpu or memory, every container must state
/// that request or limit. `Err` carries `must specify <resource> for: <containers>; ...`.
pub fn pod_constraints(required: &BTreeSet<String>, pod: &Value) -> Result<(), String> {
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| MUST_SPECIFY.contains(r))
        .collect();
    let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in containers(pod, "containers").chain(containers(pod, "initContainers")) {
        let set = compute_usage(
            &resource_list(c.pointer("/resources/requests")),
            &resource_list(c.pointer("/resources/limits")),
        );
        for r in &required {
            if !set.contains_key(*r) {
                missing.entry(r).or_default().insert(str_at(c, "/name"));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            let names: Vec<&str> = names.iter().copied().collect();
            format!("{r} for: {}", names.join(","))
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// Admits `delta` (the object's added usage) against one quota; `obj` is the object of
/// `group`/`plural`. `Ok(None)`: the quota does not apply; `Ok(Some(used))`: the quota's new
/// `status.used`; `Err`: the refusal, as upstream words it (after `<kind> "<name>" is
/// forbidden: `).
pub fn admit(
    quota: &Value,
    group: &str,
    plural: &str,
    obj: &Value,
    delta: &ResourceList,
) -> Result<Option<ResourceList>, String> {
    let name = str_at(quota, "/metadata/name");
    // Upstream enforces what the controller has recorded in `status.hard`, not the spec.
    let hard = resource_list(quota.pointer("/status/hard"));
    let used = resource_list(quota.pointer("/status/used"));
    let Some(restricted) = matching(hard.keys(), &scopes(quota), group, plural, obj) else {
        return Ok(None);
    };
    if (group, plural) == ("", "pods") {
        pod_constraints(&restricted, obj).map_err(|e| format!("failed quota: {name}: {e}"))?;
    }
    if restricted.iter().any(|r| !used.contains_key(r)) {
        let names: Vec<&str> = restricted.iter().map(String::as_str).collect();
        return Err(format!(
            "status unknown for quota: {name}, resources: {}",
            names.join(",")
        ));
    }
    let requested = mask(delta, hard.keys());
    let new_used = add(&used, &requested);
    let exceeded: Vec<String> = requested
        .keys()
        .filter(|k| match (new_used.get(*k), hard.get(*k)) {
            (Some(u), Some(h)) => u > h,
            _ => false,
        })
        .cloned()
        .collect();
    if !exceeded.is_empty() {
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&mask(&requested, &exceeded)),
            pretty(&mask(&used, &exceeded)),
            pretty(&mask(&hard, &exceeded)),
        ));
    }
    Ok(Some(new_used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": containers}})
    }

    fn quota(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q"}, "spec": {"hard": hard},
               "status": {"hard": hard, "used": used}})
    }

    #[test]
    fn a_pod_uses_its_containers_sum_and_its_largest_init_container() {
        let mut p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                        "limits": {"cpu": "200m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
        ]));
        p["spec"]["initContainers"] =
            json!([{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}]);
        let u = usage("", "pods", &p, now());
        assert_eq!(
            u,
            list(&[
                ("count/pods", "1"),
                ("pods", "1"),
                ("cpu", "1"),
                ("requests.cpu", "1"),
                ("limits.cpu", "200m"),
                ("memory", "128Mi"),
                ("requests.memory", "128Mi"),
            ])
        );
        assert_eq!(u["memory"].to_string(), "128Mi");
    }

    #[test]
    fn finished_pods_and_pods_past_their_grace_count_only_as_objects() {
        let mut p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        p["status"] = json!({"phase": "Succeeded"});
        assert_eq!(usage("", "pods", &p, now()), list(&[("count/pods", "1")]));
        p["status"] = json!({"phase": "Running"});
        p["metadata"]["deletionTimestamp"] = json!("2025-12-31T23:59:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert!(!pod_counts(&p, now()));
        p["metadata"]["deletionGracePeriodSeconds"] = json!(90);
        assert!(pod_counts(&p, now()));
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 81}]}});
        assert_eq!(
            usage("", "services", &svc, now()),
            list(&[
                ("count/services", "1"),
                ("services", "1"),
                ("services.nodeports", "2"),
                ("services.loadbalancers", "1"),
            ])
        );
    }

    #[test]
    fn claims_charge_storage_to_their_class() {
        let pvc = json!({"spec": {"storageClassName": "fast",
                                  "resources": {"requests": {"storage": "1Gi"}}},
                         "status": {"allocatedResources": {"storage": "2Gi"}}});
        let u = usage("", "persistentvolumeclaims", &pvc, now());
        assert_eq!(u["requests.storage"], q("2Gi"));
        assert_eq!(
            u["fast.storageclass.storage.k8s.io/requests.storage"],
            q("2Gi")
        );
        assert_eq!(u["persistentvolumeclaims"], q("1"));
        assert_eq!(
            usage("apps", "deployments", &json!({}), now()),
            list(&[("count/deployments.apps", "1")])
        );
    }

    #[test]
    fn the_third_pod_exceeds_a_quota_of_two() {
        let p = pod(json!([{"name": "c"}]));
        let delta = usage("", "pods", &p, now());
        let q2 = quota(json!({"pods": "2"}), json!({"pods": "1"}));
        assert_eq!(
            admit(&q2, "", "pods", &p, &delta),
            Ok(Some(list(&[("pods", "2")])))
        );
        let full = quota(json!({"pods": "2"}), json!({"pods": "2"}));
        assert_eq!(
            admit(&full, "", "pods", &p, &delta).unwrap_err(),
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        let services = quota(json!({"services": "1"}), json!({"services": "0"}));
        assert_eq!(admit(&services, "", "pods", &p, &delta), Ok(None));
    }

    #[test]
    fn a_compute_quota_requires_each_container_to_state_it() {
        let p = pod(json!([
            {"name": "c", "resources": {"requests": {"cpu": "1"}}},
            {"name": "d"},
        ]));
        let delta = usage("", "pods", &p, now());
        let q = quota(
            json!({"requests.cpu": "2", "limits.cpu": "2", "requests.memory": "1Gi"}),
            json!({"requests.cpu": "0", "limits.cpu": "0", "requests.memory": "0"}),
        );
        assert_eq!(
            admit(&q, "", "pods", &p, &delta).unwrap_err(),
            "failed quota: q: must specify limits.cpu for: c,d; requests.cpu for: d; requests.memory for: c,d"
        );
        let unknown = json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "1"}}});
        assert_eq!(
            admit(&unknown, "", "pods", &p, &delta).unwrap_err(),
            "status unknown for quota: q, resources: pods"
        );
    }

    #[test]
    fn scopes_select_pods_and_only_pods() {
        let best_effort = pod(json!([{"name": "c"}]));
        let mut burstable = pod(json!([{"name": "c", "resources": {"requests": {"cpu": "1"}}}]));
        burstable["spec"]["priorityClassName"] = json!("high");
        let hard = ["pods".to_string()];
        let scoped = |scopes: Value| {
            super::scopes(&json!({"spec": {"scopeSelector": {"matchExpressions": scopes}}}))
        };
        let be = scoped(json!([{"scopeName": "BestEffort", "operator": "Exists"}]));
        assert!(matching(&hard, &be, "", "pods", &best_effort).is_some());
        assert!(matching(&hard, &be, "", "pods", &burstable).is_none());
        let high =
            scoped(json!([{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]));
        assert!(matching(&hard, &high, "", "pods", &burstable).is_some());
        assert!(matching(&hard, &high, "", "pods", &best_effort).is_none());
        let services = ["services".to_string()];
        assert!(matching(&services, &be, "", "services", &json!({})).is_none());
        assert!(matching(&services, &[], "", "services", &json!({})).is_some());
    }

    #[test]
    fn subtraction_stops_at_zero() {
        let a = list(&[("pods", "1"), ("cpu", "500m")]);
        let b = list(&[("pods", "2"), ("memory", "1Gi")]);
        assert_eq!(
            subtract_non_negative(&a, &b),
            list(&[("pods", "0"), ("cpu", "500m"), ("memory", "0")])
        );
        assert_eq!(
            kind_of("count/jobs.batch"),
            Some(("batch".into(), "jobs".into()))
        );
        assert_eq!(
            kind_of("requests.cpu"),
            Some((String::new(), "pods".into()))
        );
        assert_eq!(
            pretty(&list(&[("pods", "1"), ("cpu", "1")])),
            "cpu=1,pods=1"
        );
    }
}
