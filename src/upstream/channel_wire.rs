//! Wire types of the channel protocol (module docs of [`super`]), and their
//! conversions into the ports' types. The sandbox channel serves these same types.

use pelago_actors::ports::{
    Address, CardDeleted, CardFunded, CardOpened, CardholderCreated, ChannelCardholder,
    ChannelCardholderStatus, ChannelOperation, ChannelTransaction, ChannelTxnStatus, ChannelTxnType,
};
use pelago_storage::{Currency, Money, Timestamp};
use serde::{Deserialize, Serialize};

use super::http_util::rfc3339;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateCardholderBody {
    /// Pelago's cardholder id, named again in callbacks.
    pub cardholder_id: String,
    pub bin: String,
    /// The identity's fields, at the top level of the body.
    #[serde(flatten)]
    pub identity: pelago_actors::cardholder::Identity,
    pub id_document_number: String,
    pub address: Address,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardholderStatusWire {
    Active,
    Pending,
    Rejected,
}

impl From<CardholderStatusWire> for ChannelCardholderStatus {
    fn from(s: CardholderStatusWire) -> Self {
        match s {
            CardholderStatusWire::Active => ChannelCardholderStatus::Active,
            CardholderStatusWire::Pending => ChannelCardholderStatus::Pending,
            CardholderStatusWire::Rejected => ChannelCardholderStatus::Rejected,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardholderAnswer {
    pub id: String,
    pub status: CardholderStatusWire,
    #[serde(default)]
    pub reason: Option<String>,
}

impl From<CardholderAnswer> for CardholderCreated {
    fn from(a: CardholderAnswer) -> Self {
        CardholderCreated { channel_cardholder_id: a.id, status: a.status.into(), reason: a.reason }
    }
}

/// `GET /cardholders/{id}`: the cardholder as the channel holds it now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardholderStateAnswer {
    pub id: String,
    /// Pelago's cardholder id, as given at creation.
    pub cardholder_id: String,
    pub status: CardholderStatusWire,
    #[serde(default)]
    pub reason: Option<String>,
}

impl From<CardholderStateAnswer> for ChannelCardholder {
    fn from(a: CardholderStateAnswer) -> Self {
        ChannelCardholder {
            channel_cardholder_id: a.id,
            cardholder_id: a.cardholder_id,
            status: a.status.into(),
            reason: a.reason,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenCardBody {
    /// Pelago's card id, named again in callbacks.
    pub card_id: String,
    pub cardholder_id: String,
    pub bin: String,
    pub currency: Currency,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardAnswer {
    pub id: String,
    pub last4: String,
    pub balance: Money,
}

impl From<CardAnswer> for CardOpened {
    fn from(a: CardAnswer) -> Self {
        CardOpened { channel_card_id: a.id, last4: a.last4, balance: a.balance }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopupBody {
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BalanceAnswer {
    pub balance: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusAnswer {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedAnswer {
    pub remaining_balance: Money,
}

/// Card data: read once into `CardDetails`, never logged. No `Debug` on purpose.
/// The PAN and CVV are wiped when the answer is dropped (take them out with
/// `std::mem::take` to keep them).
#[derive(Serialize, Deserialize)]
pub struct DetailsAnswer {
    pub pan: String,
    pub cvv: String,
    pub expiry_month: u8,
    pub expiry_year: u16,
    pub balance: Money,
    pub status: String,
}

impl Drop for DetailsAnswer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.pan);
        zeroize::Zeroize::zeroize(&mut self.cvv);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MasterBalancesAnswer {
    pub balances: Vec<Money>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnTypeWire {
    Authorization,
    Clearing,
    Reversal,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnStatusWire {
    Pending,
    Posted,
    Declined,
    Reversed,
}

/// A card transaction on the wire (pull and callback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionWire {
    pub id: String,
    pub card_id: String,
    #[serde(rename = "type")]
    pub kind: TxnTypeWire,
    pub status: TxnStatusWire,
    pub amount: Money,
    pub merchant_name: String,
    pub mcc: String,
    #[serde(with = "rfc3339")]
    pub occurred_at: Timestamp,
    pub balance_after: Money,
    #[serde(default)]
    pub related_transaction_id: Option<String>,
}

impl From<TransactionWire> for ChannelTransaction {
    fn from(t: TransactionWire) -> Self {
        ChannelTransaction {
            channel_transaction_id: t.id,
            channel_card_id: t.card_id,
            kind: match t.kind {
                TxnTypeWire::Authorization => ChannelTxnType::Authorization,
                TxnTypeWire::Clearing => ChannelTxnType::Clearing,
                TxnTypeWire::Reversal => ChannelTxnType::Reversal,
                TxnTypeWire::Refund => ChannelTxnType::Refund,
            },
            status: match t.status {
                TxnStatusWire::Pending => ChannelTxnStatus::Pending,
                TxnStatusWire::Posted => ChannelTxnStatus::Posted,
                TxnStatusWire::Declined => ChannelTxnStatus::Declined,
                TxnStatusWire::Reversed => ChannelTxnStatus::Reversed,
            },
            amount: t.amount,
            merchant_name: t.merchant_name,
            mcc: t.mcc,
            occurred_at: t.occurred_at,
            balance_after: t.balance_after,
            related_transaction_id: t.related_transaction_id,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionsAnswer {
    pub data: Vec<TransactionWire>,
}

/// `GET /operations/{request_id}`: what the channel did with a request id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum OperationAnswer {
    NotFound,
    Declined { reason: String },
    CardholderCreated { cardholder: CardholderAnswer },
    CardOpened { card: CardAnswer },
    CardFunded { balance: Money },
    ActionApplied,
    CardDeleted { remaining_balance: Money },
}

impl From<OperationAnswer> for ChannelOperation {
    fn from(a: OperationAnswer) -> Self {
        match a {
            OperationAnswer::NotFound => ChannelOperation::NotFound,
            OperationAnswer::Declined { reason } => ChannelOperation::Declined { reason },
            OperationAnswer::CardholderCreated { cardholder } => {
                ChannelOperation::CardholderCreated(cardholder.into())
            }
            OperationAnswer::CardOpened { card } => ChannelOperation::CardOpened(card.into()),
            OperationAnswer::CardFunded { balance } => ChannelOperation::CardFunded(CardFunded { balance }),
            OperationAnswer::ActionApplied => ChannelOperation::ActionApplied,
            OperationAnswer::CardDeleted { remaining_balance } => {
                ChannelOperation::CardDeleted(CardDeleted { remaining_balance })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use pelago_actors::{cardholder::Identity, ports::Address};

    use super::CreateCardholderBody;

    /// The channel protocol's cardholder body keeps the identity's fields at
    /// its top level (the module docs of `super`), and reads them back.
    #[test]
    fn the_identity_travels_flat_in_the_cardholder_body() {
        let identity = Identity {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            phone: "+15555550100".into(),
            date_of_birth: "1990-01-01".into(),
            nationality: "GB".into(),
            id_document_type: "passport".into(),
        };
        let address = Address {
            line1: "1 Main St".into(),
            line2: None,
            city: "London".into(),
            state: None,
            postal_code: "N1".into(),
            country: "GB".into(),
        };
        let body = CreateCardholderBody {
            cardholder_id: "chd_1".into(),
            bin: "424242".into(),
            identity: identity.clone(),
            id_document_number: "X1".into(),
            address,
        };
        let json = serde_json::to_value(&body).unwrap();
        let fields = ["first_name", "last_name", "email", "phone", "date_of_birth", "nationality"];
        for field in fields.into_iter().chain(["id_document_type", "id_document_number", "bin"]) {
            assert!(json[field].is_string(), "{field} at the top level: {json}");
        }
        assert!(json.get("identity").is_none(), "{json}");
        let back: CreateCardholderBody = serde_json::from_value(json).unwrap();
        assert_eq!(back.identity, identity);
    }
}
