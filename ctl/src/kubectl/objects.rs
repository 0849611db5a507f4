//! Printing the typed objects kubectl's generators and reviews print (`create role -o json`,
//! `create token -o yaml`, `auth whoami -o json`): kubectl holds these as Go structs, so its JSON
//! follows the structs' field order (`kind`, `apiVersion`, `metadata`, ...) and keeps the
//! fields that have no `omitempty` (`creationTimestamp: null`, a Role's `rules: null`), unlike
//! `get`, whose objects are maps printed with sorted keys.

use anyhow::bail;
use serde_json::{Map, Value};

/// The Go types whose field order matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Role,
    ClusterRole,
    RoleBinding,
    ServiceAccount,
    TokenRequest,
    SelfSubjectReview,
}

/// A struct's fields in Go order: (JSON name, its shape, what Go prints when it is unset).
type Fields = &'static [(&'static str, Field, Absent)];

/// What encoding/json writes for an unset field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Absent {
    /// Nothing (`omitempty`).
    Omit,
    /// `null`: a nil pointer, slice or map, or a zero `metav1.Time`, without `omitempty`.
    Null,
    /// The struct with its own unset fields: a struct value (never omitted).
    Empty,
    /// `""`: a string without `omitempty`.
    Str,
}
use Absent::{Empty, Null, Omit, Str};

#[derive(Debug, Clone, Copy)]
enum Field {
    /// A scalar or a map (maps print with sorted keys, as Go's encoder does).
    Leaf,
    Struct(Fields),
    List(Fields),
}

const OBJECT_META: Fields = &[
    ("name", Field::Leaf, Omit),
    ("generateName", Field::Leaf, Omit),
    ("namespace", Field::Leaf, Omit),
    ("selfLink", Field::Leaf, Omit),
    ("uid", Field::Leaf, Omit),
    ("resourceVersion", Field::Leaf, Omit),
    ("generation", Field::Leaf, Omit),
    ("creationTimestamp", Field::Leaf, Null),
    ("deletionTimestamp", Field::Leaf, Omit),
    ("deletionGracePeriodSeconds", Field::Leaf, Omit),
    ("labels", Field::Leaf, Omit),
    ("annotations", Field::Leaf, Omit),
    ("ownerReferences", Field::Leaf, Omit),
    ("finalizers", Field::Leaf, Omit),
    ("managedFields", Field::Leaf, Omit),
];

const POLICY_RULE: Fields = &[
    ("verbs", Field::Leaf, Null),
    ("apiGroups", Field::Leaf, Omit),
    ("resources", Field::Leaf, Omit),
    ("resourceNames", Field::Leaf, Omit),
    ("nonResourceURLs", Field::Leaf, Omit),
];

const LABEL_SELECTOR: Fields = &[
    ("matchLabels", Field::Leaf, Omit),
    ("matchExpressions", Field::Leaf, Omit),
];

const SUBJECT: Fields = &[
    ("kind", Field::Leaf, Str),
    ("apiGroup", Field::Leaf, Omit),
    ("name", Field::Leaf, Str),
    ("namespace", Field::Leaf, Omit),
];

const ROLE_REF: Fields = &[
    ("apiGroup", Field::Leaf, Str),
    ("kind", Field::Leaf, Str),
    ("name", Field::Leaf, Str),
];

const BOUND_OBJECT_REF: Fields = &[
    ("kind", Field::Leaf, Omit),
    ("apiVersion", Field::Leaf, Omit),
    ("name", Field::Leaf, Omit),
    ("uid", Field::Leaf, Omit),
];

const USER_INFO: Fields = &[
    ("username", Field::Leaf, Omit),
    ("uid", Field::Leaf, Omit),
    ("groups", Field::Leaf, Omit),
    ("extra", Field::Leaf, Omit),
];

impl Shape {
    fn fields(self) -> Fields {
        const META: (&str, Field, Absent) = ("metadata", Field::Struct(OBJECT_META), Empty);
        match self {
            Shape::Role => &[META, ("rules", Field::List(POLICY_RULE), Null)],
            Shape::ClusterRole => &[
                META,
                ("rules", Field::List(POLICY_RULE), Null),
                (
                    "aggregationRule",
                    Field::Struct(&[("clusterRoleSelectors", Field::List(LABEL_SELECTOR), Omit)]),
                    Omit,
                ),
            ],
            Shape::RoleBinding => &[
                META,
                ("subjects", Field::List(SUBJECT), Omit),
                ("roleRef", Field::Struct(ROLE_REF), Empty),
            ],
            Shape::ServiceAccount => &[
                META,
                ("secrets", Field::Leaf, Omit),
                ("imagePullSecrets", Field::Leaf, Omit),
                ("automountServiceAccountToken", Field::Leaf, Omit),
            ],
            Shape::TokenRequest => &[
                META,
                (
                    "spec",
                    Field::Struct(&[
                        ("audiences", Field::Leaf, Null),
                        ("expirationSeconds", Field::Leaf, Omit),
                        ("boundObjectRef", Field::Struct(BOUND_OBJECT_REF), Null),
                    ]),
                    Empty,
                ),
                (
                    "status",
                    Field::Struct(&[
                        ("token", Field::Leaf, Str),
                        ("expirationTimestamp", Field::Leaf, Null),
                    ]),
                    Empty,
                ),
            ],
            Shape::SelfSubjectReview => &[
                META,
                (
                    "status",
                    Field::Struct(&[("userInfo", Field::Struct(USER_INFO), Empty)]),
                    Empty,
                ),
            ],
        }
    }
}

/// `obj` as the Go struct `shape` marshals: `kind` and `apiVersion` first, then the struct's
/// fields in order (those without `omitempty` as null when absent, structs as `{}`), then
/// anything unknown, sorted.
pub fn go_order(shape: Shape, obj: &Value) -> Value {
    let mut out = Map::new();
    for key in ["kind", "apiVersion"] {
        if let Some(v) = obj.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let rest = order_struct(shape.fields(), obj);
    if let Value::Object(m) = rest {
        out.extend(m);
    }
    if let Value::Object(m) = obj {
        let mut extra: Vec<(&String, &Value)> =
            m.iter().filter(|(k, _)| !out.contains_key(*k)).collect();
        extra.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in extra {
            out.insert(k.clone(), super::sorted(v.clone()));
        }
    }
    Value::Object(out)
}

fn order_struct(fields: Fields, v: &Value) -> Value {
    let empty = Map::new();
    let m = v.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    for (name, field, absent) in fields {
        match (m.get(*name), field) {
            (None | Some(Value::Null), Field::Struct(inner)) if *absent == Empty => {
                out.insert((*name).into(), order_struct(inner, &Value::Null));
            }
            // A null decodes as unset, so it prints as unset does.
            (None | Some(Value::Null), _) => match absent {
                Omit => {}
                Str => {
                    out.insert((*name).into(), Value::String(String::new()));
                }
                Null | Empty => {
                    out.insert((*name).into(), Value::Null);
                }
            },
            (Some(v), Field::Leaf) => {
                out.insert((*name).into(), super::sorted(v.clone()));
            }
            (Some(v), Field::Struct(inner)) => {
                out.insert((*name).into(), order_struct(inner, v));
            }
            (Some(Value::Array(items)), Field::List(inner)) => {
                let items = items.iter().map(|i| order_struct(inner, i)).collect();
                out.insert((*name).into(), Value::Array(items));
            }
            (Some(v), Field::List(_)) => {
                out.insert((*name).into(), v.clone());
            }
        }
    }
    let mut extra: Vec<(&String, &Value)> = m
        .iter()
        .filter(|(k, _)| !fields.iter().any(|f| f.0 == k.as_str()))
        .collect();
    extra.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in extra {
        out.insert(k.clone(), super::sorted(v.clone()));
    }
    Value::Object(out)
}

/// How `create ... -o FORMAT` prints an object: `json`, `yaml` or `name`
/// (`role.rbac.authorization.k8s.io/NAME`); None (no `-o`) prints `NAME created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Name,
}

impl Output {
    /// kubectl's `-o` for generators; an empty value is as if none was given.
    pub fn parse(o: Option<&str>) -> anyhow::Result<Option<Output>> {
        Ok(match o {
            None | Some("") => None,
            Some("json") => Some(Output::Json),
            Some("yaml") => Some(Output::Yaml),
            Some("name") => Some(Output::Name),
            Some(other) => bail!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,yaml"
            ),
        })
    }
}

/// The object's name as `-o name` prints it: `<unknown>` when it has none (a review).
pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("<unknown>")
}

/// `obj` (already in Go order) as `-o json` or `-o yaml` prints it; managedFields left out,
/// as kubectl does unless `--show-managed-fields`.
pub fn render(obj: &Value, json: bool) -> anyhow::Result<String> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("managedFields");
    }
    if json {
        use serde::Serialize as _;
        let mut buf = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(
            &mut buf,
            serde_json::ser::PrettyFormatter::with_indent(b"    "),
        );
        obj.serialize(&mut ser)?;
        Ok(format!(
            "{}\n",
            super::go_escape(&String::from_utf8_lossy(&buf))
        ))
    } else {
        Ok(super::yaml::to_string(&super::sorted(obj)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_print_in_go_field_order_with_their_non_omitempty_fields() {
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": "r" },
            "rules": [{ "resources": ["pods"], "apiGroups": [""], "verbs": ["get"] }]
        });
        let text = serde_json::to_string(&go_order(Shape::Role, &role)).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"Role","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"r","creationTimestamp":null},"rules":[{"verbs":["get"],"apiGroups":[""],"resources":["pods"]}]}"#
        );
        let aggregated = json!({ "kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": { "name": "m" },
            "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { "b": "1", "a": "2" } }] } });
        assert_eq!(
            serde_json::to_string(&go_order(Shape::ClusterRole, &aggregated)).unwrap(),
            r#"{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"m","creationTimestamp":null},"rules":null,"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"a":"2","b":"1"}}]}}"#
        );
    }

    #[test]
    fn json_has_four_space_indents_and_yaml_sorted_keys() {
        let sa = go_order(
            Shape::ServiceAccount,
            &json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "a",
                     "managedFields": [{ "manager": "kubectl-create" }] } }),
        );
        assert_eq!(
            render(&sa, true).unwrap(),
            "{\n    \"kind\": \"ServiceAccount\",\n    \"apiVersion\": \"v1\",\n    \"metadata\": {\n        \"name\": \"a\",\n        \"creationTimestamp\": null\n    }\n}\n"
        );
        assert_eq!(
            render(&sa, false).unwrap(),
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  creationTimestamp: null\n  name: a\n"
        );
        assert_eq!(Output::parse(Some("")).unwrap(), None);
        assert!(
            Output::parse(Some("wide"))
                .unwrap_err()
                .to_string()
                .contains("\"wide\"")
        );
    }
}
