//! Built-in admission plugins.

pub mod pod_security;
