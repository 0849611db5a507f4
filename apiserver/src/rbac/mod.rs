//! Role-based access control (`rbac.authorization.k8s.io/v1`): the authorizer, the bootstrap
//! policy every cluster starts with, and the coverage test behind privilege-escalation checks.

mod authorizer;
pub mod bootstrap;
mod ensure;

pub use authorizer::{Rbac, rule_allows};
pub use ensure::bootstrap_policy;
