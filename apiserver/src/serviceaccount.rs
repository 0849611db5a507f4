//! ServiceAccount tokens as kube-apiserver issues and checks them: the signing key
//! (`sa.key`/`sa.pub`), the bound-token JWT claims, their verification, the shapes of the
//! TokenRequest subresource, and the OIDC discovery documents for the issuer.
//!
//! Nothing here reads the store. Issuing needs the ServiceAccount (and bound object) that the
//! caller looked up; verifying proves only that this apiserver signed the token for these
//! audiences and that it is in date: the caller must still check that the ServiceAccount (and a
//! bound Pod, Secret or Node) exists with the UID in the token, as upstream's validator does.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rcgen::{KeyPair, PublicKeyData};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use skiff_api::{FieldError, ResourceInfo};

use crate::error::ApiError;

/// kube-apiserver's usual `--service-account-issuer` (what kubeadm and kind set).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// A TokenRequest without `spec.expirationSeconds` gets an hour (v1 defaulting).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 60 * 60;
/// Shorter tokens are refused: kubelets refresh at 80% of the lifetime.
pub const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
/// Longer tokens are refused by static validation.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// The lifetime kubelets ask for on projected tokens; with extended expiration on, such a
/// pod-bound token for the apiserver's audiences lives a year and is flagged stale after this.
pub const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: i64 = 60 * 60 + 7;
/// The lifetime of such an extended token.
pub const EXPIRATION_EXTENSION_SECONDS: i64 = 24 * 365 * 60 * 60;
/// Clock skew tolerated on `exp`, `nbf` and `iat` (go-jose's `DefaultLeeway`).
pub const LEEWAY_SECONDS: i64 = 60;

/// Where kube-apiserver serves the issuer's OIDC discovery document.
pub const OPENID_CONFIG_PATH: &str = "/.well-known/openid-configuration";
/// Where kube-apiserver serves the issuer's public keys.
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// Content type of [`JWKS_PATH`] (the discovery document is plain `application/json`).
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";
/// Both documents are served with `Cache-Control: public, max-age=3600`.
pub const DISCOVERY_MAX_AGE_SECONDS: u32 = 3600;

/// `user.Info.Extra` keys kube-apiserver sets for ServiceAccount tokens.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// The group every ServiceAccount is in.
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
const USERNAME_PREFIX: &str = "system:serviceaccount:";

const KEY_FILE: &str = "sa.key";
const PUB_FILE: &str = "sa.pub";

/// Why a key could not be loaded, a token issued, or a token accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read or write {path}: {source}; check that the PKI directory is writable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a usable service account key: {reason}; remove sa.key and sa.pub to have new ones made (tokens already issued then stop working)"
    )]
    Key { path: PathBuf, reason: String },
    /// The token spec breaks upstream's static validation (messages as `field.Error`).
    #[error("{}", join_field_errors(.0))]
    Invalid(Vec<FieldError>),
    #[error("cannot generate a service account signing key: {0}")]
    Generate(String),
    #[error("failed to generate token: {0}")]
    Sign(String),
    /// Not a JWT, or one from another issuer: another authenticator may accept it (upstream
    /// answers "not mine" without an error here).
    #[error("not a service account token from this issuer")]
    NotServiceAccountToken,
    /// A token of this issuer that must be refused (log the message, answer 401 Unauthorized).
    #[error("{0}")]
    InvalidToken(String),
    /// The issuer cannot be published through OIDC discovery.
    #[error("{0}")]
    Discovery(String),
}

fn join_field_errors(errors: &[FieldError]) -> String {
    let messages: Vec<String> = errors.iter().map(FieldError::message).collect();
    if messages.len() == 1 {
        messages[0].clone()
    } else {
        format!("[{}]", messages.join(", "))
    }
}

/// A name and UID, as the token's `kubernetes.io` claim records the ServiceAccount and the
/// bound objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ObjectRef {
    pub fn new(name: impl Into<String>, uid: impl Into<String>) -> Self {
        ObjectRef {
            name: name.into(),
            uid: uid.into(),
        }
    }
}

/// The object a token is bound to: it stops working when that object is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundObject {
    /// `node` is the Node the pod runs on, recorded for information (upstream's
    /// ServiceAccountTokenPodNodeInfo); its `uid` is empty when the Node was not found.
    Pod {
        pod: ObjectRef,
        node: Option<ObjectRef>,
    },
    Secret(ObjectRef),
    Node(ObjectRef),
}

/// What to put in a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub namespace: String,
    pub service_account: ObjectRef,
    /// Empty means the issuer alone, so that no token is ever issued without `aud`.
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundObject>,
    /// Records `warnafter` (now + this) for tokens whose expiration was extended.
    pub warn_after_seconds: Option<i64>,
}

impl TokenSpec {
    /// A token for ServiceAccount `namespace/name` with upstream's defaults (an hour, the
    /// issuer as audience, bound to nothing).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        TokenSpec {
            namespace: namespace.into(),
            service_account: ObjectRef::new(name, uid),
            audiences: Vec::new(),
            expiration_seconds: DEFAULT_EXPIRATION_SECONDS,
            bound: None,
            warn_after_seconds: None,
        }
    }

    /// Upstream's `ValidateTokenRequest` checks on the lifetime.
    fn validate(&self) -> Vec<FieldError> {
        validate_expiration(self.expiration_seconds)
    }
}

fn validate_expiration(seconds: i64) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if seconds < MIN_EXPIRATION_SECONDS {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            &json!(seconds),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > MAX_EXPIRATION_SECONDS {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            &json!(seconds),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    errs
}

// The JWT payload. Fields are in alphabetical order, as go-jose writes them (it marshals a
// map), so our tokens read like kube-apiserver's.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    aud: Vec<String>,
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    exp: Option<i64>,
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(
        rename = "kubernetes.io",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    kubernetes: Option<PrivateClaims>,
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sub: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PrivateClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<ObjectRef>,
    // Go's omitempty never drops a struct, so this is always written.
    #[serde(default)]
    serviceaccount: ObjectRef,
    #[serde(
        default,
        deserialize_with = "numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    warnafter: Option<i64>,
}

/// RFC 7519 allows `aud` as one string or a list.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// A JSON number of seconds; go-jose reads fractions and truncates them.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.map(|f| f as i64))
}

/// The ServiceAccount signing key pair (ECDSA P-256, ES256), as kube-apiserver's
/// `--service-account-signing-key-file` and `--service-account-key-file`.
pub struct SigningKey {
    issuer: String,
    key_id: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public point's coordinates, base64url, for the JWKS.
    x: String,
    y: String,
    public_pem: String,
}

impl std::fmt::Debug for SigningKey {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Writes `contents` to `path` through a temporary file created with `mode`, then renames it,
/// so the file never exists with wider permissions or half written.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    // A leftover from a crash may have other permissions: start afresh so `mode` applies.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&tmp)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

impl SigningKey {
    /// Loads `sa.key` from `pki_dir`, or creates it (mode 0600) with `sa.pub` beside it on
    /// first start. `sa.key` is a PKCS#8 `PRIVATE KEY` PEM, `sa.pub` the `PUBLIC KEY` PEM: the
    /// files kube-apiserver takes as `--service-account-signing-key-file` and
    /// `--service-account-key-file`. The issuer is [`DEFAULT_ISSUER`] until
    /// [`with_issuer`](Self::with_issuer).
    pub fn load_or_create(pki_dir: &Path) -> Result<SigningKey, Error> {
        skiff_common::pki::create_private_dir(pki_dir).map_err(io_error(pki_dir))?;
        let key_path = pki_dir.join(KEY_FILE);
        let pub_path = pki_dir.join(PUB_FILE);
        let key = match read_optional(&key_path)? {
            Some(pem) => KeyPair::from_pem(&pem).map_err(|e| Error::Key {
                path: key_path.clone(),
                reason: format!("cannot parse it as a PKCS#8 private key PEM: {e}"),
            })?,
            None => {
                let key = KeyPair::generate().map_err(|e| Error::Generate(e.to_string()))?;
                write_new(&key_path, &key.serialize_pem(), 0o600)?;
                key
            }
        };
        if !key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err(Error::Key {
                path: key_path,
                reason: "only ECDSA P-256 keys (ES256) are supported".into(),
            });
        }
        let public_pem = key.public_key_pem();
        match read_optional(&pub_path)? {
            None => write_new(&pub_path, &public_pem, 0o644)?,
            Some(existing) if existing.trim() == public_pem.trim() => {}
            Some(_) => {
                return Err(Error::Key {
                    path: pub_path,
                    reason: format!("it is not the public half of {}", key_path.display()),
                });
            }
        }
        Self::from_key_pair(&key, &key_path)
    }

    fn from_key_pair(key: &KeyPair, path: &Path) -> Result<SigningKey, Error> {
        // The raw public key is the uncompressed point: 0x04, then X and Y (32 bytes each).
        let point = key.public_key_raw();
        if point.len() != 65 || point[0] != 4 {
            return Err(Error::Key {
                path: path.to_owned(),
                reason: "unexpected P-256 public key encoding".into(),
            });
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        // As upstream: the key ID is the SHA-256 of the PKIX (SubjectPublicKeyInfo) DER, so it
        // names the key without revealing it.
        let key_id = URL_SAFE_NO_PAD.encode(Sha256::digest(key.subject_public_key_info()));
        Ok(SigningKey {
            issuer: DEFAULT_ISSUER.to_string(),
            key_id,
            encoding: EncodingKey::from_ec_der(key.serialized_der()),
            decoding: DecodingKey::from_ec_der(point),
            x,
            y,
            public_pem: key.public_key_pem(),
        })
    }

    /// Uses `issuer` (kube-apiserver's `--service-account-issuer`) for `iss`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` header of every token, and the key's ID in the JWKS.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `sa.pub`'s contents.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Signs a token for `spec` issued at `now`; returns it with its `exp`. Fails with
    /// [`Error::Invalid`] when the lifetime breaks upstream's validation.
    pub fn issue(&self, spec: &TokenSpec, now: Timestamp) -> Result<(String, Timestamp), Error> {
        let errs = spec.validate();
        if !errs.is_empty() {
            return Err(Error::Invalid(errs));
        }
        let iat = now.as_second();
        let exp = iat + spec.expiration_seconds;
        let expires = Timestamp::from_second(exp).map_err(|e| Error::Sign(e.to_string()))?;
        let mut private = PrivateClaims {
            namespace: spec.namespace.clone(),
            serviceaccount: spec.service_account.clone(),
            warnafter: spec.warn_after_seconds.map(|w| iat + w),
            ..PrivateClaims::default()
        };
        match &spec.bound {
            None => {}
            Some(BoundObject::Pod { pod, node }) => {
                private.pod = Some(pod.clone());
                private.node = node.clone();
            }
            Some(BoundObject::Secret(secret)) => private.secret = Some(secret.clone()),
            Some(BoundObject::Node(node)) => private.node = Some(node.clone()),
        }
        let aud = if spec.audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            spec.audiences.clone()
        };
        let claims = Claims {
            aud,
            exp: Some(exp),
            iat: Some(iat),
            iss: self.issuer.clone(),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            kubernetes: Some(private),
            nbf: Some(iat),
            sub: make_username(&spec.namespace, &spec.service_account.name),
        };
        // go-jose writes only `alg` and `kid`; no `typ`.
        let mut header = Header::new(Algorithm::ES256);
        header.typ = None;
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Error::Sign(e.to_string()))?;
        Ok((token, expires))
    }

    /// Checks a bearer token as kube-apiserver's bound-token authenticator does: issuer,
    /// signature, audiences (`audiences` are the apiserver's, `--api-audiences`; empty means
    /// the issuer, as kube-apiserver defaults them), then `nbf`/`exp`/`iat` with a minute of
    /// leeway, then the `kubernetes.io` claims. Legacy Secret-based tokens (issuer
    /// `kubernetes/serviceaccount`) are not accepted.
    ///
    /// [`Error::NotServiceAccountToken`] means "not mine" (try other authenticators);
    /// [`Error::InvalidToken`] means refuse. Either way the client only sees 401.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[String],
        now: Timestamp,
    ) -> Result<VerifiedToken, Error> {
        // Cheap look at the unverified issuer first, so tokens for other authenticators are
        // passed on without a signature check (upstream's hasCorrectIssuer).
        if token.trim_start().starts_with('{') {
            return Err(Error::NotServiceAccountToken);
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header_b64, payload_b64, signature_b64] = parts[..] else {
            return Err(Error::NotServiceAccountToken);
        };
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| Error::NotServiceAccountToken)?;
        #[derive(Deserialize)]
        struct Unverified {
            // WARNING: not verified yet; only used to pick the authenticator.
            #[serde(default)]
            iss: String,
        }
        let peek: Unverified =
            serde_json::from_slice(&payload).map_err(|_| Error::NotServiceAccountToken)?;
        if peek.iss != self.issuer {
            return Err(Error::NotServiceAccountToken);
        }

        #[derive(Deserialize)]
        struct JwsHeader {
            #[serde(default)]
            alg: String,
            #[serde(default)]
            kid: String,
        }
        let header: JwsHeader = URL_SAFE_NO_PAD
            .decode(header_b64)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(Error::NotServiceAccountToken)?;
        if !header.kid.is_empty() && header.kid != self.key_id {
            return Err(Error::InvalidToken(
                "invalid signature, no keys found".into(),
            ));
        }
        let message = &token[..header_b64.len() + 1 + payload_b64.len()];
        let signature_ok = header.alg == "ES256"
            && jsonwebtoken::crypto::verify(
                signature_b64,
                message.as_bytes(),
                &self.decoding,
                Algorithm::ES256,
            )
            .unwrap_or(false);
        if !signature_ok {
            return Err(Error::InvalidToken("invalid signature".into()));
        }

        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| {
            Error::InvalidToken(
                "service account token claims could not be validated due to unexpected private claim"
                    .into(),
            )
        })?;
        if claims.iss != self.issuer {
            return Err(Error::InvalidToken(format!(
                "token issuer {:?} is invalid",
                claims.iss
            )));
        }

        let implicit: Vec<String> = if audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            audiences.to_vec()
        };
        // A token without `aud` is taken to be for the apiserver, as upstream does.
        let token_audiences = if claims.aud.is_empty() {
            implicit.clone()
        } else {
            claims.aud.clone()
        };
        let matched: Vec<String> = token_audiences
            .iter()
            .filter(|a| implicit.contains(a))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err(Error::InvalidToken(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_quoted_list(&token_audiences),
                go_quoted_list(&implicit)
            )));
        }

        // go-jose's order: nbf, exp, iat.
        let leeway = SignedDuration::from_secs(LEEWAY_SECONDS);
        let at = |secs: i64| Timestamp::from_second(secs).unwrap_or(Timestamp::MAX);
        if let Some(nbf) = claims.nbf
            && now + leeway < at(nbf)
        {
            return Err(Error::InvalidToken(
                "service account token is not valid yet".into(),
            ));
        }
        if let Some(exp) = claims.exp
            && now - leeway > at(exp)
        {
            return Err(Error::InvalidToken(
                "service account token has expired".into(),
            ));
        }
        if let Some(iat) = claims.iat
            && now + leeway < at(iat)
        {
            return Err(Error::InvalidToken(
                "service account token is issued in the future".into(),
            ));
        }

        let private = claims.kubernetes.unwrap_or_default();
        if private.namespace.is_empty() || private.serviceaccount.name.is_empty() {
            return Err(Error::InvalidToken(
                "service account token claims could not be validated due to unexpected private claim"
                    .into(),
            ));
        }
        Ok(VerifiedToken {
            namespace: private.namespace,
            service_account: private.serviceaccount,
            pod: private.pod,
            secret: private.secret,
            node: private.node,
            jti: claims.jti.filter(|j| !j.is_empty()),
            audiences: matched,
            subject: claims.sub,
            expires: claims.exp.map(at),
            warn_after: private.warnafter.filter(|w| *w != 0).map(at),
        })
    }

    /// The JSON Web Key Set served at [`JWKS_PATH`] (content type [`JWKS_CONTENT_TYPE`]).
    pub fn jwks(&self) -> Value {
        // go-jose's field order.
        json!({
            "keys": [{
                "use": "sig",
                "kty": "EC",
                "kid": self.key_id,
                "crv": "P-256",
                "alg": "ES256",
                "x": self.x,
                "y": self.y,
            }]
        })
    }

    /// The OIDC discovery document served at [`OPENID_CONFIG_PATH`]. `jwks_uri` is
    /// kube-apiserver's `--service-account-jwks-uri`, or [`default_jwks_uri`] of its external
    /// address. Like upstream, refuses an issuer that is not an `https` URL without query or
    /// fragment (kube-apiserver then logs it and serves neither document).
    pub fn openid_configuration(&self, jwks_uri: &str) -> Result<Value, Error> {
        let iss = &self.issuer;
        if !iss.starts_with("https://") {
            return Err(Error::Discovery(format!(
                "issuer URL must use https scheme, got: {iss}"
            )));
        }
        if iss.contains('?') {
            return Err(Error::Discovery(format!(
                "issuer URL may not include a query, got: {iss}"
            )));
        }
        if iss.contains('#') {
            return Err(Error::Discovery(format!(
                "issuer URL may not include a fragment, got: {iss}"
            )));
        }
        if !jwks_uri.starts_with("https://") {
            return Err(Error::Discovery(format!(
                "jwksURI requires https scheme, parsed as: {jwks_uri}"
            )));
        }
        Ok(json!({
            "issuer": iss,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }))
    }
}

/// The JWKS URI kube-apiserver advertises when `--service-account-jwks-uri` is unset:
/// `https://<external address>/openid/v1/jwks`.
pub fn default_jwks_uri(external_address: &str) -> String {
    format!("https://{external_address}{JWKS_PATH}")
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn make_username(namespace: &str, name: &str) -> String {
    format!("{USERNAME_PREFIX}{namespace}:{name}")
}

/// `system:serviceaccounts` and `system:serviceaccounts:<namespace>`.
pub fn make_group_names(namespace: &str) -> Vec<String> {
    vec![
        ALL_SERVICE_ACCOUNTS_GROUP.to_string(),
        format!("{ALL_SERVICE_ACCOUNTS_GROUP}:{namespace}"),
    ]
}

/// The namespace and name in a ServiceAccount username, if it is one.
pub fn split_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(USERNAME_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    if namespace.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some((namespace, name))
}

/// A token that this apiserver signed, for these audiences, in date. The caller still checks
/// the objects it names (see [`VerifiedToken::user`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    /// For a pod-bound token, the pod's node (information only); otherwise the bound Node.
    pub node: Option<ObjectRef>,
    pub jti: Option<String>,
    /// The token's audiences that the apiserver accepts.
    pub audiences: Vec<String>,
    /// The `sub` claim as written (the username is built from the `kubernetes.io` claims).
    pub subject: String,
    pub expires: Option<Timestamp>,
    /// Set on tokens whose expiration was extended.
    pub warn_after: Option<Timestamp>,
}

/// The identity a ServiceAccount token stands for (the caller adds `system:authenticated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountUser {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl VerifiedToken {
    /// Whether the token is bound to a Node (not a pod): the caller must check that Node too.
    pub fn node_bound(&self) -> bool {
        self.pod.is_none() && self.node.is_some()
    }

    /// The user, as upstream's `ServiceAccountInfo.UserInfo()`. Only valid once the caller
    /// has checked that the ServiceAccount `namespace/service_account.name` exists with
    /// `service_account.uid` (and is not being deleted for over a minute), and likewise the
    /// bound pod or secret in the namespace, or the bound Node for [`node_bound`] tokens.
    ///
    /// [`node_bound`]: Self::node_bound
    pub fn user(&self) -> ServiceAccountUser {
        let mut extra = BTreeMap::new();
        if let Some(pod) = &self.pod
            && !pod.name.is_empty()
            && !pod.uid.is_empty()
        {
            extra.insert(EXTRA_POD_NAME.to_string(), vec![pod.name.clone()]);
            extra.insert(EXTRA_POD_UID.to_string(), vec![pod.uid.clone()]);
        }
        if let Some(jti) = &self.jti {
            extra.insert(EXTRA_CREDENTIAL_ID.to_string(), vec![format!("JTI={jti}")]);
        }
        if let Some(node) = &self.node
            && !node.name.is_empty()
        {
            extra.insert(EXTRA_NODE_NAME.to_string(), vec![node.name.clone()]);
            // The node UID is optional: a pod's node may not have been found at issue time.
            if !node.uid.is_empty() {
                extra.insert(EXTRA_NODE_UID.to_string(), vec![node.uid.clone()]);
            }
        }
        ServiceAccountUser {
            username: make_username(&self.namespace, &self.service_account.name),
            uid: self.service_account.uid.clone(),
            groups: make_group_names(&self.namespace),
            extra,
        }
    }

    /// The `authentication.k8s.io/stale-token` audit annotation upstream adds when an
    /// extended token is used after its `warnafter`.
    pub fn stale_token_annotation(&self, now: Timestamp) -> Option<String> {
        let warn_after = self.warn_after?;
        (now > warn_after).then(|| {
            format!(
                "subject: {}, seconds after warning threshold: {}",
                self.subject,
                now.as_second() - warn_after.as_second()
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The TokenRequest subresource (POST .../serviceaccounts/<name>/token).

/// authentication.k8s.io/v1 TokenRequest, for [`ApiError::invalid`].
const TOKEN_REQUEST: ResourceInfo = ResourceInfo {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenRequest",
    plural: "tokenrequests",
    singular: "tokenrequest",
    short_names: &[],
    namespaced: true,
    subresources: &[],
    verbs: &["create"],
    categories: &[],
    storage_version: "v1",
};

/// Kinds a token can be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundKind {
    Pod,
    Secret,
    Node,
}

impl BoundKind {
    /// The resource to look the object up in (Pods and Secrets in the request's namespace).
    pub fn resource(self) -> &'static str {
        match self {
            BoundKind::Pod => "pods",
            BoundKind::Secret => "secrets",
            BoundKind::Node => "nodes",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            BoundKind::Pod => "Pod",
            BoundKind::Secret => "Secret",
            BoundKind::Node => "Node",
        }
    }
}

/// `spec.boundObjectRef` of a TokenRequest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundObjectRef {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub uid: String,
}

/// A decoded TokenRequest body. Upstream's order, which the caller follows:
///
/// 1. [`TokenRequest::from_body`] (400 for a malformed body, 422 when `metadata.name` or
///    `metadata.namespace` disagree with the URL);
/// 2. get the ServiceAccount (404 if missing);
/// 3. [`TokenRequest::validate`] (422, e.g. a lifetime under ten minutes);
/// 4. [`TokenRequest::bound_kind`] (400 for other kinds), get the object (404), for a Pod
///    check its `spec.serviceAccountName` ([`pod_service_account_mismatch`]) and get its
///    node (a missing Node is recorded by name only), then
///    [`TokenRequest::check_bound_uid`] (409);
/// 5. [`TokenRequest::apply_server_limits`] (add its message as a `Warning` header);
/// 6. [`SigningKey::issue`] of [`TokenRequest::token_spec`], and answer 201 with
///    [`TokenRequest::response`].
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    metadata: Map<String, Value>,
    /// `spec.audiences`; empty until [`apply_server_limits`](Self::apply_server_limits)
    /// fills in the apiserver's.
    pub audiences: Vec<String>,
    /// `spec.expirationSeconds`, defaulted to an hour.
    pub expiration_seconds: i64,
    pub bound_object_ref: Option<BoundObjectRef>,
}

/// Go's name for a JSON value's type in "cannot unmarshal" errors.
fn json_type(v: &Value) -> String {
    match v {
        Value::String(_) => "string".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) => format!("number {n}"),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
        Value::Null => "null".into(),
    }
}

fn decode_error(got: &Value, go_struct: &str, field: &str, go_type: &str) -> ApiError {
    let got = match got {
        // Go names whole numbers plainly and says `number 1.5` only for ones it cannot fit.
        Value::Number(n) if n.is_i64() || n.is_u64() => "number".to_string(),
        other => json_type(other),
    };
    ApiError::bad_request(format!(
        "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: json: cannot unmarshal {got} into Go struct field {go_struct}.{field} of type {go_type}"
    ))
}

fn string_field(
    obj: &Map<String, Value>,
    key: &str,
    go_struct: &str,
    path: &str,
) -> Result<String, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(decode_error(
            other,
            go_struct,
            &format!("{path}.{key}"),
            "string",
        )),
    }
}

fn object_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    go_struct: &str,
    path: &str,
    go_type: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(decode_error(other, go_struct, path, go_type)),
    }
}

impl TokenRequest {
    /// Decodes the request body for ServiceAccount `name` in `namespace` (from the URL).
    /// An empty body object is a request with every default.
    pub fn from_body(body: &Value, name: &str, namespace: &str) -> Result<TokenRequest, ApiError> {
        let empty = Map::new();
        let root = match body {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => {
                return Err(ApiError::bad_request(format!(
                    "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: json: cannot unmarshal {} into Go value of type v1.TokenRequest",
                    json_type(other)
                )));
            }
        };
        let metadata = object_field(
            root,
            "metadata",
            "TokenRequest",
            "metadata",
            "v1.ObjectMeta",
        )?
        .cloned()
        .unwrap_or_default();
        let req_name = string_field(&metadata, "name", "ObjectMeta", "metadata")?;
        let req_namespace = string_field(&metadata, "namespace", "ObjectMeta", "metadata")?;
        let empty_spec = Map::new();
        let spec = object_field(root, "spec", "TokenRequest", "spec", "v1.TokenRequestSpec")?
            .unwrap_or(&empty_spec);

        let audiences = match spec.get("audiences") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|a| match a {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(decode_error(
                        other,
                        "TokenRequestSpec",
                        "spec.audiences",
                        "string",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(decode_error(
                    other,
                    "TokenRequestSpec",
                    "spec.audiences",
                    "[]string",
                ));
            }
        };
        let expiration_seconds = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or_default(),
            Some(other) => {
                return Err(decode_error(
                    other,
                    "TokenRequestSpec",
                    "spec.expirationSeconds",
                    "int64",
                ));
            }
        };
        let bound_object_ref = match object_field(
            spec,
            "boundObjectRef",
            "TokenRequestSpec",
            "spec.boundObjectRef",
            "v1.BoundObjectReference",
        )? {
            None => None,
            Some(r) => {
                let path = "spec.boundObjectRef";
                Some(BoundObjectRef {
                    kind: string_field(r, "kind", "BoundObjectReference", path)?,
                    api_version: string_field(r, "apiVersion", "BoundObjectReference", path)?,
                    name: string_field(r, "name", "BoundObjectReference", path)?,
                    uid: string_field(r, "uid", "BoundObjectReference", path)?,
                })
            }
        };

        // The body may repeat the URL's name and namespace, but not contradict them.
        if !req_name.is_empty() && req_name != name {
            return Err(ApiError::invalid(
                &TOKEN_REQUEST,
                name,
                &[FieldError::invalid(
                    "metadata.name",
                    &json!(req_name),
                    "must match the service account name if specified",
                )],
            ));
        }
        if !req_namespace.is_empty() && req_namespace != namespace {
            return Err(ApiError::invalid(
                &TOKEN_REQUEST,
                name,
                &[FieldError::invalid(
                    "metadata.namespace",
                    &json!(req_namespace),
                    "must match the service account namespace if specified",
                )],
            ));
        }
        Ok(TokenRequest {
            metadata,
            audiences,
            expiration_seconds,
            bound_object_ref,
        })
    }

    /// Upstream's static validation: the lifetime (422 for `TokenRequest ""`, as upstream
    /// names it).
    pub fn validate(&self) -> Result<(), ApiError> {
        let errs = validate_expiration(self.expiration_seconds);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&TOKEN_REQUEST, "", &errs))
        }
    }

    /// The kind of object to bind to, or 400 for kinds other than core Pod, Secret, Node.
    pub fn bound_kind(&self) -> Result<Option<BoundKind>, ApiError> {
        let Some(r) = &self.bound_object_ref else {
            return Ok(None);
        };
        // As schema.FromAPIVersionAndKind: "v1" is the core group; an unparsable apiVersion
        // leaves group and version empty.
        let (group, version) = match r.api_version.split('/').collect::<Vec<_>>()[..] {
            [""] => ("", ""),
            [version] => ("", version),
            [group, version] => (group, version),
            _ => ("", ""),
        };
        let kind = match (group, r.kind.as_str()) {
            ("", "Pod") => Some(BoundKind::Pod),
            ("", "Secret") => Some(BoundKind::Secret),
            ("", "Node") => Some(BoundKind::Node),
            _ => None,
        };
        kind.map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={}",
                r.kind
            ))
        })
    }

    /// 409 when `boundObjectRef.uid` is set and the object found has another UID (it was
    /// deleted and recreated).
    pub fn check_bound_uid(&self, kind: BoundKind, actual_uid: &str) -> Result<(), ApiError> {
        let Some(r) = &self.bound_object_ref else {
            return Ok(());
        };
        if r.uid.is_empty() || r.uid == actual_uid {
            return Ok(());
        }
        Err(ApiError {
            details: Some(json!({ "name": r.name, "kind": kind.kind() })),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                    kind.kind(),
                    r.name,
                    r.uid
                ),
            )
        })
    }

    /// Fills in the apiserver's audiences when none were asked for, and shortens the lifetime
    /// to `max_expiration_seconds` (kube-apiserver's `--service-account-max-token-expiration`)
    /// if set; returns the warning upstream sends when it shortens.
    pub fn apply_server_limits(
        &mut self,
        api_audiences: &[String],
        max_expiration_seconds: Option<i64>,
    ) -> Option<String> {
        if self.audiences.is_empty() {
            self.audiences = api_audiences.to_vec();
        }
        let max = max_expiration_seconds.filter(|m| *m > 0)?;
        (self.expiration_seconds > max).then(|| {
            let warning = format!(
                "requested expiration of {} seconds shortened to {} seconds",
                self.expiration_seconds, max
            );
            self.expiration_seconds = max;
            warning
        })
    }

    /// What to sign. With `extend_expiration` (kube-apiserver's
    /// `--service-account-extend-token-expiration`, on by default), a pod-bound token asked
    /// for [`WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS`] for the apiserver's own audiences
    /// lives [`EXPIRATION_EXTENSION_SECONDS`] and records when it became stale; the response
    /// still reports the requested expiry.
    pub fn token_spec(
        &self,
        namespace: &str,
        service_account: ObjectRef,
        bound: Option<BoundObject>,
        api_audiences: &[String],
        extend_expiration: bool,
    ) -> TokenSpec {
        let extend = extend_expiration
            && matches!(bound, Some(BoundObject::Pod { .. }))
            && self.expiration_seconds == WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS
            && self.audiences.iter().all(|a| api_audiences.contains(a));
        TokenSpec {
            namespace: namespace.to_string(),
            service_account,
            audiences: self.audiences.clone(),
            expiration_seconds: if extend {
                EXPIRATION_EXTENSION_SECONDS
            } else {
                self.expiration_seconds
            },
            bound,
            warn_after_seconds: extend.then_some(self.expiration_seconds),
        }
    }

    /// The TokenRequest to answer with (201): the request with its defaults, a creation
    /// time of `now` (the `now` the token was issued at), and the status.
    pub fn response(&self, name: &str, namespace: &str, token: &str, now: Timestamp) -> Value {
        let mut metadata = self.metadata.clone();
        metadata.insert("name".into(), json!(name));
        metadata.insert("namespace".into(), json!(namespace));
        metadata.insert(
            "creationTimestamp".into(),
            json!(skiff_common::time::rfc3339(now)),
        );
        let bound = match &self.bound_object_ref {
            None => Value::Null,
            Some(r) => {
                let mut m = Map::new();
                for (k, v) in [
                    ("kind", &r.kind),
                    ("apiVersion", &r.api_version),
                    ("name", &r.name),
                    ("uid", &r.uid),
                ] {
                    if !v.is_empty() {
                        m.insert(k.into(), json!(v));
                    }
                }
                Value::Object(m)
            }
        };
        let expires = now + SignedDuration::from_secs(self.expiration_seconds);
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": metadata,
            "spec": {
                "audiences": self.audiences,
                "expirationSeconds": self.expiration_seconds,
                "boundObjectRef": bound,
            },
            "status": {
                "token": token,
                "expirationTimestamp": skiff_common::time::rfc3339(expires),
            },
        })
    }
}

/// 400 when the bound pod runs as another ServiceAccount.
pub fn pod_service_account_mismatch(service_account: &str) -> ApiError {
    ApiError::bad_request(format!(
        "cannot bind token for serviceaccount {service_account:?} to pod running with different serviceaccount name."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    fn key(dir: &Path) -> SigningKey {
        SigningKey::load_or_create(dir).unwrap()
    }

    fn spec() -> TokenSpec {
        TokenSpec::new("team-a", "builder", "sa-uid-1")
    }

    fn payload(token: &str) -> Value {
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn issuer_aud() -> Vec<String> {
        vec![DEFAULT_ISSUER.to_string()]
    }

    #[test]
    fn issue_then_verify_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let mut spec = spec();
        spec.bound = Some(BoundObject::Pod {
            pod: ObjectRef::new("web-0", "pod-uid"),
            node: Some(ObjectRef::new("node-1", "node-uid")),
        });
        let (token, exp) = key.issue(&spec, now()).unwrap();
        assert_eq!(exp, now() + SignedDuration::from_secs(3600));

        let later = now() + SignedDuration::from_secs(1800);
        let v = key.verify(&token, &[], later).unwrap();
        assert_eq!(v.namespace, "team-a");
        assert_eq!(v.service_account, ObjectRef::new("builder", "sa-uid-1"));
        assert_eq!(v.pod, Some(ObjectRef::new("web-0", "pod-uid")));
        assert_eq!(v.audiences, issuer_aud());
        assert!(!v.node_bound());

        let user = v.user();
        assert_eq!(user.username, "system:serviceaccount:team-a:builder");
        assert_eq!(user.uid, "sa-uid-1");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:serviceaccounts:team-a"]
        );
        let jti = v.jti.clone().unwrap();
        let extra = |k: &str| user.extra.get(k).cloned().unwrap_or_default();
        assert_eq!(extra(EXTRA_POD_NAME), ["web-0"]);
        assert_eq!(extra(EXTRA_POD_UID), ["pod-uid"]);
        assert_eq!(extra(EXTRA_NODE_NAME), ["node-1"]);
        assert_eq!(extra(EXTRA_NODE_UID), ["node-uid"]);
        assert_eq!(extra(EXTRA_CREDENTIAL_ID), [format!("JTI={jti}")]);
        assert_eq!(user.extra.len(), 5);
    }

    #[test]
    fn claims_have_upstream_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let mut spec = spec();
        spec.audiences = vec!["vault".into()];
        spec.bound = Some(BoundObject::Secret(ObjectRef::new("s", "secret-uid")));
        spec.warn_after_seconds = Some(3607);
        let (token, _) = key.issue(&spec, now()).unwrap();

        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header, json!({ "alg": "ES256", "kid": key.key_id() }));

        let mut claims = payload(&token);
        let jti = claims["jti"].as_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&jti).is_ok());
        claims["jti"] = json!("JTI");
        let t = now().as_second();
        assert_eq!(
            claims,
            json!({
                "aud": ["vault"],
                "exp": t + 3600,
                "iat": t,
                "iss": DEFAULT_ISSUER,
                "jti": "JTI",
                "kubernetes.io": {
                    "namespace": "team-a",
                    "secret": { "name": "s", "uid": "secret-uid" },
                    "serviceaccount": { "name": "builder", "uid": "sa-uid-1" },
                    "warnafter": t + 3607,
                },
                "nbf": t,
                "sub": "system:serviceaccount:team-a:builder",
            })
        );
        // Keys come out in go-jose's (sorted) order.
        let keys: Vec<&String> = claims.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn node_bound_token_is_flagged_for_a_node_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let mut spec = spec();
        spec.bound = Some(BoundObject::Node(ObjectRef::new("node-1", "node-uid")));
        let (token, _) = key.issue(&spec, now()).unwrap();
        assert_eq!(
            payload(&token)["kubernetes.io"]["node"],
            json!({ "name": "node-1", "uid": "node-uid" })
        );
        let v = key.verify(&token, &[], now()).unwrap();
        assert!(v.node_bound());
        assert!(!v.user().extra.contains_key(EXTRA_POD_NAME));
    }

    #[test]
    fn lifetime_limits_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let mut spec = spec();
        spec.expiration_seconds = 599;
        let err = key.issue(&spec, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        spec.expiration_seconds = (1 << 32) + 1;
        assert_eq!(
            key.issue(&spec, now()).unwrap_err().to_string(),
            "spec.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"
        );
        spec.expiration_seconds = 600;
        assert!(key.issue(&spec, now()).is_ok());
    }

    fn invalid(result: Result<VerifiedToken, Error>) -> String {
        match result {
            Err(Error::InvalidToken(m)) => m,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_fail_outside_the_leeway() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let (token, exp) = key.issue(&spec(), now()).unwrap();
        // Within a minute of `exp` the token still works; after, it does not.
        assert!(
            key.verify(&token, &[], exp + SignedDuration::from_secs(60))
                .is_ok()
        );
        assert_eq!(
            invalid(key.verify(&token, &[], exp + SignedDuration::from_secs(61))),
            "service account token has expired"
        );
        assert!(
            key.verify(&token, &[], now() - SignedDuration::from_secs(60))
                .is_ok()
        );
        assert_eq!(
            invalid(key.verify(&token, &[], now() - SignedDuration::from_secs(61))),
            "service account token is not valid yet"
        );
    }

    #[test]
    fn wrong_audience_fails() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let mut spec = spec();
        spec.audiences = vec!["vault".into()];
        let (token, _) = key.issue(&spec, now()).unwrap();
        assert_eq!(
            invalid(key.verify(&token, &[], now())),
            format!(
                "token audiences [\"vault\"] is invalid for the target audiences [\"{DEFAULT_ISSUER}\"]"
            )
        );
        // The same token is good for an apiserver that accepts that audience.
        let v = key
            .verify(&token, &["api".into(), "vault".into()], now())
            .unwrap();
        assert_eq!(v.audiences, ["vault"]);
    }

    #[test]
    fn token_of_another_issuer_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let (token, _) = key.issue(&spec(), now()).unwrap();
        let other = SigningKey::load_or_create(dir.path())
            .unwrap()
            .with_issuer("https://elsewhere.example");
        assert!(matches!(
            other.verify(&token, &[], now()),
            Err(Error::NotServiceAccountToken)
        ));
        for junk in ["", "abc", "a.b.c", "{\"iss\":\"x\"}"] {
            assert!(matches!(
                key.verify(junk, &[], now()),
                Err(Error::NotServiceAccountToken)
            ));
        }
    }

    #[test]
    fn tampered_token_fails() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let (token, _) = key.issue(&spec(), now()).unwrap();

        // A changed signature.
        let mut sig = token.rsplit('.').next().unwrap().to_string();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        sig.replace_range(0..1, flipped);
        let (message, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            invalid(key.verify(&format!("{message}.{sig}"), &[], now())),
            "invalid signature"
        );

        // A changed payload (another ServiceAccount) under the original signature.
        let mut claims = payload(&token);
        claims["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        assert_eq!(
            invalid(key.verify(&forged, &[], now())),
            "invalid signature"
        );

        // `alg: none` with the signature removed.
        let none = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": key.key_id()}).to_string());
        assert_eq!(
            invalid(key.verify(&format!("{none}.{}.", parts[1]), &[], now())),
            "invalid signature"
        );
    }

    #[test]
    fn token_signed_by_another_key_fails() {
        let dir = tempfile::tempdir().unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let other = SigningKey::load_or_create(other_dir.path()).unwrap();
        assert_ne!(key.key_id(), other.key_id());
        let (token, _) = other.issue(&spec(), now()).unwrap();
        assert_eq!(
            invalid(key.verify(&token, &[], now())),
            "invalid signature, no keys found"
        );

        // Without a `kid` the signature check itself refuses it.
        let claims: Value = payload(&token);
        let mut header = Header::new(Algorithm::ES256);
        header.typ = None;
        let unlabeled = jsonwebtoken::encode(&header, &claims, &other.encoding).unwrap();
        assert_eq!(
            invalid(key.verify(&unlabeled, &[], now())),
            "invalid signature"
        );
    }

    #[test]
    fn key_files_are_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let first = key(&pki);
        let mode = |name: &str| fs::metadata(pki.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("sa.key"), 0o600);
        assert_eq!(mode("sa.pub"), 0o644);
        assert!(
            fs::read_to_string(pki.join("sa.key"))
                .unwrap()
                .contains("BEGIN PRIVATE KEY")
        );
        assert_eq!(
            fs::read_to_string(pki.join("sa.pub")).unwrap(),
            first.public_key_pem()
        );
        assert!(!pki.join("sa.tmp").exists());

        // The next start reuses the key: its tokens still verify.
        let (token, _) = first.issue(&spec(), now()).unwrap();
        let second = key(&pki);
        assert_eq!(first.key_id(), second.key_id());
        assert!(second.verify(&token, &[], now()).is_ok());

        // A lost sa.pub is written again; a foreign one is refused.
        fs::remove_file(pki.join("sa.pub")).unwrap();
        assert_eq!(key(&pki).key_id(), first.key_id());
        let other = tempfile::tempdir().unwrap();
        fs::write(pki.join("sa.pub"), key(other.path()).public_key_pem()).unwrap();
        assert!(matches!(
            SigningKey::load_or_create(&pki),
            Err(Error::Key { .. })
        ));
    }

    #[test]
    fn key_id_is_the_sha256_of_the_pkix_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let pem = key.public_key_pem();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(key.key_id(), URL_SAFE_NO_PAD.encode(Sha256::digest(&der)));
        assert_eq!(key.key_id().len(), 43);
    }

    #[test]
    fn discovery_documents() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let jwks = key.jwks();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], key.key_id());
        assert_eq!(
            (&k["kty"], &k["crv"], &k["alg"], &k["use"]),
            (
                &json!("EC"),
                &json!("P-256"),
                &json!("ES256"),
                &json!("sig")
            )
        );
        // The JWK alone verifies the tokens, as a relying party would use it.
        let dk =
            DecodingKey::from_ec_components(k["x"].as_str().unwrap(), k["y"].as_str().unwrap())
                .unwrap();
        let (token, _) = key.issue(&spec(), now()).unwrap();
        let (message, sig) = token.rsplit_once('.').unwrap();
        assert!(
            jsonwebtoken::crypto::verify(sig, message.as_bytes(), &dk, Algorithm::ES256).unwrap()
        );

        let uri = default_jwks_uri("10.0.0.1:6443");
        assert_eq!(uri, "https://10.0.0.1:6443/openid/v1/jwks");
        assert_eq!(
            key.openid_configuration(&uri).unwrap(),
            json!({
                "issuer": DEFAULT_ISSUER,
                "jwks_uri": uri,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            })
        );
        let plain = SigningKey::load_or_create(dir.path())
            .unwrap()
            .with_issuer("http://insecure");
        assert!(plain.openid_configuration(&uri).is_err());
    }

    #[test]
    fn usernames() {
        assert_eq!(
            split_username("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        assert_eq!(split_username("system:serviceaccount:ns"), None);
        assert_eq!(split_username("alice"), None);
    }

    // --- TokenRequest --------------------------------------------------------------------

    fn request(body: Value) -> Result<TokenRequest, ApiError> {
        TokenRequest::from_body(&body, "builder", "team-a")
    }

    #[test]
    fn token_request_defaults_and_response() {
        let mut req = request(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": { "name": "builder" },
            "spec": {}
        }))
        .unwrap();
        assert_eq!(req.expiration_seconds, 3600);
        req.validate().unwrap();
        assert_eq!(req.bound_kind().unwrap(), None);
        assert_eq!(req.apply_server_limits(&issuer_aud(), None), None);

        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let spec = req.token_spec(
            "team-a",
            ObjectRef::new("builder", "u"),
            None,
            &issuer_aud(),
            true,
        );
        let (token, exp) = key.issue(&spec, now()).unwrap();
        let resp = req.response("builder", "team-a", &token, now());
        assert_eq!(
            resp,
            json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {
                    "name": "builder",
                    "namespace": "team-a",
                    "creationTimestamp": "2025-06-01T12:00:00Z",
                },
                "spec": {
                    "audiences": [DEFAULT_ISSUER],
                    "expirationSeconds": 3600,
                    "boundObjectRef": null,
                },
                "status": {
                    "token": token,
                    "expirationTimestamp": "2025-06-01T13:00:00Z",
                },
            })
        );
        assert_eq!(skiff_common::time::rfc3339(exp), "2025-06-01T13:00:00Z");
    }

    #[test]
    fn token_request_too_short_is_invalid() {
        let req = request(json!({ "spec": { "expirationSeconds": 60 } })).unwrap();
        let err = req.validate().unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
    }

    #[test]
    fn token_request_name_must_match_the_url() {
        let err = request(json!({ "metadata": { "name": "other" } })).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "TokenRequest.authentication.k8s.io \"builder\" is invalid: metadata.name: Invalid value: \"other\": must match the service account name if specified"
        );
        let err = request(json!({ "metadata": { "namespace": "x" } })).unwrap_err();
        assert!(
            err.message
                .contains("must match the service account namespace if specified")
        );
    }

    #[test]
    fn token_request_bad_shapes_are_bad_requests() {
        let err = request(json!({ "spec": { "expirationSeconds": "1h" } })).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: json: cannot unmarshal string into Go struct field TokenRequestSpec.spec.expirationSeconds of type int64"
        );
        let err = request(json!({ "spec": { "audiences": "api" } })).unwrap_err();
        assert_eq!(err.code, 400);
    }

    #[test]
    fn token_request_bound_kinds() {
        let bound = |kind: &str, api_version: &str| {
            request(json!({ "spec": { "boundObjectRef": {
                "kind": kind, "apiVersion": api_version, "name": "x", "uid": "u1"
            } } }))
            .unwrap()
        };
        assert_eq!(
            bound("Pod", "v1").bound_kind().unwrap(),
            Some(BoundKind::Pod)
        );
        assert_eq!(
            bound("Secret", "v1").bound_kind().unwrap(),
            Some(BoundKind::Secret)
        );
        assert_eq!(
            bound("Node", "").bound_kind().unwrap(),
            Some(BoundKind::Node)
        );
        let err = bound("ConfigMap", "v1").bound_kind().unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "cannot bind token to object of type /v1, Kind=ConfigMap"
        );
        let err = bound("Pod", "apps/v1").bound_kind().unwrap_err();
        assert_eq!(
            err.message,
            "cannot bind token to object of type apps/v1, Kind=Pod"
        );

        let pod = bound("Pod", "v1");
        assert!(pod.check_bound_uid(BoundKind::Pod, "u1").is_ok());
        let err = pod.check_bound_uid(BoundKind::Pod, "u2").unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Operation cannot be fulfilled on Pod \"x\": the UID in the bound object reference (u1) does not match the UID in record. The object might have been deleted and then recreated"
        );
        let resp = pod.response("builder", "team-a", "t", now());
        assert_eq!(
            resp["spec"]["boundObjectRef"],
            json!({ "kind": "Pod", "apiVersion": "v1", "name": "x", "uid": "u1" })
        );
        assert_eq!(
            pod_service_account_mismatch("builder").message,
            "cannot bind token for serviceaccount \"builder\" to pod running with different serviceaccount name."
        );
    }

    #[test]
    fn token_request_max_expiration_and_extension() {
        let mut req =
            request(json!({ "spec": { "expirationSeconds": 7200, "audiences": ["vault"] } }))
                .unwrap();
        assert_eq!(
            req.apply_server_limits(&issuer_aud(), Some(3600))
                .as_deref(),
            Some("requested expiration of 7200 seconds shortened to 3600 seconds")
        );
        assert_eq!(req.expiration_seconds, 3600);
        assert_eq!(req.audiences, ["vault"]);

        // A kubelet's 3607 s pod-bound token for the apiserver lives a year, warns after 3607 s.
        let mut req = request(json!({ "spec": { "expirationSeconds": 3607 } })).unwrap();
        req.apply_server_limits(&issuer_aud(), None);
        let pod = BoundObject::Pod {
            pod: ObjectRef::new("p", "pu"),
            node: None,
        };
        let spec = req.token_spec(
            "team-a",
            ObjectRef::new("builder", "u"),
            Some(pod.clone()),
            &issuer_aud(),
            true,
        );
        assert_eq!(spec.expiration_seconds, EXPIRATION_EXTENSION_SECONDS);
        assert_eq!(spec.warn_after_seconds, Some(3607));
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path());
        let (token, _) = key.issue(&spec, now()).unwrap();
        let later = now() + SignedDuration::from_secs(7200);
        let v = key.verify(&token, &[], later).unwrap();
        assert_eq!(
            v.stale_token_annotation(later).as_deref(),
            Some(
                "subject: system:serviceaccount:team-a:builder, seconds after warning threshold: 3593"
            )
        );
        assert_eq!(
            req.response("builder", "team-a", &token, now())["status"]["expirationTimestamp"],
            "2025-06-01T13:00:07Z"
        );
        // Not extended when switched off, or for other audiences.
        let spec = req.token_spec(
            "team-a",
            ObjectRef::new("builder", "u"),
            Some(pod),
            &issuer_aud(),
            false,
        );
        assert_eq!(spec.expiration_seconds, 3607);
        assert_eq!(spec.warn_after_seconds, None);
    }
}
