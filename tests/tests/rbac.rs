//! Authorization as users see it through the real kubectl: RBAC decisions and Kubernetes'
//! 403 messages, `kubectl auth can-i` agreeing with what is enforced, impersonation, the
//! Node authorizer, anonymous requests and the bootstrap policy.

use std::time::Duration;

use serde_json::json;
use skiff_e2e::{ApiServer, Backend, wait_until};

const BOT: &str = "system:serviceaccount:team:bot";

/// A namespace `team` with pods, a secret, and a ServiceAccount `bot` bound to a Role that
/// may read pods (and their logs) only.
fn team(server: &ApiServer) {
    server.kubectl_ok(&["create", "namespace", "team"]);
    server.kubectl_ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    server.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "team",
        "--verb=get,list,watch",
        "--resource=pods,pods/log",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "bot-reads",
        "-n",
        "team",
        "--role=pod-reader",
        "--serviceaccount=team:bot",
    ]);
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        "team",
        "--from-literal=pw=x",
    ]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    server.kubectl_create(&[pod]);
}

/// Waits until the authorizer has seen the bindings just written (it follows the watch cache).
fn wait_allowed(server: &ApiServer, args: &[&str]) {
    assert!(
        wait_until(Duration::from_secs(10), || server
            .kubectl(args)
            .status
            .success()),
        "kubectl {} never succeeded:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&server.kubectl(args).stderr)
    );
}

#[test]
fn a_role_grants_what_it_lists_and_403s_say_why_as_kubernetes_does() {
    let server = ApiServer::start(Backend::Embedded);
    team(&server);
    wait_allowed(&server, &["get", "pods", "-n", "team", "--as", BOT]);
    let out = server.kubectl_ok(&["get", "pods", "-n", "team", "--as", BOT]);
    assert!(out.contains("web"), "{out}");

    let err = server.kubectl_fails(&["delete", "pod", "web", "-n", "team", "--as", BOT]);
    assert!(
        err.contains(
            "Error from server (Forbidden): pods \"web\" is forbidden: User \"system:serviceaccount:team:bot\" cannot delete resource \"pods\" in API group \"\" in the namespace \"team\""
        ),
        "{err}"
    );
    let err = server.kubectl_fails(&["get", "secrets", "-n", "team", "--as", BOT]);
    assert!(
        err.contains(
            "secrets is forbidden: User \"system:serviceaccount:team:bot\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team\""
        ),
        "{err}"
    );
    let err = server.kubectl_fails(&["get", "pods", "-n", "default", "--as", BOT]);
    assert!(err.contains("in the namespace \"default\""), "{err}");
    let err = server.kubectl_fails(&["get", "nodes", "--as", BOT]);
    assert!(
        err.contains(
            "nodes is forbidden: User \"system:serviceaccount:team:bot\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        ),
        "{err}"
    );
    // Nothing a refused request asked for happened.
    server.kubectl_ok(&["get", "pod", "web", "-n", "team"]);

    // The Status carries the resource and name, as client libraries read them.
    let reply = server.http().send_with_headers(
        "DELETE",
        "/api/v1/namespaces/team/pods/web",
        None,
        &[("Impersonate-User", BOT)],
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    let status = reply.json();
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["details"], json!({"name": "web", "kind": "pods"}));
}

#[test]
fn a_service_account_token_from_kubectl_create_token_carries_the_accounts_rights() {
    let server = ApiServer::start(Backend::Embedded);
    team(&server);
    let token = server
        .kubectl_ok(&["create", "token", "bot", "-n", "team", "--duration=15m"])
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    let bot = server.http_with_token(&token);
    assert!(
        wait_until(Duration::from_secs(10), || bot
            .get("/api/v1/namespaces/team/pods")
            .status
            == 200),
        "the bot's token cannot list pods"
    );
    let who = bot.post_json(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    );
    assert_eq!(who.status, 201, "{}", who.body);
    assert_eq!(who.json()["status"]["userInfo"]["username"], BOT);
    let reply = bot.delete("/api/v1/namespaces/team/pods/web");
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(bot.get("/api/v1/namespaces/team/secrets").status, 403);
    // kubectl with the token: the same answers.
    let out = server.kubectl(&["get", "secrets", "-n", "team", "--token", &token]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"));
    // The token dies with its ServiceAccount.
    server.kubectl_ok(&["delete", "serviceaccount", "bot", "-n", "team"]);
    assert!(
        wait_until(Duration::from_secs(10), || bot
            .get("/api/v1/namespaces/team/pods")
            .status
            == 401),
        "the token still works after its ServiceAccount was deleted"
    );
    // A lifetime under ten minutes is refused as Kubernetes refuses it.
    server.kubectl_ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    let err = server.kubectl_fails(&["create", "token", "bot", "-n", "team", "--duration=1m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
}

#[test]
fn nobody_grants_what_they_do_not_hold() {
    let server = ApiServer::start(Backend::Embedded);
    server.kubectl_ok(&["create", "namespace", "team"]);
    // dev may manage roles and bindings in team, and read pods there, nothing more.
    server.kubectl_ok(&[
        "create",
        "role",
        "rbac-manager",
        "-n",
        "team",
        "--verb=get,list,create,update",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,pods",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "dev",
        "-n",
        "team",
        "--role=rbac-manager",
        "--user=dev",
    ]);
    let dev = ["--as", "dev"];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(dev.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run =
        |args: Vec<String>| server.kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        wait_until(Duration::from_secs(10), || run(with(&[
            "get", "pods", "-n", "team"
        ]))
        .status
        .success()),
        "dev cannot read pods"
    );
    // What dev holds, dev may hand on.
    let ok = run(with(&[
        "create",
        "role",
        "reader",
        "-n",
        "team",
        "--verb=get,list",
        "--resource=pods",
    ]));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Not more.
    let out = run(with(&[
        "create",
        "role",
        "deleter",
        "-n",
        "team",
        "--verb=delete",
        "--resource=pods",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("roles.rbac.authorization.k8s.io \"deleter\" is forbidden: user \"dev\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"),
        "{err}"
    );
    let out = run(with(&[
        "create",
        "rolebinding",
        "root",
        "-n",
        "team",
        "--clusterrole=cluster-admin",
        "--user=dev",
    ]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With the bind verb on one role, dev may bind that role (and only it).
    server.kubectl_ok(&[
        "create",
        "role",
        "binder",
        "-n",
        "team",
        "--verb=bind",
        "--resource=clusterroles.rbac.authorization.k8s.io",
        "--resource-name=cluster-admin",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "dev-binder",
        "-n",
        "team",
        "--role=binder",
        "--user=dev",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || run(with(&[
            "create",
            "rolebinding",
            "root",
            "-n",
            "team",
            "--clusterrole=cluster-admin",
            "--user=dev"
        ]))
        .status
        .success()),
        "the bind verb did not let dev bind cluster-admin"
    );
    assert!(
        server
            .kubectl(&["get", "role", "deleter", "-n", "team"])
            .status
            .code()
            == Some(1)
    );
}

#[test]
fn pod_security_levels_refuse_and_warn_as_kubernetes_does() {
    let server = ApiServer::start(Backend::Embedded);
    server.kubectl_ok(&["create", "namespace", "locked"]);
    server.kubectl_ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=baseline",
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    let privileged = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "priv", "namespace": "locked"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}],
                 "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}});
    let err = server.kubectl_stdin_fails(
        &["create", "-f", "-"],
        &skiff_e2e::fixtures::yaml_documents(&[privileged]),
    );
    assert!(
        err.contains("pods \"priv\" is forbidden: violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"h\"), privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{err}"
    );
    assert!(
        server
            .kubectl(&["get", "pod", "priv", "-n", "locked"])
            .status
            .code()
            == Some(1)
    );
    // Baseline-clean but not restricted: created, with kubectl printing the warning.
    let plain = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "plain", "namespace": "locked"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let out = server.kubectl_stdin(
        &["create", "-f", "-"],
        &skiff_e2e::fixtures::yaml_documents(&[plain]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false)"),
        "{warning}"
    );
    // An invalid level is refused on the namespace itself.
    let err = server.kubectl_fails(&[
        "label",
        "namespace",
        "locked",
        "--overwrite",
        "pod-security.kubernetes.io/enforce=strict",
    ]);
    assert!(err.contains("Invalid value"), "{err}");
}

#[test]
fn kubectl_auth_can_i_agrees_with_what_is_enforced() {
    let server = ApiServer::start(Backend::Embedded);
    team(&server);
    wait_allowed(&server, &["get", "pods", "-n", "team", "--as", BOT]);
    // (verb, resource, subresource, namespace, and one request it stands for)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        bool,
    );
    let cases: &[Case] = &[
        (
            "get",
            "pods",
            "",
            "team",
            "GET",
            "/api/v1/namespaces/team/pods/web",
            true,
        ),
        (
            "list",
            "pods",
            "",
            "team",
            "GET",
            "/api/v1/namespaces/team/pods",
            true,
        ),
        (
            "get",
            "pods",
            "log",
            "team",
            "GET",
            "/api/v1/namespaces/team/pods/web/log",
            true,
        ),
        (
            "delete",
            "pods",
            "",
            "team",
            "DELETE",
            "/api/v1/namespaces/team/pods/web",
            false,
        ),
        (
            "create",
            "pods",
            "",
            "team",
            "POST",
            "/api/v1/namespaces/team/pods",
            false,
        ),
        (
            "get",
            "secrets",
            "",
            "team",
            "GET",
            "/api/v1/namespaces/team/secrets/db",
            false,
        ),
        (
            "list",
            "pods",
            "",
            "default",
            "GET",
            "/api/v1/namespaces/default/pods",
            false,
        ),
        (
            "get",
            "pods",
            "exec",
            "team",
            "GET",
            "/api/v1/namespaces/team/pods/web/exec",
            false,
        ),
        (
            "list",
            "deployments.apps",
            "",
            "team",
            "GET",
            "/apis/apps/v1/namespaces/team/deployments",
            false,
        ),
    ];
    let http = server.http();
    for (verb, resource, sub, ns, method, path, want) in cases {
        let mut args = vec!["auth", "can-i", verb, resource, "-n", ns, "--as", BOT];
        let flag = format!("--subresource={sub}");
        if !sub.is_empty() {
            args.push(&flag);
        }
        let out = server.kubectl(&args);
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            (said.as_str(), out.status.success()),
            (if *want { "yes" } else { "no" }, *want),
            "kubectl {}",
            args.join(" ")
        );
        let reply =
            http.send_with_headers(method, path, Some(&json!({})), &[("Impersonate-User", BOT)]);
        assert_eq!(
            reply.status == 403,
            !want,
            "{method} {path} as the bot gave {}: {}",
            reply.status,
            reply.body
        );
    }
    let list = server.kubectl_ok(&["auth", "can-i", "--list", "-n", "team", "--as", BOT]);
    let pods = list
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods row:\n{list}"));
    assert!(pods.contains("[get list watch]"), "{list}");
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    assert!(!list.lines().any(|l| l.starts_with("secrets ")), "{list}");

    let me = server.kubectl_ok(&["auth", "whoami", "--as", BOT, "-o", "json"]);
    let me: serde_json::Value = serde_json::from_str(&me).unwrap();
    assert_eq!(me["status"]["userInfo"]["username"], BOT);
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    // kubectl 1.27 asks in v1beta1.
    let old = server.kubectl_v_ok("1.27", &["auth", "whoami"]);
    assert!(
        old.contains("admin") && old.contains("system:masters"),
        "{old}"
    );
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let server = ApiServer::start(Backend::Embedded);
    team(&server);
    let token = server
        .kubectl_ok(&["create", "token", "bot", "-n", "team"])
        .trim()
        .to_string();
    let as_bot = |extra: &[&str]| {
        let mut args = vec!["get", "pods", "-n", "team", "--token", token.as_str()];
        args.extend(extra);
        server.kubectl(&args)
    };
    assert!(
        wait_until(Duration::from_secs(10), || as_bot(&[]).status.success()),
        "the bot cannot list pods with its token"
    );
    // The bot may not pass itself off as someone else, nor add itself to a group.
    for extra in [
        &["--as", "alice"][..],
        &["--as", BOT, "--as-group", "system:masters"][..],
    ] {
        let out = as_bot(extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?}");
        assert!(
            err.contains(
                "is forbidden: User \"system:serviceaccount:team:bot\" cannot impersonate resource"
            ),
            "{extra:?}: {err}"
        );
    }
    // Once allowed to impersonate alice, it may, and then acts as alice (who may do nothing).
    server.kubectl_ok(&[
        "create",
        "clusterrole",
        "impersonate-alice",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=alice",
    ]);
    server.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "bot-as-alice",
        "--clusterrole=impersonate-alice",
        "--serviceaccount=team:bot",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            String::from_utf8_lossy(&as_bot(&["--as", "alice"]).stderr)
                .contains("User \"alice\" cannot list resource \"pods\"")
        }),
        "impersonating alice was not allowed, or did not act as alice"
    );
}

/// A pod bound to `node`, using a secret and a config map.
fn pod_on(name: &str, node: &str, secret: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": secret, "key": "pw"}}}]}]}})
}

#[test]
fn a_node_touches_only_its_own_pods_and_what_they_use() {
    let server = ApiServer::start(Backend::Embedded);
    for s in ["s1", "s2", "unused"] {
        server.kubectl_ok(&["create", "secret", "generic", s, "--from-literal=pw=x"]);
    }
    server.kubectl_create(&[pod_on("a", "n1", "s1"), pod_on("b", "n2", "s2")]);
    let n1 = ["--as", "system:node:n1", "--as-group", "system:nodes"];
    let as_n1 = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(n1.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run =
        |args: Vec<String>| server.kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let patch = r#"{"status":{"message":"seen by n1"}}"#;
    assert!(
        wait_until(Duration::from_secs(10), || run(as_n1(&[
            "patch",
            "pod",
            "a",
            "--subresource=status",
            "--type=merge",
            "-p",
            patch
        ]))
        .status
        .success()),
        "node n1 could not patch the status of its pod"
    );
    let out = run(as_n1(&[
        "patch",
        "pod",
        "b",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pods \"b\" is forbidden: User \"system:node:n1\" cannot ")
            && err.contains("resource \"pods/status\" in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object"),
        "{err}"
    );
    assert!(run(as_n1(&["get", "secret", "s1"])).status.success());
    for s in ["s2", "unused"] {
        let out = run(as_n1(&["get", "secret", s]));
        assert!(!out.status.success(), "n1 read secret {s}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"));
    }
    assert!(
        !run(as_n1(&["get", "secrets"])).status.success(),
        "n1 listed secrets"
    );
    assert_eq!(
        server.kubectl_ok(&["get", "pod", "b", "-o", "jsonpath={.status.message}"]),
        ""
    );
}

#[test]
fn anonymous_requests_see_only_public_information() {
    let server = ApiServer::start(Backend::Embedded);
    let anon = server.http_anonymous();
    assert!(
        wait_until(Duration::from_secs(10), || anon.get("/version").status
            == 200),
        "/version is public"
    );
    let reply = anon.get("/api/v1/namespaces/default/configmaps");
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        reply.json()["message"],
        "configmaps is forbidden: User \"system:anonymous\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let reply = anon.get("/apis");
    assert_eq!(
        reply.status, 403,
        "discovery is for authenticated users: {}",
        reply.body
    );
    assert_eq!(
        reply.json()["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/apis\""
    );

    let closed = ApiServer::start_with_args(Backend::Embedded, &["--anonymous-auth=false"]);
    let reply = closed.http_anonymous().get("/version");
    assert_eq!(reply.status, 401, "{}", reply.body);
}

#[test]
fn the_bootstrap_policy_is_there_and_comes_back() {
    let mut server = ApiServer::start(Backend::Embedded);
    let roles = [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node-proxier",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
    ];
    let mut args = vec!["get", "clusterroles"];
    args.extend(roles);
    server.kubectl_ok(&args);
    // view is aggregated: the controller-manager fills it in; the apiserver keeps the rule.
    let view = server.kubectl_json(&["get", "clusterrole", "view"]);
    assert_eq!(
        view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    server.kubectl_ok(&[
        "get",
        "clusterrolebinding",
        "cluster-admin",
        "system:basic-user",
    ]);
    server.kubectl_ok(&["delete", "clusterrole", "system:basic-user"]);
    server.kubectl_ok(&[
        "patch",
        "clusterrolebinding",
        "system:discovery",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/subjects","value":[]}]"#,
    ]);
    server.restart();
    server.kubectl_ok(&["get", "clusterrole", "system:basic-user"]);
    let discovery = server.kubectl_json(&["get", "clusterrolebinding", "system:discovery"]);
    assert_eq!(discovery["subjects"][0]["name"], "system:authenticated");
}

#[test]
fn the_audit_log_records_who_did_what_as_kubernetes_writes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: None\n  nonResourceURLs: [\"/healthz*\", \"/version\"]\n- level: RequestResponse\n  resources:\n  - group: \"\"\n    resources: [\"configmaps\"]\n- level: Metadata\n",
    )
    .expect("write the policy");
    let log = dir.path().join("audit.log");
    let server = ApiServer::start_with_args(
        Backend::Embedded,
        &[
            "--audit-policy-file",
            &policy.display().to_string(),
            "--audit-log-path",
            &log.display().to_string(),
        ],
    );
    server.kubectl_ok(&["create", "configmap", "audited", "--from-literal=k=v"]);
    let _ = server.kubectl(&["get", "pods", "--as", "nobody"]);
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        let mut found = None;
        wait_until(Duration::from_secs(10), || {
            found = lines().into_iter().find(|e| pred(e));
            found.is_some()
        });
        found
    };
    let create = find(&|e| e["verb"] == "create" && e["objectRef"]["name"] == "audited")
        .expect("no audit event for the create");
    assert_eq!(create["kind"], "Event");
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["level"], "RequestResponse");
    assert_eq!(create["stage"], "ResponseComplete");
    assert_eq!(create["user"]["username"], "admin");
    assert_eq!(create["objectRef"]["resource"], "configmaps");
    assert_eq!(create["objectRef"]["namespace"], "default");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(create["requestObject"]["data"]["k"], "v");
    assert_eq!(create["responseObject"]["metadata"]["name"], "audited");
    assert_eq!(
        create["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    let denied = find(&|e| e["impersonatedUser"]["username"] == "nobody" && e["verb"] == "list")
        .expect("no audit event for the refused list");
    assert_eq!(denied["level"], "Metadata");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert!(denied.get("requestObject").is_none());
    // The stages the policy leaves out, and the URLs it does not audit, are not there.
    assert!(lines().iter().all(|e| e["stage"] != "RequestReceived"));
    assert!(lines().iter().all(|e| e["requestURI"] != "/version"));
}
