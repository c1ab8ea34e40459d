//! [`App`]: the HTTP front door's state around the flows' [`Core`] — router,
//! idempotency, rate limiters, operator tokens, readiness — and the edge
//! services that run beside it: the webhook dispatcher and the scheduler.
//! It dereferences to its core, so a handler hands `&app` to a flow.

use std::{
    ops::Deref,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use super::router::Router;
use crate::{app::Core, security::tokens::BearerToken};

pub struct App {
    pub core: Arc<Core>,
    pub admin_token: BearerToken,
    pub polyflow_token: BearerToken,
    pub router: Router,
    pub webhooks: super::webhooks::Dispatcher,
    /// The scheduler actor (poked when the service clock moves).
    pub scheduler: std::sync::OnceLock<actix::Addr<crate::jobs::scheduler::Scheduler>>,
    pub idempotency: super::idempotency::InFlight,
    pub rate_limiter: super::ratelimit::RateLimiter,
    /// Per client address, for traffic not authenticated as a merchant.
    pub ip_rate_limiter: super::ratelimit::RateLimiter<super::ratelimit::IpKey>,
    /// Set once start-up is complete.
    pub ready: AtomicBool,
    /// Set when SIGTERM arrives: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    /// The first whole second (real time) after this process started. Merchant
    /// requests signed earlier are refused, and the API is served only from
    /// then on (see `merchant_auth`).
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
