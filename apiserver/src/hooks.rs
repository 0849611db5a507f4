//! Per-kind hooks: the few rules of the generic registry that belong to one kind (Services
//! allocate IPs and ports, Pods on a node are deleted gracefully, Namespaces are protected and
//! finalized, a few kinds may be created by PUT). The registry looks a resource's hooks up by
//! its (group, resource) once per request and never names a kind itself.

pub mod namespace;
mod pod;
mod service;

use serde_json::Value;
use skiff_api::ResourceInfo;

use crate::alloc::{Allocator, Claims};
use crate::error::ApiResult;
use namespace::NamespaceHooks;
use pod::PodHooks;
use service::ServiceHooks;

/// What a kind adds to the generic create, update and delete. Every method defaults to
/// nothing, so a kind implements only the rules it has.
pub trait KindHooks {
    /// Before a new object is stored (not on a dry run): fills in what the server assigns.
    /// Returns what it claimed, which the registry gives back if the write fails.
    async fn before_create(
        &self,
        _alloc: &Allocator,
        _info: &ResourceInfo,
        _name: &str,
        _obj: &mut Value,
    ) -> ApiResult<Claims> {
        Ok(Claims::default())
    }

    /// Before an update of `old` to `new` is stored (not on a dry run); as `before_create`.
    async fn before_update(
        &self,
        _alloc: &Allocator,
        _info: &ResourceInfo,
        _name: &str,
        _new: &mut Value,
        _old: &Value,
    ) -> ApiResult<Claims> {
        Ok(Claims::default())
    }

    /// After an update of `old` to `new` was stored.
    async fn after_update(&self, _alloc: &Allocator, _old: &Value, _new: &Value) {}

    /// Whether a PUT of a missing object creates it (as upstream allows for a few kinds).
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Refuses a DELETE of `name` outright.
    fn guard_delete(&self, _name: &str) -> ApiResult<()> {
        Ok(())
    }

    /// The grace period of a DELETE of `obj`, given the one the client asked for: 0 deletes
    /// at once (unless finalizers hold the object), more only marks it.
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Whether a deleted `obj` stays until the kind's own finalization is done, beyond its
    /// `metadata.finalizers`.
    fn awaits_finalization(&self, _obj: &Value) -> bool {
        false
    }

    /// Marks an object that a DELETE leaves in place (graceful or finalized deletion),
    /// besides its `deletionTimestamp`.
    fn mark_deleting(&self, _obj: &mut Value) {}

    /// After the object is gone from the store.
    async fn after_delete(&self, _alloc: &Allocator, _obj: &Value) {}
}

/// The hooks of a resource without rules of its own.
#[derive(Debug, Clone, Copy)]
pub struct NoHooks;

impl KindHooks for NoHooks {}

/// Endpoints, Events, Leases and EndpointSlices: a PUT of a missing one creates it.
#[derive(Debug, Clone, Copy)]
pub struct CreateOnUpdate;

impl KindHooks for CreateOnUpdate {
    fn allow_create_on_update(&self) -> bool {
        true
    }
}

/// The hooks of one resource.
///
/// An enum rather than a `&dyn KindHooks`: an async method called through `dyn` has to box
/// its future, an allocation on every create even of the kinds without hooks. Resources are
/// matched by name rather than listed in the resource table, so a resource added at run time
/// (a CustomResourceDefinition's) simply has none.
#[derive(Debug, Clone, Copy)]
pub enum Hooks {
    None(NoHooks),
    CreateOnUpdate(CreateOnUpdate),
    Namespace(NamespaceHooks),
    Pod(PodHooks),
    Service(ServiceHooks),
}

impl Hooks {
    /// The hooks of resource `resource` (a plural, e.g. "services") of API group `group`.
    pub fn of(group: &str, resource: &str) -> Hooks {
        match (group, resource) {
            ("", "namespaces") => Hooks::Namespace(NamespaceHooks),
            ("", "pods") => Hooks::Pod(PodHooks),
            ("", "services") => Hooks::Service(ServiceHooks),
            ("", "endpoints" | "events")
            | ("coordination.k8s.io", "leases")
            | ("discovery.k8s.io", "endpointslices") => Hooks::CreateOnUpdate(CreateOnUpdate),
            _ => Hooks::None(NoHooks),
        }
    }

    /// The hooks of `info`'s resource.
    pub fn for_resource(info: &ResourceInfo) -> Hooks {
        Hooks::of(info.group, info.plural)
    }
}

/// Runs `$body` with `$h` bound to the kind's hooks, whichever they are.
macro_rules! each {
    ($hooks:expr, $h:ident => $body:expr) => {
        match $hooks {
            Hooks::None($h) => $body,
            Hooks::CreateOnUpdate($h) => $body,
            Hooks::Namespace($h) => $body,
            Hooks::Pod($h) => $body,
            Hooks::Service($h) => $body,
        }
    };
}

impl KindHooks for Hooks {
    async fn before_create(
        &self,
        alloc: &Allocator,
        info: &ResourceInfo,
        name: &str,
        obj: &mut Value,
    ) -> ApiResult<Claims> {
        each!(self, h => h.before_create(alloc, info, name, obj).await)
    }

    async fn before_update(
        &self,
        alloc: &Allocator,
        info: &ResourceInfo,
        name: &str,
        new: &mut Value,
        old: &Value,
    ) -> ApiResult<Claims> {
        each!(self, h => h.before_update(alloc, info, name, new, old).await)
    }

    async fn after_update(&self, alloc: &Allocator, old: &Value, new: &Value) {
        each!(self, h => h.after_update(alloc, old, new).await)
    }

    fn allow_create_on_update(&self) -> bool {
        each!(self, h => h.allow_create_on_update())
    }

    fn guard_delete(&self, name: &str) -> ApiResult<()> {
        each!(self, h => h.guard_delete(name))
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> i64 {
        each!(self, h => h.grace_period(obj, requested))
    }

    fn awaits_finalization(&self, obj: &Value) -> bool {
        each!(self, h => h.awaits_finalization(obj))
    }

    fn mark_deleting(&self, obj: &mut Value) {
        each!(self, h => h.mark_deleting(obj))
    }

    async fn after_delete(&self, alloc: &Allocator, obj: &Value) {
        each!(self, h => h.after_delete(alloc, obj).await)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Hooks, KindHooks};

    #[test]
    fn resources_outside_the_table_have_no_hooks() {
        // E.g. a CustomResourceDefinition's resource, added at run time.
        let hooks = Hooks::of("example.com", "widgets");
        assert!(matches!(hooks, Hooks::None(_)));
        let mut obj = json!({ "metadata": { "name": "w" }, "spec": { "finalizers": ["x"] } });
        assert!(hooks.guard_delete("default").is_ok());
        assert_eq!(hooks.grace_period(&obj, Some(30)), 0);
        assert!(!hooks.awaits_finalization(&obj));
        let before = obj.clone();
        hooks.mark_deleting(&mut obj);
        assert_eq!(obj, before);
        assert!(!hooks.allow_create_on_update());
    }

    #[test]
    fn a_put_creates_only_endpoints_events_leases_and_endpoint_slices() {
        for (group, resource) in [
            ("", "endpoints"),
            ("", "events"),
            ("coordination.k8s.io", "leases"),
            ("discovery.k8s.io", "endpointslices"),
        ] {
            assert!(
                Hooks::of(group, resource).allow_create_on_update(),
                "{group}/{resource}"
            );
        }
        for (group, resource) in [
            ("", "configmaps"),
            ("", "services"),
            ("apps", "deployments"),
        ] {
            assert!(
                !Hooks::of(group, resource).allow_create_on_update(),
                "{group}/{resource}"
            );
        }
    }

    #[test]
    fn every_served_resource_keeps_its_hooks() {
        // The resources with hooks are all served, under the group and plural matched above.
        let with_hooks = skiff_api::resources::all()
            .iter()
            .filter(|r| !matches!(Hooks::for_resource(r), Hooks::None(_)))
            .map(|r| format!("{}/{}", r.group, r.plural))
            .collect::<Vec<_>>();
        let mut want = vec![
            "/namespaces",
            "/pods",
            "/services",
            "/endpoints",
            "/events",
            "coordination.k8s.io/leases",
            "discovery.k8s.io/endpointslices",
        ];
        let mut got = with_hooks.iter().map(String::as_str).collect::<Vec<_>>();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }
}
