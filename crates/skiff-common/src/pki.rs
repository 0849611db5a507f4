//! The cluster PKI's building blocks: a CA, certificates it issues (client certificates name
//! a user and groups, serving certificates name hosts), key files written private from the
//! start, and kubeconfigs that carry a client certificate. The apiserver creates its PKI with
//! these; `skiffctl` issues each component its own identity with them.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Why the PKI could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read or write {path}: {source}; check that the data dir is writable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the signing CA certificate does not parse as PEM X.509")]
    BadCa,
    #[error("unknown key usage {0:?}")]
    UnknownUsage(String),
}

/// PEM-encoded certificate and key.
#[derive(Clone, Debug)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so a crash never leaves
/// half a key behind; a private file is created readable by its owner only from the start.
pub fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        create_private_dir(parent).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Creates `dir` and any missing parents readable by their owner only (0700) from the start,
/// so no other user can list or open what goes in them, not even for a moment. A folder that
/// already exists keeps its mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

pub fn load_or(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> Result<CertKey, PkiError>,
) -> Result<CertKey, PkiError> {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
        return Ok(CertKey { cert_pem, key_pem });
    }
    let made = make()?;
    write(&key_path, &made.key_pem, true)?;
    write(&cert_path, &made.cert_pem, false)?;
    Ok(made)
}

/// How long an issued (leaf) certificate is valid: a year, as kubeadm's.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long the CA is valid: ten years, as kubeadm's.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A certificate with less than this left is issued anew when its program starts (k3s
/// renews within 90 days of expiry; a month leaves room for a cluster restarted rarely).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates start this long before they are made, so a node whose clock lags a little
/// accepts them at once.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

fn set_validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + valid_for).into();
}

/// Whether `cert_pem` was signed by `ca_pem` and has more than [`RENEW_BEFORE`] left; false
/// too for anything that does not parse.
pub fn still_good(cert_pem: &str, ca_pem: &str) -> bool {
    let parse = |pem: &str| {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .ok()
            .map(|(_, pem)| pem)
    };
    let (Some(cert), Some(ca)) = (parse(cert_pem), parse(ca_pem)) else {
        return false;
    };
    let (Ok(cert), Ok(ca)) = (cert.parse_x509(), ca.parse_x509()) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let left = cert.validity().not_after.timestamp() - now;
    cert.verify_signature(Some(ca.public_key())).is_ok() && left > RENEW_BEFORE.as_secs() as i64
}

/// Loads certificate `name` from `dir` if `ca` signed it and it is not about to expire;
/// otherwise issues it anew with `make` (a new CA, or a certificate expiring within
/// [`RENEW_BEFORE`], gets a fresh one at start).
pub fn load_or_issue(
    dir: &Path,
    name: &str,
    ca: &CertKey,
    make: impl FnOnce() -> Result<CertKey, PkiError>,
) -> Result<CertKey, PkiError> {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
        if still_good(&cert_pem, &ca.cert_pem) {
            return Ok(CertKey { cert_pem, key_pem });
        }
        tracing::info!(cert = %cert_path.display(), "certificate expiring or not from the current CA: issuing it anew");
    }
    let made = make()?;
    write(&key_path, &made.key_pem, true)?;
    write(&cert_path, &made.cert_pem, false)?;
    Ok(made)
}

/// The cluster CA (`CN=skiff-ca`).
pub fn new_ca() -> Result<CertKey, PkiError> {
    new_ca_named("skiff-ca")
}

/// A CA named `cn`: a second CA (etcd's) keeps its clients apart from the cluster's.
pub fn new_ca_named(cn: &str) -> Result<CertKey, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    set_validity(&mut params, CA_VALIDITY);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate signed by `ca`: a client certificate (CN = user, O = groups) when
/// `sans` is empty, else a serving certificate for those names and IPs.
pub fn issue(ca: &CertKey, cn: &str, orgs: &[&str], sans: &[String]) -> Result<CertKey, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    set_validity(&mut params, LEAF_VALIDITY);
    if sans.is_empty() {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        for san in sans {
            params.subject_alt_names.push(match san.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(san.clone().try_into()?),
            });
        }
    }
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for a PKCS#10 request (PEM), signed by `ca`, as kube-controller-manager's
/// CSR signer does: the request's subject and alternative names, the key usages named by
/// `usages` (the CSR API's words: "client auth", "digital signature", ...) and nothing else the
/// request asks for, valid from a few minutes ago for `valid_for` but never past the CA's own
/// expiry. Returns the certificate's PEM.
pub fn sign_request(
    ca: &CertKey,
    request_pem: &str,
    usages: &[String],
    valid_for: Duration,
) -> Result<String, PkiError> {
    let ca_not_after = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes())
        .ok()
        .and_then(|(_, pem)| {
            let cert = pem.parse_x509().ok()?;
            let secs = cert.validity().not_after.timestamp();
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
        })
        .ok_or(PkiError::BadCa)?;
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(request_pem)?;
    let params = &mut csr.params;
    params.key_usages.clear();
    params.extended_key_usages.clear();
    params.is_ca = IsCa::ExplicitNoCa;
    // A random serial, as upstream's signer: rcgen's default derives it from the public key,
    // and a kubelet renewing with the same key would get the same serial twice.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    for u in usages {
        match key_usage(u)? {
            Usage::Key(k) => params.key_usages.push(k),
            Usage::Extended(e) => params.extended_key_usages.push(e),
        }
    }
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + valid_for).min(ca_not_after).into();
    Ok(csr.signed_by(&issuer)?.pem())
}

enum Usage {
    Key(KeyUsagePurpose),
    Extended(ExtendedKeyUsagePurpose),
}

/// A `certificates.k8s.io` key usage as the X.509 extension bit or purpose it stands for
/// (upstream's `keyUsageDict` and `extKeyUsageDict`).
fn key_usage(name: &str) -> Result<Usage, PkiError> {
    use ExtendedKeyUsagePurpose as E;
    use KeyUsagePurpose as K;
    Ok(match name {
        "signing" | "digital signature" => Usage::Key(K::DigitalSignature),
        "content commitment" => Usage::Key(K::ContentCommitment),
        "key encipherment" => Usage::Key(K::KeyEncipherment),
        "key agreement" => Usage::Key(K::KeyAgreement),
        "data encipherment" => Usage::Key(K::DataEncipherment),
        "cert sign" => Usage::Key(K::KeyCertSign),
        "crl sign" => Usage::Key(K::CrlSign),
        "encipher only" => Usage::Key(K::EncipherOnly),
        "decipher only" => Usage::Key(K::DecipherOnly),
        "any" => Usage::Extended(E::Any),
        "server auth" => Usage::Extended(E::ServerAuth),
        "client auth" => Usage::Extended(E::ClientAuth),
        "code signing" => Usage::Extended(E::CodeSigning),
        "email protection" | "s/mime" => Usage::Extended(E::EmailProtection),
        "timestamping" => Usage::Extended(E::TimeStamping),
        "ocsp signing" => Usage::Extended(E::OcspSigning),
        "ipsec end system" => Usage::Extended(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5])),
        "ipsec tunnel" => Usage::Extended(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])),
        "ipsec user" => Usage::Extended(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7])),
        "microsoft sgc" => Usage::Extended(E::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3])),
        "netscape sgc" => Usage::Extended(E::Other(vec![2, 16, 840, 1, 113730, 4, 1])),
        other => return Err(PkiError::UnknownUsage(other.to_string())),
    })
}

/// The parts of a one-cluster, one-user kubeconfig.
pub struct KubeconfigParts<'a> {
    /// The cluster's and the context's names: `skiff` in the files Skiff writes,
    /// `default-cluster` and `default-context` in the kubelet's.
    pub cluster: &'a str,
    pub context: &'a str,
    pub server: &'a str,
    /// The name to check the apiserver's certificate for, when the address does not carry it.
    pub tls_server_name: Option<&'a str>,
    pub ca_pem: &'a [u8],
    pub user: &'a str,
    /// The user's credentials as `key: value` lines (no indentation).
    pub credentials: Vec<(&'static str, String)>,
    pub namespace: Option<&'a str>,
}

impl KubeconfigParts<'_> {
    /// The kubeconfig's YAML text.
    pub fn render(&self) -> String {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let server_name = self
            .tls_server_name
            .map(|n| format!("\n    tls-server-name: {n}"))
            .unwrap_or_default();
        let credentials: String = self
            .credentials
            .iter()
            .map(|(k, v)| format!("    {k}: {v}\n"))
            .collect();
        let namespace = self
            .namespace
            .map(|n| format!("    namespace: {n}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}{server_name}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n{credentials}contexts:\n- name: {context}\n  context:\n    cluster: {cluster}\n    user: {user}\n{namespace}current-context: {context}\n",
            cluster = self.cluster,
            context = self.context,
            server = self.server,
            ca = b64(self.ca_pem),
            user = self.user,
        )
    }
}

/// The kubeconfig Skiff writes (cluster and context `skiff`) for `server` with `credentials`.
fn skiff_kubeconfig(
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: Vec<(&'static str, String)>,
    namespace: Option<&str>,
) -> String {
    KubeconfigParts {
        cluster: "skiff",
        context: "skiff",
        server,
        tls_server_name: None,
        ca_pem: ca_pem.as_bytes(),
        user,
        credentials,
        namespace,
    }
    .render()
}

/// A kubeconfig for `server` that authenticates with a client certificate.
pub fn kubeconfig(server: &str, ca_pem: &str, client: &CertKey, user: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let credentials = vec![
        ("client-certificate-data", b64(&client.cert_pem)),
        ("client-key-data", b64(&client.key_pem)),
    ];
    skiff_kubeconfig(server, ca_pem, user, credentials, Some("default"))
}

/// A kubeconfig for `server` that authenticates with a bearer token (a bootstrap token, as
/// kubeadm's `bootstrap-kubelet.conf`).
pub fn token_kubeconfig(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    skiff_kubeconfig(
        server,
        ca_pem,
        user,
        vec![("token", token.to_string())],
        None,
    )
}

/// The credentials of a client whose certificate and key are both in `pem_file`, as the
/// kubelet's rotating `kubelet-client-current.pem`.
pub fn file_credentials(pem_file: &Path) -> Vec<(&'static str, String)> {
    let file = pem_file.display().to_string();
    vec![("client-certificate", file.clone()), ("client-key", file)]
}

/// A kubeconfig for `server` whose client certificate and key are in `pem_file` (both in one
/// file), as the kubelet's rotating `kubelet-client-current.pem`.
pub fn file_kubeconfig(server: &str, ca_pem: &str, user: &str, pem_file: &Path) -> String {
    skiff_kubeconfig(server, ca_pem, user, file_credentials(pem_file), None)
}

/// An `apiserver.config.k8s.io/v1` EncryptionConfiguration with a new random key: Secrets
/// are stored with secretbox (XSalsa20-Poly1305). Of the providers that keep the key on the
/// host, Kubernetes' documentation rates secretbox strong and fast, while aescbc is open to
/// padding-oracle attacks and aesgcm's random 96-bit nonces call for a new key every 200,000
/// writes; secretbox's 192-bit nonces have no such limit. `identity` comes second so objects
/// written before encryption was on still read. Write it private: it holds the key.
pub fn encryption_config() -> String {
    let key: [u8; 32] = rand::random();
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n  providers:\n  - secretbox:\n      keys:\n      - name: key1\n        secret: {key}\n  - identity: {{}}\n"
    )
}

/// Writes a kubeconfig file readable only by its owner.
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<(), PkiError> {
    write(path, contents, true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn days_left(pem: &str) -> i64 {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (cert.validity().not_after.timestamp() - now) / 86400
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn leaf_certificates_last_a_year_and_the_ca_ten() {
        let ca = new_ca().unwrap();
        let leaf = issue(&ca, "admin", &["system:masters"], &[]).unwrap();
        assert!((3649..=3650).contains(&days_left(&ca.cert_pem)));
        assert!((364..=365).contains(&days_left(&leaf.cert_pem)));
        assert!(still_good(&leaf.cert_pem, &ca.cert_pem));
        let other = new_ca().unwrap();
        assert!(!still_good(&leaf.cert_pem, &other.cert_pem));
        assert!(!still_good("not a certificate", &ca.cert_pem));
    }

    #[test]
    fn a_certificate_from_another_ca_is_issued_anew() {
        let dir = tempfile::tempdir().unwrap();
        let (old_ca, new) = (new_ca().unwrap(), new_ca().unwrap());
        let first =
            load_or_issue(dir.path(), "x", &old_ca, || issue(&old_ca, "x", &[], &[])).unwrap();
        let again = load_or_issue(dir.path(), "x", &old_ca, || unreachable!("still good")).unwrap();
        assert_eq!(first.cert_pem, again.cert_pem);
        let renewed = load_or_issue(dir.path(), "x", &new, || issue(&new, "x", &[], &[])).unwrap();
        assert!(still_good(&renewed.cert_pem, &new.cert_pem));
        assert_eq!(
            read(&dir.path().join("x.crt")).unwrap().unwrap(),
            renewed.cert_pem
        );
    }

    #[test]
    fn keys_and_kubeconfigs_are_private_from_creation_and_so_are_new_folders() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("a/pki");
        let ca = load_or(&pki, "ca", new_ca).unwrap();
        write_kubeconfig(&pki.join("admin.kubeconfig"), "k").unwrap();
        assert_eq!(mode(&pki.join("ca.key")), 0o600);
        assert_eq!(mode(&pki.join("ca.crt")), 0o644);
        assert_eq!(mode(&pki.join("admin.kubeconfig")), 0o600);
        assert_eq!(mode(&pki), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert!(!ca.key_pem.is_empty());
    }

    #[test]
    fn kubeconfigs_name_one_cluster_one_user_and_the_context_joining_them() {
        let text = token_kubeconfig("https://10.0.0.1:6443", "CA", "tls-bootstrap", "a.b");
        assert_eq!(
            text,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: Q0E=\nusers:\n- name: tls-bootstrap\n  user:\n    token: a.b\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: tls-bootstrap\ncurrent-context: skiff\n"
        );
        let kubelet = KubeconfigParts {
            cluster: "default-cluster",
            context: "default-context",
            server: "https://127.0.0.1:6443",
            tls_server_name: Some("kubernetes"),
            ca_pem: b"CA",
            user: "default-auth",
            credentials: file_credentials(Path::new("/var/lib/kubelet/pki/c.pem")),
            namespace: Some("default"),
        }
        .render();
        assert!(
            kubelet
                .contains("    server: https://127.0.0.1:6443\n    tls-server-name: kubernetes\n")
        );
        assert!(kubelet.contains("    client-certificate: /var/lib/kubelet/pki/c.pem\n    client-key: /var/lib/kubelet/pki/c.pem\ncontexts:"));
        assert!(kubelet.contains(
            "    user: default-auth\n    namespace: default\ncurrent-context: default-context\n"
        ));
    }

    #[test]
    fn a_request_is_signed_with_its_subject_and_the_usages_asked_for() {
        let ca = new_ca().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["n1.example".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        // Asked for in the request, not granted: only the CSR's usages count.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let request = params.serialize_request(&key).unwrap().pem().unwrap();
        let usages = ["digital signature".to_string(), "client auth".to_string()];
        let hour = Duration::from_secs(3600);
        let pem = sign_request(&ca, &request, &usages, hour).unwrap();

        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = block.parse_x509().unwrap();
        let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes()).unwrap();
        let ca_cert = ca_block.parse_x509().unwrap();
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
        assert_eq!(
            cert.subject().to_string(),
            "CN=system:node:n1, O=system:nodes"
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, (hour + CLOCK_SKEW).as_secs() as i64);

        // Never past the CA's own expiry.
        let pem = sign_request(&ca, &request, &usages, CA_VALIDITY * 2).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = block.parse_x509().unwrap();
        assert!(cert.validity().not_after <= ca_cert.validity().not_after);

        let err = sign_request(&ca, &request, &["flying".to_string()], hour).unwrap_err();
        assert_eq!(err.to_string(), "unknown key usage \"flying\"");
    }
}
