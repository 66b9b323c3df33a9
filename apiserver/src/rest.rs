//! The REST API layer: one handler for every Kubernetes path.
//!
//! A request is authenticated (its client certificate), matched to
//! discovery or to a resource ([`request_info`](crate::request_info)),
//! then served: get, list and watch read the store; create, update, patch
//! and delete go through the registry rules and compare-and-swap writes.
//! Errors leave as `metav1.Status` ([`status`](crate::status)).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use common::grpc::PeerInfo;
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::authn;
use crate::discovery;
use crate::registry;
use crate::request_info::{self, RequestInfo};
use crate::selector::Selector;
use crate::status::ApiError;
use crate::storage::{Change, Storage, StorageError, Stored};

/// What every request handler shares.
pub struct App {
    pub storage: Storage,
    /// The largest request body accepted (413 beyond).
    pub max_body: usize,
    pub metrics: crate::metrics::Metrics,
}

type Result<T> = std::result::Result<T, ApiError>;

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn storage_error(info: &RequestInfo, name: &str, e: StorageError) -> ApiError {
    let (resource, group) = (info.resource.plural, info.resource.group);
    match e {
        StorageError::NotFound => ApiError::not_found(resource, group, name),
        StorageError::AlreadyExists => ApiError::already_exists(resource, group, name),
        StorageError::Conflict => ApiError::conflict(resource, group, name),
        StorageError::Compacted(rev) => ApiError::gone(format!("too old resource version: {rev}")),
        StorageError::Unavailable(m) => ApiError::unavailable(m),
    }
}

/// The query parameters of a request.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Query {
        let raw = uri.query().unwrap_or_default();
        Query(form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }
}

/// Entry point for every request on the REST port.
pub async fn handle(
    State(app): State<Arc<App>>,
    peer: Option<Extension<PeerInfo>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match serve(&app, peer.map(|Extension(p)| p), &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    app: &App,
    peer: Option<PeerInfo>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let path = uri.path();
    // Health and version answer anyone, as Kubernetes' public-info does.
    match path {
        "/healthz" | "/livez" | "/readyz" => return Ok((StatusCode::OK, "ok").into_response()),
        "/version" => return Ok(json_response(StatusCode::OK, &discovery::version())),
        _ => {}
    }
    let user = authn::authenticate(peer.as_ref())?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let document = match segments.as_slice() {
        ["api"] => Some(discovery::core_versions()),
        ["apis"] => Some(discovery::groups()),
        ["api", version] => discovery::resource_list("", version),
        ["apis", group, version] => discovery::resource_list(group, version),
        _ => None,
    };
    if let Some(document) = document {
        return Ok(json_response(StatusCode::OK, &document));
    }
    if path == "/metrics" {
        authn::authorize_path(&user, "/metrics")?;
        let text = common::metrics::encode(&app.metrics.registry);
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, common::metrics::TEXT_CONTENT_TYPE)],
            text,
        )
            .into_response());
    }
    let info = request_info::parse(path)?;
    let query = Query::parse(uri);
    let verb = verb(method, &info, &query)?;
    let started = std::time::Instant::now();
    let _inflight = app.metrics.in_flight(!matches!(verb, "get" | "list" | "watch"));
    let result = serve_resource(app, &user, verb, &info, &query, headers, body).await;
    let code = match &result {
        Ok(response) => response.status().as_u16(),
        Err(e) => e.code,
    };
    let scope = match (&info.name, &info.namespace) {
        (Some(_), _) => "resource",
        (None, Some(_)) => "namespace",
        (None, None) => "cluster",
    };
    let labels = crate::metrics::Labels {
        verb: crate::metrics::verb_label(verb),
        group: info.resource.group,
        version: info.resource.version,
        resource: info.resource.plural,
        subresource: info.subresource.as_deref().unwrap_or_default(),
        scope,
    };
    app.metrics.observe(&labels, code, started.elapsed().as_secs_f64());
    result
}

async fn serve_resource(
    app: &App,
    user: &authn::User,
    verb: &'static str,
    info: &RequestInfo,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response> {
    authn::authorize(user, verb, info)?;
    if body.len() > app.max_body {
        return Err(ApiError::too_large(app.max_body));
    }
    match verb {
        "get" => get(app, info).await,
        "list" => list(app, info, query).await,
        "watch" => watch(app, info, query).await,
        "create" => create(app, info, decode(headers, &body)?).await,
        "update" => update(app, info, decode(headers, &body)?).await,
        "patch" => patch(app, info, headers, &body).await,
        "delete" => delete(app, info).await,
        "deletecollection" => delete_collection(app, info, query).await,
        other => Err(ApiError::method_not_allowed(format!("{other} is not supported here"))),
    }
}

/// The Kubernetes verb of a request, as RBAC names it.
fn verb(method: &Method, info: &RequestInfo, query: &Query) -> Result<&'static str> {
    let named = info.name.is_some();
    Ok(match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if query.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not allowed on this path"
            )))
        }
    })
}

/// Parses a JSON or YAML body; protobuf is not accepted yet.
fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let value: Value = if content_type.starts_with("application/json") || content_type.starts_with("*/*") {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?
    } else if content_type.starts_with("application/yaml") {
        serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?
    } else {
        return Err(ApiError::unsupported_media_type(content_type));
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(value)
}

fn parse_stored(info: &RequestInfo, stored: &Stored) -> Result<Value> {
    let object: Value = serde_json::from_slice(&stored.value)
        .map_err(|e| ApiError::internal(format!("stored {} is not JSON: {e}", info.resource.plural)))?;
    Ok(registry::with_version(object, stored.revision))
}

fn name(info: &RequestInfo) -> &str {
    info.name.as_deref().unwrap_or_default()
}

async fn get(app: &App, info: &RequestInfo) -> Result<Response> {
    let stored = app
        .storage
        .get(info.key().as_bytes())
        .await
        .map_err(|e| storage_error(info, name(info), e))?;
    Ok(json_response(StatusCode::OK, &parse_stored(info, &stored)?))
}

fn selectors(query: &Query) -> Result<(Selector, Selector)> {
    Ok((
        Selector::parse(query.get("labelSelector").unwrap_or_default())?,
        Selector::parse(query.get("fieldSelector").unwrap_or_default())?,
    ))
}

async fn list(app: &App, info: &RequestInfo, query: &Query) -> Result<Response> {
    let (labels, fields) = selectors(query)?;
    let revision = match query.get("resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != "0" && query.get("resourceVersionMatch") == Some("Exact") => rv
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        _ => 0,
    };
    let (items, at) = app
        .storage
        .list(info.key().as_bytes(), revision)
        .await
        .map_err(|e| storage_error(info, "", e))?;
    let mut objects = Vec::new();
    for stored in &items {
        let object = parse_stored(info, stored)?;
        if labels.matches_labels(&object) && fields.matches_fields(&object) {
            objects.push(object);
        }
    }
    let list = json!({
        "kind": format!("{}List", info.resource.kind),
        "apiVersion": info.resource.api_version(),
        "metadata": {"resourceVersion": at.to_string()},
        "items": objects,
    });
    Ok(json_response(StatusCode::OK, &list))
}

/// `?watch=true`: one JSON event per line, until the client goes, the
/// timeout ends, or the start version is too old (an ERROR event, 410).
async fn watch(app: &App, info: &RequestInfo, query: &Query) -> Result<Response> {
    let (labels, fields) = selectors(query)?;
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let prefix = info.key();
    let mut initial = Vec::new();
    let after = match query.get("resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != "0" => rv
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        // No version: the current state first, as ADDED events.
        _ => {
            let (items, at) = app
                .storage
                .list(prefix.as_bytes(), 0)
                .await
                .map_err(|e| storage_error(info, "", e))?;
            for stored in &items {
                initial.push(("ADDED", parse_stored(info, stored)?));
            }
            at
        }
    };
    let changes = app
        .storage
        .watch(prefix.as_bytes(), after)
        .await
        .map_err(|e| storage_error(info, "", e))?;
    let kind = info.clone();
    let live = tokio_stream::wrappers::ReceiverStream::new(changes).map(move |change| match change {
        Ok(Change::Put { object, created }) => {
            let kind_name = if created { "ADDED" } else { "MODIFIED" };
            parse_stored(&kind, &object)
                .map(|o| (kind_name, o))
                .unwrap_or_else(|e| ("ERROR", e.status()))
        }
        Ok(Change::Delete { object }) => parse_stored(&kind, &object)
            .map(|o| ("DELETED", o))
            .unwrap_or_else(|e| ("ERROR", e.status())),
        Err(StorageError::Compacted(rev)) => (
            "ERROR",
            ApiError::gone(format!("too old resource version: {after} ({rev})")).status(),
        ),
        Err(e) => ("ERROR", ApiError::unavailable(e.to_string()).status()),
    });
    let mut events = Box::pin(tokio_stream::iter(initial).chain(live).filter(move |(kind, object)| {
        *kind == "ERROR" || (labels.matches_labels(object) && fields.matches_fields(object))
    }));
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let (kind, object) = tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                next = events.next() => match next {
                    Some(event) => event,
                    None => return,
                },
            };
            let line = Bytes::from(format!("{}\n", json!({"type": kind, "object": object})));
            if tx.send(Ok(line)).await.is_err() || kind == "ERROR" {
                return;
            }
        }
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(events),
    )
        .into_response())
}

async fn check_namespace(app: &App, info: &RequestInfo) -> Result<()> {
    let Some(ns) = &info.namespace else { return Ok(()) };
    let key = format!("/registry/namespaces/{ns}");
    match app.storage.get(key.as_bytes()).await {
        Ok(_) => Ok(()),
        Err(StorageError::NotFound) => Err(ApiError::not_found("namespaces", "", ns)),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

async fn create(app: &App, info: &RequestInfo, body: Value) -> Result<Response> {
    if info.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "creating through this subresource is not supported yet",
        ));
    }
    check_namespace(app, info).await?;
    let (name, object) = registry::prepare_create(info, body)?;
    let named = RequestInfo {
        name: Some(name.clone()),
        ..info.clone()
    };
    let bytes = serde_json::to_vec(&object).map_err(|e| ApiError::internal(e.to_string()))?;
    let revision = app
        .storage
        .create(named.key().as_bytes(), bytes)
        .await
        .map_err(|e| storage_error(info, &name, e))?;
    Ok(json_response(
        StatusCode::CREATED,
        &registry::with_version(object, revision),
    ))
}

async fn update(app: &App, info: &RequestInfo, body: Value) -> Result<Response> {
    let expected = match body["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() => Some(
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
        _ => None,
    };
    let current = app
        .storage
        .get(info.key().as_bytes())
        .await
        .map_err(|e| storage_error(info, name(info), e))?;
    if expected.is_some_and(|rv| rv != current.revision) {
        return Err(ApiError::conflict(
            info.resource.plural,
            info.resource.group,
            name(info),
        ));
    }
    let existing = parse_stored(info, &current)?;
    write_update(app, info, &existing, current.revision, body).await
}

async fn write_update(app: &App, info: &RequestInfo, existing: &Value, revision: i64, body: Value) -> Result<Response> {
    let object = registry::prepare_update(info, existing, body)?;
    let bytes = serde_json::to_vec(&object).map_err(|e| ApiError::internal(e.to_string()))?;
    let written = app
        .storage
        .update(info.key().as_bytes(), bytes, Some(revision))
        .await
        .map_err(|e| storage_error(info, name(info), e))?;
    Ok(json_response(StatusCode::OK, &registry::with_version(object, written)))
}

/// JSON patch and JSON merge patch; strategic merge and server-side apply
/// are not served yet (415 says so).
async fn patch(app: &App, info: &RequestInfo, headers: &HeaderMap, body: &[u8]) -> Result<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let current = app
        .storage
        .get(info.key().as_bytes())
        .await
        .map_err(|e| storage_error(info, name(info), e))?;
    let existing = parse_stored(info, &current)?;
    let mut patched = existing.clone();
    match content_type.split(';').next().unwrap_or_default() {
        "application/merge-patch+json" => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut patched, &patch);
        }
        "application/json-patch+json" => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut patched, &patch)
                .map_err(|e| ApiError::invalid(info.resource.kind, name(info), "patch", &e.to_string()))?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    write_update(app, info, &existing, current.revision, patched).await
}

async fn delete(app: &App, info: &RequestInfo) -> Result<Response> {
    let deleted = app
        .storage
        .delete(info.key().as_bytes(), None)
        .await
        .map_err(|e| storage_error(info, name(info), e))?;
    Ok(json_response(StatusCode::OK, &parse_stored(info, &deleted)?))
}

/// Deletes every object of the collection that the selectors match and
/// returns them as a list.
async fn delete_collection(app: &App, info: &RequestInfo, query: &Query) -> Result<Response> {
    let (labels, fields) = selectors(query)?;
    let (items, _) = app
        .storage
        .list(info.key().as_bytes(), 0)
        .await
        .map_err(|e| storage_error(info, "", e))?;
    let mut deleted = Vec::new();
    for stored in &items {
        let object = parse_stored(info, stored)?;
        if !(labels.matches_labels(&object) && fields.matches_fields(&object)) {
            continue;
        }
        match app.storage.delete(&stored.key, None).await {
            Ok(gone) => deleted.push(parse_stored(info, &gone)?),
            // Deleted meanwhile by someone else: nothing left to do.
            Err(StorageError::NotFound) => {}
            Err(e) => return Err(storage_error(info, "", e)),
        }
    }
    let list = json!({
        "kind": format!("{}List", info.resource.kind),
        "apiVersion": info.resource.api_version(),
        "metadata": {},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}
