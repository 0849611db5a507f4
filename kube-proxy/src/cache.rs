//! Compact caches: a watcher per kind keeps, instead of the objects themselves (as a
//! reflector would), what the proxy needs of each ([`crate::model::Svc`],
//! [`crate::model::Slice`], a Node's name, podCIDR and addresses). A relist replaces the whole map at once, as a reflector's store
//! does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt as _;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The compact copies of one kind's objects, by `namespace/name`.
pub struct Cache<T> {
    map: Arc<RwLock<HashMap<String, Arc<T>>>>,
    changes: Arc<Mutex<Changes>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

/// What changed since the last [`Cache::take_changes`]: some keys, or (after a relist, and
/// at first) possibly everything.
#[derive(Debug, Default)]
pub struct Changes {
    pub all: bool,
    pub keys: HashSet<String>,
}

impl<T> Cache<T> {
    /// Every entry (in no particular order).
    pub fn values(&self) -> Vec<Arc<T>> {
        self.map
            .read()
            .expect("cache lock")
            .values()
            .cloned()
            .collect()
    }

    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        self.map.read().expect("cache lock").get(key).cloned()
    }

    /// Every entry with its key.
    pub fn entries(&self) -> Vec<(String, Arc<T>)> {
        self.map
            .read()
            .expect("cache lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The changes since the last call (the first call says everything changed).
    pub fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().expect("changes lock"))
    }

    /// Waits for the first complete list.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }
}

/// Starts a watcher on `api` that keeps `convert(object)` for each object (none when it
/// returns `None`) and notifies `changed` after every change, until `stop`.
pub fn watch<K, T>(
    api: Api<K>,
    convert: fn(&K) -> Option<T>,
    changed: Arc<Notify>,
    stop: CancellationToken,
) -> Cache<T>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    T: Send + Sync + 'static,
{
    let map: Arc<RwLock<HashMap<String, Arc<T>>>> = Arc::default();
    let changes = Arc::new(Mutex::new(Changes {
        all: true,
        keys: HashSet::new(),
    }));
    let noted = changes.clone();
    let note = move |key: Option<String>| {
        let mut c = noted.lock().expect("changes lock");
        match key {
            Some(k) => {
                c.keys.insert(k);
            }
            None => c.all = true,
        }
    };
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    let shared = map.clone();
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut relist: Option<HashMap<String, Arc<T>>> = None;
        let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = stop.cancelled() => return,
            };
            match event {
                None => return,
                Some(Err(e)) => tracing::warn!(error = %e, "watch failed; retrying"),
                Some(Ok(watcher::Event::Init)) => relist = Some(HashMap::new()),
                Some(Ok(watcher::Event::InitApply(o))) => {
                    if let (Some(buffer), Some(t)) = (relist.as_mut(), convert(&o)) {
                        buffer.insert(key(&o), Arc::new(t));
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(buffer) = relist.take() {
                        *shared.write().expect("cache lock") = buffer;
                        note(None);
                    }
                    let _ = ready_tx.send(true);
                    changed.notify_one();
                }
                Some(Ok(watcher::Event::Apply(o))) => {
                    let k = key(&o);
                    let mut m = shared.write().expect("cache lock");
                    match convert(&o) {
                        Some(t) => m.insert(k.clone(), Arc::new(t)),
                        None => m.remove(&k),
                    };
                    drop(m);
                    tracing::debug!(key = %k, "changed");
                    note(Some(k));
                    changed.notify_one();
                }
                Some(Ok(watcher::Event::Delete(o))) => {
                    let k = key(&o);
                    shared.write().expect("cache lock").remove(&k);
                    tracing::debug!(key = %k, "changed");
                    note(Some(k));
                    changed.notify_one();
                }
            }
        }
    });
    Cache {
        map,
        changes,
        ready,
    }
}
