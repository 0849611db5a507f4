//! Service hooks: a Service's ClusterIP and node ports are allocated when it is written
//! (kept across updates) and given back when it no longer holds them.

use serde_json::{Value, json};
use skiff_api::{FieldError, FieldErrorKind, ResourceInfo};

use super::KindHooks;
use crate::alloc::{AllocError, Allocator, Claims};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy)]
pub struct ServiceHooks;

impl KindHooks for ServiceHooks {
    async fn before_create(
        &self,
        alloc: &Allocator,
        info: &ResourceInfo,
        name: &str,
        obj: &mut Value,
    ) -> ApiResult<Claims> {
        allocate(alloc, info, name, obj, None).await
    }

    async fn before_update(
        &self,
        alloc: &Allocator,
        info: &ResourceInfo,
        name: &str,
        new: &mut Value,
        old: &Value,
    ) -> ApiResult<Claims> {
        allocate(alloc, info, name, new, Some(old)).await
    }

    async fn after_update(&self, alloc: &Allocator, old: &Value, new: &Value) {
        release_diff(alloc, old, Some(new)).await;
    }

    async fn after_delete(&self, alloc: &Allocator, obj: &Value) {
        release_diff(alloc, obj, None).await;
    }
}

/// Whether a Service's type needs node ports.
fn needs_node_ports(svc: &Value) -> bool {
    matches!(
        svc.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort")?.as_u64())
                .map(|p| p as u16)
                .collect()
        })
        .unwrap_or_default()
}

fn cluster_ip(svc: &Value) -> Option<&str> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "None")
}

/// Allocates a Service's ClusterIP and node ports, reusing those of `old` on update.
/// Returns what was newly claimed, so a failed write can give it back.
async fn allocate(
    alloc: &Allocator,
    info: &ResourceInfo,
    name: &str,
    svc: &mut Value,
    old: Option<&Value>,
) -> ApiResult<Claims> {
    let mut claimed = Claims::default();
    let result = allocate_inner(alloc, svc, old, &mut claimed).await;
    match result {
        Ok(()) => Ok(claimed),
        Err((field, value, e)) => {
            alloc.release(claimed).await;
            match e {
                AllocError::Store(s) => Err(ApiError::from_store(s, info, name)),
                e => Err(ApiError::invalid(
                    info,
                    name,
                    &[FieldError {
                        kind: FieldErrorKind::Invalid,
                        field,
                        value,
                        detail: e.to_string(),
                    }],
                )),
            }
        }
    }
}

async fn allocate_inner(
    alloc: &Allocator,
    svc: &mut Value,
    old: Option<&Value>,
    claimed: &mut Claims,
) -> Result<(), (String, Option<String>, AllocError)> {
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        let requested = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let old_ip = old.and_then(cluster_ip).map(String::from);
        let ip = match (requested.as_str(), old_ip) {
            ("None", _) => None,
            ("", Some(o)) => Some(o),
            (r, Some(o)) if r == o => Some(o),
            ("", None) => {
                let ip = alloc
                    .allocate_ip(None)
                    .await
                    .map_err(|e| ("spec.clusterIP".into(), None, e))?;
                claimed.ip(ip.clone());
                Some(ip)
            }
            (r, _) => {
                let ip = alloc.allocate_ip(Some(r)).await.map_err(|e| {
                    (
                        "spec.clusterIPs".into(),
                        Some(format!("[]string{{\"{r}\"}}")),
                        e,
                    )
                })?;
                claimed.ip(ip.clone());
                Some(ip)
            }
        };
        let spec = svc["spec"].as_object_mut().expect("service spec");
        match ip {
            Some(ip) => {
                spec.insert("clusterIP".into(), json!(ip));
                spec.insert("clusterIPs".into(), json!([ip]));
            }
            None => {
                spec.insert("clusterIP".into(), json!("None"));
                spec.insert("clusterIPs".into(), json!(["None"]));
            }
        }
    }
    if needs_node_ports(svc) {
        let old_ports: Vec<(u64, String, u16)> = old
            .and_then(|o| o.pointer("/spec/ports").and_then(Value::as_array))
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some((
                            p.get("port")?.as_u64()?,
                            p.get("protocol")
                                .and_then(Value::as_str)
                                .unwrap_or("TCP")
                                .to_string(),
                            p.get("nodePort")?.as_u64()? as u16,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let old_node_ports: Vec<u16> = old_ports.iter().map(|p| p.2).collect();
        let n = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        // Ports asked for by number first, as Kubernetes allocates them: a port picked at
        // random must not take one that a later entry names.
        let asks = |i: usize| {
            svc["spec"]["ports"][i]
                .get("nodePort")
                .and_then(Value::as_u64)
                .is_some_and(|p| p != 0)
        };
        let mut order: Vec<usize> = (0..n).filter(|i| asks(*i)).collect();
        order.extend((0..n).filter(|i| !asks(*i)));
        for i in order {
            let port = &svc["spec"]["ports"][i];
            let requested = port
                .get("nodePort")
                .and_then(Value::as_u64)
                .map(|p| p as u16)
                .filter(|p| *p != 0);
            let svc_port = port.get("port").and_then(Value::as_u64).unwrap_or(0);
            let proto = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string();
            let np = match requested {
                Some(p) if old_node_ports.contains(&p) => p,
                Some(p) => {
                    let p = alloc.allocate_port(Some(p)).await.map_err(|e| {
                        (format!("spec.ports[{i}].nodePort"), Some(p.to_string()), e)
                    })?;
                    claimed.port(p);
                    p
                }
                None => match old_ports
                    .iter()
                    .find(|(op, opr, _)| *op == svc_port && *opr == proto)
                {
                    Some((_, _, np)) => *np,
                    None => {
                        let p = alloc
                            .allocate_port(None)
                            .await
                            .map_err(|e| (format!("spec.ports[{i}].nodePort"), None, e))?;
                        claimed.port(p);
                        p
                    }
                },
            };
            svc["spec"]["ports"][i]["nodePort"] = json!(np);
        }
    } else if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
    Ok(())
}

/// After a Service update or delete: gives back what the old version held and the new one
/// (if any) does not.
async fn release_diff(alloc: &Allocator, old: &Value, new: Option<&Value>) {
    let old_ip = cluster_ip(old);
    let new_ip = new.and_then(cluster_ip);
    if let Some(ip) = old_ip
        && Some(ip) != new_ip
    {
        alloc.release_ip(ip).await;
    }
    let keep = new.map(node_ports).unwrap_or_default();
    for p in node_ports(old) {
        if !keep.contains(&p) {
            alloc.release_port(p).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};
    use skiff_api::{ResourceInfo, resources};
    use skiff_store::{EmbeddedStore, Store};

    use super::ServiceHooks;
    use crate::alloc::Allocator;
    use crate::hooks::{Hooks, KindHooks};

    /// An allocator on a fresh embedded store: IPs from 10.96.0.0/24, ports 30000-30009.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        alloc: Allocator,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(&dir.path().join("state.redb")).unwrap());
            let alloc = Allocator::new(
                store.clone(),
                "10.96.0.0/24".parse().unwrap(),
                (30000, 30009),
            );
            Fixture {
                _dir: dir,
                store,
                alloc,
            }
        }

        /// What is claimed in the store: `clusterips/<ip>` and `nodeports/<port>`.
        async fn claimed(&self) -> Vec<String> {
            let prefix = "/registry/allocations/";
            let list = self.store.list(prefix, None, 0, None).await.unwrap();
            list.items
                .iter()
                .map(|kv| kv.key[prefix.len()..].to_string())
                .collect()
        }

        async fn create(&self, svc: &mut Value) -> Result<(), crate::error::ApiError> {
            let hooks = Hooks::of("", "services");
            let claims = hooks.before_create(&self.alloc, info(), "web", svc).await?;
            drop(claims);
            Ok(())
        }
    }

    fn info() -> &'static ResourceInfo {
        resources::find("", "v1", "services").unwrap()
    }

    /// A Service of type `ty`, with `cluster_ip` if given and one TCP port per entry of
    /// `ports` (the service port and the requested node port, if any).
    fn service(ty: &str, cluster_ip: Option<&str>, ports: &[(u16, Option<u16>)]) -> Value {
        let mut svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "type": ty, "ports": [] },
        });
        if let Some(ip) = cluster_ip {
            svc["spec"]["clusterIP"] = json!(ip);
        }
        for (port, node_port) in ports {
            let mut p = json!({ "port": port, "protocol": "TCP" });
            if let Some(np) = node_port {
                p["nodePort"] = json!(np);
            }
            svc["spec"]["ports"].as_array_mut().unwrap().push(p);
        }
        svc
    }

    fn cluster_ip(svc: &Value) -> &str {
        svc["spec"]["clusterIP"].as_str().unwrap()
    }

    fn node_port(svc: &Value, i: usize) -> Option<u64> {
        svc["spec"]["ports"][i]
            .get("nodePort")
            .and_then(Value::as_u64)
    }

    #[test]
    fn services_have_service_hooks() {
        assert!(matches!(Hooks::of("", "services"), Hooks::Service(_)));
        assert!(matches!(Hooks::for_resource(info()), Hooks::Service(_)));
        // Another group's "services" (a custom resource) is not a Service.
        assert!(matches!(
            Hooks::of("example.com", "services"),
            Hooks::None(_)
        ));
    }

    #[tokio::test]
    async fn cluster_ip_is_allocated_when_none_is_given() {
        let f = Fixture::new();
        let mut svc = service("ClusterIP", None, &[(80, None)]);
        f.create(&mut svc).await.unwrap();
        let ip = cluster_ip(&svc).to_string();
        let addr: std::net::Ipv4Addr = ip.parse().unwrap();
        assert!(
            "10.96.0.0/24"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&addr)
        );
        // The first address is the `kubernetes` Service's.
        assert_ne!(ip, "10.96.0.1");
        assert_eq!(svc["spec"]["clusterIPs"], json!([ip]));
        assert_eq!(node_port(&svc, 0), None);
        assert_eq!(f.claimed().await, vec![format!("clusterips/{ip}")]);
    }

    #[tokio::test]
    async fn requested_cluster_ip_is_given_once() {
        let f = Fixture::new();
        let mut svc = service("ClusterIP", Some("10.96.0.50"), &[(80, None)]);
        f.create(&mut svc).await.unwrap();
        assert_eq!(cluster_ip(&svc), "10.96.0.50");
        assert_eq!(svc["spec"]["clusterIPs"], json!(["10.96.0.50"]));
        assert_eq!(f.claimed().await, vec!["clusterips/10.96.0.50"]);

        let mut again = service("ClusterIP", Some("10.96.0.50"), &[(80, None)]);
        let e = f.create(&mut again).await.unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("provided IP is already allocated"),
            "{}",
            e.message
        );
        let mut outside = service("ClusterIP", Some("10.0.0.1"), &[(80, None)]);
        let e = f.create(&mut outside).await.unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("10.96.0.0/24"), "{}", e.message);
    }

    #[tokio::test]
    async fn headless_and_external_name_services_allocate_nothing() {
        let f = Fixture::new();
        let mut headless = service("ClusterIP", Some("None"), &[(80, None)]);
        f.create(&mut headless).await.unwrap();
        assert_eq!(cluster_ip(&headless), "None");
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));

        let mut external = service("ExternalName", None, &[]);
        f.create(&mut external).await.unwrap();
        assert_eq!(external["spec"].get("clusterIP"), None);

        assert!(f.claimed().await.is_empty());
    }

    #[tokio::test]
    async fn node_ports_for_node_port_and_load_balancer_types() {
        for ty in ["NodePort", "LoadBalancer"] {
            let f = Fixture::new();
            let mut svc = service(ty, None, &[(80, None), (443, Some(30005))]);
            f.create(&mut svc).await.unwrap();
            let first = node_port(&svc, 0).expect("a node port");
            assert!((30000..=30009).contains(&first), "{ty}: {first}");
            assert_eq!(node_port(&svc, 1), Some(30005), "{ty}");
            let claimed = f.claimed().await;
            assert!(claimed.contains(&format!("nodeports/{first}")), "{ty}");
            assert!(claimed.contains(&"nodeports/30005".to_string()), "{ty}");
            assert_eq!(claimed.len(), 3, "{ty}: {claimed:?}");
        }
    }

    #[tokio::test]
    async fn cluster_ip_type_drops_node_ports() {
        let f = Fixture::new();
        let mut svc = service("ClusterIP", None, &[(80, Some(30001))]);
        f.create(&mut svc).await.unwrap();
        assert_eq!(node_port(&svc, 0), None);
        assert_eq!(f.claimed().await.len(), 1);
    }

    #[tokio::test]
    async fn failed_allocation_gives_back_what_it_claimed() {
        let f = Fixture::new();
        // The IP and the first node port are claimed before the second port fails.
        let mut svc = service("NodePort", None, &[(80, None), (443, Some(31000))]);
        let e = f.create(&mut svc).await.unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("spec.ports[1].nodePort"),
            "{}",
            e.message
        );
        assert!(f.claimed().await.is_empty());
    }

    #[tokio::test]
    async fn update_keeps_cluster_ip_and_node_ports() {
        let f = Fixture::new();
        let mut old = service("NodePort", None, &[(80, None)]);
        f.create(&mut old).await.unwrap();
        let before = f.claimed().await;

        // A client that sends neither (e.g. a PUT of its manifest) keeps both.
        let mut new = service("NodePort", None, &[(80, None)]);
        let hooks = Hooks::of("", "services");
        hooks
            .before_update(&f.alloc, info(), "web", &mut new, &old)
            .await
            .unwrap();
        assert_eq!(cluster_ip(&new), cluster_ip(&old));
        assert_eq!(node_port(&new, 0), node_port(&old, 0));
        hooks.after_update(&f.alloc, &old, &new).await;
        assert_eq!(f.claimed().await, before);
    }

    #[tokio::test]
    async fn update_releases_what_the_new_version_does_not_hold() {
        let f = Fixture::new();
        let mut old = service("NodePort", None, &[(80, None)]);
        f.create(&mut old).await.unwrap();
        let ip = cluster_ip(&old).to_string();

        let mut new = service("ClusterIP", None, &[(80, None)]);
        let hooks = Hooks::of("", "services");
        hooks
            .before_update(&f.alloc, info(), "web", &mut new, &old)
            .await
            .unwrap();
        assert_eq!(node_port(&new, 0), None);
        hooks.after_update(&f.alloc, &old, &new).await;
        assert_eq!(f.claimed().await, vec![format!("clusterips/{ip}")]);

        // Headless now: the IP goes too.
        let mut headless = service("ClusterIP", Some("None"), &[(80, None)]);
        ServiceHooks
            .before_update(&f.alloc, info(), "web", &mut headless, &new)
            .await
            .unwrap();
        hooks.after_update(&f.alloc, &new, &headless).await;
        assert!(f.claimed().await.is_empty());
    }

    #[tokio::test]
    async fn delete_releases_cluster_ip_and_node_ports() {
        let f = Fixture::new();
        let mut svc = service("LoadBalancer", None, &[(80, None), (443, None)]);
        f.create(&mut svc).await.unwrap();
        assert_eq!(f.claimed().await.len(), 3);
        Hooks::of("", "services").after_delete(&f.alloc, &svc).await;
        assert!(f.claimed().await.is_empty());
    }
}
