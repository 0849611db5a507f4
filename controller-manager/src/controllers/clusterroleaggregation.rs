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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Settings;
    use crate::testing::FakeApi;
    use serde_json::{Value, json};
    use tokio_util::sync::CancellationToken;

    const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

    fn rule(resource: &str, verbs: &[&str]) -> Value {
        json!({"apiGroups": [""], "resources": [resource], "verbs": verbs})
    }

    fn role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels}, "rules": rules})
    }

    fn view() -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "view"},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {TO_VIEW: "true"}}]},
               "rules": []})
    }

    #[tokio::test]
    async fn an_aggregated_role_follows_the_roles_it_selects() {
        let api = FakeApi::new();
        api.create("clusterroles", None, view());
        // `b` sorts after `a`: its rules come second, the shared one once.
        api.create(
            "clusterroles",
            None,
            role(
                "b-pods",
                json!({TO_VIEW: "true"}),
                vec![rule("pods", &["get"]), rule("services", &["list"])],
            ),
        );
        api.create(
            "clusterroles",
            None,
            role(
                "a-config",
                json!({TO_VIEW: "true"}),
                vec![rule("configmaps", &["get"]), rule("pods", &["get"])],
            ),
        );
        api.create(
            "clusterroles",
            None,
            role("other", json!({}), vec![rule("secrets", &["get"])]),
        );
        let stop = CancellationToken::new();
        let ctx = api.context(Settings::default(), &stop);
        api.start(&ctx, &[ClusterRoleAggregation::NAME], &stop)
            .await;
        let union = json!([
            rule("configmaps", &["get"]),
            rule("pods", &["get"]),
            rule("services", &["list"])
        ]);
        api.wait_for("clusterroles", None, "view", "aggregated", |r| {
            r["rules"] == union
        })
        .await;

        // A source role loses a rule: so does the aggregate.
        let mut a = api.get("clusterroles", None, "a-config").unwrap();
        a["rules"] = json!([rule("pods", &["get"])]);
        api.replace("clusterroles", None, a);
        let less = json!([rule("pods", &["get"]), rule("services", &["list"])]);
        api.wait_for("clusterroles", None, "view", "shrunk", |r| {
            r["rules"] == less
        })
        .await;

        // A role that starts matching adds its rules.
        let mut other = api.get("clusterroles", None, "other").unwrap();
        other["metadata"]["labels"] = json!({TO_VIEW: "true"});
        api.replace("clusterroles", None, other);
        // Roles in name order: `other` comes last.
        let more = json!([
            rule("pods", &["get"]),
            rule("services", &["list"]),
            rule("secrets", &["get"])
        ]);
        api.wait_for("clusterroles", None, "view", "grown", |r| {
            r["rules"] == more
        })
        .await;
        stop.cancel();
    }

    #[test]
    fn roles_without_an_aggregation_rule_are_left_alone_and_empty_lists_are_absent_ones() {
        let parse = |v: Value| Arc::new(serde_json::from_value::<ClusterRole>(v).unwrap());
        let plain = parse(role("plain", json!({}), vec![rule("pods", &["get"])]));
        assert!(aggregated_rules(&plain, std::slice::from_ref(&plain)).is_none());
        let mut with_names = rule("pods", &["get"]);
        with_names["resourceNames"] = json!([]);
        let sources = vec![
            parse(role(
                "x",
                json!({TO_VIEW: "true"}),
                vec![rule("pods", &["get"])],
            )),
            parse(role("y", json!({TO_VIEW: "true"}), vec![with_names])),
        ];
        let rules = aggregated_rules(&parse(view()), &sources).unwrap();
        assert_eq!(rules.len(), 1);
    }
}
