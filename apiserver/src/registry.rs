//! The generic registry: create, read, update, patch and delete for every resource, on top of
//! the store, with the per-kind strategies of `skiff_api::strategy` and the per-kind hooks of
//! [`crate::hooks`] (Services allocate IPs and ports; Pods delete gracefully; Namespaces
//! terminate).
//!
//! One module per verb family ([`read`], [`create`], [`update`], [`delete`]) plus the body
//! checks they share ([`admit`]); this module holds the state and the storage helpers.

mod admit;
mod create;
mod delete;
mod read;
mod update;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use skiff_api::{ResourceInfo, resources, strategy};
use skiff_store::{Revision, Store};

use crate::alloc::Allocator;
use crate::cache::{WatchCache, decode};
use crate::error::{ApiError, ApiResult};

/// A successful write: the HTTP code, the object as the client should see it, and warnings
/// for the `Warning` header.
#[derive(Debug)]
pub struct Written {
    pub code: u16,
    pub object: Value,
    pub warnings: Vec<String>,
    /// The object already encoded as JSON (then `object` is null): a create hands its object
    /// to the watch cache and answers with the stored bytes plus the resourceVersion.
    pub json: Option<Bytes>,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub resource_version: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// The generic registry over one store, with its watch cache and the Service allocator.
pub struct Registry {
    pub store: Arc<dyn Store>,
    pub cache: WatchCache,
    pub alloc: Allocator,
    /// The admission chain, set once the authorizers exist (writes before that are the
    /// apiserver's own).
    pub admission: std::sync::OnceLock<crate::admission::Admission>,
    /// How long Events live after their last write (`--event-ttl`).
    pub event_ttl: Duration,
    /// The encryption-at-rest layer under `store`, when configured: an update that changes
    /// nothing still rewrites a value an older key encrypted (key rotation).
    pub encryption: std::sync::OnceLock<Arc<crate::encryption::EncryptingStore>>,
}

/// kube-apiserver's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// The resource version objects of `info` are stored in.
pub fn storage_info(info: &'static ResourceInfo) -> &'static ResourceInfo {
    if info.version == info.storage_version {
        return info;
    }
    resources::find(info.group, info.storage_version, info.plural).unwrap_or(info)
}

/// Whether `info` is `certificates.k8s.io` CertificateSigningRequests, whose create records
/// the requester and whose updates follow their own strategies.
pub fn is_csr(info: &ResourceInfo) -> bool {
    (info.group, info.plural) == ("certificates.k8s.io", "certificatesigningrequests")
}

/// Converts a stored object to the version the client asked for.
pub fn to_external(info: &ResourceInfo, obj: Value) -> Value {
    strategy::convert(info, obj, info.version)
}

fn to_storage(info: &'static ResourceInfo, obj: Value) -> Value {
    let s = storage_info(info);
    strategy::convert(s, obj, s.version)
}

/// The bytes stored for `obj`.
fn encode(obj: &Value) -> Bytes {
    // resourceVersion is never stored: it comes from the store's revision on read.
    let unstored = |m: &serde_json::Map<String, Value>| {
        m.contains_key("resourceVersion") || m.contains_key("selfLink")
    };
    let meta = obj.get("metadata").and_then(Value::as_object);
    if !meta.is_some_and(unstored) {
        // A create's object has neither: no copy.
        return Bytes::from(serde_json::to_vec(obj).unwrap_or_default());
    }
    let mut obj = obj.clone();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

fn parse_rv(s: &str) -> ApiResult<Revision> {
    s.parse::<Revision>()
        .ok()
        .filter(|r| *r > 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, cache: WatchCache, alloc: Allocator) -> Self {
        Registry {
            store,
            cache,
            alloc,
            admission: std::sync::OnceLock::new(),
            event_ttl: DEFAULT_EVENT_TTL,
            encryption: std::sync::OnceLock::new(),
        }
    }

    /// The TTL objects of `info` are stored with: Events (core and events.k8s.io) expire
    /// `event_ttl` after their last write, as in Kubernetes; nothing else does.
    fn ttl(&self, info: &'static ResourceInfo) -> Option<Duration> {
        let events = info.plural == "events" && matches!(info.group, "" | "events.k8s.io");
        events.then_some(self.event_ttl)
    }

    /// Runs the admission chain on a write by `user` (none: the apiserver's own write).
    pub fn admit(
        &self,
        op: crate::admission::Operation,
        info: &'static ResourceInfo,
        subresource: Option<&str>,
        user: Option<&crate::auth::UserInfo>,
        new: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<Vec<String>> {
        match (self.admission.get(), user) {
            (Some(admission), Some(user)) => admission.admit(
                self,
                &crate::admission::Request {
                    op,
                    info,
                    subresource,
                    user,
                },
                new,
                old,
            ),
            _ => Ok(Vec::new()),
        }
    }

    fn key(info: &'static ResourceInfo, ns: Option<&str>, name: &str) -> String {
        storage_info(info).storage_key(ns, name)
    }

    /// The key prefix listing `info` in `ns` (or all namespaces).
    fn list_prefix(info: &'static ResourceInfo, ns: Option<&str>) -> String {
        let prefix = storage_info(info).storage_prefix();
        match ns {
            Some(ns) if info.namespaced => format!("{prefix}{ns}/"),
            _ => prefix,
        }
    }

    /// One object and its revision, straight from the store.
    async fn read(
        &self,
        info: &'static ResourceInfo,
        key: &str,
        name: &str,
    ) -> ApiResult<(Value, Revision)> {
        let kv = self
            .store
            .get(key)
            .await
            .map_err(|e| ApiError::from_store(e, info, name))?
            .ok_or_else(|| ApiError::not_found(info, name))?;
        let obj =
            decode(&kv.value, kv.mod_revision).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((obj, kv.mod_revision))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde_json::{Value, json};
    use skiff_api::resources;
    use skiff_store::{EmbeddedStore, Store};
    use tokio_util::sync::CancellationToken;

    use super::Registry;
    use crate::alloc::Allocator;
    use crate::cache::WatchCache;
    use crate::request::Params;

    async fn claimed(store: &Arc<dyn Store>) -> usize {
        let list = store
            .list("/registry/allocations/", None, 0, None)
            .await
            .unwrap();
        list.items.len()
    }

    /// A dry run answers as the write would, but claims no ClusterIP or node port.
    #[tokio::test]
    async fn dry_run_allocates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("state.redb")).unwrap());
        let shutdown = CancellationToken::new();
        let cache = WatchCache::start(store.clone(), resources::all(), shutdown.clone());
        cache.wait_synced().await;
        let alloc = Allocator::new(
            store.clone(),
            "10.96.0.0/24".parse().unwrap(),
            (30000, 30009),
        );
        let registry = Registry::new(store.clone(), cache, alloc);
        let none = Params::default();
        let dry = Params(HashMap::from([("dryRun".into(), "All".into())]), None);

        let namespaces = resources::find("", "v1", "namespaces").unwrap();
        let ns =
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "default" } });
        registry
            .create(namespaces, None, ns, &none, None)
            .await
            .unwrap();

        let services = resources::find("", "v1", "services").unwrap();
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "type": "NodePort", "ports": [{ "port": 80, "protocol": "TCP" }] },
        });
        let w = registry
            .create(services, Some("default"), svc.clone(), &dry, None)
            .await
            .unwrap();
        assert_eq!(w.code, 201);
        assert_eq!(claimed(&store).await, 0);
        assert_eq!(
            registry
                .get(services, Some("default"), "web", &none)
                .await
                .unwrap_err()
                .code,
            404
        );

        registry
            .create(services, Some("default"), svc, &none, None)
            .await
            .unwrap();
        assert_eq!(claimed(&store).await, 2, "the ClusterIP and the node port");

        let add_port = |mut cur: Value| {
            let ports = cur["spec"]["ports"].as_array_mut().unwrap();
            ports.push(json!({ "name": "b", "port": 81, "protocol": "TCP" }));
            ports[0]["name"] = json!("a");
            Ok(Some(cur))
        };
        let updated = registry
            .guaranteed_update(services, Some("default"), "web", add_port, true)
            .await
            .unwrap();
        assert_eq!(updated["spec"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(claimed(&store).await, 2, "a dry run claims no node port");

        registry
            .guaranteed_update(services, Some("default"), "web", add_port, false)
            .await
            .unwrap();
        assert_eq!(claimed(&store).await, 3, "the second port's node port");
        shutdown.cancel();
    }
}
