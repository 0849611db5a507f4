//! The JSONPath templates kubectl's `-o jsonpath=` and `-o custom-columns=` take: text with
//! `{...}` expressions — field paths (`.metadata.name`), indexes and wildcards (`[0]`, `[*]`),
//! filters (`[?(@.type=="Ready")]`), quoted literals (`{"\n"}`) and `{range ...}...{end}`.

use anyhow::{anyhow, bail};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter(Vec<Step>, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

fn parse_path(expr: &str) -> anyhow::Result<Vec<Step>> {
    let expr = expr.trim();
    let expr = expr.strip_prefix('$').unwrap_or(expr);
    let chars: Vec<char> = expr.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                // Field names may contain escaped dots (`labels.app\.kubernetes\.io/name`).
                let mut name = String::new();
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        name.push(chars[j + 1]);
                        j += 2;
                        continue;
                    }
                    name.push(chars[j]);
                    j += 1;
                }
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
                i = j;
            }
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == ']')
                    .map(|p| p + i)
                    .ok_or_else(|| anyhow!("unclosed [ in {expr}"))?;
                let inner: String = chars[i + 1..end].iter().collect();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (lhs, rhs) = f
                        .split_once("==")
                        .ok_or_else(|| anyhow!("only == filters are supported: {inner}"))?;
                    let lhs = lhs.trim().strip_prefix('@').unwrap_or(lhs.trim());
                    let rhs = rhs.trim().trim_matches('"').trim_matches('\'').to_string();
                    steps.push(Step::Filter(parse_path(lhs)?, rhs));
                } else {
                    let n: i64 = inner
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("unsupported index [{inner}]"))?;
                    steps.push(Step::Index(n));
                }
                i = end + 1;
            }
            c if c.is_whitespace() => i += 1,
            c => {
                // A leading bare name (`metadata.name`) is a field too.
                let mut j = i;
                let mut name = String::new();
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    name.push(chars[j]);
                    j += 1;
                }
                if name.is_empty() {
                    bail!("unexpected {c} in {expr}");
                }
                steps.push(Step::Field(name));
                i = j;
            }
        }
    }
    Ok(steps)
}

fn parse(template: &str) -> anyhow::Result<Vec<Node>> {
    let mut stack: Vec<(Vec<Step>, Vec<Node>)> = vec![(Vec::new(), Vec::new())];
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            None => {
                stack
                    .last_mut()
                    .expect("stack")
                    .1
                    .push(Node::Text(rest.to_string()));
                rest = "";
            }
            Some(start) => {
                if start > 0 {
                    stack
                        .last_mut()
                        .expect("stack")
                        .1
                        .push(Node::Text(rest[..start].to_string()));
                }
                let end = rest[start..]
                    .find('}')
                    .map(|e| e + start)
                    .ok_or_else(|| anyhow!("unclosed {{ in the template"))?;
                let inner = rest[start + 1..end].trim();
                rest = &rest[end + 1..];
                if let Some(lit) = inner.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
                    let text = lit.replace("\\n", "\n").replace("\\t", "\t");
                    stack.last_mut().expect("stack").1.push(Node::Text(text));
                } else if let Some(path) = inner.strip_prefix("range ") {
                    stack.push((parse_path(path)?, Vec::new()));
                } else if inner == "end" {
                    let (path, body) = stack.pop().expect("stack");
                    let parent = stack
                        .last_mut()
                        .ok_or_else(|| anyhow!("{{end}} without {{range}}"))?;
                    parent.1.push(Node::Range(path, body));
                } else {
                    stack
                        .last_mut()
                        .expect("stack")
                        .1
                        .push(Node::Path(parse_path(inner)?));
                }
            }
        }
    }
    if stack.len() != 1 {
        bail!("{{range}} without {{end}}");
    }
    Ok(stack.pop().expect("stack").1)
}

fn select<'a>(values: Vec<&'a Value>, steps: &[Step]) -> Vec<&'a Value> {
    let mut cur = values;
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(f) => {
                    if let Some(x) = v.get(f.as_str()) {
                        next.push(x);
                    }
                }
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let i = if *n < 0 { a.len() as i64 + n } else { *n };
                        if let Some(x) = usize::try_from(i).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(o) => next.extend(o.values()),
                    _ => {}
                },
                Step::Filter(path, want) => {
                    for x in v.as_array().into_iter().flatten() {
                        let got = select(vec![x], path);
                        if got.iter().any(|g| text(g) == *want) {
                            next.push(x);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// A value as kubectl prints it: strings bare, the rest as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        // As Go prints a map: keys in order.
        other => super::sorted(other.clone()).to_string(),
    }
}

fn render(nodes: &[Node], root: &Value, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let found = select(vec![root], p);
                let shown: Vec<String> = found.iter().map(|v| text(v)).collect();
                out.push_str(&shown.join(" "));
            }
            Node::Range(p, body) => {
                for item in select(vec![root], p) {
                    render(body, item, out);
                }
            }
        }
    }
}

/// Applies a `-o jsonpath=` template to `root`.
pub fn apply(template: &str, root: &Value) -> anyhow::Result<String> {
    let nodes = parse(template)?;
    let mut out = String::new();
    render(&nodes, root, &mut out);
    Ok(out)
}

/// The values one custom column shows for `obj` (a field path, with or without braces).
pub fn column(expr: &str, obj: &Value) -> anyhow::Result<String> {
    let e = expr.trim();
    let e = e
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(e);
    let found = select(vec![obj], &parse_path(e)?);
    Ok(if found.is_empty() {
        "<none>".into()
    } else {
        found.iter().map(|v| text(v)).collect::<Vec<_>>().join(",")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"items": [
            {"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}},
             "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}},
            {"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
        ]})
    }

    #[test]
    fn paths_wildcards_filters_ranges_and_literals() {
        let l = list();
        assert_eq!(apply("{.items[*].metadata.name}", &l).unwrap(), "a b");
        assert_eq!(apply("{.items[0].metadata.name}", &l).unwrap(), "a");
        assert_eq!(apply("{.items[-1].metadata.name}", &l).unwrap(), "b");
        assert_eq!(
            apply("{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}", &l).unwrap(),
            "a=True\nb=False\n"
        );
        assert_eq!(
            apply(
                "name: {.items[0].metadata.labels.app\\.kubernetes\\.io/name}",
                &l
            )
            .unwrap(),
            "name: x"
        );
        assert_eq!(
            apply("{.items[0].status}", &l).unwrap(),
            "{\"conditions\":[{\"status\":\"True\",\"type\":\"Ready\"},{\"status\":\"False\",\"type\":\"X\"}]}"
        );
        assert!(apply("{.items[", &l).is_err());
        assert!(apply("{range .items[*]}{.x}", &l).is_err());
    }

    #[test]
    fn custom_columns_take_plain_paths() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"image": "a"}, {"image": "b"}]}});
        assert_eq!(column(".metadata.name", &pod).unwrap(), "p");
        assert_eq!(column(".spec.containers[*].image", &pod).unwrap(), "a,b");
        assert_eq!(column(".spec.nodeName", &pod).unwrap(), "<none>");
    }
}
