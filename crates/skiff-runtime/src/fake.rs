//! [`FakeRuntime`]: an in-memory [`ContainerRuntime`] for hollow nodes and unit tests.
//!
//! Everything is deterministic and cheap: IDs are counters, sandboxes get addresses in order
//! (from the subnet given to `ensure_network`, else 10.88.0.0/16), and nothing runs. A
//! container's command is read by a tiny interpreter that understands `echo`, `exit N`, `true`,
//! `false`, `sleep N` and `cat`, alone or as `sh -c "a; b; ..."`:
//!
//! * a command made only of those runs to completion the moment the container starts (its
//!   `echo` output goes to the log, its exit status becomes the exit code), so
//!   `sh -c "echo hi; exit 3"` exits with 3 and logs `hi`;
//! * time is compressed: `sleep N` takes no time when N < 1000 s, while a longer sleep, `sleep
//!   infinity`, an empty command (the image's default) or any other program runs until stopped.
//!
//! Tests steer containers with [`FakeRuntime::exit`], [`FakeRuntime::oom_kill`],
//! [`FakeRuntime::write_log`], and pulls with [`FakeRuntime::fail_pull`]. `exec` runs the same
//! interpreter, with unknown commands succeeding silently (so exec probes pass on hollow nodes);
//! `cat` echoes stdin.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::runtime::*;

/// The default pod network of the fake runtime.
const DEFAULT_SUBNET: (Ipv4Addr, u32) = (Ipv4Addr::new(10, 88, 0, 0), 16);

/// The in-memory runtime. Cloning shares the state.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// image reference → image ID.
    images: BTreeMap<String, String>,
    /// image ID → its size in bytes (0 when not given).
    image_sizes: HashMap<String, u64>,
    /// image reference → the message its pull fails with.
    failing_pulls: HashMap<String, String>,
    /// network name → (base address, prefix length).
    networks: BTreeMap<String, (Ipv4Addr, u32)>,
    used_ips: BTreeSet<Ipv4Addr>,
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, Container>,
}

struct Sandbox {
    status: SandboxStatus,
}

struct Container {
    status: ContainerStatus,
    program: Vec<String>,
    /// One entry per line (with its newline), stamped when written.
    log: Vec<(SystemTime, Bytes)>,
    /// Bumped on every log write and state change, for followers.
    changed: watch::Sender<u64>,
}

impl Container {
    fn touch(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn append_log(&mut self, data: &[u8]) {
        let now = SystemTime::now();
        for line in data.split_inclusive(|b| *b == b'\n') {
            self.log.push((now, Bytes::copy_from_slice(line)));
        }
        self.touch();
    }

    fn finish(&mut self, exit_code: i64, reason: &str) {
        let started_at = match self.status.state {
            ContainerState::Running { started_at } => Some(started_at),
            _ => None,
        };
        self.status.state = ContainerState::Exited {
            exit_code,
            reason: reason.into(),
            started_at,
            finished_at: Some(SystemTime::now()),
        };
        self.touch();
    }
}

fn reason_for(code: i64) -> &'static str {
    if code == 0 { "Completed" } else { "Error" }
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake runtime state poisoned")
    }

    /// Makes `image` present, as if built or loaded locally.
    pub fn add_image(&self, image: &str) {
        self.lock()
            .images
            .insert(image.to_string(), image_id(image));
    }

    /// Makes `image` present with a size, for the image garbage collector.
    pub fn add_image_of_size(&self, image: &str, size_bytes: u64) {
        let mut state = self.lock();
        let id = image_id(image);
        state.images.insert(image.to_string(), id.clone());
        state.image_sizes.insert(id, size_bytes);
    }

    /// The image ID `image` has (or would have) in this runtime.
    pub fn image_id(image: &str) -> String {
        image_id(image)
    }

    /// Makes every later pull of `image` fail with `message`.
    pub fn fail_pull(&self, image: &str, message: &str) {
        self.lock()
            .failing_pulls
            .insert(image.to_string(), message.to_string());
    }

    /// Makes the running container `id` exit with `code` (reason Completed or Error).
    pub fn exit(&self, id: &str, code: i64) -> Result<()> {
        self.end(id, code, reason_for(code))
    }

    /// Makes the running container `id` die as the kernel's OOM killer would (137, OOMKilled).
    pub fn oom_kill(&self, id: &str) -> Result<()> {
        self.end(id, 137, "OOMKilled")
    }

    fn end(&self, id: &str, code: i64, reason: &str) -> Result<()> {
        let mut state = self.lock();
        let c = container_mut(&mut state, id)?;
        if matches!(c.status.state, ContainerState::Running { .. }) {
            c.finish(code, reason);
        }
        Ok(())
    }

    /// Appends `data` to the container's log, as if the container had printed it.
    pub fn write_log(&self, id: &str, data: &[u8]) -> Result<()> {
        container_mut(&mut self.lock(), id)?.append_log(data);
        Ok(())
    }

    fn next_id(state: &mut State, kind: &str) -> String {
        state.next_id += 1;
        format!("fake-{kind}-{:08}", state.next_id)
    }
}

fn container_mut<'a>(state: &'a mut State, id: &str) -> Result<&'a mut Container> {
    state
        .containers
        .get_mut(id)
        .ok_or_else(|| RuntimeError::NotFound {
            what: "container",
            id: id.into(),
        })
}

fn image_id(image: &str) -> String {
    let digest: String = Sha256::digest(image.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{digest}")
}

/// What Docker says about references it cannot parse (repository names must be lowercase).
fn invalid_reference(image: &str) -> Option<String> {
    let name = image.split(['@']).next().unwrap_or(image);
    let name_start = name.rfind('/').map_or(0, |i| i + 1);
    let repo = match name[name_start..].rfind(':') {
        Some(c) => &name[..name_start + c],
        None => name,
    };
    if image.is_empty() || image.contains(char::is_whitespace) {
        Some("invalid reference format".into())
    } else if repo.chars().any(|c| c.is_ascii_uppercase()) {
        Some("invalid reference format: repository name must be lowercase".into())
    } else {
        None
    }
}

fn allocate_ip(state: &mut State, (base, len): (Ipv4Addr, u32)) -> Result<Ipv4Addr> {
    let base = u32::from(base);
    let size = 1u32.checked_shl(32 - len).unwrap_or(0);
    // Skip the network address and the gateway (.1); stop before the broadcast address.
    for offset in 2..size.saturating_sub(1) {
        let ip = Ipv4Addr::from(base + offset);
        if state.used_ips.insert(ip) {
            return Ok(ip);
        }
    }
    Err(RuntimeError::Other(format!(
        "no free pod address left in {}/{len}",
        Ipv4Addr::from(base)
    )))
}

fn parse_subnet(subnet: &str) -> Result<(Ipv4Addr, u32)> {
    let bad = || {
        RuntimeError::Other(format!(
            "pod subnet {subnet:?} is not an IPv4 CIDR like 10.244.1.0/24"
        ))
    };
    let (addr, len) = subnet.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    if len > 30 {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - len);
    Ok((Ipv4Addr::from(u32::from(addr) & mask), len))
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion {
            name: "fake".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<EnsuredImage> {
        let mut state = self.lock();
        if let Some(message) = invalid_reference(image) {
            return Err(RuntimeError::ImagePull {
                image: image.into(),
                message,
            });
        }
        let present = state.images.get(image).cloned();
        match (policy, present) {
            (PullPolicy::IfNotPresent | PullPolicy::Never, Some(id)) => {
                return Ok(EnsuredImage { id, pulled: false });
            }
            (PullPolicy::Never, None) => {
                return Err(RuntimeError::ImageNeverPull {
                    image: image.into(),
                });
            }
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, None) => {}
        }
        if let Some(message) = state.failing_pulls.get(image) {
            return Err(RuntimeError::ImagePull {
                image: image.into(),
                message: message.clone(),
            });
        }
        let id = image_id(image);
        state.images.insert(image.to_string(), id.clone());
        Ok(EnsuredImage { id, pulled: true })
    }

    async fn ensure_network(&self, name: &str, subnet: &str) -> Result<()> {
        let parsed = parse_subnet(subnet)?;
        let mut state = self.lock();
        match state.networks.get(name) {
            Some(existing) if *existing == parsed => Ok(()),
            Some((addr, len)) => Err(RuntimeError::Other(format!(
                "network {name:?} exists with subnet {addr}/{len}, not {subnet}"
            ))),
            None => {
                state.networks.insert(name.to_string(), parsed);
                Ok(())
            }
        }
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        let mut state = self.lock();
        let ip = match &config.network {
            SandboxNetwork::Pod { network } => {
                let subnet = state
                    .networks
                    .get(network)
                    .copied()
                    .unwrap_or(DEFAULT_SUBNET);
                Some(allocate_ip(&mut state, subnet)?.to_string())
            }
            SandboxNetwork::Host | SandboxNetwork::None => None,
        };
        let id = Self::next_id(&mut state, "sandbox");
        let status = SandboxStatus {
            id: id.clone(),
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            uid: config.uid.clone(),
            ready: true,
            ip,
            created_at: SystemTime::now(),
            labels: config.labels.clone(),
        };
        state.sandboxes.insert(
            id,
            Sandbox {
                status: status.clone(),
            },
        );
        Ok(status)
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        if let Some(sandbox) = state.sandboxes.remove(id)
            && let Some(ip) = sandbox.status.ip.and_then(|ip| ip.parse().ok())
        {
            state.used_ips.remove(&ip);
        }
        Ok(())
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        Ok(self
            .lock()
            .sandboxes
            .values()
            .map(|s| s.status.clone())
            .collect())
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let mut state = self.lock();
        let pod = state
            .sandboxes
            .get(sandbox_id)
            .map(|s| s.status.clone())
            .ok_or_else(|| RuntimeError::NotFound {
                what: "sandbox",
                id: sandbox_id.into(),
            })?;
        // Like Docker, creating needs the image present (the kubelet ensures it first).
        let image_id = state.images.get(&config.image).cloned().ok_or_else(|| {
            RuntimeError::CreateOrStart {
                message: format!("No such image: {}", config.image),
            }
        })?;
        let id = Self::next_id(&mut state, "container");
        let program = if config.command.is_empty() {
            config.args.clone()
        } else {
            config.command.iter().chain(&config.args).cloned().collect()
        };
        let status = ContainerStatus {
            id: id.clone(),
            sandbox_id: Some(sandbox_id.to_string()),
            pod_namespace: pod.namespace,
            pod_name: pod.name,
            pod_uid: pod.uid,
            name: config.name.clone(),
            image: config.image.clone(),
            image_id,
            state: ContainerState::Created,
            restart_count: config.restart_count,
            created_at: SystemTime::now(),
            labels: config.labels.clone(),
        };
        let (changed, _) = watch::channel(0);
        state.containers.insert(
            id.clone(),
            Container {
                status,
                program,
                log: Vec::new(),
                changed,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let c = container_mut(&mut state, id)?;
        if !matches!(c.status.state, ContainerState::Created) {
            return Ok(());
        }
        c.status.state = ContainerState::Running {
            started_at: SystemTime::now(),
        };
        let (output, outcome) = interpret(&c.program, None);
        if !output.is_empty() {
            c.append_log(&output);
        }
        if let Outcome::Exited(code) = outcome {
            c.finish(code, reason_for(code));
        }
        c.touch();
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let mut state = self.lock();
        let Some(c) = state.containers.get_mut(id) else {
            return Ok(());
        };
        if matches!(c.status.state, ContainerState::Running { .. }) {
            // What an unhandled SIGTERM (143) or the SIGKILL of a zero grace (137) leaves.
            let code = if grace.is_zero() { 137 } else { 143 };
            c.finish(code, "Error");
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        if let Some(c) = self.lock().containers.remove(id) {
            c.touch(); // wakes followers, which then see it gone
        }
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>> {
        Ok(self
            .lock()
            .containers
            .values()
            .map(|c| c.status.clone())
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let mut state = self.lock();
        Ok(container_mut(&mut state, id)?.status.clone())
    }

    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let (start, rx) = {
            let mut state = self.lock();
            let c = container_mut(&mut state, id)?;
            let mut start = match options.since {
                Some(since) => c
                    .log
                    .iter()
                    .position(|(t, _)| *t >= since)
                    .unwrap_or(c.log.len()),
                None => 0,
            };
            if let Some(tail) = options.tail_lines {
                start = start.max(c.log.len().saturating_sub(tail as usize));
            }
            (start, c.changed.subscribe())
        };
        let follower = Follower {
            runtime: self.clone(),
            id: id.to_string(),
            next: start,
            follow: options.follow,
            timestamps: options.timestamps,
            rx,
            done: false,
        };
        Ok(futures::stream::unfold(follower, |mut f| async move {
            f.next_chunk().await.map(|c| (Ok(c), f))
        })
        .boxed())
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        _tty: bool,
        stdin: bool,
    ) -> Result<ExecSession> {
        {
            let mut state = self.lock();
            let c = container_mut(&mut state, id)?;
            if !matches!(c.status.state, ContainerState::Running { .. }) {
                return Err(RuntimeError::Other(format!(
                    "container {id} is not running"
                )));
            }
        }
        let command = command.to_vec();
        let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<(u8, Bytes)>>(4);
        let (code_tx, code_rx) = tokio::sync::oneshot::channel();
        let stdin_tx = if stdin {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
            tokio::spawn(async move {
                let mut input = Vec::new();
                while let Some(chunk) = rx.recv().await {
                    input.extend_from_slice(&chunk);
                }
                let (output, outcome) = interpret(&command, Some(&input));
                if !output.is_empty() {
                    let _ = out_tx.send(Ok((1, output.into()))).await;
                }
                drop(out_tx);
                let _ = code_tx.send(outcome.exec_code());
            });
            Some(tx)
        } else {
            let (output, outcome) = interpret(&command, None);
            if !output.is_empty() {
                let _ = out_tx.try_send(Ok((1, output.into())));
            }
            drop(out_tx);
            let _ = code_tx.send(outcome.exec_code());
            None
        };
        let output =
            futures::stream::unfold(
                out_rx,
                |mut rx| async move { rx.recv().await.map(|i| (i, rx)) },
            );
        Ok(ExecSession {
            stdin: stdin_tx,
            output: output.boxed(),
            exit_code: code_rx,
            resize: None,
        })
    }

    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        _timeout: Duration,
    ) -> Result<(i64, Vec<u8>)> {
        let mut session = self.exec(id, command, false, false).await?;
        let mut out = Vec::new();
        while let Some(item) = session.output.next().await {
            out.extend_from_slice(&item?.1);
        }
        Ok((session.exit_code.await.unwrap_or(-1), out))
    }

    async fn stats(&self, id: &str) -> Result<ContainerStats> {
        let mut state = self.lock();
        let c = container_mut(&mut state, id)?;
        // A fixed, plausible figure: hollow nodes need numbers, not measurements.
        let running = matches!(c.status.state, ContainerState::Running { .. });
        Ok(ContainerStats {
            id: id.to_string(),
            cpu_usage_nanos: if running { 1_000_000 } else { 0 },
            memory_working_set_bytes: if running { 1 << 20 } else { 0 },
        })
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let state = self.lock();
        let mut by_id: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (reference, id) in &state.images {
            by_id.entry(id).or_default().push(reference.clone());
        }
        Ok(by_id
            .into_iter()
            .map(|(id, repo_tags)| ImageInfo {
                id: id.to_string(),
                repo_tags,
                size_bytes: state.image_sizes.get(id).copied().unwrap_or(0),
            })
            .collect())
    }

    async fn images_in_use(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .lock()
            .containers
            .values()
            .map(|c| c.status.image_id.clone())
            .collect())
    }

    async fn remove_image(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        // Docker's refusal (409) of an image a container, even a stopped one, still uses.
        if state.containers.values().any(|c| c.status.image_id == id) {
            return Err(RuntimeError::Other(format!(
                "conflict: unable to delete {id} - image is being used by a container"
            )));
        }
        state.images.retain(|_, image| image != id);
        state.image_sizes.remove(id);
        Ok(())
    }

    async fn image_fs_path(&self) -> Result<Option<std::path::PathBuf>> {
        // Fake images take no disk: hollow nodes have nothing to collect.
        Ok(None)
    }
}

/// Reads a fake container's log, waiting for more while following a running container.
struct Follower {
    runtime: FakeRuntime,
    id: String,
    next: usize,
    follow: bool,
    timestamps: bool,
    rx: watch::Receiver<u64>,
    done: bool,
}

impl Follower {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            let (chunk, finished) = {
                let state = self.runtime.lock();
                match state.containers.get(&self.id) {
                    None => (Vec::new(), true),
                    Some(c) => {
                        let mut chunk = Vec::new();
                        for (t, line) in c.log.iter().skip(self.next) {
                            if self.timestamps {
                                let ts = jiff::Timestamp::try_from(*t)
                                    .map(|t| t.to_string())
                                    .unwrap_or_default();
                                chunk.extend_from_slice(ts.as_bytes());
                                chunk.push(b' ');
                            }
                            chunk.extend_from_slice(line);
                        }
                        self.next = c.log.len();
                        let running = matches!(
                            c.status.state,
                            ContainerState::Running { .. } | ContainerState::Created
                        );
                        (chunk, !self.follow || !running)
                    }
                }
            };
            self.rx.borrow_and_update();
            if finished {
                self.done = true;
            }
            if !chunk.is_empty() {
                return Some(chunk.into());
            }
            if self.done || self.rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// How an interpreted command ends.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited(i64),
    /// Runs until stopped.
    Blocked,
}

impl Outcome {
    /// In exec, commands the interpreter does not know succeed (so exec probes pass).
    fn exec_code(&self) -> i64 {
        match self {
            Outcome::Exited(code) => *code,
            Outcome::Blocked => 0,
        }
    }
}

/// Runs `argv` in the fake's tiny shell; returns its stdout and how it ended.
fn interpret(argv: &[String], stdin: Option<&[u8]>) -> (Vec<u8>, Outcome) {
    let base = |s: &str| s.rsplit('/').next().unwrap_or_default().to_string();
    let statements = match argv {
        [] => return (Vec::new(), Outcome::Blocked),
        [sh, c, script, ..] if base(sh) == "sh" && c == "-c" => split_script(script),
        _ => vec![argv.to_vec()],
    };
    let mut out = Vec::new();
    let mut status = 0;
    for words in statements {
        let Some(program) = words.first() else {
            continue;
        };
        status = match base(program).as_str() {
            "echo" => {
                out.extend_from_slice(words[1..].join(" ").as_bytes());
                out.push(b'\n');
                0
            }
            "exit" => {
                return (
                    out,
                    Outcome::Exited(words.get(1).and_then(|c| c.parse().ok()).unwrap_or(status)),
                );
            }
            "true" => 0,
            "false" => 1,
            "sleep" => match words.get(1).and_then(|s| s.parse::<f64>().ok()) {
                Some(secs) if secs < 1000.0 => 0,
                _ => return (out, Outcome::Blocked),
            },
            "cat" if words.len() == 1 && stdin.is_some() => {
                out.extend_from_slice(stdin.unwrap_or_default());
                0
            }
            _ => return (out, Outcome::Blocked),
        };
    }
    (out, Outcome::Exited(status))
}

/// Splits a shell script into statements (on unquoted `;` and newlines) of words (on unquoted
/// whitespace), dropping the quotes.
fn split_script(script: &str) -> Vec<Vec<String>> {
    let mut statements = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for ch in script.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                word.get_or_insert_default();
            }
            (None, ';' | '\n') => {
                words.extend(word.take());
                statements.push(std::mem::take(&mut words));
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word.take());
    statements.push(words);
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tiny_shell() {
        let cases: &[(&[&str], &str, Outcome)] = &[
            (&["sh", "-c", "echo hi; exit 3"], "hi\n", Outcome::Exited(3)),
            (
                &["/bin/sh", "-c", "echo 'a  b'; false"],
                "a  b\n",
                Outcome::Exited(1),
            ),
            (&["echo", "x", "y"], "x y\n", Outcome::Exited(0)),
            (
                &["sh", "-c", "echo one\nsleep 1\necho two"],
                "one\ntwo\n",
                Outcome::Exited(0),
            ),
            (
                &["sh", "-c", "echo up; sleep 3600"],
                "up\n",
                Outcome::Blocked,
            ),
            (&["httpd", "-f"], "", Outcome::Blocked),
            (&[], "", Outcome::Blocked),
        ];
        for (input, out, outcome) in cases {
            let (o, r) = interpret(&argv(input), None);
            assert_eq!(
                (String::from_utf8(o).unwrap().as_str(), &r),
                (*out, outcome),
                "{input:?}"
            );
        }
        assert_eq!(
            interpret(&argv(&["cat"]), Some(b"in")),
            (b"in".to_vec(), Outcome::Exited(0))
        );
    }

    #[test]
    fn invalid_references() {
        assert!(invalid_reference("busybox:1").is_none());
        assert!(invalid_reference("localhost:5000/Ab").is_some());
        assert!(invalid_reference("localhost:5000/ab:V1").is_none());
    }

    #[tokio::test]
    async fn ips_come_from_the_network_subnet_and_are_reused() {
        let rt = FakeRuntime::new();
        rt.ensure_network("pods", "10.244.3.0/24").await.unwrap();
        let mut config = SandboxConfig {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            hostname: "p".into(),
            network: SandboxNetwork::Pod {
                network: "pods".into(),
            },
            port_mappings: vec![],
            labels: BTreeMap::new(),
            dns_servers: vec![],
            dns_searches: vec![],
            dns_options: vec![],
            extra_hosts: vec![],
        };
        let a = rt.run_sandbox(&config).await.unwrap();
        assert_eq!(a.ip.as_deref(), Some("10.244.3.2"));
        rt.remove_sandbox(&a.id).await.unwrap();
        let b = rt.run_sandbox(&config).await.unwrap();
        assert_eq!(b.ip.as_deref(), Some("10.244.3.2"));
        config.network = SandboxNetwork::Pod {
            network: "unknown".into(),
        };
        let c = rt.run_sandbox(&config).await.unwrap();
        assert_eq!(c.ip.as_deref(), Some("10.88.0.2"));
    }
}
