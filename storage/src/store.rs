//! The sled store: every record kind under its own key prefix in one sled tree,
//! atomic multi-record commits with compare-and-set preconditions, merged into
//! group batches (`pipeline.rs`) and made durable by the group flusher
//! (`flusher.rs`). `layout.rs` owns the on-disk layout and its migrations.

use std::{ops::Bound, path::Path};

use crate::{
    StoreError,
    codec::{self, Record},
    flusher::{FlushTicket, Flusher},
};

mod layout;
mod pipeline;

use pipeline::Pipeline;

macro_rules! trees {
    ($($variant:ident => $name:literal = $id:literal,)*) => {
        /// Every kind of record the store keeps. A kind is stored as the key
        /// prefix `[id]` in the one sled tree (so one `apply_batch` is atomic
        /// across kinds); `name` was its own sled tree in layout 1 and still
        /// names it in errors. Both are on-disk identities: never change or
        /// reuse either.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Tree { $($variant,)* }

        impl Tree {
            pub const ALL: &'static [Tree] = &[$(Tree::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Tree::$variant => $name,)* }
            }

            /// The key prefix of this kind's records.
            pub fn id(self) -> u8 {
                match self { $(Tree::$variant => $id,)* }
            }
        }
    };
}

trees! {
    Meta => "meta" = 1,
    Merchants => "merchants" = 2,
    ApiKeys => "api_keys" = 3,
    Channels => "channels" = 4,
    Bins => "bins" = 5,
    Cardholders => "cardholders" = 6,
    Cards => "cards" = 7,
    Topups => "topups" = 8,
    Orders => "orders" = 9,
    Transactions => "transactions" = 10,
    Withdrawals => "withdrawals" = 11,
    Deposits => "deposits" = 12,
    Journal => "journal" = 13,
    BalanceTxns => "balance_txns" = 14,
    Events => "events" = 15,
    Outbox => "outbox" = 16,
    Deliveries => "deliveries" = 17,
    Receipts => "receipts" = 18,
    Idempotency => "idempotency" = 19,
    Nonces => "nonces" = 20,
    Operations => "operations" = 21,
    BillingRuns => "billing_runs" = 22,
    BillingCharges => "billing_charges" = 23,
    SettlementRuns => "settlement_runs" = 24,
    Callbacks => "callbacks" = 25,
    Files => "files" = 26,
    FileContents => "file_contents" = 27,
    Recipients => "recipients" = 28,
    Onboardings => "onboardings" = 29,
    Agreements => "agreements" = 30,
    RecipientBalances => "recipient_balances" = 31,
    Payments => "payments" = 32,
    SplitBatches => "split_batches" = 33,
    Refunds => "refunds" = 34,
    ReconciliationRuns => "reconciliation_runs" = 35,
    RecipientWithdrawals => "recipient_withdrawals" = 36,
    Index => "index" = 37,
}

impl Tree {
    /// `key` as stored: the kind's prefix byte, then the key.
    pub(crate) fn key(self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(key.len() + 1);
        full.push(self.id());
        full.extend_from_slice(key);
        full
    }
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// sled's page cache, bytes.
    pub cache_capacity_bytes: u64,
    /// How long `open` waits for the data dir's lock. A process that has
    /// just exited (or a handle just dropped) holds it for a moment while
    /// sled's I/O threads wind down; a second live process holds it for good.
    pub lock_wait: std::time::Duration,
    /// When the flusher waits to let one flush cover more commits.
    pub flush: crate::flusher::FlushPolicy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: 256 * 1024 * 1024,
            lock_wait: std::time::Duration::from_secs(10),
            flush: crate::flusher::FlushPolicy::default(),
        }
    }
}

pub(crate) enum BatchOp {
    Put {
        tree: Tree,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        tree: Tree,
        key: Vec<u8>,
    },
    /// Precondition: the key currently holds exactly `value` (`None`: absent).
    Expect {
        tree: Tree,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
}

/// Writes that land together or not at all, across any record kinds.
#[derive(Default)]
pub struct WriteBatch {
    pub(crate) ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn put<R: Record>(&mut self, key: impl AsRef<[u8]>, record: &R) -> Result<&mut Self, StoreError> {
        let value = codec::encode(record)?;
        self.ops.push(BatchOp::Put { tree: R::TREE, key: key.as_ref().to_vec(), value });
        Ok(self)
    }

    pub fn put_raw(&mut self, tree: Tree, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Put { tree, key: key.as_ref().to_vec(), value: value.into() });
        self
    }

    pub fn delete(&mut self, tree: Tree, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::Delete { tree, key: key.as_ref().to_vec() });
        self
    }

    /// The commit fails with [`StoreError::Conflict`] unless `key` is absent.
    pub fn expect_absent(&mut self, tree: Tree, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(BatchOp::Expect { tree, key: key.as_ref().to_vec(), value: None });
        self
    }

    /// The commit fails with [`StoreError::Conflict`] unless `key` holds `value`.
    pub fn expect_raw(&mut self, tree: Tree, key: impl AsRef<[u8]>, value: Option<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Expect { tree, key: key.as_ref().to_vec(), value });
        self
    }

    /// Appends every op of `other`.
    pub fn extend(&mut self, other: WriteBatch) -> &mut Self {
        self.ops.extend(other.ops);
        self
    }
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Every record, under its kind's prefix byte ([`Tree::id`]).
    records: sled::Tree,
    pipeline: std::sync::Arc<Pipeline>,
    flusher: Flusher,
}

/// sled on `dir`, waiting up to `config.lock_wait` for the dir's file lock
/// (polled; any other error at once).
fn open_sled(dir: &Path, config: &StoreConfig) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + config.lock_wait;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_capacity_bytes)
            // Durability comes from the flusher; sled's own timer flush is off.
            .flush_every_ms(None)
            .open();
        match opened {
            // sled reports the held lock as an `Other` I/O error with this text.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Io(format!(
                        "the data dir {} is locked by another process: {e}",
                        dir.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, migrating an older layout first.
    /// Only one process may hold it.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Store, StoreError> {
        let db = open_sled(dir, config)?;
        let records = layout::open_records(&db)?;
        let flusher = Flusher::start(db.clone(), config.flush);
        let pipeline = std::sync::Arc::new(Pipeline::new(records.clone(), flusher.clone()));
        Ok(Store { db, records, pipeline, flusher })
    }

    pub fn get<R: Record>(&self, key: impl AsRef<[u8]>) -> Result<Option<R>, StoreError> {
        match self.records.get(R::TREE.key(key.as_ref()))? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The record and its exact stored bytes (for compare-and-set).
    pub fn get_with_bytes<R: Record>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<(R, Vec<u8>)>, StoreError> {
        match self.records.get(R::TREE.key(key.as_ref()))? {
            Some(bytes) => Ok(Some((codec::decode(&bytes)?, bytes.to_vec()))),
            None => Ok(None),
        }
    }

    pub fn get_raw(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.get(tree.key(key.as_ref()))?.map(|v| v.to_vec()))
    }

    pub fn contains(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.records.contains_key(tree.key(key.as_ref()))?)
    }

    /// Up to `limit` records whose key starts with `prefix`, in key order, starting
    /// after `after` (exclusive) when given. `reverse` walks from the end.
    pub fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StoreError> {
        self.scan_entries(R::TREE, prefix, after, reverse, limit)?
            .into_iter()
            .map(|(key, bytes)| Ok((key, codec::decode(&bytes)?)))
            .collect()
    }

    /// Up to `limit` keys of `tree` starting with `prefix` (see [`Store::scan`]).
    pub fn scan_keys(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.scan_entries(tree, prefix, after, reverse, limit)?.into_iter().map(|(k, _)| k).collect())
    }

    /// Keys (without the kind's prefix) and values, for [`Store::scan`].
    fn scan_entries(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, sled::IVec)>, StoreError> {
        let start = tree.key(prefix);
        let end = prefix_end(&start);
        let end_bound = match &end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        let range = match (after.map(|a| tree.key(a)), reverse) {
            (None, _) => (Bound::Included(start), end_bound),
            (Some(a), false) => (Bound::Excluded(a), end_bound),
            (Some(a), true) => (Bound::Included(start), Bound::Excluded(a)),
        };
        let iter = self.records.range::<Vec<u8>, _>(range);
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if reverse { Box::new(iter.rev()) } else { Box::new(iter) };
        let full_prefix = tree.key(prefix);
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&full_prefix) {
                continue;
            }
            out.push((k[1..].to_vec(), v));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every record of a kind, in key order, decoded lazily. For sweeps and checks.
    pub fn iter<R: Record>(&self) -> impl Iterator<Item = Result<(Vec<u8>, R), StoreError>> + '_ {
        self.records.scan_prefix([R::TREE.id()]).map(|item| {
            let (k, v) = item?;
            Ok((k[1..].to_vec(), codec::decode(&v)?))
        })
    }

    /// Every raw entry of a kind whose key starts with `prefix`.
    pub fn iter_raw(
        &self,
        tree: Tree,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.records.scan_prefix(tree.key(prefix)).map(|item| {
            let (k, v) = item?;
            Ok((k[1..].to_vec(), v.to_vec()))
        })
    }

    /// How many records of the kind there are (walks them: for checks and start-up).
    pub fn len(&self, tree: Tree) -> usize {
        self.records.scan_prefix([tree.id()]).keys().count()
    }

    /// Applies `batch` atomically (all or nothing, across kinds) and returns the
    /// ticket to wait on before acknowledging it. Fails with `Conflict`, writing
    /// nothing, when a precondition does not hold. Commits that arrive together
    /// from several threads are checked in order and written as one sled batch
    /// ([`pipeline`]); when this returns, the write is visible to every reader.
    pub fn commit(&self, batch: WriteBatch) -> Result<FlushTicket, StoreError> {
        if self.flusher.is_poisoned() {
            return Err(StoreError::Poisoned);
        }
        if batch.ops.is_empty() {
            return Ok(self.flusher.ticket());
        }
        self.pipeline.commit(batch)
    }

    /// Writes `value` at `key` unless a value is there that `keep` wants kept;
    /// atomic against concurrent callers and commits. Returns whether it
    /// wrote. The write is *not* flushed on its own: it becomes durable with the
    /// next group flush — any later commit that is waited on covers it, since
    /// sled's log is sequential (used for request nonces, which need no fsync
    /// of their own: a mutating request's effect commits after its nonce).
    pub fn put_unless(
        &self,
        tree: Tree,
        key: impl AsRef<[u8]>,
        value: &[u8],
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<bool, StoreError> {
        let key = tree.key(key.as_ref());
        let _applying = self.pipeline.exclusive();
        if self.records.get(&key)?.as_deref().is_some_and(&keep) {
            return Ok(false);
        }
        self.records.insert(key, value)?;
        Ok(true)
    }

    /// Removes every entry of `tree` under `prefix` for which `expired` holds.
    /// Returns how many went.
    pub fn sweep(
        &self,
        tree: Tree,
        prefix: &[u8],
        expired: impl Fn(&[u8]) -> bool,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for item in self.records.scan_prefix(tree.key(prefix)) {
            let (k, v) = item?;
            if expired(&v) {
                let _applying = self.pipeline.exclusive();
                if self.records.compare_and_swap(&k, Some(v), None::<&[u8]>)?.is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Commits and waits until the batch is durable.
    pub async fn commit_durable(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let ticket = self.commit(batch)?;
        self.flusher.wait(ticket).await
    }

    pub async fn wait_durable(&self, ticket: FlushTicket) -> Result<(), StoreError> {
        self.flusher.wait(ticket).await
    }

    pub fn wait_durable_blocking(&self, ticket: FlushTicket) -> Result<(), StoreError> {
        self.flusher.wait_blocking(ticket)
    }

    /// A ticket covering every write made so far (e.g. before a read is shown).
    pub fn ticket(&self) -> FlushTicket {
        self.flusher.ticket()
    }

    /// Resolves once every commit applied so far is on disk: a reader can see
    /// a commit as soon as it is applied, before its flush, so whatever is
    /// shown outside the process (a reply, a webhook) waits for this first.
    /// At once when nothing is waiting for a flush.
    pub async fn settled(&self) -> Result<(), StoreError> {
        self.flusher.wait(self.pipeline.applied()).await
    }

    /// Flushes synchronously, on the caller's thread (shutdown, tools).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    /// How the commit pipeline has grouped commits so far, read by `/metrics`.
    pub fn commit_stats(&self) -> CommitStats {
        self.pipeline.stats()
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

pub use pipeline::CommitStats;

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests;
