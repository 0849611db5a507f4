//! `skiffadm` on "machines" made on this host: each a network namespace (joined to the other
//! by a veth pair) with a private mount namespace whose `/etc/skiff`, `/var/lib/skiff`,
//! `/run/skiff` and `/var/log/skiff` are its own tmpfs. Without systemd, `skiffadm init`
//! supervises the control plane itself; the kubelet is skipped (no Docker engine per machine
//! here), so the checks are the control plane's: the apiserver answers `admin.conf` as
//! `kubernetes-admin`, the bootstrap token and certificates are listed, a join with a wrong
//! token or CA hash is refused with kubeadm's words, and `reset` stops and removes it all.

use std::process::{Command, Output};

use skiff_e2e::sibling_binary;

const NS1: &str = "skiffadm-e2e-1";
const NS2: &str = "skiffadm-e2e-2";
const VETH: &str = "skadm-e2e";

/// Mounts a tmpfs over each of skiffadm's folders: the machine's own disk for them.
const PRIVATE_DIRS: &str = "for d in /etc/skiff /var/lib/skiff /run/skiff /var/log/skiff; do mkdir -p $d && mount -t tmpfs tmpfs $d || exit 1; done";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `script` on a new machine in network namespace `ns`, in a fresh private mount
/// namespace.
fn on_new_machine(ns: &str, script: &str) -> Output {
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &format!("{PRIVATE_DIRS}\n{script}"),
        ],
    )
}

/// Runs `script` on the machine whose process `pid` lives there (its mount and network
/// namespaces).
fn on_machine_of(pid: u32, script: &str) -> Output {
    run(
        "nsenter",
        &[
            "--target",
            &pid.to_string(),
            "--mount",
            "--net",
            "sh",
            "-c",
            script,
        ],
    )
}

fn remove_machines() {
    for ns in [NS1, NS2] {
        let _ = run("ip", &["netns", "del", ns]);
    }
}

/// Stops what a machine runs and removes the namespaces, even when the test fails.
struct Machines {
    supervisor: Option<u32>,
}

impl Drop for Machines {
    fn drop(&mut self) {
        if let Some(pid) = self.supervisor {
            // SIGTERM to the supervisor stops its children too.
            let _ = run("kill", &[&pid.to_string()]);
            skiff_e2e::wait_until(std::time::Duration::from_secs(30), || !alive(pid));
        }
        remove_machines();
    }
}

fn setup_machines() {
    remove_machines();
    for (cmd, ok_to_fail) in [
        (vec!["netns", "add", NS1], false),
        (vec!["netns", "add", NS2], false),
        (
            vec![
                "link", "add", VETH, "netns", NS1, "type", "veth", "peer", "name", VETH, "netns",
                NS2,
            ],
            false,
        ),
    ] {
        let o = run("ip", &cmd);
        assert!(ok_to_fail || o.status.success(), "ip {cmd:?}: {}", text(&o));
    }
    for (ns, ip) in [(NS1, "10.123.0.1/24"), (NS2, "10.123.0.2/24")] {
        for args in [
            vec!["-n", ns, "link", "set", "lo", "up"],
            vec!["-n", ns, "addr", "add", ip, "dev", VETH],
            vec!["-n", ns, "link", "set", VETH, "up"],
            vec!["-n", ns, "route", "add", "default", "dev", VETH],
        ] {
            let o = run("ip", &args);
            assert!(o.status.success(), "ip {args:?}: {}", text(&o));
        }
    }
}

#[test]
fn init_supervises_a_control_plane_join_refuses_a_wrong_token_or_hash_and_reset_removes_it() {
    if !is_root() {
        eprintln!("skipped: needs root (network and mount namespaces)");
        return;
    }
    let adm = sibling_binary("skiffadm").display().to_string();
    setup_machines();
    let mut machines = Machines { supervisor: None };

    let init = on_new_machine(
        NS1,
        &format!(
            "{adm} init --skip-phases=kubelet-start --node-name cp1 --timeout 2m || exit 1\necho SUPERVISOR=$(cat /run/skiff/supervise.pid)"
        ),
    );
    let out = text(&init);
    machines.supervisor = out
        .lines()
        .find_map(|l| l.strip_prefix("SUPERVISOR="))
        .and_then(|p| p.trim().parse().ok());
    assert!(init.status.success(), "init failed:\n{out}");
    assert!(
        out.contains("systemd is not running") && out.contains("skiffadm supervise"),
        "{out}"
    );
    assert!(
        out.contains("Your Kubernetes control-plane has initialized successfully!"),
        "{out}"
    );
    assert!(
        out.contains("  sudo cp -i /etc/skiff/admin.conf $HOME/.kube/config"),
        "{out}"
    );
    let join = out
        .lines()
        .find(|l| l.starts_with("skiffadm join 10.123.0.1:6443 --token "))
        .unwrap_or_else(|| panic!("no join line in:\n{out}"));
    let words: Vec<&str> = join.split_whitespace().collect();
    let (token, hash) = (words[4], words[6]);
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{join}");
    let pid = machines.supervisor.expect("the supervisor's pid");

    let admin = on_machine_of(
        pid,
        &format!(
            "kubectl --kubeconfig /etc/skiff/admin.conf auth whoami -o jsonpath='{{.status.userInfo.username}}' && echo && {adm} token list && {adm} certs check-expiration"
        ),
    );
    let out = text(&admin);
    assert!(admin.status.success(), "{out}");
    assert!(out.starts_with("kubernetes-admin\n"), "{out}");
    assert!(
        out.contains(token) && out.contains("system:bootstrappers:kubeadm:default-node-token"),
        "{out}"
    );
    assert!(
        out.contains("admin.conf") && out.contains("CERTIFICATE AUTHORITY"),
        "{out}"
    );

    // Discovery from the second machine: the token and the pin must both be right.
    let wrong_token = on_new_machine(
        NS2,
        &format!(
            "{adm} join 10.123.0.1:6443 --token zzzzzz.0123456789abcdef --discovery-token-ca-cert-hash {hash} --skip-preflight --discovery-timeout 3s"
        ),
    );
    assert!(!wrong_token.status.success());
    assert!(
        text(&wrong_token).contains(
            "could not find a JWS signature in the cluster-info ConfigMap for token ID \"zzzzzz\""
        ),
        "{}",
        text(&wrong_token)
    );
    let other_hash = format!("sha256:{}", "0".repeat(64));
    let wrong_hash = on_new_machine(
        NS2,
        &format!(
            "{adm} join 10.123.0.1:6443 --token {token} --discovery-token-ca-cert-hash {other_hash} --skip-preflight"
        ),
    );
    assert!(!wrong_hash.status.success());
    assert!(
        text(&wrong_hash).contains(&format!("none of the public keys \"{hash}\" are pinned")),
        "{}",
        text(&wrong_hash)
    );

    let reset = on_machine_of(
        pid,
        &format!("{adm} reset -f && echo LEFT: && ls -A /etc/skiff /var/lib/skiff /run/skiff"),
    );
    let out = text(&reset);
    assert!(reset.status.success(), "{out}");
    assert!(
        out.contains("The reset process does not clean your kubeconfig files"),
        "{out}"
    );
    assert!(!alive(pid), "the supervisor still runs after reset");
    let left = out.split("LEFT:").nth(1).unwrap_or_default();
    assert!(
        left.lines().all(|l| l.is_empty() || l.ends_with(':')),
        "left behind:\n{out}"
    );
    machines.supervisor = None;
}

/// Whether process `pid` runs (a zombie waiting for its parent does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn is_root() -> bool {
    run("id", &["-u"]).stdout.starts_with(b"0\n")
}
