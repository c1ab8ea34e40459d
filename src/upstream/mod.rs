//! Adapters to the card-issuing channels and the payment gateway: the only code
//! that knows their wire protocols. Each adapter turns HTTP answers into the
//! ports' [`Outcome`](pelago_actors::ports::Outcome) by one rule:
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx with a readable body | `Done` |
//! | 4xx (not 408/429) with an error body `{"error":{"code","reason"}}` | `Declined` (nothing applied) |
//! | timeout, connection error, 5xx, 408/429, any unreadable body | `Unknown` (ask, never guess) |
//!
//! # Channel protocol (kind `http`, and `sandbox` which speaks the same)
//! Paths are under the channel's `base_url`. Every call carries
//! `Authorization: Bearer <api_key>`; every mutating call carries Pelago's
//! request id in `Idempotency-Key`, and the channel applies one request id once
//! (a repeat answers the stored result).
//!
//! | call | answer |
//! |---|---|
//! | `POST /cardholders` [`channel_wire::CreateCardholderBody`] | [`channel_wire::CardholderAnswer`] |
//! | `POST /cards` [`channel_wire::OpenCardBody`] | [`channel_wire::CardAnswer`] |
//! | `POST /cards/{id}/topups` `{"amount": Money}` | `{"balance": Money}` |
//! | `POST /cards/{id}/freeze`, `/unfreeze` | `{"status": "frozen"\|"active"}` |
//! | `DELETE /cards/{id}` | `{"remaining_balance": Money}` |
//! | `GET /cards/{id}/details` | `{"pan","cvv","expiry_month","expiry_year","balance","status"}` |
//! | `GET /cards/{id}/transactions?after=<id>` | `{"data": [Transaction]}` oldest first |
//! | `GET /cards/{id}/transactions/{transaction_id}` | one Transaction (`404` error body when the channel has none) |
//! | `GET /cardholders/{id}` | [`channel_wire::CardholderStateAnswer`] (`404` error body when unknown) |
//! | `GET /balance` | `{"balances": [Money]}` |
//! | `GET /operations/{request_id}` | [`channel_wire::OperationAnswer`] (`{"result": "not_found"}` when never applied) |
//!
//! Money is `{"value": <minor units>, "currency": "USD"}`; times are RFC 3339.
//!
//! # Gateway protocol
//! Under the gateway's `base_url`, authenticated by `X-Merchant-Id: <merchant_id>`
//! and `Authorization: Bearer <api_key>` of the gateway account, request id in
//! `Idempotency-Key`: `POST /orders`, `GET /orders/{id}`,
//! `GET /deposit_address?currency=&network=`, `POST /payouts`,
//! `POST /orders/{id}/refunds` (see [`gateway_wire`]).
//!
//! # Callbacks
//! Upstreams call Pelago back with bodies described in [`callbacks`], signed
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(key, t + "." + body)>`. A callback
//! is a hint: Pelago acts on the answer of the query above that confirms it
//! (`GET /cards/{id}/transactions/{transaction_id}`, `GET /cardholders/{id}`,
//! `GET /operations/{request_id}`; the gateway's `GET /orders/{id}`,
//! `/deposits/{id}`, `/payouts/{id}`).

pub mod callbacks;
pub mod channel_http;
pub mod channel_wire;
pub mod gateway;
pub mod gateway_marketplace;
pub mod gateway_wire;
pub(crate) mod http_util;
pub mod marketplace_wire;
pub mod sandbox;

use std::{sync::Arc, time::Duration};

use pelago_actors::ports::{CardChannel, Outcome, PaymentGateway, SecretString};
use serde::de::DeserializeOwned;

use crate::metrics::UpstreamCalls;

pub use channel_http::HttpChannel;
pub use gateway::HttpGateway;
pub use sandbox::SandboxControl;

/// Settings every adapter shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Whole-call timeout of one upstream request (`PELAGO_UPSTREAM_TIMEOUT_MS`).
    pub timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self { timeout_ms: 10_000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("unknown channel kind `{0}` (expected `http` or `sandbox`)")]
    UnknownKind(String),
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    #[error("upstream call failed: {0}")]
    Transport(String),
    #[error("upstream answered HTTP {status}: {code}")]
    Status { status: u16, code: String },
    #[error("upstream answer could not be read: {0}")]
    Decode(String),
}

/// One connection pool for every upstream: clone it freely (it is an `Arc`).
#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    config: UpstreamConfig,
    /// Whom the calls are timed for (`/metrics`), and under which label.
    calls: Arc<UpstreamCalls>,
    label: Arc<str>,
}

impl UpstreamClient {
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        // reqwest is built without a default crypto provider; ring is ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| UpstreamError::Client(e.to_string()))?;
        Ok(Self { http, config, calls: Arc::default(), label: Arc::from("upstream") })
    }

    /// The same pool, its calls timed into `calls` (the service's `/metrics`).
    pub fn observed_by(self, calls: Arc<UpstreamCalls>) -> Self {
        Self { calls, ..self }
    }

    /// The same pool, its calls counted under `label` (a channel id, `gateway`).
    pub fn labelled(&self, label: &str) -> Self {
        Self { label: Arc::from(label), ..self.clone() }
    }

    /// Sends `request` (the outcome rule of [`http_util::send`]), timed.
    pub(crate) async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Outcome<T> {
        self.timed(http_util::send(request)).await
    }

    /// [`http_util::send_sensitive`], timed.
    pub(crate) async fn send_sensitive<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Outcome<T> {
        self.timed(http_util::send_sensitive(request)).await
    }

    async fn timed<T>(&self, call: impl std::future::Future<Output = Outcome<T>>) -> Outcome<T> {
        let started = std::time::Instant::now();
        let outcome = call.await;
        let failed = matches!(outcome, Outcome::Unknown { .. });
        self.calls.observe(&self.label, started.elapsed().as_secs_f64(), failed);
        outcome
    }

    pub fn config(&self) -> UpstreamConfig {
        self.config
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The adapter for a channel of `kind` (`http` or `sandbox`).
    pub fn channel_adapter(
        &self,
        kind: &str,
        base_url: &str,
        api_key: SecretString,
    ) -> Result<Arc<dyn CardChannel>, UpstreamError> {
        match kind {
            "http" => Ok(Arc::new(HttpChannel::new(self.clone(), base_url, api_key))),
            "sandbox" => Ok(Arc::new(sandbox::sandbox_channel(self.clone(), base_url, api_key))),
            other => Err(UpstreamError::UnknownKind(other.chars().take(32).collect())),
        }
    }

    /// The gateway adapter; each call names the gateway account it acts for.
    pub fn gateway(&self, base_url: &str) -> Arc<dyn PaymentGateway> {
        Arc::new(HttpGateway::new(self.labelled("gateway"), base_url))
    }

    /// The sandbox's control endpoints (registration and test helpers).
    /// `base_url` is the sandbox root, e.g. `http://127.0.0.1:8090`;
    /// `control_token` the credential the simulators were started with.
    pub fn sandbox_control(&self, base_url: &str, control_token: SecretString) -> SandboxControl {
        SandboxControl::new(self.clone(), base_url, control_token)
    }
}

/// Shorthand for [`UpstreamClient::channel_adapter`] with a client of its own.
pub fn channel_adapter(
    config: UpstreamConfig,
    kind: &str,
    base_url: &str,
    api_key: SecretString,
) -> Result<Arc<dyn CardChannel>, UpstreamError> {
    UpstreamClient::new(config)?.channel_adapter(kind, base_url, api_key)
}
