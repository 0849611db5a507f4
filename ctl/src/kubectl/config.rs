//! `skiffctl config`: reading and switching kubeconfig contexts, as `kubectl config` does.

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;

use super::{Globals, load_kubeconfig};

#[derive(Subcommand, Debug, Clone)]
pub enum ConfigCmd {
    /// Print the current context's name.
    CurrentContext,
    /// List the contexts (the current one marked with *).
    GetContexts,
    /// Make a context the current one.
    UseContext { name: String },
    /// Print the merged kubeconfig (certificate and key data left out).
    View,
    /// Create or change a context: `set-context NAME|--current [--namespace=NS] [--cluster=C]
    /// [--user=U]`.
    SetContext {
        name: Option<String>,
        #[arg(long)]
        current: bool,
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
}

pub fn run(g: &Globals, cmd: &ConfigCmd) -> anyhow::Result<()> {
    let kc = load_kubeconfig(g.kubeconfig.as_deref())?;
    match cmd {
        ConfigCmd::CurrentContext => match &kc.current_context {
            Some(c) if !c.is_empty() => println!("{c}"),
            _ => bail!("current-context is not set"),
        },
        ConfigCmd::GetContexts => {
            let mut lines = vec![vec![
                "CURRENT".to_string(),
                "NAME".into(),
                "CLUSTER".into(),
                "AUTHINFO".into(),
                "NAMESPACE".into(),
            ]];
            for c in &kc.contexts {
                let ctx = c.context.clone().unwrap_or_default();
                lines.push(vec![
                    if kc.current_context.as_deref() == Some(c.name.as_str()) {
                        "*".into()
                    } else {
                        String::new()
                    },
                    c.name.clone(),
                    ctx.cluster,
                    ctx.user.unwrap_or_default(),
                    ctx.namespace.unwrap_or_default(),
                ]);
            }
            print!("{}", super::get::tabulate(&lines));
        }
        ConfigCmd::UseContext { name } => {
            if !kc.contexts.iter().any(|c| c.name == *name) {
                bail!("no context exists with the name: \"{name}\"");
            }
            let path = crate::cluster::kubeconfig_target(g.kubeconfig.as_deref());
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)
                .map_err(|e| anyhow!("{} is not a kubeconfig: {e}", path.display()))?;
            doc["current-context"] = serde_yaml::Value::String(name.clone());
            std::fs::write(&path, serde_yaml::to_string(&doc)?)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("Switched to context \"{name}\".");
        }
        ConfigCmd::SetContext {
            name,
            current,
            namespace,
            cluster,
            user,
        } => {
            let name = match (name, current) {
                (Some(n), false) => n.clone(),
                (None, true) => kc
                    .current_context
                    .clone()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| anyhow!("no current context is set"))?,
                _ => bail!("give a context name or --current"),
            };
            let path = crate::cluster::kubeconfig_target(g.kubeconfig.as_deref());
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut doc: serde_yaml::Value = if text.trim().is_empty() {
                serde_yaml::from_str("apiVersion: v1\nkind: Config\ncontexts: []\n")?
            } else {
                serde_yaml::from_str(&text)
                    .map_err(|e| anyhow!("{} is not a kubeconfig: {e}", path.display()))?
            };
            if !doc["contexts"].is_sequence() {
                doc["contexts"] = serde_yaml::Value::Sequence(Vec::new());
            }
            let contexts = doc["contexts"].as_sequence_mut().expect("a list");
            let existed = contexts
                .iter()
                .any(|c| c["name"].as_str() == Some(name.as_str()));
            if !existed {
                let mut entry = serde_yaml::Mapping::new();
                entry.insert("name".into(), name.clone().into());
                entry.insert(
                    "context".into(),
                    serde_yaml::Value::Mapping(Default::default()),
                );
                contexts.push(serde_yaml::Value::Mapping(entry));
            }
            let entry = contexts
                .iter_mut()
                .find(|c| c["name"].as_str() == Some(name.as_str()))
                .expect("just added");
            if !entry["context"].is_mapping() {
                entry["context"] = serde_yaml::Value::Mapping(Default::default());
            }
            for (key, value) in [
                ("namespace", namespace),
                ("cluster", cluster),
                ("user", user),
            ] {
                if let Some(v) = value {
                    entry["context"][key] = serde_yaml::Value::String(v.clone());
                }
            }
            std::fs::write(&path, serde_yaml::to_string(&doc)?)
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "Context \"{name}\" {}.",
                if existed { "modified" } else { "created" }
            );
        }
        ConfigCmd::View => {
            let mut doc = serde_json::to_value(&kc)?;
            for cluster in doc["clusters"].as_array_mut().into_iter().flatten() {
                if !cluster["cluster"]["certificate-authority-data"].is_null() {
                    cluster["cluster"]["certificate-authority-data"] = "DATA+OMITTED".into();
                }
            }
            // As kubectl: certificate and key data omitted, tokens redacted, and
            // `preferences: {}` always there.
            for user in doc["users"].as_array_mut().into_iter().flatten() {
                for (key, shown) in [
                    ("client-certificate-data", "DATA+OMITTED"),
                    ("client-key-data", "DATA+OMITTED"),
                    ("token", "REDACTED"),
                ] {
                    if !user["user"][key].is_null() {
                        user["user"][key] = shown.into();
                    }
                }
            }
            if let Some(m) = doc.as_object_mut()
                && m.get("preferences").is_none_or(serde_json::Value::is_null)
            {
                m.insert("preferences".into(), serde_json::json!({}));
            }
            print!("{}", super::yaml::to_string(&doc));
        }
    }
    Ok(())
}
