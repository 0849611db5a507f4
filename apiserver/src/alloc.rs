//! ClusterIP and NodePort allocation. Each allocated IP or port is a key in the store
//! (`/registry/allocations/clusterips/<ip>`, `.../nodeports/<port>`), created only if absent,
//! so two apiservers on one etcd can never hand out the same one.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use ipnet::Ipv4Net;
use rand::Rng;
use skiff_store::{Store, StoreError};

const IP_PREFIX: &str = "/registry/allocations/clusterips/";
const PORT_PREFIX: &str = "/registry/allocations/nodeports/";

/// Why an allocation failed; the apiserver turns these into 422 field errors.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("provided IP is not in the valid range. The range of valid IPs is {0}")]
    IpOutOfRange(String),
    #[error("provided IP is already allocated")]
    IpTaken,
    #[error("provided port is not in the valid range. The range of valid ports is {0}")]
    PortOutOfRange(String),
    #[error("provided port is already allocated")]
    PortTaken,
    #[error("range is full: no free {0} left")]
    Full(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one write claimed, so that a write that fails can give it back
/// ([`Allocator::release`]).
#[derive(Debug, Default)]
pub struct Claims(Vec<Claim>);

#[derive(Debug)]
enum Claim {
    Ip(String),
    Port(u16),
}

impl Claims {
    pub fn ip(&mut self, ip: String) {
        self.0.push(Claim::Ip(ip));
    }

    pub fn port(&mut self, port: u16) {
        self.0.push(Claim::Port(port));
    }
}

pub struct Allocator {
    store: Arc<dyn Store>,
    ips: Ipv4Net,
    ports: (u16, u16),
}

impl Allocator {
    pub fn new(store: Arc<dyn Store>, ips: Ipv4Net, ports: (u16, u16)) -> Self {
        Allocator { store, ips, ports }
    }

    /// The first usable IP of the service range: the `kubernetes` Service's ClusterIP.
    pub fn first_ip(&self) -> Ipv4Addr {
        let base = u32::from(self.ips.network());
        Ipv4Addr::from(base + 1)
    }

    fn ip_count(&self) -> u32 {
        // Exclude the network and broadcast addresses.
        (1u64 << (32 - self.ips.prefix_len()))
            .saturating_sub(2)
            .min(u32::MAX as u64) as u32
    }

    async fn claim(&self, key: String) -> Result<bool, StoreError> {
        match self.store.create(&key, Bytes::from_static(b"{}")).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Allocates `requested` if given (it must be in range and free), else a random free IP.
    pub async fn allocate_ip(&self, requested: Option<&str>) -> Result<String, AllocError> {
        if let Some(req) = requested {
            let ip: Ipv4Addr = match req.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip))
                    if self.ips.contains(&ip)
                        && ip != self.ips.network()
                        && ip != self.ips.broadcast() =>
                {
                    ip
                }
                _ => return Err(AllocError::IpOutOfRange(self.ips.to_string())),
            };
            return if self.claim(format!("{IP_PREFIX}{ip}")).await? {
                Ok(ip.to_string())
            } else {
                Err(AllocError::IpTaken)
            };
        }
        let count = self.ip_count();
        let base = u32::from(self.ips.network()) + 1;
        let start = rand::rng().random_range(0..count.max(1));
        // Probe from a random offset; the first address is reserved for `kubernetes`.
        for i in 0..count.min(4096) {
            let offset = (start + i) % count;
            if offset == 0 {
                continue;
            }
            let ip = Ipv4Addr::from(base + offset);
            if self.claim(format!("{IP_PREFIX}{ip}")).await? {
                return Ok(ip.to_string());
            }
        }
        Err(AllocError::Full("cluster IPs"))
    }

    pub async fn release_ip(&self, ip: &str) {
        if let Err(e) = self.store.delete(&format!("{IP_PREFIX}{ip}"), None).await
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(ip, error = %e, "could not release cluster IP");
        }
    }

    pub async fn allocate_port(&self, requested: Option<u16>) -> Result<u16, AllocError> {
        let (lo, hi) = self.ports;
        if let Some(p) = requested {
            if p < lo || p > hi {
                return Err(AllocError::PortOutOfRange(format!("{lo}-{hi}")));
            }
            return if self.claim(format!("{PORT_PREFIX}{p}")).await? {
                Ok(p)
            } else {
                Err(AllocError::PortTaken)
            };
        }
        let count = u32::from(hi - lo) + 1;
        let start = rand::rng().random_range(0..count);
        for i in 0..count {
            let p = lo + ((start + i) % count) as u16;
            if self.claim(format!("{PORT_PREFIX}{p}")).await? {
                return Ok(p);
            }
        }
        Err(AllocError::Full("node ports"))
    }

    pub async fn release_port(&self, port: u16) {
        if let Err(e) = self
            .store
            .delete(&format!("{PORT_PREFIX}{port}"), None)
            .await
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(port, error = %e, "could not release node port");
        }
    }

    /// Gives back everything a failed write claimed.
    pub async fn release(&self, claims: Claims) {
        for c in claims.0 {
            match c {
                Claim::Ip(ip) => self.release_ip(&ip).await,
                Claim::Port(p) => self.release_port(p).await,
            }
        }
    }
}
