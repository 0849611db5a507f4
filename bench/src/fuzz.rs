//! `skiff-bench fuzz`: the apiserver under a long fuzz run (the e2e suite's fuzzer, many more
//! requests): mutated requests for every resource and verb must get no 5xx and no dropped
//! connection, the server must stay ready and not panic, what was stored must still list and
//! print, and the namespace the fuzzer may not write must be unchanged. Prints the status counts and `result` lines; fails otherwise.

use std::net::SocketAddr;

use anyhow::Context;
use skiff_e2e::fuzz::{self, Config, Fuzzer, Target};

use crate::harness::{Backend, Server};
use crate::result;

pub async fn run(config: Config, etcd: bool) -> anyhow::Result<()> {
    let etcd = if etcd {
        Some(tokio::task::spawn_blocking(skiff_store::testing::TestEtcd::start).await?)
    } else {
        None
    };
    let backend = match &etcd {
        Some(e) => Backend::Etcd(e.endpoint.clone()),
        None => Backend::Embedded,
    };
    let tokens = tempfile::NamedTempFile::new()?;
    std::fs::write(tokens.path(), fuzz::token_file_line())?;
    let server = Server::start_with(
        backend,
        "127.0.0.1",
        &[
            "--token-auth-file".into(),
            tokens.path().display().to_string(),
        ],
    )
    .await?;
    let addr: SocketAddr = server
        .base
        .trim_start_matches("https://")
        .parse()
        .context("the apiserver's address")?;
    let pki = server.pki_dir();
    // The fuzzer is blocking (one thread per connection): keep it off the runtime's threads.
    let (report, ready, unreadable, changes) = tokio::task::spawn_blocking(move || {
        let fuzzer = Fuzzer::prepare(Target::from_pki_dir(addr, &pki));
        println!(
            "fuzzing {} resources and subresources with {} requests (seed {}, {} connections)",
            fuzzer.resources().len(),
            config.requests,
            config.seed,
            config.workers
        );
        let report = fuzzer.run(config);
        let unreadable = fuzzer.unreadable_lists();
        (report, fuzzer.ready(), unreadable, fuzzer.guarded_changes())
    })
    .await?;
    println!("{}", report.summary());
    result(
        "fuzz_requests_per_s",
        report.sent as f64 / report.elapsed.as_secs_f64(),
        "req/s",
    );
    result("fuzz_failures", report.failures as f64, "requests");
    let log = server.log();
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    anyhow::ensure!(
        report.failures == 0,
        "{} failures; the first:\n{}",
        report.failures,
        report.described.join("\n")
    );
    anyhow::ensure!(ready, "the apiserver no longer answers /readyz");
    anyhow::ensure!(
        panics == 0,
        "the apiserver panicked {panics} times; its log:\n{log}"
    );
    anyhow::ensure!(
        unreadable.is_empty(),
        "after the run, lists fail:\n{}",
        unreadable.join("\n")
    );
    anyhow::ensure!(
        changes.is_empty(),
        "the fuzzer changed namespace {}:\n{}",
        fuzz::GUARDED_NAMESPACE,
        changes.join("\n")
    );
    println!(
        "no 5xx, no dropped requests, /readyz answers, every list reads and prints, \
         namespace guarded unchanged"
    );
    Ok(())
}
