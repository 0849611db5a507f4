//! `LimitRanger` admission: the LimitRanges of a namespace give a new pod's containers their
//! default limits (`default`) and requests (`defaultRequest`), recorded in the
//! `kubernetes.io/limit-ranger` annotation, then bound containers, pods and claims by `min`,
//! `max` and `maxLimitRequestRatio`, refusing with kube-apiserver's messages.
//!
//! As upstream, pods are admitted on create only (their containers cannot change after), and
//! claims on create and update.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use skiff_api::Quantity;
use skiff_api::quota::{ResourceList, pod_resources, resource_list};

use super::{Operation, Request, forbidden, name_of, namespace_of};
use crate::error::ApiResult;
use crate::registry::Registry;

/// The annotation listing what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Defaults and then checks a pod or claim against the LimitRanges of its namespace.
pub fn admit(registry: &Registry, req: &Request<'_>, obj: &mut Value) -> ApiResult<()> {
    if req.subresource.is_some() || obj.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(());
    }
    let pod = match (req.info.plural, req.op) {
        ("pods", Operation::Create) => true,
        ("persistentvolumeclaims", _) => false,
        _ => return Ok(()),
    };
    let ranges = limit_ranges(registry, namespace_of(obj));
    if ranges.is_empty() {
        return Ok(());
    }
    if pod {
        for range in &ranges {
            set_defaults(range, obj);
        }
    }
    let mut errors = Vec::new();
    for range in &ranges {
        if pod {
            errors.extend(validate_pod(range, obj));
        } else {
            errors.extend(validate_claim(range, obj));
        }
    }
    // Upstream aggregates: one message alone, several (without repeats) in brackets.
    let mut seen = BTreeSet::new();
    errors.retain(|e| seen.insert(e.clone()));
    match errors.len() {
        0 => Ok(()),
        1 => Err(forbidden(req.info, name_of(obj), &errors[0])),
        _ => Err(forbidden(
            req.info,
            name_of(obj),
            &format!("[{}]", errors.join(", ")),
        )),
    }
}

/// The LimitRanges of `ns` that limit something, from the watch cache.
fn limit_ranges(registry: &Registry, ns: &str) -> Vec<Value> {
    let info = skiff_api::resources::find("", "v1", "limitranges").expect("limitranges are served");
    registry
        .cache
        .for_resource(info)
        .map(|c| {
            c.snapshot(&format!("{}{ns}/", info.storage_prefix()))
                .0
                .into_iter()
                .map(|r| (*r).clone())
                .filter(|r| items(r).next().is_some())
                .collect()
        })
        .unwrap_or_default()
}

fn items(range: &Value) -> impl Iterator<Item = &Value> {
    range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// Gives every container the range's `Container` defaults it lacks and records them in the
/// annotation (upstream's `mergePodResourceRequirements`; a later range's note replaces an
/// earlier one's, as there).
fn set_defaults(range: &Value, pod: &mut Value) {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for item in items(range).filter(|i| item_type(i) == "Container") {
        for (field, into) in [("default", &mut limits), ("defaultRequest", &mut requests)] {
            if let Some(m) = item.get(field).and_then(Value::as_object) {
                into.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (field, prefix) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(list) = pod
            .pointer_mut(&format!("/spec/{field}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in list {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let set_requests = merge(c, "requests", &requests);
            let set_limits = merge(c, "limits", &limits);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {prefix} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {prefix} {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let meta = crate::objects::meta_mut(pod);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
}

/// Adds to container `c`'s `resources.<field>` the `defaults` it lacks; returns their names,
/// sorted.
fn merge(c: &mut Value, field: &str, defaults: &Map<String, Value>) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let Some(c) = c.as_object_mut() else {
        return Vec::new();
    };
    let resources = c.entry("resources").or_insert_with(|| json!({}));
    if !resources.is_object() {
        *resources = json!({});
    }
    let list = &mut resources[field];
    if !list.is_object() {
        *list = json!({});
    }
    let Some(list) = list.as_object_mut() else {
        return Vec::new();
    };
    let mut set = Vec::new();
    for (k, v) in defaults {
        if !list.contains_key(k) {
            list.insert(k.clone(), v.clone());
            set.push(k.clone());
        }
    }
    set.sort();
    set
}

/// A range item's constraints: `field` (`min`, `max`, `maxLimitRequestRatio`) by resource.
fn constraint(item: &Value, field: &str) -> ResourceList {
    resource_list(item.get(field))
}

/// Upstream's `minConstraint`.
fn min_constraint(
    kind: &str,
    resource: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(request) = requests.get(resource) else {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if *request < enforced {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but request is {request}"
        ));
    }
    match limits.get(resource) {
        Some(limit) if *limit < enforced => Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but limit is {limit}"
        )),
        _ => None,
    }
}

/// Upstream's `maxConstraint`: the limit must be stated and within, and so the request.
fn max_constraint(
    kind: &str,
    resource: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(limit) = limits.get(resource) else {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if *limit > enforced {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but limit is {limit}"
        ));
    }
    match requests.get(resource) {
        Some(request) if *request > enforced => Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but request is {request}"
        )),
        _ => None,
    }
}

/// Upstream's `maxRequestConstraint`, for claims (which have no limits).
fn max_request_constraint(
    kind: &str,
    resource: &str,
    enforced: Quantity,
    requests: &ResourceList,
) -> Option<String> {
    let Some(request) = requests.get(resource) else {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    (*request > enforced).then(|| {
        format!("maximum {resource} usage per {kind} is {enforced}, but request is {request}")
    })
}

/// Upstream's `limitRequestRatioConstraint`.
fn ratio_constraint(
    kind: &str,
    resource: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let request = requests.get(resource).filter(|q| !q.is_zero());
    let limit = limits.get(resource).filter(|q| !q.is_zero());
    let Some(request) = request else {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    };
    let Some(limit) = limit else {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    };
    let ratio = limit.as_nanos() as f64 / request.as_nanos() as f64;
    (ratio * 1e9 > enforced.as_nanos() as f64).then(|| {
        format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:.6}"
        )
    })
}

/// Every constraint of `item` on something with these requests and limits.
fn check_item(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Vec<String> {
    let mut errors = Vec::new();
    for (r, q) in constraint(item, "min") {
        errors.extend(min_constraint(kind, &r, q, requests, limits));
    }
    for (r, q) in constraint(item, "max") {
        errors.extend(max_constraint(kind, &r, q, requests, limits));
    }
    for (r, q) in constraint(item, "maxLimitRequestRatio") {
        errors.extend(ratio_constraint(kind, &r, q, requests, limits));
    }
    errors
}

/// The range's `Container` items on each container, and its `Pod` items on the pod's total.
fn validate_pod(range: &Value, pod: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    for item in items(range) {
        match item_type(item) {
            "Container" => {
                for field in ["containers", "initContainers"] {
                    for c in pod
                        .pointer(&format!("/spec/{field}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let requests = resource_list(c.pointer("/resources/requests"));
                        let limits = resource_list(c.pointer("/resources/limits"));
                        errors.extend(check_item(item, "Container", &requests, &limits));
                    }
                }
            }
            "Pod" => {
                let requests = pod_resources(pod, "requests");
                let limits = pod_resources(pod, "limits");
                errors.extend(check_item(item, "Pod", &requests, &limits));
            }
            _ => {}
        }
    }
    errors
}

/// The range's `PersistentVolumeClaim` items on a claim's requested storage.
fn validate_claim(range: &Value, claim: &Value) -> Vec<String> {
    let requests = resource_list(claim.pointer("/spec/resources/requests"));
    let mut errors = Vec::new();
    for item in items(range).filter(|i| item_type(i) == "PersistentVolumeClaim") {
        for (r, q) in constraint(item, "min") {
            errors.extend(min_constraint(
                "PersistentVolumeClaim",
                &r,
                q,
                &requests,
                &ResourceList::new(),
            ));
        }
        for (r, q) in constraint(item, "max") {
            errors.extend(max_request_constraint(
                "PersistentVolumeClaim",
                &r,
                q,
                &requests,
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}})
    }

    #[test]
    fn defaults_fill_what_containers_lack_and_are_noted() {
        let lr = range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]));
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [
                {"name": "c"},
                {"name": "d", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}},
            ],
            "initContainers": [{"name": "i"}],
        }});
        set_defaults(&lr, &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"requests": {"cpu": "100m", "memory": "128Mi"},
                   "limits": {"cpu": "500m", "memory": "256Mi"}})
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["limits"]["cpu"],
            "1"
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container c; \
             cpu, memory limit for container c; memory request for container d; \
             memory limit for container d; cpu, memory request for init container i; \
             cpu, memory limit for init container i"
        );
    }

    #[test]
    fn min_max_and_ratio_refuse_with_upstreams_words() {
        let lr = range(json!([
            {"type": "Container", "min": {"cpu": "100m"}, "max": {"memory": "1Gi"},
             "maxLimitRequestRatio": {"cpu": "2"}},
            {"type": "Pod", "max": {"cpu": "1"}},
        ]));
        let pod = |requests: Value, limits: Value| {
            json!({"spec": {"containers": [{"name": "c",
                "resources": {"requests": requests, "limits": limits}}]}})
        };
        let errors = validate_pod(
            &lr,
            &pod(
                json!({"cpu": "50m", "memory": "1Gi"}),
                json!({"cpu": "200m", "memory": "2Gi"}),
            ),
        );
        assert_eq!(
            errors,
            [
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum memory usage per Container is 1Gi, but limit is 2Gi",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
            ]
        );
        let errors = validate_pod(&lr, &pod(json!({"cpu": "2"}), json!({"memory": "1Gi"})));
        assert_eq!(
            errors,
            [
                "cpu max limit to request ratio per Container is 2, but no limit is specified or limit is 0",
                "maximum cpu usage per Pod is 1.  No limit is specified",
            ]
        );
        assert!(
            validate_pod(
                &lr,
                &pod(
                    json!({"cpu": "500m", "memory": "1Gi"}),
                    json!({"cpu": "1", "memory": "1Gi"})
                )
            )
            .is_empty()
        );
    }

    #[test]
    fn claims_are_bounded_by_their_request() {
        let lr = range(json!([{"type": "PersistentVolumeClaim",
            "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}]));
        let claim = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(
            validate_claim(&lr, &claim("500Mi")),
            ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert_eq!(
            validate_claim(&lr, &claim("3Gi")),
            ["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 3Gi"]
        );
        assert!(validate_claim(&lr, &claim("1Gi")).is_empty());
    }
}
