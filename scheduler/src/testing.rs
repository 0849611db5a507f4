//! Fixture builders for unit tests: `PodBuilder::new("p").cpu("500m").on_node("n1")`.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::podinfo::PodInfo;

pub struct PodBuilder {
    v: Value,
}

impl PodBuilder {
    pub fn new(name: &str) -> PodBuilder {
        PodBuilder {
            v: json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {}}}]}
            }),
        }
    }
    pub fn namespace(mut self, ns: &str) -> Self {
        self.v["metadata"]["namespace"] = json!(ns);
        self
    }
    pub fn cpu(mut self, q: &str) -> Self {
        self.v["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!(q);
        self
    }
    pub fn memory(mut self, q: &str) -> Self {
        self.v["spec"]["containers"][0]["resources"]["requests"]["memory"] = json!(q);
        self
    }
    pub fn request(mut self, name: &str, q: &str) -> Self {
        self.v["spec"]["containers"][0]["resources"]["requests"][name] = json!(q);
        self
    }
    pub fn priority(mut self, p: i32) -> Self {
        self.v["spec"]["priority"] = json!(p);
        self
    }
    pub fn on_node(mut self, node: &str) -> Self {
        self.v["spec"]["nodeName"] = json!(node);
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.v["metadata"]["labels"][k] = json!(v);
        self
    }
    pub fn owner(mut self, uid: &str) -> Self {
        self.v["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true
        }]);
        self
    }
    pub fn host_port(mut self, port: i32) -> Self {
        self.v["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": port, "hostPort": port}]);
        self
    }
    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.v["spec"]["nodeSelector"][k] = json!(v);
        self
    }
    pub fn toleration(mut self, t: Value) -> Self {
        if !self.v["spec"]["tolerations"].is_array() {
            self.v["spec"]["tolerations"] = json!([]);
        }
        self.v["spec"]["tolerations"]
            .as_array_mut()
            .expect("array")
            .push(t);
        self
    }
    pub fn affinity(mut self, a: Value) -> Self {
        self.v["spec"]["affinity"] = a;
        self
    }
    pub fn spread(mut self, c: Value) -> Self {
        self.v["spec"]["topologySpreadConstraints"] = json!([c]);
        self
    }
    pub fn pod(self) -> Pod {
        serde_json::from_value(self.v).expect("a valid pod")
    }
    pub fn info(self) -> PodInfo {
        PodInfo::new(&self.pod())
    }
}
