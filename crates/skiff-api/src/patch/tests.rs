use serde_json::{Value, json};

use super::*;
use crate::resources::find;

fn info(group: &str, plural: &str) -> &'static ResourceInfo {
    find(group, "v1", plural).unwrap()
}

/// (name, resource, original, patch, expected result)
type Case = (&'static str, &'static ResourceInfo, Value, Value, Value);

#[test]
fn strategic_merge_cases() {
    let pods = info("", "pods");
    let deploy = info("apps", "deployments");
    let svc = info("", "services");
    let nodes = info("", "nodes");
    let cases: Vec<Case> = vec![
        (
            "maps merge recursively and null deletes",
            pods,
            json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"b": null, "c": "3"}}}),
            json!({"metadata": {"name": "p", "labels": {"a": "1", "c": "3"}}}),
        ),
        (
            "containers merge by name, keeping key order",
            pods,
            json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
            json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}}),
        ),
        (
            // Upstream puts patch items not in the original first (see the kubectl patch
            // tutorial: the added patch-demo-ctr-2 is listed before patch-demo-ctr).
            "a new container comes before the server-only ones",
            pods,
            json!({"spec": {"containers": [{"name": "a", "image": "a"}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "c"}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]}}),
        ),
        (
            "$patch: delete removes a container",
            pods,
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            json!({"spec": {"containers": [{"name": "b"}]}}),
        ),
        (
            "$patch: replace on a list",
            pods,
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}}),
            json!({"spec": {"containers": [{"name": "z"}]}}),
        ),
        (
            "$patch: replace on a map",
            pods,
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            json!({"metadata": {"labels": {"c": "3"}}}),
        ),
        (
            "$patch: delete on a map empties it",
            pods,
            json!({"metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            json!({"metadata": {"labels": {}}}),
        ),
        (
            "container ports by containerPort, env by name, volumeMounts by mountPath",
            deploy,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                "volumeMounts": [{"name": "v", "mountPath": "/a"}]}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a",
                "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
                "env": [{"name": "Y", "value": "3"}],
                "volumeMounts": [{"mountPath": "/a", "readOnly": true}]}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a",
                "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}],
                "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}],
                "volumeMounts": [{"name": "v", "mountPath": "/a", "readOnly": true}]}]}}}}),
        ),
        (
            "lists without a strategy are replaced (tolerations, args)",
            pods,
            json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "a", "args": ["x", "y"]}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["z"]}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["z"]}]}}),
        ),
        (
            "service ports merge by port",
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
            json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}, {"port": 443}]}}),
        ),
        (
            "status conditions merge by type",
            nodes,
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}]}}),
        ),
        (
            "finalizers merge as a set; $deleteFromPrimitiveList removes",
            pods,
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"finalizers": ["c", "a"]}}),
        ),
        (
            "ownerReferences merge by uid",
            pods,
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}]}}),
        ),
        (
            "$retainKeys clears the other keys (deployment strategy to Recreate)",
            deploy,
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        ),
        (
            "a scalar replaces a map and vice versa",
            pods,
            json!({"spec": {"x": {"a": 1}, "y": 2}}),
            json!({"spec": {"x": 3, "y": {"b": 1}}}),
            json!({"spec": {"x": 3, "y": {"b": 1}}}),
        ),
        (
            "new subtrees lose nulls and directives",
            pods,
            json!({}),
            json!({"metadata": {"labels": {"a": "1", "b": null}}}),
            json!({"metadata": {"labels": {"a": "1"}}}),
        ),
        (
            // What `kubectl apply` sends when a container's image changes.
            "kubectl apply: $setElementOrder keeps order, image changes",
            deploy,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent"},
                {"name": "sidecar", "image": "busybox"}]}}}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"name": "web", "image": "nginx:1.26"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.26", "imagePullPolicy": "IfNotPresent"},
                {"name": "sidecar", "image": "busybox"}]}}}}),
        ),
        (
            "kubectl apply: a container added in front and one removed",
            deploy,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx"}, {"name": "old", "image": "x"}]}}}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "init"}, {"name": "web"}],
                "containers": [{"name": "init", "image": "busybox"}, {"name": "old", "$patch": "delete"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "init", "image": "busybox"}, {"name": "web", "image": "nginx"}]}}}}),
        ),
        (
            "kubectl apply: reorder only",
            deploy,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}}}),
        ),
        (
            "kubectl apply: env order and a server-only entry kept in place",
            deploy,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [
                {"name": "A", "value": "1"}, {"name": "SERVER", "value": "s"}, {"name": "B", "value": "2"}]}]}}}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a",
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                    "env": [{"name": "C", "value": "3"}]}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [
                {"name": "A", "value": "1"}, {"name": "SERVER", "value": "s"}, {"name": "B", "value": "2"},
                {"name": "C", "value": "3"}]}]}}}}),
        ),
        (
            "kubectl apply: primitive set order for finalizers",
            pods,
            json!({"metadata": {"finalizers": ["x", "y"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["y", "z"], "finalizers": ["z"]}}),
            json!({"metadata": {"finalizers": ["x", "y", "z"]}}),
        ),
        (
            "kubectl patch: scale and label in one patch",
            deploy,
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 1}}),
            json!({"spec": {"replicas": 3}, "metadata": {"labels": {"env": "prod"}}}),
            json!({"metadata": {"name": "d", "labels": {"env": "prod"}}, "spec": {"replicas": 3}, "status": {"replicas": 1}}),
        ),
    ];
    for (name, info, original, patch, want) in cases {
        let got =
            strategic_merge(info, &original, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
        // Key order is part of the result too (serde_json keeps insertion order).
        assert_eq!(got.to_string(), want.to_string(), "{name}: key order");
    }
}

#[test]
fn strategic_merge_errors() {
    let pods = info("", "pods");
    let cases: &[(&str, Value, Value)] = &[
        ("patch not an object", json!({}), json!([1])),
        (
            "merge key missing",
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"containers": [{"image": "x"}]}}),
        ),
        (
            "unknown directive",
            json!({"metadata": {}}),
            json!({"metadata": {"$patch": "explode"}}),
        ),
        (
            "retainKeys not covering the patch",
            json!({"spec": {"strategy": {}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        ),
    ];
    for (name, original, patch) in cases {
        assert!(strategic_merge(pods, original, patch).is_err(), "{name}");
    }
}

#[test]
fn list_strategies() {
    let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases: &[(&str, Vec<String>, &str, ListStrategy)] = &[
        (
            "Pod",
            p(&["spec"]),
            "containers",
            ListStrategy::MergeByKey("name"),
        ),
        (
            "Deployment",
            p(&["spec", "template", "spec"]),
            "initContainers",
            ListStrategy::MergeByKey("name"),
        ),
        (
            "Pod",
            p(&["spec", "containers"]),
            "ports",
            ListStrategy::MergeByKey("containerPort"),
        ),
        (
            "Service",
            p(&["spec"]),
            "ports",
            ListStrategy::MergeByKey("port"),
        ),
        ("EndpointSlice", p(&[]), "ports", ListStrategy::Replace),
        ("Pod", p(&["spec"]), "tolerations", ListStrategy::Replace),
        (
            "Pod",
            p(&["spec", "containers"]),
            "envFrom",
            ListStrategy::Replace,
        ),
        (
            "Pod",
            p(&["metadata"]),
            "finalizers",
            ListStrategy::MergePrimitives,
        ),
        (
            "Namespace",
            p(&["spec"]),
            "finalizers",
            ListStrategy::Replace,
        ),
        (
            "Pod",
            p(&["status"]),
            "conditions",
            ListStrategy::MergeByKey("type"),
        ),
        (
            "Pod",
            p(&["spec"]),
            "volumes",
            ListStrategy::MergeByKey("name"),
        ),
    ];
    for (kind, path, key, want) in cases {
        assert_eq!(
            list_strategy(kind, path, key),
            *want,
            "{kind} {path:?} {key}"
        );
    }
}
