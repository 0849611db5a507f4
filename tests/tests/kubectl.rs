//! The real `kubectl` against a real `skiff-apiserver`, on both store backends: what a user
//! types and what they must see, as on a real cluster.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;
use skiff_e2e::fixtures::{
    SEED_REPLICATION_CONTROLLER, config_map, deployment, pod, service, yaml_documents,
};
use skiff_e2e::{ApiServer, Backend, Table, strip_ansi};

skiff_e2e::for_each_backend!(
    create_multi_document_file_then_get_tables,
    get_output_formats_show_server_defaults,
    get_with_label_and_field_selectors_and_chunks,
    apply_reports_created_unchanged_configured,
    apply_server_side,
    apply_removes_what_the_manifest_no_longer_has,
    server_side_apply_conflicts_name_the_other_manager,
    scale_label_annotate,
    patch_merge_json_and_strategic,
    get_watch_shows_changes_as_they_happen,
    delete_f_removes_every_object,
    api_resources_version_cluster_info,
    errors_print_like_a_real_cluster,
    unknown_field_is_rejected_by_default_validation,
    stale_resource_version_is_a_conflict,
    versioned_kubectls_get,
);

/// Deployment `web` (2 replicas) + Service `web` + the seed's ReplicationController `nginx`.
fn app_manifest() -> String {
    let docs = yaml_documents(&[
        deployment("web").replicas(2).build(),
        service("web").build(),
    ]);
    format!("{docs}---\n{SEED_REPLICATION_CONTROLLER}")
}

fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether `ip` is in the default service range 10.96.0.0/12.
fn in_service_range(ip: &str) -> bool {
    let ip: Ipv4Addr = ip
        .parse()
        .unwrap_or_else(|_| panic!("{ip:?} is not an IPv4 address"));
    u32::from(ip) & 0xfff0_0000 == u32::from(Ipv4Addr::new(10, 96, 0, 0))
}

fn create_multi_document_file_then_get_tables(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file("app.yaml", &app_manifest());
    let out = server.kubectl_ok(&["create", "-f", "app.yaml"]);
    assert_eq!(
        lines(&out),
        [
            "deployment.apps/web created",
            "service/web created",
            "replicationcontroller/nginx created"
        ]
    );

    let deploys = Table::parse(&server.kubectl_ok(&["get", "deploy"]));
    assert_eq!(
        deploys.header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert_eq!(deploys.names(), ["web"]);
    // No controllers run: nothing is ready or up to date yet.
    assert_eq!(deploys.row("web")[..4], ["web", "0/2", "0", "0"]);

    let services = Table::parse(&server.kubectl_ok(&["get", "svc"]));
    assert_eq!(
        services.header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(services.names(), ["kubernetes", "web"]);
    let web = services.row("web");
    assert_eq!(web[1], "ClusterIP");
    assert!(
        in_service_range(&web[2]),
        "web's ClusterIP {} is outside 10.96.0.0/12",
        web[2]
    );
    assert_eq!(web[3..5], ["<none>", "80/TCP"]);
    let kubernetes = services.row("kubernetes");
    assert_eq!(
        kubernetes[1..5],
        ["ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );

    let rcs = Table::parse(&server.kubectl_ok(&["get", "rc"]));
    assert_eq!(rcs.header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(rcs.row("nginx")[..4], ["nginx", "3", "0", "0"]);

    server.kubectl_create(&[pod("solo").build()]);
    let pods = Table::parse(&server.kubectl_ok(&["get", "pods"]));
    assert_eq!(pods.header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(pods.row("solo")[..4], ["solo", "0/1", "Pending", "0"]);

    let namespaces = Table::parse(&server.kubectl_ok(&["get", "ns"]));
    assert_eq!(namespaces.header, ["NAME", "STATUS", "AGE"]);
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert_eq!(namespaces.row(ns)[1], "Active", "namespace {ns}");
    }

    // Several kinds at once, by short name, as `kubectl get` prints them.
    let out = server.kubectl_ok(&["get", "deploy,rc", "-o", "name"]);
    assert_eq!(
        lines(&out),
        ["deployment.apps/web", "replicationcontroller/nginx"]
    );
}

fn get_output_formats_show_server_defaults(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[deployment("web").build(), service("web").port(8080).build()]);
    server.write_file("rc.yaml", SEED_REPLICATION_CONTROLLER);
    server.kubectl_ok(&["create", "-f", "rc.yaml"]);

    let d = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["metadata"]["name"], "web");
    assert_eq!(d["metadata"]["namespace"], "default");
    assert_eq!(d["metadata"]["generation"], 1);
    for set_by_server in ["uid", "resourceVersion", "creationTimestamp"] {
        assert!(
            d["metadata"][set_by_server]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "metadata.{set_by_server} in {d:#}"
        );
    }
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    let template = &spec["template"]["spec"];
    assert_eq!(template["restartPolicy"], "Always");
    assert_eq!(template["dnsPolicy"], "ClusterFirst");
    assert_eq!(template["terminationGracePeriodSeconds"], 30);
    assert_eq!(template["schedulerName"], "default-scheduler");
    assert_eq!(
        template["containers"][0]["imagePullPolicy"], "IfNotPresent",
        "nginx:1.25 has a tag"
    );

    // -o yaml shows the same object.
    let yaml = server.kubectl_ok(&["get", "deploy", "web", "-o", "yaml"]);
    let from_yaml: Value = serde_yaml::from_str(&yaml)
        .unwrap_or_else(|e| panic!("-o yaml printed no YAML ({e}):\n{yaml}"));
    assert_eq!(from_yaml, d, "-o yaml and -o json disagree");

    let s = server.kubectl_json(&["get", "svc", "web"]);
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["sessionAffinity"], "None");
    let port = &s["spec"]["ports"][0];
    assert_eq!(port["port"], 8080);
    assert_eq!(port["targetPort"], 8080, "targetPort defaults to port");
    assert_eq!(port["protocol"], "TCP");
    let ip = s["spec"]["clusterIP"]
        .as_str()
        .expect("a ClusterIP is allocated");
    assert!(
        in_service_range(ip),
        "ClusterIP {ip} is outside 10.96.0.0/12"
    );
    assert_eq!(s["spec"]["clusterIPs"], serde_json::json!([ip]));

    let rc = server.kubectl_json(&["get", "rc", "nginx"]);
    assert_eq!(rc["spec"]["replicas"], 3);
    assert_eq!(rc["spec"]["selector"]["app"], "nginx");
    let template = &rc["spec"]["template"]["spec"];
    assert_eq!(template["restartPolicy"], "Always");
    assert_eq!(template["dnsPolicy"], "ClusterFirst");
    assert_eq!(
        template["containers"][0]["imagePullPolicy"], "Always",
        "an untagged image means :latest"
    );
    assert_eq!(template["containers"][0]["ports"][0]["protocol"], "TCP");

    assert_eq!(
        server
            .kubectl_ok(&["get", "deploy", "web", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        server.kubectl_ok(&["get", "rc", "nginx", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
}

fn get_with_label_and_field_selectors_and_chunks(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[
        config_map("a")
            .label("e2e", "sel")
            .label("tier", "web")
            .build(),
        config_map("b")
            .label("e2e", "sel")
            .label("tier", "web")
            .data("k", "v")
            .build(),
        config_map("c")
            .label("e2e", "sel")
            .label("tier", "db")
            .build(),
    ]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["get", "cm", "-o", "name"];
        all.extend(args);
        lines(&server.kubectl_ok(&all))
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(names(&["-l", "tier=web"]), ["configmap/a", "configmap/b"]);
    assert_eq!(names(&["-l", "e2e=sel,tier!=web"]), ["configmap/c"]);
    assert_eq!(names(&["-l", "tier in (db,cache)"]), ["configmap/c"]);
    assert_eq!(names(&["-l", "e2e=sel,!tier"]), Vec::<String>::new());
    assert_eq!(
        names(&["--field-selector", "metadata.name=b"]),
        ["configmap/b"]
    );
    assert_eq!(
        names(&["-l", "e2e=sel", "--field-selector", "metadata.name!=b"]),
        ["configmap/a", "configmap/c"]
    );

    // --chunk-size 1: kubectl pages through with limit/continue and prints one table.
    let out = server.kubectl(&["get", "cm", "-l", "e2e=sel", "--chunk-size", "1", "-v=6"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = Table::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(table.header, ["NAME", "DATA", "AGE"]);
    assert_eq!(table.names(), ["a", "b", "c"]);
    assert_eq!(table.row("b")[1], "1");
    let log = String::from_utf8_lossy(&out.stderr);
    let pages = log
        .lines()
        .filter(|l| l.contains("/configmaps?") && l.contains("limit=1"))
        .count();
    assert!(
        pages >= 3,
        "expected kubectl to fetch 3 pages of 1, its log:\n{log}"
    );
    assert!(
        log.contains("continue="),
        "kubectl never sent a continue token, its log:\n{log}"
    );

    // Pod field selectors that schedulers and kubelets use.
    server.kubectl_create(&[pod("p1").build()]);
    let pods = |selector: &str| {
        lines(&server.kubectl_ok(&["get", "pods", "--field-selector", selector, "-o", "name"]))
            .join(" ")
    };
    assert_eq!(pods("spec.nodeName="), "pod/p1");
    assert_eq!(pods("status.phase=Pending"), "pod/p1");
    assert_eq!(pods("status.phase=Running"), "");
}

fn apply_reports_created_unchanged_configured(backend: Backend) {
    let server = ApiServer::start(backend);
    let manifest = |replicas| {
        yaml_documents(&[
            deployment("web").replicas(replicas).build(),
            service("web").build(),
        ])
    };
    server.write_file("app.yaml", &manifest(2));
    // No --validate=false: kubectl validates against the server's OpenAPI documents.
    let out = server.kubectl_ok(&["apply", "-f", "app.yaml"]);
    assert_eq!(
        lines(&out),
        ["deployment.apps/web created", "service/web created"]
    );
    let out = server.kubectl_ok(&["apply", "-f", "app.yaml"]);
    assert_eq!(
        lines(&out),
        ["deployment.apps/web unchanged", "service/web unchanged"]
    );

    server.write_file("app.yaml", &manifest(3));
    let out = server.kubectl_ok(&["apply", "-f", "app.yaml"]);
    assert_eq!(
        lines(&out),
        ["deployment.apps/web configured", "service/web unchanged"]
    );

    let d = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    let last_applied =
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("apply records the last applied configuration");
    let last_applied: Value = serde_json::from_str(last_applied).expect("last-applied is JSON");
    assert_eq!(last_applied["spec"]["replicas"], 3);
}

fn apply_server_side(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file(
        "web.yaml",
        &yaml_documents(&[deployment("web").replicas(2).build()]),
    );
    let out = server.kubectl_ok(&["apply", "--server-side", "-f", "web.yaml"]);
    assert_eq!(lines(&out), ["deployment.apps/web serverside-applied"]);

    let d = server.kubectl_json(&["get", "deploy", "web", "--show-managed-fields"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["strategy"]["type"], "RollingUpdate",
        "defaults apply to server-side apply too"
    );
    let managers = d["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"),
        "managedFields should name kubectl's Apply: {managers:#?}"
    );

    server.write_file(
        "web.yaml",
        &yaml_documents(&[deployment("web").replicas(4).build()]),
    );
    let out = server.kubectl_ok(&["apply", "--server-side", "-f", "web.yaml"]);
    assert_eq!(lines(&out), ["deployment.apps/web serverside-applied"]);
    assert_eq!(
        server.kubectl_json(&["get", "deploy", "web"])["spec"]["replicas"],
        4
    );

    // Server-side apply also creates kinds without a controller, e.g. a ConfigMap.
    server.write_file(
        "cm.yaml",
        &yaml_documents(&[config_map("settings").data("mode", "fast").build()]),
    );
    let out = server.kubectl_ok(&["apply", "--server-side", "-f", "cm.yaml"]);
    assert_eq!(lines(&out), ["configmap/settings serverside-applied"]);
    assert_eq!(
        server.kubectl_json(&["get", "cm", "settings"])["data"]["mode"],
        "fast"
    );
}

fn apply_removes_what_the_manifest_no_longer_has(backend: Backend) {
    let server = ApiServer::start(backend);
    let mut full = deployment("web").label("tier", "web").build();
    full["metadata"]["annotations"] = serde_json::json!({"note": "first"});
    full["spec"]["template"]["spec"]["containers"][0]["env"] =
        serde_json::json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
    let sidecar = serde_json::json!({"name": "sidecar", "image": "busybox:1.36"});
    full["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(sidecar);
    server.write_file("web.yaml", &yaml_documents(&[full]));
    let out = server.kubectl_ok(&["apply", "-f", "web.yaml"]);
    assert_eq!(lines(&out), ["deployment.apps/web created"]);

    // The same Deployment without the label, the annotation, env B and the sidecar: kubectl
    // sends a strategic merge patch with deletions ("tier": null, $patch: delete, ...).
    let mut trimmed = deployment("web").build();
    trimmed["spec"]["template"]["spec"]["containers"][0]["env"] =
        serde_json::json!([{"name": "A", "value": "1"}]);
    server.write_file("web.yaml", &yaml_documents(&[trimmed]));
    let out = server.kubectl_ok(&["apply", "-f", "web.yaml"]);
    assert_eq!(lines(&out), ["deployment.apps/web configured"]);

    let d = server.kubectl_json(&["get", "deploy", "web"]);
    assert!(
        d["metadata"]["labels"].get("tier").is_none(),
        "label kept: {d:#}"
    );
    assert!(
        d["metadata"]["annotations"].get("note").is_none(),
        "annotation kept: {d:#}"
    );
    let containers = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(1),
        "sidecar kept: {containers:#}"
    );
    assert_eq!(
        containers[0]["env"],
        serde_json::json!([{"name": "A", "value": "1"}])
    );
    assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
}

fn server_side_apply_conflicts_name_the_other_manager(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file(
        "web.yaml",
        &yaml_documents(&[deployment("web").replicas(2).build()]),
    );
    server.kubectl_ok(&["apply", "--server-side", "-f", "web.yaml"]);
    server.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
        "--field-manager=ops",
    ]);

    // kubectl's apply still says 2, but "ops" owns .spec.replicas now.
    let err = server.kubectl_fails(&["apply", "--server-side", "-f", "web.yaml"]);
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "ops""#)
            && err.contains(".spec.replicas"),
        "{err}"
    );
    assert_eq!(
        server.kubectl_json(&["get", "deploy", "web"])["spec"]["replicas"],
        5
    );

    let out = server.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "web.yaml",
    ]);
    assert_eq!(lines(&out), ["deployment.apps/web serverside-applied"]);
    let d = server.kubectl_json(&["get", "deploy", "web", "--show-managed-fields"]);
    assert_eq!(d["spec"]["replicas"], 2);
    let owners_of_replicas: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["fieldsV1"]["f:spec"].get("f:replicas").is_some())
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(
        owners_of_replicas,
        ["kubectl"],
        "after --force-conflicts only kubectl owns .spec.replicas"
    );
}

fn scale_label_annotate(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[deployment("web").replicas(2).build()]);
    server.write_file("rc.yaml", SEED_REPLICATION_CONTROLLER);
    server.kubectl_ok(&["create", "-f", "rc.yaml"]);

    let out = server.kubectl_ok(&["scale", "deploy/web", "--replicas", "5"]);
    assert_eq!(lines(&out), ["deployment.apps/web scaled"]);
    let d = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2, "scaling changes the spec");
    assert_eq!(
        Table::parse(&server.kubectl_ok(&["get", "deploy"])).row("web")[1],
        "0/5"
    );

    let out = server.kubectl_ok(&["scale", "rc", "nginx", "--replicas=1"]);
    assert_eq!(lines(&out), ["replicationcontroller/nginx scaled"]);
    assert_eq!(
        server.kubectl_json(&["get", "rc", "nginx"])["spec"]["replicas"],
        1
    );

    let out = server.kubectl_ok(&["label", "deploy", "web", "tier=frontend"]);
    assert_eq!(lines(&out), ["deployment.apps/web labeled"]);
    assert_eq!(
        server
            .kubectl_ok(&["get", "deploy", "-l", "tier=frontend", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    let err = server.kubectl_fails(&["label", "deploy", "web", "tier=backend"]);
    assert!(err.contains("--overwrite is false"), "{err}");
    server.kubectl_ok(&["label", "deploy", "web", "tier=backend", "--overwrite"]);
    assert_eq!(
        server.kubectl_json(&["get", "deploy", "web"])["metadata"]["labels"]["tier"],
        "backend"
    );
    let out = server.kubectl_ok(&["label", "deploy", "web", "tier-"]);
    assert_eq!(lines(&out), ["deployment.apps/web unlabeled"]);
    assert_eq!(
        server
            .kubectl_ok(&["get", "deploy", "-l", "tier", "-o", "name"])
            .trim(),
        ""
    );

    let out = server.kubectl_ok(&["annotate", "deploy", "web", "owner=team-a"]);
    assert_eq!(lines(&out), ["deployment.apps/web annotated"]);
    let d = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(d["metadata"]["annotations"]["owner"], "team-a");
    assert_eq!(
        d["metadata"]["generation"], 2,
        "labels and annotations are not the spec"
    );
}

fn patch_merge_json_and_strategic(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[deployment("web").replicas(1).build()]);
    let get = || server.kubectl_json(&["get", "deploy", "web"]);

    let out = server.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    assert_eq!(lines(&out), ["deployment.apps/web patched"]);
    assert_eq!(get()["spec"]["replicas"], 3);

    let out = server.kubectl_ok(&[
        "patch", "deploy", "web", "--type", "json", "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4},{"op":"add","path":"/metadata/labels","value":{"patched":"json"}}]"#,
    ]);
    assert_eq!(lines(&out), ["deployment.apps/web patched"]);
    let d = get();
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["labels"]["patched"], "json");

    // Strategic merge (kubectl's default for built-in kinds): containers merge by name, so the
    // image changes and the container keeps its ports.
    let new_image =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#;
    let out = server.kubectl_ok(&["patch", "deploy", "web", "-p", new_image]);
    assert_eq!(lines(&out), ["deployment.apps/web patched"]);
    let containers = get()["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(1),
        "{containers:#}"
    );
    assert_eq!(containers[0]["image"], "nginx:1.27");
    assert_eq!(
        containers[0]["ports"][0]["containerPort"], 80,
        "strategic merge keeps the ports"
    );

    // The same patch again changes nothing, and kubectl says so.
    let out = server.kubectl_ok(&["patch", "deploy", "web", "-p", new_image]);
    assert_eq!(lines(&out), ["deployment.apps/web patched (no change)"]);

    let sidecar = r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#;
    server.kubectl_ok(&["patch", "deploy", "web", "-p", sidecar]);
    let containers = get()["spec"]["template"]["spec"]["containers"].clone();
    let names: Vec<&str> = containers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "a strategic patch adds a container by name: {containers:#}"
    );
    assert!(
        names.contains(&"nginx") && names.contains(&"sidecar"),
        "{names:?}"
    );

    let remove =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}"#;
    server.kubectl_ok(&["patch", "deploy", "web", "-p", remove]);
    let containers = get()["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(1),
        "$patch: delete removes it: {containers:#}"
    );
    assert_eq!(containers[0]["name"], "nginx");
}

fn get_watch_shows_changes_as_they_happen(backend: Backend) {
    const WAIT: Duration = Duration::from_secs(20);
    let server = ApiServer::start(backend);

    let mut watch = server.kubectl_watch(&[
        "get",
        "cm",
        "-l",
        "e2e=watch",
        "-w",
        "--output-watch-events",
    ]);
    server.kubectl_create(&[config_map("watched").label("e2e", "watch").build()]);
    let line = watch.expect_line(WAIT, |l| l.contains("watched"));
    assert!(line.starts_with("ADDED"), "{line}");
    server.kubectl_ok(&["label", "cm", "watched", "color=blue"]);
    watch.expect_line(WAIT, |l| l.starts_with("MODIFIED") && l.contains("watched"));
    server.kubectl_ok(&["delete", "cm", "watched"]);
    watch.expect_line(WAIT, |l| l.starts_with("DELETED") && l.contains("watched"));
    assert!(
        watch
            .seen()
            .iter()
            .all(|l| l.starts_with("EVENT") || l.contains("watched")),
        "the label selector must hold for the watch too: {:#?}",
        watch.seen()
    );

    let mut pods = server.kubectl_watch(&["get", "pods", "-w"]);
    server.kubectl_create(&[pod("p1").build()]);
    let row = pods.expect_line(WAIT, |l| l.starts_with("p1 "));
    assert!(row.contains("Pending"), "{row}");
    server.kubectl_ok(&["label", "pod", "p1", "seen=yes"]);
    // The modification shows up as a second row for p1.
    pods.expect_line(WAIT, |l| l.starts_with("p1 "));
}

fn delete_f_removes_every_object(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file("app.yaml", &app_manifest());
    server.kubectl_ok(&["create", "-f", "app.yaml"]);

    let out = server.kubectl_ok(&["delete", "-f", "app.yaml"]);
    let deleted = lines(&out);
    assert_eq!(deleted.len(), 3, "{out}");
    // kubectl 1.33+ may add " from default namespace".
    for (line, expected) in deleted.iter().zip([
        r#"deployment.apps "web" deleted"#,
        r#"service "web" deleted"#,
        r#"replicationcontroller "nginx" deleted"#,
    ]) {
        assert!(
            line.starts_with(expected),
            "{line:?} should start with {expected:?}"
        );
    }

    let err = server.kubectl_fails(&["get", "deploy", "web"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): deployments.apps "web" not found"#
    );
    assert_eq!(
        Table::parse(&server.kubectl_ok(&["get", "svc"])).names(),
        ["kubernetes"]
    );
    assert_eq!(server.kubectl_ok(&["get", "rc", "-o", "name"]), "");

    let err = server.kubectl_fails(&["delete", "-f", "app.yaml"]);
    assert!(
        err.contains(r#"Error from server (NotFound): error when deleting "app.yaml": deployments.apps "web" not found"#),
        "{err}"
    );
}

fn api_resources_version_cluster_info(backend: Backend) {
    let server = ApiServer::start(backend);

    let resources = Table::parse(&server.kubectl_ok(&["api-resources"]));
    assert_eq!(
        resources.header,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    for expected in [
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["pods", "po", "v1", "true", "Pod"],
        ["services", "svc", "v1", "true", "Service"],
        [
            "replicationcontrollers",
            "rc",
            "v1",
            "true",
            "ReplicationController",
        ],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["configmaps", "cm", "v1", "true", "ConfigMap"],
        ["nodes", "no", "v1", "false", "Node"],
        ["daemonsets", "ds", "apps/v1", "true", "DaemonSet"],
        [
            "horizontalpodautoscalers",
            "hpa",
            "autoscaling/v2",
            "true",
            "HorizontalPodAutoscaler",
        ],
    ] {
        assert_eq!(
            resources.row(expected[0]),
            expected,
            "api-resources row for {}",
            expected[0]
        );
    }
    for (name, rest) in [
        ("jobs", ["batch/v1", "true", "Job"]),
        ("leases", ["coordination.k8s.io/v1", "true", "Lease"]),
    ] {
        assert_eq!(
            resources.row(name)[2..],
            rest,
            "api-resources row for {name}"
        );
    }
    let versions = server.kubectl_ok(&["api-versions"]);
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v2",
        "rbac.authorization.k8s.io/v1",
        "networking.k8s.io/v1",
    ] {
        assert!(
            lines(&versions).contains(&gv),
            "api-versions lacks {gv}:\n{versions}"
        );
    }

    let version = server.kubectl_json(&["version"]);
    let server_version = &version["serverVersion"];
    assert_eq!(server_version["major"], "1");
    assert!(
        server_version["minor"]
            .as_str()
            .is_some_and(|m| m.starts_with("33")),
        "{server_version:#}"
    );
    assert!(
        server_version["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.33.")),
        "{server_version:#}"
    );
    let text = server.kubectl_ok(&["version"]);
    assert!(text.contains("Server Version: v1.33."), "{text}");

    let info = strip_ansi(&server.kubectl_ok(&["cluster-info"]));
    let expected = format!("Kubernetes control plane is running at {}", server.url());
    assert!(
        info.contains(&expected),
        "cluster-info should say {expected:?}:\n{info}"
    );
}

fn errors_print_like_a_real_cluster(backend: Backend) {
    let server = ApiServer::start(backend);

    let err = server.kubectl_fails(&["get", "deploy", "nope"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): deployments.apps "nope" not found"#
    );
    let err = server.kubectl_fails(&["get", "pods", "nope", "-n", "kube-system"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): pods "nope" not found"#
    );

    server.write_file("web.yaml", &yaml_documents(&[deployment("web").build()]));
    server.kubectl_ok(&["create", "-f", "web.yaml"]);
    let err = server.kubectl_fails(&["create", "-f", "web.yaml"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (AlreadyExists): error when creating "web.yaml": deployments.apps "web" already exists"#
    );

    // Writing into a namespace that does not exist.
    server.write_file("cm.yaml", &yaml_documents(&[config_map("c").build()]));
    let err = server.kubectl_fails(&["create", "-f", "cm.yaml", "-n", "ghost"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): error when creating "cm.yaml": namespaces "ghost" not found"#
    );

    // Invalid objects: kubectl prints the kind, the name and the offending field.
    let mismatch = deployment("bad")
        .template_labels(&[("app", "other")])
        .build();
    let err = server.kubectl_stdin_fails(&["create", "-f", "-"], &yaml_documents(&[mismatch]));
    assert!(
        err.starts_with(r#"The Deployment "bad" is invalid: "#),
        "{err}"
    );
    assert!(
        err.contains("spec.template.metadata.labels: Invalid value"),
        "{err}"
    );
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );

    let negative = deployment("neg").replicas(-1).build();
    let err = server.kubectl_stdin_fails(&["create", "-f", "-"], &yaml_documents(&[negative]));
    assert!(
        err.starts_with(r#"The Deployment "neg" is invalid: "#),
        "{err}"
    );
    assert!(
        err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );

    let err = server.kubectl_stdin_fails(
        &["create", "-f", "-"],
        &yaml_documents(&[config_map("Bad_Name").build()]),
    );
    assert!(
        err.starts_with(
            r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name""#
        ),
        "{err}"
    );

    // Nothing invalid was stored.
    assert_eq!(
        lines(&server.kubectl_ok(&["get", "deploy", "-o", "name"])),
        ["deployment.apps/web"]
    );
}

fn unknown_field_is_rejected_by_default_validation(backend: Backend) {
    let server = ApiServer::start(backend);
    let mut typo = deployment("web").build();
    typo["spec"]["replicass"] = serde_json::json!(2);
    let manifest = yaml_documents(&[typo]);
    server.write_file("typo.yaml", &manifest);
    let err = server.kubectl_fails(&["apply", "-f", "typo.yaml"]);
    assert!(err.contains(r#"unknown field "spec.replicass""#), "{err}");
    let err = server.kubectl_fails(&["get", "deploy", "web"]);
    assert!(
        err.contains("NotFound"),
        "the typo'd Deployment must not be stored: {err}"
    );

    let err = server.kubectl_fails(&["create", "-f", "typo.yaml"]);
    assert!(err.contains(r#"unknown field "spec.replicass""#), "{err}");
}

fn stale_resource_version_is_a_conflict(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[config_map("c").data("k", "1").build()]);
    let stale = server.kubectl_ok(&["get", "cm", "c", "-o", "yaml"]);
    server.kubectl_ok(&["label", "cm", "c", "changed=yes"]);
    server.write_file("stale.yaml", &stale.replace("k: \"1\"", "k: \"2\""));
    let err = server.kubectl_fails(&["replace", "-f", "stale.yaml"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (Conflict): error when replacing "stale.yaml": Operation cannot be fulfilled on configmaps "c": the object has been modified; please apply your changes to the latest version and try again"#
    );
    assert_eq!(server.kubectl_json(&["get", "cm", "c"])["data"]["k"], "1");
}

fn versioned_kubectls_get(backend: Backend) {
    let server = ApiServer::start(backend);
    server.write_file("app.yaml", &app_manifest());
    server.kubectl_ok(&["create", "-f", "app.yaml"]);
    for version in ["1.27", "1.32", "1.33"] {
        let ns = Table::parse(&server.kubectl_v_ok(version, &["get", "ns"]));
        assert_eq!(ns.header, ["NAME", "STATUS", "AGE"], "kubectl.{version}");
        assert_eq!(ns.row("kube-system")[1], "Active", "kubectl.{version}");

        let deploys = Table::parse(&server.kubectl_v_ok(version, &["get", "deploy"]));
        assert_eq!(
            deploys.header,
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            "kubectl.{version}"
        );
        assert_eq!(deploys.row("web")[1], "0/2", "kubectl.{version}");

        let services = Table::parse(&server.kubectl_v_ok(version, &["get", "svc", "web"]));
        assert_eq!(
            services.header,
            [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE"
            ],
            "kubectl.{version}"
        );

        let rcs = Table::parse(&server.kubectl_v_ok(version, &["get", "rc"]));
        assert_eq!(rcs.row("nginx")[..2], ["nginx", "3"], "kubectl.{version}");

        let json: Value = serde_json::from_str(
            &server.kubectl_v_ok(version, &["get", "deploy", "web", "-o", "json"]),
        )
        .expect("-o json is JSON");
        assert_eq!(json["spec"]["replicas"], 2, "kubectl.{version}");

        let out = server.kubectl_v(version, &["get", "pods"]);
        assert!(
            out.status.success(),
            "kubectl.{version} get pods: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "No resources found in default namespace.",
            "kubectl.{version}"
        );

        let err =
            String::from_utf8_lossy(&server.kubectl_v(version, &["get", "deploy", "nope"]).stderr)
                .into_owned();
        assert_eq!(
            err.trim(),
            r#"Error from server (NotFound): deployments.apps "nope" not found"#,
            "kubectl.{version}"
        );
    }
}
