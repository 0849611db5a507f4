//! Where Services may steer traffic: `spec.externalIPs` through real kubectl, refused by
//! default (DenyServiceExternalIPs) and, when allowed, never a node's or the apiserver's
//! address.

use skiff_e2e::{ApiServer, Backend, node};

fn service_with_external_ips(name: &str, ips: &[&str]) -> String {
    let ips: Vec<String> = ips.iter().map(|ip| format!("{ip:?}")).collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports: [{{port: 10250}}]\n  externalIPs: [{}]\n",
        ips.join(", ")
    )
}

#[test]
fn external_ips_are_denied_by_default_with_upstreams_message() {
    let server = ApiServer::start(Backend::Embedded);
    let err = server.kubectl_stdin_fails(
        &["apply", "-f", "-"],
        &service_with_external_ips("web", &["192.0.2.10"]),
    );
    assert!(
        err.contains("Error from server (Forbidden)")
            && err.contains(
                "services \"web\" is forbidden: Use of external IPs is denied by admission control"
            ),
        "{err}"
    );
    // Without external IPs the same Service is admitted.
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n",
    );
    let err = server.kubectl_fails(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"externalIPs":["192.0.2.10"]}}"#,
    ]);
    assert!(
        err.contains("Use of external IPs is denied by admission control"),
        "{err}"
    );
}

#[test]
fn allowed_external_ips_are_never_a_nodes_or_the_apiservers_address() {
    let server = ApiServer::start_with_args(
        Backend::Embedded,
        &["--disable-admission-plugins", "DenyServiceExternalIPs"],
    );
    // A node's address (reported only: no traffic goes to it).
    node("n1").internal_ip("10.254.7.7").create(&server);
    let err = server.kubectl_stdin_fails(
        &["apply", "-f", "-"],
        &service_with_external_ips("grab", &["192.0.2.10", "10.254.7.7"]),
    );
    assert!(
        err.contains("The Service \"grab\" is invalid: spec.externalIPs[1]: Invalid value: \"10.254.7.7\": may not be an address of node \"n1\""),
        "{err}"
    );
    // The tests' apiserver listens on 127.0.0.1: a loopback address is refused by validation
    // (as Kubernetes' ValidateNonSpecialIP) before admission asks whose address it is; the
    // apiserver-address check itself is a unit test of the plugin.
    let err = server.kubectl_stdin_fails(
        &["apply", "-f", "-"],
        &service_with_external_ips("grab", &["127.0.0.1"]),
    );
    assert!(
        err.contains("spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"),
        "{err}"
    );
    // Any other address is the operator's to give.
    server.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        &service_with_external_ips("grab", &["192.0.2.10"]),
    );
    let ips = server.kubectl_ok(&["get", "svc", "grab", "-o", "jsonpath={.spec.externalIPs}"]);
    assert_eq!(ips.trim(), r#"["192.0.2.10"]"#);
}

#[test]
fn an_unknown_admission_plugin_stops_the_apiserver() {
    let out = std::process::Command::new(skiff_e2e::sibling_binary("skiff-apiserver"))
        .args([
            "--disable-admission-plugins",
            "NoSuchPlugin",
            "--secure-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(tempfile::tempdir().expect("tempdir").path())
        .output()
        .expect("run skiff-apiserver");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admission plugin \"NoSuchPlugin\" is unknown"),
        "{stderr}"
    );
}

/// The built-in load balancer publishes the nodes' addresses: never at a port the nodes' own
/// components use.
#[test]
fn the_built_in_load_balancer_refuses_the_nodes_own_ports() {
    use skiff_e2e::{ControllerManager, wait_until};
    use std::time::Duration;
    let server = ApiServer::start(Backend::Embedded);
    let _cm = ControllerManager::start(&server);
    node("n1").internal_ip("192.0.2.31").create(&server);
    let lb = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  ports: [{{port: {port}}}]\n"
        )
    };
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &lb("web", 8081));
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &lb("grab", 10250));
    let ingress = |name: &str| {
        server.kubectl_ok(&[
            "get",
            "svc",
            name,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ])
    };
    let wait = Duration::from_secs(30);
    assert!(
        wait_until(wait, || ingress("web") == "192.0.2.31"),
        "web gets the node's address: {:?}",
        ingress("web")
    );
    let event = || -> String {
        let events = server.kubectl_json(&["get", "events", "-o", "json"]);
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["involvedObject"]["name"] == "grab" && e["reason"] == "SyncLoadBalancerFailed"
            })
            .filter_map(|e| e["message"].as_str())
            .collect()
    };
    assert!(
        wait_until(wait, || event()
            .contains("port 10250/TCP (used by the kubelet)")),
        "an event says why grab has no address: {:?}",
        event()
    );
    assert_eq!(ingress("grab"), "", "grab gets no address");
}
