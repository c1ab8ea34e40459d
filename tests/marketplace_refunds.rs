//! Refunds of marketplace payments over real HTTP (MARKETPLACE.md §7, §8, §9,
//! §11): every refund check in its order with its status, code and `param`,
//! nothing written by a refusal; §8's worked example end to end; a refund
//! before the split (the split then moves each line's rest), channel-only and
//! split-only refunds after it, a refund the gateway declines mirrored, an
//! unknown outcome settled once by the resolver (its payment kept out of
//! batches meanwhile), 402 when a debited account would go below zero, and
//! `cancel-or-refund` of a captured payment. The ledger check is balanced
//! with no negative account after each test.

mod common;

use common::{
    Json, Merchant, Service, clock, ledger_balanced,
    marketplace::{
        events_of, fault, next_day_settled, payment_helper, payment_until, seller, seller_balance,
        split_batch, usd,
    },
    secs,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The merchant `Market` and its seller `A` (split and commission of 1000 bps signed).
async fn market(svc: &Service) -> (Merchant<'_>, String) {
    let m = svc.merchant("Market").await;
    let (a, _) = seller(svc, &m.key, "Seller Approved", true, Some(1000)).await;
    (m, a)
}

/// §8's example, paid: 1000 = PURCHASE 900 to `seller` + COMMISSION 100 (its cap at 1000 bps).
async fn paid_1000(m: &Merchant<'_>, seller: &str) -> String {
    let id = payment_1000(m, seller).await;
    assert_eq!(payment_helper(m.svc, &m.key, &id, "pay").await.str("status"), "SUCCEEDED");
    id
}

/// §8's example, created (PENDING): its id.
async fn payment_1000(m: &Merchant<'_>, seller: &str) -> String {
    let body = json!({
        "amount": usd(1000), "merchant_reference": "order-1000",
        "split_marketplace": [
            {"recipient_id": seller, "type": "PURCHASE", "amount": usd(900)},
            {"type": "COMMISSION", "amount": usd(100)},
        ],
    });
    let (status, p) = m.post("/v1/payments", body).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    p.str("id").to_owned()
}

/// [`market`] with a payment of 1000 (§8's example), settled and split: (merchant, seller, payment).
async fn split_market(svc: &Service) -> (Merchant<'_>, String, String) {
    let (m, a) = market(svc).await;
    let p = paid_1000(&m, &a).await;
    next_day_settled(svc).await;
    let (status, batch) = split_batch(svc, &m.key, &[&p]).await;
    assert_eq!((status, batch.str("items.0.status")), (StatusCode::CREATED, "executed"), "{batch}");
    (m, a, p)
}

async fn refund(m: &Merchant<'_>, payment: &str, body: Value) -> (StatusCode, Value) {
    m.post(&format!("/v1/payments/{payment}/refunds"), body).await
}

fn portion(line: i64, value: i64) -> Value {
    json!({"line": line, "amount": usd(value)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refund_check_answers_in_order_and_writes_nothing() {
    let svc = Service::temp(&[]);
    let (m, a) = market(&svc).await;
    let p = paid_1000(&m, &a).await;
    let before = m.get(&format!("/v1/payments/{p}")).await;

    // 1: not captured.
    let pending = payment_1000(&m, &a).await;
    let rows = [
        ("2: neither field", json!({}), "amount"),
        ("2: before the split without amount", json!({"splits": [portion(0, 10)]}), "amount"),
        ("3: amount out of range", json!({"amount": usd(0)}), "amount.value"),
        ("3: another currency", json!({"amount": {"value": 10, "currency": "EUR"}}), "amount.currency"),
        ("3: above what is left", json!({"amount": usd(1001)}), "amount.value"),
        ("4: not a line", json!({"amount": usd(10), "splits": [portion(2, 10)]}), "splits[0].line"),
        ("4: a negative line", json!({"amount": usd(10), "splits": [portion(-1, 10)]}), "splits[0].line"),
        (
            "4: repeated",
            json!({"amount": usd(20), "splits": [portion(0, 10), portion(0, 10)]}),
            "splits[1].line",
        ),
        (
            "5: a portion out of range",
            json!({"amount": usd(10), "splits": [portion(0, 0)]}),
            "splits[0].amount.value",
        ),
        (
            "5: a portion in another currency",
            json!({"amount": usd(10), "splits": [{"line": 0, "amount": {"value": 10, "currency": "EUR"}}]}),
            "splits[0].amount.currency",
        ),
        (
            "5: above the line",
            json!({"amount": usd(1000), "splits": [portion(1, 101)]}),
            "splits[0].amount.value",
        ),
        (
            "6: portions not adding up to amount",
            json!({"amount": usd(200), "splits": [portion(0, 180)]}),
            "splits",
        ),
        ("6: splits omitted with two lines", json!({"amount": usd(200)}), "splits"),
    ];
    let (status, e) = refund(&m, &pending, json!({"amount": usd(10)})).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "1: PENDING {e}");
    // 2–6: each refused 400 `invalid_request`, naming its `param`.
    for (what, body, param) in rows {
        let (got, e) = refund(&m, &p, body).await;
        let want = (StatusCode::BAD_REQUEST, "invalid_request", Some(param));
        assert_eq!((got, e.code(), e.param()), want, "{what}: {e}");
    }
    // Earlier checks answer first: a PENDING payment with a bad amount is 409, not 400.
    let (status, e) = refund(&m, &pending, json!({"amount": usd(0)})).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "{e}");
    // Nothing was written.
    let after = m.get(&format!("/v1/payments/{p}")).await;
    assert_eq!(after, before, "a refused refund changes nothing");
    assert_eq!(m.get(&format!("/v1/payments/{p}/refunds")).await.count("data"), 0);
    assert_eq!(seller_balance(m.svc, &m.key, &a).await, (900, 0));
    assert_eq!(m.available_and_pending().await, (0, 100));
    // Another merchant's payment is not found.
    let other = svc.merchant("Other market").await;
    let (status, _) = refund(&other, &p, json!({"amount": usd(10)})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    ledger_balanced(&svc).await;

    // 1: more than 365 days after the capture.
    let today = clock::now(&svc).await;
    clock::set(&svc, clock::day_after(today, 366, 0, 0, 0)).await;
    let (status, e) = refund(&m, &p, json!({"amount": usd(10), "splits": [portion(0, 10)]})).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "{e}");
    ledger_balanced(&svc).await;
}

/// MARKETPLACE.md §8's example: capture, split, then refund `{amount 200,
/// splits [{line 0, 180}]}`: A.available −180, m.available −20, clearing +200;
/// then `cancel-or-refund` gives back the rest and the payment is REFUNDED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_of_section_8_end_to_end() {
    let svc = Service::temp(&[]);
    let (m, a, p) = split_market(&svc).await;
    assert_eq!(seller_balance(m.svc, &m.key, &a).await, (0, 900));
    assert_eq!(m.available_and_pending().await, (100, 0));

    let (status, r) =
        refund(&m, &p, json!({"amount": usd(200), "splits": [portion(0, 180)], "reason": "damaged"})).await;
    assert_eq!((status, r.str("status")), (StatusCode::CREATED, "succeeded"), "{r}");
    assert_eq!(
        (r.i64("amount.value"), r.i64("splits.0.amount.value"), r.str("splits.0.recipient_id")),
        (200, 180, a.as_str())
    );
    assert_eq!(seller_balance(m.svc, &m.key, &a).await, (0, 720));
    assert_eq!(m.available_and_pending().await, (80, 0));
    let pay = m.get(&format!("/v1/payments/{p}")).await;
    assert_eq!(
        (pay.str("status"), pay.i64("refunded_amount.value"), pay.i64("split_marketplace.0.refunded.value")),
        ("PARTIALLY_REFUNDED", 200, 180),
        "{pay}"
    );
    assert_eq!(m.get(&format!("/v1/refunds/{}", r.str("id"))).await, r);
    assert_eq!(events_of(&svc, &m.key, "refund.succeeded", r.str("id")).await, 1);
    assert_eq!(events_of(&svc, &m.key, "payment.refunded", &p).await, 1);

    // The rest: channel 800, line 0 its 720, line 1 its 100; the merchant gets D = 20 back.
    let (status, out) = m.act(&format!("/v1/payments/{p}/cancel-or-refund")).await;
    assert_eq!(
        (status, out.str("action"), out.str("refund.status")),
        (StatusCode::CREATED, "refunded", "succeeded"),
        "{out}"
    );
    assert_eq!((out.i64("refund.amount.value"), out.count("refund.splits")), (800, 2));
    assert_eq!((out.str("payment.status"), out.i64("payment.refunded_amount.value")), ("REFUNDED", 1000));
    assert_eq!(seller_balance(m.svc, &m.key, &a).await, (0, 0));
    assert_eq!(m.available_and_pending().await, (0, 0));
    assert_eq!(m.get(&format!("/v1/payments/{p}/refunds")).await.count("data"), 2);
    // REFUNDED: nothing more to the buyer, and no line has anything left.
    let (status, e) = refund(&m, &p, json!({"amount": usd(1)})).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "{e}");
    let (status, e) = refund(&m, &p, json!({"splits": [portion(0, 1)]})).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("splits[0].amount.value")), "{e}");
    let (status, e) = m.act(&format!("/v1/payments/{p}/cancel-or-refund")).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "{e}");
    assert_eq!(events_of(&svc, &m.key, "payment.refunded", &p).await, 2);
    ledger_balanced(&svc).await;

    let refunds = "/v1/payments/{id}/refunds";
    svc.documents(&[(refunds, "post"), (refunds, "get"), ("/v1/refunds/{id}", "get")], &[refunds]).await;
}

/// Before the split the parties' in-transit gives the refund back; the split
/// then moves each line's amount less its refunds. A refund whose answer is
/// unknown keeps the payment out of batches (409) until the resolver settles
/// it with its stored request id, once; a split processing keeps refunds out (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_split_and_an_unknown_outcome_settled_once() {
    let svc = Service::temp(&[common::FAST_UPSTREAMS]);
    let (m, a) = market(&svc).await;
    let p = paid_1000(&m, &a).await;
    let body = json!({"amount": usd(300), "splits": [portion(0, 270), portion(1, 30)]});
    let path = format!("/v1/payments/{p}/refunds");
    let (status, r) = m.post_once(&path, &body, "refund-300").await;
    assert_eq!((status, r.str("status")), (StatusCode::CREATED, "succeeded"), "{r}");
    let (_, again) = m.post_once(&path, &body, "refund-300").await;
    assert_eq!(again.str("id"), r.str("id"), "the same key, the same refund");
    assert_eq!(m.get(&path).await.count("data"), 1);
    assert_eq!(seller_balance(m.svc, &m.key, &a).await, (630, 0));
    assert_eq!(m.available_and_pending().await, (0, 70));

    fault(&svc, "refund", "timeout").await;
    let (status, r) =
        refund(&m, &p, json!({"amount": usd(100), "splits": [portion(0, 90), portion(1, 10)]})).await;
    assert_eq!((status, r.str("status")), (StatusCode::ACCEPTED, "processing"), "{r}");
    // Booked before the gateway answered; the payment counts it as refunded.
    assert_eq!(seller_balance(m.svc, &m.key, &a).await, (540, 0));
    next_day_settled(&svc).await;
    let (status, e) = split_batch(&svc, &m.key, &[&p]).await;
    assert_eq!(
        (status, e.code(), e.param()),
        (StatusCode::CONFLICT, "invalid_state", Some("items[0].payment_id")),
        "a refund is processing: {e}"
    );
    let id = r.str("id").to_owned();
    let done = m.poll(&format!("/v1/refunds/{id}"), secs(30), |r| r["status"] != "processing").await;
    assert_eq!(done.str("status"), "succeeded", "{done}");
    assert_eq!(events_of(&svc, &m.key, "refund.succeeded", &id).await, 1);
    let pay = payment_until(&svc, &m.key, &p, |p| p["refunded_amount"]["value"] == 400).await;
    assert_eq!(pay.str("status"), "PARTIALLY_REFUNDED");

    // The split moves each line's rest: 900 − 360, 100 − 40. While it is
    // processing (its answer unknown), the payment takes no refund (check 1).
    fault(&svc, "split", "timeout").await;
    let (status, batch) = split_batch(&svc, &m.key, &[&p]).await;
    assert_eq!((status, batch.str("items.0.status")), (StatusCode::ACCEPTED, "processing"), "{batch}");
    let (status, e) = refund(&m, &p, json!({"amount": usd(10), "splits": [portion(0, 10)]})).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "split processing: {e}");
    payment_until(&svc, &m.key, &p, |p| p["split"]["status"] == "executed").await;
    let batch = m.get(&format!("/v1/split-batches/{}", batch.str("id"))).await;
    assert_eq!(batch.str("items.0.status"), "executed", "{batch}");
    assert_eq!(
        (batch.i64("items.0.amounts.0.amount.value"), batch.i64("items.0.amounts.1.amount.value")),
        (540, 60)
    );
    let pay = m.get(&format!("/v1/payments/{p}")).await;
    assert_eq!(
        (
            pay.i64("split_marketplace.0.split_amount.value"),
            pay.i64("split_marketplace.1.split_amount.value")
        ),
        (540, 60)
    );
    assert_eq!(seller_balance(m.svc, &m.key, &a).await, (0, 540));
    assert_eq!(m.available_and_pending().await, (60, 0));
    ledger_balanced(&svc).await;
}

/// After the split: a channel-only refund is funded by the marketplace
/// (merchant available −C); a split-only one asks the gateway nothing; one
/// the gateway declines is 201 `failed` with its entry mirrored and the
/// payment back; one that would take the merchant's available below zero is
/// 402 with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_split_channel_only_split_only_declined_and_402() {
    let svc = Service::temp(&[]);
    let (m, a, p) = split_market(&svc).await;

    let (status, r) = refund(&m, &p, json!({"amount": usd(50)})).await;
    assert_eq!((status, r.str("status"), r.count("splits")), (StatusCode::CREATED, "succeeded", 0), "{r}");
    assert_eq!(
        (seller_balance(m.svc, &m.key, &a).await, m.available_and_pending().await),
        ((0, 900), (50, 0))
    );

    // Split-only (C = 0): no gateway call even with every gateway refund refused.
    fault(&svc, "refund", "decline").await;
    let (status, r) = refund(&m, &p, json!({"splits": [portion(0, 100)]})).await;
    assert_eq!(
        (status, r.str("status"), r.i64("amount.value")),
        (StatusCode::CREATED, "succeeded", 0),
        "{r}"
    );
    assert_eq!(
        (seller_balance(m.svc, &m.key, &a).await, m.available_and_pending().await),
        ((0, 800), (150, 0))
    );

    // Declined by the gateway (the fault is still armed): failed, mirrored.
    let (status, r) = refund(&m, &p, json!({"amount": usd(100), "splits": [portion(0, 100)]})).await;
    assert_eq!((status, r.str("status")), (StatusCode::CREATED, "failed"), "{r}");
    assert!(!r.str("failure_reason").is_empty());
    assert_eq!(events_of(&svc, &m.key, "refund.failed", r.str("id")).await, 1);
    assert_eq!(
        (seller_balance(m.svc, &m.key, &a).await, m.available_and_pending().await),
        ((0, 800), (150, 0))
    );
    let pay = m.get(&format!("/v1/payments/{p}")).await;
    assert_eq!(
        (pay.str("status"), pay.i64("refunded_amount.value"), pay.i64("split_marketplace.0.refunded.value")),
        ("PARTIALLY_REFUNDED", 50, 100),
        "{pay}"
    );

    // 402: the marketplace cannot fund 200 from its available 150; nothing is written.
    let before = m.get(&format!("/v1/payments/{p}")).await;
    let (status, e) = refund(&m, &p, json!({"amount": usd(200)})).await;
    assert_eq!((status, e.code()), (StatusCode::PAYMENT_REQUIRED, "insufficient_funds"), "{e}");
    assert_eq!(m.get(&format!("/v1/payments/{p}")).await, before);
    assert_eq!(m.get(&format!("/v1/payments/{p}/refunds")).await.count("data"), 3);
    assert_eq!(m.available_and_pending().await, (150, 0));
    // A line's rest bounds its portion (check 5 answers before any balance is read).
    let (status, e) = refund(&m, &p, json!({"splits": [portion(0, 801)]})).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("splits[0].amount.value")), "{e}");
    ledger_balanced(&svc).await;
}

/// SIGABRT right after the refund and its entry are durable (before the
/// gateway call), then right after the gateway refunded (before the answer is
/// recorded): after each restart the resolver asks again with the stored
/// request id, and the buyer is refunded once, the entry booked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_refund_refunds_once() {
    let (_dir, data) = common::temp_data();
    let svc = Service::armed(&data, "refund.after_fence");
    let (m, a) = market(&svc).await;
    let (key, merchant_id) = (m.key.clone(), m.id.clone());
    let p = paid_1000(&m, &a).await;
    let path = format!("/v1/payments/{p}/refunds");
    let body = json!({"amount": usd(300), "splits": [portion(0, 270), portion(1, 30)]});
    svc.aborts(&key, &path, &body, "refund-crash").await;

    // The resolver asks the gateway; the process dies again once it refunded.
    let svc = Service::armed(&data, "refund.after_gateway");
    svc.dies(secs(30), "the resolver reached the gateway");

    let svc = Service::start(&data, &[common::FAST_UPSTREAMS]);
    let m = Merchant::of(&svc, &merchant_id, key);
    let listed = m.poll(&path, secs(30), |l| l["data"][0]["status"] == "succeeded").await;
    assert_eq!(listed.count("data"), 1, "one refund: {listed}");
    let (_, retried) = m.post_once(&path, &body, "refund-crash").await;
    assert_eq!(
        (retried.str("id"), retried.str("status")),
        (listed.str("data.0.id"), "succeeded"),
        "the key names it"
    );
    assert_eq!(events_of(&svc, &m.key, "refund.succeeded", retried.str("id")).await, 1);
    assert_eq!(seller_balance(m.svc, &m.key, &a).await, (630, 0), "booked once");
    assert_eq!(m.available_and_pending().await, (0, 70));
    let pay = m.get(&format!("/v1/payments/{p}")).await;
    assert_eq!((pay.str("status"), pay.i64("refunded_amount.value")), ("PARTIALLY_REFUNDED", 300));
    ledger_balanced(&svc).await;
}
