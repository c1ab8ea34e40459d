//! The route table. Every route is one line here, and its handler's doc
//! comment is the route (`/// POST /v1/...`). The table also answers 404
//! (no route has this path) and 405 with `Allow` (a route has the path, not
//! the method), and names the route for metrics and traces.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Method};
use serde::Serialize;

use super::errors::ApiError;
use crate::http::state::App;

/// Who may call a route; checked before routing (API.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/v1`: HMAC-signed by a merchant's API key.
    Merchant,
    /// `/admin/v1`, `/debug/v1`: the admin bearer token.
    Operator,
    /// `/polyflow/v1`: the Polyflow bearer token.
    Polyflow,
    /// `/callbacks/...`: the upstream's own signature, checked by the handler.
    Callback,
    /// No credentials.
    Public,
}

impl Surface {
    pub fn of_path(path: &str) -> Surface {
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        if path == "/v1/receipts/public-key" {
            Surface::Public
        } else if under("/v1") {
            Surface::Merchant
        } else if under("/admin/v1") || under("/debug/v1") {
            Surface::Operator
        } else if under("/polyflow/v1") {
            Surface::Polyflow
        } else if under("/callbacks") {
            Surface::Callback
        } else {
            Surface::Public
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Merchant { merchant_id: pelago_storage::MerchantId, key_id: String },
    Operator,
    Polyflow,
    Anonymous,
}

/// Everything a handler gets.
pub struct Ctx {
    pub request_id: String,
    /// The Idempotency-Key of a mutating request, if sent.
    pub idempotency_key: Option<String>,
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Path parameters, in pattern order.
    pub params: Vec<String>,
    pub caller: Caller,
    pub route: &'static str,
    /// Where the handler may commit its answer with its effect (a request
    /// with an Idempotency-Key; see `idempotency::AnswerSlot`).
    pub answer: Option<super::idempotency::AnswerSlot>,
}

impl Ctx {
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Parses the JSON body into `T`, naming the offending field on failure.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        super::json::parse_body(&self.body)
    }

    /// `idem/{scope}/{key}` of the request's Idempotency-Key, if it sent one:
    /// the binding a creation commits with its effect.
    pub fn binding(&self) -> Option<String> {
        self.idempotency_key.as_deref().and_then(|k| super::idempotency::binding_key(&self.caller, k))
    }

    pub fn merchant_id(&self) -> Result<&pelago_storage::MerchantId, ApiError> {
        match &self.caller {
            Caller::Merchant { merchant_id, .. } => Ok(merchant_id),
            _ => Err(ApiError::unauthenticated("merchant credentials required")),
        }
    }
}

/// A response before it becomes a warp reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    /// A body streamed from this file instead of `body` (`file_body.rs`).
    pub file: Option<std::path::PathBuf>,
}

impl ApiReply {
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> ApiReply {
        let body = serde_json::to_vec(value).expect("wire types serialize");
        ApiReply { status, body, content_type: "application/json", headers: Vec::new(), file: None }
    }

    /// A creation's answer: 201, or 202 while its upstream outcome is unknown.
    pub fn created<T: Serialize + ?Sized>(unknown: bool, value: &T) -> ApiReply {
        ApiReply::json(if unknown { 202 } else { 201 }, value)
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> ApiReply {
        ApiReply { status, body: body.into_bytes(), content_type, headers: Vec::new(), file: None }
    }

    /// The contents of `path`, read and sent a chunk at a time.
    pub fn file(status: u16, content_type: &'static str, path: std::path::PathBuf) -> ApiReply {
        ApiReply { status, body: Vec::new(), content_type, headers: Vec::new(), file: Some(path) }
    }

    pub fn no_content() -> ApiReply {
        ApiReply {
            status: 204,
            body: Vec::new(),
            content_type: "application/json",
            headers: Vec::new(),
            file: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiReply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

pub type HandlerResult = Result<ApiReply, ApiError>;
/// A route's handler: an `async fn(Arc<App>, Ctx) -> HandlerResult`, boxed by [`Route::new`].
pub type Handler = Box<dyn Fn(Arc<App>, Ctx) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// Registers a request-body schema (and what it refers to) for `/openapi.json`.
pub type SchemaFn = fn(&mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) -> String;

pub struct Route {
    pub method: Method,
    /// `/v1/cards/{id}/freeze`: `{...}` matches one non-empty segment.
    pub pattern: &'static str,
    pub handler: Handler,
    /// The status of a successful answer (for the OpenAPI document).
    pub success: u16,
    /// Other success statuses it may answer (202: the upstream's outcome is unknown yet).
    pub also: &'static [u16],
    /// The request body's type, when it has one.
    pub body: Option<SchemaFn>,
    /// The largest body this route reads (API.md §1: 64 KiB; files their own).
    pub max_body_bytes: usize,
    /// The raw (non-JSON) media types the body may have, for a file upload.
    pub raw_body: &'static [&'static str],
    /// The media types of a successful answer other than JSON (a file).
    pub produces: &'static [&'static str],
}

impl Route {
    pub fn new<F, Fut>(method: Method, pattern: &'static str, handler: F) -> Route
    where
        F: Fn(Arc<App>, Ctx) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = HandlerResult> + Send + 'static,
    {
        Route {
            method,
            pattern,
            handler: Box::new(move |app, ctx| Box::pin(handler(app, ctx))),
            success: 200,
            also: &[],
            body: None,
            max_body_bytes: super::MAX_BODY_BYTES,
            raw_body: &[],
            produces: &[],
        }
    }

    /// The body is a raw file of one of `media_types`, up to `max_body_bytes`
    /// (above the 64 KiB every other route keeps).
    pub fn takes_raw(mut self, media_types: &'static [&'static str], max_body_bytes: usize) -> Route {
        self.raw_body = media_types;
        self.max_body_bytes = max_body_bytes;
        self
    }

    /// A successful answer is a file of one of `media_types`, not JSON.
    pub fn produces(mut self, media_types: &'static [&'static str]) -> Route {
        self.produces = media_types;
        self
    }

    /// The status of a successful answer (default 200).
    pub fn answers(mut self, status: u16) -> Route {
        self.success = status;
        self
    }

    /// It may also answer `statuses` on success (listed in the OpenAPI document).
    pub fn also_answers(mut self, statuses: &'static [u16]) -> Route {
        self.also = statuses;
        self
    }

    /// A creation whose body is a `T`: 201, or 202 while its upstream outcome
    /// is unknown (the handler answers with `ApiReply::created`).
    pub fn creates<T: utoipa::ToSchema>(self) -> Route {
        self.answers(201).also_answers(&[202]).accepts::<T>()
    }

    /// The request body is a `T`.
    pub fn accepts<T: utoipa::ToSchema>(mut self) -> Route {
        self.body = Some(schema_of::<T>);
        self
    }
}

fn schema_of<T: utoipa::ToSchema>(
    out: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
) -> String {
    T::schemas(out);
    let name = T::name().into_owned();
    out.push((name.clone(), T::schema()));
    name
}

pub enum Match<'a> {
    Found(&'a Route, Vec<String>),
    /// The path exists with other methods (the `Allow` header value).
    WrongMethod(String),
    NotFound,
}

pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The largest body a request to `method path` may send: its route's
    /// bound, or 64 KiB when no route matches (the answer is then 401/404/405).
    pub fn body_limit(&self, method: &Method, path: &str) -> usize {
        match self.find(method, path) {
            Match::Found(route, _) => route.max_body_bytes,
            _ => super::MAX_BODY_BYTES,
        }
    }

    pub fn find(&self, method: &Method, path: &str) -> Match<'_> {
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            if let Some(params) = match_pattern(route.pattern, path) {
                if route.method == *method {
                    return Match::Found(route, params);
                }
                allowed.push(route.method.as_str());
            }
        }
        if allowed.is_empty() {
            return Match::NotFound;
        }
        if allowed.contains(&"GET") && !allowed.contains(&"HEAD") {
            allowed.push("HEAD");
        }
        allowed.dedup();
        Match::WrongMethod(allowed.join(", "))
    }
}

fn match_pattern(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pat = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(g)) if p.starts_with('{') => {
                if g.is_empty() {
                    return None;
                }
                params.push(g.to_owned());
            }
            (Some(p), Some(g)) if p == g => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dummy(_: Arc<App>, _: Ctx) -> BoxFuture<'static, HandlerResult> {
        Box::pin(async { Ok(ApiReply::no_content()) })
    }

    #[test]
    fn finds_routes_and_reports_allowed_methods() {
        let router = Router::new(vec![
            Route::new(Method::GET, "/v1/cards/{id}", dummy),
            Route::new(Method::DELETE, "/v1/cards/{id}", dummy),
            Route::new(Method::POST, "/v1/cards/{id}/freeze", dummy),
        ]);
        match router.find(&Method::GET, "/v1/cards/card_1") {
            Match::Found(r, params) => {
                assert_eq!(r.pattern, "/v1/cards/{id}");
                assert_eq!(params, vec!["card_1"]);
            }
            _ => panic!("GET matches"),
        }
        match router.find(&Method::PUT, "/v1/cards/card_1") {
            Match::WrongMethod(allow) => assert_eq!(allow, "GET, DELETE, HEAD"),
            _ => panic!("PUT is 405"),
        }
        assert!(matches!(router.find(&Method::GET, "/v1/cards/"), Match::NotFound));
        assert!(matches!(router.find(&Method::GET, "/v1/cards/a/b"), Match::NotFound));
        assert!(matches!(router.find(&Method::GET, "/v1/cardz/a"), Match::NotFound));
    }

    #[test]
    fn surfaces_by_prefix() {
        assert_eq!(Surface::of_path("/v1/cards"), Surface::Merchant);
        assert_eq!(Surface::of_path("/v1"), Surface::Merchant);
        assert_eq!(Surface::of_path("/v1/receipts/public-key"), Surface::Public);
        assert_eq!(Surface::of_path("/v1x"), Surface::Public);
        assert_eq!(Surface::of_path("/admin/v1/merchants"), Surface::Operator);
        assert_eq!(Surface::of_path("/debug/v1/actors"), Surface::Operator);
        assert_eq!(Surface::of_path("/polyflow/v1/receipts/verify"), Surface::Polyflow);
        assert_eq!(Surface::of_path("/callbacks/gateway"), Surface::Callback);
        assert_eq!(Surface::of_path("/healthz"), Surface::Public);
    }
}
