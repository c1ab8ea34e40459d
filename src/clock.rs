//! The service clock (DOMAIN.md §The service clock): real time plus an
//! offset that the sandbox clock helper sets, kept across restarts in the
//! store until cleared. Billing, settlement and object timestamps follow it;
//! signature windows, nonces and timeouts use real time.
//!
//! The clock also keeps its **floor**: the earliest instant it has shown
//! since the data dir was created (its value at the first start, lowered
//! whenever the clock is set back before it). The scheduler fires the cron
//! instants in `(floor, now]` whose runs do not exist yet, so a clock moved
//! back and then forward again over an instant fires that instant's run once
//! (ARCHITECTURE.md, "The service clock may move backwards"). The floor is
//! lowered in the same durable commit as the offset that moved the clock
//! back, so no tick of the scheduler can miss the crossing.

use std::sync::atomic::{AtomicI64, Ordering};

use pelago_actors::ports::Clock;
use pelago_storage::{Store, StoreError, Timestamp, Tree, WriteBatch};

const OFFSET_KEY: &str = "clock_offset_ms";
const FLOOR_KEY: &str = "clock_floor_ms";
/// Where data dirs written before the floor existed kept the first start.
const LEGACY_FLOOR_KEY: &str = "scheduler_epoch_ms";

pub struct ServiceClock {
    offset_ms: AtomicI64,
    floor_ms: AtomicI64,
    /// One move at a time, so two concurrent moves cannot raise the floor.
    moving: tokio::sync::Mutex<()>,
}

fn read_i64(store: &Store, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(store
        .get_raw(Tree::Meta, key)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_be_bytes))
}

impl ServiceClock {
    /// Loads the floor and, in sandbox mode, the offset kept in the store (the
    /// offset exists only in sandbox mode, SANDBOX.md: a live start runs on
    /// real time whatever is stored); on the first start the floor is now,
    /// made durable before the clock is used.
    pub async fn load(store: &Store, sandbox: bool) -> Result<ServiceClock, StoreError> {
        let offset = if sandbox { read_i64(store, OFFSET_KEY)?.unwrap_or(0) } else { 0 };
        let floor = match read_i64(store, FLOOR_KEY)? {
            Some(floor) => floor,
            None => {
                let floor = read_i64(store, LEGACY_FLOOR_KEY)?
                    .unwrap_or_else(|| Timestamp::now_real().plus_ms(offset).unix_ms());
                let mut batch = WriteBatch::new();
                batch.put_raw(Tree::Meta, FLOOR_KEY, floor.to_be_bytes().to_vec());
                store.commit_durable(batch).await?;
                floor
            }
        };
        Ok(ServiceClock {
            offset_ms: AtomicI64::new(offset),
            floor_ms: AtomicI64::new(floor),
            moving: tokio::sync::Mutex::new(()),
        })
    }

    /// Sets the clock to `now` (it runs on from there), durably.
    pub async fn set(&self, store: &Store, now: Timestamp) -> Result<(), StoreError> {
        self.move_to(store, now.unix_ms() - Timestamp::now_real().unix_ms(), now).await
    }

    /// Back to real time, durably.
    pub async fn clear(&self, store: &Store) -> Result<(), StoreError> {
        self.move_to(store, 0, Timestamp::now_real()).await
    }

    /// Commits the new offset and, when the clock lands (`lands_at`, the
    /// instant it shows right after the move) before its floor,
    /// the lowered floor, in one durable batch; then shows both.
    async fn move_to(&self, store: &Store, offset_ms: i64, lands_at: Timestamp) -> Result<(), StoreError> {
        let _one_move = self.moving.lock().await;
        let floor = self.floor_ms().min(lands_at.unix_ms());
        let mut batch = WriteBatch::new();
        if offset_ms == 0 {
            batch.delete(Tree::Meta, OFFSET_KEY);
        } else {
            batch.put_raw(Tree::Meta, OFFSET_KEY, offset_ms.to_be_bytes().to_vec());
        }
        batch.put_raw(Tree::Meta, FLOOR_KEY, floor.to_be_bytes().to_vec());
        store.commit_durable(batch).await?;
        // Floor first: a tick that reads the new time also reads the floor below it.
        self.floor_ms.store(floor, Ordering::SeqCst);
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
        Ok(())
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    /// The earliest instant this clock has shown (see the module doc).
    pub fn floor(&self) -> Timestamp {
        Timestamp(self.floor_ms.load(Ordering::SeqCst))
    }

    fn floor_ms(&self) -> i64 {
        self.floor_ms.load(Ordering::SeqCst)
    }
}

impl Clock for ServiceClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_real().plus_ms(self.offset_ms.load(Ordering::Relaxed))
    }
}
