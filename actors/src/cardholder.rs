//! Cardholders: `pending → active | rejected` (the channel decides, by its
//! answer or a callback). A cardholder is bound to the BIN chosen at creation.
//! Pure record and transitions; written with compare-and-set by its owner
//! (`src/cardholders.rs`), which calls the channel outside any actor so a
//! slow channel never blocks the merchant.

use pelago_storage::{CardholderId, ChannelId, MerchantId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{
    error::Reject,
    history::{History, Source, Stateful},
    merchant::Sealed,
    ports::Address,
};

crate::state_machine! {
    /// DOMAIN.md §State machines (Cardholder): the channel decides.
    pub enum CardholderStatus ("cardholder") {
        Pending = "pending" -> Active | Rejected,
        Active = "active",
        Rejected = "rejected",
    }
}

/// Who the cardholder is, as the merchant gave it and the channel is told;
/// the document number travels apart (sealed once stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub date_of_birth: String,
    pub nationality: String,
    pub id_document_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardholderRecord {
    pub id: CardholderId,
    pub merchant_id: MerchantId,
    pub reference: Option<String>,
    pub card_name: String,
    pub bin: String,
    pub channel_id: ChannelId,
    /// The channel call's request id, stored before the call.
    pub request_id: String,
    pub channel_cardholder_id: Option<String>,
    pub status: CardholderStatus,
    pub failure_reason: Option<String>,
    /// Stored in place: bincode writes a nested struct's fields one after
    /// the other, unframed, so the layout (schema 1) is the flat one it replaced.
    pub identity: Identity,
    /// The document number, sealed; only its last four are ever shown.
    pub id_document_number: Sealed,
    pub id_document_last4: String,
    pub address: Address,
    /// The channel's answer is still unknown (resolved in the background).
    pub outcome_unknown: bool,
    pub created_at: Timestamp,
    pub version: u64,
    pub status_history: History<CardholderStatus>,
}

pelago_storage::record!(CardholderRecord, Cardholders, 1);

crate::stateful!(CardholderRecord, CardholderStatus);

impl CardholderRecord {
    /// `pending → active | rejected`; a repeat of the current status is no change
    /// (`Ok(false)`), anything else is `invalid_state`.
    pub fn settle(
        &mut self,
        to: CardholderStatus,
        channel_cardholder_id: Option<String>,
        reason: Option<String>,
        source: Source,
        at: Timestamp,
    ) -> Result<bool, Reject> {
        if channel_cardholder_id.is_some() && self.channel_cardholder_id.is_none() {
            self.channel_cardholder_id = channel_cardholder_id;
        }
        if self.status == to {
            return Ok(false);
        }
        self.transition(to, reason.clone(), source, at)?;
        if to == CardholderStatus::Rejected {
            self.failure_reason = reason;
        }
        self.outcome_unknown = false;
        Ok(true)
    }
}
