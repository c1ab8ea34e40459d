//! The sandbox upstreams: a simulated card-issuing channel (`/channel`) and a
//! simulated payment gateway (`/gateway`), served over HTTP by the same binary
//! when sandbox mode is on (SANDBOX.md). They speak the protocols of
//! [`crate::upstream`], so Pelago reaches them only through its real adapters,
//! and they call Pelago back with signed callbacks.
//!
//! State lives in a store of its own at `<data_dir>/sandbox` (registrations,
//! cardholders, cards and balances, transactions, orders, payouts, deposits and
//! the stored result of every request id), so a restart keeps it. Injected
//! faults are kept in memory only. Mutating calls are serialised by one lock:
//! a simulator values obvious correctness over throughput.
//!
//! The control endpoints (`/channel/control/...`, `/gateway/control/...`:
//! registrations, deposits, card spending, approvals, faults, resent
//! callbacks) answer only to a loopback peer presenting the control token
//! Pelago registered when it started the simulators ([`SandboxConfig`]):
//! otherwise a deposit could be reported to any account by anyone who can
//! reach the port (SANDBOX.md, "Sandbox and live data never mix").

// Handlers short-circuit with a ready error `Response` (`Result<_, Response>`);
// boxing it would only add noise to the simulator's cold paths.
#![allow(clippy::result_large_err)]

/// The value of a `Result<_, Response>`, or an early return of its error reply:
/// as is, or wrapped (`or_reply!(e, Ok)`, `or_reply!(e, Ok(Err))` in a `Decision`).
macro_rules! or_reply {
    (@ $result:expr, $r:ident => $ret:expr) => {
        match $result {
            Ok(value) => value,
            Err($r) => return $ret,
        }
    };
    ($result:expr) => {
        or_reply!(@ $result, response => response)
    };
    ($result:expr, $outer:ident($inner:ident)) => {
        or_reply!(@ $result, response => $outer($inner(response)))
    };
    ($result:expr, $wrap:ident) => {
        or_reply!(@ $result, response => $wrap(response))
    };
}

mod card_data;
mod channel;
mod checkout;
mod faults;
mod gateway;
mod marketplace;
mod notify;
mod payments;
mod records;

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use pelago_actors::ports::SecretString;
use pelago_storage::{Store, StoreConfig, StoreError};
use serde::Serialize;
use warp::{Filter, Reply};

pub use card_data::luhn_valid;

use crate::upstream::http_util::{ErrorBody, ErrorEnvelope};

/// Largest request body the sandbox reads.
const MAX_BODY_BYTES: u64 = 64 * 1024;
/// How long `serve`'s task waits, after shutdown, for the last request to let
/// go of the store (so the directory can be opened again at once).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub listen: SocketAddr,
    /// Pelago's data directory; the sandbox uses `<data_dir>/sandbox`.
    pub data_dir: PathBuf,
    /// Pelago's upstream timeout: the `timeout` fault answers 1 s after it.
    pub upstream_timeout_ms: u64,
    /// The credential the control endpoints require (`Authorization: Bearer`);
    /// Pelago generates one per start and its `SandboxControl` sends it.
    pub control_token: SecretString,
}

pub(crate) struct State {
    store: Store,
    card_key: card_data::CardDataKey,
    /// Seals the credentials the simulators keep (`credentials.key`, 0600):
    /// like Pelago's own store, the sandbox's holds no secret in clear.
    sealer: crate::security::secrets::Sealer,
    /// Serialises every mutating call (check + apply + commit).
    write_lock: tokio::sync::Mutex<()>,
    faults: parking_lot::Mutex<faults::Faults>,
    gateway_faults: parking_lot::Mutex<faults::GatewayFaults>,
    /// The marketplace calls' faults (in memory, like the others).
    marketplace_faults: parking_lot::Mutex<marketplace::Faults>,
    notifier: notify::Notifier,
    /// The address actually bound, for checkout URLs.
    listen: SocketAddr,
    upstream_timeout_ms: u64,
    control_token: SecretString,
}

impl State {
    /// Seals a credential for the store, bound to `context`.
    pub(crate) fn seal(&self, secret: &str, context: &str) -> Vec<u8> {
        self.sealer.seal(secret.as_bytes(), context)
    }

    /// Opens a sealed credential ("" if it cannot be opened: then nothing matches it).
    pub(crate) fn open(&self, sealed: &[u8], context: &str) -> String {
        self.sealer.open_string(sealed, context).unwrap_or_default()
    }
}

/// Starts the sandbox on `config.listen` (port 0 picks one). Returns the bound
/// address and the server task, which ends after `shutdown` resolves, the
/// in-flight requests finish and the store is released.
pub async fn serve(
    config: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = config.data_dir.join("sandbox");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let store =
        Store::open(&dir, &StoreConfig { cache_capacity_bytes: 16 * 1024 * 1024, ..StoreConfig::default() })
            .with_context(|| format!("opening the sandbox store in {}", dir.display()))?;
    let card_key = card_data::CardDataKey::load_or_create(&dir.join("card_data.key"))
        .context("loading the sandbox card-data key")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the sandbox to {}", config.listen))?;
    let listen = listener.local_addr()?;
    let notifier = notify::Notifier::new(Duration::from_millis(config.upstream_timeout_ms.max(100)))?;
    let credentials_key = crate::security::secrets::load_or_create_key_file(&dir, "credentials.key")
        .map_err(|e| anyhow::anyhow!("sandbox credentials key: {e}"))?;
    let state = Arc::new(State {
        store,
        card_key,
        sealer: crate::security::secrets::Sealer::new(&credentials_key),
        write_lock: tokio::sync::Mutex::new(()),
        faults: parking_lot::Mutex::new(faults::Faults::default()),
        gateway_faults: parking_lot::Mutex::new(faults::GatewayFaults::default()),
        marketplace_faults: parking_lot::Mutex::new(marketplace::Faults::default()),
        notifier,
        listen,
        upstream_timeout_ms: config.upstream_timeout_ms,
        control_token: config.control_token,
    });
    let weak: Weak<State> = Arc::downgrade(&state);
    let routes = routes(state);
    tracing::warn!(%listen, "SANDBOX upstreams listening: simulated channel and gateway, not for production");
    let handle = tokio::spawn(async move {
        warp::serve(routes).incoming(listener).graceful(shutdown).run().await;
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        while weak.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    Ok((listen, handle))
}

/// Everything a handler needs from one request.
pub(crate) struct Request {
    /// The peer, when the transport knows it.
    pub remote: Option<SocketAddr>,
    pub method: Method,
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization").and_then(|v| v.strip_prefix("Bearer "))
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key").filter(|k| !k.is_empty() && k.len() <= 200)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Response> {
        serde_json::from_slice(&self.body).map_err(|e| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &format!("body: {}", crate::upstream::http_util::describe_json_error(&e)),
            )
        })
    }
}

fn request_filter() -> impl Filter<Extract = (Request,), Error = warp::Rejection> + Clone {
    let query = warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify();
    warp::addr::remote()
        .and(warp::method())
        .and(warp::path::tail())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::header::optional::<u64>("content-length"))
        .and_then(|remote, method, tail: warp::path::Tail, query, headers, length: Option<u64>| async move {
            if length.unwrap_or(0) > MAX_BODY_BYTES {
                return Err(warp::reject::custom(BodyTooLarge));
            }
            let segments = tail.as_str().split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
            Ok::<_, warp::Rejection>((remote, method, segments, query, headers))
        })
        .and(warp::body::bytes())
        .map(|(remote, method, segments, query, headers), body| Request {
            remote,
            method,
            segments,
            query,
            headers,
            body,
        })
}

#[derive(Debug)]
struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

fn percent_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn routes(state: Arc<State>) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let channel_state = Arc::clone(&state);
    let channel = warp::path("channel").and(request_filter()).then(move |req: Request| {
        let state = Arc::clone(&channel_state);
        async move {
            match authorize_control(&state, &req) {
                Ok(()) => channel::handle(&state, req).await,
                Err(refused) => refused,
            }
        }
    });
    let gateway = warp::path("gateway").and(request_filter()).then(move |req: Request| {
        let state = Arc::clone(&state);
        async move {
            match authorize_control(&state, &req) {
                Ok(()) => gateway::handle(&state, req).await,
                Err(refused) => refused,
            }
        }
    });
    channel.or(gateway).unify().recover(recover).unify()
}

/// Control routes (`.../control/...`) answer only a loopback peer with the
/// control token; every other route passes (it has its own credentials, or
/// is the cardholder's checkout page).
fn authorize_control(state: &State, req: &Request) -> Result<(), Response> {
    if req.segments.first().map(String::as_str) != Some("control") {
        return Ok(());
    }
    if !control_peer_allowed(req.remote) {
        return Err(error(StatusCode::FORBIDDEN, "forbidden", "control endpoints answer only on loopback"));
    }
    match req.bearer() {
        Some(token) if same_secret(token, state.control_token.expose()) => Ok(()),
        _ => Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong control token")),
    }
}

/// Only a loopback peer may use the control endpoints.
fn control_peer_allowed(remote: Option<SocketAddr>) -> bool {
    remote.is_some_and(|addr| match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    if rejection.find::<BodyTooLarge>().is_some() {
        return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "body too large"));
    }
    Ok(error(StatusCode::NOT_FOUND, "not_found", "no such route"))
}

// ------------------------------------------------------------- responses ----

pub(crate) type Response = warp::reply::Response;

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

/// A stored JSON answer, replayed byte for byte.
pub(crate) fn raw_json(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reply = warp::reply::with_header(body, "content-type", "application/json");
    warp::reply::with_status(reply, status).into_response()
}

/// The JSON answer stored under `key`, replayed; none stored: 404 `code` saying `missing`.
pub(crate) fn stored_answer(
    state: &State,
    tree: pelago_storage::Tree,
    key: impl AsRef<[u8]>,
    (code, missing): (&str, &str),
) -> Response {
    match state.store.get_raw(tree, key) {
        Ok(Some(answer)) => raw_json(200, String::from_utf8_lossy(&answer).into_owned()),
        Ok(None) => error(StatusCode::NOT_FOUND, code, missing),
        Err(e) => internal(e),
    }
}

pub(crate) fn error_envelope(code: &str, reason: &str) -> ErrorEnvelope {
    ErrorEnvelope { error: ErrorBody { code: code.to_owned(), reason: reason.to_owned() } }
}

pub(crate) fn error(status: StatusCode, code: &str, reason: &str) -> Response {
    json(status, &error_envelope(code, reason))
}

/// A failure of the sandbox itself (its store): 500, so clients treat it as unknown.
pub(crate) fn internal(e: StoreError) -> Response {
    tracing::error!(error = %e, "sandbox store failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "sandbox storage failed")
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// Constant-time comparison of a presented credential with the registered one.
pub(crate) fn same_secret(presented: &str, registered: &str) -> bool {
    use subtle::ConstantTimeEq;
    presented.len() == registered.len() && bool::from(presented.as_bytes().ct_eq(registered.as_bytes()))
}

pub(crate) fn key_digest(api_key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(api_key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::control_peer_allowed;

    #[test]
    fn only_loopback_peers_reach_the_control_endpoints() {
        for allowed in ["127.0.0.1:1", "127.8.9.10:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert!(control_peer_allowed(Some(allowed.parse().unwrap())), "{allowed}");
        }
        for refused in ["10.0.0.5:1", "192.168.1.2:1", "0.0.0.0:1", "[::ffff:10.0.0.1]:1", "[fe80::1]:1"] {
            assert!(!control_peer_allowed(Some(refused.parse().unwrap())), "{refused}");
        }
        assert!(!control_peer_allowed(None), "an unknown peer is not loopback");
    }
}
