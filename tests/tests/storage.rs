//! The storage limits a user meets through the API: Events expire after `--event-ttl`, and on
//! etcd large objects neither fail the small ones written with them nor break a list.

use std::time::Duration;

use serde_json::json;
use skiff_e2e::fixtures::config_map;
use skiff_e2e::{ApiServer, Backend, wait_until};

skiff_e2e::for_each_backend!(events_expire_after_event_ttl);

/// Long enough for the checks right after the creates, short enough for a test.
const EVENT_TTL: &str = "3s";

fn core_event(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {"kind": "ConfigMap", "namespace": "default", "name": "ttl-target"},
        "reason": "Testing",
        "message": "expires after --event-ttl",
        "type": "Normal",
        "source": {"component": "e2e"},
    })
}

fn events_expire_after_event_ttl(backend: Backend) {
    let server = ApiServer::start_with_args(backend, &["--event-ttl", EVENT_TTL]);
    let http = server.http();
    let core = "/api/v1/namespaces/default/events";
    let cms = "/api/v1/namespaces/default/configmaps";
    for (path, body) in [
        (core, core_event("ttl-core")),
        (cms, config_map("ttl-target").build()),
    ] {
        let reply = http.post_json(path, &body);
        assert_eq!(reply.status, 201, "POST {path}: {}", reply.body);
    }
    // Watch the core Events from now on: the expiry must reach watchers as a DELETED event.
    let rv = http.get(core).json()["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_owned();

    let gone = |path: &str| http.get(path).status == 404;
    let core_one = format!("{core}/ttl-core");
    assert!(
        wait_until(Duration::from_secs(30), || gone(&core_one)),
        "the Event outlived --event-ttl={EVENT_TTL} by far"
    );
    let watch = http.get(&format!(
        "{core}?watch=true&resourceVersion={rv}&timeoutSeconds=1"
    ));
    assert!(
        watch
            .body
            .lines()
            .any(|l| l.contains("\"DELETED\"") && l.contains("ttl-core")),
        "no DELETED watch event for the expired Event: {}",
        watch.body
    );
    // Other kinds do not expire.
    assert_eq!(http.get(&format!("{cms}/ttl-target")).status, 200);
    // An Event's TTL starts at its last write, not its creation: a fresh one is still there.
    let reply = http.post_json(core, &core_event("ttl-fresh"));
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(http.get(&format!("{core}/ttl-fresh")).status, 200);
}

/// etcd limits a request to 1.5 MiB: ten ~900 KiB ConfigMaps created at once with small ones
/// must each succeed (not be batched together over the limit), one over the limit fails alone
/// with Kubernetes' 413, and a list of them all (9 MiB, over gRPC's default 4 MiB) works.
#[test]
fn large_configmaps_on_etcd_succeed_or_fail_alone() {
    let server = ApiServer::start(Backend::Etcd);
    let http = server.http();
    let cms = "/api/v1/namespaces/default/configmaps";
    // Newlines take two bytes in JSON: 1,000,000 of them pass the 1 MiB data limit but make a
    // 2 MB object, over etcd's request limit.
    let too_large = config_map("too-large")
        .data("nl", &"\n".repeat(1_000_000))
        .build();
    let threads: Vec<_> = (0..10)
        .map(|i| (format!("large-{i}"), "x".repeat(900 << 10)))
        .chain((0..20).map(|i| (format!("small-{i:02}"), "s".into())))
        .map(|(name, value)| {
            let http = http.clone();
            std::thread::spawn(move || {
                let body = config_map(&name).data("v", &value).build();
                (name, http.post_json(cms, &body))
            })
        })
        .chain(std::iter::once({
            let http = http.clone();
            std::thread::spawn(move || ("too-large".to_owned(), http.post_json(cms, &too_large)))
        }))
        .collect();
    for thread in threads {
        let (name, reply) = thread.join().expect("create thread");
        if name == "too-large" {
            assert_eq!(reply.status, 413, "{}", reply.body);
            let status = reply.json();
            assert_eq!(status["reason"], "RequestEntityTooLarge", "{status}");
            assert_eq!(status["message"], "etcdserver: request is too large");
        } else {
            assert_eq!(reply.status, 201, "{name}: {}", reply.body);
        }
    }
    let list = http.get(cms);
    assert_eq!(
        list.status,
        200,
        "{}",
        &list.body[..list.body.len().min(500)]
    );
    let items = list.json()["items"].as_array().expect("items").len();
    assert_eq!(items, 30);
    let page = http.get(&format!("{cms}?limit=4"));
    assert_eq!(page.status, 200);
    assert_eq!(page.json()["items"].as_array().map(Vec::len), Some(4));
}
