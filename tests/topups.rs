//! Master-account top-ups over real HTTP with the sandbox (issues 5 and 6).

mod common;

use common::{Json, Merchant, Service, ledger_balanced, secs};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A master-account merchant with `deposit` USD, a top-up fee and `n` cards of one cardholder.
async fn merchant_with_cards(
    svc: &Service,
    deposit: i64,
    n: usize,
    fixed: i64,
    bps: i64,
) -> (Merchant<'_>, Vec<String>) {
    let m =
        svc.funded_merchant("Topups", json!({"topup_fee": {"fixed": fixed, "rate_bps": bps}}), deposit).await;
    let cards = m.cards(n).await;
    (m, cards)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topups_debit_fund_and_reverse_exactly_once() {
    let svc = Service::temp(&[("PELAGO_UPSTREAM_TIMEOUT_MS", "400")]);
    let (m, cards) = merchant_with_cards(&svc, 100_000, 1, 100, 150).await;
    let card = &cards[0];
    let channel = svc.first_channel().await;

    // 10,000 + fee 100 + 150 bps (150) = 10,250.
    let (status, t) = m.topup(card, 10_000).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(
        (t["status"].as_str(), t["fee"]["value"].as_i64(), t["total"]["value"].as_i64()),
        (Some("succeeded"), Some(250), Some(10_250))
    );
    assert_eq!(m.available().await, 89_750);
    let c = m.get(&format!("/v1/cards/{card}")).await;
    assert_eq!(c["balance"]["value"], 10_000);
    assert_eq!(m.channel_balance(card).await, 10_000);
    let txns = m.get("/v1/balance/transactions?limit=2").await;
    let types = txns.strs("data", "type");
    assert!(types.contains(&"topup") && types.contains(&"topup_fee"), "{types:?}");
    let (status, got) = m.call(Method::GET, &format!("/v1/topups/{}", t.str("id")), None).await;
    assert_eq!((status, got.str("status")), (StatusCode::OK, "succeeded"));

    // Refused by the channel: failed, and the debit reversed.
    svc.channel_fault(&channel, "topup", "decline").await;
    let (status, t) = m.topup(card, 1_000).await;
    assert_eq!((status, t.str("status")), (StatusCode::CREATED, "failed"), "{t}");
    assert!(t["failure_reason"].is_string());
    assert_eq!(m.available().await, 89_750, "reversed");

    // Unknown outcomes: 202 processing, then succeeded by itself, funded once.
    for behavior in ["timeout", "error"] {
        svc.channel_fault(&channel, "topup", behavior).await;
        let (status, t) = m.topup(card, 1_000).await;
        assert_eq!((status, t.str("status")), (StatusCode::ACCEPTED, "processing"), "{behavior}: {t}");
        m.poll(&format!("/v1/topups/{}", t.str("id")), secs(30), |t| t["status"] == "succeeded").await;
    }
    assert_eq!(m.channel_balance(card).await, 12_000, "each funded exactly once");
    assert_eq!(m.available().await, 89_750 - 2 * 1_115);

    // Short: 402, nothing debited, no top-up.
    let (status, err) = m.topup(card, 1_000_000).await;
    assert_eq!((status, err.code()), (StatusCode::PAYMENT_REQUIRED, "insufficient_funds"));
    assert_eq!(m.get(&format!("/v1/cards/{card}/topups")).await.count("data"), 4);

    // Spending follows: the mirror and the channel agree.
    let (status, txn) = m.spend(card, 300, "posted").await;
    assert_eq!((status, txn.str("status")), (StatusCode::CREATED, "posted"));
    let c = m.get(&format!("/v1/cards/{card}")).await;
    assert_eq!(c["balance"]["value"], 11_700);
    assert_eq!(m.channel_balance(card).await, 11_700);
    let listed = m.get(&format!("/v1/cards/{card}/transactions")).await;
    assert_eq!(listed.count("data"), 1, "callback and pull give one record");

    // Deleting returns what is left on the card to the merchant.
    let (status, _) = m.delete(&format!("/v1/cards/{card}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m.available().await, 89_750 - 2 * 1_115 + 11_700);
    ledger_balanced(&svc).await;
}

/// A top-up with an Idempotency-Key stores its answer in its final commit:
/// the repeat replays that answer (status, body, `Idempotent-Replayed`) and
/// moves no money; the key with another body is 422; a refused top-up's
/// answer (201 `failed`) is replayed the same way and reversed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_topup_is_answered_once_and_replayed() {
    let svc = Service::temp(&[("PELAGO_UPSTREAM_TIMEOUT_MS", "400")]);
    let (m, cards) = merchant_with_cards(&svc, 100_000, 1, 0, 0).await;
    let card = &cards[0];
    let path = format!("/v1/cards/{card}/topups");
    let send = |value: i64, key: &'static str| {
        let body = serde_json::to_vec(&json!({"amount": {"value": value, "currency": "USD"}})).unwrap();
        let request = svc.signed_with_key(&m.key, Method::POST, &path, &body, key);
        async move {
            let r = request.header("content-type", "application/json").send().await.unwrap();
            let replayed = r.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
            (r.status(), replayed, r.bytes().await.unwrap())
        }
    };
    let (status, replayed, first) = send(1_000, "keyed-1").await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    let answer: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(answer["status"], "succeeded", "{answer}");
    let again = send(1_000, "keyed-1").await;
    assert_eq!(again, (StatusCode::CREATED, true, first), "the stored answer, replayed");
    assert_eq!((m.channel_balance(card).await, m.available().await), (1_000, 99_000), "once");
    let (status, _, body) = send(2_000, "keyed-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}");

    svc.channel_fault(&svc.first_channel().await, "topup", "decline").await;
    let (status, replayed, refused) = send(500, "keyed-2").await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    let answer: Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(answer["status"], "failed", "{answer}");
    assert_eq!(send(500, "keyed-2").await, (StatusCode::CREATED, true, refused));
    assert_eq!((m.channel_balance(card).await, m.available().await), (1_000, 99_000), "reversed once");
    ledger_balanced(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_topups_never_overdraw() {
    let svc =
        Service::temp(&[("PELAGO_RATE_LIMIT", "100000,100000"), ("PELAGO_IP_RATE_LIMIT", "100000,100000")]);
    // Each top-up: 1,000 + fixed fee 100 = 1,100; the balance covers exactly 150.
    let (m, cards) = merchant_with_cards(&svc, 150 * 1_100, 20, 100, 0).await;
    let m = &m;
    let results: Vec<StatusCode> = futures::stream::iter((0..200).map(|i| {
        let card = cards[i % 20].clone();
        async move { m.topup(&card, 1_000).await.0 }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    let ok = results.iter().filter(|s| **s == StatusCode::CREATED).count();
    let short = results.iter().filter(|s| **s == StatusCode::PAYMENT_REQUIRED).count();
    assert_eq!((ok, short), (150, 50), "{results:?}");
    assert_eq!(m.available().await, 0);
    let mut funded = 0;
    for card in &cards {
        funded += m.channel_balance(card).await;
    }
    assert_eq!(funded, 150 * 1_000, "the channel funded exactly the succeeded top-ups");
    ledger_balanced(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_freeze_unfreeze_and_topups_on_one_card_are_serialized() {
    let svc =
        Service::temp(&[("PELAGO_RATE_LIMIT", "100000,100000"), ("PELAGO_IP_RATE_LIMIT", "100000,100000")]);
    let (m, cards) = merchant_with_cards(&svc, 1_000_000, 1, 0, 0).await;
    let card = cards[0].clone();
    let m = &m;
    let results: Vec<(usize, StatusCode, Value)> = futures::stream::iter((0..100).map(|i| {
        let card = card.clone();
        async move {
            let (status, body) = match i % 3 {
                0 => m.act(&format!("/v1/cards/{card}/freeze")).await,
                1 => m.act(&format!("/v1/cards/{card}/unfreeze")).await,
                _ => m.topup(&card, 100).await,
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
    let c = m.get(&format!("/v1/cards/{card}")).await;
    let history = c["status_history"].as_array().unwrap();
    for pair in history.windows(2) {
        assert_eq!(pair[1]["from"], pair[0]["to"], "{history:?}");
    }
    assert_eq!(c.i64("balance.value"), succeeded * 100);
    assert_eq!(m.channel_balance(&card).await, succeeded * 100, "no lost update");
    assert_eq!(m.available().await, 1_000_000 - succeeded * 100);
    ledger_balanced(&svc).await;
}
