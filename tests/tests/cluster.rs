//! The seeds' scenarios on a three-node local cluster (`skiffctl cluster create --nodes 3`),
//! driven with the real kubectl, once on the embedded store and once with `--etcd`: every node
//! is a network namespace with its own Docker engine, kubelet and proxy, so pods really run,
//! get addresses, reach each other across nodes and through Services, heal, scale, roll out,
//! drain and move off a stopped node. Traffic goes only to the cluster's own addresses.
//!
//! The figures the suite prints (`figure: ...`) are recorded in BENCHMARKS.md.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_e2e::{BUSYBOX, LocalCluster, ensure_busybox_image, skiffctl, wait_until};

/// A second tag of the test image, for `set image` and `rollout undo`.
const BUSYBOX_2: &str = "skiff-test/busybox:2";
const WAIT: Duration = Duration::from_secs(90);
/// Sleeps until SIGTERM, then exits at once (a shell as PID 1 ignores signals it does not
/// trap, which would make every deletion wait out the 30 s grace period).
const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

#[derive(Debug, Clone)]
struct PodRow {
    name: String,
    phase: String,
    node: String,
    ip: String,
    ready: bool,
    deleting: bool,
    restarts: i64,
    image: String,
    waiting: String,
}

fn pods(c: &LocalCluster, selector: &str) -> Vec<PodRow> {
    let mut args = vec!["get", "pods", "-o", "json"];
    if !selector.is_empty() {
        args.extend(["-l", selector]);
    }
    let out = c.kubectl(&args);
    if !out.status.success() {
        return Vec::new();
    }
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|p| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let statuses = p["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            PodRow {
                name: s(&p["metadata"]["name"]),
                phase: s(&p["status"]["phase"]),
                node: s(&p["spec"]["nodeName"]),
                ip: s(&p["status"]["podIP"]),
                ready: p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                }),
                deleting: !p["metadata"]["deletionTimestamp"].is_null(),
                restarts: statuses
                    .first()
                    .and_then(|c| c["restartCount"].as_i64())
                    .unwrap_or(0),
                image: s(&p["spec"]["containers"][0]["image"]),
                waiting: statuses
                    .first()
                    .map(|c| s(&c["state"]["waiting"]["reason"]))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Running, ready and not being deleted.
fn serving(c: &LocalCluster, selector: &str) -> Vec<PodRow> {
    pods(c, selector)
        .into_iter()
        .filter(|p| p.phase == "Running" && p.ready && !p.deleting)
        .collect()
}

fn wide(c: &LocalCluster) -> String {
    String::from_utf8_lossy(&c.kubectl(&["get", "pods", "-o", "wide"]).stdout).into_owned()
}

fn wait_serving(c: &LocalCluster, selector: &str, n: usize, what: &str) -> Vec<PodRow> {
    assert!(
        wait_until(WAIT, || serving(c, selector).len() == n),
        "{what}: want {n} serving pods for {selector}\n{}",
        wide(c)
    );
    serving(c, selector)
}

/// An HTTP GET from inside pod `pod` with busybox `nc` (the body's last line).
fn get_from_pod(c: &LocalCluster, pod: &str, host: &str, port: u16) -> Option<String> {
    let out = c.kubectl(&[
        "exec",
        pod,
        "--",
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}"),
    ]);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && body.starts_with("HTTP/1."))
        .then(|| body.lines().last().unwrap_or_default().trim().to_string())
}

/// An HTTP GET from the host (curl) to a node's address.
fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "3", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn node_ip(c: &LocalCluster, node: &str) -> String {
    c.kubectl_ok(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ])
}

fn containers_on(c: &LocalCluster, i: u32) -> Vec<String> {
    let out = Command::new("docker")
        .args(["-H", &c.docker_socket(i), "ps", "-aq"])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

const WEB_RC: &str = "\
apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 3
  selector:
    app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: skiff-test/busybox:1
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; mkdir -p /www; hostname > /www/index.html; httpd -f -p 80 -h /www & wait\"]
        ports:
        - containerPort: 80
";

const CONFIG_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: configured
spec:
  containers:
  - name: app
    image: skiff-test/busybox:1
    imagePullPolicy: Never
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef: {name: settings, key: greeting}
    - name: PASSWORD
      valueFrom:
        secretKeyRef: {name: credentials, key: password}
    volumeMounts:
    - {name: settings, mountPath: /etc/settings}
    - {name: credentials, mountPath: /etc/credentials}
  volumes:
  - name: settings
    configMap: {name: settings}
  - name: credentials
    secret: {secretName: credentials}
";

const BUNDLE: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: bundle
data:
  a: \"1\"
---
apiVersion: v1
kind: Service
metadata:
  name: bundle
spec:
  selector: {app: bundle}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bundle
spec:
  replicas: 1
  selector:
    matchLabels: {app: bundle}
  template:
    metadata:
      labels: {app: bundle}
    spec:
      containers:
      - name: app
        image: skiff-test/busybox:1
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]
";

/// `skiffctl cluster create` turns encryption at rest on: a Secret's value is in no file of
/// the store (etcd's data dir, write-ahead log included, or the embedded store), yet kubectl
/// reads it; the key file is the owner's only.
fn secrets_are_encrypted_at_rest(c: &LocalCluster, etcd: bool) {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt as _;
    let value = format!("walk-secret-{}", std::process::id());
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "walk-secret",
        &format!("--from-literal=v={value}"),
    ]);
    let got = c.kubectl_ok(&["get", "secret", "walk-secret", "-o", "jsonpath={.data.v}"]);
    assert_eq!(
        got,
        base64::engine::general_purpose::STANDARD.encode(&value)
    );
    let config = c.dir().join("apiserver/encryption-config.yaml");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", config.display());
    let store = if etcd {
        c.dir().join("etcd")
    } else {
        c.dir().join("apiserver/db")
    };
    let grep = Command::new("grep")
        .args(["-r", "-q", "-F", "-a", &value])
        .arg(&store)
        .status()
        .expect("run grep");
    assert_eq!(grep.code(), Some(1), "{value} is in {}", store.display());
    c.kubectl_ok(&["delete", "secret", "walk-secret"]);
}

fn walk(etcd: bool) {
    ensure_busybox_image();
    let tagged = Command::new("docker")
        .args(["tag", BUSYBOX, BUSYBOX_2])
        .status()
        .expect("docker tag");
    assert!(tagged.success());
    let store = if etcd { "etcd" } else { "embedded" };
    let name = if etcd { "e2e-etcd" } else { "e2e-embedded" };
    // Short heartbeats, so that a stopped node is noticed within seconds.
    let c = LocalCluster::create(name, 3, etcd, &["--node-monitor-grace-period", "8s"]);
    println!(
        "figure: cluster create, 3 nodes, {store}: {:.2} s",
        c.create_time.as_secs_f64()
    );
    let t0 = Instant::now();
    let phase = |what: &str| println!("phase: {what} done at {:.1} s", t0.elapsed().as_secs_f64());
    let nodes: Vec<String> = (1..=3).map(|i| c.node_name(i)).collect();
    let got = c.kubectl_ok(&["get", "nodes", "-o", "name"]);
    for n in &nodes {
        assert!(got.contains(&format!("node/{n}")), "{got}");
    }
    secrets_are_encrypted_at_rest(&c, etcd);
    for (component, kb) in c.component_rss() {
        println!(
            "figure: idle RSS, {store}, {component}: {:.1} MB",
            kb as f64 / 1024.0
        );
    }
    c.skiffctl_ok("load-image", &[BUSYBOX, BUSYBOX_2]);

    // A ReplicationController of 3: running, spread over the nodes, healing, scaled.
    c.kubectl_stdin(&["apply", "-f", "-"], WEB_RC);
    let web = wait_serving(&c, "app=web", 3, "the RC's pods run");
    let spread: BTreeSet<&str> = web.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(spread.len(), 3, "one pod per node:\n{}", wide(&c));
    assert!(web.iter().all(|p| p.ip.starts_with("10.244.")), "{web:?}");
    c.kubectl_ok(&["delete", "pod", &web[0].name, "--wait=false"]);
    let healed = wait_serving(&c, "app=web", 3, "the RC replaces a deleted pod");
    assert!(healed.iter().all(|p| p.name != web[0].name));
    c.kubectl_ok(&["scale", "rc", "web", "--replicas=5"]);
    wait_serving(&c, "app=web", 5, "scaled up");
    c.kubectl_ok(&["scale", "rc", "web", "--replicas=2"]);
    let web = wait_serving(&c, "app=web", 2, "scaled down");

    phase("kubectl create deployment + ex");
    // kubectl create deployment + expose --type=NodePort: traffic through the NodePort of
    // one node reaches several pods, wherever they run.
    let started = Instant::now();
    c.kubectl_ok(&[
        "create",
        "deployment",
        "hello",
        "--image",
        BUSYBOX,
        "--replicas=3",
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; mkdir -p /www; hostname > /www/index.html; httpd -f -p 8080 -h /www & wait",
    ]);
    c.kubectl_ok(&["rollout", "status", "deployment/hello", "--timeout=120s"]);
    println!(
        "figure: 3-replica Deployment Ready, {store}: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    c.kubectl_ok(&[
        "expose",
        "deployment",
        "hello",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ]);
    let node_port = c.kubectl_ok(&[
        "get",
        "svc",
        "hello",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let url = format!("http://{}:{node_port}/", node_ip(&c, &nodes[0]));
    let hello: BTreeSet<String> = serving(&c, "app=hello")
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut answered = BTreeSet::new();
    assert!(
        wait_until(WAIT, || {
            if let Some(body) = curl(&url) {
                answered.insert(body);
            }
            answered.len() >= 2
        }),
        "the NodePort {url} reaches several pods: {answered:?}"
    );
    assert!(answered.is_subset(&hello), "{answered:?} vs {hello:?}");

    phase("expose --type=LoadBalancer");
    // The built-in service load balancer: the EXTERNAL-IP column shows the nodes' addresses
    // (not <pending>), and the Service answers on each of them at its port.
    c.kubectl_ok(&[
        "expose",
        "deployment",
        "hello",
        "--name=hello-lb",
        "--type=LoadBalancer",
        "--port=8081",
        "--target-port=8080",
    ]);
    let mut node_ips: Vec<String> = nodes.iter().map(|n| node_ip(&c, n)).collect();
    node_ips.sort();
    let external = || {
        let row = c.kubectl_ok(&["get", "svc", "hello-lb", "--no-headers"]);
        row.split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        wait_until(WAIT, || external() == node_ips.join(",")),
        "EXTERNAL-IP of hello-lb: {} (nodes {node_ips:?})",
        external()
    );
    for ip in &node_ips {
        let url = format!("http://{ip}:8081/");
        assert!(
            wait_until(WAIT, || curl(&url).is_some_and(|b| hello.contains(&b))),
            "the LoadBalancer address {url} answers"
        );
    }

    phase("A ClusterIP reached from a pod");
    // A ClusterIP reached from a pod on another node, and pod to pod across nodes.
    let cluster_ip = c.kubectl_ok(&["get", "svc", "hello", "-o", "jsonpath={.spec.clusterIP}"]);
    let client = &web[0];
    let hello_pods = serving(&c, "app=hello");
    let mut remote_answer = false;
    assert!(
        wait_until(WAIT, || {
            if let Some(body) = get_from_pod(&c, &client.name, &cluster_ip, 80) {
                remote_answer |= hello_pods
                    .iter()
                    .any(|p| p.name == body && p.node != client.node);
            }
            remote_answer
        }),
        "{} on {} reaches a pod on another node through {cluster_ip}",
        client.name,
        client.node
    );
    let far = hello_pods
        .iter()
        .find(|p| p.node != client.node)
        .expect("a hello pod on another node");
    assert_eq!(
        get_from_pod(&c, &client.name, &far.ip, 8080).as_deref(),
        Some(far.name.as_str()),
        "pod to pod across nodes"
    );

    phase("scale, set image with rollout ");
    // scale, set image with rollout status, rollout undo.
    c.kubectl_ok(&["scale", "deployment", "hello", "--replicas=4"]);
    c.kubectl_ok(&["rollout", "status", "deployment/hello", "--timeout=120s"]);
    c.kubectl_ok(&[
        "set",
        "image",
        "deployment/hello",
        &format!("busybox={BUSYBOX_2}"),
    ]);
    c.kubectl_ok(&["rollout", "status", "deployment/hello", "--timeout=120s"]);
    let rolled = wait_serving(&c, "app=hello", 4, "rolled out");
    assert!(rolled.iter().all(|p| p.image == BUSYBOX_2), "{rolled:?}");
    c.kubectl_ok(&["rollout", "undo", "deployment/hello"]);
    c.kubectl_ok(&["rollout", "status", "deployment/hello", "--timeout=120s"]);
    let undone = wait_serving(&c, "app=hello", 4, "rolled back");
    assert!(undone.iter().all(|p| p.image == BUSYBOX), "{undone:?}");

    phase("Labels and delete -l.");
    // Labels and delete -l.
    for pod in ["tagged-a", "tagged-b"] {
        c.kubectl_ok(&[
            "run",
            pod,
            "--image",
            BUSYBOX,
            "--image-pull-policy=Never",
            "--labels=group=tagged",
            "--",
            "sh",
            "-c",
            SLEEPER,
        ]);
    }
    c.kubectl_ok(&["label", "pod", "tagged-a", "team=blue"]);
    let blue = c.kubectl_ok(&["get", "pods", "-l", "team=blue", "-o", "name"]);
    assert_eq!(blue.trim(), "pod/tagged-a");
    c.kubectl_ok(&["delete", "pods", "-l", "group=tagged", "--wait=false"]);
    assert!(
        wait_until(WAIT, || pods(&c, "group=tagged").is_empty()),
        "delete -l removes both\n{}",
        wide(&c)
    );

    phase("A ConfigMap and a Secret");
    // A ConfigMap and a Secret consumed as environment variables and as files; logs; exec.
    c.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello",
    ]);
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "credentials",
        "--from-literal=password=s3cret",
    ]);
    c.kubectl_stdin(&["apply", "-f", "-"], CONFIG_POD);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/configured",
        "--timeout=90s",
    ]);
    let seen = c.kubectl_ok(&[
        "exec",
        "configured",
        "--",
        "sh",
        "-c",
        "echo $GREETING $PASSWORD; cat /etc/settings/greeting; echo; cat /etc/credentials/password; echo; hostname",
    ]);
    assert_eq!(
        seen.split_whitespace().collect::<Vec<_>>(),
        ["hello", "s3cret", "hello", "s3cret", "configured"],
        "{seen}"
    );
    c.kubectl_ok(&[
        "run",
        "talker",
        "--image",
        BUSYBOX,
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        "echo hello from the logs; trap 'exit 0' TERM; sleep 3600 & wait",
    ]);
    assert!(
        wait_until(WAIT, || String::from_utf8_lossy(
            &c.kubectl(&["logs", "talker"]).stdout
        )
        .contains("hello from the logs")),
        "kubectl logs"
    );

    phase("A crash loop");
    // A crash loop: restarted with back-off, shown as CrashLoopBackOff.
    c.kubectl_ok(&[
        "run",
        "crasher",
        "--image",
        BUSYBOX,
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        "echo about to fail; exit 3",
    ]);
    assert!(
        wait_until(WAIT, || {
            pods(&c, "run=crasher")
                .first()
                .is_some_and(|p| p.restarts >= 2 && p.waiting == "CrashLoopBackOff")
        }),
        "crash loop: {:?}",
        pods(&c, "run=crasher")
    );
    let previous = c.kubectl_ok(&["logs", "crasher", "--previous"]);
    assert!(previous.contains("about to fail"), "{previous}");
    c.kubectl_ok(&[
        "delete",
        "pod",
        "crasher",
        "configured",
        "talker",
        "--wait=false",
    ]);

    phase("drain moves");
    // drain moves the pods away from a node.
    let drained = serving(&c, "app=hello")[0].node.clone();
    c.kubectl_ok(&[
        "drain",
        &drained,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--timeout=120s",
    ]);
    let moved = wait_serving(&c, "app=hello", 4, "drained pods recreated elsewhere");
    assert!(moved.iter().all(|p| p.node != drained), "{moved:?}");
    assert!(
        wait_until(WAIT, || pods(&c, "").iter().all(|p| p.node != drained)),
        "nothing left on {drained}\n{}",
        wide(&c)
    );
    c.kubectl_ok(&["uncordon", &drained]);

    phase("A node whose kubelet stops");
    // A node whose kubelet stops goes NotReady; its pods are evicted (after their short
    // toleration) and recreated on the other nodes.
    c.kubectl_ok(&[
        "patch",
        "deployment",
        "hello",
        "-p",
        r#"{"spec":{"template":{"spec":{"tolerations":[
            {"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":2},
            {"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":2}]}}}}"#,
    ]);
    c.kubectl_ok(&["rollout", "status", "deployment/hello", "--timeout=120s"]);
    let before = wait_serving(&c, "app=hello", 4, "tolerations rolled out");
    let victim = before
        .iter()
        .find(|p| p.node != drained)
        .map(|p| p.node.clone())
        .unwrap_or_else(|| before[0].node.clone());
    c.skiffctl_ok("stop-node", &[&victim]);
    let ready_status = |node: &str| {
        c.kubectl_ok(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
    };
    assert!(
        wait_until(WAIT, || ready_status(&victim) != "True"),
        "{victim} goes NotReady"
    );
    assert!(
        wait_until(Duration::from_secs(120), || {
            let up = serving(&c, "app=hello");
            up.len() == 4 && up.iter().all(|p| p.node != victim)
        }),
        "pods of the stopped node recreated elsewhere\n{}",
        wide(&c)
    );
    c.skiffctl_ok("start-node", &[&victim]);
    assert!(
        wait_until(WAIT, || ready_status(&victim) == "True"),
        "{victim} Ready again"
    );

    phase("A multi-document");
    // A multi-document create -f and delete -f.
    let created = c.kubectl_stdin(&["create", "-f", "-"], BUNDLE);
    for what in [
        "configmap/bundle created",
        "service/bundle created",
        "deployment.apps/bundle created",
    ] {
        assert!(created.contains(what), "{created}");
    }
    wait_serving(&c, "app=bundle", 1, "the bundle's deployment runs");
    let deleted = c.kubectl_stdin(&["delete", "-f", "-"], BUNDLE);
    for what in [
        "configmap \"bundle\" deleted",
        "service \"bundle\" deleted",
        "deployment.apps \"bundle\" deleted",
    ] {
        assert!(deleted.contains(what), "{deleted}");
    }

    phase("Deleting everything");
    // Deleting everything leaves no container behind on any node.
    c.kubectl_ok(&["delete", "deployment,rc,svc", "--all", "--wait=false"]);
    assert!(
        wait_until(Duration::from_secs(120), || pods(&c, "").is_empty()),
        "every pod gone\n{}",
        wide(&c)
    );
    for i in 1..=3 {
        assert!(
            wait_until(WAIT, || containers_on(&c, i).is_empty()),
            "node {i} keeps containers: {:?}",
            containers_on(&c, i)
        );
    }
}

#[test]
fn three_node_cluster_on_the_embedded_store() {
    walk(false);
}

#[test]
fn three_node_cluster_on_etcd() {
    walk(true);
}

/// `cluster delete` removes everything `create` made; bad input is refused plainly.
#[test]
fn cluster_lifecycle_and_errors() {
    let name = "e2e-life";
    let c = LocalCluster::create(name, 1, false, &[]);
    let list = String::from_utf8_lossy(&skiffctl(&["cluster", "list"]).stdout).into_owned();
    assert!(
        list.lines()
            .any(|l| l.starts_with(name) && l.contains("Running")),
        "{list}"
    );
    let again = skiffctl(&["cluster", "create", "--name", name]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists; delete it first"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    for (args, says) in [
        (
            vec!["cluster", "create", "--name", "Bad_Name"],
            "invalid cluster name",
        ),
        (
            vec!["cluster", "stop-node", "--name", name, "nope"],
            "has no node \"nope\"",
        ),
        (
            vec![
                "cluster",
                "load-image",
                "--name",
                name,
                "skiff-test/absent:0",
            ],
            "saving the images",
        ),
        (
            vec!["cluster", "logs", "--name", "absent"],
            "no cluster named",
        ),
    ] {
        let out = skiffctl(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let logs = c.skiffctl_ok("logs", &[&c.node_name(1)]);
    assert!(logs.contains("node registered"), "{logs}");
    let netns = format!("skiff-{name}-node-1");

    // From the node's network (where pods' traffic to the host comes from, masqueraded) the
    // host answers on the apiserver's port only: not on a port the test listens on at the
    // bridge address.
    let server = c.kubectl_ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let (host_ip, api_port) = server
        .trim()
        .trim_start_matches("https://")
        .rsplit_once(':')
        .expect("the server is host:port");
    let listener = std::net::TcpListener::bind((host_ip, 0)).expect("listen on the bridge address");
    let port = listener.local_addr().expect("bound").port().to_string();
    assert!(
        std::net::TcpStream::connect((host_ip, port.parse::<u16>().unwrap())).is_ok(),
        "the listener answers on the host"
    );
    let connect_from_node = |port: &str| {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["timeout", "5", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{host_ip}/{port}"))
            .status()
            .expect("nsenter")
            .success()
    };
    assert!(
        connect_from_node(api_port),
        "the apiserver's port is reachable"
    );
    assert!(
        !connect_from_node(&port),
        "port {port} of the host is not reachable from the node"
    );
    drop(listener);
    let index = host_ip.split('.').nth(2).expect("172.28.K.1").to_string();
    let input_chain = format!("SKIFF-CLUSTER-{index}-INPUT");
    let host_rules = || {
        String::from_utf8_lossy(
            &Command::new("iptables")
                .args(["-w", "-S"])
                .output()
                .expect("iptables -S")
                .stdout,
        )
        .into_owned()
    };
    assert!(host_rules().contains(&format!("-A INPUT -i skiff{index} -j {input_chain}")));
    let socket = c.docker_socket(1);
    let dir = c.dir();
    drop(c);
    assert!(!std::path::Path::new("/run/netns").join(&netns).exists());
    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(!std::path::Path::new(socket.trim_start_matches("unix://")).exists());
    let procs = Command::new("pgrep")
        .args(["-f", &format!("{}/", dir.display())])
        .output()
        .expect("pgrep");
    assert!(
        procs.stdout.is_empty(),
        "no process of the cluster survives: {}",
        String::from_utf8_lossy(&procs.stdout)
    );
    let list = String::from_utf8_lossy(&skiffctl(&["cluster", "list"]).stdout).into_owned();
    assert!(!list.contains(name), "{list}");
    let rules = host_rules();
    assert!(!rules.contains(&input_chain), "{rules}");
    // Deleting again is fine.
    assert!(
        skiffctl(&["cluster", "delete", "--name", name])
            .status
            .success()
    );
}

/// A `create` killed halfway leaves processes, namespaces and a bridge; `delete` removes them
/// all, from the state `create` recorded first.
#[test]
fn delete_cleans_up_after_a_crashed_create() {
    use std::path::Path;
    let name = "e2e-crash";
    let _ = skiffctl(&["cluster", "delete", "--name", name]);
    let kc = tempfile::tempdir().expect("tempdir");
    let mut create = Command::new(skiff_e2e::sibling_binary("skiffctl"))
        .args([
            "cluster",
            "create",
            "--name",
            name,
            "--nodes",
            "2",
            "--kubeconfig",
        ])
        .arg(kc.path().join("kubeconfig"))
        .env("SKIFF_CLUSTERS_DIR", skiff_e2e::TEST_CLUSTERS_DIR)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("skiffctl cluster create");
    let dir = Path::new(skiff_e2e::TEST_CLUSTERS_DIR).join(name);
    let engine_started = dir.join("pids").join(format!("{name}-node-1-dockerd.pid"));
    assert!(
        wait_until(Duration::from_secs(60), || engine_started.exists()),
        "create got as far as starting a node's engine"
    );
    let _ = create.kill();
    let _ = create.wait();
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).expect("state recorded"))
            .expect("state json");
    let index = state["index"].as_u64().expect("index");
    let netns = Path::new("/run/netns").join(format!("skiff-{name}-node-1"));
    assert!(netns.exists(), "the crash left the node's namespace");
    let bridge = format!("skiff{index}");
    let has_bridge = || {
        Command::new("ip")
            .args(["link", "show", &bridge])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(has_bridge(), "the crash left the bridge");

    let out = skiffctl(&["cluster", "delete", "--name", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!netns.exists());
    assert!(
        !Path::new("/run/netns")
            .join(format!("skiff-{name}-node-2"))
            .exists()
    );
    assert!(!has_bridge(), "bridge {bridge} removed");
    assert!(!dir.exists());
    let chain = Command::new("iptables")
        .args(["-w", "-S", &format!("SKIFF-CLUSTER-{index}")])
        .output()
        .expect("iptables");
    assert!(!chain.status.success(), "host chain removed");
    let procs = Command::new("pgrep")
        .args(["-f", &format!("{}/", dir.display())])
        .output()
        .expect("pgrep");
    assert!(
        procs.stdout.is_empty(),
        "no process of the cluster survives: {}",
        String::from_utf8_lossy(&procs.stdout)
    );
}

/// skiffctl's pod and node commands on a running two-node cluster: `logs` (and `-f`),
/// `exec` (exit codes, stdin, and `-it` through a pseudo-terminal), `drain` and `uncordon`.
#[test]
fn skiffctl_logs_exec_and_drain_on_a_cluster() {
    ensure_busybox_image();
    let c = LocalCluster::create("e2e-ctl", 2, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX]);
    let ctl = |args: &[&str]| -> std::process::Output {
        Command::new(skiff_e2e::sibling_binary("skiffctl"))
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(args)
            .output()
            .expect("skiffctl")
    };
    c.kubectl_ok(&[
        "run",
        "talker",
        "--image",
        BUSYBOX,
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        "echo one; echo two; trap 'exit 0' TERM; while true; do echo tick; sleep 0.2; done",
    ]);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/talker",
        "--timeout=90s",
    ]);
    let out = ctl(&["logs", "talker", "--tail", "-1"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("one\ntwo\n"), "{text}");
    // -f keeps streaming: more ticks arrive than there were when it started.
    let mut follow = Command::new(skiff_e2e::sibling_binary("skiffctl"))
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["logs", "-f", "talker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut reader = std::io::BufReader::new(follow.stdout.take().expect("stdout"));
    let before = text.matches("tick").count();
    let mut seen = 0;
    let mut line = String::new();
    while seen <= before + 3 {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).expect("read");
        assert!(n > 0, "logs -f ended early");
        seen += usize::from(line.trim() == "tick");
    }
    let _ = follow.kill();
    let _ = follow.wait();

    let out = ctl(&[
        "exec",
        "talker",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // -it through a pseudo-terminal (script(1)): an interactive shell.
    let session = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'echo typed-$((6*7))\\nexit 5\\n' | timeout 60 script -qec '{} --kubeconfig {} exec -it talker -- sh' /dev/null",
            skiff_e2e::sibling_binary("skiffctl").display(),
            c.kubeconfig().display()
        ))
        .output()
        .expect("script");
    let shown = String::from_utf8_lossy(&session.stdout).replace('\r', "");
    assert!(shown.contains("\ntyped-42\n"), "{shown}");
    assert_eq!(session.status.code(), Some(5), "{shown}");
    // The real kubectl sends its terminal's size; the process inside sees it.
    let sized = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "timeout 60 script -qec 'stty cols 123 rows 45; kubectl --kubeconfig {} exec -it talker -- sh -c \"sleep 1; stty size\"' /dev/null",
            c.kubeconfig().display()
        ))
        .output()
        .expect("script");
    let shown = String::from_utf8_lossy(&sized.stdout).replace('\r', "");
    assert!(shown.contains("45 123"), "stty size in the pod: {shown:?}");

    // kubectl before 1.30 speaks SPDY/3.1 for exec (and newer ones when told to): the
    // apiserver upgrades the kubelet connection and joins the two; the kubelet speaks SPDY.
    let old = skiff_e2e::kubectl_versioned_path("1.27");
    let spdy_exec =
        |env: &[(&str, &str)], kubectl: &std::path::Path, stdin: &str, args: &[&str]| {
            let mut child = Command::new(kubectl)
                .envs(env.iter().copied())
                .arg("--kubeconfig")
                .arg(c.kubeconfig())
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("kubectl exec");
            let mut input = child.stdin.take().expect("stdin");
            std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("stdin");
            drop(input);
            child.wait_with_output().expect("kubectl exec")
        };
    for (env, kubectl) in [
        (&[][..], old.as_path()),
        (
            &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")][..],
            Path::new("kubectl"),
        ),
    ] {
        let out = spdy_exec(
            env,
            kubectl,
            "",
            &[
                "exec",
                "talker",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 7",
            ],
        );
        assert_eq!(out.status.code(), Some(7), "{kubectl:?} {env:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("err\n"),
            "{out:?}"
        );
        // stdin to EOF, and more output than one SPDY window (64 KiB) back.
        let lines: String = (0..20_000).map(|n| format!("{n}\n")).collect();
        let out = spdy_exec(
            env,
            kubectl,
            &lines,
            &[
                "exec",
                "-i",
                "talker",
                "--",
                "sh",
                "-c",
                "wc -l; seq 1 30000 | wc -c; seq 1 30000",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let expected: String = (1..=30_000).map(|n| format!("{n}\n")).collect();
        assert_eq!(
            text,
            format!("20000\n{}\n{expected}", expected.len()),
            "{kubectl:?} {env:?}"
        );
    }
    let sized = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "timeout 60 script -qec 'stty cols 123 rows 45; {} --kubeconfig {} exec -it talker -- sh -c \"sleep 1; stty size\"' /dev/null",
            old.display(),
            c.kubeconfig().display()
        ))
        .output()
        .expect("script");
    let shown = String::from_utf8_lossy(&sized.stdout).replace('\r', "");
    assert!(shown.contains("45 123"), "stty size over SPDY: {shown:?}");

    // drain moves a Deployment's pods to the other node.
    c.kubectl_ok(&[
        "create",
        "deployment",
        "moving",
        "--image",
        BUSYBOX,
        "--replicas=2",
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 3600 & wait",
    ]);
    c.kubectl_ok(&["rollout", "status", "deployment/moving", "--timeout=90s"]);
    // The node talker (a pod no controller recreates) runs on, and the other one.
    let node = c.kubectl_ok(&["get", "pod", "talker", "-o", "jsonpath={.spec.nodeName}"]);
    let other = if node == c.node_name(1) {
        c.node_name(2)
    } else {
        c.node_name(1)
    };
    let out = ctl(&["drain", &node, "--ignore-daemonsets"]);
    assert_eq!(out.status.code(), Some(1), "talker has no controller");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("declare no controller"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--force",
        "--timeout",
        "120s",
    ]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.ends_with(&format!("node/{node} drained\n")), "{said}");
    c.kubectl_ok(&["rollout", "status", "deployment/moving", "--timeout=90s"]);
    let placed = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=moving",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    assert!(
        !placed.is_empty() && placed.split_whitespace().all(|n| n == other),
        "{placed}"
    );
    let out = ctl(&["uncordon", &node]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("node/{node} uncordoned\n")
    );
}

/// An image with the real (static) kubectl on top of the test busybox.
const KUBECTL_IMAGE: &str = "skiff-test/kubectl:1";

fn ensure_kubectl_image() {
    ensure_busybox_image();
    let present = Command::new("docker")
        .args(["image", "inspect", KUBECTL_IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kubectl = std::fs::canonicalize(
        Command::new("sh")
            .args(["-c", "command -v kubectl"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .expect("find kubectl"),
    )
    .expect("resolve kubectl");
    std::fs::copy(&kubectl, dir.path().join("kubectl")).expect("copy kubectl");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY kubectl /bin/kubectl\n"),
    )
    .expect("write Dockerfile");
    let out = Command::new("docker")
        .args(["build", "-q", "-t", KUBECTL_IMAGE])
        .arg(dir.path())
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod whose ServiceAccount is bound to `view` runs the real kubectl inside the cluster with
/// its projected token (in-cluster config: `KUBERNETES_SERVICE_HOST`, the token, `ca.crt`):
/// it may list pods and is refused a delete, with Kubernetes' message.
#[test]
fn a_pod_uses_the_api_with_its_service_account_token() {
    ensure_kubectl_image();
    let c = LocalCluster::create("e2e-sa", 1, false, &[]);
    c.skiffctl_ok("load-image", &[KUBECTL_IMAGE]);
    c.kubectl_ok(&["create", "serviceaccount", "reader"]);
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "reader-view",
        "--clusterrole=view",
        "--serviceaccount=default:reader",
    ]);
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "inside"},
        "spec": {"serviceAccountName": "reader", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": KUBECTL_IMAGE, "imagePullPolicy": "Never",
                "command": ["sh", "-c", SLEEPER]}]}});
    c.kubectl_stdin(&["create", "-f", "-"], &pod.to_string());
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/inside",
        "--timeout=90s",
    ]);
    // The token, the CA and the namespace are where in-cluster clients look.
    let files = c.kubectl_ok(&[
        "exec",
        "inside",
        "--",
        "sh",
        "-c",
        "cd /var/run/secrets/kubernetes.io/serviceaccount && cat namespace && echo && wc -c < token && head -1 ca.crt",
    ]);
    assert!(
        files.starts_with("default\n") && files.contains("-----BEGIN CERTIFICATE-----"),
        "{files}"
    );
    let exec = |script: &str| c.kubectl(&["exec", "inside", "--", "sh", "-c", script]);
    // `view` is filled in by the controller-manager's aggregation: wait for it.
    assert!(
        wait_until(Duration::from_secs(60), || {
            let out = exec("kubectl get pods -o name");
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pod/inside")
        }),
        "kubectl in the pod could not list pods: {}",
        String::from_utf8_lossy(&exec("kubectl get pods -o name 2>&1").stdout)
    );
    let out = exec("kubectl delete pod inside 2>&1; echo rc=$?");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Error from server (Forbidden): pods \"inside\" is forbidden: User \"system:serviceaccount:default:reader\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\"")
            && text.contains("rc=1"),
        "{text}"
    );
    let me = exec("kubectl auth whoami -o json");
    let me: Value = serde_json::from_slice(&me.stdout).expect("whoami prints JSON");
    let user = &me["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:reader");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0],
        "inside"
    );
}
