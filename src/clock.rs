//! The service clock (DOMAIN.md §The service clock): real time plus an
//! offset that the sandbox clock helper sets, kept across restarts in the
//! store until cleared. Billing, settlement and object timestamps follow it;
//! signature windows, nonces and timeouts use real time.

use std::sync::atomic::{AtomicI64, Ordering};

use pelago_actors::ports::Clock;
use pelago_storage::{Store, StoreError, Timestamp, Tree, WriteBatch};

const OFFSET_KEY: &str = "clock_offset_ms";

pub struct ServiceClock {
    offset_ms: AtomicI64,
}

impl ServiceClock {
    /// Loads the offset kept in the store (0 if none).
    pub fn load(store: &Store) -> Result<ServiceClock, StoreError> {
        let offset = store
            .get_raw(Tree::Meta, OFFSET_KEY)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, i64::from_be_bytes);
        Ok(ServiceClock { offset_ms: AtomicI64::new(offset) })
    }

    /// Real time, no offset: the clock of a live start (SANDBOX.md: the
    /// offset exists only in sandbox mode, so a live start never loads one).
    pub fn real_time() -> ServiceClock {
        ServiceClock { offset_ms: AtomicI64::new(0) }
    }

    /// Sets the clock to `now` (it runs on from there), durably.
    pub async fn set(&self, store: &Store, now: Timestamp) -> Result<(), StoreError> {
        let offset = now.unix_ms() - Timestamp::now_real().unix_ms();
        let mut batch = WriteBatch::new();
        batch.put_raw(Tree::Meta, OFFSET_KEY, offset.to_be_bytes().to_vec());
        store.commit_durable(batch).await?;
        self.offset_ms.store(offset, Ordering::SeqCst);
        Ok(())
    }

    /// Back to real time, durably.
    pub async fn clear(&self, store: &Store) -> Result<(), StoreError> {
        let mut batch = WriteBatch::new();
        batch.delete(Tree::Meta, OFFSET_KEY);
        store.commit_durable(batch).await?;
        self.offset_ms.store(0, Ordering::SeqCst);
        Ok(())
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for ServiceClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_real().plus_ms(self.offset_ms.load(Ordering::Relaxed))
    }
}
