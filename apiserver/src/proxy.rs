//! `pods/log` and `pods/exec`: proxied to the kubelet of the pod's node, at the Node's
//! InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`, with the apiserver's
//! `kube-apiserver-kubelet-client` certificate.
//!
//! Logs stream through as they come (so `kubectl logs -f` follows). Exec over WebSocket
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`) is a WebSocket on both sides with frames copied;
//! exec over SPDY/3.1 (kubectl before 1.30) is upgraded on both sides and then copied byte for
//! byte, as kube-apiserver's upgrade-aware proxy does: the kubelet speaks SPDY.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use http::request::Parts;
use http::{HeaderValue, header};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use skiff_api::resources;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::pki::CertKey;
use crate::request::Params;

/// The exec subprotocols relayed, newest first.
const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The log options passed on to the kubelet.
const LOG_PARAMS: [&str; 7] = [
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// HTTPS to kubelets, authenticated with the apiserver's kubelet client certificate.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
    pub http: reqwest::Client,
}

/// Accepts any kubelet serving certificate. Kubelets serve self-signed certificates by
/// default, and kube-apiserver without `--kubelet-certificate-authority` does not verify
/// them either; the client certificate still proves the apiserver to the kubelet.
#[derive(Debug)]
struct AnyKubeletCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyKubeletCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl KubeletClient {
    /// A client presenting `cert`. With `kubelet_ca` (PEM, kube-apiserver's
    /// `--kubelet-certificate-authority`) a kubelet must serve a certificate that CA issued for
    /// the address it is reached at; without it any certificate is accepted, as upstream.
    pub fn new(cert: &CertKey, kubelet_ca: Option<&str>) -> anyhow::Result<KubeletClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs =
            rustls_pemfile::certs(&mut cert.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())?
            .ok_or_else(|| anyhow::anyhow!("no private key in kubelet-client.key"))?;
        // HTTP/1.1 only (no ALPN): WebSocket upgrades need it, and log streams do not gain
        // from HTTP/2.
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let tls = match kubelet_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
                    roots.add(c?)?;
                }
                anyhow::ensure!(
                    !roots.is_empty(),
                    "--kubelet-certificate-authority holds no certificate"
                );
                let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()?;
                builder
                    .with_webpki_verifier(verifier)
                    .with_client_auth_cert(certs, key)?
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyKubeletCert(provider)))
                .with_client_auth_cert(certs, key)?,
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(KubeletClient {
            tls: Arc::new(tls),
            http,
        })
    }
}

/// Entry point from the dispatcher for `pods/{name}/log` and `pods/{name}/exec`.
pub async fn serve(
    app: &Arc<App>,
    parts: &Parts,
    namespace: &str,
    pod: &str,
    subresource: &str,
    params: &Params,
) -> ApiResult<Response> {
    let target = Target::resolve(app, namespace, pod, params).await?;
    match subresource {
        "log" => logs(app, &target, params).await,
        _ => exec(app, parts, &target).await,
    }
}

/// Where a pod's container is served: `https://IP:PORT` of its kubelet.
struct Target {
    base: String,
    namespace: String,
    pod: String,
    container: String,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Target {
    async fn resolve(app: &App, namespace: &str, pod: &str, params: &Params) -> ApiResult<Target> {
        let none = Params::default();
        let pods = resources::find("", "v1", "pods").expect("pods are served");
        let obj = app.registry.get(pods, Some(namespace), pod, &none).await?;
        let names = |key: &str| -> Vec<String> {
            obj.pointer(&format!("/spec/{key}"))
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let containers = names("containers");
        let container = match params.get("container") {
            Some(c) => {
                if !containers
                    .iter()
                    .chain(&names("initContainers"))
                    .any(|n| n == c)
                {
                    return Err(ApiError::bad_request(format!(
                        "container {c} is not valid for pod {pod}"
                    )));
                }
                c.to_string()
            }
            None if containers.len() == 1 => containers[0].clone(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {pod}, choose one of: [{}]",
                    containers.join(" ")
                )));
            }
        };
        let node_name = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {pod} does not have a host assigned"))
            })?;
        let nodes = resources::find("", "v1", "nodes").expect("nodes are served");
        let node = app.registry.get(nodes, None, node_name, &none).await?;
        let base = kubelet_base(&node).ok_or_else(|| {
            ApiError::bad_request(format!(
                "node {node_name} has no address; is its kubelet running?"
            ))
        })?;
        Ok(Target {
            base,
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container,
        })
    }

    fn path(&self, endpoint: &str) -> String {
        format!(
            "{}/{endpoint}/{}/{}/{}",
            self.base,
            enc(&self.namespace),
            enc(&self.pod),
            enc(&self.container)
        )
    }
}

/// `https://ADDRESS:PORT` of a Node's kubelet: its InternalIP (else ExternalIP, else
/// Hostname) and `status.daemonEndpoints.kubeletEndpoint.Port` (default 10250).
pub fn kubelet_base(node: &Value) -> Option<String> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)?;
    let address = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|ty| {
            addresses
                .iter()
                .find(|a| a["type"] == *ty)
                .and_then(|a| a["address"].as_str())
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0)
        .unwrap_or(10250);
    let host = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => address.to_string(),
    };
    Some(format!("https://{host}:{port}"))
}

/// The most of a kubelet's answer held in memory at once: a `/stats/summary` of a full node
/// is well under a megabyte. A node's addresses are the node's to set, so whatever answers
/// there must not make the apiserver buffer without end.
pub const MAX_BUFFERED_BODY: usize = 16 << 20;
/// The most of a kubelet's error text passed on to the client.
const MAX_ERROR_TEXT: usize = 64 << 10;

/// A body larger than the apiserver buffers.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading the answer: {0}")]
    Read(#[from] reqwest::Error),
}

/// Reads at most `limit` bytes of `resp`'s body; more is an error (`truncate`: the first
/// `limit` bytes are kept instead).
pub async fn read_bounded(
    resp: reqwest::Response,
    limit: usize,
    truncate: bool,
) -> Result<Vec<u8>, BodyError> {
    if !truncate && resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            if truncate {
                body.extend_from_slice(&chunk[..limit - body.len()]);
                return Ok(body);
            }
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The kubelet's error, passed on with its code and text.
fn kubelet_error(code: u16, text: &str) -> ApiError {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    ApiError::new(code, reason, text.trim().to_string())
}

fn unreachable(target: &Target, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!(
        "cannot reach the kubelet at {} for pod {}: {e}",
        target.base, target.pod
    ))
}

async fn logs(app: &App, target: &Target, params: &Params) -> ApiResult<Response> {
    let query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for key in LOG_PARAMS {
            if let Some(v) = params.get(key) {
                q.append_pair(key, v);
            }
        }
        q.finish()
    };
    let url = format!("{}?{query}", target.path("containerLogs"));
    let resp = app
        .kubelet
        .http
        .get(&url)
        .send()
        .await
        .map_err(|e| unreachable(target, e))?;
    let status = resp.status();
    if !status.is_success() {
        let text = read_bounded(resp, MAX_ERROR_TEXT, true)
            .await
            .unwrap_or_default();
        return Err(kubelet_error(
            status.as_u16(),
            &String::from_utf8_lossy(&text),
        ));
    }
    let mut r = Response::new(Body::from_stream(resp.bytes_stream()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

fn offered_protocols(parts: &Parts) -> Vec<String> {
    parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| EXEC_PROTOCOLS.contains(&p.as_str()))
        .collect()
}

async fn exec(app: &App, parts: &Parts, target: &Target) -> ApiResult<Response> {
    let is_ws = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let on_upgrade = parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned();
    let is_spdy = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(SPDY));
    if let (true, Some(on_upgrade)) = (is_spdy, on_upgrade.clone()) {
        return exec_spdy(app, parts, target, on_upgrade).await;
    }
    let (true, Some(key), Some(on_upgrade)) = (is_ws, key, on_upgrade) else {
        return Err(ApiError::bad_request(format!(
            "pods/exec needs an upgrade: WebSocket ({}) or {SPDY}",
            EXEC_PROTOCOLS.join(", ")
        )));
    };
    let protocols = offered_protocols(parts);
    if protocols.is_empty() {
        return Err(ApiError::bad_request(format!(
            "no supported exec subprotocol offered; this server speaks {}",
            EXEC_PROTOCOLS.join(", ")
        )));
    }

    // Connect to the kubelet first, so that its refusal (container not running, ...) reaches
    // the client as an HTTP error instead of a dropped WebSocket.
    let url = format!(
        "{}?{}",
        target.path("exec"),
        parts.uri.query().unwrap_or_default()
    )
    .replacen("https://", "wss://", 1);
    let mut request = url
        .into_client_request()
        .map_err(|e| ApiError::internal(format!("building the kubelet exec request: {e}")))?;
    request.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_str(&protocols.join(", "))
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
    );
    let tls = connect(app, target).await?;
    let (upstream, response) = match tokio_tungstenite::client_async(request, tls).await {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(resp)) => {
            let text = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(kubelet_error(resp.status().as_u16(), &text));
        }
        Err(e) => return Err(unreachable(target, e)),
    };
    let chosen = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(EXEC_PROTOCOLS[1]));

    let pod = target.pod.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%pod, error = %e, "exec: the client's upgrade failed");
                return;
            }
        };
        let client =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay(client, upstream).await;
    });

    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = Response::new(Body::empty());
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header"),
    );
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, chosen);
    Ok(r)
}

/// The `Upgrade` of kubectl's exec before 1.30.
const SPDY: &str = "SPDY/3.1";

/// A TLS connection to the target's kubelet, with the apiserver's client certificate.
async fn connect(
    app: &App,
    target: &Target,
) -> ApiResult<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let authority = target.base.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| unreachable(target, e))?;
    let host = authority
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
        .unwrap_or(&authority);
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| unreachable(target, e))?;
    tokio_rustls::TlsConnector::from(app.kubelet.tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(target, e))
}

/// Exec over SPDY: the same upgrade is asked of the kubelet (with the client's offered
/// `X-Stream-Protocol-Version`s); when it switches, the client gets its 101 and the two
/// connections are joined byte for byte. A refusal reaches the client as an HTTP error.
async fn exec_spdy(
    app: &App,
    parts: &Parts,
    target: &Target,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> ApiResult<Response> {
    let tls = connect(app, target).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(target, e))?;
    let pod = target.pod.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%pod, error = %e, "exec: the kubelet connection failed");
        }
    });
    let base_len = target.base.len();
    let path = format!(
        "{}?{}",
        &target.path("exec")[base_len..],
        parts.uri.query().unwrap_or_default()
    );
    let mut request = http::Request::get(path)
        .header(header::HOST, target.base.trim_start_matches("https://"))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, SPDY);
    for v in parts.headers.get_all("X-Stream-Protocol-Version") {
        request = request.header("X-Stream-Protocol-Version", v.clone());
    }
    let request = request
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(format!("building the kubelet exec request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(target, e))?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(kubelet_error(status, &body));
    }
    let chosen = response.headers().get("X-Stream-Protocol-Version").cloned();
    let upstream = hyper::upgrade::on(response)
        .await
        .map_err(|e| unreachable(target, e))?;
    let pod = target.pod.clone();
    tokio::spawn(async move {
        let client = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%pod, error = %e, "exec: the client's upgrade failed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(SPDY));
    if let Some(chosen) = chosen {
        h.insert("X-Stream-Protocol-Version", chosen);
    }
    Ok(r)
}

/// Status 1000: client-go takes a close without it for an error.
fn normal_close_frame() -> Option<tungstenite::protocol::CloseFrame> {
    Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    })
}

fn normal_close() -> Message {
    Message::Close(normal_close_frame())
}

/// Copies data frames both ways until either side closes; pings are answered per hop.
async fn relay<A, B>(client: WebSocketStream<A>, kubelet: WebSocketStream<B>)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_tx, mut client_rx) = client.split();
    let (mut kubelet_tx, mut kubelet_rx) = kubelet.split();
    loop {
        tokio::select! {
            msg = client_rx.next() => match msg {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    if kubelet_tx.send(m).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = kubelet_tx.send(Message::Close(None)).await;
                    break;
                }
                Some(Ok(_)) => {}
            },
            msg = kubelet_rx.next() => match msg {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    if client_tx.send(m).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = client_tx.send(Message::Close(frame.or_else(normal_close_frame))).await;
                    break;
                }
                Some(Err(_)) | None => {
                    let _ = client_tx.send(normal_close()).await;
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = client_tx.close().await;
    let _ = kubelet_tx.close().await;
}
