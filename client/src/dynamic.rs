//! Objects of kinds known only at run time.
//!
//! The garbage collector and the namespace controller work on every kind
//! the API server serves, custom resources included, so they cannot name a
//! k8s-openapi type. [`DynamicObject`] keeps the metadata typed and the
//! rest as JSON, and [`ApiResource`] says where the objects live;
//! `Api::<DynamicObject>::dynamic(client, resource, namespace)` then has
//! every verb, and an [`Informer`](crate::Informer) can watch it like any
//! other kind.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::connection::Client;

/// Where the objects of one kind live: the parts of a URL and the kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiResource {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    /// The plural, as in URLs (`deployments`).
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

impl ApiResource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource of a built-in kind from the API server's table.
    pub fn from_info(info: &api::resources::ResourceInfo) -> ApiResource {
        ApiResource {
            group: info.group.to_string(),
            version: info.version.to_string(),
            plural: info.plural.to_string(),
            kind: info.kind.to_string(),
            namespaced: info.namespaced,
        }
    }
}

/// An object of any kind: typed metadata, the rest as JSON (`apiVersion`,
/// `kind`, `spec`, `status`, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamicObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(flatten)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Only the metadata of an object of any kind: what the garbage collector
/// needs of every object in the cluster, without keeping their specs in
/// memory (the rest of the JSON is skipped while decoding).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialObjectMetadata {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// `Resource` and `Metadata` for the run-time kinds. The constants are
/// placeholders: an `Api` of these always carries its `ApiResource`, and
/// that is what requests are built from.
macro_rules! run_time_kind {
    ($t:ty) => {
        impl Resource for $t {
            const API_VERSION: &'static str = "";
            const GROUP: &'static str = "";
            const KIND: &'static str = "object";
            const VERSION: &'static str = "";
            const URL_PATH_SEGMENT: &'static str = "";
            type Scope = NamespaceResourceScope;
        }

        impl Metadata for $t {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

run_time_kind!(DynamicObject);
run_time_kind!(PartialObjectMetadata);

impl Api<PartialObjectMetadata> {
    /// The metadata of the objects of `resource` in `namespace` (`None`:
    /// every namespace, or a cluster-scoped kind). Reads only: writes
    /// through it would send the metadata alone.
    pub fn metadata_only(client: Client, resource: ApiResource, namespace: Option<&str>) -> Api<PartialObjectMetadata> {
        Api::with_resource(client, Arc::new(resource), namespace)
    }
}

impl Api<DynamicObject> {
    /// The objects of `resource` in `namespace` (`None`: every namespace,
    /// or a cluster-scoped kind).
    pub fn dynamic(client: Client, resource: ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        Api::with_resource(client, Arc::new(resource), namespace)
    }
}
