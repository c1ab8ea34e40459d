//! Channel transaction callbacks, confirmed (SECURITY.md "Callbacks from
//! upstreams"). A signed `transaction` notice that is bound to a card of its
//! channel (`http/callbacks.rs`) is only a hint: Pelago asks the channel for
//! that transaction under the channel's own credentials
//! (`CardChannel::transaction`) and applies the channel's answer, never the
//! notice's body. The notice must still agree with the answer on the card,
//! the transaction id, the amount and the currency (else 400, nothing
//! changes); a status that moved on since the notice was sent is simply the
//! newer state. No answer (timeout, 5xx): a `txnconfirm/` marker, and the
//! resolver asks again until the channel answers.

use pelago_actors::{
    card::{ApplyTransaction, CardRecord, TransactionChange},
    ports::{ChannelTransaction, Outcome},
};
use pelago_storage::{CardId, Tree, WriteBatch};

use crate::{
    app::Core,
    flows::{Error, callback_rules::mismatch},
    keys::{Marker, TXNCONFIRM},
};

/// Notices waiting for the channel's answer at most; beyond, 503 (the channel delivers again).
const MAX_UNCONFIRMED: usize = 4096;
/// Longest channel transaction id kept in a marker.
const MAX_UPSTREAM_ID_LEN: usize = 128;

/// `txnconfirm/{card id}/{channel transaction id}` → `{amount minor}`.
fn marker(card: &CardId, channel_transaction_id: &str) -> Vec<u8> {
    Marker::TransactionConfirm { card: card.clone(), channel_transaction: channel_transaction_id.to_owned() }
        .encode()
}

/// What asking the channel about a transaction came to.
enum Confirmed {
    /// The channel's answer was applied; `changed` when it wrote anything.
    Applied { changed: bool },
    /// No answer: ask again later.
    Unknown,
    /// The channel does not hold the transaction as the notice named it.
    Contradicted(&'static str),
}

/// A bound `transaction` notice about `card`: confirmed by the channel's
/// answer, applied once. Returns the callback outcome word.
pub async fn on_transaction(
    app: &Core,
    card: &CardRecord,
    notice: &ChannelTransaction,
) -> Result<&'static str, Error> {
    if notice.channel_transaction_id.is_empty() || notice.channel_transaction_id.len() > MAX_UPSTREAM_ID_LEN {
        return Err(mismatch("transaction id"));
    }
    match confirm(app, card, &notice.channel_transaction_id, notice.amount).await? {
        Confirmed::Applied { changed: false } => Ok("unchanged"),
        Confirmed::Applied { changed: true } => Ok("applied"),
        Confirmed::Contradicted(what) => Err(mismatch(what)),
        Confirmed::Unknown => {
            let waiting =
                app.store.iter_raw(Tree::Operations, TXNCONFIRM.as_bytes()).take(MAX_UNCONFIRMED).count();
            if waiting >= MAX_UNCONFIRMED {
                // Nothing recorded: the channel delivers the notice again later.
                return Err(Error::unavailable("the channel cannot be asked now; deliver again later"));
            }
            let mut batch = WriteBatch::new();
            batch.put_raw(
                Tree::Operations,
                marker(&card.id, &notice.channel_transaction_id),
                notice.amount.value.to_string(),
            );
            app.store.commit_durable(batch).await?;
            Ok("unconfirmed")
        }
    }
}

/// Asks the card's channel for the transaction and applies its answer if it
/// agrees with what was named (card, id, amount and currency).
async fn confirm(
    app: &Core,
    card: &CardRecord,
    channel_transaction_id: &str,
    amount: pelago_storage::Money,
) -> Result<Confirmed, Error> {
    let Some(channel_card_id) = card.channel_card_id.clone() else {
        return Ok(Confirmed::Contradicted("card id"));
    };
    let Some(channel) = app.upstreams.channel(&card.channel_id) else {
        return Ok(Confirmed::Unknown);
    };
    let answer = match channel.transaction(channel_card_id.clone(), channel_transaction_id.to_owned()).await {
        Outcome::Done(answer) => answer,
        Outcome::Unknown { detail } => {
            tracing::warn!(card_id = %card.id, detail, "channel transaction query outcome unknown; retrying later");
            return Ok(Confirmed::Unknown);
        }
        Outcome::Declined { reason } => {
            tracing::warn!(card_id = %card.id, reason, "the channel does not hold the transaction a callback named");
            return Ok(Confirmed::Contradicted("transaction id"));
        }
    };
    if answer.channel_card_id != channel_card_id || answer.channel_transaction_id != channel_transaction_id {
        return Ok(Confirmed::Contradicted("transaction id"));
    }
    if answer.amount != amount {
        tracing::warn!(card_id = %card.id, "a transaction callback's amount differs from the channel's");
        return Ok(Confirmed::Contradicted("amount or currency"));
    }
    let change = app.actors.ask_card(&card.id, ApplyTransaction(answer)).await??;
    Ok(Confirmed::Applied { changed: !matches!(change, TransactionChange::Unchanged) })
}

/// One resolver pass over transaction notices whose confirming query had no answer.
pub async fn resolve_pending(app: &Core) -> Result<usize, Error> {
    let mut done = 0;
    for (key, value) in super::markers::<Marker>(app, TXNCONFIRM)? {
        let value: Option<i64> = std::str::from_utf8(&value).ok().and_then(|v| v.parse().ok());
        let keep = match (&key, value) {
            (Marker::TransactionConfirm { card: card_id, channel_transaction: txn }, Some(value)) => {
                match app.store.get::<CardRecord>(card_id.as_bytes())? {
                    Some(card) => {
                        let amount = pelago_storage::Money::new(value, card.currency);
                        match confirm(app, &card, txn, amount).await? {
                            Confirmed::Unknown => true,
                            Confirmed::Applied { .. } => false,
                            Confirmed::Contradicted(what) => {
                                tracing::warn!(card_id = %card.id, what, "an unconfirmed transaction callback was contradicted by the channel; dropped");
                                false
                            }
                        }
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if !keep {
            super::clear_marker(app, key.encode()).await?;
            done += 1;
        }
    }
    Ok(done)
}

/// A `card.opened` or `topup.completed` notice: the asynchronous answer to a
/// request Pelago made. Bound (a card of this channel whose open request id
/// it names, or a top-up of a card of this channel still waiting for that
/// request id), then confirmed: the actor asks the channel for the request's
/// outcome (`CardChannel::operation`) and settles by that answer, never by
/// the notice's. A request that is no longer waiting changes nothing.
pub async fn on_request_answered(
    app: &std::sync::Arc<Core>,
    channel: &pelago_storage::ChannelId,
    event_id: &str,
    event: &pelago_actors::ports::ChannelEvent,
) -> Result<&'static str, Error> {
    use pelago_actors::ports::ChannelEvent;
    let notice = Notice { app, channel, event_id };
    match event {
        ChannelEvent::CardOpened { card_id, request_id, opened } => {
            notice.card_opened(card_id, request_id, &opened.channel_card_id).await
        }
        ChannelEvent::TopupCompleted { request_id, .. } => notice.topup_completed(request_id).await,
        _ => Ok("unknown_object"),
    }
}

/// One signed request-answered notice of `channel`.
struct Notice<'a> {
    app: &'a std::sync::Arc<Core>,
    channel: &'a pelago_storage::ChannelId,
    event_id: &'a str,
}

impl Notice<'_> {
    fn unbound(&self, object: &str) -> Error {
        let source = crate::metrics::CallbackSource::Channel;
        crate::flows::callback_rules::unbound(self.app, source, self.channel.as_str(), self.event_id, object)
    }

    /// Bound to a card of this channel whose open request id it names; settled
    /// by the card actor's `Resolve`, which asks the channel.
    async fn card_opened(
        &self,
        card_id: &str,
        request_id: &str,
        channel_card_id: &str,
    ) -> Result<&'static str, Error> {
        use pelago_actors::{card::ops::Resolve, keys::Marker};
        let app = self.app;
        let card = match CardId::parse(card_id) {
            Ok(id) => app.store.get::<CardRecord>(id.as_bytes())?,
            Err(_) => None,
        };
        let Some(card) = card.filter(|c| {
            &c.channel_id == self.channel
                && c.open_request_id.as_deref() == Some(request_id)
                && c.channel_card_id.as_deref().is_none_or(|own| own == channel_card_id)
        }) else {
            return Err(self.unbound(card_id));
        };
        if !app.store.contains(Tree::Operations, Marker::Open { card: card.id.clone() }.encode())? {
            return Ok("unchanged");
        }
        let outcome = app.actors.ask_card(&card.id, Resolve).await??;
        crate::flows::cards::settle_markers_of(app, &card.id).await?;
        Ok(if outcome.settled { "applied" } else { "unconfirmed" })
    }

    /// Bound to a top-up of a card of this channel still waiting for that
    /// request id (found among the waiting top-ups, bounded as the resolver's
    /// pass); settled by `ResolveTopup`, which asks the channel.
    async fn topup_completed(&self, request_id: &str) -> Result<&'static str, Error> {
        use pelago_actors::{
            card::topup::{ResolveTopup, TopupPhase, TopupRecord, parse_marker, topup_key},
            keys::{Marker, TOPUP},
        };
        let app = self.app;
        for (key, value) in crate::flows::markers(app, TOPUP)? {
            let Some((card_id, _)) = parse_marker(&value) else { continue };
            let Marker::Topup { topup: id } = key else { continue };
            let Some(topup) = app.store.get::<TopupRecord>(topup_key(&card_id, &id))? else { continue };
            if topup.request_id != request_id {
                continue;
            }
            let Some(card) = app.store.get::<CardRecord>(card_id.as_bytes())? else { continue };
            if &card.channel_id != self.channel {
                return Err(self.unbound(request_id));
            }
            if topup.phase != TopupPhase::Funding {
                return Ok("unchanged");
            }
            let resolve = ResolveTopup { id: id.clone(), debited: true };
            let topup = app.actors.ask_card(&card.id, resolve).await??;
            crate::flows::topups::settle_reversal(app, &id).await?;
            return Ok(if topup.phase == TopupPhase::Done { "applied" } else { "unconfirmed" });
        }
        // No top-up waits for this request id: a repeat of a settled one, or a forgery; no effect.
        Ok("unchanged")
    }
}
