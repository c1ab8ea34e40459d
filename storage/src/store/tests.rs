use serde::{Deserialize, Serialize};

use super::*;
use crate::Record;

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
