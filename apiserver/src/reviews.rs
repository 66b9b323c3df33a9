//! The create-only kinds that ask a question instead of storing an
//! object, answered from authentication and authorization:
//!
//! - TokenReview: whose token is this (for webhooks and kubelets)?
//! - SelfSubjectReview: who am I (`kubectl auth whoami`)?
//! - SubjectAccessReview, LocalSubjectAccessReview and
//!   SelfSubjectAccessReview: may this user do this (`kubectl auth
//!   can-i`)?
//! - SelfSubjectRulesReview: what may I do here (`kubectl auth can-i
//!   --list`)?
//! - and TokenRequest (`serviceaccounts/<name>/token`), which issues a
//!   ServiceAccount token.
//!
//! The answer is the request with its `status` filled in; nothing is
//! stored.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::authn::User;
use crate::authz::{self, Attributes, Decision, ResourceAttributes};
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;

fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

fn answered(body: &Value, group_version: &str, kind: &str, status: Value) -> Value {
    let mut answer = body.clone();
    answer["apiVersion"] = json!(group_version);
    answer["kind"] = json!(kind);
    if !answer["metadata"].is_object() {
        answer["metadata"] = json!({});
    }
    answer["metadata"]["creationTimestamp"] = json!(crate::registry::now());
    answer["status"] = status;
    answer
}

/// Answers a create of a review kind; `None` for any other create.
/// Whether `info` names one of the review kinds (their bodies are checked
/// against their types like any object's, `fieldValidation` included).
pub fn is_review(info: &RequestInfo) -> bool {
    info.subresource.is_none()
        && matches!(
            (info.resource.group, info.resource.plural),
            ("authentication.k8s.io", "tokenreviews" | "selfsubjectreviews")
                | (
                    "authorization.k8s.io",
                    "subjectaccessreviews"
                        | "localsubjectaccessreviews"
                        | "selfsubjectaccessreviews"
                        | "selfsubjectrulesreviews"
                )
        )
}

pub async fn create(app: &App, user: &User, info: &RequestInfo, body: &Value) -> Option<Result<Value, ApiError>> {
    let r = info.resource;
    Some(match (r.group, r.plural, info.subresource.as_deref()) {
        ("", "serviceaccounts", Some("token")) => {
            crate::authn::service_account::token_request(app, user, info, body).await
        }
        ("authentication.k8s.io", "tokenreviews", None) => Ok(token_review(app, body).await),
        ("authentication.k8s.io", "selfsubjectreviews", None) => Ok(answered(
            body,
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            json!({"userInfo": user_info(user)}),
        )),
        (
            "authorization.k8s.io",
            kind @ ("subjectaccessreviews" | "localsubjectaccessreviews" | "selfsubjectaccessreviews"),
            None,
        ) => access_review(app, user, info, kind, body).await,
        ("authorization.k8s.io", "selfsubjectrulesreviews", None) => Ok(rules_review(app, user, body)),
        _ => return None,
    })
}

async fn token_review(app: &App, body: &Value) -> Value {
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    let wanted: Vec<String> = body["spec"]["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let status = match app.authn.review(app, token, &wanted).await {
        Ok((user, audiences)) => {
            let matching: Vec<&String> = if wanted.is_empty() {
                audiences.iter().collect()
            } else {
                wanted.iter().filter(|w| audiences.contains(w)).collect()
            };
            if matching.is_empty() {
                json!({"authenticated": false, "error": format!("token audiences {audiences:?} is invalid for the target audiences {wanted:?}")})
            } else {
                json!({"authenticated": true, "user": user_info(&user), "audiences": matching})
            }
        }
        Err(why) => json!({"authenticated": false, "error": why}),
    };
    let mut answer = answered(body, "authentication.k8s.io/v1", "TokenReview", status);
    // The token itself is never echoed back.
    answer["spec"]["token"] = json!("");
    answer
}

async fn access_review(
    app: &App,
    caller: &User,
    info: &RequestInfo,
    kind: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let spec = &body["spec"];
    let subject = if kind == "selfsubjectaccessreviews" {
        caller.clone()
    } else {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        let extra: BTreeMap<String, Vec<String>> = spec["extra"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), strings(v)))
            .collect();
        let user = User {
            name: spec["user"].as_str().unwrap_or_default().to_string(),
            uid: spec["uid"].as_str().unwrap_or_default().to_string(),
            groups: strings(&spec["groups"]),
            extra,
        };
        if user.name.is_empty() && user.groups.is_empty() {
            return Err(ApiError::invalid(
                "SubjectAccessReview",
                "",
                "spec.user",
                "at least one of user or group must be specified",
            ));
        }
        user
    };
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    let str_of = |v: &Value| v.as_str().map(str::to_string);
    let (verb, path, group, plural, sub, name, mut namespace) = if resource.is_object() {
        (
            str_of(&resource["verb"]).unwrap_or_default(),
            None,
            str_of(&resource["group"]).unwrap_or_default(),
            str_of(&resource["resource"]).unwrap_or_default(),
            str_of(&resource["subresource"]).filter(|s| !s.is_empty()),
            str_of(&resource["name"]).filter(|s| !s.is_empty()),
            str_of(&resource["namespace"]).filter(|s| !s.is_empty()),
        )
    } else if non_resource.is_object() {
        (
            str_of(&non_resource["verb"]).unwrap_or_default(),
            str_of(&non_resource["path"]),
            String::new(),
            String::new(),
            None,
            None,
            None,
        )
    } else {
        return Err(ApiError::invalid(
            "SubjectAccessReview",
            "",
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    if kind == "localsubjectaccessreviews" {
        let here = info.namespace.clone();
        if namespace.is_some() && namespace != here {
            return Err(ApiError::invalid(
                "LocalSubjectAccessReview",
                "",
                "spec.resourceAttributes.namespace",
                "must match the namespace of the request",
            ));
        }
        namespace = here;
    }
    let field_selector = resource["fieldSelector"]["rawSelector"].as_str().map(str::to_string);
    let attributes = Attributes {
        user: &subject,
        verb: &verb,
        resource: path.is_none().then_some(ResourceAttributes {
            group: &group,
            resource: &plural,
            subresource: sub.as_deref(),
            namespace: namespace.as_deref(),
            name: name.as_deref(),
        }),
        path: path.as_deref(),
        field_selector: field_selector.as_deref(),
    };
    let status = match authz::decide(app, &attributes).await {
        Decision::Allow(reason) => json!({"allowed": true, "reason": reason}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion => json!({"allowed": false}),
    };
    let kind_name = match kind {
        "subjectaccessreviews" => "SubjectAccessReview",
        "localsubjectaccessreviews" => "LocalSubjectAccessReview",
        _ => "SelfSubjectAccessReview",
    };
    Ok(answered(body, "authorization.k8s.io/v1", kind_name, status))
}

fn rules_review(app: &App, user: &User, body: &Value) -> Value {
    let namespace = body["spec"]["namespace"].as_str().filter(|n| !n.is_empty());
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let masters = user.groups.iter().any(|g| g == "system:masters");
    if masters {
        resource_rules.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        non_resource_rules.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    }
    for (rule, _) in app.rbac.rules_for(user, namespace) {
        if rule.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
            non_resource_rules.push(json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}));
        } else {
            let mut r = json!({"verbs": rule.verbs, "apiGroups": rule.api_groups, "resources": rule.resources});
            if let Some(names) = rule.resource_names.filter(|n| !n.is_empty()) {
                r["resourceNames"] = json!(names);
            }
            resource_rules.push(r);
        }
    }
    // A kubelet's rights come from the Node authorizer, which lists none.
    let incomplete = crate::authz::node::node_name(user).is_some();
    answered(
        body,
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": incomplete}),
    )
}
