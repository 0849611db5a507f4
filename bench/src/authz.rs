//! `authz`: what authorization costs a create. Two apiservers on the embedded store, one with
//! `--authorization-mode AlwaysAllow` and one with the default `Node,RBAC` holding a policy of
//! some size (many users, each bound to a role of its own), take the same stream of ConfigMap
//! creates from a user that is not `system:masters` (so RBAC really decides each one); the
//! difference in apiserver CPU per create is the authorizer's cost.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use crate::harness::{Backend, Server, cpu_seconds_fine};
use crate::{configmap, drive, median, result};

const TOKEN: &str = "bench-token";
const USER: &str = "bench-user";

async fn start(dir: &tempfile::TempDir, mode: &str) -> anyhow::Result<Server> {
    let tokens = dir.path().join(format!("tokens-{mode}.csv"));
    std::fs::write(&tokens, format!("{TOKEN},{USER},1,\"bench-group\"\n"))?;
    Server::start_with(
        Backend::Embedded,
        "127.0.0.1",
        &[
            "--authorization-mode".into(),
            mode.into(),
            "--token-auth-file".into(),
            tokens.display().to_string(),
        ],
    )
    .await
}

/// Writes `others` users' roles and bindings in namespace `bench`, and the bench user's own.
async fn policy(server: &Server, others: usize) -> anyhow::Result<()> {
    let admin = server.client()?;
    let base = &server.base;
    let post = |path: String, body: serde_json::Value| {
        let admin = admin.clone();
        async move {
            admin
                .post(path)
                .json(&body)
                .send()
                .await?
                .error_for_status()
                .map(|_| ())
                .context("writing the bench policy")
        }
    };
    post(
        format!("{base}/api/v1/namespaces"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
    )
    .await?;
    let rbac = format!("{base}/apis/rbac.authorization.k8s.io/v1/namespaces/bench");
    for i in 0..=others {
        let (role, subject) = if i == others {
            ("bench-writer".to_string(), USER.to_string())
        } else {
            (format!("role-{i}"), format!("user-{i}"))
        };
        post(
            format!("{rbac}/roles"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": role},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list"]}]}),
        )
        .await?;
        post(
            format!("{rbac}/rolebindings"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "User", "name": subject}]}),
        )
        .await?;
    }
    Ok(())
}

/// One stream of creates as the bench user; returns apiserver CPU µs per create.
async fn stream(
    server: &Server,
    count: usize,
    clients: usize,
    round: usize,
) -> anyhow::Result<(f64, f64)> {
    let client = server.client_with_token(TOKEN)?;
    let url = Arc::new(format!(
        "{}/api/v1/namespaces/bench/configmaps",
        server.base
    ));
    let pid = server.pid();
    let cpu0 = cpu_seconds_fine(pid);
    let started = Instant::now();
    drive(count, clients, move |i| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(url.as_str())
                .json(&configmap(&format!("r{round}-{i}")))
                .send()
                .await?
                .error_for_status()?;
            Ok(())
        }
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds_fine(pid) - cpu0;
    Ok((cpu * 1e6 / count as f64, count as f64 / secs))
}

/// The decision alone, in process: the RBAC index as the apiserver builds it, asked about the
/// bench user's create (found through its RoleBinding) and about a stranger (nothing found).
fn decisions(others: usize) -> (f64, f64) {
    use skiff_apiserver::auth::{Attributes, Authorizer, UserInfo};
    let rbac = skiff_apiserver::rbac::Rbac::default();
    for i in 0..=others {
        let (role, subject) = if i == others {
            ("bench-writer".to_string(), USER.to_string())
        } else {
            (format!("role-{i}"), format!("user-{i}"))
        };
        rbac.insert(
            "roles",
            &json!({"metadata": {"name": role, "namespace": "bench"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list"]}]}),
        );
        rbac.insert(
            "rolebindings",
            &json!({"metadata": {"name": role, "namespace": "bench"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "User", "name": subject}]}),
        );
    }
    for b in skiff_apiserver::rbac::bootstrap::cluster_roles() {
        rbac.insert("clusterroles", &serde_json::to_value(b).unwrap_or_default());
    }
    for b in skiff_apiserver::rbac::bootstrap::cluster_role_bindings() {
        rbac.insert(
            "clusterrolebindings",
            &serde_json::to_value(b).unwrap_or_default(),
        );
    }
    let attrs = Attributes {
        verb: "create",
        resource_request: true,
        version: "v1",
        resource: "configmaps",
        namespace: Some("bench"),
        path: "/api/v1/namespaces/bench/configmaps",
        ..Default::default()
    };
    let time = |user: &UserInfo, want: bool| {
        let n = 200_000;
        let started = Instant::now();
        for _ in 0..n {
            assert_eq!(rbac.authorize(user, &attrs).allowed(), want);
        }
        started.elapsed().as_secs_f64() * 1e9 / n as f64
    };
    let groups = vec![
        "bench-group".to_string(),
        "system:authenticated".to_string(),
    ];
    let user = UserInfo {
        name: USER.into(),
        groups: groups.clone(),
        ..Default::default()
    };
    let stranger = UserInfo {
        name: "stranger".into(),
        groups,
        ..Default::default()
    };
    (time(&user, true), time(&stranger, false))
}

pub async fn run(count: usize, clients: usize, rounds: usize, others: usize) -> anyhow::Result<()> {
    let (allowed_ns, denied_ns) = decisions(others);
    println!(
        "authz: one RBAC decision in process (the bootstrap policy and {others} other users' roles and \
         bindings): allowed {allowed_ns:.0} ns, denied {denied_ns:.0} ns"
    );
    result("authz_decision_allowed_ns", allowed_ns, "ns");
    result("authz_decision_denied_ns", denied_ns, "ns");
    let dir = tempfile::tempdir()?;
    let allow = start(&dir, "AlwaysAllow").await?;
    let rbac = start(&dir, "Node,RBAC").await?;
    policy(&allow, others).await?;
    policy(&rbac, others).await?;
    // The RBAC index follows the watch cache: wait until the bench user may create.
    let probe = rbac.client_with_token(TOKEN)?;
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = probe
            .get(format!("{}/api/v1/namespaces/bench/configmaps", rbac.base))
            .send()
            .await?;
        if r.status().is_success() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bench user never got its rights"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!(
        "authz: {count} ConfigMap creates per row by a token user (not system:masters), {clients} clients, \
         RBAC holding {others} other users' roles and bindings; embedded store"
    );
    println!(
        "{:<14} {:>10} {:>14}",
        "authorizer", "ops/s", "apisrv µs/op"
    );
    let (mut a_cpu, mut r_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        // Alternate which goes first, so drift in the machine's speed falls on both.
        let order: [(&str, &Server); 2] = if round % 2 == 0 {
            [("AlwaysAllow", &allow), ("Node,RBAC", &rbac)]
        } else {
            [("Node,RBAC", &rbac), ("AlwaysAllow", &allow)]
        };
        for (label, server) in order {
            let (cpu, ops) = stream(server, count, clients, round).await?;
            println!("{label:<14} {ops:>10.0} {cpu:>14.1}");
            if label == "AlwaysAllow" {
                a_cpu.push(cpu);
            } else {
                r_cpu.push(cpu);
            }
        }
    }
    let diffs: Vec<f64> = a_cpu.iter().zip(&r_cpu).map(|(a, r)| r - a).collect();
    let added = median(diffs);
    println!(
        "RBAC adds {added:.1} µs of apiserver CPU per create (median of rounds; target ≤ 3 µs: {})",
        if added <= 3.0 { "met" } else { "not met" }
    );
    result("authz_allow_cpu_us", median(a_cpu), "µs");
    result("authz_rbac_cpu_us", median(r_cpu), "µs");
    result("authz_rbac_added_cpu_us", added, "µs");
    Ok(())
}
