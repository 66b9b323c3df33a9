//! Role-based access control: the authorizer that reads Roles,
//! ClusterRoles, RoleBindings and ClusterRoleBindings.
//!
//! A request is allowed when some binding names the user (by name, by one
//! of its groups, or as a ServiceAccount) and the role it refers to has a
//! rule covering the request:
//!
//! - a ClusterRoleBinding grants its ClusterRole everywhere;
//! - a RoleBinding grants its Role (or a ClusterRole) in its namespace only.
//!
//! A rule covers a request when its verbs, apiGroups and resources (or
//! `resource/subresource`, `*`, `*/subresource`) match, and its
//! resourceNames, when set, name the object; a non-resource rule matches
//! the path exactly or by a trailing `*`. Nothing denies: RBAC only adds.
//!
//! A ClusterRole with an `aggregationRule` also holds the rules of every
//! ClusterRole whose labels match one of its selectors (how `admin`,
//! `edit` and `view` grow with CRDs' roles).
//!
//! The objects are kept in memory, following the store
//! ([`watch_prefix`](crate::watch_prefix)).

use std::collections::HashMap;
use std::sync::RwLock;

use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use serde_json::Value;

use super::Attributes;
use crate::authn::User;
use crate::watch_prefix::Update;

pub const ROLES: &str = "/registry/roles/";
pub const ROLE_BINDINGS: &str = "/registry/rolebindings/";
pub const CLUSTER_ROLES: &str = "/registry/clusterroles/";
pub const CLUSTER_ROLE_BINDINGS: &str = "/registry/clusterrolebindings/";

/// One RBAC object, with its rules and subjects decoded once, when it
/// arrives, not on every request.
struct Stored {
    object: Value,
    rules: Vec<PolicyRule>,
    subjects: Vec<Subject>,
}

impl Stored {
    fn parse(bytes: &[u8]) -> Option<Stored> {
        let object: Value = serde_json::from_slice(bytes).ok()?;
        Some(Stored {
            rules: serde_json::from_value(object["rules"].clone()).unwrap_or_default(),
            subjects: serde_json::from_value(object["subjects"].clone()).unwrap_or_default(),
            object,
        })
    }
}

type Objects = HashMap<&'static str, HashMap<String, Stored>>;

/// The RBAC objects, by store key.
#[derive(Default)]
pub struct Rbac {
    objects: RwLock<Objects>,
}

/// Whether one rule covers a resource request.
pub fn covers(rule: &PolicyRule, a: &Attributes<'_>) -> bool {
    let any = |list: &Option<Vec<String>>, wanted: &str| list.iter().flatten().any(|v| v == "*" || v == wanted);
    if !rule.verbs.iter().any(|v| v == "*" || v == a.verb) {
        return false;
    }
    match &a.resource {
        Some(r) => {
            if !any(&rule.api_groups, r.group) {
                return false;
            }
            let combined = match r.subresource {
                Some(sub) => format!("{}/{sub}", r.resource),
                None => r.resource.to_string(),
            };
            let resource_ok = rule.resources.iter().flatten().any(|res| {
                res == "*" || *res == combined || r.subresource.is_some_and(|sub| res.strip_prefix("*/") == Some(sub))
            });
            if !resource_ok {
                return false;
            }
            match rule.resource_names.as_ref().filter(|n| !n.is_empty()) {
                None => true,
                Some(names) => r.name.is_some_and(|n| names.iter().any(|x| x == n)),
            }
        }
        None => {
            let path = a.path.unwrap_or_default();
            rule.non_resource_urls
                .iter()
                .flatten()
                .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix)))
        }
    }
}

/// Whether a binding's subject is this user.
pub fn names(subject: &Subject, user: &User, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{ns}:{}", subject.name)
        }
        _ => false,
    }
}

impl Rbac {
    /// Applies a change seen under one of the four prefixes.
    pub fn apply(&self, prefix: &'static str, update: Update) {
        let mut objects = self.objects.write().unwrap_or_else(|p| p.into_inner());
        let map = objects.entry(prefix).or_default();
        match update {
            Update::Reset(items) => {
                *map = items
                    .into_iter()
                    .filter_map(|(k, v)| Stored::parse(&v).map(|v| (k, v)))
                    .collect();
            }
            Update::Put(key, value) => {
                if let Some(v) = Stored::parse(&value) {
                    map.insert(key, v);
                }
            }
            Update::Delete(key) => {
                map.remove(&key);
            }
        }
    }

    /// A ClusterRole's rules, with those it aggregates (and those they
    /// aggregate, each role once).
    fn cluster_role_rules(&self, objects: &Objects, name: &str) -> Vec<PolicyRule> {
        let roles = objects.get(CLUSTER_ROLES);
        let mut rules = Vec::new();
        let mut seen = vec![name.to_string()];
        let mut pending = vec![name.to_string()];
        while let Some(current) = pending.pop() {
            let Some(role) = roles.and_then(|r| r.get(&format!("{CLUSTER_ROLES}{current}"))) else {
                continue;
            };
            rules.extend(role.rules.iter().cloned());
            let selectors: Vec<_> = role.object["aggregationRule"]["clusterRoleSelectors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| crate::selector::Selector::from_label_selector(s).ok())
                .collect();
            if selectors.is_empty() {
                continue;
            }
            for other in roles.into_iter().flat_map(|r| r.values()) {
                let other_name = other.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if !seen.contains(&other_name) && selectors.iter().any(|s| s.matches_labels(&other.object)) {
                    seen.push(other_name.clone());
                    pending.push(other_name);
                }
            }
        }
        rules
    }

    /// Every rule that applies to `user` in `namespace` (`None`: cluster-wide
    /// rules only), with where each came from.
    pub fn rules_for(&self, user: &User, namespace: Option<&str>) -> Vec<(PolicyRule, String)> {
        let objects = self.objects.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for binding in objects.get(CLUSTER_ROLE_BINDINGS).into_iter().flat_map(|m| m.values()) {
            // A ClusterRoleBinding can only grant a ClusterRole.
            if binding.object["roleRef"]["kind"] != "ClusterRole" {
                continue;
            }
            if binding.subjects.iter().any(|s| names(s, user, "")) {
                let role = binding.object["roleRef"]["name"].as_str().unwrap_or_default();
                let from = format!(
                    "ClusterRoleBinding \"{}\" of ClusterRole \"{role}\"",
                    binding.object["metadata"]["name"].as_str().unwrap_or_default()
                );
                out.extend(
                    self.cluster_role_rules(&objects, role)
                        .into_iter()
                        .map(|r| (r, from.clone())),
                );
            }
        }
        let Some(ns) = namespace.filter(|n| !n.is_empty()) else {
            return out;
        };
        let bindings_prefix = format!("{ROLE_BINDINGS}{ns}/");
        for (key, binding) in objects.get(ROLE_BINDINGS).into_iter().flatten() {
            if !key.starts_with(&bindings_prefix) || !binding.subjects.iter().any(|s| names(s, user, ns)) {
                continue;
            }
            let role = binding.object["roleRef"]["name"].as_str().unwrap_or_default();
            let kind = binding.object["roleRef"]["kind"].as_str().unwrap_or_default();
            let rules = if kind == "ClusterRole" {
                self.cluster_role_rules(&objects, role)
            } else {
                objects
                    .get(ROLES)
                    .and_then(|m| m.get(&format!("{ROLES}{ns}/{role}")))
                    .map(|r| r.rules.clone())
                    .unwrap_or_default()
            };
            let from = format!(
                "RoleBinding \"{}/{ns}\" of {kind} \"{role}\"",
                binding.object["metadata"]["name"].as_str().unwrap_or_default()
            );
            out.extend(rules.into_iter().map(|r| (r, from.clone())));
        }
        out
    }

    /// Whether some binding allows the request; the reason when it does.
    pub fn allows(&self, a: &Attributes<'_>) -> Option<String> {
        let namespace = a.resource.as_ref().and_then(|r| r.namespace);
        self.rules_for(a.user, namespace)
            .into_iter()
            .find(|(rule, _)| covers(rule, a))
            .map(|(_, from)| format!("RBAC: allowed by {from}"))
    }

    /// Whether `user` holds every permission `rules` grant (in
    /// `namespace`, or cluster-wide): the escalation check for creating
    /// or binding roles.
    pub fn holds_all(&self, user: &User, namespace: Option<&str>, rules: &[PolicyRule]) -> Result<(), String> {
        let held: Vec<PolicyRule> = self.rules_for(user, namespace).into_iter().map(|(r, _)| r).collect();
        for rule in rules {
            if !super::escalation::covered(&held, rule) {
                return Err(super::escalation::describe(rule));
            }
        }
        Ok(())
    }

    /// The rules of a role a binding refers to (for the bind check).
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Vec<PolicyRule> {
        let objects = self.objects.read().unwrap_or_else(|p| p.into_inner());
        if kind == "ClusterRole" {
            self.cluster_role_rules(&objects, name)
        } else {
            objects
                .get(ROLES)
                .and_then(|m| m.get(&format!("{ROLES}{namespace}/{name}")))
                .map(|r| r.rules.clone())
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::ResourceAttributes;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let list = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: list(groups),
            resources: list(resources),
            resource_names: if names.is_empty() { None } else { list(names) },
            non_resource_urls: None,
        }
    }

    fn user() -> User {
        User {
            name: "alice".into(),
            groups: vec!["devs".into(), "system:authenticated".into()],
            ..Default::default()
        }
    }

    fn request<'a>(
        u: &'a User,
        verb: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            user: u,
            verb,
            resource: Some(ResourceAttributes {
                group: "",
                resource,
                subresource: sub,
                namespace: Some("default"),
                name,
            }),
            path: None,
            field_selector: None,
        }
    }

    #[test]
    fn rules_match_verbs_resources_subresources_and_names() {
        let u = user();
        let pods = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(covers(&pods, &request(&u, "get", "pods", None, Some("x"))));
        assert!(!covers(&pods, &request(&u, "delete", "pods", None, Some("x"))));
        assert!(
            !covers(&pods, &request(&u, "get", "pods", Some("log"), Some("x"))),
            "subresources are separate"
        );
        let logs = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(covers(&logs, &request(&u, "get", "pods", Some("log"), Some("x"))));
        let scale = rule(&["*"], &["*"], &["*/scale"], &[]);
        assert!(covers(
            &scale,
            &request(&u, "update", "deployments", Some("scale"), Some("x"))
        ));
        assert!(!covers(&scale, &request(&u, "update", "deployments", None, Some("x"))));
        let named = rule(&["get"], &[""], &["configmaps"], &["one"]);
        assert!(covers(&named, &request(&u, "get", "configmaps", None, Some("one"))));
        assert!(!covers(&named, &request(&u, "get", "configmaps", None, Some("two"))));
        assert!(!covers(&named, &request(&u, "list", "configmaps", None, None)));
        let apps = rule(&["get"], &["apps"], &["*"], &[]);
        assert!(!covers(&apps, &request(&u, "get", "pods", None, None)), "another group");
        let paths = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/healthz".into(), "/api/*".into()]),
            ..Default::default()
        };
        let at = |path| Attributes {
            user: &u,
            verb: "get",
            resource: None,
            path: Some(path),
            field_selector: None,
        };
        assert!(covers(&paths, &at("/healthz")));
        assert!(covers(&paths, &at("/api/v1")));
        assert!(!covers(&paths, &at("/metrics")));
    }

    #[test]
    fn bindings_grant_by_user_group_and_service_account_and_namespace() {
        let rbac = Rbac::default();
        let put = |prefix: &'static str, key: String, v: Value| {
            rbac.apply(prefix, Update::Put(key, v.to_string().into_bytes()))
        };
        put(
            CLUSTER_ROLES,
            format!("{CLUSTER_ROLES}reader"),
            serde_json::json!({"metadata": {"name": "reader"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
        );
        put(
            CLUSTER_ROLES,
            format!("{CLUSTER_ROLES}aggregate"),
            serde_json::json!({"metadata": {"name": "aggregate"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}}),
        );
        put(
            CLUSTER_ROLES,
            format!("{CLUSTER_ROLES}part"),
            serde_json::json!({"metadata": {"name": "part", "labels": {"agg": "yes"}},
                "rules": [{"verbs": ["delete"], "apiGroups": [""], "resources": ["secrets"]}]}),
        );
        put(
            ROLE_BINDINGS,
            format!("{ROLE_BINDINGS}team/devs-read"),
            serde_json::json!({"metadata": {"name": "devs-read", "namespace": "team"},
                "roleRef": {"kind": "ClusterRole", "name": "reader"},
                "subjects": [{"kind": "Group", "name": "devs"}]}),
        );
        put(
            CLUSTER_ROLE_BINDINGS,
            format!("{CLUSTER_ROLE_BINDINGS}robot"),
            serde_json::json!({"metadata": {"name": "robot"},
                "roleRef": {"kind": "ClusterRole", "name": "aggregate"},
                "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "ci"}]}),
        );
        let u = user();
        let mut a = request(&u, "get", "pods", None, Some("p"));
        a.resource.as_mut().unwrap().namespace = Some("team");
        assert!(rbac.allows(&a).is_some());
        a.resource.as_mut().unwrap().namespace = Some("other");
        assert!(rbac.allows(&a).is_none(), "a RoleBinding grants in its namespace only");
        let bot = User {
            name: "system:serviceaccount:ci:bot".into(),
            ..Default::default()
        };
        let mut d = request(&bot, "delete", "secrets", None, Some("s"));
        assert!(rbac.allows(&d).is_some(), "aggregated rules count");
        d.verb = "get";
        assert!(rbac.allows(&d).is_none());
        rbac.apply(
            CLUSTER_ROLE_BINDINGS,
            Update::Delete(format!("{CLUSTER_ROLE_BINDINGS}robot")),
        );
        d.verb = "delete";
        assert!(rbac.allows(&d).is_none(), "a deleted binding grants nothing");
    }
}
