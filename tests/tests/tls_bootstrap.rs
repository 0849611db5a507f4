//! TLS bootstrapping as a joining machine does it: a kubelet and a proxy given only a bootstrap
//! token's kubeconfig request their own certificates, the controller-manager approves and
//! signs them, and they end up as `system:node:<name>` and `system:kube-proxy`; the kubelet
//! serves with a certificate from an approved `kubernetes.io/kubelet-serving` request, and
//! with 30-second certificates it rotates them and keeps working; the proxy rotates its own.
//!
//! The proxy runs in a network namespace this test creates (its iptables rules stay there),
//! reaching the apiserver through a veth on 10.253.9.0/30 and a forwarder.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::Value;
use skiff_e2e::{ApiServer, Backend, ControllerManager, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "07401b.f395accd246ae52d";
/// The bootstrap token as the token file names its user (`system:bootstrap:<id>` in
/// `system:bootstrappers`, as the bootstrap-token authenticator names it).
const TOKENS: &str =
    "07401b.f395accd246ae52d,system:bootstrap:07401b,07401b,\"system:bootstrappers\"\n";
const NODE: &str = "tlsboot-n1";
const NETNS: &str = "sktb-proxy";
const HOST_IF: &str = "sktb-host";
const NET: &str = "10.253.9";

/// A bootstrap kubeconfig with the token, reaching the apiserver at `server` (checking its
/// certificate for `server_name`, if given).
fn bootstrap_kubeconfig(
    api: &ApiServer,
    name: &str,
    server: &str,
    server_name: Option<&str>,
) -> PathBuf {
    let ca = std::fs::read_to_string(api.data_dir().join("pki/ca.crt")).unwrap();
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let sni = server_name
        .map(|n| format!("\n    tls-server-name: {n}"))
        .unwrap_or_default();
    api.write_file(
        name,
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}{sni}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {TOKEN}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
        ),
    )
}

/// `kubectl auth whoami` with `kubeconfig`: the username.
fn whoami(api: &ApiServer, kubeconfig: &Path) -> Result<String, String> {
    let out = api.kubectl(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "auth",
        "whoami",
        "-o",
        "json",
    ]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v["status"]["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The `<prefix>-<timestamp>.pem` files in `dir`.
fn pems(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("{prefix}-2")) && name.ends_with(".pem")
        })
        .collect();
    out.sort();
    out
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The network namespace and host veth of the proxy, removed on drop (and before use, in
/// case a crashed run left them).
struct ProxyNet;

impl ProxyNet {
    fn create() -> ProxyNet {
        Self::remove();
        let ok = |args: &[&str]| {
            let out = ip(args);
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(&["netns", "add", NETNS]);
        ok(&[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", "uplink", "netns", NETNS,
        ]);
        ok(&["addr", "add", &format!("{NET}.1/30"), "dev", HOST_IF]);
        ok(&["link", "set", HOST_IF, "up"]);
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{NETNS}"))
            .args(["sh", "-c"])
            .arg(format!(
                "ip addr add {NET}.2/30 dev uplink && ip link set uplink up && ip link set lo up"
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ProxyNet
    }

    fn remove() {
        let _ = ip(&["link", "del", HOST_IF]);
        let _ = ip(&["netns", "del", NETNS]);
    }
}

impl Drop for ProxyNet {
    fn drop(&mut self) {
        Self::remove();
    }
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

/// Forwards TCP connections from `listen` (an address this test created) to `to`.
fn forward(listen: &str, to: std::net::SocketAddr) -> u16 {
    let l = std::net::TcpListener::bind((listen, 0)).expect("bind the forwarder");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(down) = conn else { break };
            let Ok(up) = std::net::TcpStream::connect(to) else {
                continue;
            };
            let (mut d2, mut u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            let (mut d1, mut u1) = (down, up);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut d1, &mut u1);
                let _ = u1.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut d2);
                let _ = d2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

fn log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_kubelet_and_a_proxy_bootstrap_their_identities_and_the_kubelet_rotates_its_certificates() {
    let api = ApiServer::start_with_tokens(Backend::Embedded, TOKENS);
    // The bindings kubeadm makes for TLS bootstrapping and rotation.
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
        api.kubectl_ok(&[
            "create",
            "clusterrolebinding",
            name,
            &format!("--clusterrole={role}"),
            &format!("--group={group}"),
        ]);
    }
    let pki = api.data_dir().join("pki");
    let cm = ControllerManager::start_with_args(
        &api,
        &[
            "--leader-elect=false",
            "--controllers=csrapproving,csrsigning",
            "--cluster-signing-cert-file",
            pki.join("ca.crt").to_str().unwrap(),
            "--cluster-signing-key-file",
            pki.join("ca.key").to_str().unwrap(),
            "--cluster-signing-duration=30s",
        ],
    );

    // The kubelet, with nothing but the bootstrap kubeconfig.
    let dir = tempfile::tempdir().unwrap();
    let boot = bootstrap_kubeconfig(&api, "bootstrap-kubelet.conf", &api.url(), None);
    let kubeconfig = dir.path().join("kubelet.conf");
    let cert_dir = dir.path().join("root/pki");
    let kubelet_log = dir.path().join("kubelet.log");
    let out = std::fs::File::create(&kubelet_log).unwrap();
    let _kubelet = KillOnDrop(
        Command::new(skiff_e2e::sibling_binary("skiff-kubelet"))
            .arg("--bootstrap-kubeconfig")
            .arg(&boot)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--root-dir")
            .arg(dir.path().join("root"))
            .args([
                "--hostname-override",
                NODE,
                "--node-ip",
                "127.0.0.1",
                "--pod-cidr",
                "10.200.77.0/24",
                "--runtime",
                "fake",
                "--port",
                "0",
                "--node-lease-duration-seconds",
                "8",
                "--rotate-certificates",
                "--rotate-server-certificates",
                // The machine's disk is shared and nearly full: no disk eviction thresholds.
                "--eviction-hard=memory.available<100Mi",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );

    // The proxy, likewise, from its own network namespace.
    let _net = ProxyNet::create();
    let port = forward(&format!("{NET}.1"), api.addr());
    let proxy_boot = bootstrap_kubeconfig(
        &api,
        "bootstrap-proxy.conf",
        &format!("https://{NET}.1:{port}"),
        Some("127.0.0.1"),
    );
    let proxy_kubeconfig = dir.path().join("proxy.conf");
    let proxy_log = dir.path().join("proxy.log");
    let out = std::fs::File::create(&proxy_log).unwrap();
    let _proxy = KillOnDrop(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{NETNS}"))
            .arg(skiff_e2e::sibling_binary("skiff-proxy"))
            .arg("--bootstrap-kubeconfig")
            .arg(&proxy_boot)
            .arg("--kubeconfig")
            .arg(&proxy_kubeconfig)
            .arg("--cert-dir")
            .arg(dir.path().join("proxy-pki"))
            .args([
                "--hostname-override",
                NODE,
                "--healthz-bind-address",
                "127.0.0.1:10256",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );

    // The kubelet's identity is the node's, and its Node becomes Ready.
    let ready = || {
        let out = api.kubectl(&[
            "get",
            "node",
            NODE,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim() == "True"
    };
    assert!(
        wait_until(WAIT, ready),
        "node {NODE} did not become Ready; kubelet log:\n{}\ncontroller-manager log:\n{}",
        log(&kubelet_log),
        cm.log_text()
    );
    assert_eq!(whoami(&api, &kubeconfig), Ok(format!("system:node:{NODE}")));
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    let current = cert_dir.join("kubelet-client-current.pem");
    assert!(
        written.contains(&format!("client-certificate: {}", current.display())),
        "{written}"
    );
    let first = pems(&cert_dir, "kubelet-client");
    assert_eq!(first.len(), 1, "{first:?}");
    let first_obtained = std::fs::metadata(&first[0]).unwrap().modified().unwrap();

    // The bootstrap request was the bootstrap token's, approved for nodeclient.
    let csrs = api.kubectl_json(&["get", "csr"]);
    let items = csrs["items"].as_array().unwrap();
    let by = |signer: &str, user: &str| {
        items
            .iter()
            .filter(|c| c["spec"]["signerName"] == signer && c["spec"]["username"] == user)
            .cloned()
            .collect::<Vec<Value>>()
    };
    let bootstrap = by(
        "kubernetes.io/kube-apiserver-client-kubelet",
        "system:bootstrap:07401b",
    );
    assert_eq!(bootstrap.len(), 1, "{csrs}");
    assert!(
        bootstrap[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("node-csr-")
    );

    // The serving certificate: from an approved kubelet-serving request, so the cluster CA
    // verifies the kubelet's server.
    let serving = |api: &ApiServer| {
        let csrs = api.kubectl_json(&["get", "csr"]);
        csrs["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["spec"]["signerName"] == "kubernetes.io/kubelet-serving")
            .cloned()
            .collect::<Vec<Value>>()
    };
    assert!(
        wait_until(WAIT, || serving(&api)
            .iter()
            .any(|c| c["status"]["certificate"].is_string())),
        "no serving certificate issued: {:?}\nkubelet log:\n{}\ncontroller-manager log:\n{}",
        serving(&api),
        log(&kubelet_log),
        cm.log_text()
    );
    let csr = &serving(&api)[0];
    assert_eq!(
        csr["spec"]["username"],
        format!("system:node:{NODE}"),
        "{csr}"
    );
    let approved = &csr["status"]["conditions"][0];
    assert_eq!(approved["type"], "Approved", "{csr}");
    assert_eq!(
        approved["message"],
        "Auto approving kubelet serving certificate: its names and addresses are the Node's."
    );
    let kubelet_port = api
        .kubectl_ok(&[
            "get",
            "node",
            NODE,
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
        ])
        .trim()
        .to_string();
    let ca = std::fs::read(pki.join("ca.crt")).unwrap();
    let verified = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let healthz = format!("https://127.0.0.1:{kubelet_port}/healthz");
    assert!(
        wait_until(WAIT, || verified
            .get(&healthz)
            .send()
            .is_ok_and(|r| r.status().is_success())),
        "the kubelet's server does not present a certificate from the cluster CA: {:?}",
        verified.get(&healthz).send()
    );

    // The proxy is system:kube-proxy.
    assert!(
        wait_until(WAIT, || whoami(&api, &proxy_kubeconfig).is_ok()),
        "the proxy did not bootstrap; proxy log:\n{}\ncontroller-manager log:\n{}",
        log(&proxy_log),
        cm.log_text()
    );
    assert_eq!(
        whoami(&api, &proxy_kubeconfig),
        Ok("system:kube-proxy".to_string())
    );

    // 30-second certificates: before the first expires the kubelet asks for a new one as
    // itself (selfnodeclient), and goes on with it after the first has expired.
    assert!(
        wait_until(WAIT, || pems(&cert_dir, "kubelet-client").len() >= 2),
        "the client certificate was not rotated; kubelet log:\n{}\ncontroller-manager log:\n{}",
        log(&kubelet_log),
        cm.log_text()
    );
    let renewals: Vec<Value> = api.kubectl_json(&["get", "csr"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
                && c["spec"]["username"] == format!("system:node:{NODE}")
                && c["status"]["certificate"].is_string()
        })
        .cloned()
        .collect();
    assert!(!renewals.is_empty());
    assert_eq!(
        renewals[0]["status"]["conditions"][0]["message"],
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    );
    assert_ne!(
        std::fs::read_link(&current).unwrap(),
        first[0],
        "the current link still names the first certificate"
    );
    assert!(
        wait_until(WAIT, || SystemTime::now()
            > first_obtained + Duration::from_secs(32)),
        "the first certificate's life did not pass"
    );
    let lease = || {
        api.kubectl_ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            NODE,
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
    };
    let before = lease();
    assert!(
        wait_until(WAIT, || lease() != before),
        "the kubelet stopped renewing its Lease after its first certificate expired; log:\n{}",
        log(&kubelet_log)
    );
    assert!(ready());
    assert_eq!(whoami(&api, &kubeconfig), Ok(format!("system:node:{NODE}")));

    // The proxy renewed its certificate too, as itself.
    let proxy_pki = dir.path().join("proxy-pki");
    assert!(
        wait_until(WAIT, || pems(&proxy_pki, "kube-proxy-client").len() >= 2),
        "the proxy's certificate was not rotated; proxy log:\n{}",
        log(&proxy_log)
    );
    assert_eq!(
        whoami(&api, &proxy_kubeconfig),
        Ok("system:kube-proxy".to_string())
    );
}
