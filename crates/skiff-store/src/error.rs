//! The one error type of the storage layer.

/// What can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// The key does not exist (update or delete of a missing key).
    #[error("key {key} not found")]
    NotFound { key: String },
    /// A compare-and-swap failed: the key's mod revision is not the one the caller expected.
    /// `current` is the key's present value, if it still exists.
    #[error("key {key} was modified concurrently (expected revision {expected})")]
    Conflict {
        key: String,
        expected: i64,
        current: Option<crate::KeyValue>,
    },
    /// The requested revision has been compacted away (HTTP 410 Gone upstream).
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// The requested revision is newer than anything the store has.
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision { requested: i64, current: i64 },
    /// The write is larger than the backend accepts in one request (etcd's `--max-request-bytes`,
    /// 1.5 MiB by default). The message is etcd's, which Kubernetes shows its clients.
    #[error("etcdserver: request is too large")]
    RequestTooLarge { key: String },
    /// The backend failed (I/O, etcd unavailable, corrupt data...).
    #[error("storage backend error: {0}")]
    Backend(String),
}
