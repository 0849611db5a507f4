//! `skiffctl`: Skiff's command line. `skiffctl cluster ...` creates and manages local
//! multi-node clusters (each node a network namespace with its own Docker engine, kubelet and
//! proxy), as kind does. The kubectl-like commands take kubectl's flags and kubeconfig and print
//! what kubectl prints; those not written yet say so and exit 1.

mod cluster;
mod kubectl;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "skiffctl",
    version,
    about = "Skiff's command line: kubectl-like commands and local clusters",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(flatten)]
    globals: kubectl::Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Local multi-node clusters: create, delete, list, load-image, stop-node, start-node, logs.
    Cluster(cluster::Args),
    /// Display one or many resources (server-side tables, as kubectl).
    Get(kubectl::get::GetArgs),
    /// Create objects from manifests (`-f FILE|DIR|-`), or one of a kind:
    /// `create deployment|namespace|configmap|secret generic|service|serviceaccount|token|role|
    /// clusterrole|rolebinding|clusterrolebinding`.
    Create(CreateArgs),
    /// Run a pod: `run NAME --image=IMAGE [-- COMMAND...]`.
    Run(kubectl::make::RunArgs),
    /// Make a Service for a Deployment, ReplicaSet, ReplicationController or Pod.
    Expose(kubectl::make::ExposeArgs),
    /// Patch objects: `patch TYPE NAME -p PATCH [--type strategic|merge|json]`.
    Patch {
        #[arg(required = true)]
        args: Vec<String>,
        #[arg(short = 'p', long, required = true)]
        patch: String,
        #[arg(long = "type", default_value = "strategic")]
        type_: String,
    },
    /// Replace objects with the manifests' versions.
    Replace {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// Wait for a condition on objects (`--for=condition=Ready`, `--for=delete`).
    Wait(kubectl::make::WaitArgs),
    /// Print a shell completion script: `completion bash|zsh|fish`.
    Completion { shell: clap_complete::Shell },
    /// Apply manifests: create, or update through a three-way merge with the last applied
    /// configuration (interoperable with kubectl's), or `--server-side`.
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[arg(long)]
        server_side: bool,
    },
    /// Delete objects by name, by manifest, by label selector or all of a type.
    Delete(kubectl::write::DeleteArgs),
    /// Set the replicas of a Deployment, ReplicaSet, ReplicationController or StatefulSet.
    Scale {
        /// TYPE NAME or TYPE/NAME.
        #[arg(required = true)]
        args: Vec<String>,
        #[arg(long, required = true)]
        replicas: i64,
    },
    /// Add (key=value), change (with --overwrite) or remove (key-) labels.
    Label {
        #[arg(required = true)]
        args: Vec<String>,
        #[arg(long)]
        overwrite: bool,
    },
    /// Add (key=value), change (with --overwrite) or remove (key-) annotations.
    Annotate {
        #[arg(required = true)]
        args: Vec<String>,
        #[arg(long)]
        overwrite: bool,
    },
    /// Change fields of objects: `set image TYPE/NAME container=image`.
    #[command(subcommand)]
    Set(SetCmd),
    /// Print a container's logs (`-f` to follow).
    Logs(kubectl::pods::LogsArgs),
    /// Run a command in a container (`-it` for an interactive terminal).
    Exec(kubectl::pods::ExecArgs),
    /// Make a HorizontalPodAutoscaler for a Deployment, ReplicaSet or ReplicationController.
    Autoscale(kubectl::make::AutoscaleArgs),
    /// Edit an object in $KUBE_EDITOR / $EDITOR and save it back.
    Edit {
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// CPU and memory use of nodes or pods (from metrics.k8s.io).
    Top(kubectl::top::TopArgs),
    /// Show an object's details and the events about it.
    Describe {
        /// TYPE [NAME...] or TYPE/NAME...
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Mark a node unschedulable.
    Cordon { node: String },
    /// Mark a node schedulable again.
    Uncordon { node: String },
    /// Cordon a node and evict its pods.
    Drain(kubectl::nodes::DrainArgs),
    /// Approve or deny CertificateSigningRequests: `certificate approve|deny NAME... [--force]`.
    #[command(subcommand)]
    Certificate(kubectl::certificate::CertificateCmd),
    /// Manage rollouts of Deployments, DaemonSets and StatefulSets: status, history, undo,
    /// restart (and pause, resume for Deployments).
    #[command(subcommand)]
    Rollout(kubectl::rollout::RolloutCmd),
    /// The client's and the server's versions.
    Version,
    /// The resource types the server serves.
    ApiResources,
    /// Where the control plane runs.
    ClusterInfo,
    /// Inspect authorization: `auth can-i VERB TYPE[/NAME]`, `auth can-i --list`, `auth whoami`.
    #[command(subcommand)]
    Auth(kubectl::auth::AuthCmd),
    /// Read and switch kubeconfig contexts.
    #[command(subcommand)]
    Config(kubectl::config::ConfigCmd),
    /// Other kubectl commands: not implemented yet.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct CreateArgs {
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    #[command(subcommand)]
    sub: Option<kubectl::make::CreateSub>,
}

#[derive(Subcommand, Debug)]
enum SetCmd {
    /// Update containers' images: `set image deployment/web web=busybox:2` (`*` for all).
    Image {
        #[arg(required = true)]
        args: Vec<String>,
    },
}

fn main() {
    skiff_client::install_crypto_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let outcome = match cli.command {
        Command::Cluster(args) => cluster::run(args),
        Command::Config(cmd) => kubectl::config::run(&cli.globals, &cmd),
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "skiffctl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Other(words) => Err(anyhow::anyhow!(
            "\"{}\" is not implemented yet; use kubectl with the same kubeconfig",
            words.first().map(String::as_str).unwrap_or_default()
        )),
        command => run_remote(&cli.globals, command),
    };
    if let Err(e) = outcome {
        let text = format!("{e:#}");
        if text.starts_with("Error from server") || e.is::<kubectl::Unprefixed>() {
            eprintln!("{text}");
        } else {
            eprintln!("error: {text}");
        }
        std::process::exit(1);
    }
}

/// The commands that talk to the apiserver.
fn run_remote(globals: &kubectl::Globals, command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let session = kubectl::Session::connect(globals).await?;
        match command {
            Command::Get(args) => kubectl::get::run(&session, &args).await,
            Command::Create(CreateArgs { sub: Some(sub), .. }) => {
                kubectl::make::create(&session, &sub).await
            }
            Command::Create(CreateArgs { files, sub: None }) => {
                if files.is_empty() {
                    anyhow::bail!("must specify one of -f and -k, or a kind to create (deployment, namespace, configmap, secret, service, serviceaccount, token, role, clusterrole, rolebinding, clusterrolebinding)");
                }
                kubectl::write::create(&session, &files).await
            }
            Command::Run(args) => kubectl::make::run(&session, &args).await,
            Command::Expose(args) => kubectl::make::expose(&session, &args).await,
            Command::Patch { args, patch, type_ } => {
                kubectl::make::patch(&session, &args, &patch, &type_).await
            }
            Command::Replace { files } => kubectl::make::replace(&session, &files).await,
            Command::Wait(args) => kubectl::make::wait(&session, &args).await,
            Command::Apply { files, server_side } => {
                kubectl::write::apply(&session, &files, server_side).await
            }
            Command::Delete(args) => kubectl::write::delete(&session, &args).await,
            Command::Scale { args, replicas } => {
                kubectl::write::scale(&session, &args, replicas).await
            }
            Command::Label { args, overwrite } => {
                kubectl::write::set_metadata(&session, "labels", &args, overwrite).await
            }
            Command::Annotate { args, overwrite } => {
                kubectl::write::set_metadata(&session, "annotations", &args, overwrite).await
            }
            Command::Set(SetCmd::Image { args }) => {
                kubectl::write::set_image(&session, &args).await
            }
            Command::Rollout(cmd) => kubectl::rollout::run(&session, &cmd).await,
            Command::Auth(kubectl::auth::AuthCmd::CanI(args)) => {
                let code = kubectl::auth::can_i(&session, &args).await?;
                if code != 0 {
                    std::process::exit(code);
                }
                Ok(())
            }
            Command::Auth(kubectl::auth::AuthCmd::Whoami { output }) => {
                kubectl::auth::whoami(&session, output.as_deref()).await
            }
            Command::Logs(args) => kubectl::pods::logs(&session, &args).await,
            Command::Autoscale(args) => kubectl::make::autoscale(&session, &args).await,
            Command::Edit { args } => kubectl::make::edit(&session, &args).await,
            Command::Top(args) => kubectl::top::run(&session, &args).await,
            Command::Describe { args } => kubectl::describe::run(&session, &args).await,
            Command::Cordon { node } => kubectl::nodes::cordon(&session, &node, true).await,
            Command::Uncordon { node } => kubectl::nodes::cordon(&session, &node, false).await,
            Command::Drain(args) => kubectl::nodes::drain(&session, &args).await,
            Command::Certificate(cmd) => kubectl::certificate::run(&session, &cmd).await,
            Command::Exec(args) => {
                let code = kubectl::pods::exec(&session, &args).await?;
                if code != 0 {
                    std::process::exit(code);
                }
                Ok(())
            }
            Command::Version => {
                println!("Client Version: skiffctl v{}", env!("CARGO_PKG_VERSION"));
                let v = session
                    .client
                    .apiserver_version()
                    .await
                    .map_err(|e| kubectl::explain(e, &session.server))?;
                println!("Server Version: {}", v.git_version);
                Ok(())
            }
            Command::ApiResources => {
                let mut all = kubectl::resources::discover(&session).await?;
                all.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
                let mut lines = vec![vec![
                    "NAME".to_string(),
                    "SHORTNAMES".into(),
                    "APIVERSION".into(),
                    "NAMESPACED".into(),
                    "KIND".into(),
                ]];
                for r in all {
                    lines.push(vec![
                        r.plural.clone(),
                        r.short_names.join(","),
                        r.api_version(),
                        r.namespaced.to_string(),
                        r.kind.clone(),
                    ]);
                }
                print!("{}", kubectl::get::tabulate(&lines));
                Ok(())
            }
            Command::ClusterInfo => {
                session
                    .client
                    .apiserver_version()
                    .await
                    .map_err(|e| kubectl::explain(e, &session.server))?;
                println!("Kubernetes control plane is running at {}", session.server);
                Ok(())
            }
            Command::Cluster(_)
            | Command::Config(_)
            | Command::Completion { .. }
            | Command::Other(_) => unreachable!(),
        }
    })
}
