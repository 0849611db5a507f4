//! The one runner of container handler actions (exec, httpGet, tcpSocket, sleep), shared by
//! probes and lifecycle hooks (preStop), so both resolve ports, schemes, hosts and headers
//! the same way, as the kubelet's prober and lifecycle handler runner do.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Probe, SleepAction, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime::ContainerRuntime;

/// Who runs the action: it names the action in messages and picks the HTTP `User-Agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Probe,
    /// A lifecycle hook (preStop).
    Hook,
}

impl Caller {
    fn noun(self) -> &'static str {
        match self {
            Caller::Probe => "probe",
            Caller::Hook => "hook",
        }
    }

    fn user_agent(self) -> &'static str {
        match self {
            Caller::Probe => "kube-probe/1.33",
            Caller::Hook => "kube-lifecycle/1.33",
        }
    }
}

/// One handler action, borrowed from a probe or a lifecycle hook.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    Exec(&'a ExecAction),
    HttpGet(&'a HTTPGetAction),
    TcpSocket(&'a TCPSocketAction),
    Sleep(&'a SleepAction),
}

impl<'a> Action<'a> {
    /// A probe's action (exec, then httpGet, then tcpSocket), if it has one.
    pub fn of_probe(p: &'a Probe) -> Option<Action<'a>> {
        if let Some(e) = &p.exec {
            Some(Action::Exec(e))
        } else if let Some(g) = &p.http_get {
            Some(Action::HttpGet(g))
        } else {
            p.tcp_socket.as_ref().map(Action::TcpSocket)
        }
    }

    /// A lifecycle hook's action (exec, httpGet or sleep), if it has one. A hook's
    /// `tcpSocket` is accepted by the API for compatibility only and never run, as in
    /// Kubernetes.
    pub fn of_hook(h: &'a LifecycleHandler) -> Option<Action<'a>> {
        if let Some(e) = &h.exec {
            Some(Action::Exec(e))
        } else if let Some(g) = &h.http_get {
            Some(Action::HttpGet(g))
        } else {
            h.sleep.as_ref().map(Action::Sleep)
        }
    }
}

/// The container an action runs against.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub runtime: &'a dyn ContainerRuntime,
    /// The spec, whose named ports an httpGet or tcpSocket port may refer to.
    pub container: &'a Container,
    pub container_id: &'a str,
    /// The host of httpGet and tcpSocket when the action names none.
    pub pod_ip: Option<&'a str>,
}

/// A handler port: a number, a number in a string, or the name of one of the container's
/// ports (Kubernetes' `resolvePort`).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        },
    }
}

fn host<'a>(explicit: Option<&'a String>, target: &Target<'a>) -> Result<&'a str, String> {
    explicit
        .map(String::as_str)
        .filter(|h| !h.is_empty())
        .or(target.pod_ip)
        .ok_or_else(|| "the pod has no IP yet".to_string())
}

/// Runs `action` once against `target`, waiting at most `timeout`: Ok(()) when it succeeded
/// (exit code 0, an HTTP status in 200..400, a TCP connection, a finished sleep),
/// Err(reason) otherwise.
pub async fn run(
    caller: Caller,
    action: Option<Action<'_>>,
    target: &Target<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let no_port = || {
        format!(
            "the {}'s port is not a number or a named container port",
            caller.noun()
        )
    };
    match action {
        Some(Action::Exec(exec)) => {
            let command = exec.command.clone().unwrap_or_default();
            match target
                .runtime
                .exec_sync(target.container_id, &command, timeout)
                .await
            {
                Ok((0, _)) => Ok(()),
                Ok((code, out)) => Err(format!(
                    "command {command:?} exited with {code}: {}",
                    String::from_utf8_lossy(&out).trim()
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        Some(Action::HttpGet(get)) => {
            let host = host(get.host.as_ref(), target)?;
            let port = resolve_port(&get.port, target.container).ok_or_else(no_port)?;
            let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
            let path = get.path.clone().unwrap_or_else(|| "/".into());
            let url = format!("{scheme}://{host}:{port}{path}");
            // Kubernetes does not verify the certificates of HTTPS probes and hooks either.
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .danger_accept_invalid_certs(true)
                .redirect(reqwest::redirect::Policy::limited(10))
                .build()
                .map_err(|e| e.to_string())?;
            let mut req = client.get(&url).header("User-Agent", caller.user_agent());
            for h in get.http_headers.iter().flatten() {
                req = req.header(h.name.as_str(), h.value.as_str());
            }
            match req.send().await {
                Ok(r) if (200..400).contains(&r.status().as_u16()) => Ok(()),
                Ok(r) => Err(format!(
                    "HTTP {} failed with statuscode: {}",
                    caller.noun(),
                    r.status().as_u16()
                )),
                Err(e) => Err(format!("Get \"{url}\": {e}")),
            }
        }
        Some(Action::TcpSocket(tcp)) => {
            let host = host(tcp.host.as_ref(), target)?;
            let port = resolve_port(&tcp.port, target.container).ok_or_else(no_port)?;
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
                Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
            }
        }
        Some(Action::Sleep(sleep)) => {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
            Ok(())
        }
        None => Err(match caller {
            Caller::Probe => "the probe has no handler (exec, httpGet or tcpSocket)".into(),
            Caller::Hook => "the hook has no handler (exec, httpGet or sleep)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPHeader};
    use skiff_runtime::FakeRuntime;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn container_with_port(name: &str, port: i32) -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some(name.into()),
                container_port: port,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn ports_resolve_by_number_numeric_string_and_name() {
        let c = container_with_port("http", 8080);
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Some(81));
        assert_eq!(
            resolve_port(&IntOrString::String("82".into()), &c),
            Some(82)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Some(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("grpc".into()), &c), None);
        assert_eq!(resolve_port(&IntOrString::Int(70000), &c), None);
    }

    /// Serves one HTTP request on 127.0.0.1 with `status`; returns the port and the request
    /// head the listener read.
    async fn one_shot_server(status: u16) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            conn.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head).to_lowercase()
        });
        (port, task)
    }

    #[tokio::test]
    async fn http_get_resolves_a_named_port_and_sends_headers() {
        let (port, server) = one_shot_server(200).await;
        let container = container_with_port("web", port.into());
        let runtime = FakeRuntime::new();
        let get = HTTPGetAction {
            path: Some("/ready".into()),
            port: IntOrString::String("web".into()),
            http_headers: Some(vec![HTTPHeader {
                name: "X-Check".into(),
                value: "yes".into(),
            }]),
            ..Default::default()
        };
        let target = Target {
            runtime: &runtime,
            container: &container,
            container_id: "unused",
            pod_ip: Some("127.0.0.1"),
        };
        let got = run(
            Caller::Probe,
            Some(Action::HttpGet(&get)),
            &target,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(got, Ok(()));
        let head = server.await.unwrap();
        assert!(head.starts_with("get /ready http/1.1"), "{head}");
        assert!(head.contains("x-check: yes"), "{head}");
        assert!(head.contains("user-agent: kube-probe/1.33"), "{head}");
    }

    #[tokio::test]
    async fn http_get_fails_on_a_server_error() {
        let (port, _server) = one_shot_server(503).await;
        let container = Container::default();
        let runtime = FakeRuntime::new();
        let get = HTTPGetAction {
            port: IntOrString::Int(port.into()),
            host: Some("127.0.0.1".into()),
            ..Default::default()
        };
        let target = Target {
            runtime: &runtime,
            container: &container,
            container_id: "unused",
            pod_ip: None,
        };
        let got = run(
            Caller::Probe,
            Some(Action::HttpGet(&get)),
            &target,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(got, Err("HTTP probe failed with statuscode: 503".into()));
    }

    #[tokio::test]
    async fn http_get_without_a_host_or_pod_ip_fails() {
        let container = Container::default();
        let runtime = FakeRuntime::new();
        let get = HTTPGetAction {
            port: IntOrString::Int(80),
            ..Default::default()
        };
        let target = Target {
            runtime: &runtime,
            container: &container,
            container_id: "unused",
            pod_ip: None,
        };
        let got = run(
            Caller::Hook,
            Some(Action::HttpGet(&get)),
            &target,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(got, Err("the pod has no IP yet".into()));
    }

    #[tokio::test]
    async fn tcp_socket_connects_to_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let container = container_with_port("db", port.into());
        let runtime = FakeRuntime::new();
        let tcp = TCPSocketAction {
            port: IntOrString::String("db".into()),
            host: None,
        };
        let target = Target {
            runtime: &runtime,
            container: &container,
            container_id: "unused",
            pod_ip: Some("127.0.0.1"),
        };
        let got = run(
            Caller::Probe,
            Some(Action::TcpSocket(&tcp)),
            &target,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(got, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_is_cut_short_by_the_timeout() {
        let container = Container::default();
        let runtime = FakeRuntime::new();
        let target = Target {
            runtime: &runtime,
            container: &container,
            container_id: "unused",
            pod_ip: None,
        };
        let start = tokio::time::Instant::now();
        let sleep = SleepAction { seconds: 60 };
        let got = run(
            Caller::Hook,
            Some(Action::Sleep(&sleep)),
            &target,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(got, Ok(()));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[test]
    fn probe_and_hook_actions_pick_the_set_field() {
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction::default()),
            ..Default::default()
        };
        assert!(matches!(
            Action::of_probe(&probe),
            Some(Action::TcpSocket(_))
        ));
        assert!(Action::of_probe(&Probe::default()).is_none());
        let hook = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 1 }),
            ..Default::default()
        };
        assert!(matches!(Action::of_hook(&hook), Some(Action::Sleep(_))));
        let tcp_hook = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction::default()),
            ..Default::default()
        };
        assert!(Action::of_hook(&tcp_hook).is_none());
    }
}
