//! OpenAPI v3 documents for the served resources, as kube-apiserver publishes them under
//! `/openapi/v3`: an index of group versions, and per group version the REST paths with their
//! operations, `x-kubernetes-group-version-kind` and `x-kubernetes-action` extensions and query
//! parameters. kubectl reads the PATCH operations' parameters to learn that the server does
//! `fieldValidation` (so `kubectl apply` validates on the server).
//!
//! The component schemas are generated from the `k8s-openapi` types (through `schemars`), with
//! `x-kubernetes-group-version-kind` on each kind's schema, so `kubectl explain` works.
//!
//! Request bodies are deliberately not described: kubectl then computes client-side
//! strategic merge patches from its built-in types, which it knows exactly.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::resources::{self, ResourceInfo};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "schema": { "type": kind }, "uniqueItems": true })
}

fn operation(
    info: &ResourceInfo,
    action: &str,
    verb_params: &[(&str, &str)],
    op_id: String,
) -> Value {
    let params: Vec<Value> = verb_params.iter().map(|(n, t)| param(n, t)).collect();
    json!({
        "operationId": op_id,
        "parameters": params,
        "responses": { "200": { "description": "OK" } },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": info.group, "version": info.version, "kind": info.kind },
    })
}

const WRITE_PARAMS: &[(&str, &str)] = &[
    ("dryRun", "string"),
    ("fieldManager", "string"),
    ("fieldValidation", "string"),
];
const PATCH_PARAMS: &[(&str, &str)] = &[
    ("dryRun", "string"),
    ("fieldManager", "string"),
    ("fieldValidation", "string"),
    ("force", "boolean"),
];
const LIST_PARAMS: &[(&str, &str)] = &[
    ("allowWatchBookmarks", "boolean"),
    ("continue", "string"),
    ("fieldSelector", "string"),
    ("labelSelector", "string"),
    ("limit", "integer"),
    ("resourceVersion", "string"),
    ("resourceVersionMatch", "string"),
    ("sendInitialEvents", "boolean"),
    ("timeoutSeconds", "integer"),
    ("watch", "boolean"),
];
const DELETE_PARAMS: &[(&str, &str)] = &[
    ("dryRun", "string"),
    ("gracePeriodSeconds", "integer"),
    ("propagationPolicy", "string"),
];

/// The OpenAPI v3 document of one group version, or `None` if it is not served. Documents
/// are built once and shared.
pub fn group_version(group: &str, version: &str) -> Option<Value> {
    static DOCS: OnceLock<BTreeMap<(String, String), Value>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        let mut docs = BTreeMap::new();
        for r in resources::all() {
            let key = (r.group.to_string(), r.version.to_string());
            if !docs.contains_key(&key)
                && let Some(doc) = build_group_version(r.group, r.version)
            {
                docs.insert(key, doc);
            }
        }
        docs
    });
    docs.get(&(group.to_string(), version.to_string())).cloned()
}

fn build_group_version(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> = resources::all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let base = format!("/{}", gv_path(group, version));
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for r in &served {
        if let Some(reference) = crate::strategy::schema(r, &mut generator)
            && let Some(name) = reference
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|s| s.rsplit('/').next())
        {
            kinds.push((name.to_string(), *r));
        }
    }
    let mut schemas = generator.take_definitions(true);
    for (name, r) in kinds {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{ "group": r.group, "kind": r.kind, "version": r.version }]),
            );
        }
    }
    for r in served {
        let scope = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let id = |verb: &str| format!("{verb}{}", r.kind);
        paths.insert(
            scope.clone(),
            json!({
                "get": operation(r, "list", LIST_PARAMS, id("list")),
                "post": operation(r, "post", WRITE_PARAMS, id("create")),
                "delete": operation(r, "deletecollection", DELETE_PARAMS, id("deleteCollection")),
            }),
        );
        paths.insert(
            format!("{scope}/{{name}}"),
            json!({
                "get": operation(r, "get", &[], id("read")),
                "put": operation(r, "put", WRITE_PARAMS, id("replace")),
                "patch": operation(r, "patch", PATCH_PARAMS, id("patch")),
                "delete": operation(r, "delete", DELETE_PARAMS, id("delete")),
            }),
        );
        for sub in r.subresources {
            if matches!(*sub, "status" | "scale") {
                paths.insert(
                    format!("{scope}/{{name}}/{sub}"),
                    json!({
                        "get": operation(r, "get", &[], id(&format!("read{sub}"))),
                        "put": operation(r, "put", WRITE_PARAMS, id(&format!("replace{sub}"))),
                        "patch": operation(r, "patch", PATCH_PARAMS, id(&format!("patch{sub}"))),
                    }),
                );
            }
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

fn hash_of(v: &Value) -> String {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The `/openapi/v3` index: each served group version and the URL of its document.
pub fn index() -> Value {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for r in resources::all() {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    let mut paths = Map::new();
    for (g, v) in gvs {
        let doc = group_version(g, v).unwrap_or(Value::Null);
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash_of(&doc)) }),
        );
    }
    json!({ "paths": paths })
}

/// The document for a path below `/openapi/v3/` (`api/v1`, `apis/apps/v1`).
pub fn by_path(path: &str) -> Option<Value> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", v] => group_version("", v),
        ["apis", g, v] => group_version(g, v),
        _ => None,
    }
}

/// Protocol buffer encoding, just enough for the OpenAPI v2 document below.
mod pb {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A length-delimited field (strings, bytes and nested messages).
    pub fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
        varint(out, (u64::from(field) << 3) | 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }

    pub fn string(out: &mut Vec<u8>, field: u32, s: &str) {
        bytes(out, field, s.as_bytes());
    }

    pub fn message(out: &mut Vec<u8>, field: u32, build: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = Vec::new();
        build(&mut inner);
        bytes(out, field, &inner);
    }
}

/// The OpenAPI v2 document in gnostic's protobuf form
/// (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`), which kubectl up to 1.27
/// requires before it validates: PATCH operations of every resource, with their
/// `x-kubernetes-group-version-kind` and the `fieldValidation` query parameter. It has no
/// schema definitions, so kubectl leaves validation to the server.
pub fn v2_protobuf() -> Vec<u8> {
    let mut doc = Vec::new();
    pb::string(&mut doc, 1, "2.0");
    pb::message(&mut doc, 2, |info| {
        pb::string(info, 1, "Kubernetes");
        pb::string(info, 2, "v1.33.0");
    });
    pb::message(&mut doc, 8, |paths| {
        for r in resources::all() {
            let base = format!("/{}", gv_path(r.group, r.version));
            let scope = if r.namespaced {
                format!("{base}/namespaces/{{namespace}}/{}", r.plural)
            } else {
                format!("{base}/{}", r.plural)
            };
            // NamedPathItem { name = 1, value = 2 }
            pb::message(paths, 2, |named| {
                pb::string(named, 1, &format!("{scope}/{{name}}"));
                pb::message(named, 2, |item| {
                    // PathItem.patch = 8 (an Operation)
                    pb::message(item, 8, |op| {
                        pb::string(op, 5, &format!("patch{}", r.kind));
                        for (name, ty) in PATCH_PARAMS {
                            // ParametersItem.parameter = 1 → Parameter.non_body_parameter = 2 →
                            // NonBodyParameter.query_parameter_sub_schema = 3.
                            pb::message(op, 8, |pi| {
                                pb::message(pi, 1, |p| {
                                    pb::message(p, 2, |nb| {
                                        pb::message(nb, 3, |q| {
                                            pb::string(q, 2, "query");
                                            pb::string(q, 4, name);
                                            pb::string(q, 6, ty);
                                        })
                                    })
                                })
                            });
                        }
                        // Operation.vendor_extension = 13: NamedAny { name, value: Any { yaml = 2 } }
                        pb::message(op, 13, |ext| {
                            pb::string(ext, 1, "x-kubernetes-group-version-kind");
                            pb::message(ext, 2, |any| {
                                pb::string(
                                    any,
                                    2,
                                    &format!(
                                        "group: \"{}\"\nkind: {}\nversion: {}\n",
                                        r.group, r.kind, r.version
                                    ),
                                );
                            });
                        });
                    });
                });
            });
        }
    });
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_documents_list_patch_with_field_validation() {
        let idx = index();
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let doc = by_path("apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }

    #[test]
    fn v2_protobuf_starts_with_the_swagger_version() {
        let pb = v2_protobuf();
        // Field 1, length-delimited, "2.0".
        assert_eq!(&pb[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert!(
            pb.windows(b"patchDeployment".len())
                .any(|w| w == b"patchDeployment")
        );
    }
}
