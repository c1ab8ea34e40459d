//! Refunds of marketplace payments (MARKETPLACE.md §7), pure: §7's checks 1–6
//! in their order against the payment as it is ([`plan`]), the record, and
//! what a refund does to its payment when accepted and, should the gateway
//! refuse it, when undone. Check 7 (a debited account below zero) is the
//! merchant actor's booking refusing the `marketplace_refund` entry whole.

use pelago_storage::{MerchantId, Money, PaymentId, RecipientId, RefundId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{PaymentRecord, PaymentStatus, SplitStatus};
use crate::{
    error::Reject,
    history::{History, Source, Stateful},
    ledger::{Posting, marketplace},
};

crate::state_machine! {
    /// A refund: `processing` until the gateway answers.
    pub enum RefundStatus ("refund") {
        Processing = "processing" -> Succeeded | Failed,
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

/// §7 check 1: a refund is asked at most this long after the capture.
pub const REFUND_WINDOW_MS: i64 = 365 * 24 * 3600 * 1000;

/// One split portion: what line `line`'s party gives back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPortion {
    pub line: u32,
    pub recipient_id: Option<RecipientId>,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub id: RefundId,
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    /// The channel portion `C`, to the buyer (0: split-only, no gateway call).
    pub amount: Money,
    pub splits: Vec<RefundPortion>,
    pub reason: Option<String>,
    pub status: RefundStatus,
    pub failure_reason: Option<String>,
    /// Stored before the gateway call, reused on every retry.
    pub request_id: String,
    pub gateway_account: String,
    pub gateway_order_id: String,
    pub gateway_refund_id: Option<String>,
    /// The split had executed when it was accepted: its entry moved available balances.
    pub after_split: bool,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub version: u64,
    pub status_history: History<RefundStatus>,
}

pelago_storage::record!(RefundRecord, Refunds, 1);

crate::stateful!(RefundRecord, RefundStatus);

/// One portion as asked: the line index as given and its amount as parsed
/// (`Err`: the amount's own 400, answered at check 5).
#[derive(Debug, Clone)]
pub struct PortionAsk {
    pub line: i64,
    pub amount: Result<Money, Reject>,
}

/// A refund as asked (`amount`'s parse error is answered at check 3).
#[derive(Debug, Clone)]
pub struct RefundAsk {
    pub amount: Option<Result<Money, Reject>>,
    pub splits: Option<Vec<PortionAsk>>,
    pub reason: Option<String>,
}

impl RefundAsk {
    /// `cancel-or-refund`'s refund of the rest: channel `amount − refunded_amount`,
    /// each line its unreversed rest.
    pub fn rest_of(payment: &PaymentRecord) -> RefundAsk {
        let currency = payment.amount.currency;
        let splits = payment
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.amount.value > l.refunded)
            .map(|(i, l)| PortionAsk {
                line: i as i64,
                amount: Ok(Money::new(l.amount.value - l.refunded, currency)),
            })
            .collect();
        RefundAsk {
            amount: Some(Ok(Money::new(payment.amount.value - payment.refunded_amount, currency))),
            splits: Some(splits),
            reason: None,
        }
    }
}

/// What a refund that passed checks 1–6 moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundPlan {
    pub channel: Money,
    pub portions: Vec<RefundPortion>,
    pub after_split: bool,
}

fn portion_param(j: usize, field: &str) -> String {
    format!("splits[{j}].{field}")
}

/// §7's refund checks 1–6 in their order against `payment` at `now`.
pub fn plan(payment: &PaymentRecord, ask: &RefundAsk, now: Timestamp) -> Result<RefundPlan, Reject> {
    let portions_asked = ask.splits.as_deref().filter(|s| !s.is_empty());
    let after_split = check_refundable(payment, ask, now)?;
    // 2: something to refund; before the split, the buyer's part.
    if (ask.amount.is_none() && portions_asked.is_none()) || (!after_split && ask.amount.is_none()) {
        return Err(Reject::invalid(
            "amount",
            if after_split {
                "give amount (to the buyer), splits (from the parties), or both"
            } else {
                "before the split a refund gives an amount back to the buyer"
            },
        ));
    }
    let channel = channel_portion(payment, ask)?;
    let asked = portions_asked.unwrap_or_default();
    check_line_indexes(payment, asked)?;
    let mut portions = line_portions(payment, asked)?;
    if !after_split {
        give_back_what_the_buyer_gets(payment, channel, &mut portions)?;
    }
    Ok(RefundPlan { channel, portions, after_split })
}

/// 1: status, split processing, the window; `Ok(after_split)`.
fn check_refundable(payment: &PaymentRecord, ask: &RefundAsk, now: Timestamp) -> Result<bool, Reject> {
    let refundable = match payment.status {
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded => true,
        PaymentStatus::Refunded => ask.amount.is_none(),
        _ => false,
    };
    if !refundable {
        return Err(Reject::state(format!(
            "a {} payment cannot be refunded{}",
            payment.status.as_str(),
            if payment.status == PaymentStatus::Refunded { " to the buyer again" } else { "" }
        )));
    }
    if payment.split.status == SplitStatus::Processing {
        return Err(Reject::state("the payment's split is processing"));
    }
    let captured_at = payment.captured_at.ok_or_else(|| Reject::state("the payment was never captured"))?;
    if now.unix_ms().saturating_sub(captured_at.unix_ms()) > REFUND_WINDOW_MS {
        return Err(Reject::state("a payment is refunded at most 365 days after its capture"));
    }
    Ok(payment.split.status == SplitStatus::Executed)
}

/// 3: the channel portion (zero if none asked), within what is left to refund.
fn channel_portion(payment: &PaymentRecord, ask: &RefundAsk) -> Result<Money, Reject> {
    let currency = payment.amount.currency;
    match &ask.amount {
        None => Ok(Money::zero(currency)),
        Some(Err(e)) => Err(e.clone()),
        Some(Ok(m)) if m.currency != currency => {
            Err(Reject::invalid("amount.currency", "the refund's currency must be the payment's"))
        }
        Some(Ok(m)) if payment.refunded_amount.saturating_add(m.value) > payment.amount.value => {
            Err(Reject::invalid(
                "amount.value",
                format!(
                    "at most {} minor units are left to refund",
                    payment.amount.value - payment.refunded_amount
                ),
            ))
        }
        Some(Ok(m)) => Ok(*m),
    }
}

/// 4: lines are indexes, each once.
fn check_line_indexes(payment: &PaymentRecord, asked: &[PortionAsk]) -> Result<(), Reject> {
    for (j, p) in asked.iter().enumerate() {
        let index_ok = usize::try_from(p.line).is_ok_and(|i| i < payment.lines.len());
        if !index_ok || asked[..j].iter().any(|q| q.line == p.line) {
            return Err(Reject::invalid(
                portion_param(j, "line"),
                "not a line index of the payment, or repeated",
            ));
        }
    }
    Ok(())
}

/// 5: each portion, within its line's unreversed rest.
fn line_portions(payment: &PaymentRecord, asked: &[PortionAsk]) -> Result<Vec<RefundPortion>, Reject> {
    let mut portions = Vec::with_capacity(asked.len());
    for (j, p) in asked.iter().enumerate() {
        let amount = match &p.amount {
            Err(Reject::InvalidRequest { param: Some(param), message }) => {
                return Err(Reject::invalid(format!("splits[{j}].{param}"), message.clone()));
            }
            Err(e) => return Err(e.clone()),
            Ok(m) => *m,
        };
        if amount.currency != payment.amount.currency {
            return Err(Reject::invalid(
                portion_param(j, "amount.currency"),
                "a portion's currency must be the payment's",
            ));
        }
        let line = &payment.lines[p.line as usize];
        if line.refunded.saturating_add(amount.value) > line.amount.value {
            return Err(Reject::invalid(
                portion_param(j, "amount.value"),
                format!(
                    "at most {} minor units of this line are left to refund",
                    line.amount.value - line.refunded
                ),
            ));
        }
        portions.push(RefundPortion { line: p.line as u32, recipient_id: line.recipient_id.clone(), amount });
    }
    Ok(portions)
}

/// 6: before the split the parties give back exactly what the buyer gets (a
/// payment of one line: that line, when none is named).
fn give_back_what_the_buyer_gets(
    payment: &PaymentRecord,
    channel: Money,
    portions: &mut Vec<RefundPortion>,
) -> Result<(), Reject> {
    if !portions.is_empty() {
        if portions.iter().map(|p| p.amount.value).sum::<i64>() != channel.value {
            return Err(Reject::invalid("splits", "before the split the portions add up to amount"));
        }
        return Ok(());
    }
    if payment.lines.len() != 1 {
        return Err(Reject::invalid(
            "splits",
            "a payment of several lines names the lines a refund takes from",
        ));
    }
    portions.push(RefundPortion {
        line: 0,
        recipient_id: payment.lines[0].recipient_id.clone(),
        amount: channel,
    });
    Ok(())
}

impl RefundRecord {
    /// The `marketplace_refund` entry's postings (§7).
    pub fn postings(&self) -> Result<Vec<Posting>, Reject> {
        let parties: Vec<_> = self
            .splits
            .iter()
            .map(|p| {
                let party = match &p.recipient_id {
                    Some(r) => marketplace::Party::Recipient(r.clone()),
                    None => marketplace::Party::Merchant(self.merchant_id.clone()),
                };
                (party, p.amount)
            })
            .collect();
        marketplace::refund(&self.merchant_id, &parties, self.amount, self.after_split)
    }

    /// Ends the refund (`Err`: the gateway refused it, with the reason).
    pub fn finish(&mut self, outcome: Result<Option<String>, String>, at: Timestamp) -> Result<(), Reject> {
        match outcome {
            Ok(gateway_refund_id) => {
                self.transition(RefundStatus::Succeeded, None, Source::Gateway, at)?;
                self.gateway_refund_id = gateway_refund_id;
            }
            Err(reason) => {
                self.transition(RefundStatus::Failed, Some(reason.clone()), Source::Gateway, at)?;
                self.failure_reason = Some(reason);
            }
        }
        self.completed_at = Some(at);
        Ok(())
    }
}

impl PaymentRecord {
    /// Applies an accepted refund (`sign` 1) or undoes a refused one (`sign`
    /// −1): per-line `refunded`, `refunded_amount`, and the status it implies
    /// (REFUNDED at `amount`, PARTIALLY_REFUNDED above 0, SUCCEEDED at 0).
    /// Whether the status moved (`payment.refunded`).
    pub fn take_refund(&mut self, refund: &RefundRecord, sign: i64, at: Timestamp) -> Result<bool, Reject> {
        for p in &refund.splits {
            let line = self.lines.get_mut(p.line as usize).ok_or_else(|| Reject::state("no such line"))?;
            line.refunded += sign * p.amount.value;
            if line.refunded < 0 || line.refunded > line.amount.value {
                return Err(Reject::state("a line's refunds would leave its bounds"));
            }
        }
        self.refunded_amount += sign * refund.amount.value;
        if self.refunded_amount < 0 || self.refunded_amount > self.amount.value {
            return Err(Reject::state("the payment's refunds would leave its bounds"));
        }
        self.version += 1;
        let to = match self.refunded_amount {
            0 => PaymentStatus::Succeeded,
            r if r == self.amount.value => PaymentStatus::Refunded,
            _ => PaymentStatus::PartiallyRefunded,
        };
        if to == self.status {
            return Ok(false);
        }
        let (reason, source) = if sign < 0 {
            (Some("a refund failed".to_owned()), Source::Gateway)
        } else {
            (None, Source::Merchant)
        };
        self.transition(to, reason, source, at)?;
        self.version -= 1; // one change, one version
        Ok(true)
    }
}
