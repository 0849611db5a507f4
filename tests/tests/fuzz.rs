//! The apiserver under a bounded fuzz run: mutated requests for every served resource and verb
//! (JSON, YAML and protobuf bodies, odd headers and paths, lying framing, anonymous and
//! impersonating callers) get no 5xx and no dropped connection, the server stays ready, what
//! was stored can still be listed and printed, and a namespace the fuzzer may not write is
//! unchanged. `skiff-bench fuzz` runs the same fuzzer
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
    let unreadable = fuzzer.unreadable_lists();
    assert!(
        unreadable.is_empty(),
        "after the run, lists fail:\n{}",
        unreadable.join("\n")
    );
    let changes = fuzzer.guarded_changes();
    assert!(
        changes.is_empty(),
        "the fuzzer changed namespace {}:\n{}",
        fuzz::GUARDED_NAMESPACE,
        changes.join("\n")
    );
}

/// Found by the fuzzer: a JSON patch whose operation targets the root (`"path": ""`) replaced
/// the object with a string, and the update that followed failed with a 500.
#[test]
fn a_json_patch_replacing_the_whole_object_with_a_string_is_invalid_not_a_500() {
    let server = ApiServer::start(Backend::Embedded);
    let http = server.http();
    let created = http.post_json(
        "/api/v1/namespaces/default/configmaps",
        &serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "patched"}, "data": {"k": "v"}}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let reply = http.send(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/patched",
        Some("application/json-patch+json"),
        br#"[{"op": "add", "path": "", "value": "a string"}]"#.to_vec(),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "Invalid");
    assert_eq!(
        http.get("/api/v1/namespaces/default/configmaps/patched")
            .json()["data"]["k"],
        "v"
    );
}
