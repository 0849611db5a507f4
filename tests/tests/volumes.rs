//! Persistent volumes on a three-node local cluster, driven by the real kubectl: the default
//! `local-path` class (WaitForFirstConsumer) provisions a node-local volume where the claim's
//! first pod lands, a later pod follows the volume to that node and reads what the first
//! wrote; a claim grows; a static hostPath volume binds at once (Immediate) and is Released
//! (Retain) when its claim goes; a provisioned volume (Delete) goes with its claim, and so
//! does its directory; a pod naming a missing claim is unschedulable with Kubernetes' reason.
//! One cluster serves every scenario (creating one takes most of the time).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use skiff_e2e::{BUSYBOX, LocalCluster, Table, ensure_busybox_image, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// A pod that mounts claim `claim` at /data and runs `script` (then sleeps until SIGTERM).
fn pod(name: &str, claim: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "{script}; trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {claim}
"#
    )
}

fn json(c: &LocalCluster, args: &[&str]) -> Value {
    let out = c.kubectl(&[args, &["-o", "json"]].concat());
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn pvc_table(c: &LocalCluster) -> Table {
    Table::parse(&c.kubectl_ok(&["get", "pvc"]))
}

fn pod_running(c: &LocalCluster, name: &str) -> bool {
    json(c, &["get", "pod", name])["status"]["phase"] == "Running"
}

/// The messages of the events about object `name`.
fn events(c: &LocalCluster, name: &str) -> String {
    c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ])
}

fn delete_pod(c: &LocalCluster, name: &str) {
    c.kubectl_ok(&["delete", "pod", name, "--ignore-not-found", "--timeout=60s"]);
}

#[test]
fn persistent_volumes_on_a_three_node_cluster() {
    ensure_busybox_image();
    let c = LocalCluster::create("e2e-pv", 3, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX]);

    the_default_class_is_local_path(&c);
    let dir = a_claim_waits_for_its_first_consumer_and_follows_it(&c);
    a_claim_grows(&c);
    a_missing_claim_makes_a_pod_unschedulable(&c);
    a_static_volume_binds_at_once_and_is_retained(&c);
    a_provisioned_volume_goes_with_its_claim(&c, &dir);
}

/// The controller-manager created `local-path`, marked default, as k3s ships it.
fn the_default_class_is_local_path(c: &LocalCluster) {
    assert!(
        wait_until(WAIT, || c
            .kubectl(&["get", "sc", "local-path"])
            .status
            .success()),
        "no local-path StorageClass"
    );
    let sc = Table::parse(&c.kubectl_ok(&["get", "sc"]));
    let row = sc.row("local-path (default)");
    assert_eq!(
        row[1..5],
        [
            "skiff.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "true"
        ],
        "{sc:?}"
    );
}

/// A claim without a class gets `local-path` and waits, Pending, for a pod; the pod's node
/// gets the volume; the pod writes to it; a later pod lands on the same node and reads it.
/// Returns the volume's directory.
fn a_claim_waits_for_its_first_consumer_and_follows_it(c: &LocalCluster) -> PathBuf {
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 64Mi}}\n",
    );
    let claim = json(c, &["get", "pvc", "data"]);
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert!(
        claim["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "kubernetes.io/pvc-protection")),
        "{claim}"
    );
    assert!(
        wait_until(WAIT, || events(c, "data").contains(
            "waiting for first consumer to be created before binding"
        )),
        "{}",
        events(c, "data")
    );
    assert_eq!(pvc_table(c).cell("data", "STATUS"), "Pending");

    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("writer", "data", "echo persisted > /data/file"),
    );
    assert!(
        wait_until(WAIT, || pod_running(c, "writer")),
        "writer not running: {}",
        c.kubectl_ok(&["describe", "pod", "writer"])
    );
    let pvc = pvc_table(c);
    let volume = pvc.cell("data", "VOLUME").to_string();
    assert!(volume.starts_with("pvc-"), "{pvc:?}");
    assert_eq!(
        pvc.row("data")[1..6],
        ["Bound", volume.as_str(), "64Mi", "RWO", "local-path"]
    );
    let pv = json(c, &["get", "pv", &volume]);
    let node = json(c, &["get", "pod", "writer"])["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        serde_json::json!({"key": "kubernetes.io/hostname", "operator": "In", "values": [node]})
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "skiff.io/local-path"
    );
    let claim = json(c, &["get", "pvc", "data"]);
    assert_eq!(
        claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    assert!(
        events(c, "data").contains(&format!("Successfully provisioned volume {volume}")),
        "{}",
        events(c, "data")
    );
    // The directory is on the pod's node's disk (its kubelet's root dir), with the file.
    let dir = PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap_or_default());
    let node_dir =
        json(c, &["get", "node", &node])["metadata"]["annotations"]["skiff.io/local-path-dir"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    assert!(
        !node_dir.is_empty() && dir.starts_with(&node_dir),
        "{dir:?} not under {node_dir:?}"
    );
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(dir.join("file"))
            .is_ok_and(|s| s == "persisted\n")),
        "no file in {dir:?}"
    );

    delete_pod(c, "writer");
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("reader", "data", "cat /data/file"),
    );
    assert!(
        wait_until(WAIT, || pod_running(c, "reader")),
        "reader not running: {}",
        c.kubectl_ok(&["describe", "pod", "reader"])
    );
    assert_eq!(
        json(c, &["get", "pod", "reader"])["spec"]["nodeName"],
        node.as_str()
    );
    assert!(
        wait_until(WAIT, || c
            .kubectl(&["logs", "reader"])
            .stdout
            .starts_with(b"persisted")),
        "reader did not read the file"
    );
    dir
}

/// Raising the request of a claim whose class allows expansion grows its volume and its
/// reported capacity (bookkeeping for local-path, which has no quota).
fn a_claim_grows(c: &LocalCluster) {
    c.kubectl_ok(&[
        "patch",
        "pvc",
        "data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}"#,
    ]);
    assert!(
        wait_until(WAIT, || pvc_table(c).cell("data", "CAPACITY") == "128Mi"),
        "{:?}",
        pvc_table(c)
    );
    let volume = pvc_table(c).cell("data", "VOLUME").to_string();
    assert_eq!(
        json(c, &["get", "pv", &volume])["spec"]["capacity"]["storage"],
        "128Mi"
    );
}

/// A pod naming a claim that does not exist stays Pending with the scheduler's reason.
fn a_missing_claim_makes_a_pod_unschedulable(c: &LocalCluster) {
    c.kubectl_stdin(&["apply", "-f", "-"], &pod("orphan", "missing", "true"));
    assert!(
        wait_until(WAIT, || events(c, "orphan").contains(
            "0/3 nodes are available: 3 persistentvolumeclaim \"missing\" not found."
        )),
        "{}",
        events(c, "orphan")
    );
    delete_pod(c, "orphan");
}

/// A hostPath volume of class `manual` binds a matching claim at once (no such class:
/// nothing to wait for); with reclaim policy Retain it is Released when the claim goes.
fn a_static_volume_binds_at_once_and_is_retained(c: &LocalCluster) {
    let path = std::env::temp_dir().join(format!("skiff-e2e-static-pv-{}", std::process::id()));
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: static-pv}}\nspec:\n  storageClassName: manual\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath: {{path: {}, type: DirectoryOrCreate}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: static-claim}}\nspec:\n  storageClassName: manual\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 500Mi}}}}\n",
            path.display()
        ),
    );
    assert!(
        wait_until(WAIT, || pvc_table(c).cell("static-claim", "STATUS")
            == "Bound"),
        "{:?}",
        pvc_table(c)
    );
    let pvc = pvc_table(c);
    assert_eq!(
        pvc.row("static-claim")[1..6],
        ["Bound", "static-pv", "1Gi", "RWO", "manual"]
    );
    let pv = Table::parse(&c.kubectl_ok(&["get", "pv", "static-pv"]));
    assert_eq!(
        pv.row("static-pv")[1..7],
        [
            "1Gi",
            "RWO",
            "Retain",
            "Bound",
            "default/static-claim",
            "manual"
        ]
    );
    assert_eq!(
        json(c, &["get", "pv", "static-pv"])["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );

    c.kubectl_ok(&["delete", "pvc", "static-claim", "--timeout=60s"]);
    assert!(
        wait_until(WAIT, || Table::parse(&c.kubectl_ok(&[
            "get",
            "pv",
            "static-pv"
        ]))
        .cell("static-pv", "STATUS")
            == "Released"),
        "{}",
        c.kubectl_ok(&["get", "pv"])
    );
    c.kubectl_ok(&["delete", "pv", "static-pv", "--timeout=60s"]);
    let _ = std::fs::remove_dir_all(&path);
}

/// Deleting the claim (once no pod uses it) deletes its provisioned volume (reclaim policy
/// Delete), and the node's kubelet removes the directory.
fn a_provisioned_volume_goes_with_its_claim(c: &LocalCluster, dir: &std::path::Path) {
    let volume = pvc_table(c).cell("data", "VOLUME").to_string();
    // In use by `reader`: the claim stays, Terminating, until the pod is gone.
    c.kubectl_ok(&["delete", "pvc", "data", "--wait=false"]);
    assert!(
        !json(c, &["get", "pvc", "data"])["metadata"]["deletionTimestamp"].is_null(),
        "the claim went while a pod used it"
    );
    delete_pod(c, "reader");
    assert!(
        wait_until(WAIT, || !c
            .kubectl(&["get", "pvc", "data"])
            .status
            .success()),
        "claim data not deleted"
    );
    assert!(
        wait_until(WAIT, || !c
            .kubectl(&["get", "pv", &volume])
            .status
            .success()),
        "volume {volume} not deleted: {}",
        c.kubectl_ok(&["get", "pv"])
    );
    assert!(
        wait_until(WAIT, || !dir.exists()),
        "directory {dir:?} not removed"
    );
}
