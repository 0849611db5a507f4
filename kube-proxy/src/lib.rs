//! `skiff-proxy`: Services as iptables rules, and pod routes between nodes. Watch caches
//! ([`cache`]) on Services, EndpointSlices and Nodes record what changed and wake the sync
//! loop; a [`Proxier`] (at most one write per `--min-sync-period`) turns the changed Services
//! into ports ([`model`]), renders their rules ([`rules`]) and writes only the chains that
//! changed, or everything every `--sync-period` ([`iptables`]), clears stale UDP flows
//! ([`conntrack`]) and keeps every other node's pods reachable: a route to each node's pod
//! CIDR ([`routes`], flannel's host-gw model) or a VXLAN overlay ([`vxlan`], flannel's vxlan
//! backend), as `--pod-network` says. [`health`] serves `/healthz` and `/metrics`.

mod app;
mod cache;
pub mod conntrack;
pub mod health;
pub mod iptables;
pub mod model;
pub mod proxier;
pub mod routes;
pub mod rules;
pub mod vxlan;

pub use app::{Config, PodNetwork, run};
pub use proxier::{Inputs, Network, Outcome, Proxier, RuleWriter};
pub use routes::RouteWriter;
