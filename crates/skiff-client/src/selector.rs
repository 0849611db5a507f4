//! Typed selectors for programs that hold k8s-openapi objects (the scheduler, the
//! controllers): label selectors (`matchLabels` + `matchExpressions`) against labels, and node
//! selector terms (node affinity) against a node. The operators are matched by
//! `skiff_api::selectors::LabelOp`, as for every other selector.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use skiff_api::selectors::LabelOp;

/// Whether `labels` match `selector`. An empty selector matches everything, as in Kubernetes.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels
        && ml.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    selector.match_expressions.iter().flatten().all(|e| {
        // Gt and Lt are node selector operators; in a label selector they match nothing.
        LabelOp::from_api(&e.operator)
            .filter(|op| !matches!(op, LabelOp::GreaterThan | LabelOp::LessThan))
            .is_some_and(|op| {
                let values = e.values.as_deref().unwrap_or_default();
                op.holds(values, labels.get(&e.key).map(String::as_str))
            })
    })
}

/// Whether the selector selects nothing in particular (no labels, no expressions).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

/// Whether one node selector requirement holds for a value (`None`: the label is absent);
/// an unknown operator matches nothing.
fn requirement_holds(r: &NodeSelectorRequirement, have: Option<&str>) -> bool {
    LabelOp::from_api(&r.operator)
        .is_some_and(|op| op.holds(r.values.as_deref().unwrap_or_default(), have))
}

/// Whether a node (its name and labels) satisfies one node selector term: all its
/// expressions and fields (only `metadata.name` is a field). A term with neither matches
/// nothing, as in Kubernetes.
pub fn term_matches(
    term: &NodeSelectorTerm,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_holds(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(node)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let cases = [
            (json!({}), vec![("a", "1")], true),
            (json!({"matchLabels": {"a": "1"}}), vec![("a", "1")], true),
            (json!({"matchLabels": {"a": "1"}}), vec![("a", "2")], false),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}),
                vec![("a", "2")],
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}),
                vec![],
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]}),
                vec![],
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}),
                vec![("b", "1")],
                true,
            ),
        ];
        for (sel, l, want) in cases {
            let s: LabelSelector = serde_json::from_value(sel.clone()).unwrap();
            assert_eq!(matches(&s, &labels(&l)), want, "{sel} vs {l:?}");
        }
    }

    #[test]
    fn node_selector_terms() {
        let cases = [
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["x"]}]}),
                false,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
                true,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}),
                false,
            ),
            (json!({}), false),
        ];
        let node_labels = labels(&[("zone", "a"), ("cores", "8")]);
        for (term, want) in cases {
            let t: NodeSelectorTerm = serde_json::from_value(term.clone()).unwrap();
            assert_eq!(term_matches(&t, "n1", &node_labels), want, "{term}");
        }
    }
}
