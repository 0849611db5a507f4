//! Skiff's storage layer. The apiserver is the only program that talks to a [`Store`]; every
//! other component reaches cluster state through the apiserver's REST + watch API.
//!
//! A store is a flat, ordered key space with one global, monotonic revision (etcd's model):
//! every successful write gets the next revision, and a key remembers the revision that
//! created it and the one that last modified it. Watches resume from any revision that has not
//! been compacted away.
//!
//! Two backends implement [`Store`] and pass one conformance suite: [`EtcdStore`] (production,
//! several apiservers over one etcd cluster) and [`EmbeddedStore`] (a single durable redb file,
//! the default when no etcd is configured).

mod embedded;
mod error;
mod etcd;
mod store;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod conformance;

pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use etcd::{EtcdStore, EtcdTls};
pub use store::{EventKind, KeyValue, ListResult, Revision, Store, WatchEvent, WatchStream};
