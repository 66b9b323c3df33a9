//! The resource table and the k8s-openapi types must agree: same group,
//! version, kind, plural and scope. A typo in either would make the API
//! server store or serve an object under the wrong name.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use api::k8s::api as k;
use api::k8s::{ClusterResourceScope, NamespaceResourceScope, Resource};
use api::resources;

trait Scoped {
    const NAMESPACED: bool;
}
impl Scoped for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scoped for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn check<T: Resource>(seen: &mut Vec<String>)
where
    T::Scope: Scoped,
{
    let info = resources::find(T::GROUP, T::VERSION, T::URL_PATH_SEGMENT).unwrap_or_else(|| {
        panic!(
            "{} {}/{} is not in the table",
            T::KIND,
            T::API_VERSION,
            T::URL_PATH_SEGMENT
        )
    });
    assert_eq!(info.kind, T::KIND, "{}", T::URL_PATH_SEGMENT);
    assert_eq!(info.api_version(), T::API_VERSION);
    assert_eq!(
        info.namespaced,
        <T::Scope as Scoped>::NAMESPACED,
        "scope of {}",
        T::KIND
    );
    seen.push(format!("{}/{}/{}", info.group, info.version, info.plural));
}

macro_rules! check_every {
    ($($t:ty),+ $(,)?) => {
        fn check_every_type(seen: &mut Vec<String>) {
            $( check::<$t>(seen); )+
        }
    };
}
api::with_every_type!(check_every);

#[test]
fn every_table_entry_matches_its_k8s_openapi_type() {
    let mut seen = Vec::new();
    check_every_type(&mut seen);
    // And the table holds nothing the types do not vouch for.
    let table: Vec<String> = resources::RESOURCES
        .iter()
        .map(|r| format!("{}/{}/{}", r.group, r.version, r.plural))
        .collect();
    let unchecked: Vec<&String> = table.iter().filter(|t| !seen.contains(t)).collect();
    assert!(
        unchecked.is_empty(),
        "table entries without a checked type: {unchecked:?}"
    );
}

#[test]
fn subresource_kinds_match_their_types() {
    let pods = resources::find("", "v1", "pods").unwrap();
    let eviction = pods.subresource("eviction").unwrap();
    assert_eq!(
        (eviction.group, eviction.version, eviction.kind),
        (
            k::policy::v1::Eviction::GROUP,
            k::policy::v1::Eviction::VERSION,
            k::policy::v1::Eviction::KIND
        )
    );
    let token = resources::find("", "v1", "serviceaccounts")
        .unwrap()
        .subresource("token")
        .unwrap();
    assert_eq!(token.kind, k::authentication::v1::TokenRequest::KIND);
    assert_eq!(token.name, k::authentication::v1::TokenRequest::URL_PATH_SEGMENT);
    let scale = resources::find("apps", "v1", "deployments")
        .unwrap()
        .subresource("scale")
        .unwrap();
    assert_eq!(
        (scale.group, scale.version, scale.kind),
        (
            k::autoscaling::v1::Scale::GROUP,
            k::autoscaling::v1::Scale::VERSION,
            k::autoscaling::v1::Scale::KIND
        )
    );
}
