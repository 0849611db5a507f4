//! The one informer: a kube-runtime watcher feeding a typed store keyed `namespace/name`
//! (`name` for cluster-scoped objects), change notifications in the order the store applied
//! them, a synced signal, and a stop on shutdown. Every program that reads the API through a
//! cache (scheduler, controller-manager, kubelet, proxy) uses this, as client-go programs
//! share `SharedInformer`.
//!
//! The store keeps `T`, which is the watched object itself ([`Informer::new`]) or what a program
//! keeps of it ([`Informer::mapped`]): the controller-manager decodes pods straight into a
//! compact form, and the proxy keeps only what its rules need, so that a cache of 10,000
//! objects stays small.
//!
//! A relist (at start, and after a watch expired with 410 Gone) replaces the whole store at
//! once, as a reflector does; objects it no longer shows are reported [`Change::Deleted`], and
//! then [`Change::Resynced`] says that any object may have changed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// What happened to an object, as a handler sees it (borrowed from the store).
pub enum Change<'a, T> {
    /// Added (`old` is None) or updated.
    Applied { old: Option<&'a T>, new: &'a T },
    /// Deleted, or gone from a relist; the object is the last state the store had.
    Deleted(&'a T),
    /// A complete (re)list finished: every object may have changed.
    Resynced,
}

/// What happened to an object, as a [`Informer::changes`] stream carries it.
#[derive(Debug)]
pub enum Event<T> {
    Applied { old: Option<Arc<T>>, new: Arc<T> },
    Deleted(Arc<T>),
    Resynced,
}

impl<T> Clone for Event<T> {
    fn clone(&self) -> Self {
        match self {
            Event::Applied { old, new } => Event::Applied {
                old: old.clone(),
                new: new.clone(),
            },
            Event::Deleted(o) => Event::Deleted(o.clone()),
            Event::Resynced => Event::Resynced,
        }
    }
}

/// The bounds every watched type meets.
pub trait Object:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}
impl<K> Object for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// A handler, with the key of the object that changed (`None` for [`Change::Resynced`]).
type Handler<T> = Box<dyn Fn(Option<&str>, &Change<'_, T>) + Send + Sync>;

/// One watch event with the key of its object and what the store keeps of it (`None`: the
/// program keeps nothing of this object, which counts as its deletion).
enum Item<T> {
    Begin,
    Listed(String, Option<T>),
    Done,
    Applied(String, Option<T>),
    Deleted(String),
}

type Source<T> = BoxStream<'static, Result<Item<T>, watcher::Error>>;

/// A watched kind's cache: see the module documentation.
pub struct Informer<T> {
    kind: String,
    store: RwLock<HashMap<String, Arc<T>>>,
    source: Mutex<Option<Source<T>>>,
    handlers: RwLock<Vec<Handler<T>>>,
    streams: Mutex<Vec<mpsc::UnboundedSender<Event<T>>>>,
    synced: watch::Sender<bool>,
}

/// `namespace/name`, or `name` for a cluster-scoped object: the one key of stores and queues.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    key(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The key of `name` in `namespace` (see [`key_of`]).
pub fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key into (namespace, name).
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

impl<K: Object> Informer<K> {
    /// Watches every object of `api` (all of its namespaces, or one).
    pub fn new(api: Api<K>) -> Arc<Informer<K>> {
        Self::mapped(api, watcher::Config::default(), Some)
    }

    /// Watches the objects of `api` that `config` selects (label and field selectors).
    pub fn with_config(api: Api<K>, config: watcher::Config) -> Arc<Informer<K>> {
        Self::mapped(api, config, Some)
    }
}

impl<T: Send + Sync + 'static> Informer<T> {
    /// Watches `api` and keeps `convert(object)` for each object; an object it returns `None`
    /// for is not kept (and one that was kept is reported deleted). `managedFields` are dropped
    /// before `convert` sees an object: no program reads them, and they are a large share of
    /// every object.
    pub fn mapped<K: Object>(
        api: Api<K>,
        config: watcher::Config,
        convert: impl Fn(K) -> Option<T> + Send + 'static,
    ) -> Arc<Informer<T>> {
        let events = watcher(api, config)
            .default_backoff()
            .modify(|o| o.meta_mut().managed_fields = None);
        Self::from_events(events, convert)
    }

    /// An informer fed by `events` (a watcher's stream, or a test's).
    fn from_events<K: Object>(
        events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
        convert: impl Fn(K) -> Option<T> + Send + 'static,
    ) -> Arc<Informer<T>> {
        let source = events
            .map_ok(move |event| match event {
                watcher::Event::Init => Item::Begin,
                watcher::Event::InitApply(o) => Item::Listed(key_of(&o), convert(o)),
                watcher::Event::InitDone => Item::Done,
                watcher::Event::Apply(o) => Item::Applied(key_of(&o), convert(o)),
                watcher::Event::Delete(o) => Item::Deleted(key_of(&o)),
            })
            .boxed();
        Arc::new(Informer {
            kind: K::kind(&()).to_string(),
            store: RwLock::default(),
            source: Mutex::new(Some(source)),
            handlers: RwLock::default(),
            streams: Mutex::default(),
            synced: watch::channel(false).0,
        })
    }

    /// Calls `handler` for every change, right after the store reflects it. Handlers run on the
    /// informer's task, in order: they should only note what changed (queue a key, wake a loop).
    /// Register them before [`Informer::run`], or the first list's changes are missed.
    pub fn on_change(&self, handler: impl Fn(&Change<'_, T>) + Send + Sync + 'static) {
        self.on_keyed_change(move |_, change| handler(change));
    }

    /// [`Informer::on_change`] for a handler that also needs the key of the object that changed
    /// (`None` for [`Change::Resynced`]), when `T` does not know its own.
    pub fn on_keyed_change(
        &self,
        handler: impl Fn(Option<&str>, &Change<'_, T>) + Send + Sync + 'static,
    ) {
        self.handlers
            .write()
            .expect("handlers lock")
            .push(Box::new(handler));
    }

    /// Every change from now on, as a stream of owned events (for a consumer that awaits
    /// between them).
    pub fn changes(&self) -> mpsc::UnboundedReceiver<Event<T>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.streams.lock().expect("streams lock").push(tx);
        rx
    }

    /// The object under `key` (see [`key_of`]).
    pub fn get_key(&self, key: &str) -> Option<Arc<T>> {
        self.store.read().expect("store lock").get(key).cloned()
    }

    /// The object `name` in `namespace` (`None` for a cluster-scoped one).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<T>> {
        self.get_key(&key(namespace, name))
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.store
            .read()
            .expect("store lock")
            .values()
            .cloned()
            .collect()
    }

    /// Every object in `namespace`.
    pub fn list_in(&self, namespace: &str) -> Vec<Arc<T>> {
        let store = self.store.read().expect("store lock");
        store
            .iter()
            .filter(|(k, _)| split_key(k).0 == Some(namespace))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every object with its key.
    pub fn entries(&self) -> Vec<(String, Arc<T>)> {
        let store = self.store.read().expect("store lock");
        store.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Whether the first complete list is in the store.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first complete list is in the store.
    pub async fn synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Watches until `shutdown` (a second call returns at once: one watch per informer).
    /// Watch failures are logged and retried with kube-runtime's backoff.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut source) = self.source.lock().expect("source lock").take() else {
            return;
        };
        let mut relist: Option<HashMap<String, Arc<T>>> = None;
        loop {
            let item = tokio::select! {
                i = source.next() => i,
                _ = shutdown.cancelled() => return,
            };
            match item {
                None => return,
                Some(Err(e)) => {
                    tracing::warn!(kind = %self.kind, error = %e, "watch failed; retrying");
                }
                Some(Ok(Item::Begin)) => relist = Some(HashMap::new()),
                Some(Ok(Item::Listed(key, value))) => {
                    if let (Some(buffer), Some(v)) = (relist.as_mut(), value) {
                        buffer.insert(key, Arc::new(v));
                    }
                }
                Some(Ok(Item::Done)) => self.replace(relist.take().unwrap_or_default()),
                Some(Ok(Item::Applied(key, Some(v)))) => {
                    let new = Arc::new(v);
                    // An update replaces the value in place: the key is copied only for a new
                    // object (updates are most of the events).
                    let old = {
                        let mut store = self.store.write().expect("store lock");
                        match store.get_mut(&key) {
                            Some(slot) => Some(std::mem::replace(slot, new.clone())),
                            None => {
                                store.insert(key.clone(), new.clone());
                                None
                            }
                        }
                    };
                    self.notify(Some(&key), Event::Applied { old, new });
                }
                Some(Ok(Item::Applied(key, None) | Item::Deleted(key))) => {
                    let old = self.store.write().expect("store lock").remove(&key);
                    if let Some(old) = old {
                        self.notify(Some(&key), Event::Deleted(old));
                    }
                }
            }
        }
    }

    /// Installs a complete list: what it lacks is deleted, then everything may have changed.
    fn replace(&self, listed: HashMap<String, Arc<T>>) {
        let old = std::mem::replace(&mut *self.store.write().expect("store lock"), listed);
        let gone: Vec<(String, Arc<T>)> = {
            let store = self.store.read().expect("store lock");
            old.into_iter()
                .filter(|(k, _)| !store.contains_key(k))
                .collect()
        };
        for (key, o) in gone {
            self.notify(Some(&key), Event::Deleted(o));
        }
        self.synced.send_replace(true);
        self.notify(None, Event::Resynced);
    }

    fn notify(&self, key: Option<&str>, event: Event<T>) {
        let change = match &event {
            Event::Applied { old, new } => Change::Applied {
                old: old.as_deref(),
                new: new.as_ref(),
            },
            Event::Deleted(o) => Change::Deleted(o.as_ref()),
            Event::Resynced => Change::Resynced,
        };
        for h in self.handlers.read().expect("handlers lock").iter() {
            h(key, &change);
        }
        let mut streams = self.streams.lock().expect("streams lock");
        streams.retain(|tx| tx.send(event.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};

    fn cm(ns: &str, name: &str, value: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c.data = Some([("v".to_string(), value.to_string())].into());
        c
    }

    fn value(c: &ConfigMap) -> &str {
        &c.data.as_ref().unwrap()["v"]
    }

    /// An informer, the sender that feeds it watch events, and the changes it reported.
    type Fed<T, K> = (
        Arc<Informer<T>>,
        futures::channel::mpsc::UnboundedSender<watcher::Event<K>>,
        Arc<Mutex<Vec<String>>>,
    );

    /// An informer fed from a channel, with every change it reports recorded as text.
    fn fed<T: Send + Sync + 'static, K: Object>(
        convert: fn(K) -> Option<T>,
        describe: fn(&T) -> String,
    ) -> Fed<T, K> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let events = rx.map(Ok);
        let informer = Informer::from_events(events, convert);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        informer.on_keyed_change(move |key, c| {
            let line = match c {
                Change::Applied { old, new } => format!(
                    "applied {} (was {:?}) at {}",
                    describe(new),
                    old.map(describe),
                    key.unwrap()
                ),
                Change::Deleted(o) => format!("deleted {} at {}", describe(o), key.unwrap()),
                Change::Resynced => "resynced".into(),
            };
            log.lock().unwrap().push(line);
        });
        (informer, tx, seen)
    }

    async fn settle<T: Send + Sync + 'static>(
        informer: &Arc<Informer<T>>,
        seen: &Arc<Mutex<Vec<String>>>,
        count: usize,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let got = seen.lock().unwrap().clone();
            if got.len() >= count {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {count} changes seen: {got:?}",
                got.len()
            );
            tokio::task::yield_now().await;
            let _ = informer;
        }
    }

    #[tokio::test]
    async fn keeps_objects_by_namespace_and_name_and_reports_changes_in_order() {
        let (informer, tx, seen) = fed(Some, |c: &ConfigMap| format!("{}={}", key_of(c), value(c)));
        let stop = CancellationToken::new();
        tokio::spawn(informer.clone().run(stop.clone()));
        tx.unbounded_send(watcher::Event::Init).unwrap();
        tx.unbounded_send(watcher::Event::InitApply(cm("a", "x", "1")))
            .unwrap();
        tx.unbounded_send(watcher::Event::InitDone).unwrap();
        informer.synced().await;
        assert!(informer.is_synced());
        tx.unbounded_send(watcher::Event::Apply(cm("a", "x", "2")))
            .unwrap();
        tx.unbounded_send(watcher::Event::Apply(cm("b", "x", "3")))
            .unwrap();
        tx.unbounded_send(watcher::Event::Delete(cm("a", "x", "2")))
            .unwrap();
        let got = settle(&informer, &seen, 4).await;
        assert_eq!(
            got,
            [
                "resynced",
                "applied a/x=2 (was Some(\"a/x=1\")) at a/x",
                "applied b/x=3 (was None) at b/x",
                "deleted a/x=2 at a/x",
            ]
        );
        assert!(informer.get(Some("a"), "x").is_none());
        assert_eq!(value(&informer.get_key("b/x").unwrap()), "3");
        assert_eq!(informer.list_in("b").len(), 1);
        assert!(informer.list_in("a").is_empty());
        stop.cancel();
    }

    #[tokio::test]
    async fn a_relist_replaces_the_store_and_reports_what_vanished() {
        let (informer, tx, seen) = fed(Some, |c: &ConfigMap| key_of(c));
        let stop = CancellationToken::new();
        tokio::spawn(informer.clone().run(stop.clone()));
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(cm("a", "kept", "1")),
            watcher::Event::InitApply(cm("a", "gone", "1")),
            watcher::Event::InitDone,
            // The watch expired: a relist that no longer shows `gone`.
            watcher::Event::Init,
            watcher::Event::InitApply(cm("a", "kept", "2")),
            watcher::Event::InitApply(cm("a", "new", "1")),
        ] {
            tx.unbounded_send(e).unwrap();
        }
        settle(&informer, &seen, 1).await;
        // Until the relist is complete, the store still shows the old list.
        assert!(informer.get(Some("a"), "gone").is_some());
        assert!(informer.get(Some("a"), "new").is_none());
        tx.unbounded_send(watcher::Event::InitDone).unwrap();
        let got = settle(&informer, &seen, 3).await;
        assert_eq!(got, ["resynced", "deleted a/gone at a/gone", "resynced"]);
        let mut keys: Vec<String> = informer.entries().into_iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, ["a/kept", "a/new"]);
        assert_eq!(value(&informer.get(Some("a"), "kept").unwrap()), "2");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_mapped_informer_keeps_what_the_program_keeps() {
        // Keeps the value's length; objects with an empty value are not kept.
        fn size(c: ConfigMap) -> Option<usize> {
            Some(value(&c).len()).filter(|n| *n > 0)
        }
        let (informer, tx, seen) = fed(size, |n: &usize| n.to_string());
        let mut stream = informer.changes();
        let stop = CancellationToken::new();
        tokio::spawn(informer.clone().run(stop.clone()));
        tx.unbounded_send(watcher::Event::Init).unwrap();
        tx.unbounded_send(watcher::Event::InitDone).unwrap();
        tx.unbounded_send(watcher::Event::Apply(cm("a", "x", "abc")))
            .unwrap();
        // Now kept as nothing: reported as a deletion of what was kept.
        tx.unbounded_send(watcher::Event::Apply(cm("a", "x", "")))
            .unwrap();
        // Never kept: nothing to report.
        tx.unbounded_send(watcher::Event::Delete(cm("a", "y", "")))
            .unwrap();
        tx.unbounded_send(watcher::Event::Apply(cm("a", "z", "ab")))
            .unwrap();
        let got = settle(&informer, &seen, 4).await;
        assert_eq!(
            got,
            [
                "resynced",
                "applied 3 (was None) at a/x",
                "deleted 3 at a/x",
                "applied 2 (was None) at a/z"
            ]
        );
        assert!(matches!(stream.recv().await, Some(Event::Resynced)));
        assert!(
            matches!(stream.recv().await, Some(Event::Applied { old: None, new }) if *new == 3)
        );
        assert!(matches!(stream.recv().await, Some(Event::Deleted(o)) if *o == 3));
        assert_eq!(informer.list().len(), 1);
        stop.cancel();
    }

    #[test]
    fn keys() {
        let mut ns = Namespace::default();
        ns.metadata.name = Some("kube-system".into());
        assert_eq!(key_of(&ns), "kube-system");
        assert_eq!(key_of(&cm("a", "b", "")), "a/b");
        assert_eq!(split_key("a/b"), (Some("a"), "b"));
        assert_eq!(split_key("b"), (None, "b"));
        assert_eq!(key(None, "n"), "n");
    }
}
