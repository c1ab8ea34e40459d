//! Wire types of the gateway protocol and their conversions into the ports'
//! types. The sandbox gateway serves these same types.

use pelago_actors::ports::{
    GatewayDeposit, GatewayOrder, GatewayOrderStatus, GatewayPayout, PayoutAccepted, PayoutStatus,
};
use pelago_storage::{Currency, Money, Timestamp};
use serde::{Deserialize, Serialize};

use super::http_util::rfc3339;

/// Header naming the gateway account a call acts for.
pub const MERCHANT_HEADER: &str = "X-Merchant-Id";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateOrderBody {
    /// Pelago's `ord_...` id, named again in callbacks.
    pub order_id: String,
    pub amount: Money,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatusWire {
    Pending,
    Paid,
    Failed,
    Expired,
    Refunded,
    /// A payment's checkout paid with `capture` false (marketplace payments).
    Authorized,
    /// A payment's checkout or authorization voided.
    Canceled,
}

impl From<OrderStatusWire> for GatewayOrderStatus {
    fn from(s: OrderStatusWire) -> Self {
        match s {
            OrderStatusWire::Pending => GatewayOrderStatus::Pending,
            OrderStatusWire::Paid => GatewayOrderStatus::Paid,
            OrderStatusWire::Failed => GatewayOrderStatus::Failed,
            OrderStatusWire::Expired => GatewayOrderStatus::Expired,
            OrderStatusWire::Refunded => GatewayOrderStatus::Refunded,
            OrderStatusWire::Authorized => GatewayOrderStatus::Authorized,
            OrderStatusWire::Canceled => GatewayOrderStatus::Canceled,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderAnswer {
    pub id: String,
    pub order_id: String,
    pub checkout_url: String,
    pub status: OrderStatusWire,
    pub amount: Money,
    #[serde(default, with = "rfc3339::option")]
    pub paid_at: Option<Timestamp>,
}

impl From<OrderAnswer> for GatewayOrder {
    fn from(a: OrderAnswer) -> Self {
        GatewayOrder {
            gateway_order_id: a.id,
            order_id: a.order_id,
            checkout_url: a.checkout_url,
            status: a.status.into(),
            amount: a.amount,
            paid_at: a.paid_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositAddressAnswer {
    pub address: String,
    pub network: String,
    pub currency: Currency,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayoutBody {
    pub amount: Money,
    pub address: String,
    pub network: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatusWire {
    Processing,
    Succeeded,
    Failed,
}

impl From<PayoutStatusWire> for PayoutStatus {
    fn from(s: PayoutStatusWire) -> Self {
        match s {
            PayoutStatusWire::Processing => PayoutStatus::Processing,
            PayoutStatusWire::Succeeded => PayoutStatus::Succeeded,
            PayoutStatusWire::Failed => PayoutStatus::Failed,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayoutAnswer {
    pub id: String,
    pub status: PayoutStatusWire,
    #[serde(default)]
    pub reason: Option<String>,
}

impl From<PayoutAnswer> for PayoutAccepted {
    fn from(a: PayoutAnswer) -> Self {
        PayoutAccepted { payout_id: a.id, status: a.status.into(), reason: a.reason }
    }
}

/// `GET /payouts/{id}`: a payout as the gateway holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayoutStateAnswer {
    pub id: String,
    /// The `Idempotency-Key` it was created with (Pelago's request id).
    pub request_id: String,
    pub status: PayoutStatusWire,
    #[serde(default)]
    pub reason: Option<String>,
    pub amount: Money,
}

impl From<PayoutStateAnswer> for GatewayPayout {
    fn from(a: PayoutStateAnswer) -> Self {
        GatewayPayout {
            payout_id: a.id,
            request_id: a.request_id,
            status: a.status.into(),
            reason: a.reason,
            amount: a.amount,
        }
    }
}

/// `GET /deposits/{id}`: a deposit the gateway received to one of the account's addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositAnswer {
    pub id: String,
    pub address: String,
    pub network: String,
    pub amount: Money,
    #[serde(with = "rfc3339")]
    pub at: Timestamp,
}

impl From<DepositAnswer> for GatewayDeposit {
    fn from(a: DepositAnswer) -> Self {
        GatewayDeposit {
            deposit_id: a.id,
            address: a.address,
            network: a.network,
            amount: a.amount,
            at: a.at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundBody {
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundAnswer {
    pub id: String,
    pub order_id: String,
    pub amount: Money,
}
