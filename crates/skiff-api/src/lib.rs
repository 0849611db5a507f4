//! Skiff's API machinery: everything about Kubernetes objects that involves no I/O.
//!
//! - [`certificates`]: CertificateSigningRequests: parsing the PKCS#10 request, the
//!   built-in signers, the CSR strategy's rules.
//! - [`cron`]: CronJob schedules (five-field cron, `@hourly` macros) and time zones.
//! - [`resources`]: the one resource table that drives routing, discovery, storage keys and
//!   printing.
//! - [`strategy`]: per-kind defaulting, validation and update rules, as in Kubernetes'
//!   registry strategies.
//! - [`selectors`]: label and field selectors.
//! - [`patch`]: strategic merge patch with Kubernetes' merge keys.
//! - [`table`]: server-side `Table` columns and rows, as kubectl prints them.
//! - [`quantity`]: the exact resource [`Quantity`] (`100m`, `1.5Gi`), as apimachinery's.
//! - [`quota`]: ResourceQuota usage of an object, matching quotas and scopes, refusals.
//! - [`validation`]: name and label checks with Kubernetes' wording.
//! - [`bootstrap_token`]: bootstrap tokens and the Secrets holding them (`kubeadm join`).
//! - [`storage`]: the annotations and conventions of persistent storage (binding, the
//!   built-in `local-path` provisioner).
//! - [`openapi`]: OpenAPI v2/v3 documents generated from the `k8s-openapi` types.
//! - [`protobuf`]: decoding of `application/vnd.kubernetes.protobuf` request bodies into JSON.
//!
//! Objects travel as `serde_json::Value`; typed `k8s-openapi` structs are used where a kind's
//! rules need them.

pub mod bootstrap_token;
pub mod certificates;
pub mod cron;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod resources;
pub mod selectors;
pub mod storage;
pub mod strategy;
pub mod table;
pub mod validation;

pub use quantity::Quantity;
pub use resources::ResourceInfo;
pub use selectors::{FieldSelector, LabelSelector};
pub use strategy::{FieldError, FieldErrorKind};
