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

/// The machine's memory working set in bytes, as the kubelet's memory.available counts it:
/// the root memory cgroup's usage less its inactive file pages (cgroup v1), which the kernel
/// can reclaim. None without a v1 memory cgroup.
pub fn memory_working_set_bytes() -> Option<u64> {
    let root = std::path::Path::new("/sys/fs/cgroup/memory");
    let usage: u64 = std::fs::read_to_string(root.join("memory.usage_in_bytes"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(root.join("memory.stat")).ok()?;
    let inactive_file: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some(usage.saturating_sub(inactive_file))
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
