//! Requests no well-behaved client sends, straight over HTTPS: each gets the right 4xx `Status`
//! (never a 5xx, never a crash) and changes nothing that is stored.

use serde_json::{Value, json};
use skiff_e2e::fixtures::config_map;
use skiff_e2e::{ApiServer, Backend, Http};

skiff_e2e::for_each_backend!(
    bad_input_gets_a_4xx_status_and_changes_nothing,
    unauthenticated_requests_are_refused,
    bearer_tokens_from_the_token_file_authenticate,
    health_version_and_metrics_endpoints,
);

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Names and resourceVersions of everything a bad request could have touched.
fn stored_state(http: &Http) -> Vec<(String, String)> {
    let mut state = Vec::new();
    for path in [
        CONFIGMAPS,
        "/api/v1/namespaces/default/secrets",
        "/apis/apps/v1/namespaces/default/deployments",
    ] {
        let reply = http.get(path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        for item in reply.json()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let meta = &item["metadata"];
            state.push((
                format!("{path}/{}", meta["name"].as_str().unwrap_or_default()),
                meta["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    state
}

/// One bad request and the status it must get.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    code: u16,
    reason: &'static str,
    /// Something the Status message must mention, to show the right check fired.
    mentions: &'static str,
}

fn bad_input_gets_a_4xx_status_and_changes_nothing(backend: Backend) {
    let server = ApiServer::start(backend);
    let http = server.http();
    let created = http.post_json(CONFIGMAPS, &config_map("existing").data("k", "v").build());
    assert_eq!(created.status, 201, "{}", created.body);
    let existing = created.json();

    let json_body = |v: Value| v.to_string().into_bytes();
    let mut renamed = existing.clone();
    renamed["metadata"]["name"] = json!("other");
    renamed["data"]["k"] = json!("changed");
    let mut other_namespace = config_map("elsewhere").build();
    other_namespace["metadata"]["namespace"] = json!("kube-system");
    let mut unknown_field = config_map("strict").build();
    unknown_field["datta"] = json!({"k": "v"});
    let huge = config_map("huge")
        .data("blob", &"x".repeat(3 * 1024 * 1024 + 512 * 1024))
        .build();
    let mut deployment_as_v1 = skiff_e2e::fixtures::deployment("web").build();
    deployment_as_v1["apiVersion"] = json!("v1");

    let cases = vec![
        Case {
            what: "malformed JSON",
            method: "POST",
            path: CONFIGMAPS.into(),
            content_type: "application/json",
            body: br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"broken""#.to_vec(),
            code: 400,
            reason: "BadRequest",
            mentions: "",
        },
        Case {
            what: "malformed YAML",
            method: "POST",
            path: CONFIGMAPS.into(),
            content_type: "application/yaml",
            body: b"apiVersion: v1\nkind: ConfigMap\nmetadata: [name: broken\n".to_vec(),
            code: 400,
            reason: "BadRequest",
            mentions: "",
        },
        Case {
            what: "a number where a string belongs",
            method: "POST",
            path: CONFIGMAPS.into(),
            content_type: "application/json",
            body: json_body(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typed"}, "data": {"k": 1}}),
            ),
            code: 400,
            reason: "BadRequest",
            mentions: "",
        },
        Case {
            what: "a kind that does not match the URL",
            method: "POST",
            path: CONFIGMAPS.into(),
            content_type: "application/json",
            body: json_body(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong-kind"}}),
            ),
            code: 400,
            reason: "BadRequest",
            mentions: "Secret",
        },
        Case {
            what: "an apiVersion that does not match the URL",
            method: "POST",
            path: "/apis/apps/v1/namespaces/default/deployments".into(),
            content_type: "application/json",
            body: json_body(deployment_as_v1),
            code: 400,
            reason: "BadRequest",
            mentions: "",
        },
        Case {
            what: "a name that does not match the URL on PUT",
            method: "PUT",
            path: format!("{CONFIGMAPS}/existing"),
            content_type: "application/json",
            body: json_body(renamed),
            code: 400,
            reason: "BadRequest",
            mentions: "other",
        },
        Case {
            what: "a namespace that does not match the URL",
            method: "POST",
            path: CONFIGMAPS.into(),
            content_type: "application/json",
            body: json_body(other_namespace),
            code: 400,
            reason: "BadRequest",
            mentions: "namespace",
        },
        Case {
            what: "a body over 3 MiB",
            method: "POST",
            path: CONFIGMAPS.into(),
            content_type: "application/json",
            body: json_body(huge),
            code: 413,
            reason: "RequestEntityTooLarge",
            mentions: "Request entity too large: limit is 3145728",
        },
        Case {
            what: "an unknown field under fieldValidation=Strict",
            method: "POST",
            path: format!("{CONFIGMAPS}?fieldValidation=Strict"),
            content_type: "application/json",
            body: json_body(unknown_field),
            code: 400,
            reason: "BadRequest",
            mentions: r#"unknown field "datta""#,
        },
        Case {
            what: "neither name nor generateName",
            method: "POST",
            path: CONFIGMAPS.into(),
            content_type: "application/json",
            body: json_body(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})),
            code: 422,
            reason: "Invalid",
            mentions: "metadata.name",
        },
        Case {
            what: "a media type the server does not speak",
            method: "POST",
            path: CONFIGMAPS.into(),
            content_type: "text/plain",
            body: b"hello".to_vec(),
            code: 415,
            reason: "UnsupportedMediaType",
            mentions: "",
        },
    ];

    let before = stored_state(&http);
    let mut failures = Vec::new();
    for case in cases {
        let reply = match http.try_send(case.method, &case.path, Some(case.content_type), case.body)
        {
            Ok(reply) => reply,
            Err(e) => {
                failures.push(format!(
                    "{}: {} {}: no response: {e}",
                    case.what, case.method, case.path
                ));
                continue;
            }
        };
        let status: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        let message = status["message"].as_str().unwrap_or_default();
        let right = reply.status == case.code
            && status["kind"] == "Status"
            && status["apiVersion"] == "v1"
            && status["status"] == "Failure"
            && status["code"] == case.code
            && status["reason"] == case.reason
            && message.contains(case.mentions);
        if !right {
            failures.push(format!(
                "{}: {} {} should get {} {} (message mentioning {:?}); got HTTP {}: {}",
                case.what,
                case.method,
                case.path,
                case.code,
                case.reason,
                case.mentions,
                reply.status,
                truncate(&reply.body)
            ));
        }
        let after = stored_state(&http);
        if after != before {
            failures.push(format!(
                "{}: stored state changed:\nbefore {before:?}\nafter  {after:?}",
                case.what
            ));
        }
    }
    let health = http.get("/healthz");
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, "ok"),
        "the server must survive bad input"
    );
    assert!(
        failures.is_empty(),
        "{} bad request(s) handled wrongly:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn truncate(body: &str) -> String {
    if body.len() > 400 {
        format!("{}…", &body[..body.floor_char_boundary(400)])
    } else {
        body.to_owned()
    }
}

fn unauthenticated_requests_are_refused(backend: Backend) {
    let server = ApiServer::start(backend);
    let admin = server.http();
    let before = stored_state(&admin);
    // Wrong credentials: 401. No credentials: the anonymous user, whom RBAC grants nothing
    // here (403), as on Kubernetes with --anonymous-auth on.
    for (who, http, code, reason) in [
        (
            "an unknown token",
            server.http_with_token("not-a-token"),
            401,
            "Unauthorized",
        ),
        ("anonymous", server.http_anonymous(), 403, "Forbidden"),
    ] {
        let list = http.get(CONFIGMAPS);
        let create = http.post_json(CONFIGMAPS, &config_map("sneaky").build());
        for (what, reply) in [("list", list), ("create", create)] {
            assert_eq!(reply.status, code, "{what} by {who}: {}", reply.body);
            let status = reply.json();
            assert_eq!(status["kind"], "Status", "{what} by {who}");
            assert_eq!(status["code"], code, "{what} by {who}");
            assert_eq!(status["reason"], reason, "{what} by {who}");
        }
    }
    assert_eq!(
        stored_state(&admin),
        before,
        "unauthenticated requests changed the stored state"
    );
}

fn bearer_tokens_from_the_token_file_authenticate(backend: Backend) {
    let server = ApiServer::start_with_tokens(backend, "s3cret-token,alice,1001,\"devs,ops\"\n");
    let alice = server.http_with_token("s3cret-token");
    // Authenticated, but RBAC grants alice nothing yet.
    let reply = alice.get("/api/v1/namespaces");
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        reply.json()["message"],
        "namespaces is forbidden: User \"alice\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    // Her group is bound to a role that may: she may now list and create.
    server.kubectl_ok(&[
        "create",
        "clusterrole",
        "cm-editor",
        "--verb=get,list,create",
        "--resource=configmaps,namespaces",
    ]);
    server.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "devs-edit",
        "--clusterrole=cm-editor",
        "--group=devs",
    ]);
    assert!(
        skiff_e2e::wait_until(std::time::Duration::from_secs(10), || {
            alice.get(CONFIGMAPS).status == 200
        }),
        "the binding never took effect"
    );
    let created = alice.post_json(CONFIGMAPS, &config_map("from-alice").build());
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        server
            .http_with_token("s3cret-tokem")
            .get("/api/v1/namespaces")
            .status,
        401
    );
}

fn health_version_and_metrics_endpoints(backend: Backend) {
    let server = ApiServer::start(backend);
    let http = server.http();
    for path in ["/healthz", "/livez", "/readyz"] {
        let reply = http.get(path);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "ok"),
            "GET {path}"
        );
    }
    let version = http.get("/version").json();
    assert_eq!(version["major"], "1");
    assert!(
        version["minor"]
            .as_str()
            .is_some_and(|m| m.starts_with("33")),
        "{version:#}"
    );
    let metrics = http.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("# TYPE"),
        "/metrics is not Prometheus text: {}",
        truncate(&metrics.body)
    );
}
