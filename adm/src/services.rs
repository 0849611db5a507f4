//! Starting and stopping the Skiff services on a machine: with systemd as PID 1, the
//! package's units (`systemctl enable --now`, and the certificate renewal timer on a control
//! plane); otherwise the detached `skiffadm supervise`,
//! which runs the same command lines.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Paths;
use crate::components::{self, Unit};

/// The timer that renews the control plane's certificates before they expire (daily,
/// `skiffadm certs renew all --expiring-within 720h --restart-services`).
pub const RENEW_TIMER: &str = "skiff-certs-renew.timer";

/// Who runs the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Supervisor,
}

impl Manager {
    pub fn detect(p: &Paths) -> Manager {
        if p.systemd_running() {
            Manager::Systemd
        } else {
            Manager::Supervisor
        }
    }

    /// Where to read `unit`'s log.
    pub fn log_hint(self, p: &Paths, unit: Unit) -> String {
        match self {
            Manager::Systemd => format!("journalctl -u {}", unit.name()),
            Manager::Supervisor => p.log(unit.name()).display().to_string(),
        }
    }
}

/// Writes `/etc/skiff/<unit>.env`.
pub fn write_env(p: &Paths, unit: Unit, args: &[String]) -> anyhow::Result<()> {
    let text = components::env_file(args)?;
    skiff_common::pki::write(&p.env_file(unit.name()), &text, true)
        .with_context(|| format!("writing the {} command line", unit.name()))?;
    Ok(())
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .context("running systemctl")?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Checks that the services can be started: the units are installed (systemd), or the
/// binaries are beside skiffadm or on PATH (supervisor).
pub fn check(p: &Paths, units: &[Unit]) -> anyhow::Result<()> {
    for &u in units {
        match Manager::detect(p) {
            Manager::Systemd => {
                if !p.unit_file(u.name()).exists() {
                    bail!(
                        "the systemd unit {}.service is not installed ({} is missing): install the skiff package (.deb) first",
                        u.name(),
                        p.unit_file(u.name()).display()
                    );
                }
            }
            Manager::Supervisor => {
                if crate::supervise::binary(u).is_none() {
                    bail!(
                        "{} not found beside skiffadm or on PATH: install the skiff package or put the binaries beside skiffadm",
                        u.name()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Starts `units` (their `.env` files written) and says who runs them.
pub fn start(p: &Paths, units: &[Unit]) -> anyhow::Result<Manager> {
    let manager = Manager::detect(p);
    match manager {
        Manager::Systemd => {
            systemctl(&["daemon-reload"])?;
            let mut args = vec!["enable", "--now"];
            let names: Vec<String> = units
                .iter()
                .map(|u| format!("{}.service", u.name()))
                .collect();
            args.extend(names.iter().map(String::as_str));
            // A control plane renews its certificates daily; a node's components rotate
            // their own.
            if units.contains(&Unit::Apiserver) && p.systemd_unit(RENEW_TIMER).exists() {
                args.push(RENEW_TIMER);
            }
            systemctl(&args)?;
        }
        Manager::Supervisor => {
            println!(
                "[services] systemd is not running (no /run/systemd/system), so skiffadm supervises the components itself: `skiffadm supervise`, logs in {}",
                p.log_dir().display()
            );
            // A running supervisor read the .env files when it started: replace it.
            stop_supervisor(p)?;
            spawn_supervisor(p)?;
        }
    }
    Ok(manager)
}

fn spawn_supervisor(p: &Paths) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    std::fs::create_dir_all(p.log_dir())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p.log("supervise"))?;
    let exe = std::env::current_exe().context("finding skiffadm's own executable")?;
    // Its own process group: a Ctrl-C in the terminal that ran init does not reach it.
    Command::new(exe)
        .arg("supervise")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting `skiffadm supervise`")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::supervise::running(p).is_none() {
        if Instant::now() > deadline {
            bail!(
                "`skiffadm supervise` did not start; see {}",
                p.log("supervise").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Stops a running supervisor (and so its children) and waits until it is gone.
pub fn stop_supervisor(p: &Paths) -> anyhow::Result<()> {
    let Some(pid) = crate::supervise::running(p) else {
        return Ok(());
    };
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::supervise::running(p).is_some() {
        if Instant::now() > deadline {
            bail!("the supervisor (pid {pid}) did not stop within 30s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Restarts those of `units` that are running (`systemctl try-restart`), so that they read
/// renewed certificates.
pub fn try_restart(units: &[Unit]) -> anyhow::Result<()> {
    let names: Vec<String> = units
        .iter()
        .map(|u| format!("{}.service", u.name()))
        .collect();
    let mut args = vec!["try-restart"];
    args.extend(names.iter().map(String::as_str));
    systemctl(&args)
}

/// Stops and disables every Skiff service (reset).
pub fn stop_all(p: &Paths) -> anyhow::Result<()> {
    if p.systemd_running() {
        if p.systemd_unit(RENEW_TIMER).exists()
            && let Err(e) = systemctl(&["disable", "--now", RENEW_TIMER])
        {
            eprintln!("[reset] {e:#}");
        }
        for u in Unit::ALL {
            if p.unit_file(u.name()).exists() {
                let unit = format!("{}.service", u.name());
                if let Err(e) = systemctl(&["disable", "--now", &unit]) {
                    eprintln!("[reset] {e:#}");
                }
            }
        }
    }
    stop_supervisor(p)
}
