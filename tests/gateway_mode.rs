//! Gateway funding mode over real HTTP with the sandbox: application fees and
//! top-ups paid on the checkout page (issues 4, 5 and 6).

mod common;

use common::{Key, Service, cardholder_body, ledger_balanced, send};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn gateway_merchant(svc: &Service) -> (String, Key) {
    let r = svc
        .admin(Method::POST, "/admin/v1/merchants")
        .json(&json!({
            "name": "Wallet", "funding_mode": "gateway", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
            "gateway": {"merchant_id": "gw_mch_wallet", "api_key": "gw-wallet-key-0001"},
            "fees": [{"currency": "USD", "application_fee": {"fixed": 300}, "topup_fee": {"fixed": 100, "rate_bps": 150}}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let key = Key {
        key_id: v["api_key"]["key_id"].as_str().unwrap().into(),
        secret: v["api_key"]["secret"].as_str().unwrap().into(),
    };
    (v["merchant"]["id"].as_str().unwrap().into(), key)
}

async fn event_count(svc: &Service, key: &Key, t: &str) -> usize {
    let (_, e) = send(svc, key, Method::GET, &format!("/v1/events?type={t}&limit=100"), None).await;
    e["data"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fees_and_topups_are_paid_at_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let (_, key) = gateway_merchant(&svc).await;
    let (_, holder) =
        send(&svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Lovelace"))).await;

    // The card waits for its application fee.
    let (status, card) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{card}");
    assert_eq!(card["status"], "pending_payment");
    let order = &card["application_fee_order"];
    assert_eq!(
        (order["kind"].as_str(), order["total"]["value"].as_i64(), order["status"].as_str()),
        (Some("application_fee"), Some(300), Some("pending"))
    );
    let checkout = order["checkout_url"].as_str().unwrap().to_owned();
    let page = svc.http.get(&checkout).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("3.00 USD"), "{page}");
    let card_id = card["id"].as_str().unwrap().to_owned();
    let order_id = order["id"].as_str().unwrap().to_owned();

    // Paid: the card opens; a resent callback changes nothing.
    let (status, paid) =
        send(&svc, &key, Method::POST, &format!("/v1/test_helpers/orders/{order_id}/pay"), None).await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");
    let (_, card) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card_id}"), None).await;
    assert_eq!(card["status"], "active", "{card}");
    let path: Vec<&str> =
        card["status_history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap()).collect();
    assert_eq!(path, ["pending_payment", "processing", "active"]);
    let (status, _) =
        send(&svc, &key, Method::POST, &format!("/v1/test_helpers/orders/{order_id}/resend-callback"), None)
            .await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = send(&svc, &key, Method::GET, &format!("/v1/orders/{order_id}"), None).await;
    assert_eq!(again["version"], paid["version"], "the duplicate had no effect");
    assert_eq!(event_count(&svc, &key, "order.paid").await, 1);

    // A top-up: the cardholder pays amount + fee; the principal lands in pending.
    let (status, t) = send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/cards/{card_id}/topups"),
        Some(&json!({"amount": {"value": 10_000, "currency": "USD"}})),
    )
    .await;
    assert_eq!((status, t["status"].as_str()), (StatusCode::CREATED, Some("pending_payment")), "{t}");
    assert_eq!(t["order"]["total"]["value"], 10_250);
    let tup = t["id"].as_str().unwrap().to_owned();
    let (status, _) = send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/test_helpers/orders/{}/pay", t["order"]["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, t) = send(&svc, &key, Method::GET, &format!("/v1/topups/{tup}"), None).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    // Lists and events show the top-up and the card as GET does: their orders as objects.
    let (_, listed) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card_id}/topups"), None).await;
    assert_eq!(listed["data"][0]["order"]["id"], t["order"]["id"], "{listed}");
    let (_, events) = send(&svc, &key, Method::GET, "/v1/events?type=topup.succeeded", None).await;
    assert_eq!(events["data"][0]["data"]["object"]["order"]["status"], "paid", "{events}");
    let (_, events) = send(&svc, &key, Method::GET, "/v1/events?type=card.opened", None).await;
    let opened = &events["data"][0]["data"]["object"];
    assert!(opened["application_fee_order"]["checkout_url"].is_string(), "{opened}");
    let (_, card) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card_id}"), None).await;
    assert_eq!(card["balance"]["value"], 10_000);
    let (_, balance) = send(&svc, &key, Method::GET, "/v1/balance", None).await;
    assert_eq!(balance, json!({"balances": [{"currency": "USD", "available": 0, "pending": 10_000}]}));

    // An expired top-up order cancels the top-up.
    let (_, t) = send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/cards/{card_id}/topups"),
        Some(&json!({"amount": {"value": 500, "currency": "USD"}})),
    )
    .await;
    send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/test_helpers/orders/{}/expire", t["order"]["id"].as_str().unwrap()),
        None,
    )
    .await;
    let (_, t) =
        send(&svc, &key, Method::GET, &format!("/v1/topups/{}", t["id"].as_str().unwrap()), None).await;
    assert_eq!(t["status"], "canceled");

    // A failed application-fee order cancels the card.
    let (_, card2) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
    let order2 = card2["application_fee_order"]["id"].as_str().unwrap().to_owned();
    let (_, failed) =
        send(&svc, &key, Method::POST, &format!("/v1/test_helpers/orders/{order2}/fail"), None).await;
    assert_eq!(failed["status"], "failed");
    let (_, card2) =
        send(&svc, &key, Method::GET, &format!("/v1/cards/{}", card2["id"].as_str().unwrap()), None).await;
    assert_eq!(card2["status"], "canceled");

    let (_, orders) = send(&svc, &key, Method::GET, "/v1/orders", None).await;
    assert_eq!(orders["data"].as_array().unwrap().len(), 4);
    let check = ledger_balanced(&svc).await;
    assert_eq!(check["entries"], 2, "the two paid orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_card_the_channel_refuses_is_refunded_whole() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let (_, key) = gateway_merchant(&svc).await;
    let (_, holder) =
        send(&svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Lovelace"))).await;
    let (_, card) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
    let order_id = card["application_fee_order"]["id"].as_str().unwrap().to_owned();
    let channels: Value =
        svc.admin(Method::GET, "/admin/v1/channels").send().await.unwrap().json().await.unwrap();
    let channel = channels["data"][0]["id"].as_str().unwrap().to_owned();
    svc.admin(Method::POST, &format!("/admin/v1/test_helpers/channels/{channel}/faults"))
        .json(&json!({"operation": "open_card", "behavior": "decline", "count": 1}))
        .send()
        .await
        .unwrap();
    send(&svc, &key, Method::POST, &format!("/v1/test_helpers/orders/{order_id}/pay"), None).await;
    let (_, card) =
        send(&svc, &key, Method::GET, &format!("/v1/cards/{}", card["id"].as_str().unwrap()), None).await;
    assert_eq!(card["status"], "failed", "{card}");
    assert_eq!(card["application_fee_order"]["status"], "refunded");
    assert_eq!(event_count(&svc, &key, "order.refunded").await, 1);
    let check = ledger_balanced(&svc).await;
    assert_eq!(check["entries"], 2, "the collection and its mirror");
}
