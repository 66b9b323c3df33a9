//! Who may call the kubelet API, decided by the API server: the client
//! certificate (verified against the cluster CA by the TLS handshake)
//! names the user and groups, and a SubjectAccessReview asks whether that
//! user may `get` the node's subresource the path maps to, as upstream's
//! kubelet does with `--authorization-mode=Webhook`:
//!
//! | path | subresource |
//! | --- | --- |
//! | `/containerLogs/…` | `nodes/proxy` |
//! | `/metrics/resource` | `nodes/metrics` |
//!
//! Answers are cached (allowed for 5 minutes, denied for 30 seconds, as
//! upstream's webhook authorizer caches them), so a streaming client does
//! not ask on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use client::{Api, Client};
use common::grpc::PeerInfo;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};

const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);

/// Why a call is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No client certificate: 401.
    Unauthenticated,
    /// 403 with upstream's message.
    Forbidden(String),
}

/// (user, groups, subresource).
type Question = (String, Vec<String>, String);

#[derive(Default)]
pub struct Decisions {
    /// Answers and when they were given.
    cache: Mutex<HashMap<Question, (bool, Instant)>>,
}

impl Decisions {
    /// Whether the caller may get `nodes/<subresource>` of `node`.
    pub async fn check(&self, client: &Client, node: &str, peer: &PeerInfo, subresource: &str) -> Result<(), Refusal> {
        let subject = peer.subject().ok_or(Refusal::Unauthenticated)?;
        let mut groups = subject.organizations.clone();
        groups.push("system:authenticated".into());
        let key = (subject.common_name.clone(), groups.clone(), subresource.to_string());
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
        let allowed = match cached {
            Some((allowed, at)) if at.elapsed() < if allowed { ALLOWED_TTL } else { DENIED_TTL } => allowed,
            _ => {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(subject.common_name.clone()),
                        groups: Some(groups),
                        resource_attributes: Some(ResourceAttributes {
                            verb: Some("get".into()),
                            resource: Some("nodes".into()),
                            subresource: Some(subresource.into()),
                            name: Some(node.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let api: Api<SubjectAccessReview> = Api::all(client.clone());
                let allowed = match api.create(&review).await {
                    Ok(answer) => answer.status.is_some_and(|s| s.allowed),
                    Err(e) => {
                        tracing::warn!(error = %e, "SubjectAccessReview failed; refusing");
                        return Err(Refusal::Forbidden(format!("the authorization check failed: {e}")));
                    }
                };
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (allowed, Instant::now()));
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Forbidden(format!(
                "Forbidden (user={}, verb=get, resource=nodes, subresource={subresource})",
                subject.common_name
            )))
        }
    }
}
