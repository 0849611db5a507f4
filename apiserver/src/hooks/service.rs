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
        for i in 0..n {
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
