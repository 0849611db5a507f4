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
    anyhow::ensure!(path.exists(), "{} not found: build it with `cargo build --release -p skiff-apiserver -p skiff-bench`", path.display());
    Ok(path)
}

impl Server {
    pub async fn start(backend: Backend) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let ready = dir.path().join("ready");
        let mut cmd = Command::new(sibling("skiff-apiserver")?);
        cmd.args(["--data-dir"]).arg(dir.path()).args(["--secure-port", "0", "--bind-address", "127.0.0.1", "--ready-file"]).arg(&ready);
        if let Backend::Etcd(ep) = &backend {
            cmd.args(["--etcd-servers", ep]);
        }
        let log = std::fs::File::create(dir.path().join("apiserver.log"))?;
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().context("starting skiff-apiserver")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() || std::fs::read_to_string(&ready)?.is_empty() {
            anyhow::ensure!(Instant::now() < deadline, "apiserver did not become ready; see its log");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let addr = std::fs::read_to_string(&ready)?;
        Ok(Server { child, base: format!("https://{}", addr.trim()), dir })
    }

    /// An HTTPS client authenticated as the admin.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let pki = self.dir.path().join("pki");
        let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt"))?)?;
        let mut id = std::fs::read(pki.join("admin.crt"))?;
        id.extend(std::fs::read(pki.join("admin.key"))?);
        Ok(reqwest::Client::builder()
            .add_root_certificate(ca)
            .identity(reqwest::Identity::from_pem(&id)?)
            .pool_max_idle_per_host(256)
            .build()?)
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
