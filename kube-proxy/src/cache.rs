//! Compact caches: a shared informer ([`skiff_client::informer`]) per kind keeps, instead of
//! the objects themselves, what the proxy needs of each ([`crate::model::Svc`],
//! [`crate::model::Slice`], a Node's name, podCIDR and addresses), and this records which keys
//! changed since the last sync.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kube::Api;
use kube::runtime::watcher;
use skiff_client::informer::{Change, Informer, Object};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The compact copies of one kind's objects, by `namespace/name` (`name` for Nodes).
pub struct Cache<T> {
    informer: Arc<Informer<T>>,
    changes: Arc<Mutex<Changes>>,
}

/// What changed since the last [`Cache::take_changes`]: some keys, or (after a relist, and
/// at first) possibly everything.
#[derive(Debug, Default)]
pub struct Changes {
    pub all: bool,
    pub keys: HashSet<String>,
}

impl<T: Send + Sync + 'static> Cache<T> {
    /// Every entry (in no particular order).
    pub fn values(&self) -> Vec<Arc<T>> {
        self.informer.list()
    }

    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        self.informer.get_key(key)
    }

    /// Every entry with its key.
    pub fn entries(&self) -> Vec<(String, Arc<T>)> {
        self.informer.entries()
    }

    /// The changes since the last call (the first call says everything changed).
    pub fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().expect("changes lock"))
    }

    /// Waits for the first complete list.
    pub async fn wait_until_ready(&self) {
        self.informer.synced().await
    }
}

/// Starts an informer on `api` that keeps `convert(object)` for each object (none when it
/// returns `None`) and notifies `changed` after every change, until `stop`.
pub fn watch<K: Object, T: Send + Sync + 'static>(
    api: Api<K>,
    convert: fn(&K) -> Option<T>,
    changed: Arc<Notify>,
    stop: CancellationToken,
) -> Cache<T> {
    let informer = Informer::mapped(api, watcher::Config::default(), move |o: K| convert(&o));
    let changes = Arc::new(Mutex::new(Changes {
        all: true,
        keys: HashSet::new(),
    }));
    let noted = changes.clone();
    informer.on_keyed_change(move |key, change| {
        let mut c = noted.lock().expect("changes lock");
        match (key, change) {
            (Some(k), Change::Applied { .. } | Change::Deleted(_)) => {
                tracing::debug!(key = %k, "changed");
                c.keys.insert(k.to_string());
            }
            _ => c.all = true,
        }
        drop(c);
        changed.notify_one();
    });
    tokio::spawn(informer.clone().run(stop));
    Cache { informer, changes }
}
