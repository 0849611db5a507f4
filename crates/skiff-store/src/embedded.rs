//! The embedded backend: a durable single-file [`Store`] on redb with etcd's revision model,
//! for clusters that run without etcd (as k3s embeds SQLite through kine).
//!
//! Layout (one redb file):
//! - `kv`: key → (create revision, mod revision, value), the current state;
//! - `log`: revision → the write made at it, with the key's state just before, so watches
//!   can resume from any revision and a list at an old revision can undo newer writes;
//! - `meta`: the current revision and the compaction revision;
//! - `deadlines` and `expiry`: for keys written with a TTL, key → deadline and (deadline, key),
//!   so the writer finds what is due in deadline order and deletes it (see [`Store::create_with_ttl`]).
//!
//! Writes go through one writer thread that commits whatever is queued in one durable
//! transaction (group commit): each write still gets its own revision and its own result, but
//! many concurrent writers share one fsync. A write is acknowledged only after its commit
//! returned, so it survives `kill -9`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use tokio::sync::{broadcast, oneshot};

use crate::{
    EventKind, KeyValue, ListResult, Revision, Store, StoreError, WatchEvent, WatchStream,
};

/// A key's stored state: (create revision, mod revision, value).
type Row<'a> = (i64, i64, &'a [u8]);
/// One write: (kind, key, value written or empty for a delete, create revision of the key
/// after a put, the key's row just before the write).
type LogEntry<'a> = (u8, &'a str, &'a [u8], i64, Option<Row<'a>>);

/// key → its current row.
const KV: TableDefinition<&str, Row<'static>> = TableDefinition::new("kv");
/// revision → the write made at it.
const LOG: TableDefinition<i64, LogEntry<'static>> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// key → when it expires (milliseconds since the Unix epoch), for keys written with a TTL.
const DEADLINES: TableDefinition<&str, i64> = TableDefinition::new("deadlines");
/// (deadline, key) → (): the same, in the order the keys fall due.
const EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("expiry");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const LOG_PUT: u8 = 0;
const LOG_DELETE: u8 = 1;

/// The revision of an empty store, as in etcd: the first write gets revision 2.
const INITIAL_REVISION: Revision = 1;

/// Most writes committed in one transaction; bounds the latency a large queue adds.
const MAX_BATCH: usize = 1024;

/// How much a watch that resumes from an old revision reads from the log at a time: values
/// (and the previous values deletes and updates carry) up to this many bytes, and at most
/// `REPLAY_PAGE_ENTRIES` log entries looked at, so a replay over a long or large history holds
/// one page in memory, and reads the next only when the watcher has taken this one.
const REPLAY_PAGE_BYTES: usize = 4 << 20;
const REPLAY_PAGE_ENTRIES: usize = 10_000;

/// Commits (not events) a watcher may fall behind before its stream ends with an error. Slots
/// free their events once every receiver has seen them, so this bounds memory only for slow
/// watchers.
const BROADCAST_CAPACITY: usize = 1024;

/// A [`Store`] in one redb file. Cloning is cheap; clones share the file and the writer.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    /// `Option` so that `Drop` can close the channel, which tells the writer to stop.
    writer: Option<mpsc::Sender<WriteRequest>>,
    writer_thread: Option<JoinHandle<()>>,
    /// Every committed batch of events, in revision order.
    events: broadcast::Sender<Arc<[WatchEvent]>>,
    /// The revision of the last commit, published by the writer after each commit.
    revision: Arc<AtomicI64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer.take();
        // Joining makes "drop the store, then open the file again" work: redb refuses a second
        // open while the writer thread still holds the database.
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "embedded store writer thread panicked");
        }
    }
}

enum WriteOp {
    Create {
        key: String,
        value: Bytes,
        ttl: Option<Duration>,
    },
    Update {
        key: String,
        expected: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    },
    /// Deletes every key whose deadline is at or before `now` (ms since the epoch).
    Expire {
        now: i64,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

enum WriteOutcome {
    Written(Revision),
    Deleted(KeyValue, Revision),
    Compacted,
    /// The keys whose TTL ran out were deleted (nobody waits for this answer).
    Expired,
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

fn backend(err: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(format!("embedded store: {}", err.into()))
}

fn writer_gone() -> StoreError {
    StoreError::Backend("embedded store writer stopped; restart the apiserver".into())
}

impl EmbeddedStore {
    /// Opens the store in the file at `path`, creating it (and its parent directories) if
    /// needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_capacity(path, BROADCAST_CAPACITY)
    }

    /// `open` with a chosen watch buffer, so tests can make a watcher lag cheaply.
    fn open_with_capacity(path: &Path, watch_capacity: usize) -> Result<Self, StoreError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        // The store holds every object, Secrets included: its folder (0700) and file (0600)
        // are private from their creation on, never chmodded after the fact.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    StoreError::Backend(format!(
                        "cannot create the data directory {}: {e}",
                        dir.display()
                    ))
                })?;
        }
        // redb initialises an empty file as a new database.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                "{} is already open: is another apiserver using this data directory?",
                path.display()
            )),
            e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
        })?;

        // Create the tables up front: a read transaction cannot open a table that was never
        // created.
        let txn = db.begin_write().map_err(backend)?;
        let revision = {
            txn.open_table(KV).map_err(backend)?;
            txn.open_table(LOG).map_err(backend)?;
            txn.open_table(DEADLINES).map_err(backend)?;
            txn.open_table(EXPIRY).map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            read_meta(&meta, META_REVISION)?.unwrap_or(INITIAL_REVISION)
        };
        txn.commit().map_err(backend)?;

        let db = Arc::new(db);
        let next_deadline = {
            let txn = db.begin_read().map_err(backend)?;
            earliest_deadline(&txn.open_table(EXPIRY).map_err(backend)?)?
        };
        let revision = Arc::new(AtomicI64::new(revision));
        let (events, _) = broadcast::channel(watch_capacity);
        let (writer, requests) = mpsc::channel();
        let writer_thread = {
            let (db, events, revision) = (db.clone(), events.clone(), revision.clone());
            std::thread::Builder::new()
                .name("skiff-store-writer".into())
                .spawn(move || run_writer(&db, &requests, &events, &revision, next_deadline))
                .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                db,
                writer: Some(writer),
                writer_thread: Some(writer_thread),
                events,
                revision,
            }),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .writer
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(WriteRequest { op, reply })
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Runs `f` in a read transaction on the blocking pool: redb reads may touch the disk.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("embedded store read task failed: {e}")))?
    }
}

fn read_meta(
    meta: &impl ReadableTable<&'static str, i64>,
    name: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(meta.get(name).map_err(backend)?.map(|v| v.value()))
}

/// The current and compaction revisions as of `txn`.
fn read_revisions(txn: &ReadTransaction) -> Result<(Revision, Revision), StoreError> {
    let meta = txn.open_table(META).map_err(backend)?;
    Ok((
        read_meta(&meta, META_REVISION)?.unwrap_or(INITIAL_REVISION),
        read_meta(&meta, META_COMPACTED)?.unwrap_or(0),
    ))
}

fn kv_from_row(key: &str, (create_revision, mod_revision, value): Row<'_>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        create_revision,
        mod_revision,
    }
}

/// Rebuilds the watch event of one log entry.
fn event_from_log(revision: Revision, entry: LogEntry<'_>) -> WatchEvent {
    let (kind, key, value, create_revision, prev) = entry;
    let prev = prev.map(|row| kv_from_row(key, row));
    if kind == LOG_DELETE {
        let (value, create_revision) = prev
            .as_ref()
            .map(|p| (p.value.clone(), p.create_revision))
            .unwrap_or_default();
        WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_owned(),
                value,
                create_revision,
                mod_revision: revision,
            },
            prev,
        }
    } else {
        WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: Bytes::copy_from_slice(value),
                create_revision,
                mod_revision: revision,
            },
            prev,
        }
    }
}

/// Milliseconds since the Unix epoch: deadlines are wall-clock times, so they keep their meaning
/// across restarts.
fn now_millis() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The deadline of a write with `ttl` made at `now`.
fn deadline(now: i64, ttl: Duration) -> i64 {
    now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

fn earliest_deadline(
    expiry: &impl ReadableTable<(i64, &'static str), ()>,
) -> Result<Option<i64>, StoreError> {
    Ok(expiry
        .first()
        .map_err(backend)?
        .map(|(due, _)| due.value().0))
}

/// The writer thread: drains the queue, applies everything in one transaction, commits once,
/// then publishes the events and answers the callers. When a key's TTL runs out it also
/// deletes the expired keys, as one more write of a batch. It stops when every sender is gone.
fn run_writer(
    db: &Database,
    requests: &mpsc::Receiver<WriteRequest>,
    events: &broadcast::Sender<Arc<[WatchEvent]>>,
    revision: &AtomicI64,
    mut next_deadline: Option<i64>,
) {
    loop {
        // Sleep until a request comes or the earliest deadline passes.
        let first = match next_deadline {
            None => requests
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(due) => {
                let wait = u64::try_from(due.saturating_sub(now_millis())).unwrap_or(0);
                requests.recv_timeout(Duration::from_millis(wait))
            }
        };
        let mut batch = match first {
            Ok(request) => vec![request],
            Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let (mut ops, mut replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|r| (r.op, Some(r.reply))).unzip();
        let now = now_millis();
        if next_deadline.is_some_and(|due| due <= now) {
            ops.push(WriteOp::Expire { now });
            replies.push(None);
        }
        match commit_batch(db, ops) {
            Ok(committed) => {
                next_deadline = committed.next_deadline;
                // Publish the revision before the events, and both before answering: a caller
                // that hears "written at N" then asks for the current revision or watches from
                // N-1 must see N.
                revision.store(committed.revision, Ordering::Release);
                if !committed.events.is_empty() {
                    // An error only means that nobody is watching.
                    let _ = events.send(committed.events.into());
                }
                for (reply, result) in replies.into_iter().zip(committed.results) {
                    // The caller may have given up waiting; the write stands regardless (as in
                    // etcd, a cancelled request may still have been applied).
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store commit failed");
                let message = e.to_string();
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(StoreError::Backend(message.clone())));
                }
                // Try the expiry again a little later rather than in a tight loop.
                if next_deadline.is_some() {
                    next_deadline = Some(now_millis() + 1000);
                }
            }
        }
    }
}

struct Committed {
    results: Vec<Result<WriteOutcome, StoreError>>,
    events: Vec<WatchEvent>,
    revision: Revision,
    /// When the next key expires, after this batch.
    next_deadline: Option<i64>,
}

type KvTable<'t> = redb::Table<'t, &'static str, Row<'static>>;
type LogTable<'t> = redb::Table<'t, i64, LogEntry<'static>>;

/// A key's TTL bookkeeping: the deadline of each key written with a TTL, and the same in
/// deadline order.
struct Ttls<'t> {
    deadlines: redb::Table<'t, &'static str, i64>,
    expiry: redb::Table<'t, (i64, &'static str), ()>,
}

impl Ttls<'_> {
    /// Gives `key` the deadline `due`, or none, replacing the one it had.
    fn set(&mut self, key: &str, due: Option<i64>) -> Result<(), StoreError> {
        let old = self
            .deadlines
            .remove(key)
            .map_err(backend)?
            .map(|d| d.value());
        if let Some(old) = old {
            self.expiry.remove((old, key)).map_err(backend)?;
        }
        if let Some(due) = due {
            self.deadlines.insert(key, due).map_err(backend)?;
            self.expiry.insert((due, key), ()).map_err(backend)?;
        }
        Ok(())
    }

    /// The keys due at or before `now`.
    fn due(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        for entry in self
            .expiry
            .range(..(now.saturating_add(1), ""))
            .map_err(backend)?
        {
            let (due, _) = entry.map_err(backend)?;
            let (when, key) = due.value();
            if when > now {
                break;
            }
            keys.push(key.to_owned());
        }
        Ok(keys)
    }
}

/// Deletes the existing key `prev` at revision `rev`: the row goes, the log and the watchers
/// hear of it.
fn delete_row(
    kv: &mut KvTable<'_>,
    log: &mut LogTable<'_>,
    events: &mut Vec<WatchEvent>,
    prev: &KeyValue,
    rev: Revision,
) -> Result<(), StoreError> {
    let key = prev.key.as_str();
    kv.remove(key).map_err(backend)?;
    let before = Some((prev.create_revision, prev.mod_revision, &prev.value[..]));
    log.insert(rev, (LOG_DELETE, key, &[][..], 0, before))
        .map_err(backend)?;
    events.push(WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            mod_revision: rev,
            ..prev.clone()
        },
        prev: Some(prev.clone()),
    });
    Ok(())
}

/// Applies `ops` in one durable transaction. A failed precondition fails only its own op; a
/// storage error fails the whole batch and nothing is written.
fn commit_batch(db: &Database, ops: Vec<WriteOp>) -> Result<Committed, StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    match apply_ops(&txn, ops) {
        Ok(committed) => {
            txn.commit().map_err(backend)?;
            Ok(committed)
        }
        Err(e) => {
            if let Err(abort) = txn.abort() {
                tracing::warn!(error = %abort, "embedded store: aborting a failed batch failed");
            }
            Err(e)
        }
    }
}

fn apply_ops(txn: &WriteTransaction, ops: Vec<WriteOp>) -> Result<Committed, StoreError> {
    let mut kv = txn.open_table(KV).map_err(backend)?;
    let mut log = txn.open_table(LOG).map_err(backend)?;
    let mut meta = txn.open_table(META).map_err(backend)?;
    let mut ttls = Ttls {
        deadlines: txn.open_table(DEADLINES).map_err(backend)?,
        expiry: txn.open_table(EXPIRY).map_err(backend)?,
    };
    let now = now_millis();
    let mut rev = read_meta(&meta, META_REVISION)?.unwrap_or(INITIAL_REVISION);
    let mut compacted = read_meta(&meta, META_COMPACTED)?.unwrap_or(0);
    let mut results = Vec::with_capacity(ops.len());
    let mut events = Vec::new();

    for op in ops {
        let result = match op {
            WriteOp::Create { key, value, ttl } => {
                if kv.get(key.as_str()).map_err(backend)?.is_some() {
                    Err(StoreError::AlreadyExists { key })
                } else {
                    rev += 1;
                    ttls.set(&key, ttl.map(|ttl| deadline(now, ttl)))?;
                    kv.insert(key.as_str(), (rev, rev, value.as_ref()))
                        .map_err(backend)?;
                    log.insert(rev, (LOG_PUT, key.as_str(), value.as_ref(), rev, None))
                        .map_err(backend)?;
                    events.push(WatchEvent {
                        kind: EventKind::Put,
                        kv: KeyValue {
                            key,
                            value,
                            create_revision: rev,
                            mod_revision: rev,
                        },
                        prev: None,
                    });
                    Ok(WriteOutcome::Written(rev))
                }
            }
            WriteOp::Update {
                key,
                expected,
                value,
                ttl,
            } => {
                let current = kv
                    .get(key.as_str())
                    .map_err(backend)?
                    .map(|row| kv_from_row(&key, row.value()));
                match current {
                    None => Err(StoreError::NotFound { key }),
                    Some(current) if current.mod_revision != expected => {
                        Err(StoreError::Conflict {
                            key,
                            expected,
                            current: Some(current),
                        })
                    }
                    Some(prev) => {
                        rev += 1;
                        ttls.set(&key, ttl.map(|ttl| deadline(now, ttl)))?;
                        let create = prev.create_revision;
                        kv.insert(key.as_str(), (create, rev, value.as_ref()))
                            .map_err(backend)?;
                        let before =
                            Some((prev.create_revision, prev.mod_revision, &prev.value[..]));
                        log.insert(rev, (LOG_PUT, key.as_str(), value.as_ref(), create, before))
                            .map_err(backend)?;
                        events.push(WatchEvent {
                            kind: EventKind::Put,
                            kv: KeyValue {
                                key,
                                value,
                                create_revision: create,
                                mod_revision: rev,
                            },
                            prev: Some(prev),
                        });
                        Ok(WriteOutcome::Written(rev))
                    }
                }
            }
            WriteOp::Delete { key, expected } => {
                let current = kv
                    .get(key.as_str())
                    .map_err(backend)?
                    .map(|row| kv_from_row(&key, row.value()));
                match (current, expected) {
                    (None, _) => Err(StoreError::NotFound { key }),
                    (Some(current), Some(expected)) if expected != current.mod_revision => {
                        Err(StoreError::Conflict {
                            key,
                            expected,
                            current: Some(current),
                        })
                    }
                    (Some(prev), _) => {
                        rev += 1;
                        ttls.set(&key, None)?;
                        delete_row(&mut kv, &mut log, &mut events, &prev, rev)?;
                        Ok(WriteOutcome::Deleted(prev, rev))
                    }
                }
            }
            WriteOp::Expire { now } => {
                // Each expired key is deleted at its own revision, as etcd does when a lease
                // runs out.
                for key in ttls.due(now)? {
                    ttls.set(&key, None)?;
                    let current = kv
                        .get(key.as_str())
                        .map_err(backend)?
                        .map(|row| kv_from_row(&key, row.value()));
                    if let Some(prev) = current {
                        rev += 1;
                        delete_row(&mut kv, &mut log, &mut events, &prev, rev)?;
                    }
                }
                Ok(WriteOutcome::Expired)
            }
            WriteOp::Compact { revision } => {
                if revision > rev {
                    Err(StoreError::FutureRevision {
                        requested: revision,
                        current: rev,
                    })
                } else if revision <= compacted {
                    Ok(WriteOutcome::Compacted)
                } else {
                    // Entries below `revision` are only needed to look at or watch from
                    // revisions before it, which compaction forbids from now on.
                    log.retain_in(..revision, |_, _| false).map_err(backend)?;
                    compacted = revision;
                    meta.insert(META_COMPACTED, compacted).map_err(backend)?;
                    Ok(WriteOutcome::Compacted)
                }
            }
        };
        results.push(result);
    }
    meta.insert(META_REVISION, rev).map_err(backend)?;
    Ok(Committed {
        results,
        events,
        revision: rev,
        next_deadline: earliest_deadline(&ttls.expiry)?,
    })
}

/// The keys with `prefix` in order, starting strictly after `start_after`.
fn lower_bound(prefix: &str, start_after: Option<&str>) -> String {
    match start_after {
        Some(after) if after >= prefix => format!("{after}\0"),
        _ => prefix.to_owned(),
    }
}

/// Reads a page of keys as of revision `at` (≤ the snapshot's revision, ≥ its compaction).
fn list_in(
    txn: &ReadTransaction,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    at: Revision,
    current: Revision,
) -> Result<(Vec<KeyValue>, bool), StoreError> {
    let lower = lower_bound(prefix, start_after);
    let wanted = |key: &str| key.starts_with(prefix) && key >= lower.as_str();

    // A key's state at `at` is the "before" of the first write to it after `at`; keys not
    // written since are as they are now. Collect those older states for the keys in range.
    let mut then: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
    if at < current {
        let log = txn.open_table(LOG).map_err(backend)?;
        for entry in log.range(at + 1..).map_err(backend)? {
            let (_, entry) = entry.map_err(backend)?;
            let (_, key, _, _, before) = entry.value();
            if wanted(key) && !then.contains_key(key) {
                then.insert(key.to_owned(), before.map(|row| kv_from_row(key, row)));
            }
        }
    }

    let kv = txn.open_table(KV).map_err(backend)?;
    let mut now = kv.range(lower.as_str()..).map_err(backend)?;
    let mut older = then.values().filter_map(Option::as_ref).peekable();
    let mut items = Vec::new();
    // Merge the current rows that were not rewritten since `at` with the older states, both in
    // key order, until one item past the limit shows whether there is more.
    let mut next_now = || -> Result<Option<KeyValue>, StoreError> {
        for row in now.by_ref() {
            let (key, value) = row.map_err(backend)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                return Ok(None);
            }
            if !then.contains_key(key) {
                return Ok(Some(kv_from_row(key, value.value())));
            }
        }
        Ok(None)
    };
    let mut pending_now = next_now()?;
    loop {
        let take_older = match (&pending_now, older.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(n), Some(o)) => o.key < n.key,
        };
        let item = if take_older {
            older.next().cloned()
        } else {
            let item = pending_now.take();
            pending_now = next_now()?;
            item
        };
        if let Some(item) = item {
            if limit > 0 && items.len() == limit {
                return Ok((items, true));
            }
            items.push(item);
        }
    }
    Ok((items, false))
}

/// One page of a watch's replay of the log.
#[derive(Debug)]
struct ReplayPage {
    /// The events for the watched prefix, in revision order.
    events: Vec<WatchEvent>,
    /// The last revision this page looked at: the next page starts after it.
    through: Revision,
}

/// Reads the log from revision `from` up to `until` (both included) for keys with `prefix`,
/// stopping early once the events hold `max_bytes` of values (a page holds at least one event,
/// however large) or `max_entries` entries were looked at. Fails with `Compacted` if history
/// from `from` on is no longer complete.
fn replay_page(
    txn: &ReadTransaction,
    prefix: &str,
    from: Revision,
    until: Revision,
    max_bytes: usize,
    max_entries: usize,
) -> Result<ReplayPage, StoreError> {
    let (_, compacted) = read_revisions(txn)?;
    if from < compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compacted,
        });
    }
    let log = txn.open_table(LOG).map_err(backend)?;
    let mut events = Vec::new();
    let mut bytes = 0;
    let mut through = until;
    for (looked, entry) in log.range(from..=until).map_err(backend)?.enumerate() {
        let (rev, entry) = entry.map_err(backend)?;
        let (rev, entry) = (rev.value(), entry.value());
        if looked == max_entries {
            through = rev - 1;
            break;
        }
        if !entry.1.starts_with(prefix) {
            continue;
        }
        let size = entry.2.len() + entry.4.map_or(0, |row| row.2.len());
        if !events.is_empty() && bytes + size > max_bytes {
            through = rev - 1;
            break;
        }
        bytes += size;
        events.push(event_from_log(rev, entry));
    }
    Ok(ReplayPage { events, through })
}

/// A watch's progress: first replaying the log up to the revision it started at, a page at a
/// time, then following the broadcast of new commits.
struct WatchState {
    prefix: String,
    live: broadcast::Receiver<Arc<[WatchEvent]>>,
    /// The last revision delivered (or looked at, during the replay).
    last: Revision,
    /// While replaying: the database and the revision the replay ends at. Dropped once done,
    /// so a watch that follows does not keep the file open.
    replay: Option<(Arc<Database>, Revision)>,
}

impl WatchState {
    /// The next events: a page of the replay, or the next commit's events for the prefix.
    async fn next_batch(&mut self) -> Result<Vec<WatchEvent>, StoreError> {
        while let Some((db, until)) = &self.replay {
            if self.last >= *until {
                self.replay = None;
                break;
            }
            let (db, until, from) = (db.clone(), *until, self.last + 1);
            let prefix = self.prefix.clone();
            let page = tokio::task::spawn_blocking(move || {
                let txn = db.begin_read().map_err(backend)?;
                replay_page(
                    &txn,
                    &prefix,
                    from,
                    until,
                    REPLAY_PAGE_BYTES,
                    REPLAY_PAGE_ENTRIES,
                )
            })
            .await
            .map_err(|e| StoreError::Backend(format!("embedded store read task failed: {e}")))??;
            self.last = page.through;
            if !page.events.is_empty() {
                return Ok(page.events);
            }
        }
        loop {
            match self.live.recv().await {
                Ok(batch) => {
                    let events: Vec<_> = batch
                        .iter()
                        .filter(|e| e.revision() > self.last && e.kv.key.starts_with(&self.prefix))
                        .cloned()
                        .collect();
                    if let Some(e) = events.last() {
                        self.last = e.revision();
                        return Ok(events);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Err(StoreError::Backend(format!(
                        "watch fell {missed} commits behind and was closed; \
                         watch again from the last revision seen"
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(StoreError::Backend("embedded store closed".into()));
                }
            }
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.read(move |txn| {
            let kv = txn.open_table(KV).map_err(backend)?;
            let row = kv.get(key.as_str()).map_err(backend)?;
            Ok(row.map(|row| kv_from_row(&key, row.value())))
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.read(move |txn| {
            let (current, compacted) = read_revisions(txn)?;
            let at = match revision {
                Some(rev) if rev > 0 => rev,
                _ => current,
            };
            if at > current {
                return Err(StoreError::FutureRevision {
                    requested: at,
                    current,
                });
            }
            if at < compacted {
                return Err(StoreError::Compacted {
                    requested: at,
                    compacted,
                });
            }
            let (items, more) = list_in(txn, &prefix, start_after.as_deref(), limit, at, current)?;
            Ok(ListResult {
                items,
                revision: at,
                more,
            })
        })
        .await
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |txn| {
            let kv = txn.open_table(KV).map_err(backend)?;
            if prefix.is_empty() {
                return usize::try_from(kv.len().map_err(backend)?)
                    .map_err(|_| StoreError::Backend("key count overflows usize".into()));
            }
            let mut count = 0;
            for row in kv.range(prefix.as_str()..).map_err(backend)? {
                let (key, _) = row.map_err(backend)?;
                if !key.value().starts_with(prefix.as_str()) {
                    break;
                }
                count += 1;
            }
            Ok(count)
        })
        .await
    }

    async fn create_with_ttl(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        match self
            .write(WriteOp::Create {
                key: key.to_owned(),
                value,
                ttl,
            })
            .await?
        {
            WriteOutcome::Written(rev) => Ok(rev),
            _ => Err(StoreError::Backend(
                "embedded store: unexpected write outcome".into(),
            )),
        }
    }

    async fn update_with_ttl(
        &self,
        key: &str,
        expected: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        match self
            .write(WriteOp::Update {
                key: key.to_owned(),
                expected,
                value,
                ttl,
            })
            .await?
        {
            WriteOutcome::Written(rev) => Ok(rev),
            _ => Err(StoreError::Backend(
                "embedded store: unexpected write outcome".into(),
            )),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        match self
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            WriteOutcome::Deleted(kv, rev) => Ok((kv, rev)),
            _ => Err(StoreError::Backend(
                "embedded store: unexpected write outcome".into(),
            )),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let after = after.max(0);
        // Subscribe before reading the log: every commit is then either in the history the
        // replay reads or broadcast to us afterwards (or both; the revision filter drops the
        // repeats).
        let live = self.inner.events.subscribe();
        let snapshot = self
            .read(move |txn| {
                let (current, compacted) = read_revisions(txn)?;
                if after + 1 < compacted {
                    return Err(StoreError::Compacted {
                        requested: after + 1,
                        compacted,
                    });
                }
                Ok(current)
            })
            .await?;
        let state = WatchState {
            prefix: prefix.to_owned(),
            live,
            last: after,
            replay: (after < snapshot).then(|| (self.inner.db.clone(), snapshot)),
        };
        // `None` after an error ends the stream.
        let events = futures::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match state.next_batch().await {
                Ok(events) => Some((events.into_iter().map(Ok).collect(), Some(state))),
                Err(e) => Some((vec![Err(e)], None)),
            }
        });
        Ok(events.flat_map(futures::stream::iter).boxed())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    //! Behaviour only the embedded store has; the shared contract is in `conformance`.

    use super::*;
    use anyhow::{Context, Result, bail};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn reopen_finds_data_history_and_continues_the_revision() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested/dir/store.redb");
        let (r1, r2, r3, r4) = {
            let store = EmbeddedStore::open(&path)?;
            let r1 = store.create("/a", b("a1")).await?;
            let r2 = store.update("/a", r1, b("a2")).await?;
            let r3 = store.create("/b", b("b1")).await?;
            let (_, r4) = store.delete("/b", None).await?;
            store.compact(r2).await?;
            (r1, r2, r3, r4)
        };
        let store = EmbeddedStore::open(&path)?;
        assert_eq!(store.current_revision().await?, r4);
        let a = store.get("/a").await?.context("/a lost")?;
        assert_eq!(
            (a.value, a.create_revision, a.mod_revision),
            (b("a2"), r1, r2)
        );
        assert_eq!(store.get("/b").await?, None);
        // History and the compaction point survive too.
        let at_r3 = store.list("/", None, 0, Some(r3)).await?;
        assert_eq!(at_r3.items.len(), 2);
        assert!(matches!(
            store.list("/", None, 0, Some(r1)).await,
            Err(StoreError::Compacted { compacted, .. }) if compacted == r2
        ));
        let mut watch = store.watch("/", r2).await?;
        assert_eq!(watch.next().await.context("ended")??.revision(), r3);
        assert_eq!(watch.next().await.context("ended")??.revision(), r4);
        // New writes continue from the stored revision.
        assert_eq!(store.create("/c", b("c1")).await?, r4 + 1);
        assert_eq!(watch.next().await.context("ended")??.revision(), r4 + 1);
        Ok(())
    }

    #[tokio::test]
    async fn replay_pages_are_bounded_by_bytes_and_entries() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(&dir.path().join("s.redb"))?;
        let start = store.current_revision().await?;
        let big = Bytes::from(vec![b'x'; 100 << 10]);
        for i in 0..20 {
            store.create(&format!("/big/{i:02}"), big.clone()).await?;
            store.create(&format!("/other/{i:02}"), b("o")).await?;
        }
        let end = store.current_revision().await?;
        let pages = store
            .read(move |txn| {
                let mut pages = Vec::new();
                let mut from = start + 1;
                while from <= end {
                    let page = replay_page(txn, "/big/", from, end, 350 << 10, 1000)?;
                    from = page.through + 1;
                    pages.push(page);
                }
                Ok(pages)
            })
            .await?;
        // 350 KiB holds three 100 KiB values: seven pages, the last with two.
        let sizes: Vec<_> = pages.iter().map(|p| p.events.len()).collect();
        assert_eq!(sizes, [3, 3, 3, 3, 3, 3, 2]);
        let keys: Vec<_> = pages
            .iter()
            .flat_map(|p| &p.events)
            .map(|e| e.kv.key.clone())
            .collect();
        let want: Vec<_> = (0..20).map(|i| format!("/big/{i:02}")).collect();
        assert_eq!(keys, want);

        // A value larger than the budget still makes progress, alone in its page; and a page
        // stops after looking at `max_entries` log entries, matching or not.
        let (one, few) = store
            .read(move |txn| {
                Ok((
                    replay_page(txn, "/big/", start + 1, end, 1, 1000)?,
                    replay_page(txn, "/big/", start + 1, end, usize::MAX, 5)?,
                ))
            })
            .await?;
        assert_eq!((one.events.len(), one.through), (1, start + 2));
        assert_eq!((few.events.len(), few.through), (3, start + 5));

        // A page that starts below the compaction point fails rather than skip history.
        store.compact(end).await?;
        let compacted = store
            .read(move |txn| replay_page(txn, "/big/", start + 1, end, 1 << 20, 1000))
            .await;
        assert!(
            matches!(compacted, Err(StoreError::Compacted { .. })),
            "{compacted:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn expiry_deadlines_survive_a_restart() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.redb");
        {
            let store = EmbeddedStore::open(&path)?;
            store
                .create_with_ttl("/ev/a", b("a"), Some(Duration::from_millis(500)))
                .await?;
        }
        let store = EmbeddedStore::open(&path)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.get("/ev/a").await?.is_some() {
            if tokio::time::Instant::now() > deadline {
                bail!("/ev/a did not expire after a restart");
            }
            // Polling interval while waiting for a condition with a deadline.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    #[tokio::test]
    async fn second_open_of_the_same_file_is_refused() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.redb");
        let _first = EmbeddedStore::open(&path)?;
        match EmbeddedStore::open(&path) {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains("already open"), "{message}")
            }
            other => bail!("expected a Backend error, got {other:?}"),
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_lagging_watch_ends_with_an_error_instead_of_skipping() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open_with_capacity(&dir.path().join("s.redb"), 2)?;
        let mut watch = store.watch("/", store.current_revision().await?).await?;
        for i in 0..5 {
            store.create(&format!("/k{i}"), b("v")).await?;
        }
        match watch.next().await {
            Some(Err(StoreError::Backend(message))) => {
                assert!(message.contains("behind"), "{message}")
            }
            other => bail!("expected a lag error, got {other:?}"),
        }
        assert!(
            watch.next().await.is_none(),
            "the error must end the stream"
        );
        Ok(())
    }

    #[tokio::test]
    async fn watch_ends_with_an_error_when_the_store_closes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(&dir.path().join("s.redb"))?;
        let mut watch = store.watch("/", 1).await?;
        drop(store);
        assert!(matches!(
            watch.next().await,
            Some(Err(StoreError::Backend(_)))
        ));
        assert!(watch.next().await.is_none());
        Ok(())
    }

    /// The child half of `acknowledged_writes_survive_kill_9`: writes from 16 tasks forever,
    /// printing each acknowledged write. Does nothing unless run by that test.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "run as a child process by acknowledged_writes_survive_kill_9"]
    async fn kill_9_child_writer() -> Result<()> {
        let Ok(path) = std::env::var("SKIFF_STORE_KILL_TEST_PATH") else {
            return Ok(());
        };
        let store = EmbeddedStore::open(Path::new(&path))?;
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/kill/{task}/{i}");
                        let rev = store.create(&key, b(&key)).await?;
                        println!("ack {key} {rev}");
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(())
    }

    #[tokio::test]
    async fn acknowledged_writes_survive_kill_9() -> Result<()> {
        use std::io::BufRead;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.redb");
        let exe = std::env::current_exe()?;
        let child_path = path.clone();
        let acked = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Revision)>> {
            let mut child = std::process::Command::new(exe)
                .args(["--exact", "embedded::tests::kill_9_child_writer"])
                .args(["--ignored", "--nocapture", "--test-threads=1"])
                .env("SKIFF_STORE_KILL_TEST_PATH", &child_path)
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            let stdout = child.stdout.take().context("child stdout")?;
            let mut acked = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line?;
                if let Some(ack) = line.strip_prefix("ack ") {
                    let (key, rev) = ack.split_once(' ').context("bad ack line")?;
                    acked.push((key.to_owned(), rev.parse()?));
                    if acked.len() == 300 {
                        // SIGKILL: no destructors, no flush; only what commit made durable.
                        child.kill()?;
                        break;
                    }
                }
            }
            child.wait()?;
            Ok(acked)
        })
        .await??;
        assert_eq!(acked.len(), 300, "the child stopped writing early");

        let store = EmbeddedStore::open(&path)?;
        for (key, rev) in &acked {
            let kv = store
                .get(key)
                .await?
                .with_context(|| format!("acknowledged {key} lost"))?;
            assert_eq!(kv.mod_revision, *rev);
        }
        let max = acked.iter().map(|(_, rev)| *rev).max().unwrap_or_default();
        assert!(store.current_revision().await? >= max);
        Ok(())
    }
}
