//! Group commit: one thread flushes sled for everybody.
//!
//! A writer commits (sled keeps it in memory), then takes a [`FlushTicket`]
//! numbered after its write. The flusher thread wakes when tickets are waiting,
//! notes the highest ticket taken so far, calls `flush()` (one fsync of sled's
//! log covers every tree), and publishes that number. A writer waits until the
//! published number reaches its ticket: by then its write was on disk, because
//! the ticket was taken after the write and the flush started after the ticket.
//! Concurrent writers therefore share fsyncs instead of paying one each.
//!
//! sled's `flush_async` deadlocks with many flushes in flight (sled #1308), so it
//! is never used; `flush()` runs on this dedicated thread only.
//!
//! Under load the flusher waits a moment before each flush ([`FlushPolicy`],
//! PostgreSQL's `commit_delay` with `commit_siblings`): when the previous
//! flush covered several tickets, more writers are committing, and one
//! flush a little later covers more of them. Each flush seals and writes a
//! log buffer and waits for the disk (`sync_file_range`), which costs CPU
//! here (a virtualized disk), so fewer, fuller flushes leave more of the two
//! cores to the writers. A lone writer (one ticket per flush) never waits.

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::StoreError;

/// When the flusher waits before a flush (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushPolicy {
    /// How long it waits; zero never waits.
    pub delay: Duration,
    /// It waits only when the previous flush covered at least this many tickets.
    pub busy_after: u64,
}

impl FlushPolicy {
    /// Whether to wait before the next flush, after one that covered `covered` tickets.
    pub(crate) fn waits(&self, covered: u64) -> bool {
        !self.delay.is_zero() && covered >= self.busy_after
    }
}

impl Default for FlushPolicy {
    /// 1 ms after a flush that covered 4 tickets or more: measured with
    /// `cargo bench --bench durable_writes` (BENCHMARKS.md, issue 17).
    fn default() -> Self {
        FlushPolicy { delay: Duration::from_millis(1), busy_after: 4 }
    }
}

/// Proof that a write was handed to the store; await it with [`Flusher::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "a write is not durable until its ticket has been waited on"]
pub struct FlushTicket(pub(crate) u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Published {
    flushed: u64,
    poisoned: bool,
}

/// Flush statistics, read by `/metrics`.
#[derive(Default)]
pub struct FlushStats {
    pub flushes: AtomicU64,
    pub flush_micros_total: AtomicU64,
    pub flush_micros_max: AtomicU64,
    /// Flushes that first waited out the flush delay ([`FlushPolicy`]).
    pub delayed: AtomicU64,
    /// Histogram of flush latency, buckets in [`FLUSH_BUCKETS_MICROS`].
    pub buckets: [AtomicU64; FLUSH_BUCKETS_MICROS.len()],
}

pub const FLUSH_BUCKETS_MICROS: [u64; 8] = [250, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 250_000];

struct Shared {
    requested: AtomicU64,
    closed: AtomicBool,
    /// Set by writers, cleared by the flusher when it starts a flush. Only
    /// the writer that sets it wakes the flusher: the rest of a burst costs
    /// no lock and no futex call.
    pending: AtomicBool,
    wake: Mutex<()>,
    wake_cv: Condvar,
    published: watch::Sender<Published>,
    stats: FlushStats,
}

#[derive(Clone)]
pub struct Flusher {
    shared: Arc<Shared>,
    _guard: Arc<StopOnDrop>,
}

/// Stops and joins the flusher thread when the last handle goes, so that the
/// thread's handle on the database (and sled's file lock) is released at once.
struct StopOnDrop {
    shared: Arc<Shared>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.pending.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake_cv.notify_one();
        }
        if let Some(handle) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Flusher {
    /// Starts the flusher thread for `db`. It stops when the last `Flusher` is dropped.
    pub(crate) fn start(db: sled::Db, policy: FlushPolicy) -> Flusher {
        let (published, _) = watch::channel(Published { flushed: 0, poisoned: false });
        let shared = Arc::new(Shared {
            requested: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            wake: Mutex::new(()),
            wake_cv: Condvar::new(),
            published,
            stats: FlushStats::default(),
        });
        let thread_shared = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("pelago-flusher".into())
            .spawn(move || flush_loop(db, thread_shared, policy))
            .expect("spawn the flusher thread");
        let guard = Arc::new(StopOnDrop { shared: Arc::clone(&shared), thread: Mutex::new(Some(handle)) });
        Flusher { shared, _guard: guard }
    }

    /// A ticket covering every write made before this call.
    pub fn ticket(&self) -> FlushTicket {
        let n = self.shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
        // SeqCst: if `pending` was already set, the flusher has not cleared
        // it yet, and it reads `requested` (so sees `n`) only after clearing.
        if !self.shared.pending.swap(true, Ordering::SeqCst) {
            // Taking the lock orders this notify after the flusher's check.
            let _guard = self.shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake_cv.notify_one();
        }
        FlushTicket(n)
    }

    /// The newest ticket issued so far, without asking for a flush.
    pub(crate) fn issued(&self) -> FlushTicket {
        FlushTicket(self.shared.requested.load(Ordering::SeqCst))
    }

    /// Whether the write behind `ticket` is on disk now.
    pub fn is_durable(&self, ticket: FlushTicket) -> bool {
        self.shared.published.borrow().flushed >= ticket.0
    }

    /// Resolves once the write behind `ticket` is on disk.
    pub async fn wait(&self, ticket: FlushTicket) -> Result<(), StoreError> {
        let mut rx = self.shared.published.subscribe();
        let state =
            rx.wait_for(|p| p.poisoned || p.flushed >= ticket.0).await.map_err(|_| StoreError::Poisoned)?;
        if state.flushed >= ticket.0 { Ok(()) } else { Err(StoreError::Poisoned) }
    }

    /// Blocking form of [`Flusher::wait`], for threads outside any runtime.
    pub fn wait_blocking(&self, ticket: FlushTicket) -> Result<(), StoreError> {
        let mut rx = self.shared.published.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            if state.flushed >= ticket.0 {
                return Ok(());
            }
            if state.poisoned {
                return Err(StoreError::Poisoned);
            }
            // Short park; the flusher publishes within one fsync.
            thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn stats(&self) -> &FlushStats {
        &self.shared.stats
    }

    pub fn is_poisoned(&self) -> bool {
        self.shared.published.borrow().poisoned
    }
}

fn flush_loop(db: sled::Db, shared: Arc<Shared>, policy: FlushPolicy) {
    // The newest ticket the last flush covered, and how many it covered.
    let (mut last_target, mut last_covered) = (0u64, 0u64);
    loop {
        {
            let mut guard = shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            // `closed` too: the flush delay below clears `pending`, and with it
            // a close that arrived during the delay.
            while !shared.pending.load(Ordering::SeqCst) && !shared.closed.load(Ordering::SeqCst) {
                guard = shared.wake_cv.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            shared.pending.store(false, Ordering::SeqCst);
        }
        if shared.closed.load(Ordering::SeqCst) {
            let _ = db.flush();
            return;
        }
        if policy.waits(last_covered) {
            // A close cuts the delay short (a store is never held open by it).
            let guard = shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            shared.stats.delayed.fetch_add(1, Ordering::SeqCst);
            let closed = |_: &mut ()| !shared.closed.load(Ordering::SeqCst);
            drop(shared.wake_cv.wait_timeout_while(guard, policy.delay, closed));
            // The tickets taken meanwhile are covered by this flush (`target` is read below).
            shared.pending.store(false, Ordering::SeqCst);
        }
        let target = shared.requested.load(Ordering::SeqCst);
        (last_covered, last_target) = (target - last_target, target);
        let started = Instant::now();
        let result = db.flush();
        let micros = started.elapsed().as_micros() as u64;
        record(&shared.stats, micros);
        match result {
            Ok(_) => {
                shared.published.send_modify(|p| p.flushed = p.flushed.max(target));
            }
            Err(error) => {
                tracing::error!(%error, "sled flush failed; refusing to acknowledge further writes");
                shared.published.send_modify(|p| p.poisoned = true);
                return;
            }
        }
    }
}

fn record(stats: &FlushStats, micros: u64) {
    stats.flushes.fetch_add(1, Ordering::Relaxed);
    stats.flush_micros_total.fetch_add(micros, Ordering::Relaxed);
    stats.flush_micros_max.fetch_max(micros, Ordering::Relaxed);
    for (i, bound) in FLUSH_BUCKETS_MICROS.iter().enumerate() {
        if micros <= *bound {
            stats.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}
