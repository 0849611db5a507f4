//! Server-side apply (`application/apply-patch+yaml`), simplified: the applied configuration
//! is merged into the live object with strategic-merge semantics, and each field manager's
//! set of applied fields is recorded in `metadata.managedFields` (FieldsV1), so that a field
//! a manager applied before and leaves out now is removed. Updates (create, replace, patch) are
//! tracked too, so an apply that would change a field another manager set fails with a
//! conflict unless forced.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// Keys that identify items of lists of objects, in the order they are tried.
const MERGE_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "port",
    "mountPath",
    "devicePath",
    "ip",
    "type",
    "uid",
    "topologyKey",
];

fn item_key(item: &Value) -> Option<(&'static str, Value)> {
    let obj = item.as_object()?;
    MERGE_KEYS
        .iter()
        .find_map(|k| obj.get(*k).map(|v| (*k, v.clone())))
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
    let Some(old) = old.as_object() else {
        return Value::Object(patch);
    };
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
                    let keyed = old_child
                        .as_object()
                        .is_some_and(|m| m.keys().any(|k| k.starts_with("k:")));
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
        let Some(key_json) = k.strip_prefix("k:") else {
            continue;
        };
        let Ok(Value::Object(mut key)) = serde_json::from_str::<Value>(key_json) else {
            continue;
        };
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
        "time": skiff_common::time::now(),
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
        .filter(|e| {
            !(e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply"))
        })
        .collect();
    list.push(entry);
    meta.insert("managedFields".into(), Value::Array(list));
}

/// `manager`'s previously applied field set in `obj`, if any.
pub fn previous(obj: &Value, manager: &str) -> Option<Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
        })?
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

    /// An update's bookkeeping from no object to `obj`, through leaf paths.
    fn owned_through_leaves(obj: &Value) -> Value {
        let mut mine: BTreeSet<FieldPath> = BTreeSet::new();
        for p in leaves(&tracked_fields(obj, false)) {
            if p.last().is_some_and(|l| l == ".") || value_at(obj, &p).is_none() {
                continue;
            }
            for (i, el) in p.iter().enumerate() {
                if el.starts_with("k:") {
                    let mut item = p[..=i].to_vec();
                    item.push(".".into());
                    mine.insert(item);
                }
            }
            mine.insert(p);
        }
        from_leaves(&mine)
    }

    #[test]
    fn a_create_owns_what_an_update_from_nothing_would() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d", "labels": {"z": "1", "a": "2"}, "resourceVersion": "5"}, "data": {"k": "v", "b": ""}, "binaryData": {}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "annotations": {"x": "y"}, "finalizers": ["f"]},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "w"}},
                  "template": {"metadata": {"labels": {"app": "w"}}, "spec": {
                    "containers": [
                      {"name": "web", "image": "i", "ports": [{"containerPort": 80, "protocol": "TCP"}], "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}], "resources": {}},
                      {"name": "side", "image": "j", "args": ["a", "b"]}
                    ],
                    "tolerations": [{"key": "k", "operator": "Exists"}]}}},
                "status": {"replicas": 1}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}], "selector": {"app": "w"}}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}),
            json!({"kind": "X", "metadata": {"labels": {}}, "spec": {"items": [{"name": "a", "v": 1}, {"name": "a", "w": {"x": [1, 2]}}], "mixed": [{"name": "b"}, 3], "empty": [], "n": null}}),
            json!({"kind": "X", "metadata": {"labels": {}}, "spec": {"items": [{"name": "a", "v": 1}, {"name": "b", "w": {"x": [1, 2], "y": [{"port": 1, "z": {}}]}}], "mixed": [{"name": "b"}, 3], "empty": [], "n": null}}),
        ];
        for obj in objects {
            let want = owned_through_leaves(&obj);
            if let Some(direct) = created_fields(&obj, false) {
                assert_eq!(
                    serde_json::to_string(&direct).unwrap(),
                    serde_json::to_string(&want).unwrap(),
                    "{obj}"
                );
            } else {
                assert!(obj.to_string().contains(r#"{"name":"a","w""#), "{obj}");
            }
            let mut created = obj.clone();
            track_update(None, &mut created, "m", "v1", None);
            let entries = entries(&created);
            if want.as_object().unwrap().is_empty() {
                assert!(entries.is_empty(), "{created}");
            } else {
                assert_eq!(entries.len(), 1);
                assert_eq!(entries[0]["fieldsV1"], want);
                assert_eq!(entries[0]["manager"], "m");
                assert_eq!(entries[0]["operation"], "Update");
            }
        }
    }
}

/// A path in a field set: elements such as `f:spec`, `k:{"name":"x"}` or `.`.
pub type FieldPath = Vec<String>;

/// The leaf paths of a FieldsV1 set.
pub fn leaves(set: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        let Some(m) = v.as_object() else { return };
        for (k, child) in m {
            prefix.push(k.clone());
            if child.as_object().is_none_or(|c| c.is_empty()) {
                out.insert(prefix.clone());
            } else {
                walk(child, prefix, out);
            }
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(set, &mut Vec::new(), &mut out);
    out
}

/// A FieldsV1 set from leaf paths.
pub fn from_leaves(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for p in paths {
        let mut node = &mut root;
        for el in p {
            node = node
                .as_object_mut()
                .expect("field sets are objects")
                .entry(el.clone())
                .or_insert_with(|| json!({}));
        }
    }
    root
}

/// The value a field path names in an object (`.` names the node itself).
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        if el == "." {
            continue;
        }
        if let Some(f) = el.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array()?
                .iter()
                .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// `.spec.template.spec.containers[name="web"].image`, as Kubernetes prints field paths.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(kk, kv)| format!("{kk}={kv}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    out
}

/// The top-level fields of an object that ownership is tracked for, with their values:
/// everything but identity and server-owned metadata (and `status` unless `status` is set);
/// `metadata` reduced to what clients own, and left out when that is nothing.
fn tracked(obj: &Value, status: bool) -> Vec<(&str, std::borrow::Cow<'_, Value>)> {
    use std::borrow::Cow;
    let Some(m) = obj.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, child) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if !status => {}
            "metadata" => {
                let meta: Map<String, Value> =
                    ["labels", "annotations", "finalizers", "ownerReferences"]
                        .into_iter()
                        .filter_map(|f| Some((f.to_string(), child.get(f)?.clone())))
                        .collect();
                if !meta.is_empty() {
                    out.push((k.as_str(), Cow::Owned(Value::Object(meta))));
                }
            }
            _ => out.push((k.as_str(), Cow::Borrowed(child))),
        }
    }
    out
}

/// The field set of what ownership is tracked for in an object (see [`tracked`]).
pub fn tracked_fields(obj: &Value, status: bool) -> Value {
    let v: Map<String, Value> = tracked(obj, status)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_owned()))
        .collect();
    field_set(&Value::Object(v))
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn entry_is(e: &Value, manager: &str, operation: &str) -> bool {
    e.get("manager").and_then(Value::as_str) == Some(manager)
        && e.get("operation").and_then(Value::as_str) == Some(operation)
}

fn set_entries(obj: &mut Value, list: Vec<Value>) {
    let meta = crate::objects::meta_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// What a create's manager owns of `obj`: every field `tracked_fields` tracks, as FieldsV1
/// with `.` (the node itself) for list items only and keys in order. The same set an update
/// from nothing records through leaf paths, built in one pass; `None` when a list has two
/// items with the same key (then only the general bookkeeping knows what to record).
fn created_fields(obj: &Value, status: bool) -> Option<Value> {
    let mut out = BTreeMap::new();
    for (k, v) in tracked(obj, status) {
        out.insert(format!("f:{k}"), created_child(&v)?);
    }
    Some(sorted(out))
}

fn created_child(child: &Value) -> Option<Value> {
    let fields = |m: &Map<String, Value>| -> Option<BTreeMap<String, Value>> {
        m.iter()
            .map(|(k, c)| Some((format!("f:{k}"), created_child(c)?)))
            .collect()
    };
    Some(match child {
        Value::Object(m) if !m.is_empty() => sorted(fields(m)?),
        Value::Array(items) if !items.is_empty() && items.iter().all(|i| item_key(i).is_some()) => {
            let mut out = BTreeMap::new();
            for item in items {
                if let (Some((k, kv)), Some(m)) = (item_key(item), item.as_object()) {
                    let mut set = fields(m)?;
                    set.insert(".".into(), json!({}));
                    let key = format!("k:{}", json!({ k: kv }));
                    if out.insert(key, sorted(set)).is_some() {
                        return None;
                    }
                }
            }
            sorted(out)
        }
        _ => json!({}),
    })
}

fn sorted(m: BTreeMap<String, Value>) -> Value {
    Value::Object(m.into_iter().collect())
}

/// Records an Update (create, replace, patch) by `manager`: it owns the fields it changed,
/// which every other manager loses; fields that disappeared are nobody's.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let status = subresource == Some("status");
    let created = if old.is_none() {
        created_fields(new, status)
    } else {
        None
    };
    if let Some(set) = created {
        // A create: the manager owns every field there is. Same result as below, without
        // going through leaf paths (a tenth of the apiserver's CPU for a stream of creates).
        let mut list = Vec::new();
        if set.as_object().is_some_and(|m| !m.is_empty()) {
            list.push(update_entry(manager, api_version, subresource, set));
        }
        set_entries(new, list);
        return;
    }
    let new_set = leaves(&tracked_fields(new, status));
    let old_set = old
        .map(|o| leaves(&tracked_fields(o, status)))
        .unwrap_or_default();
    let changed: BTreeSet<FieldPath> = new_set
        .iter()
        .filter(|p| {
            p.last().is_some_and(|l| l != ".")
                && old.and_then(|o| value_at(o, p)) != value_at(new, p)
        })
        .cloned()
        .collect();
    let removed: BTreeSet<FieldPath> = old_set.difference(&new_set).cloned().collect();
    // Managed fields come from the stored object, whatever the client sent.
    let mut list = old.map(entries).unwrap_or_default();
    if changed.is_empty() && removed.is_empty() {
        // Nothing changed hands: keep the entries as they are (timestamps included), so a
        // no-op write stays a no-op.
        set_entries(new, list);
        return;
    }
    let mut mine: BTreeSet<FieldPath> = BTreeSet::new();
    list.retain_mut(|e| {
        let set = leaves(e.get("fieldsV1").unwrap_or(&Value::Null));
        if entry_is(e, manager, "Update")
            && e.get("subresource").and_then(Value::as_str) == subresource
        {
            mine = set;
            return false;
        }
        let kept: BTreeSet<FieldPath> = set
            .iter()
            .filter(|p| !changed.contains(*p) && !removed.contains(*p))
            .cloned()
            .collect();
        e["fieldsV1"] = from_leaves(&kept);
        !kept.is_empty()
    });
    // Owning a field of a list item means owning the item too.
    for p in &changed {
        for (i, el) in p.iter().enumerate() {
            if el.starts_with("k:") {
                let mut item = p[..=i].to_vec();
                item.push(".".into());
                mine.insert(item);
            }
        }
        mine.insert(p.clone());
    }
    mine.retain(|p| !removed.contains(p));
    if !mine.is_empty() {
        list.push(update_entry(
            manager,
            api_version,
            subresource,
            from_leaves(&mine),
        ));
    }
    set_entries(new, list);
}

/// A `managedFields` entry for an Update by `manager` owning `fields`.
fn update_entry(
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    fields: Value,
) -> Value {
    // Built field by field: `json!` would copy `fields` through serialization.
    let mut entry = Map::new();
    entry.insert("manager".into(), Value::String(manager.into()));
    entry.insert("operation".into(), Value::String("Update".into()));
    entry.insert("apiVersion".into(), Value::String(api_version.into()));
    entry.insert("time".into(), Value::String(skiff_common::time::now()));
    entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
    entry.insert("fieldsV1".into(), fields);
    if let Some(s) = subresource {
        entry.insert("subresource".into(), Value::String(s.into()));
    }
    Value::Object(entry)
}

/// One field another manager owns with a different value than an apply wants.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: FieldPath,
}

/// The conflicts an apply of `applied` (field set `applied_set`) by `manager` would have
/// with the other managers of `live`.
pub fn conflicts(
    live: &Value,
    applied: &Value,
    applied_set: &BTreeSet<FieldPath>,
    manager: &str,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    for e in entries(live) {
        if entry_is(&e, manager, "Apply") {
            continue;
        }
        let owner = e
            .get("manager")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let api_version = e
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for p in leaves(e.get("fieldsV1").unwrap_or(&Value::Null)) {
            if p.last().is_some_and(|l| l == ".") || !applied_set.contains(&p) {
                continue;
            }
            if value_at(live, &p) != value_at(applied, &p) {
                out.push(Conflict {
                    manager: owner.clone(),
                    api_version: api_version.clone(),
                    path: p,
                });
            }
        }
    }
    out
}

/// After a forced apply: the other managers lose the fields the apply took from them.
pub fn take_ownership(obj: &mut Value, taken: &[Conflict]) {
    let mut list = entries(obj);
    list.retain_mut(|e| {
        let owner = e
            .get("manager")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut set = leaves(e.get("fieldsV1").unwrap_or(&Value::Null));
        let before = set.len();
        set.retain(|p| !taken.iter().any(|c| c.manager == owner && &c.path == p));
        if set.len() != before {
            e["fieldsV1"] = from_leaves(&set);
        }
        !set.is_empty()
    });
    set_entries(obj, list);
}
