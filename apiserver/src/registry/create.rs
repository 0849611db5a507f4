//! POST: a new object gets its server-set metadata (name from `generateName`, uid,
//! timestamps), the kind's defaults and validation and its hooks; its namespace must exist and
//! not be terminating. The stored object goes to the watch cache with the write.

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::{ResourceInfo, strategy};

use super::admit::{admit_schema, check_type};
use super::{Registry, Written, encode, storage_info, to_external, to_storage};
use crate::admission::resource_quota;
use crate::alloc::Claims;
use crate::cache::decode;
use crate::error::{ApiError, ApiResult};
use crate::hooks::{self, Hooks, KindHooks};
use crate::objects::{self, meta_mut};
use crate::request::Params;

impl Registry {
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
        meta.insert("creationTimestamp".into(), json!(skiff_common::time::now()));
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
        if super::is_csr(info) {
            // The requester is whoever authenticated, never what the client wrote.
            let anonymous = crate::auth::UserInfo::default();
            let u = params.user().unwrap_or(&anonymous);
            skiff_api::certificates::prepare_create(&mut obj, &u.name, &u.uid, &u.groups, &u.extra);
        }
        warnings.extend(self.admit(
            crate::admission::Operation::Create,
            info,
            None,
            params.user(),
            &mut obj,
            None,
        )?);
        if let Some(m) = manager {
            crate::apply::track_update(None, &mut obj, m, &info.api_version(), None);
        }
        if info.namespaced {
            self.check_namespace(objects::namespace(&obj).unwrap_or("default"))
                .await?;
        }
        let dry_run = params.dry_run()?;
        let key = Self::key(info, objects::namespace(&obj), &name);
        let charges = resource_quota::charge(self, info, params.user(), &obj, dry_run).await?;
        let claims = if dry_run {
            Claims::default()
        } else {
            let hooks = Hooks::for_resource(info);
            match hooks
                .before_create(&self.alloc, info, &name, &mut obj)
                .await
            {
                Ok(claims) => claims,
                Err(e) => {
                    resource_quota::release(self, charges).await;
                    return Err(e);
                }
            }
        };
        if dry_run {
            resource_quota::release(self, charges).await;
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
        match self
            .store
            .create_with_ttl(&key, bytes.clone(), self.ttl(info))
            .await
        {
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
                resource_quota::release(self, charges).await;
                Err(ApiError::from_store(e, info, &name))
            }
        }
    }
}
