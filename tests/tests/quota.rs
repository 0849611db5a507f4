//! ResourceQuota and LimitRange on a local cluster, driven with the real kubectl: a quota of
//! two pods refuses the third with Kubernetes' message until one is deleted and the quota
//! controller lowers its usage; a LimitRange's defaults appear in a new pod's spec and its
//! `max` refuses a larger pod; a compute quota refuses a pod that states no cpu request; and
//! `kubectl get quota`, `describe quota` and `describe limits` print what kubectl prints.
//!
//! A second test, on a bare apiserver, races creates against a quota: admission charges the
//! quota by compare-and-swap before storing, so no more pods are admitted than it allows.
//!
//! Quota and LimitRange are apiserver admission and a controller-manager controller: nothing
//! depends on the number of nodes, so one node is enough (it runs the admitted pods).

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use skiff_e2e::{ApiServer, BUSYBOX, Backend, LocalCluster, ensure_busybox_image, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// `kubectl <args>` with `manifest` on stdin, success or not.
fn kubectl_with(c: &LocalCluster, args: &[&str], manifest: &Value) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.to_string().as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl")
}

fn pod(name: &str, resources: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"], "resources": resources,
            }],
        },
    })
}

/// Creates `obj` in `ns`, asserting success.
fn create(c: &LocalCluster, ns: &str, obj: &Value) {
    let out = kubectl_with(c, &["create", "-n", ns, "-f", "-"], obj);
    assert!(
        out.status.success(),
        "kubectl create {}: {}",
        obj["metadata"]["name"],
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates `obj` in `ns`, asserting kubectl fails with exit code 1 and exactly `message`.
fn refused(c: &LocalCluster, ns: &str, obj: &Value, message: &str) {
    let out = kubectl_with(c, &["create", "-n", ns, "-f", "-"], obj);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("Error from server (Forbidden): error when creating \"STDIN\": {message}")
    );
}

fn quota_status(c: &LocalCluster, ns: &str, name: &str) -> Value {
    let out = c.kubectl(&["get", "quota", name, "-n", ns, "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)["status"].clone()
}

/// Waits until the quota controller has recorded `used` for resource `r`.
fn wait_used(c: &LocalCluster, ns: &str, name: &str, r: &str, used: &str) {
    assert!(
        wait_until(WAIT, || quota_status(c, ns, name)["used"][r] == used),
        "quota {ns}/{name}: {r} never used {used}: {}",
        quota_status(c, ns, name)
    );
}

fn a_quota_of_two_pods_refuses_the_third_until_one_is_deleted(c: &LocalCluster) {
    c.kubectl_ok(&["create", "namespace", "counted"]);
    let quota = json!({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pod-count"},
        "spec": {"hard": {"pods": "2"}},
    });
    create(c, "counted", &quota);
    // Admission enforces what the controller has recorded in status.hard, as upstream.
    wait_used(c, "counted", "pod-count", "pods", "0");
    create(c, "counted", &pod("one", json!({})));
    create(c, "counted", &pod("two", json!({})));
    refused(
        c,
        "counted",
        &pod("three", json!({})),
        "pods \"three\" is forbidden: exceeded quota: pod-count, requested: pods=1, used: pods=2, limited: pods=2",
    );
    assert_eq!(quota_status(c, "counted", "pod-count")["used"]["pods"], "2");

    c.kubectl_ok(&["delete", "pod", "one", "-n", "counted", "--wait=true"]);
    wait_used(c, "counted", "pod-count", "pods", "1");
    create(c, "counted", &pod("three", json!({})));
    assert_eq!(quota_status(c, "counted", "pod-count")["used"]["pods"], "2");
}

fn a_limit_range_defaults_and_bounds_pods(c: &LocalCluster) {
    c.kubectl_ok(&["create", "namespace", "limited"]);
    let range = json!({
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
        "spec": {"limits": [{
            "type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            "max": {"cpu": "1", "memory": "1Gi"},
        }]},
    });
    create(c, "limited", &range);
    create(c, "limited", &pod("plain", json!({})));
    let got: Value = serde_json::from_str(
        &c.kubectl_ok(&["get", "pod", "plain", "-n", "limited", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(
        got["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"},
               "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    assert_eq!(
        got["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );
    refused(
        c,
        "limited",
        &pod("big", json!({"limits": {"memory": "2Gi"}})),
        "pods \"big\" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi",
    );

    let describe = c.kubectl_ok(&["describe", "limits", "limits", "-n", "limited"]);
    let rows: Vec<Vec<&str>> = describe
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for row in [
        ["Container", "cpu", "-", "1", "100m", "500m", "-"],
        ["Container", "memory", "-", "1Gi", "128Mi", "256Mi", "-"],
    ] {
        assert!(rows.iter().any(|r| r == &row), "{row:?} in:\n{describe}");
    }
}

fn a_compute_quota_wants_requests_and_counts_them(c: &LocalCluster) {
    c.kubectl_ok(&["create", "namespace", "computed"]);
    let quota = json!({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
        "spec": {"hard": {"requests.cpu": "1", "requests.memory": "1Gi", "pods": "10"}},
    });
    create(c, "computed", &quota);
    wait_used(c, "computed", "compute", "requests.cpu", "0");
    refused(
        c,
        "computed",
        &pod("bare", json!({})),
        "pods \"bare\" is forbidden: failed quota: compute: must specify requests.cpu for: c; requests.memory for: c",
    );
    let sized = json!({"requests": {"cpu": "600m", "memory": "256Mi"}});
    create(c, "computed", &pod("sized", sized.clone()));
    refused(
        c,
        "computed",
        &pod("more", sized),
        "pods \"more\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1",
    );

    let table = c.kubectl_ok(&["get", "quota", "-n", "computed"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "AGE", "REQUEST", "LIMIT"], "{table}");
    assert!(
        table.contains("pods: 1/10, requests.cpu: 600m/1, requests.memory: 256Mi/1Gi"),
        "{table}"
    );
    let describe = c.kubectl_ok(&["describe", "quota", "compute", "-n", "computed"]);
    let rows: Vec<Vec<&str>> = describe
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for row in [
        vec!["Resource", "Used", "Hard"],
        vec!["pods", "1", "10"],
        vec!["requests.cpu", "600m", "1"],
        vec!["requests.memory", "256Mi", "1Gi"],
    ] {
        assert!(rows.contains(&row), "{row:?} in:\n{describe}");
    }
}

#[test]
fn quotas_and_limit_ranges_on_a_one_node_cluster() {
    ensure_busybox_image();
    let c = LocalCluster::create("e2e-quota", 1, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX]);
    a_quota_of_two_pods_refuses_the_third_until_one_is_deleted(&c);
    a_limit_range_defaults_and_bounds_pods(&c);
    a_compute_quota_wants_requests_and_counts_them(&c);
}

/// Twelve pods created at once against a quota of three: exactly three are admitted, each
/// refusal is upstream's 403, and the quota's `used` shows the three (no controller runs: only
/// admission's charges move it).
#[test]
fn racing_creates_take_no_more_than_the_quota() {
    let server = ApiServer::start(Backend::Embedded);
    let http = server.http();
    let quotas = "/api/v1/namespaces/default/resourcequotas";
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
                       "metadata": {"name": "three"}, "spec": {"hard": {"pods": "3"}}});
    assert_eq!(http.post_json(quotas, &quota).status, 201);
    // What the quota controller would record.
    let mut status = http.get(&format!("{quotas}/three")).json();
    status["status"] = json!({"hard": {"pods": "3"}, "used": {"pods": "0"}});
    let put = http.put_json(&format!("{quotas}/three/status"), &status);
    assert_eq!(put.status, 200, "{}", put.body);

    let racers: Vec<_> = (0..12)
        .map(|i| {
            let http = http.clone();
            std::thread::spawn(move || {
                let mut p = pod(&format!("racer-{i}"), json!({}));
                p["metadata"]["namespace"] = json!("default");
                http.post_json("/api/v1/namespaces/default/pods", &p)
            })
        })
        .collect();
    let replies: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let admitted = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(admitted, 3, "{replies:?}");
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(r.status, 403, "{}", r.body);
        let message = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(
            message.ends_with(
                "is forbidden: exceeded quota: three, requested: pods=1, used: pods=3, limited: pods=3"
            ),
            "{message}"
        );
    }
    let used = http.get(&format!("{quotas}/three")).json()["status"]["used"]["pods"].clone();
    assert_eq!(used, "3");
}

/// A claim that asks for more storage is charged the difference: resized past the quota, it is
/// refused with upstream's message; resized within, `used` grows by what it added.
#[test]
fn a_claim_resized_past_its_quota_is_refused() {
    let server = ApiServer::start(Backend::Embedded);
    let http = server.http();
    let quotas = "/api/v1/namespaces/default/resourcequotas";
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
                       "metadata": {"name": "storage"},
                       "spec": {"hard": {"requests.storage": "3Gi"}}});
    assert_eq!(http.post_json(quotas, &quota).status, 201);
    let mut status = http.get(&format!("{quotas}/storage")).json();
    status["status"] = json!({"hard": {"requests.storage": "3Gi"},
                              "used": {"requests.storage": "0"}});
    assert_eq!(
        http.put_json(&format!("{quotas}/storage/status"), &status)
            .status,
        200
    );
    let claims = "/api/v1/namespaces/default/persistentvolumeclaims";
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                       "metadata": {"name": "data"},
                       "spec": {"accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": "1Gi"}}}});
    let created = http.post_json(claims, &claim);
    assert_eq!(created.status, 201, "{}", created.body);
    let used = || http.get(&format!("{quotas}/storage")).json()["status"]["used"].clone();
    assert_eq!(used(), json!({"requests.storage": "1Gi"}));

    let resize = |size: &str| {
        let mut c = http.get(&format!("{claims}/data")).json();
        c["spec"]["resources"]["requests"]["storage"] = json!(size);
        http.put_json(&format!("{claims}/data"), &c)
    };
    let refused = resize("4Gi");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.json()["message"],
        "persistentvolumeclaims \"data\" is forbidden: exceeded quota: storage, requested: requests.storage=3Gi, used: requests.storage=1Gi, limited: requests.storage=3Gi"
    );
    assert_eq!(used(), json!({"requests.storage": "1Gi"}));
    let grown = resize("2Gi");
    assert_eq!(grown.status, 200, "{}", grown.body);
    assert_eq!(used(), json!({"requests.storage": "2Gi"}));
}
