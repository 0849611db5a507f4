//! The request generator: request number `i` of a run is a pure function of the seed, `i`,
//! the served resources and the names in the guarded namespace, so any request a run reports
//! can be made again on its own.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::protobuf;
use super::templates;

/// A resource (or subresource) the apiserver serves, from discovery.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    /// The plural name (`deployments`).
    pub name: String,
    /// `scale` for `deployments/scale`.
    pub subresource: Option<String>,
    /// The kind a body carries (`Scale` for `deployments/scale`).
    pub kind: String,
    /// The group/version of that kind (`autoscaling/v1` for `deployments/scale`).
    pub kind_api_version: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Resource {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

/// Who a request claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The fuzzer's bearer token: RBAC lets it write in namespace `fuzz` only.
    Fuzzer,
    /// No credentials at all.
    Anonymous,
    /// A token the server does not know, or a malformed `Authorization` header.
    BadCredentials,
    /// The fuzzer asking to act as an admin (`Impersonate-User`/`-Group`): must be refused.
    FuzzerImpersonatingAdmin,
    /// The admin's client certificate acting as the fuzzer through `Impersonate-User`: RBAC
    /// must judge the fuzzer, not the admin.
    AdminAsFuzzer,
}

/// How the request's framing lies, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` is the body's length.
    Honest,
    /// `Content-Length` says less than was sent.
    ShortLength,
    /// `Content-Length` says more than was sent: the client ends its side of the connection
    /// after the body, and the server may close without answering.
    LongLength,
    /// `Transfer-Encoding: chunked` over a body that is not chunked (with a Content-Length):
    /// the client ends its side after the body, the server may close without answering.
    BadChunked,
}

/// One fuzzed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub index: usize,
    pub identity: Identity,
    pub method: String,
    /// The request target as sent (path and query, not normalised).
    pub target: String,
    /// Headers besides Host, Connection, Authorization and the framing headers.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub framing: Framing,
}

/// Names requests use: a few the fuzzer creates and reuses, so gets, updates and deletes find
/// objects, plus the names of the guarded objects.
const NAMES: &[&str] = &["fz-a", "fz-b", "fz-c"];

/// Every request's generator: a seed per request, mixed from the run's seed and the index so
/// requests are independent of each other.
pub fn generate(seed: u64, index: usize, resources: &[Resource], guarded: &[String]) -> Request {
    let mixed = seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut g = Gen {
        rng: StdRng::seed_from_u64(mixed),
    };
    g.request(index, resources, guarded)
}

struct Gen {
    rng: StdRng,
}

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        items.choose(&mut self.rng).expect("a non-empty pool")
    }

    fn request(&mut self, index: usize, resources: &[Resource], guarded: &[String]) -> Request {
        let identity = match self.rng.random_range(0..100) {
            0..80 => Identity::Fuzzer,
            80..87 => Identity::Anonymous,
            87..91 => Identity::BadCredentials,
            91..95 => Identity::FuzzerImpersonatingAdmin,
            _ => Identity::AdminAsFuzzer,
        };
        let mut req = Request {
            index,
            identity,
            method: "GET".into(),
            target: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            framing: Framing::Honest,
        };
        match self.rng.random_range(0..100) {
            0..88 => {
                let resource = self.pick(resources).clone();
                self.resource_request(&mut req, resource, guarded)
            }
            _ => self.other_path(&mut req),
        }
        if self.chance(0.12) {
            req.target = self.odd_path(&req.target);
        }
        if self.chance(0.03) {
            req.method = self
                .pick(&[
                    "HEAD", "OPTIONS", "TRACE", "FUZZ", "CONNECT", "get", "PROPFIND",
                ])
                .to_string();
        }
        self.headers(&mut req);
        req.framing = match self.rng.random_range(0..100) {
            0..3 if !req.body.is_empty() => Framing::ShortLength,
            3..5 => Framing::LongLength,
            5..6 => Framing::BadChunked,
            _ => Framing::Honest,
        };
        req
    }

    fn namespace(&mut self) -> String {
        match self.rng.random_range(0..100) {
            0..65 => "fuzz".into(),
            65..90 => "guarded".into(),
            90..94 => "default".into(),
            94..96 => "kube-system".into(),
            _ => self.odd_name(),
        }
    }

    fn name(&mut self, guarded: &[String]) -> String {
        match self.rng.random_range(0..100) {
            0..55 => self.pick(NAMES).to_string(),
            55..85 if !guarded.is_empty() => self.pick(guarded).clone(),
            _ => self.odd_name(),
        }
    }

    fn odd_name(&mut self) -> String {
        match self.rng.random_range(0..10) {
            0 => "UPPER".into(),
            1 => "a".repeat(self.rng.random_range(250..300)),
            2 => "ünïcødé-😀".into(),
            3 => "..".into(),
            4 => "a.b.c".into(),
            5 => "-leading-dash".into(),
            6 => "%00".into(),
            7 => "x%2Fy".into(),
            8 => "name with spaces".replace(' ', "%20"),
            _ => String::new(),
        }
    }

    /// Picks a verb the resource serves (usually) or any verb, and builds the request for it.
    fn resource_request(&mut self, req: &mut Request, resource: Resource, guarded: &[String]) {
        const VERBS: &[&str] = &[
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ];
        let verb = match resource.verbs.as_slice() {
            served if !served.is_empty() && self.chance(0.85) => self.pick(served).clone(),
            _ => self.pick(VERBS).to_string(),
        };
        let ns = resource.namespaced.then(|| self.namespace());
        let name = self.name(guarded);
        let mut collection = resource.prefix();
        if let Some(ns) = &ns {
            collection.push_str(&format!("/namespaces/{ns}"));
        }
        collection.push('/');
        collection.push_str(&resource.name);
        let mut item = format!("{collection}/{name}");
        if let Some(sub) = &resource.subresource {
            item.push('/');
            item.push_str(sub);
            if sub == "proxy" && self.chance(0.7) {
                let tail = *self.pick(&["/", "/healthz", "/a/../b", "/%2e%2e/x", "/logs/"]);
                item.push_str(tail);
            }
        }
        // Subresources are addressed on an object; creating one posts to it.
        let on_item = resource.subresource.is_some();
        let (method, path, params): (&str, String, &[&str]) = match verb.as_str() {
            "get" => ("GET", item, &["resourceVersion", "pretty"]),
            "list" if !on_item => ("GET", collection, LIST_PARAMS),
            "watch" if !on_item => ("GET", collection, LIST_PARAMS),
            "create" => {
                let target = if on_item { item } else { collection };
                ("POST", target, WRITE_PARAMS)
            }
            "update" => ("PUT", item, WRITE_PARAMS),
            "patch" => ("PATCH", item, WRITE_PARAMS),
            "delete" => ("DELETE", item, DELETE_PARAMS),
            "deletecollection" if !on_item => ("DELETE", collection, DELETE_PARAMS),
            // Verbs of connect subresources (exec, attach, portforward, proxy, log).
            _ => {
                let method = *self.pick(&["GET", "POST", "PUT", "DELETE", "PATCH"]);
                (method, item, CONNECT_PARAMS)
            }
        };
        req.method = method.into();
        let mut query = self.query(params);
        if verb == "watch" {
            // Short: the client stops reading soon anyway, the server ends it soon after.
            query.push(format!("watch={}", self.pick(&["1", "true", "1"])));
            query.push(format!(
                "timeoutSeconds={}",
                self.pick(&["1", "1", "2", "0"])
            ));
        }
        if verb == "patch" && self.chance(0.9) {
            self.patch_body(req, &resource, ns.as_deref(), &name, &mut query);
        } else if matches!(method, "POST" | "PUT") || self.chance(0.1) {
            let object = self.object(&resource, ns.as_deref(), &name, &verb);
            self.encode(req, &object);
        }
        if method == "DELETE" && self.chance(0.3) {
            let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1",
                "propagationPolicy": self.pick(&["Foreground", "Background", "Orphan", "Sideways"]),
                "gracePeriodSeconds": self.pick(&[json!(0), json!(-1), json!("x"), json!(1e30)]),
                "preconditions": {"resourceVersion": self.pick(&["1", "x", ""])}});
            self.encode(req, &opts);
        }
        req.target = join_query(path, &query);
    }

    fn other_path(&mut self, req: &mut Request) {
        let path = self.pick(&[
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/livez",
            "/readyz",
            "/readyz/etcd",
            "/openapi/v2",
            "/openapi/v3",
            "/openapi/v3/api/v1",
            "/metrics",
            "/logs/",
            "/",
            "/apis/nope.example.com/v1/things",
            "/apis/nope.example.com",
            "/api/v2/pods",
            "/apis/apps",
            "/apis/apps/v0/deployments",
            "/apis/fuzz.example.com/v1/namespaces/fuzz/things",
            "/.well-known/openid-configuration",
            "/openid/v1/jwks",
            "/api/v1/namespaces/fuzz/pods/fz-a/status/extra/segments",
            "/api/v1/namespaces//pods",
            "/api/v1/namespaces/fuzz/",
            "/apis/apps/v1/deployments",
        ]);
        req.method = self
            .pick(&["GET", "GET", "GET", "POST", "DELETE", "PUT"])
            .to_string();
        let query = self.query(&["pretty", "timeout", "verbose", "exclude", "limit"]);
        req.target = join_query(path.to_string(), &query);
        if req.method != "GET" {
            let object =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fz-a"}});
            self.encode(req, &object);
        }
    }

    /// A few query parameters from `names`, each with a valid or odd value.
    fn query(&mut self, names: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            if !self.chance(0.25) {
                continue;
            }
            let value = match *name {
                "labelSelector" => self
                    .pick(&[
                        "app=fuzz",
                        "app in (a,b)",
                        "!app",
                        "app!=",
                        "=",
                        "app==x,,",
                        "a in (",
                        "a.b/c=d",
                        "app notin (fuzz)",
                        ",,,",
                        "app=ünï",
                        "x=%ZZ",
                        "app%3Dfuzz",
                    ])
                    .to_string(),
                "fieldSelector" => self
                    .pick(&[
                        "metadata.name=fz-a",
                        "metadata.namespace!=guarded",
                        "status.phase=Running",
                        "spec.nodeName=",
                        "bogus.field=1",
                        "metadata.name",
                        "=",
                        "metadata.name==a==b",
                        "type=Opaque",
                        "involvedObject.name=x",
                        "spec.schedulerName!=x,,",
                    ])
                    .to_string(),
                "resourceVersion" => self
                    .pick(&[
                        "0",
                        "",
                        "1",
                        "abc",
                        "-1",
                        "18446744073709551616",
                        "99999999",
                        "%201",
                    ])
                    .to_string(),
                "resourceVersionMatch" => self
                    .pick(&["NotOlderThan", "Exact", "bogus", ""])
                    .to_string(),
                "limit" => self
                    .pick(&["1", "0", "-1", "abc", "99999999999999999999", "500"])
                    .to_string(),
                "continue" => self
                    .pick(&[
                        "",
                        "abc",
                        "%ZZ",
                        "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MSwic3RhcnQiOiJ4In0",
                        "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0IjoiLi4vLi4ifQ",
                        "////",
                    ])
                    .to_string(),
                "timeoutSeconds" => self.pick(&["1", "-5", "abc", "1.5"]).to_string(),
                "dryRun" => self
                    .pick(&["All", "bogus", "", "All&dryRun=All"])
                    .to_string(),
                "fieldManager" => self.pick(&["fuzz", "", "ü", &"m".repeat(200)]).to_string(),
                "fieldValidation" => self
                    .pick(&["Strict", "Warn", "Ignore", "bogus"])
                    .to_string(),
                "force" => self.pick(&["true", "false", "x"]).to_string(),
                "propagationPolicy" => self
                    .pick(&["Foreground", "Background", "Orphan", "x"])
                    .to_string(),
                "gracePeriodSeconds" => {
                    self.pick(&["0", "-1", "abc", "99999999999999"]).to_string()
                }
                "orphanDependents" => self.pick(&["true", "x"]).to_string(),
                "allowWatchBookmarks"
                | "sendInitialEvents"
                | "pretty"
                | "verbose"
                | "follow"
                | "previous"
                | "timestamps"
                | "stdin"
                | "stdout"
                | "tty" => self.pick(&["true", "false", "1", "x", ""]).to_string(),
                "container" => self.pick(&["c", "nope", "", "../c"]).to_string(),
                "command" => self.pick(&["sh", "ls", ""]).to_string(),
                "sinceSeconds" | "tailLines" | "limitBytes" | "ports" => self
                    .pick(&["1", "0", "-1", "x", "99999999999999999999"])
                    .to_string(),
                "sinceTime" => self
                    .pick(&["2026-01-01T00:00:00Z", "yesterday", ""])
                    .to_string(),
                "timeout" => self.pick(&["1s", "-1s", "x", "32s"]).to_string(),
                "exclude" => self.pick(&["etcd", "x"]).to_string(),
                other => other.to_string(),
            };
            out.push(format!("{name}={}", encode_query_value(&value)));
        }
        if self.chance(0.05) {
            out.push(
                self.pick(&["%zz=1", "=x", "&&", "a=%", "labelSelector", "watch=0"])
                    .to_string(),
            );
        }
        out
    }

    /// The object a create or update sends: the kind's template, then a few mutations.
    fn object(&mut self, resource: &Resource, ns: Option<&str>, name: &str, verb: &str) -> Value {
        let variant = self.rng.random_range(0..12);
        let mut object = templates::object(
            &resource.kind_api_version,
            &resource.kind,
            ns,
            name,
            variant,
        );
        if verb == "update" && self.chance(0.5) {
            object["metadata"]["resourceVersion"] =
                json!(self.pick(&["1", "2", "999999", "x", ""]));
        }
        if resource.subresource.as_deref() == Some("status") {
            object["status"] = json!({"phase": "Running", "replicas": 1,
                "conditions": [{"type": "Ready", "status": "True"}]});
        }
        let mutations = self.rng.random_range(0..4);
        for _ in 0..mutations {
            self.mutate(&mut object);
        }
        object
    }

    /// Changes one spot of `value`: drops a field, changes a type, or plants an extreme value.
    fn mutate(&mut self, value: &mut Value) {
        let spot = self.spot(value);
        let replacement = match self.rng.random_range(0..13) {
            0 => None,
            1 => Some(json!(self.pick(&["", "0", "true", "null"]))),
            2 => Some(json!(self.rng.random_range(-1_000_000i64..1_000_000))),
            3 => Some(json!(self.pick(&[i64::MIN, -1, 0, i64::MAX]))),
            4 => Some(json!(self.pick(&[1e308, -1e308, 0.5, -0.0]))),
            5 => Some(json!(u64::MAX)),
            6 => Some(json!("x".repeat(self.rng.random_range(1000..300_000)))),
            7 => Some(deep(self.rng.random_range(20..400))),
            8 => Some(json!(self.pick(&[
                "ünïcødé",
                "😀😀",
                "\u{202e}rtl",
                "\u{0}nul",
                "a\nb",
                "\u{feff}"
            ]))),
            9 => Some(Value::Null),
            10 => Some(json!([1, "two", {"three": 3}, null])),
            11 => Some(json!({"unknownField": {"nested": [true]}})),
            _ => Some(json!(self.pick(&["guarded", "kube-system", "default"]))),
        };
        match (spot, replacement) {
            (Some((parent, key)), None) => remove(value, &parent, &key),
            (Some((parent, key)), Some(new)) => set(value, &parent, &key, new),
            (None, _) => {}
        }
        // Namespace and name mismatches between URL and body deserve more than chance.
        if self.chance(0.1)
            && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert(
                "namespace".into(),
                json!(self.pick(&["guarded", "default", "", "fuzz"])),
            );
        }
        if self.chance(0.05) {
            let name = self.odd_name();
            if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("name".into(), json!(name));
            }
        }
    }

    /// A random field or element of `value`, as the JSON pointer of its parent and its key.
    fn spot(&mut self, value: &Value) -> Option<(String, String)> {
        let mut pointer = String::new();
        let mut current = value;
        let mut found = None;
        for _ in 0..self.rng.random_range(1..7) {
            let keys: Vec<String> = match current {
                Value::Object(m) => m.keys().cloned().collect(),
                Value::Array(a) => (0..a.len()).map(|i| i.to_string()).collect(),
                _ => break,
            };
            if keys.is_empty() {
                break;
            }
            let key = self.pick(&keys).clone();
            found = Some((pointer.clone(), key.clone()));
            pointer = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
            current = value.pointer(&pointer).expect("just walked there");
        }
        found
    }

    /// A patch of one of the four patch types, or a body in the wrong one.
    fn patch_body(
        &mut self,
        req: &mut Request,
        resource: &Resource,
        ns: Option<&str>,
        name: &str,
        query: &mut Vec<String>,
    ) {
        let (content_type, body) = match self.rng.random_range(0..4) {
            0 => {
                let ops = (0..self.rng.random_range(1..4))
                    .map(|_| {
                        json!({"op": self.pick(&["add", "remove", "replace", "move", "copy", "test", "bogus"]),
                            "path": self.pick(&["/metadata/labels/x", "/metadata/namespace", "/spec/replicas",
                                "/data/key", "/metadata/name", "/-", "", "/metadata/labels/~2", "/spec/containers/99",
                                "/metadata/resourceVersion", "/status/phase", "/a/b/c/d"]),
                            "from": self.pick(&["/metadata/labels", "/data", "/x"]),
                            "value": self.pick(&[json!("v"), json!(3), json!(null), json!({"k": "v"}), json!("guarded")])})
                    })
                    .collect::<Vec<_>>();
                (
                    "application/json-patch+json",
                    serde_json::to_vec(&ops).expect("json"),
                )
            }
            1 | 2 => {
                let mut patch = json!({"metadata": {"labels": {"patched": "yes", "app": null}}});
                if self.chance(0.5) {
                    patch = self.object(resource, ns, name, "patch");
                }
                if self.chance(0.2) {
                    patch["$patch"] = json!(self.pick(&["delete", "replace", "merge", "bogus"]));
                }
                if self.chance(0.2) {
                    patch["spec"] = json!({"$retainKeys": ["x"], "$setElementOrder/containers": [{"name": "c"}],
                        "containers": [{"name": "c", "$patch": "delete"}]});
                }
                if self.chance(0.2) {
                    self.mutate(&mut patch);
                }
                let ct = if self.chance(0.5) {
                    "application/merge-patch+json"
                } else {
                    "application/strategic-merge-patch+json"
                };
                (ct, serde_json::to_vec(&patch).expect("json"))
            }
            _ => {
                let object = self.object(resource, ns, name, "apply");
                if self.chance(0.8) {
                    query.push(format!(
                        "fieldManager={}",
                        self.pick(&["fuzz", "other", "x%00"])
                    ));
                }
                if self.chance(0.3) {
                    query.push("force=true".into());
                }
                let body = if self.chance(0.7) {
                    serde_yaml::to_string(&object).expect("yaml").into_bytes()
                } else {
                    serde_json::to_vec(&object).expect("json")
                };
                ("application/apply-patch+yaml", body)
            }
        };
        req.body = self.garble(body);
        req.headers
            .push(("Content-Type".into(), content_type.into()));
    }

    /// Sets the body to `object` as JSON, YAML or protobuf (or garbage), with its content type.
    fn encode(&mut self, req: &mut Request, object: &Value) {
        let (content_type, body) = match self.rng.random_range(0..100) {
            0..55 => (
                "application/json",
                serde_json::to_vec(object).expect("json"),
            ),
            55..75 => (
                "application/yaml",
                serde_yaml::to_string(object).expect("yaml").into_bytes(),
            ),
            75..92 => (
                "application/vnd.kubernetes.protobuf",
                protobuf::envelope(object),
            ),
            _ => {
                let body = match self.rng.random_range(0..5) {
                    0 => Vec::new(),
                    1 => (0..self.rng.random_range(1..2000))
                        .map(|_| self.rng.random())
                        .collect(),
                    2 => b"{\"a\":1,\"a\":2,\"metadata\":{\"name\":\"x\",\"name\":\"y\"}}".to_vec(),
                    3 => {
                        let mut b = b"k8s\0".to_vec();
                        protobuf::varint(&mut b, u64::MAX);
                        b
                    }
                    _ => b"apiVersion: v1\nkind: ConfigMap\nmetadata: &a\n  name: x\n  l: *a\n"
                        .to_vec(),
                };
                (
                    *self.pick(&[
                        "application/json",
                        "application/yaml",
                        "application/vnd.kubernetes.protobuf",
                    ]),
                    body,
                )
            }
        };
        req.body = self.garble(body);
        req.headers
            .push(("Content-Type".into(), content_type.into()));
    }

    /// Sometimes damages a well-formed body: truncates it, flips bytes, adds bytes around it.
    fn garble(&mut self, mut body: Vec<u8>) -> Vec<u8> {
        if body.is_empty() || !self.chance(0.2) {
            return body;
        }
        match self.rng.random_range(0..5) {
            0 => {
                let keep = self.rng.random_range(0..body.len());
                body.truncate(keep);
            }
            1 => {
                for _ in 0..self.rng.random_range(1..8) {
                    let at = self.rng.random_range(0..body.len());
                    body[at] = self.rng.random();
                }
            }
            2 => body.splice(0..0, [0xEF, 0xBB, 0xBF]).for_each(drop),
            3 => body.extend_from_slice(b"}}]]garbage\xff\xfe"),
            _ => {
                let at = self.rng.random_range(0..body.len());
                body.insert(at, self.rng.random());
            }
        }
        body
    }

    /// Adds odd headers, or odd values of the usual ones.
    fn headers(&mut self, req: &mut Request) {
        if self.chance(0.15) {
            let ct = self.pick(&[
                "",
                "text/plain",
                "application/json; charset=utf-16",
                "application/json;;;",
                "multipart/form-data; boundary=",
                "application/vnd.kubernetes.protobuf;stream=watch",
                "application/json-patch+json",
                "application/apply-patch+yaml",
                "*/*",
                "application/",
                "application/yaml; charset=latin1",
            ]);
            req.headers.retain(|(k, _)| k != "Content-Type");
            req.headers.push(("Content-Type".into(), ct.to_string()));
        }
        if self.chance(0.05) {
            req.headers
                .push(("Content-Type".into(), "application/yaml".into()));
        }
        if self.chance(0.4) {
            let accept = self.pick(&[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
                "application/json;as=Table;v=v1;g=meta.k8s.io",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
                "application/json;as=Table;v=v0;g=meta.k8s.io",
                "application/json;stream=watch",
                "*/*",
                "text/html",
                "application/*;q=0.1",
                ";;;",
                "application/json;q=x",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            ]);
            req.headers.push(("Accept".into(), accept.to_string()));
        }
        if self.chance(0.15) {
            let enc = self.pick(&[
                "gzip",
                "br",
                "deflate",
                "gzip;q=0",
                "*",
                "x-nope",
                "gzip, gzip, gzip",
            ]);
            req.headers
                .push(("Accept-Encoding".into(), enc.to_string()));
        }
        if self.chance(0.05) {
            let enc = self.pick(&["gzip", "deflate", "x-nope"]);
            req.headers
                .push(("Content-Encoding".into(), enc.to_string()));
        }
        if self.chance(0.1) {
            let (k, v) = *self.pick(&[
                ("X-Remote-User", "system:admin"),
                ("X-Remote-Group", "system:masters"),
                ("X-Forwarded-For", "not-an-ip, 10.0.0.1"),
                ("Audit-ID", "\u{1}"),
                ("User-Agent", ""),
                ("Expect", "100-continue"),
                ("Connection", "Upgrade"),
                ("Upgrade", "SPDY/3.1"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
                ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
                ("Range", "bytes=0-1"),
                ("If-None-Match", "*"),
            ]);
            req.headers.push((k.into(), v.into()));
        }
        // Impersonating groups, a uid or extras without a user is refused before anything else
        // is looked at: rare, or it would hide the rest of the request.
        if self.chance(0.01)
            || (req.identity == Identity::FuzzerImpersonatingAdmin && self.chance(0.3))
        {
            let (k, v) = *self.pick(&[
                ("Impersonate-Extra-scopes", "view"),
                ("Impersonate-Uid", "1234"),
            ]);
            req.headers.push((k.into(), v.into()));
        }
        if self.chance(0.02) {
            req.headers.push((
                "X-Long".into(),
                "h".repeat(self.rng.random_range(1000..40_000)),
            ));
        }
    }

    /// Makes the path strange: dot segments, encoded dots and slashes, doubled slashes, a
    /// very long path, a non-UTF-8 escape.
    fn odd_path(&mut self, target: &str) -> String {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let mut segments: Vec<String> = path.split('/').map(str::to_owned).collect();
        let at = self.rng.random_range(1..segments.len().max(2));
        let odd = *self.pick(&[
            "..",
            "%2e%2e",
            ".",
            "%2E",
            "",
            "%2F",
            "a%2Fb",
            "%ff",
            "%",
            "%00",
            "..%2F..%2Fguarded",
            "namespaces/guarded",
            "~",
            "%u0041",
            "*",
        ]);
        match self.rng.random_range(0..4) {
            0 => segments.insert(at.min(segments.len()), odd.to_string()),
            1 if at < segments.len() => segments[at] = odd.to_string(),
            2 => segments.push("x".repeat(self.rng.random_range(2_000..20_000))),
            _ => {
                return format!("/{}", path.replace('/', "//"))
                    + &query.map_or(String::new(), |q| format!("?{q}"));
            }
        }
        let path = segments.join("/");
        match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        }
    }
}

/// Arrays and objects nested `depth` deep.
fn deep(depth: usize) -> Value {
    let mut v = json!("bottom");
    for i in 0..depth {
        v = if i.is_multiple_of(2) {
            json!([v])
        } else {
            json!({"d": v})
        };
    }
    v
}

/// Percent-encodes what may not appear raw in a query value (keeping `%` so planted escapes
/// such as `%ZZ` stay odd).
fn encode_query_value(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'%'
            | b'='
            | b'!'
            | b','
            | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn join_query(path: String, query: &[String]) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Removes `parent[key]` from `value`.
fn remove(value: &mut Value, parent: &str, key: &str) {
    match value.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(key);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = key.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// Sets `parent[key]` in `value` to `new`.
fn set(value: &mut Value, parent: &str, key: &str, new: Value) {
    match value.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(key.to_owned(), new);
        }
        Some(Value::Array(a)) => {
            if let Some(slot) = key.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = new;
            }
        }
        _ => {}
    }
}

const LIST_PARAMS: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "resourceVersion",
    "resourceVersionMatch",
    "limit",
    "continue",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "pretty",
];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "pretty"];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "propagationPolicy",
    "gracePeriodSeconds",
    "orphanDependents",
    "labelSelector",
    "fieldSelector",
];
const CONNECT_PARAMS: &[&str] = &[
    "container",
    "command",
    "stdin",
    "stdout",
    "tty",
    "follow",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "tailLines",
    "limitBytes",
    "ports",
];

impl Request {
    /// The bytes on the wire: request line, headers, body. `token` is the fuzzer's bearer
    /// token; `host` the server's `host:port`.
    pub fn to_bytes(&self, host: &str, token: &str) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
            self.method, self.target
        );
        for (k, v) in self.auth_headers(token) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let len = self.body.len();
        match self.framing {
            Framing::Honest
                if len > 0 || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") =>
            {
                head.push_str(&format!("Content-Length: {len}\r\n"))
            }
            Framing::Honest => {}
            Framing::ShortLength => head.push_str(&format!("Content-Length: {}\r\n", len / 2)),
            Framing::LongLength => {
                head.push_str(&format!("Content-Length: {}\r\n", len + 1 + len % 997))
            }
            Framing::BadChunked => head.push_str(&format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {len}\r\n"
            )),
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    fn auth_headers(&self, token: &str) -> Vec<(&'static str, String)> {
        let bearer = format!("Bearer {token}");
        match self.identity {
            Identity::Fuzzer => vec![("Authorization", bearer)],
            Identity::Anonymous => vec![],
            Identity::BadCredentials => {
                let v = [
                    "Bearer not-a-token",
                    "Bearer ",
                    "Basic YWRtaW46YWRtaW4=",
                    "bearer",
                    "Bearer a.b.c",
                ];
                vec![("Authorization", v[self.index % v.len()].to_string())]
            }
            Identity::FuzzerImpersonatingAdmin => vec![
                ("Authorization", bearer),
                ("Impersonate-User", "system:admin".into()),
                ("Impersonate-Group", "system:masters".into()),
            ],
            // The admin's certificate is the TLS client certificate (see `as_admin`).
            Identity::AdminAsFuzzer => vec![("Impersonate-User", super::FUZZER_USER.into())],
        }
    }

    /// Whether the connection presents the admin's client certificate.
    pub fn as_admin(&self) -> bool {
        self.identity == Identity::AdminAsFuzzer
    }

    /// Whether the request asks to impersonate a uid or extra fields but names no user.
    pub fn impersonates_without_user(&self) -> bool {
        let names_user = matches!(
            self.identity,
            Identity::AdminAsFuzzer | Identity::FuzzerImpersonatingAdmin
        );
        !names_user
            && self.headers.iter().any(|(k, _)| {
                k.eq_ignore_ascii_case("Impersonate-Uid") || k.starts_with("Impersonate-Extra-")
            })
    }

    /// Whether the server may rightly close the connection without answering: the request's
    /// framing promised more body than came.
    pub fn may_go_unanswered(&self) -> bool {
        matches!(self.framing, Framing::LongLength | Framing::BadChunked)
    }

    /// The request for a failure message: identity, method, target, headers and the start of
    /// the body (long values shortened).
    pub fn describe(&self, seed: u64) -> String {
        let short = |s: &str| {
            if s.len() > 300 {
                format!("{}...({} bytes)", &s[..s.floor_char_boundary(300)], s.len())
            } else {
                s.to_string()
            }
        };
        let mut out = format!(
            "request #{} of seed {seed} as {:?} ({:?} framing):\n  {} {}\n",
            self.index,
            self.identity,
            self.framing,
            self.method,
            short(&self.target)
        );
        for (k, v) in &self.headers {
            out.push_str(&format!("  {k}: {}\n", short(v)));
        }
        let body = self.body[..self.body.len().min(400)]
            .escape_ascii()
            .to_string();
        out.push_str(&format!("  body ({} bytes): {body}\n", self.body.len()));
        out
    }
}
