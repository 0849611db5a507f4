//! Seed 004's HorizontalPodAutoscaler on a two-node local cluster, with the real kubectl:
//! pods that burn CPU show in `kubectl top`, `kubectl autoscale` scales their Deployment up
//! within two sync periods of the metrics showing the load, and back down once the load
//! stops (with a short scale-down stabilization window set on the autoscaler).
//!
//! The load is switched by a ConfigMap the pods read through a volume, so every replica,
//! new ones included, burns or idles together.

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_e2e::{BUSYBOX, LocalCluster, ensure_busybox_image, skiffctl, wait_until};

/// The metrics resolution and HPA sync period this cluster runs with.
const PERIOD: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(120);

fn manifest() -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: load
data:
  burn: "yes"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: burner
spec:
  replicas: 1
  selector:
    matchLabels: {{app: burner}}
  template:
    metadata:
      labels: {{app: burner}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: {BUSYBOX}
        # Spins while /load/burn says yes (about 200m: the CPU limit), else sleeps.
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do if [ \"$(cat /load/burn)\" = yes ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 1; fi; done & wait"]
        resources:
          requests: {{cpu: 100m}}
          limits: {{cpu: 200m}}
        volumeMounts:
        - {{name: load, mountPath: /load}}
      volumes:
      - name: load
        configMap: {{name: load}}
"#
    )
}

fn others() -> String {
    let rc = |name: &str, resources: &str| {
        format!(
            r#"apiVersion: v1
kind: ReplicationController
metadata:
  name: {name}
spec:
  replicas: 1
  selector: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: idle
        image: {BUSYBOX}
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
        resources: {resources}
---
"#
        )
    };
    let hpa = |name: &str, kind: &str, target: &str, metric: &str| {
        format!(
            r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
spec:
  scaleTargetRef: {{apiVersion: v1, kind: {kind}, name: {target}}}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - {metric}
---
"#
        )
    };
    [
        rc("mem", "{requests: {memory: 16Mi}}"),
        rc("norequests", "{}"),
        hpa(
            "mem",
            "ReplicationController",
            "mem",
            "{type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: \"1\"}}}",
        ),
        hpa(
            "ghost",
            "ReplicationController",
            "ghost",
            "{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}",
        ),
    ]
    .concat()
}

fn get_json(c: &LocalCluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend(args);
    all.extend(["-o", "json"]);
    serde_json::from_slice(&c.kubectl(&all).stdout).unwrap_or(Value::Null)
}

/// `kubectl top pods` rows for the burner: (name, CPU millicores).
fn top_pods(c: &LocalCluster) -> Vec<(String, u64)> {
    let out = c.kubectl(&["top", "pods", "-l", "app=burner", "--no-headers"]);
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let cpu = f.next()?.strip_suffix('m')?.parse().ok()?;
            Some((name, cpu))
        })
        .collect()
}

fn replicas(c: &LocalCluster) -> i64 {
    let out = c.kubectl(&["get", "deployment", "burner", "-o", "json"]);
    let d: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    d["spec"]["replicas"].as_i64().unwrap_or(-1)
}

fn hpa(c: &LocalCluster, version: &str) -> Value {
    let resource = format!("horizontalpodautoscalers.{version}.autoscaling");
    let out = c.kubectl(&["get", &resource, "burner", "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn condition<'a>(hpa: &'a Value, type_: &str) -> Option<&'a Value> {
    hpa["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn rescale_events(c: &LocalCluster) -> String {
    c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale",
        "-o",
        "custom-columns=MSG:.message",
        "--no-headers",
    ])
}

#[test]
fn hpa_scales_a_cpu_burning_deployment_up_and_back_down() {
    ensure_busybox_image();
    let period = format!("{}s", PERIOD.as_secs());
    let c = LocalCluster::create(
        "e2e-hpa",
        2,
        false,
        &[
            &format!("--kube-apiserver-arg=--metric-resolution={period}"),
            &format!(
                "--kube-controller-manager-arg=--horizontal-pod-autoscaler-sync-period={period}"
            ),
        ],
    );
    c.skiffctl_ok("load-image", &[BUSYBOX]);
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest());
    // The seed's target, a ReplicationController, twice: one autoscaled on memory per pod
    // (any usage is above one byte, so it goes to its maximum), one without CPU requests
    // (which a CPU utilization target cannot work with, and says so).
    c.kubectl_stdin(&["apply", "-f", "-"], &others());
    c.kubectl_ok(&[
        "autoscale",
        "rc",
        "norequests",
        "--cpu-percent=50",
        "--max=2",
    ]);

    // The resource metrics API: the burning pod's usage shows in `kubectl top pods`.
    assert!(
        wait_until(WAIT, || top_pods(&c).iter().any(|(_, cpu)| *cpu >= 100)),
        "kubectl top pods never showed the load: {:?}\n{}",
        top_pods(&c),
        String::from_utf8_lossy(&c.kubectl(&["top", "pods"]).stderr)
    );
    // Every node's usage shows too (each in millicores).
    let node_rows = || {
        let out = c.kubectl(&["top", "nodes", "--no-headers"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let measured = |rows: &str, i: u32| {
        rows.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&c.node_name(i).as_str())
                && f.get(1).is_some_and(|v| v.ends_with('m'))
        })
    };
    assert!(
        wait_until(WAIT, || {
            let rows = node_rows();
            measured(&rows, 1) && measured(&rows, 2)
        }),
        "kubectl top nodes:\n{}",
        node_rows()
    );
    // skiffctl top prints the same columns.
    for what in ["pods", "nodes"] {
        let header = |out: &[u8]| {
            String::from_utf8_lossy(out)
                .lines()
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let kc = c.kubeconfig().display().to_string();
        let theirs = c.kubectl_ok(&["top", what]);
        let ours = skiffctl(&["--kubeconfig", &kc, "top", what]);
        assert!(ours.status.success(), "skiffctl top {what}: {ours:?}");
        assert_eq!(
            header(&ours.stdout),
            header(theirs.as_bytes()),
            "top {what}"
        );
    }

    // `kubectl autoscale`, then a short scale-down window on the same object. The metrics
    // already show the load, so the clock starts with the autoscaler.
    let metrics_at = Instant::now();
    c.kubectl_ok(&[
        "autoscale",
        "deployment",
        "burner",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    c.kubectl_ok(&[
        "patch",
        "hpa",
        "burner",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":10}}}}"#,
    ]);
    // About 200% of the request against a 50% target: the first sync scales up, and soon
    // to as many replicas as allowed. (The bound is checked after a generous wait, so that a
    // slow machine fails with a clear message rather than a timeout.)
    let scaled_up = wait_until(WAIT, || replicas(&c) >= 2);
    let took = metrics_at.elapsed();
    assert!(
        scaled_up,
        "the HPA never scaled up: {}",
        serde_json::to_string_pretty(&hpa(&c, "v2")).unwrap_or_default()
    );
    println!(
        "figure: hpa scale-up {:.1} s after the metrics showed the load (sync period {} s)",
        took.as_secs_f64(),
        PERIOD.as_secs()
    );
    assert!(
        took <= 2 * PERIOD + Duration::from_secs(5),
        "scale-up took {took:?}, more than two sync periods"
    );
    assert!(
        wait_until(WAIT, || replicas(&c) == 3),
        "the HPA never reached its maximum: {}",
        serde_json::to_string_pretty(&hpa(&c, "v2")).unwrap_or_default()
    );

    // What the user sees: TARGETS as `cpu: N%/50%`, conditions, the event, the v1 view.
    let row = c.kubectl_ok(&["get", "hpa", "burner", "--no-headers"]);
    let targets = row
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields.get(2), Some(&"cpu:"), "{row}");
    let percent = fields.get(3).unwrap_or(&"");
    assert!(
        percent.ends_with("%/50%") && percent.trim_end_matches("%/50%").parse::<u32>().is_ok(),
        "TARGETS of {row:?} ({targets})"
    );
    let v2 = hpa(&c, "v2");
    assert_eq!(condition(&v2, "AbleToScale").unwrap()["status"], "True");
    let active = condition(&v2, "ScalingActive").unwrap();
    assert_eq!(active["reason"], "ValidMetricFound", "{active}");
    assert!(v2["status"]["lastScaleTime"].is_string());
    assert!(
        v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
            .as_i64()
            .is_some_and(|u| u > 100),
        "{}",
        v2["status"]
    );
    assert!(
        rescale_events(&c).contains(
            "New size: 3; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{}",
        rescale_events(&c)
    );
    let v1 = hpa(&c, "v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert!(
        v1["status"]["currentCPUUtilizationPercentage"]
            .as_i64()
            .is_some()
    );
    let described = c.kubectl_ok(&["describe", "hpa", "burner"]);
    assert!(described.contains("SuccessfulRescale"), "{described}");

    // The load stops: every replica idles, and after the 10 s window the HPA goes to min.
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "load",
        "--type=merge",
        "-p",
        r#"{"data":{"burn":"no"}}"#,
    ]);
    let stopped = Instant::now();
    assert!(
        wait_until(WAIT, || replicas(&c) == 1),
        "the HPA never scaled back down: {}",
        serde_json::to_string_pretty(&hpa(&c, "v2")).unwrap_or_default()
    );
    println!(
        "figure: hpa scale-down {:.1} s after the load stopped (scale-down window 10 s)",
        stopped.elapsed().as_secs_f64()
    );
    assert!(
        rescale_events(&c).contains("New size: 1; reason: All metrics below target"),
        "{}",
        rescale_events(&c)
    );
    assert!(
        wait_until(WAIT, || {
            let rows = top_pods(&c);
            rows.len() == 1 && rows[0].1 < 50
        }),
        "kubectl top pods after the load stopped: {:?}",
        top_pods(&c)
    );

    // skiffctl top prints exactly what kubectl prints (both read one metrics snapshot; a
    // scrape in between changes the numbers, so a differing pair is taken again).
    let kc = c.kubeconfig().display().to_string();
    for args in [
        vec!["top", "pods", "--sum", "--containers"],
        vec!["top", "pods", "-A", "--sort-by=memory"],
        vec!["top", "nodes"],
    ] {
        let mut last = (String::new(), String::new());
        let same = (0..5).any(|_| {
            let theirs = c.kubectl_ok(&args);
            let mut ours_args = vec!["--kubeconfig", kc.as_str()];
            ours_args.extend(&args);
            let ours = skiffctl(&ours_args);
            last = (theirs, String::from_utf8_lossy(&ours.stdout).into_owned());
            last.0 == last.1
        });
        assert!(same, "{args:?}: kubectl\n{}\nskiffctl\n{}", last.0, last.1);
    }

    // A ReplicationController scaled on memory per pod, through its scale subresource.
    assert!(
        wait_until(WAIT, || get_json(&c, &["rc", "mem"])["spec"]["replicas"]
            == 2),
        "the memory HPA never scaled its RC: {}",
        get_json(&c, &["hpa", "mem"])["status"]
    );
    let mem = get_json(&c, &["hpa", "mem"]);
    assert_eq!(
        mem["status"]["currentMetrics"][0]["resource"]["name"], "memory",
        "{mem}"
    );
    // Bad targets are reported on the object, with the reason kubectl describe shows.
    let reason_of = |name: &str, type_: &str| {
        let h = get_json(&c, &["hpa", name]);
        condition(&h, type_).map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
    };
    assert!(
        wait_until(WAIT, || reason_of("ghost", "AbleToScale").is_some_and(
            |(s, r, m)| s == "False" && r == "FailedGetScale" && m.contains("not found")
        )),
        "{:?}",
        reason_of("ghost", "AbleToScale")
    );
    // A second autoscaler over the same pods: neither may scale them.
    c.kubectl_ok(&[
        "autoscale",
        "rc",
        "mem",
        "--name=mem-twin",
        "--cpu-percent=50",
        "--max=2",
    ]);
    assert!(
        wait_until(WAIT, || reason_of("mem-twin", "ScalingActive").is_some_and(
            |(s, r, m)| s == "False"
                && r == "AmbiguousSelector"
                && m.contains("controlled by multiple HPAs: [default/mem default/mem-twin]")
        )),
        "{:?}",
        reason_of("mem-twin", "ScalingActive")
    );
    assert!(
        wait_until(WAIT, || reason_of("norequests", "ScalingActive")
            .is_some_and(|(s, r, m)| s == "False"
                && r == "FailedGetResourceMetric"
                && m.contains("missing request for cpu in container idle"))),
        "{:?}",
        reason_of("norequests", "ScalingActive")
    );
}
