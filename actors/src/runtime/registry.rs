//! Activation on first message, passivation when idle or beyond the live cap.
//!
//! One registry per actor kind; all registries share one [`RegistryCounters`]
//! and one live-actor cap. Slots are kept in LRU order; a [`Lease`] marks a
//! message in flight, and only slots with nothing in flight are passivated.
//! Passivating drops the registry's `Addr`: actix stops an actor once no
//! address to it is left, and its `Supervisor` does not restart it then.

use std::{
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use actix::{Actor, Addr, Context, Supervised};
use parking_lot::Mutex;
use pelago_storage::Timestamp;

use super::{Arbiters, supervision::ActorStats};

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Live actors of all kinds together before the least recently used go.
    pub max_live_actors: usize,
    /// An actor idle this long is passivated by the sweeper.
    pub idle_ms: i64,
    /// How long a `send` may wait for the mailbox and the answer.
    pub send_timeout_ms: u64,
    /// Messages an actor's mailbox holds before senders wait.
    pub mailbox_capacity: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { max_live_actors: 100_000, idle_ms: 600_000, send_timeout_ms: 15_000, mailbox_capacity: 256 }
    }
}

/// Counters shared by every registry (shown by `/debug/v1/actors` and `/metrics`).
#[derive(Default, Debug)]
pub struct RegistryCounters {
    pub live_total: AtomicUsize,
    pub restarts_total: AtomicU64,
    pub passivated_total: AtomicU64,
    pub activated_total: AtomicU64,
}

struct Slot<A: Actor> {
    addr: Addr<A>,
    stats: Arc<ActorStats>,
}

/// Builds a fresh actor for a key; it loads its own state in `started`.
pub type Factory<K, A> = Arc<dyn Fn(K, Arc<ActorStats>) -> A + Send + Sync>;

pub struct Registry<K, A: Actor> {
    name: &'static str,
    slots: Mutex<lru::LruCache<K, Slot<A>>>,
    live: AtomicUsize,
    factory: Factory<K, A>,
    arbiters: Arbiters,
    config: RegistryConfig,
    counters: Arc<RegistryCounters>,
}

/// A message in flight to one actor: holds the address and keeps the actor
/// from being passivated until dropped.
pub struct Lease<A: Actor> {
    pub addr: Addr<A>,
    pub stats: Arc<ActorStats>,
}

impl<A: Actor> Drop for Lease<A> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<K, A> Registry<K, A>
where
    K: Hash + Eq + Clone + Send + 'static,
    A: Actor<Context = Context<A>> + Supervised,
{
    pub fn new(
        name: &'static str,
        arbiters: Arbiters,
        config: RegistryConfig,
        counters: Arc<RegistryCounters>,
        factory: Factory<K, A>,
    ) -> Self {
        Registry {
            name,
            slots: Mutex::new(lru::LruCache::unbounded()),
            live: AtomicUsize::new(0),
            factory,
            arbiters,
            config,
            counters,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub fn counters(&self) -> &Arc<RegistryCounters> {
        &self.counters
    }

    /// Live actors of this kind.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The address of `key`'s actor, activating it if it is not live. An actor
    /// that died (its address disconnected) is replaced and counted as a restart.
    pub fn lease(&self, key: &K) -> Lease<A> {
        let mut evicted = Vec::new();
        let lease = {
            let mut slots = self.slots.lock();
            if let Some(slot) = slots.get(key) {
                if slot.addr.connected() {
                    slot.stats.in_flight.fetch_add(1, Ordering::AcqRel);
                    return Lease { addr: slot.addr.clone(), stats: Arc::clone(&slot.stats) };
                }
                // Died outside a handler's panic guard: restart from the store.
                let dead = slots.pop(key).expect("slot seen above");
                dead.stats.restarts.fetch_add(1, Ordering::Relaxed);
                self.counters.restarts_total.fetch_add(1, Ordering::Relaxed);
                self.forget_one();
                let stats = dead.stats;
                stats.in_flight.store(0, Ordering::Release);
                let lease = self.activate_locked(&mut slots, key, stats);
                self.evict_over_cap_locked(&mut slots, &mut evicted);
                lease
            } else {
                let lease = self.activate_locked(&mut slots, key, Arc::new(ActorStats::new()));
                self.evict_over_cap_locked(&mut slots, &mut evicted);
                lease
            }
        };
        drop(evicted); // addresses dropped outside the lock
        lease
    }

    fn activate_locked(
        &self,
        slots: &mut lru::LruCache<K, Slot<A>>,
        key: &K,
        stats: Arc<ActorStats>,
    ) -> Lease<A> {
        let factory = Arc::clone(&self.factory);
        let (k, s) = (key.clone(), Arc::clone(&stats));
        let capacity = self.config.mailbox_capacity;
        let addr = actix::Supervisor::start_in_arbiter(self.arbiters.pick(), move |ctx: &mut Context<A>| {
            ctx.set_mailbox_capacity(capacity);
            factory(k, s)
        });
        stats.in_flight.fetch_add(1, Ordering::AcqRel);
        let lease = Lease { addr: addr.clone(), stats: Arc::clone(&stats) };
        slots.put(key.clone(), Slot { addr, stats });
        self.live.fetch_add(1, Ordering::Relaxed);
        self.counters.live_total.fetch_add(1, Ordering::Relaxed);
        self.counters.activated_total.fetch_add(1, Ordering::Relaxed);
        lease
    }

    fn forget_one(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.counters.live_total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Passivates least-recently-used idle slots while all kinds together are over the cap.
    fn evict_over_cap_locked(&self, slots: &mut lru::LruCache<K, Slot<A>>, evicted: &mut Vec<Slot<A>>) {
        while self.counters.live_total.load(Ordering::Relaxed) > self.config.max_live_actors {
            let victim = slots
                .iter()
                .rev()
                .find(|(_, slot)| slot.stats.in_flight.load(Ordering::Acquire) == 0)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(slot) = slots.pop(&victim) {
                evicted.push(slot);
                self.forget_one();
                self.counters.passivated_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Passivates every slot idle for longer than the configured period, and
    /// trims to the cap. Called periodically by the runtime's sweeper.
    pub fn sweep(&self) -> usize {
        let cutoff = Timestamp::now_real().unix_ms() - self.config.idle_ms;
        let mut evicted = Vec::new();
        {
            let mut slots = self.slots.lock();
            let idle: Vec<K> = slots
                .iter()
                .rev()
                .take_while(|(_, s)| s.stats.last_message_at_ms.load(Ordering::Relaxed) < cutoff)
                .filter(|(_, s)| s.stats.in_flight.load(Ordering::Acquire) == 0)
                .map(|(k, _)| k.clone())
                .collect();
            for key in idle {
                if let Some(slot) = slots.pop(&key) {
                    evicted.push(slot);
                    self.forget_one();
                    self.counters.passivated_total.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.evict_over_cap_locked(&mut slots, &mut evicted);
        }
        evicted.len()
    }

    /// Passivates `key` now if it is live with nothing in flight (a batch job
    /// that activated it is done with it). Returns whether it went.
    pub fn passivate(&self, key: &K) -> bool {
        let slot = {
            let mut slots = self.slots.lock();
            if slots.peek(key).is_none_or(|s| s.stats.in_flight.load(Ordering::Acquire) != 0) {
                return false;
            }
            let slot = slots.pop(key).expect("peeked above");
            self.forget_one();
            self.counters.passivated_total.fetch_add(1, Ordering::Relaxed);
            slot
        };
        drop(slot); // the address is dropped outside the lock
        true
    }

    /// The live slot's counters, if `key` is live (does not activate).
    pub fn stats_of(&self, key: &K) -> Option<Arc<ActorStats>> {
        self.slots.lock().peek(key).map(|s| Arc::clone(&s.stats))
    }

    /// Sum of queued messages over all live actors of this kind.
    pub fn mailbox_depth(&self) -> usize {
        self.slots.lock().iter().map(|(_, s)| s.stats.mailbox_len()).sum()
    }

    /// Drops every slot (shutdown): actors stop once their mailboxes drain.
    pub fn clear(&self) {
        let drained: Vec<_> = {
            let mut slots = self.slots.lock();
            let n = slots.len();
            self.live.fetch_sub(n, Ordering::Relaxed);
            self.counters.live_total.fetch_sub(n, Ordering::Relaxed);
            let mut out = Vec::with_capacity(n);
            while let Some((_, slot)) = slots.pop_lru() {
                out.push(slot);
            }
            out
        };
        drop(drained);
    }
}
