//! Marketplace payments over real HTTP (MARKETPLACE.md §6, §9, §11): every
//! row of the validation table with its status, code and `param`, nothing
//! created by a refusal; the state table through the sandbox checkout (pay,
//! fail, expire, capture, cancel, duplicate callbacks), the collection booked
//! once and the ledger balanced; gateway faults (refused → 502 unchanged or
//! DECLINED, unknown → 202 resolved by the resolver); T+1 marks captured
//! payments `settled` once.

mod common;

use common::{
    Json, Service, clock, ledger_balanced,
    marketplace::{
        bought, create_payment, events_of, fault, in_transit, next_day_settled, paid, payment_body,
        payment_helper, payment_until, recipient_balance, seller, split_batch, usd,
    },
    secs, send, send_once, settle,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A row of the validation table refused 400 `invalid_request` naming `param`.
fn invalid<'a>(row: &'a str, body: Value, param: &'a str) -> (&'a str, Value, StatusCode, &'a str, &'a str) {
    (row, body, StatusCode::BAD_REQUEST, "invalid_request", param)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_row_answers_its_param_and_creates_nothing() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Market").await;
    let key = &m.key;
    let other_key = svc.merchant("Other market").await.key;
    let (s1, s1_provider) = seller(&svc, key, "Seller Approved", true, Some(500)).await;
    let (no_split, _) = seller(&svc, key, "Seller Unsigned", false, None).await;
    let (foreign, _) = seller(&svc, &other_key, "Seller Elsewhere", true, None).await;
    let base = payment_body(&s1, true);
    let with = |pointer: &str, value: Value| common::with(&base, pointer, value);
    let lines = |l: Value| with("/split_marketplace", l);
    let line = |i: usize, field: &str, v: Value| with(&format!("/split_marketplace/{i}/{field}"), v);
    let many: Vec<Value> =
        (0..21).map(|_| json!({"recipient_id": s1, "type": "PURCHASE", "amount": usd(1)})).collect();
    let sale_and_commission = |sale: i64, commission: i64| {
        lines(json!([
            {"recipient_id": s1, "type": "PURCHASE", "amount": usd(sale)},
            {"type": "COMMISSION", "amount": usd(commission)},
        ]))
    };
    let rows = vec![
        // 1: body shape, amount, merchant_reference.
        invalid("1 shape", with("/amount/value", json!("780")), "amount.value"),
        invalid("1 amount", with("/amount/value", json!(0)), "amount.value"),
        invalid("1 amount cap", with("/amount/value", json!(10_000_000_000_001i64)), "amount.value"),
        invalid("1 currency", with("/amount/currency", json!("usd")), "amount.currency"),
        invalid("1 reference", with("/merchant_reference", json!("ab")), "merchant_reference"),
        invalid("1 reference bar", with("/merchant_reference", json!("a|bc")), "merchant_reference"),
        invalid("1 line type", line(1, "type", json!("TIP")), "split_marketplace[1].type"),
        // 2: 1..20 lines with a sale.
        invalid("2 none", lines(json!([])), "split_marketplace"),
        invalid("2 too many", lines(json!(many)), "split_marketplace"),
        invalid("2 no sale", lines(json!([{"type": "COMMISSION", "amount": usd(780)}])), "split_marketplace"),
        // 3: both ids, or a sale with neither.
        invalid(
            "3 both",
            lines(json!([
                {"recipient_id": s1, "type": "PURCHASE", "amount": usd(741)},
                {"recipient_id": s1, "provider_recipient_id": s1_provider, "type": "COMMISSION", "amount": usd(39)},
            ])),
            "split_marketplace[1].recipient_id",
        ),
        invalid(
            "3 both ids",
            line(0, "provider_recipient_id", json!(s1_provider)),
            "split_marketplace[0].recipient_id",
        ),
        invalid("3 neither", line(0, "recipient_id", Value::Null), "split_marketplace[0].recipient_id"),
        // 4: line amounts and currency.
        invalid("4 amount", line(1, "amount", usd(0)), "split_marketplace[1].amount.value"),
        invalid(
            "4 currency",
            line(1, "amount", json!({"value": 39, "currency": "EUR"})),
            "split_marketplace[1].amount.currency",
        ),
        // 5: line merchant_reference.
        invalid(
            "5 line reference",
            line(0, "merchant_reference", json!("x")),
            "split_marketplace[0].merchant_reference",
        ),
        // 6: the merchant's recipients only.
        invalid("6 foreign", line(0, "recipient_id", json!(foreign)), "split_marketplace[0].recipient_id"),
        invalid("6 unknown", line(0, "recipient_id", json!("rec_nope")), "split_marketplace[0].recipient_id"),
        // 7: a sale's provider_recipient_id on a SUCCEEDED onboarding of the merchant.
        invalid(
            "7 provider",
            lines(
                json!([{"provider_recipient_id": "gwr_unknown", "type": "MARKETPLACE", "amount": usd(780)}]),
            ),
            "split_marketplace[0].provider_recipient_id",
        ),
        // 8: receive_splits.
        (
            "8 receive_splits",
            line(0, "recipient_id", json!(no_split)),
            StatusCode::CONFLICT,
            "invalid_state",
            "split_marketplace[0].recipient_id",
        ),
        // 9: Σ lines = amount.
        invalid("9 sum", line(0, "amount", usd(740)), "split_marketplace"),
        // 10: commission within half_up(780, 500) = 39.
        (
            "10 commission",
            sale_and_commission(740, 40),
            StatusCode::BAD_REQUEST,
            "commission_limit_exceeded",
            "split_marketplace",
        ),
        // The first failure answers: rule 2 before rule 3, rule 9 before rule 10.
        invalid(
            "2 before 3",
            lines(
                json!([{"type": "COMMISSION", "amount": usd(780), "recipient_id": s1, "provider_recipient_id": "x"}]),
            ),
            "split_marketplace",
        ),
        invalid("9 before 10", sale_and_commission(1, 700), "split_marketplace"),
    ];
    for (row, body, status, code, param) in rows {
        let (got, e) = create_payment(&svc, key, &body).await;
        assert_eq!((got, e.code(), e.param()), (status, code, Some(param)), "row {row}: {e}");
    }
    let listed = m.get("/v1/payments").await;
    assert_eq!(listed["data"], json!([]), "nothing created by a refused request");

    // Valid: a PURCHASE line named by provider_recipient_id resolves to its holder.
    let body = json!({
        "amount": usd(780), "merchant_reference": "order-ok", "description": "two lines",
        "split_marketplace": [
            {"provider_recipient_id": s1_provider, "type": "PURCHASE", "amount": usd(741),
             "liability": {"processing_fee": "MERCHANT", "chargebacks": true}},
            {"type": "COMMISSION", "amount": usd(39), "provider_recipient_id": "gwr_information_only"},
        ],
    });
    let (status, p) = create_payment(&svc, key, &body).await;
    assert_eq!((status, p.str("status")), (StatusCode::CREATED, "PENDING"), "{p}");
    assert!(p.str("id").starts_with("pay_") && p["checkout_url"].is_string(), "{p}");
    assert_eq!(p["split_marketplace"][0]["recipient_id"], json!(s1));
    assert_eq!(p["split_marketplace"][0]["merchant_reference"], "order-ok", "defaults to the payment's");
    assert_eq!(p["split_marketplace"][0]["liability"]["processing_fee"], "MERCHANT");
    assert_eq!(p["split_marketplace"][1]["recipient_id"], Value::Null, "the merchant's own line");
    assert_eq!(p["split"]["status"], "not_split");
    let (status, _) =
        send(&svc, &other_key, Method::GET, &format!("/v1/payments/{}", p.str("id")), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another merchant's payment");
    let listed = m.get("/v1/payments?merchant_reference=order-ok").await;
    assert_eq!(listed["data"][0]["id"], p["id"]);
    let listed = m.get("/v1/payments?status=SUCCEEDED").await;
    assert_eq!(listed["data"], json!([]));
    let (status, e) = m.call(Method::GET, "/v1/payments?status=paid", None).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("status")));

    let (one, helper) = ("/v1/payments/{id}", "/v1/test_helpers/payments/{id}/pay");
    let actions = ["capture", "cancel", "cancel-or-refund"].map(|a| format!("{one}/{a}"));
    let mut routes = vec![("/v1/payments", "post"), ("/v1/payments", "get"), (one, "get"), (helper, "post")];
    routes.extend(actions.iter().map(|path| (path.as_str(), "post")));
    svc.documents(&routes, &["/v1/payments"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_follow_the_state_table_and_collect_once() {
    let svc = Service::temp(&[common::FAST_UPSTREAMS]);
    let m = svc.merchant("Market").await;
    let key = &m.key;
    let (s1, _) = seller(&svc, key, "Seller Approved", true, Some(500)).await;

    // capture true: Pay → SUCCEEDED, the collection booked once.
    let (_, p) = create_payment(&svc, key, &payment_body(&s1, true)).await;
    let id = p.str("id").to_owned();
    let paid = payment_helper(&svc, key, &id, "pay").await;
    assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
    assert!(paid["captured_at"].is_string());
    assert_eq!(in_transit(&svc, key, &s1).await, 741);
    let resent = payment_helper(&svc, key, &id, "resend-callback").await;
    assert_eq!(resent["payment"]["version"], paid["version"], "a duplicate callback changes nothing");
    assert_eq!(in_transit(&svc, key, &s1).await, 741, "collected once");
    assert_eq!(events_of(&svc, key, "payment.succeeded", &id).await, 1);
    for action in ["capture", "cancel"] {
        let (status, e) = m.act(&format!("/v1/payments/{id}/{action}")).await;
        assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "{action}");
    }
    let check = ledger_balanced(&svc).await;
    assert_eq!(check["negative_available"], json!([]));

    // capture false: Pay → AUTHORIZED (nothing booked), capture → SUCCEEDED (booked).
    let auth = bought(&svc, key, &s1, false).await;
    assert_eq!(in_transit(&svc, key, &s1).await, 741, "an authorization books nothing");
    assert_eq!(events_of(&svc, key, "payment.authorized", &auth).await, 1);
    let (status, captured) = m.act(&format!("/v1/payments/{auth}/capture")).await;
    assert_eq!((status, captured.str("status")), (StatusCode::OK, "SUCCEEDED"), "{captured}");
    assert_eq!(in_transit(&svc, key, &s1).await, 2 * 741);
    payment_helper(&svc, key, &auth, "resend-callback").await;
    assert_eq!(in_transit(&svc, key, &s1).await, 2 * 741, "the capture's callback books nothing more");

    // PENDING → CANCELED (cancel-or-refund); again → 409.
    let (_, p) = create_payment(&svc, key, &payment_body(&s1, true)).await;
    let pending = p.str("id").to_owned();
    let (status, out) = m.act(&format!("/v1/payments/{pending}/cancel-or-refund")).await;
    assert_eq!(
        (status, out["action"].as_str(), out["payment"]["status"].as_str(), out["refund"].clone()),
        (StatusCode::OK, Some("canceled"), Some("CANCELED"), Value::Null),
        "{out}"
    );
    let (status, _) = m.act(&format!("/v1/payments/{pending}/cancel")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = m.act(&format!("/v1/test_helpers/payments/{pending}/pay")).await;
    assert_eq!(status, StatusCode::CONFLICT, "a canceled checkout cannot be paid");

    // AUTHORIZED → CANCELED.
    let voided = bought(&svc, key, &s1, false).await;
    let (status, c) = m.act(&format!("/v1/payments/{voided}/cancel")).await;
    assert_eq!((status, c.str("status")), (StatusCode::OK, "CANCELED"), "{c}");
    assert_eq!(events_of(&svc, key, "payment.canceled", &voided).await, 1);

    // PENDING → DECLINED / EXPIRED.
    for (action, status) in [("fail", "DECLINED"), ("expire", "EXPIRED")] {
        let (_, p) = create_payment(&svc, key, &payment_body(&s1, true)).await;
        let ended = payment_helper(&svc, key, p.str("id"), action).await;
        assert_eq!(ended["status"], status, "{ended}");
        assert!(ended["failure_reason"].is_string());
    }
    assert_eq!(in_transit(&svc, key, &s1).await, 2 * 741, "only captured payments are collected");

    // A refused capture: 502, unchanged; an unknown one: 202, resolved with the same request id.
    let later = bought(&svc, key, &s1, false).await;
    fault(&svc, "capture", "decline").await;
    let (status, e) = m.act(&format!("/v1/payments/{later}/capture")).await;
    assert_eq!((status, e.code()), (StatusCode::BAD_GATEWAY, "upstream_error"), "{e}");
    let still = m.get(&format!("/v1/payments/{later}")).await;
    assert_eq!(
        (still["status"].as_str(), still["pending_action"].clone()),
        (Some("AUTHORIZED"), Value::Null)
    );
    fault(&svc, "capture", "timeout").await;
    let (status, p) = m.act(&format!("/v1/payments/{later}/capture")).await;
    assert_eq!((status, p.str("pending_action.type")), (StatusCode::ACCEPTED, "capture"), "{p}");
    let done =
        payment_until(&svc, key, &later, |p| p["status"] == "SUCCEEDED" && p["pending_action"].is_null())
            .await;
    assert!(done["captured_at"].is_string());
    assert_eq!(in_transit(&svc, key, &s1).await, 3 * 741);

    // Checkout creation: unknown → 202 without checkout_url, then created by the resolver; refused → DECLINED.
    fault(&svc, "create_payment", "error").await;
    let (status, p) = create_payment(&svc, key, &payment_body(&s1, true)).await;
    assert_eq!((status, p["checkout_url"].clone()), (StatusCode::ACCEPTED, Value::Null), "{p}");
    assert_eq!(p["pending_action"]["type"], "create_payment");
    let recovered = payment_until(&svc, key, p.str("id"), |p| p["checkout_url"].is_string()).await;
    assert_eq!(
        (recovered["status"].as_str(), recovered["pending_action"].clone()),
        (Some("PENDING"), Value::Null)
    );
    fault(&svc, "create_payment", "decline").await;
    let (status, p) = create_payment(&svc, key, &payment_body(&s1, true)).await;
    assert_eq!((status, p.str("status")), (StatusCode::CREATED, "DECLINED"), "{p}");

    // The same Idempotency-Key: the same payment.
    let first = m.post_once("/v1/payments", &payment_body(&s1, true), "pay-once-1").await.1;
    let again = m.post_once("/v1/payments", &payment_body(&s1, true), "pay-once-1").await.1;
    assert_eq!(first["id"], again["id"]);

    // SUCCEEDED → REFUNDED (cancel-or-refund refunds the rest); again → 409.
    let (status, out) = m.act(&format!("/v1/payments/{id}/cancel-or-refund")).await;
    assert_eq!(
        (status, out["action"].as_str(), out["payment"]["status"].as_str(), out["refund"]["status"].as_str()),
        (StatusCode::CREATED, Some("refunded"), Some("REFUNDED"), Some("succeeded")),
        "{out}"
    );
    assert_eq!(in_transit(&svc, key, &s1).await, 2 * 741, "the refund takes the line's in-transit back");
    let (status, _) = m.act(&format!("/v1/payments/{id}/cancel-or-refund")).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let check = ledger_balanced(&svc).await;
    assert_eq!(check["negative_available"], json!([]), "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_plus_one_settles_captured_payments_once() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Market").await;
    let key = &m.key;
    let (s1, _) = seller(&svc, key, "Seller Approved", true, Some(500)).await;
    let today = clock::now(&svc).await;
    let captured = paid(&svc, key, &s1).await;
    let authorized = bought(&svc, key, &s1, false).await;

    let run_date = clock::date(clock::day_after(today, 1, 0, 0, 0));
    clock::set(&svc, clock::day_after(today, 1, 2, 0, 0)).await;
    let run = settle(&svc, &run_date).await;
    assert_eq!(run["payments"], 1, "{run}");
    let p = m.get(&format!("/v1/payments/{captured}")).await;
    assert_eq!((p["settled"].as_bool(), p["status"].as_str()), (Some(true), Some("SUCCEEDED")), "{p}");
    assert!(p["settled_at"].is_string());
    let a = m.get(&format!("/v1/payments/{authorized}")).await;
    assert_eq!(a["settled"], false, "an authorization is not settled");

    // The same date again, and the next date: settled once.
    let again = settle(&svc, &run_date).await;
    assert_eq!(again["id"], run["id"]);
    let next_date = clock::date(clock::day_after(today, 2, 0, 0, 0));
    clock::set(&svc, clock::day_after(today, 2, 2, 0, 0)).await;
    let next = settle(&svc, &next_date).await;
    assert_eq!(next["payments"], 0, "{next}");
    let after = m.get(&format!("/v1/payments/{captured}")).await;
    assert_eq!(
        (after["version"].clone(), after["settled_at"].clone()),
        (p["version"].clone(), p["settled_at"].clone())
    );
    assert_eq!(events_of(&svc, key, "payment.settled", &captured).await, 1);
    let events = m.get("/v1/events?type=settlement.completed&limit=100").await;
    let with_payment: Vec<&Value> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["object"]["date"] == run_date.as_str())
        .collect();
    assert_eq!(with_payment.len(), 1, "{events}");
    assert_eq!(with_payment[0]["data"]["object"]["payments"], 1);
    ledger_balanced(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_splits_each_payment_once() {
    let svc = Service::temp(&[common::FAST_UPSTREAMS]);
    let m = svc.merchant("Market").await;
    let key = &m.key;
    let other_key = svc.merchant("Other").await.key;
    let (s1, _) = seller(&svc, key, "Seller Approved", true, Some(500)).await;
    let p1 = paid(&svc, key, &s1).await;
    let p2 = paid(&svc, key, &s1).await;
    let p3 = paid(&svc, key, &s1).await;
    let authorized = bought(&svc, key, &s1, false).await;
    let (status, e) = split_batch(&svc, key, &[&p1]).await;
    assert_eq!(
        (status, e.code(), e.param()),
        (StatusCode::CONFLICT, "invalid_state", Some("items[0].payment_id")),
        "not settled yet: {e}"
    );
    next_day_settled(&svc).await;
    let unsettled = paid(&svc, key, &s1).await; // captured after the run's date

    // §7's checks in order, items by index; nothing created.
    let many: Vec<&str> = (0..101).map(|_| p1.as_str()).collect();
    for (ids, status, code, param) in [
        (vec![], StatusCode::BAD_REQUEST, "invalid_request", "items"),
        (many, StatusCode::BAD_REQUEST, "invalid_request", "items"),
        (vec![p1.as_str(), "pay_unknown"], StatusCode::BAD_REQUEST, "invalid_request", "items[1].payment_id"),
        (vec![p1.as_str(), p1.as_str()], StatusCode::BAD_REQUEST, "invalid_request", "items[1].payment_id"),
        (vec![p1.as_str(), unsettled.as_str()], StatusCode::CONFLICT, "invalid_state", "items[1].payment_id"),
        (vec![authorized.as_str()], StatusCode::CONFLICT, "invalid_state", "items[0].payment_id"),
    ] {
        let (got, e) = split_batch(&svc, key, &ids).await;
        assert_eq!((got, e.code(), e.param()), (status, code, Some(param)), "{e}");
    }
    let (status, _) = split_batch(&svc, &other_key, &[&p1]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "another merchant's payment");
    let listed = m.get("/v1/split-batches").await;
    assert_eq!(listed["data"], json!([]), "nothing created by a refused batch");

    // Two concurrent batches naming p1: one splits it, the other is already_split.
    let one = [p1.as_str()];
    let (a, b) = tokio::join!(split_batch(&svc, key, &one), split_batch(&svc, key, &one));
    let (won, lost) = if a.0 == StatusCode::CREATED { (a, b) } else { (b, a) };
    assert_eq!(won.0, StatusCode::CREATED, "{}", won.1);
    assert_eq!(
        (lost.0, lost.1.code(), lost.1.param()),
        (StatusCode::CONFLICT, "already_split", Some("items[0].payment_id")),
        "{}",
        lost.1
    );
    let batch = won.1;
    assert_eq!((batch.str("status"), batch.str("items.0.status")), ("completed", "executed"));
    assert!(batch.str("id").starts_with("spb_"));
    let p = m.get(&format!("/v1/payments/{p1}")).await;
    assert_eq!(
        (p["split"]["status"].as_str(), p["split"]["batch_id"].clone()),
        (Some("executed"), batch["id"].clone())
    );
    assert_eq!(p["split_marketplace"][0]["split_amount"]["value"], 741);
    let b = recipient_balance(&svc, key, &s1).await;
    assert_eq!((b["available"].as_i64(), b["in_transit"].as_i64()), (Some(741), Some(4 * 741 - 741)), "{b}");
    let (status, e) = split_batch(&svc, key, &[&p1]).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "already_split"));

    // The same Idempotency-Key: the same batch, nothing split again.
    let body = json!({"items": [{"payment_id": p2}]});
    let first = m.post_once("/v1/split-batches", &body, "split-once-1").await.1;
    let again = m.post_once("/v1/split-batches", &body, "split-once-1").await.1;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(recipient_balance(&svc, key, &s1).await["available"], 2 * 741);

    // Refused by the gateway: the item failed, the payment back to not_split, split later once.
    fault(&svc, "split", "decline").await;
    let (status, failed) = split_batch(&svc, key, &[&p3]).await;
    assert_eq!((status, failed.str("items.0.status")), (StatusCode::CREATED, "failed"), "{failed}");
    let p = m.get(&format!("/v1/payments/{p3}")).await;
    assert_eq!(
        (p["split"]["status"].as_str(), p["split"]["batch_id"].clone()),
        (Some("not_split"), Value::Null)
    );
    // Unknown: 202 processing, then executed by the resolver with the same request id.
    fault(&svc, "split", "timeout").await;
    let (status, pending) = split_batch(&svc, key, &[&p3]).await;
    assert_eq!((status, pending.str("items.0.status")), (StatusCode::ACCEPTED, "processing"), "{pending}");
    let (status, e) = split_batch(&svc, key, &[&p3]).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "already_split"), "processing");
    payment_until(&svc, key, &p3, |p| p["split"]["status"] == "executed").await;
    let done = m.get(&format!("/v1/split-batches/{}", pending.str("id"))).await;
    assert_eq!(done["status"], "completed", "{done}");
    // A duplicate payment callback after the split changes nothing.
    payment_helper(&svc, key, &p3, "resend-callback").await;
    let b = recipient_balance(&svc, key, &s1).await;
    assert_eq!((b["available"].as_i64(), b["in_transit"].as_i64()), (Some(3 * 741), Some(741)), "{b}");
    for p in [&p1, &p2, &p3] {
        assert_eq!(events_of(&svc, key, "split.executed", p).await, 1, "split once: {p}");
    }
    let listed = m.get("/v1/split-batches").await;
    assert_eq!(listed.count("data"), 4, "{listed}");
    ledger_balanced(&svc).await;
}

/// SIGABRT right after the batch's fence is durable (before the gateway
/// call), then right after the gateway split it (before the outcome is
/// recorded): after each restart the resolver sends the batch again with its
/// request id, and the payment is split once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_batch_splits_the_payment_once() {
    let (_dir, data) = common::temp_data();
    let svc = Service::armed(&data, "split.after_fence");
    let key = &svc.merchant("Market").await.key.clone();
    let (s1, _) = seller(&svc, key, "Seller Approved", true, Some(500)).await;
    let p1 = paid(&svc, key, &s1).await;
    next_day_settled(&svc).await;
    let body = json!({"items": [{"payment_id": p1}]});
    svc.aborts(key, "/v1/split-batches", &body, "split-crash").await;

    // The resolver sends it; the process dies again once the gateway has split it.
    let svc = Service::armed(&data, "split.after_gateway");
    svc.dies(secs(30), "the resolver reached the gateway");

    let svc = Service::start(&data, &[common::FAST_UPSTREAMS]);
    let p = payment_until(&svc, key, &p1, |p| p["split"]["status"] == "executed").await;
    let batch_id = p.str("split.batch_id").to_owned();
    let (_, retried) = send_once(&svc, key, "/v1/split-batches", &body, "split-crash").await;
    assert_eq!(retried["id"], batch_id.as_str(), "the key names the batch it created");
    assert_eq!((retried.str("status"), retried.str("items.0.status")), ("completed", "executed"));
    let b = recipient_balance(&svc, key, &s1).await;
    assert_eq!((b["available"].as_i64(), b["in_transit"].as_i64()), (Some(741), Some(0)), "split once: {b}");
    assert_eq!(events_of(&svc, key, "split.executed", &p1).await, 1);
    ledger_balanced(&svc).await;
}

/// SECURITY.md: a payment callback is a hint. Signed by another account → 401;
/// by the payment's own account but naming another amount → 400; claiming
/// `paid` while the gateway says pending → nothing changes, nothing is collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_callbacks_move_nothing_on_their_word() {
    let svc = Service::temp(&[]);
    let m = svc.merchant_on_account("Market", "gw_market", "gw-market-key-0001").await;
    svc.merchant_on_account("Minter", "gw_minter", "gw-minter-key-0001").await;
    let key = &m.key;
    let (s1, _) = seller(&svc, key, "Seller Approved", true, Some(500)).await;
    let (_, p) = create_payment(&svc, key, &payment_body(&s1, true)).await;
    assert_eq!(p["status"], "PENDING", "{p}");
    let paid = async |api_key, account, value| {
        svc.gateway_callback(api_key, &common::order_updated(account, &p, "paid", value)).await
    };

    assert_eq!(paid("gw-minter-key-0001", "gw_minter", 780).await, StatusCode::UNAUTHORIZED);
    assert_eq!(paid("gw-market-key-0001", "gw_market", 1).await, StatusCode::BAD_REQUEST);
    assert_eq!(paid("gw-market-key-0001", "gw_market", 780).await, StatusCode::OK);
    let still = m.get(&format!("/v1/payments/{}", p.str("id"))).await;
    assert_eq!((still.str("status"), &still["version"]), ("PENDING", &p["version"]));
    assert_eq!(in_transit(&svc, key, &s1).await, 0, "nothing collected on a callback's word");

    // The buyer really pays: collected once, whatever callbacks repeat.
    payment_helper(&svc, key, p.str("id"), "pay").await;
    assert_eq!(paid("gw-market-key-0001", "gw_market", 780).await, StatusCode::OK);
    assert_eq!(in_transit(&svc, key, &s1).await, 741);
    ledger_balanced(&svc).await;
}
