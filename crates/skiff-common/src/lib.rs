//! Pieces every Skiff program shares: the one [`Backoff`] type (watch restarts, reconcile
//! errors, container restarts, image pulls), [`parse_duration`] for Go-style duration flags,
//! [`time`] for timestamps as Kubernetes writes them, and [`serve_tls`], the HTTPS accept loop
//! of the apiserver and the kubelet.

mod backoff;
mod duration;
mod serve;
pub mod time;

pub use backoff::Backoff;
pub use duration::parse_duration;
pub use serve::serve_tls;
