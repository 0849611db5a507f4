//! Docker-only checks the shared conformance suite cannot express: the built-in pause image
//! loads and behaves, and a ContainerConfig reaches the engine as the kubelet means it.

use std::time::{Duration, Instant};

use bollard::query_parameters::{RemoveContainerOptions, RemoveImageOptions, StopContainerOptions};
use futures::StreamExt;
use skiff_runtime::*;

async fn docker() -> Option<DockerRuntime> {
    match DockerRuntime::connect().await {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("SKIPPED: no Docker engine answers ({e})");
            None
        }
    }
}

/// The tarball loads as an image whose container stays up and exits 0 promptly on SIGTERM.
/// Uses its own tag, so it never disturbs sandboxes of tests running alongside.
#[tokio::test]
async fn pause_image_loads_runs_and_stops_on_sigterm() {
    let Some(rt) = docker().await else { return };
    let docker = rt.client();
    let image = "skiff-test/pause-load:1";
    let name = "skiff-test-pause-load";
    let force = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    let _ = docker.remove_container(name, Some(force.clone())).await;
    let _ = docker
        .remove_image(image, None::<RemoveImageOptions>, None)
        .await;

    let tar = pause_image_tar(image);
    let mut load = docker.import_image(
        bollard::query_parameters::ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        bollard::body_full(tar.into()),
        None,
    );
    while let Some(item) = load.next().await {
        item.expect("docker load of the pause tarball");
    }

    let body = bollard::models::ContainerCreateBody {
        image: Some(image.into()),
        ..Default::default()
    };
    let options = bollard::query_parameters::CreateContainerOptions {
        name: Some(name.into()),
        ..Default::default()
    };
    docker.create_container(Some(options), body).await.unwrap();
    docker.start_container(name, None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = docker
        .inspect_container(name, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.running, Some(true), "pause exited: {state:?}");

    let start = Instant::now();
    docker
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: Some(20),
                signal: None,
            }),
        )
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "pause ignored SIGTERM"
    );
    let state = docker
        .inspect_container(name, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.exit_code, Some(0));

    docker.remove_container(name, Some(force)).await.unwrap();
    let _ = docker
        .remove_image(image, None::<RemoveImageOptions>, None)
        .await;
}

#[tokio::test]
async fn container_config_reaches_the_engine() {
    let Some(rt) = docker().await else { return };
    let uid = "docker-specifics-config";
    // Leftovers of a crashed run.
    for c in rt.list_containers().await.unwrap() {
        if c.pod_uid == uid {
            rt.remove_container(&c.id).await.unwrap();
        }
    }
    for s in rt.list_sandboxes().await.unwrap() {
        if s.uid == uid {
            rt.remove_sandbox(&s.id).await.unwrap();
        }
    }
    let sandbox = SandboxConfig {
        namespace: "ns".into(),
        name: "cfg".into(),
        uid: uid.into(),
        hostname: "cfg-host".into(),
        network: SandboxNetwork::None,
        port_mappings: vec![],
        labels: Default::default(),
        dns_servers: vec!["10.96.0.10".into()],
        dns_searches: vec!["ns.svc.cluster.local".into()],
        dns_options: vec!["ndots:5".into()],
        extra_hosts: vec!["cfg-extra:10.1.2.3".into()],
    };
    let sb = rt.run_sandbox(&sandbox).await.unwrap();
    let config = ContainerConfig {
        name: "app".into(),
        image: "skiff-test/busybox:1".into(),
        command: vec![],
        args: vec!["sleep".into(), "3600".into()],
        env: vec![("GREETING".into(), "hi there".into())],
        working_dir: Some("/tmp".into()),
        resources: Resources {
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
            memory_limit_bytes: Some(64 << 20),
        },
        user: Some("1000:1000".into()),
        read_only_root_fs: true,
        ..Default::default()
    };
    let result = async {
        rt.ensure_image(&config.image, PullPolicy::Never).await?;
        let id = rt.create_container(&sb.id, &config).await?;
        rt.start_container(&id).await?;
        let c = rt.client().inspect_container(&id, None).await.unwrap();
        let host = c.host_config.unwrap();
        assert_eq!(host.cpu_quota, Some(50_000));
        assert_eq!(host.cpu_period, Some(100_000));
        assert_eq!(host.cpu_shares, Some(256));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.network_mode, Some(format!("container:{}", sb.id)));
        assert_eq!(host.ipc_mode, Some(format!("container:{}", sb.id)));
        let cfg = c.config.unwrap();
        assert_eq!(cfg.user.as_deref(), Some("1000:1000"));
        assert_eq!(cfg.working_dir.as_deref(), Some("/tmp"));
        assert!(cfg.env.unwrap().contains(&"GREETING=hi there".to_string()));

        let run = |cmd: &str| {
            let cmd = vec!["sh".to_string(), "-c".to_string(), cmd.to_string()];
            let rt = &rt;
            let id = id.clone();
            async move {
                let (code, out) = rt
                    .exec_sync(&id, &cmd, Duration::from_secs(10))
                    .await
                    .unwrap();
                (code, String::from_utf8(out).unwrap())
            }
        };
        assert_eq!(run("id -u").await, (0, "1000\n".into()));
        assert_eq!(run("hostname").await, (0, "cfg-host\n".into()));
        let (_, resolv) = run("cat /etc/resolv.conf").await;
        assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
        assert!(resolv.contains("search ns.svc.cluster.local"), "{resolv}");
        assert!(resolv.contains("ndots:5"), "{resolv}");
        let (_, hosts) = run("cat /etc/hosts").await;
        assert!(hosts.contains("10.1.2.3\tcfg-extra"), "{hosts}");
        Ok::<_, RuntimeError>(())
    }
    .await;
    for c in rt.list_containers().await.unwrap() {
        if c.pod_uid == uid {
            rt.remove_container(&c.id).await.unwrap();
        }
    }
    rt.remove_sandbox(&sb.id).await.unwrap();
    result.unwrap();
}
