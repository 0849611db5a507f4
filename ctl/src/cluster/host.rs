//! The host side of a local cluster: running `ip` and `iptables`, starting processes
//! (detached, logging to files, optionally inside a network namespace through `nsenter`),
//! finding and stopping them again, and removing mounts and cgroups they left.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Runs `program args` and returns its stdout; a failure says what ran and what it printed.
pub fn run<I, S>(program: &str, args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let shown = format!(
        "{program} {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}; is {program} installed?"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside the network namespace at `netns`.
pub fn run_in(netns: &Path, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec![format!("--net={}", netns.display()), program.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    run("nsenter", &all)
}

/// The IPv4 destinations in the host's routing table (to avoid subnets in use).
pub fn routed_subnets() -> Vec<ipnet::Ipv4Net> {
    run("ip", ["-4", "route", "show", "table", "all"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.contains('/')))
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// A process to start detached from `skiffctl`: its own process group, output appended to a
/// log file, its pid written to a file.
pub struct Spawn<'a> {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub netns: Option<PathBuf>,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    pub env: Vec<(&'a str, String)>,
}

impl Spawn<'_> {
    pub fn start(&self) -> anyhow::Result<u32> {
        use std::os::unix::process::CommandExt as _;
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if let Some(dir) = self.pid_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        // nsenter enters the namespace and then execs the program: the pid is the program's.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        let pid = child.id();
        std::fs::write(&self.pid_file, pid.to_string())?;
        // The child is not waited for here: it outlives skiffctl (init reaps it).
        std::mem::forget(child);
        Ok(pid)
    }
}

pub fn alive(pid: u32) -> bool {
    // Signal 0 checks that the process exists; a zombie counts as gone.
    let exists = to_pid(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
    exists
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
}

/// The pid in `pid_file`, if that process still runs and its command line mentions `needle`
/// (so a reused pid is never signalled).
pub fn pid_from_file(pid_file: &Path, needle: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (alive(pid) && cmdline(pid).contains(needle)).then_some(pid)
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Every process whose command line mentions one of `needles` (a cluster's directories), except
/// this one.
pub fn processes_mentioning(needles: &[String]) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let line = cmdline(*pid);
            needles.iter().any(|n| line.contains(n.as_str()))
        })
        .collect()
}

fn to_pid(pid: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = to_pid(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// SIGTERM to each, then SIGKILL to whatever still runs after `grace`.
pub fn terminate(pids: &[u32], grace: Duration) {
    for pid in pids {
        signal(*pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        signal(*pid, rustix::process::Signal::KILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts everything mounted under `dirs` (deepest first; lazily, so a busy mount does not
/// stop the clean-up).
pub fn unmount_under(dirs: &[PathBuf]) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .filter(|p| dirs.iter().any(|d| p.starts_with(d)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = run("umount", [OsStr::new("-l"), p.as_os_str()]);
    }
}

/// Removes the (empty) cgroup directories named `name` under every cgroup v1 controller, and
/// under the v2 hierarchy, children first.
pub fn remove_cgroups(name: &str) {
    let name = name.trim_start_matches('/');
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup").join(name)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(entries.flatten().map(|e| e.path().join(name)));
    }
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        remove_cgroup_tree(&dir);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The processes in cgroup `name` and below, under any controller.
pub fn cgroup_pids(name: &str) -> Vec<u32> {
    fn walk(dir: &Path, out: &mut Vec<u32>) {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
    }
    let name = name.trim_start_matches('/');
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup").join(name)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(entries.flatten().map(|e| e.path().join(name)));
    }
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        walk(&dir, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Waits until `ready` holds, or fails after `timeout` saying what did not happen.
pub fn wait_for(
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() >= deadline {
            bail!("{what} did not happen within {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A TCP port nothing listens on right now (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The last lines of a log file, to show why a component did not come up.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
