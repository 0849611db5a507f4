//! Bootstrap tokens as `kubeadm join` uses them: the apiserver authenticates
//! `<id>.<secret>` against `kube-system/bootstrap-token-<id>` (`--enable-bootstrap-token-auth`),
//! the controller-manager's `bootstrapsigner` signs `kube-public/cluster-info` with each
//! signing token and its `tokencleaner` deletes expired ones.

use std::time::Duration;

use skiff_e2e::{ApiServer, Backend, ControllerManager, wait_until};

const TOKEN: &str = "abcdef.0123456789abcdef";
/// `apiVersion: v1\nkind: Config\n` signed with [`TOKEN`], computed once with Python's
/// `hmac` and `base64` as cluster-bootstrap's jws package does.
const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\n";
const SIGNATURE: &str =
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..vH_kT4yiol-nrAWgjfCYqvum5wsKETXe0S7OOp1VgnE";

/// `kube-system/bootstrap-token-<id>` as `kubeadm token create` writes it, with `extra`
/// data (`key=value`); a leftover of a crashed run is replaced.
fn token_secret(server: &ApiServer, id: &str, secret: &str, extra: &[&str]) {
    let name = format!("bootstrap-token-{id}");
    server.kubectl(&[
        "delete",
        "secret",
        &name,
        "-n",
        "kube-system",
        "--ignore-not-found",
    ]);
    let mut args = vec![
        "create".to_string(),
        "secret".into(),
        "generic".into(),
        name,
        "-n".into(),
        "kube-system".into(),
        "--type=bootstrap.kubernetes.io/token".into(),
        format!("--from-literal=token-id={id}"),
        format!("--from-literal=token-secret={secret}"),
        "--from-literal=usage-bootstrap-authentication=true".into(),
        "--from-literal=usage-bootstrap-signing=true".into(),
    ];
    args.extend(extra.iter().map(|e| format!("--from-literal={e}")));
    server.kubectl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_bootstrap_token_authenticates_as_system_bootstrap_id_until_it_expires() {
    let server = ApiServer::start_with_args(Backend::Embedded, &["--enable-bootstrap-token-auth"]);
    token_secret(
        &server,
        "abcdef",
        "0123456789abcdef",
        &["auth-extra-groups=system:bootstrappers:kubeadm:default-node-token"],
    );
    // The authenticator reads the watch cache: wait for it to have the Secret.
    let whoami = || server.kubectl(&["auth", "whoami", "-o", "json", "--token", TOKEN]);
    assert!(
        wait_until(Duration::from_secs(10), || whoami().status.success()),
        "the bootstrap token never authenticated:\n{}",
        String::from_utf8_lossy(&whoami().stderr)
    );
    let review: serde_json::Value = serde_json::from_slice(&whoami().stdout).unwrap();
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "system:bootstrap:abcdef");
    assert_eq!(
        user["groups"],
        serde_json::json!([
            "system:bootstrappers",
            "system:bootstrappers:kubeadm:default-node-token",
            "system:authenticated"
        ])
    );

    // A wrong secret, an unknown id and an expired token are all 401.
    let status = |token: &str| server.http_with_token(token).get("/api").status;
    assert_eq!(status("abcdef.0123456789abcdee"), 401);
    assert_eq!(status("zzzzzz.0123456789abcdef"), 401);
    token_secret(
        &server,
        "expird",
        "0123456789abcdef",
        &["expiration=2000-01-01T00:00:00Z"],
    );
    token_secret(
        &server,
        "later1",
        "0123456789abcdef",
        &["expiration=2999-01-01T00:00:00Z"],
    );
    // Once the later token authenticates, the cache also holds the expired one.
    assert!(wait_until(Duration::from_secs(10), || status(
        "later1.0123456789abcdef"
    ) == 200));
    assert_eq!(status("expird.0123456789abcdef"), 401);
    let out = server.kubectl(&["auth", "whoami", "--token", "expird.0123456789abcdef"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Off without the flag, as in kube-apiserver.
    let plain = ApiServer::start(Backend::Embedded);
    token_secret(&plain, "abcdef", "0123456789abcdef", &[]);
    assert!(
        plain
            .kubectl_ok(&[
                "get",
                "secret",
                "-n",
                "kube-system",
                "bootstrap-token-abcdef"
            ])
            .contains("abcdef")
    );
    assert_eq!(plain.http_with_token(TOKEN).get("/api").status, 401);
}

#[test]
fn bootstrapsigner_signs_cluster_info_and_tokencleaner_deletes_expired_tokens() {
    let server = ApiServer::start_with_args(Backend::Embedded, &["--enable-bootstrap-token-auth"]);
    server.kubectl(&["create", "namespace", "kube-public"]);
    server.kubectl(&[
        "delete",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        "--ignore-not-found",
    ]);
    server.kubectl_ok(&[
        "create",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        &format!("--from-literal=kubeconfig={KUBECONFIG}"),
    ]);
    token_secret(&server, "abcdef", "0123456789abcdef", &[]);
    token_secret(
        &server,
        "expird",
        "0123456789abcdef",
        &["expiration=2000-01-01T00:00:00Z"],
    );
    let _cm = ControllerManager::start_with_args(
        &server,
        &[
            "--leader-elect=false",
            "--controllers=bootstrapsigner,tokencleaner",
        ],
    );

    let data = || {
        server.kubectl_json(&["get", "configmap", "cluster-info", "-n", "kube-public"])["data"]
            .clone()
    };
    assert!(
        wait_until(Duration::from_secs(30), || data()["jws-kubeconfig-abcdef"]
            .is_string()),
        "cluster-info was never signed: {}",
        data()
    );
    let data = data();
    assert_eq!(data["kubeconfig"], KUBECONFIG);
    assert_eq!(data["jws-kubeconfig-abcdef"], SIGNATURE);
    assert!(skiff_api::bootstrap_token::signature_is_valid(
        SIGNATURE,
        data["kubeconfig"].as_str().unwrap(),
        "abcdef",
        "0123456789abcdef"
    ));
    // The expired token signs nothing, and is deleted.
    assert!(data.get("jws-kubeconfig-expird").is_none(), "{data}");
    let gone = || {
        !server
            .kubectl_ok(&["get", "secrets", "-n", "kube-system", "-o", "name"])
            .contains("bootstrap-token-expird")
    };
    assert!(
        wait_until(Duration::from_secs(30), gone),
        "the expired token was never deleted"
    );
    assert!(
        server
            .kubectl_ok(&["get", "secrets", "-n", "kube-system", "-o", "name"])
            .contains("bootstrap-token-abcdef")
    );

    // A deleted token's signature goes.
    server.kubectl_ok(&[
        "delete",
        "secret",
        "bootstrap-token-abcdef",
        "-n",
        "kube-system",
    ]);
    assert!(
        wait_until(Duration::from_secs(30), || server.kubectl_json(&[
            "get",
            "configmap",
            "cluster-info",
            "-n",
            "kube-public"
        ])["data"]
            .get("jws-kubeconfig-abcdef")
            .is_none()),
        "the deleted token's signature stayed"
    );
}
