//! `skiffctl rollout status|history|undo|restart|pause|resume` for Deployments, with kubectl's
//! messages: status follows the rollout until it is done, undo puts a previous ReplicaSet's
//! pod template back.

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
    /// The revisions of a Deployment.
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

/// The Deployment `args` name (`deployment/web`, `deploy web`).
async fn deployment(s: &Session, args: &[String]) -> anyhow::Result<(String, String)> {
    let all = resources::discover(s).await?;
    let targets = super::write::targets(&all, args, &s.namespace)?;
    let [t] = targets.as_slice() else {
        bail!("give one deployment, as deployment/NAME");
    };
    if t.resource.kind != "Deployment" {
        bail!(
            "no rollout support for {}; only deployments are rolled out here",
            t.resource.plural
        );
    }
    Ok((
        format!("{}/{}", t.resource.path(Some(&s.namespace)), t.name),
        t.name.clone(),
    ))
}

/// kubectl's words for where a rollout stands, and whether it is done.
pub fn status_message(d: &Value) -> anyhow::Result<(String, bool)> {
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

pub async fn run(s: &Session, cmd: &RolloutCmd) -> anyhow::Result<()> {
    match cmd {
        RolloutCmd::Status {
            args,
            timeout,
            watch,
        } => {
            let (path, _) = deployment(s, args).await?;
            let limit = if timeout == "0" {
                None
            } else {
                Some(skiff_common::parse_duration(timeout).map_err(|e| anyhow!(e))?)
            };
            let started = Instant::now();
            let mut last = String::new();
            loop {
                let d = s.get_json(&path, "application/json").await?;
                let (msg, done) = status_message(&d)?;
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
            let (path, name) = deployment(s, args).await?;
            let d = s.get_json(&path, "application/json").await?;
            let mut lines = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
            for (rev, rs) in revisions(s, &d).await? {
                let cause = rs["metadata"]["annotations"]["kubernetes.io/change-cause"]
                    .as_str()
                    .unwrap_or("<none>")
                    .to_string();
                lines.push(vec![rev.to_string(), cause]);
            }
            println!("deployment.apps/{name} ");
            // kubectl's history table is padded by 2, not 3.
            print!("{}", super::get::tabulate_with(&lines, 0, 2));
            println!();
            Ok(())
        }
        RolloutCmd::Undo { args, to_revision } => {
            let (path, name) = deployment(s, args).await?;
            let d = s.get_json(&path, "application/json").await?;
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
            let (path, name) = deployment(s, args).await?;
            let now = skiff_common::time::now();
            patch(
                s,
                &path,
                "application/strategic-merge-patch+json",
                &json!({ "spec": { "template": { "metadata": { "annotations": { "kubectl.kubernetes.io/restartedAt": now } } } } }),
            )
            .await?;
            println!("deployment.apps/{name} restarted");
            Ok(())
        }
        RolloutCmd::Pause { args } | RolloutCmd::Resume { args } => {
            let pause = matches!(cmd, RolloutCmd::Pause { .. });
            let (path, name) = deployment(s, args).await?;
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
        let msg = |v: Value| status_message(&v).unwrap();
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
        assert!(status_message(&stuck).is_err());
    }
}
