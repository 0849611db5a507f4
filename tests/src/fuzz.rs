//! A bounded, deterministic HTTP fuzzer for the apiserver, shared by the e2e test
//! (`tests/tests/fuzz.rs`, a small run) and `skiff-bench fuzz` (a large one).
//!
//! It reads discovery, sets up a namespace `fuzz` the fuzzer's identity may write and a
//! namespace `guarded` it may only read (holding objects made by the admin), then sends mutated
//! requests for every served resource and verb: JSON, YAML and protobuf bodies, odd headers and
//! paths, lying framing, anonymous and impersonating callers. A run [`Report`]s every answer
//! of 500 or more and every request left unanswered; [`Fuzzer::guarded_changes`] says what
//! changed in `guarded`.

mod generate;
mod protobuf;
mod templates;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use generate::{Framing, Identity, Request, Resource, generate};

use crate::wait::wait_until;

/// The fuzzer's user name, as the token file names it.
pub const FUZZER_USER: &str = "fuzzer";

/// The fuzzer's bearer token.
pub const FUZZER_TOKEN: &str = "fuzzer-0123456789abcdef";

/// The namespace the fuzzer may write in.
pub const FUZZ_NAMESPACE: &str = "fuzz";

/// The namespace the fuzzer may read but not write; nothing in it may change.
pub const GUARDED_NAMESPACE: &str = "guarded";

/// At most this many failures are described in full in a [`Report`].
const DESCRIBED: usize = 8;

/// The line of a `--token-auth-file` that makes [`FUZZER_TOKEN`] authenticate as
/// [`FUZZER_USER`].
pub fn token_file_line() -> String {
    format!("{FUZZER_TOKEN},{FUZZER_USER},fuzzer-uid,\"fuzzers\"\n")
}

/// Where the apiserver under test listens and how to reach it as the admin.
pub struct Target {
    pub addr: SocketAddr,
    pub ca_pem: String,
    /// The admin's client certificate followed by its key.
    pub admin_pem: String,
}

impl Target {
    /// From the apiserver's PKI directory (`<data-dir>/pki`: `ca.crt`, `admin.crt`,
    /// `admin.key`).
    pub fn from_pki_dir(addr: SocketAddr, pki: &Path) -> Target {
        let read = |f: &str| {
            std::fs::read_to_string(pki.join(f))
                .unwrap_or_else(|e| panic!("read {}: {e}", pki.join(f).display()))
        };
        Target {
            addr,
            ca_pem: read("ca.crt"),
            admin_pem: format!("{}\n{}", read("admin.crt"), read("admin.key")),
        }
    }
}

/// How much to fuzz.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub seed: u64,
    pub requests: usize,
    /// Concurrent connections.
    pub workers: usize,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: usize,
    /// How many responses had each status code.
    pub statuses: BTreeMap<u16, usize>,
    /// Requests the server rightly left unanswered (their framing promised more body).
    pub unanswered_allowed: usize,
    /// Requests whose connection the server closed while their body was still being sent
    /// (see [`wire::NoResponse::ClosedDuringBody`]).
    pub closed_during_body: usize,
    /// Answers of 500 or more that kube-apiserver gives to the same request (and Skiff
    /// matches on purpose); not failures.
    pub kubernetes_5xx: usize,
    /// Requests answered with 500 or more, or left unanswered without cause.
    pub failures: usize,
    /// The first few failures: the request (reproducible from its seed and index) and what
    /// came back.
    pub described: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    /// Counts one request's outcome and judges it.
    fn record(
        &mut self,
        request: &Request,
        outcome: Result<wire::Response, wire::NoResponse>,
        seed: u64,
    ) {
        self.sent += 1;
        let failure = match outcome {
            Ok(response) => {
                *self.statuses.entry(response.status).or_default() += 1;
                let body = response.body_text();
                let kubernetes_too = kubernetes_answers_so(request, response.status, &body);
                if kubernetes_too {
                    self.kubernetes_5xx += 1;
                }
                (response.status >= 500 && !kubernetes_too)
                    .then(|| format!("HTTP {}: {}", response.status, shorten(&body, 600)))
            }
            Err(_) if request.may_go_unanswered() => {
                self.unanswered_allowed += 1;
                None
            }
            Err(wire::NoResponse::ClosedDuringBody(_)) => {
                self.closed_during_body += 1;
                None
            }
            Err(e) => Some(format!("no response: {e}")),
        };
        if let Some(what) = failure {
            self.failures += 1;
            if self.described.len() < DESCRIBED {
                self.described
                    .push(format!("{}  => {what}", request.describe(seed)));
            }
        }
    }

    /// One line per status code and the counts, for logs and bench output.
    pub fn summary(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        format!(
            "{} requests in {:.1?}: statuses {} ({} of the 5xx as kube-apiserver answers); {} \
             unanswered (lying framing); {} closed while the body was sent; {} failures",
            self.sent,
            self.elapsed,
            statuses.join(" "),
            self.kubernetes_5xx,
            self.unanswered_allowed,
            self.closed_during_body,
            self.failures
        )
    }
}

/// A prepared apiserver: discovery read, namespaces and permissions set up, the guarded
/// namespace's contents recorded.
pub struct Fuzzer {
    target: Target,
    connector: wire::Connector,
    admin: reqwest::blocking::Client,
    resources: Vec<Resource>,
    /// The names of the objects made in the guarded namespace, which requests aim at.
    guarded_names: Vec<String>,
    /// Every object in the guarded namespace (and the namespace itself), as served.
    snapshot: BTreeMap<String, String>,
}

impl Fuzzer {
    /// Reads discovery and sets up `fuzz` and `guarded` as the admin; returns once the
    /// fuzzer's permissions are in force.
    pub fn prepare(target: Target) -> Fuzzer {
        let connector = wire::Connector::new(target.addr, &target.ca_pem, &target.admin_pem);
        let admin = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(target.ca_pem.as_bytes()).expect("the CA is PEM"),
            )
            .identity(
                reqwest::Identity::from_pem(target.admin_pem.as_bytes()).expect("the admin's PEM"),
            )
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTPS client");
        let mut fuzzer = Fuzzer {
            target,
            connector,
            admin,
            resources: Vec::new(),
            guarded_names: Vec::new(),
            snapshot: BTreeMap::new(),
        };
        fuzzer.resources = fuzzer.discover();
        fuzzer.setup();
        fuzzer.snapshot = fuzzer.guarded_objects();
        fuzzer
    }

    /// The resources and subresources discovery lists.
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.target.addr)
    }

    /// An admin request; panics on a transport error.
    fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.admin.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("{method} {path} as the admin: {e}"));
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn admin_get(&self, path: &str) -> Value {
        let (status, body) = self.admin_call(reqwest::Method::GET, path, None);
        assert_eq!(status, 200, "GET {path} as the admin: {body}");
        body
    }

    /// Creates `object` at `path` as the admin; an object left by an earlier run is fine.
    fn admin_create(&self, path: &str, object: Value) {
        let (status, body) = self.admin_call(reqwest::Method::POST, path, Some(&object));
        assert!(
            status == 201 || status == 409,
            "POST {path} as the admin: HTTP {status}: {body}"
        );
    }

    fn discover(&self) -> Vec<Resource> {
        let mut group_versions = vec![(String::new(), "v1".to_string())];
        for group in self.admin_get("/apis")["groups"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for v in group["versions"].as_array().into_iter().flatten() {
                let name = group["name"].as_str().unwrap_or_default().to_string();
                group_versions.push((name, v["version"].as_str().unwrap_or_default().to_string()));
            }
        }
        let mut out = Vec::new();
        for (group, version) in group_versions {
            let path = if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            };
            for r in self.admin_get(&path)["resources"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let full = r["name"].as_str().unwrap_or_default();
                let (name, subresource) = match full.split_once('/') {
                    Some((n, s)) => (n.to_string(), Some(s.to_string())),
                    None => (full.to_string(), None),
                };
                let kind_group = r["group"].as_str().unwrap_or(&group);
                let kind_version = r["version"].as_str().unwrap_or(&version);
                let kind_api_version = if kind_group.is_empty() {
                    kind_version.to_string()
                } else {
                    format!("{kind_group}/{kind_version}")
                };
                out.push(Resource {
                    group: group.clone(),
                    version: version.clone(),
                    name,
                    subresource,
                    kind: r["kind"].as_str().unwrap_or_default().to_string(),
                    kind_api_version,
                    namespaced: r["namespaced"].as_bool().unwrap_or(false),
                    verbs: r["verbs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                });
            }
        }
        assert!(
            out.len() > 20,
            "discovery lists only {} resources",
            out.len()
        );
        out
    }

    /// The namespaces, the fuzzer's Roles (everything in `fuzz`, reading in `guarded`) and
    /// the guarded objects.
    fn setup(&mut self) {
        for ns in [FUZZ_NAMESPACE, GUARDED_NAMESPACE] {
            self.admin_create(
                "/api/v1/namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        let grant = |ns: &str, rules: Value| {
            self.admin_create(
                &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": "fuzzer"}, "rules": rules}),
            );
            self.admin_create(
                &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": "fuzzer"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fuzzer"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": FUZZER_USER}]}),
            );
        };
        // Everything in `fuzz` but what would end the fuzzer's own rights: deleting its Role,
        // its RoleBinding or the namespace (a RoleBinding's rules cover the namespace object
        // itself, as in Kubernetes).
        let mut rules = Vec::new();
        let mut groups: Vec<&str> = self.resources.iter().map(|r| r.group.as_str()).collect();
        groups.dedup();
        for group in groups {
            let resources: Vec<String> = self
                .resources
                .iter()
                .filter(|r| r.group == group && r.name != "namespaces")
                .map(|r| match &r.subresource {
                    Some(sub) => format!("{}/{sub}", r.name),
                    None => r.name.clone(),
                })
                .collect();
            let verbs = if group == "rbac.authorization.k8s.io" {
                json!(["get", "list", "watch", "create"])
            } else {
                json!(["*"])
            };
            rules.push(json!({"apiGroups": [group], "resources": resources, "verbs": verbs}));
        }
        grant(FUZZ_NAMESPACE, json!(rules));
        grant(
            GUARDED_NAMESPACE,
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]),
        );

        let ns = GUARDED_NAMESPACE;
        let objects = [
            ("/api/v1", "configmaps", "v1", "ConfigMap", "fz-a"),
            ("/api/v1", "configmaps", "v1", "ConfigMap", "settings"),
            ("/api/v1", "secrets", "v1", "Secret", "fz-b"),
            ("/api/v1", "secrets", "v1", "Secret", "credentials"),
            ("/api/v1", "services", "v1", "Service", "fz-a"),
            ("/api/v1", "serviceaccounts", "v1", "ServiceAccount", "fz-c"),
            ("/api/v1", "pods", "v1", "Pod", "fz-a"),
            (
                "/apis/apps/v1",
                "deployments",
                "apps/v1",
                "Deployment",
                "fz-a",
            ),
            (
                "/apis/rbac.authorization.k8s.io/v1",
                "roles",
                "rbac.authorization.k8s.io/v1",
                "Role",
                "fz-c",
            ),
        ];
        for (prefix, plural, api_version, kind, name) in objects {
            let object = templates::object(api_version, kind, Some(ns), name, 0);
            self.admin_create(&format!("{prefix}/namespaces/{ns}/{plural}"), object);
            if !self.guarded_names.iter().any(|n| n == name) {
                self.guarded_names.push(name.to_string());
            }
        }

        // The authorizer follows the watch cache: wait until the grant is in force.
        let probe = generate::Request {
            index: 0,
            identity: Identity::Fuzzer,
            method: "GET".into(),
            target: format!("/api/v1/namespaces/{FUZZ_NAMESPACE}/configmaps"),
            headers: Vec::new(),
            body: Vec::new(),
            framing: Framing::Honest,
        };
        let host = self.target.addr.to_string();
        let allowed = wait_until(Duration::from_secs(20), || {
            self.connector
                .exchange(&probe.to_bytes(&host, FUZZER_TOKEN), false, false)
                .is_ok_and(|r| r.status == 200)
        });
        assert!(
            allowed,
            "the fuzzer's Role in {FUZZ_NAMESPACE} never took effect"
        );
    }

    /// Every object in the guarded namespace, keyed by group, resource and name, with its
    /// JSON as served.
    fn guarded_objects(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let ns = self.admin_get(&format!("/api/v1/namespaces/{GUARDED_NAMESPACE}"));
        out.insert("namespaces/guarded".to_string(), ns.to_string());
        let listable = self.resources.iter().filter(|r| {
            r.namespaced && r.subresource.is_none() && r.verbs.iter().any(|v| v == "list")
        });
        for r in listable {
            let list = self.admin_get(&format!(
                "{}/namespaces/{GUARDED_NAMESPACE}/{}",
                r.prefix(),
                r.name
            ));
            for item in list["items"].as_array().into_iter().flatten() {
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                out.insert(
                    format!("{}/{}/{}/{name}", r.group, r.version, r.name),
                    item.to_string(),
                );
            }
        }
        out
    }

    /// What differs in the guarded namespace from before the run: objects changed, gone or
    /// new. Empty when nothing changed.
    pub fn guarded_changes(&self) -> Vec<String> {
        let now = self.guarded_objects();
        let mut changes = Vec::new();
        for (key, before) in &self.snapshot {
            match now.get(key) {
                None => changes.push(format!("{key} is gone; it was {before}")),
                Some(after) if after != before => changes.push(format!(
                    "{key} changed:\n  before {before}\n  after  {after}"
                )),
                Some(_) => {}
            }
        }
        for (key, after) in &now {
            if !self.snapshot.contains_key(key) {
                changes.push(format!("{key} is new: {after}"));
            }
        }
        changes
    }

    /// Lists every listable resource in all namespaces as the admin, as JSON and as the
    /// Table kubectl asks for: what the fuzzer stored must still be readable and printable.
    /// Returns the lists that failed.
    pub fn unreadable_lists(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let listable = self
            .resources
            .iter()
            .filter(|r| r.subresource.is_none() && r.verbs.iter().any(|v| v == "list"));
        for r in listable {
            let path = format!("{}/{}", r.prefix(), r.name);
            for accept in [
                "application/json",
                "application/json;as=Table;v=v1;g=meta.k8s.io",
            ] {
                let outcome = self
                    .admin
                    .get(self.url(&path))
                    .header("Accept", accept)
                    .send()
                    .and_then(|r| Ok((r.status().as_u16(), r.text()?)));
                match outcome {
                    Ok((200, body)) if serde_json::from_str::<Value>(&body).is_ok() => {}
                    Ok((status, body)) => failed.push(format!(
                        "GET {path} ({accept}): HTTP {status}: {}",
                        shorten(&body, 300)
                    )),
                    Err(e) => failed.push(format!("GET {path} ({accept}): {e}")),
                }
            }
        }
        failed
    }

    /// Whether the apiserver answers `/readyz` with 200.
    pub fn ready(&self) -> bool {
        self.admin
            .get(self.url("/readyz"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    }

    /// Sends `config.requests` generated requests over `config.workers` connections at a time.
    pub fn run(&self, config: Config) -> Report {
        let next = AtomicUsize::new(0);
        let report = Mutex::new(Report::default());
        let host = self.target.addr.to_string();
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..config.workers.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= config.requests {
                            break;
                        }
                        let request =
                            generate(config.seed, i, &self.resources, &self.guarded_names);
                        let outcome = self.connector.exchange(
                            &request.to_bytes(&host, FUZZER_TOKEN),
                            request.as_admin(),
                            request.may_go_unanswered(),
                        );
                        report.lock().expect("no worker panics holding it").record(
                            &request,
                            outcome,
                            config.seed,
                        );
                    }
                });
            }
        });
        let mut report = report.into_inner().expect("no worker panicked");
        report.elapsed = start.elapsed();
        report
    }
}

/// The 5xx answers kube-apiserver itself gives, which Skiff matches on purpose.
fn kubernetes_answers_so(request: &Request, status: u16, body: &str) -> bool {
    // Impersonate-Uid or -Extra-* without Impersonate-User: kube-apiserver's impersonation
    // filter answers with an InternalError (with no body to show for a HEAD).
    let impersonation = status == 500
        && request.impersonates_without_user()
        && (request.method == "HEAD" || body.contains("without impersonating a user"));
    // A resourceVersion the store has not reached yet: a Timeout client-go retries.
    let future_version = status == 504 && body.contains("\"ResourceVersionTooLarge\"");
    impersonation || future_version
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() > max {
        format!("{}...", &s[..s.floor_char_boundary(max)])
    } else {
        s.to_string()
    }
}
