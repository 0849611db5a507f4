//! The zero-setup PKI (as k3s does it): on first start a cluster CA, a serving certificate and
//! an admin client certificate (and the apiserver's client certificate for kubelets) are created in `<data-dir>/pki`; later starts reuse them, issuing anew a certificate about to expire
//! (certificates last a year, the CA ten). Also
//! writes the admin kubeconfig that the real kubectl uses.

use std::path::{Path, PathBuf};

pub use skiff_common::pki::{CertKey, PkiError, issue, kubeconfig, write_kubeconfig};
use skiff_common::pki::{load_or, load_or_issue, new_ca};

/// The cluster's certificates.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertKey,
    pub serving: CertKey,
    pub admin: CertKey,
    /// The apiserver's client certificate for kubelets (logs, exec), as kube-apiserver's
    /// `--kubelet-client-certificate`.
    pub kubelet_client: CertKey,
}

impl Pki {
    /// Loads the PKI from `<data_dir>/pki`, creating whatever is missing. `sans` are the
    /// serving certificate's names and IPs.
    pub fn ensure(data_dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
        Pki::ensure_in(&data_dir.join("pki"), sans)
    }

    /// Loads the PKI from `dir` (`--cert-dir`), creating whatever is missing: certificates
    /// put there beforehand (by skiffadm) are used as long as the CA there signed them.
    pub fn ensure_in(dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
        let dir = dir.to_path_buf();
        let ca = load_or(&dir, "ca", new_ca)?;
        let serving = load_or_issue(&dir, "apiserver", &ca, || {
            issue(&ca, "kube-apiserver", &[], sans)
        })?;
        let admin = load_or_issue(&dir, "admin", &ca, || {
            issue(&ca, "admin", &["system:masters"], &[])
        })?;
        let kubelet_client = load_or_issue(&dir, "kubelet-client", &ca, || {
            issue(
                &ca,
                "kube-apiserver-kubelet-client",
                &["system:masters"],
                &[],
            )
        })?;
        Ok(Pki {
            dir,
            ca,
            serving,
            admin,
            kubelet_client,
        })
    }
}
