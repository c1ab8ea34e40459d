//! Monthly fees and the scheduler over real HTTP with the clock helper (issue 8).

mod common;

use std::collections::HashMap;

use common::{Json, Merchant, Service, clock, ledger_balanced, secs, seed};
use pelago_actors::{card::CardStatus, ledger::JournalEntry};
use pelago_storage::{ChannelId, MerchantId, Store, StoreConfig, Timestamp, Tree, WriteBatch};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A merchant billed `monthly` a card, with `deposit` USD.
async fn merchant(svc: &Service, monthly: i64, deposit: i64) -> Merchant<'_> {
    svc.funded_merchant("Billed", json!({"monthly_fee": {"fixed": monthly}}), deposit).await
}

/// The billing run of `period` once `done` holds for it (bounded).
async fn run_of(svc: &Service, period: &str, done: impl Fn(&Value) -> bool) -> Value {
    svc.admin_poll(&format!("/admin/v1/billing/runs/{period}"), secs(60), done).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_clock_to_the_first_bills_each_eligible_card_once() {
    let svc = Service::temp(&[]);
    let rich = merchant(&svc, 200, 10_000).await;
    let active = rich.card_id().await;
    let frozen = rich.card_id().await;
    rich.act(&format!("/v1/cards/{frozen}/freeze")).await;
    let deleted = rich.card_id().await;
    rich.delete(&format!("/v1/cards/{deleted}")).await;
    let poor = merchant(&svc, 200, 0).await;
    poor.card().await;
    // A gateway merchant: the monthly fee is an order.
    let gw =
        svc.gateway_merchant("gw_billing", "gw-billing-key-1", json!({"monthly_fee": {"fixed": 150}})).await;
    gw.card().await;
    // A frozen card owes its monthly fee too: in gateway mode, as an order.
    let gw_frozen = gw.card_id().await;
    gw.act(&format!("/v1/cards/{gw_frozen}/freeze")).await;
    assert_eq!(rich.available().await, 10_000);

    // The 1st of next month on the service clock: the scheduler bills the period.
    let billed_at = clock::month_start_after(clock::now(&svc).await, 1) + chrono::Duration::seconds(5);
    clock::set(&svc, billed_at).await;
    let period = clock::period(billed_at);
    let run = run_of(&svc, &period, |r| r["status"] == "completed").await;
    assert_eq!((run["charged"].as_u64(), run["unpaid"].as_u64()), (Some(4), Some(1)), "{run}");
    assert_eq!(run["cards_total"], 6);
    assert_eq!(run["skipped"], 1, "the deleted card");
    assert_eq!(rich.available().await, 10_000 - 2 * 200, "active and frozen, once each");
    assert_eq!(rich.events("monthly_fee.charged").await, 2);
    assert_eq!(poor.events("monthly_fee.unpaid").await, 1);
    assert_eq!(gw.get("/v1/orders").await.strs("data", "kind"), ["monthly_fee", "monthly_fee"]);
    assert_eq!(gw.events("order.created").await, 2);

    // The same period again: the same run, nothing more charged.
    let (_, again) = svc.admin_post("/admin/v1/billing/runs", json!({"period": period})).await;
    assert_eq!(again["id"], run["id"]);
    assert_eq!(rich.available().await, 10_000 - 400);
    // A period that has not begun: 409.
    let later = json!({"period": clock::period(clock::month_start_after(billed_at, 5))});
    assert_eq!(svc.admin_post("/admin/v1/billing/runs", later).await.0, StatusCode::CONFLICT);
    ledger_balanced(&svc).await;
    // The two charges are the active and the frozen card's.
    let charged = rich.get("/v1/events?type=monthly_fee.charged&limit=100").await;
    let mut billed = charged.strs("data", "data.object.card_id");
    billed.sort();
    let mut expected = vec![active.as_str(), frozen.as_str()];
    expected.sort();
    assert_eq!(billed, expected);
}

/// Moves the persisted service clock while the service is stopped (its
/// offset was 0: these tests never moved it while it ran).
fn set_offline_clock(data: &std::path::Path, now: chrono::DateTime<chrono::Utc>) {
    let store = Store::open(&data.join("db"), &StoreConfig::default()).unwrap();
    let target = now.timestamp_millis();
    let offset = target - Timestamp::now_real().unix_ms();
    let mut batch = WriteBatch::new();
    batch.put_raw(Tree::Meta, "clock_offset_ms", offset.to_be_bytes().to_vec());
    let _ = store.commit(batch).unwrap();
    store.flush_blocking().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_missed_while_down_is_billed_at_the_next_start() {
    let (_dir, data) = common::temp_data();
    let svc = Service::start(&data, &[]);
    let m = merchant(&svc, 300, 5_000).await;
    m.card().await;
    let (id, key) = (m.id.clone(), m.key.clone());
    drop(m);
    assert!(svc.terminate().success());
    // Down until 08:00 on the 1st of the month after next: two periods passed.
    let back_at = clock::month_start_after(chrono::Utc::now(), 2) + chrono::Duration::hours(8);
    set_offline_clock(&data, back_at);
    let svc = Service::start(&data, &[]);
    run_of(&svc, &clock::period(clock::month_start_after(back_at, 0) - chrono::Duration::days(1)), |r| {
        r["status"] == "completed"
    })
    .await;
    let run = run_of(&svc, &clock::period(back_at), |r| r["status"] == "completed").await;
    assert_eq!(run["charged"], 1);
    assert_eq!(Merchant::of(&svc, &id, key).available().await, 5_000 - 2 * 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_10k_card_run_charges_every_card_once() {
    const CARDS: usize = 10_000;
    let (_dir, data) = common::temp_data();
    let env = [("PELAGO_LOG", "warn")];
    let svc = Service::start(&data, &env);
    let m = merchant(&svc, 10, (CARDS as i64) * 10).await;
    let (merchant_id, key) = (m.id.clone(), m.key.clone());
    drop(m);
    let channel = ChannelId::parse(&svc.first_channel().await).unwrap();
    assert!(svc.terminate().success());
    // Seed 10,000 active cards of that merchant.
    let merchant = MerchantId::parse(&merchant_id).unwrap();
    seed::cards(&data, (&merchant, &channel), CARDS, CardStatus::Active, |_| {});
    let billed_at = clock::month_start_after(chrono::Utc::now(), 1) + chrono::Duration::seconds(5);
    set_offline_clock(&data, billed_at);
    let period = clock::period(billed_at);
    let svc = Service::start(&data, &env);
    // Kill it mid-run.
    let seen = run_of(&svc, &period, |r| r["cards_total"].as_u64().unwrap_or(0) >= 1_500).await;
    svc.kill();
    assert_ne!(seen["status"], "completed", "the kill must land mid-run: {seen}");
    let svc = Service::start(&data, &env);
    let run = run_of(&svc, &period, |r| r["status"] == "completed").await;
    assert_eq!(run.i64("charged"), CARDS as i64, "{run}");
    assert_eq!(
        Merchant::of(&svc, &merchant_id, key).available().await,
        0,
        "every card charged exactly once: the deposit covered exactly all"
    );
    assert!(svc.terminate().success());
    let store = Store::open(&data.join("db"), &StoreConfig::default()).unwrap();
    let mut per_card: HashMap<String, usize> = HashMap::new();
    for item in store.iter::<JournalEntry>() {
        let (_, e) = item.unwrap();
        if let Some(card) = e.source_id.strip_prefix("mfee/") {
            *per_card.entry(card.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(per_card.len(), CARDS);
    assert!(per_card.values().all(|n| *n == 1), "a card charged twice");
}

/// These tests again, with the real time far from today (`common::far_dates`).
#[test]
fn far_from_today() {
    common::far_dates::rerun_this_binary_far_from_today("far_from_today");
}
