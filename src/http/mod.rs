//! The front door: one warp filter takes every request, reads its body with a
//! 64 KiB bound, authenticates it by surface *before* routing (API.md §1),
//! routes it through the table in [`router`], and turns the handler's answer
//! or error into the response. Every response carries `X-Request-Id`; every
//! request gets a tracing span with route, status and latency.
//!
//! One file per resource; each handler's doc comment is its route.

pub mod agreements;
pub mod auth;
pub mod balance;
pub mod callbacks;
pub mod cardholders;
pub mod cards;
pub mod channels;
pub mod debug;
pub mod deliveries;
pub mod errors;
pub mod events;
pub mod file_body;
pub mod files;
pub mod idempotency;
pub mod json;
pub mod listener;
pub mod merchant_auth;
pub mod merchants;
pub mod money_admin;
pub mod onboardings;
pub mod openapi;
pub mod orders;
pub mod pagination;
pub mod payments;
pub mod ratelimit;
pub mod receipts;
pub mod recipient_withdrawals;
pub mod recipients;
pub mod reconciliation;
pub mod refunds;
pub mod retention;
pub mod router;
pub mod service;
pub mod split_batches;
pub mod state;
pub mod test_helpers;
pub mod webhooks;
pub mod wire;

use std::{sync::Arc, time::Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tracing::Instrument;
use warp::Filter;

use crate::http::state::App;
use errors::ApiError;
use router::{ApiReply, Caller, Ctx, Match, Route, Surface};

/// Request bodies over this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route of the service.
pub fn routes() -> Vec<Route> {
    let mut all = Vec::new();
    all.extend(service::routes());
    all.extend(debug::routes());
    all.extend(merchants::routes());
    all.extend(channels::routes());
    all.extend(cardholders::routes());
    all.extend(callbacks::routes());
    all.extend(test_helpers::routes());
    all.extend(balance::routes());
    all.extend(cards::routes());
    all.extend(orders::routes());
    all.extend(money_admin::routes());
    all.extend(events::routes());
    all.extend(deliveries::routes());
    all.extend(receipts::routes());
    all.extend(files::routes());
    all.extend(recipients::routes());
    all.extend(onboardings::routes());
    all.extend(agreements::routes());
    all.extend(payments::routes());
    all.extend(split_batches::routes());
    all.extend(refunds::routes());
    all.extend(reconciliation::routes());
    all.extend(recipient_withdrawals::routes());
    all
}

/// The whole service as one warp filter.
pub fn filter(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static
{
    warp::any()
        .map(move || Arc::clone(&app))
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<listener::PeerAddr>())
        .and(warp::body::stream())
        .then(
            |app,
             method,
             path: warp::path::FullPath,
             query,
             headers,
             peer: Option<listener::PeerAddr>,
             body| {
                let peer = peer.map(|p| ratelimit::IpKey::of(p.0.ip()));
                handle(app, method, path.as_str().to_owned(), query, headers, peer, body)
            },
        )
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", pelago_storage::ids::new_ulid()))
}

async fn handle<S, B>(
    app: Arc<App>,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    peer: Option<ratelimit::IpKey>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: Buf,
{
    let started = Instant::now();
    let request_id = request_id(&headers);
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
        request_id = %request_id,
    );
    let is_head = method == Method::HEAD;
    let (route, mut reply) = dispatch(&app, method.clone(), path, query, headers, peer, body, &request_id)
        .instrument(span.clone())
        .await;
    let secs = started.elapsed().as_secs_f64();
    span.record("route", route);
    span.record("status", reply.status);
    span.record("latency_ms", (secs * 1000.0 * 1000.0).round() / 1000.0);
    span.in_scope(|| tracing::info!("request handled"));
    app.metrics.observe_request(method_label(&method), route, reply.status, secs);
    if is_head {
        zeroize::Zeroize::zeroize(&mut reply.body);
    }
    to_response(reply, &request_id)
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// At most this many bodies above [`MAX_BODY_BYTES`] (file uploads) are read
/// at once, so uploads hold at most 8 × 5 MiB of memory; more answer 503.
static LARGE_BODIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// Reads the body, refusing more than `limit` bytes (declared or read) or a
/// body that has not arrived in full within `deadline` (a slow sender holds
/// no connection for longer; the answer closes the connection).
async fn read_body<S, B>(
    headers: &HeaderMap,
    body: S,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    match tokio::time::timeout(deadline, read_body_unbounded(headers, body, limit)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::body_too_slow(deadline.as_millis())),
    }
}

async fn read_body_unbounded<S, B>(headers: &HeaderMap, mut body: S, limit: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large_for(limit));
    }
    let _permit = if limit > MAX_BODY_BYTES {
        Some(LARGE_BODIES.try_acquire().map_err(|_| {
            ApiError::unavailable(
                "too many file uploads are in progress; retry with the same Idempotency-Key",
            )
        })?)
    } else {
        None
    };
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if buf.len() + chunk.remaining() > limit {
            return Err(ApiError::too_large_for(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

async fn dispatch<S, B>(
    app: &Arc<App>,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    peer: Option<ratelimit::IpKey>,
    body: S,
    request_id: &str,
) -> (&'static str, ApiReply)
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let surface = Surface::of_path(&path);
    if let Err(e) = address_limit(app, surface, peer.as_ref()) {
        return ("(rate limit)", e.into_reply(request_id));
    }
    let lookup = if method == Method::HEAD { Method::GET } else { method.clone() };
    // The bound is the route's (files: 5 MiB), checked before authentication.
    let limit = app.router.body_limit(&lookup, &path);
    let deadline = std::time::Duration::from_millis(app.config.body_read_timeout_ms);
    let body = match read_body(&headers, body, limit, deadline).await {
        Ok(b) => b,
        Err(e) => return ("(body)", e.into_reply(request_id)),
    };
    let presented = merchant_auth::Presented {
        method: &method,
        path: &path,
        query: &query,
        headers: &headers,
        body: &body,
    };
    let caller = auth::authenticate(app, surface, presented).await;
    let caller = match caller.inspect_err(|_| charge_refused(app, surface, peer.as_ref())) {
        Ok(caller) => caller,
        Err(e) => return ("(auth)", e.into_reply(request_id)),
    };
    let (route, params) = match find_route(app, surface, &lookup, &path, &caller) {
        Ok(found) => found,
        Err((label, e)) => return (label, e.into_reply(request_id)),
    };
    let mutating = matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
        && matches!(surface, Surface::Merchant | Surface::Operator)
        && !path.starts_with("/debug/");
    let (guard, idempotency_key) = if mutating {
        match idempotency_guard(app, &caller, &method, &path, &query, &headers, &body, route.pattern) {
            Ok((idempotency::Before::Replay(reply), _)) => return (route.pattern, reply),
            Ok((idempotency::Before::Run(guard), key)) => (Some(guard), key),
            Ok((idempotency::Before::Untracked, key)) => (None, key),
            Err(e) => return (route.pattern, e.into_reply(request_id)),
        }
    } else {
        (None, None)
    };
    let ctx = Ctx {
        idempotency_key,
        request_id: request_id.to_owned(),
        method,
        path,
        query,
        headers,
        body,
        params,
        caller,
        route: route.pattern,
        answer: guard.as_ref().map(idempotency::Guard::slot),
    };
    let reply = match (route.handler)(Arc::clone(app), ctx).await {
        Ok(reply) => reply,
        Err(e) => e.into_reply(request_id),
    };
    (route.pattern, settle(app, guard, reply, request_id).await)
}

/// The reply as it may leave: its answer stored with its Idempotency-Key, and
/// nothing in it that a crash could take back (a read may have seen commits
/// applied but not yet flushed; this request's own write was waited for).
async fn settle(app: &App, guard: Option<idempotency::Guard>, reply: ApiReply, request_id: &str) -> ApiReply {
    if let Some(guard) = guard
        && let Err(e) = idempotency::after(guard, &reply).await
    {
        // The effect happened but its answer could not be stored: say so, retry is safe.
        return e.into_reply(request_id);
    }
    match app.store.settled().await {
        Ok(()) => reply,
        Err(e) => ApiError::from(e).into_reply(request_id),
    }
}

/// A merchant request that failed authentication is charged to its address
/// (only those: the others were charged before their body was read).
fn charge_refused(app: &App, surface: Surface, peer: Option<&ratelimit::IpKey>) {
    if matches!(surface, Surface::Merchant)
        && let Some(ip) = peer
    {
        let _ = app.ip_rate_limiter.check(ip);
    }
}

/// The route (404, or 405 with `Allow`), then the merchant's rate limit.
fn find_route<'a>(
    app: &'a App,
    surface: Surface,
    lookup: &Method,
    path: &str,
    caller: &Caller,
) -> Result<(&'a Route, Vec<String>), (&'static str, ApiError)> {
    let (route, params) = match app.router.find(lookup, path) {
        Match::Found(route, params) => (route, params),
        Match::WrongMethod(allow) => return Err(("(method)", ApiError::method_not_allowed(allow))),
        Match::NotFound => return Err(("(unknown)", ApiError::not_found("route"))),
    };
    if matches!(surface, Surface::Merchant)
        && let Caller::Merchant { merchant_id, .. } = caller
        && let Err(retry_after) = app.rate_limiter.check(merchant_id)
    {
        return Err((route.pattern, ApiError::rate_limited(retry_after)));
    }
    Ok((route, params))
}

/// A mutating request's Idempotency-Key (printable ASCII) and what it says:
/// run (the guard stores the answer), replay a stored answer, or untracked.
fn idempotency_guard(
    app: &Arc<App>,
    caller: &Caller,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
    route: &'static str,
) -> Result<(idempotency::Before, Option<String>), ApiError> {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if headers.contains_key("idempotency-key") && key.is_none() {
        return Err(ApiError::invalid("Idempotency-Key", "Idempotency-Key must be printable ASCII"));
    }
    let before = idempotency::before(app, caller, key.as_deref(), method.as_str(), path, query, body, route)?;
    Ok((before, key))
}

/// The per-address limit, before any work: every request not authenticated
/// as a merchant takes a token; merchant requests are charged only when their
/// authentication fails (in `dispatch`), and an address out of tokens gets 429
/// before its signature is even checked.
fn address_limit(app: &App, surface: Surface, peer: Option<&ratelimit::IpKey>) -> Result<(), ApiError> {
    let Some(ip) = peer else { return Ok(()) };
    let limited = match surface {
        Surface::Merchant => app.ip_rate_limiter.exhausted(ip),
        _ => app.ip_rate_limiter.check(ip),
    };
    limited.map_err(ApiError::rate_limited)
}

/// A response body that is overwritten when hyper drops it, once written.
struct WipedOnDrop(Vec<u8>);

impl AsRef<[u8]> for WipedOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for WipedOnDrop {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Whether a reply is marked `Cache-Control: no-store`: it carries card data
/// or a secret shown once (SECURITY.md), and its body is wiped after use.
fn is_no_store(reply: &ApiReply) -> bool {
    reply.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("cache-control") && v.contains("no-store"))
}

fn to_response(reply: ApiReply, request_id: &str) -> warp::reply::Response {
    let file = reply.file.clone();
    let body = if is_no_store(&reply) {
        Bytes::from_owner(WipedOnDrop(reply.body))
    } else {
        Bytes::from(reply.body)
    };
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
        {
            headers.append(n, v);
        }
    }
    if let Some(path) = file {
        response.extensions_mut().insert(file_body::FileBody(path));
    }
    response
}
