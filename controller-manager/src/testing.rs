//! A fake apiserver for controller tests: an in-memory object store behind a kube
//! [`Client`], serving list, watch (with replay from a resourceVersion), get, create,
//! replace, apply-patch and delete for any resource path, `generateName`, the `status`
//! subresource (a PUT there replaces only the status), and `metadata.name` field selectors. Controllers run against it unchanged: real informers, real work queues.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use kube::Client;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Settings};
use crate::metrics::Metrics;

/// Where an object lives: (resource plural, namespace or "", name).
type Key = (String, String, String);

/// A path's resource, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    Some(match rest {
        ["namespaces", ns, plural, more @ ..] => Target {
            plural: plural.to_string(),
            namespace: Some(ns.to_string()),
            name: more.first().map(|s| s.to_string()),
        },
        [plural, more @ ..] => Target {
            plural: plural.to_string(),
            namespace: None,
            name: more.first().map(|s| s.to_string()),
        },
        [] => return None,
    })
}

struct Watch {
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    tx: futures::channel::mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>,
}

impl Watch {
    fn wants(&self, key: &Key) -> bool {
        self.plural == key.0
            && self.namespace.as_ref().is_none_or(|n| *n == key.1)
            && self.name.as_ref().is_none_or(|n| *n == key.2)
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    revision: u64,
    /// Every change: (revision, key, type, object), for watches that start in the past.
    log: Vec<(u64, Key, &'static str, Value)>,
    watches: Vec<Watch>,
}

impl State {
    fn record(&mut self, key: Key, kind: &'static str, object: Value) {
        self.log
            .push((self.revision, key.clone(), kind, object.clone()));
        let line = json!({ "type": kind, "object": object }).to_string() + "\n";
        self.watches.retain(|w| {
            !w.wants(&key)
                || w.tx
                    .unbounded_send(Ok(Frame::data(Bytes::from(line.clone()))))
                    .is_ok()
        });
    }
}

/// The fake apiserver (cheap to clone: one shared store).
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

type Body = BoxBody<Bytes, Infallible>;

fn reply(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("a response")
}

fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    reply(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "code": code.as_u16(), "reason": reason, "message": message}),
    )
}

fn query(req: &Request<kube::client::Body>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3D", "=").replace("%3d", "=")))
        .collect()
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// A kube client that talks to this fake.
    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.serve(req).await) }.boxed()
        });
        Client::new(service, "default")
    }

    /// A controller context on this fake, with `settings`.
    pub fn context(&self, settings: Settings, stop: &CancellationToken) -> Arc<Context> {
        Arc::new(Context::new(
            self.client(),
            "test".into(),
            settings,
            stop.clone(),
        ))
    }

    /// Starts the named controllers on `ctx`, then its informers; returns once they listed.
    pub async fn start(&self, ctx: &Arc<Context>, names: &[&str], stop: &CancellationToken) {
        let metrics = Metrics::new();
        for entry in crate::controllers::ALL
            .iter()
            .filter(|e| names.contains(&e.name))
        {
            tokio::spawn(entry.start(ctx, &metrics, 1, stop.clone()));
        }
        ctx.start_informers().await;
    }

    fn serve(&self, req: Request<kube::client::Body>) -> BoxFuture<'static, Response<Body>> {
        let api = self.clone();
        async move {
            let Some(target) = parse_path(req.uri().path()) else {
                return status(StatusCode::NOT_FOUND, "NotFound", "no such path".into());
            };
            let status_only = target
                .name
                .as_ref()
                .is_some_and(|n| req.uri().path().ends_with(&format!("/{n}/status")));
            let q = query(&req);
            let method = req.method().clone();
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::new(),
            };
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let name_field = q
                .get("fieldSelector")
                .and_then(|f| f.strip_prefix("metadata.name="))
                .map(str::to_string);
            match (method, target.name.clone()) {
                (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                    let since = q
                        .get("resourceVersion")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    api.watch(target, name_field, since)
                }
                (Method::GET, None) => api.list(&target, name_field.as_deref()),
                (Method::GET, Some(name)) => {
                    match api.get(&target.plural, target.namespace.as_deref(), &name) {
                        Some(o) => reply(StatusCode::OK, o),
                        None => status(
                            StatusCode::NOT_FOUND,
                            "NotFound",
                            format!("{} {name:?} not found", target.plural),
                        ),
                    }
                }
                (Method::POST, None) => api.write(&target, body, Write::Create),
                (Method::PUT, Some(_)) if status_only => {
                    let mut object = target
                        .name
                        .as_deref()
                        .and_then(|n| api.get(&target.plural, target.namespace.as_deref(), n))
                        .unwrap_or_default();
                    if object.is_null() {
                        return status(StatusCode::NOT_FOUND, "NotFound", "not found".into());
                    }
                    object["status"] = body["status"].clone();
                    api.write(&target, object, Write::Replace)
                }
                (Method::PUT, Some(_)) => api.write(&target, body, Write::Replace),
                (Method::PATCH, Some(_)) => api.write(&target, body, Write::Apply),
                (Method::DELETE, Some(name)) => {
                    match api.delete(&target.plural, target.namespace.as_deref(), &name) {
                        Some(o) => reply(StatusCode::OK, o),
                        None => status(
                            StatusCode::NOT_FOUND,
                            "NotFound",
                            format!("{name:?} not found"),
                        ),
                    }
                }
                _ => status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "unsupported".into(),
                ),
            }
        }
        .boxed()
    }

    fn list(&self, target: &Target, name: Option<&str>) -> Response<Body> {
        let state = self.state.lock().unwrap();
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|(k, _)| {
                k.0 == target.plural
                    && target.namespace.as_ref().is_none_or(|n| *n == k.1)
                    && name.is_none_or(|n| n == k.2)
            })
            .map(|(_, v)| v.clone())
            .collect();
        reply(
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "List",
                   "metadata": {"resourceVersion": state.revision.to_string()}, "items": items}),
        )
    }

    fn watch(&self, target: Target, name: Option<String>, since: u64) -> Response<Body> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let w = Watch {
            plural: target.plural,
            namespace: target.namespace,
            name,
            tx,
        };
        let mut state = self.state.lock().unwrap();
        for (rev, key, kind, object) in &state.log {
            if *rev > since && w.wants(key) {
                let line = json!({ "type": kind, "object": object }).to_string() + "\n";
                let _ = w.tx.unbounded_send(Ok(Frame::data(Bytes::from(line))));
            }
        }
        state.watches.push(w);
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(StreamBody::new(rx).boxed())
            .expect("a response")
    }

    fn write(&self, target: &Target, mut body: Value, how: Write) -> Response<Body> {
        let name = target
            .name
            .clone()
            .or_else(|| {
                body.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_default();
        let name = match body
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
        {
            Some(prefix) if name.is_empty() => {
                let name = format!("{prefix}{:05}", rand::random::<u16>());
                body["metadata"]["name"] = json!(name);
                name
            }
            _ => name,
        };
        let key: Key = (
            target.plural.clone(),
            target.namespace.clone().unwrap_or_default(),
            name.clone(),
        );
        let mut state = self.state.lock().unwrap();
        let existing = state.objects.get(&key).cloned();
        let (object, kind) = match (how, existing) {
            (Write::Create, Some(_)) => {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{name:?} already exists"),
                );
            }
            (Write::Create, None) => {
                if let Some(ns) = &target.namespace {
                    body["metadata"]["namespace"] = json!(ns);
                }
                body["metadata"]["uid"] = json!(format!("uid-{}", state.revision + 1));
                (body, "ADDED")
            }
            (Write::Replace | Write::Apply, None) => {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{name:?} not found"),
                );
            }
            (Write::Replace, Some(old)) => {
                body["metadata"]["uid"] = old["metadata"]["uid"].clone();
                (body, "MODIFIED")
            }
            (Write::Apply, Some(mut old)) => {
                // Enough of server-side apply for the tests: the applied fields replace
                // the object's.
                for (k, v) in body.as_object().into_iter().flatten() {
                    if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        old[k] = v.clone();
                    }
                }
                (old, "MODIFIED")
            }
        };
        let mut object = object;
        state.revision += 1;
        object["metadata"]["resourceVersion"] = json!(state.revision.to_string());
        state.objects.insert(key.clone(), object.clone());
        state.record(key, kind, object.clone());
        reply(
            if kind == "ADDED" {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            object,
        )
    }

    /// Creates `object` (as a client's POST would).
    pub fn create(&self, plural: &str, namespace: Option<&str>, object: Value) {
        let target = Target {
            plural: plural.into(),
            namespace: namespace.map(String::from),
            name: None,
        };
        let r = self.write(&target, object, Write::Create);
        assert!(
            r.status().is_success(),
            "creating a {plural}: {}",
            r.status()
        );
    }

    /// Replaces the object (as a client's PUT would).
    pub fn replace(&self, plural: &str, namespace: Option<&str>, object: Value) {
        let target = Target {
            plural: plural.into(),
            namespace: namespace.map(String::from),
            name: object["metadata"]["name"].as_str().map(String::from),
        };
        let r = self.write(&target, object, Write::Replace);
        assert!(
            r.status().is_success(),
            "replacing a {plural}: {}",
            r.status()
        );
    }

    pub fn get(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = (
            plural.into(),
            namespace.unwrap_or_default().into(),
            name.into(),
        );
        self.state.lock().unwrap().objects.get(&key).cloned()
    }

    pub fn delete(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key: Key = (
            plural.into(),
            namespace.unwrap_or_default().into(),
            name.into(),
        );
        let mut state = self.state.lock().unwrap();
        let object = state.objects.remove(&key)?;
        state.revision += 1;
        state.record(key, "DELETED", object.clone());
        Some(object)
    }

    /// Waits (up to 10 s) until `check` holds for the object, then returns it.
    pub async fn wait_for(
        &self,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(o) = self.get(plural, namespace, name).filter(|o| check(o)) {
                return o;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{plural} {namespace:?}/{name}: {what}; it is {:#}",
                self.get(plural, namespace, name).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The changes made to `plural` objects so far (type and `namespace/name`).
    pub fn changes(&self, plural: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .log
            .iter()
            .filter(|(_, k, _, _)| k.0 == plural)
            .map(|(_, k, t, _)| format!("{t} {}/{}", k.1, k.2))
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Write {
    Create,
    Replace,
    Apply,
}

/// A Namespace object, Active unless `terminating`.
pub fn namespace(name: &str, terminating: bool) -> Value {
    if terminating {
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "deletionTimestamp": "2025-01-01T00:00:00Z"},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating"}})
    } else {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
               "status": {"phase": "Active"}})
    }
}

#[test]
fn paths() {
    let t = |p: &str| parse_path(p).unwrap();
    assert_eq!(
        t("/api/v1/namespaces/a/configmaps/x"),
        Target {
            plural: "configmaps".into(),
            namespace: Some("a".into()),
            name: Some("x".into())
        }
    );
    assert_eq!(t("/api/v1/namespaces/a").plural, "namespaces");
    assert_eq!(t("/api/v1/namespaces/a").name.as_deref(), Some("a"));
    assert_eq!(
        t("/apis/rbac.authorization.k8s.io/v1/clusterroles").namespace,
        None
    );
}
