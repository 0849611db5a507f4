//! `skiffctl describe`: an object's details in kubectl's layout (`Key:  value` lines, indented
//! sections) and the Events about it.

use anyhow::bail;
use serde_json::Value;

use super::Session;
use super::resources;
use super::write::targets;

/// Lines of `Key:  value`, the values of one block aligned as kubectl aligns them.
#[derive(Default)]
struct Out {
    text: String,
    block: Vec<(usize, String, String)>,
}

impl Out {
    fn kv(&mut self, indent: usize, key: &str, value: impl Into<String>) {
        // An empty key continues the value above (another label, another toleration).
        let key = if key.is_empty() {
            String::new()
        } else {
            format!("{key}:")
        };
        self.block.push((indent, key, value.into()));
    }

    /// A line of its own inside a block (a command's words).
    fn raw(&mut self, indent: usize, text: &str) {
        self.block.push((indent, text.to_string(), String::new()));
    }

    /// Writes the block as Go's tabwriter does for kubectl: consecutive `key:\tvalue` lines
    /// share one column (widest key + 2); a line without a value ends the run.
    fn flush(&mut self) {
        let block: Vec<(usize, String, String)> = self.block.drain(..).collect();
        let mut i = 0;
        while i < block.len() {
            if block[i].2.is_empty() {
                let (indent, k, _) = &block[i];
                self.text.push_str(&format!("{}{k}\n", " ".repeat(*indent)));
                i += 1;
                continue;
            }
            let end = (i..block.len())
                .find(|j| block[*j].2.is_empty())
                .unwrap_or(block.len());
            let width = block[i..end]
                .iter()
                .map(|(ind, k, _)| ind + k.len())
                .max()
                .unwrap_or(0);
            for (indent, k, v) in &block[i..end] {
                let gap = width + 2 - indent - k.len();
                self.text.push_str(&format!(
                    "{}{k}{}{v}\n",
                    " ".repeat(*indent),
                    " ".repeat(gap)
                ));
            }
            i = end;
        }
    }

    fn line(&mut self, s: &str) {
        self.flush();
        self.text.push_str(s);
        self.text.push('\n');
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn map_lines(out: &mut Out, key: &str, m: &Value) {
    let entries: Vec<(String, String)> = m
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default();
    if entries.is_empty() {
        out.kv(0, key, "<none>");
        return;
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        out.kv(0, if i == 0 { key } else { "" }, format!("{k}={v}"));
    }
}

fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now().duration_since(t).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn containers(out: &mut Out, heading: &str, list: &Value, statuses: &Value) {
    let Some(cs) = list.as_array().filter(|c| !c.is_empty()) else {
        return;
    };
    out.kv(0, heading, "");
    for c in cs {
        let name = s(&c["name"]);
        out.kv(2, &name, "");
        let st = statuses
            .as_array()
            .and_then(|all| all.iter().find(|x| x["name"] == c["name"]))
            .cloned()
            .unwrap_or(Value::Null);
        if !st.is_null() {
            out.kv(4, "Container ID", s(&st["containerID"]));
        }
        out.kv(4, "Image", s(&c["image"]));
        let ports: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}/{}",
                    s(&p["containerPort"]),
                    p["protocol"].as_str().unwrap_or("TCP")
                )
            })
            .collect();
        out.kv(4, "Port", or_none(ports.join(", ")));
        for (key, field) in [("Command", "command"), ("Args", "args")] {
            if let Some(words) = c[field].as_array() {
                out.kv(4, key, "");
                for w in words {
                    out.raw(6, &s(w));
                }
            }
        }
        if !st.is_null() {
            let state = st["state"].as_object().and_then(|m| m.iter().next());
            if let Some((k, v)) = state {
                let mut word = k.clone();
                word[..1].make_ascii_uppercase();
                out.kv(4, "State", word);
                if !v["reason"].is_null() {
                    out.kv(6, "Reason", s(&v["reason"]));
                }
                if !v["exitCode"].is_null() {
                    out.kv(6, "Exit Code", s(&v["exitCode"]));
                }
                if !v["startedAt"].is_null() {
                    out.kv(6, "Started", s(&v["startedAt"]));
                }
            }
            out.kv(
                4,
                "Ready",
                if st["ready"] == true { "True" } else { "False" },
            );
            out.kv(4, "Restart Count", s(&st["restartCount"]));
        }
        let env: Vec<String> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{}:  {}", s(&e["name"]), or_none(s(&e["value"]))))
            .collect();
        if env.is_empty() {
            out.kv(4, "Environment", "<none>");
        } else {
            out.kv(4, "Environment", "");
            for e in env {
                out.raw(6, &e);
            }
        }
        let mounts: Vec<String> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| format!("{} from {}", s(&m["mountPath"]), s(&m["name"])))
            .collect();
        out.kv(4, "Mounts", or_none(mounts.join(", ")));
    }
}

fn conditions(out: &mut Out, conds: &Value) {
    let Some(cs) = conds.as_array().filter(|c| !c.is_empty()) else {
        return;
    };
    out.line("Conditions:");
    let mut lines = vec![vec!["  Type".to_string(), "Status".into(), "Reason".into()]];
    lines.push(vec!["  ----".to_string(), "------".into(), "------".into()]);
    for c in cs {
        lines.push(vec![
            format!("  {}", s(&c["type"])),
            s(&c["status"]),
            or_none(s(&c["reason"])),
        ]);
    }
    out.text.push_str(&super::get::tabulate_with(&lines, 0, 2));
}

async fn events(s_: &Session, out: &mut Out, obj: &Value) -> anyhow::Result<()> {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let uid = s(&obj["metadata"]["uid"]);
    let name = s(&obj["metadata"]["name"]);
    let selector = form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "fieldSelector",
            &format!("involvedObject.name={name},involvedObject.uid={uid}"),
        )
        .finish();
    let list = s_
        .get_json(
            &format!("/api/v1/namespaces/{ns}/events?{selector}"),
            "application/json",
        )
        .await?;
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|e| s(&e["lastTimestamp"]));
    out.flush();
    if items.is_empty() {
        out.text.push_str("Events:  <none>\n");
        return Ok(());
    }
    out.text.push_str("Events:\n");
    let mut lines = vec![
        vec![
            "  Type".to_string(),
            "Reason".into(),
            "Age".into(),
            "From".into(),
            "Message".into(),
        ],
        vec![
            "  ----".to_string(),
            "------".into(),
            "----".into(),
            "----".into(),
            "-------".into(),
        ],
    ];
    for e in items {
        let when = [&e["lastTimestamp"], &e["eventTime"], &e["firstTimestamp"]]
            .iter()
            .map(|v| s(v))
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        let count = e["count"].as_i64().unwrap_or(1);
        let age = if count > 1 {
            format!(
                "{} (x{count} over {})",
                age(&when),
                age(&s(&e["firstTimestamp"]))
            )
        } else {
            age(&when)
        };
        let from = [&e["source"]["component"], &e["reportingComponent"]]
            .iter()
            .map(|v| s(v))
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        lines.push(vec![
            format!("  {}", s(&e["type"])),
            s(&e["reason"]),
            age,
            from,
            s(&e["message"]),
        ]);
    }
    out.text.push_str(&super::get::tabulate_with(&lines, 0, 2));
    Ok(())
}

fn describe_one(out: &mut Out, kind: &str, o: &Value) {
    let m = &o["metadata"];
    out.kv(0, "Name", s(&m["name"]));
    if !m["namespace"].is_null() {
        out.kv(0, "Namespace", s(&m["namespace"]));
    }
    let spec = &o["spec"];
    let st = &o["status"];
    match kind {
        "Pod" => {
            out.kv(
                0,
                "Priority",
                or_none(s(&spec["priority"])).replace("<none>", "0"),
            );
            out.kv(
                0,
                "Service Account",
                or_none(s(&spec["serviceAccountName"])),
            );
            let node = s(&spec["nodeName"]);
            out.kv(
                0,
                "Node",
                if node.is_empty() {
                    "<none>".into()
                } else {
                    format!("{node}/{}", s(&st["hostIP"]))
                },
            );
            out.kv(0, "Start Time", or_none(s(&st["startTime"])));
            map_lines(out, "Labels", &m["labels"]);
            map_lines(out, "Annotations", &m["annotations"]);
            out.kv(
                0,
                "Status",
                if m["deletionTimestamp"].is_null() {
                    s(&st["phase"])
                } else {
                    "Terminating".into()
                },
            );
            out.kv(0, "IP", s(&st["podIP"]));
            containers(
                out,
                "Init Containers",
                &spec["initContainers"],
                &st["initContainerStatuses"],
            );
            containers(
                out,
                "Containers",
                &spec["containers"],
                &st["containerStatuses"],
            );
            conditions(out, &st["conditions"]);
            out.kv(0, "QoS Class", or_none(s(&st["qosClass"])));
            let sel = spec["nodeSelector"].as_object().map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", s(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            out.kv(0, "Node-Selectors", or_none(sel.unwrap_or_default()));
            let tol: Vec<String> = spec["tolerations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let mut x = s(&t["key"]);
                    if !t["effect"].is_null() {
                        x.push_str(&format!(":{}", s(&t["effect"])));
                    }
                    if !t["tolerationSeconds"].is_null() {
                        x.push_str(&format!(" op=Exists for {}s", s(&t["tolerationSeconds"])));
                    }
                    x
                })
                .collect();
            for (i, t) in tol.iter().enumerate() {
                out.kv(0, if i == 0 { "Tolerations" } else { "" }, t.clone());
            }
        }
        "Deployment" | "ReplicaSet" | "ReplicationController" | "StatefulSet" => {
            out.kv(0, "CreationTimestamp", s(&m["creationTimestamp"]));
            map_lines(out, "Labels", &m["labels"]);
            map_lines(out, "Annotations", &m["annotations"]);
            let selector = spec["selector"]["matchLabels"]
                .as_object()
                .or_else(|| spec["selector"].as_object())
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}={}", s(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            out.kv(0, "Selector", selector);
            if kind == "Deployment" {
                out.kv(
                    0,
                    "Replicas",
                    format!(
                        "{} desired | {} updated | {} total | {} available | {} unavailable",
                        spec["replicas"].as_i64().unwrap_or(1),
                        st["updatedReplicas"].as_i64().unwrap_or(0),
                        st["replicas"].as_i64().unwrap_or(0),
                        st["availableReplicas"].as_i64().unwrap_or(0),
                        st["unavailableReplicas"].as_i64().unwrap_or(0)
                    ),
                );
                out.kv(0, "StrategyType", s(&spec["strategy"]["type"]));
                out.kv(
                    0,
                    "MinReadySeconds",
                    spec["minReadySeconds"].as_i64().unwrap_or(0).to_string(),
                );
                if spec["strategy"]["type"] == "RollingUpdate" {
                    out.kv(
                        0,
                        "RollingUpdateStrategy",
                        format!(
                            "{} max unavailable, {} max surge",
                            s(&spec["strategy"]["rollingUpdate"]["maxUnavailable"]),
                            s(&spec["strategy"]["rollingUpdate"]["maxSurge"])
                        ),
                    );
                }
            } else {
                out.kv(
                    0,
                    "Replicas",
                    format!(
                        "{} current / {} desired",
                        st["replicas"].as_i64().unwrap_or(0),
                        spec["replicas"].as_i64().unwrap_or(1)
                    ),
                );
                out.kv(
                    0,
                    "Pods Status",
                    format!(
                        "{} Running / {} Waiting / 0 Succeeded / 0 Failed",
                        st["readyReplicas"].as_i64().unwrap_or(0),
                        st["replicas"].as_i64().unwrap_or(0)
                            - st["readyReplicas"].as_i64().unwrap_or(0)
                    ),
                );
            }
            out.kv(0, "Pod Template", "");
            let tm = &spec["template"]["metadata"];
            let labels = tm["labels"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}={}", s(v)))
                        .collect::<Vec<_>>()
                        .join("\n           ")
                })
                .unwrap_or_default();
            out.kv(2, "Labels", or_none(labels));
            out.flush();
            let mut inner = Out::default();
            containers(
                &mut inner,
                "Containers",
                &spec["template"]["spec"]["containers"],
                &Value::Null,
            );
            inner.flush();
            for l in inner.text.lines() {
                out.text.push_str(&format!("  {l}\n"));
            }
            conditions(out, &st["conditions"]);
        }
        "Service" => {
            map_lines(out, "Labels", &m["labels"]);
            map_lines(out, "Annotations", &m["annotations"]);
            let sel = spec["selector"].as_object().map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", s(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            out.kv(0, "Selector", or_none(sel.unwrap_or_default()));
            out.kv(0, "Type", s(&spec["type"]));
            out.kv(0, "IP Family Policy", or_none(s(&spec["ipFamilyPolicy"])));
            out.kv(0, "IP", s(&spec["clusterIP"]));
            for p in spec["ports"].as_array().into_iter().flatten() {
                let name = or_none(s(&p["name"])).replace("<none>", "<unset>");
                out.kv(
                    0,
                    "Port",
                    format!("{name}  {}/{}", s(&p["port"]), s(&p["protocol"])),
                );
                out.kv(
                    0,
                    "TargetPort",
                    format!("{}/{}", s(&p["targetPort"]), s(&p["protocol"])),
                );
                if !p["nodePort"].is_null() {
                    out.kv(
                        0,
                        "NodePort",
                        format!("{name}  {}/{}", s(&p["nodePort"]), s(&p["protocol"])),
                    );
                }
            }
            let ingress: Vec<String> = st["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| s(&i["ip"]))
                .collect();
            if !ingress.is_empty() {
                out.kv(0, "LoadBalancer Ingress", ingress.join(", "));
            }
            out.kv(0, "Session Affinity", s(&spec["sessionAffinity"]));
        }
        "Node" => {
            map_lines(out, "Labels", &m["labels"]);
            map_lines(out, "Annotations", &m["annotations"]);
            out.kv(0, "CreationTimestamp", s(&m["creationTimestamp"]));
            let taints: Vec<String> = spec["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    format!(
                        "{}{}:{}",
                        s(&t["key"]),
                        if t["value"].is_null() {
                            String::new()
                        } else {
                            format!("={}", s(&t["value"]))
                        },
                        s(&t["effect"])
                    )
                })
                .collect();
            out.kv(0, "Taints", or_none(taints.join(", ")));
            out.kv(
                0,
                "Unschedulable",
                if spec["unschedulable"] == true {
                    "true"
                } else {
                    "false"
                },
            );
            conditions(out, &st["conditions"]);
            out.kv(0, "Addresses", "");
            for a in st["addresses"].as_array().into_iter().flatten() {
                out.kv(2, &s(&a["type"]), s(&a["address"]));
            }
            for (key, field) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
                out.kv(0, key, "");
                for (k, v) in st[field].as_object().into_iter().flatten() {
                    out.kv(2, k, s(v));
                }
            }
            out.kv(0, "System Info", "");
            for (k, label) in [
                ("kernelVersion", "Kernel Version"),
                ("osImage", "OS Image"),
                ("operatingSystem", "Operating System"),
                ("architecture", "Architecture"),
                ("containerRuntimeVersion", "Container Runtime Version"),
                ("kubeletVersion", "Kubelet Version"),
            ] {
                out.kv(2, label, s(&st["nodeInfo"][k]));
            }
            out.kv(0, "PodCIDR", or_none(s(&spec["podCIDR"])));
        }
        "Namespace" => {
            map_lines(out, "Labels", &m["labels"]);
            map_lines(out, "Annotations", &m["annotations"]);
            out.kv(0, "Status", s(&st["phase"]));
        }
        "HorizontalPodAutoscaler" => {
            map_lines(out, "Labels", &m["labels"]);
            map_lines(out, "Annotations", &m["annotations"]);
            out.kv(0, "CreationTimestamp", s(&m["creationTimestamp"]));
            let r = &spec["scaleTargetRef"];
            out.kv(
                0,
                "Reference",
                format!("{}/{}", s(&r["kind"]), s(&r["name"])),
            );
            out.kv(0, "Min replicas", or_none(s(&spec["minReplicas"])));
            out.kv(0, "Max replicas", s(&spec["maxReplicas"]));
            out.kv(
                0,
                "Deployment pods",
                format!(
                    "{} current / {} desired",
                    st["currentReplicas"].as_i64().unwrap_or(0),
                    st["desiredReplicas"].as_i64().unwrap_or(0)
                ),
            );
            conditions(out, &st["conditions"]);
        }
        _ => {
            map_lines(out, "Labels", &m["labels"]);
            map_lines(out, "Annotations", &m["annotations"]);
            out.flush();
            out.text.push_str(
                &serde_yaml::to_string(&serde_json::json!({ "spec": spec, "status": st }))
                    .unwrap_or_default(),
            );
        }
    }
}

pub async fn run(sess: &Session, words: &[String]) -> anyhow::Result<()> {
    let all = resources::discover(sess).await?;
    let listed;
    let ts = if words.len() == 1 && !words[0].contains('/') {
        // `describe pods`: every object of the type.
        let r = resources::resolve(&all, &words[0])?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no such type"))?;
        let list = sess
            .get_json(&r.path(Some(&sess.namespace)), "application/json")
            .await?;
        listed = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| s(&i["metadata"]["name"]))
            .collect::<Vec<_>>();
        if listed.is_empty() {
            eprintln!("No resources found in {} namespace.", sess.namespace);
            return Ok(());
        }
        let mut w = vec![words[0].clone()];
        w.extend(listed.iter().cloned());
        targets(&all, &w, &sess.namespace)?
    } else {
        targets(&all, words, &sess.namespace)?
    };
    if ts.is_empty() {
        bail!("You must specify the type of resource to describe.");
    }
    let mut first = true;
    for t in ts {
        let obj = sess
            .get_json(
                &format!("{}/{}", t.resource.path(t.namespace.as_deref()), t.name),
                "application/json",
            )
            .await?;
        let mut out = Out::default();
        describe_one(&mut out, &t.resource.kind, &obj);
        events(sess, &mut out, &obj).await?;
        if !first {
            println!("\n");
        }
        first = false;
        print!("{}", out.text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_of_a_block_line_up() {
        let mut out = Out::default();
        out.kv(0, "Name", "web");
        out.kv(0, "Service Account", "default");
        out.kv(0, "Containers", "");
        out.kv(2, "web", "");
        out.flush();
        assert_eq!(
            out.text,
            "Name:             web\nService Account:  default\nContainers:\n  web:\n"
        );
    }

    #[test]
    fn a_pod_shows_its_node_containers_and_conditions() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "9"]}]},
            "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.244.0.5",
                       "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let mut out = Out::default();
        describe_one(&mut out, "Pod", &pod);
        out.flush();
        for want in [
            "Node:",
            "n1/10.0.0.1",
            "Labels:",
            "app=x",
            "State:",
            "Running",
            "Restart Count:",
            "Ready",
            "True",
            "sleep",
        ] {
            assert!(out.text.contains(want), "{want}: {}", out.text);
        }
    }
}
