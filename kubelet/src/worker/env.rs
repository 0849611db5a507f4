//! A container's environment as Kubernetes builds it: the Service env vars (with
//! `enableServiceLinks`), `envFrom` (configMap, secret, with prefixes), then `env` entries
//! with literal values or `valueFrom` (configMapKeyRef, secretKeyRef, fieldRef,
//! resourceFieldRef).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVarSource};

use super::Worker;
use super::container::{quantity_bytes, quantity_millis};

impl Worker {
    /// The container's env, in order: later entries override earlier ones with the same name.
    pub(super) async fn container_env(
        &self,
        c: &Container,
    ) -> Result<Vec<(String, String)>, String> {
        let mut env = Vec::new();
        if self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true)
        {
            env.extend(self.service_env().await);
        }
        // envFrom first: explicit env entries override what it brings.
        for ef in c.env_from.iter().flatten() {
            let prefix = ef.prefix.clone().unwrap_or_default();
            let data = if let Some(r) = &ef.config_map_ref {
                match self.config_map_data(&r.name).await {
                    Ok(d) => d,
                    Err(_) if r.optional == Some(true) => BTreeMap::new(),
                    Err(e) => return Err(e),
                }
            } else if let Some(r) = &ef.secret_ref {
                match self.secret_data(&r.name).await {
                    Ok(d) => d,
                    Err(_) if r.optional == Some(true) => BTreeMap::new(),
                    Err(e) => return Err(e),
                }
            } else {
                BTreeMap::new()
            };
            for (k, v) in data {
                env.push((
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            }
        }
        for e in c.env.iter().flatten() {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => self.env_from_source_for(from, c).await?,
                (None, None) => String::new(),
            };
            env.push((e.name.clone(), value));
        }
        Ok(env)
    }

    /// `<NAME>_SERVICE_HOST` / `_PORT` (and the docker-link style `<NAME>_PORT_...`) for the
    /// Services of the pod's namespace and the `kubernetes` Service, as they exist now.
    async fn service_env(&self) -> Vec<(String, String)> {
        let mut services = Vec::new();
        for ns in [self.namespace(), "default"] {
            if let Ok(list) = self.ctx.api.services(ns).await {
                services.extend(list.into_iter().filter(|s| {
                    ns == self.namespace() || s.metadata.name.as_deref() == Some("kubernetes")
                }));
            }
            if ns == "default" || self.namespace() == "default" {
                break;
            }
        }
        let mut env = Vec::new();
        for svc in services {
            let Some(spec) = svc.spec else { continue };
            let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
                continue;
            };
            let name = svc
                .metadata
                .name
                .unwrap_or_default()
                .to_uppercase()
                .replace('-', "_");
            let ports = spec.ports.unwrap_or_default();
            let Some(first) = ports.first() else { continue };
            env.push((format!("{name}_SERVICE_HOST"), ip.clone()));
            env.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
            env.push((
                format!("{name}_PORT"),
                format!(
                    "{}://{ip}:{}",
                    first
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into())
                        .to_lowercase(),
                    first.port
                ),
            ));
            for p in &ports {
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                    env.push((
                        format!(
                            "{name}_SERVICE_PORT_{}",
                            pn.to_uppercase().replace('-', "_")
                        ),
                        p.port.to_string(),
                    ));
                }
                let prefix = format!("{name}_PORT_{}_{}", p.port, proto);
                env.push((
                    prefix.clone(),
                    format!("{}://{ip}:{}", proto.to_lowercase(), p.port),
                ));
                env.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
                env.push((format!("{prefix}_PORT"), p.port.to_string()));
                env.push((format!("{prefix}_ADDR"), ip.clone()));
            }
        }
        env
    }

    /// A `valueFrom` for container `c` (resourceFieldRef reads `c`'s own resources unless
    /// it names another container).
    pub(super) async fn env_from_source_for(
        &self,
        from: &EnvVarSource,
        c: &Container,
    ) -> Result<String, String> {
        if let Some(r) = &from.resource_field_ref {
            let spec = self.pod.spec.clone().unwrap_or_default();
            let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                Some(n) => spec
                    .containers
                    .iter()
                    .find(|x| x.name == n)
                    .cloned()
                    .ok_or_else(|| format!("container {n:?} not found"))?,
                None => c.clone(),
            };
            let res = target.resources.clone().unwrap_or_default();
            let (map, key) = match r.resource.split_once('.') {
                Some(("limits", k)) => (res.limits, k),
                Some(("requests", k)) => (res.requests, k),
                _ => return Err(format!("unsupported resourceFieldRef {:?}", r.resource)),
            };
            let q = map.and_then(|m| m.get(key).map(|q| q.0.clone()));
            let divisor = r
                .divisor
                .as_ref()
                .map(|d| d.0.clone())
                .unwrap_or_else(|| "1".into());
            return Ok(match key {
                "cpu" => {
                    // Unset limits fall back to the node's capacity, as Kubernetes does.
                    let millis = q
                        .as_deref()
                        .and_then(quantity_millis)
                        .unwrap_or(crate::sysinfo::cpus() as u64 * 1000);
                    let div = quantity_millis(&divisor).unwrap_or(1000).max(1);
                    millis.div_ceil(div).to_string()
                }
                _ => {
                    let bytes = q
                        .as_deref()
                        .and_then(quantity_bytes)
                        .unwrap_or(crate::sysinfo::memory_kib() as i64 * 1024);
                    let div = quantity_bytes(&divisor).unwrap_or(1).max(1);
                    ((bytes + div - 1) / div).to_string()
                }
            });
        }
        self.env_from_source(from).await
    }

    async fn env_from_source(&self, from: &EnvVarSource) -> Result<String, String> {
        if let Some(f) = &from.field_ref {
            let pod = &self.pod;
            return Ok(match f.field_path.as_str() {
                "metadata.name" => self.name().to_string(),
                "metadata.namespace" => self.namespace().to_string(),
                "metadata.uid" => self.uid().to_string(),
                "spec.nodeName" => self.ctx.node_name.clone(),
                "spec.serviceAccountName" => pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_default(),
                "status.hostIP" => self.ctx.node_ip.to_string(),
                "status.podIP" => self.sandbox.ip().unwrap_or_default(),
                other => {
                    if let Some(key) = other
                        .strip_prefix("metadata.labels['")
                        .and_then(|k| k.strip_suffix("']"))
                    {
                        pod.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(key).cloned())
                            .unwrap_or_default()
                    } else if let Some(key) = other
                        .strip_prefix("metadata.annotations['")
                        .and_then(|k| k.strip_suffix("']"))
                    {
                        pod.metadata
                            .annotations
                            .as_ref()
                            .and_then(|l| l.get(key).cloned())
                            .unwrap_or_default()
                    } else {
                        return Err(format!("unsupported fieldRef {other:?}"));
                    }
                }
            });
        }
        if let Some(r) = &from.config_map_key_ref {
            let cm = self
                .ctx
                .api
                .config_map(self.namespace(), &r.name)
                .await
                .map_err(|e| format!("configmap {:?} not found: {e}", r.name))?;
            return cm.data.and_then(|d| d.get(&r.key).cloned()).ok_or_else(|| {
                format!(
                    "couldn't find key {} in ConfigMap {}/{}",
                    r.key,
                    self.namespace(),
                    r.name
                )
            });
        }
        if let Some(r) = &from.secret_key_ref {
            let s = self
                .ctx
                .api
                .secret(self.namespace(), &r.name)
                .await
                .map_err(|e| format!("secret {:?} not found: {e}", r.name))?;
            return s
                .data
                .and_then(|d| {
                    d.get(&r.key)
                        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                })
                .ok_or_else(|| {
                    format!(
                        "couldn't find key {} in Secret {}/{}",
                        r.key,
                        self.namespace(),
                        r.name
                    )
                });
        }
        Err("unsupported env valueFrom".into())
    }
}
