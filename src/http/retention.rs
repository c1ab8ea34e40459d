//! Retention of records kept only to be looked at (issue 18 M5): callback
//! receipts (`Tree::Callbacks`, by `received_at`) and webhook delivery
//! attempts (`Tree::Deliveries`, by `at`) older than `PELAGO_RETENTION_SECS`
//! (default 30 days) are removed.
//!
//! A sweeper task walks each table in key order, at most
//! [`MAX_ROWS_PER_PASS`] rows per table per pass, resuming after the last key
//! it read (wrapping around at the end), so a pass is bounded however large
//! the tables are. Passes run every quarter of the window (between 1 s and
//! 60 s), back to back after 1 s while a table has more rows than one pass
//! reads. Attempts of an event still in the outbox are kept: its attempt
//! numbering and the per-event attempt bound read them. Neither table
//! decides an effect (callbacks are idempotent in the actors, deliveries are
//! a log), so removing a row changes nothing but what is shown.

use std::{
    sync::{
        Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use pelago_storage::{Record, Store, StoreError, Timestamp, Tree, WriteBatch};

use super::callbacks::CallbackRecord;
use super::{state::App, webhooks::DeliveryAttempt};

/// Rows of one table one pass reads at most.
pub const MAX_ROWS_PER_PASS: usize = 10_000;
/// Deletions per commit.
const DELETE_CHUNK: usize = 256;

/// Rows removed since start, per table (`/metrics`).
pub static CALLBACKS_SWEPT: AtomicU64 = AtomicU64::new(0);
pub static DELIVERIES_SWEPT: AtomicU64 = AtomicU64::new(0);

/// Where the last pass over a table stopped (`None`: at the start).
#[derive(Default)]
struct Cursor(Option<Vec<u8>>);

/// One bounded pass over the rows of `R` after `cursor`: removes those
/// `expired` says are. Returns how many went and whether the table has more
/// rows after those read.
fn sweep_table<R: Record>(
    store: &Store,
    cursor: &mut Cursor,
    mut expired: impl FnMut(&[u8], &R) -> Result<bool, StoreError>,
) -> Result<(usize, bool), StoreError> {
    let rows = store.scan::<R>(b"", cursor.0.as_deref(), false, MAX_ROWS_PER_PASS)?;
    let more = rows.len() == MAX_ROWS_PER_PASS;
    let mut doomed = Vec::new();
    for (key, record) in &rows {
        if expired(key, record)? {
            doomed.push(key.clone());
        }
    }
    cursor.0 = if more { rows.last().map(|(k, _)| k.clone()) } else { None };
    for chunk in doomed.chunks(DELETE_CHUNK) {
        let mut batch = WriteBatch::new();
        for key in chunk {
            batch.delete(R::TREE, key);
        }
        // Not waited on: a removal lost to a crash is simply redone.
        let _ticket = store.commit(batch)?;
    }
    Ok((doomed.len(), more))
}

/// Starts the sweeper; it stops when the App is dropped.
pub fn spawn(app: Weak<App>, retention_secs: u64) {
    let retention_ms = i64::try_from(retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let tick = Duration::from_millis((retention_secs.saturating_mul(1000) / 4).clamp(1_000, 60_000));
    tokio::spawn(async move {
        let mut callbacks = Cursor::default();
        let mut deliveries = Cursor::default();
        let mut wait = tick;
        loop {
            tokio::time::sleep(wait).await;
            let Some(app) = app.upgrade() else { return };
            let (cb, dl) = (std::mem::take(&mut callbacks), std::mem::take(&mut deliveries));
            let pass = tokio::task::spawn_blocking(move || pass(&app.store, retention_ms, cb, dl)).await;
            wait = tick;
            match pass {
                Ok(Ok(done)) => {
                    (callbacks, deliveries) = (done.callbacks_cursor, done.deliveries_cursor);
                    if done.more {
                        wait = Duration::from_secs(1);
                    }
                    if done.callbacks + done.deliveries > 0 {
                        tracing::debug!(
                            callbacks = done.callbacks,
                            deliveries = done.deliveries,
                            "swept records past retention"
                        );
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "retention sweep failed; retried next pass"),
                Err(_) => tracing::error!("retention sweep panicked; retried next pass"),
            }
        }
    });
}

struct PassDone {
    callbacks: usize,
    deliveries: usize,
    more: bool,
    callbacks_cursor: Cursor,
    deliveries_cursor: Cursor,
}

fn pass(store: &Store, retention_ms: i64, mut cb: Cursor, mut dl: Cursor) -> Result<PassDone, StoreError> {
    let cutoff_ms = Timestamp::now_real().unix_ms().saturating_sub(retention_ms);
    let (callbacks, more_callbacks) =
        sweep_table::<CallbackRecord>(store, &mut cb, |_, r| Ok(r.received_at.unix_ms() < cutoff_ms))?;
    let (deliveries, more_deliveries) = sweep_table::<DeliveryAttempt>(store, &mut dl, |key, a| {
        if a.at.unix_ms() >= cutoff_ms {
            return Ok(false);
        }
        // `{event_id}/{attempt}`: keep the attempts of an event still being delivered.
        let event_id = key.split(|b| *b == b'/').next().unwrap_or(key);
        Ok(!store.contains(Tree::Outbox, event_id)?)
    })?;
    CALLBACKS_SWEPT.fetch_add(callbacks as u64, Ordering::Relaxed);
    DELIVERIES_SWEPT.fetch_add(deliveries as u64, Ordering::Relaxed);
    Ok(PassDone {
        callbacks,
        deliveries,
        more: more_callbacks || more_deliveries,
        callbacks_cursor: cb,
        deliveries_cursor: dl,
    })
}
