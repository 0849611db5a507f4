//! `skiff-apiserver`: the Kubernetes REST + watch API over HTTPS, on etcd or an embedded store.
//!
//! Request path: [`server`] accepts TLS connections and reads client certificates;
//! [`handlers`] authenticates, authorizes and routes; [`registry`] runs the per-kind
//! strategies and talks to the store; [`watch`] streams events fed by the [`cache`].

mod alloc;
mod app;
mod apply;
pub mod auth;
mod cache;
pub mod config;
mod discovery;
pub mod error;
mod handlers;
mod hooks;
mod metrics;
mod objects;
mod openapi;
pub mod pki;
mod proxy;
mod registry;
mod render;
mod request;
mod resource_metrics;
pub mod server;
mod watch;

pub use config::Config;
pub use server::run;
