//! The kubelet against the real Docker engine, driven by the real kubectl: pods bound to the
//! node run, get IPs, share their sandbox, restart per policy, report failures with Kubernetes'
//! reasons, and terminate gracefully.
//!
//! Each test runs its own apiserver and kubelet (its own node name and pod subnet) on the
//! machine's engine.

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

fn pod_yaml(name: &str, node: &str, containers: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 5\n{extra_spec}  containers:\n{containers}"
    )
}

fn pod(server: &ApiServer, name: &str) -> Value {
    server.kubectl_json(&["get", "pod", name])
}

fn wait_for(
    server: &ApiServer,
    name: &str,
    what: &str,
    mut cond: impl FnMut(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        let out = server.kubectl(&["get", "pod", name, "-o", "json"]);
        if !out.status.success() {
            return false;
        }
        last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        cond(&last)
    });
    assert!(
        ok,
        "pod {name}: {what} did not happen; last seen:\n{:#}",
        last["status"]
    );
    last
}

fn running_and_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

#[test]
fn a_bound_pod_runs_gets_an_ip_and_terminates_gracefully() {
    let (server, kubelet) = setup("e2e-basic", 201);
    let containers = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 1; done\"]\n    env:\n    - name: MY_POD\n      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("web", &kubelet.node, &containers, ""),
    );
    let p = wait_for(&server, "web", "Running and Ready", running_and_ready);
    let ip = p["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        ip.starts_with("10.244.201."),
        "pod IP {ip} outside the node's pod subnet"
    );
    assert!(p["status"]["hostIP"].as_str().is_some());
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true, "{cs:#}");
    assert!(
        cs["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("docker://")),
        "{cs:#}"
    );
    assert!(p["status"]["startTime"].as_str().is_some());
    assert!(!kubelet.containers().is_empty());

    // Graceful deletion: SIGTERM, the container exits, the kubelet removes the object.
    let started = std::time::Instant::now();
    server.kubectl_ok(&["delete", "pod", "web", "--wait=false"]);
    let gone = wait_until(WAIT, || {
        !server.kubectl(&["get", "pod", "web"]).status.success()
    });
    assert!(gone, "pod object not removed after graceful deletion");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "termination took {:?}",
        started.elapsed()
    );
    assert!(
        wait_until(WAIT, || kubelet.containers().is_empty()),
        "containers left behind: {:?}",
        kubelet.containers()
    );
}

#[test]
fn sidecars_share_localhost_and_an_empty_dir() {
    let (server, kubelet) = setup("e2e-sidecar", 202);
    let containers = format!(
        "  - name: web\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo hello-from-web > /www/index.html; httpd -f -p 8080 -h /www\"]\n    volumeMounts: [{{name: shared, mountPath: /www}}]\n  - name: sidecar\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"while true; do wget -qO /data/fetched http://127.0.0.1:8080/ && cat /data/fetched > /data/copy; sleep 1; done\"]\n    volumeMounts: [{{name: shared, mountPath: /data}}]\n"
    );
    let extra = "  volumes:\n  - name: shared\n    emptyDir: {}\n";
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("pair", &kubelet.node, &containers, extra),
    );
    wait_for(&server, "pair", "Running and Ready", running_and_ready);
    // The sidecar reached the web container over localhost and wrote into the shared volume,
    // which the web container sees as /www.
    let ok = wait_until(WAIT, || {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                "label=io.kubernetes.container.name=web",
                "--filter",
                &format!("label=io.skiff.node={}", kubelet.node),
            ])
            .output()
            .expect("docker ps");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        !id.is_empty()
            && std::process::Command::new("docker")
                .args(["exec", &id, "cat", "/www/copy"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("hello-from-web"))
    });
    assert!(
        ok,
        "the sidecar could not fetch from localhost:8080 into the shared emptyDir"
    );
}

#[test]
fn crash_loops_back_off_and_count_restarts() {
    let (server, kubelet) = setup("e2e-crash", 203);
    let containers = format!(
        "  - name: crash\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo dying; exit 3\"]\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("crasher", &kubelet.node, &containers, ""),
    );
    let p = wait_for(&server, "crasher", "CrashLoopBackOff", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs:#}");
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error", "{cs:#}");
    // After the 10 s backoff it runs again: restartCount grows.
    wait_for(&server, "crasher", "a restart", |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
}

#[test]
fn a_missing_image_and_a_bad_command_report_kubernetes_reasons() {
    let (server, kubelet) = setup("e2e-bad", 204);
    let missing =
        "  - name: c\n    image: skiff-test/does-not-exist:1\n    imagePullPolicy: Never\n";
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("noimage", &kubelet.node, missing, ""),
    );
    let p = wait_for(&server, "noimage", "ErrImageNeverPull", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    });
    assert!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does-not-exist"))
    );

    let badcmd = format!(
        "  - name: c\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"/no/such/binary\"]\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("nocmd", &kubelet.node, &badcmd, ""),
    );
    let p = wait_for(&server, "nocmd", "a start error", |p| {
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        w == "RunContainerError" || w == "CrashLoopBackOff"
    });
    let msg = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let last = p["status"]["containerStatuses"][0]["lastState"].to_string();
    assert!(
        msg.contains("no/such/binary") || last.contains("no/such/binary"),
        "the engine's message is missing: {msg} / {last}"
    );
    // The same, as events: the reasons and Kubernetes' wording.
    wait_for_event(
        &server,
        "noimage",
        "ErrImageNeverPull",
        "Container image \"skiff-test/does-not-exist:1\" is not present with pull policy of Never",
    );
    wait_for_event(&server, "noimage", "Failed", "Error: ErrImageNeverPull");
    wait_for_event(&server, "nocmd", "Failed", "no/such/binary");
    wait_for_event(
        &server,
        "nocmd",
        "BackOff",
        "Back-off restarting failed container c in pod nocmd_default(",
    );
    // This kubelet has no --cluster-dns: ClusterFirst falls back to the node's resolver, and says so.
    wait_for_event(
        &server,
        "nocmd",
        "MissingClusterDNS",
        "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
    );
}

#[test]
fn a_restarted_kubelet_adopts_its_containers_without_restarting_them() {
    let (server, mut kubelet) = setup("e2e-adopt", 205);
    let containers = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("steady", &kubelet.node, &containers, ""),
    );
    let before = wait_for(&server, "steady", "Running and Ready", running_and_ready);
    let id_before = before["status"]["containerStatuses"][0]["containerID"].clone();
    kubelet.restart();
    // Give the new kubelet time to sync, then check nothing was restarted.
    let after = wait_for(&server, "steady", "a status from the new kubelet", |p| {
        running_and_ready(p) && p["status"]["containerStatuses"][0]["containerID"] == id_before
    });
    std::thread::sleep(Duration::from_secs(3));
    let now = pod(&server, "steady");
    assert_eq!(
        now["status"]["containerStatuses"][0]["containerID"], id_before,
        "container replaced"
    );
    assert_eq!(now["status"]["containerStatuses"][0]["restartCount"], 0);
    let _ = after;
}

#[test]
fn readiness_gates_ready_and_liveness_restarts() {
    let (server, kubelet) = setup("e2e-probes", 210);
    // Ready only once /tmp/ready exists; live only while /tmp/alive exists.
    let containers = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"mkdir -p /tmp /www; touch /tmp/alive; echo ok > /www/index.html; httpd -p 8080 -h /www; while true; do sleep 1; done\"]\n    readinessProbe:\n      exec: {{command: [\"cat\", \"/tmp/ready\"]}}\n      periodSeconds: 1\n    livenessProbe:\n      exec: {{command: [\"cat\", \"/tmp/alive\"]}}\n      periodSeconds: 1\n      failureThreshold: 2\n  - name: web\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n    readinessProbe:\n      httpGet: {{path: /index.html, port: 8080}}\n      periodSeconds: 1\n    startupProbe:\n      tcpSocket: {{port: 8080}}\n      periodSeconds: 1\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("probed", &kubelet.node, &containers, ""),
    );
    // Running, the web container (httpGet + tcpSocket against the pod IP) ready, main not.
    let p = wait_for(&server, "probed", "web ready, main not", |p| {
        let cs = p["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ready = |n: &str| {
            cs.iter()
                .find(|c| c["name"] == n)
                .map(|c| c["ready"] == true)
        };
        p["status"]["phase"] == "Running"
            && ready("web") == Some(true)
            && ready("main") == Some(false)
    });
    assert!(p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "False")
    }));
    let exec = |cmd: &str| {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                "label=io.kubernetes.container.name=main",
                "--filter",
                &format!("label=io.skiff.node={}", kubelet.node),
            ])
            .output()
            .expect("docker ps");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        std::process::Command::new("docker")
            .args(["exec", &id, "sh", "-c", cmd])
            .output()
            .expect("docker exec")
    };
    exec("touch /tmp/ready");
    wait_for(&server, "probed", "Ready", running_and_ready);
    // Liveness: remove the file, the container is killed and restarted.
    exec("rm /tmp/alive");
    wait_for(&server, "probed", "a liveness restart", |p| {
        p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["name"] == "main" && c["restartCount"].as_u64().unwrap_or(0) >= 1)
            })
    });
    wait_for_event(&server, "probed", "Unhealthy", "Readiness probe failed: ");
    let (_, _, field) = wait_for_event(&server, "probed", "Unhealthy", "Liveness probe failed: ");
    assert_eq!(field, "spec.containers{main}");
    wait_for_event(
        &server,
        "probed",
        "Killing",
        "Container main failed liveness probe, will be restarted",
    );
}

fn ready_condition(server: &ApiServer, node: &str) -> (String, String) {
    let n = server.kubectl_json(&["get", "node", node]);
    let c = n["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or(Value::Null);
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn the_node_goes_not_ready_while_docker_is_down_and_recovers() {
    let mut docker = skiff_e2e::PrivateDocker::start();
    let server = ApiServer::start(Backend::Embedded);
    let host = docker.host();
    let kubelet = Kubelet::start_with_env(
        &server,
        "e2e-docker-down",
        "10.244.211.0/24",
        &[("DOCKER_HOST", host.as_str())],
    );
    docker.down();
    let mut last = (String::new(), String::new());
    let down = wait_until(WAIT, || {
        last = ready_condition(&server, &kubelet.node);
        last.0 == "False"
    });
    assert!(down, "node stayed Ready with Docker down: {last:?}");
    assert!(
        last.1.contains("container runtime is down"),
        "no reason given: {last:?}"
    );
    docker.up();
    let up = wait_until(WAIT, || {
        last = ready_condition(&server, &kubelet.node);
        last.0 == "True"
    });
    assert!(up, "node did not recover after Docker came back: {last:?}");
}

#[test]
fn volumes_and_env_project_config_maps_secrets_and_the_downward_api() {
    let (server, kubelet) = setup("e2e-volumes", 212);
    server.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
        "--from-literal=size=large",
    ]);
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    let containers = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n    resources: {{limits: {{memory: 64Mi}}}}\n    envFrom:\n    - configMapRef: {{name: settings}}\n      prefix: CFG_\n    env:\n    - name: MEM_LIMIT\n      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}\n    - name: PASSWORD\n      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}\n    volumeMounts:\n    - {{name: cfg, mountPath: /etc/cfg}}\n    - {{name: sec, mountPath: /etc/sec}}\n    - {{name: info, mountPath: /etc/info}}\n    - {{name: scratch, mountPath: /scratch}}\n"
    );
    let extra = "  volumes:\n  - name: cfg\n    configMap:\n      name: settings\n      items: [{key: color, path: nested/colour}]\n      defaultMode: 0400\n  - name: sec\n    secret: {secretName: creds}\n  - name: info\n    downwardAPI:\n      items:\n      - {path: name, fieldRef: {fieldPath: metadata.name}}\n      - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n  - name: scratch\n    emptyDir: {medium: Memory}\n";
    let yaml = pod_yaml("projected", &kubelet.node, &containers, extra).replace(
        "metadata:\n  name: projected\n",
        "metadata:\n  name: projected\n  labels: {tier: web}\n",
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &yaml);
    wait_for(&server, "projected", "Running and Ready", running_and_ready);
    let sh = |cmd: &str| server.kubectl_ok(&["exec", "projected", "--", "sh", "-c", cmd]);
    assert_eq!(sh("cat /etc/cfg/nested/colour").trim(), "blue");
    assert!(
        sh("ls /etc/cfg").trim() == "nested",
        "only the listed item is projected"
    );
    assert_eq!(sh("stat -c %a /etc/cfg/nested/colour").trim(), "400");
    assert_eq!(sh("cat /etc/sec/password").trim(), "s3cret");
    assert_eq!(sh("cat /etc/info/name").trim(), "projected");
    assert!(sh("cat /etc/info/labels").contains("tier=\"web\""));
    assert!(
        sh("grep ' /scratch ' /proc/mounts").contains("tmpfs"),
        "medium: Memory is a tmpfs"
    );
    // Secrets stay off the node's disk, and the kubelet's volumes are read-only.
    let sec_mount = sh("grep ' /etc/sec ' /proc/mounts");
    assert!(
        sec_mount.contains("tmpfs") && sec_mount.contains(" ro,"),
        "{sec_mount}"
    );
    assert!(sh("grep ' /etc/cfg ' /proc/mounts").contains(" ro,"));
    assert_eq!(
        sh("echo $CFG_color-$CFG_size-$PASSWORD-$MEM_LIMIT").trim(),
        "blue-large-s3cret-64"
    );
    // A changed ConfigMap reaches the running container's volume.
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"color":"green"}}"#,
    ]);
    let updated = wait_until(WAIT, || sh("cat /etc/cfg/nested/colour").trim() == "green");
    assert!(updated, "the configMap volume kept the old value");
}

/// A container must not be able to make the kubelet (root on the host) write a host file
/// through a symlink in a configMap volume: the volume is read-only in the container, and
/// even links planted in the volume's folder on the host are replaced, never followed, by
/// the next update. A subPath that climbs out of its volume is refused at the API.
#[test]
fn config_map_volumes_are_read_only_and_updates_follow_no_planted_symlink() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let (server, kubelet) = setup("e2e-escape", 229);
    let host = tempfile::tempdir().expect("tempdir");
    let sentinel = host.path().join("sentinel");
    std::fs::write(&sentinel, "host file\n").unwrap();
    std::fs::set_permissions(&sentinel, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host_folder = host.path().join("folder");
    std::fs::create_dir(&host_folder).unwrap();
    server.kubectl_ok(&["create", "configmap", "escape", "--from-literal=key=v1"]);
    let containers = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n    volumeMounts:\n    - {{name: cfg, mountPath: /cfg}}\n"
    );
    let extra = "  volumes:\n  - name: cfg\n    configMap: {name: escape}\n";
    let yaml = pod_yaml("escape", &kubelet.node, &containers, extra);
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &yaml);
    let p = wait_for(&server, "escape", "Running and Ready", running_and_ready);
    let sh = |cmd: &str| server.kubectl(&["exec", "escape", "--", "sh", "-c", cmd]);
    let out = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();

    // From inside the container: the volume cannot be changed.
    let attempt = sh(&format!(
        "rm /cfg/key; ln -s {} /cfg/key",
        sentinel.display()
    ));
    assert!(
        !attempt.status.success(),
        "the container changed its configMap volume"
    );
    assert!(
        String::from_utf8_lossy(&attempt.stderr).contains("Read-only file system"),
        "{attempt:?}"
    );
    assert_eq!(out(sh("cat /cfg/key")), "v1");

    // On the host, what a container could have planted were the volume writable: the
    // visible name and `..data` as links out of the volume.
    let uid = p["metadata"]["uid"].as_str().expect("a uid");
    let volume = kubelet
        .root_dir()
        .join("pods")
        .join(uid)
        .join("volumes/cfg");
    // (Each made aside and renamed over the entry: the kubelet may be refreshing the volume.)
    let plant = |target: &std::path::Path, name: &str| {
        let aside = volume.join(format!("plant{}", name.replace('.', "_")));
        symlink(target, &aside).unwrap();
        std::fs::rename(&aside, volume.join(name)).unwrap();
    };
    plant(&sentinel, "key");
    plant(&host_folder, "..data");
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "escape",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"key":"v2"}}"#,
    ]);
    let updated = wait_until(WAIT, || out(sh("cat /cfg/key")) == "v2");
    assert!(updated, "the new value did not reach the container");
    assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "host file\n");
    let mode = std::fs::metadata(&sentinel).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "the host file was chmodded");
    assert_eq!(std::fs::read_dir(&host_folder).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_link(volume.join("key")).unwrap(),
        std::path::Path::new("..data/key")
    );

    // A subPath out of the volume: refused by validation (422, the field named).
    let bad = yaml
        .replace("name: escape\nspec", "name: climber\nspec")
        .replace("mountPath: /cfg}", "mountPath: /cfg, subPath: ../../etc}");
    let refused = server.kubectl_stdin_fails(&["create", "-f", "-"], &bad);
    assert!(
        refused.contains(
            "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../../etc\": must not contain '..'"
        ),
        "{refused}"
    );
    let mut pod_json: Value = serde_yaml::from_str(&bad).expect("the pod's YAML");
    pod_json["metadata"]["namespace"] = "default".into();
    let reply = server
        .http()
        .post_json("/api/v1/namespaces/default/pods", &pod_json);
    assert_eq!(reply.status, 422, "{}", reply.body);
    let status = reply.json();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.containers[0].volumeMounts[0].subPath"
    );
}

#[test]
fn static_pods_run_from_the_manifest_folder_with_mirror_pods() {
    ensure_busybox_image();
    let server = ApiServer::start(Backend::Embedded);
    let manifests = tempfile::tempdir().expect("tempdir");
    let file = manifests.path().join("static-web.yaml");
    let node = "e2e-static";
    std::fs::write(
        &file,
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: web\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n"),
    )
    .expect("write manifest");
    let dir = manifests.path().display().to_string();
    let kubelet = Kubelet::start_with_args(
        &server,
        node,
        "10.244.213.0/24",
        &["--pod-manifest-path", &dir],
    );
    let mirror = format!("static-web-{node}");
    let p = wait_for(
        &server,
        &mirror,
        "the static pod Running",
        running_and_ready,
    );
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/config.source"], "file",
        "{:#}",
        p["metadata"]
    );
    assert_eq!(p["spec"]["nodeName"], node);
    // Removing the manifest removes the pod.
    std::fs::remove_file(&file).expect("remove manifest");
    let gone = wait_until(WAIT, || {
        !server.kubectl(&["get", "pod", &mirror]).status.success()
    });
    assert!(
        gone,
        "mirror pod still there after its manifest was removed"
    );
    assert!(
        wait_until(WAIT, || kubelet.containers().is_empty()),
        "containers left: {:?}",
        kubelet.containers()
    );
}

#[test]
fn deletion_runs_pre_stop_then_sigterm_within_the_grace_period() {
    let (server, kubelet) = setup("e2e-prestop", 214);
    let host = tempfile::tempdir().expect("tempdir");
    let dir = host.path().display().to_string();
    let containers = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"trap 'echo term >> /host/log; exit 0' TERM; while true; do sleep 1; done\"]\n    lifecycle:\n      preStop:\n        exec: {{command: [\"sh\", \"-c\", \"echo prestop >> /host/log\"]}}\n    volumeMounts: [{{name: host, mountPath: /host}}]\n"
    );
    let extra = format!("  volumes:\n  - name: host\n    hostPath: {{path: {dir}}}\n");
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("hooked", &kubelet.node, &containers, &extra),
    );
    wait_for(&server, "hooked", "Running and Ready", running_and_ready);
    server.kubectl_ok(&["delete", "pod", "hooked", "--wait=false"]);
    assert!(
        wait_until(WAIT, || !server
            .kubectl(&["get", "pod", "hooked"])
            .status
            .success()),
        "pod not removed"
    );
    let log = std::fs::read_to_string(host.path().join("log")).unwrap_or_default();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["prestop", "term"],
        "hook and signal out of order: {log:?}"
    );
}

#[test]
fn host_network_and_host_port_pods() {
    let (server, kubelet) = setup("e2e-hostnet", 215);
    // hostNetwork: the pod's IP is the node's.
    let hostnet = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("onhost", &kubelet.node, &hostnet, "  hostNetwork: true\n"),
    );
    let p = wait_for(&server, "onhost", "Running and Ready", running_and_ready);
    assert_eq!(
        p["status"]["podIP"], p["status"]["hostIP"],
        "{:#}",
        p["status"]
    );
    // hostPort: the container's port is published on the node (checked on loopback).
    let web = format!(
        "  - name: web\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"mkdir -p /www; echo via-host-port > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n    ports:\n    - {{containerPort: 8080, hostPort: 18215}}\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("published", &kubelet.node, &web, ""),
    );
    wait_for(&server, "published", "Running and Ready", running_and_ready);
    let reached = wait_until(WAIT, || {
        std::process::Command::new("curl")
            .args(["-s", "--max-time", "2", "http://127.0.0.1:18215/index.html"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("via-host-port"))
    });
    assert!(reached, "nothing answered on the hostPort");
}

/// The events the kubelet recorded about `pod`: (reason, message, fieldPath), oldest first.
fn events_of(server: &ApiServer, pod: &str) -> Vec<(String, String, String)> {
    let list = server.kubectl_json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["source"]["component"] == "kubelet")
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&e["reason"]),
                s(&e["message"]),
                s(&e["involvedObject"]["fieldPath"]),
            )
        })
        .collect()
}

/// Waits until the kubelet has recorded an event about `pod` with `reason` whose message
/// contains `text`; returns it.
fn wait_for_event(
    server: &ApiServer,
    pod: &str,
    reason: &str,
    text: &str,
) -> (String, String, String) {
    let mut seen = Vec::new();
    let mut found = None;
    let ok = wait_until(WAIT, || {
        seen = events_of(server, pod);
        found = seen
            .iter()
            .find(|(r, m, _)| r == reason && m.contains(text))
            .cloned();
        found.is_some()
    });
    assert!(
        ok,
        "no {reason} event with {text:?} about {pod}; seen: {seen:#?}"
    );
    found.expect("found")
}

#[test]
fn resolv_conf_hosts_and_events_are_as_kubernetes_writes_them() {
    ensure_busybox_image();
    let server = ApiServer::start(Backend::Embedded);
    let dir = tempfile::tempdir().expect("tempdir");
    let node_resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &node_resolv,
        "# the node's resolver\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n",
    )
    .expect("resolv.conf");
    let kubelet = Kubelet::start_with_args(
        &server,
        "e2e-dns",
        "10.244.216.0/24",
        &[
            "--cluster-dns",
            "10.96.0.10",
            "--resolv-conf",
            node_resolv.to_str().expect("utf-8"),
        ],
    );
    let sleeper = format!(
        "  - name: c\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml(
            "named",
            &kubelet.node,
            &sleeper,
            "  hostname: web-0\n  subdomain: web\n  hostAliases:\n  - ip: 10.1.2.3\n    hostnames: [foo.local, bar.local]\n",
        ),
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("plain", &kubelet.node, &sleeper, "  dnsPolicy: Default\n"),
    );
    let named = wait_for(&server, "named", "Running", running_and_ready);
    wait_for(&server, "plain", "Running", running_and_ready);
    let ip = named["status"]["podIP"]
        .as_str()
        .expect("podIP")
        .to_string();

    let cat = |pod: &str, file: &str| server.kubectl_ok(&["exec", pod, "--", "cat", file]);
    assert_eq!(
        cat("named", "/etc/hosts"),
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             {ip}\tweb-0.web.default.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"
        )
    );
    // ClusterFirst: the cluster DNS, the cluster's searches then the node's, ndots:5.
    assert_eq!(
        cat("named", "/etc/resolv.conf"),
        "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    // Default: the node's resolver.
    assert_eq!(
        cat("plain", "/etc/resolv.conf"),
        "search corp.example\nnameserver 10.0.0.2\noptions edns0\n"
    );
    let out = server.kubectl_ok(&["exec", "named", "--", "hostname"]);
    assert_eq!(out, "web-0\n");

    // What the kubelet did is in the pod's events, on the container, as describe shows them.
    let (_, _, field) = wait_for_event(
        &server,
        "named",
        "Pulled",
        &format!("Container image \"{BUSYBOX}\" already present on machine"),
    );
    assert_eq!(field, "spec.containers{c}");
    wait_for_event(&server, "named", "Created", "Created container c");
    wait_for_event(&server, "named", "Started", "Started container c");
    let described = server.kubectl_ok(&["describe", "pod", "named"]);
    assert!(
        described.contains("Started container c") && described.contains("kubelet"),
        "{described}"
    );
    assert!(
        !events_of(&server, "named")
            .iter()
            .any(|(r, _, _)| r == "MissingClusterDNS"),
        "the kubelet has a cluster DNS"
    );
    server.kubectl_ok(&["delete", "pod", "named", "--wait=false"]);
    wait_for_event(&server, "named", "Killing", "Stopping container c");
}

/// The container's Docker ID from a `docker://<id>` containerID.
fn docker_id(container_id: &Value) -> String {
    container_id
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("docker://")
        .to_string()
}

/// The json-file log files Docker keeps for a container (the live one and rotated ones), with
/// their sizes.
fn log_files(id: &str) -> Vec<(String, u64)> {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.LogPath}}", id])
        .output()
        .expect("docker inspect");
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        panic!("container {id} has no log path");
    };
    let name = name.to_string_lossy().to_string();
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .expect("read the container's folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().to_string(), size)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn container_logs_rotate_and_kubectl_logs_still_shows_the_latest_lines() {
    ensure_busybox_image();
    let server = ApiServer::start(Backend::Embedded);
    let kubelet = Kubelet::start_with_args(
        &server,
        "e2e-logrotate",
        "10.244.233.0/24",
        &[
            "--container-log-max-size=32Ki",
            "--container-log-max-files=3",
        ],
    );
    // The first run writes about 600 KiB of log and fails; the second (an emptyDir remembers
    // the first) says so and stays up, so `--previous` has a rotated log to show.
    let script = "if [ -e /data/ran ]; then echo second-run; exec sleep 3600; fi; touch /data/ran; pad=$(printf '%0200d' 0); i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line $i $pad; done; echo first-run-done; exit 1";
    let containers = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"{script}\"]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n"
    );
    let extra = "  volumes:\n  - {name: data, emptyDir: {}}\n";
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("chatty", &kubelet.node, &containers, extra),
    );
    let p = wait_for(&server, "chatty", "restarted and Running", |p| {
        running_and_ready(p)
            && p["status"]["containerStatuses"][0]["restartCount"]
                .as_u64()
                .unwrap_or(0)
                >= 1
    });
    let previous =
        docker_id(&p["status"]["containerStatuses"][0]["lastState"]["terminated"]["containerID"]);
    assert!(
        !previous.is_empty(),
        "no previous container: {:#}",
        p["status"]
    );

    // Docker kept at most 3 files of at most 32 KiB each (a file may pass the limit by the
    // line that crossed it).
    let files = log_files(&previous);
    assert!(
        !files.is_empty() && files.len() <= 3,
        "expected 1 to 3 log files, found {files:?}"
    );
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    assert!(
        total <= 3 * (32 * 1024 + 1024),
        "the log is not bounded: {files:?}"
    );

    // kubectl logs reads across the rotated files: the latest lines are there, the oldest
    // were rotated away.
    let logs = server.kubectl_ok(&["logs", "chatty", "--previous"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.last().copied(), Some("first-run-done"));
    assert!(
        lines.iter().any(|l| l.starts_with("line 3000 ")),
        "the last lines are missing"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("line 1 ")),
        "the first lines should have been rotated away"
    );
    assert!(lines.len() < 3000, "{} lines kept", lines.len());
    let tail = server.kubectl_ok(&["logs", "chatty", "--previous", "--tail=2"]);
    assert_eq!(
        tail.lines().next().map(|l| l.starts_with("line 3000 ")),
        Some(true),
        "{tail}"
    );
    assert_eq!(server.kubectl_ok(&["logs", "chatty"]).trim(), "second-run");
}

/// `docker` against the engine at `host`, which must succeed.
fn docker_at(host: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn image_gc_removes_unused_images_and_keeps_used_and_pause_images() {
    // The kubelet's built-in pause image (skiff_runtime::PAUSE_IMAGE).
    const PAUSE_IMAGE: &str = "skiff/pause:3.9";
    ensure_busybox_image();
    // Its own engine: image GC removes every unused image it may, which on the machine's
    // engine would be other tests' images. Its images go with it.
    let docker = skiff_e2e::PrivateDocker::start();
    let host = docker.host();
    let saved = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker save {BUSYBOX} | DOCKER_HOST={host} docker load"
        ))
        .output()
        .expect("docker save | docker load");
    assert!(
        saved.status.success(),
        "copying {BUSYBOX} into the private engine: {}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let unused = "skiff-test/gc-unused:1";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {BUSYBOX}\nLABEL io.skiff.test=image-gc\n"),
    )
    .expect("write Dockerfile");
    docker_at(
        &host,
        &[
            "build",
            "-q",
            "-t",
            unused,
            &dir.path().display().to_string(),
        ],
    );

    let server = ApiServer::start(Backend::Embedded);
    // The disk always looks 90% full, so every run removes what it may and reports that it
    // could not free enough. Images are first seen at start: the pod uses busybox well
    // within their 20 s of grace.
    let kubelet = Kubelet::start_with_env_and_args(
        &server,
        "e2e-imagegc",
        "10.244.234.0/24",
        &[("DOCKER_HOST", host.as_str())],
        &[
            // The test harness turns image GC off unless told.
            "--image-gc-high-threshold=85",
            "--image-fs-usage-override=90",
            "--image-gc-period=1s",
            "--minimum-image-ttl-duration=20s",
        ],
    );
    let containers = format!(
        "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n"
    );
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("user", &kubelet.node, &containers, "  hostNetwork: true\n"),
    );
    wait_for(&server, "user", "Running and Ready", running_and_ready);

    let images = || {
        let mut tags: Vec<String> =
            docker_at(&host, &["images", "--format", "{{.Repository}}:{{.Tag}}"])
                .lines()
                .map(String::from)
                .collect();
        tags.sort();
        tags
    };
    let gone = wait_until(WAIT, || !images().iter().any(|t| t == unused));
    assert!(gone, "{unused} was not collected; images: {:?}", images());
    let left = images();
    assert!(
        left.iter().any(|t| t == BUSYBOX),
        "the used image went: {left:?}"
    );
    assert!(
        left.iter().any(|t| t == PAUSE_IMAGE),
        "the pause image went: {left:?}"
    );

    // The disk stays "full": the Node hears it, in Kubernetes' words.
    let mut seen = Vec::new();
    let reported = wait_until(WAIT, || {
        seen = events_of(&server, &kubelet.node);
        ["FreeDiskSpaceFailed", "ImageGCFailed"]
            .iter()
            .all(|reason| seen.iter().any(|(r, m, _)| r == reason && m.starts_with("Failed to garbage collect required amount of images. Attempted to free ")))
    });
    assert!(
        reported,
        "no FreeDiskSpaceFailed and ImageGCFailed events: {seen:#?}"
    );
}

/// The node's condition of this type: (status, reason, message).
fn node_condition(server: &ApiServer, node: &str, ty: &str) -> (String, String, String) {
    let n = server.kubectl_json(&["get", "node", node]);
    n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty)
        .map(|c| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&c["status"]), s(&c["reason"]), s(&c["message"]))
        })
        .unwrap_or_default()
}

fn node_taints(server: &ApiServer, node: &str) -> Vec<String> {
    let n = server.kubectl_json(&["get", "node", node]);
    n["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn memory_pressure_evicts_best_effort_pods_taints_the_node_and_clears() {
    ensure_busybox_image();
    let server = ApiServer::start(Backend::Embedded);
    // The node lifecycle controller turns the MemoryPressure condition into a taint.
    let _cm = skiff_e2e::ControllerManager::start(&server);
    // The kubelet measures memory.available from this file while it says so.
    let overrides = tempfile::tempdir().expect("tempdir");
    let file = overrides.path().join("signals");
    std::fs::write(&file, "").expect("write overrides");
    let file_arg = format!("--eviction-signal-overrides-file={}", file.display());
    let kubelet = Kubelet::start_with_args(
        &server,
        "e2e-evict",
        "10.244.235.0/24",
        &[
            &file_arg,
            // One pass every 5 s: time enough to lift the pressure between the first
            // eviction and the next.
            "--eviction-monitoring-interval=5s",
            "--eviction-pressure-transition-period=15s",
        ],
    );
    let node = kubelet.node.clone();
    let (status, reason, message) = node_condition(&server, &node, "MemoryPressure");
    assert_eq!(
        (status.as_str(), reason.as_str(), message.as_str()),
        (
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        )
    );
    let sleeper = |resources: &str| {
        format!(
            "  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n{resources}"
        )
    };
    let guaranteed = sleeper(
        "    resources:\n      requests: {cpu: 10m, memory: 64Mi}\n      limits: {cpu: 10m, memory: 64Mi}\n",
    );
    for (name, containers) in [("guaranteed", guaranteed), ("besteffort", sleeper(""))] {
        server.kubectl_stdin_ok(
            &["apply", "-f", "-"],
            &pod_yaml(name, &node, &containers, "  hostNetwork: true\n"),
        );
    }
    wait_for(
        &server,
        "guaranteed",
        "Running and Ready",
        running_and_ready,
    );
    wait_for(
        &server,
        "besteffort",
        "Running and Ready",
        running_and_ready,
    );

    // Under the 100Mi hard threshold: the BestEffort pod goes first.
    std::fs::write(&file, "memory.available=50Mi\n").expect("write overrides");
    let evicted = wait_for(&server, "besteffort", "evicted", |p| {
        p["status"]["phase"] == "Failed"
    });
    // Lift the pressure before the next pass would take the Guaranteed pod too.
    std::fs::write(&file, "").expect("clear overrides");
    assert_eq!(
        evicted["status"]["reason"], "Evicted",
        "{:#}",
        evicted["status"]
    );
    let message = evicted["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. Container main was using "
        ) && message.ends_with(", request is 0, has larger consumption of memory. "),
        "{message:?}"
    );
    let disruption = evicted["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(disruption["status"], "True", "{:#}", evicted["status"]);
    assert_eq!(disruption["reason"], "TerminationByKubelet");
    wait_for_event(
        &server,
        "besteffort",
        "Evicted",
        "The node was low on resource: memory.",
    );
    assert_eq!(
        node_condition(&server, &node, "MemoryPressure"),
        (
            "True".into(),
            "KubeletHasInsufficientMemory".into(),
            "kubelet has insufficient memory available".into()
        )
    );
    wait_for_event(
        &server,
        &node,
        "NodeHasInsufficientMemory",
        &format!("Node {node} status is now: NodeHasInsufficientMemory"),
    );
    let taint = "node.kubernetes.io/memory-pressure:NoSchedule";
    assert!(
        wait_until(WAIT, || node_taints(&server, &node)
            .iter()
            .any(|t| t == taint)),
        "no {taint}: {:?}",
        node_taints(&server, &node)
    );
    // The evicted pod's sandbox and container are gone: the Guaranteed pod's two are left.
    assert!(
        wait_until(WAIT, || kubelet.containers().len() == 2),
        "containers left: {:?}",
        kubelet.containers()
    );

    // Still within the transition period: a new BestEffort pod is turned away, as upstream.
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &pod_yaml("late", &node, &sleeper(""), "  hostNetwork: true\n"),
    );
    let late = wait_for(&server, "late", "rejected", |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(late["status"]["reason"], "Evicted");
    assert_eq!(
        late["status"]["message"],
        "The node had condition: [MemoryPressure]. "
    );

    // The condition clears once the transition period has passed, and the taint with it.
    let cleared = wait_until(WAIT, || {
        node_condition(&server, &node, "MemoryPressure").0 == "False"
    });
    assert!(
        cleared,
        "{:?}",
        node_condition(&server, &node, "MemoryPressure")
    );
    assert!(
        wait_until(WAIT, || !node_taints(&server, &node)
            .iter()
            .any(|t| t == taint)),
        "{taint} stayed: {:?}",
        node_taints(&server, &node)
    );
    // The Guaranteed pod was never touched.
    let g = pod(&server, "guaranteed");
    assert!(running_and_ready(&g), "{:#}", g["status"]);
    assert_eq!(g["status"]["containerStatuses"][0]["restartCount"], 0);
}
