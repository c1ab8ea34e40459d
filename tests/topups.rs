//! Master-account top-ups over real HTTP with the sandbox (issues 5 and 6).

mod common;

use std::time::{Duration, Instant};

use common::{Key, Service, available, cardholder_body, ledger_balanced, send};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A master-account merchant with `deposit` USD and a top-up fee of 100 + 150 bps.
async fn merchant_with_cards(
    svc: &Service,
    deposit: i64,
    cards: usize,
    topup_fixed: i64,
    rate_bps: i64,
) -> (String, Key, Vec<String>) {
    let (id, key, _) = svc.merchant("Topups").await;
    svc.admin(Method::PUT, &format!("/admin/v1/merchants/{id}/fees"))
        .json(&json!({"currency": "USD", "topup_fee": {"fixed": topup_fixed, "rate_bps": rate_bps}}))
        .send()
        .await
        .unwrap();
    let (status, _) = send(
        svc,
        &key,
        Method::POST,
        "/v1/test_helpers/deposits",
        Some(&json!({"amount": {"value": deposit, "currency": "USD"}, "network": "TRON"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, holder) =
        send(svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Lovelace"))).await;
    let mut ids = Vec::new();
    for _ in 0..cards {
        let (status, card) =
            send(svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
        assert_eq!(status, StatusCode::CREATED, "{card}");
        ids.push(card["id"].as_str().unwrap().to_owned());
    }
    (id, key, ids)
}

async fn channel_balance(svc: &Service, key: &Key, card: &str) -> i64 {
    let (status, d) = send(svc, key, Method::GET, &format!("/v1/cards/{card}/details"), None).await;
    assert_eq!(status, StatusCode::OK);
    d["balance"]["value"].as_i64().unwrap()
}

async fn fault(svc: &Service, operation: &str, behavior: &str) {
    let channels: Value =
        svc.admin(Method::GET, "/admin/v1/channels").send().await.unwrap().json().await.unwrap();
    let channel = channels["data"][0]["id"].as_str().unwrap().to_owned();
    let r = svc
        .admin(Method::POST, &format!("/admin/v1/test_helpers/channels/{channel}/faults"))
        .json(&json!({"operation": operation, "behavior": behavior, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn topup(svc: &Service, key: &Key, card: &str, value: i64) -> (StatusCode, Value) {
    send(
        svc,
        key,
        Method::POST,
        &format!("/v1/cards/{card}/topups"),
        Some(&json!({"amount": {"value": value, "currency": "USD"}})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topups_debit_fund_and_reverse_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_UPSTREAM_TIMEOUT_MS", "400")]);
    let (_, key, cards) = merchant_with_cards(&svc, 100_000, 1, 100, 150).await;
    let card = &cards[0];

    // 10,000 + fee 100 + 150 bps (150) = 10,250.
    let (status, t) = topup(&svc, &key, card, 10_000).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(
        (t["status"].as_str(), t["fee"]["value"].as_i64(), t["total"]["value"].as_i64()),
        (Some("succeeded"), Some(250), Some(10_250))
    );
    assert_eq!(available(&svc, &key).await, 89_750);
    let (_, c) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card}"), None).await;
    assert_eq!(c["balance"]["value"], 10_000);
    assert_eq!(channel_balance(&svc, &key, card).await, 10_000);
    let (_, txns) = send(&svc, &key, Method::GET, "/v1/balance/transactions?limit=2", None).await;
    let types: Vec<&str> =
        txns["data"].as_array().unwrap().iter().map(|t| t["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"topup") && types.contains(&"topup_fee"), "{types:?}");
    let id = t["id"].as_str().unwrap();
    let (status, got) = send(&svc, &key, Method::GET, &format!("/v1/topups/{id}"), None).await;
    assert_eq!((status, got["status"].as_str()), (StatusCode::OK, Some("succeeded")));

    // Refused by the channel: failed, and the debit reversed.
    fault(&svc, "topup", "decline").await;
    let (status, t) = topup(&svc, &key, card, 1_000).await;
    assert_eq!((status, t["status"].as_str()), (StatusCode::CREATED, Some("failed")), "{t}");
    assert!(t["failure_reason"].is_string());
    assert_eq!(available(&svc, &key).await, 89_750, "reversed");

    // Unknown outcomes: 202 processing, then succeeded by itself, funded once.
    for behavior in ["timeout", "error"] {
        fault(&svc, "topup", behavior).await;
        let (status, t) = topup(&svc, &key, card, 1_000).await;
        assert_eq!(
            (status, t["status"].as_str()),
            (StatusCode::ACCEPTED, Some("processing")),
            "{behavior}: {t}"
        );
        let id = t["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, t) = send(&svc, &key, Method::GET, &format!("/v1/topups/{id}"), None).await;
            if t["status"] == "succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "{behavior}: never finished: {t}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(channel_balance(&svc, &key, card).await, 12_000, "each funded exactly once");
    assert_eq!(available(&svc, &key).await, 89_750 - 2 * 1_115);

    // Short: 402, nothing debited, no top-up.
    let (status, err) = topup(&svc, &key, card, 1_000_000).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("insufficient_funds"))
    );
    let (_, list) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card}/topups"), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 4);

    // Spending follows: the mirror and the channel agree.
    let (status, txn) = send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/test_helpers/cards/{card}/transactions"),
        Some(&json!({"amount": {"value": 300, "currency": "USD"}, "merchant_name": "Cafe", "mcc": "5812", "status": "posted"})),
    )
    .await;
    assert_eq!((status, txn["status"].as_str()), (StatusCode::CREATED, Some("posted")));
    let (_, c) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card}"), None).await;
    assert_eq!(c["balance"]["value"], 11_700);
    assert_eq!(channel_balance(&svc, &key, card).await, 11_700);
    let (_, listed) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card}/transactions"), None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "callback and pull give one record");

    // Deleting returns what is left on the card to the merchant.
    let (status, _) = send(&svc, &key, Method::DELETE, &format!("/v1/cards/{card}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(available(&svc, &key).await, 89_750 - 2 * 1_115 + 11_700);
    ledger_balanced(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_topups_never_overdraw() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        &dir.path().join("data"),
        &[("PELAGO_RATE_LIMIT", "100000,100000"), ("PELAGO_IP_RATE_LIMIT", "100000,100000")],
    );
    // Each top-up: 1,000 + fixed fee 100 = 1,100; the balance covers exactly 150.
    let (_, key, cards) = merchant_with_cards(&svc, 150 * 1_100, 20, 100, 0).await;
    let svc = &svc;
    let key = &key;
    let results: Vec<StatusCode> = futures::stream::iter((0..200).map(|i| {
        let card = cards[i % 20].clone();
        async move { topup(svc, key, &card, 1_000).await.0 }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    let ok = results.iter().filter(|s| **s == StatusCode::CREATED).count();
    let short = results.iter().filter(|s| **s == StatusCode::PAYMENT_REQUIRED).count();
    assert_eq!((ok, short), (150, 50), "{results:?}");
    assert_eq!(available(svc, key).await, 0);
    let mut funded = 0;
    for card in &cards {
        funded += channel_balance(svc, key, card).await;
    }
    assert_eq!(funded, 150 * 1_000, "the channel funded exactly the succeeded top-ups");
    ledger_balanced(svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_freeze_unfreeze_and_topups_on_one_card_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(
        &dir.path().join("data"),
        &[("PELAGO_RATE_LIMIT", "100000,100000"), ("PELAGO_IP_RATE_LIMIT", "100000,100000")],
    );
    let (_, key, cards) = merchant_with_cards(&svc, 1_000_000, 1, 0, 0).await;
    let card = cards[0].clone();
    let svc = &svc;
    let key = &key;
    let results: Vec<(usize, StatusCode, Value)> = futures::stream::iter((0..100).map(|i| {
        let card = card.clone();
        async move {
            let (status, body) = match i % 3 {
                0 => send(svc, key, Method::POST, &format!("/v1/cards/{card}/freeze"), None).await,
                1 => send(svc, key, Method::POST, &format!("/v1/cards/{card}/unfreeze"), None).await,
                _ => topup(svc, key, &card, 100).await,
            };
            (i % 3, status, body)
        }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    // Every answer is documented: actions 200 or 409 naming the state; top-ups 201 or 409.
    for (kind, status, body) in &results {
        let allowed = match kind {
            2 => [StatusCode::CREATED, StatusCode::CONFLICT].contains(status),
            _ => [StatusCode::OK, StatusCode::CONFLICT].contains(status),
        };
        assert!(allowed, "kind {kind}: {status} {body}");
        if *status == StatusCode::CONFLICT {
            assert_eq!(body["error"]["code"], "invalid_state");
        }
    }
    let succeeded = results
        .iter()
        .filter(|(k, s, b)| *k == 2 && *s == StatusCode::CREATED && b["status"] == "succeeded")
        .count() as i64;
    // The history is a serial walk of active ⇄ frozen.
    let (_, c) = send(svc, key, Method::GET, &format!("/v1/cards/{card}"), None).await;
    let history = c["status_history"].as_array().unwrap();
    for pair in history.windows(2) {
        assert_eq!(pair[1]["from"], pair[0]["to"], "{history:?}");
    }
    assert_eq!(c["balance"]["value"].as_i64().unwrap(), succeeded * 100);
    assert_eq!(channel_balance(svc, key, &card).await, succeeded * 100, "no lost update");
    assert_eq!(available(svc, key).await, 1_000_000 - succeeded * 100);
    ledger_balanced(svc).await;
}
