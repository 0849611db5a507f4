//! PUT and the read-modify-write loop under every update and patch: optimistic concurrency on
//! the resourceVersion, server-owned metadata kept, status and spec updated separately,
//! generation bumped on spec changes, and the kind's hooks around the write. An update that
//! adds to quota usage (a claim resized) is charged first, as a create is.

use serde_json::{Value, json};
use skiff_api::{ResourceInfo, certificates, strategy};
use skiff_store::StoreError;

use super::admit::{admit_schema, check_type};
use super::{Registry, Written, encode, is_csr, parse_rv, to_external, to_storage};
use crate::admission::resource_quota;
use crate::alloc::Claims;
use crate::error::{ApiError, ApiResult};
use crate::hooks::{Hooks, KindHooks};
use crate::objects::{self, meta_mut};
use crate::request::{FieldValidation, Params};

impl Registry {
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
            if new == current && !self.stale(&key).await? {
                return Ok(current);
            }
            let charges = if dry_run {
                resource_quota::Charges::default()
            } else {
                // Boxed: charging updates a quota through this same loop.
                Box::pin(resource_quota::charge_update(self, info, &new, &current)).await?
            };
            let claims = if dry_run {
                Claims::default()
            } else {
                match hooks
                    .before_update(&self.alloc, info, name, &mut new, &current)
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
                    Err(StoreError::Conflict { .. }) => {
                        resource_quota::release(self, charges).await;
                        continue;
                    }
                    Err(e) => {
                        resource_quota::release(self, charges).await;
                        Err(ApiError::from_store(e, info, name))
                    }
                };
            }
            match self
                .store
                .update_with_ttl(&key, rev, encode(&stored), self.ttl(info))
                .await
            {
                Ok(new_rev) => {
                    hooks.after_update(&self.alloc, &current, &stored).await;
                    let mut out = to_external(info, stored);
                    crate::cache::set_resource_version(&mut out, new_rev);
                    return Ok(out);
                }
                Err(StoreError::Conflict { .. }) => {
                    self.alloc.release(claims).await;
                    resource_quota::release(self, charges).await;
                    continue;
                }
                Err(e) => {
                    self.alloc.release(claims).await;
                    resource_quota::release(self, charges).await;
                    return Err(ApiError::from_store(e, info, name));
                }
            }
        }
        Err(ApiError::modified(info, name))
    }

    /// Whether the stored value of `key` must be rewritten even by an update that changes
    /// nothing: it was encrypted with a key or provider writes no longer use.
    async fn stale(&self, key: &str) -> ApiResult<bool> {
        match self.encryption.get() {
            Some(encryption) => encryption
                .is_stale(key)
                .await
                .map_err(|e| ApiError::internal(e.to_string())),
            None => Ok(false),
        }
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
        user: Option<&crate::auth::UserInfo>,
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
        // A CSR's three strategies (main, status, approval) each change only their part.
        let csr = is_csr(info);
        if csr {
            let now = jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now());
            certificates::prepare_update(sub, &mut new, old, &now.to_string());
        }
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
                if strategy::has_status_subresource(info) && !csr {
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
        if sub.is_none() && (info.group, info.kind) == ("apps", "DaemonSet") {
            bump_template_generation(&mut result, old);
        }
        warnings.extend(self.admit(
            crate::admission::Operation::Update,
            info,
            sub,
            user,
            &mut result,
            Some(old),
        )?);
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
                        params.user(),
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
}

/// A DaemonSet counts the changes of its (defaulted) template in the annotation
/// `deprecated.daemonset.template.generation` (upstream's `spec.templateGeneration` as apps/v1
/// shows it): the controller labels pods with it (`pod-template-generation`) and takes a pod
/// whose label matches as updated, so a template change must bump it. The client's value is
/// ignored, as upstream's strategy ignores it.
fn bump_template_generation(new: &mut Value, old: &Value) {
    const KEY: &str = "deprecated.daemonset.template.generation";
    let Some(tg) = old
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(KEY))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return;
    };
    let changed = new.pointer("/spec/template") != old.pointer("/spec/template");
    let tg = if changed { tg + 1 } else { tg };
    let meta = meta_mut(new);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(KEY.into(), Value::String(tg.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemonset_template_change_bumps_its_template_generation() {
        let key = "deprecated.daemonset.template.generation";
        let old = json!({"metadata": {"annotations": {key: "3"}},
                         "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "a"}]}}}});
        let mut same = old.clone();
        same["metadata"]["annotations"][key] = json!("9");
        bump_template_generation(&mut same, &old);
        assert_eq!(
            same["metadata"]["annotations"][key], "3",
            "the client's value is ignored"
        );
        let mut changed = old.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b");
        changed["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        bump_template_generation(&mut changed, &old);
        assert_eq!(changed["metadata"]["annotations"][key], "4");
    }
}
