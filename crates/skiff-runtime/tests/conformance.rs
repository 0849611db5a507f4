//! The one conformance suite for [`ContainerRuntime`], run against every implementation.
//!
//! `conformance!` generates a `docker` and a `fake` module with one test per case. Cases that
//! need real processes (shared localhost, shared files, signals, the OOM killer) check
//! `Ctx::real` and stop early on the fake. The Docker tests skip with a message when no engine
//! answers; each test uses pod UIDs unique to it, removes what it made at the end, and first
//! removes leftovers of an earlier, crashed run of itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use skiff_runtime::*;

const IMAGE: &str = "skiff-test/busybox:1";
const NETWORK: &str = "skiff-conformance";
const SUBNET: &str = "10.250.250.0/24";

struct Ctx {
    rt: Arc<dyn ContainerRuntime>,
    fake: Option<FakeRuntime>,
    /// Whether containers are real processes.
    real: bool,
    /// Prefix of every pod UID this test makes.
    uid: String,
}

impl Ctx {
    /// Another handle on the same containers, as a restarted kubelet would get.
    async fn reconnect(&self) -> Arc<dyn ContainerRuntime> {
        match &self.fake {
            Some(fake) => Arc::new(fake.clone()),
            None => Arc::new(DockerRuntime::connect().await.expect("reconnect to docker")),
        }
    }

    fn sandbox(&self, pod: &str) -> SandboxConfig {
        SandboxConfig {
            namespace: "conformance".into(),
            name: pod.into(),
            uid: format!("{}-{pod}", self.uid),
            hostname: pod.into(),
            network: SandboxNetwork::Pod {
                network: NETWORK.into(),
            },
            port_mappings: vec![],
            labels: [("io.skiff.test".to_string(), self.uid.clone())].into(),
            dns_servers: vec![],
            dns_searches: vec![],
            dns_options: vec![],
            extra_hosts: vec![],
        }
    }

    fn container(&self, name: &str, script: &str) -> ContainerConfig {
        ContainerConfig {
            name: name.into(),
            image: IMAGE.into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec![script.into()],
            labels: [("io.skiff.test".to_string(), self.uid.clone())].into(),
            ..Default::default()
        }
    }

    async fn run(&self, sandbox: &str, config: &ContainerConfig) -> String {
        let id = self
            .rt
            .create_container(sandbox, config)
            .await
            .expect("create container");
        self.rt.start_container(&id).await.expect("start container");
        id
    }

    async fn wait_exited(&self, id: &str, within: Duration) -> ContainerStatus {
        let deadline = Instant::now() + within;
        loop {
            let status = self
                .rt
                .container_status(id)
                .await
                .expect("container status");
            if matches!(status.state, ContainerState::Exited { .. }) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} still {:?} after {within:?}",
                status.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn exec_until(&self, id: &str, cmd: &[&str], want: &str, within: Duration) {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let deadline = Instant::now() + within;
        loop {
            let got = self.rt.exec_sync(id, &cmd, Duration::from_secs(10)).await;
            if let Ok((0, out)) = &got
                && String::from_utf8_lossy(out).contains(want)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{cmd:?} never printed {want:?}; last: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes every container and sandbox of this test (also from earlier runs).
    async fn cleanup(&self) {
        for c in self.rt.list_containers().await.unwrap_or_default() {
            if c.pod_uid.starts_with(&self.uid) {
                let _ = self.rt.remove_container(&c.id).await;
            }
        }
        for s in self.rt.list_sandboxes().await.unwrap_or_default() {
            if s.uid.starts_with(&self.uid) {
                let _ = self.rt.remove_sandbox(&s.id).await;
            }
        }
    }
}

/// Builds the busybox test image once per test binary unless the engine has it.
fn build_test_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let present = std::process::Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy("/bin/busybox", dir.path().join("busybox"))
            .expect("copy /bin/busybox (install busybox-static) into the build context");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\",\"--install\",\"-s\",\"/bin\"]\n",
        )
        .unwrap();
        let status = std::process::Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(dir.path())
            .status()
            .expect("run docker build");
        assert!(status.success(), "docker build of {IMAGE} failed");
    });
}

async fn docker_ctx(test: &str) -> Option<Ctx> {
    let rt = match DockerRuntime::connect().await {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("SKIPPED docker::{test}: no Docker engine answers ({e})");
            return None;
        }
    };
    tokio::task::spawn_blocking(build_test_image).await.unwrap();
    rt.ensure_network(NETWORK, SUBNET)
        .await
        .expect("ensure network");
    Some(Ctx {
        rt: Arc::new(rt),
        fake: None,
        real: true,
        uid: format!("conformance-{test}"),
    })
}

async fn fake_ctx(test: &str) -> Option<Ctx> {
    let fake = FakeRuntime::new();
    fake.add_image(IMAGE);
    fake.ensure_network(NETWORK, SUBNET).await.unwrap();
    Some(Ctx {
        rt: Arc::new(fake.clone()),
        fake: Some(fake),
        real: false,
        uid: format!("conformance-{test}"),
    })
}

type Case = fn(Arc<Ctx>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a case, cleans up whether it passed or panicked, then reports its outcome.
async fn run(ctx: Option<Ctx>, case: Case) {
    let Some(ctx) = ctx else { return };
    let ctx = Arc::new(ctx);
    ctx.cleanup().await;
    let outcome = tokio::spawn(case(ctx.clone())).await;
    ctx.cleanup().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod docker {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::run(crate::docker_ctx(stringify!($case)).await, |c| Box::pin(crate::$case(c))).await;
                }
            )*
        }
        mod fake {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::run(crate::fake_ctx(stringify!($case)).await, |c| Box::pin(crate::$case(c))).await;
                }
            )*
        }
    };
}

conformance!(
    sandbox_gets_ip_and_hostname,
    host_network_sandbox_has_no_pod_ip,
    containers_share_localhost,
    containers_share_a_bind_mount,
    exit_codes_and_reasons,
    memory_limit_is_oom_killed,
    stop_sends_sigterm_then_sigkill,
    labels_let_a_new_runtime_adopt_everything,
    logs_tail_follow_and_timestamps,
    exec_sync_returns_code_and_output,
    exec_streams_stdin,
    pull_policies,
    remove_is_idempotent,
    stats_of_a_running_container,
);

async fn sandbox_gets_ip_and_hostname(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("web")).await.unwrap();
    let ip: std::net::Ipv4Addr = sb.ip.as_deref().expect("pod IP").parse().unwrap();
    assert_eq!(ip.octets()[..3], [10, 250, 250], "{ip} not in {SUBNET}");
    assert!(sb.ready);
    assert_eq!(
        (sb.namespace.as_str(), sb.name.as_str()),
        ("conformance", "web")
    );

    // The pause container stays up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = c.rt.list_sandboxes().await.unwrap();
    let again = listed
        .iter()
        .find(|s| s.id == sb.id)
        .expect("sandbox listed");
    assert!(again.ready, "pause container died");
    assert_eq!(again.ip, sb.ip);
    assert_eq!(again.uid, format!("{}-web", c.uid));

    if c.real {
        let app = c.run(&sb.id, &c.container("app", "sleep 3600")).await;
        c.exec_until(&app, &["hostname"], "web", Duration::from_secs(5))
            .await;
        c.exec_until(
            &app,
            &["ip", "addr"],
            &ip.to_string(),
            Duration::from_secs(5),
        )
        .await;
    }
}

async fn host_network_sandbox_has_no_pod_ip(c: Arc<Ctx>) {
    let mut config = c.sandbox("hostnet");
    config.network = SandboxNetwork::Host;
    let sb = c.rt.run_sandbox(&config).await.unwrap();
    assert_eq!(sb.ip, None);
    assert!(sb.ready);
}

async fn containers_share_localhost(c: Arc<Ctx>) {
    if !c.real {
        return;
    }
    let sb = c.rt.run_sandbox(&c.sandbox("pair")).await.unwrap();
    let server = "mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 8080 -h /www";
    c.run(&sb.id, &c.container("server", server)).await;
    let client = c.run(&sb.id, &c.container("client", "sleep 3600")).await;
    c.exec_until(
        &client,
        &["wget", "-qO-", "http://127.0.0.1:8080/"],
        "hello-from-server",
        Duration::from_secs(10),
    )
    .await;
}

async fn containers_share_a_bind_mount(c: Arc<Ctx>) {
    if !c.real {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount {
        host_path: dir.path().display().to_string(),
        container_path: "/data".into(),
        read_only: false,
    };
    let sb = c.rt.run_sandbox(&c.sandbox("volume")).await.unwrap();
    let mut writer = c.container("writer", "echo shared-bytes > /data/file; sleep 3600");
    writer.mounts = vec![mount.clone()];
    let mut reader = c.container("reader", "sleep 3600");
    reader.mounts = vec![Mount {
        read_only: true,
        ..mount
    }];
    c.run(&sb.id, &writer).await;
    let reader = c.run(&sb.id, &reader).await;
    c.exec_until(
        &reader,
        &["cat", "/data/file"],
        "shared-bytes",
        Duration::from_secs(10),
    )
    .await;
    // Read-only really is read-only.
    let (code, _) =
        c.rt.exec_sync(
            &reader,
            &["sh".into(), "-c".into(), "echo x > /data/other".into()],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_ne!(code, 0, "wrote through a read-only mount");
}

async fn exit_codes_and_reasons(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("exits")).await.unwrap();
    let ok = c.run(&sb.id, &c.container("ok", "exit 0")).await;
    let mut failing = c.container("failing", "echo bye; exit 3");
    failing.restart_count = 2;
    let failing = c.run(&sb.id, &failing).await;

    let status = c.wait_exited(&ok, Duration::from_secs(20)).await;
    match status.state {
        ContainerState::Exited {
            exit_code: 0,
            ref reason,
            ..
        } => assert_eq!(reason, "Completed"),
        ref other => panic!("unexpected {other:?}"),
    }
    let status = c.wait_exited(&failing, Duration::from_secs(20)).await;
    match status.state {
        ContainerState::Exited {
            exit_code,
            ref reason,
            started_at,
            finished_at,
        } => {
            assert_eq!((exit_code, reason.as_str()), (3, "Error"));
            let (started, finished) = (
                started_at.expect("started_at"),
                finished_at.expect("finished_at"),
            );
            assert!(finished >= started);
        }
        ref other => panic!("unexpected {other:?}"),
    }
    assert_eq!(status.restart_count, 2);
    assert_eq!(status.name, "failing");
    assert_eq!(status.image, IMAGE);
    assert!(status.image_id.contains("sha256:"), "{}", status.image_id);
    assert_eq!(status.sandbox_id.as_deref(), Some(sb.id.as_str()));

    // A created but never started container reports Created.
    let created =
        c.rt.create_container(&sb.id, &c.container("idle", "exit 0"))
            .await
            .unwrap();
    assert_eq!(
        c.rt.container_status(&created).await.unwrap().state,
        ContainerState::Created
    );

    if let Some(fake) = &c.fake {
        let long = c.run(&sb.id, &c.container("long", "sleep 3600")).await;
        fake.exit(&long, 5).unwrap();
        assert!(matches!(
            c.rt.container_status(&long).await.unwrap().state,
            ContainerState::Exited { exit_code: 5, .. }
        ));
    }
}

async fn memory_limit_is_oom_killed(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("oom")).await.unwrap();
    let mut hog = c.container("hog", "tail /dev/zero");
    hog.resources.memory_limit_bytes = Some(16 << 20);
    let hog = c.run(&sb.id, &hog).await;
    if let Some(fake) = &c.fake {
        fake.oom_kill(&hog).unwrap();
    }
    let status = c.wait_exited(&hog, Duration::from_secs(30)).await;
    match status.state {
        ContainerState::Exited {
            exit_code,
            ref reason,
            ..
        } => {
            assert_eq!((exit_code, reason.as_str()), (137, "OOMKilled"))
        }
        ref other => panic!("unexpected {other:?}"),
    }
}

async fn stop_sends_sigterm_then_sigkill(c: Arc<Ctx>) {
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount {
        host_path: dir.path().display().to_string(),
        container_path: "/data".into(),
        read_only: false,
    };
    let sb = c.rt.run_sandbox(&c.sandbox("stop")).await.unwrap();
    let mut polite = c.container(
        "polite",
        "trap 'echo got-term > /data/term; exit 0' TERM; while true; do sleep 0.1; done",
    );
    polite.mounts = vec![mount];
    let polite = c.run(&sb.id, &polite).await;
    let stubborn = c
        .run(
            &sb.id,
            &c.container("stubborn", "trap '' TERM; while true; do sleep 0.1; done"),
        )
        .await;
    if c.real {
        // Let the shells install their traps.
        c.exec_until(&polite, &["true"], "", Duration::from_secs(5))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let start = Instant::now();
    c.rt.stop_container(&polite, Duration::from_secs(20))
        .await
        .unwrap();
    let took = start.elapsed();
    let status = c.rt.container_status(&polite).await.unwrap();
    assert!(
        matches!(status.state, ContainerState::Exited { .. }),
        "{:?}",
        status.state
    );
    if c.real {
        assert!(
            took < Duration::from_secs(10),
            "SIGTERM was not delivered ({took:?})"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("term")).unwrap(),
            "got-term\n"
        );
        assert!(
            matches!(status.state, ContainerState::Exited { exit_code: 0, .. }),
            "{:?}",
            status.state
        );
    }

    let start = Instant::now();
    c.rt.stop_container(&stubborn, Duration::from_secs(1))
        .await
        .unwrap();
    let took = start.elapsed();
    let status = c.rt.container_status(&stubborn).await.unwrap();
    if c.real {
        assert!(
            took >= Duration::from_secs(1),
            "did not wait out the grace period ({took:?})"
        );
        assert!(
            took < Duration::from_secs(10),
            "SIGKILL too late ({took:?})"
        );
        assert!(
            matches!(status.state, ContainerState::Exited { exit_code: 137, .. }),
            "{:?}",
            status.state
        );
    } else {
        assert!(
            matches!(status.state, ContainerState::Exited { .. }),
            "{:?}",
            status.state
        );
    }
    // Stopping again is fine.
    c.rt.stop_container(&stubborn, Duration::from_secs(1))
        .await
        .unwrap();
}

async fn labels_let_a_new_runtime_adopt_everything(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("adopt")).await.unwrap();
    let mut main = c.container("main", "sleep 3600");
    main.restart_count = 4;
    let main = c.run(&sb.id, &main).await;
    let side = c.run(&sb.id, &c.container("side", "sleep 3600")).await;

    let rt = c.reconnect().await;
    let sandboxes: Vec<_> = rt
        .list_sandboxes()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.uid == format!("{}-adopt", c.uid))
        .collect();
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(sandboxes[0].id, sb.id);
    assert_eq!(sandboxes[0].name, "adopt");
    assert_eq!(sandboxes[0].namespace, "conformance");
    assert_eq!(sandboxes[0].ip, sb.ip);

    let mut containers: Vec<_> = rt
        .list_containers()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.pod_uid == sb.uid)
        .collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let summary: Vec<_> = containers
        .iter()
        .map(|c| (c.id.clone(), c.name.clone(), c.restart_count))
        .collect();
    assert_eq!(
        summary,
        vec![(main, "main".to_string(), 4), (side, "side".to_string(), 0)]
    );
    for ct in &containers {
        assert_eq!(
            (ct.pod_name.as_str(), ct.pod_namespace.as_str()),
            ("adopt", "conformance")
        );
        assert_eq!(ct.sandbox_id.as_deref(), Some(sb.id.as_str()));
        assert!(
            matches!(ct.state, ContainerState::Running { .. }),
            "{:?}",
            ct.state
        );
    }
    // Sandboxes are not listed as containers, nor containers as sandboxes.
    assert!(!containers.iter().any(|ct| ct.id == sb.id));
}

async fn collect_logs(rt: &dyn ContainerRuntime, id: &str, options: &LogOptions) -> String {
    let mut stream = rt.logs(id, options).await.unwrap();
    let mut out = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("log stream never ended");
    String::from_utf8(out).unwrap()
}

async fn logs_tail_follow_and_timestamps(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("logs")).await.unwrap();
    let done = c
        .run(
            &sb.id,
            &c.container("done", "echo one; echo two; echo three; echo four"),
        )
        .await;
    c.wait_exited(&done, Duration::from_secs(20)).await;
    let all = collect_logs(&*c.rt, &done, &LogOptions::default()).await;
    assert_eq!(all, "one\ntwo\nthree\nfour\n");
    let tail = collect_logs(
        &*c.rt,
        &done,
        &LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(tail, "three\nfour\n");
    let stamped = collect_logs(
        &*c.rt,
        &done,
        &LogOptions {
            timestamps: true,
            ..Default::default()
        },
    )
    .await;
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 4, "{stamped:?}");
    for (line, word) in lines.iter().zip(["one", "two", "three", "four"]) {
        let (stamp, text) = line.split_once(' ').expect("timestamp prefix");
        assert!(
            stamp.parse::<jiff::Timestamp>().is_ok(),
            "bad timestamp {stamp:?}"
        );
        assert_eq!(text, word);
    }
    // Following a running container delivers what it prints later, and ends when it exits.
    let slow = c
        .run(
            &sb.id,
            &c.container("slow", "echo first; sleep 2; echo second"),
        )
        .await;
    let followed = collect_logs(
        &*c.rt,
        &slow,
        &LogOptions {
            follow: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(followed, "first\nsecond\n");
    if let Some(fake) = &c.fake {
        let live = c
            .run(&sb.id, &c.container("live", "echo a; sleep 3600"))
            .await;
        let mut stream =
            c.rt.logs(
                &live,
                &LogOptions {
                    follow: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"a\n");
        fake.write_log(&live, b"b\n").unwrap();
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"b\n");
        fake.exit(&live, 0).unwrap();
        assert!(stream.next().await.is_none());
    }
    assert!(matches!(
        c.rt.logs("no-such-container", &LogOptions::default())
            .await
            .err(),
        Some(RuntimeError::NotFound { .. })
    ));
}

async fn exec_sync_returns_code_and_output(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("exec")).await.unwrap();
    let id = c.run(&sb.id, &c.container("app", "sleep 3600")).await;
    let cmd = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
    let (code, out) =
        c.rt.exec_sync(&id, &cmd("echo hello; exit 7"), Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(
        (code, String::from_utf8(out).unwrap().as_str()),
        (7, "hello\n")
    );
    let (code, _) =
        c.rt.exec_sync(&id, &cmd("true"), Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(code, 0);
    if c.real {
        let (code, out) =
            c.rt.exec_sync(&id, &cmd("echo oops >&2; exit 1"), Duration::from_secs(10))
                .await
                .unwrap();
        assert_eq!(
            (code, String::from_utf8(out).unwrap().as_str()),
            (1, "oops\n")
        );
        let start = Instant::now();
        let slow =
            c.rt.exec_sync(&id, &cmd("sleep 5"), Duration::from_millis(500))
                .await;
        assert!(slow.is_err(), "timeout not enforced: {slow:?}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}

async fn exec_streams_stdin(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("stdin")).await.unwrap();
    let id = c.run(&sb.id, &c.container("app", "sleep 3600")).await;
    let mut session =
        c.rt.exec(&id, &["cat".to_string()], false, true)
            .await
            .unwrap();
    let stdin = session.stdin.take().expect("stdin");
    stdin
        .send(bytes::Bytes::from_static(b"ping\n"))
        .await
        .unwrap();
    stdin
        .send(bytes::Bytes::from_static(b"pong\n"))
        .await
        .unwrap();
    drop(stdin); // EOF
    let mut out = Vec::new();
    let read = async {
        while let Some(item) = session.output.next().await {
            let (stream, bytes) = item.unwrap();
            assert_eq!(stream, 1);
            out.extend_from_slice(&bytes);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("exec output never ended");
    assert_eq!(String::from_utf8(out).unwrap(), "ping\npong\n");
    let code = tokio::time::timeout(Duration::from_secs(10), session.exit_code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
}

async fn pull_policies(c: Arc<Ctx>) {
    let present =
        c.rt.ensure_image(IMAGE, PullPolicy::IfNotPresent)
            .await
            .unwrap();
    assert!(present.id.starts_with("sha256:"), "{present:?}");
    assert!(!present.pulled, "the test image is loaded, not pulled");
    assert_eq!(
        c.rt.ensure_image(IMAGE, PullPolicy::Never).await.unwrap(),
        present
    );

    let absent = "skiff-test/absent:1";
    match c.rt.ensure_image(absent, PullPolicy::Never).await {
        Err(RuntimeError::ImageNeverPull { image }) => assert_eq!(image, absent),
        other => panic!("expected ImageNeverPull, got {other:?}"),
    }
    match c
        .rt
        .ensure_image("skiff-test/Bad-Name:1", PullPolicy::IfNotPresent)
        .await
    {
        Err(RuntimeError::ImagePull { message, .. }) => {
            assert!(message.contains("invalid reference format"), "{message}")
        }
        other => panic!("expected ImagePull, got {other:?}"),
    }
    // A pull that cannot succeed (no registry is reachable in tests) reports the engine's words.
    if let Some(fake) = &c.fake {
        fake.fail_pull(absent, "pull access denied for skiff-test/absent");
    }
    match c.rt.ensure_image(absent, PullPolicy::IfNotPresent).await {
        Err(RuntimeError::ImagePull { image, message }) => {
            assert_eq!(image, absent);
            assert!(!message.is_empty());
        }
        other => panic!("expected ImagePull, got {other:?}"),
    }
}

async fn remove_is_idempotent(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("removal")).await.unwrap();
    let id = c.run(&sb.id, &c.container("app", "sleep 3600")).await;
    c.rt.remove_container(&id).await.unwrap();
    c.rt.remove_container(&id).await.unwrap();
    assert!(matches!(
        c.rt.container_status(&id).await,
        Err(RuntimeError::NotFound { .. })
    ));
    c.rt.stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    c.rt.remove_sandbox(&sb.id).await.unwrap();
    c.rt.remove_sandbox(&sb.id).await.unwrap();
    assert!(
        !c.rt
            .list_sandboxes()
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == sb.id)
    );
    c.rt.remove_container("never-existed").await.unwrap();
    c.rt.remove_sandbox("never-existed").await.unwrap();
    assert!(matches!(
        c.rt.create_container(&sb.id, &c.container("late", "true"))
            .await,
        Err(RuntimeError::NotFound { .. })
    ));
}

async fn stats_of_a_running_container(c: Arc<Ctx>) {
    let sb = c.rt.run_sandbox(&c.sandbox("stats")).await.unwrap();
    let id = c
        .run(&sb.id, &c.container("busy", "while true; do :; done"))
        .await;
    if c.real {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stats = c.rt.stats(&id).await.unwrap();
    assert!(stats.cpu_usage_nanos > 0, "{stats:?}");
    assert!(stats.memory_working_set_bytes > 0, "{stats:?}");
    let v = c.rt.version().await.unwrap();
    assert!(!v.name.is_empty() && !v.version.is_empty());
}
