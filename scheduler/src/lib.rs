//! `skiff-scheduler`: binds pending pods to nodes. Informers on pods and nodes
//! ([`skiff_client::informer`]) keep the [`cache`] of nodes and assigned pods and the
//! scheduling [`queue`] current; the [`scheduler`] loop pops a pod,
//! runs the [`framework`]'s filter and score [`plugins`] over the cache, assumes the pod on the
//! chosen node and binds it, or reports why no node fits; a pod that fits nowhere may
//! preempt pods of lower priority ([`preemption`]).

mod app;
pub mod cache;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod podinfo;
pub mod preemption;
pub mod queue;
pub mod scheduler;
pub mod selector;
#[cfg(test)]
mod testing;

pub use app::{Config, run};
pub use scheduler::Scheduler;
