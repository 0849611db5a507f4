//! The iptables writer: applies a ruleset with one `iptables-restore --noflush` (so rules that
//! are not Skiff's are untouched), keeps the jumps from the built-in chains in place, and
//! removes everything Skiff installed (`--cleanup`). Commands can run in another network
//! namespace (through `nsenter`), which is how tests drive a namespace they created.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::rules;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {cmd}: {source}; is iptables installed?")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
}

/// Runs iptables commands here, or in the network namespace at `netns`.
#[derive(Debug, Clone, Default)]
pub struct Iptables {
    netns: Option<PathBuf>,
}

impl Iptables {
    pub fn new() -> Iptables {
        Iptables::default()
    }

    /// Commands run in the network namespace at `path` (e.g. `/run/netns/node-1`).
    pub fn in_netns(path: &Path) -> Iptables {
        Iptables {
            netns: Some(path.to_path_buf()),
        }
    }

    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
        let cmd = format!("{program} {}", args.join(" "));
        let mut c = self.command(program);
        c.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|source| Error::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
        // A write error (the program exited early, e.g. on bad input) is reported through the
        // exit status and stderr below, which say why.
        let written = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => pipe.write_all(input.as_bytes()),
            _ => Ok(()),
        };
        let out = child.wait_with_output().map_err(|source| Error::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
        if let Err(source) = written
            && out.status.success()
        {
            return Err(Error::Spawn { cmd, source });
        }
        if !out.status.success() {
            return Err(Error::Failed {
                cmd,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies a ruleset in one `iptables-restore --noflush`, then makes sure the built-in
    /// chains jump into Skiff's (created by the restore if they were missing).
    pub fn apply(&self, ruleset: &rules::Ruleset) -> Result<(), Error> {
        self.apply_text(&ruleset.restore())
    }

    /// Restores a whole ruleset already written as `iptables-restore` input, then the jumps.
    pub fn apply_text(&self, restore: &str) -> Result<(), Error> {
        self.run("iptables-restore", &["--noflush"], Some(restore))?;
        self.ensure_jumps()
    }

    /// Applies restore input (a partial sync) with one `iptables-restore --noflush`.
    pub fn restore(&self, input: &str) -> Result<(), Error> {
        if input.is_empty() {
            return Ok(());
        }
        self.run("iptables-restore", &["--noflush"], Some(input))
            .map(|_| ())
    }

    /// Adds each jump from a built-in chain unless it is there; an optional jump only when
    /// its chain exists. Each chain is listed on its own (`-S CHAIN`): with iptables-nft, `-C`
    /// reads the whole table, which takes tens of milliseconds once there are 10,000 Services.
    pub fn ensure_jumps(&self) -> Result<(), Error> {
        self.ensure(&rules::jumps())
    }

    /// Installs `SKIFF-FIREWALL` and its jumps alone (before the first sync, which writes
    /// the rest).
    pub fn install_firewall(&self) -> Result<(), Error> {
        self.restore(&rules::firewall_restore())?;
        let jumps: Vec<rules::Jump> = rules::jumps()
            .into_iter()
            .filter(|j| j.spec.last() == Some(&rules::FIREWALL))
            .collect();
        self.ensure(&jumps)
    }

    fn ensure(&self, jumps: &[rules::Jump]) -> Result<(), Error> {
        let mut listed: std::collections::BTreeMap<(&str, &str), Option<String>> =
            std::collections::BTreeMap::new();
        for jump in jumps {
            let listing = listed.entry((jump.table, jump.chain)).or_insert_with(|| {
                self.run(
                    "iptables",
                    &["-w", "-t", jump.table, "-S", jump.chain],
                    None,
                )
                .ok()
            });
            let Some(listing) = listing else {
                if jump.optional {
                    continue;
                }
                return Err(Error::Failed {
                    cmd: format!("iptables -t {} -S {}", jump.table, jump.chain),
                    stderr: "the chain cannot be listed".into(),
                });
            };
            if listing.lines().any(|l| jump.is(l)) {
                continue;
            }
            let mut insert = vec!["-w", "-t", jump.table, "-I", jump.chain, "1"];
            insert.extend(jump.spec.iter().copied());
            self.run("iptables", &insert, None)?;
        }
        Ok(())
    }

    /// Deletes the UDP conntrack entries matching `filter` (see [`crate::conntrack`]). None
    /// matching is fine; a missing `conntrack` tool is logged.
    pub fn conntrack_delete(&self, filter: &[String]) {
        let mut args = vec!["-D", "-p", "udp"];
        args.extend(filter.iter().map(String::as_str));
        match self.run("conntrack", &args, None) {
            Ok(_) => tracing::debug!(?filter, "deleted stale UDP flows"),
            Err(Error::Spawn { source, .. }) => {
                tracing::warn!(error = %source, "cannot run conntrack; stale UDP flows stay")
            }
            // Exit status 1 with "0 flow entries have been deleted" when nothing matched.
            Err(Error::Failed { .. }) => {}
        }
    }

    /// The `SKIFF-*` chains that exist in `table`.
    pub fn chains(&self, table: &str) -> Result<BTreeSet<String>, Error> {
        let saved = self.run("iptables-save", &["-t", table], None)?;
        Ok(saved
            .lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| c.starts_with("SKIFF-"))
            .map(String::from)
            .collect())
    }

    /// Removes every jump and chain Skiff installed.
    pub fn cleanup(&self) -> Result<(), Error> {
        for jump in rules::jumps() {
            let mut delete = vec!["-w", "-t", jump.table, "-D", jump.chain];
            delete.extend(jump.spec.iter().copied());
            while self.run("iptables", &delete, None).is_ok() {}
        }
        for table in ["nat", "filter"] {
            let chains = self.chains(table)?;
            if chains.is_empty() {
                continue;
            }
            let mut input = format!("*{table}\n");
            for c in &chains {
                input.push_str(&format!(":{c} - [0:0]\n"));
            }
            for c in &chains {
                input.push_str(&format!("-X {c}\n"));
            }
            input.push_str("COMMIT\n");
            self.run("iptables-restore", &["--noflush"], Some(&input))?;
        }
        Ok(())
    }
}
