//! Builders for the objects tests create, so a test says what matters about an object
//! (`deployment("web").replicas(2)`) instead of carrying a JSON blob.

use serde_json::{Map, Value, json};

/// The ReplicationController from the seed notes, verbatim.
pub const SEED_REPLICATION_CONTROLLER: &str = "\
apiVersion: v1
kind: ReplicationController
metadata:
  name: nginx
spec:
  replicas: 3
  selector:
    app: nginx
  template:
    metadata:
      name: nginx
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
";

/// Objects as one multi-document YAML file, as people write manifests.
pub fn yaml_documents(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("a JSON value is YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn labels(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// An `apps/v1` Deployment of one `nginx` container listening on port 80; its selector and
/// template carry `app: <name>`.
pub fn deployment(name: &str) -> DeploymentBuilder {
    DeploymentBuilder {
        name: name.into(),
        replicas: None,
        image: "nginx:1.25".into(),
        labels: Vec::new(),
        template_labels: vec![("app".into(), name.into())],
        selector: vec![("app".into(), name.into())],
    }
}

pub struct DeploymentBuilder {
    name: String,
    replicas: Option<i64>,
    image: String,
    labels: Vec<(String, String)>,
    template_labels: Vec<(String, String)>,
    selector: Vec<(String, String)>,
}

impl DeploymentBuilder {
    pub fn replicas(mut self, n: i64) -> Self {
        self.replicas = Some(n);
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.image = image.into();
        self
    }

    /// A label on the Deployment itself.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Replaces the pod template's labels (the selector stays `app: <name>`).
    pub fn template_labels(mut self, pairs: &[(&str, &str)]) -> Self {
        self.template_labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    pub fn build(self) -> Value {
        let mut spec = json!({
            "selector": {"matchLabels": labels(&self.selector)},
            "template": {
                "metadata": {"labels": labels(&self.template_labels)},
                "spec": {"containers": [{
                    "name": "nginx",
                    "image": self.image,
                    "ports": [{"containerPort": 80}],
                }]},
            },
        });
        if let Some(n) = self.replicas {
            spec["replicas"] = json!(n);
        }
        let mut metadata = json!({"name": self.name});
        if !self.labels.is_empty() {
            metadata["labels"] = labels(&self.labels);
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec})
    }
}

/// A ClusterIP Service selecting `app: <name>`, port 80 (no targetPort: the server defaults it).
pub fn service(name: &str) -> ServiceBuilder {
    ServiceBuilder {
        name: name.into(),
        port: 80,
        cluster_ip: None,
        node_port: None,
    }
}

pub struct ServiceBuilder {
    name: String,
    port: i64,
    cluster_ip: Option<String>,
    /// `Some(None)`: type NodePort, port allocated by the server.
    node_port: Option<Option<i64>>,
}

impl ServiceBuilder {
    pub fn port(mut self, port: i64) -> Self {
        self.port = port;
        self
    }

    /// Asks for this ClusterIP (`"None"` makes a headless Service).
    pub fn cluster_ip(mut self, ip: &str) -> Self {
        self.cluster_ip = Some(ip.into());
        self
    }

    /// Makes it a NodePort Service; `Some(port)` asks for that node port.
    pub fn node_port(mut self, port: Option<i64>) -> Self {
        self.node_port = Some(port);
        self
    }

    pub fn build(self) -> Value {
        let mut port = json!({"port": self.port});
        let mut spec = json!({"selector": {"app": self.name}});
        if let Some(node_port) = self.node_port {
            spec["type"] = json!("NodePort");
            if let Some(p) = node_port {
                port["nodePort"] = json!(p);
            }
        }
        spec["ports"] = json!([port]);
        if let Some(ip) = self.cluster_ip {
            spec["clusterIP"] = json!(ip);
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": self.name}, "spec": spec})
    }
}

/// A ConfigMap, empty unless given labels or data.
pub fn config_map(name: &str) -> ConfigMapBuilder {
    ConfigMapBuilder {
        name: name.into(),
        labels: Vec::new(),
        data: Vec::new(),
    }
}

pub struct ConfigMapBuilder {
    name: String,
    labels: Vec<(String, String)>,
    data: Vec<(String, String)>,
}

impl ConfigMapBuilder {
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    pub fn data(mut self, key: &str, value: &str) -> Self {
        self.data.push((key.into(), value.into()));
        self
    }

    pub fn build(self) -> Value {
        let mut metadata = json!({"name": self.name});
        if !self.labels.is_empty() {
            metadata["labels"] = labels(&self.labels);
        }
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata});
        if !self.data.is_empty() {
            cm["data"] = labels(&self.data);
        }
        cm
    }
}

/// A Pod of one `nginx` container, labelled `app: <name>`.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder {
        name: name.into(),
        image: "nginx:1.25".into(),
        node: None,
        pull_policy: None,
        edits: Vec::new(),
    }
}

type Edit = Box<dyn FnOnce(&mut Value)>;

pub struct PodBuilder {
    name: String,
    image: String,
    node: Option<String>,
    pull_policy: Option<String>,
    edits: Vec<Edit>,
}

impl PodBuilder {
    pub fn image(mut self, image: &str) -> Self {
        self.image = image.into();
        self
    }

    /// Binds the pod to `node` (`spec.nodeName`), as the scheduler would.
    pub fn on_node(mut self, node: &str) -> Self {
        self.node = Some(node.into());
        self
    }

    /// `Always`, `IfNotPresent` or `Never`.
    pub fn pull_policy(mut self, policy: &str) -> Self {
        self.pull_policy = Some(policy.into());
        self
    }

    fn edit(mut self, f: impl FnOnce(&mut Value) + 'static) -> Self {
        self.edits.push(Box::new(f));
        self
    }

    /// Requests `cpu` (e.g. `500m`) for the container.
    pub fn cpu(self, q: &str) -> Self {
        let q = q.to_string();
        self.edit(move |p| p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!(q))
    }

    /// Requests `memory` (e.g. `1Gi`) for the container.
    pub fn memory(self, q: &str) -> Self {
        let q = q.to_string();
        self.edit(move |p| p["spec"]["containers"][0]["resources"]["requests"]["memory"] = json!(q))
    }

    pub fn label(self, k: &str, v: &str) -> Self {
        let (k, v) = (k.to_string(), v.to_string());
        self.edit(move |p| p["metadata"]["labels"][k] = json!(v))
    }

    pub fn node_selector(self, k: &str, v: &str) -> Self {
        let (k, v) = (k.to_string(), v.to_string());
        self.edit(move |p| p["spec"]["nodeSelector"][k] = json!(v))
    }

    pub fn toleration(self, t: Value) -> Self {
        self.edit(move |p| {
            if !p["spec"]["tolerations"].is_array() {
                p["spec"]["tolerations"] = json!([]);
            }
            if let Some(a) = p["spec"]["tolerations"].as_array_mut() {
                a.push(t);
            }
        })
    }

    /// `spec.affinity`.
    pub fn affinity(self, a: Value) -> Self {
        self.edit(move |p| p["spec"]["affinity"] = a)
    }

    /// A controller ownerReference (a ReplicaSet with this uid).
    pub fn owner(self, uid: &str) -> Self {
        let uid = uid.to_string();
        self.edit(move |p| {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "owner", "uid": uid, "controller": true}])
        })
    }

    pub fn scheduler_name(self, name: &str) -> Self {
        let name = name.to_string();
        self.edit(move |p| p["spec"]["schedulerName"] = json!(name))
    }

    pub fn build(self) -> Value {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "labels": {"app": self.name}},
            "spec": {"containers": [{"name": "nginx", "image": self.image}]},
        });
        if let Some(node) = self.node {
            pod["spec"]["nodeName"] = json!(node);
        }
        if let Some(policy) = self.pull_policy {
            pod["spec"]["containers"][0]["imagePullPolicy"] = json!(policy);
        }
        for edit in self.edits {
            edit(&mut pod);
        }
        pod
    }
}
