//! The kubelet's HTTPS server (port 10250): `/containerLogs`, `/exec`, `/pods`,
//! `/stats/summary`, `/healthz` and `/metrics`. The apiserver proxies `pods/log` and
//! `pods/exec` here.
//!
//! Like a kubelet started without `--tls-cert-file`, it serves a self-signed certificate made
//! at start. Callers authenticate with a client certificate signed by the cluster CA (the
//! `certificate-authority-data` of the kubelet's kubeconfig) or a bearer token, and every
//! request but `/healthz` is authorized by the apiserver ([`crate::auth`]). The apiserver
//! itself calls with its `kube-apiserver-kubelet-client` certificate.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_common::tls;
use skiff_runtime::{ContainerState, ContainerStatus, ExecSession, LogOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::auth::{self, Auth, ClientCert};

/// The exec subprotocols spoken, newest first (`v5` adds the stdin close signal).
const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Channels of the remote command protocol.
const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
/// v5: a client message `[255, channel]` closes that channel (stdin EOF).
const CH_CLOSE: u8 = 255;

/// The cluster CA (PEM) from the kubeconfig: `certificate-authority-data`, or the file
/// `certificate-authority` names, of the current context's cluster.
pub fn cluster_ca(kubeconfig: &Path) -> anyhow::Result<String> {
    skiff_client::kubeconfig_ca(kubeconfig)?.with_context(|| {
        format!(
            "kubeconfig {} has no certificate-authority(-data): the kubelet needs the cluster CA to check who calls its server",
            kubeconfig.display()
        )
    })
}

/// TLS for the server: the given serving certificate and key (PEM), or a fresh self-signed
/// one for the node's name and IP; client certificates are checked against `ca_pem` (optional
/// at the TLS layer: `/healthz` answers anyone, and a caller may bring a bearer token instead).
pub fn tls_config(
    node_name: &str,
    node_ip: IpAddr,
    ca_pem: &str,
    serving: Option<(String, String)>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    if let Some((cert, key)) = serving {
        let identity = tls::Identity::from_pem(&cert, &key)
            .context("loading --tls-cert-file and --tls-private-key-file")?;
        return tls::server_config(identity, Some(ca_pem))
            .context("loading the kubelet's serving certificate");
    }
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let mut ips = vec![node_ip];
    if node_ip != loopback {
        ips.push(loopback);
    }
    // The kubelet's own self-signed certificates are named "<host>@<unix time>".
    let identity = tls::Identity::self_signed(
        &format!("{node_name}@{stamp}"),
        &[node_name, "localhost"],
        &ips,
    )
    .context("making the kubelet's serving certificate")?;
    tls::server_config(identity, Some(ca_pem)).context("loading the kubelet's serving certificate")
}

/// What the handlers share.
struct State_ {
    ctx: Arc<Context>,
    /// The last node CPU sample (when, cumulative ns), for `usageNanoCores`.
    cpu_sample: Mutex<Option<(Instant, u64)>>,
    metrics: crate::metrics::Metrics,
}

type Shared = Arc<State_>;

fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route("/pods", get(pods))
        .route("/stats/summary", get(stats_summary))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves on `listener` until shutdown.
pub async fn serve(
    ctx: Arc<Context>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    let state = Arc::new(State_ {
        ctx,
        cpu_sample: Mutex::new(None),
        metrics: crate::metrics::Metrics::new(),
    });
    let auth = Arc::new(Auth::new(state.ctx.reviews.clone(), &state.ctx.node_name));
    // The outer layer counts every request, the inner one turns callers away.
    let router = router(state.clone())
        .layer(axum::middleware::from_fn_with_state(auth, auth::filter))
        .layer(axum::middleware::from_fn_with_state(state, count));
    // The verifier only lets a client certificate through if the cluster CA signed it, so the
    // user it names is authenticated.
    skiff_common::serve_tls(
        listener,
        tls,
        router,
        skiff_common::ServeLimits::default(),
        shutdown,
        ClientCert::from_chain,
    )
    .await;
}

/// Counts requests, and those turned away for want of credentials.
async fn count(
    State(state): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    state.metrics.request();
    let response = next.run(req).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        state.metrics.unauthorized();
    }
    response
}

fn plain(code: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (code, message.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// This node's attempts of one container, newest first, all of the newest attempt's pod
/// (a pod deleted and made again under the same name has a new UID).
async fn attempts(
    ctx: &Context,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<ContainerStatus>, Response> {
    let all = ctx.runtime.list_containers().await.map_err(|e| {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("listing containers: {e}"),
        )
    })?;
    let mut found: Vec<ContainerStatus> = all
        .into_iter()
        .filter(|c| {
            ctx.owns(&c.labels)
                && c.pod_namespace == namespace
                && c.pod_name == pod
                && c.name == container
        })
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.restart_count)));
    if let Some(uid) = found.first().map(|c| c.pod_uid.clone()) {
        found.retain(|c| c.pod_uid == uid);
    }
    Ok(found)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    follow: Option<bool>,
    tail_lines: Option<u64>,
    since_seconds: Option<u64>,
    since_time: Option<String>,
    timestamps: Option<bool>,
    previous: Option<bool>,
    limit_bytes: Option<u64>,
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`: the container's log as chunked
/// text/plain; with `follow` it keeps streaming until the container stops or the caller
/// goes away.
async fn container_logs(
    State(state): State<Shared>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let found = match attempts(&state.ctx, &namespace, &pod, &container).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let previous = q.previous.unwrap_or(false);
    let target = if previous {
        found.get(1)
    } else {
        found.first()
    };
    let Some(target) = target else {
        return if previous {
            plain(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            )
        } else {
            plain(
                StatusCode::BAD_REQUEST,
                format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                ),
            )
        };
    };
    let since = match (q.since_seconds, q.since_time.as_deref()) {
        (Some(s), _) => SystemTime::now().checked_sub(Duration::from_secs(s)),
        (None, Some(t)) => match t.parse::<jiff::Timestamp>() {
            Ok(ts) => Some(SystemTime::from(ts)),
            Err(e) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("sinceTime {t:?} is not an RFC 3339 time: {e}"),
                );
            }
        },
        (None, None) => None,
    };
    let options = LogOptions {
        // Following a container that has exited only returns what it wrote.
        follow: q.follow.unwrap_or(false),
        tail_lines: q.tail_lines,
        since,
        timestamps: q.timestamps.unwrap_or(false),
    };
    let stream = match state.ctx.runtime.logs(&target.id, &options).await {
        Ok(s) => s,
        Err(e) => return plain(StatusCode::NOT_FOUND, e.to_string()),
    };
    let limit = q.limit_bytes.unwrap_or(u64::MAX);
    let body = stream
        .scan(limit, |left, item| {
            let out = match item {
                Ok(_) if *left == 0 => None,
                Ok(mut b) => {
                    if b.len() as u64 > *left {
                        b.truncate(*left as usize);
                    }
                    *left -= b.len() as u64;
                    Some(Ok(b))
                }
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            };
            futures::future::ready(out)
        })
        .boxed();
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `GET /pods`: the pods bound to this node, as the apiserver has them.
async fn pods(State(state): State<Shared>) -> Response {
    let api: Api<Pod> = Api::all(state.ctx.client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={}", state.ctx.node_name));
    match api.list(&params).await {
        Ok(list) => axum::Json(json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": list.items,
        }))
        .into_response(),
        Err(e) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("listing this node's pods from the apiserver: {e}"),
        ),
    }
}

/// Cumulative CPU time of the whole machine (all but idle and iowait), in nanoseconds.
fn node_cpu_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...; /proc/stat counts USER_HZ (100) ticks.
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    Some(busy * 10_000_000)
}

/// `GET /stats/summary`: node CPU and memory from /proc, and per pod and container from the
/// runtime, in the Summary API's shape (`kubectl top` and metrics-server read this).
async fn stats_summary(State(state): State<Shared>) -> Response {
    let ctx = &state.ctx;
    let now = skiff_common::time::now();
    let cpu_now = node_cpu_nanos().unwrap_or(0);
    let nano_cores = {
        let mut last = state.cpu_sample.lock().expect("cpu sample lock");
        let rate = last.and_then(|(at, total)| {
            let secs = at.elapsed().as_secs_f64();
            (secs > 0.0).then(|| (cpu_now.saturating_sub(total) as f64 / secs) as u64)
        });
        *last = Some((Instant::now(), cpu_now));
        rate
    };
    let mem_total = crate::sysinfo::memory_kib() * 1024;
    let mem_avail = crate::sysinfo::memory_available_kib() * 1024;
    let mut node_cpu = json!({ "time": now, "usageCoreNanoSeconds": cpu_now });
    if let Some(n) = nano_cores {
        node_cpu["usageNanoCores"] = json!(n);
    }
    let containers: Vec<ContainerStatus> = ctx
        .runtime
        .list_containers()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| ctx.owns(&c.labels) && matches!(c.state, ContainerState::Running { .. }))
        .collect();
    let stats =
        futures::future::join_all(containers.iter().map(|c| ctx.runtime.stats(&c.id))).await;
    // Pods keyed by uid: (namespace, name, containers).
    let mut pods: BTreeMap<String, (String, String, Vec<Value>, u64, u64)> = BTreeMap::new();
    for (c, s) in containers.iter().zip(stats) {
        let Ok(s) = s else { continue };
        let entry = pods.entry(c.pod_uid.clone()).or_insert_with(|| {
            (
                c.pod_namespace.clone(),
                c.pod_name.clone(),
                Vec::new(),
                0,
                0,
            )
        });
        entry.2.push(json!({
            "name": c.name,
            "startTime": match c.state {
                ContainerState::Running { started_at } => jiff::Timestamp::try_from(started_at).map(skiff_common::time::rfc3339).unwrap_or_default(),
                _ => String::new(),
            },
            "cpu": { "time": now, "usageCoreNanoSeconds": s.cpu_usage_nanos },
            "memory": { "time": now, "workingSetBytes": s.memory_working_set_bytes },
        }));
        entry.3 += s.cpu_usage_nanos;
        entry.4 += s.memory_working_set_bytes;
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|(uid, (namespace, name, containers, cpu, mem))| {
            json!({
                "podRef": { "name": name, "namespace": namespace, "uid": uid },
                "containers": containers,
                "cpu": { "time": now, "usageCoreNanoSeconds": cpu },
                "memory": { "time": now, "workingSetBytes": mem },
            })
        })
        .collect();
    axum::Json(json!({
        "node": {
            "nodeName": ctx.node_name,
            "cpu": node_cpu,
            "memory": {
                "time": now,
                "availableBytes": mem_avail,
                "usageBytes": mem_total.saturating_sub(mem_avail),
                "workingSetBytes": mem_total.saturating_sub(mem_avail),
            },
        },
        "pods": pods,
    }))
    .into_response()
}

/// `GET /metrics`: a few gauges and counters in the Prometheus text format.
async fn metrics(State(state): State<Shared>) -> Response {
    let ctx = &state.ctx;
    let containers = ctx.runtime.list_containers().await.unwrap_or_default();
    let running: Vec<&ContainerStatus> = containers
        .iter()
        .filter(|c| ctx.owns(&c.labels) && matches!(c.state, ContainerState::Running { .. }))
        .collect();
    let pods = ctx
        .runtime
        .list_sandboxes()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|s| ctx.owns(&s.labels) && s.ready)
        .count();
    let text = state.metrics.render(pods, running.len());
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// The exec request's options, from a query with repeated `command` keys.
#[derive(Debug, Default)]
struct ExecQuery {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn parse_exec_query(q: Option<&str>) -> ExecQuery {
    let mut out = ExecQuery::default();
    let flag = |v: &str| matches!(v, "1" | "true" | "True");
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        match &*k {
            "command" => out.command.push(v.into_owned()),
            "stdin" => out.stdin = flag(&v),
            "stdout" => out.stdout = flag(&v),
            "stderr" => out.stderr = flag(&v),
            "tty" => out.tty = flag(&v),
            _ => {}
        }
    }
    out
}

/// `/exec/{namespace}/{pod}/{container}`: the remote command protocol onto the runtime's exec,
/// over a WebSocket (`v5.channel.k8s.io` or `v4.channel.k8s.io`) or over SPDY/3.1
/// (`v4.channel.k8s.io`, kubectl before 1.30).
async fn exec(
    State(state): State<Shared>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let spdy = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(crate::spdy::UPGRADE));
    let ws = if spdy {
        None
    } else {
        use axum::extract::FromRequestParts as _;
        match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(ws) => Some(ws),
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "exec needs an upgrade: WebSocket with subprotocol {}, or {}",
                        EXEC_PROTOCOLS.join(" or "),
                        crate::spdy::UPGRADE
                    ),
                );
            }
        }
    };
    let q = parse_exec_query(query.as_deref());
    if q.command.is_empty() {
        return plain(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let found = match attempts(&state.ctx, &namespace, &pod, &container).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(target) = found
        .first()
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
    else {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("container \"{container}\" in pod \"{pod}\" is not running"),
        );
    };
    let id = target.id.clone();
    let runtime = state.ctx.runtime.clone();
    let Some(ws) = ws else {
        return spdy_upgrade(&mut parts, runtime, id, q);
    };
    ws.protocols(EXEC_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let v5 = socket
                .protocol()
                .is_some_and(|p| p.as_bytes() == EXEC_PROTOCOLS[0].as_bytes());
            let session = runtime.exec(&id, &q.command, q.tty, q.stdin).await;
            exec_session(socket, session, &q.command, q.tty, v5).await;
        })
}

/// The one remote command version spoken over SPDY (v4: status JSON on the error stream,
/// terminal sizes on the resize stream).
const SPDY_EXEC_PROTOCOL: &str = "v4.channel.k8s.io";

/// How many data frames, and bytes, a SPDY client may send before its streams are all open.
const EARLY_FRAMES: usize = 16;
const EARLY_BYTES: usize = 1024 * 1024;

/// How long a SPDY client has to open the streams its query asked for.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers a SPDY upgrade with 101 and runs the exec on the upgraded connection.
fn spdy_upgrade(
    parts: &mut http::request::Parts,
    runtime: Arc<dyn skiff_runtime::ContainerRuntime>,
    id: String,
    q: ExecQuery,
) -> Response {
    let offered: Vec<&str> = parts
        .headers
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !offered.contains(&SPDY_EXEC_PROTOCOL) {
        return plain(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: none of the offered stream protocols {offered:?} is spoken; this kubelet speaks {SPDY_EXEC_PROTOCOL} over {}",
                crate::spdy::UPGRADE
            ),
        );
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return plain(
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded",
        );
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = hyper_util::rt::TokioIo::new(upgraded);
                if let Err(e) = spdy_exec(io, runtime, id, q).await {
                    tracing::debug!(error = %e, "exec over SPDY ended with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "exec: the SPDY upgrade failed"),
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::UPGRADE,
        HeaderValue::from_static(crate::spdy::UPGRADE),
    );
    h.insert(
        "X-Stream-Protocol-Version",
        HeaderValue::from_static(SPDY_EXEC_PROTOCOL),
    );
    r
}

/// The SPDY streams of one exec, by the `streamtype` the client gave each.
#[derive(Default)]
struct SpdyStreams {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl SpdyStreams {
    fn complete(&self, q: &ExecQuery) -> bool {
        self.error.is_some()
            && (!q.stdin || self.stdin.is_some())
            && (!q.stdout || self.stdout.is_some())
            && (!q.stderr || q.tty || self.stderr.is_some())
            && (!q.tty || self.resize.is_some())
    }
}

/// One exec over SPDY: waits for the client's streams, runs the command, pumps stdin, output
/// and terminal sizes, then writes the exit status on the error stream and half-closes the
/// output streams, as the v4 protocol ends.
async fn spdy_exec<IO>(
    io: IO,
    runtime: Arc<dyn skiff_runtime::ContainerRuntime>,
    container_id: String,
    q: ExecQuery,
) -> std::io::Result<()>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use crate::spdy::Frame;
    let (rd, wr) = tokio::io::split(io);
    let mut reader = crate::spdy::Reader::new(rd);
    let mut writer = crate::spdy::Writer::new(wr);

    // The streams first: client-go opens them all before it sends anything on them.
    let mut streams = SpdyStreams::default();
    let mut early: Vec<Frame> = Vec::new();
    let mut early_bytes = 0usize;
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !streams.complete(&q) {
        let frame = match tokio::time::timeout_at(deadline, reader.next()).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                // A frame that cannot be read (such as a header block past the inflate cap)
                // leaves the stream of frames undecodable: say so and close the connection.
                let _ = writer.goaway(0).await;
                return Err(e);
            }
            Err(_) => {
                tracing::debug!("exec over SPDY: the client did not open its streams in time");
                return writer.shutdown().await;
            }
        };
        match frame {
            Some(Frame::SynStream { id, headers, .. }) => {
                let kind = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("streamtype"))
                    .map(|(_, v)| v.as_str());
                let slot = match kind {
                    Some("error") => &mut streams.error,
                    Some("stdin") => &mut streams.stdin,
                    Some("stdout") => &mut streams.stdout,
                    Some("stderr") => &mut streams.stderr,
                    Some("resize") => &mut streams.resize,
                    _ => {
                        tracing::debug!(?kind, "exec over SPDY: unknown stream type");
                        continue;
                    }
                };
                *slot = Some(id);
                writer.syn_reply(id, reader.dictionary()).await?;
            }
            Some(Frame::Ping(n)) => writer.ping(n).await?,
            Some(Frame::RstStream { .. } | Frame::GoAway) | None => return Ok(()),
            Some(f @ Frame::Data { .. }) => {
                // Data before the streams are all open waits here; a client that sends more
                // than the hand-over channel holds (or a MiB) is not one that waits its turn.
                early_bytes += match &f {
                    Frame::Data { data, .. } => data.len(),
                    _ => 0,
                };
                if early.len() >= EARLY_FRAMES || early_bytes > EARLY_BYTES {
                    tracing::debug!("exec over SPDY: too much data before the streams were open");
                    let _ = writer.goaway(0).await;
                    return writer.shutdown().await;
                }
                early.push(f);
            }
            Some(Frame::Other) => {}
        }
    }
    let error_stream = streams.error.expect("complete");

    // The reader runs on its own from here; frames arrive through a channel.
    let (frames_tx, mut frames) =
        tokio::sync::mpsc::channel::<std::io::Result<Frame>>(EARLY_FRAMES);
    for f in early {
        let _ = frames_tx.try_send(Ok(f));
    }
    let reader_task = tokio::spawn(async move {
        loop {
            let next = reader.next().await.transpose();
            let Some(next) = next else { break };
            let failed = next.is_err();
            if frames_tx.send(next).await.is_err() || failed {
                break;
            }
        }
    });

    let session = runtime
        .exec(&container_id, &q.command, q.tty, q.stdin)
        .await;
    let ExecSession {
        stdin: mut stdin_tx,
        mut output,
        exit_code,
        resize,
    } = match session {
        Ok(s) => s,
        Err(e) => {
            let status = exit_status(&q.command, Err(e.to_string()));
            writer
                .data(error_stream, status.to_string().as_bytes(), true)
                .await?;
            reader_task.abort();
            return writer.shutdown().await;
        }
    };
    let mut resize_buf: Vec<u8> = Vec::new();
    let mut failure: Option<String> = None;
    loop {
        tokio::select! {
            item = output.next() => match item {
                Some(Ok((channel, data))) => {
                    let stream = if q.tty || channel == CH_STDOUT { streams.stdout } else { streams.stderr };
                    if let Some(stream) = stream {
                        writer.data(stream, &data, false).await?;
                    }
                }
                Some(Err(e)) => {
                    failure = Some(e.to_string());
                    break;
                }
                None => break,
            },
            frame = frames.recv() => match frame {
                Some(Ok(Frame::Data { id, fin, data })) => {
                    if Some(id) == streams.stdin {
                        if let Some(stdin) = &stdin_tx
                            && !data.is_empty()
                        {
                            let _ = stdin.send(data).await;
                        }
                        if fin {
                            stdin_tx = None;
                        }
                    } else if Some(id) == streams.resize {
                        // client-go writes one JSON object per line: {"Width":W,"Height":H}.
                        resize_buf.extend_from_slice(&data);
                        while let Some(end) = resize_buf.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = resize_buf.drain(..=end).collect();
                            if let (Some(resize), Some(size)) = (&resize, terminal_size(&line)) {
                                let _ = resize.try_send(size);
                            }
                        }
                    }
                }
                Some(Ok(Frame::Ping(n))) => writer.ping(n).await?,
                Some(Ok(Frame::RstStream { id })) if Some(id) != streams.stdin => {
                    // The caller went away: nobody reads the output any more.
                    return Ok(());
                }
                Some(Ok(Frame::RstStream { .. })) => stdin_tx = None,
                Some(Ok(Frame::GoAway)) | Some(Err(_)) | None => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    drop(stdin_tx);
    let result = outcome(failure, exit_code).await;
    let status = exit_status(&q.command, result);
    writer
        .data(error_stream, status.to_string().as_bytes(), true)
        .await?;
    for stream in [streams.stdout, streams.stderr].into_iter().flatten() {
        writer.data(stream, &[], true).await?;
    }
    // The client closes the connection once it has read everything; answer its pings until
    // then, and give up after a while.
    let linger = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(linger);
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(Frame::Ping(n))) => writer.ping(n).await?,
                Some(Ok(Frame::GoAway)) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = &mut linger => break,
        }
    }
    reader_task.abort();
    let _ = writer.goaway(0).await;
    writer.shutdown().await
}

/// A close with status 1000: client-go reads anything else (even no status) as an error on
/// the streams it was still reading.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// The status the error channel carries when the command ends, as Kubernetes writes it.
/// (columns, rows) from a resize message.
fn terminal_size(json: &[u8]) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let dim = |k: &str| v.get(k)?.as_u64().and_then(|n| u16::try_from(n).ok());
    Some((dim("Width")?, dim("Height")?))
}

/// How an exec ended: its output failed, or its exit code.
async fn outcome(
    failure: Option<String>,
    exit_code: tokio::sync::oneshot::Receiver<i64>,
) -> Result<i64, String> {
    match failure {
        Some(f) => Err(f),
        None => exit_code
            .await
            .map_err(|_| "the command's exit code was lost".to_string()),
    }
}

fn exit_status(command: &[String], result: Result<i64, String>) -> Value {
    match result {
        Ok(0) => json!({ "metadata": {}, "status": "Success" }),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
            "reason": "NonZeroExitCode",
            "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] },
        }),
        Err(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
        }),
    }
}

/// Pumps one exec session: client stdin (channel 0) to the process, its stdout and stderr
/// to channels 1 and 2, then the exit status on channel 3 and a close.
async fn exec_session(
    socket: WebSocket,
    session: skiff_runtime::Result<ExecSession>,
    command: &[String],
    tty: bool,
    v5: bool,
) {
    let (mut tx, mut rx) = socket.split();
    let ExecSession {
        stdin: mut stdin_tx,
        mut output,
        exit_code,
        resize,
    } = match session {
        Ok(s) => s,
        Err(e) => {
            let status = exit_status(command, Err(e.to_string()));
            let _ = tx
                .send(frame(CH_ERROR, status.to_string().as_bytes()))
                .await;
            let _ = tx.send(normal_close()).await;
            return;
        }
    };
    let mut failure: Option<String> = None;
    loop {
        tokio::select! {
            item = output.next() => match item {
                Some(Ok((channel, data))) => {
                    // With a TTY there is one stream; the runtime reports it as stdout.
                    let channel = if tty { CH_STDOUT } else { channel };
                    if tx.send(frame(channel, &data)).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    failure = Some(e.to_string());
                    break;
                }
                None => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    CH_STDIN => {
                        if let Some(stdin) = &stdin_tx {
                            let _ = stdin.send(b.slice(1..)).await;
                        }
                    }
                    CH_CLOSE if v5 && b.get(1) == Some(&CH_STDIN) => stdin_tx = None,
                    // A terminal size: {"Width":W,"Height":H}, as kubectl sends it.
                    CH_RESIZE => {
                        if let (Some(resize), Some(size)) = (&resize, terminal_size(&b[1..])) {
                            let _ = resize.try_send(size);
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    // The caller went away: nobody reads the output any more.
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    drop(stdin_tx);
    let result = outcome(failure, exit_code).await;
    let status = exit_status(command, result);
    let _ = tx
        .send(frame(CH_ERROR, status.to_string().as_bytes()))
        .await;
    let _ = tx.send(normal_close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_query_keeps_every_command_word() {
        let q = parse_exec_query(Some(
            "command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&tty=false&container=c",
        ));
        assert_eq!(q.command, ["sh", "-c", "echo hi"]);
        assert!(q.stdin);
        assert!(!q.tty);
    }

    #[test]
    fn resize_messages_give_columns_and_rows() {
        assert_eq!(
            terminal_size(br#"{"Width":100,"Height":40}"#),
            Some((100, 40))
        );
        assert_eq!(terminal_size(br#"{"Width":100}"#), None);
        assert_eq!(terminal_size(b"junk"), None);
    }

    #[test]
    fn exit_status_carries_the_code_as_kubectl_reads_it() {
        let s = exit_status(&["false".into()], Ok(1));
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "1");
        assert_eq!(exit_status(&[], Ok(0))["status"], "Success");
    }
}
