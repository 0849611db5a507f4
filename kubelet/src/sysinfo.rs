//! Facts about this machine: CPU and memory capacity, kernel and OS, pressure signals.

use std::net::IpAddr;

/// Number of CPUs the kubelet may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn meminfo_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Total memory in KiB.
pub fn memory_kib() -> u64 {
    meminfo_kib("MemTotal").unwrap_or(0)
}

/// Available memory in KiB.
pub fn memory_available_kib() -> u64 {
    meminfo_kib("MemAvailable").unwrap_or(0)
}

pub fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// PRETTY_NAME from /etc/os-release.
pub fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Kubernetes' name for this architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// (running processes/threads, pid_max), for PID pressure.
pub fn pids() -> Option<(u64, u64)> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let total: u64 = loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()?;
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((total, max))
}

/// Free fraction of the filesystem holding `path` (from `df`, run without blocking the
/// runtime), for disk pressure.
pub async fn disk_free_fraction(path: &std::path::Path) -> Option<f64> {
    let out = tokio::process::Command::new("df")
        .arg("-Pk")
        .arg(path)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let size: f64 = f.get(1)?.parse().ok()?;
    let avail: f64 = f.get(3)?.parse().ok()?;
    (size > 0.0).then_some(avail / size)
}

/// The address of the interface that holds the default route.
pub fn default_route_ip() -> Option<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000")).then(|| f[0].to_string())
    })?;
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .find(|i| i.name == iface && i.ip().is_ipv4())
        .map(|i| i.ip())
}
