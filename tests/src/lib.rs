//! Test harness for Skiff's end-to-end tests: it starts the real `skiff-apiserver` binary (on
//! the embedded store or on a private etcd) in a temporary directory and lets tests drive it
//! with the clients people use — the real `kubectl`, plain HTTPS, kube-rs, the Python client.
//!
//! ```no_run
//! use skiff_e2e::{ApiServer, Backend};
//! let server = ApiServer::start(Backend::Embedded);
//! let out = server.kubectl_ok(&["get", "ns"]);
//! assert!(out.contains("kube-system"));
//! ```
//!
//! Every test starts its own apiserver, so tests are independent and run in parallel.

mod apiserver;
mod cluster;
mod components;
pub mod fixtures;
pub mod fuzz;
mod http;
mod kubectl;
mod kubelet;
pub mod machines;
mod wait;

pub use apiserver::{ApiServer, Backend, sibling_binary};
pub use cluster::{LocalCluster, TEST_CLUSTERS_DIR, skiffctl, skiffctl_ok};
pub use components::{Component, ControllerManager, NodeBuilder, Scheduler, node};
pub use http::{Http, Reply, WatchEvents};
pub use kubectl::{KubectlWatch, Table, kubectl_versioned_path, strip_ansi};
pub use kubelet::{BUSYBOX, Kubelet, PrivateDocker, ensure_busybox_image};
pub use wait::wait_until;

/// Turns `fn name(backend: Backend)` test bodies into `#[test]`s run once per backend:
/// `embedded::name` and `etcd::name`.
///
/// ```ignore
/// fn create_and_get(backend: Backend) { let server = ApiServer::start(backend); ... }
/// skiff_e2e::for_each_backend!(create_and_get);
/// ```
#[macro_export]
macro_rules! for_each_backend {
    ($($test:ident),+ $(,)?) => {
        mod embedded {
            $( #[test] fn $test() { super::$test($crate::Backend::Embedded) } )+
        }
        mod etcd {
            $( #[test] fn $test() { super::$test($crate::Backend::Etcd) } )+
        }
    };
}
