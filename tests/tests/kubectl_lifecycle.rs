//! Objects' lives as kubectl shows them: namespaces and their termination, Service IP and
//! NodePort allocation, graceful deletion, finalizers, cascading deletion, `generateName`.

use serde_json::json;
use skiff_e2e::fixtures::{config_map, deployment, pod, service, yaml_documents};
use skiff_e2e::{ApiServer, Backend, Table};

skiff_e2e::for_each_backend!(
    namespaces_are_created_listed_and_terminated,
    the_default_and_system_namespaces_cannot_be_deleted,
    service_ips_and_node_ports_are_allocated_once,
    graceful_deletion_of_bound_pods,
    finalizers_and_foreground_deletion_hold_objects,
    generate_name_makes_unique_names,
);

fn namespaces_are_created_listed_and_terminated(backend: Backend) {
    let server = ApiServer::start(backend);
    // (`kubectl create namespace` is covered in kubectl_resources.rs; a manifest keeps this test
    // about namespaces.)
    let team =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    assert_eq!(
        server.kubectl_create(&[team]).trim(),
        "namespace/team created"
    );
    assert_eq!(
        Table::parse(&server.kubectl_ok(&["get", "ns", "team"])).cell("team", "STATUS"),
        "Active"
    );
    server.write_file(
        "c.yaml",
        &yaml_documents(&[config_map("c").data("a", "b").build()]),
    );
    server.kubectl_ok(&["create", "-f", "c.yaml", "-n", "team"]);
    server.kubectl_ok(&["create", "-f", "c.yaml"]);

    let everywhere = Table::parse(&server.kubectl_ok(&[
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.name=c",
    ]));
    assert_eq!(everywhere.header, ["NAMESPACE", "NAME", "DATA", "AGE"]);
    assert_eq!(everywhere.names(), ["default", "team"]);
    let in_team = server.kubectl_ok(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.namespace=team",
        "-A",
        "-o",
        "name",
    ]);
    assert_eq!(in_team.trim(), "configmap/c");

    let out = server.kubectl_ok(&["delete", "ns", "team", "--wait=false"]);
    assert!(
        out.trim().starts_with(r#"namespace "team" deleted"#),
        "{out}"
    );
    let ns = server.kubectl_json(&["get", "ns", "team"]);
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns:#}");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns:#}");
    assert_eq!(
        Table::parse(&server.kubectl_ok(&["get", "ns", "team"])).cell("team", "STATUS"),
        "Terminating"
    );

    // What is there can still be read; nothing new may be created.
    server.kubectl_ok(&["get", "cm", "c", "-n", "team"]);
    server.write_file("d.yaml", &yaml_documents(&[config_map("d").build()]));
    let err = server.kubectl_fails(&["create", "-f", "d.yaml", "-n", "team"]);
    assert!(err.starts_with("Error from server (Forbidden):"), "{err}");
    assert!(
        err.contains(
            "unable to create new content in namespace team because it is being terminated"
        ),
        "{err}"
    );
}

fn the_default_and_system_namespaces_cannot_be_deleted(backend: Backend) {
    let server = ApiServer::start(backend);
    for protected in ["default", "kube-system", "kube-public"] {
        let err = server.kubectl_fails(&["delete", "ns", protected, "--wait=false"]);
        assert_eq!(
            err.trim(),
            format!(
                r#"Error from server (Forbidden): namespaces "{protected}" is forbidden: this namespace may not be deleted"#
            ),
        );
        assert_eq!(
            Table::parse(&server.kubectl_ok(&["get", "ns", protected])).cell(protected, "STATUS"),
            "Active"
        );
    }
}

fn service_ips_and_node_ports_are_allocated_once(backend: Backend) {
    let server = ApiServer::start(backend);
    server.kubectl_create(&[service("a").build(), service("b").build()]);
    let ip_of =
        |name: &str| server.kubectl_ok(&["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"]);
    let (a, b) = (ip_of("a"), ip_of("b"));
    assert_ne!(a, b, "two Services got the same ClusterIP");
    assert_ne!(
        a, "10.96.0.1",
        "10.96.0.1 belongs to the kubernetes Service"
    );

    let taken = service("c").cluster_ip(&a).build();
    let err = server.kubectl_stdin_fails(
        &["create", "-f", "-"],
        &yaml_documents(std::slice::from_ref(&taken)),
    );
    assert!(
        err.starts_with(r#"The Service "c" is invalid: spec.clusterIPs"#),
        "{err}"
    );
    assert!(err.contains("provided IP is already allocated"), "{err}");

    let outside = service("d").cluster_ip("192.168.1.1").build();
    let err = server.kubectl_stdin_fails(&["create", "-f", "-"], &yaml_documents(&[outside]));
    assert!(
        err.starts_with(r#"The Service "d" is invalid: spec.clusterIPs"#),
        "{err}"
    );
    assert!(err.contains("not in the valid range"), "{err}");

    // Released on delete: the IP can be asked for again.
    server.kubectl_ok(&["delete", "svc", "a"]);
    server.kubectl_create(&[taken]);
    assert_eq!(ip_of("c"), a);

    // A ClusterIP may not change once set.
    let err = server.kubectl_fails(&[
        "patch",
        "svc",
        "b",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"clusterIP":"10.96.200.200","clusterIPs":["10.96.200.200"]}}"#,
    ]);
    assert!(
        err.starts_with(r#"The Service "b" is invalid: spec.clusterIPs[0]"#),
        "{err}"
    );
    assert!(err.contains("may not change once set"), "{err}");

    server.kubectl_create(&[service("headless").cluster_ip("None").build()]);
    assert_eq!(
        Table::parse(&server.kubectl_ok(&["get", "svc", "headless"]))
            .cell("headless", "CLUSTER-IP"),
        "None"
    );

    // NodePorts: allocated from 30000-32767 unless asked for; one owner each.
    let node_port = |name: &str| {
        server.kubectl_ok(&[
            "get",
            "svc",
            name,
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
    };
    server.kubectl_create(&[
        service("auto").node_port(None).build(),
        service("np1").node_port(Some(30080)).build(),
    ]);
    let auto: i64 = node_port("auto").parse().expect("a nodePort is allocated");
    assert!(
        (30000..=32767).contains(&auto),
        "nodePort {auto} outside 30000-32767"
    );
    assert_eq!(node_port("np1"), "30080");
    let np2 = yaml_documents(&[service("np2").node_port(Some(30080)).build()]);
    let err = server.kubectl_stdin_fails(&["create", "-f", "-"], &np2);
    assert!(
        err.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{err}"
    );
    let low = yaml_documents(&[service("np3").node_port(Some(80)).build()]);
    let err = server.kubectl_stdin_fails(&["create", "-f", "-"], &low);
    assert!(
        err.contains(
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range"
        ),
        "{err}"
    );
    server.kubectl_ok(&["delete", "svc", "np1"]);
    let out = server.kubectl_stdin(&["create", "-f", "-"], &np2);
    assert!(
        out.status.success(),
        "30080 should be free again: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(node_port("np2"), "30080");
}

fn graceful_deletion_of_bound_pods(backend: Backend) {
    let server = ApiServer::start(backend);
    let mut bound = pod("bound").build();
    bound["spec"]["nodeName"] = json!("node-1");
    server.kubectl_create(&[pod("unbound").build(), bound]);

    // A pod no node runs goes at once.
    let out = server.kubectl_ok(&["delete", "pod", "unbound"]);
    assert!(out.trim().starts_with(r#"pod "unbound" deleted"#), "{out}");
    let err = server.kubectl_fails(&["get", "pod", "unbound"]);
    assert!(err.contains("NotFound"), "{err}");

    // A pod on a node is marked and left for its kubelet, for the grace period.
    let out = server.kubectl_ok(&["delete", "pod", "bound", "--wait=false"]);
    assert!(out.trim().starts_with(r#"pod "bound" deleted"#), "{out}");
    let p = server.kubectl_json(&["get", "pod", "bound"]);
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p:#}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30, "{p:#}");
    assert_eq!(
        Table::parse(&server.kubectl_ok(&["get", "pods"])).cell("bound", "STATUS"),
        "Terminating"
    );

    let out = server.kubectl(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .starts_with(r#"pod "bound" force deleted"#),
        "{out:?}"
    );
    let err = server.kubectl_fails(&["get", "pod", "bound"]);
    assert!(err.contains("NotFound"), "{err}");
}

fn finalizers_and_foreground_deletion_hold_objects(backend: Backend) {
    let server = ApiServer::start(backend);
    let mut held = config_map("held").build();
    held["metadata"]["finalizers"] = json!(["e2e.skiff.dev/hold"]);
    server.kubectl_create(&[held, deployment("web").build()]);

    let out = server.kubectl_ok(&["delete", "cm", "held", "--wait=false"]);
    assert!(
        out.trim().starts_with(r#"configmap "held" deleted"#),
        "{out}"
    );
    let cm = server.kubectl_json(&["get", "cm", "held"]);
    assert!(
        cm["metadata"]["deletionTimestamp"].is_string(),
        "a finalizer keeps the object, marked: {cm:#}"
    );

    server.kubectl_ok(&[
        "patch",
        "cm",
        "held",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = server.kubectl_ok(&["wait", "--for=delete", "cm/held", "--timeout=20s"]);
    // (Silent if the object was gone before kubectl looked.)
    assert!(
        matches!(out.trim(), "configmap/held condition met" | ""),
        "{out}"
    );
    assert!(
        !server.kubectl(&["get", "cm", "held"]).status.success(),
        "held is still there"
    );

    // Foreground deletion: the owner waits (with a foregroundDeletion finalizer) for the garbage
    // collector to remove its dependents.
    let out = server.kubectl_ok(&[
        "delete",
        "deploy",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ]);
    assert!(
        out.trim().starts_with(r#"deployment.apps "web" deleted"#),
        "{out}"
    );
    let d = server.kubectl_json(&["get", "deploy", "web"]);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d:#}");
    assert_eq!(
        d["metadata"]["finalizers"],
        json!(["foregroundDeletion"]),
        "{d:#}"
    );
}

fn generate_name_makes_unique_names(backend: Backend) {
    let server = ApiServer::start(backend);
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n";
    let mut names = Vec::new();
    for _ in 0..2 {
        let out = server.kubectl_stdin(&["create", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let name = out
            .strip_prefix("configmap/")
            .and_then(|n| n.strip_suffix(" created"))
            .unwrap_or_else(|| panic!("unexpected output {out:?}"))
            .to_owned();
        let suffix = name
            .strip_prefix("gen-")
            .unwrap_or_else(|| panic!("{name} does not start with gen-"));
        assert_eq!(
            suffix.len(),
            5,
            "{name}: the server adds 5 random characters"
        );
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{name}"
        );
        names.push(name);
    }
    assert_ne!(names[0], names[1]);
    for name in &names {
        server.kubectl_ok(&["get", "cm", name]);
    }
}
