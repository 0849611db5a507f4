//! `skiffctl`'s kubectl-like commands against a real apiserver, side by side with the real
//! kubectl on the same objects: the same tables (columns, alignment, `-o wide`, `-A`,
//! `--show-labels`, several kinds at once, `all`), the same JSON and names, and kubectl's
//! errors with exit code 1.

use std::process::{Command, Output};

use skiff_e2e::{ApiServer, Backend, sibling_binary};

fn skiffctl(server: &ApiServer, args: &[&str]) -> Output {
    Command::new(sibling_binary("skiffctl"))
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(args)
        .output()
        .expect("run skiffctl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Both print the same for `args` (tried again when an AGE column ticked over in between).
fn same(server: &ApiServer, args: &[&str]) {
    let mut last = (String::new(), String::new());
    for _ in 0..3 {
        let theirs = server.kubectl(args);
        let ours = skiffctl(server, args);
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "exit codes of get {args:?}: {}",
            text(&ours)
        );
        last = (text(&theirs), text(&ours));
        if last.0 == last.1 {
            return;
        }
    }
    assert_eq!(last.1, last.0, "skiffctl vs kubectl for {args:?}");
}

const OBJECTS: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: skiff-test/busybox:1
---
apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
spec:
  replicas: 1
  selector: {app: legacy}
  template:
    metadata:
      labels: {app: legacy}
    spec:
      containers:
      - name: app
        image: skiff-test/busybox:1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: lone
  namespace: shop
  labels: {tier: b, app: lone}
spec:
  containers:
  - name: app
    image: skiff-test/busybox:1
";

#[test]
fn get_prints_what_kubectl_prints() {
    let server = ApiServer::start(Backend::Embedded);
    let _controllers = skiff_e2e::ControllerManager::start(&server);
    skiff_e2e::node("n1")
        .internal_ip("10.1.2.3")
        .create(&server);
    server.kubectl_stdin_ok(&["apply", "-f", "-"], OBJECTS);
    assert!(
        skiff_e2e::wait_until(std::time::Duration::from_secs(30), || {
            server
                .kubectl_ok(&["get", "pods", "-o", "name"])
                .lines()
                .count()
                == 3
        }),
        "the controllers made the pods"
    );
    for args in [
        vec!["get", "pods"],
        vec!["get", "po", "-o", "wide"],
        vec!["get", "deployments"],
        vec!["get", "deploy", "-o", "wide"],
        vec!["get", "replicasets"],
        vec!["get", "rc"],
        vec!["get", "services"],
        vec!["get", "svc", "web", "-o", "wide"],
        vec!["get", "nodes"],
        vec!["get", "nodes", "-o", "wide"],
        vec!["get", "namespaces"],
        vec!["get", "pods", "-A", "--show-labels"],
        vec!["get", "pods", "-n", "shop", "-l", "tier=b"],
        vec!["get", "pods,svc"],
        vec!["get", "all"],
        vec!["get", "deploy/web", "svc/web"],
        vec![
            "get",
            "pods",
            "--field-selector",
            "metadata.namespace=default",
            "--no-headers",
        ],
        vec!["get", "deploy", "web", "-o", "json"],
        vec!["get", "svc", "-o", "json"],
        vec!["get", "pods", "-o", "name"],
        vec!["get", "rc", "-n", "shop"],
    ] {
        same(&server, &args);
    }
}

#[test]
fn errors_read_as_kubectl_s_and_exit_1() {
    let server = ApiServer::start(Backend::Embedded);
    same(&server, &["get", "pod", "nope"]);
    let out = skiffctl(&server, &["get", "pod", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    let out = skiffctl(&server, &["get", "frobs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the server doesn't have a resource type \"frobs\""),
        "{}",
        text(&out)
    );
    let out = skiffctl(&server, &["get", "pods", "-o", "toml"]);
    assert_eq!(out.status.code(), Some(1));
    let out = skiffctl(&server, &["get", "--bogus-flag"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "usage errors exit 1 as kubectl's"
    );
    // No kubeconfig, no server: said plainly.
    let out = Command::new(sibling_binary("skiffctl"))
        .args(["--kubeconfig", "/nonexistent/kubeconfig", "get", "pods"])
        .output()
        .expect("skiffctl");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("/nonexistent/kubeconfig"),
        "{}",
        text(&out)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let unreachable = dir.path().join("kubeconfig");
    std::fs::write(
        &unreachable,
        std::fs::read_to_string(server.kubeconfig())
            .expect("kubeconfig")
            .replace(&server.addr().port().to_string(), "1"),
    )
    .expect("write");
    let out = Command::new(sibling_binary("skiffctl"))
        .arg("--kubeconfig")
        .arg(&unreachable)
        .args(["get", "pods"])
        .output()
        .expect("skiffctl");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("Unable to connect to the server"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
}

#[test]
fn version_cluster_info_api_resources_and_contexts() {
    let server = ApiServer::start(Backend::Embedded);
    let out = text(&skiffctl(&server, &["version"]));
    assert!(out.contains("Client Version: skiffctl v"), "{out}");
    assert!(out.contains("Server Version: v1.33"), "{out}");
    let out = text(&skiffctl(&server, &["cluster-info"]));
    assert!(
        out.contains(&format!(
            "is running at https://127.0.0.1:{}",
            server.addr().port()
        )),
        "{out}"
    );
    let ours = text(&skiffctl(&server, &["api-resources"]));
    let header = ours.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("SHORTNAMES") && header.contains("KIND"),
        "{ours}"
    );
    assert!(
        ours.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["deployments", "deploy", "apps/v1", "true", "Deployment"]),
        "{ours}"
    );
    let ctx = text(&skiffctl(&server, &["config", "current-context"]));
    assert_eq!(
        ctx.trim(),
        server.kubectl_ok(&["config", "current-context"]).trim()
    );
    same(&server, &["config", "get-contexts"]);
}
