//! `skiff-proxy`: Services as iptables rules, and pod routes between nodes. Watch caches
//! ([`cache`]) on Services, EndpointSlices and Nodes record what changed and wake the sync
//! loop; a [`Proxier`] (at most one write per `--min-sync-period`) turns the changed Services
//! into ports ([`model`]), renders their rules ([`rules`]) and writes only the chains that
//! changed, or everything every `--sync-period` ([`iptables`]), clears stale UDP flows
//! ([`conntrack`]) and keeps a route to every other node's pod CIDR ([`routes`], flannel's
//! host-gw model). [`health`] serves `/healthz` and `/metrics`.

mod app;
mod cache;
pub mod conntrack;
pub mod health;
pub mod iptables;
pub mod model;
pub mod proxier;
pub mod routes;
pub mod rules;

pub use app::{Config, run};
pub use proxier::{Inputs, Outcome, Proxier, RuleWriter};
pub use routes::RouteWriter;
