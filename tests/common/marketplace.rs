//! Marketplace setup and calls shared by the marketplace tests, the model
//! test and the crash campaign (MARKETPLACE.md §3–§7): an onboarded seller
//! with its agreements, payments and their buyer helpers, batch splits, a
//! recipient's balance.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Key, Service, send};

/// A recipient of the merchant behind `key`, onboarded (SUCCEEDED, compliance
/// approved) with the agreements asked for: its id and `provider_recipient_id`.
pub async fn seller(
    svc: &Service,
    key: &Key,
    name: &str,
    split: bool,
    commission_bps: Option<u32>,
) -> (String, String) {
    let body = json!({
        "type": "individual", "name": name, "email": "s@example.com", "phone": "+6591234567",
        "country": "SG",
        "individual": {"first_name": "Sam", "last_name": "Seller", "date_of_birth": "1990-01-01",
                       "id_document": {"type": "passport", "number": "P1234567"}},
        "bank_account": {"holder_name": "Sam", "account_number": "ACC123456", "bank_code": "DBS", "kind": "personal"},
    });
    let (status, rec) = send(svc, key, Method::POST, "/v1/recipients", Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{rec}");
    let rec = rec["id"].as_str().unwrap().to_owned();
    let onboard = json!({"type": "ONE_STEP_ONBOARDING"});
    let (status, onb) =
        send(svc, key, Method::POST, &format!("/v1/recipients/{rec}/onboardings"), Some(&onboard)).await;
    assert_eq!((status, onb["status"].as_str()), (StatusCode::CREATED, Some("SUCCEEDED")), "{onb}");
    let agreements = format!("/v1/recipients/{rec}/agreements");
    if split {
        let (status, a) = send(svc, key, Method::POST, &agreements, Some(&json!({"type": "split"}))).await;
        assert_eq!((status, a["status"].as_str()), (StatusCode::CREATED, Some("signed")), "{a}");
    }
    if let Some(bps) = commission_bps {
        let body = json!({"type": "commission", "max_commission_bps": bps});
        let (status, a) = send(svc, key, Method::POST, &agreements, Some(&body)).await;
        assert_eq!((status, a["status"].as_str()), (StatusCode::CREATED, Some("signed")), "{a}");
    }
    (rec, onb["provider_recipient_id"].as_str().unwrap().to_owned())
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
