//! The one way Skiff's programs build a TLS server configuration (rustls on ring, HTTP/2 and
//! HTTP/1.1 offered through ALPN, optionally asking for a client certificate from a CA), and a
//! self-signed serving certificate for endpoints that have no cluster-issued one.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what}: {source}")]
    Pem {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("no private key in {0}")]
    NoKey(&'static str),
    #[error("making a serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what}: {source}")]
    Rustls {
        what: &'static str,
        source: rustls::Error,
    },
    #[error("building the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A serving certificate chain and its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// From PEM text (the certificate chain, then its key).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Identity, TlsError> {
        let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                what: "the serving certificate",
                source,
            })?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|source| TlsError::Pem {
                what: "the serving key",
                source,
            })?
            .ok_or(TlsError::NoKey("the serving key"))?;
        Ok(Identity { chain, key })
    }

    /// A fresh self-signed certificate for `dns_names` and `ips`, with `common_name`.
    pub fn self_signed(
        common_name: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> Result<Identity, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        for name in dns_names {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName((*name).try_into()?));
        }
        for ip in ips {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(*ip));
        }
        let cert = params.self_signed(&key)?;
        Ok(Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }
}

/// A server configuration serving `identity`. With `client_ca_pem`, clients may present a
/// certificate, which must then chain to that CA; a client without one still connects (the
/// program decides per path: `/healthz` answers anyone), as kube-apiserver and the kubelet do.
pub fn server_config(
    identity: Identity,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cfg = server_builder(client_ca_pem)?
        .with_single_cert(identity.chain, identity.key)
        .map_err(|source| TlsError::Rustls {
            what: "loading the serving certificate",
            source,
        })?;
    Ok(finish(cfg))
}

/// Like [`server_config`], with the certificate chosen per handshake by `resolver`: a
/// certificate that is rotated while the program runs (the kubelet's serving certificate
/// from a CSR) takes effect for the next connection.
pub fn server_config_with_resolver(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(finish(
        server_builder(client_ca_pem)?.with_cert_resolver(resolver),
    ))
}

fn finish(mut cfg: rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn server_builder(
    client_ca_pem: Option<&str>,
) -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, TlsError>
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "choosing the protocol versions",
            source,
        })?;
    Ok(match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
                let cert = cert.map_err(|source| TlsError::Pem {
                    what: "the client CA certificate",
                    source,
                })?;
                roots.add(cert).map_err(|source| TlsError::Rustls {
                    what: "adding the client CA certificate",
                    source,
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_identity_serves_with_and_without_client_certificates() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let id = Identity::self_signed("node-1@1", &["node-1", "localhost"], &[ip]).unwrap();
        let cfg = server_config(id, None).unwrap();
        assert_eq!(cfg.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);

        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        let id = Identity::self_signed("x", &["localhost"], &[]).unwrap();
        assert!(server_config(id, Some(&ca.cert.pem())).is_ok());
    }

    #[test]
    fn pem_without_a_key_says_so() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        let err = Identity::from_pem(&ca.cert.pem(), "").err().unwrap();
        assert_eq!(err.to_string(), "no private key in the serving key");
        let good = Identity::from_pem(&ca.cert.pem(), &ca.signing_key.serialize_pem()).unwrap();
        assert_eq!(good.chain.len(), 1);
    }
}
