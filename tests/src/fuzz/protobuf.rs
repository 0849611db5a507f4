//! Just enough protobuf encoding to write Kubernetes' envelope (`k8s\0` + `runtime.Unknown`)
//! around a ConfigMap or a Secret, so the fuzzer can send valid protobuf bodies and then
//! garble them.

use serde_json::Value;

/// Kubernetes' protobuf body for `object`, whose `kind` is ConfigMap or Secret (other kinds
/// get an envelope with their type and empty `raw` bytes: still a body the server must judge).
pub fn envelope(object: &Value) -> Vec<u8> {
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_default();
    let mut type_meta = Vec::new();
    string(&mut type_meta, 1, &text(&object["apiVersion"]));
    string(&mut type_meta, 2, &text(&object["kind"]));
    let raw = match object["kind"].as_str() {
        Some("ConfigMap") => config_map(object),
        Some("Secret") => secret(object),
        _ => Vec::new(),
    };
    let mut unknown = Vec::new();
    bytes(&mut unknown, 1, &type_meta);
    bytes(&mut unknown, 2, &raw);
    string(&mut unknown, 4, "application/vnd.kubernetes.protobuf");
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown);
    body
}

fn config_map(object: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    bytes(&mut out, 1, &object_meta(&object["metadata"]));
    map(&mut out, 2, &object["data"]);
    out
}

fn secret(object: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    bytes(&mut out, 1, &object_meta(&object["metadata"]));
    map(&mut out, 2, &object["data"]);
    if let Some(t) = object["type"].as_str() {
        string(&mut out, 3, t);
    }
    map(&mut out, 4, &object["stringData"]);
    out
}

/// `ObjectMeta`: name (1), generateName (2), namespace (3), resourceVersion (6), labels (11).
fn object_meta(meta: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, key) in [
        (1, "name"),
        (2, "generateName"),
        (3, "namespace"),
        (6, "resourceVersion"),
    ] {
        if let Some(s) = meta[key].as_str() {
            string(&mut out, field, s);
        }
    }
    map(&mut out, 11, &meta["labels"]);
    out
}

/// A `map<string, string>` field: one entry message (key 1, value 2) per pair; values that are
/// not strings are written as their JSON text.
fn map(out: &mut Vec<u8>, field: u32, value: &Value) {
    let Some(entries) = value.as_object() else {
        return;
    };
    for (k, v) in entries {
        let mut entry = Vec::new();
        string(&mut entry, 1, k);
        match v.as_str() {
            Some(s) => string(&mut entry, 2, s),
            None => string(&mut entry, 2, &v.to_string()),
        }
        bytes(out, field, &entry);
    }
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

/// A length-delimited field (wire type 2).
fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    varint(out, u64::from(field) << 3 | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_decode_to_the_objects_they_were_made_from() {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "fuzz", "labels": {"x": "y"}},
            "data": {"k": "v"}});
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "fuzz"},
            "type": "Opaque", "stringData": {"pw": "x"}});
        for object in [cm, secret] {
            let (api_version, kind, decoded) =
                skiff_api::protobuf::decode(&envelope(&object)).expect("decodes");
            assert_eq!(
                (api_version.as_str(), kind.as_str()),
                ("v1", object["kind"].as_str().unwrap())
            );
            assert_eq!(decoded["metadata"], object["metadata"]);
        }
    }
}
