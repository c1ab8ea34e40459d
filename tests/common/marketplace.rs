//! Marketplace setup and calls shared by the marketplace tests, the model
//! test and the crash campaign (MARKETPLACE.md §3–§7): an onboarded seller
//! with its agreements, payments and their buyer helpers, batch splits, a
//! recipient's balance.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Json, Key, Service, eventually, secs, send, when};

/// A recipient of the merchant behind `key`, onboarded (SUCCEEDED, compliance
/// approved) with the agreements asked for: its id and `provider_recipient_id`.
pub async fn seller(
    svc: &Service,
    key: &Key,
    name: &str,
    split: bool,
    commission_bps: Option<u32>,
) -> (String, String) {
    seller_paid_to(svc, key, name, "ACC123456", split, commission_bps).await
}

/// [`seller`] whose bank account is `account_number` (the sandbox's payouts
/// fail to one starting `FAIL`).
pub async fn seller_paid_to(
    svc: &Service,
    key: &Key,
    name: &str,
    account_number: &str,
    split: bool,
    commission_bps: Option<u32>,
) -> (String, String) {
    let (rec, onb) = onboarded(svc, key, name, account_number).await;
    assert_eq!(onb["status"], "SUCCEEDED", "{onb}");
    if split {
        sign_agreement(svc, key, &rec, json!({"type": "split"})).await;
    }
    if let Some(bps) = commission_bps {
        sign_agreement(svc, key, &rec, json!({"type": "commission", "max_commission_bps": bps})).await;
    }
    (rec, onb.str("provider_recipient_id").to_owned())
}

/// Signs the agreement `body` asks for (asserts 201 `signed`).
pub async fn sign_agreement(svc: &Service, key: &Key, recipient: &str, body: Value) {
    let path = format!("/v1/recipients/{recipient}/agreements");
    let (status, a) = send(svc, key, Method::POST, &path, Some(&body)).await;
    assert_eq!((status, a["status"].as_str()), (StatusCode::CREATED, Some("signed")), "{a}");
}

/// `POST /v1/files` of `body` as `content_type` (with `idem` as its
/// Idempotency-Key unless empty): its status and body.
pub async fn upload(
    svc: &Service,
    key: &Key,
    content_type: &str,
    body: &[u8],
    idem: &str,
) -> (StatusCode, Value) {
    let r = svc
        .signed_with_key(key, Method::POST, "/v1/files", body, idem)
        .header("content-type", content_type)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// `{"value": value, "currency": "USD"}`.
pub fn usd(value: i64) -> Value {
    json!({"value": value, "currency": "USD"})
}

/// `POST /v1/payments`: its status and body.
pub async fn create_payment(svc: &Service, key: &Key, body: &Value) -> (StatusCode, Value) {
    send(svc, key, Method::POST, "/v1/payments", Some(body)).await
}

/// A sandbox buyer helper (`pay`, `fail`, `expire`, `resend-callback`) that
/// must answer 200: its body.
pub async fn payment_helper(svc: &Service, key: &Key, id: &str, action: &str) -> Value {
    let (status, p) =
        send(svc, key, Method::POST, &format!("/v1/test_helpers/payments/{id}/{action}"), None).await;
    assert_eq!(status, StatusCode::OK, "{action}: {p}");
    p
}

/// `POST /v1/split-batches` of `ids`: its status and body.
pub async fn split_batch(svc: &Service, key: &Key, ids: &[&str]) -> (StatusCode, Value) {
    let items: Vec<Value> = ids.iter().map(|id| json!({"payment_id": id})).collect();
    send(svc, key, Method::POST, "/v1/split-batches", Some(&json!({"items": items, "reference": "batch"})))
        .await
}

/// The recipient's balance in its first currency (`Null` if it has none yet).
pub async fn recipient_balance(svc: &Service, key: &Key, recipient: &str) -> Value {
    let (_, b) = send(svc, key, Method::GET, &format!("/v1/recipients/{recipient}/balance"), None).await;
    b["balances"][0].clone()
}

/// 780 = PURCHASE 741 to `seller` + COMMISSION 39 (the cap at 500 bps).
pub fn payment_body(seller: &str, capture: bool) -> Value {
    json!({
        "amount": usd(780), "merchant_reference": "order-780", "capture": capture,
        "split_marketplace": [
            {"recipient_id": seller, "type": "PURCHASE", "amount": usd(741)},
            {"type": "COMMISSION", "amount": usd(39)},
        ],
    })
}

/// Makes the gateway's next `operation` behave as `behavior`.
pub async fn fault(svc: &Service, operation: &str, behavior: &str) {
    svc.gateway_fault(json!({"operation": operation, "behavior": behavior, "count": 1})).await;
}

/// Polls the payment until `done` holds (bounded).
pub async fn payment_until(svc: &Service, key: &Key, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("payment {id}"), secs(30), async || {
        let (_, p) = send(svc, key, Method::GET, &format!("/v1/payments/{id}"), None).await;
        when(done(&p), p)
    })
    .await
}

/// The recipient's (in_transit, available) in its first currency (0 while none).
pub async fn seller_balance(svc: &Service, key: &Key, recipient: &str) -> (i64, i64) {
    let b = recipient_balance(svc, key, recipient).await;
    (b["in_transit"].as_i64().unwrap_or(0), b["available"].as_i64().unwrap_or(0))
}

pub async fn in_transit(svc: &Service, key: &Key, recipient: &str) -> i64 {
    seller_balance(svc, key, recipient).await.0
}

pub async fn events_of(svc: &Service, key: &Key, kind: &str, payment: &str) -> usize {
    let (_, events) = send(svc, key, Method::GET, &format!("/v1/events?type={kind}&limit=100"), None).await;
    events["data"].as_array().unwrap().iter().filter(|e| e["data"]["object"]["id"] == payment).count()
}

/// A paid (capture) payment of 780 to `seller`.
pub async fn paid(svc: &Service, key: &Key, seller: &str) -> String {
    bought(svc, key, seller, true).await
}

/// A payment of 780 to `seller` the buyer paid: SUCCEEDED with `capture`, else AUTHORIZED.
pub async fn bought(svc: &Service, key: &Key, seller: &str, capture: bool) -> String {
    let (_, p) = create_payment(svc, key, &payment_body(seller, capture)).await;
    let id = p.str("id").to_owned();
    let paid = payment_helper(svc, key, &id, "pay").await;
    assert_eq!(paid["status"], if capture { "SUCCEEDED" } else { "AUTHORIZED" }, "{paid}");
    id
}

pub fn recipient_body(name: &str, account_number: &str) -> Value {
    json!({
        "type": "individual", "name": name, "email": "s@example.com", "phone": "+6591234567",
        "country": "SG",
        "individual": {"first_name": "Sam", "last_name": "Seller", "date_of_birth": "1990-01-01",
                       "id_document": {"type": "passport", "number": "P1234567"}},
        "bank_account": {"holder_name": "Sam", "account_number": account_number, "bank_code": "DBS", "kind": "personal"},
    })
}

/// A recipient onboarded in one step (the sandbox decides by the name's last word).
pub async fn recipient(svc: &Service, key: &Key, name: &str, account_number: &str) -> String {
    onboarded(svc, key, name, account_number).await.0
}

/// A new recipient, not onboarded (asserts 201): its id.
pub async fn new_recipient(svc: &Service, key: &Key, name: &str, account_number: &str) -> String {
    let (status, rec) =
        send(svc, key, Method::POST, "/v1/recipients", Some(&recipient_body(name, account_number))).await;
    assert_eq!(status, StatusCode::CREATED, "{rec}");
    rec.str("id").to_owned()
}

/// A new recipient and its one-step onboarding (asserts 201 for both): its id and the onboarding.
pub async fn onboarded(svc: &Service, key: &Key, name: &str, account_number: &str) -> (String, Value) {
    let id = new_recipient(svc, key, name, account_number).await;
    let onboard = json!({"type": "ONE_STEP_ONBOARDING"});
    let (status, o) =
        send(svc, key, Method::POST, &format!("/v1/recipients/{id}/onboardings"), Some(&onboard)).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    (id, o)
}

/// Real money for each recipient's available balance (USD minor units): the
/// recipients sign the split agreement, one payment of a PURCHASE line per
/// recipient is paid on the checkout, the clock goes to the next day 02:00 UTC,
/// the settlement of that day marks it settled (T+1) and a batch splits it.
pub async fn funded(svc: &Service, key: &Key, recipients: &[(&str, i64)]) {
    for (r, _) in recipients {
        sign_agreement(svc, key, r, json!({"type": "split"})).await;
    }
    let lines: Vec<Value> = recipients
        .iter()
        .map(|(r, v)| json!({"recipient_id": r, "type": "PURCHASE", "amount": usd(*v)}))
        .collect();
    let total: i64 = recipients.iter().map(|(_, v)| v).sum();
    let body = json!({"amount": usd(total), "merchant_reference": "funding", "split_marketplace": lines});
    let (status, p) = create_payment(svc, key, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let id = p.str("id").to_owned();
    assert_eq!(payment_helper(svc, key, &id, "pay").await["status"], "SUCCEEDED");
    next_day_settled(svc).await;
    let (status, batch) = split_batch(svc, key, &[&id]).await;
    assert_eq!(
        (status, batch["items"][0]["status"].as_str()),
        (StatusCode::CREATED, Some("executed")),
        "{batch}"
    );
}

/// Settles (T+1) everything captured so far: the clock to tomorrow 02:00Z, then the run of tomorrow.
pub async fn next_day_settled(svc: &Service) {
    let today = super::clock::now(svc).await;
    super::clock::set(svc, super::clock::day_after(today, 1, 2, 0, 0)).await;
    super::settle(svc, &super::clock::date(super::clock::day_after(today, 1, 0, 0, 0))).await;
}
