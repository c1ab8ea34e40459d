//! Recipient withdrawals over real HTTP (MARKETPLACE.md §7, §9): each of the
//! six checks in order with its status, code and `param` and nothing created;
//! the window's boundary instants derived from the service clock; then, with
//! a recipient funded by real money (a payment paid on the checkout, settled
//! at T+1 and split: `common::marketplace::funded`), the paths through the sandbox gateway:
//! paid, refused by the bank (`FAIL…` account), and unknown (the `payout`
//! fault) finished by the resolver.

mod common;

use chrono::{DateTime, Utc};
use common::{
    Json, Merchant, Service, clock, ledger_balanced,
    marketplace::{funded, recipient, recipient_balance, sign_agreement, usd},
    secs,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ENV: &[(&str, &str)] = &[common::FAST_UPSTREAMS];

async fn withdraw(m: &Merchant<'_>, rec: &str, body: Value) -> (StatusCode, Value) {
    m.post(&format!("/v1/recipients/{rec}/withdrawals"), body).await
}

/// The merchant `Market` and its approved recipient (account `ACC123456`).
async fn market(svc: &Service) -> (Merchant<'_>, String) {
    let m = svc.merchant("Market").await;
    let seller = recipient(svc, &m.key, "Seller Approved", "ACC123456").await;
    (m, seller)
}

/// 11:00 local (+08:00) on the day after `now`: inside the default window.
fn inside_window(now: DateTime<Utc>) -> DateTime<Utc> {
    clock::day_after(now, 1, 3, 0, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_six_checks_refuse_in_order_and_create_nothing() {
    let svc = Service::temp(&[]);
    let (m, seller) = market(&svc).await;
    let other = svc.merchant("Other").await;
    let pending = recipient(&svc, &m.key, "Seller CompliancePending", "ACC654321").await;
    let now = clock::now(&svc).await;
    clock::set(&svc, inside_window(now)).await;

    let refused = |status: StatusCode, code: &'static str, param: Option<&'static str>| (status, code, param);
    let invalid = |param: &'static str| refused(StatusCode::BAD_REQUEST, "invalid_request", Some(param));
    let cases = [
        (json!({"amount": usd(0)}), invalid("amount.value")),
        (json!({"amount": {"value": 5, "currency": "usd"}}), invalid("amount.currency")),
        // An invalid commission answers before the window or the balance.
        (json!({"amount": usd(500), "commission": usd(0)}), invalid("commission.value")),
        (
            json!({"amount": usd(500), "commission": {"value": 5, "currency": "EUR"}}),
            invalid("commission.currency"),
        ),
        (json!({"amount": usd(500), "commission": usd(500)}), invalid("commission.value")),
        // No signed commission agreement: the cap is 0.
        (
            json!({"amount": usd(500), "commission": usd(1)}),
            refused(StatusCode::BAD_REQUEST, "commission_limit_exceeded", Some("commission.value")),
        ),
        (json!({"amount": usd(500)}), refused(StatusCode::PAYMENT_REQUIRED, "insufficient_funds", None)),
    ];
    for (body, (status, code, param)) in cases {
        let (got, e) = withdraw(&m, &seller, body.clone()).await;
        assert_eq!((got, e.code(), e.param()), (status, code, param), "{body}: {e}");
    }
    // A signed commission agreement of 500 bps: 780 caps 39.
    sign_agreement(&svc, &m.key, &seller, json!({"type": "commission", "max_commission_bps": 500})).await;
    let (got, e) = withdraw(&m, &seller, json!({"amount": usd(780), "commission": usd(40)})).await;
    assert_eq!((got, e.code()), (StatusCode::BAD_REQUEST, "commission_limit_exceeded"), "{e}");
    let (got, e) = withdraw(&m, &seller, json!({"amount": usd(780), "commission": usd(39)})).await;
    assert_eq!((got, e.code()), (StatusCode::PAYMENT_REQUIRED, "insufficient_funds"), "within the cap: {e}");

    // Capability before the window: compliance still pending → 409 invalid_state.
    let (got, e) = withdraw(&m, &pending, json!({"amount": usd(5)})).await;
    assert_eq!((got, e.code()), (StatusCode::CONFLICT, "invalid_state"), "{e}");

    // The window's four boundaries of §7, on the day after today (+08:00: 07:00 = 23:00Z the day before).
    for (at, open) in [
        (clock::day_after(now, 0, 22, 59, 59), false),
        (clock::day_after(now, 0, 23, 0, 0), true),
        (clock::day_after(now, 1, 11, 59, 59), true),
        (clock::day_after(now, 1, 12, 0, 0), false),
    ] {
        clock::set(&svc, at).await;
        let (got, e) = withdraw(&m, &seller, json!({"amount": usd(5)})).await;
        let expected = if open {
            (StatusCode::PAYMENT_REQUIRED, "insufficient_funds")
        } else {
            (StatusCode::CONFLICT, "withdrawal_window_closed")
        };
        assert_eq!((got, e.code()), expected, "{at}: {e}");
        if !open {
            let message = e.str("error.message");
            assert!(message.contains("07:00-20:00") && message.contains("+08:00"), "{message}");
            // Capability is checked before the window.
            let (got, e) = withdraw(&m, &pending, json!({"amount": usd(5)})).await;
            assert_eq!((got, e.code()), (StatusCode::CONFLICT, "invalid_state"), "{e}");
        }
    }

    // Not found: unknown, or another merchant's recipient.
    let (got, _) = withdraw(&m, &seller.replace("rec_", "rec_0"), json!({"amount": usd(5)})).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    let (got, _) = withdraw(&other, &seller, json!({"amount": usd(5)})).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    let listed = m.get(&format!("/v1/recipients/{seller}/withdrawals")).await;
    assert_eq!(listed["data"], json!([]), "nothing created by a refused request");
    let balance = m.get(&format!("/v1/recipients/{seller}/balance")).await;
    assert!(balance.at("balances").as_array().unwrap().iter().all(|b| b["withdrawing"] == 0), "{balance}");
}

/// The recipient's (available, withdrawing) in its first currency (0 while none).
async fn balance(m: &Merchant<'_>, rec: &str) -> (i64, i64) {
    let b = recipient_balance(m.svc, &m.key, rec).await;
    (b["available"].as_i64().unwrap_or(0), b["withdrawing"].as_i64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funded_recipient_is_paid_refused_or_resolved() {
    let svc = Service::temp(ENV);
    let (m, seller) = market(&svc).await;
    let failing = recipient(&svc, &m.key, "Seller Approved", "FAIL99999").await;
    sign_agreement(&svc, &m.key, &seller, json!({"type": "commission", "max_commission_bps": 1000})).await;
    let now = clock::now(&svc).await;
    funded(&svc, &m.key, &[(&seller, 900), (&failing, 300)]).await;
    clock::set(&svc, inside_window(now)).await;
    assert_eq!(balance(&m, &seller).await, (900, 0));

    // Paid: W 500, K 25 → 475 to the bank, 25 to the merchant.
    let body = json!({"amount": usd(500), "commission": usd(25), "reference": "payout-1"});
    let (status, w) = withdraw(&m, &seller, body).await;
    assert_eq!((status, w.str("status")), (StatusCode::CREATED, "succeeded"), "{w}");
    assert!(w.str("id").starts_with("rwd_"));
    assert_eq!(w["payout_amount"], usd(475));
    assert_eq!(
        w["destination"],
        json!({"type": "bank_account", "bank_code": "DBS", "account_number": "****3456"})
    );
    assert!(!w.to_string().contains("ACC123456"), "the account number is masked: {w}");
    assert_eq!(balance(&m, &seller).await, (400, 0));
    assert_eq!(m.available().await, 25, "the commission is the merchant's");

    // The same Idempotency-Key: the same withdrawal, paid once.
    let path = format!("/v1/recipients/{seller}/withdrawals");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, w) = m.post_once(&path, &json!({"amount": usd(50)}), "withdraw-once").await;
        assert_eq!(status, StatusCode::CREATED, "{w}");
        ids.push(w.str("id").to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(balance(&m, &seller).await, (350, 0), "one debit");

    // Refused by the bank: the hold is given back.
    let (status, w) = withdraw(&m, &failing, json!({"amount": usd(300)})).await;
    assert_eq!((status, w.str("status")), (StatusCode::CREATED, "failed"), "{w}");
    assert!(w["failure_reason"].is_string(), "{w}");
    assert_eq!(balance(&m, &failing).await, (300, 0));

    // Unknown (the gateway answers after Pelago stopped waiting): 202, then paid.
    svc.gateway_fault(json!({"operation": "payout", "behavior": "timeout", "count": 1})).await;
    let (status, w) = withdraw(&m, &seller, json!({"amount": usd(100)})).await;
    assert_eq!((status, w.str("status")), (StatusCode::ACCEPTED, "processing"), "{w}");
    // The gateway's signed callback (confirmed by a query by request id) or,
    // failing it, the resolver finishes it: paid once.
    let done = m.poll(&format!("{path}/{}", w.str("id")), secs(30), |w| w["status"] != "processing").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(balance(&m, &seller).await, (250, 0));

    assert_eq!(m.get(&path).await.count("data"), 3);
    assert_eq!(m.events("recipient.withdrawal.succeeded").await, 3);
    assert_eq!(m.events("recipient.withdrawal.failed").await, 1);
    ledger_balanced(&svc).await;
}

/// A crash between the hold and the payout: after the restart the resolver
/// finds the held withdrawal, learns the gateway never saw its payout,
/// submits it with the same request id and finishes it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_hold_is_finished_by_the_resolver_once() {
    let (_dir, data) = common::temp_data();
    let svc = Service::start(&data, ENV);
    let (m, seller) = market(&svc).await;
    let (id, key) = (m.id.clone(), m.key.clone());
    let now = clock::now(&svc).await;
    funded(&svc, &key, &[(&seller, 900)]).await;
    svc.terminate();
    let svc = Service::armed(&data, "recipient_withdrawal.after_hold");
    clock::set(&svc, inside_window(now)).await;
    let path = format!("/v1/recipients/{seller}/withdrawals");
    svc.aborts(&key, &path, &json!({"amount": usd(400)}), "").await;

    let svc = Service::start(&data, ENV);
    let m = Merchant::of(&svc, &id, key);
    let done = m.poll(&path, secs(30), |listed| listed["data"][0]["status"] == "succeeded").await;
    assert_eq!(done.count("data"), 1, "{done}");
    assert_eq!(balance(&m, &seller).await, (500, 0), "debited once");
    ledger_balanced(&svc).await;
}

/// A payout callback is a hint: signed by another account → 401; a lying
/// amount → 400; the right account and amount → only the gateway's answer to
/// the query counts, and a paid withdrawal stays paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_callbacks_are_bound_compared_and_confirmed() {
    let svc = Service::temp(&[]);
    let m = svc.merchant_on_account("Market", "gw_market", "gw-market-key-0001").await;
    svc.merchant_on_account("Forger", "gw_forger", "gw-forger-key-0001").await;
    let seller = recipient(&svc, &m.key, "Seller Approved", "ACC123456").await;
    let now = clock::now(&svc).await;
    funded(&svc, &m.key, &[(&seller, 900)]).await;
    clock::set(&svc, inside_window(now)).await;
    let (status, w) = withdraw(&m, &seller, json!({"amount": usd(500)})).await;
    assert_eq!((status, w.str("status")), (StatusCode::CREATED, "succeeded"), "{w}");
    let id = w.str("id");

    // Each a `recipient_payout.updated` callback saying `failed`, signed by `api_key` for `account`.
    let never = "rwd_01JD0000000000000000000009";
    for (account, api_key, request_id, value, answer) in [
        ("gw_forger", "gw-forger-key-0001", id, 500, StatusCode::UNAUTHORIZED),
        ("gw_market", "gw-market-key-0001", never, 500, StatusCode::UNAUTHORIZED),
        ("gw_market", "gw-market-key-0001", id, 499, StatusCode::BAD_REQUEST),
        // Genuine account and amount, but the body says failed: the gateway says paid; nothing changes.
        ("gw_market", "gw-market-key-0001", id, 500, StatusCode::OK),
    ] {
        let body = json!({"event_id": format!("evt_{account}_{request_id}_{value}"), "merchant_id": account,
            "type": "recipient_payout.updated", "data": {"id": "grp_forged", "request_id": request_id,
            "status": "failed", "amount": usd(value)}});
        assert_eq!(svc.gateway_callback(api_key, &body).await, answer, "{body}");
    }
    let after = m.get(&format!("/v1/recipients/{seller}/withdrawals/{id}")).await;
    assert_eq!((after.str("status"), after.i64("version")), ("succeeded", 2), "{after}");
    assert_eq!(balance(&m, &seller).await, (400, 0));
    assert_eq!(m.events("recipient.withdrawal.failed").await, 0);
    ledger_balanced(&svc).await;
}
