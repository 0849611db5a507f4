//! `skiffctl logs` and `skiffctl exec`, through the apiserver's `pods/log` and `pods/exec`
//! (kube-rs's log stream and WebSocket exec).

use anyhow::{anyhow, bail};
use futures::{AsyncBufReadExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{AttachParams, ListParams, LogParams};
use tokio::io::AsyncWriteExt as _;

use super::Session;

#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    /// POD, or TYPE/NAME (a pod of that Deployment, ReplicaSet, ...).
    pub target: Option<String>,
    /// The container (default: the pod's default container, else its first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub tail: i64,
    /// The previous instance of the container (after a restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// The pods matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// The pod (or TYPE/NAME: a pod of it).
    pub pod: String,
    /// The container (default: the pod's default container, else its first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The pod `target` names: a pod's name, `pod/NAME`, or a controller's `TYPE/NAME` (its first
/// pod, as kubectl picks one).
async fn pod_of(s: &Session, target: &str) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let err = |e| super::explain(e, &s.server);
    let (kind, name) = match target.split_once('/') {
        Some((k, n)) => (k.to_lowercase(), n.to_string()),
        None => ("pod".into(), target.to_string()),
    };
    if ["pod", "pods", "po"].contains(&kind.as_str()) {
        return pods.get(&name).await.map_err(err);
    }
    let all = super::resources::discover(s).await?;
    let r = super::resources::resolve(&all, &kind)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the server doesn't have a resource type \"{kind}\""))?;
    let obj = s
        .get_json(
            &format!("{}/{name}", r.path(Some(&s.namespace))),
            "application/json",
        )
        .await?;
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| obj["spec"]["selector"].as_object())
        .ok_or_else(|| anyhow!("{kind}/{name} selects no pods"))?
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",");
    let mut list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(err)?
        .items;
    list.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    list.into_iter()
        .next()
        .ok_or_else(|| anyhow!("no pods of {kind}/{name}"))
}

/// The container to use: the one asked for, else the pod's default (annotation), else its
/// first, saying so as kubectl does when there are several.
fn container_of(pod: &Pod, asked: Option<&str>) -> anyhow::Result<String> {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    if let Some(c) = asked {
        let init = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|i| i.iter().any(|x| x.name == c));
        if !names.iter().any(|n| n == c) && !init {
            bail!(
                "container {c} is not valid for pod {pod_name}; its containers are {}",
                names.join(", ")
            );
        }
        return Ok(c.to_string());
    }
    if let Some(d) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
    {
        return Ok(d.clone());
    }
    let first = names
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("pod {pod_name} has no containers"))?;
    if names.len() > 1 {
        eprintln!(
            "Defaulted container \"{first}\" out of: {}",
            names.join(", ")
        );
    }
    Ok(first)
}

pub async fn logs(s: &Session, a: &LogsArgs) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let err = |e| super::explain(e, &s.server);
    let pods: Vec<Pod> = match (&a.selector, &a.target) {
        (Some(sel), None) => {
            let list = api
                .list(&ListParams::default().labels(sel))
                .await
                .map_err(err)?
                .items;
            if list.is_empty() {
                eprintln!("No resources found in {} namespace.", s.namespace);
            }
            list
        }
        (None, Some(t)) => vec![pod_of(s, t).await?],
        (Some(_), Some(_)) => bail!("only one of a pod name or a selector (-l) can be given"),
        (None, None) => bail!("expected POD or TYPE/NAME, or a selector (-l)"),
    };
    let mut out = tokio::io::stdout();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let container = container_of(&pod, a.container.as_deref())?;
        let params = LogParams {
            container: Some(container),
            follow: a.follow,
            previous: a.previous,
            timestamps: a.timestamps,
            // With a selector kubectl shows the last 10 lines of each pod.
            tail_lines: if a.tail >= 0 {
                Some(a.tail)
            } else if a.selector.is_some() {
                Some(10)
            } else {
                None
            },
            ..Default::default()
        };
        let stream = api.log_stream(&name, &params).await.map_err(err)?;
        let mut lines = stream.lines();
        while let Some(line) = lines.next().await {
            let line = line?;
            out.write_all(line.as_bytes()).await?;
            out.write_all(b"\n").await?;
            out.flush().await?;
        }
    }
    Ok(())
}

/// Puts the terminal into raw mode while a `-t` session runs, and back on drop.
struct RawTerminal(Option<rustix::termios::Termios>);

impl RawTerminal {
    fn enable() -> RawTerminal {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// Runs the command in the container; returns its exit code.
pub async fn exec(s: &Session, a: &ExecArgs) -> anyhow::Result<i32> {
    use std::io::IsTerminal as _;
    let pod = pod_of(s, &a.pod).await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let container = container_of(&pod, a.container.as_deref())?;
    let tty = a.tty && std::io::stdin().is_terminal();
    if a.tty && !tty {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let api: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let params = AttachParams {
        container: Some(container),
        stdin: a.stdin,
        stdout: true,
        stderr: !tty,
        tty,
        ..Default::default()
    };
    let mut attached = api
        .exec(&name, a.command.clone(), &params)
        .await
        .map_err(|e| super::explain(e, &s.server))?;
    let _raw = tty.then(RawTerminal::enable);
    let status = attached.take_status();
    let mut tasks = Vec::new();
    if let Some(mut out) = attached.stdout() {
        tasks.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut out, &mut tokio::io::stdout()).await;
        }));
    }
    if let Some(mut err) = attached.stderr() {
        tasks.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut err, &mut tokio::io::stderr()).await;
        }));
    }
    if let Some(mut input) = attached.stdin() {
        // Not joined: stdin may never end; the session ends with the command.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut input).await;
            let _ = input.shutdown().await;
        });
    }
    let status = match status {
        Some(st) => st.await,
        None => None,
    };
    for t in tasks {
        let _ = t.await;
    }
    let _ = attached.join().await;
    let code = match status {
        Some(st) if st.status.as_deref() == Some("Success") => 0,
        Some(st) => st
            .details
            .and_then(|d| d.causes)
            .and_then(|c| {
                c.into_iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    .and_then(|c| c.message?.parse().ok())
            })
            .unwrap_or(1),
        None => 0,
    };
    Ok(code)
}
