//! Cardholders: `pending → active | rejected` (the channel decides, by its
//! answer or a callback). A cardholder is bound to the BIN chosen at creation.
//! Pure record and transitions; written with compare-and-set by its owner
//! (`src/cardholders.rs`), which calls the channel outside any actor so a
//! slow channel never blocks the merchant.

use pelago_storage::{CardholderId, ChannelId, MerchantId, Record, Timestamp, Tree};
use serde::{Deserialize, Serialize};

use crate::{
    error::Reject,
    history::{Source, StatusChange, push_change},
    merchant::Sealed,
    ports::Address,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardholderStatus {
    Pending,
    Active,
    Rejected,
}

impl CardholderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CardholderStatus::Pending => "pending",
            CardholderStatus::Active => "active",
            CardholderStatus::Rejected => "rejected",
        }
    }
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
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub date_of_birth: String,
    pub nationality: String,
    pub id_document_type: String,
    /// The document number, sealed; only its last four are ever shown.
    pub id_document_number: Sealed,
    pub id_document_last4: String,
    pub address: Address,
    /// The channel's answer is still unknown (resolved in the background).
    pub outcome_unknown: bool,
    pub created_at: Timestamp,
    pub version: u64,
    pub status_history: Vec<StatusChange>,
}

impl Record for CardholderRecord {
    const TREE: Tree = Tree::Cardholders;
    const SCHEMA_VERSION: u8 = 1;
}

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
        if self.status != CardholderStatus::Pending || to == CardholderStatus::Pending {
            return Err(Reject::state(format!("the cardholder is {}", self.status.as_str())));
        }
        push_change(
            &mut self.status_history,
            StatusChange {
                from: Some(self.status.as_str().into()),
                to: to.as_str().into(),
                reason: reason.clone(),
                source,
                at,
            },
        );
        self.status = to;
        if to == CardholderStatus::Rejected {
            self.failure_reason = reason;
        }
        self.outcome_unknown = false;
        self.version += 1;
        Ok(true)
    }
}
