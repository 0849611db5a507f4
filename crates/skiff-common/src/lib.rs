//! Pieces every Skiff program shares: the one [`Backoff`] type (watch restarts, reconcile
//! errors, container restarts, image pulls) and [`serve_tls`], the HTTPS accept loop of the
//! apiserver and the kubelet.

mod backoff;
mod serve;

pub use backoff::Backoff;
pub use serve::serve_tls;
