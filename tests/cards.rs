//! Cards over real HTTP with the sandbox (issue 5).

mod common;

use common::{Json, Merchant, Service, ledger_balanced, secs};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A master-account merchant with an application fee, a top-up fee and `deposit` USD.
async fn funded_merchant(svc: &Service, application_fee: i64, deposit: i64) -> Merchant<'_> {
    let fees =
        json!({"application_fee": {"fixed": application_fee}, "topup_fee": {"fixed": 100, "rate_bps": 150}});
    svc.funded_merchant("Cards", fees, deposit).await
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap();
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_account_card_lifecycle() {
    let svc = Service::temp(&[]);
    let m = funded_merchant(&svc, 500, 10_000).await;
    let holder = m.active_cardholder().await;

    let (status, card) = m.post("/v1/cards", json!({"cardholder_id": holder, "reference": "c1"})).await;
    assert_eq!(status, StatusCode::CREATED, "{card}");
    assert_eq!(card["status"], "active");
    assert_eq!(card["bin"], "424242");
    assert_eq!(card.str("last4").len(), 4);
    assert_eq!(card["balance"], json!({"value": 0, "currency": "USD"}));
    assert_eq!(card.strs("status_history", "to"), ["processing", "active"]);
    assert_eq!(m.available().await, 9_500, "the application fee was debited");
    let id = card.str("id");

    // Freeze / unfreeze, and the state machine's refusals name the state.
    let (status, frozen) = m.act(&format!("/v1/cards/{id}/freeze")).await;
    assert_eq!((status, frozen.str("status")), (StatusCode::OK, "frozen"));
    let (status, err) = m.act(&format!("/v1/cards/{id}/freeze")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(err.str("error.message").contains("frozen"), "{err}");
    let (status, active) = m.act(&format!("/v1/cards/{id}/unfreeze")).await;
    assert_eq!((status, active.str("status")), (StatusCode::OK, "active"));

    // Details: live, Luhn-valid, on the BIN, no-store; never stored or logged.
    let mut pans = Vec::new();
    for _ in 0..5 {
        let r =
            svc.signed(&m.key, Method::GET, &format!("/v1/cards/{id}/details"), b"").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let d: serde_json::Value = r.json().await.unwrap();
        let pan = d.str("pan").to_owned();
        assert!(pan.len() == 16 && pan.starts_with("424242") && luhn(&pan));
        assert!(pan.ends_with(card.str("last4")));
        pans.push((pan, d.str("cvv").to_owned()));
    }

    // Spending over the (zero) balance is declined and changes nothing.
    let (status, txn) = m.spend(id, 1_000, "posted").await;
    assert_eq!(status, StatusCode::CREATED, "{txn}");
    assert_eq!(txn["status"], "declined");
    let listed = m.get(&format!("/v1/cards/{id}/transactions")).await;
    assert_eq!(listed.count("data"), 1, "one record whether by callback or pull");

    // Another merchant sees nothing of it.
    let other = svc.merchant("Other").await;
    for path in
        [format!("/v1/cards/{id}"), format!("/v1/cards/{id}/details"), format!("/v1/cards/{id}/transactions")]
    {
        let (status, _) = other.call(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }

    // Delete: terminal.
    let (status, deleted) = m.delete(&format!("/v1/cards/{id}")).await;
    assert_eq!((status, deleted.str("status")), (StatusCode::OK, "deleted"));
    let (status, _) = m.act(&format!("/v1/cards/{id}/unfreeze")).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let events = m.get("/v1/events?limit=100").await;
    let types = events.strs("data", "type");
    for t in ["card.opened", "card.frozen", "card.unfrozen", "card.deleted", "transaction.created"] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    ledger_balanced(&svc).await;

    // Card data never reaches the data dir or the log.
    drop(m);
    drop(other);
    let rest = svc.at_rest();
    rest.assert_nowhere(&pans.iter().map(|(pan, _)| pan).collect::<Vec<_>>());
    let log = rest.log_text();
    for (_, cvv) in &pans {
        assert!(
            !log.contains(&format!("\"{cvv}\"")) && !log.contains(&format!("cvv={cvv}")),
            "a CVV is in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconditions_and_insufficient_funds() {
    let svc = Service::temp(&[]);
    let m = funded_merchant(&svc, 500, 300).await;
    let holder = m.active_cardholder().await;
    let (status, err) = m.open_card(&holder).await;
    assert_eq!((status, err.code()), (StatusCode::PAYMENT_REQUIRED, "insufficient_funds"));
    assert_eq!(m.available().await, 300, "nothing debited");
    assert_eq!(m.get("/v1/cards").await.count("data"), 0, "no card was created");

    for last_name in ["Reject", "Pending"] {
        let (_, c) = m.cardholder(last_name).await;
        let (status, err) = m.open_card(c.str("id")).await;
        assert_eq!((status, err.code()), (StatusCode::CONFLICT, "invalid_state"), "{last_name}");
    }
    // A merchant without fees opens for free.
    let free = svc.merchant("Free").await;
    let holder = free.active_cardholder().await;
    let (status, card) = free.open_card(&holder).await;
    assert_eq!((status, card.str("status")), (StatusCode::CREATED, "active"));
    let listed = free.get(&format!("/v1/cards?cardholder_id={holder}&status=active")).await;
    assert_eq!(listed.count("data"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_faults_are_resolved_and_refusals_return_the_fee() {
    let svc = Service::temp(&[("PELAGO_UPSTREAM_TIMEOUT_MS", "400")]);
    let m = funded_merchant(&svc, 500, 10_000).await;
    let holder = m.active_cardholder().await;
    let channel = svc.first_channel().await;

    svc.channel_fault(&channel, "open_card", "decline").await;
    let (status, card) = m.open_card(&holder).await;
    assert_eq!((status, card.str("status")), (StatusCode::CREATED, "failed"), "{card}");
    assert_eq!(m.available().await, 10_000, "the fee came back");

    for behavior in ["timeout", "error"] {
        svc.channel_fault(&channel, "open_card", behavior).await;
        let (status, card) = m.open_card(&holder).await;
        assert_eq!((status, card.str("status")), (StatusCode::ACCEPTED, "processing"), "{behavior}: {card}");
        let opened =
            m.poll(&format!("/v1/cards/{}", card.str("id")), secs(30), |c| c["status"] == "active").await;
        assert_eq!(opened.count("status_history"), 2, "{behavior}");
    }
    assert_eq!(m.available().await, 9_000, "two cards opened, two fees");
    // API.md, /metrics: every call to the channel timed under its id; the
    // timeout and the error (outcome unknown) counted as errors, the refusal not.
    let calls =
        svc.metric(&format!("pelago_upstream_call_duration_seconds_count{{channel=\"{channel}\"}}")).await;
    assert!(calls >= 5, "cardholder, three opens, the resolver's asks: {calls}");
    assert_eq!(svc.metric(&format!("pelago_upstream_errors_total{{channel=\"{channel}\"}}")).await, 2);
    ledger_balanced(&svc).await;
}
