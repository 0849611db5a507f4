//! `skiff-apiserver`: the Kubernetes REST + watch API over HTTPS, on etcd or an embedded store.
//!
//! Request path: [`server`] accepts TLS connections and reads client certificates;
//! `handlers` authenticates, authorizes and routes with the shared state of `app`; `registry`
//! runs the generic create/read/update/delete with the per-kind strategies and `hooks`, on the
//! store; `watch` streams events fed by the `cache`.

// Startup and shared state.
mod app;
pub mod config;
pub mod pki;
pub mod server;

// Who may do what: authentication (certificates, tokens, ServiceAccount tokens),
// impersonation, authorization (Node, RBAC), admission, the reviews that ask, and the audit
// log of who did what.
pub mod admission;
pub mod audit;
pub mod auth;
mod bootstrap_tokens;
mod impersonate;
mod node_authz;
pub mod rbac;
mod reviews;
mod sa_tokens;
pub mod serviceaccount;

// The HTTP front: routing, output formats, the documents about the API.
mod discovery;
pub mod error;
mod eviction;
mod handlers;
mod metrics;
mod openapi;
mod render;
mod request;

// Objects and their storage.
mod alloc;
mod apply;
pub mod encryption;
mod hooks;
mod objects;
mod registry;

// Watching.
mod cache;
mod watch;

// Served beside the stored resources: the kubelet proxy and the resource metrics API.
mod proxy;
mod resource_metrics;

pub use config::Config;
pub use server::run;
