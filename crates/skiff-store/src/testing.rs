//! Test support: a throwaway single-member etcd (Debian's `etcd-server`, 3.4) on free loopback
//! ports in a temporary directory, killed when dropped. For tests and benchmarks only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), skiff_store::StoreError> {
//! let etcd = skiff_store::testing::TestEtcd::start();
//! let store = skiff_store::EtcdStore::connect(&[etcd.endpoint.clone()]).await?;
//! # Ok(()) }
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd gets to become healthy before a start attempt is abandoned.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Start attempts: a port picked as free can be taken by someone else before etcd binds it.
const START_ATTEMPTS: usize = 3;

/// The files of an etcd that speaks TLS ([`TestEtcd::start_tls`]): the CA its clients'
/// certificates must come from, and its serving certificate (for 127.0.0.1) and key.
#[derive(Debug, Clone)]
pub struct TestEtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running etcd, killed (and its data directory removed) on drop.
pub struct TestEtcd {
    /// The client URL, `http://127.0.0.1:PORT` (`https://` with TLS), for [`crate::EtcdStore::connect`].
    pub endpoint: String,
    child: Child,
    // Dropped after `child` is killed (see `Drop`), so etcd never sees its files vanish.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEtcd")
            .field("endpoint", &self.endpoint)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestEtcd {
    /// Starts etcd and waits until it reports itself healthy.
    ///
    /// The binary is `$SKIFF_ETCD_BIN` if set, else `etcd` on `PATH` (`apt-get install -y
    /// etcd-server`). Panics if etcd cannot be started: this is test code.
    pub fn start() -> TestEtcd {
        Self::start_with(None)
    }

    /// Starts etcd serving TLS with `tls`'s certificate and asking clients for a certificate
    /// from `tls.ca` (`--client-cert-auth`); [`TestEtcd::endpoint`] is then `https://`.
    pub fn start_tls(tls: &TestEtcdTls) -> TestEtcd {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&TestEtcdTls>) -> TestEtcd {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(tls) {
                Ok(etcd) => return etcd,
                Err(e) => failures.push(e),
            }
        }
        panic!("cannot start a test etcd: {}", failures.join("; "));
    }

    /// The data directory (also holds `etcd.log`).
    /// The etcd process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn try_start(tls: Option<&TestEtcdTls>) -> Result<TestEtcd, String> {
        let binary = std::env::var("SKIFF_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        // With TLS, health is asked on a plain metrics port (clients need a certificate).
        let health_port = if tls.is_some() {
            free_port()?
        } else {
            client_port
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let mut tls_args: Vec<String> = Vec::new();
        if let Some(tls) = tls {
            tls_args.extend([
                "--client-cert-auth".to_string(),
                "--trusted-ca-file".into(),
                tls.ca.display().to_string(),
                "--cert-file".into(),
                tls.cert.display().to_string(),
                "--key-file".into(),
                tls.key.display().to_string(),
                "--listen-metrics-urls".into(),
                format!("http://127.0.0.1:{health_port}"),
            ]);
        }
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path().join("etcd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("etcd.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("etcd.log: {e}"))?;
        let child = Command::new(&binary)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "default"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(&tls_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {binary}: {e} (install it with `apt-get install -y etcd-server`)"
                )
            })?;
        let mut etcd = TestEtcd {
            endpoint: client,
            child,
            dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<_> = log.lines().rev().take(5).collect();
                return Err(format!("etcd exited with {status}: {}", tail.join(" | ")));
            }
            if healthy(health_port) {
                return Ok(etcd);
            }
            if Instant::now() > deadline {
                // Dropping `etcd` kills the process.
                return Err(format!(
                    "etcd on port {client_port} was not healthy within {}s",
                    START_DEADLINE.as_secs()
                ));
            }
            // Polling interval while waiting for a condition with a deadline, not a fixed wait.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago: etcd cannot be told to bind port 0.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// Asks etcd's `/health` endpoint with a plain HTTP/1.0 request (no client library needed).
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}
