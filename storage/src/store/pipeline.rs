//! Group commit of atomic batches: the commits that arrive together from many
//! threads (actors on their arbiters, flows on tokio's workers) are written as
//! **one** sled `apply_batch`, which is atomic within the one records tree.
//!
//! sled pays about the same per key whatever the call, plus a fixed cost per
//! atomic write (its global write lock, pinning the log, sealing one batch);
//! merging the changes of one moment into one batch pays the fixed cost once.
//!
//! How a commit goes (a combining queue, as in LevelDB's write group):
//! 1. The caller appends its change to the queue and, if no thread is
//!    applying, becomes the leader; otherwise it waits for its result.
//! 2. The leader takes the queue (at most [`MAX_GROUP`] changes), and under the
//!    apply lock checks each change's preconditions, in arrival order, against
//!    the store **plus the changes ahead of it in the group** (an overlay of the
//!    group's writes so far). A change whose precondition fails gets
//!    `Conflict` and writes nothing; the others go into one `sled::Batch`.
//! 3. The leader applies the batch, publishes every result, and hands over:
//!    the first waiter whose change is still queued leads the next group.
//!
//! A commit therefore returns only once its write is applied (readers see it),
//! with the same all-or-nothing and compare-and-set meaning as a transaction
//! of its own. Durability is the flusher's: the group's ticket is taken after
//! the apply, under the apply lock, so [`Pipeline::applied`] covers every
//! write a reader can see. The queue holds at most one change per blocked thread, so it is
//! bounded by the number of threads.

use std::{
    collections::HashMap,
    sync::{
        Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{BatchOp, WriteBatch};
use crate::{
    StoreError,
    flusher::{FlushTicket, Flusher},
};

/// The most changes one sled batch carries; a longer queue is applied in turns.
pub const MAX_GROUP: usize = 1024;

/// How commits have been grouped so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Changes applied or refused.
    pub commits: u64,
    /// sled batches written (one per group).
    pub groups: u64,
    /// The most changes one group carried.
    pub largest_group: u64,
}

pub(crate) struct Pipeline {
    records: sled::Tree,
    flusher: Flusher,
    queue: Mutex<Queue>,
    turn: Condvar,
    /// Held while a group is checked and applied, and by the few writes that
    /// bypass the queue (`put_unless`, `sweep`): nothing lands between a
    /// group's check and its apply.
    applying: Mutex<()>,
    commits: AtomicU64,
    groups: AtomicU64,
    largest_group: AtomicU64,
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    waiting: Vec<(u64, WriteBatch)>,
    results: HashMap<u64, Result<FlushTicket, StoreError>>,
    leading: bool,
}

impl Pipeline {
    pub(crate) fn new(records: sled::Tree, flusher: Flusher) -> Pipeline {
        Pipeline {
            records,
            flusher,
            queue: Mutex::new(Queue::default()),
            turn: Condvar::new(),
            applying: Mutex::new(()),
            commits: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            largest_group: AtomicU64::new(0),
        }
    }

    /// Commits `batch` with whatever else is queued; returns once it is applied
    /// (or refused, writing nothing), with the ticket of its durability.
    pub(crate) fn commit(&self, batch: WriteBatch) -> Result<FlushTicket, StoreError> {
        let mut queue = lock(&self.queue);
        let id = queue.next_id;
        queue.next_id += 1;
        queue.waiting.push((id, batch));
        loop {
            if let Some(result) = queue.results.remove(&id) {
                return result;
            }
            if queue.leading {
                queue = self.turn.wait(queue).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            queue.leading = true;
            let take = queue.waiting.len().min(MAX_GROUP);
            let group: Vec<_> = queue.waiting.drain(..take).collect();
            drop(queue);
            let ids: Vec<u64> = group.iter().map(|(id, _)| *id).collect();
            // If applying panics, every change of the group is answered (as
            // failed) and leadership is released, so no waiter hangs.
            let mut handover = Handover { pipeline: self, ids, results: None };
            handover.results = Some(self.apply_group(group));
            drop(handover);
            queue = lock(&self.queue);
        }
    }

    /// A ticket covering every group applied so far. Taken under the apply
    /// lock: a group's ticket is issued before that lock is released, so no
    /// applied write is missing from it.
    pub(crate) fn applied(&self) -> FlushTicket {
        let _applying = self.exclusive();
        self.flusher.issued()
    }

    /// The lock that keeps single-key writes out of a group's check-to-apply window.
    pub(crate) fn exclusive(&self) -> MutexGuard<'_, ()> {
        lock(&self.applying)
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            largest_group: self.largest_group.load(Ordering::Relaxed),
        }
    }

    /// Checks each change against the store plus the group's writes ahead of
    /// it, and applies the accepted ones as one sled batch.
    pub(super) fn apply_group(
        &self,
        group: Vec<(u64, WriteBatch)>,
    ) -> Vec<(u64, Result<FlushTicket, StoreError>)> {
        let _applying = self.exclusive();
        let mut overlay: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut results = Vec::with_capacity(group.len());
        for (id, change) in group {
            let verdict = self.check(&change, &overlay);
            if verdict.is_ok() {
                for op in change.ops {
                    match op {
                        BatchOp::Put { tree, key, value } => {
                            let key = tree.key(&key);
                            batch.insert(key.as_slice(), value.as_slice());
                            overlay.insert(key, Some(value));
                        }
                        BatchOp::Delete { tree, key } => {
                            let key = tree.key(&key);
                            batch.remove(key.as_slice());
                            overlay.insert(key, None);
                        }
                        BatchOp::Expect { .. } => {}
                    }
                }
            }
            results.push((id, verdict));
        }
        let applied = self.records.apply_batch(batch);
        self.note_group(results.len() as u64);
        // Issued after the apply, before the apply lock is released (see `applied`).
        let ticket = self.flusher.ticket();
        let mut results: Vec<(u64, Result<FlushTicket, StoreError>)> =
            results.into_iter().map(|(id, verdict)| (id, verdict.map(|()| ticket))).collect();
        if let Err(e) = applied {
            let reason = e.to_string();
            tracing::error!(error = %reason, "a commit group could not be applied; nothing of it was written");
            for (_, result) in &mut results {
                if result.is_ok() {
                    *result = Err(StoreError::Io(reason.clone()));
                }
            }
        }
        results
    }

    /// Every precondition of `change`, against the group's overlay, then the store.
    fn check(
        &self,
        change: &WriteBatch,
        overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        for op in &change.ops {
            let BatchOp::Expect { tree, key, value } = op else { continue };
            let key = tree.key(key);
            let holds = match overlay.get(&key) {
                Some(current) => current.as_deref() == value.as_deref(),
                None => self.records.get(&key)?.as_deref() == value.as_deref(),
            };
            if !holds {
                return Err(StoreError::Conflict { tree: tree.name() });
            }
        }
        Ok(())
    }

    fn note_group(&self, size: u64) {
        self.commits.fetch_add(size, Ordering::Relaxed);
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.largest_group.fetch_max(size, Ordering::Relaxed);
    }
}

/// Publishes a group's results and releases leadership, even on a panic.
struct Handover<'a> {
    pipeline: &'a Pipeline,
    ids: Vec<u64>,
    results: Option<Vec<(u64, Result<FlushTicket, StoreError>)>>,
}

impl Drop for Handover<'_> {
    fn drop(&mut self) {
        let mut queue = lock(&self.pipeline.queue);
        match self.results.take() {
            Some(results) => queue.results.extend(results),
            None => {
                for id in &self.ids {
                    queue.results.insert(*id, Err(StoreError::Io("the commit group failed".into())));
                }
            }
        }
        queue.leading = false;
        self.pipeline.turn.notify_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
