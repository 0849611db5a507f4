//! DELETE of one object or a collection: preconditions, propagation policy, and graceful or
//! finalizer-driven deletion (the object is only marked until its owners finish), with the
//! kind's hooks deciding the grace period and what may not be deleted.

use serde_json::{Value, json};
use skiff_api::ResourceInfo;
use skiff_store::StoreError;

use super::{Registry, Written, encode, parse_rv, to_external};
use crate::error::{ApiError, ApiResult};
use crate::hooks::{Hooks, KindHooks};
use crate::objects::{self, meta_mut};
use crate::request::Params;

impl Registry {
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
                    json!(skiff_common::time::rfc3339_in(grace)),
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
            match self
                .store
                .update_with_ttl(&key, rev, encode(&marked), self.ttl(info))
                .await
            {
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
