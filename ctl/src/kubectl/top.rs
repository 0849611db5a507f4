//! `top nodes|pods`: usage from the resource metrics API (`metrics.k8s.io`), printed as
//! kubectl prints it: CPU in millicores rounded up, memory in whole MiB, node percentages of
//! allocatable.

use anyhow::bail;
use serde_json::Value;

use skiff_api::Quantity;

use super::Session;
use super::get::tabulate;

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// nodes or pods.
    what: String,
    /// One node or pod.
    name: Option<String>,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector (pods).
    #[arg(long)]
    field_selector: Option<String>,
    /// Sort by `cpu` or `memory`, highest first.
    #[arg(long)]
    sort_by: Option<String>,
    /// Pods: one line per container.
    #[arg(long)]
    containers: bool,
    /// Pods: a total line under the rows.
    #[arg(long)]
    sum: bool,
    #[arg(long)]
    no_headers: bool,
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Nodes: percentages of capacity instead of allocatable.
    #[arg(long)]
    show_capacity: bool,
    /// Accepted for kubectl compatibility; the metrics API answers in JSON.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    use_protocol_buffers: bool,
}

/// A usage or capacity figure (zero when absent or not a quantity). kubectl prints CPU as
/// `MilliValue()` and memory as `Value()`, both rounded up.
fn usage(v: &Value, resource: &str) -> Quantity {
    v[resource]
        .as_str()
        .and_then(|q| Quantity::parse(q).ok())
        .unwrap_or(Quantity::ZERO)
}

fn query(selector: &Option<String>, fields: &Option<String>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(l) = selector {
        q.append_pair("labelSelector", l);
    }
    if let Some(f) = fields {
        q.append_pair("fieldSelector", f);
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn print(mut lines: Vec<Vec<String>>, no_headers: bool) {
    if no_headers {
        lines.remove(0);
    }
    // kubectl ends every row with a tab, so the last column is padded too.
    for l in &mut lines {
        l.push(String::new());
    }
    print!("{}", tabulate(&lines));
}

fn sort(rows: &mut [(Vec<String>, Quantity, Quantity)], by: Option<&str>) {
    match by {
        Some("cpu") => rows.sort_by_key(|r| std::cmp::Reverse(r.1)),
        Some("memory") => rows.sort_by_key(|r| std::cmp::Reverse(r.2)),
        _ => {}
    }
}

/// A duration as Go prints one rounded to the second: `45s`, `2m30s`, `1h0m5s`.
fn go_age(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `top nodes|pods`.
pub async fn run(s: &Session, args: &TopArgs) -> anyhow::Result<()> {
    if let Some(by) = args.sort_by.as_deref()
        && !matches!(by, "cpu" | "memory")
    {
        bail!("--sort-by accepts only cpu or memory");
    }
    match args.what.as_str() {
        "node" | "nodes" | "no" => nodes(s, args).await,
        "pod" | "pods" | "po" => pods(s, args).await,
        other => bail!("unknown command \"{other}\" for \"skiffctl top\": use nodes or pods"),
    }
}

/// The metrics API's answer, or kubectl's message when the API is not there.
async fn metrics(s: &Session, path: &str) -> anyhow::Result<Value> {
    match s.get_json(path, "application/json").await {
        Err(e)
            if e.to_string()
                .contains("the server could not find the requested resource") =>
        {
            bail!("Metrics API not available")
        }
        other => other,
    }
}

async fn nodes(s: &Session, args: &TopArgs) -> anyhow::Result<()> {
    if args.name.is_some() && args.selector.is_some() {
        bail!("only one of NAME or --selector can be provided");
    }
    let base = "/apis/metrics.k8s.io/v1beta1/nodes";
    let (metrics, nodes) = match &args.name {
        Some(n) => (
            vec![metrics(s, &format!("{base}/{n}")).await?],
            vec![
                s.get_json(&format!("/api/v1/nodes/{n}"), "application/json")
                    .await?,
            ],
        ),
        None => {
            let q = query(&args.selector, &None);
            (
                items(&metrics(s, &format!("{base}{q}")).await?),
                items(
                    &s.get_json(&format!("/api/v1/nodes{q}"), "application/json")
                        .await?,
                ),
            )
        }
    };
    if metrics.is_empty() {
        bail!("metrics not available yet");
    }
    let mut rows = Vec::new();
    // Nodes without metrics come last, as kubectl prints them.
    let mut missing = Vec::new();
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let Some(m) = metrics.iter().find(|m| m["metadata"]["name"] == name) else {
            let unknown = "<unknown>".to_string();
            missing.push((
                vec![
                    name.to_string(),
                    unknown.clone(),
                    unknown.clone(),
                    unknown.clone(),
                    unknown,
                ],
                Quantity::ZERO,
                Quantity::ZERO,
            ));
            continue;
        };
        let (cpu, mem) = (usage(&m["usage"], "cpu"), usage(&m["usage"], "memory"));
        let alloc = &node["status"][if args.show_capacity {
            "capacity"
        } else {
            "allocatable"
        }];
        let percent = |used: i128, total: i128| {
            if total > 0 {
                format!("{}%", used * 100 / total)
            } else {
                "<unknown>".into()
            }
        };
        rows.push((
            vec![
                name.to_string(),
                format!("{}m", cpu.milli_value()),
                percent(
                    cpu.milli_value().into(),
                    usage(alloc, "cpu").milli_value().into(),
                ),
                format!("{}Mi", mem.value() / (1 << 20)),
                percent(mem.as_nanos(), usage(alloc, "memory").as_nanos()),
            ],
            cpu,
            mem,
        ));
    }
    sort(&mut rows, args.sort_by.as_deref());
    let mut lines = vec![
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
            .map(String::from)
            .to_vec(),
    ];
    lines.extend(rows.into_iter().chain(missing).map(|r| r.0));
    print(lines, args.no_headers);
    Ok(())
}

async fn pods(s: &Session, args: &TopArgs) -> anyhow::Result<()> {
    if args.name.is_some() && args.selector.is_some() {
        bail!("only one of NAME or selector can be provided");
    }
    let ns_path = |base: &str| {
        if args.all_namespaces {
            base.to_string()
        } else {
            format!("{base}namespaces/{}/", s.namespace)
        }
    };
    let metrics_base = ns_path("/apis/metrics.k8s.io/v1beta1/");
    let list = match &args.name {
        Some(n) => vec![metrics(s, &format!("{metrics_base}pods/{n}")).await?],
        None => {
            let q = query(&args.selector, &args.field_selector);
            items(&metrics(s, &format!("{metrics_base}pods{q}")).await?)
        }
    };
    if list.is_empty() {
        // Pods that exist but have no metrics yet (kubectl looks in the current namespace,
        // also with -A): a pod older than two minutes is named.
        let q = query(&args.selector, &args.field_selector);
        let pods = items(
            &s.get_json(
                &format!("/api/v1/namespaces/{}/pods{q}", s.namespace),
                "application/json",
            )
            .await?,
        );
        let now = jiff::Timestamp::now();
        for p in &pods {
            let created = p["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if let Some(age) = created.map(|c| now.duration_since(c).as_secs())
                && age > 120
            {
                bail!(
                    "Metrics not available for pod {}/{}, age: {}",
                    s.namespace,
                    p["metadata"]["name"].as_str().unwrap_or_default(),
                    go_age(age)
                );
            }
        }
        if !pods.is_empty() {
            bail!("metrics not available yet");
        }
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", s.namespace);
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for m in &list {
        let name = m["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = m["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let containers = m["containers"].as_array().cloned().unwrap_or_default();
        let mut prefix = Vec::new();
        if args.all_namespaces {
            prefix.push(namespace);
        }
        prefix.push(name);
        let line = |extra: Vec<String>, cpu: Quantity, mem: Quantity| {
            let mut l = prefix.clone();
            l.extend(extra);
            l.push(format!("{}m", cpu.milli_value()));
            l.push(format!("{}Mi", mem.value() / (1 << 20)));
            (l, cpu, mem)
        };
        if args.containers {
            let mut containers = containers.clone();
            containers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            for c in &containers {
                let (cpu, mem) = (usage(&c["usage"], "cpu"), usage(&c["usage"], "memory"));
                let cname = c["name"].as_str().unwrap_or_default().to_string();
                rows.push(line(vec![cname], cpu, mem));
            }
        } else {
            let cpu = containers.iter().map(|c| usage(&c["usage"], "cpu")).sum();
            let mem = containers
                .iter()
                .map(|c| usage(&c["usage"], "memory"))
                .sum();
            rows.push(line(Vec::new(), cpu, mem));
        }
    }
    sort(&mut rows, args.sort_by.as_deref());
    let mut header = Vec::new();
    if args.all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend(if args.containers {
        &["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"][..]
    } else {
        &["NAME", "CPU(cores)", "MEMORY(bytes)"][..]
    });
    let blanks = header.len() - 2;
    let mut lines = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    let (cpu, mem): (Quantity, Quantity) = (
        rows.iter().map(|r| r.1).sum(),
        rows.iter().map(|r| r.2).sum(),
    );
    lines.extend(rows.into_iter().map(|r| r.0));
    if args.sum {
        let row = |a: String, b: String| {
            let mut l = vec![String::new(); blanks];
            l.extend([a, b]);
            l
        };
        lines.push(row("________".into(), "________".into()));
        lines.push(row(
            format!("{}m", cpu.milli_value()),
            format!("{}Mi", mem.value() / (1 << 20)),
        ));
    }
    print(lines, args.no_headers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_round_as_kubectl_does() {
        let q = |s: &str| usage(&serde_json::json!({ "cpu": s }), "cpu");
        assert_eq!(q("200345109n").milli_value(), 201);
        assert_eq!(q("250m").milli_value(), 250);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("828Ki").value() / (1 << 20), 0);
        assert_eq!(q("2Gi").value() / (1 << 20), 2048);
        assert_eq!(q("1048577").value(), 1_048_577);
        assert_eq!(q("bad"), Quantity::ZERO);
        assert_eq!(go_age(45), "45s");
        assert_eq!(go_age(150), "2m30s");
        assert_eq!(go_age(3605), "1h0m5s");
    }
}
