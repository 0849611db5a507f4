//! etcd leases for keys with a TTL, shared between writes as kube-apiserver shares them.
//!
//! A lease per write would leave etcd with one lease per Event, and etcd's lease bookkeeping
//! grows with their number; so a lease is reused by later writes for a short while (a twentieth
//! of the TTL, at most a minute) and granted that much longer. A key may then outlive its TTL by
//! up to that margin, never expire early. A lease also carries at most
//! [`MAX_KEYS_PER_LEASE`] keys, so that revoking one (or its expiry) stays a small transaction.

use std::time::{Duration, Instant};

use etcd_client::LeaseClient;
use tokio::sync::Mutex;

/// The share of the TTL during which a granted lease is reused.
const REUSE_FRACTION: f64 = 0.05;
/// The longest a granted lease is reused.
const REUSE_MAX_SECS: i64 = 60;
/// Most keys attached to one lease.
pub const MAX_KEYS_PER_LEASE: usize = 1000;

/// Hands out lease IDs for writes with a TTL.
pub struct LeaseManager {
    client: LeaseClient,
    /// The lease last granted. The lock is held while granting, so concurrent writes wait for
    /// one grant instead of each asking for their own.
    current: Mutex<Option<Granted>>,
}

#[derive(Clone, Copy, Debug)]
struct Granted {
    id: i64,
    /// When etcd will expire it.
    expires: Instant,
    keys: usize,
}

/// How long, in seconds, a lease granted for `ttl` is reused by later writes.
fn reuse_secs(ttl: i64) -> i64 {
    // Truncating is intended: a TTL under 20 s gets a lease per write.
    ((ttl as f64 * REUSE_FRACTION) as i64).min(REUSE_MAX_SECS)
}

/// etcd counts TTLs in whole seconds; round up so that nothing expires early.
pub fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// Whether `lease` may carry a write at `now` that must live `ttl` seconds: it must outlive the
/// TTL (else the key would expire early), by no more than the reuse margin (else late), and
/// have room for another key.
fn reusable(lease: &Granted, now: Instant, ttl: i64) -> bool {
    let at_least = now + Duration::from_secs(ttl.unsigned_abs());
    let at_most = at_least + Duration::from_secs(reuse_secs(ttl).unsigned_abs());
    at_least < lease.expires && lease.expires <= at_most && lease.keys < MAX_KEYS_PER_LEASE
}

impl LeaseManager {
    pub fn new(client: LeaseClient) -> Self {
        LeaseManager {
            client,
            current: Mutex::new(None),
        }
    }

    /// A lease that expires at least `ttl` from now, and not much later.
    pub async fn lease(&self, ttl: Duration) -> Result<i64, etcd_client::Error> {
        let ttl = ttl_secs(ttl);
        let now = Instant::now();
        let mut current = self.current.lock().await;
        if let Some(lease) = current.as_mut().filter(|l| reusable(l, now, ttl)) {
            lease.keys += 1;
            return Ok(lease.id);
        }
        let granted_ttl = ttl + reuse_secs(ttl);
        let resp = self.client.clone().grant(granted_ttl, None).await?;
        *current = Some(Granted {
            id: resp.id(),
            expires: now + Duration::from_secs(granted_ttl.unsigned_abs()),
            keys: 1,
        });
        Ok(resp.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_secs(3)), 3);
        assert_eq!(ttl_secs(Duration::from_millis(3001)), 4);
        assert_eq!(ttl_secs(Duration::ZERO), 1);
    }

    #[test]
    fn a_lease_is_reused_only_within_its_margin() {
        assert_eq!(reuse_secs(3), 0);
        assert_eq!(reuse_secs(3600), 60);
        assert_eq!(reuse_secs(100), 5);
        let now = Instant::now();
        let hour = 3600;
        let fresh = Granted {
            id: 1,
            expires: now + Duration::from_secs(3660),
            keys: 1,
        };
        assert!(reusable(&fresh, now, hour));
        // A minute later the lease would still outlive a new hour-long TTL, barely.
        assert!(reusable(&fresh, now + Duration::from_secs(59), hour));
        // Past the margin it would expire the new key early.
        assert!(!reusable(&fresh, now + Duration::from_secs(60), hour));
        let full = Granted {
            keys: MAX_KEYS_PER_LEASE,
            ..fresh
        };
        assert!(!reusable(&full, now, hour));
        // With a short TTL (no margin) every write gets its own lease.
        let short = Granted {
            id: 2,
            expires: now + Duration::from_secs(3),
            keys: 1,
        };
        assert!(!reusable(&short, now, 3));
    }
}
