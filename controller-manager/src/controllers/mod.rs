//! The controllers, one module each, and [`ALL`]: the names `--controllers` accepts.

pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod hpa;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod servicelb;

/// Every controller, by its `--controllers` name.
pub const ALL: &[&str] = &[
    "replicationcontroller",
    "replicaset",
    "deployment",
    "garbagecollector",
    "namespace",
    "nodeipam",
    "nodelifecycle",
    "endpoint",
    "horizontalpodautoscaling",
    "service-lb",
];
