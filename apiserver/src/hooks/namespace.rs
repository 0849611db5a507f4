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
