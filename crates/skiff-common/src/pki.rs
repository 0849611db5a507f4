//! The cluster PKI's building blocks: a CA, certificates it issues (client certificates name
//! a user and groups, serving certificates name hosts), key files written private from the
//! start, and kubeconfigs that carry a client certificate. The apiserver creates its PKI with
//! these; `skiffctl` issues each component its own identity with them.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

pub fn new_ca() -> Result<CertKey, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "skiff-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
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

/// A kubeconfig for `server` that authenticates with a client certificate.
pub fn kubeconfig(server: &str, ca_pem: &str, client: &CertKey, user: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\n    namespace: default\ncurrent-context: skiff\n",
        ca = b64(ca_pem),
        cert = b64(&client.cert_pem),
        key = b64(&client.key_pem),
    )
}

/// Writes a kubeconfig file readable only by its owner.
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<(), PkiError> {
    write(path, contents, true)
}
