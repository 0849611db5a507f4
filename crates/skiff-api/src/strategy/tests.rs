use serde_json::{Value, json};

use super::*;
use crate::resources::{find, find_kind};

fn info(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
    find(group, version, plural).unwrap()
}

fn pods() -> &'static ResourceInfo {
    info("", "v1", "pods")
}

fn deployments() -> &'static ResourceInfo {
    info("apps", "v1", "deployments")
}

/// A minimal valid Pod.
fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    })
}

/// A minimal valid Deployment selecting `app=<name>`.
fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]}
            }
        }
    })
}

/// Defaults, prepares and validates like the apiserver's create path; returns the messages.
fn create_errors(info: &ResourceInfo, mut obj: Value) -> Vec<String> {
    default(info, &mut obj);
    prepare_for_create(info, &mut obj);
    validate_create(info, &obj)
        .iter()
        .map(FieldError::message)
        .collect()
}

fn with(mut base: Value, pointer: &str, v: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = base
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent}"));
    match target {
        Value::Array(a) => a[key.parse::<usize>().unwrap()] = v,
        Value::Object(m) => {
            if v.is_null() {
                m.shift_remove(key);
            } else {
                m.insert(key.to_string(), v);
            }
        }
        _ => panic!("{pointer}"),
    }
    base
}

#[test]
fn field_error_messages() {
    let cases = [
        (
            FieldError::invalid(
                "spec.replicas",
                &json!(-1),
                "must be greater than or equal to 0",
            ),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            FieldError::required("metadata.name", "name or generateName is required"),
            "metadata.name: Required value: name or generateName is required",
        ),
        (
            FieldError::required("spec.containers[0].image", ""),
            "spec.containers[0].image: Required value",
        ),
        (
            FieldError::invalid(
                "spec.template.metadata.labels",
                &json!({"app": "x"}),
                "`selector` does not match template `labels`",
            ),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
        ),
        (
            FieldError::duplicate("spec.containers[1].name", &json!("a")),
            "spec.containers[1].name: Duplicate value: \"a\"",
        ),
        (
            FieldError::not_supported(
                "spec.restartPolicy",
                &json!("Sometimes"),
                &["Always", "OnFailure", "Never"],
            ),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ),
        (
            FieldError::forbidden("spec", "pod updates may not change fields"),
            "spec: Forbidden: pod updates may not change fields",
        ),
        (
            FieldError::not_found("spec.containers[0].volumeMounts[0].name", &json!("data")),
            "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
        ),
    ];
    for (err, want) in cases {
        assert_eq!(err.message(), want);
    }
    assert_eq!(FieldErrorKind::NotFound.reason(), "FieldValueNotFound");
}

#[test]
fn normalize_reports_unknown_fields() {
    let cases: &[(&str, &str, &str, Value, &[&str])] = &[
        (
            "apps",
            "v1",
            "deployments",
            with(deployment("d"), "/spec/replicass", json!(3)),
            &["spec.replicass"],
        ),
        (
            "apps",
            "v1",
            "deployments",
            with(
                deployment("d"),
                "/spec/template/spec/containers/0/imagee",
                json!("x"),
            ),
            &["spec.template.spec.containers[0].imagee"],
        ),
        (
            "",
            "v1",
            "pods",
            with(pod("p"), "/metadata/bogus", json!(1)),
            &["metadata.bogus"],
        ),
        (
            "",
            "v1",
            "pods",
            with(pod("p"), "/extra", json!({"a": 1})),
            &["extra"],
        ),
        // Nulls disappear without being reported.
        (
            "",
            "v1",
            "pods",
            with(pod("p"), "/status", json!({"phase": null})),
            &[],
        ),
        ("", "v1", "pods", pod("p"), &[]),
    ];
    for (g, v, plural, obj, want) in cases {
        let (out, unknown) = normalize(info(g, v, plural), obj.clone()).unwrap();
        assert_eq!(unknown, *want);
        for path in *want {
            let first = path.split(['.', '[']).next().unwrap();
            if *path == first {
                assert!(out.get(first).is_none(), "{path} pruned");
            }
        }
    }
}

#[test]
fn normalize_type_errors_name_the_field() {
    let cases = [
        (
            with(deployment("d"), "/spec/replicas", json!("three")),
            "spec.replicas",
        ),
        (
            with(
                deployment("d"),
                "/spec/template/spec/containers/0/ports",
                json!([{"containerPort": "80"}]),
            ),
            "spec.template.spec.containers[0].ports[0].containerPort",
        ),
        (
            with(deployment("d"), "/kind", json!("Pod")),
            "invalid value: string \"Pod\", expected Deployment",
        ),
    ];
    for (obj, field) in cases {
        let err = normalize(deployments(), obj).unwrap_err();
        assert!(err.starts_with(field), "{err}");
    }
}

#[test]
fn normalize_keeps_values_and_empty_objects() {
    let input = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {}, "annotations": {"a": "b"},
                     "creationTimestamp": "2024-05-01T10:00:00+02:00"},
        "spec": {
            "securityContext": {},
            "nodeSelector": {},
            "containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}]
        },
        "status": {}
    });
    let (out, unknown) = normalize(pods(), input).unwrap();
    assert!(unknown.is_empty());
    assert_eq!(out["apiVersion"], "v1");
    assert_eq!(out["kind"], "Pod");
    // Empty objects the input had survive the typed round trip.
    assert_eq!(out["spec"]["securityContext"], json!({}));
    assert_eq!(out["spec"]["nodeSelector"], json!({}));
    assert_eq!(out["metadata"]["labels"], json!({}));
    assert_eq!(out["status"], json!({}));
    // Times are UTC to the second; numeric quantities become strings.
    assert_eq!(out["metadata"]["creationTimestamp"], "2024-05-01T08:00:00Z");
    assert_eq!(
        out["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "1"
    );
    assert_eq!(
        out["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "64Mi"
    );
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec", "status"]);
    // A container without a name gets Go's zero value, as upstream does.
    let (out, _) = normalize(pods(), json!({"spec": {"containers": [{"image": "x"}]}})).unwrap();
    assert_eq!(out["spec"]["containers"][0]["name"], "");
    assert_eq!(out["apiVersion"], "v1");
}

#[test]
fn normalize_every_resource_round_trips_a_minimal_object() {
    for r in crate::resources::all() {
        let obj = json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": {"name": "x"}});
        let (out, unknown) = normalize(r, obj).unwrap_or_else(|e| panic!("{}: {e}", r.plural));
        assert!(unknown.is_empty(), "{}", r.plural);
        assert_eq!(out["kind"], r.kind);
    }
}

#[test]
fn pod_defaults() {
    let mut p = pod("p");
    p["spec"]["containers"] = json!([
        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "nginx:latest"},
        {"name": "c", "image": "nginx:1.25"},
        {"name": "d", "image": "registry:5000/app"},
        {"name": "e", "image": "registry:5000/app:v1"},
        {"name": "f", "image": "app@sha256:abcd"},
        {"name": "g", "image": "app", "imagePullPolicy": "Never"},
    ]);
    default(pods(), &mut p);
    let policies: Vec<&str> = p["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["imagePullPolicy"].as_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        [
            "Always",
            "Always",
            "IfNotPresent",
            "Always",
            "IfNotPresent",
            "IfNotPresent",
            "Never"
        ]
    );
    let spec = &p["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("enableServiceLinks", json!(true)),
        ("serviceAccountName", json!("default")),
    ] {
        assert_eq!(spec[k], v, "{k}");
    }
    assert_eq!(
        spec["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
    // Defaulting twice changes nothing (it runs on every update too).
    let again = {
        let mut x = p.clone();
        default(pods(), &mut x);
        x
    };
    assert_eq!(again, p);
}

#[test]
fn pod_requests_default_to_limits_and_qos() {
    let cases: &[(Value, &str)] = &[
        (json!({}), "BestEffort"),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
            "Guaranteed",
        ),
        (
            json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
            "Guaranteed",
        ),
        (
            json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
            "Burstable",
        ),
        (json!({"requests": {"cpu": "100m"}}), "Burstable"),
        (json!({"limits": {"cpu": "1"}}), "Burstable"),
    ];
    for (resources, want) in cases {
        let mut p = with(pod("p"), "/spec/containers/0/resources", resources.clone());
        default(pods(), &mut p);
        prepare_for_create(pods(), &mut p);
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": want}),
            "{resources}"
        );
    }
    let mut p = with(
        pod("p"),
        "/spec/containers/0/resources",
        json!({"limits": {"cpu": "1"}}),
    );
    default(pods(), &mut p);
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "1"})
    );
}

#[test]
fn workload_defaults() {
    let mut d = deployment("d");
    default(deployments(), &mut d);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    let t = &d["spec"]["template"]["spec"];
    assert_eq!(t["restartPolicy"], "Always");
    assert_eq!(t["containers"][0]["imagePullPolicy"], "Always");
    // Pod-only defaults stay out of templates.
    assert!(t.get("tolerations").is_none());
    assert!(t.get("enableServiceLinks").is_none());

    let mut ds = with(deployment("d"), "/kind", json!("DaemonSet"));
    default(info("apps", "v1", "daemonsets"), &mut ds);
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);

    let mut sts = with(deployment("d"), "/kind", json!("StatefulSet"));
    default(info("apps", "v1", "statefulsets"), &mut sts);
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );

    let mut rc = json!({"metadata": {"name": "r"}, "spec": {"template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    default(info("", "v1", "replicationcontrollers"), &mut rc);
    assert_eq!(rc["spec"]["selector"], json!({"app": "r"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "r"}));
    assert_eq!(rc["spec"]["replicas"], 1);

    let jobs = info("batch", "v1", "jobs");
    let job = |spec: Value| {
        let mut j = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": spec});
        j["spec"]["template"] = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
        default(jobs, &mut j);
        j
    };
    let j = job(json!({}));
    assert_eq!(
        (
            j["spec"]["completions"].clone(),
            j["spec"]["parallelism"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(j["spec"]["backoffLimit"], 6);
    assert_eq!(j["spec"]["completionMode"], "NonIndexed");
    assert_eq!(j["spec"]["suspend"], false);
    let j = job(json!({"parallelism": 3}));
    assert!(j["spec"].get("completions").is_none());
}

#[test]
fn service_defaults() {
    let svc = info("", "v1", "services");
    let cases: &[(Value, Value)] = &[
        (
            json!({"ports": [{"port": 80}]}),
            json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "sessionAffinity": "None", "type": "ClusterIP",
                   "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
        ),
        (
            json!({"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}),
            json!({"type": "NodePort", "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}], "sessionAffinity": "None",
                   "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
        ),
        (
            json!({"type": "ExternalName", "externalName": "example.com"}),
            json!({"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}),
        ),
    ];
    for (spec, want) in cases {
        let mut s = json!({"metadata": {"name": "s"}, "spec": spec});
        default(svc, &mut s);
        let got: std::collections::BTreeMap<_, _> =
            s["spec"].as_object().unwrap().clone().into_iter().collect();
        let want: std::collections::BTreeMap<_, _> =
            want.as_object().unwrap().clone().into_iter().collect();
        assert_eq!(got, want);
    }
}

#[test]
fn other_defaults_and_prepare() {
    let ns = info("", "v1", "namespaces");
    let mut n = json!({"metadata": {"name": "team-a"}});
    default(ns, &mut n);
    prepare_for_create(ns, &mut n);
    assert_eq!(
        n["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    assert_eq!(n["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(n["status"], json!({"phase": "Active"}));

    let secrets = info("", "v1", "secrets");
    let mut s =
        json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}, "data": {"x": "eQ=="}});
    default(secrets, &mut s);
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"], json!({"x": "eQ==", "user": "YWRtaW4="}));
    assert!(s.get("stringData").is_none());

    let mut d = with(deployment("d"), "/status", json!({"replicas": 5}));
    prepare_for_create(deployments(), &mut d);
    assert_eq!(d["status"], json!({}));
    assert_eq!(d["metadata"]["generation"], 1);

    let jobs = info("batch", "v1", "jobs");
    let mut j = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": {"spec": {"containers": []}}}});
    prepare_for_create(jobs, &mut j);
    assert_eq!(
        j["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
    );
    assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
    assert_eq!(
        j["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
        "u1"
    );

    let nodes = info("", "v1", "nodes");
    let mut node = json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2"}}});
    default(nodes, &mut node);
    prepare_for_create(nodes, &mut node);
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "2"}));
}

#[test]
fn hpa_defaults_fill_a_set_behavior_only() {
    let hpa = info("autoscaling", "v2", "horizontalpodautoscalers");
    let base = json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 3,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}}});
    let mut h = base.clone();
    default(hpa, &mut h);
    assert_eq!(h["spec"]["minReplicas"], 1);
    assert_eq!(
        h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    assert!(h["spec"].get("behavior").is_none());

    let mut h = with(
        base,
        "/spec/behavior",
        json!({"scaleDown": {"stabilizationWindowSeconds": 10}}),
    );
    default(hpa, &mut h);
    assert_eq!(
        h["spec"]["behavior"],
        json!({
            "scaleDown": {"stabilizationWindowSeconds": 10, "selectPolicy": "Max",
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                             {"type": "Percent", "value": 100, "periodSeconds": 15}]},
        })
    );
}

#[test]
fn prepare_for_update_keeps_status_and_bumps_generation() {
    let mut old = deployment("d");
    default(deployments(), &mut old);
    prepare_for_create(deployments(), &mut old);
    old["status"] = json!({"replicas": 1});

    let mut same = old.clone();
    same["status"] = json!({"replicas": 9});
    same["metadata"]["labels"] = json!({"x": "y"});
    prepare_for_update(deployments(), &mut same, &old);
    assert_eq!(same["status"], json!({"replicas": 1}));
    assert_eq!(same["metadata"]["generation"], 1);

    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(3);
    prepare_for_update(deployments(), &mut scaled, &old);
    assert_eq!(scaled["metadata"]["generation"], 2);

    let mut status = old.clone();
    status["spec"]["replicas"] = json!(7);
    status["status"] = json!({"replicas": 4});
    prepare_for_status_update(deployments(), &mut status, &old);
    assert_eq!(status["spec"]["replicas"], 1);
    assert_eq!(status["status"], json!({"replicas": 4}));
}

#[test]
fn validate_create_cases() {
    let svc = info("", "v1", "services");
    let rcs = info("", "v1", "replicationcontrollers");
    let hpa = info("autoscaling", "v2", "horizontalpodautoscalers");
    let cm = info("", "v1", "configmaps");
    let ns = info("", "v1", "namespaces");
    let jobs = info("batch", "v1", "jobs");
    let two_containers = json!([{"name": "a", "image": "x"}, {"name": "a", "image": ""}]);
    let cases: Vec<(&ResourceInfo, Value, Vec<&str>)> = vec![
        (pods(), pod("ok"), vec![]),
        (
            pods(),
            with(pod("p"), "/metadata/name", json!("")),
            vec!["metadata.name: Required value: name or generateName is required"],
        ),
        (
            pods(),
            with(
                with(pod("p"), "/metadata/name", json!("")),
                "/metadata/generateName",
                json!("p-"),
            ),
            vec![],
        ),
        (
            pods(),
            with(pod("p"), "/metadata/name", json!("Bad_Name")),
            vec![
                "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ],
        ),
        (
            pods(),
            with(pod("p"), "/spec/containers", json!([])),
            vec!["spec.containers: Required value"],
        ),
        (
            pods(),
            with(pod("p"), "/spec/containers", two_containers),
            vec![
                "spec.containers[1].name: Duplicate value: \"a\"",
                "spec.containers[1].image: Required value",
            ],
        ),
        (
            pods(),
            with(
                pod("p"),
                "/spec/containers/0/ports",
                json!([{"containerPort": 70000, "protocol": "ICMP"}]),
            ),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            pods(),
            with(pod("p"), "/spec/restartPolicy", json!("Sometimes")),
            vec![
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ],
        ),
        (
            pods(),
            with(
                pod("p"),
                "/spec/containers/0/resources",
                json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
            ),
            vec![
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            ],
        ),
        (
            pods(),
            with(
                pod("p"),
                "/spec/containers/0/volumeMounts",
                json!([{"name": "data", "mountPath": "/d"}]),
            ),
            vec!["spec.containers[0].volumeMounts[0].name: Not found: \"data\""],
        ),
        (
            pods(),
            with(
                pod("p"),
                "/spec/volumes",
                json!([{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
            ),
            vec!["spec.volumes[1].name: Duplicate value: \"v\""],
        ),
        (
            pods(),
            with(
                pod("p"),
                "/metadata/labels",
                json!({"a/b/c": "x", "ok": "bad value"}),
            ),
            vec![
                "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                "metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ],
        ),
        (deployments(), deployment("d"), vec![]),
        (
            deployments(),
            with(deployment("d"), "/spec/replicas", json!(-1)),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            deployments(),
            with(
                deployment("d"),
                "/spec/template/metadata/labels",
                json!({"app": "x"}),
            ),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
            ],
        ),
        (
            deployments(),
            with(deployment("d"), "/spec/selector", Value::Null),
            vec!["spec.selector: Required value"],
        ),
        (
            deployments(),
            with(deployment("d"), "/spec/selector", json!({})),
            vec![
                "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{},MatchExpressions:[]LabelSelectorRequirement{},}: empty selector is invalid for deployment",
            ],
        ),
        (
            deployments(),
            with(
                deployment("d"),
                "/spec/template/spec/containers/0/image",
                json!(""),
            ),
            vec!["spec.template.spec.containers[0].image: Required value"],
        ),
        (
            deployments(),
            with(
                deployment("d"),
                "/spec/template/spec/restartPolicy",
                json!("Never"),
            ),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ],
        ),
        (
            rcs,
            json!({"metadata": {"name": "r"}, "spec": {"selector": {"app": "other"}, "template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"r\"}: `selector` does not match template `labels`",
            ],
        ),
        (
            svc,
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
            vec![],
        ),
        (
            svc,
            json!({"metadata": {"name": "web"}, "spec": {}}),
            vec!["spec.ports: Required value"],
        ),
        (
            svc,
            json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "None"}}),
            vec![],
        ),
        (
            svc,
            json!({"metadata": {"name": "1web"}, "spec": {"type": "Fancy", "ports": [{"port": 80}, {"port": 0, "name": "b"}]}}),
            vec![
                "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                "spec.type: Unsupported value: \"Fancy\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.ports[0].name: Required value",
                "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                // targetPort defaults to port, and upstream reports it too.
                "spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            ],
        ),
        (
            svc,
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}],
                "externalIPs": ["198.51.100.7", "127.0.0.1", "169.254.1.1", "224.0.0.5", "0.0.0.0", "::1", "nope"]}}),
            vec![
                "spec.externalIPs[1]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "spec.externalIPs[2]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                "spec.externalIPs[3]: Invalid value: \"224.0.0.5\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
                "spec.externalIPs[4]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)",
                "spec.externalIPs[5]: Invalid value: \"::1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "spec.externalIPs[6]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ],
        ),
        (
            hpa,
            json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "minReplicas": 5, "maxReplicas": 2}}),
            vec![
                "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
            ],
        ),
        (
            cm,
            json!({"metadata": {"name": "c"}, "data": {"bad key": "v", "good.key": "v"}}),
            vec![
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ],
        ),
        (
            ns,
            json!({"metadata": {"name": "a.b"}}),
            vec![
                "metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
        (
            jobs,
            json!({"metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            ],
        ),
        (
            jobs,
            json!({"metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}),
            vec![],
        ),
    ];
    for (info, obj, want) in cases {
        let got = create_errors(info, obj.clone());
        assert_eq!(got, want, "{obj}");
    }
}

#[test]
fn validate_update_cases() {
    let svc = info("", "v1", "services");
    let prepared = |info: &ResourceInfo, mut o: Value| {
        default(info, &mut o);
        prepare_for_create(info, &mut o);
        o
    };
    let old_d = prepared(deployments(), deployment("d"));
    let old_p = prepared(pods(), pod("p"));
    let old_s = prepared(
        svc,
        json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}}),
    );
    let cases: Vec<(&ResourceInfo, Value, &Value, Vec<&str>)> = vec![
        (
            deployments(),
            with(old_d.clone(), "/spec/replicas", json!(4)),
            &old_d,
            vec![],
        ),
        (
            deployments(),
            with(
                with(
                    old_d.clone(),
                    "/spec/selector",
                    json!({"matchLabels": {"app": "e"}}),
                ),
                "/spec/template/metadata/labels",
                json!({"app": "e"}),
            ),
            &old_d,
            vec![
                "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{app: e,},MatchExpressions:[]LabelSelectorRequirement{},}: field is immutable",
            ],
        ),
        (
            deployments(),
            with(old_d.clone(), "/metadata/name", json!("e")),
            &old_d,
            vec!["metadata.name: Invalid value: \"e\": field is immutable"],
        ),
        (
            pods(),
            with(
                old_p.clone(),
                "/spec/containers/0/image",
                json!("nginx:1.26"),
            ),
            &old_p,
            vec![],
        ),
        (
            pods(),
            with(old_p.clone(), "/spec/activeDeadlineSeconds", json!(30)),
            &old_p,
            vec![],
        ),
        (
            pods(),
            with(old_p.clone(), "/spec/containers/0/name", json!("other")),
            &old_p,
            vec![
                "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ],
        ),
        (
            svc,
            with(old_s.clone(), "/spec/clusterIP", json!("")),
            &old_s,
            vec![],
        ),
        (
            svc,
            with(old_s.clone(), "/spec/clusterIP", json!("10.96.0.6")),
            &old_s,
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.6\"}: may not change once set",
            ],
        ),
    ];
    for (info, new, old, want) in cases {
        let got: Vec<String> = validate_update(info, &new, old)
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(got, want, "{new}");
    }
}

#[test]
fn hpa_conversion_round_trips() {
    let v1 = find_kind("autoscaling", "v1", "HorizontalPodAutoscaler").unwrap();
    let v2 = find_kind("autoscaling", "v2", "HorizontalPodAutoscaler").unwrap();
    let obj = json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50},
        "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 30}
    });
    let up = convert(v1, obj.clone(), "v2");
    assert_eq!(up["apiVersion"], "autoscaling/v2");
    assert_eq!(
        up["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}])
    );
    assert_eq!(
        up["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
        30
    );
    assert!(normalize(v2, up.clone()).unwrap().1.is_empty());
    let down = convert(v2, up, "v1");
    assert_eq!(down, obj);
    // Identity for other kinds, apiVersion set.
    let d = convert(deployments(), deployment("d"), "v1");
    assert_eq!(d, deployment("d"));
}

#[test]
fn volume_paths_must_stay_inside_and_modes_within_0777() {
    let with_volumes = |volumes: Value, mounts: Value| {
        with(
            with(pod("p"), "/spec/volumes", volumes),
            "/spec/containers/0/volumeMounts",
            mounts,
        )
    };
    let cfg = json!([{"name": "cfg", "configMap": {"name": "settings"}}]);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            with_volumes(
                cfg.clone(),
                json!([{"name": "cfg", "mountPath": "/cfg", "subPath": "conf"}]),
            ),
            vec![],
        ),
        (
            with_volumes(
                cfg.clone(),
                json!([{"name": "cfg", "mountPath": "/cfg", "subPath": "../../etc"}]),
            ),
            vec![
                "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../../etc\": must not contain '..'",
            ],
        ),
        (
            with_volumes(
                cfg.clone(),
                json!([{"name": "cfg", "mountPath": "/cfg", "subPath": "/etc/shadow"}]),
            ),
            vec![
                "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"/etc/shadow\": must be a relative path",
            ],
        ),
        (
            with_volumes(
                json!([
                    {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 0o4755,
                        "items": [{"key": "k", "path": "..data/k", "mode": 0o1777}]}},
                    {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o640,
                        "items": [{"key": "", "path": "/abs"}]}},
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "a/../../b", "mode": -1, "fieldRef": {"fieldPath": "metadata.name"}}]}},
                    {"name": "all", "projected": {"defaultMode": 0o1000, "sources": [
                        {"secret": {"name": "creds", "items": [{"key": "k", "path": "k", "mode": 0o4755}]}}]}}
                ]),
                json!([]),
            ),
            vec![
                "spec.volumes[0].configMap.defaultMode: Invalid value: 2541: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[0].configMap.items[0].path: Invalid value: \"..data/k\": must not start with '..'",
                "spec.volumes[0].configMap.items[0].mode: Invalid value: 1023: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[1].secret.items[0].key: Required value",
                "spec.volumes[1].secret.items[0].path: Invalid value: \"/abs\": must be a relative path",
                "spec.volumes[2].downwardAPI.items[0].path: Invalid value: \"a/../../b\": must not contain '..'",
                "spec.volumes[2].downwardAPI.items[0].mode: Invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[3].projected.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[3].projected.sources[0].secret.items[0].mode: Invalid value: 2541: must be a number between 0 and 0777 (octal), both inclusive",
            ],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(create_errors(pods(), obj), want);
    }
}

/// A CronJob every minute whose jobs run `busybox`.
fn cronjob(schedule: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "hello", "image": "busybox:1.36"}]
            }}}}
        }
    })
}

#[test]
fn cronjob_defaults_and_validation() {
    let cj = info("batch", "v1", "cronjobs");
    let mut obj = cronjob("*/1 * * * *");
    default(cj, &mut obj);
    prepare_for_create(cj, &mut obj);
    assert_eq!(obj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(obj["spec"]["suspend"], false);
    assert_eq!(obj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(obj["spec"]["failedJobsHistoryLimit"], 1);
    let tspec = &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(tspec["dnsPolicy"], "ClusterFirst");
    assert_eq!(tspec["containers"][0]["imagePullPolicy"], "IfNotPresent");
    // The job template's spec is not a Job's: no Job defaults.
    assert!(
        obj["spec"]["jobTemplate"]["spec"]
            .get("backoffLimit")
            .is_none()
    );
    assert_eq!(obj["status"], json!({}));
    assert_eq!(obj["metadata"]["generation"], 1);
    assert!(validate_create(cj, &obj).is_empty());

    let cases: &[(Value, &str)] = &[
        (
            cronjob("*/5 * * *"),
            "spec.schedule: Invalid value: \"*/5 * * *\": expected exactly 5 fields, found 4: [*/5 * * *]",
        ),
        (
            cronjob("61 * * * *"),
            "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
        ),
        (
            cronjob("TZ=UTC 0 * * * *"),
            "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ),
        (cronjob(""), "spec.schedule: Required value"),
        (
            with(cronjob("@daily"), "/spec/timeZone", json!("Moon/Base")),
            "spec.timeZone: Invalid value: \"Moon/Base\": unknown time zone Moon/Base",
        ),
        (
            with(
                cronjob("@daily"),
                "/spec/concurrencyPolicy",
                json!("Sometimes"),
            ),
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
        ),
        (
            with(
                cronjob("@daily"),
                "/spec/jobTemplate/spec/template/spec/restartPolicy",
                Value::Null,
            ),
            "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
        ),
    ];
    for (obj, want) in cases {
        let got = create_errors(cj, obj.clone());
        assert!(got.iter().any(|m| m == want), "{want}\n got {got:?}");
    }
    let tz = with(
        cronjob("0 9 * * mon-fri"),
        "/spec/timeZone",
        json!("Europe/Paris"),
    );
    assert!(create_errors(cj, tz).is_empty());
}

#[test]
fn storage_defaults_and_validation() {
    let pv = info("", "v1", "persistentvolumes");
    let mut obj = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv1", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}}
    });
    prepare_for_create(pv, &mut obj);
    default(pv, &mut obj);
    assert_eq!(obj["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(obj["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        obj["status"],
        json!({"phase": "Pending", "lastPhaseTransitionTime": "2024-01-01T00:00:00Z"})
    );
    assert!(validate_create(pv, &obj).is_empty());
    let no_source = with(obj.clone(), "/spec/hostPath", Value::Null);
    assert_eq!(
        create_errors(pv, no_source),
        ["spec: Required value: must specify a volume type"]
    );

    let pvc = info("", "v1", "persistentvolumeclaims");
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    });
    let mut obj = claim.clone();
    default(pvc, &mut obj);
    prepare_for_create(pvc, &mut obj);
    assert_eq!(obj["spec"]["volumeMode"], "Filesystem");
    assert_eq!(obj["status"], json!({"phase": "Pending"}));
    assert!(validate_create(pvc, &obj).is_empty());
    assert_eq!(
        create_errors(pvc, with(claim.clone(), "/spec/resources", json!({}))),
        ["spec.resources[storage]: Required value"]
    );
    assert_eq!(
        create_errors(pvc, with(claim.clone(), "/spec/accessModes", json!([]))),
        ["spec.accessModes: Required value: at least 1 access mode is required"]
    );
    // Binding sets the volume name once; anything else in the spec is fixed.
    let bound = with(obj.clone(), "/spec/volumeName", json!("pv1"));
    assert!(validate_update(pvc, &bound, &obj).is_empty());
    let changed = with(bound.clone(), "/spec/accessModes", json!(["ReadWriteMany"]));
    assert_eq!(validate_update(pvc, &changed, &bound).len(), 1);

    let sc = info("storage.k8s.io", "v1", "storageclasses");
    let mut obj = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"
    });
    default(sc, &mut obj);
    assert_eq!(obj["reclaimPolicy"], "Delete");
    assert_eq!(obj["volumeBindingMode"], "Immediate");
    assert!(validate_create(sc, &obj).is_empty());
    let other = with(obj.clone(), "/provisioner", json!("example.com/nfs"));
    assert_eq!(
        validate_update(sc, &other, &obj)
            .iter()
            .map(FieldError::message)
            .collect::<Vec<_>>(),
        ["provisioner: Forbidden: updates to provisioner are forbidden."]
    );
}

#[test]
fn policy_quota_and_priority_validation() {
    let pdb = info("policy", "v1", "poddisruptionbudgets");
    let budget = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}
    });
    let mut obj = budget.clone();
    prepare_for_create(pdb, &mut obj);
    assert_eq!(obj["status"]["disruptionsAllowed"], 0);
    assert_eq!(obj["metadata"]["generation"], 1);
    assert!(create_errors(pdb, budget.clone()).is_empty());
    let both = with(budget.clone(), "/spec/maxUnavailable", json!("150%"));
    let errs = create_errors(pdb, both);
    assert!(
        errs.iter()
            .any(|e| e.ends_with("minAvailable and maxUnavailable cannot be both set")),
        "{errs:?}"
    );
    assert!(errs.iter().any(
        |e| e == "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"
    ));

    let quota = info("", "v1", "resourcequotas");
    let q = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q", "namespace": "default"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1"}}
    });
    assert!(create_errors(quota, q.clone()).is_empty());
    assert_eq!(
        create_errors(quota, with(q, "/spec/hard/pods", json!("1500m"))),
        ["spec.hard[pods]: Invalid value: \"1500m\": must be an integer"]
    );

    let limits = info("", "v1", "limitranges");
    let mut lr = json!({
        "apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "l", "namespace": "default"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}}]}
    });
    default(limits, &mut lr);
    let item = &lr["spec"]["limits"][0];
    assert_eq!(item["default"], json!({"cpu": "1"}));
    assert_eq!(
        item["defaultRequest"],
        json!({"cpu": "1", "memory": "64Mi"})
    );
    let bad = with(lr, "/spec/limits/0/min", json!({"cpu": "2"}));
    assert!(create_errors(limits, bad).iter().any(|e| e
        == "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"));

    let pc = info("scheduling.k8s.io", "v1", "priorityclasses");
    let class = json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "high"}, "value": 1000
    });
    let mut obj = class.clone();
    default(pc, &mut obj);
    assert_eq!(obj["preemptionPolicy"], "PreemptLowerPriority");
    assert!(validate_create(pc, &obj).is_empty());
    assert_eq!(
        create_errors(pc, with(class.clone(), "/value", json!(2_000_000_000))),
        ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    );
    assert_eq!(
        create_errors(pc, with(class, "/metadata/name", json!("system-mine"))),
        [
            "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: name system-mine is not a known system priority class"
        ]
    );
    for builtin in SYSTEM_PRIORITY_CLASSES {
        let obj = json!({"metadata": {"name": builtin.name}, "value": builtin.value});
        assert!(create_errors(pc, obj).is_empty(), "{}", builtin.name);
    }
}

/// The documentation's `web.yaml` mounts `www`, a claim template, not a pod volume.
#[test]
fn statefulset_mounts_of_claim_templates_are_found() {
    let sts = info("apps", "v1", "statefulsets");
    let web = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx"}},
            "serviceName": "nginx",
            "replicas": 3,
            "minReadySeconds": 10,
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "nginx", "image": "registry.k8s.io/nginx-slim:0.24",
                        "ports": [{"containerPort": 80, "name": "web"}],
                        "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "www"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "my-storage-class",
                    "resources": {"requests": {"storage": "1Gi"}}
                }
            }]
        }
    });
    assert!(create_errors(sts, web.clone()).is_empty());
    let other = with(
        web,
        "/spec/template/spec/containers/0/volumeMounts/0/name",
        json!("logs"),
    );
    assert_eq!(
        create_errors(sts, other),
        ["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"logs\""]
    );
}
