//! Validation with Kubernetes' field paths and wording (upstream `pkg/apis/*/validation`): one
//! concern, a long file because every served kind has its rules here.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use super::FieldError;
use crate::ResourceInfo;
use crate::quantity::Quantity;
use crate::selectors::LabelSelector;
use crate::validation as v;

type Errs = Vec<FieldError>;

fn get<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        cur = cur.get(p)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

fn get_str<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    get(obj, path).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(obj: &'a Value, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn obj_map<'a>(obj: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    obj.get(key).and_then(Value::as_object)
}

fn push_msgs(errs: &mut Errs, field: &str, value: &Value, msgs: Vec<String>) {
    for m in msgs {
        errs.push(FieldError::invalid(field, value, m));
    }
}

fn nonnegative(errs: &mut Errs, obj: &Value, key: &str, field: &str) {
    if let Some(n) = obj.get(key).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            field,
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
}

/// Renders a `metav1.LabelSelector` as the Go protobuf `String()` upstream prints in errors.
fn selector_value(sel: &Value) -> String {
    let mut labels: Vec<(String, String)> = obj_map(sel, "matchLabels")
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let ml: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    let exprs: String = arr(sel, "matchExpressions")
        .iter()
        .map(|e| {
            let vals: Vec<String> = arr(e, "values")
                .iter()
                .map(|x| format!("{:?}", x.as_str().unwrap_or_default()))
                .collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[]string{{{}}},}},",
                get_str(e, &["key"]),
                get_str(e, &["operator"]),
                vals.join(",")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{ml}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

/// A `FieldError::invalid` whose value is shown verbatim (Go structs), not quoted.
fn invalid_raw(field: &str, rendered: &str, detail: &str) -> FieldError {
    FieldError {
        kind: super::FieldErrorKind::Invalid,
        field: field.to_string(),
        value: Some(rendered.to_string()),
        detail: detail.to_string(),
    }
}

fn invalid_selector(field: &str, sel: &Value, detail: &str) -> FieldError {
    invalid_raw(field, &selector_value(sel), detail)
}

/// Which name rule a kind's `metadata.name` follows.
fn name_check(info: &ResourceInfo) -> fn(&str) -> Vec<String> {
    match (info.group, info.kind) {
        ("", "Namespace") => v::is_dns1123_label,
        ("", "Service") => v::is_dns1035_label,
        ("rbac.authorization.k8s.io", _) => v::is_path_segment_name,
        _ => v::is_dns1123_subdomain,
    }
}

pub(super) fn validate_create(info: &ResourceInfo, obj: &Value) -> Errs {
    let mut errs = Vec::new();
    validate_object_meta(info, obj, &mut errs);
    validate_kind(info, obj, &mut errs);
    errs
}

pub(super) fn validate_update(info: &ResourceInfo, new: &Value, old: &Value) -> Errs {
    let mut errs = validate_create(info, new);
    for key in ["name", "namespace", "uid", "creationTimestamp"] {
        let nv = get_str(new, &["metadata", key]);
        let ov = get_str(old, &["metadata", key]);
        let skip = nv.is_empty() && matches!(key, "uid" | "creationTimestamp");
        if !skip && nv != ov {
            errs.push(FieldError::invalid(
                format!("metadata.{key}"),
                &json!(nv),
                "field is immutable",
            ));
        }
    }
    validate_kind_update(info, new, old, &mut errs);
    errs
}

fn validate_object_meta(info: &ResourceInfo, obj: &Value, errs: &mut Errs) {
    let name = get_str(obj, &["metadata", "name"]);
    let generate_name = get_str(obj, &["metadata", "generateName"]);
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        push_msgs(errs, "metadata.name", &json!(name), name_check(info)(name));
    }
    if let Some(labels) = get(obj, &["metadata", "labels"]).and_then(Value::as_object) {
        validate_labels(labels, "metadata.labels", errs);
    }
    if let Some(ann) = get(obj, &["metadata", "annotations"]).and_then(Value::as_object) {
        validate_annotations(ann, "metadata.annotations", errs);
    }
}

fn validate_labels(labels: &Map<String, Value>, field: &str, errs: &mut Errs) {
    for (k, val) in labels {
        push_msgs(errs, field, &json!(k), v::is_qualified_name(k));
        let s = val.as_str().unwrap_or_default();
        push_msgs(errs, field, &json!(s), v::is_valid_label_value(s));
    }
}

fn validate_annotations(ann: &Map<String, Value>, field: &str, errs: &mut Errs) {
    let mut total = 0;
    for (k, val) in ann {
        push_msgs(
            errs,
            field,
            &json!(k),
            v::is_qualified_name(&k.to_lowercase()),
        );
        total += k.len() + val.as_str().map_or(0, str::len);
    }
    if total > 256 * 1024 {
        errs.push(FieldError {
            kind: super::FieldErrorKind::TooLong,
            field: field.to_string(),
            value: None,
            detail: format!("must have at most {} bytes", 256 * 1024),
        });
    }
}

fn validate_kind(info: &ResourceInfo, obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    match (info.group, info.kind) {
        ("", "Pod") => {
            if spec.is_null() {
                errs.push(FieldError::required("spec", ""));
            } else {
                validate_pod_spec(&spec, "spec", errs);
            }
        }
        ("", "ReplicationController") => validate_rc(&spec, errs),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet") => {
            validate_workload(info.kind, &spec, errs)
        }
        ("batch", "Job") => validate_job(&spec, errs),
        ("batch", "CronJob") => validate_cronjob(obj, &spec, errs),
        ("", "PersistentVolume") => validate_pv(&spec, errs),
        ("", "PersistentVolumeClaim") => validate_pvc_spec(&spec, "spec", errs),
        ("", "ResourceQuota") => validate_quota(&spec, errs),
        ("", "LimitRange") => validate_limit_range(&spec, errs),
        ("storage.k8s.io", "StorageClass") => validate_storage_class(obj, errs),
        ("policy", "PodDisruptionBudget") => validate_pdb(&spec, errs),
        ("scheduling.k8s.io", "PriorityClass") => validate_priority_class(obj, errs),
        ("", "Service") => validate_service(&spec, errs),
        ("", "ConfigMap") => validate_config_map(obj, errs),
        ("", "Secret") => validate_secret(obj, errs),
        ("autoscaling", "HorizontalPodAutoscaler") => validate_hpa(&spec, errs),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            errs.extend(crate::certificates::validate(obj))
        }
        ("", "Namespace") => {
            for (i, f) in arr(&spec, "finalizers").iter().enumerate() {
                let s = f.as_str().unwrap_or_default();
                push_msgs(
                    errs,
                    &format!("spec.finalizers[{i}]"),
                    f,
                    v::is_qualified_name(s),
                );
            }
        }
        ("", "Node") => {
            for (i, t) in arr(&spec, "taints").iter().enumerate() {
                let p = format!("spec.taints[{i}]");
                if get_str(t, &["key"]).is_empty() {
                    errs.push(FieldError::required(format!("{p}.key"), ""));
                }
                let effect = get_str(t, &["effect"]);
                if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                    errs.push(FieldError::not_supported(
                        format!("{p}.effect"),
                        &json!(effect),
                        &["NoExecute", "NoSchedule", "PreferNoSchedule"],
                    ));
                }
            }
        }
        _ => {}
    }
}

fn validate_kind_update(info: &ResourceInfo, new: &Value, old: &Value, errs: &mut Errs) {
    let ns = new.get("spec").cloned().unwrap_or(Value::Null);
    let os = old.get("spec").cloned().unwrap_or(Value::Null);
    match (info.group, info.kind) {
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            errs.extend(crate::certificates::validate_update(new, old))
        }
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet") => {
            if ns.get("selector") != os.get("selector") {
                let sel = ns.get("selector").cloned().unwrap_or(Value::Null);
                errs.push(invalid_selector(
                    "spec.selector",
                    &sel,
                    "field is immutable",
                ));
            }
            if info.kind == "StatefulSet" {
                let strip = |s: &Value| {
                    let mut s = s.as_object().cloned().unwrap_or_default();
                    for k in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                        "selector",
                    ] {
                        s.shift_remove(k);
                    }
                    s
                };
                if strip(&ns) != strip(&os) {
                    errs.push(FieldError::forbidden(
                        "spec",
                        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    ));
                }
            }
        }
        ("batch", "Job") => {
            if ns.get("selector") != os.get("selector") {
                let sel = ns.get("selector").cloned().unwrap_or(Value::Null);
                errs.push(invalid_selector(
                    "spec.selector",
                    &sel,
                    "field is immutable",
                ));
            }
            let suspended = os.get("suspend").and_then(Value::as_bool) == Some(true);
            if !suspended && ns.get("template") != os.get("template") {
                let t = ns.get("template").cloned().unwrap_or(Value::Null);
                errs.push(invalid_raw(
                    "spec.template",
                    &t.to_string(),
                    "field is immutable",
                ));
            }
            for key in ["completionMode", "podFailurePolicy", "backoffLimitPerIndex"] {
                if ns.get(key) != os.get(key) {
                    let val = ns.get(key).cloned().unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        format!("spec.{key}"),
                        &val,
                        "field is immutable",
                    ));
                }
            }
        }
        ("", "Service") => {
            let old_ip = get_str(&os, &["clusterIP"]);
            let new_ip = get_str(&ns, &["clusterIP"]);
            let to_external = get_str(&ns, &["type"]) == "ExternalName";
            if !new_ip.is_empty() && !old_ip.is_empty() && new_ip != old_ip && !to_external {
                errs.push(invalid_raw(
                    "spec.clusterIPs[0]",
                    &v::go_value(&json!([new_ip])),
                    "may not change once set",
                ));
            }
        }
        ("", "Pod") => validate_pod_update(&ns, &os, errs),
        ("", "PersistentVolumeClaim") => validate_pvc_update(&ns, &os, errs),
        ("storage.k8s.io", "StorageClass") => {
            for key in ["parameters", "provisioner", "reclaimPolicy"] {
                if new.get(key) != old.get(key) {
                    errs.push(FieldError::forbidden(
                        key,
                        format!("updates to {key} are forbidden."),
                    ));
                }
            }
            if new.get("volumeBindingMode") != old.get("volumeBindingMode") {
                let m = new.get("volumeBindingMode").cloned().unwrap_or(Value::Null);
                errs.push(FieldError::invalid(
                    "volumeBindingMode",
                    &m,
                    "field is immutable",
                ));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if new.get("value") != old.get("value") {
                errs.push(FieldError::forbidden(
                    "value",
                    "may not be changed in an update.",
                ));
            }
            if new.get("preemptionPolicy") != old.get("preemptionPolicy") {
                let p = new.get("preemptionPolicy").cloned().unwrap_or(Value::Null);
                errs.push(FieldError::invalid(
                    "preemptionPolicy",
                    &p,
                    "field is immutable",
                ));
            }
        }
        ("", "ConfigMap" | "Secret") => {
            if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                for key in ["data", "binaryData", "stringData"] {
                    if new.get(key) != old.get(key) {
                        errs.push(FieldError::forbidden(
                            key,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
                if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                    errs.push(FieldError::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if info.kind == "Secret" && get_str(new, &["type"]) != get_str(old, &["type"]) {
                errs.push(FieldError::invalid(
                    "type",
                    &json!(get_str(new, &["type"])),
                    "field is immutable",
                ));
            }
        }
        ("", "Node") => {
            let old_cidr = get_str(&os, &["podCIDR"]);
            if !old_cidr.is_empty() && get_str(&ns, &["podCIDR"]) != old_cidr {
                errs.push(FieldError::forbidden(
                    "spec.podCIDRs",
                    "node updates may not change podCIDR except from \"\" to valid",
                ));
            }
        }
        _ => {}
    }
}

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Upstream's `ValidatePodUpdate`: only images, activeDeadlineSeconds, added tolerations,
/// removed scheduling gates and a grace period of a negative value may change.
fn validate_pod_update(new: &Value, old: &Value, errs: &mut Errs) {
    let mut munged = new.as_object().cloned().unwrap_or_default();
    let old_m = old.as_object().cloned().unwrap_or_default();
    for key in ["containers", "initContainers"] {
        let old_list = arr(old, key);
        if let Some(list) = munged.get_mut(key).and_then(Value::as_array_mut)
            && list.len() == old_list.len()
        {
            for (c, oc) in list.iter_mut().zip(old_list) {
                if let (Some(c), Some(img)) = (c.as_object_mut(), oc.get("image")) {
                    c.insert("image".into(), img.clone());
                }
            }
        }
    }
    // activeDeadlineSeconds may be set, or lowered, but not removed or raised.
    let new_ads = new.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let old_ads = old.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (old_ads, new_ads) {
        (Some(_), None) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (Some(o), Some(n)) if n > o => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &json!(n),
            "must be less than or equal to previous value",
        )),
        _ => {}
    }
    restore(&mut munged, &old_m, "activeDeadlineSeconds");
    // Tolerations may only be added.
    let old_tol = arr(old, "tolerations");
    let new_tol = arr(new, "tolerations");
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        restore(&mut munged, &old_m, "tolerations");
    }
    let old_tgps = old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_tgps.is_some_and(|g| g < 0) {
        restore(&mut munged, &old_m, "terminationGracePeriodSeconds");
    }
    let old_gates = arr(old, "schedulingGates");
    if arr(new, "schedulingGates")
        .iter()
        .all(|g| old_gates.contains(g))
    {
        restore(&mut munged, &old_m, "schedulingGates");
    }
    if munged != old_m {
        errs.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
}

fn restore(m: &mut Map<String, Value>, old: &Map<String, Value>, key: &str) {
    match old.get(key) {
        Some(v) => {
            m.insert(key.to_string(), v.clone());
        }
        None => {
            m.shift_remove(key);
        }
    }
}

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// `ValidatePodSpec` (the parts Skiff acts on) at `path` (`spec` or `spec.template.spec`).
fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Errs) {
    // Volumes first: mounts refer to them.
    let mut volumes = HashSet::new();
    for (i, vol) in arr(spec, "volumes").iter().enumerate() {
        let p = format!("{path}.volumes[{i}]");
        let name = get_str(vol, &["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            push_msgs(
                errs,
                &format!("{p}.name"),
                &json!(name),
                v::is_dns1123_label(name),
            );
            if !volumes.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{p}.name"), &json!(name)));
            }
        }
        let sources = vol
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, v)| *k != "name" && !v.is_null())
                    .count()
            })
            .unwrap_or(0);
        validate_volume_files(vol, &p, errs);
        if sources == 0 {
            errs.push(FieldError::required(
                p.clone(),
                "must specify a volume type",
            ));
        } else if sources > 1 {
            errs.push(FieldError::forbidden(
                p.clone(),
                "may not specify more than 1 volume type",
            ));
        }
    }

    let containers = arr(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    let mut port_names = HashSet::new();
    for key in ["initContainers", "containers"] {
        for (i, c) in arr(spec, key).iter().enumerate() {
            let p = format!("{path}.{key}[{i}]");
            validate_container(c, &p, &volumes, &mut names, &mut port_names, errs);
            if key == "initContainers"
                && let Some(rp) = get(c, &["restartPolicy"])
                && rp.as_str() != Some("Always")
            {
                errs.push(FieldError::not_supported(
                    format!("{p}.restartPolicy"),
                    rp,
                    &["Always"],
                ));
            }
        }
    }

    let rp = get_str(spec, &["restartPolicy"]);
    if rp.is_empty() {
        errs.push(FieldError::required(format!("{path}.restartPolicy"), ""));
    } else if !RESTART_POLICIES.contains(&rp) {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            &json!(rp),
            RESTART_POLICIES,
        ));
    }
    let dns = get_str(spec, &["dnsPolicy"]);
    let dns_ok = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    if !dns.is_empty() && !dns_ok.contains(&dns) {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            &json!(dns),
            &dns_ok,
        ));
    }
    if let Some(ads) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            &json!(ads),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(ns) = obj_map(spec, "nodeSelector") {
        validate_labels(ns, &format!("{path}.nodeSelector"), errs);
    }
    for (i, t) in arr(spec, "tolerations").iter().enumerate() {
        validate_toleration(t, &format!("{path}.tolerations[{i}]"), errs);
    }
    let sa = get_str(spec, &["serviceAccountName"]);
    if !sa.is_empty() {
        push_msgs(
            errs,
            &format!("{path}.serviceAccountName"),
            &json!(sa),
            v::is_dns1123_subdomain(sa),
        );
    }
}

fn validate_toleration(t: &Value, p: &str, errs: &mut Errs) {
    let key = get_str(t, &["key"]);
    if !key.is_empty() {
        push_msgs(
            errs,
            &format!("{p}.key"),
            &json!(key),
            v::is_qualified_name(key),
        );
    }
    let op = get_str(t, &["operator"]);
    match op {
        "" | "Equal" => {
            if key.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.operator"),
                    &json!(op),
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
        }
        "Exists" => {
            if !get_str(t, &["value"]).is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.operator"),
                    &json!(get_str(t, &["value"])),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        _ => errs.push(FieldError::not_supported(
            format!("{p}.operator"),
            &json!(op),
            &["Equal", "Exists"],
        )),
    }
    let effect = get_str(t, &["effect"]);
    if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        errs.push(FieldError::not_supported(
            format!("{p}.effect"),
            &json!(effect),
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
        ));
    }
}

fn validate_container(
    c: &Value,
    p: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    port_names: &mut HashSet<String>,
    errs: &mut Errs,
) {
    let name = get_str(c, &["name"]);
    if name.is_empty() {
        errs.push(FieldError::required(format!("{p}.name"), ""));
    } else {
        push_msgs(
            errs,
            &format!("{p}.name"),
            &json!(name),
            v::is_dns1123_label(name),
        );
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{p}.name"), &json!(name)));
        }
    }
    if get_str(c, &["image"]).is_empty() {
        errs.push(FieldError::required(format!("{p}.image"), ""));
    }
    let ipp = get_str(c, &["imagePullPolicy"]);
    if !ipp.is_empty() && !matches!(ipp, "Always" | "IfNotPresent" | "Never") {
        errs.push(FieldError::not_supported(
            format!("{p}.imagePullPolicy"),
            &json!(ipp),
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    for (i, port) in arr(c, "ports").iter().enumerate() {
        let pp = format!("{p}.ports[{i}]");
        let pname = get_str(port, &["name"]);
        if !pname.is_empty() {
            push_msgs(
                errs,
                &format!("{pp}.name"),
                &json!(pname),
                v::is_valid_port_name(pname),
            );
            if !port_names.insert(pname.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), &json!(pname)));
            }
        }
        match port.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
            Some(n) => push_msgs(
                errs,
                &format!("{pp}.containerPort"),
                &json!(n),
                v::is_valid_port_num(n),
            ),
        }
        if let Some(hp) = port.get("hostPort").and_then(Value::as_i64)
            && hp != 0
        {
            push_msgs(
                errs,
                &format!("{pp}.hostPort"),
                &json!(hp),
                v::is_valid_port_num(hp),
            );
        }
        validate_protocol(port, &pp, errs);
    }
    for (i, e) in arr(c, "env").iter().enumerate() {
        if get_str(e, &["name"]).is_empty() {
            errs.push(FieldError::required(format!("{p}.env[{i}].name"), ""));
        }
    }
    validate_resources(c.get("resources"), &format!("{p}.resources"), errs);
    let mut mount_paths = HashSet::new();
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let mp = format!("{p}.volumeMounts[{i}]");
        let mname = get_str(m, &["name"]);
        if mname.is_empty() {
            errs.push(FieldError::required(format!("{mp}.name"), ""));
        } else if !volumes.contains(mname) {
            errs.push(FieldError::not_found(format!("{mp}.name"), &json!(mname)));
        }
        let sub_path = get_str(m, &["subPath"]);
        if !sub_path.is_empty() {
            push_msgs(
                errs,
                &format!("{mp}.subPath"),
                &json!(sub_path),
                v::is_local_descending_path(sub_path),
            );
        }
        let path = get_str(m, &["mountPath"]);
        if path.is_empty() {
            errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
        } else if !mount_paths.insert(path.to_string()) {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                &json!(path),
                "must be unique",
            ));
        }
    }
}

/// The files of configMap, secret, downwardAPI and projected volumes (volume `p`): modes
/// within 0777 and paths that stay inside the volume, as Kubernetes' `validateKeyToPath`,
/// `validateDownwardAPIVolumeFile` and their `defaultMode` checks.
fn validate_volume_files(vol: &Value, p: &str, errs: &mut Errs) {
    for kind in ["configMap", "secret", "downwardAPI", "projected"] {
        let Some(source) = get(vol, &[kind]) else {
            continue;
        };
        let sp = format!("{p}.{kind}");
        validate_file_mode(source, "defaultMode", &sp, errs);
        if kind == "projected" {
            for (i, s) in arr(source, "sources").iter().enumerate() {
                for inner in ["configMap", "secret", "downwardAPI"] {
                    if let Some(proj) = get(s, &[inner]) {
                        let pp = format!("{sp}.sources[{i}].{inner}");
                        validate_volume_items(proj, inner == "downwardAPI", &pp, errs);
                    }
                }
            }
        } else {
            validate_volume_items(source, kind == "downwardAPI", &sp, errs);
        }
    }
}

/// A source's `items`: KeyToPaths (`key`, `path`, `mode`) or, for the downward API, files
/// (`path`, `mode`).
fn validate_volume_items(source: &Value, downward: bool, sp: &str, errs: &mut Errs) {
    for (j, item) in arr(source, "items").iter().enumerate() {
        let ip = format!("{sp}.items[{j}]");
        if !downward && get_str(item, &["key"]).is_empty() {
            errs.push(FieldError::required(format!("{ip}.key"), ""));
        }
        let path = get_str(item, &["path"]);
        if path.is_empty() {
            errs.push(FieldError::required(format!("{ip}.path"), ""));
        }
        push_msgs(
            errs,
            &format!("{ip}.path"),
            &json!(path),
            v::is_local_non_reserved_path(path),
        );
        validate_file_mode(item, "mode", &ip, errs);
    }
}

fn validate_file_mode(obj: &Value, key: &str, p: &str, errs: &mut Errs) {
    if let Some(mode) = obj.get(key).and_then(Value::as_i64)
        && !v::is_valid_file_mode(mode)
    {
        errs.push(FieldError::invalid(
            format!("{p}.{key}"),
            &json!(mode),
            v::FILE_MODE_ERROR,
        ));
    }
}

fn validate_protocol(port: &Value, pp: &str, errs: &mut Errs) {
    let proto = get_str(port, &["protocol"]);
    if proto.is_empty() {
        errs.push(FieldError::required(format!("{pp}.protocol"), ""));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(FieldError::not_supported(
            format!("{pp}.protocol"),
            &json!(proto),
            PROTOCOLS,
        ));
    }
}

/// Kubernetes reports every unparsable quantity with the grammar's regular expression.
const QUANTITY_REGEX: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

fn quantity_str(q: &Value) -> String {
    match q {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Requests and limits: valid, non-negative quantities, requests ≤ limits.
fn validate_resources(res: Option<&Value>, p: &str, errs: &mut Errs) {
    let Some(res) = res else { return };
    let mut parsed: BTreeMap<(&str, String), Quantity> = BTreeMap::new();
    for part in ["limits", "requests"] {
        for (name, q) in obj_map(res, part).into_iter().flatten() {
            let fp = format!("{p}.{part}[{name}]");
            match Quantity::from_json(q) {
                None => errs.push(FieldError::invalid(
                    fp,
                    &json!(quantity_str(q)),
                    QUANTITY_REGEX,
                )),
                Some(x) if x.is_negative() => errs.push(FieldError::invalid(
                    fp,
                    &json!(quantity_str(q)),
                    "must be greater than or equal to 0",
                )),
                Some(x) => {
                    parsed.insert((part, name.clone()), x);
                }
            }
        }
    }
    for ((part, name), req) in &parsed {
        if *part != "requests" {
            continue;
        }
        if let Some(lim) = parsed.get(&("limits", name.clone())) {
            let req_s = quantity_str(&res["requests"][name]);
            let lim_s = quantity_str(&res["limits"][name]);
            let overcommit = name == "cpu" || name == "memory" || name == "ephemeral-storage";
            if !overcommit && req != lim {
                errs.push(FieldError::invalid(
                    format!("{p}.requests"),
                    &json!(req_s),
                    format!("must be equal to {name} limit of {lim_s}"),
                ));
            } else if req > lim {
                errs.push(FieldError::invalid(
                    format!("{p}.requests"),
                    &json!(req_s),
                    format!("must be less than or equal to {name} limit of {lim_s}"),
                ));
            }
        }
    }
}

/// A pod template: its labels and its pod spec.
fn validate_template(template: &Value, path: &str, errs: &mut Errs) {
    if let Some(labels) = get(template, &["metadata", "labels"]).and_then(Value::as_object) {
        validate_labels(labels, &format!("{path}.metadata.labels"), errs);
    }
    if let Some(ann) = get(template, &["metadata", "annotations"]).and_then(Value::as_object) {
        validate_annotations(ann, &format!("{path}.metadata.annotations"), errs);
    }
    match template.get("spec") {
        Some(s) if !s.is_null() => validate_pod_spec(s, &format!("{path}.spec"), errs),
        _ => errs.push(FieldError::required(format!("{path}.spec.containers"), "")),
    }
}

fn template_labels_match(selector: &LabelSelector, template: &Value, errs: &mut Errs) {
    let labels = get(template, &["metadata", "labels"]).and_then(Value::as_object);
    if !selector.is_empty() && !selector.matches(labels) {
        let shown = labels
            .map(|l| Value::Object(l.clone()))
            .unwrap_or(json!({}));
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            &shown,
            "`selector` does not match template `labels`",
        ));
    }
}

/// The rules a controller's template shares: `restartPolicy: Always`, no deadline.
fn template_for_controller(template: &Value, kind: &str, errs: &mut Errs) {
    let rp = get_str(template, &["spec", "restartPolicy"]);
    if !rp.is_empty() && rp != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            &json!(rp),
            &["Always"],
        ));
    }
    if get(template, &["spec", "activeDeadlineSeconds"]).is_some() {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn validate_rc(spec: &Value, errs: &mut Errs) {
    nonnegative(errs, spec, "minReadySeconds", "spec.minReadySeconds");
    nonnegative(errs, spec, "replicas", "spec.replicas");
    let sel = obj_map(spec, "selector");
    if sel.is_none_or(Map::is_empty) {
        errs.push(FieldError::required("spec.selector", ""));
    }
    if let Some(sel) = sel {
        validate_labels(sel, "spec.selector", errs);
    }
    let Some(template) = get(spec, &["template"]) else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    if let Ok(s) = LabelSelector::from_object(spec.get("selector").unwrap_or(&Value::Null)) {
        template_labels_match(&s, template, errs);
    }
    validate_template(template, "spec.template", errs);
    template_for_controller(template, "ReplicationController", errs);
}

/// Deployment, ReplicaSet, DaemonSet, StatefulSet.
fn validate_workload(kind: &str, spec: &Value, errs: &mut Errs) {
    if kind != "DaemonSet" {
        nonnegative(errs, spec, "replicas", "spec.replicas");
    }
    nonnegative(errs, spec, "minReadySeconds", "spec.minReadySeconds");
    nonnegative(
        errs,
        spec,
        "revisionHistoryLimit",
        "spec.revisionHistoryLimit",
    );
    let selector = match get(spec, &["selector"]) {
        None => {
            errs.push(FieldError::required("spec.selector", ""));
            None
        }
        Some(sel) => {
            if let Some(ml) = obj_map(sel, "matchLabels") {
                validate_labels(ml, "spec.selector.matchLabels", errs);
            }
            let n = obj_map(sel, "matchLabels").map_or(0, Map::len)
                + arr(sel, "matchExpressions").len();
            if n == 0 {
                let what = match kind {
                    "DaemonSet" => "daemonset",
                    "StatefulSet" => "statefulset",
                    // Upstream's ReplicaSet validation says "deployment" too.
                    _ => "deployment",
                };
                errs.push(invalid_selector(
                    "spec.selector",
                    sel,
                    &format!("empty selector is invalid for {what}"),
                ));
            }
            match LabelSelector::from_object(sel) {
                Ok(s) => Some(s),
                Err(e) => {
                    errs.push(invalid_selector("spec.selector", sel, &e));
                    None
                }
            }
        }
    };
    let Some(template) = get(spec, &["template"]) else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    if let Some(s) = &selector {
        template_labels_match(s, template, errs);
    }
    if kind == "StatefulSet" {
        let template = with_claim_volumes(spec, template);
        validate_template(&template, "spec.template", errs);
        for (i, claim) in arr(spec, "volumeClaimTemplates").iter().enumerate() {
            let p = format!("spec.volumeClaimTemplates[{i}]");
            if get_str(claim, &["metadata", "name"]).is_empty() {
                errs.push(FieldError::required(format!("{p}.metadata.name"), ""));
            }
            let cs = claim.get("spec").cloned().unwrap_or(Value::Null);
            validate_pvc_spec(&cs, &format!("{p}.spec"), errs);
        }
    } else {
        validate_template(template, "spec.template", errs);
    }
    template_for_controller(template, kind, errs);
    match kind {
        "Deployment" => validate_deployment_strategy(spec, errs),
        "DaemonSet" => {
            let ty = get_str(spec, &["updateStrategy", "type"]);
            if !ty.is_empty() && !matches!(ty, "OnDelete" | "RollingUpdate") {
                errs.push(FieldError::not_supported(
                    "spec.updateStrategy.type",
                    &json!(ty),
                    &["OnDelete", "RollingUpdate"],
                ));
            }
        }
        "StatefulSet" => {
            let pmp = get_str(spec, &["podManagementPolicy"]);
            if !pmp.is_empty() && !matches!(pmp, "OrderedReady" | "Parallel") {
                errs.push(FieldError::not_supported(
                    "spec.podManagementPolicy",
                    &json!(pmp),
                    &["OrderedReady", "Parallel"],
                ));
            }
            let ty = get_str(spec, &["updateStrategy", "type"]);
            if !ty.is_empty() && !matches!(ty, "OnDelete" | "RollingUpdate") {
                errs.push(FieldError::not_supported(
                    "spec.updateStrategy.type",
                    &json!(ty),
                    &["OnDelete", "RollingUpdate"],
                ));
            }
        }
        _ => {}
    }
}

/// An int-or-percent (`maxSurge`, `maxUnavailable`): its percentage or absolute value.
fn int_or_percent(v: &Value, field: &str, errs: &mut Errs) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => {
            let n = n.as_i64()?;
            if n < 0 {
                errs.push(FieldError::invalid(
                    field,
                    v,
                    "must be greater than or equal to 0",
                ));
            }
            Some((n, false))
        }
        Value::String(s) => {
            let num = s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok());
            match num {
                Some(n) => Some((n, true)),
                None => {
                    errs.push(FieldError::invalid(
                        field,
                        v,
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    None
                }
            }
        }
        _ => None,
    }
}

fn validate_deployment_strategy(spec: &Value, errs: &mut Errs) {
    let ty = get_str(spec, &["strategy", "type"]);
    match ty {
        "" => errs.push(FieldError::required("spec.strategy.type", "")),
        "Recreate" => {
            if get(spec, &["strategy", "rollingUpdate"]).is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let ru = get(spec, &["strategy", "rollingUpdate"])
                .cloned()
                .unwrap_or(json!({}));
            let base = "spec.strategy.rollingUpdate";
            let mu = ru
                .get("maxUnavailable")
                .and_then(|x| int_or_percent(x, &format!("{base}.maxUnavailable"), errs));
            let ms = ru
                .get("maxSurge")
                .and_then(|x| int_or_percent(x, &format!("{base}.maxSurge"), errs));
            if let Some((n, true)) = mu
                && n > 100
            {
                errs.push(FieldError::invalid(
                    format!("{base}.maxUnavailable"),
                    &ru["maxUnavailable"],
                    "must not be greater than 100%",
                ));
            }
            if let (Some((0, _)), Some((0, _))) = (mu, ms) {
                errs.push(FieldError::invalid(
                    format!("{base}.maxUnavailable"),
                    &ru["maxUnavailable"],
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.strategy.type",
            &json!(other),
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let (Some(pds), mrs) = (
        spec.get("progressDeadlineSeconds").and_then(Value::as_i64),
        spec.get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    ) && pds <= mrs
    {
        errs.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            &json!(pds),
            "must be greater than minReadySeconds",
        ));
    }
}

fn validate_job(spec: &Value, errs: &mut Errs) {
    for key in ["parallelism", "completions", "backoffLimit"] {
        nonnegative(errs, spec, key, &format!("spec.{key}"));
    }
    if let Some(ads) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && ads <= 0
    {
        errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &json!(ads),
            "must be greater than or equal to 1",
        ));
    }
    let cm = get_str(spec, &["completionMode"]);
    if !cm.is_empty() && !matches!(cm, "NonIndexed" | "Indexed") {
        errs.push(FieldError::not_supported(
            "spec.completionMode",
            &json!(cm),
            &["NonIndexed", "Indexed"],
        ));
    }
    if cm == "Indexed" && get(spec, &["completions"]).is_none() {
        errs.push(FieldError::required(
            "spec.completions",
            "when completion mode is Indexed",
        ));
    }
    let Some(template) = get(spec, &["template"]) else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    match get(spec, &["selector"]) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match LabelSelector::from_object(sel) {
            Ok(s) => template_labels_match(&s, template, errs),
            Err(e) => errs.push(invalid_selector("spec.selector", sel, &e)),
        },
    }
    validate_template(template, "spec.template", errs);
    let rp = get_str(template, &["spec", "restartPolicy"]);
    if !matches!(rp, "OnFailure" | "Never") {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            &json!(rp),
            &["OnFailure", "Never"],
        ));
    }
}

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn validate_service(spec: &Value, errs: &mut Errs) {
    let ty = get_str(spec, &["type"]);
    if !ty.is_empty() && !SERVICE_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            "spec.type",
            &json!(ty),
            SERVICE_TYPES,
        ));
    }
    let cluster_ip = get_str(spec, &["clusterIP"]);
    let headless = cluster_ip == "None";
    let ports = arr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    if ty == "ExternalName" {
        let en = get_str(spec, &["externalName"]);
        if en.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            push_msgs(
                errs,
                "spec.externalName",
                &json!(en),
                v::is_dns1123_subdomain(en.trim_end_matches('.')),
            );
        }
    }
    if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<std::net::IpAddr>().is_err() {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            &json!(cluster_ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    let mut names = HashSet::new();
    let mut seen_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = get_str(port, &["name"]);
        if name.is_empty() {
            if ports.len() > 1 {
                errs.push(FieldError::required(format!("{pp}.name"), ""));
            }
        } else {
            push_msgs(
                errs,
                &format!("{pp}.name"),
                &json!(name),
                v::is_dns1123_label(name),
            );
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), &json!(name)));
            }
        }
        let n = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        push_msgs(
            errs,
            &format!("{pp}.port"),
            &json!(n),
            v::is_valid_port_num(n),
        );
        validate_protocol(port, &pp, errs);
        let proto = get_str(port, &["protocol"]);
        if !seen_ports.insert((n, proto.to_string())) {
            errs.push(FieldError::duplicate(
                pp.clone(),
                &json!(format!("{n}/{proto}")),
            ));
        }
        match port.get("targetPort") {
            Some(Value::Number(t)) => {
                let t = t.as_i64().unwrap_or(0);
                push_msgs(
                    errs,
                    &format!("{pp}.targetPort"),
                    &json!(t),
                    v::is_valid_port_num(t),
                );
            }
            Some(Value::String(s)) => {
                push_msgs(
                    errs,
                    &format!("{pp}.targetPort"),
                    &json!(s),
                    v::is_valid_port_name(s),
                );
            }
            _ => {}
        }
        if let Some(np) = port.get("nodePort").and_then(Value::as_i64)
            && np != 0
        {
            if ty == "ClusterIP" || ty == "ExternalName" || ty.is_empty() {
                errs.push(FieldError::forbidden(
                    format!("{pp}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else {
                push_msgs(
                    errs,
                    &format!("{pp}.nodePort"),
                    &json!(np),
                    v::is_valid_port_num(np),
                );
            }
        }
    }
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let field = format!("spec.externalIPs[{i}]");
        let text = ip.as_str().unwrap_or_default();
        match text.parse::<std::net::IpAddr>() {
            Err(_) => errs.push(FieldError::invalid(
                &field,
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )),
            Ok(addr) => {
                if let Some(why) = special_ip(addr) {
                    errs.push(FieldError::invalid(&field, ip, why));
                }
            }
        }
    }
    let sa = get_str(spec, &["sessionAffinity"]);
    if !sa.is_empty() && !matches!(sa, "ClientIP" | "None") {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            &json!(sa),
            &["ClientIP", "None"],
        ));
    }
    if let Some(sel) = obj_map(spec, "selector") {
        validate_labels(sel, "spec.selector", errs);
    }
    for key in ["externalTrafficPolicy", "internalTrafficPolicy"] {
        let p = get_str(spec, &[key]);
        if !p.is_empty() && !matches!(p, "Cluster" | "Local") {
            errs.push(FieldError::not_supported(
                format!("spec.{key}"),
                &json!(p),
                &["Cluster", "Local"],
            ));
        }
    }
}

/// Why `ip` may not be a Service's external IP, as Kubernetes' `ValidateNonSpecialIP`: every
/// node would capture traffic meant for its own loopback, link-local or multicast addresses.
fn special_ip(ip: std::net::IpAddr) -> Option<&'static str> {
    use std::net::IpAddr;
    let link_local_multicast = match ip {
        IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        IpAddr::V6(a) => a.segments()[0] == 0xff02,
    };
    let link_local = match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    };
    if ip.is_unspecified() {
        Some(if ip.is_ipv4() {
            "may not be unspecified (0.0.0.0)"
        } else {
            "may not be unspecified (::)"
        })
    } else if ip.is_loopback() {
        Some("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    } else if link_local {
        Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    } else if link_local_multicast {
        Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    } else {
        None
    }
}

fn validate_config_map(obj: &Value, errs: &mut Errs) {
    let binary = obj_map(obj, "binaryData");
    let mut total = 0;
    for (key, val) in obj_map(obj, "data").into_iter().flatten() {
        let f = format!("data[{key}]");
        push_msgs(errs, &f, &json!(key), v::is_config_map_key(key));
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(FieldError::invalid(
                f,
                &json!(key),
                "duplicate of key present in binaryData",
            ));
        }
        total += val.as_str().map_or(0, str::len);
    }
    for (key, val) in binary.into_iter().flatten() {
        push_msgs(
            errs,
            &format!("binaryData[{key}]"),
            &json!(key),
            v::is_config_map_key(key),
        );
        total += val.as_str().map_or(0, str::len) * 3 / 4;
    }
    if total > 1024 * 1024 {
        errs.push(FieldError {
            kind: super::FieldErrorKind::TooLong,
            field: String::new(),
            value: None,
            detail: format!("must have at most {} bytes", 1024 * 1024),
        });
    }
}

fn validate_secret(obj: &Value, errs: &mut Errs) {
    let data = obj_map(obj, "data");
    let mut total = 0;
    for (key, val) in data.into_iter().flatten() {
        push_msgs(
            errs,
            &format!("data[{key}]"),
            &json!(key),
            v::is_config_map_key(key),
        );
        total += val.as_str().map_or(0, str::len) * 3 / 4;
    }
    if total > 1024 * 1024 {
        errs.push(FieldError {
            kind: super::FieldErrorKind::TooLong,
            field: "data".into(),
            value: None,
            detail: format!("must have at most {} bytes", 1024 * 1024),
        });
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let sa_name = get_str(
        obj,
        &[
            "metadata",
            "annotations",
            "kubernetes.io/service-account.name",
        ],
    );
    match get_str(obj, &["type"]) {
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(FieldError::required(format!("data[{k}]"), ""));
                }
            }
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""));
        }
        "kubernetes.io/service-account-token" if sa_name.is_empty() => {
            errs.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
        _ => {}
    }
}

fn validate_hpa(spec: &Value, errs: &mut Errs) {
    for key in ["kind", "name"] {
        if get_str(spec, &["scaleTargetRef", key]).is_empty() {
            errs.push(FieldError::required(
                format!("spec.scaleTargetRef.{key}"),
                "",
            ));
        }
    }
    let min = spec.get("minReplicas").and_then(Value::as_i64);
    if let Some(m) = min
        && m < 1
    {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            &json!(m),
            "must be greater than or equal to 1",
        ));
    }
    let max = spec.get("maxReplicas").and_then(Value::as_i64).unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to 1",
        ));
    }
    if let Some(m) = min
        && max < m
    {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    if let Some(t) = spec
        .get("targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
        && t < 1
    {
        errs.push(FieldError::invalid(
            "spec.targetCPUUtilizationPercentage",
            &json!(t),
            "must be greater than or equal to 1",
        ));
    }
    for (i, m) in arr(spec, "metrics").iter().enumerate() {
        let ty = get_str(m, &["type"]);
        let ok = [
            "ContainerResource",
            "External",
            "Object",
            "Pods",
            "Resource",
        ];
        if !ok.contains(&ty) {
            errs.push(FieldError::not_supported(
                format!("spec.metrics[{i}].type"),
                &json!(ty),
                &ok,
            ));
        }
    }
}

/// A StatefulSet's template with one claim-backed volume per `volumeClaimTemplates` entry the
/// template does not already name: each pod gets those volumes (claim `<template>-<pod>`), so
/// a container may mount them, as the documentation's `web.yaml` does.
fn with_claim_volumes(spec: &Value, template: &Value) -> Value {
    let mut template = template.clone();
    let claims: Vec<String> = arr(spec, "volumeClaimTemplates")
        .iter()
        .map(|c| get_str(c, &["metadata", "name"]).to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(tspec) = template.get_mut("spec").and_then(Value::as_object_mut) {
        let volumes = tspec
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = volumes.as_array_mut() {
            for name in claims {
                if !list.iter().any(|v| get_str(v, &["name"]) == name) {
                    list.push(json!({"name": name, "persistentVolumeClaim": {"claimName": name}}));
                }
            }
        }
    }
    template
}

fn validate_cronjob(obj: &Value, spec: &Value, errs: &mut Errs) {
    // Job names are the CronJob's name plus an 11-character suffix, and must stay labels.
    let name = get_str(obj, &["metadata", "name"]);
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be no more than 52 characters",
        ));
    }
    let schedule = get_str(spec, &["schedule"]);
    if schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else {
        if let Err(e) = crate::cron::parse(schedule) {
            errs.push(FieldError::invalid("spec.schedule", &json!(schedule), e));
        }
        if schedule.contains("TZ") {
            errs.push(FieldError::invalid(
                "spec.schedule",
                &json!(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(tz) = spec.get("timeZone").and_then(Value::as_str)
        && let Err(e) = crate::cron::validate_time_zone(tz)
    {
        errs.push(FieldError::invalid("spec.timeZone", &json!(tz), e));
    }
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(errs, spec, key, &format!("spec.{key}"));
    }
    match get_str(spec, &["concurrencyPolicy"]) {
        "" => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        "Allow" | "Forbid" | "Replace" => {}
        other => errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            &json!(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let p = "spec.jobTemplate.spec";
    let job = get(spec, &["jobTemplate", "spec"])
        .cloned()
        .unwrap_or(json!({}));
    for key in ["parallelism", "completions", "backoffLimit"] {
        nonnegative(errs, &job, key, &format!("{p}.{key}"));
    }
    if job.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::not_supported(
            format!("{p}.manualSelector"),
            &json!(true),
            &["nil", "false"],
        ));
    }
    let Some(template) = get(&job, &["template"]) else {
        errs.push(FieldError::required(format!("{p}.template"), ""));
        return;
    };
    validate_template(template, &format!("{p}.template"), errs);
    let rp = get_str(template, &["spec", "restartPolicy"]);
    if !matches!(rp, "OnFailure" | "Never") {
        errs.push(FieldError::not_supported(
            format!("{p}.template.spec.restartPolicy"),
            &json!(rp),
            &["OnFailure", "Never"],
        ));
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn validate_access_modes(spec: &Value, p: &str, required_detail: &str, errs: &mut Errs) {
    let modes = arr(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(
            format!("{p}.accessModes"),
            required_detail,
        ));
    }
    for m in modes {
        if !m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
            errs.push(FieldError::not_supported(
                format!("{p}.accessModes"),
                m,
                ACCESS_MODES,
            ));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.len() > 1 {
        errs.push(FieldError::forbidden(
            format!("{p}.accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn validate_volume_mode(spec: &Value, p: &str, errs: &mut Errs) {
    if let Some(m) = get(spec, &["volumeMode"])
        && !matches!(m.as_str(), Some("Block" | "Filesystem"))
    {
        errs.push(FieldError::not_supported(
            format!("{p}.volumeMode"),
            m,
            &["Block", "Filesystem"],
        ));
    }
}

/// A quantity that must parse and not be negative; its value when it does.
fn valid_quantity(q: &Value, field: &str, errs: &mut Errs) -> Option<Quantity> {
    match Quantity::from_json(q) {
        None => {
            errs.push(FieldError::invalid(
                field,
                &json!(quantity_str(q)),
                QUANTITY_REGEX,
            ));
            None
        }
        Some(x) if x.is_negative() => {
            errs.push(FieldError::invalid(
                field,
                &json!(quantity_str(q)),
                "must be greater than or equal to 0",
            ));
            None
        }
        Some(x) => Some(x),
    }
}

/// The persistent volume sources (the inline-only ones, such as emptyDir, are not).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn validate_pv(spec: &Value, errs: &mut Errs) {
    validate_access_modes(spec, "spec", "", errs);
    match obj_map(spec, "capacity").filter(|c| !c.is_empty()) {
        None => errs.push(FieldError::required("spec.capacity", "")),
        Some(cap) => {
            for (k, q) in cap {
                let f = format!("spec.capacity[{k}]");
                if k != "storage" {
                    errs.push(FieldError::not_supported(f, &json!(k), &["storage"]));
                } else {
                    valid_quantity(q, &f, errs);
                }
            }
        }
    }
    let rp = get_str(spec, &["persistentVolumeReclaimPolicy"]);
    if !rp.is_empty() && !matches!(rp, "Delete" | "Recycle" | "Retain") {
        errs.push(FieldError::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            &json!(rp),
            &["Delete", "Recycle", "Retain"],
        ));
    }
    validate_volume_mode(spec, "spec", errs);
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|k| get(spec, &[k]).is_some())
        .collect();
    match sources.len() {
        0 => errs.push(FieldError::required("spec", "must specify a volume type")),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            "spec",
            "may not specify more than 1 volume type",
        )),
    }
    for kind in ["hostPath", "local"] {
        if get(spec, &[kind]).is_some() && get_str(spec, &[kind, "path"]).is_empty() {
            errs.push(FieldError::required(format!("spec.{kind}.path"), ""));
        }
    }
    if get(spec, &["local"]).is_some() && get(spec, &["nodeAffinity"]).is_none() {
        errs.push(FieldError::required(
            "spec.nodeAffinity",
            "Local volume requires node affinity",
        ));
    }
    let class = get_str(spec, &["storageClassName"]);
    if !class.is_empty() {
        push_msgs(
            errs,
            "spec.storageClassName",
            &json!(class),
            v::is_dns1123_subdomain(class),
        );
    }
}

/// A claim's spec at `p` (`spec`, or a StatefulSet's `spec.volumeClaimTemplates[i].spec`).
fn validate_pvc_spec(spec: &Value, p: &str, errs: &mut Errs) {
    validate_access_modes(spec, p, "at least 1 access mode is required", errs);
    match get(spec, &["resources", "requests", "storage"]) {
        None => errs.push(FieldError::required(format!("{p}.resources[storage]"), "")),
        Some(q) => {
            let f = format!("{p}.resources.requests[storage]");
            if let Some(x) = valid_quantity(q, &f, errs)
                && x.is_zero()
            {
                errs.push(FieldError::invalid(
                    f,
                    &json!(quantity_str(q)),
                    "must be greater than zero",
                ));
            }
        }
    }
    validate_volume_mode(spec, p, errs);
    if let Some(sel) = get(spec, &["selector"])
        && let Err(e) = LabelSelector::from_object(sel)
    {
        errs.push(invalid_selector(&format!("{p}.selector"), sel, &e));
    }
    let class = get_str(spec, &["storageClassName"]);
    if !class.is_empty() {
        push_msgs(
            errs,
            &format!("{p}.storageClassName"),
            &json!(class),
            v::is_dns1123_subdomain(class),
        );
    }
}

/// A claim's spec is fixed once created, except for a larger request (expansion), its
/// volume attributes class, and the volume name the binder sets on an unbound claim.
fn validate_pvc_update(new: &Value, old: &Value, errs: &mut Errs) {
    let strip = |s: &Value, old_unbound: bool| {
        let mut s = s.as_object().cloned().unwrap_or_default();
        s.shift_remove("volumeAttributesClassName");
        if old_unbound {
            s.shift_remove("volumeName");
        }
        if let Some(r) = s.get_mut("resources").and_then(Value::as_object_mut) {
            r.shift_remove("requests");
        }
        s
    };
    let unbound = get_str(old, &["volumeName"]).is_empty();
    if strip(new, unbound) != strip(old, unbound) {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
}

const QUOTA_SCOPES: &[&str] = &[
    "BestEffort",
    "CrossNamespacePodAffinity",
    "NotBestEffort",
    "NotTerminating",
    "PriorityClass",
    "Terminating",
];

/// Resources counted in whole units (object counts and the like).
fn is_integer_resource(name: &str) -> bool {
    name == "pods"
        || name.starts_with("count/")
        || matches!(
            name,
            "services"
                | "replicationcontrollers"
                | "resourcequotas"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "services.nodeports"
                | "services.loadbalancers"
        )
}

fn validate_quota(spec: &Value, errs: &mut Errs) {
    for (k, q) in obj_map(spec, "hard").into_iter().flatten() {
        let f = format!("spec.hard[{k}]");
        push_msgs(errs, &f, &json!(k), v::is_qualified_name(k));
        if let Some(x) = valid_quantity(q, &f, errs)
            && is_integer_resource(k)
            && x.milli_value() % 1000 != 0
        {
            errs.push(FieldError::invalid(
                f,
                &json!(quantity_str(q)),
                "must be an integer",
            ));
        }
    }
    for (i, scope) in arr(spec, "scopes").iter().enumerate() {
        if !scope.as_str().is_some_and(|s| QUOTA_SCOPES.contains(&s)) {
            errs.push(FieldError::not_supported(
                format!("spec.scopes[{i}]"),
                scope,
                QUOTA_SCOPES,
            ));
        }
    }
}

fn validate_limit_range(spec: &Value, errs: &mut Errs) {
    for (i, item) in arr(spec, "limits").iter().enumerate() {
        let p = format!("spec.limits[{i}]");
        let ty = get_str(item, &["type"]);
        match ty {
            "" => errs.push(FieldError::required(format!("{p}.type"), "")),
            "Container" | "Pod" | "PersistentVolumeClaim" => {}
            other => errs.push(FieldError::not_supported(
                format!("{p}.type"),
                &json!(other),
                &["Container", "PersistentVolumeClaim", "Pod"],
            )),
        }
        if ty == "Pod" {
            for key in ["default", "defaultRequest"] {
                if obj_map(item, key).is_some_and(|m| !m.is_empty()) {
                    errs.push(FieldError::forbidden(
                        format!("{p}.{key}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        }
        let mut parsed: BTreeMap<(&str, &str), (Quantity, String)> = BTreeMap::new();
        for part in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            for (k, q) in obj_map(item, part).into_iter().flatten() {
                let f = format!("{p}.{part}[{k}]");
                if let Some(x) = valid_quantity(q, &f, errs) {
                    parsed.insert((part, k.as_str()), (x, quantity_str(q)));
                }
            }
        }
        let resources: std::collections::BTreeSet<&str> = parsed.keys().map(|(_, k)| *k).collect();
        for k in resources {
            let q = |part: &'static str| parsed.get(&(part, k));
            // (lower part, upper part, where the error is reported, its words).
            let pairs = [
                (
                    "min",
                    "max",
                    "min",
                    "min value {a} is greater than max value {b}",
                ),
                (
                    "min",
                    "defaultRequest",
                    "defaultRequest",
                    "min value {a} is greater than default request value {b}",
                ),
                (
                    "defaultRequest",
                    "max",
                    "defaultRequest",
                    "default request value {a} is greater than max value {b}",
                ),
                (
                    "defaultRequest",
                    "default",
                    "defaultRequest",
                    "default request value {a} is greater than default limit value {b}",
                ),
                (
                    "min",
                    "default",
                    "default",
                    "min value {a} is greater than default value {b}",
                ),
                (
                    "default",
                    "max",
                    "default",
                    "default value {a} is greater than max value {b}",
                ),
            ];
            for (lo, hi, at, words) in pairs {
                if let (Some((a, a_s)), Some((b, b_s))) = (q(lo), q(hi))
                    && a > b
                {
                    let shown = if at == lo { a_s } else { b_s };
                    errs.push(FieldError::invalid(
                        format!("{p}.{at}[{k}]"),
                        &json!(shown),
                        words.replace("{a}", a_s).replace("{b}", b_s),
                    ));
                }
            }
        }
    }
}

fn validate_storage_class(obj: &Value, errs: &mut Errs) {
    let prov = get_str(obj, &["provisioner"]);
    if prov.is_empty() {
        errs.push(FieldError::required("provisioner", ""));
    } else {
        push_msgs(
            errs,
            "provisioner",
            &json!(prov),
            v::is_qualified_name(&prov.to_lowercase()),
        );
    }
    let rp = get_str(obj, &["reclaimPolicy"]);
    if !rp.is_empty() && !matches!(rp, "Delete" | "Retain") {
        errs.push(FieldError::not_supported(
            "reclaimPolicy",
            &json!(rp),
            &["Delete", "Retain"],
        ));
    }
    let mode = get_str(obj, &["volumeBindingMode"]);
    if !mode.is_empty() && !matches!(mode, "Immediate" | "WaitForFirstConsumer") {
        errs.push(FieldError::not_supported(
            "volumeBindingMode",
            &json!(mode),
            &["Immediate", "WaitForFirstConsumer"],
        ));
    }
}

fn validate_pdb(spec: &Value, errs: &mut Errs) {
    let min = get(spec, &["minAvailable"]);
    let max = get(spec, &["maxUnavailable"]);
    if min.is_some() && max.is_some() {
        errs.push(invalid_raw(
            "spec",
            &spec.to_string(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (key, val) in [("minAvailable", min), ("maxUnavailable", max)] {
        let Some(val) = val else { continue };
        let f = format!("spec.{key}");
        if let Some((n, true)) = int_or_percent(val, &f, errs)
            && n > 100
        {
            errs.push(FieldError::invalid(f, val, "must not be greater than 100%"));
        }
    }
    if let Some(sel) = get(spec, &["selector"])
        && let Err(e) = LabelSelector::from_object(sel)
    {
        errs.push(invalid_selector("spec.selector", sel, &e));
    }
    let policy = get_str(spec, &["unhealthyPodEvictionPolicy"]);
    if !policy.is_empty() && !matches!(policy, "AlwaysAllow" | "IfHealthyBudget") {
        errs.push(FieldError::not_supported(
            "spec.unhealthyPodEvictionPolicy",
            &json!(policy),
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
}

/// The highest priority a user-defined class may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

fn validate_priority_class(obj: &Value, errs: &mut Errs) {
    let name = get_str(obj, &["metadata", "name"]);
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    if name.starts_with("system-") {
        let why = match super::SYSTEM_PRIORITY_CLASSES
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.name, c.value))
        {
            None => Some(format!("name {name} is not a known system priority class")),
            Some((_, want)) if want != value => {
                Some(format!("value of {name} PriorityClass must be {want}"))
            }
            Some(_) if obj.get("globalDefault").and_then(Value::as_bool) == Some(true) => Some(
                format!("globalDefault of {name} PriorityClass must be false"),
            ),
            Some(_) => None,
        };
        if let Some(why) = why {
            errs.push(FieldError::forbidden(
                "metadata.name",
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {why}"),
            ));
        }
    } else if value > HIGHEST_USER_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(p) = get(obj, &["preemptionPolicy"])
        && !matches!(p.as_str(), Some("Never" | "PreemptLowerPriority"))
    {
        errs.push(FieldError::not_supported(
            "preemptionPolicy",
            p,
            &["Never", "PreemptLowerPriority"],
        ));
    }
}
