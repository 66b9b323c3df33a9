//! The verbs of the Kubernetes API, shared by the REST and gRPC layers:
//! get, list, watch, create, update, patch, delete, deletecollection.
//! Each takes the parsed request and returns objects as JSON values; the
//! transports only frame them.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::defaults;
use crate::field_validation::{self, FieldValidation};
use crate::managed_fields;
use crate::registry;
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::selector::Selector;
use crate::services;
use crate::status::ApiError;
use crate::storage::{StorageError, Stored};
use crate::validation;

type Result<T> = std::result::Result<T, ApiError>;

/// One watch event: its type and its object (a Status for ERROR).
pub type WatchEvent = (&'static str, Value);

pub fn storage_error(info: &RequestInfo, name: &str, e: StorageError) -> ApiError {
    let (resource, group) = (info.resource.plural, info.resource.group);
    match e {
        StorageError::NotFound => ApiError::not_found(resource, group, name),
        StorageError::AlreadyExists => ApiError::already_exists(resource, group, name),
        StorageError::Conflict => ApiError::conflict(resource, group, name),
        StorageError::Compacted(rev) => ApiError::gone(format!("too old resource version: {rev}")),
        StorageError::Unavailable(m) => ApiError::unavailable(m),
        StorageError::TooLarge(m) => ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: format!("the object is larger than the store accepts: {m}"),
            details: None,
        },
    }
}

/// The query parameters of a request.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(uri: &http::Uri) -> Query {
        let raw = uri.query().unwrap_or_default();
        Query(form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }
}

impl Query {
    /// Parameters given one by one (the gRPC layer's fields).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Query {
        Query(
            pairs
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

/// A stored object as JSON, with its resourceVersion.
pub fn parse_stored_value(info: &RequestInfo, stored: &Stored) -> Result<Value> {
    parse_stored(info, stored)
}

/// An object as stored: in its storage version, as JSON.
fn encode(info: &RequestInfo, object: &Value) -> Result<Vec<u8>> {
    let bytes = if crate::conversion::converts_on_write(info) {
        serde_json::to_vec(&crate::conversion::to_storage(info, object.clone()))
    } else {
        serde_json::to_vec(object)
    };
    bytes.map_err(|e| ApiError::internal(e.to_string()))
}

fn parse_stored(info: &RequestInfo, stored: &Stored) -> Result<Value> {
    let object: Value = serde_json::from_slice(&stored.value)
        .map_err(|e| ApiError::internal(format!("stored {} is not JSON: {e}", info.resource.plural)))?;
    let object = crate::conversion::from_storage(info, object);
    Ok(registry::with_version(object, stored.revision))
}

fn name(info: &RequestInfo) -> &str {
    info.name.as_deref().unwrap_or_default()
}

/// An object and the revision it was read at, for a read-modify-write.
pub async fn read(app: &App, info: &RequestInfo) -> Result<(Value, i64)> {
    let stored = app
        .storage
        .get(info.key().as_bytes())
        .await
        .map_err(|e| storage_error(info, name(info), e))?;
    Ok((parse_stored(info, &stored)?, stored.revision))
}

/// Writes `object` over the one read at `revision` (compare-and-swap);
/// returns the new revision. No registry rules: the caller applied them.
pub async fn write(
    app: &App,
    info: &RequestInfo,
    mut object: Value,
    revision: i64,
) -> std::result::Result<i64, StorageError> {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let bytes = encode(info, &object).map_err(|e| StorageError::Unavailable(e.message))?;
    app.storage.update(info.key().as_bytes(), bytes, Some(revision)).await
}

/// A get's `resourceVersion`: reads are always of the latest object,
/// which is "not older than" any version the store has reached; one it
/// has not reached is a 504 as in kube-apiserver, a malformed one a 400.
pub async fn check_get_version(app: &App, info: &RequestInfo, query: &Query) -> Result<()> {
    let Some(rv) = query.get("resourceVersion").filter(|rv| !rv.is_empty() && *rv != "0") else {
        return Ok(());
    };
    let rv: i64 = rv
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
    if let Some(m) = query.get("resourceVersionMatch").filter(|m| !m.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "resourceVersionMatch {m:?} is only allowed on lists"
        )));
    }
    let current = app.storage.revision().await.map_err(|e| storage_error(info, "", e))?;
    if rv > current {
        return Err(ApiError::timeout(format!(
            "Too large resource version: {rv}, current: {current}"
        )));
    }
    Ok(())
}

pub async fn get(app: &App, info: &RequestInfo) -> Result<Value> {
    if info.subresource.as_deref() == Some("scale") {
        return crate::scale::get(app, info).await;
    }
    let stored = app
        .storage
        .get(info.key().as_bytes())
        .await
        .map_err(|e| storage_error(info, name(info), e))?;
    parse_stored(info, &stored)
}

/// A request's label and field selectors; field labels the resource
/// cannot be selected by are a 400.
pub fn selectors(info: &RequestInfo, query: &Query) -> Result<(Selector, Selector)> {
    let fields = Selector::parse(query.get("fieldSelector").unwrap_or_default())?;
    fields.check_field_labels(info.resource.group, info.resource.plural)?;
    Ok((Selector::parse(query.get("labelSelector").unwrap_or_default())?, fields))
}

/// Where a paged list resumes: the revision the first page was read at
/// (every page reads the same snapshot) and the last key already sent.
fn continue_token(revision: i64, key: &[u8]) -> String {
    use base64::Engine;
    let token = json!({"rv": revision, "start": String::from_utf8_lossy(key)});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn parse_continue(token: &str) -> Result<(i64, Vec<u8>)> {
    use base64::Engine;
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = value["rv"].as_i64().filter(|rv| *rv > 0).ok_or_else(bad)?;
    let start = value["start"].as_str().ok_or_else(bad)?;
    Ok((rv, start.as_bytes().to_vec()))
}

/// The objects of a core/v1 resource in `namespace`, for admission
/// steps: from the watch cache when it serves them (possibly a moment
/// behind, as kube-apiserver's admission plugins read their informers),
/// from the store otherwise.
pub async fn list_namespace(app: &App, plural: &str, namespace: &str) -> Result<Vec<Value>> {
    let resource = api::resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("no core resource {plural}")))?;
    list_in(app, resource, namespace).await
}

/// One stored object's raw JSON for an admission step: from the watch
/// cache when it has it, from the store otherwise (so an object created
/// a moment ago is never missed, as kube-apiserver's admission falls
/// back to a live lookup); `None` when it does not exist.
pub async fn get_for_admission(app: &App, key: &str) -> Result<Option<Vec<u8>>> {
    let cached = app
        .watch_cache
        .serving_for_key(key)
        .and_then(|cache| {
            let keys = crate::watch_cache::Keys {
                prefix: key.as_bytes().to_vec(),
                exact: true,
            };
            cache.list(&keys)
        })
        .and_then(|(items, _)| items.first().map(|s| s.value.clone()));
    if let Some(value) = cached {
        return Ok(Some(value));
    }
    match app.storage.get(key.as_bytes()).await {
        Ok(stored) => Ok(Some(stored.value)),
        Err(StorageError::NotFound) => Ok(None),
        Err(e) => Err(ApiError::unavailable(format!("{key}: {e}"))),
    }
}

/// [`list_namespace`] for any resource (`namespace` "" for a
/// cluster-scoped one).
pub async fn list_in(
    app: &App,
    resource: &'static api::resources::ResourceInfo,
    namespace: &str,
) -> Result<Vec<Value>> {
    let info = RequestInfo {
        resource,
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        name: None,
        subresource: None,
    };
    let items = stored_under(app, &info, false).await?;
    items.iter().map(|stored| parse_stored(&info, stored)).collect()
}

/// The stored objects of a collection: from the watch cache when it
/// serves them, from the store otherwise or when `fresh` (a
/// compare-and-swap that lost needs the store's own versions).
pub async fn stored_under(app: &App, info: &RequestInfo, fresh: bool) -> Result<Vec<Arc<Stored>>> {
    if !fresh {
        let cached = app
            .watch_cache
            .serving(&info.resource.storage_prefix())
            .and_then(|cache| cache.list(&crate::watch::keys(info)));
        if let Some((items, _)) = cached {
            return Ok(items);
        }
    }
    let (items, _) = app
        .storage
        .list(info.key().as_bytes(), 0)
        .await
        .map_err(|e| storage_error(info, "", e))?;
    Ok(items.into_iter().map(Arc::new).collect())
}

/// A list from the watch cache, when it can serve one: `asked` is the
/// list's resourceVersion (`None`: the latest, so the cache must first
/// reach the store's current revision; `Some(0)`: any; otherwise not older
/// than it). `None` sends the list to the store.
async fn cached_list(app: &App, info: &RequestInfo, asked: Option<i64>) -> Result<Option<(Vec<Arc<Stored>>, i64)>> {
    let Some(cache) = app.watch_cache.serving(&info.resource.storage_prefix()) else {
        return Ok(None);
    };
    let needed = match asked {
        Some(0) => 0,
        asked => {
            let current = app.storage.revision().await.map_err(|e| storage_error(info, "", e))?;
            match asked {
                // The store answers "too large" at once.
                Some(rv) if rv > current => return Ok(None),
                Some(rv) => rv,
                None => current,
            }
        }
    };
    if !cache.wait_for(needed).await {
        return Ok(None);
    }
    Ok(cache.list(&crate::watch::keys(info)))
}

/// A list, optionally paged with `limit` and `continue`: the first page
/// from the watch cache when it serves the resource, the pages after it
/// from the store at the first page's revision.
pub async fn list(app: &App, info: &RequestInfo, query: &Query) -> Result<Value> {
    let mut objects = Vec::new();
    let metadata = list_into(app, info, query, &mut |object| {
        objects.push(object);
        Ok(())
    })
    .await?;
    Ok(json!({
        "kind": format!("{}List", info.resource.kind),
        "apiVersion": info.resource.api_version(),
        "metadata": metadata,
        "items": objects,
    }))
}

/// [`list`] written straight out as JSON, one item at a time, so that no
/// list of decoded objects is held (for 10,000 pods that would be some
/// hundred megabytes at once, which the allocator then keeps).
pub async fn list_json(app: &App, info: &RequestInfo, query: &Query) -> Result<Vec<u8>> {
    let internal = |e: serde_json::Error| ApiError::internal(e.to_string());
    let mut out = Vec::new();
    let head = json!({"kind": format!("{}List", info.resource.kind), "apiVersion": info.resource.api_version()});
    let head = head.to_string();
    out.extend_from_slice(head.trim_end_matches('}').as_bytes());
    out.extend_from_slice(b",\"items\":[");
    let mut first = true;
    let metadata = list_into(app, info, query, &mut |object| {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, &object).map_err(internal)
    })
    .await?;
    out.extend_from_slice(b"],\"metadata\":");
    serde_json::to_writer(&mut out, &metadata).map_err(internal)?;
    out.push(b'}');
    Ok(out)
}

/// The list's work: each selected object goes to `sink` in key order;
/// the answer is the list's metadata (resourceVersion, continue).
async fn list_into(
    app: &App,
    info: &RequestInfo,
    query: &Query,
    sink: &mut (dyn FnMut(Value) -> Result<()> + Send),
) -> Result<Value> {
    let (labels, fields) = selectors(info, query)?;
    let resume = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(parse_continue)
        .transpose()?;
    let asked: Option<i64> = match query.get("resourceVersion").filter(|rv| !rv.is_empty()) {
        Some(rv) => Some(
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
        None => None,
    };
    match (query.get("resourceVersionMatch").filter(|m| !m.is_empty()), asked) {
        (None, _) | (Some("Exact" | "NotOlderThan"), Some(_)) => {}
        (Some("Exact" | "NotOlderThan"), None) => {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ))
        }
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch {other:?} is not one of Exact, NotOlderThan"
            )))
        }
    }
    let revision = match (&resume, asked) {
        (Some((rv, _)), _) => *rv,
        (None, Some(rv)) if rv > 0 && query.get("resourceVersionMatch") == Some("Exact") => rv,
        _ => 0,
    };
    let limit = match query.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        _ => 0,
    };
    let cached = match (&resume, revision) {
        (None, 0) => cached_list(app, info, asked).await?,
        _ => None,
    };
    let (items, at) = match cached {
        Some(found) => found,
        None => match app.storage.list(info.key().as_bytes(), revision).await {
            Err(StorageError::Compacted(_)) if resume.is_some() => {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ))
            }
            other => {
                let (items, at) = other.map_err(|e| storage_error(info, "", e))?;
                (items.into_iter().map(Arc::new).collect(), at)
            }
        },
    };
    // "Not older than" a version the store has not reached yet.
    if let Some(rv) = asked.filter(|rv| revision == 0 && *rv > at) {
        return Err(ApiError::timeout(format!(
            "Too large resource version: {rv}, current: {at}"
        )));
    }
    let after = resume.map(|(_, key)| key);
    let mut sent = 0;
    let mut next = None;
    let mut remaining = 0;
    for stored in items.iter().filter(|s| after.as_ref().is_none_or(|a| s.key > *a)) {
        let object = parse_stored(info, stored)?;
        if !(labels.matches_labels(&object) && fields.matches_fields(&object)) {
            continue;
        }
        if limit > 0 && sent == limit {
            remaining += 1;
            continue;
        }
        next = Some(&stored.key);
        sent += 1;
        sink(object)?;
    }
    let mut metadata = json!({"resourceVersion": at.to_string()});
    if remaining > 0 {
        if let Some(key) = next {
            metadata["continue"] = json!(continue_token(at, key));
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(metadata)
}

pub use crate::watch::watch;

async fn check_namespace(app: &App, info: &RequestInfo) -> Result<()> {
    let Some(ns) = &info.namespace else { return Ok(()) };
    let key = format!("/registry/namespaces/{ns}");
    match get_for_admission(app, &key).await? {
        Some(value) => {
            let namespace: Value = serde_json::from_slice(&value).unwrap_or_default();
            crate::deletion::check_not_terminating(&namespace, ns)
        }
        None => Err(ApiError::not_found("namespaces", "", ns)),
    }
}

/// Options of a write (`?fieldValidation=&dryRun=&fieldManager=`; the
/// gRPC WriteOptions).
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub field_validation: FieldValidation,
    /// Check and compute everything, store nothing.
    pub dry_run: bool,
    /// Who is writing, for `managedFields`.
    pub field_manager: Option<String>,
    /// A server-side apply: `managedFields` are already worked out.
    pub apply: bool,
    /// Who is writing (for admission that depends on it, such as RBAC's
    /// escalation check); `None` for the API server's own writes.
    pub user: Option<crate::authn::User>,
}

/// The manager a write is recorded under when the request names none.
const DEFAULT_MANAGER: &str = "kube-apiserver";

/// `dryRun=All`, the only dry-run value there is.
pub fn parse_dry_run(values: &[&str]) -> Result<bool> {
    match values {
        [] | [""] => Ok(false),
        ["All"] => Ok(true),
        other => Err(ApiError::bad_request(format!(
            "dryRun {other:?} is not supported: the only valid value is All"
        ))),
    }
}

impl WriteOptions {
    /// From the query; without `fieldManager`, the manager is the user
    /// agent's product name (`kubectl/v1.32.0 (linux/amd64) …` → `kubectl`).
    pub fn from_query(query: &Query, user_agent: Option<&str>) -> Result<WriteOptions> {
        let manager = query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| {
                let agent = user_agent?.split('/').next()?.trim();
                (!agent.is_empty()).then(|| agent.chars().take(128).collect())
            });
        Ok(WriteOptions {
            field_validation: FieldValidation::parse(query.get("fieldValidation"))?,
            dry_run: parse_dry_run(&query.all("dryRun"))?,
            field_manager: manager,
            apply: false,
            user: None,
        })
    }

    fn manager(&self) -> &str {
        self.field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_MANAGER)
    }
}

/// The schema name of a resource's kind.
fn schema_of(info: &RequestInfo) -> Option<&'static str> {
    crate::types::find(info.resource.group, info.resource.version, info.resource.kind).map(|t| t.schema_name.as_str())
}

pub async fn create(app: &App, info: &RequestInfo, body: Value, opts: &WriteOptions) -> Result<Value> {
    match (info.resource.plural, info.subresource.as_deref()) {
        (_, None) => {}
        ("pods", Some("binding")) => return crate::binding::bind(app, info, body).await,
        ("pods", Some("eviction")) => return crate::eviction::evict(app, info, body, opts.dry_run).await,
        (_, Some(sub)) => {
            return Err(ApiError::method_not_allowed(format!(
                "creating through the {sub} subresource is not supported"
            )))
        }
    }
    check_namespace(app, info).await?;
    let requested = body.clone();
    let (name, mut object) = registry::prepare_create(info, body)?;
    let (group, plural) = (info.resource.group, info.resource.plural);
    defaults::on_create(group, plural, &mut object);
    if (group, plural) == ("", "pods") {
        crate::priority::admit(app, &mut object).await?;
        crate::service_account_token_volume::admit(app, &mut object).await;
    }
    if let (Some(namespace), "") = (info.namespace.as_deref(), group) {
        crate::limit_ranger::admit(app, plural, namespace, &name, &mut object).await?;
    }
    let mut object = field_validation::decode(info, object, opts.field_validation)?;
    validation::validate(group, plural, &object, None)?;
    crate::authz::escalation::admit(app, opts.user.as_ref(), info, &object).await?;
    crate::authz::node::admit(opts.user.as_ref(), info, &object, None)?;
    if !opts.apply {
        // The creator owns every field it sent (not the defaults).
        let entry = managed_fields::Entry {
            manager: opts.manager().to_string(),
            operation: "Update".into(),
            api_version: info.resource.api_version(),
            subresource: String::new(),
            time: registry::now(),
            fields: managed_fields::fields_of(schema_of(info), &requested, false),
        };
        managed_fields::write_entries(&mut object, &[entry]);
    }
    let named = RequestInfo {
        name: Some(name.clone()),
        ..info.clone()
    };
    if is_service(info) {
        services::default_and_validate(&mut object)?;
    }
    let admitted = crate::resource_quota::Admitted {
        group,
        plural,
        kind_name: format!("{plural} \"{name}\""),
        object: &object,
        old: None,
    };
    crate::resource_quota::admit(app, info.namespace.as_deref(), &admitted, opts.dry_run).await?;
    if opts.dry_run {
        // Checked and defaulted; nothing allocated, nothing stored.
        return Ok(object);
    }
    let held = if is_service(info) {
        services::allocate(&app.allocator, &app.storage, &mut object).await?
    } else {
        services::Held::default()
    };
    let bytes = encode(info, &object)?;
    match app.storage.create(named.key().as_bytes(), bytes).await {
        Ok(revision) => {
            if is_crd(info) {
                crate::crd::register(&object);
            }
            Ok(registry::with_version(object, revision))
        }
        Err(e) => {
            held.release(&app.allocator, &app.storage).await;
            Err(storage_error(info, &name, e))
        }
    }
}

fn is_crd(info: &RequestInfo) -> bool {
    info.resource.group == "apiextensions.k8s.io" && info.resource.plural == "customresourcedefinitions"
}

fn is_service(info: &RequestInfo) -> bool {
    info.resource.group.is_empty() && info.resource.plural == "services" && info.subresource.is_none()
}

/// After a delete: a Service's address and node ports are free again; a
/// CRD's resources are no longer served and their objects go.
pub async fn released(app: &App, info: &RequestInfo, deleted: &Value) {
    if is_service(info) {
        services::held_by(deleted).release(&app.allocator, &app.storage).await;
    }
    if is_crd(info) {
        crate::crd::unregister(deleted["metadata"]["name"].as_str().unwrap_or_default());
        // The objects live under /registry/<group>/<plural>/ (see
        // ResourceInfo::storage_prefix), whichever versions were served.
        let (group, plural) = (&deleted["spec"]["group"], &deleted["spec"]["names"]["plural"]);
        if let (Some(group), Some(plural)) = (group.as_str(), plural.as_str()) {
            let prefix = format!("/registry/{group}/{plural}/");
            if let Ok((items, _)) = app.storage.list(prefix.as_bytes(), 0).await {
                for item in items {
                    let _ = app.storage.delete(&item.key, None).await;
                }
            }
        }
    }
}

pub async fn update(app: &App, info: &RequestInfo, body: Value, opts: &WriteOptions) -> Result<Value> {
    if info.subresource.as_deref() == Some("scale") {
        return crate::scale::update(app, info, body, opts).await;
    }
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
    write_update(app, info, &existing, current.revision, body, opts).await
}

pub(crate) async fn write_update(
    app: &App,
    info: &RequestInfo,
    existing: &Value,
    revision: i64,
    body: Value,
    opts: &WriteOptions,
) -> Result<Value> {
    let (group, plural) = (info.resource.group, info.resource.plural);
    let mut body = body;
    // Defaults first, so that an update leaving defaulted fields out does
    // not count as a spec change.
    defaults::apply(group, plural, &mut body);
    let object = registry::prepare_update(info, existing, body)?;
    let mut object = field_validation::decode(info, object, opts.field_validation)?;
    validation::validate(group, plural, &object, Some(existing))?;
    crate::authz::escalation::admit(app, opts.user.as_ref(), info, &object).await?;
    crate::authz::node::admit(opts.user.as_ref(), info, &object, Some(existing))?;
    if !opts.apply {
        let status = info.subresource.as_deref() == Some("status");
        let (changed, removed) = managed_fields::changes(schema_of(info), existing, &object, status);
        let mut entries = managed_fields::read_entries(existing);
        let subresource = info.subresource.clone().unwrap_or_default();
        let version = info.resource.api_version();
        managed_fields::record_update(&mut entries, opts.manager(), &version, &subresource, &changed, &removed);
        managed_fields::write_entries(&mut object, &entries);
    }
    let finishes_deletion = crate::deletion::after_update(existing, &object, info)?;
    if info.subresource.is_none() && !finishes_deletion {
        // What grew (a Service turned LoadBalancer, a bigger claim, a pod
        // moved into a quota's scope) is charged like a create.
        let admitted = crate::resource_quota::Admitted {
            group,
            plural,
            kind_name: format!("{plural} \"{}\"", name(info)),
            object: &object,
            old: Some(existing),
        };
        crate::resource_quota::admit(app, info.namespace.as_deref(), &admitted, opts.dry_run).await?;
    }
    if opts.dry_run {
        return Ok(registry::with_version(object, revision));
    }
    if finishes_deletion {
        // The last finalizer is gone: the update completes the delete.
        crate::deletion::remove(app, info, revision).await?;
        return Ok(object);
    }
    let (fresh, stale) = if is_service(info) {
        services::default_and_validate(&mut object)?;
        services::reallocate(&app.allocator, &app.storage, existing, &mut object).await?
    } else {
        Default::default()
    };
    let bytes = encode(info, &object)?;
    match app.storage.update(info.key().as_bytes(), bytes, Some(revision)).await {
        Ok(written) => {
            stale.release(&app.allocator, &app.storage).await;
            if is_crd(info) {
                crate::crd::register(&object);
            }
            Ok(registry::with_version(object, written))
        }
        Err(e) => {
            fresh.release(&app.allocator, &app.storage).await;
            Err(storage_error(info, name(info), e))
        }
    }
}

/// JSON patch, JSON merge patch and strategic merge patch (server-side
/// apply patches go to [`server_side_apply`](crate::server_side_apply)).
pub async fn patch(
    app: &App,
    info: &RequestInfo,
    content_type: &str,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Value> {
    if info.subresource.as_deref() == Some("scale") {
        return crate::scale::patch(app, info, content_type, body, opts).await;
    }
    let schema = crate::types::find(info.resource.group, info.resource.version, info.resource.kind);
    // As kube-apiserver does: a patch is re-applied to the newest object when
    // another writer got in between, unless the patch itself pinned a
    // resourceVersion (the client's precondition, answered with the 409).
    for _ in 0..PATCH_ATTEMPTS {
        let current = app
            .storage
            .get(info.key().as_bytes())
            .await
            .map_err(|e| storage_error(info, name(info), e))?;
        let existing = parse_stored(info, &current)?;
        let patched = apply_patch(
            info,
            &existing,
            content_type,
            body,
            schema.map(|t| t.schema_name.as_str()),
        )?;
        // A resourceVersion in the patch that is not the current one is a
        // failed precondition.
        if patched["metadata"]["resourceVersion"] != existing["metadata"]["resourceVersion"] {
            return Err(ApiError::conflict(
                info.resource.plural,
                info.resource.group,
                name(info),
            ));
        }
        match write_update(app, info, &existing, current.revision, patched, opts).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict(
        info.resource.plural,
        info.resource.group,
        name(info),
    ))
}

/// How many times a patch is re-applied when the object keeps changing.
/// Each conflict means another writer succeeded, so n concurrent writers
/// need up to n attempts; kube-apiserver retries storage conflicts without
/// a limit (GuaranteedUpdate). 5 was too few for 8 concurrent patches.
const PATCH_ATTEMPTS: usize = 64;

/// A patch of any type applied to `existing` (whose schema is `schema`).
pub fn apply_patch(
    info: &RequestInfo,
    existing: &Value,
    content_type: &str,
    body: &[u8],
    schema: Option<&str>,
) -> Result<Value> {
    let mut patched = existing.clone();
    let decode = || -> Result<Value> {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    match content_type.split(';').next().unwrap_or_default() {
        "application/merge-patch+json" => json_patch::merge(&mut patched, &decode()?),
        "application/strategic-merge-patch+json" => {
            patched = crate::strategic_merge::apply(schema, existing, &decode()?)
                .map_err(|e| ApiError::invalid(info.resource.kind, name(info), "patch", &e.to_string()))?;
        }
        "application/json-patch+json" => {
            let patch: json_patch::Patch = serde_json::from_value(decode()?)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut patched, &patch)
                .map_err(|e| ApiError::invalid(info.resource.kind, name(info), "patch", &e.to_string()))?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    Ok(patched)
}

/// Deletes one object ([`deletion`](crate::deletion) has the rules).
pub async fn delete(app: &App, info: &RequestInfo, options: Option<&Value>) -> Result<Value> {
    crate::deletion::delete(app, info, options, false).await
}

/// Deletes every object of the collection that the selectors match and
/// returns them as a list.
/// Deletes every selected object, each as a delete with `options`
/// (grace period, propagation, preconditions) would; with `dry_run`,
/// only says what would go.
pub async fn delete_collection(
    app: &App,
    info: &RequestInfo,
    query: &Query,
    options: Option<&Value>,
    dry_run: bool,
) -> Result<Value> {
    let (labels, fields) = selectors(info, query)?;
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
        let one = RequestInfo {
            name: object["metadata"]["name"].as_str().map(str::to_string),
            namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
            ..info.clone()
        };
        match crate::deletion::delete(app, &one, options, dry_run).await {
            Ok(gone) => deleted.push(gone),
            // Deleted meanwhile by someone else: nothing left to do.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": format!("{}List", info.resource.kind),
        "apiVersion": info.resource.api_version(),
        "metadata": {},
        "items": deleted,
    });
    Ok(list)
}
