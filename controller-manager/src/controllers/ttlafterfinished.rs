//! The TTL-after-finished controller: deletes a finished Job (`Complete` or `Failed`)
//! `spec.ttlSecondsAfterFinished` seconds after it finished, with foreground propagation so
//! its pods go first, as upstream's does. Before deleting it re-reads the Job from the
//! apiserver: the TTL may have been changed since the cache saw it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result, queue_every_change};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Informer, split_key};

/// When the Job finished: the time its `Complete` or `Failed` condition became True.
pub fn finish_time(job: &Job) -> Option<jiff::Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// How long until the Job expires (zero: it has), or None when it never does (no TTL, not
/// finished, already being deleted).
pub fn time_left(job: &Job, now: jiff::Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let expires = finish_time(job)? + jiff::SignedDuration::from_secs(ttl as i64);
    Some(Duration::try_from(expires.duration_since(now)).unwrap_or(Duration::ZERO))
}

pub struct TtlAfterFinished {
    client: kube::Client,
    jobs: Arc<Informer<Job>>,
}

impl Controller for TtlAfterFinished {
    const SERVICE_ACCOUNT: &'static str = "ttl-after-finished-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let jobs = ctx.jobs();
        queue_every_change(&jobs, queue);
        Arc::new(TtlAfterFinished {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            jobs,
        })
    }
}

impl Reconciler for TtlAfterFinished {
    const NAME: &'static str = "ttl-after-finished";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(cached) = self.jobs.get(Some(ns), name) else {
            return Ok(None);
        };
        match time_left(&cached, jiff::Timestamp::now()) {
            None => return Ok(None),
            Some(left) if !left.is_zero() => return Ok(Some(left)),
            Some(_) => {}
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(None);
        };
        match time_left(&fresh, jiff::Timestamp::now()) {
            None => return Ok(None),
            Some(left) if !left.is_zero() => return Ok(Some(left)),
            Some(_) => {}
        }
        tracing::info!(job = %key, "deleting a finished Job whose TTL expired");
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: Some(fresh.uid().unwrap_or_default()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_finished_job_expires_its_ttl_after_its_final_condition() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let job = |ttl: Option<i32>, conditions: serde_json::Value| -> Job {
            serde_json::from_value(json!({
                "metadata": {"name": "j", "namespace": "default"},
                "spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
                "status": {"conditions": conditions},
            }))
            .unwrap()
        };
        let done = json!([{"type": "Complete", "status": "True",
                           "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        let now = t("2026-01-01T00:00:04Z");
        assert_eq!(
            time_left(&job(Some(10), done.clone()), now),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            time_left(&job(Some(3), done.clone()), now),
            Some(Duration::ZERO)
        );
        assert_eq!(time_left(&job(None, done), now), None);
        let running = json!([{"type": "SuccessCriteriaMet", "status": "True",
                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        assert_eq!(time_left(&job(Some(0), running), now), None);
    }
}
