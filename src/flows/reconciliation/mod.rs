//! Daily reconciliation files (MARKETPLACE.md §10): for each local day D at
//! the marketplace offset, every merchant gets a txt and an xlsx file of the
//! postings of its §8 entries booked on D.
//!
//! A run is one record per date (`Tree::ReconciliationRuns`): asking again
//! returns the same run; a run a crash interrupted is resumed by the next
//! trigger (the scheduler's, at start). A run walks the merchants a page at a
//! time; for each it writes both files (`writers.rs`, streamed from the
//! `mkt/` index, `rows.rs`) into `<data_dir>/reconciliation/{date}/` and then
//! commits, once, the `rcnfile/{date}/{merchant}` row with the
//! `reconciliation.ready` event. Only a merchant with that row is served its
//! files, and a merchant that has it is skipped by every later pass: a file is
//! built once and never changed. The run's totals are summed from those rows.

pub mod keys;
pub mod rows;
pub mod writers;

use std::{path::PathBuf, sync::Arc};

use chrono::NaiveDate;
use pelago_actors::{
    merchant::MerchantRecord,
    outbox::{self, EventObject, ReconciliationReady},
};
use pelago_storage::{MerchantId, ReconciliationRunId, Timestamp, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use self::{keys::Key, writers::Paths};
use crate::{app::Core, config::marketplace::day_bounds, flows::Error};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationRun {
    pub id: ReconciliationRunId,
    /// The local day, `YYYY-MM-DD`.
    pub date: String,
    pub completed: bool,
    /// Merchants whose files of the day are built, and their rows (set when completed).
    pub merchants: u64,
    pub rows: u64,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

pelago_storage::record!(ReconciliationRun, ReconciliationRuns, 1);

/// The run of `date`, if it was ever started.
pub fn get(app: &Core, date: NaiveDate) -> Result<Option<ReconciliationRun>, Error> {
    Ok(app.store.get::<ReconciliationRun>(Key::Run { date }.encode())?)
}

/// Starts (or returns) the run of the local day `date` and runs it in the
/// background. A day not over yet on the service clock is refused.
pub async fn trigger(app: &Arc<Core>, date: NaiveDate) -> Result<ReconciliationRun, Error> {
    let key = Key::Run { date }.encode();
    if let Some(run) = get(app, date)? {
        if !run.completed {
            spawn(app, date);
        }
        return Ok(run);
    }
    let now = app.clock.now();
    if now < day_bounds(date, app.config.marketplace_utc_offset).1 {
        return Err(Error::invalid_state(format!(
            "the day {key} at UTC{} is not over yet on the service clock",
            app.config.marketplace_utc_offset
        )));
    }
    let run = ReconciliationRun {
        id: ReconciliationRunId::generate(),
        date: key.clone(),
        completed: false,
        merchants: 0,
        rows: 0,
        started_at: now,
        completed_at: None,
    };
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::ReconciliationRuns, &key);
    batch.put(&key, &run)?;
    let run = commit_run(app, date, batch, run).await?;
    spawn(app, date);
    Ok(run)
}

/// Commits `batch`, which writes `run` fenced on what was read: the run as
/// written, or, when another pass wrote it first, the run as that pass left it.
async fn commit_run(
    app: &Core,
    date: NaiveDate,
    batch: WriteBatch,
    run: ReconciliationRun,
) -> Result<ReconciliationRun, Error> {
    match app.store.commit_durable(batch).await {
        Ok(()) => Ok(run),
        Err(pelago_storage::StoreError::Conflict { .. }) => get(app, date)?.ok_or_else(Error::internal),
        Err(e) => Err(e.into()),
    }
}

fn spawn(app: &Arc<Core>, date: NaiveDate) {
    let running = format!("reconciliation/{date}");
    if !app.jobs_running.try_start(&running) {
        return; // already running in this process
    }
    let app = Arc::clone(app);
    tokio::spawn(async move {
        if let Err(e) = run(&app, date).await {
            tracing::error!(%date, error = %e, "reconciliation run failed; it resumes at the next trigger or start");
        }
        app.jobs_running.finish(&running);
    });
}

/// Merchants read per page of a run.
const PAGE: usize = 256;

/// Builds the files of every merchant that has none for `date` yet, then
/// completes the run. A merchant created after the day ended has no day `date`
/// (nothing of it can be dated then): it gets no file, whenever the run is made.
pub async fn run(app: &Arc<Core>, date: NaiveDate) -> Result<ReconciliationRun, Error> {
    let (_, day_end) = day_bounds(date, app.config.marketplace_utc_offset);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let merchants = app.store.scan::<MerchantRecord>(b"", after.as_deref(), false, PAGE)?;
        let Some((last, _)) = merchants.last() else { break };
        after = Some(last.clone());
        for (_, merchant) in merchants.into_iter().filter(|(_, m)| m.created_at < day_end) {
            build(app, date, merchant.id).await?;
        }
    }
    complete(app, date).await
}

/// The folder of a day's files.
fn day_dir(app: &Core, date: NaiveDate) -> PathBuf {
    app.config.data_dir.join("reconciliation").join(Key::Run { date }.encode())
}

/// Builds one merchant's files of `date` unless they are built; commits their
/// row and `reconciliation.ready` once.
pub async fn build(app: &Arc<Core>, date: NaiveDate, merchant: MerchantId) -> Result<(), Error> {
    let file_key = Key::File { date, merchant: merchant.clone() }.encode();
    if app.store.contains(Tree::Index, &file_key)? {
        return Ok(());
    }
    let paths = Paths::new(&day_dir(app, date), merchant.as_str());
    let core = Arc::clone(app);
    let of = merchant.clone();
    let rows = tokio::task::spawn_blocking(move || {
        let offset = core.config.marketplace_utc_offset;
        writers::write_both(&paths, |sink| rows::for_each_row(&core.store, &of, date, offset, sink))
    })
    .await
    .map_err(|_| Error::internal())??;
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::Index, &file_key);
    batch.put_raw(Tree::Index, &file_key, rows.to_string().into_bytes());
    let ready = ReconciliationReady { merchant_id: merchant.clone(), date: Key::Run { date }.encode(), rows };
    outbox::stage(
        &mut batch,
        &merchant,
        "reconciliation.ready",
        EventObject::Reconciliation(Box::new(ready)),
        app.clock.now(),
    )?;
    match app.store.commit_durable(batch).await {
        Ok(()) | Err(pelago_storage::StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sums the day's file rows and marks the run completed, once (fenced on the run's bytes).
async fn complete(app: &Core, date: NaiveDate) -> Result<ReconciliationRun, Error> {
    let key = Key::Run { date }.encode();
    let (mut run, seen) = app.store.get_with_bytes::<ReconciliationRun>(&key)?.ok_or_else(Error::internal)?;
    if run.completed {
        return Ok(run);
    }
    run.merchants = 0;
    run.rows = 0;
    for row in app.store.iter_raw(Tree::Index, Key::FilesOf { date }.encode().as_bytes()) {
        let (_, value) = row?;
        let rows: u64 = std::str::from_utf8(&value).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        run.merchants = run.merchants.checked_add(1).ok_or_else(Error::internal)?;
        run.rows = run.rows.checked_add(rows).ok_or_else(Error::internal)?;
    }
    run.completed = true;
    run.completed_at = Some(app.clock.now());
    let mut batch = WriteBatch::new();
    batch.expect_raw(Tree::ReconciliationRuns, &key, Some(seen));
    batch.put(&key, &run)?;
    let run = commit_run(app, date, batch, run).await?;
    tracing::info!(%date, merchants = run.merchants, rows = run.rows, "reconciliation run completed");
    Ok(run)
}

/// A merchant's built files of `date`, if they are built.
pub fn files(app: &Core, merchant: &MerchantId, date: NaiveDate) -> Result<Option<Paths>, Error> {
    let built = app.store.contains(Tree::Index, Key::File { date, merchant: merchant.clone() }.encode())?;
    Ok(built.then(|| Paths::new(&day_dir(app, date), merchant.as_str())))
}

/// When the job builds the files of `date`: the first reconciliation cron
/// instant after the day ends, in local time (`2026-11-24 10:00 +08:00`).
pub fn ready_at(app: &Core, date: NaiveDate) -> String {
    let offset = app.config.marketplace_utc_offset;
    let end = day_bounds(date, offset).1.to_datetime();
    crate::config::parse_cron(&app.config.reconciliation_cron)
        .ok()
        .and_then(|cron| cron.find_next_occurrence(&end, true).ok())
        .map(|at| at.with_timezone(&offset).format("%Y-%m-%d %H:%M %:z").to_string())
        .unwrap_or_else(|| "the next reconciliation run".to_owned())
}

/// The local day whose files the job builds at `instant`: the day before it.
pub fn day_for_instant(app: &Core, instant: Timestamp) -> Option<NaiveDate> {
    crate::config::marketplace::local_date(instant, app.config.marketplace_utc_offset).pred_opt()
}

#[cfg(test)]
mod tests;
