//! Issue 18 C1, M1, M2 over real HTTP with the sandbox: a signed callback is a
//! notification, not proof (SECURITY.md "Callbacks from upstreams"). Forged
//! callbacks signed with keys a merchant or another channel holds change
//! nothing; genuine ones still have exactly one effect; receipts are only for
//! posted purchases, re-checked when verified or redeemed.

mod common;

use common::{Json, Key, Merchant, Service, eventually, ledger_balanced, order_updated, secs};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A gateway-funded merchant on its own gateway account: application fee 300, top-up fee 100.
async fn gateway_merchant<'a>(svc: &'a Service, account: &str, api_key: &str) -> Merchant<'a> {
    svc.gateway_merchant(
        account,
        api_key,
        json!({"application_fee": {"fixed": 300}, "topup_fee": {"fixed": 100}}),
    )
    .await
}

/// A card in `pending_payment` and its application-fee order.
async fn unpaid_card(m: &Merchant<'_>) -> (String, Value) {
    let card = m.card().await;
    assert_eq!(card["status"], "pending_payment", "{card}");
    (card.str("id").to_owned(), card["application_fee_order"].clone())
}

/// `POST /callbacks/gateway` answers with `status` so far, from `/metrics`.
async fn gateway_callbacks_answered(svc: &Service, status: u16) -> u64 {
    svc.metric(&format!(
        "pelago_http_requests_total{{method=\"POST\",route=\"/callbacks/gateway\",status=\"{status}\"}}"
    ))
    .await
}

async fn unbound_metric(svc: &Service, source: &str) -> u64 {
    svc.metric(&format!("pelago_callbacks_unbound_total{{source=\"{source}\"}}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_gateway_callbacks_change_nothing_and_a_genuine_payment_settles_once() {
    let svc = Service::temp(&[]);

    // (1) A master-account merchant that brought its own gateway account signs a deposit.
    let minter = svc.merchant_on_account("Minter", "gw_minter", "gw-minter-key-0001").await;
    let minter_id = &minter.id;
    let (status, address) =
        minter.post("/v1/deposit-addresses", json!({"currency": "USD", "network": "TRON"})).await;
    assert_eq!(status, StatusCode::CREATED, "{address}");
    let deposit = |id: &str, account: &str, value: i64| {
        json!({"event_id": format!("evt_{id}_{account}_{value}"), "merchant_id": account,
               "type": "deposit.credited", "data": {
            "id": id, "address": address["address"], "network": "TRON",
            "amount": {"value": value, "currency": "USD"}, "at": "2026-11-29T12:00:00Z"}})
    };
    let forged = deposit("gdp_never_made", "gw_minter", 9_999_999_999);
    assert_eq!(svc.gateway_callback("gw-minter-key-0001", &forged).await, StatusCode::BAD_REQUEST);
    assert_eq!(minter.available().await, 0, "nothing credited on the callback alone");
    // A genuine deposit is credited with what the gateway holds; a copy claiming more is refused.
    let (status, genuine) = minter.deposit_of(5_000, "USD").await;
    assert_eq!(status, StatusCode::OK, "{genuine}");
    let real_id = genuine.str("gateway_deposit_id");
    let inflated = deposit(real_id, "gw_minter", 9_999_999_999);
    assert_eq!(svc.gateway_callback("gw-minter-key-0001", &inflated).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        svc.gateway_callback("gw-minter-key-0001", &deposit(real_id, "gw_minter", 5_000)).await,
        StatusCode::OK
    );
    assert_eq!(minter.available().await, 5_000, "credited once, with the gateway's amount");
    // Payouts: a genuine payout's callback is bound, compared and confirmed (200);
    // a payout the signer never made is refused.
    let addresses = json!({"addresses": [{"address": "TMINTER1", "network": "TRON"}]});
    svc.admin_put(&format!("/admin/v1/merchants/{minter_id}/withdrawal-addresses"), addresses).await;
    let (ok_before, refused_before) =
        (gateway_callbacks_answered(&svc, 200).await, gateway_callbacks_answered(&svc, 400).await);
    let withdrawal = json!({"amount": {"value": 1_000, "currency": "USD"}, "address": "TMINTER1"});
    let (_, w) = svc.admin_post(&format!("/admin/v1/merchants/{minter_id}/withdrawals"), withdrawal).await;
    assert_eq!(w["status"], "succeeded", "{w}");
    eventually("the payout callback accepted", secs(20), async || {
        let ok = gateway_callbacks_answered(&svc, 200).await;
        if ok == ok_before { Err(ok) } else { Ok(()) }
    })
    .await;
    assert_eq!(gateway_callbacks_answered(&svc, 400).await, refused_before);
    let payout = json!({"event_id": "evt_forged_payout", "merchant_id": "gw_minter", "type": "payout.updated",
        "data": {"id": "gpo_never_made", "request_id": "req_never_made", "status": "failed", "reason": "forged",
                 "amount": {"value": 1_000, "currency": "USD"}}});
    assert_eq!(svc.gateway_callback("gw-minter-key-0001", &payout).await, StatusCode::UNAUTHORIZED);
    assert_eq!(minter.available().await, 4_000, "the forged failure released nothing");

    // (2) A gateway merchant "pays" its own top-up order of 1,000,100 with 1.
    let g1 = gateway_merchant(&svc, "gw_g1", "gw-g1-key-0001").await;
    let (card1, fee_order) = unpaid_card(&g1).await;
    let fee_order_id = fee_order.str("id");
    let (status, _) = g1.act(&format!("/v1/test_helpers/orders/{fee_order_id}/pay")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, topup) = g1.topup(&card1, 1_000_000).await;
    assert_eq!((status, topup["order"]["total"]["value"].as_i64()), (StatusCode::CREATED, Some(1_000_100)));
    let topup_path = format!("/v1/topups/{}", topup.str("id"));
    let order = &topup["order"];
    assert_eq!(
        svc.gateway_callback("gw-g1-key-0001", &order_updated("gw_g1", order, "paid", 1)).await,
        StatusCode::BAD_REQUEST
    );
    // The right amount and ids, but the gateway says the order is still pending: no effect.
    assert_eq!(
        svc.gateway_callback("gw-g1-key-0001", &order_updated("gw_g1", order, "paid", 1_000_100)).await,
        StatusCode::OK
    );
    let mut other_id = order_updated("gw_g1", order, "paid", 1_000_100);
    other_id["data"]["id"] = json!("go_not_this_order");
    assert_eq!(svc.gateway_callback("gw-g1-key-0001", &other_id).await, StatusCode::BAD_REQUEST);
    assert_eq!(g1.get(&topup_path).await["status"], "pending_payment");
    assert_eq!(g1.get(&format!("/v1/cards/{card1}")).await["balance"]["value"], 0, "card not funded");

    // (3) G1's key settling G2's application-fee order, as G1 and as G2.
    let g2 = gateway_merchant(&svc, "gw_g2", "gw-g2-key-0002").await;
    let (card2, order2) = unpaid_card(&g2).await;
    let unbound_before = unbound_metric(&svc, "gateway").await;
    let as_g1 = order_updated("gw_g1", &order2, "paid", 300);
    assert_eq!(svc.gateway_callback("gw-g1-key-0001", &as_g1).await, StatusCode::UNAUTHORIZED);
    let as_g2 = order_updated("gw_g2", &order2, "paid", 300);
    assert_eq!(svc.gateway_callback("gw-g1-key-0001", &as_g2).await, StatusCode::UNAUTHORIZED);
    // The minter's key for G1's order, and for an address the minter's account never issued.
    assert_eq!(
        svc.gateway_callback("gw-minter-key-0001", &order_updated("gw_minter", order, "paid", 1_000_100))
            .await,
        StatusCode::UNAUTHORIZED
    );
    let mut elsewhere = deposit("gdp_never_logged_7f3a", "gw_g1", 10);
    elsewhere["data"]["network"] = json!("body-marker-never-logged");
    assert_eq!(svc.gateway_callback("gw-g1-key-0001", &elsewhere).await, StatusCode::UNAUTHORIZED);
    assert_eq!(unbound_metric(&svc, "gateway").await, unbound_before + 3, "each unbound attempt counted");
    let log = svc.log();
    assert!(log.contains("not bound"), "the attempt is logged");
    assert!(!log.contains("body-marker-never-logged"), "without its body");
    let card = g2.get(&format!("/v1/cards/{card2}")).await;
    assert_eq!(
        (card["status"].as_str(), card["application_fee_order"]["status"].as_str()),
        (Some("pending_payment"), Some("pending"))
    );

    // Genuine payments settle exactly once, duplicates included.
    let order2_id = order2.str("id");
    let (status, paid) = g2.act(&format!("/v1/test_helpers/orders/{order2_id}/pay")).await;
    assert_eq!((status, paid.str("status")), (StatusCode::OK, "paid"), "{paid}");
    let (status, _) = g2.act(&format!("/v1/test_helpers/orders/{order2_id}/resend-callback")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(svc.gateway_callback("gw-g2-key-0002", &as_g2).await, StatusCode::OK, "a signed repeat");
    assert_eq!(g2.get(&format!("/v1/orders/{order2_id}")).await["version"], paid["version"]);
    assert_eq!(g2.get(&format!("/v1/cards/{card2}")).await["status"], "active");
    assert_eq!(g2.events("order.paid").await, 1);
    let order_id = order.str("id");
    g1.act(&format!("/v1/test_helpers/orders/{order_id}/pay")).await;
    assert_eq!(g1.get(&topup_path).await["status"], "succeeded");
    assert_eq!(g1.get(&format!("/v1/cards/{card1}")).await["balance"]["value"], 1_000_000);
    assert_eq!(g1.events("order.paid").await, 2, "the fee and the top-up, once each");
    assert_eq!(ledger_balanced(&svc).await["entries"], 5, "a deposit, a withdrawal, three collections");
}

/// A master-account merchant with a funded card on the channel "Known"
/// (whose webhook secret the test knows), and a second channel "Intruder".
struct ChannelSetup {
    svc: Service,
    merchant: (String, Key),
    known: String,
    intruder: String,
    card: String,
    channel_card_id: String,
    _dir: tempfile::TempDir,
}

const KNOWN_SECRET: &str = "known-channel-secret-0001";
const INTRUDER_SECRET: &str = "intruder-channel-secret-0001";

async fn channel_setup() -> ChannelSetup {
    let (dir, data) = common::temp_data();
    let svc = Service::start(&data, &[]);
    let m = svc.merchant("Channels").await;
    let mut ids = Vec::new();
    for (name, secret) in [("Known", KNOWN_SECRET), ("Intruder", INTRUDER_SECRET)] {
        let channel = json!({"name": name, "kind": "sandbox", "base_url": "http://127.0.0.1:1/channel",
                             "api_key": format!("{name}-api-key-0001"), "webhook_secret": secret});
        ids.push(svc.admin_created("/admin/v1/channels", channel).await.str("id").to_owned());
    }
    let bin = json!({"bin": "222222", "channel_id": ids[0], "card_name": "PELAGO_VIRTUAL_USD",
                     "currency": "USD", "status": "active", "priority": -5});
    svc.admin_created("/admin/v1/bins", bin).await;
    m.deposit(100_000).await;
    let (_, holder) = m.cardholder("Hopper").await;
    assert_eq!(holder["bin"], "222222", "{holder}");
    let (status, card) = m.open_card(holder.str("id")).await;
    assert_eq!((status, card.str("status")), (StatusCode::CREATED, "active"), "{card}");
    let card = card.str("id").to_owned();
    let (_, t) = m.topup(&card, 50_000).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let actor = svc.admin_get(&format!("/debug/v1/actors/cards/{card}")).await;
    let channel_card_id = actor.str("state.channel_card_id").to_owned();
    let merchant = (m.id.clone(), m.key.clone());
    drop(m);
    ChannelSetup {
        svc,
        merchant,
        known: ids.remove(0),
        intruder: ids.remove(0),
        card,
        channel_card_id,
        _dir: dir,
    }
}

impl ChannelSetup {
    fn merchant(&self) -> Merchant<'_> {
        Merchant::of(&self.svc, &self.merchant.0, self.merchant.1.clone())
    }
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
    let (svc, m, card) = (&s.svc, s.merchant(), s.card.as_str());
    let refund = transaction(card, &s.channel_card_id, "chtx-refund-1", "refund", "posted", 777_700);
    let unbound_before = unbound_metric(svc, "channel").await;
    assert_eq!(svc.channel_callback(&s.intruder, INTRUDER_SECRET, &refund).await, StatusCode::UNAUTHORIZED);
    // The right channel, but another card's id at the channel: not bound either.
    let mismatched = transaction(card, "chc_someone_else", "chtx-refund-1", "refund", "posted", 777_700);
    assert_eq!(svc.channel_callback(&s.known, KNOWN_SECRET, &mismatched).await, StatusCode::UNAUTHORIZED);
    assert_eq!(unbound_metric(svc, "channel").await, unbound_before + 2);
    let refunds = || async {
        let txns = m.get(&format!("/v1/cards/{card}/transactions?limit=100")).await;
        txns.strs("data", "channel_transaction_id").iter().filter(|id| **id == "chtx-refund-1").count()
    };
    assert_eq!(refunds().await, 0, "no transaction, so no receipt can be asked for");
    assert_eq!(m.events("transaction.created").await, 0, "no event");
    assert_eq!(m.get(&format!("/v1/cards/{card}")).await["balance"]["value"], 50_000);
    // The card's own channel, naming both ids, but a refund its records do not hold: 400, nothing.
    assert_eq!(svc.channel_callback(&s.known, KNOWN_SECRET, &refund).await, StatusCode::BAD_REQUEST);
    assert_eq!(refunds().await, 0);
    assert_eq!(m.events("transaction.created").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_for_posted_purchases_and_rechecked_when_used() {
    let s = channel_setup().await;
    let (svc, m, card) = (&s.svc, s.merchant(), s.card.as_str());
    let purchase = |value: i64| json!({"amount": {"value": value, "currency": "USD"}, "merchant_name": "Cafe", "mcc": "5812", "status": "posted"});
    let path = format!("/v1/test_helpers/cards/{card}/transactions");
    let (status, kept) = m.call(Method::POST, &path, Some(&purchase(1_250))).await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    let (_, reversed) = m.call(Method::POST, &path, Some(&purchase(2_000))).await;
    let receipt_of = |txn: &Value| json!({"transaction_id": txn["id"]});
    let (status, kept_receipt) = m.call(Method::POST, "/v1/receipts", Some(&receipt_of(&kept))).await;
    assert_eq!(status, StatusCode::CREATED, "{kept_receipt}");
    let (status, receipt) = m.call(Method::POST, "/v1/receipts", Some(&receipt_of(&reversed))).await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    let (_, verified) =
        svc.polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": receipt["receipt"]}))).await;
    assert_eq!(verified["valid"], true, "{verified}");

    // A refund and a reversal (posted, made by the card's own channel) earn no receipt.
    for kind in ["refund", "reversal"] {
        let mut credit = purchase(500);
        credit["type"] = json!(kind);
        let (status, t) = m.call(Method::POST, &path, Some(&credit)).await;
        assert_eq!((status, t["type"].as_str()), (StatusCode::CREATED, Some(kind)), "{t}");
    }
    let txns = m.get(&format!("/v1/cards/{card}/transactions?limit=100")).await;
    for txn in
        txns["data"].as_array().unwrap().iter().filter(|t| t["type"] == "refund" || t["type"] == "reversal")
    {
        assert_eq!(txn["status"], "posted");
        let (status, err) = m.call(Method::POST, "/v1/receipts", Some(&receipt_of(txn))).await;
        assert_eq!((status, err.code()), (StatusCode::CONFLICT, "invalid_state"), "{txn}");
    }

    // The purchase is reversed at the channel: its receipt is no longer valid nor redeemable.
    let mut reversal = purchase(2_000);
    reversal["type"] = json!("reversal");
    reversal["related_transaction_id"] = reversed["id"].clone();
    let (status, t) = m.call(Method::POST, &path, Some(&reversal)).await;
    assert_eq!((status, t.str("status")), (StatusCode::CREATED, "reversed"), "{t}");
    let (_, verified) =
        svc.polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": receipt["receipt"]}))).await;
    assert_eq!(verified["valid"], false, "{verified}");
    let redeem = |r: &Value| format!("/polyflow/v1/receipts/{}/redeem", r.str("id"));
    let (status, err) = svc.polyflow(&redeem(&receipt), Some(json!({}))).await;
    assert_eq!((status, err.code()), (StatusCode::CONFLICT, "invalid_state"), "{err}");
    let (status, again) = m.call(Method::POST, "/v1/receipts", Some(&receipt_of(&reversed))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    // The purchase that still stands is redeemed once.
    let (status, redeemed) = svc.polyflow(&redeem(&kept_receipt), Some(json!({}))).await;
    assert_eq!((status, redeemed["redeemed"].as_bool()), (StatusCode::OK, Some(true)), "{redeemed}");
}

/// A signed channel callback's outcome word (`applied`, `unchanged`, ...) or error code.
async fn channel_outcome(svc: &Service, channel: &str, body: &Value) -> (StatusCode, String) {
    let r = svc
        .callback(&format!("/callbacks/channels/{channel}"), "x-channel-signature", KNOWN_SECRET, body)
        .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    let word = v["outcome"].as_str().or(v["error"]["code"].as_str()).unwrap_or_default().to_owned();
    (status, word)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_callback_whose_body_lies_changes_nothing_and_a_genuine_one_applies_once() {
    let s = channel_setup().await;
    let (svc, m, card, known) = (&s.svc, s.merchant(), s.card.as_str(), s.known.as_str());
    let helper = format!("/v1/test_helpers/cards/{card}/transactions");
    let purchase = json!({"amount": {"value": 1_250, "currency": "USD"}, "merchant_name": "Cafe", "mcc": "5812", "status": "posted"});
    let (status, spent) = m.spend(card, 1_250, "posted").await;
    assert_eq!(status, StatusCode::CREATED, "{spent}");
    let ctid = spent.str("channel_transaction_id");
    let snapshot = || async {
        let found = m.get(&format!("/v1/cards/{card}")).await;
        let txns = m.get(&format!("/v1/cards/{card}/transactions?limit=100")).await["data"].clone();
        let holder = m.get(&format!("/v1/cardholders/{}", found.str("cardholder_id"))).await;
        let events = m.get("/v1/events?limit=100").await.count("data");
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
    let actor = svc.admin_get(&format!("/debug/v1/actors/cards/{card}")).await;
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
    svc.channel_fault(known, "callbacks", "duplicate").await;
    let mut reversal = purchase.clone();
    reversal["type"] = json!("reversal");
    reversal["related_transaction_id"] = spent["id"].clone();
    let (status, t) = m.call(Method::POST, &helper, Some(&reversal)).await;
    assert_eq!(
        (status, t["status"].as_str(), &t["id"]),
        (StatusCode::CREATED, Some("reversed"), &spent["id"])
    );
    let after = snapshot().await;
    assert_eq!(after.0["value"], 50_000, "the amount came back once");
    assert_eq!(m.events("transaction.updated").await, 1);
    assert_eq!(after.1.as_array().map(Vec::len), Some(1), "no new transaction");
    assert_eq!(after.1[0]["status"], "reversed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirming_query_without_answer_leaves_it_pending_and_the_resolver_settles_it_once() {
    let svc = Service::temp(&[("PELAGO_UPSTREAM_TIMEOUT_MS", "500")]);
    let fault = |operation: &str, behavior: &str| json!({"operation": operation, "behavior": behavior, "count": 1000});
    let (status, e) =
        svc.admin_post("/admin/v1/test_helpers/gateway/faults", fault("query_order", "duplicate")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "error or timeout only: {e}");

    // An application-fee order paid at the gateway while every order query fails.
    let g = gateway_merchant(&svc, "gw_faulty", "gw-faulty-key-0001").await;
    let (card, order) = unpaid_card(&g).await;
    let order_id = order.str("id");
    svc.gateway_fault(fault("query_order", "error")).await;
    let (status, paid) = g.act(&format!("/v1/test_helpers/orders/{order_id}/pay")).await;
    assert_eq!((status, paid.str("status")), (StatusCode::OK, "pending"), "{paid}");
    // A repeat of the callback meets the same fault: still pending.
    let (status, _) = g.act(&format!("/v1/test_helpers/orders/{order_id}/resend-callback")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g.get(&format!("/v1/orders/{order_id}")).await["status"], "pending");
    assert_eq!(g.get(&format!("/v1/cards/{card}")).await["status"], "pending_payment");

    // A deposit reported while every deposit query fails: nothing credited yet.
    let depositor = svc.merchant_on_account("Depositor", "gw_depositor", "gw-depositor-key-0001").await;
    svc.gateway_fault(fault("query_deposit", "error")).await;
    let (status, answer) = depositor.deposit_of(7_000, "USD").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "not credited while the gateway cannot be asked: {answer}");
    assert_eq!(depositor.available().await, 0);

    // The faults clear: the resolver asks again and settles each once.
    svc.clear_gateway_faults().await;
    g.poll(&format!("/v1/cards/{card}"), secs(60), |c| c["status"] == "active").await;
    eventually("the deposit credited", secs(60), async || {
        let available = depositor.available().await;
        if available == 7_000 { Ok(()) } else { Err(available) }
    })
    .await;
    // Repeats after settlement change nothing.
    g.act(&format!("/v1/test_helpers/orders/{order_id}/resend-callback")).await;
    assert_eq!(g.get(&format!("/v1/orders/{order_id}")).await["status"], "paid");
    assert_eq!(g.events("order.paid").await, 1);
    assert_eq!(depositor.events("deposit.succeeded").await, 1);
    assert_eq!(depositor.available().await, 7_000);
    assert_eq!(ledger_balanced(&svc).await["entries"], 2, "one collection, one deposit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_notice_the_channel_cannot_confirm_yet_is_settled_once_by_the_resolver() {
    let svc = Service::temp(&[("PELAGO_UPSTREAM_TIMEOUT_MS", "500")]);
    let m = svc.merchant("Waiting").await;
    let (_, holder) = m.cardholder("Pending").await;
    assert_eq!(holder["status"], "pending", "{holder}");
    let channel = svc.first_channel().await;
    svc.channel_faults(&channel, json!({"operation": "cardholder", "behavior": "error", "count": 1000}))
        .await;
    // The channel approves and calls back, but cannot be asked: nothing is settled on the notice.
    let id = holder.str("id");
    let path = format!("/v1/cardholders/{id}");
    let (status, answer) = m.act(&format!("/v1/test_helpers/cardholders/{id}/approve")).await;
    assert_eq!((status, answer.str("status")), (StatusCode::OK, "pending"), "{answer}");
    assert_eq!(m.events("cardholder.activated").await, 0);
    // Once the channel answers, the resolver settles it, once.
    svc.clear_channel_faults(&channel).await;
    let active = m.poll(&path, secs(60), |c| c["status"] == "active").await;
    assert_eq!(active.count("status_history"), 2, "pending → active, once");
    assert_eq!(m.events("cardholder.activated").await, 1);
}
