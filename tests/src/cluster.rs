//! Local multi-node clusters for end-to-end tests: `skiffctl cluster create` with its clusters
//! under a shared test root and the kubeconfig in a temporary directory; `delete` on drop (and
//! before create, for leftovers of a crashed run).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::apiserver::sibling_binary;

/// Where test clusters live (shared, so that concurrent tests pick different subnets).
pub const TEST_CLUSTERS_DIR: &str = "/tmp/skiff-e2e-clusters";

pub struct LocalCluster {
    pub name: String,
    pub nodes: u32,
    /// How long `cluster create` took.
    pub create_time: Duration,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs `skiffctl` with the test clusters' root.
pub fn skiffctl(args: &[&str]) -> Output {
    Command::new(sibling_binary("skiffctl"))
        .args(args)
        .env("SKIFF_CLUSTERS_DIR", TEST_CLUSTERS_DIR)
        .output()
        .expect("run skiffctl")
}

fn ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "skiffctl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn skiffctl_ok(args: &[&str]) -> String {
    ok(args, skiffctl(args))
}

impl LocalCluster {
    /// Creates cluster `name` with `nodes` nodes (`--etcd` when `etcd`), passing `extra`
    /// flags to `cluster create`.
    pub fn create(name: &str, nodes: u32, etcd: bool, extra: &[&str]) -> LocalCluster {
        let _ = skiffctl(&["cluster", "delete", "--name", name]);
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let n = nodes.to_string();
        let kc = kubeconfig.display().to_string();
        let mut args = vec![
            "cluster",
            "create",
            "--name",
            name,
            "--nodes",
            &n,
            "--kubeconfig",
            &kc,
        ];
        if etcd {
            args.push("--etcd");
        }
        args.extend(extra);
        let started = Instant::now();
        let out = skiffctl(&args);
        let create_time = started.elapsed();
        let cluster = LocalCluster {
            name: name.to_string(),
            nodes,
            create_time,
            kubeconfig,
            _dir: dir,
        };
        ok(&args, out);
        cluster
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn node_name(&self, i: u32) -> String {
        format!("{}-node-{i}", self.name)
    }

    /// The cluster's data dir (logs, pid files).
    pub fn dir(&self) -> PathBuf {
        Path::new(TEST_CLUSTERS_DIR).join(&self.name)
    }

    /// The Docker socket of node `i` (1-based).
    pub fn docker_socket(&self, i: u32) -> String {
        format!("unix:///run/skiff/{}/n{i}/docker.sock", self.name)
    }

    /// The real kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl, asserting success; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl with `stdin` as input (`-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write as _;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `skiffctl cluster <sub> --name <this> args...`, asserting success.
    pub fn skiffctl_ok(&self, sub: &str, args: &[&str]) -> String {
        let mut all = vec!["cluster", sub, "--name", &self.name];
        all.extend(args);
        skiffctl_ok(&all)
    }

    /// The resident memory of each component (pid file name → kB).
    pub fn component_rss(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.dir().join("pids")) else {
            return out;
        };
        for e in entries.flatten() {
            let name = e
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".pid")
                .to_string();
            let Some(pid) = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                });
            if let Some(kb) = rss {
                out.push((name, kb));
            }
        }
        out.sort();
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let out = skiffctl(&["cluster", "delete", "--name", &self.name]);
        if !out.status.success() {
            eprintln!(
                "deleting cluster {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
