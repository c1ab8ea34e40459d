use serde::{Deserialize, Serialize};

use super::*;
use crate::Record;
use crate::codec;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Thing {
    n: u64,
}
impl Record for Thing {
    const TREE: Tree = Tree::Cards;
    const SCHEMA_VERSION: u8 = 1;
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Row {
    of: u64,
}
impl Record for Row {
    const TREE: Tree = Tree::Journal;
    const SCHEMA_VERSION: u8 = 1;
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    (dir, store)
}

#[tokio::test]
async fn multi_tree_commit_is_atomic_and_durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(b"a", &Thing { n: 1 }).unwrap();
        batch.put(b"a/1", &Row { of: 1 }).unwrap();
        store.commit_durable(batch).await.unwrap();
    }
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    assert_eq!(store.get::<Thing>(b"a").unwrap(), Some(Thing { n: 1 }));
    assert_eq!(store.get::<Row>(b"a/1").unwrap(), Some(Row { of: 1 }));
}

#[tokio::test]
async fn failed_precondition_writes_nothing() {
    let (_dir, store) = open();
    let mut first = WriteBatch::new();
    first.put(b"a", &Thing { n: 1 }).unwrap();
    store.commit_durable(first).await.unwrap();

    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::Cards, b"a");
    batch.put(b"b", &Thing { n: 2 }).unwrap();
    batch.put(b"b/1", &Row { of: 2 }).unwrap();
    assert!(matches!(store.commit(batch), Err(StoreError::Conflict { tree: "cards" })));
    assert_eq!(store.get::<Thing>(b"b").unwrap(), None);
    assert_eq!(store.get::<Row>(b"b/1").unwrap(), None);

    // Compare-and-set on the exact bytes read.
    let (_, bytes) = store.get_with_bytes::<Thing>(b"a").unwrap().unwrap();
    let mut cas = WriteBatch::new();
    cas.expect_raw(Tree::Cards, b"a", Some(bytes.clone()));
    cas.put(b"a", &Thing { n: 3 }).unwrap();
    store.commit_durable(cas).await.unwrap();
    let mut stale = WriteBatch::new();
    stale.expect_raw(Tree::Cards, b"a", Some(bytes));
    stale.put(b"a", &Thing { n: 4 }).unwrap();
    assert!(store.commit(stale).is_err());
    assert_eq!(store.get::<Thing>(b"a").unwrap(), Some(Thing { n: 3 }));
}

#[tokio::test]
async fn scans_pages_in_both_directions() {
    let (_dir, store) = open();
    let mut batch = WriteBatch::new();
    for i in 0..10u64 {
        batch.put(format!("p/{i:02}"), &Thing { n: i }).unwrap();
    }
    batch.put(b"q/00", &Thing { n: 99 }).unwrap();
    store.commit_durable(batch).await.unwrap();

    let newest = store.scan::<Thing>(b"p/", None, true, 3).unwrap();
    assert_eq!(newest.iter().map(|(_, t)| t.n).collect::<Vec<_>>(), vec![9, 8, 7]);
    let next = store.scan::<Thing>(b"p/", Some(b"p/07"), true, 3).unwrap();
    assert_eq!(next.iter().map(|(_, t)| t.n).collect::<Vec<_>>(), vec![6, 5, 4]);
    let forward = store.scan::<Thing>(b"p/", Some(b"p/07"), false, 5).unwrap();
    assert_eq!(forward.iter().map(|(_, t)| t.n).collect::<Vec<_>>(), vec![8, 9]);
}

#[tokio::test]
async fn concurrent_writers_share_flushes() {
    let (_dir, store) = open();
    let before = store.flusher().stats().flushes.load(std::sync::atomic::Ordering::Relaxed);
    let mut tasks = Vec::new();
    for i in 0..256u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut batch = WriteBatch::new();
            batch.put(i.to_be_bytes(), &Thing { n: i }).unwrap();
            store.commit_durable(batch).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let flushes = store.flusher().stats().flushes.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(store.len(Tree::Cards), 256);
    assert!(flushes < 256, "256 concurrent durable writes took {flushes} flushes");
}

#[test]
fn a_group_checks_each_change_against_the_changes_ahead_of_it() {
    let (_dir, store) = open();
    let thing = |n| codec::encode(&Thing { n }).unwrap();
    let mut first = WriteBatch::new();
    first.expect_absent(Tree::Cards, b"k").put(b"k", &Thing { n: 1 }).unwrap();
    // Queued behind `first` in the same group: sees `first`'s write.
    let mut second = WriteBatch::new();
    second.expect_absent(Tree::Cards, b"k").put(b"other", &Thing { n: 2 }).unwrap();
    let mut third = WriteBatch::new();
    third.expect_raw(Tree::Cards, b"k", Some(thing(1))).put(b"k", &Thing { n: 3 }).unwrap();
    third.put(b"k/1", &Row { of: 3 }).unwrap();
    let mut fourth = WriteBatch::new();
    fourth.delete(Tree::Cards, b"k");
    fourth.expect_raw(Tree::Cards, b"k", Some(thing(1)));

    let results = store.pipeline.apply_group(vec![(1, first), (2, second), (3, third), (4, fourth)]);
    let verdicts: Vec<_> = results.iter().map(|(id, r)| (*id, r.is_ok())).collect();
    assert_eq!(verdicts, vec![(1, true), (2, false), (3, true), (4, false)]);
    assert!(matches!(results[1].1, Err(StoreError::Conflict { tree: "cards" })));
    assert_eq!(store.get::<Thing>(b"k").unwrap(), Some(Thing { n: 3 }));
    assert_eq!(store.get::<Thing>(b"other").unwrap(), None, "a refused change writes nothing");
    assert_eq!(store.get::<Row>(b"k/1").unwrap(), Some(Row { of: 3 }));
    assert_eq!(store.commit_stats().groups, 1);
}

#[test]
fn concurrent_compare_and_set_loses_no_update() {
    let (_dir, store) = open();
    let threads = 8;
    let each = 200u64;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..each {
                    loop {
                        let current = store.get_with_bytes::<Thing>(b"counter").unwrap();
                        let n = current.as_ref().map_or(0, |(t, _)| t.n);
                        let mut batch = WriteBatch::new();
                        batch.expect_raw(Tree::Cards, b"counter", current.map(|(_, bytes)| bytes));
                        batch.put(b"counter", &Thing { n: n + 1 }).unwrap();
                        batch.put(format!("log/{n:06}"), &Row { of: n }).unwrap();
                        match store.commit(batch) {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let total = threads * each;
    assert_eq!(store.get::<Thing>(b"counter").unwrap(), Some(Thing { n: total }));
    assert_eq!(store.scan::<Row>(b"log/", None, false, usize::MAX).unwrap().len() as u64, total);
    let stats = store.commit_stats();
    assert!(stats.commits >= total && stats.groups <= stats.commits, "{stats:?}");
}

/// Golden: where a record of each kind lands in sled (the kind's byte, then
/// the key) and the layout number beside it. These bytes are the data dir.
#[tokio::test]
async fn golden_layout_2_keys() {
    let (_dir, store) = open();
    let mut batch = WriteBatch::new();
    batch.put(b"card_1", &Thing { n: 7 }).unwrap();
    batch.put_raw(Tree::Index, b"ix/1", b"card_1".to_vec());
    store.commit_durable(batch).await.unwrap();
    let raw: Vec<(Vec<u8>, Vec<u8>)> =
        store.records.iter().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
    assert_eq!(
        raw,
        vec![
            ([&[7u8][..], b"card_1"].concat(), vec![1, 7]),
            ([&[37u8][..], b"ix/1"].concat(), b"card_1".to_vec()),
        ]
    );
    assert_eq!(store.db.get(layout::LAYOUT_KEY).unwrap().unwrap().as_ref(), &[0, 0, 0, 2]);
    assert_eq!(layout::RECORDS, "records");
    let ids: Vec<u8> = Tree::ALL.iter().map(|t| t.id()).collect();
    assert_eq!(ids, (1..=37).collect::<Vec<u8>>(), "kind bytes are on disk: append, never renumber");
}

/// sled opened directly, as an older build would (no timer flusher thread).
fn raw_sled(dir: &std::path::Path) -> sled::Db {
    sled::Config::new().path(dir).flush_every_ms(None).open().unwrap()
}

/// A data dir written in layout 1 (one sled tree per kind), as the builds
/// before layout 2 left it.
fn write_layout_1(db: &sled::Db, cards: u64) {
    let card_tree = db.open_tree("cards").unwrap();
    for n in 0..cards {
        card_tree.insert(format!("card_{n:05}"), codec::encode(&Thing { n }).unwrap()).unwrap();
    }
    db.open_tree("journal").unwrap().insert(b"e/1", codec::encode(&Row { of: 1 }).unwrap()).unwrap();
    db.open_tree("index").unwrap().insert(b"ix/1", b"card_00001".to_vec()).unwrap();
    db.open_tree("meta").unwrap().insert(b"mode", b"sandbox".to_vec()).unwrap();
    db.flush().unwrap();
}

fn assert_layout_1_content_readable(store: &Store, cards: u64) {
    assert_eq!(store.get::<Thing>(b"card_00001").unwrap(), Some(Thing { n: 1 }));
    let last = format!("card_{:05}", cards - 1);
    assert_eq!(store.get::<Thing>(&last).unwrap(), Some(Thing { n: cards - 1 }));
    assert_eq!(store.get::<Row>(b"e/1").unwrap(), Some(Row { of: 1 }));
    assert_eq!(store.get_raw(Tree::Index, b"ix/1").unwrap(), Some(b"card_00001".to_vec()));
    assert_eq!(store.get_raw(Tree::Meta, b"mode").unwrap(), Some(b"sandbox".to_vec()));
    let page = store.scan::<Thing>(b"card_0", None, true, 2).unwrap();
    assert_eq!(page.iter().map(|(_, t)| t.n).collect::<Vec<_>>(), vec![cards - 1, cards - 2]);
}

#[tokio::test]
async fn a_layout_1_data_dir_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cards = 10_000; // more than one copy chunk
    write_layout_1(&raw_sled(dir.path()), cards);
    {
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        assert_layout_1_content_readable(&store, cards);
        assert_eq!(store.len(Tree::Cards), cards as usize);
        let names = store.db.tree_names();
        assert!(!names.iter().any(|n| n.as_ref() == b"cards"), "layout-1 trees are dropped");
        let mut batch = WriteBatch::new();
        batch.put(b"card_new", &Thing { n: 99 }).unwrap();
        store.commit_durable(batch).await.unwrap();
    }
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    assert_layout_1_content_readable(&store, cards);
    assert_eq!(store.len(Tree::Cards), cards as usize + 1);
    assert_eq!(store.get::<Thing>(b"card_new").unwrap(), Some(Thing { n: 99 }));
}

#[test]
fn a_migration_cut_short_is_finished_on_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The copy had begun (some records in the new tree), the layout was not recorded.
        let db = raw_sled(dir.path());
        write_layout_1(&db, 50);
        let records = db.open_tree(layout::RECORDS).unwrap();
        records.insert(Tree::Cards.key(b"card_00003"), codec::encode(&Thing { n: 3 }).unwrap()).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    assert_layout_1_content_readable(&store, 50);
    assert_eq!(store.len(Tree::Cards), 50);
}

#[test]
fn a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw_sled(dir.path());
        db.insert(layout::LAYOUT_KEY, &(layout::LAYOUT + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let refused = Store::open(dir.path(), &StoreConfig::default()).err().expect("refused");
    assert!(refused.to_string().contains("layout 3"), "{refused}");
}

#[tokio::test]
async fn settled_waits_until_every_applied_commit_is_on_disk() {
    let (_dir, store) = open();
    store.settled().await.unwrap(); // nothing waiting: at once
    for n in 0..20u64 {
        let mut batch = WriteBatch::new();
        batch.put(n.to_be_bytes(), &Thing { n }).unwrap();
        // Applied, so readable, before it is flushed.
        let ticket = store.commit(batch).unwrap();
        assert_eq!(store.get::<Thing>(n.to_be_bytes()).unwrap(), Some(Thing { n }));
        store.settled().await.unwrap();
        assert!(store.flusher().is_durable(ticket), "settled before commit {n} was flushed");
    }
}

#[test]
fn a_held_data_dir_is_refused_after_the_lock_wait_and_opened_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let held = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let brief = StoreConfig { lock_wait: std::time::Duration::from_millis(50), ..StoreConfig::default() };
    match Store::open(dir.path(), &brief) {
        Err(StoreError::Io(message)) => assert!(message.contains("locked by another process"), "{message}"),
        Err(other) => panic!("expected the lock error, got {other:?}"),
        Ok(_) => panic!("a second handle opened a held data dir"),
    }
    // Released while the next open is waiting: that open succeeds.
    let (opening, waiting) = std::sync::mpsc::channel();
    let reopen = std::thread::spawn({
        let dir = dir.path().to_path_buf();
        move || {
            opening.send(()).unwrap();
            Store::open(&dir, &StoreConfig::default()).map(|_| ())
        }
    });
    waiting.recv().unwrap();
    drop(held);
    reopen.join().unwrap().expect("opened once the holder let go");
}

#[test]
fn the_flusher_waits_only_after_a_flush_that_covered_several_tickets() {
    let policy = crate::FlushPolicy { delay: std::time::Duration::from_millis(1), busy_after: 4 };
    assert_eq!([0, 1, 3, 4, 100].map(|n| policy.waits(n)), [false, false, false, true, true]);
    let never = crate::FlushPolicy { delay: std::time::Duration::ZERO, busy_after: 0 };
    assert!(!never.waits(100));
}

#[tokio::test]
async fn a_store_closes_at_once_while_its_flusher_waits_out_the_flush_delay() {
    // A delay no test could sit through, applied to every flush after the first.
    // A close during it used to be lost (the delay cleared the wake-up), and
    // dropping the store then waited on the flusher thread forever.
    let dir = tempfile::tempdir().unwrap();
    let flush = crate::FlushPolicy { delay: std::time::Duration::from_secs(600), busy_after: 1 };
    let store = Store::open(dir.path(), &StoreConfig { flush, ..StoreConfig::default() }).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b"first", &Thing { n: 1 }).unwrap();
    store.commit_durable(batch).await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b"second", &Thing { n: 2 }).unwrap();
    let _not_waited = store.commit(batch).unwrap(); // the close must flush it
    let delayed = || store.flusher().stats().delayed.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while delayed() == 0 {
        assert!(std::time::Instant::now() < deadline, "the second flush never began its delay");
        std::thread::yield_now();
    }
    let (closed, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(store);
        let _ = closed.send(());
    });
    done.recv_timeout(std::time::Duration::from_secs(60)).expect("the store closed during the flush delay");
    // Nothing written was lost at the close.
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    assert_eq!(store.get::<Thing>(b"second").unwrap(), Some(Thing { n: 2 }));
}

#[tokio::test]
async fn a_lone_writer_is_never_held_by_the_flush_delay() {
    // A delay no test could sit through: a lone writer's flushes each cover
    // one ticket, so it must never apply.
    let dir = tempfile::tempdir().unwrap();
    let flush = crate::FlushPolicy { delay: std::time::Duration::from_secs(600), busy_after: 2 };
    let store = Store::open(dir.path(), &StoreConfig { flush, ..StoreConfig::default() }).unwrap();
    let writes = async {
        for n in 0..20 {
            let mut batch = WriteBatch::new();
            batch.put(n.to_string(), &Thing { n }).unwrap();
            store.commit_durable(batch).await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), writes).await.expect("no flush waited");
}
