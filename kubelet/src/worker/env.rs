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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, PodSpec, ResourceFieldSelector, ResourceRequirements, Secret,
        SecretEnvSource, SecretKeySelector, Service, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;

    use super::super::testing::{Node, container, pod, pod_with};

    fn meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        }
    }

    fn value_from(source: EnvVarSource) -> Option<EnvVarSource> {
        Some(source)
    }

    fn var(name: &str, from: Option<EnvVarSource>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: from,
        }
    }

    fn field(path: &str) -> EnvVarSource {
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }
    }

    fn resource(resource: &str, divisor: Option<&str>) -> EnvVarSource {
        EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                resource: resource.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
                container_name: None,
            }),
            ..Default::default()
        }
    }

    fn service(namespace: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: meta(namespace, name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(String::from),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_sources(node: &Node) {
        node.api.add_config_map(ConfigMap {
            metadata: meta("default", "settings"),
            data: Some(BTreeMap::from([
                ("MODE".to_string(), "fast".to_string()),
                ("LEVEL".to_string(), "3".to_string()),
            ])),
            ..Default::default()
        });
        node.api.add_secret(Secret {
            metadata: meta("default", "creds"),
            data: Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Default::default()
        });
    }

    #[tokio::test]
    async fn env_from_literals_value_from_and_env_from_in_kubernetes_order() {
        let node = Node::new();
        with_sources(&node);
        let mut app = container("app", &["sleep", "infinity"]);
        app.env_from = Some(vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "settings".into(),
                    optional: None,
                }),
                prefix: Some("CFG_".into()),
                secret_ref: None,
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "creds".into(),
                    optional: None,
                }),
                ..Default::default()
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "absent".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        ]);
        app.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("1500m".into())),
                ("memory".to_string(), Quantity("64Mi".into())),
            ])),
            requests: Some(BTreeMap::from([(
                "cpu".to_string(),
                Quantity("250m".into()),
            )])),
            ..Default::default()
        });
        app.env = Some(vec![
            EnvVar {
                name: "LITERAL".into(),
                value: Some("plain".into()),
                value_from: None,
            },
            var(
                "FROM_CM",
                value_from(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "settings".into(),
                        key: "MODE".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            ),
            var(
                "FROM_SECRET",
                value_from(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            ),
            var("POD_NAME", value_from(field("metadata.name"))),
            var("POD_NAMESPACE", value_from(field("metadata.namespace"))),
            var("POD_UID", value_from(field("metadata.uid"))),
            var("NODE", value_from(field("spec.nodeName"))),
            var("HOST_IP", value_from(field("status.hostIP"))),
            var("POD_IP", value_from(field("status.podIP"))),
            var("APP", value_from(field("metadata.labels['app']"))),
            var("CPU_LIMIT", value_from(resource("limits.cpu", None))),
            var(
                "CPU_REQUEST_M",
                value_from(resource("requests.cpu", Some("1m"))),
            ),
            var(
                "MEM_LIMIT_MI",
                value_from(resource("limits.memory", Some("1Mi"))),
            ),
            var("EMPTY", None),
            // Explicit env overrides what envFrom brought (it comes later).
            EnvVar {
                name: "CFG_LEVEL".into(),
                value: Some("9".into()),
                value_from: None,
            },
        ]);
        let (w, _tx) = node.worker(pod_with(app.clone(), "Always"));
        let env = w.container_env(&app).await.unwrap();
        let expected: Vec<(String, String)> = [
            ("CFG_LEVEL", "3"),
            ("CFG_MODE", "fast"),
            ("password", "hunter2"),
            ("LITERAL", "plain"),
            ("FROM_CM", "fast"),
            ("FROM_SECRET", "hunter2"),
            ("POD_NAME", "web"),
            ("POD_NAMESPACE", "default"),
            ("POD_UID", "uid-web"),
            ("NODE", "node-1"),
            ("HOST_IP", "192.0.2.10"),
            // No sandbox yet, so no pod IP.
            ("POD_IP", ""),
            ("APP", "web"),
            // CPU rounds up to whole cores by default.
            ("CPU_LIMIT", "2"),
            ("CPU_REQUEST_M", "250"),
            ("MEM_LIMIT_MI", "64"),
            ("EMPTY", ""),
            ("CFG_LEVEL", "9"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
    }

    #[tokio::test]
    async fn missing_sources_are_errors_unless_optional() {
        let node = Node::new();
        with_sources(&node);
        let cases: [(EnvVarSource, &str); 4] = [
            (
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "settings".into(),
                        key: "NOPE".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
                "couldn't find key NOPE in ConfigMap default/settings",
            ),
            (
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "token".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
                "couldn't find key token in Secret default/creds",
            ),
            (
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "absent".into(),
                        key: "K".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
                "configmap \"absent\" not found: configmap default/absent not found",
            ),
            (
                field("spec.schedulerName"),
                "unsupported fieldRef \"spec.schedulerName\"",
            ),
        ];
        for (source, message) in cases {
            let mut app = container("app", &["true"]);
            app.env = Some(vec![var("X", Some(source))]);
            let (w, _tx) = node.worker(pod_with(app.clone(), "Always"));
            assert_eq!(w.container_env(&app).await, Err(message.to_string()));
        }
        let mut app = container("app", &["true"]);
        app.env_from = Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: "absent".into(),
                optional: None,
            }),
            ..Default::default()
        }]);
        let (w, _tx) = node.worker(pod_with(app.clone(), "Always"));
        assert_eq!(
            w.container_env(&app).await,
            Err("secret \"absent\" not found: secret default/absent not found".into())
        );
    }

    #[tokio::test]
    async fn service_env_vars_name_the_namespaces_services_and_kubernetes() {
        let node = Node::new();
        node.api.add_service(service(
            "default",
            "kubernetes",
            "10.96.0.1",
            &[(Some("https"), 443)],
        ));
        node.api
            .add_service(service("default", "other", "10.96.0.7", &[(None, 80)]));
        node.api.add_service(service(
            "shop",
            "db-main",
            "10.96.0.5",
            &[(Some("pg"), 5432), (None, 9187)],
        ));
        node.api
            .add_service(service("shop", "headless", "None", &[(None, 80)]));
        let app = container("app", &["true"]);
        let mut p = pod(PodSpec {
            containers: vec![app.clone()],
            ..Default::default()
        });
        p.metadata.namespace = Some("shop".into());
        let (w, _tx) = node.worker(p.clone());
        let env: BTreeMap<String, String> =
            w.container_env(&app).await.unwrap().into_iter().collect();
        let expected: BTreeMap<String, String> = [
            ("DB_MAIN_SERVICE_HOST", "10.96.0.5"),
            ("DB_MAIN_SERVICE_PORT", "5432"),
            ("DB_MAIN_SERVICE_PORT_PG", "5432"),
            ("DB_MAIN_PORT", "tcp://10.96.0.5:5432"),
            ("DB_MAIN_PORT_5432_TCP", "tcp://10.96.0.5:5432"),
            ("DB_MAIN_PORT_5432_TCP_PROTO", "tcp"),
            ("DB_MAIN_PORT_5432_TCP_PORT", "5432"),
            ("DB_MAIN_PORT_5432_TCP_ADDR", "10.96.0.5"),
            ("DB_MAIN_PORT_9187_TCP", "tcp://10.96.0.5:9187"),
            ("DB_MAIN_PORT_9187_TCP_PROTO", "tcp"),
            ("DB_MAIN_PORT_9187_TCP_PORT", "9187"),
            ("DB_MAIN_PORT_9187_TCP_ADDR", "10.96.0.5"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);

        // enableServiceLinks: false drops them all.
        p.spec.as_mut().unwrap().enable_service_links = Some(false);
        let (w, _tx) = node.worker(p);
        assert_eq!(w.container_env(&app).await, Ok(Vec::new()));
    }
}
