//! `skiff-proxy`'s data plane: [`rules`] turns Service ports and their ready endpoints into the
//! whole iptables ruleset (Skiff's own chains in the nat and filter tables) as
//! `iptables-restore` input, and [`iptables`] applies it in one call. The informers that feed
//! it and the program around it come next (the binary is still a stub).

pub mod iptables;
pub mod rules;
