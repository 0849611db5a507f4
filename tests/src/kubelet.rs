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

/// The eviction thresholds of test kubelets: memory.available as upstream, no disk ones (the
/// machine's disk is shared and nearly full).
pub const TEST_EVICTION_HARD: &str = "memory.available<100Mi";

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
    env: Vec<(String, String)>,
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
        Self::launch(server, node, pod_cidr, true, &[], &[])
    }

    /// Like [`Kubelet::start`], with extra environment (e.g. `DOCKER_HOST` for another engine).
    pub fn start_with_env(
        server: &ApiServer,
        node: &str,
        pod_cidr: &str,
        env: &[(&str, &str)],
    ) -> Kubelet {
        Self::launch(server, node, pod_cidr, true, env, &[])
    }

    /// Like [`Kubelet::start`], with extra flags.
    pub fn start_with_args(
        server: &ApiServer,
        node: &str,
        pod_cidr: &str,
        extra: &[&str],
    ) -> Kubelet {
        Self::launch(server, node, pod_cidr, true, &[], extra)
    }

    /// Like [`Kubelet::start`], with extra environment and extra flags.
    pub fn start_with_env_and_args(
        server: &ApiServer,
        node: &str,
        pod_cidr: &str,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Kubelet {
        Self::launch(server, node, pod_cidr, true, env, extra)
    }

    /// Starts a hollow kubelet (`--runtime fake`, as kubemark's hollow nodes) for `server` as
    /// node `node` with pod subnet `pod_cidr`, and waits for the node to be Ready. Its pods
    /// "run" in memory; pulls succeed for any image.
    pub fn start_fake(server: &ApiServer, node: &str, pod_cidr: &str) -> Kubelet {
        Self::launch(server, node, pod_cidr, false, &[], &[])
    }

    /// A hollow kubelet with extra flags.
    pub fn start_fake_with_args(
        server: &ApiServer,
        node: &str,
        pod_cidr: &str,
        extra: &[&str],
    ) -> Kubelet {
        Self::launch(server, node, pod_cidr, false, &[], extra)
    }

    fn launch(
        server: &ApiServer,
        node: &str,
        pod_cidr: &str,
        docker: bool,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Kubelet {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("kubelet.log");
        let mut args = vec![
            "--kubeconfig".to_string(),
            server
                .identity_kubeconfig(&format!("system:node:{node}"), &["system:nodes"])
                .display()
                .to_string(),
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
        // Image GC would remove the images of other tests (and other users) of the machine's
        // engine whenever its disk is full: off, unless the test sets it.
        if docker
            && !extra
                .iter()
                .any(|a| a.starts_with("--image-gc-high-threshold"))
        {
            args.push("--image-gc-high-threshold=100".into());
        }
        // This machine's disk is nearly full and shared: the default nodefs/imagefs
        // thresholds would put every test node under DiskPressure. Memory only, unless the
        // test sets its own.
        if !extra.iter().any(|a| a.starts_with("--eviction-hard")) {
            args.push(format!("--eviction-hard={TEST_EVICTION_HARD}"));
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut k = Kubelet {
            node: node.into(),
            child: None,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
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
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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

    /// Stops the kubelet (SIGKILL) for good, as a node that dies.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The kubelet's `--root-dir` (its pods' folders and volumes).
    pub fn root_dir(&self) -> PathBuf {
        self._dir.path().join("root")
    }

    /// Unmounts the tmpfs mounts the kubelet left under its root (secret, projected and
    /// memory emptyDir volumes of pods it did not get to remove), so its folder can go.
    fn unmount_volumes(&self) {
        let root = self.root_dir().display().to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for target in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
            if target.starts_with(&format!("{root}/")) {
                let _ = Command::new("umount").arg(target).output();
            }
        }
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
        self.unmount_volumes();
        if self.docker {
            let _ = Command::new("docker")
                .args(["network", "rm", &format!("skiff-{}", self.node)])
                .output();
        }
    }
}

/// A private Docker engine for tests that stop and start an engine without disturbing the
/// machine's: its own socket, data and exec roots, and its own network namespace (a second
/// engine in the host namespace would manage — and on some settings delete — `docker0`).
pub struct PrivateDocker {
    dir: TempDir,
    netns: String,
    child: Option<Child>,
}

impl PrivateDocker {
    pub fn start() -> PrivateDocker {
        let dir = tempfile::tempdir().expect("tempdir");
        let netns = format!("skiff-e2e-dockerd-{}", std::process::id());
        // A leftover of a crashed run with the same pid is replaced.
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &netns])
            .output()
            .expect("ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {netns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["ip", "link", "set", "lo", "up"])
            .output();
        let mut d = PrivateDocker {
            dir,
            netns,
            child: None,
        };
        d.up();
        d
    }

    /// `unix://...` for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn answers(&self) -> bool {
        Command::new("docker")
            .arg("info")
            .env("DOCKER_HOST", self.host())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts the engine and waits until it answers.
    pub fn up(&mut self) {
        let p = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p.join("dockerd.log"))
            .expect("log");
        // nsenter, not `ip netns exec`: the latter remounts /sys and dockerd then fails.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("/usr/sbin/dockerd")
            .arg("--host")
            .arg(self.host())
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("--pidfile")
            .arg(p.join("docker.pid"))
            .args(["--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        assert!(
            wait_until(Duration::from_secs(60), || self.answers()),
            "private dockerd did not start"
        );
    }

    /// Stops the engine (SIGTERM) and waits until it is gone.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateDocker {
    fn drop(&mut self) {
        self.down();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}
