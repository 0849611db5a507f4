//! `controllers`: a Deployment of N replicas through a real `skiff-controller-manager`: time
//! until all N pods exist, until they are all available (the bench plays the kubelet, marking
//! each new pod Running and Ready through `/status`), and until a rolling update of all of them
//! completes; then the controller-manager's memory with 10,000 pods. The reference in the same
//! run: the bench creating N pods itself (32 clients).

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
