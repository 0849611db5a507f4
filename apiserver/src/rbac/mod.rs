//! Role-based access control (`rbac.authorization.k8s.io/v1`): the authorizer.

mod authorizer;

pub use authorizer::{Rbac, rule_allows};
