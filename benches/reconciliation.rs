//! A reconciliation day (MARKETPLACE.md §10, issue 16): N rows (default
//! 100,000) of one merchant's marketplace entries seeded into a store, then
//! both files of the day built as the daily run builds them
//! (`rows::for_each_row` streamed into `writers::write_both`). Reports the
//! time and the growth of this process's resident memory over the build,
//! sampled every 10 ms (the store's own cache is filled before it starts).
//!
//! `cargo bench --bench reconciliation -- 100000`. Under `cargo test`: 2,000 rows.

#[allow(dead_code)] // only its memory reader is used here
mod common;

use pelago_actors::keys::RecordKey;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use pelago_actors::{
    ledger::{EntryKind, JournalEntry, marketplace},
    merchant::actor::marketplace_entry_index,
    payment::{LineType, PaymentLine, PaymentRecord},
};
use pelago_card::{
    config::marketplace::{day_bounds, parse_utc_offset},
    flows::reconciliation::{
        rows::for_each_row,
        writers::{Paths, write_both},
    },
};
use pelago_storage::{
    Currency, JournalEntryId, MerchantId, Money, PaymentId, RecipientId, Store, StoreConfig, Tree, WriteBatch,
};

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rows: usize =
        std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(if bench { 100_000 } else { 2_000 });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &StoreConfig::default()).unwrap();
    let offset = parse_utc_offset("+08:00").unwrap();
    let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let (start, _) = day_bounds(date, offset);
    let merchant = MerchantId::generate();
    let recipient = RecipientId::generate();
    // A collection of one line is two postings: two rows an entry.
    let amount = Money::new(1_234, Currency::USD);
    let lines = [(marketplace::Party::Recipient(recipient.clone()), amount)];
    let postings = marketplace::collection(&lines).unwrap();
    // Each entry's payment is read by the row builder for its line's columns.
    let line = PaymentLine {
        kind: LineType::Purchase,
        recipient_id: Some(recipient),
        provider_recipient_id: None,
        merchant_reference: "order-1".into(),
        amount,
        liability: None,
        refunded: 0,
        split_amount: None,
    };
    let seeded = Instant::now();
    for chunk in 0..rows.div_ceil(2).div_ceil(1_000) {
        let mut batch = WriteBatch::new();
        for n in chunk * 1_000..((chunk + 1) * 1_000).min(rows.div_ceil(2)) {
            let payment = PaymentRecord::pending(
                PaymentId::generate(),
                merchant.clone(),
                amount,
                "order-1".into(),
                vec![line.clone()],
                start,
            );
            let key = RecordKey::Payment { merchant: merchant.clone(), payment: payment.id.clone() };
            batch.put(key.encode(), &payment).unwrap();
            let entry = JournalEntry {
                id: JournalEntryId::generate(),
                merchant_id: merchant.clone(),
                source_id: payment.id.to_string(),
                kind: EntryKind::MarketplaceCollection,
                postings: postings.clone(),
                created_at: start.plus_ms(n as i64),
            };
            batch.put(entry.id.as_bytes(), &entry).unwrap();
            batch.put_raw(Tree::Index, marketplace_entry_index(&merchant, entry.created_at, &entry.id), []);
        }
        let _durable_at_the_flush_below = store.commit(batch).unwrap();
    }
    store.flush_blocking().unwrap();
    println!("seeded {} entries in {:.1} s", rows.div_ceil(2), seeded.elapsed().as_secs_f64());

    let pid = std::process::id();
    let before = common::status_mib(pid, "VmRSS:");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(common::status_mib(pid, "VmRSS:"));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let paths = Paths::new(&dir.path().join("files"), merchant.as_str());
    let started = Instant::now();
    let written = write_both(&paths, |sink| for_each_row(&store, &merchant, date, offset, sink)).unwrap();
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap().max(common::status_mib(pid, "VmRSS:"));
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1_048_576.0;
    println!(
        "reconciliation day: {written} rows in {:.2} s ({:.0} rows/s); txt {:.1} MiB, xlsx {:.1} MiB; \
         resident memory {before:.1} MiB before, peak {peak:.1} MiB during (+{:.1} MiB)",
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64(),
        size(&paths.txt),
        size(&paths.xlsx),
        peak - before,
    );
    assert_eq!(written as usize, rows.div_ceil(2) * 2);
}
