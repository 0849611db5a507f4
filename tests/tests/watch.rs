//! Watch over plain HTTPS, event by event, as informers (client-go's, kube-rs's) rely on it.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_e2e::fixtures::config_map;
use skiff_e2e::{ApiServer, Backend, Http};

skiff_e2e::for_each_backend!(
    watch_from_a_resource_version_replays_what_followed,
    watch_without_a_resource_version_starts_with_the_current_state,
    watch_with_a_selector_sees_objects_leave_and_enter,
    watch_from_a_compacted_revision_gets_410_gone,
    idle_watch_with_bookmarks_gets_a_bookmark_at_the_latest_version,
    concurrent_creates_are_each_seen_once_by_watchers_and_lists,
    watchers_resuming_after_each_timeout_miss_no_create,
);

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const WAIT: Duration = Duration::from_secs(20);

fn create(http: &Http, object: Value) -> Value {
    let reply = http.post_json(CONFIGMAPS, &object);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()
}

fn merge_patch(http: &Http, name: &str, patch: Value) -> Value {
    let reply = http.send(
        "PATCH",
        &format!("{CONFIGMAPS}/{name}"),
        Some("application/merge-patch+json"),
        patch.to_string().into_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn resource_version(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_else(|| panic!("no numeric resourceVersion in {object:#}"))
}

/// `(type, name)` of a watch event, after checking the event is well formed.
fn summary(event: &Value) -> (String, String) {
    let object = &event["object"];
    assert_eq!(
        object["kind"], "ConfigMap",
        "watch events carry kind: {event:#}"
    );
    assert_eq!(
        object["apiVersion"], "v1",
        "watch events carry apiVersion: {event:#}"
    );
    (
        event["type"].as_str().unwrap_or_default().to_owned(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn watch_from_a_resource_version_replays_what_followed(backend: Backend) {
    let server = ApiServer::start(backend);
    let http = server.http();
    let a = create(&http, config_map("a").label("e2e", "watch").build());
    let start = resource_version(&a);

    // Changes made before the watch opens are replayed from `start`...
    create(&http, config_map("b").label("e2e", "watch").build());
    create(&http, config_map("unlabelled").build());
    merge_patch(&http, "a", json!({"data": {"x": "1"}}));
    let deleted = http.delete(&format!("{CONFIGMAPS}/b"));
    assert_eq!(deleted.status, 200, "{}", deleted.body);

    let mut watch = http.watch(&format!(
        "{CONFIGMAPS}?watch=1&resourceVersion={start}&labelSelector=e2e%3Dwatch&timeoutSeconds=60"
    ));
    let mut last = start;
    let mut next = |expected: (&str, &str)| {
        let event = watch.expect_next(WAIT);
        assert_eq!(
            summary(&event),
            (expected.0.to_owned(), expected.1.to_owned()),
            "{event:#}"
        );
        let rv = resource_version(&event["object"]);
        assert!(rv > last, "resourceVersions must grow: {rv} after {last}");
        last = rv;
        event
    };
    next(("ADDED", "b"));
    let modified = next(("MODIFIED", "a"));
    assert_eq!(modified["object"]["data"]["x"], "1");
    next(("DELETED", "b"));

    // ...and what happens after it opened arrives live.
    create(&http, config_map("c").label("e2e", "watch").build());
    next(("ADDED", "c"));
}

fn watch_without_a_resource_version_starts_with_the_current_state(backend: Backend) {
    let server = ApiServer::start(backend);
    let http = server.http();
    create(&http, config_map("a").label("e2e", "watch").build());
    create(&http, config_map("b").label("e2e", "watch").build());

    let mut watch = http.watch(&format!(
        "{CONFIGMAPS}?watch=1&labelSelector=e2e%3Dwatch&timeoutSeconds=60"
    ));
    let mut initial = vec![
        summary(&watch.expect_next(WAIT)),
        summary(&watch.expect_next(WAIT)),
    ];
    initial.sort();
    assert_eq!(
        initial,
        [
            ("ADDED".to_owned(), "a".to_owned()),
            ("ADDED".to_owned(), "b".to_owned())
        ]
    );

    create(&http, config_map("c").label("e2e", "watch").build());
    assert_eq!(
        summary(&watch.expect_next(WAIT)),
        ("ADDED".to_owned(), "c".to_owned())
    );
}

fn watch_with_a_selector_sees_objects_leave_and_enter(backend: Backend) {
    let server = ApiServer::start(backend);
    let http = server.http();
    create(&http, config_map("a").label("tier", "web").build());
    create(&http, config_map("b").label("tier", "web").build());
    let list = http.get(&format!("{CONFIGMAPS}?labelSelector=tier%3Dweb"));
    let start = list.json()["metadata"]["resourceVersion"]
        .as_str()
        .expect("a list has a resourceVersion")
        .to_owned();

    let mut by_label = http.watch(&format!(
        "{CONFIGMAPS}?watch=1&resourceVersion={start}&labelSelector=tier%3Dweb&timeoutSeconds=60"
    ));
    let mut by_name = http.watch(&format!(
        "{CONFIGMAPS}?watch=1&resourceVersion={start}&fieldSelector=metadata.name%3Da&timeoutSeconds=60"
    ));

    // `a` stops matching tier=web: to that watch it is gone.
    merge_patch(&http, "a", json!({"metadata": {"labels": {"tier": "db"}}}));
    let left = by_label.expect_next(WAIT);
    assert_eq!(
        summary(&left),
        ("DELETED".to_owned(), "a".to_owned()),
        "{left:#}"
    );
    // A change to `b` only reaches the label watch.
    merge_patch(&http, "b", json!({"data": {"k": "v"}}));
    assert_eq!(
        summary(&by_label.expect_next(WAIT)),
        ("MODIFIED".to_owned(), "b".to_owned())
    );
    // `a` matches again: to the label watch it is new.
    merge_patch(&http, "a", json!({"metadata": {"labels": {"tier": "web"}}}));
    assert_eq!(
        summary(&by_label.expect_next(WAIT)),
        ("ADDED".to_owned(), "a".to_owned())
    );

    // The single-object watch saw both changes to `a` as modifications, and nothing of `b`.
    assert_eq!(
        summary(&by_name.expect_next(WAIT)),
        ("MODIFIED".to_owned(), "a".to_owned())
    );
    let second = by_name.expect_next(WAIT);
    assert_eq!(
        summary(&second),
        ("MODIFIED".to_owned(), "a".to_owned()),
        "{second:#}"
    );
    assert_eq!(second["object"]["metadata"]["labels"]["tier"], "web");
}

/// A client resuming from a revision the store has compacted away (here: after an apiserver
/// restart emptied the watch cache's history) gets the ERROR event with a 410 `Status` that
/// tells informers to relist.
fn watch_from_a_compacted_revision_gets_410_gone(backend: Backend) {
    let mut server = ApiServer::start_with_args(backend, &["--etcd-compaction-interval", "1s"]);
    let old = resource_version(&create(&server.http(), config_map("before").build()));
    create(&server.http(), config_map("after").build());
    server.restart();
    let http = server.http();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let gone = loop {
        create(
            &http,
            config_map(&format!("tick-{}", rand_suffix())).build(),
        );
        let mut events = http.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={old}"));
        match events.next(Duration::from_secs(2)) {
            Some(first) if first["type"] == "ERROR" => break first,
            // Not compacted yet: the store still replays what followed.
            Some(first) => assert_eq!(first["type"], "ADDED", "{first:#}"),
            None => panic!("a watch from {old} sent nothing"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no 410 within 30 s of compaction every second"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(gone["object"]["kind"], "Status", "{gone:#}");
    assert_eq!(gone["object"]["code"], 410, "{gone:#}");
    assert_eq!(gone["object"]["reason"], "Expired", "{gone:#}");
    // A fresh list still works and gives a version to watch from.
    let list = http.get(CONFIGMAPS).json();
    assert!(
        list["items"].as_array().is_some_and(|i| i.len() >= 3),
        "{list:#}"
    );
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// With `allowWatchBookmarks`, a quiet watch still learns the current resourceVersion.
fn idle_watch_with_bookmarks_gets_a_bookmark_at_the_latest_version(backend: Backend) {
    let server = ApiServer::start(backend);
    let http = server.http();
    let created = create(&http, config_map("marked").build());
    let rv = resource_version(&created);
    let mut events = http.watch(&format!(
        "{CONFIGMAPS}?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
    ));
    let bookmark = match events.next(Duration::from_secs(25)) {
        Some(ev) if ev["type"] == "BOOKMARK" => ev,
        Some(ev) => panic!("unexpected event on an idle watch: {ev:#}"),
        None => panic!("no BOOKMARK within 25 s"),
    };
    assert_eq!(bookmark["object"]["kind"], "ConfigMap", "{bookmark:#}");
    assert!(resource_version(&bookmark["object"]) >= rv, "{bookmark:#}");
}

/// Concurrent creates may be committed together (the etcd backend batches them, and they then
/// share a resourceVersion): a watch still sees each exactly once, and so do lists, from the
/// store and from the watch cache.
fn concurrent_creates_are_each_seen_once_by_watchers_and_lists(backend: Backend) {
    const N: usize = 48;
    let server = ApiServer::start(backend);
    let http = server.http();
    let start = resource_version(&create(&http, config_map("first").build()));
    let mut events = http.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={start}"));
    let writers: Vec<_> = (0..N)
        .map(|i| {
            let http = http.clone();
            std::thread::spawn(move || create(&http, config_map(&format!("burst-{i:02}")).build()))
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..N {
        let ev = events.expect_next(WAIT);
        assert_eq!(ev["type"], "ADDED", "{ev:#}");
        let name = ev["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(seen.insert(name.clone()), "{name} delivered twice");
    }
    assert_eq!(seen.len(), N);
    // A late watcher starting from the state gets the same objects, once each.
    let mut state = http.watch(&format!("{CONFIGMAPS}?watch=1"));
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..=N {
        let ev = state.expect_next(WAIT);
        names.insert(
            ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(names.len(), N + 1, "{names:?}");
    for query in ["", "?resourceVersion=0"] {
        let list = http.get(&format!("{CONFIGMAPS}{query}")).json();
        let items = list["items"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(items, N + 1, "list{query} has {items} items");
    }
}

/// A watch that ends on its timeout ends between revisions, never inside one, so a client
/// that resumes from the last resourceVersion it saw (as informers do) misses nothing and sees
/// nothing twice, even while concurrent creates are committed together and share a revision.
fn watchers_resuming_after_each_timeout_miss_no_create(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const WRITERS: usize = 32;
    let server = ApiServer::start(backend);
    let http = server.http();
    let mut rv = resource_version(&create(&http, config_map("before").build()));
    // The writers keep creating until the watcher has resumed a few times.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let http = http.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut made = 0;
                while !stop.load(Ordering::Relaxed) && made < 1000 {
                    create(&http, config_map(&format!("w{w:02}-{made:04}")).build());
                    made += 1;
                }
                made
            })
        })
        .collect();
    let mut writers = Some(writers);
    let mut total = None;
    let mut seen = std::collections::BTreeSet::new();
    let mut watches = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while total.is_none_or(|t| seen.len() < t) {
        assert!(
            std::time::Instant::now() < deadline,
            "after {watches} watches, {} of {total:?} creates seen",
            seen.len()
        );
        if watches >= 6
            && let Some(ws) = writers.take()
        {
            stop.store(true, Ordering::Relaxed);
            total = Some(ws.into_iter().map(|w| w.join().expect("writer")).sum());
        }
        let mut events = http.watch(&format!(
            "{CONFIGMAPS}?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        ));
        watches += 1;
        while let Some(ev) = events.next(Duration::from_secs(5)) {
            assert_eq!(ev["type"], "ADDED", "{ev:#}");
            rv = resource_version(&ev["object"]);
            let name = ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(seen.insert(name.clone()), "{name} delivered twice");
        }
    }
    assert_eq!(Some(seen.len()), total);
}
