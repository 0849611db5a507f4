//! DaemonSets on a three-node local cluster, driven by the real kubectl: a pod on every node,
//! following a nodeSelector as nodes are labelled and unlabelled, a rolling image change one
//! node at a time with `rollout status|history|undo`, and `kubectl drain --ignore-daemonsets`.
//! One cluster serves every scenario (creating one takes most of the time).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use skiff_e2e::{BUSYBOX, LocalCluster, ensure_busybox_image, wait_until};

/// A second tag of the test image, for the rolling update.
const BUSYBOX_2: &str = "skiff-test/busybox:2";
const WAIT: Duration = Duration::from_secs(120);

/// A DaemonSet whose pods sleep until SIGTERM (then exit at once, so deletions are quick).
fn daemonset(name: &str, node_selector: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      {node_selector}
      terminationGracePeriodSeconds: 5
      containers:
      - name: c
        image: {BUSYBOX}
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

#[derive(Debug, Clone)]
struct PodRow {
    name: String,
    node: String,
    ready: bool,
    deleting: bool,
    image: String,
    owner: Value,
    affinity_node: String,
}

fn pods(c: &LocalCluster, app: &str) -> Vec<PodRow> {
    let out = c.kubectl(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    if !out.status.success() {
        return Vec::new();
    }
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| PodRow {
            name: s(&p["metadata"]["name"]),
            node: s(&p["spec"]["nodeName"]),
            ready: p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            }),
            deleting: !p["metadata"]["deletionTimestamp"].is_null(),
            image: s(&p["spec"]["containers"][0]["image"]),
            owner: p["metadata"]["ownerReferences"][0].clone(),
            affinity_node: s(&p["spec"]["affinity"]["nodeAffinity"]
                ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                ["matchFields"][0]["values"][0]),
        })
        .collect()
}

/// Ready pods not being deleted, by node.
fn serving_by_node(c: &LocalCluster, app: &str) -> BTreeMap<String, Vec<PodRow>> {
    let mut m: BTreeMap<String, Vec<PodRow>> = BTreeMap::new();
    for p in pods(c, app).into_iter().filter(|p| p.ready && !p.deleting) {
        m.entry(p.node.clone()).or_default().push(p);
    }
    m
}

fn wide(c: &LocalCluster) -> String {
    String::from_utf8_lossy(&c.kubectl(&["get", "pods", "-o", "wide"]).stdout).into_owned()
}

fn rollout_status(c: &LocalCluster, ds: &str) -> String {
    c.kubectl_ok(&["rollout", "status", &format!("ds/{ds}"), "--timeout=120s"])
}

#[test]
fn daemonsets_on_a_three_node_cluster() {
    ensure_busybox_image();
    let tagged = Command::new("docker")
        .args(["tag", BUSYBOX, BUSYBOX_2])
        .status()
        .expect("docker tag");
    assert!(tagged.success());
    let c = LocalCluster::create("e2e-ds", 3, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX, BUSYBOX_2]);
    let nodes: Vec<String> = (1..=3).map(|i| c.node_name(i)).collect();

    a_pod_on_every_node(&c, &nodes);
    a_node_selector_is_followed(&c, &nodes);
    an_image_change_rolls_one_node_at_a_time(&c);
    drain_skips_daemon_pods(&c, &nodes);
}

/// Every node gets one Ready pod, owned by the DaemonSet and placed by a matchFields term.
fn a_pod_on_every_node(c: &LocalCluster, nodes: &[String]) {
    c.kubectl_stdin(&["apply", "-f", "-"], &daemonset("agent", ""));
    let out = rollout_status(c, "agent");
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let by_node = serving_by_node(c, "agent");
    assert_eq!(
        by_node.keys().cloned().collect::<Vec<_>>(),
        nodes,
        "{}",
        wide(c)
    );
    for (node, ps) in &by_node {
        assert_eq!(ps.len(), 1, "one pod on {node}:\n{}", wide(c));
        let p = &ps[0];
        assert_eq!(p.affinity_node, *node, "{p:?}");
        assert_eq!(p.owner["kind"], "DaemonSet", "{p:?}");
        assert_eq!(p.owner["name"], "agent");
        assert_eq!(p.owner["controller"], true);
    }
    let status = c.kubectl_ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled} {.status.numberAvailable}",
    ]);
    assert_eq!(status, "3 3 3 3 3");
}

/// Labelling a node adds a pod there; unlabelling it removes the pod.
fn a_node_selector_is_followed(c: &LocalCluster, nodes: &[String]) {
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &daemonset("picky", "nodeSelector: {role: logger}"),
    );
    let desired = || {
        c.kubectl_ok(&[
            "get",
            "ds",
            "picky",
            "-o",
            "jsonpath={.status.observedGeneration}/{.status.desiredNumberScheduled}",
        ])
    };
    assert!(
        wait_until(WAIT, || desired() == "1/0"),
        "no node matches: {}",
        desired()
    );
    assert!(pods(c, "picky").is_empty(), "{}", wide(c));

    c.kubectl_ok(&["label", "node", &nodes[1], "role=logger"]);
    assert!(
        wait_until(WAIT, || {
            let m = serving_by_node(c, "picky");
            m.len() == 1 && m.get(&nodes[1]).is_some_and(|p| p.len() == 1)
        }),
        "a pod on the labelled node:\n{}",
        wide(c)
    );
    c.kubectl_ok(&["label", "node", &nodes[1], "role-"]);
    assert!(
        wait_until(WAIT, || pods(c, "picky").is_empty()),
        "the unlabelled node's pod goes:\n{}",
        wide(c)
    );
    c.kubectl_ok(&["delete", "ds", "picky"]);
}

/// An image change replaces the pods one node at a time; history lists both revisions and
/// `rollout undo` goes back.
fn an_image_change_rolls_one_node_at_a_time(c: &LocalCluster) {
    c.kubectl_ok(&["set", "image", "ds/agent", &format!("c={BUSYBOX_2}")]);
    // The apiserver counts template changes (the pods' `pod-template-generation`).
    let generation = c.kubectl_ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        r"jsonpath={.metadata.annotations.deprecated\.daemonset\.template\.generation}",
    ]);
    assert_eq!(generation, "2");
    // While it rolls, never more than one node without a Ready pod (maxUnavailable 1).
    let mut worst = 0;
    let rolled = wait_until(WAIT, || {
        let m = serving_by_node(c, "agent");
        worst = worst.max(3 - m.len());
        m.len() == 3
            && m.values()
                .all(|ps| ps.len() == 1 && ps[0].image == BUSYBOX_2)
    });
    assert!(rolled, "the new image runs everywhere:\n{}", wide(c));
    assert!(worst <= 1, "{worst} nodes were down at once");
    rollout_status(c, "agent");

    let history = c.kubectl_ok(&["rollout", "history", "ds/agent"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(revisions.len(), 2, "{history}");
    assert!(
        revisions[0].starts_with('1') && revisions[1].starts_with('2'),
        "{history}"
    );

    let out = c.kubectl_ok(&["rollout", "undo", "ds/agent"]);
    assert!(out.contains("rolled back"), "{out}");
    assert!(
        wait_until(WAIT, || {
            let m = serving_by_node(c, "agent");
            m.len() == 3 && m.values().all(|ps| ps.len() == 1 && ps[0].image == BUSYBOX)
        }),
        "undo brings the first image back:\n{}",
        wide(c)
    );
    rollout_status(c, "agent");
    let image = c.kubectl_ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, BUSYBOX);
    // The first template came back: its revision is renumbered, not copied.
    let history = c.kubectl_ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.lines().any(|l| l.starts_with('3')) && !history.lines().any(|l| l.starts_with('1')),
        "{history}"
    );
}

/// `kubectl drain --ignore-daemonsets` completes and leaves the daemon pod where it is.
fn drain_skips_daemon_pods(c: &LocalCluster, nodes: &[String]) {
    let node = &nodes[0];
    let before = serving_by_node(c, "agent")
        .remove(node)
        .expect("a daemon pod on the node");
    let out = c.kubectl(&["drain", node, "--ignore-daemonsets", "--timeout=60s"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ignoring DaemonSet-managed Pods"), "{text}");
    assert!(text.contains(&format!("node/{node} drained")), "{text}");
    let after = serving_by_node(c, "agent").remove(node).unwrap_or_default();
    assert_eq!(
        after.iter().map(|p| &p.name).collect::<Vec<_>>(),
        before.iter().map(|p| &p.name).collect::<Vec<_>>(),
        "the daemon pod stays:\n{}",
        wide(c)
    );
    c.kubectl_ok(&["uncordon", node]);
    c.kubectl_ok(&["delete", "ds", "agent"]);
    assert!(
        wait_until(WAIT, || pods(c, "agent").is_empty()),
        "deleting the DaemonSet deletes its pods:\n{}",
        wide(c)
    );
}
