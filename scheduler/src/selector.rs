//! Matching typed selectors: label selectors (shared, from `skiff-client`) against pod labels,
//! and node selector terms (required/preferred node affinity) against a node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use skiff_api::selectors::LabelOp;

pub use skiff_client::selector::matches as matches_label_selector;

/// Whether one node selector requirement holds for a value (`None`: the label is absent);
/// an unknown operator matches nothing.
fn requirement_holds(r: &NodeSelectorRequirement, have: Option<&str>) -> bool {
    LabelOp::from_api(&r.operator)
        .is_some_and(|op| op.holds(r.values.as_deref().unwrap_or_default(), have))
}

/// Whether a node (its name and labels) satisfies one term: all its expressions and fields.
/// A term with neither matches nothing, as in Kubernetes.
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
