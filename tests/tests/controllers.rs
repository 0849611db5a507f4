//! The real `skiff-controller-manager` against a real apiserver, driven by the real kubectl.
//! No kubelet runs: where a pod must be Ready, the test says so through `/status`, as a
//! kubelet would.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_e2e::fixtures::SEED_REPLICATION_CONTROLLER;
use skiff_e2e::{ApiServer, Backend, ControllerManager, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// Pods in `ns` matching `selector`: name → object.
fn pods(server: &ApiServer, ns: &str, selector: &str) -> Vec<Value> {
    let list = server.kubectl_json(&["get", "pods", "-n", ns, "-l", selector]);
    list["items"].as_array().cloned().unwrap_or_default()
}

fn names(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Marks a pod Running and Ready, as its kubelet would.
fn make_ready(server: &ApiServer, ns: &str, name: &str) {
    let http = server.http();
    let now = "2026-01-01T00:00:00Z";
    for _ in 0..5 {
        let mut pod = http
            .get(&format!("/api/v1/namespaces/{ns}/pods/{name}"))
            .json();
        if pod["kind"] != "Pod" {
            return;
        }
        pod["status"] = json!({
            "phase": "Running",
            "podIP": "10.244.9.9",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            ],
        });
        let r = http.put_json(&format!("/api/v1/namespaces/{ns}/pods/{name}/status"), &pod);
        if r.status == 200 || r.status == 404 {
            return;
        }
    }
    panic!("could not mark {ns}/{name} ready");
}

#[test]
fn replication_controller_keeps_three_pods_and_heals() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    server.kubectl_stdin_ok(&["apply", "-f", "-"], SEED_REPLICATION_CONTROLLER);

    let mut current = Vec::new();
    assert!(
        wait_until(WAIT, || {
            current = pods(&server, "default", "app=nginx");
            current.len() == 3
        }),
        "three pods: {:?}",
        names(&current)
    );
    for p in &current {
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicationController");
        assert_eq!(owner["name"], "nginx");
        assert_eq!(owner["controller"], true);
        make_ready(&server, "default", p["metadata"]["name"].as_str().unwrap());
    }
    assert!(
        wait_until(WAIT, || {
            let rc = server.kubectl_json(&["get", "rc", "nginx"]);
            rc["status"]["readyReplicas"] == 3 && rc["status"]["replicas"] == 3
        }),
        "status shows 3 ready: {}",
        server.kubectl_json(&["get", "rc", "nginx"])["status"]
    );
    let table = server.kubectl_ok(&["get", "rc", "nginx"]);
    assert!(table.contains("nginx   3         3         3"), "{table}");

    // Heal: delete one pod, a new one replaces it.
    let before = names(&current);
    let victim = before.iter().next().unwrap().clone();
    server.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    assert!(
        wait_until(WAIT, || {
            current = pods(&server, "default", "app=nginx");
            let now = names(&current);
            now.len() == 3 && !now.contains(&victim)
        }),
        "a replacement pod: {:?}",
        names(&current)
    );
    let events = server.kubectl_ok(&["describe", "rc", "nginx"]);
    assert!(events.contains("SuccessfulCreate"), "{events}");

    // Scale down removes pods, unready ones first.
    server.kubectl_ok(&["scale", "rc", "nginx", "--replicas=1"]);
    assert!(
        wait_until(WAIT, || pods(&server, "default", "app=nginx")
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .count()
            == 1),
        "scaled down to one"
    );
}

#[test]
fn replica_set_adopts_orphans_and_releases_pods_that_stop_matching() {
    let server = ApiServer::start(Backend::Embedded);
    // An orphan pod that the ReplicaSet will adopt instead of creating one more.
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\n  labels: {app: web}\nspec:\n  containers: [{name: c, image: busybox}]\n",
    );
    let _cm = ControllerManager::start(&server);
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    );
    let mut current = Vec::new();
    assert!(
        wait_until(WAIT, || {
            current = pods(&server, "default", "app=web");
            current.len() == 2
                && current
                    .iter()
                    .all(|p| p["metadata"]["ownerReferences"][0]["name"] == "web")
        }),
        "the orphan is adopted and one pod created: {current:?}"
    );
    assert!(names(&current).contains("orphan"));

    // Relabel the orphan: it is released and replaced.
    server.kubectl_ok(&["label", "pod", "orphan", "app=other", "--overwrite"]);
    assert!(
        wait_until(WAIT, || {
            let orphan = server.kubectl_json(&["get", "pod", "orphan"]);
            orphan["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(|r| r.is_empty())
                && pods(&server, "default", "app=web").len() == 2
        }),
        "released and replaced"
    );
}
