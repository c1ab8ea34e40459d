//! The sled store: one tree per record kind, atomic multi-tree commits with
//! compare-and-set preconditions, and group-committed durability.

use std::path::Path;

use crate::{
    StoreError,
    codec::{self, Record},
    flusher::{FlushTicket, Flusher},
};

macro_rules! trees {
    ($($variant:ident => $name:literal,)*) => {
        /// Every tree of the store. The name is the on-disk identity: never rename one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Tree { $($variant,)* }

        impl Tree {
            pub const ALL: &'static [Tree] = &[$(Tree::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Tree::$variant => $name,)* }
            }
        }
    };
}

trees! {
    Meta => "meta",
    Merchants => "merchants",
    ApiKeys => "api_keys",
    Channels => "channels",
    Bins => "bins",
    Cardholders => "cardholders",
    Cards => "cards",
    Topups => "topups",
    Orders => "orders",
    Transactions => "transactions",
    Withdrawals => "withdrawals",
    Deposits => "deposits",
    Journal => "journal",
    BalanceTxns => "balance_txns",
    Events => "events",
    Outbox => "outbox",
    Deliveries => "deliveries",
    Receipts => "receipts",
    Idempotency => "idempotency",
    Nonces => "nonces",
    Operations => "operations",
    BillingRuns => "billing_runs",
    BillingCharges => "billing_charges",
    SettlementRuns => "settlement_runs",
    Callbacks => "callbacks",
    Files => "files",
    FileContents => "file_contents",
    Recipients => "recipients",
    Onboardings => "onboardings",
    Agreements => "agreements",
    RecipientBalances => "recipient_balances",
    Payments => "payments",
    SplitBatches => "split_batches",
    Refunds => "refunds",
    ReconciliationRuns => "reconciliation_runs",
    RecipientWithdrawals => "recipient_withdrawals",
    Index => "index",
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// sled's page cache, bytes.
    pub cache_capacity_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { cache_capacity_bytes: 256 * 1024 * 1024 }
    }
}

enum BatchOp {
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

/// Writes that land together or not at all, across any trees.
#[derive(Default)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
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

    fn trees(&self) -> Vec<Tree> {
        let mut trees: Vec<Tree> = self
            .ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { tree, .. } | BatchOp::Delete { tree, .. } | BatchOp::Expect { tree, .. } => {
                    *tree
                }
            })
            .collect();
        trees.sort();
        trees.dedup();
        trees
    }
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    flusher: Flusher,
}

impl Store {
    /// Opens (or creates) the store in `dir`. Only one process may hold it.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_capacity_bytes)
            // Durability comes from the flusher; sled's own timer flush is off.
            .flush_every_ms(None)
            .open()?;
        let trees = Tree::ALL.iter().map(|t| db.open_tree(t.name())).collect::<Result<Vec<_>, _>>()?;
        let flusher = Flusher::start(db.clone());
        Ok(Store { db, trees, flusher })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree as usize]
    }

    pub fn get<R: Record>(&self, key: impl AsRef<[u8]>) -> Result<Option<R>, StoreError> {
        match self.tree(R::TREE).get(key)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The record and its exact stored bytes (for compare-and-set).
    pub fn get_with_bytes<R: Record>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<(R, Vec<u8>)>, StoreError> {
        match self.tree(R::TREE).get(key)? {
            Some(bytes) => Ok(Some((codec::decode(&bytes)?, bytes.to_vec()))),
            None => Ok(None),
        }
    }

    pub fn get_raw(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(tree).get(key)?.map(|v| v.to_vec()))
    }

    pub fn contains(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.tree(tree).contains_key(key)?)
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
        let keys = self.scan_keys(R::TREE, prefix, after, reverse, limit)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(bytes) = self.tree(R::TREE).get(&key)? {
                out.push((key, codec::decode(&bytes)?));
            }
        }
        Ok(out)
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
        let t = self.tree(tree);
        let mut out = Vec::new();
        let end = prefix_end(prefix);
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match (after, reverse) {
            (None, false) => Box::new(t.scan_prefix(prefix)),
            (None, true) => Box::new(t.scan_prefix(prefix).rev()),
            (Some(a), false) => Box::new(match &end {
                Some(e) => t.range::<&[u8], _>((
                    std::ops::Bound::Excluded(a),
                    std::ops::Bound::Excluded(e.as_slice()),
                )),
                None => t.range::<&[u8], _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            }),
            (Some(a), true) => Box::new(
                t.range::<&[u8], _>((std::ops::Bound::Included(prefix), std::ops::Bound::Excluded(a))).rev(),
            ),
        };
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                continue;
            }
            out.push(k.to_vec());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every record of a tree, in key order, decoded lazily. For sweeps and checks.
    pub fn iter<R: Record>(&self) -> impl Iterator<Item = Result<(Vec<u8>, R), StoreError>> + '_ {
        self.tree(R::TREE).iter().map(|item| {
            let (k, v) = item?;
            Ok((k.to_vec(), codec::decode(&v)?))
        })
    }

    /// Every raw entry of a tree whose key starts with `prefix`.
    pub fn iter_raw(
        &self,
        tree: Tree,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.tree(tree).scan_prefix(prefix).map(|item| {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        })
    }

    pub fn len(&self, tree: Tree) -> usize {
        self.tree(tree).len()
    }

    /// Applies `batch` atomically (all or nothing, across trees) and returns the
    /// ticket to wait on before acknowledging it. Fails with `Conflict`, writing
    /// nothing, when a precondition does not hold.
    pub fn commit(&self, batch: WriteBatch) -> Result<FlushTicket, StoreError> {
        if self.flusher.is_poisoned() {
            return Err(StoreError::Poisoned);
        }
        if batch.ops.is_empty() {
            return Ok(self.flusher.ticket());
        }
        let trees = batch.trees();
        let has_expect = batch.ops.iter().any(|op| matches!(op, BatchOp::Expect { .. }));
        if trees.len() == 1 && !has_expect {
            let mut sled_batch = sled::Batch::default();
            for op in &batch.ops {
                match op {
                    BatchOp::Put { key, value, .. } => sled_batch.insert(key.as_slice(), value.as_slice()),
                    BatchOp::Delete { key, .. } => sled_batch.remove(key.as_slice()),
                    BatchOp::Expect { .. } => unreachable!("checked above"),
                }
            }
            self.tree(trees[0]).apply_batch(sled_batch)?;
            return Ok(self.flusher.ticket());
        }
        let handles: Vec<&sled::Tree> = trees.iter().map(|t| self.tree(*t)).collect();
        let slot = |tree: Tree| trees.binary_search(&tree).expect("tree collected from the batch");
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
        let result = handles.as_slice().transaction(|tx_trees| {
            for op in &batch.ops {
                if let BatchOp::Expect { tree, key, value } = op {
                    let current = tx_trees[slot(*tree)].get(key)?;
                    if current.as_deref() != value.as_deref() {
                        return Err(ConflictableTransactionError::Abort(tree.name()));
                    }
                }
            }
            for op in &batch.ops {
                match op {
                    BatchOp::Put { tree, key, value } => {
                        tx_trees[slot(*tree)].insert(key.as_slice(), value.as_slice())?;
                    }
                    BatchOp::Delete { tree, key } => {
                        tx_trees[slot(*tree)].remove(key.as_slice())?;
                    }
                    BatchOp::Expect { .. } => {}
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(self.flusher.ticket()),
            Err(TransactionError::Abort(tree)) => Err(StoreError::Conflict { tree }),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Writes `value` at `key` unless a value is there that `keep` wants kept;
    /// atomic against concurrent callers (compare-and-swap). Returns whether it
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
        let t = self.tree(tree);
        let key = key.as_ref();
        loop {
            let current = t.get(key)?;
            if current.as_deref().is_some_and(&keep) {
                return Ok(false);
            }
            match t.compare_and_swap(key, current, Some(value))? {
                Ok(()) => return Ok(true),
                Err(_) => continue, // raced; look again
            }
        }
    }

    /// Removes every entry of `tree` under `prefix` for which `expired` holds.
    /// Returns how many went.
    pub fn sweep(
        &self,
        tree: Tree,
        prefix: &[u8],
        expired: impl Fn(&[u8]) -> bool,
    ) -> Result<usize, StoreError> {
        let t = self.tree(tree);
        let mut removed = 0;
        for item in t.scan_prefix(prefix) {
            let (k, v) = item?;
            if expired(&v) && t.compare_and_swap(&k, Some(v), None::<&[u8]>)?.is_ok() {
                removed += 1;
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

    /// Flushes synchronously, on the caller's thread (shutdown, tools).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

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
