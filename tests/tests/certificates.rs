//! TLS bootstrapping as a joining node does it, and CertificateSigningRequests as people
//! handle them through the real kubectl: a bootstrap-token user asks for `system:node:<name>`'s
//! client certificate, the controller-manager approves and signs it, and the certificate
//! authenticates as that node; `kubectl get csr` prints kubectl's columns; `kubectl certificate
//! approve|deny` needs the `approve` verb on the request's signer.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use skiff_e2e::{ApiServer, Backend, Component, ControllerManager, wait_until};

const WAIT: Duration = Duration::from_secs(30);
/// A bootstrap token's user as the token file names it (`system:bootstrap:<token id>` in
/// `system:bootstrappers`, as the bootstrap token authenticator names it), and a person.
const TOKENS: &str = "07401b.f395accd246ae52d,system:bootstrap:07401b,07401b,\"system:bootstrappers\"\ncarol-token,carol,carol,\"people\"\n";
const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// A private key and a PEM request for `cn` in groups `orgs`.
fn request(cn: &str, orgs: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key.serialize_pem(), pem)
}

fn csr(name: &str, signer: &str, pem: &str, usages: &[&str]) -> Value {
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer,
            "usages": usages,
        },
    })
}

fn ca(server: &ApiServer) -> String {
    std::fs::read_to_string(server.data_dir().join("pki/ca.crt")).unwrap()
}

/// A kubeconfig that authenticates with `token`.
fn token_kubeconfig(server: &ApiServer, name: &str, token: &str) -> PathBuf {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca(server));
    server.write_file(
        &format!("{name}.kubeconfig"),
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
            server.url()
        ),
    )
}

/// A kubeconfig that authenticates with the certificate a CSR was issued and its key.
fn certificate_kubeconfig(server: &ApiServer, name: &str, cert: &str, key: &str) -> PathBuf {
    let client = skiff_common::pki::CertKey {
        cert_pem: cert.into(),
        key_pem: key.into(),
    };
    let path = server.dir().join(format!("{name}.kubeconfig"));
    skiff_common::pki::write_kubeconfig(
        &path,
        &skiff_common::pki::kubeconfig(&server.url(), &ca(server), &client, name),
    )
    .unwrap();
    path
}

/// The controller-manager with only the CSR controllers, signing with the cluster CA.
fn signer(server: &ApiServer) -> Component {
    let pki = server.data_dir().join("pki");
    let (cert, key) = (pki.join("ca.crt"), pki.join("ca.key"));
    ControllerManager::start_with_args(
        server,
        &[
            "--leader-elect=false",
            "--controllers=csrapproving,csrsigning",
            "--cluster-signing-cert-file",
            cert.to_str().unwrap(),
            "--cluster-signing-key-file",
            key.to_str().unwrap(),
        ],
    )
}

/// Waits for `name`'s certificate; returns it (PEM).
fn issued(server: &ApiServer, name: &str, cm: &Component) -> String {
    let cert = |s: &ApiServer| {
        let out = s.kubectl(&["get", "csr", name, "-o", "jsonpath={.status.certificate}"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(
        wait_until(WAIT, || !cert(server).is_empty()),
        "csr {name} was never issued:\n{}\ncontroller-manager log:\n{}",
        server.kubectl_ok(&["get", "csr", name, "-o", "yaml"]),
        cm.log_text()
    );
    let der = base64::engine::general_purpose::STANDARD
        .decode(cert(server))
        .unwrap();
    String::from_utf8(der).unwrap()
}

/// `kubectl auth whoami` with `kubeconfig`: (username, groups).
fn whoami(server: &ApiServer, kubeconfig: &std::path::Path) -> (String, Vec<String>) {
    let out = server.kubectl_ok(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "auth",
        "whoami",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let info = &v["status"]["userInfo"];
    let groups = info["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    (
        info["username"].as_str().unwrap_or_default().to_string(),
        groups,
    )
}

#[test]
fn a_bootstrapping_node_gets_its_client_certificate_approved_and_signed() {
    let server = ApiServer::start_with_tokens(Backend::Embedded, TOKENS);
    // The bindings kubeadm makes for TLS bootstrapping.
    for (name, role, group) in [
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "system:bootstrappers",
        ),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:bootstrappers",
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ] {
        server.kubectl_ok(&[
            "create",
            "clusterrolebinding",
            name,
            &format!("--clusterrole={role}"),
            &format!("--group={group}"),
        ]);
    }
    let cm = signer(&server);

    let bootstrap = token_kubeconfig(&server, "bootstrap", "07401b.f395accd246ae52d");
    let (key, pem) = request("system:node:n1", &["system:nodes"]);
    let body = skiff_e2e::fixtures::yaml_documents(&[csr(
        "node-csr-n1",
        KUBELET_CLIENT,
        &pem,
        &["digital signature", "key encipherment", "client auth"],
    )]);
    let boot = bootstrap.to_str().unwrap();
    // The authorizer follows the watch cache: wait until it has the binding.
    assert!(
        wait_until(WAIT, || server
            .kubectl_stdin(&["--kubeconfig", boot, "create", "-f", "-"], &body)
            .status
            .success()),
        "the bootstrapper could not create its CSR: {}",
        String::from_utf8_lossy(
            &server
                .kubectl_stdin(&["--kubeconfig", boot, "create", "-f", "-"], &body)
                .stderr
        )
    );

    let cert = issued(&server, "node-csr-n1", &cm);
    let obj = server.kubectl_json(&["get", "csr", "node-csr-n1"]);
    // The requester is who authenticated, whatever the client sent.
    assert_eq!(obj["spec"]["username"], "system:bootstrap:07401b", "{obj}");
    let groups = obj["spec"]["groups"].as_array().unwrap();
    assert!(groups.contains(&json!("system:bootstrappers")), "{obj}");
    let approved = &obj["status"]["conditions"][0];
    assert_eq!(approved["type"], "Approved", "{obj}");
    assert_eq!(approved["reason"], "AutoApproved", "{obj}");
    assert_eq!(
        approved["message"],
        "Auto approving kubelet client certificate after SubjectAccessReview."
    );

    // kubectl's columns.
    let table = server.kubectl_ok(&["get", "csr"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "node-csr-n1");
    assert_eq!(
        row[2..],
        [
            KUBELET_CLIENT,
            "system:bootstrap:07401b",
            "<none>",
            "Approved,Issued"
        ]
    );

    // The certificate is the node's identity.
    let node = certificate_kubeconfig(&server, "n1", &cert, &key);
    let (user, groups) = whoami(&server, &node);
    assert_eq!(user, "system:node:n1");
    assert!(groups.contains(&"system:nodes".to_string()), "{groups:?}");

    // A request the bootstrapper may not have approved waits: another node's name with
    // another signer is not for the auto-approver.
    let (_, pem) = request("mallory", &["system:masters"]);
    let body =
        skiff_e2e::fixtures::yaml_documents(&[csr("masters", CLIENT, &pem, &["client auth"])]);
    let err = server.kubectl_stdin(&["create", "-f", "-"], &body);
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains(
            "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
        ),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}

#[test]
fn kubectl_certificate_approve_and_deny_need_the_approve_verb_on_the_signer() {
    let server = ApiServer::start_with_tokens(Backend::Embedded, TOKENS);
    let cm = signer(&server);
    // carol may update approvals, and approve for signers of example.com only.
    server.kubectl_stdin_ok(
        &["create", "-f", "-"],
        &skiff_e2e::fixtures::yaml_documents(&[
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "example-approver"},
                "rules": [
                    {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["get", "list"]},
                    {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/approval"], "verbs": ["update"]},
                    {"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "resourceNames": ["example.com/*"], "verbs": ["approve"]},
                ],
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "carol-approves"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "example-approver"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}],
            }),
        ]),
    );
    let (alice_key, alice) = request("alice", &["devs"]);
    let (_, bob) = request("bob", &[]);
    let (_, eve) = request("eve", &[]);
    server.kubectl_create(&[
        csr("alice", CLIENT, &alice, &["client auth"]),
        csr("bob", "example.com/custom", &bob, &["client auth"]),
        csr("eve", "example.com/custom", &eve, &["client auth"]),
    ]);
    let out = server.kubectl_ok(&["get", "csr", "bob"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[2..],
        ["example.com/custom", "admin", "<none>", "Pending"],
        "{out}"
    );

    // A person approves a client certificate; the signer issues it.
    let out = server.kubectl_ok(&["certificate", "approve", "alice"]);
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/alice approved"
    );
    let cert = issued(&server, "alice", &cm);
    let alice_kc = certificate_kubeconfig(&server, "alice", &cert, &alice_key);
    assert_eq!(
        whoami(&server, &alice_kc),
        (
            "alice".to_string(),
            vec!["devs".to_string(), "system:authenticated".to_string()]
        )
    );

    // carol may not approve for signers outside example.com...
    let carol = token_kubeconfig(&server, "carol", "carol-token");
    let carol = carol.to_str().unwrap();
    let (_, frank) = request("frank", &[]);
    server.kubectl_create(&[csr("frank", CLIENT, &frank, &["client auth"])]);
    let denied = |name: &str| {
        let out = server.kubectl(&["--kubeconfig", carol, "certificate", "approve", name]);
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(
        wait_until(WAIT, || {
            denied("frank").contains("forbidden: user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\"")
        }),
        "{}",
        denied("frank")
    );
    // ...but may within it, with the wildcard.
    let out = server.kubectl_ok(&["--kubeconfig", carol, "certificate", "approve", "bob"]);
    assert!(out.contains("/bob approved"), "{out}");
    let out = server.kubectl_ok(&["--kubeconfig", carol, "certificate", "deny", "eve"]);
    assert!(out.contains("/eve denied"), "{out}");

    let table = server.kubectl_ok(&["get", "csr"]);
    let condition = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_default()
            .to_string()
    };
    // Nobody signs for example.com: approved, never issued.
    assert_eq!(condition("bob"), "Approved", "{table}");
    assert_eq!(condition("eve"), "Denied", "{table}");
    assert_eq!(condition("frank"), "Pending", "{table}");
    assert_eq!(condition("alice"), "Approved,Issued", "{table}");

    // Approved and Denied exclude each other.
    let mut both = server.kubectl_json(&["get", "csr", "bob"]);
    both["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Denied", "status": "True"}));
    let reply = server.http().put_json(
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/bob/approval",
        &both,
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("Approved and Denied conditions are mutually exclusive"),
        "{}",
        reply.body
    );
}

/// Runs skiffctl with `server`'s kubeconfig.
fn skiffctl(server: &ApiServer, args: &[&str]) -> std::process::Output {
    std::process::Command::new(skiff_e2e::sibling_binary("skiffctl"))
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(args)
        .output()
        .expect("run skiffctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// A request's conditions without their times, which differ between runs.
fn conditions(server: &ApiServer, name: &str) -> Vec<Value> {
    let obj = server.kubectl_json(&["get", "csr", name]);
    obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            let map = c.as_object_mut().unwrap();
            map.remove("lastUpdateTime");
            map.remove("lastTransitionTime");
            c
        })
        .collect()
}

#[test]
fn skiffctl_certificate_approve_and_deny_as_kubectl_does() {
    let server = ApiServer::start(Backend::Embedded);
    let mut objects = Vec::new();
    for name in ["ours", "theirs", "refused", "refused-by-kubectl"] {
        let (_, pem) = request(name, &[]);
        objects.push(csr(name, "example.com/custom", &pem, &["client auth"]));
    }
    server.kubectl_create(&objects);

    // Approving: the same line, the same condition as kubectl's.
    let out = skiffctl(&server, &["certificate", "approve", "ours"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "certificatesigningrequest.certificates.k8s.io/ours approved"
    );
    server.kubectl_ok(&["certificate", "approve", "theirs"]);
    let approved = conditions(&server, "ours");
    assert_eq!(
        approved,
        [json!({
            "type": "Approved",
            "status": "True",
            "reason": "KubectlApprove",
            "message": "This CSR was approved by kubectl certificate approve.",
        })]
    );
    assert_eq!(approved, conditions(&server, "theirs"));

    // Denying, likewise.
    let out = skiffctl(&server, &["certificate", "deny", "refused"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "certificatesigningrequest.certificates.k8s.io/refused denied"
    );
    server.kubectl_ok(&["certificate", "deny", "refused-by-kubectl"]);
    assert_eq!(
        conditions(&server, "refused"),
        [json!({
            "type": "Denied",
            "status": "True",
            "reason": "KubectlDeny",
            "message": "This CSR was denied by kubectl certificate deny.",
        })]
    );
    assert_eq!(
        conditions(&server, "refused"),
        conditions(&server, "refused-by-kubectl")
    );

    // Approving again is quietly the same, with or without --force; the condition stays one.
    for args in [
        &["certificate", "approve", "ours"][..],
        &["certificate", "approve", "ours", "--force"],
    ] {
        let ours = skiffctl(&server, args);
        let theirs = server.kubectl(args);
        assert!(ours.status.success(), "{}", text(&ours.stderr));
        assert_eq!(text(&ours.stdout), text(&theirs.stdout), "{args:?}");
        assert_eq!(conditions(&server, "ours"), approved);
    }

    // The opposite decision, even forced, and a missing request fail as kubectl's do.
    for args in [
        &["certificate", "approve", "refused"][..],
        &["certificate", "deny", "ours", "--force"],
        &["certificate", "approve", "nobody"],
    ] {
        let ours = skiffctl(&server, args);
        let theirs = server.kubectl(args);
        assert_eq!(ours.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&ours.stderr), text(&theirs.stderr), "{args:?}");
    }
    assert_eq!(
        text(&skiffctl(&server, &["certificate", "approve", "refused"]).stderr),
        "error: certificate signing request \"refused\" is already Denied"
    );

    // skiffctl get csr shows the CONDITION column as kubectl does.
    let out = skiffctl(&server, &["get", "csr"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ours = String::from_utf8_lossy(&out.stdout).to_string();
    let theirs = server.kubectl_ok(&["get", "csr"]);
    let column = |table: &str| -> Vec<(String, String)> {
        table
            .lines()
            .map(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                (cells[0].to_string(), cells[cells.len() - 1].to_string())
            })
            .collect()
    };
    assert_eq!(column(&ours), column(&theirs), "{ours}\n{theirs}");
    assert!(
        column(&ours).contains(&("refused".to_string(), "Denied".to_string())),
        "{ours}"
    );
    assert!(
        column(&ours).contains(&("ours".to_string(), "Approved".to_string())),
        "{ours}"
    );
}
