//! Strategic merge patch with Kubernetes' merge keys and directives (`$patch`,
//! `$setElementOrder/...`, `$retainKeys`, `$deleteFromPrimitiveList/...`).
//!
//! This follows apimachinery's `strategicpatch.StrategicMergeMapPatch` (with
//! `MergeParallelList` and `IgnoreUnmatchedNulls`, as the apiserver calls it): maps merge
//! recursively and `null` deletes a key; lists whose Go field carries `patchStrategy:"merge"`
//! merge by their `patchMergeKey` (or as a set of primitives); every other list is replaced.
//! The merge keys come from a small table keyed by field name and position ([`list_strategy`])
//! instead of the Go struct tags.

use serde_json::{Map, Value};

use crate::ResourceInfo;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// No patch strategy: the patch's list replaces the original.
    Replace,
    /// `patchStrategy:"merge"` with this `patchMergeKey`.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of primitives: a set union.
    MergePrimitives,
}

/// The strategy of list field `key` inside the map at `path` (field names from the object's
/// root, list indices left out) of a `kind` object: e.g. `("Deployment",
/// ["spec", "template", "spec", "containers"], "ports")` merges by `containerPort`.
pub fn list_strategy(kind: &str, path: &[String], key: &str) -> ListStrategy {
    use ListStrategy::*;
    let parent = path.last().map(String::as_str).unwrap_or("");
    let in_container = matches!(
        parent,
        "containers" | "initContainers" | "ephemeralContainers"
    );
    let in_status = path.first().map(String::as_str) == Some("status");
    match key {
        "containers" | "initContainers" | "ephemeralContainers" if parent == "spec" => {
            MergeByKey("name")
        }
        "ports" if in_container => MergeByKey("containerPort"),
        "ports" if kind == "Service" && path == ["spec"] => MergeByKey("port"),
        "env" if in_container => MergeByKey("name"),
        "volumeMounts" if in_container => MergeByKey("mountPath"),
        "volumeDevices" if in_container => MergeByKey("devicePath"),
        "volumes" | "resourceClaims" | "schedulingGates" if parent == "spec" => MergeByKey("name"),
        "imagePullSecrets" => MergeByKey("name"),
        "hostAliases" if parent == "spec" => MergeByKey("ip"),
        "topologySpreadConstraints" if parent == "spec" => MergeByKey("topologyKey"),
        "conditions" if in_status => MergeByKey("type"),
        "podIPs" | "hostIPs" if in_status => MergeByKey("ip"),
        "addresses" if kind == "Node" && in_status => MergeByKey("type"),
        "ownerReferences" if path == ["metadata"] => MergeByKey("uid"),
        "finalizers" if path == ["metadata"] => MergePrimitives,
        "podCIDRs" if kind == "Node" && path == ["spec"] => MergePrimitives,
        "secrets" if kind == "ServiceAccount" && path.is_empty() => MergeByKey("name"),
        _ => Replace,
    }
}

/// Applies a strategic merge patch to `original` for resource `info`.
pub fn strategic_merge(
    info: &ResourceInfo,
    original: &Value,
    patch: &Value,
) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    let o = match original {
        Value::Object(o) => o.clone(),
        Value::Null => Map::new(),
        _ => return Err("the object to patch is not a JSON object".into()),
    };
    let mut path = Vec::new();
    merge_map(info.kind, o, p.clone(), &mut path).map(Value::Object)
}

fn merge_map(
    kind: &str,
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    if let Some(d) = patch.get(PATCH).cloned() {
        match d.as_str() {
            Some("replace") => {
                patch.shift_remove(PATCH);
                return Ok(clean_map(patch));
            }
            Some("delete") => return Ok(Map::new()),
            // Tolerated as a no-op (upstream rejects it on maps).
            Some("merge") => {
                patch.shift_remove(PATCH);
            }
            _ => {
                return Err(format!(
                    "unknown patch type: {d} in map: {}",
                    Value::Object(patch)
                ));
            }
        }
    }

    if let Some(rk) = patch.shift_remove(RETAIN_KEYS) {
        let keys: Vec<String> = rk
            .as_array()
            .ok_or("$retainKeys must be a list of field names")?
            .iter()
            .map(|k| k.as_str().unwrap_or_default().to_string())
            .collect();
        for (k, v) in &patch {
            if v.is_null()
                || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                || k.starts_with(SET_ELEMENT_ORDER)
            {
                continue;
            }
            if !keys.contains(k) {
                return Err(format!(
                    "doesn't satisfy retainKeys directive: field {k:?} is not in $retainKeys"
                ));
            }
        }
        original.retain(|k, _| keys.contains(k));
    }

    // `$setElementOrder/<field>`: merge that list now and order it by the directive.
    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for ok in order_keys {
        let field = ok[SET_ELEMENT_ORDER.len()..].to_string();
        let order = match patch.shift_remove(&ok) {
            Some(Value::Array(a)) => a,
            _ => return Err(format!("{ok} must be a list")),
        };
        let strategy = list_strategy(kind, path, &field);
        let merge_key = match strategy {
            ListStrategy::MergeByKey(k) => Some(k),
            _ => None,
        };
        let orig_list = original.get(&field).and_then(Value::as_array).cloned();
        let patch_list = match patch.shift_remove(&field) {
            Some(Value::Array(a)) => Some(a),
            Some(other) => {
                // Not a list after all: let the generic loop below handle it.
                patch.insert(field.clone(), other);
                None
            }
            None => None,
        };
        let merged = match (&orig_list, patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => clean_list(p),
            (Some(o), Some(p)) => {
                path.push(field.clone());
                let r = merge_list(kind, o.clone(), p, strategy, path);
                path.pop();
                r?
            }
            (None, None) => continue,
        };
        let (in_order, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|item| index_of(&order, item, merge_key).is_some());
        let server_order = orig_list.unwrap_or_default();
        let both = normalize_element_order(in_order, server_only, &order, &server_order, merge_key);
        original.insert(field, Value::Array(both));
    }

    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            if let (Some(Value::Array(list)), Value::Array(del)) = (original.get_mut(field), &pv) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with(SET_ELEMENT_ORDER) || k == RETAIN_KEYS || k == PATCH {
            continue;
        }
        if pv.is_null() {
            original.shift_remove(&k);
            continue;
        }
        // Taking the value leaves the key (and so its position) in place.
        let merged = match (original.get_mut(&k).map(Value::take), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                path.push(k.clone());
                let r = merge_map(kind, o, p, path);
                path.pop();
                Value::Object(r?)
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                let strategy = list_strategy(kind, path, &k);
                path.push(k.clone());
                let r = merge_list(kind, o, p, strategy, path);
                path.pop();
                Value::Array(r?)
            }
            (_, Value::Object(p)) => {
                // New map (or a type change): directives inside still apply.
                path.push(k.clone());
                let r = merge_map(kind, Map::new(), p, path);
                path.pop();
                Value::Object(r?)
            }
            (_, pv) => clean(pv),
        };
        original.insert(k, merged);
    }
    Ok(original)
}

fn merge_list(
    kind: &str,
    original: Vec<Value>,
    patch: Vec<Value>,
    strategy: ListStrategy,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    let merge_key = match strategy {
        ListStrategy::Replace => return Ok(clean_list(patch)),
        ListStrategy::MergeByKey(k) => Some(k),
        ListStrategy::MergePrimitives => None,
    };
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let maps = original.iter().chain(&patch).any(Value::is_object);
    if !maps {
        let mut merged: Vec<Value> = Vec::new();
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|v| patch.contains(v));
        return Ok(normalize_element_order(
            in_patch,
            server_only,
            &patch,
            &original,
            None,
        ));
    }
    let Some(mk) = merge_key else {
        return Err(format!(
            "cannot merge lists without merge key for {}",
            path.join(".")
        ));
    };
    // Special elements: `{$patch: delete, <key>: v}` deletes, `{$patch: replace}` replaces.
    let mut original = original;
    let mut plain = Vec::new();
    let mut replace = false;
    for p in patch {
        match p.get(PATCH).map(|d| d.as_str()) {
            None => plain.push(p),
            Some(Some("delete")) => {
                let mv = p
                    .get(mk)
                    .cloned()
                    .ok_or_else(|| format!("map: {p} does not contain declared merge key: {mk}"))?;
                original.retain(|o| o.get(mk) != Some(&mv));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                return Err("merging lists cannot yet be specified in the patch".into());
            }
            Some(_) => return Err(format!("unknown patch type in list element: {p}")),
        }
    }
    if replace {
        return Ok(clean_list(plain));
    }
    let server_order = original.clone();
    let mut merged = original;
    for p in &plain {
        let mv = p
            .get(mk)
            .ok_or_else(|| format!("map: {p} does not contain declared merge key: {mk}"))?;
        let pm = p.as_object().cloned().unwrap_or_default();
        match merged.iter().position(|o| o.get(mk) == Some(mv)) {
            Some(i) => {
                let om = merged[i].as_object().cloned().unwrap_or_default();
                merged[i] = Value::Object(merge_map(kind, om, pm, path)?);
            }
            None => merged.push(Value::Object(merge_map(kind, Map::new(), pm, path)?)),
        }
    }
    let (in_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| index_of(&plain, item, Some(mk)).is_some());
    Ok(normalize_element_order(
        in_patch,
        server_only,
        &plain,
        &server_order,
        Some(mk),
    ))
}

/// Position of `item` in `list`, by merge key for maps and by value for primitives.
fn index_of(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    match (merge_key, item) {
        (Some(k), Value::Object(m)) => {
            let v = m.get(k)?;
            list.iter().position(|x| x.get(k) == Some(v))
        }
        _ => list.iter().position(|x| x == item),
    }
}

/// Upstream's `normalizeElementOrder`: patch items in patch order, server-only items in
/// server order, then interleaved so both relative orders hold, server order deciding ties.
fn normalize_element_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    patch_items.sort_by_key(|x| index_of(patch_order, x, merge_key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|x| index_of(server_order, x, merge_key).unwrap_or(usize::MAX));
    let (left, right) = (server_only, patch_items);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() || j < right.len() {
        if i >= left.len() {
            out.push(right[j].clone());
            j += 1;
        } else if j >= right.len() {
            out.push(left[i].clone());
            i += 1;
        } else {
            let li = index_of(server_order, &left[i], merge_key);
            let ri = index_of(server_order, &right[j], merge_key);
            if matches!((li, ri), (Some(l), Some(r)) if l < r) {
                out.push(left[i].clone());
                i += 1;
            } else {
                out.push(right[j].clone());
                j += 1;
            }
        }
    }
    out
}

fn is_directive(k: &str) -> bool {
    k == PATCH
        || k == RETAIN_KEYS
        || k.starts_with(SET_ELEMENT_ORDER)
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// A patch value taken as is: nulls and directives removed (upstream's
/// `discardNullValuesFromPatch`, plus dropping directives that have nothing to act on).
fn clean(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(clean_map(m)),
        Value::Array(a) => Value::Array(clean_list(a)),
        other => other,
    }
}

fn clean_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, v)| !v.is_null() && !is_directive(k))
        .map(|(k, v)| (k, clean(v)))
        .collect()
}

fn clean_list(a: Vec<Value>) -> Vec<Value> {
    a.into_iter()
        .filter(|x| x.get(PATCH).is_none())
        .map(clean)
        .collect()
}

#[cfg(test)]
mod tests;
