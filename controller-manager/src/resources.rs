//! Which kinds exist: the built-in resources of the API server's table
//! plus every established CustomResourceDefinition. The garbage collector
//! watches all of them and the namespace controller empties all of them,
//! so a custom resource is collected and cleaned up like a built-in one.

use client::dynamic::ApiResource;
use client::{Api, Client, ListParams};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The kinds that can be listed, watched and deleted: one version per
/// group and kind (the preferred one).
pub async fn discover(client: &Client) -> client::Result<Vec<ApiResource>> {
    let mut out: Vec<ApiResource> = Vec::new();
    for info in api::resources::RESOURCES {
        let usable = ["list", "watch", "delete"].iter().all(|v| info.has_verb(v));
        if usable && !out.iter().any(|r| r.group == info.group && r.kind == info.kind) {
            out.push(ApiResource::from_info(info));
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds.list_all(&ListParams::default(), 500).await?.items {
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        let served = crd.spec.versions.iter().filter(|v| v.served);
        let version = served.clone().find(|v| v.storage).or_else(|| served.clone().next());
        if let (true, Some(version)) = (established, version) {
            out.push(ApiResource {
                group: crd.spec.group.clone(),
                version: version.name.clone(),
                plural: crd.spec.names.plural.clone(),
                kind: crd.spec.names.kind.clone(),
                namespaced: crd.spec.scope == "Namespaced",
            });
        }
    }
    Ok(out)
}
