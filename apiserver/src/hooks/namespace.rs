//! Namespace hooks and lifecycle: the built-in namespaces may not be deleted; a deleted
//! Namespace turns `Terminating` and stays until its `spec.finalizers` are done; nothing new is
//! created in a Namespace being terminated.

use serde_json::{Value, json};
use skiff_api::{ResourceInfo, resources};

use super::KindHooks;
use crate::error::{ApiError, ApiResult};
use crate::objects;

#[derive(Debug, Clone, Copy)]
pub struct NamespaceHooks;

impl KindHooks for NamespaceHooks {
    fn guard_delete(&self, name: &str) -> ApiResult<()> {
        if matches!(name, "default" | "kube-system" | "kube-public") {
            let mut e = ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ));
            e.details = Some(json!({ "name": name, "kind": "namespaces" }));
            return Err(e);
        }
        Ok(())
    }

    /// The namespace controller empties the Namespace and then removes its `spec.finalizers`.
    fn awaits_finalization(&self, ns: &Value) -> bool {
        ns.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }

    fn mark_deleting(&self, ns: &mut Value) {
        ns["status"]["phase"] = json!("Terminating");
    }
}

/// The Namespace resource, which every namespaced object lives in.
pub fn resource() -> &'static ResourceInfo {
    resources::find("", "v1", "namespaces").expect("namespaces are served")
}

/// Refuses new content in namespace `ns` (whose object is `namespace`) while it is being
/// terminated.
pub fn admit_content(ns: &str, namespace: &Value) -> ApiResult<()> {
    if objects::is_deleting(namespace) {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hooks::{Hooks, KindHooks};

    #[test]
    fn built_in_namespaces_may_not_be_deleted() {
        let hooks = Hooks::of("", "namespaces");
        assert!(matches!(hooks, Hooks::Namespace(_)));
        for name in ["default", "kube-system", "kube-public"] {
            let e = hooks.guard_delete(name).unwrap_err();
            assert_eq!(e.code, 403);
            // The exact Status kube-apiserver sends (details before code).
            assert_eq!(
                serde_json::to_string(&e.to_status()).unwrap(),
                format!(
                    r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"namespaces \"{name}\" is forbidden: this namespace may not be deleted","reason":"Forbidden","details":{{"name":"{name}","kind":"namespaces"}},"code":403}}"#
                )
            );
        }
        for name in ["kube-node-lease", "team-a"] {
            assert!(hooks.guard_delete(name).is_ok(), "{name}");
        }
        // Only the core Namespace resource is guarded.
        assert!(
            Hooks::of("example.com", "namespaces")
                .guard_delete("default")
                .is_ok()
        );
        assert!(Hooks::of("", "configmaps").guard_delete("default").is_ok());
    }

    #[test]
    fn deleted_namespace_terminates_until_finalized() {
        let hooks = Hooks::of("", "namespaces");
        let mut ns =
            json!({ "metadata": { "name": "team-a" }, "spec": { "finalizers": ["kubernetes"] } });
        assert!(hooks.awaits_finalization(&ns));
        hooks.mark_deleting(&mut ns);
        assert_eq!(ns["status"]["phase"], "Terminating");

        let finalized = json!({ "metadata": { "name": "team-a" }, "spec": { "finalizers": [] } });
        assert!(!hooks.awaits_finalization(&finalized));
        assert!(!hooks.awaits_finalization(&json!({ "metadata": { "name": "team-a" } })));
    }

    #[test]
    fn no_new_content_in_a_terminating_namespace() {
        let live = json!({ "metadata": { "name": "team-a" } });
        assert!(super::admit_content("team-a", &live).is_ok());
        let terminating = json!({
            "metadata": { "name": "team-a", "deletionTimestamp": "2024-01-01T00:00:00Z" },
        });
        let e = super::admit_content("team-a", &terminating).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "unable to create new content in namespace team-a because it is being terminated"
        );
    }
}
