//! Withdrawals and T+1 settlement over real HTTP with the sandbox (issue 6).

mod common;

use common::{Json, Merchant, Service, clock, ledger_balanced, secs, settle, settlement_completed};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_hold_pay_out_and_release() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Withdrawer").await;
    let merchant = &m.id;
    m.deposit(50_000).await;
    m.withdrawal_addresses(
        json!([{"address": "TADDR1", "network": "TRON"}, {"address": "FAILADDR9", "network": "TRON"}]),
    )
    .await;

    let (status, err) = m.withdraw(1_000, "TNOTLISTED").await;
    assert_eq!((status, err.param()), (StatusCode::BAD_REQUEST, Some("address")));
    assert_eq!(m.available_and_pending().await, (50_000, 0), "nothing held");

    let (status, w) = m.withdraw(10_000, "TADDR1").await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    assert_eq!(w["status"], "succeeded");
    assert_eq!(m.available_and_pending().await, (40_000, 0));

    let (status, w) = m.withdraw(5_000, "FAILADDR9").await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    // The failure may come in the answer or by callback: wait for it, bounded.
    let id = w.str("id").to_owned();
    let path = format!("/admin/v1/merchants/{merchant}/withdrawals/{id}");
    svc.admin_poll(&path, secs(20), |w| w["status"] == "failed").await;
    assert_eq!(m.available_and_pending().await, (40_000, 0), "the hold was released");

    let (status, err) = m.withdraw(100_000, "TADDR1").await;
    assert_eq!((status, err.code()), (StatusCode::PAYMENT_REQUIRED, "insufficient_funds"));
    let events = m.get("/v1/events?limit=100").await;
    let types = events.strs("data", "type");
    assert!(types.contains(&"withdrawal.succeeded") && types.contains(&"withdrawal.failed"), "{types:?}");
    ledger_balanced(&svc).await;
}

/// A gateway merchant (no fees) whose cardholder pays a 10,000 top-up now,
/// on the service clock: a collection of that day, pending.
async fn gateway_collection<'a>(svc: &'a Service, gateway_merchant_id: &str) -> Merchant<'a> {
    let api_key = format!("{gateway_merchant_id}-key-1");
    let m = svc.gateway_merchant(gateway_merchant_id, &api_key, json!({})).await;
    let card = m.card().await;
    assert_eq!(card["status"], "active", "no fee: opened at once: {card}");
    let (_, t) = m.topup(card.str("id"), 10_000).await;
    m.act(&format!("/v1/test_helpers/orders/{}/pay", t.str("order.id"))).await;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_collections_settle_t_plus_one_once() {
    let svc = Service::temp(&[]);
    // Day D is tomorrow on the service clock.
    let day_d = clock::day_after(clock::now(&svc).await, 1, 10, 0, 0);
    clock::set(&svc, day_d).await;
    let m = gateway_collection(&svc, "gw_settle").await;
    assert_eq!(m.available_and_pending().await, (0, 10_000), "collected on day D, pending");

    let same_day = settle(&svc, &clock::date(day_d)).await;
    assert_eq!(same_day["collections"], 0, "only collections dated before the run's date");
    assert_eq!(m.available_and_pending().await, (0, 10_000));

    let next_day_at = clock::day_after(day_d, 1, 1, 0, 0);
    clock::set(&svc, next_day_at).await;
    let next_day = settle(&svc, &clock::date(next_day_at)).await;
    assert_eq!(next_day["collections"], 1);
    assert_eq!(next_day["amounts"], json!([{"value": 10_000, "currency": "USD"}]));
    assert_eq!(m.available_and_pending().await, (10_000, 0), "settled T+1");
    let again = settle(&svc, &clock::date(next_day_at)).await;
    assert_eq!(again["id"], next_day["id"], "the same date is the same run");
    assert_eq!(m.available_and_pending().await, (10_000, 0), "moved once");
    assert_eq!(m.events("settlement.completed").await, 1);
    ledger_balanced(&svc).await;
}

/// The service clock may move back (SANDBOX.md: an offset from real time).
/// Moving it back lowers the scheduler's floor; moving it forward again over
/// a settlement instant fires that date's run if it does not exist yet, and
/// never runs a date twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_moved_back_and_forward_fires_each_crossed_instant_once() {
    let svc = Service::temp(&[]);
    let today = clock::now(&svc).await;
    // Three days back, before the service's first start: the floor follows.
    let back = clock::day_after(today, -3, 9, 0, 0);
    let answer = clock::set(&svc, back).await;
    assert_eq!(answer["floor"], clock::rfc3339(back), "{answer}");
    let m = gateway_collection(&svc, "gw_rewind").await;
    assert_eq!(m.available_and_pending().await, (0, 10_000));

    // Forward over 01:00 of the next day: that date's run never existed, so it fires.
    let crossed = clock::day_after(back, 1, 1, 0, 5);
    clock::set(&svc, crossed).await;
    let first = settlement_completed(&svc, &clock::date(crossed)).await;
    assert_eq!(first["collections"], 1, "{first}");
    assert_eq!(m.available_and_pending().await, (10_000, 0), "settled by the crossed instant");

    // Back and forward again over the same instant, then over the next one.
    clock::set(&svc, back).await;
    let later = clock::day_after(back, 2, 1, 0, 5);
    clock::set(&svc, later).await;
    let next = settlement_completed(&svc, &clock::date(later)).await;
    assert_eq!(next["collections"], 0, "{next}");
    // The scheduler reached the later date, passing the earlier one: that run is the same one.
    let again = settlement_completed(&svc, &clock::date(crossed)).await;
    assert_eq!(
        (again["id"].clone(), again["started_at"].clone()),
        (first["id"].clone(), first["started_at"].clone())
    );
    assert_eq!(m.available_and_pending().await, (10_000, 0), "moved once");
    assert_eq!(m.events("settlement.completed").await, 1);
    ledger_balanced(&svc).await;
}

/// A run that a crash interrupts right after it settled one collection
/// reports, once resumed, every collection it settled: its totals are summed
/// from durable rows, not kept in memory (issue 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_run_crashed_midway_reports_every_collection_once() {
    let (_dir, data) = common::temp_data();
    let svc = Service::start(&data, &[("PELAGO_FAILPOINTS", "settlement.after_one_collection")]);
    let day_d = clock::day_after(clock::now(&svc).await, 1, 10, 0, 0);
    clock::set(&svc, day_d).await;
    let first = gateway_collection(&svc, "gw_crash_1").await;
    let second = gateway_collection(&svc, "gw_crash_2").await;
    let merchants = [(first.id.clone(), first.key.clone()), (second.id.clone(), second.key.clone())];
    drop((first, second));
    // The clock passes 01:00 of D+1: the scheduler's run aborts the process after one collection.
    let next_day = clock::day_after(day_d, 1, 1, 0, 5);
    let _ = svc
        .admin(Method::POST, "/admin/v1/test_helpers/clock")
        .json(&json!({"now": clock::rfc3339(next_day)}))
        .send()
        .await;
    svc.dies(secs(30), "the failpoint aborts");
    assert_eq!(
        stored_balances(&data),
        vec![(0, 10_000), (10_000, 0)],
        "the crash landed after exactly one collection"
    );

    let svc = Service::start(&data, &[]);
    let run = settlement_completed(&svc, &clock::date(next_day)).await;
    assert_eq!(run["collections"], 2, "{run}");
    assert_eq!(run["amounts"], json!([{"value": 20_000, "currency": "USD"}]), "{run}");
    for (id, key) in merchants {
        let m = Merchant::of(&svc, &id, key);
        assert_eq!(m.available_and_pending().await, (10_000, 0));
        assert_eq!(m.events("settlement.completed").await, 1);
    }
    ledger_balanced(&svc).await;
}

/// Every merchant's (available, pending), sorted, read from the stopped service's store.
fn stored_balances(data: &std::path::Path) -> Vec<(i64, i64)> {
    use pelago_actors::merchant::MerchantRecord;
    use pelago_storage::{Store, StoreConfig};
    let store = Store::open(&data.join("db"), &StoreConfig::default()).unwrap();
    let mut balances: Vec<(i64, i64)> = store
        .iter::<MerchantRecord>()
        .map(|m| m.unwrap().1.balances.first().map_or((0, 0), |b| (b.available, b.pending)))
        .collect();
    balances.sort();
    balances
}

/// These tests again, with the real time far from today (`common::far_dates`).
#[test]
fn far_from_today() {
    common::far_dates::rerun_this_binary_far_from_today("far_from_today");
}
