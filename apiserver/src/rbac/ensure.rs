//! Writes the bootstrap policy at every start, as kube-apiserver's `rbac/bootstrap-roles`
//! post-start hook does: missing roles and bindings are created, stored ones get what they
//! lack (unless annotated `autoupdate: "false"`), nothing an administrator added is removed.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use skiff_api::{ResourceInfo, resources};

use super::bootstrap;
use super::reconcile::{self, BindingChange};
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::request::Params;

/// The field manager bootstrap writes carry.
const MANAGER: &str = "skiff-apiserver";

fn info(plural: &str) -> &'static ResourceInfo {
    resources::find("rbac.authorization.k8s.io", "v1", plural).expect("the RBAC kinds are served")
}

fn to_value<T: Serialize>(obj: &T, info: &ResourceInfo) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    v["apiVersion"] = Value::from(info.api_version());
    v["kind"] = Value::from(info.kind);
    v
}

async fn stored<T: DeserializeOwned>(
    registry: &Registry,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Option<T>> {
    match registry
        .get(info, namespace, name, &Params::default())
        .await
    {
        Ok(v) => Ok(serde_json::from_value(v).ok()),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

async fn write(
    registry: &Registry,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    obj: Value,
    create: bool,
) -> ApiResult<()> {
    let params = Params::default();
    let result = if create {
        registry
            .create(info, namespace, obj, &params, Some(MANAGER))
            .await
            .map(|_| ())
    } else {
        registry
            .update(info, namespace, name, None, obj, &params, MANAGER)
            .await
            .map(|_| ())
    };
    match result {
        // Another apiserver wrote it first; the next start reconciles again.
        Err(e) if e.code == 409 => Ok(()),
        other => other,
    }
}

async fn ensure_role<T: Serialize + DeserializeOwned + Clone>(
    registry: &Registry,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
    expected: &T,
    reconcile: fn(Option<&T>, &T) -> Option<T>,
) -> ApiResult<()> {
    let info = info(plural);
    let current: Option<T> = stored(registry, info, namespace, name).await?;
    if let Some(new) = reconcile(current.as_ref(), expected) {
        write(
            registry,
            info,
            namespace,
            name,
            to_value(&new, info),
            current.is_none(),
        )
        .await?;
    }
    Ok(())
}

async fn ensure_binding<T: Serialize + DeserializeOwned + Clone>(
    registry: &Registry,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
    expected: &T,
    reconcile: fn(Option<&T>, &T) -> Option<BindingChange<T>>,
) -> ApiResult<()> {
    let info = info(plural);
    let current: Option<T> = stored(registry, info, namespace, name).await?;
    match reconcile(current.as_ref(), expected) {
        None => Ok(()),
        Some(BindingChange::Create(b)) => {
            write(registry, info, namespace, name, to_value(&b, info), true).await
        }
        Some(BindingChange::Update(b)) => {
            write(registry, info, namespace, name, to_value(&b, info), false).await
        }
        Some(BindingChange::Recreate(b)) => {
            let opts = serde_json::json!({});
            match registry
                .delete(info, namespace, name, &opts, &Params::default())
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            let mut v = to_value(&b, info);
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
                meta.remove("uid");
                meta.remove("creationTimestamp");
            }
            write(registry, info, namespace, name, v, true).await
        }
    }
}

/// Brings the stored policy up to the bootstrap policy.
pub async fn bootstrap_policy(registry: &Registry) -> Result<(), ApiError> {
    for r in bootstrap::cluster_roles() {
        let name = r.metadata.name.clone().unwrap_or_default();
        ensure_role(
            registry,
            "clusterroles",
            None,
            &name,
            &r,
            reconcile::reconcile_cluster_role,
        )
        .await?;
    }
    for b in bootstrap::cluster_role_bindings() {
        let name = b.metadata.name.clone().unwrap_or_default();
        ensure_binding(
            registry,
            "clusterrolebindings",
            None,
            &name,
            &b,
            reconcile::reconcile_cluster_role_binding,
        )
        .await?;
    }
    for r in bootstrap::namespaced_roles() {
        let name = r.metadata.name.clone().unwrap_or_default();
        let ns = r.metadata.namespace.clone();
        ensure_role(
            registry,
            "roles",
            ns.as_deref(),
            &name,
            &r,
            reconcile::reconcile_role,
        )
        .await?;
    }
    for b in bootstrap::namespaced_role_bindings() {
        let name = b.metadata.name.clone().unwrap_or_default();
        let ns = b.metadata.namespace.clone();
        ensure_binding(
            registry,
            "rolebindings",
            ns.as_deref(),
            &name,
            &b,
            reconcile::reconcile_role_binding,
        )
        .await?;
    }
    Ok(())
}
