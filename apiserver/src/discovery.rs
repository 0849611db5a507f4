//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<group>[/<version>]`) and
//! `/version`, all generated from the resource table.

use serde_json::{Value, json};
use skiff_api::{ResourceInfo, resources};

/// Every resource discovery lists: the stored ones, then the reviews.
fn served() -> impl Iterator<Item = &'static ResourceInfo> {
    resources::all().iter().chain(resources::reviews())
}

/// Groups in the order discovery lists them, each with its versions, preferred first.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in served().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

fn group_doc(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

pub fn api_group_list() -> Value {
    let mut groups: Vec<Value> = groups().iter().map(|(g, vs)| group_doc(g, vs)).collect();
    groups.push(crate::resource_metrics::group_doc());
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn api_group(group: &str) -> Option<Value> {
    let (g, vs) = groups().into_iter().find(|(g, _)| *g == group)?;
    let mut doc = group_doc(g, &vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn subresource_doc(r: &ResourceInfo, sub: &str) -> Value {
    let (kind, group, version, verbs): (&str, Option<&str>, Option<&str>, &[&str]) = match sub {
        "scale" => (
            "Scale",
            Some("autoscaling"),
            Some("v1"),
            &["get", "patch", "update"],
        ),
        "binding" => ("Binding", None, None, &["create"]),
        "eviction" => ("Eviction", Some("policy"), Some("v1"), &["create"]),
        "log" => ("Pod", None, None, &["get"]),
        "exec" => ("PodExecOptions", None, None, &["create", "get"]),
        "finalize" => (r.kind, None, None, &["update"]),
        "token" => (
            "TokenRequest",
            Some("authentication.k8s.io"),
            Some("v1"),
            &["create"],
        ),
        _ => (r.kind, None, None, &["get", "patch", "update"]),
    };
    let mut doc = json!({
        "name": format!("{}/{sub}", r.plural),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if let (Some(g), Some(v)) = (group, version) {
        doc["group"] = json!(g);
        doc["version"] = json!(v);
    }
    doc
}

pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&ResourceInfo> = served()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in rs {
        let mut doc = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            doc["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            doc["categories"] = json!(r.categories);
        }
        list.push(doc);
        for sub in r.subresources {
            list.push(subresource_doc(r, sub));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list }),
    )
}

/// `/version`: Skiff speaks the Kubernetes 1.33 API.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "skiff",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}
