//! Recipient withdrawals over real HTTP (MARKETPLACE.md §7, §9): each of the
//! six checks in order with its status, code and `param` and nothing created;
//! the window's boundary instants derived from the service clock; then, with
//! a recipient funded by real money (a payment paid on the checkout, settled
//! at T+1 and split: `common::marketplace::funded`), the paths through the sandbox gateway:
//! paid, refused by the bank (`FAIL…` account), and unknown (the `payout`
//! fault) finished by the resolver.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{
    Key, Service, clock, eventually, ledger_balanced,
    marketplace::{funded, recipient, sign_agreement, usd},
    secs, send,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn withdraw(svc: &Service, key: &Key, rec: &str, body: Value) -> (StatusCode, Value) {
    send(svc, key, Method::POST, &format!("/v1/recipients/{rec}/withdrawals"), Some(&body)).await
}

/// 11:00 local (+08:00) on the day after `now`: inside the default window.
fn inside_window(now: DateTime<Utc>) -> DateTime<Utc> {
    clock::day_after(now, 1, 3, 0, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_six_checks_refuse_in_order_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let common::Merchant { key, .. } = svc.merchant("Market").await;
    let common::Merchant { key: other_key, .. } = svc.merchant("Other").await;
    let seller = recipient(&svc, &key, "Seller Approved", "ACC123456").await;
    let pending = recipient(&svc, &key, "Seller CompliancePending", "ACC654321").await;
    let now = clock::now(&svc).await;
    clock::set(&svc, inside_window(now)).await;

    let refused = |status: StatusCode, code: &'static str, param: Option<&'static str>| (status, code, param);
    let cases = [
        (
            json!({"amount": usd(0)}),
            refused(StatusCode::BAD_REQUEST, "invalid_request", Some("amount.value")),
        ),
        (
            json!({"amount": {"value": 5, "currency": "usd"}}),
            refused(StatusCode::BAD_REQUEST, "invalid_request", Some("amount.currency")),
        ),
        // An invalid commission answers before the window or the balance.
        (
            json!({"amount": usd(500), "commission": usd(0)}),
            refused(StatusCode::BAD_REQUEST, "invalid_request", Some("commission.value")),
        ),
        (
            json!({"amount": usd(500), "commission": {"value": 5, "currency": "EUR"}}),
            refused(StatusCode::BAD_REQUEST, "invalid_request", Some("commission.currency")),
        ),
        (
            json!({"amount": usd(500), "commission": usd(500)}),
            refused(StatusCode::BAD_REQUEST, "invalid_request", Some("commission.value")),
        ),
        // No signed commission agreement: the cap is 0.
        (
            json!({"amount": usd(500), "commission": usd(1)}),
            refused(StatusCode::BAD_REQUEST, "commission_limit_exceeded", Some("commission.value")),
        ),
        (json!({"amount": usd(500)}), refused(StatusCode::PAYMENT_REQUIRED, "insufficient_funds", None)),
    ];
    for (body, (status, code, param)) in cases {
        let (got, e) = withdraw(&svc, &key, &seller, body.clone()).await;
        assert_eq!(
            (got, e["error"]["code"].as_str(), e["error"]["param"].as_str()),
            (status, Some(code), param),
            "{body}: {e}"
        );
    }
    // A signed commission agreement of 500 bps: 780 caps 39.
    sign_agreement(&svc, &key, &seller, json!({"type": "commission", "max_commission_bps": 500})).await;
    let (got, e) = withdraw(&svc, &key, &seller, json!({"amount": usd(780), "commission": usd(40)})).await;
    assert_eq!(
        (got, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("commission_limit_exceeded")),
        "{e}"
    );
    let (got, e) = withdraw(&svc, &key, &seller, json!({"amount": usd(780), "commission": usd(39)})).await;
    assert_eq!(
        (got, e["error"]["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("insufficient_funds")),
        "39 is within the cap: {e}"
    );

    // Capability before the window: compliance still pending → 409 invalid_state.
    let (got, e) = withdraw(&svc, &key, &pending, json!({"amount": usd(5)})).await;
    assert_eq!((got, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_state")), "{e}");

    // The window's four boundaries of §7, on the day after today (+08:00: 07:00 = 23:00Z the day before).
    for (at, open) in [
        (clock::day_after(now, 0, 22, 59, 59), false),
        (clock::day_after(now, 0, 23, 0, 0), true),
        (clock::day_after(now, 1, 11, 59, 59), true),
        (clock::day_after(now, 1, 12, 0, 0), false),
    ] {
        clock::set(&svc, at).await;
        let (got, e) = withdraw(&svc, &key, &seller, json!({"amount": usd(5)})).await;
        let expected = if open {
            (StatusCode::PAYMENT_REQUIRED, "insufficient_funds")
        } else {
            (StatusCode::CONFLICT, "withdrawal_window_closed")
        };
        assert_eq!((got, e["error"]["code"].as_str().unwrap_or_default()), expected, "{at}: {e}");
        if !open {
            let message = e["error"]["message"].as_str().unwrap();
            assert!(message.contains("07:00-20:00") && message.contains("+08:00"), "{message}");
            // Capability is checked before the window.
            let (got, e) = withdraw(&svc, &key, &pending, json!({"amount": usd(5)})).await;
            assert_eq!(
                (got, e["error"]["code"].as_str()),
                (StatusCode::CONFLICT, Some("invalid_state")),
                "{e}"
            );
        }
    }

    // Not found: unknown, or another merchant's recipient.
    let (got, _) = withdraw(&svc, &key, &seller.replace("rec_", "rec_0"), json!({"amount": usd(5)})).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    let (got, _) = withdraw(&svc, &other_key, &seller, json!({"amount": usd(5)})).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    let (_, listed) =
        send(&svc, &key, Method::GET, &format!("/v1/recipients/{seller}/withdrawals"), None).await;
    assert_eq!(listed["data"], json!([]), "nothing created by a refused request");
    let (_, balance) = send(&svc, &key, Method::GET, &format!("/v1/recipients/{seller}/balance"), None).await;
    assert!(balance["balances"].as_array().unwrap().iter().all(|b| b["withdrawing"] == 0), "{balance}");
}

async fn balance(svc: &Service, key: &Key, rec: &str) -> (i64, i64) {
    let (_, b) = send(svc, key, Method::GET, &format!("/v1/recipients/{rec}/balance"), None).await;
    (
        b["balances"][0]["available"].as_i64().unwrap_or(0),
        b["balances"][0]["withdrawing"].as_i64().unwrap_or(0),
    )
}

async fn withdrawal_settled(svc: &Service, key: &Key, rec: &str, id: &str) -> Value {
    eventually("the withdrawal settled", secs(30), async || {
        let (_, w) =
            send(svc, key, Method::GET, &format!("/v1/recipients/{rec}/withdrawals/{id}"), None).await;
        common::when(w["status"] != "processing", w)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funded_recipient_is_paid_refused_or_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("PELAGO_UPSTREAM_TIMEOUT_MS", "1000")];
    let svc = Service::start(&data, &env);
    let common::Merchant { key, .. } = svc.merchant("Market").await;
    let seller = recipient(&svc, &key, "Seller Approved", "ACC123456").await;
    let failing = recipient(&svc, &key, "Seller Approved", "FAIL99999").await;
    sign_agreement(&svc, &key, &seller, json!({"type": "commission", "max_commission_bps": 1000})).await;
    let now = clock::now(&svc).await;
    funded(&svc, &key, &[(&seller, 900), (&failing, 300)]).await;
    clock::set(&svc, inside_window(now)).await;
    assert_eq!(balance(&svc, &key, &seller).await, (900, 0));

    // Paid: W 500, K 25 → 475 to the bank, 25 to the merchant.
    let (status, w) = withdraw(
        &svc,
        &key,
        &seller,
        json!({"amount": usd(500), "commission": usd(25), "reference": "payout-1"}),
    )
    .await;
    assert_eq!((status, w["status"].as_str()), (StatusCode::CREATED, Some("succeeded")), "{w}");
    assert!(w["id"].as_str().unwrap().starts_with("rwd_"));
    assert_eq!(w["payout_amount"], usd(475));
    assert_eq!(
        w["destination"],
        json!({"type": "bank_account", "bank_code": "DBS", "account_number": "****3456"})
    );
    assert!(!w.to_string().contains("ACC123456"), "the account number is masked: {w}");
    assert_eq!(balance(&svc, &key, &seller).await, (400, 0));
    assert_eq!(common::available(&svc, &key).await, 25, "the commission is the merchant's");

    // The same Idempotency-Key: the same withdrawal, paid once.
    let path = format!("/v1/recipients/{seller}/withdrawals");
    let body = serde_json::to_vec(&json!({"amount": usd(50)})).unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = svc
            .signed_with_key(&key, Method::POST, &path, &body, "withdraw-once")
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.push(r.json::<Value>().await.unwrap()["id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(balance(&svc, &key, &seller).await, (350, 0), "one debit");

    // Refused by the bank: the hold is given back.
    let (status, w) = withdraw(&svc, &key, &failing, json!({"amount": usd(300)})).await;
    assert_eq!((status, w["status"].as_str()), (StatusCode::CREATED, Some("failed")), "{w}");
    assert!(w["failure_reason"].is_string(), "{w}");
    assert_eq!(balance(&svc, &key, &failing).await, (300, 0));

    // Unknown (the gateway answers after Pelago stopped waiting): 202, then paid.
    svc.admin(Method::POST, "/admin/v1/test_helpers/gateway/faults")
        .json(&json!({"operation": "payout", "behavior": "timeout", "count": 1}))
        .send()
        .await
        .unwrap();
    let (status, w) = withdraw(&svc, &key, &seller, json!({"amount": usd(100)})).await;
    assert_eq!((status, w["status"].as_str()), (StatusCode::ACCEPTED, Some("processing")), "{w}");
    // The gateway's signed callback (confirmed by a query by request id) or,
    // failing it, the resolver finishes it: paid once.
    let done = withdrawal_settled(&svc, &key, &seller, w["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(balance(&svc, &key, &seller).await, (250, 0));

    let (_, listed) =
        send(&svc, &key, Method::GET, &format!("/v1/recipients/{seller}/withdrawals"), None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3, "{listed}");
    let (_, events) =
        send(&svc, &key, Method::GET, "/v1/events?type=recipient.withdrawal.succeeded", None).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 3, "{events}");
    let (_, events) =
        send(&svc, &key, Method::GET, "/v1/events?type=recipient.withdrawal.failed", None).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1, "{events}");
    ledger_balanced(&svc).await;
}

/// A crash between the hold and the payout: after the restart the resolver
/// finds the held withdrawal, learns the gateway never saw its payout,
/// submits it with the same request id and finishes it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_hold_is_finished_by_the_resolver_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("PELAGO_UPSTREAM_TIMEOUT_MS", "1000")];
    let svc = Service::start(&data, &env);
    let common::Merchant { key, .. } = svc.merchant("Market").await;
    let seller = recipient(&svc, &key, "Seller Approved", "ACC123456").await;
    let now = clock::now(&svc).await;
    funded(&svc, &key, &[(&seller, 900)]).await;
    svc.terminate();
    let svc = Service::start(
        &data,
        &[("PELAGO_UPSTREAM_TIMEOUT_MS", "1000"), ("PELAGO_FAILPOINTS", "recipient_withdrawal.after_hold")],
    );
    clock::set(&svc, inside_window(now)).await;
    let path = format!("/v1/recipients/{seller}/withdrawals");
    let body = serde_json::to_vec(&json!({"amount": usd(400)})).unwrap();
    let answer =
        svc.signed(&key, Method::POST, &path, &body).header("content-type", "application/json").send().await;
    assert!(answer.is_err(), "the process aborts at the failpoint before answering");
    let status = svc.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "{status:?}");

    let svc = Service::start(&data, &env);
    let done = eventually("the withdrawal finished by the resolver", secs(30), async || {
        let (_, listed) = send(&svc, &key, Method::GET, &path, None).await;
        common::when(listed["data"][0]["status"] == "succeeded", listed)
    })
    .await;
    assert_eq!(done["data"].as_array().unwrap().len(), 1, "{done}");
    assert_eq!(balance(&svc, &key, &seller).await, (500, 0), "debited once");
    ledger_balanced(&svc).await;
}

/// A `recipient_payout.updated` callback signed by `api_key` for `account`.
async fn payout_callback(
    svc: &Service,
    account: &str,
    api_key: &str,
    request_id: &str,
    value: i64,
) -> StatusCode {
    let body = json!({"event_id": format!("evt_{account}_{request_id}_{value}"), "merchant_id": account,
        "type": "recipient_payout.updated", "data": {"id": "grp_forged", "request_id": request_id,
        "status": "failed", "amount": usd(value)}});
    svc.gateway_callback(api_key, &body).await
}

/// A payout callback is a hint: signed by another account → 401; a lying
/// amount → 400; the right account and amount → only the gateway's answer to
/// the query counts, and a paid withdrawal stays paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_callbacks_are_bound_compared_and_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = Service::start(&data, &[]);
    let key = svc.merchant_on_account("Market", "gw_market", "gw-market-key-0001").await.key;
    svc.merchant_on_account("Forger", "gw_forger", "gw-forger-key-0001").await;
    let seller = recipient(&svc, &key, "Seller Approved", "ACC123456").await;
    let now = clock::now(&svc).await;
    funded(&svc, &key, &[(&seller, 900)]).await;
    clock::set(&svc, inside_window(now)).await;
    let (status, w) = withdraw(&svc, &key, &seller, json!({"amount": usd(500)})).await;
    assert_eq!((status, w["status"].as_str()), (StatusCode::CREATED, Some("succeeded")), "{w}");
    let id = w["id"].as_str().unwrap();

    assert_eq!(
        payout_callback(&svc, "gw_forger", "gw-forger-key-0001", id, 500).await,
        StatusCode::UNAUTHORIZED
    );
    let never = "rwd_01JD0000000000000000000009";
    assert_eq!(
        payout_callback(&svc, "gw_market", "gw-market-key-0001", never, 500).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        payout_callback(&svc, "gw_market", "gw-market-key-0001", id, 499).await,
        StatusCode::BAD_REQUEST
    );
    // Genuine account and amount, but the body says failed: the gateway says paid; nothing changes.
    assert_eq!(payout_callback(&svc, "gw_market", "gw-market-key-0001", id, 500).await, StatusCode::OK);
    let (_, after) =
        send(&svc, &key, Method::GET, &format!("/v1/recipients/{seller}/withdrawals/{id}"), None).await;
    assert_eq!(
        (after["status"].as_str(), after["version"].as_u64()),
        (Some("succeeded"), Some(2)),
        "{after}"
    );
    assert_eq!(balance(&svc, &key, &seller).await, (400, 0));
    let (_, events) =
        send(&svc, &key, Method::GET, "/v1/events?type=recipient.withdrawal.failed", None).await;
    assert_eq!(events["data"], json!([]), "{events}");
    ledger_balanced(&svc).await;
}
