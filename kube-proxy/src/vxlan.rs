//! The VXLAN pod network (`--pod-network vxlan`, flannel's vxlan backend), for nodes that share
//! no L2 segment: one `skiff.1` VXLAN device per node (VNI 1, UDP port 8472, local address
//! the node's InternalIP) and, for every other node with pod CIDR P and InternalIP N, a route
//! `P via P.0 dev skiff.1 onlink`, a permanent neighbour `P.0 → mac(N)` and a forwarding entry
//! `mac(N) → N`. IPv4 only.
//!
//! A node's VTEP MAC is derived from its InternalIP ([`vtep_mac`]) rather than random, as
//! flannel's is: every node then computes every other node's MAC from its Node object, and
//! the proxy publishes nothing. Flannel writes its random MAC into a Node annotation; here that
//! would mean letting the proxy's identity (`system:kube-proxy`, which only reads Nodes) patch
//! Node objects, and so letting any proxy's credential rewrite any node.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;

/// The device's name (flannel's is `flannel.1`: the VNI after the dot).
pub const DEVICE: &str = "skiff.1";
/// The VXLAN network identifier.
pub const VNI: u64 = 1;
/// The UDP port (the Linux kernel's and flannel's default, not IANA's 4789).
pub const PORT: u64 = 8472;
/// What VXLAN over IPv4 adds to each packet: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner
/// Ethernet (14) bytes. The device's MTU is the underlay's minus this.
pub const OVERHEAD: u64 = 50;

/// A VTEP MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = ();

    fn from_str(s: &str) -> Result<Mac, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            *b = u8::from_str_radix(parts.next().ok_or(())?, 16).map_err(|_| ())?;
        }
        match parts.next() {
            None => Ok(Mac(out)),
            Some(_) => Err(()),
        }
    }
}

/// The VTEP MAC of the node with InternalIP `ip`: `0a:58:` and the address's four bytes. `0a`
/// has the locally-administered bit set and the multicast bit clear, so it collides with no
/// vendor's address; it is the prefix Kubernetes network plugins use for IP-derived MACs.
pub fn vtep_mac(ip: Ipv4Addr) -> Mac {
    let [a, b, c, d] = ip.octets();
    Mac([0x0a, 0x58, a, b, c, d])
}

/// What this node's device should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The node's InternalIP: the tunnel's local end, and where the MTU comes from.
    pub local: Ipv4Addr,
    pub mac: Mac,
    /// The network address of the node's pod CIDR, as a /32 (flannel gives its device the .0
    /// of the node's subnet): the source address of the node's own traffic to other nodes'
    /// pods, and what the other nodes' routes go through.
    pub address: Ipv4Addr,
}

/// One entry on the device for another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    /// `ip route replace <pod CIDR> via <its .0> dev skiff.1 onlink`.
    Route(Ipv4Net, Ipv4Addr),
    /// `ip neigh replace <pod CIDR's .0> lladdr <mac> dev skiff.1 nud permanent`.
    Neigh(Ipv4Addr, Mac),
    /// `bridge fdb replace <mac> dev skiff.1 dst <node IP> self permanent`.
    Fdb(Mac, Ipv4Addr),
}

/// The device and entries the nodes call for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// `None` until this node has an IPv4 podCIDR and InternalIP: without the device no other
    /// node's entries can be set either.
    pub device: Option<Device>,
    pub entries: BTreeSet<Entry>,
}

/// A node's IPv4 pod CIDR and InternalIP, if it has both.
fn pod_cidr_and_ip(node: &Node) -> Option<(Ipv4Net, Ipv4Addr)> {
    let cidr: Ipv4Net = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
    let ip = node
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse::<Ipv4Addr>().ok())?;
    Some((cidr.trunc(), ip))
}

/// The device and entries node `me` needs among `nodes`.
pub fn wanted(me: &str, nodes: &[Arc<Node>]) -> Wanted {
    let Some((my_cidr, my_ip)) = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(me))
        .and_then(|n| pod_cidr_and_ip(n))
    else {
        return Wanted::default();
    };
    let mut entries = BTreeSet::new();
    for n in nodes {
        if n.metadata.name.as_deref() == Some(me) {
            continue;
        }
        let Some((cidr, ip)) = pod_cidr_and_ip(n) else {
            continue;
        };
        let gateway = cidr.network();
        let mac = vtep_mac(ip);
        entries.insert(Entry::Route(cidr, gateway));
        entries.insert(Entry::Neigh(gateway, mac));
        entries.insert(Entry::Fdb(mac, ip));
    }
    Wanted {
        device: Some(Device {
            local: my_ip,
            mac: vtep_mac(my_ip),
            address: my_cidr.network(),
        }),
        entries,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {0}: {1}; is iproute2 installed?")]
    Spawn(&'static str, std::io::Error),
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error(
        "no interface has this node's InternalIP {0}: the VXLAN device's local address must be \
         one of the node's own; check the Node's addresses (the kubelet's --node-ip)"
    )]
    NoUnderlay(Ipv4Addr),
    #[error("cannot read `{cmd}`'s output: {error}")]
    Output { cmd: String, error: String },
}

/// The kernel side of the overlay (`ip` and `bridge`; a fake in tests).
pub trait VxlanWriter {
    /// Makes [`DEVICE`] match `device`: created, or recreated when its VNI, port, local
    /// address or learning differ; MAC, MTU and address set; up. Returns the entries on it now
    /// (none on a new device), so a restarted proxy removes what is no longer wanted.
    fn ensure_device(&self, device: &Device) -> Result<BTreeSet<Entry>, Error>;
    /// Sets `entry` (replacing an entry with its key).
    fn set(&self, entry: &Entry) -> Result<(), Error>;
    /// Removes `entry`; one already gone is fine.
    fn remove(&self, entry: &Entry);
}

/// The real overlay, through the `ip` and `bridge` commands (as [`crate::routes::IpRoute`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct IpVxlan;

/// Runs `program args`, returning its standard output.
fn run(program: &'static str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::Spawn(program, e))?;
    if !out.status.success() {
        return Err(Error::Failed {
            cmd: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args` (with `-j`), parsing its JSON output.
fn run_json(program: &'static str, args: &[&str]) -> Result<Vec<Value>, Error> {
    let out = run(program, args)?;
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&out).map_err(|e| Error::Output {
        cmd: format!("{program} {}", args.join(" ")),
        error: e.to_string(),
    })
}

/// Whether `e` says the device does not exist.
fn no_such_device(e: &Error) -> bool {
    matches!(e, Error::Failed { stderr, .. } if stderr.contains("does not exist") || stderr.contains("Cannot find device"))
}

/// Removes [`DEVICE`] (and with it every route, neighbour and forwarding entry on it): for
/// `--cleanup`, and when the proxy runs with `--pod-network host-gw`. Absent is fine; returns
/// whether it existed.
pub fn delete_device() -> Result<bool, Error> {
    match run("ip", &["link", "del", DEVICE]) {
        Ok(_) => Ok(true),
        Err(e) if no_such_device(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the device `link` (from `ip -d -j link show`) was made as `device` wants.
fn same_tunnel(link: &Value, device: &Device) -> bool {
    let info = &link["linkinfo"];
    let data = &info["info_data"];
    info["info_kind"] == "vxlan"
        && data["id"].as_u64() == Some(VNI)
        && data["port"].as_u64() == Some(PORT)
        && data["local"].as_str() == Some(&device.local.to_string())
        && data["learning"].as_bool() == Some(false)
}

/// The entries on the device, from the kernel.
fn listed_entries() -> Result<BTreeSet<Entry>, Error> {
    let mut out = BTreeSet::new();
    for r in run_json("ip", &["-j", "-4", "route", "show", "dev", DEVICE])? {
        if let (Some(Ok(cidr)), Some(Ok(gw))) = (
            r["dst"].as_str().map(str::parse::<Ipv4Net>),
            r["gateway"].as_str().map(str::parse::<Ipv4Addr>),
        ) {
            out.insert(Entry::Route(cidr, gw));
        }
    }
    for n in run_json("ip", &["-j", "-4", "neigh", "show", "dev", DEVICE])? {
        if let (Some(Ok(ip)), Some(Ok(mac))) = (
            n["dst"].as_str().map(str::parse::<Ipv4Addr>),
            n["lladdr"].as_str().map(str::parse::<Mac>),
        ) {
            out.insert(Entry::Neigh(ip, mac));
        }
    }
    for f in run_json("bridge", &["-j", "fdb", "show", "dev", DEVICE])? {
        if let (Some(Ok(mac)), Some(Ok(dst))) = (
            f["mac"].as_str().map(str::parse::<Mac>),
            f["dst"].as_str().map(str::parse::<Ipv4Addr>),
        ) {
            out.insert(Entry::Fdb(mac, dst));
        }
    }
    Ok(out)
}

/// The MTU of the interface holding `ip`.
fn underlay_mtu(ip: Ipv4Addr) -> Result<u64, Error> {
    let want = ip.to_string();
    run_json("ip", &["-j", "-4", "addr", "show"])?
        .iter()
        .find(|link| {
            link["addr_info"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["local"].as_str() == Some(&want)))
        })
        .and_then(|link| link["mtu"].as_u64())
        .ok_or(Error::NoUnderlay(ip))
}

impl VxlanWriter for IpVxlan {
    fn ensure_device(&self, device: &Device) -> Result<BTreeSet<Entry>, Error> {
        let mtu = underlay_mtu(device.local)?.saturating_sub(OVERHEAD);
        let existing = match run_json("ip", &["-d", "-j", "link", "show", DEVICE]) {
            Ok(links) => links.into_iter().next(),
            Err(e) if no_such_device(&e) => None,
            Err(e) => return Err(e),
        };
        let fresh = match existing {
            Some(link) if same_tunnel(&link, device) => false,
            Some(_) => {
                tracing::info!(
                    device = DEVICE,
                    "recreating the VXLAN device: its parameters changed"
                );
                run("ip", &["link", "del", DEVICE])?;
                true
            }
            None => true,
        };
        let local = device.local.to_string();
        if fresh {
            let (vni, port) = (VNI.to_string(), PORT.to_string());
            run(
                "ip",
                &[
                    "link",
                    "add",
                    DEVICE,
                    "type",
                    "vxlan",
                    "id",
                    &vni,
                    "dstport",
                    &port,
                    "local",
                    &local,
                    "nolearning",
                ],
            )?;
        }
        let (mac, mtu) = (device.mac.to_string(), mtu.to_string());
        run(
            "ip",
            &["link", "set", DEVICE, "address", &mac, "mtu", &mtu, "up"],
        )?;
        // Exactly one address: an old pod CIDR's goes.
        let address = device.address.to_string();
        for link in run_json("ip", &["-j", "-4", "addr", "show", "dev", DEVICE])? {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                    continue;
                };
                if ip != address || len != 32 {
                    run(
                        "ip",
                        &["addr", "del", &format!("{ip}/{len}"), "dev", DEVICE],
                    )?;
                }
            }
        }
        run(
            "ip",
            &["addr", "replace", &format!("{address}/32"), "dev", DEVICE],
        )?;
        tracing::info!(device = DEVICE, %local, %mac, %mtu, %address, "VXLAN device ready");
        if fresh {
            Ok(BTreeSet::new())
        } else {
            listed_entries()
        }
    }

    fn set(&self, entry: &Entry) -> Result<(), Error> {
        match entry {
            Entry::Route(cidr, gw) => run(
                "ip",
                &[
                    "route",
                    "replace",
                    &cidr.to_string(),
                    "via",
                    &gw.to_string(),
                    "dev",
                    DEVICE,
                    "onlink",
                ],
            ),
            Entry::Neigh(ip, mac) => run(
                "ip",
                &[
                    "neigh",
                    "replace",
                    &ip.to_string(),
                    "lladdr",
                    &mac.to_string(),
                    "dev",
                    DEVICE,
                    "nud",
                    "permanent",
                ],
            ),
            Entry::Fdb(mac, dst) => run(
                "bridge",
                &[
                    "fdb",
                    "replace",
                    &mac.to_string(),
                    "dev",
                    DEVICE,
                    "dst",
                    &dst.to_string(),
                    "self",
                    "permanent",
                ],
            ),
        }
        .map(|_| ())
    }

    fn remove(&self, entry: &Entry) {
        let _ = match entry {
            Entry::Route(cidr, gw) => run(
                "ip",
                &[
                    "route",
                    "del",
                    &cidr.to_string(),
                    "via",
                    &gw.to_string(),
                    "dev",
                    DEVICE,
                ],
            ),
            Entry::Neigh(ip, _) => run("ip", &["neigh", "del", &ip.to_string(), "dev", DEVICE]),
            Entry::Fdb(mac, dst) => run(
                "bridge",
                &[
                    "fdb",
                    "del",
                    &mac.to_string(),
                    "dev",
                    DEVICE,
                    "dst",
                    &dst.to_string(),
                    "self",
                ],
            ),
        };
    }
}

/// The overlay this node set up, kept in line with the Nodes.
#[derive(Debug)]
pub struct Overlay<W> {
    me: String,
    writer: W,
    /// How often the device and its entries are read back from the kernel.
    recheck: Duration,
    /// The device as last made and when it was last checked; `None` before that (or after
    /// it failed).
    device: Option<(Device, Instant)>,
    installed: BTreeSet<Entry>,
}

impl<W: VxlanWriter> Overlay<W> {
    /// The overlay of node `me`, written through `writer`. Every `recheck` (the proxy's
    /// `--sync-period`) the device and its entries are read back, so what someone else
    /// deleted or changed (the device itself included) is made again.
    pub fn new(me: &str, writer: W, recheck: Duration) -> Overlay<W> {
        Overlay {
            me: me.to_string(),
            writer,
            recheck,
            device: None,
            installed: BTreeSet::new(),
        }
    }

    /// Makes the device and sets the entries `nodes` call for, removing those they no longer
    /// do. Whatever fails is tried again on the next sync.
    pub fn sync(&mut self, nodes: &[Arc<Node>]) {
        let want = wanted(&self.me, nodes);
        let Some(device) = want.device else {
            return;
        };
        let current = self
            .device
            .as_ref()
            .is_some_and(|(d, checked)| *d == device && checked.elapsed() < self.recheck);
        if !current {
            match self.writer.ensure_device(&device) {
                Ok(present) => {
                    self.device = Some((device, Instant::now()));
                    self.installed = present;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set up the VXLAN device");
                    return;
                }
            }
        }
        // Stale entries go first: an entry whose value changed (a node's new IP, say) shares
        // its key with the new one, which removing the old one afterwards would delete.
        let stale: Vec<Entry> = self.installed.difference(&want.entries).copied().collect();
        for e in stale {
            self.writer.remove(&e);
            self.installed.remove(&e);
            tracing::info!(entry = ?e, "overlay entry removed");
        }
        for e in &want.entries {
            if self.installed.contains(e) {
                continue;
            }
            match self.writer.set(e) {
                Ok(()) => {
                    tracing::info!(entry = ?e, "overlay entry set");
                    self.installed.insert(*e);
                }
                Err(err) => tracing::warn!(entry = ?e, error = %err, "cannot set overlay entry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Arc<Node> {
        let mut v = json!({"metadata": {"name": name}, "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}});
        if let Some(c) = cidr {
            v["spec"] = json!({"podCIDR": c});
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_vtep_mac_is_the_internal_ip_behind_a_local_prefix() {
        let mac = vtep_mac(ip("192.168.10.7"));
        assert_eq!(mac.to_string(), "0a:58:c0:a8:0a:07");
        assert_eq!("0a:58:c0:a8:0a:07".parse(), Ok(mac));
        assert_eq!(mac.0[0] & 0b10, 0b10, "locally administered");
        assert_eq!(mac.0[0] & 0b1, 0, "unicast");
        assert!("0a:58:c0:a8:0a".parse::<Mac>().is_err());
        assert!("0a:58:c0:a8:0a:07:01".parse::<Mac>().is_err());
    }

    #[test]
    fn every_other_node_gets_a_route_a_neighbour_and_a_forwarding_entry() {
        let nodes = vec![
            node("me", Some("10.244.0.0/24"), "10.0.0.1"),
            node("two", Some("10.244.1.0/24"), "10.1.0.2"),
            node("new", None, "10.0.0.3"),
            node("v6", Some("fd00:1::/64"), "fd00::4"),
        ];
        let w = wanted("me", &nodes);
        assert_eq!(
            w.device,
            Some(Device {
                local: ip("10.0.0.1"),
                mac: Mac([0x0a, 0x58, 10, 0, 0, 1]),
                address: ip("10.244.0.0"),
            })
        );
        let mac = Mac([0x0a, 0x58, 10, 1, 0, 2]);
        assert_eq!(
            w.entries.into_iter().collect::<Vec<_>>(),
            [
                Entry::Route("10.244.1.0/24".parse().unwrap(), ip("10.244.1.0")),
                Entry::Neigh(ip("10.244.1.0"), mac),
                Entry::Fdb(mac, ip("10.1.0.2")),
            ]
        );

        // Without its own pod CIDR this node makes nothing yet.
        let w = wanted("new", &nodes);
        assert_eq!(w, Wanted::default());
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Device(Device),
        Set(Entry),
        Remove(Entry),
    }

    /// Records the calls; `present` is what `ensure_device` finds on the device.
    #[derive(Default, Clone)]
    struct Fake {
        calls: Arc<Mutex<Vec<Call>>>,
        present: BTreeSet<Entry>,
    }

    impl Fake {
        fn take(&self) -> Vec<Call> {
            std::mem::take(&mut self.calls.lock().unwrap())
        }
    }

    impl VxlanWriter for Fake {
        fn ensure_device(&self, device: &Device) -> Result<BTreeSet<Entry>, Error> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Device(device.clone()));
            Ok(self.present.clone())
        }

        fn set(&self, entry: &Entry) -> Result<(), Error> {
            self.calls.lock().unwrap().push(Call::Set(*entry));
            Ok(())
        }

        fn remove(&self, entry: &Entry) {
            self.calls.lock().unwrap().push(Call::Remove(*entry));
        }
    }

    #[test]
    fn entries_follow_the_nodes_and_leftovers_of_an_earlier_run_go() {
        let leftover = Entry::Route("10.244.9.0/24".parse().unwrap(), ip("10.244.9.0"));
        let fake = Fake {
            present: BTreeSet::from([leftover]),
            ..Default::default()
        };
        let mut o = Overlay::new("me", fake.clone(), Duration::from_secs(3600));
        let mut nodes = vec![
            node("me", Some("10.244.0.0/24"), "10.0.0.1"),
            node("two", Some("10.244.1.0/24"), "10.1.0.2"),
        ];
        o.sync(&nodes);
        let calls = fake.take();
        assert!(matches!(&calls[0], Call::Device(d) if d.local == ip("10.0.0.1")));
        assert_eq!(calls[1], Call::Remove(leftover));
        assert_eq!(calls.len(), 5, "{calls:?}");
        o.sync(&nodes);
        assert_eq!(fake.take(), [], "nothing changed, nothing written");

        // Node two moves to another address: its route stays, its MAC and tunnel end change.
        nodes[1] = node("two", Some("10.244.1.0/24"), "10.1.0.3");
        o.sync(&nodes);
        let (old, new) = (vtep_mac(ip("10.1.0.2")), vtep_mac(ip("10.1.0.3")));
        assert_eq!(
            fake.take(),
            [
                Call::Remove(Entry::Neigh(ip("10.244.1.0"), old)),
                Call::Remove(Entry::Fdb(old, ip("10.1.0.2"))),
                Call::Set(Entry::Neigh(ip("10.244.1.0"), new)),
                Call::Set(Entry::Fdb(new, ip("10.1.0.3"))),
            ]
        );

        // This node's own address changes: the device is made again; node two goes.
        nodes = vec![node("me", Some("10.244.0.0/24"), "10.0.0.9")];
        o.sync(&nodes);
        let calls = fake.take();
        assert!(matches!(&calls[0], Call::Device(d) if d.local == ip("10.0.0.9")));
        // The fake's device still holds its leftover, which goes again.
        assert_eq!(calls[1..], [Call::Remove(leftover)]);
    }

    #[test]
    fn what_someone_else_removed_is_set_again_at_the_next_recheck() {
        let nodes = vec![
            node("me", Some("10.244.0.0/24"), "10.0.0.1"),
            node("two", Some("10.244.1.0/24"), "10.1.0.2"),
        ];
        let mut fake = Fake::default();
        let mut o = Overlay::new("me", fake.clone(), Duration::ZERO);
        o.sync(&nodes);
        assert_eq!(fake.take().len(), 4, "device and three entries");
        // The kernel now holds two of the three entries (a neighbour was flushed).
        let route = Entry::Route("10.244.1.0/24".parse().unwrap(), ip("10.244.1.0"));
        let fdb = Entry::Fdb(vtep_mac(ip("10.1.0.2")), ip("10.1.0.2"));
        fake.present = BTreeSet::from([route, fdb]);
        o.writer = fake.clone();
        o.sync(&nodes);
        let calls = fake.take();
        assert!(matches!(calls[0], Call::Device(_)), "{calls:?}");
        assert_eq!(
            calls[1..],
            [Call::Set(Entry::Neigh(
                ip("10.244.1.0"),
                vtep_mac(ip("10.1.0.2"))
            ))]
        );
    }
}
