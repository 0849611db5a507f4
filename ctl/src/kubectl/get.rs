//! `skiffctl get`: server-side Tables printed as kubectl prints them (so the columns are the
//! same), or the objects as JSON, YAML or names.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::Value;

use super::Session;
use super::resources::{self, Resource};

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(clap::Args, Debug, Clone)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...], or TYPE/NAME ...
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Output format: wide, json, yaml or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Label selector (`app=web`, `tier in (a,b)`, `!canary`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (`status.phase=Running`, `spec.nodeName=n1`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Show each object's labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Leave out the header line.
    #[arg(long)]
    pub no_headers: bool,
    /// After listing, keep printing changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
    JsonPath(String),
    Columns(Vec<(String, String)>),
}

fn format_of(o: Option<&str>) -> anyhow::Result<Format> {
    Ok(match o {
        None => Format::Table,
        Some("wide") => Format::Wide,
        Some("json") => Format::Json,
        Some("yaml") => Format::Yaml,
        Some("name") => Format::Name,
        Some(o) if o.starts_with("jsonpath=") => {
            let t = &o["jsonpath=".len()..];
            Format::JsonPath(t.trim_matches('\'').to_string())
        }
        Some(o) if o.starts_with("custom-columns=") => Format::Columns(
            o["custom-columns=".len()..]
                .split(',')
                .map(|c| {
                    c.split_once(':')
                        .map(|(h, p)| (h.to_string(), p.to_string()))
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "custom-columns format specified but no custom columns given"
                            )
                        })
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        Some(other) => bail!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"
        ),
    })
}

/// What the positional arguments ask for: (resource words, names) pairs.
fn requests(args: &[String]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    if args.iter().any(|a| a.contains('/')) {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for a in args {
            let Some((kind, name)) = a.split_once('/') else {
                bail!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiffctl get resource/<resource_name>' instead of 'skiffctl get resource resource/<resource_name>'"
                );
            };
            match out.iter_mut().find(|(k, _)| k == kind) {
                Some((_, names)) => names.push(name.to_string()),
                None => out.push((kind.to_string(), vec![name.to_string()])),
            }
        }
        return Ok(out);
    }
    let names: Vec<String> = args[1..].to_vec();
    Ok(args[0]
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| (k.to_string(), names.clone()))
        .collect())
}

fn query(args: &GetArgs, table: bool) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(l) = &args.selector {
        q.append_pair("labelSelector", l);
    }
    if let Some(f) = &args.field_selector {
        q.append_pair("fieldSelector", f);
    }
    if table {
        q.append_pair("includeObject", "Metadata");
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

pub async fn run(s: &Session, args: &GetArgs) -> anyhow::Result<()> {
    let format = format_of(args.output.as_deref())?;
    let format = &format;
    let all = resources::discover(s).await?;
    let mut wanted: Vec<(&Resource, Vec<String>)> = Vec::new();
    for (word, names) in requests(&args.args)? {
        for r in resources::resolve(&all, &word)? {
            if !wanted.iter().any(|(w, _)| *w == r) {
                wanted.push((r, names.clone()));
            }
        }
    }
    let several = wanted.len() > 1;
    let ns = (!args.all_namespaces).then_some(s.namespace.as_str());
    let mut printed_any = false;
    let mut objects: Vec<Value> = Vec::new();
    let mut failures: Vec<anyhow::Error> = Vec::new();
    let mut out = String::new();
    let mut list_rv = String::new();
    let mut last_table: Option<(Vec<Value>, Vec<Vec<String>>)> = None;
    if args.watch && (wanted.len() != 1 || !matches!(format, Format::Table | Format::Wide)) {
        bail!("watch is only supported on individual resources and table output");
    }
    for (r, names) in &wanted {
        let table = matches!(format, Format::Table | Format::Wide);
        let base = r.path(ns);
        let mut responses = Vec::new();
        if names.is_empty() {
            let url = format!("{base}{}", query(args, table));
            responses.push(
                s.get_json(&url, if table { TABLE } else { "application/json" })
                    .await,
            );
        } else {
            for name in names {
                let url = format!(
                    "{base}/{name}{}",
                    if table { "?includeObject=Metadata" } else { "" }
                );
                responses.push(
                    s.get_json(&url, if table { TABLE } else { "application/json" })
                        .await,
                );
            }
        }
        let mut rows: Vec<Value> = Vec::new();
        let mut columns: Vec<Value> = Vec::new();
        for resp in responses {
            match resp {
                Err(e) => failures.push(e),
                Ok(v) if table => {
                    if columns.is_empty() {
                        columns = v["columnDefinitions"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                    }
                    rows.extend(v["rows"].as_array().cloned().unwrap_or_default());
                    if let Some(rv) = v["metadata"]["resourceVersion"].as_str() {
                        list_rv = rv.to_string();
                    }
                }
                Ok(v) => match v["items"].as_array() {
                    Some(items)
                        if v.get("kind")
                            .and_then(Value::as_str)
                            .is_some_and(|k| k.ends_with("List")) =>
                    {
                        for mut item in items.clone() {
                            item["apiVersion"] = Value::String(r.api_version());
                            item["kind"] = Value::String(r.kind.clone());
                            objects.push(item);
                        }
                    }
                    _ => objects.push(v),
                },
            }
        }
        if table && !rows.is_empty() {
            if printed_any {
                out.push('\n');
            }
            let options = TableOptions {
                wide: *format == Format::Wide,
                namespace_column: args.all_namespaces && r.namespaced,
                labels: args.show_labels,
                prefix: several.then(|| r.qualified_kind()),
                headers: !args.no_headers,
            };
            let lines = table_lines(&columns, &rows, &options);
            out.push_str(&tabulate(&lines));
            last_table = Some((columns.clone(), lines));
            printed_any = true;
        }
        if *format == Format::Name {
            for o in objects.drain(..) {
                let name = o["metadata"]["name"].as_str().unwrap_or_default();
                out.push_str(&format!("{}/{name}\n", r.qualified_kind()));
                printed_any = true;
            }
        }
    }
    let single = objects.len() == 1 && wanted.len() == 1 && !wanted[0].1.is_empty();
    match format {
        Format::JsonPath(template) => {
            let root = if single {
                objects.pop().unwrap_or(Value::Null)
            } else {
                serde_json::json!({ "apiVersion": "v1", "items": objects, "kind": "List", "metadata": { "resourceVersion": "" } })
            };
            out.push_str(&super::jsonpath::apply(template, &root)?);
            printed_any = true;
        }
        Format::Columns(columns) => {
            let mut lines = Vec::new();
            if !args.no_headers {
                lines.push(columns.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>());
            }
            for o in &objects {
                lines.push(
                    columns
                        .iter()
                        .map(|(_, p)| super::jsonpath::column(p, o))
                        .collect::<anyhow::Result<Vec<_>>>()?,
                );
            }
            out.push_str(&tabulate(&lines));
            printed_any = !objects.is_empty();
        }
        Format::Json | Format::Yaml => {
            let doc = if single {
                objects.pop().unwrap_or(Value::Null)
            } else {
                serde_json::json!({
                    "apiVersion": "v1",
                    "items": objects,
                    "kind": "List",
                    "metadata": { "resourceVersion": "" }
                })
            };
            let doc = tidy(doc);
            if *format == Format::Json {
                use serde::Serialize as _;
                let mut buf = Vec::new();
                let mut ser = serde_json::Serializer::with_formatter(
                    &mut buf,
                    serde_json::ser::PrettyFormatter::with_indent(b"    "),
                );
                doc.serialize(&mut ser)?;
                out.push_str(&super::go_escape(&String::from_utf8_lossy(&buf)));
                out.push('\n');
            } else {
                out.push_str(&super::yaml::to_string(&doc));
            }
            printed_any = true;
        }
        _ => {}
    }
    print!("{out}");
    if args.watch {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let (r, names) = &wanted[0];
        return watch(s, args, r, names, &list_rv, last_table, format).await;
    }
    if !printed_any && failures.is_empty() {
        let cluster_scoped = wanted.iter().all(|(r, _)| !r.namespaced);
        if args.all_namespaces || cluster_scoped {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", s.namespace);
        }
    }
    if let Some(last) = failures.pop() {
        for e in failures {
            eprintln!("{e}");
        }
        return Err(last);
    }
    Ok(())
}

/// An object as kubectl prints it: keys sorted, managedFields left out (kubectl's
/// `--show-managed-fields=false`).
fn tidy(v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.shift_remove("managedFields");
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = super::sorted(v);
    strip(&mut v);
    v
}

pub struct TableOptions {
    pub wide: bool,
    pub namespace_column: bool,
    pub labels: bool,
    /// `pod` → names printed as `pod/NAME` (several kinds in one `get`).
    pub prefix: Option<String>,
    pub headers: bool,
}

/// A cell as kubectl prints it.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Prints a meta.k8s.io Table as kubectl does: upper-case headers, priority-0 columns (all of
/// them with `-o wide`), columns padded as Go's tabwriter pads them (3 spaces past the
/// widest cell, at least 6 wide; the last column not padded).
#[cfg(test)]
fn render_table(columns: &[Value], rows: &[Value], o: &TableOptions) -> String {
    tabulate(&table_lines(columns, rows, o))
}

/// The table's lines (header first), cells as kubectl shows them.
fn table_lines(columns: &[Value], rows: &[Value], o: &TableOptions) -> Vec<Vec<String>> {
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| o.wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let name_col = columns
        .iter()
        .position(|c| c["name"].as_str() == Some("Name"));
    let mut lines: Vec<Vec<String>> = Vec::new();
    if o.headers {
        let mut h = Vec::new();
        if o.namespace_column {
            h.push("NAMESPACE".to_string());
        }
        h.extend(shown.iter().map(|i| {
            columns[*i]["name"]
                .as_str()
                .unwrap_or_default()
                .to_uppercase()
        }));
        if o.labels {
            h.push("LABELS".into());
        }
        lines.push(h);
    }
    for row in rows {
        let cells = row["cells"].as_array().cloned().unwrap_or_default();
        let meta = &row["object"]["metadata"];
        let mut line = Vec::new();
        if o.namespace_column {
            line.push(meta["namespace"].as_str().unwrap_or_default().to_string());
        }
        for i in &shown {
            let mut text = cells.get(*i).map(cell).unwrap_or_default();
            if Some(*i) == name_col
                && let Some(p) = &o.prefix
            {
                text = format!("{p}/{text}");
            }
            line.push(text);
        }
        if o.labels {
            let labels: BTreeMap<String, String> = meta["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            line.push(if labels.is_empty() {
                "<none>".into()
            } else {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            });
        }
        lines.push(line);
    }
    lines
}

/// `get -w`: after the list, each change as a row, aligned with what was printed (columns
/// widen when a cell needs it, as kubectl's remembering tabwriter does).
async fn watch(
    s: &Session,
    args: &GetArgs,
    r: &Resource,
    names: &[String],
    rv: &str,
    last: Option<(Vec<Value>, Vec<Vec<String>>)>,
    format: &Format,
) -> anyhow::Result<()> {
    use futures::AsyncBufReadExt as _;
    use futures::StreamExt as _;
    let (mut columns, printed) = last.unwrap_or_default();
    let mut widths: Vec<usize> = Vec::new();
    for line in &printed {
        for (i, c) in line.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let ns = (!args.all_namespaces).then_some(s.namespace.as_str());
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("watch", "true");
    q.append_pair("resourceVersion", rv);
    q.append_pair("includeObject", "Metadata");
    if let Some(l) = &args.selector {
        q.append_pair("labelSelector", l);
    }
    let mut fields: Vec<String> = args.field_selector.iter().cloned().collect();
    if let [name] = names {
        fields.push(format!("metadata.name={name}"));
    }
    if !fields.is_empty() {
        q.append_pair("fieldSelector", &fields.join(","));
    }
    let path = format!("{}?{}", r.path(ns), q.finish());
    let req = http::Request::get(path.as_str())
        .header(http::header::ACCEPT, TABLE)
        .body(Vec::new())?;
    let stream = s
        .client
        .request_stream(req)
        .await
        .map_err(|e| super::explain(e, &s.server))?;
    let mut lines = stream.lines();
    let options = TableOptions {
        wide: *format == Format::Wide,
        namespace_column: args.all_namespaces && r.namespaced,
        labels: args.show_labels,
        prefix: None,
        headers: false,
    };
    while let Some(line) = lines.next().await {
        let line = line?;
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match event["type"].as_str() {
            Some("ERROR") => bail!(
                "{}",
                event["object"]["message"]
                    .as_str()
                    .unwrap_or("watch failed")
            ),
            Some("BOOKMARK") | None => continue,
            _ => {}
        }
        let table = &event["object"];
        if let Some(defs) = table["columnDefinitions"]
            .as_array()
            .filter(|d| !d.is_empty())
        {
            columns = defs.clone();
        }
        let rows = table["rows"].as_array().cloned().unwrap_or_default();
        for row in table_lines(&columns, &rows, &options) {
            let mut text = String::new();
            for (i, c) in row.iter().enumerate() {
                if widths.len() <= i {
                    widths.push(0);
                }
                widths[i] = widths[i].max(c.chars().count());
                text.push_str(c);
                if i + 1 < row.len() {
                    let width = (widths[i] + 3).max(6);
                    text.extend(std::iter::repeat_n(' ', width - c.chars().count()));
                }
            }
            println!("{text}");
        }
    }
    Ok(())
}

/// Go tabwriter's layout with kubectl's settings (min width 6, padding 3, spaces).
pub fn tabulate(lines: &[Vec<String>]) -> String {
    tabulate_with(lines, 6, 3)
}

/// Go tabwriter's layout: each cell but a line's last padded to the column's widest cell
/// plus `padding`, at least `min_width`.
pub fn tabulate_with(lines: &[Vec<String>], min_width: usize, padding: usize) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for line in lines {
        for (i, c) in line.iter().enumerate() {
            if i + 1 < line.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for line in lines {
        for (i, c) in line.iter().enumerate() {
            out.push_str(c);
            if i + 1 < line.len() {
                let width = (widths[i] + padding).max(min_width);
                out.extend(std::iter::repeat_n(' ', width - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_print_as_kubectl_prints_them() {
        let columns = vec![
            json!({"name": "Name", "type": "string", "priority": 0}),
            json!({"name": "Ready", "type": "string", "priority": 0}),
            json!({"name": "IP", "type": "string", "priority": 1}),
        ];
        let rows = vec![
            json!({"cells": ["web-1", "1/1", "10.244.0.5"], "object": {"metadata": {"namespace": "default", "labels": {"b": "2", "a": "1"}}}}),
            json!({"cells": ["a", "0/1", null], "object": {"metadata": {"namespace": "kube-system"}}}),
        ];
        let plain = TableOptions {
            wide: false,
            namespace_column: false,
            labels: false,
            prefix: None,
            headers: true,
        };
        assert_eq!(
            render_table(&columns, &rows, &plain),
            "NAME    READY\nweb-1   1/1\na       0/1\n"
        );
        let all = TableOptions {
            wide: true,
            namespace_column: true,
            labels: true,
            prefix: Some("pod".into()),
            headers: true,
        };
        assert_eq!(
            render_table(&columns, &rows, &all),
            "NAMESPACE     NAME        READY   IP           LABELS\n\
             default       pod/web-1   1/1     10.244.0.5   a=1,b=2\n\
             kube-system   pod/a       0/1     <none>       <none>\n"
        );
    }

    #[test]
    fn positional_arguments_name_kinds_and_objects() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            requests(&a(&["pods,svc"])).unwrap(),
            vec![("pods".into(), vec![]), ("svc".into(), vec![])]
        );
        assert_eq!(
            requests(&a(&["po", "a", "b"])).unwrap(),
            vec![("po".into(), vec!["a".to_string(), "b".to_string()])]
        );
        assert_eq!(
            requests(&a(&["pod/a", "svc/b", "pod/c"])).unwrap(),
            vec![
                ("pod".into(), vec!["a".to_string(), "c".to_string()]),
                ("svc".into(), vec!["b".to_string()])
            ]
        );
        assert!(requests(&a(&["pods", "pod/a"])).is_err());
        assert!(format_of(Some("toml")).is_err());
    }
}
