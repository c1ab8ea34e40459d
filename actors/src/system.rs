//! The running actor system: registries per actor kind over a set of arbiters,
//! one shared live-actor cap, the passivation sweeper, and `ask_*` helpers
//! that bound every `send` with a timeout.
//!
//! Must be started inside an actix `System` (see `src/main.rs`: the System runs
//! on a multi-thread tokio runtime so warp and the scheduler share it).

use std::{sync::Arc, time::Duration};

use actix::{Handler, Message};
use pelago_storage::{CardId, MerchantId, RecipientId, Store};

use crate::{
    card::{CardActor, CardDeps},
    error::ActorError,
    merchant::{MerchantActor, MerchantDeps},
    ports::{ChannelDirectory, NoChannels, SharedClock},
    recipient::{RecipientActor, RecipientDeps},
    runtime::{Arbiters, Registry, RegistryConfig, RegistryCounters},
};

#[derive(Clone)]
pub struct SystemConfig {
    pub registry: RegistryConfig,
    /// Arbiter threads actors are spread over.
    pub arbiters: usize,
    /// Where card actors find their channel's adapter.
    pub channels: Arc<dyn ChannelDirectory>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            registry: RegistryConfig::default(),
            arbiters: SystemConfig::default_arbiters(),
            channels: Arc::new(NoChannels),
        }
    }
}

impl SystemConfig {
    /// Arbiter threads for this machine: four per core (at least 4, at most
    /// 32). An actor's commit holds its arbiter's thread until the commit
    /// pipeline has applied it; commits from several threads at once are
    /// merged into one sled batch, so more threads than cores mean larger
    /// groups, not more CPU.
    pub fn default_arbiters() -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (cores * 4).clamp(4, 32)
    }
}

pub struct Actors {
    pub store: Store,
    pub clock: SharedClock,
    pub counters: Arc<RegistryCounters>,
    pub cards: Registry<CardId, CardActor>,
    pub merchants: Registry<MerchantId, MerchantActor>,
    pub recipients: Registry<RecipientId, RecipientActor>,
    send_timeout: Duration,
}

impl Actors {
    /// Starts the arbiters and registries and the sweeper. Call inside an actix System.
    pub fn start(store: Store, clock: SharedClock, config: SystemConfig) -> Arc<Actors> {
        let arbiters = Arbiters::start(config.arbiters);
        let counters = Arc::new(RegistryCounters::default());
        let card_deps = Arc::new(CardDeps {
            store: store.clone(),
            clock: clock.clone(),
            counters: Arc::clone(&counters),
            channels: Arc::clone(&config.channels),
        });
        let cards = Registry::new(
            "cards",
            arbiters.clone(),
            config.registry.clone(),
            Arc::clone(&counters),
            Arc::new(move |id, stats| CardActor::new(id, Arc::clone(&card_deps), stats)),
        );
        let merchant_deps = Arc::new(MerchantDeps {
            store: store.clone(),
            clock: clock.clone(),
            counters: Arc::clone(&counters),
        });
        let merchants = Registry::new(
            "merchants",
            arbiters.clone(),
            config.registry.clone(),
            Arc::clone(&counters),
            Arc::new(move |id, stats| MerchantActor::new(id, Arc::clone(&merchant_deps), stats)),
        );
        let recipient_deps = Arc::new(RecipientDeps {
            store: store.clone(),
            clock: clock.clone(),
            counters: Arc::clone(&counters),
        });
        let recipients = Registry::new(
            "recipients",
            arbiters.clone(),
            config.registry.clone(),
            Arc::clone(&counters),
            Arc::new(move |id, stats| RecipientActor::new(id, Arc::clone(&recipient_deps), stats)),
        );
        let actors = Arc::new(Actors {
            store,
            clock,
            counters,
            cards,
            merchants,
            recipients,
            send_timeout: Duration::from_millis(config.registry.send_timeout_ms),
        });
        spawn_sweeper(Arc::downgrade(&actors), config.registry.idle_ms);
        actors
    }

    /// Sends `msg` to card `id`'s actor (activating it) and waits, bounded.
    pub async fn ask_card<M>(&self, id: &CardId, msg: M) -> Result<M::Result, ActorError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        CardActor: Handler<M>,
    {
        let lease = self.cards.lease(id);
        let answer = lease.addr.send(msg).timeout(self.send_timeout).await;
        drop(lease);
        Ok(answer?)
    }

    /// Sends `msg` to merchant `id`'s actor (activating it) and waits, bounded.
    pub async fn ask_merchant<M>(&self, id: &MerchantId, msg: M) -> Result<M::Result, ActorError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        MerchantActor: Handler<M>,
    {
        let lease = self.merchants.lease(id);
        let answer = lease.addr.send(msg).timeout(self.send_timeout).await;
        drop(lease);
        Ok(answer?)
    }

    /// Sends `msg` to recipient `id`'s actor (activating it) and waits, bounded.
    pub async fn ask_recipient<M>(&self, id: &RecipientId, msg: M) -> Result<M::Result, ActorError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        RecipientActor: Handler<M>,
    {
        let lease = self.recipients.lease(id);
        let answer = lease.addr.send(msg).timeout(self.send_timeout).await;
        drop(lease);
        Ok(answer?)
    }

    /// Live actors of every kind.
    pub fn live_total(&self) -> usize {
        self.counters.live_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Passivates everything (shutdown).
    pub fn stop_all(&self) {
        self.cards.clear();
        self.merchants.clear();
        self.recipients.clear();
    }
}

fn spawn_sweeper(actors: std::sync::Weak<Actors>, idle_ms: i64) {
    let every = Duration::from_millis((idle_ms / 4).clamp(100, 30_000) as u64);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(actors) = actors.upgrade() else { return };
            let passivated = actors.cards.sweep() + actors.merchants.sweep() + actors.recipients.sweep();
            if passivated > 0 {
                tracing::debug!(passivated, "passivated idle actors");
            }
        }
    });
}
