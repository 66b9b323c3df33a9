//! Authorization: may this user do this? Every request, REST or gRPC,
//! asks the same chain with the same [`Attributes`], as upstream's
//! union authorizer does:
//!
//! 1. members of `system:masters` may do anything;
//! 2. the [Node authorizer](node) decides what a kubelet
//!    (`system:node:<name>` in `system:nodes`) may touch: its own Node and
//!    Lease, pods bound to it, and what those pods use;
//! 3. [RBAC](rbac) allows what a binding grants.
//!
//! Nothing allowed is forbidden: 403 with upstream's message. The
//! [bootstrap policy](bootstrap) gives the control plane's own identities
//! their roles, and [escalation] keeps users from granting more than they
//! hold.

pub mod bootstrap;
pub mod escalation;
pub mod node;
pub mod rbac;

use crate::authn::User;
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;

/// The resource part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceAttributes<'a> {
    pub group: &'a str,
    /// The plural, as in RBAC rules.
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Everything an authorizer looks at.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub user: &'a User,
    pub verb: &'a str,
    /// A resource request; `None` for a path such as /metrics.
    pub resource: Option<ResourceAttributes<'a>>,
    pub path: Option<&'a str>,
    /// A list or watch's field selector (the Node authorizer lets a kubelet
    /// list only the pods bound to it).
    pub field_selector: Option<&'a str>,
}

impl<'a> Attributes<'a> {
    pub fn of_request(
        user: &'a User,
        verb: &'a str,
        info: &'a RequestInfo,
        field_selector: Option<&'a str>,
    ) -> Attributes<'a> {
        // A namespace is authorized within itself (`kubectl get ns mine`
        // works for someone bound only there), as upstream's RequestInfo does.
        let namespace = match (info.resource.group, info.resource.plural) {
            ("", "namespaces") => info.name.as_deref(),
            _ => info.namespace.as_deref(),
        };
        Attributes {
            user,
            verb,
            resource: Some(ResourceAttributes {
                group: info.resource.group,
                resource: info.resource.plural,
                subresource: info.subresource.as_deref(),
                namespace,
                name: info.name.as_deref(),
            }),
            path: None,
            field_selector,
        }
    }

    pub fn of_path(user: &'a User, verb: &'a str, path: &'a str) -> Attributes<'a> {
        Attributes {
            user,
            verb,
            resource: None,
            path: Some(path),
            field_selector: None,
        }
    }
}

/// One authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    /// Refused outright, with the reason (no later authorizer is asked).
    Deny(String),
    NoOpinion,
}

/// Asks the chain; `Ok(reason)` when allowed.
pub async fn decide(app: &App, a: &Attributes<'_>) -> Decision {
    if a.user.groups.iter().any(|g| g == "system:masters") {
        return Decision::Allow("member of system:masters".into());
    }
    match node::decide(app, a).await {
        Decision::NoOpinion => {}
        decided => return decided,
    }
    match app.rbac.allows(a) {
        Some(reason) => Decision::Allow(reason),
        None => Decision::NoOpinion,
    }
}

/// The 403 upstream writes for a refused request.
pub fn forbidden(a: &Attributes<'_>, reason: &str) -> ApiError {
    let suffix = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    let user = &a.user.name;
    let message = match &a.resource {
        Some(r) => {
            let combined = match r.subresource {
                Some(sub) => format!("{}/{sub}", r.resource),
                None => r.resource.to_string(),
            };
            let what = match r.name {
                Some(name) => format!("{} \"{name}\"", r.resource),
                None => r.resource.to_string(),
            };
            let scope = match r.namespace.filter(|n| !n.is_empty()) {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".into(),
            };
            format!(
                "{what} is forbidden: User \"{user}\" cannot {} resource \"{combined}\" in API group \"{}\" {scope}{suffix}",
                a.verb, r.group
            )
        }
        None => format!(
            "forbidden: User \"{user}\" cannot {} path \"{}\"{suffix}",
            a.verb,
            a.path.unwrap_or_default()
        ),
    };
    ApiError {
        code: 403,
        reason: "Forbidden",
        message,
        details: None,
    }
}

/// Allows the request or answers 403.
pub async fn authorize(app: &App, a: &Attributes<'_>) -> Result<(), ApiError> {
    match decide(app, a).await {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(reason) => Err(forbidden(a, &reason)),
        Decision::NoOpinion => Err(forbidden(a, "")),
    }
}
