//! The internal gRPC API (`api::proto`): the same verbs as REST, for the
//! components.
//!
//! A call names its object with a `ResourceRef` instead of a path, carries
//! Kubernetes JSON, and passes through the same steps as a REST request:
//! the client certificate authenticates it, the same authorization
//! decides, and [`verbs`] does the work. Errors are gRPC
//! statuses whose details hold the `metav1.Status` JSON.

use std::pin::Pin;
use std::sync::Arc;

use api::proto::resources_server::Resources;
use api::proto::*;
use common::grpc::PeerInfo;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};

use crate::authn;
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;
use crate::verbs::{self, Query};

pub struct ResourcesService {
    pub app: Arc<App>,
}

/// The gRPC status for an API error, with the Status JSON in its details.
fn to_status(e: ApiError) -> Status {
    let code = match (e.code, e.reason) {
        (400, _) | (413, _) | (415, _) | (422, _) => Code::InvalidArgument,
        (401, _) => Code::Unauthenticated,
        (403, _) => Code::PermissionDenied,
        (404, _) => Code::NotFound,
        (405, _) => Code::Unimplemented,
        (409, "AlreadyExists") => Code::AlreadyExists,
        (409, _) => Code::Aborted,
        (410, _) => Code::OutOfRange,
        (429, _) => Code::ResourceExhausted,
        (503, _) => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::with_details(code, e.message.clone(), e.status().to_string().into_bytes().into())
}

impl ResourcesService {
    /// Authenticates the caller, resolves the object reference and
    /// authorizes the verb, as REST does.
    async fn prepare<T: Sync>(
        &self,
        request: &Request<T>,
        reference: Option<&ResourceRef>,
        verb: &str,
        field_selector: Option<&str>,
    ) -> Result<(RequestInfo, authn::User), Status> {
        let app = &self.app;
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let user = app
            .authn
            .authenticate(app, request.extensions().get::<PeerInfo>(), authorization)
            .await
            .map_err(to_status)?;
        let r = reference.ok_or_else(|| to_status(ApiError::bad_request("the request names no resource (ref)")))?;
        let not_found = || {
            to_status(ApiError {
                code: 404,
                reason: "NotFound",
                message: format!(
                    "the server could not find the requested resource {}/{}/{}",
                    r.group, r.version, r.resource
                ),
                details: None,
            })
        };
        let resource = crate::crd::resource(&r.group, &r.version, &r.resource).ok_or_else(not_found)?;
        if !r.subresource.is_empty() && resource.subresource(&r.subresource).is_none() {
            return Err(not_found());
        }
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        // The same shape rules as a REST path: no segment separators inside
        // names, and a named namespaced object needs its namespace.
        let bad_segment = |s: &str| s.contains('/') || s == "." || s == "..";
        if bad_segment(&r.name) || bad_segment(&r.namespace) || bad_segment(&r.subresource) {
            return Err(to_status(ApiError::bad_request(
                "names and namespaces may not contain '/' or be '.' or '..'",
            )));
        }
        if resource.namespaced && !r.name.is_empty() && r.namespace.is_empty() {
            return Err(to_status(ApiError::bad_request(format!(
                "a {} is namespaced: the reference needs a namespace",
                resource.kind
            ))));
        }
        let info = RequestInfo {
            resource,
            namespace: some(&r.namespace).filter(|_| resource.namespaced),
            name: some(&r.name),
            subresource: some(&r.subresource),
        };
        let selector = field_selector.filter(|s| !s.is_empty());
        crate::authz::authorize(app, &crate::authz::Attributes::of_request(&user, verb, &info, selector))
            .await
            .map_err(to_status)?;
        Ok((info, user))
    }
}

fn object(value: serde_json::Value) -> Response<Object> {
    Response::new(Object {
        json: value.to_string().into_bytes(),
    })
}

/// The request body limit, as REST enforces it (413).
fn within(app: &App, bytes: &[u8]) -> Result<(), Status> {
    if bytes.len() > app.max_body {
        return Err(to_status(ApiError::too_large(app.max_body)));
    }
    Ok(())
}

fn parse(app: &App, bytes: &[u8]) -> Result<serde_json::Value, Status> {
    within(app, bytes)?;
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| to_status(ApiError::bad_request(format!("error decoding JSON object: {e}"))))?;
    if !value.is_object() {
        return Err(to_status(ApiError::bad_request("the object must be a JSON object")));
    }
    Ok(value)
}

/// Runs a verb, counting it in the request metrics as REST calls are
/// and writing it to the audit log.
async fn counted<T>(
    app: &App,
    user: &authn::User,
    verb: &str,
    info: &RequestInfo,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, Status> {
    let received = time::OffsetDateTime::now_utc();
    let started = std::time::Instant::now();
    let result = match app.max_in_flight.admit(verb) {
        Ok(_slot) => {
            let _inflight = app.metrics.in_flight(!matches!(verb, "get" | "list" | "watch"));
            work.await
        }
        Err(e) => Err(e),
    };
    let code = match &result {
        Ok(_) if verb == "create" => 201,
        Ok(_) => 200,
        Err(e) => e.code,
    };
    app.metrics.record(verb, info, code, started);
    if let Some(audit) = &app.audit {
        let uri = format!(
            "grpc:{}/{}/{}/{}/{}",
            info.resource.group,
            info.resource.plural,
            info.namespace.as_deref().unwrap_or_default(),
            info.name.as_deref().unwrap_or_default(),
            info.subresource.as_deref().unwrap_or_default()
        );
        audit.record(&crate::audit::Record {
            uri: &uri,
            verb,
            user: Some(user),
            impersonated: None,
            info: Some(info),
            source: None,
            user_agent: Some("kubernate-grpc"),
            code,
            received,
            started,
        });
    }
    result.map_err(to_status)
}

/// A count as a query value; zero (the proto default) means "not given".
fn positive(n: i64) -> String {
    if n > 0 {
        n.to_string()
    } else {
        String::new()
    }
}

/// The REST query's write options, from the gRPC message.
fn write_options(options: Option<&api::proto::WriteOptions>) -> Result<verbs::WriteOptions, Status> {
    let mode = options.map(|o| o.field_validation.as_str()).filter(|m| !m.is_empty());
    let dry_run: Vec<&str> = options
        .into_iter()
        .flat_map(|o| o.dry_run.iter().map(String::as_str))
        .collect();
    Ok(verbs::WriteOptions {
        field_validation: crate::field_validation::FieldValidation::parse(mode).map_err(to_status)?,
        dry_run: verbs::parse_dry_run(&dry_run).map_err(to_status)?,
        field_manager: options.map(|o| o.field_manager.clone()).filter(|m| !m.is_empty()),
        apply: false,
        user: None,
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Resources for ResourcesService {
    type WatchStream = WatchStream;

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<Object>, Status> {
        let (info, user) = self
            .prepare(&request, request.get_ref().r#ref.as_ref(), "get", None)
            .await?;
        Ok(object(
            counted(&self.app, &user, "get", &info, verbs::get(&self.app, &info)).await?,
        ))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<Object>, Status> {
        let r = request.get_ref();
        let (info, user) = self
            .prepare(&request, r.r#ref.as_ref(), "list", Some(&r.field_selector))
            .await?;
        let limit = positive(r.limit);
        let query = Query::from_pairs(&[
            ("labelSelector", &r.label_selector),
            ("fieldSelector", &r.field_selector),
            ("resourceVersion", &r.resource_version),
            ("resourceVersionMatch", &r.resource_version_match),
            ("limit", &limit),
            ("continue", &r.continue_token),
        ]);
        Ok(object(
            counted(&self.app, &user, "list", &info, verbs::list(&self.app, &info, &query)).await?,
        ))
    }

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let r = request.get_ref();
        let (info, user) = self
            .prepare(&request, r.r#ref.as_ref(), "watch", Some(&r.field_selector))
            .await?;
        let timeout = positive(r.timeout_seconds);
        let bookmarks = if r.allow_watch_bookmarks { "true" } else { "" };
        let query = Query::from_pairs(&[
            ("allowWatchBookmarks", bookmarks),
            ("labelSelector", &r.label_selector),
            ("fieldSelector", &r.field_selector),
            ("resourceVersion", &r.resource_version),
            ("timeoutSeconds", &timeout),
        ]);
        let events = counted(&self.app, &user, "watch", &info, verbs::watch(&self.app, &info, &query)).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(|(kind, object)| {
            Ok(WatchEvent {
                r#type: kind.to_string(),
                object: object.to_string().into_bytes(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create(&self, request: Request<CreateRequest>) -> Result<Response<Object>, Status> {
        let (info, user) = self
            .prepare(&request, request.get_ref().r#ref.as_ref(), "create", None)
            .await?;
        let body = parse(&self.app, &request.get_ref().object)?;
        if let Some(answer) = crate::reviews::create(&self.app, &user, &info, &body).await {
            return Ok(object(answer.map_err(to_status)?));
        }
        let mut opts = write_options(request.get_ref().options.as_ref())?;
        opts.user = Some(user.clone());
        Ok(object(
            counted(
                &self.app,
                &user,
                "create",
                &info,
                verbs::create(&self.app, &info, body, &opts),
            )
            .await?,
        ))
    }

    async fn update(&self, request: Request<UpdateRequest>) -> Result<Response<Object>, Status> {
        let (info, user) = self
            .prepare(&request, request.get_ref().r#ref.as_ref(), "update", None)
            .await?;
        let body = parse(&self.app, &request.get_ref().object)?;
        let mut opts = write_options(request.get_ref().options.as_ref())?;
        opts.user = Some(user.clone());
        Ok(object(
            counted(
                &self.app,
                &user,
                "update",
                &info,
                verbs::update(&self.app, &info, body, &opts),
            )
            .await?,
        ))
    }

    async fn patch(&self, request: Request<PatchRequest>) -> Result<Response<Object>, Status> {
        let (info, user) = self
            .prepare(&request, request.get_ref().r#ref.as_ref(), "patch", None)
            .await?;
        let r = request.get_ref();
        within(&self.app, &r.patch)?;
        let mut opts = write_options(r.options.as_ref())?;
        opts.user = Some(user.clone());
        let patched = if r.patch_type.starts_with("application/apply-patch+yaml") {
            let work = crate::server_side_apply::apply(&self.app, &info, &r.patch, &opts, r.force);
            counted(&self.app, &user, "patch", &info, work).await?
        } else {
            let work = verbs::patch(&self.app, &info, &r.patch_type, &r.patch, &opts);
            counted(&self.app, &user, "patch", &info, work).await?
        };
        Ok(object(patched))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<Object>, Status> {
        let (info, user) = self
            .prepare(&request, request.get_ref().r#ref.as_ref(), "delete", None)
            .await?;
        let raw = &request.get_ref().options;
        let options = if raw.is_empty() {
            None
        } else {
            Some(parse(&self.app, raw)?)
        };
        let work = verbs::delete(&self.app, &info, options.as_ref());
        Ok(object(counted(&self.app, &user, "delete", &info, work).await?))
    }
}
