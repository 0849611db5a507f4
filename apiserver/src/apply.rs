//! Server-side apply (`application/apply-patch+yaml`), simplified: the applied configuration
//! is merged into the live object with strategic-merge semantics, and each field manager's
//! set of applied fields is recorded in `metadata.managedFields` (FieldsV1), so that a field
//! a manager applied before and leaves out now is removed. Conflicts between managers are not
//! detected yet: the last applier wins.

use serde_json::{Map, Value, json};

/// Keys that identify items of lists of objects, in the order they are tried.
const MERGE_KEYS: &[&str] = &["name", "containerPort", "port", "mountPath", "devicePath", "ip", "type", "uid", "topologyKey"];

fn item_key(item: &Value) -> Option<(&'static str, Value)> {
    let obj = item.as_object()?;
    MERGE_KEYS.iter().find_map(|k| obj.get(*k).map(|v| (*k, v.clone())))
}

/// The FieldsV1 set of an applied configuration.
pub fn field_set(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, child) in m {
                out.insert(format!("f:{k}"), field_set_child(child));
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

fn field_set_child(child: &Value) -> Value {
    match child {
        Value::Object(m) if !m.is_empty() => {
            let mut set = field_set(child);
            set["."] = json!({});
            set
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(|i| item_key(i).is_some()) => {
            let mut out = Map::new();
            for item in items {
                if let Some((k, kv)) = item_key(item) {
                    let key = format!("k:{}", json!({ k: kv }));
                    let mut set = field_set(item);
                    set["."] = json!({});
                    out.insert(key, set);
                }
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// A strategic-merge patch removing what `old` (a field set) has and `new` lacks.
pub fn removal_patch(old: &Value, new: &Value) -> Value {
    let mut patch = Map::new();
    let Some(old) = old.as_object() else { return Value::Object(patch) };
    for (k, old_child) in old {
        if k == "." {
            continue;
        }
        let new_child = new.get(k);
        if let Some(field) = k.strip_prefix("f:") {
            match new_child {
                None => {
                    patch.insert(field.to_string(), Value::Null);
                }
                Some(n) => {
                    let keyed = old_child.as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("k:")));
                    if keyed {
                        let items = list_removals(old_child, n);
                        if !items.is_empty() {
                            patch.insert(field.to_string(), Value::Array(items));
                        }
                    } else {
                        let sub = removal_patch(old_child, n);
                        if sub.as_object().is_some_and(|m| !m.is_empty()) {
                            patch.insert(field.to_string(), sub);
                        }
                    }
                }
            }
        }
    }
    Value::Object(patch)
}

fn list_removals(old: &Value, new: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for (k, old_item) in old.as_object().into_iter().flatten() {
        let Some(key_json) = k.strip_prefix("k:") else { continue };
        let Ok(Value::Object(mut key)) = serde_json::from_str::<Value>(key_json) else { continue };
        match new.get(k) {
            None => {
                key.insert("$patch".into(), json!("delete"));
                out.push(Value::Object(key));
            }
            Some(new_item) => {
                let sub = removal_patch(old_item, new_item);
                if let Value::Object(m) = sub
                    && !m.is_empty()
                {
                    let mut item = key;
                    item.extend(m);
                    out.push(Value::Object(item));
                }
            }
        }
    }
    out
}

/// Records (replaces) `manager`'s Apply entry in `obj`'s managedFields.
pub fn record(obj: &mut Value, manager: &str, api_version: &str, fields: Value) {
    let entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": crate::objects::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    let meta = crate::objects::meta_mut(obj);
    let mut list: Vec<Value> = meta
        .get("managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !(e.get("manager").and_then(Value::as_str) == Some(manager) && e.get("operation").and_then(Value::as_str) == Some("Apply")))
        .collect();
    list.push(entry);
    meta.insert("managedFields".into(), Value::Array(list));
}

/// `manager`'s previously applied field set in `obj`, if any.
pub fn previous(obj: &Value, manager: &str) -> Option<Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e.get("manager").and_then(Value::as_str) == Some(manager) && e.get("operation").and_then(Value::as_str) == Some("Apply"))?
        .get("fieldsV1")
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_of_a_label_and_a_container() {
        let before = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "x", "image": "i"}, {"name": "y", "image": "j"}]}});
        let after = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "x", "image": "i"}]}});
        let patch = removal_patch(&field_set(&before), &field_set(&after));
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"b": null}}, "spec": {"containers": [{"name": "y", "$patch": "delete"}]}})
        );
    }
}
