//! Callbacks from upstreams: the signature scheme of SECURITY.md and the wire
//! bodies the channel and gateway send, parsed into the ports' callback types.
//!
//! Header (`X-Gateway-Signature` / `X-Channel-Signature`):
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(key, t + "." + body)>`. The key is the
//! gateway account's `api_key` or the channel's `webhook_secret`.
//!
//! A gateway body names its gateway `merchant_id`, so the receiver parses first
//! to pick the key, then verifies, and acts on nothing before `verify` passed.

use hmac::{Hmac, KeyInit, Mac};
use pelago_actors::ports::{
    CardOpened, ChannelCallback, ChannelEvent, GatewayCallback, GatewayEvent, GatewayOrderStatus,
    PayoutStatus, RequestId,
};
use pelago_storage::{Money, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{
    channel_wire::{CardAnswer, CardholderStatusWire, OperationAnswer, TransactionWire},
    gateway_wire::{OrderStatusWire, PayoutStatusWire},
    http_util::{describe_json_error, rfc3339},
};

pub const GATEWAY_SIGNATURE_HEADER: &str = "X-Gateway-Signature";
pub const CHANNEL_SIGNATURE_HEADER: &str = "X-Channel-Signature";
/// How far a signature's timestamp may be from now, either way.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Longest header accepted; anything longer is malformed.
const MAX_HEADER_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackAuthError {
    #[error("signature header is malformed")]
    Malformed,
    #[error("signature timestamp is more than {SIGNATURE_TOLERANCE_SECS} s in the past")]
    Stale,
    #[error("signature timestamp is more than {SIGNATURE_TOLERANCE_SECS} s in the future")]
    FromTheFuture,
    #[error("signature does not match")]
    BadSignature,
}

#[derive(Debug, thiserror::Error)]
#[error("callback body could not be read: {0}")]
pub struct CallbackParseError(String);

fn mac(key: &[u8], timestamp_secs: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value for `body` sent at `timestamp_secs`.
pub fn sign(key: &[u8], timestamp_secs: i64, body: &[u8]) -> String {
    let tag = mac(key, timestamp_secs, body).finalize().into_bytes();
    format!("t={timestamp_secs},v1={}", hex::encode(tag))
}

/// Checks a signature header against `body` at `now_secs` (real time).
/// Comparison is constant-time; any `v1` entry may match.
pub fn verify(header: &str, key: &[u8], body: &[u8], now_secs: i64) -> Result<(), CallbackAuthError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(CallbackAuthError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or(CallbackAuthError::Malformed)?;
        match name {
            "t" => {
                if timestamp.is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CallbackAuthError::Malformed);
                }
                timestamp = Some(value.parse::<i64>().map_err(|_| CallbackAuthError::Malformed)?);
            }
            "v1" => signatures.push(hex::decode(value).map_err(|_| CallbackAuthError::Malformed)?),
            _ => {} // other schemes are ignored, as is usual for this format
        }
    }
    let timestamp = timestamp.ok_or(CallbackAuthError::Malformed)?;
    if signatures.is_empty() {
        return Err(CallbackAuthError::Malformed);
    }
    if timestamp < now_secs - SIGNATURE_TOLERANCE_SECS {
        return Err(CallbackAuthError::Stale);
    }
    if timestamp > now_secs + SIGNATURE_TOLERANCE_SECS {
        return Err(CallbackAuthError::FromTheFuture);
    }
    let expected = mac(key, timestamp, body);
    let mut matched = false;
    for signature in &signatures {
        // verify_slice is constant-time; keep checking so timing does not tell which matched.
        matched |= expected.clone().verify_slice(signature).is_ok();
    }
    if matched { Ok(()) } else { Err(CallbackAuthError::BadSignature) }
}

// ------------------------------------------------------------ channel body ----

/// `{"event_id": "...", "type": "...", "data": {...}}` from a channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelCallbackWire {
    pub event_id: String,
    #[serde(flatten)]
    pub event: ChannelEventWire,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ChannelEventWire {
    #[serde(rename = "cardholder.updated")]
    CardholderUpdated {
        cardholder_id: String,
        channel_cardholder_id: String,
        status: CardholderStatusWire,
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(rename = "card.opened")]
    CardOpened { card_id: String, request_id: RequestId, card: CardAnswer },
    #[serde(rename = "transaction")]
    Transaction { card_id: String, transaction: TransactionWire },
    #[serde(rename = "topup.completed")]
    TopupCompleted { request_id: RequestId, outcome: OperationAnswer },
}

impl From<ChannelCallbackWire> for ChannelCallback {
    fn from(w: ChannelCallbackWire) -> Self {
        let event = match w.event {
            ChannelEventWire::CardholderUpdated { cardholder_id, channel_cardholder_id, status, reason } => {
                ChannelEvent::CardholderUpdated {
                    cardholder_id,
                    channel_cardholder_id,
                    status: status.into(),
                    reason,
                }
            }
            ChannelEventWire::CardOpened { card_id, request_id, card } => {
                ChannelEvent::CardOpened { card_id, request_id, opened: CardOpened::from(card) }
            }
            ChannelEventWire::Transaction { card_id, transaction } => {
                ChannelEvent::Transaction { card_id, transaction: transaction.into() }
            }
            ChannelEventWire::TopupCompleted { request_id, outcome } => {
                ChannelEvent::TopupCompleted { request_id, outcome: outcome.into() }
            }
        };
        ChannelCallback { event_id: w.event_id, event }
    }
}

pub fn parse_channel_callback(body: &[u8]) -> Result<ChannelCallback, CallbackParseError> {
    serde_json::from_slice::<ChannelCallbackWire>(body)
        .map(Into::into)
        .map_err(|e| CallbackParseError(describe_json_error(&e)))
}

// ------------------------------------------------------------ gateway body ----

/// `{"event_id", "merchant_id", "type", "data"}` from the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayCallbackWire {
    pub event_id: String,
    /// The gateway account the event concerns: picks the verification key.
    pub merchant_id: String,
    #[serde(flatten)]
    pub event: GatewayEventWire,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum GatewayEventWire {
    #[serde(rename = "order.updated")]
    OrderUpdated {
        id: String,
        order_id: String,
        status: OrderStatusWire,
        amount: Money,
        #[serde(with = "rfc3339")]
        at: Timestamp,
    },
    #[serde(rename = "deposit.credited")]
    DepositCredited {
        id: String,
        address: String,
        network: String,
        amount: Money,
        #[serde(with = "rfc3339")]
        at: Timestamp,
    },
    #[serde(rename = "payout.updated")]
    PayoutUpdated {
        id: String,
        request_id: RequestId,
        status: PayoutStatusWire,
        #[serde(default)]
        reason: Option<String>,
        amount: Money,
    },
    #[serde(rename = "refund.completed")]
    RefundCompleted { id: String, gateway_order_id: String, request_id: RequestId, amount: Money },
    #[serde(rename = "recipient_payout.updated")]
    RecipientPayoutUpdated {
        id: String,
        request_id: RequestId,
        /// `succeeded` or `failed`.
        status: String,
        amount: Money,
    },
}

impl From<GatewayCallbackWire> for GatewayCallback {
    fn from(w: GatewayCallbackWire) -> Self {
        let event = match w.event {
            GatewayEventWire::OrderUpdated { id, order_id, status, amount, at } => {
                GatewayEvent::OrderUpdated {
                    gateway_order_id: id,
                    order_id,
                    status: GatewayOrderStatus::from(status),
                    amount,
                    at,
                }
            }
            GatewayEventWire::DepositCredited { id, address, network, amount, at } => {
                GatewayEvent::DepositCredited { gateway_deposit_id: id, address, network, amount, at }
            }
            GatewayEventWire::PayoutUpdated { id, request_id, status, reason, amount } => {
                GatewayEvent::PayoutUpdated {
                    payout_id: id,
                    request_id,
                    status: PayoutStatus::from(status),
                    reason,
                    amount,
                }
            }
            GatewayEventWire::RefundCompleted { id, gateway_order_id, request_id, amount } => {
                GatewayEvent::RefundCompleted { refund_id: id, gateway_order_id, request_id, amount }
            }
            GatewayEventWire::RecipientPayoutUpdated { request_id, amount, .. } => {
                GatewayEvent::RecipientPayoutUpdated { request_id, amount }
            }
        };
        GatewayCallback { event_id: w.event_id, account_merchant_id: w.merchant_id, event }
    }
}

pub fn parse_gateway_callback(body: &[u8]) -> Result<GatewayCallback, CallbackParseError> {
    serde_json::from_slice::<GatewayCallbackWire>(body)
        .map(Into::into)
        .map_err(|e| CallbackParseError(describe_json_error(&e)))
}

/// A marketplace callback (MARKETPLACE.md §4, §11): the names it carries
/// only; the onboarding itself is read by a query under the signing account.
pub fn parse_onboarding_callback(
    body: &[u8],
) -> Result<super::marketplace_wire::OnboardingCallback, CallbackParseError> {
    serde_json::from_slice(body).map_err(|e| CallbackParseError(describe_json_error(&e)))
}

#[cfg(test)]
mod tests;
