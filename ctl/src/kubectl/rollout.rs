//! `skiffctl rollout status|history|undo|restart|pause|resume` for Deployments, DaemonSets
//! and StatefulSets, with kubectl's messages: status follows the rollout until it is done;
//! history lists a Deployment's ReplicaSets or the ControllerRevisions of the other two; undo
//! puts a previous ReplicaSet's pod template back, or applies a previous revision's patch.
//! Pause and resume are for Deployments only, as in kubectl.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::Session;
use super::resources;

const REVISION: &str = "deployment.kubernetes.io/revision";

#[derive(Subcommand, Debug, Clone)]
pub enum RolloutCmd {
    /// Follow a rollout until it is done.
    Status {
        /// deployment/NAME or deployment NAME.
        #[arg(required = true)]
        args: Vec<String>,
        /// Give up after this long (0: never).
        #[arg(long, default_value = "0")]
        timeout: String,
        /// Only print the current status.
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        watch: bool,
    },
    /// The revisions of a Deployment, DaemonSet or StatefulSet.
    History {
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Go back to the previous revision (or --to-revision).
    Undo {
        #[arg(required = true)]
        args: Vec<String>,
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Restart the pods (a new rollout of the same template).
    Restart {
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Stop acting on template changes.
    Pause {
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Act on template changes again.
    Resume {
        #[arg(required = true)]
        args: Vec<String>,
    },
}

/// The kinds that roll out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    DaemonSet,
    StatefulSet,
}

impl Kind {
    /// kubectl's `<resource>.<group>` prefix of its messages.
    fn prefix(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment.apps",
            Kind::DaemonSet => "daemonset.apps",
            Kind::StatefulSet => "statefulset.apps",
        }
    }
}

/// The object `args` name (`deployment/web`, `ds web`, `sts/web`): its kind, path and name.
async fn target(s: &Session, args: &[String]) -> anyhow::Result<(Kind, String, String)> {
    let all = resources::discover(s).await?;
    let targets = super::write::targets(&all, args, &s.namespace)?;
    let [t] = targets.as_slice() else {
        bail!("give one object, as deployment/NAME, daemonset/NAME or statefulset/NAME");
    };
    let kind = match t.resource.kind.as_str() {
        "Deployment" => Kind::Deployment,
        "DaemonSet" => Kind::DaemonSet,
        "StatefulSet" => Kind::StatefulSet,
        _ => bail!(
            "no rollout support for {}; deployments, daemonsets and statefulsets roll out",
            t.resource.plural
        ),
    };
    Ok((
        kind,
        format!("{}/{}", t.resource.path(Some(&s.namespace)), t.name),
        t.name.clone(),
    ))
}

/// The Deployment `args` name: only Deployments pause (`verb` is `pausing` or `resuming`).
async fn deployment(s: &Session, args: &[String], verb: &str) -> anyhow::Result<(String, String)> {
    let (kind, path, name) = target(s, args).await?;
    if kind != Kind::Deployment {
        let (resource, group) = kind.prefix().split_once('.').unwrap_or_default();
        bail!("{resource}s.{group} \"{name}\" {verb} is not supported");
    }
    Ok((path, name))
}

/// kubectl's words for where a rollout of `kind` stands, and whether it is done.
pub fn status_message(kind: Kind, o: &Value) -> anyhow::Result<(String, bool)> {
    match kind {
        Kind::Deployment => deployment_status(o),
        Kind::DaemonSet => daemonset_status(o),
        Kind::StatefulSet => statefulset_status(o),
    }
}

fn num(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn daemonset_status(d: &Value) -> anyhow::Result<(String, bool)> {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    if d["spec"]["updateStrategy"]["type"].as_str() != Some("RollingUpdate") {
        bail!("rollout status is only available for RollingUpdate strategy type");
    }
    let st = &d["status"];
    if num(&d["metadata"]["generation"]) > num(&st["observedGeneration"]) {
        return Ok((
            "Waiting for daemon set spec update to be observed...\n".into(),
            false,
        ));
    }
    let desired = num(&st["desiredNumberScheduled"]);
    let updated = num(&st["updatedNumberScheduled"]);
    let available = num(&st["numberAvailable"]);
    if updated < desired {
        return Ok((
            format!(
                "Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated...\n"
            ),
            false,
        ));
    }
    if available < desired {
        return Ok((
            format!(
                "Waiting for daemon set \"{name}\" rollout to finish: {available} of {desired} updated pods are available...\n"
            ),
            false,
        ));
    }
    Ok((
        format!("daemon set \"{name}\" successfully rolled out\n"),
        true,
    ))
}

fn statefulset_status(d: &Value) -> anyhow::Result<(String, bool)> {
    let spec = &d["spec"];
    let strategy = &spec["updateStrategy"];
    if strategy["type"].as_str() != Some("RollingUpdate") {
        bail!("rollout status is only available for RollingUpdate strategy type");
    }
    let st = &d["status"];
    let observed = num(&st["observedGeneration"]);
    if observed == 0 || num(&d["metadata"]["generation"]) > observed {
        return Ok((
            "Waiting for statefulset spec update to be observed...\n".into(),
            false,
        ));
    }
    let replicas = spec["replicas"].as_i64();
    let ready = num(&st["readyReplicas"]);
    let updated = num(&st["updatedReplicas"]);
    if let Some(want) = replicas
        && ready < want
    {
        return Ok((
            format!("Waiting for {} pods to be ready...\n", want - ready),
            false,
        ));
    }
    if strategy["rollingUpdate"].is_object() {
        if let (Some(want), Some(partition)) =
            (replicas, strategy["rollingUpdate"]["partition"].as_i64())
            && updated < want - partition
        {
            return Ok((
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...\n",
                    want - partition
                ),
                false,
            ));
        }
        return Ok((
            format!("partitioned roll out complete: {updated} new pods have been updated...\n"),
            true,
        ));
    }
    let update = st["updateRevision"].as_str().unwrap_or_default();
    let current = st["currentRevision"].as_str().unwrap_or_default();
    if update != current {
        return Ok((
            format!(
                "waiting for statefulset rolling update to complete {updated} pods at revision {update}...\n"
            ),
            false,
        ));
    }
    Ok((
        format!(
            "statefulset rolling update complete {} pods at revision {current}...\n",
            num(&st["currentReplicas"])
        ),
        true,
    ))
}

fn deployment_status(d: &Value) -> anyhow::Result<(String, bool)> {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let st = &d["status"];
    let observed = st["observedGeneration"].as_i64().unwrap_or(0);
    if generation > observed {
        return Ok((
            "Waiting for deployment spec update to be observed...\n".into(),
            false,
        ));
    }
    let deadline_exceeded = st["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    });
    if deadline_exceeded {
        bail!("deployment \"{name}\" exceeded its progress deadline");
    }
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = st["updatedReplicas"].as_i64().unwrap_or(0);
    let replicas = st["replicas"].as_i64().unwrap_or(0);
    let available = st["availableReplicas"].as_i64().unwrap_or(0);
    if updated < want {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {want} new replicas have been updated...\n"
            ),
            false,
        ));
    }
    if replicas > updated {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...\n",
                replicas - updated
            ),
            false,
        ));
    }
    if available < updated {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available...\n"
            ),
            false,
        ));
    }
    Ok((
        format!("deployment \"{name}\" successfully rolled out\n"),
        true,
    ))
}

async fn patch(s: &Session, path: &str, content_type: &str, body: &Value) -> anyhow::Result<()> {
    s.send(http::Method::PATCH, path, content_type, Some(body))
        .await
        .map(drop)
}

/// The Deployment's ReplicaSets with their revisions, oldest first.
async fn revisions(s: &Session, d: &Value) -> anyhow::Result<Vec<(i64, Value)>> {
    let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    let list = s
        .get_json(
            &format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
            "application/json",
        )
        .await?;
    let mut out: Vec<(i64, Value)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
        })
        .filter_map(|rs| {
            let rev = rs["metadata"]["annotations"][REVISION]
                .as_str()?
                .parse()
                .ok()?;
            Some((rev, rs.clone()))
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    Ok(out)
}

/// The ControllerRevisions a DaemonSet or StatefulSet controls, oldest first.
async fn controller_revisions(s: &Session, o: &Value) -> anyhow::Result<Vec<(i64, Value)>> {
    let uid = o["metadata"]["uid"].as_str().unwrap_or_default();
    let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
    let list = s
        .get_json(
            &format!("/apis/apps/v1/namespaces/{ns}/controllerrevisions"),
            "application/json",
        )
        .await?;
    let mut out: Vec<(i64, Value)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|cr| {
            cr["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|r| r["uid"] == uid && r["controller"] == true))
        })
        .map(|cr| (num(&cr["revision"]), cr.clone()))
        .collect();
    out.sort_by_key(|(r, _)| *r);
    Ok(out)
}

/// A revision's template (its patch's `spec.template` less the `$patch` directive).
fn revision_template(cr: &Value) -> Value {
    let mut t = cr["data"]["spec"]["template"].clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    t
}

/// The revision number and object of every revision of `o`, oldest first.
async fn history(s: &Session, kind: Kind, o: &Value) -> anyhow::Result<Vec<(i64, Value)>> {
    match kind {
        Kind::Deployment => revisions(s, o).await,
        Kind::DaemonSet | Kind::StatefulSet => controller_revisions(s, o).await,
    }
}

/// `rollout undo` of a DaemonSet or StatefulSet: the chosen revision's patch is applied, as
/// kubectl does (a strategic merge patch replacing `spec.template`).
async fn undo_revision(
    s: &Session,
    kind: Kind,
    path: &str,
    name: &str,
    o: &Value,
    to_revision: i64,
) -> anyhow::Result<()> {
    let revs = controller_revisions(s, o).await?;
    let target = if to_revision > 0 {
        revs.iter()
            .find(|(r, _)| *r == to_revision)
            .ok_or_else(|| anyhow!("unable to find specified revision {to_revision} in history"))?
    } else {
        if revs.len() <= 1 {
            bail!("no last revision to roll back to");
        }
        &revs[revs.len() - 2]
    };
    if revision_template(&target.1) == o["spec"]["template"] {
        println!(
            "{}/{name} skipped rollback (current template already matches revision {})",
            kind.prefix(),
            target.0
        );
        return Ok(());
    }
    patch(
        s,
        path,
        "application/strategic-merge-patch+json",
        &target.1["data"],
    )
    .await?;
    println!("{}/{name} rolled back", kind.prefix());
    Ok(())
}

pub async fn run(s: &Session, cmd: &RolloutCmd) -> anyhow::Result<()> {
    match cmd {
        RolloutCmd::Status {
            args,
            timeout,
            watch,
        } => {
            let (kind, path, _) = target(s, args).await?;
            let limit = if timeout == "0" {
                None
            } else {
                Some(skiff_common::parse_duration(timeout).map_err(|e| anyhow!(e))?)
            };
            let started = Instant::now();
            let mut last = String::new();
            loop {
                let d = s.get_json(&path, "application/json").await?;
                let (msg, done) = status_message(kind, &d)?;
                if msg != last {
                    print!("{msg}");
                    last = msg;
                }
                if done || !watch {
                    return Ok(());
                }
                if limit.is_some_and(|l| started.elapsed() > l) {
                    bail!("timed out waiting for the condition");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        RolloutCmd::History { args } => {
            let (kind, path, name) = target(s, args).await?;
            let d = s.get_json(&path, "application/json").await?;
            let mut lines = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
            for (rev, rs) in history(s, kind, &d).await? {
                let cause = rs["metadata"]["annotations"]["kubernetes.io/change-cause"]
                    .as_str()
                    .unwrap_or("<none>")
                    .to_string();
                lines.push(vec![rev.to_string(), cause]);
            }
            println!("{}/{name} ", kind.prefix());
            // kubectl's history table is padded by 2, not 3.
            print!("{}", super::get::tabulate_with(&lines, 0, 2));
            println!();
            Ok(())
        }
        RolloutCmd::Undo { args, to_revision } => {
            let (kind, path, name) = target(s, args).await?;
            let d = s.get_json(&path, "application/json").await?;
            if kind != Kind::Deployment {
                return undo_revision(s, kind, &path, &name, &d, *to_revision).await;
            }
            let revs = revisions(s, &d).await?;
            let current: i64 = d["metadata"]["annotations"][REVISION]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let target = if *to_revision > 0 {
                revs.iter().find(|(r, _)| r == to_revision).ok_or_else(|| {
                    anyhow!("unable to find specified revision {to_revision} in history")
                })?
            } else {
                revs.iter()
                    .rev()
                    .find(|(r, _)| *r < current)
                    .ok_or_else(|| anyhow!("no rollout history found for deployment \"{name}\""))?
            };
            if target.0 == current {
                println!(
                    "deployment.apps/{name} skipped rollback (current template already matches revision {current})"
                );
                return Ok(());
            }
            let mut template = target.1["spec"]["template"].clone();
            if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
                labels.shift_remove("pod-template-hash");
            }
            patch(
                s,
                &path,
                "application/json-patch+json",
                &json!([{ "op": "replace", "path": "/spec/template", "value": template }]),
            )
            .await?;
            println!("deployment.apps/{name} rolled back");
            Ok(())
        }
        RolloutCmd::Restart { args } => {
            let (kind, path, name) = target(s, args).await?;
            let now = skiff_common::time::now();
            patch(
                s,
                &path,
                "application/strategic-merge-patch+json",
                &json!({ "spec": { "template": { "metadata": { "annotations": { "kubectl.kubernetes.io/restartedAt": now } } } } }),
            )
            .await?;
            println!("{}/{name} restarted", kind.prefix());
            Ok(())
        }
        RolloutCmd::Pause { args } | RolloutCmd::Resume { args } => {
            let pause = matches!(cmd, RolloutCmd::Pause { .. });
            let verb = if pause { "pausing" } else { "resuming" };
            let (path, name) = deployment(s, args, verb).await?;
            let d = s.get_json(&path, "application/json").await?;
            if d["spec"]["paused"].as_bool().unwrap_or(false) == pause {
                bail!(
                    "deployments.apps \"{name}\" is {}",
                    if pause {
                        "already paused"
                    } else {
                        "not paused"
                    }
                );
            }
            patch(
                s,
                &path,
                "application/merge-patch+json",
                &json!({ "spec": { "paused": pause } }),
            )
            .await?;
            println!(
                "deployment.apps/{name} {}",
                if pause { "paused" } else { "resumed" }
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_follow_kubectl_s() {
        let d = |generation: i64,
                 observed: i64,
                 want: i64,
                 updated: i64,
                 replicas: i64,
                 available: i64| {
            json!({"metadata": {"name": "web", "generation": generation},
                   "spec": {"replicas": want},
                   "status": {"observedGeneration": observed, "updatedReplicas": updated,
                              "replicas": replicas, "availableReplicas": available}})
        };
        let msg = |v: Value| status_message(Kind::Deployment, &v).unwrap();
        assert_eq!(
            msg(d(2, 1, 3, 3, 3, 3)).0,
            "Waiting for deployment spec update to be observed...\n"
        );
        assert_eq!(
            msg(d(2, 2, 3, 1, 4, 3)).0,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n"
        );
        assert_eq!(
            msg(d(2, 2, 3, 3, 4, 3)).0,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n"
        );
        assert_eq!(
            msg(d(2, 2, 3, 3, 3, 2)).0,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...\n"
        );
        assert_eq!(
            msg(d(2, 2, 3, 3, 3, 3)),
            ("deployment \"web\" successfully rolled out\n".into(), true)
        );
        let mut stuck = d(2, 2, 3, 1, 3, 1);
        stuck["status"]["conditions"] =
            json!([{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]);
        assert!(status_message(Kind::Deployment, &stuck).is_err());
    }

    #[test]
    fn daemonset_and_statefulset_status_messages_follow_kubectl_s() {
        let ds = |observed: i64, desired: i64, updated: i64, available: i64| {
            json!({"metadata": {"name": "agent", "generation": 2},
                   "spec": {"updateStrategy": {"type": "RollingUpdate"}},
                   "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                              "updatedNumberScheduled": updated, "numberAvailable": available}})
        };
        let msg = |k: Kind, v: Value| status_message(k, &v).unwrap();
        assert_eq!(
            msg(Kind::DaemonSet, ds(1, 3, 3, 3)).0,
            "Waiting for daemon set spec update to be observed...\n"
        );
        assert_eq!(
            msg(Kind::DaemonSet, ds(2, 3, 1, 3)).0,
            "Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated...\n"
        );
        assert_eq!(
            msg(Kind::DaemonSet, ds(2, 3, 3, 2)).0,
            "Waiting for daemon set \"agent\" rollout to finish: 2 of 3 updated pods are available...\n"
        );
        assert!(msg(Kind::DaemonSet, ds(2, 3, 3, 3)).1);

        let sts = |ready: i64, updated: i64, rolling: Value| {
            json!({"metadata": {"name": "web", "generation": 2},
                   "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling}},
                   "status": {"observedGeneration": 2, "readyReplicas": ready, "updatedReplicas": updated,
                              "currentReplicas": 3, "currentRevision": "web-a", "updateRevision": "web-b"}})
        };
        assert_eq!(
            msg(Kind::StatefulSet, sts(2, 1, json!({"partition": 0}))).0,
            "Waiting for 1 pods to be ready...\n"
        );
        assert_eq!(
            msg(Kind::StatefulSet, sts(3, 1, json!({"partition": 1}))).0,
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...\n"
        );
        assert_eq!(
            msg(Kind::StatefulSet, sts(3, 3, json!({"partition": 0}))),
            (
                "partitioned roll out complete: 3 new pods have been updated...\n".into(),
                true
            )
        );
        assert_eq!(
            msg(Kind::StatefulSet, sts(3, 1, Value::Null)).0,
            "waiting for statefulset rolling update to complete 1 pods at revision web-b...\n"
        );
        let mut on_delete = sts(3, 3, Value::Null);
        on_delete["spec"]["updateStrategy"]["type"] = json!("OnDelete");
        assert!(status_message(Kind::StatefulSet, &on_delete).is_err());
    }
}
