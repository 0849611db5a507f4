//! The RBAC authorizer: decisions from an index of Roles, ClusterRoles and their bindings,
//! kept current from the watch cache, so a decision is a few hash lookups and never a list.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;
use skiff_api::resources;
use tokio_util::sync::CancellationToken;

use crate::auth::{Attributes, Authorizer, Decision, RuleList, UserInfo};
use crate::cache::{EventType, Feed, WatchCache};

/// The rules of one role, shared by every binding that names it.
type Rules = Arc<[PolicyRule]>;

/// A RoleBinding or ClusterRoleBinding, reduced to what decisions need.
#[derive(Debug)]
struct Binding {
    /// `namespace/name` for RoleBindings, `name` for ClusterRoleBindings.
    key: String,
    /// The namespace of a RoleBinding.
    namespace: Option<String>,
    /// True when the binding names a ClusterRole.
    cluster_role: bool,
    /// The role's key in the index: `name` for a ClusterRole, `namespace/name` for a Role.
    role: String,
    users: Vec<String>,
    groups: Vec<String>,
}

/// Bindings by the subject they name.
#[derive(Debug, Default)]
struct BySubject {
    users: HashMap<String, Vec<Arc<Binding>>>,
    groups: HashMap<String, Vec<Arc<Binding>>>,
}

impl BySubject {
    fn add(&mut self, b: &Arc<Binding>) {
        for u in &b.users {
            self.users.entry(u.clone()).or_default().push(b.clone());
        }
        for g in &b.groups {
            self.groups.entry(g.clone()).or_default().push(b.clone());
        }
    }

    fn remove(&mut self, b: &Binding) {
        fn drop_from(map: &mut HashMap<String, Vec<Arc<Binding>>>, names: &[String], key: &str) {
            for n in names {
                if let Some(list) = map.get_mut(n) {
                    list.retain(|x| x.key != key);
                    if list.is_empty() {
                        map.remove(n);
                    }
                }
            }
        }
        drop_from(&mut self.users, &b.users, &b.key);
        drop_from(&mut self.groups, &b.groups, &b.key);
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    /// The bindings that apply to `user`, through its name or one of its groups.
    fn of<'a>(&'a self, user: &'a UserInfo) -> impl Iterator<Item = &'a Arc<Binding>> + 'a {
        let by_name = self.users.get(&user.name).into_iter().flatten();
        let by_group = user
            .groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flatten();
        by_name.chain(by_group)
    }
}

/// Everything RBAC decides from.
#[derive(Debug, Default)]
struct Index {
    cluster_roles: HashMap<String, Rules>,
    /// By `namespace/name`.
    roles: HashMap<String, Rules>,
    cluster_bindings: HashMap<String, Arc<Binding>>,
    /// By `namespace/name`.
    bindings: HashMap<String, Arc<Binding>>,
    cluster_subjects: BySubject,
    /// RoleBindings by namespace, then subject.
    namespace_subjects: HashMap<String, BySubject>,
}

/// The four kinds the index follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ClusterRole,
    Role,
    ClusterRoleBinding,
    RoleBinding,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::ClusterRole,
        Kind::Role,
        Kind::ClusterRoleBinding,
        Kind::RoleBinding,
    ];

    fn plural(self) -> &'static str {
        match self {
            Kind::ClusterRole => "clusterroles",
            Kind::Role => "roles",
            Kind::ClusterRoleBinding => "clusterrolebindings",
            Kind::RoleBinding => "rolebindings",
        }
    }
}

fn object_key(obj: &Value) -> Option<String> {
    let name = obj.pointer("/metadata/name")?.as_str()?;
    Some(
        match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
            _ => name.to_string(),
        },
    )
}

/// A binding's subjects as user names and groups; a ServiceAccount is the user
/// `system:serviceaccount:<namespace>:<name>`.
fn subjects(
    subjects: Option<&[k8s_openapi::api::rbac::v1::Subject]>,
    namespace: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for s in subjects.unwrap_or_default() {
        match s.kind.as_str() {
            "User" => users.push(s.name.clone()),
            "Group" => groups.push(s.name.clone()),
            "ServiceAccount" => {
                let ns = s
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .or(namespace)
                    .unwrap_or_default();
                users.push(format!("system:serviceaccount:{ns}:{}", s.name));
            }
            _ => {}
        }
    }
    (users, groups)
}

impl Index {
    fn apply(&mut self, kind: Kind, ty: EventType, obj: &Value) {
        let Some(key) = object_key(obj) else { return };
        self.remove(kind, &key);
        if ty == EventType::Deleted {
            return;
        }
        // An object the strategy accepted always parses; one that does not grants nothing.
        match kind {
            Kind::ClusterRole => {
                if let Ok(r) = ClusterRole::deserialize(obj) {
                    self.cluster_roles
                        .insert(key, r.rules.unwrap_or_default().into());
                }
            }
            Kind::Role => {
                if let Ok(r) = Role::deserialize(obj) {
                    self.roles.insert(key, r.rules.unwrap_or_default().into());
                }
            }
            Kind::ClusterRoleBinding => {
                if let Ok(b) = ClusterRoleBinding::deserialize(obj) {
                    let (users, groups) = subjects(b.subjects.as_deref(), None);
                    let b = Arc::new(Binding {
                        key: key.clone(),
                        namespace: None,
                        cluster_role: true,
                        role: b.role_ref.name,
                        users,
                        groups,
                    });
                    self.cluster_subjects.add(&b);
                    self.cluster_bindings.insert(key, b);
                }
            }
            Kind::RoleBinding => {
                if let Ok(b) = RoleBinding::deserialize(obj) {
                    let ns = b.metadata.namespace.clone().unwrap_or_default();
                    let (users, groups) = subjects(b.subjects.as_deref(), Some(&ns));
                    let cluster_role = b.role_ref.kind == "ClusterRole";
                    let role = if cluster_role {
                        b.role_ref.name
                    } else {
                        format!("{ns}/{}", b.role_ref.name)
                    };
                    let b = Arc::new(Binding {
                        key: key.clone(),
                        namespace: Some(ns.clone()),
                        cluster_role,
                        role,
                        users,
                        groups,
                    });
                    self.namespace_subjects.entry(ns).or_default().add(&b);
                    self.bindings.insert(key, b);
                }
            }
        }
    }

    fn remove(&mut self, kind: Kind, key: &str) {
        match kind {
            Kind::ClusterRole => {
                self.cluster_roles.remove(key);
            }
            Kind::Role => {
                self.roles.remove(key);
            }
            Kind::ClusterRoleBinding => {
                if let Some(b) = self.cluster_bindings.remove(key) {
                    self.cluster_subjects.remove(&b);
                }
            }
            Kind::RoleBinding => {
                if let Some(b) = self.bindings.remove(key) {
                    let ns = b.namespace.clone().unwrap_or_default();
                    if let Some(by) = self.namespace_subjects.get_mut(&ns) {
                        by.remove(&b);
                        if by.is_empty() {
                            self.namespace_subjects.remove(&ns);
                        }
                    }
                }
            }
        }
    }

    fn clear(&mut self, kind: Kind) {
        let keys: Vec<String> = match kind {
            Kind::ClusterRole => self.cluster_roles.keys().cloned().collect(),
            Kind::Role => self.roles.keys().cloned().collect(),
            Kind::ClusterRoleBinding => self.cluster_bindings.keys().cloned().collect(),
            Kind::RoleBinding => self.bindings.keys().cloned().collect(),
        };
        for k in keys {
            self.remove(kind, &k);
        }
    }

    /// The rules a binding grants, if its role exists.
    fn rules_of(&self, b: &Binding) -> Option<&Rules> {
        if b.cluster_role {
            self.cluster_roles.get(&b.role)
        } else {
            self.roles.get(&b.role)
        }
    }

    /// Calls `f` with the rules of every binding that applies to `user` cluster-wide and in
    /// `namespace`, until it returns true.
    fn any_rules(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
        mut f: impl FnMut(&[PolicyRule]) -> bool,
    ) -> bool {
        for b in self.cluster_subjects.of(user) {
            if let Some(rules) = self.rules_of(b)
                && f(rules)
            {
                return true;
            }
        }
        let Some(by) = namespace
            .filter(|ns| !ns.is_empty())
            .and_then(|ns| self.namespace_subjects.get(ns))
        else {
            return false;
        };
        for b in by.of(user) {
            if let Some(rules) = self.rules_of(b)
                && f(rules)
            {
                return true;
            }
        }
        false
    }
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether one rule allows a request, with Kubernetes' wildcards: `*` for verbs, groups and
/// resources, `*/sub` for a subresource of any resource, a trailing `*` in a URL as a prefix,
/// and no resourceNames meaning every name.
pub fn rule_allows(rule: &PolicyRule, attrs: &Attributes<'_>) -> bool {
    if !has(&rule.verbs, attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return rule.non_resource_urls.iter().flatten().any(|u| {
            u == "*"
                || u == attrs.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| attrs.path.starts_with(prefix))
        });
    }
    if !has(rule.api_groups.as_deref().unwrap_or_default(), attrs.group) {
        return false;
    }
    let sub = attrs.subresource.unwrap_or_default();
    let resource_ok = rule.resources.iter().flatten().any(|r| {
        r == "*"
            || (sub.is_empty() && r == attrs.resource)
            || (!sub.is_empty()
                && (r
                    .strip_prefix(attrs.resource)
                    .and_then(|rest| rest.strip_prefix('/'))
                    == Some(sub)
                    || r.strip_prefix("*/") == Some(sub)))
    });
    if !resource_ok {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => attrs
            .name
            .is_some_and(|n| !n.is_empty() && names.iter().any(|x| x == n)),
    }
}

/// RBAC, fed by the watch cache.
#[derive(Default)]
pub struct Rbac {
    index: RwLock<Index>,
}

impl Rbac {
    /// Builds the index from the watch cache and keeps it current until `shutdown`. Returns
    /// once the objects stored now are indexed.
    pub fn start(cache: &WatchCache, shutdown: CancellationToken) -> Arc<Rbac> {
        let rbac = Arc::new(Rbac::default());
        for kind in Kind::ALL {
            let info = resources::find("rbac.authorization.k8s.io", "v1", kind.plural())
                .expect("the RBAC kinds are served");
            let me = rbac.clone();
            cache
                .for_resource(info)
                .expect("every served resource has a cache")
                .follow(shutdown.clone(), move |feed| match feed {
                    Feed::Reset => me.write().clear(kind),
                    Feed::Apply(ty, obj) => me.write().apply(kind, ty, obj),
                });
        }
        rbac
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The rules of a ClusterRole (`cluster`) or of a Role in `namespace`, if it exists.
    pub fn role_rules(
        &self,
        cluster: bool,
        namespace: &str,
        name: &str,
    ) -> Option<Vec<PolicyRule>> {
        let index = self.read();
        let rules = if cluster {
            index.cluster_roles.get(name)
        } else {
            index.roles.get(&format!("{namespace}/{name}"))
        };
        rules.map(|r| r.to_vec())
    }

    /// Indexes one Role, ClusterRole or binding (`plural` names its kind) directly, without
    /// a watch cache: unit tests and the authorizer benchmark.
    pub fn insert(&self, plural: &str, obj: &Value) {
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.plural() == plural)
            .expect("an RBAC kind");
        self.write().apply(kind, EventType::Added, obj);
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision {
        let allowed = self.read().any_rules(user, attrs.namespace, |rules| {
            rules.iter().any(|r| rule_allows(r, attrs))
        });
        if allowed {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        }
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> RuleList {
        let mut out = RuleList::default();
        let index = self.read();
        index.any_rules(user, Some(namespace), |rules| {
            out.rules.extend(rules.iter().cloned());
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn req<'a>(verb: &'a str, resource: &'a str, ns: Option<&'a str>) -> Attributes<'a> {
        Attributes {
            verb,
            resource_request: true,
            version: "v1",
            resource,
            namespace: ns,
            ..Default::default()
        }
    }

    fn rbac() -> Rbac {
        let r = Rbac::default();
        r.insert(
            "roles",
            &json!({"metadata": {"name": "pod-reader", "namespace": "dev"},
                "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]}),
        );
        r.insert(
            "rolebindings",
            &json!({"metadata": {"name": "read", "namespace": "dev"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "bot"}, {"kind": "User", "name": "alice"}]}),
        );
        r.insert(
            "clusterroles",
            &json!({"metadata": {"name": "health"},
                "rules": [{"nonResourceURLs": ["/healthz", "/logs/*"], "verbs": ["get"]},
                          {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update"], "resourceNames": ["web"]}]}),
        );
        r.insert(
            "clusterrolebindings",
            &json!({"metadata": {"name": "health"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "health"},
                "subjects": [{"kind": "Group", "name": "ops"}]}),
        );
        r
    }

    #[test]
    fn a_role_binding_grants_its_rules_in_its_namespace_only() {
        let r = rbac();
        let bot = user("system:serviceaccount:dev:bot", &["system:serviceaccounts"]);
        assert!(
            r.authorize(&bot, &req("list", "pods", Some("dev")))
                .allowed()
        );
        assert!(
            !r.authorize(&bot, &req("delete", "pods", Some("dev")))
                .allowed()
        );
        assert!(
            !r.authorize(&bot, &req("list", "pods", Some("prod")))
                .allowed()
        );
        assert!(
            !r.authorize(&bot, &req("list", "secrets", Some("dev")))
                .allowed()
        );
        assert!(!r.authorize(&bot, &req("list", "pods", None)).allowed());
        let mut log = req("get", "pods", Some("dev"));
        log.subresource = Some("log");
        assert!(r.authorize(&user("alice", &[]), &log).allowed());
        log.subresource = Some("exec");
        assert!(!r.authorize(&user("alice", &[]), &log).allowed());
    }

    #[test]
    fn groups_resource_names_and_paths() {
        let r = rbac();
        let ops = user("bob", &["ops"]);
        let path = |p: &'static str| Attributes {
            verb: "get",
            path: p,
            ..Default::default()
        };
        assert!(r.authorize(&ops, &path("/healthz")).allowed());
        assert!(r.authorize(&ops, &path("/logs/kubelet.log")).allowed());
        assert!(!r.authorize(&ops, &path("/metrics")).allowed());
        assert!(!r.authorize(&user("bob", &[]), &path("/healthz")).allowed());
        let mut scale = req("update", "deployments", Some("x"));
        scale.group = "apps";
        scale.subresource = Some("scale");
        assert!(!r.authorize(&ops, &scale).allowed(), "no name given");
        scale.name = Some("web");
        assert!(r.authorize(&ops, &scale).allowed());
        scale.name = Some("api");
        assert!(!r.authorize(&ops, &scale).allowed());
    }

    #[test]
    fn deleting_a_binding_or_its_role_revokes() {
        let r = rbac();
        let alice = user("alice", &[]);
        assert!(
            r.authorize(&alice, &req("get", "pods", Some("dev")))
                .allowed()
        );
        r.write().apply(
            Kind::Role,
            EventType::Deleted,
            &json!({"metadata": {"name": "pod-reader", "namespace": "dev"}}),
        );
        assert!(
            !r.authorize(&alice, &req("get", "pods", Some("dev")))
                .allowed()
        );
        r.insert(
            "roles",
            &json!({"metadata": {"name": "pod-reader", "namespace": "dev"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]}),
        );
        assert!(
            r.authorize(&alice, &req("delete", "pods", Some("dev")))
                .allowed()
        );
        // A changed binding drops the subjects it no longer names.
        r.insert(
            "rolebindings",
            &json!({"metadata": {"name": "read", "namespace": "dev"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}),
        );
        assert!(
            !r.authorize(&alice, &req("get", "pods", Some("dev")))
                .allowed()
        );
        assert!(r.read().namespace_subjects["dev"].users.len() == 1);
    }

    #[test]
    fn wildcards_and_subresource_forms() {
        let all = PolicyRule {
            verbs: vec!["*".into()],
            api_groups: Some(vec!["*".into()]),
            resources: Some(vec!["*".into()]),
            ..Default::default()
        };
        let mut a = req("create", "pods", Some("x"));
        a.subresource = Some("exec");
        assert!(rule_allows(&all, &a));
        let any_status = PolicyRule {
            verbs: vec!["update".into()],
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["*/status".into()]),
            ..Default::default()
        };
        let mut s = req("update", "pods", Some("x"));
        assert!(!rule_allows(&any_status, &s));
        s.subresource = Some("status");
        assert!(rule_allows(&any_status, &s));
        // `pods` alone does not reach pods/status.
        let pods = PolicyRule {
            resources: Some(vec!["pods".into()]),
            ..any_status.clone()
        };
        assert!(!rule_allows(&pods, &s));
    }

    #[test]
    fn rules_for_lists_cluster_and_namespace_rules() {
        let r = rbac();
        let both = user("alice", &["ops"]);
        assert_eq!(r.rules_for(&both, "dev").rules.len(), 3);
        assert_eq!(r.rules_for(&both, "prod").rules.len(), 2);
    }
}
