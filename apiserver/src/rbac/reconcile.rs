//! Reconciling stored roles and bindings with the bootstrap policy (pure functions), as
//! kube-apiserver's `rbac/bootstrap-roles` hook does with autoupdate: missing objects are
//! created; stored ones get the missing labels, annotations, rules, aggregation selectors and
//! subjects added, and nothing an administrator added is removed; objects annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` are left alone.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::bootstrap::{AUTOUPDATE_ANNOTATION, RBAC_GROUP};
use super::coverage::covers;

/// What to do with a stored binding so that it matches the policy.
#[derive(Clone, Debug, PartialEq)]
pub enum BindingChange<T> {
    /// It is missing: create this.
    Create(T),
    /// Replace the stored one with this (the stored object with what was missing added; its
    /// metadata, resourceVersion included, is the stored one's).
    Update(T),
    /// The stored one refers to another role, and a binding's roleRef cannot change: delete the
    /// stored one, then create this.
    Recreate(T),
}

/// Whether the stored object opted out of updates with `autoupdate: "false"`.
fn protected(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(AUTOUPDATE_ANNOTATION))
        .is_some_and(|v| v == "false")
}

/// Adds the labels and annotations of `expected` that `meta` lacks, keeping the values `meta`
/// has. Returns whether anything was added.
fn merge_metadata(meta: &mut ObjectMeta, expected: &ObjectMeta) -> bool {
    fn merge(
        into: &mut Option<BTreeMap<String, String>>,
        from: &Option<BTreeMap<String, String>>,
    ) -> bool {
        let mut changed = false;
        for (k, v) in from.iter().flatten() {
            let map = into.get_or_insert_with(BTreeMap::new);
            if !map.contains_key(k) {
                map.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        changed
    }
    let labels = merge(&mut meta.labels, &expected.labels);
    let annotations = merge(&mut meta.annotations, &expected.annotations);
    labels || annotations
}

/// A ClusterRole or a Role, for reconciling both with one function.
trait RuleOwner: Clone {
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn rules(&self) -> &[PolicyRule];
    fn rules_mut(&mut self) -> &mut Option<Vec<PolicyRule>>;
    fn aggregation(&self) -> Option<&AggregationRule>;
    fn set_aggregation(&mut self, rule: Option<AggregationRule>);
}

impl RuleOwner for ClusterRole {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn rules(&self) -> &[PolicyRule] {
        self.rules.as_deref().unwrap_or_default()
    }
    fn rules_mut(&mut self) -> &mut Option<Vec<PolicyRule>> {
        &mut self.rules
    }
    fn aggregation(&self) -> Option<&AggregationRule> {
        self.aggregation_rule.as_ref()
    }
    fn set_aggregation(&mut self, rule: Option<AggregationRule>) {
        self.aggregation_rule = rule;
    }
}

impl RuleOwner for Role {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn rules(&self) -> &[PolicyRule] {
        self.rules.as_deref().unwrap_or_default()
    }
    fn rules_mut(&mut self) -> &mut Option<Vec<PolicyRule>> {
        &mut self.rules
    }
    // Roles have no aggregation rule: never set, so never changed.
    fn aggregation(&self) -> Option<&AggregationRule> {
        None
    }
    fn set_aggregation(&mut self, _rule: Option<AggregationRule>) {}
}

pub(crate) fn selectors(rule: Option<&AggregationRule>) -> &[LabelSelector] {
    rule.and_then(|r| r.cluster_role_selectors.as_deref())
        .unwrap_or_default()
}

fn reconcile_owner<T: RuleOwner>(existing: Option<&T>, expected: &T) -> Option<T> {
    let Some(existing) = existing else {
        return Some(expected.clone());
    };
    if protected(existing.meta()) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_metadata(out.meta_mut(), expected.meta());

    // Union: add what the stored rules do not already grant, in atomic form, and never take
    // away what an administrator added. Aggregated roles expect no rules of their own, so this
    // leaves the rules the aggregation controller wrote alone.
    let missing = covers(existing.rules(), expected.rules());
    if !missing.is_empty() {
        out.rules_mut().get_or_insert_with(Vec::new).extend(missing);
        changed = true;
    }

    match (expected.aggregation(), existing.aggregation()) {
        (None, None) => {}
        // The policy does not aggregate this role: make it a plain role again.
        (None, Some(_)) => {
            out.set_aggregation(None);
            changed = true;
        }
        (Some(want), have) => {
            let have = selectors(have);
            let missing: Vec<LabelSelector> = selectors(Some(want))
                .iter()
                .filter(|s| !have.contains(s))
                .cloned()
                .collect();
            if !missing.is_empty() {
                let mut rule = out.aggregation().cloned().unwrap_or_default();
                rule.cluster_role_selectors
                    .get_or_insert_with(Vec::new)
                    .extend(missing);
                out.set_aggregation(Some(rule));
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The cluster role to write so that `existing` (the stored one, if any) matches `expected`, or
/// `None` when nothing needs writing: it is up to date, or it is annotated
/// `autoupdate: "false"`. When `existing` is `None` the result is `expected`, to create;
/// otherwise it is `existing` with what was missing added, to update.
pub fn reconcile_cluster_role(
    existing: Option<&ClusterRole>,
    expected: &ClusterRole,
) -> Option<ClusterRole> {
    reconcile_owner(existing, expected)
}

/// [`reconcile_cluster_role`] for a namespaced role.
pub fn reconcile_role(existing: Option<&Role>, expected: &Role) -> Option<Role> {
    reconcile_owner(existing, expected)
}

/// A ClusterRoleBinding or a RoleBinding, for reconciling both with one function.
trait SubjectOwner: Clone {
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn role_ref(&self) -> &RoleRef;
    fn subjects(&self) -> &[Subject];
    fn subjects_mut(&mut self) -> &mut Option<Vec<Subject>>;
}

macro_rules! subject_owner {
    ($t:ty) => {
        impl SubjectOwner for $t {
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
            fn role_ref(&self) -> &RoleRef {
                &self.role_ref
            }
            fn subjects(&self) -> &[Subject] {
                self.subjects.as_deref().unwrap_or_default()
            }
            fn subjects_mut(&mut self) -> &mut Option<Vec<Subject>> {
                &mut self.subjects
            }
        }
    };
}
subject_owner!(ClusterRoleBinding);
subject_owner!(RoleBinding);

/// A subject with the API defaults applied (User and Group in the RBAC group, ServiceAccount in
/// the core group), so that a stored subject written without them compares equal.
fn normalized(subject: &Subject) -> (String, &str, &str, &str) {
    let group = match subject.api_group.as_deref() {
        Some(g) if !g.is_empty() => g.to_owned(),
        _ if subject.kind == "User" || subject.kind == "Group" => RBAC_GROUP.to_owned(),
        _ => String::new(),
    };
    (
        group,
        subject.kind.as_str(),
        subject.name.as_str(),
        subject.namespace.as_deref().unwrap_or_default(),
    )
}

fn reconcile_binding<T: SubjectOwner>(
    existing: Option<&T>,
    expected: &T,
) -> Option<BindingChange<T>> {
    let Some(existing) = existing else {
        return Some(BindingChange::Create(expected.clone()));
    };
    if protected(existing.meta()) {
        return None;
    }
    if existing.role_ref() != expected.role_ref() {
        return Some(BindingChange::Recreate(expected.clone()));
    }
    let mut out = existing.clone();
    let mut changed = merge_metadata(out.meta_mut(), expected.meta());
    let have: Vec<_> = existing.subjects().iter().map(normalized).collect();
    let missing: Vec<Subject> = expected
        .subjects()
        .iter()
        .filter(|s| !have.contains(&normalized(s)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        out.subjects_mut()
            .get_or_insert_with(Vec::new)
            .extend(missing);
        changed = true;
    }
    changed.then_some(BindingChange::Update(out))
}

/// What to write so that the stored cluster role binding `existing` (if any) matches `expected`:
/// `None` when it is up to date or annotated `autoupdate: "false"`. Missing subjects are added
/// and extra ones kept.
pub fn reconcile_cluster_role_binding(
    existing: Option<&ClusterRoleBinding>,
    expected: &ClusterRoleBinding,
) -> Option<BindingChange<ClusterRoleBinding>> {
    reconcile_binding(existing, expected)
}

/// [`reconcile_cluster_role_binding`] for a namespaced role binding.
pub fn reconcile_role_binding(
    existing: Option<&RoleBinding>,
    expected: &RoleBinding,
) -> Option<BindingChange<RoleBinding>> {
    reconcile_binding(existing, expected)
}
