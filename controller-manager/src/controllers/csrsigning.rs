//! The CSR signing controller (kube-controller-manager's `csrsigning`): it issues the
//! certificate of every approved request for one of the built-in signers it serves
//! (`kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kube-apiserver-client`,
//! `kubernetes.io/kubelet-serving`) with the cluster CA of `--cluster-signing-cert-file` and
//! `--cluster-signing-key-file`, for `--cluster-signing-duration` or the shorter
//! `spec.expirationSeconds`, writing `status.certificate` through the status subresource. A
//! request that does not suit its signer gets a `Failed` condition instead; requests for other
//! signers are someone else's.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use skiff_api::certificates as certs;
use skiff_client::informer::Informer;
use skiff_common::pki::CertKey;

use crate::context::Context;
use crate::controller::{Controller, Error, Reconciler, Result};
use crate::workqueue::WorkQueue;

/// The signers this controller issues for.
pub const SIGNERS: &[&str] = &[
    certs::KUBELET_CLIENT_SIGNER,
    certs::CLIENT_SIGNER,
    certs::KUBELET_SERVING_SIGNER,
];

/// The condition types of `csr`.
fn has(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// Whether `csr` waits for this signer: approved, not denied or failed, not yet issued, and
/// for one of [`SIGNERS`].
pub fn wants_signing(csr: &CertificateSigningRequest) -> bool {
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    SIGNERS.contains(&csr.spec.signer_name.as_str())
        && has(csr, "Approved")
        && !has(csr, "Denied")
        && !has(csr, "Failed")
        && !issued
}

/// How long the certificate for `csr` lasts: `max` (`--cluster-signing-duration`), or less
/// if `spec.expirationSeconds` asks for less (upstream's `DurationFromSeconds` and
/// `min`).
pub fn lifetime(csr: &CertificateSigningRequest, max: Duration) -> Duration {
    match csr.spec.expiration_seconds {
        Some(s) => max.min(Duration::from_secs(u64::try_from(s).unwrap_or(0))),
        None => max,
    }
}

/// What the signer decides for an approved request: the certificate's PEM, or why the
/// request is refused (the `Failed` condition's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Issued(String),
    Refused(String),
}

/// Signs `csr` with `ca`, or refuses it when it does not suit its signer.
pub fn sign(
    csr: &CertificateSigningRequest,
    ca: &CertKey,
    max: Duration,
) -> std::result::Result<Outcome, Error> {
    let pem = &csr.spec.request.0;
    let req = certs::parse_request(pem)
        .map_err(|e| Error::Invalid(format!("unable to parse csr {:?}: {e}", csr.name_any())))?;
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if let Err(why) = certs::check_for_signer(&csr.spec.signer_name, &req, &usages) {
        return Ok(Outcome::Refused(why));
    }
    let pem = String::from_utf8_lossy(pem);
    skiff_common::pki::sign_request(ca, &pem, &usages, lifetime(csr, max))
        .map(Outcome::Issued)
        .map_err(|e| Error::Invalid(format!("error auto signing csr: {e}")))
}

pub struct CsrSigner {
    csrs: Arc<Informer<CertificateSigningRequest>>,
    client: Client,
    ca: CertKey,
    max: Duration,
}

impl Controller for CsrSigner {
    const SERVICE_ACCOUNT: &'static str = "certificate-controller";

    fn disabled(ctx: &Context) -> Option<String> {
        ctx.settings.cluster_signing.is_none().then(|| {
            "no --cluster-signing-cert-file and --cluster-signing-key-file given".to_string()
        })
    }

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let csrs = ctx.csrs();
        crate::controller::queue_every_change(&csrs, queue);
        Arc::new(CsrSigner {
            csrs,
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ca: ctx
                .settings
                .cluster_signing
                .clone()
                .expect("disabled() checked it"),
            max: ctx.settings.cluster_signing_duration,
        })
    }
}

impl Reconciler for CsrSigner {
    const NAME: &'static str = "csrsigning";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let Some(csr) = self.csrs.get(None, key) else {
            return Ok(None);
        };
        if !wants_signing(&csr) {
            return Ok(None);
        }
        let mut updated = (*csr).clone();
        let status = updated.status.get_or_insert_with(Default::default);
        match sign(&csr, &self.ca, self.max)? {
            Outcome::Issued(pem) => status.certificate = Some(ByteString(pem.into_bytes())),
            Outcome::Refused(why) => {
                tracing::info!(csr = %key, reason = %why, "request does not suit its signer");
                status.conditions.get_or_insert_with(Vec::new).push(
                    CertificateSigningRequestCondition {
                        type_: "Failed".into(),
                        status: "True".into(),
                        reason: Some("SignerValidationFailure".into()),
                        message: Some(why),
                        last_update_time: Some(Time(jiff::Timestamp::now())),
                        ..Default::default()
                    },
                );
            }
        }
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        api.replace_status(key, &PostParams::default(), &updated)
            .await?;
        tracing::info!(csr = %key, signer = %csr.spec.signer_name, "signed");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };

    fn request_pem(cn: &str, orgs: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn approved(signer: &str, pem: &str, usages: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: kube::api::ObjectMeta {
                name: Some("c".into()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.as_bytes().to_vec()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            status: Some(CertificateSigningRequestStatus {
                conditions: Some(vec![CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];
    const YEAR: Duration = Duration::from_secs(8760 * 3600);

    #[test]
    fn only_approved_unissued_requests_for_its_signers_are_signed() {
        let pem = request_pem("system:node:n1", &["system:nodes"]);
        let c = approved(certs::KUBELET_CLIENT_SIGNER, &pem, CLIENT);
        assert!(wants_signing(&c));
        let mut pending = c.clone();
        pending.status = None;
        assert!(!wants_signing(&pending));
        let other = approved("example.com/mine", &pem, CLIENT);
        assert!(!wants_signing(&other));
        let mut issued = c.clone();
        issued.status.as_mut().unwrap().certificate = Some(ByteString(b"x".to_vec()));
        assert!(!wants_signing(&issued));
        let mut failed = c.clone();
        failed
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(CertificateSigningRequestCondition {
                type_: "Failed".into(),
                status: "True".into(),
                ..Default::default()
            });
        assert!(!wants_signing(&failed));
    }

    #[test]
    fn a_kubelet_client_request_gets_a_certificate_naming_the_node() {
        let ca = skiff_common::pki::new_ca().unwrap();
        let pem = request_pem("system:node:n1", &["system:nodes"]);
        let mut c = approved(certs::KUBELET_CLIENT_SIGNER, &pem, CLIENT);
        c.spec.expiration_seconds = Some(3600);
        let Outcome::Issued(cert) = sign(&c, &ca, YEAR).unwrap() else {
            panic!("refused");
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let x = block.parse_x509().unwrap();
        assert_eq!(x.subject().to_string(), "CN=system:node:n1, O=system:nodes");
        let v = x.validity();
        // An hour from now, started five minutes back.
        assert_eq!(v.not_after.timestamp() - v.not_before.timestamp(), 3900);
    }

    #[test]
    fn a_request_unfit_for_its_signer_fails_with_the_reason() {
        let ca = skiff_common::pki::new_ca().unwrap();
        let pem = request_pem("alice", &["devs"]);
        let c = approved(certs::KUBELET_CLIENT_SIGNER, &pem, CLIENT);
        assert_eq!(
            sign(&c, &ca, YEAR).unwrap(),
            Outcome::Refused("subject organization is not system:nodes".into())
        );
        let c = approved(certs::CLIENT_SIGNER, &pem, &["client auth", "server auth"]);
        assert_eq!(
            sign(&c, &ca, YEAR).unwrap(),
            Outcome::Refused("invalid usage for client certificate: server auth".into())
        );
        let c = approved(certs::CLIENT_SIGNER, &pem, CLIENT);
        assert!(matches!(sign(&c, &ca, YEAR).unwrap(), Outcome::Issued(_)));
    }

    #[test]
    fn the_lifetime_is_the_flag_or_the_shorter_request() {
        let mut c = approved(certs::CLIENT_SIGNER, "", CLIENT);
        assert_eq!(lifetime(&c, YEAR), YEAR);
        c.spec.expiration_seconds = Some(600);
        assert_eq!(lifetime(&c, YEAR), Duration::from_secs(600));
        c.spec.expiration_seconds = Some(i32::MAX);
        assert_eq!(lifetime(&c, YEAR), YEAR);
    }
}
