//! SIGKILL in the middle of a money saga (issue 6): a top-up whose channel
//! call is in flight when the process dies ends, after a restart and with no
//! further request, in exactly one of (funded + debited) or (not funded + not
//! debited).

mod common;

use std::time::{Duration, Instant};

use common::{Service, ledger_balanced, send};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_topup_ends_funded_and_debited_or_neither() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("PELAGO_UPSTREAM_TIMEOUT_MS", "1500")];
    let svc = Service::start(&data, &env);
    let (_, key, holder) =
        funded_merchant(&svc, json!({"currency": "USD", "topup_fee": {"fixed": 100}})).await;
    let (_, card) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder}))).await;
    let card = card["id"].as_str().unwrap().to_owned();
    let channels: Value =
        svc.admin(Method::GET, "/admin/v1/channels").send().await.unwrap().json().await.unwrap();
    let channel = channels["data"][0]["id"].as_str().unwrap().to_owned();
    // The channel applies the top-up and holds its answer past Pelago's timeout.
    svc.admin(Method::POST, &format!("/admin/v1/test_helpers/channels/{channel}/faults"))
        .json(&json!({"operation": "topup", "behavior": "timeout", "count": 1}))
        .send()
        .await
        .unwrap();

    // Fire the top-up and do not wait for it.
    let request = svc
        .signed(
            &key,
            Method::POST,
            &format!("/v1/cards/{card}/topups"),
            br#"{"amount":{"value":1000,"currency":"USD"}}"#,
        )
        .header("content-type", "application/json")
        .send();
    let in_flight = tokio::spawn(request);
    // Kill once the debit is booked (the saga is then at the channel call).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, b) = send(&svc, &key, Method::GET, "/v1/balance", None).await;
        if b["balances"][0]["available"].as_i64() == Some(10_000 - 1_100) {
            break;
        }
        assert!(Instant::now() < deadline, "the debit never landed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    svc.kill(); // SIGKILL: no drain, no flush beyond what was acknowledged
    let _ = in_flight.await;

    // Restart: the resolver finishes the saga by itself.
    let svc = Service::start(&data, &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    let topup = loop {
        let (_, list) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card}/topups"), None).await;
        let t = list["data"][0].clone();
        if t["status"] == "succeeded" || t["status"] == "failed" {
            break t;
        }
        assert!(Instant::now() < deadline, "the top-up never finished: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, details) = send(&svc, &key, Method::GET, &format!("/v1/cards/{card}/details"), None).await;
    let (_, balance) = send(&svc, &key, Method::GET, "/v1/balance", None).await;
    let funded = details["balance"]["value"].as_i64().unwrap();
    let available = balance["balances"][0]["available"].as_i64().unwrap();
    // The channel had applied it, so the resolver must find it applied: funded
    // and debited, once (not half a saga, and not the refusal a guess would give).
    assert_eq!(
        (funded, available, topup["status"].as_str()),
        (1_000, 8_900, Some("succeeded")),
        "funded {funded}, available {available}, {topup}"
    );
    ledger_balanced(&svc).await;
}

/// Issue 14: a master-account card opening that dies right after its
/// application fee was booked (a failpoint aborts the process between the two
/// commits) charges the fee once: after a restart the resolver opens that
/// card, and a retry with the same Idempotency-Key answers it, with no second
/// fee and no second card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_application_fee_and_the_card_charges_once_and_opens_that_card() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("PELAGO_UPSTREAM_TIMEOUT_MS", "1000")];
    let svc = Service::start(&data, &[env[0], ("PELAGO_FAILPOINTS", "cards.open.after_fee")]);
    let (_, key, holder) =
        funded_merchant(&svc, json!({"currency": "USD", "application_fee": {"fixed": 500}})).await;
    let body = serde_json::to_vec(&json!({"cardholder_id": holder})).unwrap();
    let open = |svc: &Service| {
        svc.signed_with_key(&key, Method::POST, "/v1/cards", &body, "open-after-crash")
            .header("content-type", "application/json")
            .send()
    };
    assert!(open(&svc).await.is_err(), "the process aborts at the failpoint before it answers");
    assert!(!svc.wait_exit(Duration::from_secs(20)).success());

    let svc = Service::start(&data, &env);
    // The resolver finishes the opening: one card, active, the fee charged once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let cards = loop {
        let (_, cards) = send(&svc, &key, Method::GET, "/v1/cards", None).await;
        if cards["data"].as_array().is_some_and(|c| c.len() == 1 && c[0]["status"] == "active") {
            break cards;
        }
        assert!(Instant::now() < deadline, "the card was never opened: {cards}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, balance) = send(&svc, &key, Method::GET, "/v1/balance", None).await;
    assert_eq!(balance["balances"][0]["available"], 10_000 - 500, "the fee once: {balance}");
    // The retry with the same key answers that card; nothing more is charged or created.
    let retried = open(&svc).await.unwrap();
    assert!(retried.status().is_success(), "{}", retried.status());
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["id"], cards["data"][0]["id"]);
    let (_, after) = send(&svc, &key, Method::GET, "/v1/cards", None).await;
    assert_eq!(after["data"].as_array().unwrap().len(), 1);
    let (_, balance) = send(&svc, &key, Method::GET, "/v1/balance", None).await;
    assert_eq!(balance["balances"][0]["available"], 10_000 - 500);
    ledger_balanced(&svc).await;
}

/// A master-account merchant with `fees` (a FeeSchedule in USD), 10,000
/// deposited and an active cardholder: (merchant id, key, cardholder id).
async fn funded_merchant(svc: &Service, fees: Value) -> (String, common::Key, String) {
    let (merchant, key, _) = svc.merchant("Recovered").await;
    svc.admin(Method::PUT, &format!("/admin/v1/merchants/{merchant}/fees")).json(&fees).send().await.unwrap();
    send(
        svc,
        &key,
        Method::POST,
        "/v1/test_helpers/deposits",
        Some(&json!({"amount": {"value": 10_000, "currency": "USD"}, "network": "TRON"})),
    )
    .await;
    let (_, holder) =
        send(svc, &key, Method::POST, "/v1/cardholders", Some(&common::cardholder_body("Lovelace"))).await;
    (merchant, key, holder["id"].as_str().unwrap().to_owned())
}

/// A master-account merchant with 10,000 available and one active card.
async fn funded_card(svc: &Service) -> (String, common::Key, String) {
    let (merchant, key, holder) = funded_merchant(svc, json!({"currency": "USD"})).await;
    let (_, card) = send(svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder}))).await;
    (merchant, key, card["id"].as_str().unwrap().to_owned())
}

/// A top-up that dies after it began and before its debit: the resolver
/// fails it (nothing was charged) rather than guessing, and a retry of its
/// request, answered with it while it was unresolved, sees it fail; a new
/// request tops the card up once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topup_that_died_before_its_debit_fails_and_charges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("PELAGO_UPSTREAM_TIMEOUT_MS", "1000")];
    let svc = Service::start(&data, &[env[0], ("PELAGO_FAILPOINTS", "topups.after_begin")]);
    let (_, key, card) = funded_card(&svc).await;
    let body = serde_json::to_vec(&json!({"amount": {"value": 1_000, "currency": "USD"}})).unwrap();
    let path = format!("/v1/cards/{card}/topups");
    let topup = |svc: &Service, idempotency_key: &'static str| {
        svc.signed_with_key(&key, Method::POST, &path, &body, idempotency_key)
            .header("content-type", "application/json")
            .send()
    };
    assert!(topup(&svc, "topup-after-crash").await.is_err(), "aborted at the failpoint");
    assert!(!svc.wait_exit(Duration::from_secs(20)).success());
    let svc = Service::start(&data, &env);
    let retried = topup(&svc, "topup-after-crash").await.unwrap();
    assert_eq!(retried.status().as_u16(), 202, "the begun top-up, outcome not yet known");
    let left: Value = retried.json().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let (_, t) =
            send(&svc, &key, Method::GET, &format!("/v1/topups/{}", left["id"].as_str().unwrap()), None)
                .await;
        if t["status"] == "failed" {
            break t;
        }
        assert!(Instant::now() < deadline, "never resolved: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["status_history"].as_array().unwrap().len(), 2, "{failed}");
    assert_eq!(common::available(&svc, &key).await, 10_000, "nothing charged");
    let fresh = topup(&svc, "topup-fresh").await.unwrap();
    assert_eq!(fresh.status().as_u16(), 201);
    assert_eq!(common::available(&svc, &key).await, 10_000 - 1_000, "debited once");
    ledger_balanced(&svc).await;
}

/// A withdrawal that dies after its hold and before its record: the resolver
/// releases the hold and frees its Idempotency-Key (kept in the hold row), so
/// the retry with that key holds and pays out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_that_died_after_its_hold_is_released_and_its_key_freed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("PELAGO_UPSTREAM_TIMEOUT_MS", "1000")];
    let svc = Service::start(&data, &[env[0], ("PELAGO_FAILPOINTS", "withdrawals.after_hold")]);
    let (merchant, key, _) = funded_card(&svc).await;
    svc.admin(Method::PUT, &format!("/admin/v1/merchants/{merchant}/withdrawal-addresses"))
        .json(&json!({"addresses": [{"address": "TXYZ0001", "network": "TRON", "label": "channel A"}]}))
        .send()
        .await
        .unwrap();
    let withdraw = |svc: &Service| {
        svc.admin(Method::POST, &format!("/admin/v1/merchants/{merchant}/withdrawals"))
            .header("idempotency-key", "withdraw-after-crash")
            .json(&json!({"amount": {"value": 2_000, "currency": "USD"}, "address": "TXYZ0001"}))
            .send()
    };
    assert!(withdraw(&svc).await.is_err(), "aborted at the failpoint");
    assert!(!svc.wait_exit(Duration::from_secs(20)).success());
    let svc = Service::start(&data, &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let r = withdraw(&svc).await.unwrap();
        if r.status().as_u16() == 201 {
            break r.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the key was never freed: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["status"], "succeeded", "{answer}");
    assert_eq!(common::available(&svc, &key).await, 10_000 - 2_000, "held and paid once");
    ledger_balanced(&svc).await;
}
