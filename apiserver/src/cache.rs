//! The watch cache: per resource, one store watch keeps an in-memory copy of every object and
//! a window of recent events, and fans them out to all client watches. Lists with
//! `resourceVersion=0` and the initial state of watches are served from it.
//!
//! Concurrency: the cache's state is behind one `RwLock`. The feeder task applies a store event
//! and broadcasts it while holding the write lock; a new client watch subscribes to the
//! broadcast and reads history while holding the read lock. So a watcher sees every event
//! exactly once: those before its subscription from history, those after from the channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use skiff_api::ResourceInfo;
use skiff_store::{EventKind, Revision, Store, StoreError, WatchEvent};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many recent events each resource keeps for watches that resume from a revision.
const HISTORY: usize = 4096;
/// Capacity of the fan-out channel; a watcher that falls this far behind is cut off and must
/// re-watch (it then resumes from history or gets 410).
const CHANNEL: usize = 8192;

/// The type of a watch event, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object, shared by every watcher.
#[derive(Debug)]
pub struct CacheEvent {
    pub ty: EventType,
    pub revision: Revision,
    pub key: String,
    /// The object after the change (for Deleted: its last state, with the delete's revision).
    pub object: Arc<Value>,
    /// The object before the change, for Modified and Deleted.
    pub prev: Option<Arc<Value>>,
    /// The JSON line `{"type":..,"object":..}\n`, serialised once for all plain watchers.
    line: OnceLock<Bytes>,
}

impl CacheEvent {
    pub fn new(
        ty: EventType,
        revision: Revision,
        key: String,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) -> Self {
        CacheEvent {
            ty,
            revision,
            key,
            object,
            prev,
            line: OnceLock::new(),
        }
    }

    /// The event as one line of a JSON watch stream.
    pub fn json_line(&self) -> Bytes {
        self.line
            .get_or_init(|| {
                let mut out = Vec::with_capacity(256);
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(self.ty.as_str().as_bytes());
                out.extend_from_slice(b"\",\"object\":");
                // Serialising a Value cannot fail.
                serde_json::to_writer(&mut out, &*self.object).unwrap_or_default();
                out.extend_from_slice(b"}\n");
                Bytes::from(out)
            })
            .clone()
    }
}

/// Decodes a stored object and stamps its resourceVersion.
pub fn decode(value: &[u8], revision: Revision) -> Result<Value, StoreError> {
    let mut obj: Value = serde_json::from_slice(value)
        .map_err(|e| StoreError::Backend(format!("corrupt object in store: {e}")))?;
    set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// `json`, an object as serde_json writes it, with `"resourceVersion"` first in its top-level
/// `metadata`; `None` if it has no top-level `metadata` object.
pub fn with_resource_version(json: &[u8], revision: Revision) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"\"metadata\":{";
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &c) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            // At depth 1 a quoted `metadata` followed by `:{` can only be a key.
            b'"' if depth == 1 && json[i..].starts_with(KEY) => {
                let at = i + KEY.len();
                let mut out = Vec::with_capacity(json.len() + 32);
                out.extend_from_slice(&json[..at]);
                out.extend_from_slice(format!("\"resourceVersion\":\"{revision}\"").as_bytes());
                if json.get(at) != Some(&b'}') {
                    out.push(b',');
                }
                out.extend_from_slice(&json[at..]);
                return Some(out);
            }
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

struct State {
    objects: BTreeMap<String, Arc<Value>>,
    /// The newest revision applied.
    revision: Revision,
    /// Events newer than `oldest` are all in `history`.
    oldest: Revision,
    history: VecDeque<Arc<CacheEvent>>,
    /// False until the first list has loaded.
    synced: bool,
}

/// What a new watcher gets: the events it missed and a channel for the rest.
pub struct Subscription {
    pub replay: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// The cache's revision at subscription time.
    pub revision: Revision,
}

/// The cache of one resource (all its versions share one, keyed by storage prefix).
pub struct ResourceCache {
    prefix: String,
    state: RwLock<State>,
    tx: RwLock<broadcast::Sender<Arc<CacheEvent>>>,
    synced: tokio::sync::Notify,
    /// Objects this apiserver is creating, by key, with the bytes they are stored as: when the
    /// store's event carries exactly those bytes, the cache takes the object instead of
    /// decoding the bytes again (a twelfth of the apiserver's CPU in a stream of creates).
    expected: std::sync::Mutex<HashMap<String, Handed>>,
}

/// An object handed to the cache ahead of its create.
struct Handed {
    bytes: Bytes,
    object: Value,
    /// The revision the create was committed at, once the store said so: the entry then
    /// stays until the cache has seen that revision (the store's answer to a write often
    /// arrives before its watch event).
    committed: Option<Revision>,
}

/// An object handed to the cache ahead of its create ([`ResourceCache::expect`]). Dropping it
/// takes the object back if the cache did not use it; [`Expected::committed`] leaves it for
/// the watch event of the write.
pub struct Expected<'a> {
    cache: &'a ResourceCache,
    key: String,
    bytes: Bytes,
    /// Set by [`Expected::committed`]: the entry is the cache's to clear now.
    left: bool,
}

impl Expected<'_> {
    /// The create was stored at `revision`: the object stays with the cache until the cache
    /// has seen that revision, so the event need not be decoded even when it comes after the
    /// store's answer.
    pub fn committed(mut self, revision: Revision) {
        // Lock order is state, then expected (as `apply_group` takes them).
        let seen = self.cache.read().revision;
        let mut expected = self.cache.expected();
        if let Some(h) = expected.get_mut(&self.key)
            && h.bytes == self.bytes
        {
            if seen >= revision {
                expected.remove(&self.key);
            } else {
                h.committed = Some(revision);
            }
        }
        drop(expected);
        self.left = true;
    }
}

impl Drop for Expected<'_> {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let mut expected = self.cache.expected();
        if expected
            .get(&self.key)
            .is_some_and(|h| h.bytes == self.bytes)
        {
            expected.remove(&self.key);
        }
    }
}

impl ResourceCache {
    fn new(prefix: String) -> Self {
        ResourceCache {
            prefix,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                revision: 0,
                oldest: 0,
                history: VecDeque::new(),
                synced: false,
            }),
            tx: RwLock::new(broadcast::channel(CHANNEL).0),
            synced: tokio::sync::Notify::new(),
            expected: Default::default(),
        }
    }

    fn expected(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handed>> {
        self.expected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the cache `obj` (without a resourceVersion), about to be created at `key` as
    /// `bytes`, for as long as the returned guard lives.
    pub fn expect(&self, key: &str, bytes: Bytes, obj: Value) -> Expected<'_> {
        self.expected().insert(
            key.to_string(),
            Handed {
                bytes: bytes.clone(),
                object: obj,
                committed: None,
            },
        );
        Expected {
            cache: self,
            key: key.to_string(),
            bytes,
            left: false,
        }
    }

    /// The object for a stored value: the one handed over for exactly these bytes, or decoded.
    fn object_for(
        &self,
        key: &str,
        value: &Bytes,
        revision: Revision,
    ) -> Result<Value, StoreError> {
        let handed = {
            let mut expected = self.expected();
            match expected.get(key) {
                Some(h) if h.bytes == *value => expected.remove(key).map(|h| h.object),
                _ => None,
            }
        };
        match handed {
            Some(mut obj) => {
                set_resource_version(&mut obj, revision);
                Ok(obj)
            }
            None => decode(value, revision),
        }
    }

    /// Waits until the first list has loaded.
    pub async fn wait_synced(&self) {
        loop {
            let notified = self.synced.notified();
            if self.read().synced {
                return;
            }
            notified.await;
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The cache's current revision.
    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    /// Every event of `revision`, in order, or `None` if the history no longer holds them all.
    pub fn events_at(&self, revision: Revision) -> Option<Vec<Arc<CacheEvent>>> {
        let st = self.read();
        if revision <= st.oldest {
            return None;
        }
        let start = st.history.partition_point(|e| e.revision < revision);
        Some(
            st.history
                .range(start..)
                .take_while(|e| e.revision == revision)
                .cloned()
                .collect(),
        )
    }

    /// A snapshot of the objects whose key starts with `key_prefix`, and its revision.
    pub fn snapshot(&self, key_prefix: &str) -> (Vec<Arc<Value>>, Revision) {
        let st = self.read();
        let items = st
            .objects
            .range(key_prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(key_prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.revision)
    }

    /// One object by storage key.
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.read().objects.get(key).cloned()
    }

    /// Subscribes for events after `after`. `None` when `after` is older than the history
    /// window (the caller falls back to a store watch, which may answer 410).
    pub fn subscribe_after(&self, after: Revision) -> Option<Subscription> {
        let st = self.read();
        if after < st.oldest {
            return None;
        }
        let live = self
            .tx
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .subscribe();
        let replay = st
            .history
            .iter()
            .filter(|e| e.revision > after)
            .cloned()
            .collect();
        Some(Subscription {
            replay,
            live,
            revision: st.revision,
        })
    }

    /// Subscribes with the current state as synthetic ADDED events (a watch without a
    /// resourceVersion, or with "0").
    pub fn subscribe_with_state(&self, key_prefix: &str) -> Subscription {
        let st = self.read();
        let live = self
            .tx
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .subscribe();
        let replay = st
            .objects
            .range(key_prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(key_prefix))
            .map(|(k, v)| {
                let rv = resource_version_of(v).unwrap_or(st.revision);
                Arc::new(CacheEvent::new(
                    EventType::Added,
                    rv,
                    k.clone(),
                    v.clone(),
                    None,
                ))
            })
            .collect();
        Subscription {
            replay,
            live,
            revision: st.revision,
        }
    }

    fn load(&self, items: Vec<(String, Arc<Value>)>, revision: Revision) {
        let mut st = self.write();
        st.objects = items.into_iter().collect();
        st.revision = revision;
        st.oldest = revision;
        st.history.clear();
        st.synced = true;
        // Cut off existing watchers: they cannot know what changed while the cache was
        // reloading, so they must re-watch (and resume, or relist on 410).
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = broadcast::channel(CHANNEL).0;
        drop(st);
        self.synced.notify_waiters();
    }

    /// Applies events that share one revision (keys written together) as one step, so no
    /// snapshot or subscription ever sees half of them.
    fn apply_group(&self, group: Vec<WatchEvent>) {
        let mut st = self.write();
        let mut out = Vec::with_capacity(group.len());
        for ev in group {
            match self.apply_one(&mut st, ev) {
                Ok(Some(e)) => out.push(e),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(prefix = %self.prefix, error = %e, "skipping undecodable event")
                }
            }
        }
        // Objects of committed creates whose events have now passed (normally none: each
        // event takes its object) are not waited for any longer.
        let seen = st.revision;
        self.expected()
            .retain(|_, h| h.committed.is_none_or(|r| r > seen));
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        for event in out {
            // No receivers is fine.
            let _ = tx.send(event);
        }
    }

    fn apply_one(
        &self,
        st: &mut State,
        ev: WatchEvent,
    ) -> Result<Option<Arc<CacheEvent>>, StoreError> {
        let revision = ev.revision();
        // Keys written together share a revision, so an event at the cache's own revision can
        // be new; one the cache already holds (same key, same revision) is not.
        let key = ev.kv.key.clone();
        let prev = st.objects.get(&key).cloned();
        let held = prev.as_deref().and_then(resource_version_of) == Some(revision);
        if revision < st.revision || (revision == st.revision && ev.kind == EventKind::Put && held)
        {
            return Ok(None);
        }
        let event = match ev.kind {
            EventKind::Put => {
                let obj = Arc::new(self.object_for(&key, &ev.kv.value, revision)?);
                st.objects.insert(key.clone(), obj.clone());
                let ty = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent::new(ty, revision, key, obj, prev)
            }
            EventKind::Delete => {
                st.objects.remove(&key);
                let obj = Arc::new(decode(&ev.kv.value, revision)?);
                CacheEvent::new(EventType::Deleted, revision, key, obj, prev)
            }
        };
        let event = Arc::new(event);
        st.revision = revision;
        st.history.push_back(event.clone());
        while st.history.len() > HISTORY {
            if let Some(old) = st.history.pop_front() {
                st.oldest = old.revision;
            }
        }
        Ok(Some(event))
    }

    /// Keeps the cache fed from the store until shutdown: list, watch, and on failure
    /// resume (or relist if the store compacted past us).
    async fn feed(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let mut backoff =
            skiff_common::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut need_list = true;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if need_list {
                match self.list_all(&*store).await {
                    Ok(()) => need_list = false,
                    Err(e) => {
                        tracing::warn!(prefix = %self.prefix, error = %e, "watch cache list failed; retrying");
                        tokio::select! { _ = tokio::time::sleep(backoff.next_delay()) => {}, _ = shutdown.cancelled() => return }
                        continue;
                    }
                }
            }
            let from = self.revision();
            let mut stream = match store.watch(&self.prefix, from).await {
                Ok(s) => s,
                Err(StoreError::Compacted { .. }) => {
                    need_list = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(prefix = %self.prefix, error = %e, "watch cache watch failed; retrying");
                    tokio::select! { _ = tokio::time::sleep(backoff.next_delay()) => {}, _ = shutdown.cancelled() => return }
                    continue;
                }
            };
            // An item read ahead while gathering one revision's events.
            let mut ahead: Option<Option<Result<WatchEvent, StoreError>>> = None;
            loop {
                let next = match ahead.take() {
                    Some(n) => n,
                    None => tokio::select! {
                        n = stream.next() => n,
                        _ = shutdown.cancelled() => return,
                    },
                };
                match next {
                    Some(Ok(ev)) => {
                        backoff.reset();
                        // Events of one revision arrive together; take all that are ready.
                        let mut group = vec![ev];
                        while let Some(n) = stream.next().now_or_never() {
                            match n {
                                Some(Ok(e)) if e.revision() == group[0].revision() => group.push(e),
                                other => {
                                    ahead = Some(other);
                                    break;
                                }
                            }
                        }
                        self.apply_group(group);
                    }
                    Some(Err(StoreError::Compacted { .. })) => {
                        need_list = true;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(prefix = %self.prefix, error = %e, "watch cache stream failed; resuming");
                        tokio::select! { _ = tokio::time::sleep(backoff.next_delay()) => {}, _ = shutdown.cancelled() => return }
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    async fn list_all(&self, store: &dyn Store) -> Result<(), StoreError> {
        let first = store.list(&self.prefix, None, 1000, None).await?;
        let revision = first.revision;
        let mut items = Vec::new();
        let mut page = first;
        loop {
            for kv in &page.items {
                items.push((
                    kv.key.clone(),
                    Arc::new(decode(&kv.value, kv.mod_revision)?),
                ));
            }
            if !page.more {
                break;
            }
            let last = page.items.last().map(|kv| kv.key.clone());
            page = store
                .list(&self.prefix, last.as_deref(), 1000, Some(revision))
                .await?;
        }
        self.load(items, revision);
        Ok(())
    }
}

/// The `metadata.resourceVersion` of an object, parsed.
pub fn resource_version_of(obj: &Value) -> Option<Revision> {
    obj.pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

/// What [`ResourceCache::follow`] hands a consumer.
pub enum Feed<'a> {
    /// Forget everything: the state follows (at start, and after falling behind).
    Reset,
    /// One object as of a change (for `Deleted`, its last state).
    Apply(EventType, &'a Value),
}

impl ResourceCache {
    /// Keeps an in-process index in step with this cache: calls `on` with [`Feed::Reset`] and
    /// every object now (before returning), then from a task with every change until
    /// `shutdown`. A consumer that falls behind the fan-out gets a reset and the state again.
    pub fn follow(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        mut on: impl FnMut(Feed<'_>) + Send + 'static,
    ) {
        let mut live = self.replay(&mut on);
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = live.recv() => e,
                    _ = shutdown.cancelled() => return,
                };
                match event {
                    Ok(e) => on(Feed::Apply(e.ty, &e.object)),
                    Err(broadcast::error::RecvError::Lagged(_)) => live = cache.replay(&mut on),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// A reset and the current state for `on`; returns the channel of later changes.
    fn replay(&self, on: &mut dyn FnMut(Feed<'_>)) -> broadcast::Receiver<Arc<CacheEvent>> {
        let sub = self.subscribe_with_state("");
        on(Feed::Reset);
        for e in &sub.replay {
            on(Feed::Apply(e.ty, &e.object));
        }
        sub.live
    }
}

/// All resource caches, by storage prefix.
pub struct WatchCache {
    caches: BTreeMap<String, Arc<ResourceCache>>,
}

impl WatchCache {
    /// Starts one cache per storage prefix in `resources`.
    pub fn start(
        store: Arc<dyn Store>,
        resources: &[ResourceInfo],
        shutdown: CancellationToken,
    ) -> Self {
        let mut caches = BTreeMap::new();
        for info in resources {
            let prefix = info.storage_prefix();
            caches.entry(prefix.clone()).or_insert_with(|| {
                let cache = Arc::new(ResourceCache::new(prefix));
                tokio::spawn(cache.clone().feed(store.clone(), shutdown.clone()));
                cache
            });
        }
        WatchCache { caches }
    }

    pub fn for_resource(&self, info: &ResourceInfo) -> Option<&Arc<ResourceCache>> {
        self.caches.get(&info.storage_prefix())
    }

    /// Waits until every cache has loaded.
    pub async fn wait_synced(&self) {
        for c in self.caches.values() {
            c.wait_synced().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::{EventKind, KeyValue, WatchEvent};

    fn put(key: &str, revision: Revision) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value: Bytes::from(format!(r#"{{"metadata":{{"name":"{key}"}}}}"#)),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    #[test]
    fn an_expected_object_is_taken_only_for_its_exact_bytes() {
        let cache = ResourceCache::new("/registry/x/".into());
        let ev = put("a", 3);
        // A marker the bytes do not say, to see which way the cache went.
        let handed = serde_json::json!({"metadata": {"name": "a", "uid": "handed"}});
        let guard = cache.expect("a", ev.kv.value.clone(), handed);
        cache.apply_group(vec![ev]);
        let got = cache.get("a").unwrap();
        assert_eq!(got["metadata"]["uid"], "handed");
        assert_eq!(got["metadata"]["resourceVersion"], "3");
        assert!(cache.expected().is_empty(), "taken, not copied");
        drop(guard);

        // Other bytes for the key (another writer's): decoded, and the entry stays until its
        // create is over.
        let guard = cache.expect("b", Bytes::from_static(b"{}"), serde_json::json!({"x": 1}));
        cache.apply_group(vec![put("b", 4)]);
        assert_eq!(cache.get("b").unwrap()["metadata"]["name"], "b");
        assert_eq!(cache.expected().len(), 1);
        drop(guard);
        assert!(cache.expected().is_empty());
    }

    #[test]
    fn a_committed_object_waits_for_its_event_and_no_longer() {
        let cache = ResourceCache::new("/registry/x/".into());
        cache.apply_group(vec![put("z", 2)]);
        let handed = serde_json::json!({"metadata": {"name": "a", "uid": "handed"}});
        // The store answers before the watch event arrives: the object stays for the event.
        let ev = put("a", 3);
        cache
            .expect("a", ev.kv.value.clone(), handed.clone())
            .committed(3);
        assert_eq!(cache.expected().len(), 1);
        cache.apply_group(vec![ev]);
        assert_eq!(cache.get("a").unwrap()["metadata"]["uid"], "handed");
        assert!(cache.expected().is_empty());

        // An event already seen: nothing is left waiting.
        cache
            .expect("b", Bytes::from_static(b"{}"), handed.clone())
            .committed(3);
        assert!(cache.expected().is_empty());

        // An event that never takes its object (other bytes): dropped once the cache has
        // passed its revision.
        cache
            .expect("c", Bytes::from_static(b"{}"), handed)
            .committed(4);
        assert_eq!(cache.expected().len(), 1);
        cache.apply_group(vec![put("c", 4)]);
        assert_eq!(cache.get("c").unwrap()["metadata"]["name"], "c");
        assert!(cache.expected().is_empty());
    }

    #[test]
    fn the_resource_version_goes_into_the_top_level_metadata_of_encoded_json() {
        let objects = [
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "\"metadata\":{"}}),
            serde_json::json!({"kind": "Deployment", "spec": {"template": {"metadata": {"labels": {"x": "y"}}}}, "metadata": {"name": "d"}}),
            serde_json::json!({"data": ["\\", "{[", "\"metadata\":{\"x\":1}"], "metadata": {}}),
            serde_json::json!({"a": {"metadata": {}}, "metadata": {"annotations": {"metadata": "{}"}}}),
        ];
        for obj in objects {
            let json = serde_json::to_vec(&obj).unwrap();
            let spliced = with_resource_version(&json, 42).expect("has metadata");
            let parsed: Value = serde_json::from_slice(&spliced).expect("valid JSON");
            let mut want = obj.clone();
            set_resource_version(&mut want, 42);
            assert_eq!(parsed, want, "{}", String::from_utf8_lossy(&spliced));
        }
        let none = serde_json::to_vec(&serde_json::json!({"spec": {"metadata": {}}})).unwrap();
        assert_eq!(with_resource_version(&none, 1), None);
    }

    #[test]
    fn events_at_gives_a_whole_revision_while_history_holds_it() {
        let cache = ResourceCache::new("/registry/x/".into());
        cache.apply_group(vec![put("a", 5)]);
        cache.apply_group(vec![put("b", 6), put("c", 6), put("d", 6)]);
        cache.apply_group(vec![put("e", 7)]);
        let keys = |r| -> Option<Vec<String>> {
            cache
                .events_at(r)
                .map(|evs| evs.iter().map(|e| e.key.clone()).collect())
        };
        assert_eq!(keys(6), Some(vec!["b".into(), "c".into(), "d".into()]));
        assert_eq!(keys(7), Some(vec!["e".into()]));
        assert_eq!(keys(8), Some(vec![]));
        // Push revision 5 and part of 6 out of the history.
        let filler: Vec<WatchEvent> = (0..HISTORY - 2).map(|i| put(&format!("f{i}"), 8)).collect();
        cache.apply_group(filler);
        assert_eq!(keys(5), None);
        assert_eq!(keys(6), None);
        assert_eq!(keys(7), Some(vec!["e".into()]));
    }
}
