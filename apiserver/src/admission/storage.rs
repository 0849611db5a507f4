//! Storage admission, as kube-apiserver's default plugins of these names:
//! - `DefaultStorageClass`: a new claim that names no class (`spec.storageClassName` absent,
//!   not `""`) gets the default StorageClass (annotated
//!   `storageclass.kubernetes.io/is-default-class: "true"`; the newest if several are);
//! - `StorageObjectInUseProtection`: every new claim gets the `kubernetes.io/pvc-protection`
//!   finalizer and every new volume `kubernetes.io/pv-protection`, which the controller-manager's
//!   protection controllers remove once no pod uses the claim / no claim is bound to the volume.

use serde_json::{Value, json};

use crate::registry::Registry;

/// The finalizer that keeps a claim in use by a pod from going away.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a volume bound to a claim from going away.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// The annotation that marks the default StorageClass (and its beta spelling).
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const IS_DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Whether a StorageClass object is marked default.
pub fn is_default_class(class: &Value) -> bool {
    let annotations = class.pointer("/metadata/annotations");
    [IS_DEFAULT_CLASS, IS_DEFAULT_CLASS_BETA]
        .iter()
        .any(|a| annotations.and_then(|m| m.get(*a)).and_then(Value::as_str) == Some("true"))
}

/// The default class among `classes`: the newest of those marked default (then the first by
/// name), as upstream picks one since 1.26 rather than refusing the claim.
pub fn default_class(classes: &[std::sync::Arc<Value>]) -> Option<String> {
    classes
        .iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            let created = |c: &Value| {
                c.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            created(a)
                .cmp(&created(b))
                .then_with(|| super::name_of(b).cmp(super::name_of(a)))
        })
        .map(|c| super::name_of(c).to_string())
}

/// Adds `finalizer` to the object's finalizers unless it is there.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f.as_str() == Some(finalizer))
    {
        list.push(json!(finalizer));
    }
}

/// A new PersistentVolumeClaim: the default class if it names none, and its protection.
pub fn admit_claim(registry: &Registry, claim: &mut Value) {
    let names_class = claim
        .pointer("/spec/storageClassName")
        .is_some_and(|c| !c.is_null())
        || claim
            .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
            .is_some();
    if !names_class {
        let info = skiff_api::resources::find("storage.k8s.io", "v1", "storageclasses")
            .expect("storageclasses are served");
        let classes = registry
            .cache
            .for_resource(info)
            .map(|c| c.snapshot(&info.storage_prefix()).0)
            .unwrap_or_default();
        if let Some(class) = default_class(&classes)
            && let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("storageClassName".into(), json!(class));
        }
    }
    add_finalizer(claim, PVC_PROTECTION);
}

/// A new PersistentVolume: its protection.
pub fn admit_volume(volume: &mut Value) {
    add_finalizer(volume, PV_PROTECTION);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_newest_default_class_wins_and_others_do_not_count() {
        let class = |name: &str, default: Option<&str>, created: &str| {
            let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}});
            if let Some(d) = default {
                c["metadata"]["annotations"] = json!({ IS_DEFAULT_CLASS: d });
            }
            Arc::new(c)
        };
        assert_eq!(default_class(&[]), None);
        assert_eq!(
            default_class(&[class("a", Some("false"), "2026-01-01T00:00:00Z")]),
            None
        );
        let classes = [
            class("old", Some("true"), "2026-01-01T00:00:00Z"),
            class("new", Some("true"), "2026-02-01T00:00:00Z"),
            class("plain", None, "2026-03-01T00:00:00Z"),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("new"));
    }

    #[test]
    fn protection_finalizers_are_added_once() {
        let mut pv = json!({"metadata": {"name": "v", "finalizers": ["example.com/x"]}});
        admit_volume(&mut pv);
        admit_volume(&mut pv);
        assert_eq!(
            pv["metadata"]["finalizers"],
            json!(["example.com/x", PV_PROTECTION])
        );
    }
}
