//! Billing-run throughput (issue 8): N active master-account cards seeded
//! into a store, the release binary started on it, the service clock moved to
//! the 1st, and the scheduler's run timed until it completes. Reports cards
//! per second, the server's peak resident memory, and the p99 latency of
//! ordinary signed API calls issued during the run: a card read, and a top-up
//! of a card opened over the API (its debit waits in the same merchant actor
//! the run is charging).
//!
//! `cargo bench --bench billing -- 100000` (N defaults to 100,000;
//! 1,000,000 works the same, given minutes). Under `cargo test`: 2,000 cards.
//!
//! `cargo bench --bench billing -- 1000000 --idle` measures instead
//! the resident memory of the idle service holding N stored cards: seeded the
//! same way, started, 1,000 signed reads of cards spread over the store, then
//! the resident set read once it has stopped changing (no billing run).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pelago_actors::{
    card::{CardRecord, CardStatus, NewCard},
    history::Source,
};
#[allow(dead_code)] // shared with benches/load.rs; its marketplace helper is used there
mod common;

use pelago_storage::{
    CardId, CardholderId, ChannelId, Currency, MerchantId, Store, StoreConfig, Timestamp, Tree, WriteBatch,
};
use serde_json::{Value, json};

const ADMIN: &str = "billing-admin-token-0123456789";
/// Minor units deposited for the top-ups made during the run.
const TOPUP_BUDGET: i64 = 100_000_000;

fn start(data: &std::path::Path, env: &[(&str, String)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pelago-card"));
    cmd.args(["serve", "--sandbox", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("PELAGO_SANDBOX_LISTEN", "127.0.0.1:0")
        .env("PELAGO_ADMIN_TOKEN", ADMIN)
        .env("PELAGO_RATE_LIMIT", "1000000,1000000")
        .env("PELAGO_IP_RATE_LIMIT", "1000000,1000000")
        .env("PELAGO_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start pelago-card");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the server exited").unwrap();
        if let Some(url) = line.strip_prefix("pelago-card listening on ") {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

fn peak_rss_mib(pid: u32) -> f64 {
    common::status_mib(pid, "VmHWM:")
}

fn rss_mib(pid: u32) -> f64 {
    common::status_mib(pid, "VmRSS:")
}

/// A signed GET of `path`; panics unless it answers 200.
async fn signed_get(http: &reqwest::Client, base: &str, key: &common::Key, path: &str) {
    let r = key.signed(http, base, reqwest::Method::GET, path, Vec::new()).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
}

/// The service idle over `cards` stored cards: its resident memory once stable.
fn idle_memory(
    runtime: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    data: &std::path::Path,
    cards: usize,
    spread: &[String],
    key: &common::Key,
) {
    let (child, base) = start(data, &[]);
    let pid = child.id();
    runtime.block_on(async {
        for id in spread {
            signed_get(http, &base, key, &format!("/v1/cards/{id}")).await;
        }
        let check = common::admin_get(http, &base, ADMIN, "/admin/v1/ledger/check").await;
        assert_eq!(check["balanced"], true, "ledger check: {check}");
        let page = common::admin_get(http, &base, ADMIN, "/debug/v1/actors").await;
        // Idle: the resident set no longer moves (sampled every 500 ms, for 60 s at most).
        let mut last = rss_mib(pid);
        for _ in 0..120 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = rss_mib(pid);
            if (now - last).abs() < 0.5 {
                break;
            }
            last = now;
        }
        println!(
            "idle service over {cards} stored cards, after {} reads: resident {:.1} MiB (peak {:.1} MiB); actors {page}",
            spread.len(),
            rss_mib(pid),
            peak_rss_mib(pid)
        );
    });
    stop(child);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let idle = args.iter().any(|a| a == "--idle");
    let cards: usize =
        args.iter().filter_map(|a| a.parse().ok()).next().unwrap_or(if full { 100_000 } else { 2_000 });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    // 1. A funded master-account merchant with a monthly fee, then stop.
    let (child, base) = start(&data, &[]);
    let (merchant, key_id, secret, channel) = runtime.block_on(async {
        let created: Value = http.post(format!("{base}/admin/v1/merchants")).bearer_auth(ADMIN)
            .json(&json!({"name": "Billed", "funding_mode": "master_account", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
                          "fees": [{"currency": "USD", "monthly_fee": {"fixed": 10}}]}))
            .send().await.unwrap().json().await.unwrap();
        let channels: Value = http.get(format!("{base}/admin/v1/channels")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        (
            created["merchant"]["id"].as_str().unwrap().to_owned(),
            created["api_key"]["key_id"].as_str().unwrap().to_owned(),
            created["api_key"]["secret"].as_str().unwrap().to_owned(),
            channels["data"][0]["id"].as_str().unwrap().to_owned(),
        )
    });
    let key = common::Key { key_id, secret };
    let topped_card = runtime.block_on(async {
        let body = serde_json::to_vec(
            // Every card's fee (the seeded ones and one opened over the API),
            // plus the budget of the top-ups made during the run.
            &json!({"amount": {"value": (cards as i64 + 1) * 10 + TOPUP_BUDGET, "currency": "USD"}, "network": "TRON"}),
        )
        .unwrap();
        let r = key
            .signed(&http, &base, reqwest::Method::POST, "/v1/test_helpers/deposits", body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        // A card the sandbox channel knows, to top up during the run.
        let holder = common::json_of(key.signed(
            &http,
            &base,
            reqwest::Method::POST,
            "/v1/cardholders",
            common::cardholder_body(),
        ))
        .await;
        let open = serde_json::to_vec(&json!({"cardholder_id": holder["id"]})).unwrap();
        let card = common::json_of(key.signed(&http, &base, reqwest::Method::POST, "/v1/cards", open)).await;
        assert_eq!(card["status"], "active", "{card}");
        card["id"].as_str().unwrap().to_owned()
    });
    stop(child);

    // 2. Seed the cards, and the clock on the 1st of next month.
    let seeded = Instant::now();
    let mut probe_card = String::new();
    let mut spread = Vec::new();
    {
        let store = Store::open(&data.join("db"), &StoreConfig::default()).unwrap();
        let (m, c) = (MerchantId::parse(&merchant).unwrap(), ChannelId::parse(&channel).unwrap());
        for chunk in 0..cards.div_ceil(5_000) {
            let mut batch = WriteBatch::new();
            for _ in 0..5_000.min(cards - chunk * 5_000) {
                let id = CardId::generate();
                let card = CardRecord::create(
                    NewCard {
                        id: id.clone(),
                        merchant_id: m.clone(),
                        cardholder_id: CardholderId::generate(),
                        reference: None,
                        card_name: "PELAGO_VIRTUAL_USD".into(),
                        bin: "424242".into(),
                        channel_id: c.clone(),
                        currency: Currency::USD,
                        status: CardStatus::Active,
                        application_fee_order: None,
                    },
                    Timestamp(0),
                    Source::Merchant,
                );
                batch.put(id.as_bytes(), &card).unwrap();
                batch.put_raw(Tree::Index, format!("mcard/{m}/{id}"), []);
                probe_card = id.to_string();
                if spread.len() < 1_000 && rand::random_ratio(1_000.min(cards) as u32, cards as u32) {
                    spread.push(probe_card.clone());
                }
            }
            let _ = store.commit(batch).unwrap();
        }
        // One second after the start of next month (UTC), from today's date.
        let target = next_period_start_ms(Timestamp::now_real()) + 1_000;
        let mut batch = WriteBatch::new();
        if idle {
            let _ = store.commit(batch).unwrap();
            store.flush_blocking().unwrap();
            drop(store);
            println!("seeded {cards} cards in {:.1} s", seeded.elapsed().as_secs_f64());
            return idle_memory(&runtime, &http, &data, cards, &spread, &key);
        }
        batch.put_raw(
            Tree::Meta,
            "clock_offset_ms",
            (target - Timestamp::now_real().unix_ms()).to_be_bytes().to_vec(),
        );
        let _ = store.commit(batch).unwrap();
        store.flush_blocking().unwrap();
    }
    println!("seeded {cards} cards in {:.1} s", seeded.elapsed().as_secs_f64());

    // 3. Start: the scheduler catches up next month's period. Time it; read cards meanwhile.
    let run_path = format!(
        "/admin/v1/billing/runs/{}",
        pelago_card::flows::billing::period_of(Timestamp(next_period_start_ms(Timestamp::now_real())))
    );
    let started = Instant::now();
    let (child, base) = start(&data, &[]);
    let pid = child.id();
    let (latencies, topups, run) = runtime.block_on(async {
        let mut latencies = Vec::new();
        let mut topups = Vec::new();
        let topup = serde_json::to_vec(&json!({"amount": {"value": 100, "currency": "USD"}})).unwrap();
        let topup_path = format!("/v1/cards/{topped_card}/topups");
        loop {
            let t = Instant::now();
            signed_get(&http, &base, &key, &format!("/v1/cards/{probe_card}")).await;
            latencies.push(t.elapsed());
            // A top-up goes through the merchant actor the run is charging.
            let t = Instant::now();
            let r = key
                .signed(&http, &base, reqwest::Method::POST, &topup_path, topup.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "top-up during the run");
            topups.push(t.elapsed());
            let run = common::admin_get(&http, &base, ADMIN, &run_path).await;
            if run["status"] == "completed" {
                return (latencies, topups, run);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        (v[((v.len() - 1) as f64 * 0.99) as usize], v.len())
    };
    let (read_p99, reads) = p99(latencies);
    let (topup_p99, topped) = p99(topups);
    println!(
        "billing run of {cards} cards: {:.1} s from start ({:.0} cards/s), charged {}, peak RSS {:.1} MiB, \
         API p99 during the run: signed read {read_p99:?} ({reads}), signed top-up {topup_p99:?} ({topped})",
        secs,
        cards as f64 / secs,
        run["charged"],
        peak_rss_mib(pid),
    );
    assert_eq!(run["charged"].as_u64().unwrap() as usize, cards + 1, "every card charged once");
    stop(child);
}

/// 00:00:00 UTC on the first day of the month after `now`, in Unix ms.
fn next_period_start_ms(now: Timestamp) -> i64 {
    use chrono::{Datelike, TimeZone};
    let today = now.to_datetime();
    let (year, month) =
        if today.month() == 12 { (today.year() + 1, 1) } else { (today.year(), today.month() + 1) };
    chrono::Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).unwrap().timestamp_millis()
}
