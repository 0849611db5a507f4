//! `skiff-kubelet`: the node agent. It registers its Node and keeps its status and heartbeat
//! Lease current ([`node`]), watches the pods bound to it and gives each a worker
//! ([`manager`]) that drives the pod's sandbox and containers through the container runtime
//! and reports the pod's real state back ([`worker`]). A worker reaches the API only through
//! the narrow [`api::PodApi`], and runs probes ([`probe`]) and lifecycle hooks through one
//! [`handler`]. Its HTTPS [`server`] serves container logs, exec, stats, its pods and
//! [`metrics`] to the apiserver, and to the callers the apiserver vouches for ([`auth`]).
//! [`image_gc`] removes unused images when the image filesystem fills up; the [`eviction`]
//! manager reports memory and disk pressure and evicts pods to relieve it. [`local_path`] keeps
//! the node's `local-path` volume directories.

pub mod api;
mod app;
pub mod auth;
pub mod dns;
pub mod eviction;
pub mod handler;
pub mod image_gc;
pub mod local_path;
pub mod manager;
pub mod metrics;
pub mod node;
pub mod probe;
pub mod server;
pub mod spdy;
pub mod static_pods;
pub mod sysinfo;
pub mod worker;

pub use app::{Config, Context, LABEL_NODE, RuntimeKind, node_labels, run};
