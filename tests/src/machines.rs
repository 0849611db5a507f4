//! "Machines" on this host for installer tests: each is a network namespace with its own mount
//! namespace, in which `/run` is a fresh tmpfs and `/etc/skiff`, `/etc/default`, `/var/lib/skiff`,
//! `/var/log/skiff` and `/var/lib/docker` are private directories, and its own Docker engine
//! (socket `/run/docker.sock` inside, reachable from the host through `/proc/PID/root`). No
//! systemd runs inside, as in a container, so `skiffadm` supervises the components itself.
//!
//! The machines sit on one or more subnets joined by a router network namespace (not the host:
//! a test must not change how the host forwards), so "two subnets routed" means no shared L2.
//! Addresses: subnet S is 10.123.S.0/24 with the router at .1 and machine I at .(10+I). Every
//! name carries the test's tag, so concurrent tests and leftovers of a crashed run never meet.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::wait::wait_until;

/// Directories a machine gets its own copy of (bind mounts from the test's directory).
const PRIVATE_DIRS: [&str; 5] = [
    "/etc/skiff",
    "/etc/default",
    "/var/lib/skiff",
    "/var/log/skiff",
    "/var/lib/docker",
];

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn in_netns(ns: &str, args: &[&str]) -> Output {
    run(Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(args))
}

/// The router and its subnets. Dropping it removes the router namespace (and with it the
/// machines' links to it).
pub struct Lan {
    tag: String,
    router: String,
}

impl Lan {
    /// A router namespace with `subnets` bridges, `br1`.. with 10.123.S.1/24, forwarding
    /// between them.
    pub fn new(tag: &str, subnets: u8) -> Lan {
        let router = format!("skm-{tag}-r");
        let _ = Command::new("ip").args(["netns", "del", &router]).output();
        run(Command::new("ip").args(["netns", "add", &router]));
        in_netns(&router, &["ip", "link", "set", "lo", "up"]);
        in_netns(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for s in 1..=subnets {
            let br = format!("br{s}");
            in_netns(&router, &["ip", "link", "add", &br, "type", "bridge"]);
            in_netns(
                &router,
                &["ip", "addr", "add", &format!("10.123.{s}.1/24"), "dev", &br],
            );
            in_netns(&router, &["ip", "link", "set", &br, "up"]);
        }
        Lan {
            tag: tag.to_string(),
            router,
        }
    }

    /// Runs a command in the router's namespace (it reaches every machine's address).
    pub fn router_cmd(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.router))
            .args(args)
            .output()
            .expect("nsenter")
    }

    /// Machine `index` on subnet `subnet`, with a running Docker engine.
    pub fn machine(&self, subnet: u8, index: u8) -> Machine {
        Machine::start(self, subnet, index)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.router])
            .output();
    }
}

pub struct Machine {
    pub name: String,
    pub ip: String,
    netns: String,
    dir: PathBuf,
    /// The process holding the mount namespace (`sleep` under `unshare`); commands enter its
    /// namespaces.
    holder: Child,
    dockerd: Option<Child>,
    cgroup_parent: String,
}

impl Machine {
    fn start(lan: &Lan, subnet: u8, index: u8) -> Machine {
        let name = format!("{}-m{index}", lan.tag);
        let netns = format!("skm-{name}");
        let ip = format!("10.123.{subnet}.{}", 10 + index);
        let dir = PathBuf::from(format!("/tmp/skiff-e2e-machines/{name}"));
        Self::remove_leftovers(&netns, &dir);
        run(Command::new("ip").args(["netns", "add", &netns]));
        // The link: `mI` in the router on bridge `brS`, `eth0` in the machine.
        let port = format!("m{index}");
        in_netns(
            &lan.router,
            &[
                "ip",
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &format!("/run/netns/{netns}"),
            ],
        );
        in_netns(
            &lan.router,
            &[
                "ip",
                "link",
                "set",
                &port,
                "master",
                &format!("br{subnet}"),
                "up",
            ],
        );
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            vec!["ip", "link", "set", "eth0", "up"],
            vec![
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("10.123.{subnet}.1"),
            ],
            vec!["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ] {
            in_netns(&netns, &args);
        }
        // The private directories and the mount namespace holding them.
        let mut script = String::from("set -e; mount -t tmpfs -o mode=755 tmpfs /run; ");
        for d in PRIVATE_DIRS {
            let src = dir.join(d.trim_start_matches('/').replace('/', "-"));
            std::fs::create_dir_all(&src).expect("machine dir");
            // The mount point must exist on the host; an empty directory is all that is left.
            std::fs::create_dir_all(d).expect("mount point");
            script.push_str(&format!("mount --bind {} {d}; ", src.display()));
        }
        script.push_str("echo ready; exec sleep infinity");
        let mut holder = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the machine's mount namespace");
        {
            use std::io::BufRead as _;
            let mut line = String::new();
            let mut out = std::io::BufReader::new(holder.stdout.take().expect("stdout"));
            out.read_line(&mut line).expect("read holder");
            assert_eq!(line.trim(), "ready", "machine {name}: mounts failed");
        }
        let mut m = Machine {
            name,
            ip,
            netns,
            dir,
            holder,
            dockerd: None,
            cgroup_parent: String::new(),
        };
        m.cgroup_parent = format!("skm-{}", m.name);
        m.start_docker();
        m
    }

    fn start_docker(&mut self) {
        let log = std::fs::File::create(self.dir.join("dockerd.log")).expect("dockerd log");
        let child = self
            .command("/usr/sbin/dockerd")
            .args(["--bridge", "none", "--cgroup-parent", &self.cgroup_parent])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.dockerd = Some(child);
        assert!(
            wait_until(Duration::from_secs(60), || {
                Command::new("docker")
                    .args(["-H", &self.docker_host(), "info"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }),
            "{}: dockerd did not start: {}",
            self.name,
            std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
        );
    }

    /// A command that runs inside the machine's network and mount namespaces.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.holder.id().to_string(),
            "-m",
            "-n",
            "--",
            program,
        ]);
        c
    }

    /// Runs `args` inside the machine.
    pub fn sh(&self, script: &str) -> Output {
        self.command("sh")
            .args(["-c", script])
            .output()
            .expect("run in machine")
    }

    /// Like [`Machine::sh`], failing the test on a non-zero exit; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{}: `{script}` failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A path inside the machine, seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.holder.id())).join(inside.trim_start_matches('/'))
    }

    /// `unix://...` of the machine's Docker engine, for the host's `docker -H`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path("/run/docker.sock").display())
    }

    /// Copies images from the host's engine into the machine's.
    pub fn load_images(&self, images: &[&str]) {
        let tar = self.dir.join("images.tar");
        run(Command::new("docker")
            .args(["save", "-o"])
            .arg(&tar)
            .args(images));
        run(Command::new("docker")
            .args(["-H", &self.docker_host(), "load", "-q", "-i"])
            .arg(&tar));
        let _ = std::fs::remove_file(tar);
    }

    /// The processes in this machine's mount namespace, except the holder and `dockerd`.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let mine = std::fs::read_link(format!("/proc/{}/ns/mnt", self.holder.id())).ok();
        let keep = [Some(self.holder.id()), self.dockerd.as_ref().map(Child::id)];
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if keep.contains(&Some(pid)) || std::fs::read_link(e.path().join("ns/mnt")).ok() != mine
            {
                continue;
            }
            let cmd = std::fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.push((pid, cmd));
        }
        out
    }

    fn remove_leftovers(netns: &str, dir: &Path) {
        // Processes of a crashed run still in the namespace, then the namespace and the files.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", netns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", netns]).output();
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Containers first (their shims would outlive dockerd), then everything in the mount
        // namespace; the namespace and its mounts go with the last process.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker -H {0} ps -aq | xargs -r docker -H {0} rm -f",
                self.docker_host()
            ))
            .output();
        for (pid, _) in self.processes() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if let Some(mut d) = self.dockerd.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        Self::remove_leftovers(&self.netns, &self.dir);
        // dockerd made the cgroup parent under every v1 controller.
        for c in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(c.path().join(&self.cgroup_parent));
        }
    }
}

impl Machine {
    /// The real kubectl inside the machine with `kubeconfig` (a path inside it).
    pub fn kubectl_as(&self, kubeconfig: &str, args: &[&str]) -> Output {
        self.command("kubectl")
            .args(["--kubeconfig", kubeconfig, "--request-timeout", "20s"])
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl with the machine's `/etc/skiff/admin.conf`, asserting success; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl_as("/etc/skiff/admin.conf", args);
        assert!(
            out.status.success(),
            "{}: kubectl {}: {}{}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` with the admin kubeconfig.
    pub fn apply(&self, yaml: &str) {
        use std::io::Write as _;
        let mut child = self
            .command("kubectl")
            .args(["--kubeconfig", "/etc/skiff/admin.conf", "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write yaml");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
