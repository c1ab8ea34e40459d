//! Supervision helpers. A panic inside a message is caught where the message is
//! handled: that caller gets `Unavailable` (503), the actor is stopped and its
//! actix `Supervisor` restarts it, and `Supervised::restarting` reloads the
//! state from the store — in-memory state that was not durable is dropped,
//! queued messages stay in the mailbox and are handled by the restarted actor.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
};

use pelago_storage::Timestamp;

/// Per-actor counters, shared between the actor and its registry slot.
#[derive(Debug)]
pub struct ActorStats {
    pub activated_at_ms: AtomicI64,
    pub last_message_at_ms: AtomicI64,
    pub messages_handled: AtomicU64,
    pub restarts: AtomicU64,
    /// Messages sent and not yet answered (queued + the one being handled).
    pub in_flight: AtomicUsize,
}

impl ActorStats {
    pub fn new() -> Self {
        let now = Timestamp::now_real().unix_ms();
        ActorStats {
            activated_at_ms: AtomicI64::new(now),
            last_message_at_ms: AtomicI64::new(now),
            messages_handled: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Called at the start of every message.
    pub fn touch(&self) {
        self.messages_handled.fetch_add(1, Ordering::Relaxed);
        self.last_message_at_ms.store(Timestamp::now_real().unix_ms(), Ordering::Relaxed);
    }

    /// Messages waiting behind the one being handled.
    pub fn mailbox_len(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed).saturating_sub(1)
    }
}

impl Default for ActorStats {
    fn default() -> Self {
        Self::new()
    }
}

/// A message handler panicked. The panic payload is not kept: it could carry
/// anything, and the caller only needs to know it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Runs `f`, turning a panic into `Err(Panicked)`.
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| Panicked)
}
