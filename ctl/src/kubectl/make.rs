//! The generators and small editors: `create deployment|job|cronjob|namespace|configmap|secret
//! generic|service` (and, through `rbac`, `create serviceaccount|token|role|clusterrole|
//! rolebinding|clusterrolebinding`), `run`, `expose`, `patch`, `replace -f` and `wait`, building the same
//! objects kubectl builds and printing what it prints.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use base64::Engine as _;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::Session;
use super::rbac;
use super::resources;
use super::write::targets;

#[derive(Subcommand, Debug, Clone)]
pub enum CreateSub {
    /// A Deployment running one image: `create deployment NAME --image=IMAGE [-- COMMAND...]`.
    Deployment {
        name: String,
        #[arg(long, required = true)]
        image: String,
        #[arg(long, default_value_t = 1)]
        replicas: i64,
        #[arg(long)]
        port: Option<i64>,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// A Job running one image to completion: `create job NAME --image=IMAGE [-- COMMAND...]`,
    /// or a run of a CronJob now: `create job NAME --from=cronjob/CRONJOB`.
    Job {
        name: String,
        #[arg(long)]
        image: Option<String>,
        /// The CronJob to take the Job's template from (`cronjob/NAME`).
        #[arg(long)]
        from: Option<String>,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// A CronJob: `create cronjob NAME --image=IMAGE --schedule='*/1 * * * *'
    /// [--restart=OnFailure|Never] [-- COMMAND...]`.
    #[command(alias = "cj")]
    Cronjob {
        name: String,
        #[arg(long, required = true)]
        image: String,
        /// A cron schedule (`*/1 * * * *`, `@hourly`).
        #[arg(long, required = true)]
        schedule: String,
        /// The Job's pods' restart policy: OnFailure or Never.
        #[arg(long, default_value = "OnFailure")]
        restart: String,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// A Namespace.
    #[command(alias = "ns")]
    Namespace { name: String },
    /// A ConfigMap from literals (`--from-literal=k=v`) and files (`--from-file=[k=]path`).
    #[command(alias = "cm")]
    Configmap {
        name: String,
        #[arg(long)]
        from_literal: Vec<String>,
        #[arg(long)]
        from_file: Vec<String>,
    },
    /// A Secret: `create secret generic NAME --from-literal=k=v`.
    Secret {
        #[command(subcommand)]
        kind: SecretKind,
    },
    /// A Service: `create service clusterip|nodeport NAME --tcp=PORT[:TARGET]`.
    #[command(alias = "svc")]
    Service {
        #[command(subcommand)]
        kind: ServiceKind,
    },
    /// A ServiceAccount.
    #[command(alias = "sa")]
    Serviceaccount(rbac::ServiceAccountArgs),
    /// A ServiceAccount token (TokenRequest), printed: `create token SA [--duration 10m]
    /// [--audience A]... [--bound-object-kind Pod --bound-object-name N]`.
    Token(rbac::TokenArgs),
    /// A Role with one rule: `create role NAME --verb=get,list --resource=pods,rs.apps
    /// [--resource-name=N]...`.
    Role(rbac::RoleArgs),
    /// A ClusterRole: `create clusterrole NAME --verb ... --resource ... [--non-resource-url
    /// /logs/*]`, or `--aggregation-rule k=v`.
    Clusterrole(rbac::ClusterRoleArgs),
    /// A RoleBinding: `create rolebinding NAME --role=R|--clusterrole=R [--user U]... [--group
    /// G]... [--serviceaccount NS:NAME]...`.
    Rolebinding(rbac::RoleBindingArgs),
    /// A ClusterRoleBinding: `create clusterrolebinding NAME --clusterrole=R [--user U]...
    /// [--group G]... [--serviceaccount NS:NAME]...`.
    Clusterrolebinding(rbac::ClusterRoleBindingArgs),
}

#[derive(Subcommand, Debug, Clone)]
pub enum SecretKind {
    Generic {
        name: String,
        #[arg(long)]
        from_literal: Vec<String>,
        #[arg(long)]
        from_file: Vec<String>,
        #[arg(long = "type")]
        type_: Option<String>,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum ServiceKind {
    Clusterip {
        name: String,
        #[arg(long, required = true)]
        tcp: Vec<String>,
    },
    Nodeport {
        name: String,
        #[arg(long, required = true)]
        tcp: Vec<String>,
        #[arg(long)]
        node_port: Option<i64>,
    },
}

/// The container name kubectl derives from an image: its last path part without the tag.
fn container_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    last.split(':').next().unwrap_or(last).to_string()
}

fn key_values(literals: &[String], files: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for l in literals {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid literal source {l}, expected key=value"))?;
        out.insert(k.to_string(), Value::String(v.to_string()));
    }
    for f in files {
        let (key, path) = match f.split_once('=') {
            Some((k, p)) => (k.to_string(), p.to_string()),
            None => (
                std::path::Path::new(f)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| f.clone()),
                f.clone(),
            ),
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| anyhow!("error reading {path}: {e}"))?;
        out.insert(key, Value::String(text));
    }
    Ok(out)
}

/// kubectl's CronJob: the Job template and its one container are named after the CronJob.
fn cronjob_object(
    name: &str,
    image: &str,
    schedule: &str,
    restart: &str,
    command: &[String],
) -> Value {
    let mut container = json!({ "name": name, "image": image, "resources": {} });
    if !command.is_empty() {
        container["command"] = json!(command);
    }
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": { "name": name },
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": { "name": name },
                "spec": {
                    "template": {
                        "metadata": {},
                        "spec": { "containers": [container], "restartPolicy": restart }
                    }
                }
            }
        }
    })
}

/// kubectl's manual run of a CronJob: its Job template under the new name, annotated
/// `cronjob.kubernetes.io/instantiate: manual`, with the template's labels and annotations,
/// and owned by the CronJob (a controller reference without blockOwnerDeletion, as kubectl's).
fn job_from_cronjob(name: &str, cronjob: &Value) -> Value {
    let template = &cronjob["spec"]["jobTemplate"];
    let mut annotations = Map::new();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), json!("manual"));
    if let Some(extra) = template["metadata"]["annotations"].as_object() {
        annotations.extend(extra.clone());
    }
    let mut metadata = json!({
        "name": name,
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob",
            "name": cronjob["metadata"]["name"], "uid": cronjob["metadata"]["uid"],
            "controller": true,
        }],
    });
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        metadata["labels"] = json!(labels);
    }
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": metadata,
        "spec": template["spec"],
    })
}

/// Reads the CronJob `from` names (`cronjob/NAME`, or any name of the resource type).
async fn source_cronjob(s: &Session, from: &str) -> anyhow::Result<Value> {
    let (type_, name) = from
        .split_once('/')
        .filter(|(t, n)| !t.is_empty() && !n.is_empty())
        .ok_or_else(|| anyhow!("from must be an existing cronjob"))?;
    let all = resources::discover(s).await?;
    let resource = resources::resolve(&all, type_)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("from must be an existing cronjob"))?;
    if resource.kind != "CronJob" || resource.group != "batch" {
        bail!("from must be an existing cronjob");
    }
    let path = format!("{}/{name}", resource.path(Some(&s.namespace)));
    s.get_json(&path, "application/json").await
}

async fn post(s: &Session, path: &str, body: &Value) -> anyhow::Result<Value> {
    s.send(http::Method::POST, path, "application/json", Some(body))
        .await
}

fn ports_of(tcp: &[String]) -> anyhow::Result<Vec<Value>> {
    tcp.iter()
        .map(|t| {
            let (port, target) = t.split_once(':').unwrap_or((t, t));
            let port: i64 = port.parse().map_err(|_| anyhow!("invalid --tcp {t}"))?;
            let target: i64 = target.parse().map_err(|_| anyhow!("invalid --tcp {t}"))?;
            Ok(json!({ "name": format!("{port}-{target}"), "port": port, "protocol": "TCP", "targetPort": target }))
        })
        .collect()
}

pub async fn create(s: &Session, sub: &CreateSub) -> anyhow::Result<()> {
    let ns = &s.namespace;
    let (path, body, shown) = match sub {
        CreateSub::Serviceaccount(a) => return rbac::create_serviceaccount(s, a).await,
        CreateSub::Token(a) => return rbac::create_token(s, a).await,
        CreateSub::Role(a) => return rbac::create_role(s, a, None).await,
        CreateSub::Clusterrole(a) => return rbac::create_role(s, &a.role, Some(a)).await,
        CreateSub::Rolebinding(a) => return rbac::create_rolebinding(s, a).await,
        CreateSub::Clusterrolebinding(a) => return rbac::create_clusterrolebinding(s, a).await,
        CreateSub::Deployment {
            name,
            image,
            replicas,
            port,
            command,
        } => {
            let mut container =
                json!({ "name": container_name(image), "image": image, "resources": {} });
            if !command.is_empty() {
                container["command"] = json!(command);
            }
            if let Some(p) = port {
                container["ports"] = json!([{ "containerPort": p }]);
            }
            (
                format!("/apis/apps/v1/namespaces/{ns}/deployments"),
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": { "name": name, "labels": { "app": name } },
                    "spec": {
                        "replicas": replicas,
                        "selector": { "matchLabels": { "app": name } },
                        "strategy": {},
                        "template": {
                            "metadata": { "labels": { "app": name } },
                            "spec": { "containers": [container] }
                        }
                    }
                }),
                format!("deployment.apps/{name}"),
            )
        }
        CreateSub::Job {
            name,
            from: Some(from),
            image,
            command,
        } => {
            if image.is_some() {
                bail!("either --image or --from must be specified");
            }
            if !command.is_empty() {
                bail!("cannot specify --from and command");
            }
            let cronjob = source_cronjob(s, from).await?;
            (
                format!("/apis/batch/v1/namespaces/{ns}/jobs"),
                job_from_cronjob(name, &cronjob),
                format!("job.batch/{name}"),
            )
        }
        CreateSub::Job {
            name,
            from: None,
            image,
            command,
        } => {
            let Some(image) = image else {
                bail!("either --image or --from must be specified");
            };
            // As kubectl's: the container is named after the Job, never restarted.
            let mut container = json!({ "name": name, "image": image, "resources": {} });
            if !command.is_empty() {
                container["command"] = json!(command);
            }
            (
                format!("/apis/batch/v1/namespaces/{ns}/jobs"),
                json!({
                    "apiVersion": "batch/v1", "kind": "Job",
                    "metadata": { "name": name },
                    "spec": {
                        "template": {
                            "metadata": {},
                            "spec": { "containers": [container], "restartPolicy": "Never" }
                        }
                    }
                }),
                format!("job.batch/{name}"),
            )
        }
        CreateSub::Cronjob {
            name,
            image,
            schedule,
            restart,
            command,
        } => (
            format!("/apis/batch/v1/namespaces/{ns}/cronjobs"),
            cronjob_object(name, image, schedule, restart, command),
            format!("cronjob.batch/{name}"),
        ),
        CreateSub::Namespace { name } => (
            "/api/v1/namespaces".to_string(),
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } }),
            format!("namespace/{name}"),
        ),
        CreateSub::Configmap {
            name,
            from_literal,
            from_file,
        } => (
            format!("/api/v1/namespaces/{ns}/configmaps"),
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name },
                    "data": key_values(from_literal, from_file)? }),
            format!("configmap/{name}"),
        ),
        CreateSub::Secret {
            kind:
                SecretKind::Generic {
                    name,
                    from_literal,
                    from_file,
                    type_,
                },
        } => {
            let data: Map<String, Value> = key_values(from_literal, from_file)?
                .into_iter()
                .map(|(k, v)| {
                    let b = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default());
                    (k, Value::String(b))
                })
                .collect();
            (
                format!("/api/v1/namespaces/{ns}/secrets"),
                json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name },
                        "type": type_.clone().unwrap_or_else(|| "Opaque".into()), "data": data }),
                format!("secret/{name}"),
            )
        }
        CreateSub::Service { kind } => {
            let (name, tcp, type_, node_port) = match kind {
                ServiceKind::Clusterip { name, tcp } => (name, tcp, "ClusterIP", None),
                ServiceKind::Nodeport {
                    name,
                    tcp,
                    node_port,
                } => (name, tcp, "NodePort", *node_port),
            };
            let mut ports = ports_of(tcp)?;
            if let (Some(np), Some(first)) = (node_port, ports.first_mut()) {
                first["nodePort"] = json!(np);
            }
            (
                format!("/api/v1/namespaces/{ns}/services"),
                json!({ "apiVersion": "v1", "kind": "Service",
                        "metadata": { "name": name, "labels": { "app": name } },
                        "spec": { "type": type_, "selector": { "app": name }, "ports": ports } }),
                format!("service/{name}"),
            )
        }
    };
    post(s, &path, &body).await?;
    println!("{shown} created");
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    pub name: String,
    #[arg(long, required = true)]
    pub image: String,
    /// Labels (`k=v,k2=v2`; default `run=NAME`).
    #[arg(long, short = 'l')]
    pub labels: Option<String>,
    #[arg(long)]
    pub port: Option<i64>,
    /// Environment variables (`K=V`), repeatable.
    #[arg(long)]
    pub env: Vec<String>,
    /// Always, OnFailure or Never.
    #[arg(long, default_value = "Always")]
    pub restart: String,
    #[arg(long)]
    pub image_pull_policy: Option<String>,
    /// The command: `-- COMMAND ARGS...` (replaces the image's entrypoint with --command).
    #[arg(last = true)]
    pub args: Vec<String>,
    /// Treat the words after `--` as the command, not the image's arguments.
    #[arg(long)]
    pub command: bool,
}

pub async fn run(s: &Session, a: &RunArgs) -> anyhow::Result<()> {
    let mut labels = Map::new();
    match &a.labels {
        Some(l) => {
            for kv in l.split(',') {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow!("invalid label spec: {kv}"))?;
                labels.insert(k.into(), Value::String(v.into()));
            }
        }
        None => {
            labels.insert("run".into(), Value::String(a.name.clone()));
        }
    }
    let mut container = json!({ "name": a.name, "image": a.image, "resources": {} });
    if !a.args.is_empty() {
        // kubectl passes the words as args, unless --command (most images here have no
        // entrypoint, so either runs them).
        container[if a.command { "command" } else { "args" }] = json!(a.args);
    }
    if let Some(p) = a.port {
        container["ports"] = json!([{ "containerPort": p }]);
    }
    if let Some(p) = &a.image_pull_policy {
        container["imagePullPolicy"] = json!(p);
    }
    if !a.env.is_empty() {
        let env: Vec<Value> = a
            .env
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                json!({ "name": k, "value": v })
            })
            .collect();
        container["env"] = json!(env);
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": a.name, "labels": labels },
        "spec": { "containers": [container], "restartPolicy": a.restart, "dnsPolicy": "ClusterFirst" }
    });
    post(s, &format!("/api/v1/namespaces/{}/pods", s.namespace), &pod).await?;
    println!("pod/{} created", a.name);
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExposeArgs {
    /// TYPE NAME or TYPE/NAME (a Deployment, ReplicaSet, ReplicationController, Pod or Service).
    #[arg(required = true)]
    pub args: Vec<String>,
    #[arg(long)]
    pub port: Option<i64>,
    #[arg(long)]
    pub target_port: Option<String>,
    /// ClusterIP, NodePort or LoadBalancer.
    #[arg(long = "type")]
    pub type_: Option<String>,
    /// The Service's name (default: the object's).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "TCP")]
    pub protocol: String,
}

pub async fn expose(s: &Session, a: &ExposeArgs) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    let ts = targets(&all, &a.args, &s.namespace)?;
    let [t] = ts.as_slice() else {
        bail!("expose takes one object");
    };
    let obj = s
        .get_json(
            &format!("{}/{}", t.resource.path(t.namespace.as_deref()), t.name),
            "application/json",
        )
        .await?;
    let selector = match t.resource.kind.as_str() {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            obj["spec"]["selector"]["matchLabels"].clone()
        }
        "ReplicationController" | "Service" => obj["spec"]["selector"].clone(),
        "Pod" => obj["metadata"]["labels"].clone(),
        other => bail!("cannot expose a {other}"),
    };
    if !selector.is_object() {
        bail!("couldn't retrieve selectors via --selector flag or introspection");
    }
    let container_port =
        obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
            .as_i64()
            .or_else(|| obj["spec"]["containers"][0]["ports"][0]["containerPort"].as_i64());
    let port = a
        .port
        .or(container_port)
        .ok_or_else(|| anyhow!("couldn't find port via --port flag or introspection"))?;
    let target: Value = match &a.target_port {
        Some(t) => t
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(t.clone())),
        None => Value::from(port),
    };
    let name = a.name.clone().unwrap_or_else(|| t.name.clone());
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name },
        "spec": { "selector": selector, "ports": [{ "port": port, "protocol": a.protocol, "targetPort": target }] }
    });
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        svc["metadata"]["labels"] = Value::Object(labels.clone());
    }
    if let Some(type_) = &a.type_ {
        svc["spec"]["type"] = json!(type_);
    }
    post(
        s,
        &format!("/api/v1/namespaces/{}/services", s.namespace),
        &svc,
    )
    .await?;
    println!("service/{name} exposed");
    Ok(())
}

pub async fn patch(s: &Session, words: &[String], body: &str, kind: &str) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    let content_type = match kind {
        "strategic" => "application/strategic-merge-patch+json",
        "merge" => "application/merge-patch+json",
        "json" => "application/json-patch+json",
        other => bail!("--type must be json, merge or strategic, not {other:?}"),
    };
    let patch: Value =
        serde_yaml::from_str(body).map_err(|e| anyhow!("unable to parse the patch: {e}"))?;
    for t in targets(&all, words, &s.namespace)? {
        let path = format!("{}/{}", t.resource.path(t.namespace.as_deref()), t.name);
        let before = s.get_json(&path, "application/json").await?;
        let after = s
            .send(http::Method::PATCH, &path, content_type, Some(&patch))
            .await?;
        let same = before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"];
        println!(
            "{}/{} patched{}",
            t.resource.qualified_kind(),
            t.name,
            if same { " (no change)" } else { "" }
        );
    }
    Ok(())
}

pub async fn replace(s: &Session, files: &[String]) -> anyhow::Result<()> {
    let docs = super::write::read_manifests(files)?;
    let all = resources::discover(s).await?;
    for doc in docs {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let r = all
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .ok_or_else(|| {
                anyhow!(
                    "resource mapping not found for kind \"{kind}\" in version \"{api_version}\""
                )
            })?;
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&s.namespace);
        let path = format!("{}/{name}", r.path(Some(ns)));
        s.send(http::Method::PUT, &path, "application/json", Some(&doc))
            .await?;
        println!("{}/{name} replaced", r.qualified_kind());
    }
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// TYPE/NAME... or TYPE NAME...
    #[arg(required = true)]
    pub args: Vec<String>,
    /// `condition=NAME[=VALUE]`, `delete` or `jsonpath={.status.phase}=Running`.
    #[arg(long = "for", required = true)]
    pub for_: String,
    #[arg(long, default_value = "30s")]
    pub timeout: String,
}

pub async fn wait(s: &Session, a: &WaitArgs) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    let limit = skiff_common::parse_duration(&a.timeout).map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    for t in targets(&all, &a.args, &s.namespace)? {
        let path = format!("{}/{}", t.resource.path(t.namespace.as_deref()), t.name);
        let mut first = true;
        loop {
            let got = s.get_json(&path, "application/json").await;
            let gone_already = first
                && a.for_ == "delete"
                && matches!(&got, Err(e) if e.to_string().contains("(NotFound)"));
            first = false;
            if gone_already {
                // As kubectl: nothing to wait for, nothing to say.
                break;
            }
            let met = if a.for_ == "delete" {
                match &got {
                    Err(e) if e.to_string().contains("(NotFound)") => true,
                    Err(e) => return Err(anyhow!("{e}")),
                    Ok(_) => false,
                }
            } else if let Some(cond) = a.for_.strip_prefix("condition=") {
                let obj = got?;
                let (name, want) = cond.split_once('=').unwrap_or((cond, "True"));
                obj["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"]
                            .as_str()
                            .is_some_and(|t| t.eq_ignore_ascii_case(name))
                            && c["status"]
                                .as_str()
                                .is_some_and(|v| v.eq_ignore_ascii_case(want))
                    })
                })
            } else if let Some(expr) = a.for_.strip_prefix("jsonpath=") {
                let obj = got?;
                let (path_expr, want) = expr
                    .rsplit_once('=')
                    .ok_or_else(|| anyhow!("jsonpath wait needs PATH=VALUE"))?;
                let mut v = &obj;
                for part in path_expr
                    .trim_start_matches('{')
                    .trim_end_matches('}')
                    .trim_start_matches('.')
                    .split('.')
                {
                    v = &v[part];
                }
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                shown == want
            } else {
                bail!("unrecognized condition: \"{}\"", a.for_);
            };
            if met {
                println!("{}/{} condition met", t.resource.qualified_kind(), t.name);
                break;
            }
            if started.elapsed() > limit {
                bail!(
                    "timed out waiting for the condition on {}/{}",
                    t.resource.plural,
                    t.name
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_come_from_images() {
        assert_eq!(container_name("nginx"), "nginx");
        assert_eq!(container_name("skiff-test/busybox:1"), "busybox");
        assert_eq!(container_name("registry:5000/a/b@sha256:abc"), "b");
    }

    #[test]
    fn literals_and_ports_parse() {
        let kv = key_values(&["a=1".into(), "b=x=y".into()], &[]).unwrap();
        assert_eq!(kv["b"], "x=y");
        assert!(key_values(&["nokey".into()], &[]).is_err());
        assert_eq!(
            ports_of(&["80:8080".into()]).unwrap()[0],
            json!({"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080})
        );
    }

    #[test]
    fn cronjobs_are_made_as_kubectl_makes_them() {
        let cj = cronjob_object(
            "tick",
            "busybox",
            "*/1 * * * *",
            "OnFailure",
            &["date".into()],
        );
        assert_eq!(cj["spec"]["schedule"], "*/1 * * * *");
        assert_eq!(cj["spec"]["jobTemplate"]["metadata"]["name"], "tick");
        let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "OnFailure");
        assert_eq!(
            pod["containers"],
            json!([{"name": "tick", "image": "busybox", "resources": {}, "command": ["date"]}])
        );
        let bare = cronjob_object("t", "i", "@hourly", "Never", &[]);
        assert!(
            bare["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
                .get("command")
                .is_none()
        );
    }

    #[test]
    fn a_job_from_a_cronjob_takes_its_template_and_is_owned_by_it() {
        let cj = json!({
            "metadata": {"name": "tick", "uid": "u1", "labels": {"ignored": "x"}},
            "spec": {"schedule": "@hourly", "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "n"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}},
            }},
        });
        let job = job_from_cronjob("tick-manual", &cj);
        assert_eq!(
            job,
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {
                    "name": "tick-manual",
                    "labels": {"team": "a"},
                    "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "note": "n"},
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                        "name": "tick", "uid": "u1", "controller": true}],
                },
                "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}},
            })
        );
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct AutoscaleArgs {
    /// TYPE NAME or TYPE/NAME (a Deployment, ReplicaSet, ReplicationController or StatefulSet).
    #[arg(required = true)]
    pub args: Vec<String>,
    #[arg(long)]
    pub min: Option<i32>,
    #[arg(long, required = true)]
    pub max: i32,
    /// Target average CPU utilisation (percent of requests).
    #[arg(long)]
    pub cpu_percent: Option<i32>,
    #[arg(long)]
    pub name: Option<String>,
}

/// `autoscale`: an autoscaling/v2 HorizontalPodAutoscaler for the object, as kubectl makes it.
pub async fn autoscale(s: &Session, a: &AutoscaleArgs) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    let ts = targets(&all, &a.args, &s.namespace)?;
    let [t] = ts.as_slice() else {
        bail!("autoscale takes one object");
    };
    if ![
        "Deployment",
        "ReplicaSet",
        "ReplicationController",
        "StatefulSet",
    ]
    .contains(&t.resource.kind.as_str())
    {
        bail!("cannot autoscale a {}", t.resource.kind);
    }
    let name = a.name.clone().unwrap_or_else(|| t.name.clone());
    let mut spec = json!({
        "scaleTargetRef": { "apiVersion": t.resource.api_version(), "kind": t.resource.kind, "name": t.name },
        "maxReplicas": a.max,
    });
    if let Some(min) = a.min {
        spec["minReplicas"] = json!(min);
    }
    if let Some(cpu) = a.cpu_percent {
        spec["metrics"] = json!([{ "type": "Resource", "resource": { "name": "cpu",
            "target": { "type": "Utilization", "averageUtilization": cpu } } }]);
    }
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": name }, "spec": spec
    });
    post(
        s,
        &format!(
            "/apis/autoscaling/v2/namespaces/{}/horizontalpodautoscalers",
            s.namespace
        ),
        &hpa,
    )
    .await?;
    println!("horizontalpodautoscaler.autoscaling/{name} autoscaled");
    Ok(())
}

/// `edit`: the object as YAML in `$EDITOR` (`$KUBE_EDITOR` first, else vi), then replaced.
pub async fn edit(s: &Session, words: &[String]) -> anyhow::Result<()> {
    let all = resources::discover(s).await?;
    for t in targets(&all, words, &s.namespace)? {
        let path = format!("{}/{}", t.resource.path(t.namespace.as_deref()), t.name);
        let mut obj = s.get_json(&path, "application/json").await?;
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.shift_remove("managedFields");
        }
        let before = super::yaml::to_string(&obj);
        let dir = std::env::temp_dir().join(format!("skiffctl-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{}-{}.yaml", t.resource.plural, t.name));
        std::fs::write(
            &file,
            format!(
                "# Please edit the object below. Lines beginning with a '#' will be ignored,\n# and an empty file will abort the edit.\n#\n{before}"
            ),
        )?;
        let editor = std::env::var("KUBE_EDITOR")
            .or_else(|_| std::env::var("EDITOR"))
            .unwrap_or_else(|_| "vi".into());
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&file)
            .status()
            .map_err(|e| anyhow!("running the editor {editor}: {e}"))?;
        if !status.success() {
            bail!("the editor {editor} exited with {status}");
        }
        let edited = std::fs::read_to_string(&file)?;
        let _ = std::fs::remove_dir_all(&dir);
        let body: String = edited
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        if body.trim().is_empty() {
            println!("Edit cancelled, saved file was empty.");
            continue;
        }
        let new: Value = serde_yaml::from_str(&body)
            .map_err(|e| anyhow!("the edited file is not valid YAML: {e}"))?;
        if new == obj {
            println!("Edit cancelled, no changes made.");
            continue;
        }
        s.send(http::Method::PUT, &path, "application/json", Some(&new))
            .await?;
        println!("{}/{} edited", t.resource.qualified_kind(), t.name);
    }
    Ok(())
}
