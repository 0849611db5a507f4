//! The HTTPS accept loop: TLS (rustls) with an optional client certificate, HTTP/1.1 and HTTP/2
//! with upgrades (WebSocket), connection limits and timeouts, and a graceful stop.
//!
//! Nothing here needs credentials to reach, so nothing here may be held for free: a connection
//! that has not finished its TLS handshake or its first request's headers within
//! [`ServeLimits::header_read_timeout`] is dropped, one that sits idle between requests for
//! [`ServeLimits::idle_timeout`] is closed, and the number of connections is bounded in total
//! and per client address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How many connections a server holds and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections open at once from all clients. Loopback clients may go beyond it (each
    /// loopback address still within [`Self::max_connections_per_ip`]), so that strangers
    /// filling the server leave the host's own control plane (kubectl on the node, components
    /// talking to 127.0.0.1) a way in; the worst case is this plus one address's share.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 client: from its /64, as
    /// one host holds a whole /64). Loopback is not exempt.
    pub max_connections_per_ip: usize,
    /// Time for the TLS handshake, and then again for the first request's headers (hyper's
    /// `header_read_timeout`, which also bounds every later request's headers on HTTP/1.1).
    pub header_read_timeout: Duration,
    /// How long a connection may carry no request (and no response body) before it is closed.
    pub idle_timeout: Duration,
}

impl Default for ServeLimits {
    /// kube-apiserver's timeouts (Go's `ReadHeaderTimeout: 32s`, which also bounds the TLS
    /// handshake, and `IdleTimeout: 90s`), with connection limits that Go's server does not
    /// have: 4096 in total keeps a server well inside common file-descriptor limits and its
    /// idle connections' buffers in the low hundreds of MiB; 512 per address is room for every
    /// client on one node (kubelet, kube-proxy and in-cluster pods behind one NAT address,
    /// each HTTP/1.1 watch being a connection of its own) while one stranger holds at most an
    /// eighth of the total.
    fn default() -> Self {
        ServeLimits {
            max_connections: 4096,
            max_connections_per_ip: 512,
            header_read_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then gives in-flight requests up to 5 s.
/// `identify` turns the client's verified certificate chain (if it sent one) into a value that
/// every request of that connection carries as an extension, beside the peer's address
/// (`axum::extract::ConnectInfo<SocketAddr>`).
pub async fn serve_tls<E, F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
    identify: F,
) where
    E: Clone + Send + Sync + 'static,
    F: Fn(Option<&[CertificateDer<'static>]>) -> E + Clone + Send + Sync + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = Connections::new(limits);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper has no header timeout at all.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut refusals = RefusalLog::default();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let permit = match connections.admit(peer.ip()) {
            Ok(p) => p,
            Err(refused) => {
                // Dropping the socket closes it: the client sees the refusal at once.
                refusals.note(peer, refused);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let identify = identify.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = acceptor.accept(tcp);
            let tls = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let identity = identify(tls.get_ref().1.peer_certificates());
            let activity = Activity::new();
            let tracked = activity.clone();
            let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(identity.clone());
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                // The request counts as in flight until its response body is gone, so a
                // watch is never mistaken for an idle connection.
                let busy = tracked.begin();
                let response = router.clone().oneshot(req);
                async move {
                    let response = response.await?;
                    Ok::<_, std::convert::Infallible>(response.map(move |body| {
                        axum::body::Body::new(body.map_frame(move |frame| {
                            let _ = &busy;
                            frame
                        }))
                    }))
                }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            let mut closing = false;
            let result = loop {
                let deadline = activity.deadline(&limits);
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = activity.changed() => {}
                    _ = sleep_until(deadline), if !closing => {
                        if !activity.served_any() {
                            // Not even a request's headers yet (hyper's HTTP/1 timer only
                            // starts once the protocol is known): nothing to finish.
                            tracing::debug!(%peer, "no request within the header timeout");
                            return;
                        }
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    _ = shutdown.cancelled(), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.all_closed()).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server holds [`ServeLimits::max_connections`] already.
    Total,
    /// This client address holds [`ServeLimits::max_connections_per_ip`] already.
    PerClient,
}

/// The server's open connections, counted in total and per client address.
#[derive(Clone)]
struct Connections {
    limits: ServeLimits,
    state: Arc<Mutex<Counts>>,
    closed: Arc<Notify>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
struct Permit {
    connections: Connections,
    client: IpAddr,
}

impl Connections {
    fn new(limits: ServeLimits) -> Self {
        Connections {
            limits,
            state: Arc::default(),
            closed: Arc::new(Notify::new()),
        }
    }

    fn admit(&self, ip: IpAddr) -> Result<Permit, Refused> {
        let client = client_key(ip);
        let mut counts = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mine = counts.per_client.get(&client).copied().unwrap_or(0);
        if mine >= self.limits.max_connections_per_ip {
            return Err(Refused::PerClient);
        }
        if counts.total >= self.limits.max_connections && !client.is_loopback() {
            return Err(Refused::Total);
        }
        counts.total += 1;
        *counts.per_client.entry(client).or_insert(0) += 1;
        Ok(Permit {
            connections: self.clone(),
            client,
        })
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.state.lock().unwrap_or_else(|e| e.into_inner()).total == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self
            .connections
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&self.client);
            }
        }
        drop(counts);
        self.connections.closed.notify_waiters();
    }
}

/// The address a per-client limit counts against: IPv4 (also when mapped into IPv6) as it is,
/// IPv6 by its /64, since one host is routinely given a whole /64 to pick addresses from.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.is_loopback() => ip,
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// What one connection is doing: requests in flight, and when it last had none.
#[derive(Clone)]
struct Activity {
    state: Arc<Mutex<ActivityState>>,
    changed: Arc<Notify>,
}

struct ActivityState {
    in_flight: usize,
    served_any: bool,
    idle_since: Instant,
}

/// A request in flight on a connection; dropping it (with the response body) ends it.
struct Busy(Activity);

impl Activity {
    fn new() -> Self {
        Activity {
            state: Arc::new(Mutex::new(ActivityState {
                in_flight: 0,
                served_any: false,
                idle_since: Instant::now(),
            })),
            changed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self) -> Busy {
        let mut s = self.lock();
        s.in_flight += 1;
        s.served_any = true;
        drop(s);
        self.changed.notify_one();
        Busy(self.clone())
    }

    fn served_any(&self) -> bool {
        self.lock().served_any
    }

    /// When the connection is to be closed unless a request comes first: the header timeout
    /// before its first request, the idle timeout after its last one; never while one runs.
    fn deadline(&self, limits: &ServeLimits) -> Option<Instant> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        let allowed = if s.served_any {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        };
        Some(s.idle_since + allowed)
    }

    /// Resolves after a request began or ended (one waiter per connection, so a change made
    /// while nobody waits is kept for the next call).
    async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
        drop(s);
        self.0.changed.notify_one();
    }
}

/// Logs refused connections at most once a second, so a flood cannot also flood the log.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, why: Refused) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        let limit = match why {
            Refused::Total => "the server's connection limit",
            Refused::PerClient => "the per-client connection limit",
        };
        tracing::warn!(
            %peer,
            refused = self.since_last,
            "refusing connections: {limit} is reached (raise it with the server's \
             --max-connections / --max-connections-per-ip flags if these clients are legitimate)"
        );
        self.last = Some(now);
        self.since_last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> ServeLimits {
        ServeLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..ServeLimits::default()
        }
    }

    #[test]
    fn per_client_limit_counts_each_address_and_frees_on_drop() {
        let c = Connections::new(limits(100, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = c.admit(a).unwrap();
        let _p2 = c.admit(a).unwrap();
        assert_eq!(c.admit(a).err(), Some(Refused::PerClient));
        let _p3 = c.admit(b).unwrap();
        drop(p1);
        assert!(c.admit(a).is_ok());
    }

    #[test]
    fn total_limit_leaves_loopback_a_way_in_within_its_own_share() {
        let c = Connections::new(limits(2, 3));
        let _a = c.admit("10.0.0.1".parse().unwrap()).unwrap();
        let _b = c.admit("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            c.admit("10.0.0.3".parse().unwrap()).err(),
            Some(Refused::Total)
        );
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let _l: Vec<_> = (0..3).map(|_| c.admit(lo).unwrap()).collect();
        assert_eq!(c.admit(lo).err(), Some(Refused::PerClient));
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let c = Connections::new(limits(100, 1));
        let _p = c.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            c.admit("2001:db8:1:2:ffff::9".parse().unwrap()).err(),
            Some(Refused::PerClient)
        );
        assert!(c.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _v4 = c.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert_eq!(
            c.admit("::ffff:192.0.2.7".parse().unwrap()).err(),
            Some(Refused::PerClient)
        );
    }

    /// A response body that sends a line every 100 ms, `left` times: a watch, in short.
    struct Drip {
        left: u32,
        tick: tokio::time::Interval,
    }

    impl hyper::body::Body for Drip {
        type Data = hyper::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            std::task::ready!(self.tick.poll_tick(cx));
            self.left -= 1;
            let line = hyper::body::Bytes::from_static(b"tick\n");
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(line))))
        }
    }

    /// Reads until the server closes the connection (or `within` passes: `None`).
    async fn read_to_close(
        io: &mut (impl tokio::io::AsyncRead + Unpin),
        within: Duration,
    ) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(within, read).await.ok()?;
        Some(all)
    }

    #[tokio::test]
    async fn silent_and_idle_connections_are_closed_but_a_long_response_is_not() {
        use tokio::io::AsyncWriteExt;
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let id = crate::tls::Identity::self_signed("t", &["localhost"], &[ip]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(id.chain[0].clone()).unwrap();
        let server_tls = crate::tls::server_config(id, None).unwrap();
        let client_tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls));

        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            ..ServeLimits::default()
        };
        let router = Router::new()
            .route("/fast", axum::routing::get(|| async { "ok" }))
            .route(
                "/drip",
                axum::routing::get(|| async {
                    let tick = tokio::time::interval(Duration::from_millis(100));
                    axum::body::Body::new(Drip { left: 15, tick })
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_tls(
            listener,
            server_tls,
            router,
            limits,
            shutdown.clone(),
            |_| (),
        ));
        let tls = || async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            connector
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap()
        };
        let within = Duration::from_secs(3);

        // No TLS handshake at all.
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(read_to_close(&mut raw, within).await.is_some());
        // A handshake, then nothing.
        let mut silent = tls().await;
        assert_eq!(read_to_close(&mut silent, within).await, Some(Vec::new()));
        // Half a request line.
        let mut half = tls().await;
        half.write_all(b"GET /fast HT").await.unwrap();
        assert!(read_to_close(&mut half, within).await.is_some());
        // A request answered, then an idle keep-alive connection.
        let mut idle = tls().await;
        idle.write_all(b"GET /fast HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut idle, within).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        // A response streaming for 1.5 s, past both timeouts, comes whole.
        let mut drip = tls().await;
        drip.write_all(b"GET /drip HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut drip, within).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(text.matches("tick").count(), 15, "{text}");

        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deadline_is_the_header_timeout_first_then_the_idle_timeout() {
        let l = ServeLimits::default();
        let a = Activity::new();
        let start = Instant::now();
        assert_eq!(a.deadline(&l), Some(start + l.header_read_timeout));
        let busy = a.begin();
        assert_eq!(a.deadline(&l), None);
        tokio::time::advance(Duration::from_secs(200)).await;
        drop(busy);
        assert_eq!(
            a.deadline(&l),
            Some(start + Duration::from_secs(200) + l.idle_timeout)
        );
    }
}
