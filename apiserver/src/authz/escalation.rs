//! Privilege escalation prevention: creating or updating a Role or
//! ClusterRole, or a binding to one, is refused unless the user already
//! holds every permission it grants (or has the `escalate` verb on roles,
//! the `bind` verb on the role for bindings), as upstream does. A rule is
//! covered when each of its atomic permissions (one verb on one group's
//! resource, with one name, or one verb on one path) is held.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

use super::{Attributes, Decision, ResourceAttributes};
use crate::authn::User;
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;

const RBAC: &str = "rbac.authorization.k8s.io";

/// Whether the user holds `verb` (escalate, bind) on a role.
async fn may(app: &App, user: &User, verb: &str, resource: &str, namespace: Option<&str>, name: &str) -> bool {
    let a = Attributes {
        user,
        verb,
        resource: Some(ResourceAttributes {
            group: RBAC,
            resource,
            subresource: None,
            namespace,
            name: Some(name),
        }),
        path: None,
        field_selector: None,
    };
    matches!(super::decide(app, &a).await, Decision::Allow(_))
}

/// The escalation check on a Role, ClusterRole or binding about to be
/// written by `user` (`None`: the API server itself).
pub async fn admit(app: &App, user: Option<&User>, info: &RequestInfo, object: &Value) -> Result<(), ApiError> {
    let (Some(user), RBAC) = (user, info.resource.group) else {
        return Ok(());
    };
    let plural = info.resource.plural;
    let namespace = info.namespace.as_deref();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let (rules, scope_ns) = match plural {
        "roles" | "clusterroles" => {
            if may(app, user, "escalate", plural, namespace, name).await {
                return Ok(());
            }
            let mut rules: Vec<PolicyRule> = serde_json::from_value(object["rules"].clone()).unwrap_or_default();
            if object["aggregationRule"].is_object() {
                // An aggregating role can gather any role's rules: only a
                // user who holds everything may write one, as upstream.
                rules.push(PolicyRule {
                    verbs: vec!["*".into()],
                    api_groups: Some(vec!["*".into()]),
                    resources: Some(vec!["*".into()]),
                    ..Default::default()
                });
                rules.push(PolicyRule {
                    verbs: vec!["*".into()],
                    non_resource_urls: Some(vec!["*".into()]),
                    ..Default::default()
                });
            }
            (rules, if plural == "roles" { namespace } else { None })
        }
        "rolebindings" | "clusterrolebindings" => {
            let kind = object["roleRef"]["kind"].as_str().unwrap_or_default();
            let role = object["roleRef"]["name"].as_str().unwrap_or_default();
            let role_resource = if kind == "ClusterRole" { "clusterroles" } else { "roles" };
            // `bind` is asked where the binding grants: its namespace for a
            // RoleBinding (even of a ClusterRole), cluster-wide otherwise.
            let bind_ns = if plural == "rolebindings" { namespace } else { None };
            if may(app, user, "bind", role_resource, bind_ns, role).await {
                return Ok(());
            }
            let rules = app.rbac.role_rules(kind, namespace.unwrap_or_default(), role);
            (rules, if plural == "rolebindings" { namespace } else { None })
        }
        _ => return Ok(()),
    };
    app.rbac.holds_all(user, scope_ns, &rules).map_err(|missing| {
        ApiError::forbidden_because(format!(
            "{plural}.{RBAC} \"{name}\" is forbidden: user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{missing}",
            user.name, user.groups
        ))
    })
}

fn has(list: &Option<Vec<String>>, value: &str) -> bool {
    list.iter().flatten().any(|v| v == "*" || v == value)
}

fn resource_held(held: &PolicyRule, resource: &str) -> bool {
    held.resources.iter().flatten().any(|r| {
        r == "*"
            || r == resource
            || resource
                .split_once('/')
                .is_some_and(|(_, sub)| r.strip_prefix("*/") == Some(sub))
    })
}

/// Whether `held` rules grant everything `rule` grants.
pub fn covered(held: &[PolicyRule], rule: &PolicyRule) -> bool {
    let verb_held = |h: &PolicyRule, v: &str| h.verbs.iter().any(|x| x == "*" || x == v);
    for verb in &rule.verbs {
        for url in rule.non_resource_urls.iter().flatten() {
            let ok = held.iter().any(|h| {
                verb_held(h, verb)
                    && h.non_resource_urls
                        .iter()
                        .flatten()
                        .any(|u| u == "*" || u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p)))
            });
            if !ok {
                return false;
            }
        }
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let names: Vec<Option<&String>> = match rule.resource_names.as_ref().filter(|n| !n.is_empty()) {
                    Some(names) => names.iter().map(Some).collect(),
                    None => vec![None],
                };
                for name in names {
                    let ok = held.iter().any(|h| {
                        verb_held(h, verb)
                            && has(&h.api_groups, group)
                            && resource_held(h, resource)
                            && match (h.resource_names.as_ref().filter(|n| !n.is_empty()), name) {
                                (None, _) => true,
                                (Some(held_names), Some(n)) => held_names.contains(n),
                                (Some(_), None) => false,
                            }
                    });
                    if !ok {
                        return false;
                    }
                }
            }
        }
    }
    true
}

/// A rule as upstream prints it in the refusal.
pub fn describe(rule: &PolicyRule) -> String {
    let quoted = |l: &Option<Vec<String>>| {
        l.iter()
            .flatten()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut parts = Vec::new();
    if rule.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
        parts.push(format!("NonResourceURLs:[{}]", quoted(&rule.non_resource_urls)));
    } else {
        parts.push(format!("APIGroups:[{}]", quoted(&rule.api_groups)));
        parts.push(format!("Resources:[{}]", quoted(&rule.resources)));
        if rule.resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
            parts.push(format!("ResourceNames:[{}]", quoted(&rule.resource_names)));
        }
    }
    parts.push(format!("Verbs:[{}]", quoted(&Some(rule.verbs.clone()))));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let list = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: list(&[""]),
            resources: list(resources),
            resource_names: (!names.is_empty()).then(|| list(names)).flatten(),
            non_resource_urls: None,
        }
    }

    #[test]
    fn only_held_permissions_may_be_granted() {
        let held = vec![
            rule(&["get", "list"], &["pods", "pods/log"], &[]),
            rule(&["get"], &["secrets"], &["one"]),
        ];
        assert!(covered(&held, &rule(&["get"], &["pods"], &[])));
        assert!(
            covered(&held, &rule(&["list"], &["pods"], &["x"])),
            "a narrower grant is held"
        );
        assert!(!covered(&held, &rule(&["delete"], &["pods"], &[])));
        assert!(!covered(&held, &rule(&["get"], &["pods", "services"], &[])));
        assert!(covered(&held, &rule(&["get"], &["secrets"], &["one"])));
        assert!(
            !covered(&held, &rule(&["get"], &["secrets"], &[])),
            "all secrets is more than one"
        );
        assert!(
            !covered(&held, &rule(&["*"], &["pods"], &[])),
            "a wildcard needs a wildcard"
        );
        let admin = vec![rule(&["*"], &["*"], &[])];
        assert!(covered(&admin, &rule(&["*"], &["*/scale"], &[])));
        assert_eq!(
            describe(&rule(&["get"], &["pods"], &[])),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["get"]}"#
        );
    }
}
