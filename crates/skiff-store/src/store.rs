//! The [`Store`] trait: the revisioned key-value contract both backends implement.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::StoreError;

/// A store revision. An empty store is at revision 1 and each successful write gets a revision
/// above every earlier one, so the first write is revision 2 (etcd semantics). Writes committed
/// together share one revision, as the keys of one etcd transaction do: the etcd backend
/// commits concurrent creates together (see `EtcdStore`); the embedded store gives every write
/// its own.
pub type Revision = i64;

/// One key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (since it was last absent).
    pub create_revision: Revision,
    /// Revision of the write that last changed this key.
    pub mod_revision: Revision,
}

/// The result of a range read.
#[derive(Clone, Debug)]
pub struct ListResult {
    /// Matching keys in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the read was served at (the store's revision for a "latest" read).
    pub revision: Revision,
    /// True when `limit` cut the result short: more keys follow the last one returned.
    pub more: bool,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change observed by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For `Put`: the new value, `mod_revision` = the event's revision.
    /// For `Delete`: the key with the *last value it had*, and `mod_revision` = the revision
    /// of the delete itself.
    pub kv: KeyValue,
    /// The key as it was just before this event: for a `Put` that modified an existing key and
    /// for every `Delete` (where it equals `kv` apart from `mod_revision`). `None` for a `Put`
    /// that created the key.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events in revision order. An `Err` item ends the stream.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// A revisioned key-value store with etcd's semantics.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the latest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Reads the keys that start with `prefix`, in key order, beginning strictly after
    /// `start_after` when given (pagination), at most `limit` of them when given (0 = no
    /// limit), at `revision` when given and positive (else latest). A revision older than the
    /// compaction point fails with [`StoreError::Compacted`], one newer than the store's with
    /// [`StoreError::FutureRevision`].
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<ListResult, StoreError>;

    /// Counts the keys with `prefix` at the latest revision.
    async fn count(&self, prefix: &str) -> Result<usize, StoreError>;

    /// Creates `key` if absent; returns the new revision. [`StoreError::AlreadyExists`] if
    /// present.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        self.create_with_ttl(key, value, None).await
    }

    /// `create`, and with a `ttl` the key is deleted (a watch sees a `Delete`) once `ttl` has
    /// passed since this write, unless a later write gave it another TTL (Kubernetes stores
    /// Events this way, see `--event-ttl`). Expiry is not exact: a key may outlive its TTL by
    /// a few seconds, or by a few percent of it on etcd, where writes share leases.
    async fn create_with_ttl(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError>;

    /// Replaces `key` if its mod revision is `expected`; returns the new revision.
    /// [`StoreError::Conflict`] if it differs, [`StoreError::NotFound`] if the key is absent.
    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: Bytes,
    ) -> Result<Revision, StoreError> {
        self.update_with_ttl(key, expected, value, None).await
    }

    /// `update` with the TTL semantics of `create_with_ttl`: the key expires `ttl` after this
    /// write; without one it no longer expires.
    async fn update_with_ttl(
        &self,
        key: &str,
        expected: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError>;

    /// Deletes `key`, if its mod revision is `expected` when given. Returns the deleted value
    /// (with its old revisions) and the revision of the delete. [`StoreError::NotFound`] if the
    /// key is absent, [`StoreError::Conflict`] if its mod revision is not `expected`.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError>;

    /// Streams every change to keys starting with `prefix` that happens *after* revision
    /// `after` (so `after = current_revision()` means "from now on"). Fails with
    /// [`StoreError::Compacted`] if `after` is older than the compaction point allows
    /// (`after + 1 < compacted`; the error's `requested` is `after + 1`). An `after` beyond the
    /// current revision is allowed (as in etcd): the stream waits for those revisions.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Forgets history before `revision` (etcd semantics): a later `list` at a revision below
    /// it, or a `watch` with `after < revision - 1`, fails with [`StoreError::Compacted`].
    /// Current values are never lost. Compacting at or below an earlier compaction is a no-op;
    /// a revision beyond the current one fails with [`StoreError::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}
