//! The Node object: registration, status (capacity, addresses, nodeInfo, conditions) and the
//! heartbeat Lease in `kube-node-lease`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_common::time::{now, now_micro};
use tokio_util::sync::CancellationToken;

use crate::eviction::{self, Pressure, PressureCondition};
use crate::{Context, sysinfo};

/// One node condition as the kubelet judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    ty: &'static str,
    status: bool,
    reason: String,
    message: String,
}

/// Registers and reports the node.
pub struct NodeAgent {
    ctx: Arc<Context>,
    pod_cidr: Option<String>,
    report_every: Duration,
    /// The Lease's duration; it is renewed every quarter of it (10 s for the default 40 s).
    lease_duration_seconds: i32,
    /// The conditions the eviction manager holds True.
    pressure: Pressure,
}

impl NodeAgent {
    pub fn new(
        ctx: Arc<Context>,
        pod_cidr: Option<String>,
        report_every: Duration,
        lease_duration_seconds: i32,
        pressure: Pressure,
    ) -> Self {
        NodeAgent {
            ctx,
            pod_cidr,
            report_every,
            lease_duration_seconds: lease_duration_seconds.max(1),
            pressure,
        }
    }

    fn api(&self) -> Api<Node> {
        Api::all(self.ctx.client.clone())
    }

    /// Creates the Node, or takes over an existing one of the same name.
    pub async fn register(&self) -> anyhow::Result<()> {
        let name = &self.ctx.node_name;
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/hostname".to_string(), name.clone());
        labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
        labels.insert(
            "kubernetes.io/arch".to_string(),
            sysinfo::arch().to_string(),
        );
        // Where the `local-path` provisioner puts this node's volumes.
        let storage = crate::local_path::storage_dir(&self.ctx.root_dir);
        let annotations = json!({
            skiff_api::storage::ANN_LOCAL_PATH_DIR: storage.display().to_string(),
        });
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": name, "labels": labels, "annotations": annotations },
            "spec": {},
        });
        if let Some(cidr) = &self.pod_cidr {
            node["spec"]["podCIDR"] = json!(cidr);
            node["spec"]["podCIDRs"] = json!([cidr]);
        }
        let node: Node = serde_json::from_value(node)?;
        match self.api().create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Re-registering after a restart: keep the object, refresh labels (and the
                // standalone pod CIDR, if the operator gave one).
                let mut patch = json!({ "metadata": {
                    "labels": node.metadata.labels,
                    "annotations": node.metadata.annotations,
                } });
                if let Some(cidr) = &self.pod_cidr {
                    patch["spec"] = json!({ "podCIDR": cidr, "podCIDRs": [cidr] });
                }
                self.api()
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        let conditions = self.conditions().await;
        self.report(&conditions, None).await?;
        Ok(())
    }

    async fn conditions(&self) -> Vec<Condition> {
        let runtime = self.ctx.runtime.version().await;
        let ready = match &runtime {
            Ok(_) => Condition {
                ty: "Ready",
                status: true,
                reason: "KubeletReady".into(),
                message: "kubelet is posting ready status".into(),
            },
            Err(e) => Condition {
                ty: "Ready",
                status: false,
                reason: "KubeletNotReady".into(),
                message: format!("container runtime is down: {e}"),
            },
        };
        // Memory and disk pressure are the eviction manager's verdicts, kept True for the
        // pressure transition period after their signals clear.
        let held = self.pressure.borrow().clone();
        let [memory, disk] = [
            PressureCondition::MemoryPressure,
            PressureCondition::DiskPressure,
        ]
        .map(|c| {
            let active = held.contains(&c);
            let (reason, message) = eviction::condition_words(c, active);
            Condition {
                ty: c.type_name(),
                status: active,
                reason: reason.into(),
                message: message.into(),
            }
        });
        let pid = match sysinfo::pids() {
            Some((used, max)) if used * 10 > max * 9 => Condition {
                ty: "PIDPressure",
                status: true,
                reason: "KubeletHasInsufficientPID".into(),
                message: format!("{used} of {max} process IDs in use"),
            },
            _ => Condition {
                ty: "PIDPressure",
                status: false,
                reason: "KubeletHasSufficientPID".into(),
                message: "kubelet has sufficient PID available".into(),
            },
        };
        vec![memory, disk, pid, ready]
    }

    /// Writes the node status. `previous` carries the last reported conditions, to keep their
    /// transition times.
    async fn report(
        &self,
        conditions: &[Condition],
        previous: Option<&[(Condition, String)]>,
    ) -> anyhow::Result<Vec<(Condition, String)>> {
        let now = now();
        let cpu = sysinfo::cpus().to_string();
        let memory = format!("{}Ki", sysinfo::memory_kib());
        let runtime_version = match self.ctx.runtime.version().await {
            Ok(v) => format!("{}://{}", v.name, v.version),
            Err(_) => "docker://unknown".into(),
        };
        let mut stamped = Vec::new();
        let conds: Vec<Value> = conditions
            .iter()
            .map(|c| {
                let since = previous
                    .and_then(|p| {
                        p.iter()
                            .find(|(old, _)| old.ty == c.ty && old.status == c.status)
                    })
                    .map(|(_, t)| t.clone())
                    .unwrap_or_else(|| now.clone());
                stamped.push((c.clone(), since.clone()));
                json!({
                    "type": c.ty,
                    "status": if c.status { "True" } else { "False" },
                    "reason": c.reason,
                    "message": c.message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": since,
                })
            })
            .collect();
        let hostname = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let status = json!({
            "status": {
                "capacity": { "cpu": cpu, "memory": memory, "pods": "110" },
                "allocatable": { "cpu": cpu, "memory": memory, "pods": "110" },
                "addresses": [
                    { "type": "InternalIP", "address": self.ctx.node_ip.to_string() },
                    { "type": "Hostname", "address": hostname },
                ],
                "nodeInfo": {
                    "machineID": sysinfo::machine_id(),
                    "systemUUID": sysinfo::machine_id(),
                    "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default(),
                    "kernelVersion": sysinfo::kernel_version(),
                    "osImage": sysinfo::os_image(),
                    "containerRuntimeVersion": runtime_version,
                    "kubeletVersion": concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION")),
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": sysinfo::arch(),
                },
                "conditions": conds,
                "daemonEndpoints": { "kubeletEndpoint": { "Port": self.ctx.port } },
            }
        });
        self.api()
            .patch_status(
                &self.ctx.node_name,
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await?;
        Ok(stamped)
    }

    async fn renew_lease(&self) -> anyhow::Result<()> {
        let api: Api<Lease> = Api::namespaced(self.ctx.client.clone(), "kube-node-lease");
        let name = &self.ctx.node_name;
        let patch = json!({ "spec": { "holderIdentity": name, "leaseDurationSeconds": self.lease_duration_seconds, "renewTime": now_micro() } });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let lease: Lease = serde_json::from_value(json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [],
                    },
                    "spec": patch["spec"],
                }))?;
                api.create(&PostParams::default(), &lease).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Heartbeats and status reports until shutdown; also publishes the pod network once the
    /// node has a pod CIDR.
    pub async fn run(
        self,
        network: tokio::sync::watch::Sender<Option<String>>,
        shutdown: CancellationToken,
    ) {
        let mut reported: Option<(Vec<(Condition, String)>, Instant)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(
            self.lease_duration_seconds as u64 * 250,
        ));
        let mut pressure = self.pressure.clone();
        loop {
            // A pressure condition that turns is reported at once, not at the next tick.
            tokio::select! {
                _ = tick.tick() => {}
                Ok(()) = pressure.changed() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = self.renew_lease().await {
                tracing::warn!(error = %e, "could not renew the node lease");
            }
            let conditions = self.conditions().await;
            // As the kubelet, a Normal event on the Node when a pressure condition is first
            // set or turns: NodeHasInsufficientMemory, NodeHasNoDiskPressure, ...
            for c in conditions
                .iter()
                .filter(|c| c.ty == "MemoryPressure" || c.ty == "DiskPressure")
            {
                let before = reported
                    .as_ref()
                    .and_then(|(prev, _)| prev.iter().find(|(o, _)| o.ty == c.ty))
                    .map(|(o, _)| o.status);
                if before != Some(c.status) {
                    self.node_event(&c.reason.replacen("Kubelet", "Node", 1));
                }
            }
            let changed = reported.as_ref().is_none_or(|(prev, at)| {
                at.elapsed() >= self.report_every
                    || prev.iter().map(|(c, _)| c).ne(conditions.iter())
            });
            if changed {
                match self
                    .report(&conditions, reported.as_ref().map(|(p, _)| p.as_slice()))
                    .await
                {
                    Ok(stamped) => reported = Some((stamped, Instant::now())),
                    Err(e) => tracing::warn!(error = %e, "could not report node status"),
                }
            }
            if network.borrow().is_none() {
                self.ensure_pod_network(&network).await;
            }
        }
    }

    /// Records a Normal event on the Node: `Node <name> status is now: <reason>`.
    fn node_event(&self, reason: &str) {
        let node = ObjectReference {
            kind: Some("Node".into()),
            name: Some(self.ctx.node_name.clone()),
            uid: Some(self.ctx.node_name.clone()),
            ..Default::default()
        };
        let message = format!("Node {} status is now: {reason}", self.ctx.node_name);
        self.ctx.api.event(
            node,
            skiff_client::events::EventType::Normal,
            reason,
            message,
        );
    }

    /// Creates the node's pod network once `spec.podCIDR` is known.
    async fn ensure_pod_network(&self, network: &tokio::sync::watch::Sender<Option<String>>) {
        let cidr = match self.api().get(&self.ctx.node_name).await {
            Ok(n) => n.spec.and_then(|s| s.pod_cidr),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the Node");
                return;
            }
        };
        let Some(cidr) = cidr else { return };
        // One network per node, so several kubelets can share an engine (tests) without
        // their subnets colliding under one name.
        let name = format!("skiff-{}", self.ctx.node_name);
        match self.ctx.runtime.ensure_network(&name, &cidr).await {
            Ok(()) => {
                tracing::info!(%cidr, network = %name, "pod network ready");
                let _ = network.send(Some(name));
            }
            Err(e) => tracing::warn!(error = %e, %cidr, "could not create the pod network"),
        }
    }
}
