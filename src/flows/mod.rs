//! The flows: sagas across actors (card, merchant) and upstreams, each step
//! durable before the next, each with a `resolve_pending` pass that the
//! resolver (`server/mod.rs`) runs to finish what a crash or an unknown upstream
//! answer left. They take the core (`Core`: store, actors, clock, upstreams,
//! sealer, config) and return [`Error`]; they never import `crate::http`
//! (`tests/layering.rs` checks it): the HTTP layer calls them and maps
//! [`Error`] to API.md §1 in `http/errors.rs`.

pub mod billing;
pub mod bootstrap;
pub mod callback_rules;
pub mod cardholders;
pub mod cards;
pub mod channel_confirm;
pub mod channels;
pub mod error;
pub mod marketplace;
pub mod money;
pub mod orders;
pub mod reconciliation;
pub mod settlement;
pub mod topups;
pub mod withdrawals;

pub use error::Error;

use crate::app;

/// A record stored under its own id (`raw`, an `I`) that `mine` accepts as
/// the asking merchant's: a malformed id, a missing record and another
/// merchant's all answer the same 404 naming `what`.
pub fn load_owned<I, R>(
    core: &app::Core,
    what: &str,
    raw: &str,
    mine: impl FnOnce(&R) -> bool,
) -> Result<R, Error>
where
    I: std::str::FromStr + AsRef<[u8]>,
    R: pelago_storage::Record,
{
    let id = raw.parse::<I>().map_err(|_| Error::not_found(what))?;
    core.store.get::<R>(id)?.filter(mine).ok_or_else(|| Error::not_found(what))
}

/// How a recovery marker's value records when its operation began.
#[derive(Debug, Clone, Copy)]
pub enum Started {
    /// The value is the start alone: 8 bytes, big-endian Unix ms.
    BigEndianMs,
    /// The value is `{id} {start ms}[ ...]` (top-up and order markers).
    AfterFirstWord,
}

impl Started {
    fn read(self, value: &[u8]) -> Option<i64> {
        match self {
            Started::BigEndianMs => value.get(..8)?.try_into().ok().map(i64::from_be_bytes),
            Started::AfterFirstWord => std::str::from_utf8(value).ok()?.split(' ').nth(1)?.parse().ok(),
        }
    }
}

/// Every resolver pass reads its markers here: the rows of `Tree::Operations`
/// under `prefix` whose operation began at least `grace_ms` ago (real time),
/// at most [`MARKERS_PER_PASS`] a pass, as (the parsed key, the value). A
/// value whose start cannot be read is due (never stuck); a key that does not
/// parse is skipped.
pub fn due_markers<K: pelago_actors::keys::Key>(
    core: &app::Core,
    prefix: &str,
    started: Started,
    grace_ms: i64,
) -> Result<Vec<(K, Vec<u8>)>, Error> {
    let now = pelago_storage::Timestamp::now_real().unix_ms();
    markers_where(core, prefix, |value| {
        started.read(value).is_none_or(|at| now.saturating_sub(at) >= grace_ms)
    })
}

/// The markers under `prefix` that wait on nothing (due at once), as
/// [`due_markers`] reads them.
pub fn markers<K: pelago_actors::keys::Key>(
    core: &app::Core,
    prefix: &str,
) -> Result<Vec<(K, Vec<u8>)>, Error> {
    markers_where(core, prefix, |_| true)
}

/// [`markers`] whose value the pass does not need: the parsed keys alone.
pub fn marker_keys<K: pelago_actors::keys::Key>(core: &app::Core, prefix: &str) -> Result<Vec<K>, Error> {
    Ok(markers(core, prefix)?.into_iter().map(|(key, _)| key).collect())
}

fn markers_where<K: pelago_actors::keys::Key>(
    core: &app::Core,
    prefix: &str,
    due: impl Fn(&[u8]) -> bool,
) -> Result<Vec<(K, Vec<u8>)>, Error> {
    let mut found = Vec::new();
    for row in core.store.iter_raw(pelago_storage::Tree::Operations, prefix.as_bytes()).take(MARKERS_PER_PASS)
    {
        let (key, value) = row?;
        if due(&value) {
            found.extend(K::parse(&key).map(|k| (k, value)));
        }
    }
    Ok(found)
}

/// How many markers of one prefix a resolver pass reads at most.
pub const MARKERS_PER_PASS: usize = 256;

/// How long a marker waits before the resolver acts on it: the upstream
/// timeout (the request that wrote it may still be waiting on it) plus 1 s.
pub fn grace_ms(core: &app::Core) -> i64 {
    core.config.upstream_timeout_ms as i64 + 1000
}

/// Removes one recovery marker, durably (its work is done).
pub async fn clear_marker(core: &app::Core, key: Vec<u8>) -> Result<(), Error> {
    let mut batch = pelago_storage::WriteBatch::new();
    batch.delete(pelago_storage::Tree::Operations, key);
    core.store.commit_durable(batch).await?;
    Ok(())
}
