//! `skiff-controller-manager`: many controllers in one process. Shared informers
//! ([`skiff_client::informer`]) keep one cache per resource type; each controller is a
//! [`controller::Reconciler`] fed by a [`workqueue::WorkQueue`] of keys; [`controllers`] holds
//! them.

mod app;
pub mod context;
pub mod controller;
pub mod controllers;
pub mod credentials;
pub mod intern;
pub mod metrics;
pub mod pods;
#[cfg(test)]
mod testing;
/// Status writes through the `update` verb.
pub mod update;
pub mod workqueue;

pub use app::{Config, enabled, run};
