//! Role-based access control.

pub mod bootstrap;
