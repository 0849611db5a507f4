//! The Node authorizer (`--authorization-mode Node`): a kubelet, authenticated as
//! `system:node:<name>` in group `system:nodes`, may read only the Secrets, ConfigMaps,
//! PersistentVolumeClaims and ServiceAccount tokens of pods bound to its node, write only its
//! own Node, Lease and pods, and otherwise holds the rules of the `system:node` role. Which
//! pod is where, and what it uses, comes from a graph kept current from the watch cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;
use skiff_api::resources;
use tokio_util::sync::CancellationToken;

use crate::auth::{Attributes, Authorizer, Decision, RuleList, UserInfo};
use crate::cache::{EventType, Feed, WatchCache};

/// The group every kubelet identity is in.
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of a kubelet's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The kinds of object a pod ties to its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ref {
    Pod,
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

/// What one pod ties to its node.
#[derive(Debug)]
struct PodEdges {
    node: String,
    refs: Vec<(Ref, String)>,
}

#[derive(Debug, Default)]
struct Graph {
    /// By pod `namespace/name`.
    pods: HashMap<String, PodEdges>,
    /// Per node, how many of its pods use each `(kind, namespace/name)`.
    uses: HashMap<String, HashMap<(Ref, String), u32>>,
}

/// Everything a pod spec names that its kubelet must read.
fn pod_refs(ns: &str, name: &str, pod: &Value) -> Vec<(Ref, String)> {
    let spec = &pod["spec"];
    let key = |n: &str| format!("{ns}/{n}");
    let mut refs = vec![(Ref::Pod, key(name))];
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    refs.push((Ref::ServiceAccount, key(sa)));
    let mut push = |kind: Ref, v: Option<&Value>| {
        if let Some(n) = v.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            let r = (kind, key(n));
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
    };
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for s in list(&spec["imagePullSecrets"]) {
        push(Ref::Secret, s.get("name"));
    }
    for v in list(&spec["volumes"]) {
        push(Ref::Secret, v.pointer("/secret/secretName"));
        push(Ref::ConfigMap, v.pointer("/configMap/name"));
        push(Ref::Claim, v.pointer("/persistentVolumeClaim/claimName"));
        for source in list(&v.pointer("/projected/sources").cloned().unwrap_or_default()) {
            push(Ref::Secret, source.pointer("/secret/name"));
            push(Ref::ConfigMap, source.pointer("/configMap/name"));
        }
    }
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for c in list(&spec[field]) {
            for e in list(&c["env"]) {
                push(Ref::Secret, e.pointer("/valueFrom/secretKeyRef/name"));
                push(Ref::ConfigMap, e.pointer("/valueFrom/configMapKeyRef/name"));
            }
            for e in list(&c["envFrom"]) {
                push(Ref::Secret, e.pointer("/secretRef/name"));
                push(Ref::ConfigMap, e.pointer("/configMapRef/name"));
            }
        }
    }
    refs
}

impl Graph {
    fn remove(&mut self, pod: &str) {
        let Some(edges) = self.pods.remove(pod) else {
            return;
        };
        if let Some(uses) = self.uses.get_mut(&edges.node) {
            for r in edges.refs {
                if let Some(n) = uses.get_mut(&r) {
                    *n -= 1;
                    if *n == 0 {
                        uses.remove(&r);
                    }
                }
            }
            if uses.is_empty() {
                self.uses.remove(&edges.node);
            }
        }
    }

    fn apply(&mut self, ty: EventType, pod: &Value) {
        let (Some(ns), Some(name)) = (
            pod.pointer("/metadata/namespace").and_then(Value::as_str),
            pod.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            return;
        };
        let key = format!("{ns}/{name}");
        self.remove(&key);
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if ty == EventType::Deleted || node.is_empty() {
            return;
        }
        let refs = pod_refs(ns, name, pod);
        let uses = self.uses.entry(node.to_string()).or_default();
        for r in &refs {
            *uses.entry(r.clone()).or_default() += 1;
        }
        self.pods.insert(
            key,
            PodEdges {
                node: node.to_string(),
                refs,
            },
        );
    }

    fn uses(&self, node: &str, kind: Ref, namespace: &str, name: &str) -> bool {
        self.uses
            .get(node)
            .is_some_and(|u| u.contains_key(&(kind, format!("{namespace}/{name}"))))
    }
}

/// The Node authorizer.
pub struct NodeAuthorizer {
    graph: RwLock<Graph>,
    /// The `system:node` role's rules: what any node may do beyond the graph's checks.
    rules: Vec<PolicyRule>,
}

impl NodeAuthorizer {
    /// Builds the graph from the pods in the watch cache and keeps it current until
    /// `shutdown`.
    pub fn start(
        cache: &WatchCache,
        rules: Vec<PolicyRule>,
        shutdown: CancellationToken,
    ) -> Arc<NodeAuthorizer> {
        let authz = Arc::new(NodeAuthorizer {
            graph: RwLock::default(),
            rules,
        });
        let info = resources::find("", "v1", "pods").expect("pods are served");
        let me = authz.clone();
        cache
            .for_resource(info)
            .expect("every served resource has a cache")
            .follow(shutdown, move |feed| match feed {
                Feed::Reset => *me.write() = Graph::default(),
                Feed::Apply(ty, pod) => me.write().apply(ty, pod),
            });
        authz
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Graph> {
        self.graph.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(|e| e.into_inner())
    }

    fn by_rules(&self, attrs: &Attributes<'_>) -> Decision {
        if self
            .rules
            .iter()
            .any(|r| crate::rbac::rule_allows(r, attrs))
        {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        }
    }

    /// A node reading one object its pods use.
    fn read_used(&self, node: &str, kind: Ref, attrs: &Attributes<'_>) -> Decision {
        if !matches!(attrs.verb, "get" | "list" | "watch") || attrs.subresource.is_some() {
            return Decision::NoOpinion("can only read resources of this type".into());
        }
        let Some(name) = attrs.name else {
            return Decision::NoOpinion("can only read individual resources of this type".into());
        };
        self.related(node, kind, attrs.namespace.unwrap_or_default(), name)
    }

    fn related(&self, node: &str, kind: Ref, namespace: &str, name: &str) -> Decision {
        if self.read().uses(node, kind, namespace, name) {
            Decision::Allow
        } else {
            Decision::NoOpinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision {
        if !user.in_group(NODES_GROUP) {
            return Decision::NoOpinion(String::new());
        }
        let Some(node) = user
            .name
            .strip_prefix(NODE_USER_PREFIX)
            .filter(|n| !n.is_empty())
        else {
            return Decision::NoOpinion(format!("unknown node for user {:?}", user.name));
        };
        if !attrs.resource_request {
            return self.by_rules(attrs);
        }
        let ns = attrs.namespace.unwrap_or_default();
        let named = attrs.name.unwrap_or_default();
        match (attrs.group, attrs.resource, attrs.subresource) {
            ("", "secrets", _) => self.read_used(node, Ref::Secret, attrs),
            ("", "configmaps", _) => self.read_used(node, Ref::ConfigMap, attrs),
            ("", "persistentvolumeclaims", None) => self.read_used(node, Ref::Claim, attrs),
            ("", "persistentvolumeclaims", Some("status")) => {
                self.related(node, Ref::Claim, ns, named)
            }
            ("", "serviceaccounts", Some("token")) if attrs.verb == "create" => {
                self.related(node, Ref::ServiceAccount, ns, named)
            }
            ("", "serviceaccounts", _) => {
                Decision::NoOpinion("can only create tokens for individual service accounts".into())
            }
            // Its pods' status, and deleting its pods once they have stopped.
            ("", "pods", Some("status")) if attrs.verb != "list" && attrs.verb != "watch" => {
                self.related(node, Ref::Pod, ns, named)
            }
            ("", "pods", None) if attrs.verb == "delete" => self.related(node, Ref::Pod, ns, named),
            // Its own Node object.
            ("", "nodes", _) if matches!(attrs.verb, "update" | "patch" | "delete") => {
                if named == node {
                    self.by_rules(attrs)
                } else {
                    Decision::NoOpinion(format!("node '{node}' cannot modify node '{named}'"))
                }
            }
            // Its own heartbeat Lease.
            ("coordination.k8s.io", "leases", _)
                if ns == "kube-node-lease"
                    && !matches!(attrs.verb, "list" | "watch" | "create") =>
            {
                if named == node {
                    Decision::Allow
                } else {
                    Decision::NoOpinion(format!("node '{node}' cannot touch lease '{named}'"))
                }
            }
            _ => self.by_rules(attrs),
        }
    }

    fn rules_for(&self, user: &UserInfo, _namespace: &str) -> RuleList {
        if !user.in_group(NODES_GROUP) {
            return RuleList::default();
        }
        RuleList {
            rules: self.rules.clone(),
            // The graph's grants depend on the object, so they cannot be listed.
            incomplete: true,
            errors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn authz() -> NodeAuthorizer {
        let a = NodeAuthorizer {
            graph: RwLock::default(),
            rules: vec![PolicyRule {
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into(), "nodes".into()]),
                ..Default::default()
            }],
        };
        for (name, node, secret) in [("a", "n1", "s1"), ("b", "n2", "s2")] {
            a.write().apply(
                EventType::Added,
                &json!({"metadata": {"name": name, "namespace": "d"},
                    "spec": {"nodeName": node, "containers": [{"name": "c",
                        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]}],
                        "volumes": [{"name": "v", "configMap": {"name": format!("cm-{name}")}}]}}),
            );
        }
        a
    }

    fn node(n: &str) -> UserInfo {
        UserInfo {
            name: format!("system:node:{n}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            ..Default::default()
        }
    }

    fn attrs<'a>(
        verb: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            resource_request: true,
            resource,
            subresource: sub,
            namespace: Some("d"),
            name: Some(name),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_reads_only_what_its_pods_use() {
        let a = authz();
        assert!(
            a.authorize(&node("n1"), &attrs("get", "secrets", None, "s1"))
                .allowed()
        );
        let other = a.authorize(&node("n1"), &attrs("get", "secrets", None, "s2"));
        assert_eq!(
            other,
            Decision::NoOpinion("no relationship found between node 'n1' and this object".into())
        );
        assert!(
            a.authorize(&node("n2"), &attrs("get", "configmaps", None, "cm-b"))
                .allowed()
        );
        assert!(
            !a.authorize(&node("n2"), &attrs("get", "configmaps", None, "cm-a"))
                .allowed()
        );
        assert!(
            !a.authorize(&node("n1"), &attrs("delete", "secrets", None, "s1"))
                .allowed()
        );
        let mut list = attrs("list", "secrets", None, "");
        list.name = None;
        assert!(!a.authorize(&node("n1"), &list).allowed());
    }

    #[test]
    fn a_node_writes_only_its_own_pods_status() {
        let a = authz();
        assert!(
            a.authorize(&node("n1"), &attrs("patch", "pods", Some("status"), "a"))
                .allowed()
        );
        assert!(
            !a.authorize(&node("n1"), &attrs("patch", "pods", Some("status"), "b"))
                .allowed()
        );
        assert!(
            a.authorize(&node("n2"), &attrs("delete", "pods", None, "b"))
                .allowed()
        );
        assert!(
            !a.authorize(&node("n1"), &attrs("delete", "pods", None, "b"))
                .allowed()
        );
        // Reads come from the role's rules.
        assert!(
            a.authorize(&node("n1"), &attrs("get", "pods", None, "b"))
                .allowed()
        );
        // A pod moving away (deleted) takes its grants with it.
        a.write().apply(
            EventType::Deleted,
            &json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"nodeName": "n1"}}),
        );
        assert!(
            !a.authorize(&node("n1"), &attrs("get", "secrets", None, "s1"))
                .allowed()
        );
        assert!(!a.read().uses.contains_key("n1"));
    }

    #[test]
    fn other_users_get_no_opinion() {
        let a = authz();
        let bob = UserInfo {
            name: "system:node:n1".into(),
            ..Default::default()
        };
        assert_eq!(
            a.authorize(&bob, &attrs("get", "secrets", None, "s1")),
            Decision::NoOpinion(String::new())
        );
    }
}
