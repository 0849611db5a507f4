//! A real `skiff-kubelet` process on the machine's Docker engine, registered as its own node,
//! with its own pod subnet and root dir. Several may share one engine: each labels what it
//! creates with its node name and only looks at its own containers. [`Kubelet::start_fake`]
//! starts a hollow node instead (`--runtime fake`): nothing runs and Docker is not touched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::apiserver::ApiServer;
use crate::wait::wait_until;

/// The test image: busybox (from Debian's busybox-static) on an empty base, built locally.
pub const BUSYBOX: &str = "skiff-test/busybox:1";

/// Builds [`BUSYBOX`] if the engine lacks it (no registry is reachable).
pub fn ensure_busybox_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let present = Command::new("docker").args(["image", "inspect", BUSYBOX]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if present.is_ok_and(|s| s.success()) {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy("/bin/busybox", dir.path().join("busybox")).expect("copy /bin/busybox (install busybox-static)");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .expect("write Dockerfile");
        let out = Command::new("docker").args(["build", "-q", "-t", BUSYBOX]).arg(dir.path()).output().expect("run docker build");
        assert!(out.status.success(), "docker build failed: {}", String::from_utf8_lossy(&out.stderr));
    });
}

pub struct Kubelet {
    pub node: String,
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
    /// Whether the kubelet runs pods on Docker (else on the fake runtime, leaving nothing in
    /// Docker to clean up).
    docker: bool,
    _dir: TempDir,
}

impl Kubelet {
    /// Starts a kubelet for `server` as node `node` with pod subnet `pod_cidr`, and waits for
    /// the node to be Ready.
    pub fn start(server: &ApiServer, node: &str, pod_cidr: &str) -> Kubelet {
        Self::launch(server, node, pod_cidr, true)
    }

    /// Starts a hollow kubelet (`--runtime fake`, as kubemark's hollow nodes) for `server` as
    /// node `node` with pod subnet `pod_cidr`, and waits for the node to be Ready. Its pods
    /// "run" in memory; pulls succeed for any image.
    pub fn start_fake(server: &ApiServer, node: &str, pod_cidr: &str) -> Kubelet {
        Self::launch(server, node, pod_cidr, false)
    }

    fn launch(server: &ApiServer, node: &str, pod_cidr: &str, docker: bool) -> Kubelet {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("kubelet.log");
        let mut args = vec![
            "--kubeconfig".to_string(),
            server.kubeconfig().display().to_string(),
            "--hostname-override".into(),
            node.into(),
            "--pod-cidr".into(),
            pod_cidr.into(),
            "--root-dir".into(),
            dir.path().join("root").display().to_string(),
            // Several kubelets share this machine: each serves on a free port, which it
            // reports in its Node's daemonEndpoints.
            "--port".into(),
            "0".into(),
        ];
        if !docker {
            args.extend(["--runtime".into(), "fake".into()]);
        }
        let mut k = Kubelet {
            node: node.into(),
            child: None,
            args,
            log,
            docker,
            _dir: dir,
        };
        k.remove_leftovers();
        k.spawn();
        let ready = wait_until(Duration::from_secs(60), || {
            let out = server.kubectl(&[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            String::from_utf8_lossy(&out.stdout).trim() == "True"
        });
        assert!(
            ready,
            "node {node} did not become Ready; kubelet log:\n{}",
            k.log_text()
        );
        k
    }

    fn spawn(&mut self) {
        let bin = crate::apiserver::sibling_binary("skiff-kubelet");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open kubelet.log");
        let child = Command::new(&bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        self.child = Some(child);
    }

    /// Stops the kubelet (SIGKILL) and starts it again; its containers keep running.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Docker container IDs this node's kubelet made (sandboxes included).
    pub fn containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.skiff.node={}", self.node),
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    fn remove_leftovers(&self) {
        if !self.docker {
            return;
        }
        let ids = self.containers();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            eprintln!(
                "--- last lines of kubelet {} ---\n{}",
                self.node,
                tail.join("\n")
            );
        }
        self.remove_leftovers();
        if self.docker {
            let _ = Command::new("docker")
                .args(["network", "rm", &format!("skiff-{}", self.node)])
                .output();
        }
    }
}
