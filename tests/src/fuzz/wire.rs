//! Raw HTTP/1.1 over TLS, one connection per request: the fuzzer must send what well-behaved
//! clients refuse to (`..` and `%2e` in paths, a Content-Length that lies, duplicate or
//! malformed headers), so it writes the request bytes itself instead of using an HTTP library.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// How long to wait for a response's status line: the apiserver answers everything it does
/// not stream well within this, even on 2 busy cores.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(20);

/// Once the status line is in, a pause this long ends the read: watches, `follow=true` logs
/// and proxied streams would otherwise hold the connection until their own timeouts.
const STREAM_IDLE: Duration = Duration::from_millis(300);

/// At most this much of a response is kept (a list of many objects needs no more to judge).
const KEEP: usize = 64 * 1024;

/// What the fuzzer may present to the server.
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    /// Trusts the server's CA, presents no client certificate.
    plain: Arc<rustls::ClientConfig>,
    /// Trusts the server's CA and presents the admin's client certificate.
    admin: Arc<rustls::ClientConfig>,
}

/// Why no response came.
#[derive(Debug)]
pub enum NoResponse {
    /// The server closed the connection while the request was still being written: a server
    /// may answer early (401, 403, 413) and close without reading a large body, and the
    /// client's kernel then drops the unread answer when the connection is reset.
    ClosedDuringBody(String),
    /// Anything else: refused, reset or closed after the whole request was sent.
    Other(String),
}

impl std::fmt::Display for NoResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoResponse::ClosedDuringBody(e) => {
                write!(f, "closed while the request was written: {e}")
            }
            NoResponse::Other(e) => f.write_str(e),
        }
    }
}

/// The part of a response the fuzzer judges.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The raw bytes after the status line (headers and body), up to [`KEEP`].
    pub rest: Vec<u8>,
}

impl Connector {
    /// For the server at `addr` whose CA is `ca_pem`; `admin_pem` holds the admin's client
    /// certificate and key.
    pub fn new(addr: SocketAddr, ca_pem: &str, admin_pem: &str) -> Connector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots
                .add(cert.expect("the server's CA is PEM"))
                .expect("the server's CA is a certificate");
        }
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots.clone())
        };
        let chain = rustls_pemfile::certs(&mut admin_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the admin's certificate is PEM");
        let key = rustls_pemfile::private_key(&mut admin_pem.as_bytes())
            .expect("the admin's key is PEM")
            .expect("the admin's PEM holds a key");
        let admin = builder()
            .with_client_auth_cert(chain, key)
            .expect("the admin's certificate and key match");
        Connector {
            addr,
            plain: Arc::new(builder().with_no_client_auth()),
            admin: Arc::new(admin),
        }
    }

    /// Sends `request` (complete bytes, headers and body) on a new connection, as the admin if
    /// `as_admin`, and ends the client's side of the connection after it if `half_close` (for
    /// a request whose framing promises more than it sends). `Err` when no status line came
    /// back.
    pub fn exchange(
        &self,
        request: &[u8],
        as_admin: bool,
        half_close: bool,
    ) -> Result<Response, NoResponse> {
        let config = if as_admin { &self.admin } else { &self.plain };
        let name = ServerName::IpAddress(self.addr.ip().into());
        let conn = rustls::ClientConnection::new(config.clone(), name)
            .map_err(|e| NoResponse::Other(format!("TLS setup: {e}")))?;
        let tcp = TcpStream::connect_timeout(&self.addr, FIRST_BYTE_TIMEOUT)
            .map_err(|e| NoResponse::Other(format!("connect: {e}")))?;
        tcp.set_read_timeout(Some(FIRST_BYTE_TIMEOUT))
            .and_then(|()| tcp.set_write_timeout(Some(FIRST_BYTE_TIMEOUT)))
            .map_err(|e| NoResponse::Other(format!("socket timeouts: {e}")))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // A server may answer (413, 400) and close before a large body is all written: that
        // is a response, not a failure, so a write error only counts if nothing comes back.
        let mut write = tls.write_all(request).and_then(|()| tls.flush());
        if half_close && write.is_ok() {
            tls.conn.send_close_notify();
            write = tls
                .flush()
                .and_then(|()| tls.sock.shutdown(std::net::Shutdown::Write));
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if got.len() < KEEP {
                        got.extend_from_slice(&buf[..n.min(KEEP - got.len())]);
                    }
                    if status_line(&got).is_some() {
                        let _ = tls.sock.set_read_timeout(Some(STREAM_IDLE));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                // The server closing without TLS close_notify is its right after `Connection:
                // close`; whatever arrived counts.
                Err(_) => break,
            }
        }
        match status_line(&got) {
            Some((status, at)) => Ok(Response {
                status,
                rest: got[at..].to_vec(),
            }),
            None => Err(match write {
                Err(e) => NoResponse::ClosedDuringBody(e.to_string()),
                Ok(()) if got.is_empty() => {
                    NoResponse::Other("the connection closed without a response".into())
                }
                Ok(()) => NoResponse::Other(format!(
                    "not an HTTP response: {:?}",
                    String::from_utf8_lossy(&got[..got.len().min(200)])
                )),
            }),
        }
    }
}

/// The status code of the final `HTTP/1.1 NNN ...\r\n` and where its line ends, once it is
/// complete: an interim `100 Continue` (answering `Expect: 100-continue`) is skipped.
fn status_line(got: &[u8]) -> Option<(u16, usize)> {
    let mut from = 0;
    loop {
        let rest = &got[from..];
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..end]).ok()?;
        let code: u16 = line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
        if code != 100 {
            return Some((code, from + end + 2));
        }
        // An interim response ends with an empty line.
        let blank = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        from += blank + 4;
    }
}

impl Response {
    /// The body (after the blank line), lossily as text, for failure messages.
    pub fn body_text(&self) -> String {
        let at = self
            .rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        String::from_utf8_lossy(&self.rest[at..]).into_owned()
    }
}
