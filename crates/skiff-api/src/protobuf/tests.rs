use serde_json::{Value, json};

use super::*;

/// A tiny protobuf encoder, enough to write the bodies kubectl sends.
#[derive(Default, Clone)]
struct Pb(Vec<u8>);

impl Pb {
    fn new() -> Self {
        Pb::default()
    }

    fn key(mut self, tag: u32, wire: u64) -> Self {
        put_varint(&mut self.0, (u64::from(tag) << 3) | wire);
        self
    }

    fn varint(self, tag: u32, v: u64) -> Self {
        let mut s = self.key(tag, 0);
        put_varint(&mut s.0, v);
        s
    }

    fn int(self, tag: u32, v: i64) -> Self {
        self.varint(tag, v as u64)
    }

    fn bytes(self, tag: u32, b: &[u8]) -> Self {
        let mut s = self.key(tag, 2);
        put_varint(&mut s.0, b.len() as u64);
        s.0.extend_from_slice(b);
        s
    }

    fn str(self, tag: u32, v: &str) -> Self {
        self.bytes(tag, v.as_bytes())
    }

    fn msg(self, tag: u32, m: Pb) -> Self {
        self.bytes(tag, &m.0)
    }

    /// A map entry with a string value.
    fn entry(self, tag: u32, k: &str, v: &str) -> Self {
        self.msg(tag, Pb::new().str(1, k).str(2, v))
    }

    fn entry_bytes(self, tag: u32, k: &str, v: &[u8]) -> Self {
        self.msg(tag, Pb::new().str(1, k).bytes(2, v))
    }

    fn entry_msg(self, tag: u32, k: &str, v: Pb) -> Self {
        self.msg(tag, Pb::new().str(1, k).msg(2, v))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The envelope: magic + runtime.Unknown {typeMeta, raw, contentEncoding, contentType}, with
/// the empty strings Go's marshaller writes.
fn envelope(api_version: &str, kind: &str, obj: Pb) -> Vec<u8> {
    let unknown = Pb::new()
        .msg(1, Pb::new().str(1, api_version).str(2, kind))
        .msg(2, obj)
        .str(3, "")
        .str(4, "");
    [MAGIC, &unknown.0].concat()
}

/// ObjectMeta as Go's marshaller writes it: every non-pointer field, empty or not.
fn meta(name: &str) -> Pb {
    Pb::new()
        .str(1, name)
        .str(2, "")
        .str(3, "")
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .varint(7, 0)
        .msg(8, Pb::new())
}

fn decoded(body: &[u8]) -> Value {
    match decode(body) {
        Ok((_, _, v)) => v,
        Err(e) => panic!("decode failed: {e}"),
    }
}

#[test]
fn the_schema_loads_and_covers_every_served_kind() {
    let schema = schema();
    for r in crate::resources::all()
        .iter()
        .chain(crate::resources::reviews())
    {
        assert!(
            schema
                .kinds
                .contains_key(&(r.api_version(), r.kind.to_string())),
            "no protobuf schema for {} {}",
            r.api_version(),
            r.kind
        );
    }
    for (api_version, kind) in [
        ("v1", "Binding"),
        ("policy/v1", "Eviction"),
        ("autoscaling/v1", "Scale"),
        ("authentication.k8s.io/v1", "TokenRequest"),
    ] {
        assert!(
            schema
                .kinds
                .contains_key(&(api_version.into(), kind.into())),
            "{kind}"
        );
    }
}

#[test]
fn a_configmap_as_kubectl_1_33_sends_it() {
    // `kubectl create configmap c --from-literal=a=b`, captured with -v=9.
    let body = [
        0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x43, 0x6f, 0x6e,
        0x66, 0x69, 0x67, 0x4d, 0x61, 0x70, 0x12, 0x1b, 0x0a, 0x11, 0x0a, 0x01, 0x63, 0x12, 0x00,
        0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x06, 0x0a,
        0x01, 0x61, 0x12, 0x01, 0x62, 0x1a, 0x00, 0x22, 0x00,
    ];
    let (api_version, kind, obj) = decode(&body).unwrap();
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
    assert_eq!(
        obj,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "creationTimestamp": null},
            "data": {"a": "b"},
        })
    );
}

#[test]
fn a_configmap_with_binary_data_and_immutable_false() {
    let cm = Pb::new()
        .msg(1, meta("cfg").entry(11, "app", "web").entry(12, "note", ""))
        .entry(2, "a", "1")
        .entry(2, "empty", "")
        .entry_bytes(3, "bin", &[0, 1, 2, 255])
        .varint(4, 0);
    assert_eq!(
        decoded(&envelope("v1", "ConfigMap", cm)),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "cfg",
                "creationTimestamp": null,
                "labels": {"app": "web"},
                "annotations": {"note": ""},
            },
            "data": {"a": "1", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="},
            // A *bool set to false is kept.
            "immutable": false,
        })
    );
}

#[test]
fn a_namespace() {
    let ns = Pb::new()
        .msg(1, meta("team"))
        .msg(2, Pb::new())
        .msg(3, Pb::new().str(1, ""));
    assert_eq!(
        decoded(&envelope("v1", "Namespace", ns)),
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "team", "creationTimestamp": null},
            "spec": {},
            "status": {},
        })
    );
}

#[test]
fn a_deployment_with_int_or_string_quantities_and_zero_replicas() {
    let container = Pb::new()
        .str(1, "web")
        .str(2, "nginx:1.25")
        .str(3, "sh")
        .str(3, "-c")
        .msg(
            6,
            // ContainerPort: hostPort 0 is dropped, containerPort is required.
            Pb::new()
                .str(1, "")
                .varint(2, 0)
                .varint(3, 8080)
                .str(4, "TCP")
                .str(5, ""),
        )
        .msg(
            8,
            Pb::new()
                .entry_msg(1, "memory", Pb::new().str(1, "128Mi"))
                .entry_msg(2, "cpu", Pb::new().str(1, "250m")),
        )
        .str(5, "")
        .str(13, "")
        .str(14, "")
        .varint(16, 0);
    let spec = Pb::new()
        .varint(1, 0)
        .msg(2, Pb::new().entry(1, "app", "web"))
        .msg(
            3,
            Pb::new()
                .msg(1, meta("").entry(11, "app", "web"))
                .msg(2, Pb::new().msg(2, container)),
        )
        .msg(
            4,
            Pb::new().str(1, "RollingUpdate").msg(
                2,
                Pb::new()
                    .msg(1, Pb::new().varint(1, 0).varint(2, 0).str(3, ""))
                    .msg(2, Pb::new().varint(1, 1).varint(2, 0).str(3, "25%")),
            ),
        )
        .varint(5, 0)
        .varint(6, 3);
    let d = Pb::new().msg(1, meta("web")).msg(2, spec).msg(3, Pb::new());
    assert_eq!(
        decoded(&envelope("apps/v1", "Deployment", d)),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web",
                        "image": "nginx:1.25",
                        "command": ["sh", "-c"],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m"}},
                    }]},
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
                },
                "revisionHistoryLimit": 3,
            },
            "status": {},
        })
    );
}

#[test]
fn a_secret_with_bytes_data() {
    let s = Pb::new()
        .msg(1, meta("creds"))
        .entry_bytes(2, "password", b"hunter2")
        .entry_bytes(2, "empty", b"")
        .str(3, "Opaque");
    assert_eq!(
        decoded(&envelope("v1", "Secret", s)),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "creationTimestamp": null},
            "data": {"password": "aHVudGVyMg==", "empty": ""},
            "type": "Opaque",
        })
    );
}

#[test]
fn a_service_with_an_int_target_port_and_no_node_port() {
    let port = |name: &str, port: i64, target: Pb| {
        Pb::new()
            .str(1, name)
            .str(2, "TCP")
            .int(3, port)
            .msg(4, target)
            .varint(5, 0)
    };
    let spec = Pb::new()
        .msg(
            1,
            port(
                "http",
                80,
                Pb::new().varint(1, 0).varint(2, 8080).str(3, ""),
            ),
        )
        .msg(
            1,
            port("", 443, Pb::new().varint(1, 1).varint(2, 0).str(3, "https")),
        )
        .entry(2, "app", "web")
        .str(3, "")
        .str(4, "NodePort")
        .str(7, "")
        .varint(13, 0);
    let svc = Pb::new()
        .msg(1, meta("web"))
        .msg(2, spec)
        .msg(3, Pb::new().msg(1, Pb::new()));
    assert_eq!(
        decoded(&envelope("v1", "Service", svc)),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"protocol": "TCP", "port": 443, "targetPort": "https"},
                ],
                "selector": {"app": "web"},
                "type": "NodePort",
            },
            "status": {"loadBalancer": {}},
        })
    );
}

#[test]
fn inline_structs_merge_into_their_parent() {
    // Volume embeds VolumeSource, and ConfigMapVolumeSource embeds LocalObjectReference.
    let volume = Pb::new().str(1, "cfg").msg(
        2,
        Pb::new().msg(
            19,
            Pb::new()
                .msg(1, Pb::new().str(1, "settings"))
                .msg(2, Pb::new().str(1, "a").str(2, "a.txt"))
                .int(3, 0o644),
        ),
    );
    let pod = Pb::new()
        .msg(1, meta("p"))
        .msg(2, Pb::new().msg(1, volume).msg(2, Pb::new().str(1, "c")));
    assert_eq!(
        decoded(&envelope("v1", "Pod", pod))["spec"],
        json!({
            "volumes": [{
                "name": "cfg",
                "configMap": {"name": "settings", "items": [{"key": "a", "path": "a.txt"}], "defaultMode": 420},
            }],
            "containers": [{"name": "c"}],
        })
    );
}

#[test]
fn repeated_scalars_packed_and_unpacked() {
    // PodSecurityContext.supplementalGroups (tag 4), once packed and once not.
    let mut packed = Vec::new();
    for v in [1000u64, 2000] {
        put_varint(&mut packed, v);
    }
    let ctx = Pb::new().bytes(4, &packed).varint(4, 3000);
    let pod = Pb::new().msg(1, meta("p")).msg(2, Pb::new().msg(14, ctx));
    assert_eq!(
        decoded(&envelope("v1", "Pod", pod))["spec"]["securityContext"],
        json!({"supplementalGroups": [1000, 2000, 3000]})
    );
}

#[test]
fn negative_int32_and_times() {
    let lease = Pb::new()
        .msg(
            1,
            meta("leader")
                .msg(9, Pb::new().int(1, 1_700_000_000).int(2, 500_000_000))
                .int(10, 30),
        )
        .msg(
            2,
            Pb::new()
                .str(1, "node-1")
                .int(2, -1)
                .msg(3, Pb::new().int(1, 1_700_000_000).int(2, 123_456_789))
                .msg(4, Pb::new()),
        );
    let v = decoded(&envelope("coordination.k8s.io/v1", "Lease", lease));
    assert_eq!(v["metadata"]["deletionTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(
        v["spec"],
        json!({
            "holderIdentity": "node-1",
            "leaseDurationSeconds": -1,
            "acquireTime": "2023-11-14T22:13:20.123456Z",
            "renewTime": null,
        })
    );
}

#[test]
fn raw_extensions_and_managed_fields_embed_their_json() {
    let rev = Pb::new()
        .msg(
            1,
            meta("agent-1").msg(
                17,
                Pb::new()
                    .str(1, "kubectl")
                    .str(2, "Update")
                    .str(6, "FieldsV1")
                    .msg(7, Pb::new().bytes(1, br#"{"f:data":{}}"#)),
            ),
        )
        .msg(2, Pb::new().bytes(1, br#"{"spec":{"x":1}}"#))
        .int(3, 1);
    let v = decoded(&envelope("apps/v1", "ControllerRevision", rev));
    assert_eq!(v["data"], json!({"spec": {"x": 1}}));
    assert_eq!(v["revision"], 1);
    assert_eq!(
        v["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}])
    );
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let mut cm = Pb::new().msg(1, meta("c")).varint(99, 7).str(100, "x");
    cm = cm.key(101, 1);
    cm.0.extend_from_slice(&[0; 8]);
    cm = cm.key(102, 5);
    cm.0.extend_from_slice(&[0; 4]);
    assert_eq!(
        decoded(&envelope("v1", "ConfigMap", cm))["metadata"]["name"],
        "c"
    );
}

#[test]
fn bad_bodies_are_rejected_with_a_reason() {
    let err = |body: &[u8]| decode(body).unwrap_err().to_string();
    assert!(err(b"{\"kind\":\"Pod\"}").contains("magic"));
    assert!(
        err(&envelope("v1", "Widget", Pb::new())).contains("cannot decode \"Widget\" in \"v1\""),
        "{}",
        err(&envelope("v1", "Widget", Pb::new()))
    );
    let mut truncated = envelope("v1", "ConfigMap", Pb::new().msg(1, meta("c")));
    truncated.truncate(truncated.len() - 3);
    assert!(
        err(&truncated).contains("malformed protobuf"),
        "{}",
        err(&truncated)
    );
    let wrong_type = envelope(
        "apps/v1",
        "Deployment",
        Pb::new().msg(
            2,
            Pb::new().msg(
                3,
                Pb::new().msg(2, Pb::new().msg(2, Pb::new().varint(1, 5))),
            ),
        ),
    );
    assert_eq!(
        err(&wrong_type),
        "malformed protobuf at spec.template.spec.containers[0].name: a String field arrived as a varint"
    );
    let gzipped = [MAGIC, &Pb::new().str(3, "gzip").0].concat();
    assert!(err(&gzipped).contains("gzip"));
}
