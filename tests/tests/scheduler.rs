//! The real `skiff-scheduler` against a real apiserver, with Node objects of different sizes,
//! labels and taints (no kubelets: placement is what is under test). Every placement and every
//! refusal is checked as kubectl shows it: `spec.nodeName`, the `PodScheduled` condition, and
//! the `Scheduled` / `FailedScheduling` events.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_e2e::fixtures::pod;
use skiff_e2e::{ApiServer, Backend, Scheduler, node, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn node_of(server: &ApiServer, name: &str) -> String {
    server.kubectl_ok(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"])
}

fn wait_bound(server: &ApiServer, name: &str) -> String {
    let mut node = String::new();
    let ok = wait_until(WAIT, || {
        node = node_of(server, name);
        !node.is_empty()
    });
    assert!(
        ok,
        "pod {name} was not bound:\n{}",
        server.kubectl_ok(&["get", "pod", name, "-o", "yaml"])
    );
    node
}

/// Waits for the pod's PodScheduled=False condition and returns its message.
fn wait_unschedulable(server: &ApiServer, name: &str) -> String {
    let mut cond = Value::Null;
    let ok = wait_until(WAIT, || {
        let pod = server.kubectl_json(&["get", "pod", name]);
        cond = pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())
            .unwrap_or(Value::Null);
        cond["status"] == "False"
    });
    assert!(ok, "pod {name} got no PodScheduled=False condition: {cond}");
    assert_eq!(cond["reason"], "Unschedulable");
    cond["message"].as_str().unwrap_or_default().to_string()
}

/// Messages of the pod's events with `reason`.
fn events(server: &ApiServer, pod: &str, reason: &str) -> Vec<String> {
    let list = server.kubectl_json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod},reason={reason}"),
    ]);
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_event(server: &ApiServer, pod: &str, reason: &str, message: &str) {
    let mut seen = Vec::new();
    let ok = wait_until(WAIT, || {
        seen = events(server, pod, reason);
        seen.iter().any(|m| m == message)
    });
    assert!(ok, "no {reason} event {message:?} for {pod}; saw {seen:?}");
}

#[test]
fn places_pods_by_size_labels_and_taints_and_explains_refusals() {
    let server = ApiServer::start(Backend::Embedded);
    node("small")
        .cpu("1")
        .memory("2Gi")
        .label("disk", "hdd")
        .create(&server);
    node("big")
        .cpu("8")
        .memory("16Gi")
        .label("disk", "ssd")
        .create(&server);
    node("gpu")
        .cpu("8")
        .memory("16Gi")
        .label("disk", "ssd")
        .taint("dedicated", "gpu", "NoSchedule")
        .create(&server);
    node("cordoned")
        .cpu("128")
        .memory("64Gi")
        .unschedulable()
        .create(&server);
    let sched = Scheduler::start(&server);

    server.kubectl_create(&[
        pod("needs-4-cpus").cpu("4").build(),
        pod("wants-gpu")
            .cpu("1")
            .node_selector("disk", "ssd")
            .toleration(json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}))
            .affinity(json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu"]}]}]}}}))
            .build(),
        pod("tiny-hdd").cpu("100m").node_selector("disk", "hdd").build(),
        pod("too-big").cpu("100").build(),
        pod("no-such-disk").node_selector("disk", "nvme").build(),
        pod("other-scheduler").scheduler_name("my-scheduler").build(),
    ]);

    assert_eq!(wait_bound(&server, "needs-4-cpus"), "big");
    assert_eq!(wait_bound(&server, "wants-gpu"), "gpu");
    assert_eq!(wait_bound(&server, "tiny-hdd"), "small");
    wait_event(
        &server,
        "needs-4-cpus",
        "Scheduled",
        "Successfully assigned default/needs-4-cpus to big",
    );
    let describe = server.kubectl_ok(&["describe", "pod", "wants-gpu"]);
    assert!(
        describe.contains("Successfully assigned default/wants-gpu to gpu"),
        "kubectl describe shows the Scheduled event:\n{describe}"
    );

    let too_big = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
                   1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/4 nodes are \
                   available: 2 No preemption victims found for incoming pod, 2 Preemption is not \
                   helpful for scheduling.";
    assert_eq!(wait_unschedulable(&server, "too-big"), too_big);
    wait_event(&server, "too-big", "FailedScheduling", too_big);
    let no_disk = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
                   1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector. \
                   preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.";
    assert_eq!(wait_unschedulable(&server, "no-such-disk"), no_disk);
    wait_event(&server, "no-such-disk", "FailedScheduling", no_disk);
    let describe = server.kubectl_ok(&["describe", "pod", "too-big"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");

    // Pods for another scheduler are left alone.
    assert_eq!(node_of(&server, "other-scheduler"), "");
    assert!(events(&server, "other-scheduler", "FailedScheduling").is_empty());

    // Uncordoning a big enough node lets the parked pod in at once (no periodic retry needed).
    server.kubectl_ok(&["uncordon", "cordoned"]);
    assert_eq!(wait_bound(&server, "too-big"), "cordoned");
    let pod = server.kubectl_json(&["get", "pod", "too-big"]);
    let scheduled = pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .unwrap_or_default();
    assert_eq!(scheduled["status"], "True", "{scheduled}");

    // Health and metrics.
    assert_eq!(sched.get("/healthz"), (200, "ok".to_string()));
    let (code, metrics) = sched.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_pending_pods{queue=\"unschedulable\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_scheduling_attempt_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[test]
fn assumed_pods_never_overcommit_and_deletions_make_room() {
    let server = ApiServer::start(Backend::Embedded);
    node("only").cpu("2").memory("4Gi").create(&server);
    let _sched = Scheduler::start(&server);
    let pods: Vec<Value> = (0..5)
        .map(|i| pod(&format!("p{i}")).cpu("1").build())
        .collect();
    server.kubectl_create(&pods);

    // Names of the pods that exist and are bound.
    let bound = || -> Vec<String> {
        let list = server.kubectl_json(&["get", "pods"]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
            })
            .map(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    assert!(
        wait_until(WAIT, || bound().len() == 2),
        "two pods fit: {:?}",
        bound()
    );
    let first = bound();
    let waiting: Vec<String> = (0..5)
        .map(|i| format!("p{i}"))
        .filter(|p| !first.contains(p))
        .collect();
    for p in &waiting {
        assert_eq!(
            wait_unschedulable(&server, p),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
             1 No preemption victims found for incoming pod."
        );
    }
    assert_eq!(bound().len(), 2, "never more than fit");

    server.kubectl_ok(&["delete", "pod", &first[0], "--grace-period=0", "--force"]);
    assert!(
        wait_until(WAIT, || bound().len() == 2 && !bound().contains(&first[0])),
        "a pod waiting for cpu takes the freed place: {:?}",
        bound()
    );
    assert_eq!(bound().len(), 2);
}

#[test]
fn spreads_a_controllers_pods_and_honours_anti_affinity() {
    let server = ApiServer::start(Backend::Embedded);
    for n in ["n1", "n2", "n3"] {
        node(n).create(&server);
    }
    node("sick").ready("False").create(&server);
    let _sched = Scheduler::start(&server);

    let replicas: Vec<Value> = (0..6)
        .map(|i| {
            pod(&format!("web-{i}"))
                .label("app", "web")
                .owner("rs-web-uid")
                .build()
        })
        .collect();
    server.kubectl_create(&replicas);
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        *per_node
            .entry(wait_bound(&server, &format!("web-{i}")))
            .or_default() += 1;
    }
    assert_eq!(
        per_node,
        [
            ("n1".to_string(), 2),
            ("n2".to_string(), 2),
            ("n3".to_string(), 2)
        ]
        .into_iter()
        .collect(),
        "a controller's pods spread evenly and never land on a NotReady node"
    );

    let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    let dbs: Vec<Value> = (0..4)
        .map(|i| {
            pod(&format!("db-{i}"))
                .label("app", "db")
                .affinity(anti.clone())
                .build()
        })
        .collect();
    server.kubectl_create(&dbs);
    let mut db_nodes = Vec::new();
    let mut refused = Vec::new();
    assert!(
        wait_until(WAIT, || {
            db_nodes = (0..4)
                .map(|i| node_of(&server, &format!("db-{i}")))
                .filter(|n| !n.is_empty())
                .collect();
            db_nodes.len() == 3
        }),
        "three db pods fit, one per node: {db_nodes:?}"
    );
    db_nodes.sort();
    assert_eq!(db_nodes, ["n1", "n2", "n3"]);
    for i in 0..4 {
        let name = format!("db-{i}");
        if node_of(&server, &name).is_empty() {
            refused.push(wait_unschedulable(&server, &name));
        }
    }
    assert_eq!(
        refused,
        [
            "0/4 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
          3 node(s) didn't match pod anti-affinity rules. preemption: 0/4 nodes are available: \
          1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod."
        ]
    );
}

#[test]
fn two_schedulers_only_the_leader_acts_and_the_other_takes_over() {
    let server = ApiServer::start(Backend::Embedded);
    node("n1").create(&server);
    let fast = [
        "--leader-elect=true",
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=500ms",
    ];
    let mut a = Scheduler::start_with_args(&server, &fast);
    assert!(
        wait_until(WAIT, || a.log_text().contains("caches synced")),
        "the first scheduler leads:\n{}",
        a.log_text()
    );
    let mut b = Scheduler::start_with_args(&server, &fast);
    assert!(
        wait_until(WAIT, || b.log_text().contains("another instance leads")),
        "the second one waits:\n{}",
        b.log_text()
    );
    let holder = || {
        server.kubectl_ok(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    };
    let first_holder = holder();
    assert!(!first_holder.is_empty());

    server.kubectl_create(&[pod("before").build()]);
    assert_eq!(wait_bound(&server, "before"), "n1");
    assert!(
        !b.log_text().contains("caches synced"),
        "the standby never acts"
    );
    assert_eq!(holder(), first_holder);

    a.kill();
    server.kubectl_create(&[pod("after").build()]);
    assert_eq!(wait_bound(&server, "after"), "n1");
    assert!(
        b.log_text().contains("acquired leadership"),
        "{}",
        b.log_text()
    );
    assert_ne!(holder(), first_holder);
    assert!(b.exited().is_none());
}
