//! The kubectl-like commands: the same flags, kubeconfig handling and output as kubectl, on
//! kube-rs (client, kubeconfig) and the apiserver's discovery and server-side Tables.

pub mod auth;
pub mod certificate;
pub mod config;
pub mod describe;
pub mod get;
pub mod jsonpath;
pub mod make;
pub mod nodes;
pub mod objects;
pub mod pods;
pub mod rbac;
pub mod resources;
pub mod rollout;
pub mod top;
pub mod write;
pub mod yaml;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Flags every command takes (anywhere on the line, as kubectl's).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Globals {
    /// Path to the kubeconfig file (default: $KUBECONFIG, several files merged, else
    /// ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// How long to wait for one request: 0 (no limit), 30s, 1m.
    #[arg(long, global = true)]
    pub request_timeout: Option<String>,
    /// Log level; 6 and above log each request.
    #[arg(short = 'v', long = "v", global = true, default_value_t = 0)]
    pub verbosity: u8,
    /// Username to impersonate for the operation (a user or `system:serviceaccount:NS:NAME`).
    #[arg(long = "as", global = true)]
    pub as_user: Option<String>,
    /// Group to impersonate for the operation; repeat it for several groups.
    #[arg(long = "as-group", global = true)]
    pub as_group: Vec<String>,
    /// UID to impersonate for the operation.
    #[arg(long = "as-uid", global = true)]
    pub as_uid: Option<String>,
}

/// A connection to the cluster the kubeconfig names.
pub struct Session {
    pub client: kube::Client,
    /// The namespace commands act in (`-n`, else the context's, else `default`).
    pub namespace: String,
    /// Whether `-n` named the namespace (kubectl then writes it into generated objects).
    pub namespace_given: bool,
    pub server: String,
    pub verbosity: u8,
}

/// The merged kubeconfig: `--kubeconfig`, else `$KUBECONFIG` (merged), else `~/.kube/config`.
pub fn load_kubeconfig(explicit: Option<&std::path::Path>) -> anyhow::Result<Kubeconfig> {
    if let Some(path) = explicit {
        return Kubeconfig::read_from(path)
            .with_context(|| format!("reading the kubeconfig {}", path.display()));
    }
    if let Some(kc) = Kubeconfig::from_env().context("reading $KUBECONFIG")? {
        return Ok(kc);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let path = home.join(".kube").join("config");
    if !path.exists() {
        return Err(anyhow!(
            "no kubeconfig: none at {}, no $KUBECONFIG and no --kubeconfig (`skiffctl cluster create` writes one)",
            path.display()
        ));
    }
    Kubeconfig::read_from(&path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))
}

/// `--as`, `--as-group` and `--as-uid` as impersonation headers (they replace the kubeconfig's
/// `as`/`as-groups`, as kubectl's flags do). Groups or a UID need a user, as client-go checks
/// (naming the kubeconfig user in its message).
fn impersonate(
    auth: &mut kube::config::AuthInfo,
    g: &Globals,
    kubeconfig_user: &str,
) -> anyhow::Result<()> {
    if g.as_user.is_none() && (!g.as_group.is_empty() || g.as_uid.is_some()) {
        anyhow::bail!(
            "requesting uid, groups or user-extra for {kubeconfig_user} without impersonating a user"
        );
    }
    if let Some(user) = &g.as_user {
        auth.impersonate = Some(user.clone());
        auth.impersonate_groups = (!g.as_group.is_empty()).then(|| g.as_group.clone());
        auth.impersonate_uid = g.as_uid.clone();
    }
    Ok(())
}

fn parse_timeout(s: &str) -> anyhow::Result<Option<Duration>> {
    if s == "0" {
        return Ok(None);
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Some(Duration::from_secs(n)));
    }
    skiff_common::parse_duration(s)
        .map(Some)
        .map_err(|e| anyhow!("invalid --request-timeout: {e}"))
}

impl Session {
    pub async fn connect(g: &Globals) -> anyhow::Result<Session> {
        let kc = load_kubeconfig(g.kubeconfig.as_deref())?;
        let options = KubeConfigOptions {
            context: g.context.clone(),
            ..Default::default()
        };
        let context = g.context.clone().or_else(|| kc.current_context.clone());
        let kubeconfig_user = kc
            .contexts
            .iter()
            .find(|c| Some(&c.name) == context.as_ref())
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        let mut config = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        impersonate(&mut config.auth_info, g, &kubeconfig_user)?;
        if let Some(t) = &g.request_timeout {
            let timeout = parse_timeout(t)?;
            config.read_timeout = timeout;
            config.connect_timeout = timeout;
        }
        let namespace = g
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let client = kube::Client::try_from(config)?;
        Ok(Session {
            client,
            namespace,
            namespace_given: g.namespace.is_some(),
            server,
            verbosity: g.verbosity,
        })
    }

    /// GET `path` (with `accept`), as JSON; errors as kubectl prints them.
    pub async fn get_json(&self, path: &str, accept: &str) -> anyhow::Result<serde_json::Value> {
        let text = self.request(http::Method::GET, path, accept, None).await?;
        Ok(serde_json::from_str(&text)?)
    }

    /// `method` on `path` with `body` (as `content_type`); the response as JSON (null when it
    /// is not JSON). Errors as kubectl prints them.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let body = match body {
            Some(b) => Some((content_type, serde_json::to_vec(b)?)),
            None => None,
        };
        let text = self.request(method, path, "application/json", body).await?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    async fn request(
        &self,
        method: http::Method,
        path: &str,
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<String> {
        if self.verbosity >= 6 {
            eprintln!("{method} {}{path}", self.server);
        }
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::ACCEPT, accept);
        let bytes = match body {
            Some((content_type, bytes)) => {
                req = req.header(http::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        self.client
            .request_text(req.body(bytes)?)
            .await
            .map_err(|e| explain(e, &self.server))
    }
}

/// An error kubectl prints as it is, without `error: ` before it (its messages for
/// resource types discovery does not know, in the generators).
#[derive(Debug)]
pub struct Unprefixed(pub String);

impl std::fmt::Display for Unprefixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unprefixed {}

/// An error as kubectl words it: `Error from server (NotFound): pods "x" not found`, or a
/// plain sentence for a server that cannot be reached.
pub fn explain(e: kube::Error, server: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                "Unknown".to_string()
            } else {
                status.reason.clone()
            };
            anyhow!("Error from server ({reason}): {}", status.message)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            anyhow!("Unable to connect to the server {server}: {e}; is the cluster running?")
        }
        other => anyhow!("{other}"),
    }
}

/// `v` with every object's keys in order, as Go marshals maps (and so as kubectl prints and
/// records objects).
pub fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// JSON text with `<`, `>` and `&` escaped, as Go's encoder writes them (they can only occur
/// inside strings).
pub fn go_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}
