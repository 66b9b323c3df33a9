//! Service ClusterIP and NodePort allocation.
//!
//! Every allocated address and port is a key in the store
//! (`/registry/ranges/clusterips/<ip>`, `/registry/ranges/nodeports/<port>`)
//! created only if absent, so two API servers (or two concurrent creates)
//! can never hand out the same one, and a restart finds exactly what is
//! taken. Deleting a Service deletes its keys. The first address of the
//! range belongs to the `kubernetes` Service, as in Kubernetes.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::json;

use crate::storage::{Storage, StorageError};

const IP_PREFIX: &str = "/registry/ranges/clusterips/";
const PORT_PREFIX: &str = "/registry/ranges/nodeports/";

/// Why an allocation failed, worded as Kubernetes words the 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("provided IP is not in the valid range. The range of valid IPs is {0}")]
    IpOutOfRange(String),
    #[error("provided IP is already allocated")]
    IpTaken,
    #[error("range is full")]
    IpRangeFull,
    #[error("provided port is not in the valid range. The range of valid ports is {0}-{1}")]
    PortOutOfRange(u16, u16),
    #[error("provided port is already allocated")]
    PortTaken,
    #[error("range is full")]
    PortRangeFull,
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// An IPv4 CIDR such as 10.96.0.0/12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR (address/prefix)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("the prefix of {text:?} must be between 8 and 30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: u32::from(ip) & mask,
            prefix,
        })
    }

    /// Usable addresses: without the network and broadcast addresses.
    fn first(&self) -> u32 {
        self.network + 1
    }
    fn last(&self) -> u32 {
        self.network + (1u32 << (32 - self.prefix)) - 2
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first()..=self.last()).contains(&u32::from(ip))
    }

    /// The `kubernetes` Service's address: the first usable one.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first())
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

pub struct Allocator {
    pub cidr: Cidr,
    pub ports: (u16, u16),
}

/// Parses `30000-32767`.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a port range such as 30000-32767");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

impl Allocator {
    async fn taken(storage: &Storage, prefix: &str) -> Result<HashSet<String>, StorageError> {
        let (items, _) = storage.list(prefix.as_bytes(), 0).await?;
        Ok(items
            .iter()
            .map(|s| String::from_utf8_lossy(&s.key[prefix.len()..]).to_string())
            .collect())
    }

    async fn claim(storage: &Storage, key: String, owner: &str) -> Result<bool, StorageError> {
        let value = json!({"owner": owner}).to_string().into_bytes();
        match storage.create(key.as_bytes(), value).await {
            Ok(_) => Ok(true),
            Err(StorageError::AlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Allocates `requested`, or any free address; `owner` is recorded.
    pub async fn allocate_ip(
        &self,
        storage: &Storage,
        requested: Option<Ipv4Addr>,
        owner: &str,
    ) -> Result<Ipv4Addr, AllocationError> {
        if let Some(ip) = requested {
            if !self.cidr.contains(ip) {
                return Err(AllocationError::IpOutOfRange(self.cidr.to_string()));
            }
            return match Self::claim(storage, format!("{IP_PREFIX}{ip}"), owner).await? {
                true => Ok(ip),
                false => Err(AllocationError::IpTaken),
            };
        }
        let size = u64::from(self.cidr.last() - self.cidr.first() + 1);
        // A few rounds: another API server may take our pick between the
        // list and the claim.
        for _ in 0..5 {
            let taken = Self::taken(storage, IP_PREFIX).await?;
            if taken.len() as u64 >= size {
                return Err(AllocationError::IpRangeFull);
            }
            // Start at a random offset so concurrent allocators rarely collide.
            let start = u64::from(uuid::Uuid::new_v4().as_u128() as u32) % size;
            let free = (0..size)
                .map(|i| Ipv4Addr::from(self.cidr.first() + ((start + i) % size) as u32))
                .find(|ip| !taken.contains(&ip.to_string()) && *ip != self.cidr.first_ip());
            let Some(ip) = free else {
                return Err(AllocationError::IpRangeFull);
            };
            if Self::claim(storage, format!("{IP_PREFIX}{ip}"), owner).await? {
                return Ok(ip);
            }
        }
        Err(AllocationError::IpRangeFull)
    }

    /// Allocates `requested`, or any free node port.
    pub async fn allocate_port(
        &self,
        storage: &Storage,
        requested: Option<u16>,
        owner: &str,
    ) -> Result<u16, AllocationError> {
        let (lo, hi) = self.ports;
        if let Some(port) = requested {
            if !(lo..=hi).contains(&port) {
                return Err(AllocationError::PortOutOfRange(lo, hi));
            }
            return match Self::claim(storage, format!("{PORT_PREFIX}{port}"), owner).await? {
                true => Ok(port),
                false => Err(AllocationError::PortTaken),
            };
        }
        let size = u32::from(hi - lo) + 1;
        for _ in 0..5 {
            let taken = Self::taken(storage, PORT_PREFIX).await?;
            let start = (uuid::Uuid::new_v4().as_u128() as u32) % size;
            let free = (0..size)
                .map(|i| lo + ((start + i) % size) as u16)
                .find(|p| !taken.contains(&p.to_string()));
            let Some(port) = free else {
                return Err(AllocationError::PortRangeFull);
            };
            if Self::claim(storage, format!("{PORT_PREFIX}{port}"), owner).await? {
                return Ok(port);
            }
        }
        Err(AllocationError::PortRangeFull)
    }

    /// Frees an address (nothing happens if it was not allocated).
    pub async fn release_ip(&self, storage: &Storage, ip: &str) {
        Self::release(storage, format!("{IP_PREFIX}{ip}")).await;
    }

    pub async fn release_port(&self, storage: &Storage, port: u16) {
        Self::release(storage, format!("{PORT_PREFIX}{port}")).await;
    }

    async fn release(storage: &Storage, key: String) {
        match storage.delete(key.as_bytes(), None).await {
            Ok(_) | Err(StorageError::NotFound) => {}
            // A leaked allocation wastes an address but breaks nothing.
            Err(e) => tracing::warn!(%key, error = %e, "could not release an allocation"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_port_ranges_parse_and_bound() {
        let c = Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.to_string(), "10.96.0.0/12");
        assert_eq!(c.first_ip(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 111, 255, 255)), "broadcast");
        assert!(!c.contains(Ipv4Addr::new(10, 96, 0, 0)), "network");
        assert_eq!(Cidr::parse("10.96.3.7/24").unwrap().to_string(), "10.96.3.0/24");
        assert!(Cidr::parse("10.96.0.0").is_err());
        assert!(Cidr::parse("10.96.0.0/31").is_err());
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
        assert!(parse_port_range("3-1").is_err() && parse_port_range("x").is_err());
    }
}
