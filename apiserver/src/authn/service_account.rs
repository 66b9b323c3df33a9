//! ServiceAccount tokens: JWTs this API server signs (ES256, with the
//! key `kubernate pki` made, `--service-account-signing-key-file`) and
//! verifies (`--service-account-key-file`), in upstream's format:
//!
//! ```text
//! {"iss": <--service-account-issuer>, "sub": "system:serviceaccount:<ns>:<name>",
//!  "aud": [<audiences>], "exp", "nbf", "iat", "jti",
//!  "kubernetes.io": {"namespace", "serviceaccount": {"name", "uid"},
//!                    "pod": {"name", "uid"}?, "secret"?, "node"?}}
//! ```
//!
//! A token is accepted when its signature, issuer, audience (one of
//! `--api-audiences`), expiry and not-before check out and the
//! ServiceAccount (and the object it is bound to) still exist with the
//! same UIDs: deleting a pod revokes its tokens.
//!
//! Tokens are issued through the TokenRequest API
//! (`serviceaccounts/<name>/token`, `kubectl create token`). The public
//! key is published as OIDC discovery documents, so others can verify
//! our tokens.

use std::collections::BTreeMap;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::User;
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;

/// Shortest, default and longest lifetime of a requested token, as upstream.
const MIN_EXPIRATION: i64 = 600;
const DEFAULT_EXPIRATION: i64 = 3600;
const MAX_EXPIRATION: i64 = 1 << 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Key(String, String),
}

pub struct ServiceAccounts {
    /// Without a signing key this server verifies but cannot issue.
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    pub key_id: String,
    jwk: Value,
    pub issuer: String,
    pub audiences: Vec<String>,
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ServiceAccounts {
    /// Loads the verifying key (public, PEM) and, if given, the signing key.
    pub fn load(
        public: &Path,
        private: Option<&Path>,
        issuer: &str,
        audiences: &[String],
    ) -> Result<ServiceAccounts, KeyError> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| KeyError::Read(p.display().to_string(), e));
        let public_pem = read(public)?;
        let decoding = DecodingKey::from_ec_pem(&public_pem)
            .map_err(|e| KeyError::Key(public.display().to_string(), e.to_string()))?;
        let encoding = match private {
            Some(p) => Some(
                EncodingKey::from_ec_pem(&read(p)?)
                    .map_err(|e| KeyError::Key(p.display().to_string(), e.to_string()))?,
            ),
            None => None,
        };
        // The JWK: the P-256 point's coordinates, from the key's SPKI.
        let bad = |why: &str| KeyError::Key(public.display().to_string(), why.to_string());
        let (_, pem) = x509_parser::pem::parse_x509_pem(&public_pem).map_err(|_| bad("not a PEM public key"))?;
        use x509_parser::prelude::FromDer;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&pem.contents)
            .map_err(|_| bad("not a SubjectPublicKeyInfo"))?;
        let point = spki.subject_public_key.data.as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(bad("not an uncompressed P-256 public key (ES256 needs one)"));
        }
        let key_id = base64url(ring::digest::digest(&ring::digest::SHA256, &pem.contents).as_ref());
        let jwk = json!({
            "use": "sig", "kty": "EC", "kid": key_id, "crv": "P-256", "alg": "ES256",
            "x": base64url(&point[1..33]), "y": base64url(&point[33..65]),
        });
        Ok(ServiceAccounts {
            encoding,
            decoding,
            key_id,
            jwk,
            issuer: issuer.to_string(),
            audiences: if audiences.is_empty() {
                vec![issuer.to_string()]
            } else {
                audiences.to_vec()
            },
        })
    }

    /// Signs a token; `Err` when this server has no signing key.
    pub fn issue(
        &self,
        kubernetes: KubernetesClaims,
        audiences: Vec<String>,
        lifetime: i64,
    ) -> Result<(String, i64), String> {
        let key = self
            .encoding
            .as_ref()
            .ok_or("this API server has no --service-account-signing-key-file")?;
        let now = now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: format!(
                "system:serviceaccount:{}:{}",
                kubernetes.namespace, kubernetes.serviceaccount.name
            ),
            aud: audiences,
            exp: now.saturating_add(lifetime),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())?;
        Ok((token, claims.exp))
    }

    /// Checks a token against `audiences` (default: the API server's); the
    /// user it stands for and its audiences.
    pub async fn verify(
        &self,
        app: &App,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<(User, Vec<String>), String> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences.unwrap_or(&self.audiences));
        validation.validate_nbf = true;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| e.to_string())?;
        let claims = data.claims;
        let k = &claims.kubernetes;
        let uid_of = |kind: &str, namespace: Option<&str>, name: &str| {
            let key = match namespace {
                Some(ns) => format!("/registry/{kind}/{ns}/{name}"),
                None => format!("/registry/{kind}/{name}"),
            };
            async move {
                let stored = app.storage.get(key.as_bytes()).await.ok()?;
                let object: Value = serde_json::from_slice(&stored.value).ok()?;
                object["metadata"]["uid"].as_str().map(str::to_string)
            }
        };
        let sa = uid_of("serviceaccounts", Some(&k.namespace), &k.serviceaccount.name).await;
        if sa.as_deref() != Some(k.serviceaccount.uid.as_str()) {
            return Err(format!(
                "the ServiceAccount {}/{} (uid {}) no longer exists",
                k.namespace, k.serviceaccount.name, k.serviceaccount.uid
            ));
        }
        let mut extra = BTreeMap::new();
        for (kind, namespace, bound, label) in [
            ("pods", Some(k.namespace.as_str()), &k.pod, "pod"),
            ("secrets", Some(k.namespace.as_str()), &k.secret, "secret"),
            ("minions", None, &k.node, "node"),
        ] {
            if let Some(r) = bound {
                if uid_of(kind, namespace, &r.name).await.as_deref() != Some(r.uid.as_str()) {
                    return Err(format!(
                        "the {label} {} (uid {}) the token is bound to no longer exists",
                        r.name, r.uid
                    ));
                }
                if label != "secret" {
                    extra.insert(
                        format!("authentication.kubernetes.io/{label}-name"),
                        vec![r.name.clone()],
                    );
                    extra.insert(format!("authentication.kubernetes.io/{label}-uid"), vec![r.uid.clone()]);
                }
            }
        }
        extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={}", claims.jti)],
        );
        let user = User {
            name: claims.sub.clone(),
            uid: k.serviceaccount.uid.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", k.namespace),
            ],
            extra,
        };
        Ok((user, claims.aud))
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }
}

/// Reads an object by store key; 404 in Kubernetes' words when absent.
async fn object(app: &App, key: String, resource: &str, name: &str) -> Result<Value, ApiError> {
    let stored = app
        .storage
        .get(key.as_bytes())
        .await
        .map_err(|_| ApiError::new(404, "NotFound", format!("{resource} \"{name}\" not found")))?;
    serde_json::from_slice(&stored.value).map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

/// `POST …/serviceaccounts/<name>/token`: a TokenRequest answered with a
/// signed token.
pub async fn token_request(app: &App, caller: &User, info: &RequestInfo, body: &Value) -> Result<Value, ApiError> {
    let sa_api = app.authn.service_accounts.as_ref().ok_or_else(|| {
        ApiError::new(
            500,
            "InternalError",
            "this API server issues no ServiceAccount tokens (no --service-account-key-file)",
        )
    })?;
    let namespace = info.namespace.clone().unwrap_or_default();
    let name = info.name.clone().unwrap_or_default();
    let sa = object(
        app,
        format!("/registry/serviceaccounts/{namespace}/{name}"),
        "serviceaccounts",
        &name,
    )
    .await?;
    let spec = &body["spec"];
    let lifetime = spec["expirationSeconds"].as_i64().unwrap_or(DEFAULT_EXPIRATION);
    if lifetime < MIN_EXPIRATION {
        return Err(ApiError::invalid(
            "TokenRequest",
            &name,
            "spec.expirationSeconds",
            "may not specify a duration less than 10 minutes",
        ));
    }
    if lifetime >= MAX_EXPIRATION {
        return Err(ApiError::invalid(
            "TokenRequest",
            &name,
            "spec.expirationSeconds",
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list.iter().filter_map(|a| a.as_str().map(str::to_string)).collect(),
        _ => sa_api.audiences.clone(),
    };
    let mut claims = KubernetesClaims {
        namespace: namespace.clone(),
        serviceaccount: Ref {
            name: name.clone(),
            uid: sa["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        },
        pod: None,
        secret: None,
        node: None,
    };
    let bound = &spec["boundObjectRef"];
    // NodeRestriction: a kubelet may only ask for tokens bound to a pod of
    // its node that runs as this ServiceAccount.
    if let Some(node) = crate::authz::node::node_name(caller) {
        let refuse = |why: &str| ApiError::forbidden_because(format!("node '{node}' {why}"));
        if bound["kind"] != "Pod" {
            return Err(refuse("may only request tokens bound to a pod"));
        }
        let pod_name = bound["name"].as_str().unwrap_or_default();
        let pod = object(app, format!("/registry/pods/{namespace}/{pod_name}"), "pods", pod_name).await?;
        if pod["spec"]["nodeName"] != node {
            return Err(refuse("may only request tokens for pods bound to it"));
        }
        let account = pod["spec"]["serviceAccountName"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        if account != name {
            return Err(ApiError::bad_request(format!(
                "the pod {pod_name} runs as serviceaccount {account:?}, not {name:?}"
            )));
        }
    }
    if let Some(kind) = bound["kind"].as_str() {
        let bound_name = bound["name"].as_str().unwrap_or_default().to_string();
        let key = match kind {
            "Pod" => format!("/registry/pods/{namespace}/{bound_name}"),
            "Secret" => format!("/registry/secrets/{namespace}/{bound_name}"),
            "Node" => format!("/registry/minions/{bound_name}"),
            other => {
                return Err(ApiError::invalid(
                    "TokenRequest",
                    &name,
                    "spec.boundObjectRef.kind",
                    &format!("supported values: \"Pod\", \"Secret\", \"Node\" (got {other:?})"),
                ))
            }
        };
        let target = object(app, key, &format!("{}s", kind.to_lowercase()), &bound_name).await?;
        let uid = target["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        if let Some(wanted) = bound["uid"].as_str().filter(|u| !u.is_empty()) {
            if wanted != uid {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("the UID in the bound object reference ({wanted}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"),
                ));
            }
        }
        let r = Some(Ref { name: bound_name, uid });
        match kind {
            "Pod" => claims.pod = r,
            "Secret" => claims.secret = r,
            _ => claims.node = r,
        }
    }
    let (token, expires) = sa_api
        .issue(claims, audiences.clone(), lifetime)
        .map_err(|e| ApiError::new(500, "InternalError", e))?;
    let expiration = jiff_timestamp(expires);
    let mut answer = body.clone();
    answer["apiVersion"] = json!("authentication.k8s.io/v1");
    answer["kind"] = json!("TokenRequest");
    answer["metadata"] = json!({"name": name, "namespace": namespace, "creationTimestamp": crate::registry::now()});
    answer["spec"]["audiences"] = json!(audiences);
    answer["spec"]["expirationSeconds"] = json!(lifetime);
    answer["status"] = json!({"token": token, "expirationTimestamp": expiration});
    Ok(answer)
}

fn jiff_timestamp(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}
