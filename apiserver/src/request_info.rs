//! Request info: what a REST path names.
//!
//! Like kube-apiserver's RequestInfoFactory, this turns
//! `/apis/apps/v1/namespaces/web/deployments/front/scale` into group
//! `apps`, version `v1`, namespace `web`, resource `deployments`, name
//! `front`, subresource `scale`, using the resource table to tell a
//! namespace's own subresources (`namespaces/x/status`) from resources in
//! a namespace (`namespaces/x/configmaps`).

use api::resources::ResourceInfo;

use crate::status::ApiError;

/// A request for a resource (or one object of it).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInfo {
    pub resource: &'static ResourceInfo,
    /// The namespace in the path; `None` for cluster-scoped resources and
    /// for lists across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

fn not_found() -> ApiError {
    ApiError {
        code: 404,
        reason: "NotFound",
        message: "the server could not find the requested resource".into(),
        details: None,
    }
}

/// Parses a resource path; `None` when the path is not a resource path at
/// all (discovery documents and the like are routed elsewhere).
pub fn parse(path: &str) -> Result<RequestInfo, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    let find = |plural: &str| crate::crd::resource(group, version, plural);
    let (namespace, rest) = match rest {
        // namespaces/<ns>/<resource>... when <resource> is namespaced.
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            (Some(ns.to_string()), [&[*plural][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(not_found()),
    };
    let resource = find(plural).ok_or_else(not_found)?;
    if let Some(sub) = &subresource {
        if resource.subresource(sub).is_none() {
            return Err(not_found());
        }
    }
    if resource.namespaced && namespace.is_none() && name.is_some() {
        // A named namespaced object needs its namespace in the path.
        return Err(not_found());
    }
    Ok(RequestInfo {
        resource,
        namespace,
        name,
        subresource,
    })
}

impl RequestInfo {
    /// The store key of the named object, or the prefix of the collection.
    pub fn key(&self) -> String {
        let mut key = self.resource.storage_prefix();
        if let Some(ns) = &self.namespace {
            key.push_str(ns);
            key.push('/');
        }
        if let Some(name) = &self.name {
            key.push_str(name);
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resources_namespaces_and_subresources() {
        let r = parse("/apis/apps/v1/namespaces/web/deployments/front/scale").unwrap();
        assert_eq!(r.resource.plural, "deployments");
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.subresource.as_deref()),
            (Some("web"), Some("front"), Some("scale"))
        );
        assert_eq!(r.key(), "/registry/deployments/web/front");

        let r = parse("/api/v1/namespaces/dev/status").unwrap();
        assert_eq!(
            (r.resource.plural, r.name.as_deref(), r.subresource.as_deref()),
            ("namespaces", Some("dev"), Some("status"))
        );
        let r = parse("/api/v1/namespaces/dev/configmaps").unwrap();
        assert_eq!(
            (r.resource.plural, r.namespace.as_deref(), r.name),
            ("configmaps", Some("dev"), None)
        );
        let r = parse("/api/v1/pods").unwrap();
        assert_eq!((r.namespace.clone(), r.key()), (None, "/registry/pods/".to_string()));
        assert_eq!(parse("/api/v1/nodes/n1").unwrap().key(), "/registry/minions/n1");
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in [
            "/api/v1/widgets",
            "/apis/apps/v9/deployments",
            "/api/v1/pods/x",
            "/api/v1/namespaces/a/pods/x/nope",
            "/other",
        ] {
            assert_eq!(parse(path).unwrap_err().code, 404, "{path}");
        }
    }
}
