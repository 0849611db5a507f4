//! `skiffadm certs renew`: renews control-plane certificates (all, one by name, or those that
//! expire within a window, as the daily skiff-certs-renew.timer asks), says which, and
//! restarts or names the services that must read them again.

use std::time::Duration;

use anyhow::bail;

use crate::Paths;
use crate::certs::{self, Managed};
use crate::components::Unit;
use crate::services::{self, Manager};

/// Runs `certs renew WHICH [--expiring-within D] [--restart-services]`.
pub fn run(
    p: &Paths,
    which: &str,
    within: Option<Duration>,
    restart_services: bool,
) -> anyhow::Result<()> {
    if restart_services && Manager::detect(p) != Manager::Systemd {
        bail!(
            "--restart-services needs systemd as PID 1 (there is no /run/systemd/system); where `skiffadm supervise` runs the services, it renews expiring certificates and restarts the services itself once a day"
        );
    }
    let renewed: Vec<Managed> = match within {
        None => {
            let names = certs::renew(p, which)?;
            for name in &names {
                println!("certificate {name} renewed");
            }
            certs::managed(p)
                .into_iter()
                .filter(|m| names.iter().any(|n| n == m.name()))
                .collect()
        }
        Some(within) => {
            if which != "all" {
                bail!(
                    "--expiring-within goes with `all`: `skiffadm certs renew all --expiring-within 720h`"
                );
            }
            if !certs::can_renew(p) {
                println!(
                    "No CA key here ({}): this machine is no control plane made by `skiffadm init`, and its kubelet and proxy renew their own certificates. Nothing to renew.",
                    p.pki().join("ca.key").display()
                );
                return Ok(());
            }
            let now = jiff::Timestamp::now().as_second();
            let chosen = certs::renew_expiring(p, within, now)?;
            let window = crate::token::short_duration(within.as_secs() as i64);
            for (m, end) in &chosen.due {
                let left = if *end <= now {
                    "the old one had expired".to_string()
                } else {
                    format!(
                        "the old one expires in {}",
                        crate::token::short_duration(end - now)
                    )
                };
                println!("certificate {} renewed ({left})", m.name());
            }
            if !chosen.later.is_empty() {
                let names: Vec<&str> = chosen.later.iter().map(|(m, _)| m.name()).collect();
                println!("not renewed, more than {window} left: {}", names.join(", "));
            }
            if chosen.due.is_empty() {
                println!("No certificate expires within {window}: nothing renewed.");
                return Ok(());
            }
            chosen.due.into_iter().map(|(m, _)| m).collect()
        }
    };
    let units = certs::to_restart(&renewed);
    if units.is_empty() {
        println!("\nDone renewing certificates. No service reads them: nothing to restart.");
    } else if restart_services {
        services::try_restart(&units)?;
        println!("\nDone renewing certificates. Restarted {}.", names(&units));
    } else {
        println!(
            "\nDone renewing certificates. You must restart {} so that they can use the new certificates.",
            names(&units)
        );
    }
    Ok(())
}

/// `a`, `a and b`, `a, b and c`.
fn names(units: &[Unit]) -> String {
    let names: Vec<&str> = units.iter().map(|u| u.name()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_goes_with_all_needs_the_ca_key_and_restarting_needs_systemd() {
        let root = tempfile::tempdir().unwrap();
        let p = Paths::under(root.path());
        let month = Some(skiff_common::pki::RENEW_BEFORE);
        // A joined node (no CA key): nothing to do, no error for the daily job.
        run(&p, "all", month, false).unwrap();
        certs::create(&p, &["cp1".to_string()], "https://10.0.0.1:6443", "cp1").unwrap();
        run(&p, "all", month, false).unwrap();
        let err = run(&p, "apiserver", month, false).unwrap_err();
        assert!(err.to_string().contains("goes with `all`"), "{err}");
        // This root has no /run/systemd/system.
        let err = run(&p, "all", month, true).unwrap_err();
        assert!(err.to_string().contains("needs systemd"), "{err}");
    }

    #[test]
    fn services_are_named_as_a_sentence() {
        assert_eq!(names(&[Unit::Apiserver]), "skiff-apiserver");
        assert_eq!(
            names(&[Unit::Apiserver, Unit::Scheduler, Unit::ControllerManager]),
            "skiff-apiserver, skiff-scheduler and skiff-controller-manager"
        );
    }
}
