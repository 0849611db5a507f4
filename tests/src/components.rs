//! Real control-plane processes (`skiff-scheduler`, `skiff-controller-manager`) against a
//! test's apiserver, and Node objects of chosen sizes, labels and taints (no kubelet needed).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::ApiServer;
use crate::apiserver::sibling_binary;

/// A running control-plane program, killed on drop (its log is printed if the test failed).
pub struct Component {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
    /// The HTTPS port of /healthz and /metrics.
    pub port: u16,
    _dir: TempDir,
}

/// `skiff-scheduler`.
pub struct Scheduler;

impl Scheduler {
    /// Starts a scheduler without leader election.
    pub fn start(server: &ApiServer) -> Component {
        Self::start_with_args(server, &["--leader-elect=false"])
    }

    pub fn start_with_args(server: &ApiServer, args: &[&str]) -> Component {
        Component::start("skiff-scheduler", server, args)
    }
}

/// `skiff-controller-manager`.
pub struct ControllerManager;

impl ControllerManager {
    /// Starts every controller, without leader election.
    pub fn start(server: &ApiServer) -> Component {
        Self::start_with_args(server, &["--leader-elect=false"])
    }

    pub fn start_with_args(server: &ApiServer, args: &[&str]) -> Component {
        Component::start("skiff-controller-manager", server, args)
    }
}

impl Component {
    pub fn start(name: &'static str, server: &ApiServer, args: &[&str]) -> Component {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join(format!("{name}.log"));
        let port = free_port();
        let out = std::fs::File::create(&log).expect("create the log");
        // Each runs as itself; the controller-manager's controllers as their ServiceAccounts.
        let (user, extra): (&str, &[&str]) = match name {
            "skiff-scheduler" => ("system:kube-scheduler", &[]),
            "skiff-controller-manager" => (
                "system:kube-controller-manager",
                &["--use-service-account-credentials=true"],
            ),
            other => panic!("no identity for {other}"),
        };
        let child = Command::new(sibling_binary(name))
            .arg("--kubeconfig")
            .arg(server.identity_kubeconfig(user, &[]))
            .args(extra)
            .args([
                "--secure-port",
                &port.to_string(),
                "--bind-address",
                "127.0.0.1",
            ])
            .args(args)
            .env(
                "RUST_LOG",
                "info,skiff_scheduler=debug,skiff_controller_manager=debug",
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Component {
            name,
            child: Some(child),
            log,
            port,
            _dir: dir,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// GET over HTTPS (self-signed certificate) from the program's own server.
    pub fn get(&self, path: &str) -> (u16, String) {
        let client = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client");
        match client
            .get(format!("https://127.0.0.1:{}{path}", self.port))
            .send()
        {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log_text());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Node object for the scheduler: `node("n1").cpu("4").memory("8Gi")`.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder {
        name: name.into(),
        cpu: "4".into(),
        memory: "8Gi".into(),
        pods: 110,
        labels: vec![("kubernetes.io/hostname".into(), name.into())],
        taints: Vec::new(),
        unschedulable: false,
        ready: "True".into(),
        internal_ip: None,
    }
}

pub struct NodeBuilder {
    name: String,
    cpu: String,
    memory: String,
    pods: u32,
    labels: Vec<(String, String)>,
    taints: Vec<Value>,
    unschedulable: bool,
    ready: String,
    internal_ip: Option<String>,
}

impl NodeBuilder {
    pub fn cpu(mut self, q: &str) -> Self {
        self.cpu = q.into();
        self
    }
    pub fn memory(mut self, q: &str) -> Self {
        self.memory = q.into();
        self
    }
    pub fn pods(mut self, n: u32) -> Self {
        self.pods = n;
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.into(), v.into()));
        self
    }
    /// A taint `key=value:effect`.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints
            .push(json!({"key": key, "value": value, "effect": effect}));
        self
    }
    pub fn unschedulable(mut self) -> Self {
        self.unschedulable = true;
        self
    }
    /// The node's InternalIP (reported in `status.addresses`; no traffic is sent to it).
    pub fn internal_ip(mut self, ip: &str) -> Self {
        self.internal_ip = Some(ip.into());
        self
    }

    /// The Ready condition's status (`True`, `False`, `Unknown`).
    pub fn ready(mut self, status: &str) -> Self {
        self.ready = status.into();
        self
    }

    /// Creates the Node and sets its status (as a kubelet would).
    pub fn create(self, server: &ApiServer) {
        let labels: serde_json::Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let mut spec = json!({});
        if !self.taints.is_empty() {
            spec["taints"] = json!(self.taints);
        }
        if self.unschedulable {
            spec["unschedulable"] = json!(true);
        }
        let mut status = json!({
            "capacity": {"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string()},
            "allocatable": {"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string()},
            "conditions": [{"type": "Ready", "status": self.ready, "reason": "KubeletReady", "message": "test node"}],
        });
        if let Some(ip) = &self.internal_ip {
            status["addresses"] = json!([{"type": "InternalIP", "address": ip}]);
        }
        let http = server.http();
        let created = http.post_json(
            "/api/v1/nodes",
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": labels}, "spec": spec}),
        );
        assert_eq!(
            created.status, 201,
            "create node {}: {}",
            self.name, created.body
        );
        // A controller-manager may change the Node meanwhile (podCIDR, taints): retry on conflict.
        let mut obj = created.json();
        for _ in 0..10 {
            obj["status"] = status.clone();
            let updated = http.put_json(&format!("/api/v1/nodes/{}/status", self.name), &obj);
            if updated.status == 200 {
                return;
            }
            assert_eq!(
                updated.status, 409,
                "node status {}: {}",
                self.name, updated.body
            );
            obj = http.get(&format!("/api/v1/nodes/{}", self.name)).json();
        }
        panic!("could not set the status of node {}", self.name);
    }
}
