//! Where a Service may steer traffic: `DenyServiceExternalIPs` (Kubernetes' plugin of that
//! name, on by default in Skiff) refuses new `spec.externalIPs`, and, when it is disabled,
//! no external IP may be a Node's address or the apiserver's own, nor may a load balancer's
//! ingress IP be the apiserver's. Every node's proxy DNATs those addresses to the Service, so
//! a node's address at port 10250 would capture the apiserver's exec traffic, and the
//! apiserver's address without endpoints would REJECT every kubelet's heartbeat.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;
use skiff_api::{FieldError, ResourceInfo};

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;

/// Kubernetes' name for the plugin (`--disable-admission-plugins=DenyServiceExternalIPs`).
pub const PLUGIN_NAME: &str = "DenyServiceExternalIPs";

/// The plugin's settings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Refuse any new external IP (`DenyServiceExternalIPs` enabled).
    pub deny: bool,
    /// The addresses this apiserver serves on; never a Service's.
    pub apiserver_ips: BTreeSet<IpAddr>,
}

fn ips_at<'a>(obj: &'a Value, pointer: &str) -> Vec<&'a str> {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The node whose `status.addresses` hold `ip`, from the watch cache.
fn node_with_address(registry: &Registry, ip: IpAddr) -> Option<String> {
    let info = skiff_api::resources::find("", "v1", "nodes").expect("nodes are served");
    let cache = registry.cache.for_resource(info)?;
    let (nodes, _) = cache.snapshot(&info.storage_prefix());
    nodes.iter().find_map(|n| {
        let has = n
            .pointer("/status/addresses")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(|a| a.get("address")?.as_str()?.parse::<IpAddr>().ok())
            .any(|a| a == ip);
        has.then(|| super::name_of(n).to_string())
    })
}

impl Config {
    /// Admits a Service's spec (no subresource) or its status (`status`).
    pub fn admit(
        &self,
        registry: &Registry,
        info: &ResourceInfo,
        subresource: Option<&str>,
        new: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let name = super::name_of(new);
        match subresource {
            None => self.admit_spec(registry, info, name, new, old),
            Some("status") => self.admit_status(info, name, new, old),
            Some(_) => Ok(()),
        }
    }

    fn admit_spec(
        &self,
        registry: &Registry,
        info: &ResourceInfo,
        name: &str,
        new: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let before: BTreeSet<&str> = old
            .map(|o| ips_at(o, "/spec/externalIPs").into_iter().collect())
            .unwrap_or_default();
        // Addresses the Service already had stay: an unrelated update must not fail because
        // of them (as upstream's plugin admits a subset of the old list).
        let added: Vec<(usize, &str)> = ips_at(new, "/spec/externalIPs")
            .into_iter()
            .enumerate()
            .filter(|(_, ip)| !before.contains(ip))
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        if self.deny {
            return Err(super::forbidden(
                info,
                name,
                "Use of external IPs is denied by admission control",
            ));
        }
        let mut errors = Vec::new();
        for (i, text) in added {
            let Ok(ip) = text.parse::<IpAddr>() else {
                continue; // validation reports a malformed address
            };
            let field = format!("spec.externalIPs[{i}]");
            if self.apiserver_ips.contains(&ip) {
                errors.push(FieldError::invalid(
                    field,
                    &Value::from(text),
                    "may not be an address of the apiserver: every node would send the apiserver's traffic to this Service",
                ));
            } else if let Some(node) = node_with_address(registry, ip) {
                errors.push(FieldError::invalid(
                    field,
                    &Value::from(text),
                    format!(
                        "may not be an address of node {node:?}: every node would send traffic for it (the kubelet's too) to this Service"
                    ),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(info, name, &errors))
        }
    }

    /// A load balancer (Skiff's own publishes the nodes' addresses) may not publish the
    /// apiserver's address.
    fn admit_status(
        &self,
        info: &ResourceInfo,
        name: &str,
        new: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let ingress = |o: &Value| -> Vec<String> {
            o.pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.get("ip")?.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let before: BTreeSet<String> = old.map(ingress).unwrap_or_default().into_iter().collect();
        let errors: Vec<FieldError> = ingress(new)
            .iter()
            .enumerate()
            .filter(|(_, ip)| !before.contains(*ip))
            .filter(|(_, ip)| {
                ip.parse::<IpAddr>()
                    .is_ok_and(|ip| self.apiserver_ips.contains(&ip))
            })
            .map(|(i, ip)| {
                FieldError::invalid(
                    format!("status.loadBalancer.ingress[{i}].ip"),
                    &Value::from(ip.as_str()),
                    "may not be an address of the apiserver: every node would send the apiserver's traffic to this Service",
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(info, name, &errors))
        }
    }
}
