//! The machine's PKI as `kubeadm init` lays it out (under `/etc/skiff`): the cluster CA, the
//! apiserver's serving certificate, the service account key pair, the front-proxy CA, and a
//! kubeconfig with its own client certificate for each identity; plus `certs
//! check-expiration` and `certs renew` (all, one, or those expiring soon, which a daily timer
//! or `skiffadm supervise` runs).
//!
//! Admins are kubeadm 1.29's: `admin.conf` is `kubernetes-admin` in `kubeadm:cluster-admins`
//! (bound to `cluster-admin` by a ClusterRoleBinding, so it can be revoked), and
//! `super-admin.conf` is `kubernetes-super-admin` in `system:masters`, which init uses until
//! that binding exists. Neither ever leaves the control-plane machine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use skiff_common::pki::{self, CertKey};

use crate::Paths;
use crate::components::Unit;

/// A kubeconfig with an embedded client certificate that init writes and `certs renew`
/// renews.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// `/etc/skiff/<conf>.conf`.
    pub conf: &'static str,
    pub user: &'static str,
    pub groups: &'static [&'static str],
}

/// The control plane's kubeconfigs with embedded certificates.
pub const IDENTITIES: [Identity; 5] = [
    Identity {
        conf: "admin",
        user: "kubernetes-admin",
        groups: &["kubeadm:cluster-admins"],
    },
    Identity {
        conf: "super-admin",
        user: "kubernetes-super-admin",
        groups: &["system:masters"],
    },
    Identity {
        conf: "scheduler",
        user: "system:kube-scheduler",
        groups: &[],
    },
    Identity {
        conf: "controller-manager",
        user: "system:kube-controller-manager",
        groups: &[],
    },
    Identity {
        conf: "proxy",
        user: "system:kube-proxy",
        groups: &[],
    },
];

/// The group `admin.conf`'s user is in.
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";

/// The names the apiserver's serving certificate must carry (kubeadm's list).
pub fn apiserver_sans(
    advertise: &str,
    endpoint_host: Option<&str>,
    node_name: &str,
    first_service_ip: &str,
    dns_domain: &str,
) -> Vec<String> {
    let mut sans = vec![
        node_name.to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        format!("kubernetes.default.svc.{dns_domain}"),
        first_service_ip.to_string(),
        advertise.to_string(),
        "127.0.0.1".to_string(),
        "localhost".to_string(),
    ];
    if let Some(h) = endpoint_host {
        sans.push(h.to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

/// Creates the control plane's PKI and kubeconfigs (for `server`) and the control-plane
/// node's kubelet credentials; returns the CA.
pub fn create(
    p: &Paths,
    sans: &[String],
    server: &str,
    node_name: &str,
) -> anyhow::Result<CertKey> {
    let dir = p.pki();
    let ca = pki::load_or(&dir, "ca", pki::new_ca)?;
    pki::load_or_issue(&dir, "apiserver", &ca, || {
        pki::issue(&ca, "kube-apiserver", &[], sans)
    })?;
    pki::load_or(&dir, "front-proxy-ca", || {
        pki::new_ca_named("front-proxy-ca")
    })?;
    service_account_keys(&dir)?;
    for id in IDENTITIES {
        let cert = pki::issue(&ca, id.user, id.groups, &[])?;
        pki::write_kubeconfig(
            &p.conf(id.conf),
            &pki::kubeconfig(server, &ca.cert_pem, &cert, id.user),
        )?;
    }
    // The kubelet's client certificate where its rotation keeps it, as kubeadm's
    // kubelet-finalize phase leaves it; kubelet.conf points at the file.
    let user = format!("system:node:{node_name}");
    let kubelet = pki::issue(&ca, &user, &["system:nodes"], &[])?;
    // The kubelet's own file names: a timestamped file and the `-current` link to it, which
    // its rotation later points at a new file.
    let dir = p.kubelet_cert_dir();
    let stamp = jiff::Timestamp::now()
        .strftime("%Y-%m-%d-%H-%M-%S")
        .to_string();
    let file = dir.join(format!("kubelet-client-{stamp}.pem"));
    pki::write(
        &file,
        &format!("{}{}", kubelet.cert_pem, kubelet.key_pem),
        true,
    )?;
    let current = dir.join("kubelet-client-current.pem");
    let _ = std::fs::remove_file(&current);
    std::os::unix::fs::symlink(&file, &current)
        .with_context(|| format!("linking {}", current.display()))?;
    pki::write_kubeconfig(
        &p.conf("kubelet"),
        &pki::file_kubeconfig(server, &ca.cert_pem, &user, &current),
    )?;
    if !p.encryption_config().exists() {
        pki::write(&p.encryption_config(), &pki::encryption_config(), true)?;
    }
    Ok(ca)
}

/// `sa.key` (PKCS#8 ECDSA P-256, what the apiserver signs ServiceAccount tokens with) and
/// `sa.pub`.
fn service_account_keys(dir: &Path) -> anyhow::Result<()> {
    let key_path = dir.join("sa.key");
    if key_path.exists() {
        return Ok(());
    }
    let key = rcgen::KeyPair::generate()?;
    pki::write(&key_path, &key.serialize_pem(), true)?;
    pki::write(&dir.join("sa.pub"), &key.public_key_pem(), false)?;
    Ok(())
}

/// The CA of the PKI at `p`.
pub fn load_ca(p: &Paths) -> anyhow::Result<CertKey> {
    let read = |f: &str| {
        let path = p.pki().join(f);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}; is this a control-plane machine set up by `skiffadm init`?",
                path.display()
            )
        })
    };
    Ok(CertKey {
        cert_pem: read("ca.crt")?,
        key_pem: read("ca.key")?,
    })
}

/// The certificates `check-expiration` shows and `renew` renews, by kubeadm's names: a
/// kubeconfig's embedded certificate, or a `.crt`/`.key` pair in the PKI folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Managed {
    Kubeconfig { name: String, path: PathBuf },
    Pair { name: String, cert: PathBuf },
}

impl Managed {
    pub fn name(&self) -> &str {
        match self {
            Managed::Kubeconfig { name, .. } | Managed::Pair { name, .. } => name,
        }
    }
}

/// Every renewable certificate present, sorted by name.
pub fn managed(p: &Paths) -> Vec<Managed> {
    let mut out: Vec<Managed> = IDENTITIES
        .iter()
        .map(|id| Managed::Kubeconfig {
            name: format!("{}.conf", id.conf),
            path: p.conf(id.conf),
        })
        .chain(
            [
                ("apiserver", "apiserver.crt"),
                ("apiserver-kubelet-client", "kubelet-client.crt"),
            ]
            .into_iter()
            .map(|(name, file)| Managed::Pair {
                name: name.into(),
                cert: p.pki().join(file),
            }),
        )
        // A kubeconfig that points at a certificate file (a joined node's proxy.conf) holds no
        // certificate of ours: the component rotates that one itself.
        .filter(|m| match m {
            Managed::Kubeconfig { path, .. } => path.exists() && kubeconfig_cert(path).is_ok(),
            Managed::Pair { cert, .. } => cert.exists(),
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

/// The client certificate (PEM) embedded in a kubeconfig, and the whole document.
fn kubeconfig_cert(path: &Path) -> anyhow::Result<(String, serde_yaml::Value)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let kc: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a kubeconfig", path.display()))?;
    let data = kc["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .ok_or_else(|| anyhow!("{} has no client-certificate-data", path.display()))?;
    let pem = base64::engine::general_purpose::STANDARD.decode(data.trim())?;
    Ok((String::from_utf8(pem)?, kc))
}

fn cert_of(m: &Managed) -> anyhow::Result<String> {
    match m {
        Managed::Kubeconfig { path, .. } => Ok(kubeconfig_cert(path)?.0),
        Managed::Pair { cert, .. } => {
            std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))
        }
    }
}

/// When a certificate expires (Unix seconds).
pub fn not_after(pem: &str) -> anyhow::Result<i64> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

fn expires_text(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%b %d, %Y %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn layout(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("{}\n", cells.join("   ").trim_end())
        })
        .collect()
}

/// `certs check-expiration`'s two tables (kubeadm's columns), as of `now` (Unix seconds).
pub fn check_expiration(p: &Paths, now: i64) -> anyhow::Result<String> {
    let mut rows = vec![
        [
            "CERTIFICATE",
            "EXPIRES",
            "RESIDUAL TIME",
            "CERTIFICATE AUTHORITY",
            "EXTERNALLY MANAGED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for m in managed(p) {
        let end = not_after(&cert_of(&m)?)?;
        rows.push(vec![
            m.name().to_string(),
            expires_text(end),
            crate::token::short_duration(end - now),
            "ca".into(),
            "no".into(),
        ]);
    }
    let mut cas = vec![
        [
            "CERTIFICATE AUTHORITY",
            "EXPIRES",
            "RESIDUAL TIME",
            "EXTERNALLY MANAGED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for name in ["ca", "front-proxy-ca"] {
        let path = p.pki().join(format!("{name}.crt"));
        let Ok(pem) = std::fs::read_to_string(&path) else {
            continue;
        };
        let end = not_after(&pem)?;
        // A CA without its key here is someone else's to renew (kubeadm's external CA).
        let external = !p.pki().join(format!("{name}.key")).exists();
        cas.push(vec![
            name.to_string(),
            expires_text(end),
            crate::token::short_duration(end - now),
            if external { "yes" } else { "no" }.into(),
        ]);
    }
    Ok(format!("{}\n{}", layout(&rows), layout(&cas)))
}

/// The subject and names of a certificate, to issue it again.
fn subject(pem: &str) -> anyhow::Result<(String, Vec<String>, Vec<String>)> {
    use x509_parser::extensions::GeneralName;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .next()
        .unwrap_or_default()
        .to_string();
    let orgs = cert
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(String::from))
        .collect();
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    sans.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok((cn, orgs, sans))
}

/// Issues `pem`'s certificate again from `ca`: same subject and names, a new key, a new year.
fn reissue(ca: &CertKey, pem: &str) -> anyhow::Result<CertKey> {
    let (cn, orgs, sans) = subject(pem)?;
    let orgs: Vec<&str> = orgs.iter().map(String::as_str).collect();
    Ok(pki::issue(ca, &cn, &orgs, &sans)?)
}

/// The services that read `m`'s certificate at start, and so must restart to use a renewed
/// one. The admins' kubeconfigs belong to people and skiffadm: no service reads them.
pub fn readers(m: &Managed) -> &'static [Unit] {
    match m.name() {
        "apiserver" | "apiserver-kubelet-client" => &[Unit::Apiserver],
        "scheduler.conf" => &[Unit::Scheduler],
        "controller-manager.conf" => &[Unit::ControllerManager],
        "proxy.conf" => &[Unit::Proxy],
        _ => &[],
    }
}

/// The services to restart after renewing `renewed`, in start order, each once.
pub fn to_restart<'a>(renewed: impl IntoIterator<Item = &'a Managed>) -> Vec<Unit> {
    let set: BTreeSet<Unit> = renewed
        .into_iter()
        .flat_map(|m| readers(m))
        .copied()
        .collect();
    set.into_iter().collect()
}

/// Whether this machine holds the CA key that the control plane's certificates are renewed
/// with (a control plane made by `skiffadm init`; a joined node has only the CA certificate).
pub fn can_renew(p: &Paths) -> bool {
    p.pki().join("ca.key").exists()
}

/// Which of `certs` (each with its expiry, Unix seconds) expire within `within` of `now`: the
/// due ones and the others.
pub fn choose(certs: Vec<(Managed, i64)>, now: i64, within: Duration) -> Due {
    let limit = now.saturating_add(i64::try_from(within.as_secs()).unwrap_or(i64::MAX));
    let (due, later) = certs.into_iter().partition(|(_, end)| *end <= limit);
    Due { due, later }
}

/// Certificates split by [`choose`], each with its expiry (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub due: Vec<(Managed, i64)>,
    pub later: Vec<(Managed, i64)>,
}

/// Renews the certificates that expire within `within` of `now` (Unix seconds); returns them
/// renewed and the others untouched. Running it daily with [`RENEW_BEFORE`] as `within`
/// keeps every control-plane certificate valid (the apiserver applies the same margin to the
/// certificates it loads at start).
///
/// [`RENEW_BEFORE`]: skiff_common::pki::RENEW_BEFORE
pub fn renew_expiring(p: &Paths, within: Duration, now: i64) -> anyhow::Result<Due> {
    let ca = load_ca(p)?;
    let mut certs = Vec::new();
    for m in managed(p) {
        let end = not_after(&cert_of(&m)?)
            .with_context(|| format!("reading certificate {}", m.name()))?;
        certs.push((m, end));
    }
    let chosen = choose(certs, now, within);
    for (m, _) in &chosen.due {
        renew_one(&ca, m).with_context(|| format!("renewing certificate {}", m.name()))?;
    }
    Ok(chosen)
}

/// Renews the named certificate (`all`: every one); returns the names renewed.
pub fn renew(p: &Paths, which: &str) -> anyhow::Result<Vec<String>> {
    let ca = load_ca(p)?;
    let all = managed(p);
    let chosen: Vec<&Managed> = all
        .iter()
        .filter(|m| which == "all" || m.name() == which)
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(Managed::name).collect();
        anyhow::bail!(
            "unknown certificate {which:?}; use all or one of: {}",
            names.join(", ")
        );
    }
    let mut done = Vec::new();
    for m in chosen {
        renew_one(&ca, m)?;
        done.push(m.name().to_string());
    }
    Ok(done)
}

/// Issues `m` again from `ca`, in place.
fn renew_one(ca: &CertKey, m: &Managed) -> anyhow::Result<()> {
    match m {
        Managed::Kubeconfig { path, .. } => {
            let (pem, mut kc) = kubeconfig_cert(path)?;
            let new = reissue(ca, &pem)?;
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let user = &mut kc["users"][0]["user"];
            user["client-certificate-data"] = b64(&new.cert_pem).into();
            user["client-key-data"] = b64(&new.key_pem).into();
            pki::write_kubeconfig(path, &serde_yaml::to_string(&kc)?)?;
        }
        Managed::Pair { cert, .. } => {
            let pem = std::fs::read_to_string(cert)?;
            let new = reissue(ca, &pem)?;
            pki::write(&cert.with_extension("key"), &new.key_pem, true)?;
            pki::write(cert, &new.cert_pem, false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_pki_lists_renews_and_keeps_names() {
        let root = tempfile::tempdir().unwrap();
        let p = Paths::under(root.path());
        let sans = apiserver_sans(
            "10.0.0.1",
            Some("cp.example"),
            "cp1",
            "10.96.0.1",
            "cluster.local",
        );
        assert!(sans.contains(&"kubernetes.default.svc.cluster.local".to_string()));
        let ca = create(&p, &sans, "https://10.0.0.1:6443", "cp1").unwrap();
        assert!(p.conf("admin").exists() && p.pki().join("sa.pub").exists());
        let kubelet = std::fs::read_to_string(p.conf("kubelet")).unwrap();
        assert!(kubelet.contains("kubelet-client-current.pem"), "{kubelet}");

        // A minute on, as anyone reading it: a year less a minute is 364 days.
        let now = jiff::Timestamp::now().as_second() + 60;
        let table = check_expiration(&p, now).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0]
                .starts_with("CERTIFICATE               EXPIRES                  RESIDUAL TIME"),
            "{table}"
        );
        assert!(table.contains("admin.conf"), "{table}");
        assert!(table.contains("364d") && table.contains("9y"), "{table}");
        assert!(table.contains("CERTIFICATE AUTHORITY   EXPIRES"), "{table}");

        let before = std::fs::read_to_string(p.pki().join("apiserver.crt")).unwrap();
        let (_, kc_before) = kubeconfig_cert(&p.conf("admin")).unwrap();
        let done = renew(&p, "all").unwrap();
        assert!(
            done.contains(&"apiserver".to_string()) && done.contains(&"admin.conf".to_string())
        );
        let after = std::fs::read_to_string(p.pki().join("apiserver.crt")).unwrap();
        assert_ne!(before, after);
        assert_eq!(subject(&before).unwrap(), subject(&after).unwrap());
        assert!(pki::still_good(&after, &ca.cert_pem));
        let (pem, kc) = kubeconfig_cert(&p.conf("admin")).unwrap();
        assert_eq!(kc["clusters"], kc_before["clusters"]);
        assert_eq!(
            subject(&pem).unwrap().1,
            vec!["kubeadm:cluster-admins".to_string()]
        );
        assert!(renew(&p, "nope").is_err());
    }

    fn cert(name: &str) -> Managed {
        Managed::Pair {
            name: name.into(),
            cert: PathBuf::from(format!("/pki/{name}.crt")),
        }
    }

    #[test]
    fn renewal_chooses_what_expires_within_the_window_and_what_is_already_expired() {
        const DAY: i64 = 24 * 3600;
        let now = 1_000 * DAY;
        let within = Duration::from_secs(30 * DAY as u64);
        let certs = vec![
            (cert("expired"), now - DAY),
            (cert("in-ten-days"), now + 10 * DAY),
            (cert("on-the-edge"), now + 30 * DAY),
            (cert("in-31-days"), now + 31 * DAY),
            (cert("in-a-year"), now + 365 * DAY),
        ];
        let chosen = choose(certs, now, within);
        let names = |v: &[(Managed, i64)]| {
            v.iter()
                .map(|(m, _)| m.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&chosen.due),
            ["expired", "in-ten-days", "on-the-edge"]
        );
        assert_eq!(names(&chosen.later), ["in-31-days", "in-a-year"]);
        // Nothing is due in a zero window but what has expired.
        let chosen = choose(
            vec![(cert("a"), now + 1), (cert("b"), now - 1)],
            now,
            Duration::ZERO,
        );
        assert_eq!(names(&chosen.due), ["b"]);
    }

    #[test]
    fn renewed_certificates_restart_the_services_that_read_them() {
        let kc = |name: &str| Managed::Kubeconfig {
            name: format!("{name}.conf"),
            path: PathBuf::from(format!("/etc/skiff/{name}.conf")),
        };
        assert_eq!(to_restart(&[kc("admin"), kc("super-admin")]), []);
        assert_eq!(
            to_restart(&[
                kc("proxy"),
                cert("apiserver-kubelet-client"),
                kc("scheduler"),
                cert("apiserver"),
                kc("controller-manager"),
            ]),
            [
                Unit::Apiserver,
                Unit::Scheduler,
                Unit::ControllerManager,
                Unit::Proxy
            ]
        );
    }

    /// `pem`'s certificate issued again by `ca`, valid only until `until`.
    fn short_lived(ca: &CertKey, pem: &str, until: std::time::SystemTime) -> CertKey {
        let (cn, orgs, sans) = subject(pem).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, o);
        }
        params.not_before = (std::time::SystemTime::now() - Duration::from_secs(3600)).into();
        params.not_after = until.into();
        let issuer = rcgen::Issuer::from_ca_cert_pem(
            &ca.cert_pem,
            rcgen::KeyPair::from_pem(&ca.key_pem).unwrap(),
        )
        .unwrap();
        CertKey {
            cert_pem: params.signed_by(&key, &issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    #[test]
    fn renew_expiring_renews_only_the_short_lived_certificates_of_a_pki() {
        let root = tempfile::tempdir().unwrap();
        let p = Paths::under(root.path());
        let sans = apiserver_sans("10.0.0.1", None, "cp1", "10.96.0.1", "cluster.local");
        let ca = create(&p, &sans, "https://10.0.0.1:6443", "cp1").unwrap();
        // The apiserver's kubelet client certificate, which the apiserver makes in its
        // --cert-dir at its first start.
        let kubelet_client = pki::issue(
            &ca,
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            &[],
        )
        .unwrap();
        pki::write(
            &p.pki().join("kubelet-client.key"),
            &kubelet_client.key_pem,
            true,
        )
        .unwrap();
        pki::write(
            &p.pki().join("kubelet-client.crt"),
            &kubelet_client.cert_pem,
            false,
        )
        .unwrap();

        // The serving certificate expires in a day, the scheduler's expired an hour ago.
        let now = std::time::SystemTime::now();
        let serving_path = p.pki().join("apiserver.crt");
        let serving = short_lived(
            &ca,
            &std::fs::read_to_string(&serving_path).unwrap(),
            now + Duration::from_secs(24 * 3600),
        );
        pki::write(&p.pki().join("apiserver.key"), &serving.key_pem, true).unwrap();
        pki::write(&serving_path, &serving.cert_pem, false).unwrap();
        let (scheduler_pem, mut kc) = kubeconfig_cert(&p.conf("scheduler")).unwrap();
        let expired = short_lived(&ca, &scheduler_pem, now - Duration::from_secs(3600));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        kc["users"][0]["user"]["client-certificate-data"] = b64(&expired.cert_pem).into();
        kc["users"][0]["user"]["client-key-data"] = b64(&expired.key_pem).into();
        pki::write_kubeconfig(&p.conf("scheduler"), &serde_yaml::to_string(&kc).unwrap()).unwrap();
        let admin_before = std::fs::read_to_string(p.conf("admin")).unwrap();

        let now = jiff::Timestamp::now().as_second();
        let within = skiff_common::pki::RENEW_BEFORE;
        let done = renew_expiring(&p, within, now).unwrap();
        let names: Vec<&str> = done.due.iter().map(|(m, _)| m.name()).collect();
        assert_eq!(names, ["apiserver", "scheduler.conf"]);
        let later: Vec<&str> = done.later.iter().map(|(m, _)| m.name()).collect();
        assert_eq!(
            later,
            [
                "admin.conf",
                "apiserver-kubelet-client",
                "controller-manager.conf",
                "proxy.conf",
                "super-admin.conf"
            ]
        );
        assert_eq!(
            to_restart(done.due.iter().map(|(m, _)| m)),
            [Unit::Apiserver, Unit::Scheduler]
        );

        // Renewed: a year again, the same names, the new key beside the certificate.
        let serving_now = std::fs::read_to_string(&serving_path).unwrap();
        assert!(pki::still_good(&serving_now, &ca.cert_pem));
        assert_eq!(
            subject(&serving_now).unwrap(),
            subject(&serving.cert_pem).unwrap()
        );
        let key = std::fs::read_to_string(p.pki().join("apiserver.key")).unwrap();
        assert_ne!(key, serving.key_pem);
        let (scheduler_now, _) = kubeconfig_cert(&p.conf("scheduler")).unwrap();
        assert!(pki::still_good(&scheduler_now, &ca.cert_pem));
        assert_eq!(subject(&scheduler_now).unwrap().0, "system:kube-scheduler");
        // The rest is untouched.
        assert_eq!(
            std::fs::read_to_string(p.conf("admin")).unwrap(),
            admin_before
        );
        assert_eq!(
            std::fs::read_to_string(p.pki().join("kubelet-client.crt")).unwrap(),
            kubelet_client.cert_pem
        );

        // A second run finds nothing due.
        let again = renew_expiring(&p, within, now).unwrap();
        assert!(again.due.is_empty(), "{:?}", again.due);
    }

    #[test]
    fn only_a_machine_with_the_ca_key_renews() {
        let root = tempfile::tempdir().unwrap();
        let p = Paths::under(root.path());
        assert!(!can_renew(&p));
        create(&p, &["cp1".to_string()], "https://10.0.0.1:6443", "cp1").unwrap();
        assert!(can_renew(&p));
    }
}
