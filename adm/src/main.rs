//! `skiffadm`: installs Skiff on machines as kubeadm installs Kubernetes: `init` makes a control
//! plane, `join` adds a node with a bootstrap token, `token`, `certs` and `reset` look after them.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "skiffadm", version, about)]
enum Cmd {}

fn main() -> anyhow::Result<()> {
    match Cmd::parse() {}
}
