//! Pod priority and preemption on a one-node local cluster, driven by the real kubectl: the
//! Priority admission fills `spec.priority` from a PriorityClass and refuses an unknown class;
//! a high-priority pod that fits nowhere preempts one low-priority pod (deleted, with a
//! `Preempted` event), is nominated to the node and then runs there; a pod whose class says
//! `preemptionPolicy: Never` waits instead; a global default class applies to pods naming
//! none, and a second one is refused. One node is enough: the choice among several nodes is
//! covered by the scheduler's unit tests.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use skiff_e2e::{BUSYBOX, LocalCluster, ensure_busybox_image, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// A pod of `class` requesting `milli_cpu`, which exits at once on SIGTERM.
fn pod(name: &str, class: &str, milli_cpu: i64) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": "preemption"}},
        "spec": {
            "priorityClassName": class,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                "resources": {"requests": {"cpu": format!("{milli_cpu}m")}},
            }],
        },
    })
    .to_string()
}

/// `kubectl apply -f -` with `manifest`, whatever its outcome.
fn apply(c: &LocalCluster, manifest: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl")
}

fn get(c: &LocalCluster, what: &[&str]) -> Option<Value> {
    let mut args = vec!["get"];
    args.extend(what);
    args.extend(["-o", "json"]);
    let out = c.kubectl(&args);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

fn milli(q: &str) -> i64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => (q.parse::<f64>().unwrap_or(0.0) * 1000.0) as i64,
    }
}

/// Allocatable cpu of `node` minus what its live pods request, in millicores.
fn free_cpu(c: &LocalCluster, node: &str) -> i64 {
    let n = get(c, &["node", node]).expect("the node");
    let alloc = milli(n["status"]["allocatable"]["cpu"].as_str().unwrap_or("0"));
    let pods = get(c, &["pods", "-A"]).expect("pods");
    let used: i64 = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["spec"]["nodeName"] == node)
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .flat_map(|p| {
            p["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| milli(c["resources"]["requests"]["cpu"].as_str().unwrap_or("0")))
        .sum();
    alloc - used
}

fn running_on(c: &LocalCluster, name: &str, node: &str) -> bool {
    get(c, &["pod", name]).is_some_and(|p| {
        p["status"]["phase"] == "Running"
            && p["spec"]["nodeName"] == node
            && p["metadata"]["deletionTimestamp"].is_null()
    })
}

fn gone_or_going(c: &LocalCluster, name: &str) -> bool {
    get(c, &["pod", name]).is_none_or(|p| !p["metadata"]["deletionTimestamp"].is_null())
}

fn state(c: &LocalCluster) -> String {
    let pods = c.kubectl(&["get", "pods", "-o", "wide"]);
    let events = c.kubectl(&["get", "events"]);
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&pods.stdout),
        String::from_utf8_lossy(&events.stdout)
    )
}

#[test]
fn a_high_priority_pod_preempts_a_low_one() {
    ensure_busybox_image();
    let c = LocalCluster::create("e2e-prio", 1, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX]);
    let node = c.node_name(1);
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 100\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n",
    );

    // An unknown class is refused by admission, as kube-apiserver words it.
    let out = apply(&c, &pod("stray", "nope", 10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"pods "stray" is forbidden: no PriorityClass with name nope was found"#),
        "{stderr}"
    );

    // Two low pods fill the node's cpu between them.
    let half = free_cpu(&c, &node) / 2;
    assert!(
        half > 100,
        "the node has too little cpu free: {half}m per pod"
    );
    for name in ["low-1", "low-2"] {
        c.kubectl_stdin(&["apply", "-f", "-"], &pod(name, "low", half));
    }
    assert!(
        wait_until(WAIT, || running_on(&c, "low-1", &node)
            && running_on(&c, "low-2", &node)),
        "the low pods did not start\n{}",
        state(&c)
    );
    let low = get(&c, &["pod", "low-1"]).expect("low-1");
    assert_eq!(low["spec"]["priority"], 100, "{:#}", low["spec"]);
    assert_eq!(low["spec"]["preemptionPolicy"], "PreemptLowerPriority");

    // The high pod fits nowhere until one low pod goes.
    c.kubectl_stdin(&["apply", "-f", "-"], &pod("high", "high", half));
    let high = get(&c, &["pod", "high"]).expect("high");
    assert_eq!(high["spec"]["priority"], 1000);
    assert!(
        wait_until(WAIT, || running_on(&c, "high", &node)),
        "the high pod did not run\n{}",
        state(&c)
    );
    // The nomination is written right after the victims' deletion; it stays once bound.
    let mut high = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            high = get(&c, &["pod", "high"]).unwrap_or(Value::Null);
            high["status"]["nominatedNodeName"] == node.as_str()
        }),
        "the high pod was not nominated to {node}: {:#}",
        high["status"]
    );
    let victims: Vec<&str> = ["low-1", "low-2"]
        .into_iter()
        .filter(|n| gone_or_going(&c, n))
        .collect();
    assert_eq!(victims.len(), 1, "exactly one victim\n{}", state(&c));
    let survivor = if victims[0] == "low-1" {
        "low-2"
    } else {
        "low-1"
    };
    assert!(running_on(&c, survivor, &node), "{}", state(&c));

    // The victim's event names the preemptor and the node.
    let uid = high["metadata"]["uid"].as_str().unwrap_or_default();
    let want = format!("Preempted by pod {uid} on node {node}");
    let mut events = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            events =
                get(&c, &["events", "--field-selector", "reason=Preempted"]).unwrap_or(Value::Null);
            events["items"].as_array().is_some_and(|items| {
                items.iter().any(|e| {
                    e["involvedObject"]["name"] == victims[0]
                        && e["message"] == want.as_str()
                        && e["type"] == "Normal"
                })
            })
        }),
        "no Preempted event for {}: {events:#}",
        victims[0]
    );

    // A class with `preemptionPolicy: Never` gives its pods the policy: such a pod waits.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: polite}\n\
         value: 1000\npreemptionPolicy: Never\n",
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &pod("polite", "polite", half));
    let mut message = String::new();
    assert!(
        wait_until(WAIT, || {
            let p = get(&c, &["pod", "polite"]).unwrap_or(Value::Null);
            message = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "PodScheduled")
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default()
                .to_string();
            p["spec"]["preemptionPolicy"] == "Never"
                && message.ends_with("preemption: not eligible due to preemptionPolicy=Never.")
        }),
        "the polite pod: {message}\n{}",
        state(&c)
    );
    assert!(running_on(&c, survivor, &node) && running_on(&c, "high", &node));

    // One global default: pods without a class get its value; a second default is refused.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: everyone}\n\
         value: 5\nglobalDefault: true\n",
    );
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
                "spec": {"containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never"}]}})
        .to_string(),
    );
    let plain = get(&c, &["pod", "plain"]).expect("plain");
    assert_eq!(plain["spec"]["priority"], 5, "{:#}", plain["spec"]);
    assert_eq!(plain["spec"]["priorityClassName"], "everyone");
    let out = apply(
        &c,
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: second}\n\
         value: 6\nglobalDefault: true\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"priorityclasses.scheduling.k8s.io "second" is forbidden: PriorityClass everyone is already marked as default. Only one default can exist"#
        ),
        "{stderr}"
    );
}
