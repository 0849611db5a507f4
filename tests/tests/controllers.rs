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

/// Plays the kubelet for every pod of a namespace: marks each pod Running and Ready shortly
/// after it appears. Stops on drop.
struct ReadyMaker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadyMaker {
    fn start(server: &ApiServer, ns: &str) -> ReadyMaker {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let http = server.http();
        let ns = ns.to_string();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let list = http.get(&format!("/api/v1/namespaces/{ns}/pods")).json();
                for pod in list["items"].as_array().into_iter().flatten() {
                    let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                    if ready || !pod["metadata"]["deletionTimestamp"].is_null() {
                        continue;
                    }
                    let mut p = pod.clone();
                    p["status"] = json!({"phase": "Running", "podIP": "10.244.9.9", "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
                    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    let _ =
                        http.put_json(&format!("/api/v1/namespaces/{ns}/pods/{name}/status"), &p);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        ReadyMaker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ReadyMaker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const WEB_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: skiff-test/web:v1
";

fn rollout_status(server: &ApiServer, name: &str) -> String {
    server.kubectl_ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=60s",
    ])
}

fn image_of(pod: &Value) -> String {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn deployment_rolls_within_surge_and_unavailability_and_rolls_back() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    let _kubelet = ReadyMaker::start(&server, "default");
    server.kubectl_stdin_ok(&["apply", "-f", "-"], WEB_DEPLOYMENT);
    let out = rollout_status(&server, "web");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    assert_eq!(pods(&server, "default", "app=web").len(), 4);

    // Watch every pod change during the rollout and check the bounds at each step.
    let list = server.kubectl_json(&["get", "pods", "-l", "app=web"]);
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut watch = server.http().watch(&format!(
        "/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"
    ));
    let mut live: std::collections::BTreeMap<String, Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), p))
        .collect();
    assert_eq!(live.len(), 4);
    server.kubectl_ok(&[
        "annotate",
        "deployment",
        "web",
        "kubernetes.io/change-cause=v2 image",
    ]);
    server.kubectl_ok(&["set", "image", "deployment/web", "web=skiff-test/web:v2"]);
    let deadline = std::time::Instant::now() + WAIT;
    let (mut max_total, mut min_ready) = (0usize, usize::MAX);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "rollout did not finish; live pods: {:?}",
            live.keys()
        );
        let Some(ev) = watch.next(Duration::from_secs(5)) else {
            continue;
        };
        let name = ev["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let gone =
            ev["type"] == "DELETED" || !ev["object"]["metadata"]["deletionTimestamp"].is_null();
        if gone {
            live.remove(&name);
        } else if ev["type"] == "ADDED" || ev["type"] == "MODIFIED" {
            live.insert(name, ev["object"].clone());
        }
        let ready = live
            .values()
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        max_total = max_total.max(live.len());
        min_ready = min_ready.min(ready);
        assert!(
            live.len() <= 5,
            "above replicas + maxSurge: {:?}",
            live.keys()
        );
        assert!(
            ready >= 3,
            "below replicas - maxUnavailable ({ready} ready): {:?}",
            live.keys()
        );
        if live.len() == 4
            && ready == 4
            && live.values().all(|p| image_of(p) == "skiff-test/web:v2")
        {
            break;
        }
    }
    assert_eq!(max_total, 5, "the rollout used its surge");
    let out = rollout_status(&server, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = server.kubectl_json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let history = server.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2         v2 image"),
        "{history}"
    );
    let rs = server.kubectl_json(&["get", "rs", "-l", "app=web"]);
    assert_eq!(
        rs["items"].as_array().map(Vec::len),
        Some(2),
        "old and new ReplicaSets"
    );

    // Undo restores the previous template, as revision 3.
    server.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    let out = rollout_status(&server, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    assert!(
        wait_until(WAIT, || {
            let now = pods(&server, "default", "app=web");
            now.len() == 4 && now.iter().all(|p| image_of(p) == "skiff-test/web:v1")
        }),
        "pods back on v1"
    );
    let d = server.kubectl_json(&["get", "deployment", "web"]);
    assert_eq!(image_of(&d["spec"]["template"]), "skiff-test/web:v1");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let conds = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True"),
        "{conds:?}"
    );
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable"),
        "{conds:?}"
    );
    let describe = server.kubectl_ok(&["describe", "deployment", "web"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");

    // Scale, pause, resume, restart.
    server.kubectl_ok(&["scale", "deployment/web", "--replicas=6"]);
    assert!(
        wait_until(WAIT, || pods(&server, "default", "app=web").len() == 6),
        "scaled to 6"
    );
    server.kubectl_ok(&["rollout", "pause", "deployment/web"]);
    server.kubectl_ok(&["set", "image", "deployment/web", "web=skiff-test/web:v3"]);
    assert!(
        wait_until(WAIT, || {
            let d = server.kubectl_json(&["get", "deployment", "web"]);
            d["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "DeploymentPaused"))
        }),
        "paused is reported"
    );
    assert!(
        pods(&server, "default", "app=web")
            .iter()
            .all(|p| image_of(p) == "skiff-test/web:v1"),
        "a paused deployment does not roll"
    );
    server.kubectl_ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&server, "web");
    assert!(
        wait_until(WAIT, || {
            let now = pods(&server, "default", "app=web");
            now.len() == 6 && now.iter().all(|p| image_of(p) == "skiff-test/web:v3")
        }),
        "resumed rollout reaches v3"
    );
    server.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    let out = rollout_status(&server, "web");
    assert!(out.contains("successfully rolled out"), "{out}");

    // Deleting the Deployment removes its ReplicaSets and pods.
    server.kubectl_ok(&["delete", "deployment", "web"]);
    assert!(
        wait_until(WAIT, || {
            server.kubectl_json(&["get", "rs"])["items"]
                .as_array()
                .is_some_and(Vec::is_empty)
                && pods(&server, "default", "app=web").is_empty()
        }),
        "ReplicaSets and pods are collected"
    );
}

#[test]
fn foreground_and_orphan_deletion() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    server.kubectl_stdin_ok(&["apply", "-f", "-"], WEB_DEPLOYMENT);
    assert!(wait_until(WAIT, || pods(&server, "default", "app=web")
        .len()
        == 4));
    // Orphan: the ReplicaSet and pods stay, without the owner reference.
    server.kubectl_ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    assert!(
        wait_until(WAIT, || {
            let rs = server.kubectl_json(&["get", "rs"]);
            server.kubectl(&["get", "deployment", "web"]).status.code() == Some(1)
                && rs["items"].as_array().is_some_and(|i| {
                    i.len() == 1
                        && i[0]["metadata"]["ownerReferences"]
                            .as_array()
                            .is_none_or(Vec::is_empty)
                })
        }),
        "the ReplicaSet is orphaned and the Deployment gone"
    );
    assert_eq!(pods(&server, "default", "app=web").len(), 4);
    // Foreground: the owner waits for its dependents.
    let rs_name = server.kubectl_json(&["get", "rs"])["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    server.kubectl_ok(&[
        "delete",
        "rs",
        &rs_name,
        "--cascade=foreground",
        "--wait=true",
        "--timeout=30s",
    ]);
    assert!(
        pods(&server, "default", "app=web").is_empty(),
        "pods went before their owner"
    );
}

#[test]
fn deleting_a_namespace_empties_it() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    server.kubectl_ok(&["create", "namespace", "scratch"]);
    server.kubectl_ok(&[
        "create",
        "configmap",
        "c1",
        "-n",
        "scratch",
        "--from-literal=a=b",
    ]);
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        "-n",
        "scratch",
        "--from-literal=a=b",
    ]);
    server.kubectl_stdin_ok(&["apply", "-n", "scratch", "-f", "-"], WEB_DEPLOYMENT);
    assert!(wait_until(WAIT, || pods(&server, "scratch", "app=web")
        .len()
        == 4));
    server.kubectl_ok(&["delete", "namespace", "scratch", "--timeout=60s"]);
    let out = server.kubectl(&["get", "namespace", "scratch"]);
    assert_eq!(out.status.code(), Some(1), "the namespace is gone");
    let leftovers = server.kubectl_ok(&["get", "all,cm,secrets", "-A", "-o", "name"]);
    assert!(!leftovers.contains("scratch"), "{leftovers}");
}

#[test]
fn endpoints_follow_readiness_and_nodes_get_pod_cidrs() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    skiff_e2e::node("n1")
        .internal_ip("192.0.2.21")
        .create(&server);
    skiff_e2e::node("n2")
        .internal_ip("192.0.2.22")
        .create(&server);
    assert!(
        wait_until(WAIT, || {
            let n1 = server.kubectl_json(&["get", "node", "n1"]);
            let n2 = server.kubectl_json(&["get", "node", "n2"]);
            n1["spec"]["podCIDR"].is_string()
                && n2["spec"]["podCIDR"].is_string()
                && n1["spec"]["podCIDR"] != n2["spec"]["podCIDR"]
        }),
        "each node gets its own /24"
    );
    let cidr = server.kubectl_json(&["get", "node", "n1"])["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        cidr.starts_with("10.244.") && cidr.ends_with("/24"),
        "{cidr}"
    );

    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web}
spec:
  containers:
  - name: c
    image: x
    ports: [{name: http, containerPort: 8080}]
",
    );
    let set_status = |ready: bool| {
        let http = server.http();
        let mut pod = http.get("/api/v1/namespaces/default/pods/web-1").json();
        pod["status"] = json!({"phase": "Running", "podIP": "10.244.3.7", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        assert_eq!(
            http.put_json("/api/v1/namespaces/default/pods/web-1/status", &pod)
                .status,
            200
        );
    };
    set_status(false);
    assert!(
        wait_until(WAIT, || {
            let ep = server.kubectl_json(&["get", "endpoints", "web"]);
            ep["subsets"][0]["notReadyAddresses"][0]["ip"] == "10.244.3.7"
                && ep["subsets"][0]["addresses"].is_null()
        }),
        "not ready: {}",
        server.kubectl_json(&["get", "endpoints", "web"])
    );
    set_status(true);
    assert!(
        wait_until(WAIT, || {
            let ep = server.kubectl_json(&["get", "endpoints", "web"]);
            ep["subsets"][0]["addresses"][0]["ip"] == "10.244.3.7"
                && ep["subsets"][0]["ports"][0]["port"] == 8080
        }),
        "ready, named port resolved: {}",
        server.kubectl_json(&["get", "endpoints", "web"])
    );
    let slices = server.kubectl_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let ep = &slices["items"][0]["endpoints"][0];
    assert_eq!(ep["addresses"][0], "10.244.3.7");
    assert_eq!(ep["conditions"]["ready"], true);
    let table = server.kubectl_ok(&["get", "endpoints", "web"]);
    assert!(table.contains("10.244.3.7:8080"), "{table}");
    server.kubectl_ok(&["delete", "pod", "web-1"]);
    assert!(
        wait_until(WAIT, || {
            server.kubectl_json(&["get", "endpoints", "web"])["subsets"].is_null()
        }),
        "no pods, no addresses"
    );
}

/// kubectl describe svc dereferences every EndpointSlice port's `name`, which Kubernetes always
/// sets (`""` for an unnamed port): slices without it made the real kubectl panic.
#[test]
fn kubectl_describe_svc_prints_endpoints_of_unnamed_and_named_ports() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: Service
metadata:
  name: plain
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: named
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9090, targetPort: 9090}
---
apiVersion: v1
kind: Service
metadata:
  name: lonely
spec:
  selector: {app: nobody}
  ports:
  - {port: 80}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web}
spec:
  containers:
  - name: c
    image: x
    ports: [{name: http, containerPort: 8080}]
",
    );
    make_ready(&server, "default", "web-1");
    let ready_endpoints = |svc: &str| {
        let list = server.kubectl_json(&[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count()
    };
    assert!(
        wait_until(WAIT, || ready_endpoints("plain") == 1
            && ready_endpoints("named") == 1),
        "slices with the ready pod: {}",
        server.kubectl_json(&["get", "endpointslices"])
    );
    let describe = |svc: &str| {
        let out = server.kubectl(&["describe", "svc", svc]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "kubectl describe svc {svc}: {stdout}{stderr}"
        );
        stdout
    };
    let endpoints_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("Endpoints:"))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let plain = describe("plain");
    assert_eq!(endpoints_lines(&plain), ["10.244.9.9:8080"], "{plain}");
    let named = describe("named");
    assert_eq!(
        endpoints_lines(&named),
        ["10.244.9.9:8080", "10.244.9.9:9090"],
        "{named}"
    );
    // Without endpoints there is still the placeholder slice (no ports), as in Kubernetes,
    // so kubectl prints an empty list rather than `<none>`.
    let lonely = describe("lonely");
    assert_eq!(endpoints_lines(&lonely), [""], "{lonely}");
    let slices = server.kubectl_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=plain",
    ]);
    assert_eq!(slices["items"][0]["ports"][0]["name"], "", "{slices}");
}

#[test]
fn a_node_that_stops_renewing_its_lease_is_tainted_and_its_pods_move() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start_with_args(
        &server,
        &[
            "--leader-elect=false",
            "--node-monitor-grace-period=4s",
            "--node-monitor-period=1s",
        ],
    );
    let _sched = skiff_e2e::Scheduler::start(&server);
    // Heartbeats every 500 ms, so a 4 s grace period tells live nodes from dead ones.
    let fast = ["--node-lease-duration-seconds=2"];
    let mut a =
        skiff_e2e::Kubelet::start_fake_with_args(&server, "life-a", "10.200.10.0/24", &fast);
    let _b = skiff_e2e::Kubelet::start_fake_with_args(&server, "life-b", "10.200.11.0/24", &fast);
    // Pods tolerate an unreachable node for 2 s instead of the default 300 s.
    server.kubectl_stdin_ok(&["apply", "-f", "-"], "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 4
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - {name: c, image: skiff-test/app:1}
");
    let on = |node: &str| -> Vec<Value> {
        pods(&server, "default", "app=app")
            .into_iter()
            .filter(|p| {
                p["spec"]["nodeName"] == node && p["metadata"]["deletionTimestamp"].is_null()
            })
            .collect()
    };
    assert!(
        wait_until(WAIT, || on("life-a").len() + on("life-b").len() == 4
            && !on("life-a").is_empty()),
        "pods spread over both nodes: a={} b={}",
        on("life-a").len(),
        on("life-b").len()
    );
    rollout_status(&server, "app");

    a.kill();
    assert!(
        wait_until(WAIT, || {
            let n = server.kubectl_json(&["get", "node", "life-a"]);
            let ready = n["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned());
            let tainted = n["spec"]["taints"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"
                })
            });
            tainted && ready.is_some_and(|r| r["status"] == "Unknown")
        }),
        "the dead node is Unknown and tainted: {}",
        server.kubectl_json(&["get", "node", "life-a"])
    );
    assert!(
        wait_until(WAIT, || on("life-a").is_empty() && on("life-b").len() == 4),
        "its pods are evicted and recreated on the live node: a={} b={}",
        on("life-a").len(),
        on("life-b").len()
    );
    let out = rollout_status(&server, "app");
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[test]
fn kubectl_drain_evicts_pods_and_their_replica_set_replaces_them_elsewhere() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    let _sched = skiff_e2e::Scheduler::start(&server);
    let _a = skiff_e2e::Kubelet::start_fake(&server, "drain-a", "10.200.12.0/24");
    let _b = skiff_e2e::Kubelet::start_fake(&server, "drain-b", "10.200.13.0/24");
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: drained
spec:
  replicas: 4
  selector:
    matchLabels: {app: drained}
  template:
    metadata:
      labels: {app: drained}
    spec:
      containers:
      - {name: c, image: skiff-test/app:1}
",
    );
    let on = |node: &str| -> usize {
        pods(&server, "default", "app=drained")
            .iter()
            .filter(|p| {
                p["spec"]["nodeName"] == node && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count()
    };
    assert!(
        wait_until(WAIT, || on("drain-a") + on("drain-b") == 4
            && on("drain-a") > 0),
        "pods on both nodes: a={} b={}",
        on("drain-a"),
        on("drain-b")
    );
    let out = server.kubectl_ok(&["drain", "drain-a", "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.contains("node/drain-a drained"), "{out}");
    assert!(out.contains("evicting pod default/drained-"), "{out}");
    let node = server.kubectl_json(&["get", "node", "drain-a"]);
    assert_eq!(
        node["spec"]["unschedulable"], true,
        "drain cordons the node"
    );
    assert!(
        wait_until(WAIT, || on("drain-a") == 0 && on("drain-b") == 4),
        "replacements run on the other node: a={} b={}",
        on("drain-a"),
        on("drain-b")
    );
}
