//! Idempotency-Key (API.md §1) for every POST, PUT, PATCH and DELETE of `/v1`
//! and `/admin/v1`. Keys are scoped per merchant (`admin` for operators).
//!
//! - A stored response for the key: same method, path and body → replayed
//!   with `Idempotent-Replayed: true`, nothing runs; different → 422.
//! - The same key still running in this process → 409 `idempotency_in_progress`.
//! - 2xx and 4xx are stored durably (responses that carry secrets sealed);
//!   5xx are not, so the key can be retried. Kept ≥ 24 h, then swept.
//! - The crash window between an effect and its stored response is closed
//!   where it matters by the handler: creations bind the key to the object in
//!   the same commit (`binding_key`) and re-render that object on a retry.
//! - A handler may store its answer in the commit of its effect instead
//!   ([`AnswerSlot`]: a top-up's final step), saving the commit after it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use parking_lot::Mutex;
use pelago_actors::keys::{self, Index};
use pelago_storage::{Timestamp, Tree, WriteBatch};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    errors::ApiError,
    router::{ApiReply, Caller},
};
use crate::http::state::App;

/// Stored responses are kept at least this long (then swept).
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;
/// At most this many keys may be in flight at once in this process.
const MAX_IN_FLIGHT: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    /// The body, sealed under the master key when it carries secrets.
    pub body: Vec<u8>,
    pub sealed: bool,
    pub created_at_ms: i64,
}

pelago_storage::record!(IdempotencyRecord, Idempotency, 1);

/// Keys running now, by scoped key → fingerprint.
#[derive(Default)]
pub struct InFlight {
    keys: Mutex<HashMap<String, [u8; 32]>>,
}

/// What the layer decided before the handler runs.
pub enum Before {
    /// No key: run as usual.
    Untracked,
    /// Replay this stored answer.
    Replay(ApiReply),
    /// Run, then call [`after`] with this guard.
    Run(Guard),
}

pub struct Guard {
    app: Arc<App>,
    scoped: String,
    fingerprint: [u8; 32],
    seal: bool,
    /// Set once the handler's effect committed the answer ([`AnswerSlot`]).
    stored: Arc<AtomicBool>,
}

/// A running request's stored answer, for its handler to commit with its
/// effect: [`AnswerSlot::stage`] makes the record of a reply (in the effect's
/// commit), [`AnswerSlot::committed`] takes that reply back once the effect
/// is durable, and the layer then stores nothing after it.
#[derive(Clone)]
pub struct AnswerSlot {
    app: Arc<App>,
    scoped: String,
    fingerprint: [u8; 32],
    seal: bool,
    staged: Arc<Mutex<Option<ApiReply>>>,
    stored: Arc<AtomicBool>,
}

impl AnswerSlot {
    /// The writes that store `reply` as this request's answer.
    pub fn stage(&self, reply: ApiReply) -> Result<WriteBatch, ApiError> {
        let mut batch = WriteBatch::new();
        batch.put(
            self.scoped.as_bytes(),
            &record(&self.app, self.fingerprint, self.seal, &self.scoped, &reply),
        )?;
        *self.staged.lock() = Some(reply);
        Ok(batch)
    }

    /// The reply staged, once the commit that carried it is durable (the
    /// caller's effect answered `Ok`): the layer will not store it again.
    pub fn committed(&self) -> Option<ApiReply> {
        let reply = self.staged.lock().take();
        if reply.is_some() {
            self.stored.store(true, Ordering::SeqCst);
        }
        reply
    }
}

impl Guard {
    /// The slot a handler may commit this request's answer through.
    pub fn slot(&self) -> AnswerSlot {
        AnswerSlot {
            app: Arc::clone(&self.app),
            scoped: self.scoped.clone(),
            fingerprint: self.fingerprint,
            seal: self.seal,
            staged: Arc::default(),
            stored: Arc::clone(&self.stored),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.app.idempotency.keys.lock().remove(&self.scoped);
    }
}

fn scope(caller: &Caller) -> Option<String> {
    match caller {
        Caller::Merchant { merchant_id, .. } => Some(merchant_id.to_string()),
        Caller::Operator => Some("admin".into()),
        _ => None,
    }
}

/// `idem/{scope}/{key}`: the key handlers put into their creation commit.
pub fn binding_key(caller: &Caller, key: &str) -> Option<String> {
    scope(caller).map(|scope| Index::IdempotencyBinding { scope, key: key.to_owned() }.text())
}

pub fn validate_key(raw: &str) -> Result<(), ApiError> {
    if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        ));
    }
    Ok(())
}

/// Routes whose answers carry secrets: stored sealed.
fn carries_secrets(route: &str) -> bool {
    matches!(
        route,
        "/admin/v1/merchants"
            | "/admin/v1/merchants/{id}/api-keys"
            | "/admin/v1/merchants/{id}/webhook-secret"
    )
}

pub fn before(
    app: &Arc<App>,
    caller: &Caller,
    key: Option<&str>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    route: &'static str,
) -> Result<Before, ApiError> {
    let Some(key) = key else { return Ok(Before::Untracked) };
    validate_key(key)?;
    let Some(scope) = scope(caller) else { return Ok(Before::Untracked) };
    let scoped = format!("{scope}/{key}");
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n", query.as_bytes(), b"\n", body] {
        hasher.update(part);
    }
    let fingerprint: [u8; 32] = hasher.finalize().into();

    {
        let mut keys = app.idempotency.keys.lock();
        if let Some(running) = keys.get(&scoped) {
            return Err(if *running == fingerprint {
                ApiError::idempotency_in_progress()
            } else {
                mismatch()
            });
        }
        if keys.len() >= MAX_IN_FLIGHT {
            return Err(ApiError::unavailable("too many requests in flight; retry"));
        }
        keys.insert(scoped.clone(), fingerprint);
    }
    let guard = Guard {
        app: Arc::clone(app),
        scoped,
        fingerprint,
        seal: carries_secrets(route),
        stored: Arc::default(),
    };
    // Looked up after registering, so a concurrent first run cannot slip between.
    if let Some(stored) = app.store.get::<IdempotencyRecord>(guard.scoped.as_bytes())? {
        if stored.fingerprint != fingerprint {
            return Err(mismatch());
        }
        let body = if stored.sealed {
            app.sealer.open(&stored.body, &guard.scoped).map_err(|_| ApiError::internal())?
        } else {
            stored.body
        };
        let content_type =
            if stored.content_type == "application/json" { "application/json" } else { "text/plain" };
        let mut reply =
            ApiReply { status: stored.status, body, content_type, headers: stored.headers, file: None };
        reply.headers.push(("idempotent-replayed".into(), "true".into()));
        return Ok(Before::Replay(reply));
    }
    Ok(Before::Run(guard))
}

fn mismatch() -> ApiError {
    ApiError::idempotency_key_mismatch()
}

/// Stores a non-5xx answer durably before it is sent (unless the handler's
/// effect already committed it).
pub async fn after(guard: Guard, reply: &ApiReply) -> Result<(), ApiError> {
    if reply.status >= 500 || guard.stored.load(Ordering::SeqCst) {
        return Ok(());
    }
    let record = record(&guard.app, guard.fingerprint, guard.seal, &guard.scoped, reply);
    let mut batch = WriteBatch::new();
    batch.put(guard.scoped.as_bytes(), &record)?;
    guard.app.store.commit_durable(batch).await?;
    Ok(())
}

/// The stored form of `reply` (its body sealed if `seal`).
fn record(app: &App, fingerprint: [u8; 32], seal: bool, scoped: &str, reply: &ApiReply) -> IdempotencyRecord {
    let body = if seal { app.sealer.seal(&reply.body, scoped) } else { reply.body.clone() };
    IdempotencyRecord {
        fingerprint,
        status: reply.status,
        content_type: reply.content_type.to_owned(),
        headers: reply.headers.clone(),
        body,
        sealed: seal,
        created_at_ms: Timestamp::now_real().unix_ms(),
    }
}

/// Removes stored responses older than the retention, with the binding
/// their creation wrote (`idembind/{scope}/{key}`); returns how many.
pub fn sweep(app: &App) -> usize {
    let cutoff = Timestamp::now_real().unix_ms() - RETENTION_MS - 3600 * 1000;
    let mut removed = 0;
    for item in app.store.iter::<IdempotencyRecord>() {
        let Ok((key, record)) = item else { continue };
        if record.created_at_ms < cutoff {
            let mut batch = WriteBatch::new();
            batch.delete(Tree::Idempotency, &key);
            batch.delete(Tree::Index, [keys::IDEMBIND.as_bytes(), &key].concat());
            if app.store.commit(batch).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}
