//! Business orders paid through the gateway's checkout (gateway funding mode):
//! the application fee of a card, or a top-up (DOMAIN.md: Order
//! `pending → paid | failed | expired`, `paid → refunded`). An order belongs to
//! its card, so the card's actor is its single writer.
//!
//! `CreateOrder` commits the order (with its gateway request id) and what it
//! pays for — a card in `pending_payment`, or a top-up in `pending_payment` —
//! with a marker `ordcreate/{id}`; the binary then asks the gateway for a
//! checkout (`OrderCreated` / `OrderCreateFailed`). `SettleOrder` applies the
//! gateway's paid / failed / expired notice: paid moves the card to
//! `processing` (opened next) or the top-up to `processing` (funded next) and
//! leaves a marker `ordbook/{id}` for the ledger; failed or expired cancels.
//! When what was paid for cannot be delivered, `RefundOrder` marks it
//! refunded after the gateway refunded it.

use actix::Message;
use pelago_storage::{CardId, FlushTicket, MerchantId, Money, OrderId, Timestamp, TopupId, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{
    actor::{CardActor, cell},
    state::{CardRecord, CardStatus, NewCard},
    topup::{TopupPhase, TopupRecord, TopupStatus, marker_value, topup_key},
};
use crate::{
    error::{ActorResult, Reject},
    history::{History, Source, Stateful},
    keys::{Index, Marker},
    outbox::{self, EventObject},
    ports::{GatewayOrder, GatewayOrderStatus},
    runtime::durable_handler,
};

crate::wire_enum! {
    pub enum OrderKind {
        ApplicationFee = "application_fee",
        Topup = "topup",
        MonthlyFee = "monthly_fee",
    }
}

crate::state_machine! {
    /// DOMAIN.md §State machines (Order): `paid → refunded` when what it paid
    /// for could not be delivered.
    pub enum OrderStatus ("order") {
        Pending = "pending" -> Paid | Failed | Expired,
        Paid = "paid" -> Refunded,
        Failed = "failed",
        Expired = "expired",
        Refunded = "refunded",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub id: OrderId,
    pub merchant_id: MerchantId,
    pub card_id: CardId,
    pub topup_id: Option<TopupId>,
    pub kind: OrderKind,
    pub principal: Money,
    pub fee: Money,
    pub total: Money,
    pub status: OrderStatus,
    /// The gateway account (`merchant_id` at the gateway) it was created under.
    pub gateway_account: String,
    pub request_id: String,
    pub gateway_order_id: Option<String>,
    pub checkout_url: Option<String>,
    pub created_at: Timestamp,
    pub paid_at: Option<Timestamp>,
    pub version: u64,
    pub status_history: History<OrderStatus>,
}

pelago_storage::record!(OrderRecord, Orders, 1);

crate::stateful!(OrderRecord, OrderStatus);

/// Commits a new order and what it pays for.
#[derive(Debug)]
pub struct CreateOrder {
    pub order: OrderRecord,
    /// An application-fee order creates the card (in `pending_payment`).
    pub new_card: Option<NewCard>,
    /// The card's channel cardholder id (to open it once paid).
    pub channel_cardholder_id: Option<String>,
    /// A top-up order creates the top-up (in `pending_payment`).
    pub topup: Option<TopupRecord>,
    pub binding: Option<String>,
}
impl Message for CreateOrder {
    type Result = ActorResult<(CardRecord, OrderRecord)>;
}

/// The gateway created the checkout.
#[derive(Debug)]
pub struct OrderCreated {
    pub order_id: OrderId,
    pub gateway: GatewayOrder,
}
impl Message for OrderCreated {
    type Result = ActorResult<OrderRecord>;
}

/// The gateway refused to create the checkout: the order failed, what it paid for is canceled.
#[derive(Debug)]
pub struct OrderCreateFailed {
    pub order_id: OrderId,
    pub reason: String,
}
impl Message for OrderCreateFailed {
    type Result = ActorResult<OrderRecord>;
}

/// The gateway's notice: paid, failed or expired (repeats have no effect).
#[derive(Debug)]
pub struct SettleOrder {
    pub order_id: OrderId,
    pub status: GatewayOrderStatus,
    pub at: Timestamp,
}
impl Message for SettleOrder {
    type Result = ActorResult<OrderRecord>;
}

/// The gateway refunded a paid order.
#[derive(Debug)]
pub struct RefundOrder(pub OrderId);
impl Message for RefundOrder {
    type Result = ActorResult<OrderRecord>;
}

impl CardActor {
    /// Stores `order`, stages its `event`, and commits with the card (whose
    /// version moves so the card's fence covers the order's writes).
    fn commit_order(
        &mut self,
        mut card: CardRecord,
        order: OrderRecord,
        mut batch: WriteBatch,
        event: &str,
        now: Timestamp,
    ) -> ActorResult<(OrderRecord, Option<FlushTicket>)> {
        batch.put(order.id.as_bytes(), &order)?;
        outbox::stage(
            &mut batch,
            &order.merchant_id,
            event,
            EventObject::Order(Box::new(order.clone())),
            now,
        )?;
        card.version += 1;
        let ticket = self.cell_mut().persist(card, batch)?;
        Ok((order, Some(ticket)))
    }

    fn load_order(&self, id: &OrderId) -> ActorResult<OrderRecord> {
        let order =
            self.store().get::<OrderRecord>(id.as_bytes())?.ok_or(Reject::NotFound { what: "order" })?;
        Ok(order)
    }

    fn create_order(
        &mut self,
        msg: CreateOrder,
    ) -> ActorResult<((CardRecord, OrderRecord), Option<FlushTicket>)> {
        if let Some(answer) = self.bound_monthly_fee(&msg)? {
            return Ok((answer, None));
        }
        let mut batch = WriteBatch::new();
        let card = match (msg.new_card, self.cell_mut().record().cloned()) {
            (Some(_), Some(existing)) => {
                // A repeat of an application-fee order: its card exists already.
                let order = match &existing.application_fee_order {
                    Some(o) => self.load_order(o)?,
                    None => return Err(Reject::state("the card exists without an order").into()),
                };
                return Ok(((existing, order), None));
            }
            (Some(new), None) => {
                let mut card = CardRecord::create(new, self.now(), Source::Merchant);
                card.application_fee_order = Some(msg.order.id.clone());
                card.application_fee_minor = msg.order.fee.value;
                card.channel_cardholder_id = msg.channel_cardholder_id;
                for row in card.index_rows() {
                    batch.put_raw(Tree::Index, row, []);
                }
                card
            }
            (None, Some(existing)) => takes_order(existing, msg.order.kind)?,
            (None, None) => return Err(Reject::NotFound { what: "card" }.into()),
        };
        stage_new_order(&mut batch, &card, &msg.order, msg.topup.as_ref(), msg.binding.as_deref())?;
        let ticket = self.cell_mut().persist(card.clone(), batch)?;
        Ok(((card, msg.order), Some(ticket)))
    }

    /// This period's monthly-fee order, when its binding exists (another run,
    /// or a retry): answered as it is, decided here, where concurrent requests
    /// for the card are ordered.
    fn bound_monthly_fee(&mut self, msg: &CreateOrder) -> ActorResult<Option<(CardRecord, OrderRecord)>> {
        let Some(b) = &msg.binding else { return Ok(None) };
        if msg.order.kind != OrderKind::MonthlyFee {
            return Ok(None);
        }
        let Some(bound) = self.store().get_raw(Tree::Index, b)? else { return Ok(None) };
        let id = OrderId::parse(&String::from_utf8_lossy(&bound))
            .map_err(|_| Reject::state("the monthly-fee binding names no order"))?;
        let card = self.cell_mut().existing("card")?.clone();
        Ok(Some((card, self.load_order(&id)?)))
    }

    fn order_created(
        &mut self,
        id: &OrderId,
        gw: GatewayOrder,
    ) -> ActorResult<(OrderRecord, Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        let mut order = self.load_order(id)?;
        if order.gateway_order_id.is_some() {
            return Ok((order, None));
        }
        let now = self.now();
        order.gateway_order_id = Some(gw.gateway_order_id.clone());
        order.checkout_url = Some(gw.checkout_url);
        order.version += 1;
        let mut batch = WriteBatch::new();
        batch.put_raw(
            Tree::Index,
            Index::GatewayOrder { gateway_order: gw.gateway_order_id.clone() }.encode(),
            order.id.as_bytes(),
        );
        batch.delete(Tree::Operations, Marker::OrderCreate { order: id.clone() }.encode());
        self.commit_order(card, order, batch, "order.created", now)
    }

    /// Ends an unpaid order (`failed` / `expired`) and cancels what it was for.
    fn end_unpaid(
        &mut self,
        mut order: OrderRecord,
        to: OrderStatus,
        reason: Option<String>,
    ) -> ActorResult<(OrderRecord, Option<FlushTicket>)> {
        let mut card = self.cell_mut().existing("card")?.clone();
        if order.status != OrderStatus::Pending {
            return Ok((order, None));
        }
        let now = self.now();
        let mut batch = WriteBatch::new();
        order.transition(to, reason.clone(), Source::Gateway, now)?;
        batch.put(order.id.as_bytes(), &order)?;
        batch.delete(Tree::Operations, Marker::OrderCreate { order: order.id.clone() }.encode());
        let event = if to == OrderStatus::Failed { "order.failed" } else { "order.expired" };
        outbox::stage(
            &mut batch,
            &order.merchant_id,
            event,
            EventObject::Order(Box::new(order.clone())),
            now,
        )?;
        match (&order.kind, &order.topup_id) {
            (OrderKind::ApplicationFee, _) if card.status == CardStatus::PendingPayment => {
                card.transition(
                    CardStatus::Canceled,
                    "cancel",
                    Some(format!("order {}", to.as_str())),
                    Source::Gateway,
                    now,
                )?;
                outbox::stage(
                    &mut batch,
                    &card.merchant_id,
                    "card.canceled",
                    EventObject::Card(Box::new(card.clone())),
                    now,
                )?;
            }
            (OrderKind::Topup, Some(tup)) => {
                let mut topup = self.load_topup(tup)?;
                if topup.status == TopupStatus::PendingPayment {
                    topup.transition(TopupStatus::Canceled, reason, Source::Gateway, now)?;
                    topup.phase = TopupPhase::Done;
                    topup.completed_at = Some(now);
                    batch.put(topup_key(&card.id, tup), &topup)?;
                    outbox::stage(
                        &mut batch,
                        &card.merchant_id,
                        "topup.canceled",
                        EventObject::Topup(Box::new(topup)),
                        now,
                    )?;
                }
                card.version += 1;
            }
            _ => card.version += 1,
        }
        let ticket = self.cell_mut().persist(card, batch)?;
        Ok((order, Some(ticket)))
    }

    fn settle_order(&mut self, msg: SettleOrder) -> ActorResult<(OrderRecord, Option<FlushTicket>)> {
        let mut order = self.load_order(&msg.order_id)?;
        match msg.status {
            GatewayOrderStatus::Failed => {
                return self.end_unpaid(order, OrderStatus::Failed, Some("payment failed".into()));
            }
            GatewayOrderStatus::Expired => {
                return self.end_unpaid(order, OrderStatus::Expired, Some("checkout expired".into()));
            }
            GatewayOrderStatus::Paid => {}
            // Pending is no news; refunds are recorded by `RefundOrder`.
            // Authorized and canceled belong to marketplace payments, never to a card's order.
            GatewayOrderStatus::Pending
            | GatewayOrderStatus::Refunded
            | GatewayOrderStatus::Authorized
            | GatewayOrderStatus::Canceled => return Ok((order, None)),
        }
        if order.status != OrderStatus::Pending {
            return Ok((order, None)); // a repeat, or paid after it had failed: no second effect
        }
        let mut card = self.cell_mut().existing("card")?.clone();
        let now = self.now();
        let mut batch = WriteBatch::new();
        order.transition(OrderStatus::Paid, None, Source::Gateway, now)?;
        order.paid_at = Some(now); // the service clock (DOMAIN.md); the gateway's own time is in msg.at
        batch.put(order.id.as_bytes(), &order)?;
        batch.put_raw(
            Tree::Operations,
            Marker::OrderBook { order: order.id.clone() }.encode(),
            card.id.as_bytes(),
        );
        batch.delete(Tree::Operations, Marker::OrderCreate { order: order.id.clone() }.encode());
        outbox::stage(
            &mut batch,
            &order.merchant_id,
            "order.paid",
            EventObject::Order(Box::new(order.clone())),
            now,
        )?;
        self.stage_paid_effect(&mut card, &order, &mut batch, now)?;
        let ticket = self.cell_mut().persist(card, batch)?;
        Ok((order, Some(ticket)))
    }

    /// What a paid order was for: an application fee starts opening its card
    /// (the `Open` marker, with the request id the resolver or the binary
    /// uses), a top-up's funding starts (its `Topup` marker).
    fn stage_paid_effect(
        &mut self,
        card: &mut CardRecord,
        order: &OrderRecord,
        batch: &mut WriteBatch,
        now: Timestamp,
    ) -> ActorResult<()> {
        match (&order.kind, &order.topup_id) {
            (OrderKind::ApplicationFee, _) if card.status == CardStatus::PendingPayment => {
                card.transition(
                    CardStatus::Processing,
                    "open",
                    Some("application fee paid".into()),
                    Source::Gateway,
                    now,
                )?;
                card.open_request_id = Some(format!("req_{}", pelago_storage::ids::new_ulid()));
                // Opened by the resolver (or right away by the binary) with this request id.
                batch.put_raw(
                    Tree::Operations,
                    Marker::Open { card: card.id.clone() }.encode(),
                    0i64.to_be_bytes().to_vec(),
                );
            }
            (OrderKind::Topup, Some(tup)) => {
                let mut topup = self.load_topup(tup)?;
                if topup.status == TopupStatus::PendingPayment {
                    topup.transition(
                        TopupStatus::Processing,
                        Some("order paid".into()),
                        Source::Gateway,
                        now,
                    )?;
                    topup.phase = TopupPhase::Funding;
                    batch.put(topup_key(&card.id, tup), &topup)?;
                    batch.put_raw(
                        Tree::Operations,
                        Marker::Topup { topup: tup.clone() }.encode(),
                        marker_value(&card.id, Timestamp(0)),
                    );
                }
                card.version += 1;
            }
            _ => card.version += 1,
        }
        Ok(())
    }

    fn refund_order(&mut self, id: &OrderId) -> ActorResult<(OrderRecord, Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        let mut order = self.load_order(id)?;
        if order.status != OrderStatus::Paid {
            return Ok((order, None));
        }
        let now = self.now();
        let mut batch = WriteBatch::new();
        order.transition(
            OrderStatus::Refunded,
            Some("could not be delivered".into()),
            Source::System,
            now,
        )?;
        batch.delete(Tree::Operations, Marker::OrderRefund { order: id.clone() }.encode());
        self.commit_order(card, order, batch, "order.refunded", now)
    }
}

durable_handler!(CardActor, cell, CreateOrder => (CardRecord, OrderRecord), |act, msg| act.create_order(msg));

durable_handler!(CardActor, cell, OrderCreated => OrderRecord, |act, msg| {
    act.order_created(&msg.order_id, msg.gateway)
});

durable_handler!(CardActor, cell, OrderCreateFailed => OrderRecord, |act, msg| {
    let order = act.load_order(&msg.order_id)?;
    act.end_unpaid(order, OrderStatus::Failed, Some(msg.reason))
});

durable_handler!(CardActor, cell, SettleOrder => OrderRecord, |act, msg| act.settle_order(msg));

durable_handler!(CardActor, cell, RefundOrder => OrderRecord, |act, msg| act.refund_order(&msg.0));

/// An existing card taking a new order: a monthly fee is owed by every
/// billable card (frozen ones too, DOMAIN.md); a top-up needs an active card.
fn takes_order(mut card: CardRecord, kind: OrderKind) -> ActorResult<CardRecord> {
    let allowed = match kind {
        OrderKind::MonthlyFee => card.status.is_billable(),
        _ => card.status == CardStatus::Active,
    };
    if !allowed {
        return Err(Reject::state(format!(
            "cannot add a {} order to a card that is {}",
            kind.as_str(),
            card.status.as_str()
        ))
        .into());
    }
    card.version += 1;
    Ok(card)
}

/// A new order's rows: the top-up it pays for, the order, its merchant index
/// row, the `OrderCreate` marker and the Idempotency-Key binding (naming the
/// top-up, the monthly-fee order or the card).
fn stage_new_order(
    batch: &mut WriteBatch,
    card: &CardRecord,
    order: &OrderRecord,
    topup: Option<&TopupRecord>,
    binding: Option<&str>,
) -> ActorResult<()> {
    if let Some(topup) = topup {
        batch.expect_absent(Tree::Topups, topup_key(&card.id, &topup.id));
        batch.put(topup_key(&card.id, &topup.id), topup)?;
        batch.put_raw(Tree::Index, Index::Topup { topup: topup.id.clone() }.encode(), card.id.as_bytes());
    }
    batch.expect_absent(Tree::Orders, order.id.as_bytes());
    batch.put(order.id.as_bytes(), order)?;
    batch.put_raw(
        Tree::Index,
        Index::MerchantOrder { merchant: order.merchant_id.clone(), order: order.id.clone() }.encode(),
        [],
    );
    batch.put_raw(
        Tree::Operations,
        Marker::OrderCreate { order: order.id.clone() }.encode(),
        marker_value(&card.id, Timestamp::now_real()),
    );
    if let Some(b) = binding {
        let bound = match (topup, order.kind) {
            (Some(t), _) => t.id.to_string(),
            (None, OrderKind::MonthlyFee) => order.id.to_string(),
            (None, _) => card.id.to_string(),
        };
        batch.put_raw(Tree::Index, b, bound.into_bytes());
    }
    Ok(())
}
