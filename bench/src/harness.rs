//! Starts the programs a benchmark measures (`skiff-apiserver`, `skiff-kubelet`) as child
//! processes, builds HTTPS clients for the apiserver, and reads processes' CPU and memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub enum Backend {
    Embedded,
    Etcd(String),
}

pub struct Server {
    child: Child,
    dir: tempfile::TempDir,
    pub base: String,
}

/// A program built next to this one (`target/release/<name>`).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("no exe dir")?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with \
         `cargo build --release -p skiff-apiserver -p skiff-kubelet -p skiff-bench`",
        path.display()
    );
    Ok(path)
}

impl Server {
    pub async fn start(backend: Backend) -> anyhow::Result<Server> {
        Self::start_on(backend, "127.0.0.1").await
    }

    /// Like [`Server::start`], listening on `bind` (an address of this machine).
    pub async fn start_on(backend: Backend, bind: &str) -> anyhow::Result<Server> {
        Self::start_with(backend, bind, &[]).await
    }

    /// Like [`Server::start_on`], with extra flags.
    pub async fn start_with(
        backend: Backend,
        bind: &str,
        extra: &[String],
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let ready = dir.path().join("ready");
        let mut cmd = Command::new(sibling("skiff-apiserver")?);
        cmd.args(["--data-dir"])
            .arg(dir.path())
            .args(["--secure-port", "0", "--bind-address", bind, "--ready-file"])
            .arg(&ready);
        if let Backend::Etcd(ep) = &backend {
            cmd.args(["--etcd-servers", ep]);
        }
        cmd.args(extra);
        let log = std::fs::File::create(dir.path().join("apiserver.log"))?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting skiff-apiserver")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() || std::fs::read_to_string(&ready)?.is_empty() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "apiserver did not become ready; see its log"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let addr = std::fs::read_to_string(&ready)?;
        Ok(Server {
            child,
            base: format!("https://{}", addr.trim()),
            dir,
        })
    }

    /// An HTTPS client authenticated as the admin, using HTTP/2 (one connection carries many
    /// requests, as kubectl and client-go do).
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(self.builder()?.build()?)
    }

    /// Like [`Server::client`] but HTTP/1.1 with a connection per concurrent request: the
    /// shape of many independent clients.
    pub fn client_h1(&self) -> anyhow::Result<reqwest::Client> {
        Ok(self.builder()?.http1_only().build()?)
    }

    /// Where the apiserver keeps its CA and the admin's client certificate.
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// An HTTP/2 client that authenticates with a bearer token instead of the admin's
    /// certificate.
    pub fn client_with_token(&self, token: &str) -> anyhow::Result<reqwest::Client> {
        let pki = self.pki_dir();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt"))?)?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
        Ok(reqwest::Client::builder()
            .add_root_certificate(ca)
            .default_headers(headers)
            .pool_max_idle_per_host(256)
            .build()?)
    }

    fn builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let pki = self.pki_dir();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt"))?)?;
        let mut id = std::fs::read(pki.join("admin.crt"))?;
        id.extend(std::fs::read(pki.join("admin.key"))?);
        Ok(reqwest::Client::builder()
            .add_root_certificate(ca)
            .identity(reqwest::Identity::from_pem(&id)?)
            .pool_max_idle_per_host(256))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin kubeconfig the apiserver wrote into its data directory (for kubelets).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// What the apiserver wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    /// The apiserver's resident set size in MB.
    pub fn rss_mb(&self) -> anyhow::Result<f64> {
        rss_mb(self.child.id())
    }
}

/// A benchmarked program other than the apiserver (a kubelet), its output in a log file;
/// killed on drop.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `target/release/<program> ARGS` with stdout and stderr going to `log`.
    pub fn spawn(program: &str, args: &[String], log: &Path) -> anyhow::Result<Process> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(sibling(program)?)
            .args(args)
            // The error that stops a program opens its log; keep it readable.
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        Ok(Process {
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it should not have).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// The last `lines` lines of the process's output, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/<pid>/<file>` (e.g. `status` `VmRSS:`), in MB.
fn proc_kb_field(pid: u32, file: &str, field: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/{file}"))?;
    Ok(kb / 1024.0)
}

/// A process's resident set size in MB (`VmRSS`: shared pages such as the program's code
/// count in full for every process).
pub fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    proc_kb_field(pid, "status", "VmRSS:")
}

/// A process's proportional set size in MB: shared pages divided among the processes sharing
/// them, so the PSS of many copies of one program adds up to the memory they really take.
pub fn pss_mb(pid: u32) -> anyhow::Result<f64> {
    proc_kb_field(pid, "smaps_rollup", "Pss:")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time a process's live threads have used so far, in seconds, from the scheduler's
/// nanosecond counters (`/proc/<pid>/task/*/schedstat`). [`cpu_seconds`] counts in 10 ms clock
/// ticks, too coarse for a process that wakes for a millisecond every few seconds; this misses
/// threads that have exited, which matters little over a steady window.
pub fn cpu_seconds_fine(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}
