//! The bootstrap RBAC policy: the default roles and bindings kube-apiserver keeps in every
//! cluster.
//!
//! The policy follows Kubernetes 1.33 with its default feature gates: roles that upstream only
//! adds behind gates that are off by default (dynamic resource allocation, cluster trust bundles,
//! volume attributes classes) are not here. Rules may name resources Skiff does not serve yet;
//! they are harmless there and keep the objects identical to what clients expect to find.
//!
//! One concern, and long because it is a table: every default role and binding of
//! Kubernetes, rule by rule. [`super::reconcile`] brings stored objects up to it at start.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// Label every bootstrap object carries.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// Value of [`BOOTSTRAPPING_LABEL`].
pub const BOOTSTRAPPING_VALUE: &str = "rbac-defaults";
/// Annotation that lets the apiserver update a bootstrap object at startup; `"false"` opts out.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The RBAC API group, used in role references and User/Group subjects.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Prefix of the roles and bindings of the controllers of kube-controller-manager, each of which
/// runs as the service account `kube-system/<name>` when it uses per-controller credentials.
const CONTROLLER_PREFIX: &str = "system:controller:";
const KUBE_SYSTEM: &str = "kube-system";
const KUBE_PUBLIC: &str = "kube-public";

// API groups named by the rules.
const CORE: &str = "";
const ADMISSION: &str = "admissionregistration.k8s.io";
const APPS: &str = "apps";
const AUTHN: &str = "authentication.k8s.io";
const AUTHZ: &str = "authorization.k8s.io";
const AUTOSCALING: &str = "autoscaling";
const BATCH: &str = "batch";
const CERTIFICATES: &str = "certificates.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EVENTS: &str = "events.k8s.io";
const EXTENSIONS: &str = "extensions";
const NETWORKING: &str = "networking.k8s.io";
const NODE: &str = "node.k8s.io";
const POLICY: &str = "policy";
const STORAGE: &str = "storage.k8s.io";

const READ: &[&str] = &["get", "list", "watch"];
const READ_UPDATE: &[&str] = &["get", "list", "watch", "update", "patch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

// ---------------------------------------------------------------------------------------------
// Building rules and objects.

/// A rule allowing `verbs`; the builder methods of [`RuleBuilder`] add what they apply to.
fn allow(verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: sorted(verbs),
        ..PolicyRule::default()
    }
}

/// Builder methods on [`PolicyRule`]. Every list is kept sorted and free of duplicates, as
/// upstream's rule builder does, so that the objects compare equal to the ones kube-apiserver
/// writes.
trait RuleBuilder {
    fn groups(self, groups: &[&str]) -> Self;
    fn resources(self, resources: &[&str]) -> Self;
    fn names(self, names: &[&str]) -> Self;
    fn urls(self, urls: &[&str]) -> Self;
}

impl RuleBuilder for PolicyRule {
    fn groups(mut self, groups: &[&str]) -> Self {
        self.api_groups = Some(sorted(groups));
        self
    }
    fn resources(mut self, resources: &[&str]) -> Self {
        self.resources = Some(sorted(resources));
        self
    }
    fn names(mut self, names: &[&str]) -> Self {
        self.resource_names = Some(sorted(names));
        self
    }
    fn urls(mut self, urls: &[&str]) -> Self {
        self.non_resource_urls = Some(sorted(urls));
        self
    }
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
    out.sort();
    out.dedup();
    out
}

/// Writing events through either events API, which almost every component does.
fn events_rule() -> PolicyRule {
    allow(&["create", "update", "patch"])
        .groups(&[CORE, EVENTS])
        .resources(&["events"])
}

/// Metadata of a bootstrap object: its name, namespace, extra labels, and the bootstrapping
/// label and autoupdate annotation.
fn bootstrap_meta(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all_labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    all_labels.insert(BOOTSTRAPPING_LABEL.into(), BOOTSTRAPPING_VALUE.into());
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(all_labels),
        annotations: Some(BTreeMap::from([(
            AUTOUPDATE_ANNOTATION.to_owned(),
            "true".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    labelled_cluster_role(name, &[], rules)
}

fn labelled_cluster_role(
    name: &str,
    labels: &[(&str, &str)],
    rules: Vec<PolicyRule>,
) -> ClusterRole {
    ClusterRole {
        metadata: bootstrap_meta(name, None, labels),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A role whose rules the clusterrole-aggregation controller fills from the roles labelled
/// `rbac.authorization.k8s.io/aggregate-to-<target>: "true"`.
fn aggregated_cluster_role(name: &str, labels: &[(&str, &str)], target: &str) -> ClusterRole {
    ClusterRole {
        metadata: bootstrap_meta(name, None, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(aggregate_to(target), "true".to_owned())])),
                ..LabelSelector::default()
            }]),
        }),
    }
}

fn aggregate_to(target: &str) -> String {
    format!("rbac.authorization.k8s.io/aggregate-to-{target}")
}

fn user(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

fn group(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.into()),
        kind: "Group".into(),
        name: name.into(),
        namespace: None,
    }
}

fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        api_group: None,
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(namespace.into()),
    }
}

fn cluster_binding(role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: bootstrap_meta(role, None, &[]),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: if subjects.is_empty() {
            None
        } else {
            Some(subjects)
        },
    }
}

fn namespaced_role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: bootstrap_meta(name, Some(namespace), &[]),
        rules: Some(rules),
    }
}

fn namespaced_binding(
    namespace: &str,
    name: &str,
    role: &str,
    subjects: Vec<Subject>,
) -> RoleBinding {
    RoleBinding {
        metadata: bootstrap_meta(name, Some(namespace), &[]),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "Role".into(),
            name: role.into(),
        },
        subjects: Some(subjects),
    }
}

// ---------------------------------------------------------------------------------------------
// The policy.

/// Rules of `system:node`. Nodes are normally granted by the Node authorizer, which narrows these
/// same permissions to the node's own objects; the role stays for clusters that bind it by hand.
pub fn node_rules() -> Vec<PolicyRule> {
    vec![
        // Checking API access on behalf of callers of the kubelet API: non-mutating creates.
        allow(&["create"])
            .groups(&[AUTHN])
            .resources(&["tokenreviews"]),
        allow(&["create"])
            .groups(&[AUTHZ])
            .resources(&["subjectaccessreviews", "localsubjectaccessreviews"]),
        // Service environment variables.
        allow(READ).groups(&[CORE]).resources(&["services"]),
        // Registering and reporting on its own Node object (NodeRestriction narrows these).
        allow(&["create", "get", "list", "watch"])
            .groups(&[CORE])
            .resources(&["nodes"]),
        allow(&["update", "patch"])
            .groups(&[CORE])
            .resources(&["nodes/status"]),
        allow(&["update", "patch"])
            .groups(&[CORE])
            .resources(&["nodes"]),
        allow(&["create", "update", "patch"])
            .groups(&[CORE])
            .resources(&["events"]),
        allow(READ).groups(&[CORE]).resources(&["pods"]),
        // Mirror pods, pod status and evictions.
        allow(&["create", "delete"])
            .groups(&[CORE])
            .resources(&["pods"]),
        allow(&["update", "patch"])
            .groups(&[CORE])
            .resources(&["pods/status"]),
        allow(&["create"])
            .groups(&[CORE])
            .resources(&["pods/eviction"]),
        // Volumes and environment from secrets and config maps.
        allow(READ)
            .groups(&[CORE])
            .resources(&["secrets", "configmaps"]),
        allow(&["get"])
            .groups(&[CORE])
            .resources(&["persistentvolumeclaims", "persistentvolumes"]),
        allow(&["get"]).groups(&[CORE]).resources(&["endpoints"]),
        // Client certificate rotation.
        allow(&["create", "get", "list", "watch"])
            .groups(&[CERTIFICATES])
            .resources(&["certificatesigningrequests"]),
        // The node heartbeat lease.
        allow(&["get", "create", "update", "patch", "delete"])
            .groups(&[COORDINATION])
            .resources(&["leases"]),
        allow(&["get"])
            .groups(&[STORAGE])
            .resources(&["volumeattachments"]),
        // Projected service account tokens of the pods it runs.
        allow(&["create"])
            .groups(&[CORE])
            .resources(&["serviceaccounts/token"]),
        allow(&["get", "update", "patch"])
            .groups(&[CORE])
            .resources(&["persistentvolumeclaims/status"]),
        allow(READ).groups(&[STORAGE]).resources(&["csidrivers"]),
        allow(&["get", "create", "update", "patch", "delete"])
            .groups(&[STORAGE])
            .resources(&["csinodes"]),
        allow(READ).groups(&[NODE]).resources(&["runtimeclasses"]),
    ]
}

/// The rules of the aggregated `view` role's contributor: read access to everything in a
/// namespace except what would let the reader escalate (secrets, exec, proxies).
fn aggregate_to_view_rules() -> Vec<PolicyRule> {
    vec![
        allow(READ).groups(&[CORE]).resources(&[
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "configmaps",
        ]),
        allow(READ).groups(&[CORE]).resources(&[
            "limitranges",
            "resourcequotas",
            "bindings",
            "events",
            "pods/status",
            "resourcequotas/status",
            "namespaces/status",
            "replicationcontrollers/status",
            "pods/log",
        ]),
        // Reading the namespace itself tells a user which namespaces they can see.
        allow(READ).groups(&[CORE]).resources(&["namespaces"]),
        allow(READ)
            .groups(&[DISCOVERY])
            .resources(&["endpointslices"]),
        allow(READ).groups(&[APPS]).resources(&[
            "controllerrevisions",
            "statefulsets",
            "statefulsets/status",
            "statefulsets/scale",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/status",
            "deployments/scale",
            "replicasets",
            "replicasets/status",
            "replicasets/scale",
        ]),
        allow(READ).groups(&[AUTOSCALING]).resources(&[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ]),
        allow(READ).groups(&[BATCH]).resources(&[
            "jobs",
            "jobs/status",
            "cronjobs",
            "cronjobs/status",
        ]),
        allow(READ).groups(&[EXTENSIONS]).resources(&[
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "ingresses",
            "ingresses/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "replicationcontrollers/scale",
            "networkpolicies",
        ]),
        allow(READ)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        allow(READ).groups(&[NETWORKING]).resources(&[
            "networkpolicies",
            "ingresses",
            "ingresses/status",
        ]),
    ]
}

/// The rules of the aggregated `edit` role's contributor: writing workloads and their
/// configuration, and reading the escalating resources `view` leaves out.
fn aggregate_to_edit_rules() -> Vec<PolicyRule> {
    vec![
        allow(READ).groups(&[CORE]).resources(&[
            "pods/attach",
            "pods/proxy",
            "pods/exec",
            "pods/portforward",
            "secrets",
            "services/proxy",
        ]),
        allow(&["impersonate"])
            .groups(&[CORE])
            .resources(&["serviceaccounts"]),
        allow(WRITE).groups(&[CORE]).resources(&[
            "pods",
            "pods/attach",
            "pods/proxy",
            "pods/exec",
            "pods/portforward",
        ]),
        allow(&["create"])
            .groups(&[CORE])
            .resources(&["pods/eviction"]),
        // Endpoints are deliberately absent: writing them can redirect traffic of services the
        // user does not own (CVE-2021-25740).
        allow(WRITE).groups(&[CORE]).resources(&[
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/proxy",
            "persistentvolumeclaims",
            "configmaps",
            "secrets",
            "events",
        ]),
        allow(&["create"])
            .groups(&[CORE])
            .resources(&["serviceaccounts/token"]),
        allow(WRITE).groups(&[APPS]).resources(&[
            "statefulsets",
            "statefulsets/scale",
            "daemonsets",
            "deployments",
            "deployments/scale",
            "deployments/rollback",
            "replicasets",
            "replicasets/scale",
        ]),
        allow(WRITE)
            .groups(&[AUTOSCALING])
            .resources(&["horizontalpodautoscalers"]),
        allow(WRITE)
            .groups(&[BATCH])
            .resources(&["jobs", "cronjobs"]),
        allow(WRITE).groups(&[EXTENSIONS]).resources(&[
            "daemonsets",
            "deployments",
            "deployments/scale",
            "deployments/rollback",
            "ingresses",
            "replicasets",
            "replicasets/scale",
            "replicationcontrollers/scale",
            "networkpolicies",
        ]),
        allow(WRITE)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets"]),
        allow(WRITE)
            .groups(&[NETWORKING])
            .resources(&["networkpolicies", "ingresses"]),
        allow(READ_WRITE)
            .groups(&[COORDINATION])
            .resources(&["leases"]),
    ]
}

/// Rules of `system:kube-scheduler`.
fn scheduler_rules() -> Vec<PolicyRule> {
    vec![
        events_rule(),
        // Leader election: anyone may create the lease, only the scheduler's own is updatable.
        allow(&["create"])
            .groups(&[COORDINATION])
            .resources(&["leases"]),
        allow(&["get", "update"])
            .groups(&[COORDINATION])
            .resources(&["leases"])
            .names(&["kube-scheduler"]),
        allow(READ).groups(&[CORE]).resources(&["nodes"]),
        allow(&["get", "list", "watch", "delete"])
            .groups(&[CORE])
            .resources(&["pods"]),
        allow(&["create"])
            .groups(&[CORE])
            .resources(&["pods/binding", "bindings"]),
        allow(&["patch", "update"])
            .groups(&[CORE])
            .resources(&["pods/status"]),
        // Spreading pods of one workload.
        allow(READ)
            .groups(&[CORE])
            .resources(&["replicationcontrollers", "services"]),
        allow(READ)
            .groups(&[APPS, EXTENSIONS])
            .resources(&["replicasets"]),
        allow(READ).groups(&[APPS]).resources(&["statefulsets"]),
        allow(READ)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets"]),
        allow(READ)
            .groups(&[CORE])
            .resources(&["persistentvolumeclaims", "persistentvolumes"]),
        // Delegated authentication and authorization of its own HTTPS endpoint.
        allow(&["create"])
            .groups(&[AUTHN])
            .resources(&["tokenreviews"]),
        allow(&["create"])
            .groups(&[AUTHZ])
            .resources(&["subjectaccessreviews"]),
        allow(READ).groups(&[STORAGE]).resources(&["csinodes"]),
        allow(READ).groups(&[CORE]).resources(&["namespaces"]),
        allow(READ).groups(&[STORAGE]).resources(&["csidrivers"]),
        allow(READ)
            .groups(&[STORAGE])
            .resources(&["csistoragecapacities"]),
    ]
}

/// Rules of `system:kube-controller-manager`: enough to start and to mint the per-controller
/// service account credentials; the controllers themselves run with the `system:controller:*`
/// roles.
fn controller_manager_rules() -> Vec<PolicyRule> {
    vec![
        events_rule(),
        allow(&["create"])
            .groups(&[COORDINATION])
            .resources(&["leases"]),
        allow(&["get", "update"])
            .groups(&[COORDINATION])
            .resources(&["leases"])
            .names(&["kube-controller-manager"]),
        allow(&["create"])
            .groups(&[CORE])
            .resources(&["secrets", "serviceaccounts"]),
        allow(&["delete"]).groups(&[CORE]).resources(&["secrets"]),
        allow(&["get"]).groups(&[CORE]).resources(&[
            "configmaps",
            "namespaces",
            "secrets",
            "serviceaccounts",
        ]),
        allow(&["update"])
            .groups(&[CORE])
            .resources(&["secrets", "serviceaccounts"]),
        allow(&["create"])
            .groups(&[AUTHN])
            .resources(&["tokenreviews"]),
        allow(&["create"])
            .groups(&[AUTHZ])
            .resources(&["subjectaccessreviews"]),
        // The shared informers watch everything.
        allow(&["list", "watch"]).groups(&["*"]).resources(&["*"]),
        allow(&["create"])
            .groups(&[CORE])
            .resources(&["serviceaccounts/token"]),
    ]
}

/// An approver role for one certificate signer.
fn signer_approver(name: &str, signer: &str) -> ClusterRole {
    cluster_role(
        name,
        vec![
            allow(&["approve"])
                .groups(&[CERTIFICATES])
                .resources(&["signers"])
                .names(&[signer]),
        ],
    )
}

/// The cluster roles every Skiff cluster has (upstream's `ClusterRoles()` together with the
/// controller roles of `ControllerRoles()`).
pub fn cluster_roles() -> Vec<ClusterRole> {
    let mut roles = vec![
        // Anything at all.
        cluster_role(
            "cluster-admin",
            vec![
                allow(&["*"]).groups(&["*"]).resources(&["*"]),
                allow(&["*"]).urls(&["*"]),
            ],
        ),
        // Enough to see whether the server is up and which APIs it serves.
        cluster_role(
            "system:discovery",
            vec![allow(&["get"]).urls(&[
                "/livez",
                "/readyz",
                "/healthz",
                "/version",
                "/version/",
                "/openapi",
                "/openapi/*",
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
            ])],
        ),
        // Health checks (including the individual, more revealing ones) and metrics.
        cluster_role(
            "system:monitoring",
            vec![allow(&["get"]).urls(&[
                "/metrics",
                "/metrics/slis",
                "/livez",
                "/readyz",
                "/healthz",
                "/livez/*",
                "/readyz/*",
                "/healthz/*",
            ])],
        ),
        // What any signed-in user may learn about themselves.
        cluster_role(
            "system:basic-user",
            vec![
                allow(&["create"])
                    .groups(&[AUTHZ])
                    .resources(&["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                allow(&["create"])
                    .groups(&[AUTHN])
                    .resources(&["selfsubjectreviews"]),
            ],
        ),
        // Information safe to give to anyone, signed in or not.
        cluster_role(
            "system:public-info-viewer",
            vec![allow(&["get"]).urls(&["/livez", "/readyz", "/healthz", "/version", "/version/"])],
        ),
        // The user-facing roles, built by aggregation so that extensions can add to them:
        // admin includes edit, which includes view.
        aggregated_cluster_role("admin", &[], "admin"),
        aggregated_cluster_role("edit", &[(&aggregate_to("admin"), "true")], "edit"),
        aggregated_cluster_role("view", &[(&aggregate_to("edit"), "true")], "view"),
        labelled_cluster_role(
            "system:aggregate-to-admin",
            &[(&aggregate_to("admin"), "true")],
            vec![
                allow(&["create"])
                    .groups(&[AUTHZ])
                    .resources(&["localsubjectaccessreviews"]),
                allow(READ_WRITE)
                    .groups(&[RBAC_GROUP])
                    .resources(&["roles", "rolebindings"]),
            ],
        ),
        labelled_cluster_role(
            "system:aggregate-to-edit",
            &[(&aggregate_to("edit"), "true")],
            aggregate_to_edit_rules(),
        ),
        labelled_cluster_role(
            "system:aggregate-to-view",
            &[(&aggregate_to("view"), "true")],
            aggregate_to_view_rules(),
        ),
        cluster_role(
            "system:heapster",
            vec![
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["events", "pods", "nodes", "namespaces"]),
                allow(READ)
                    .groups(&[EXTENSIONS])
                    .resources(&["deployments"]),
            ],
        ),
        cluster_role("system:node", node_rules()),
        cluster_role(
            "system:node-problem-detector",
            vec![
                allow(&["get"]).groups(&[CORE]).resources(&["nodes"]),
                allow(&["patch"])
                    .groups(&[CORE])
                    .resources(&["nodes/status"]),
                events_rule(),
            ],
        ),
        cluster_role(
            "system:kubelet-api-admin",
            vec![
                // Finding the kubelet's address and port.
                allow(READ).groups(&[CORE]).resources(&["nodes"]),
                // The apiserver's proxy to the kubelet, and the kubelet API itself.
                allow(&["proxy"]).groups(&[CORE]).resources(&["nodes"]),
                allow(&["*"]).groups(&[CORE]).resources(&[
                    "nodes/proxy",
                    "nodes/metrics",
                    "nodes/stats",
                    "nodes/log",
                ]),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            vec![
                allow(&["create", "get", "list", "watch"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests"]),
            ],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                allow(&["create"])
                    .groups(&[AUTHN])
                    .resources(&["tokenreviews"]),
                allow(&["create"])
                    .groups(&[AUTHZ])
                    .resources(&["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:kube-aggregator",
            vec![
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["services", "endpoints"]),
            ],
        ),
        cluster_role("system:kube-controller-manager", controller_manager_rules()),
        cluster_role(
            "system:kube-dns",
            vec![
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["endpoints", "services"]),
            ],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            vec![
                allow(&["get", "list", "watch", "create", "delete"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumes"]),
                // update lets the provisioner set the claim's annotations
                allow(&["get", "list", "watch", "update"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                allow(READ)
                    .groups(&[STORAGE])
                    .resources(&["storageclasses"]),
                // watching events tells a provisioner about claims that need it
                allow(&["watch"]).groups(&[CORE]).resources(&["events"]),
                events_rule(),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![
                allow(&["create"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests/nodeclient"]),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![
                allow(&["create"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests/selfnodeclient"]),
            ],
        ),
        signer_approver(
            "system:certificates.k8s.io:kubelet-serving-approver",
            "kubernetes.io/kubelet-serving",
        ),
        signer_approver(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        signer_approver(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        signer_approver(
            "system:certificates.k8s.io:legacy-unknown-approver",
            "kubernetes.io/legacy-unknown",
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![allow(&["get"]).urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"])],
        ),
        cluster_role("system:kube-scheduler", scheduler_rules()),
        cluster_role(
            "system:volume-scheduler",
            vec![
                allow(READ_UPDATE)
                    .groups(&[CORE])
                    .resources(&["persistentvolumes"]),
                allow(READ)
                    .groups(&[STORAGE])
                    .resources(&["storageclasses"]),
                allow(READ_UPDATE)
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["services", "endpoints"]),
                allow(READ).groups(&[CORE]).resources(&["nodes"]),
                events_rule(),
                allow(&["list", "watch"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"]),
            ],
        ),
    ];
    roles.extend(
        controller_roles()
            .into_iter()
            .map(|(name, rules)| cluster_role(&format!("{CONTROLLER_PREFIX}{name}"), rules)),
    );
    roles
}

/// The controllers of kube-controller-manager that get their own role, by the name of their
/// service account, with their rules.
fn controller_roles() -> Vec<(&'static str, Vec<PolicyRule>)> {
    vec![
        (
            "attachdetach-controller",
            vec![
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumes", "persistentvolumeclaims"]),
                allow(READ).groups(&[CORE]).resources(&["nodes"]),
                allow(&["patch", "update"])
                    .groups(&[CORE])
                    .resources(&["nodes/status"]),
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                events_rule(),
                allow(&["get", "create", "delete", "list", "watch"])
                    .groups(&[STORAGE])
                    .resources(&["volumeattachments"]),
                allow(READ).groups(&[STORAGE]).resources(&["csidrivers"]),
                allow(READ).groups(&[STORAGE]).resources(&["csinodes"]),
            ],
        ),
        (
            "clusterrole-aggregation-controller",
            // escalate: it writes rules it does not itself hold.
            vec![
                allow(&["escalate", "get", "list", "watch", "update", "patch"])
                    .groups(&[RBAC_GROUP])
                    .resources(&["clusterroles"]),
            ],
        ),
        (
            "cronjob-controller",
            vec![
                allow(&["get", "list", "watch", "update"])
                    .groups(&[BATCH])
                    .resources(&["cronjobs"]),
                allow(&[
                    "get", "list", "watch", "create", "update", "delete", "patch",
                ])
                .groups(&[BATCH])
                .resources(&["jobs"]),
                allow(&["update"])
                    .groups(&[BATCH])
                    .resources(&["cronjobs/status"]),
                allow(&["update"])
                    .groups(&[BATCH])
                    .resources(&["cronjobs/finalizers"]),
                allow(&["list", "watch", "delete"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                events_rule(),
            ],
        ),
        (
            "daemon-set-controller",
            vec![
                allow(READ)
                    .groups(&[EXTENSIONS, APPS])
                    .resources(&["daemonsets"]),
                allow(&["update"])
                    .groups(&[EXTENSIONS, APPS])
                    .resources(&["daemonsets/status"]),
                allow(&["update"])
                    .groups(&[EXTENSIONS, APPS])
                    .resources(&["daemonsets/finalizers"]),
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["nodes"]),
                allow(&["list", "watch", "create", "delete", "patch"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                allow(&["create"])
                    .groups(&[CORE])
                    .resources(&["pods/binding"]),
                allow(&[
                    "get", "list", "watch", "create", "delete", "update", "patch",
                ])
                .groups(&[APPS])
                .resources(&["controllerrevisions"]),
                events_rule(),
            ],
        ),
        (
            "deployment-controller",
            vec![
                allow(&["get", "list", "watch", "update"])
                    .groups(&[EXTENSIONS, APPS])
                    .resources(&["deployments"]),
                allow(&["update"])
                    .groups(&[EXTENSIONS, APPS])
                    .resources(&["deployments/status"]),
                allow(&["update"])
                    .groups(&[EXTENSIONS, APPS])
                    .resources(&["deployments/finalizers"]),
                allow(&[
                    "get", "list", "watch", "create", "update", "patch", "delete",
                ])
                .groups(&[APPS, EXTENSIONS])
                .resources(&["replicasets"]),
                // Pods are read to tell whether old ones are gone, and updated to adopt or
                // release them.
                allow(&["get", "list", "watch", "update"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                events_rule(),
            ],
        ),
        (
            "disruption-controller",
            vec![
                allow(READ)
                    .groups(&[EXTENSIONS, APPS])
                    .resources(&["deployments"]),
                allow(READ)
                    .groups(&[APPS, EXTENSIONS])
                    .resources(&["replicasets"]),
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["replicationcontrollers"]),
                allow(READ)
                    .groups(&[POLICY])
                    .resources(&["poddisruptionbudgets"]),
                allow(READ).groups(&[APPS]).resources(&["statefulsets"]),
                allow(&["update"])
                    .groups(&[POLICY])
                    .resources(&["poddisruptionbudgets/status"]),
                allow(&["patch", "update"])
                    .groups(&[CORE])
                    .resources(&["pods/status"]),
                // The scale of any workload kind, built in or custom.
                allow(&["get"]).groups(&["*"]).resources(&["*/scale"]),
                events_rule(),
            ],
        ),
        (
            "endpoint-controller",
            vec![
                allow(READ).groups(&[CORE]).resources(&["services", "pods"]),
                allow(&["get", "list", "watch", "create", "update", "delete"])
                    .groups(&[CORE])
                    .resources(&["endpoints"]),
                // Endpoints pointing at addresses that ordinary users may not use.
                allow(&["create"])
                    .groups(&[CORE])
                    .resources(&["endpoints/restricted"]),
                events_rule(),
            ],
        ),
        (
            "endpointslice-controller",
            vec![
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["services", "pods", "nodes"]),
                // Owner references that block deletion need finalizer access to the owner.
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["services/finalizers"]),
                allow(&["get", "list", "watch", "create", "update", "delete"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"]),
                events_rule(),
            ],
        ),
        (
            "endpointslicemirroring-controller",
            vec![
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["services", "endpoints"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["services/finalizers"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["endpoints/finalizers"]),
                allow(&["get", "list", "watch", "create", "update", "delete"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"]),
                events_rule(),
            ],
        ),
        (
            "ephemeral-volume-controller",
            vec![
                allow(READ).groups(&[CORE]).resources(&["pods"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["pods/finalizers"]),
                allow(&["get", "list", "watch", "create"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                events_rule(),
            ],
        ),
        (
            "expand-controller",
            vec![
                allow(&["get", "list", "watch", "update", "patch"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumes"]),
                allow(&["update", "patch"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims/status"]),
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                events_rule(),
            ],
        ),
        (
            "generic-garbage-collector",
            // It must be able to read and delete (and patch owner references of) anything.
            vec![
                allow(&["get", "list", "watch", "patch", "update", "delete"])
                    .groups(&["*"])
                    .resources(&["*"]),
                events_rule(),
            ],
        ),
        (
            "horizontal-pod-autoscaler",
            vec![
                allow(READ)
                    .groups(&[AUTOSCALING])
                    .resources(&["horizontalpodautoscalers"]),
                allow(&["update"])
                    .groups(&[AUTOSCALING])
                    .resources(&["horizontalpodautoscalers/status"]),
                allow(&["get", "update"])
                    .groups(&["*"])
                    .resources(&["*/scale"]),
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                // Resource metrics for pods, and any custom or external metric.
                allow(&["list", "watch"])
                    .groups(&["metrics.k8s.io"])
                    .resources(&["pods"]),
                allow(READ)
                    .groups(&["custom.metrics.k8s.io"])
                    .resources(&["*"]),
                allow(READ)
                    .groups(&["external.metrics.k8s.io"])
                    .resources(&["*"]),
                events_rule(),
            ],
        ),
        (
            "job-controller",
            vec![
                allow(&["get", "list", "watch", "update", "patch"])
                    .groups(&[BATCH])
                    .resources(&["jobs"]),
                allow(&["update"])
                    .groups(&[BATCH])
                    .resources(&["jobs/status"]),
                allow(&["update"])
                    .groups(&[BATCH])
                    .resources(&["jobs/finalizers"]),
                allow(&["list", "watch", "create", "delete", "patch"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                events_rule(),
            ],
        ),
        (
            "namespace-controller",
            vec![
                allow(&["get", "list", "watch", "delete"])
                    .groups(&[CORE])
                    .resources(&["namespaces"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["namespaces/finalize", "namespaces/status"]),
                // Emptying a namespace means deleting whatever is in it.
                allow(&["get", "list", "watch", "delete", "deletecollection"])
                    .groups(&["*"])
                    .resources(&["*"]),
            ],
        ),
        (
            "node-controller",
            vec![
                allow(&["get", "list", "watch", "update", "delete", "patch"])
                    .groups(&[CORE])
                    .resources(&["nodes"]),
                allow(&["patch", "update"])
                    .groups(&[CORE])
                    .resources(&["nodes/status"]),
                // Marking pods of unreachable nodes not ready, and evicting them.
                allow(&["update", "patch"])
                    .groups(&[CORE])
                    .resources(&["pods/status"]),
                allow(&["list", "watch", "delete", "get"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                events_rule(),
            ],
        ),
        (
            "persistent-volume-binder",
            vec![
                allow(&["get", "list", "watch", "update", "create", "delete"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumes"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumes/status"]),
                allow(&["get", "list", "watch", "update"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims/status"]),
                // Recycler pods.
                allow(&["list", "watch", "get", "create", "delete"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                allow(READ)
                    .groups(&[STORAGE])
                    .resources(&["storageclasses"]),
                // Skiff's addition: the binder creates the default `local-path` class when
                // absent, as k3s ships one.
                allow(&["create"])
                    .groups(&[STORAGE])
                    .resources(&["storageclasses"]),
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["nodes"]),
                events_rule(),
                // Watching events of the recycler pods.
                allow(&["watch"]).groups(&[CORE]).resources(&["events"]),
            ],
        ),
        (
            "pod-garbage-collector",
            vec![
                allow(&["list", "watch", "delete"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                allow(READ).groups(&[CORE]).resources(&["nodes"]),
                allow(&["patch"])
                    .groups(&[CORE])
                    .resources(&["pods/status"]),
            ],
        ),
        (
            "pv-protection-controller",
            vec![
                allow(&["get", "list", "watch", "update"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumes"]),
                events_rule(),
            ],
        ),
        (
            "pvc-protection-controller",
            vec![
                allow(&["get", "list", "watch", "update"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims/status"]),
                allow(READ).groups(&[CORE]).resources(&["pods"]),
                events_rule(),
            ],
        ),
        (
            "replicaset-controller",
            vec![
                allow(&["get", "list", "watch", "update"])
                    .groups(&[APPS, EXTENSIONS])
                    .resources(&["replicasets"]),
                allow(&["update"])
                    .groups(&[APPS, EXTENSIONS])
                    .resources(&["replicasets/status"]),
                allow(&["update"])
                    .groups(&[APPS, EXTENSIONS])
                    .resources(&["replicasets/finalizers"]),
                allow(&["list", "watch", "patch", "create", "delete"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                events_rule(),
            ],
        ),
        (
            "replication-controller",
            vec![
                allow(&["get", "list", "watch", "update"])
                    .groups(&[CORE])
                    .resources(&["replicationcontrollers"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["replicationcontrollers/status"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["replicationcontrollers/finalizers"]),
                allow(&["list", "watch", "patch", "create", "delete"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                events_rule(),
            ],
        ),
        (
            "resourcequota-controller",
            vec![
                // Quota counts objects of every kind.
                allow(&["list", "watch"]).groups(&["*"]).resources(&["*"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["resourcequotas/status"]),
                events_rule(),
            ],
        ),
        (
            "root-ca-cert-publisher",
            vec![
                allow(&["create", "update"])
                    .groups(&[CORE])
                    .resources(&["configmaps"]),
                events_rule(),
            ],
        ),
        (
            "route-controller",
            vec![
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["nodes"]),
                allow(&["patch"])
                    .groups(&[CORE])
                    .resources(&["nodes/status"]),
                events_rule(),
            ],
        ),
        (
            "selinux-warning-controller",
            vec![
                events_rule(),
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["persistentvolumes"]),
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                allow(READ).groups(&[CORE]).resources(&["pods"]),
                allow(READ).groups(&[STORAGE]).resources(&["csidrivers"]),
            ],
        ),
        (
            "service-account-controller",
            vec![
                allow(&["create"])
                    .groups(&[CORE])
                    .resources(&["serviceaccounts"]),
                events_rule(),
            ],
        ),
        (
            "service-cidrs-controller",
            vec![
                allow(&["get", "list", "watch", "patch", "update"])
                    .groups(&[NETWORKING])
                    .resources(&["servicecidrs"]),
                allow(&["patch", "update"])
                    .groups(&[NETWORKING])
                    .resources(&["servicecidrs/finalizers"]),
                allow(&["patch", "update"])
                    .groups(&[NETWORKING])
                    .resources(&["servicecidrs/status"]),
                allow(READ)
                    .groups(&[NETWORKING])
                    .resources(&["ipaddresses"]),
                events_rule(),
            ],
        ),
        (
            "service-controller",
            vec![
                allow(READ).groups(&[CORE]).resources(&["services"]),
                allow(&["patch", "update"])
                    .groups(&[CORE])
                    .resources(&["services/status"]),
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["nodes"]),
                events_rule(),
            ],
        ),
        (
            "statefulset-controller",
            vec![
                allow(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                allow(READ).groups(&[APPS]).resources(&["statefulsets"]),
                allow(&["update"])
                    .groups(&[APPS])
                    .resources(&["statefulsets/status"]),
                allow(&["update"])
                    .groups(&[APPS])
                    .resources(&["statefulsets/finalizers"]),
                allow(&["get", "create", "delete", "update", "patch"])
                    .groups(&[CORE])
                    .resources(&["pods"]),
                allow(&[
                    "get", "create", "delete", "update", "patch", "list", "watch",
                ])
                .groups(&[APPS])
                .resources(&["controllerrevisions"]),
                allow(&["get", "create", "list", "watch"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                // Retention policies delete claims, and adopt them by updating owner references.
                allow(&["update", "delete"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["pods/finalizers"]),
                events_rule(),
            ],
        ),
        (
            "ttl-after-finished-controller",
            vec![
                allow(&["get", "list", "watch", "delete"])
                    .groups(&[BATCH])
                    .resources(&["jobs"]),
                events_rule(),
            ],
        ),
        (
            "ttl-controller",
            vec![
                allow(&["update", "patch", "list", "watch"])
                    .groups(&[CORE])
                    .resources(&["nodes"]),
                events_rule(),
            ],
        ),
        (
            "certificate-controller",
            vec![
                allow(&["get", "list", "watch", "delete"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests"]),
                allow(&["update"]).groups(&[CERTIFICATES]).resources(&[
                    "certificatesigningrequests/status",
                    "certificatesigningrequests/approval",
                ]),
                // It auto-approves kubelet client certificates and signs for the built-in
                // signers. Skiff's approver also approves kubelet serving certificates and
                // skiff-proxy's client certificate (upstream leaves both to an external
                // approver), so it may approve for those signers too.
                allow(&["approve"])
                    .groups(&[CERTIFICATES])
                    .resources(&["signers"])
                    .names(&[
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                        "kubernetes.io/kube-apiserver-client",
                    ]),
                allow(&["sign"])
                    .groups(&[CERTIFICATES])
                    .resources(&["signers"])
                    .names(&[
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                        "kubernetes.io/legacy-unknown",
                    ]),
                allow(&["create"])
                    .groups(&[AUTHZ])
                    .resources(&["subjectaccessreviews"]),
                events_rule(),
            ],
        ),
        (
            "legacy-service-account-token-cleaner",
            vec![
                allow(&["get"])
                    .groups(&[CORE])
                    .resources(&["configmaps"])
                    .names(&["kube-apiserver-legacy-service-account-token-tracking"]),
                allow(&["delete", "patch"])
                    .groups(&[CORE])
                    .resources(&["secrets"]),
            ],
        ),
        (
            "validatingadmissionpolicy-status-controller",
            vec![
                allow(READ)
                    .groups(&[ADMISSION])
                    .resources(&["validatingadmissionpolicies"]),
                allow(&["get", "patch", "update"])
                    .groups(&[ADMISSION])
                    .resources(&["validatingadmissionpolicies/status"]),
                events_rule(),
            ],
        ),
    ]
}

/// The cluster role bindings every Skiff cluster has.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let mut bindings = vec![
        cluster_binding("cluster-admin", vec![group("system:masters")]),
        cluster_binding("system:monitoring", vec![group("system:monitoring")]),
        cluster_binding("system:discovery", vec![group("system:authenticated")]),
        cluster_binding("system:basic-user", vec![group("system:authenticated")]),
        cluster_binding(
            "system:public-info-viewer",
            vec![
                group("system:authenticated"),
                group("system:unauthenticated"),
            ],
        ),
        cluster_binding("system:node-proxier", vec![user("system:kube-proxy")]),
        // skiff-proxy renews its own client certificate (Kubernetes' kube-proxy does not):
        // it may create and watch CertificateSigningRequests as a bootstrapping node may.
        ClusterRoleBinding {
            metadata: bootstrap_meta("skiff:kube-proxy-certificate-rotation", None, &[]),
            ..cluster_binding("system:node-bootstrapper", vec![user("system:kube-proxy")])
        },
        cluster_binding(
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        cluster_binding(
            "system:kube-dns",
            vec![service_account(KUBE_SYSTEM, "kube-dns")],
        ),
        cluster_binding("system:kube-scheduler", vec![user("system:kube-scheduler")]),
        cluster_binding(
            "system:volume-scheduler",
            vec![user("system:kube-scheduler")],
        ),
        // Kept without subjects: the Node authorizer grants nodes what this role would, limited
        // to their own pods' objects, and binding the group here would undo that limit.
        cluster_binding("system:node", vec![]),
        cluster_binding(
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
    ];
    bindings.extend(controller_roles().into_iter().map(|(name, _)| {
        cluster_binding(
            &format!("{CONTROLLER_PREFIX}{name}"),
            vec![service_account(KUBE_SYSTEM, name)],
        )
    }));
    bindings
}

/// The roles bootstrapped into `kube-system` and `kube-public`.
pub fn namespaced_roles() -> Vec<Role> {
    // Leader election of the control-plane programs, in the namespace that holds their leases.
    let leader_locking = || {
        vec![
            allow(&["get", "list", "watch", "create", "update"])
                .groups(&[COORDINATION])
                .resources(&["leases"]),
            allow(&["get", "list", "watch", "create", "update"])
                .groups(&[COORDINATION])
                .resources(&["leasecandidates"]),
        ]
    };
    vec![
        // The config map that tells extension apiservers how to authenticate their callers.
        namespaced_role(
            KUBE_SYSTEM,
            "extension-apiserver-authentication-reader",
            vec![
                allow(READ)
                    .groups(&[CORE])
                    .resources(&["configmaps"])
                    .names(&["extension-apiserver-authentication"]),
            ],
        ),
        namespaced_role(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            leader_locking(),
        ),
        namespaced_role(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            leader_locking(),
        ),
        // The bootstrap signer reads bootstrap token secrets here and signs the cluster-info
        // config map in kube-public with them.
        namespaced_role(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            vec![allow(READ).groups(&[CORE]).resources(&["secrets"])],
        ),
        // Kept for compatibility; upstream marks it deprecated since 1.10.
        namespaced_role(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            vec![
                allow(&["create", "get", "list", "watch"])
                    .groups(&[CORE])
                    .resources(&["configmaps"]),
            ],
        ),
        // Deletes expired bootstrap tokens, which live only in kube-system.
        namespaced_role(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            vec![
                allow(&["get", "list", "watch", "delete"])
                    .groups(&[CORE])
                    .resources(&["secrets"]),
                events_rule(),
            ],
        ),
        namespaced_role(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            vec![
                allow(READ).groups(&[CORE]).resources(&["configmaps"]),
                allow(&["update"])
                    .groups(&[CORE])
                    .resources(&["configmaps"])
                    .names(&["cluster-info"]),
                events_rule(),
            ],
        ),
    ]
}

/// The role bindings bootstrapped into `kube-system` and `kube-public`.
pub fn namespaced_role_bindings() -> Vec<RoleBinding> {
    vec![
        namespaced_binding(
            KUBE_SYSTEM,
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            vec![
                user("system:kube-controller-manager"),
                user("system:kube-scheduler"),
            ],
        ),
        namespaced_binding(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            vec![
                user("system:kube-controller-manager"),
                service_account(KUBE_SYSTEM, "kube-controller-manager"),
                service_account(KUBE_SYSTEM, "leader-election-controller"),
            ],
        ),
        namespaced_binding(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            vec![
                user("system:kube-scheduler"),
                service_account(KUBE_SYSTEM, "kube-scheduler"),
            ],
        ),
        namespaced_binding(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            vec![service_account(KUBE_SYSTEM, "bootstrap-signer")],
        ),
        namespaced_binding(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            vec![service_account(KUBE_SYSTEM, "cloud-provider")],
        ),
        namespaced_binding(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            vec![service_account(KUBE_SYSTEM, "token-cleaner")],
        ),
        namespaced_binding(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            vec![service_account(KUBE_SYSTEM, "bootstrap-signer")],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::coverage::*;
    use crate::rbac::reconcile::*;

    // -- helpers --------------------------------------------------------------------------------

    fn find_cluster_role(name: &str) -> ClusterRole {
        cluster_roles()
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no cluster role {name}"))
    }

    fn find_binding(name: &str) -> ClusterRoleBinding {
        cluster_role_bindings()
            .into_iter()
            .find(|b| b.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no cluster role binding {name}"))
    }

    /// The rules a cluster role grants once the aggregation controller has filled it: its own
    /// rules, or those of every role its selectors match (recursively, as aggregated roles are
    /// themselves labelled into larger ones).
    fn effective_rules(name: &str) -> Vec<PolicyRule> {
        let role = find_cluster_role(name);
        let Some(aggregation) = &role.aggregation_rule else {
            return role.rules.unwrap_or_default();
        };
        let mut rules = Vec::new();
        for selector in selectors(Some(aggregation)) {
            let wanted = selector.match_labels.clone().unwrap_or_default();
            for other in cluster_roles() {
                let labels = other.metadata.labels.clone().unwrap_or_default();
                if wanted.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                    rules.extend(effective_rules(other.metadata.name.as_deref().unwrap()));
                }
            }
        }
        rules
    }

    /// Whether `rules` allow `verb` on `group`/`resource` (a `res/sub` path for subresources),
    /// optionally for one object name.
    fn allows(
        rules: &[PolicyRule],
        verb: &str,
        group: &str,
        resource: &str,
        name: Option<&str>,
    ) -> bool {
        let mut request = allow(&[verb]).groups(&[group]).resources(&[resource]);
        if let Some(name) = name {
            request = request.names(&[name]);
        }
        covers(rules, &[request]).is_empty()
    }

    fn allows_url(rules: &[PolicyRule], verb: &str, url: &str) -> bool {
        covers(rules, &[allow(&[verb]).urls(&[url])]).is_empty()
    }

    fn all_metadata() -> Vec<ObjectMeta> {
        let mut all: Vec<ObjectMeta> = cluster_roles().into_iter().map(|o| o.metadata).collect();
        all.extend(cluster_role_bindings().into_iter().map(|o| o.metadata));
        all.extend(namespaced_roles().into_iter().map(|o| o.metadata));
        all.extend(namespaced_role_bindings().into_iter().map(|o| o.metadata));
        all
    }

    // -- the policy -----------------------------------------------------------------------------

    #[test]
    fn every_object_carries_the_bootstrapping_label_and_autoupdate_annotation() {
        for meta in all_metadata() {
            let labels = meta.labels.clone().unwrap_or_default();
            let annotations = meta.annotations.clone().unwrap_or_default();
            assert_eq!(
                labels.get(BOOTSTRAPPING_LABEL).map(String::as_str),
                Some("rbac-defaults"),
                "{meta:?}"
            );
            assert_eq!(
                annotations.get(AUTOUPDATE_ANNOTATION).map(String::as_str),
                Some("true"),
                "{meta:?}"
            );
        }
    }

    #[test]
    fn names_are_unique_and_namespaced_objects_have_a_kube_namespace() {
        let mut seen = std::collections::BTreeSet::new();
        for r in cluster_roles() {
            assert!(
                seen.insert(("ClusterRole", None, r.metadata.name.clone())),
                "{r:?}"
            );
        }
        for b in cluster_role_bindings() {
            assert!(
                seen.insert(("ClusterRoleBinding", None, b.metadata.name.clone())),
                "{b:?}"
            );
        }
        for r in namespaced_roles() {
            let ns = r.metadata.namespace.clone();
            assert!(matches!(ns.as_deref(), Some("kube-system" | "kube-public")));
            assert!(seen.insert(("Role", ns, r.metadata.name.clone())), "{r:?}");
        }
        for b in namespaced_role_bindings() {
            let ns = b.metadata.namespace.clone();
            assert!(matches!(ns.as_deref(), Some("kube-system" | "kube-public")));
            assert!(
                seen.insert(("RoleBinding", ns, b.metadata.name.clone())),
                "{b:?}"
            );
        }
    }

    #[test]
    fn every_binding_refers_to_a_bootstrapped_role() {
        let cluster: Vec<String> = cluster_roles()
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect();
        for b in cluster_role_bindings() {
            assert_eq!(b.role_ref.api_group, RBAC_GROUP);
            assert_eq!(b.role_ref.kind, "ClusterRole");
            assert!(cluster.contains(&b.role_ref.name), "{b:?}");
        }
        let roles: Vec<(Option<String>, Option<String>)> = namespaced_roles()
            .into_iter()
            .map(|r| (r.metadata.namespace, r.metadata.name))
            .collect();
        for b in namespaced_role_bindings() {
            assert_eq!(b.role_ref.api_group, RBAC_GROUP);
            let found = match b.role_ref.kind.as_str() {
                "Role" => {
                    roles.contains(&(b.metadata.namespace.clone(), Some(b.role_ref.name.clone())))
                }
                "ClusterRole" => cluster.contains(&b.role_ref.name),
                _ => false,
            };
            assert!(found, "{b:?}");
        }
    }

    #[test]
    fn the_roles_kubernetes_clusters_have_are_all_there() {
        for name in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:aggregate-to-admin",
            "system:aggregate-to-edit",
            "system:aggregate-to-view",
            "system:discovery",
            "system:basic-user",
            "system:public-info-viewer",
            "system:monitoring",
            "system:node",
            "system:node-proxier",
            "system:node-bootstrapper",
            "system:kube-scheduler",
            "system:volume-scheduler",
            "system:kube-controller-manager",
            "system:kube-dns",
            "system:auth-delegator",
            "system:heapster",
            "system:kubelet-api-admin",
            "system:service-account-issuer-discovery",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:certificates.k8s.io:kubelet-serving-approver",
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "system:certificates.k8s.io:legacy-unknown-approver",
        ] {
            find_cluster_role(name);
        }
        for controller in [
            "attachdetach-controller",
            "clusterrole-aggregation-controller",
            "cronjob-controller",
            "daemon-set-controller",
            "deployment-controller",
            "disruption-controller",
            "endpoint-controller",
            "endpointslice-controller",
            "endpointslicemirroring-controller",
            "ephemeral-volume-controller",
            "expand-controller",
            "generic-garbage-collector",
            "horizontal-pod-autoscaler",
            "job-controller",
            "namespace-controller",
            "node-controller",
            "persistent-volume-binder",
            "pod-garbage-collector",
            "pv-protection-controller",
            "pvc-protection-controller",
            "replicaset-controller",
            "replication-controller",
            "resourcequota-controller",
            "root-ca-cert-publisher",
            "route-controller",
            "service-account-controller",
            "service-controller",
            "statefulset-controller",
            "ttl-after-finished-controller",
            "ttl-controller",
            "certificate-controller",
            "legacy-service-account-token-cleaner",
            "validatingadmissionpolicy-status-controller",
        ] {
            let name = format!("system:controller:{controller}");
            find_cluster_role(&name);
            let binding = find_binding(&name);
            assert_eq!(binding.role_ref.name, name);
            assert_eq!(
                binding.subjects,
                Some(vec![Subject {
                    api_group: None,
                    kind: "ServiceAccount".into(),
                    name: controller.into(),
                    namespace: Some("kube-system".into()),
                }])
            );
        }
    }

    #[test]
    fn cluster_role_bindings_bind_the_upstream_subjects() {
        let subjects = |name: &str| find_binding(name).subjects.unwrap_or_default();
        assert_eq!(subjects("cluster-admin"), vec![group("system:masters")]);
        assert_eq!(
            subjects("system:discovery"),
            vec![group("system:authenticated")]
        );
        assert_eq!(
            subjects("system:basic-user"),
            vec![group("system:authenticated")]
        );
        assert_eq!(
            subjects("system:public-info-viewer"),
            vec![
                group("system:authenticated"),
                group("system:unauthenticated")
            ]
        );
        assert_eq!(
            subjects("system:node-proxier"),
            vec![user("system:kube-proxy")]
        );
        assert_eq!(
            subjects("system:kube-scheduler"),
            vec![user("system:kube-scheduler")]
        );
        assert_eq!(
            subjects("system:volume-scheduler"),
            vec![user("system:kube-scheduler")]
        );
        assert_eq!(
            subjects("system:kube-dns"),
            vec![service_account("kube-system", "kube-dns")]
        );
        assert_eq!(
            subjects("system:monitoring"),
            vec![group("system:monitoring")]
        );
        assert_eq!(
            subjects("system:service-account-issuer-discovery"),
            vec![group("system:serviceaccounts")]
        );
        // Nodes get their access from the Node authorizer, not from this binding.
        assert_eq!(find_binding("system:node").subjects, None);
    }

    #[test]
    fn user_facing_roles_are_aggregated_and_serialize_as_upstream() {
        for (name, target) in [("admin", "admin"), ("edit", "edit"), ("view", "view")] {
            let role = find_cluster_role(name);
            assert_eq!(role.rules, None, "{name}");
            let json = serde_json::to_value(&role).unwrap();
            assert_eq!(
                json["aggregationRule"],
                serde_json::json!({"clusterRoleSelectors": [
                    {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{target}"): "true"}}
                ]}),
                "{name}"
            );
            assert!(json.get("rules").is_none(), "{name}");
        }
        // view is part of edit, which is part of admin.
        let label = |role: &str, key: &str| {
            find_cluster_role(role)
                .metadata
                .labels
                .unwrap()
                .get(key)
                .cloned()
        };
        assert_eq!(
            label("view", &aggregate_to("edit")).as_deref(),
            Some("true")
        );
        assert_eq!(
            label("edit", &aggregate_to("admin")).as_deref(),
            Some("true")
        );
        assert_eq!(label("admin", &aggregate_to("admin")), None);
        for target in ["admin", "edit", "view"] {
            let name = format!("system:aggregate-to-{target}");
            assert_eq!(label(&name, &aggregate_to(target)).as_deref(), Some("true"));
        }
    }

    #[test]
    fn view_reads_workloads_but_not_secrets() {
        let view = effective_rules("view");
        for verb in ["get", "list", "watch"] {
            assert!(allows(&view, verb, "", "pods", None), "{verb} pods");
            assert!(allows(&view, verb, "apps", "deployments", None));
            assert!(allows(&view, verb, "", "pods/log", None));
        }
        assert!(!allows(&view, "get", "", "secrets", None));
        assert!(!allows(&view, "create", "", "pods", None));
        assert!(!allows(&view, "create", "", "pods/exec", None));
        assert!(!allows(
            &view,
            "get",
            "rbac.authorization.k8s.io",
            "roles",
            None
        ));
        // No rule in view's contributor mentions secrets at all.
        let contributor = find_cluster_role("system:aggregate-to-view").rules.unwrap();
        assert!(
            contributor
                .iter()
                .all(|r| !list(&r.resources).contains(&"secrets".to_string()))
        );
    }

    #[test]
    fn edit_and_admin_build_on_view() {
        let edit = effective_rules("edit");
        assert!(allows(&edit, "get", "", "pods", None));
        assert!(allows(&edit, "get", "", "secrets", None));
        assert!(allows(&edit, "create", "", "pods/exec", None));
        assert!(allows(&edit, "delete", "apps", "deployments", None));
        assert!(!allows(&edit, "create", "", "endpoints", None));
        assert!(!allows(
            &edit,
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            None
        ));
        let admin = effective_rules("admin");
        assert!(allows(&admin, "get", "", "pods", None));
        assert!(allows(
            &admin,
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            None
        ));
        assert!(allows(
            &admin,
            "create",
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            None
        ));
        assert!(!allows(&admin, "create", "", "namespaces", None));
    }

    #[test]
    fn node_proxier_reads_services_and_endpointslices_and_writes_events() {
        let rules = find_cluster_role("system:node-proxier").rules.unwrap();
        for verb in ["list", "watch"] {
            assert!(allows(&rules, verb, "", "services", None));
            assert!(allows(&rules, verb, "", "endpoints", None));
            assert!(allows(
                &rules,
                verb,
                "discovery.k8s.io",
                "endpointslices",
                None
            ));
        }
        assert!(allows(&rules, "get", "", "nodes", None));
        assert!(allows(&rules, "create", "", "events", None));
        assert!(allows(&rules, "create", "events.k8s.io", "events", None));
        assert!(!allows(&rules, "get", "", "services", None));
        assert!(!allows(&rules, "get", "", "secrets", None));
    }

    #[test]
    fn kube_scheduler_binds_pods_and_holds_only_its_own_lease() {
        let rules = find_cluster_role("system:kube-scheduler").rules.unwrap();
        assert!(allows(&rules, "create", "", "pods/binding", None));
        assert!(allows(&rules, "create", "", "bindings", None));
        assert!(allows(&rules, "patch", "", "pods/status", None));
        assert!(allows(&rules, "watch", "", "nodes", None));
        assert!(allows(
            &rules,
            "create",
            "coordination.k8s.io",
            "leases",
            None
        ));
        assert!(allows(
            &rules,
            "update",
            "coordination.k8s.io",
            "leases",
            Some("kube-scheduler")
        ));
        assert!(!allows(
            &rules,
            "update",
            "coordination.k8s.io",
            "leases",
            Some("other")
        ));
        assert!(!allows(
            &rules,
            "update",
            "coordination.k8s.io",
            "leases",
            None
        ));
        assert!(!allows(&rules, "create", "", "pods", None));
    }

    #[test]
    fn non_resource_roles() {
        let discovery = find_cluster_role("system:discovery").rules.unwrap();
        assert!(allows_url(&discovery, "get", "/apis/apps/v1"));
        assert!(allows_url(&discovery, "get", "/version"));
        assert!(allows_url(&discovery, "get", "/openapi/v3"));
        assert!(!allows_url(&discovery, "get", "/metrics"));
        assert!(!allows_url(&discovery, "post", "/api"));
        let public = find_cluster_role("system:public-info-viewer")
            .rules
            .unwrap();
        assert!(allows_url(&public, "get", "/healthz"));
        assert!(!allows_url(&public, "get", "/healthz/etcd"));
        assert!(!allows_url(&public, "get", "/api"));
        let monitoring = find_cluster_role("system:monitoring").rules.unwrap();
        assert!(allows_url(&monitoring, "get", "/metrics"));
        assert!(allows_url(&monitoring, "get", "/readyz/etcd"));
        let admin = find_cluster_role("cluster-admin").rules.unwrap();
        assert!(allows_url(&admin, "post", "/anything/at/all"));
        assert!(allows(
            &admin,
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None
        ));
    }

    #[test]
    fn namespaced_policy_matches_upstream() {
        let roles = namespaced_roles();
        let signer_public = roles
            .iter()
            .find(|r| {
                r.metadata.namespace.as_deref() == Some("kube-public")
                    && r.metadata.name.as_deref() == Some("system:controller:bootstrap-signer")
            })
            .unwrap();
        let rules = signer_public.rules.clone().unwrap();
        assert!(allows(
            &rules,
            "update",
            "",
            "configmaps",
            Some("cluster-info")
        ));
        assert!(!allows(&rules, "update", "", "configmaps", Some("other")));
        let reader = roles
            .iter()
            .find(|r| {
                r.metadata.name.as_deref() == Some("extension-apiserver-authentication-reader")
            })
            .unwrap();
        assert_eq!(reader.metadata.namespace.as_deref(), Some("kube-system"));
        let rules = reader.rules.clone().unwrap();
        assert!(allows(
            &rules,
            "get",
            "",
            "configmaps",
            Some("extension-apiserver-authentication")
        ));
        assert!(!allows(&rules, "list", "", "configmaps", None));

        let binding = namespaced_role_bindings()
            .into_iter()
            .find(|b| {
                b.metadata.name.as_deref() == Some("system::leader-locking-kube-controller-manager")
            })
            .unwrap();
        assert_eq!(
            binding.subjects.unwrap(),
            vec![
                user("system:kube-controller-manager"),
                service_account("kube-system", "kube-controller-manager"),
                service_account("kube-system", "leader-election-controller"),
            ]
        );
    }

    #[test]
    fn rule_lists_are_sorted_as_upstream_writes_them() {
        let rules = find_cluster_role("system:aggregate-to-admin")
            .rules
            .unwrap();
        assert_eq!(
            rules[1].verbs,
            [
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch"
            ]
        );
        assert_eq!(
            rules[1].resources,
            Some(vec!["rolebindings".into(), "roles".into()])
        );
        let event = events_rule();
        assert_eq!(
            event.api_groups,
            Some(vec!["".into(), "events.k8s.io".into()])
        );
    }

    // -- covers ---------------------------------------------------------------------------------

    #[test]
    fn breakdown_yields_one_rule_per_combination() {
        let rule = allow(&["get", "list", "watch"])
            .groups(&["", "apps"])
            .resources(&["pods", "deployments"])
            .names(&["a", "b"]);
        let atoms = breakdown(&rule);
        assert_eq!(atoms.len(), 2 * 2 * 3 * 2);
        assert!(atoms.iter().all(|a| a.verbs.len() == 1
            && list(&a.api_groups).len() == 1
            && list(&a.resources).len() == 1
            && list(&a.resource_names).len() == 1));
        let urls = allow(&["get", "post"]).urls(&["/a", "/b/*"]);
        assert_eq!(breakdown(&urls).len(), 4);
        // A rule naming no resource names yields atoms without names.
        let unnamed = breakdown(&allow(&["get"]).groups(&[""]).resources(&["pods"]));
        assert_eq!(
            unnamed,
            vec![allow(&["get"]).groups(&[""]).resources(&["pods"])]
        );
    }

    #[test]
    fn covers_returns_the_uncovered_atomic_parts() {
        let owner = vec![allow(&["get"]).groups(&[""]).resources(&["pods"])];
        let requested = vec![
            allow(&["get", "list"])
                .groups(&[""])
                .resources(&["pods", "services"]),
        ];
        let uncovered = covers(&owner, &requested);
        assert_eq!(
            uncovered,
            vec![
                allow(&["list"]).groups(&[""]).resources(&["pods"]),
                allow(&["get"]).groups(&[""]).resources(&["services"]),
                allow(&["list"]).groups(&[""]).resources(&["services"]),
            ]
        );
        assert!(covers(&owner, &owner).is_empty());
        assert!(covers(&owner, &[]).is_empty());
        assert_eq!(covers(&[], &owner), owner);
    }

    #[test]
    fn covers_wildcards() {
        let cases: &[(PolicyRule, PolicyRule, bool)] = &[
            // verbs
            (
                allow(&["*"]).groups(&[""]).resources(&["pods"]),
                allow(&["delete"]).groups(&[""]).resources(&["pods"]),
                true,
            ),
            (
                allow(&["get"]).groups(&[""]).resources(&["pods"]),
                allow(&["*"]).groups(&[""]).resources(&["pods"]),
                false,
            ),
            // groups
            (
                allow(&["get"]).groups(&["*"]).resources(&["pods"]),
                allow(&["get"]).groups(&["apps"]).resources(&["pods"]),
                true,
            ),
            (
                allow(&["get"]).groups(&[""]).resources(&["pods"]),
                allow(&["get"]).groups(&["apps"]).resources(&["pods"]),
                false,
            ),
            // resources
            (
                allow(&["get"]).groups(&[""]).resources(&["*"]),
                allow(&["get"]).groups(&[""]).resources(&["pods/log"]),
                true,
            ),
            (
                allow(&["get"]).groups(&[""]).resources(&["pods"]),
                allow(&["get"]).groups(&[""]).resources(&["pods/log"]),
                false,
            ),
            (
                allow(&["get"]).groups(&["*"]).resources(&["*/scale"]),
                allow(&["get"])
                    .groups(&["apps"])
                    .resources(&["deployments/scale"]),
                true,
            ),
            (
                allow(&["get"]).groups(&["*"]).resources(&["*/scale"]),
                allow(&["get"])
                    .groups(&["apps"])
                    .resources(&["deployments"]),
                false,
            ),
            (
                allow(&["get"]).groups(&["*"]).resources(&["*/scale"]),
                allow(&["get"])
                    .groups(&["apps"])
                    .resources(&["deployments/status"]),
                false,
            ),
            // Kubernetes has no `resource/*` wildcard: it is a literal resource name.
            (
                allow(&["get"]).groups(&[""]).resources(&["pods/*"]),
                allow(&["get"]).groups(&[""]).resources(&["pods/exec"]),
                false,
            ),
            (
                allow(&["get"]).groups(&[""]).resources(&["pods/*"]),
                allow(&["get"]).groups(&[""]).resources(&["pods/*"]),
                true,
            ),
            // resource names
            (
                allow(&["get"]).groups(&[""]).resources(&["pods"]),
                allow(&["get"])
                    .groups(&[""])
                    .resources(&["pods"])
                    .names(&["a"]),
                true,
            ),
            (
                allow(&["get"])
                    .groups(&[""])
                    .resources(&["pods"])
                    .names(&["a", "b"]),
                allow(&["get"])
                    .groups(&[""])
                    .resources(&["pods"])
                    .names(&["b"]),
                true,
            ),
            (
                allow(&["get"])
                    .groups(&[""])
                    .resources(&["pods"])
                    .names(&["a"]),
                allow(&["get"])
                    .groups(&[""])
                    .resources(&["pods"])
                    .names(&["b"]),
                false,
            ),
            (
                allow(&["get"])
                    .groups(&[""])
                    .resources(&["pods"])
                    .names(&["a"]),
                allow(&["get"]).groups(&[""]).resources(&["pods"]),
                false,
            ),
            // non-resource URLs
            (
                allow(&["get"]).urls(&["/apis/*"]),
                allow(&["get"]).urls(&["/apis/apps/v1"]),
                true,
            ),
            (
                allow(&["get"]).urls(&["/apis/*"]),
                allow(&["get"]).urls(&["/apis"]),
                false,
            ),
            (
                allow(&["get"]).urls(&["/apis*"]),
                allow(&["get"]).urls(&["/apis"]),
                true,
            ),
            (
                allow(&["get"]).urls(&["*"]),
                allow(&["get"]).urls(&["/healthz/etcd"]),
                true,
            ),
            (
                allow(&["get"]).urls(&["/healthz"]),
                allow(&["get"]).urls(&["/healthz/etcd"]),
                false,
            ),
            (
                allow(&["get"]).urls(&["/healthz"]),
                allow(&["post"]).urls(&["/healthz"]),
                false,
            ),
            // resource rules and URL rules never cover each other
            (
                allow(&["*"]).groups(&["*"]).resources(&["*"]),
                allow(&["get"]).urls(&["/healthz"]),
                false,
            ),
            (
                allow(&["*"]).urls(&["*"]),
                allow(&["get"]).groups(&[""]).resources(&["pods"]),
                false,
            ),
            // a rule without verbs grants nothing
            (
                allow(&[]).groups(&["*"]).resources(&["*"]),
                allow(&["get"]).groups(&[""]).resources(&["pods"]),
                false,
            ),
        ];
        for (owner, requested, expected) in cases {
            assert_eq!(
                covers(std::slice::from_ref(owner), std::slice::from_ref(requested)).is_empty(),
                *expected,
                "owner {owner:?} requested {requested:?}"
            );
        }
    }

    #[test]
    fn covers_combines_several_owner_rules() {
        let owner = vec![
            allow(&["get", "list"]).groups(&[""]).resources(&["pods"]),
            allow(&["watch"]).groups(&["*"]).resources(&["*"]),
        ];
        assert!(covers(&owner, &[allow(READ).groups(&[""]).resources(&["pods"])]).is_empty());
        assert_eq!(
            covers(
                &owner,
                &[allow(READ).groups(&["apps"]).resources(&["deployments"])]
            )
            .len(),
            2
        );
    }

    #[test]
    fn cluster_admin_covers_every_bootstrap_role() {
        let admin = find_cluster_role("cluster-admin").rules.unwrap();
        for role in cluster_roles() {
            assert!(covers(&admin, role.rules.as_deref().unwrap_or_default()).is_empty());
        }
        for role in namespaced_roles() {
            assert!(covers(&admin, role.rules.as_deref().unwrap_or_default()).is_empty());
        }
    }

    // -- reconciliation -------------------------------------------------------------------------

    fn stored<T: Clone>(object: &T, edit: impl FnOnce(&mut T)) -> T {
        let mut copy = object.clone();
        edit(&mut copy);
        copy
    }

    #[test]
    fn missing_objects_are_created_and_up_to_date_ones_left_alone() {
        for role in cluster_roles() {
            assert_eq!(reconcile_cluster_role(None, &role), Some(role.clone()));
            assert_eq!(reconcile_cluster_role(Some(&role), &role), None);
        }
        for role in namespaced_roles() {
            assert_eq!(reconcile_role(None, &role), Some(role.clone()));
            assert_eq!(reconcile_role(Some(&role), &role), None);
        }
        for binding in cluster_role_bindings() {
            assert_eq!(
                reconcile_cluster_role_binding(None, &binding),
                Some(BindingChange::Create(binding.clone()))
            );
            assert_eq!(
                reconcile_cluster_role_binding(Some(&binding), &binding),
                None
            );
        }
        for binding in namespaced_role_bindings() {
            assert_eq!(
                reconcile_role_binding(None, &binding),
                Some(BindingChange::Create(binding.clone()))
            );
            assert_eq!(reconcile_role_binding(Some(&binding), &binding), None);
        }
    }

    #[test]
    fn missing_rules_are_added_and_rules_an_admin_added_are_kept() {
        let expected = find_cluster_role("system:node-proxier");
        let admin_rule = allow(&["get"]).groups(&[""]).resources(&["configmaps"]);
        let existing = stored(&expected, |r| {
            r.metadata.resource_version = Some("42".into());
            let rules = r.rules.as_mut().unwrap();
            rules.retain(|rule| list(&rule.api_groups) != [DISCOVERY.to_string()]);
            rules.push(admin_rule.clone());
        });
        let updated = reconcile_cluster_role(Some(&existing), &expected).expect("an update");
        let rules = updated.rules.clone().unwrap();
        assert!(rules.contains(&admin_rule));
        assert!(covers(&rules, expected.rules.as_deref().unwrap()).is_empty());
        // Added in atomic form, after what was stored.
        assert_eq!(
            &rules[..existing.rules.as_ref().unwrap().len()],
            existing.rules.as_deref().unwrap()
        );
        assert!(
            rules.contains(
                &allow(&["list"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"])
            )
        );
        // The stored object's metadata is kept, so the write is an update of that version.
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("42"));
        // Once written, nothing more to do.
        assert_eq!(reconcile_cluster_role(Some(&updated), &expected), None);
    }

    #[test]
    fn rules_already_covered_by_broader_stored_rules_are_not_added() {
        let expected = find_cluster_role("system:kube-dns");
        let existing = stored(&expected, |r| {
            r.rules = Some(vec![allow(&["*"]).groups(&[""]).resources(&["*"])]);
        });
        assert_eq!(reconcile_cluster_role(Some(&existing), &expected), None);
    }

    #[test]
    fn autoupdate_false_is_left_alone() {
        let expected = find_cluster_role("system:basic-user");
        let existing = stored(&expected, |r| {
            r.rules = Some(vec![]);
            r.metadata.labels = None;
            r.metadata
                .annotations
                .as_mut()
                .unwrap()
                .insert(AUTOUPDATE_ANNOTATION.into(), "false".into());
        });
        assert_eq!(reconcile_cluster_role(Some(&existing), &expected), None);

        let expected = find_binding("system:basic-user");
        let protect = |b: &mut ClusterRoleBinding| {
            b.metadata.annotations = Some(BTreeMap::from([(
                AUTOUPDATE_ANNOTATION.into(),
                "false".into(),
            )]));
        };
        let no_subjects = stored(&expected, |b| {
            protect(b);
            b.subjects = None;
        });
        assert_eq!(
            reconcile_cluster_role_binding(Some(&no_subjects), &expected),
            None
        );
        let other_role = stored(&expected, |b| {
            protect(b);
            b.role_ref.name = "view".into();
        });
        assert_eq!(
            reconcile_cluster_role_binding(Some(&other_role), &expected),
            None
        );

        let expected = namespaced_roles().remove(0);
        let existing = stored(&expected, |r| {
            r.rules = None;
            r.metadata.annotations = Some(BTreeMap::from([(
                AUTOUPDATE_ANNOTATION.into(),
                "false".into(),
            )]));
        });
        assert_eq!(reconcile_role(Some(&existing), &expected), None);
    }

    #[test]
    fn missing_labels_and_annotations_are_added_without_overwriting() {
        let expected = find_cluster_role("system:aggregate-to-view");
        let existing = stored(&expected, |r| {
            r.metadata.labels = Some(BTreeMap::from([(
                BOOTSTRAPPING_LABEL.into(),
                "mine".into(),
            )]));
            r.metadata.annotations = None;
        });
        let updated = reconcile_cluster_role(Some(&existing), &expected).expect("an update");
        let labels = updated.metadata.labels.unwrap();
        assert_eq!(labels[BOOTSTRAPPING_LABEL], "mine");
        assert_eq!(labels[&aggregate_to("view")], "true");
        assert_eq!(
            updated.metadata.annotations.unwrap()[AUTOUPDATE_ANNOTATION],
            "true"
        );
        assert_eq!(updated.rules, expected.rules);
    }

    #[test]
    fn aggregated_roles_get_missing_selectors_and_keep_their_aggregated_rules() {
        let expected = find_cluster_role("view");
        let aggregated = effective_rules("view");
        let extra = LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "example.com/aggregate-to-view".into(),
                "true".into(),
            )])),
            ..LabelSelector::default()
        };
        let existing = stored(&expected, |r| {
            r.rules = Some(aggregated.clone());
            r.aggregation_rule = Some(AggregationRule {
                cluster_role_selectors: Some(vec![extra.clone()]),
            });
        });
        let updated = reconcile_cluster_role(Some(&existing), &expected).expect("an update");
        assert_eq!(updated.rules, Some(aggregated.clone()));
        let mut want = vec![extra];
        want.extend(
            selectors(expected.aggregation_rule.as_ref())
                .iter()
                .cloned(),
        );
        assert_eq!(
            selectors(updated.aggregation_rule.as_ref()),
            want.as_slice()
        );
        assert_eq!(reconcile_cluster_role(Some(&updated), &expected), None);

        // Filled by the aggregation controller and with the expected selector: up to date.
        let filled = stored(&expected, |r| r.rules = Some(aggregated));
        assert_eq!(reconcile_cluster_role(Some(&filled), &expected), None);
    }

    #[test]
    fn a_stored_aggregation_on_a_plain_bootstrap_role_is_removed() {
        let expected = find_cluster_role("system:kube-dns");
        let existing = stored(&expected, |r| {
            r.aggregation_rule = Some(AggregationRule::default());
        });
        let updated = reconcile_cluster_role(Some(&existing), &expected).expect("an update");
        assert_eq!(updated.aggregation_rule, None);
        assert_eq!(updated.rules, expected.rules);
    }

    #[test]
    fn namespaced_roles_reconcile_like_cluster_roles() {
        let expected = namespaced_roles()
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some("system::leader-locking-kube-scheduler"))
            .unwrap();
        let old_rule = allow(&["get", "update"])
            .groups(&[""])
            .resources(&["configmaps"])
            .names(&["kube-scheduler"]);
        let existing = stored(&expected, |r| r.rules = Some(vec![old_rule.clone()]));
        let updated = reconcile_role(Some(&existing), &expected).expect("an update");
        let rules = updated.rules.unwrap();
        assert_eq!(rules[0], old_rule);
        assert!(covers(&rules, expected.rules.as_deref().unwrap()).is_empty());
        assert_eq!(updated.metadata.namespace.as_deref(), Some("kube-system"));
    }

    #[test]
    fn missing_subjects_are_added_and_extra_ones_kept() {
        let expected = find_binding("system:public-info-viewer");
        let extra = user("alice");
        let existing = stored(&expected, |b| {
            b.metadata.resource_version = Some("7".into());
            b.subjects = Some(vec![extra.clone(), group("system:authenticated")]);
        });
        let Some(BindingChange::Update(updated)) =
            reconcile_cluster_role_binding(Some(&existing), &expected)
        else {
            panic!("expected an update");
        };
        assert_eq!(
            updated.subjects.clone().unwrap(),
            vec![
                extra,
                group("system:authenticated"),
                group("system:unauthenticated")
            ]
        );
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            reconcile_cluster_role_binding(Some(&updated), &expected),
            None
        );

        let expected = namespaced_role_bindings().remove(0);
        let existing = stored(&expected, |b| b.subjects = None);
        let Some(BindingChange::Update(updated)) =
            reconcile_role_binding(Some(&existing), &expected)
        else {
            panic!("expected an update");
        };
        assert_eq!(updated.subjects, expected.subjects);
    }

    #[test]
    fn stored_subjects_without_defaulted_api_group_are_the_same_subjects() {
        let expected = find_binding("system:discovery");
        let existing = stored(&expected, |b| {
            b.subjects.as_mut().unwrap()[0].api_group = None;
        });
        assert_eq!(
            reconcile_cluster_role_binding(Some(&existing), &expected),
            None
        );
        let expected = find_binding("system:kube-dns");
        let existing = stored(&expected, |b| {
            b.subjects.as_mut().unwrap()[0].api_group = Some(String::new());
        });
        assert_eq!(
            reconcile_cluster_role_binding(Some(&existing), &expected),
            None
        );
    }

    #[test]
    fn a_changed_role_ref_means_recreating_the_binding() {
        let expected = find_binding("system:kube-scheduler");
        let existing = stored(&expected, |b| {
            b.metadata.resource_version = Some("9".into());
            b.role_ref.name = "system:node".into();
            b.subjects = Some(vec![user("bob")]);
        });
        assert_eq!(
            reconcile_cluster_role_binding(Some(&existing), &expected),
            Some(BindingChange::Recreate(expected.clone()))
        );
        let expected = namespaced_role_bindings().remove(0);
        let existing = stored(&expected, |b| b.role_ref.kind = "ClusterRole".into());
        assert_eq!(
            reconcile_role_binding(Some(&existing), &expected),
            Some(BindingChange::Recreate(expected.clone()))
        );
    }
}
