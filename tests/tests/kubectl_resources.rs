//! Every kind the apiserver serves, through the kubectl commands people use on them: tables
//! with kubectl's usual columns, the imperative `create`/`expose`/`run`/`set` commands,
//! `describe`, `explain`, `get all`, `-o wide`, server-side dry run and `diff`.

use serde_json::Value;
use skiff_e2e::fixtures::{deployment, pod, service, yaml_documents};
use skiff_e2e::{ApiServer, Backend, Table};

skiff_e2e::for_each_backend!(
    every_served_kind_prints_its_table,
    imperative_commands_of_kubectl_1_27_which_sends_json,
    imperative_commands_of_kubectl_1_32_and_later_which_send_protobuf,
    describe_shows_objects,
    explain_reads_the_served_openapi_schemas,
    get_all_and_wide_output,
    server_side_dry_run_and_diff_change_nothing,
    status_changes_only_through_the_status_subresource,
);

/// One object of each kind that the Deployment/Service/RC tests do not cover.
const CATALOG: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs1}
spec:
  replicas: 2
  selector: {matchLabels: {app: rs1}}
  template:
    metadata: {labels: {app: rs1}}
    spec: {containers: [{name: c, image: "nginx:1.25"}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: "postgres:16"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: "busybox:1.36"}]}
---
apiVersion: apps/v1
kind: ControllerRevision
metadata: {name: agent-1}
revision: 1
data: {}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: "busybox:1.36", command: [echo, hi]}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot}
---
apiVersion: v1
kind: Endpoints
metadata: {name: manual}
subsets:
- addresses: [{ip: 10.1.2.3}]
  ports: [{port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-1
  labels: {kubernetes.io/service-name: manual}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.1.2.3]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader}
spec: {holderIdentity: node-1, leaseDurationSeconds: 15}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-bot}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {kind: ServiceAccount, name: bot, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-viewer}
rules:
- {apiGroups: [apps], resources: [deployments], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-viewer}
subjects:
- {kind: Group, name: viewers, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: v1
kind: Event
metadata: {name: web.17f0}
involvedObject: {apiVersion: apps/v1, kind: Deployment, name: web, namespace: default}
type: Normal
reason: ScalingReplicaSet
message: Scaled up replica set web-abc to 2
---
apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels: {node-role.kubernetes.io/control-plane: ""}
"#;

/// What `kubectl get ARGS` must print: its header, and some cells of one row.
struct Expect {
    get: &'static [&'static str],
    header: &'static [&'static str],
    row: &'static str,
    cells: &'static [(&'static str, &'static str)],
}

fn every_served_kind_prints_its_table(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file("catalog.yaml", CATALOG);
    let out = server.kubectl_ok(&["create", "-f", "catalog.yaml"]);
    let created: Vec<&str> = out.lines().filter(|l| l.ends_with(" created")).collect();
    assert_eq!(
        created.len(),
        CATALOG.matches("\nkind: ").count(),
        "kubectl create printed:\n{out}"
    );

    let expectations = [
        Expect {
            get: &["rs"],
            header: &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            row: "rs1",
            cells: &[("DESIRED", "2"), ("CURRENT", "0"), ("READY", "0")],
        },
        Expect {
            get: &["sts"],
            header: &["NAME", "READY", "AGE"],
            row: "db",
            cells: &[("READY", "0/1")],
        },
        Expect {
            get: &["ds"],
            header: &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
            row: "agent",
            cells: &[("DESIRED", "0"), ("NODE SELECTOR", "<none>")],
        },
        Expect {
            get: &["controllerrevisions"],
            header: &["NAME", "CONTROLLER", "REVISION", "AGE"],
            row: "agent-1",
            cells: &[("CONTROLLER", "<none>"), ("REVISION", "1")],
        },
        Expect {
            get: &["jobs"],
            header: &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
            row: "once",
            cells: &[("STATUS", "Running"), ("COMPLETIONS", "0/1")],
        },
        Expect {
            get: &["hpa"],
            header: &[
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE",
            ],
            row: "web",
            cells: &[
                ("REFERENCE", "Deployment/web"),
                ("MINPODS", "1"),
                ("MAXPODS", "5"),
                ("REPLICAS", "0"),
            ],
        },
        Expect {
            get: &["secrets"],
            header: &["NAME", "TYPE", "DATA", "AGE"],
            row: "creds",
            cells: &[("TYPE", "Opaque"), ("DATA", "1")],
        },
        Expect {
            get: &["sa", "bot"],
            header: &["NAME", "SECRETS", "AGE"],
            row: "bot",
            cells: &[("SECRETS", "0")],
        },
        Expect {
            get: &["ep", "manual"],
            header: &["NAME", "ENDPOINTS", "AGE"],
            row: "manual",
            cells: &[("ENDPOINTS", "10.1.2.3:8080")],
        },
        Expect {
            get: &["endpointslices"],
            header: &["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            row: "manual-1",
            cells: &[
                ("ADDRESSTYPE", "IPv4"),
                ("PORTS", "8080"),
                ("ENDPOINTS", "10.1.2.3"),
            ],
        },
        Expect {
            get: &["ing"],
            header: &["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
            row: "web",
            cells: &[
                ("CLASS", "<none>"),
                ("HOSTS", "example.com"),
                ("PORTS", "80"),
            ],
        },
        Expect {
            get: &["leases"],
            header: &["NAME", "HOLDER", "AGE"],
            row: "leader",
            cells: &[("HOLDER", "node-1")],
        },
        Expect {
            get: &["roles"],
            header: &["NAME", "CREATED AT"],
            row: "reader",
            cells: &[],
        },
        Expect {
            get: &["rolebindings"],
            header: &["NAME", "ROLE", "AGE"],
            row: "reader-bot",
            cells: &[("ROLE", "Role/reader")],
        },
        Expect {
            get: &["clusterroles", "e2e-viewer"],
            header: &["NAME", "CREATED AT"],
            row: "e2e-viewer",
            cells: &[],
        },
        Expect {
            get: &["clusterrolebindings", "e2e-viewer"],
            header: &["NAME", "ROLE", "AGE"],
            row: "e2e-viewer",
            cells: &[("ROLE", "ClusterRole/e2e-viewer")],
        },
        Expect {
            get: &["nodes"],
            header: &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            row: "node-1",
            cells: &[("STATUS", "Unknown"), ("ROLES", "control-plane")],
        },
    ];
    let mut failures = Vec::new();
    for expect in &expectations {
        let mut args = vec!["get"];
        args.extend(expect.get);
        let out = server.kubectl(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            failures.push(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        let table = Table::parse(&stdout);
        let row = table
            .rows
            .iter()
            .find(|r| r.first().is_some_and(|c| c == expect.row));
        let cells_ok = row.is_some()
            && expect
                .cells
                .iter()
                .all(|(column, value)| table.cell(expect.row, column) == *value);
        if table.header != expect.header || !cells_ok {
            failures.push(format!(
                "kubectl {}: expected header {:?} and a row {:?} with {:?}; got:\n{stdout}",
                args.join(" "),
                expect.header,
                expect.row,
                expect.cells
            ));
        }
    }

    // Events: the table and the field selectors `kubectl describe` uses to find them.
    let out = server.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Deployment,involvedObject.name=web,type=Normal",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let table = Table::parse(&stdout);
    let expected_header = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
    let row_ok = table.rows.len() == 1
        && table.rows[0][1..]
            == [
                "Normal",
                "ScalingReplicaSet",
                "deployment/web",
                "Scaled up replica set web-abc to 2",
            ];
    if !out.status.success() || table.header != expected_header || !row_ok {
        failures.push(format!(
            "kubectl get events --field-selector involvedObject.kind=Deployment,...: expected {expected_header:?} and one row for deployment/web; got:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    // Cordoning is a patch of the node's spec, shown in its STATUS.
    let out = server.kubectl(&["cordon", "node-1"]);
    if String::from_utf8_lossy(&out.stdout).trim() != "node/node-1 cordoned" {
        failures.push(format!("kubectl cordon node-1: {:?}", out));
    } else {
        let nodes = Table::parse(&server.kubectl_ok(&["get", "nodes"]));
        if nodes.cell("node-1", "STATUS") != "Unknown,SchedulingDisabled" {
            failures.push(format!(
                "after cordon, node-1's STATUS should be Unknown,SchedulingDisabled: {nodes:#?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} kind(s) printed wrongly:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );

    // Server-side defaults and conversions of these kinds.
    let secret = server.kubectl_json(&["get", "secret", "creds"]);
    assert_eq!(
        secret["data"]["password"], "aHVudGVyMg==",
        "stringData is stored base64-encoded in data: {secret:#}"
    );
    assert!(
        secret.get("stringData").is_none(),
        "stringData is write-only: {secret:#}"
    );
    assert_eq!(secret["type"], "Opaque");

    let job = server.kubectl_json(&["get", "job", "once"]);
    assert_eq!(job["spec"]["completions"], 1);
    assert_eq!(job["spec"]["parallelism"], 1);
    assert_eq!(job["spec"]["backoffLimit"], 6);
    let uid = job["metadata"]["uid"].as_str().expect("a uid");
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid,
        "the server generates a Job's selector from its uid: {job:#}"
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "once"
    );

    let hpa = server.kubectl_json(&["get", "horizontalpodautoscalers.v2.autoscaling", "web"]);
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    let metric = &hpa["spec"]["metrics"][0];
    assert_eq!(
        metric["resource"]["name"], "cpu",
        "autoscaling/v2 defaults to 80% CPU: {hpa:#}"
    );
    assert_eq!(
        metric["resource"]["target"]["averageUtilization"], 80,
        "{hpa:#}"
    );
    let v1 = server.kubectl_json(&["get", "horizontalpodautoscalers.v1.autoscaling", "web"]);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(
        v1["spec"]["targetCPUUtilizationPercentage"], 80,
        "the same HPA seen as autoscaling/v1: {v1:#}"
    );
}

fn imperative_commands_of_kubectl_1_27_which_sends_json(backend: Backend) {
    imperative_commands_create_what_they_say(backend, Some("1.27"));
}

/// kubectl's typed clients (`create deployment`, `create namespace`, `expose`, ...) send
/// `Content-Type: application/vnd.kubernetes.protobuf` from 1.32 on (and the `kubectl` on PATH
/// dispatches to kubectl.1.33 against a 1.33 server).
fn imperative_commands_of_kubectl_1_32_and_later_which_send_protobuf(backend: Backend) {
    imperative_commands_create_what_they_say(backend, None);
}

/// `version`: a versioned kubectl, or `None` for the one on PATH. Reads use the one on PATH.
fn imperative_commands_create_what_they_say(backend: Backend, version: Option<&str>) {
    let server = ApiServer::start(backend);
    let says = |args: &[&str], expected: &str| {
        let out = match version {
            Some(v) => server.kubectl_v_ok(v, args),
            None => server.kubectl_ok(args),
        };
        assert_eq!(
            out.trim(),
            expected,
            "kubectl{} {}",
            version.map(|v| format!(".{v}")).unwrap_or_default(),
            args.join(" ")
        );
    };

    says(
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--replicas=2",
        ],
        "deployment.apps/web created",
    );
    let d = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["name"],
        "nginx"
    );

    says(
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
        ],
        "service/web exposed",
    );
    let s = server.kubectl_json(&["get", "svc", "web"]);
    assert_eq!(s["spec"]["selector"]["app"], "web");
    assert_eq!(s["spec"]["ports"][0]["port"], 80);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);

    says(&["run", "solo", "--image=nginx:1.25"], "pod/solo created");
    assert_eq!(
        server.kubectl_json(&["get", "pod", "solo"])["metadata"]["labels"]["run"],
        "solo"
    );

    says(
        &[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
        "configmap/cfg created",
    );
    assert_eq!(
        Table::parse(&server.kubectl_ok(&["get", "cm", "cfg"])).cell("cfg", "DATA"),
        "2"
    );

    says(
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=hunter2",
        ],
        "secret/creds created",
    );
    assert_eq!(
        server.kubectl_ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]),
        "aHVudGVyMg=="
    );

    says(&["create", "namespace", "team"], "namespace/team created");
    says(
        &["create", "serviceaccount", "bot", "-n", "team"],
        "serviceaccount/bot created",
    );
    says(
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ],
        "role.rbac.authorization.k8s.io/reader created",
    );
    says(
        &[
            "create",
            "rolebinding",
            "reader-bot",
            "--role=reader",
            "--serviceaccount=team:bot",
        ],
        "rolebinding.rbac.authorization.k8s.io/reader-bot created",
    );
    says(
        &[
            "create",
            "clusterrole",
            "e2e-viewer",
            "--verb=get",
            "--resource=deployments",
        ],
        "clusterrole.rbac.authorization.k8s.io/e2e-viewer created",
    );
    says(
        &[
            "create",
            "job",
            "once",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi",
        ],
        "job.batch/once created",
    );
    says(
        &["create", "ingress", "web", "--rule=example.com/=web:80"],
        "ingress.networking.k8s.io/web created",
    );
    says(
        &[
            "autoscale",
            "deployment",
            "web",
            "--min=2",
            "--max=5",
            "--cpu-percent=80",
        ],
        "horizontalpodautoscaler.autoscaling/web autoscaled",
    );
    assert_eq!(
        server.kubectl_json(&["get", "hpa", "web"])["spec"]["maxReplicas"],
        5
    );

    says(
        &["create", "service", "nodeport", "np", "--tcp=80:8080"],
        "service/np created",
    );
    let np = server.kubectl_json(&["get", "svc", "np"]);
    assert_eq!(np["spec"]["type"], "NodePort");
    let node_port = np["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("a NodePort is allocated");
    assert!(
        (30000..=32767).contains(&node_port),
        "nodePort {node_port} outside 30000-32767"
    );
    let ports = Table::parse(&server.kubectl_ok(&["get", "svc", "np"]));
    assert_eq!(ports.cell("np", "PORT(S)"), format!("80:{node_port}/TCP"));

    says(
        &["set", "image", "deployment/web", "nginx=nginx:1.27"],
        "deployment.apps/web image updated",
    );
    says(
        &["set", "env", "deployment/web", "MODE=fast"],
        "deployment.apps/web env updated",
    );
    let container =
        server.kubectl_json(&["get", "deploy", "web"])["spec"]["template"]["spec"]["containers"][0]
            .clone();
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(
        container["env"],
        serde_json::json!([{"name": "MODE", "value": "fast"}])
    );
}

fn describe_shows_objects(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[
        deployment("web").replicas(2).build(),
        service("web").build(),
        pod("solo").build(),
    ]);

    // `describe` prints "Field:   value" lines; compare with the padding collapsed.
    let describe = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["describe"];
        all.extend(args);
        server
            .kubectl_ok(&all)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let has = |lines: &[String], expected: &str| {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "no line starting {expected:?} in:\n{}",
            lines.join("\n")
        );
    };
    let d = describe(&["deploy", "web"]);
    has(&d, "Name: web");
    has(&d, "Namespace: default");
    has(&d, "Selector: app=web");
    has(
        &d,
        "Replicas: 2 desired | 0 updated | 0 total | 0 available | 0 unavailable",
    );
    has(&d, "StrategyType: RollingUpdate");
    has(
        &d,
        "RollingUpdateStrategy: 25% max unavailable, 25% max surge",
    );
    has(&d, "Image: nginx:1.25");

    let s = describe(&["svc", "web"]);
    has(&s, "Type: ClusterIP");
    has(&s, "Port: <unset> 80/TCP");
    has(&s, "TargetPort: 80/TCP");

    let p = describe(&["pod", "solo"]);
    has(&p, "Status: Pending");
    has(&p, "QoS Class: BestEffort");
    has(
        &p,
        "Tolerations: node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
    );

    let ns = describe(&["ns", "default"]);
    has(&ns, "Status: Active");
}

fn explain_reads_the_served_openapi_schemas(backend: Backend) {
    let server = ApiServer::start(backend);
    let explain = server.kubectl_ok(&["explain", "deployment.spec.replicas"]);
    assert!(explain.contains("FIELD: replicas <integer>"), "{explain}");
    assert!(explain.contains("Number of desired pods"), "{explain}");
    let explain = server.kubectl_ok(&["explain", "pods"]);
    assert!(
        explain
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["KIND:", "Pod"]),
        "{explain}"
    );
}

fn get_all_and_wide_output(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[
        deployment("web").build(),
        service("web").build(),
        pod("solo").build(),
    ]);

    let all = server.kubectl_ok(&["get", "all", "-o", "name"]);
    for expected in [
        "pod/solo",
        "service/kubernetes",
        "service/web",
        "deployment.apps/web",
    ] {
        assert!(
            all.lines().any(|l| l == expected),
            "`kubectl get all` lacks {expected}:\n{all}"
        );
    }

    let deploys = Table::parse(&server.kubectl_ok(&["get", "deploy", "-o", "wide"]));
    assert_eq!(
        deploys.header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(deploys.row("web")[5..], ["nginx", "nginx:1.25", "app=web"]);

    let pods = Table::parse(&server.kubectl_ok(&["get", "pods", "-o", "wide"]));
    assert_eq!(
        pods.header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(
        pods.row("solo")[5..],
        ["<none>", "<none>", "<none>", "<none>"]
    );

    let services = Table::parse(&server.kubectl_ok(&["get", "svc", "web", "-o", "wide"]));
    assert_eq!(services.cell("web", "SELECTOR"), "app=web");

    let labels = Table::parse(&server.kubectl_ok(&["get", "pods", "--show-labels"]));
    assert_eq!(labels.cell("solo", "LABELS"), "app=solo");
}

fn server_side_dry_run_and_diff_change_nothing(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file(
        "web.yaml",
        &yaml_documents(&[deployment("web").replicas(2).build()]),
    );

    let dry: Value = serde_json::from_str(&server.kubectl_ok(&[
        "create",
        "-f",
        "web.yaml",
        "--dry-run=server",
        "-o",
        "json",
    ]))
    .expect("-o json prints JSON");
    assert_eq!(
        dry["spec"]["strategy"]["type"], "RollingUpdate",
        "a dry run shows the defaulted object: {dry:#}"
    );
    let out = server.kubectl_ok(&["create", "-f", "web.yaml", "--dry-run=server"]);
    assert_eq!(out.trim(), "deployment.apps/web created (server dry run)");
    let err = server.kubectl_fails(&["get", "deploy", "web"]);
    assert!(
        err.contains("NotFound"),
        "a dry-run create stored the object: {err}"
    );

    server.kubectl_ok(&["apply", "-f", "web.yaml"]);
    let before = server.kubectl_json(&["get", "deploy", "web"]);

    // Nothing changed: diff prints nothing and exits 0.
    let same = server.kubectl(&["diff", "-f", "web.yaml"]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );

    server.write_file(
        "web.yaml",
        &yaml_documents(&[deployment("web").replicas(3).build()]),
    );
    let diff = server.kubectl(&["diff", "-f", "web.yaml"]);
    let stdout = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "diff exits 1 when something would change: {stdout}{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start_matches('-').trim() == "replicas: 2" && l.starts_with('-')),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start_matches('+').trim() == "replicas: 3" && l.starts_with('+')),
        "{stdout}"
    );

    let out = server.kubectl_ok(&["apply", "-f", "web.yaml", "--dry-run=server"]);
    assert_eq!(
        out.trim(),
        "deployment.apps/web configured (server dry run)"
    );
    let out = server.kubectl_ok(&["delete", "deploy", "web", "--dry-run=server"]);
    assert!(
        out.trim().starts_with(r#"deployment.apps "web" deleted"#)
            && out.contains("(server dry run)"),
        "{out}"
    );

    let after = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "dry runs and diff changed the object"
    );
    assert_eq!(after["spec"]["replicas"], 2);
}

fn status_changes_only_through_the_status_subresource(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[deployment("web").replicas(2).build()]);

    // A status written through the main resource is ignored.
    let out = server.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"replicas":9}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched (no change)");

    // Through /status it lands, and the spec does not change with it.
    let status = r#"{"spec":{"replicas":7},"status":{"replicas":2,"readyReplicas":2,"updatedReplicas":2,"availableReplicas":2}}"#;
    let out = server.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        status,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let d = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(
        d["spec"]["replicas"], 2,
        "a /status write must not change the spec"
    );
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1, "status is not the spec");
    let table = Table::parse(&server.kubectl_ok(&["get", "deploy", "web"]));
    assert_eq!(table.row("web")[1..4], ["2/2", "2", "2"]);

    // The scale subresource reads and writes spec.replicas.
    let scale = server.kubectl_json(&["get", "deploy", "web", "--subresource=scale"]);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
}
