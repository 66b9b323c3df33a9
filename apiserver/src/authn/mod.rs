//! Authentication: who is asking. Tried in upstream's order:
//!
//! 1. the client certificate the TLS handshake verified
//!    (`common::grpc::PeerInfo`): CN the user, O the groups;
//! 2. a bearer token (`Authorization: Bearer …`): a line of the static
//!    [token file](token_file) (`--token-auth-file`), else a
//!    [ServiceAccount token](service_account) this API server signed;
//! 3. nothing: `system:anonymous` in `system:unauthenticated` when
//!    `--anonymous-auth` is on, a 401 otherwise (health and `/version`
//!    answer anyone before this is asked).
//!
//! Authenticated users are also in `system:authenticated`. A request may
//! then act as someone else ([impersonation]) if it may `impersonate`.

pub mod impersonation;
pub mod service_account;
pub mod token_file;

use std::collections::BTreeMap;

use common::grpc::PeerInfo;

use crate::rest::App;
use crate::status::ApiError;

/// An authenticated user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    fn authenticated(mut self) -> User {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// The configured ways to authenticate.
#[derive(Default)]
pub struct Authenticator {
    pub tokens: token_file::TokenFile,
    pub service_accounts: Option<service_account::ServiceAccounts>,
    pub anonymous: bool,
}

/// The token of an `Authorization: Bearer` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

impl Authenticator {
    /// Who the request is from: its certificate, its bearer token, or
    /// (when allowed) anonymous.
    pub async fn authenticate(
        &self,
        app: &App,
        peer: Option<&PeerInfo>,
        authorization: Option<&str>,
    ) -> Result<User, ApiError> {
        if let Some(subject) = peer.and_then(PeerInfo::subject) {
            if subject.common_name.is_empty() {
                // A certificate that names nobody is refused, not ignored.
                return Err(ApiError::unauthorized());
            }
            return Ok(User {
                name: subject.common_name,
                groups: subject.organizations,
                ..Default::default()
            }
            .authenticated());
        }
        if let Some(token) = bearer(authorization) {
            if let Some(user) = self.tokens.lookup(token) {
                return Ok(user.authenticated());
            }
            if let Some(sa) = &self.service_accounts {
                return match sa.verify(app, token, None).await {
                    Ok((user, _)) => Ok(user.authenticated()),
                    Err(why) => {
                        tracing::debug!(%why, "bearer token rejected");
                        Err(ApiError::unauthorized())
                    }
                };
            }
            return Err(ApiError::unauthorized());
        }
        if self.anonymous {
            return Ok(anonymous());
        }
        Err(ApiError::unauthorized())
    }

    /// A TokenReview: who a token belongs to, and for which audiences
    /// (checked against `audiences` when the review names some, else
    /// against the API server's own).
    pub async fn review(&self, app: &App, token: &str, audiences: &[String]) -> Result<(User, Vec<String>), String> {
        if let Some(user) = self.tokens.lookup(token) {
            let own = self
                .service_accounts
                .as_ref()
                .map(|s| s.audiences.clone())
                .unwrap_or_default();
            return Ok((user.authenticated(), own));
        }
        let wanted = (!audiences.is_empty()).then_some(audiences);
        match &self.service_accounts {
            Some(sa) => sa.verify(app, token, wanted).await.map(|(u, a)| (u.authenticated(), a)),
            None => Err("token authentication is not configured".into()),
        }
    }
}

pub fn anonymous() -> User {
    User {
        name: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
        ..Default::default()
    }
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
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
