//! `skiffadm supervise`: where systemd is not PID 1, runs the Skiff services itself with the
//! same command lines as the units (`<binary> $SKIFF_ARGS $SKIFF_EXTRA_ARGS` from
//! `/etc/skiff/<unit>.env` and `/etc/default/<unit>`), one child per unit whose `.env` file
//! exists, restarted with backoff when it exits; each child's output goes to
//! `/var/log/skiff/<unit>.log`. SIGTERM stops the children (SIGTERM, then SIGKILL after a
//! grace period) and then the supervisor. On a control plane it also does the daily job of
//! skiff-certs-renew.timer: at start and then once a day it renews the certificates that
//! expire within 30 days and restarts the children that read them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Paths;
use crate::certs;
use crate::components::{Unit, env_var};

/// How long a stopped child has to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// A child that ran this long is restarted at once after its next exit.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How often to look for certificates about to expire (skiff-certs-renew.timer's `daily`).
const RENEW_EVERY: Duration = Duration::from_secs(24 * 3600);

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
    // Renewed before the children start, they read the new certificates: nothing to restart.
    renew_due(&p);
    let mut restarts = Vec::new();
    let mut tasks: Vec<_> = units
        .into_iter()
        .map(|u| {
            let (tx, rx) = watch::channel(0u64);
            restarts.push((u, tx));
            tokio::spawn(keep_running(p.clone(), u, shutdown.clone(), rx))
        })
        .collect();
    if certs::can_renew(&p) {
        tasks.push(tokio::spawn(renew_daily(p.clone(), restarts, shutdown)));
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(p.supervise_pid());
    Ok(())
}

/// Renews the control plane's certificates that expire within
/// [`RENEW_BEFORE`](skiff_common::pki::RENEW_BEFORE) (none on a node without the CA key);
/// returns the services that must restart to read them. Failures are logged: the next day
/// tries again, and the apiserver renews its own certificates at start with the same margin.
fn renew_due(p: &Paths) -> Vec<Unit> {
    if !certs::can_renew(p) {
        return Vec::new();
    }
    let now = jiff::Timestamp::now().as_second();
    match certs::renew_expiring(p, skiff_common::pki::RENEW_BEFORE, now) {
        Ok(chosen) => {
            for (m, expires) in &chosen.due {
                tracing::info!(certificate = m.name(), expires, "certificate renewed");
            }
            certs::to_restart(chosen.due.iter().map(|(m, _)| m))
        }
        Err(e) => {
            tracing::error!("renewing the certificates that expire soon: {e:#}");
            Vec::new()
        }
    }
}

/// Once a day, renews what expires soon and asks the children that read it to restart.
async fn renew_daily(
    p: Paths,
    restarts: Vec<(Unit, watch::Sender<u64>)>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
        for unit in renew_due(&p) {
            if let Some((_, tx)) = restarts.iter().find(|(u, _)| *u == unit) {
                tx.send_modify(|generation| *generation += 1);
            }
        }
    }
}

fn log_line(log: &mut std::fs::File, text: &str) {
    use std::io::Write as _;
    let _ = writeln!(
        log,
        "{} skiffadm supervise: {text}",
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
    );
}

async fn keep_running(
    p: Paths,
    unit: Unit,
    shutdown: CancellationToken,
    mut restart: watch::Receiver<u64>,
) {
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
                run_once(&bin, &args, &log, &shutdown, &mut restart).await
            }
        };
        match outcome {
            Ok(Ended::Stopped) => {
                log_line(&mut log, "stopped");
                return;
            }
            Ok(Ended::Restart) => {
                log_line(&mut log, "stopped to read its renewed certificate");
                backoff.reset();
                continue;
            }
            Ok(Ended::Exited(status)) => log_line(&mut log, &format!("exited: {status}")),
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

/// How one run of a child ended.
#[derive(Debug)]
enum Ended {
    /// It exited by itself.
    Exited(std::process::ExitStatus),
    /// It was stopped to be started again (its certificate was renewed).
    Restart,
    /// It was stopped for good (shutdown).
    Stopped,
}

/// Runs the child until it exits, `restart` changes, or `shutdown` stops it.
async fn run_once(
    bin: &Path,
    args: &[String],
    log: &std::fs::File,
    shutdown: &CancellationToken,
    restart: &mut watch::Receiver<u64>,
) -> Result<Ended, String> {
    // Only a renewal after this start restarts the child: one before it was read at start.
    restart.borrow_and_update();
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
    let ended = tokio::select! {
        status = child.wait() => return status.map(Ended::Exited).map_err(|e| e.to_string()),
        _ = shutdown.cancelled() => Ended::Stopped,
        // A dropped sender (the supervisor going down) is no request to restart.
        Ok(()) = restart.changed() => Ended::Restart,
    };
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(
        restart: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<Result<Ended, String>> {
        let log = tempfile::tempfile().unwrap();
        let mut restart = restart;
        tokio::spawn(async move {
            run_once(
                Path::new("/bin/sleep"),
                &["600".to_string()],
                &log,
                &shutdown,
                &mut restart,
            )
            .await
        })
    }

    #[tokio::test]
    async fn a_renewed_certificate_restarts_the_child_and_shutdown_stops_it() {
        let (tx, rx) = watch::channel(0u64);
        let shutdown = CancellationToken::new();
        // A renewal before the child starts does not restart it.
        tx.send_modify(|g| *g += 1);
        let run = sleeper(rx.clone(), shutdown.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!run.is_finished(), "the child ended without a reason");
        tx.send_modify(|g| *g += 1);
        let ended = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the child was not stopped for its restart")
            .unwrap();
        assert!(matches!(ended, Ok(Ended::Restart)), "{ended:?}");

        let run = sleeper(rx, shutdown.clone());
        shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("shutdown did not stop the child")
            .unwrap();
        assert!(matches!(ended, Ok(Ended::Stopped)), "{ended:?}");
    }
}
