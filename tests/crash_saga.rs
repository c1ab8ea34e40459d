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
    let (merchant, key, _) = svc.merchant("Crash").await;
    svc.admin(Method::PUT, &format!("/admin/v1/merchants/{merchant}/fees"))
        .json(&json!({"currency": "USD", "topup_fee": {"fixed": 100}}))
        .send()
        .await
        .unwrap();
    send(
        &svc,
        &key,
        Method::POST,
        "/v1/test_helpers/deposits",
        Some(&json!({"amount": {"value": 10_000, "currency": "USD"}, "network": "TRON"})),
    )
    .await;
    let (_, holder) = send(&svc, &key, Method::POST, "/v1/cardholders", Some(&json!({
        "card_name": "PELAGO_VIRTUAL_USD", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "city": "Singapore", "postal_code": "018989", "country": "SG"}}))).await;
    let (_, card) =
        send(&svc, &key, Method::POST, "/v1/cards", Some(&json!({"cardholder_id": holder["id"]}))).await;
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
