//! TLS bootstrapping and certificate rotation, as the kubelet's certificate manager does them:
//! a program that has only a bootstrap kubeconfig (a bootstrap token) asks the apiserver for its
//! own certificate with a `certificates.k8s.io/v1` CertificateSigningRequest, keeps it in its
//! cert dir as `<prefix>-<timestamp>.pem` (certificate and key, 0600) behind the symlink
//! `<prefix>-current.pem`, and writes a kubeconfig that points at that file. With rotation on,
//! a new certificate is requested at a random point 70–90% through the current one's life
//! (with the current identity) and swapped in; connections opened afterwards present it,
//! because the client (and the kubelet's server) pick the certificate per TLS handshake
//! through [`CurrentCert`], with no restart.
//!
//! The kubelet (`system:node:<name>`, client and serving certificates) and skiff-proxy
//! (`system:kube-proxy`) share this code.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::ResourceExt as _;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::client::ConfigExt as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rand::Rng as _;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// How long a program waits for its request to be approved and signed. The kubelet waits an
/// hour, which hides a missing approver for too long; after a few minutes the error says what
/// to check, and the supervisor (systemd, `skiffadm supervise`) starts the program again.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);

/// Why no certificate could be had.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] skiff_common::pki::PkiError),
    #[error("making the key or the certificate request: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("talking to the apiserver: {0}")]
    Api(#[from] kube::Error),
    #[error("certificate signing request {name} was denied: {message}")]
    Denied { name: String, message: String },
    #[error("certificate signing request {name} failed: {message}")]
    Failed { name: String, message: String },
    #[error(
        "certificate signing request {name} was not approved and signed within {waited:?}; is the controller-manager running its csrapproving and csrsigning controllers (with --cluster-signing-cert-file)? `kubectl get csr {name}` shows it; `kubectl certificate approve {name}` approves it by hand"
    )]
    Timeout { name: String, waited: Duration },
    #[error("watching certificate signing request {name}: {message}")]
    Watch { name: String, message: String },
    #[error("the certificate in {path} is unusable: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error(
        "{path} does not exist or its client certificate is no longer valid, and no --bootstrap-kubeconfig was given to request a new one"
    )]
    NoCredentials { path: PathBuf },
}

type Result<T, E = BootstrapError> = std::result::Result<T, E>;

/// What a certificate is requested for: its subject and names, its signer and key usages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub signer_name: String,
    pub usages: Vec<String>,
}

/// The usages the kubelet asks for with an ECDSA key (no key encipherment: ECDSA keys do not
/// encipher), for a client certificate.
pub const CLIENT_USAGES: &[&str] = &["digital signature", "client auth"];
/// The same for a serving certificate.
pub const SERVING_USAGES: &[&str] = &["digital signature", "server auth"];

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

impl CertRequest {
    /// A kubelet's client certificate: `CN=system:node:<node>`, `O=system:nodes`, signer
    /// `kubernetes.io/kube-apiserver-client-kubelet`.
    pub fn kubelet_client(node: &str) -> CertRequest {
        CertRequest {
            common_name: format!("system:node:{node}"),
            organizations: strings(&["system:nodes"]),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            signer_name: skiff_api::certificates::KUBELET_CLIENT_SIGNER.into(),
            usages: strings(CLIENT_USAGES),
        }
    }

    /// A kubelet's serving certificate for its names and addresses, signer
    /// `kubernetes.io/kubelet-serving`.
    pub fn kubelet_serving(node: &str, dns_names: Vec<String>, ips: Vec<IpAddr>) -> CertRequest {
        CertRequest {
            common_name: format!("system:node:{node}"),
            organizations: strings(&["system:nodes"]),
            dns_names,
            ip_addresses: ips,
            signer_name: skiff_api::certificates::KUBELET_SERVING_SIGNER.into(),
            usages: strings(SERVING_USAGES),
        }
    }

    /// skiff-proxy's client certificate: `CN=system:kube-proxy` (no organization, as
    /// kubeadm's kube-proxy identity), signer `kubernetes.io/kube-apiserver-client`.
    pub fn proxy_client() -> CertRequest {
        CertRequest {
            common_name: "system:kube-proxy".into(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            signer_name: skiff_api::certificates::CLIENT_SIGNER.into(),
            usages: strings(CLIENT_USAGES),
        }
    }

    /// A new ECDSA P-256 key (as the kubelet makes) and the PEM request for it.
    fn key_and_pem(&self) -> Result<(rcgen::KeyPair, String)> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, self.common_name.as_str());
        for o in &self.organizations {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, o.as_str());
        }
        for name in &self.dns_names {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName(name.as_str().try_into()?));
        }
        for ip in &self.ip_addresses {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(*ip));
        }
        let pem = params.serialize_request(&key)?.pem()?;
        Ok((key, pem))
    }
}

/// Creates a CertificateSigningRequest for `req` (name generated from `generate_name`) and
/// waits up to `wait` for its certificate; returns the certificate and key as one PEM text
/// (certificate first), as the cert dir keeps them.
pub async fn request_certificate(
    client: &kube::Client,
    req: &CertRequest,
    generate_name: &str,
    wait: Duration,
) -> Result<String> {
    let (key, pem) = req.key_and_pem()?;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.into_bytes()),
            signer_name: req.signer_name.clone(),
            usages: Some(req.usages.clone()),
            ..Default::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api.create(&PostParams::default(), &csr).await?;
    let name = created.name_any();
    tracing::info!(csr = %name, signer = %req.signer_name, cn = %req.common_name, "certificate requested; waiting for approval and signing");
    let decided = |obj: Option<&CertificateSigningRequest>| {
        obj.is_some_and(|c| outcome(c) != Outcome::Pending)
    };
    let obj = match tokio::time::timeout(
        wait,
        kube::runtime::wait::await_condition(api, &name, decided),
    )
    .await
    {
        Err(_) => return Err(BootstrapError::Timeout { name, waited: wait }),
        Ok(Err(e)) => {
            return Err(BootstrapError::Watch {
                name,
                message: e.to_string(),
            });
        }
        Ok(Ok(None)) => {
            return Err(BootstrapError::Watch {
                name,
                message: "it was deleted before it was issued".into(),
            });
        }
        Ok(Ok(Some(obj))) => obj,
    };
    match outcome(&obj) {
        Outcome::Issued(cert) => {
            tracing::info!(csr = %name, "certificate issued");
            Ok(format!("{}\n{}", cert.trim_end(), key.serialize_pem()))
        }
        Outcome::Denied(message) => Err(BootstrapError::Denied { name, message }),
        Outcome::Failed(message) => Err(BootstrapError::Failed { name, message }),
        Outcome::Pending => unreachable!("the wait ends only on a decision"),
    }
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Pending,
    Issued(String),
    Denied(String),
    Failed(String),
}

fn outcome(csr: &CertificateSigningRequest) -> Outcome {
    let status = csr.status.as_ref();
    let condition = |kind: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .map(|c| c.message.clone().unwrap_or_default())
    };
    if let Some(message) = condition("Denied") {
        return Outcome::Denied(message);
    }
    if let Some(message) = condition("Failed") {
        return Outcome::Failed(message);
    }
    match status.and_then(|s| s.certificate.as_ref()) {
        Some(cert) if !cert.0.is_empty() => {
            Outcome::Issued(String::from_utf8_lossy(&cert.0).into_owned())
        }
        _ => Outcome::Pending,
    }
}

/// The certificate presented right now, chosen per TLS handshake: a client's (kube-rs
/// client) and a server's (the kubelet's) resolver in one.
#[derive(Debug, Default)]
pub struct CurrentCert(RwLock<Option<Arc<CertifiedKey>>>);

impl CurrentCert {
    pub fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }
}

impl rustls::client::ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.get()
    }

    fn has_certs(&self) -> bool {
        self.get().is_some()
    }
}

impl rustls::server::ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None aborts the handshake: a kubelet waiting for its serving certificate refuses
        // connections, as Kubernetes' does, rather than serve an unverifiable one.
        self.get()
    }
}

/// A certificate and key loaded from the cert dir.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// When this program got it (the file's modification time): the signer backdates
    /// `notBefore` by minutes for clock skew, which must not count as part of its life.
    pub obtained: SystemTime,
}

impl Loaded {
    /// Parses a PEM text holding a certificate (chain) and its private key.
    pub fn parse(pem: &str, obtained: SystemTime) -> std::result::Result<Loaded, String> {
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("reading the certificate: {e}"))?;
        let first = chain.first().ok_or("no certificate")?;
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .map_err(|e| format!("reading the key: {e}"))?
            .ok_or("no private key")?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| format!("unsupported private key: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref())
            .map_err(|e| format!("parsing the certificate: {e}"))?;
        let time = |t: x509_parser::time::ASN1Time| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
        };
        let key = CertifiedKey::new(chain.clone(), signer);
        // A certificate issued for another key would fail every handshake: refuse it here,
        // where the message can say so.
        key.keys_match()
            .map_err(|e| format!("the certificate is not for the private key: {e}"))?;
        Ok(Loaded {
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            obtained,
            key: Arc::new(key),
        })
    }

    /// Whether the certificate is valid now.
    pub fn valid(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// When to ask for the next certificate: a random point 70–90% through its life counted
    /// from when it was obtained (or its `notBefore`, if later), as the kubelet's jittered
    /// rotation deadline.
    pub fn rotation_deadline(&self, fraction: f64) -> SystemTime {
        let start = self.obtained.max(self.not_before);
        let life = self.not_after.duration_since(start).unwrap_or_default();
        start + life.mul_f64(fraction)
    }
}

/// A cert dir's certificates of one kind: `<dir>/<prefix>-<timestamp>.pem`, and
/// `<prefix>-current.pem`, a symlink to the one in use (the kubelet's file names).
#[derive(Debug, Clone)]
pub struct CertStore {
    pub dir: PathBuf,
    pub prefix: String,
}

impl CertStore {
    pub fn new(dir: &Path, prefix: &str) -> CertStore {
        CertStore {
            dir: dir.to_path_buf(),
            prefix: prefix.into(),
        }
    }

    pub fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}-current.pem", self.prefix))
    }

    /// The current certificate, if there is one that parses.
    pub fn load_current(&self) -> Result<Option<Loaded>> {
        let path = self.current_path();
        let Some(pem) = skiff_common::pki::read(&path)? else {
            return Ok(None);
        };
        let obtained = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Loaded::parse(&pem, obtained)
            .map(Some)
            .map_err(|message| BootstrapError::BadCertificate { path, message })
    }

    /// Keeps `pem` as a new timestamped file (private) and points the current link at it.
    pub fn store(&self, pem: &str) -> Result<Loaded> {
        let stamp = jiff::Zoned::now()
            .with_time_zone(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m-%d-%H-%M-%S")
            .to_string();
        let file = self.dir.join(format!("{}-{stamp}.pem", self.prefix));
        let loaded = Loaded::parse(pem, SystemTime::now()).map_err(|message| {
            BootstrapError::BadCertificate {
                path: file.clone(),
                message,
            }
        })?;
        skiff_common::pki::write(&file, pem, true)?;
        // A new link renamed over the old one: the current name never goes missing.
        let link = self.current_path();
        let tmp = self.dir.join(format!(".{}-current.pem.tmp", self.prefix));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BootstrapError::Io { path, source }
        };
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&file, &tmp).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &link).map_err(io(&link))?;
        Ok(loaded)
    }
}

/// One kind of certificate (a client's or a server's): where it is kept, how it is requested,
/// and the one presented now.
pub struct CertificateManager {
    store: CertStore,
    request: CertRequest,
    current: Arc<CurrentCert>,
    loaded: RwLock<Option<Loaded>>,
    wait: Duration,
}

impl CertificateManager {
    /// A manager for `request`'s certificates in `store`, starting with the stored current
    /// certificate if it is still valid.
    pub fn new(store: CertStore, request: CertRequest, wait: Duration) -> Result<Arc<Self>> {
        let manager = CertificateManager {
            store,
            request,
            current: Arc::default(),
            loaded: RwLock::new(None),
            wait,
        };
        match manager.store.load_current() {
            Ok(Some(loaded)) if loaded.valid(SystemTime::now()) => manager.install(loaded),
            Ok(Some(_)) => {
                tracing::info!(path = %manager.store.current_path().display(), "the stored certificate is not valid now; a new one will be requested")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "ignoring the stored certificate"),
        }
        Ok(Arc::new(manager))
    }

    fn install(&self, loaded: Loaded) {
        self.current.set(loaded.key.clone());
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(loaded);
    }

    /// The resolver presenting the current certificate.
    pub fn resolver(&self) -> Arc<CurrentCert> {
        self.current.clone()
    }

    pub fn store(&self) -> &CertStore {
        &self.store
    }

    /// Whether a certificate valid now is in use.
    pub fn has_valid(&self) -> bool {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|l| l.valid(SystemTime::now()))
    }

    /// Requests a new certificate through `client`, keeps it and presents it from now on.
    pub async fn renew(&self, client: &kube::Client, generate_name: &str) -> Result<()> {
        let pem = request_certificate(client, &self.request, generate_name, self.wait).await?;
        let loaded = self.store.store(&pem)?;
        tracing::info!(
            path = %self.store.current_path().display(),
            cn = %self.request.common_name,
            expires = %jiff::Timestamp::try_from(loaded.not_after).map(|t| t.to_string()).unwrap_or_default(),
            "certificate installed"
        );
        self.install(loaded);
        Ok(())
    }

    /// Renews the certificate through `client` whenever its rotation deadline comes (at once
    /// if there is none yet), retrying with backoff, until `shutdown`.
    pub async fn rotate(self: Arc<Self>, client: kube::Client, shutdown: CancellationToken) {
        let mut backoff =
            skiff_common::Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        loop {
            let deadline = self
                .loaded
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|l| l.rotation_deadline(rand::rng().random_range(0.7..0.9)));
            let wait = deadline
                .and_then(|d| d.duration_since(SystemTime::now()).ok())
                .unwrap_or_default();
            if !wait.is_zero() {
                tracing::info!(cn = %self.request.common_name, signer = %self.request.signer_name, in_secs = wait.as_secs(), "certificate rotation scheduled");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            // Rotation requests are named as the kubelet's certificate manager names them.
            let renewed = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.renew(&client, "csr-") => r,
            };
            match renewed {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "certificate rotation failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// How a program gets its client identity: `--bootstrap-kubeconfig`, `--kubeconfig`,
/// `--cert-dir`, and what to ask for.
#[derive(Debug, Clone)]
pub struct ClientBootstrap {
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub kubeconfig: PathBuf,
    pub cert_dir: PathBuf,
    /// File name prefix in the cert dir (`kubelet-client`).
    pub prefix: String,
    pub request: CertRequest,
    pub wait: Duration,
}

/// A client, and the manager of its certificate when it came from the cert dir (so it can be
/// rotated).
pub struct Bootstrapped {
    pub client: kube::Client,
    pub manager: Option<Arc<CertificateManager>>,
}

impl ClientBootstrap {
    /// Loads the client identity, bootstrapping it first when `--kubeconfig` is missing or
    /// its certificate is not valid and a bootstrap kubeconfig is given (the kubelet's
    /// `LoadClientCert`). A kubeconfig whose certificate is the cert dir's current one gets a
    /// client that follows rotation; any other kubeconfig is used as it is.
    pub async fn load(&self) -> Result<Bootstrapped> {
        let store = CertStore::new(&self.cert_dir, &self.prefix);
        let mut manager = None;
        if let Some(boot) = &self.bootstrap_kubeconfig
            && !client_config_valid(&self.kubeconfig)
        {
            tracing::info!(kubeconfig = %self.kubeconfig.display(), bootstrap = %boot.display(), "no valid client certificate; bootstrapping one");
            let m = CertificateManager::new(store.clone(), self.request.clone(), self.wait)?;
            if !m.has_valid() {
                let client = crate::client(boot)
                    .await
                    .map_err(|e| BootstrapError::Kubeconfig {
                        path: boot.clone(),
                        message: format!("{e:#}"),
                    })?;
                // Bootstrap requests are named as the kubelet's.
                m.renew(&client, "node-csr-").await?;
            }
            write_kubeconfig(boot, &self.kubeconfig, &store.current_path())?;
            manager = Some(m);
        }
        if !self.kubeconfig.exists() {
            return Err(BootstrapError::NoCredentials {
                path: self.kubeconfig.clone(),
            });
        }
        if client_certificate_path(&self.kubeconfig).as_deref() == Some(&store.current_path()) {
            let m = match manager {
                Some(m) => m,
                None => CertificateManager::new(store, self.request.clone(), self.wait)?,
            };
            if !m.has_valid() {
                return Err(BootstrapError::NoCredentials {
                    path: self.kubeconfig.clone(),
                });
            }
            let client = rotating_client(&self.kubeconfig, m.resolver()).await?;
            return Ok(Bootstrapped {
                client,
                manager: Some(m),
            });
        }
        let client =
            crate::client(&self.kubeconfig)
                .await
                .map_err(|e| BootstrapError::Kubeconfig {
                    path: self.kubeconfig.clone(),
                    message: format!("{e:#}"),
                })?;
        Ok(Bootstrapped {
            client,
            manager: None,
        })
    }
}

/// The current user of a kubeconfig, if it parses and has one.
fn current_user(kc: &Kubeconfig) -> Option<&kube::config::AuthInfo> {
    let user = kc
        .current_context
        .as_ref()
        .and_then(|current| kc.contexts.iter().find(|c| &c.name == current))
        .or(kc.contexts.first())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.user.clone())?;
    kc.auth_infos
        .iter()
        .find(|a| Some(&a.name) == user.as_ref())
        .and_then(|a| a.auth_info.as_ref())
}

fn relative_to(kubeconfig: &Path, file: &str) -> PathBuf {
    kubeconfig
        .parent()
        .map(|dir| dir.join(file))
        .unwrap_or_else(|| file.into())
}

/// The `client-certificate` file the kubeconfig's current user names.
fn client_certificate_path(kubeconfig: &Path) -> Option<PathBuf> {
    let kc = Kubeconfig::read_from(kubeconfig).ok()?;
    let file = current_user(&kc)?.client_certificate.as_ref()?;
    Some(relative_to(kubeconfig, file))
}

/// Whether `kubeconfig` exists and holds a client certificate valid now (the kubelet's
/// `isClientConfigStillValid`: no certificate counts as not valid).
pub fn client_config_valid(kubeconfig: &Path) -> bool {
    use base64::Engine as _;
    let Ok(kc) = Kubeconfig::read_from(kubeconfig) else {
        return false;
    };
    let Some(user) = current_user(&kc) else {
        return false;
    };
    let pem = if let Some(data) = &user.client_certificate_data {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    } else if let Some(file) = &user.client_certificate {
        std::fs::read_to_string(relative_to(kubeconfig, file)).ok()
    } else {
        None
    };
    let Some(pem) = pem else {
        return false;
    };
    let Some(Ok(der)) = rustls_pemfile::certs(&mut pem.as_bytes()).next() else {
        return false;
    };
    x509_parser::parse_x509_certificate(der.as_ref())
        .is_ok_and(|(_, cert)| cert.validity().is_valid())
}

/// Writes `kubeconfig` for the certificate at `cert` (certificate and key in one file, as the
/// kubelet writes it), reaching the cluster the bootstrap kubeconfig names, with its CA.
pub fn write_kubeconfig(bootstrap: &Path, kubeconfig: &Path, cert: &Path) -> Result<()> {
    let bad = |message: String| BootstrapError::Kubeconfig {
        path: bootstrap.to_path_buf(),
        message,
    };
    let kc = Kubeconfig::read_from(bootstrap).map_err(|e| bad(e.to_string()))?;
    let cluster = crate::current_cluster(&kc).ok_or_else(|| bad("it names no cluster".into()))?;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| bad("it names no cluster server".into()))?;
    // A bootstrap kubeconfig that reaches the apiserver by an address its certificate does
    // not name says which name to check instead (tls-server-name); the node's must too.
    let ca = crate::kubeconfig_ca(bootstrap)
        .map_err(|e| bad(format!("{e:#}")))?
        .ok_or_else(|| bad("it has no certificate-authority(-data) for the cluster".into()))?;
    // The names are the kubelet's (default-cluster, default-auth, default-context).
    let text = skiff_common::pki::KubeconfigParts {
        cluster: "default-cluster",
        context: "default-context",
        server: &server,
        tls_server_name: cluster.tls_server_name.as_deref(),
        ca_pem: ca.as_bytes(),
        user: "default-auth",
        credentials: skiff_common::pki::file_credentials(cert),
        namespace: Some("default"),
    }
    .render();
    skiff_common::pki::write(kubeconfig, &text, true)?;
    Ok(())
}

/// A client for `kubeconfig` whose TLS client certificate is whatever `cert` holds when a
/// connection is opened, so a rotated certificate is used without rebuilding the client.
pub async fn rotating_client(kubeconfig: &Path, cert: Arc<CurrentCert>) -> Result<kube::Client> {
    let bad = |message: String| BootstrapError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        message,
    };
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(e.to_string()))?;
    let mut tls = config.rustls_client_config()?;
    tls.client_auth_cert_resolver = cert;
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    // The kubeconfig's tls-server-name: the name to check the apiserver's certificate for
    // when it is reached by another address (as kube's own connector does).
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| bad(format!("tls-server-name {name:?}: {e}")))?;
        builder =
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.enforce_http(false);
    connector.set_connect_timeout(config.connect_timeout);
    let https = builder.enable_http1().wrap_connector(connector);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(valid_for: Duration) -> String {
        let ca = skiff_common::pki::new_ca().unwrap();
        let req = CertRequest::kubelet_client("n1");
        let (key, csr) = req.key_and_pem().unwrap();
        let cert = skiff_common::pki::sign_request(&ca, &csr, &req.usages, valid_for).unwrap();
        format!("{cert}\n{}", key.serialize_pem())
    }

    #[test]
    fn the_request_names_the_subject_and_the_kubelets_usages() {
        let req = CertRequest::kubelet_serving(
            "n1",
            vec!["n1".into()],
            vec!["10.0.0.5".parse().unwrap()],
        );
        let (_, pem) = req.key_and_pem().unwrap();
        let parsed = skiff_api::certificates::parse_request(pem.as_bytes()).unwrap();
        assert_eq!(parsed.common_name, "system:node:n1");
        assert_eq!(parsed.organizations, ["system:nodes"]);
        assert_eq!(parsed.dns_names, ["n1"]);
        assert_eq!(parsed.ip_addresses, ["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(req.usages, ["digital signature", "server auth"]);
        let proxy = CertRequest::proxy_client();
        let (_, pem) = proxy.key_and_pem().unwrap();
        let parsed = skiff_api::certificates::parse_request(pem.as_bytes()).unwrap();
        assert_eq!(parsed.common_name, "system:kube-proxy");
        assert!(parsed.organizations.is_empty());
    }

    #[test]
    fn the_store_keeps_timestamped_files_behind_the_current_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = CertStore::new(dir.path(), "kubelet-client");
        assert!(store.load_current().unwrap().is_none());
        let loaded = store.store(&issued(Duration::from_secs(3600))).unwrap();
        assert!(loaded.valid(SystemTime::now()));
        let target = std::fs::read_link(store.current_path()).unwrap();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("kubelet-client-2"), "{name}");
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            store
                .load_current()
                .unwrap()
                .unwrap()
                .valid(SystemTime::now())
        );
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let pem = issued(Duration::from_secs(3600));
        let cert = &pem[..pem.find("-----BEGIN PRIVATE KEY").unwrap()];
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let err = Loaded::parse(
            &format!("{cert}{}", other.serialize_pem()),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("the certificate is not for the private key"),
            "{err}"
        );
    }

    #[test]
    fn rotation_comes_70_to_90_percent_through_the_life_since_obtained() {
        let loaded = Loaded::parse(&issued(Duration::from_secs(1000)), SystemTime::now()).unwrap();
        // The signer backdates notBefore; the deadline counts from when it was obtained.
        assert!(loaded.not_before < loaded.obtained);
        let life = loaded.not_after.duration_since(loaded.obtained).unwrap();
        for f in [0.7, 0.9] {
            let at = loaded
                .rotation_deadline(f)
                .duration_since(loaded.obtained)
                .unwrap();
            assert_eq!(at.as_secs(), life.mul_f64(f).as_secs());
        }
    }

    #[test]
    fn a_kubeconfig_without_a_valid_certificate_is_not_valid() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.conf");
        assert!(!client_config_valid(&missing));
        let store = CertStore::new(dir.path(), "kubelet-client");
        store.store(&issued(Duration::from_secs(3600))).unwrap();
        let boot = dir.path().join("bootstrap.conf");
        let ca = skiff_common::pki::new_ca().unwrap();
        std::fs::write(
            &boot,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: abcdef.0123456789abcdef\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca.cert_pem)
            ),
        )
        .unwrap();
        assert!(!client_config_valid(&boot), "a token is no certificate");
        let kubeconfig = dir.path().join("kubelet.conf");
        write_kubeconfig(&boot, &kubeconfig, &store.current_path()).unwrap();
        assert!(client_config_valid(&kubeconfig));
        assert_eq!(
            client_certificate_path(&kubeconfig),
            Some(store.current_path())
        );
    }
}
