//! Reconciliation files and runs over real HTTP (MARKETPLACE.md §10): the
//! routes and their errors, a run once per date, an empty day is the header
//! only in both formats, and the daily job catching up after a clock jump.
//! The rows of a day with entries are tested where entries can be booked
//! (`src/flows/reconciliation/tests.rs`): no HTTP route books marketplace
//! entries before payments land.

mod common;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use common::{Service, clock, send};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const HEADER: &str = "entry_id|posted_at|type|object_id|payment_id|merchant_reference|account|party_type|party_id|line|split_type|amount|currency";

/// The local date at the default marketplace offset (+08:00).
fn local_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap()).date_naive()
}

async fn trigger(svc: &Service, date: &str) -> (StatusCode, Value) {
    let r = svc
        .admin(Method::POST, "/admin/v1/reconciliation/runs")
        .json(&json!({"date": date}))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn run_completed(svc: &Service, date: &str) -> Value {
    common::completed_run(svc, &format!("/admin/v1/reconciliation/runs/{date}")).await
}

async fn download(svc: &Service, key: &common::Key, path: &str) -> reqwest::Response {
    svc.signed(key, Method::GET, path, b"").send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_refuse_what_they_must_and_an_empty_day_is_the_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let common::Merchant { key, .. } = svc.merchant("Accountant").await;
    let today = local_date(clock::now(&svc).await);
    // The day the merchant was created in; it is over once the clock moves below.
    let first_day = today.to_string();

    for (path, param) in [
        ("/v1/reconciliation/yesterday".to_owned(), "date"),
        (format!("/v1/reconciliation/{today}x"), "date"),
        (format!("/v1/reconciliation/{first_day}?format=pdf"), "format"),
        (format!("/v1/reconciliation/{first_day}?fmt=txt"), "fmt"),
    ] {
        let (status, body) = send(&svc, &key, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["param"], param, "{path}: {body}");
    }
    // Not generated yet: 404 saying when (D+1 10:00 local with the default cron).
    let (status, body) = send(&svc, &key, Method::GET, &format!("/v1/reconciliation/{today}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let due = format!("{} 10:00 +08:00", today.succ_opt().unwrap());
    assert!(body["error"]["message"].as_str().unwrap().contains(&due), "{body}");

    // Today is not over: 409; a bad date: 400.
    let (status, body) = trigger(&svc, &today.to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state")),
        "{body}"
    );
    let (status, body) = trigger(&svc, "2026-02-30").await;
    assert_eq!((status, body["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("date")), "{body}");

    // The next local day begins (00:30 at +08:00): the merchant's first day is over.
    let next_day = today.succ_opt().unwrap().and_hms_opt(0, 30, 0).unwrap();
    let next_day = next_day.and_local_timezone(FixedOffset::east_opt(8 * 3600).unwrap()).unwrap();
    clock::set(&svc, next_day.with_timezone(&Utc)).await;

    // That day: one run, whatever the number of asks.
    let (status, first) = trigger(&svc, &first_day).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert!(first["id"].as_str().unwrap().starts_with("rcn_"), "{first}");
    let done = run_completed(&svc, &first_day).await;
    let (_, again) = trigger(&svc, &first_day).await;
    assert_eq!((again["id"].clone(), done["id"].clone()), (first["id"].clone(), first["id"].clone()));
    assert_eq!((done["merchants"].as_u64(), done["rows"].as_u64()), (Some(1), Some(0)), "{done}");

    let txt = download(&svc, &key, &format!("/v1/reconciliation/{first_day}")).await;
    assert_eq!(txt.status(), StatusCode::OK);
    assert_eq!(txt.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(txt.headers()["cache-control"], "no-store");
    assert_eq!(txt.bytes().await.unwrap().as_ref(), format!("{HEADER}\n").as_bytes());

    let xlsx = download(&svc, &key, &format!("/v1/reconciliation/{first_day}?format=xlsx")).await;
    assert_eq!(xlsx.status(), StatusCode::OK);
    assert_eq!(
        xlsx.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert_eq!(xlsx.headers()["cache-control"], "no-store");
    let mut book = Xlsx::new(Cursor::new(xlsx.bytes().await.unwrap().to_vec())).unwrap();
    assert_eq!(book.sheet_names(), ["reconciliation"]);
    let rows: Vec<Vec<Data>> =
        book.worksheet_range("reconciliation").unwrap().rows().map(<[Data]>::to_vec).collect();
    let header: Vec<Data> = HEADER.split('|').map(|c| Data::String(c.to_owned())).collect();
    assert_eq!(rows, vec![header]);

    // One reconciliation.ready for the day.
    let (_, events) = send(&svc, &key, Method::GET, "/v1/events?type=reconciliation.ready", None).await;
    let data = events["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{events}");
    assert_eq!(data[0]["data"]["object"]["date"], first_day.as_str(), "{events}");

    // Another merchant's view of the same day is its own file.
    let common::Merchant { key: other, .. } = svc.merchant("Late").await;
    let r = download(&svc, &other, &format!("/v1/reconciliation/{first_day}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "built before it existed: not its file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_job_catches_up_the_days_a_clock_jump_skipped_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let common::Merchant { key, .. } = svc.merchant("Sleeper").await;
    let now = clock::now(&svc).await;
    // Three days on, just past 02:00 UTC: three (or four) 02:00 instants were crossed.
    let later = clock::day_after(now, 3, 2, 0, 5);
    clock::set(&svc, later).await;
    let mut ids = Vec::new();
    for days_back in 1..=3 {
        let date = (local_date(later) - chrono::Duration::days(days_back)).to_string();
        let run = run_completed(&svc, &date).await;
        ids.push(run["id"].clone());
        let r = download(&svc, &key, &format!("/v1/reconciliation/{date}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{date}");
    }
    // The local day in progress has no run.
    let r = svc
        .admin(Method::GET, &format!("/admin/v1/reconciliation/runs/{}", local_date(later)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Back, then forward over the same instants and one more: the new day's
    // run completing shows the scheduler passed the old instants again (oldest
    // first, in the same pass), and none of them is made twice.
    clock::set(&svc, now).await;
    let one_more = clock::day_after(later, 1, 2, 0, 5);
    clock::set(&svc, one_more).await;
    run_completed(&svc, &local_date(later).to_string()).await;
    for (days_back, id) in (1..=3).zip(&ids) {
        let date = (local_date(later) - chrono::Duration::days(days_back)).to_string();
        assert_eq!(&run_completed(&svc, &date).await["id"], id, "{date}: the same run");
    }
    let (_, events) =
        send(&svc, &key, Method::GET, "/v1/events?type=reconciliation.ready&limit=100", None).await;
    let mut dates: Vec<String> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["object"]["date"].as_str().unwrap().to_owned())
        .collect();
    let total = dates.len();
    dates.sort();
    dates.dedup();
    assert_eq!(dates.len(), total, "one reconciliation.ready per date: {events}");
    assert!(total >= 3, "{events}");
}

/// Σ amount per (account, currency) of a txt file's rows.
fn sums(rows: &[Vec<String>]) -> std::collections::BTreeMap<(String, String), i64> {
    let mut sums = std::collections::BTreeMap::new();
    for r in rows {
        *sums.entry((r[6].clone(), r[12].clone())).or_default() += r[11].parse::<i64>().unwrap();
    }
    sums
}

/// A day with a collection, its split and a paid withdrawal: both files hold
/// the same rows, in order, summing to 0 and to the ledger's day per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_with_a_split_and_a_withdrawal_is_in_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = Service::start(&data, &[]);
    let common::Merchant { id: merchant, key, .. } = svc.merchant("Accounted").await;
    let seller = common::marketplace::recipient(&svc, &key, "Seller Approved", "ACC123456").await;
    // 11:00 local tomorrow: inside the withdrawal window.
    let at = clock::day_after(clock::now(&svc).await, 1, 3, 0, 0);
    svc.terminate();
    common::marketplace::fund(&data, &merchant, &[(&seller, 900)], at);
    let svc = Service::start(&data, &[]);
    clock::set(&svc, at + chrono::Duration::minutes(1)).await;
    let (status, w) = send(
        &svc,
        &key,
        Method::POST,
        &format!("/v1/recipients/{seller}/withdrawals"),
        Some(&json!({"amount": {"value": 500, "currency": "USD"}})),
    )
    .await;
    assert_eq!((status, w["status"].as_str()), (StatusCode::CREATED, Some("succeeded")), "{w}");

    // The next 02:00 UTC builds the day.
    let day = local_date(at).to_string();
    clock::set(&svc, clock::day_after(at, 1, 2, 0, 5)).await;
    let run = run_completed(&svc, &day).await;
    assert_eq!(run["rows"], 8, "{run}");

    let txt = download(&svc, &key, &format!("/v1/reconciliation/{day}?format=txt")).await;
    let text = String::from_utf8(txt.bytes().await.unwrap().to_vec()).unwrap();
    assert!(text.ends_with('\n') && !text.contains('\r'));
    let lines: Vec<Vec<String>> =
        text.trim_end_matches('\n').split('\n').map(|l| l.split('|').map(str::to_owned).collect()).collect();
    assert_eq!(lines[0].join("|"), HEADER);
    let rows = &lines[1..];
    let kinds: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "marketplace_collection",
            "marketplace_collection",
            "split",
            "split",
            "recipient_withdrawal",
            "recipient_withdrawal",
            "recipient_withdrawal_paid",
            "recipient_withdrawal_paid"
        ]
    );
    assert!(rows[4..].iter().all(|r| r[3] == w["id"].as_str().unwrap() && r[4].is_empty()), "{rows:?}");
    assert!(!text.contains("ACC123456") && !text.contains("P1234567"), "no numbers in the file");
    let per_account = sums(rows);
    let clearing = ("gateway:clearing".to_owned(), "USD".to_owned());
    let of = |account: &str| (format!("recipient:{seller}:{account}"), "USD".to_owned());
    assert_eq!(
        per_account,
        [(clearing, -400), (of("available"), 400), (of("in_transit"), 0), (of("withdrawing"), 0)].into()
    );
    assert_eq!(per_account.values().sum::<i64>(), 0, "Σ amount per currency is 0");
    let (_, balance) = send(&svc, &key, Method::GET, &format!("/v1/recipients/{seller}/balance"), None).await;
    assert_eq!(balance["balances"][0]["available"], 400, "the file's sum is the ledger's: {balance}");

    let xlsx = download(&svc, &key, &format!("/v1/reconciliation/{day}?format=xlsx")).await;
    let mut book = Xlsx::new(Cursor::new(xlsx.bytes().await.unwrap().to_vec())).unwrap();
    let sheet: Vec<Vec<String>> = book
        .worksheet_range("reconciliation")
        .unwrap()
        .rows()
        .map(|r| {
            let mut cells: Vec<String> = r
                .iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    Data::String(s) => s.clone(),
                    Data::Float(f) => format!("{}", *f as i64),
                    other => panic!("unexpected cell {other:?}"),
                })
                .collect();
            cells.resize(13, String::new());
            cells
        })
        .collect();
    assert_eq!(sheet, lines, "the xlsx holds the txt's rows");
    common::ledger_balanced(&svc).await;
}
