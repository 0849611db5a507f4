//! The commands that change objects: `create -f`, `apply -f` (client-side, with kubectl's
//! `last-applied-configuration` annotation and a three-way merge, or `--server-side`),
//! `delete`, `scale`, `label`, `annotate` and `set image`, printing what kubectl prints.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Map, Value, json};

use super::Session;
use super::resources::{self, Resource};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The documents in `-f` arguments: files, directories (their .yaml, .yml and .json files) or
/// `-` (stdin); multi-document YAML and `List`s are split into objects.
pub fn read_manifests(files: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut texts = Vec::new();
    for f in files {
        if f == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            texts.push(("stdin".to_string(), s));
        } else if f.starts_with("http://") || f.starts_with("https://") {
            bail!("reading manifests from URLs is not supported: {f}");
        } else if Path::new(f).is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(f)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            entries.sort();
            for p in entries {
                texts.push((p.display().to_string(), std::fs::read_to_string(&p)?));
            }
        } else {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow!("the path \"{f}\" does not exist or cannot be read: {e}"))?;
            texts.push((f.clone(), text));
        }
    }
    let mut out = Vec::new();
    for (name, text) in texts {
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| anyhow!("error parsing {name}: {e}"))?;
            if v.is_null() {
                continue;
            }
            if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) && v["items"].is_array() {
                out.extend(v["items"].as_array().cloned().unwrap_or_default());
            } else {
                if v["kind"].as_str().is_none() || v["apiVersion"].as_str().is_none() {
                    bail!("error validating {name}: an object has no apiVersion or kind");
                }
                out.push(v);
            }
        }
    }
    if out.is_empty() {
        bail!("no objects passed to apply");
    }
    Ok(out)
}

/// The resource a manifest's `apiVersion` and `kind` name.
fn resource_of<'a>(all: &'a [Resource], obj: &Value) -> anyhow::Result<&'a Resource> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    all.iter()
        .find(|r| r.group == group && r.kind == kind && r.version == version)
        .or_else(|| all.iter().find(|r| r.group == group && r.kind == kind))
        .ok_or_else(|| {
            anyhow!("resource mapping not found for kind \"{kind}\" in version \"{api_version}\"; ensure the resource is served")
        })
}

/// An object the command acts on.
pub struct Target<'a> {
    pub resource: &'a Resource,
    pub namespace: Option<String>,
    pub name: String,
}

impl Target<'_> {
    fn path(&self) -> String {
        format!(
            "{}/{}",
            self.resource.path(self.namespace.as_deref()),
            self.name
        )
    }

    /// `deployment.apps/web`
    fn slash(&self) -> String {
        format!("{}/{}", self.resource.qualified_kind(), self.name)
    }

    /// `deployment.apps "web"`
    fn quoted(&self) -> String {
        format!("{} \"{}\"", self.resource.qualified_kind(), self.name)
    }
}

/// `TYPE NAME...` or `TYPE/NAME...` → targets in `namespace`.
pub fn targets<'a>(
    all: &'a [Resource],
    words: &[String],
    namespace: &str,
) -> anyhow::Result<Vec<Target<'a>>> {
    let mut out = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if words.iter().any(|w| w.contains('/')) {
        for w in words {
            let (k, n) = w.split_once('/').ok_or_else(|| {
                anyhow!("arguments in resource/name form must have a single resource and name")
            })?;
            pairs.push((k.to_string(), n.to_string()));
        }
    } else if let Some((kind, names)) = words.split_first() {
        if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        for n in names {
            pairs.push((kind.clone(), n.clone()));
        }
    }
    for (kind, name) in pairs {
        let r = resources::resolve(all, &kind)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the server doesn't have a resource type \"{kind}\""))?;
        out.push(Target {
            resource: r,
            namespace: r.namespaced.then(|| namespace.to_string()),
            name,
        });
    }
    Ok(out)
}

fn target_of<'a>(all: &'a [Resource], obj: &Value, default_ns: &str) -> anyhow::Result<Target<'a>> {
    let r = resource_of(all, obj)?;
    let name = obj["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("an object of kind {} has no metadata.name", r.kind))?;
    Ok(Target {
        resource: r,
        namespace: r.namespaced.then(|| {
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or(default_ns)
                .to_string()
        }),
        name: name.to_string(),
    })
}

/// Runs `each` for every item, printing errors as they come; fails at the end if any did.
async fn for_each<T>(
    items: Vec<T>,
    mut each: impl AsyncFnMut(T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed: Option<anyhow::Error> = None;
    for item in items {
        if let Err(e) = each(item).await
            && let Some(prev) = failed.replace(e)
        {
            eprintln!("{prev}");
        }
    }
    failed.map_or(Ok(()), Err)
}

pub async fn create(s: &Session, files: &[String]) -> anyhow::Result<()> {
    let docs = read_manifests(files)?;
    let all = resources::discover(s).await?;
    for_each(docs, async |doc| {
        let t = target_of(&all, &doc, &s.namespace)?;
        let path = t.resource.path(t.namespace.as_deref());
        s.send(http::Method::POST, &path, "application/json", Some(&doc))
            .await?;
        println!("{} created", t.slash());
        Ok(())
    })
    .await
}

/// kubectl's three-way JSON merge patch: what `modified` sets and `current` lacks or differs
/// in, plus nulls for what `original` (the last applied configuration) had and `modified` no
/// longer has. Lists are replaced whole.
pub fn three_way(original: &Value, modified: &Value, current: &Value) -> Map<String, Value> {
    let mut patch = Map::new();
    let empty = Map::new();
    let (Some(m), c) = (modified.as_object(), current.as_object().unwrap_or(&empty)) else {
        return patch;
    };
    let o = original.as_object().unwrap_or(&empty);
    for (k, mv) in m {
        match (mv, c.get(k)) {
            (Value::Object(_), Some(cv @ Value::Object(_))) => {
                let sub = three_way(o.get(k).unwrap_or(&Value::Null), mv, cv);
                if !sub.is_empty() {
                    patch.insert(k.clone(), Value::Object(sub));
                }
            }
            // A list the server has only added defaults to (containers' imagePullPolicy, ...)
            // is what was applied.
            (_, Some(cv)) if subset(mv, cv) => {}
            _ => {
                patch.insert(k.clone(), mv.clone());
            }
        }
    }
    for k in o.keys() {
        if !m.contains_key(k) && c.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    patch
}

/// Compact JSON as Go's encoder writes it.
fn go_json(v: &Value) -> anyhow::Result<String> {
    Ok(super::go_escape(&serde_json::to_string(v)?))
}

/// Whether `current` holds everything `wanted` says (and maybe more: defaults).
fn subset(wanted: &Value, current: &Value) -> bool {
    match (wanted, current) {
        (Value::Object(w), Value::Object(c)) => w
            .iter()
            .all(|(k, wv)| c.get(k).is_some_and(|cv| subset(wv, cv))),
        (Value::Array(w), Value::Array(c)) => {
            w.len() == c.len() && w.iter().zip(c).all(|(a, b)| subset(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => wanted == current,
    }
}

pub async fn apply(s: &Session, files: &[String], server_side: bool) -> anyhow::Result<()> {
    let docs = read_manifests(files)?;
    let all = resources::discover(s).await?;
    for_each(docs, async |doc| {
        let t = target_of(&all, &doc, &s.namespace)?;
        if server_side {
            let path = format!("{}?fieldManager=kubectl&fieldValidation=Strict", t.path());
            s.send(
                http::Method::PATCH,
                &path,
                "application/apply-patch+yaml",
                Some(&doc),
            )
            .await?;
            println!("{} serverside-applied", t.slash());
            return Ok(());
        }
        // The configuration as applied, recorded on the object for the next apply exactly
        // as kubectl records it (its namespace filled in, keys sorted, compact, Go's
        // escaping), so that either tool sees the other's as its own.
        let mut modified = doc.clone();
        if let Some(ns) = &t.namespace {
            modified["metadata"]["namespace"] = Value::String(ns.clone());
        }
        if !modified["metadata"]["annotations"].is_object() {
            modified["metadata"]["annotations"] = json!({});
        }
        if let Some(a) = modified["metadata"]["annotations"].as_object_mut() {
            a.shift_remove(LAST_APPLIED);
        }
        let recorded = go_json(&super::sorted(modified.clone()))?;
        modified["metadata"]["annotations"][LAST_APPLIED] = Value::String(recorded + "\n");
        let current = match s
            .send(http::Method::GET, &t.path(), "application/json", None)
            .await
        {
            Ok(c) => c,
            Err(e) if e.to_string().contains("(NotFound)") => {
                let path = t.resource.path(t.namespace.as_deref());
                s.send(
                    http::Method::POST,
                    &path,
                    "application/json",
                    Some(&modified),
                )
                .await?;
                println!("{} created", t.slash());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let original: Value = current["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let patch = three_way(&original, &modified, &current);
        if patch.is_empty() {
            println!("{} unchanged", t.slash());
            return Ok(());
        }
        s.send(
            http::Method::PATCH,
            &t.path(),
            "application/merge-patch+json",
            Some(&Value::Object(patch)),
        )
        .await?;
        println!("{} configured", t.slash());
        Ok(())
    })
    .await
}

#[derive(clap::Args, Debug, Clone)]
pub struct DeleteArgs {
    /// TYPE NAME..., TYPE/NAME..., or TYPE with -l or --all.
    pub args: Vec<String>,
    /// Delete what these manifests (files, directories, `-`) describe.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Every object of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Seconds of grace for pods (-1: the pod's own).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// Deleting an object that is not there is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

pub async fn delete(s: &Session, a: &DeleteArgs) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    let mut chosen: Vec<Target> = Vec::new();
    if !a.files.is_empty() {
        for doc in read_manifests(&a.files)? {
            chosen.push(target_of(&all, &doc, &s.namespace)?);
        }
    } else if a.selector.is_some() || a.all {
        let Some(kinds) = a.args.first() else {
            bail!("you must specify the type of resource to delete");
        };
        for kind in kinds.split(',') {
            for r in resources::resolve(&all, kind)? {
                let mut path = r.path(Some(&s.namespace));
                if let Some(l) = &a.selector {
                    path.push_str(&format!(
                        "?{}",
                        form_urlencoded::Serializer::new(String::new())
                            .append_pair("labelSelector", l)
                            .finish()
                    ));
                }
                let list = s.get_json(&path, "application/json").await?;
                for item in list["items"].as_array().into_iter().flatten() {
                    chosen.push(Target {
                        resource: r,
                        namespace: r.namespaced.then(|| s.namespace.clone()),
                        name: item["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
            }
        }
        if chosen.is_empty() {
            println!("No resources found");
            return Ok(());
        }
    } else {
        if a.args.is_empty() {
            bail!("You must provide one or more resources by argument or filename.");
        }
        chosen = targets(&all, &a.args, &s.namespace)?;
    }
    let mut body =
        json!({ "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background" });
    if a.grace_period >= 0 {
        body["gracePeriodSeconds"] = json!(a.grace_period);
    }
    let mut deleted = Vec::new();
    let outcome = for_each(chosen, async |t| {
        match s
            .send(
                http::Method::DELETE,
                &t.path(),
                "application/json",
                Some(&body),
            )
            .await
        {
            Ok(_) => {
                println!("{} deleted", t.quoted());
                deleted.push(t.path());
                Ok(())
            }
            Err(e) if a.ignore_not_found && e.to_string().contains("(NotFound)") => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await;
    if a.wait {
        let deadline = Instant::now() + Duration::from_secs(300);
        for path in deleted {
            while s.get_json(&path, "application/json").await.is_ok() {
                if Instant::now() > deadline {
                    bail!("timed out waiting for {path} to be deleted");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    outcome
}

pub async fn scale(s: &Session, words: &[String], replicas: i64) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    let ts = targets(&all, words, &s.namespace)?;
    for_each(ts, async |t| {
        let path = format!("{}/scale", t.path());
        s.send(
            http::Method::PATCH,
            &path,
            "application/merge-patch+json",
            Some(&json!({ "spec": { "replicas": replicas } })),
        )
        .await?;
        println!("{} scaled", t.slash());
        Ok(())
    })
    .await
}

/// `label`/`annotate`: `key=value` sets, `key-` removes; changing a value needs `--overwrite`.
pub async fn set_metadata(
    s: &Session,
    field: &str,
    words: &[String],
    overwrite: bool,
) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    let split = words
        .iter()
        .position(|w| w.contains('=') || (w.ends_with('-') && !w.contains('/')))
        .ok_or_else(|| {
            anyhow!(
                "at least one {} update is required",
                if field == "labels" {
                    "label"
                } else {
                    "annotation"
                }
            )
        })?;
    let (objs, changes) = words.split_at(split);
    let mut set: Map<String, Value> = Map::new();
    for c in changes {
        if let Some((k, v)) = c.split_once('=') {
            set.insert(k.to_string(), Value::String(v.to_string()));
        } else if let Some(k) = c.strip_suffix('-') {
            set.insert(k.to_string(), Value::Null);
        } else {
            bail!("invalid {field} spec: {c}");
        }
    }
    let ts = targets(&all, objs, &s.namespace)?;
    let verb = if field == "labels" {
        "labeled"
    } else {
        "annotated"
    };
    for_each(ts, async |t| {
        let current = s
            .send(http::Method::GET, &t.path(), "application/json", None)
            .await?;
        if !overwrite {
            for (k, v) in &set {
                if let Some(old) = current["metadata"][field][k].as_str()
                    && v.as_str().is_some_and(|new| new != old)
                {
                    bail!("'{k}' already has a value ({old}), and --overwrite is false");
                }
            }
        }
        s.send(
            http::Method::PATCH,
            &t.path(),
            "application/merge-patch+json",
            Some(&json!({ "metadata": { field: set } })),
        )
        .await?;
        println!("{} {verb}", t.slash());
        Ok(())
    })
    .await
}

/// `set image TYPE/NAME container=image...`
pub async fn set_image(s: &Session, words: &[String]) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    let split = words
        .iter()
        .position(|w| w.contains('='))
        .ok_or_else(|| anyhow!("at least one image update is required"))?;
    let (objs, changes) = words.split_at(split);
    let ts = targets(&all, objs, &s.namespace)?;
    for_each(ts, async |t| {
        let current = s
            .send(http::Method::GET, &t.path(), "application/json", None)
            .await?;
        let pod_spec_path: &[&str] = if t.resource.kind == "Pod" {
            &["spec"]
        } else if t.resource.kind == "CronJob" {
            &["spec", "jobTemplate", "spec", "template", "spec"]
        } else {
            &["spec", "template", "spec"]
        };
        let mut spec = &current;
        for p in pod_spec_path {
            spec = &spec[*p];
        }
        let names: Vec<&str> = ["initContainers", "containers"]
            .iter()
            .flat_map(|f| spec[*f].as_array().into_iter().flatten())
            .filter_map(|c| c["name"].as_str())
            .collect();
        let mut containers = Vec::new();
        for c in changes {
            let (name, image) = c.split_once('=').context("container=image")?;
            if name == "*" {
                for n in &names {
                    containers.push(json!({ "name": n, "image": image }));
                }
            } else if names.contains(&name) {
                containers.push(json!({ "name": name, "image": image }));
            } else {
                bail!("unable to find container named \"{name}\"");
            }
        }
        let mut patch = json!({ "containers": containers });
        for p in pod_spec_path.iter().rev() {
            patch = json!({ *p: patch });
        }
        s.send(
            http::Method::PATCH,
            &t.path(),
            "application/strategic-merge-patch+json",
            Some(&patch),
        )
        .await?;
        println!("{} image updated", t.slash());
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_way_merge_sets_changes_and_removes_what_was_dropped() {
        let original =
            json!({"metadata": {"labels": {"a": "1", "gone": "x"}}, "spec": {"replicas": 2}});
        let modified =
            json!({"metadata": {"labels": {"a": "2"}}, "spec": {"replicas": 2, "paused": true}});
        let current = json!({"metadata": {"labels": {"a": "1", "gone": "x", "other": "kept"}, "uid": "u"},
                             "spec": {"replicas": 5, "strategy": {}}});
        let patch = three_way(&original, &modified, &current);
        assert_eq!(
            Value::Object(patch),
            json!({"metadata": {"labels": {"a": "2", "gone": null}}, "spec": {"replicas": 2, "paused": true}})
        );
        // Lists the server added defaults to are unchanged.
        let applied = json!({"spec": {"containers": [{"name": "a", "image": "i"}]}});
        let defaulted = json!({"spec": {"containers": [{"name": "a", "image": "i", "imagePullPolicy": "IfNotPresent"}]}});
        assert!(three_way(&applied, &applied, &defaulted).is_empty());
        let changed = json!({"spec": {"containers": [{"name": "a", "image": "j"}]}});
        assert_eq!(
            Value::Object(three_way(&applied, &changed, &defaulted)),
            json!({"spec": {"containers": [{"name": "a", "image": "j"}]}})
        );
        // Nothing to do.
        assert!(three_way(&modified, &modified, &json!({"metadata": {"labels": {"a": "2"}}, "spec": {"replicas": 2, "paused": true}})).is_empty());
    }

    #[test]
    fn manifests_split_documents_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.yaml");
        std::fs::write(
            &f,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n",
        )
        .unwrap();
        let docs = read_manifests(&[f.display().to_string()]).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "Secret");
        std::fs::write(&f, "metadata: {name: x}\n").unwrap();
        assert!(read_manifests(&[f.display().to_string()]).is_err());
        assert!(read_manifests(&["/nonexistent.yaml".into()]).is_err());
    }
}
