//! The `eviction` subresource of pods: a deletion that respects the pod's
//! PodDisruptionBudget, as kube-apiserver's EvictionREST does. A pod that is not running (or
//! already being deleted) is deleted directly; otherwise the one budget selecting it must
//! allow a disruption, which is taken (`disruptionsAllowed` decremented, the pod recorded in
//! `disruptedPods`) with a compare-and-swap on the budget before the pod is marked
//! `DisruptionTarget` and deleted. A refused eviction is a 429 that `kubectl drain` retries.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_api::selectors::LabelSelector;
use skiff_api::{ResourceInfo, resources};

use crate::error::{ApiError, ApiResult};
use crate::objects;
use crate::registry::Registry;
use crate::request::Params;

/// More unconfirmed evictions than this in one budget's `disruptedPods` and the budget refuses
/// more (the disruption controller has fallen behind); upstream's MaxDisruptedPodSize.
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// How often, and how far apart, a pod delete that lost a race is retried (upstream's
/// EvictionsRetry: 20 steps of half a second).
const RETRIES: usize = 20;
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// The message of every refusal on account of a budget; clients (kubectl drain) print it.
pub const TOO_MANY_REQUESTS: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// The `type` of the budget's status cause (policy/v1 `DisruptionBudgetCause`).
const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

/// The Eviction API versions whose bodies this subresource accepts.
const ACCEPTED_VERSIONS: &[&str] = &["policy/v1", "policy/v1beta1"];

fn info(group: &str, version: &str, plural: &str) -> ApiResult<&'static ResourceInfo> {
    resources::find(group, version, plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

/// Evicts pod `ns/name` as the Eviction `body` asks. Returns the response's code and `Status`
/// (a refusal kube-apiserver returns as a Status rather than an error is one too).
pub async fn evict(
    reg: &Registry,
    ns: &str,
    name: &str,
    body: &Value,
    params: &Params,
) -> ApiResult<(u16, Value)> {
    check_body(body, name)?;
    let opts = delete_options(body, params)?;
    let dry_run = is_dry_run(&opts);
    let pods = info("", "v1", "pods")?;
    let rv_unset = resource_version_unset(&opts);

    // A pod whose disruption already happened (terminal, pending, being deleted) is deleted
    // without looking at budgets; a conflict (the pod changed under us) is retried unless the
    // client pinned the version itself.
    let mut pod = Value::Null;
    for attempt in 0..RETRIES {
        pod = reg.get(pods, Some(ns), name, &Params::default()).await?;
        if !can_ignore_budget(&pod) {
            break;
        }
        let mut opts = opts.clone();
        if should_enforce_resource_version(&pod) && rv_unset {
            set_resource_version_precondition(&mut opts, &pod);
        }
        match mark_and_delete(reg, pods, ns, name, opts, params, dry_run).await {
            Ok(()) => return Ok((201, crate::render::success(201))),
            Err(e) if e.code == 409 && rv_unset && attempt + 1 < RETRIES => {
                tokio::time::sleep(RETRY_DELAY).await;
            }
            Err(e) => return Err(e),
        }
    }

    let budgets = budgets_of(reg, ns, &pod).await?;
    if budgets.len() > 1 {
        return Ok((
            500,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                "code": 500,
            }),
        ));
    }
    let mut opts = opts;
    let mut budget_name = None;
    if let Some(budget) = budgets.first() {
        let pdb_name = objects::name(budget).unwrap_or_default().to_string();
        budget_name = Some(pdb_name.clone());
        if !is_pod_ready(&pod) && unhealthy_pod_may_go(budget) {
            // An unready pod does not count as healthy, so its eviction takes nothing from the
            // budget; pin the pod's version so that it cannot become ready in between.
            set_resource_version_precondition(&mut opts, &pod);
        } else {
            take_disruption(reg, ns, &pdb_name, name, dry_run).await?;
        }
    }

    let pinned_by_us = rv_unset && !resource_version_unset(&opts);
    match mark_and_delete(reg, pods, ns, name, opts, params, dry_run).await {
        Ok(()) => Ok((201, crate::render::success(201))),
        Err(e) if e.code == 409 && pinned_by_us => {
            Err(still_processing(budget_name.as_deref().unwrap_or_default()))
        }
        Err(e) => Err(e),
    }
}

/// The body must be an Eviction of a version this subresource serves, naming the pod of the
/// URL.
fn check_body(body: &Value, name: &str) -> ApiResult<()> {
    if let Some(v) = body.get("apiVersion").and_then(Value::as_str)
        && !ACCEPTED_VERSIONS.contains(&v)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version (policy/v1)"
        )));
    }
    if let Some(k) = body.get("kind").and_then(Value::as_str)
        && k != "Eviction"
    {
        return Err(ApiError::bad_request(format!("not a Eviction object: {k}")));
    }
    if body.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    Ok(())
}

/// The Eviction's DeleteOptions with the request's `dryRun` merged in (upstream's
/// propagateDryRun: either may carry it, and both must agree when both do).
fn delete_options(body: &Value, params: &Params) -> ApiResult<Value> {
    let mut opts = match body.get("deleteOptions") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => json!({}),
    };
    let query: Vec<Value> = if params.dry_run()? {
        vec![json!("All")]
    } else {
        Vec::new()
    };
    let body_dry = opts
        .get("dryRun")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if body_dry.is_empty() {
        if !query.is_empty() {
            opts["dryRun"] = json!(query);
        }
    } else if !query.is_empty() && query != body_dry {
        let show = |v: &[Value]| {
            let items: Vec<&str> = v.iter().filter_map(Value::as_str).collect();
            format!("[{}]", items.join(" "))
        };
        return Err(ApiError::bad_request(format!(
            "Non-matching dry-run options in request and content: {} and {}",
            show(&query),
            show(&body_dry)
        )));
    }
    Ok(opts)
}

fn is_dry_run(opts: &Value) -> bool {
    opts.get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn resource_version_unset(opts: &Value) -> bool {
    opts.pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .is_none()
}

fn set_resource_version_precondition(opts: &mut Value, pod: &Value) {
    let rv = objects::meta_str(pod, "resourceVersion").unwrap_or_default();
    if !opts.get("preconditions").is_some_and(Value::is_object) {
        opts["preconditions"] = json!({});
    }
    opts["preconditions"]["resourceVersion"] = json!(rv);
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A pod that has finished, has not started, or is already being deleted disrupts nothing
/// more by going: its eviction ignores budgets.
pub fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || objects::is_deleting(pod)
}

/// Whether the delete must be pinned to the version read: all but terminal or deleting pods,
/// so that a pod that became ready meanwhile is not deleted on a stale decision.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !(matches!(phase(pod), "Succeeded" | "Failed") || objects::is_deleting(pod))
}

/// The pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether an unready pod may be evicted without taking from `budget`: always with
/// `unhealthyPodEvictionPolicy: AlwaysAllow`; with `IfHealthyBudget` (the default) only
/// while the healthy pods are enough.
pub fn unhealthy_pod_may_go(budget: &Value) -> bool {
    if budget.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow")) {
        return true;
    }
    let current = status_int(budget, "currentHealthy");
    let desired = status_int(budget, "desiredHealthy");
    current >= desired && desired > 0
}

fn status_int(budget: &Value, field: &str) -> i64 {
    budget
        .pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The budgets of the pod's namespace whose selector matches it: policy/v1's rule, where an
/// empty selector matches every pod, and a missing or invalid one none.
async fn budgets_of(reg: &Registry, ns: &str, pod: &Value) -> ApiResult<Vec<Value>> {
    let pdbs = info("policy", "v1", "poddisruptionbudgets")?;
    let page = reg.list(pdbs, Some(ns), &Params::default()).await?;
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    Ok(page
        .items
        .into_iter()
        .filter(|b| {
            let Some(sel) = b.pointer("/spec/selector") else {
                return false;
            };
            LabelSelector::from_object(sel).is_ok_and(|s| s.matches(labels))
        })
        .collect())
}

/// Takes one disruption from budget `pdb_name` for pod `pod`: a compare-and-swap on the
/// budget, retried on conflict with a fresh read, so two evictions never spend the same
/// disruption.
async fn take_disruption(
    reg: &Registry,
    ns: &str,
    pdb_name: &str,
    pod: &str,
    dry_run: bool,
) -> ApiResult<()> {
    let pdbs = info("policy", "v1", "poddisruptionbudgets")?;
    let now = skiff_common::time::now();
    let r = reg
        .guaranteed_update(
            pdbs,
            Some(ns),
            pdb_name,
            |current| check_and_decrement(current, pod, &now).map(Some),
            dry_run,
        )
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Err(ApiError {
            details: Some(json!({ "retryAfterSeconds": 10 })),
            ..ApiError::new(
                504,
                "Timeout",
                format!(
                    "Timeout: couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"
                ),
            )
        }),
        Err(e) => Err(e),
    }
}

/// The budget after granting one disruption for `pod` at `now`, or why it cannot be granted
/// (upstream's checkAndDecrement).
pub fn check_and_decrement(mut budget: Value, pod: &str, now: &str) -> ApiResult<Value> {
    let name = objects::name(&budget).unwrap_or_default().to_string();
    let generation = budget
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_int(&budget, "observedGeneration") < generation {
        return Err(still_processing(&name));
    }
    let allowed = status_int(&budget, "disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden_budget(
            &name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = budget
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden_budget(
            &name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        let cause = format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status_int(&budget, "desiredHealthy"),
            status_int(&budget, "currentHealthy"),
        );
        return Err(too_many_requests(cause, None));
    }
    let status = &mut budget["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        set_insufficient_pods(status, now);
    }
    if !status.get("disruptedPods").is_some_and(Value::is_object) {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(now);
    Ok(budget)
}

/// The budget's `DisruptionAllowed` condition set to False with reason `InsufficientPods`
/// (its transition time kept unless its status changes), as the disruption controller
/// would write it.
fn set_insufficient_pods(status: &mut Value, now: &str) {
    let observed = status
        .get("observedGeneration")
        .cloned()
        .unwrap_or(json!(0));
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new = |since: Value| {
        json!({
            "type": "DisruptionAllowed", "status": "False", "observedGeneration": observed,
            "lastTransitionTime": since, "reason": "InsufficientPods", "message": "",
        })
    };
    match conditions
        .iter_mut()
        .find(|c| c["type"] == "DisruptionAllowed")
    {
        Some(c) => {
            let since = if c["status"] == "False" {
                c["lastTransitionTime"].clone()
            } else {
                json!(now)
            };
            *c = new(since);
        }
        None => conditions.push(new(json!(now))),
    }
    status["conditions"] = json!(conditions);
}

/// 429 with the budget cause; `retry_after` as kube-apiserver's `retryAfterSeconds`.
fn too_many_requests(cause: String, retry_after: Option<u32>) -> ApiError {
    let mut details = json!({
        "causes": [{ "reason": DISRUPTION_BUDGET_CAUSE, "message": cause }],
    });
    if let Some(s) = retry_after {
        details["retryAfterSeconds"] = json!(s);
    }
    ApiError {
        details: Some(details),
        ..ApiError::new(429, "TooManyRequests", TOO_MANY_REQUESTS)
    }
}

/// The budget has not caught up with its spec (or with the pod): try again shortly.
fn still_processing(pdb_name: &str) -> ApiError {
    too_many_requests(
        format!("The disruption budget {pdb_name} is still being processed by the server."),
        Some(10),
    )
}

fn forbidden_budget(name: &str, why: &str) -> ApiError {
    ApiError {
        details: Some(json!({ "name": name, "group": "policy", "kind": "poddisruptionbudget" })),
        ..ApiError::forbidden(format!(
            "poddisruptionbudget.policy \"{name}\" is forbidden: {why}"
        ))
    }
}

/// Marks the pod `DisruptionTarget` (reason `EvictionByEvictionAPI`) so that its controllers
/// (a Job's pod failure policy) know why it goes, then deletes it with `opts`. The mark honours
/// the delete's preconditions, and a pinned resourceVersion follows the mark's own write.
async fn mark_and_delete(
    reg: &Registry,
    pods: &'static ResourceInfo,
    ns: &str,
    name: &str,
    mut opts: Value,
    params: &Params,
    dry_run: bool,
) -> ApiResult<()> {
    if !dry_run {
        let want_uid = opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        let want_rv = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        let now = skiff_common::time::now();
        let marked = reg
            .guaranteed_update(
                pods,
                Some(ns),
                name,
                |mut pod| {
                    let uid = objects::meta_str(&pod, "uid").unwrap_or_default();
                    if let Some(want) = &want_uid
                        && want != uid
                    {
                        return Err(ApiError::conflict(
                            pods,
                            name,
                            &format!(
                                "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                            ),
                        ));
                    }
                    let rv = objects::meta_str(&pod, "resourceVersion").unwrap_or_default();
                    if let Some(want) = &want_rv
                        && want != rv
                    {
                        return Err(ApiError::conflict(
                            pods,
                            name,
                            &format!(
                                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                            ),
                        ));
                    }
                    set_disruption_target(&mut pod, &now);
                    Ok(Some(pod))
                },
                false,
            )
            .await?;
        if want_rv.is_some() {
            let rv = objects::meta_str(&marked, "resourceVersion").unwrap_or_default();
            opts["preconditions"]["resourceVersion"] = json!(rv);
        }
    }
    reg.delete(pods, Some(ns), name, &opts, params).await?;
    Ok(())
}

/// Sets the pod's `DisruptionTarget` condition, keeping its transition time when it was
/// already true (upstream's UpdatePodCondition).
pub fn set_disruption_target(pod: &mut Value, now: &str) {
    let mut conditions: Vec<Value> = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = conditions
        .iter()
        .position(|c| c["type"] == "DisruptionTarget");
    let since = match existing.map(|i| &conditions[i]) {
        Some(c) if c["status"] == "True" => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let cond = json!({
        "type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": since, "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    });
    match existing {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    pod["status"]["conditions"] = json!(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn budget(allowed: i64, current: i64, desired: i64) -> Value {
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": { "name": "web", "namespace": "default", "generation": 1 },
            "spec": { "minAvailable": 2 },
            "status": {
                "observedGeneration": 1, "disruptionsAllowed": allowed,
                "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current,
                "conditions": [{
                    "type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                    "message": "", "observedGeneration": 1,
                    "lastTransitionTime": "2025-12-31T00:00:00Z",
                }],
            },
        })
    }

    #[test]
    fn a_budget_at_zero_refuses_with_kubernetes_message_and_cause() {
        let e = check_and_decrement(budget(0, 2, 2), "p", NOW).unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(e.reason, "TooManyRequests");
        assert_eq!(
            e.message,
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        assert_eq!(
            e.details,
            Some(json!({"causes": [{
                "reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
            }]}))
        );
    }

    #[test]
    fn a_budget_behind_its_spec_asks_to_retry() {
        let mut b = budget(1, 3, 2);
        b["metadata"]["generation"] = json!(2);
        let e = check_and_decrement(b, "p", NOW).unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(e.details.as_ref().unwrap()["retryAfterSeconds"], 10);
        assert_eq!(
            e.details.unwrap()["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );
    }

    #[test]
    fn a_negative_budget_is_forbidden() {
        let e = check_and_decrement(budget(-1, 1, 2), "p", NOW).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }

    #[test]
    fn granting_the_last_disruption_records_the_pod_and_flips_the_condition() {
        let b = check_and_decrement(budget(1, 3, 2), "p", NOW).unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 0);
        assert_eq!(b["status"]["disruptedPods"], json!({"p": NOW}));
        let c = &b["status"]["conditions"][0];
        assert_eq!(
            (&c["status"], &c["reason"], &c["lastTransitionTime"]),
            (&json!("False"), &json!("InsufficientPods"), &json!(NOW))
        );
        // With disruptions left the condition stays as it was.
        let b = check_and_decrement(budget(2, 4, 2), "p", NOW).unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 1);
        assert_eq!(b["status"]["conditions"][0]["reason"], "SufficientPods");
    }

    #[test]
    fn which_pods_skip_the_budget() {
        let pod = |phase: &str, deleting: bool| {
            let mut p = json!({"metadata": {"name": "p"}, "status": {"phase": phase}});
            if deleting {
                p["metadata"]["deletionTimestamp"] = json!(NOW);
            }
            p
        };
        assert!(can_ignore_budget(&pod("Succeeded", false)));
        assert!(can_ignore_budget(&pod("Failed", false)));
        assert!(can_ignore_budget(&pod("Pending", false)));
        assert!(can_ignore_budget(&pod("Running", true)));
        assert!(!can_ignore_budget(&pod("Running", false)));
        // A pending pod's delete is pinned to its version; a terminal one's is not.
        assert!(should_enforce_resource_version(&pod("Pending", false)));
        assert!(!should_enforce_resource_version(&pod("Failed", false)));
    }

    #[test]
    fn unhealthy_pods_follow_the_eviction_policy() {
        // IfHealthyBudget (the default): only while the healthy pods suffice.
        assert!(unhealthy_pod_may_go(&budget(0, 2, 2)));
        assert!(!unhealthy_pod_may_go(&budget(0, 1, 2)));
        assert!(!unhealthy_pod_may_go(&budget(0, 0, 0)));
        let mut b = budget(0, 1, 2);
        b["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert!(unhealthy_pod_may_go(&b));
    }

    #[test]
    fn dry_run_comes_from_the_query_or_the_body_and_must_agree() {
        let body = json!({"deleteOptions": {"gracePeriodSeconds": 0}});
        let q = Params::parse(Some("dryRun=All"));
        let opts = delete_options(&body, &q).unwrap();
        assert!(is_dry_run(&opts));
        assert_eq!(opts["gracePeriodSeconds"], 0);
        let body = json!({"deleteOptions": {"dryRun": ["All"]}});
        assert!(is_dry_run(
            &delete_options(&body, &Params::default()).unwrap()
        ));
        assert!(!is_dry_run(
            &delete_options(&json!({}), &Params::default()).unwrap()
        ));
        let body = json!({"deleteOptions": {"dryRun": ["Other"]}});
        assert_eq!(delete_options(&body, &q).unwrap_err().code, 400);
    }

    #[test]
    fn the_body_must_name_the_pod_in_an_eviction_version() {
        let ok =
            json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "p"}});
        assert!(check_body(&ok, "p").is_ok());
        assert_eq!(
            check_body(&ok, "q").unwrap_err().message,
            "name in URL does not match name in Eviction object"
        );
        let v2 = json!({"apiVersion": "policy/v2", "kind": "Eviction", "metadata": {"name": "p"}});
        assert_eq!(check_body(&v2, "p").unwrap_err().code, 400);
    }

    #[test]
    fn the_disruption_target_condition_keeps_its_first_transition() {
        let mut pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        set_disruption_target(&mut pod, NOW);
        set_disruption_target(&mut pod, "2026-01-01T00:01:00Z");
        let conds = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[1]["reason"], "EvictionByEvictionAPI");
        assert_eq!(conds[1]["lastTransitionTime"], NOW);
    }
}
