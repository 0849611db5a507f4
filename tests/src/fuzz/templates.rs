//! A valid object of each kind the fuzzer knows, as the starting point of a request body:
//! mutations of a valid object reach the validation and storage code that random bytes never
//! get past. Kinds without a template get their type and metadata only.

use serde_json::{Value, json};

/// A valid `kind` in `api_version` named `name` in `namespace` (if any); `variant` picks
/// among the shapes some kinds have (a Service's type, a RoleBinding's subject kind).
pub fn object(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    variant: usize,
) -> Value {
    let mut metadata = json!({"name": name, "labels": {"app": "fuzz"}});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    let fields = fields(kind, variant);
    if let (Some(obj), Value::Object(fields)) = (obj.as_object_mut(), fields) {
        obj.extend(fields);
    }
    obj
}

fn pod_spec() -> Value {
    json!({"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}],
        "restartPolicy": "Always"})
}

fn pod_template() -> Value {
    json!({"metadata": {"labels": {"app": "fuzz"}}, "spec": pod_spec()})
}

fn fields(kind: &str, variant: usize) -> Value {
    let selector = json!({"matchLabels": {"app": "fuzz"}});
    match kind {
        "ConfigMap" => json!({"data": {"key": "value", "other": "x"}}),
        "Secret" => {
            json!({"type": "Opaque", "data": {"pw": "c2VjcmV0"}, "stringData": {"user": "fuzz"}})
        }
        "Service" => {
            let kinds = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
            let ty = kinds[variant % kinds.len()];
            let mut spec = json!({"type": ty, "selector": {"app": "fuzz"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]});
            if ty == "ExternalName" {
                spec["externalName"] = json!("example.invalid");
            }
            json!({"spec": spec})
        }
        "Pod" => json!({"spec": pod_spec()}),
        "Deployment" | "ReplicaSet" => {
            json!({"spec": {"replicas": 2, "selector": selector, "template": pod_template()}})
        }
        "StatefulSet" => json!({"spec": {"replicas": 1, "serviceName": "fuzz",
            "selector": selector, "template": pod_template()}}),
        "DaemonSet" => json!({"spec": {"selector": selector, "template": pod_template()}}),
        "ReplicationController" => json!({"spec": {"replicas": 1, "selector": {"app": "fuzz"},
            "template": pod_template()}}),
        "Job" => {
            let mut template = pod_template();
            template["spec"]["restartPolicy"] = json!("Never");
            json!({"spec": {"backoffLimit": 1, "template": template}})
        }
        "CronJob" => {
            let mut template = pod_template();
            template["spec"]["restartPolicy"] = json!("OnFailure");
            json!({"spec": {"schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": template}}}})
        }
        "Role" | "ClusterRole" => json!({"rules": [{"apiGroups": [""],
            "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        "RoleBinding" | "ClusterRoleBinding" => {
            let subject = match variant % 3 {
                0 => {
                    json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "fuzzer"})
                }
                1 => {
                    json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"})
                }
                _ => json!({"kind": "ServiceAccount", "name": "default", "namespace": "fuzz"}),
            };
            let role_kind = if kind == "RoleBinding" && variant.is_multiple_of(2) {
                "Role"
            } else {
                "ClusterRole"
            };
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                "name": "cluster-admin"}, "subjects": [subject]})
        }
        "Node" => json!({"spec": {"podCIDR": "10.244.9.0/24"},
            "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "110"}}}),
        "Event" => json!({"involvedObject": {"kind": "Pod", "name": "p", "namespace": "fuzz"},
            "reason": "Fuzzed", "message": "a fuzzed event", "type": "Normal",
            "firstTimestamp": "2026-01-01T00:00:00Z", "count": 1,
            "regarding": {"kind": "Pod", "name": "p"}, "reportingController": "fuzz/x",
            "reportingInstance": "i", "action": "Fuzz", "eventTime": "2026-01-01T00:00:00.000000Z"}),
        "Lease" => json!({"spec": {"holderIdentity": "fuzz", "leaseDurationSeconds": 15,
            "renewTime": "2026-01-01T00:00:00.000000Z"}}),
        "Endpoints" => json!({"subsets": [{"addresses": [{"ip": "10.0.0.7"}],
            "ports": [{"port": 80, "protocol": "TCP"}]}]}),
        "EndpointSlice" => json!({"addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        "PersistentVolumeClaim" => json!({"spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}),
        "PersistentVolume" => json!({"spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/fuzz"}}}),
        "HorizontalPodAutoscaler" => json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1",
            "kind": "Deployment", "name": "fz-a"}, "minReplicas": 1, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}]}}),
        "PodDisruptionBudget" => json!({"spec": {"minAvailable": 1, "selector": selector}}),
        "NetworkPolicy" => json!({"spec": {"podSelector": selector, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}),
        "Ingress" => json!({"spec": {"rules": [{"host": "fuzz.example", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "fz-a", "port": {"number": 80}}}}]}}]}}),
        "IngressClass" => json!({"spec": {"controller": "example.com/fuzz"}}),
        "PriorityClass" => json!({"value": 1000, "globalDefault": false}),
        "StorageClass" => json!({"provisioner": "example.com/fuzz", "reclaimPolicy": "Delete"}),
        "ResourceQuota" => json!({"spec": {"hard": {"pods": "10", "requests.cpu": "4"}}}),
        "LimitRange" => json!({"spec": {"limits": [{"type": "Container",
            "default": {"cpu": "200m"}, "defaultRequest": {"cpu": "100m"}}]}}),
        "CertificateSigningRequest" => {
            json!({"spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
            "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}})
        }
        "TokenReview" => json!({"spec": {"token": "not-a-token", "audiences": ["api"]}}),
        "SubjectAccessReview" | "LocalSubjectAccessReview" => json!({"spec": {"user": "fuzzer",
            "resourceAttributes": {"namespace": "guarded", "verb": "delete", "resource": "secrets"}}}),
        "SelfSubjectAccessReview" => json!({"spec": {"resourceAttributes": {"namespace": "guarded",
            "verb": "update", "resource": "configmaps"}}}),
        "SelfSubjectRulesReview" => json!({"spec": {"namespace": "guarded"}}),
        "CustomResourceDefinition" => json!({"spec": {"group": "fuzz.example.com",
            "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
            "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        "Binding" => json!({"target": {"apiVersion": "v1", "kind": "Node", "name": "fuzz-node"}}),
        "Eviction" => json!({"deleteOptions": {"gracePeriodSeconds": 0}}),
        "TokenRequest" => json!({"spec": {"audiences": ["api"], "expirationSeconds": 600}}),
        "Scale" => json!({"spec": {"replicas": 3}}),
        _ => json!({}),
    }
}
