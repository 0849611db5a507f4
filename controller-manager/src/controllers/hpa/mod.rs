//! The HorizontalPodAutoscaler controller. Every `--horizontal-pod-autoscaler-sync-period`
//! each autoscaler reads its target's `scale` subresource, the pods the scale's selector
//! picks and their usage from the resource metrics API (`metrics.k8s.io`), asks [`calc`] for
//! a replica count, sets it through `scale`, and reports status, conditions and events as
//! Kubernetes does. autoscaling/v1 objects are the same objects (the apiserver converts).

pub mod calc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior, MetricSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Api, Resource as _, ResourceExt};
use serde_json::{Map, Value, json};
use skiff_api::selectors::LabelSelector;
use skiff_client::events::{EventType, Recorder};

use self::calc::{Behavior, Bounds, History, PolicyKind, Resource, Rules, Sample, Select, Target};
use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::pods::CachedPod;
use crate::workqueue::WorkQueue;
use skiff_client::informer::{Change, key_of, split_key};

pub struct HpaController {
    ctx: Arc<Context>,
    /// What it writes with ([`Context::client_for`]).
    client: kube::Client,
    recorder: Recorder,
    /// Per autoscaler: recent recommendations and rescales (kept in memory, as upstream).
    history: Mutex<HashMap<String, History>>,
    /// Per autoscaler (`namespace/name`): its target's pod selector, as last read, so that
    /// pods claimed by two autoscalers are noticed.
    selectors: Mutex<HashMap<String, LabelSelector>>,
}

impl HpaController {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let q = queue.clone();
        let all = ctx.hpas.clone();
        // Spec changes are acted on at once; otherwise each autoscaler runs once per sync
        // period (its own status writes must not make it loop).
        ctx.hpas.on_change(move |c| match c {
            Change::Applied { old, new } => {
                let changed = old.is_none_or(|o| {
                    o.metadata.generation != new.metadata.generation || o.spec != new.spec
                });
                if changed {
                    q.add(key_of(*new));
                }
            }
            Change::Deleted(_) => {}
            Change::Resynced => all.list().iter().for_each(|h| q.add(key_of(h.as_ref()))),
        });
        Arc::new(HpaController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            recorder: Recorder::new(
                ctx.client_for(Self::SERVICE_ACCOUNT),
                "horizontal-pod-autoscaler",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            history: Mutex::new(HashMap::new()),
            selectors: Mutex::new(HashMap::new()),
            ctx,
        })
    }
}

impl Controller for HpaController {
    const SERVICE_ACCOUNT: &'static str = "horizontal-pod-autoscaler";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for HpaController {
    const NAME: &'static str = "horizontalpodautoscaling";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(hpa) = self.ctx.hpas.get(Some(ns), name) else {
            self.history.lock().expect("history lock").remove(key);
            self.selectors.lock().expect("selectors lock").remove(key);
            return Ok(None);
        };
        self.sync(key, &hpa).await?;
        Ok(Some(self.ctx.settings.hpa_sync_period))
    }
}

/// What one sync found and decided, to be written as the autoscaler's status.
struct Outcome {
    conditions: Vec<(String, bool, String, String)>,
    current: Option<i32>,
    desired: Option<i32>,
    /// The current metrics: unchanged (None), or replaced (an empty list removes them).
    metrics: Option<Vec<Value>>,
    rescaled: bool,
}

impl Outcome {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let message = message.into();
        match self.conditions.iter_mut().find(|c| c.0 == type_) {
            Some(c) => *c = (type_.into(), status, reason.into(), message),
            None => self
                .conditions
                .push((type_.into(), status, reason.into(), message)),
        }
    }
}

/// (group, version, plural) of a scalable kind.
fn scalable(kind: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match kind {
        "Deployment" => ("apps", "v1", "deployments"),
        "ReplicaSet" => ("apps", "v1", "replicasets"),
        "StatefulSet" => ("apps", "v1", "statefulsets"),
        "ReplicationController" => ("", "v1", "replicationcontrollers"),
        _ => return None,
    })
}

fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// A quantity in milli-units, rounded up as Kubernetes' `MilliValue()` rounds.
fn quantity_milli(q: &Quantity) -> Option<i64> {
    skiff_api::Quantity::try_from(q)
        .ok()
        .map(|q| q.milli_value())
}

fn rules(r: Option<&HPAScalingRules>, default: &Rules) -> Rules {
    let Some(r) = r else {
        return default.clone();
    };
    Rules {
        stabilization: r
            .stabilization_window_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(default.stabilization),
        select: match r.select_policy.as_deref() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            Some(_) => Select::Max,
            None => default.select,
        },
        policies: match &r.policies {
            Some(ps) if !ps.is_empty() => ps
                .iter()
                .map(|p| calc::Policy {
                    kind: if p.type_ == "Percent" {
                        PolicyKind::Percent
                    } else {
                        PolicyKind::Pods
                    },
                    value: p.value,
                    period: Duration::from_secs(p.period_seconds.max(0) as u64),
                })
                .collect(),
            _ => default.policies.clone(),
        },
    }
}

/// `spec.behavior` with Kubernetes' defaults filled in; `None` when unset. An unset
/// scale-down window is `downscale_window` (the controller's flag).
pub fn behavior(
    b: Option<&HorizontalPodAutoscalerBehavior>,
    downscale_window: Duration,
) -> Option<Behavior> {
    let b = b?;
    let mut d = Behavior::default();
    d.down.stabilization = downscale_window;
    Some(Behavior {
        up: rules(b.scale_up.as_ref(), &d.up),
        down: rules(b.scale_down.as_ref(), &d.down),
    })
}

/// What the calculator needs of a cached pod, for one resource.
fn facts(pod: &CachedPod, resource: Resource) -> calc::PodFacts {
    let status = pod.status.as_ref();
    let ready = status.and_then(|s| s.ready.as_ref()).map(|c| {
        (
            calc::Status::parse(&c.status),
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        )
    });
    let mut request = Ok(0);
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let q = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource.name()))
            .and_then(quantity_milli);
        match (q, &mut request) {
            (Some(q), Ok(sum)) => *sum += q,
            (None, Ok(_)) => request = Err(c.name.clone()),
            _ => {}
        }
    }
    calc::PodFacts {
        name: pod.name_any(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into()),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready,
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        request_milli: request,
    }
}

/// Usage per pod from a PodMetricsList, for one resource; pods where a container lacks the
/// resource are left out (as upstream).
fn samples(items: &[DynamicObject], resource: Resource) -> HashMap<String, Sample> {
    let mut out = HashMap::new();
    for m in items {
        let timestamp = m
            .data
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(jiff::Timestamp::now);
        let window = m
            .data
            .get("window")
            .and_then(Value::as_str)
            .and_then(|w| skiff_common::parse_duration(w).ok())
            .unwrap_or(Duration::from_secs(15));
        let containers = m
            .data
            .get("containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // A pod without containers has no metrics; each container's usage is rounded up to
        // the milli-unit (Quantity.MilliValue), then summed.
        let mut sum = (!containers.is_empty()).then_some(0i64);
        for c in &containers {
            let v = c
                .pointer(&format!("/usage/{}", resource.name()))
                .and_then(Value::as_str)
                .and_then(|q| skiff_api::Quantity::parse(q).ok())
                .map(|q| q.milli_value().max(0));
            sum = sum.zip(v).map(|(a, b)| a + b);
        }
        if let Some(milli) = sum {
            out.insert(
                m.name_any(),
                Sample {
                    milli,
                    timestamp,
                    window,
                },
            );
        }
    }
    out
}

fn labels_map(pod: &CachedPod) -> Map<String, Value> {
    pod.labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

impl HpaController {
    async fn sync(&self, key: &str, hpa: &HorizontalPodAutoscaler) -> Result<()> {
        let ns = hpa.namespace().unwrap_or_default();
        let spec = hpa.spec.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let mut out = Outcome {
            conditions: Vec::new(),
            current: None,
            desired: None,
            metrics: None,
            rescaled: false,
        };
        let target = &spec.scale_target_ref;
        let reference = format!("{}/{}", target.kind, target.name);
        let Some((group, version, plural)) = scalable(&target.kind) else {
            let error = format!("no scale subresource for kind {:?}", target.kind);
            self.warn(hpa, "FailedGetScale", &error);
            out.set(
                "AbleToScale",
                false,
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {error}"),
            );
            return self.write_status(hpa, out, now).await;
        };
        let scales: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &ns,
            &api_resource(group, version, &target.kind, plural),
        );
        let scale = match scales.get_scale(&target.name).await {
            Ok(s) => s,
            Err(e) => {
                let error = kube_message(&e);
                self.warn(hpa, "FailedGetScale", &error);
                out.set(
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    format!(
                        "the HPA controller was unable to get the target's current scale: {error}"
                    ),
                );
                return self.write_status(hpa, out, now).await;
            }
        };
        out.set(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        out.current = Some(current);
        // Upstream rebuilds the current metrics on every sync past this point.
        out.metrics = Some(Vec::new());
        self.history
            .lock()
            .expect("history lock")
            .entry(key.to_string())
            .or_insert_with(|| History::starting(current, now));
        let behavior = behavior(
            spec.behavior.as_ref(),
            self.ctx.settings.hpa_downscale_stabilization,
        );
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        let mut desired = 0;
        let mut reason = String::new();
        let rescale;
        if current == 0 && min != 0 {
            out.set(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            rescale = false;
        } else if current > max {
            reason = "Current number of replicas above Spec.MaxReplicas".into();
            desired = max;
            rescale = true;
        } else if current < min {
            reason = "Current number of replicas below Spec.MinReplicas".into();
            desired = min;
            rescale = true;
        } else {
            let selector = scale
                .status
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default();
            let (proposal, metric_name, statuses) = match self
                .compute(
                    hpa,
                    &ns,
                    &selector,
                    current,
                    &spec.metrics.unwrap_or_default(),
                    now,
                    &mut out,
                )
                .await
            {
                Ok(v) => v,
                Err(message) => {
                    self.warn(hpa, "FailedComputeMetricsReplicas", &message);
                    return self.write_status(hpa, out, now).await;
                }
            };
            out.metrics = Some(statuses);
            desired = proposal;
            if desired > current {
                reason = format!("{metric_name} above target");
            } else if desired < current {
                reason = "All metrics below target".into();
            }
            let (normalized, conditions) = {
                let mut history = self.history.lock().expect("history lock");
                let h = history.entry(key.to_string()).or_default();
                calc::normalize(
                    h,
                    behavior.as_ref(),
                    self.ctx.settings.hpa_downscale_stabilization,
                    current,
                    desired,
                    Bounds { min, max },
                    now,
                )
            };
            for c in conditions {
                out.set(c.type_, c.status, c.reason, c.message);
            }
            desired = normalized;
            rescale = desired != current;
        }
        if rescale {
            // An update of the scale subresource, as the upstream role grants.
            let scale = k8s_openapi::api::autoscaling::v1::Scale {
                metadata: kube::api::ObjectMeta {
                    name: Some(target.name.clone()),
                    ..Default::default()
                },
                spec: Some(k8s_openapi::api::autoscaling::v1::ScaleSpec {
                    replicas: Some(desired),
                }),
                status: None,
            };
            if let Err(e) = scales
                .replace_scale(&target.name, &PostParams::default(), &scale)
                .await
            {
                let message = kube_message(&e);
                self.warn(
                    hpa,
                    "FailedRescale",
                    &format!("New size: {desired}; reason: {reason}; error: {message}"),
                );
                out.set(
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {message}"),
                );
                // The previous desired count stands.
                return self.write_status(hpa, out, now).await;
            }
            out.set(
                "AbleToScale",
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.recorder.publish(
                hpa.object_ref(&()),
                EventType::Normal,
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            );
            tracing::info!(hpa = %key, target = %reference, from = current, to = desired, %reason, "rescaled");
            let mut history = self.history.lock().expect("history lock");
            calc::record_scale(
                history.entry(key.to_string()).or_default(),
                behavior.as_ref(),
                current,
                desired,
                now,
            );
            out.rescaled = true;
        }
        out.desired = Some(if rescale { desired } else { current });
        self.write_status(hpa, out, now).await
    }

    fn warn(&self, hpa: &HorizontalPodAutoscaler, reason: &str, message: &str) {
        self.recorder.publish(
            hpa.object_ref(&()),
            EventType::Warning,
            reason,
            message.to_string(),
        );
    }

    /// Kubernetes' `computeReplicasForMetrics`: the largest proposal over the metrics, its
    /// metric's name and every metric's status; `Err` when no proposal can be trusted.
    #[allow(clippy::too_many_arguments)]
    async fn compute(
        &self,
        hpa: &HorizontalPodAutoscaler,
        ns: &str,
        selector: &str,
        current: i32,
        specs: &[MetricSpec],
        now: jiff::Timestamp,
        out: &mut Outcome,
    ) -> std::result::Result<(i32, String, Vec<Value>), String> {
        let selector_text = selector;
        if selector.is_empty() {
            let error = "selector is required";
            self.warn(hpa, "SelectorRequired", error);
            out.set(
                "ScalingActive",
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
            );
            return Err(error.to_string());
        }
        let selector = match LabelSelector::parse(selector) {
            Ok(s) => s,
            Err(e) => {
                let error = format!(
                    "couldn't convert selector into a corresponding internal selector object: {e}"
                );
                self.warn(hpa, "InvalidSelector", &error);
                out.set("ScalingActive", false, "InvalidSelector", error.clone());
                return Err(error);
            }
        };
        // Each selected pod with its labels in the form selectors match (made once).
        let selected: Vec<(Arc<CachedPod>, Map<String, Value>)> = self
            .ctx
            .pods
            .list_in(ns)
            .into_iter()
            .map(|p| {
                let labels = labels_map(&p);
                (p, labels)
            })
            .filter(|(_, labels)| selector.matches(Some(labels)))
            .collect();
        // Pods that another autoscaler's target selects too: neither may scale them.
        let me = format!("{ns}/{}", hpa.name_any());
        let controlling = {
            let mut selectors = self.selectors.lock().expect("selectors lock");
            selectors.insert(me.clone(), selector.clone());
            let mut keys: Vec<String> = selectors
                .iter()
                .filter(|(k, sel)| {
                    k.split_once('/').map(|(n, _)| n) == Some(ns)
                        && selected.iter().any(|(_, labels)| sel.matches(Some(labels)))
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort();
            keys
        };
        let pods: Vec<Arc<CachedPod>> = selected.into_iter().map(|(p, _)| p).collect();
        if controlling.len() > 1 {
            let error = format!(
                "pods by selector {selector_text} are controlled by multiple HPAs: [{}]",
                controlling.join(" ")
            );
            self.warn(hpa, "AmbiguousSelector", &error);
            out.set("ScalingActive", false, "AmbiguousSelector", error.clone());
            return Err(error);
        }
        let mut metric_items: Option<std::result::Result<Vec<DynamicObject>, String>> = None;
        let mut best: Option<(i32, String)> = None;
        let mut statuses = Vec::new();
        let mut invalid = 0;
        let mut first_error: Option<(String, String, String)> = None;
        for spec in specs {
            let result = match (spec.type_.as_str(), spec.resource.as_ref()) {
                ("Resource", Some(r)) => {
                    if metric_items.is_none() {
                        metric_items = Some(self.pod_metrics(ns, selector_text).await);
                    }
                    self.resource_metric(
                        r,
                        current,
                        &pods,
                        metric_items.as_ref().expect("fetched above"),
                        now,
                    )
                }
                (other, _) => Err((
                    format!("FailedGet{other}Metric"),
                    format!(
                        "unable to get {other} metric: the custom and external metrics APIs are not served by Skiff; use Resource metrics"
                    ),
                )),
            };
            match result {
                Ok((replicas, name, status)) => {
                    statuses.push(status);
                    if best.as_ref().is_none_or(|(b, _)| replicas > *b) {
                        best = Some((replicas, name));
                    }
                }
                Err((reason, message)) => {
                    statuses.push(json!({ "type": "" }));
                    self.warn(hpa, &reason, &message);
                    invalid += 1;
                    if first_error.is_none() {
                        // The per-metric error as upstream wraps it for the summary.
                        let wrapped = match spec.resource.as_ref() {
                            Some(r) if spec.type_ == "Resource" => {
                                format!("failed to get {} resource metric value: {message}", r.name)
                            }
                            _ => message.clone(),
                        };
                        first_error = Some((reason, message, wrapped));
                    }
                }
            }
        }
        let total = specs.len();
        match (best, first_error) {
            (Some((replicas, name)), err) if !(err.is_some() && replicas < current) => {
                out.set(
                    "ScalingActive",
                    true,
                    "ValidMetricFound",
                    format!(
                        "the HPA was able to successfully calculate a replica count from {name}"
                    ),
                );
                Ok((replicas, name, statuses))
            }
            (_, err) => {
                let (reason, message, wrapped) = err.unwrap_or_else(|| {
                    let none = "no metrics are specified".to_string();
                    ("InvalidMetricSourceType".into(), none.clone(), none)
                });
                out.metrics = Some(statuses);
                out.set(
                    "ScalingActive",
                    false,
                    &reason,
                    format!("the HPA was unable to compute the replica count: {message}"),
                );
                Err(format!(
                    "invalid metrics ({invalid} invalid out of {total}), first error is: {wrapped}"
                ))
            }
        }
    }

    /// The pods' entries of the resource metrics API.
    async fn pod_metrics(
        &self,
        ns: &str,
        selector: &str,
    ) -> std::result::Result<Vec<DynamicObject>, String> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            ns,
            &api_resource("metrics.k8s.io", "v1beta1", "PodMetrics", "pods"),
        );
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| {
                format!(
                    "unable to fetch metrics from resource metrics API: {}",
                    kube_message(&e)
                )
            })
    }

    /// One Resource metric: (replicas, metric name, MetricStatus) or (reason, message).
    fn resource_metric(
        &self,
        r: &k8s_openapi::api::autoscaling::v2::ResourceMetricSource,
        current: i32,
        pods: &[Arc<CachedPod>],
        items: &std::result::Result<Vec<DynamicObject>, String>,
        now: jiff::Timestamp,
    ) -> std::result::Result<(i32, String, Value), (String, String)> {
        let failed = |what: &str, e: String| {
            (
                "FailedGetResourceMetric".to_string(),
                format!("failed to get {} {what}: {e}", r.name),
            )
        };
        let resource = match r.name.as_str() {
            "cpu" => Resource::Cpu,
            "memory" => Resource::Memory,
            other => {
                return Err(failed(
                    "utilization",
                    format!("the resource metrics API has no {other:?} usage; use cpu or memory"),
                ));
            }
        };
        let (target, what) = match (
            r.target.type_.as_str(),
            r.target.average_utilization,
            r.target.average_value.as_ref().and_then(quantity_milli),
        ) {
            ("Utilization", Some(u), _) => (Target::Utilization(u), "utilization"),
            ("AverageValue", _, Some(v)) => (Target::AverageValue(v), "usage"),
            (t, _, _) => {
                return Err(failed(
                    "utilization",
                    format!("invalid resource metric target type {t:?}"),
                ));
            }
        };
        let unable = |e: String| {
            failed(
                what,
                format!("unable to get metrics for resource {}: {e}", r.name),
            )
        };
        let items = items.as_ref().map_err(|e| unable(e.clone()))?;
        if items.is_empty() {
            return Err(unable(
                "no metrics returned from resource metrics API".into(),
            ));
        }
        let samples = samples(items, resource);
        let facts: Vec<calc::PodFacts> = pods.iter().map(|p| facts(p, resource)).collect();
        let estimate = calc::replicas_for(
            current,
            resource,
            target,
            &facts,
            &samples,
            &self.ctx.settings.hpa_tuning,
            now,
        )
        .map_err(|e| failed(what, e))?;
        let mut current_value = json!({
            "averageValue": skiff_api::Quantity::from_milli(estimate.average_milli).to_string()
        });
        let name = match estimate.utilization {
            Some(u) => {
                current_value["averageUtilization"] = json!(u);
                format!("{} resource utilization (percentage of request)", r.name)
            }
            None => format!("{} resource", r.name),
        };
        let status = json!({
            "type": "Resource",
            "resource": { "name": r.name, "current": current_value },
        });
        Ok((estimate.replicas, name, status))
    }

    /// Writes the status if anything in it changed; a condition keeps its transition time
    /// while its status stays the same.
    async fn write_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        out: Outcome,
        now: jiff::Timestamp,
    ) -> Result<()> {
        let old = serde_json::to_value(hpa.status.clone().unwrap_or_default()).unwrap_or_default();
        let old_conditions: Vec<Value> = old
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let stamp = skiff_common::time::rfc3339(now);
        let mut conditions: Vec<Value> = Vec::new();
        for (type_, status, reason, message) in &out.conditions {
            let status = if *status { "True" } else { "False" };
            let since = old_conditions
                .iter()
                .find(|c| c["type"] == type_.as_str() && c["status"] == status)
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(stamp));
            conditions.push(json!({
                "type": type_, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": since,
            }));
        }
        // Conditions this sync did not reach keep their last word.
        for c in &old_conditions {
            if !conditions.iter().any(|n| n["type"] == c["type"]) {
                conditions.push(c.clone());
            }
        }
        let mut status = old.as_object().cloned().unwrap_or_default();
        status.insert("conditions".into(), json!(conditions));
        if let Some(c) = out.current {
            status.insert("currentReplicas".into(), json!(c));
        }
        if let Some(d) = out.desired {
            status.insert("desiredReplicas".into(), json!(d));
        }
        match out.metrics {
            // A merge patch removes a key set to null.
            Some(m) if m.is_empty() && status.contains_key("currentMetrics") => {
                status.insert("currentMetrics".into(), Value::Null);
            }
            Some(m) if m.is_empty() => {}
            Some(m) => {
                status.insert("currentMetrics".into(), json!(m));
            }
            None => {}
        }
        if out.rescaled {
            status.insert("lastScaleTime".into(), json!(stamp));
        }
        let status = Value::Object(status);
        if status == old {
            return Ok(());
        }
        let api: Api<HorizontalPodAutoscaler> =
            Api::namespaced(self.client.clone(), &hpa.namespace().unwrap_or_default());
        crate::update::status(&api, &hpa.name_any(), &status).await?;
        Ok(())
    }
}

/// The apiserver's message of a kube error, without the client's decoration.
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_canonical_form() {
        let milli_quantity = |m| skiff_api::Quantity::from_milli(m).to_string();
        assert_eq!(milli_quantity(200), "200m");
        assert_eq!(milli_quantity(1000), "1");
        assert_eq!(milli_quantity(1500), "1500m");
        assert_eq!(milli_quantity(2_000_000), "2k");
        assert_eq!(milli_quantity(0), "0");
        let q = |s: &str| quantity_milli(&Quantity(s.into()));
        assert_eq!(q("250m"), Some(250));
        assert_eq!(q("1.5"), Some(1500));
        assert_eq!(q("200345109n"), Some(201));
        assert_eq!(q("x"), None);
    }

    #[test]
    fn behavior_defaults_fill_what_is_unset() {
        let five = Duration::from_secs(300);
        assert_eq!(behavior(None, five), None);
        let b: HorizontalPodAutoscalerBehavior = serde_json::from_value(json!({
            "scaleDown": {"stabilizationWindowSeconds": 10}
        }))
        .unwrap();
        let b = behavior(Some(&b), five).unwrap();
        assert_eq!(b.down.stabilization, Duration::from_secs(10));
        assert_eq!(b.down.policies, Behavior::default().down.policies);
        assert_eq!(b.up, Behavior::default().up);
    }

    #[test]
    fn pod_requests_and_readiness_from_the_cached_pod() {
        let pod: CachedPod = serde_json::from_value(json!({
            "metadata": {"name": "web-1"},
            "spec": {"containers": [
                {"name": "app", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "side", "resources": {"requests": {"cpu": "0.05"}}},
            ]},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]},
        }))
        .unwrap();
        let cpu = facts(&pod, Resource::Cpu);
        assert_eq!(cpu.request_milli, Ok(150));
        assert_eq!(cpu.ready.map(|r| r.0), Some(calc::Status::True));
        assert!(cpu.start_time.is_some());
        assert_eq!(
            facts(&pod, Resource::Memory).request_milli,
            Err("side".to_string())
        );
    }

    #[test]
    fn pod_metrics_sum_the_containers() {
        let items: Vec<DynamicObject> = serde_json::from_value(json!([
            {"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics", "metadata": {"name": "a"},
             "timestamp": "2026-01-01T00:00:00Z", "window": "15.5s",
             "containers": [{"name": "x", "usage": {"cpu": "150000000n", "memory": "1Ki"}},
                            {"name": "y", "usage": {"cpu": "50m", "memory": "1Ki"}}]},
        ]))
        .unwrap();
        let s = samples(&items, Resource::Cpu);
        assert_eq!(s["a"].milli, 200);
        assert_eq!(s["a"].window, Duration::from_millis(15_500));
        assert_eq!(samples(&items, Resource::Memory)["a"].milli, 2_048_000);
    }
}
