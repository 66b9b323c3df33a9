//! Typed access to one kind of object: `Api<Pod>`, `Api<Deployment>`, …
//!
//! The k8s-openapi type says where its objects live (group, version,
//! plural, scope), so `Api::<Pod>::namespaced(client, "web").get("p")`
//! becomes a gRPC Get for `/api/v1/namespaces/web/pods/p`, and the JSON
//! that comes back is decoded into the type. The verbs are the API's own:
//! get, list, watch, create, update (a PUT), update_status, patch,
//! delete, plus the pod subresources bind and evict.

use std::marker::PhantomData;
use std::sync::Arc;

use api::proto::{ListRequest, PatchRequest, ResourceRef, WatchRequest};
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta, Preconditions};
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_stream::{Stream, StreamExt};

use crate::connection::Client;
use crate::dynamic::ApiResource;
use crate::error::{Error, Result};

/// What a type needs to be served through [`Api`]: every k8s-openapi
/// resource type qualifies.
pub trait Object:
    Resource + Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static
{
}

impl<K> Object for K where
    K: Resource
        + Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + std::fmt::Debug
        + 'static
{
}

/// Whether `K` lives in namespaces.
pub fn is_namespaced<K: Resource>() -> bool {
    std::any::type_name::<K::Scope>() == std::any::type_name::<NamespaceResourceScope>()
}

/// The current time as the API types carry it.
pub fn timestamp_now() -> k8s_openapi::jiff::Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(0);
    let nanos = i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::new(seconds, nanos).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// Selectors and paging for list and watch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    /// Page size; 0 for everything at once.
    pub limit: i64,
    pub continue_token: String,
}

impl ListParams {
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = selector.to_string();
        self
    }
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = selector.to_string();
        self
    }
}

/// One page of a list, with the version it was read at.
#[derive(Debug, Clone)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    pub resource_version: String,
    /// Set when more pages follow.
    pub continue_token: Option<String>,
}

/// A change seen by a watch.
#[derive(Debug, Clone)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// Nothing changed that the watch selects, but everything up to this
    /// resourceVersion has been seen: resume from here.
    Bookmark(String),
}

/// A patch, by kind.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(serde_json::Value),
    /// RFC 6902 JSON patch (a list of operations).
    Json(serde_json::Value),
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteParams {
    /// Delete only if the object still has this uid.
    pub uid: Option<String>,
    /// Delete only if the object is still at this version.
    pub resource_version: Option<String>,
    pub grace_period_seconds: Option<i64>,
    /// "Orphan", "Background" or "Foreground".
    pub propagation_policy: Option<String>,
}

impl DeleteParams {
    fn options(&self) -> DeleteOptions {
        let preconditions = (self.uid.is_some() || self.resource_version.is_some()).then(|| Preconditions {
            uid: self.uid.clone(),
            resource_version: self.resource_version.clone(),
        });
        DeleteOptions {
            preconditions,
            grace_period_seconds: self.grace_period_seconds,
            propagation_policy: self.propagation_policy.clone(),
            ..Default::default()
        }
    }
}

/// Typed verbs on the objects of kind `K` in one namespace, or in all.
pub struct Api<K> {
    client: Client,
    namespace: Option<String>,
    /// Where the objects live when the type cannot say (dynamic objects).
    resource: Option<Arc<ApiResource>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            resource: self.resource.clone(),
            kind: PhantomData,
        }
    }
}

fn decode<T: DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    let kind = value["kind"].as_str().unwrap_or("object").to_string();
    serde_json::from_value(value).map_err(|e| Error::decode(kind, e))
}

impl<K: Object> Api<K> {
    /// Objects in one namespace.
    pub fn namespaced(client: Client, namespace: &str) -> Api<K> {
        Api {
            client,
            namespace: Some(namespace.to_string()),
            resource: None,
            kind: PhantomData,
        }
    }

    /// Objects of every namespace (list and watch), or a cluster-scoped kind.
    pub fn all(client: Client) -> Api<K> {
        Api {
            client,
            namespace: None,
            resource: None,
            kind: PhantomData,
        }
    }

    pub(crate) fn with_resource(client: Client, resource: Arc<ApiResource>, namespace: Option<&str>) -> Api<K> {
        Api {
            client,
            namespace: namespace.map(str::to_string),
            resource: Some(resource),
            kind: PhantomData,
        }
    }

    /// Whether the objects live in namespaces.
    fn namespaced_kind(&self) -> bool {
        match &self.resource {
            Some(r) => r.namespaced,
            None => is_namespaced::<K>(),
        }
    }

    fn kind_name(&self) -> &str {
        match &self.resource {
            Some(r) => &r.kind,
            None => K::KIND,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn reference(&self, name: &str, subresource: &str) -> ResourceRef {
        let (group, version, plural) = match &self.resource {
            Some(r) => (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            None => (K::GROUP, K::VERSION, K::URL_PATH_SEGMENT),
        };
        ResourceRef {
            group: group.to_string(),
            version: version.to_string(),
            resource: plural.to_string(),
            namespace: if self.namespaced_kind() {
                self.namespace.clone().unwrap_or_default()
            } else {
                String::new()
            },
            name: name.to_string(),
            subresource: subresource.to_string(),
        }
    }

    /// The reference of `object` itself: its own namespace wins.
    fn reference_of(&self, object: &K, subresource: &str) -> Result<ResourceRef> {
        let meta = object.metadata();
        let name = meta
            .name
            .as_deref()
            .ok_or_else(|| Error::Config(format!("the {} has no metadata.name", self.kind_name())))?;
        let mut r = self.reference(name, subresource);
        if let (Some(ns), true) = (&meta.namespace, self.namespaced_kind()) {
            r.namespace = ns.clone();
        }
        Ok(r)
    }

    fn body(&self, object: &K) -> Result<Vec<u8>> {
        let mut value = serde_json::to_value(object).map_err(|e| Error::decode(self.kind_name(), e))?;
        // k8s-openapi types leave apiVersion and kind to the serializer.
        let api_version = match &self.resource {
            Some(r) => r.api_version(),
            None => K::API_VERSION.to_string(),
        };
        value["apiVersion"] = serde_json::json!(api_version);
        value["kind"] = serde_json::json!(self.kind_name());
        serde_json::to_vec(&value).map_err(|e| Error::decode(self.kind_name(), e))
    }

    pub async fn get(&self, name: &str) -> Result<K> {
        decode(self.client.get(self.reference(name, "")).await?)
    }

    /// `None` instead of a NotFound error.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page (or all) of the objects the selectors match, read
    /// consistently at the latest version.
    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>> {
        let list = self
            .client
            .list(ListRequest {
                r#ref: Some(self.reference("", "")),
                label_selector: params.label_selector.clone(),
                field_selector: params.field_selector.clone(),
                limit: params.limit,
                continue_token: params.continue_token.clone(),
                ..Default::default()
            })
            .await?;
        let resource_version = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let continue_token = list["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let items = match list.get("items") {
            Some(serde_json::Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let items = items.into_iter().map(decode).collect::<Result<Vec<K>>>()?;
        Ok(ObjectList {
            items,
            resource_version,
            continue_token,
        })
    }

    /// Every object the selectors match, page by page (`page` objects at a
    /// time, all pages read at the first page's version).
    pub async fn list_all(&self, params: &ListParams, page: i64) -> Result<ObjectList<K>> {
        let mut params = ListParams {
            limit: page,
            continue_token: String::new(),
            ..params.clone()
        };
        let mut first = self.list(&params).await?;
        while let Some(token) = first.continue_token.take() {
            params.continue_token = token;
            let next = self.list(&params).await?;
            first.items.extend(next.items);
            first.continue_token = next.continue_token;
        }
        Ok(first)
    }

    /// Changes after `resource_version` ("" or "0": the current objects
    /// first, as Added). The stream ends when the server's timeout
    /// (`timeout_seconds`, 0 for its default) ends the watch; an expired
    /// version arrives as an `Err` that [`Error::is_gone`].
    pub async fn watch(
        &self,
        params: &ListParams,
        resource_version: &str,
        timeout_seconds: i64,
    ) -> Result<impl Stream<Item = Result<WatchEvent<K>>> + Send + use<K>> {
        let stream = self
            .client
            .watch(WatchRequest {
                r#ref: Some(self.reference("", "")),
                label_selector: params.label_selector.clone(),
                field_selector: params.field_selector.clone(),
                resource_version: resource_version.to_string(),
                allow_watch_bookmarks: true,
                timeout_seconds,
                ..Default::default()
            })
            .await?;
        Ok(stream.map(|event| {
            let event = event?;
            let object: serde_json::Value =
                serde_json::from_slice(&event.object).map_err(|e| Error::decode("a watch event", e))?;
            match event.r#type.as_str() {
                "ADDED" => Ok(WatchEvent::Added(decode(object)?)),
                "MODIFIED" => Ok(WatchEvent::Modified(decode(object)?)),
                "DELETED" => Ok(WatchEvent::Deleted(decode(object)?)),
                "BOOKMARK" => Ok(WatchEvent::Bookmark(
                    object["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )),
                "ERROR" => Err(Error::from_status_json(&object)),
                other => Err(Error::decode("a watch event", format!("unknown event type {other:?}"))),
            }
        }))
    }

    pub async fn create(&self, object: &K) -> Result<K> {
        let mut r = self.reference("", "");
        if let (Some(ns), true) = (&object.metadata().namespace, self.namespaced_kind()) {
            r.namespace = ns.clone();
        }
        decode(self.client.create(r, self.body(object)?).await?)
    }

    /// Creates through a subresource that answers with another kind (a
    /// TokenRequest on `serviceaccounts/<name>/token`, say): `body` is sent
    /// as JSON, the answer decoded as `O`.
    pub async fn create_subresource<B: Serialize, O: DeserializeOwned>(
        &self,
        name: &str,
        subresource: &str,
        body: &B,
    ) -> Result<O> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::decode(subresource, e))?;
        let answer = self.client.create(self.reference(name, subresource), bytes).await?;
        serde_json::from_value(answer).map_err(|e| Error::decode(subresource, e))
    }

    /// Replaces the object (its resourceVersion, when set, must still be
    /// current, or the answer is a conflict).
    pub async fn update(&self, object: &K) -> Result<K> {
        let r = self.reference_of(object, "")?;
        decode(self.client.update(r, self.body(object)?).await?)
    }

    /// Writes only the status (the status subresource).
    pub async fn update_status(&self, object: &K) -> Result<K> {
        let r = self.reference_of(object, "status")?;
        decode(self.client.update(r, self.body(object)?).await?)
    }

    /// Replaces the object through a subresource that takes the whole
    /// object (`namespaces/{name}/finalize`, say).
    pub async fn replace_subresource(&self, subresource: &str, object: &K) -> Result<K> {
        let r = self.reference_of(object, subresource)?;
        decode(self.client.update(r, self.body(object)?).await?)
    }

    pub async fn patch(&self, name: &str, patch: &Patch) -> Result<K> {
        self.patch_subresource(name, "", patch).await
    }

    pub async fn patch_status(&self, name: &str, patch: &Patch) -> Result<K> {
        self.patch_subresource(name, "status", patch).await
    }

    async fn patch_subresource(&self, name: &str, subresource: &str, patch: &Patch) -> Result<K> {
        let (patch_type, body) = match patch {
            Patch::Merge(v) => ("application/merge-patch+json", v),
            Patch::Json(v) => ("application/json-patch+json", v),
        };
        let req = PatchRequest {
            r#ref: Some(self.reference(name, subresource)),
            patch_type: patch_type.to_string(),
            patch: serde_json::to_vec(body).map_err(|e| Error::decode("the patch", e))?,
            ..Default::default()
        };
        decode(self.client.patch(req).await?)
    }

    /// Deletes an object; returns it as it was last (or, when finalizers
    /// hold it, with its deletionTimestamp set).
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<K> {
        let options = serde_json::to_vec(&params.options()).map_err(|e| Error::decode("DeleteOptions", e))?;
        decode(self.client.delete(self.reference(name, ""), options).await?)
    }
}

impl Api<Pod> {
    /// Assigns the pod to a node (pods/binding): what a scheduler does.
    /// A pod already bound answers 409.
    pub async fn bind(&self, pod: &str, node: &str) -> Result<()> {
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.to_string()),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        let mut body = serde_json::to_value(&binding).map_err(|e| Error::decode("Binding", e))?;
        body["apiVersion"] = "v1".into();
        body["kind"] = "Binding".into();
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::decode("Binding", e))?;
        self.client.create(self.reference(pod, "binding"), bytes).await?;
        Ok(())
    }

    /// Evicts the pod (pods/eviction): a delete that a PodDisruptionBudget
    /// may refuse with 429.
    pub async fn evict(&self, pod: &str, params: &DeleteParams) -> Result<()> {
        let eviction = Eviction {
            metadata: ObjectMeta {
                name: Some(pod.to_string()),
                namespace: self.namespace.clone(),
                ..Default::default()
            },
            delete_options: Some(params.options()),
        };
        let mut body = serde_json::to_value(&eviction).map_err(|e| Error::decode("Eviction", e))?;
        body["apiVersion"] = "policy/v1".into();
        body["kind"] = "Eviction".into();
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::decode("Eviction", e))?;
        self.client.create(self.reference(pod, "eviction"), bytes).await?;
        Ok(())
    }
}
