//! Label selectors (`app=web,tier in (a,b),!canary`) and field selectors
//! (`metadata.name=x,status.phase!=Running`).

use std::fmt;

use serde_json::{Map, Value};

use crate::ResourceInfo;
use crate::validation::{is_qualified_name, is_valid_label_value};

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOp {
    /// `key=value` or `key==value` (and a `matchLabels` entry).
    Equals,
    /// `key!=value`: also true when the key is absent.
    NotEquals,
    In,
    NotIn,
    /// A bare `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>N`: the value is an integer greater than N.
    GreaterThan,
    /// `key<N`.
    LessThan,
}

impl LabelOp {
    /// The operator of a `matchExpressions` entry (`In`, `NotIn`, `Exists`, `DoesNotExist`)
    /// or of a node selector requirement (also `Gt`, `Lt`), as the API spells it.
    pub fn from_api(s: &str) -> Option<LabelOp> {
        Some(match s {
            "In" => LabelOp::In,
            "NotIn" => LabelOp::NotIn,
            "Exists" => LabelOp::Exists,
            "DoesNotExist" => LabelOp::DoesNotExist,
            "Gt" => LabelOp::GreaterThan,
            "Lt" => LabelOp::LessThan,
            _ => return None,
        })
    }

    /// Whether a requirement with this operator and `values` holds for a label's value
    /// (`None`: the label is absent). This is the one place label operators are matched:
    /// string selectors, `matchExpressions` and node selector terms all come here.
    pub fn holds(self, values: &[String], have: Option<&str>) -> bool {
        match self {
            LabelOp::Equals | LabelOp::In => have.is_some_and(|v| values.iter().any(|x| x == v)),
            LabelOp::NotEquals | LabelOp::NotIn => {
                have.is_none_or(|v| !values.iter().any(|x| x == v))
            }
            LabelOp::Exists => have.is_some(),
            LabelOp::DoesNotExist => have.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let (Some(have), Some(bound)) = (
                    have.and_then(|v| v.parse::<i64>().ok()),
                    values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self == LabelOp::GreaterThan {
                    have > bound
                } else {
                    have < bound
                }
            }
        }
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub op: LabelOp,
    /// One value for Equals/NotEquals/GreaterThan/LessThan, one or more for In/NotIn, none
    /// for Exists/DoesNotExist.
    pub values: Vec<String>,
}

impl LabelRequirement {
    fn new(key: &str, op: LabelOp, values: Vec<String>) -> Result<Self, String> {
        let msgs = is_qualified_name(key);
        if !msgs.is_empty() {
            return Err(format!("key: Invalid value: {key:?}: {}", msgs.join("; ")));
        }
        match op {
            LabelOp::In | LabelOp::NotIn if values.is_empty() => {
                return Err("for 'in', 'notin' operators, values set can't be empty".into());
            }
            LabelOp::Equals | LabelOp::NotEquals if values.len() != 1 => {
                return Err("exact-match compatibility requires one single value".into());
            }
            LabelOp::Exists | LabelOp::DoesNotExist if !values.is_empty() => {
                return Err("values set must be empty for exists and does not exist".into());
            }
            LabelOp::GreaterThan | LabelOp::LessThan
                if values.len() != 1 || values[0].parse::<i64>().is_err() =>
            {
                return Err(
                    "for 'Gt', 'Lt' operators, exactly one integer value is required".into(),
                );
            }
            _ => {}
        }
        if !matches!(op, LabelOp::GreaterThan | LabelOp::LessThan) {
            for (i, v) in values.iter().enumerate() {
                let msgs = is_valid_label_value(v);
                if !msgs.is_empty() {
                    return Err(format!(
                        "values[{i}][{key}]: Invalid value: {v:?}: {}",
                        msgs.join("; ")
                    ));
                }
            }
        }
        Ok(LabelRequirement {
            key: key.to_string(),
            op,
            values,
        })
    }

    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .map(|v| v.as_str().unwrap_or(""));
        self.op.holds(&self.values, value)
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.key;
        match self.op {
            LabelOp::Equals => write!(f, "{k}={}", self.values[0]),
            LabelOp::NotEquals => write!(f, "{k}!={}", self.values[0]),
            LabelOp::In => write!(f, "{k} in ({})", self.values.join(",")),
            LabelOp::NotIn => write!(f, "{k} notin ({})", self.values.join(",")),
            LabelOp::Exists => write!(f, "{k}"),
            LabelOp::DoesNotExist => write!(f, "!{k}"),
            LabelOp::GreaterThan => write!(f, "{k}>{}", self.values[0]),
            LabelOp::LessThan => write!(f, "{k}<{}", self.values[0]),
        }
    }
}

/// A parsed label selector (the string form used in `?labelSelector=`).
///
/// All requirements must hold (AND). Requirements are kept sorted by key, as upstream's
/// internal selector, so [`Display`](fmt::Display) gives upstream's canonical string
/// (`app=web,tier in (a,b)`), the form kubectl prints in SELECTOR columns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<LabelRequirement>,
    /// Selects nothing (upstream's `labels.Nothing()`), e.g. a `null` selector object.
    pub nothing: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    In,
    NotIn,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let special = |c: char| matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>');
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            '!' if next == Some('=') => (Tok::NotEq, 2),
            '!' => (Tok::Not, 1),
            '=' if next == Some('=') => (Tok::DoubleEq, 2),
            '=' => (Tok::Eq, 1),
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '>' => (Tok::Gt, 1),
            '<' => (Tok::Lt, 1),
            _ => {
                let start = i;
                let mut j = i;
                while j < chars.len() && !chars[j].is_whitespace() && !special(chars[j]) {
                    j += 1;
                }
                let word: String = chars[start..j].iter().collect();
                let tok = match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                };
                (tok, j - start)
            }
        };
        toks.push(tok);
        i += len;
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<LabelRequirement, String> {
        let negated = if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            true
        } else {
            false
        };
        let key = match self.next() {
            // `in`/`notin` are keywords only after a key; as a key they are identifiers.
            Some(Tok::Ident(k)) => k,
            Some(Tok::In) => "in".into(),
            Some(Tok::NotIn) => "notin".into(),
            other => {
                return Err(format!(
                    "found '{}', expected: !, identifier, or 'end of string'",
                    describe(other.as_ref())
                ));
            }
        };
        if matches!(self.peek(), None | Some(Tok::Comma)) {
            let op = if negated {
                LabelOp::DoesNotExist
            } else {
                LabelOp::Exists
            };
            return LabelRequirement::new(&key, op, Vec::new());
        }
        if negated {
            return Err(format!(
                "found '{}', expected: ',' or 'end of string'",
                describe(self.peek())
            ));
        }
        let op = match self.next() {
            Some(Tok::Eq | Tok::DoubleEq) => LabelOp::Equals,
            Some(Tok::NotEq) => LabelOp::NotEquals,
            Some(Tok::In) => LabelOp::In,
            Some(Tok::NotIn) => LabelOp::NotIn,
            Some(Tok::Gt) => LabelOp::GreaterThan,
            Some(Tok::Lt) => LabelOp::LessThan,
            other => {
                return Err(format!(
                    "found '{}', expected: =, !=, ==, in, notin, <, >",
                    describe(other.as_ref())
                ));
            }
        };
        let values = if matches!(op, LabelOp::In | LabelOp::NotIn) {
            self.value_set()?
        } else {
            match self.peek() {
                None | Some(Tok::Comma) => vec![String::new()],
                Some(Tok::Ident(_) | Tok::In | Tok::NotIn) => vec![ident_text(self.next())],
                other => {
                    return Err(format!("found '{}', expected: identifier", describe(other)));
                }
            }
        };
        LabelRequirement::new(&key, op, values)
    }

    /// `( v1, v2 )`; an empty element is the empty value.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        if self.next() != Some(Tok::Open) {
            return Err("found no '(', expected: '('".into());
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Some(Tok::Close) => {
                    if expect_value && !values.is_empty() {
                        values.push(String::new());
                    }
                    break;
                }
                Some(Tok::Comma) => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                Some(t @ (Tok::Ident(_) | Tok::In | Tok::NotIn)) if expect_value => {
                    values.push(ident_text(Some(t)));
                    expect_value = false;
                }
                other => {
                    return Err(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        describe(other.as_ref())
                    ));
                }
            }
        }
        Ok(values)
    }
}

fn ident_text(t: Option<Tok>) -> String {
    match t {
        Some(Tok::Ident(s)) => s,
        Some(Tok::In) => "in".into(),
        Some(Tok::NotIn) => "notin".into(),
        _ => String::new(),
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "end of string".into(),
        Some(Tok::Ident(s)) => s.clone(),
        Some(Tok::Not) => "!".into(),
        Some(Tok::Eq) => "=".into(),
        Some(Tok::DoubleEq) => "==".into(),
        Some(Tok::NotEq) => "!=".into(),
        Some(Tok::In) => "in".into(),
        Some(Tok::NotIn) => "notin".into(),
        Some(Tok::Gt) => ">".into(),
        Some(Tok::Lt) => "<".into(),
        Some(Tok::Open) => "(".into(),
        Some(Tok::Close) => ")".into(),
        Some(Tok::Comma) => ",".into(),
    }
}

impl LabelSelector {
    /// Parses the string form; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Parser {
            toks: lex(s)?,
            pos: 0,
        };
        let mut reqs = Vec::new();
        if p.toks.is_empty() {
            return Ok(LabelSelector::default());
        }
        loop {
            let r = p
                .requirement()
                .map_err(|e| format!("unable to parse requirement: {e}"))?;
            reqs.push(r);
            match p.next() {
                None => break,
                Some(Tok::Comma) => {
                    if p.peek().is_none() {
                        return Err("unable to parse requirement: found 'end of string', expected: identifier".into());
                    }
                }
                other => {
                    return Err(format!(
                        "unable to parse requirement: found '{}', expected: ',' or 'end of string'",
                        describe(other.as_ref())
                    ));
                }
            }
        }
        Ok(Self::sorted(reqs))
    }

    fn sorted(mut reqs: Vec<LabelRequirement>) -> Self {
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements: reqs,
            nothing: false,
        }
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions`) or a plain map (a ReplicationController's or Service's selector).
    ///
    /// An object with neither `matchLabels` nor `matchExpressions` but other string values is
    /// a plain map. `null` selects nothing and `{}` everything, as upstream's
    /// `LabelSelectorAsSelector`.
    pub fn from_object(v: &Value) -> Result<Self, String> {
        let m = match v {
            Value::Null => {
                return Ok(LabelSelector {
                    requirements: Vec::new(),
                    nothing: true,
                });
            }
            Value::Object(m) => m,
            other => return Err(format!("a label selector must be an object, not {other}")),
        };
        let structured = m.contains_key("matchLabels") || m.contains_key("matchExpressions");
        let mut reqs = Vec::new();
        let labels = if structured {
            m.get("matchLabels").and_then(Value::as_object)
        } else {
            Some(m)
        };
        for (k, val) in labels.into_iter().flatten() {
            let s = val
                .as_str()
                .ok_or_else(|| format!("label {k:?}: value must be a string"))?;
            reqs.push(LabelRequirement::new(
                k,
                LabelOp::Equals,
                vec![s.to_string()],
            )?);
        }
        if structured {
            for e in m
                .get("matchExpressions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
                // Gt and Lt belong to node selectors only.
                let op = LabelOp::from_api(op)
                    .filter(|op| !matches!(op, LabelOp::GreaterThan | LabelOp::LessThan))
                    .ok_or_else(|| format!("{op:?} is not a valid label selector operator"))?;
                let values = e
                    .get("values")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|x| x.as_str().unwrap_or("").to_string())
                    .collect();
                reqs.push(LabelRequirement::new(key, op, values)?);
            }
        }
        Ok(Self::sorted(reqs))
    }

    /// True when it selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(","))
    }
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    /// True for `!=`.
    pub negated: bool,
    pub value: String,
    /// The JSON path read (`source` reads `source.component`).
    path: Vec<&'static str>,
    /// What a missing field reads as: Go's zero value of its type.
    zero: &'static str,
}

/// A parsed field selector, checked against the fields the resource supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// How a selectable field's missing value reads: Go's zero value of its type.
#[derive(Clone, Copy)]
enum Zero {
    Str,
    Int,
    Bool,
}

/// The fields `info` supports beyond `metadata.name` and `metadata.namespace`, with the JSON
/// path each reads (upstream's `*ToSelectableFields`).
fn resource_fields(
    info: &ResourceInfo,
) -> &'static [(&'static str, &'static [&'static str], Zero)] {
    use Zero::*;
    match (info.group, info.plural) {
        ("", "pods") => &[
            ("spec.nodeName", &["spec", "nodeName"], Str),
            ("spec.restartPolicy", &["spec", "restartPolicy"], Str),
            ("spec.schedulerName", &["spec", "schedulerName"], Str),
            (
                "spec.serviceAccountName",
                &["spec", "serviceAccountName"],
                Str,
            ),
            ("spec.hostNetwork", &["spec", "hostNetwork"], Bool),
            ("status.phase", &["status", "phase"], Str),
            ("status.podIP", &["status", "podIP"], Str),
            (
                "status.nominatedNodeName",
                &["status", "nominatedNodeName"],
                Str,
            ),
        ],
        ("", "events") => &[
            ("involvedObject.kind", &["involvedObject", "kind"], Str),
            (
                "involvedObject.namespace",
                &["involvedObject", "namespace"],
                Str,
            ),
            ("involvedObject.name", &["involvedObject", "name"], Str),
            ("involvedObject.uid", &["involvedObject", "uid"], Str),
            (
                "involvedObject.apiVersion",
                &["involvedObject", "apiVersion"],
                Str,
            ),
            (
                "involvedObject.resourceVersion",
                &["involvedObject", "resourceVersion"],
                Str,
            ),
            (
                "involvedObject.fieldPath",
                &["involvedObject", "fieldPath"],
                Str,
            ),
            ("reason", &["reason"], Str),
            ("reportingComponent", &["reportingComponent"], Str),
            ("source", &["source", "component"], Str),
            ("type", &["type"], Str),
        ],
        ("", "secrets") => &[("type", &["type"], Str)],
        ("", "nodes") => &[("spec.unschedulable", &["spec", "unschedulable"], Bool)],
        ("", "namespaces") => &[("status.phase", &["status", "phase"], Str)],
        ("", "services") => &[
            ("spec.clusterIP", &["spec", "clusterIP"], Str),
            ("spec.type", &["spec", "type"], Str),
        ],
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            &[("status.replicas", &["status", "replicas"], Int)]
        }
        ("batch", "jobs") => &[("status.successful", &["status", "succeeded"], Int)],
        _ => &[],
    }
}

/// Splits a term at its operator, honouring `\` escapes; returns (field, negated, value).
fn split_term(term: &str) -> Option<(String, bool, String)> {
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'!' if b.get(i + 1) == Some(&b'=') => {
                return Some((term[..i].to_string(), true, term[i + 2..].to_string()));
            }
            b'=' => {
                let skip = if b.get(i + 1) == Some(&b'=') { 2 } else { 1 };
                return Some((term[..i].to_string(), false, term[i + skip..].to_string()));
            }
            _ => i += 1,
        }
    }
    None
}

/// Splits on unescaped commas.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=' | '!')) => out.push(n),
                Some(n) => return Err(format!("invalid escape sequence: \\{n}")),
                None => return Err("invalid trailing escape sequence".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses `s` for resource `info`; an unsupported field is an error
    /// (`field label not supported: spec.foo`), as in Kubernetes.
    pub fn parse(s: &str, info: &ResourceInfo) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        for term in split_terms(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, negated, value) = split_term(term)
                .ok_or_else(|| format!("invalid selector: '{s}'; can't understand '{term}'"))?;
            let field = unescape(field.trim())?;
            let value = unescape(&value)?;
            let supported = field == "metadata.name"
                || field == "metadata.namespace"
                || resource_fields(info).iter().any(|(f, _, _)| *f == field);
            if !supported {
                return Err(format!("field label not supported: {field}"));
            }
            let (path, zero) = resolve(info, &field);
            reqs.push(FieldRequirement {
                field,
                negated,
                value,
                path,
                zero,
            });
        }
        Ok(FieldSelector { requirements: reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = read_field(obj, &r.path, r.zero);
            (actual == r.value) != r.negated
        })
    }
}

fn resolve(info: &ResourceInfo, field: &str) -> (Vec<&'static str>, &'static str) {
    match field {
        "metadata.name" => (vec!["metadata", "name"], ""),
        "metadata.namespace" => (vec!["metadata", "namespace"], ""),
        _ => resource_fields(info)
            .iter()
            .find(|(f, _, _)| *f == field)
            .map(|(_, p, z)| {
                let zero = match z {
                    Zero::Str => "",
                    Zero::Int => "0",
                    Zero::Bool => "false",
                };
                (p.to_vec(), zero)
            })
            .unwrap_or_default(),
    }
}

fn read_field(obj: &Value, path: &[&str], zero: &str) -> String {
    let mut cur = Some(obj);
    for seg in path {
        cur = cur.and_then(|c| c.get(seg));
    }
    match cur {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => zero.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn operators_hold_as_kubernetes_matches_them() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // (operator, values, label value, holds)
        let cases: &[(&str, &[&str], Option<&str>, bool)] = &[
            ("In", &["a", "b"], Some("b"), true),
            ("In", &["a"], Some("c"), false),
            ("In", &["a"], None, false),
            ("NotIn", &["a"], Some("c"), true),
            ("NotIn", &["a"], Some("a"), false),
            ("NotIn", &["a"], None, true),
            ("Exists", &[], Some(""), true),
            ("Exists", &[], None, false),
            ("DoesNotExist", &[], None, true),
            ("DoesNotExist", &[], Some("x"), false),
            ("Gt", &["4"], Some("8"), true),
            ("Gt", &["4"], Some("4"), false),
            ("Gt", &["4"], Some("x"), false),
            ("Gt", &["x"], Some("8"), false),
            ("Gt", &[], Some("8"), false),
            ("Lt", &["4"], Some("3"), true),
            ("Lt", &["4"], None, false),
        ];
        for (op, values, have, want) in cases {
            let got = LabelOp::from_api(op).unwrap().holds(&v(values), *have);
            assert_eq!(got, *want, "{op} {values:?} {have:?}");
        }
        assert_eq!(LabelOp::from_api("Equals"), None);
    }

    #[test]
    fn label_selector_parse_and_match() {
        let l = labels(json!({"app": "web", "tier": "front", "n": "5"}));
        // (selector, matches l)
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app = web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (db, cache)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("app=web, !canary", true),
            ("n>3", true),
            ("n<3", false),
            ("app.kubernetes.io/name=x", false),
        ];
        for (s, want) in cases {
            let sel = LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(sel.matches(Some(&l)), *want, "{s}");
        }
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert!(
            LabelSelector::parse("app")
                .unwrap()
                .matches(Some(&labels(json!({"app": ""}))))
        );
        assert!(
            LabelSelector::parse("app=")
                .unwrap()
                .matches(Some(&labels(json!({"app": ""}))))
        );
        assert!(!LabelSelector::parse("app=x").unwrap().matches(None));
    }

    #[test]
    fn label_selector_errors() {
        let bad = [
            "app in ()",
            "app in (a",
            "app=a b",
            "a/b/c=x",
            "app=web,",
            "=x",
            "!app=x",
            "app=(x)",
            "-bad=x",
            "n>x",
        ];
        for s in bad {
            assert!(LabelSelector::parse(s).is_err(), "{s} should fail");
        }
    }

    #[test]
    fn label_selector_display_is_canonical() {
        let cases = [
            ("tier in (a,b),app=web", "app=web,tier in (a,b)"),
            ("!canary,app", "app,!canary"),
            ("x notin (y)", "x notin (y)"),
        ];
        for (input, want) in cases {
            assert_eq!(LabelSelector::parse(input).unwrap().to_string(), want);
        }
    }

    #[test]
    fn label_selector_from_object() {
        let l = labels(json!({"app": "web", "env": "prod"}));
        let cases: &[(Value, bool)] = &[
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (json!({"app": "web"}), true),
            (json!({}), true),
            (json!(null), false),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}),
                false,
            ),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
                true,
            ),
        ];
        for (v, want) in cases {
            let sel = LabelSelector::from_object(v).unwrap();
            assert_eq!(sel.matches(Some(&l)), *want, "{v}");
        }
        assert!(
            LabelSelector::from_object(
                &json!({"matchExpressions": [{"key": "a", "operator": "Bad"}]})
            )
            .is_err()
        );
        assert!(
            LabelSelector::from_object(
                &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
            )
            .is_err()
        );
        assert!(LabelSelector::from_object(&json!({})).unwrap().is_empty());
        assert!(!LabelSelector::from_object(&json!(null)).unwrap().is_empty());
        assert_eq!(
            LabelSelector::from_object(&json!({"matchLabels": {"b": "2", "a": "1"}}))
                .unwrap()
                .to_string(),
            "a=1,b=2"
        );
    }

    #[test]
    fn field_selectors() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running"}
        });
        let unbound = json!({"metadata": {"name": "p2", "namespace": "default"}, "spec": {}, "status": {"phase": "Pending"}});
        let cases: &[(&str, bool, bool)] = &[
            // (selector, matches pod, matches unbound)
            ("", true, true),
            ("metadata.name=p1", true, false),
            ("metadata.name==p1", true, false),
            ("metadata.name!=p1", false, true),
            ("metadata.namespace=default", true, true),
            ("spec.nodeName=n1", true, false),
            ("spec.nodeName=", false, true),
            ("spec.nodeName!=", true, false),
            ("status.phase!=Running,status.phase!=Succeeded", false, true),
            ("status.phase=Running,spec.nodeName=n1", true, false),
            ("spec.hostNetwork=false", true, true),
        ];
        for (s, a, b) in cases {
            let fs = FieldSelector::parse(s, pods).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(fs.matches(&pod), *a, "{s} on pod");
            assert_eq!(fs.matches(&unbound), *b, "{s} on unbound");
        }
        assert_eq!(
            FieldSelector::parse("spec.foo=x", pods).unwrap_err(),
            "field label not supported: spec.foo"
        );
        assert!(FieldSelector::parse("nooperator", pods).is_err());
    }

    #[test]
    fn field_selectors_per_resource() {
        let cases: &[(&str, &str, &str, Value, bool)] = &[
            (
                "",
                "events",
                "involvedObject.name=web",
                json!({"involvedObject": {"name": "web"}}),
                true,
            ),
            (
                "",
                "events",
                "source=kubelet",
                json!({"source": {"component": "kubelet"}}),
                true,
            ),
            (
                "",
                "events",
                "type=Warning",
                json!({"type": "Normal"}),
                false,
            ),
            (
                "",
                "secrets",
                "type=Opaque",
                json!({"type": "Opaque"}),
                true,
            ),
            (
                "",
                "nodes",
                "spec.unschedulable=false",
                json!({"spec": {}}),
                true,
            ),
            (
                "",
                "nodes",
                "spec.unschedulable=true",
                json!({"spec": {"unschedulable": true}}),
                true,
            ),
            (
                "",
                "namespaces",
                "status.phase=Active",
                json!({"status": {"phase": "Active"}}),
                true,
            ),
            (
                "apps",
                "replicasets",
                "status.replicas=0",
                json!({"status": {}}),
                true,
            ),
            (
                "",
                "replicationcontrollers",
                "status.replicas=2",
                json!({"status": {"replicas": 2}}),
                true,
            ),
            (
                "batch",
                "jobs",
                "status.successful=1",
                json!({"status": {"succeeded": 1}}),
                true,
            ),
            (
                "apps",
                "deployments",
                "metadata.name=x",
                json!({"metadata": {"name": "x"}}),
                true,
            ),
            (
                "",
                "configmaps",
                "metadata.name=a\\,b",
                json!({"metadata": {"name": "a,b"}}),
                true,
            ),
        ];
        for (g, plural, s, obj, want) in cases {
            let info = find(g, "v1", plural).unwrap();
            let fs = FieldSelector::parse(s, info).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(fs.matches(obj), *want, "{plural} {s}");
        }
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert!(FieldSelector::parse("status.phase=x", deploy).is_err());
    }
}
