//! CronJobs on a local cluster, driven with the real kubectl: an every-minute CronJob creates
//! a Job named after the scheduled minute that completes, records `lastScheduleTime` and
//! `lastSuccessfulTime`, keeps only `successfulJobsHistoryLimit` finished Jobs after two
//! runs, and its Jobs go with it when it is deleted; `create job --from=cronjob/tick` (kubectl's
//! and skiffctl's) makes a manual run.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_e2e::{BUSYBOX, LocalCluster, ensure_busybox_image, wait_until};

/// A run starts at the next minute: up to 60 s, plus the pod's start.
const RUN: Duration = Duration::from_secs(70);

fn cronjob_jobs(c: &LocalCluster, cronjob: &str) -> Vec<Value> {
    let out = c.kubectl(&["get", "jobs", "-o", "json"]);
    if !out.status.success() {
        return Vec::new();
    }
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|j| {
            j["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| {
                    o.iter()
                        .any(|r| r["kind"] == "CronJob" && r["name"] == cronjob)
                })
        })
        .collect()
}

fn complete(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
    })
}

fn cronjob(c: &LocalCluster, name: &str) -> Value {
    serde_json::from_str(&c.kubectl_ok(&["get", "cronjob", name, "-o", "json"])).unwrap()
}

fn describe(c: &LocalCluster, name: &str) -> String {
    let cj = c.kubectl(&["describe", "cronjob", name]);
    let jobs = c.kubectl(&["get", "jobs,pods", "-o", "wide"]);
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&cj.stdout),
        String::from_utf8_lossy(&jobs.stdout)
    )
}

#[test]
fn an_every_minute_cronjob_runs_and_keeps_its_history_limit() {
    ensure_busybox_image();
    let c = LocalCluster::create("e2e-cronjobs", 1, false, &[]);
    c.skiffctl_ok("load-image", &[BUSYBOX]);
    let _ = c.kubectl(&["delete", "cronjob", "tick", "--ignore-not-found"]);
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/1 * * * *",
            "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "tick", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", "echo tick"]}],
            }}}},
        },
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());

    // A manual run, by kubectl (which reads the CronJob through batch/v1) and by skiffctl:
    // a Job from the template, marked manual and owned by the CronJob.
    let skiffctl = |args: &[&str]| {
        let out = std::process::Command::new(skiff_e2e::sibling_binary("skiffctl"))
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(args)
            .output()
            .expect("skiffctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let made = [
        c.kubectl_ok(&["create", "job", "by-hand", "--from=cronjob/tick"]),
        skiffctl(&["create", "job", "by-hand-2", "--from=cronjob/tick"]),
    ];
    assert_eq!(
        made,
        [
            "job.batch/by-hand created\n",
            "job.batch/by-hand-2 created\n"
        ]
    );
    for name in ["by-hand", "by-hand-2"] {
        let j: Value =
            serde_json::from_str(&c.kubectl_ok(&["get", "job", name, "-o", "json"])).unwrap();
        let m = &j["metadata"];
        assert_eq!(
            m["annotations"]["cronjob.kubernetes.io/instantiate"],
            "manual"
        );
        assert_eq!(m["ownerReferences"][0]["name"], "tick");
        let container = &j["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["command"], json!(["sh", "-c", "echo tick"]));
        c.kubectl_ok(&["delete", "job", name]);
    }

    // The first run: a Job named after its scheduled minute, which completes.
    assert!(
        wait_until(RUN + Duration::from_secs(30), || cronjob_jobs(&c, "tick")
            .iter()
            .any(complete)),
        "no completed Job within {RUN:?}\n{}",
        describe(&c, "tick")
    );
    let first = cronjob_jobs(&c, "tick")
        .into_iter()
        .find(complete)
        .expect("a completed Job");
    let first_name = first["metadata"]["name"].as_str().unwrap().to_string();
    let stamp = first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .expect("the scheduled-timestamp annotation")
        .to_string();
    let minutes = stamp
        .parse::<jiff::Timestamp>()
        .expect("an RFC 3339 time")
        .as_second()
        / 60;
    assert_eq!(first_name, format!("tick-{minutes}"));
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = &cronjob(&c, "tick")["status"];
            s["lastScheduleTime"].is_string() && s["lastSuccessfulTime"].is_string()
        }),
        "status not written\n{}",
        describe(&c, "tick")
    );

    // The second run completes, and only one finished Job (the newest) remains.
    assert!(
        wait_until(RUN + Duration::from_secs(30), || {
            let jobs = cronjob_jobs(&c, "tick");
            jobs.len() == 1
                && complete(&jobs[0])
                && jobs[0]["metadata"]["name"] != first_name.as_str()
        }),
        "the history limit of 1 was not kept after a second run\n{}",
        describe(&c, "tick")
    );
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=CronJob,involvedObject.name=tick",
    ]);
    for reason in ["SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"] {
        assert!(events.contains(reason), "no {reason} event:\n{events}");
    }

    // Deleting the CronJob takes its Jobs with it.
    c.kubectl_ok(&["delete", "cronjob", "tick"]);
    assert!(
        wait_until(Duration::from_secs(30), || cronjob_jobs(&c, "tick")
            .is_empty()),
        "the CronJob's Jobs outlived it\n{}",
        describe(&c, "tick")
    );
}
