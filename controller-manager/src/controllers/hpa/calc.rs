//! The HorizontalPodAutoscaler's arithmetic, as Kubernetes' replica calculator and its
//! normalization do it: pure functions over pods, their metrics and the autoscaler's recent
//! history, so every decision can be tested from a table.
//!
//! - [`replicas_for`]: desired = ceil(ready pods × usage / target), nothing when within the
//!   tolerance; pods without metrics count as using their whole request on a scale-down and
//!   nothing on a scale-up; unready pods (and pods whose CPU sample predates their readiness)
//!   count as using nothing on a scale-up and are left out otherwise.
//! - [`normalize`]: the stabilization window (the highest recent recommendation on the way
//!   down, the lowest on the way up), the scaling policies, and min/max replicas.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

/// The resource a metric measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn parse(s: &str) -> Status {
        match s {
            "True" => Status::True,
            "False" => Status::False,
            _ => Status::Unknown,
        }
    }
}

/// What the calculator knows of one pod the target selects.
#[derive(Clone, Debug)]
pub struct PodFacts {
    pub name: String,
    pub phase: String,
    pub deleting: bool,
    /// The Ready condition: its status, and when it last changed.
    pub ready: Option<(Status, Timestamp)>,
    pub start_time: Option<Timestamp>,
    /// The sum of the containers' requests of the resource, in milli-units; `Err(container)`
    /// names a container without one.
    pub request_milli: Result<i64, String>,
}

/// A pod's usage of the resource (the sum over its containers), in milli-units.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub milli: i64,
    pub timestamp: Timestamp,
    pub window: Duration,
}

/// A Resource metric's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Milli-units per pod.
    AverageValue(i64),
}

/// The controller's knobs (kube-controller-manager's `--horizontal-pod-autoscaler-*` flags).
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
        }
    }
}

/// What one metric asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub replicas: i32,
    /// Percent of requests, for Utilization targets.
    pub utilization: Option<i32>,
    /// Average usage per pod, in milli-units.
    pub average_milli: i64,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Kubernetes' `groupPods`: (ready count, unready, missing metrics, ignored).
fn group<'a>(
    pods: &'a [PodFacts],
    metrics: &HashMap<String, Sample>,
    resource: Resource,
    tuning: &Tuning,
    now: Timestamp,
) -> (usize, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let (mut ready, mut unready, mut missing, mut ignored) = (0, vec![], vec![], vec![]);
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            ignored.push(pod.name.as_str());
            continue;
        }
        if pod.phase == "Pending" {
            unready.push(pod.name.as_str());
            continue;
        }
        let Some(sample) = metrics.get(&pod.name) else {
            missing.push(pod.name.as_str());
            continue;
        };
        if resource == Resource::Cpu {
            let is_unready = match (pod.ready, pod.start_time) {
                (Some((status, changed)), Some(started)) => {
                    // Only Ready=False counts as not ready (Unknown does not), as upstream.
                    let not_ready = status == Status::False;
                    if after(started, tuning.cpu_initialization_period) > now {
                        // Starting up: ignore a sample taken before a full window of readiness.
                        not_ready || sample.timestamp < after(changed, sample.window)
                    } else {
                        // Ignore a pod that never became ready.
                        not_ready && after(started, tuning.initial_readiness_delay) > changed
                    }
                }
                _ => true,
            };
            if is_unready {
                unready.push(pod.name.as_str());
                continue;
            }
        }
        ready += 1;
    }
    (ready, unready, missing, ignored)
}

/// How usage compares with the target: (ratio, utilization percent, average milli-units).
fn usage_ratio(
    target: Target,
    usage: &HashMap<&str, i64>,
    requests: &HashMap<&str, i64>,
) -> Result<(f64, Option<i32>, i64), String> {
    match target {
        Target::Utilization(percent) => {
            let (mut total, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (pod, used) in usage {
                if let Some(r) = requests.get(pod) {
                    total += used;
                    requested += r;
                    n += 1;
                }
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = (total * 100 / requested) as i32;
            Ok((
                f64::from(utilization) / f64::from(percent.max(1)),
                Some(utilization),
                total / n,
            ))
        }
        Target::AverageValue(per_pod) => {
            let average = usage.values().sum::<i64>() / usage.len().max(1) as i64;
            Ok((average as f64 / per_pod.max(1) as f64, None, average))
        }
    }
}

/// The replica count one Resource metric asks for, given the pods the target selects and
/// their samples (by pod name).
pub fn replicas_for(
    current: i32,
    resource: Resource,
    target: Target,
    pods: &[PodFacts],
    metrics: &HashMap<String, Sample>,
    tuning: &Tuning,
    now: Timestamp,
) -> Result<Estimate, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let (ready, unready, missing, ignored) = group(pods, metrics, resource, tuning, now);
    let mut usage: HashMap<&str, i64> = metrics
        .iter()
        .filter(|(p, _)| pods.iter().any(|pod| &pod.name == *p))
        .map(|(p, s)| (p.as_str(), s.milli))
        .filter(|(p, _)| !unready.contains(p) && !ignored.contains(p))
        .collect();
    let mut requests = HashMap::new();
    if let Target::Utilization(_) = target {
        for pod in pods {
            match &pod.request_milli {
                Ok(r) => requests.insert(pod.name.as_str(), *r),
                Err(container) => {
                    return Err(format!(
                        "missing request for {} in container {container} of Pod {}",
                        resource.name(),
                        pod.name
                    ));
                }
            };
        }
    }
    if usage.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let (ratio, utilization, average_milli) = usage_ratio(target, &usage, &requests)?;
    let estimate = |replicas| Estimate {
        replicas,
        utilization,
        average_milli,
    };
    let within = |r: f64| (1.0 - r).abs() <= tuning.tolerance;
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if within(ratio) {
            return Ok(estimate(current));
        }
        return Ok(estimate((ratio * ready as f64).ceil() as i32));
    }
    // Assume the worst for the direction of the change: pods without metrics use their whole
    // request (or the target, when it is above 100%) on a scale-down and nothing on a
    // scale-up.
    if ratio < 1.0 {
        for p in &missing {
            let fill = match target {
                Target::Utilization(percent) => {
                    requests.get(p).copied().unwrap_or(0) * i64::from(percent.max(100)) / 100
                }
                Target::AverageValue(v) => v,
            };
            usage.insert(p, fill);
        }
    } else if ratio > 1.0 {
        for p in &missing {
            usage.insert(p, 0);
        }
    }
    if scale_up_with_unready {
        for p in &unready {
            usage.insert(p, 0);
        }
    }
    let (new_ratio, _, _) = usage_ratio(target, &usage, &requests)?;
    if within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Ok(estimate(current));
    }
    let replicas = (new_ratio * usage.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(estimate(current));
    }
    Ok(estimate(replicas))
}

/// `selectPolicy` of a scaling direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period: Duration,
}

/// The rules of one direction (`spec.behavior.scaleUp` or `scaleDown`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub stabilization: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Default for Behavior {
    /// Kubernetes' defaults: up at once by 100% or 4 pods per 15 s, whichever is more; down
    /// after 5 minutes of lower recommendations, by up to 100% per 15 s.
    fn default() -> Self {
        Behavior {
            up: Rules {
                stabilization: Duration::ZERO,
                select: Select::Max,
                policies: vec![
                    Policy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period: Duration::from_secs(15),
                    },
                    Policy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period: Duration::from_secs(15),
                    },
                ],
            },
            down: Rules {
                stabilization: Duration::from_secs(300),
                select: Select::Max,
                policies: vec![Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: Duration::from_secs(15),
                }],
            },
        }
    }
}

/// What one autoscaler did recently: its recommendations and scale events.
#[derive(Clone, Debug, Default)]
pub struct History {
    recommendations: Vec<(i32, Timestamp)>,
    ups: Vec<(i32, Timestamp)>,
    downs: Vec<(i32, Timestamp)>,
}

impl History {
    /// The history of an autoscaler first seen with the target at `current` replicas: that
    /// counts as a recommendation, so a new autoscaler (or a restarted controller) waits a
    /// whole scale-down window before scaling down, as upstream.
    pub fn starting(current: i32, now: Timestamp) -> History {
        History {
            recommendations: vec![(current, now)],
            ..History::default()
        }
    }
}

/// A condition to set on the autoscaler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: &'static str,
}

/// Upstream's message for each normalization reason.
fn message(reason: &str) -> &'static str {
    match reason {
        "ScaleUpStabilized" => {
            "recent recommendations were lower than current one, applying the lowest recent recommendation"
        }
        "ScaleDownStabilized" => {
            "recent recommendations were higher than current one, applying the highest recent recommendation"
        }
        "ReadyForNewScale" => "recommended size matches current size",
        "ScaleUpLimit" => {
            "the desired replica count is increasing faster than the maximum scale rate"
        }
        "ScaleDownLimit" => {
            "the desired replica count is decreasing faster than the maximum scale rate"
        }
        "TooManyReplicas" => "the desired replica count is more than the maximum replica count",
        "TooFewReplicas" => "the desired replica count is less than the minimum replica count",
        _ => "the desired count is within the acceptable range",
    }
}

fn condition(type_: &'static str, status: bool, reason: &'static str) -> Condition {
    Condition {
        type_,
        status,
        reason,
        message: message(reason),
    }
}

fn before(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN)
}

/// Replicas added (or removed) within `period` before `now`.
fn changed_within(events: &[(i32, Timestamp)], period: Duration, now: Timestamp) -> i32 {
    let cutoff = before(now, period);
    events
        .iter()
        .filter(|(_, at)| *at > cutoff)
        .map(|(n, _)| n)
        .sum()
}

/// The furthest the policies let one direction go from `current` now: up (`up`) or down.
/// `Max` picks the policy allowing the biggest change, `Min` the smallest.
fn rate_limit(current: i32, h: &History, rules: &Rules, now: Timestamp, up: bool) -> i32 {
    if rules.select == Select::Disabled {
        return current;
    }
    let proposals = rules.policies.iter().map(|p| {
        // The size at the start of the policy's period.
        let start = current - changed_within(&h.ups, p.period, now)
            + changed_within(&h.downs, p.period, now);
        let share = f64::from(start) * f64::from(p.value) / 100.0;
        match (p.kind, up) {
            (PolicyKind::Pods, true) => start + p.value,
            (PolicyKind::Pods, false) => start - p.value,
            (PolicyKind::Percent, true) => (f64::from(start) + share).ceil() as i32,
            (PolicyKind::Percent, false) => (f64::from(start) - share) as i32,
        }
    });
    if (rules.select == Select::Max) == up {
        proposals.max().unwrap_or(i32::MIN)
    } else {
        proposals.min().unwrap_or(i32::MAX)
    }
}

/// Records `recommendation` in place of the oldest sample older than `keep` (or appends it).
fn remember(h: &mut History, recommendation: i32, keep: Duration, now: Timestamp) {
    let cutoff = before(now, keep);
    match h.recommendations.iter().position(|(_, at)| *at < cutoff) {
        Some(i) => h.recommendations[i] = (recommendation, now),
        None => h.recommendations.push((recommendation, now)),
    }
}

/// The bounds on a replica count.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub min: i32,
    pub max: i32,
}

/// Turns the metrics' recommendation into the replica count to set: stabilized over recent
/// recommendations, limited by the scaling policies and by min/max. Without `behavior` this
/// is Kubernetes' older rule: only scale-downs are stabilized (over `legacy_window`), and
/// one step grows to at most max(2 × current, 4).
pub fn normalize(
    history: &mut History,
    behavior: Option<&Behavior>,
    legacy_window: Duration,
    current: i32,
    desired: i32,
    bounds: Bounds,
    now: Timestamp,
) -> (i32, Vec<Condition>) {
    // Stabilize: never above the lowest recommendation of the up window, never below the
    // highest of the down window (without behavior: the down window only, bounds included).
    let (up_window, down_window) = match behavior {
        Some(b) => (Some(b.up.stabilization), b.down.stabilization),
        None => (None, legacy_window),
    };
    let down_cut = before(now, down_window);
    let up_cut = up_window.map(|w| before(now, w));
    let (mut up, mut down) = (desired, desired);
    for (r, at) in &history.recommendations {
        if up_cut.is_some_and(|cut| *at > cut) {
            up = up.min(*r);
        }
        if *at > down_cut || (behavior.is_none() && *at == down_cut) {
            down = down.max(*r);
        }
    }
    let stabilized = match behavior {
        Some(_) => current.max(up).min(down),
        None => down,
    };
    remember(
        history,
        desired,
        up_window.unwrap_or_default().max(down_window),
        now,
    );
    let able = if stabilized == desired {
        "ReadyForNewScale"
    } else if behavior.is_some() && desired >= current {
        "ScaleUpStabilized"
    } else {
        "ScaleDownStabilized"
    };

    // Limit: the policies' rate (without behavior: 2× or 4 up, none down), then min/max.
    let (out, limit) = if stabilized > current {
        let rate = match behavior {
            Some(b) => rate_limit(current, history, &b.up, now, true).max(current),
            None => (2 * current).max(4),
        };
        let (allowed, reason) = if bounds.max > rate {
            (rate, "ScaleUpLimit")
        } else {
            (bounds.max, "TooManyReplicas")
        };
        if stabilized > allowed {
            (allowed, reason)
        } else {
            (stabilized, "DesiredWithinRange")
        }
    } else if stabilized < current || behavior.is_none() {
        let rate = match behavior {
            Some(b) => rate_limit(current, history, &b.down, now, false).min(current),
            None => bounds.min,
        };
        let (allowed, reason) = if bounds.min < rate {
            (rate, "ScaleDownLimit")
        } else {
            (bounds.min, "TooFewReplicas")
        };
        if stabilized < allowed {
            (allowed, reason)
        } else {
            (stabilized, "DesiredWithinRange")
        }
    } else {
        (stabilized, "DesiredWithinRange")
    };
    (
        out,
        vec![
            condition("AbleToScale", true, able),
            condition("ScalingLimited", out != stabilized, limit),
        ],
    )
}

/// Records a rescale from `from` to `to`, for the policies' periods. Events older than the
/// longest period of either direction are dropped (each direction's policies count both).
pub fn record_scale(
    h: &mut History,
    behavior: Option<&Behavior>,
    from: i32,
    to: i32,
    now: Timestamp,
) {
    let Some(b) = behavior else { return };
    let longest =
        b.up.policies
            .iter()
            .chain(&b.down.policies)
            .map(|p| p.period)
            .max()
            .unwrap_or_default();
    let keep = before(now, longest);
    h.ups.retain(|(_, at)| *at > keep);
    h.downs.retain(|(_, at)| *at > keep);
    if to > from {
        h.ups.push((to - from, now));
    } else if to < from {
        h.downs.push((from - to, now));
    }
}

#[cfg(test)]
mod tests;
