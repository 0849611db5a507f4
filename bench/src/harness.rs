//! Starts a `skiff-apiserver` process for a benchmark and builds HTTPS clients for it.

use std::path::PathBuf;
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

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("no exe dir")?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release -p skiff-apiserver -p skiff-bench`",
        path.display()
    );
    Ok(path)
}

impl Server {
    pub async fn start(backend: Backend) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let ready = dir.path().join("ready");
        let mut cmd = Command::new(sibling("skiff-apiserver")?);
        cmd.args(["--data-dir"])
            .arg(dir.path())
            .args([
                "--secure-port",
                "0",
                "--bind-address",
                "127.0.0.1",
                "--ready-file",
            ])
            .arg(&ready);
        if let Backend::Etcd(ep) = &backend {
            cmd.args(["--etcd-servers", ep]);
        }
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

    fn builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let pki = self.dir.path().join("pki");
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

    /// The apiserver's resident set size in MB.
    pub fn rss_mb(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kb / 1024.0)
    }
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
