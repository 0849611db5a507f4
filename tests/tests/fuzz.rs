//! The apiserver under a bounded fuzz run: mutated requests for every served resource and verb
//! (JSON, YAML and protobuf bodies, odd headers and paths, lying framing, anonymous and
//! impersonating callers) get no 5xx and no dropped connection, the server stays ready, and a
//! namespace the fuzzer may not write is unchanged. `skiff-bench fuzz` runs the same fuzzer
//! longer.

use std::time::Duration;

use skiff_e2e::fuzz::{self, Config, Fuzzer, Target};
use skiff_e2e::{ApiServer, Backend};

/// Fixed, so a failure here is a failure on every run (and `skiff-bench fuzz --seed 21`
/// reproduces it).
const SEED: u64 = 21;
const REQUESTS: usize = 2_000;
/// Well above what 2,000 requests take on 2 busy cores (about 20 s): a run this slow means
/// requests hang.
const BOUND: Duration = Duration::from_secs(120);

#[test]
fn fuzzed_requests_get_no_5xx_and_leave_a_namespace_the_caller_may_not_write_unchanged() {
    let server = ApiServer::start_with_tokens(Backend::Embedded, &fuzz::token_file_line());
    let fuzzer = Fuzzer::prepare(Target::from_pki_dir(
        server.addr(),
        &server.data_dir().join("pki"),
    ));

    let report = fuzzer.run(Config {
        seed: SEED,
        requests: REQUESTS,
        workers: 4,
    });
    eprintln!("{}", report.summary());

    assert!(
        report.failures == 0,
        "{}\nfirst failures:\n{}",
        report.summary(),
        report.described.join("\n")
    );
    assert!(
        report.elapsed < BOUND,
        "{} took longer than {BOUND:?}",
        report.summary()
    );
    assert!(fuzzer.ready(), "the apiserver no longer answers /readyz");
    let log = server.log();
    assert!(!log.contains("panicked"), "the apiserver panicked:\n{log}");
    let changes = fuzzer.guarded_changes();
    assert!(
        changes.is_empty(),
        "the fuzzer changed namespace {}:\n{}",
        fuzz::GUARDED_NAMESPACE,
        changes.join("\n")
    );
}
