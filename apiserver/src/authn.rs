//! Who is asking, and (until RBAC lands) whether they may.
//!
//! Authentication reads the client certificate the TLS handshake verified
//! (`common::grpc::PeerInfo`): CN is the user, O the groups, as
//! Kubernetes does it. Authorization is interim: members of
//! `system:masters` and the control-plane identities may do anything;
//! everyone else is refused with Kubernetes' 403 message.

use common::grpc::PeerInfo;

use crate::request_info::RequestInfo;
use crate::status::ApiError;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// The user of a request's connection; 401 without a client certificate.
pub fn authenticate(peer: Option<&PeerInfo>) -> Result<User, ApiError> {
    let subject = peer.and_then(PeerInfo::subject).ok_or_else(ApiError::unauthorized)?;
    let mut groups = subject.organizations;
    groups.push("system:authenticated".into());
    Ok(User {
        name: subject.common_name,
        groups,
    })
}

/// Marks requests that came through `--insecure-port`: loopback only,
/// unauthenticated, and treated as a cluster admin, as the classic
/// insecure port was.
#[derive(Debug, Clone, Copy)]
pub struct InsecurePort;

/// The user of the insecure port.
pub fn insecure_user() -> User {
    User {
        name: "system:unsecured".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}

/// The identities allowed everything until RBAC exists.
const CONTROL_PLANE: [&str; 3] = [
    "system:kube-scheduler",
    "system:kube-controller-manager",
    "system:kube-proxy",
];

fn trusted(user: &User) -> bool {
    let is_node = user.name.starts_with("system:node:") && user.groups.iter().any(|g| g == "system:nodes");
    user.groups.iter().any(|g| g == "system:masters") || CONTROL_PLANE.contains(&user.name.as_str()) || is_node
}

/// A non-resource path such as `/metrics`.
pub fn authorize_path(user: &User, path: &str) -> Result<(), ApiError> {
    if trusted(user) {
        return Ok(());
    }
    Err(ApiError {
        code: 403,
        reason: "Forbidden",
        message: format!("forbidden: User \"{}\" cannot get path \"{path}\"", user.name),
        details: None,
    })
}

pub fn authorize(user: &User, verb: &str, info: &RequestInfo) -> Result<(), ApiError> {
    if trusted(user) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        &user.name,
        verb,
        info.resource.plural,
        info.resource.group,
        info.namespace.as_deref().unwrap_or_default(),
    ))
}
