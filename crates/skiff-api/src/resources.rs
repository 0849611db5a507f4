//! The resource table: every resource Skiff serves, with the facts routing, discovery,
//! storage and printing need.

/// One served resource (one group/version/plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// URL plural, e.g. "deployments".
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Subresources served, e.g. &["status", "scale"].
    pub subresources: &'static [&'static str],
    /// Verbs for discovery.
    pub verbs: &'static [&'static str],
    /// Discovery categories, e.g. &["all"].
    pub categories: &'static [&'static str],
    /// The version objects are stored in (several versions of one resource share storage,
    /// e.g. autoscaling v1 and v2 HorizontalPodAutoscalers are stored as v2).
    pub storage_version: &'static str,
}

impl ResourceInfo {
    /// "v1" for core, "group/version" otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key prefix for this resource: `/registry/<plural>/`. Kubernetes uses a few
    /// historical names (e.g. `/registry/services/specs/`); Skiff keeps it uniform.
    ///
    /// When two groups serve the same plural (e.g. core `events` and `events.k8s.io` events),
    /// the non-core one is qualified with its group: `/registry/<group>/<plural>/`; core keeps
    /// the bare form.
    pub fn storage_prefix(&self) -> String {
        let shared = !self.group.is_empty()
            && all()
                .iter()
                .any(|r| r.plural == self.plural && r.group != self.group);
        if shared {
            format!("/registry/{}/{}/", self.group, self.plural)
        } else {
            format!("/registry/{}/", self.plural)
        }
    }

    /// The storage key of one object.
    ///
    /// `<prefix><namespace>/<name>` for namespaced resources, `<prefix><name>` for
    /// cluster-scoped ones (a namespace passed for a cluster-scoped resource is ignored).
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{}/{}", self.storage_prefix(), ns, name),
            _ => format!("{}{}", self.storage_prefix(), name),
        }
    }

    /// "PodList" etc.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// Every served resource.
pub fn all() -> &'static [ResourceInfo] {
    RESOURCES
}

/// Every verb a fully served resource supports.
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Namespaces do not support `deletecollection` upstream.
const VERBS_NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["status", "scale"];

/// Builds one table row; `storage_version` defaults to `version`.
const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    subresources: &'static [&'static str],
    categories: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        short_names,
        namespaced,
        subresources,
        verbs: VERBS,
        categories,
        storage_version: version,
    }
}

static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    ResourceInfo {
        verbs: VERBS_NO_DELETECOLLECTION,
        ..res(
            "",
            "v1",
            "Namespace",
            "namespaces",
            "namespace",
            &["ns"],
            false,
            &["status", "finalize"],
            NONE,
        )
    },
    res(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        &["po"],
        true,
        &["status", "binding", "log", "exec", "eviction"],
        ALL,
    ),
    res(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        &["no"],
        false,
        STATUS,
        NONE,
    ),
    res(
        "",
        "v1",
        "Service",
        "services",
        "service",
        &["svc"],
        true,
        STATUS,
        ALL,
    ),
    res(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        NONE,
        NONE,
    ),
    res(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        &["rc"],
        true,
        STATUS_SCALE,
        ALL,
    ),
    res(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        true,
        NONE,
        NONE,
    ),
    res(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        &[],
        true,
        NONE,
        NONE,
    ),
    res(
        "",
        "v1",
        "Event",
        "events",
        "event",
        &["ev"],
        true,
        NONE,
        NONE,
    ),
    res(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
        &["token"],
        NONE,
    ),
    res(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        &["pv"],
        false,
        STATUS,
        NONE,
    ),
    res(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        &["pvc"],
        true,
        STATUS,
        NONE,
    ),
    res(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        &["quota"],
        true,
        STATUS,
        NONE,
    ),
    res(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        &["limits"],
        true,
        NONE,
        NONE,
    ),
    // apps/v1
    res(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        &["deploy"],
        true,
        STATUS_SCALE,
        ALL,
    ),
    res(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        &["rs"],
        true,
        STATUS_SCALE,
        ALL,
    ),
    res(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        &["ds"],
        true,
        STATUS,
        ALL,
    ),
    res(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        &["sts"],
        true,
        STATUS_SCALE,
        ALL,
    ),
    res(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        &[],
        true,
        NONE,
        NONE,
    ),
    // autoscaling: v2 is the storage version of both.
    res(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        &["hpa"],
        true,
        STATUS,
        ALL,
    ),
    ResourceInfo {
        storage_version: "v2",
        ..res(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            &["hpa"],
            true,
            STATUS,
            ALL,
        )
    },
    // batch/v1
    res("batch", "v1", "Job", "jobs", "job", &[], true, STATUS, ALL),
    res(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        &["cj"],
        true,
        STATUS,
        ALL,
    ),
    // certificates.k8s.io/v1
    res(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        "certificatesigningrequest",
        &["csr"],
        false,
        &["status", "approval"],
        NONE,
    ),
    // coordination.k8s.io/v1
    res(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        &[],
        true,
        NONE,
        NONE,
    ),
    // discovery.k8s.io/v1
    res(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        &[],
        true,
        NONE,
        NONE,
    ),
    // networking.k8s.io/v1
    res(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        &["ing"],
        true,
        STATUS,
        NONE,
    ),
    // policy/v1
    res(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        &["pdb"],
        true,
        STATUS,
        NONE,
    ),
    // rbac.authorization.k8s.io/v1
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        &[],
        true,
        NONE,
        NONE,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        &[],
        true,
        NONE,
        NONE,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        &[],
        false,
        NONE,
        NONE,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        &[],
        false,
        NONE,
        NONE,
    ),
    // scheduling.k8s.io/v1
    res(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        &["pc"],
        false,
        NONE,
        NONE,
    ),
    // storage.k8s.io/v1
    res(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        &["sc"],
        false,
        NONE,
        NONE,
    ),
];

/// The verbs of a review: created, answered and never stored.
const CREATE_ONLY: &[&str] = &["create"];

/// A review resource: the answer is computed from the request and nothing is stored.
const fn review(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    ResourceInfo {
        verbs: CREATE_ONLY,
        ..res(
            group,
            version,
            kind,
            plural,
            singular,
            &[],
            namespaced,
            NONE,
            NONE,
        )
    }
}

/// Resources that are only created and answered (`kubectl auth can-i`, `kubectl auth whoami`,
/// token and access reviews): served and discovered, never stored or watched.
static REVIEWS: &[ResourceInfo] = &[
    review(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        false,
    ),
    review(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        false,
    ),
    // kubectl 1.27 asks for whoami in v1beta1.
    review(
        "authentication.k8s.io",
        "v1beta1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        true,
    ),
    review(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        false,
    ),
];

/// The review resources (see [`REVIEWS`]); [`all`] lists only stored resources.
pub fn reviews() -> &'static [ResourceInfo] {
    REVIEWS
}

impl ResourceInfo {
    /// Whether objects of this resource are stored (false for reviews).
    pub fn is_stored(&self) -> bool {
        self.verbs != CREATE_ONLY
    }
}

/// Looks a resource up by group, version and plural: stored resources and reviews.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    // Every request looks its resource up, some several times: an index, not a scan.
    type Index = std::collections::HashMap<
        (&'static str, &'static str, &'static str),
        &'static ResourceInfo,
    >;
    static INDEX: std::sync::OnceLock<Index> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| {
        all()
            .iter()
            .chain(reviews())
            .map(|r| ((r.group, r.version, r.plural), r))
            .collect()
    });
    index.get(&(group, version, plural)).copied()
}

/// Looks a resource up by group, version and kind.
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for r in all() {
            assert!(
                seen.insert((r.group, r.version, r.plural)),
                "duplicate {}/{}/{}",
                r.group,
                r.version,
                r.plural
            );
            assert_eq!(r.singular, r.kind.to_lowercase(), "{}", r.kind);
            assert!(r.verbs.contains(&"get"));
            // The storage version must itself be served.
            assert!(find(r.group, r.storage_version, r.plural).is_some());
        }
    }

    #[test]
    fn lookups_and_keys() {
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, &'a str, &'a str);
        let cases: &[Case] = &[
            (
                "",
                "v1",
                "pods",
                Some("default"),
                "web",
                "/registry/pods/default/web",
            ),
            ("", "v1", "nodes", None, "n1", "/registry/nodes/n1"),
            (
                "",
                "v1",
                "namespaces",
                Some("x"),
                "kube-system",
                "/registry/namespaces/kube-system",
            ),
            (
                "",
                "v1",
                "events",
                Some("d"),
                "e.1",
                "/registry/events/d/e.1",
            ),
            (
                "apps",
                "v1",
                "deployments",
                Some("d"),
                "web",
                "/registry/deployments/d/web",
            ),
            (
                "autoscaling",
                "v1",
                "horizontalpodautoscalers",
                Some("d"),
                "h",
                "/registry/horizontalpodautoscalers/d/h",
            ),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
                None,
                "admin",
                "/registry/clusterroles/admin",
            ),
        ];
        for (g, v, plural, ns, name, key) in cases {
            let r = find(g, v, plural).unwrap();
            assert_eq!(r.storage_key(*ns, name), *key);
        }
        let hpa1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let hpa2 = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(hpa1.storage_prefix(), hpa2.storage_prefix());
        assert_eq!(hpa1.storage_version, "v2");
        assert_eq!(hpa1.api_version(), "autoscaling/v1");
        assert_eq!(find_kind("", "v1", "Pod").unwrap().short_names, &["po"]);
        assert_eq!(
            find_kind("apps", "v1", "Deployment").unwrap().list_kind(),
            "DeploymentList"
        );
        assert!(
            !find("", "v1", "namespaces")
                .unwrap()
                .verbs
                .contains(&"deletecollection")
        );
        assert!(
            find("", "v1", "namespaces")
                .unwrap()
                .subresources
                .contains(&"finalize")
        );
    }
}
