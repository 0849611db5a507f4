//! Installing Skiff on machines as an operator does (issue 22): the .deb's binaries on each
//! "machine" (a network and mount namespace with its own Docker engine, see
//! `skiff_e2e::machines`), `skiffadm init` on the first and the join line it prints on the
//! others; then what the cluster must do, what a bad join gets, and what `reset` leaves.

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use skiff_e2e::machines::{Lan, Machine};
use skiff_e2e::{BUSYBOX, ensure_busybox_image, sibling_binary, wait_until};

/// The .deb's `/usr/bin`, built once from this build's binaries and unpacked with dpkg-deb.
fn installed_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bins = sibling_binary("skiffadm")
            .parent()
            .expect("binary dir")
            .to_path_buf();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let out_dir = tempfile::Builder::new()
            .prefix("skiff-e2e-deb")
            .tempdir()
            .expect("tempdir")
            .keep();
        let out = std::process::Command::new("bash")
            .arg(root.join("deploy/package.sh"))
            .arg("--bin-dir")
            .arg(&bins)
            .arg("--out-dir")
            .arg(&out_dir)
            .arg("--fast")
            .output()
            .expect("run deploy/package.sh");
        assert!(
            out.status.success(),
            "package.sh: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deb = std::fs::read_dir(&out_dir)
            .expect("package dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("a .deb");
        let unpacked = out_dir.join("root");
        let out = std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&unpacked)
            .output()
            .expect("dpkg-deb -x");
        assert!(out.status.success(), "dpkg-deb -x: {out:?}");
        unpacked.join("usr/bin")
    })
}

fn skiffadm(m: &Machine, args: &[&str]) -> Output {
    m.command(&installed_bin().join("skiffadm").display().to_string())
        .args(args)
        .output()
        .expect("run skiffadm")
}

fn skiffadm_ok(m: &Machine, args: &[&str]) -> String {
    let out = skiffadm(m, args);
    assert!(
        out.status.success(),
        "{}: skiffadm {}: {}{}",
        m.name,
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skiffadm join ...` as `init` printed it (kubeadm prints it over two lines, joined by `\`).
fn join_args(init_output: &str) -> Vec<String> {
    let text = init_output.replace("\\\n", " ");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("skiffadm join "))
        .unwrap_or_else(|| panic!("no join line in:\n{init_output}"));
    line.split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn with(args: &[String], extra: &[&str]) -> Vec<String> {
    args.iter()
        .cloned()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Replaces the value after `flag` in a join line.
fn replaced(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut out = args.to_vec();
    let i = out
        .iter()
        .position(|a| a == flag)
        .expect("flag in join line")
        + 1;
    out[i] = value.to_string();
    out
}

fn machines(lan: &Lan, placement: &[(u8, u8)]) -> Vec<Machine> {
    ensure_busybox_image();
    let ms: Vec<Machine> = placement.iter().map(|&(s, i)| lan.machine(s, i)).collect();
    for m in &ms {
        m.load_images(&[BUSYBOX]);
        // This host's disk is nearly full: the kubelet must neither collect the test image
        // nor refuse pods for disk pressure. An operator would say so the same way.
        m.sh_ok(
            "echo 'SKIFF_EXTRA_ARGS=--image-gc-high-threshold=100 --eviction-hard=memory.available<100Mi' > /etc/default/skiff-kubelet",
        );
    }
    ms
}

fn init(m: &Machine, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "init",
        "--apiserver-advertise-address",
        &m.ip,
        "--node-name",
        &m.name,
        "--cri-socket",
        "unix:///run/docker.sock",
    ];
    args.extend_from_slice(extra);
    let out = skiffadm_ok(m, &args);
    assert!(
        out.contains("Your Kubernetes control-plane has initialized successfully!"),
        "{out}"
    );
    // No systemd in a machine: skiffadm says so and supervises the same command lines.
    assert!(
        out.contains("systemd is not running") && out.contains("skiffadm supervise"),
        "{out}"
    );
    assert!(
        out.contains("cp -i /etc/skiff/admin.conf $HOME/.kube/config"),
        "{out}"
    );
    join_args(&out)
}

fn join(m: &Machine, join: &[String]) -> Output {
    let args = with(
        join,
        &[
            "--node-name",
            &m.name,
            "--node-ip",
            &m.ip,
            "--cri-socket",
            "unix:///run/docker.sock",
        ],
    );
    skiffadm(m, &strs(&args))
}

fn join_ok(m: &Machine, line: &[String]) {
    let out = join(m, line);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: join: {stdout}{}",
        m.name,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("This node has joined the cluster"),
        "{stdout}"
    );
}

fn join_refused(m: &Machine, line: &[String], expected: &str) {
    // kubeadm keeps retrying discovery for a while (a new token is signed within moments).
    let out = join(m, &with(line, &["--discovery-timeout", "5s"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", m.name);
    assert!(
        stderr.contains(expected),
        "{}: wanted {expected:?} in: {stderr}",
        m.name
    );
    // A refused join starts nothing and leaves no credential.
    assert!(!m.path("/etc/skiff/kubelet.conf").exists());
    assert!(m.processes().iter().all(|(_, c)| !c.contains("skiff-")));
}

fn ready_nodes(cp: &Machine) -> usize {
    let out = cp.kubectl_as(
        "/etc/skiff/admin.conf",
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "True")
        .count()
}

/// Every certificate a machine holds (files and kubeconfigs' embedded data): subject lines.
fn certificate_subjects(m: &Machine) -> String {
    m.sh_ok(
        "for f in $(find /etc/skiff /var/lib/skiff -path /var/lib/skiff/docker -prune -o -type f -print); do \
           case \"$(head -c 200000 $f)\" in *'BEGIN CERTIFICATE'*) \
             openssl crl2pkcs7 -nocrl -certfile $f | openssl pkcs7 -print_certs -noout | grep subject;; esac; \
           for d in $(grep -ho 'client-certificate-data: [A-Za-z0-9+/=]*' $f | cut -d' ' -f2); do \
             echo $d | base64 -d | openssl x509 -noout -subject; done; \
         done",
    )
}

/// A Deployment of `replicas` busybox web servers that answer with their pod's name, spread
/// one per node (tolerating the control plane's taint), and a NodePort Service for it.
fn web(cp: &Machine, replicas: usize) {
    cp.apply(&format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      tolerations: [{{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}}]
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web}}}}}}
      containers:
      - name: web
        image: {BUSYBOX}
        imagePullPolicy: Never
        command: [sh, -c, \"trap 'exit 0' TERM; mkdir -p /www; hostname > /www/index.html; httpd -f -p 8080 -h /www & wait\"]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    ));
}

/// Pods of `web` as (name, node, IP) once `n` are ready.
fn web_pods(cp: &Machine, n: usize) -> Vec<(String, String, String)> {
    let mut pods = Vec::new();
    let ok = wait_until(Duration::from_secs(180), || {
        let out = cp.kubectl_as(
            "/etc/skiff/admin.conf",
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ],
        );
        pods = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[3] == "True")
                    .then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
            })
            .collect();
        pods.len() == n
    });
    assert!(
        ok,
        "{n} web pods not ready: {}",
        cp.kubectl_ok(&["get", "pods", "-o", "wide"])
    );
    pods
}

/// Every pod fetches every other pod's page by pod IP (pods on other machines included).
fn pods_reach_each_other(cp: &Machine, pods: &[(String, String, String)]) {
    for (from, from_node, _) in pods {
        for (to, to_node, ip) in pods {
            // nc, not busybox's wget: that static build crashes in any address lookup.
            let out = cp.kubectl_ok(&[
                "exec",
                from,
                "--",
                "sh",
                "-c",
                &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080 | tail -n 1"),
            ]);
            assert_eq!(
                out.trim(),
                to,
                "pod {from} on {from_node} fetching {to} on {to_node}"
            );
        }
    }
}

#[test]
fn three_machines_on_one_subnet_install_join_serve_and_reset() {
    let lan = Lan::new("hg", 1);
    let ms = machines(&lan, &[(1, 1), (1, 2), (1, 3)]);
    let (cp, workers) = (&ms[0], &ms[1..]);
    let line = init(cp, &[]);
    assert!(line.contains(&format!("{}:6443", cp.ip)), "{line:?}");

    // A wrong token or CA hash is refused before anything is written or started.
    join_refused(
        &workers[0],
        &replaced(&line, "--token", "zzzzzz.0123456789abcdef"),
        "could not find a JWS signature in the cluster-info ConfigMap for token ID \"zzzzzz\"",
    );
    let hash = &line[line
        .iter()
        .position(|a| a == "--discovery-token-ca-cert-hash")
        .unwrap()
        + 1];
    join_refused(
        &workers[0],
        &replaced(
            &line,
            "--discovery-token-ca-cert-hash",
            &format!("sha256:{}", "0".repeat(64)),
        ),
        &format!("none of the public keys \"{hash}\" are pinned"),
    );

    // The admin is kubeadm's `kubernetes-admin`; tokens and certificates are listed as
    // kubeadm lists them.
    let who = cp.kubectl_ok(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who, "kubernetes-admin");
    let tokens = skiffadm_ok(cp, &["token", "list"]);
    assert!(
        tokens.contains("system:bootstrappers:kubeadm:default-node-token"),
        "{tokens}"
    );
    let certs = skiffadm_ok(cp, &["certs", "check-expiration"]);
    assert!(
        certs.contains("CERTIFICATE AUTHORITY") && certs.contains("admin.conf"),
        "{certs}"
    );

    for w in workers {
        join_ok(w, &line);
    }
    assert!(
        wait_until(Duration::from_secs(120), || ready_nodes(cp) == 3),
        "nodes: {}",
        cp.kubectl_ok(&["get", "nodes", "-o", "wide"])
    );
    let labels = cp.kubectl_ok(&["get", "node", &cp.name, "-o", "jsonpath={.metadata.labels}"]);
    assert!(
        labels.contains("node-role.kubernetes.io/control-plane"),
        "{labels}"
    );
    let taints = cp.kubectl_ok(&["get", "node", &cp.name, "-o", "jsonpath={.spec.taints}"]);
    assert!(
        taints.contains("node-role.kubernetes.io/control-plane") && taints.contains("NoSchedule"),
        "{taints}"
    );

    // Each worker acts as its node and holds no system:masters credential.
    for w in workers {
        let who = w.kubectl_as(
            "/etc/skiff/kubelet.conf",
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&who.stdout),
            format!("system:node:{}", w.name),
            "{who:?}"
        );
        let subjects = certificate_subjects(w);
        assert!(
            subjects.contains(&format!("CN = system:node:{}", w.name)),
            "{subjects}"
        );
        assert!(
            !subjects.contains("system:masters"),
            "{}: {subjects}",
            w.name
        );
        assert!(!w.path("/etc/skiff/admin.conf").exists());
    }
    let csrs = cp.kubectl_ok(&["get", "csr"]);
    assert!(csrs.contains("Approved,Issued"), "{csrs}");

    // A Deployment spread over the three machines serves through a NodePort on each.
    web(cp, 3);
    let pods = web_pods(cp, 3);
    let nodes: std::collections::BTreeSet<&str> = pods.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(nodes.len(), 3, "{pods:?}");
    let port = cp.kubectl_ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    for m in &ms {
        let mut answered = std::collections::BTreeSet::new();
        let ok = wait_until(Duration::from_secs(30), || {
            let out = lan.router_cmd(&[
                "curl",
                "-sS",
                "--max-time",
                "3",
                &format!("http://{}:{port}/", m.ip),
            ]);
            if out.status.success() {
                answered.insert(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            answered.len() >= 2
        });
        assert!(
            ok,
            "NodePort {port} on {}: answered by {answered:?}",
            m.name
        );
    }
    pods_reach_each_other(cp, &pods);

    // reset leaves nothing of Skiff on the machine, and the node can no longer act.
    let last = &workers[1];
    let reset = skiffadm_ok(last, &["reset", "-f"]);
    assert!(
        reset.contains("The reset process does not clean your kubeconfig files"),
        "{reset}"
    );
    let left = last.sh_ok("find /etc/skiff /var/lib/skiff /var/log/skiff -mindepth 1 -not -path '/var/lib/skiff/docker*' | head; ls /run/skiff 2>/dev/null; iptables-save | grep -i skiff | head -3; ip -o link | grep -E 'skiff|cbr' | head -3");
    assert_eq!(left.trim(), "", "left behind by reset");
    assert!(
        last.processes().iter().all(|(_, c)| !c.contains("skiff")),
        "{:?}",
        last.processes()
    );
    let containers = std::process::Command::new("docker")
        .args(["-H", &last.docker_host(), "ps", "-aq"])
        .output()
        .expect("docker ps");
    assert_eq!(String::from_utf8_lossy(&containers.stdout).trim(), "");

    // An expired token no longer joins.
    let short = skiffadm_ok(
        cp,
        &["token", "create", "--ttl", "2s", "--print-join-command"],
    );
    let short_line = join_args(&short);
    let token = short_line[short_line.iter().position(|a| a == "--token").unwrap() + 1].clone();
    assert!(
        wait_until(Duration::from_secs(60), || !skiffadm_ok(
            cp,
            &["token", "list"]
        )
        .contains(&token)),
        "the expired token is still listed"
    );
    join_refused(last, &short_line, &token[..6]);
}

#[test]
fn machines_on_two_subnets_reach_each_other_over_vxlan() {
    let lan = Lan::new("vx", 2);
    let ms = machines(&lan, &[(1, 1), (2, 2)]);
    let line = init(&ms[0], &["--pod-network", "vxlan"]);
    join_ok(&ms[1], &line);
    assert!(
        wait_until(Duration::from_secs(120), || ready_nodes(&ms[0]) == 2),
        "nodes: {}",
        ms[0].kubectl_ok(&["get", "nodes", "-o", "wide"])
    );
    web(&ms[0], 2);
    let pods = web_pods(&ms[0], 2);
    assert_ne!(pods[0].1, pods[1].1, "{pods:?}");
    pods_reach_each_other(&ms[0], &pods);
    // The traffic crossed the overlay: each machine has the VXLAN device.
    for m in &ms {
        let link = m.sh_ok("ip -d link show skiff.1");
        assert!(link.contains("vxlan id 1"), "{link}");
    }
}
