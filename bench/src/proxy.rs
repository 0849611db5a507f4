//! `proxy`: the proxy's ruleset for N Services with 3 endpoints each, rendered and applied
//! with one `iptables-restore` into a network namespace the bench creates (`skb-node`, removed
//! afterwards), and then one endpoint change rendered and applied as a partial sync (only the
//! chains that changed). No traffic is sent.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_proxy::iptables::Iptables;
use skiff_proxy::rules::{Protocol, Renderer, ServicePort, Settings, partial};

use crate::result;

const NS: &str = "skb-node";

fn services(n: usize) -> Vec<ServicePort> {
    (0..n)
        .map(|i| ServicePort {
            namespace: "bench".into(),
            name: format!("svc-{i:05}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Some(Ipv4Addr::from(0x0a60_0000u32 + 10 + i as u32)),
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_seconds: None,
            endpoints: (0..3)
                .map(|e| {
                    (
                        Ipv4Addr::from(0x0af4_0000u32 + (i as u32) * 4 + e + 1),
                        8080,
                    )
                })
                .collect(),
        })
        .collect()
}

fn rules_in_netns() -> usize {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{NS}"))
        .args(["iptables-save", "-t", "nat"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("-A "))
                .count()
        })
        .unwrap_or(0)
}

pub async fn run(counts: &[usize]) -> anyhow::Result<()> {
    let _ = Command::new("ip").args(["netns", "del", NS]).output();
    let added = Command::new("ip").args(["netns", "add", NS]).output()?;
    anyhow::ensure!(
        added.status.success(),
        "ip netns add {NS}: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let ipt = Iptables::in_netns(Path::new(&format!("/run/netns/{NS}")));
    let settings = Settings {
        cluster_cidr: Some("10.244.0.0/16".parse()?),
        // As on a real node: the endpoints (10.244.x.y) are elsewhere, so no hairpin rules.
        local_pod_cidr: Some("10.245.255.0/24".parse()?),
    };
    println!(
        "proxy: ruleset for N Services x 3 endpoints, applied with one iptables-restore in netns {NS}"
    );
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>14} {:>14}",
        "services", "rules", "render ms", "apply ms", "change render", "change apply"
    );
    let outcome = (|| -> anyhow::Result<()> {
        for &n in counts {
            ipt.cleanup()?;
            let mut ports = services(n);
            let mut renderer = Renderer::new(settings.clone());
            let t = Instant::now();
            let full = renderer.render(&ports, &BTreeSet::new());
            let render_full = t.elapsed();
            let t = Instant::now();
            ipt.apply(&full)?;
            let apply_full = t.elapsed();
            let rules = rules_in_netns();
            // One endpoint of one Service changes.
            ports[n / 2].endpoints[1].0 = Ipv4Addr::new(10, 245, 0, 1);
            let t = Instant::now();
            let changed = renderer.render(&ports, &full.service_chains());
            let input = partial(&full, &changed);
            let render_change = t.elapsed();
            let t = Instant::now();
            ipt.restore(&input)?;
            let apply_change = t.elapsed();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{n:>8} {rules:>10} {:>12.1} {:>12.1} {:>14.1} {:>14.1}",
                ms(render_full),
                ms(apply_full),
                ms(render_change),
                ms(apply_change)
            );
            result(
                &format!("proxy_full_sync_{n}"),
                ms(render_full + apply_full),
                "ms",
            );
            result(
                &format!("proxy_one_change_{n}"),
                ms(render_change + apply_change),
                "ms",
            );
        }
        Ok(())
    })();
    let _ = ipt.cleanup();
    let _ = Command::new("ip").args(["netns", "del", NS]).output();
    outcome
}
