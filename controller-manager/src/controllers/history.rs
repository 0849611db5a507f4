//! ControllerRevisions: the template history of DaemonSets and StatefulSets. Each template a
//! workload has run is one revision (`<owner>-<hash>`, labelled `controller-revision-hash`,
//! holding a patch that replaces `spec.template`, which is what `kubectl rollout
//! history|undo` read and apply); the current one is numbered highest, and old ones beyond
//! `revisionHistoryLimit` are deleted unless still in use.

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use skiff_client::informer::Informer;

use crate::controller::{Error, Result};
use crate::controllers::deployment::{equal_ignoring_hash, template_hash};
use crate::pods;

/// The label naming a revision's template hash (on pods too).
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The ControllerRevision data for a template: a patch replacing `spec.template`, which
/// `kubectl rollout undo` sends back as a strategic merge patch.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or(json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": t } })
}

/// The template a ControllerRevision holds.
pub fn revision_template(cr: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = cr.data.as_ref()?.0.pointer("/spec/template").cloned()?;
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Whether a ControllerRevision holds `template`.
pub fn revision_matches(cr: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    revision_template(cr).is_some_and(|t| equal_ignoring_hash(&t, template))
}

/// A revision's hash label (its name when unlabelled).
pub fn hash_of(cr: &ControllerRevision) -> String {
    cr.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL).cloned())
        .unwrap_or_else(|| cr.name_any())
}

/// The revision that holds an owner's current template.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub name: String,
    pub hash: String,
}

/// The revisions `owner` controls, from the cache.
pub fn owned_by<K: Resource>(
    revisions: &Informer<ControllerRevision>,
    owner: &K,
) -> Vec<Arc<ControllerRevision>> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    revisions
        .list_in(owner.meta().namespace.as_deref().unwrap_or_default())
        .into_iter()
        .filter(|cr| pods::controller_of(&cr.metadata).is_some_and(|r| r.uid == uid))
        .collect()
}

/// Makes sure the owner's current `template` has a revision numbered above every other
/// (creating it, or renumbering the one that matches, as after a rollback), and returns it with
/// the old revisions. `collisions` is the owner's `status.collisionCount`: when the name a
/// template hashes to is taken by a different template, the count is raised in the owner's
/// status and an error asks for a retry (with a new hash).
pub async fn sync<K>(
    client: &kube::Client,
    revisions: &Informer<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    collisions: i32,
) -> Result<(Current, Vec<Arc<ControllerRevision>>)>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let ns = owner.namespace().unwrap_or_default();
    let (mut current, old): (Vec<_>, Vec<_>) = owned_by(revisions, owner)
        .into_iter()
        .partition(|cr| revision_matches(cr, template));
    let next = old.iter().map(|cr| cr.revision).max().unwrap_or(0) + 1;
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    current.sort_by_key(|cr| std::cmp::Reverse(cr.revision));
    if let Some(cur) = current.first() {
        // Duplicates (a lost race) go; the newest stays.
        for dup in &current[1..] {
            let _ = api.delete(&dup.name_any(), &DeleteParams::default()).await;
        }
        if cur.revision < next {
            let mut bumped = (**cur).clone();
            bumped.revision = next;
            match api
                .replace(&cur.name_any(), &PostParams::default(), &bumped)
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let current = Current {
            name: cur.name_any(),
            hash: hash_of(cur),
        };
        return Ok((current, old));
    }
    let hash = template_hash(template, collisions);
    let name = format!("{}-{hash}", owner.name_any());
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let cr = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: owner.meta().annotations.clone(),
            owner_references: Some(vec![pods::controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(template))),
        revision: next,
    };
    let current = Current { name, hash };
    match api.create(&PostParams::default(), &cr).await {
        Ok(_) => Ok((current, old)),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // The name is taken by another template (or by this one, not yet in the cache):
            // with a different template, a new collision count gives a new hash.
            let taken = api.get(&current.name).await?;
            if revision_matches(&taken, template) {
                return Ok((current, old));
            }
            let mut status = serde_json::to_value(owner)
                .ok()
                .and_then(|o| o.get("status").cloned())
                .filter(Value::is_object)
                .unwrap_or(json!({}));
            status["collisionCount"] = json!(collisions + 1);
            let owners: Api<K> = Api::namespaced(client.clone(), &ns);
            crate::update::status(&owners, &owner.name_any(), &status).await?;
            Err(Error::Invalid(format!(
                "hash collision on ControllerRevision {ns}/{}; retrying with collisionCount {}",
                current.name,
                collisions + 1
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes old revisions beyond `limit` (`revisionHistoryLimit`), oldest first, sparing those
/// `in_use` says are still needed (run by a live pod, or named in the owner's status).
pub async fn cleanup(
    client: &kube::Client,
    namespace: &str,
    mut old: Vec<Arc<ControllerRevision>>,
    limit: i32,
    in_use: impl Fn(&ControllerRevision) -> bool,
) -> Result<()> {
    let mut to_kill = old.len().saturating_sub(limit.max(0) as usize);
    if to_kill == 0 {
        return Ok(());
    }
    old.sort_by_key(|cr| cr.revision);
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    for cr in old {
        if to_kill == 0 {
            break;
        }
        if in_use(&cr) {
            continue;
        }
        match api.delete(&cr.name_any(), &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
        to_kill -= 1;
    }
    Ok(())
}
