//! `skiffadm supervise`: where systemd is not PID 1, runs the Skiff services itself with the
//! same command lines as the units (`<binary> $SKIFF_ARGS $SKIFF_EXTRA_ARGS` from
//! `/etc/skiff/<unit>.env` and `/etc/default/<unit>`), one child per unit whose `.env` file
//! exists, restarted with backoff when it exits; each child's output goes to
//! `/var/log/skiff/<unit>.log`. SIGTERM stops the children (SIGTERM, then SIGKILL after a
//! grace period) and then the supervisor.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use crate::Paths;
use crate::components::{Unit, env_var};

/// How long a stopped child has to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// A child that ran this long is restarted at once after its next exit.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The directory of this executable: the Skiff binaries are installed beside `skiffadm`.
pub fn binary_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The binary of `unit`: beside skiffadm, else on `PATH`.
pub fn binary(unit: Unit) -> Option<PathBuf> {
    let beside = binary_dir().map(|d| d.join(unit.name()));
    beside.filter(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(unit.name()))
                .find(|p| p.is_file())
        })
    })
}

/// The pid in the supervisor's pid file, if that process is alive.
pub fn running(p: &Paths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(p.supervise_pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let pid_ = rustix::process::Pid::from_raw(pid)?;
    rustix::process::test_kill_process(pid_).ok()?;
    Some(pid)
}

/// The command line of `unit`, read now from its files (so that edits apply at the next
/// restart), or `None` when its `.env` file is gone.
fn command_line(p: &Paths, unit: Unit) -> Option<Vec<String>> {
    let env = std::fs::read_to_string(p.env_file(unit.name())).ok()?;
    let mut args = env_var(&env, "SKIFF_ARGS");
    let extra = std::fs::read_to_string(p.default_file(unit.name())).unwrap_or_default();
    args.extend(env_var(&extra, "SKIFF_EXTRA_ARGS"));
    Some(args)
}

/// Runs until `shutdown`: every unit with a `.env` file, each restarted when it exits.
pub async fn run(p: Paths, shutdown: CancellationToken) -> anyhow::Result<()> {
    if let Some(pid) = running(&p) {
        bail!("a supervisor is already running (pid {pid})");
    }
    skiff_common::pki::create_private_dir(&p.run())?;
    std::fs::create_dir_all(p.log_dir())?;
    std::fs::write(p.supervise_pid(), format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", p.supervise_pid().display()))?;
    let units: Vec<Unit> = Unit::ALL
        .into_iter()
        .filter(|u| p.env_file(u.name()).exists())
        .collect();
    tracing::info!(?units, "supervising");
    let tasks: Vec<_> = units
        .into_iter()
        .map(|u| tokio::spawn(keep_running(p.clone(), u, shutdown.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(p.supervise_pid());
    Ok(())
}

fn log_line(log: &mut std::fs::File, text: &str) {
    use std::io::Write as _;
    let _ = writeln!(
        log,
        "{} skiffadm supervise: {text}",
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
    );
}

async fn keep_running(p: Paths, unit: Unit, shutdown: CancellationToken) {
    let mut backoff = skiff_common::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    while !shutdown.is_cancelled() {
        let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p.log(unit.name()))
        else {
            tracing::error!(unit = unit.name(), "cannot open the log file");
            return;
        };
        let Some(args) = command_line(&p, unit) else {
            log_line(&mut log, "the .env file is gone; not starting again");
            return;
        };
        let started = Instant::now();
        let outcome = match binary(unit) {
            None => Err(format!(
                "{} not found beside skiffadm or on PATH",
                unit.name()
            )),
            Some(bin) => {
                log_line(
                    &mut log,
                    &format!("starting {} {}", bin.display(), args.join(" ")),
                );
                run_once(&bin, &args, &log, &shutdown).await
            }
        };
        match outcome {
            Ok(None) => {
                log_line(&mut log, "stopped");
                return;
            }
            Ok(Some(status)) => log_line(&mut log, &format!("exited: {status}")),
            Err(e) => log_line(&mut log, &format!("could not start: {e}")),
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Runs the child until it exits (`Some(status)`) or `shutdown` stops it (`None`).
async fn run_once(
    bin: &Path,
    args: &[String],
    log: &std::fs::File,
    shutdown: &CancellationToken,
) -> Result<Option<std::process::ExitStatus>, String> {
    let out = log.try_clone().map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    tokio::select! {
        status = child.wait() => status.map(Some).map_err(|e| e.to_string()),
        _ = shutdown.cancelled() => {
            if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            Ok(None)
        }
    }
}
