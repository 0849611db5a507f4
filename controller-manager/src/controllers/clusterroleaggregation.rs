//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` gets as
//! `rules` the rules of every other ClusterRole its `clusterRoleSelectors` match, each rule
//! once, in upstream's order (selector by selector, matching roles by name, rules as they
//! stand). That is how the built-in `admin`, `edit` and `view` fill up from the
//! `rbac.authorization.k8s.io/aggregate-to-*` roles. Since any ClusterRole's change may change
//! any aggregate, every change requeues every aggregated role (there are few ClusterRoles).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;
use skiff_client::informer::Informer;

/// The field manager of the controller's applies (upstream's).
pub const FIELD_MANAGER: &str = "clusterrole-aggregation-controller";

/// `rule` with empty lists as absent ones: two rules that differ only there are the same rule
/// (as Kubernetes' semantic equality has it).
fn normalized(rule: &PolicyRule) -> PolicyRule {
    let list = |v: &Option<Vec<String>>| v.clone().filter(|v| !v.is_empty());
    PolicyRule {
        api_groups: list(&rule.api_groups),
        non_resource_urls: list(&rule.non_resource_urls),
        resource_names: list(&rule.resource_names),
        resources: list(&rule.resources),
        verbs: rule.verbs.clone(),
    }
}

fn same_rules(a: &[PolicyRule], b: &[PolicyRule]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| normalized(x) == normalized(y))
}

/// The rules `role` aggregates from `all` (None if it has no aggregation rule).
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .as_ref();
    let mut sorted: Vec<&ClusterRole> = all.iter().map(|r| r.as_ref()).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in selectors.into_iter().flatten() {
        for source in &sorted {
            if source.metadata.name == role.metadata.name {
                continue;
            }
            let labels = source.metadata.labels.clone().unwrap_or_default();
            if !skiff_client::selector::matches(selector, &labels) {
                continue;
            }
            for rule in source.rules.iter().flatten() {
                let rule_n = normalized(rule);
                if !rules.iter().any(|r| normalized(r) == rule_n) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Some(rules)
}

pub struct ClusterRoleAggregation {
    roles: Arc<Informer<ClusterRole>>,
    client: Client,
}

impl ClusterRoleAggregation {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let roles = ctx.cluster_roles();
        let all = roles.clone();
        roles.on_change(move |_| {
            for r in all.list() {
                if r.aggregation_rule.is_some() {
                    queue.add(r.name_any());
                }
            }
        });
        Arc::new(ClusterRoleAggregation {
            roles,
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
        })
    }
}

impl Controller for ClusterRoleAggregation {
    const SERVICE_ACCOUNT: &'static str = "clusterrole-aggregation-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for ClusterRoleAggregation {
    const NAME: &'static str = "clusterrole-aggregation";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let Some(role) = self.roles.get(None, key) else {
            return Ok(None);
        };
        let Some(rules) = aggregated_rules(&role, &self.roles.list()) else {
            return Ok(None);
        };
        if same_rules(&rules, role.rules.as_deref().unwrap_or_default()) {
            return Ok(None);
        }
        let api: Api<ClusterRole> = Api::all(self.client.clone());
        let apply = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": { "name": key },
            "rules": rules,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(key, &params, &Patch::Apply(&apply)).await {
            Ok(_) => {}
            // An apiserver without server-side apply: update instead (as upstream falls back).
            Err(kube::Error::Api(s)) if s.code == 415 => {
                let mut updated = (*role).clone();
                updated.rules = Some(rules);
                api.replace(key, &PostParams::default(), &updated).await?;
            }
            Err(e) => return Err(e.into()),
        }
        tracing::debug!(clusterrole = %key, "aggregated rules written");
        Ok(None)
    }
}
