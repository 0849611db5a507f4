//! Each component of a local cluster gets its own identity, as kubeadm gives them: a client
//! certificate from the cluster CA naming the user Kubernetes' bootstrap policy grants that
//! component's rights to (`system:kube-scheduler`, `system:node:<name>` in `system:nodes`,
//! `system:kube-proxy`, ...), in a kubeconfig of its own. Only the admin is `system:masters`.

use std::path::PathBuf;

use anyhow::Context as _;
use skiff_common::pki::{self, CertKey};

use super::layout::Layout;

/// Who a component is.
pub struct Identity<'a> {
    /// The file name: `<file>.kubeconfig`, `<file>.crt`, `<file>.key`.
    pub file: &'a str,
    pub user: &'a str,
    pub groups: &'a [&'a str],
}

pub const SCHEDULER: Identity<'static> = Identity {
    file: "scheduler",
    user: "system:kube-scheduler",
    groups: &[],
};

pub const CONTROLLER_MANAGER: Identity<'static> = Identity {
    file: "controller-manager",
    user: "system:kube-controller-manager",
    groups: &[],
};

pub const PROXY: Identity<'static> = Identity {
    file: "proxy",
    user: "system:kube-proxy",
    groups: &[],
};

fn dir(l: &Layout) -> PathBuf {
    l.apiserver_dir().join("identities")
}

fn ca(l: &Layout) -> anyhow::Result<CertKey> {
    let pki_dir = l.apiserver_dir().join("pki");
    let read = |f: &str| -> anyhow::Result<String> {
        let p = pki_dir.join(f);
        std::fs::read_to_string(&p)
            .with_context(|| format!("reading the cluster CA {}", p.display()))
    };
    Ok(CertKey {
        cert_pem: read("ca.crt")?,
        key_pem: read("ca.key")?,
    })
}

/// Writes (or rewrites, for a new server address) the kubeconfig of `id` for `server`; the
/// certificate is issued once and reused until it nears expiry.
pub fn kubeconfig(l: &Layout, server: &str, id: &Identity<'_>) -> anyhow::Result<PathBuf> {
    let ca = ca(l)?;
    let dir = dir(l);
    let cert = pki::load_or_issue(&dir, id.file, &ca, || {
        pki::issue(&ca, id.user, id.groups, &[])
    })?;
    let path = dir.join(format!("{}.kubeconfig", id.file));
    pki::write_kubeconfig(
        &path,
        &pki::kubeconfig(server, &ca.cert_pem, &cert, id.user),
    )?;
    Ok(path)
}

/// The kubelet of node `name`: `system:node:<name>` in `system:nodes`.
pub fn kubelet(l: &Layout, server: &str, node: &str) -> anyhow::Result<PathBuf> {
    let file = format!("kubelet-{node}");
    let user = format!("system:node:{node}");
    kubeconfig(
        l,
        server,
        &Identity {
            file: &file,
            user: &user,
            groups: &["system:nodes"],
        },
    )
}

/// The serving certificate of node `name`'s kubelet, issued by the cluster CA for the node's
/// name and address (the apiserver verifies it: `--kubelet-certificate-authority`). Returns the
/// certificate and key files.
pub fn kubelet_serving(l: &Layout, node: &str, ip: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ca = ca(l)?;
    let dir = dir(l);
    let file = format!("kubelet-{node}-serving");
    pki::load_or_issue(&dir, &file, &ca, || {
        pki::issue(
            &ca,
            &format!("system:node:{node}"),
            &["system:nodes"],
            &[ip.to_string(), node.to_string()],
        )
    })?;
    Ok((
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    ))
}
