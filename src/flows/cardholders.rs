//! Cardholder creation and settlement. Written with compare-and-set by this
//! module only; the channel is called outside any actor.
//!
//! Create: validate → route (card name allowed → 403; an active BIN → else 409)
//! → store `pending` with the channel request id (and the Idempotency-Key
//! binding) → call the channel → settle by its answer: approved → `active`,
//! refused → `rejected` (201 either way), pending → stays `pending` until the
//! approve callback, unknown → stays `pending`, answered 202, and the
//! resolver asks the channel by request id until it knows.

use std::sync::Arc;

use pelago_actors::{
    cardholder::{CardholderRecord, CardholderStatus, Identity},
    history::{History, Source},
    merchant::{MerchantRecord, Sealed},
    outbox::{self, EventObject},
    ports::{
        Address, CardholderCreated, ChannelCardholderStatus, ChannelEvent, ChannelOperation,
        CreateCardholder, Outcome,
    },
    routing::BinRecord,
};
use pelago_storage::{CardholderId, ChannelId, MerchantId, StoreError, Tree, WriteBatch, encode};

use crate::{
    app::Core,
    flows::Error,
    keys::{CHDCONFIRM, Context, Index, Marker},
    upstreams::routing_tables,
};

/// A validated creation request.
pub struct NewCardholder {
    pub card_name: String,
    pub reference: Option<String>,
    pub identity: Identity,
    pub id_document_number: String,
    pub address: Address,
}

fn context(id: &CardholderId) -> String {
    Context::Cardholder { cardholder: id.clone(), field: "id_document".into() }.text()
}

/// Whether the HTTP answer is final (201) or still unknown (202).
pub struct Created {
    pub record: CardholderRecord,
    pub settled: bool,
}

pub async fn create(
    app: &Core,
    merchant: &MerchantRecord,
    new: NewCardholder,
    binding: Option<String>,
) -> Result<Created, Error> {
    if let Some(b) = &binding
        && let Some(id) = app.store.get_raw(Tree::Index, b)?
    {
        // An earlier attempt with this Idempotency-Key created it.
        let record = app.store.get::<CardholderRecord>(&id)?.ok_or_else(Error::internal)?;
        let settled = !record.outcome_unknown;
        return Ok(Created { record, settled });
    }
    if !merchant.allowed_card_names.contains(&new.card_name) {
        return Err(Error::forbidden(format!(
            "card_name {} is not allowed for this merchant",
            new.card_name
        )));
    }
    let (bins, channels) = routing_tables(&app.store)?;
    let bin = pelago_actors::routing::route(&bins, &channels, &new.card_name)
        .ok_or_else(|| Error::invalid_state(format!("no active BIN serves {}", new.card_name)))?
        .clone();
    let id_document_number = new.id_document_number.clone();
    let record = new_record(app, merchant, &bin, new);
    commit_new(app, &record, binding).await?;
    let outcome = call_channel(app, &record, &id_document_number).await;
    let record = settle_from_outcome(app, &record.id, outcome, Source::Channel).await?;
    let settled = !record.outcome_unknown;
    Ok(Created { record, settled })
}

/// The new cardholder, `pending` on `bin`'s channel, its document number sealed.
fn new_record(
    app: &Core,
    merchant: &MerchantRecord,
    bin: &BinRecord,
    new: NewCardholder,
) -> CardholderRecord {
    let id = CardholderId::generate();
    let now = app.clock.now();
    let last4: String =
        new.id_document_number.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    CardholderRecord {
        id: id.clone(),
        merchant_id: merchant.id.clone(),
        reference: new.reference,
        card_name: new.card_name,
        bin: bin.bin.clone(),
        channel_id: bin.channel_id.clone(),
        request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
        channel_cardholder_id: None,
        status: CardholderStatus::Pending,
        failure_reason: None,
        identity: new.identity,
        id_document_number: Sealed(app.sealer.seal(new.id_document_number.as_bytes(), &context(&id))),
        id_document_last4: last4,
        address: new.address,
        outcome_unknown: true,
        created_at: now,
        version: 1,
        status_history: History::created(CardholderStatus::Pending, Source::Merchant, now),
    }
}

/// One durable commit before the channel is called: the record, its index
/// rows, the Idempotency-Key binding and the request's recovery row.
async fn commit_new(app: &Core, record: &CardholderRecord, binding: Option<String>) -> Result<(), Error> {
    let id = &record.id;
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::Cardholders, id.as_bytes());
    batch.put(id.as_bytes(), record)?;
    let (merchant, cardholder) = (record.merchant_id.clone(), id.clone());
    batch.put_raw(
        Tree::Index,
        Index::MerchantCardholder { merchant: merchant.clone(), cardholder }.encode(),
        [],
    );
    if let Some(reference) = record.reference.clone() {
        let row = Index::CardholderReference { merchant, reference, cardholder: id.clone() };
        batch.put_raw(Tree::Index, row.encode(), []);
    }
    if let Some(b) = &binding {
        batch.expect_absent(Tree::Index, b);
        batch.put_raw(Tree::Index, b, id.as_bytes());
    }
    batch.put_raw(
        Tree::Operations,
        &record.request_id,
        format!("cardholder {id} {}", pelago_storage::Timestamp::now_real().unix_ms()),
    );
    app.store.commit_durable(batch).await.map_err(|e| match e {
        StoreError::Conflict { .. } => Error::KeyInUse,
        other => other.into(),
    })?;
    Ok(())
}

async fn call_channel(
    app: &Core,
    record: &CardholderRecord,
    id_document_number: &str,
) -> Outcome<CardholderCreated> {
    let Some(channel) = app.upstreams.channel(&record.channel_id) else {
        return Outcome::Unknown { detail: "no adapter for the channel".into() };
    };
    channel
        .create_cardholder(CreateCardholder {
            request_id: record.request_id.clone(),
            cardholder_id: record.id.to_string(),
            bin: record.bin.clone(),
            identity: record.identity.clone(),
            id_document_number: id_document_number.to_owned(),
            address: record.address.clone(),
        })
        .await
}

/// Applies what the channel said, with compare-and-set and the event, in one commit.
async fn settle_from_outcome(
    app: &Core,
    id: &CardholderId,
    outcome: Outcome<CardholderCreated>,
    source: Source,
) -> Result<CardholderRecord, Error> {
    let (to, channel_id, reason, known) = match outcome {
        Outcome::Done(c) => {
            let to = match c.status {
                ChannelCardholderStatus::Active => CardholderStatus::Active,
                ChannelCardholderStatus::Pending => CardholderStatus::Pending,
                ChannelCardholderStatus::Rejected => CardholderStatus::Rejected,
            };
            (to, Some(c.channel_cardholder_id), c.reason, true)
        }
        Outcome::Declined { reason } => (CardholderStatus::Rejected, None, Some(reason), true),
        Outcome::Unknown { detail } => {
            // Nothing to write: the resolver (or a callback) settles it; answer what is stored.
            tracing::warn!(cardholder_id = %id, detail, "cardholder creation outcome unknown; resolving in the background");
            return app
                .store
                .get::<CardholderRecord>(id.as_bytes())?
                .ok_or_else(|| Error::not_found("cardholder"));
        }
    };
    update(app, id, |r| {
        let now = app.clock.now();
        let changed = r.settle(to, channel_id.clone(), reason.clone(), source, now).map_err(Error::from)?;
        let was_unknown = r.outcome_unknown;
        if known {
            r.outcome_unknown = false;
        }
        if changed || (known && was_unknown) {
            if !changed {
                r.version += 1;
            }
            Ok(Some(changed))
        } else {
            Ok(None)
        }
    })
    .await
}

/// Read-modify-write with compare-and-set, retried on conflict (bounded).
/// `f` returns `Some(status_changed)` to write, `None` for no change.
async fn update(
    app: &Core,
    id: &CardholderId,
    f: impl Fn(&mut CardholderRecord) -> Result<Option<bool>, Error>,
) -> Result<CardholderRecord, Error> {
    for _ in 0..16 {
        let (mut record, bytes) = app
            .store
            .get_with_bytes::<CardholderRecord>(id.as_bytes())?
            .ok_or_else(|| Error::not_found("cardholder"))?;
        let Some(changed) = f(&mut record)? else { return Ok(record) };
        let mut batch = WriteBatch::new();
        batch.expect_raw(Tree::Cardholders, id.as_bytes(), Some(bytes));
        batch.put_raw(Tree::Cardholders, id.as_bytes(), encode(&record)?);
        if !record.outcome_unknown {
            batch.delete(Tree::Operations, &record.request_id);
        }
        if changed {
            let event = match record.status {
                CardholderStatus::Active => Some("cardholder.activated"),
                CardholderStatus::Rejected => Some("cardholder.rejected"),
                CardholderStatus::Pending => None,
            };
            if let Some(event) = event {
                outbox::stage(
                    &mut batch,
                    &record.merchant_id,
                    event,
                    EventObject::Cardholder(Box::new(record.clone())),
                    app.clock.now(),
                )?;
            }
        }
        match app.store.commit_durable(batch).await {
            Ok(()) => return Ok(record),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::unavailable("the cardholder is changing concurrently; retry"))
}

/// A channel callback about a cardholder (approve / reject): bound, then
/// confirmed by asking the channel for that cardholder (`CardChannel::cardholder`).
pub async fn on_channel_event(
    app: &Arc<Core>,
    channel: &ChannelId,
    event_id: &str,
    event: &ChannelEvent,
) -> Result<&'static str, Error> {
    let ChannelEvent::CardholderUpdated { cardholder_id, channel_cardholder_id, .. } = event else {
        // Card opened / top-up completed: `channel_confirm::on_request_answered`.
        return Ok("unknown_object");
    };
    // Bound: a cardholder of this channel, by Pelago's id and the channel's own
    // (when the channel's answer was lost, Pelago has none yet and learns it here).
    let record = match CardholderId::parse(cardholder_id) {
        Ok(id) => app.store.get::<CardholderRecord>(id.as_bytes())?,
        Err(_) => None,
    };
    let Some(record) = record.filter(|r| {
        &r.channel_id == channel
            && r.channel_cardholder_id.as_deref().is_none_or(|own| own == channel_cardholder_id)
    }) else {
        return Err(crate::flows::callback_rules::unbound(
            app,
            crate::metrics::CallbackSource::Channel,
            channel.as_str(),
            event_id,
            cardholder_id,
        ));
    };
    if channel_cardholder_id.is_empty() || channel_cardholder_id.len() > MAX_UPSTREAM_ID_LEN {
        return Err(crate::flows::callback_rules::mismatch("channel cardholder id"));
    }
    // Confirmed: the channel's own answer, asked under its credentials, is
    // what is applied; the notice's status is never read.
    match confirm(app, &record, channel_cardholder_id).await? {
        CardholderConfirmed::Settled { changed: true } => Ok("applied"),
        CardholderConfirmed::Settled { changed: false } => Ok("unchanged"),
        CardholderConfirmed::Contradicted(what) => Err(crate::flows::callback_rules::mismatch(what)),
        CardholderConfirmed::Unknown => {
            let waiting =
                app.store.iter_raw(Tree::Operations, CHDCONFIRM.as_bytes()).take(MAX_UNCONFIRMED).count();
            if waiting >= MAX_UNCONFIRMED {
                return Err(Error::unavailable("the channel cannot be asked now; deliver again later"));
            }
            let mut batch = WriteBatch::new();
            let marker = Marker::CardholderConfirm { cardholder: record.id.clone() }.encode();
            batch.put_raw(Tree::Operations, marker, channel_cardholder_id.as_bytes());
            app.store.commit_durable(batch).await?;
            Ok("unconfirmed")
        }
    }
}

/// Notices waiting for the channel's answer at most; beyond, 503.
const MAX_UNCONFIRMED: usize = 4096;
/// Longest channel cardholder id kept in a marker.
const MAX_UPSTREAM_ID_LEN: usize = 128;

enum CardholderConfirmed {
    /// Settled by the channel's answer; `changed` when that wrote anything.
    Settled {
        changed: bool,
    },
    Unknown,
    Contradicted(&'static str),
}

/// Asks the cardholder's channel for it (by the channel's id) and settles by
/// the answer when the answer names this cardholder.
async fn confirm(
    app: &Core,
    record: &CardholderRecord,
    channel_cardholder_id: &str,
) -> Result<CardholderConfirmed, Error> {
    let Some(channel) = app.upstreams.channel(&record.channel_id) else {
        return Ok(CardholderConfirmed::Unknown);
    };
    let answer = match channel.cardholder(channel_cardholder_id.to_owned()).await {
        Outcome::Done(answer) => answer,
        Outcome::Unknown { detail } => {
            tracing::warn!(cardholder_id = %record.id, detail, "channel cardholder query outcome unknown; retrying later");
            return Ok(CardholderConfirmed::Unknown);
        }
        Outcome::Declined { reason } => {
            tracing::warn!(cardholder_id = %record.id, reason, "the channel does not hold the cardholder a callback named");
            return Ok(CardholderConfirmed::Contradicted("channel cardholder id"));
        }
    };
    if answer.cardholder_id != record.id.as_str() || answer.channel_cardholder_id != channel_cardholder_id {
        return Ok(CardholderConfirmed::Contradicted("channel cardholder id"));
    }
    let created = CardholderCreated {
        channel_cardholder_id: answer.channel_cardholder_id,
        status: answer.status,
        reason: answer.reason,
    };
    match settle_from_outcome(app, &record.id, Outcome::Done(created), Source::Channel).await {
        Ok(after) => Ok(CardholderConfirmed::Settled { changed: after.version != record.version }),
        // The channel's answer contradicts a settled state (e.g. rejected after active): no effect.
        Err(Error::InvalidState(_)) => Ok(CardholderConfirmed::Settled { changed: false }),
        Err(e) => Err(e),
    }
}

/// One resolver pass over cardholder notices whose confirming query had no answer.
async fn resolve_confirmations(app: &Core) -> Result<usize, Error> {
    let mut done = 0;
    for (key, channel_cardholder_id) in super::markers::<Marker>(app, CHDCONFIRM)? {
        let record = match &key {
            Marker::CardholderConfirm { cardholder } => {
                app.store.get::<CardholderRecord>(cardholder.as_bytes())?
            }
            _ => None,
        };
        let keep = match record {
            Some(record) => {
                let channel_cardholder_id = String::from_utf8_lossy(&channel_cardholder_id).into_owned();
                matches!(confirm(app, &record, &channel_cardholder_id).await?, CardholderConfirmed::Unknown)
            }
            None => false,
        };
        if !keep {
            super::clear_marker(app, key.encode()).await?;
            done += 1;
        }
    }
    Ok(done)
}

/// One pass of the resolver over cardholders whose creation outcome is unknown:
/// ask the channel by request id; not found → retry the call with the same id.
pub async fn resolve_pending(app: &Core) -> Result<usize, Error> {
    let mut resolved = resolve_confirmations(app).await?;
    // Cardholder markers are keyed by request id and share the tree with the
    // other flows' markers: filter before the bound, so those never starve these.
    let pending = app
        .store
        .iter_raw(Tree::Operations, b"")
        .filter(|item| item.as_ref().map_or(true, |(_, v)| v.starts_with(b"cardholder ")))
        .take(256)
        .collect::<Result<Vec<_>, _>>()?;
    // An operation whose first call may still be in flight is left to that call.
    let settled_before_ms =
        pelago_storage::Timestamp::now_real().unix_ms() - app.config.upstream_timeout_ms as i64 - 1000;
    for (request_id, what) in pending {
        let what = String::from_utf8_lossy(&what).into_owned();
        let mut parts = what.split(' ');
        if parts.next() != Some("cardholder") {
            continue;
        }
        let Some(Ok(id)) = parts.next().map(CardholderId::parse) else { continue };
        let started_ms: i64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        if started_ms > settled_before_ms {
            continue;
        }
        let Some(record) = app.store.get::<CardholderRecord>(id.as_bytes())? else { continue };
        let Some(channel) = app.upstreams.channel(&record.channel_id) else { continue };
        let outcome = match channel.operation(String::from_utf8_lossy(&request_id).into_owned()).await {
            Outcome::Done(ChannelOperation::CardholderCreated(c)) => Outcome::Done(c),
            Outcome::Done(ChannelOperation::Declined { reason }) => Outcome::Declined { reason },
            Outcome::Done(ChannelOperation::NotFound) => {
                let number = app
                    .sealer
                    .open_string(&record.id_document_number.0, &context(&id))
                    .map_err(|_| Error::internal())?;
                call_channel(app, &record, &number).await
            }
            Outcome::Done(_) | Outcome::Declined { .. } | Outcome::Unknown { .. } => continue,
        };
        let after = settle_from_outcome(app, &id, outcome, Source::Channel).await?;
        if !after.outcome_unknown {
            resolved += 1;
        }
    }
    Ok(resolved)
}

/// The merchant that owns a cardholder, or 404 (never 403 for another merchant's).
pub fn load_owned(app: &Core, merchant: &MerchantId, raw: &str) -> Result<CardholderRecord, Error> {
    super::load_owned::<CardholderId, _>(app, "cardholder", raw, |c: &CardholderRecord| {
        &c.merchant_id == merchant
    })
}
