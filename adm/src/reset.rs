//! `skiffadm reset`: undoes `init` or `join` on this machine, as `kubeadm reset` does: stops
//! the services, removes the proxy's iptables chains, routes and devices, the pod containers
//! and the pod network, then skiffadm's files. Only what skiffadm made goes: other things
//! under `/var/lib/skiff` and `/run/skiff` (skiffctl's local clusters) stay.

use std::process::Command;

use crate::Paths;
use crate::components::{Unit, env_var, flag_value};

/// What reset removes, files and folders.
pub fn removed(p: &Paths) -> Vec<std::path::PathBuf> {
    vec![
        p.etc(),
        p.apiserver_dir(),
        p.kubelet_dir(),
        p.var_lib().join("proxy"),
        p.supervise_pid(),
        p.log_dir(),
    ]
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Unmounts whatever is mounted under `dir` (the kubelet's volumes), deepest first.
fn unmount_under(dir: &std::path::Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let _ = run("umount", &["-l", m]);
    }
}

/// Removes `path`: a file, or a folder with everything in it. A folder that is a mount
/// point (a machine's own filesystem for /etc/skiff) is emptied and stays.
fn remove(path: &std::path::Path) -> std::io::Result<()> {
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    if !path.is_dir() {
        return gone(std::fs::remove_file(path));
    }
    for entry in std::fs::read_dir(path)? {
        let entry = entry?.path();
        if entry.is_dir() && !entry.is_symlink() {
            gone(std::fs::remove_dir_all(&entry))?;
        } else {
            gone(std::fs::remove_file(&entry))?;
        }
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => Ok(()),
        other => gone(other),
    }
}

/// Runs `skiffadm reset` (after the user agreed).
pub fn run_reset(p: &Paths) -> anyhow::Result<()> {
    // Read before the files go: the kubelet's runtime endpoint and node name.
    let kubelet_args = env_var(
        &std::fs::read_to_string(p.env_file(Unit::Kubelet.name())).unwrap_or_default(),
        "SKIFF_ARGS",
    );
    let runtime = flag_value(&kubelet_args, "--container-runtime-endpoint").map(String::from);
    let node = flag_value(&kubelet_args, "--hostname-override")
        .map(String::from)
        .or_else(|| {
            hostname::get()
                .ok()
                .map(|h| h.to_string_lossy().to_lowercase())
        });

    println!("[reset] Stopping the Skiff services");
    crate::services::stop_all(p)?;

    println!(
        "[reset] Removing the proxy's iptables chains, routes and devices (skiff-proxy --cleanup)"
    );
    match crate::supervise::binary(Unit::Proxy) {
        Some(proxy) => {
            if let Err(e) = run(&proxy.display().to_string(), &["--cleanup"]) {
                eprintln!("[reset] W: {e}");
            }
        }
        None => eprintln!("[reset] W: skiff-proxy not found; its iptables chains stay"),
    }

    if !kubelet_args.is_empty() {
        println!("[reset] Removing the pod containers and the pod network");
        let mut docker = Vec::new();
        if let Some(r) = &runtime {
            docker.extend(["-H".to_string(), r.clone()]);
        }
        let with = |extra: &[&str]| -> Vec<String> {
            docker
                .iter()
                .cloned()
                .chain(extra.iter().map(|s| s.to_string()))
                .collect()
        };
        // Only this node's: an engine may be shared (tests run several kubelets on one).
        let kind = format!("label={KIND_LABEL}");
        let mine = format!("label={NODE_LABEL}={}", node.as_deref().unwrap_or_default());
        let ps = with(&["ps", "-aq", "--filter", &kind, "--filter", &mine]);
        let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
        match run("docker", &ps) {
            Ok(ids) if !ids.trim().is_empty() => {
                let mut rm = with(&["rm", "-f"]);
                rm.extend(ids.split_whitespace().map(String::from));
                let rm: Vec<&str> = rm.iter().map(String::as_str).collect();
                if let Err(e) = run("docker", &rm) {
                    eprintln!("[reset] W: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("[reset] W: listing pod containers: {e}"),
        }
        if let Some(node) = &node {
            let net = format!("skiff-{node}");
            let rm = with(&["network", "rm", &net]);
            let rm: Vec<&str> = rm.iter().map(String::as_str).collect();
            let _ = run("docker", &rm);
        }
    }

    unmount_under(&p.kubelet_dir());
    for path in removed(p) {
        println!("[reset] Deleting {}", path.display());
        if let Err(e) = remove(&path) {
            eprintln!("[reset] W: deleting {}: {e}", path.display());
        }
    }
    println!(
        "\nThe reset process does not clean your kubeconfig files and you must remove them manually."
    );
    println!("Please, check the contents of the $HOME/.kube/config file.");
    Ok(())
}

/// The label the kubelet puts on every container it makes (skiff-runtime's `LABEL_KIND`;
/// named here rather than linking the runtime crate and Docker's client for one string).
const KIND_LABEL: &str = "io.skiff.kind";
/// The label naming the node whose kubelet made a container (the kubelet's `LABEL_NODE`).
const NODE_LABEL: &str = "io.skiff.node";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_leaves_skiffctls_clusters_alone() {
        let p = Paths::system();
        let gone = removed(&p);
        assert!(gone.contains(&"/etc/skiff".into()));
        assert!(gone.contains(&"/var/lib/skiff/kubelet".into()));
        assert!(
            !gone
                .iter()
                .any(|g| g == std::path::Path::new("/var/lib/skiff")
                    || g == std::path::Path::new("/run/skiff"))
        );
    }
}
