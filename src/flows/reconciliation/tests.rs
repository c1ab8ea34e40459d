//! The row builder and both writers against entries booked through the
//! merchant actor on a real store (MARKETPLACE.md §10): the txt format byte
//! for byte, the xlsx read back with calamine holding the same rows, Σ amount
//! per currency 0 and per account the ledger's postings of the day.

use pelago_actors::keys::RecordKey;
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use calamine::{Data, Reader, Xlsx, open_workbook};
use chrono::NaiveDate;
use pelago_actors::{
    ledger::{
        EntryKind, JournalEntry,
        marketplace::{self, Party, RecipientBalances},
    },
    merchant::{FundingMode, MerchantRecord, PostEntry},
    payment::{LineType, PaymentLine, PaymentRecord, PaymentStatus, SplitStatus},
    ports::Clock,
    system::{Actors, SystemConfig},
};
use pelago_storage::{
    Currency, MerchantId, Money, PaymentId, RecipientId, Store, StoreConfig, Timestamp, WriteBatch,
};

use super::{
    rows::{COLUMNS, for_each_row},
    writers::{Paths, SHEET, write_both},
};
use crate::config::marketplace::{day_bounds, parse_utc_offset};

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.0.load(Ordering::SeqCst))
    }
}

fn usd(v: i64) -> Money {
    Money::new(v, Currency::USD)
}

fn run<F: std::future::Future>(f: impl FnOnce() -> F) -> F::Output {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    })
    .block_on(f())
}

/// Books `postings` as `(source, kind)` at `at` (service time).
async fn book(
    actors: &Actors,
    clock: &TestClock,
    merchant: &MerchantId,
    at: Timestamp,
    source: &str,
    kind: EntryKind,
    postings: Vec<pelago_actors::ledger::Posting>,
) {
    clock.0.store(at.unix_ms(), Ordering::SeqCst);
    let entry = PostEntry { source_id: source.into(), kind, postings, event: None, index: vec![] };
    actors.ask_merchant(merchant, entry).await.unwrap().unwrap();
}

/// The split payment of §8's example, as the payment flow records it: a
/// seller's PURCHASE 900 and the merchant's COMMISSION 100, captured and split.
fn example_payment(id: &str, merchant: &MerchantId, seller: &RecipientId, at: Timestamp) -> PaymentRecord {
    let line = |kind, recipient_id: Option<RecipientId>, reference: &str, value| PaymentLine {
        kind,
        recipient_id,
        provider_recipient_id: None,
        merchant_reference: reference.into(),
        amount: usd(value),
        liability: None,
        refunded: 0,
        split_amount: Some(value),
    };
    let lines = vec![
        line(LineType::Purchase, Some(seller.clone()), "seller-part", 900),
        line(LineType::Commission, None, "order-7", 100),
    ];
    let mut payment = PaymentRecord::pending(
        PaymentId::parse(id).unwrap(),
        merchant.clone(),
        usd(1_000),
        "order-7".into(),
        lines,
        at,
    );
    payment.status = PaymentStatus::Succeeded;
    payment.captured_at = Some(at);
    payment.settled = true;
    payment.split.status = SplitStatus::Executed;
    payment
}

/// §8's example, spread over the day before D, D and the day after D.
async fn book_the_example(store: &Store, merchant: &MerchantId, day: (Timestamp, Timestamp)) -> RecipientId {
    let clock = Arc::new(TestClock(AtomicI64::new(day.0.unix_ms())));
    let actors = Actors::start(store.clone(), clock.clone(), SystemConfig::default());
    let seller = RecipientId::generate();
    let mut seed = WriteBatch::new();
    let record = MerchantRecord::new(merchant.clone(), "Market".into(), FundingMode::Gateway, Timestamp(0));
    seed.put(merchant.as_bytes(), &record).unwrap();
    seed.put(seller.as_bytes(), &RecipientBalances::empty(seller.clone(), merchant.clone(), Timestamp(0)))
        .unwrap();
    let payment = example_payment("pay_01JD0000000000000000000002", merchant, &seller, day.0);
    let key = RecordKey::Payment { merchant: merchant.clone(), payment: payment.id.clone() };
    seed.put(key.encode(), &payment).unwrap();
    store.commit_durable(seed).await.unwrap();
    let (a, m) = (Party::Recipient(seller.clone()), Party::Merchant(merchant.clone()));
    let lines = [(a.clone(), usd(900)), (m, usd(100))];
    let (start, end) = day;
    let book = |at, source: &'static str, kind, postings| {
        let (actors, clock) = (Arc::clone(&actors), Arc::clone(&clock));
        async move { book(&actors, &clock, merchant, at, source, kind, postings).await }
    };
    let collection = marketplace::collection(&lines).unwrap();
    // The last millisecond of the day before: not D.
    book(
        start.plus_ms(-1),
        "pay_01JD0000000000000000000001",
        EntryKind::MarketplaceCollection,
        collection.clone(),
    )
    .await;
    book(start, "pay_01JD0000000000000000000002", EntryKind::MarketplaceCollection, collection).await;
    let split = marketplace::split(&lines).unwrap();
    book(start.plus_ms(3_600_000), "pay_01JD0000000000000000000002", EntryKind::Split, split).await;
    let hold = marketplace::withdrawal_hold(&seller, usd(500)).unwrap();
    book(start.plus_ms(7_200_000), "rwd_01JD0000000000000000000003", EntryKind::RecipientWithdrawal, hold)
        .await;
    let paid = marketplace::withdrawal_paid(merchant, &seller, usd(500), usd(25)).unwrap();
    book(end.plus_ms(-1), "rwd_01JD0000000000000000000003", EntryKind::RecipientWithdrawalPaid, paid).await;
    // The first millisecond of the next day: not D.
    let refund = marketplace::refund(merchant, &[(a, usd(180))], usd(200), true).unwrap();
    book(end, "rfd_01JD0000000000000000000004", EntryKind::MarketplaceRefund, refund).await;
    seller
}

/// Σ amount per (account, currency) of the merchant's §8 entries dated in `[start, end)`, from the journal.
fn ledger_of_day(
    store: &Store,
    merchant: &MerchantId,
    (start, end): (Timestamp, Timestamp),
) -> BTreeMap<(String, String), i64> {
    let mut sums = BTreeMap::new();
    for item in store.iter::<JournalEntry>() {
        let (_, e) = item.unwrap();
        if e.merchant_id != *merchant
            || !e.kind.is_marketplace()
            || e.created_at < start
            || e.created_at >= end
        {
            continue;
        }
        for p in e.postings {
            *sums.entry((p.account.name(), p.amount.currency.code().to_owned())).or_default() +=
                p.amount.value;
        }
    }
    sums
}

fn xlsx_rows(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut book: Xlsx<_> = open_workbook(path).unwrap();
    let names = book.sheet_names();
    let range = book.worksheet_range(SHEET).unwrap();
    let rows = range
        .rows()
        .map(|row| {
            let mut cells: Vec<String> = row
                .iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    Data::String(s) => s.clone(),
                    Data::Float(f) => {
                        assert_eq!(f.fract(), 0.0, "a whole number");
                        format!("{}", *f as i64)
                    }
                    Data::Int(i) => i.to_string(),
                    other => panic!("unexpected cell {other:?}"),
                })
                .collect();
            cells.resize(COLUMNS.len(), String::new());
            cells
        })
        .collect();
    (names, rows)
}

#[test]
fn the_files_of_a_day_hold_its_postings_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let offset = parse_utc_offset("+08:00").unwrap();
    let date = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let day = day_bounds(date, offset);
    let merchant = MerchantId::generate();
    let store = Store::open(&dir.path().join("store"), &StoreConfig::default()).unwrap();
    let seller = run(|| book_the_example(&store, &merchant, day));

    let paths = Paths::new(&dir.path().join("files"), merchant.as_str());
    let rows = write_both(&paths, |sink| for_each_row(&store, &merchant, date, offset, sink)).unwrap();
    // Collection 3 postings, split 4, hold 2, paid 3.
    assert_eq!(rows, 12);

    let txt = std::fs::read(&paths.txt).unwrap();
    assert!(!txt.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
    assert!(!txt.contains(&b'\r'));
    assert_eq!(txt.last(), Some(&b'\n'), "final newline");
    let text = String::from_utf8(txt).unwrap();
    let lines: Vec<&str> = text.strip_suffix('\n').unwrap().split('\n').collect();
    assert_eq!(
        lines[0],
        "entry_id|posted_at|type|object_id|payment_id|merchant_reference|account|party_type|party_id|line|split_type|amount|currency"
    );
    assert_eq!(lines.len(), 13);
    let fields: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split('|').collect()).collect();
    assert!(fields.iter().all(|f| f.len() == COLUMNS.len()));
    // The first row: the collection at 00:00 local, its clearing leg.
    assert_eq!(fields[0][1], day.0.to_rfc3339());
    assert_eq!(
        &fields[0][2..],
        [
            "marketplace_collection",
            "pay_01JD0000000000000000000002",
            "pay_01JD0000000000000000000002",
            "order-7",
            "gateway:clearing",
            "gateway",
            "",
            "",
            "",
            "-1000",
            "USD"
        ]
    );
    // Each line's posting names its line, type and reference.
    let (a_transit, m_pending) =
        (format!("recipient:{seller}:in_transit"), format!("merchant:{merchant}:pending"));
    let line_rows: Vec<&[&str]> = fields[1..3].iter().map(|f| &f[5..11]).collect();
    let expected: [[&str; 6]; 2] = [
        ["seller-part", &a_transit, "recipient", seller.as_str(), "0", "PURCHASE"],
        ["order-7", &m_pending, "merchant", merchant.as_str(), "1", "COMMISSION"],
    ];
    assert_eq!(line_rows, expected.iter().map(|r| &r[..]).collect::<Vec<_>>());
    // The split: two postings a line, each naming the line whose party it is.
    let split: Vec<(&str, &str, &str)> =
        fields.iter().filter(|f| f[2] == "split").map(|f| (f[6], f[9], f[10])).collect();
    let (a_available, m_available) =
        (format!("recipient:{seller}:available"), format!("merchant:{merchant}:available"));
    assert_eq!(
        split,
        [
            (a_transit.as_str(), "0", "PURCHASE"),
            (a_available.as_str(), "0", "PURCHASE"),
            (m_pending.as_str(), "1", "COMMISSION"),
            (m_available.as_str(), "1", "COMMISSION"),
        ]
    );
    let kinds: Vec<&str> = fields.iter().map(|f| f[2]).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "split").count(), 4);
    assert_eq!(kinds.last(), Some(&"recipient_withdrawal_paid"));
    assert_eq!(fields[8][3], "rwd_01JD0000000000000000000003");
    assert_eq!(&fields[8][4..6], ["", ""], "a withdrawal has no payment");
    assert_eq!(&fields[8][9..11], ["", ""], "nor a line");
    let mut times: Vec<&str> = fields.iter().map(|f| f[1]).collect();
    let unsorted = times.clone();
    times.sort();
    assert_eq!(times, unsorted, "rows by posted_at");

    // Σ amount per currency is 0; per (account, currency) it is the ledger's day.
    let mut per_currency: BTreeMap<&str, i64> = BTreeMap::new();
    let mut per_account: BTreeMap<(String, String), i64> = BTreeMap::new();
    for f in &fields {
        let amount: i64 = f[11].parse().unwrap();
        *per_currency.entry(f[12]).or_default() += amount;
        *per_account.entry((f[6].to_owned(), f[12].to_owned())).or_default() += amount;
    }
    assert_eq!(per_currency, BTreeMap::from([("USD", 0)]));
    assert_eq!(per_account, ledger_of_day(&store, &merchant, day));

    // The xlsx: one sheet, the header, the same rows; amounts and lines numbers.
    let (names, sheet) = xlsx_rows(&paths.xlsx);
    assert_eq!(names, [SHEET]);
    let from_txt: Vec<Vec<String>> =
        lines.iter().map(|l| l.split('|').map(str::to_owned).collect()).collect();
    assert_eq!(sheet, from_txt);
    let mut book: Xlsx<_> = open_workbook(&paths.xlsx).unwrap();
    let range = book.worksheet_range(SHEET).unwrap();
    assert!(matches!(range.get((1, 11)), Some(Data::Float(_))), "amount is a number");
    assert!(matches!(range.get((1, 0)), Some(Data::String(_))), "entry_id is text");
}

#[test]
fn an_empty_day_is_the_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let offset = parse_utc_offset("+08:00").unwrap();
    let store = Store::open(&dir.path().join("store"), &StoreConfig::default()).unwrap();
    let merchant = MerchantId::generate();
    let date = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    let paths = Paths::new(&dir.path().join("files"), merchant.as_str());
    let rows = write_both(&paths, |sink| for_each_row(&store, &merchant, date, offset, sink)).unwrap();
    assert_eq!(rows, 0);
    assert_eq!(std::fs::read_to_string(&paths.txt).unwrap(), format!("{}\n", COLUMNS.join("|")));
    let (names, sheet) = xlsx_rows(&paths.xlsx);
    assert_eq!(names, [SHEET]);
    assert_eq!(sheet, vec![COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>()]);
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path().join("files")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "no temporary file is left: {leftovers:?}");
}
