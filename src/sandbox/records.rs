//! What the sandbox keeps in its own store, one small record type per kind,
//! each under its own key prefix. No PAN or CVV is ever stored: they are
//! derived from the card id (see `card_data`).

use pelago_storage::{Currency, Money};
use serde::{Deserialize, Serialize};

use crate::keys::Sandbox;
use crate::upstream::{
    channel_wire::{CardholderStatusWire, TransactionWire},
    gateway_wire::{OrderStatusWire, PayoutStatusWire},
};

/// Key `channel/{channel_id}`.
#[derive(Clone, Serialize, Deserialize)]
pub struct ChannelReg {
    pub channel_id: String,
    /// Sealed (`State::seal`, context [`ChannelReg::api_key_context`]).
    pub api_key: Vec<u8>,
    /// Sealed (context [`ChannelReg::webhook_secret_context`]).
    pub webhook_secret: Vec<u8>,
    pub callback_url: String,
}

impl ChannelReg {
    pub fn api_key_context(channel_id: &str) -> String {
        Sandbox::ChannelSecret { channel: channel_id.to_owned(), what: "api_key".into() }.text()
    }

    pub fn webhook_secret_context(channel_id: &str) -> String {
        Sandbox::ChannelSecret { channel: channel_id.to_owned(), what: "webhook_secret".into() }.text()
    }
}

// 2: credentials sealed (1 held them in clear).
pelago_storage::record!(ChannelReg, Channels, 2);

/// Key `channel_key/{sha256 hex of api_key}` → the channel that owns the key.
#[derive(Clone, Serialize, Deserialize)]
pub struct ApiKeyIndex {
    pub owner_id: String,
}

pelago_storage::record!(ApiKeyIndex, Index, 1);

/// Key `cardholder/{channel_cardholder_id}`.
#[derive(Clone, Serialize, Deserialize)]
pub struct CardholderRec {
    pub channel_id: String,
    pub id: String,
    /// Pelago's cardholder id.
    pub cardholder_id: String,
    pub status: CardholderStatusWire,
    pub reason: Option<String>,
}

pelago_storage::record!(CardholderRec, Cardholders, 1);

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardStatus {
    Active,
    Frozen,
    Deleted,
}

impl CardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Frozen => "frozen",
            CardStatus::Deleted => "deleted",
        }
    }
}

/// Key `card/{channel_card_id}`.
#[derive(Clone, Serialize, Deserialize)]
pub struct CardRec {
    pub channel_id: String,
    pub id: String,
    /// Pelago's card id.
    pub card_id: String,
    pub cardholder_id: String,
    pub bin: String,
    pub currency: Currency,
    pub balance_minor: i64,
    pub status: CardStatus,
    pub expiry_month: u8,
    pub expiry_year: u16,
}

impl CardRec {
    pub fn balance(&self) -> Money {
        Money::new(self.balance_minor, self.currency)
    }
}

pelago_storage::record!(CardRec, Cards, 1);

/// Key `txn/{channel_card_id}/{transaction id}`; ids sort in creation order.
#[derive(Clone, Serialize, Deserialize)]
pub struct TxnRec(pub TransactionWire);

pelago_storage::record!(TxnRec, Transactions, 1);

/// Keys `master/{channel_id}/{currency}` (minor units) and `seq` (id counter).
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Counter {
    pub value: i64,
}

pelago_storage::record!(Counter, Meta, 1);

/// The stored result of one request id: key `ch/{channel_id}/{request_id}` or
/// `gw/{merchant_id}/{request_id}`. A repeat of the request id answers it again.
#[derive(Clone, Serialize, Deserialize)]
pub struct OpRecord {
    pub op: String,
    pub status: u16,
    pub answer_json: String,
    /// The `GET /operations/{request_id}` answer (channel only; empty for the gateway).
    pub operation_json: String,
}

pelago_storage::record!(OpRecord, Operations, 1);

/// Key `account/{merchant_id}`.
#[derive(Clone, Serialize, Deserialize)]
pub struct GatewayAccountRec {
    pub merchant_id: String,
    /// Sealed (`State::seal`, context [`GatewayAccountRec::api_key_context`]).
    pub api_key: Vec<u8>,
    pub callback_url: String,
}

impl GatewayAccountRec {
    pub fn api_key_context(merchant_id: &str) -> String {
        Sandbox::AccountSecret { merchant: merchant_id.to_owned(), what: "api_key".into() }.text()
    }
}

// 2: the api key sealed (1 held it in clear).
pelago_storage::record!(GatewayAccountRec, Merchants, 2);

/// Key `order/{gateway_order_id}`.
#[derive(Clone, Serialize, Deserialize)]
pub struct OrderRec {
    pub id: String,
    pub merchant_id: String,
    pub order_id: String,
    pub amount: Money,
    pub description: String,
    pub status: OrderStatusWire,
    pub created_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    /// The last callback body sent for this order (for `resend-callback`).
    pub last_callback: Option<String>,
    pub refund_id: Option<String>,
}

pelago_storage::record!(OrderRec, Orders, 1);

/// Key `payout/{payout_id}`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PayoutRec {
    pub id: String,
    pub merchant_id: String,
    pub request_id: String,
    pub amount: Money,
    pub address: String,
    pub network: String,
    pub status: PayoutStatusWire,
    pub reason: Option<String>,
}

pelago_storage::record!(PayoutRec, Withdrawals, 1);

/// Key `deposit/{gateway_deposit_id}`.
#[derive(Clone, Serialize, Deserialize)]
pub struct DepositRec {
    pub id: String,
    pub merchant_id: String,
    pub address: String,
    pub network: String,
    pub amount: Money,
    pub at_ms: i64,
}

pelago_storage::record!(DepositRec, Deposits, 1);
