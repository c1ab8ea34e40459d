//! Top-ups (API.md §4): the two-step saga of `pelago_actors::card::topup`,
//! driven from here: admission (card, no write) → step 1, the debit with the
//! top-up's durable intent and recovery marker (merchant, one commit) → step
//! 2 + 3, the channel call and its result (card, one commit) → the reversal
//! if the channel refused (merchant, one commit with the marker's removal).
//! The resolver finishes any top-up a crash or an unknown channel answer left
//! after step 1, and still the `Debiting` records of the older three-step saga.

use std::sync::Arc;

use pelago_actors::{
    card::{
        CardRecord,
        ops::MoneyMarker,
        topup::{
            AdmitTopup, FundTopup, FundTopupWith, ResolveTopup, SettledWrites, TopupPhase, TopupRecord,
            parse_marker, topup_key,
        },
    },
    keys::{self, Index, Marker},
    ledger::{self, EntryKind},
    merchant::{FundingMode, MerchantRecord, PostEntry, PostEntryWith, VoidEntry, Voided},
};
use pelago_storage::{MerchantId, Money, TopupId, Tree, WriteBatch};

use crate::{app::Core, flows::Error};

/// `settled`: writes for the final commit made from the settled top-up (the
/// HTTP layer's stored answer), used only if this request settles it.
pub async fn create(
    app: &Core,
    merchant: &MerchantRecord,
    card: &CardRecord,
    amount: Money,
    reference: Option<String>,
    binding: Option<String>,
    settled: Option<SettledWrites>,
) -> Result<TopupRecord, Error> {
    if let Some(b) = &binding
        && let Some(id) = app.store.get_raw(Tree::Index, b)?
        && let Ok(id) = TopupId::parse(&String::from_utf8_lossy(&id))
        && let Some(existing) = app.store.get::<TopupRecord>(topup_key(&card.id, &id))?
    {
        return Ok(existing);
    }
    if amount.currency != card.currency {
        return Err(Error::invalid("amount.currency", "the card's currency is different"));
    }
    // The product may have been revoked or its channel disabled since the card opened.
    crate::flows::cards::check_product(app, merchant, &card.card_name, &card.bin)?;
    crate::flows::cards::check_channel_active(app, &card.channel_id)?;
    let fee = merchant
        .fee_schedule(card.currency)
        .map(|f| f.topup_fee(amount.value).ok_or_else(|| Error::invalid("amount.value", "the fee overflows")))
        .transpose()?
        .unwrap_or(0);
    let fee = Money::new(fee, card.currency);
    if merchant.funding_mode == FundingMode::Gateway {
        return crate::flows::orders::topup_with_order(app, merchant, card, amount, fee, reference, binding)
            .await;
    }
    let id = TopupId::generate();
    let intent = app
        .actors
        .ask_card(&card.id, AdmitTopup { id: id.clone(), amount, fee, reference, binding })
        .await??;
    // Step 1: 402 (or any refusal) writes nothing; an unknown answer leaves
    // either nothing or the whole intent, which the resolver finishes.
    app.actors.ask_merchant(&merchant.id, intent.debit()?).await??;
    crate::failpoint::hit("topups.after_intent");
    let done = match settled {
        Some(also) => app.actors.ask_card(&card.id, FundTopupWith(id.clone(), also)).await??,
        None => app.actors.ask_card(&card.id, FundTopup(id.clone())).await??,
    };
    settle_reversal(app, &id).await?;
    Ok(done)
}

/// Books the reversal of a refused top-up (once) and removes its marker, in
/// the merchant's one commit.
pub async fn settle_reversal(app: &Core, id: &TopupId) -> Result<(), Error> {
    let Some(marker) = app.store.get::<MoneyMarker>(Marker::TopupReversal { topup: id.clone() }.encode())?
    else {
        return Ok(());
    };
    let topup = app.store.get::<TopupRecord>(topup_key(&marker.card_id, id))?.ok_or_else(Error::internal)?;
    let entry = PostEntry {
        source_id: id.to_string(),
        kind: EntryKind::TopupReversal,
        postings: ledger::mirror(&ledger::master_topup(
            &marker.merchant_id,
            &marker.channel_id,
            topup.amount,
            topup.fee,
        )?)?,
        event: None,
        index: vec![],
    };
    let mut with = WriteBatch::new();
    with.delete(Tree::Operations, Marker::TopupReversal { topup: id.clone() }.encode());
    let posted = app.actors.ask_merchant(&marker.merchant_id, PostEntryWith { entry, with }).await??;
    if posted.replayed {
        // Booked before (by a concurrent pass, or before a crash of the older code): only the marker is left.
        let mut batch = WriteBatch::new();
        batch.delete(Tree::Operations, Marker::TopupReversal { topup: id.clone() }.encode());
        app.store.commit_durable(batch).await?;
    }
    Ok(())
}

/// One resolver pass over unfinished top-ups and unbooked reversals.
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let mut done = 0;
    for (marker, value) in
        super::due_markers(app, keys::TOPUP, super::Started::AfterFirstWord, super::grace_ms(app))?
    {
        let Some((card, _)) = parse_marker(&value) else { continue };
        let Marker::Topup { topup: id } = marker else { continue };
        let Some(record) = app.store.get::<TopupRecord>(topup_key(&card, &id))? else { continue };
        // Two-step intents are `Funding` from their first commit (debited).
        // A three-step `Debiting` record: not seeing the debit in the store is
        // not proof; the merchant actor settles it in its own order (a debit
        // still queued there lands first).
        let debited = record.phase != TopupPhase::Debiting
            || app
                .actors
                .ask_merchant(
                    &record.merchant_id,
                    VoidEntry { source_id: id.to_string(), kind: EntryKind::Topup },
                )
                .await??
                == Voided::AlreadyBooked;
        let topup = app.actors.ask_card(&card, ResolveTopup { id: id.clone(), debited }).await??;
        settle_reversal(app, &id).await?;
        if topup.phase == TopupPhase::Done {
            done += 1;
        }
    }
    for marker in super::marker_keys(app, keys::TOPUPREV)? {
        if let Marker::TopupReversal { topup: id } = marker {
            settle_reversal(app, &id).await?;
            done += 1;
        }
    }
    Ok(done)
}

/// A top-up of this merchant, or 404.
pub fn load_owned(app: &Core, merchant: &MerchantId, raw: &str) -> Result<TopupRecord, Error> {
    let id = TopupId::parse(raw).map_err(|_| Error::not_found("top-up"))?;
    let card = app
        .store
        .get_raw(Tree::Index, Index::Topup { topup: id.clone() }.encode())?
        .ok_or_else(|| Error::not_found("top-up"))?;
    let card = pelago_storage::CardId::parse(&String::from_utf8_lossy(&card))
        .map_err(|_| Error::not_found("top-up"))?;
    app.store
        .get::<TopupRecord>(topup_key(&card, &id))?
        .filter(|t| &t.merchant_id == merchant)
        .ok_or_else(|| Error::not_found("top-up"))
}
