//! Gateway-mode payments (API.md §4 Orders): application fees and top-ups
//! paid by the cardholder on the gateway's checkout page. The order belongs
//! to its card (`pelago_actors::card::order`); this module talks to the
//! gateway and the ledger:
//!
//! - create: the order is committed first (with its request id and a marker),
//!   then the gateway is asked for a checkout; a refusal fails the order and
//!   cancels what it was for; an unknown answer is retried by the resolver with
//!   the same request id.
//! - a callback is bound to the order's gateway account, compared with it,
//!   and confirmed by asking the gateway (`ordconfirm/` marker while the
//!   answer is unknown); only the answer settles the order.
//! - paid (confirmed): the card actor applies it once; the collection is booked
//!   once (`ordbook/` marker); the card is opened or the top-up funded.
//! - a paid order whose card or top-up the channel refused is refunded whole
//!   through the gateway and its collection mirrored (`ordrefund/` marker).

use std::sync::Arc;

use pelago_actors::{
    card::{
        CardRecord, CardStatus, NewCard,
        ops::Resolve,
        order::{
            CreateOrder, OrderCreateFailed, OrderCreated, OrderKind, OrderRecord, OrderStatus, RefundOrder,
            SettleOrder,
        },
        topup::{FundTopup, TopupRecord, TopupStatus, topup_key},
    },
    history::{History, Source},
    keys::{self, Marker},
    ledger::{self, EntryKind},
    merchant::{MerchantRecord, PostEntry},
    ports::{CreateOrder as GatewayCreateOrder, GatewayOrderStatus, Outcome, Refund},
};
use pelago_storage::{CardId, MerchantId, Money, OrderId, Timestamp, TopupId, Tree, WriteBatch};

use crate::{app::Core, flows::Error, flows::bootstrap};

fn new_order(
    merchant: &MerchantRecord,
    card: &CardId,
    topup: Option<&TopupId>,
    kind: OrderKind,
    principal: Money,
    fee: Money,
    account: &str,
    now: Timestamp,
) -> Result<OrderRecord, Error> {
    let total = principal.checked_add(fee).map_err(|_| Error::invalid("amount", "amount + fee overflows"))?;
    Ok(OrderRecord {
        id: OrderId::generate(),
        merchant_id: merchant.id.clone(),
        card_id: card.clone(),
        topup_id: topup.cloned(),
        kind,
        principal,
        fee,
        total,
        status: OrderStatus::Pending,
        gateway_account: account.to_owned(),
        request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
        gateway_order_id: None,
        checkout_url: None,
        created_at: now,
        paid_at: None,
        version: 1,
        status_history: History::created(OrderStatus::Pending, Source::Merchant, now),
    })
}

/// A new pending order for a fee with no principal (monthly fees).
pub async fn new_order_record(
    app: &Core,
    merchant: &MerchantRecord,
    card: &CardRecord,
    kind: OrderKind,
    fee: Money,
) -> Result<OrderRecord, Error> {
    let account = bootstrap::funding_account(app, merchant).await?;
    new_order(
        merchant,
        &card.id,
        None,
        kind,
        Money::zero(fee.currency),
        fee,
        &account.merchant_id,
        app.clock.now(),
    )
}

/// Asks the gateway for the checkout of a committed order and records its answer.
pub async fn request_checkout(app: &Core, order: &OrderRecord) -> Result<OrderRecord, Error> {
    let merchant =
        app.store.get::<MerchantRecord>(order.merchant_id.as_bytes())?.ok_or_else(Error::internal)?;
    let account = bootstrap::funding_account(app, &merchant).await?;
    let req = GatewayCreateOrder {
        request_id: order.request_id.clone(),
        account,
        order_id: order.id.to_string(),
        amount: order.total,
        description: format!("{} for card {}", order.kind.as_str(), order.card_id),
    };
    match app.upstreams.gateway.create_order(req).await {
        Outcome::Done(gateway) => Ok(app
            .actors
            .ask_card(&order.card_id, OrderCreated { order_id: order.id.clone(), gateway })
            .await??),
        Outcome::Declined { reason } => Ok(app
            .actors
            .ask_card(&order.card_id, OrderCreateFailed { order_id: order.id.clone(), reason })
            .await??),
        Outcome::Unknown { detail } => {
            tracing::warn!(order_id = %order.id, detail, "checkout creation outcome unknown; retrying later");
            Ok(order.clone())
        }
    }
}

/// Gateway mode, application fee > 0: the card waits in `pending_payment`.
pub async fn open_card_with_order(
    app: &Core,
    merchant: &MerchantRecord,
    new: NewCard,
    channel_cardholder_id: String,
    fee: Money,
    binding: Option<String>,
) -> Result<(CardRecord, OrderRecord), Error> {
    let account = bootstrap::funding_account(app, merchant).await?;
    let card_id = new.id.clone();
    let order = new_order(
        merchant,
        &card_id,
        None,
        OrderKind::ApplicationFee,
        Money::zero(fee.currency),
        fee,
        &account.merchant_id,
        app.clock.now(),
    )?;
    let msg = CreateOrder {
        order,
        new_card: Some(new),
        channel_cardholder_id: Some(channel_cardholder_id),
        topup: None,
        binding,
    };
    let (_, order) = app.actors.ask_card(&card_id, msg).await??;
    let order = request_checkout(app, &order).await?;
    let card = app.actors.ask_card(&card_id, pelago_actors::card::GetCard).await??;
    Ok((card, order))
}

/// Gateway mode top-up: the top-up waits in `pending_payment` for its order.
pub async fn topup_with_order(
    app: &Core,
    merchant: &MerchantRecord,
    card: &CardRecord,
    amount: Money,
    fee: Money,
    reference: Option<String>,
    binding: Option<String>,
) -> Result<TopupRecord, Error> {
    let account = bootstrap::funding_account(app, merchant).await?;
    let now = app.clock.now();
    let topup_id = TopupId::generate();
    let order = new_order(
        merchant,
        &card.id,
        Some(&topup_id),
        OrderKind::Topup,
        amount,
        fee,
        &account.merchant_id,
        now,
    )?;
    let amounts = (amount, fee, order.total);
    let paid_by = Some(order.id.clone());
    let topup = TopupRecord::new(
        topup_id.clone(),
        card,
        amounts,
        reference,
        paid_by,
        TopupStatus::PendingPayment,
        now,
    );
    let msg = CreateOrder { order, new_card: None, channel_cardholder_id: None, topup: Some(topup), binding };
    let (_, order) = app.actors.ask_card(&card.id, msg).await??;
    request_checkout(app, &order).await?;
    app.store.get::<TopupRecord>(topup_key(&card.id, &topup_id))?.ok_or_else(Error::internal)
}

/// What a gateway callback named about an order (SECURITY.md: a hint to ask);
/// `order_id` is what it was created under: a `pay_` id for a marketplace payment.
pub struct OrderNotice<'a> {
    /// The gateway account whose key signed the callback.
    pub signer: &'a str,
    pub event_id: &'a str,
    pub gateway_order_id: &'a str,
    pub order_id: &'a str,
    pub amount: Money,
}

impl OrderNotice<'_> {
    /// The record the notice names, bound (`facts` gives its gateway account,
    /// amount and gateway order id: created under the signing account, else
    /// 401) and compared (amount and currency, gateway order id, else 400).
    pub fn bound<R>(
        &self,
        app: &Core,
        named: Option<R>,
        facts: impl Fn(&R) -> (&str, Money, Option<&str>),
    ) -> Result<R, Error> {
        let Some(record) = named.filter(|r| facts(r).0 == self.signer) else {
            return Err(crate::flows::callback_rules::unbound(
                app,
                crate::metrics::CallbackSource::Gateway,
                self.signer,
                self.event_id,
                self.order_id,
            ));
        };
        let (_, amount, known) = facts(&record);
        if self.amount != amount {
            return Err(crate::flows::callback_rules::mismatch("amount or currency"));
        }
        if known.is_some_and(|known| known != self.gateway_order_id) || self.gateway_order_id.len() > 128 {
            return Err(crate::flows::callback_rules::mismatch("gateway order id"));
        }
        Ok(record)
    }
}

/// `ordconfirm/{order id}` → the gateway order id: a callback was received and
/// the gateway's answer to the confirming query is still unknown.
fn confirm_marker(id: &OrderId) -> Vec<u8> {
    crate::keys::Marker::OrderConfirm { order: id.clone() }.encode()
}

/// A gateway notice about one of our orders. Bound (the order was created
/// under the signing account, else 401), compared (amount, currency and
/// gateway order id, else 400), then confirmed by asking the gateway: the
/// order's status and amount come from that answer, never from the notice.
pub async fn on_order_update(app: &Core, notice: OrderNotice<'_>) -> Result<&'static str, Error> {
    let order = match OrderId::parse(notice.order_id) {
        Ok(id) => app.store.get::<OrderRecord>(id.as_bytes())?,
        Err(_) => None,
    };
    let order = notice.bound(app, order, |o| (&o.gateway_account, o.total, o.gateway_order_id.as_deref()))?;
    match confirm(app, &order, notice.gateway_order_id).await? {
        Confirmed::Applied => Ok("applied"),
        Confirmed::Unchanged => Ok("unchanged"),
        Confirmed::Unknown => {
            let mut batch = WriteBatch::new();
            batch.put_raw(Tree::Operations, confirm_marker(&order.id), notice.gateway_order_id.as_bytes());
            app.store.commit_durable(batch).await?;
            Ok("unconfirmed")
        }
        Confirmed::Contradicted(what) => Err(crate::flows::callback_rules::mismatch(what)),
    }
}

/// What asking the gateway about an order came to.
enum Confirmed {
    Applied,
    Unchanged,
    /// No answer: the resolver asks again (`ordconfirm/` marker).
    Unknown,
    /// The gateway does not hold this order under this account as named.
    Contradicted(&'static str),
}

/// Asks the gateway (under the account the order was created under) and
/// applies its answer: paid with the order's exact total, failed or expired.
async fn confirm(app: &Core, order: &OrderRecord, gateway_order_id: &str) -> Result<Confirmed, Error> {
    let (_, account) =
        bootstrap::account_by_id(app, &order.gateway_account).await?.ok_or_else(Error::internal)?;
    let answer = match app.upstreams.gateway.query_order(account, gateway_order_id.to_owned()).await {
        Outcome::Done(answer) => answer,
        Outcome::Unknown { detail } => {
            tracing::warn!(order_id = %order.id, detail, "gateway order query outcome unknown; retrying later");
            return Ok(Confirmed::Unknown);
        }
        Outcome::Declined { reason } => {
            tracing::warn!(order_id = %order.id, reason, "the gateway does not know the order a callback named");
            return Ok(Confirmed::Contradicted("gateway order id"));
        }
    };
    if answer.order_id != order.id.as_str() || answer.gateway_order_id != gateway_order_id {
        return Ok(Confirmed::Contradicted("gateway order id"));
    }
    if answer.amount != order.total {
        tracing::error!(order_id = %order.id, "the gateway holds this order with another amount; not booked");
        return Ok(Confirmed::Contradicted("amount or currency"));
    }
    let status = match answer.status {
        s @ (GatewayOrderStatus::Paid | GatewayOrderStatus::Failed | GatewayOrderStatus::Expired) => s,
        // Still pending (the notice ran ahead, or was forged), or refunded (recorded by `RefundOrder`).
        GatewayOrderStatus::Pending
        | GatewayOrderStatus::Refunded
        | GatewayOrderStatus::Authorized
        | GatewayOrderStatus::Canceled => return Ok(Confirmed::Unchanged),
    };
    if order.gateway_order_id.is_none() {
        // The checkout's creation answer was lost; the gateway's answer names it.
        app.actors
            .ask_card(&order.card_id, OrderCreated { order_id: order.id.clone(), gateway: answer.clone() })
            .await??;
    }
    let before = app.store.get::<OrderRecord>(order.id.as_bytes())?.map_or(0, |o| o.version);
    let at = answer.paid_at.unwrap_or_else(|| app.clock.now());
    let after =
        app.actors.ask_card(&order.card_id, SettleOrder { order_id: order.id.clone(), status, at }).await??;
    follow_up(app, &after).await?;
    Ok(if after.version == before { Confirmed::Unchanged } else { Confirmed::Applied })
}

/// After a paid order: book it, then open the card or fund the top-up.
async fn follow_up(app: &Core, order: &OrderRecord) -> Result<(), Error> {
    settle_markers(app, &order.id).await?;
    if order.status != OrderStatus::Paid {
        return Ok(());
    }
    match (&order.kind, &order.topup_id) {
        (OrderKind::ApplicationFee, _) => {
            let card = app.actors.ask_card(&order.card_id, pelago_actors::card::GetCard).await??;
            if card.status == CardStatus::Processing {
                app.actors.ask_card(&order.card_id, Resolve).await??;
                crate::flows::cards::settle_markers_of(app, &order.card_id).await?;
            }
        }
        (OrderKind::Topup, Some(tup)) => {
            let topup = app.actors.ask_card(&order.card_id, FundTopup(tup.clone())).await??;
            if topup.status == TopupStatus::Failed {
                settle_markers(app, &order.id).await?;
            }
        }
        _ => {}
    }
    // A refusal of the card or the top-up leaves a refund marker: settle it now.
    settle_markers(app, &order.id).await
}

/// Books a paid order (once) and refunds one that could not be delivered.
pub async fn settle_markers(app: &Core, id: &OrderId) -> Result<(), Error> {
    if app.store.contains(Tree::Operations, Marker::OrderBook { order: id.clone() }.encode())? {
        let order = app.store.get::<OrderRecord>(id.as_bytes())?.ok_or_else(Error::internal)?;
        let principal = (order.kind == OrderKind::Topup).then_some(order.principal);
        // A top-up's principal waits in `pending` for the T+1 settlement run.
        let index = principal.map(|p| {
            let at = order.paid_at.unwrap_or(order.created_at);
            (
                crate::flows::settlement::collection_key(at, order.id.as_str()),
                crate::flows::settlement::collection_value(&order.merchant_id, p, Some(order.id.as_str())),
            )
        });
        let entry = PostEntry {
            source_id: order.id.to_string(),
            kind: EntryKind::GatewayCollection,
            postings: ledger::gateway_collection(&order.merchant_id, principal, order.fee)?,
            event: None,
            index: index.into_iter().collect(),
        };
        app.actors.ask_merchant(&order.merchant_id, entry).await??;
        super::clear_marker(app, Marker::OrderBook { order: id.clone() }.encode()).await?;
    }
    if app.store.contains(Tree::Operations, Marker::OrderRefund { order: id.clone() }.encode())? {
        let order = app.store.get::<OrderRecord>(id.as_bytes())?.ok_or_else(Error::internal)?;
        if order.status == OrderStatus::Paid {
            let merchant =
                app.store.get::<MerchantRecord>(order.merchant_id.as_bytes())?.ok_or_else(Error::internal)?;
            let account = bootstrap::funding_account(app, &merchant).await?;
            let refund = Refund {
                request_id: format!("refund_{}", order.id),
                account,
                gateway_order_id: order.gateway_order_id.clone().ok_or_else(Error::internal)?,
                amount: order.total,
            };
            match app.upstreams.gateway.refund(refund).await {
                Outcome::Done(_) => {}
                Outcome::Declined { reason } => {
                    tracing::error!(order_id = %order.id, reason, "the gateway refused a refund; an operator must look");
                    return Ok(());
                }
                Outcome::Unknown { .. } => return Ok(()), // retried by the resolver with the same request id
            }
            let principal = (order.kind == OrderKind::Topup).then_some(order.principal);
            if principal.is_some() {
                // The refund takes the principal back out of `pending`: it is no longer to be settled.
                let at = order.paid_at.unwrap_or(order.created_at);
                let mut batch = WriteBatch::new();
                batch.delete(Tree::Index, crate::flows::settlement::collection_key(at, order.id.as_str()));
                app.store.commit_durable(batch).await?;
            }
            let entry = PostEntry {
                source_id: order.id.to_string(),
                kind: EntryKind::OrderRefund,
                postings: ledger::mirror(&ledger::gateway_collection(
                    &order.merchant_id,
                    principal,
                    order.fee,
                )?)?,
                event: None,
                index: vec![],
            };
            app.actors.ask_merchant(&order.merchant_id, entry).await??;
            app.actors.ask_card(&order.card_id, RefundOrder(order.id.clone())).await??;
        } else {
            super::clear_marker(app, Marker::OrderRefund { order: id.clone() }.encode()).await?;
        }
    }
    Ok(())
}

/// One resolver pass: checkouts whose creation outcome is unknown, and
/// bookings or refunds a crash left behind.
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let mut done = 0;
    for (marker, _) in
        super::due_markers(app, keys::ORDCREATE, super::Started::AfterFirstWord, super::grace_ms(app))?
    {
        let Marker::OrderCreate { order: id } = marker else { continue };
        if let Some(order) = app.store.get::<OrderRecord>(id.as_bytes())?
            && order.gateway_order_id.is_none()
            && order.status == OrderStatus::Pending
        {
            request_checkout(app, &order).await?;
            done += 1;
        } else {
            super::clear_marker(app, Marker::OrderCreate { order: id.clone() }.encode()).await?;
        }
    }
    for (marker, gateway_order_id) in super::markers(app, crate::keys::ORDCONFIRM)? {
        let crate::keys::Marker::OrderConfirm { order: id } = marker else { continue };
        let gateway_order_id = String::from_utf8_lossy(&gateway_order_id).into_owned();
        let keep = match app.store.get::<OrderRecord>(id.as_bytes())? {
            Some(order) => matches!(confirm(app, &order, &gateway_order_id).await?, Confirmed::Unknown),
            None => false,
        };
        if !keep {
            super::clear_marker(app, confirm_marker(&id)).await?;
            done += 1;
        }
    }
    for prefix in [keys::ORDBOOK, keys::ORDREFUND] {
        for marker in super::marker_keys(app, prefix)? {
            if let Marker::OrderBook { order: id } | Marker::OrderRefund { order: id } = marker {
                settle_markers(app, &id).await?;
                done += 1;
            }
        }
    }
    Ok(done)
}

/// An order of this merchant, or 404.
pub fn load_owned(app: &Core, merchant: &MerchantId, raw: &str) -> Result<OrderRecord, Error> {
    super::load_owned::<OrderId, _>(app, "order", raw, |o: &OrderRecord| &o.merchant_id == merchant)
}
