//! Jobs on a three-node local cluster, driven with the real kubectl: an Indexed Job runs each
//! index once with its parallelism respected, a failing Job stops at its backoffLimit,
//! `kubectl create job` completes, `ttlSecondsAfterFinished` removes a finished Job with its
//! pods, suspension stops a Job's pods without counting failures, and `activeDeadlineSeconds`
//! fails a Job that runs too long, a `podFailurePolicy` FailJob rule fails a Job at the
//! first matching exit code, `backoffLimitPerIndex` retries and fails indexes one by one, and a
//! `successPolicy` completes a Job before all its indexes ran. One cluster serves every scenario
//! (they use distinct names).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff_e2e::{
    ApiServer, BUSYBOX, Backend, ControllerManager, LocalCluster, ensure_busybox_image, wait_until,
};

const WAIT: Duration = Duration::from_secs(120);

fn job(c: &LocalCluster, name: &str) -> Option<Value> {
    let out = c.kubectl(&["get", "job", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

fn job_pods(c: &LocalCluster, name: &str) -> Vec<Value> {
    let out = c.kubectl(&[
        "get",
        "pods",
        "-o",
        "json",
        "-l",
        &format!("batch.kubernetes.io/job-name={name}"),
    ]);
    if !out.status.success() {
        return Vec::new();
    }
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["items"].as_array().cloned().unwrap_or_default()
}

fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

fn describe(c: &LocalCluster, name: &str) -> String {
    let out = c.kubectl(&["describe", "job", name]);
    let pods = c.kubectl(&["get", "pods", "-o", "wide", "--show-labels"]);
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&pods.stdout)
    )
}

fn indexed_job_runs_each_index_once_two_at_a_time(c: &LocalCluster) {
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "indexed"},
        "spec": {
            "completions": 5, "parallelism": 2, "completionMode": "Indexed",
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "work", "image": BUSYBOX, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$(hostname); sleep 2"],
                }],
            }},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    // Never more than two pods run at once, while the Job works.
    let deadline = Instant::now() + WAIT;
    let mut most = 0;
    loop {
        let running = job_pods(c, "indexed")
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            })
            .count();
        most = most.max(running);
        if job(c, "indexed").is_some_and(|j| condition(&j, "Complete").is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Indexed Job did not complete\n{}",
            describe(c, "indexed")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(most <= 2, "{most} pods ran at once with parallelism 2");
    c.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=10s",
    ]);
    let j = job(c, "indexed").expect("the Job");
    let s = &j["status"];
    assert_eq!(s["succeeded"], 5, "{s:#}");
    assert_eq!(s["completedIndexes"], "0-4", "{s:#}");
    assert!(s["failed"].as_i64().unwrap_or(0) == 0, "{s:#}");
    assert!(s["completionTime"].is_string() && s["startTime"].is_string());
    assert!(condition(&j, "SuccessCriteriaMet").is_some(), "{s:#}");
    let uncounted = &s["uncountedTerminatedPods"];
    assert!(
        uncounted["succeeded"].as_array().is_none_or(Vec::is_empty)
            && uncounted["failed"].as_array().is_none_or(Vec::is_empty),
        "{s:#}"
    );
    // Each index ran once, in a pod named, labelled and hosted as upstream's.
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for p in job_pods(c, "indexed") {
        let name = p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"], ix,
            "{name}"
        );
        assert!(name.starts_with(&format!("indexed-{ix}-")), "{name}");
        assert_eq!(p["spec"]["hostname"], format!("indexed-{ix}"));
        assert_eq!(p["status"]["phase"], "Succeeded", "{name}");
        assert!(
            p["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| !f.iter().any(|f| f == "batch.kubernetes.io/job-tracking")),
            "{name} keeps the tracking finalizer"
        );
        let logs = c.kubectl_ok(&["logs", &name]);
        assert_eq!(
            logs.trim(),
            format!("index={ix} host=indexed-{ix}"),
            "{name}"
        );
        *runs.entry(ix).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = (0..5).map(|i| (i.to_string(), 1)).collect();
    assert_eq!(runs, want, "each index runs once");
    c.kubectl_ok(&["delete", "job", "indexed", "--wait=false"]);
}

fn failing_job_stops_at_its_backoff_limit(c: &LocalCluster) {
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "failing"},
        "spec": {
            "backoffLimit": 1,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", "exit 1"]}],
            }},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    let out = c.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/failing",
        "--timeout=120s",
    ]);
    assert!(out.status.success(), "{}", describe(c, "failing"));
    let j = job(c, "failing").expect("the Job");
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(condition(&j, "FailureTarget").is_some());
    assert!(condition(&j, "Complete").is_none());
    assert_eq!(j["status"]["failed"], 2, "{:#}", j["status"]);
    assert_eq!(j["status"]["active"].as_i64().unwrap_or(0), 0);
    // Exactly two pods ran (the first and one retry), nothing more after the limit.
    assert_eq!(
        job_pods(c, "failing").len(),
        2,
        "{}",
        describe(c, "failing")
    );
    c.kubectl_ok(&["delete", "job", "failing", "--wait=false"]);
}

fn kubectl_create_job_completes(c: &LocalCluster) {
    c.kubectl_ok(&[
        "create",
        "job",
        "quick",
        &format!("--image={BUSYBOX}"),
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    let out = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/quick",
        "--timeout=90s",
    ]);
    assert!(out.status.success(), "{}", describe(c, "quick"));
    let j = job(c, "quick").expect("the Job");
    assert_eq!(j["status"]["succeeded"], 1);
    let pods = job_pods(c, "quick");
    assert_eq!(pods.len(), 1);
    let labels = &pods[0]["metadata"]["labels"];
    let uid = j["metadata"]["uid"].clone();
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(labels["controller-uid"], uid);
    assert_eq!(labels["job-name"], "quick");
    let owner = &pods[0]["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].clone(), owner["controller"].clone()),
        (json!("Job"), json!(true))
    );
    assert_eq!(owner["blockOwnerDeletion"], true);
    // skiffctl's `create job` makes the same Job.
    let out = std::process::Command::new(skiff_e2e::sibling_binary("skiffctl"))
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args([
            "create",
            "job",
            "quick2",
            &format!("--image={BUSYBOX}"),
            "--",
            "sh",
            "-c",
            "exit 0",
        ])
        .output()
        .expect("skiffctl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "job.batch/quick2 created\n"
    );
    let spec = |j: &Value| {
        let mut t = j["spec"]["template"]["spec"].clone();
        t["containers"][0]["name"] = json!("");
        (
            t,
            j["spec"]["completions"].clone(),
            j["spec"]["backoffLimit"].clone(),
        )
    };
    let other = job(c, "quick2").expect("skiffctl's Job");
    assert_eq!(spec(&other), spec(&j));
    assert_eq!(
        other["spec"]["template"]["spec"]["containers"][0]["name"],
        "quick2"
    );
    let out = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/quick2",
        "--timeout=90s",
    ]);
    assert!(out.status.success(), "{}", describe(c, "quick2"));
    c.kubectl_ok(&["delete", "job", "quick2", "--wait=false"]);
    // Deleting the Job takes its pods with it (the garbage collector).
    c.kubectl_ok(&["delete", "job", "quick"]);
    assert!(
        wait_until(WAIT, || job_pods(c, "quick").is_empty()),
        "the pods outlived their Job\n{}",
        describe(c, "quick")
    );
}

fn ttl_removes_a_finished_job_and_its_pods(c: &LocalCluster) {
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "shortlived"},
        "spec": {
            "ttlSecondsAfterFinished": 3,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", "exit 0"]}],
            }},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    assert!(
        wait_until(WAIT, || job(c, "shortlived")
            .is_some_and(|j| condition(&j, "Complete").is_some())
            || job(c, "shortlived").is_none()),
        "{}",
        describe(c, "shortlived")
    );
    assert!(
        wait_until(WAIT, || job(c, "shortlived").is_none()
            && job_pods(c, "shortlived").is_empty()),
        "the finished Job or its pods stayed\n{}",
        describe(c, "shortlived")
    );
}

/// Sleeps until SIGTERM, then exits at once.
const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

fn running_pods(c: &LocalCluster, name: &str) -> usize {
    job_pods(c, name)
        .iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
        })
        .count()
}

fn suspend_stops_the_pods_and_resume_starts_them(c: &LocalCluster) {
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pausable"},
        "spec": {
            "suspend": true, "completions": 2, "parallelism": 2,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", SLEEPER]}],
            }},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    assert!(
        wait_until(WAIT, || job(c, "pausable").is_some_and(|j| condition(
            &j,
            "Suspended"
        )
        .is_some_and(
            |s| s["reason"] == "JobSuspended" && s["message"] == "Job suspended"
        ))),
        "{}",
        describe(c, "pausable")
    );
    assert!(job_pods(c, "pausable").is_empty());
    assert!(job(c, "pausable").unwrap()["status"]["startTime"].is_null());
    let resume = r#"{"spec":{"suspend":false}}"#;
    c.kubectl_ok(&["patch", "job", "pausable", "--type=merge", "-p", resume]);
    assert!(
        wait_until(WAIT, || running_pods(c, "pausable") == 2),
        "{}",
        describe(c, "pausable")
    );
    let j = job(c, "pausable").unwrap();
    let resumed = j["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Suspended").cloned())
        .unwrap_or_default();
    assert_eq!(
        (resumed["status"].clone(), resumed["reason"].clone()),
        (json!("False"), json!("JobResumed"))
    );
    assert!(j["status"]["startTime"].is_string());
    let suspend = r#"{"spec":{"suspend":true}}"#;
    c.kubectl_ok(&["patch", "job", "pausable", "--type=merge", "-p", suspend]);
    assert!(
        wait_until(WAIT, || job_pods(c, "pausable").is_empty()
            && job(c, "pausable")
                .is_some_and(|j| condition(&j, "Suspended").is_some()
                    && j["status"]["active"].as_i64().unwrap_or(0) == 0)),
        "{}",
        describe(c, "pausable")
    );
    // Suspension is not a failure.
    let j = job(c, "pausable").unwrap();
    assert_eq!(
        j["status"]["failed"].as_i64().unwrap_or(0),
        0,
        "{:#}",
        j["status"]
    );
    c.kubectl_ok(&["delete", "job", "pausable", "--wait=false"]);
}

fn a_job_past_its_deadline_fails(c: &LocalCluster) {
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "slow"},
        "spec": {
            "activeDeadlineSeconds": 5,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", SLEEPER]}],
            }},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    let out = c.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/slow",
        "--timeout=90s",
    ]);
    assert!(out.status.success(), "{}", describe(c, "slow"));
    let j = job(c, "slow").unwrap();
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed["reason"], "DeadlineExceeded");
    assert_eq!(
        failed["message"],
        "Job was active longer than specified deadline"
    );
    assert_eq!(j["status"]["active"].as_i64().unwrap_or(0), 0);
    assert!(
        wait_until(WAIT, || running_pods(c, "slow") == 0),
        "{}",
        describe(c, "slow")
    );
    c.kubectl_ok(&["delete", "job", "slow", "--wait=false"]);
}

fn a_fail_job_rule_fails_the_job_at_once(c: &LocalCluster) {
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "buggy"},
        "spec": {
            "completions": 4, "parallelism": 1, "backoffLimit": 6,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            ]},
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", "exit 42"]}],
            }},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    let out = c.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/buggy",
        "--timeout=90s",
    ]);
    assert!(out.status.success(), "{}", describe(c, "buggy"));
    let j = job(c, "buggy").unwrap();
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed["reason"], "PodFailurePolicy");
    let pods = job_pods(c, "buggy");
    assert_eq!(pods.len(), 1, "no retry after a FailJob rule matched");
    let pod = pods[0]["metadata"]["name"].as_str().unwrap_or_default();
    assert_eq!(
        failed["message"],
        format!(
            "Container main for pod default/{pod} failed with exit code 42 matching FailJob rule at index 1"
        )
    );
    c.kubectl_ok(&["delete", "job", "buggy", "--wait=false"]);
}

fn backoff_limit_per_index_fails_only_the_failing_indexes(c: &LocalCluster) {
    // Odd indexes always fail: each is retried once (its back-off is 10 s), then fails; the
    // even ones complete; the Job fails with the failed indexes listed.
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "per-index"},
        "spec": {
            "completions": 4, "parallelism": 4, "completionMode": "Indexed",
            "backoffLimitPerIndex": 1,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", "exit $((JOB_COMPLETION_INDEX % 2))"]}],
            }},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    let out = c.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/per-index",
        "--timeout=120s",
    ]);
    assert!(out.status.success(), "{}", describe(c, "per-index"));
    let j = job(c, "per-index").expect("the Job");
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed["reason"], "FailedIndexes");
    assert_eq!(failed["message"], "Job has failed indexes");
    let s = &j["status"];
    assert_eq!(s["failedIndexes"], "1,3", "{s:#}");
    assert_eq!(s["completedIndexes"], "0,2", "{s:#}");
    assert_eq!(
        (s["failed"].as_i64(), s["succeeded"].as_i64()),
        (Some(4), Some(2))
    );
    // Each odd index ran twice, its retry carrying the index's failure count.
    let mut counts: Vec<(String, String)> = job_pods(c, "per-index")
        .iter()
        .map(|p| {
            let a = &p["metadata"]["annotations"];
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (
                text("batch.kubernetes.io/job-completion-index"),
                text("batch.kubernetes.io/job-index-failure-count"),
            )
        })
        .collect();
    counts.sort();
    let want = [
        ("0", "0"),
        ("1", "0"),
        ("1", "1"),
        ("2", "0"),
        ("3", "0"),
        ("3", "1"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(i, n)| (i.to_string(), n.to_string()))
        .collect();
    assert_eq!(counts, want, "{}", describe(c, "per-index"));
    c.kubectl_ok(&["delete", "job", "per-index", "--wait=false"]);
}

fn success_policy_completes_the_job_early(c: &LocalCluster) {
    // Index 0 is the leader: once it succeeds the Job is done and the workers are stopped.
    let script = format!("[ $JOB_COMPLETION_INDEX = 0 ] && exit 0; {SLEEPER}");
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "leader"},
        "spec": {
            "completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "successPolicy": {"rules": [{"succeededIndexes": "0"}]},
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", script]}],
            }},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    let out = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/leader",
        "--timeout=120s",
    ]);
    assert!(out.status.success(), "{}", describe(c, "leader"));
    let j = job(c, "leader").expect("the Job");
    for type_ in ["SuccessCriteriaMet", "Complete"] {
        let cond = condition(&j, type_).unwrap_or_else(|| panic!("{type_}: {j:#}"));
        assert_eq!(cond["reason"], "SuccessPolicy");
        assert_eq!(cond["message"], "Matched rules at index 0");
    }
    let s = &j["status"];
    assert_eq!(s["completedIndexes"], "0", "{s:#}");
    assert_eq!(
        s["failed"].as_i64().unwrap_or(0),
        0,
        "stopped workers are no failures"
    );
    assert_eq!(s["active"].as_i64().unwrap_or(0), 0);
    assert_eq!(running_pods(c, "leader"), 0, "{}", describe(c, "leader"));
    c.kubectl_ok(&["delete", "job", "leader", "--wait=false"]);
}

#[test]
fn jobs_on_a_three_node_cluster() {
    ensure_busybox_image();
    let c = LocalCluster::create("e2e-jobs", 3, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX]);
    indexed_job_runs_each_index_once_two_at_a_time(&c);
    failing_job_stops_at_its_backoff_limit(&c);
    kubectl_create_job_completes(&c);
    ttl_removes_a_finished_job_and_its_pods(&c);
    suspend_stops_the_pods_and_resume_starts_them(&c);
    a_job_past_its_deadline_fails(&c);
    a_fail_job_rule_fails_the_job_at_once(&c);
    backoff_limit_per_index_fails_only_the_failing_indexes(&c);
    success_policy_completes_the_job_early(&c);
}

/// The pods of Job `name` on a bare apiserver.
fn server_job_pods(server: &ApiServer, name: &str) -> Vec<Value> {
    let list = server.kubectl_json(&["get", "pods", "-l", &format!("job-name={name}")]);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Ends a pod in `phase`, as its kubelet would.
fn finish_pod(server: &ApiServer, name: &str, phase: &str, exit_code: i32) {
    let http = server.http();
    let path = format!("/api/v1/namespaces/default/pods/{name}");
    for _ in 0..5 {
        let mut pod = http.get(&path).json();
        pod["status"] = json!({
            "phase": phase,
            "containerStatuses": [{"name": "work", "image": BUSYBOX, "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "reason": "Completed"}}}],
        });
        if http.put_json(&format!("{path}/status"), &pod).status == 200 {
            return;
        }
    }
    panic!("could not end pod {name}");
}

fn tracked(pod: &Value) -> bool {
    pod["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "batch.kubernetes.io/job-tracking"))
}

/// Finalizer-based tracking: what finished while no controller-manager ran, and pods deleted
/// after they were counted, still end up in the Job's counts.
#[test]
fn job_counts_survive_a_controller_manager_restart_and_pod_deletion() {
    let server = ApiServer::start(Backend::Embedded);
    let mut cm = ControllerManager::start(&server);
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "counted"},
        "spec": {
            "completions": 3, "parallelism": 3,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": BUSYBOX}],
            }},
        },
    });
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest.to_string());
    assert!(wait_until(WAIT, || server_job_pods(&server, "counted")
        .len()
        == 3));
    let pods = server_job_pods(&server, "counted");
    assert!(
        pods.iter().all(tracked),
        "new pods carry the tracking finalizer"
    );
    let name = |i: usize| pods[i]["metadata"]["name"].as_str().unwrap().to_string();
    finish_pod(&server, &name(0), "Succeeded", 0);
    assert!(
        wait_until(WAIT, || {
            let j = server.kubectl_json(&["get", "job", "counted"]);
            j["status"]["succeeded"] == 1
                && server_job_pods(&server, "counted")
                    .iter()
                    .any(|p| p["metadata"]["name"] == json!(name(0)) && !tracked(p))
        }),
        "the success is counted and its pod let go"
    );
    cm.kill();
    // While no controller runs: one pod fails, one is deleted, the counted one goes.
    finish_pod(&server, &name(1), "Failed", 1);
    server.kubectl_ok(&["delete", "pod", &name(2), "--wait=false"]);
    server.kubectl_ok(&["delete", "pod", &name(0)]);
    let _cm = ControllerManager::start(&server);
    assert!(
        wait_until(WAIT, || {
            let s = server.kubectl_json(&["get", "job", "counted"])["status"].clone();
            s["succeeded"] == 1
                && s["failed"] == 2
                && s["uncountedTerminatedPods"]["failed"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
        }),
        "the counts after the restart: {:#}",
        server.kubectl_json(&["get", "job", "counted"])["status"]
    );
    // The deleted pod, once counted, is gone (its finalizer removed).
    assert!(wait_until(WAIT, || !server_job_pods(&server, "counted")
        .iter()
        .any(|p| p["metadata"]["name"] == json!(name(2)))));
}
