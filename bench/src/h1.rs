//! A lean HTTPS/1.1 client for `skiff-bench api`: one keep-alive connection per concurrent
//! client, opened before a row is timed, and requests written straight onto it.
//!
//! The load generator shares the machine's two cores with what it measures, so every
//! microsecond it spends is taken from the apiserver. reqwest, used elsewhere in the
//! benchmarks, adds a connection pool, URL parsing and per-request middleware on top of hyper;
//! here each client owns its connection and needs none of that. The raw etcd rows likewise
//! reuse one connection made before any row.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::sync::Mutex;

use crate::harness::Server;

/// Opens admin-authenticated HTTPS connections to one apiserver.
pub struct Connector {
    tls: tokio_rustls::TlsConnector,
    addr: SocketAddr,
    authority: String,
}

impl Connector {
    pub fn new(server: &Server) -> anyhow::Result<Connector> {
        let pki = server.pki_dir();
        let read =
            |name: &str| std::fs::read(pki.join(name)).with_context(|| format!("reading {name}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut read("ca.crt")?.as_slice()) {
            roots.add(cert?)?;
        }
        let chain = rustls_pemfile::certs(&mut read("admin.crt")?.as_slice())
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut read("admin.key")?.as_slice())?
            .context("admin.key holds no private key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        let authority = server
            .base
            .strip_prefix("https://")
            .context("the apiserver's address is https://HOST:PORT")?
            .to_string();
        Ok(Connector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            addr: authority
                .parse()
                .context("the apiserver listens on IP:PORT")?,
            authority,
        })
    }

    /// One connection; its driver runs as a task until the connection is dropped.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::from(self.addr.ip());
        let tls = self.tls.connect(name, tcp).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            send: Mutex::new(send),
            authority: self.authority.clone(),
        })
    }

    /// `n` connections, opened concurrently.
    pub async fn connect_all(&self, n: usize) -> anyhow::Result<Arc<[Conn]>> {
        let conns = futures::future::try_join_all((0..n).map(|_| self.connect())).await?;
        Ok(conns.into())
    }
}

/// One keep-alive connection. Its owner sends one request at a time; the lock is never
/// contended and only makes the connection shareable between the tasks of a row.
pub struct Conn {
    send: Mutex<SendRequest<Full<Bytes>>>,
    authority: String,
}

impl Conn {
    /// POSTs a JSON body to `path` and returns the status, having read the whole response.
    pub async fn post_json(&self, path: &str, body: Bytes) -> anyhow::Result<u16> {
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let mut send = self.send.lock().await;
        send.ready().await?;
        let response = send.send_request(request).await?;
        drop(send);
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}
