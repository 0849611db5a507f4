//! skiff-proxy's ruleset on real iptables, inside network namespaces this test creates: a
//! "node" namespace with a bridge, and two backend namespaces running busybox httpd. A client
//! (curl) in the node namespace reaches the ClusterIP and the NodePort; load spreads over both
//! backends; a removed backend stops getting traffic; a Service with no endpoints refuses at
//! once; ClientIP affinity sticks. All traffic stays inside the test's namespaces.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_proxy::iptables::Iptables;
use skiff_proxy::rules::{Protocol, ServicePort, Settings, render};

const NODE: &str = "skp-node";
const BACKENDS: [&str; 2] = ["skp-b1", "skp-b2"];

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("ip")
}

fn in_ns(ns: &str, script: &str) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["sh", "-c", script])
        .output()
        .expect("nsenter")
}

fn in_ns_ok(ns: &str, script: &str) -> String {
    let out = in_ns(ns, script);
    assert!(
        out.status.success(),
        "{ns}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces, the backends' servers and their files; all removed on drop.
struct Lab {
    servers: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn remove_leftovers() {
        for ns in BACKENDS.iter().chain([NODE].iter()) {
            let _ = ip(&["netns", "del", ns]);
        }
    }

    fn start() -> Lab {
        Self::remove_leftovers();
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(ip(&["netns", "add", NODE]).status.success(), "ip netns add");
        in_ns_ok(
            NODE,
            "ip link set lo up && ip link add br0 type bridge && ip addr add 10.250.0.1/24 dev br0 \
            && ip link set br0 up && ip route add default dev br0",
        );
        let mut servers = Vec::new();
        for (i, ns) in BACKENDS.iter().enumerate() {
            assert!(ip(&["netns", "add", ns]).status.success());
            let veth = format!("v{ns}");
            in_ns_ok(
                NODE,
                &format!(
                    "ip link add {veth} type veth peer name eth0 netns {ns} && ip link set {veth} master br0 up"
                ),
            );
            in_ns_ok(
                ns,
                &format!(
                    "ip link set lo up && ip addr add 10.250.0.1{}/24 dev eth0 && ip link set eth0 up \
                && ip route add default via 10.250.0.1",
                    i + 1
                ),
            );
            let www = dir.path().join(ns);
            std::fs::create_dir_all(&www).expect("www");
            std::fs::write(www.join("index.html"), format!("{ns}\n")).expect("index");
            servers.push(
                Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{ns}"))
                    .args(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h"])
                    .arg(&www)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("busybox httpd"),
            );
        }
        Lab { servers, dir }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        Self::remove_leftovers();
        let _ = &self.dir;
    }
}

/// One HTTP GET from the node namespace with curl: the body, or `exit N: message` (7 is
/// "could not connect", i.e. refused; 28 a timeout).
fn get(url: &str) -> Result<String, String> {
    let out = in_ns(NODE, &format!("curl -sS --noproxy '*' --max-time 3 {url}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "exit {}: {}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn service(name: &str, ip: [u8; 4], endpoints: &[u8], node_port: Option<u16>) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        name: name.into(),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: Some(Ipv4Addr::from(ip)),
        port: 80,
        node_port,
        external_ips: vec![],
        affinity_seconds: None,
        endpoints: endpoints
            .iter()
            .map(|i| (Ipv4Addr::new(10, 250, 0, 10 + i), 8080))
            .collect(),
    }
}

fn wait_serving(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(url).is_err() {
        assert!(
            Instant::now() < deadline,
            "{url} never answered: {:?}",
            get(url)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cluster_ips_and_node_ports_on_real_iptables_in_namespaces() {
    let _lab = Lab::start();
    // The backends answer directly first.
    wait_serving("http://10.250.0.11:8080/");
    wait_serving("http://10.250.0.12:8080/");

    let ipt = Iptables::in_netns(std::path::Path::new(&format!("/run/netns/{NODE}")));
    let settings = Settings {
        cluster_cidr: Some("10.250.0.0/24".parse().unwrap()),
    };
    let web = service("web", [10, 96, 100, 1], &[1, 2], Some(30080));
    let empty = service("empty", [10, 96, 100, 2], &[], Some(30081));
    let first = render(&[web.clone(), empty.clone()], &settings, &BTreeSet::new());
    ipt.apply(&first).expect("apply");

    // ClusterIP: served, and spread over both backends.
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        seen.insert(get("http://10.96.100.1/").expect("the ClusterIP answers"));
    }
    assert_eq!(
        seen,
        BTreeSet::from(["skp-b1".to_string(), "skp-b2".to_string()]),
        "both backends serve"
    );
    // NodePort on the node's address.
    assert!(
        get("http://10.250.0.1:30080/")
            .expect("the NodePort answers")
            .starts_with("skp-b")
    );

    // No endpoints: refused at once, for the ClusterIP and the NodePort.
    for url in ["http://10.96.100.2/", "http://10.250.0.1:30081/"] {
        let started = Instant::now();
        let err = get(url).expect_err("no endpoints must not answer");
        assert!(err.starts_with("exit 7:"), "{url}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused at once, not timed out"
        );
    }

    // A removed backend gets no more traffic.
    let only_b1 = service("web", [10, 96, 100, 1], &[1], Some(30080));
    let second = render(&[only_b1, empty.clone()], &settings, &first.nat_chains);
    ipt.apply(&second).expect("apply");
    for _ in 0..10 {
        assert_eq!(get("http://10.96.100.1/").unwrap(), "skp-b1");
    }
    let chains = ipt.chains("nat").expect("chains");
    assert!(
        chains
            .iter()
            .filter(|c| c.starts_with("SKIFF-SEP-"))
            .count()
            == 1,
        "the removed endpoint's chain is gone: {chains:?}"
    );

    // Session affinity sticks to one backend.
    let mut sticky = service("web", [10, 96, 100, 1], &[1, 2], Some(30080));
    sticky.affinity_seconds = Some(60);
    let third = render(&[sticky, empty], &settings, &second.nat_chains);
    ipt.apply(&third).expect("apply");
    let picks: BTreeSet<String> = (0..15)
        .map(|_| get("http://10.96.100.1/").unwrap())
        .collect();
    assert_eq!(picks.len(), 1, "one client, one backend: {picks:?}");

    // Rules that are not Skiff's survive a sync; cleanup removes only Skiff's.
    in_ns_ok(
        NODE,
        "iptables -t nat -N OTHER && iptables -t nat -A OTHER -j RETURN",
    );
    ipt.apply(&third).expect("apply again");
    ipt.cleanup().expect("cleanup");
    let saved = in_ns_ok(NODE, "iptables-save");
    assert!(!saved.contains("SKIFF-"), "{saved}");
    assert!(saved.contains(":OTHER"), "{saved}");
    assert!(get("http://10.96.100.1/").is_err(), "no rules, no service");
}
