//! [`Core`]: what the flows run on — the store, the actors, the clocks, the
//! upstreams, the sealer, the configuration and the jobs' bookkeeping. It
//! knows nothing of HTTP, webhooks or schedules: the front door's state
//! around it is `http::App`, which dereferences to it, so a handler hands
//! `&app` to a flow.

use std::sync::Arc;

use pelago_actors::{ports::SharedClock, system::Actors};
use pelago_storage::Store;

use crate::{config::Config, metrics::Metrics, security::secrets::Sealer};

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
    /// Jobs (billing periods, settlement dates, reconciliation days) being run by this process.
    pub jobs_running: RunningJobs,
    pub receipts: crate::receipts::ReceiptKey,
}

/// Jobs being run by this process, by key, so one job never runs twice at once.
#[derive(Default)]
pub struct RunningJobs(parking_lot::Mutex<std::collections::HashSet<String>>);

impl RunningJobs {
    /// Marks `key` running; false if it already was.
    pub fn try_start(&self, key: &str) -> bool {
        self.0.lock().insert(key.to_owned())
    }

    pub fn finish(&self, key: &str) {
        self.0.lock().remove(key);
    }
}

impl Core {
    pub fn sandbox(&self) -> bool {
        self.config.sandbox
    }
}
