//! Unit tests of the pod worker's lifecycle on the fake runtime and the fake API: restart
//! decisions and backoff, probe verdicts, preStop on deletion, status.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, HTTPGetAction, HTTPHeader, Lifecycle, LifecycleHandler, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_client::events::EventType;
use skiff_runtime::{ContainerRuntime, ContainerState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::Worker;
use super::testing::{Node, container, pod_with};

/// The state the worker last saw of container `name`.
fn state(w: &Worker, name: &str) -> Option<ContainerState> {
    w.slots.get(name).and_then(|s| s.state.clone())
}

fn restarts(w: &Worker, name: &str) -> u32 {
    w.slots.get(name).map_or(0, |s| s.restarts)
}

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| s.to_string()).collect()),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    }
}

/// The `status` of the pod condition `ty`.
fn condition(status: &serde_json::Value, ty: &str) -> String {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn restart_policy_decides_whether_an_exited_container_restarts() {
    // (restartPolicy, exit code, restarted after the first backoff, phase while it waits)
    let cases = [
        ("Always", 0, true, "Running"),
        ("Always", 1, true, "Running"),
        ("OnFailure", 0, false, "Succeeded"),
        ("OnFailure", 1, true, "Running"),
        ("Never", 0, false, "Succeeded"),
        ("Never", 1, false, "Failed"),
    ];
    for (policy, code, restarted, phase) in cases {
        let node = Node::new();
        let command = format!("exit {code}");
        let pod = pod_with(container("app", &["sh", "-c", &command]), policy);
        let (mut w, _tx) = node.worker(pod.clone());
        w.sync().await; // starts the container, which exits at once
        w.sync().await; // sees it exited: backs off, or leaves it
        w.report().await;
        assert_eq!(
            node.status(&pod)["phase"],
            phase,
            "{policy} after exit {code}"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        w.sync().await;
        assert_eq!(
            restarts(&w, "app"),
            u32::from(restarted),
            "{policy} after exit {code}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backoff_doubles_from_ten_seconds() {
    let node = Node::new();
    let pod = pod_with(container("app", &["sh", "-c", "exit 1"]), "Always");
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await;
    for (attempt, backoff) in [(0, 10), (1, 20), (2, 40)] {
        w.sync().await; // sees the exit, waits `backoff`
        w.report().await;
        let status = node.status(&pod);
        let waiting = &status["containerStatuses"][0]["state"]["waiting"];
        assert_eq!(waiting["reason"], "CrashLoopBackOff");
        assert!(
            waiting["message"].as_str().unwrap().starts_with(&format!(
                "back-off {backoff}s restarting failed container=app"
            )),
            "{waiting}"
        );
        assert_eq!(
            status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            1
        );
        tokio::time::advance(Duration::from_secs(backoff - 1)).await;
        w.sync().await;
        assert_eq!(restarts(&w, "app"), attempt, "still waiting");
        tokio::time::advance(Duration::from_secs(1)).await;
        w.sync().await;
        assert_eq!(
            restarts(&w, "app"),
            attempt + 1,
            "restarted after {backoff}s"
        );
    }
    let events = node.api.events();
    assert!(
        events.iter().any(|e| e.reason == "BackOff"
            && e.type_ == EventType::Warning
            && e.field_path.as_deref() == Some("spec.containers{app}")),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let node = Node::new();
    let mut app = container("app", &["sleep", "infinity"]);
    app.liveness_probe = Some(exec_probe(&["false"]));
    let pod = pod_with(app, "Always");
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await; // starts it
    assert_eq!(state(&w, "app"), Some(ContainerState::Created));
    w.sync().await; // running: the probe fails once, which is the threshold
    w.sync().await; // sees it killed
    assert!(
        matches!(
            state(&w, "app"),
            Some(ContainerState::Exited { exit_code: 143, .. })
        ),
        "{:?}",
        state(&w, "app")
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    w.sync().await;
    assert_eq!(restarts(&w, "app"), 1);
    let reasons: Vec<(String, String)> = node
        .api
        .events()
        .into_iter()
        .map(|e| (e.reason, e.message))
        .collect();
    assert!(
        reasons.contains(&(
            "Unhealthy".into(),
            "Liveness probe failed: command [\"false\"] exited with 1: ".into()
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            "Killing".into(),
            "Container app failed liveness probe, will be restarted".into()
        )),
        "{reasons:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_passing_liveness_probe_leaves_the_container_running() {
    let node = Node::new();
    let mut app = container("app", &["sleep", "infinity"]);
    app.liveness_probe = Some(exec_probe(&["true"]));
    let (mut w, _tx) = node.worker(pod_with(app, "Always"));
    for _ in 0..5 {
        w.sync().await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert!(matches!(
        state(&w, "app"),
        Some(ContainerState::Running { .. })
    ));
    assert_eq!(restarts(&w, "app"), 0);
}

#[tokio::test(start_paused = true)]
async fn readiness_drives_the_ready_condition() {
    let node = Node::new();
    let mut app = container("app", &["sleep", "infinity"]);
    app.readiness_probe = Some(exec_probe(&["false"]));
    let pod = pod_with(app.clone(), "Always");
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await;
    w.sync().await;
    w.report().await;
    let status = node.status(&pod);
    assert_eq!(status["phase"], "Running");
    assert_eq!(condition(&status, "Ready"), "False");
    assert_eq!(condition(&status, "ContainersReady"), "False");
    assert_eq!(status["containerStatuses"][0]["ready"], false);
    // A failing readiness probe never restarts the container.
    assert!(matches!(
        state(&w, "app"),
        Some(ContainerState::Running { .. })
    ));

    // The probe starts passing (the spec's command now succeeds): Ready follows.
    app.readiness_probe = Some(exec_probe(&["true"]));
    w.pod = pod_with(app, "Always");
    tokio::time::advance(Duration::from_secs(1)).await;
    w.sync().await;
    w.report().await;
    let status = node.status(&pod);
    assert_eq!(condition(&status, "Ready"), "True");
    assert_eq!(condition(&status, "ContainersReady"), "True");
    assert_eq!(status["containerStatuses"][0]["ready"], true);
}

#[tokio::test]
async fn without_a_pod_network_the_pod_stays_pending_with_the_reason() {
    let node = Node::with_pod_network(None);
    let pod = pod_with(container("app", &["sleep", "infinity"]), "Always");
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await;
    w.report().await;
    let status = node.status(&pod);
    assert_eq!(status["phase"], "Pending");
    assert_eq!(
        status["message"],
        "the node has no pod network yet (no spec.podCIDR)"
    );
    assert_eq!(condition(&status, "PodReadyToStartContainers"), "False");
    assert!(node.runtime.list_containers().await.unwrap().is_empty());
}

/// Accepts one HTTP request on 127.0.0.1, answers 200, and returns the request's head.
async fn one_request() -> (u16, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&head).to_lowercase()
    });
    (port, task)
}

#[tokio::test]
async fn deletion_runs_the_pre_stop_http_get_on_a_named_port_then_deletes_the_pod() {
    let (port, request) = one_request().await;
    let node = Node::new();
    let mut app = container("app", &["sleep", "infinity"]);
    app.ports = Some(vec![ContainerPort {
        name: Some("admin".into()),
        container_port: port.into(),
        ..Default::default()
    }]);
    app.lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            http_get: Some(HTTPGetAction {
                host: Some("127.0.0.1".into()),
                port: IntOrString::String("admin".into()),
                path: Some("/drain".into()),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-Drain".into(),
                    value: "now".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut pod = pod_with(app, "Always");
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await;
    w.sync().await;
    assert!(matches!(
        state(&w, "app"),
        Some(ContainerState::Running { .. })
    ));

    pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    pod.metadata.deletion_grace_period_seconds = Some(5);
    w.pod = pod;
    w.run(CancellationToken::new()).await;

    let head = request.await.unwrap();
    assert!(head.starts_with("get /drain http/1.1"), "{head}");
    assert!(head.contains("x-drain: now"), "{head}");
    assert!(head.contains("user-agent: kube-lifecycle/"), "{head}");
    assert!(node.runtime.list_containers().await.unwrap().is_empty());
    assert!(node.runtime.list_sandboxes().await.unwrap().is_empty());
    assert_eq!(
        node.api.deleted(),
        vec![("default".to_string(), "web".to_string())]
    );
    assert!(!node.root.path().join("pods").join("uid-web").exists());
    assert!(
        node.api
            .events()
            .iter()
            .any(|e| e.reason == "Killing" && e.message == "Stopping container app")
    );
}

#[tokio::test]
async fn shutdown_leaves_the_pod_running_and_a_gone_pod_is_stopped_but_not_deleted() {
    let node = Node::new();
    let pod = pod_with(container("app", &["sleep", "infinity"]), "Always");

    // The kubelet shuts down: the pod keeps running, to be adopted by the next kubelet.
    let (mut first, _updates) = node.worker(pod.clone());
    first.sync().await;
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    first.run(shutdown).await;
    assert_eq!(node.runtime.list_containers().await.unwrap().len(), 1);

    // The next worker adopts the container; then the pod is gone from the API (the update
    // channel closes): the worker stops everything, and has nothing to delete.
    let (second, updates) = node.worker(pod.clone());
    drop(updates);
    second.run(CancellationToken::new()).await;
    assert!(node.runtime.list_containers().await.unwrap().is_empty());
    assert!(node.runtime.list_sandboxes().await.unwrap().is_empty());
    assert!(node.api.deleted().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failing_pull_backs_off_as_err_image_pull_then_image_pull_back_off() {
    let node = Node::new();
    node.runtime.fail_pull("busybox", "manifest unknown");
    let pod = pod_with(container("app", &["sleep", "infinity"]), "Always");
    let (mut w, _tx) = node.worker(pod.clone());
    let waiting_reason = |node: &Node| {
        node.status(&pod)["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    w.sync().await;
    w.report().await;
    assert_eq!(waiting_reason(&node), "ErrImagePull");
    // Nothing is retried before the 10 s backoff is over.
    tokio::time::advance(Duration::from_secs(9)).await;
    w.sync().await;
    w.report().await;
    assert_eq!(waiting_reason(&node), "ErrImagePull");
    tokio::time::advance(Duration::from_secs(1)).await;
    w.sync().await;
    w.report().await;
    assert_eq!(waiting_reason(&node), "ImagePullBackOff");
    let reasons: Vec<String> = node.api.events().into_iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        ["Pulling", "Failed", "Failed", "BackOff", "Failed"],
        "{reasons:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order_before_the_app() {
    let node = Node::new();
    let pod = super::testing::pod(k8s_openapi::api::core::v1::PodSpec {
        init_containers: Some(vec![
            container("first", &["sh", "-c", "exit 0"]),
            container("second", &["sleep", "infinity"]),
        ]),
        containers: vec![container("app", &["sleep", "infinity"])],
        ..Default::default()
    });
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await;
    assert!(state(&w, "first").is_some());
    assert!(state(&w, "second").is_none(), "one at a time");
    w.sync().await;
    assert!(state(&w, "second").is_some());
    w.sync().await;
    assert!(state(&w, "app").is_none(), "second is still running");
    w.report().await;
    let status = node.status(&pod);
    assert_eq!(condition(&status, "Initialized"), "False");
    assert_eq!(status["phase"], "Pending");

    let second = w.slots["second"].id.clone().unwrap();
    node.runtime.exit(&second, 0).unwrap();
    w.sync().await;
    assert!(state(&w, "app").is_some());
    w.sync().await;
    w.report().await;
    let status = node.status(&pod);
    assert_eq!(condition(&status, "Initialized"), "True");
    assert_eq!(condition(&status, "Ready"), "True");
    assert_eq!(status["phase"], "Running");
}

#[tokio::test(start_paused = true)]
async fn a_token_that_cannot_be_fetched_keeps_the_container_waiting_with_the_reason() {
    use k8s_openapi::api::core::v1::{
        ProjectedVolumeSource, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    };
    let node = Node::new();
    node.api
        .fail_token_requests(Some("serviceaccounts \"default\" not found"));
    let mut app = container("app", &["sleep", "infinity"]);
    app.volume_mounts = Some(vec![VolumeMount {
        name: "kube-api-access-x9k2p".into(),
        mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
        read_only: Some(true),
        ..Default::default()
    }]);
    let mut pod = pod_with(app, "Always");
    pod.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "kube-api-access-x9k2p".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    expiration_seconds: Some(3607),
                    audience: None,
                }),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    }]);
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await;
    w.report().await;
    let waiting = &node.status(&pod)["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "CreateContainerConfigError");
    assert_eq!(
        waiting["message"],
        "failed to fetch token: serviceaccounts \"default\" not found"
    );
    assert!(
        node.api
            .events()
            .iter()
            .any(|e| e.type_ == EventType::Warning
                && e.reason == "Failed"
                && e.message
                    == "Error: failed to fetch token: serviceaccounts \"default\" not found"),
        "{:?}",
        node.api.events()
    );

    // The apiserver answers again: the next attempt (after the 10 s backoff) starts it.
    node.api.fail_token_requests(None);
    tokio::time::advance(Duration::from_secs(12)).await;
    w.sync().await;
    assert!(state(&w, "app").is_some());
    let token = node
        .root
        .path()
        .join("pods/uid-web/volumes/kube-api-access-x9k2p/token");
    assert_eq!(std::fs::read_to_string(token).unwrap(), "fake-token-2");
}

#[tokio::test(start_paused = true)]
async fn a_sub_path_out_of_its_volume_keeps_the_container_waiting_with_the_reason() {
    use k8s_openapi::api::core::v1::{Volume, VolumeMount};
    let node = Node::new();
    let mut app = container("app", &["sleep", "infinity"]);
    app.volume_mounts = Some(vec![VolumeMount {
        name: "scratch".into(),
        mount_path: "/work".into(),
        sub_path: Some("escape".into()),
        ..Default::default()
    }]);
    let mut pod = pod_with(app, "Always");
    pod.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "scratch".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }]);
    // What another container of the pod could leave in the shared emptyDir.
    let scratch = node.root.path().join("pods/uid-web/volumes/scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::os::unix::fs::symlink("/etc", scratch.join("escape")).unwrap();

    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await;
    w.report().await;
    let message =
        "failed to create subPath directory for volumeMount \"scratch\" of container \"app\"";
    let waiting = &node.status(&pod)["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "CreateContainerConfigError");
    assert_eq!(waiting["message"], message);
    assert!(state(&w, "app").is_none(), "the container was not created");
    assert!(
        node.api
            .events()
            .iter()
            .any(|e| e.type_ == EventType::Warning
                && e.reason == "Failed"
                && e.message == format!("Error: {message}")),
        "{:?}",
        node.api.events()
    );
}

#[tokio::test]
async fn an_evicted_pod_stops_for_good_as_failed_evicted_with_a_disruption_target() {
    let node = Node::new();
    let pod = pod_with(container("app", &["sleep", "infinity"]), "Always");
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await; // starts the container
    w.sync().await; // sees it running
    w.report().await;
    assert_eq!(node.status(&pod)["phase"], "Running");

    let message =
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. ";
    w.evict(crate::eviction::Eviction {
        uid: "uid-web".into(),
        message: message.into(),
        grace: Duration::from_secs(1),
    })
    .await;
    w.report().await;
    assert!(node.runtime.list_containers().await.unwrap().is_empty());
    assert!(node.runtime.list_sandboxes().await.unwrap().is_empty());
    let status = node.status(&pod);
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "Evicted");
    assert_eq!(status["message"], message);
    assert_eq!(condition(&status, "DisruptionTarget"), "True");
    assert_eq!(condition(&status, "Ready"), "False");
    assert_eq!(
        status["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    let evicted = node
        .api
        .events()
        .into_iter()
        .find(|e| e.reason == "Evicted")
        .expect("an Evicted event");
    assert_eq!(evicted.type_, EventType::Warning);
    assert_eq!(evicted.message, message);

    // Nothing restarts it, not even a new kubelet's worker reading the Failed status.
    w.sync().await;
    assert!(node.runtime.list_containers().await.unwrap().is_empty());
    let mut stored = pod.clone();
    stored.status = Some(serde_json::from_value(status).unwrap());
    let (next, updates) = node.worker(stored);
    assert!(next.terminal.is_some());
    drop(updates);
    next.run(CancellationToken::new()).await;
    assert!(node.runtime.list_containers().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rejected_pod_never_starts() {
    let node = Node::new();
    let pod = pod_with(container("app", &["sleep", "infinity"]), "Always");
    let (mut w, updates) = node.worker(pod.clone());
    w.reject("Evicted", "The node had condition: [DiskPressure]. ".into());
    let run = tokio::spawn(w.run(CancellationToken::new()));
    let stored = loop {
        let s = node.status(&pod);
        if s["phase"] == "Failed" {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(stored["reason"], "Evicted");
    assert_eq!(
        stored["message"],
        "The node had condition: [DiskPressure]. "
    );
    assert_eq!(condition(&stored, "DisruptionTarget"), "");
    assert!(node.runtime.list_sandboxes().await.unwrap().is_empty());
    drop(updates);
    run.await.unwrap();
}

#[tokio::test]
async fn conditions_others_wrote_survive_the_kubelets_status_writes() {
    let node = Node::new();
    let mut pod = pod_with(container("app", &["sleep", "infinity"]), "Always");
    pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
        conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("EvictionByEvictionAPI".into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let (mut w, _tx) = node.worker(pod.clone());
    w.sync().await;
    w.report().await;
    let status = node.status(&pod);
    assert_eq!(condition(&status, "DisruptionTarget"), "True");
    assert_eq!(condition(&status, "PodScheduled"), "True");
}
