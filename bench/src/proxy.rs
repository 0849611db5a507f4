//! `proxy`: the proxy's ruleset for N Services with 3 endpoints each, rendered and applied
//! with one `iptables-restore` into a network namespace the bench creates (`skb-node`, removed
//! afterwards), and then one endpoint change rendered and applied as a partial sync (only the
//! chains that changed). Then the real `skiff-proxy` in that namespace, started against an
//! apiserver holding the N Services and their EndpointSlices (reached through a veth pair the
//! bench makes, `skb-host` 10.253.9.1/30): time to its first full sync, and its RSS. No traffic
//! is sent.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skiff_proxy::iptables::Iptables;
use skiff_proxy::rules::{Protocol, Renderer, ServicePort, Settings};

use crate::result;

const NS: &str = "skb-node";
const HOST_IF: &str = "skb-host";
const HOST_IP: &str = "10.253.9.1";
/// The bench node's pod CIDR: the first 64 Services have their endpoints on it.
const LOCAL_POD_CIDR: &str = "10.244.0.0/24";

fn services(n: usize) -> Vec<ServicePort> {
    (0..n)
        .map(|i| ServicePort {
            namespace: "bench".into(),
            name: format!("svc-{i:05}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Some(Ipv4Addr::from(0x0a60_0000u32 + 10 + i as u32)),
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_seconds: None,
            endpoints: (0..3)
                .map(|e| {
                    (
                        Ipv4Addr::from(0x0af4_0000u32 + (i as u32) * 4 + e + 1),
                        8080,
                    )
                })
                .collect(),
        })
        .collect()
}

fn rules_in_netns() -> usize {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{NS}"))
        .args(["iptables-save", "-t", "nat"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("-A "))
                .count()
        })
        .unwrap_or(0)
}

pub async fn run(counts: &[usize]) -> anyhow::Result<()> {
    let _ = Command::new("ip").args(["netns", "del", NS]).output();
    let added = Command::new("ip").args(["netns", "add", NS]).output()?;
    anyhow::ensure!(
        added.status.success(),
        "ip netns add {NS}: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let ipt = Iptables::in_netns(Path::new(&format!("/run/netns/{NS}")));
    let settings = Settings {
        cluster_cidr: Some("10.244.0.0/16".parse()?),
        // As on a real node: the endpoints (10.244.x.y) are elsewhere, so no hairpin rules.
        local_pod_cidr: Some("10.245.255.0/24".parse()?),
        // One rule marks outside traffic to every ClusterIP (skiff-proxy's
        // --service-cluster-ip-range, which skiffctl clusters pass).
        service_cidr: Some("10.96.0.0/12".parse()?),
    };
    println!(
        "proxy: ruleset for N Services x 3 endpoints, applied with one iptables-restore in netns {NS}"
    );
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>14} {:>14} {:>10}",
        "services", "rules", "render ms", "apply ms", "change render", "change apply", "apply max"
    );
    let outcome = (|| -> anyhow::Result<()> {
        for &n in counts {
            ipt.cleanup()?;
            let mut ports = services(n);
            let mut renderer = Renderer::new(settings.clone());
            let t = Instant::now();
            let full = renderer.render(&ports, &BTreeSet::new());
            let render_full = t.elapsed();
            let t = Instant::now();
            ipt.apply(&full)?;
            let apply_full = t.elapsed();
            let rules = rules_in_netns();
            // One endpoint of one Service changes, as the proxy handles it: re-render that
            // Service, restore what changed. Eleven changes (to different Services), a second
            // apart as the min-sync window spaces them (back to back, the kernel's walk of the
            // table finds it in the CPU caches and takes half the time); medians.
            let mut renders = Vec::new();
            let mut applies = Vec::new();
            for k in 0..CHANGES {
                let i = (n / 2 + k * 7) % n;
                ports[i].endpoints[1].0 = Ipv4Addr::new(10, 245, 0, k as u8 + 1);
                std::thread::sleep(Duration::from_secs(1));
                let t = Instant::now();
                let sp = ports[i].clone();
                let delta = renderer.update([((sp.namespace.clone(), sp.name.clone()), vec![sp])]);
                let input = delta.restore();
                renders.push(t.elapsed());
                let t = Instant::now();
                ipt.restore(&input)?;
                applies.push(t.elapsed());
            }
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let (render_change, apply_change) = (median(&mut renders), median(&mut applies));
            let apply_max = applies.iter().max().copied().unwrap_or_default();
            println!(
                "{n:>8} {rules:>10} {:>12.1} {:>12.1} {:>14.1} {:>14.1} {:>10.1}",
                ms(render_full),
                ms(apply_full),
                ms(render_change),
                ms(apply_change),
                ms(apply_max)
            );
            result(
                &format!("proxy_full_sync_{n}"),
                ms(render_full + apply_full),
                "ms",
            );
            result(
                &format!("proxy_one_change_{n}"),
                ms(render_change + apply_change),
                "ms",
            );
        }
        Ok(())
    })();
    let _ = ipt.cleanup();
    let outcome = match outcome {
        Ok(()) => live(counts).await,
        Err(e) => Err(e),
    };
    let _ = ipt.cleanup();
    let _ = Command::new("ip").args(["link", "del", HOST_IF]).output();
    let _ = Command::new("ip").args(["netns", "del", NS]).output();
    outcome
}

/// Endpoint changes measured per size.
const CHANGES: usize = 11;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The proxy's `/metrics` value `name`, read inside the namespace.
fn metric(name: &str) -> Option<f64> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{NS}"))
        .args([
            "curl",
            "-s",
            "--max-time",
            "2",
            "http://127.0.0.1:10256/metrics",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|v| v.trim().parse::<f64>().ok())
    })
}

/// Endpoint changes through the API per size.
const LIVE_CHANGES: usize = 5;

/// One endpoint of a Service (the `k`th change) replaced through the API once the proxy's
/// min-sync window has passed: seconds from the write to the proxy's rules being in place (its
/// `..._last_timestamp_seconds`), the whole path a user's change takes (watch, model, render,
/// restore).
async fn one_change(
    client: &reqwest::Client,
    base: &str,
    n: usize,
    k: usize,
) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let syncs = metric("skiff_proxy_syncs_total").unwrap_or(0.0);
    let i = (n / 2 + k * 7) % n;
    let moved = Ipv4Addr::new(10, 245, 0, k as u8 + 1);
    let endpoints: Vec<serde_json::Value> = (0..3u32)
        .map(|e| {
            let ip = if e == 1 {
                moved
            } else {
                Ipv4Addr::from(0x0af4_0000u32 + (i as u32) * 4 + e + 1)
            };
            serde_json::json!({ "addresses": [ip.to_string()], "conditions": { "ready": true } })
        })
        .collect();
    let sent = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let r = client
        .patch(format!(
            "{base}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/svc-{i:05}-1"
        ))
        .header("Content-Type", "application/merge-patch+json")
        .body(serde_json::json!({ "endpoints": endpoints }).to_string())
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "PATCH slice: {}", r.status());
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric("skiff_proxy_syncs_total").unwrap_or(0.0) <= syncs {
        anyhow::ensure!(
            Instant::now() < deadline,
            "skiff-proxy did not sync the change"
        );
        // The proxy stamps the time itself; polling (a process each time) only has to see it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let applied = metric("skiff_proxy_sync_proxy_rules_last_timestamp_seconds").unwrap_or(0.0);
    let saved = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{NS}"))
        .args(["iptables-save", "-t", "nat"])
        .output()?;
    anyhow::ensure!(
        String::from_utf8_lossy(&saved.stdout).contains(&format!("--to-destination {moved}:8080")),
        "the changed endpoint is not in the rules"
    );
    Ok(applied - sent)
}

/// Kills the proxy when the bench ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real skiff-proxy following N Services: time from its start to its first full sync of
/// all of them, and its RSS then.
async fn live(counts: &[usize]) -> anyhow::Result<()> {
    use crate::harness::{Backend, Server, rss_mb, sibling};
    use futures::StreamExt as _;
    let _ = Command::new("ip").args(["link", "del", HOST_IF]).output();
    sh(&[
        "ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "uplink", "netns", NS,
    ])?;
    sh(&[
        "ip",
        "addr",
        "add",
        &format!("{HOST_IP}/30"),
        "dev",
        HOST_IF,
    ])?;
    sh(&["ip", "link", "set", HOST_IF, "up"])?;
    let ns = format!("--net=/run/netns/{NS}");
    sh(&[
        "nsenter",
        &ns,
        "ip",
        "addr",
        "add",
        "10.253.9.2/30",
        "dev",
        "uplink",
    ])?;
    sh(&["nsenter", &ns, "ip", "link", "set", "uplink", "up"])?;
    sh(&["nsenter", &ns, "ip", "link", "set", "lo", "up"])?;
    println!("proxy: the real skiff-proxy in {NS}, N Services x 3 endpoints in the apiserver");
    println!(
        "{:>8} {:>16} {:>10} {:>24}",
        "services", "first sync s", "RSS MB", "API change → rule (median)"
    );
    for &n in counts {
        let server = Server::start_on(Backend::Embedded, HOST_IP).await?;
        // HTTP/1.1, a connection per request in flight (h2 gives up on 20,000 quick streams).
        let client = server.client_h1()?;
        let base = server.base.clone();
        // The node itself, as the controller-manager's IPAM leaves it: with a pod CIDR, so
        // only the endpoints in it (its own pods) get a hairpin masquerade rule.
        let node = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": NS },
            "spec": { "podCIDR": LOCAL_POD_CIDR, "podCIDRs": [LOCAL_POD_CIDR] }
        });
        let r = client
            .post(format!("{base}/api/v1/nodes"))
            .json(&node)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "POST node: {}", r.status());
        let creates = futures::stream::iter(0..n)
            .map(|i| {
                let client = client.clone();
                let base = base.clone();
                async move {
                    let name = format!("svc-{i:05}");
                    let svc = serde_json::json!({
                        "apiVersion": "v1", "kind": "Service",
                        "metadata": { "name": name },
                        "spec": { "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] }
                    });
                    let endpoints: Vec<serde_json::Value> = (0..3u32)
                        .map(|e| {
                            let ip = Ipv4Addr::from(0x0af4_0000u32 + (i as u32) * 4 + e + 1);
                            serde_json::json!({ "addresses": [ip.to_string()], "conditions": { "ready": true } })
                        })
                        .collect();
                    let slice = serde_json::json!({
                        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": { "name": format!("{name}-1"), "labels": { "kubernetes.io/service-name": name } },
                        "addressType": "IPv4",
                        "endpoints": endpoints,
                        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }]
                    });
                    for (path, body) in [
                        ("/api/v1/namespaces/default/services", svc),
                        ("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice),
                    ] {
                        let r = client.post(format!("{base}{path}")).json(&body).send().await?;
                        anyhow::ensure!(r.status().is_success(), "POST {path}: {}", r.status());
                    }
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(32);
        let outcomes: Vec<anyhow::Result<()>> = creates.collect().await;
        for o in outcomes {
            o?;
        }
        let kubeconfig = server.kubeconfig().display().to_string();
        let log = std::fs::File::create(std::env::temp_dir().join("skb-proxy.log"))?;
        let started = Instant::now();
        let proxy = Killed(
            Command::new("nsenter")
                .arg(&ns)
                .arg(sibling("skiff-proxy")?)
                .args([
                    "--kubeconfig",
                    &kubeconfig,
                    "--hostname-override",
                    NS,
                    "--cluster-cidr",
                    "10.244.0.0/16",
                    "--service-cluster-ip-range",
                    "10.96.0.0/12",
                    "--healthz-bind-address",
                    "127.0.0.1:10256",
                ])
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(300);
        while metric("skiff_proxy_service_ports").unwrap_or(0.0) < (n + 1) as f64 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "skiff-proxy did not sync {n} Services; see {}",
                std::env::temp_dir().join("skb-proxy.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let first = started.elapsed();
        let rss = rss_mb(proxy.0.id())?;
        let mut changes = Vec::new();
        for k in 0..LIVE_CHANGES {
            changes.push(Duration::from_secs_f64(
                one_change(&client, &base, n, k).await?,
            ));
        }
        let change = median(&mut changes);
        let worst = changes.iter().max().copied().unwrap_or_default();
        println!(
            "{n:>8} {:>16.2} {rss:>10.1} {:>10.1} ms (max {:.1})",
            first.as_secs_f64(),
            change.as_secs_f64() * 1000.0,
            worst.as_secs_f64() * 1000.0
        );
        result(
            &format!("proxy_live_change_{n}"),
            change.as_secs_f64() * 1000.0,
            "ms",
        );
        result(&format!("proxy_first_sync_{n}"), first.as_secs_f64(), "s");
        result(&format!("proxy_rss_{n}"), rss, "MB");
        drop(proxy);
        Iptables::in_netns(Path::new(&format!("/run/netns/{NS}"))).cleanup()?;
    }
    Ok(())
}
