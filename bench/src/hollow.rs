//! `hollow-nodes`: many `skiff-kubelet --runtime fake` processes (hollow nodes, as kubemark
//! runs them) against one apiserver: how long they take to register, whether every one keeps
//! its heartbeat Lease fresh, and what they cost in memory and CPU.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Backend, Process, Server, cpu_seconds_fine, pss_mb, rss_mb};
use crate::result;

/// A Lease renewed longer ago than this has expired (the kubelet asks for 40 s).
const LEASE_MAX_AGE: f64 = 40.0;
/// How often the leases are checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

fn node_name(i: usize) -> String {
    format!("hollow-{i:03}")
}

/// Starts `nodes` hollow kubelets (`hollow-000`, ...) against `server`, each in its own folder
/// under `root`.
pub fn spawn_kubelets(server: &Server, nodes: usize, root: &Path) -> anyhow::Result<Vec<Process>> {
    anyhow::ensure!(
        (1..=256).contains(&nodes),
        "1 to 256 hollow nodes (node i gets the pod subnet 10.200.i.0/24)"
    );
    let mut kubelets = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let dir = root.join(format!("{i:03}"));
        std::fs::create_dir_all(&dir)?;
        kubelets.push(Process::spawn(
            "skiff-kubelet",
            &[
                "--kubeconfig".into(),
                server.kubeconfig().display().to_string(),
                "--runtime".into(),
                "fake".into(),
                "--hostname-override".into(),
                node_name(i),
                "--pod-cidr".into(),
                format!("10.200.{i}.0/24"),
                "--root-dir".into(),
                dir.join("root").display().to_string(),
                // Each kubelet serves on a free port (it reports it in its Node).
                "--port".into(),
                "0".into(),
                // The machine's disk is shared and nearly full: no disk eviction thresholds,
                // or every hollow node would be under DiskPressure.
                "--eviction-hard=memory.available<100Mi".into(),
            ],
            &dir.join("kubelet.log"),
        )?);
    }
    Ok(kubelets)
}

pub async fn run(nodes: usize, seconds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=256).contains(&nodes),
        "--nodes must be 1 to 256 (node i gets the pod subnet 10.200.i.0/24)"
    );
    let server = Server::start(Backend::Embedded).await?;
    let client = server.client()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let apiserver_idle = server.rss_mb()?;
    let root = tempfile::tempdir()?;

    let started = Instant::now();
    let mut kubelets = spawn_kubelets(&server, nodes, root.path())?;
    let spawned_in = started.elapsed();

    // Registration: every Node exists with Ready=True, within a deadline that grows with N.
    let deadline = Duration::from_secs(60 + nodes as u64);
    let mut registered_in = None;
    let mut ready = BTreeSet::new();
    while started.elapsed() < deadline {
        ready = ready_nodes(&server, &client).await.unwrap_or(ready);
        if ready.len() == nodes {
            registered_in = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let registered = ready.len();
    if registered_in.is_none() {
        let exited: Vec<usize> = (0..nodes).filter(|i| kubelets[*i].exited()).collect();
        eprintln!(
            "hollow-nodes: only {registered} of {nodes} nodes Ready after {:.0} s ({} \
             kubelets exited); going on with those",
            deadline.as_secs_f64(),
            exited.len()
        );
        if let Some(i) = exited.first() {
            eprintln!("log of {}:\n{}", node_name(*i), kubelets[*i].log_tail(20));
        }
    }

    // Steady state: every Lease renewed within LEASE_MAX_AGE at every check.
    let cpu_kubelets0: f64 = kubelets.iter().map(|k| cpu_seconds_fine(k.pid())).sum();
    let cpu_apiserver0 = cpu_seconds_fine(server.pid());
    let steady_start = Instant::now();
    let mut kept = vec![true; nodes];
    let mut renew_times: Vec<BTreeSet<String>> = vec![BTreeSet::new(); nodes];
    let mut worst_age: f64 = 0.0;
    let mut checks = 0;
    loop {
        let leases = leases(&server, &client).await?;
        let now = jiff::Timestamp::now();
        for i in 0..nodes {
            let fresh = leases.get(&node_name(i)).and_then(|renew| {
                let at: jiff::Timestamp = renew.parse().ok()?;
                let age = now.duration_since(at).as_secs_f64();
                renew_times[i].insert(renew.clone());
                Some(age)
            });
            match fresh {
                Some(age) if age <= LEASE_MAX_AGE => worst_age = worst_age.max(age),
                _ => kept[i] = false,
            }
        }
        checks += 1;
        let elapsed = steady_start.elapsed();
        if elapsed >= Duration::from_secs(seconds) {
            break;
        }
        tokio::time::sleep(CHECK_EVERY.min(Duration::from_secs(seconds) - elapsed)).await;
    }
    let steady = steady_start.elapsed().as_secs_f64();
    let cpu_kubelets: f64 = kubelets
        .iter()
        .map(|k| cpu_seconds_fine(k.pid()))
        .sum::<f64>()
        - cpu_kubelets0;
    let cpu_apiserver = cpu_seconds_fine(server.pid()) - cpu_apiserver0;
    let kept_count = kept.iter().filter(|k| **k).count();
    // Distinct renewTimes seen: the first, plus one per renewal during the window.
    let min_renewals = renew_times
        .iter()
        .map(|s| s.len().saturating_sub(1))
        .min()
        .unwrap_or(0);

    let alive: Vec<u32> = kubelets
        .iter_mut()
        .filter_map(|k| (!k.exited()).then(|| k.pid()))
        .collect();
    let rss: Vec<f64> = alive.iter().filter_map(|pid| rss_mb(*pid).ok()).collect();
    let pss: f64 = alive.iter().filter_map(|pid| pss_mb(*pid).ok()).sum();
    let alive = alive.len();
    let rss_total: f64 = rss.iter().sum();
    let rss_mean = rss_total / rss.len().max(1) as f64;
    let rss_max = rss.iter().copied().fold(0.0, f64::max);
    let apiserver_loaded = server.rss_mb()?;

    println!(
        "hollow-nodes: {nodes} `skiff-kubelet --runtime fake` processes, one embedded apiserver; \
         leases checked every {}s for {steady:.0} s ({checks} checks)",
        CHECK_EVERY.as_secs()
    );
    println!(
        "{:>7} {:>7} {:>7} {:>15} {:>12} {:>13}",
        "started", "Ready", "alive", "registration s", "leases kept", "min renewals"
    );
    println!(
        "{nodes:>7} {registered:>7} {alive:>7} {:>15} {kept_count:>12} {min_renewals:>13}",
        registered_in.map_or("timeout".to_string(), |d| format!("{:.1}", d.as_secs_f64())),
    );
    println!(
        "spawning the {nodes} processes took {:.1} s; oldest lease seen {worst_age:.1} s \
         (limit {LEASE_MAX_AGE:.0} s)",
        spawned_in.as_secs_f64()
    );
    println!(
        "kubelets: RSS total {rss_total:.0} MB (PSS total {pss:.0} MB), per kubelet mean \
         {rss_mean:.1} MB, max {rss_max:.1} MB; CPU {:.2}% of one core for all of them",
        cpu_kubelets / steady * 100.0
    );
    println!(
        "apiserver: RSS idle {apiserver_idle:.1} MB, with {nodes} nodes {apiserver_loaded:.1} MB; \
         CPU {:.2}% of one core",
        cpu_apiserver / steady * 100.0
    );
    let sustained = registered == nodes && kept_count == nodes && alive == nodes;
    if sustained {
        println!("{nodes} hollow kubelets registered and kept their leases: met");
    } else {
        println!(
            "{nodes} hollow kubelets: NOT sustained — {registered} registered, {kept_count} kept \
             their leases, {alive} still running"
        );
    }
    result("hollow_nodes_started", nodes as f64, "nodes");
    result("hollow_nodes_ready", registered as f64, "nodes");
    result("hollow_nodes_leases_kept", kept_count as f64, "nodes");
    if let Some(d) = registered_in {
        result("hollow_registration", d.as_secs_f64(), "s");
    }
    result("hollow_kubelet_rss_mean", rss_mean, "MB");
    result("hollow_kubelets_rss_total", rss_total, "MB");
    result("hollow_kubelets_pss_total", pss, "MB");
    result(
        "hollow_kubelets_cpu",
        cpu_kubelets / steady * 100.0,
        "%core",
    );
    result("hollow_apiserver_rss", apiserver_loaded, "MB");
    Ok(())
}

/// Names of the hollow Nodes whose Ready condition is True.
pub async fn ready_nodes(
    server: &Server,
    client: &reqwest::Client,
) -> anyhow::Result<BTreeSet<String>> {
    let list: Value = client
        .get(format!("{}/api/v1/nodes", server.base))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .filter_map(|n| n["metadata"]["name"].as_str())
        .filter(|n| n.starts_with("hollow-"))
        .map(String::from)
        .collect())
}

/// Lease name → `spec.renewTime`, for the leases in `kube-node-lease`.
async fn leases(
    server: &Server,
    client: &reqwest::Client,
) -> anyhow::Result<BTreeMap<String, String>> {
    let list: Value = client
        .get(format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            server.base
        ))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                l["metadata"]["name"].as_str()?.to_string(),
                l["spec"]["renewTime"].as_str()?.to_string(),
            ))
        })
        .collect())
}
