//! Endpoints and EndpointSlices: for every Service with a selector, the pods it selects (in
//! its namespace, with an IP, not being deleted), each pod's target ports resolved (a named
//! `targetPort` is looked up in that pod's container ports), ready pods as `addresses` and
//! the others as `notReadyAddresses` (all ready with `publishNotReadyAddresses`). The same data
//! goes into EndpointSlices (`kubernetes.io/service-name=<svc>`), one per distinct port set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::pods::{self, CachedPod};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, key_of, split_key};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The ServiceAccount EndpointSlices are written as (the Endpoints' is the controller's).
pub const SLICE_SERVICE_ACCOUNT: &str = "endpointslice-controller";

/// One pod's place in a Service: its address, readiness and resolved ports.
#[derive(Debug, Clone)]
pub struct Backend {
    pub pod: Arc<CachedPod>,
    pub ready: bool,
    pub ports: Vec<EndpointPort>,
}

/// Resolves the Service's ports against one pod; None if a named port is missing.
pub fn resolve_ports(svc: &Service, pod: &CachedPod) -> Option<Vec<EndpointPort>> {
    let mut out = Vec::new();
    for p in svc.spec.as_ref()?.ports.iter().flatten() {
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let port = match &p.target_port {
            None => p.port,
            Some(IntOrString::Int(n)) => *n,
            Some(IntOrString::String(name)) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name)
                        && cp.protocol.clone().unwrap_or_else(|| "TCP".into()) == protocol
                })
                .map(|cp| cp.container_port)?,
        };
        out.push(EndpointPort {
            name: p.name.clone(),
            port,
            protocol: Some(protocol),
            app_protocol: p.app_protocol.clone(),
        });
    }
    Some(out)
}

/// The Service's backends among `candidates`.
pub fn backends(svc: &Service, candidates: &[Arc<CachedPod>]) -> Vec<Backend> {
    let Some(selector) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
    else {
        return Vec::new();
    };
    let publish_all = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut out: Vec<Backend> = candidates
        .iter()
        .filter(|p| selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .filter(|p| pods::is_active(p))
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .is_some_and(|ip| !ip.is_empty())
        })
        .filter_map(|p| {
            Some(Backend {
                ready: publish_all || pods::is_ready(p),
                ports: resolve_ports(svc, p)?,
                pod: p.clone(),
            })
        })
        .collect();
    out.sort_by_key(|b| b.pod.name_any());
    out
}

fn target_ref(pod: &CachedPod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn ip(pod: &CachedPod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// Backends grouped by port set (Kubernetes' subsets and slices are per port set).
fn by_ports(backends: &[Backend]) -> BTreeMap<String, (Vec<EndpointPort>, Vec<&Backend>)> {
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<&Backend>)> = BTreeMap::new();
    for b in backends {
        let key = serde_json::to_string(&b.ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (b.ports.clone(), Vec::new()))
            .1
            .push(b);
    }
    groups
}

/// The pod's hostname, published in the endpoints of the Service its subdomain names (in its
/// namespace), as Kubernetes does: that is what lets DNS answer `<hostname>.<service>`.
pub fn published_hostname(svc: &Service, pod: &CachedPod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.to_string())
}

/// The Endpoints subsets for the backends of `svc`.
pub fn subsets(svc: &Service, backends: &[Backend]) -> Vec<EndpointSubset> {
    by_ports(backends)
        .into_values()
        .map(|(ports, members)| {
            let addr = |b: &&Backend| EndpointAddress {
                ip: ip(&b.pod),
                node_name: b.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(target_ref(&b.pod)),
                hostname: published_hostname(svc, &b.pod),
            };
            let ready: Vec<_> = members.iter().filter(|b| b.ready).map(addr).collect();
            let not_ready: Vec<_> = members.iter().filter(|b| !b.ready).map(addr).collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|i| ALPHABET[((h >> (i * 5)) as usize) % ALPHABET.len()] as char)
        .collect()
}

/// The EndpointSlices for the backends: one per port set, named `<svc>-<hash of ports>`.
pub fn slices(svc: &Service, backends: &[Backend]) -> Vec<EndpointSlice> {
    let name = svc.name_any();
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut groups = by_ports(backends);
    if groups.is_empty() {
        // A Service without endpoints keeps one placeholder slice, with no ports, as
        // Kubernetes' EndpointSlice reconciler writes it.
        groups.insert(String::new(), (Vec::new(), Vec::new()));
    }
    groups
        .into_iter()
        .map(|(key, (ports, members))| EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{}", short_hash(&key))),
                namespace: svc.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                owner_references: Some(vec![pods::controller_ref(svc)]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: members
                .iter()
                .map(|b| Endpoint {
                    addresses: vec![ip(&b.pod)],
                    conditions: Some(EndpointConditions {
                        ready: Some(b.ready),
                        serving: Some(b.ready),
                        terminating: Some(false),
                    }),
                    node_name: b.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                    target_ref: Some(target_ref(&b.pod)),
                    hostname: published_hostname(svc, &b.pod),
                    ..Default::default()
                })
                .collect(),
            ports: Some(
                ports
                    .into_iter()
                    .map(|p| k8s_openapi::api::discovery::v1::EndpointPort {
                        // Kubernetes always sets the name, `""` for an unnamed port (kubectl
                        // describe dereferences it); Endpoints leave it out instead.
                        name: Some(p.name.unwrap_or_default()),
                        port: Some(p.port),
                        protocol: p.protocol,
                        app_protocol: p.app_protocol,
                    })
                    .collect(),
            ),
        })
        .collect()
}

pub struct EndpointsController {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
    /// EndpointSlices are written as upstream's EndpointSlice controller.
    slice_client: kube::Client,
}

impl EndpointsController {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let q = queue.clone();
        let all = ctx.services.clone();
        ctx.services.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(key_of(*new)),
            Change::Deleted(o) => q.add(key_of(*o)),
            Change::Resynced => all.list().iter().for_each(|s| q.add(key_of(s.as_ref()))),
        });
        let q = queue.clone();
        let services = ctx.services.clone();
        ctx.pods.on_change(move |c| {
            let (old, new) = match c {
                Change::Applied { old, new } => (*old, Some(*new)),
                Change::Deleted(p) => (Some(*p), None),
                Change::Resynced => return,
            };
            let Some(ns) = new.or(old).and_then(|p| p.namespace()) else {
                return;
            };
            for svc in services.list_in(&ns) {
                let Some(sel) = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .filter(|s| !s.is_empty())
                else {
                    continue;
                };
                let selects = |p: Option<&CachedPod>| {
                    p.is_some_and(|p| sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
                };
                if selects(old) || selects(new) {
                    q.add(key_of(svc.as_ref()));
                }
            }
        });
        Arc::new(EndpointsController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            slice_client: ctx.client_for(SLICE_SERVICE_ACCOUNT),
            ctx,
        })
    }

    async fn write_endpoints(
        &self,
        ns: &str,
        name: &str,
        svc: &Service,
        subsets: Vec<EndpointSubset>,
    ) -> Result<()> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let current = self.ctx.endpoints.get(Some(ns), name);
        let subsets = (!subsets.is_empty()).then_some(subsets);
        if let Some(cur) = &current
            && cur.subsets == subsets
            && cur.metadata.labels == svc.metadata.labels
        {
            return Ok(());
        }
        let mut ep = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: svc.metadata.labels.clone(),
                ..Default::default()
            },
            subsets,
        };
        match current {
            Some(cur) => {
                ep.metadata.resource_version = cur.metadata.resource_version.clone();
                api.replace(name, &PostParams::default(), &ep).await?;
            }
            None => match api.create(&PostParams::default(), &ep).await {
                Ok(_) => {}
                // Made meanwhile (or by an earlier run): replace it on the next sync.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(crate::controller::Error::Invalid(format!(
                        "endpoints {ns}/{name} exist; will update"
                    )));
                }
                Err(e) => return Err(e.into()),
            },
        }
        Ok(())
    }

    async fn write_slices(
        &self,
        ns: &str,
        svc: &Service,
        wanted: Vec<EndpointSlice>,
    ) -> Result<()> {
        let api: Api<EndpointSlice> = Api::namespaced(self.slice_client.clone(), ns);
        let name = svc.name_any();
        let existing: Vec<Arc<EndpointSlice>> = self
            .ctx
            .endpoint_slices
            .list_in(ns)
            .into_iter()
            .filter(|s| {
                let l = s.metadata.labels.as_ref();
                l.and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&name)
                    && l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str)
                        == Some(MANAGED_BY)
            })
            .collect();
        for mut slice in wanted.iter().cloned() {
            let slice_name = slice.name_any();
            match existing.iter().find(|e| e.name_any() == slice_name) {
                Some(cur) => {
                    if cur.endpoints == slice.endpoints
                        && cur.ports == slice.ports
                        && cur.metadata.labels == slice.metadata.labels
                    {
                        continue;
                    }
                    slice.metadata.resource_version = cur.metadata.resource_version.clone();
                    api.replace(&slice_name, &PostParams::default(), &slice)
                        .await?;
                }
                None => match api.create(&PostParams::default(), &slice).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        return Err(crate::controller::Error::Invalid(format!(
                            "endpointslice {ns}/{slice_name} exists; will update"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        }
        for stale in existing
            .iter()
            .filter(|e| !wanted.iter().any(|w| w.name_any() == e.name_any()))
        {
            match api
                .delete(&stale.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl Controller for EndpointsController {
    const SERVICE_ACCOUNT: &'static str = "endpoint-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for EndpointsController {
    const NAME: &'static str = "endpoint";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(svc) = self.ctx.services.get(Some(ns), name) else {
            // The Service is gone: so are its Endpoints (slices go with their owner, by GC).
            if self.ctx.endpoints.get(Some(ns), name).is_some() {
                let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(None);
        };
        if svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none_or(|s| s.is_empty())
        {
            return Ok(None);
        }
        let found = backends(&svc, &self.ctx.pods.list_in(ns));
        self.write_endpoints(ns, name, &svc, subsets(&svc, &found))
            .await?;
        self.write_slices(ns, &svc, slices(&svc, &found)).await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(target: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": target}]}
        }))
        .unwrap()
    }

    fn pod(
        name: &str,
        ip: Option<&str>,
        ready: bool,
        port_name: &str,
        port: i32,
    ) -> Arc<CachedPod> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x", "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running"}
        });
        if let Some(ip) = ip {
            v["status"]["podIP"] = json!(ip);
        }
        if ready {
            v["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn ready_and_not_ready_addresses_with_named_ports_resolved_per_pod() {
        let pods = vec![
            pod("a", Some("10.0.0.1"), true, "web", 8080),
            pod("b", Some("10.0.0.2"), false, "web", 8080),
            pod("c", Some("10.0.0.3"), true, "web", 9090),
            pod("no-ip", None, true, "web", 8080),
            pod("no-port", Some("10.0.0.4"), true, "other", 8080),
        ];
        let found = backends(&svc(json!("web")), &pods);
        let s = subsets(&svc(json!("web")), &found);
        assert_eq!(s.len(), 2, "two port sets: {s:?}");
        let p8080 = s
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == 8080)
            .unwrap();
        assert_eq!(
            p8080
                .addresses
                .as_ref()
                .unwrap()
                .iter()
                .map(|a| a.ip.as_str())
                .collect::<Vec<_>>(),
            ["10.0.0.1"]
        );
        assert_eq!(
            p8080.not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.0.0.2"
        );
        let sl = slices(&svc(json!("web")), &found);
        assert_eq!(sl.len(), 2);
        assert!(
            sl.iter()
                .all(|s| s.metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL] == "web")
        );
    }

    #[test]
    fn numeric_target_ports_and_empty_services() {
        let pods = vec![pod("a", Some("10.0.0.1"), true, "web", 8080)];
        let s = subsets(&svc(json!(8080)), &backends(&svc(json!(8080)), &pods));
        assert_eq!(s[0].ports.as_ref().unwrap()[0].port, 8080);
        let none: Vec<Arc<CachedPod>> = vec![];
        assert!(subsets(&svc(json!(80)), &backends(&svc(json!(80)), &none)).is_empty());
        let placeholder = slices(&svc(json!(80)), &[]);
        assert_eq!(placeholder.len(), 1, "an empty slice remains");
        assert_eq!(placeholder[0].ports, Some(vec![]), "with no ports");
        assert!(placeholder[0].endpoints.is_empty());
    }

    #[test]
    fn slice_ports_always_have_a_name_as_kubernetes_writes_them() {
        let unnamed: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .unwrap();
        let pods = vec![pod("a", Some("10.0.0.1"), true, "web", 8080)];
        let found = backends(&unnamed, &pods);
        let written = slices(&unnamed, &found);
        let port = &written[0].ports.as_ref().unwrap()[0];
        assert_eq!(port.name.as_deref(), Some(""));
        assert_eq!(port.port, Some(8080));
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        // The Endpoints object leaves an empty name out, as Kubernetes' does.
        assert_eq!(
            subsets(&unnamed, &found)[0].ports.as_ref().unwrap()[0].name,
            None
        );
        let named = backends(&svc(json!("web")), &pods);
        let written = slices(&svc(json!("web")), &named);
        let port = &written[0].ports.as_ref().unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("http"));
    }

    #[test]
    fn hostnames_are_published_for_the_service_the_subdomain_names() {
        let with = |name: &str, subdomain: &str| {
            let mut p = (*pod(name, Some("10.0.0.1"), true, "web", 8080)).clone();
            let spec = p.spec.as_mut().unwrap();
            spec.hostname = Some(name.into());
            spec.subdomain = Some(subdomain.into());
            Arc::new(p)
        };
        let pods = vec![with("web-0", "web"), with("other-0", "other")];
        let s = svc(json!(8080));
        let found = backends(&s, &pods);
        let names: Vec<_> = subsets(&s, &found)[0]
            .addresses
            .iter()
            .flatten()
            .map(|a| a.hostname.clone())
            .collect();
        assert_eq!(names, [None, Some("web-0".to_string())]);
        let names: Vec<_> = slices(&s, &found)[0]
            .endpoints
            .iter()
            .map(|e| e.hostname.clone())
            .collect();
        assert_eq!(names, [None, Some("web-0".to_string())]);
    }
}
