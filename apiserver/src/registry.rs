//! The generic registry: create, read, update, patch and delete for every resource, on top of
//! the store, with the per-kind strategies of `skiff_api::strategy` and the few kinds that need
//! more (Services allocate IPs and ports; Pods bind and delete gracefully; Namespaces
//! terminate).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::selectors::{FieldSelector, LabelSelector};
use skiff_api::{ResourceInfo, resources, strategy};
use skiff_store::{Revision, Store, StoreError};

use crate::alloc::{Allocator, Claims};
use crate::cache::{WatchCache, decode};
use crate::error::{ApiError, ApiResult};
use crate::hooks::{self, Hooks, KindHooks};
use crate::objects::{self, meta_mut};
use crate::request::{FieldValidation, Params};

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

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub cache: WatchCache,
    pub alloc: Allocator,
}

/// The resource version objects of `info` are stored in.
pub fn storage_info(info: &'static ResourceInfo) -> &'static ResourceInfo {
    if info.version == info.storage_version {
        return info;
    }
    resources::find(info.group, info.storage_version, info.plural).unwrap_or(info)
}

/// Converts a stored object to the version the client asked for.
pub fn to_external(info: &ResourceInfo, obj: Value) -> Value {
    strategy::convert(info, obj, info.version)
}

fn to_storage(info: &'static ResourceInfo, obj: Value) -> Value {
    let s = storage_info(info);
    strategy::convert(s, obj, s.version)
}

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

/// Decodes and strictness-checks a body through the kind's schema.
fn admit_schema(
    info: &ResourceInfo,
    obj: Value,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let (obj, unknown) = strategy::normalize(info, obj).map_err(ApiError::bad_request)?;
    if !unknown.is_empty() {
        match fv {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok(obj)
}

/// Checks (and fills in) `apiVersion` and `kind` against the URL's resource.
fn check_type(info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let want_av = info.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(want_av),
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(info.kind),
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, cache: WatchCache, alloc: Allocator) -> Self {
        Registry {
            store,
            cache,
            alloc,
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

    /// GET one object.
    pub async fn get(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        params: &Params,
    ) -> ApiResult<Value> {
        let key = Self::key(info, ns, name);
        if params.get("resourceVersion") == Some("0")
            && let Some(cache) = self.cache.for_resource(info)
            && let Some(obj) = cache.get(&key)
        {
            return Ok(to_external(info, (*obj).clone()));
        }
        let (obj, _) = self.read(info, &key, name).await?;
        Ok(to_external(info, obj))
    }

    /// Whether new objects may be created in namespace `ns`: `Err` with 404 if it does not
    /// exist, 403 if it is being terminated.
    async fn check_namespace(&self, ns: &str) -> ApiResult<()> {
        let info = hooks::namespace::resource();
        let key = info.storage_key(None, ns);
        match self.cache.for_resource(info).and_then(|c| c.get(&key)) {
            Some(o) => hooks::namespace::admit_content(ns, &o),
            // The cache may lag a namespace created a moment ago: ask the store.
            None => hooks::namespace::admit_content(ns, &self.read(info, &key, ns).await?.0),
        }
    }

    /// LIST with selectors and pagination.
    pub async fn list(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        params: &Params,
    ) -> ApiResult<Page> {
        let labels =
            match params.get("labelSelector") {
                Some(s) => Some(LabelSelector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match params.get("fieldSelector") {
            Some(s) => Some(FieldSelector::parse(s, info).map_err(ApiError::bad_request)?),
            None => None,
        };
        let keep = |obj: &Value| {
            labels.as_ref().is_none_or(|l| {
                l.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
            }) && fields.as_ref().is_none_or(|f| f.matches(obj))
        };
        let limit = params.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
        let prefix = Self::list_prefix(info, ns);

        // resourceVersion=0 without pagination: any recent state will do, serve the cache.
        if params.get("resourceVersion") == Some("0")
            && params.get("continue").is_none()
            && let Some(cache) = self.cache.for_resource(info)
        {
            let (snapshot, rev) = cache.snapshot(&prefix);
            let mut items: Vec<Value> = snapshot
                .iter()
                .filter(|o| keep(o))
                .map(|o| to_external(info, (**o).clone()))
                .collect();
            let mut continue_token = None;
            if let Some(l) = limit
                && items.len() > l
            {
                items.truncate(l);
                // Later pages come from the store at the same revision.
                let last = items
                    .last()
                    .and_then(|o| objects::name(o))
                    .unwrap_or_default();
                let last_ns = items.last().and_then(|o| objects::namespace(o));
                continue_token = Some(encode_continue(rev, &Self::key(info, last_ns, last)));
            }
            return Ok(Page {
                items,
                resource_version: rev,
                continue_token,
                remaining: None,
            });
        }

        let (mut start, mut revision) = match params.get("continue") {
            Some(token) => {
                let (rev, start) = decode_continue(token)?;
                (Some(start), Some(rev))
            }
            None => {
                let rev = match (
                    params.get("resourceVersion"),
                    params.get("resourceVersionMatch"),
                ) {
                    (Some(rv), Some("Exact")) => Some(parse_rv(rv)?),
                    _ => None,
                };
                (None, rev)
            }
        };
        let mut items = Vec::new();
        let page_size = limit.map(|l| l.max(100)).unwrap_or(0);
        loop {
            let res = self
                .store
                .list(&prefix, start.as_deref(), page_size, revision)
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if params.get("continue").is_some() => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    e => ApiError::from_store(e, info, ""),
                })?;
            revision = Some(res.revision);
            let mut last_key = None;
            for kv in &res.items {
                last_key = Some(kv.key.clone());
                let obj = decode(&kv.value, kv.mod_revision)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                if keep(&obj) {
                    items.push(to_external(info, obj));
                    if let Some(l) = limit
                        && items.len() == l
                    {
                        // More may follow: either this page had keys left, or the store said so.
                        let more = res.more
                            || kv.key
                                != res.items.last().map(|k| k.key.clone()).unwrap_or_default();
                        let token = more.then(|| encode_continue(res.revision, &kv.key));
                        return Ok(Page {
                            items,
                            resource_version: res.revision,
                            continue_token: token,
                            remaining: None,
                        });
                    }
                }
            }
            if !res.more {
                break;
            }
            start = last_key;
        }
        Ok(Page {
            items,
            resource_version: revision.unwrap_or(0),
            continue_token: None,
            remaining: None,
        })
    }

    /// Fills the server-set metadata of a new object and runs the kind's create rules.
    fn prepare_create(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<String> {
        check_type(info, obj)?;
        let meta = meta_mut(obj);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if info.namespaced {
            let url_ns = ns.unwrap_or("default");
            match meta.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
                Some(n) if n == url_ns => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !has_name
            && let Some(base) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        {
            let base = base.chars().take(58).collect::<String>();
            meta.insert(
                "name".into(),
                json!(format!("{base}{}", objects::random_suffix())),
            );
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("selfLink");
        meta.remove("generation");
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if objects::has_generation(info) {
            meta_mut(obj).insert("generation".into(), json!(1));
        }
        strategy::prepare_for_create(info, obj);
        strategy::default(info, obj);
        let errors = strategy::validate_create(info, obj);
        if !errors.is_empty() {
            return Err(ApiError::invalid(info, &name, &errors));
        }
        Ok(name)
    }

    /// POST: creates an object. `manager` is the field manager to record as the owner of
    /// every field (none for server-side apply, which records its own).
    pub async fn create(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        body: Value,
        params: &Params,
        manager: Option<&str>,
    ) -> ApiResult<Written> {
        let mut warnings = Vec::new();
        let mut body = body;
        check_type(info, &mut body)?;
        let mut obj = admit_schema(info, body, params.field_validation()?, &mut warnings)?;
        let name = self.prepare_create(info, ns, &mut obj)?;
        if let Some(m) = manager {
            crate::apply::track_update(None, &mut obj, m, &info.api_version(), None);
        }
        if info.namespaced {
            self.check_namespace(objects::namespace(&obj).unwrap_or("default"))
                .await?;
        }
        let dry_run = params.dry_run()?;
        let key = Self::key(info, objects::namespace(&obj), &name);
        let claims = if dry_run {
            Claims::default()
        } else {
            let hooks = Hooks::for_resource(info);
            hooks
                .before_create(&self.alloc, info, &name, &mut obj)
                .await?
        };
        if dry_run {
            return Ok(Written {
                code: 201,
                object: obj,
                warnings,
                json: None,
            });
        }
        let stored = to_storage(info, obj);
        let bytes = encode(&stored);
        // When the client's version is the stored one, the watch cache takes the object
        // (it need not decode the store's event) and the answer is the stored bytes.
        let cache = self
            .cache
            .for_resource(info)
            .filter(|_| storage_info(info).version == info.version);
        let (expected, kept) = match cache {
            Some(cache) => (Some(cache.expect(&key, bytes.clone(), stored)), None),
            None => (None, Some(stored)),
        };
        match self.store.create(&key, bytes.clone()).await {
            Ok(rev) => {
                if let Some(e) = expected {
                    e.committed(rev);
                }
                let (object, json) = match kept {
                    Some(stored) => {
                        let mut out = to_external(info, stored);
                        crate::cache::set_resource_version(&mut out, rev);
                        (out, None)
                    }
                    None => match crate::cache::with_resource_version(&bytes, rev) {
                        Some(json) => (Value::Null, Some(Bytes::from(json))),
                        None => (
                            decode(&bytes, rev)
                                .map_err(|e| ApiError::from_store(e, info, &name))?,
                            None,
                        ),
                    },
                };
                Ok(Written {
                    code: 201,
                    object,
                    warnings,
                    json,
                })
            }
            Err(e) => {
                self.alloc.release(claims).await;
                Err(ApiError::from_store(e, info, &name))
            }
        }
    }

    /// Reads, transforms and compare-and-swaps one object until it sticks (Kubernetes'
    /// GuaranteedUpdate). `f` gets the current object (client's version) and returns the
    /// desired one, or `None` to leave it as is. With `expected` set, a newer current object
    /// is a 409 instead of a retry.
    pub async fn guaranteed_update<F>(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mut f: F,
        dry_run: bool,
    ) -> ApiResult<Value>
    where
        F: FnMut(Value) -> ApiResult<Option<Value>>,
    {
        let key = Self::key(info, ns, name);
        let hooks = Hooks::for_resource(info);
        for _ in 0..16 {
            let (current, rev) = self.read(info, &key, name).await?;
            let current = to_external(info, current);
            let Some(mut new) = f(current.clone())? else {
                return Ok(current);
            };
            // A client-supplied resourceVersion pins the write to that version.
            if let Some(want) = new
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                && parse_rv(want)? != rev
            {
                return Err(ApiError::modified(info, name));
            }
            crate::cache::set_resource_version(&mut new, rev);
            if new == current {
                return Ok(current);
            }
            let claims = if dry_run {
                Claims::default()
            } else {
                hooks
                    .before_update(&self.alloc, info, name, &mut new, &current)
                    .await?
            };
            if dry_run {
                return Ok(new);
            }
            // Removing the last finalizer of an object being deleted deletes it.
            let finished = objects::is_deleting(&new)
                && objects::finalizers(&new).is_empty()
                && new
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    == 0;
            let stored = to_storage(info, new);
            if finished {
                return match self.store.delete(&key, Some(rev)).await {
                    Ok((_, del_rev)) => {
                        hooks.after_delete(&self.alloc, &current).await;
                        let mut out = to_external(info, stored);
                        crate::cache::set_resource_version(&mut out, del_rev);
                        Ok(out)
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => Err(ApiError::from_store(e, info, name)),
                };
            }
            match self.store.update(&key, rev, encode(&stored)).await {
                Ok(new_rev) => {
                    hooks.after_update(&self.alloc, &current, &stored).await;
                    let mut out = to_external(info, stored);
                    crate::cache::set_resource_version(&mut out, new_rev);
                    return Ok(out);
                }
                Err(StoreError::Conflict { .. }) => {
                    self.alloc.release(claims).await;
                    continue;
                }
                Err(e) => {
                    self.alloc.release(claims).await;
                    return Err(ApiError::from_store(e, info, name));
                }
            }
        }
        Err(ApiError::modified(info, name))
    }

    /// Applies the update rules to `new` given `old`: server-owned metadata is kept, status
    /// (or for `/status`, everything but status) comes from `old`, generation bumps on spec
    /// changes, defaults and validation run.
    pub fn prepare_update(
        &self,
        info: &'static ResourceInfo,
        sub: Option<&str>,
        mut new: Value,
        old: &Value,
        fv: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Option<Value>> {
        let name = objects::name(old).unwrap_or_default().to_string();
        check_type(info, &mut new)?;
        new = admit_schema(info, new, fv, warnings)?;
        if let Some(n) = objects::name(&new)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let rv = new.pointer("/metadata/resourceVersion").cloned();
        let mut result = match sub {
            Some("status") => {
                let mut r = old.clone();
                match new.get("status") {
                    Some(s) => r["status"] = s.clone(),
                    None => {
                        if let Some(m) = r.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                r
            }
            _ => {
                let mut r = new;
                if strategy::has_status_subresource(info) {
                    match old.get("status") {
                        Some(s) => r["status"] = s.clone(),
                        None => {
                            if let Some(m) = r.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                // Server-owned metadata never changes through an update.
                let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
                let meta = meta_mut(&mut r);
                for f in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old_meta.get(f) {
                        Some(v) => {
                            meta.insert(f.into(), v.clone());
                        }
                        None => {
                            meta.remove(f);
                        }
                    }
                }
                if objects::has_generation(info)
                    && objects::spec_part(&r) != objects::spec_part(old)
                {
                    let g = old
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        + 1;
                    meta_mut(&mut r).insert("generation".into(), json!(g));
                }
                r
            }
        };
        match rv {
            Some(rv) => {
                meta_mut(&mut result).insert("resourceVersion".into(), rv);
            }
            None => {
                meta_mut(&mut result).remove("resourceVersion");
            }
        }
        strategy::default(info, &mut result);
        let errors = strategy::validate_update(info, &result, old);
        if !errors.is_empty() {
            return Err(ApiError::invalid(info, &name, &errors));
        }
        Ok(Some(result))
    }

    /// PUT: replaces an object (or its status).
    pub async fn update(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        body: Value,
        params: &Params,
        manager: &str,
    ) -> ApiResult<Written> {
        let fv = params.field_validation()?;
        let mut warnings = Vec::new();
        let body_ref = &body;
        let warnings_ref = &mut warnings;
        let result = self
            .guaranteed_update(
                info,
                ns,
                name,
                |current| {
                    let new = self.prepare_update(
                        info,
                        sub,
                        body_ref.clone(),
                        &current,
                        fv,
                        warnings_ref,
                    )?;
                    Ok(new.map(|mut n| {
                        crate::apply::track_update(
                            Some(&current),
                            &mut n,
                            manager,
                            &info.api_version(),
                            sub,
                        );
                        n
                    }))
                },
                params.dry_run()?,
            )
            .await;
        match result {
            Ok(object) => Ok(Written {
                code: 200,
                object,
                warnings,
                json: None,
            }),
            // Some kinds may be created by PUT (as upstream allows for them).
            Err(e)
                if e.code == 404
                    && sub.is_none()
                    && Hooks::for_resource(info).allow_create_on_update() =>
            {
                let mut body = body;
                meta_mut(&mut body).insert("name".into(), json!(name));
                meta_mut(&mut body).remove("resourceVersion");
                self.create(info, ns, body, params, Some(manager)).await
            }
            Err(e) => Err(e),
        }
    }

    /// DELETE of one object, with grace period, propagation policy and preconditions.
    pub async fn delete(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &Value,
        params: &Params,
    ) -> ApiResult<Written> {
        let dry_run = params.dry_run()?
            || opts
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        let grace_req = params
            .int("gracePeriodSeconds")?
            .or_else(|| opts.get("gracePeriodSeconds").and_then(Value::as_i64));
        let propagation = params
            .get("propagationPolicy")
            .map(String::from)
            .or_else(|| {
                opts.get("propagationPolicy")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .or_else(
                || match opts.get("orphanDependents").and_then(Value::as_bool) {
                    Some(true) => Some("Orphan".into()),
                    _ => None,
                },
            );
        let extra_finalizer = match propagation.as_deref() {
            None | Some("Background") => None,
            Some("Orphan") => Some("orphan"),
            Some("Foreground") => Some("foregroundDeletion"),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported propagationPolicy {other:?}: use Background, Foreground or Orphan"
                )));
            }
        };
        let hooks = Hooks::for_resource(info);
        hooks.guard_delete(name)?;
        let key = Self::key(info, ns, name);
        for _ in 0..16 {
            let (current, rev) = self.read(info, &key, name).await?;
            if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
                && objects::meta_str(&current, "uid") != Some(uid)
            {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        objects::meta_str(&current, "uid").unwrap_or("")
                    ),
                ));
            }
            if let Some(want) = opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                && parse_rv(want)? != rev
            {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"
                    ),
                ));
            }
            let grace = hooks.grace_period(&current, grace_req);
            let mut finalizers = objects::finalizers(&current);
            if let Some(f) = extra_finalizer
                && !finalizers.iter().any(|x| x == f)
            {
                finalizers.push(f.to_string());
            }
            let awaits_finalization = hooks.awaits_finalization(&current);
            if dry_run {
                return Ok(Written {
                    code: 200,
                    object: to_external(info, current),
                    warnings: vec![],
                    json: None,
                });
            }
            if finalizers.is_empty() && grace == 0 && !awaits_finalization {
                return match self.store.delete(&key, Some(rev)).await {
                    Ok((_, del_rev)) => {
                        hooks.after_delete(&self.alloc, &current).await;
                        let mut out = to_external(info, current);
                        crate::cache::set_resource_version(&mut out, del_rev);
                        Ok(Written {
                            code: 200,
                            object: out,
                            warnings: vec![],
                            json: None,
                        })
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => Err(ApiError::from_store(e, info, name)),
                };
            }
            // Graceful or finalized deletion: mark the object and let its owners finish.
            let mut marked = current.clone();
            let already = objects::is_deleting(&current);
            let old_grace = current
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            let meta = meta_mut(&mut marked);
            if !already || old_grace.is_some_and(|g| grace < g) {
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(objects::rfc3339_in(grace)),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), json!(finalizers));
            }
            hooks.mark_deleting(&mut marked);
            if marked == current {
                return Ok(Written {
                    code: 202,
                    object: to_external(info, current),
                    warnings: vec![],
                    json: None,
                });
            }
            match self.store.update(&key, rev, encode(&marked)).await {
                Ok(new_rev) => {
                    let mut out = to_external(info, marked);
                    crate::cache::set_resource_version(&mut out, new_rev);
                    return Ok(Written {
                        code: 200,
                        object: out,
                        warnings: vec![],
                        json: None,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, info, name)),
            }
        }
        Err(ApiError::modified(info, name))
    }

    /// DELETE on a collection: deletes every matching object.
    pub async fn delete_collection(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        opts: &Value,
        params: &Params,
    ) -> ApiResult<Value> {
        let mut list_params = params.clone();
        list_params.0.remove("limit");
        list_params.0.remove("continue");
        list_params.0.remove("resourceVersion");
        let page = self.list(info, ns, &list_params).await?;
        let mut items = Vec::new();
        for obj in page.items {
            let name = objects::name(&obj).unwrap_or_default().to_string();
            match self
                .delete(info, objects::namespace(&obj), &name, opts, params)
                .await
            {
                Ok(w) => items.push(w.object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json!({
            "kind": info.list_kind(),
            "apiVersion": info.api_version(),
            "metadata": {},
            "items": items,
        }))
    }
}

fn encode_continue(rev: Revision, key: &str) -> String {
    let raw = serde_json::to_vec(&json!({ "v": "skiff/v1", "rv": rev, "start": key }))
        .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(Revision, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: start a new list without the continue parameter",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rev, start))
}
