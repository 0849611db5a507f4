//! Fixtures for the worker's unit tests: a [`Context`] on the fake runtime and the fake API,
//! and pod and container builders.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::ObjectMeta;
use skiff_runtime::FakeRuntime;
use tokio::sync::mpsc;

use super::{PodUpdate, Worker};
use crate::Context;
use crate::api::FakeApi;

pub(super) const NODE: &str = "node-1";
pub(super) const NODE_IP: [u8; 4] = [192, 0, 2, 10];

/// A node for one test: the fake runtime, the fake API and a kubelet root folder.
pub(super) struct Node {
    pub runtime: FakeRuntime,
    pub api: FakeApi,
    pub ctx: Arc<Context>,
    pub root: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        Node::with_pod_network(Some("skiff-pods"))
    }

    /// A node whose pod network is `network` (None: not created yet).
    pub fn with_pod_network(network: Option<&str>) -> Node {
        let runtime = FakeRuntime::new();
        let api = FakeApi::new();
        let root = tempfile::tempdir().expect("a temporary kubelet root");
        let (_tx, pod_network) = tokio::sync::watch::channel(network.map(String::from));
        // The worker never uses the client (it goes through `api`); other parts of the
        // kubelet do, so the context needs one. It points at a closed loopback port.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        let client = kube::Client::try_from(config).expect("a kube client");
        let ctx = Arc::new(Context {
            client,
            api: Arc::new(api.clone()),
            reviews: Arc::new(api.clone()),
            runtime: Arc::new(runtime.clone()),
            node_name: NODE.into(),
            node_ip: IpAddr::from(NODE_IP),
            root_dir: root.path().to_path_buf(),
            pod_network,
            port: 10250,
            dns: crate::dns::DnsSettings {
                cluster_dns: vec!["10.96.0.10".into()],
                cluster_domain: "cluster.local".into(),
                host: Default::default(),
            },
            memory_volumes: false,
        });
        Node {
            runtime,
            api,
            ctx,
            root,
        }
    }

    /// A worker for `pod` (also stored in the fake API, so status patches land), and the
    /// sender of its updates.
    pub fn worker(&self, pod: Pod) -> (Worker, mpsc::UnboundedSender<PodUpdate>) {
        self.api.add_pod(pod.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        (Worker::new(self.ctx.clone(), pod, rx), tx)
    }

    /// The pod's status as the fake API holds it, as JSON.
    pub fn status(&self, pod: &Pod) -> serde_json::Value {
        let stored = self
            .api
            .pod(
                pod.metadata.namespace.as_deref().unwrap_or("default"),
                pod.metadata.name.as_deref().unwrap_or_default(),
            )
            .expect("the pod is stored");
        serde_json::to_value(stored.status).expect("a status serializes")
    }
}

/// Pod `web` in `default` (uid `uid-web`, label `app=web`) with `spec`.
pub(super) fn pod(spec: PodSpec) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// A pod with one container and `restartPolicy`.
pub(super) fn pod_with(container: Container, restart_policy: &str) -> Pod {
    pod(PodSpec {
        containers: vec![container],
        restart_policy: Some(restart_policy.into()),
        ..Default::default()
    })
}

/// Container `name` of image `busybox` running `command`.
pub(super) fn container(name: &str, command: &[&str]) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox".into()),
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}
