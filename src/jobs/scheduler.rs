//! The scheduler actor: fires monthly billing, daily settlement and the daily
//! reconciliation files (MARKETPLACE.md §10) on the service clock.
//!
//! tokio-cron-scheduler ticks it every second (real time); on each tick the
//! actor reads the service clock and triggers, for each cron instant in
//! `(floor, now]` (the newest 12 billing periods, 31 settlement days and 31
//! reconciliation instants), that period's billing run, that date's settlement
//! run or the reconciliation run of the local day before the instant, unless it
//! exists and is completed. So moving the service clock past a cron instant fires the job,
//! a start-up after downtime catches up the periods and days it missed, a run
//! a crash interrupted is resumed, and a clock set back (which lowers the
//! floor, `clock.rs`) and then forward again over an instant fires that
//! instant's run if it does not exist yet. The floor never rises above the
//! service's first start, so nothing before it is billed. Triggering is
//! idempotent: a period or date has one run, ever.
//!
//! It lives in the binary because the runs it fires are driven from here
//! (`billing.rs`, `settlement.rs`); it only sends triggers.

use std::sync::{Arc, Weak};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture};
use pelago_storage::Timestamp;

use crate::{
    app::Core,
    flows::{billing, reconciliation, settlement},
};

pub struct Scheduler {
    core: Weak<Core>,
    billing: croner::Cron,
    settlement: croner::Cron,
    reconciliation: croner::Cron,
    busy: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Stops the scheduler (at shutdown, before the actors stop): no run is
/// fired after it; one being fired is dropped between its durable steps and
/// resumed by the next start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Scheduler {
    type Result = ();
    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;
}

impl Scheduler {
    /// Starts the actor and its one-second tick.
    pub async fn start(app: &Arc<Core>) -> anyhow::Result<actix::Addr<Scheduler>> {
        let scheduler = Scheduler {
            core: Arc::downgrade(app),
            billing: crate::config::parse_cron(&app.config.billing_cron).map_err(anyhow::Error::msg)?,
            settlement: crate::config::parse_cron(&app.config.settlement_cron).map_err(anyhow::Error::msg)?,
            reconciliation: crate::config::parse_cron(&app.config.reconciliation_cron)
                .map_err(anyhow::Error::msg)?,
            busy: false,
        };
        let addr = scheduler.start();
        let ticker = addr.clone();
        let jobs = tokio_cron_scheduler::JobScheduler::new().await?;
        jobs.add(tokio_cron_scheduler::Job::new_async("* * * * * *", move |_, _| {
            let ticker = ticker.clone();
            Box::pin(async move {
                ticker.do_send(Tick);
            })
        })?)
        .await?;
        jobs.start().await?;
        addr.do_send(Tick); // catch up at once
        // The job scheduler runs for the life of the process.
        std::mem::forget(jobs);
        Ok(addr)
    }
}

/// Instants of `cron` in `(after, now]`, newest last, at most `max`.
fn instants(cron: &croner::Cron, after: Timestamp, now: Timestamp, max: usize) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut at = now.to_datetime();
    while out.len() < max {
        let Ok(prev) = cron.find_previous_occurrence(&at, true) else { break };
        let ts = Timestamp(prev.timestamp_millis());
        if ts <= after {
            break;
        }
        out.push(ts);
        at = prev - chrono::Duration::seconds(1);
    }
    out.reverse();
    out
}

/// The crons the scheduler fires.
#[derive(Clone)]
struct Crons {
    billing: croner::Cron,
    settlement: croner::Cron,
    reconciliation: croner::Cron,
}

async fn fire(app: Arc<Core>, crons: Crons) {
    // The floor before the time: a clock moved back lowers its floor first.
    let floor = app.service_clock.floor();
    let now = app.clock.now();
    // Billing: the period of each due instant (a month), oldest first.
    for instant in instants(&crons.billing, floor.plus_ms(-1), now, 12) {
        let period = billing::period_of(instant);
        let done =
            app.store.get::<billing::BillingRun>(period.as_str()).ok().flatten().is_some_and(|r| r.completed);
        if !done {
            // A new run, or one a crash interrupted: trigger creates or resumes it.
            if let Err(e) = billing::trigger(&app, &period, Some(instant)).await {
                tracing::warn!(period, error = %e, "scheduler: billing trigger failed");
            }
        }
    }
    // Settlement: the date of each due instant (a day), oldest first.
    for instant in instants(&crons.settlement, floor.plus_ms(-1), now, 31) {
        let date = instant.to_datetime().format("%Y-%m-%d").to_string();
        let done = app
            .store
            .get::<settlement::SettlementRun>(date.as_str())
            .ok()
            .flatten()
            .is_some_and(|r| r.completed);
        if !done && let Err(e) = settlement::trigger(&app, &date).await {
            tracing::warn!(date, error = %e, "scheduler: settlement trigger failed");
        }
    }
    // Reconciliation: the local day before each due instant, oldest first.
    for instant in instants(&crons.reconciliation, floor.plus_ms(-1), now, 31) {
        let Some(date) = reconciliation::day_for_instant(&app, instant) else { continue };
        let done = reconciliation::get(&app, date).ok().flatten().is_some_and(|r| r.completed);
        if !done && let Err(e) = reconciliation::trigger(&app, date).await {
            tracing::warn!(%date, error = %e, "scheduler: reconciliation trigger failed");
        }
    }
}

impl Handler<Tick> for Scheduler {
    type Result = ();
    fn handle(&mut self, _msg: Tick, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(app) = self.core.upgrade() else { return };
        self.busy = true;
        let crons = Crons {
            billing: self.billing.clone(),
            settlement: self.settlement.clone(),
            reconciliation: self.reconciliation.clone(),
        };
        ctx.spawn(
            async move { fire(app, crons).await }
                .into_actor(self)
                .map(|(), act: &mut Scheduler, _| act.busy = false),
        );
    }
}
