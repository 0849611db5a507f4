//! What a client without credentials can make the apiserver hold: half-open connections are
//! dropped by the header timeout (and turned away past the per-client limit) while kubectl
//! keeps working, and requests with made-up methods and paths grow neither the metrics nor
//! the process.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_e2e::{ApiServer, Backend, wait_until};

/// The apiserver's default header-read timeout (kube-apiserver's `ReadHeaderTimeout`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(32);
/// Slack on top of it for a busy machine.
const SLACK: Duration = Duration::from_secs(20);

/// A TCP connection from `from` (any 127.0.0.0/8 address reaches the loopback interface, so
/// each address is a client of its own to the server's per-client limit).
fn connect_from(rt: &tokio::runtime::Runtime, from: IpAddr, to: SocketAddr) -> TcpStream {
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
        socket.connect(to).await.expect("connect to the apiserver")
    });
    let stream = stream.into_std().expect("a std socket");
    stream.set_nonblocking(false).expect("blocking mode");
    stream
}

/// Whether the server has closed `stream` (EOF or reset); anything it sent is read and dropped.
fn closed_by_server(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("non-blocking mode");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn tls_client(server: &ApiServer) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&server.ca_pem()) {
        roots
            .add(cert.expect("the CA is PEM"))
            .expect("a CA certificate");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Completes a TLS handshake on `tcp`, sends the start of a request line and no more, and
/// hands back the TCP socket (the TLS state is dropped: nothing more is ever sent).
fn half_request(tls: &Arc<rustls::ClientConfig>, mut tcp: TcpStream) -> Option<TcpStream> {
    let name = "127.0.0.1".try_into().expect("a server name");
    let mut conn = rustls::ClientConnection::new(tls.clone(), name).expect("a TLS client");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    while conn.is_handshaking() {
        // A connection the server turned away fails here: it holds nothing.
        conn.complete_io(&mut tcp).ok()?;
    }
    conn.writer().write_all(b"GET /api/v1/namespaces HT").ok()?;
    conn.complete_io(&mut tcp).ok()?;
    Some(tcp)
}

#[test]
fn half_open_connections_are_dropped_by_the_header_timeout_while_kubectl_works() {
    const PER_CLIENT: usize = 400;
    let server = ApiServer::start_with_args(
        Backend::Embedded,
        &["--max-connections-per-ip", &PER_CLIENT.to_string()],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let tls = tls_client(&server);
    let no_handshake: IpAddr = [127, 0, 0, 2].into();
    let half_request_line: IpAddr = [127, 0, 0, 3].into();

    let started = Instant::now();
    // 500 that never start TLS, 500 that stop in the middle of a request line; 100 of each
    // are over the per-client limit.
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| connect_from(&rt, no_handshake, server.addr()))
        .collect();
    let mut half: Vec<TcpStream> = Vec::new();
    let mut refused_handshakes = 0;
    for _ in 0..500 {
        match half_request(&tls, connect_from(&rt, half_request_line, server.addr())) {
            Some(s) => half.push(s),
            None => refused_handshakes += 1,
        }
    }
    assert_eq!(
        half.len(),
        PER_CLIENT,
        "handshakes completed from one address ({refused_handshakes} failed)"
    );

    // The ones past the limit are closed at once, the rest are held.
    assert!(
        wait_until(Duration::from_secs(10), || {
            idle.iter().filter(|s| closed_by_server(s)).count() >= 500 - PER_CLIENT
        }),
        "the connections past the per-client limit were not closed"
    );
    let held = idle.iter().filter(|s| !closed_by_server(s)).count();
    assert_eq!(held, PER_CLIENT, "connections held from 127.0.0.2");
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "the flood took longer than the header timeout; the test cannot tell the limits apart"
    );

    // A client from another address is served while the flood is held.
    let namespaces = server.kubectl_ok(&["get", "namespaces", "-o", "name"]);
    assert!(namespaces.contains("namespace/default"), "{namespaces}");
    server.kubectl_ok(&["create", "configmap", "during-flood"]);

    let all_closed = wait_until(HEADER_TIMEOUT + SLACK, || {
        idle.iter().all(closed_by_server) && half.iter().all(closed_by_server)
    });
    let still_open = idle
        .iter()
        .chain(half.iter())
        .filter(|s| !closed_by_server(s))
        .count();
    assert!(
        all_closed,
        "{still_open} half-open connections still open {:?} after the flood began",
        started.elapsed()
    );
    server.kubectl_ok(&["get", "configmap", "during-flood"]);
}

/// A small deterministic generator: the test needs variety, not randomness.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self, alphabet: &[u8], min: usize, max: usize) -> String {
        let len = min + (self.next() as usize) % (max - min + 1);
        (0..len)
            .map(|_| alphabet[(self.next() as usize) % alphabet.len()] as char)
            .collect()
    }
}

/// The distinct series `/metrics` shows (every sample line; a histogram's buckets included).
fn series(server: &ApiServer) -> BTreeSet<String> {
    let reply = server.http().get("/metrics");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(name, _)| name.to_owned()))
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

fn random_requests(server: &ApiServer, rng: &mut XorShift, count: usize) {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
    let admin = server.http();
    let anonymous = server.http_anonymous();
    let bad_token = server.http_with_token("not-a-token");
    let clients = [&admin, &anonymous, &bad_token];
    for i in 0..count {
        let method = rng.word(UPPER, 3, 12);
        let word = rng.word(LOWER, 1, 20);
        let path = match i % 4 {
            0 => format!("/{word}"),
            1 => format!("/api/v1/namespaces/default/{word}"),
            2 => format!("/apis/{word}/v1/things"),
            _ => format!("/api/v1/namespaces/default/configmaps/{word}/{word}"),
        };
        let client = clients[i % clients.len()];
        let reply = client
            .try_send(&method, &path, None, Vec::new())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            (400..500).contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    }
}

#[test]
fn random_methods_and_paths_leave_metrics_bounded_and_memory_flat() {
    let server = ApiServer::start(Backend::Embedded);
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    // A first round makes every series the fixed label set allows (each cleaned verb, code
    // and authentication result) and warms the allocator.
    random_requests(&server, &mut rng, 1_000);
    // Reading /metrics is itself counted once read: read it once before the baseline.
    series(&server);
    let before = series(&server);
    let rss_before = rss_kib(server.pid());

    random_requests(&server, &mut rng, 10_000);
    let after = series(&server);
    let rss_after = rss_kib(server.pid());

    let new: Vec<&String> = after.difference(&before).collect();
    assert!(
        new.len() <= 20,
        "{} new series after 10,000 requests with made-up methods and paths, e.g. {:#?}",
        new.len(),
        &new[..new.len().min(10)]
    );
    for line in after
        .iter()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let verb = line
            .split("verb=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_default();
        assert!(
            [
                "GET",
                "LIST",
                "WATCH",
                "POST",
                "PUT",
                "PATCH",
                "APPLY",
                "DELETE",
                "DELETECOLLECTION",
                "CONNECT",
                "other"
            ]
            .contains(&verb),
            "{line}"
        );
    }
    assert!(
        after
            .iter()
            .any(|l| l.starts_with("authentication_attempts_total{result=\"error\"}")),
        "requests with an invalid token are counted as authentication errors"
    );
    // The series above are a few KiB; an unbounded label set would hold thousands of them.
    let grown = rss_after.saturating_sub(rss_before);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB (from {rss_before} KiB to {rss_after} KiB)"
    );
}
