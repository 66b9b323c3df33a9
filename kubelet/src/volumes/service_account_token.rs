//! The `serviceAccountToken` source of projected volumes: a token for the
//! pod's ServiceAccount, asked of the TokenRequest API, bound to the pod
//! (it stops working when the pod is deleted), and renewed once 80 % of
//! its lifetime has passed or it is a day old, as upstream's token
//! manager does. Tokens live in memory only, and on disk in the volume.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use client::{Api, Client};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};

/// (pod uid, audience, lifetime in seconds).
type Key = (String, String, i64);

/// The tokens held, with when each was issued.
#[derive(Default)]
pub struct Tokens {
    held: Mutex<HashMap<Key, (String, Instant)>>,
}

const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_LIFETIME: i64 = 3600;

impl Tokens {
    /// The token for this projection: the one held while fresh, else a new one.
    pub async fn get(
        &self,
        client: &Client,
        pod: &Pod,
        source: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let lifetime = source.expiration_seconds.unwrap_or(DEFAULT_LIFETIME);
        let audience = source.audience.clone().unwrap_or_default();
        let key = (uid.clone(), audience.clone(), lifetime);
        let renew_after = Duration::from_secs(u64::try_from(lifetime).unwrap_or(0) * 8 / 10).min(MAX_AGE);
        if let Some((token, at)) = self.held.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if at.elapsed() < renew_after {
                return Ok(token.clone());
            }
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if audience.is_empty() {
                    Vec::new()
                } else {
                    vec![audience]
                },
                expiration_seconds: Some(lifetime),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: Some(uid),
                }),
            },
            ..Default::default()
        };
        let mut body = serde_json::to_value(&request).map_err(|e| e.to_string())?;
        body["apiVersion"] = serde_json::json!("authentication.k8s.io/v1");
        body["kind"] = serde_json::json!("TokenRequest");
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let answer: TokenRequest = api
            .create_subresource(&account, "token", &body)
            .await
            .map_err(|e| format!("requesting a token for serviceaccount {namespace}/{account}: {e}"))?;
        let token = answer
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or("the TokenRequest answer holds no token")?;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (token.clone(), Instant::now()));
        Ok(token)
    }

    /// Forgets a pod's tokens.
    pub fn forget(&self, pod_uid: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(uid, _, _), _| uid != pod_uid);
    }
}
