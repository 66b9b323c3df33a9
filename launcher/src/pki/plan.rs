//! Which identities a cluster has, and what each certificate says.
//!
//! This is the identity list of the design: who signs each certificate, its
//! subject (CN is the user name, O the groups, as Kubernetes reads them),
//! the names a server answers to, and which identities get a kubeconfig.
//! Keeping it as data makes it easy to read and to test.

use std::net::IpAddr;

use super::authority::{LeafSpec, Usage};
use super::files::Error;

/// The CA that signs a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// `ca.crt`: everything that speaks to or as the API server.
    Cluster,
    /// `store-ca.crt`: store members and the API server's store client.
    Store,
}

/// One certificate of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Path of the pair relative to the PKI directory, without extension:
    /// `<base>.crt` and `<base>.key`.
    pub base: String,
    pub signer: Signer,
    pub spec: LeafSpec,
    /// Path of the kubeconfig for this identity, if it gets one.
    pub kubeconfig: Option<String>,
}

/// The user name of the administrator, in the `system:masters` group.
pub const ADMIN_USER: &str = "admin";
/// The group that bypasses authorization, as in Kubernetes.
pub const MASTERS_GROUP: &str = "system:masters";
/// The CN of the API server's client certificate for the store (as kubeadm).
pub const STORE_CLIENT_USER: &str = "kube-apiserver-etcd-client";

fn leaf(common_name: &str, organizations: &[&str], sans: Vec<String>, usage: Usage) -> LeafSpec {
    LeafSpec {
        common_name: common_name.to_string(),
        organizations: organizations.iter().map(|o| o.to_string()).collect(),
        sans,
        usage,
    }
}

fn planned(base: &str, signer: Signer, spec: LeafSpec, kubeconfig: bool) -> Planned {
    Planned {
        base: base.to_string(),
        signer,
        spec,
        kubeconfig: kubeconfig.then(|| format!("{base}.kubeconfig")),
    }
}

fn loopback() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
}

/// The certificates of the control plane: the store members, the API
/// server, and the control-plane clients.
pub fn control_plane(apiserver_hosts: &[String], store_members: u32, first_service_ip: IpAddr) -> Vec<Planned> {
    let mut plan = Vec::new();
    for i in 0..store_members {
        let member = format!("store-{i}");
        let mut sans = loopback();
        sans.push(member.clone());
        plan.push(planned(
            &format!("store/{member}"),
            Signer::Store,
            leaf(&member, &[], sans.clone(), Usage::Server),
            false,
        ));
        plan.push(planned(
            &format!("store/{member}-peer"),
            Signer::Store,
            leaf(&member, &[], sans, Usage::Peer),
            false,
        ));
    }
    let mut sans = loopback();
    sans.extend(
        [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(String::from),
    );
    sans.push(first_service_ip.to_string());
    for host in apiserver_hosts {
        if !sans.contains(host) {
            sans.push(host.clone());
        }
    }
    plan.push(planned(
        "apiserver",
        Signer::Cluster,
        leaf("kube-apiserver", &[], sans, Usage::Server),
        false,
    ));
    plan.push(planned(
        "apiserver-store-client",
        Signer::Store,
        leaf(STORE_CLIENT_USER, &[], vec![], Usage::Client),
        false,
    ));
    plan.push(planned(
        "apiserver-kubelet-client",
        Signer::Cluster,
        leaf("kube-apiserver-kubelet-client", &[MASTERS_GROUP], vec![], Usage::Client),
        false,
    ));
    plan.push(planned(
        "admin",
        Signer::Cluster,
        leaf(ADMIN_USER, &[MASTERS_GROUP], vec![], Usage::Client),
        true,
    ));
    plan.push(planned(
        "controller-manager",
        Signer::Cluster,
        leaf("system:kube-controller-manager", &[], vec![], Usage::Client),
        true,
    ));
    plan.push(planned(
        "scheduler",
        Signer::Cluster,
        leaf("system:kube-scheduler", &[], vec![], Usage::Client),
        true,
    ));
    plan.push(planned(
        "kube-proxy",
        Signer::Cluster,
        leaf("system:kube-proxy", &["system:node-proxier"], vec![], Usage::Client),
        true,
    ));
    plan
}

/// The certificates of one node: the kubelet's client identity (with its
/// kubeconfig) and its serving certificate for port 10250.
pub fn node(name: &str) -> Result<Vec<Planned>, Error> {
    validate_node_name(name)?;
    let mut sans = loopback();
    sans.insert(0, name.to_string());
    Ok(vec![
        planned(
            &format!("nodes/{name}"),
            Signer::Cluster,
            leaf(&format!("system:node:{name}"), &["system:nodes"], vec![], Usage::Client),
            true,
        ),
        planned(
            &format!("nodes/{name}-serving"),
            Signer::Cluster,
            leaf(&format!("system:node:{name}"), &["system:nodes"], sans, Usage::Server),
            false,
        ),
    ])
}

/// A user's client certificate and kubeconfig (`users/<name>`): CN the
/// user name, O the groups, as the API server reads them.
pub fn user(name: &str, groups: &[String]) -> Result<Vec<Planned>, Error> {
    let bad = |reason: &str| Error::InvalidInput {
        what: "user name",
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(bad("must be non-empty, without '/' and not start with '.'"));
    }
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    Ok(vec![planned(
        &format!("users/{name}"),
        Signer::Cluster,
        leaf(name, &groups, vec![], Usage::Client),
        true,
    )])
}

/// A node name must be a DNS-1123 subdomain, as Kubernetes requires.
pub fn validate_node_name(name: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidInput {
        what: "node name",
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 253 {
        return Err(invalid("must be 1 to 253 characters"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(invalid(
            "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

/// The first address of a Service CIDR, which the `kubernetes` Service gets
/// and the API server's certificate must name: 10.96.0.0/12 gives 10.96.0.1.
pub fn first_service_ip(cidr: &str) -> Result<IpAddr, Error> {
    let invalid = |reason: &str| Error::InvalidInput {
        what: "service CIDR",
        value: cidr.to_string(),
        reason: reason.to_string(),
    };
    let (addr, len) = cidr.split_once('/').ok_or_else(|| invalid("expected ADDRESS/PREFIX"))?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid("the address is not an IP address"))?;
    let len: u32 = len.parse().map_err(|_| invalid("the prefix length is not a number"))?;
    match addr {
        IpAddr::V4(v4) => {
            if len > 30 {
                return Err(invalid("an IPv4 prefix must be at most /30"));
            }
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            Ok(IpAddr::V4(std::net::Ipv4Addr::from((u32::from(v4) & mask) + 1)))
        }
        IpAddr::V6(v6) => {
            if len > 126 {
                return Err(invalid("an IPv6 prefix must be at most /126"));
            }
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            Ok(IpAddr::V6(std::net::Ipv6Addr::from((u128::from(v6) & mask) + 1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_ip_is_network_plus_one() {
        assert_eq!(first_service_ip("10.96.0.0/12").unwrap().to_string(), "10.96.0.1");
        assert_eq!(first_service_ip("10.96.5.7/16").unwrap().to_string(), "10.96.0.1");
        assert_eq!(
            first_service_ip("fd00:10:96::/108").unwrap().to_string(),
            "fd00:10:96::1"
        );
        for bad in ["10.96.0.0", "x/12", "10.96.0.0/33", "10.0.0.0/31"] {
            assert!(first_service_ip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_names_follow_dns_1123() {
        assert!(validate_node_name("node-1.example").is_ok());
        for bad in ["", "Node1", "-a", "a_b", "a..b"] {
            assert!(validate_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plan_holds_every_identity_once() {
        let mut plan = control_plane(&["example.com".into()], 3, "10.96.0.1".parse().unwrap());
        plan.extend(node("n1").unwrap());
        let bases: Vec<&str> = plan.iter().map(|p| p.base.as_str()).collect();
        for want in [
            "store/store-0",
            "store/store-2-peer",
            "apiserver",
            "apiserver-store-client",
            "admin",
            "scheduler",
            "controller-manager",
            "kube-proxy",
            "nodes/n1",
            "nodes/n1-serving",
        ] {
            assert_eq!(bases.iter().filter(|b| **b == want).count(), 1, "{want}");
        }
        let apiserver = plan.iter().find(|p| p.base == "apiserver").unwrap();
        assert!(apiserver.spec.sans.contains(&"example.com".to_string()));
        assert!(apiserver.spec.sans.contains(&"10.96.0.1".to_string()));
    }
}
