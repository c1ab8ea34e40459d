//! The actor runtime: arbiters, the registries that activate and passivate
//! actors, supervision, and the bookkeeping the debug API shows.
//!
//! Architecture invariant: an actor is reachable only through its registry, and
//! the registry never passivates an actor that has a message in flight, so at
//! most one live actor exists per id. The store's compare-and-set on the
//! record's bytes fences the rare stale writer anyway (see `card::actor`).

mod entity;
mod registry;
mod supervision;

pub(crate) use entity::durable_handler;
pub use entity::{EntityCell, InspectReply};

pub use registry::{Lease, Registry, RegistryConfig, RegistryCounters};
pub use supervision::{ActorStats, catch_panic};

use actix::ArbiterHandle;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// The arbiters (threads with their own event loop) actors are spread over.
#[derive(Clone)]
pub struct Arbiters {
    handles: Arc<Vec<ArbiterHandle>>,
    next: Arc<AtomicUsize>,
}

impl Arbiters {
    /// Starts `count` arbiters. Must run inside an actix `System`.
    pub fn start(count: usize) -> Arbiters {
        let handles = (0..count.max(1)).map(|_| actix::Arbiter::new().handle()).collect();
        Arbiters { handles: Arc::new(handles), next: Arc::new(AtomicUsize::new(0)) }
    }

    /// Round-robin placement.
    pub fn pick(&self) -> &ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}
