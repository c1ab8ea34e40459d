//! The on-disk layout and its migrations.
//!
//! - Layout 1 (until 2026-11): one sled tree per record kind, named by
//!   [`Tree::name`]; a commit touching several kinds was a multi-tree
//!   transaction.
//! - Layout 2: one sled tree, [`RECORDS`], every key prefixed with its kind's
//!   byte ([`Tree::id`]), so a group of commits is one atomic `apply_batch`.
//!
//! The layout number is kept under [`LAYOUT_KEY`] in sled's default tree. A
//! data dir without it is layout 1 (or new). Migrating copies every layout-1
//! tree into the records tree in chunks, flushes, records layout 2, flushes,
//! and only then drops the old trees. A crash before the number is recorded
//! repeats the copy (the same keys and values again: nothing else writes
//! before `open` returns); a crash after it only leaves old trees to drop.

use crate::StoreError;

use super::Tree;

/// The one tree every record lives in.
pub const RECORDS: &str = "records";
/// Where the layout number is kept, in sled's default tree.
pub const LAYOUT_KEY: &[u8] = b"pelago.layout";
/// The layout this build writes.
pub const LAYOUT: u32 = 2;

/// Entries copied per `apply_batch` while migrating.
const CHUNK: usize = 4096;

/// Opens the records tree of `db`, migrating an older layout first.
pub(crate) fn open_records(db: &sled::Db) -> Result<sled::Tree, StoreError> {
    let records = db.open_tree(RECORDS)?;
    match recorded_layout(db)? {
        Some(LAYOUT) => {}
        Some(newer) if newer > LAYOUT => {
            return Err(StoreError::Io(format!(
                "the data dir has layout {newer}; this build reads layouts up to {LAYOUT}"
            )));
        }
        _ => {
            let copied = copy_layout_1(db, &records)?;
            db.flush()?;
            db.insert(LAYOUT_KEY, &LAYOUT.to_be_bytes())?;
            db.flush()?;
            if copied > 0 {
                tracing::info!(records = copied, "data dir migrated to layout {LAYOUT}");
            }
        }
    }
    drop_layout_1(db)?;
    Ok(records)
}

fn recorded_layout(db: &sled::Db) -> Result<Option<u32>, StoreError> {
    match db.get(LAYOUT_KEY)? {
        None => Ok(None),
        Some(bytes) => {
            let raw: [u8; 4] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                tree: "meta",
                reason: "the layout number is unreadable".into(),
            })?;
            Ok(Some(u32::from_be_bytes(raw)))
        }
    }
}

/// The layout-1 trees that exist in `db`.
fn layout_1_trees(db: &sled::Db) -> Vec<Tree> {
    let names = db.tree_names();
    Tree::ALL.iter().copied().filter(|t| names.iter().any(|n| n.as_ref() == t.name().as_bytes())).collect()
}

fn copy_layout_1(db: &sled::Db, records: &sled::Tree) -> Result<u64, StoreError> {
    let mut copied = 0;
    for tree in layout_1_trees(db) {
        let old = db.open_tree(tree.name())?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for item in old.iter() {
            let (key, value) = item?;
            batch.insert(tree.key(&key), value);
            in_batch += 1;
            if in_batch == CHUNK {
                records.apply_batch(std::mem::take(&mut batch))?;
                copied += in_batch as u64;
                in_batch = 0;
            }
        }
        records.apply_batch(batch)?;
        copied += in_batch as u64;
    }
    Ok(copied)
}

fn drop_layout_1(db: &sled::Db) -> Result<(), StoreError> {
    let old = layout_1_trees(db);
    if old.is_empty() {
        return Ok(());
    }
    for tree in old {
        db.drop_tree(tree.name())?;
    }
    db.flush()?;
    Ok(())
}
