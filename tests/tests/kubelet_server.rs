//! The kubelet's HTTPS server and the apiserver's `pods/log` and `pods/exec` proxy, driven by
//! the real kubectl against a real kubelet on the machine's Docker engine: `kubectl logs`
//! (`-f`, `--tail`, `--previous`), `kubectl exec`, and the kubelet's own endpoints, which
//! only authenticated callers that the apiserver authorizes may use; and the apiserver checking
//! the kubelet's serving certificate when told to.
//!
//! Each test runs its own apiserver and kubelet (own node name and pod subnet 10.244.206-209).

use std::time::Duration;

use serde_json::Value;
use skiff_e2e::{ApiServer, BUSYBOX, Backend, Kubelet, ensure_busybox_image, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn setup(node: &str, subnet: u8) -> (ApiServer, Kubelet) {
    ensure_busybox_image();
    let server = ApiServer::start(Backend::Embedded);
    let kubelet = Kubelet::start(&server, node, &format!("10.244.{subnet}.0/24"));
    (server, kubelet)
}

/// A pod on `node` with one busybox container `main` running `script`.
fn run_pod(server: &ApiServer, name: &str, node: &str, script: &str, extra: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", {script:?}]\n"
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &yaml);
}

fn wait_for(server: &ApiServer, name: &str, what: &str, mut cond: impl FnMut(&Value) -> bool) {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        let out = server.kubectl(&["get", "pod", name, "-o", "json"]);
        last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        cond(&last)
    });
    assert!(
        ok,
        "pod {name}: {what} did not happen; last seen:\n{:#}",
        last["status"]
    );
}

fn running(p: &Value) -> bool {
    p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

/// Waits until `kubectl ARGS` succeeds and prints something for which `cond` holds; returns
/// that output.
fn wait_output(server: &ApiServer, args: &[&str], cond: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let ok = wait_until(WAIT, || {
        let out = server.kubectl(args);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success() && cond(&String::from_utf8_lossy(&out.stdout))
    });
    assert!(
        ok,
        "kubectl {}: expected output never came; last:\n{last}",
        args.join(" ")
    );
    last
}

#[test]
fn kubectl_logs_shows_tails_and_follows_what_the_container_prints() {
    let (server, kubelet) = setup("e2e-logs", 206);
    run_pod(
        &server,
        "talker",
        &kubelet.node,
        "i=1; while true; do echo line-$i; i=$((i+1)); sleep 1; done",
        "",
    );
    wait_for(&server, "talker", "running", running);

    let all = wait_output(&server, &["logs", "talker"], |o| o.contains("line-3"));
    assert!(all.starts_with("line-1\nline-2\n"), "{all}");

    let tail = server.kubectl_ok(&["logs", "talker", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "--tail=1 printed:\n{tail}");
    assert!(tail.starts_with("line-"), "{tail}");

    let stamped = server.kubectl_ok(&["logs", "talker", "--timestamps", "--tail=1"]);
    assert!(
        stamped
            .split(' ')
            .next()
            .is_some_and(|t| t.contains('T') && t.ends_with('Z')),
        "--timestamps printed:\n{stamped}"
    );

    // -f keeps the stream open: a line the container prints later arrives.
    let printed = server.kubectl_ok(&["logs", "talker"]).lines().count();
    let mut follow = server.kubectl_watch(&["logs", "-f", "talker"]);
    let later = format!("line-{}", printed + 3);
    follow.expect_line(Duration::from_secs(30), |l| l == later);
    drop(follow);

    // The container name is required when the pod has several.
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pair\nspec:\n  nodeName: {}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: a, image: {BUSYBOX}, imagePullPolicy: Never, command: [sleep, '3600']}}\n  - {{name: b, image: {BUSYBOX}, imagePullPolicy: Never, command: [sleep, '3600']}}\n",
        kubelet.node
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &yaml);
    // (kubectl itself defaults to the first container, so ask the API directly.)
    let reply = server
        .http()
        .get("/api/v1/namespaces/default/pods/pair/log");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        reply.json()["message"],
        "a container name must be specified for pod pair, choose one of: [a b]"
    );
    let err = server.kubectl_fails(&["logs", "missing"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn kubectl_logs_previous_shows_the_attempt_before_a_restart() {
    let (server, kubelet) = setup("e2e-logs-prev", 207);
    let extra = "  volumes:\n  - name: state\n    emptyDir: {}\n";
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: crasher\nspec:\n  nodeName: {}\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n; echo attempt-$n; sleep 2; exit 1\"]\n    volumeMounts: [{{name: state, mountPath: /state}}]\n",
        kubelet.node
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &yaml);
    wait_for(&server, "crasher", "a first attempt", |p| {
        running(p) || p["status"]["containerStatuses"][0]["state"]["terminated"].is_object()
    });
    let err = server.kubectl_fails(&["logs", "crasher", "--previous"]);
    assert!(
        err.contains("previous terminated container \"main\" in pod \"crasher\" not found"),
        "{err}"
    );
    // The first attempt crashes; after the 10 s backoff the second one starts.
    wait_for(&server, "crasher", "one restart", |p| {
        p["status"]["containerStatuses"][0]["restartCount"] == 1
    });
    wait_output(&server, &["logs", "crasher"], |o| o.trim() == "attempt-2");
    let previous = server.kubectl_ok(&["logs", "crasher", "--previous"]);
    assert_eq!(previous.trim(), "attempt-1");
    // Only one earlier attempt is kept, and it goes with the pod.
    server.kubectl_ok(&["delete", "pod", "crasher", "--wait=false"]);
    assert!(
        wait_until(WAIT, || kubelet.containers().is_empty()),
        "containers left behind: {:?}",
        kubelet.containers()
    );
}

fn kubelet_port(server: &ApiServer, node: &str) -> u16 {
    let port = server.kubectl_ok(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    port.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no kubelet port on the Node: {port:?}"))
}

fn https_client(identity: Option<reqwest::Identity>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        // The kubelet's serving certificate is self-signed, as a kubelet's is by default.
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30));
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().expect("build an HTTPS client")
}

#[test]
fn the_kubelet_port_wants_a_cluster_client_certificate_and_serves_stats_and_pods() {
    let (server, kubelet) = setup("e2e-kubelet-port", 208);
    run_pod(&server, "idle", &kubelet.node, "sleep 3600", "");
    wait_for(&server, "idle", "running", running);
    let port = kubelet_port(&server, &kubelet.node);
    assert_ne!(port, 10250, "--port 0 should pick a free port");
    let base = format!("https://127.0.0.1:{port}");

    let anonymous = https_client(None);
    let health = anonymous
        .get(format!("{base}/healthz"))
        .send()
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().unwrap(), "ok");
    for path in [
        "/pods",
        "/stats/summary",
        "/metrics",
        "/containerLogs/default/idle/main",
    ] {
        let r = anonymous.get(format!("{base}{path}")).send().expect("GET");
        assert_eq!(r.status(), 401, "{path} without a client certificate");
    }

    let pki = server.data_dir().join("pki");
    let mut pem = std::fs::read(pki.join("kubelet-client.crt")).expect("kubelet-client.crt");
    pem.extend_from_slice(b"\n");
    pem.extend_from_slice(&std::fs::read(pki.join("kubelet-client.key")).expect("key"));
    let apiserver = https_client(Some(reqwest::Identity::from_pem(&pem).expect("PEM")));

    let pods: Value = apiserver
        .get(format!("{base}/pods"))
        .send()
        .expect("GET /pods")
        .json()
        .expect("a PodList");
    assert_eq!(pods["kind"], "PodList");
    assert!(
        pods["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|p| p["metadata"]["name"] == "idle")),
        "{pods:#}"
    );

    let summary: Value = apiserver
        .get(format!("{base}/stats/summary"))
        .send()
        .expect("GET /stats/summary")
        .json()
        .expect("a Summary");
    assert_eq!(summary["node"]["nodeName"], kubelet.node.as_str());
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    let pod = summary["pods"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["podRef"]["name"] == "idle"))
        .unwrap_or_else(|| panic!("pod idle missing from the summary: {summary:#}"));
    assert_eq!(pod["podRef"]["namespace"], "default");
    assert_eq!(pod["containers"][0]["name"], "main");
    assert!(
        pod["containers"][0]["memory"]["workingSetBytes"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );

    let metrics = apiserver
        .get(format!("{base}/metrics"))
        .send()
        .expect("GET /metrics")
        .text()
        .unwrap();
    assert!(metrics.contains("kubelet_running_pods 1"), "{metrics}");
    assert!(
        metrics.contains("kubelet_running_containers{container_state=\"running\"} 1"),
        "{metrics}"
    );

    let log = apiserver
        .get(format!("{base}/containerLogs/default/idle/main"))
        .send()
        .expect("GET /containerLogs");
    assert_eq!(log.status(), 200);

    // A certificate from the cluster CA proves who the caller is, not what it may do: the
    // kubelet asks the apiserver (SubjectAccessReview on nodes/<subresource>).
    let bob_kc = server.identity_kubeconfig("bob", &[]);
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&bob_kc).expect("bob's kubeconfig"))
            .expect("yaml");
    let b64 = |field: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(kc["users"][0]["user"][field].as_str().expect("a field"))
            .expect("base64")
    };
    let mut pem = b64("client-certificate-data");
    pem.extend_from_slice(b"\n");
    pem.extend(b64("client-key-data"));
    let bob = https_client(Some(reqwest::Identity::from_pem(&pem).expect("PEM")));
    let r = bob
        .get(format!("{base}/pods"))
        .send()
        .expect("GET /pods as bob");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.text().unwrap().trim_end(),
        "Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[proxy])"
    );
    // Bound to the role Kubernetes gives kubelet API clients, bob gets in (the kubelet caches
    // a denial for 30 s, as upstream's webhook authorizer does).
    server.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "bob-kubelet",
        "--clusterrole=system:kubelet-api-admin",
        "--user=bob",
    ]);
    assert!(
        wait_until(Duration::from_secs(45), || bob
            .get(format!("{base}/stats/summary"))
            .send()
            .is_ok_and(|r| r.status() == 200)),
        "bob, bound to system:kubelet-api-admin, was still refused"
    );
}

#[test]
fn kubectl_exec_runs_commands_with_output_stdin_and_exit_codes() {
    let (server, kubelet) = setup("e2e-exec", 209);
    run_pod(&server, "shell", &kubelet.node, "sleep 3600", "");
    wait_for(&server, "shell", "running", running);

    let out = server.kubectl_ok(&["exec", "shell", "--", "echo", "hi"]);
    assert_eq!(out, "hi\n");

    let out = server.kubectl(&["exec", "shell", "--", "sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{out:?}"
    );

    let out = server.kubectl_stdin(&["exec", "-i", "shell", "--", "cat"], "from stdin\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from stdin\n");

    // kubectl before 1.30 speaks SPDY: the same command, the same results.
    let out = server.kubectl_v(
        "1.27",
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo spdy; echo oops >&2; exit 4",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "spdy\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{out:?}"
    );

    let err = server.kubectl_fails(&["exec", "shell", "-c", "nope", "--", "true"]);
    assert!(
        err.contains("container nope is not valid for pod shell"),
        "{err}"
    );
}

/// With `--kubelet-certificate-authority`, the apiserver talks only to kubelets whose serving
/// certificate that CA issued for their address: a self-signed kubelet is refused, one with a
/// certificate from the cluster CA serves `kubectl logs`.
#[test]
fn the_apiserver_verifies_kubelet_serving_certificates() {
    ensure_busybox_image();
    let mut server = ApiServer::start(Backend::Embedded);
    let ca = server.data_dir().join("pki").join("ca.crt");
    server.restart_with_args(&["--kubelet-certificate-authority", &ca.display().to_string()]);

    let self_signed = Kubelet::start(&server, "e2e-kubelet-selfsigned", "10.244.210.0/24");
    run_pod(
        &server,
        "plain",
        &self_signed.node,
        "echo hello; sleep 3600",
        "",
    );
    wait_for(&server, "plain", "running", running);
    let err = server.kubectl_fails(&["logs", "plain"]);
    assert!(err.contains("cannot reach the kubelet"), "{err}");
    drop(self_signed);

    // A serving certificate from the cluster CA for 127.0.0.1 (where the kubelet is reached).
    let pki = server.data_dir().join("pki");
    let ca_pair = skiff_common::pki::CertKey {
        cert_pem: std::fs::read_to_string(pki.join("ca.crt")).expect("ca.crt"),
        key_pem: std::fs::read_to_string(pki.join("ca.key")).expect("ca.key"),
    };
    let node = "e2e-kubelet-verified";
    let serving = skiff_common::pki::issue(
        &ca_pair,
        &format!("system:node:{node}"),
        &["system:nodes"],
        &["127.0.0.1".to_string(), node.to_string()],
    )
    .expect("issue a serving certificate");
    let cert = server.write_file("serving.crt", &serving.cert_pem);
    let key = server.write_file("serving.key", &serving.key_pem);
    let verified = Kubelet::start_with_args(
        &server,
        node,
        "10.244.212.0/24",
        &[
            // Reached at the address the certificate names.
            "--node-ip",
            "127.0.0.1",
            "--tls-cert-file",
            &cert.display().to_string(),
            "--tls-private-key-file",
            &key.display().to_string(),
        ],
    );
    run_pod(
        &server,
        "greeter",
        &verified.node,
        "echo hello; sleep 3600",
        "",
    );
    wait_for(&server, "greeter", "running", running);
    assert!(
        wait_until(WAIT, || server
            .kubectl(&["logs", "greeter"])
            .stdout
            .starts_with(b"hello")),
        "kubectl logs through a verified kubelet: {}",
        String::from_utf8_lossy(&server.kubectl(&["logs", "greeter"]).stderr)
    );
}
