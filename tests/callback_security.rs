//! Issue 18 C1, M1, M2 over real HTTP with the sandbox: a signed callback is a
//! notification, not proof (SECURITY.md "Callbacks from upstreams"). Forged
//! callbacks signed with keys a merchant or another channel holds change
//! nothing; genuine ones still have exactly one effect; receipts are only for
//! posted purchases, re-checked when verified or redeemed.

mod common;

use common::{Key, POLYFLOW_TOKEN, Service, available, cardholder_body, ledger_balanced, send};
use pelago_card::upstream::callbacks::sign;
use pelago_storage::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn signed_callback(svc: &Service, path: &str, header: &str, key: &str, body: &Value) -> StatusCode {
    let bytes = serde_json::to_vec(body).unwrap();
    let signature = sign(key.as_bytes(), Timestamp::now_real().unix_seconds(), &bytes);
    svc.http.post(svc.url(path)).header(header, signature).body(bytes).send().await.unwrap().status()
}

async fn gateway_callback(svc: &Service, api_key: &str, body: &Value) -> StatusCode {
    signed_callback(svc, "/callbacks/gateway", "x-gateway-signature", api_key, body).await
}

async fn channel_callback(svc: &Service, channel: &str, secret: &str, body: &Value) -> StatusCode {
    signed_callback(svc, &format!("/callbacks/channels/{channel}"), "x-channel-signature", secret, body).await
}

/// A merchant created by the operator with `body`; its id and API key.
async fn merchant(svc: &Service, body: Value) -> (String, Key) {
    let r = svc.admin(Method::POST, "/admin/v1/merchants").json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let key = Key {
        key_id: v["api_key"]["key_id"].as_str().unwrap().into(),
        secret: v["api_key"]["secret"].as_str().unwrap().into(),
    };
    (v["merchant"]["id"].as_str().unwrap().into(), key)
}

/// A gateway-funded merchant on its own gateway account: application fee 300, top-up fee 100.
async fn gateway_merchant(svc: &Service, account: &str, api_key: &str) -> Key {
    merchant(
        svc,
        json!({
            "name": account, "funding_mode": "gateway", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
            "gateway": {"merchant_id": account, "api_key": api_key},
            "fees": [{"currency": "USD", "application_fee": {"fixed": 300}, "topup_fee": {"fixed": 100}}],
        }),
    )
    .await
    .1
}

/// A card in `pending_payment` and its application-fee order.
async fn unpaid_card(svc: &Service, key: &Key) -> (String, Value) {
    let (_, holder) =
        send(svc, key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Lovelace"))).await;
    let (status, card) =
        send(svc, key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
    assert_eq!((status, card["status"].as_str()), (StatusCode::CREATED, Some("pending_payment")), "{card}");
    (card["id"].as_str().unwrap().into(), card["application_fee_order"].clone())
}

fn order_paid(account: &str, order: &Value, amount: i64) -> Value {
    json!({"event_id": format!("evt_forged_{}_{amount}", order["id"].as_str().unwrap()), "merchant_id": account,
           "type": "order.updated", "data": {
        "id": order["gateway_order_id"], "order_id": order["id"], "status": "paid",
        "amount": {"value": amount, "currency": "USD"}, "at": "2026-11-29T12:00:00Z"}})
}

async fn get(svc: &Service, key: &Key, path: &str) -> Value {
    send(svc, key, Method::GET, path, None).await.1
}

async fn event_count(svc: &Service, key: &Key, t: &str) -> usize {
    get(svc, key, &format!("/v1/events?type={t}&limit=100")).await["data"].as_array().unwrap().len()
}

/// `POST /callbacks/gateway` answers with `status` so far, from `/metrics`.
async fn gateway_callbacks_answered(svc: &Service, status: u16) -> u64 {
    let text = svc.http.get(svc.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = format!(
        "pelago_http_requests_total{{method=\"POST\",route=\"/callbacks/gateway\",status=\"{status}\"}} "
    );
    text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

async fn unbound_metric(svc: &Service, source: &str) -> u64 {
    let text = svc.http.get(svc.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = format!("pelago_callbacks_unbound_total{{source=\"{source}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_gateway_callbacks_change_nothing_and_a_genuine_payment_settles_once() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);

    // (1) A master-account merchant that brought its own gateway account signs a deposit.
    let (minter_id, minter) = merchant(
        &svc,
        json!({
            "name": "Minter", "funding_mode": "master_account", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
            "gateway": {"merchant_id": "gw_minter", "api_key": "gw-minter-key-0001"},
        }),
    )
    .await;
    let (status, address) = send(
        &svc,
        &minter,
        Method::POST,
        "/v1/deposit-addresses",
        Some(&json!({"currency": "USD", "network": "TRON"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{address}");
    let deposit = |id: &str, account: &str, value: i64| {
        json!({"event_id": format!("evt_{id}_{account}_{value}"), "merchant_id": account,
               "type": "deposit.credited", "data": {
            "id": id, "address": address["address"], "network": "TRON",
            "amount": {"value": value, "currency": "USD"}, "at": "2026-11-29T12:00:00Z"}})
    };
    let forged = deposit("gdp_never_made", "gw_minter", 9_999_999_999);
    assert_eq!(gateway_callback(&svc, "gw-minter-key-0001", &forged).await, StatusCode::BAD_REQUEST);
    assert_eq!(available(&svc, &minter).await, 0, "nothing credited on the callback alone");
    // A genuine deposit is credited with what the gateway holds; a copy claiming more is refused.
    let (status, genuine) = send(
        &svc,
        &minter,
        Method::POST,
        "/v1/test_helpers/deposits",
        Some(&json!({"amount": {"value": 5_000, "currency": "USD"}, "network": "TRON"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{genuine}");
    let real_id = genuine["gateway_deposit_id"].as_str().unwrap();
    let inflated = deposit(real_id, "gw_minter", 9_999_999_999);
    assert_eq!(gateway_callback(&svc, "gw-minter-key-0001", &inflated).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        gateway_callback(&svc, "gw-minter-key-0001", &deposit(real_id, "gw_minter", 5_000)).await,
        StatusCode::OK
    );
    assert_eq!(available(&svc, &minter).await, 5_000, "credited once, with the gateway's amount");
    // Payouts: a genuine payout's callback is bound, compared and confirmed (200);
    // a payout the signer never made is refused.
    svc.admin(Method::PUT, &format!("/admin/v1/merchants/{minter_id}/withdrawal-addresses"))
        .json(&json!({"addresses": [{"address": "TMINTER1", "network": "TRON"}]}))
        .send()
        .await
        .unwrap();
    let (ok_before, refused_before) =
        (gateway_callbacks_answered(&svc, 200).await, gateway_callbacks_answered(&svc, 400).await);
    let w: Value = svc
        .admin(Method::POST, &format!("/admin/v1/merchants/{minter_id}/withdrawals"))
        .json(&json!({"amount": {"value": 1_000, "currency": "USD"}, "address": "TMINTER1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["status"], "succeeded", "{w}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while gateway_callbacks_answered(&svc, 200).await == ok_before {
        assert!(std::time::Instant::now() < deadline, "the payout callback was never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(gateway_callbacks_answered(&svc, 400).await, refused_before);
    let payout = json!({"event_id": "evt_forged_payout", "merchant_id": "gw_minter", "type": "payout.updated",
        "data": {"id": "gpo_never_made", "request_id": "req_never_made", "status": "failed", "reason": "forged",
                 "amount": {"value": 1_000, "currency": "USD"}}});
    assert_eq!(gateway_callback(&svc, "gw-minter-key-0001", &payout).await, StatusCode::UNAUTHORIZED);
    assert_eq!(available(&svc, &minter).await, 4_000, "the forged failure released nothing");

    // (2) A gateway merchant "pays" its own top-up order of 1,000,100 with 1.
    let g1 = gateway_merchant(&svc, "gw_g1", "gw-g1-key-0001").await;
    let (card1, fee_order) = unpaid_card(&svc, &g1).await;
    let fee_order_id = fee_order["id"].as_str().unwrap();
    let (status, _) =
        send(&svc, &g1, Method::POST, &format!("/v1/test_helpers/orders/{fee_order_id}/pay"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, topup) = send(
        &svc,
        &g1,
        Method::POST,
        &format!("/v1/cards/{card1}/topups"),
        Some(&json!({"amount": {"value": 1_000_000, "currency": "USD"}})),
    )
    .await;
    assert_eq!((status, topup["order"]["total"]["value"].as_i64()), (StatusCode::CREATED, Some(1_000_100)));
    let topup_path = format!("/v1/topups/{}", topup["id"].as_str().unwrap());
    let order = &topup["order"];
    assert_eq!(
        gateway_callback(&svc, "gw-g1-key-0001", &order_paid("gw_g1", order, 1)).await,
        StatusCode::BAD_REQUEST
    );
    // The right amount and ids, but the gateway says the order is still pending: no effect.
    assert_eq!(
        gateway_callback(&svc, "gw-g1-key-0001", &order_paid("gw_g1", order, 1_000_100)).await,
        StatusCode::OK
    );
    let mut other_id = order_paid("gw_g1", order, 1_000_100);
    other_id["data"]["id"] = json!("go_not_this_order");
    assert_eq!(gateway_callback(&svc, "gw-g1-key-0001", &other_id).await, StatusCode::BAD_REQUEST);
    assert_eq!(get(&svc, &g1, &topup_path).await["status"], "pending_payment");
    assert_eq!(get(&svc, &g1, &format!("/v1/cards/{card1}")).await["balance"]["value"], 0, "card not funded");

    // (3) G1's key settling G2's application-fee order, as G1 and as G2.
    let g2 = gateway_merchant(&svc, "gw_g2", "gw-g2-key-0002").await;
    let (card2, order2) = unpaid_card(&svc, &g2).await;
    let unbound_before = unbound_metric(&svc, "gateway").await;
    let as_g1 = order_paid("gw_g1", &order2, 300);
    assert_eq!(gateway_callback(&svc, "gw-g1-key-0001", &as_g1).await, StatusCode::UNAUTHORIZED);
    let as_g2 = order_paid("gw_g2", &order2, 300);
    assert_eq!(gateway_callback(&svc, "gw-g1-key-0001", &as_g2).await, StatusCode::UNAUTHORIZED);
    // The minter's key for G1's order, and for an address the minter's account never issued.
    assert_eq!(
        gateway_callback(&svc, "gw-minter-key-0001", &order_paid("gw_minter", order, 1_000_100)).await,
        StatusCode::UNAUTHORIZED
    );
    let mut elsewhere = deposit("gdp_never_logged_7f3a", "gw_g1", 10);
    elsewhere["data"]["network"] = json!("body-marker-never-logged");
    assert_eq!(gateway_callback(&svc, "gw-g1-key-0001", &elsewhere).await, StatusCode::UNAUTHORIZED);
    assert_eq!(unbound_metric(&svc, "gateway").await, unbound_before + 3, "each unbound attempt counted");
    let log = svc.log();
    assert!(log.contains("not bound"), "the attempt is logged");
    assert!(!log.contains("body-marker-never-logged"), "without its body");
    let card = get(&svc, &g2, &format!("/v1/cards/{card2}")).await;
    assert_eq!(
        (card["status"].as_str(), card["application_fee_order"]["status"].as_str()),
        (Some("pending_payment"), Some("pending"))
    );

    // Genuine payments settle exactly once, duplicates included.
    let order2_id = order2["id"].as_str().unwrap();
    let (status, paid) =
        send(&svc, &g2, Method::POST, &format!("/v1/test_helpers/orders/{order2_id}/pay"), None).await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");
    let (status, _) =
        send(&svc, &g2, Method::POST, &format!("/v1/test_helpers/orders/{order2_id}/resend-callback"), None)
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gateway_callback(&svc, "gw-g2-key-0002", &as_g2).await, StatusCode::OK, "a signed repeat");
    assert_eq!(get(&svc, &g2, &format!("/v1/orders/{order2_id}")).await["version"], paid["version"]);
    assert_eq!(get(&svc, &g2, &format!("/v1/cards/{card2}")).await["status"], "active");
    assert_eq!(event_count(&svc, &g2, "order.paid").await, 1);
    let order_id = order["id"].as_str().unwrap();
    send(&svc, &g1, Method::POST, &format!("/v1/test_helpers/orders/{order_id}/pay"), None).await;
    assert_eq!(get(&svc, &g1, &topup_path).await["status"], "succeeded");
    assert_eq!(get(&svc, &g1, &format!("/v1/cards/{card1}")).await["balance"]["value"], 1_000_000);
    assert_eq!(event_count(&svc, &g1, "order.paid").await, 2, "the fee and the top-up, once each");
    assert_eq!(ledger_balanced(&svc).await["entries"], 5, "a deposit, a withdrawal, three collections");
}

/// A master-account merchant with a funded card on the channel "Known"
/// (whose webhook secret the test knows), and a second channel "Intruder".
struct ChannelSetup {
    svc: Service,
    key: Key,
    known: String,
    intruder: String,
    card: String,
    channel_card_id: String,
    _dir: tempfile::TempDir,
}

const KNOWN_SECRET: &str = "known-channel-secret-0001";
const INTRUDER_SECRET: &str = "intruder-channel-secret-0001";

async fn channel_setup() -> ChannelSetup {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let (_, key, _) = svc.merchant("Channels").await;
    let mut ids = Vec::new();
    for (name, secret) in [("Known", KNOWN_SECRET), ("Intruder", INTRUDER_SECRET)] {
        let r = svc
            .admin(Method::POST, "/admin/v1/channels")
            .json(&json!({"name": name, "kind": "sandbox", "base_url": "http://127.0.0.1:1/channel",
                          "api_key": format!("{name}-api-key-0001"), "webhook_secret": secret}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let r = svc
        .admin(Method::POST, "/admin/v1/bins")
        .json(&json!({"bin": "222222", "channel_id": ids[0], "card_name": "PELAGO_VIRTUAL_USD",
                      "currency": "USD", "status": "active", "priority": -5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let deposit = json!({"amount": {"value": 100_000, "currency": "USD"}, "network": "TRON"});
    assert_eq!(
        send(&svc, &key, Method::POST, "/v1/test_helpers/deposits", Some(&deposit)).await.0,
        StatusCode::OK
    );
    let (_, holder) =
        send(&svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Hopper"))).await;
    assert_eq!(holder["bin"], "222222", "{holder}");
    let (status, card) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
    assert_eq!((status, card["status"].as_str()), (StatusCode::CREATED, Some("active")), "{card}");
    let card = card["id"].as_str().unwrap().to_owned();
    let topup = json!({"amount": {"value": 50_000, "currency": "USD"}});
    let (_, t) = send(&svc, &key, Method::POST, &format!("/v1/cards/{card}/topups"), Some(&topup)).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let actor: Value = svc
        .admin(Method::GET, &format!("/debug/v1/actors/cards/{card}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel_card_id = actor["state"]["channel_card_id"].as_str().unwrap().to_owned();
    ChannelSetup { svc, key, known: ids.remove(0), intruder: ids.remove(0), card, channel_card_id, _dir: dir }
}

/// A channel `transaction` callback about `card` (Pelago's id) / `channel_card` (the channel's).
fn transaction(card: &str, channel_card: &str, id: &str, kind: &str, status: &str, value: i64) -> Value {
    json!({"event_id": format!("evt-{id}-{status}"), "type": "transaction", "data": {"card_id": card, "transaction": {
        "id": id, "card_id": channel_card, "type": kind, "status": status,
        "amount": {"value": value, "currency": "USD"}, "merchant_name": "Shop", "mcc": "5812",
        "occurred_at": "2026-11-29T12:00:00Z", "balance_after": {"value": 50_000, "currency": "USD"},
        "related_transaction_id": null}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_callback_may_name_only_cards_of_that_channel() {
    let s = channel_setup().await;
    let (svc, key, card) = (&s.svc, &s.key, s.card.as_str());
    let refund = transaction(card, &s.channel_card_id, "chtx-refund-1", "refund", "posted", 777_700);
    let unbound_before = unbound_metric(svc, "channel").await;
    assert_eq!(channel_callback(svc, &s.intruder, INTRUDER_SECRET, &refund).await, StatusCode::UNAUTHORIZED);
    // The right channel, but another card's id at the channel: not bound either.
    let mismatched = transaction(card, "chc_someone_else", "chtx-refund-1", "refund", "posted", 777_700);
    assert_eq!(channel_callback(svc, &s.known, KNOWN_SECRET, &mismatched).await, StatusCode::UNAUTHORIZED);
    assert_eq!(unbound_metric(svc, "channel").await, unbound_before + 2);
    let refunds = || async {
        let txns = get(svc, key, &format!("/v1/cards/{card}/transactions?limit=100")).await;
        txns["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["channel_transaction_id"] == "chtx-refund-1")
            .count()
    };
    assert_eq!(refunds().await, 0, "no transaction, so no receipt can be asked for");
    assert_eq!(event_count(svc, key, "transaction.created").await, 0, "no event");
    assert_eq!(get(svc, key, &format!("/v1/cards/{card}")).await["balance"]["value"], 50_000);
    // The card's own channel, naming both ids, but a refund its records do not hold: 400, nothing.
    assert_eq!(channel_callback(svc, &s.known, KNOWN_SECRET, &refund).await, StatusCode::BAD_REQUEST);
    assert_eq!(refunds().await, 0);
    assert_eq!(event_count(svc, key, "transaction.created").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_for_posted_purchases_and_rechecked_when_used() {
    let s = channel_setup().await;
    let (svc, key, card) = (&s.svc, &s.key, s.card.as_str());
    let polyflow = |path: String, body: Value| async move {
        let r = svc.http.post(svc.url(&path)).bearer_auth(POLYFLOW_TOKEN).json(&body).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let purchase = |value: i64| json!({"amount": {"value": value, "currency": "USD"}, "merchant_name": "Cafe", "mcc": "5812", "status": "posted"});
    let path = format!("/v1/test_helpers/cards/{card}/transactions");
    let (status, kept) = send(svc, key, Method::POST, &path, Some(&purchase(1_250))).await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    let (_, reversed) = send(svc, key, Method::POST, &path, Some(&purchase(2_000))).await;
    let receipt_of = |txn: &Value| json!({"transaction_id": txn["id"]});
    let (status, kept_receipt) = send(svc, key, Method::POST, "/v1/receipts", Some(&receipt_of(&kept))).await;
    assert_eq!(status, StatusCode::CREATED, "{kept_receipt}");
    let (status, receipt) = send(svc, key, Method::POST, "/v1/receipts", Some(&receipt_of(&reversed))).await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    let (_, verified) =
        polyflow("/polyflow/v1/receipts/verify".into(), json!({"receipt": receipt["receipt"]})).await;
    assert_eq!(verified["valid"], true, "{verified}");

    // A refund and a reversal (posted, made by the card's own channel) earn no receipt.
    for kind in ["refund", "reversal"] {
        let mut credit = purchase(500);
        credit["type"] = json!(kind);
        let (status, t) = send(svc, key, Method::POST, &path, Some(&credit)).await;
        assert_eq!((status, t["type"].as_str()), (StatusCode::CREATED, Some(kind)), "{t}");
    }
    let txns = get(svc, key, &format!("/v1/cards/{card}/transactions?limit=100")).await;
    for txn in
        txns["data"].as_array().unwrap().iter().filter(|t| t["type"] == "refund" || t["type"] == "reversal")
    {
        assert_eq!(txn["status"], "posted");
        let (status, err) = send(svc, key, Method::POST, "/v1/receipts", Some(&receipt_of(txn))).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("invalid_state")),
            "{txn}"
        );
    }

    // The purchase is reversed at the channel: its receipt is no longer valid nor redeemable.
    let mut reversal = purchase(2_000);
    reversal["type"] = json!("reversal");
    reversal["related_transaction_id"] = reversed["id"].clone();
    let (status, t) = send(svc, key, Method::POST, &path, Some(&reversal)).await;
    assert_eq!((status, t["status"].as_str()), (StatusCode::CREATED, Some("reversed")), "{t}");
    let (_, verified) =
        polyflow("/polyflow/v1/receipts/verify".into(), json!({"receipt": receipt["receipt"]})).await;
    assert_eq!(verified["valid"], false, "{verified}");
    let redeem = |r: &Value| format!("/polyflow/v1/receipts/{}/redeem", r["id"].as_str().unwrap());
    let (status, err) = polyflow(redeem(&receipt), json!({})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state")),
        "{err}"
    );
    let (status, again) = send(svc, key, Method::POST, "/v1/receipts", Some(&receipt_of(&reversed))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    // The purchase that still stands is redeemed once.
    let (status, redeemed) = polyflow(redeem(&kept_receipt), json!({})).await;
    assert_eq!((status, redeemed["redeemed"].as_bool()), (StatusCode::OK, Some(true)), "{redeemed}");
}

/// A signed channel callback's outcome word (`applied`, `unchanged`, ...) or error code.
async fn channel_outcome(svc: &Service, channel: &str, body: &Value) -> (StatusCode, String) {
    let bytes = serde_json::to_vec(body).unwrap();
    let signature = sign(KNOWN_SECRET.as_bytes(), Timestamp::now_real().unix_seconds(), &bytes);
    let r = svc
        .http
        .post(svc.url(&format!("/callbacks/channels/{channel}")))
        .header("x-channel-signature", signature)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    let word = v["outcome"].as_str().or(v["error"]["code"].as_str()).unwrap_or_default().to_owned();
    (status, word)
}

async fn admin_json(svc: &Service, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut rb = svc.admin(method, path);
    if let Some(body) = body {
        rb = rb.json(&body);
    }
    let r = rb.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Polls `get` until `done` holds (bounded); the last value.
async fn eventually(svc: &Service, key: &Key, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let v = get(svc, key, path).await;
        if done(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{path} never settled: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_callback_whose_body_lies_changes_nothing_and_a_genuine_one_applies_once() {
    let s = channel_setup().await;
    let (svc, key, card, known) = (&s.svc, &s.key, s.card.as_str(), s.known.as_str());
    let helper = format!("/v1/test_helpers/cards/{card}/transactions");
    let purchase = json!({"amount": {"value": 1_250, "currency": "USD"}, "merchant_name": "Cafe", "mcc": "5812", "status": "posted"});
    let (status, spent) = send(svc, key, Method::POST, &helper, Some(&purchase)).await;
    assert_eq!(status, StatusCode::CREATED, "{spent}");
    let ctid = spent["channel_transaction_id"].as_str().unwrap();
    let snapshot = || async {
        let found = get(svc, key, &format!("/v1/cards/{card}")).await;
        let txns = get(svc, key, &format!("/v1/cards/{card}/transactions?limit=100")).await["data"].clone();
        let holder =
            get(svc, key, &format!("/v1/cardholders/{}", found["cardholder_id"].as_str().unwrap())).await;
        let events = get(svc, key, "/v1/events?limit=100").await["data"].as_array().unwrap().len();
        (found["balance"].clone(), txns, holder["status"].clone(), holder["version"].clone(), events)
    };
    let before = snapshot().await;
    assert_eq!(before.0["value"], 48_750);

    // Each correctly signed by the card's own channel, naming both ids; the channel's records say otherwise.
    let lie = |id: &str, kind: &str, status: &str, value: i64| {
        transaction(card, &s.channel_card_id, id, kind, status, value)
    };
    let cases = [
        (lie(ctid, "authorization", "posted", 1), StatusCode::BAD_REQUEST, "invalid_request"),
        // The channel holds it posted: its answer is applied, which is what Pelago has.
        (lie(ctid, "authorization", "reversed", 1_250), StatusCode::OK, "unchanged"),
        (lie("ctx_999999999999", "refund", "posted", 777_700), StatusCode::BAD_REQUEST, "invalid_request"),
    ];
    for (body, status, word) in cases {
        assert_eq!(channel_outcome(svc, known, &body).await, (status, word.to_owned()), "{body}");
    }
    let actor: Value = svc
        .admin(Method::GET, &format!("/debug/v1/actors/cards/{card}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (holder, channel_holder) =
        (&actor["state"]["cardholder_id"], &actor["state"]["channel_cardholder_id"]);
    let rejected = json!({"event_id": "evt-lie-rejected", "type": "cardholder.updated", "data": {
        "cardholder_id": holder, "channel_cardholder_id": channel_holder, "status": "rejected", "reason": "lie"}});
    assert_eq!(channel_outcome(svc, known, &rejected).await, (StatusCode::OK, "unchanged".into()));
    let topup = json!({"event_id": "evt-lie-topup", "type": "topup.completed", "data": {
        "request_id": "req_never_sent", "outcome": {"result": "card_funded", "balance": {"value": 9_000_000, "currency": "USD"}}}});
    assert_eq!(channel_outcome(svc, known, &topup).await, (StatusCode::OK, "unchanged".into()));
    let opened = json!({"event_id": "evt-lie-opened", "type": "card.opened", "data": {
        "card_id": card, "request_id": "req_never_sent",
        "card": {"id": s.channel_card_id, "last4": "0000", "balance": {"value": 9_000_000, "currency": "USD"}}}});
    assert_eq!(channel_outcome(svc, known, &opened).await.0, StatusCode::UNAUTHORIZED);
    // The genuine notice again: a repeat, no second effect.
    let genuine = lie(ctid, "authorization", "posted", 1_250);
    assert_eq!(channel_outcome(svc, known, &genuine).await, (StatusCode::OK, "unchanged".into()));
    assert_eq!(snapshot().await, before, "nothing changed");

    // A real change at the channel (it reverses the purchase), its callback delivered three times: once.
    let (status, _) = admin_json(
        svc,
        Method::POST,
        &format!("/admin/v1/test_helpers/channels/{known}/faults"),
        Some(json!({"operation": "callbacks", "behavior": "duplicate", "count": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut reversal = purchase.clone();
    reversal["type"] = json!("reversal");
    reversal["related_transaction_id"] = spent["id"].clone();
    let (status, t) = send(svc, key, Method::POST, &helper, Some(&reversal)).await;
    assert_eq!(
        (status, t["status"].as_str(), &t["id"]),
        (StatusCode::CREATED, Some("reversed"), &spent["id"])
    );
    let after = snapshot().await;
    assert_eq!(after.0["value"], 50_000, "the amount came back once");
    assert_eq!(event_count(svc, key, "transaction.updated").await, 1);
    assert_eq!(after.1.as_array().map(Vec::len), Some(1), "no new transaction");
    assert_eq!(after.1[0]["status"], "reversed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirming_query_without_answer_leaves_it_pending_and_the_resolver_settles_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_UPSTREAM_TIMEOUT_MS", "500")]);
    let fault = |operation: &str, behavior: &str| json!({"operation": operation, "behavior": behavior, "count": 1000});
    let faults = "/admin/v1/test_helpers/gateway/faults";
    assert_eq!(
        admin_json(&svc, Method::POST, faults, Some(fault("query_order", "duplicate"))).await.0,
        StatusCode::BAD_REQUEST,
        "error or timeout only"
    );

    // An application-fee order paid at the gateway while every order query fails.
    let g = gateway_merchant(&svc, "gw_faulty", "gw-faulty-key-0001").await;
    let (card, order) = unpaid_card(&svc, &g).await;
    let order_id = order["id"].as_str().unwrap();
    assert_eq!(
        admin_json(&svc, Method::POST, faults, Some(fault("query_order", "error"))).await.0,
        StatusCode::OK
    );
    let (status, paid) =
        send(&svc, &g, Method::POST, &format!("/v1/test_helpers/orders/{order_id}/pay"), None).await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("pending")), "{paid}");
    // A repeat of the callback meets the same fault: still pending.
    let (status, _) =
        send(&svc, &g, Method::POST, &format!("/v1/test_helpers/orders/{order_id}/resend-callback"), None)
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(&svc, &g, &format!("/v1/orders/{order_id}")).await["status"], "pending");
    assert_eq!(get(&svc, &g, &format!("/v1/cards/{card}")).await["status"], "pending_payment");

    // A deposit reported while every deposit query fails: nothing credited yet.
    let (_, depositor) = merchant(
        &svc,
        json!({"name": "Depositor", "funding_mode": "master_account", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
               "gateway": {"merchant_id": "gw_depositor", "api_key": "gw-depositor-key-0001"}}),
    )
    .await;
    assert_eq!(
        admin_json(&svc, Method::POST, faults, Some(fault("query_deposit", "error"))).await.0,
        StatusCode::OK
    );
    let deposit = json!({"amount": {"value": 7_000, "currency": "USD"}, "network": "TRON"});
    let (status, answer) =
        send(&svc, &depositor, Method::POST, "/v1/test_helpers/deposits", Some(&deposit)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "not credited while the gateway cannot be asked: {answer}");
    assert_eq!(available(&svc, &depositor).await, 0);

    // The faults clear: the resolver asks again and settles each once.
    assert_eq!(admin_json(&svc, Method::DELETE, faults, None).await.0, StatusCode::OK);
    eventually(&svc, &g, &format!("/v1/cards/{card}"), |c| c["status"] == "active").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while available(&svc, &depositor).await != 7_000 {
        assert!(std::time::Instant::now() < deadline, "the deposit was never credited");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Repeats after settlement change nothing.
    send(&svc, &g, Method::POST, &format!("/v1/test_helpers/orders/{order_id}/resend-callback"), None).await;
    assert_eq!(get(&svc, &g, &format!("/v1/orders/{order_id}")).await["status"], "paid");
    assert_eq!(event_count(&svc, &g, "order.paid").await, 1);
    assert_eq!(event_count(&svc, &depositor, "deposit.succeeded").await, 1);
    assert_eq!(available(&svc, &depositor).await, 7_000);
    assert_eq!(ledger_balanced(&svc).await["entries"], 2, "one collection, one deposit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_notice_the_channel_cannot_confirm_yet_is_settled_once_by_the_resolver() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_UPSTREAM_TIMEOUT_MS", "500")]);
    let (_, key, _) = svc.merchant("Waiting").await;
    let (_, holder) =
        send(&svc, &key, Method::POST, "/v1/cardholders", Some(&cardholder_body("Pending"))).await;
    assert_eq!(holder["status"], "pending", "{holder}");
    let channels: Value = admin_json(&svc, Method::GET, "/admin/v1/channels", None).await.1;
    let channel = channels["data"][0]["id"].as_str().unwrap();
    let faults = format!("/admin/v1/test_helpers/channels/{channel}/faults");
    let fault = json!({"operation": "cardholder", "behavior": "error", "count": 1000});
    assert_eq!(admin_json(&svc, Method::POST, &faults, Some(fault)).await.0, StatusCode::OK);
    // The channel approves and calls back, but cannot be asked: nothing is settled on the notice.
    let id = holder["id"].as_str().unwrap();
    let path = format!("/v1/cardholders/{id}");
    let (status, answer) =
        send(&svc, &key, Method::POST, &format!("/v1/test_helpers/cardholders/{id}/approve"), None).await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("pending")), "{answer}");
    assert_eq!(event_count(&svc, &key, "cardholder.activated").await, 0);
    // Once the channel answers, the resolver settles it, once.
    assert_eq!(admin_json(&svc, Method::DELETE, &faults, None).await.0, StatusCode::OK);
    let active = eventually(&svc, &key, &path, |c| c["status"] == "active").await;
    assert_eq!(active["status_history"].as_array().unwrap().len(), 2, "pending → active, once");
    assert_eq!(event_count(&svc, &key, "cardholder.activated").await, 1);
}
