//! PodDisruptionBudgets on a three-node local cluster, driven by the real kubectl: the
//! disruption controller's status as `kubectl get pdb` shows it, the eviction subresource
//! refusing with Kubernetes' 429, and `kubectl drain` retrying while the budget allows no
//! disruption and completing once it does. One cluster serves every scenario.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use skiff_e2e::{BUSYBOX, LocalCluster, ensure_busybox_image, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// A Deployment of `replicas` pods that sleep until SIGTERM (then exit at once).
fn deployment(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: c
        image: {BUSYBOX}
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

const BUDGET: &str = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
";

/// Ready pods of the Deployment not being deleted: (name, node).
fn serving(c: &LocalCluster) -> Vec<(String, String)> {
    let out = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "json"]);
    if !out.status.success() {
        return Vec::new();
    }
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .map(|p| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&p["metadata"]["name"]), s(&p["spec"]["nodeName"]))
        })
        .collect()
}

fn wide(c: &LocalCluster) -> String {
    String::from_utf8_lossy(&c.kubectl(&["get", "pods", "-o", "wide"]).stdout).into_owned()
}

fn budget_status(c: &LocalCluster) -> Value {
    let out = c.kubectl(&["get", "pdb", "web", "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)["status"].clone()
}

/// `kubectl get pdb web`'s row: NAME, MIN AVAILABLE, MAX UNAVAILABLE, ALLOWED DISRUPTIONS.
fn budget_row(c: &LocalCluster) -> Vec<String> {
    let out = c.kubectl(&["get", "pdb", "web", "--no-headers"]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .take(4)
        .map(String::from)
        .collect()
}

/// A child process whose stdout and stderr are collected as they come, killed on drop.
struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let output = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for pipe in pipes {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Running { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn exited(&mut self) -> Option<bool> {
        self.child.try_wait().expect("wait").map(|s| s.success())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kubectl proxy` on a free loopback port, for requests kubectl has no command for.
fn proxy(c: &LocalCluster) -> (Running, String) {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["proxy", "--port=0", "--address=127.0.0.1"]);
    let p = Running::spawn(cmd);
    let mut base = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            base = p
                .output()
                .lines()
                .find_map(|l| l.strip_prefix("Starting to serve on "))
                .map(|a| format!("http://{}", a.trim()))
                .unwrap_or_default();
            !base.is_empty()
        }),
        "kubectl proxy started: {}",
        p.output()
    );
    (p, base)
}

#[test]
fn pod_disruption_budgets_on_a_three_node_cluster() {
    ensure_busybox_image();
    let c = LocalCluster::create("e2e-pdb", 3, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX]);

    c.kubectl_stdin(&["apply", "-f", "-"], &deployment(2));
    assert!(
        wait_until(WAIT, || serving(&c).len() == 2),
        "two pods serve:\n{}",
        wide(&c)
    );
    c.kubectl_stdin(&["apply", "-f", "-"], BUDGET);

    let (_proxy, base) = proxy(&c);
    the_status_shows_no_disruption_allowed(&c);
    a_direct_eviction_is_refused_with_429(&c, &base);
    drain_waits_for_the_budget(&c);
    an_allowed_eviction_marks_the_pod(&c, &base);
    c.kubectl_ok(&["delete", "pdb", "web"]);
    c.kubectl_ok(&["delete", "deployment", "web"]);
}

/// An HTTP client for the loopback proxy, whatever proxy the environment names.
fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("an HTTP client")
}

/// POSTs an Eviction of `pod` (with `query`, e.g. `?dryRun=All`); the code and body.
fn evict(base: &str, pod: &str, query: &str) -> (u16, Value) {
    let reply = http()
        .post(format!(
            "{base}/api/v1/namespaces/default/pods/{pod}/eviction{query}"
        ))
        .json(&json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": pod, "namespace": "default"},
        }))
        .send()
        .expect("eviction request");
    let code = reply.status().as_u16();
    (code, reply.json().expect("a Status"))
}

/// The controller counts the two ready pods against `minAvailable: 2`.
fn the_status_shows_no_disruption_allowed(c: &LocalCluster) {
    assert!(
        wait_until(WAIT, || {
            let s = budget_status(c);
            s["observedGeneration"] == 1 && s["currentHealthy"] == 2 && s["expectedPods"] == 2
        }),
        "the budget's status: {}",
        budget_status(c)
    );
    let s = budget_status(c);
    assert_eq!(s["desiredHealthy"], 2, "{s}");
    assert_eq!(s["disruptionsAllowed"], 0, "{s}");
    let cond = s["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(cond["status"], "False", "{s}");
    assert_eq!(cond["reason"], "InsufficientPods", "{s}");
    assert_eq!(budget_row(c), ["web", "2", "N/A", "0"], "{s}");
}

/// POST .../eviction answers 429 TooManyRequests with Kubernetes' message and cause, and the
/// pod stays.
fn a_direct_eviction_is_refused_with_429(c: &LocalCluster, base: &str) {
    let (pod, _) = serving(c)[0].clone();
    let (code, body) = evict(base, &pod, "");
    assert_eq!(code, 429, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], 429, "{body}");
    assert_eq!(body["reason"], "TooManyRequests", "{body}");
    assert_eq!(
        body["message"], "Cannot evict pod as it would violate the pod's disruption budget.",
        "{body}"
    );
    assert_eq!(
        body["details"]["causes"],
        json!([{
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
        }]),
        "{body}"
    );
    assert!(
        serving(c).iter().any(|(p, _)| *p == pod),
        "the pod stays:\n{}",
        wide(c)
    );
}

/// Draining a node with one of the pods retries while the budget is 0; a third replica lets
/// it through.
fn drain_waits_for_the_budget(c: &LocalCluster) {
    let (pod, node) = serving(c)[0].clone();
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(c.kubeconfig()).args([
        "drain",
        &node,
        "--ignore-daemonsets",
        "--timeout=300s",
    ]);
    let mut drain = Running::spawn(cmd);
    assert!(
        wait_until(WAIT, || drain.output().contains(
            "Cannot evict pod as it would violate the pod's disruption budget"
        )),
        "drain is refused: {}",
        drain.output()
    );
    // Refused more than once, and still waiting: the budget holds.
    assert!(
        wait_until(WAIT, || drain
            .output()
            .matches("Cannot evict pod as it would violate")
            .count()
            >= 2),
        "drain retries: {}",
        drain.output()
    );
    assert_eq!(drain.exited(), None, "drain finished: {}", drain.output());
    assert!(
        serving(c).iter().any(|(p, _)| *p == pod),
        "the pod still serves:\n{}",
        wide(c)
    );

    c.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]);
    let mut finished = None;
    assert!(
        wait_until(Duration::from_secs(240), || {
            finished = drain.exited();
            finished.is_some()
        }),
        "drain completes once the budget allows: {}\n{}",
        drain.output(),
        wide(c)
    );
    assert_eq!(finished, Some(true), "{}", drain.output());
    assert!(
        drain.output().contains(&format!("node/{node} drained")),
        "{}",
        drain.output()
    );
    assert!(
        wait_until(WAIT, || {
            let s = serving(c);
            s.len() == 3 && s.iter().all(|(_, n)| *n != node)
        }),
        "the pods serve elsewhere:\n{}",
        wide(c)
    );
    assert!(
        wait_until(WAIT, || {
            let s = budget_status(c);
            s["currentHealthy"] == 3 && s["disruptionsAllowed"] == 1
        }),
        "one disruption allowed again: {}",
        budget_status(c)
    );
    c.kubectl_ok(&["uncordon", &node]);
}

/// With a disruption to spare, a dry run changes nothing; a real eviction marks the pod
/// `DisruptionTarget` (reason `EvictionByEvictionAPI`) before deleting it.
fn an_allowed_eviction_marks_the_pod(c: &LocalCluster, base: &str) {
    let (pod, _) = serving(c)[0].clone();
    let (code, body) = evict(base, &pod, "?dryRun=All");
    assert_eq!((code, &body["status"]), (201, &json!("Success")), "{body}");
    assert_eq!(
        budget_status(c)["disruptionsAllowed"],
        1,
        "a dry run spends nothing"
    );
    assert!(serving(c).iter().any(|(p, _)| *p == pod), "{}", wide(c));

    // Watch the pod from its current version, so that every change the eviction makes shows.
    let rv = c.kubectl_ok(&[
        "get",
        "pod",
        &pod,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let (code, body) = evict(base, &pod, "");
    assert_eq!((code, &body["status"]), (201, &json!("Success")), "{body}");
    let watch = http()
        .get(format!(
            "{base}/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3D{pod}"
        ))
        .send()
        .expect("watch");
    let mut marked = None;
    let mut seen = Vec::new();
    for line in BufReader::new(watch).lines().map_while(Result::ok) {
        let event: Value = serde_json::from_str(&line).unwrap_or_default();
        let object = &event["object"];
        seen.push(format!(
            "{} {}",
            event["type"], object["status"]["conditions"]
        ));
        if let Some(cond) = object["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
        {
            marked = Some(cond.clone());
            break;
        }
        if event["type"] == "DELETED" {
            break;
        }
    }
    let cond = marked.unwrap_or_else(|| panic!("no DisruptionTarget condition: {seen:#?}"));
    assert_eq!(cond["status"], "True", "{cond}");
    assert_eq!(cond["reason"], "EvictionByEvictionAPI", "{cond}");
    assert_eq!(cond["message"], "Eviction API: evicting", "{cond}");
    assert!(
        wait_until(WAIT, || !serving(c).iter().any(|(p, _)| *p == pod)
            && serving(c).len() == 3),
        "the evicted pod is replaced:\n{}",
        wide(c)
    );
}
