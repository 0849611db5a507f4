//! `skiff-bench`: Skiff's benchmarks. Each subcommand measures one figure against the physical
//! reference in the same run (raw etcd for the apiserver, a bare `docker run` for pod start) and
//! ends with `result NAME VALUE UNIT` lines. Build with
//! `cargo build --release -p skiff-apiserver -p skiff-kubelet -p skiff-bench`: the apiserver
//! and kubelet binaries are taken from the same folder as this one.

mod authz;
mod controllers;
mod fuzz;
mod h1;
mod harness;
mod hollow;
mod pod_start;
mod proxy;
mod scheduler;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use harness::{Backend, Server, cpu_seconds};
use stats::Latencies;

#[derive(Parser)]
#[command(name = "skiff-bench", about = "Skiff's benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// What authorization costs: apiserver CPU per create with RBAC vs AlwaysAllow.
    Authz {
        /// Creates per row.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Rounds (each runs both authorizers).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Other users with a Role and RoleBinding each, so the index is not trivial.
        #[arg(long, default_value_t = 1000)]
        others: usize,
    },
    /// Create throughput and latency through the apiserver (etcd and embedded) vs raw etcd puts.
    Api {
        /// Creates per concurrency level and target.
        #[arg(long, default_value_t = 3000)]
        count: usize,
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
        clients: Vec<usize>,
        /// Clients share one HTTP/2 connection (as client-go does) instead of one HTTP/1.1
        /// connection each.
        #[arg(long)]
        http2: bool,
        /// Rounds per concurrency level; each round runs every target once, and the figures
        /// printed last (`result` lines) are the medians over the rounds.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// Watch fan-out: delivery latency of events to many concurrent watchers.
    Watch {
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        #[arg(long, default_value_t = 100)]
        events: usize,
    },
    /// Resident memory of the apiserver, idle and holding many objects.
    Memory {
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
    },
    /// Pod start on a real kubelet (Docker): create → Running+Ready through a watch, vs a bare
    /// `docker run -d`; and the kubelet's memory.
    PodStart {
        #[arg(long, default_value_t = 30)]
        pods: usize,
    },
    /// Scheduler throughput (kube-scheduler-perf's SchedulingBasic): N nodes, M pending pods,
    /// pods bound per second end to end, vs the bench binding pods itself; scheduler memory.
    Scheduler {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 5000)]
        pods: usize,
        /// Run the apiserver on etcd instead of the embedded store.
        #[arg(long)]
        etcd: bool,
    },
    /// A Deployment through the controller-manager: N pods created, available, rolled; the
    /// controller-manager's memory with many pods. Then, on hollow nodes, a Job against the
    /// same pods run by the bench, and a DaemonSet's rollout.
    Controllers {
        /// The Deployment's replicas (0 skips the Deployment figures).
        #[arg(long, default_value_t = 1000)]
        replicas: usize,
        /// Pods for the memory figure (the Deployment is scaled to this at the end).
        #[arg(long, default_value_t = 10_000)]
        memory_pods: usize,
        /// Hollow nodes for the Job and DaemonSet figures (0 skips them).
        #[arg(long, default_value_t = 100)]
        hollow_nodes: usize,
        /// The Job's completions.
        #[arg(long, default_value_t = 1000)]
        job_completions: usize,
        /// The Job's parallelism.
        #[arg(long, default_value_t = 100)]
        job_parallelism: usize,
    },
    /// The proxy's ruleset for N Services (3 endpoints each) applied in a bench-made network
    /// namespace: full sync and one-change times.
    Proxy {
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        services: Vec<usize>,
    },
    /// The apiserver under a fuzz run: mutated requests for every resource and verb (JSON, YAML
    /// and protobuf bodies, odd headers and paths) must get no 5xx and no dropped connection,
    /// and must change nothing in a namespace the fuzzer may not write.
    Fuzz {
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// The run's seed: the same seed sends the same requests (the e2e test uses 21).
        #[arg(long, default_value_t = 21)]
        seed: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Run the apiserver on etcd instead of the embedded store.
        #[arg(long)]
        etcd: bool,
    },
    /// Many hollow kubelets (`--runtime fake`) on one apiserver: registration and leases.
    HollowNodes {
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// How long to keep checking the leases once all nodes are Ready.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

fn result(name: &str, value: f64, unit: &str) {
    println!("result {name} {value:.2} {unit}");
}

fn configmap(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "labels": { "bench": "api" } },
        "data": { "payload": "x".repeat(256) },
    })
}

/// Runs `count` operations with `clients` concurrent workers; `op(i)` does one.
async fn drive<F, Fut>(count: usize, clients: usize, op: F) -> anyhow::Result<(Latencies, Duration)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    drive_workers(count, clients, move |_, i| op(i)).await
}

/// Like [`drive`], where `op(worker, i)` also learns which worker (`0..clients`) runs it.
async fn drive_workers<F, Fut>(
    count: usize,
    clients: usize,
    op: F,
) -> anyhow::Result<(Latencies, Duration)>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let op = op.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                op(worker, i).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((Latencies::new(all), start.elapsed()))
}

/// One row of the `api` table: a target's figures at one concurrency level in one round.
struct ApiRow {
    label: &'static str,
    ops: f64,
    p50: f64,
    p99: f64,
    etcd_us: f64,
    api_us: f64,
    client_us: f64,
}

/// CPU seconds of etcd, the apiserver (if any) and this process, for per-operation figures.
struct CpuMark(f64, f64, f64);

impl CpuMark {
    fn now(etcd: u32, server: Option<u32>) -> Self {
        CpuMark(
            cpu_seconds(etcd),
            server.map_or(0.0, cpu_seconds),
            cpu_seconds(std::process::id()),
        )
    }

    fn row(
        &self,
        label: &'static str,
        (etcd, server): (u32, Option<u32>),
        (lat, took): (Latencies, Duration),
        count: usize,
    ) -> ApiRow {
        let end = CpuMark::now(etcd, server);
        let per_op = |s: f64| s * 1e6 / count as f64;
        ApiRow {
            label,
            ops: count as f64 / took.as_secs_f64(),
            p50: lat.ms(0.50),
            p99: lat.ms(0.99),
            etcd_us: per_op(end.0 - self.0),
            api_us: per_op(end.1 - self.1),
            client_us: per_op(end.2 - self.2),
        }
    }
}

/// The middle value (the lower of the two middle ones for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// What one `api` row measures.
#[derive(Clone, Copy)]
enum ApiTarget {
    RawPut,
    RawTxn,
    /// Creates through `servers[i]` of [`ApiRound`].
    Apiserver(usize),
}

/// What a round of `api` runs against.
struct ApiRound<'a> {
    etcd: &'a skiff_store::testing::TestEtcd,
    raw: &'a etcd_client::Client,
    servers: [(&'static str, &'a Server); 2],
    payload: &'a bytes::Bytes,
    http2: bool,
}

impl ApiRound<'_> {
    /// One round at one concurrency level: raw etcd puts, raw create transactions, creates
    /// through the apiserver on etcd and on the embedded store. Each ratio's two rows run
    /// next to each other, and odd rounds swap which of the two goes first, so a drift in
    /// the machine's speed favours neither. The rows come back in that order all the same.
    async fn run(&self, count: usize, clients: usize, round: usize) -> anyhow::Result<Vec<ApiRow>> {
        use ApiTarget::*;
        let order = if round.is_multiple_of(2) {
            [RawPut, Apiserver(0), RawTxn, Apiserver(1)]
        } else {
            [Apiserver(0), RawPut, Apiserver(1), RawTxn]
        };
        let tag = format!("c{clients}r{round}");
        let mut rows: [Option<ApiRow>; 4] = Default::default();
        for target in order {
            let slot = match target {
                RawPut => 0,
                RawTxn => 1,
                Apiserver(i) => 2 + i,
            };
            rows[slot] = Some(self.row(target, count, clients, &tag).await?);
        }
        Ok(rows.into_iter().flatten().collect())
    }

    async fn row(
        &self,
        target: ApiTarget,
        count: usize,
        clients: usize,
        tag: &str,
    ) -> anyhow::Result<ApiRow> {
        let run = tag.to_string();
        let etcd = self.etcd.pid();
        match target {
            // Plain puts, or the same write as the apiserver makes: create-if-absent in a
            // transaction.
            ApiTarget::RawPut | ApiTarget::RawTxn => {
                let txn = matches!(target, ApiTarget::RawTxn);
                let raw = self.raw.clone();
                let p = self.payload.clone();
                let mark = CpuMark::now(etcd, None);
                let measured = drive(count, clients, move |i| {
                    let mut c = raw.clone();
                    let value = p.to_vec();
                    let key = format!("/bench/{}/{run}/{i}", if txn { "txn" } else { "raw" });
                    async move {
                        if txn {
                            let create = etcd_client::Txn::new()
                                .when([etcd_client::Compare::create_revision(
                                    key.as_str(),
                                    etcd_client::CompareOp::Equal,
                                    0,
                                )])
                                .and_then([etcd_client::TxnOp::put(key.as_str(), value, None)]);
                            c.txn(create).await?;
                        } else {
                            c.put(key, value, None).await?;
                        }
                        Ok(())
                    }
                })
                .await?;
                let label = if txn {
                    "raw etcd txn create"
                } else {
                    "raw etcd put"
                };
                Ok(mark.row(label, (etcd, None), measured, count))
            }
            ApiTarget::Apiserver(i) => {
                let (label, server) = self.servers[i];
                const PATH: &str = "/api/v1/namespaces/default/configmaps";
                // The body is the same JSON each time but for the name, made from a template
                // as the raw puts send prepared bytes: the client's CPU counts against the
                // shared cores.
                let template = serde_json::to_string(&configmap("@NAME@"))?;
                let (pre, post) = template
                    .split_once("@NAME@")
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .context("the ConfigMap template has a name")?;
                let body = move |i: usize| format!("{pre}cm-{run}-{i}{post}");
                // Connections are open before the CPU mark, as the raw etcd client's is:
                // otherwise each row also pays a TLS handshake with client certificates per
                // client, a tenth of the apiserver's CPU in a row of 3,000 creates.
                let (mark, measured) = if self.http2 {
                    let client = server.client()?;
                    let url = format!("{}{PATH}", server.base);
                    let r = client
                        .get(format!("{}/version", server.base))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "warm-up: {}", r.status());
                    let mark = CpuMark::now(etcd, Some(server.pid()));
                    let measured = drive(count, clients, move |i| {
                        let request = client
                            .post(&url)
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body(i))
                            .send();
                        async move {
                            let r = request.await?;
                            anyhow::ensure!(r.status() == 201, "create failed: {}", r.status());
                            r.bytes().await?;
                            Ok(())
                        }
                    })
                    .await?;
                    (mark, measured)
                } else {
                    let conns = h1::Connector::new(server)?.connect_all(clients).await?;
                    let mark = CpuMark::now(etcd, Some(server.pid()));
                    let measured = drive_workers(count, clients, move |worker, i| {
                        let conns = conns.clone();
                        let body = bytes::Bytes::from(body(i));
                        async move {
                            let status = conns[worker].post_json(PATH, body).await?;
                            anyhow::ensure!(status == 201, "create failed: {status}");
                            Ok(())
                        }
                    })
                    .await?;
                    (mark, measured)
                };
                Ok(mark.row(label, (etcd, Some(server.pid())), measured, count))
            }
        }
    }
}

async fn bench_api(
    count: usize,
    levels: Vec<usize>,
    rounds: usize,
    http2: bool,
) -> anyhow::Result<()> {
    let rounds = rounds.max(1);
    let etcd = tokio::task::spawn_blocking(skiff_store::testing::TestEtcd::start).await?;
    let raw = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .context("connecting to etcd")?;
    let on_etcd = Server::start(Backend::Etcd(etcd.endpoint.clone())).await?;
    let embedded = Server::start(Backend::Embedded).await?;
    let payload = bytes::Bytes::from(serde_json::to_vec(&configmap("payload"))?);
    let targets = ApiRound {
        etcd: &etcd,
        raw: &raw,
        servers: [
            ("apiserver (etcd)", &on_etcd),
            ("apiserver (embedded)", &embedded),
        ],
        payload: &payload,
        http2,
    };
    println!(
        "api: {count} creates of a {}-byte ConfigMap per row, {}, {rounds} round(s) per level",
        payload.len(),
        if http2 {
            "clients sharing one HTTP/2 connection"
        } else {
            "one HTTP/1.1 connection per client"
        }
    );
    println!(
        "{:<22} {:>7} {:>10} {:>9} {:>9} {:>14} {:>14} {:>14}",
        "target",
        "clients",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "etcd CPU µs/op",
        "apisrv µs/op",
        "client µs/op"
    );
    for clients in levels {
        // Every round runs all four targets, and each round's ratio compares the apiserver with
        // the raw puts of that round: the machine's speed drifts between rounds (other
        // tenants), and pairing keeps that drift out of the ratio.
        let mut all: Vec<Vec<ApiRow>> = Vec::new();
        for round in 0..rounds {
            let rows = targets.run(count, clients, round).await?;
            for r in &rows {
                println!(
                    "{:<22} {clients:>7} {:>10.0} {:>9.2} {:>9.2} {:>14.0} {:>14.0} {:>14.0}",
                    r.label, r.ops, r.p50, r.p99, r.etcd_us, r.api_us, r.client_us
                );
            }
            let ratio = rows[2].ops / rows[0].ops;
            println!("{:<22} {clients:>7} {ratio:>10.2}", "ratio apiserver/etcd");
            all.push(rows);
        }
        let med =
            |row: usize, f: fn(&ApiRow) -> f64| median(all.iter().map(|r| f(&r[row])).collect());
        let ratios: Vec<f64> = all.iter().map(|r| r[2].ops / r[0].ops).collect();
        if rounds > 1 {
            let list = ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "ratio per round at {clients} clients: {list}; median {:.2}",
                median(ratios.clone())
            );
        }
        let ratio = median(ratios);
        result(
            &format!("api_create_etcd_ops_c{clients}"),
            med(2, |r| r.ops),
            "ops/s",
        );
        result(
            &format!("raw_etcd_txn_ops_c{clients}"),
            med(1, |r| r.ops),
            "ops/s",
        );
        result(
            &format!("raw_etcd_put_ops_c{clients}"),
            med(0, |r| r.ops),
            "ops/s",
        );
        result(&format!("api_vs_etcd_ratio_c{clients}"), ratio, "x");
        result(
            &format!("api_create_etcd_p99_c{clients}"),
            med(2, |r| r.p99),
            "ms",
        );
        result(
            &format!("api_create_embedded_ops_c{clients}"),
            med(3, |r| r.ops),
            "ops/s",
        );
        result(
            &format!("api_create_embedded_p99_c{clients}"),
            med(3, |r| r.p99),
            "ms",
        );
    }
    Ok(())
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

async fn bench_watch(watchers: usize, events: usize) -> anyhow::Result<()> {
    let server = Server::start(Backend::Embedded).await?;
    let rv = {
        let r: serde_json::Value = server
            .client()?
            .get(format!(
                "{}/api/v1/namespaces/default/configmaps",
                server.base
            ))
            .send()
            .await?
            .json()
            .await?;
        r["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string()
    };
    // Several HTTP/2 connections, each multiplexing up to 100 watches.
    let conns = watchers.div_ceil(100);
    let clients: Vec<reqwest::Client> = (0..conns)
        .map(|_| server.client())
        .collect::<Result<_, _>>()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    for w in 0..watchers {
        let client = clients[w % conns].clone();
        let url = format!(
            "{}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}",
            server.base
        );
        let tx = tx.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let resp = match client.get(&url).send().await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("watch failed: {e}");
                    return;
                }
            };
            ready.add_permits(1);
            let mut stream = resp.bytes_stream();
            let mut buf = Vec::new();
            let mut seen = 0;
            while let Some(Ok(chunk)) = stream.next().await {
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let now = now_micros();
                    if let Ok(ev) = serde_json::from_slice::<serde_json::Value>(&line)
                        && let Some(sent) = ev
                            .pointer("/object/metadata/annotations/sent")
                            .and_then(|v| v.as_str())
                            .and_then(|s| s.parse::<u128>().ok())
                    {
                        let _ = tx.send((now.saturating_sub(sent)) as f64 / 1000.0);
                        seen += 1;
                        if seen == events {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    let opened =
        tokio::time::timeout(Duration::from_secs(60), ready.acquire_many(watchers as u32)).await;
    anyhow::ensure!(
        opened.is_ok(),
        "not all {watchers} watches opened within 60 s"
    );
    let writer = server.client()?;
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.base);
    for i in 0..events {
        let mut cm = configmap(&format!("watch-{i}"));
        cm["metadata"]["annotations"] = serde_json::json!({ "sent": now_micros().to_string() });
        let r = writer.post(&url).json(&cm).send().await?;
        anyhow::ensure!(r.status().as_u16() == 201, "create failed: {}", r.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while lat.len() < watchers * events {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ms)) => lat.push(Duration::from_secs_f64(ms / 1000.0)),
            _ => break,
        }
    }
    let delivered = lat.len();
    let lat = Latencies::new(lat);
    println!("watch: {watchers} watchers, {events} events each, {delivered} deliveries");
    println!(
        "delivery latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.ms(0.50),
        lat.ms(0.99),
        lat.ms(1.0)
    );
    result(
        "watch_delivered_fraction",
        delivered as f64 / (watchers * events) as f64,
        "x",
    );
    result("watch_delivery_p50", lat.ms(0.50), "ms");
    result("watch_delivery_p99", lat.ms(0.99), "ms");
    Ok(())
}

async fn bench_memory(objects: usize) -> anyhow::Result<()> {
    let etcd = tokio::task::spawn_blocking(skiff_store::testing::TestEtcd::start).await?;
    for (label, backend) in [
        ("embedded", Backend::Embedded),
        ("etcd", Backend::Etcd(etcd.endpoint.clone())),
    ] {
        let server = Server::start(backend).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = server.rss_mb()?;
        let client = server.client_h1()?;
        let url = format!("{}/api/v1/namespaces/default/configmaps", server.base);
        drive(objects, 32, move |i| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client
                    .post(&url)
                    .json(&configmap(&format!("mem-{i}")))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 201, "create failed: {}", r.status());
                Ok(())
            }
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let loaded = server.rss_mb()?;
        println!(
            "memory ({label}): apiserver RSS idle {idle:.1} MB, with {objects} ConfigMaps {loaded:.1} MB"
        );
        result(&format!("apiserver_rss_idle_{label}"), idle, "MB");
        result(
            &format!("apiserver_rss_{objects}_objects_{label}"),
            loaded,
            "MB",
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let outcome = match cli.cmd {
        Cmd::Api {
            count,
            clients,
            http2,
            rounds,
        } => bench_api(count, clients, rounds, http2).await,
        Cmd::Authz {
            count,
            clients,
            rounds,
            others,
        } => authz::run(count, clients, rounds, others).await,
        Cmd::Watch { watchers, events } => bench_watch(watchers, events).await,
        Cmd::Memory { objects } => bench_memory(objects).await,
        Cmd::PodStart { pods } => pod_start::run(pods).await,
        Cmd::Scheduler { nodes, pods, etcd } => scheduler::run(nodes, pods, etcd).await,
        Cmd::Controllers {
            replicas,
            memory_pods,
            hollow_nodes,
            job_completions,
            job_parallelism,
        } => {
            let deployment = if replicas > 0 {
                controllers::run(replicas, memory_pods).await
            } else {
                Ok(())
            };
            match deployment {
                Ok(()) if hollow_nodes > 0 => {
                    controllers::run_hollow(hollow_nodes, job_completions, job_parallelism).await
                }
                other => other,
            }
        }
        Cmd::Proxy { services } => proxy::run(&services).await,
        Cmd::HollowNodes { nodes, seconds } => hollow::run(nodes, seconds).await,
        Cmd::Fuzz {
            requests,
            seed,
            workers,
            etcd,
        } => {
            let config = skiff_e2e::fuzz::Config {
                seed,
                requests,
                workers,
            };
            fuzz::run(config, etcd).await
        }
    };
    if let Err(e) = outcome {
        eprintln!("skiff-bench: {e:#}");
        std::process::exit(1);
    }
}
