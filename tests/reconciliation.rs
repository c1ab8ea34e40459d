//! Reconciliation files and runs over real HTTP (MARKETPLACE.md §10): the
//! routes and their errors, a run once per date, an empty day is the header
//! only in both formats, the daily job catching up after a clock jump, and two
//! days of real money (a payment paid on the checkout, settled, split, refunded,
//! a withdrawal) in both files, every column of every row.

mod common;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use common::{Json, Merchant, Service, clock, send};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const HEADER: &str = "entry_id|posted_at|type|object_id|payment_id|merchant_reference|account|party_type|party_id|line|split_type|amount|currency";

/// The local date at the default marketplace offset (+08:00).
fn local_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap()).date_naive()
}

async fn trigger(svc: &Service, date: &str) -> (StatusCode, Value) {
    svc.admin_post("/admin/v1/reconciliation/runs", json!({"date": date})).await
}

async fn run_completed(svc: &Service, date: &str) -> Value {
    common::completed_run(svc, &format!("/admin/v1/reconciliation/runs/{date}")).await
}

async fn download(svc: &Service, key: &common::Key, path: &str) -> reqwest::Response {
    svc.signed(key, Method::GET, path, b"").send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_refuse_what_they_must_and_an_empty_day_is_the_header_only() {
    let svc = Service::temp(&[]);
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
    assert!(body.str("error.message").contains(&due), "{body}");

    // Today is not over: 409; a bad date: 400.
    let (status, body) = trigger(&svc, &today.to_string()).await;
    assert_eq!((status, body.code()), (StatusCode::CONFLICT, "invalid_state"), "{body}");
    let (status, body) = trigger(&svc, "2026-02-30").await;
    assert_eq!((status, body.param()), (StatusCode::BAD_REQUEST, Some("date")), "{body}");

    // The next local day begins (00:30 at +08:00): the merchant's first day is over.
    let next_day = today.succ_opt().unwrap().and_hms_opt(0, 30, 0).unwrap();
    let next_day = next_day.and_local_timezone(FixedOffset::east_opt(8 * 3600).unwrap()).unwrap();
    clock::set(&svc, next_day.with_timezone(&Utc)).await;

    // That day: one run, whatever the number of asks.
    let (status, first) = trigger(&svc, &first_day).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert!(first.str("id").starts_with("rcn_"), "{first}");
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
    let svc = Service::temp(&[]);
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
    let run = format!("/admin/v1/reconciliation/runs/{}", local_date(later));
    assert_eq!(svc.admin_json(Method::GET, &run, None).await.0, StatusCode::NOT_FOUND);

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
    let mut dates: Vec<String> =
        events["data"].as_array().unwrap().iter().map(|e| e.str("data.object.date").to_owned()).collect();
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

/// A day's txt file (its bytes checked for §10's format) as rows of fields, header first.
async fn txt_rows(svc: &Service, key: &common::Key, day: &str) -> Vec<Vec<String>> {
    let txt = download(svc, key, &format!("/v1/reconciliation/{day}?format=txt")).await;
    assert_eq!(txt.status(), StatusCode::OK, "{day}");
    let bytes = txt.bytes().await.unwrap().to_vec();
    assert!(!bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.ends_with('\n') && !text.contains('\r'), "LF lines, a final newline");
    assert!(!text.contains("ACC123456") && !text.contains("P1234567"), "no numbers in the file");
    let lines: Vec<Vec<String>> =
        text.trim_end_matches('\n').split('\n').map(|l| l.split('|').map(str::to_owned).collect()).collect();
    assert_eq!(lines[0].join("|"), HEADER);
    assert!(lines.iter().all(|l| l.len() == 13), "13 fields a line: {lines:?}");
    lines
}

/// A day's xlsx read back with calamine, every cell as the txt writes it.
async fn xlsx_rows(svc: &Service, key: &common::Key, day: &str) -> Vec<Vec<String>> {
    let xlsx = download(svc, key, &format!("/v1/reconciliation/{day}?format=xlsx")).await;
    let mut book = Xlsx::new(Cursor::new(xlsx.bytes().await.unwrap().to_vec())).unwrap();
    assert_eq!(book.sheet_names(), ["reconciliation"]);
    book.worksheet_range("reconciliation")
        .unwrap()
        .rows()
        .enumerate()
        .map(|(n, r)| {
            let mut cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, cell)| match cell {
                    Data::Empty => String::new(),
                    Data::String(s) => {
                        assert!(n == 0 || (c != 9 && c != 11), "line and amount are numbers");
                        s.clone()
                    }
                    Data::Float(f) => format!("{}", *f as i64),
                    other => panic!("unexpected cell {other:?}"),
                })
                .collect();
            cells.resize(13, String::new());
            cells
        })
        .collect()
}

/// Real money through every Marketplace II flow, then both local days'
/// files: a split payment paid on the checkout (local day D1), and on D2 its
/// settlement (T+1), batch split, a refund after the split and a paid
/// withdrawal inside the window. Every column of every row is checked; both
/// files hold the same rows; Σ per currency is 0 and per account the ledger's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_of_two_days_is_in_both_files_column_by_column() {
    use common::marketplace::{create_payment, payment_helper, seller, split_batch, usd};
    let svc = Service::temp(&[]);
    let common::Merchant { id: merchant, key, .. } = svc.merchant("Accounted").await;
    let (a, _) = seller(&svc, &key, "Seller Approved", true, Some(1000)).await;
    let start = clock::now(&svc).await;

    // D1, 11:00 local: 1000 = PURCHASE 900 to the seller + COMMISSION 100, paid on the checkout.
    let paid_at = clock::day_after(start, 1, 3, 0, 0);
    clock::set(&svc, paid_at).await;
    let body = json!({
        "amount": usd(1000), "merchant_reference": "order-1000",
        "split_marketplace": [
            {"recipient_id": a, "type": "PURCHASE", "amount": usd(900), "merchant_reference": "seller-part"},
            {"type": "COMMISSION", "amount": usd(100)},
        ],
    });
    let (status, p) = create_payment(&svc, &key, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let pay = p.str("id").to_owned();
    assert_eq!(payment_helper(&svc, &key, &pay, "pay").await["status"], "SUCCEEDED");

    // D2, 10:00 local: T+1 settles it; the split; a refund; a withdrawal (inside the window).
    let next = clock::day_after(start, 2, 2, 0, 0);
    clock::set(&svc, next).await;
    common::settle(&svc, &clock::date(clock::day_after(start, 2, 0, 0, 0))).await;
    let (status, batch) = split_batch(&svc, &key, &[&pay]).await;
    assert_eq!((status, batch.str("items.0.status")), (StatusCode::CREATED, "executed"), "{batch}");
    let m = Merchant::of(&svc, &merchant, key.clone());
    let refund = json!({"amount": usd(200), "splits": [{"line": 0, "amount": usd(180)}]});
    let (status, refund) = m.post(&format!("/v1/payments/{pay}/refunds"), refund).await;
    assert_eq!((status, refund.str("status")), (StatusCode::CREATED, "succeeded"), "{refund}");
    let rfd = refund.str("id").to_owned();
    let (status, w) = m
        .post(&format!("/v1/recipients/{a}/withdrawals"), json!({"amount": usd(500), "commission": usd(25)}))
        .await;
    assert_eq!((status, w.str("status")), (StatusCode::CREATED, "succeeded"), "{w}");
    let rwd = w.str("id").to_owned();

    // Both days over: their runs.
    clock::set(&svc, clock::day_after(start, 3, 2, 0, 5)).await;
    let (d1, d2) = (local_date(paid_at).to_string(), local_date(next).to_string());
    assert_ne!(d1, d2);
    for (day, rows) in [(&d1, 3), (&d2, 12)] {
        let (status, run) = trigger(&svc, day).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        assert_eq!(run_completed(&svc, day).await["rows"], rows, "{day}");
    }

    let (transit, avail, held) = (
        format!("recipient:{a}:in_transit"),
        format!("recipient:{a}:available"),
        format!("recipient:{a}:withdrawing"),
    );
    let (pending, m_avail) =
        (format!("merchant:{merchant}:pending"), format!("merchant:{merchant}:available"));
    // (type, object_id, payment_id, merchant_reference, account, party_type, party_id, line, split_type, amount)
    let row = |kind: &str,
               object: &str,
               payment: &str,
               reference: &str,
               account: &str,
               line: &str,
               split: &str,
               amount: i64| {
        let (party_type, party_id) = if account == "gateway:clearing" {
            ("gateway", String::new())
        } else if account.starts_with("merchant:") {
            ("merchant", merchant.clone())
        } else {
            ("recipient", a.clone())
        };
        [
            kind,
            object,
            payment,
            reference,
            account,
            party_type,
            &party_id,
            line,
            split,
            &amount.to_string(),
            "USD",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let clearing = "gateway:clearing";
    let collection = |acc: &str, line, split, amount| {
        let reference = if line == "0" { "seller-part" } else { "order-1000" };
        row("marketplace_collection", &pay, &pay, reference, acc, line, split, amount)
    };
    let expected_d1 = vec![
        collection(clearing, "", "", -1000),
        collection(&transit, "0", "PURCHASE", 900),
        collection(&pending, "1", "COMMISSION", 100),
    ];
    let split = |acc: &str, line, kind, amount| {
        let reference = if line == "0" { "seller-part" } else { "order-1000" };
        row("split", &pay, &pay, reference, acc, line, kind, amount)
    };
    let expected_d2 = vec![
        split(&transit, "0", "PURCHASE", -900),
        split(&avail, "0", "PURCHASE", 900),
        split(&pending, "1", "COMMISSION", -100),
        split(&m_avail, "1", "COMMISSION", 100),
        row("marketplace_refund", &rfd, &pay, "seller-part", &avail, "0", "PURCHASE", -180),
        row("marketplace_refund", &rfd, &pay, "order-1000", clearing, "", "", 200),
        row("marketplace_refund", &rfd, &pay, "order-1000", &m_avail, "", "", -20),
        row("recipient_withdrawal", &rwd, "", "", &avail, "", "", -500),
        row("recipient_withdrawal", &rwd, "", "", &held, "", "", 500),
        row("recipient_withdrawal_paid", &rwd, "", "", &held, "", "", -500),
        row("recipient_withdrawal_paid", &rwd, "", "", clearing, "", "", 475),
        row("recipient_withdrawal_paid", &rwd, "", "", &m_avail, "", "", 25),
    ];
    let mut all = Vec::new();
    for (day, expected, at) in [(&d1, expected_d1, paid_at), (&d2, expected_d2, next)] {
        let lines = txt_rows(&svc, &key, day).await;
        let rows = &lines[1..];
        let tail: Vec<Vec<String>> = rows.iter().map(|r| r[2..].to_vec()).collect();
        assert_eq!(tail, expected, "{day}");
        // entry_id: one per entry, in order; posted_at: RFC 3339 UTC within the local day, in order.
        let mut last = (String::new(), String::new());
        for r in rows {
            assert!(!r[0].is_empty(), "{r:?}");
            let posted = clock::parse(&r[1]);
            assert_eq!(local_date(posted), local_date(at), "{r:?}");
            assert!(
                (r[1].clone(), r[0].clone()) >= (last.0.clone(), last.1.clone()),
                "rows in order: {rows:?}"
            );
            last = (r[1].clone(), r[0].clone());
        }
        let entries: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        let mut distinct = entries.clone();
        distinct.dedup();
        let kinds: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect::<Vec<_>>();
        let mut kinds_dedup = kinds.clone();
        kinds_dedup.dedup();
        assert_eq!(distinct.len(), kinds_dedup.len(), "one entry id per entry: {rows:?}");
        assert_eq!(xlsx_rows(&svc, &key, day).await, lines, "the xlsx holds the txt's rows");
        let per_currency: i64 = rows.iter().map(|r| r[11].parse::<i64>().unwrap()).sum();
        assert_eq!(per_currency, 0, "Σ amount per currency is 0 on {day}");
        all.extend(rows.iter().cloned());
    }

    // Per account the two days are the ledger: every posting of these accounts is in them.
    let per_account = sums(&all);
    let b = common::marketplace::recipient_balance(&svc, &key, &a).await;
    let usd_of = |acc: &str| per_account.get(&(acc.to_owned(), "USD".to_owned())).copied().unwrap_or(0);
    assert_eq!(
        (usd_of(&transit), usd_of(&avail), usd_of(&held)),
        (
            b["in_transit"].as_i64().unwrap_or(0),
            b["available"].as_i64().unwrap(),
            b["withdrawing"].as_i64().unwrap_or(0)
        ),
        "{b}"
    );
    assert_eq!(usd_of(&m_avail), common::available(&svc, &key).await);
    assert_eq!((usd_of(&avail), usd_of(&m_avail), usd_of(clearing)), (220, 105, -325));
    common::ledger_balanced(&svc).await;
}
