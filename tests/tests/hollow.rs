//! Hollow nodes: `skiff-kubelet --runtime fake`, as kubemark runs them for scale tests. They
//! register Ready Nodes, renew their heartbeat Leases, and "run" the pods bound to them — with
//! IPs from their own pod subnets — without touching Docker.
//!
//! Pod subnets here are 10.200.X.0/24 (the fake runtime's networks live in memory, but the
//! Docker kubelet tests' 10.244.201–205 are kept clear anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use skiff_e2e::fixtures::pod;
use skiff_e2e::{ApiServer, Backend, Kubelet, wait_until};

const NODES: usize = 5;
/// Leases are renewed every 10 s; two renewals need 20 s, plus slack for a busy machine.
const LEASE_WAIT: Duration = Duration::from_secs(60);

fn node(i: usize) -> String {
    format!("hollow-{i}")
}

fn subnet(i: usize) -> String {
    format!("10.200.{i}.")
}

fn is_ready(status: &Value) -> bool {
    status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[test]
fn five_hollow_nodes_register_renew_their_leases_and_run_a_pod() {
    let server = ApiServer::start(Backend::Embedded);
    let _kubelets: Vec<Kubelet> = (1..=NODES)
        .map(|i| Kubelet::start_fake(&server, &node(i), &format!("{}0/24", subnet(i))))
        .collect();
    let http = server.http();

    let nodes = http.get("/api/v1/nodes").json();
    let ready: BTreeSet<&str> = nodes["items"]
        .as_array()
        .expect("a node list")
        .iter()
        .filter(|n| is_ready(&n["status"]))
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    let want: BTreeSet<String> = (1..=NODES).map(node).collect();
    assert_eq!(
        ready,
        want.iter().map(String::as_str).collect(),
        "Ready nodes"
    );

    // A pod bound to hollow-3 runs there, with an IP from hollow-3's subnet. The fake
    // runtime's pulls succeed, so IfNotPresent fetches the (imaginary) image.
    let created = http.post_json(
        "/api/v1/namespaces/default/pods",
        &pod("on-hollow")
            .image("skiff-test/fake:1")
            .pull_policy("IfNotPresent")
            .on_node(&node(3))
            .build(),
    );
    assert_eq!(created.status, 201, "create the pod: {}", created.body);
    let mut last = Value::Null;
    let running = wait_until(Duration::from_secs(60), || {
        last = http.get("/api/v1/namespaces/default/pods/on-hollow").json();
        last["status"]["phase"] == "Running" && last["status"]["podIP"].is_string()
    });
    assert!(
        running,
        "the pod did not run on the hollow node; status:\n{:#}",
        last["status"]
    );
    let ip = last["status"]["podIP"].as_str().unwrap_or_default();
    assert!(
        ip.starts_with(&subnet(3)),
        "pod IP {ip} is outside {}'s subnet {}0/24",
        node(3),
        subnet(3)
    );
    assert!(
        is_ready(&last["status"]),
        "a running pod without probes is Ready"
    );

    // Every Lease is renewed at least twice: three distinct renewTimes, counting the first.
    let mut renewals: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let renewed = wait_until(LEASE_WAIT, || {
        let leases = http
            .get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
            .json();
        for l in leases["items"].as_array().into_iter().flatten() {
            if let (Some(name), Some(renew)) = (
                l["metadata"]["name"].as_str(),
                l["spec"]["renewTime"].as_str(),
            ) {
                renewals
                    .entry(name.to_string())
                    .or_default()
                    .insert(renew.to_string());
            }
        }
        want.iter()
            .all(|n| renewals.get(n).is_some_and(|times| times.len() >= 3))
    });
    assert!(
        renewed,
        "not every hollow node renewed its lease twice within {LEASE_WAIT:?}: {renewals:#?}"
    );
}
