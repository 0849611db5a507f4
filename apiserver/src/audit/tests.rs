//! Unit tests of the audit log: policy parsing and validation, rule matching (the cases of
//! kube-apiserver's checker tests), the event's JSON, a request's events, and rotation.

use super::*;
use axum::response::IntoResponse;
use serde_json::json;

fn tim() -> UserInfo {
    UserInfo {
        name: "tim@k8s.io".into(),
        groups: vec!["humans".into(), "developers".into()],
        ..Default::default()
    }
}

fn attrs(name: &str) -> Attributes<'static> {
    match name {
        "namespaced" => Attributes {
            verb: "get",
            resource_request: true,
            version: "v1",
            resource: "pods",
            namespace: Some("default"),
            name: Some("busybox"),
            path: "/api/v1/namespaces/default/pods/busybox",
            ..Default::default()
        },
        "cluster" => Attributes {
            verb: "get",
            resource_request: true,
            group: "rbac.authorization.k8s.io",
            version: "v1beta1",
            resource: "clusterroles",
            name: Some("edit"),
            path: "/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/edit",
            ..Default::default()
        },
        "nonResource" => Attributes {
            verb: "get",
            path: "/logs/kubelet.log",
            ..Default::default()
        },
        "subresource" => Attributes {
            subresource: Some("log"),
            ..attrs("namespaced")
        },
        other => panic!("no attributes {other}"),
    }
}

/// The rules of kube-apiserver's checker tests, as policy YAML.
fn rule(name: &str) -> &'static str {
    match name {
        "default" => "{level: Metadata}",
        "create" => "{level: Request, verbs: [create]}",
        "tims" => "{level: Metadata, users: [tim@k8s.io]}",
        "humans" => "{level: Metadata, userGroups: [humans]}",
        "serviceAccounts" => "{level: Request, userGroups: ['system:serviceaccounts']}",
        "getPods" => "{level: RequestResponse, verbs: [get], resources: [{resources: [pods]}]}",
        "getPodLogs" => "{level: Request, verbs: [get], resources: [{resources: [pods/log]}]}",
        "getPodWildcardMatching" => {
            "{level: Request, verbs: [get], resources: [{resources: ['*']}]}"
        }
        "getPodResourceWildcardMatching" => {
            "{level: Request, verbs: [get], resources: [{resources: ['*/log']}]}"
        }
        "getPodSubResourceWildcardMatching" => {
            "{level: Request, verbs: [get], resources: [{resources: ['pods/*']}]}"
        }
        "getClusterRoles" => {
            "{level: RequestResponse, verbs: [get], resources: [{group: rbac.authorization.k8s.io, resources: [clusterroles]}], namespaces: ['']}"
        }
        "getLogs" => "{level: RequestResponse, verbs: [get], nonResourceURLs: ['/logs*']}",
        "getMetrics" => "{level: Request, verbs: [get], nonResourceURLs: [/metrics]}",
        "clusterRoleEdit" => {
            "{level: Request, resources: [{group: rbac.authorization.k8s.io, resources: [clusterroles], resourceNames: [edit]}]}"
        }
        "omit RequestReceived" => "{level: Request, omitStages: [RequestReceived]}",
        "only audit panic" => {
            "{level: Request, omitStages: [RequestReceived, ResponseStarted, ResponseComplete]}"
        }
        other => panic!("no rule {other}"),
    }
}

fn policy(omit: &str, rules: &[&str]) -> Policy {
    let rules: Vec<String> = rules.iter().map(|r| format!("- {}", rule(r))).collect();
    let text = format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: {omit}\nrules:\n{}\n",
        rules.join("\n")
    );
    Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn level_of(req: &str, omit: &str, rules: &[&str], user: Option<&UserInfo>) -> RequestConfig {
    policy(omit, rules).evaluate(user, &attrs(req))
}

fn same_stages(a: &[Stage], b: &[Stage]) -> bool {
    a.len() == b.len() && a.iter().all(|s| b.contains(s))
}

/// kube-apiserver's `testAuditLevel` table, run with and without policy-wide omitted stages.
#[test]
fn checker_matches_as_kube_apiserver() {
    use Level::*;
    let table: &[(&str, Level, &[&str])] = &[
        ("namespaced", Metadata, &["default"]),
        ("namespaced", None, &["create"]),
        ("namespaced", Metadata, &["tims"]),
        ("namespaced", Metadata, &["humans"]),
        ("namespaced", None, &["serviceAccounts"]),
        ("namespaced", RequestResponse, &["getPods"]),
        ("namespaced", None, &["getClusterRoles"]),
        ("namespaced", None, &["getLogs"]),
        ("namespaced", None, &["getMetrics"]),
        (
            "namespaced",
            Metadata,
            &["getMetrics", "serviceAccounts", "default"],
        ),
        (
            "namespaced",
            RequestResponse,
            &["getMetrics", "getPods", "default"],
        ),
        ("namespaced", RequestResponse, &["getPodLogs", "getPods"]),
        ("cluster", Metadata, &["default"]),
        ("cluster", None, &["create"]),
        ("cluster", Metadata, &["tims"]),
        ("cluster", Metadata, &["humans"]),
        ("cluster", None, &["serviceAccounts"]),
        ("cluster", None, &["getPods"]),
        ("cluster", RequestResponse, &["getClusterRoles"]),
        ("cluster", Request, &["clusterRoleEdit", "getClusterRoles"]),
        ("cluster", None, &["getLogs"]),
        ("cluster", None, &["getMetrics"]),
        (
            "cluster",
            Metadata,
            &["getMetrics", "serviceAccounts", "default"],
        ),
        (
            "cluster",
            RequestResponse,
            &["getMetrics", "getClusterRoles", "default"],
        ),
        ("cluster", None, &["getPodLogs", "getPods"]),
        ("nonResource", Metadata, &["default"]),
        ("nonResource", None, &["create"]),
        ("nonResource", Metadata, &["tims"]),
        ("nonResource", Metadata, &["humans"]),
        ("nonResource", None, &["serviceAccounts"]),
        ("nonResource", None, &["getPods"]),
        ("nonResource", None, &["getClusterRoles"]),
        ("nonResource", RequestResponse, &["getLogs"]),
        ("nonResource", None, &["getMetrics"]),
        (
            "nonResource",
            Metadata,
            &["getMetrics", "serviceAccounts", "default"],
        ),
        (
            "nonResource",
            RequestResponse,
            &["getLogs", "getClusterRoles", "default"],
        ),
        ("nonResource", None, &["getPodLogs", "getPods"]),
        ("subresource", Request, &["getPodLogs", "getPods"]),
        ("subresource", Request, &["getPodWildcardMatching"]),
        ("subresource", Request, &["getPodResourceWildcardMatching"]),
        (
            "subresource",
            Request,
            &["getPodSubResourceWildcardMatching"],
        ),
    ];
    let user = tim();
    for (omit, stages) in [
        ("[]", vec![]),
        (
            "[RequestReceived, ResponseStarted]",
            vec![Stage::RequestReceived, Stage::ResponseStarted],
        ),
    ] {
        for (req, want, rules) in table {
            let got = level_of(req, omit, rules, Some(&user));
            assert_eq!(got.level, *want, "request {req}, rules {rules:?}");
            assert!(
                same_stages(&got.omit_stages, &stages),
                "request {req}, rules {rules:?}: {:?}",
                got.omit_stages
            );
        }
        // A request whose authentication failed has no user: user and group rules miss it.
        for (rules, want) in [
            (&["tims"][..], Level::None),
            (&["tims", "default"][..], Level::Metadata),
            (&["humans"][..], Level::None),
            (&["humans", "default"][..], Level::Metadata),
        ] {
            assert_eq!(
                level_of("namespaced", omit, rules, Option::None).level,
                want
            );
        }
    }
}

#[test]
fn omitted_stages_are_the_rules_and_the_policys() {
    let user = tim();
    let all_but_panic = [
        Stage::RequestReceived,
        Stage::ResponseStarted,
        Stage::ResponseComplete,
    ];
    for req in ["namespaced", "cluster", "nonResource"] {
        let got = level_of(
            req,
            "[]",
            &["omit RequestReceived", "getPods", "default"],
            Some(&user),
        );
        assert_eq!(got.level, Level::Request);
        assert_eq!(got.omit_stages, [Stage::RequestReceived]);
        let got = level_of(req, "[]", &["only audit panic", "getPods"], Some(&user));
        assert!(same_stages(&got.omit_stages, &all_but_panic));
        let got = level_of(
            req,
            "[RequestReceived, ResponseStarted]",
            &["omit RequestReceived", "getPods"],
            Some(&user),
        );
        assert!(same_stages(
            &got.omit_stages,
            &[Stage::RequestReceived, Stage::ResponseStarted]
        ));
    }
}

#[test]
fn rule_overrides_the_policys_omit_managed_fields() {
    let get = Attributes {
        verb: "get",
        ..Default::default()
    };
    for (global, rule, want) in [
        ("false", "", false),
        ("true", "", true),
        ("true", ", omitManagedFields: false", false),
        ("false", ", omitManagedFields: true", true),
    ] {
        let text = format!(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: {global}\nrules:\n- {{level: RequestResponse, verbs: [get]{rule}}}\n"
        );
        let p = Policy::parse(text.as_bytes()).unwrap();
        assert_eq!(p.evaluate(None, &get).omit_managed_fields, want, "{text}");
    }
}

#[test]
fn non_resource_urls_match_exactly_or_by_trailing_star() {
    assert!(path_matches("/healthz", "*"));
    assert!(path_matches("/healthz", "/healthz"));
    assert!(path_matches("/healthz/etcd", "/healthz*"));
    assert!(path_matches("/healthz", "/healthz*"));
    assert!(!path_matches("/livez", "/healthz*"));
    assert!(!path_matches("/healthz/etcd", "/healthz"));
}

#[test]
fn policies_parse_from_yaml_and_json() {
    let yaml = br#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
    resources:
      - group: ""
        resources: ["endpoints", "services"]
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods"]
        resourceNames:
  - level: Metadata
"#;
    let p = Policy::parse(yaml).unwrap();
    assert_eq!(p.rules.len(), 4);
    assert_eq!(p.omit_stages, [Stage::RequestReceived]);
    assert_eq!(p.rules[0].omit_stages, [Stage::RequestReceived]);
    assert_eq!(p.rules[2].level, Some(Level::RequestResponse));

    let json = br#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata","omitStages":["RequestReceived"]}]}"#;
    let p = Policy::parse(json).unwrap();
    assert_eq!(p.rules[0].level, Some(Level::Metadata));
}

#[test]
fn bad_policies_are_refused_with_kube_apiservers_messages() {
    let head = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n";
    let cases: &[(&str, &str)] = &[
        ("- {verbs: [get]}", "rules[0].level: Required value"),
        (
            "- {level: Everything}",
            "rules[0].level: Unsupported value: \"Everything\": supported values: \"None\", \"Metadata\", \"Request\", \"RequestResponse\"",
        ),
        (
            "- {level: None, nonResourceURLs: [healthz]}",
            "rules[0].nonResourceURLs[0]: Invalid value: \"healthz\": non-resource URL rules must begin with a '/' character",
        ),
        (
            "- {level: None, nonResourceURLs: ['/a*/b']}",
            "rules[0].nonResourceURLs[0]: Invalid value: \"/a*/b\": non-resource URL wildcards '*' must be the final character of the rule",
        ),
        (
            "- {level: None, nonResourceURLs: [/a], namespaces: [default]}",
            "rules[0].nonResourceURLs: Invalid value: []string{\"/a\"}: rules cannot apply to both regular resources and non-resource URLs",
        ),
        (
            "- {level: None, resources: [{group: '', resourceNames: [x]}]}",
            "rules[0].resources.resourceNames: Invalid value: []string{\"x\"}: using resourceNames requires at least one resource",
        ),
        (
            "- {level: None, resources: [{group: rbac.authorization.k8s.io/v1}]}",
            "rules[0].resources.group: Invalid value: \"rbac.authorization.k8s.io/v1\": a lowercase RFC 1123 subdomain must consist of",
        ),
        (
            "- {level: None, omitStages: [Done]}",
            "rules[0].omitStages[0]: Invalid value: \"Done\": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic",
        ),
        (
            "- {level: Loud}\n- {}",
            "[rules[0].level: Unsupported value: \"Loud\": supported values: \"None\", \"Metadata\", \"Request\", \"RequestResponse\", rules[1].level: Required value]",
        ),
        ("", "loaded illegal policy with 0 rules"),
    ];
    for (rules, want) in cases {
        let text = format!("{head}{rules}\n");
        let err = Policy::parse(text.as_bytes()).unwrap_err();
        assert!(err.starts_with(want), "{rules}: got {err}");
    }
    let err =
        Policy::parse(b"apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]")
            .unwrap_err();
    assert_eq!(
        err,
        "failed decoding: no kind \"Policy\" is registered for version \"audit.k8s.io/v1beta1\""
    );
    let err = Policy::parse(b"apiVersion: audit.k8s.io/v1\nrules: [{level: None}]").unwrap_err();
    assert!(
        err.starts_with("failed decoding: Object 'Kind' is missing in"),
        "{err}"
    );
    let err = Policy::parse(b"rules: [").unwrap_err();
    assert!(err.starts_with("failed decoding: "), "{err}");
}

#[test]
fn a_policy_file_names_itself_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let err = Policy::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "loading audit policy file: failed to read file path {:?}: ",
            path
        )),
        "{err}"
    );
    std::fs::write(
        &path,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n",
    )
    .unwrap();
    assert_eq!(
        Policy::load(&path).unwrap_err().to_string(),
        format!(
            "loading audit policy file: loaded illegal policy with 0 rules: from file {}",
            path.display()
        )
    );
}

fn request_info() -> RequestInfo {
    RequestInfo {
        uri: "/api/v1/namespaces/default/pods?limit=500".into(),
        user_agent: "kubectl/v1.31.0 (linux/amd64) kubernetes/abc".into(),
        source_ips: vec!["127.0.0.1".into()],
    }
}

#[test]
fn events_serialize_as_kube_apiserver_writes_them() {
    let received: Timestamp = "2024-05-01T12:00:00.123456789Z".parse().unwrap();
    let admin = UserInfo {
        name: "admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        ..Default::default()
    };
    let list = Attributes {
        verb: "list",
        resource_request: true,
        version: "v1",
        resource: "pods",
        namespace: Some("default"),
        path: "/api/v1/namespaces/default/pods",
        ..Default::default()
    };
    let mut ev = Event::new(
        Level::Metadata,
        "6b2f1a9e-1f6c-4d2a-9a51-0c6f8e5b1a11",
        received,
        &request_info(),
        Some(&admin),
        &list,
    );
    ev.stage = Stage::ResponseComplete;
    ev.stage_timestamp = "2024-05-01T12:00:00.125Z".parse().unwrap();
    ev.response_status = Some(ResponseStatus {
        code: 200,
        ..Default::default()
    });
    ev.annotations
        .insert(DECISION_ANNOTATION.into(), "allow".into());
    ev.annotations.insert(REASON_ANNOTATION.into(), "".into());
    assert_eq!(
        ev.to_line(),
        concat!(
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"6b2f1a9e-1f6c-4d2a-9a51-0c6f8e5b1a11","stage":"ResponseComplete","#,
            r#""requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list","user":{"username":"admin","groups":["system:masters","system:authenticated"]},"#,
            r#""sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.31.0 (linux/amd64) kubernetes/abc","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"#,
            r#""responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-05-01T12:00:00.123456Z","stageTimestamp":"2024-05-01T12:00:00.125000Z","#,
            r#""annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#,
            "\n"
        )
    );

    // A failure carries the Status the client got.
    let e = ApiError::forbidden_request("nobody", &list, "");
    let status = serde_json::to_value(ResponseStatus::from(&e)).unwrap();
    assert_eq!(
        status,
        json!({
            "metadata": {},
            "status": "Failure",
            "message": "pods is forbidden: User \"nobody\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            "reason": "Forbidden",
            "details": {"kind": "pods"},
            "code": 403,
        })
    );
}

#[test]
fn source_ips_list_forwarded_addresses_then_the_peer() {
    let mut h = HeaderMap::new();
    let peer: std::net::IpAddr = "10.0.0.9".parse().unwrap();
    assert_eq!(source_ips(&h, Some(peer)), ["10.0.0.9"]);
    h.insert(
        "x-forwarded-for",
        "1.2.3.4, 10.0.0.9, junk".parse().unwrap(),
    );
    h.insert("x-real-ip", "5.6.7.8".parse().unwrap());
    assert_eq!(
        source_ips(&h, Some(peer)),
        ["1.2.3.4", "10.0.0.9", "5.6.7.8"]
    );
}

/// An auditor whose events a test reads back.
fn test_auditor(policy: &str, buffer: usize) -> (Arc<Auditor>, Receiver<Msg>) {
    let policy = Policy::parse(
        format!("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n{policy}").as_bytes(),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(buffer);
    let auditor = Arc::new(Auditor {
        policy,
        tx,
        events: Counter::default(),
        errors: Family::default(),
    });
    (auditor, rx)
}

fn drain(rx: &Receiver<Msg>) -> Vec<Value> {
    rx.try_iter()
        .filter_map(|m| match m {
            Msg::Event(ev) => Some(serde_json::to_value(&*ev).unwrap()),
            Msg::Sync(_) => None,
        })
        .collect()
}

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn pods_attrs(verb: &'static str) -> Attributes<'static> {
    Attributes {
        verb,
        resource_request: true,
        version: "v1",
        resource: "pods",
        namespace: Some("default"),
        path: "/api/v1/namespaces/default/pods",
        ..Default::default()
    }
}

#[tokio::test]
async fn a_create_is_received_then_completed_with_its_object() {
    let (auditor, rx) = test_auditor("- level: RequestResponse\n", 10);
    let p = parts(
        "POST",
        "/api/v1/namespaces/default/pods",
        &[("user-agent", "kubectl/v1.31.0")],
    );
    let mut rec = Record::start(Some(&auditor), &p);
    let id = rec.id().to_string();
    let body = rec.capture(Body::from(
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","managedFields":[]}}"#,
    ));
    rec.begin(&tim(), &pods_attrs("create"));
    rec.authorized(&Decision::Allow);
    // The handler reads the body.
    let _ = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let resp = Response::builder()
        .status(201)
        .body(Body::from(r#"{"kind":"Pod","metadata":{"name":"web"}}"#))
        .unwrap();
    let resp = rec.finish(resp).await;
    assert_eq!(resp.headers()["audit-id"], id.as_str());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&body[..], br#"{"kind":"Pod","metadata":{"name":"web"}}"#);

    let events = drain(&rx);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["stage"], "RequestReceived");
    assert_eq!(events[0]["auditID"], id.as_str());
    assert_eq!(events[0]["userAgent"], "kubectl/v1.31.0");
    assert!(events[0].get("responseStatus").is_none());
    assert_eq!(
        events[0]["stageTimestamp"],
        events[0]["requestReceivedTimestamp"]
    );
    let done = &events[1];
    assert_eq!(done["stage"], "ResponseComplete");
    assert_eq!(done["verb"], "create");
    assert_eq!(
        done["objectRef"],
        json!({"resource": "pods", "namespace": "default", "name": "web", "apiVersion": "v1"})
    );
    assert_eq!(done["responseStatus"], json!({"metadata": {}, "code": 201}));
    assert_eq!(done["requestObject"]["metadata"]["name"], "web");
    assert_eq!(done["responseObject"]["kind"], "Pod");
    assert_eq!(
        done["annotations"],
        json!({"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""})
    );
}

#[test]
fn request_bodies_decode_from_json_and_yaml() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
    assert_eq!(decode(pod.to_string().as_bytes()), Some(pod.clone()));
    assert_eq!(
        decode(b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n"),
        Some(pod.clone())
    );
    assert_eq!(decode(b""), None);
}

#[tokio::test]
async fn a_forbidden_request_records_the_decision_and_status() {
    let (auditor, rx) = test_auditor("- level: Metadata\n", 10);
    let p = parts("GET", "/api/v1/namespaces/default/pods", &[]);
    let mut rec = Record::start(Some(&auditor), &p);
    let attrs = pods_attrs("list");
    let nobody = UserInfo {
        name: "nobody".into(),
        ..Default::default()
    };
    rec.begin(&tim(), &attrs);
    rec.impersonated(&nobody);
    let why = "no RBAC policy matched";
    rec.authorized(&Decision::NoOpinion(why.into()));
    let e = ApiError::forbidden_request("nobody", &attrs, why);
    rec.failed(&e);
    let _ = rec.finish(e.into_response()).await;
    let events = drain(&rx);
    let done = &events[1];
    assert_eq!(done["user"]["username"], "tim@k8s.io");
    assert_eq!(done["impersonatedUser"], json!({"username": "nobody"}));
    assert_eq!(done["responseStatus"]["code"], 403);
    assert_eq!(done["responseStatus"]["reason"], "Forbidden");
    assert_eq!(done["annotations"][DECISION_ANNOTATION], "forbid");
    assert_eq!(done["annotations"][REASON_ANNOTATION], why);
    // Metadata level: no objects.
    assert!(done.get("responseObject").is_none());
}

#[tokio::test]
async fn a_failed_authentication_is_one_response_started_event_without_a_user() {
    let (auditor, rx) = test_auditor("- level: Metadata\n", 10);
    let p = parts(
        "GET",
        "/api/v1/namespaces/default/pods",
        &[("authorization", "Bearer nope")],
    );
    let mut rec = Record::start(Some(&auditor), &p);
    rec.unauthenticated(&p.headers, false, &pods_attrs("list"));
    let e = ApiError::unauthorized();
    rec.failed(&e);
    let _ = rec.finish(e.into_response()).await;
    let events = drain(&rx);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["stage"], "ResponseStarted");
    assert_eq!(events[0]["user"], json!({}));
    assert_eq!(
        events[0]["responseStatus"],
        json!({"metadata": {}, "message": "Authentication failed, attempted: bearer", "code": 401})
    );
}

#[tokio::test]
async fn a_watch_completes_when_its_stream_ends() {
    let (auditor, rx) = test_auditor("- level: RequestResponse\n", 10);
    let p = parts("GET", "/api/v1/namespaces/default/pods?watch=1", &[]);
    let mut rec = Record::start(Some(&auditor), &p);
    rec.begin(&tim(), &pods_attrs("watch"));
    let resp = rec
        .finish(Response::new(Body::from("{\"type\":\"ADDED\"}\n")))
        .await;
    let stages = |evs: &[Value]| -> Vec<String> {
        evs.iter()
            .map(|e| e["stage"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(stages(&drain(&rx)), ["RequestReceived", "ResponseStarted"]);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&body[..], b"{\"type\":\"ADDED\"}\n");
    let rest = drain(&rx);
    assert_eq!(stages(&rest), ["ResponseComplete"]);
    // Watch events are not the response object.
    assert!(rest[0].get("responseObject").is_none());
}

#[tokio::test]
async fn unaudited_requests_get_an_audit_id_and_no_event() {
    let (auditor, rx) = test_auditor("- {level: None, nonResourceURLs: [/version]}\n", 10);
    let p = parts("GET", "/version", &[("audit-id", "mine")]);
    let mut rec = Record::start(Some(&auditor), &p);
    rec.begin(
        &tim(),
        &Attributes {
            verb: "get",
            path: "/version",
            ..Default::default()
        },
    );
    let resp = rec.finish(Response::new(Body::empty())).await;
    assert_eq!(resp.headers()["audit-id"], "mine");
    assert!(drain(&rx).is_empty());
    // With no audit log at all, the ID is still given.
    let rec = Record::start(None, &parts("GET", "/version", &[]));
    let resp = rec.finish(Response::new(Body::empty())).await;
    assert_eq!(resp.headers()["audit-id"].len(), 36);
}

#[test]
fn a_full_buffer_drops_events_and_counts_them() {
    let (auditor, _rx) = test_auditor("- level: Metadata\n", 1);
    let p = parts("GET", "/api/v1/namespaces/default/pods", &[]);
    for _ in 0..3 {
        Record::start(Some(&auditor), &p).begin(&tim(), &pods_attrs("list"));
    }
    let dropped = auditor
        .errors
        .get_or_create(&PluginLabel {
            plugin: "buffered".into(),
        })
        .get();
    assert_eq!(dropped, 2);
    assert_eq!(auditor.events.get(), 3);
}

#[test]
fn the_log_rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let Output::File(mut f) = Output::open(&path, &Options::default()).unwrap() else {
        panic!("a file")
    };
    assert_eq!(
        f.max_size,
        100 * 1024 * 1024,
        "--audit-log-maxsize 0 is 100 MB"
    );
    f.max_size = 100; // bytes, for the test
    let first = format!("{}\n", "a".repeat(59));
    let second = format!("{}\n", "b".repeat(59));
    f.write_line(first.as_bytes()).unwrap();
    f.write_line(second.as_bytes()).unwrap();
    f.file.flush().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "audit.log")
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("audit-") && names[0].ends_with(".log"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&names[0])).unwrap(),
        first
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), second);
}

#[test]
fn rotated_files_beyond_maxbackup_are_removed_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let opts = Options {
        max_backups: 2,
        ..Default::default()
    };
    let Output::File(f) = Output::open(&path, &opts).unwrap() else {
        panic!("a file")
    };
    let names = [
        "audit-2024-05-01T12-00-00.000.log",
        "audit-2024-05-01T12-00-01.000.log",
        "audit-2024-05-02T00-00-00.000.log",
        "audit-2024-05-03T00-00-00.000.log",
        "other-2020-01-01T00-00-00.000.log",
    ];
    for n in names {
        std::fs::write(dir.path().join(n), "").unwrap();
    }
    f.prune().unwrap();
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "audit-2024-05-02T00-00-00.000.log",
            "audit-2024-05-03T00-00-00.000.log",
            "audit.log",
            "other-2020-01-01T00-00-00.000.log",
        ]
    );
}

#[test]
fn backups_are_named_as_kube_apiservers_log_library_names_them() {
    let at: Timestamp = "2024-05-01T12:03:04.5678Z".parse().unwrap();
    assert_eq!(
        backup_name(Path::new("/var/log/audit.log"), at),
        Path::new("/var/log/audit-2024-05-01T12-03-04.567.log")
    );
    assert_eq!(
        backup_name(Path::new("audit"), at),
        Path::new("audit-2024-05-01T12-03-04.567")
    );
}
