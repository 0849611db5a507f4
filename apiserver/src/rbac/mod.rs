//! Role-based access control (`rbac.authorization.k8s.io/v1`): the authorizer, the bootstrap
//! policy every cluster starts with, and the coverage test behind privilege-escalation checks.

mod authorizer;
pub mod bootstrap;
pub mod coverage;
mod ensure;
pub mod reconcile;

pub use authorizer::{Rbac, rule_allows};
pub use ensure::bootstrap_policy;
