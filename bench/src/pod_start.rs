//! `pod-start`: how long a pod bound to a real Docker-backed `skiff-kubelet` takes from its
//! create to Running+Ready as a watch shows it, against a bare `docker run -d` of the same
//! image and command in the same run; and the kubelet's memory, idle and with the pods.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::RemoveContainerOptions;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::harness::{Backend, Process, Server, cpu_seconds_fine, rss_mb};
use crate::result;
use crate::stats::Latencies;

const NODE: &str = "bench-node";
/// The kubelet names its pod network `skiff-<node>`.
const NETWORK: &str = "skiff-bench-node";
const POD_CIDR: &str = "10.244.250.0/24";
const IMAGE: &str = "skiff-test/busybox:1";
/// A container that runs until stopped and stops at once on SIGTERM.
const SCRIPT: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";
/// The label on the reference containers this benchmark starts itself.
const REFERENCE_LABEL: &str = "skiff-bench=pod-start";
/// How long one pod may take to become Ready before the run fails.
const POD_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(pods: usize) -> anyhow::Result<()> {
    anyhow::ensure!(pods > 0, "--pods must be at least 1");
    // Declared first so it is dropped last, after the kubelet and apiserver are killed.
    let _cleanup = Leftovers;
    remove_leftovers();
    ensure_busybox_image().await?;

    let server = Server::start(Backend::Embedded).await?;
    let root = tempfile::tempdir()?;
    let kubelet = Process::spawn(
        "skiff-kubelet",
        &[
            "--kubeconfig".into(),
            server.kubeconfig().display().to_string(),
            "--hostname-override".into(),
            NODE.into(),
            "--pod-cidr".into(),
            POD_CIDR.into(),
            "--root-dir".into(),
            root.path().join("root").display().to_string(),
            // Each kubelet serves on a free port (it reports it in its Node).
            "--port".into(),
            "0".into(),
            // The machine's engine is shared: image GC would remove others' images when its
            // disk is full.
            "--image-gc-high-threshold=100".into(),
            // Nor disk eviction thresholds: the shared disk's usage says nothing of this node.
            "--eviction-hard=memory.available<100Mi".into(),
        ],
        &root.path().join("kubelet.log"),
    )?;
    let client = server.client()?;
    wait_node_ready(&server, &client, &kubelet).await?;
    // The pod network is node setup, not pod start: wait for it too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !docker_ok(&["network", "inspect", NETWORK]).await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the kubelet did not create the Docker network {NETWORK}; its log:\n{}",
            kubelet.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let start-up work settle before reading idle memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_mb(kubelet.pid())?;
    let cpu_idle = cpu_use(&kubelet).await;

    let docker_cli = reference_docker_cli(pods).await?;
    let docker_api = reference_docker_api(pods).await?;

    let (pod_lat, rss_loaded, cpu_loaded, deleted_in) =
        measure_pods(&server, &client, &kubelet, pods).await?;

    // Does start-up slow down as pods accumulate on the node? Compare the first and last tenth.
    let tenth = (pods / 10).max(1);
    let trend = |v: &[Duration]| {
        (
            Latencies::new(v[..tenth].to_vec()).ms(0.5),
            Latencies::new(v[pods - tenth..].to_vec()).ms(0.5),
        )
    };
    let (pod_first, pod_last) = trend(&pod_lat);
    let (cli_first, cli_last) = trend(&docker_cli);
    let pod_lat = Latencies::new(pod_lat);
    let cli = Latencies::new(docker_cli);
    let api = Latencies::new(docker_api);
    println!(
        "pod-start: {pods} pods bound to one kubelet (Docker), created one after another, each \
         once the previous one is Running+Ready; the references start the same image and command"
    );
    println!(
        "{:<44} {:>5} {:>9} {:>9} {:>9}",
        "target", "n", "p50 ms", "p99 ms", "max ms"
    );
    for (label, lat) in [
        ("pod create → Running+Ready (watch)", &pod_lat),
        ("docker run -d (CLI)", &cli),
        ("Docker API create + start (bollard)", &api),
    ] {
        println!(
            "{label:<44} {pods:>5} {:>9.1} {:>9.1} {:>9.1}",
            lat.ms(0.50),
            lat.ms(0.99),
            lat.ms(1.0)
        );
    }
    println!(
        "p50 of the first {tenth} / last {tenth}: pods {pod_first:.1} / {pod_last:.1} ms, \
         docker run -d {cli_first:.1} / {cli_last:.1} ms"
    );
    let ratio = pod_lat.ms(0.50) / cli.ms(0.50);
    let p50_target = 1.5 * cli.ms(0.50) + 100.0;
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("ratio p50 pod / p50 docker run -d: {ratio:.2}");
    println!(
        "target p50 ≤ 1.5 × docker run -d + 100 ms = {p50_target:.1} ms: {} ({:.1} ms)",
        met(pod_lat.ms(0.50) <= p50_target),
        pod_lat.ms(0.50)
    );
    println!(
        "target p99 ≤ 1000 ms: {} ({:.1} ms)",
        met(pod_lat.ms(0.99) <= 1000.0),
        pod_lat.ms(0.99)
    );
    println!(
        "kubelet RSS: idle {rss_idle:.1} MB, with {pods} pods running {rss_loaded:.1} MB \
         (target ≤ 30 MB: {})",
        met(rss_idle <= 30.0 && rss_loaded <= 30.0)
    );
    println!(
        "CPU, % of one core: kubelet idle {:.2}, with {pods} pods {:.2}; dockerd idle {:.2}, \
         with {pods} pods {:.2}",
        cpu_idle.0, cpu_loaded.0, cpu_idle.1, cpu_loaded.1
    );
    println!(
        "deleting the {pods} pods took {:.1} s",
        deleted_in.as_secs_f64()
    );
    result("pod_start_p50", pod_lat.ms(0.50), "ms");
    result("pod_start_p99", pod_lat.ms(0.99), "ms");
    result("pod_start_max", pod_lat.ms(1.0), "ms");
    result("docker_run_p50", cli.ms(0.50), "ms");
    result("docker_run_p99", cli.ms(0.99), "ms");
    result("docker_api_start_p50", api.ms(0.50), "ms");
    result("pod_start_vs_docker_run_p50_ratio", ratio, "x");
    result("kubelet_rss_idle", rss_idle, "MB");
    result(&format!("kubelet_rss_{pods}_pods"), rss_loaded, "MB");
    result(&format!("kubelet_cpu_{pods}_pods"), cpu_loaded.0, "%core");
    Ok(())
}

/// CPU the kubelet and dockerd use over a few seconds with nothing changing (the cost of
/// keeping pods, which the kubelet checks every second), in % of one core.
async fn cpu_use(kubelet: &Process) -> (f64, f64) {
    const WINDOW: Duration = Duration::from_secs(5);
    let dockerd = std::fs::read_to_string("/var/run/docker.pid")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .or_else(|| pid_of("dockerd"));
    let dockerd_cpu = || dockerd.map_or(0.0, cpu_seconds_fine);
    let (k0, d0) = (cpu_seconds_fine(kubelet.pid()), dockerd_cpu());
    tokio::time::sleep(WINDOW).await;
    let (k1, d1) = (cpu_seconds_fine(kubelet.pid()), dockerd_cpu());
    let pct = |s: f64| s / WINDOW.as_secs_f64() * 100.0;
    (pct(k1 - k0), pct(d1 - d0))
}

/// The first process whose command name is `name`.
fn pid_of(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// Creates the pods one by one, each timed from its create to the watch event that shows it
/// Running+Ready; reads the kubelet's RSS and CPU with all of them running; deletes them and
/// waits until they are gone. Returns the latencies, the RSS, the CPU (kubelet, dockerd) and
/// how long deletion took.
async fn measure_pods(
    server: &Server,
    client: &reqwest::Client,
    kubelet: &Process,
    pods: usize,
) -> anyhow::Result<(Vec<Duration>, f64, (f64, f64), Duration)> {
    let pods_url = format!("{}/api/v1/namespaces/default/pods", server.base);
    let list: Value = client
        .get(&pods_url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    // The watch is open before the first create; it reports each pod's first Running+Ready.
    let (tx, mut ready) = mpsc::unbounded_channel();
    let watcher = tokio::spawn(watch_ready(server.client()?, pods_url.clone(), rv, tx));
    let mut latencies = Vec::with_capacity(pods);
    for i in 0..pods {
        let name = format!("start-{i:03}");
        let sent = Instant::now();
        let r = client.post(&pods_url).json(&pod(&name)).send().await?;
        anyhow::ensure!(
            r.status().as_u16() == 201,
            "creating pod {name} failed: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        let seen = loop {
            match tokio::time::timeout(POD_TIMEOUT, ready.recv()).await {
                Ok(Some((n, at))) if n == name => break at,
                Ok(Some(_)) => continue,
                Ok(None) => anyhow::bail!("the pod watch ended"),
                Err(_) => anyhow::bail!(
                    "pod {name} was not Running+Ready within {POD_TIMEOUT:?}; kubelet log:\n{}",
                    kubelet.log_tail(40)
                ),
            }
        };
        latencies.push(seen.duration_since(sent));
    }
    watcher.abort();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_loaded = rss_mb(kubelet.pid())?;
    let cpu_loaded = cpu_use(kubelet).await;

    let started = Instant::now();
    for i in 0..pods {
        let r = client
            .delete(format!("{pods_url}/start-{i:03}"))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success() || r.status().as_u16() == 404,
            "deleting pod start-{i:03} failed: {}",
            r.status()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list: Value = client
            .get(format!("{pods_url}?labelSelector=bench%3Dpod-start"))
            .send()
            .await?
            .json()
            .await?;
        let left = list["items"].as_array().map_or(0, Vec::len);
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} pods still exist 120 s after their deletion; kubelet log:\n{}",
            kubelet.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((latencies, rss_loaded, cpu_loaded, started.elapsed()))
}

/// Watches the benchmark's pods from `rv` and sends each pod's name, with the instant its event
/// arrived, the first time the pod is Running with Ready=True. Reopens the watch if the server
/// ends it.
async fn watch_ready(
    client: reqwest::Client,
    url: String,
    mut rv: String,
    tx: mpsc::UnboundedSender<(String, Instant)>,
) -> anyhow::Result<()> {
    let mut done: HashSet<String> = HashSet::new();
    loop {
        let resp = client
            .get(format!(
                "{url}?watch=1&labelSelector=bench%3Dpod-start&resourceVersion={rv}"
            ))
            .send()
            .await?
            .error_for_status()?;
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let at = Instant::now();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if let Some(v) = ev.pointer("/object/metadata/resourceVersion")
                    && let Some(v) = v.as_str()
                {
                    rv = v.to_string();
                }
                let obj = &ev["object"];
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                if ev["type"] != "BOOKMARK"
                    && running_and_ready(obj)
                    && done.insert(name.to_string())
                    && tx.send((name.to_string(), at)).is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "bench": "pod-start" } },
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", SCRIPT],
            }],
        },
    })
}

/// Waits until the kubelet's Node reports Ready=True.
async fn wait_node_ready(
    server: &Server,
    client: &reqwest::Client,
    kubelet: &Process,
) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/nodes/{NODE}", server.base);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
            && let Ok(node) = r.json::<Value>().await
            && node["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node {NODE} did not become Ready within 60 s; kubelet log:\n{}",
            kubelet.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `pods` × `docker run -d --rm IMAGE sh -c SCRIPT`, each timed until the CLI returns (the
/// container has started); then removes them.
async fn reference_docker_cli(pods: usize) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(pods);
    for i in 0..pods {
        let name = format!("skiff-bench-ref-cli-{i:03}");
        let t = Instant::now();
        let out = Command::new("docker")
            .args(["run", "-d", "--rm", "--label", REFERENCE_LABEL, "--name"])
            .arg(&name)
            .args([IMAGE, "sh", "-c", SCRIPT])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running docker")?;
        latencies.push(t.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "docker run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    remove_reference_containers().await;
    Ok(latencies)
}

/// The same through the Engine API, as the kubelet talks to Docker: create, then start; the
/// CLI's own start-up is not in these figures.
async fn reference_docker_api(pods: usize) -> anyhow::Result<Vec<Duration>> {
    let docker = Docker::connect_with_unix_defaults()
        .context("connecting to Docker")?
        .negotiate_version()
        .await
        .context("talking to Docker; is dockerd running?")?;
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(vec!["sh".into(), "-c".into(), SCRIPT.into()]),
        labels: Some([("skiff-bench".to_string(), "pod-start".to_string())].into()),
        ..Default::default()
    };
    let mut latencies = Vec::with_capacity(pods);
    let mut ids = Vec::with_capacity(pods);
    for i in 0..pods {
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(format!("skiff-bench-ref-api-{i:03}")),
            ..Default::default()
        };
        let t = Instant::now();
        let created = docker
            .create_container(Some(options), body.clone())
            .await
            .context("creating a reference container")?;
        docker
            .start_container(&created.id, None)
            .await
            .context("starting a reference container")?;
        latencies.push(t.elapsed());
        ids.push(created.id);
    }
    for id in ids {
        let _ = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    Ok(latencies)
}

async fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

async fn remove_reference_containers() {
    let ids = docker_ids(&format!("label={REFERENCE_LABEL}"));
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output()
            .await;
    }
}

/// IDs of all containers (running or not) matching a `docker ps` filter.
fn docker_ids(filter: &str) -> Vec<String> {
    std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", filter])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes what this benchmark (or a crashed run of it) leaves in Docker: the node's pod
/// containers and sandboxes, the reference containers, and the node's pod network.
fn remove_leftovers() {
    let mut ids = docker_ids(&format!("label=io.skiff.node={NODE}"));
    ids.extend(docker_ids(&format!("label={REFERENCE_LABEL}")));
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", NETWORK])
        .output();
}

/// Runs [`remove_leftovers`] when the benchmark ends, however it ends.
struct Leftovers;

impl Drop for Leftovers {
    fn drop(&mut self) {
        remove_leftovers();
    }
}

/// Builds [`IMAGE`] if the engine lacks it, as the e2e tests do: busybox (Debian's
/// busybox-static) on an empty base. No registry is involved.
async fn ensure_busybox_image() -> anyhow::Result<()> {
    if docker_ok(&["image", "inspect", IMAGE]).await {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .context("copying /bin/busybox (install busybox-static)")?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )?;
    let out = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(dir.path())
        .output()
        .await
        .context("running docker build")?;
    anyhow::ensure!(
        out.status.success(),
        "docker build of {IMAGE} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
