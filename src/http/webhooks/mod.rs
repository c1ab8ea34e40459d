//! The webhook dispatcher (SECURITY.md §Webhooks, API.md §4 Events): drains
//! the durable outbox the actors write in the same commit as each change, and
//! POSTs every event to its merchant's `webhook_url` as a Standard Webhooks v1
//! message (headers and signature in [`signature`], one attempt in
//! [`delivery`]).
//!
//! **Shape: tokio tasks, not an actix actor.** The dispatcher keeps no entity
//! state that needs a single writer: the durable state is the outbox row of
//! each event, and only the task delivering an event writes that row. A small
//! supervisor task keeps one *scheduler* task alive (restarting it after a
//! panic); the scheduler plans passes over the outbox and spawns one task per
//! attempt.
//!
//! **Rules a pass applies**, walking the outbox in key order (event ids are
//! ULIDs, so oldest first):
//! - one event in flight per object (card, transaction, cardholder), and an
//!   object's later events wait behind its oldest pending one, so an object's
//!   events arrive in `version` order;
//! - at most [`MAX_IN_FLIGHT_PER_MERCHANT`] attempts per merchant and
//!   [`MAX_IN_FLIGHT_TOTAL`] overall, so a slow or dead endpoint holds at most
//!   its own four slots (each bounded by [`ATTEMPT_TIMEOUT`]) and never delays
//!   other merchants;
//! - an entry whose `next_attempt_at_ms` is in the future waits for it.
//!
//! **No busy-spinning.** Between passes the scheduler sleeps until the
//! earliest due retry (at most [`RESCAN_EVERY`]), and wakes early when poked
//! ([`Dispatcher::poke`]: a finished attempt, a redelivery) or when a cheap
//! check every [`NEW_EVENT_POLL`] sees a new newest outbox key (actors stage
//! events without knowing about the dispatcher).
//!
//! **At least once.** An outbox row is deleted (delivered, failed for good,
//! merchant without `webhook_url`) or rescheduled only in the same durable
//! commit that records the attempt (`Tree::Deliveries`,
//! `{event_id}/{attempt:04}`). A crash between the POST and that commit sends
//! the event again after the restart; a graceful shutdown waits for the
//! attempts in flight first ([`Dispatcher::shutdown`]).
//!
//! **Bounds.** Attempts per run: 1 + the retry schedule (then `failed`);
//! attempts per event across redeliveries: [`MAX_ATTEMPTS_PER_EVENT`]; a pass
//! reads at most [`MAX_SCAN_PER_PASS`] outbox rows; the event → object cache
//! holds [`OBJECT_CACHE_ENTRIES`]. A merchant without `webhook_url` gets one
//! recorded "not delivered" attempt and the event leaves the outbox; such
//! events hold no merchant slot: one task at a time records up to
//! [`MAX_SETTLED_PER_PASS`] of them in a few commits.
//! Timestamps of attempts and retries are real time (receivers check
//! `webhook-timestamp` against their own clock), not the sandbox service clock.

pub mod delivery;
pub mod signature;

use std::{
    collections::{HashMap, HashSet},
    num::NonZeroUsize,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use lru::LruCache;
use parking_lot::Mutex;
use pelago_actors::{
    merchant::MerchantRecord,
    outbox::{EventRecord, OutboxEntry, event_key},
};
use pelago_storage::{EventId, MerchantId, StoreError, Timestamp, Tree, WriteBatch};
use serde::{Deserialize, Serialize};
use tokio::{sync::Notify, time::Instant};

use crate::{
    http::state::App,
    security::egress::{EgressPolicy, GuardedResolver, SystemLookup},
};

pub const MAX_IN_FLIGHT_PER_MERCHANT: usize = 4;
pub const MAX_IN_FLIGHT_TOTAL: usize = 64;
/// Any 2xx within this is delivered (SECURITY.md).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts recorded for one event, all runs and redeliveries together.
pub const MAX_ATTEMPTS_PER_EVENT: u32 = 1000;
pub const MAX_SCAN_PER_PASS: usize = 100_000;
/// Events of merchants without a `webhook_url` settled by one task of a pass.
pub const MAX_SETTLED_PER_PASS: usize = 1_024;
pub const OBJECT_CACHE_ENTRIES: usize = 65_536;
pub const RESCAN_EVERY: Duration = Duration::from_secs(30);
pub const NEW_EVENT_POLL: Duration = Duration::from_millis(100);
/// How long a graceful shutdown waits for attempts in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// One recorded attempt (`GET /v1/events/{id}/deliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it was not delivered; `None` when delivered.
    pub error: Option<String>,
    pub at: Timestamp,
}

pelago_storage::record!(DeliveryAttempt, Deliveries, 1);

/// `{event_id}/{attempt:04}`: an event's attempts in order.
pub fn attempt_key(event_id: &EventId, attempt: u32) -> String {
    format!("{event_id}/{attempt:04}")
}

/// The number of the last recorded attempt of `event_id` (0 if none).
pub fn last_attempt(store: &pelago_storage::Store, event_id: &EventId) -> Result<u32, StoreError> {
    let prefix = format!("{event_id}/");
    let last = store.scan_keys(Tree::Deliveries, prefix.as_bytes(), None, true, 1)?;
    Ok(last.first().and_then(|k| std::str::from_utf8(&k[prefix.len()..]).ok()?.parse().ok()).unwrap_or(0))
}

#[derive(Default)]
struct InFlight {
    /// Attempt tasks running (a bulk settlement counts as one).
    total: usize,
    per_merchant: HashMap<MerchantId, usize>,
    objects: HashSet<String>,
    /// Every event some task is working on.
    events: HashSet<EventId>,
    /// A bulk settlement of events without an endpoint is running (one at a time).
    settling: bool,
}

/// A planned attempt: the outbox row as read, and the slots it holds.
pub struct Job {
    pub entry: OutboxEntry,
    /// The row's exact bytes: the outcome is committed only if it is unchanged
    /// (a redelivery that raced the attempt is kept).
    pub entry_bytes: Vec<u8>,
    object: String,
}

pub struct Dispatcher {
    wake: Notify,
    drained: Notify,
    stopping: AtomicBool,
    in_flight: Mutex<InFlight>,
    objects: Mutex<LruCache<EventId, String>>,
    client: reqwest::Client,
    /// Which addresses attempts may connect to (also applied to literal IPs).
    egress: EgressPolicy,
    retry_schedule_ms: Vec<i64>,
}

impl Dispatcher {
    /// `retry_schedule_secs`: the waits after the 1st, 2nd, ... failed attempt;
    /// `egress`: the addresses an attempt may connect to, checked on the
    /// address resolved at connect time (DNS rebinding), not only when the
    /// URL was set. No proxy: the checked address is the one connected to.
    pub fn new(retry_schedule_secs: &[u64], egress: EgressPolicy) -> Result<Dispatcher, reqwest::Error> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver::new(egress, SystemLookup))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(MAX_IN_FLIGHT_PER_MERCHANT)
            .user_agent("pelago-card-webhooks/1")
            .build()?;
        Ok(Dispatcher {
            wake: Notify::new(),
            drained: Notify::new(),
            stopping: AtomicBool::new(false),
            in_flight: Mutex::new(InFlight::default()),
            objects: Mutex::new(LruCache::new(
                NonZeroUsize::new(OBJECT_CACHE_ENTRIES).expect("a positive cache size"),
            )),
            client,
            egress,
            retry_schedule_ms: retry_schedule_secs.iter().map(|s| *s as i64 * 1000).collect(),
        })
    }

    /// Wakes the scheduler for a pass (new or rescheduled outbox rows).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Attempts in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().total
    }

    /// Stops planning attempts and waits (bounded) for those in flight, so
    /// that no answered attempt is left unrecorded by a graceful shutdown.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let left = self.in_flight();
            if left == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(
                    in_flight = left,
                    "webhook attempts still in flight at shutdown; they will be retried"
                );
                return;
            }
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn release(&self, job: &Job) {
        let mut in_flight = self.in_flight.lock();
        in_flight.total -= 1;
        in_flight.objects.remove(&job.object);
        in_flight.events.remove(&job.entry.event_id);
        if let Some(n) = in_flight.per_merchant.get_mut(&job.entry.merchant_id) {
            *n -= 1;
            if *n == 0 {
                in_flight.per_merchant.remove(&job.entry.merchant_id);
            }
        }
        drop(in_flight);
        self.drained.notify_waiters();
        self.wake.notify_one();
    }

    fn release_settled(&self, jobs: &[Job]) {
        let mut in_flight = self.in_flight.lock();
        in_flight.total -= 1;
        in_flight.settling = false;
        for job in jobs {
            in_flight.events.remove(&job.entry.event_id);
        }
        drop(in_flight);
        self.drained.notify_waiters();
        self.wake.notify_one();
    }

    /// The object an event is about (its wire id), cached; `None` if the
    /// event record is gone.
    fn object_of(&self, app: &App, entry: &OutboxEntry) -> Result<Option<String>, StoreError> {
        if let Some(object) = self.objects.lock().get(&entry.event_id) {
            return Ok(Some(object.clone()));
        }
        let Some(event) = app.store.get::<EventRecord>(event_key(&entry.merchant_id, &entry.event_id))?
        else {
            return Ok(None);
        };
        let object = object_id(&event);
        self.objects.lock().put(entry.event_id.clone(), object.clone());
        Ok(Some(object))
    }

    /// The outbox row after a failed attempt number `done` of this run:
    /// rescheduled per the schedule, or `None` when the schedule is spent.
    fn after_failure(&self, entry: &OutboxEntry, now: Timestamp) -> Option<OutboxEntry> {
        let wait_ms = self.retry_schedule_ms.get(entry.attempts as usize)?;
        Some(OutboxEntry {
            attempts: entry.attempts + 1,
            next_attempt_at_ms: now.unix_ms().saturating_add(*wait_ms),
            ..entry.clone()
        })
    }
}

/// The id of the object an event is about (its wire `data.object.id`); the
/// event's own id for objects without one (settlements, monthly fees).
fn object_id(event: &EventRecord) -> String {
    use pelago_actors::outbox::EventObject as O;
    match &event.object {
        O::Card(c) => c.id.to_string(),
        O::Transaction(t) => t.id.to_string(),
        O::Cardholder(c) => c.id.to_string(),
        O::BalanceTransaction(t) => t.id.to_string(),
        O::Topup(t) => t.id.to_string(),
        O::Order(o) => o.id.to_string(),
        O::Withdrawal(w) => w.id.to_string(),
        O::Onboarding(o) => o.id.to_string(),
        O::Agreement(a) => a.id.to_string(),
        O::Payment(p) => p.id.to_string(),
        O::SplitBatch(b) => b.id.to_string(),
        O::Refund(r) => r.id.to_string(),
        O::RecipientWithdrawal(w) => w.id.to_string(),
        O::Settlement(_) | O::MonthlyCharge(_) | O::PaymentsSettlement(_) | O::Reconciliation(_) => {
            event.id.to_string()
        }
    }
}

/// Starts the supervised scheduler. Call once, after the App is built.
pub fn spawn(app: &Arc<App>) {
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        loop {
            match tokio::spawn(scheduler(weak.clone())).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    tracing::error!("the webhook scheduler panicked; restarting it in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    });
}

async fn scheduler(weak: Weak<App>) {
    loop {
        let Some(app) = weak.upgrade() else { return };
        if app.webhooks.stopping() {
            return;
        }
        let newest = newest_outbox_key(&app);
        let now_ms = Timestamp::now_real().unix_ms();
        let planned = {
            let app = Arc::clone(&app);
            tokio::task::spawn_blocking(move || plan(&app, now_ms)).await
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return,
        };
        // An event is delivered only once its commit is on disk.
        if app.store.settled().await.is_err() {
            return;
        }
        for job in plan.jobs {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                delivery::run(&app, &job).await;
                app.webhooks.release(&job);
            });
        }
        if !plan.without_endpoint.is_empty() {
            let (app, jobs) = (Arc::clone(&app), plan.without_endpoint);
            tokio::spawn(async move {
                delivery::settle_without_endpoint(&app, &jobs).await;
                app.webhooks.release_settled(&jobs);
            });
        }
        let wait_ms = plan.next_due_ms.map_or(RESCAN_EVERY.as_millis() as i64, |due| {
            (due - now_ms).clamp(10, RESCAN_EVERY.as_millis() as i64)
        });
        wait_for_work(&app, Instant::now() + Duration::from_millis(wait_ms as u64), newest).await;
    }
}

fn newest_outbox_key(app: &App) -> Option<Vec<u8>> {
    app.store.scan_keys(Tree::Outbox, b"", None, true, 1).ok().and_then(|mut keys| keys.pop())
}

/// Sleeps until `deadline`, a poke, or a new newest outbox row.
async fn wait_for_work(app: &App, deadline: Instant, mut newest: Option<Vec<u8>>) {
    loop {
        tokio::select! {
            _ = app.webhooks.wake.notified() => return,
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tokio::time::sleep(NEW_EVENT_POLL) => {
                let now = newest_outbox_key(app);
                if now != newest {
                    if now > newest {
                        return;
                    }
                    // Only removals (deliveries finishing): nothing new to plan.
                    newest = now;
                }
            }
        }
    }
}

struct Plan {
    jobs: Vec<Job>,
    /// Due events of merchants without a `webhook_url`: nothing to send, so
    /// they hold no merchant slot and are recorded together by one task.
    without_endpoint: Vec<Job>,
    /// The earliest `next_attempt_at_ms` still in the future.
    next_due_ms: Option<i64>,
}

/// One pass over the outbox (blocking store reads): reserves slots for the
/// attempts to start now, per the rules of the module docs.
fn plan(app: &App, now_ms: i64) -> Plan {
    let dispatcher = &app.webhooks;
    let mut plan = Plan { jobs: Vec::new(), without_endpoint: Vec::new(), next_due_ms: None };
    if dispatcher.stopping() {
        return plan;
    }
    // Objects whose oldest pending event has been seen in this pass.
    let mut seen_objects: HashSet<String> = HashSet::new();
    // Whether each merchant met in this pass has a webhook_url.
    let mut has_endpoint: HashMap<MerchantId, bool> = HashMap::new();
    let may_settle = !dispatcher.in_flight.lock().settling;
    for item in app.store.iter_raw(Tree::Outbox, b"").take(MAX_SCAN_PER_PASS) {
        let (key, bytes) = match item {
            Ok(kv) => kv,
            Err(error) => {
                tracing::warn!(%error, "webhook pass: reading the outbox failed");
                break;
            }
        };
        let entry = match pelago_storage::decode::<OutboxEntry>(&bytes) {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(%error, key = %String::from_utf8_lossy(&key), "webhook pass: unreadable outbox row skipped");
                continue;
            }
        };
        if dispatcher.in_flight.lock().events.contains(&entry.event_id) {
            continue;
        }
        let endpoint = endpoint_of(app, &mut has_endpoint, &entry.merchant_id);
        if endpoint == Some(false) && entry.next_attempt_at_ms <= now_ms {
            if may_settle && plan.without_endpoint.len() < MAX_SETTLED_PER_PASS {
                plan.without_endpoint.push(Job { entry, entry_bytes: bytes, object: String::new() });
            }
            continue; // else a pass after the running settlement takes it
        }
        let Some(object) = object_or_drop(app, &key, &bytes, &entry) else { continue };
        if !seen_objects.insert(object.clone()) {
            continue; // an older event of the same object goes first
        }
        if entry.next_attempt_at_ms > now_ms {
            plan.next_due_ms =
                Some(plan.next_due_ms.map_or(entry.next_attempt_at_ms, |d| d.min(entry.next_attempt_at_ms)));
            continue;
        }
        match reserve(dispatcher, &entry, &object) {
            Slot::Full => break, // a finishing attempt pokes the scheduler
            Slot::Busy => continue,
            Slot::Taken => plan.jobs.push(Job { entry, entry_bytes: bytes, object }),
        }
    }
    if !plan.without_endpoint.is_empty() {
        let mut in_flight = dispatcher.in_flight.lock();
        in_flight.total += 1;
        in_flight.settling = true;
        in_flight.events.extend(plan.without_endpoint.iter().map(|job| job.entry.event_id.clone()));
    }
    plan
}

/// Whether the merchant has a webhook_url (cached for the pass); `None` when
/// it is gone or unreadable (the attempt path records why).
fn endpoint_of(app: &App, known: &mut HashMap<MerchantId, bool>, merchant: &MerchantId) -> Option<bool> {
    if let Some(known) = known.get(merchant) {
        return Some(*known);
    }
    let merchant = app.store.get::<MerchantRecord>(merchant.as_bytes()).ok()??;
    known.insert(merchant.id.clone(), merchant.webhook_url.is_some());
    Some(merchant.webhook_url.is_some())
}

/// The object an outbox row's event is about; a row whose event is gone is dropped.
fn object_or_drop(app: &App, key: &[u8], bytes: &[u8], entry: &OutboxEntry) -> Option<String> {
    match app.webhooks.object_of(app, entry) {
        Ok(Some(object)) => Some(object),
        Ok(None) => {
            tracing::error!(event_id = %entry.event_id, "outbox row without its event; dropped");
            let mut batch = WriteBatch::new();
            batch.expect_raw(Tree::Outbox, key, Some(bytes.to_vec())).delete(Tree::Outbox, key);
            let _ = app.store.commit(batch);
            None
        }
        Err(error) => {
            tracing::warn!(%error, "webhook pass: reading an event failed");
            None
        }
    }
}

/// What reserving an attempt's slots found.
enum Slot {
    /// Reserved: the attempt may start.
    Taken,
    /// Its object or merchant is at its bound: a later pass takes it.
    Busy,
    /// Every slot is taken: the pass ends.
    Full,
}

fn reserve(dispatcher: &Dispatcher, entry: &OutboxEntry, object: &str) -> Slot {
    let mut in_flight = dispatcher.in_flight.lock();
    if in_flight.total >= MAX_IN_FLIGHT_TOTAL {
        return Slot::Full;
    }
    if in_flight.objects.contains(object)
        || in_flight.per_merchant.get(&entry.merchant_id).is_some_and(|n| *n >= MAX_IN_FLIGHT_PER_MERCHANT)
    {
        return Slot::Busy;
    }
    in_flight.total += 1;
    *in_flight.per_merchant.entry(entry.merchant_id.clone()).or_default() += 1;
    in_flight.objects.insert(object.to_owned());
    in_flight.events.insert(entry.event_id.clone());
    Slot::Taken
}

/// Schedules a new delivery run of `event` now (`POST /v1/events/{id}/redeliver`).
/// A pending run is restarted from its first attempt. Durable on return.
pub async fn redeliver(app: &App, event: &EventRecord) -> Result<(), RedeliverError> {
    if last_attempt(&app.store, &event.id)? >= MAX_ATTEMPTS_PER_EVENT {
        return Err(RedeliverError::TooManyAttempts);
    }
    let entry = OutboxEntry {
        event_id: event.id.clone(),
        merchant_id: event.merchant_id.clone(),
        attempts: 0,
        // Due now, and never byte-equal to a row an attempt in flight read
        // (staged rows hold 0), so that attempt cannot delete this one.
        next_attempt_at_ms: Timestamp::now_real().unix_ms(),
    };
    let mut batch = WriteBatch::new();
    batch.put(event.id.as_str(), &entry)?;
    app.store.commit_durable(batch).await?;
    app.webhooks.poke();
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    #[error("this event already had the maximum number of delivery attempts")]
    TooManyAttempts,
    #[error(transparent)]
    Store(#[from] StoreError),
}
