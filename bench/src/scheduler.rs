//! `scheduler`: kube-scheduler-perf's SchedulingBasic on Skiff. N Node objects (4 cpu, 32 Gi,
//! 110 pods each, as its node template) and M pending pods are created through the apiserver
//! while one `skiff-scheduler` runs; pods bound per second are measured end to end, from the
//! first create to each pod's binding as a watch delivers it. The physical reference in the
//! same run: the same apiserver binding pods directly (POST pods/x/binding from the bench, no
//! scheduling decisions) — the most any scheduler could bind through it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::harness::{Backend, Process, Server, cpu_seconds, rss_mb};
use crate::{drive, result};

/// Concurrent clients creating nodes and pods.
const CLIENTS: usize = 32;

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name, "bench": "scheduler" } },
    })
}

fn node_status(mut node: Value) -> Value {
    node["status"] = json!({
        "capacity": { "cpu": "4", "memory": "32Gi", "pods": "110" },
        "allocatable": { "cpu": "4", "memory": "32Gi", "pods": "110" },
        "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "hollow" }],
    });
    node
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "bench": "scheduler" } },
        "spec": { "containers": [{
            "name": "pause", "image": "skiff/pause:3.9",
            "resources": { "requests": { "cpu": "100m", "memory": "500Mi" } },
        }]},
    })
}

/// `VmHWM` (peak resident set) of a process, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub async fn run(nodes: usize, pods: usize, etcd: bool) -> anyhow::Result<()> {
    anyhow::ensure!(nodes > 0 && pods > 0, "--nodes and --pods must be positive");
    anyhow::ensure!(
        pods <= nodes * 110,
        "{pods} pods do not fit on {nodes} nodes of 110 pods"
    );
    let test_etcd = if etcd {
        Some(tokio::task::spawn_blocking(skiff_store::testing::TestEtcd::start).await?)
    } else {
        None
    };
    let backend = match &test_etcd {
        Some(e) => Backend::Etcd(e.endpoint.clone()),
        None => Backend::Embedded,
    };
    let store = if etcd { "etcd" } else { "embedded" };
    let server = Server::start(backend).await?;
    let client = server.client_h1()?;
    let base = server.base.clone();
    println!("scheduler: {nodes} nodes, {pods} pods, {store} store, {CLIENTS} creating clients");

    let (_, took) = {
        let client = client.clone();
        let base = base.clone();
        drive(nodes, CLIENTS, move |i| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let name = format!("node-{i:05}");
                let created: Value = client
                    .post(format!("{base}/api/v1/nodes"))
                    .json(&node(&name))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                client
                    .put(format!("{base}/api/v1/nodes/{name}/status"))
                    .json(&node_status(created))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await?
    };
    println!(
        "  {nodes} nodes created and Ready in {:.1} s",
        took.as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let log = dir.path().join("scheduler.log");
    let mut sched = Process::spawn(
        "skiff-scheduler",
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
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if std::fs::read_to_string(&log)?.contains("caches synced") {
            break;
        }
        anyhow::ensure!(
            !sched.exited(),
            "the scheduler exited:\n{}",
            sched.log_tail(20)
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the scheduler did not sync:\n{}",
            sched.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_synced = rss_mb(sched.pid())?;

    let list: Value = client
        .get(format!("{base}/api/v1/pods?limit=1"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list without resourceVersion")?
        .to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = tokio::spawn(watch_bound(server.client()?, base.clone(), rv, tx));

    let sched_cpu0 = cpu_seconds(sched.pid());
    let api_cpu0 = cpu_seconds(server.pid());
    let started = Instant::now();
    let creating = {
        let client = client.clone();
        let base = base.clone();
        tokio::spawn(drive(pods, CLIENTS, move |i| {
            let client = client.clone();
            let base = base.clone();
            async move {
                client
                    .post(format!("{base}/api/v1/namespaces/default/pods"))
                    .json(&pod(&format!("pod-{i:05}")))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        }))
    };
    let mut bound_at: Vec<Duration> = Vec::with_capacity(pods);
    let wait = Duration::from_secs(120 + pods as u64 / 100);
    while bound_at.len() < pods {
        match tokio::time::timeout_at((started + wait).into(), rx.recv()).await {
            Ok(Some(at)) => bound_at.push(at.duration_since(started)),
            Ok(None) => anyhow::bail!("the watch ended"),
            Err(_) => anyhow::bail!(
                "only {} of {pods} pods bound after {:.0} s; scheduler log:\n{}",
                bound_at.len(),
                wait.as_secs_f64(),
                sched.log_tail(20)
            ),
        }
    }
    let (_, create_took) = creating.await??;
    watcher.abort();
    let total = *bound_at.last().unwrap_or(&Duration::ZERO);
    let sched_cpu = cpu_seconds(sched.pid()) - sched_cpu0;
    let api_cpu = cpu_seconds(server.pid()) - api_cpu0;
    let rss_after = rss_mb(sched.pid())?;
    let rss_peak = peak_rss_mb(sched.pid());
    let throughput = pods as f64 / total.as_secs_f64();
    // Per-second samples, as kube-scheduler-perf reports them (whole seconds only).
    let mut per_second = vec![0usize; total.as_secs() as usize + 1];
    for b in &bound_at {
        per_second[b.as_secs() as usize] += 1;
    }
    per_second.pop();
    per_second.sort_unstable();
    let p50 = per_second
        .get(per_second.len() / 2)
        .copied()
        .unwrap_or(pods);
    println!(
        "  {pods} pods created in {:.2} s ({:.0}/s) and all bound after {:.2} s",
        create_took.as_secs_f64(),
        pods as f64 / create_took.as_secs_f64(),
        total.as_secs_f64()
    );
    println!(
        "  scheduler: {throughput:.0} pods/s end to end (per-second samples p50 {p50}), \
         CPU {:.0} µs/pod (apiserver {:.0} µs/pod)",
        sched_cpu * 1e6 / pods as f64,
        api_cpu * 1e6 / pods as f64
    );
    println!(
        "  scheduler RSS: {rss_synced:.1} MB after syncing {nodes} nodes, {rss_after:.1} MB with \
         {pods} pods (peak {rss_peak:.1} MB)"
    );
    drop(sched);

    // The reference: the bench binds pods itself, with the scheduler's concurrency.
    let reference = pods.min(5000);
    {
        let client = client.clone();
        let base = base.clone();
        drive(reference, CLIENTS, move |i| {
            let client = client.clone();
            let base = base.clone();
            async move {
                client
                    .post(format!("{base}/api/v1/namespaces/default/pods"))
                    .json(&pod(&format!("ref-{i:05}")))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await?;
    }
    let nodes_n = nodes;
    let bind = Arc::new(move |i: usize| {
        json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": { "name": format!("ref-{i:05}") },
            "target": { "apiVersion": "v1", "kind": "Node", "name": format!("node-{:05}", i % nodes_n) },
        })
    });
    let (_, bind_took) = {
        let client = client.clone();
        let base = base.clone();
        drive(reference, 64, move |i| {
            let client = client.clone();
            let base = base.clone();
            let bind = bind.clone();
            async move {
                client
                    .post(format!(
                        "{base}/api/v1/namespaces/default/pods/ref-{i:05}/binding"
                    ))
                    .json(&bind(i))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await?
    };
    let raw = reference as f64 / bind_took.as_secs_f64();
    println!(
        "  reference: the bench binding {reference} pods itself (64 clients): {raw:.0} binds/s; \
         scheduler / reference = {:.2}",
        throughput / raw
    );
    println!(
        "  target ≥ 1000 pods/s: {}; RSS ≤ 100 MB: {}",
        if throughput >= 1000.0 {
            "met"
        } else {
            "NOT met"
        },
        if rss_peak <= 100.0 { "met" } else { "NOT met" }
    );
    result("scheduler_pods_per_second", throughput, "pods/s");
    result("scheduler_pods_per_second_p50_sample", p50 as f64, "pods/s");
    result("scheduler_reference_binds_per_second", raw, "binds/s");
    result("scheduler_rss_peak", rss_peak, "MB");
    result("scheduler_rss", rss_after, "MB");
    result("scheduler_cpu_per_pod", sched_cpu * 1e6 / pods as f64, "us");
    drop(test_etcd);
    Ok(())
}

/// Watches pods from `rv` and sends the arrival instant of each pod's first event showing a
/// `spec.nodeName`.
async fn watch_bound(
    client: reqwest::Client,
    base: String,
    mut rv: String,
    tx: mpsc::UnboundedSender<Instant>,
) -> anyhow::Result<()> {
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let resp = client
            .get(format!(
                "{base}/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
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
                if let Some(v) = ev
                    .pointer("/object/metadata/resourceVersion")
                    .and_then(Value::as_str)
                {
                    rv = v.to_string();
                }
                let obj = &ev["object"];
                let bound = obj["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty());
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                if bound && seen.insert(name.to_string()) && tx.send(at).is_err() {
                    return Ok(());
                }
            }
        }
    }
}
