//! StatefulSets on a three-node local cluster, driven by the real kubectl: the Kubernetes
//! documentation's `web` example (a headless Service and a StatefulSet of three with a claim
//! template `www`) starts its pods in ordinal order, each with its own claim; a deleted pod
//! comes back under its name with its claim and its data; the Service's endpoints carry the pods'
//! hostnames; an image change rolls out from the highest ordinal down, with `rollout
//! status|history|undo`; a scale-down removes the highest ordinals first and keeps their claims.
//! A `Parallel` set whose claims are deleted on scale-down and with the set starts its pods
//! at once and takes its claims with it. One cluster serves every scenario (creating one
//! takes most of the time).
//!
//! Storage: the claims are made without a `storageClassName`, so they get the default
//! `local-path` class and are bound when their pod is scheduled; what web-1 writes into its
//! claim is read back by its replacement, which lands on the node holding the volume.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use skiff_e2e::{BUSYBOX, LocalCluster, ensure_busybox_image, skiffctl_ok, wait_until};

/// A second tag of the test image, for the rolling update.
const BUSYBOX_2: &str = "skiff-test/busybox:2";
const WAIT: Duration = Duration::from_secs(120);

/// The documentation's `web.yaml`: a headless Service and a StatefulSet whose pods mount a
/// claim `www`; busybox instead of nginx, sleeping until SIGTERM (then exiting at once).
fn web(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {{app: web}}
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector: {{app: web}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  selector:
    matchLabels: {{app: web}}
  serviceName: web
  replicas: 3
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: c
        image: {image}
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
"#
    )
}

#[derive(Debug, Clone)]
struct PodRow {
    name: String,
    uid: String,
    created: String,
    ready_since: Option<String>,
    deleting: bool,
    image: String,
    hostname: String,
    subdomain: String,
    claim: String,
    labels: Value,
}

fn pods(c: &LocalCluster) -> BTreeMap<String, PodRow> {
    let out = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "json"]);
    if !out.status.success() {
        return BTreeMap::new();
    }
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().and_then(|c| {
                c.iter()
                    .find(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            let claim = p["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == "www")
                .map(|v| s(&v["persistentVolumeClaim"]["claimName"]))
                .unwrap_or_default();
            let row = PodRow {
                name: s(&p["metadata"]["name"]),
                uid: s(&p["metadata"]["uid"]),
                created: s(&p["metadata"]["creationTimestamp"]),
                ready_since: ready.map(|c| s(&c["lastTransitionTime"])),
                deleting: !p["metadata"]["deletionTimestamp"].is_null(),
                image: s(&p["spec"]["containers"][0]["image"]),
                hostname: s(&p["spec"]["hostname"]),
                subdomain: s(&p["spec"]["subdomain"]),
                claim,
                labels: p["metadata"]["labels"].clone(),
            };
            (row.name.clone(), row)
        })
        .collect()
}

/// Names of the pods that are Ready and not being deleted.
fn serving(c: &LocalCluster) -> Vec<String> {
    pods(c)
        .into_values()
        .filter(|p| p.ready_since.is_some() && !p.deleting)
        .map(|p| p.name)
        .collect()
}

/// The claims labelled `app=web`, by name, with their uids.
fn claims(c: &LocalCluster) -> BTreeMap<String, String> {
    let out = c.kubectl_ok(&["get", "pvc", "-l", "app=web", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn wide(c: &LocalCluster) -> String {
    let pods = c.kubectl(&["get", "pods", "-o", "wide"]);
    let sts = c.kubectl(&["get", "sts", "web", "-o", "yaml"]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&pods.stdout),
        String::from_utf8_lossy(&sts.stdout)
    )
}

fn rollout_status(c: &LocalCluster) -> String {
    c.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=120s"])
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("web-{i}")).collect()
}

#[test]
fn statefulsets_on_a_three_node_cluster() {
    ensure_busybox_image();
    let tagged = Command::new("docker")
        .args(["tag", BUSYBOX, BUSYBOX_2])
        .status()
        .expect("docker tag");
    assert!(tagged.success());
    let c = LocalCluster::create("e2e-sts", 3, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX, BUSYBOX_2]);

    pods_start_in_order_each_with_its_claim(&c);
    endpoints_carry_the_hostnames(&c);
    a_deleted_pod_comes_back_with_its_name_and_claim(&c);
    an_image_change_rolls_out_from_the_highest_ordinal(&c);
    scaling_down_removes_the_highest_ordinals_and_keeps_their_claims(&c);

    c.kubectl_ok(&["delete", "sts", "web"]);
    c.kubectl_ok(&["delete", "svc", "web"]);
    assert!(
        wait_until(WAIT, || pods(&c).is_empty()),
        "deleting the StatefulSet deletes its pods:\n{}",
        wide(&c)
    );
    // Retained claims outlive the set (whenDeleted: Retain, the default).
    assert_eq!(
        claims(&c).into_keys().collect::<Vec<_>>(),
        ["www-web-0", "www-web-1", "www-web-2"]
    );
    c.kubectl_ok(&["delete", "pvc", "-l", "app=web"]);

    parallel_pods_with_claims_deleted_on_scale_down_and_with_the_set(&c);
}

/// A claim is gone, or going (a claim in use keeps a protection finalizer until its pod is).
fn claim_gone(c: &LocalCluster, name: &str) -> bool {
    let out = c.kubectl(&[
        "get",
        "pvc",
        name,
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    !out.status.success() || !out.stdout.is_empty()
}

/// `podManagementPolicy: Parallel` with `whenScaled: Delete` and `whenDeleted: Delete`: both
/// pods are created without waiting, the scaled-away pod's claim goes with it, and the rest
/// go with the set.
fn parallel_pods_with_claims_deleted_on_scale_down_and_with_the_set(c: &LocalCluster) {
    let manifest = web(BUSYBOX)
        .replace("name: web", "name: db")
        .replace("app: web", "app: db")
        .replace("serviceName: web", "serviceName: db")
        .replace("replicas: 3", "replicas: 2\n  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}");
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    let created = |name: &str| {
        c.kubectl_ok(&[
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.metadata.creationTimestamp}",
        ])
    };
    assert!(
        wait_until(WAIT, || {
            let out = c.kubectl(&["get", "pods", "-l", "app=db", "-o", "name"]);
            String::from_utf8_lossy(&out.stdout).lines().count() == 2
        }),
        "both pods are created:\n{}",
        wide(c)
    );
    // Parallel: db-1 does not wait for db-0 to be Ready.
    let ready_0 = c.kubectl_ok(&[
        "get",
        "pod",
        "db-0",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].lastTransitionTime}"#,
    ]);
    assert!(
        ready_0.is_empty() || created("db-1") <= ready_0,
        "db-1 ({}) waited for db-0 ({ready_0})",
        created("db-1")
    );
    c.kubectl_ok(&["rollout", "status", "sts/db", "--timeout=120s"]);
    for claim in ["www-db-0", "www-db-1"] {
        c.kubectl_ok(&["get", "pvc", claim]);
    }
    c.kubectl_ok(&["scale", "sts/db", "--replicas=1"]);
    assert!(
        wait_until(WAIT, || claim_gone(c, "www-db-1")),
        "the scaled-away pod's claim is deleted:\n{}",
        c.kubectl_ok(&["get", "pvc", "-o", "yaml"])
    );
    assert!(!claim_gone(c, "www-db-0"), "db-0 keeps its claim");
    c.kubectl_ok(&["delete", "sts", "db"]);
    c.kubectl_ok(&["delete", "svc", "db"]);
    assert!(
        wait_until(WAIT, || claim_gone(c, "www-db-0")),
        "the set's claims go with it:\n{}",
        c.kubectl_ok(&["get", "pvc", "-o", "yaml"])
    );
    let _ = c.kubectl(&["delete", "pvc", "-l", "app=db", "--wait=false"]);
}

/// web-0, web-1, web-2 each start only once the one before is Ready; each has its identity
/// and its claim `www-web-N`.
fn pods_start_in_order_each_with_its_claim(c: &LocalCluster) {
    c.kubectl_stdin(&["apply", "-f", "-"], &web(BUSYBOX));
    let out = rollout_status(c);
    assert!(out.contains("roll out complete"), "{out}");
    let all = pods(c);
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        names(3),
        "{}",
        wide(c)
    );
    for i in 1..3 {
        let before = &all[&format!("web-{}", i - 1)];
        let this = &all[&format!("web-{i}")];
        // Timestamps have one-second resolution; RFC 3339 UTC strings sort as times do.
        assert!(
            this.created >= *before.ready_since.as_ref().expect("ready"),
            "{} was created before {} was Ready: {all:?}",
            this.name,
            before.name
        );
    }
    let made = claims(c);
    for (i, (name, p)) in all.iter().enumerate() {
        assert_eq!(p.hostname, *name);
        assert_eq!(p.subdomain, "web");
        assert_eq!(p.claim, format!("www-web-{i}"));
        assert_eq!(
            p.labels["statefulset.kubernetes.io/pod-name"],
            name.as_str()
        );
        assert_eq!(p.labels["apps.kubernetes.io/pod-index"], i.to_string());
        assert!(
            p.labels["controller-revision-hash"]
                .as_str()
                .is_some_and(|h| h.starts_with("web-")),
            "{p:?}"
        );
        assert!(made.contains_key(&p.claim), "{made:?}");
    }
    let status = c.kubectl_ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.status.replicas} {.status.readyReplicas} {.status.availableReplicas} {.status.currentReplicas} {.status.updatedReplicas}",
    ]);
    assert_eq!(status, "3 3 3 3 3");
}

/// The headless Service's Endpoints and EndpointSlice name each pod by its hostname.
fn endpoints_carry_the_hostnames(c: &LocalCluster) {
    let hostnames = |json: &str, pointer: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        let mut out: Vec<String> = v
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a["hostname"].as_str().map(str::to_string))
            .collect();
        out.sort();
        out
    };
    let mut last = (Vec::new(), Vec::new());
    let published = wait_until(WAIT, || {
        let ep = c.kubectl_ok(&["get", "endpoints", "web", "-o", "json"]);
        let slices = c.kubectl_ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        ]);
        last = (
            hostnames(&ep, "/subsets/0/addresses"),
            hostnames(&slices, "/items/0/endpoints"),
        );
        last.0 == names(3) && last.1 == names(3)
    });
    assert!(published, "hostnames in Endpoints and slices: {last:?}");
}

/// The file web-1 writes into its claim.
const DATA: &str = "/usr/share/nginx/html/index.html";

/// The node a pod runs on.
fn node_of(c: &LocalCluster, pod: &str) -> String {
    c.kubectl_ok(&["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"])
}

/// `kubectl delete pod web-1`: a new web-1 (another uid) starts, with the same claim, on the
/// node that holds the claim's volume, and reads what the old one wrote.
fn a_deleted_pod_comes_back_with_its_name_and_claim(c: &LocalCluster) {
    let before = pods(c)["web-1"].clone();
    let claim_uid = claims(c)["www-web-1"].clone();
    // Each claim got the default class and was bound when its pod was scheduled.
    let bound = c.kubectl_ok(&[
        "get",
        "pvc",
        "www-web-1",
        "-o",
        "jsonpath={.status.phase} {.spec.storageClassName}",
    ]);
    assert_eq!(bound, "Bound local-path");
    let node = node_of(c, "web-1");
    c.kubectl_ok(&[
        "exec",
        "web-1",
        "--",
        "sh",
        "-c",
        &format!("echo written-by-web-1 > {DATA}"),
    ]);
    c.kubectl_ok(&["delete", "pod", "web-1"]);
    assert!(
        wait_until(WAIT, || pods(c).get("web-1").is_some_and(|p| {
            p.uid != before.uid && p.ready_since.is_some() && !p.deleting
        })),
        "web-1 comes back:\n{}",
        wide(c)
    );
    let after = pods(c)["web-1"].clone();
    assert_eq!(after.claim, "www-web-1");
    assert_eq!(
        claims(c)["www-web-1"],
        claim_uid,
        "the same claim, not a new one"
    );
    assert_eq!(
        node_of(c, "web-1"),
        node,
        "the claim's volume lives on one node"
    );
    let read = c.kubectl_ok(&["exec", "web-1", "--", "cat", DATA]);
    assert_eq!(read.trim(), "written-by-web-1");
}

/// An image change replaces web-2, then web-1, then web-0; history has both revisions and
/// `rollout undo` brings the first image back.
fn an_image_change_rolls_out_from_the_highest_ordinal(c: &LocalCluster) {
    c.kubectl_ok(&["set", "image", "sts/web", &format!("c={BUSYBOX_2}")]);
    let mut order: Vec<String> = Vec::new();
    let rolled = wait_until(WAIT, || {
        let all = pods(c);
        for p in all.values() {
            if p.image == BUSYBOX_2 && !order.contains(&p.name) {
                order.push(p.name.clone());
            }
        }
        all.len() == 3
            && all
                .values()
                .all(|p| p.image == BUSYBOX_2 && p.ready_since.is_some() && !p.deleting)
    });
    assert!(rolled, "the new image runs in every pod:\n{}", wide(c));
    assert_eq!(order, ["web-2", "web-1", "web-0"]);
    let out = rollout_status(c);
    assert!(out.contains("roll out complete: 3 new pods"), "{out}");
    let revisions = c.kubectl_ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.status.currentRevision} {.status.updateRevision}",
    ]);
    let (current, update) = revisions.split_once(' ').unwrap_or_default();
    assert_eq!(current, update, "the update is complete: {revisions}");

    let history = c.kubectl_ok(&["rollout", "history", "sts/web"]);
    let rows: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{history}");

    let out = c.kubectl_ok(&["rollout", "undo", "sts/web"]);
    assert!(out.contains("rolled back"), "{out}");
    assert!(
        wait_until(WAIT, || {
            let all = pods(c);
            all.len() == 3
                && all
                    .values()
                    .all(|p| p.image == BUSYBOX && p.ready_since.is_some() && !p.deleting)
        }),
        "undo brings the first image back:\n{}",
        wide(c)
    );
    let kubectl = rollout_status(c);
    // skiffctl's rollout commands say what kubectl's say.
    let kc = c.kubeconfig().display().to_string();
    let ours = skiffctl_ok(&["rollout", "status", "sts/web", "--kubeconfig", &kc]);
    assert_eq!(ours, kubectl);
    let theirs = c.kubectl_ok(&["rollout", "history", "sts/web"]);
    let ours = skiffctl_ok(&["rollout", "history", "sts/web", "--kubeconfig", &kc]);
    assert_eq!(ours, theirs);
}

/// Scaling to one removes web-2, then web-1; their claims stay (whenScaled: Retain).
fn scaling_down_removes_the_highest_ordinals_and_keeps_their_claims(c: &LocalCluster) {
    c.kubectl_ok(&["scale", "sts/web", "--replicas=1"]);
    let mut out_of_order = false;
    let done = wait_until(WAIT, || {
        let all = pods(c);
        // web-1 never goes while web-2 is still there.
        if all.contains_key("web-2") && (!all.contains_key("web-1") || all["web-1"].deleting) {
            out_of_order = true;
        }
        serving(c) == ["web-0"] && all.len() == 1
    });
    assert!(done, "only web-0 is left:\n{}", wide(c));
    assert!(!out_of_order, "web-1 went before web-2");
    assert_eq!(
        claims(c).into_keys().collect::<Vec<_>>(),
        ["www-web-0", "www-web-1", "www-web-2"],
        "claims outlive their pods"
    );
}
