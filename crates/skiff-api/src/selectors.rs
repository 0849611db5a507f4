//! Label selectors (`app=web,tier in (a,b),!canary`) and field selectors
//! (`metadata.name=x,status.phase!=Running`).

use serde_json::{Map, Value};

use crate::ResourceInfo;

/// A parsed label selector (the string form used in `?labelSelector=`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {}

impl LabelSelector {
    /// Parses the string form; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let _ = s;
        todo!()
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions`) or a plain map (a ReplicationController's or Service's selector).
    pub fn from_object(v: &Value) -> Result<Self, String> {
        let _ = v;
        todo!()
    }

    /// True when it selects everything.
    pub fn is_empty(&self) -> bool {
        todo!()
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let _ = labels;
        todo!()
    }
}

/// A parsed field selector, checked against the fields the resource supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {}

impl FieldSelector {
    /// Parses `s` for resource `info`; an unsupported field is an error
    /// (`field label not supported: spec.foo`), as in Kubernetes.
    pub fn parse(s: &str, info: &ResourceInfo) -> Result<Self, String> {
        let _ = (s, info);
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        todo!()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let _ = obj;
        todo!()
    }
}
