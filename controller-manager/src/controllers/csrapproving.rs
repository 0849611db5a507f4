//! The CSR approving controller (kube-controller-manager's `csrapproving`): it approves a
//! kubelet's request for a client certificate (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, subject `CN=system:node:<name>,
//! O=system:nodes`, client usages only) when a SubjectAccessReview says the requester may
//! `create` `certificatesigningrequests/selfnodeclient` (a node renewing its own certificate)
//! or `certificatesigningrequests/nodeclient` (a bootstrapping node: the bootstrap policy
//! grants that to `system:bootstrappers` once bound as kubeadm binds it).
//!
//! Two more kinds are approved by checking the request itself, with no SubjectAccessReview
//! (Kubernetes leaves both to an external approver; Skiff's installer needs them):
//!
//! - **A kubelet's serving certificate** (signer `kubernetes.io/kubelet-serving`), when all
//!   of these hold ([`check_kubelet_serving`]):
//!   the requester is `system:node:<X>` in group `system:nodes`; the subject's CN is exactly
//!   that user and its O exactly `[system:nodes]`; the usages are within `digital signature`,
//!   `key encipherment`, `server auth` and include `server auth`; there are no email or URI
//!   names and at least one DNS or IP name; every DNS name is Node X's name or one of its
//!   `Hostname`/`InternalDNS`/`ExternalDNS` addresses, and every IP one of its
//!   `InternalIP`/`ExternalIP` addresses. So a node gets a serving certificate only for the
//!   names the cluster already routes to it, and cannot impersonate another node or a Service.
//!   While Node X is not in the cache yet the request is looked at again shortly.
//! - **skiff-proxy's client certificate** (signer `kubernetes.io/kube-apiserver-client`),
//!   when ([`check_proxy_client`]) the subject is exactly `CN=system:kube-proxy` with no
//!   organization and no alternative names, the usages are `client auth` (with `digital
//!   signature`/`key encipherment` at most), and the requester is in `system:bootstrappers` or
//!   `system:nodes`, or is `system:kube-proxy` itself (renewing). This grants nothing new: such
//!   a requester can already obtain a node's client certificate, and `system:kube-proxy` may
//!   only read Services, EndpointSlices and Nodes (which a node may read anyway) and write
//!   Events (and request its own renewal).
//!
//! A request that does not match is left pending with nothing written (not denied), as
//! upstream leaves requests it does not recognize to other approvers or a person
//! (`kubectl certificate approve`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, Client};
use skiff_api::certificates::{
    self as certs, CLIENT_SIGNER, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER,
};
use skiff_client::informer::Informer;

use crate::context::Context;
use crate::controller::{Controller, Error, Reconciler, Result};
use crate::workqueue::WorkQueue;

/// What a recognized request needs the requester to be allowed, tried in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// A node renewing its own client certificate: the requester is the subject.
    SelfNodeClient,
    /// Any node client certificate (bootstrapping).
    NodeClient,
}

impl Permission {
    /// The `certificatesigningrequests` subresource the SubjectAccessReview asks about.
    pub fn subresource(self) -> &'static str {
        match self {
            Permission::SelfNodeClient => "selfnodeclient",
            Permission::NodeClient => "nodeclient",
        }
    }

    /// The `Approved` condition's message (upstream's words).
    pub fn message(self) -> &'static str {
        match self {
            Permission::SelfNodeClient => {
                "Auto approving self kubelet client certificate after SubjectAccessReview."
            }
            Permission::NodeClient => {
                "Auto approving kubelet client certificate after SubjectAccessReview."
            }
        }
    }
}

/// The permissions that would approve `csr` (whose parsed request is `req`), in the order
/// to try them; empty when it is not a kubelet client certificate request.
pub fn recognize(csr: &CertificateSigningRequest, req: &certs::Request) -> Vec<Permission> {
    let spec = &csr.spec;
    let usages = spec.usages.clone().unwrap_or_default();
    if spec.signer_name != KUBELET_CLIENT_SIGNER
        || certs::check_kubelet_client(req, &usages).is_err()
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    if spec.username.as_deref() == Some(req.common_name.as_str()) {
        out.push(Permission::SelfNodeClient);
    }
    out.push(Permission::NodeClient);
    out
}

/// The `Approved` message of a kubelet serving certificate.
pub const SERVING_MESSAGE: &str =
    "Auto approving kubelet serving certificate: its names and addresses are the Node's.";
/// The `Approved` message of skiff-proxy's client certificate.
pub const PROXY_MESSAGE: &str = "Auto approving kube-proxy client certificate.";

const NODES_GROUP: &str = "system:nodes";
const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
const PROXY_USER: &str = "system:kube-proxy";

fn requester_in(csr: &CertificateSigningRequest, group: &str) -> bool {
    csr.spec
        .groups
        .as_ref()
        .is_some_and(|g| g.iter().any(|g| g == group))
}

/// The node a kubelet serving request is for: `X` of a requester `system:node:X` in
/// `system:nodes`, if the request is for that signer and from such a requester.
pub fn serving_node(csr: &CertificateSigningRequest) -> Option<&str> {
    if csr.spec.signer_name != KUBELET_SERVING_SIGNER || !requester_in(csr, NODES_GROUP) {
        return None;
    }
    csr.spec
        .username
        .as_deref()?
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
}

/// Whether a kubelet serving request from Node `node`'s kubelet asks only for what the Node
/// is (the checks of the module doc); `Err` says what does not match.
pub fn check_kubelet_serving(
    csr: &CertificateSigningRequest,
    req: &certs::Request,
    node: &Node,
) -> std::result::Result<(), String> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let user = format!("system:node:{name}");
    if csr.spec.username.as_deref() != Some(user.as_str()) || !requester_in(csr, NODES_GROUP) {
        return Err(format!("the requester is not {user} in {NODES_GROUP}"));
    }
    if req.common_name != user {
        return Err(format!("the subject's common name is not {user}"));
    }
    if req.organizations != [NODES_GROUP] {
        return Err(format!(
            "the subject's organization is not exactly [{NODES_GROUP}]"
        ));
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    const ALLOWED: &[&str] = &["digital signature", "key encipherment", "server auth"];
    if let Some(u) = usages.iter().find(|u| !ALLOWED.contains(&u.as_str())) {
        return Err(format!("usage {u:?} is not for a serving certificate"));
    }
    if !usages.iter().any(|u| u == "server auth") {
        return Err("usages do not include server auth".into());
    }
    if !req.email_addresses.is_empty() || !req.uris.is_empty() {
        return Err("email and URI names are not allowed".into());
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("no DNS or IP name".into());
    }
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let of = |kinds: &[&str]| -> Vec<&str> {
        addresses
            .iter()
            .filter(|a| kinds.contains(&a.type_.as_str()))
            .map(|a| a.address.as_str())
            .collect()
    };
    let hostnames = of(&["Hostname", "InternalDNS", "ExternalDNS"]);
    if let Some(dns) = req
        .dns_names
        .iter()
        .find(|d| d.as_str() != name && !hostnames.contains(&d.as_str()))
    {
        return Err(format!("DNS name {dns:?} is not one of Node {name}'s"));
    }
    let ips = of(&["InternalIP", "ExternalIP"]);
    if let Some(ip) = req.ip_addresses.iter().find(|ip| {
        !ips.iter()
            .any(|a| a.parse::<std::net::IpAddr>().is_ok_and(|a| a == **ip))
    }) {
        return Err(format!("IP address {ip} is not one of Node {name}'s"));
    }
    Ok(())
}

/// Whether a request is skiff-proxy's client certificate from a bootstrapping or running
/// node (the checks of the module doc); `Err` says what does not match.
pub fn check_proxy_client(
    csr: &CertificateSigningRequest,
    req: &certs::Request,
) -> std::result::Result<(), String> {
    if csr.spec.signer_name != CLIENT_SIGNER {
        return Err(format!("the signer is not {CLIENT_SIGNER}"));
    }
    if req.common_name != PROXY_USER || !req.organizations.is_empty() {
        return Err(format!("the subject is not exactly CN={PROXY_USER}"));
    }
    if !req.dns_names.is_empty()
        || !req.ip_addresses.is_empty()
        || !req.email_addresses.is_empty()
        || !req.uris.is_empty()
    {
        return Err("alternative names are not allowed".into());
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    const ALLOWED: &[&str] = &["digital signature", "key encipherment", "client auth"];
    if usages.iter().any(|u| !ALLOWED.contains(&u.as_str()))
        || !usages.iter().any(|u| u == "client auth")
    {
        return Err("usages are not client auth (with digital signature, key encipherment)".into());
    }
    let renewal = csr.spec.username.as_deref() == Some(PROXY_USER);
    if !renewal && !requester_in(csr, BOOTSTRAPPERS_GROUP) && !requester_in(csr, NODES_GROUP) {
        return Err(format!(
            "the requester is not {PROXY_USER} and in neither {BOOTSTRAPPERS_GROUP} nor {NODES_GROUP}"
        ));
    }
    Ok(())
}

/// Whether `csr` is decided already (approved, denied) or issued: nothing to do.
pub fn settled(csr: &CertificateSigningRequest) -> bool {
    let status = csr.status.as_ref();
    let issued = status
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    let decided = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| matches!(c.type_.as_str(), "Approved" | "Denied"));
    issued || decided
}

/// The SubjectAccessReview asking whether the requester of `csr` may `create` the
/// `certificatesigningrequests/<permission>` subresource.
pub fn review(csr: &CertificateSigningRequest, permission: Permission) -> SubjectAccessReview {
    let spec = &csr.spec;
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(permission.subresource().into()),
                verb: Some("create".into()),
                version: Some("*".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub struct CsrApprover {
    csrs: Arc<Informer<CertificateSigningRequest>>,
    nodes: Arc<Informer<Node>>,
    client: Client,
}

impl CsrApprover {
    /// Adds the `Approved` condition through the approval subresource.
    async fn approve(&self, csr: &CertificateSigningRequest, message: &str) -> Result<()> {
        let mut approved = csr.clone();
        let status = approved.status.get_or_insert_with(Default::default);
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(message.into()),
                last_update_time: Some(Time(jiff::Timestamp::now())),
                ..Default::default()
            });
        let name = csr.metadata.name.clone().unwrap_or_default();
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        api.replace_subresource("approval", &name, &PostParams::default(), &approved)
            .await?;
        tracing::info!(csr = %name, signer = %csr.spec.signer_name, message, "approved");
        Ok(())
    }
}

impl Controller for CsrApprover {
    const SERVICE_ACCOUNT: &'static str = "certificate-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let csrs = ctx.csrs();
        crate::controller::queue_every_change(&csrs, queue);
        Arc::new(CsrApprover {
            csrs,
            nodes: ctx.nodes.clone(),
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
        })
    }
}

impl Reconciler for CsrApprover {
    const NAME: &'static str = "csrapproving";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let Some(csr) = self.csrs.get(None, key) else {
            return Ok(None);
        };
        if settled(&csr) {
            return Ok(None);
        }
        let req = certs::parse_request(&csr.spec.request.0)
            .map_err(|e| Error::Invalid(format!("unable to parse csr {key:?}: {e}")))?;
        if let Some(node) = serving_node(&csr) {
            let Some(node) = self.nodes.get(None, node) else {
                // The Node may not be in the cache yet (a kubelet asks right after
                // registering): look again shortly rather than never.
                return Ok(Some(Duration::from_secs(5)));
            };
            match check_kubelet_serving(&csr, &req, &node) {
                Ok(()) => self.approve(&csr, SERVING_MESSAGE).await?,
                Err(why) => {
                    tracing::info!(csr = %key, reason = %why, "kubelet serving request left pending")
                }
            }
            return Ok(None);
        }
        if csr.spec.signer_name == CLIENT_SIGNER {
            match check_proxy_client(&csr, &req) {
                Ok(()) => self.approve(&csr, PROXY_MESSAGE).await?,
                Err(why) => tracing::debug!(csr = %key, reason = %why, "not a kube-proxy request"),
            }
            return Ok(None);
        }
        let tried = recognize(&csr, &req);
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        for &permission in &tried {
            let answer = reviews
                .create(&PostParams::default(), &review(&csr, permission))
                .await?;
            if !answer.status.is_some_and(|s| s.allowed) {
                continue;
            }
            self.approve(&csr, permission.message()).await?;
            return Ok(None);
        }
        if tried.is_empty() {
            return Ok(None);
        }
        // A binding may yet come: look again with backoff, as upstream requeues.
        let names: Vec<&str> = tried.iter().map(|p| p.subresource()).collect();
        Err(Error::Invalid(format!(
            "recognized csr {key:?} as {names:?} but subject access review was not approved"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };

    fn request(cn: &str, orgs: &[&str], dns: &[&str]) -> certs::Request {
        certs::Request {
            common_name: cn.into(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn csr(signer: &str, username: &str, usages: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(Vec::new()),
                signer_name: signer.into(),
                username: Some(username.into()),
                groups: Some(vec!["system:bootstrappers".into()]),
                usages: Some(usages.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];

    #[test]
    fn only_kubelet_client_requests_are_recognized() {
        use Permission::*;
        let node = request("system:node:n1", &["system:nodes"], &[]);
        let bootstrap = csr(KUBELET_CLIENT_SIGNER, "system:bootstrap:abcdef", CLIENT);
        assert_eq!(recognize(&bootstrap, &node), [NodeClient]);
        let renewal = csr(KUBELET_CLIENT_SIGNER, "system:node:n1", CLIENT);
        assert_eq!(recognize(&renewal, &node), [SelfNodeClient, NodeClient]);
        // Without key encipherment (ECDSA keys) too.
        let ecdsa = csr(
            KUBELET_CLIENT_SIGNER,
            "system:node:n1",
            &["client auth", "digital signature"],
        );
        assert_eq!(recognize(&ecdsa, &node), [SelfNodeClient, NodeClient]);

        let none: &[Permission] = &[];
        let other_signer = csr(certs::CLIENT_SIGNER, "system:node:n1", CLIENT);
        assert_eq!(recognize(&other_signer, &node), none);
        let serving = csr(
            KUBELET_CLIENT_SIGNER,
            "system:node:n1",
            &["digital signature", "key encipherment", "server auth"],
        );
        assert_eq!(recognize(&serving, &node), none);
        for (req, why) in [
            (
                request("system:node:n1", &["system:masters"], &[]),
                "subject organization is not system:nodes",
            ),
            (
                request("alice", &["system:nodes"], &[]),
                "subject common name does not begin with system:node:",
            ),
            (
                request("system:node:n1", &["system:nodes"], &["n1"]),
                "dnsNames are not allowed",
            ),
        ] {
            assert_eq!(recognize(&renewal, &req), none, "{why}");
            assert_eq!(
                certs::check_kubelet_client(&req, &renewal.spec.usages.clone().unwrap()),
                Err(why.to_string())
            );
        }
    }

    #[test]
    fn the_review_asks_about_the_requester() {
        let c = csr(KUBELET_CLIENT_SIGNER, "system:bootstrap:abcdef", CLIENT);
        let r = review(&c, Permission::NodeClient);
        assert_eq!(r.spec.user.as_deref(), Some("system:bootstrap:abcdef"));
        assert_eq!(
            r.spec.groups.as_deref(),
            Some(&["system:bootstrappers".to_string()][..])
        );
        let a = r.spec.resource_attributes.unwrap();
        assert_eq!(
            (
                a.group.as_deref(),
                a.resource.as_deref(),
                a.subresource.as_deref(),
                a.verb.as_deref()
            ),
            (
                Some("certificates.k8s.io"),
                Some("certificatesigningrequests"),
                Some("nodeclient"),
                Some("create")
            )
        );
    }

    #[test]
    fn decided_or_issued_requests_are_left_alone() {
        let mut c = csr(KUBELET_CLIENT_SIGNER, "u", CLIENT);
        assert!(!settled(&c));
        let condition = |t: &str| CertificateSigningRequestCondition {
            type_: t.into(),
            status: "True".into(),
            ..Default::default()
        };
        c.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![condition("Failed")]),
            ..Default::default()
        });
        assert!(!settled(&c));
        for t in ["Approved", "Denied"] {
            c.status = Some(CertificateSigningRequestStatus {
                conditions: Some(vec![condition(t)]),
                ..Default::default()
            });
            assert!(settled(&c), "{t}");
        }
        c.status = Some(CertificateSigningRequestStatus {
            certificate: Some(ByteString(b"cert".to_vec())),
            ..Default::default()
        });
        assert!(settled(&c));
    }

    fn node(name: &str, addresses: &[(&str, &str)]) -> Node {
        use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn serving_csr(username: &str, groups: &[&str], usages: &[&str]) -> CertificateSigningRequest {
        let mut c = csr(KUBELET_SERVING_SIGNER, username, usages);
        c.spec.groups = Some(groups.iter().map(|s| s.to_string()).collect());
        c
    }

    fn serving_request(cn: &str, orgs: &[&str], dns: &[&str], ips: &[&str]) -> certs::Request {
        certs::Request {
            ip_addresses: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ..request(cn, orgs, dns)
        }
    }

    const SERVING: &[&str] = &["digital signature", "key encipherment", "server auth"];

    #[test]
    fn a_serving_request_is_approved_only_for_the_nodes_own_names_and_addresses() {
        let n1 = node(
            "n1",
            &[
                ("InternalIP", "10.0.0.5"),
                ("ExternalIP", "203.0.113.7"),
                ("Hostname", "host-1"),
                ("InternalDNS", "n1.internal"),
            ],
        );
        let good = serving_csr("system:node:n1", &["system:nodes"], SERVING);
        assert_eq!(serving_node(&good), Some("n1"));
        let ok = serving_request(
            "system:node:n1",
            &["system:nodes"],
            &["n1", "host-1", "n1.internal"],
            &["10.0.0.5", "203.0.113.7"],
        );
        assert_eq!(check_kubelet_serving(&good, &ok, &n1), Ok(()));
        // ECDSA keys: no key encipherment.
        let ecdsa = serving_csr(
            "system:node:n1",
            &["system:nodes"],
            &["digital signature", "server auth"],
        );
        assert_eq!(check_kubelet_serving(&ecdsa, &ok, &n1), Ok(()));

        let sub = |dns: &[&str], ips: &[&str]| {
            serving_request("system:node:n1", &["system:nodes"], dns, ips)
        };
        let email = certs::Request {
            email_addresses: vec!["a@b.c".into()],
            ..sub(&["n1"], &[])
        };
        let uri = certs::Request {
            uris: vec!["spiffe://x".into()],
            ..sub(&["n1"], &[])
        };
        let cases: Vec<(CertificateSigningRequest, certs::Request, &str)> = vec![
            (
                good.clone(),
                sub(&["n2"], &[]),
                "DNS name \"n2\" is not one of Node n1's",
            ),
            (
                good.clone(),
                sub(&["kubernetes.default.svc"], &["10.0.0.5"]),
                "DNS name \"kubernetes.default.svc\" is not one of Node n1's",
            ),
            (
                good.clone(),
                sub(&[], &["10.0.0.6"]),
                "IP address 10.0.0.6 is not one of Node n1's",
            ),
            (good.clone(), sub(&[], &[]), "no DNS or IP name"),
            (good.clone(), email, "email and URI names are not allowed"),
            (good.clone(), uri, "email and URI names are not allowed"),
            (
                good.clone(),
                serving_request("system:node:n2", &["system:nodes"], &["n1"], &[]),
                "the subject's common name is not system:node:n1",
            ),
            (
                good.clone(),
                serving_request(
                    "system:node:n1",
                    &["system:nodes", "system:masters"],
                    &["n1"],
                    &[],
                ),
                "the subject's organization is not exactly [system:nodes]",
            ),
            (
                serving_csr(
                    "system:node:n1",
                    &["system:nodes"],
                    &["digital signature", "server auth", "client auth"],
                ),
                sub(&["n1"], &[]),
                "usage \"client auth\" is not for a serving certificate",
            ),
            (
                serving_csr("system:node:n1", &["system:nodes"], &["digital signature"]),
                sub(&["n1"], &[]),
                "usages do not include server auth",
            ),
            (
                serving_csr("system:node:n2", &["system:nodes"], SERVING),
                sub(&["n1"], &[]),
                "the requester is not system:node:n1 in system:nodes",
            ),
        ];
        for (c, r, why) in cases {
            assert_eq!(check_kubelet_serving(&c, &r, &n1), Err(why.to_string()));
        }
        // Not a node's own request: not this approver's.
        assert_eq!(
            serving_node(&serving_csr("system:node:n1", &["people"], SERVING)),
            None
        );
        assert_eq!(
            serving_node(&serving_csr("alice", &["system:nodes"], SERVING)),
            None
        );
        assert_eq!(
            serving_node(&csr(KUBELET_CLIENT_SIGNER, "system:node:n1", SERVING)),
            None
        );
    }

    #[test]
    fn the_proxy_identity_is_approved_for_bootstrappers_nodes_and_its_renewal_only() {
        let proxy = request("system:kube-proxy", &[], &[]);
        let client = &["digital signature", "client auth"][..];
        let from = |groups: &[&str], usages: &[&str]| {
            let mut c = csr(certs::CLIENT_SIGNER, "system:bootstrap:abcdef", usages);
            c.spec.groups = Some(groups.iter().map(|s| s.to_string()).collect());
            c
        };
        assert_eq!(
            check_proxy_client(&from(&["system:bootstrappers"], client), &proxy),
            Ok(())
        );
        assert_eq!(
            check_proxy_client(&from(&["system:nodes"], CLIENT), &proxy),
            Ok(())
        );
        let cases = [
            (
                from(&["people"], client),
                proxy.clone(),
                "the requester is not system:kube-proxy and in neither system:bootstrappers nor system:nodes",
            ),
            (
                from(&["system:nodes"], client),
                request("system:kube-proxy", &["system:masters"], &[]),
                "the subject is not exactly CN=system:kube-proxy",
            ),
            (
                from(&["system:nodes"], client),
                request("admin", &[], &[]),
                "the subject is not exactly CN=system:kube-proxy",
            ),
            (
                from(&["system:nodes"], client),
                request("system:kube-proxy", &[], &["x"]),
                "alternative names are not allowed",
            ),
            (
                from(&["system:nodes"], &["client auth", "server auth"]),
                proxy.clone(),
                "usages are not client auth (with digital signature, key encipherment)",
            ),
            (
                from(&["system:nodes"], &["digital signature"]),
                proxy.clone(),
                "usages are not client auth (with digital signature, key encipherment)",
            ),
        ];
        for (c, r, why) in cases {
            assert_eq!(check_proxy_client(&c, &r), Err(why.to_string()));
        }
        // The proxy renewing its own certificate.
        let mut renewal = from(&["system:authenticated"], client);
        renewal.spec.username = Some("system:kube-proxy".into());
        assert_eq!(check_proxy_client(&renewal, &proxy), Ok(()));
        let mut other = from(&["system:nodes"], client);
        other.spec.signer_name = KUBELET_CLIENT_SIGNER.into();
        assert!(check_proxy_client(&other, &proxy).is_err());
    }
}
