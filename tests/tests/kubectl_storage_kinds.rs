//! The kinds issue 23's controllers build on (CronJob, PersistentVolume, PersistentVolumeClaim,
//! StorageClass, PodDisruptionBudget, ResourceQuota, LimitRange, PriorityClass), through the
//! real kubectl: discovery with kubectl's short names, Kubernetes' defaults, kubectl's table
//! columns, `describe`, the cron schedule check, and the documentation's StatefulSet.

use std::time::Duration;

use skiff_e2e::{ApiServer, Backend, ControllerManager, Table};

skiff_e2e::for_each_backend!(
    api_resources_lists_the_new_kinds_with_kubectls_short_names,
    new_kinds_get_kubernetes_defaults_and_kubectls_columns,
    a_bad_cron_schedule_is_refused_with_a_422,
    the_documentations_statefulset_web_yaml_is_accepted,
);

/// The namespace controller empties a namespace of every kind discovery lists, so the new
/// namespaced kinds go with their namespace.
#[test]
fn deleting_a_namespace_removes_the_new_namespaced_kinds() {
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    server.kubectl_ok(&["create", "namespace", "scratch-kinds"]);
    server.write_file("catalog.yaml", CATALOG);
    server.kubectl_ok(&["create", "-n", "scratch-kinds", "-f", "catalog.yaml"]);
    let kinds = "cronjobs,pvc,pdb,quota,limits";
    let before = server.kubectl_ok(&["get", kinds, "-n", "scratch-kinds", "-o", "name"]);
    assert_eq!(before.lines().count(), 7, "{before}");
    server.kubectl_ok(&["delete", "namespace", "scratch-kinds", "--timeout=60s"]);
    assert!(
        skiff_e2e::wait_until(Duration::from_secs(30), || server
            .kubectl_ok(&["get", kinds, "-A", "-o", "name"])
            .trim()
            .is_empty()),
        "namespaced objects outlived their namespace"
    );
    // Cluster-scoped objects from the same file are not the namespace's.
    assert!(
        server
            .kubectl_ok(&["get", "pv", "-o", "name"])
            .contains("persistentvolume/task-pv-volume")
    );
    server.kubectl_ok(&["delete", "-f", "catalog.yaml", "--ignore-not-found"]);
}

fn api_resources_lists_the_new_kinds_with_kubectls_short_names(backend: Backend) {
    let server = ApiServer::start(backend);
    let resources = Table::parse(&server.kubectl_ok(&["api-resources"]));
    for expected in [
        ["cronjobs", "cj", "batch/v1", "true", "CronJob"],
        ["persistentvolumes", "pv", "v1", "false", "PersistentVolume"],
        [
            "persistentvolumeclaims",
            "pvc",
            "v1",
            "true",
            "PersistentVolumeClaim",
        ],
        [
            "storageclasses",
            "sc",
            "storage.k8s.io/v1",
            "false",
            "StorageClass",
        ],
        [
            "poddisruptionbudgets",
            "pdb",
            "policy/v1",
            "true",
            "PodDisruptionBudget",
        ],
        ["resourcequotas", "quota", "v1", "true", "ResourceQuota"],
        ["limitranges", "limits", "v1", "true", "LimitRange"],
        [
            "priorityclasses",
            "pc",
            "scheduling.k8s.io/v1",
            "false",
            "PriorityClass",
        ],
    ] {
        assert_eq!(
            resources.row(expected[0]),
            expected,
            "api-resources row for {}",
            expected[0]
        );
    }
    // The status subresources are discovered where Kubernetes has them.
    let discovery = server.kubectl_ok(&["get", "--raw", "/api/v1"]);
    for sub in [
        "persistentvolumes/status",
        "persistentvolumeclaims/status",
        "resourcequotas/status",
    ] {
        assert!(discovery.contains(&format!("\"{sub}\"")), "{sub}");
    }
    let batch = server.kubectl_ok(&["get", "--raw", "/apis/batch/v1"]);
    assert!(batch.contains("\"cronjobs/status\""), "{batch}");
}

/// One typical object of each new kind, as people write them.
const CATALOG: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - {name: hello, image: "busybox:1.36", command: [sh, -c, date; echo Hello]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "@daily"
  timeZone: Etc/UTC
  suspend: true
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: backup, image: "busybox:1.36"}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: task-pv-volume, labels: {type: local}}
spec:
  storageClassName: manual
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /mnt/data}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: task-pv-claim}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 3Gi}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: e2e-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: e2e-nfs}
provisioner: example.com/nfs
allowVolumeExpansion: true
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: zk-pdb}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: zookeeper}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web-pdb}
spec:
  maxUnavailable: 25%
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: pod-quota}
spec:
  hard: {pods: "2", requests.cpu: "1", limits.memory: 2Gi}
---
apiVersion: v1
kind: LimitRange
metadata: {name: cpu-limit-range}
spec:
  limits:
  - default: {cpu: "1"}
    defaultRequest: {cpu: 500m}
    max: {memory: 1Gi}
    type: Container
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high-priority}
value: 1000000
globalDefault: false
description: "This priority class should be used for XYZ service pods only."
"#;

fn new_kinds_get_kubernetes_defaults_and_kubectls_columns(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file("catalog.yaml", CATALOG);
    let out = server.kubectl_ok(&["create", "-f", "catalog.yaml"]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        CATALOG.matches("\nkind: ").count(),
        "kubectl create printed:\n{out}"
    );

    // CronJobs: the columns, and the defaults Kubernetes fills in.
    let cj = Table::parse(&server.kubectl_ok(&["get", "cj"]));
    assert_eq!(
        cj.header,
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ]
    );
    assert_eq!(
        cj.row("hello")[..6],
        ["hello", "*/1 * * * *", "<none>", "False", "0", "<none>"]
    );
    assert_eq!(
        cj.row("nightly")[..5],
        ["nightly", "@daily", "Etc/UTC", "True", "0"]
    );
    let hello = server.kubectl_json(&["get", "cronjob", "hello"]);
    assert_eq!(hello["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(hello["spec"]["suspend"], false);
    assert_eq!(hello["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(hello["spec"]["failedJobsHistoryLimit"], 1);
    assert_eq!(hello["metadata"]["generation"], 1);
    let wide = Table::parse(&server.kubectl_ok(&["get", "cj", "hello", "-o", "wide"]));
    assert_eq!(wide.cell("hello", "CONTAINERS"), "hello");
    assert_eq!(wide.cell("hello", "IMAGES"), "busybox:1.36");
    assert_eq!(wide.cell("hello", "SELECTOR"), "<none>");

    // kubectl 1.32 and later send `create cronjob` as protobuf.
    server.kubectl_ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox:1.36",
        "--schedule=*/5 * * * *",
        "--",
        "echo",
        "tick",
    ]);
    let tick = server.kubectl_json(&["get", "cj", "tick"]);
    assert_eq!(tick["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(
        tick["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
    // A Job made from the CronJob's template, as `kubectl create job --from` does.
    server.kubectl_ok(&["create", "job", "tick-now", "--from=cronjob/tick"]);
    let job = server.kubectl_json(&["get", "job", "tick-now"]);
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");

    // PersistentVolumes and claims.
    let pv = Table::parse(&server.kubectl_ok(&["get", "pv"]));
    assert_eq!(
        pv.header,
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    assert_eq!(
        pv.row("task-pv-volume")[..9],
        [
            "task-pv-volume",
            "10Gi",
            "RWO",
            "Retain",
            "Pending",
            "",
            "manual",
            "<unset>",
            ""
        ]
    );
    let pv_json = server.kubectl_json(&["get", "pv", "task-pv-volume"]);
    assert_eq!(pv_json["spec"]["volumeMode"], "Filesystem");
    assert!(pv_json["status"]["lastPhaseTransitionTime"].is_string());
    let pvc = Table::parse(&server.kubectl_ok(&["get", "pvc"]));
    assert_eq!(
        pvc.header,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    assert_eq!(pvc.cell("task-pv-claim", "STATUS"), "Pending");
    assert_eq!(pvc.cell("task-pv-claim", "STORAGECLASS"), "manual");
    assert_eq!(
        pvc.cell("task-pv-claim", "VOLUMEATTRIBUTESCLASS"),
        "<unset>"
    );
    let claim = server.kubectl_json(&["get", "pvc", "task-pv-claim"]);
    assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
    // A claim's requested size may grow, its access modes may not change.
    let refused = server.kubectl_fails(&[
        "patch",
        "pvc",
        "task-pv-claim",
        "-p",
        r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#,
    ]);
    assert!(
        refused.contains("spec is immutable after creation"),
        "{refused}"
    );

    // StorageClasses: the default one says so in NAME.
    let sc = Table::parse(&server.kubectl_ok(&["get", "sc"]));
    assert_eq!(
        sc.header,
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    assert_eq!(
        sc.row("e2e-local (default)")[..5],
        [
            "e2e-local (default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ]
    );
    assert_eq!(
        sc.row("e2e-nfs")[..5],
        ["e2e-nfs", "example.com/nfs", "Delete", "Immediate", "true"]
    );

    let pdb = Table::parse(&server.kubectl_ok(&["get", "pdb"]));
    assert_eq!(
        pdb.header,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ]
    );
    assert_eq!(pdb.row("zk-pdb")[..4], ["zk-pdb", "2", "N/A", "0"]);
    assert_eq!(pdb.row("web-pdb")[..4], ["web-pdb", "N/A", "25%", "0"]);

    let quota = Table::parse(&server.kubectl_ok(&["get", "quota"]));
    assert_eq!(quota.header, ["NAME", "AGE", "REQUEST", "LIMIT"]);
    assert!(quota.names().contains(&"pod-quota"));
    let limits = Table::parse(&server.kubectl_ok(&["get", "limits"]));
    assert_eq!(limits.header, ["NAME", "CREATED AT"]);
    let lr = server.kubectl_json(&["get", "limitrange", "cpu-limit-range"]);
    // Kubernetes' defaulting: the default limit falls back to max, the default request to it.
    let item = &lr["spec"]["limits"][0];
    assert_eq!(item["default"]["memory"], "1Gi");
    assert_eq!(item["defaultRequest"]["memory"], "1Gi");
    assert_eq!(item["defaultRequest"]["cpu"], "500m");

    // PriorityClasses: the user's, and the two Kubernetes creates at start-up.
    let pc = Table::parse(&server.kubectl_ok(&["get", "pc"]));
    assert_eq!(
        pc.header,
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    assert_eq!(
        pc.row("high-priority")[..3],
        ["high-priority", "1000000", "false"]
    );
    assert_eq!(pc.row("high-priority")[4], "PreemptLowerPriority");
    assert_eq!(pc.cell("system-cluster-critical", "VALUE"), "2000000000");
    assert_eq!(pc.cell("system-node-critical", "VALUE"), "2000001000");
    let reserved = server.kubectl_stdin_fails(
        &["create", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: system-mine}\nvalue: 10\n",
    );
    assert!(
        reserved.contains("priority class names with 'system-' prefix are reserved"),
        "{reserved}"
    );

    // `describe` finds each of them.
    for (kind, name) in [
        ("cronjob", "hello"),
        ("pv", "task-pv-volume"),
        ("pvc", "task-pv-claim"),
        ("sc", "e2e-local"),
        ("pdb", "zk-pdb"),
        ("quota", "pod-quota"),
        ("limits", "cpu-limit-range"),
        ("pc", "high-priority"),
    ] {
        let out = server.kubectl_ok(&["describe", kind, name]);
        assert!(
            out.lines()
                .next()
                .is_some_and(|l| l.starts_with("Name:") && l.ends_with(name)),
            "kubectl describe {kind} {name}:\n{out}"
        );
    }

    // The claim and the volume carry their protection finalizers, which the controller-manager
    // (not running here) would remove: do its part.
    server.kubectl_ok(&["delete", "-f", "catalog.yaml", "--wait=false"]);
    for object in ["pvc/task-pv-claim", "pv/task-pv-volume"] {
        server.kubectl_ok(&[
            "patch",
            object,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
    assert!(
        server
            .kubectl_ok(&["get", "pv,sc,pc", "-o", "name"])
            .lines()
            .all(|l| !l.contains("task-pv-volume")
                && !l.contains("e2e-")
                && !l.contains("high-priority"))
    );
}

fn a_bad_cron_schedule_is_refused_with_a_422(backend: Backend) {
    let server = ApiServer::start(backend);
    let bad = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: typo}\nspec:\n  schedule: \"*/5 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers: [{name: c, image: \"busybox:1.36\"}]\n";
    let err = server.kubectl_stdin_fails(&["create", "-f", "-", "-v=6"], bad);
    assert!(
        err.contains(
            r#"The CronJob "typo" is invalid: spec.schedule: Invalid value: "*/5 * * *": expected exactly 5 fields, found 4: [*/5 * * *]"#
        ),
        "{err}"
    );
    assert!(err.contains("422 Unprocessable Entity"), "{err}");
    let err = server.kubectl_stdin_fails(
        &["create", "-f", "-"],
        &bad.replace("*/5 * * *", "0 25 * * *"),
    );
    assert!(
        err.contains(r#"spec.schedule: Invalid value: "0 25 * * *": end of range (25) above maximum (23): 25"#),
        "{err}"
    );
    let err = server.kubectl_stdin_fails(
        &["create", "-f", "-"],
        &bad.replace("\"*/5 * * *\"", "\"@daily\"\n  timeZone: Mars/Olympus_Mons"),
    );
    assert!(
        err.contains(r#"spec.timeZone: Invalid value: "Mars/Olympus_Mons": unknown time zone Mars/Olympus_Mons"#),
        "{err}"
    );
    assert!(
        server
            .kubectl_ok(&["get", "cronjobs", "-o", "name"])
            .trim()
            .is_empty()
    );
}

/// `web.yaml` from https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/.
const WEB_YAML: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: nginx # has to match .spec.template.metadata.labels
  serviceName: "nginx"
  replicas: 3 # by default is 1
  minReadySeconds: 10 # by default is 0
  template:
    metadata:
      labels:
        app: nginx # has to match .spec.selector.matchLabels
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.24
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      storageClassName: "my-storage-class"
      resources:
        requests:
          storage: 1Gi
"#;

fn the_documentations_statefulset_web_yaml_is_accepted(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file("web.yaml", WEB_YAML);
    let out = server.kubectl_ok(&["apply", "-f", "web.yaml"]);
    assert!(out.contains("statefulset.apps/web created"), "{out}");
    let sts = server.kubectl_json(&["get", "sts", "web"]);
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "www"
    );
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );
    // The claim templates are not added to the stored pod template: the controller gives
    // each pod its own claim.
    assert!(sts["spec"]["template"]["spec"].get("volumes").is_none());
    // A mount naming neither a volume nor a claim template is still refused.
    let err = server.kubectl_stdin_fails(
        &["apply", "-f", "-"],
        &WEB_YAML.replace(
            "- name: www\n          mountPath",
            "- name: logs\n          mountPath",
        ),
    );
    assert!(
        err.contains(r#"spec.template.spec.containers[0].volumeMounts[0].name: Not found: "logs""#),
        "{err}"
    );
    server.kubectl_ok(&["delete", "-f", "web.yaml"]);
}
