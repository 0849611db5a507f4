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
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: tricky
data:
  number: \"1\"
  bool: \"true\"
  \"n\": \"no\"
  stamp: \"2024-01-02\"
  indicator: \"x: y\"
  hash: \"#tag\"
  quote: \"it's\"
  multi: \"first\\n  indented\\n\\nlast\\n\"
  lead: \"  lead\\nx\"
  tab: \"a\\tb\"
  long: \"word0 word1 word2 word3 word4 word5 word6 word7 word8 word9 word10 word11 word12 word13 word14 word15 word16 word17\"
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
        // YAML as go-yaml writes it: quoting, literal blocks, folding at column 80.
        vec!["get", "deploy", "web", "-o", "yaml"],
        vec!["get", "cm", "tricky", "-o", "yaml"],
        vec!["get", "svc,nodes", "-o", "yaml"],
        vec!["config", "view"],
        vec!["get", "svc", "-o", "json"],
        vec!["get", "pods", "-o", "name"],
        vec!["get", "rc", "-n", "shop"],
        vec!["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"],
        vec!["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
        vec![
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\t\"}{.spec.containers[0].image}{\"\\n\"}{end}",
        ],
        vec![
            "get",
            "pods",
            "-A",
            "-o",
            "custom-columns=NAME:.metadata.name,NS:.metadata.namespace,IMAGES:.spec.containers[*].image,NODE:.spec.nodeName",
        ],
        vec![
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
        ],
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
    // set-context on copies of the kubeconfig: the same words and the same result.
    let dir = tempfile::tempdir().expect("tempdir");
    let (theirs, ours) = (dir.path().join("k"), dir.path().join("s"));
    std::fs::copy(server.kubeconfig(), &theirs).expect("copy");
    std::fs::copy(server.kubeconfig(), &ours).expect("copy");
    for args in [
        vec!["config", "set-context", "--current", "--namespace=shop"],
        vec![
            "config",
            "set-context",
            "other",
            "--cluster=skiff",
            "--user=admin",
        ],
    ] {
        let t = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&theirs)
            .args(&args)
            .output()
            .expect("kubectl");
        let o = Command::new(sibling_binary("skiffctl"))
            .arg("--kubeconfig")
            .arg(&ours)
            .args(&args)
            .output()
            .expect("skiffctl");
        assert_eq!(text(&o), text(&t), "{args:?}");
    }
    for path in [&theirs, &ours] {
        let contexts = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(path)
            .args(["config", "get-contexts"])
            .output()
            .expect("kubectl");
        let shown = text(&contexts);
        assert!(shown.contains("shop") && shown.contains("other"), "{shown}");
    }
    let ctx = text(&skiffctl(&server, &["config", "current-context"]));
    assert_eq!(
        ctx.trim(),
        server.kubectl_ok(&["config", "current-context"]).trim()
    );
    same(&server, &["config", "get-contexts"]);
}

/// The same command by kubectl on twin object `k` and by skiffctl on twin `s` (`NAME` in the
/// arguments; `KUBE_EDITOR` set when `editor` is): both exit alike. Returns kubectl's output
/// and skiffctl's with the name `s` turned into `k`.
fn twins(server: &ApiServer, args: &[&str], editor: Option<&str>) -> (String, String) {
    let run = |program: std::path::PathBuf, name: &str| {
        let mut c = Command::new(program);
        c.arg("--kubeconfig").arg(server.kubeconfig());
        if let Some(e) = editor {
            c.env("KUBE_EDITOR", e);
        }
        c.args(args.iter().map(|a| a.replace("NAME", name)))
            .output()
            .expect("run")
    };
    let theirs = run("kubectl".into(), "k");
    let ours = run(sibling_binary("skiffctl"), "s");
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "{args:?}: {}",
        text(&ours)
    );
    let mut renamed = text(&ours);
    for before in ["/", "\"", "-"] {
        for after in [" ", "\n", "\""] {
            renamed = renamed.replace(&format!("{before}s{after}"), &format!("{before}k{after}"));
        }
    }
    (text(&theirs), renamed)
}

/// [`twins`], and both printed the same.
fn same_twins(server: &ApiServer, args: &[&str]) {
    let (theirs, ours) = twins(server, args, None);
    assert_eq!(ours, theirs, "{args:?}");
}

fn deployment(name: &str, replicas: u32, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: skiff-test/busybox:1
"
    )
}

fn skiffctl_stdin(server: &ApiServer, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(sibling_binary("skiffctl"))
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("skiffctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin");
    child.wait_with_output().expect("skiffctl")
}

fn json_of(server: &ApiServer, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&server.kubectl_ok(&all)).expect("json")
}

/// apply by one and then the other: the last-applied annotation is shared, so fields one
/// applied and the other's file drops are removed, and re-applying the same file changes
/// nothing.
#[test]
fn apply_interoperates_with_kubectl_s() {
    let server = ApiServer::start(Backend::Embedded);
    let v1 = deployment("web", 2, "team: a, tier: front");
    let out = skiffctl_stdin(&server, &["apply", "-f", "-"], &v1);
    assert_eq!(text(&out), "deployment.apps/web created\n");
    // kubectl sees skiffctl's last-applied configuration: dropping `tier` removes it.
    let v2 = deployment("web", 3, "team: a");
    assert_eq!(
        server.kubectl_stdin_ok(&["apply", "-f", "-"], &v2),
        "deployment.apps/web configured\n"
    );
    let d = json_of(&server, &["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert!(
        d["metadata"]["labels"]["tier"].is_null(),
        "{}",
        d["metadata"]
    );
    // And skiffctl sees kubectl's: dropping `team` removes it; a label set by hand stays.
    server.kubectl_ok(&["label", "deploy", "web", "manual=yes"]);
    let v3 = deployment("web", 3, "owner: b");
    let out = skiffctl_stdin(&server, &["apply", "-f", "-"], &v3);
    assert_eq!(text(&out), "deployment.apps/web configured\n");
    let d = json_of(&server, &["get", "deploy", "web"]);
    let labels = &d["metadata"]["labels"];
    assert!(
        labels["team"].is_null() && labels["owner"] == "b" && labels["manual"] == "yes",
        "{labels}"
    );
    let out = skiffctl_stdin(&server, &["apply", "-f", "-"], &v3);
    assert_eq!(text(&out), "deployment.apps/web unchanged\n");
    assert_eq!(
        server.kubectl_stdin_ok(&["apply", "-f", "-"], &v3),
        "deployment.apps/web unchanged\n",
        "kubectl agrees nothing is left to change"
    );
    // Server-side apply.
    let out = skiffctl_stdin(
        &server,
        &["apply", "--server-side", "-f", "-"],
        &deployment("ssa", 1, "a: b"),
    );
    assert_eq!(text(&out), "deployment.apps/ssa serverside-applied\n");
}

/// The same command by kubectl on one object and by skiffctl on its twin: the same output
/// (names aside) and the same result.
#[test]
fn scale_label_set_image_and_delete_match_kubectl() {
    let server = ApiServer::start(Backend::Embedded);
    for name in ["k", "s"] {
        server.kubectl_stdin_ok(&["create", "-f", "-"], &deployment(name, 1, "x: z"));
    }
    let twin = |args: &[&str]| same_twins(&server, args);
    twin(&["scale", "deployment", "NAME", "--replicas=4"]);
    twin(&["scale", "deploy/NAME", "--replicas=2"]);
    twin(&["label", "deploy", "NAME", "env=prod", "x-"]);
    twin(&["label", "deploy", "NAME", "env=dev"]);
    twin(&["label", "deploy", "NAME", "env=dev", "--overwrite"]);
    twin(&["annotate", "deploy/NAME", "note=hello"]);
    twin(&["set", "image", "deploy/NAME", "main=skiff-test/busybox:2"]);
    twin(&["set", "image", "deploy/NAME", "nope=skiff-test/busybox:2"]);
    let k = json_of(&server, &["get", "deploy", "k"]);
    let s = json_of(&server, &["get", "deploy", "s"]);
    for v in [&k, &s] {
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(v["metadata"]["labels"]["env"], "dev");
        assert!(v["metadata"]["labels"]["x"].is_null());
        assert_eq!(v["metadata"]["annotations"]["note"], "hello");
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["image"],
            "skiff-test/busybox:2"
        );
    }
    // delete -l, by name and by manifest.
    let pods = |set: &str| -> String {
        (1..=2)
            .map(|i| {
                format!(
                    "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {set}{i}\n  labels: {{set: {set}}}\nspec:\n  containers:\n  - name: c\n    image: skiff-test/busybox:1\n"
                )
            })
            .collect()
    };
    server.kubectl_stdin_ok(&["create", "-f", "-"], &pods("k"));
    let out = skiffctl_stdin(&server, &["create", "-f", "-"], &pods("s"));
    assert_eq!(text(&out), "pod/s1 created\npod/s2 created\n");
    let theirs = server.kubectl(&["delete", "pods", "-l", "set=k"]);
    let ours = skiffctl(&server, &["delete", "pods", "-l", "set=s"]);
    assert_eq!(text(&ours).replace("\"s", "\"k"), text(&theirs));
    assert_eq!(server.kubectl_ok(&["get", "pods", "-o", "name"]), "");
    twin(&["delete", "deploy", "NAME"]);
    twin(&["delete", "deploy", "NAME"]);
    assert_eq!(server.kubectl_ok(&["get", "deploy", "-o", "name"]), "");
}

/// Rollouts on twin Deployments (scheduler, controller-manager and a hollow kubelet running
/// their pods): kubectl drives one, skiffctl the other, with the same words and results.
#[test]
fn rollouts_match_kubectl() {
    let server = ApiServer::start(Backend::Embedded);
    let _scheduler = skiff_e2e::Scheduler::start(&server);
    let _controllers = skiff_e2e::ControllerManager::start(&server);
    let _kubelet = skiff_e2e::Kubelet::start_fake(&server, "hollow", "10.77.0.0/24");
    for name in ["k", "s"] {
        server.kubectl_stdin_ok(&["create", "-f", "-"], &deployment(name, 2, "x: z"));
    }
    let done = |name: &str, tool: &str| {
        let out = if tool == "kubectl" {
            server.kubectl(&[
                "rollout",
                "status",
                &format!("deploy/{name}"),
                "--timeout=60s",
            ])
        } else {
            skiffctl(
                &server,
                &[
                    "rollout",
                    "status",
                    &format!("deploy/{name}"),
                    "--timeout=60s",
                ],
            )
        };
        assert!(out.status.success(), "{tool}: {}", text(&out));
        let t = text(&out);
        assert_eq!(
            t.lines().last(),
            Some(format!("deployment \"{name}\" successfully rolled out").as_str()),
            "{tool}: {t}"
        );
    };
    done("k", "kubectl");
    done("s", "skiffctl");
    let both = |args: &[&str]| twins(&server, args, None);
    let (t, o) = both(&["rollout", "undo", "deploy/NAME"]);
    assert_eq!(o, t, "no history yet");
    for name in ["k", "s"] {
        server.kubectl_ok(&[
            "set",
            "image",
            &format!("deploy/{name}"),
            "main=skiff-test/busybox:2",
        ]);
    }
    done("k", "kubectl");
    done("s", "skiffctl");
    let (t, o) = both(&["rollout", "history", "deploy/NAME"]);
    assert_eq!(o, t);
    let (t, o) = both(&["rollout", "undo", "deploy/NAME"]);
    assert_eq!(o, t);
    done("k", "kubectl");
    done("s", "skiffctl");
    for name in ["k", "s"] {
        let d = json_of(&server, &["get", "deploy", name]);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"], "skiff-test/busybox:1",
            "{name} rolled back"
        );
        assert_eq!(
            d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "3"
        );
    }
    let (t, o) = both(&["rollout", "history", "deploy/NAME"]);
    assert_eq!(
        o,
        t,
        "{}",
        server.kubectl_ok(&[
            "get",
            "rs",
            "-o",
            "custom-columns=NAME:.metadata.name,REV:.metadata.annotations.deployment\\.kubernetes\\.io/revision,T:.spec.template"
        ])
    );
    let (t, o) = both(&["rollout", "pause", "deploy/NAME"]);
    assert_eq!(o, t);
    let (t, o) = both(&["rollout", "resume", "deploy/NAME"]);
    assert_eq!(o, t);
    let (t, o) = both(&["rollout", "restart", "deploy/NAME"]);
    assert_eq!(o, t);
    done("k", "kubectl");
    done("s", "skiffctl");
}

/// The generators build what kubectl's build and say what they say.
#[test]
fn generators_match_kubectl() {
    let server = ApiServer::start(Backend::Embedded);
    let twin = |args: &[&str]| same_twins(&server, args);
    let both = |args: &[&str]| -> (serde_json::Value, serde_json::Value) {
        let get = |n: &str| {
            let a: Vec<String> = args.iter().map(|a| a.replace("NAME", n)).collect();
            json_of(&server, &a.iter().map(String::as_str).collect::<Vec<_>>())
        };
        (get("k"), get("s"))
    };
    twin(&[
        "create",
        "deployment",
        "NAME",
        "--image=skiff-test/busybox:1",
        "--replicas=2",
        "--port=8080",
        "--",
        "sleep",
        "3600",
    ]);
    let (k, s) = both(&["get", "deploy", "NAME"]);
    assert_eq!(s["spec"]["replicas"], k["spec"]["replicas"]);
    assert_eq!(
        s["spec"]["template"]["spec"]["containers"],
        k["spec"]["template"]["spec"]["containers"]
    );
    assert_eq!(s["metadata"]["labels"]["app"], "s");
    assert_eq!(k["metadata"]["labels"]["app"], "k");
    twin(&["create", "namespace", "ns-NAME"]);
    twin(&[
        "create",
        "configmap",
        "cm-NAME",
        "--from-literal=a=1",
        "--from-literal=b=two",
    ]);
    let (k, s) = both(&["get", "cm", "cm-NAME"]);
    assert_eq!(s["data"], k["data"]);
    twin(&[
        "create",
        "secret",
        "generic",
        "sec-NAME",
        "--from-literal=password=s3cret",
    ]);
    let (k, s) = both(&["get", "secret", "sec-NAME"]);
    assert_eq!((&s["data"], &s["type"]), (&k["data"], &k["type"]));
    twin(&[
        "create",
        "service",
        "clusterip",
        "svc-NAME",
        "--tcp=80:8080",
    ]);
    let (k, s) = both(&["get", "svc", "svc-NAME"]);
    assert_eq!(s["spec"]["ports"], k["spec"]["ports"]);
    twin(&[
        "run",
        "pod-NAME",
        "--image=skiff-test/busybox:1",
        "--labels=a=b",
        "--env=X=1",
        "--restart=Never",
        "--",
        "sleep",
        "5",
    ]);
    let (k, s) = both(&["get", "pod", "pod-NAME"]);
    let pick = |v: &serde_json::Value| {
        let c = &v["spec"]["containers"][0];
        (
            c["args"].clone(),
            c["env"].clone(),
            v["spec"]["restartPolicy"].clone(),
            v["metadata"]["labels"].clone(),
        )
    };
    assert_eq!(pick(&s), pick(&k));
    twin(&[
        "expose",
        "deployment",
        "NAME",
        "--port=80",
        "--target-port=8080",
        "--type=NodePort",
        "--name=exp-NAME",
    ]);
    let (k, s) = both(&["get", "svc", "exp-NAME"]);
    assert_eq!(s["spec"]["type"], k["spec"]["type"]);
    assert_eq!(
        s["spec"]["ports"][0]["targetPort"],
        k["spec"]["ports"][0]["targetPort"]
    );
    assert_eq!(s["spec"]["selector"]["app"], "s");
    twin(&[
        "patch",
        "deployment",
        "NAME",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    twin(&[
        "patch",
        "deployment",
        "NAME",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    twin(&[
        "patch",
        "deployment",
        "NAME",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"1"}}}"#,
    ]);
    twin(&["delete", "cm", "cm-NAME", "--wait=false"]);
    twin(&["wait", "--for=delete", "cm/cm-NAME", "--timeout=10s"]);
    let script = text(&skiffctl(&server, &["completion", "bash"]));
    assert!(
        script.contains("skiffctl") && script.contains("complete"),
        "{script}"
    );
}

/// describe shows an object's details and the events about it.
#[test]
fn describe_shows_details_and_events() {
    let server = ApiServer::start(Backend::Embedded);
    let _scheduler = skiff_e2e::Scheduler::start(&server);
    let _controllers = skiff_e2e::ControllerManager::start(&server);
    let _kubelet = skiff_e2e::Kubelet::start_fake(&server, "hollow", "10.78.0.0/24");
    server.kubectl_stdin_ok(&["create", "-f", "-"], &deployment("web", 1, "x: z"));
    server.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let pod = server.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    let out = text(&skiffctl(&server, &["describe", pod.trim()]));
    for want in [
        "Name:",
        "Namespace:        default",
        "Node:             hollow/",
        "Containers:\n  main:\n",
        "Image:",
        "skiff-test/busybox:1",
        "Ready:          True",
        "Events:\n  Type ",
        "Reason",
        "Scheduled",
        "Successfully assigned default/",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let out = text(&skiffctl(&server, &["describe", "deployment", "web"]));
    for want in [
        "Replicas:               1 desired | 1 updated | 1 total | 1 available | 0 unavailable",
        "StrategyType:           RollingUpdate",
        "ScalingReplicaSet",
        "Pod Template:",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let out = text(&skiffctl(&server, &["describe", "node", "hollow"]));
    assert!(
        out.contains("Addresses:") && out.contains("Capacity:") && out.contains("PodCIDR:"),
        "{out}"
    );
    let out = skiffctl(&server, &["describe", "pod", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
}

/// get -w prints the list, then a row for each change, in the header's columns.
#[test]
fn get_watch_prints_changes_as_rows() {
    use std::io::BufRead as _;
    let server = ApiServer::start(Backend::Embedded);
    server.kubectl_ok(&["create", "configmap", "first", "--from-literal=a=1"]);
    let mut child = Command::new(sibling_binary("skiffctl"))
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(["get", "configmaps", "-w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("skiffctl get -w");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().expect("stdout");
    let _guard = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let next = || {
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("a line from get -w within 20 s")
    };
    let header = next();
    assert!(header.starts_with("NAME"), "{header}");
    while !next().starts_with("first ") {}
    server.kubectl_ok(&[
        "create",
        "configmap",
        "next",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    let added = next();
    assert!(added.starts_with("next "), "{added}");
    let column = header.find("DATA").expect("DATA column");
    assert_eq!(
        &added[column..column + 1],
        "2",
        "aligned with the header:\n{header}\n{added}"
    );
    server.kubectl_ok(&["delete", "configmap", "first"]);
    let deleted = next();
    assert!(deleted.starts_with("first "), "{deleted}");
}

/// autoscale, edit and top, side by side with kubectl.
#[test]
fn autoscale_edit_and_top_match_kubectl() {
    let server = ApiServer::start(Backend::Embedded);
    for name in ["k", "s"] {
        server.kubectl_stdin_ok(&["create", "-f", "-"], &deployment(name, 1, "x: z"));
    }
    let pair = |args: &[&str], editor: Option<&str>| {
        let (theirs, ours) = twins(&server, args, editor);
        assert_eq!(ours, theirs, "{args:?}");
    };
    pair(
        &[
            "autoscale",
            "deployment",
            "NAME",
            "--min=1",
            "--max=5",
            "--cpu-percent=50",
        ],
        None,
    );
    let (k, s) = (
        json_of(&server, &["get", "hpa", "k"]),
        json_of(&server, &["get", "hpa", "s"]),
    );
    assert_eq!(s["spec"]["metrics"], k["spec"]["metrics"]);
    assert_eq!(
        (
            s["spec"]["minReplicas"].clone(),
            s["spec"]["maxReplicas"].clone()
        ),
        (
            k["spec"]["minReplicas"].clone(),
            k["spec"]["maxReplicas"].clone()
        )
    );
    assert_eq!(s["spec"]["scaleTargetRef"]["name"], "s");
    pair(
        &["edit", "deployment", "NAME"],
        Some("sed -i 's/replicas: 1$/replicas: 4/'"),
    );
    for n in ["k", "s"] {
        assert_eq!(
            json_of(&server, &["get", "deploy", n])["spec"]["replicas"],
            4,
            "{n} edited"
        );
    }
    pair(&["edit", "deployment", "NAME"], Some("true"));
    pair(&["top", "nodes"], None);
}

#[test]
fn auth_commands_and_rbac_generators_match_kubectl() {
    let server = ApiServer::start(Backend::Embedded);
    // The generators create the same objects (each tool makes its own, then both are compared).
    for tool in ["k", "s"] {
        let run = |args: &[&str]| {
            if tool == "k" {
                server.kubectl(args)
            } else {
                skiffctl(&server, args)
            }
        };
        for args in [
            vec!["create", "namespace", &format!("team-{tool}")][..].to_vec(),
            vec![
                "create",
                "serviceaccount",
                "bot",
                "-n",
                &format!("team-{tool}"),
            ],
            vec![
                "create",
                "role",
                "reader",
                "-n",
                &format!("team-{tool}"),
                "--verb=get,list,watch",
                "--resource=pods,pods/log,deployments.apps",
            ],
            vec![
                "create",
                "rolebinding",
                "bot-reads",
                "-n",
                &format!("team-{tool}"),
                "--role=reader",
                "--serviceaccount",
                &format!("team-{tool}:bot"),
                "--user=alice",
            ],
        ] {
            let out = run(&args);
            assert!(out.status.success(), "{tool} {args:?}: {}", text(&out));
        }
    }
    for (what, name) in [("role", "reader"), ("rolebinding", "bot-reads")] {
        let strip = |tool: &str| {
            let mut v = json_of(&server, &["get", what, name, "-n", &format!("team-{tool}")]);
            v["metadata"] = serde_json::Value::Null;
            let text = v.to_string();
            text.replace(&format!("team-{tool}"), "team")
        };
        assert_eq!(strip("s"), strip("k"), "{what}");
    }
    // What a user may do, asked both ways, as both print it.
    let bot = "system:serviceaccount:team-k:bot";
    same(
        &server,
        &["auth", "can-i", "--list", "-n", "team-k", "--as", bot],
    );
    same(
        &server,
        &["auth", "can-i", "get", "pods", "-n", "team-k", "--as", bot],
    );
    same(
        &server,
        &[
            "auth", "can-i", "delete", "pods", "-n", "team-k", "--as", bot,
        ],
    );
    same(
        &server,
        &[
            "auth",
            "can-i",
            "get",
            "pods",
            "--subresource=log",
            "-n",
            "team-k",
            "--as",
            "alice",
        ],
    );
    same(&server, &["auth", "whoami"]);
    same(
        &server,
        &["auth", "whoami", "--as", bot, "--as-group", "extra"],
    );
    same(&server, &["get", "secrets", "-n", "team-k", "--as", bot]);
    // A token from skiffctl works for kubectl.
    let out = skiffctl(&server, &["create", "token", "bot", "-n", "team-k"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let who = server.kubectl_ok(&[
        "auth",
        "whoami",
        "--token",
        &token,
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who, bot);
}
