//! The state the service shares, in two parts.
//!
//! [`Core`] is what the flows run on: the store, the actors, the clocks, the
//! upstreams, the sealer, the configuration and the jobs' bookkeeping; it
//! knows nothing of HTTP. [`App`] is the HTTP front door's state around it
//! (router, idempotency, rate limiters, operator tokens, readiness) and
//! dereferences to its core, so a handler hands `&app` to a flow.

use std::{
    ops::Deref,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use pelago_actors::{ports::SharedClock, system::Actors};
use pelago_storage::Store;

use crate::{
    config::Config,
    http::router::Router,
    metrics::Metrics,
    security::{secrets::Sealer, tokens::BearerToken},
};

pub struct Core {
    pub config: Config,
    pub store: Store,
    pub actors: Arc<Actors>,
    pub clock: SharedClock,
    /// The same clock, for the sandbox clock helper and the scheduler's floor.
    pub service_clock: Arc<crate::clock::ServiceClock>,
    pub upstreams: Arc<crate::upstreams::Upstreams>,
    /// Where upstreams call us back (`PELAGO_PUBLIC_BASE_URL` or the bound address).
    pub public_base_url: String,
    pub sealer: Sealer,
    pub metrics: Metrics,
    /// Billing periods being run by this process.
    pub billing_running: crate::flows::billing::Running,
    /// The scheduler actor (poked when the service clock moves).
    pub scheduler: std::sync::OnceLock<actix::Addr<crate::jobs::scheduler::Scheduler>>,
    pub webhooks: crate::webhooks::Dispatcher,
    pub receipts: crate::receipts::ReceiptKey,
}

impl Core {
    pub fn sandbox(&self) -> bool {
        self.config.sandbox
    }
}

pub struct App {
    pub core: Arc<Core>,
    pub admin_token: BearerToken,
    pub polyflow_token: BearerToken,
    pub router: Router,
    pub idempotency: crate::http::idempotency::InFlight,
    pub rate_limiter: crate::http::ratelimit::RateLimiter,
    /// Per client address, for traffic not authenticated as a merchant.
    pub ip_rate_limiter: crate::http::ratelimit::RateLimiter<crate::http::ratelimit::IpKey>,
    /// Set once start-up is complete.
    pub ready: AtomicBool,
    /// Set when SIGTERM arrives: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    /// The first whole second (real time) after this process started. Merchant
    /// requests signed earlier are refused, and the API is served only from
    /// then on (see `merchants::auth`).
    pub signed_from_secs: i64,
}

impl Deref for App {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl App {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && !self.store.flusher().is_poisoned()
    }
}
