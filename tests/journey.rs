//! The newcomer's journey (issue 9), over real HTTP against the real binary
//! with the sandbox, in both funding modes: merchant, cardholder, card, the
//! application fee, a top-up, spending, transactions, a receipt verified and
//! redeemed once, billing and settlement by moving the clock, every webhook
//! delivered and verified by the `standardwebhooks` library, the ledger check.

mod common;

use common::{Json, Merchant, Service, clock, ledger_balanced, receiver::Receiver, secs};
use reqwest::StatusCode;
use serde_json::json;

/// Spends, lists, issues a receipt for the spending and redeems it once.
async fn spend_and_redeem(m: &Merchant<'_>, card: &str) {
    let svc = m.svc;
    let (status, txn) = m.post(&format!("/v1/test_helpers/cards/{card}/transactions"), json!({"amount": {"value": 2_500, "currency": "USD"}, "merchant_name": "Blue Bottle", "mcc": "5814", "status": "posted"})).await;
    assert_eq!((status, txn.str("status")), (StatusCode::CREATED, "posted"), "{txn}");
    let listed = m.get(&format!("/v1/cards/{card}/transactions")).await;
    assert_eq!(listed.count("data"), 1);
    let (status, receipt) = m.post("/v1/receipts", json!({"transaction_id": txn["id"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    let verify = json!({"receipt": receipt["receipt"]});
    let (_, verified) = svc.polyflow("/polyflow/v1/receipts/verify", Some(verify)).await;
    assert_eq!(
        (verified["valid"].as_bool(), verified["redeemed"].as_bool()),
        (Some(true), Some(false)),
        "{verified}"
    );
    let redeem = format!("/polyflow/v1/receipts/{}/redeem", receipt.str("id"));
    assert_eq!(svc.polyflow(&redeem, None).await.0, StatusCode::OK);
    assert_eq!(svc.polyflow(&redeem, None).await.0, StatusCode::CONFLICT);
}

/// Every event of the merchant arrives at the receiver, verified.
async fn every_webhook_verified(m: &Merchant<'_>, receiver: &Receiver) {
    let events = m.get("/v1/events?limit=100").await;
    let ids: Vec<String> =
        events["data"].as_array().unwrap().iter().map(|e| e.str("id").to_owned()).collect();
    assert!(ids.len() >= 6, "{events}");
    receiver.wait_delivered(&ids, secs(60)).await;
    for r in receiver.received() {
        assert!(r["verified"].as_array().unwrap().iter().all(|v| v == true), "an unverified delivery: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_account_journey() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    let m = svc.merchant("Acme Wallet").await;
    let receiver = Receiver::start(dir.path(), "master", 0, 0, 0, &[&m.webhook_secret]);
    m.set_webhook_url(&receiver.url()).await;
    m.fees(json!({"currency": "USD",
        "application_fee": {"fixed": 500}, "topup_fee": {"fixed": 100, "rate_bps": 150}, "monthly_fee": {"fixed": 200}})).await;
    m.deposit(100_000).await;

    let (_, holder) = m.cardholder("Lovelace").await;
    assert_eq!(holder["status"], "active");
    let (status, card) = m.post("/v1/cards", json!({"cardholder_id": holder["id"]})).await;
    assert_eq!((status, card.str("status")), (StatusCode::CREATED, "active"));
    let card = card.str("id").to_owned();
    let (_, topup) = m.topup(&card, 10_000).await;
    assert_eq!(topup["status"], "succeeded");
    spend_and_redeem(&m, &card).await;

    // The 1st of next month on the service clock: the scheduler bills it.
    let billed_at = clock::month_start_after(clock::now(&svc).await, 1) + chrono::Duration::seconds(5);
    clock::set(&svc, billed_at).await;
    let run_path = format!("/admin/v1/billing/runs/{}", clock::period(billed_at));
    svc.admin_poll(&run_path, secs(60), |run| run["status"] == "completed").await;
    let balance = m.get("/v1/balance").await;
    assert_eq!(balance["balances"][0]["available"], 100_000 - 500 - 10_250 - 200);
    ledger_balanced(&svc).await;
    every_webhook_verified(&m, &receiver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_journey() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    // Day D is tomorrow on the service clock; the collection is made at 09:00.
    let day_d = clock::day_after(clock::now(&svc).await, 1, 9, 0, 0);
    clock::set(&svc, day_d).await;
    let m = svc.merchant_with(json!({
        "name": "Wallet", "funding_mode": "gateway", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
        "gateway": {"merchant_id": "gw_journey", "api_key": "gw-journey-key-1"},
        "fees": [{"currency": "USD", "application_fee": {"fixed": 300}, "topup_fee": {"fixed": 100, "rate_bps": 150}}]})).await;
    let receiver = Receiver::start(dir.path(), "gateway", 0, 0, 0, &[&m.webhook_secret]);
    m.set_webhook_url(&receiver.url()).await;

    let (_, holder) = m.cardholder("Lovelace").await;
    let (_, card) = m.post("/v1/cards", json!({"cardholder_id": holder["id"]})).await;
    assert_eq!(card["status"], "pending_payment");
    let checkout = card.str("application_fee_order.checkout_url").to_owned();
    assert!(svc.http.get(&checkout).send().await.unwrap().text().await.unwrap().contains("3.00 USD"));
    m.act(&format!("/v1/test_helpers/orders/{}/pay", card.str("application_fee_order.id"))).await;
    let card = card.str("id").to_owned();
    let opened = m.get(&format!("/v1/cards/{card}")).await;
    assert_eq!(opened["status"], "active");
    let (_, topup) = m.topup(&card, 10_000).await;
    m.act(&format!("/v1/test_helpers/orders/{}/pay", topup.str("order.id"))).await;
    let topup = m.get(&format!("/v1/topups/{}", topup.str("id"))).await;
    assert_eq!(topup["status"], "succeeded");
    spend_and_redeem(&m, &card).await;

    // T+1: the next day's settlement (fired by the scheduler when the clock passes 01:00) makes it available.
    let balance = m.get("/v1/balance").await;
    assert_eq!(balance, json!({"balances": [{"currency": "USD", "available": 0, "pending": 10_000}]}));
    let settled_at = clock::day_after(day_d, 1, 1, 0, 5);
    clock::set(&svc, settled_at).await;
    let run_path = format!("/admin/v1/settlement/runs/{}", clock::date(settled_at));
    svc.admin_poll(&run_path, secs(60), |run| run["status"] == "completed").await;
    let balance = m.get("/v1/balance").await;
    assert_eq!(balance, json!({"balances": [{"currency": "USD", "available": 10_000, "pending": 0}]}));
    ledger_balanced(&svc).await;
    every_webhook_verified(&m, &receiver).await;
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
