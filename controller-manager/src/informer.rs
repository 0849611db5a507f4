//! Shared informers: one kube-runtime watcher per resource type, applied to a kube-runtime
//! reflector store that every controller reads, and change notifications fanned out to the
//! controllers that registered for them. (One watch and one cache per type for the whole
//! process, as client-go's shared informer factory, however many controllers look at pods.)

use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What happened to an object.
pub enum Change<'a, K> {
    /// Added (`old` is None) or updated.
    Applied {
        old: Option<&'a K>,
        new: &'a K,
    },
    Deleted(&'a K),
    /// A complete (re)list finished: every object may have changed.
    Resynced,
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

/// The bounds every informed type meets.
pub trait Object:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}
impl<K> Object for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

pub struct Informer<K: Object> {
    api: Api<K>,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

impl<K: Object> Informer<K> {
    pub fn new(api: Api<K>) -> Arc<Informer<K>> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            api,
            store,
            writer: Mutex::new(Some(writer)),
            handlers: RwLock::new(Vec::new()),
            synced: watch::channel(false).0,
        })
    }

    /// Calls `handler` for every change, after the store reflects it.
    pub fn on_change(&self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers
            .write()
            .expect("handlers lock")
            .push(Box::new(handler));
    }

    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let mut r = ObjectRef::new(name);
        if let Some(ns) = namespace {
            r = r.within(ns);
        }
        self.store.get(&r)
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Every object in `namespace`.
    pub fn list_in(&self, namespace: &str) -> Vec<Arc<K>> {
        self.store
            .state()
            .into_iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .collect()
    }

    /// Waits until the first complete list is in the store.
    pub async fn synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn notify(&self, change: &Change<'_, K>) {
        for h in self.handlers.read().expect("handlers lock").iter() {
            h(change);
        }
    }

    /// Watches until `shutdown`. `managedFields` are dropped on the way in: no controller
    /// reads them and they are a large share of every object.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut writer) = self.writer.lock().expect("writer lock").take() else {
            return;
        };
        let stream = watcher(self.api.clone(), watcher::Config::default())
            .default_backoff()
            .modify(|o| {
                o.meta_mut().managed_fields = None;
            });
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = shutdown.cancelled() => return,
            };
            let event = match event {
                None => return,
                Some(Err(e)) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    continue;
                }
                Some(Ok(e)) => e,
            };
            match &event {
                watcher::Event::Apply(obj) => {
                    let old = self.store.get(&ObjectRef::from_obj(obj));
                    writer.apply_watcher_event(&event);
                    self.notify(&Change::Applied {
                        old: old.as_deref(),
                        new: obj,
                    });
                }
                watcher::Event::Delete(obj) => {
                    writer.apply_watcher_event(&event);
                    self.notify(&Change::Deleted(obj));
                }
                watcher::Event::InitDone => {
                    writer.apply_watcher_event(&event);
                    self.synced.send_replace(true);
                    self.notify(&Change::Resynced);
                }
                watcher::Event::Init | watcher::Event::InitApply(_) => {
                    writer.apply_watcher_event(&event);
                }
            }
        }
    }
}

/// `namespace/name` (or `name` for cluster-scoped objects): the work queues' key.
pub fn key_of<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or_default()),
        None => obj.meta().name.clone().unwrap_or_default(),
    }
}

/// Splits a key into (namespace, name).
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}
