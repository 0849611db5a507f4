//! The Job controller: runs a Job's pods to completion. Each sync counts the Job's finished
//! pods, decides how many pods must run (`parallelism`, `completions`, and for
//! `completionMode: Indexed` which indexes), creates or deletes pods, and writes status with
//! Kubernetes' conditions (`SuccessCriteriaMet` then `Complete`, for `CompletionsReached` or a
//! `successPolicy`; `FailureTarget` then `Failed` for `BackoffLimitExceeded`,
//! `DeadlineExceeded`, `PodFailurePolicy`, `FailedIndexes` and `MaxFailedIndexesExceeded`;
//! `Suspended`).
//!
//! An Indexed Job with `backoffLimitPerIndex` retries each index on its own: every pod carries
//! its index's failure count so far (the `batch.kubernetes.io/job-index-failure-count`
//! annotation), an index whose pod fails at the limit (or matches a `FailIndex` rule) joins
//! `status.failedIndexes` and is not run again, and the Job fails once all indexes have
//! finished with some failed (or earlier, past `maxFailedIndexes`). As upstream, the last failed
//! pod of an index keeps its tracking finalizer until its replacement exists, so the count it
//! carries survives its deletion.
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer, so a finished pod cannot vanish
//! before it is counted: its uid is first written to `status.uncountedTerminatedPods`, then the
//! finalizer is removed, then (once the pod shows no finalizer) the uid moves into
//! `status.succeeded`/`failed`. The counts live in the Job's status, not in memory, so they
//! survive a controller restart and the pods' deletion. Recreations after failures wait an
//! exponential back-off (10 s doubling, at most 6 min), as upstream's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobStatus, PodFailurePolicy, SuccessPolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use skiff_client::events::{EventType, Recorder};
use tokio::time::Instant;

use crate::context::Context;
use crate::controller::{Controller, Expectations, PARALLEL, Reconciler, Result};
use crate::pods::{self, CachedPod};
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, Informer, key_of, split_key};

/// The finalizer that keeps a Job's pod until the controller has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation and label holding an Indexed Job pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed Job's containers read their index from.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The annotation holding how many counted failures an index had before this pod.
pub const FAILURE_COUNT_KEY: &str = pods::KEPT_ANNOTATIONS[0];
/// The annotation holding how many failures of an index a `podFailurePolicy` ignored.
pub const IGNORED_COUNT_KEY: &str = pods::KEPT_ANNOTATIONS[1];
/// At most this many pods are created or deleted in one sync (upstream's MaxPodCreateDeletePerSync).
pub const BURST: usize = 500;
/// Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(360);

pub const MSG_BACKOFF: &str = "Job has reached the specified backoff limit";
pub const MSG_DEADLINE: &str = "Job was active longer than specified deadline";
pub const MSG_COMPLETIONS: &str = "Reached expected number of succeeded pods";
pub const MSG_MAX_FAILED_INDEXES: &str =
    "Job has exceeded the specified maximal number of failed indexes";
pub const MSG_FAILED_INDEXES: &str = "Job has failed indexes";

/// How long to wait before creating a pod after `failures` failures since the last success.
pub fn backoff_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(16);
    (BACKOFF_BASE * (1u32 << shift)).min(BACKOFF_MAX)
}

/// Kubernetes' compressed list of indexes (`status.completedIndexes`): sorted and
/// comma-separated, a run of three or more consecutive indexes written `a-b` (`1,3-5,7,8`).
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        out.push(match last - first {
            0 => first.to_string(),
            1 => format!("{first},{last}"),
            _ => format!("{first}-{last}"),
        });
    }
    out.join(",")
}

/// Parses [`format_indexes`]' form, keeping indexes below `completions`.
pub fn parse_indexes(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            set.extend((a.max(0)..=b.min(completions - 1)).filter(|i| *i >= 0));
        }
    }
    set
}

/// An Indexed Job pod's completion index (from its label).
pub fn pod_index(p: &CachedPod) -> Option<i32> {
    p.labels.get(INDEX_KEY)?.parse().ok()
}

fn phase(p: &CachedPod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Finished with success.
pub fn is_succeeded(p: &CachedPod) -> bool {
    phase(p) == Some("Succeeded")
}

/// Finished with failure: phase Failed, or deleted before it succeeded (an orphaned pod may
/// never reach a phase; upstream counts it failed too) unless `only_failed_phase` (the Job's
/// `podReplacementPolicy: Failed`, which a `podFailurePolicy` implies).
pub fn is_failed(p: &CachedPod, only_failed_phase: bool) -> bool {
    phase(p) == Some("Failed")
        || (!only_failed_phase
            && p.metadata.deletion_timestamp.is_some()
            && phase(p) != Some("Succeeded"))
}

/// Whether only pods in phase Failed are failures (and replaced), as upstream's
/// `onlyReplaceFailedPods`.
fn only_failed_phase(job: &Job) -> bool {
    job.spec.as_ref().is_some_and(|s| {
        s.pod_replacement_policy.as_deref() == Some("Failed") || s.pod_failure_policy.is_some()
    })
}

/// What a Job's `podFailurePolicy` makes of a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAction {
    /// The Job fails, with this message.
    FailJob(String),
    /// The failure does not count toward `backoffLimit`.
    Ignore,
    /// The failure counts (also when no rule matches).
    Count,
    /// The failure counts, and the pod's index fails at once (`backoffLimitPerIndex`).
    FailIndex,
}

/// The first rule of `policy` that the failed pod matches, as upstream's
/// `matchPodFailurePolicy`: an exit-code rule matches a terminated container (of the named
/// one, if named) with a non-zero code In or NotIn its values; a condition rule matches a
/// pod condition of that type and status.
pub fn match_failure_policy(policy: &PodFailurePolicy, pod: &CachedPod) -> PolicyAction {
    let Some(facts) = pod.status.as_ref().and_then(|s| s.failure.as_deref()) else {
        return PolicyAction::Count;
    };
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            facts
                .exit_codes
                .iter()
                .find(|(container, code)| {
                    *code != 0
                        && req.container_name.as_ref().is_none_or(|n| n == container)
                        && match req.operator.as_str() {
                            "In" => req.values.contains(code),
                            "NotIn" => !req.values.contains(code),
                            _ => false,
                        }
                })
                .map(|(container, code)| {
                    format!(
                        "Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                        rule.action
                    )
                })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            facts
                .conditions
                .iter()
                .find(|(t, st)| patterns.iter().any(|p| &p.type_ == t && &p.status == st))
                .map(|(t, _)| {
                    format!(
                        "Pod {ns}/{name} has condition {t} matching {} rule at index {index}",
                        rule.action
                    )
                })
        } else {
            None
        };
        let Some(message) = matched else { continue };
        match rule.action.as_str() {
            "FailJob" => return PolicyAction::FailJob(message),
            "Ignore" => return PolicyAction::Ignore,
            "Count" => return PolicyAction::Count,
            "FailIndex" => return PolicyAction::FailIndex,
            _ => {}
        }
    }
    PolicyAction::Count
}

/// An Indexed Job pod's failure counts for its index before it ran: (counted, ignored).
pub fn index_failure_counts(p: &CachedPod) -> (i32, i32) {
    let get = |k: &str| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0)
            .max(0)
    };
    (get(FAILURE_COUNT_KEY), get(IGNORED_COUNT_KEY))
}

/// The counts the next pod of an index carries, given the failed pod it replaces: one more
/// ignored failure if the `podFailurePolicy` ignores this one, else one more counted.
pub fn next_failure_counts(last: &CachedPod, policy: Option<&PodFailurePolicy>) -> (i32, i32) {
    let (counted, ignored) = index_failure_counts(last);
    match policy.map(|pol| match_failure_policy(pol, last)) {
        Some(PolicyAction::Ignore) => (counted, ignored + 1),
        _ => (counted + 1, ignored),
    }
}

/// Whether a failed pod fails its index (upstream's isIndexFailed): a `FailIndex` rule matches
/// it, or its failure counts and its index had already used up `limit` retries.
pub fn fails_index(p: &CachedPod, policy: Option<&PodFailurePolicy>, limit: i32) -> bool {
    match policy.map(|pol| match_failure_policy(pol, p)) {
        Some(PolicyAction::FailIndex) => true,
        Some(PolicyAction::Ignore) => false,
        _ => index_failure_counts(p).0 >= limit,
    }
}

/// The first `successPolicy` rule the succeeded indexes satisfy, as the condition's message
/// (upstream's matchSuccessPolicy): all of a rule's `succeededIndexes`, or `succeededCount` of
/// them, or with only `succeededCount`, that many indexes of any kind.
pub fn match_success_policy(
    policy: &SuccessPolicy,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    if succeeded.is_empty() {
        return None;
    }
    policy.rules.iter().enumerate().find_map(|(index, rule)| {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(text), count) => {
                let required = parse_indexes(text, completions);
                let have = required.intersection(succeeded).count();
                !required.is_empty()
                    && (have == required.len() || count.is_some_and(|c| have as i32 >= c))
            }
            (None, Some(count)) => succeeded.len() as i32 >= count,
            (None, None) => false,
        };
        met.then(|| format!("Matched rules at index {index}"))
    })
}

fn has_finalizer(p: &CachedPod) -> bool {
    p.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

/// What to do with a Job's pods this sync.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PodPlan {
    /// Pods to create: one entry each, its completion index for an Indexed Job.
    pub create: Vec<Option<i32>>,
    /// Active pods to delete, by name.
    pub delete: Vec<String>,
}

/// How many pods should run, which to start and which to stop, given the active pods, the
/// succeeded count (NonIndexed) and the completed indexes (Indexed).
pub fn plan_pods(
    indexed: bool,
    parallelism: i32,
    completions: Option<i32>,
    active: &[Arc<CachedPod>],
    succeeded: i32,
    completed: &BTreeSet<i32>,
) -> PodPlan {
    let parallelism = parallelism.max(0) as usize;
    let mut plan = PodPlan::default();
    let mut kept: Vec<Arc<CachedPod>> = Vec::new();
    let want = if indexed {
        let completions = completions.unwrap_or(0).max(0);
        // Duplicates of an index, indexes out of range or already completed go first.
        let mut seen = BTreeSet::new();
        for p in active {
            match pod_index(p) {
                Some(i) if i < completions && !completed.contains(&i) && seen.insert(i) => {
                    kept.push(p.clone())
                }
                _ => plan.delete.push(p.name_any()),
            }
        }
        parallelism.min((completions as usize).saturating_sub(completed.len()))
    } else {
        kept = active.to_vec();
        match completions {
            None if succeeded > 0 => 0,
            None => parallelism,
            Some(c) => parallelism.min((c - succeeded).max(0) as usize),
        }
    };
    if kept.len() > want {
        kept.sort_by(|a, b| pods::deletion_order(a, b));
        let extra = kept.len() - want;
        plan.delete
            .extend(kept.iter().take(extra).map(|p| p.name_any()));
    } else if kept.len() < want {
        let n = (want - kept.len()).min(BURST);
        if indexed {
            let running: BTreeSet<i32> = kept.iter().filter_map(|p| pod_index(p)).collect();
            plan.create = (0..completions.unwrap_or(0))
                .filter(|i| !completed.contains(i) && !running.contains(i))
                .take(n)
                .map(Some)
                .collect();
        } else {
            plan.create = vec![None; n];
        }
    }
    plan.delete.truncate(BURST);
    plan
}

/// Why a Job is finishing (its `SuccessCriteriaMet` or `FailureTarget` reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finishing {
    Success { reason: String, message: String },
    Failure { reason: String, message: String },
}

impl Finishing {
    fn failure(reason: &str, message: &str) -> Self {
        Finishing::Failure {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// A Job's counts for [`finishing`].
#[derive(Debug)]
pub struct Progress<'a> {
    pub succeeded: i32,
    pub failed: i32,
    pub completed: &'a BTreeSet<i32>,
    /// Indexes that failed (`backoffLimitPerIndex`).
    pub failed_indexes: &'a BTreeSet<i32>,
    pub any_active: bool,
}

/// Whether a Job that is not yet finishing must finish now, checked in upstream's order: too
/// many failures, past its deadline, failed indexes, a `successPolicy` rule met, or enough
/// successes.
pub fn finishing(job: &Job, p: &Progress, now: jiff::Timestamp) -> Option<Finishing> {
    let spec = job.spec.as_ref()?;
    let per_index = is_indexed(job) && spec.backoff_limit_per_index.is_some();
    let default_limit = if per_index { i32::MAX } else { 6 };
    if p.failed > spec.backoff_limit.unwrap_or(default_limit) {
        return Some(Finishing::failure("BackoffLimitExceeded", MSG_BACKOFF));
    }
    let start = job.status.as_ref().and_then(|s| s.start_time.as_ref());
    if let (Some(ads), Some(start), false) = (
        spec.active_deadline_seconds,
        start,
        spec.suspend.unwrap_or(false),
    ) && start.0 + jiff::SignedDuration::from_secs(ads) <= now
    {
        return Some(Finishing::failure("DeadlineExceeded", MSG_DEADLINE));
    }
    let completions = spec.completions.unwrap_or(0);
    let failed_indexes = p.failed_indexes.len() as i32;
    if per_index && spec.max_failed_indexes.is_some_and(|m| failed_indexes > m) {
        return Some(Finishing::failure(
            "MaxFailedIndexesExceeded",
            MSG_MAX_FAILED_INDEXES,
        ));
    }
    if per_index && failed_indexes > 0 && failed_indexes + p.completed.len() as i32 >= completions {
        return Some(Finishing::failure("FailedIndexes", MSG_FAILED_INDEXES));
    }
    if let (true, Some(policy)) = (is_indexed(job), spec.success_policy.as_ref())
        && let Some(message) = match_success_policy(policy, completions, p.completed)
    {
        return Some(Finishing::Success {
            reason: "SuccessPolicy".into(),
            message,
        });
    }
    let done = if is_indexed(job) {
        spec.completions
            .is_some_and(|c| p.completed.len() as i32 >= c)
    } else {
        match spec.completions {
            Some(c) => p.succeeded >= c && !p.any_active,
            None => p.succeeded > 0 && !p.any_active,
        }
    };
    done.then(|| Finishing::Success {
        reason: "CompletionsReached".into(),
        message: MSG_COMPLETIONS.into(),
    })
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job has its final condition (`Complete` or `Failed`).
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| has_condition(s, "Complete") || has_condition(s, "Failed"))
}

/// Sets a condition, keeping its lastTransitionTime when the status does not change.
fn set_condition(status: &mut JobStatus, type_: &str, value: &str, reason: &str, message: &str) {
    let now = Time(jiff::Timestamp::now());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value => {
            c.reason = Some(reason.into());
            c.message = Some(message.into());
        }
        Some(c) => {
            *c = JobCondition {
                type_: type_.into(),
                status: value.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_probe_time: Some(now.clone()),
                last_transition_time: Some(now),
            }
        }
        None => conditions.push(JobCondition {
            type_: type_.into(),
            status: value.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now),
        }),
    }
}

fn existing_finishing(status: &JobStatus) -> Option<Finishing> {
    let conditions = status.conditions.iter().flatten();
    for c in conditions {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "SuccessCriteriaMet" => {
                return Some(Finishing::Success {
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                });
            }
            "FailureTarget" => {
                return Some(Finishing::Failure {
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                });
            }
            _ => {}
        }
    }
    None
}

/// Failures since the Job's last success, for the back-off.
#[derive(Debug, Default)]
struct BackoffRecord {
    failures: u32,
    last_failure: Option<Instant>,
    seen: HashSet<String>,
    /// With `backoffLimitPerIndex`: each index's last failed pod (by uid) and when it was
    /// first seen failed, for the index's own back-off.
    index_failed_at: HashMap<i32, (String, Instant)>,
}

pub struct JobController {
    client: kube::Client,
    ctx: Arc<Context>,
    jobs: Arc<Informer<Job>>,
    expectations: Arc<Expectations>,
    /// Pods (by uid) whose finalizer this controller removed, until the watch shows it gone:
    /// a stale cache must not count them twice.
    released: Arc<Mutex<HashSet<String>>>,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
    recorder: Recorder,
}

fn job_key_of(p: &CachedPod) -> Option<String> {
    pods::controller_of(&p.metadata)
        .filter(|r| r.kind == "Job")
        .map(|r| format!("{}/{}", p.namespace().unwrap_or_default(), r.name))
}

impl JobController {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let jobs = ctx.jobs();
        let q = queue.clone();
        let all = jobs.clone();
        jobs.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(key_of(*new)),
            Change::Deleted(o) => q.add(key_of(*o)),
            Change::Resynced => all.list().iter().for_each(|o| q.add(key_of(o.as_ref()))),
        });
        let expectations = Arc::new(Expectations::default());
        let released: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (q, exp, rel) = (queue.clone(), expectations.clone(), released.clone());
        ctx.pods.on_change(move |c| match c {
            Change::Applied { old, new } => {
                if let Some(k) = job_key_of(new) {
                    if old.is_none() {
                        exp.creation_observed(&k);
                    }
                    if new.metadata.deletion_timestamp.is_some() {
                        exp.deletion_observed(&k, &key_of(*new));
                    }
                    if !has_finalizer(new) {
                        let uid = new.metadata.uid.clone().unwrap_or_default();
                        rel.lock().expect("released lock").remove(&uid);
                    }
                    q.add(k);
                }
            }
            Change::Deleted(p) => {
                if let Some(k) = job_key_of(p) {
                    exp.deletion_observed(&k, &key_of(*p));
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    rel.lock().expect("released lock").remove(&uid);
                    q.add(k);
                }
            }
            Change::Resynced => {}
        });
        let client = ctx.client_for(Self::SERVICE_ACCOUNT);
        Arc::new(JobController {
            recorder: Recorder::new(
                client.clone(),
                "job-controller",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            client,
            ctx,
            jobs,
            expectations,
            released,
            backoff: Mutex::default(),
        })
    }

    /// Removes the tracking finalizer from `pod` (guarded by its resourceVersion: a conflict
    /// or a vanished pod is left to the next sync).
    async fn release(&self, pod: &CachedPod) -> Result<()> {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let rest: Vec<&String> = pod
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != TRACKING_FINALIZER)
            .collect();
        let patch = json!({"metadata": {
            "finalizers": rest,
            "resourceVersion": pod.metadata.resource_version,
        }});
        match api
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.released.lock().expect("released lock").insert(uid);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases pods, [`PARALLEL`] requests at a time (as upstream removes finalizers in
    /// parallel): with 100 pods finishing together, one at a time made each sync wait for
    /// all their round trips in turn.
    async fn release_all(&self, pods: Vec<Arc<CachedPod>>) -> Result<()> {
        let held: Vec<Arc<CachedPod>> = pods.into_iter().filter(|p| has_finalizer(p)).collect();
        let results: Vec<Result<()>> = futures::stream::iter(held)
            .map(|p| async move { self.release(&p).await })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        results.into_iter().collect()
    }

    fn new_pod(&self, job: &Job, index: Option<i32>, counts: Option<(i32, i32)>) -> Option<Pod> {
        let spec = job.spec.as_ref()?;
        let ns = job.namespace().unwrap_or_default();
        let name = job.name_any();
        let prefix = match index {
            Some(i) => format!("{name}-{i}"),
            None => name.clone(),
        };
        let mut pod =
            pods::pod_from_template(&spec.template, &ns, &prefix, pods::controller_ref(job));
        pod.metadata
            .finalizers
            .get_or_insert_with(Vec::new)
            .push(TRACKING_FINALIZER.into());
        if let Some(i) = index {
            let annotations = pod
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            annotations.insert(INDEX_KEY.into(), i.to_string());
            if spec.backoff_limit_per_index.is_some() {
                let (counted, ignored) = counts.unwrap_or_default();
                annotations.insert(FAILURE_COUNT_KEY.into(), counted.to_string());
                if ignored > 0 {
                    annotations.insert(IGNORED_COUNT_KEY.into(), ignored.to_string());
                }
            }
            pod.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(INDEX_KEY.into(), i.to_string());
            if let Some(ps) = pod.spec.as_mut() {
                if ps.hostname.is_none() {
                    ps.hostname = Some(format!("{name}-{i}"));
                }
                let env = EnvVar {
                    name: INDEX_ENV.into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                        }),
                        ..Default::default()
                    }),
                };
                let containers = ps
                    .containers
                    .iter_mut()
                    .chain(ps.init_containers.iter_mut().flatten());
                for c in containers {
                    let vars = c.env.get_or_insert_with(Vec::new);
                    if !vars.iter().any(|v| v.name == INDEX_ENV) {
                        vars.push(env.clone());
                    }
                }
            }
        }
        Some(pod)
    }

    /// Creates a pod per entry of `indexes`; with `backoffLimitPerIndex`, each carries its
    /// index's failure counts from `counts` (none yet when absent).
    async fn create_pods(
        &self,
        key: &str,
        job: &Job,
        indexes: Vec<Option<i32>>,
        counts: &HashMap<i32, (i32, i32)>,
    ) {
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pods: Vec<Pod> = indexes
            .into_iter()
            .filter_map(|i| self.new_pod(job, i, i.and_then(|i| counts.get(&i).copied())))
            .collect();
        self.expectations.expect_creations(key, pods.len() as i64);
        let results: Vec<_> = futures::stream::iter(pods)
            .map(|pod| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &pod)
                        .await
                        .map(|p| p.metadata.name.unwrap_or_default())
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for r in results {
            match r {
                Ok(name) => self.recorder.publish(
                    job.object_ref(&()),
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                ),
                Err(e) => {
                    self.expectations.creation_observed(key);
                    let msg = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    };
                    self.recorder.publish(
                        job.object_ref(&()),
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {msg}"),
                    );
                }
            }
        }
    }

    /// Deletes pods; those deleted without being failures (scale-down, suspension) lose their
    /// tracking finalizer first, so that they are never counted, as upstream's.
    async fn delete_pods(
        &self,
        key: &str,
        job: &Job,
        victims: Vec<Arc<CachedPod>>,
        keep_finalizer: bool,
    ) {
        if victims.is_empty() {
            return;
        }
        let mut names = Vec::new();
        for p in victims {
            if !keep_finalizer && has_finalizer(&p) && self.release(&p).await.is_err() {
                continue;
            }
            names.push(p.name_any());
        }
        let ns = job.namespace().unwrap_or_default();
        crate::controller::delete_pods(
            &self.client,
            &self.recorder,
            &self.expectations,
            key,
            &job.object_ref(&()),
            &ns,
            names,
        )
        .await;
    }

    /// Writes the status, guarded by the Job's resourceVersion: counts move between
    /// `uncountedTerminatedPods` and the totals, so a write computed from a stale Job must fail.
    async fn write_status(&self, job: &Job, status: &JobStatus) -> kube::Result<Job> {
        let api: Api<Job> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let body = Job {
            metadata: kube::api::ObjectMeta {
                name: job.metadata.name.clone(),
                namespace: job.metadata.namespace.clone(),
                resource_version: job.metadata.resource_version.clone(),
                ..Default::default()
            },
            spec: None,
            status: Some(status.clone()),
        };
        api.replace_status(&job.name_any(), &PostParams::default(), &body)
            .await
    }
}

impl Controller for JobController {
    const SERVICE_ACCOUNT: &'static str = "job-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for JobController {
    const NAME: &'static str = "job";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let all_pods = self.ctx.pods.list_in(ns);
        let Some(job) = self.jobs.get(Some(ns), name) else {
            // The Job is gone: nothing will count its pods any more, so they are let go.
            self.expectations.forget(key);
            self.backoff.lock().expect("backoff lock").remove(key);
            let orphans = all_pods
                .into_iter()
                .filter(|p| job_key_of(p).as_deref() == Some(key))
                .collect();
            self.release_all(orphans).await?;
            return Ok(None);
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let (owned, others): (Vec<_>, Vec<_>) = all_pods
            .into_iter()
            .filter(|p| job_key_of(p).as_deref() == Some(key))
            .partition(|p| pods::controller_of(&p.metadata).is_some_and(|r| r.uid == uid));
        // Pods of an earlier Job of the same name.
        self.release_all(others).await?;
        if is_finished(&job) || job.metadata.deletion_timestamp.is_some() {
            self.release_all(owned).await?;
            return Ok(None);
        }
        let Some(spec) = job.spec.clone() else {
            return Ok(None);
        };
        let indexed = is_indexed(&job);
        let completions = spec.completions;
        let old = job.status.clone().unwrap_or_default();
        let mut status = old.clone();
        let now = jiff::Timestamp::now();

        // Move uids whose pods are gone or released into the totals.
        let with_finalizer: HashSet<String> = owned
            .iter()
            .filter(|p| has_finalizer(p))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
        let mut un_succeeded: BTreeSet<String> =
            uncounted.succeeded.into_iter().flatten().collect();
        let mut un_failed: BTreeSet<String> = uncounted.failed.into_iter().flatten().collect();
        let before = (un_succeeded.len(), un_failed.len());
        un_succeeded.retain(|u| with_finalizer.contains(u));
        un_failed.retain(|u| with_finalizer.contains(u));
        let mut succeeded = status.succeeded.unwrap_or(0) + (before.0 - un_succeeded.len()) as i32;
        let mut failed = status.failed.unwrap_or(0) + (before.1 - un_failed.len()) as i32;
        let mut completed = status
            .completed_indexes
            .as_deref()
            .map(|t| parse_indexes(t, completions.unwrap_or(0)))
            .unwrap_or_default();

        let policy = spec.pod_failure_policy.as_ref();
        let only_failed = only_failed_phase(&job);
        let per_index = spec.backoff_limit_per_index.filter(|_| indexed);
        // With `backoffLimitPerIndex`: the indexes that failed, and for each index still to
        // run that has no active pod, its last failed pod, whose counts its replacement
        // carries on. That pod keeps its finalizer (it is not counted yet) until the
        // replacement exists, unless the Job is already finishing.
        let mut failed_indexes = BTreeSet::new();
        let mut last_failed: HashMap<i32, Arc<CachedPod>> = HashMap::new();
        if let Some(limit) = per_index {
            let n = completions.unwrap_or(0);
            failed_indexes = status
                .failed_indexes
                .as_deref()
                .map(|t| parse_indexes(t, n))
                .unwrap_or_default();
            // A pod deleted without failing (scale-down, suspension) lost its finalizer
            // first: it is no failure of its index.
            let failed_pods: Vec<(i32, &Arc<CachedPod>)> = owned
                .iter()
                .filter(|p| {
                    is_failed(p, only_failed) && (phase(p) == Some("Failed") || has_finalizer(p))
                })
                .filter_map(|p| pod_index(p).filter(|i| (0..n).contains(i)).map(|i| (i, p)))
                .collect();
            // An index fails when its pod is counted (before the finalizer goes); from then
            // on `status.failedIndexes` holds it.
            for (i, p) in &failed_pods {
                if has_finalizer(p) && fails_index(p, policy, limit) {
                    failed_indexes.insert(*i);
                }
            }
            let running: HashSet<i32> = owned
                .iter()
                .filter(|p| pods::is_active(p))
                .filter_map(|p| pod_index(p))
                .collect();
            for (i, p) in failed_pods {
                if failed_indexes.contains(&i) || completed.contains(&i) || running.contains(&i) {
                    continue;
                }
                let total = |p: &CachedPod| {
                    let (c, ig) = index_failure_counts(p);
                    c + ig
                };
                let newer = last_failed.get(&i).is_none_or(|l| total(l) <= total(p));
                if newer {
                    last_failed.insert(i, p.clone());
                }
            }
        }
        let delayed: HashSet<String> = if existing_finishing(&old).is_none() {
            last_failed
                .values()
                .filter(|p| has_finalizer(p))
                .filter_map(|p| p.metadata.uid.clone())
                .collect()
        } else {
            HashSet::new()
        };

        // Newly finished pods join the uncounted ones; an Indexed Job's succeeded pods add
        // their index to the completed ones instead, and are then released.
        let mut release_only = Vec::new();
        // Once the success criteria are met the remaining pods are stopped: one seen deleted
        // before it reached a phase is no failure (upstream counts only pods that fail then).
        let success_met = matches!(existing_finishing(&old), Some(Finishing::Success { .. }));
        {
            let released = self.released.lock().expect("released lock");
            let mut backoff = self.backoff.lock().expect("backoff lock");
            let record = backoff.entry(key.to_string()).or_default();
            for p in owned.iter().filter(|p| has_finalizer(p)) {
                let puid = p.metadata.uid.clone().unwrap_or_default();
                if released.contains(&puid)
                    || un_succeeded.contains(&puid)
                    || un_failed.contains(&puid)
                    || delayed.contains(&puid)
                {
                    continue;
                }
                if is_succeeded(p) {
                    if indexed {
                        // The completed index is the record (no uid): a stale cache that
                        // shows the pod again finds its index already there.
                        if let Some(i) = pod_index(p).filter(|i| *i < completions.unwrap_or(0)) {
                            completed.insert(i);
                        }
                        release_only.push(p.clone());
                    } else {
                        un_succeeded.insert(puid.clone());
                    }
                    if record.seen.insert(puid) {
                        record.failures = 0;
                    }
                } else if is_failed(p, only_failed) {
                    if success_met && phase(p) != Some("Failed") {
                        release_only.push(p.clone());
                        continue;
                    }
                    if policy
                        .is_some_and(|pol| match_failure_policy(pol, p) == PolicyAction::Ignore)
                    {
                        release_only.push(p.clone());
                        continue;
                    }
                    un_failed.insert(puid.clone());
                    if record.seen.insert(puid) {
                        record.failures += 1;
                        record.last_failure = Some(Instant::now());
                    }
                }
            }
        }
        succeeded += un_succeeded.len() as i32;
        if indexed {
            succeeded = completed.len() as i32;
        }
        failed += un_failed.len() as i32;

        let active: Vec<Arc<CachedPod>> = owned
            .iter()
            .filter(|p| pods::is_active(p))
            .cloned()
            .collect();
        let terminating = owned
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_some()
                    && !matches!(phase(p), Some("Succeeded") | Some("Failed"))
            })
            .count() as i32;
        let suspended = spec.suspend.unwrap_or(false);
        if status.start_time.is_none() && !suspended {
            status.start_time = Some(Time(now));
        }
        let mut job_now = (*job).clone();
        job_now.status = Some(status.clone());
        // A pod that matches a FailJob rule fails the Job before any other check.
        let policy_failure = policy.and_then(|pol| {
            owned
                .iter()
                .filter(|p| phase(p) == Some("Failed"))
                .find_map(|p| match match_failure_policy(pol, p) {
                    PolicyAction::FailJob(message) => Some(Finishing::Failure {
                        reason: "PodFailurePolicy".into(),
                        message,
                    }),
                    _ => None,
                })
        });
        let progress = Progress {
            succeeded,
            failed,
            completed: &completed,
            failed_indexes: &failed_indexes,
            any_active: !active.is_empty(),
        };
        let finish = existing_finishing(&old)
            .or(policy_failure)
            .or_else(|| finishing(&job_now, &progress, now));
        let may_act = self.expectations.satisfied(key);
        let mut again: Option<Duration> = None;
        match &finish {
            Some(f) => {
                let success = matches!(f, Finishing::Success { .. });
                match f {
                    Finishing::Success { reason, message } => {
                        set_condition(&mut status, "SuccessCriteriaMet", "True", reason, message)
                    }
                    Finishing::Failure { reason, message } => {
                        set_condition(&mut status, "FailureTarget", "True", reason, message)
                    }
                }
                // Pods stopped because the Job failed keep their finalizer: they are counted
                // as failed once deleted. Those a `successPolicy` makes unnecessary are no
                // failures, and are let go uncounted.
                if may_act {
                    self.delete_pods(key, &job, active.clone(), !success).await;
                }
            }
            None if suspended => {
                // Suspension is no failure: the pods are let go uncounted.
                if may_act {
                    self.delete_pods(key, &job, active.clone(), false).await;
                }
                if !has_condition(&old, "Suspended") {
                    self.recorder.publish(
                        job.object_ref(&()),
                        EventType::Normal,
                        "Suspended",
                        "Job suspended".into(),
                    );
                }
                set_condition(
                    &mut status,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                );
            }
            None => {
                if has_condition(&old, "Suspended") {
                    self.recorder.publish(
                        job.object_ref(&()),
                        EventType::Normal,
                        "Resumed",
                        "Job resumed".into(),
                    );
                    set_condition(
                        &mut status,
                        "Suspended",
                        "False",
                        "JobResumed",
                        "Job resumed",
                    );
                    status.start_time = Some(Time(now));
                }
                // A failed index is as finished as a completed one: not run again.
                let finished_indexes: BTreeSet<i32> =
                    completed.union(&failed_indexes).copied().collect();
                let mut plan = plan_pods(
                    indexed,
                    spec.parallelism.unwrap_or(1),
                    completions,
                    &active,
                    succeeded,
                    &finished_indexes,
                );
                // With `backoffLimitPerIndex` each index waits its own back-off, counted from
                // its last failure, instead of the Job's.
                let mut counts = HashMap::new();
                if per_index.is_some() {
                    let mut backoff = self.backoff.lock().expect("backoff lock");
                    let record = backoff.entry(key.to_string()).or_default();
                    record
                        .index_failed_at
                        .retain(|i, _| last_failed.contains_key(i));
                    let mut waits = Vec::new();
                    plan.create.retain(|i| {
                        let Some(last) = i.and_then(|i| last_failed.get(&i).map(|p| (i, p))) else {
                            return true;
                        };
                        let (i, p) = last;
                        let next = next_failure_counts(p, policy);
                        counts.insert(i, next);
                        let uid = p.metadata.uid.clone().unwrap_or_default();
                        let at = record
                            .index_failed_at
                            .entry(i)
                            .or_insert_with(|| (uid.clone(), Instant::now()));
                        if at.0 != uid {
                            *at = (uid, Instant::now());
                        }
                        let wait =
                            backoff_delay((next.0 + next.1) as u32).saturating_sub(at.1.elapsed());
                        if !wait.is_zero() {
                            waits.push(wait);
                        }
                        wait.is_zero()
                    });
                    again = waits.into_iter().min();
                }
                // With `podReplacementPolicy: Failed` a terminating pod is replaced only
                // once it has failed.
                if only_failed {
                    let keep = plan.create.len().saturating_sub(terminating as usize);
                    plan.create.truncate(keep);
                }
                if may_act {
                    let extra = active
                        .iter()
                        .filter(|p| plan.delete.contains(&p.name_any()))
                        .cloned()
                        .collect();
                    self.delete_pods(key, &job, extra, false).await;
                    if !plan.create.is_empty() {
                        let wait = if per_index.is_some() {
                            Duration::ZERO
                        } else {
                            let backoff = self.backoff.lock().expect("backoff lock");
                            backoff.get(key).map_or(Duration::ZERO, |r| {
                                let elapsed = r.last_failure.map_or(Duration::MAX, |t| t.elapsed());
                                backoff_delay(r.failures).saturating_sub(elapsed)
                            })
                        };
                        if wait.is_zero() {
                            self.create_pods(key, &job, plan.create, &counts).await;
                        } else {
                            again = Some(wait);
                        }
                    }
                }
                if let (Some(ads), Some(start)) =
                    (spec.active_deadline_seconds, status.start_time.as_ref())
                {
                    let end = start.0 + jiff::SignedDuration::from_secs(ads);
                    let left = Duration::try_from(end.duration_since(now))
                        .unwrap_or(Duration::ZERO)
                        + Duration::from_millis(100);
                    again = Some(again.map_or(left, |a| a.min(left)));
                }
            }
        }

        // The final condition, once no pod runs or waits to be counted.
        let settled = active.is_empty()
            && terminating == 0
            && un_succeeded.is_empty()
            && un_failed.is_empty()
            && delayed.is_empty();
        let mut finished_now = None;
        if let (Some(f), true) = (&finish, settled) {
            match f {
                Finishing::Success { reason, message } => {
                    set_condition(&mut status, "Complete", "True", reason, message);
                    status.completion_time = Some(Time(now));
                    finished_now = Some((
                        EventType::Normal,
                        "Completed".to_string(),
                        "Job completed".to_string(),
                    ));
                }
                Finishing::Failure { reason, message } => {
                    set_condition(&mut status, "Failed", "True", reason, message);
                    finished_now = Some((EventType::Warning, reason.clone(), message.clone()));
                }
            }
        }
        status.active = Some(active.len() as i32);
        status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
        status.terminating = Some(terminating);
        status.succeeded = Some(succeeded - un_succeeded.len() as i32);
        status.failed = Some(failed - un_failed.len() as i32);
        if indexed {
            status.completed_indexes = Some(format_indexes(&completed));
        }
        if per_index.is_some() {
            status.failed_indexes = Some(format_indexes(&failed_indexes));
        }
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(un_succeeded.iter().cloned().collect()),
            failed: Some(un_failed.iter().cloned().collect()),
        });
        let to_release: Vec<Arc<CachedPod>> = owned
            .iter()
            .filter(|p| {
                let u = p.metadata.uid.as_deref().unwrap_or_default();
                un_succeeded.contains(u) || un_failed.contains(u)
            })
            .chain(release_only.iter())
            .cloned()
            .collect();
        if status != old {
            match self.write_status(&job, &status).await {
                Ok(_) => {}
                // A stale Job: the watch brings the newer one, which is synced again.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Ok(Some(Duration::from_millis(200)));
                }
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            if let Some((t, reason, message)) = finished_now {
                self.recorder
                    .publish(job.object_ref(&()), t, &reason, message);
                self.backoff.lock().expect("backoff lock").remove(key);
            }
        }
        // The uids are in the stored status now: the pods may go.
        self.release_all(to_release).await?;
        Ok(again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;

    fn active(names_and_indexes: &[(&str, Option<i32>)]) -> Vec<Arc<CachedPod>> {
        names_and_indexes
            .iter()
            .map(|(n, i)| {
                let mut f = pod(n).node("n1").running();
                if let Some(i) = i {
                    f = f.label(INDEX_KEY, &i.to_string());
                }
                Arc::new(f.build())
            })
            .collect()
    }

    #[test]
    fn indexes_compress_into_ranges_and_parse_back() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format_indexes(&set), "0-2,4,6,7");
        assert_eq!(parse_indexes("0-2,4,6,7", 10), set);
        assert_eq!(parse_indexes("3-9", 5), [3, 4].into());
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        let secs: Vec<u64> = (0..8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 320, 360]);
        assert_eq!(backoff_delay(100), BACKOFF_MAX);
    }

    #[test]
    fn non_indexed_plans() {
        let none = BTreeSet::new();
        type Case = (
            &'static str,
            i32,
            Option<i32>,
            Vec<Arc<CachedPod>>,
            i32,
            PodPlan,
        );
        let cases: Vec<Case> = vec![
            (
                "start parallelism",
                2,
                Some(5),
                vec![],
                0,
                PodPlan {
                    create: vec![None, None],
                    delete: vec![],
                },
            ),
            (
                "only what is left",
                3,
                Some(5),
                vec![],
                4,
                PodPlan {
                    create: vec![None],
                    delete: vec![],
                },
            ),
            (
                "steady",
                2,
                Some(5),
                active(&[("a", None), ("b", None)]),
                1,
                PodPlan::default(),
            ),
            (
                "scale down",
                1,
                Some(5),
                active(&[("a", None), ("b", None)]),
                0,
                PodPlan {
                    create: vec![],
                    delete: vec!["a".into()],
                },
            ),
            (
                "work queue: one success ends",
                3,
                None,
                vec![],
                1,
                PodPlan::default(),
            ),
            (
                "work queue starts parallelism",
                3,
                None,
                vec![],
                0,
                PodPlan {
                    create: vec![None; 3],
                    delete: vec![],
                },
            ),
        ];
        for (name, par, comp, act, succ, want) in cases {
            assert_eq!(
                plan_pods(false, par, comp, &act, succ, &none),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn indexed_plans_start_the_lowest_missing_indexes_and_drop_duplicates() {
        let completed: BTreeSet<i32> = [0, 2].into();
        let p = plan_pods(true, 2, Some(5), &active(&[("x", Some(1))]), 2, &completed);
        assert_eq!(
            p,
            PodPlan {
                create: vec![Some(3)],
                delete: vec![]
            }
        );
        let p = plan_pods(
            true,
            3,
            Some(5),
            &active(&[
                ("a", Some(1)),
                ("b", Some(1)),
                ("c", Some(2)),
                ("d", Some(9)),
            ]),
            2,
            &completed,
        );
        assert_eq!(p.delete, ["b", "c", "d"]);
        assert_eq!(p.create, [Some(3), Some(4)]);
        let all: BTreeSet<i32> = (0..5).collect();
        assert_eq!(
            plan_pods(true, 2, Some(5), &[], 5, &all),
            PodPlan::default()
        );
    }

    fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "default", "uid": "u"},
            "spec": spec, "status": status,
        }))
        .unwrap()
    }

    fn progress<'a>(
        succeeded: i32,
        failed: i32,
        completed: &'a BTreeSet<i32>,
        failed_indexes: &'a BTreeSet<i32>,
        any_active: bool,
    ) -> Progress<'a> {
        Progress {
            succeeded,
            failed,
            completed,
            failed_indexes,
            any_active,
        }
    }

    fn completions_reached() -> Option<Finishing> {
        Some(Finishing::Success {
            reason: "CompletionsReached".into(),
            message: MSG_COMPLETIONS.into(),
        })
    }

    #[test]
    fn finishing_conditions() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let none = BTreeSet::new();
        let tmpl = json!({"spec": {"containers": []}});
        let j = job(
            json!({"completions": 2, "backoffLimit": 1, "template": tmpl}),
            json!({}),
        );
        let now = t("2026-01-01T00:00:00Z");
        let fin = |j: &Job, s, f, c: &BTreeSet<i32>, a, now| {
            finishing(j, &progress(s, f, c, &none, a), now)
        };
        assert_eq!(fin(&j, 0, 1, &none, true, now), None);
        assert!(matches!(
            fin(&j, 0, 2, &none, true, now),
            Some(Finishing::Failure { reason, message }) if reason == "BackoffLimitExceeded" && message == MSG_BACKOFF
        ));
        assert_eq!(fin(&j, 2, 1, &none, false, now), completions_reached());
        let j = job(
            json!({"activeDeadlineSeconds": 10, "template": tmpl}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        assert_eq!(fin(&j, 0, 0, &none, true, t("2026-01-01T00:00:09Z")), None);
        assert!(matches!(
            fin(&j, 0, 0, &none, true, t("2026-01-01T00:00:10Z")),
            Some(Finishing::Failure { reason, .. }) if reason == "DeadlineExceeded"
        ));
        let j = job(
            json!({"completions": 3, "completionMode": "Indexed", "template": tmpl}),
            json!({}),
        );
        assert_eq!(fin(&j, 3, 0, &[0, 1].into(), false, now), None);
        assert_eq!(
            fin(&j, 3, 0, &[0, 1, 2].into(), false, now),
            completions_reached()
        );
    }

    #[test]
    fn failed_indexes_fail_the_job_once_all_indexes_finished_or_past_the_maximum() {
        let now = jiff::Timestamp::now();
        let tmpl = json!({"spec": {"containers": []}});
        let spec = |max: Option<i32>| {
            json!({"completions": 4, "completionMode": "Indexed", "backoffLimitPerIndex": 1,
                   "maxFailedIndexes": max, "template": tmpl})
        };
        let j = job(spec(None), json!({}));
        let (done, failed): (BTreeSet<i32>, BTreeSet<i32>) = ([0, 2].into(), [1].into());
        // Index 3 still runs: the Job goes on despite the failed index, and many failures
        // overall do not matter (the Job-wide backoffLimit defaults to "unlimited").
        assert_eq!(
            finishing(&j, &progress(2, 50, &done, &failed, true), now),
            None
        );
        let done: BTreeSet<i32> = [0, 2, 3].into();
        assert_eq!(
            finishing(&j, &progress(3, 2, &done, &failed, false), now),
            Some(Finishing::failure("FailedIndexes", MSG_FAILED_INDEXES))
        );
        let j = job(spec(Some(1)), json!({}));
        let two: BTreeSet<i32> = [1, 3].into();
        assert_eq!(
            finishing(
                &j,
                &progress(0, 2, &BTreeSet::new(), &[1].into(), true),
                now
            ),
            None
        );
        assert_eq!(
            finishing(&j, &progress(0, 2, &BTreeSet::new(), &two, true), now),
            Some(Finishing::failure(
                "MaxFailedIndexesExceeded",
                MSG_MAX_FAILED_INDEXES
            ))
        );
    }

    fn failed_index_pod(counted: i32, exit_code: i32) -> CachedPod {
        serde_json::from_value(json!({
            "metadata": {"name": "j-1-x", "namespace": "ns", "uid": "u1",
                "labels": {INDEX_KEY: "1"},
                "annotations": {FAILURE_COUNT_KEY: counted.to_string()}},
            "status": {
                "phase": "Failed",
                "containerStatuses": [{"name": "main", "restartCount": 0, "ready": false,
                    "state": {"terminated": {"exitCode": exit_code}}}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn an_index_fails_at_its_limit_or_by_a_fail_index_rule() {
        // backoffLimitPerIndex 1: the first failure (count 0 before it) is retried, with
        // count 1; the retry's failure fails the index.
        let first = failed_index_pod(0, 1);
        assert!(!fails_index(&first, None, 1));
        assert_eq!(next_failure_counts(&first, None), (1, 0));
        assert!(fails_index(&failed_index_pod(1, 1), None, 1));
        let policy: PodFailurePolicy = serde_json::from_value(json!({"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
        ]}))
        .unwrap();
        assert_eq!(match_failure_policy(&policy, &first), PolicyAction::Count);
        assert!(fails_index(&failed_index_pod(0, 42), Some(&policy), 5));
        // An ignored failure neither fails the index nor counts toward its limit.
        let ignored = failed_index_pod(1, 7);
        assert!(!fails_index(&ignored, Some(&policy), 1));
        assert_eq!(next_failure_counts(&ignored, Some(&policy)), (1, 1));
    }

    #[test]
    fn success_policy_rules() {
        let policy: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-2,5"},
            {"succeededIndexes": "6-9", "succeededCount": 2},
            {"succeededCount": 4},
        ]}))
        .unwrap();
        let m = |set: &[i32]| match_success_policy(&policy, 10, &set.iter().copied().collect());
        assert_eq!(m(&[]), None);
        assert_eq!(m(&[0, 1, 2]), None);
        assert_eq!(
            m(&[0, 1, 2, 5]).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(m(&[6, 9]).as_deref(), Some("Matched rules at index 1"));
        assert_eq!(
            m(&[0, 3, 4, 8]).as_deref(),
            Some("Matched rules at index 2")
        );
        let tmpl = json!({"spec": {"containers": []}});
        let j = job(
            json!({"completions": 10, "completionMode": "Indexed", "template": tmpl,
                   "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
            json!({}),
        );
        let none = BTreeSet::new();
        assert_eq!(
            finishing(
                &j,
                &progress(1, 0, &[0].into(), &none, true),
                jiff::Timestamp::now()
            ),
            Some(Finishing::Success {
                reason: "SuccessPolicy".into(),
                message: "Matched rules at index 0".into(),
            })
        );
    }

    fn failed_pod(exit_code: i32, conditions: serde_json::Value) -> CachedPod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "status": {
                "phase": "Failed",
                "conditions": conditions,
                "containerStatuses": [{"name": "main", "restartCount": 0, "ready": false,
                    "state": {"terminated": {"exitCode": exit_code}}}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn failure_policy_rules_match_in_order() {
        let policy: PodFailurePolicy = serde_json::from_value(json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
        ]}))
        .unwrap();
        assert_eq!(
            match_failure_policy(&policy, &failed_pod(42, json!([]))),
            PolicyAction::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0".into()
            )
        );
        let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(
            match_failure_policy(&policy, &failed_pod(1, disrupted)),
            PolicyAction::Ignore
        );
        assert_eq!(
            match_failure_policy(&policy, &failed_pod(1, json!([]))),
            PolicyAction::Count
        );
        let fail_on_disruption: PodFailurePolicy = serde_json::from_value(json!({"rules": [
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]}))
        .unwrap();
        let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(
            match_failure_policy(&fail_on_disruption, &failed_pod(137, disrupted)),
            PolicyAction::FailJob(
                "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0".into()
            )
        );
        // Exit code 0 never matches, even NotIn.
        assert_eq!(
            match_failure_policy(&policy, &failed_pod(0, json!([]))),
            PolicyAction::Count
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut s = JobStatus::default();
        set_condition(&mut s, "Suspended", "True", "JobSuspended", "Job suspended");
        let first = s.conditions.clone().unwrap()[0]
            .last_transition_time
            .clone();
        set_condition(&mut s, "Suspended", "True", "JobSuspended", "Job suspended");
        assert_eq!(
            s.conditions.as_ref().unwrap()[0].last_transition_time,
            first
        );
        set_condition(&mut s, "Suspended", "False", "JobResumed", "Job resumed");
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
        assert!(!has_condition(&s, "Suspended"));
    }
}
