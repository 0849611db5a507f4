//! `skiffctl`: Skiff's command line. `skiffctl cluster ...` creates and manages local
//! multi-node clusters (each node a network namespace with its own Docker engine, kubelet and
//! proxy), as kind does. The kubectl-like commands are not implemented yet: they say so and
//! exit 1, so that nothing mistakes them for working ones.

mod cluster;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "skiffctl",
    version,
    about = "Skiff's command line",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Local multi-node clusters: create, delete, list, load-image, stop-node, start-node, logs.
    Cluster(cluster::Args),
    /// kubectl-like commands (get, apply, ...): not implemented yet.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

fn main() {
    skiff_client::install_crypto_provider();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Cluster(args) => cluster::run(args),
        Command::Other(words) => Err(anyhow::anyhow!(
            "\"{}\" is not implemented yet; use kubectl with the kubeconfig `skiffctl cluster create` wrote",
            words.first().map(String::as_str).unwrap_or_default()
        )),
    };
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
