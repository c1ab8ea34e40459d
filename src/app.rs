//! The application state every handler shares.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use pelago_actors::{ports::SharedClock, system::Actors};
use pelago_storage::Store;

use crate::{
    config::Config,
    http::router::Router,
    metrics::Metrics,
    security::{secrets::Sealer, tokens::BearerToken},
};

pub struct App {
    pub config: Config,
    pub store: Store,
    pub actors: Arc<Actors>,
    pub clock: SharedClock,
    /// The same clock, for the sandbox clock helper.
    pub service_clock: Arc<crate::clock::ServiceClock>,
    pub upstreams: Arc<crate::upstreams::Upstreams>,
    /// Where upstreams call us back (`PELAGO_PUBLIC_BASE_URL` or the bound address).
    pub public_base_url: String,
    pub admin_token: BearerToken,
    pub polyflow_token: BearerToken,
    pub sealer: Sealer,
    pub metrics: Metrics,
    pub router: Router,
    /// Billing periods being run by this process.
    pub billing_running: crate::billing::Running,
    /// The scheduler actor (poked when the service clock moves).
    pub scheduler: std::sync::OnceLock<actix::Addr<crate::jobs::scheduler::Scheduler>>,
    pub idempotency: crate::http::idempotency::InFlight,
    pub rate_limiter: crate::http::ratelimit::RateLimiter,
    /// Per client address, for traffic not authenticated as a merchant.
    pub ip_rate_limiter: crate::http::ratelimit::RateLimiter<crate::http::ratelimit::IpKey>,
    pub webhooks: crate::webhooks::Dispatcher,
    pub receipts: crate::receipts::ReceiptKey,
    /// Set once start-up is complete.
    pub ready: AtomicBool,
    /// Set when SIGTERM arrives: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    /// The first whole second (real time) after this process started. Merchant
    /// requests signed earlier are refused, and the API is served only from
    /// then on (see `merchants::auth`).
    pub signed_from_secs: i64,
}

impl App {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && !self.store.flusher().is_poisoned()
    }

    pub fn sandbox(&self) -> bool {
        self.config.sandbox
    }
}
