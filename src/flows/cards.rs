//! Cards as a saga across the merchant actor (money) and the card actor
//! (state, channel calls). Each step is durable before the next; money owed
//! after a card change is a marker committed with that change and booked
//! here, idempotently, by the merchant actor; the resolver replays whatever a
//! crash left behind. A master-account opening commits its intent with its
//! application fee, in one commit of the merchant actor ([`OpenIntent`]), so
//! no fee is ever charged for a card that then never exists, and a retry
//! never charges a second one.

use std::sync::Arc;

use pelago_actors::{
    ActorError, Reject,
    card::{
        CardRecord, CardStatus, NewCard,
        ops::{Act, ActionKind, CardOutcome, MoneyMarker, Open, Resolve},
    },
    cardholder::{CardholderRecord, CardholderStatus},
    keys::{self as actor_keys, Marker},
    ledger::{self, EntryKind},
    merchant::{FundingMode, MerchantRecord, PostEntry, PostEntryWith},
    routing::{BinRecord, BinStatus, ChannelRecord, ChannelStatus},
};
use pelago_storage::{CardId, ChannelId, MerchantId, Money, Timestamp, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{app::Core, flows::Error, keys};

pub struct OpenRequest {
    pub cardholder_id: String,
    pub reference: Option<String>,
}

/// `cardopen/{card_id}`: a master-account card whose application fee is
/// charged, with everything needed to finish opening it. Committed with the
/// Idempotency-Key binding *in the fee's booking commit* (older versions
/// committed it just before), so a crash between the booking and the card
/// leaves an intent that a retry or the resolver finishes (fee booked once
/// per card id, then the card); removed in the card's first commit. A refused fee
/// writes none of it (an older intent whose fee is refused is dropped with
/// its binding).
#[derive(Debug, Serialize, Deserialize)]
pub struct OpenIntent {
    pub new: NewCard,
    pub channel_cardholder_id: String,
    pub fee: Money,
    pub binding: Option<String>,
    /// Real time of the intent (the resolver's grace runs from it).
    pub at: Timestamp,
}

pelago_storage::record!(OpenIntent, Operations, 1);

pub fn open_intent_key(card: &CardId) -> Vec<u8> {
    keys::Marker::CardOpen { card: card.clone() }.encode()
}

/// POST /v1/cards, the saga.
pub async fn open(
    app: &Core,
    merchant: &MerchantRecord,
    req: OpenRequest,
    binding: Option<String>,
) -> Result<CardOutcome, Error> {
    if let Some(b) = &binding
        && let Some(id) = app.store.get_raw(Tree::Index, b)?
    {
        return repeat(app, &id).await;
    }
    let (holder, channel_cardholder_id) = active_holder(app, merchant, &req.cardholder_id)?;
    let bin = check_product(app, merchant, &holder.card_name, &holder.bin)?;
    let fee = merchant.fee_schedule(bin.currency).map_or(0, |f| f.application_fixed);
    let id = CardId::generate();
    let mut new = NewCard {
        id: id.clone(),
        merchant_id: merchant.id.clone(),
        cardholder_id: holder.id.clone(),
        reference: req.reference,
        card_name: holder.card_name.clone(),
        bin: bin.bin.clone(),
        channel_id: bin.channel_id.clone(),
        currency: bin.currency,
        status: CardStatus::Processing,
        application_fee_order: None,
    };
    if fee > 0 && merchant.funding_mode == FundingMode::Gateway {
        new.status = CardStatus::PendingPayment;
        let fee = Money::new(fee, bin.currency);
        let (card, _) = crate::flows::orders::open_card_with_order(
            app,
            merchant,
            new,
            channel_cardholder_id,
            fee,
            binding,
        )
        .await?;
        return Ok(CardOutcome { card, settled: true, refused: None });
    }
    if fee > 0 {
        let intent = OpenIntent {
            new,
            channel_cardholder_id,
            fee: Money::new(fee, bin.currency),
            binding,
            at: Timestamp::now_real(),
        };
        return open_with_intent(app, intent).await;
    }
    let outcome = app
        .actors
        .ask_card(&id, Open { new, channel_cardholder_id, application_fee: None, binding, intent: None })
        .await??;
    settle_markers_of(app, &id).await?;
    Ok(outcome)
}

/// A repeat of a request whose Idempotency-Key is bound to card `id`.
async fn repeat(app: &Core, id: &[u8]) -> Result<CardOutcome, Error> {
    let id = CardId::parse(&String::from_utf8_lossy(id)).map_err(|_| Error::internal())?;
    if let Some(intent) = app.store.get::<OpenIntent>(open_intent_key(&id))? {
        return finish_open(app, intent).await; // a crash left it between fee and card
    }
    let card = app.actors.ask_card(&id, pelago_actors::card::GetCard).await??;
    let settled = card.status != CardStatus::Processing;
    Ok(CardOutcome { card, settled, refused: None })
}

/// The merchant's cardholder a card is opened for, active, with its id at the channel.
fn active_holder(
    app: &Core,
    merchant: &MerchantRecord,
    raw: &str,
) -> Result<(CardholderRecord, String), Error> {
    let holder: CardholderRecord =
        crate::flows::cardholders::load_owned(app, &merchant.id, raw).map_err(|e| {
            if matches!(e, Error::NotFound(_)) {
                Error::invalid("cardholder_id", "no such cardholder")
            } else {
                e
            }
        })?;
    if holder.status != CardholderStatus::Active {
        return Err(Error::invalid_state(format!("the cardholder is {}", holder.status.as_str())));
    }
    // Active means the channel created it: never open a card for an empty id.
    let channel_cardholder_id = holder
        .channel_cardholder_id
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::invalid_state("the cardholder has no id at the channel yet"))?;
    Ok((holder, channel_cardholder_id))
}

/// A master-account opening with a fee: the intent and its binding are
/// committed with the fee's booking, in the merchant actor's one commit
/// (`PostEntryWith`: 402 writes nothing); then the card actor calls the
/// channel and writes the card once, with the answer, removing the intent.
async fn open_with_intent(app: &Core, intent: OpenIntent) -> Result<CardOutcome, Error> {
    let mut with = WriteBatch::new();
    with.put(open_intent_key(&intent.new.id), &intent)?;
    if let Some(b) = &intent.binding {
        with.expect_absent(Tree::Index, b);
        with.put_raw(Tree::Index, b, intent.new.id.as_bytes());
    }
    let merchant = intent.new.merchant_id.clone();
    app.actors.ask_merchant(&merchant, PostEntryWith { entry: fee_entry(&intent)?, with }).await??;
    open_after_fee(app, intent).await
}

/// The application fee of an opening, once per card id.
fn fee_entry(intent: &OpenIntent) -> Result<PostEntry, Error> {
    Ok(PostEntry {
        source_id: intent.new.id.to_string(),
        kind: EntryKind::ApplicationFee,
        postings: ledger::master_fee(&intent.new.merchant_id, intent.fee)?,
        event: None,
        index: vec![],
    })
}

/// Finishes a master-account opening from its intent, by its retry or the
/// resolver: books the fee (once per card id: an intent committed with its
/// fee answers `replayed`; one of an older version, committed before its
/// fee, may find it refused → the intent and its binding are dropped and
/// nothing happened), then opens the card.
async fn finish_open(app: &Core, intent: OpenIntent) -> Result<CardOutcome, Error> {
    let id = intent.new.id.clone();
    let merchant = intent.new.merchant_id.clone();
    match app.actors.ask_merchant(&merchant, fee_entry(&intent)?).await? {
        Ok(_) => {}
        Err(ActorError::Rejected(r @ Reject::InsufficientFunds { .. })) => {
            let mut batch = WriteBatch::new();
            batch.delete(Tree::Operations, open_intent_key(&id));
            if let Some(b) = &intent.binding {
                batch.delete(Tree::Index, b);
            }
            app.store.commit_durable(batch).await?;
            return Err(r.into());
        }
        // Unknown whether the fee landed: the intent stays; a retry or the resolver finishes it.
        Err(e) => return Err(e.into()),
    }
    open_after_fee(app, intent).await
}

/// Opens the card of an intent whose fee is booked (a repeat answers the
/// card); the card's one commit removes the intent. An intent of an older
/// version whose card already existed is removed here.
async fn open_after_fee(app: &Core, intent: OpenIntent) -> Result<CardOutcome, Error> {
    crate::failpoint::hit("cards.open.after_fee");
    let id = intent.new.id.clone();
    let open = Open {
        new: intent.new,
        channel_cardholder_id: intent.channel_cardholder_id,
        application_fee: Some(intent.fee),
        binding: None, // bound with the intent
        intent: Some(open_intent_key(&id)),
    };
    let outcome = app.actors.ask_card(&id, open).await??;
    if app.store.contains(Tree::Operations, open_intent_key(&id))? {
        let mut batch = WriteBatch::new();
        batch.delete(Tree::Operations, open_intent_key(&id));
        app.store.commit_durable(batch).await?;
    }
    settle_markers_of(app, &id).await?;
    Ok(outcome)
}

/// DOMAIN.md §Routing, checked again whenever a card is opened or funded
/// (not only when its cardholder was created): the card name is still in the
/// merchant's `allowed_card_names` (else 403), its BIN is active and the BIN's
/// channel is active (else 409). A revoked product or a disabled channel
/// issues nothing and moves no money. Returns the BIN.
pub fn check_product(
    app: &Core,
    merchant: &MerchantRecord,
    card_name: &str,
    bin: &str,
) -> Result<BinRecord, Error> {
    if !merchant.allowed_card_names.iter().any(|n| n == card_name) {
        return Err(Error::forbidden(format!("card_name {card_name} is not allowed for this merchant")));
    }
    let bin = app.store.get::<BinRecord>(bin.as_bytes())?.ok_or_else(Error::internal)?;
    if bin.status != BinStatus::Active {
        return Err(Error::invalid_state(format!("BIN {} is inactive", bin.bin)));
    }
    check_channel_active(app, &bin.channel_id)?;
    Ok(bin)
}

/// 409 unless the channel exists and is active.
pub fn check_channel_active(app: &Core, channel: &ChannelId) -> Result<(), Error> {
    let record = app.store.get::<ChannelRecord>(channel.as_bytes())?.ok_or_else(Error::internal)?;
    if record.status != ChannelStatus::Active {
        return Err(Error::invalid_state(format!("channel {channel} is {}", record.status.as_str())));
    }
    Ok(())
}

/// Freeze, unfreeze or delete.
pub async fn act(app: &Core, card: &CardRecord, kind: ActionKind) -> Result<CardOutcome, Error> {
    let outcome = app.actors.ask_card(&card.id, Act(kind)).await??;
    settle_markers_of(app, &card.id).await?;
    Ok(outcome)
}

async fn return_fee(app: &Core, merchant: &MerchantId, card: &CardId, fee: Money) -> Result<(), Error> {
    let entry = PostEntry {
        source_id: card.to_string(),
        kind: EntryKind::ApplicationFeeReturn,
        postings: ledger::mirror(&ledger::master_fee(merchant, fee)?)?,
        event: None,
        index: vec![],
    };
    app.actors.ask_merchant(merchant, entry).await??;
    Ok(())
}

/// Books the money markers of one card (fee return, delete refund) and removes them.
pub async fn settle_markers_of(app: &Core, card: &CardId) -> Result<(), Error> {
    if let Some(m) = app.store.get::<MoneyMarker>(Marker::FeeReturn { card: card.clone() }.encode())? {
        return_fee(app, &m.merchant_id, &m.card_id, m.amount).await?;
        super::clear_marker(app, Marker::FeeReturn { card: card.clone() }.encode()).await?;
    }
    if let Some(m) = app.store.get::<MoneyMarker>(Marker::CardRefund { card: card.clone() }.encode())? {
        let merchant =
            app.store.get::<MerchantRecord>(m.merchant_id.as_bytes())?.ok_or_else(Error::internal)?;
        let to_pending = merchant.funding_mode == FundingMode::Gateway;
        let source = format!("{}/delete", m.card_id);
        // In gateway mode the returned balance waits in `pending` for the next settlement run.
        let index = to_pending.then(|| {
            (
                crate::flows::settlement::collection_key(app.clock.now(), &source),
                crate::flows::settlement::collection_value(&m.merchant_id, m.amount, None),
            )
        });
        let entry = PostEntry {
            source_id: source.clone(),
            kind: EntryKind::CardRefund,
            postings: ledger::card_refund(&m.merchant_id, &m.channel_id, m.amount, to_pending)?,
            event: None,
            index: index.into_iter().collect(),
        };
        app.actors.ask_merchant(&m.merchant_id, entry).await??;
        super::clear_marker(app, Marker::CardRefund { card: card.clone() }.encode()).await?;
    }
    Ok(())
}

/// One resolver pass over cards: unknown opens and actions older than the
/// upstream timeout are resolved through their actor; money markers are booked.
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let grace_ms = super::grace_ms(app);
    let now = Timestamp::now_real().unix_ms();
    let mut done = 0;
    for prefix in [actor_keys::OPEN, actor_keys::ACTION] {
        for (marker, _) in super::due_markers(app, prefix, super::Started::BigEndianMs, grace_ms)? {
            let (Marker::Open { card } | Marker::Action { card }) = marker else { continue };
            let outcome = app.actors.ask_card(&card, Resolve).await??;
            settle_markers_of(app, &card).await?;
            if outcome.settled {
                done += 1;
            }
        }
    }
    // Master-account openings a crash left between their intent and their card.
    for (_, intent) in app.store.scan::<OpenIntent>(keys::CARDOPEN.as_bytes(), None, false, 256)? {
        if now - intent.at.unix_ms() < grace_ms {
            continue;
        }
        match finish_open(app, intent).await {
            Ok(_) => done += 1,
            Err(Error::InsufficientFunds(_)) => done += 1, // refused: nothing happened
            Err(e) => return Err(e),
        }
    }
    for prefix in [actor_keys::FEERET, actor_keys::CARDREFUND] {
        for marker in super::marker_keys(app, prefix)? {
            if let Marker::FeeReturn { card } | Marker::CardRefund { card } = marker {
                settle_markers_of(app, &card).await?;
                done += 1;
            }
        }
    }
    Ok(done)
}

/// A card of this merchant, or 404 (never 403 for another merchant's).
pub fn load_owned(app: &Core, merchant: &MerchantId, raw: &str) -> Result<CardRecord, Error> {
    super::load_owned::<CardId, _>(app, "card", raw, |c: &CardRecord| &c.merchant_id == merchant)
}
