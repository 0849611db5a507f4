//! Matching typed selectors, shared with the controllers (from `skiff-client`): label
//! selectors against pod labels, and node selector terms (required/preferred node affinity)
//! against a node.

pub use skiff_client::selector::matches as matches_label_selector;
pub use skiff_client::selector::term_matches;
