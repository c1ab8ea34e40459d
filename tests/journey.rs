//! The newcomer's journey (issue 9), over real HTTP against the real binary
//! with the sandbox, in both funding modes: merchant, cardholder, card, the
//! application fee, a top-up, spending, transactions, a receipt verified and
//! redeemed once, billing and settlement by moving the clock, every webhook
//! delivered and verified by the `standardwebhooks` library, the ledger check.

mod common;

use std::time::{Duration, Instant};

use common::{Key, Service, cardholder_body, clock, ledger_balanced, receiver::Receiver, send};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn admin(svc: &Service, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let r = svc.admin(method, path).json(&body).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn until(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !probe().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spends, lists, issues a receipt for the spending and redeems it once.
async fn spend_and_redeem(svc: &Service, key: &Key, card: &str) {
    let (status, txn) = send(svc, key, Method::POST, &format!("/v1/test_helpers/cards/{card}/transactions"),
        Some(&json!({"amount": {"value": 2_500, "currency": "USD"}, "merchant_name": "Blue Bottle", "mcc": "5814", "status": "posted"}))).await;
    assert_eq!((status, txn["status"].as_str()), (StatusCode::CREATED, Some("posted")), "{txn}");
    let (_, listed) = send(svc, key, Method::GET, &format!("/v1/cards/{card}/transactions"), None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let (status, receipt) =
        send(svc, key, Method::POST, "/v1/receipts", Some(&json!({"transaction_id": txn["id"]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    let polyflow = |path: &str| svc.http.post(svc.url(path)).bearer_auth(common::POLYFLOW_TOKEN);
    let verified: Value = polyflow("/polyflow/v1/receipts/verify")
        .json(&json!({"receipt": receipt["receipt"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (verified["valid"].as_bool(), verified["redeemed"].as_bool()),
        (Some(true), Some(false)),
        "{verified}"
    );
    let first = polyflow(&format!("/polyflow/v1/receipts/{}/redeem", receipt["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = polyflow(&format!("/polyflow/v1/receipts/{}/redeem", receipt["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::CONFLICT);
}

/// Every event of the merchant arrives at the receiver, verified.
async fn every_webhook_verified(svc: &Service, key: &Key, receiver: &Receiver) {
    let (_, events) = send(svc, key, Method::GET, "/v1/events?limit=100", None).await;
    let ids: Vec<String> =
        events["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert!(ids.len() >= 6, "{events}");
    until("every event delivered", async || {
        let delivered = receiver.delivered();
        ids.iter().all(|id| delivered.contains_key(id))
    })
    .await;
    for r in receiver.received() {
        assert!(r["verified"].as_array().unwrap().iter().all(|v| v == true), "an unverified delivery: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_account_journey() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    let (merchant, key, whsec) = svc.merchant("Acme Wallet").await;
    let receiver = Receiver::start(dir.path(), "master", 0, 0, 0, &[&whsec]);
    admin(
        &svc,
        Method::PATCH,
        &format!("/admin/v1/merchants/{merchant}"),
        json!({"webhook_url": receiver.url()}),
    )
    .await;
    admin(&svc, Method::PUT, &format!("/admin/v1/merchants/{merchant}/fees"), json!({"currency": "USD",
        "application_fee": {"fixed": 500}, "topup_fee": {"fixed": 100, "rate_bps": 150}, "monthly_fee": {"fixed": 200}})).await;
    send(
        &svc,
        &key,
        Method::POST,
        "/v1/test_helpers/deposits",
        Some(&json!({"amount": {"value": 100_000, "currency": "USD"}, "network": "TRON"})),
    )
    .await;

    let (_, holder) =
        send(&svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Lovelace"))).await;
    assert_eq!(holder["status"], "active");
    let (status, card) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
    assert_eq!((status, card["status"].as_str()), (StatusCode::CREATED, Some("active")));
    let card = card["id"].as_str().unwrap().to_owned();
    let (_, topup) = send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/cards/{card}/topups"),
        Some(&json!({"amount": {"value": 10_000, "currency": "USD"}})),
    )
    .await;
    assert_eq!(topup["status"], "succeeded");
    spend_and_redeem(&svc, &key, &card).await;

    // The 1st of next month on the service clock: the scheduler bills it.
    let billed_at = clock::month_start_after(clock::now(&svc).await, 1) + chrono::Duration::seconds(5);
    clock::set(&svc, billed_at).await;
    let run_path = format!("/admin/v1/billing/runs/{}", clock::period(billed_at));
    until("next month's run", async || {
        admin(&svc, Method::GET, &run_path, json!({})).await.1["status"] == "completed"
    })
    .await;
    let (_, balance) = send(&svc, &key, Method::GET, "/v1/balance", None).await;
    assert_eq!(balance["balances"][0]["available"], 100_000 - 500 - 10_250 - 200);
    ledger_balanced(&svc).await;
    every_webhook_verified(&svc, &key, &receiver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_journey() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    // Day D is tomorrow on the service clock; the collection is made at 09:00.
    let day_d = clock::day_after(clock::now(&svc).await, 1, 9, 0, 0);
    clock::set(&svc, day_d).await;
    let (status, created) = admin(&svc, Method::POST, "/admin/v1/merchants", json!({
        "name": "Wallet", "funding_mode": "gateway", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
        "gateway": {"merchant_id": "gw_journey", "api_key": "gw-journey-key-1"},
        "fees": [{"currency": "USD", "application_fee": {"fixed": 300}, "topup_fee": {"fixed": 100, "rate_bps": 150}}]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let merchant = created["merchant"]["id"].as_str().unwrap().to_owned();
    let key = Key {
        key_id: created["api_key"]["key_id"].as_str().unwrap().into(),
        secret: created["api_key"]["secret"].as_str().unwrap().into(),
    };
    let receiver =
        Receiver::start(dir.path(), "gateway", 0, 0, 0, &[created["webhook_secret"].as_str().unwrap()]);
    admin(
        &svc,
        Method::PATCH,
        &format!("/admin/v1/merchants/{merchant}"),
        json!({"webhook_url": receiver.url()}),
    )
    .await;

    let (_, holder) =
        send(&svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Lovelace"))).await;
    let (_, card) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
    assert_eq!(card["status"], "pending_payment");
    let checkout = card["application_fee_order"]["checkout_url"].as_str().unwrap().to_owned();
    assert!(svc.http.get(&checkout).send().await.unwrap().text().await.unwrap().contains("3.00 USD"));
    send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/test_helpers/orders/{}/pay", card["application_fee_order"]["id"].as_str().unwrap()),
        None,
    )
    .await;
    let card = card["id"].as_str().unwrap().to_owned();
    let (_, opened) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card}"), None).await;
    assert_eq!(opened["status"], "active");
    let (_, topup) = send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/cards/{card}/topups"),
        Some(&json!({"amount": {"value": 10_000, "currency": "USD"}})),
    )
    .await;
    send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/test_helpers/orders/{}/pay", topup["order"]["id"].as_str().unwrap()),
        None,
    )
    .await;
    let (_, topup) =
        send(&svc, &key, Method::GET, &format!("/v1/topups/{}", topup["id"].as_str().unwrap()), None).await;
    assert_eq!(topup["status"], "succeeded");
    spend_and_redeem(&svc, &key, &card).await;

    // T+1: the next day's settlement (fired by the scheduler when the clock passes 01:00) makes it available.
    let (_, balance) = send(&svc, &key, Method::GET, "/v1/balance", None).await;
    assert_eq!(balance, json!({"balances": [{"currency": "USD", "available": 0, "pending": 10_000}]}));
    let settled_at = clock::day_after(day_d, 1, 1, 0, 5);
    clock::set(&svc, settled_at).await;
    let run_path = format!("/admin/v1/settlement/runs/{}", clock::date(settled_at));
    until("the settlement of D+1", async || {
        admin(&svc, Method::GET, &run_path, json!({})).await.1["status"] == "completed"
    })
    .await;
    let (_, balance) = send(&svc, &key, Method::GET, "/v1/balance", None).await;
    assert_eq!(balance, json!({"balances": [{"currency": "USD", "available": 10_000, "pending": 0}]}));
    ledger_balanced(&svc).await;
    every_webhook_verified(&svc, &key, &receiver).await;
}

#[test]
fn the_clock_arithmetic_of_the_tests_rolls_over_months_and_years() {
    let at = clock::parse("2031-12-31T23:59:59Z");
    assert_eq!(clock::rfc3339(clock::month_start_after(at, 0)), "2031-12-01T00:00:00Z");
    assert_eq!(clock::rfc3339(clock::month_start_after(at, 1)), "2032-01-01T00:00:00Z");
    assert_eq!(clock::rfc3339(clock::month_start_after(at, 14)), "2033-02-01T00:00:00Z");
    assert_eq!(clock::rfc3339(clock::day_after(at, 1, 1, 0, 5)), "2032-01-01T01:00:05Z");
    assert_eq!((clock::period(at), clock::date(at)), ("2031-12".to_owned(), "2031-12-31".to_owned()));
}

/// These tests again, with the real time far from today (`common::far_dates`).
#[test]
fn far_from_today() {
    common::far_dates::rerun_this_binary_far_from_today("far_from_today");
}
