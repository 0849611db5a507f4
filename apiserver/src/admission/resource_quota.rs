//! `ResourceQuota` admission: before a new object is stored, what it uses
//! ([`skiff_api::quota::usage`]) is checked against every quota of its namespace that applies
//! to it, and charged to each: `status.used` grows by a compare-and-swap on the quota's
//! resourceVersion, retried on conflict, so two racing creates cannot both take the last unit.
//! A refusal is kube-apiserver's 403 (`exceeded quota: ...`, `failed quota: ...: must specify
//! ...`). The quota controller later recomputes `used` from the objects, which also returns
//! what a create charged but did not store.

use serde_json::Value;
use skiff_api::ResourceInfo;
use skiff_api::quota::{self, ResourceList};

use super::{forbidden, name_of, namespace_of};
use crate::auth::UserInfo;
use crate::error::ApiResult;
use crate::registry::Registry;

/// What one admission charged to which quotas (namespace, quota name, amounts), to give back
/// if the object is not stored after all.
#[derive(Debug, Default)]
#[must_use = "charges are given back with `release` when the write fails"]
pub struct Charges(Vec<(String, String, ResourceList)>);

fn quotas_info() -> &'static ResourceInfo {
    skiff_api::resources::find("", "v1", "resourcequotas").expect("resourcequotas are served")
}

/// The quotas of `ns`, from the watch cache (each is re-read from the store when charged).
fn quotas(registry: &Registry, ns: &str) -> Vec<Value> {
    let info = quotas_info();
    registry
        .cache
        .for_resource(info)
        .map(|c| {
            c.snapshot(&format!("{}{ns}/", info.storage_prefix()))
                .0
                .into_iter()
                .map(|q| (*q).clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the creation of `obj` (of `info`) by `user` against the quotas of its namespace and,
/// unless `dry_run`, charges them. Writes the apiserver makes itself (no user) are not
/// admitted, as by the rest of the chain.
pub async fn charge(
    registry: &Registry,
    info: &'static ResourceInfo,
    user: Option<&UserInfo>,
    obj: &Value,
    dry_run: bool,
) -> ApiResult<Charges> {
    if user.is_none() || !info.namespaced {
        return Ok(Charges::default());
    }
    let delta = quota::usage(info.group, info.plural, obj, jiff::Timestamp::now());
    charge_delta(registry, info, obj, &delta, dry_run).await
}

/// Charges an update of `old` to `new` what it adds: a claim asking for more storage, a
/// Service becoming a NodePort or LoadBalancer, a pod's resources growing. Other kinds' updates
/// change no usage (object counts move only on create and delete), and neither does an update
/// that lowers usage (a pod that finishes gives its share back through the controller).
pub async fn charge_update(
    registry: &Registry,
    info: &'static ResourceInfo,
    new: &Value,
    old: &Value,
) -> ApiResult<Charges> {
    let grows = matches!(
        (info.group, info.plural),
        ("", "pods" | "services" | "persistentvolumeclaims")
    );
    if !grows {
        return Ok(Charges::default());
    }
    let now = jiff::Timestamp::now();
    let mut delta = quota::subtract_non_negative(
        &quota::usage(info.group, info.plural, new, now),
        &quota::usage(info.group, info.plural, old, now),
    );
    delta.retain(|_, q| !q.is_zero());
    if delta.is_empty() {
        return Ok(Charges::default());
    }
    charge_delta(registry, info, new, &delta, false).await
}

/// Admits and charges `delta` for `obj` against every quota of its namespace that applies.
async fn charge_delta(
    registry: &Registry,
    info: &'static ResourceInfo,
    obj: &Value,
    delta: &ResourceList,
    dry_run: bool,
) -> ApiResult<Charges> {
    let mut charges = Charges::default();
    if registry.admission.get().is_none() {
        return Ok(charges);
    }
    let ns = namespace_of(obj).to_string();
    let mut quotas = quotas(registry, &ns);
    if quotas.is_empty() {
        return Ok(charges);
    }
    quotas.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let refuse = |why: String| forbidden(info, name_of(obj), &why);
    for cached in &quotas {
        // The cache tells which quotas apply; the charge itself reads the stored quota.
        if quota::admit(cached, info.group, info.plural, obj, delta)
            .map_err(&refuse)?
            .is_none()
        {
            continue;
        }
        if dry_run {
            continue;
        }
        let name = name_of(cached).to_string();
        let mut charged = ResourceList::new();
        let result = registry
            .guaranteed_update(
                quotas_info(),
                Some(&ns),
                &name,
                |mut current| {
                    let Some(used) = quota::admit(&current, info.group, info.plural, obj, delta)
                        .map_err(&refuse)?
                    else {
                        charged.clear();
                        return Ok(None);
                    };
                    let hard = quota::resource_list(current.pointer("/status/hard"));
                    charged = quota::mask(delta, hard.keys());
                    current["status"]["used"] = quota::to_json(&used);
                    Ok(Some(current))
                },
                false,
            )
            .await;
        match result {
            Ok(_) => charges.0.push((ns.clone(), name, charged)),
            // A quota deleted meanwhile limits nothing.
            Err(e) if e.code == 404 => {}
            Err(e) => {
                release(registry, charges).await;
                return Err(e);
            }
        }
    }
    Ok(charges)
}

/// Gives back what [`charge`] took, when the object it was for was not stored. Best effort:
/// the quota controller's recount corrects what this cannot.
pub async fn release(registry: &Registry, charges: Charges) {
    for (ns, name, amounts) in charges.0 {
        // Boxed: the update loop this runs in may itself be giving back a charge.
        let result = Box::pin(registry.guaranteed_update(
            quotas_info(),
            Some(&ns),
            &name,
            |mut current| {
                let used = quota::resource_list(current.pointer("/status/used"));
                let back = quota::mask(&amounts, used.keys());
                let mut less = quota::subtract_non_negative(&used, &back);
                less.retain(|k, _| used.contains_key(k));
                current["status"]["used"] = quota::to_json(&less);
                Ok(Some(current))
            },
            false,
        ))
        .await;
        if let Err(e) = result {
            tracing::warn!(quota = %format!("{ns}/{name}"), error = %e.message, "could not give back a quota charge; the quota controller will recount");
        }
    }
}
