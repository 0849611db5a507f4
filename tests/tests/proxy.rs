//! skiff-proxy's ruleset on real iptables, inside network namespaces this test creates: a
//! "node" namespace with a bridge, and two backend namespaces running busybox httpd. A client
//! (curl) in the node namespace reaches the ClusterIP and the NodePort; load spreads over both
//! backends; a removed backend stops getting traffic; a Service with no endpoints refuses at
//! once; ClientIP affinity sticks. Pod routes (host-gw) and the VXLAN overlay carry pod
//! traffic between node namespaces. All traffic stays inside the test's namespaces.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_proxy::iptables::Iptables;
use skiff_proxy::rules::{Protocol, ServicePort, Settings, render};

const NODE: &str = "skp-node";

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

/// The namespaces (`<prefix>-node`, `<prefix>-b1`, `<prefix>-b2` on 10.<net>.0.0/24), the
/// backends' servers and their files; all removed on drop (and leftovers of a crashed run on
/// start).
struct Lab {
    prefix: &'static str,
    servers: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn names(prefix: &str) -> [String; 3] {
        [
            format!("{prefix}-node"),
            format!("{prefix}-b1"),
            format!("{prefix}-b2"),
        ]
    }

    fn remove_leftovers(prefix: &str) {
        for ns in Self::names(prefix) {
            let _ = ip(&["netns", "del", &ns]);
        }
    }

    fn start(prefix: &'static str, net: u8) -> Lab {
        Self::remove_leftovers(prefix);
        let [node, b1, b2] = Self::names(prefix);
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            ip(&["netns", "add", &node]).status.success(),
            "ip netns add"
        );
        in_ns_ok(
            &node,
            &format!(
                "ip link set lo up && ip link add br0 type bridge && ip addr add 10.{net}.0.1/24 dev br0 \
                 && ip link set br0 up && ip route add default dev br0"
            ),
        );
        let mut servers = Vec::new();
        for (i, ns) in [b1, b2].iter().enumerate() {
            assert!(ip(&["netns", "add", ns]).status.success());
            let veth = format!("v{ns}");
            in_ns_ok(
                &node,
                &format!(
                    "ip link add {veth} type veth peer name eth0 netns {ns} && ip link set {veth} master br0 up"
                ),
            );
            in_ns_ok(
                ns,
                &format!(
                    "ip link set lo up && ip addr add 10.{net}.0.1{}/24 dev eth0 && ip link set eth0 up \
                     && ip route add default via 10.{net}.0.1",
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
        Lab {
            prefix,
            servers,
            dir,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        Self::remove_leftovers(self.prefix);
        let _ = &self.dir;
    }
}

/// One HTTP GET from the node namespace with curl: the body, or `exit N: message` (7 is
/// "could not connect", i.e. refused; 28 a timeout).
fn get(url: &str) -> Result<String, String> {
    get_in(NODE, url)
}

fn get_in(ns: &str, url: &str) -> Result<String, String> {
    let out = in_ns(ns, &format!("curl -sS --noproxy '*' --max-time 3 {url}"));
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
    let _lab = Lab::start("skp", 250);
    // The backends answer directly first.
    wait_serving("http://10.250.0.11:8080/");
    wait_serving("http://10.250.0.12:8080/");

    let ipt = Iptables::in_netns(std::path::Path::new(&format!("/run/netns/{NODE}")));
    let settings = Settings {
        cluster_cidr: Some("10.250.0.0/24".parse().unwrap()),
        local_pod_cidr: Some("10.250.0.0/24".parse().unwrap()),
        service_cidr: Some("10.96.0.0/12".parse().unwrap()),
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

    // route_localnet's guard (CVE-2020-8558): traffic to 127.0.0.0/8 from elsewhere is
    // dropped unless a NodePort DNAT explains it, for packets in and out of the node.
    let filter = in_ns_ok(NODE, "iptables-save -t filter");
    let drop = filter
        .lines()
        .find(|l| l.starts_with("-A SKIFF-FIREWALL "))
        .unwrap_or_else(|| panic!("no SKIFF-FIREWALL rule: {filter}"));
    for part in [
        "! -s 127.0.0.0/8",
        "-d 127.0.0.0/8",
        "--comment \"block incoming localnet connections\"",
        "! --ctstate RELATED,ESTABLISHED,DNAT",
        "-j DROP",
    ] {
        assert!(drop.contains(part), "{part} in {drop}");
    }
    for chain in ["INPUT", "OUTPUT"] {
        assert!(
            filter
                .lines()
                .any(|l| l.starts_with(&format!("-A {chain} ")) && l.ends_with("-j SKIFF-FIREWALL")),
            "{chain} jumps to SKIFF-FIREWALL: {filter}"
        );
    }

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
    let second = render(
        &[only_b1, empty.clone()],
        &settings,
        &first.service_chains(),
    );
    ipt.apply(&second).expect("apply");
    for _ in 0..10 {
        assert_eq!(get("http://10.96.100.1/").unwrap(), "skp-b1");
    }
    let nat = in_ns_ok(NODE, "iptables-save -t nat");
    assert!(
        nat.contains("--to-destination 10.250.0.11:8080")
            && !nat.contains("--to-destination 10.250.0.12:8080"),
        "the removed endpoint's rule is gone: {nat}"
    );

    // Session affinity sticks to one backend.
    let mut sticky = service("web", [10, 96, 100, 1], &[1, 2], Some(30080));
    sticky.affinity_seconds = Some(60);
    let third = render(&[sticky, empty], &settings, &second.service_chains());
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

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
            let (mut d2, mut u2) = (
                down.try_clone().expect("clone"),
                up.try_clone().expect("clone"),
            );
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

/// Starts the real skiff-proxy in namespace `ns`, reaching the apiserver through a veth from
/// the host (`host_if`, `<net>.1/30` on the host, `<net>.2/30` in `ns`) and a forwarder.
/// Returns the process and its log file.
fn start_proxy(
    server: &skiff_e2e::ApiServer,
    dir: &std::path::Path,
    ns: &str,
    host_if: &str,
    net: &str,
    extra: &[&str],
) -> (Child, std::path::PathBuf) {
    let _ = ip(&["link", "del", host_if]);
    assert!(
        ip(&[
            "link", "add", host_if, "type", "veth", "peer", "name", "uplink", "netns", ns
        ])
        .status
        .success()
    );
    assert!(
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", host_if])
            .status
            .success()
    );
    assert!(ip(&["link", "set", host_if, "up"]).status.success());
    in_ns_ok(
        ns,
        &format!("ip addr add {net}.2/30 dev uplink && ip link set uplink up"),
    );
    let port = forward(&format!("{net}.1"), server.addr());
    let mut kc: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(server.identity_kubeconfig("system:kube-proxy", &[]))
            .expect("kubeconfig"),
    )
    .expect("yaml");
    let cluster = &mut kc["clusters"][0]["cluster"];
    cluster["server"] = format!("https://{net}.1:{port}").into();
    cluster["tls-server-name"] = "127.0.0.1".into();
    let kubeconfig = dir.join(format!("{ns}.kubeconfig"));
    std::fs::write(&kubeconfig, serde_yaml::to_string(&kc).expect("yaml")).expect("write");
    let log = dir.join(format!("{ns}-proxy.log"));
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(skiff_e2e::sibling_binary("skiff-proxy"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "--hostname-override",
            ns,
            "--min-sync-period",
            "100ms",
            "--healthz-bind-address",
            "127.0.0.1:10256",
        ])
        .args(extra)
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("start skiff-proxy");
    (child, log)
}

fn slice(endpoints: &[&str]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:{}\n{}",
        if eps.is_empty() { " []" } else { "" },
        eps.join("")
    )
}

#[test]
fn skiff_proxy_follows_services_and_endpoint_slices() {
    use skiff_e2e::{ApiServer, Backend, wait_until};
    let server = ApiServer::start(Backend::Embedded);
    let lab = Lab::start("skq", 252);
    let node = "skq-node";
    let (proxy, log) = start_proxy(&server, lab.dir.path(), node, "skq-host", "10.253.0", &[]);
    let mut proxy = KillOnDrop(proxy);
    let proxy_log = || std::fs::read_to_string(&log).unwrap_or_default();

    server.kubectl_stdin_ok(&["apply", "-f", "-"], &format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: 30090}}]\n---\n{}",
        slice(&["10.252.0.11"])
    ));
    let cip = server.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let url = format!("http://{cip}/");
    let wait = Duration::from_secs(30);
    assert!(
        wait_until(wait, || get_in(node, &url).as_deref() == Ok("skq-b1")),
        "the ClusterIP answers: {:?}\n{}",
        get_in(node, &url),
        proxy_log()
    );
    assert_eq!(
        get_in(node, "http://10.252.0.1:30090/").as_deref(),
        Ok("skq-b1"),
        "the NodePort answers"
    );
    assert_eq!(
        get_in(node, "http://127.0.0.1:30090/").as_deref(),
        Ok("skq-b1"),
        "the NodePort answers on 127.0.0.1"
    );
    // ... which route_localnet allows, with the guard against other traffic to 127.0.0.0/8
    // in place (installed before route_localnet was turned on).
    let filter = in_ns_ok(node, "iptables-save -t filter");
    assert!(
        filter.contains("-A INPUT -m comment --comment \"skiff firewall rules\" -j SKIFF-FIREWALL")
            && filter.contains("--comment \"block incoming localnet connections\""),
        "{filter}"
    );

    // A second endpoint: traffic spreads to it.
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &slice(&["10.252.0.11", "10.252.0.12"]),
    );
    let mut seen = BTreeSet::new();
    assert!(
        wait_until(wait, || {
            if let Ok(b) = get_in(node, &url) {
                seen.insert(b);
            }
            seen.len() == 2
        }),
        "both backends serve: {seen:?}"
    );

    // No endpoints: refused at once.
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &slice(&[]));
    assert!(
        wait_until(wait, || get_in(node, &url)
            .is_err_and(|e| e.starts_with("exit 7:"))),
        "refused: {:?}",
        get_in(node, &url)
    );

    let health = in_ns_ok(
        node,
        "curl -sS --noproxy '*' http://127.0.0.1:10256/healthz",
    );
    assert!(health.contains("lastUpdated"), "{health}");
    let metrics = in_ns_ok(
        node,
        "curl -sS --noproxy '*' http://127.0.0.1:10256/metrics",
    );
    assert!(metrics.contains("skiff_proxy_iptables_rules"), "{metrics}");

    let _ = proxy.0.kill();
    let _ = proxy.0.wait();
    let cleanup = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{node}"))
        .arg(skiff_e2e::sibling_binary("skiff-proxy"))
        .arg("--cleanup")
        .output()
        .expect("skiff-proxy --cleanup");
    assert!(
        cleanup.status.success(),
        "{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    let saved = in_ns_ok(node, "iptables-save");
    assert!(!saved.contains("SKIFF-"), "{saved}");
}

#[test]
fn pod_routes_let_one_node_reach_the_pods_of_another() {
    use skiff_e2e::{ApiServer, Backend, wait_until};
    let names = ["skr-lan", "skr-n1", "skr-n2", "skr-p1"];
    for n in names {
        let _ = ip(&["netns", "del", n]);
    }
    struct Cleanup(
        [&'static str; 4],
        Option<Child>,
        Option<Child>,
        Option<Child>,
    );
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for c in [self.1.as_mut(), self.2.as_mut(), self.3.as_mut()]
                .into_iter()
                .flatten()
            {
                let _ = c.kill();
                let _ = c.wait();
            }
            for n in self.0 {
                let _ = ip(&["netns", "del", n]);
            }
        }
    }
    let mut guard = Cleanup(names, None, None, None);
    let server = ApiServer::start(Backend::Embedded);
    let dir = tempfile::tempdir().expect("tempdir");
    for n in names {
        assert!(ip(&["netns", "add", n]).status.success());
        in_ns_ok(n, "ip link set lo up");
    }
    // Two nodes on one LAN (a bridge in its own namespace); node 1 has a pod subnet with a pod.
    in_ns_ok(
        "skr-lan",
        "ip link add lanbr type bridge && ip link set lanbr up",
    );
    for (i, n) in ["skr-n1", "skr-n2"].iter().enumerate() {
        in_ns_ok(
            "skr-lan",
            &format!(
                "ip link add vn{i} type veth peer name eth0 netns {n} && ip link set vn{i} master lanbr up"
            ),
        );
        in_ns_ok(
            n,
            &format!(
                "ip addr add 10.254.0.{}/24 dev eth0 && ip link set eth0 up",
                i + 1
            ),
        );
    }
    in_ns_ok(
        "skr-n1",
        "echo 1 > /proc/sys/net/ipv4/ip_forward && ip link add cbr0 type bridge \
        && ip addr add 10.254.1.1/24 dev cbr0 && ip link set cbr0 up \
        && ip link add vp1 type veth peer name eth0 netns skr-p1 && ip link set vp1 master cbr0 up",
    );
    in_ns_ok(
        "skr-p1",
        "ip addr add 10.254.1.11/24 dev eth0 && ip link set eth0 up && ip route add default via 10.254.1.1",
    );
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "pod on node 1\n").expect("index");
    guard.1 = Some(
        Command::new("nsenter")
            .arg("--net=/run/netns/skr-p1")
            .args(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(&www)
            .spawn()
            .expect("httpd"),
    );
    let url = "http://10.254.1.11:8080/";
    assert!(get_in("skr-n2", url).is_err(), "no route yet");

    skiff_e2e::node("skr-n1")
        .internal_ip("10.254.0.1")
        .create(&server);
    skiff_e2e::node("skr-n2")
        .internal_ip("10.254.0.2")
        .create(&server);
    server.kubectl_ok(&[
        "patch",
        "node",
        "skr-n1",
        "-p",
        r#"{"spec":{"podCIDR":"10.254.1.0/24"}}"#,
    ]);
    server.kubectl_ok(&[
        "patch",
        "node",
        "skr-n2",
        "-p",
        r#"{"spec":{"podCIDR":"10.254.2.0/24"}}"#,
    ]);
    // Node 1 forwards as a Docker host does: policy DROP, `DOCKER-USER` first.
    in_ns_ok(
        "skr-n1",
        "iptables -P FORWARD DROP && iptables -N DOCKER-USER && iptables -A DOCKER-USER -j RETURN \
        && iptables -A FORWARD -j DOCKER-USER",
    );
    let (proxy, log) = start_proxy(&server, dir.path(), "skr-n2", "skr-host", "10.253.1", &[]);
    guard.2 = Some(proxy);
    let (proxy1, log1) = start_proxy(
        &server,
        dir.path(),
        "skr-n1",
        "skr-host1",
        "10.253.2",
        &["--cluster-cidr", "10.254.0.0/16"],
    );
    guard.3 = Some(proxy1);
    let wait = Duration::from_secs(30);
    assert!(
        wait_until(wait, || get_in("skr-n2", url).as_deref()
            == Ok("pod on node 1")),
        "node 2 reaches the pod through the route: {:?}\n{}",
        get_in("skr-n2", url),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Docker restarts on node 1 and puts its rules first again, with an isolation rule that
    // drops whatever it does not know: the pod stays reachable through `DOCKER-USER`.
    in_ns_ok(
        "skr-n1",
        "iptables -N ISOLATION && iptables -A ISOLATION -o cbr0 -j DROP \
        && iptables -I FORWARD 1 -j ISOLATION && iptables -I FORWARD 1 -j DOCKER-USER",
    );
    assert_eq!(
        get_in("skr-n2", url).as_deref(),
        Ok("pod on node 1"),
        "{}",
        std::fs::read_to_string(&log1).unwrap_or_default()
    );
    let routes = in_ns_ok("skr-n2", "ip route");
    assert!(routes.contains("10.254.1.0/24 via 10.254.0.1"), "{routes}");
    assert!(
        !routes.contains("10.254.2.0/24"),
        "no route to its own pod subnet: {routes}"
    );
    // The node goes away: so does its route.
    server.kubectl_ok(&["delete", "node", "skr-n1"]);
    assert!(
        wait_until(wait, || !in_ns_ok("skr-n2", "ip route")
            .contains("10.254.1.0/24")),
        "stale route removed"
    );
}

/// UDP has no connection to close: after an endpoint goes, its conntrack entries keep a client's
/// flow pinned to it until skiff-proxy's clean-up deletes them.
#[test]
fn udp_flows_to_a_removed_endpoint_are_flushed() {
    let mut lab = Lab::start("sku", 251);
    let node = "sku-node";
    for ns in ["sku-b1", "sku-b2"] {
        lab.servers.push(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{ns}"))
                .args([
                    "python3",
                    "-c",
                    "import socket,sys\n\
                     s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                     s.bind(('0.0.0.0',5353))\n\
                     while True:\n    d,a=s.recvfrom(100); s.sendto(sys.argv[1].encode(),a)",
                    ns,
                ])
                .spawn()
                .expect("udp server"),
        );
    }
    // One client flow: always the same source port.
    let ask = |dest: &str| -> Result<String, String> {
        let out = in_ns(
            node,
            &format!(
                "python3 -c \"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                 s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',40000))\n\
                 s.settimeout(2)\ns.sendto(b'hi',{dest})\nprint(s.recv(100).decode())\""
            ),
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    for b in ["('10.251.0.11',5353)", "('10.251.0.12',5353)"] {
        assert!(
            skiff_e2e::wait_until(Duration::from_secs(10), || ask(b).is_ok()),
            "the UDP backend {b} answers: {:?}",
            ask(b)
        );
    }
    let ipt = Iptables::in_netns(std::path::Path::new(&format!("/run/netns/{node}")));
    let settings = Settings {
        cluster_cidr: Some("10.251.0.0/24".parse().unwrap()),
        local_pod_cidr: Some("10.251.0.0/24".parse().unwrap()),
        service_cidr: None,
    };
    let dns = |eps: &[u8]| ServicePort {
        namespace: "default".into(),
        name: "dns".into(),
        port_name: "dns".into(),
        protocol: Protocol::Udp,
        cluster_ip: Some(Ipv4Addr::new(10, 96, 100, 3)),
        port: 53,
        node_port: None,
        external_ips: vec![],
        affinity_seconds: None,
        endpoints: eps
            .iter()
            .map(|i| (Ipv4Addr::new(10, 251, 0, 10 + i), 5353))
            .collect(),
    };
    let before = [dns(&[1, 2])];
    ipt.apply(&render(&before, &settings, &BTreeSet::new()))
        .expect("apply");
    let service = "('10.96.100.3',53)";
    let first = ask(service).expect("the ClusterIP answers over UDP");
    assert_eq!(
        ask(service).as_deref(),
        Ok(first.as_str()),
        "one flow, one backend"
    );

    // The backend that served the flow leaves the Service; the flow's conntrack entry still
    // points at it until it is deleted.
    let (gone, kept, other) = if first == "sku-b1" {
        (1, 2, "sku-b2")
    } else {
        (2, 1, "sku-b1")
    };
    assert!(first == "sku-b1" || first == "sku-b2", "{first}");
    let after = [dns(&[kept])];
    ipt.apply(&render(&after, &settings, &BTreeSet::new()))
        .expect("apply");
    assert_eq!(
        ask(service).as_deref(),
        Ok(first.as_str()),
        "the old flow is still pinned to 10.251.0.1{gone}"
    );
    let stale = skiff_proxy::conntrack::stale(&before, &after);
    assert!(!stale.is_empty());
    for filter in &stale {
        ipt.conntrack_delete(filter);
    }
    assert_eq!(
        ask(service).as_deref(),
        Ok(other),
        "flushed: the flow moves"
    );
    ipt.cleanup().expect("cleanup");
}

/// `--pod-network vxlan` between two nodes on two subnets joined only by a router namespace
/// (no shared L2 segment, and the router knows no pod subnet: only the overlay carries pod
/// traffic). Each node has a pod behind a bridge in its pod CIDR; a third Node object stands
/// for a machine that is not there.
#[test]
fn vxlan_overlay_carries_pod_traffic_between_subnets() {
    use skiff_e2e::{ApiServer, wait_until};
    const NAMES: [&str; 5] = ["skx-rt", "skx-n1", "skx-n2", "skx-p1", "skx-p2"];
    for n in NAMES {
        let _ = ip(&["netns", "del", n]);
    }
    /// Kills the proxies and the server, then removes the namespaces (and so every link,
    /// route and device in them); the host ends of the uplinks go with their peers.
    struct Cleanup(Vec<Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
            for n in NAMES {
                let _ = ip(&["netns", "del", n]);
            }
        }
    }
    let mut guard = Cleanup(Vec::new());
    let server = ApiServer::start(skiff_e2e::Backend::Embedded);
    let dir = tempfile::tempdir().expect("tempdir");
    for n in NAMES {
        assert!(
            ip(&["netns", "add", n]).status.success(),
            "ip netns add {n}"
        );
        in_ns_ok(n, "ip link set lo up");
    }
    // The router: 10.247.1.0/24 to node 1, 10.247.2.0/24 to node 2.
    in_ns_ok("skx-rt", "echo 1 > /proc/sys/net/ipv4/ip_forward");
    for i in 1..=2 {
        in_ns_ok(
            "skx-rt",
            &format!(
                "ip link add r{i} type veth peer name eth0 netns skx-n{i} \
                 && ip addr add 10.247.{i}.1/24 dev r{i} && ip link set r{i} up"
            ),
        );
        in_ns_ok(
            &format!("skx-n{i}"),
            &format!(
                "ip addr add 10.247.{i}.2/24 dev eth0 && ip link set eth0 up \
                 && ip route add default via 10.247.{i}.1 \
                 && echo 1 > /proc/sys/net/ipv4/ip_forward \
                 && ip link add cbr0 type bridge && ip addr add 10.248.{i}.1/24 dev cbr0 \
                 && ip link set cbr0 up \
                 && ip link add vp type veth peer name eth0 netns skx-p{i} \
                 && ip link set vp master cbr0 up"
            ),
        );
        in_ns_ok(
            &format!("skx-p{i}"),
            &format!(
                "ip addr add 10.248.{i}.11/24 dev eth0 && ip link set eth0 up \
                 && ip route add default via 10.248.{i}.1"
            ),
        );
    }
    // Pod 2 answers with the address it sees the request come from.
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("cgi-bin")).expect("www");
    let peer = www.join("cgi-bin/peer");
    std::fs::write(
        &peer,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n",
    )
    .expect("cgi");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&peer, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(www.join("big"), "x".repeat(300_000)).expect("big");
    guard.0.push(
        Command::new("nsenter")
            .arg("--net=/run/netns/skx-p2")
            .args(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(&www)
            .spawn()
            .expect("httpd"),
    );
    let url = "http://10.248.2.11:8080/cgi-bin/peer";
    assert!(get_in("skx-p1", url).is_err(), "no way across yet");

    for (name, ip, cidr) in [
        ("skx-n1", "10.247.1.2", "10.248.1.0/24"),
        ("skx-n2", "10.247.2.2", "10.248.2.0/24"),
        ("skx-ghost", "10.247.2.9", "10.248.9.0/24"),
    ] {
        skiff_e2e::node(name).internal_ip(ip).create(&server);
        server.kubectl_ok(&[
            "patch",
            "node",
            name,
            "-p",
            &format!(r#"{{"spec":{{"podCIDR":"{cidr}"}}}}"#),
        ]);
    }
    // A short --sync-period: the overlay is read back from the kernel that often.
    let vxlan = [
        "--pod-network",
        "vxlan",
        "--cluster-cidr",
        "10.248.0.0/16",
        "--sync-period",
        "2s",
    ];
    let (p1, log1) = start_proxy(&server, dir.path(), "skx-n1", "skx-up1", "10.253.5", &vxlan);
    guard.0.push(p1);
    let (p2, log2) = start_proxy(&server, dir.path(), "skx-n2", "skx-up2", "10.253.6", &vxlan);
    guard.0.push(p2);
    let logs = || {
        format!(
            "node 1:\n{}\nnode 2:\n{}",
            std::fs::read_to_string(&log1).unwrap_or_default(),
            std::fs::read_to_string(&log2).unwrap_or_default()
        )
    };
    let wait = Duration::from_secs(30);
    assert!(
        wait_until(wait, || get_in("skx-p1", url)
            .is_ok_and(|peer| peer.contains("10.248.1.11"))),
        "pod 1 reaches pod 2 through the overlay, seen with its own address (no masquerade): \
         {:?}\n{}",
        get_in("skx-p1", url),
        logs()
    );

    // The device as flannel's: VNI 1, port 8472, the InternalIP as local end, no learning,
    // the MAC derived from the InternalIP, the underlay's MTU minus 50, the pod CIDR's .0.
    let link = in_ns_ok("skx-n1", "ip -d addr show skiff.1");
    for want in [
        "mtu 1450",
        "link/ether 0a:58:0a:f7:01:02",
        "vxlan id 1 local 10.247.1.2",
        "dstport 8472",
        "nolearning",
        "inet 10.248.1.0/32",
    ] {
        assert!(link.contains(want), "{want}: {link}");
    }
    // One route, neighbour and forwarding entry per other node (the ghost's included).
    let entries = |ns: &str| {
        in_ns_ok(
            ns,
            "ip route show dev skiff.1; ip neigh show dev skiff.1; bridge fdb show dev skiff.1",
        )
    };
    let ghost = [
        "10.248.9.0/24 via 10.248.9.0 onlink",
        "10.248.9.0 lladdr 0a:58:0a:f7:02:09 PERMANENT",
        "0a:58:0a:f7:02:09 dst 10.247.2.9 self permanent",
    ];
    let on1 = entries("skx-n1");
    for want in [
        "10.248.2.0/24 via 10.248.2.0 onlink",
        "10.248.2.0 lladdr 0a:58:0a:f7:02:02 PERMANENT",
        "0a:58:0a:f7:02:02 dst 10.247.2.2 self permanent",
    ]
    .iter()
    .chain(&ghost)
    {
        assert!(on1.contains(want), "{want}: {on1}");
    }
    assert!(
        !on1.contains("10.248.1.0/24"),
        "none to its own pods: {on1}"
    );

    // Someone deletes node 2's device: the next recheck makes it and its entries again.
    in_ns_ok("skx-n2", "ip link del skiff.1");
    assert!(
        wait_until(wait, || get_in("skx-p1", url)
            .is_ok_and(|peer| peer.contains("10.248.1.11"))),
        "the device is made again: {:?}\n{}",
        get_in("skx-p1", url),
        logs()
    );

    // Pods send 1500-byte packets (their links' MTU, as Docker's bridge gives them) into a
    // 1450-byte tunnel: path MTU discovery fits a large response in.
    let big = get_in("skx-p1", "http://10.248.2.11:8080/big").unwrap_or_default();
    assert_eq!(big.len(), 300_000, "a 300 kB response crosses whole");

    // Services reach endpoints across the overlay: a pod's ClusterIP connection keeps its
    // address; a NodePort connection from outside is masqueraded to node 1's overlay address.
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: 30095}}]\n---\n{}",
            slice(&["10.248.2.11"])
        ),
    );
    let cip = server.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let cluster_url = format!("http://{cip}/cgi-bin/peer");
    assert!(
        wait_until(wait, || get_in("skx-p1", &cluster_url)
            .is_ok_and(|peer| peer.contains("10.248.1.11"))),
        "the ClusterIP reaches the pod on node 2: {:?}",
        get_in("skx-p1", &cluster_url)
    );
    assert!(
        wait_until(wait, || get_in(
            "skx-rt",
            "http://10.247.1.2:30095/cgi-bin/peer"
        )
        .is_ok_and(|peer| peer.contains("10.248.1.0"))),
        "node 1's NodePort reaches the pod on node 2: {:?}",
        get_in("skx-rt", "http://10.247.1.2:30095/cgi-bin/peer")
    );

    // The ghost goes while node 1's proxy is down: node 2's removes its entries at once, node
    // 1's when it starts again and finds them on the device it left behind.
    let mut p1 = guard.0.remove(1);
    let _ = p1.kill();
    let _ = p1.wait();
    server.kubectl_ok(&["delete", "node", "skx-ghost"]);
    assert!(
        wait_until(wait, || {
            let on2 = entries("skx-n2");
            ghost.iter().all(|g| !on2.contains(g))
        }),
        "node 2 removed the ghost's entries: {}\n{}",
        entries("skx-n2"),
        logs()
    );
    let (p1, log1) = start_proxy(&server, dir.path(), "skx-n1", "skx-up1", "10.253.5", &vxlan);
    guard.0.push(p1);
    assert!(
        wait_until(wait, || {
            let on1 = entries("skx-n1");
            ghost.iter().all(|g| !on1.contains(g))
        }),
        "node 1 removed the ghost's entries after a restart: {}\n{}",
        entries("skx-n1"),
        std::fs::read_to_string(&log1).unwrap_or_default()
    );
    assert!(
        get_in("skx-p1", url).is_ok_and(|peer| peer.contains("10.248.1.11")),
        "pod traffic still crosses: {:?}",
        get_in("skx-p1", url)
    );

    // --cleanup removes the device, and every overlay entry with it.
    let mut p1 = guard.0.pop().expect("proxy 1");
    let _ = p1.kill();
    let _ = p1.wait();
    let cleanup = Command::new("nsenter")
        .arg("--net=/run/netns/skx-n1")
        .arg(skiff_e2e::sibling_binary("skiff-proxy"))
        .arg("--cleanup")
        .output()
        .expect("skiff-proxy --cleanup");
    assert!(
        cleanup.status.success(),
        "{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    assert!(!in_ns("skx-n1", "ip link show skiff.1").status.success());
    let routes = in_ns_ok("skx-n1", "ip route");
    assert!(!routes.contains("10.248.2.0/24"), "{routes}");
    assert!(get_in("skx-p1", url).is_err(), "no overlay, no way across");

    // Node 2's proxy restarted with the default host-gw removes the device it made in vxlan
    // mode.
    let mut p2 = guard.0.remove(1);
    let _ = p2.kill();
    let _ = p2.wait();
    let (p2, log2) = start_proxy(&server, dir.path(), "skx-n2", "skx-up2", "10.253.6", &[]);
    guard.0.push(p2);
    assert!(
        wait_until(wait, || !in_ns("skx-n2", "ip link show skiff.1")
            .status
            .success()),
        "host-gw removes the VXLAN device: {}",
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
}
