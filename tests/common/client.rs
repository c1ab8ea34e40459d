//! The typed test client: a merchant handle over the signed API, the
//! operator's helpers (faults, channels, metrics), typed reads of JSON, and
//! the one bounded poll every test uses.

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Key, Service, send};

/// What a probe of [`eventually`] answers: done with a value, or not yet
/// (with what it saw, for the failure message).
pub trait Probe<T> {
    fn done(self) -> Result<T, String>;
}

impl<T> Probe<T> for Option<T> {
    fn done(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".to_owned())
    }
}

impl<T, L: Debug> Probe<T> for Result<T, L> {
    fn done(self) -> Result<T, String> {
        self.map_err(|last| format!("{last:?}"))
    }
}

impl Probe<()> for bool {
    fn done(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".to_owned()) }
    }
}

/// Polls `probe` until it is done, at most `within`; panics naming `what`
/// and the last thing it saw otherwise. The one poll of the tests.
pub async fn eventually<T, P: Probe<T>>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> P,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe().await.done() {
            Ok(done) => return done,
            Err(last) => assert!(Instant::now() < deadline, "{what}: not within {within:?}; last: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `Ok(value)` when `done`, else `Err(value)`: a JSON probe for [`eventually`].
pub fn when(done: bool, value: Value) -> Result<Value, Value> {
    if done { Ok(value) } else { Err(value) }
}

/// `base` with the JSON pointer `pointer` set to `value` (`Value::Null` removes it).
pub fn with(base: &Value, pointer: &str, value: Value) -> Value {
    let mut v = base.clone();
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let target = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    if value.is_null() {
        target.remove(last);
    } else {
        target.insert(last.to_owned(), value);
    }
    v
}

/// `secs(30)`: a poll's deadline.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A gateway `order.updated` callback body from `account` about `order` (an
/// order or a payment, with its `gateway_order_id`): `status`, `amount` USD.
pub fn order_updated(account: &str, order: &Value, status: &str, amount: i64) -> Value {
    json!({"event_id": format!("evt_forged_{}_{status}_{amount}", order.str("id")), "merchant_id": account,
        "type": "order.updated", "data": {"id": order["gateway_order_id"], "order_id": order["id"],
        "status": status, "amount": {"value": amount, "currency": "USD"}, "at": "2026-11-29T12:00:00Z"}})
}

/// Typed reads of JSON by a dotted path (`"amount.value"`, `"data.0.id"`);
/// a missing or mistyped value panics with the whole body.
pub trait Json {
    fn at(&self, path: &str) -> &Value;
    fn str(&self, path: &str) -> &str;
    fn i64(&self, path: &str) -> i64;
    /// The length of the array at `path`.
    fn count(&self, path: &str) -> usize;
    /// `field` of each element of the array at `path`.
    fn strs(&self, path: &str, field: &str) -> Vec<&str>;
    /// The API error code (`error.code`), `""` if none.
    fn code(&self) -> &str;
    /// The API error's `param`, if any.
    fn param(&self) -> Option<&str>;
}

impl Json for Value {
    fn at(&self, path: &str) -> &Value {
        let pointer = if path.is_empty() { String::new() } else { format!("/{}", path.replace('.', "/")) };
        self.pointer(&pointer).unwrap_or_else(|| panic!("no {path} in {self}"))
    }

    fn str(&self, path: &str) -> &str {
        self.at(path).as_str().unwrap_or_else(|| panic!("{path} is not a string in {self}"))
    }

    fn i64(&self, path: &str) -> i64 {
        self.at(path).as_i64().unwrap_or_else(|| panic!("{path} is not an integer in {self}"))
    }

    fn count(&self, path: &str) -> usize {
        self.at(path).as_array().unwrap_or_else(|| panic!("{path} is not an array in {self}")).len()
    }

    fn strs(&self, path: &str, field: &str) -> Vec<&str> {
        let items = self.at(path).as_array().unwrap_or_else(|| panic!("{path} is not an array in {self}"));
        items.iter().map(|item| item.str(field)).collect()
    }

    fn code(&self) -> &str {
        self["error"]["code"].as_str().unwrap_or_default()
    }

    fn param(&self) -> Option<&str> {
        self["error"]["param"].as_str()
    }
}

/// A merchant of the running service, signing its requests with its key.
pub struct Merchant<'a> {
    pub svc: &'a Service,
    pub id: String,
    pub key: Key,
    pub webhook_secret: String,
}

impl Service {
    /// Creates a master-account merchant of `PELAGO_VIRTUAL_USD`.
    pub async fn merchant(&self, name: &str) -> Merchant<'_> {
        self.merchant_with(json!({
            "name": name, "funding_mode": "master_account",
            "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
        }))
        .await
    }

    /// A master-account merchant that brought its own gateway `account` (signing with `api_key`).
    pub async fn merchant_on_account(&self, name: &str, account: &str, api_key: &str) -> Merchant<'_> {
        self.merchant_with(json!({
            "name": name, "funding_mode": "master_account", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
            "gateway": {"merchant_id": account, "api_key": api_key},
        }))
        .await
    }

    /// A master-account merchant with the USD fee schedule `fees` (its fee
    /// fields, e.g. `{"topup_fee": {"fixed": 100}}`; none if `Null`) and
    /// `deposit` USD deposited (nothing if 0).
    pub async fn funded_merchant(&self, name: &str, fees: Value, deposit: i64) -> Merchant<'_> {
        let m = self.merchant(name).await;
        if let Value::Object(mut schedule) = fees {
            schedule.insert("currency".into(), json!("USD"));
            m.fees(Value::Object(schedule)).await;
        }
        if deposit > 0 {
            m.deposit(deposit).await;
        }
        m
    }

    /// A gateway-funded merchant on its own gateway `account` (signing with
    /// `api_key`) with the USD fee schedule `fees` (its fee fields).
    pub async fn gateway_merchant(&self, account: &str, api_key: &str, mut fees: Value) -> Merchant<'_> {
        fees["currency"] = json!("USD");
        self.merchant_with(json!({
            "name": account, "funding_mode": "gateway", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
            "gateway": {"merchant_id": account, "api_key": api_key}, "fees": [fees],
        }))
        .await
    }

    /// Creates a merchant from the operator's `body` (asserts 201).
    pub async fn merchant_with(&self, body: Value) -> Merchant<'_> {
        let (status, v) = self.admin_json(Method::POST, "/admin/v1/merchants", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        Merchant {
            svc: self,
            id: v.str("merchant.id").to_owned(),
            key: Key {
                key_id: v.str("api_key.key_id").to_owned(),
                secret: v.str("api_key.secret").to_owned(),
            },
            webhook_secret: v.str("webhook_secret").to_owned(),
        }
    }

    /// An admin JSON request: its status and body (`Null` if not JSON).
    pub async fn admin_json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.admin(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// A Polyflow request (`/polyflow/v1/...`, bearer token): its status and body (`Null` if not JSON).
    pub async fn polyflow(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url(path)).bearer_auth(super::POLYFLOW_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin_json(Method::POST, path, Some(body)).await
    }

    pub async fn admin_put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin_json(Method::PUT, path, Some(body)).await
    }

    pub async fn admin_patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin_json(Method::PATCH, path, Some(body)).await
    }

    /// An admin request with a JSON body that must answer 200: its body.
    pub async fn admin_ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, v) = self.admin_json(method, path, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        v
    }

    /// An admin POST that must answer 201: its body.
    pub async fn admin_created(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.admin_post(path, body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {v}");
        v
    }

    /// An admin GET that must answer 200: its body.
    pub async fn admin_get(&self, path: &str) -> Value {
        let (status, v) = self.admin_json(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        v
    }

    /// Polls the admin `GET path` until it answers 200 and `done` holds (bounded by `within`): the body.
    pub async fn admin_poll(&self, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        eventually(path, within, async || {
            let (status, v) = self.admin_json(Method::GET, path, None).await;
            when(status == StatusCode::OK && done(&v), v)
        })
        .await
    }

    /// `/openapi.json` as served, asserting it documents each `(path,
    /// method)`, and a request body for the POST of each of `with_body`.
    pub async fn documents(&self, operations: &[(&str, &str)], with_body: &[&str]) -> Value {
        let doc: Value = self.http.get(self.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
        for (path, method) in operations {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in /openapi.json");
        }
        for path in with_body {
            assert!(doc["paths"][path]["post"]["requestBody"].is_object(), "POST {path} has no request body");
        }
        doc
    }

    /// The id of the first registered channel (the Sandbox Issuer in sandbox mode).
    pub async fn first_channel(&self) -> String {
        self.admin_get("/admin/v1/channels").await.str("data.0.id").to_owned()
    }

    /// Makes the next `count` calls of `operation` to `channel` behave as `behavior`.
    pub async fn channel_fault(&self, channel: &str, operation: &str, behavior: &str) {
        self.channel_faults(channel, json!({"operation": operation, "behavior": behavior, "count": 1})).await;
    }

    /// Sets a channel fault from its whole body (asserts 200).
    pub async fn channel_faults(&self, channel: &str, fault: Value) {
        let path = format!("/admin/v1/test_helpers/channels/{channel}/faults");
        let (status, v) = self.admin_json(Method::POST, &path, Some(fault)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// Clears `channel`'s faults (asserts 200).
    pub async fn clear_channel_faults(&self, channel: &str) {
        let path = format!("/admin/v1/test_helpers/channels/{channel}/faults");
        let (status, v) = self.admin_json(Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// Sets a gateway fault from its whole body (asserts 200).
    pub async fn gateway_fault(&self, fault: Value) {
        let (status, v) =
            self.admin_json(Method::POST, "/admin/v1/test_helpers/gateway/faults", Some(fault)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// Clears the gateway's faults (asserts 200).
    pub async fn clear_gateway_faults(&self) {
        let (status, v) =
            self.admin_json(Method::DELETE, "/admin/v1/test_helpers/gateway/faults", None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// POSTs `body` to the callback route `path`, signed now with `key` in `header`.
    pub async fn callback(&self, path: &str, header: &str, key: &str, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).unwrap();
        let now = pelago_storage::Timestamp::now_real().unix_seconds();
        let signature = pelago_card::upstream::callbacks::sign(key.as_bytes(), now, &bytes);
        self.http.post(self.url(path)).header(header, signature).body(bytes).send().await.unwrap()
    }

    /// A gateway callback signed with `api_key`: its status.
    pub async fn gateway_callback(&self, api_key: &str, body: &Value) -> StatusCode {
        self.callback("/callbacks/gateway", "x-gateway-signature", api_key, body).await.status()
    }

    /// A channel callback signed with `secret`: its status.
    pub async fn channel_callback(&self, channel: &str, secret: &str, body: &Value) -> StatusCode {
        let path = format!("/callbacks/channels/{channel}");
        self.callback(&path, "x-channel-signature", secret, body).await.status()
    }

    /// The value of the `/metrics` sample whose name and labels are `sample`, if listed.
    pub async fn metric_listed(&self, sample: &str) -> Option<f64> {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let prefix = format!("{sample} ");
        let value = text.lines().find_map(|l| l.strip_prefix(&prefix))?;
        Some(value.trim().parse().unwrap_or_else(|_| panic!("{sample} is not a number: {value}")))
    }

    /// A counter's value (0 while it is not listed yet).
    pub async fn metric(&self, sample: &str) -> u64 {
        self.metric_listed(sample).await.unwrap_or(0.0) as u64
    }
}

impl<'a> Merchant<'a> {
    /// A handle on an existing merchant's key.
    pub fn of(svc: &'a Service, id: &str, key: Key) -> Merchant<'a> {
        Merchant { svc, id: id.to_owned(), key, webhook_secret: String::new() }
    }

    /// A signed JSON request: its status and body (`Null` if not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        send(self.svc, &self.key, method, path, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(&body)).await
    }

    /// A signed JSON POST carrying `idempotency_key`: its status and body.
    pub async fn post_once(&self, path: &str, body: &Value, idempotency_key: &str) -> (StatusCode, Value) {
        super::send_once(self.svc, &self.key, path, body, idempotency_key).await
    }

    /// A signed POST without a body.
    pub async fn act(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, None).await
    }

    /// A signed GET's body, whatever its status.
    pub async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, None).await.1
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Sets the fee schedule (`{"currency": ..., ...}`) by the operator route.
    pub async fn fees(&self, schedule: Value) {
        let path = format!("/admin/v1/merchants/{}/fees", self.id);
        let (status, v) = self.svc.admin_json(Method::PUT, &path, Some(schedule)).await;
        assert!(status.is_success(), "{v}");
    }

    /// Sets the webhook URL by the operator route (asserts 200).
    pub async fn set_webhook_url(&self, url: &str) {
        let path = format!("/admin/v1/merchants/{}", self.id);
        let (status, v) = self.svc.admin_json(Method::PATCH, &path, Some(json!({"webhook_url": url}))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// Credits `value` USD by the sandbox deposit helper (asserts 200).
    pub async fn deposit(&self, value: i64) {
        let (status, v) = self.deposit_of(value, "USD").await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    pub async fn deposit_of(&self, value: i64, currency: &str) -> (StatusCode, Value) {
        self.post(
            "/v1/test_helpers/deposits",
            json!({"amount": {"value": value, "currency": currency}, "network": "TRON"}),
        )
        .await
    }

    /// A cardholder of `PELAGO_VIRTUAL_USD` (last name `Reject` / `Pending` steer the sandbox).
    pub async fn cardholder(&self, last_name: &str) -> (StatusCode, Value) {
        self.post("/v1/cardholders", super::cardholder_body(last_name)).await
    }

    /// An active cardholder's id.
    pub async fn active_cardholder(&self) -> String {
        let (status, c) = self.cardholder("Lovelace").await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        c.str("id").to_owned()
    }

    pub async fn open_card(&self, cardholder: &str) -> (StatusCode, Value) {
        self.post("/v1/cards", json!({"cardholder_id": cardholder})).await
    }

    /// A new card (asserts 201) of a new active cardholder: its body.
    pub async fn card(&self) -> Value {
        let holder = self.active_cardholder().await;
        let (status, card) = self.open_card(&holder).await;
        assert_eq!(status, StatusCode::CREATED, "{card}");
        card
    }

    /// `n` new cards of one new active cardholder (asserts 201 each): their ids.
    pub async fn cards(&self, n: usize) -> Vec<String> {
        let holder = self.active_cardholder().await;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let (status, card) = self.open_card(&holder).await;
            assert_eq!(status, StatusCode::CREATED, "{card}");
            ids.push(card.str("id").to_owned());
        }
        ids
    }

    /// A new card's id (see [`Merchant::card`]).
    pub async fn card_id(&self) -> String {
        self.card().await.str("id").to_owned()
    }

    pub async fn topup(&self, card: &str, value: i64) -> (StatusCode, Value) {
        self.post(&format!("/v1/cards/{card}/topups"), json!({"amount": {"value": value, "currency": "USD"}}))
            .await
    }

    /// A simulated purchase of `value` USD on `card` with the channel status `status`.
    pub async fn spend(&self, card: &str, value: i64, status: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/test_helpers/cards/{card}/transactions"),
            json!({"amount": {"value": value, "currency": "USD"}, "merchant_name": "Cafe", "mcc": "5812", "status": status}),
        )
        .await
    }

    /// The card's balance as its channel holds it (`GET /v1/cards/{card}/details`, asserts 200).
    pub async fn channel_balance(&self, card: &str) -> i64 {
        let (status, d) = self.call(Method::GET, &format!("/v1/cards/{card}/details"), None).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        d.i64("balance.value")
    }

    /// The available balance in the first currency (0 if none).
    pub async fn available(&self) -> i64 {
        super::available(self.svc, &self.key).await
    }

    /// (available, pending) in the first currency ((0, 0) if none).
    pub async fn available_and_pending(&self) -> (i64, i64) {
        let b = self.get("/v1/balance").await;
        (
            b["balances"][0]["available"].as_i64().unwrap_or(0),
            b["balances"][0]["pending"].as_i64().unwrap_or(0),
        )
    }

    /// Sets the withdrawal whitelist (`[{"address": ..., "network": ...}]`) by the operator route.
    pub async fn withdrawal_addresses(&self, addresses: Value) {
        let path = format!("/admin/v1/merchants/{}/withdrawal-addresses", self.id);
        let (status, v) =
            self.svc.admin_json(Method::PUT, &path, Some(json!({"addresses": addresses}))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// A withdrawal of `value` USD to `address` by the operator route.
    pub async fn withdraw(&self, value: i64, address: &str) -> (StatusCode, Value) {
        let path = format!("/admin/v1/merchants/{}/withdrawals", self.id);
        let body = json!({"amount": {"value": value, "currency": "USD"}, "address": address});
        self.svc.admin_json(Method::POST, &path, Some(body)).await
    }

    /// How many events of type `t` (up to 100).
    pub async fn events(&self, t: &str) -> usize {
        self.get(&format!("/v1/events?type={t}&limit=100")).await.count("data")
    }

    /// Polls `GET path` until `done` holds (bounded by `within`): the body.
    pub async fn poll(&self, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        eventually(path, within, async || {
            let v = self.get(path).await;
            when(done(&v), v)
        })
        .await
    }
}
