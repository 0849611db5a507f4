//! The CSR approving controller (kube-controller-manager's `csrapproving`): it approves a
//! kubelet's request for a client certificate (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, subject `CN=system:node:<name>,
//! O=system:nodes`, client usages only) when a SubjectAccessReview says the requester may
//! `create` `certificatesigningrequests/selfnodeclient` (a node renewing its own certificate)
//! or `certificatesigningrequests/nodeclient` (a bootstrapping node: the bootstrap policy
//! grants that to `system:bootstrappers` once bound as kubeadm binds it). Anything else waits
//! for a person (`kubectl certificate approve`) or another approver.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, Client};
use skiff_api::certificates::{self as certs, KUBELET_CLIENT_SIGNER};
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
    client: Client,
}

impl Controller for CsrApprover {
    const SERVICE_ACCOUNT: &'static str = "certificate-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let csrs = ctx.csrs();
        crate::controller::queue_every_change(&csrs, queue);
        Arc::new(CsrApprover {
            csrs,
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
        let tried = recognize(&csr, &req);
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        for &permission in &tried {
            let answer = reviews
                .create(&PostParams::default(), &review(&csr, permission))
                .await?;
            if !answer.status.is_some_and(|s| s.allowed) {
                continue;
            }
            let mut approved = (*csr).clone();
            let status = approved.status.get_or_insert_with(Default::default);
            status.conditions.get_or_insert_with(Vec::new).push(
                CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("AutoApproved".into()),
                    message: Some(permission.message().into()),
                    last_update_time: Some(Time(jiff::Timestamp::now())),
                    ..Default::default()
                },
            );
            let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
            api.replace_subresource("approval", key, &PostParams::default(), &approved)
                .await?;
            tracing::info!(csr = %key, permission = permission.subresource(), "approved");
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
}
