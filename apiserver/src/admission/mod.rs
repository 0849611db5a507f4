//! Built-in admission: what runs on a create or update between decoding and storing, with the
//! caller's identity, as kube-apiserver's default plugins do:
//! - `ServiceAccount`: a pod runs as a ServiceAccount (`default` unless it names one) and,
//!   unless it opts out, gets the `kube-api-access-*` projected volume with a bound token;
//! - `NodeRestriction`: a kubelet may create only mirror pods bound to itself and may not
//!   change its node's taints or restricted labels;
//! - RBAC's privilege-escalation prevention: a role may hold, and a binding grant, only what
//!   the caller already holds (unless it has the `escalate` or `bind` verb);
//! - `PodSecurity` ([`pod_security`]): namespace labels choose a Pod Security Standard level
//!   to enforce, audit and warn about;
//! - `CertificateApproval`, `CertificateSigning` and `CertificateSubjectRestriction`: approving
//!   a CSR takes the `approve` verb, and issuing its certificate the `sign` verb, on the
//!   `signers` resource named by its signer; no `kube-apiserver-client` certificate for the
//!   `system:masters` group;
//! - `DenyServiceExternalIPs` and the addresses no Service may take ([`external_ips`]);
//! - `Priority` ([`priority`]): a pod's priority from its PriorityClass;
//! - `LimitRanger` ([`limit_ranger`]): LimitRange defaults and bounds for pods and claims;
//! - `ResourceQuota` ([`resource_quota`]): checked and charged by the create path itself,
//!   since charging writes to the store.
//! - `DefaultStorageClass` and `StorageObjectInUseProtection` ([`storage`]).
//!
//! Writes the apiserver makes itself carry no user and are not admitted.

pub mod external_ips;
pub mod limit_ranger;
pub mod pod_security;
pub mod priority;
pub mod resource_quota;
pub mod storage;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::{Value, json};
use skiff_api::ResourceInfo;

use crate::auth::{Attributes, Authorizer, UserInfo};
use crate::error::{ApiError, ApiResult};
use crate::node_authz::{NODE_USER_PREFIX, NODES_GROUP};
use crate::rbac::Rbac;
use crate::registry::Registry;

/// A create or an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// The request being admitted.
pub struct Request<'a> {
    pub op: Operation,
    pub info: &'static ResourceInfo,
    pub subresource: Option<&'a str>,
    pub user: &'a UserInfo,
}

/// The admission chain.
pub struct Admission {
    pub authz: Arc<dyn Authorizer>,
    /// Present when RBAC authorizes: escalation prevention reads its roles.
    pub rbac: Option<Arc<Rbac>>,
    pub pod_security: pod_security::Config,
    pub external_ips: external_ips::Config,
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `resource "name" is forbidden: why`, as admission plugins refuse.
fn forbidden(info: &ResourceInfo, name: &str, why: &str) -> ApiError {
    let qualified = crate::error::qualified(info);
    ApiError {
        details: Some(crate::error::status_details(
            Some(name),
            info.group,
            info.plural,
        )),
        ..ApiError::forbidden(format!("{qualified} \"{name}\" is forbidden: {why}"))
    }
}

impl Admission {
    /// Admits `new` (changing it where a mutating plugin does); returns warnings for the
    /// client.
    pub fn admit(
        &self,
        registry: &Registry,
        req: &Request<'_>,
        new: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<Vec<String>> {
        let mut warnings = Vec::new();
        match (req.info.group, req.info.plural) {
            ("", "pods") => {
                if req.op == Operation::Create && req.subresource.is_none() {
                    self.node_creates_pod(req, new)?;
                    service_account(registry, req.info, new)?;
                }
                if req.subresource.is_none() {
                    priority::admit_pod(registry, req.info, req.op, new, old)?;
                }
                limit_ranger::admit(registry, req, new)?;
                self.pod_security_pod(registry, req, new, old, &mut warnings)?;
            }
            ("", "nodes") => self.node_updates_node(req, new, old)?,
            ("", "persistentvolumeclaims") => {
                limit_ranger::admit(registry, req, new)?;
                if req.op == Operation::Create && req.subresource.is_none() {
                    storage::admit_claim(registry, new)
                }
            }
            ("", "persistentvolumes")
                if req.op == Operation::Create && req.subresource.is_none() =>
            {
                storage::admit_volume(new)
            }
            ("scheduling.k8s.io", "priorityclasses") if req.subresource.is_none() => {
                priority::admit_class(registry, req.info, req.op, new)?
            }
            ("", "services") => {
                self.external_ips
                    .admit(registry, req.info, req.subresource, new, old)?
            }
            ("", "namespaces") => {
                self.pod_security_namespace(registry, req, new, old, &mut warnings)?
            }
            ("certificates.k8s.io", "certificatesigningrequests") => {
                self.certificates(req, new, old)?
            }
            ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
                self.no_escalation(req, new, old)?
            }
            ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
                self.may_bind(req, new, old)?
            }
            (group, _) if pod_security::is_workload(group, req.info.kind) => {
                let labels = namespace_labels(registry, namespace_of(new));
                let d = self.pod_security.admit_workload(
                    &pod_security::Request {
                        namespace: namespace_of(new),
                        namespace_labels: &labels,
                        username: &req.user.name,
                        subresource: req.subresource.unwrap_or_default(),
                    },
                    req.info.kind,
                    new,
                );
                warnings.extend(d.warnings);
            }
            _ => {}
        }
        Ok(warnings)
    }

    /// Upstream's three `certificates.k8s.io` plugins.
    fn certificates(&self, req: &Request<'_>, new: &Value, old: Option<&Value>) -> ApiResult<()> {
        let signer = new
            .pointer("/spec/signerName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = name_of(new);
        match (req.op, req.subresource) {
            (Operation::Create, None) if signer == skiff_api::certificates::CLIENT_SIGNER => {
                let pem = skiff_api::certificates::request_pem(new);
                let masters = skiff_api::certificates::parse_request(&pem)
                    .is_ok_and(|r| r.organizations.iter().any(|o| o == "system:masters"));
                if masters {
                    return Err(forbidden(
                        req.info,
                        name,
                        &format!("use of {signer} signer with system:masters group is not allowed"),
                    ));
                }
            }
            (Operation::Update, Some("approval"))
                if !self.may_for_signer(req.user, "approve", signer) =>
            {
                return Err(forbidden(
                    req.info,
                    name,
                    &format!("user not permitted to approve requests with signerName {signer:?}"),
                ));
            }
            (Operation::Update, Some("status")) => {
                let cert = |o: &Value| o.pointer("/status/certificate").cloned();
                if old.map(cert) != Some(cert(new))
                    && !self.may_for_signer(req.user, "sign", signer)
                {
                    return Err(forbidden(
                        req.info,
                        name,
                        &format!("user not permitted to sign requests with signerName {signer:?}"),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether `user` may `verb` the `signers` resource named `signer`, or `<domain>/*` (as
    /// upstream's `IsAuthorizedForSignerName`).
    fn may_for_signer(&self, user: &UserInfo, verb: &str, signer: &str) -> bool {
        let wildcard = signer.split_once('/').map(|(d, _)| format!("{d}/*"));
        std::iter::once(signer)
            .chain(wildcard.as_deref())
            .any(|name| {
                let a = Attributes {
                    verb,
                    resource_request: true,
                    group: "certificates.k8s.io",
                    version: "*",
                    resource: "signers",
                    name: Some(name),
                    ..Default::default()
                };
                self.authz.authorize(user, &a).allowed()
            })
    }

    fn pod_security_pod(
        &self,
        registry: &Registry,
        req: &Request<'_>,
        pod: &Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        let ns = namespace_of(pod);
        let labels = namespace_labels(registry, ns);
        let d = self.pod_security.admit_pod(
            &pod_security::Request {
                namespace: ns,
                namespace_labels: &labels,
                username: &req.user.name,
                subresource: req.subresource.unwrap_or_default(),
            },
            pod,
            old,
        );
        warnings.extend(d.warnings);
        match d.enforce_error {
            Some(message) => Err(ApiError {
                details: Some(json!({ "name": name_of(pod), "kind": "pods" })),
                ..ApiError::forbidden(message)
            }),
            None => Ok(()),
        }
    }

    fn pod_security_namespace(
        &self,
        registry: &Registry,
        req: &Request<'_>,
        ns: &Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        if req.subresource.is_some() {
            return Ok(());
        }
        let name = name_of(ns);
        let labels = string_map(ns.pointer("/metadata/labels"));
        let old_labels = old.map(|o| string_map(o.pointer("/metadata/labels")));
        let review = self
            .pod_security
            .review_namespace(name, &labels, old_labels.as_ref());
        if !review.invalid.is_empty() {
            let causes: Vec<skiff_api::FieldError> = review
                .invalid
                .iter()
                .map(|e| skiff_api::FieldError::invalid(e.field(), &Value::Null, e.body()))
                .collect();
            let mut err = ApiError::invalid(req.info, name, &causes);
            err.message = pod_security::invalid_namespace_message(name, &review.invalid);
            return Err(err);
        }
        warnings.extend(review.warnings);
        if let Some(level) = review.check_existing_pods {
            let pods = registry_pods(registry, name);
            warnings.extend(pod_security::namespace_warnings(name, &level, &pods));
        }
        Ok(())
    }

    /// NodeRestriction: a kubelet creates only mirror pods, bound to itself.
    fn node_creates_pod(&self, req: &Request<'_>, pod: &Value) -> ApiResult<()> {
        let Some(node) = node_of(req.user) else {
            return Ok(());
        };
        let mirror = pod
            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some();
        if !mirror {
            return Err(forbidden(
                req.info,
                name_of(pod),
                &format!(
                    "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
                ),
            ));
        }
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if bound != node {
            return Err(forbidden(
                req.info,
                name_of(pod),
                &format!("node {node:?} can only create pods with spec.nodeName set to itself"),
            ));
        }
        Ok(())
    }

    /// NodeRestriction: a kubelet may not change its taints, nor set labels reserved for
    /// administrators (`node-restriction.kubernetes.io/`, and `kubernetes.io`/`k8s.io` labels
    /// outside the kubelet's own).
    fn node_updates_node(
        &self,
        req: &Request<'_>,
        new: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let Some(node) = node_of(req.user) else {
            return Ok(());
        };
        let name = name_of(new);
        if name != node {
            return Err(forbidden(
                req.info,
                name,
                &format!("node {node:?} is not allowed to modify node {name:?}"),
            ));
        }
        let labels = string_map(new.pointer("/metadata/labels"));
        let old_labels = old
            .map(|o| string_map(o.pointer("/metadata/labels")))
            .unwrap_or_default();
        let mut forbidden_labels: Vec<&str> = labels
            .iter()
            .filter(|(k, v)| old_labels.get(*k) != Some(v))
            .map(|(k, _)| k.as_str())
            .chain(
                old_labels
                    .keys()
                    .filter(|k| !labels.contains_key(*k))
                    .map(String::as_str),
            )
            .filter(|k| !kubelet_may_set_label(k))
            .collect();
        forbidden_labels.sort();
        forbidden_labels.dedup();
        if !forbidden_labels.is_empty() {
            let verb = if old.is_some() { "modify" } else { "set" };
            return Err(forbidden(
                req.info,
                name,
                &format!(
                    "is not allowed to {verb} labels: {}",
                    forbidden_labels.join(", ")
                ),
            ));
        }
        if let Some(old) = old
            && req.subresource.is_none()
            && new.pointer("/spec/taints") != old.pointer("/spec/taints")
        {
            return Err(forbidden(
                req.info,
                name,
                &format!("node {node:?} is not allowed to modify taints"),
            ));
        }
        Ok(())
    }

    /// RBAC: a Role or ClusterRole may hold only rules its author holds, unless the author may
    /// `escalate`.
    fn no_escalation(&self, req: &Request<'_>, new: &Value, old: Option<&Value>) -> ApiResult<()> {
        if self.rbac.is_none() {
            return Ok(());
        }
        let rules = rules_of(new);
        if let Some(old) = old
            && rules_of(old) == rules
            && old.get("aggregationRule") == new.get("aggregationRule")
        {
            return Ok(());
        }
        let ns = namespace_of(new);
        let name = name_of(new);
        let escalate = Attributes {
            verb: "escalate",
            resource_request: true,
            group: "rbac.authorization.k8s.io",
            resource: req.info.plural,
            namespace: Some(ns).filter(|n| !n.is_empty()),
            name: Some(name),
            ..Default::default()
        };
        if self.authz.authorize(req.user, &escalate).allowed() {
            return Ok(());
        }
        if new.get("aggregationRule").is_some_and(|a| !a.is_null()) {
            return Err(forbidden(
                req.info,
                name,
                "must have cluster-admin privileges to use an aggregationRule",
            ));
        }
        self.covered(req, name, ns, &rules)
    }

    /// RBAC: a binding may grant a role only to someone who may `bind` it or who holds all of
    /// its rules already.
    fn may_bind(&self, req: &Request<'_>, new: &Value, old: Option<&Value>) -> ApiResult<()> {
        let Some(rbac) = &self.rbac else {
            return Ok(());
        };
        let role_ref: RoleRef = match new.get("roleRef").cloned().map(serde_json::from_value) {
            Some(Ok(r)) => r,
            // Validation refuses a binding without a roleRef.
            _ => return Ok(()),
        };
        if old.is_some_and(|o| o.get("roleRef") == new.get("roleRef")) {
            return Ok(());
        }
        let ns = namespace_of(new);
        let name = name_of(new);
        let cluster = role_ref.kind == "ClusterRole";
        let bind = Attributes {
            verb: "bind",
            resource_request: true,
            group: "rbac.authorization.k8s.io",
            resource: if cluster { "clusterroles" } else { "roles" },
            namespace: Some(ns).filter(|n| !n.is_empty()),
            name: Some(&role_ref.name),
            ..Default::default()
        };
        if self.authz.authorize(req.user, &bind).allowed() {
            return Ok(());
        }
        let Some(rules) = rbac.role_rules(cluster, ns, &role_ref.name) else {
            let what = if cluster { "clusterrole" } else { "role" };
            return Err(forbidden(
                req.info,
                name,
                &format!(
                    "{what}.rbac.authorization.k8s.io {:?} not found",
                    role_ref.name
                ),
            ));
        };
        self.covered(req, name, ns, &rules)
    }

    /// Refuses unless the caller holds every rule in `rules` in `ns` (cluster-wide for "").
    fn covered(
        &self,
        req: &Request<'_>,
        name: &str,
        ns: &str,
        rules: &[PolicyRule],
    ) -> ApiResult<()> {
        let owner = self.authz.rules_for(req.user, ns);
        let missing = crate::rbac::coverage::covers(&owner.rules, rules);
        if missing.is_empty() {
            return Ok(());
        }
        let mut lines: Vec<String> = crate::rbac::coverage::compact(missing)
            .iter()
            .map(crate::rbac::coverage::compact_string)
            .collect();
        lines.sort();
        lines.dedup();
        let groups: Vec<String> = req.user.groups.iter().map(|g| format!("{g:?}")).collect();
        Err(forbidden(
            req.info,
            name,
            &format!(
                "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
                req.user.name,
                groups.join(" "),
                lines.join("\n")
            ),
        ))
    }
}

/// The rules of a Role or ClusterRole object.
fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    obj.get("rules")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default()
}

/// The node a kubelet identity names.
fn node_of(user: &UserInfo) -> Option<&str> {
    if !user.in_group(NODES_GROUP) {
        return None;
    }
    user.name.strip_prefix(NODE_USER_PREFIX)
}

/// Labels a kubelet may set on its own Node (NodeRestriction's allowed list).
fn kubelet_may_set_label(key: &str) -> bool {
    let (prefix, _) = key.split_once('/').unwrap_or(("", key));
    if prefix == "node-restriction.kubernetes.io"
        || prefix.ends_with(".node-restriction.kubernetes.io")
    {
        return false;
    }
    let reserved = prefix == "kubernetes.io"
        || prefix.ends_with(".kubernetes.io")
        || prefix == "k8s.io"
        || prefix.ends_with(".k8s.io");
    if !reserved {
        return true;
    }
    matches!(
        key,
        "kubernetes.io/hostname"
            | "kubernetes.io/arch"
            | "kubernetes.io/os"
            | "beta.kubernetes.io/arch"
            | "beta.kubernetes.io/os"
            | "beta.kubernetes.io/instance-type"
            | "node.kubernetes.io/instance-type"
            | "failure-domain.beta.kubernetes.io/region"
            | "failure-domain.beta.kubernetes.io/zone"
            | "topology.kubernetes.io/region"
            | "topology.kubernetes.io/zone"
    ) || prefix == "kubelet.kubernetes.io"
        || prefix.ends_with(".kubelet.kubernetes.io")
        || prefix == "node.kubernetes.io"
        || prefix.ends_with(".node.kubernetes.io")
}

/// The labels of namespace `ns`, from the watch cache.
fn namespace_labels(registry: &Registry, ns: &str) -> BTreeMap<String, String> {
    let info = skiff_api::resources::find("", "v1", "namespaces").expect("namespaces are served");
    registry
        .cache
        .for_resource(info)
        .and_then(|c| c.get(&info.storage_key(None, ns)))
        .map(|o| string_map(o.pointer("/metadata/labels")))
        .unwrap_or_default()
}

/// The pods of namespace `ns`, from the watch cache.
fn registry_pods(registry: &Registry, ns: &str) -> Vec<Value> {
    let info = skiff_api::resources::find("", "v1", "pods").expect("pods are served");
    registry
        .cache
        .for_resource(info)
        .map(|c| {
            c.snapshot(&format!("{}{ns}/", info.storage_prefix()))
                .0
                .into_iter()
                .map(|p| (*p).clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The mount path of the ServiceAccount volume, as in-cluster clients expect it.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// ServiceAccount admission: the pod's ServiceAccount, and its token volume.
fn service_account(registry: &Registry, info: &ResourceInfo, pod: &mut Value) -> ApiResult<()> {
    let ns = namespace_of(pod).to_string();
    let pod_name = name_of(pod).to_string();
    let spec = match pod.get_mut("spec").and_then(Value::as_object_mut) {
        Some(s) => s,
        None => return Ok(()),
    };
    let sa_name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa_name));
    let sa_info = skiff_api::resources::find("", "v1", "serviceaccounts").expect("served");
    let sa = registry
        .cache
        .for_resource(sa_info)
        .and_then(|c| c.get(&sa_info.storage_key(Some(&ns), &sa_name)));
    let Some(sa) = sa else {
        if sa_name == "default" {
            // Kubernetes refuses the pod until the controller-manager has created `default`;
            // Skiff admits it without a token (clusters without a controller-manager, e.g.
            // an apiserver and kubelets under test, still run pods).
            return Ok(());
        }
        return Err(forbidden(
            info,
            &pod_name,
            &format!(
                "error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found"
            ),
        ));
    };
    let opt_out = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        == Some(false);
    if opt_out {
        return Ok(());
    }
    // A container that mounts something at the token path already keeps its own.
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut volumes = volumes;
    if volumes.iter().any(|v| {
        v.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.starts_with("kube-api-access-"))
    }) {
        spec.insert("volumes".into(), Value::Array(volumes));
        return Ok(());
    }
    let volume_name = format!("kube-api-access-{}", random_suffix());
    volumes.push(json!({
        "name": volume_name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
            ],
        },
    }));
    spec.insert("volumes".into(), Value::Array(volumes));
    for field in ["initContainers", "containers"] {
        for c in spec
            .get_mut(field)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let mounts = c
                .as_object_mut()
                .map(|c| c.entry("volumeMounts").or_insert_with(|| json!([])));
            let Some(Value::Array(mounts)) = mounts else {
                continue;
            };
            if mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT))
            {
                continue;
            }
            mounts.push(json!({
                "name": volume_name,
                "readOnly": true,
                "mountPath": SERVICE_ACCOUNT_MOUNT,
            }));
        }
    }
    Ok(())
}

/// Five characters as Kubernetes' generateName suffixes (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelets_keep_to_their_own_labels() {
        for ok in [
            "kubernetes.io/hostname",
            "node.kubernetes.io/instance-type",
            "kubelet.kubernetes.io/x",
            "example.com/rack",
            "plain",
        ] {
            assert!(kubelet_may_set_label(ok), "{ok}");
        }
        for no in [
            "node-restriction.kubernetes.io/trusted",
            "foo.node-restriction.kubernetes.io/x",
            "node-role.kubernetes.io/control-plane",
            "kubernetes.io/role",
            "k8s.io/x",
        ] {
            assert!(!kubelet_may_set_label(no), "{no}");
        }
    }
}
