//! Client watches: `?watch=1` streams of newline-delimited JSON events over chunked HTTP, fed
//! by the watch cache (or straight from the store for a resourceVersion older than the cache's
//! window), with selectors, bookmarks, timeouts and 410 Gone.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt};
use http::{HeaderValue, header};
use serde_json::{Value, json};
use skiff_api::ResourceInfo;
use skiff_api::selectors::{FieldSelector, LabelSelector};
use skiff_store::{EventKind, Revision, StoreError};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::cache::{CacheEvent, EventType, decode};
use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, storage_info, to_external};
use crate::render;
use crate::request::{Format, Params};

/// How often an idle watch with `allowWatchBookmarks` gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

struct Filter {
    key_prefix: String,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|l| l.matches(obj.pointer("/metadata/labels").and_then(Value::as_object)))
            && self.fields.as_ref().is_none_or(|f| f.matches(obj))
    }

    fn trivial(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// What a watcher with this filter sees of `ev`: the event type, or nothing. An object
    /// that starts matching is ADDED, one that stops matching is DELETED.
    fn view(&self, ev: &CacheEvent) -> Option<EventType> {
        if !ev.key.starts_with(&self.key_prefix) {
            return None;
        }
        if self.trivial() {
            return Some(ev.ty);
        }
        let now = self.matches(&ev.object);
        let before = ev.prev.as_deref().is_some_and(|p| self.matches(p));
        match ev.ty {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => (now || before).then_some(EventType::Deleted),
            EventType::Modified => match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            },
        }
    }
}

/// Where a watch's events come from.
enum Source {
    Cache {
        replay: Vec<Arc<CacheEvent>>,
        live: tokio::sync::broadcast::Receiver<Arc<CacheEvent>>,
        state: bool,
    },
    Store(skiff_store::WatchStream),
}

fn error_line(err: &ApiError) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": "ERROR", "object": err.to_status() }))
        .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn store_event(ev: skiff_store::WatchEvent) -> Result<Arc<CacheEvent>, StoreError> {
    let rev = ev.revision();
    let obj = Arc::new(decode(&ev.kv.value, rev)?);
    let prev = match &ev.prev {
        Some(p) => Some(Arc::new(decode(&p.value, p.mod_revision)?)),
        None => None,
    };
    let ty = match ev.kind {
        EventKind::Delete => EventType::Deleted,
        EventKind::Put if ev.kv.create_revision == ev.kv.mod_revision => EventType::Added,
        EventKind::Put => EventType::Modified,
    };
    Ok(Arc::new(CacheEvent::new(
        ty,
        rev,
        ev.kv.key.clone(),
        obj,
        prev,
    )))
}

/// Serves `GET ...?watch=1`.
pub async fn serve(
    registry: Arc<Registry>,
    info: &'static ResourceInfo,
    ns: Option<String>,
    name: Option<String>,
    params: Params,
    format: Format,
) -> ApiResult<Response> {
    let labels = match params.get("labelSelector") {
        Some(s) => Some(LabelSelector::parse(s).map_err(ApiError::bad_request)?),
        None => None,
    };
    let mut fields = params.get("fieldSelector").map(String::from);
    // A watch on a single object (`.../pods/x?watch=1`) is a field selector on its name.
    if let Some(n) = &name {
        let sel = format!("metadata.name={n}");
        fields = Some(match fields {
            Some(f) => format!("{f},{sel}"),
            None => sel,
        });
    }
    let fields = match fields {
        Some(s) => Some(FieldSelector::parse(&s, info).map_err(ApiError::bad_request)?),
        None => None,
    };
    let storage = storage_info(info);
    let key_prefix = match &ns {
        Some(ns) if info.namespaced => format!("{}{ns}/", storage.storage_prefix()),
        _ => storage.storage_prefix(),
    };
    let filter = Filter {
        key_prefix: key_prefix.clone(),
        labels,
        fields,
    };
    let bookmarks = params.flag("allowWatchBookmarks");
    let send_initial = params.flag("sendInitialEvents");
    let timeout = match params.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        // Like kube-apiserver: a random timeout between 30 and 60 minutes spreads re-watches.
        _ => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let cache = registry
        .cache
        .for_resource(info)
        .cloned()
        .ok_or_else(|| ApiError::internal("no watch cache for resource"))?;
    cache.wait_synced().await;

    let rv_param = params.get("resourceVersion").map(String::from);
    let (source, start_rev) = match rv_param.as_deref() {
        None | Some("0") => {
            let sub = cache.subscribe_with_state(&key_prefix);
            (
                Source::Cache {
                    replay: sub.replay,
                    live: sub.live,
                    state: true,
                },
                sub.revision,
            )
        }
        Some(rv) => {
            let after: Revision = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
            if send_initial {
                return Err(ApiError::bad_request(
                    "sendInitialEvents is only supported with an empty or \"0\" resourceVersion",
                ));
            }
            match cache.subscribe_after(after) {
                Some(sub) => (
                    Source::Cache {
                        replay: sub.replay,
                        live: sub.live,
                        state: false,
                    },
                    after,
                ),
                None => match registry.store.watch(&key_prefix, after).await {
                    Ok(s) => (Source::Store(s), after),
                    Err(StoreError::Compacted { .. }) => {
                        // As kube-apiserver: the watch starts, then says 410 in an ERROR event.
                        let err = ApiError::gone(format!(
                            "too old resource version: {after} ({})",
                            cache.revision()
                        ));
                        return Ok(stream_response(
                            futures::stream::once(async move { Ok(error_line(&err)) }).boxed(),
                        ));
                    }
                    Err(e) => return Err(ApiError::from_store(e, info, "")),
                },
            }
        }
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(pump(
        info,
        filter,
        source,
        start_rev,
        send_initial,
        bookmarks,
        timeout,
        format,
        params,
        cache,
        tx,
    ));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Ok(stream_response(stream.boxed()))
}

fn stream_response(
    stream: futures::stream::BoxStream<'static, Result<Bytes, Infallible>>,
) -> Response {
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// Encodes one event for this watcher.
fn encode(
    info: &ResourceInfo,
    ev: &CacheEvent,
    ty: EventType,
    format: Format,
    params: &Params,
) -> Bytes {
    let plain = format == Format::Json && ty == ev.ty && info.version == info.storage_version;
    if plain {
        return ev.json_line();
    }
    let obj = to_external(info, (*ev.object).clone());
    let obj = render::object(info, obj, format, params);
    let mut line =
        serde_json::to_vec(&json!({ "type": ty.as_str(), "object": obj })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(info: &ResourceInfo, rev: Revision, initial_end: bool) -> Bytes {
    let mut meta = json!({ "resourceVersion": rev.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let obj = json!({ "kind": info.kind, "apiVersion": info.api_version(), "metadata": meta });
    let mut line =
        serde_json::to_vec(&json!({ "type": "BOOKMARK", "object": obj })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Moves events from the source to the client until the timeout, the client leaves, or the
/// source ends.
async fn pump(
    info: &'static ResourceInfo,
    filter: Filter,
    source: Source,
    start_rev: Revision,
    initial: bool,
    bookmarks: bool,
    timeout: Duration,
    format: Format,
    params: Params,
    cache: Arc<crate::cache::ResourceCache>,
    tx: mpsc::Sender<Bytes>,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut last = start_rev;
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    // Only events after the requested revision go out. Sources never repeat an event, so no
    // other de-duplication is needed (and several events may share one revision).
    let send = |ev: &CacheEvent, last: &mut Revision| -> Option<Bytes> {
        if ev.revision <= start_rev {
            return None;
        }
        let ty = filter.view(ev)?;
        *last = (*last).max(ev.revision);
        Some(encode(info, ev, ty, format, &params))
    };
    match source {
        Source::Cache {
            replay,
            mut live,
            state,
        } => {
            for ev in replay {
                // The current state (synthetic ADDED events) goes out whole; history only
                // after the requested revision.
                let line = if state {
                    filter
                        .view(&ev)
                        .map(|ty| encode(info, &ev, ty, format, &params))
                } else {
                    send(&ev, &mut last)
                };
                if let Some(line) = line
                    && tx.send(line).await.is_err()
                {
                    return;
                }
            }
            if initial && tx.send(bookmark(info, last, true)).await.is_err() {
                return;
            }
            let mut seen = Seen::default();
            loop {
                tokio::select! {
                    r = live.recv() => match r {
                        Ok(ev) => {
                            seen.note(&ev);
                            if let Some(line) = send(&ev, &mut last)
                                && tx.send(line).await.is_err()
                            {
                                return;
                            }
                        }
                        // Fell too far behind: end the stream (the client re-watches from its
                        // last resourceVersion), after the rest of the revision it was in.
                        Err(RecvError::Lagged(_)) => {
                            finish_revision(&cache, seen, &send, &tx, &mut last).await;
                            return;
                        }
                        // The cache reloaded: end the stream.
                        Err(RecvError::Closed) => return,
                    },
                    _ = ticker.tick(), if bookmarks => {
                        // A bookmark must not claim a revision whose events this client has
                        // not been sent: the cache queues a revision's events whole before its
                        // revision can be read, so send what is queued first. If that reached
                        // into a revision still being queued, wait for the next tick.
                        let ready = cache.revision();
                        match drain(&mut live, &send, &tx, &mut last, &mut seen, None).await {
                            Drained::Stop => return,
                            Drained::Lagged => {
                                finish_revision(&cache, seen, &send, &tx, &mut last).await;
                                return;
                            }
                            Drained::Done if last <= ready => {
                                last = ready;
                                if tx.send(bookmark(info, last, false)).await.is_err() {
                                    return;
                                }
                            }
                            Drained::Done => {}
                        }
                    }
                    _ = &mut deadline => {
                        // End between revisions, never inside one (several keys written in
                        // one transaction share a revision): the client resumes after the
                        // last revision it saw, so the rest of that one goes out first.
                        // Reading the revision waits for a revision being queued to be whole.
                        let _ = cache.revision();
                        let until = last;
                        let drained =
                            drain(&mut live, &send, &tx, &mut last, &mut seen, Some(until)).await;
                        if let Drained::Lagged = drained {
                            finish_revision(&cache, seen, &send, &tx, &mut last).await;
                        }
                        return;
                    }
                    _ = tx.closed() => return,
                }
            }
        }
        Source::Store(mut stream) => loop {
            tokio::select! {
                n = stream.next() => match n {
                    Some(Ok(ev)) => match store_event(ev) {
                        Ok(ev) => {
                            if let Some(line) = send(&ev, &mut last)
                                && tx.send(line).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(error_line(&ApiError::internal(e.to_string()))).await;
                            return;
                        }
                    },
                    Some(Err(StoreError::Compacted { .. })) => {
                        let _ = tx.send(error_line(&ApiError::gone(format!("too old resource version: {last}")))).await;
                        return;
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(error_line(&ApiError::internal(e.to_string()))).await;
                        return;
                    }
                    None => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(bookmark(info, last, false)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => {
                    // As above: finish the revision the client last saw (etcd sends a
                    // revision's events in one response, so the rest is ready at once).
                    while let Some(Some(Ok(ev))) = stream.next().now_or_never() {
                        let Ok(ev) = store_event(ev) else { return };
                        if ev.revision > last {
                            return;
                        }
                        if let Some(line) = send(&ev, &mut last)
                            && tx.send(line).await.is_err()
                        {
                            return;
                        }
                    }
                    return;
                }
                _ = tx.closed() => return,
            }
        },
    }
}

enum Drained {
    /// The queue is empty (or the next event is past `until`).
    Done,
    /// The client left, or the cache reloaded: end the stream.
    Stop,
    /// The watcher fell behind and events were dropped.
    Lagged,
}

/// The revision of the last event a watcher received from the cache, and how many of that
/// revision's events it received (a revision's events arrive together and in order).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    revision: Revision,
    count: usize,
}

impl Seen {
    fn note(&mut self, ev: &CacheEvent) {
        if ev.revision == self.revision {
            self.count += 1;
        } else {
            self.revision = ev.revision;
            self.count = 1;
        }
    }
}

/// After a watcher fell behind (the events it missed are gone from its queue): sends the rest
/// of the revision it was in the middle of, from the cache's history, so that a client resuming
/// from the last resourceVersion it saw misses none of it; if the history no longer holds that
/// revision, an ERROR 410 instead (the client lists again).
async fn finish_revision(
    cache: &crate::cache::ResourceCache,
    seen: Seen,
    send: &impl Fn(&CacheEvent, &mut Revision) -> Option<Bytes>,
    tx: &mpsc::Sender<Bytes>,
    last: &mut Revision,
) {
    if seen.revision == 0 {
        return;
    }
    match cache.events_at(seen.revision) {
        Some(events) => {
            for ev in events.iter().skip(seen.count) {
                if let Some(line) = send(ev, last)
                    && tx.send(line).await.is_err()
                {
                    return;
                }
            }
        }
        None => {
            let gone = ApiError::gone(format!("too old resource version: {}", seen.revision));
            let _ = tx.send(error_line(&gone)).await;
        }
    }
}

/// Sends the events already queued for this watcher, up to revision `until` if given (a later
/// one is dropped: the client gets it again when it resumes).
async fn drain(
    live: &mut tokio::sync::broadcast::Receiver<Arc<CacheEvent>>,
    send: &impl Fn(&CacheEvent, &mut Revision) -> Option<Bytes>,
    tx: &mpsc::Sender<Bytes>,
    last: &mut Revision,
    seen: &mut Seen,
    until: Option<Revision>,
) -> Drained {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match live.try_recv() {
            Ok(ev) => {
                seen.note(&ev);
                if until.is_some_and(|u| ev.revision > u) {
                    return Drained::Done;
                }
                if let Some(line) = send(&ev, last)
                    && tx.send(line).await.is_err()
                {
                    return Drained::Stop;
                }
            }
            Err(TryRecvError::Empty) => return Drained::Done,
            Err(TryRecvError::Lagged(_)) => return Drained::Lagged,
            Err(_) => return Drained::Stop,
        }
    }
}
