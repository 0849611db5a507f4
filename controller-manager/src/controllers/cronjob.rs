//! The CronJob controller: creates a Job from a CronJob's `jobTemplate` at each time of its
//! schedule (read in `spec.timeZone`, else UTC, the controller's local zone), as upstream's
//! CronJobControllerV2 does. Each sync reconciles `status.active` with the Jobs the CronJob
//! owns, finds the most recent scheduled time not yet run (skipping it when older than
//! `startingDeadlineSeconds`), applies `concurrencyPolicy` and `suspend`, creates the Job
//! `<cronjob>-<scheduled minute since the epoch>` (the name makes a second creation for the
//! same time fail, so a restart cannot run it twice), trims finished Jobs beyond the history
//! limits, and asks to be synced again at the next scheduled time: no polling.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use skiff_api::cron::Schedule;
use skiff_client::events::{EventType, Recorder};
use skiff_client::informer::{Change, Informer, key_of, split_key};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::pods;
use crate::workqueue::WorkQueue;

/// The annotation on a created Job holding the time it was scheduled for (RFC 3339, in the
/// CronJob's time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this draw a `TooManyMissedTimes` warning (upstream's limit).
pub const MAX_MISSED: usize = 100;
/// Added to the wait for the next time, so the sync lands just after it (upstream's
/// nextScheduleDelta).
const NEXT_DELTA: Duration = Duration::from_millis(100);
/// The API defaults of the history limits.
pub const DEFAULT_SUCCESSFUL_HISTORY: i32 = 3;
pub const DEFAULT_FAILED_HISTORY: i32 = 1;

/// The name of the Job run for `scheduled`: the CronJob's name and the minutes since the epoch.
pub fn job_name(cronjob: &str, scheduled: jiff::Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The most recent scheduled time after `earliest` and not after `now`, and how many scheduled
/// times lie in that span (upstream's mostRecentScheduleTime). Counting stops just past
/// [`MAX_MISSED`]: more only matters as "too many".
pub fn most_recent(
    schedule: &Schedule,
    tz: &jiff::tz::TimeZone,
    earliest: jiff::Timestamp,
    now: jiff::Timestamp,
) -> (Option<jiff::Timestamp>, usize) {
    let mut last = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(next) = schedule.next_after(t, tz) {
        if next > now {
            break;
        }
        count += 1;
        last = Some(next);
        t = next;
        if count > MAX_MISSED {
            // Find the latest from `now` backwards instead of walking every missed time:
            // only the latest one is run.
            if let Some(n) = latest_before(schedule, tz, t, now) {
                last = Some(n);
            }
            break;
        }
    }
    (last, count)
}

/// The latest scheduled time in `(from, now]`, found by walking back from `now` in growing
/// windows (for schedules missed for very long).
fn latest_before(
    schedule: &Schedule,
    tz: &jiff::tz::TimeZone,
    from: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    let mut window = jiff::SignedDuration::from_secs(3600);
    loop {
        let start = now
            .checked_sub(window)
            .ok()
            .filter(|s| *s > from)
            .unwrap_or(from);
        let mut last = None;
        let mut t = start;
        while let Some(n) = schedule.next_after(t, tz) {
            if n > now {
                break;
            }
            last = Some(n);
            t = n;
        }
        if last.is_some() || start == from {
            return last;
        }
        window = window.checked_mul(4)?;
    }
}

/// The time after which scheduled times count as unmet: the last scheduled time (else the
/// CronJob's creation), but no earlier than `startingDeadlineSeconds` before `now`.
pub fn earliest_time(cj: &CronJob, now: jiff::Timestamp) -> jiff::Timestamp {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    if let Some(deadline) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds)
        && let Ok(d) = now.checked_sub(jiff::SignedDuration::from_secs(deadline))
        && d > earliest
    {
        earliest = d;
    }
    earliest
}

/// How a Job finished: `Complete` or `Failed`, when that condition is True.
pub fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// The finished Jobs to delete so that at most `limit` remain: the ones that started first
/// (Jobs without a start time count as the newest; ties by name), as upstream's
/// removeOldestJobs.
pub fn oldest_beyond(mut finished: Vec<Arc<Job>>, limit: i32) -> Vec<Arc<Job>> {
    let limit = limit.max(0) as usize;
    if finished.len() <= limit {
        return Vec::new();
    }
    let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.clone());
    finished.sort_by(|a, b| match (start(a), start(b)) {
        (Some(x), Some(y)) => x.0.cmp(&y.0).then_with(|| a.name_any().cmp(&b.name_any())),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name_any().cmp(&b.name_any()),
    });
    let excess = finished.len() - limit;
    finished.truncate(excess);
    finished
}

/// `t` as RFC 3339 in `tz`, as Go's `time.RFC3339` writes it (`Z` for UTC).
fn rfc3339_in(t: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job to create for `scheduled`: the template's labels, annotations and spec, the
/// scheduled-time annotation, and the CronJob as its controller.
pub fn job_from_template(cj: &CronJob, scheduled: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone());
    let meta = template
        .as_ref()
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339_in(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.and_then(|t| t.spec).or(Some(JobSpec::default())),
        status: None,
    }
}

/// What to do about the most recent unmet scheduled time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It is older than `startingDeadlineSeconds`: skipped (a `MissSchedule` warning).
    Missed,
    /// Its Job exists already (active, or it is the last scheduled time).
    AlreadyRun,
    /// `concurrencyPolicy: Forbid` and a Job is still active.
    Forbidden,
    /// Create its Job, first deleting the active ones if `replace` (`Replace`).
    Run { replace: bool },
}

/// Decides, as upstream's syncCronJob, whether the Job named `name` for `scheduled` runs.
pub fn decide(
    spec: &CronJobSpec,
    scheduled: jiff::Timestamp,
    now: jiff::Timestamp,
    active: &[ObjectReference],
    last_schedule: Option<&Time>,
    name: &str,
) -> Decision {
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled
            .checked_add(jiff::SignedDuration::from_secs(deadline))
            .is_ok_and(|d| d < now)
    {
        return Decision::Missed;
    }
    if active.iter().any(|r| r.name.as_deref() == Some(name))
        || last_schedule.is_some_and(|t| t.0 == scheduled)
    {
        return Decision::AlreadyRun;
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => Decision::Forbidden,
        Some("Replace") => Decision::Run {
            replace: !active.is_empty(),
        },
        _ => Decision::Run { replace: false },
    }
}

pub struct CronJobController {
    client: kube::Client,
    ctx: Arc<Context>,
    cronjobs: Arc<Informer<CronJob>>,
    recorder: Recorder,
}

/// The `namespace/name` of the CronJob controlling `job`.
fn owner_key(job: &Job) -> Option<String> {
    pods::controller_of(&job.metadata)
        .filter(|r| r.kind == "CronJob")
        .map(|r| format!("{}/{}", job.namespace().unwrap_or_default(), r.name))
}

impl Controller for CronJobController {
    const SERVICE_ACCOUNT: &'static str = "cronjob-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let cronjobs = ctx.cronjobs();
        let (q, all) = (queue.clone(), cronjobs.clone());
        cronjobs.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(key_of(*new)),
            Change::Deleted(_) => {}
            Change::Resynced => all.list().iter().for_each(|o| q.add(key_of(o.as_ref()))),
        });
        ctx.jobs().on_change(move |c| match c {
            Change::Applied { new, .. } => {
                if let Some(k) = owner_key(new) {
                    queue.add(k);
                }
            }
            Change::Deleted(j) => {
                if let Some(k) = owner_key(j) {
                    queue.add(k);
                }
            }
            Change::Resynced => {}
        });
        let client = ctx.client_for(Self::SERVICE_ACCOUNT);
        Arc::new(CronJobController {
            recorder: Recorder::new(
                client.clone(),
                "cronjob-controller",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            client,
            ctx: ctx.clone(),
            cronjobs,
        })
    }
}

impl CronJobController {
    fn event(&self, cj: &CronJob, type_: EventType, reason: &str, message: String) {
        self.recorder
            .publish(cj.object_ref(&()), type_, reason, message);
    }

    /// Deletes a Job (its pods in the background); a Job already gone counts as deleted.
    async fn delete_job(&self, cj: &CronJob, ns: &str, name: &str) -> Result<()> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                self.event(
                    cj,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted job {name}"),
                );
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                self.event(
                    cj,
                    EventType::Warning,
                    "FailedDelete",
                    format!("Deleted job: {e}"),
                );
                Err(e.into())
            }
        }
    }
}

impl Reconciler for CronJobController {
    const NAME: &'static str = "cronjob";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(cached) = self.cronjobs.get(Some(ns), name) else {
            return Ok(None);
        };
        let mut cj = (*cached).clone();
        let uid = cj.uid().unwrap_or_default();
        let jobs: Vec<Arc<Job>> = self
            .ctx
            .jobs()
            .list_in(ns)
            .into_iter()
            .filter(|j| {
                pods::controller_of(&j.metadata)
                    .is_some_and(|r| r.kind == "CronJob" && r.uid == uid)
            })
            .collect();
        let status = cj.status.get_or_insert_with(Default::default);
        let mut active = status.active.clone().unwrap_or_default();
        let before = (
            active.clone(),
            status.last_schedule_time.clone(),
            status.last_successful_time.clone(),
        );
        let mut last_successful = status.last_successful_time.clone();
        let job_api: Api<Job> = Api::namespaced(self.client.clone(), ns);

        // Reconcile the active list with the Jobs seen.
        let seen: HashSet<String> = jobs.iter().filter_map(|j| j.uid()).collect();
        for j in &jobs {
            let is_active = active.iter().any(|r| r.uid == j.uid());
            match finished(j) {
                Some(how) if is_active => {
                    active.retain(|r| r.uid != j.uid());
                    self.event(
                        &cj,
                        EventType::Normal,
                        "SawCompletedJob",
                        format!("Saw completed job: {}, condition: {how}", j.name_any()),
                    );
                }
                _ => {}
            }
            if finished(j) == Some("Complete")
                && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.clone())
                && last_successful.as_ref().is_none_or(|l| l.0 < done.0)
            {
                last_successful = Some(done);
            }
        }
        // An active Job the cache does not show may just be newer than the cache: ask the
        // apiserver before dropping it.
        let mut kept = Vec::new();
        for r in active {
            let known = r.uid.as_ref().is_some_and(|u| seen.contains(u));
            let name = r.name.clone().unwrap_or_default();
            if known
                || job_api
                    .get_opt(&name)
                    .await?
                    .is_some_and(|j| j.uid() == r.uid && finished(&j).is_none())
            {
                kept.push(r);
            } else {
                self.event(
                    &cj,
                    EventType::Normal,
                    "MissingJob",
                    format!("Active job went missing: {name}"),
                );
            }
        }
        let mut active = kept;
        let mut last_schedule = before.1.clone();

        let requeue = if cj.metadata.deletion_timestamp.is_some() {
            None
        } else {
            self.schedule(&cj, &job_api, &mut active, &mut last_schedule)
                .await?
        };

        if cj.metadata.deletion_timestamp.is_none() {
            self.trim_history(&cj, ns, &jobs).await;
        }

        if (&active, &last_schedule, &last_successful) != (&before.0, &before.1, &before.2) {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            let status = json!({
                "active": if active.is_empty() { None } else { Some(&active) },
                "lastScheduleTime": last_schedule,
                "lastSuccessfulTime": last_successful,
            });
            match crate::update::status(&api, name, &status).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(requeue)
    }
}

impl CronJobController {
    /// Runs the most recent unmet scheduled time, if any and allowed; returns how long until
    /// the next one.
    async fn schedule(
        &self,
        cj: &CronJob,
        job_api: &Api<Job>,
        active: &mut Vec<ObjectReference>,
        last_schedule: &mut Option<Time>,
    ) -> Result<Option<Duration>> {
        let Some(spec) = cj.spec.as_ref() else {
            return Ok(None);
        };
        let tz = match spec.time_zone.as_deref() {
            None => jiff::tz::TimeZone::UTC,
            Some(zone) => match jiff::tz::TimeZone::get(zone) {
                Ok(tz) => tz,
                Err(e) => {
                    self.event(
                        cj,
                        EventType::Warning,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {zone:?}: {e}"),
                    );
                    return Ok(None);
                }
            },
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let schedule = match skiff_api::cron::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    cj,
                    EventType::Warning,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        let now = jiff::Timestamp::now();
        let earliest = earliest_time(cj, now);
        let (recent, missed) = most_recent(&schedule, &tz, earliest, now);
        if missed > MAX_MISSED {
            self.event(
                cj,
                EventType::Warning,
                "TooManyMissedTimes",
                format!(
                    "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                ),
            );
        }
        let wait = |from: jiff::Timestamp| {
            schedule.next_after(from, &tz).map(|next| {
                Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO) + NEXT_DELTA
            })
        };
        let Some(scheduled) = recent else {
            return Ok(wait(earliest));
        };
        let next = wait(scheduled);
        let name = job_name(&cj.name_any(), scheduled);
        let replace = match decide(spec, scheduled, now, active, last_schedule.as_ref(), &name) {
            Decision::Missed => {
                self.event(
                    cj,
                    EventType::Warning,
                    "MissSchedule",
                    format!(
                        "Missed scheduled time to start a job: {}",
                        scheduled
                            .to_zoned(jiff::tz::TimeZone::UTC)
                            .strftime("%a, %d %b %Y %H:%M:%S %z")
                    ),
                );
                return Ok(next);
            }
            Decision::AlreadyRun => return Ok(next),
            Decision::Forbidden => {
                self.event(
                    cj,
                    EventType::Normal,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                );
                return Ok(next);
            }
            Decision::Run { replace } => replace,
        };
        if replace {
            // Each deleted Job leaves the active list; a failed deletion keeps the rest.
            while let Some(r) = active.first().cloned() {
                let ns = r.namespace.clone().unwrap_or_default();
                let old = r.name.clone().unwrap_or_default();
                self.delete_job(cj, &ns, &old).await?;
                active.remove(0);
            }
        }
        let job = job_from_template(cj, scheduled, &tz);
        let created = match job_api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.event(
                    cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                );
                j
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created before (a restart, a stale cache): adopt it if it is ours.
                let existing = job_api.get(&name).await?;
                let ours = pods::controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                if !ours {
                    return Err(crate::controller::Error::Invalid(format!(
                        "job {name} already exists but is not controlled by cronjob {}",
                        cj.name_any()
                    )));
                }
                existing
            }
            Err(e) => {
                let msg = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                self.event(
                    cj,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating job: {msg}"),
                );
                return Err(e.into());
            }
        };
        if !active.iter().any(|r| r.uid == created.uid()) {
            active.push(created.object_ref(&()));
        }
        *last_schedule = Some(Time(scheduled));
        Ok(next)
    }

    /// Deletes the oldest finished Jobs beyond the history limits.
    async fn trim_history(&self, cj: &CronJob, ns: &str, jobs: &[Arc<Job>]) {
        let spec = cj.spec.as_ref();
        let keep_ok = spec
            .and_then(|s| s.successful_jobs_history_limit)
            .unwrap_or(DEFAULT_SUCCESSFUL_HISTORY);
        let keep_failed = spec
            .and_then(|s| s.failed_jobs_history_limit)
            .unwrap_or(DEFAULT_FAILED_HISTORY);
        let of = |how: &str| -> Vec<Arc<Job>> {
            jobs.iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none() && finished(j) == Some(how))
                .cloned()
                .collect()
        };
        let doomed = oldest_beyond(of("Complete"), keep_ok)
            .into_iter()
            .chain(oldest_beyond(of("Failed"), keep_failed));
        for j in doomed {
            // A failure is retried at the next sync (the Job's own update brings one).
            let _ = self.delete_job(cj, ns, &j.name_any()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn cronjob(extra: serde_json::Value) -> CronJob {
        let mut v = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default", "uid": "u1",
                         "creationTimestamp": "2026-12-07T10:00:30Z"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {"template": {"spec": {"containers": []}}}}},
        });
        json_patch_merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn json_patch_merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    json_patch_merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn the_most_recent_unmet_time_and_the_missed_count() {
        let every_minute = skiff_api::cron::parse("*/1 * * * *").unwrap();
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(
            most_recent(
                &every_minute,
                &utc,
                t("2026-12-07T10:00:30Z"),
                t("2026-12-07T10:00:59Z")
            ),
            (None, 0)
        );
        assert_eq!(
            most_recent(
                &every_minute,
                &utc,
                t("2026-12-07T10:00:30Z"),
                t("2026-12-07T10:03:10Z")
            ),
            (Some(t("2026-12-07T10:03:00Z")), 3)
        );
        // A day missed: more than 100 times, and the latest is still found.
        let (recent, missed) = most_recent(
            &every_minute,
            &utc,
            t("2026-12-06T10:00:30Z"),
            t("2026-12-07T10:03:10Z"),
        );
        assert_eq!(recent, Some(t("2026-12-07T10:03:00Z")));
        assert!(missed > MAX_MISSED);
        let yearly = skiff_api::cron::parse("@yearly").unwrap();
        assert_eq!(
            most_recent(
                &yearly,
                &utc,
                t("2020-06-01T00:00:00Z"),
                t("2026-12-07T10:03:10Z")
            ),
            (Some(t("2026-01-01T00:00:00Z")), 6)
        );
    }

    #[test]
    fn the_starting_deadline_moves_the_earliest_time() {
        let now = t("2026-12-07T12:00:00Z");
        assert_eq!(
            earliest_time(&cronjob(json!({})), now),
            t("2026-12-07T10:00:30Z")
        );
        let with_last = cronjob(json!({"status": {"lastScheduleTime": "2026-12-07T11:00:00Z"}}));
        assert_eq!(earliest_time(&with_last, now), t("2026-12-07T11:00:00Z"));
        let deadline = cronjob(json!({"spec": {"startingDeadlineSeconds": 120},
                                      "status": {"lastScheduleTime": "2026-12-07T11:00:00Z"}}));
        assert_eq!(earliest_time(&deadline, now), t("2026-12-07T11:58:00Z"));
    }

    #[test]
    fn jobs_are_named_by_the_scheduled_minute_and_owned() {
        let cj = cronjob(json!({}));
        let at = t("2026-12-07T10:03:00Z");
        let job = job_from_template(&cj, at, &jiff::tz::TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("hello-29943963"));
        assert_eq!(at.as_second() / 60, 29943963);
        let ann = job.metadata.annotations.unwrap();
        assert_eq!(ann[SCHEDULED_TIMESTAMP], "2026-12-07T10:03:00Z");
        assert_eq!(job.metadata.labels.unwrap()["app"], "hello");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "u1", Some(true))
        );
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let job = job_from_template(&cj, at, &berlin);
        assert_eq!(
            job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
            "2026-12-07T11:03:00+01:00"
        );
    }

    #[test]
    fn history_keeps_the_newest_finished_jobs() {
        let job = |name: &str, start: Option<&str>| -> Arc<Job> {
            Arc::new(
                serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "status": {"startTime": start, "conditions": [
                        {"type": "Complete", "status": "True"}]},
                }))
                .unwrap(),
            )
        };
        let jobs = vec![
            job("c", Some("2026-12-07T10:03:00Z")),
            job("a", Some("2026-12-07T10:01:00Z")),
            job("none", None),
            job("b", Some("2026-12-07T10:02:00Z")),
        ];
        let names = |v: Vec<Arc<Job>>| v.iter().map(|j| j.name_any()).collect::<Vec<_>>();
        assert_eq!(names(oldest_beyond(jobs.clone(), 1)), ["a", "b", "c"]);
        assert_eq!(names(oldest_beyond(jobs.clone(), 3)), ["a"]);
        assert!(oldest_beyond(jobs.clone(), 4).is_empty());
        assert_eq!(names(oldest_beyond(jobs, 0)).len(), 4);
        assert_eq!(finished(&job("x", None)), Some("Complete"));
    }

    #[test]
    fn deadlines_and_concurrency_policies_decide_a_run() {
        let spec = |extra: serde_json::Value| -> CronJobSpec {
            cronjob(json!({"spec": extra})).spec.unwrap()
        };
        let at = t("2026-12-07T10:03:00Z");
        let now = t("2026-12-07T10:03:30Z");
        let running = vec![ObjectReference {
            name: Some("hello-29943962".into()),
            ..Default::default()
        }];
        let name = "hello-29943963";
        let d = |s: &CronJobSpec, active: &[ObjectReference], last: Option<&Time>| {
            decide(s, at, now, active, last, name)
        };
        let allow = spec(json!({}));
        assert_eq!(d(&allow, &running, None), Decision::Run { replace: false });
        // Too late for a 10 s deadline, in time for a 60 s one.
        assert_eq!(
            d(&spec(json!({"startingDeadlineSeconds": 10})), &[], None),
            Decision::Missed
        );
        assert_eq!(
            d(&spec(json!({"startingDeadlineSeconds": 60})), &[], None),
            Decision::Run { replace: false }
        );
        // Run already: its time is the last scheduled one, or its Job is active.
        assert_eq!(d(&allow, &[], Some(&Time(at))), Decision::AlreadyRun);
        let mine = vec![ObjectReference {
            name: Some(name.into()),
            ..Default::default()
        }];
        assert_eq!(d(&allow, &mine, None), Decision::AlreadyRun);
        let forbid = spec(json!({"concurrencyPolicy": "Forbid"}));
        assert_eq!(d(&forbid, &running, None), Decision::Forbidden);
        assert_eq!(d(&forbid, &[], None), Decision::Run { replace: false });
        let replace = spec(json!({"concurrencyPolicy": "Replace"}));
        assert_eq!(d(&replace, &running, None), Decision::Run { replace: true });
        assert_eq!(d(&replace, &[], None), Decision::Run { replace: false });
    }
}
