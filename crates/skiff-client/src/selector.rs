//! Typed label selectors (`matchLabels` + `matchExpressions`) matched against labels, for
//! programs that hold k8s-openapi objects (the scheduler, the controllers). The operators are
//! matched by `skiff_api::selectors::LabelOp`, as for every other selector.

use std::collections::BTreeMap;

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
}
