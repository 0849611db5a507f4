//! `skiff-dns`: the cluster's DNS server, what CoreDNS's `kubernetes` plugin serves. Informers
//! on Services and EndpointSlices ([`model`] keeps what records need) feed the cluster
//! [`zone`] (A/AAAA, SRV, CNAME, PTR under `--cluster-domain`, NXDOMAIN vs NODATA with the
//! SOA); other names go to the upstream resolvers through a small cache ([`forward`]); the
//! [`server`] speaks DNS over UDP and TCP, and [`metrics`] serves `/healthz`, `/readyz` and
//! `/metrics`.

mod app;
pub mod forward;
pub mod metrics;
pub mod model;
pub mod server;
pub mod zone;

pub use app::{Config, Watched, run};
