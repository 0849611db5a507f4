//! `Priority` admission, as kube-apiserver's plugin of that name: a new pod's
//! `spec.priorityClassName` resolves to `spec.priority` and `spec.preemptionPolicy` (no name:
//! the `globalDefault` class, if there is one, else priority 0 and `PreemptLowerPriority`); a
//! pod naming an unknown class, or asking for a priority or policy other than its class's, is
//! refused; only one PriorityClass may be the `globalDefault`.
//!
//! Since Kubernetes 1.17 the `system-*` classes may be used in any namespace (restricting them
//! is left to ResourceQuota's `limitedResources`), so nothing here looks at the namespace.

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_api::ResourceInfo;

use super::{Operation, forbidden, name_of};
use crate::error::ApiResult;
use crate::registry::Registry;

/// Kubernetes' name for the plugin.
pub const PLUGIN_NAME: &str = "Priority";

/// What a pod gets when no class is named and none is the global default.
const DEFAULT_PRIORITY: i64 = 0;
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// Every PriorityClass, from the watch cache.
fn priority_classes(registry: &Registry) -> Vec<Arc<Value>> {
    let info = skiff_api::resources::find("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses are served");
    registry
        .cache
        .for_resource(info)
        .map(|c| c.snapshot(&info.storage_prefix()).0)
        .unwrap_or_default()
}

/// The global default among `classes`: if a race let two in, the lowest value wins (as
/// upstream picks).
fn global_default(classes: &[Arc<Value>]) -> Option<&Value> {
    classes
        .iter()
        .map(|c| &**c)
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| value_of(c))
}

fn value_of(class: &Value) -> i64 {
    class.get("value").and_then(Value::as_i64).unwrap_or(0)
}

/// Admits a pod: resolves its priority on create, keeps it on update.
pub fn admit_pod(
    registry: &Registry,
    info: &ResourceInfo,
    op: Operation,
    pod: &mut Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    match op {
        Operation::Create => resolve(info, &priority_classes(registry), pod),
        Operation::Update => {
            keep_on_update(pod, old);
            Ok(())
        }
    }
}

/// On update a client may omit what admission set at creation; it is kept (validation then
/// refuses any real change, as the fields are immutable).
fn keep_on_update(pod: &mut Value, old: Option<&Value>) {
    let Some(old_spec) = old.and_then(|o| o.get("spec")) else {
        return;
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["priority", "preemptionPolicy"] {
        if spec.get(field).is_none_or(Value::is_null)
            && let Some(v) = old_spec.get(field).filter(|v| !v.is_null())
        {
            spec.insert(field.into(), v.clone());
        }
    }
}

/// Fills `spec.priority` and `spec.preemptionPolicy` of a new pod from its class.
fn resolve(info: &ResourceInfo, classes: &[Arc<Value>], pod: &mut Value) -> ApiResult<()> {
    let name = name_of(pod).to_string();
    let class_name = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (class_name, priority, policy) = if class_name.is_empty() {
        match global_default(classes) {
            Some(c) => (
                name_of(c).to_string(),
                value_of(c),
                c.get("preemptionPolicy")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            None => (
                String::new(),
                DEFAULT_PRIORITY,
                Some(DEFAULT_PREEMPTION_POLICY.to_string()),
            ),
        }
    } else {
        let class = classes
            .iter()
            .map(|c| &**c)
            .find(|c| name_of(c) == class_name)
            .ok_or_else(|| {
                forbidden(
                    info,
                    &name,
                    &format!("no PriorityClass with name {class_name} was found"),
                )
            })?;
        (
            class_name,
            value_of(class),
            class
                .get("preemptionPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
        )
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(asked) = spec.get("priority").and_then(Value::as_i64)
        && asked != priority
    {
        return Err(forbidden(
            info,
            &name,
            &format!(
                "the integer value of priority ({asked}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            ),
        ));
    }
    if let Some(policy) = &policy
        && let Some(asked) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && asked != policy
    {
        return Err(forbidden(
            info,
            &name,
            &format!(
                "the string value of PreemptionPolicy ({asked}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ),
        ));
    }
    if !class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(class_name));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(policy) = policy {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// Admits a PriorityClass: at most one may be the global default.
pub fn admit_class(
    registry: &Registry,
    info: &ResourceInfo,
    op: Operation,
    class: &Value,
) -> ApiResult<()> {
    only_one_default(info, op, &priority_classes(registry), class)
}

fn only_one_default(
    info: &ResourceInfo,
    op: Operation,
    classes: &[Arc<Value>],
    class: &Value,
) -> ApiResult<()> {
    if class.get("globalDefault").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let name = name_of(class);
    match global_default(classes) {
        Some(existing) if op == Operation::Create || name_of(existing) != name => Err(forbidden(
            info,
            name,
            &format!(
                "PriorityClass {} is already marked as default. Only one default can exist",
                name_of(existing)
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static ResourceInfo {
        skiff_api::resources::find("", "v1", "pods").unwrap()
    }

    fn class(name: &str, value: i64, default: bool, policy: &str) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name}, "value": value, "globalDefault": default,
               "preemptionPolicy": policy}),
        )
    }

    fn pod(spec: Value) -> Value {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        json!({"metadata": {"name": "x", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn a_class_sets_priority_and_policy() {
        let classes = [
            class("high", 1000, false, "Never"),
            class("low", 100, false, "PreemptLowerPriority"),
        ];
        let mut p = pod(json!({"priorityClassName": "high"}));
        resolve(pods(), &classes, &mut p).unwrap();
        assert_eq!(p["spec"]["priority"], 1000);
        assert_eq!(p["spec"]["preemptionPolicy"], "Never");

        // Asking for the class's own values is allowed.
        let mut p = pod(json!({"priorityClassName": "low", "priority": 100}));
        resolve(pods(), &classes, &mut p).unwrap();
        assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    }

    #[test]
    fn no_class_means_the_global_default_or_zero() {
        let mut p = pod(json!({}));
        resolve(pods(), &[class("low", 100, false, "Never")], &mut p).unwrap();
        assert_eq!(p["spec"]["priority"], 0);
        assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        assert!(p["spec"].get("priorityClassName").is_none());

        let classes = [
            class("b", 200, true, "Never"),
            class("a", 50, true, "Never"),
            class("c", 10, false, "PreemptLowerPriority"),
        ];
        let mut p = pod(json!({}));
        resolve(pods(), &classes, &mut p).unwrap();
        assert_eq!(
            p["spec"]["priorityClassName"], "a",
            "the lowest default wins"
        );
        assert_eq!(p["spec"]["priority"], 50);
        assert_eq!(p["spec"]["preemptionPolicy"], "Never");
    }

    #[test]
    fn refusals_read_as_upstream() {
        let classes = [class("low", 100, false, "PreemptLowerPriority")];
        let cases = [
            (
                json!({"priorityClassName": "foo"}),
                "pods \"x\" is forbidden: no PriorityClass with name foo was found",
            ),
            (
                json!({"priorityClassName": "low", "priority": 5}),
                "pods \"x\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 100 from the given PriorityClass name",
            ),
            (
                json!({"priorityClassName": "low", "preemptionPolicy": "Never"}),
                "pods \"x\" is forbidden: the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name",
            ),
        ];
        for (spec, want) in cases {
            let err = resolve(pods(), &classes, &mut pod(spec)).unwrap_err();
            assert_eq!(err.code, 403);
            assert_eq!(err.message, want);
        }
    }

    #[test]
    fn updates_keep_what_creation_set() {
        let old = pod(json!({"priority": 100, "preemptionPolicy": "Never"}));
        let mut new = pod(json!({}));
        keep_on_update(&mut new, Some(&old));
        assert_eq!(new["spec"]["priority"], 100);
        assert_eq!(new["spec"]["preemptionPolicy"], "Never");
    }

    #[test]
    fn only_one_global_default() {
        let info =
            skiff_api::resources::find("scheduling.k8s.io", "v1", "priorityclasses").unwrap();
        let existing = [class("a", 1, true, "Never"), class("b", 2, false, "Never")];
        let err = only_one_default(
            info,
            Operation::Create,
            &existing,
            &class("c", 3, true, "Never"),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "priorityclasses.scheduling.k8s.io \"c\" is forbidden: PriorityClass a is already marked as default. Only one default can exist"
        );
        assert!(
            only_one_default(
                info,
                Operation::Update,
                &existing,
                &class("b", 2, true, "Never")
            )
            .is_err()
        );
        assert!(
            only_one_default(
                info,
                Operation::Update,
                &existing,
                &class("a", 1, true, "Never")
            )
            .is_ok()
        );
        assert!(
            only_one_default(
                info,
                Operation::Create,
                &existing,
                &class("d", 1, false, "Never")
            )
            .is_ok()
        );
    }
}
