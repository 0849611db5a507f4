//! Writing a cluster's credentials into a kubeconfig file the way kind does: a cluster, a user
//! and a context all named `skiff-NAME`, merged into the file (other entries untouched) and made
//! the current context; removed again by `cluster delete`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use serde_yaml::{Mapping, Value};

/// The file to write to: `--kubeconfig`, else the first file in `$KUBECONFIG`, else
/// `~/.kube/config`.
pub fn target(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".kube").join("config")
}

fn load(path: &Path) -> anyhow::Result<Mapping> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
    };
    if text.trim().is_empty() {
        let mut m = Mapping::new();
        m.insert("apiVersion".into(), "v1".into());
        m.insert("kind".into(), "Config".into());
        m.insert("preferences".into(), Value::Mapping(Mapping::new()));
        return Ok(m);
    }
    match serde_yaml::from_str(&text) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(_) => Err(anyhow!("{} is not a kubeconfig", path.display())),
        Err(e) => Err(anyhow!("{} is not a kubeconfig: {e}", path.display())),
    }
}

fn save(path: &Path, config: &Mapping) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        skiff_common::pki::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_yaml::to_string(config)?;
    let tmp = path.with_extension("skiff-tmp");
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The list under `key`, without the entries named `name`.
fn without(config: &mut Mapping, key: &str, name: &str) -> Vec<Value> {
    let list = match config.remove(key) {
        Some(Value::Sequence(s)) => s,
        _ => Vec::new(),
    };
    list.into_iter()
        .filter(|e| e.get("name").and_then(Value::as_str) != Some(name))
        .collect()
}

fn first_entry(source: &Mapping, key: &str, field: &str) -> anyhow::Result<Value> {
    source
        .get(key)
        .and_then(Value::as_sequence)
        .and_then(|s| s.first())
        .and_then(|e| e.get(field))
        .cloned()
        .ok_or_else(|| anyhow!("the apiserver's kubeconfig has no {key}[0].{field}"))
}

fn named(name: &str, field: &str, value: Value) -> Value {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert(field.into(), value);
    Value::Mapping(m)
}

/// Merges the first cluster and user of the kubeconfig at `source` into `path` as context
/// `context`, and makes it current.
pub fn merge(source: &Path, path: &Path, context: &str) -> anyhow::Result<()> {
    let src = load(source)?;
    let cluster = first_entry(&src, "clusters", "cluster")?;
    let user = first_entry(&src, "users", "user")?;
    let mut config = load(path)?;
    let mut clusters = without(&mut config, "clusters", context);
    let mut users = without(&mut config, "users", context);
    let mut contexts = without(&mut config, "contexts", context);
    clusters.push(named(context, "cluster", cluster));
    users.push(named(context, "user", user));
    let mut ctx = Mapping::new();
    ctx.insert("cluster".into(), context.into());
    ctx.insert("user".into(), context.into());
    contexts.push(named(context, "context", Value::Mapping(ctx)));
    config.insert("clusters".into(), Value::Sequence(clusters));
    config.insert("users".into(), Value::Sequence(users));
    config.insert("contexts".into(), Value::Sequence(contexts));
    config.insert("current-context".into(), context.into());
    save(path, &config)
}

/// Removes context `context` (and its cluster and user) from `path`; the current context is
/// unset if it was that one. A missing file is fine.
pub fn remove(path: &Path, context: &str) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut config = load(path)?;
    for key in ["clusters", "users", "contexts"] {
        let kept = without(&mut config, key, context);
        config.insert(key.into(), Value::Sequence(kept));
    }
    if config.get("current-context").and_then(Value::as_str) == Some(context) {
        config.insert("current-context".into(), "".into());
    }
    save(path, &config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: https://172.28.0.1:40000
    certificate-authority-data: Q0E=
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: skiff
  context:
    cluster: skiff
    user: admin
current-context: skiff
";

    #[test]
    fn merges_beside_other_contexts_replaces_its_own_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("admin.kubeconfig");
        std::fs::write(&src, ADMIN).unwrap();
        let path = dir.path().join("kube").join("config");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://127.0.0.1:1}\nusers:\n- name: other\n  user: {token: t}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\n",
        )
        .unwrap();
        merge(&src, &path, "skiff-dev").unwrap();
        merge(&src, &path, "skiff-dev").unwrap();
        let got: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(got["current-context"], "skiff-dev");
        let contexts = got["contexts"].as_sequence().unwrap();
        assert_eq!(contexts.len(), 2, "replaced, not duplicated");
        assert_eq!(
            got["clusters"][1]["cluster"]["server"],
            "https://172.28.0.1:40000"
        );
        assert_eq!(got["users"][1]["user"]["client-key-data"], "S0VZ");
        assert_eq!(got["contexts"][1]["context"]["user"], "skiff-dev");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        remove(&path, "skiff-dev").unwrap();
        let got: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(got["current-context"], "");
        assert_eq!(got["contexts"].as_sequence().unwrap().len(), 1);
        assert_eq!(got["contexts"][0]["name"], "other");
    }

    #[test]
    fn creates_the_file_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("admin.kubeconfig");
        std::fs::write(&src, ADMIN).unwrap();
        let path = dir.path().join("new").join("config");
        merge(&src, &path, "skiff-x").unwrap();
        let got: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(got["kind"], "Config");
        assert_eq!(got["current-context"], "skiff-x");
    }
}
