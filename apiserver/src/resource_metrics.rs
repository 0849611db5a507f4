//! The resource metrics API, `metrics.k8s.io/v1beta1`, served as metrics-server serves it:
//! every `--metric-resolution` the apiserver scrapes the `/stats/summary` of each Ready node's
//! kubelet and keeps the last two samples of every node and container in memory. CPU usage is
//! the rate between the two samples, memory the latest working set. `kubectl top` and the
//! HorizontalPodAutoscaler read it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::response::Response;
use http::Method;
use serde_json::{Map, Value, json};
use skiff_api::{Quantity, quantity, resources};
use skiff_common::time::rfc3339;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::render::respond;
use crate::request::{Format, Params};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// One sample of a cumulative CPU counter and a memory gauge.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    at: Instant,
    wall: jiff::Timestamp,
    cpu_nanos: u64,
    memory_bytes: u64,
}

/// The last two samples of one node or container.
#[derive(Clone, Copy, Debug)]
struct Series {
    prev: Option<Point>,
    last: Point,
}

/// Usage over the window between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub nano_cores: u64,
    pub memory_bytes: u64,
    pub window: Duration,
    pub timestamp: jiff::Timestamp,
}

impl Series {
    fn next(old: Option<&Series>, p: Point) -> Series {
        // A counter that went backwards is a restarted container: start over.
        let prev = old
            .map(|s| s.last)
            .filter(|l| l.cpu_nanos <= p.cpu_nanos && l.at < p.at);
        Series { prev, last: p }
    }

    fn usage(&self) -> Option<Usage> {
        let prev = self.prev?;
        let window = self.last.at.duration_since(prev.at);
        if window.is_zero() {
            return None;
        }
        let used = (self.last.cpu_nanos - prev.cpu_nanos) as f64;
        Some(Usage {
            nano_cores: (used / window.as_secs_f64()) as u64,
            memory_bytes: self.last.memory_bytes,
            window,
            timestamp: self.last.wall,
        })
    }
}

#[derive(Default)]
struct NodeSamples {
    node: Option<Series>,
    /// (namespace, pod) → container → samples.
    pods: HashMap<(String, String), BTreeMap<String, Series>>,
}

/// The samples of every scraped node, in memory only (as metrics-server keeps them).
#[derive(Default)]
pub struct MetricsStore {
    nodes: RwLock<HashMap<String, NodeSamples>>,
}

fn point(v: &Value, at: Instant, wall: jiff::Timestamp) -> Option<Point> {
    Some(Point {
        at,
        wall,
        cpu_nanos: v.pointer("/cpu/usageCoreNanoSeconds")?.as_u64()?,
        memory_bytes: v
            .pointer("/memory/workingSetBytes")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

impl MetricsStore {
    /// Records one `/stats/summary` of `node`, taken at `at`.
    pub fn record(&self, node: &str, summary: &Value, at: Instant, wall: jiff::Timestamp) {
        let mut nodes = self.nodes.write().expect("metrics lock");
        let old = nodes.remove(node).unwrap_or_default();
        let mut new = NodeSamples {
            node: summary
                .get("node")
                .and_then(|n| point(n, at, wall))
                .map(|p| Series::next(old.node.as_ref(), p)),
            pods: HashMap::new(),
        };
        for pod in summary
            .get("pods")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(ns), Some(name)) = (
                pod.pointer("/podRef/namespace").and_then(Value::as_str),
                pod.pointer("/podRef/name").and_then(Value::as_str),
            ) else {
                continue;
            };
            let key = (ns.to_string(), name.to_string());
            let before = old.pods.get(&key);
            let mut containers = BTreeMap::new();
            for c in pod
                .get("containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(cname), Some(p)) =
                    (c.get("name").and_then(Value::as_str), point(c, at, wall))
                else {
                    continue;
                };
                let prev = before.and_then(|b| b.get(cname));
                containers.insert(cname.to_string(), Series::next(prev, p));
            }
            new.pods.insert(key, containers);
        }
        nodes.insert(node.to_string(), new);
    }

    /// Keeps only the nodes named in `keep` whose last sample is newer than `stale` before
    /// `now`. (A failed scrape keeps the samples, so one slow answer does not blank a node,
    /// but they do not outlive a kubelet that stays silent.)
    pub fn retain(&self, keep: &HashSet<String>, now: Instant, stale: Duration) {
        self.nodes
            .write()
            .expect("metrics lock")
            .retain(|n, samples| {
                keep.contains(n)
                    && samples
                        .node
                        .is_some_and(|s| now.saturating_duration_since(s.last.at) < stale)
            });
    }

    pub fn node(&self, name: &str) -> Option<Usage> {
        self.nodes
            .read()
            .expect("metrics lock")
            .get(name)?
            .node?
            .usage()
    }

    /// Per container usage of a pod, once every container has two samples. When a pod name
    /// shows on two nodes (deleted and recreated elsewhere), the newest samples win.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Vec<(String, Usage)>> {
        let nodes = self.nodes.read().expect("metrics lock");
        let key = (namespace.to_string(), name.to_string());
        nodes
            .values()
            .filter_map(|n| n.pods.get(&key))
            .filter(|cs| !cs.is_empty())
            .max_by_key(|cs| cs.values().map(|s| s.last.at).max())
            .and_then(|cs| {
                cs.iter()
                    .map(|(c, s)| s.usage().map(|u| (c.clone(), u)))
                    .collect()
            })
    }
}

/// Scrapes every Ready node's kubelet every `every` until `shutdown`.
pub async fn scrape_loop(app: Arc<App>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        scrape_all(&app, every).await;
    }
}

/// Whether a Node is one to scrape: Ready, and registered by a kubelet that serves (it names
/// its port). Node objects made by hand are never contacted.
fn scrapable(node: &Value) -> bool {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .is_some_and(|p| p > 0);
    ready && port
}

fn cached() -> Params {
    Params(
        HashMap::from([("resourceVersion".into(), "0".into())]),
        None,
    )
}

fn nodes_info() -> &'static skiff_api::ResourceInfo {
    resources::find("", "v1", "nodes").expect("nodes are served")
}

fn pods_info() -> &'static skiff_api::ResourceInfo {
    resources::find("", "v1", "pods").expect("pods are served")
}

async fn scrape_all(app: &Arc<App>, every: Duration) {
    // As metrics-server's default: a kubelet gets at least 10 s to answer.
    let timeout = every.max(Duration::from_secs(10));
    let nodes = match app.registry.list(nodes_info(), None, &cached()).await {
        Ok(page) => page.items,
        Err(e) => {
            tracing::warn!(error = %e, "listing nodes to scrape");
            return;
        }
    };
    let targets: Vec<(String, String)> = nodes
        .iter()
        .filter(|n| scrapable(n))
        .filter_map(|n| {
            let name = n.pointer("/metadata/name")?.as_str()?.to_string();
            Some((name, crate::proxy::kubelet_base(n)?))
        })
        .collect();
    let keep: HashSet<String> = targets.iter().map(|(n, _)| n.clone()).collect();
    futures::future::join_all(
        targets
            .iter()
            .map(|(name, base)| scrape_one(app, name, base, timeout)),
    )
    .await;
    app.resource_metrics
        .retain(&keep, Instant::now(), 3 * every + timeout);
}

async fn scrape_one(app: &App, node: &str, base: &str, timeout: Duration) {
    let fetched = async {
        let resp = app
            .kubelet
            .http
            .get(format!("{base}/stats/summary"))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let body = crate::proxy::read_bounded(resp, crate::proxy::MAX_BUFFERED_BODY, false)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
    };
    match fetched.await {
        Ok(summary) => {
            app.resource_metrics
                .record(node, &summary, Instant::now(), jiff::Timestamp::now());
        }
        Err(e) => {
            tracing::warn!(%node, error = %e, "scraping the kubelet's /stats/summary failed");
        }
    }
}

/// A window as Go prints a duration: `15s`, `15.004s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{}s", s.trim_end_matches('0'))
    }
}

fn usage_json(u: &Usage) -> Value {
    // As the metrics server writes them: CPU in decimal nano-cores, memory in binary bytes.
    let cpu = Quantity::from_nanos(u.nano_cores.into(), quantity::Format::DecimalSI);
    let memory = Quantity::from_value(
        i64::try_from(u.memory_bytes).unwrap_or(i64::MAX),
        quantity::Format::BinarySI,
    );
    json!({ "cpu": cpu.to_string(), "memory": memory.to_string() })
}

fn metadata(obj: &Value, now: &str) -> Value {
    let mut m = Map::new();
    for f in ["name", "namespace", "labels"] {
        if let Some(v) = obj.pointer(&format!("/metadata/{f}")) {
            m.insert(f.into(), v.clone());
        }
    }
    m.insert("creationTimestamp".into(), json!(now));
    Value::Object(m)
}

fn node_metrics(store: &MetricsStore, node: &Value, now: &str) -> Option<Value> {
    let name = node.pointer("/metadata/name")?.as_str()?;
    let u = store.node(name)?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(node, now),
        "timestamp": rfc3339(u.timestamp),
        "window": go_duration(u.window),
        "usage": usage_json(&u),
    }))
}

fn pod_metrics(store: &MetricsStore, pod: &Value, now: &str) -> Option<Value> {
    let ns = pod.pointer("/metadata/namespace")?.as_str()?;
    let name = pod.pointer("/metadata/name")?.as_str()?;
    let containers = store.pod(ns, name)?;
    let timestamp = containers.iter().map(|(_, u)| u.timestamp).max()?;
    let window = containers.iter().map(|(_, u)| u.window).max()?;
    // Containers in the order the pod lists them.
    let order: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mut sorted: Vec<&(String, Usage)> = containers.iter().collect();
    sorted.sort_by_key(|(c, _)| order.iter().position(|o| o == c).unwrap_or(usize::MAX));
    let containers: Vec<Value> = sorted
        .into_iter()
        .map(|(c, u)| json!({ "name": c, "usage": usage_json(u) }))
        .collect();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(pod, now),
        "timestamp": rfc3339(timestamp),
        "window": go_duration(window),
        "containers": containers,
    }))
}

/// Discovery: the APIGroup document.
pub fn group_doc() -> Value {
    let gv = json!({ "groupVersion": API_VERSION, "version": VERSION });
    json!({ "name": GROUP, "versions": [gv.clone()], "preferredVersion": gv })
}

/// Discovery: the APIResourceList of `metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [
            { "name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"] },
            { "name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"] },
        ],
    })
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("{resource}.{GROUP} \"{name}\" not found"),
    )
}

/// Serves `/apis/metrics.k8s.io...`; `rest` is the path after the group.
pub async fn serve(
    app: &Arc<App>,
    method: &Method,
    rest: &str,
    params: &Params,
    format: Format,
) -> ApiResult<Response> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let ok = |v: &Value| Ok(respond(200, v, format, &[]));
    let now = skiff_common::time::now();
    // Objects are listed from the apiserver's cache, with the caller's selectors.
    let mut list_params = cached();
    for k in ["labelSelector", "fieldSelector"] {
        if let Some(v) = params.get(k) {
            list_params.0.insert(k.into(), v.into());
        }
    }
    let store = &app.resource_metrics;
    match segs.as_slice() {
        [""] => {
            let mut doc = group_doc();
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            ok(&doc)
        }
        [VERSION] => ok(&resource_list()),
        [VERSION, "nodes"] => {
            let nodes = app
                .registry
                .list(nodes_info(), None, &list_params)
                .await?
                .items;
            let items: Vec<Value> = nodes
                .iter()
                .filter_map(|n| node_metrics(store, n, &now))
                .collect();
            ok(
                &json!({ "kind": "NodeMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items }),
            )
        }
        [VERSION, "nodes", name] => {
            let node = app
                .registry
                .get(nodes_info(), None, name, &cached())
                .await
                .map_err(|_| not_found("nodemetrics", name))?;
            let m =
                node_metrics(store, &node, &now).ok_or_else(|| not_found("nodemetrics", name))?;
            ok(&m)
        }
        [VERSION, "pods"] | [VERSION, "namespaces", _, "pods"] => {
            let ns = match segs.as_slice() {
                [_, _, ns, _] => Some(*ns),
                _ => None,
            };
            let pods = app
                .registry
                .list(pods_info(), ns, &list_params)
                .await?
                .items;
            let items: Vec<Value> = pods
                .iter()
                .filter_map(|p| pod_metrics(store, p, &now))
                .collect();
            ok(
                &json!({ "kind": "PodMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items }),
            )
        }
        [VERSION, "namespaces", ns, "pods", name] => {
            let missing = || not_found("podmetrics", &format!("{ns}/{name}"));
            let pod = app
                .registry
                .get(pods_info(), Some(ns), name, &cached())
                .await
                .map_err(|_| missing())?;
            ok(&pod_metrics(store, &pod, &now).ok_or_else(missing)?)
        }
        _ => Err(ApiError::path_not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (container, cumulative CPU nanoseconds, working set bytes)
    type Container<'a> = (&'a str, u64, u64);

    fn summary(node_cpu: u64, pods: &[(&str, &[Container])]) -> Value {
        let pods: Vec<Value> = pods
            .iter()
            .map(|(name, cs)| {
                let cs: Vec<Value> = cs
                    .iter()
                    .map(|(c, cpu, mem)| json!({"name": c, "cpu": {"usageCoreNanoSeconds": cpu}, "memory": {"workingSetBytes": mem}}))
                    .collect();
                json!({"podRef": {"namespace": "default", "name": name}, "containers": cs})
            })
            .collect();
        json!({
            "node": {"cpu": {"usageCoreNanoSeconds": node_cpu}, "memory": {"workingSetBytes": 4096}},
            "pods": pods,
        })
    }

    #[test]
    fn cpu_is_the_rate_between_two_scrapes() {
        let store = MetricsStore::default();
        let t0 = Instant::now();
        let wall = jiff::Timestamp::now();
        store.record(
            "n1",
            &summary(1_000_000_000, &[("web", &[("app", 0, 100)])]),
            t0,
            wall,
        );
        // One sample is not enough for a rate.
        assert_eq!(store.node("n1"), None);
        assert_eq!(store.pod("default", "web"), None);
        let t1 = t0 + Duration::from_secs(10);
        store.record(
            "n1",
            &summary(21_000_000_000, &[("web", &[("app", 2_500_000_000, 2048)])]),
            t1,
            wall,
        );
        let node = store.node("n1").unwrap();
        assert_eq!(node.nano_cores, 2_000_000_000);
        assert_eq!(node.window, Duration::from_secs(10));
        let pod = store.pod("default", "web").unwrap();
        assert_eq!(pod.len(), 1);
        assert_eq!(pod[0].0, "app");
        assert_eq!(pod[0].1.nano_cores, 250_000_000);
        assert_eq!(pod[0].1.memory_bytes, 2048);
    }

    #[test]
    fn a_restarted_container_or_a_new_one_waits_for_a_second_sample() {
        let store = MetricsStore::default();
        let t0 = Instant::now();
        let wall = jiff::Timestamp::now();
        store.record(
            "n1",
            &summary(0, &[("web", &[("app", 5_000, 1)])]),
            t0,
            wall,
        );
        let t1 = t0 + Duration::from_secs(15);
        // The counter went backwards (restart) and a sidecar appeared.
        store.record(
            "n1",
            &summary(0, &[("web", &[("app", 10, 1), ("side", 0, 1)])]),
            t1,
            wall,
        );
        assert_eq!(store.pod("default", "web"), None);
        let t2 = t1 + Duration::from_secs(15);
        store.record(
            "n1",
            &summary(0, &[("web", &[("app", 15_000_000_010, 1), ("side", 0, 1)])]),
            t2,
            wall,
        );
        let pod = store.pod("default", "web").unwrap();
        assert_eq!(pod[0].1.nano_cores, 1_000_000_000);
        // A pod gone from the summary is gone from the metrics.
        store.record("n1", &summary(0, &[]), t2 + Duration::from_secs(15), wall);
        assert_eq!(store.pod("default", "web"), None);
        assert!(store.node("n1").is_some());
        // Samples older than the staleness bound go, and so do nodes no longer scraped.
        let later = t2 + Duration::from_secs(15);
        store.retain(
            &HashSet::from(["n1".to_string()]),
            later + Duration::from_secs(10),
            Duration::from_secs(60),
        );
        assert!(store.node("n1").is_some());
        store.retain(
            &HashSet::from(["n1".to_string()]),
            later + Duration::from_secs(61),
            Duration::from_secs(60),
        );
        assert_eq!(store.node("n1"), None);
        store.record("n1", &summary(0, &[]), later, wall);
        let last = later + Duration::from_secs(15);
        store.record("n1", &summary(0, &[]), last, wall);
        assert!(store.node("n1").is_some());
        store.retain(&HashSet::new(), last, Duration::from_secs(60));
        assert_eq!(store.node("n1"), None);
    }

    #[test]
    fn only_ready_kubelet_registered_nodes_are_scraped() {
        let node = |ready: &str, port: Option<u64>| {
            let mut n = json!({"status": {"conditions": [{"type": "Ready", "status": ready}]}});
            if let Some(p) = port {
                n["status"]["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": p}});
            }
            n
        };
        assert!(scrapable(&node("True", Some(10250))));
        assert!(!scrapable(&node("True", None)));
        assert!(!scrapable(&node("True", Some(0))));
        assert!(!scrapable(&node("Unknown", Some(10250))));
    }

    #[test]
    fn quantities_as_kubernetes_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_millis(15_040)), "15.04s");
        let usage = usage_json(&Usage {
            nano_cores: 200_345_109,
            memory_bytes: 1000,
            window: Duration::from_secs(15),
            timestamp: jiff::Timestamp::UNIX_EPOCH,
        });
        assert_eq!(usage, json!({ "cpu": "200345109n", "memory": "1k" }));
    }
}
