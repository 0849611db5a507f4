//! A real `skiff-apiserver` process in a temporary directory, on either store backend.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use skiff_store::testing::TestEtcd;
use tempfile::TempDir;

use crate::wait::wait_until;

/// How long a (re)started apiserver gets to write its ready file. The first start generates a
/// CA and certificates; on 2 busy cores that can take a while.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the apiserver keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The default: a durable single-file store in `<data-dir>/db`.
    Embedded,
    /// A private etcd started for this server (`--etcd-servers`).
    Etcd,
}

/// A running `skiff-apiserver`, killed (and its directory removed) on drop.
///
/// Layout of [`ApiServer::dir`]: `data/` (the `--data-dir`: store, PKI, `admin.kubeconfig`),
/// `apiserver.log` (stdout and stderr of every run), `ready` (the `--ready-file`),
/// `kubectl-cache/` (kubectl's discovery cache, private to this server) and any file a test
/// writes with [`ApiServer::write_file`].
pub struct ApiServer {
    backend: Backend,
    child: Option<Child>,
    addr: SocketAddr,
    extra_args: Vec<String>,
    // Fields drop in order: the etcd goes after the process above is killed (see `Drop`), the
    // directory last.
    etcd: Option<TestEtcd>,
    dir: TempDir,
}

impl ApiServer {
    /// Starts an apiserver on `backend` and waits until it serves.
    pub fn start(backend: Backend) -> ApiServer {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        Self::start_in(dir, backend, Vec::new())
    }

    /// Starts an apiserver that also accepts the bearer tokens in `csv` (kube-apiserver's
    /// `--token-auth-file` format: `token,user,uid,"group1,group2"` per line).
    pub fn start_with_tokens(backend: Backend, csv: &str) -> ApiServer {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, csv).expect("write the token file");
        let args = vec![
            "--token-auth-file".to_string(),
            tokens.display().to_string(),
        ];
        Self::start_in(dir, backend, args)
    }

    /// Starts an apiserver with extra flags (e.g. `--etcd-compaction-interval 1s`).
    pub fn start_with_args(backend: Backend, args: &[&str]) -> ApiServer {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        Self::start_in(dir, backend, args.iter().map(|a| a.to_string()).collect())
    }

    /// Starts an apiserver on `etcd` (one the test started, e.g. with TLS) with extra flags.
    pub fn start_on_etcd(etcd: TestEtcd, args: &[&str]) -> ApiServer {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let args = args.iter().map(|a| a.to_string()).collect();
        Self::start_with_etcd(dir, Backend::Etcd, Some(etcd), args)
    }

    fn start_in(dir: TempDir, backend: Backend, extra_args: Vec<String>) -> ApiServer {
        let etcd = match backend {
            Backend::Embedded => None,
            Backend::Etcd => Some(TestEtcd::start()),
        };
        Self::start_with_etcd(dir, backend, etcd, extra_args)
    }

    fn start_with_etcd(
        dir: TempDir,
        backend: Backend,
        etcd: Option<TestEtcd>,
        extra_args: Vec<String>,
    ) -> ApiServer {
        let mut server = ApiServer {
            backend,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            extra_args,
            etcd,
            dir,
        };
        server.spawn();
        server
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The address the server listens on (it changes on [`ApiServer::restart`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The admin kubeconfig the server wrote (client certificate, `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    /// A kubeconfig for `user` in `groups`, with a client certificate from this server's CA:
    /// each component under test runs as itself (`system:kube-scheduler`,
    /// `system:node:<name>` in `system:nodes`, ...), as in a real cluster. Issued once per
    /// server and user.
    pub fn identity_kubeconfig(&self, user: &str, groups: &[&str]) -> PathBuf {
        use skiff_common::pki;
        let pki_dir = self.data_dir().join("pki");
        let read = |f: &str| {
            std::fs::read_to_string(pki_dir.join(f))
                .unwrap_or_else(|e| panic!("read the server's {f}: {e}"))
        };
        let ca = pki::CertKey {
            cert_pem: read("ca.crt"),
            key_pem: read("ca.key"),
        };
        let file = user.replace(':', "-");
        let dir = self.dir.path().join("identities");
        let cert = pki::load_or(&dir, &file, || pki::issue(&ca, user, groups, &[]))
            .expect("issue a client certificate");
        let path = dir.join(format!("{file}.kubeconfig"));
        pki::write_kubeconfig(
            &path,
            &pki::kubeconfig(&self.url(), &ca.cert_pem, &cert, user),
        )
        .expect("write the kubeconfig");
        path
    }

    /// This server's private temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The etcd endpoint, for [`Backend::Etcd`].
    pub fn etcd_endpoint(&self) -> Option<&str> {
        self.etcd.as_ref().map(|e| e.endpoint.as_str())
    }

    /// Writes `contents` to `name` in [`ApiServer::dir`] and returns its path (for `-f`).
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Everything the server printed so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    /// The running process's id (for reading `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the apiserver is running").id()
    }

    /// `kill -9`: no chance to flush or shut down cleanly.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the server with `args` added to its flags (for flags that name files the first
    /// start created, such as its CA).
    pub fn restart_with_args(&mut self, args: &[&str]) {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
        self.restart();
    }

    /// Kills the server if it still runs and starts it again on the same data directory (and
    /// the same etcd). It may listen on another port; the kubeconfig is rewritten.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    fn spawn(&mut self) {
        let ready = self.dir.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("apiserver.log"))
            .expect("open apiserver.log");
        let mut cmd = Command::new(apiserver_binary());
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .args(["--bind-address", "127.0.0.1", "--secure-port", "0"])
            .arg("--ready-file")
            .arg(&ready)
            .args(&self.extra_args);
        if let Some(etcd) = &self.etcd {
            cmd.args(["--etcd-servers", &etcd.endpoint]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", apiserver_binary().display()));
        self.child = Some(child);

        let mut addr = None;
        let mut exited = None;
        let ready_in_time = wait_until(START_TIMEOUT, || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                exited = Some(status);
                return true;
            }
            // The file is written in one go but not atomically: retry until it parses.
            addr = std::fs::read_to_string(&ready)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            addr.is_some()
        });
        if let Some(status) = exited {
            self.child = None;
            panic!(
                "skiff-apiserver exited with {status} while starting; log:\n{}",
                self.log()
            );
        }
        assert!(
            ready_in_time,
            "skiff-apiserver did not write {} within {START_TIMEOUT:?}; log:\n{}",
            ready.display(),
            self.log()
        );
        self.addr = addr.expect("checked above");
        assert!(
            self.kubeconfig().exists(),
            "skiff-apiserver is ready but wrote no {}",
            self.kubeconfig().display()
        );
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- last lines of the {:?} apiserver's log ---\n{}",
                self.backend,
                tail.join("\n")
            );
        }
    }
}

/// `target/<profile>/skiff-apiserver`, next to the directory holding this test binary
/// (`target/<profile>/deps/`). The e2e crate cannot depend on a binary, so the test command
/// builds it first (`deploy/test.sh` runs `cargo build --workspace --all-targets`). Set
/// `SKIFF_APISERVER_BIN` to test another binary.
pub(crate) fn apiserver_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("SKIFF_APISERVER_BIN") {
                return PathBuf::from(path);
            }
            sibling_binary("skiff-apiserver")
        })
        .clone()
}

/// `target/<profile>/<name>`: a workspace binary built next to the test binaries.
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps/")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --all-targets` (deploy/test.sh does)",
        path.display()
    );
    path
}
