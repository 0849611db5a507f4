//! Where a local cluster keeps everything, and its names and addresses. All of it is derived
//! from the cluster's name and its index (a small number unique among the clusters on this
//! machine), so that `delete` can find everything `create` made, even after a crash.
//!
//! Cluster `NAME` with index `K` and `N` nodes:
//! - data dir `<root>/NAME` (state file, logs, pid files, the apiserver's and each node's data),
//!   runtime dir `/run/skiff/NAME` (each node's Docker socket and exec root);
//! - host bridge `skiffK` with 172.28.K.1/24; node `NAME-node-I` (I = 1..N) in network
//!   namespace `skiff-NAME-node-I`, veth `skKnI` on the bridge, address 172.28.K.(10+I);
//! - the host's forwarding rules for the bridge in the filter chain `SKIFF-CLUSTER-K`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where clusters live unless `SKIFF_CLUSTERS_DIR` says otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/skiff/clusters";
/// The longest cluster name: the Docker socket path under `/run/skiff` must stay short.
pub const MAX_NAME: usize = 20;
/// The most nodes a cluster can have (addresses 172.28.K.11 to .(10 + MAX_NODES)).
pub const MAX_NODES: u32 = 200;

/// The clusters' root directory.
pub fn root() -> PathBuf {
    std::env::var_os("SKIFF_CLUSTERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// Checks a cluster name: a DNS label of at most [`MAX_NAME`] characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid cluster name {name:?}: use 1 to {MAX_NAME} lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// A cluster's names, paths and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub name: String,
    pub index: u8,
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path, name: &str, index: u8) -> Layout {
        Layout {
            name: name.to_string(),
            index,
            root: root.to_path_buf(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    pub fn run_dir(&self) -> PathBuf {
        PathBuf::from("/run/skiff").join(&self.name)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir().join("logs")
    }

    pub fn pid_dir(&self) -> PathBuf {
        self.dir().join("pids")
    }

    pub fn apiserver_dir(&self) -> PathBuf {
        self.dir().join("apiserver")
    }

    /// The admin kubeconfig the apiserver writes (its server is the bridge address).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.apiserver_dir().join("admin.kubeconfig")
    }

    pub fn bridge(&self) -> String {
        format!("skiff{}", self.index)
    }

    pub fn subnet(&self) -> ipnet::Ipv4Net {
        ipnet::Ipv4Net::new(Ipv4Addr::new(172, 28, self.index, 0), 24).expect("a /24 is valid")
    }

    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 28, self.index, 1)
    }

    pub fn host_chain(&self) -> String {
        format!("SKIFF-CLUSTER-{}", self.index)
    }

    /// The chain (jumped to from INPUT for packets from the bridge) that limits what the
    /// nodes and their pods reach on the host.
    pub fn host_input_chain(&self) -> String {
        format!("SKIFF-CLUSTER-{}-INPUT", self.index)
    }

    pub fn node(&self, i: u32) -> NodeLayout {
        let name = format!("{}-node-{i}", self.name);
        NodeLayout {
            netns: format!("skiff-{name}"),
            veth: format!("sk{}n{i}", self.index),
            ip: Ipv4Addr::new(172, 28, self.index, 10 + i as u8),
            dir: self.dir().join("nodes").join(&name),
            run_dir: self.run_dir().join(format!("n{i}")),
            cgroup_parent: format!("/skiff-{name}"),
            name,
        }
    }

    /// The node `name` names, if it is one of this cluster's first `nodes`.
    pub fn node_named(&self, name: &str, nodes: u32) -> Option<NodeLayout> {
        (1..=nodes).map(|i| self.node(i)).find(|n| n.name == name)
    }
}

/// One node's names, paths and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    pub name: String,
    pub netns: String,
    /// The host end of the node's veth (the node's end is `eth0`).
    pub veth: String,
    pub ip: Ipv4Addr,
    /// Docker's data root, the kubelet's root dir.
    pub dir: PathBuf,
    /// Docker's socket and exec root.
    pub run_dir: PathBuf,
    /// The cgroup Docker puts the node's containers under.
    pub cgroup_parent: String,
}

impl NodeLayout {
    pub fn docker_socket(&self) -> PathBuf {
        self.run_dir.join("docker.sock")
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }
}

pub fn state_file(root: &Path, name: &str) -> PathBuf {
    root.join(name).join("cluster.json")
}

/// What `create` recorded: written before anything else is made, so that `delete` can undo a
/// crashed `create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub name: String,
    pub index: u8,
    pub nodes: u32,
    pub etcd: bool,
    /// The apiserver's URL, once it serves.
    #[serde(default)]
    pub server: Option<String>,
    /// The kubeconfig file `create` wrote the context to.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The context name in that file.
    #[serde(default)]
    pub context: Option<String>,
    /// `--node-monitor-grace-period` in seconds (the kubelets' Lease duration too).
    #[serde(default = "default_grace")]
    pub grace_seconds: u64,
}

fn default_grace() -> u64 {
    40
}

impl State {
    pub fn layout(&self, root: &Path) -> Layout {
        Layout::new(root, &self.name, self.index)
    }

    pub fn load(root: &Path, name: &str) -> anyhow::Result<Option<State>> {
        let path = state_file(root, name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!("reading {}: {e}", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    pub fn save(&self, root: &Path) -> anyhow::Result<()> {
        let path = state_file(root, &self.name);
        if let Some(dir) = path.parent() {
            // The cluster's folder: private, as everything the cluster keeps in it.
            skiff_common::pki::create_private_dir(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Every cluster recorded under `root`, by name.
    pub fn all(root: &Path) -> Vec<State> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(root) else {
            return out;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(Some(state)) = State::load(root, &name) {
                out.push(state);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The smallest index that no recorded cluster uses and whose subnet is not in `taken` (the
/// host's routes, which show leftovers of clusters whose state is gone).
pub fn free_index(used: &[u8], taken: &[ipnet::Ipv4Net]) -> Option<u8> {
    (0..=255u8).find(|k| {
        let subnet = ipnet::Ipv4Net::new(Ipv4Addr::new(172, 28, *k, 0), 24).expect("valid");
        !used.contains(k)
            && !taken
                .iter()
                .any(|t| t.contains(&subnet.network()) || subnet.contains(&t.network()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_short_enough_for_socket_paths() {
        assert!(validate_name("skiff").is_ok());
        assert!(validate_name("e2e-etcd-1").is_ok());
        for bad in [
            "",
            "Skiff",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "abcdefghijklmnopqrstu",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn everything_is_derived_from_the_name_and_index() {
        let l = Layout::new(Path::new("/var/lib/skiff/clusters"), "dev", 3);
        assert_eq!(l.bridge(), "skiff3");
        assert_eq!(l.subnet().to_string(), "172.28.3.0/24");
        assert_eq!(l.host_ip(), Ipv4Addr::new(172, 28, 3, 1));
        let n = l.node(2);
        assert_eq!(n.name, "dev-node-2");
        assert_eq!(n.netns, "skiff-dev-node-2");
        assert_eq!(n.veth, "sk3n2");
        assert_eq!(n.ip, Ipv4Addr::new(172, 28, 3, 12));
        assert_eq!(
            n.docker_socket(),
            PathBuf::from("/run/skiff/dev/n2/docker.sock")
        );
        assert_eq!(
            n.dir,
            PathBuf::from("/var/lib/skiff/clusters/dev/nodes/dev-node-2")
        );
        assert!(l.node(MAX_NODES).veth.len() <= 15, "interface names");
        assert!(Layout::new(Path::new("/"), "x", 255).bridge().len() <= 15);
        assert_eq!(l.node_named("dev-node-2", 3), Some(n));
        assert_eq!(l.node_named("dev-node-4", 3), None);
    }

    #[test]
    fn the_index_skips_recorded_clusters_and_subnets_in_use() {
        assert_eq!(free_index(&[], &[]), Some(0));
        assert_eq!(free_index(&[0, 1], &[]), Some(2));
        let taken = ["172.28.0.0/24".parse().unwrap()];
        assert_eq!(free_index(&[], &taken), Some(1));
        let wide = ["172.28.0.0/23".parse().unwrap()];
        assert_eq!(free_index(&[], &wide), Some(2));
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(free_index(&all, &[]), None);
    }

    #[test]
    fn state_round_trips_and_is_listed() {
        let root = tempfile::tempdir().unwrap();
        let s = State {
            name: "a".into(),
            index: 4,
            nodes: 3,
            etcd: true,
            server: Some("https://172.28.4.1:40000".into()),
            kubeconfig: None,
            context: None,
            grace_seconds: 40,
        };
        s.save(root.path()).unwrap();
        assert_eq!(State::load(root.path(), "a").unwrap(), Some(s.clone()));
        assert_eq!(State::load(root.path(), "b").unwrap(), None);
        assert_eq!(State::all(root.path()), vec![s]);
    }
}
