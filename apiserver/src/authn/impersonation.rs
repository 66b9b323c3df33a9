//! Impersonation: `kubectl --as=bob --as-group=devs` sends
//! `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and
//! `Impersonate-Extra-<key>` headers, and the request then runs as that
//! user — if the real user may `impersonate` each of them (`users`,
//! `groups`, `serviceaccounts` for a ServiceAccount's user name, `uids`,
//! `userextras/<key>` in `authentication.k8s.io`), as upstream checks.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use super::User;
use crate::authz::{self, Attributes, ResourceAttributes};
use crate::rest::App;
use crate::status::ApiError;

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
}

async fn may(
    app: &App,
    user: &User,
    group: &'static str,
    resource: &str,
    subresource: Option<&str>,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let attributes = Attributes {
        user,
        verb: "impersonate",
        resource: Some(ResourceAttributes {
            group,
            resource,
            subresource,
            namespace,
            name: Some(name),
        }),
        path: None,
        field_selector: None,
    };
    authz::authorize(app, &attributes).await
}

/// The user the request acts as: `real`, or whom it may impersonate.
pub async fn apply(app: &App, real: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let name = values(headers, "impersonate-user").first().map(|s| s.to_string());
    let groups: Vec<String> = values(headers, "impersonate-group")
        .iter()
        .map(|s| s.to_string())
        .collect();
    let uid = values(headers, "impersonate-uid").first().map(|s| s.to_string());
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (header, value) in headers {
        if let Some(key) = header.as_str().strip_prefix("impersonate-extra-") {
            // Keys arrive %-escaped (they may hold `/`).
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .to_string();
            extra
                .entry(key)
                .or_default()
                .push(value.to_str().unwrap_or_default().to_string());
        }
    }
    let Some(name) = name else {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups, a uid or extras without impersonating a user",
            ));
        }
        return Ok(real);
    };
    let mut groups_out = groups.clone();
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) => {
            may(app, &real, "", "serviceaccounts", None, Some(ns), sa).await?;
            groups_out.push("system:serviceaccounts".into());
            groups_out.push(format!("system:serviceaccounts:{ns}"));
        }
        None => may(app, &real, "", "users", None, None, &name).await?,
    }
    for g in &groups {
        may(app, &real, "", "groups", None, None, g).await?;
    }
    if let Some(u) = &uid {
        may(app, &real, "authentication.k8s.io", "uids", None, None, u).await?;
    }
    for (key, vals) in &extra {
        for v in vals {
            may(app, &real, "authentication.k8s.io", "userextras", Some(key), None, v).await?;
        }
    }
    if name == "system:anonymous" {
        groups_out.push("system:unauthenticated".into());
    } else if !groups_out.iter().any(|g| g == "system:authenticated") {
        groups_out.push("system:authenticated".into());
    }
    tracing::debug!(real = %real.name, acting_as = %name, "impersonation");
    Ok(User {
        name,
        uid: uid.unwrap_or_default(),
        groups: groups_out,
        extra,
    })
}
