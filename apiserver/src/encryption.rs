//! Encryption at rest (`--encryption-provider-config`): Kubernetes' `EncryptionConfiguration`
//! (`apiserver.config.k8s.io/v1`) read into value transformers, and [`EncryptingStore`], the
//! [`Store`] wrapper that encrypts the configured resources' values on their way into the store
//! and decrypts them on their way out.
//!
//! The stored bytes are Kubernetes' own, so a store written by kube-apiserver with the same
//! configuration reads here and the other way round:
//! - aesgcm: `k8s:enc:aesgcm:v1:<key name>:` + 12-byte nonce + AES-GCM ciphertext and tag, the
//!   object's storage key as the additional authenticated data (a value copied to another key
//!   does not decrypt);
//! - aescbc: `k8s:enc:aescbc:v1:<key name>:` + 16-byte IV + AES-CBC ciphertext, PKCS#7 padded;
//! - secretbox: `k8s:enc:secretbox:v1:<key name>:` + 24-byte nonce + NaCl secretbox (XSalsa20 and
//!   a Poly1305 tag in front of the ciphertext);
//! - identity: the plain value.
//!
//! The first provider (its first key) encrypts every write; a read tries the providers whose
//! prefix the value carries, and reads plain values only when `identity` is listed. That is
//! what makes key rotation work: list the new key first, restart, rewrite every object
//! (`kubectl get secrets -A -o json | kubectl replace -f -`), then drop the old key.
//!
//! Sitting under the registry and the watch cache, the wrapper covers both store backends, and
//! everything above it (the cache, watches, the allocator) only ever sees plaintext.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use rand::RngCore;
use serde::Deserialize;
use skiff_api::resources::{self, ResourceInfo};
use skiff_store::{KeyValue, ListResult, Revision, Store, StoreError, WatchEvent, WatchStream};

/// Every encrypted value starts with this; `identity` refuses to read such a value as plain.
const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";
const GCM_NONCE: usize = 12;
const CBC_IV: usize = 16;
const SECRETBOX_NONCE: usize = 24;
const AES_KEY_SIZES: &[usize] = &[16, 24, 32];
const SECRETBOX_KEY_SIZES: &[usize] = &[32];

/// Why the encryption configuration could not be loaded, or a value not transformed.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("error reading encryption provider configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("error decoding encryption provider configuration file {path}: {message}")]
    Decode { path: String, message: String },
    /// Field errors, in Kubernetes' `field.ErrorList` wording, joined with `, `.
    #[error("error validating encryption provider configuration file {path}: [{}]", .errors.join(", "))]
    Invalid { path: String, errors: Vec<String> },
    /// A stored value that no configured provider can read.
    #[error("{0}")]
    Transform(String),
}

// ---- The configuration file ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Debug, Deserialize)]
struct ResourceConfig {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    aesgcm: Option<KeysConfig>,
    aescbc: Option<KeysConfig>,
    secretbox: Option<KeysConfig>,
    identity: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct KeysConfig {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

#[derive(Debug, Deserialize)]
struct KeyConfig {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

// ---- Transformers ----

/// One cipher with its key.
enum Cipher {
    Identity,
    AesGcm(AesGcmKey),
    AesCbc(AesCbcKey),
    Secretbox(Box<crypto_secretbox::XSalsa20Poly1305>),
}

enum AesGcmKey {
    A128(Box<aes_gcm::Aes128Gcm>),
    A192(Box<aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>>),
    A256(Box<aes_gcm::Aes256Gcm>),
}

/// The raw key: a CBC encryptor and decryptor are made per value (they carry the IV).
enum AesCbcKey {
    A128([u8; 16]),
    A192([u8; 24]),
    A256([u8; 32]),
}

/// One provider key: the prefix its values carry (empty for identity) and its cipher.
struct Transformer {
    prefix: Vec<u8>,
    cipher: Cipher,
}

/// The transformers of one `resources` entry, in the configuration's order: the first
/// encrypts, any reads.
pub struct Chain {
    transformers: Vec<Transformer>,
}

fn fill_random(buf: &mut [u8]) {
    // ThreadRng is a CSPRNG seeded from the OS, as Go's crypto/rand that upstream uses.
    rand::rng().fill_bytes(buf);
}

fn failed(what: &str) -> EncryptionError {
    EncryptionError::Transform(what.to_string())
}

impl Cipher {
    fn encrypt(&self, data: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        match self {
            Cipher::Identity => Ok(data.to_vec()),
            Cipher::AesGcm(key) => {
                let mut nonce = [0u8; GCM_NONCE];
                fill_random(&mut nonce);
                let payload = Payload {
                    msg: data,
                    aad: authenticated,
                };
                let sealed = match key {
                    AesGcmKey::A128(k) => k.encrypt((&nonce).into(), payload),
                    AesGcmKey::A192(k) => k.encrypt((&nonce).into(), payload),
                    AesGcmKey::A256(k) => k.encrypt((&nonce).into(), payload),
                }
                .map_err(|_| failed("aes-gcm encryption failed"))?;
                Ok([&nonce[..], &sealed].concat())
            }
            Cipher::AesCbc(key) => {
                use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
                let mut iv = [0u8; CBC_IV];
                fill_random(&mut iv);
                let sealed = match key {
                    AesCbcKey::A128(k) => cbc::Encryptor::<aes::Aes128>::new(k.into(), &iv.into())
                        .encrypt_padded_vec_mut::<Pkcs7>(data),
                    AesCbcKey::A192(k) => cbc::Encryptor::<aes::Aes192>::new(k.into(), &iv.into())
                        .encrypt_padded_vec_mut::<Pkcs7>(data),
                    AesCbcKey::A256(k) => cbc::Encryptor::<aes::Aes256>::new(k.into(), &iv.into())
                        .encrypt_padded_vec_mut::<Pkcs7>(data),
                };
                Ok([&iv[..], &sealed].concat())
            }
            Cipher::Secretbox(key) => {
                let mut nonce = [0u8; SECRETBOX_NONCE];
                fill_random(&mut nonce);
                let sealed = key
                    .encrypt((&nonce).into(), data)
                    .map_err(|_| failed("secretbox encryption failed"))?;
                Ok([&nonce[..], &sealed].concat())
            }
        }
    }

    fn decrypt(&self, data: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let too_short = || failed("the stored data was shorter than the required size");
        match self {
            Cipher::Identity => {
                if data.starts_with(ENCRYPTED_PREFIX) {
                    return Err(failed("identity transformer tried to read encrypted data"));
                }
                Ok(data.to_vec())
            }
            Cipher::AesGcm(key) => {
                if data.len() < GCM_NONCE {
                    return Err(too_short());
                }
                let (nonce, sealed) = data.split_at(GCM_NONCE);
                let payload = Payload {
                    msg: sealed,
                    aad: authenticated,
                };
                match key {
                    AesGcmKey::A128(k) => k.decrypt(nonce.into(), payload),
                    AesGcmKey::A192(k) => k.decrypt(nonce.into(), payload),
                    AesGcmKey::A256(k) => k.decrypt(nonce.into(), payload),
                }
                .map_err(|_| failed("cipher: message authentication failed"))
            }
            Cipher::AesCbc(key) => {
                use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
                if data.len() < CBC_IV {
                    return Err(too_short());
                }
                let (iv, sealed) = data.split_at(CBC_IV);
                if sealed.is_empty() || sealed.len() % CBC_IV != 0 {
                    return Err(failed(
                        "the stored data is not a multiple of the block size",
                    ));
                }
                let iv = iv.into();
                match key {
                    AesCbcKey::A128(k) => cbc::Decryptor::<aes::Aes128>::new(k.into(), iv)
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed),
                    AesCbcKey::A192(k) => cbc::Decryptor::<aes::Aes192>::new(k.into(), iv)
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed),
                    AesCbcKey::A256(k) => cbc::Decryptor::<aes::Aes256>::new(k.into(), iv)
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed),
                }
                // A wrong key almost always shows as bad padding: CBC has no authentication.
                .map_err(|_| failed("invalid padding on input"))
            }
            Cipher::Secretbox(key) => {
                if data.len() < SECRETBOX_NONCE {
                    return Err(too_short());
                }
                let (nonce, sealed) = data.split_at(SECRETBOX_NONCE);
                key.decrypt(nonce.into(), sealed)
                    .map_err(|_| failed("could not open secretbox"))
            }
        }
    }
}

impl Chain {
    /// The value to store: the first provider's prefix and ciphertext.
    fn seal(&self, key: &str, value: &[u8]) -> Result<Bytes, EncryptionError> {
        let first = &self.transformers[0];
        let sealed = first.cipher.encrypt(value, key.as_bytes())?;
        Ok(Bytes::from([&first.prefix[..], &sealed].concat()))
    }

    /// The plain value of a stored one: the first provider whose prefix it carries opens it.
    /// `identity` (empty prefix) matches everything but steps aside for encrypted data, so a
    /// configuration that lists it first (to decrypt everything) still reads what is encrypted.
    fn open(&self, key: &str, value: &Bytes) -> Result<Bytes, EncryptionError> {
        for t in &self.transformers {
            if !value.starts_with(&t.prefix) {
                continue;
            }
            match t.cipher.decrypt(&value[t.prefix.len()..], key.as_bytes()) {
                Err(_) if t.prefix.is_empty() => continue,
                Err(e) => return Err(e),
                // Plain values pass through without a copy.
                Ok(_) if t.prefix.is_empty() => return Ok(value.clone()),
                Ok(plain) => return Ok(Bytes::from(plain)),
            }
        }
        if value.starts_with(ENCRYPTED_PREFIX) {
            Err(failed(
                "no matching prefix found: the value was encrypted with a key the encryption configuration does not list",
            ))
        } else {
            Err(failed(
                "no matching prefix found: the value is not encrypted and the encryption configuration lists no identity provider",
            ))
        }
    }
}

// ---- Loading and validating ----

/// The loaded `--encryption-provider-config`: a transformer chain per storage prefix.
pub struct EncryptionConfig {
    /// Longest prefix first, so the most specific prefix matches.
    chains: Vec<(String, Arc<Chain>)>,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        let prefixes: Vec<&str> = self.chains.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("EncryptionConfig")
            .field("prefixes", &prefixes)
            .finish()
    }
}

/// `resource.group` split as Kubernetes' `schema.ParseGroupResource` does.
fn parse_group_resource(s: &str) -> (&str, &str) {
    match s.split_once('.') {
        Some((resource, group)) => (group, resource),
        None => ("", s),
    }
}

fn go_list(sizes: &[usize]) -> String {
    let parts: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    format!("[{}]", parts.join(" "))
}

/// Decodes a key's base64 secret, checking its length as Kubernetes does.
fn key_bytes(
    key: &KeyConfig,
    path: &str,
    sizes: &[usize],
    errors: &mut Vec<String>,
) -> Option<Vec<u8>> {
    if key.name.is_empty() {
        errors.push(format!(
            "{path}.name: Required value: name is a mandatory field for a key"
        ));
    }
    if key.secret.is_empty() {
        errors.push(format!(
            "{path}.secret: Required value: secret is a mandatory field for a key"
        ));
        return None;
    }
    let Ok(secret) = base64::engine::general_purpose::STANDARD.decode(&key.secret) else {
        errors.push(format!(
            "{path}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded"
        ));
        return None;
    };
    if !sizes.contains(&secret.len()) {
        errors.push(format!(
            "{path}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of {}",
            secret.len(),
            go_list(sizes)
        ));
        return None;
    }
    (!key.name.is_empty()).then_some(secret)
}

fn transformers(
    kind: &str,
    keys: &KeysConfig,
    path: &str,
    errors: &mut Vec<String>,
) -> Vec<Transformer> {
    let path = format!("{path}.{kind}.keys");
    if keys.keys.is_empty() {
        errors.push(format!(
            "{path}: Required value: at least one keys is required"
        ));
    }
    let sizes = if kind == "secretbox" {
        SECRETBOX_KEY_SIZES
    } else {
        AES_KEY_SIZES
    };
    let mut out = Vec::new();
    for (i, key) in keys.keys.iter().enumerate() {
        let Some(secret) = key_bytes(key, &format!("{path}[{i}]"), sizes, errors) else {
            continue;
        };
        let cipher = match (kind, secret.len()) {
            ("aesgcm", 16) => Cipher::AesGcm(AesGcmKey::A128(Box::new(
                aes_gcm::Aes128Gcm::new_from_slice(&secret).expect("checked length"),
            ))),
            ("aesgcm", 24) => Cipher::AesGcm(AesGcmKey::A192(Box::new(
                aes_gcm::AesGcm::new_from_slice(&secret).expect("checked length"),
            ))),
            ("aesgcm", _) => Cipher::AesGcm(AesGcmKey::A256(Box::new(
                aes_gcm::Aes256Gcm::new_from_slice(&secret).expect("checked length"),
            ))),
            ("aescbc", 16) => {
                Cipher::AesCbc(AesCbcKey::A128(secret.try_into().expect("checked length")))
            }
            ("aescbc", 24) => {
                Cipher::AesCbc(AesCbcKey::A192(secret.try_into().expect("checked length")))
            }
            ("aescbc", _) => {
                Cipher::AesCbc(AesCbcKey::A256(secret.try_into().expect("checked length")))
            }
            _ => Cipher::Secretbox(Box::new(
                crypto_secretbox::XSalsa20Poly1305::new_from_slice(&secret)
                    .expect("checked length"),
            )),
        };
        out.push(Transformer {
            prefix: format!("k8s:enc:{kind}:v1:{}:", key.name).into_bytes(),
            cipher,
        });
    }
    out
}

fn validate_resource_names(names: &[String], path: &str, errors: &mut Vec<String>) {
    for (j, name) in names.iter().enumerate() {
        let invalid = |msg: &str| format!("{path}[{j}]: Invalid value: {name:?}: {msg}");
        let (group, resource) = parse_group_resource(name);
        if name.to_lowercase() != *name {
            errors.push(invalid("resource name should not contain capital letters"));
        } else if name == "*" {
            errors.push(invalid(
                "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources",
            ));
        } else if group == "events.k8s.io" {
            errors.push(invalid(
                "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file",
            ));
        } else if group == "extensions" {
            errors.push(invalid(
                "'extensions' group has been removed and cannot be used for encryption",
            ));
        } else if group == "*" && resource != "*" {
            errors.push(invalid(
                "encrypting the same resource across groups is not supported",
            ));
        }
    }
}

impl EncryptionConfig {
    /// Reads and validates the file; any error stops the apiserver before it serves.
    pub fn load(path: &Path) -> Result<Self, EncryptionError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| EncryptionError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&shown, &text)
    }

    /// Parses a configuration (YAML or JSON); `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, EncryptionError> {
        let decode = |message: String| EncryptionError::Decode {
            path: path.to_string(),
            message,
        };
        let file: ConfigFile = serde_yaml::from_str(text).map_err(|e| decode(e.to_string()))?;
        if file.api_version != "apiserver.config.k8s.io/v1"
            || file.kind != "EncryptionConfiguration"
        {
            return Err(decode(format!(
                "got apiVersion {:?} and kind {:?}, want apiVersion \"apiserver.config.k8s.io/v1\" and kind \"EncryptionConfiguration\"",
                file.api_version, file.kind
            )));
        }
        let mut errors = Vec::new();
        if file.resources.is_empty() {
            errors.push("resources: Required value: at least one resources is required".into());
        }
        let mut rules: Vec<(Vec<String>, Arc<Chain>)> = Vec::new();
        for (i, rc) in file.resources.iter().enumerate() {
            let r = format!("resources[{i}].resources");
            let p = format!("resources[{i}].providers");
            if rc.resources.is_empty() {
                errors.push(format!("{r}: Required value: at least one {r} is required"));
            }
            validate_resource_names(&rc.resources, &r, &mut errors);
            if rc.providers.is_empty() {
                errors.push(format!("{p}: Required value: at least one {p} is required"));
            }
            let mut chain = Vec::new();
            for (j, provider) in rc.providers.iter().enumerate() {
                let path = format!("{p}[{j}]");
                let given = [
                    provider.kms.is_some(),
                    provider.aesgcm.is_some(),
                    provider.aescbc.is_some(),
                    provider.secretbox.is_some(),
                    provider.identity.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if given == 0 {
                    errors.push(format!("{path}: Invalid value: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"));
                    continue;
                }
                if given > 1 {
                    errors.push(format!("{path}: Invalid value: more than one provider specified in a single element, should split into different list elements"));
                    continue;
                }
                if provider.kms.is_some() {
                    errors.push(format!("{path}.kms: Unsupported value: Skiff has no KMS plugin support; use aesgcm, aescbc or secretbox"));
                } else if let Some(keys) = &provider.aesgcm {
                    chain.extend(transformers("aesgcm", keys, &path, &mut errors));
                } else if let Some(keys) = &provider.aescbc {
                    chain.extend(transformers("aescbc", keys, &path, &mut errors));
                } else if let Some(keys) = &provider.secretbox {
                    chain.extend(transformers("secretbox", keys, &path, &mut errors));
                } else {
                    chain.push(Transformer {
                        prefix: Vec::new(),
                        cipher: Cipher::Identity,
                    });
                }
            }
            if !chain.is_empty() {
                rules.push((
                    rc.resources.clone(),
                    Arc::new(Chain {
                        transformers: chain,
                    }),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(EncryptionError::Invalid {
                path: path.to_string(),
                errors,
            });
        }
        Ok(Self::resolve(&rules, resources::all()))
    }

    /// Gives each served resource the chain of the first `resources` entry naming it (as
    /// Kubernetes does: earlier entries win), keyed by its storage prefix.
    fn resolve(rules: &[(Vec<String>, Arc<Chain>)], served: &[ResourceInfo]) -> Self {
        let mut chains: Vec<(String, Arc<Chain>)> = Vec::new();
        for info in served {
            let prefix = info.storage_prefix();
            if chains.iter().any(|(p, _)| *p == prefix) {
                continue;
            }
            let covers = |name: &String| {
                let (group, resource) = parse_group_resource(name);
                (group == "*" || group == info.group)
                    && (resource == "*" || resource == info.plural)
            };
            if let Some((_, chain)) = rules.iter().find(|(names, _)| names.iter().any(covers)) {
                chains.push((prefix, chain.clone()));
            }
        }
        chains.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        EncryptionConfig { chains }
    }

    fn chain(&self, key: &str) -> Option<&Chain> {
        self.chains
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, c)| &**c)
    }

    /// Whether a stored value is not what a write now stores (another key or provider wrote
    /// it): Kubernetes' "stale" read, which makes an update that changes nothing still write.
    fn is_stale(&self, key: &str, stored: &[u8]) -> bool {
        let Some(chain) = self.chain(key) else {
            return false;
        };
        let first = &chain.transformers[0];
        if first.prefix.is_empty() {
            stored.starts_with(ENCRYPTED_PREFIX)
        } else {
            !stored.starts_with(&first.prefix)
        }
    }

    fn seal(&self, key: &str, value: Bytes) -> Result<Bytes, StoreError> {
        match self.chain(key) {
            Some(chain) => chain.seal(key, &value).map_err(|e| transform_error(key, e)),
            None => Ok(value),
        }
    }

    fn open(&self, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
        if let Some(chain) = self.chain(&kv.key) {
            kv.value = chain
                .open(&kv.key, &kv.value)
                .map_err(|e| transform_error(&kv.key, e))?;
        }
        Ok(kv)
    }

    fn open_error(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Conflict {
                key,
                expected,
                current: Some(kv),
            } => match self.open(kv) {
                Ok(kv) => StoreError::Conflict {
                    key,
                    expected,
                    current: Some(kv),
                },
                Err(e) => e,
            },
            e => e,
        }
    }
}

/// kube-apiserver's wording for a value it cannot transform.
fn transform_error(key: &str, e: EncryptionError) -> StoreError {
    StoreError::Backend(format!("unable to transform key {key:?}: {e}"))
}

// ---- The store wrapper ----

/// A [`Store`] that encrypts the configured resources' values before they reach `inner` and
/// decrypts them on every way out (reads, deletes, conflicts, watch events).
pub struct EncryptingStore {
    inner: Arc<dyn Store>,
    config: Arc<EncryptionConfig>,
}

impl EncryptingStore {
    pub fn new(inner: Arc<dyn Store>, config: EncryptionConfig) -> Self {
        EncryptingStore {
            inner,
            config: Arc::new(config),
        }
    }
}

impl EncryptingStore {
    /// Whether `key`'s stored value was written with another key or provider than the one
    /// writes use now, so that an update which changes nothing must still rewrite it (this is
    /// what `kubectl replace` of every Secret relies on to re-encrypt with a new key).
    pub async fn is_stale(&self, key: &str) -> Result<bool, StoreError> {
        if self.config.chain(key).is_none() {
            return Ok(false);
        }
        Ok(self
            .inner
            .get(key)
            .await?
            .is_some_and(|kv| self.config.is_stale(key, &kv.value)))
    }
}

#[async_trait]
impl Store for EncryptingStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner
            .get(key)
            .await?
            .map(|kv| self.config.open(kv))
            .transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        let mut result = self
            .inner
            .list(prefix, start_after, limit, revision)
            .await?;
        result.items = std::mem::take(&mut result.items)
            .into_iter()
            .map(|kv| self.config.open(kv))
            .collect::<Result<_, _>>()?;
        Ok(result)
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        self.inner.count(prefix).await
    }

    async fn create_with_ttl(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        let value = self.config.seal(key, value)?;
        self.inner.create_with_ttl(key, value, ttl).await
    }

    async fn update_with_ttl(
        &self,
        key: &str,
        expected: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        let value = self.config.seal(key, value)?;
        self.inner
            .update_with_ttl(key, expected, value, ttl)
            .await
            .map_err(|e| self.config.open_error(e))
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        let (kv, revision) = self
            .inner
            .delete(key, expected)
            .await
            .map_err(|e| self.config.open_error(e))?;
        Ok((self.config.open(kv)?, revision))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let config = self.config.clone();
        let stream = self.inner.watch(prefix, after).await?;
        Ok(stream
            .map(move |event| {
                let mut event: WatchEvent = event?;
                event.kv = config.open(event.kv)?;
                event.prev = event.prev.map(|kv| config.open(kv)).transpose()?;
                Ok(event)
            })
            .boxed())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes 0..32, 0..16 and 32..64, base64.
    const KEY32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY16: &str = "AAECAwQFBgcICQoLDA0ODw==";
    const OTHER32: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    const KEY: &str = "/registry/secrets/default/s";
    const PLAIN: &[u8] = br#"{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}"#;

    fn config(providers: &str) -> EncryptionConfig {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, configmaps]\n  providers:\n  {providers}"
        );
        EncryptionConfig::parse("test.yaml", &text).unwrap()
    }

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    fn stored(prefix: &str, body: &str) -> Bytes {
        Bytes::from([prefix.as_bytes(), &b64(body)].concat())
    }

    // Known values made by independent implementations (Python's `cryptography` and PyNaCl)
    // with fixed nonces: a value kube-apiserver wrote with the same key must read here.
    #[test]
    fn reads_values_made_elsewhere_with_known_keys_and_nonces() {
        let cases = [
            (
                format!("- aesgcm:\n      keys: [{{name: k1, secret: {KEY32}}}]\n"),
                "k8s:enc:aesgcm:v1:k1:",
                "ZGVmZ2hpamtsbW5vMzm1DxeNdKQcMTqLqAAe327gYmv/DdFI3PPcKYjQ0ifmjWL6bnPTUoiXP2mED63yJnnlmnEV3KXaz9/WepVz1i/qWk8=",
            ),
            (
                format!("- aesgcm:\n      keys: [{{name: k1, secret: {KEY16}}}]\n"),
                "k8s:enc:aesgcm:v1:k1:",
                "ZGVmZ2hpamtsbW5vYUAlzLVmmsC5bTJz9K9fzhyqHJ7myP9gj03B9s+BgJzImHAeqXlvx/88YBD0zyM65r9gDqXemZAja/zy5mUV7lBqMD4=",
            ),
            (
                format!("- aescbc:\n      keys: [{{name: k1, secret: {KEY32}}}]\n"),
                "k8s:enc:aescbc:v1:k1:",
                "yMnKy8zNzs/Q0dLT1NXW1wfRb+ZzXZi3i2q7iONt6Jgiyiqdjl5a37041dy+Vp6urhjzQEJw43XhgnDsI/LY4DNypKULezI4zUCaFsDUnOU=",
            ),
            (
                format!("- secretbox:\n      keys: [{{name: k1, secret: {KEY32}}}]\n"),
                "k8s:enc:secretbox:v1:k1:",
                "MjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJqh69xWOWKAmDOo4J5J5H+1UmOpeXr9BcQARkydL9tlQIJClZ+4NYAeC7rJWYfZhMXAwiTjTWYyG1I5Wsfg9FzVLg4X0=",
            ),
        ];
        for (providers, prefix, body) in cases {
            let config = config(&providers);
            let chain = config.chain(KEY).expect("secrets are covered");
            let value = stored(prefix, body);
            assert_eq!(chain.open(KEY, &value).unwrap(), PLAIN, "{prefix}");
        }
    }

    #[test]
    fn every_provider_round_trips_with_its_prefix_and_fresh_nonces() {
        for (kind, nonce) in [("aesgcm", 12), ("aescbc", 16), ("secretbox", 24)] {
            let config = config(&format!(
                "- {kind}:\n      keys: [{{name: key1, secret: {KEY32}}}]\n"
            ));
            let chain = config.chain(KEY).unwrap();
            let a = chain.seal(KEY, PLAIN).unwrap();
            let b = chain.seal(KEY, PLAIN).unwrap();
            let prefix = format!("k8s:enc:{kind}:v1:key1:");
            assert!(a.starts_with(prefix.as_bytes()), "{kind}");
            assert_ne!(a, b, "{kind}: every write gets a new nonce");
            assert_ne!(a[prefix.len()..][..nonce], b[prefix.len()..][..nonce]);
            assert!(
                !a.windows(8).any(|w| w == b"aHVudGVy"),
                "{kind}: no plaintext"
            );
            assert_eq!(chain.open(KEY, &a).unwrap(), PLAIN, "{kind}");
        }
    }

    #[test]
    fn a_wrong_key_fails_with_a_clear_error() {
        for (kind, message) in [
            ("aesgcm", "cipher: message authentication failed"),
            ("aescbc", "invalid padding on input"),
            ("secretbox", "could not open secretbox"),
        ] {
            let right = config(&format!(
                "- {kind}:\n      keys: [{{name: k, secret: {KEY32}}}]\n"
            ));
            let wrong = config(&format!(
                "- {kind}:\n      keys: [{{name: k, secret: {OTHER32}}}]\n"
            ));
            let value = right.seal(KEY, Bytes::from_static(PLAIN)).unwrap();
            let kv = KeyValue {
                key: KEY.into(),
                value,
                create_revision: 2,
                mod_revision: 2,
            };
            let err = wrong.open(kv).unwrap_err().to_string();
            // CBC without authentication can, rarely, unpad garbage; GCM and secretbox never.
            if kind != "aescbc" || err.contains("unable") {
                assert_eq!(
                    err,
                    format!("storage backend error: unable to transform key \"{KEY}\": {message}"),
                );
            }
        }
    }

    #[test]
    fn aesgcm_binds_the_value_to_its_key() {
        let config = config(&format!(
            "- aesgcm:\n      keys: [{{name: k, secret: {KEY32}}}]\n"
        ));
        let chain = config.chain(KEY).unwrap();
        let value = chain.seal(KEY, PLAIN).unwrap();
        let other = "/registry/secrets/default/t";
        assert!(chain.open(other, &value).is_err());
    }

    #[test]
    fn rotation_reads_old_keys_and_writes_with_the_first() {
        let old = config(&format!(
            "- aesgcm:\n      keys: [{{name: key1, secret: {KEY32}}}]\n"
        ));
        let v1 = old.chain(KEY).unwrap().seal(KEY, PLAIN).unwrap();
        let both = config(&format!(
            "- aesgcm:\n      keys: [{{name: key2, secret: {OTHER32}}}, {{name: key1, secret: {KEY32}}}]\n"
        ));
        let chain = both.chain(KEY).unwrap();
        assert_eq!(chain.open(KEY, &v1).unwrap(), PLAIN);
        let v2 = chain.seal(KEY, PLAIN).unwrap();
        assert!(v2.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        let new = config(&format!(
            "- aesgcm:\n      keys: [{{name: key2, secret: {OTHER32}}}]\n"
        ));
        assert_eq!(new.chain(KEY).unwrap().open(KEY, &v2).unwrap(), PLAIN);
        assert!(new.chain(KEY).unwrap().open(KEY, &v1).is_err());
    }

    #[test]
    fn values_from_an_older_key_or_provider_are_stale() {
        let old = config(&format!(
            "- aesgcm:\n      keys: [{{name: key1, secret: {KEY32}}}]\n"
        ));
        let v1 = old.seal(KEY, Bytes::from_static(PLAIN)).unwrap();
        assert!(!old.is_stale(KEY, &v1));
        let both = config(&format!(
            "- aesgcm:\n      keys: [{{name: key2, secret: {OTHER32}}}, {{name: key1, secret: {KEY32}}}]\n"
        ));
        assert!(both.is_stale(KEY, &v1));
        assert!(both.is_stale(KEY, PLAIN));
        let decrypting = config("- identity: {}\n");
        assert!(decrypting.is_stale(KEY, &v1));
        assert!(!decrypting.is_stale(KEY, PLAIN));
        assert!(!both.is_stale("/registry/pods/default/p", b"plain"));
    }

    #[test]
    fn identity_reads_plaintext_and_steps_aside_for_encrypted_values() {
        let plain = Bytes::from_static(PLAIN);
        let encrypting = config(&format!(
            "- aescbc:\n      keys: [{{name: k, secret: {KEY32}}}]\n  - identity: {{}}\n"
        ));
        let chain = encrypting.chain(KEY).unwrap();
        assert_eq!(chain.open(KEY, &plain).unwrap(), PLAIN);
        // Decrypting everything: identity first writes plain and still reads the old values.
        let sealed = chain.seal(KEY, PLAIN).unwrap();
        let decrypting = config(&format!(
            "- identity: {{}}\n  - aescbc:\n      keys: [{{name: k, secret: {KEY32}}}]\n"
        ));
        let chain = decrypting.chain(KEY).unwrap();
        assert_eq!(chain.seal(KEY, PLAIN).unwrap(), PLAIN);
        assert_eq!(chain.open(KEY, &sealed).unwrap(), PLAIN);
        // Without identity, plaintext is refused.
        let strict = config(&format!(
            "- aescbc:\n      keys: [{{name: k, secret: {KEY32}}}]\n"
        ));
        let err = strict.chain(KEY).unwrap().open(KEY, &plain).unwrap_err();
        assert!(
            err.to_string().contains("no matching prefix found"),
            "{err}"
        );
    }

    #[test]
    fn listed_resources_are_covered_and_others_pass_through() {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: [{{secretbox: {{keys: [{{name: a, secret: {KEY32}}}]}}}}]\n- resources: ['*.apps', configmaps]\n  providers: [{{aesgcm: {{keys: [{{name: b, secret: {KEY16}}}]}}}}]\n"
        );
        let config = EncryptionConfig::parse("t", &text).unwrap();
        let sealed_starts = |key: &str, prefix: &str| {
            let sealed = config.chain(key).unwrap().seal(key, b"x").unwrap();
            sealed.starts_with(prefix.as_bytes())
        };
        assert!(sealed_starts(
            "/registry/secrets/ns/a",
            "k8s:enc:secretbox:v1:a:"
        ));
        assert!(sealed_starts(
            "/registry/configmaps/ns/a",
            "k8s:enc:aesgcm:v1:b:"
        ));
        assert!(config.chain("/registry/deployments/ns/a").is_some());
        assert!(config.chain("/registry/pods/ns/a").is_none());
        assert!(config.chain("/registry/allocations/x").is_none());
    }

    #[test]
    fn bad_configurations_are_refused_with_kubernetes_messages() {
        let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n";
        let cases = [
            (
                format!(
                    "{head}resources:\n- resources: [secrets]\n  providers: [{{aesgcm: {{keys: [{{name: k, secret: AAAA}}]}}}}]\n"
                ),
                "resources[0].providers[0].aesgcm.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 3, expected one of [16 24 32]",
            ),
            (
                format!(
                    "{head}resources:\n- resources: [secrets]\n  providers: [{{secretbox: {{keys: [{{name: k, secret: {KEY16}}}]}}}}]\n"
                ),
                "resources[0].providers[0].secretbox.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 16, expected one of [32]",
            ),
            (
                format!(
                    "{head}resources:\n- resources: [secrets]\n  providers: [{{aescbc: {{keys: [{{name: k, secret: '!!'}}]}}}}]\n"
                ),
                "secrets must be base64 encoded",
            ),
            (
                format!(
                    "{head}resources:\n- resources: [secrets]\n  providers: [{{aescbc: {{keys: []}}}}]\n"
                ),
                "resources[0].providers[0].aescbc.keys: Required value: at least one keys is required",
            ),
            (
                format!(
                    "{head}resources:\n- resources: [secrets]\n  providers: [{{aescbc: {{keys: [{{secret: {KEY32}}}]}}, identity: {{}}}}]\n"
                ),
                "more than one provider specified in a single element, should split into different list elements",
            ),
            (
                format!(
                    "{head}resources:\n- resources: [Secrets]\n  providers: [{{identity: {{}}}}]\n"
                ),
                "resource name should not contain capital letters",
            ),
            (
                format!(
                    "{head}resources:\n- resources: ['*']\n  providers: [{{identity: {{}}}}]\n"
                ),
                "use '*.' to encrypt all the resources from core API group",
            ),
            (
                format!("{head}resources:\n- resources: [secrets]\n  providers: []\n"),
                "resources[0].providers: Required value: at least one resources[0].providers is required",
            ),
            (
                "apiVersion: v1\nkind: EncryptionConfig\nresources: []\n".to_string(),
                "want apiVersion \"apiserver.config.k8s.io/v1\" and kind \"EncryptionConfiguration\"",
            ),
        ];
        for (text, message) in cases {
            let err = EncryptionConfig::parse("enc.yaml", &text)
                .err()
                .unwrap_or_else(|| panic!("accepted:\n{text}"))
                .to_string();
            assert!(err.contains(message), "{err}\nshould contain: {message}");
            assert!(err.contains("enc.yaml"), "{err}");
        }
    }

    #[tokio::test]
    async fn the_store_below_sees_ciphertext_and_callers_see_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> =
            Arc::new(skiff_store::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let store = EncryptingStore::new(
            raw.clone(),
            config(&format!(
                "- aesgcm:\n      keys: [{{name: k, secret: {KEY32}}}]\n"
            )),
        );
        let watch = store.watch("/registry/", 1).await.unwrap();
        let rev = store.create(KEY, Bytes::from_static(PLAIN)).await.unwrap();
        store
            .create("/registry/pods/default/p", Bytes::from_static(b"pod"))
            .await
            .unwrap();
        let below = raw.get(KEY).await.unwrap().unwrap();
        assert!(below.value.starts_with(b"k8s:enc:aesgcm:v1:k:"));
        assert_eq!(store.get(KEY).await.unwrap().unwrap().value, PLAIN);
        let pod = raw.get("/registry/pods/default/p").await.unwrap().unwrap();
        assert_eq!(pod.value, &b"pod"[..]);
        let list = store
            .list("/registry/secrets/", None, 0, None)
            .await
            .unwrap();
        assert_eq!(list.items[0].value, PLAIN);
        let err = store
            .update(KEY, rev + 100, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        match err {
            StoreError::Conflict {
                current: Some(kv), ..
            } => assert_eq!(kv.value, PLAIN),
            e => panic!("{e}"),
        }
        let (deleted, _) = store.delete(KEY, None).await.unwrap();
        assert_eq!(deleted.value, PLAIN);
        let events: Vec<_> = watch.take(3).collect().await;
        let values: Vec<_> = events.into_iter().map(|e| e.unwrap().kv.value).collect();
        assert_eq!(values, [PLAIN, &b"pod"[..], PLAIN]);
    }
}
