//! The DaemonSet controller's rules (which nodes run a pod, what a node needs, rolling update
//! steps, status) and the controller itself against the fake apiserver.

use super::*;
use crate::controllers::history::{revision_data, revision_matches};
use crate::pods::testing::pod;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

fn node(name: &str, labels: Value, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
    }))
    .unwrap()
}

fn spec(v: Value) -> PodSpec {
    let mut s: PodSpec = serde_json::from_value(v).unwrap();
    add_daemon_tolerations(&mut s);
    s
}

#[test]
fn which_nodes_run_a_daemon_pod() {
    let plain = spec(json!({"containers": [{"name": "c"}]}));
    let cases: Vec<(&str, PodSpec, Node, (bool, bool))> = vec![
        (
            "any node",
            plain.clone(),
            node("a", json!({}), json!([])),
            (true, true),
        ),
        (
            "nodeSelector matches",
            spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
            node("a", json!({"disk": "ssd"}), json!([])),
            (true, true),
        ),
        (
            "nodeSelector does not match: the pod goes",
            spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
            node("a", json!({"disk": "hdd"}), json!([])),
            (false, false),
        ),
        (
            "required affinity on a label",
            spec(
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}),
            ),
            node("a", json!({"zone": "z2"}), json!([])),
            (false, false),
        ),
        (
            "nodeName elsewhere",
            spec(json!({"containers": [], "nodeName": "b"})),
            node("a", json!({}), json!([])),
            (false, false),
        ),
        (
            "an untolerated NoSchedule taint: no new pod, the running one stays",
            plain.clone(),
            node(
                "a",
                json!({}),
                json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
            ),
            (false, true),
        ),
        (
            "an untolerated NoExecute taint: the pod goes",
            plain.clone(),
            node(
                "a",
                json!({}),
                json!([{"key": "dedicated", "effect": "NoExecute"}]),
            ),
            (false, false),
        ),
        (
            "a tolerated taint",
            spec(
                json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
            ),
            node(
                "a",
                json!({}),
                json!([{"key": "dedicated", "effect": "NoExecute"}]),
            ),
            (true, true),
        ),
        (
            "not-ready, cordoned and under disk pressure: daemon pods tolerate those",
            plain.clone(),
            node(
                "a",
                json!({}),
                json!([
                    {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                    {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
                ]),
            ),
            (true, true),
        ),
        (
            "network-unavailable is tolerated only by hostNetwork pods",
            plain.clone(),
            node(
                "a",
                json!({}),
                json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
            ),
            (false, true),
        ),
        (
            "hostNetwork pod on a node without a pod network",
            spec(json!({"containers": [], "hostNetwork": true})),
            node(
                "a",
                json!({}),
                json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
            ),
            (true, true),
        ),
    ];
    for (name, s, n, want) in cases {
        assert_eq!(should_run(&s, &n), want, "{name}");
    }
}

#[test]
fn daemon_tolerations_replace_equal_ones_and_keep_others() {
    let s = spec(json!({"containers": [], "tolerations": [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
        {"key": "mine", "operator": "Exists"},
    ]}));
    let t = s.tolerations.unwrap();
    assert_eq!(t.len(), 7, "{t:?}");
    let not_ready: Vec<_> = t
        .iter()
        .filter(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready"))
        .collect();
    assert_eq!(not_ready.len(), 1);
    assert_eq!(
        not_ready[0].toleration_seconds, None,
        "no grace: evicted never"
    );
}

#[test]
fn pods_are_pinned_by_a_match_fields_term() {
    let a = pin_to_node(None, "n1");
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(
        v,
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
            [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}})
    );
    let p = pod("p").affinity_node("n1").build();
    assert_eq!(target_node(&p), Some("n1"));
    let p = pod("p").affinity_node("n1").node("n2").build();
    assert_eq!(target_node(&p), Some("n2"), "nodeName wins once bound");
}

const NOW: &str = "2026-01-01T00:10:00Z";
const LONG_AGO: &str = "2026-01-01T00:00:00Z";

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// A ready pod of revision `hash` on `node`.
fn daemon(name: &str, node: &str, hash: &str) -> Arc<CachedPod> {
    Arc::new(
        pod(name)
            .node(node)
            .label(HASH_LABEL, hash)
            .ready(LONG_AGO)
            .build(),
    )
}

#[test]
fn what_a_node_needs() {
    let now = at(NOW);
    let plan = |run, keep, pods: &[Arc<CachedPod>], surge| {
        plan_node(run, keep, pods, "new", None, surge, 0, now)
    };
    assert_eq!(
        plan(true, true, &[], false),
        NodePlan {
            create: true,
            ..Default::default()
        }
    );
    assert_eq!(plan(false, false, &[], false), NodePlan::default());
    assert_eq!(
        plan(false, false, &[daemon("a", "n", "old")], false).delete,
        ["a"],
        "a node that stopped matching loses its pod"
    );
    assert_eq!(
        plan(false, true, &[daemon("a", "n", "old")], false),
        NodePlan::default(),
        "NoSchedule keeps a running pod"
    );
    let failed = Arc::new(pod("f").node("n").failed().build());
    assert_eq!(
        plan(true, true, std::slice::from_ref(&failed), false).failed,
        ["f"]
    );
    let older = Arc::new(
        pod("older")
            .node("n")
            .ready(LONG_AGO)
            .created("2025-12-01T00:00:00Z")
            .build(),
    );
    assert_eq!(
        plan(true, true, &[daemon("a", "n", "new"), older.clone()], false).delete,
        ["a"],
        "without surge only the oldest stays"
    );
    // With surge: both stay while the new one is not yet available.
    let starting = Arc::new(
        pod("b")
            .node("n")
            .label(HASH_LABEL, "new")
            .running()
            .build(),
    );
    assert!(
        plan(true, true, &[daemon("a", "n", "old"), starting], true)
            .delete
            .is_empty()
    );
    assert_eq!(
        plan(
            true,
            true,
            &[daemon("a", "n", "old"), daemon("b", "n", "new")],
            true
        )
        .delete,
        ["a"],
        "the new pod is available: the old one goes"
    );
}

fn nodes_with(pods: Vec<(&str, Vec<Arc<CachedPod>>)>) -> BTreeMap<String, Vec<Arc<CachedPod>>> {
    pods.into_iter().map(|(n, p)| (n.to_string(), p)).collect()
}

#[test]
fn rolling_update_replaces_one_node_at_a_time() {
    let now = at(NOW);
    let step = |by_node: &BTreeMap<String, Vec<Arc<CachedPod>>>, surge, unavailable| {
        rolling_update(by_node, "new", None, surge, unavailable, 0, now)
    };
    let all_old = nodes_with(vec![
        ("n1", vec![daemon("a", "n1", "old")]),
        ("n2", vec![daemon("b", "n2", "old")]),
        ("n3", vec![daemon("c", "n3", "old")]),
    ]);
    assert_eq!(step(&all_old, 0, 1), (vec!["a".to_string()], vec![]));
    assert_eq!(step(&all_old, 0, 2).0, ["a", "b"]);

    // n1 is being replaced (no pod yet): nothing else goes down.
    let replacing = nodes_with(vec![
        ("n1", vec![]),
        ("n2", vec![daemon("b", "n2", "old")]),
        ("n3", vec![daemon("c", "n3", "old")]),
    ]);
    assert_eq!(step(&replacing, 0, 1), (vec![], vec![]));

    // n1's new pod is not ready yet: still one unavailable.
    let starting = Arc::new(
        pod("a2")
            .node("n1")
            .label(HASH_LABEL, "new")
            .running()
            .build(),
    );
    let mut s = replacing.clone();
    s.insert("n1".into(), vec![starting]);
    assert_eq!(step(&s, 0, 1), (vec![], vec![]));

    // n1 is updated and available: the next node.
    let mut s = replacing.clone();
    s.insert("n1".into(), vec![daemon("a2", "n1", "new")]);
    assert_eq!(step(&s, 0, 1).0, ["b"]);

    // An old pod that is not available anyway is replaced at once.
    let mut s = all_old.clone();
    s.insert(
        "n3".into(),
        vec![Arc::new(
            pod("c").node("n3").label(HASH_LABEL, "old").build(),
        )],
    );
    assert_eq!(step(&s, 0, 1).0, ["c", "a"]);

    // Surge: a new pod starts beside the old one on one node; once available, the old one goes.
    assert_eq!(step(&all_old, 1, 0), (vec![], vec!["n1".to_string()]));
    let mut s = all_old.clone();
    s.get_mut("n1").unwrap().push(daemon("a2", "n1", "new"));
    assert_eq!(
        step(&s, 1, 0),
        (vec!["a".to_string()], vec!["n2".to_string()])
    );
}

#[test]
fn status_counts_per_node() {
    let by_node = nodes_with(vec![
        ("n1", vec![daemon("a", "n1", "new")]),
        (
            "n2",
            vec![Arc::new(
                pod("b")
                    .node("n2")
                    .label(HASH_LABEL, "old")
                    .running()
                    .build(),
            )],
        ),
        ("n4", vec![daemon("d", "n4", "old")]),
    ]);
    let nodes = vec![
        ("n1".to_string(), true),
        ("n2".to_string(), true),
        ("n3".to_string(), true),
        ("n4".to_string(), false),
    ];
    let s = compute_status(&nodes, &by_node, "new", None, 0, at(NOW));
    assert_eq!(
        s,
        json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 2, "numberMisscheduled": 1,
               "numberReady": 1, "numberAvailable": 1, "numberUnavailable": 2,
               "updatedNumberScheduled": 1})
    );
}

#[test]
fn revisions_hold_a_template_replacing_patch() {
    let t: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    }))
    .unwrap();
    let data = revision_data(&t);
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    let cr = ControllerRevision {
        data: Some(RawExtension(data)),
        ..Default::default()
    };
    assert!(revision_matches(&cr, &t));
    let mut other = t.clone();
    other.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into());
    assert!(!revision_matches(&cr, &other));
    assert_eq!(scaled(Some(&IntOrString::String("10%".into())), 1, 3), 1);
    assert_eq!(scaled(Some(&IntOrString::String("50%".into())), 1, 3), 2);
}

/// The pods the fake apiserver holds now.
fn fake_pods(api: &crate::testing::FakeApi) -> Vec<Value> {
    let mut names: Vec<String> = api
        .changes("pods")
        .iter()
        .filter_map(|c| c.strip_prefix("ADDED default/").map(String::from))
        .collect();
    names.dedup();
    names
        .iter()
        .filter_map(|n| api.get("pods", Some("default"), n))
        .collect()
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn pinned_node(p: &Value) -> String {
    p.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_controller_pins_a_pod_to_each_eligible_node_and_follows_labels() {
    let api = crate::testing::FakeApi::new();
    let node = |name: &str, labels: Value, taints: Value| {
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
    };
    api.create(
        "nodes",
        None,
        node("n1", json!({"role": "agent"}), json!([])),
    );
    api.create(
        "nodes",
        None,
        node(
            "n2",
            json!({"role": "agent"}),
            json!([{"key": "dedicated", "effect": "NoSchedule"}]),
        ),
    );
    api.create("nodes", None, node("n3", json!({}), json!([])));
    api.create(
        "daemonsets",
        Some("default"),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "agent", "generation": 1,
                            "annotations": {TEMPLATE_GENERATION_ANNOTATION: "1"}},
               "spec": {"selector": {"matchLabels": {"app": "agent"}},
                        "updateStrategy": {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                        "template": {"metadata": {"labels": {"app": "agent"}},
                                     "spec": {"nodeSelector": {"role": "agent"},
                                              "containers": [{"name": "c", "image": "busybox"}]}}}}),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = api.context(Default::default(), &stop);
    api.start(&ctx, &["daemonset"], &stop).await;

    wait_until("a pod for n1", || fake_pods(&api).len() == 1).await;
    let pod = &fake_pods(&api)[0];
    assert_eq!(pinned_node(pod), "n1", "{pod:#}");
    assert!(pod["spec"]["nodeName"].is_null(), "the scheduler binds it");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(pod["metadata"]["labels"][TEMPLATE_GENERATION_LABEL], "1");
    let hash = pod["metadata"]["labels"][HASH_LABEL]
        .as_str()
        .unwrap()
        .to_string();
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
    );
    let cr = api
        .get(
            "controllerrevisions",
            Some("default"),
            &format!("agent-{hash}"),
        )
        .expect("the current revision");
    assert_eq!(cr["revision"], 1);
    assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
    assert_eq!(cr["metadata"]["labels"][HASH_LABEL], hash.as_str());
    let ds = api
        .wait_for(
            "daemonsets",
            Some("default"),
            "agent",
            "status written",
            |d| d["status"]["observedGeneration"] == 1,
        )
        .await;
    assert_eq!(ds["status"]["desiredNumberScheduled"], 1, "{ds:#}");
    assert_eq!(ds["status"]["currentNumberScheduled"], 1);
    assert_eq!(ds["status"]["numberUnavailable"], 1);

    // n3 starts to match: it gets a pod too.
    api.replace(
        "nodes",
        None,
        node("n3", json!({"role": "agent"}), json!([])),
    );
    wait_until("a pod for n3", || fake_pods(&api).len() == 2).await;
    let mut nodes: Vec<String> = fake_pods(&api).iter().map(pinned_node).collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n3"]);

    // n1 stops matching: its pod goes.
    api.replace("nodes", None, node("n1", json!({}), json!([])));
    wait_until("n1's pod deleted", || {
        fake_pods(&api).iter().map(pinned_node).collect::<Vec<_>>() == ["n3"]
    })
    .await;
    stop.cancel();
}
