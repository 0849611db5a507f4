//! Pieces every Skiff program shares, whatever else it is:
//! - [`Backoff`], the one backoff type (watch restarts, reconcile errors, container restarts,
//!   image pulls);
//! - [`parse_duration`] for Go-style duration flags;
//! - [`time`]: timestamps as Kubernetes writes them, and the one "now";
//! - [`program`]: logging and the signal that starts the one shutdown path;
//! - [`pki`]: the cluster CA, the certificates it issues, private key files and kubeconfigs;
//! - [`tls`]: the one TLS server configuration builder, and [`serve_tls`], the HTTPS accept
//!   loop of the apiserver, the kubelet and the components' health endpoints.

mod backoff;
mod duration;
pub mod pki;
pub mod program;
mod serve;
pub mod time;
pub mod tls;

pub use backoff::Backoff;
pub use duration::parse_duration;
pub use program::{init_logging, shutdown_on_signal};
pub use serve::{ServeLimits, serve_tls};
