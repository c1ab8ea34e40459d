//! Revoked products and disabled channels issue nothing (DOMAIN.md §Routing;
//! issue 18 M3): card open and top-up check the routing again, not only
//! cardholder creation.

mod common;

use common::{Json, Merchant, Service, ledger_balanced};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DEPOSIT: i64 = 1_000_000;

/// A funded master-account merchant with an active cardholder and one open card.
async fn merchant_with_card(svc: &Service) -> (Merchant<'_>, String, String) {
    let m = svc.funded_merchant("Recheck", Value::Null, DEPOSIT).await;
    let holder = m.active_cardholder().await;
    let (status, card) = m.open_card(&holder).await;
    assert_eq!(status, StatusCode::CREATED, "{card}");
    (m, holder, card.str("id").to_owned())
}

/// Opening a card for `holder` and topping `card` up are both refused with
/// `refusal`, and nothing is written: one card, no top-up, `available` as `before`.
async fn refused(m: &Merchant<'_>, holder: &str, card: &str, refusal: (StatusCode, &str), before: i64) {
    let (status, body) = m.open_card(holder).await;
    assert_eq!((status, body.code()), refusal, "{body}");
    let (status, body) = m.topup(card, 5_000).await;
    assert_eq!((status, body.code()), refusal, "{body}");
    assert_eq!(m.get("/v1/cards?limit=100").await.count("data"), 1, "no second card");
    assert_eq!(m.get(&format!("/v1/cards/{card}/topups")).await.count("data"), 0, "no top-up record");
    assert_eq!(m.available().await, before, "nothing debited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_card_name_opens_and_funds_nothing() {
    let svc = Service::temp(&[]);
    let (m, holder, card) = merchant_with_card(&svc).await;
    let (merchant, before) = (format!("/admin/v1/merchants/{}", m.id), m.available().await);
    svc.admin_ok(Method::PATCH, &merchant, json!({"allowed_card_names": []})).await;

    refused(&m, &holder, &card, (StatusCode::FORBIDDEN, "forbidden"), before).await;

    // Allowed again: both work.
    svc.admin_ok(Method::PATCH, &merchant, json!({"allowed_card_names": ["PELAGO_VIRTUAL_USD"]})).await;
    assert_eq!(m.open_card(&holder).await.0, StatusCode::CREATED);
    assert_eq!(m.topup(&card, 5_000).await.0, StatusCode::CREATED);
    ledger_balanced(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_channel_or_bin_opens_and_funds_nothing() {
    let svc = Service::temp(&[]);
    let (m, holder, card) = merchant_with_card(&svc).await;
    let before = m.available().await;
    let channel = svc.first_channel().await;

    svc.admin_ok(Method::PATCH, &format!("/admin/v1/channels/{channel}"), json!({"status": "disabled"}))
        .await;
    refused(&m, &holder, &card, (StatusCode::CONFLICT, "invalid_state"), before).await;

    // Channel active again, the BIN inactive: still nothing.
    svc.admin_ok(Method::PATCH, &format!("/admin/v1/channels/{channel}"), json!({"status": "active"})).await;
    svc.admin_ok(Method::PATCH, "/admin/v1/bins/424242", json!({"status": "inactive"})).await;
    assert_eq!(m.open_card(&holder).await.0, StatusCode::CONFLICT);
    assert_eq!(m.topup(&card, 5_000).await.0, StatusCode::CONFLICT);
    assert_eq!(m.available().await, before, "nothing debited");

    svc.admin_ok(Method::PATCH, "/admin/v1/bins/424242", json!({"status": "active"})).await;
    assert_eq!(m.topup(&card, 5_000).await.0, StatusCode::CREATED);
    ledger_balanced(&svc).await;
}
