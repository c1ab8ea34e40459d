//! Revoked products and disabled channels issue nothing (DOMAIN.md §Routing;
//! issue 18 M3): card open and top-up check the routing again, not only
//! cardholder creation.

mod common;

use common::{Key, Service, available, cardholder_body, ledger_balanced, send};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DEPOSIT: i64 = 1_000_000;

/// A funded master-account merchant with an active cardholder and one open card.
async fn merchant_with_card(svc: &Service) -> (String, Key, String, String) {
    let (id, key, _) = svc.merchant("Recheck").await;
    let (status, _) = send(
        svc,
        &key,
        Method::POST,
        "/v1/test_helpers/deposits",
        Some(&json!({"amount": {"value": DEPOSIT, "currency": "USD"}, "network": "TRON"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, holder) =
        send(svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Lovelace"))).await;
    assert_eq!(status, StatusCode::CREATED, "{holder}");
    let holder = holder["id"].as_str().unwrap().to_owned();
    let (status, card) = open_card(svc, &key, &holder).await;
    assert_eq!(status, StatusCode::CREATED, "{card}");
    (id, key, holder, card["id"].as_str().unwrap().to_owned())
}

async fn open_card(svc: &Service, key: &Key, holder: &str) -> (StatusCode, Value) {
    send(svc, key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder}))).await
}

async fn topup(svc: &Service, key: &Key, card: &str) -> (StatusCode, Value) {
    send(
        svc,
        key,
        Method::POST,
        &format!("/v1/cards/{card}/topups"),
        Some(&json!({"amount": {"value": 5_000, "currency": "USD"}})),
    )
    .await
}

async fn cards_of(svc: &Service, key: &Key) -> usize {
    let (_, list) = send(svc, key, Method::GET, "/v1/cards?limit=100", None).await;
    list["data"].as_array().unwrap().len()
}

async fn topups_of(svc: &Service, key: &Key, card: &str) -> usize {
    let (_, list) = send(svc, key, Method::GET, &format!("/v1/cards/{card}/topups"), None).await;
    list["data"].as_array().unwrap().len()
}

async fn admin_patch(svc: &Service, path: &str, body: Value) {
    let r = svc.admin(Method::PATCH, path).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_card_name_opens_and_funds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let (merchant, key, holder, card) = merchant_with_card(&svc).await;
    let before = available(&svc, &key).await;
    admin_patch(&svc, &format!("/admin/v1/merchants/{merchant}"), json!({"allowed_card_names": []})).await;

    let (status, body) = open_card(&svc, &key, &holder).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, body) = topup(&svc, &key, &card).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(cards_of(&svc, &key).await, 1, "no second card");
    assert_eq!(topups_of(&svc, &key, &card).await, 0, "no top-up record");
    assert_eq!(available(&svc, &key).await, before, "nothing debited");

    // Allowed again: both work.
    admin_patch(
        &svc,
        &format!("/admin/v1/merchants/{merchant}"),
        json!({"allowed_card_names": ["PELAGO_VIRTUAL_USD"]}),
    )
    .await;
    assert_eq!(open_card(&svc, &key, &holder).await.0, StatusCode::CREATED);
    assert_eq!(topup(&svc, &key, &card).await.0, StatusCode::CREATED);
    ledger_balanced(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_channel_or_bin_opens_and_funds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let (_, key, holder, card) = merchant_with_card(&svc).await;
    let before = available(&svc, &key).await;
    let channels: Value =
        svc.admin(Method::GET, "/admin/v1/channels").send().await.unwrap().json().await.unwrap();
    let channel = channels["data"][0]["id"].as_str().unwrap().to_owned();

    admin_patch(&svc, &format!("/admin/v1/channels/{channel}"), json!({"status": "disabled"})).await;
    let (status, body) = open_card(&svc, &key, &holder).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "invalid_state");
    let (status, body) = topup(&svc, &key, &card).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "invalid_state");
    assert_eq!(cards_of(&svc, &key).await, 1, "no second card");
    assert_eq!(topups_of(&svc, &key, &card).await, 0, "no top-up record");
    assert_eq!(available(&svc, &key).await, before, "nothing debited");

    // Channel active again, the BIN inactive: still nothing.
    admin_patch(&svc, &format!("/admin/v1/channels/{channel}"), json!({"status": "active"})).await;
    admin_patch(&svc, "/admin/v1/bins/424242", json!({"status": "inactive"})).await;
    assert_eq!(open_card(&svc, &key, &holder).await.0, StatusCode::CONFLICT);
    assert_eq!(topup(&svc, &key, &card).await.0, StatusCode::CONFLICT);
    assert_eq!(available(&svc, &key).await, before, "nothing debited");

    admin_patch(&svc, "/admin/v1/bins/424242", json!({"status": "active"})).await;
    assert_eq!(topup(&svc, &key, &card).await.0, StatusCode::CREATED);
    ledger_balanced(&svc).await;
}
