//! Cards over real HTTP with the sandbox (issue 5).

mod common;

use std::time::{Duration, Instant};

use common::{Key, Service, all_bytes_under, available, ledger_balanced, send};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn cardholder(last_name: &str) -> Value {
    json!({
        "card_name": "PELAGO_VIRTUAL_USD", "reference": "user-42",
        "first_name": "Ada", "last_name": last_name, "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "line2": null, "city": "Singapore", "state": null,
                    "postal_code": "018989", "country": "SG"},
    })
}

/// A master-account merchant with a USD fee schedule and a funded balance.
async fn funded_merchant(svc: &Service, application_fee: i64, deposit: i64) -> (String, Key) {
    let (id, key, _) = svc.merchant("Cards").await;
    svc.admin(Method::PUT, &format!("/admin/v1/merchants/{id}/fees"))
        .json(&json!({"currency": "USD", "application_fee": {"fixed": application_fee}, "topup_fee": {"fixed": 100, "rate_bps": 150}}))
        .send()
        .await
        .unwrap();
    if deposit > 0 {
        let (status, _) = send(
            svc,
            &key,
            Method::POST,
            "/v1/test_helpers/deposits",
            Some(&json!({"amount": {"value": deposit, "currency": "USD"}, "network": "TRON"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    (id, key)
}

async fn active_cardholder(svc: &Service, key: &Key) -> String {
    let (status, c) = send(svc, key, Method::POST, "/v1/cardholders", Some(&cardholder("Lovelace"))).await;
    assert_eq!(status, StatusCode::CREATED);
    c["id"].as_str().unwrap().to_owned()
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap();
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_account_card_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = Service::start(&data, &[]);
    let (_, key) = funded_merchant(&svc, 500, 10_000).await;
    let holder = active_cardholder(&svc, &key).await;

    let (status, card) = send(
        &svc,
        &key,
        Method::POST,
        "/v1/cards",
        Some(&json!({"cardholder_id": holder, "reference": "c1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{card}");
    assert_eq!(card["status"], "active");
    assert_eq!(card["bin"], "424242");
    assert_eq!(card["last4"].as_str().unwrap().len(), 4);
    assert_eq!(card["balance"], json!({"value": 0, "currency": "USD"}));
    let path: Vec<&str> =
        card["status_history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap()).collect();
    assert_eq!(path, ["processing", "active"]);
    assert_eq!(available(&svc, &key).await, 9_500, "the application fee was debited");
    let id = card["id"].as_str().unwrap().to_owned();

    // Freeze / unfreeze, and the state machine's refusals name the state.
    let (status, frozen) = send(&svc, &key, Method::POST, &format!("/v1/cards/{id}/freeze"), None).await;
    assert_eq!((status, frozen["status"].as_str()), (StatusCode::OK, Some("frozen")));
    let (status, err) = send(&svc, &key, Method::POST, &format!("/v1/cards/{id}/freeze"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(err["error"]["message"].as_str().unwrap().contains("frozen"), "{err}");
    let (status, active) = send(&svc, &key, Method::POST, &format!("/v1/cards/{id}/unfreeze"), None).await;
    assert_eq!((status, active["status"].as_str()), (StatusCode::OK, Some("active")));

    // Details: live, Luhn-valid, on the BIN, no-store; never stored or logged.
    let mut pans = Vec::new();
    for _ in 0..5 {
        let r = svc.signed(&key, Method::GET, &format!("/v1/cards/{id}/details"), b"").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let d: Value = r.json().await.unwrap();
        let pan = d["pan"].as_str().unwrap().to_owned();
        assert!(pan.len() == 16 && pan.starts_with("424242") && luhn(&pan));
        assert!(pan.ends_with(card["last4"].as_str().unwrap()));
        pans.push((pan, d["cvv"].as_str().unwrap().to_owned()));
    }

    // Spending over the (zero) balance is declined and changes nothing.
    let (status, txn) = send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/test_helpers/cards/{id}/transactions"),
        Some(&json!({"amount": {"value": 1_000, "currency": "USD"}, "merchant_name": "Cafe", "mcc": "5812", "status": "posted"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{txn}");
    assert_eq!(txn["status"], "declined");
    let (_, listed) = send(&svc, &key, Method::GET, &format!("/v1/cards/{id}/transactions"), None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "one record whether by callback or pull");

    // Another merchant sees nothing of it.
    let (_, other, _) = svc.merchant("Other").await;
    for path in
        [format!("/v1/cards/{id}"), format!("/v1/cards/{id}/details"), format!("/v1/cards/{id}/transactions")]
    {
        let (status, _) = send(&svc, &other, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }

    // Delete: terminal.
    let (status, deleted) = send(&svc, &key, Method::DELETE, &format!("/v1/cards/{id}"), None).await;
    assert_eq!((status, deleted["status"].as_str()), (StatusCode::OK, Some("deleted")));
    let (status, _) = send(&svc, &key, Method::POST, &format!("/v1/cards/{id}/unfreeze"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (_, events) = send(&svc, &key, Method::GET, "/v1/events?limit=100", None).await;
    let types: Vec<&str> =
        events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in ["card.opened", "card.frozen", "card.unfrozen", "card.deleted", "transaction.created"] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    ledger_balanced(&svc).await;

    // Card data never reaches the data dir or the log.
    assert!(svc.terminate().success());
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    for (path, bytes) in all_bytes_under(&data) {
        for (pan, _) in &pans {
            assert!(!bytes.windows(pan.len()).any(|w| w == pan.as_bytes()), "a PAN is in {}", path.display());
        }
    }
    for (pan, cvv) in &pans {
        assert!(!log.contains(pan.as_str()), "a PAN is in the log");
        assert!(
            !log.contains(&format!("\"{cvv}\"")) && !log.contains(&format!("cvv={cvv}")),
            "a CVV is in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconditions_and_insufficient_funds() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let (_, key) = funded_merchant(&svc, 500, 300).await;
    let holder = active_cardholder(&svc, &key).await;
    let (status, err) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder}))).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("insufficient_funds"))
    );
    assert_eq!(available(&svc, &key).await, 300, "nothing debited");
    let (_, cards) = send(&svc, &key, Method::GET, "/v1/cards", None).await;
    assert_eq!(cards["data"].as_array().unwrap().len(), 0, "no card was created");

    for last_name in ["Reject", "Pending"] {
        let (_, c) = send(&svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder(last_name))).await;
        let (status, err) =
            send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": c["id"]}))).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("invalid_state")),
            "{last_name}"
        );
    }
    // A merchant without fees opens for free.
    let (_, free, _) = svc.merchant("Free").await;
    let holder = active_cardholder(&svc, &free).await;
    let (status, card) =
        send(&svc, &free, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder}))).await;
    assert_eq!((status, card["status"].as_str()), (StatusCode::CREATED, Some("active")));
    let (_, listed) =
        send(&svc, &free, Method::GET, &format!("/v1/cards?cardholder_id={holder}&status=active"), None)
            .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
}

async fn channel_id(svc: &Service) -> String {
    let channels: Value =
        svc.admin(Method::GET, "/admin/v1/channels").send().await.unwrap().json().await.unwrap();
    channels["data"][0]["id"].as_str().unwrap().to_owned()
}

async fn fault(svc: &Service, channel: &str, operation: &str, behavior: &str) {
    let r = svc
        .admin(Method::POST, &format!("/admin/v1/test_helpers/channels/{channel}/faults"))
        .json(&json!({"operation": operation, "behavior": behavior, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_faults_are_resolved_and_refusals_return_the_fee() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_UPSTREAM_TIMEOUT_MS", "400")]);
    let (_, key) = funded_merchant(&svc, 500, 10_000).await;
    let holder = active_cardholder(&svc, &key).await;
    let channel = channel_id(&svc).await;

    fault(&svc, &channel, "open_card", "decline").await;
    let (status, card) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder}))).await;
    assert_eq!((status, card["status"].as_str()), (StatusCode::CREATED, Some("failed")), "{card}");
    assert_eq!(available(&svc, &key).await, 10_000, "the fee came back");

    for behavior in ["timeout", "error"] {
        fault(&svc, &channel, "open_card", behavior).await;
        let (status, card) =
            send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder}))).await;
        assert_eq!(
            (status, card["status"].as_str()),
            (StatusCode::ACCEPTED, Some("processing")),
            "{behavior}: {card}"
        );
        let id = card["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, c) = send(&svc, &key, Method::GET, &format!("/v1/cards/{id}"), None).await;
            if c["status"] == "active" {
                assert_eq!(c["status_history"].as_array().unwrap().len(), 2);
                break;
            }
            assert!(Instant::now() < deadline, "{behavior}: never opened: {c}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(available(&svc, &key).await, 9_000, "two cards opened, two fees");
    ledger_balanced(&svc).await;
}
