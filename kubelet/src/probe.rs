//! Liveness, readiness and startup probes: exec, httpGet and tcpSocket, with Kubernetes'
//! initial delay, period, timeout and success/failure thresholds.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime::ContainerRuntime;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// The running tally of one probe of one container attempt.
#[derive(Debug, Clone)]
pub struct Tracker {
    started: Instant,
    next: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The probe's verdict so far (None until it has one).
    pub result: Option<bool>,
    /// The last failure's message.
    pub message: Option<String>,
}

impl Tracker {
    /// Consecutive failed attempts so far.
    pub fn failures(&self) -> i32 {
        self.failures
    }

    pub fn new() -> Self {
        Tracker {
            started: Instant::now(),
            next: None,
            successes: 0,
            failures: 0,
            result: None,
            message: None,
        }
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

fn port_of(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Runs one attempt of `probe`; Ok(()) on success, Err(reason) on failure.
async fn attempt(
    probe: &Probe,
    container: &Container,
    container_id: &str,
    pod_ip: Option<&str>,
    runtime: &dyn ContainerRuntime,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match runtime.exec_sync(container_id, &command, timeout).await {
            Ok((0, _)) => Ok(()),
            Ok((code, out)) => Err(format!(
                "command {command:?} exited with {code}: {}",
                String::from_utf8_lossy(&out).trim()
            )),
            Err(e) => Err(e.to_string()),
        };
    }
    if let Some(get) = &probe.http_get {
        let host = get
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .or(pod_ip.map(String::from))
            .ok_or("the pod has no IP yet")?;
        let port = port_of(&get.port, container)
            .ok_or("the probe's port is not a number or a named container port")?;
        let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let path = get.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("{scheme}://{host}:{port}{path}");
        // Kubernetes does not verify certificates of HTTPS probes either.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = client.get(&url).header("User-Agent", "kube-probe/1.33");
        for h in get.http_headers.iter().flatten() {
            req = req.header(h.name.as_str(), h.value.as_str());
        }
        return match req.send().await {
            Ok(r) if (200..400).contains(&r.status().as_u16()) => Ok(()),
            Ok(r) => Err(format!(
                "HTTP probe failed with statuscode: {}",
                r.status().as_u16()
            )),
            Err(e) => Err(format!("Get \"{url}\": {e}")),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .or(pod_ip.map(String::from))
            .ok_or("the pod has no IP yet")?;
        let port = port_of(&tcp.port, container)
            .ok_or("the probe's port is not a number or a named container port")?;
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Err("the probe has no handler (exec, httpGet or tcpSocket)".into())
}

/// Runs the probe if it is due and updates the tracker; returns true when it changed the
/// verdict.
pub async fn step(
    tracker: &mut Tracker,
    probe: &Probe,
    container: &Container,
    container_id: &str,
    pod_ip: Option<&str>,
    runtime: &dyn ContainerRuntime,
) -> bool {
    let now = Instant::now();
    let due = match tracker.next {
        Some(t) => now >= t,
        None => {
            now >= tracker.started
                + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)
        }
    };
    if !due {
        return false;
    }
    tracker.next =
        Some(now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64));
    let before = tracker.result;
    match attempt(probe, container, container_id, pod_ip, runtime).await {
        Ok(()) => {
            tracker.failures = 0;
            tracker.successes += 1;
            if tracker.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                tracker.result = Some(true);
                tracker.message = None;
            }
        }
        Err(message) => {
            tracker.successes = 0;
            tracker.failures += 1;
            tracker.message = Some(message);
            if tracker.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                tracker.result = Some(false);
            }
        }
    }
    before != tracker.result
}
