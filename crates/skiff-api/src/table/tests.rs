use serde_json::{Value, json};

use super::*;
use crate::resources::{all, find};

/// "Now" in the tests: 2024-01-01T01:00:00Z.
const NOW: i64 = 1_704_070_800;
const CREATED: &str = "2024-01-01T00:00:00Z";

fn info(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
    find(group, version, plural).unwrap()
}

#[test]
fn human_durations() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (300, "5m"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 2 * 60, "3h2m"),
        (5 * 3600, "5h"),
        (10 * 3600, "10h"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (3 * 86400, "3d"),
        (30 * 86400, "30d"),
        (2 * 365 * 86400 + 10 * 86400, "2y10d"),
        (5 * 365 * 86400, "5y"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(secs), want, "{secs}");
    }
}

#[test]
fn every_resource_has_matching_cells() {
    for r in all() {
        let cols = columns(r);
        assert_eq!(
            cols.iter().filter(|c| c.format == "name").count(),
            1,
            "{}",
            r.plural
        );
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": CREATED}});
        assert_eq!(cells(r, &obj, NOW).len(), cols.len(), "{}", r.plural);
    }
}

fn pod(status: Value) -> Value {
    json!({
        "metadata": {"name": "web", "creationTimestamp": CREATED},
        "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": status
    })
}

#[test]
fn pod_rows() {
    let pods = info("", "v1", "pods");
    let running = json!({"running": {}});
    let cases: Vec<(Value, Value)> = vec![
        (
            pod(json!({"phase": "Pending"})),
            json!([
                "web", "0/2", "Pending", "0", "60m", "<none>", "n1", "<none>", "<none>"
            ]),
        ),
        (
            pod(
                json!({"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": running},
                    {"name": "b", "ready": false, "restartCount": 0, "state": running}]}),
            ),
            json!([
                "web",
                "1/2",
                "Running",
                "0",
                "60m",
                "10.244.1.5",
                "n1",
                "<none>",
                "<none>"
            ]),
        ),
        (
            pod(json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:55:00Z"}}},
                {"name": "b", "ready": true, "restartCount": 0, "state": running}]})),
            json!([
                "web",
                "1/2",
                "CrashLoopBackOff",
                "3 (5m ago)",
                "60m",
                "<none>",
                "n1",
                "<none>",
                "<none>"
            ]),
        ),
        (
            pod(json!({"phase": "Pending", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}]})),
            json!([
                "web",
                "0/2",
                "ContainerCreating",
                "0",
                "60m",
                "<none>",
                "n1",
                "<none>",
                "<none>"
            ]),
        ),
        (
            pod(json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})),
            json!([
                "web",
                "0/2",
                "Completed",
                "0",
                "60m",
                "<none>",
                "n1",
                "<none>",
                "<none>"
            ]),
        ),
        (
            pod(json!({"phase": "Failed", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 2}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]})),
            json!([
                "web",
                "0/2",
                "ExitCode:2",
                "0",
                "60m",
                "<none>",
                "n1",
                "<none>",
                "<none>"
            ]),
        ),
        (
            {
                let mut p = pod(json!({"phase": "Running", "containerStatuses": [
                    {"name": "a", "ready": true, "state": running}, {"name": "b", "ready": true, "state": running}]}));
                p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:59:00Z");
                p
            },
            json!([
                "web",
                "2/2",
                "Terminating",
                "0",
                "60m",
                "<none>",
                "n1",
                "<none>",
                "<none>"
            ]),
        ),
        (
            {
                let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "init", "state": {"waiting": {"reason": "PodInitializing"}}}]}));
                p["spec"]["initContainers"] = json!([{"name": "init"}]);
                p
            },
            json!([
                "web", "0/2", "Init:0/1", "0", "60m", "<none>", "n1", "<none>", "<none>"
            ]),
        ),
        (
            {
                let mut p = pod(
                    json!({"phase": "Running", "conditions": [{"type": "gate", "status": "True"}]}),
                );
                p["spec"]["readinessGates"] =
                    json!([{"conditionType": "gate"}, {"conditionType": "other"}]);
                p
            },
            json!([
                "web", "0/2", "Running", "0", "60m", "<none>", "n1", "<none>", "1/2"
            ]),
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(Value::Array(cells(pods, &obj, NOW)), want, "{obj}");
    }
    let names: Vec<&str> = columns(pods).iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
}

#[test]
fn workload_and_other_rows() {
    let created = json!({"name": "x", "creationTimestamp": CREATED});
    let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}});
    let cases: Vec<(&ResourceInfo, Value, Value)> = vec![
        (
            info("apps", "v1", "deployments"),
            json!({"metadata": created, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "x"}}, "template": template},
                   "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
            json!(["x", "2/3", 3, 2, "60m", "web,log", "nginx,busybox", "app=x"]),
        ),
        (
            info("apps", "v1", "replicasets"),
            json!({"metadata": created, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x", "pod-template-hash": "abc"}}, "template": template},
                   "status": {"replicas": 2, "readyReplicas": 1}}),
            json!([
                "x",
                2,
                2,
                1,
                "60m",
                "web,log",
                "nginx,busybox",
                "app=x,pod-template-hash=abc"
            ]),
        ),
        (
            info("", "v1", "replicationcontrollers"),
            json!({"metadata": created, "spec": {"replicas": 1, "selector": {"app": "x"}, "template": template}, "status": {"replicas": 1}}),
            json!(["x", 1, 1, 0, "60m", "web,log", "nginx,busybox", "app=x"]),
        ),
        (
            info("", "v1", "services"),
            json!({"metadata": created, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                   "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], "selector": {"k8s-app": "dns"}}}),
            json!([
                "x",
                "ClusterIP",
                "10.96.0.10",
                "<none>",
                "53/UDP,53/TCP",
                "60m",
                "k8s-app=dns"
            ]),
        ),
        (
            info("", "v1", "services"),
            json!({"metadata": created, "spec": {"type": "NodePort", "clusterIP": "10.96.0.11", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}),
            json!([
                "x",
                "NodePort",
                "10.96.0.11",
                "<none>",
                "80:30080/TCP",
                "60m",
                "<none>"
            ]),
        ),
        (
            info("", "v1", "services"),
            json!({"metadata": created, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}]}}),
            json!([
                "x",
                "LoadBalancer",
                "10.96.0.12",
                "<pending>",
                "80:31000/TCP",
                "60m",
                "<none>"
            ]),
        ),
        (
            info("", "v1", "services"),
            json!({"metadata": created, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
            json!([
                "x",
                "ExternalName",
                "<none>",
                "example.com",
                "<none>",
                "60m",
                "<none>"
            ]),
        ),
        (
            info("", "v1", "namespaces"),
            json!({"metadata": created, "status": {"phase": "Active"}}),
            json!(["x", "Active", "60m"]),
        ),
        (
            info("", "v1", "nodes"),
            json!({"metadata": {"name": "n1", "creationTimestamp": CREATED, "labels": {"node-role.kubernetes.io/control-plane": ""}},
                   "spec": {"unschedulable": true},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                              "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "docker://20.10"}}}),
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane",
                "60m",
                "v1.33.0",
                "10.0.0.2",
                "<none>",
                "Debian",
                "6.1",
                "docker://20.10"
            ]),
        ),
        (
            info("", "v1", "nodes"),
            json!({"metadata": {"name": "n2", "creationTimestamp": CREATED}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            json!([
                "n2",
                "NotReady",
                "<none>",
                "60m",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]),
        ),
        (
            info("", "v1", "configmaps"),
            json!({"metadata": created, "data": {"a": "1", "b": "2"}}),
            json!(["x", 2, "60m"]),
        ),
        (
            info("", "v1", "secrets"),
            json!({"metadata": created, "type": "Opaque", "data": {"a": "MQ=="}}),
            json!(["x", "Opaque", 1, "60m"]),
        ),
        (
            info("", "v1", "endpoints"),
            json!({"metadata": created, "subsets": [{"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}], "ports": [{"port": 80}, {"port": 443}]}]}),
            json!([
                "x",
                "10.244.1.2:80,10.244.2.2:80,10.244.1.2:443 + 1 more...",
                "60m"
            ]),
        ),
        (
            info("", "v1", "endpoints"),
            json!({"metadata": created}),
            json!(["x", "<none>", "60m"]),
        ),
        (
            info("", "v1", "events"),
            json!({"metadata": {"name": "web.1"}, "type": "Normal", "reason": "Scheduled", "message": " Assigned ",
                   "involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "default-scheduler"},
                   "firstTimestamp": "2024-01-01T00:50:00Z", "lastTimestamp": "2024-01-01T00:58:00Z", "count": 2}),
            json!([
                "2m",
                "Normal",
                "Scheduled",
                "pod/web",
                "",
                "default-scheduler",
                "Assigned",
                "10m",
                "2",
                "web.1"
            ]),
        ),
        (
            info("apps", "v1", "daemonsets"),
            json!({"metadata": created, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "c", "image": "i"}]}}},
                   "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}}),
            json!([
                "x",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "60m",
                "c",
                "i",
                "app=x"
            ]),
        ),
        (
            info("apps", "v1", "statefulsets"),
            json!({"metadata": created, "spec": {"replicas": 3, "template": template}, "status": {"readyReplicas": 1}}),
            json!(["x", "1/3", "60m", "web,log", "nginx,busybox"]),
        ),
        (
            info("batch", "v1", "jobs"),
            json!({"metadata": created, "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}, "template": template},
                   "status": {"succeeded": 1, "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:05Z",
                              "conditions": [{"type": "Complete", "status": "True"}]}}),
            json!([
                "x",
                "Complete",
                "1/1",
                "5s",
                "60m",
                "web,log",
                "nginx,busybox",
                "batch.kubernetes.io/controller-uid=u"
            ]),
        ),
        (
            info("batch", "v1", "jobs"),
            json!({"metadata": created, "spec": {"parallelism": 2}, "status": {"startTime": "2024-01-01T00:30:00Z"}}),
            json!(["x", "Running", "0/1 of 2", "30m", "60m", "", "", ""]),
        ),
        (
            info("autoscaling", "v2", "horizontalpodautoscalers"),
            json!({"metadata": created, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                   "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
                   "status": {"currentReplicas": 2}}),
            json!([
                "x",
                "Deployment/web",
                "cpu: <unknown>/50%",
                "1",
                5,
                2,
                "60m"
            ]),
        ),
        (
            info("autoscaling", "v1", "horizontalpodautoscalers"),
            json!({"apiVersion": "autoscaling/v1", "metadata": created,
                   "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80},
                   "status": {"currentReplicas": 1, "currentCPUUtilizationPercentage": 12}}),
            json!([
                "x",
                "Deployment/web",
                "cpu: 12%/80%",
                "<unset>",
                5,
                1,
                "60m"
            ]),
        ),
        (
            info("coordination.k8s.io", "v1", "leases"),
            json!({"metadata": created, "spec": {"holderIdentity": "n1"}}),
            json!(["x", "n1", "60m"]),
        ),
        (
            info("networking.k8s.io", "v1", "ingresses"),
            json!({"metadata": created, "spec": {"rules": [{"host": "a.example"}, {"host": "b.example"}], "tls": [{}]}}),
            json!(["x", "<none>", "a.example,b.example", "", "80, 443", "60m"]),
        ),
        (
            info("discovery.k8s.io", "v1", "endpointslices"),
            json!({"metadata": created, "addressType": "IPv4", "ports": [{"port": 80}],
                   "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}),
            json!(["x", "IPv4", "80", "10.0.0.1,10.0.0.2", "60m"]),
        ),
        (
            info("apps", "v1", "controllerrevisions"),
            json!({"metadata": {"name": "x", "creationTimestamp": CREATED,
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true}]},
                   "revision": 2}),
            json!(["x", "daemonset.apps/ds", 2, "60m"]),
        ),
        (
            info("rbac.authorization.k8s.io", "v1", "clusterroles"),
            json!({"metadata": created}),
            json!(["x", CREATED]),
        ),
        (
            info("rbac.authorization.k8s.io", "v1", "rolebindings"),
            json!({"metadata": created, "roleRef": {"kind": "ClusterRole", "name": "edit"},
                   "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]}),
            json!(["x", "ClusterRole/edit", "60m", "jane", "", "ns/sa"]),
        ),
        (
            info("", "v1", "serviceaccounts"),
            json!({"metadata": created}),
            json!(["x", 0, "60m"]),
        ),
        (
            info("", "v1", "pods"),
            json!({"metadata": {"name": "x"}}),
            json!([
                "x",
                "0/0",
                "",
                "0",
                "<unknown>",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
    ];
    for (r, obj, want) in cases {
        assert_eq!(
            Value::Array(cells(r, &obj, NOW)),
            want,
            "{}: {obj}",
            r.plural
        );
    }
}

#[test]
fn cronjob_and_storage_cells() {
    let cj = json!({
        "metadata": {"name": "hello", "creationTimestamp": CREATED},
        "spec": {"schedule": "*/1 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2024-01-01T00:59:00Z"}
    });
    assert_eq!(
        cells(info("batch", "v1", "cronjobs"), &cj, NOW),
        [
            json!("hello"),
            json!("*/1 * * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("60s"),
            json!("60m"),
            json!("c"),
            json!("busybox"),
            json!("<none>"),
        ]
    );
    let pv = json!({
        "metadata": {"name": "pv1", "creationTimestamp": CREATED},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual", "volumeMode": "Filesystem", "claimRef": {"namespace": "default", "name": "data"}},
        "status": {"phase": "Bound"}
    });
    assert_eq!(
        cells(info("", "v1", "persistentvolumes"), &pv, NOW),
        [
            json!("pv1"),
            json!("1Gi"),
            json!("RWO,RWX"),
            json!("Retain"),
            json!("Bound"),
            json!("default/data"),
            json!("manual"),
            json!("<unset>"),
            json!(""),
            json!("60m"),
            json!("Filesystem"),
        ]
    );
    let pvc = json!({
        "metadata": {"name": "data", "creationTimestamp": CREATED},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "manual", "volumeMode": "Filesystem"},
        "status": {"phase": "Pending"}
    });
    let row = cells(info("", "v1", "persistentvolumeclaims"), &pvc, NOW);
    assert_eq!(
        row[..6],
        [
            json!("data"),
            json!("Pending"),
            json!(""),
            json!(""),
            json!(""),
            json!("manual")
        ]
    );
    let sc = json!({
        "metadata": {"name": "local-path", "creationTimestamp": CREATED, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"
    });
    assert_eq!(
        cells(info("storage.k8s.io", "v1", "storageclasses"), &sc, NOW),
        [
            json!("local-path (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false),
            json!("60m"),
        ]
    );
    let quota = json!({
        "metadata": {"name": "q", "creationTimestamp": CREATED},
        "status": {"hard": {"pods": "2", "limits.cpu": "2", "requests.cpu": "1"}, "used": {"pods": "1"}}
    });
    assert_eq!(
        cells(info("", "v1", "resourcequotas"), &quota, NOW),
        [
            json!("q"),
            json!("60m"),
            json!("pods: 1/2, requests.cpu: 0/1"),
            json!("limits.cpu: 0/2"),
        ]
    );
    let pdb = json!({"metadata": {"name": "web", "creationTimestamp": CREATED}, "spec": {"maxUnavailable": "25%"}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        cells(info("policy", "v1", "poddisruptionbudgets"), &pdb, NOW),
        [
            json!("web"),
            json!("N/A"),
            json!("25%"),
            json!(1),
            json!("60m")
        ]
    );
}
