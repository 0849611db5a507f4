//! The one conformance suite for [`Store`]: every test runs against both backends (the
//! embedded store in a temp file, and a private etcd started for the test).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;

use crate::testing::TestEtcd;
use crate::{
    EmbeddedStore, EtcdStore, EventKind, KeyValue, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

/// How long a test waits for a watch event that should come.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

/// A store plus whatever must outlive it (its temp dir, its etcd). Fields drop in order, so the
/// store goes before its backing.
struct Harness {
    store: Arc<dyn Store>,
    _backing: Box<dyn std::any::Any + Send>,
}

async fn embedded() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open embedded store");
    Harness {
        store: Arc::new(store),
        _backing: Box::new(dir),
    }
}

async fn etcd() -> Harness {
    let etcd = tokio::task::spawn_blocking(TestEtcd::start)
        .await
        .expect("start etcd");
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint))
        .await
        .expect("connect to test etcd");
    Harness {
        store: Arc::new(store),
        _backing: Box::new(etcd),
    }
}

/// Generates `embedded::NAME` and `etcd::NAME` for each conformance test `NAME`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let h = super::embedded().await;
                    super::$name(h.store.clone()).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let h = super::etcd().await;
                    super::$name(h.store.clone()).await
                }
            )*
        }
    };
}

conformance!(
    fresh_store_is_at_revision_one,
    create_then_get,
    update_is_compare_and_swap,
    delete_with_and_without_expected_revision,
    list_prefix_does_not_match_neighbouring_prefix,
    list_pages_with_start_after_and_limit,
    list_at_old_revision_sees_old_state,
    list_in_the_future_fails,
    watch_replays_history_then_follows_live_events,
    watch_filters_by_prefix,
    watch_delete_event_carries_last_value,
    compaction_forgets_history_but_keeps_data,
    revisions_increase_by_one_per_write,
    concurrent_creates_all_succeed_and_are_each_seen_once,
    concurrent_updates_of_one_key_have_one_winner,
    watch_from_the_future_waits_for_it,
    keys_with_a_ttl_expire_with_a_delete_event,
    watch_replays_a_large_history_in_order,
);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(stream: &mut WatchStream) -> Result<WatchEvent> {
    match tokio::time::timeout(EVENT_DEADLINE, stream.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(e))) => bail!("watch failed: {e}"),
        Ok(None) => bail!("watch ended"),
        Err(_) => bail!("no watch event within {EVENT_DEADLINE:?}"),
    }
}

/// Fails if the stream yields anything within a short while.
async fn assert_quiet(stream: &mut WatchStream) -> Result<()> {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        bail!("unexpected watch item {item:?}");
    }
    Ok(())
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

async fn fresh_store_is_at_revision_one(s: Arc<dyn Store>) -> Result<()> {
    assert_eq!(s.current_revision().await?, 1);
    let list = s.list("", None, 0, None).await?;
    assert!(list.items.is_empty());
    assert_eq!(list.revision, 1);
    assert_eq!(s.count("").await?, 0);
    Ok(())
}

async fn create_then_get(s: Arc<dyn Store>) -> Result<()> {
    let before = s.current_revision().await?;
    let rev = s.create("/registry/pods/default/a", b("v1")).await?;
    assert!(rev > before);
    assert_eq!(s.current_revision().await?, rev);
    let kv = s
        .get("/registry/pods/default/a")
        .await?
        .context("created key is missing")?;
    assert_eq!(
        kv,
        KeyValue {
            key: "/registry/pods/default/a".into(),
            value: b("v1"),
            create_revision: rev,
            mod_revision: rev,
        }
    );
    match s.create("/registry/pods/default/a", b("v2")).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/registry/pods/default/a"),
        other => bail!("second create: expected AlreadyExists, got {other:?}"),
    }
    // The failed create changed nothing.
    assert_eq!(s.current_revision().await?, rev);
    assert_eq!(
        s.get("/registry/pods/default/a").await?.map(|kv| kv.value),
        Some(b("v1"))
    );
    assert_eq!(s.get("/registry/pods/default/missing").await?, None);
    Ok(())
}

async fn update_is_compare_and_swap(s: Arc<dyn Store>) -> Result<()> {
    let created = s.create("/k", b("v1")).await?;
    let updated = s.update("/k", created, b("v2")).await?;
    assert!(updated > created);
    let kv = s.get("/k").await?.context("missing")?;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.value),
        (created, updated, b("v2"))
    );

    match s.update("/k", created, b("stale")).await {
        Err(StoreError::Conflict {
            key,
            expected,
            current: Some(current),
        }) => {
            assert_eq!((key.as_str(), expected), ("/k", created));
            assert_eq!((current.mod_revision, current.value), (updated, b("v2")));
        }
        other => bail!("stale update: expected Conflict with current, got {other:?}"),
    }
    match s.update("/missing", 5, b("x")).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/missing"),
        other => bail!("update of missing key: expected NotFound, got {other:?}"),
    }
    // A missing key's mod revision reads as 0 in etcd; expecting 0 must not create it.
    match s.update("/missing", 0, b("x")).await {
        Err(StoreError::NotFound { .. }) => {}
        other => bail!("update of missing key at 0: expected NotFound, got {other:?}"),
    }
    assert_eq!(s.get("/missing").await?, None);
    assert_eq!(s.current_revision().await?, updated);
    Ok(())
}

async fn delete_with_and_without_expected_revision(s: Arc<dyn Store>) -> Result<()> {
    let a = s.create("/a", b("va")).await?;
    let a2 = s.update("/a", a, b("va2")).await?;
    match s.delete("/a", Some(a)).await {
        Err(StoreError::Conflict {
            expected,
            current: Some(current),
            ..
        }) => {
            assert_eq!(expected, a);
            assert_eq!(current.mod_revision, a2);
        }
        other => bail!("stale delete: expected Conflict, got {other:?}"),
    }
    let (gone, rev) = s.delete("/a", Some(a2)).await?;
    assert!(rev > a2);
    assert_eq!(
        gone,
        KeyValue {
            key: "/a".into(),
            value: b("va2"),
            create_revision: a,
            mod_revision: a2,
        }
    );
    assert_eq!(s.get("/a").await?, None);
    assert_eq!(s.current_revision().await?, rev);
    match s.delete("/a", None).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/a"),
        other => bail!("delete of deleted key: expected NotFound, got {other:?}"),
    }
    match s.delete("/a", Some(a2)).await {
        Err(StoreError::NotFound { .. }) => {}
        other => bail!("CAS delete of deleted key: expected NotFound, got {other:?}"),
    }

    let b_rev = s.create("/b", b("vb")).await?;
    let (gone, rev) = s.delete("/b", None).await?;
    assert!(rev > b_rev);
    assert_eq!((gone.value, gone.mod_revision), (b("vb"), b_rev));
    assert_eq!(s.get("/b").await?, None);
    // A key can be created again after a delete, with a new create revision.
    let again = s.create("/b", b("vb2")).await?;
    assert_eq!(s.get("/b").await?.map(|kv| kv.create_revision), Some(again));
    Ok(())
}

async fn list_prefix_does_not_match_neighbouring_prefix(s: Arc<dyn Store>) -> Result<()> {
    for key in [
        "/registry/pods2/default/x",
        "/registry/pods/ns2/b",
        "/registry/pods/default/a",
        "/registry/pod",
        "/registry/pods",
    ] {
        s.create(key, b(key)).await?;
    }
    let list = s.list("/registry/pods/", None, 0, None).await?;
    assert_eq!(
        keys(&list.items),
        ["/registry/pods/default/a", "/registry/pods/ns2/b"]
    );
    assert_eq!(list.items[0].value, b("/registry/pods/default/a"));
    assert!(!list.more);
    assert_eq!(list.revision, s.current_revision().await?);
    assert_eq!(s.count("/registry/pods/").await?, 2);
    assert_eq!(s.count("/registry/pods2/").await?, 1);
    assert_eq!(s.count("/registry/").await?, 5);
    assert_eq!(s.count("").await?, 5);
    assert_eq!(s.count("/nothing/").await?, 0);
    let all = s.list("", None, 0, None).await?;
    assert_eq!(
        keys(&all.items),
        [
            "/registry/pod",
            "/registry/pods",
            "/registry/pods/default/a",
            "/registry/pods/ns2/b",
            "/registry/pods2/default/x",
        ]
    );
    Ok(())
}

async fn list_pages_with_start_after_and_limit(s: Arc<dyn Store>) -> Result<()> {
    let names = ["a", "b", "c", "d", "e"];
    for name in names {
        s.create(&format!("/p/{name}"), b(name)).await?;
    }
    s.create("/p0", b("neighbour")).await?;
    s.create("/o", b("before")).await?;

    let first = s.list("/p/", None, 2, None).await?;
    assert_eq!(keys(&first.items), ["/p/a", "/p/b"]);
    assert!(first.more);
    // A write between pages must not show up in later pages read at the first page's revision.
    s.create("/p/bb", b("late")).await?;
    let second = s.list("/p/", Some("/p/b"), 2, Some(first.revision)).await?;
    assert_eq!(keys(&second.items), ["/p/c", "/p/d"]);
    assert!(second.more);
    assert_eq!(second.revision, first.revision);
    let third = s.list("/p/", Some("/p/d"), 2, Some(first.revision)).await?;
    assert_eq!(keys(&third.items), ["/p/e"]);
    assert!(!third.more);

    // A limit that exactly fits the rest reports no more.
    let exact = s.list("/p/", Some("/p/c"), 2, None).await?;
    assert_eq!(keys(&exact.items), ["/p/d", "/p/e"]);
    assert!(!exact.more);
    // start_after need not be an existing key, and may lie before the prefix.
    let between = s.list("/p/", Some("/p/b0"), 0, None).await?;
    assert_eq!(keys(&between.items), ["/p/bb", "/p/c", "/p/d", "/p/e"]);
    let before = s.list("/p/", Some("/a"), 1, None).await?;
    assert_eq!(keys(&before.items), ["/p/a"]);
    let past = s.list("/p/", Some("/p/e"), 0, None).await?;
    assert!(past.items.is_empty() && !past.more);
    Ok(())
}

async fn list_at_old_revision_sees_old_state(s: Arc<dyn Store>) -> Result<()> {
    let r1 = s.create("/x/a", b("a1")).await?;
    let r2 = s.create("/x/b", b("b1")).await?;
    let r3 = s.update("/x/a", r1, b("a2")).await?;
    let (_, r4) = s.delete("/x/b", None).await?;
    let r5 = s.create("/x/c", b("c1")).await?;
    let r6 = s.update("/x/a", r3, b("a3")).await?;
    s.create("/y/other", b("o")).await?;

    let at = |rev: Revision| {
        let s = s.clone();
        async move {
            let list = s.list("/x/", None, 0, Some(rev)).await?;
            ensure!(
                list.revision == rev,
                "served at {} not {rev}",
                list.revision
            );
            Ok::<_, anyhow::Error>(
                list.items
                    .into_iter()
                    .map(|kv| (kv.key, kv.value, kv.create_revision, kv.mod_revision))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let row = |k: &str, v: &str, c, m| (k.to_owned(), b(v), c, m);
    assert_eq!(at(r1).await?, [row("/x/a", "a1", r1, r1)]);
    assert_eq!(
        at(r2).await?,
        [row("/x/a", "a1", r1, r1), row("/x/b", "b1", r2, r2)]
    );
    assert_eq!(
        at(r3).await?,
        [row("/x/a", "a2", r1, r3), row("/x/b", "b1", r2, r2)]
    );
    assert_eq!(at(r4).await?, [row("/x/a", "a2", r1, r3)]);
    assert_eq!(
        at(r5).await?,
        [row("/x/a", "a2", r1, r3), row("/x/c", "c1", r5, r5)]
    );
    assert_eq!(
        at(r6).await?,
        [row("/x/a", "a3", r1, r6), row("/x/c", "c1", r5, r5)]
    );
    // Before anything was written.
    assert_eq!(at(r1 - 1).await?, []);

    // Pagination at an old revision merges old and current state correctly.
    let page = s.list("/x/", Some("/x/a"), 1, Some(r3)).await?;
    assert_eq!(keys(&page.items), ["/x/b"]);
    assert!(!page.more);
    let page = s.list("/x/", None, 1, Some(r3)).await?;
    assert_eq!(keys(&page.items), ["/x/a"]);
    assert!(page.more);
    Ok(())
}

async fn list_in_the_future_fails(s: Arc<dyn Store>) -> Result<()> {
    let rev = s.create("/f", b("v")).await?;
    match s.list("/", None, 0, Some(rev + 10)).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (rev + 10, rev));
        }
        other => bail!("expected FutureRevision, got {other:?}"),
    }
    Ok(())
}

async fn watch_replays_history_then_follows_live_events(s: Arc<dyn Store>) -> Result<()> {
    let r1 = s.create("/w/a", b("a1")).await?;
    let r2 = s.update("/w/a", r1, b("a2")).await?;
    let r3 = s.create("/w/b", b("b1")).await?;

    let mut watch = s.watch("/w/", r1).await?;
    let e = next_event(&mut watch).await?;
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.revision()),
        (EventKind::Put, "/w/a", r2)
    );
    assert_eq!((e.kv.value.clone(), e.kv.create_revision), (b("a2"), r1));
    let prev = e.prev.context("update event without prev")?;
    assert_eq!((prev.value, prev.mod_revision), (b("a1"), r1));
    let e = next_event(&mut watch).await?;
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.revision()),
        (EventKind::Put, "/w/b", r3)
    );
    assert_eq!(e.prev, None);

    // Live events follow, in order, without gaps or repeats.
    let (_, r4) = s.delete("/w/a", None).await?;
    let r5 = s.create("/w/c", b("c1")).await?;
    let e = next_event(&mut watch).await?;
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.revision()),
        (EventKind::Delete, "/w/a", r4)
    );
    let e = next_event(&mut watch).await?;
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.revision()),
        (EventKind::Put, "/w/c", r5)
    );
    assert_quiet(&mut watch).await?;

    // Watching from the current revision sees only what comes next.
    let mut from_now = s.watch("/w/", s.current_revision().await?).await?;
    let r6 = s.update("/w/c", r5, b("c2")).await?;
    let e = next_event(&mut from_now).await?;
    assert_eq!(e.revision(), r6);
    assert_eq!(next_event(&mut watch).await?.revision(), r6);

    // A watch from before the first write replays everything.
    let mut all = s.watch("/w/", 0).await?;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(next_event(&mut all).await?.revision());
    }
    assert_eq!(seen, [r1, r2, r3, r4, r5, r6]);
    Ok(())
}

async fn watch_filters_by_prefix(s: Arc<dyn Store>) -> Result<()> {
    s.create("/registry/pods2/old", b("x")).await?;
    let old = s.create("/registry/pods/old", b("x")).await?;
    let mut watch = s.watch("/registry/pods/", old - 1).await?;
    s.create("/registry/pods2/ns/a", b("x")).await?;
    s.create("/registry/pod", b("x")).await?;
    let mine = s.create("/registry/pods/ns/a", b("x")).await?;
    s.create("/registry/services/ns/a", b("x")).await?;
    let e = next_event(&mut watch).await?;
    assert_eq!(
        (e.kv.key.as_str(), e.revision()),
        ("/registry/pods/old", old)
    );
    let e = next_event(&mut watch).await?;
    assert_eq!(
        (e.kv.key.as_str(), e.revision()),
        ("/registry/pods/ns/a", mine)
    );
    assert_quiet(&mut watch).await?;
    Ok(())
}

async fn watch_delete_event_carries_last_value(s: Arc<dyn Store>) -> Result<()> {
    let created = s.create("/d/a", b("v1")).await?;
    let updated = s.update("/d/a", created, b("v2")).await?;
    let mut watch = s.watch("/d/", updated).await?;
    let (_, deleted) = s.delete("/d/a", Some(updated)).await?;
    let e = next_event(&mut watch).await?;
    assert_eq!(e.kind, EventKind::Delete);
    assert_eq!(
        e.kv,
        KeyValue {
            key: "/d/a".into(),
            value: b("v2"),
            create_revision: created,
            mod_revision: deleted,
        }
    );
    let prev = e.prev.context("delete event without prev")?;
    assert_eq!((prev.value, prev.mod_revision), (b("v2"), updated));

    // The same event, replayed from history.
    let mut replay = s.watch("/d/", updated).await?;
    let again = next_event(&mut replay).await?;
    assert_eq!((again.kind, again.revision()), (EventKind::Delete, deleted));
    assert_eq!(again.kv.value, b("v2"));
    Ok(())
}

async fn compaction_forgets_history_but_keeps_data(s: Arc<dyn Store>) -> Result<()> {
    let r1 = s.create("/c/a", b("a1")).await?;
    let r2 = s.update("/c/a", r1, b("a2")).await?;
    let r3 = s.create("/c/b", b("b1")).await?;
    let r4 = s.update("/c/a", r2, b("a3")).await?;
    s.compact(r3).await?;

    match s.list("/c/", None, 0, Some(r2)).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (r2, r3)),
        other => bail!("list below compaction: expected Compacted, got {other:?}"),
    }
    // The compaction revision itself is still readable.
    let at_r3 = s.list("/c/", None, 0, Some(r3)).await?;
    assert_eq!(
        at_r3
            .items
            .iter()
            .map(|kv| kv.value.clone())
            .collect::<Vec<_>>(),
        [b("a2"), b("b1")]
    );
    // Current data survives.
    let now = s.list("/c/", None, 0, None).await?;
    assert_eq!(
        now.items
            .iter()
            .map(|kv| kv.value.clone())
            .collect::<Vec<_>>(),
        [b("a3"), b("b1")]
    );
    assert_eq!(s.get("/c/a").await?.map(|kv| kv.create_revision), Some(r1));

    // A watch needing revision r2 fails; one starting at r3 replays from there.
    match s.watch("/c/", r1).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (r2, r3)),
        Err(e) => bail!("watch below compaction: expected Compacted, got {e:?}"),
        Ok(_) => bail!("watch below compaction: expected Compacted, got a stream"),
    }
    let mut watch = s.watch("/c/", r2).await?;
    assert_eq!(next_event(&mut watch).await?.revision(), r3);
    assert_eq!(next_event(&mut watch).await?.revision(), r4);

    // Compacting again at or below the compaction point is a no-op; the future is an error.
    s.compact(r2).await?;
    s.compact(r3).await?;
    match s.compact(r4 + 100).await {
        Err(StoreError::FutureRevision { requested, .. }) => assert_eq!(requested, r4 + 100),
        other => bail!("compaction in the future: expected FutureRevision, got {other:?}"),
    }
    // Writes continue after compaction.
    let r5 = s.create("/c/c", b("c1")).await?;
    assert_eq!(r5, r4 + 1);
    Ok(())
}

async fn revisions_increase_by_one_per_write(s: Arc<dyn Store>) -> Result<()> {
    let mut last = s.current_revision().await?;
    let mut step = |rev: Revision| -> Result<()> {
        ensure!(rev == last + 1, "revision {rev} after {last}");
        last = rev;
        Ok(())
    };
    let a = s.create("/r/a", b("1")).await?;
    step(a)?;
    let a2 = s.update("/r/a", a, b("2")).await?;
    step(a2)?;
    step(s.create("/r/b", b("1")).await?)?;
    // Failed writes use no revision.
    assert!(s.create("/r/a", b("dup")).await.is_err());
    assert!(s.update("/r/a", a, b("stale")).await.is_err());
    assert!(s.delete("/r/missing", None).await.is_err());
    step(s.delete("/r/a", Some(a2)).await?.1)?;
    step(s.create("/r/a", b("3")).await?)?;
    assert_eq!(s.current_revision().await?, last);
    Ok(())
}

async fn concurrent_creates_all_succeed_and_are_each_seen_once(s: Arc<dyn Store>) -> Result<()> {
    const N: usize = 64;
    let start = s.current_revision().await?;
    let mut watch = s.watch("/cc/", start).await?;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create(&format!("/cc/{i:03}"), b("v")).await })
        })
        .collect();
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await??);
    }
    let end = s.current_revision().await?;
    // Creates committed together may share a revision; each is new and none is in the future.
    assert!(
        revisions.iter().all(|r| *r > start && *r <= end),
        "revisions {revisions:?} outside ({start}, {end}]"
    );
    revisions.sort_unstable();
    assert_eq!(s.count("/cc/").await?, N);

    // The watch saw every create once, in revision order.
    let mut seen = Vec::new();
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..N {
        let ev = next_event(&mut watch).await?;
        keys.insert(ev.kv.key.clone());
        seen.push(ev.revision());
    }
    assert_eq!(keys.len(), N, "a create was seen twice");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "watch out of order: {seen:?}"
    );
    assert_eq!(seen, revisions);
    Ok(())
}

async fn concurrent_updates_of_one_key_have_one_winner(s: Arc<dyn Store>) -> Result<()> {
    const N: usize = 32;
    let created = s.create("/race", b("v0")).await?;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.update("/race", created, b(&format!("v{i}"))).await })
        })
        .collect();
    let (mut won, mut conflicts) = (Vec::new(), 0);
    for task in tasks {
        match task.await? {
            Ok(rev) => won.push(rev),
            Err(StoreError::Conflict {
                current: Some(_), ..
            }) => conflicts += 1,
            Err(e) => bail!("concurrent update: unexpected {e:?}"),
        }
    }
    assert_eq!((won.len(), conflicts), (1, N - 1));
    assert_eq!(won[0], created + 1);
    assert_eq!(s.current_revision().await?, created + 1);
    Ok(())
}

async fn watch_from_the_future_waits_for_it(s: Arc<dyn Store>) -> Result<()> {
    let now = s.current_revision().await?;
    let mut watch = s.watch("/fut/", now + 2).await?;
    s.create("/fut/a", b("1")).await?;
    s.create("/fut/b", b("2")).await?;
    let third = s.create("/fut/c", b("3")).await?;
    let e = next_event(&mut watch).await?;
    assert_eq!((e.kv.key.as_str(), e.revision()), ("/fut/c", third));
    assert_quiet(&mut watch).await?;
    Ok(())
}

async fn keys_with_a_ttl_expire_with_a_delete_event(s: Arc<dyn Store>) -> Result<()> {
    const TTL: Duration = Duration::from_secs(1);
    let start = s.current_revision().await?;
    let mut watch = s.watch("/ttl/", start).await?;
    // Given a TTL, then written again without one: it no longer expires.
    let kept = s.create_with_ttl("/ttl/kept", b("k"), Some(TTL)).await?;
    s.update("/ttl/kept", kept, b("k2")).await?;
    s.create("/ttl/plain", b("p")).await?;
    let expiring = s.create_with_ttl("/ttl/gone", b("g"), Some(TTL)).await?;
    // Renewed by an update: expires a TTL after it.
    let renewed = s.create_with_ttl("/ttl/renewed", b("r"), Some(TTL)).await?;
    let renewed = s
        .update_with_ttl("/ttl/renewed", renewed, b("r2"), Some(TTL))
        .await?;
    // The six writes above.
    for _ in 0..6 {
        next_event(&mut watch).await?;
    }

    // Expiry shows as deletes carrying the last values (etcd's lease expiry does the same).
    let mut deleted = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    while deleted.len() < 2 {
        let e = tokio::time::timeout_at(deadline, next_event(&mut watch))
            .await
            .context("the keys with a TTL did not expire in time")??;
        ensure!(e.kind == EventKind::Delete, "unexpected {e:?}");
        ensure!(e.revision() > renewed, "{e:?}");
        deleted.insert(e.kv.key.clone(), e.kv.value.clone());
    }
    let want: std::collections::BTreeMap<_, _> = [
        ("/ttl/gone".to_owned(), b("g")),
        ("/ttl/renewed".to_owned(), b("r2")),
    ]
    .into();
    assert_eq!(deleted, want);
    assert_eq!(s.get("/ttl/gone").await?, None);
    assert!(expiring < renewed);
    let left = s.list("/ttl/", None, 0, None).await?;
    assert_eq!(keys(&left.items), ["/ttl/kept", "/ttl/plain"]);
    Ok(())
}

async fn watch_replays_a_large_history_in_order(s: Arc<dyn Store>) -> Result<()> {
    // 24 writes of 512 KiB: 12 MiB of history, more than one replay page or gRPC message.
    const N: usize = 24;
    let start = s.current_revision().await?;
    let mut revisions = Vec::new();
    for i in 0..N {
        let value = Bytes::from(vec![b'a' + (i % 26) as u8; 512 << 10]);
        revisions.push(s.create(&format!("/big/{i:02}"), value).await?);
    }
    let (_, deleted) = s.delete("/big/00", None).await?;
    revisions.push(deleted);
    let mut watch = s.watch("/big/", start).await?;
    for (i, rev) in revisions.iter().enumerate() {
        let e = next_event(&mut watch).await?;
        assert_eq!(e.revision(), *rev);
        assert_eq!(e.kv.value.len(), 512 << 10);
        assert_eq!(e.kv.key, format!("/big/{:02}", i % N));
    }
    assert_quiet(&mut watch).await?;
    Ok(())
}
