//! The payments half of the gateway port (MARKETPLACE.md §6, §9, §11): a
//! checkout that authorizes only (`capture` false) or captures at once, its
//! capture and void, and the query a callback is confirmed by. Every
//! mutating call carries a request id stored first; refusals are
//! `Outcome::Declined`, unknown outcomes `Outcome::Unknown`. The live adapter
//! is `src/upstream/gateway_marketplace.rs`; the sandbox gateway answers the
//! same protocol.

use pelago_storage::{Money, PaymentId};

use crate::ports::{GatewayAccount, Refund, Reply};

/// A payment's checkout, under the merchant's gateway account.
pub struct PaymentCheckout {
    pub account: GatewayAccount,
    pub request_id: String,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub capture: bool,
    pub description: String,
}

/// The gateway's view of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayPaymentStatus {
    Pending,
    Authorized,
    /// Paid and captured.
    Captured,
    Failed,
    Expired,
    Canceled,
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPayment {
    pub gateway_order_id: String,
    /// Pelago's `pay_...` id, as given at creation.
    pub payment_id: String,
    pub checkout_url: String,
    pub status: GatewayPaymentStatus,
    pub amount: Money,
}

/// One payment of a batch split: its checkout and the total its lines move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLine {
    pub gateway_order_id: String,
    pub payment_id: PaymentId,
    pub amount: Money,
}

/// A batch split, under one request id.
pub struct SplitRequest {
    pub account: GatewayAccount,
    pub request_id: String,
    pub batch_id: String,
    pub items: Vec<SplitLine>,
}

/// What the gateway did with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitResult {
    pub payment_id: String,
    /// `Err`: refused, with the reason.
    pub outcome: Result<(), String>,
}

/// A refund the gateway made of a captured payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRefund {
    pub id: String,
    pub amount: Money,
}

/// A capture or a void of one gateway payment, idempotent on `request_id`.
pub struct PaymentCall {
    pub account: GatewayAccount,
    pub gateway_order_id: String,
    pub request_id: String,
}

pub trait PaymentsGateway: Send + Sync {
    /// Refunds `amount` of a captured payment to the buyer, once per request
    /// id (a repeat answers the first); partial refunds add up to at most the capture.
    fn refund_payment(&self, req: Refund) -> Reply<'_, GatewayRefund>;
    /// Executes a batch split; the answer names each item's outcome.
    fn split(&self, req: SplitRequest) -> Reply<'_, Vec<SplitResult>>;
    fn create_payment(&self, req: PaymentCheckout) -> Reply<'_, GatewayPayment>;
    fn query_payment(&self, account: GatewayAccount, gateway_order_id: String) -> Reply<'_, GatewayPayment>;
    /// Captures an authorized payment whole.
    fn capture_payment(&self, call: PaymentCall) -> Reply<'_, GatewayPayment>;
    /// Voids a pending checkout or an authorization.
    fn cancel_payment(&self, call: PaymentCall) -> Reply<'_, GatewayPayment>;
}
