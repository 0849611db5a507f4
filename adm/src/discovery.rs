//! Bootstrap-token discovery, as `kubeadm join` does it: read `kube-public/cluster-info`
//! without trusting the server yet, check its JWS signature made with the token's secret
//! (only someone holding the token could have made it), check the CA in it against the pinned
//! `sha256:` hash of its public key, then read it again over TLS verified with that CA.

use std::time::Duration;

use sha2::Digest as _;
use skiff_api::bootstrap_token as bt;

/// Why discovery failed; the messages are kubeadm's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("could not find a JWS signature in the cluster-info ConfigMap for token ID {0:?}")]
    NoSignature(String),
    #[error(
        "failed to verify JWS signature of received cluster info object, can't trust this API Server"
    )]
    BadSignature,
    #[error(
        "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys {0:?} are pinned"
    )]
    NotPinned(String),
    #[error(
        "invalid discovery token CA certificate hash {0:?}: expected \"sha256:\" followed by 64 hex digits"
    )]
    BadPin(String),
    #[error(
        "using token-based discovery without caCertHashes can be unsafe. Set --discovery-token-unsafe-skip-ca-verification=true to continue"
    )]
    NoPins,
    #[error("the cluster-info ConfigMap does not hold a valid kubeconfig: {0}")]
    BadKubeconfig(String),
    #[error("failed to request the cluster-info ConfigMap from {endpoint}: {source}")]
    Fetch {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to request the cluster-info ConfigMap from {endpoint}: {status}")]
    Status { endpoint: String, status: u16 },
    #[error(
        "cluster-info ConfigMap changed between the insecure and the secure fetch; retry the join"
    )]
    Changed,
}

/// kubeadm's pin of a CA: `sha256:` and the hex SHA-256 of its DER SubjectPublicKeyInfo.
pub fn ca_hash(cert_pem: &str) -> Result<String, DiscoveryError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| DiscoveryError::BadKubeconfig(format!("the CA is not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| DiscoveryError::BadKubeconfig(format!("the CA is not X.509: {e}")))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    let digest = sha2::Sha256::digest(spki);
    Ok(format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// Checks the form of a `--discovery-token-ca-cert-hash` and returns it lowercased.
pub fn parse_pin(pin: &str) -> Result<String, DiscoveryError> {
    let hex = pin.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DiscoveryError::BadPin(pin.to_string()));
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// What discovery learns: the apiserver's URL and the cluster CA (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub server: String,
    pub ca_pem: String,
    /// The signed kubeconfig, to compare with the second fetch.
    pub kubeconfig: String,
}

/// Checks an untrusted `cluster-info` ConfigMap (JSON as served): the JWS of the token, then
/// the CA against `pins` (none: only with `skip_ca_verification`).
pub fn verify(
    configmap: &serde_json::Value,
    token: &str,
    pins: &[String],
    skip_ca_verification: bool,
) -> Result<ClusterInfo, DiscoveryError> {
    let (id, secret) = bt::parse_token(token)
        .ok_or_else(|| DiscoveryError::NoSignature(token.split('.').next().unwrap_or("").into()))?;
    let data = configmap.get("data");
    let field = |k: &str| data.and_then(|d| d.get(k)).and_then(|v| v.as_str());
    let kubeconfig = field(bt::KUBECONFIG_KEY)
        .ok_or_else(|| DiscoveryError::BadKubeconfig("no kubeconfig key".into()))?;
    let jws = field(&format!("{}{id}", bt::JWS_KEY_PREFIX))
        .ok_or_else(|| DiscoveryError::NoSignature(id.to_string()))?;
    if !bt::signature_is_valid(jws, kubeconfig, id, secret) {
        return Err(DiscoveryError::BadSignature);
    }
    let info = parse_kubeconfig(kubeconfig)?;
    if pins.is_empty() {
        if !skip_ca_verification {
            return Err(DiscoveryError::NoPins);
        }
    } else {
        let hash = ca_hash(&info.ca_pem)?;
        if !pins.contains(&hash) {
            return Err(DiscoveryError::NotPinned(hash));
        }
    }
    Ok(info)
}

fn parse_kubeconfig(text: &str) -> Result<ClusterInfo, DiscoveryError> {
    use base64::Engine as _;
    let bad = |m: &str| DiscoveryError::BadKubeconfig(m.to_string());
    let kc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let cluster = &kc["clusters"][0]["cluster"];
    let server = cluster["server"]
        .as_str()
        .ok_or_else(|| bad("no clusters[0].cluster.server"))?;
    let ca = cluster["certificate-authority-data"]
        .as_str()
        .ok_or_else(|| bad("no certificate-authority-data"))?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca.trim())
        .map_err(|_| bad("certificate-authority-data is not base64"))?;
    Ok(ClusterInfo {
        server: server.to_string(),
        ca_pem: String::from_utf8(ca).map_err(|_| bad("the CA is not text"))?,
        kubeconfig: text.to_string(),
    })
}

/// The URL of `cluster-info` at `endpoint` (`host:port`, or a URL).
fn url(endpoint: &str) -> String {
    let base = if endpoint.starts_with("https://") {
        endpoint.trim_end_matches('/').to_string()
    } else {
        format!("https://{endpoint}")
    };
    format!(
        "{base}/api/v1/namespaces/{}/configmaps/{}",
        bt::CLUSTER_INFO_NAMESPACE,
        bt::CLUSTER_INFO
    )
}

async fn fetch(
    client: reqwest::Client,
    endpoint: &str,
) -> Result<serde_json::Value, DiscoveryError> {
    let err = |source| DiscoveryError::Fetch {
        endpoint: endpoint.to_string(),
        source,
    };
    let resp = client.get(url(endpoint)).send().await.map_err(err)?;
    if !resp.status().is_success() {
        return Err(DiscoveryError::Status {
            endpoint: endpoint.to_string(),
            status: resp.status().as_u16(),
        });
    }
    resp.json().await.map_err(err)
}

/// Runs discovery against `endpoint`: the untrusted fetch and its checks (tried again until
/// `timeout` while the signature is missing or the server unreachable), then the fetch
/// verified with the CA found, which must give the same kubeconfig.
pub async fn discover(
    endpoint: &str,
    token: &str,
    pins: &[String],
    skip_ca_verification: bool,
    timeout: Duration,
) -> Result<ClusterInfo, DiscoveryError> {
    let fetch_err = |source| DiscoveryError::Fetch {
        endpoint: endpoint.to_string(),
        source,
    };
    // Nothing sent on this connection is secret: the token never travels, only its
    // signature comes back.
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(fetch_err)?;
    // The bootstrapsigner signs a new token within moments, and an apiserver may still be
    // starting: a missing signature or an unreachable server is tried again until
    // `timeout`, as kubeadm does; a bad signature or pin is final.
    let deadline = std::time::Instant::now() + timeout;
    let info = loop {
        let outcome = match fetch(insecure.clone(), endpoint).await {
            Ok(cm) => verify(&cm, token, pins, skip_ca_verification),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(info) => break info,
            Err(
                e @ (DiscoveryError::NoSignature(_)
                | DiscoveryError::Fetch { .. }
                | DiscoveryError::Status { .. }),
            ) => {
                if std::time::Instant::now() >= deadline {
                    return Err(e);
                }
                tracing::info!(error = %e, "retrying discovery");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let ca = reqwest::Certificate::from_pem(info.ca_pem.as_bytes()).map_err(fetch_err)?;
    let secure = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(fetch_err)?;
    let again = fetch(secure, endpoint).await?;
    let again = again
        .pointer(&format!("/data/{}", bt::KUBECONFIG_KEY))
        .and_then(|v| v.as_str());
    if again != Some(info.kubeconfig.as_str()) {
        return Err(DiscoveryError::Changed);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "abcdef.0123456789abcdef";

    fn configmap(ca_pem: &str, sign_with: &str) -> serde_json::Value {
        let kc = skiff_common::pki::token_kubeconfig("https://10.0.0.1:6443", ca_pem, "u", "x")
            .replace("    token: x\n", "");
        let (id, secret) = bt::parse_token(sign_with).unwrap();
        serde_json::json!({"data": {
            "kubeconfig": kc,
            format!("jws-kubeconfig-{id}"): bt::detached_signature(&kc, id, secret),
        }})
    }

    #[test]
    fn the_ca_hash_is_sha256_of_the_subject_public_key_info() {
        let ca = skiff_common::pki::new_ca().unwrap();
        let key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
        let want = sha2::Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key));
        let want: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ca_hash(&ca.cert_pem).unwrap(), format!("sha256:{want}"));
        assert!(parse_pin(&format!("sha256:{}", want.to_uppercase())).is_ok());
        assert!(parse_pin("sha256:abc").is_err());
        assert!(parse_pin(&want).is_err());
    }

    #[test]
    fn a_signed_cluster_info_with_a_pinned_ca_is_trusted() {
        let ca = skiff_common::pki::new_ca().unwrap();
        let pin = ca_hash(&ca.cert_pem).unwrap();
        let info = verify(&configmap(&ca.cert_pem, TOKEN), TOKEN, &[pin], false).unwrap();
        assert_eq!(info.server, "https://10.0.0.1:6443");
        assert_eq!(info.ca_pem, ca.cert_pem);
    }

    #[test]
    fn a_wrong_token_or_pin_is_refused_with_kubeadms_words() {
        let ca = skiff_common::pki::new_ca().unwrap();
        let pin = ca_hash(&ca.cert_pem).unwrap();
        let cm = configmap(&ca.cert_pem, TOKEN);
        let e = verify(
            &cm,
            "zzzzzz.0123456789abcdef",
            std::slice::from_ref(&pin),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "could not find a JWS signature in the cluster-info ConfigMap for token ID \"zzzzzz\""
        );
        let e = verify(
            &cm,
            "abcdef.0123456789abcdee",
            std::slice::from_ref(&pin),
            false,
        )
        .unwrap_err();
        assert!(matches!(e, DiscoveryError::BadSignature), "{e}");
        let other = ca_hash(&skiff_common::pki::new_ca().unwrap().cert_pem).unwrap();
        let e = verify(&cm, TOKEN, &[other], false).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{pin}\" are pinned"
            )
        );
        assert!(matches!(
            verify(&cm, TOKEN, &[], false).unwrap_err(),
            DiscoveryError::NoPins
        ));
        assert!(verify(&cm, TOKEN, &[], true).is_ok());
    }
}
