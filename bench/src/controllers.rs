//! `controllers`: a Deployment of N replicas through a real `skiff-controller-manager`: time
//! until all N pods exist, until they are all available (the bench plays the kubelet, marking
//! each new pod Running and Ready through `/status`), and until a rolling update of all of them
//! completes; then the controller-manager's memory with 10,000 pods. The reference in the same
//! run: the bench creating N pods itself (32 clients).
//!
//! Then, on hollow nodes (fake-runtime kubelets, where a `true` container exits 0 the moment
//! it starts, so the kubelet itself marks the pod Succeeded) with a real scheduler: a Job of
//! 1,000 completions, 100 at a time, from creation to `Complete`, against the reference of the
//! bench keeping the same 100 pods in flight itself (the next created as one succeeds); and a
//! DaemonSet's first rollout to every node and an image change rolled through.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::harness::{Backend, Process, Server, rss_mb};
use crate::{drive, result};

const NS: &str = "default";

fn deployment(replicas: usize, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "bench" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "bench" } },
            "strategy": { "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" } },
            "template": {
                "metadata": { "labels": { "app": "bench" } },
                "spec": { "containers": [{ "name": "pause", "image": image }] },
            },
        },
    })
}

/// Marks one pod Running and Ready (merge patch of its status).
async fn make_ready(client: reqwest::Client, base: String, name: String) {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string();
    let patch = json!({ "status": { "phase": "Running", "podIP": "10.244.0.9", "conditions": [
        { "type": "Ready", "status": "True", "lastTransitionTime": now }] } });
    let _ = client
        .patch(format!("{base}/api/v1/namespaces/{NS}/pods/{name}/status"))
        .header("content-type", "application/merge-patch+json")
        .json(&patch)
        .send()
        .await;
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Plays the kubelet: marks every new pod Running and Ready, as soon as a watch shows it; if
/// the watch ends (a slow reader may be cut off by the server) it lists and watches again.
/// Sends each newly seen pod name on `seen`.
async fn kubelet(
    client: reqwest::Client,
    base: String,
    seen: tokio::sync::mpsc::UnboundedSender<String>,
) -> anyhow::Result<()> {
    let limit = Arc::new(Semaphore::new(32));
    let mut known: HashSet<String> = HashSet::new();
    loop {
        let list: Value = client
            .get(format!(
                "{base}/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dbench"
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut todo = Vec::new();
        for pod in list["items"].as_array().into_iter().flatten() {
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if known.insert(name.clone()) {
                let _ = seen.send(name.clone());
            }
            if !is_ready(pod) && pod["metadata"]["deletionTimestamp"].is_null() {
                todo.push(name);
            }
        }
        for name in todo {
            let permit = limit.clone().acquire_owned().await?;
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                make_ready(client, base, name).await;
                drop(permit);
            });
        }
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let resp = client
            .get(format!(
                "{base}/api/v1/namespaces/{NS}/pods?watch=1&labelSelector=app%3Dbench&resourceVersion={rv}"
            ))
            .send()
            .await?
            .error_for_status()?;
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if ev["type"] != "ADDED" {
                    continue;
                }
                let name = ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if !known.insert(name.clone()) {
                    continue;
                }
                let _ = seen.send(name.clone());
                let permit = limit.clone().acquire_owned().await?;
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    make_ready(client, base, name).await;
                    drop(permit);
                });
            }
        }
    }
}

async fn deployment_status(client: &reqwest::Client, base: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(format!(
            "{base}/apis/apps/v1/namespaces/{NS}/deployments/bench"
        ))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until the Deployment reports every replica updated and available.
async fn wait_rolled_out(
    client: &reqwest::Client,
    base: &str,
    n: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let d = deployment_status(client, base).await?;
        let s = &d["status"];
        let n = n as i64;
        if s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
            && s["updatedReplicas"].as_i64() == Some(n)
            && s["replicas"].as_i64() == Some(n)
            && s["availableReplicas"].as_i64() == Some(n)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the rollout did not complete: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run(replicas: usize, memory_pods: usize) -> anyhow::Result<()> {
    let server = Server::start(Backend::Embedded).await?;
    let client = server.client_h1()?;
    let base = server.base.clone();
    println!("controllers: a Deployment of {replicas} replicas, embedded store");

    // The reference: the bench creates N pods itself.
    let (_, raw) = {
        let client = client.clone();
        let base = base.clone();
        drive(replicas, 32, move |i| {
            let client = client.clone();
            let base = base.clone();
            async move {
                client
                    .post(format!("{base}/api/v1/namespaces/{NS}/pods"))
                    .json(&json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("ref-{i:05}"), "labels": {"app": "ref"}},
                        "spec": {"containers": [{"name": "pause", "image": "skiff/pause:3.9"}]}}))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await?
    };
    client
        .delete(format!(
            "{base}/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dref"
        ))
        .send()
        .await?
        .error_for_status()?;

    let dir = tempfile::tempdir()?;
    let log = dir.path().join("controller-manager.log");
    let mut cm = Process::spawn(
        "skiff-controller-manager",
        &[
            "--kubeconfig".into(),
            server.kubeconfig().display().to_string(),
            "--leader-elect=false".into(),
            "--secure-port".into(),
            "0".into(),
            "--bind-address".into(),
            "127.0.0.1".into(),
        ],
        &log,
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)?.contains("caches synced") {
        anyhow::ensure!(
            !cm.exited(),
            "the controller-manager exited:\n{}",
            cm.log_tail(20)
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the controller-manager did not sync"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle = rss_mb(cm.pid())?;

    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let kubelet_task = tokio::spawn(kubelet(server.client()?, base.clone(), tx));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    client
        .post(format!("{base}/apis/apps/v1/namespaces/{NS}/deployments"))
        .json(&deployment(replicas, "skiff/pause:3.9"))
        .send()
        .await?
        .error_for_status()?;
    let deadline = started + Duration::from_secs(120 + replicas as u64 / 20);
    let mut count = 0;
    while count < replicas {
        match tokio::time::timeout_at(deadline.into(), seen.recv()).await {
            Ok(Some(_)) => count += 1,
            _ => anyhow::bail!(
                "only {count} of {replicas} pods appeared; log:\n{}",
                cm.log_tail(20)
            ),
        }
    }
    let created = started.elapsed();
    wait_rolled_out(&client, &base, replicas, deadline).await?;
    let available = started.elapsed();

    let roll_start = Instant::now();
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "pause", "image": "skiff/pause:3.9-b" }] } } } });
    client
        .patch(format!(
            "{base}/apis/apps/v1/namespaces/{NS}/deployments/bench"
        ))
        .header("content-type", "application/strategic-merge-patch+json")
        .json(&patch)
        .send()
        .await?
        .error_for_status()?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    wait_rolled_out(
        &client,
        &base,
        replicas,
        roll_start + Duration::from_secs(300),
    )
    .await?;
    let rolled = roll_start.elapsed();
    let rss_loaded = rss_mb(cm.pid())?;

    println!(
        "  the bench creating {replicas} pods itself: {:.2} s ({:.0} pods/s)",
        raw.as_secs_f64(),
        replicas as f64 / raw.as_secs_f64()
    );
    println!(
        "  Deployment: {replicas} pods exist after {:.2} s ({:.2}× the reference), all available after {:.2} s",
        created.as_secs_f64(),
        created.as_secs_f64() / raw.as_secs_f64(),
        available.as_secs_f64()
    );
    println!(
        "  rolling update of all {replicas} (25% surge / 25% unavailable): {:.2} s",
        rolled.as_secs_f64()
    );
    println!(
        "  target: {replicas} pods created ≤ 5 s: {}",
        if created.as_secs_f64() <= 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );

    // Memory with many pods.
    let mem_start = Instant::now();
    client
        .patch(format!(
            "{base}/apis/apps/v1/namespaces/{NS}/deployments/bench/scale"
        ))
        .header("content-type", "application/merge-patch+json")
        .json(&json!({ "spec": { "replicas": memory_pods } }))
        .send()
        .await?
        .error_for_status()?;
    wait_rolled_out(
        &client,
        &base,
        memory_pods,
        mem_start + Duration::from_secs(180),
    )
    .await
    .context("scaling up for the memory figure")?;
    let scaled = mem_start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_many = rss_mb(cm.pid())?;
    kubelet_task.abort();
    println!(
        "  scaled to {memory_pods} (all available) in {:.1} s; controller-manager RSS: {rss_idle:.1} MB idle, \
         {rss_loaded:.1} MB with {replicas} pods, {rss_many:.1} MB with {memory_pods} pods (target ≤ 50 MB at 10k: {})",
        scaled.as_secs_f64(),
        if rss_many <= 50.0 { "met" } else { "NOT met" }
    );
    result("controllers_pods_created", created.as_secs_f64(), "s");
    result("controllers_reference_create", raw.as_secs_f64(), "s");
    result("controllers_all_available", available.as_secs_f64(), "s");
    result("controllers_rolling_update", rolled.as_secs_f64(), "s");
    result("controllers_rss_idle", rss_idle, "MB");
    result("controllers_rss_many_pods", rss_many, "MB");
    Ok(())
}

/// The machine's load averages (1, 5, 15 min), to say what else ran beside a measurement.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Starts a control-plane program against `server` and waits for its caches to sync.
async fn start_synced(
    program: &str,
    server: &Server,
    dir: &std::path::Path,
) -> anyhow::Result<Process> {
    let log = dir.join(format!("{program}.log"));
    let mut p = Process::spawn(
        program,
        &[
            "--kubeconfig".into(),
            server.kubeconfig().display().to_string(),
            "--leader-elect=false".into(),
            "--secure-port".into(),
            "0".into(),
            "--bind-address".into(),
            "127.0.0.1".into(),
        ],
        &log,
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)?.contains("caches synced") {
        anyhow::ensure!(!p.exited(), "{program} exited:\n{}", p.log_tail(20));
        anyhow::ensure!(Instant::now() < deadline, "{program} did not sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(p)
}

/// Sends the name of every pod matching `selector` that a list or watch shows Succeeded
/// (possibly more than once); lists and watches again whenever the watch ends.
async fn succeeded_pods(
    client: reqwest::Client,
    base: String,
    selector: &'static str,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) -> anyhow::Result<()> {
    let succeeded = |pod: &Value| {
        (pod["status"]["phase"] == "Succeeded")
            .then(|| pod["metadata"]["name"].as_str().map(String::from))
            .flatten()
    };
    loop {
        let list: Value = client
            .get(format!(
                "{base}/api/v1/namespaces/{NS}/pods?labelSelector={selector}"
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for pod in list["items"].as_array().into_iter().flatten() {
            if let Some(name) = succeeded(pod) {
                let _ = tx.send(name);
            }
        }
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        let resp = client
            .get(format!(
                "{base}/api/v1/namespaces/{NS}/pods?watch=1&labelSelector={selector}&resourceVersion={rv}"
            ))
            .send()
            .await?
            .error_for_status()?;
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if let Some(name) = succeeded(&ev["object"]) {
                    let _ = tx.send(name);
                }
            }
        }
    }
}

/// A pod (or pod template) that runs to completion at once on a hollow node: the fake
/// runtime runs `true` and exits 0 the moment the container starts.
fn finishing_pod_spec() -> Value {
    json!({
        "restartPolicy": "Never",
        "containers": [{ "name": "work", "image": "skiff/pause:3.9", "command": ["true"] }],
    })
}

async fn pod_count(client: &reqwest::Client, base: &str, selector: &str) -> anyhow::Result<usize> {
    let list: Value = client
        .get(format!(
            "{base}/api/v1/namespaces/{NS}/pods?labelSelector={selector}"
        ))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(list["items"].as_array().map_or(0, Vec::len))
}

/// Deletes the pods matching `selector` and waits until the kubelets have let them go.
async fn delete_pods(client: &reqwest::Client, base: &str, selector: &str) -> anyhow::Result<()> {
    client
        .delete(format!(
            "{base}/api/v1/namespaces/{NS}/pods?labelSelector={selector}"
        ))
        .send()
        .await?
        .error_for_status()?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while pod_count(client, base, selector).await? > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "pods {selector} were not deleted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The reference for the Job: the bench itself keeps `parallelism` such pods in flight,
/// creating the next one each time one has succeeded, until `completions` have.
async fn direct_pods(
    client: &reqwest::Client,
    base: &str,
    completions: usize,
    parallelism: usize,
) -> anyhow::Result<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(succeeded_pods(
        client.clone(),
        base.to_string(),
        "bench%3Dref",
        tx,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let create = |i: usize| {
        let (client, base) = (client.clone(), base.to_string());
        tokio::spawn(async move {
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("ref-{i:05}"), "labels": {"bench": "ref"}},
                "spec": finishing_pod_spec()});
            let r = client
                .post(format!("{base}/api/v1/namespaces/{NS}/pods"))
                .json(&pod)
                .send()
                .await
                .and_then(|r| r.error_for_status());
            if let Err(e) = r {
                eprintln!("creating ref-{i:05}: {e}");
            }
        })
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300 + completions as u64 / 5);
    let mut created = 0;
    while created < parallelism.min(completions) {
        create(created);
        created += 1;
    }
    let mut done: HashSet<String> = HashSet::new();
    while done.len() < completions {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(name)) => {
                if done.insert(name) && created < completions {
                    create(created);
                    created += 1;
                }
            }
            _ => {
                watcher.abort();
                anyhow::bail!("only {} of {completions} direct pods succeeded", done.len());
            }
        }
    }
    watcher.abort();
    Ok(started.elapsed())
}

/// A Job of `completions` with `parallelism`: time from its creation to its Complete
/// condition.
async fn job_run(
    client: &reqwest::Client,
    base: &str,
    completions: usize,
    parallelism: usize,
) -> anyhow::Result<Duration> {
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bench-job"},
        "spec": {
            "completions": completions, "parallelism": parallelism,
            "template": {"metadata": {"labels": {"bench": "job"}}, "spec": finishing_pod_spec()},
        },
    });
    let url = format!("{base}/apis/batch/v1/namespaces/{NS}/jobs");
    let started = Instant::now();
    client
        .post(&url)
        .json(&job)
        .send()
        .await?
        .error_for_status()?;
    let deadline = started + Duration::from_secs(300 + completions as u64 / 5);
    loop {
        let j: Value = client
            .get(format!("{url}/bench-job"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let complete = j["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
        });
        if complete {
            anyhow::ensure!(
                j["status"]["succeeded"].as_u64() == Some(completions as u64),
                "the Job completed with {}",
                j["status"]
            );
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Job did not complete: {}",
            j["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn daemonset(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "bench-ds"},
        "spec": {
            "selector": {"matchLabels": {"bench": "ds"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": {"bench": "ds"}},
                "spec": {"containers": [{"name": "agent", "image": image}]},
            },
        },
    })
}

/// Waits until the DaemonSet has observed its spec and has an updated, Ready and available
/// pod on each of `nodes` nodes.
async fn wait_daemonset(
    client: &reqwest::Client,
    base: &str,
    nodes: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    let n = Some(nodes as i64);
    loop {
        let d: Value = client
            .get(format!(
                "{base}/apis/apps/v1/namespaces/{NS}/daemonsets/bench-ds"
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let s = &d["status"];
        if s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
            && s["desiredNumberScheduled"].as_i64() == n
            && s["updatedNumberScheduled"].as_i64() == n
            && s["numberReady"].as_i64() == n
            && s["numberAvailable"].as_i64() == n
            && s["currentNumberScheduled"].as_i64() == n
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the DaemonSet did not roll out: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Job and DaemonSet figures on `nodes` hollow nodes, with a real scheduler and
/// controller-manager: a Job of `completions` (`parallelism` at a time) against the bench
/// running the same pods itself, then a DaemonSet's first rollout and an image change.
pub async fn run_hollow(
    nodes: usize,
    completions: usize,
    parallelism: usize,
) -> anyhow::Result<()> {
    let load_before = loadavg();
    let server = Server::start(Backend::Embedded).await?;
    let client = server.client()?;
    let base = server.base.clone();
    let dir = tempfile::tempdir()?;
    let _scheduler = start_synced("skiff-scheduler", &server, dir.path()).await?;
    let _cm = start_synced("skiff-controller-manager", &server, dir.path()).await?;
    let _kubelets = crate::hollow::spawn_kubelets(&server, nodes, dir.path())?;
    let deadline = Instant::now() + Duration::from_secs(60 + nodes as u64);
    while crate::hollow::ready_nodes(&server, &client)
        .await
        .map_or(0, |r| r.len())
        < nodes
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the hollow nodes did not all get Ready"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "controllers on {nodes} hollow nodes (embedded store, skiff-scheduler, \
         skiff-controller-manager); load average before: {load_before}"
    );

    let direct = direct_pods(&client, &base, completions, parallelism).await?;
    delete_pods(&client, &base, "bench%3Dref").await?;
    let job = job_run(&client, &base, completions, parallelism).await?;
    client
        .delete(format!(
            "{base}/apis/batch/v1/namespaces/{NS}/jobs/bench-job?propagationPolicy=Background"
        ))
        .send()
        .await?
        .error_for_status()?;
    delete_pods(&client, &base, "bench%3Djob").await?;
    let ratio = job.as_secs_f64() / direct.as_secs_f64();
    println!(
        "  {completions} pods, {parallelism} at a time, created by the bench itself: {:.2} s",
        direct.as_secs_f64()
    );
    println!(
        "  a Job of {completions} completions, parallelism {parallelism}: Complete after {:.2} s \
         ({ratio:.2}× the reference; target ≤ 2×: {})",
        job.as_secs_f64(),
        if ratio <= 2.0 { "met" } else { "NOT met" }
    );

    let started = Instant::now();
    client
        .post(format!("{base}/apis/apps/v1/namespaces/{NS}/daemonsets"))
        .json(&daemonset("skiff/pause:3.9"))
        .send()
        .await?
        .error_for_status()?;
    wait_daemonset(&client, &base, nodes, started + Duration::from_secs(300)).await?;
    let ds_ready = started.elapsed();
    let started = Instant::now();
    client
        .patch(format!(
            "{base}/apis/apps/v1/namespaces/{NS}/daemonsets/bench-ds"
        ))
        .header("content-type", "application/merge-patch+json")
        .json(&json!({"spec": {"template": {"spec": {"containers": [
            {"name": "agent", "image": "skiff/pause:3.9-b"}]}}}}))
        .send()
        .await?
        .error_for_status()?;
    wait_daemonset(&client, &base, nodes, started + Duration::from_secs(600)).await?;
    let ds_rolled = started.elapsed();
    println!(
        "  a DaemonSet on {nodes} nodes: a Ready pod on every node after {:.2} s; an image \
         change rolled through (maxUnavailable 10%) in {:.2} s",
        ds_ready.as_secs_f64(),
        ds_rolled.as_secs_f64()
    );
    println!("  load average after: {}", loadavg());
    result("controllers_job_direct_pods", direct.as_secs_f64(), "s");
    result("controllers_job_complete", job.as_secs_f64(), "s");
    result("controllers_job_ratio", ratio, "x");
    result("controllers_daemonset_ready", ds_ready.as_secs_f64(), "s");
    result(
        "controllers_daemonset_rollout",
        ds_rolled.as_secs_f64(),
        "s",
    );
    Ok(())
}
