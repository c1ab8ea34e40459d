//! The card's state and its pure transitions: commands in, outcome out, no IO.
//! DOMAIN.md §State machines (Card) and API.md §4 (Transactions).

use pelago_storage::{
    CardId, CardholderId, ChannelId, Currency, MerchantId, Money, OrderId, Timestamp, TransactionId,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::Reject,
    history::{self, History, Source},
    ports::{ChannelTransaction, ChannelTxnStatus, ChannelTxnType},
};

crate::state_machine! {
    /// DOMAIN.md §State machines (Card).
    pub enum CardStatus ("card") {
        PendingPayment = "pending_payment" -> Processing | Canceled,
        Processing = "processing" -> Active | Failed,
        Active = "active" -> Frozen | Deleted,
        Frozen = "frozen" -> Active | Deleted,
        Deleted = "deleted",
        Failed = "failed",
        Canceled = "canceled",
    }
}

impl CardStatus {
    /// Billed by the monthly run.
    pub fn is_billable(self) -> bool {
        matches!(self, CardStatus::Active | CardStatus::Frozen)
    }
}

/// An action on an existing card waiting for an upstream outcome (API.md §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAction {
    pub kind: String,
    pub request_id: String,
    pub since: Timestamp,
}

/// The card as stored. Never holds a PAN, CVV or expiry: only `bin` and `last4`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRecord {
    pub id: CardId,
    pub merchant_id: MerchantId,
    pub cardholder_id: CardholderId,
    pub reference: Option<String>,
    pub card_name: String,
    pub bin: String,
    pub channel_id: ChannelId,
    pub channel_card_id: Option<String>,
    pub last4: Option<String>,
    pub status: CardStatus,
    pub currency: Currency,
    /// Mirror of the channel's available balance, minor units.
    pub balance_minor: i64,
    pub application_fee_order: Option<OrderId>,
    /// The application fee charged from the merchant's balance (master-account mode).
    pub application_fee_minor: i64,
    /// The channel request id of `open_card`, stored before the call.
    pub open_request_id: Option<String>,
    /// The channel's cardholder id (needed to open the card).
    pub channel_cardholder_id: Option<String>,
    pub pending_action: Option<PendingAction>,
    pub created_at: Timestamp,
    pub opened_at: Option<Timestamp>,
    pub version: u64,
    pub status_history: History<CardStatus>,
}

pelago_storage::record!(CardRecord, Cards, 1);

/// What a new card needs; the merchant flow decides the first status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCard {
    pub id: CardId,
    pub merchant_id: MerchantId,
    pub cardholder_id: CardholderId,
    pub reference: Option<String>,
    pub card_name: String,
    pub bin: String,
    pub channel_id: ChannelId,
    pub currency: Currency,
    pub status: CardStatus,
    pub application_fee_order: Option<OrderId>,
}

impl NewCard {
    /// A `PELAGO_VIRTUAL_USD` card (the Sandbox Issuer's USD product, BIN
    /// 424242) for a new cardholder: the card the tests, benches and seeds use.
    pub fn sandbox_usd(
        id: CardId,
        merchant_id: MerchantId,
        channel_id: ChannelId,
        status: CardStatus,
    ) -> NewCard {
        NewCard {
            id,
            merchant_id,
            cardholder_id: CardholderId::generate(),
            reference: None,
            card_name: "PELAGO_VIRTUAL_USD".into(),
            bin: "424242".into(),
            channel_id,
            currency: Currency::USD,
            status,
            application_fee_order: None,
        }
    }
}

impl CardRecord {
    /// The index rows every card has: its merchant's list and its cardholder's.
    pub fn index_rows(&self) -> [Vec<u8>; 2] {
        use crate::keys::Index;
        let (merchant, cardholder, card) =
            (self.merchant_id.clone(), self.cardholder_id.clone(), self.id.clone());
        [
            Index::MerchantCard { merchant, card: card.clone() }.encode(),
            Index::CardholderCard { cardholder, card }.encode(),
        ]
    }

    pub fn create(new: NewCard, at: Timestamp, source: Source) -> CardRecord {
        let history = History::created(new.status, source, at);
        CardRecord {
            id: new.id,
            merchant_id: new.merchant_id,
            cardholder_id: new.cardholder_id,
            reference: new.reference,
            card_name: new.card_name,
            bin: new.bin,
            channel_id: new.channel_id,
            channel_card_id: None,
            last4: None,
            status: new.status,
            currency: new.currency,
            balance_minor: 0,
            application_fee_order: new.application_fee_order,
            application_fee_minor: 0,
            open_request_id: None,
            channel_cardholder_id: None,
            pending_action: None,
            created_at: at,
            opened_at: None,
            version: 1,
            status_history: history,
        }
    }

    pub fn balance(&self) -> Money {
        Money::new(self.balance_minor, self.currency)
    }

    /// Checks a transition without applying it.
    pub fn check_transition(&self, to: CardStatus, action: &str) -> Result<(), Reject> {
        if self.status.can_become(to) {
            Ok(())
        } else {
            Err(Reject::state(format!("cannot {action} a card that is {}", self.status.as_str())))
        }
    }

    /// Applies a transition: status, history, version. The refusal names the
    /// action (`cannot freeze a card that is deleted`).
    pub fn transition(
        &mut self,
        to: CardStatus,
        action: &str,
        reason: Option<String>,
        source: Source,
        at: Timestamp,
    ) -> Result<(), Reject> {
        self.check_transition(to, action)?;
        history::record(&mut self.status_history, self.status, to, reason, source, at)?;
        self.status = to;
        self.version += 1;
        Ok(())
    }

    /// Records the channel's answer to `open_card`.
    pub fn mark_opened(
        &mut self,
        channel_card_id: String,
        last4: String,
        balance: Money,
        at: Timestamp,
    ) -> Result<(), Reject> {
        self.transition(CardStatus::Active, "open", None, Source::Channel, at)?;
        self.channel_card_id = Some(channel_card_id);
        self.last4 = Some(last4);
        self.balance_minor = balance.value;
        self.opened_at = Some(at);
        Ok(())
    }

    /// Changes the mirrored balance by `delta_minor`, checked.
    pub fn adjust_balance(&mut self, delta_minor: i64) -> Result<(), Reject> {
        self.balance_minor = self
            .balance_minor
            .checked_add(delta_minor)
            .ok_or_else(|| Reject::invalid("amount", "card balance would overflow"))?;
        self.version += 1;
        Ok(())
    }
}

/// A card transaction as stored, once per channel transaction id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRecord {
    pub id: TransactionId,
    pub card_id: CardId,
    pub merchant_id: MerchantId,
    pub channel_transaction_id: String,
    pub kind: ChannelTxnType,
    pub status: ChannelTxnStatus,
    pub amount: Money,
    pub merchant_name: String,
    pub mcc: String,
    pub related_channel_transaction_id: Option<String>,
    pub occurred_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// What this transaction has done to the card's mirrored balance so far.
    pub balance_effect_minor: i64,
    pub version: u64,
}

pelago_storage::record!(TransactionRecord, Transactions, 1);

/// The effect of a transaction in a given state on the card's available balance
/// (API.md §4): a pending or posted authorization reduces it; a clearing of a
/// known authorization does not reduce it twice; a reversal or refund restores
/// it; a declined or reversed one changes nothing.
pub fn balance_effect(
    kind: ChannelTxnType,
    status: ChannelTxnStatus,
    amount: i64,
    clears_known_auth: bool,
) -> i64 {
    use ChannelTxnStatus as S;
    use ChannelTxnType as T;
    match (kind, status) {
        (_, S::Declined) | (T::Authorization, S::Reversed) => 0,
        (T::Authorization, S::Pending | S::Posted) => -amount,
        (T::Clearing, _) if clears_known_auth => 0,
        (T::Clearing, S::Pending | S::Posted) => -amount,
        (T::Clearing, S::Reversed) => 0,
        (T::Reversal | T::Refund, S::Pending | S::Posted | S::Reversed) => amount,
    }
}

/// What applying a channel transaction changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionChange {
    /// Seen before in the same state: nothing to write.
    Unchanged,
    Created(TransactionRecord),
    Updated(TransactionRecord),
}

/// Applies a channel transaction to the card (pure). `existing` is the stored
/// record for the same channel transaction id; `clears_known_auth` says whether
/// a clearing's authorization is stored for this card.
pub fn apply_transaction(
    card: &mut CardRecord,
    existing: Option<&TransactionRecord>,
    txn: &ChannelTransaction,
    clears_known_auth: bool,
    new_id: TransactionId,
    at: Timestamp,
) -> Result<TransactionChange, Reject> {
    if txn.amount.currency != card.currency {
        return Err(Reject::invalid("amount.currency", "transaction currency differs from the card's"));
    }
    if txn.amount.value <= 0 {
        return Err(Reject::invalid("amount.value", "transaction amount must be positive"));
    }
    let effect = balance_effect(txn.kind, txn.status, txn.amount.value, clears_known_auth);
    match existing {
        Some(old) if old.status == txn.status && old.amount == txn.amount => Ok(TransactionChange::Unchanged),
        Some(old) => {
            let delta = effect
                .checked_sub(old.balance_effect_minor)
                .ok_or_else(|| Reject::invalid("amount", "balance arithmetic overflowed"))?;
            card.adjust_balance(delta)?;
            let mut updated = old.clone();
            updated.status = txn.status;
            updated.amount = txn.amount;
            updated.updated_at = at;
            updated.balance_effect_minor = effect;
            updated.version += 1;
            Ok(TransactionChange::Updated(updated))
        }
        None => {
            card.adjust_balance(effect)?;
            Ok(TransactionChange::Created(TransactionRecord {
                id: new_id,
                card_id: card.id.clone(),
                merchant_id: card.merchant_id.clone(),
                channel_transaction_id: txn.channel_transaction_id.clone(),
                kind: txn.kind,
                status: txn.status,
                amount: txn.amount,
                merchant_name: txn.merchant_name.clone(),
                mcc: txn.mcc.clone(),
                related_channel_transaction_id: txn.related_transaction_id.clone(),
                occurred_at: txn.occurred_at,
                created_at: at,
                updated_at: at,
                balance_effect_minor: effect,
                version: 1,
            }))
        }
    }
}

#[cfg(test)]
mod tests;
