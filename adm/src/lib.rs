//! `skiffadm`: installs Skiff on machines as kubeadm installs Kubernetes. `init` makes a
//! control plane (PKI, kubeconfigs, the components' command lines, services, bootstrap
//! token), `join` adds a node through bootstrap-token discovery and the kubelet's TLS
//! bootstrapping, `token`, `certs` and `reset` look after them. Where systemd is not PID 1,
//! [`supervise`] runs the same command lines.

pub mod certs;
pub mod components;
pub mod discovery;
pub mod init;
pub mod join;
pub mod kubeadm_config;
pub mod paths;
pub mod renew;
pub mod reset;
pub mod services;
pub mod supervise;
pub mod token;

pub use paths::Paths;
