//! Gateway funding mode over real HTTP with the sandbox: application fees and
//! top-ups paid on the checkout page (issues 4, 5 and 6).

mod common;

use common::{Json, Merchant, Service, ledger_balanced};
use reqwest::StatusCode;
use serde_json::json;

async fn gateway_merchant(svc: &Service) -> Merchant<'_> {
    let fees = json!({"application_fee": {"fixed": 300}, "topup_fee": {"fixed": 100, "rate_bps": 150}});
    svc.gateway_merchant("gw_mch_wallet", "gw-wallet-key-0001", fees).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fees_and_topups_are_paid_at_checkout() {
    let svc = Service::temp(&[]);
    let m = gateway_merchant(&svc).await;
    let (_, holder) = m.cardholder("Lovelace").await;

    // The card waits for its application fee.
    let (status, card) = m.post("/v1/cards", json!({"cardholder_id": holder["id"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{card}");
    assert_eq!(card["status"], "pending_payment");
    let order = &card["application_fee_order"];
    assert_eq!(
        (order["kind"].as_str(), order["total"]["value"].as_i64(), order["status"].as_str()),
        (Some("application_fee"), Some(300), Some("pending"))
    );
    let checkout = order.str("checkout_url").to_owned();
    let page = svc.http.get(&checkout).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("3.00 USD"), "{page}");
    let card_id = card.str("id").to_owned();
    let order_id = order.str("id").to_owned();

    // Paid: the card opens; a resent callback changes nothing.
    let (status, paid) = m.act(&format!("/v1/test_helpers/orders/{order_id}/pay")).await;
    assert_eq!((status, paid.str("status")), (StatusCode::OK, "paid"), "{paid}");
    let card = m.get(&format!("/v1/cards/{card_id}")).await;
    assert_eq!(card["status"], "active", "{card}");
    let path: Vec<&str> = card.strs("status_history", "to");
    assert_eq!(path, ["pending_payment", "processing", "active"]);
    let (status, _) = m.act(&format!("/v1/test_helpers/orders/{order_id}/resend-callback")).await;
    assert_eq!(status, StatusCode::OK);
    let again = m.get(&format!("/v1/orders/{order_id}")).await;
    assert_eq!(again["version"], paid["version"], "the duplicate had no effect");
    assert_eq!(m.events("order.paid").await, 1);

    // A top-up: the cardholder pays amount + fee; the principal lands in pending.
    let (status, t) = m.topup(&card_id, 10_000).await;
    assert_eq!((status, t.str("status")), (StatusCode::CREATED, "pending_payment"), "{t}");
    assert_eq!(t["order"]["total"]["value"], 10_250);
    let tup = t.str("id").to_owned();
    let (status, _) = m.act(&format!("/v1/test_helpers/orders/{}/pay", t.str("order.id"))).await;
    assert_eq!(status, StatusCode::OK);
    let t = m.get(&format!("/v1/topups/{tup}")).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    // Lists and events show the top-up and the card as GET does: their orders as objects.
    let listed = m.get(&format!("/v1/cards/{card_id}/topups")).await;
    assert_eq!(listed["data"][0]["order"]["id"], t["order"]["id"], "{listed}");
    let events = m.get("/v1/events?type=topup.succeeded").await;
    assert_eq!(events["data"][0]["data"]["object"]["order"]["status"], "paid", "{events}");
    let events = m.get("/v1/events?type=card.opened").await;
    let opened = &events["data"][0]["data"]["object"];
    assert!(opened["application_fee_order"]["checkout_url"].is_string(), "{opened}");
    let card = m.get(&format!("/v1/cards/{card_id}")).await;
    assert_eq!(card["balance"]["value"], 10_000);
    let balance = m.get("/v1/balance").await;
    assert_eq!(balance, json!({"balances": [{"currency": "USD", "available": 0, "pending": 10_000}]}));

    // An expired top-up order cancels the top-up.
    let (_, t) = m.topup(&card_id, 500).await;
    m.act(&format!("/v1/test_helpers/orders/{}/expire", t.str("order.id"))).await;
    let t = m.get(&format!("/v1/topups/{}", t.str("id"))).await;
    assert_eq!(t["status"], "canceled");

    // A failed application-fee order cancels the card.
    let (_, card2) = m.post("/v1/cards", json!({"cardholder_id": holder["id"]})).await;
    let order2 = card2.str("application_fee_order.id").to_owned();
    let (_, failed) = m.act(&format!("/v1/test_helpers/orders/{order2}/fail")).await;
    assert_eq!(failed["status"], "failed");
    let card2 = m.get(&format!("/v1/cards/{}", card2.str("id"))).await;
    assert_eq!(card2["status"], "canceled");

    let orders = m.get("/v1/orders").await;
    assert_eq!(orders.count("data"), 4);
    let check = ledger_balanced(&svc).await;
    assert_eq!(check["entries"], 2, "the two paid orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_card_the_channel_refuses_is_refunded_whole() {
    let svc = Service::temp(&[]);
    let m = gateway_merchant(&svc).await;
    let card = m.card().await;
    let order_id = card.str("application_fee_order.id").to_owned();
    let channel = svc.first_channel().await;
    svc.channel_fault(&channel, "open_card", "decline").await;
    m.act(&format!("/v1/test_helpers/orders/{order_id}/pay")).await;
    let card = m.get(&format!("/v1/cards/{}", card.str("id"))).await;
    assert_eq!(card["status"], "failed", "{card}");
    assert_eq!(card["application_fee_order"]["status"], "refunded");
    assert_eq!(m.events("order.refunded").await, 1);
    let check = ledger_balanced(&svc).await;
    assert_eq!(check["entries"], 2, "the collection and its mirror");
}
