//! Skiff's container runtimes. The kubelet drives pods through [`ContainerRuntime`]; the Docker
//! implementation talks to a real engine through bollard, the fake one keeps everything in
//! memory for hollow nodes and unit tests.
//!
//! A pod is a *sandbox* (a pause container that holds the network, IPC and UTS namespaces)
//! plus app containers joined to it, as dockershim did. Every container carries labels naming
//! its pod (namespace, name, uid) and container, so a restarted kubelet can find its pods.

mod docker;
mod fake;
mod pause;
mod runtime;

pub use docker::DockerRuntime;
pub use fake::FakeRuntime;
pub use pause::{PAUSE_IMAGE, pause_binary, pause_image_tar};
pub use runtime::*;
