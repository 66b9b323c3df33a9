//! The REST API layer: one handler for every Kubernetes path.
//!
//! A request is authenticated ([`authn`]: its client certificate or
//! bearer token, then impersonation), authorized ([`authz`](crate::authz)),
//! matched to discovery or to a resource ([`request_info`]),
//! then served: get, list and watch read the store; create, update, patch
//! and delete go through the registry rules and compare-and-swap writes.
//! Errors leave as `metav1.Status` ([`status`](crate::status)).

use std::sync::Arc;

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
use crate::request_info::{self, RequestInfo};
use crate::status::ApiError;
use crate::storage::Storage;
use crate::table;
use crate::verbs::{self, Query, WriteOptions};

/// What every request handler shares.
pub struct App {
    pub storage: Storage,
    /// The largest request body accepted (413 beyond).
    pub max_body: usize,
    pub metrics: crate::metrics::Metrics,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: std::time::Duration,
    pub max_in_flight: crate::max_in_flight::MaxInFlight,
    /// Service ClusterIPs and NodePorts.
    pub allocator: crate::allocator::Allocator,
    /// How the API server calls kubelets (pods/log), if it can.
    pub kubelet_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Who is asking (certificates, tokens, anonymous).
    pub authn: authn::Authenticator,
    /// The RBAC objects authorization reads.
    pub rbac: crate::authz::rbac::Rbac,
    /// `--audit-log-path`, when set.
    pub audit: Option<crate::audit::AuditLog>,
    /// Lists and watches served from memory.
    pub watch_cache: crate::watch_cache::Caches,
}

/// What a request turned out to be, for the audit log.
#[derive(Default)]
struct Seen {
    user: Option<authn::User>,
    acting_as: Option<authn::User>,
    info: Option<RequestInfo>,
    verb: &'static str,
}

type Result<T> = std::result::Result<T, ApiError>;

/// How an answer is written: JSON, YAML, or Kubernetes' protobuf, as the
/// client's `Accept` prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Yaml,
    Protobuf,
}

impl Encoding {
    /// The first media range of `Accept` that we serve decides
    /// (client-go lists its choices in order; q-values are not weighed);
    /// JSON without an `Accept`. `None`: nothing acceptable is served (406).
    fn negotiate(accept: &str) -> Option<Encoding> {
        if accept.trim().is_empty() {
            return Some(Encoding::Json);
        }
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let plain = parts.next().is_none();
            match media.as_str() {
                crate::protobuf::encode::CONTENT_TYPE if plain => return Some(Encoding::Protobuf),
                "application/json" | "*/*" | "application/*" => return Some(Encoding::Json),
                "application/yaml" => return Some(Encoding::Yaml),
                _ => {}
            }
        }
        None
    }

    fn answer(self, code: StatusCode, value: &Value) -> Response {
        match self {
            Encoding::Protobuf => {
                if let Some(body) = crate::protobuf::encode::encode_object(value) {
                    return (
                        code,
                        [(header::CONTENT_TYPE, crate::protobuf::encode::CONTENT_TYPE)],
                        body,
                    )
                        .into_response();
                }
            }
            Encoding::Yaml => {
                if let Ok(text) = serde_yaml::to_string(value) {
                    return (code, [(header::CONTENT_TYPE, "application/yaml")], text).into_response();
                }
            }
            Encoding::Json => {}
        }
        json_response(code, value)
    }
}

/// A watch as the REST API streams it: one JSON event per line, each
/// object a one-row Table when the client asked for Tables.
fn watch_response(
    events: tokio::sync::mpsc::Receiver<verbs::WatchEvent>,
    tables: Option<(&'static api::resources::ResourceInfo, String)>,
    encoding: Encoding,
) -> Response {
    if encoding == Encoding::Protobuf && tables.is_none() {
        // Length-prefixed WatchEvent messages; an object without a
        // protobuf form cannot occur (the kind was checked first).
        let frames = tokio_stream::wrappers::ReceiverStream::new(events).filter_map(|(kind, object)| {
            crate::protobuf::encode::encode_watch_event(kind, &object)
                .map(|frame| Ok::<_, std::convert::Infallible>(Bytes::from(frame)))
        });
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, crate::protobuf::encode::WATCH_CONTENT_TYPE)],
            Body::from_stream(frames),
        )
            .into_response();
    }
    let lines = tokio_stream::wrappers::ReceiverStream::new(events).map(move |(kind, object)| {
        let object = match (&tables, kind) {
            (Some((resource, include)), "ADDED" | "MODIFIED" | "DELETED") => {
                table::from_response(resource, &object, include)
            }
            _ => object,
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{}\n", json!({"type": kind, "object": object}))))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// Entry point for every request on the REST port.
pub async fn handle(
    State(app): State<Arc<App>>,
    peer: Option<Extension<PeerInfo>>,
    insecure: Option<Extension<authn::InsecurePort>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = time::OffsetDateTime::now_utc();
    let started = std::time::Instant::now();
    let source = peer.as_ref().map(|Extension(p)| p.remote_addr.ip());
    let caller = match insecure {
        Some(_) => Caller::Insecure,
        None => Caller::Peer(peer.map(|Extension(p)| p)),
    };
    let mut seen = Seen::default();
    let response = match read_body(body, app.max_body).await {
        Ok(bytes) => match serve(&app, caller, &method, &uri, &headers, bytes, &mut seen).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    };
    if let Some(audit) = &app.audit {
        let verb = if seen.verb.is_empty() {
            method.as_str().to_lowercase()
        } else {
            seen.verb.to_string()
        };
        audit.record(&crate::audit::Record {
            uri: &uri.to_string(),
            verb: &verb,
            user: seen.user.as_ref(),
            impersonated: seen.acting_as.as_ref(),
            info: seen.info.as_ref(),
            source,
            user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
            code: response.status().as_u16(),
            received,
            started,
        });
    }
    response
}

/// Reads a request body of at most `limit` bytes. A larger one is a 413;
/// its rest is still read (up to a bound) so that HTTP/2 clients, which
/// are still sending, receive the answer instead of a reset stream.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes> {
    use http_body_util::BodyExt;
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len();
        if seen <= limit {
            collected.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(4) {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(Bytes::from(collected))
}

/// Where a request came from.
enum Caller {
    /// The TLS port: the client certificate, if any.
    Peer(Option<PeerInfo>),
    /// `--insecure-port` on loopback.
    Insecure,
}

async fn serve(
    app: &App,
    caller: Caller,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    seen: &mut Seen,
) -> Result<Response> {
    let path = uri.path();
    // Health and version answer anyone, as Kubernetes' public-info does.
    if let Some((endpoint, check)) = crate::health::endpoint(path) {
        let (code, text) = crate::health::answer(app, endpoint, check, &Query::parse(uri)).await;
        return Ok((code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    if path == "/version" {
        return Ok(json_response(StatusCode::OK, &discovery::version()));
    }
    // The OIDC discovery documents, so others can verify our tokens.
    if let Some(sa) = &app.authn.service_accounts {
        match path {
            "/.well-known/openid-configuration" => {
                return Ok(json_response(StatusCode::OK, &sa.openid_configuration()))
            }
            "/openid/v1/jwks" => return Ok(json_response(StatusCode::OK, &sa.jwks())),
            _ => {}
        }
    }
    let user = match &caller {
        Caller::Peer(peer) => {
            let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let user = app.authn.authenticate(app, peer.as_ref(), authorization).await?;
            seen.user = Some(user.clone());
            let acting = authn::impersonation::apply(app, user.clone(), headers).await?;
            if acting != user {
                seen.acting_as = Some(acting.clone());
            }
            acting
        }
        Caller::Insecure => authn::insecure_user(),
    };
    if seen.user.is_none() {
        seen.user = Some(user.clone());
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let Some(response) = aggregated_discovery(app, &user, &segments, headers).await? {
        return Ok(response);
    }
    let document = match segments.as_slice() {
        ["api"] => Some(discovery::core_versions()),
        ["apis"] => Some(discovery::groups()),
        ["apis", group] => discovery::group(group),
        ["api", version] => discovery::resource_list("", version),
        ["apis", group, version] => discovery::resource_list(group, version),
        _ => None,
    };
    let is_document = document.is_some() || path.starts_with("/openapi") || path == "/metrics";
    if is_document {
        crate::authz::authorize(app, &crate::authz::Attributes::of_path(&user, "get", path)).await?;
    }
    if let Some(document) = document {
        return Ok(json_response(StatusCode::OK, &document));
    }
    if let Some(document) = openapi_document(path, headers)? {
        return Ok(document);
    }
    if path == "/metrics" {
        let text = common::metrics::encode(&app.metrics.registry);
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, common::metrics::TEXT_CONTENT_TYPE)],
            text,
        )
            .into_response());
    }
    let info = request_info::parse(path)?;
    seen.info = Some(info.clone());
    let query = Query::parse(uri);
    let verb = verb(method, &info, &query)?;
    seen.verb = verb;
    let started = std::time::Instant::now();
    let result = match app.max_in_flight.admit(verb) {
        Ok(_slot) => {
            let _inflight = app.metrics.in_flight(!matches!(verb, "get" | "list" | "watch"));
            let served = serve_resource(app, &user, verb, &info, &query, headers, body);
            let (result, warnings) = crate::warnings::collect(served).await;
            result.map(|mut response| {
                for text in warnings {
                    if let Ok(value) = header::HeaderValue::from_str(&crate::warnings::header_value(&text)) {
                        response.headers_mut().append(header::WARNING, value);
                    }
                }
                response
            })
        }
        Err(e) => Err(e),
    };
    let code = match &result {
        Ok(response) => response.status().as_u16(),
        Err(e) => e.code,
    };
    let applying = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/apply-patch"));
    let metric_verb = if verb == "patch" && applying { "apply" } else { verb };
    app.metrics.record(metric_verb, &info, code, started);
    result
}

/// `/api` or `/apis` in the aggregated form, when the client asks for it.
async fn aggregated_discovery(
    app: &App,
    user: &authn::User,
    segments: &[&str],
    headers: &HeaderMap,
) -> Result<Option<Response>> {
    let core = match segments {
        ["api"] => true,
        ["apis"] => false,
        _ => return Ok(None),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(format) = discovery::aggregated_format(accept) else {
        return Ok(None);
    };
    let path = if core { "/api" } else { "/apis" };
    crate::authz::authorize(app, &crate::authz::Attributes::of_path(user, "get", path)).await?;
    let document = discovery::aggregated(core, format);
    Ok(Some(
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, discovery::aggregated_content_type(format)),
                (header::VARY, "Accept".to_string()),
            ],
            document.to_string(),
        )
            .into_response(),
    ))
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
    let selector = query.get("fieldSelector").filter(|s| !s.is_empty());
    crate::authz::authorize(app, &crate::authz::Attributes::of_request(user, verb, info, selector)).await?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let tables = table::wanted(accept).then(|| {
        let include = query.get("includeObject").unwrap_or("Metadata").to_string();
        (info.resource, include)
    });
    // Subresources discovery names (as upstream serves them) that need
    // streaming to a kubelet or in-place pod changes not built yet: a clear
    // refusal rather than the parent object or a misleading 422.
    if let Some(sub) = info.subresource.as_deref() {
        let unserved = matches!(
            (info.resource.plural, sub),
            (
                "pods",
                "exec" | "attach" | "portforward" | "proxy" | "ephemeralcontainers" | "resize"
            ) | ("nodes" | "services", "proxy")
        );
        if unserved {
            return Err(ApiError::method_not_allowed(format!(
                "{}/{sub} is not served by this API server yet",
                info.resource.plural
            )));
        }
    }
    // Logs are text, whatever was asked for.
    if verb == "get" && info.resource.plural == "pods" && info.subresource.as_deref() == Some("log") {
        return crate::pod_logs::proxy(app, info, query).await;
    }
    // Protobuf only for kinds that have a message (not custom resources).
    // CRDs stay JSON too: their schemas' JSON shapes (`x-kubernetes-*`,
    // `$ref`, schema-or-bool unions) are not mapped onto protobuf here.
    let r = info.resource;
    let built_in = api::resources::find(r.group, r.version, r.plural).is_some();
    let has_message = built_in
        && r.group != "apiextensions.k8s.io"
        && crate::protobuf::message_for(&r.api_version(), r.kind).is_some();
    let encoding = match Encoding::negotiate(accept) {
        None => {
            return Err(ApiError {
                code: 406,
                reason: "NotAcceptable",
                message: "only the following media types are accepted: application/json, application/yaml, \
                          application/vnd.kubernetes.protobuf"
                    .into(),
                details: None,
            })
        }
        Some(Encoding::Protobuf) if tables.is_none() && has_message => Encoding::Protobuf,
        // Watch streams and Tables are JSON.
        Some(Encoding::Yaml) if tables.is_none() && verb != "watch" => Encoding::Yaml,
        Some(_) => Encoding::Json,
    };
    let ok = |value: Value| Ok(encoding.answer(StatusCode::OK, &value));
    let readable = |value: Value| match &tables {
        Some((resource, include)) => table::from_response(resource, &value, include),
        None => value,
    };
    match verb {
        "get" => {
            verbs::check_get_version(app, info, query).await?;
            ok(readable(verbs::get(app, info).await?))
        }
        "list" if encoding == Encoding::Json && tables.is_none() => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            verbs::list_json(app, info, query).await?,
        )
            .into_response()),
        "list" => ok(readable(verbs::list(app, info, query).await?)),
        "watch" => Ok(watch_response(verbs::watch(app, info, query).await?, tables, encoding)),
        "create" => {
            let mut body = decode(headers, &body)?;
            if crate::reviews::is_review(info) {
                let mode = write_options(query, headers, user)?.field_validation;
                body = crate::field_validation::decode(info, body, mode)?;
            }
            if let Some(answer) = crate::reviews::create(app, user, info, &body).await {
                return Ok(encoding.answer(StatusCode::CREATED, &answer?));
            }
            let opts = write_options(query, headers, user)?;
            Ok(encoding.answer(StatusCode::CREATED, &verbs::create(app, info, body, &opts).await?))
        }
        "update" => {
            let opts = write_options(query, headers, user)?;
            ok(verbs::update(app, info, decode(headers, &body)?, &opts).await?)
        }
        "patch" => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let opts = write_options(query, headers, user)?;
            if content_type.starts_with("application/apply-patch+yaml") {
                let applied = crate::server_side_apply::apply(app, info, &body, &opts, query.flag("force")).await?;
                return ok(applied);
            }
            ok(verbs::patch(app, info, content_type, &body, &opts).await?)
        }
        "delete" | "deletecollection" => {
            let options = if body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(decode(headers, &body)?)
            };
            // DeleteOptions' own dryRun is honoured by `deletion::delete`.
            let dry_run = verbs::parse_dry_run(&query.all("dryRun"))?;
            if verb == "delete" {
                ok(crate::deletion::delete(app, info, options.as_ref(), dry_run).await?)
            } else {
                ok(verbs::delete_collection(app, info, query, options.as_ref(), dry_run).await?)
            }
        }
        other => Err(ApiError::method_not_allowed(format!("{other} is not supported here"))),
    }
}

/// `/openapi/v2`, `/openapi/v3` and `/openapi/v3/<group-version>`.
fn openapi_document(path: &str, headers: &HeaderMap) -> Result<Option<Response>> {
    let json_text = |text: String| (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], text).into_response();
    Ok(Some(match path {
        "/openapi/v2" => {
            // client-go asks for gnostic's protobuf form; others get JSON.
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("*/*");
            let first = accept.split(',').next().unwrap_or_default().trim();
            if first.starts_with(crate::openapi_protobuf::CONTENT_TYPE) {
                return Ok(Some(
                    (
                        StatusCode::OK,
                        // As kube-openapi answers: the requested type is
                        // not a valid media type to Go's mime parser.
                        [(header::CONTENT_TYPE, "application/octet-stream")],
                        crate::openapi_protobuf::document(),
                    )
                        .into_response(),
                ));
            }
            if !(accept.contains("json") || accept.contains("*/*")) {
                return Err(ApiError {
                    code: 406,
                    reason: "NotAcceptable",
                    message: format!(
                        "application/json or {} only, not {accept}",
                        crate::openapi_protobuf::CONTENT_TYPE
                    ),
                    details: None,
                });
            }
            json_text(crate::openapi::v2().to_string())
        }
        "/openapi/v3" | "/openapi/v3/" => json_response(StatusCode::OK, &crate::openapi::v3_index()),
        _ => match path.strip_prefix("/openapi/v3/") {
            Some(key) => match crate::openapi::v3(key) {
                Some(text) => json_text(text),
                None => return Err(ApiError::not_found("openapi", "", key)),
            },
            None => return Ok(None),
        },
    }))
}

/// The Kubernetes verb of a request, as RBAC names it.
fn verb(method: &Method, info: &RequestInfo, query: &Query) -> Result<&'static str> {
    let named = info.name.is_some();
    Ok(match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if query.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        // pods/binding and pods/eviction are created on a named object.
        ("POST", true) if info.subresource.is_some() => "create",
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

fn write_options(query: &Query, headers: &HeaderMap, user: &authn::User) -> Result<WriteOptions> {
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let mut opts = WriteOptions::from_query(query, agent)?;
    opts.user = Some(user.clone());
    Ok(opts)
}

/// Kubernetes' protobuf media type.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Parses a JSON, YAML or protobuf body.
fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let value: Value = if content_type.starts_with(PROTOBUF) {
        crate::protobuf::decode_body(body).map_err(|e| ApiError::bad_request(e.to_string()))?
    } else if content_type.starts_with("application/json") || content_type.starts_with("*/*") {
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
