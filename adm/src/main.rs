//! `skiffadm`: installs Skiff on machines as kubeadm installs Kubernetes: `init` makes a control
//! plane, `join` adds a node with a bootstrap token, `token`, `certs` and `reset` look after them.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use skiffadm::Paths;

#[derive(Parser, Debug)]
#[command(name = "skiffadm", version, about)]
enum Cmd {
    /// Make this machine a control plane (and its first node).
    Init(skiffadm::init::InitArgs),
    /// Add this machine to a cluster as a node.
    Join(skiffadm::join::JoinArgs),
    /// Manage bootstrap tokens.
    Token {
        /// The admin kubeconfig.
        #[arg(long, global = true, default_value = "/etc/skiff/admin.conf")]
        kubeconfig: PathBuf,
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Certificates of the control plane.
    Certs {
        #[command(subcommand)]
        command: CertsCmd,
    },
    /// Undo what init or join did on this machine.
    Reset {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Run the services' command lines where systemd is not PID 1 (started by init and join).
    #[command(hide = true)]
    Supervise,
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Create a bootstrap token.
    Create {
        /// The token (default: a random one).
        token: Option<String>,
        /// How long the token is valid; 0 never expires.
        #[arg(long, default_value = "24h0m0s", value_parser = skiff_common::parse_duration)]
        ttl: Duration,
        /// Print the whole `skiffadm join` command.
        #[arg(long)]
        print_join_command: bool,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the bootstrap tokens.
    List,
    /// Delete bootstrap tokens (ids or whole tokens).
    Delete {
        #[arg(required = true)]
        tokens: Vec<String>,
    },
    /// Print a new random token (not stored).
    Generate,
}

#[derive(Subcommand, Debug)]
enum CertsCmd {
    /// Show when each certificate expires.
    CheckExpiration,
    /// Issue certificates again with the same CA and names: `all` or one name.
    Renew {
        which: String,
        /// Renew only the certificates that expire within this long (e.g. 720h), saying
        /// which; the daily skiff-certs-renew.timer runs `all --expiring-within 720h`.
        #[arg(long, value_parser = skiff_common::parse_duration)]
        expiring_within: Option<Duration>,
        /// Afterwards restart (`systemctl try-restart`) the services whose certificates were
        /// renewed, so that they read them (needs systemd; `skiffadm supervise` does its own).
        #[arg(long)]
        restart_services: bool,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    skiff_client::install_crypto_provider();
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let p = Paths::system();
    match Cmd::parse() {
        Cmd::Init(args) => runtime()?.block_on(skiffadm::init::run(&p, &args)),
        Cmd::Join(args) => runtime()?.block_on(skiffadm::join::run(&p, &args)),
        Cmd::Token {
            kubeconfig,
            command,
        } => {
            use skiffadm::token::commands;
            match command {
                TokenCmd::Create {
                    token,
                    ttl,
                    print_join_command,
                    description,
                } => runtime()?.block_on(commands::create(
                    &kubeconfig,
                    token,
                    ttl,
                    description.as_deref(),
                    print_join_command,
                )),
                TokenCmd::List => runtime()?.block_on(commands::list(&kubeconfig)),
                TokenCmd::Delete { tokens } => {
                    runtime()?.block_on(commands::delete(&kubeconfig, &tokens))
                }
                TokenCmd::Generate => {
                    println!("{}", skiffadm::token::generate());
                    Ok(())
                }
            }
        }
        Cmd::Certs { command } => match command {
            CertsCmd::CheckExpiration => {
                print!(
                    "{}",
                    skiffadm::certs::check_expiration(&p, jiff::Timestamp::now().as_second())?
                );
                Ok(())
            }
            CertsCmd::Renew {
                which,
                expiring_within,
                restart_services,
            } => skiffadm::renew::run(&p, &which, expiring_within, restart_services),
        },
        Cmd::Reset { force } => {
            if !force {
                println!(
                    "[reset] WARNING: Changes made to this host by 'skiffadm init' or 'skiffadm join' will be reverted."
                );
                print!("[reset] Are you sure you want to proceed? [y/N]: ");
                use std::io::Write as _;
                std::io::stdout().flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    anyhow::bail!("aborted reset operation");
                }
            }
            skiffadm::reset::run_reset(&p)
        }
        Cmd::Supervise => {
            skiff_common::init_logging();
            runtime()?.block_on(async {
                let shutdown = skiff_common::shutdown_on_signal();
                skiffadm::supervise::run(p, shutdown).await
            })
        }
    }
}
