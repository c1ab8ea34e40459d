//! Master accounts and the ledger over real HTTP with the sandbox (issue 6).

mod common;

use common::{Json, Service, ledger_balanced};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_are_credited_once_and_the_ledger_balances() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Depositor").await;
    let other = svc.merchant("Other").await;

    let (status, a1) = m.post("/v1/deposit-addresses", json!({"currency": "USD", "network": "TRON"})).await;
    assert_eq!(status, StatusCode::CREATED, "{a1}");
    let (_, a2) = m.post("/v1/deposit-addresses", json!({"currency": "USD", "network": "TRON"})).await;
    assert_eq!(a1, a2, "stable per merchant, currency and network");
    let (_, b1) = other.post("/v1/deposit-addresses", json!({"currency": "USD", "network": "TRON"})).await;
    assert_ne!(a1["address"], b1["address"], "each merchant has its own address");

    let (status, dep) = m.deposit_of(250_000, "USD").await;
    assert_eq!(status, StatusCode::OK, "{dep}");
    assert_eq!(dep["balance_transaction"]["type"], "deposit");
    let balance = m.get("/v1/balance").await;
    assert_eq!(balance, json!({"balances": [{"currency": "USD", "available": 250_000, "pending": 0}]}));
    let other_balance = other.get("/v1/balance").await;
    assert_eq!(other_balance, json!({"balances": []}));

    let txns = m.get("/v1/balance/transactions").await;
    let t = &txns["data"][0];
    assert_eq!((t["type"].as_str(), t["amount"]["value"].as_i64()), (Some("deposit"), Some(250_000)));
    assert_eq!(t["balance_after"], json!({"available": 250_000, "pending": 0}));
    assert_eq!(m.events("deposit.succeeded").await, 1);

    // Bad amounts are refused, never coerced.
    for (amount, param) in [
        (json!({"value": 0, "currency": "USD"}), "amount.value"),
        (json!({"value": 1.5, "currency": "USD"}), "amount.value"),
        (json!({"value": "100", "currency": "USD"}), "amount.value"),
        (json!({"value": 100, "currency": "usd"}), "amount.currency"),
        (json!({"value": 10_000_000_000_001i64, "currency": "USD"}), "amount.value"),
    ] {
        let (status, err) =
            m.post("/v1/test_helpers/deposits", json!({"amount": amount, "network": "TRON"})).await;
        assert_eq!((status, err.param()), (StatusCode::BAD_REQUEST, Some(param)), "{amount}");
    }

    let check = ledger_balanced(&svc).await;
    assert_eq!(check["currencies"], json!([{"currency": "USD", "sum": 0}]));
    assert_eq!(check["negative_available"], json!([]));
    assert_eq!(check["entries"], 1);
}
