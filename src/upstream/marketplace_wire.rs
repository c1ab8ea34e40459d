//! Wire types of the gateway's marketplace calls (MARKETPLACE.md §4, §11),
//! under the gateway's `base_url`, authenticated like the other gateway calls:
//!
//! | call | answer |
//! |---|---|
//! | `POST /onboardings` [`SubmitOnboardingBody`] (request id in `Idempotency-Key`) | [`OnboardingAnswer`] |
//! | `GET /onboardings/by-request/{request_id}` | [`OnboardingAnswer`] (404 `not_found`: never seen) |
//! | `GET /onboardings/{id}` | [`OnboardingAnswer`] |
//! | `POST /onboardings/{id}/cancel` | [`OnboardingAnswer`] |
//! | `POST /onboardings/{id}/supplements` [`SupplementBody`] | [`OnboardingAnswer`] |
//! | `POST /agreements` [`SignAgreementBody`] (request id in `Idempotency-Key`) | [`AgreementAnswer`] |
//! | `GET /agreements/by-request/{request_id}` | [`AgreementAnswer`] (404 `not_found`: never seen) |
//! | `POST /payments` [`CreatePaymentBody`] (request id in `Idempotency-Key`) | [`PaymentAnswer`] |
//! | `GET /payments/{id}` | [`PaymentAnswer`] |
//! | `POST /payments/{id}/capture`, `POST /payments/{id}/cancel` (request id in `Idempotency-Key`) | [`PaymentAnswer`] |
//! | `POST /splits` [`SplitBody`] (the batch's request id in `Idempotency-Key`) | [`SplitAnswer`] |
//! | `POST /recipient-payouts` [`RecipientPayoutBody`] (request id in `Idempotency-Key`) | [`RecipientPayoutAnswer`] |
//! | `GET /recipient-payouts/by-request/{request_id}` | [`RecipientPayoutAnswer`] (404 `not_found`: never seen) |
//!
//! A payment is a checkout order of the gateway (same page, same
//! `order.updated` callbacks to `/callbacks/gateway`, naming the `pay_` id):
//! paid with `capture` false it is `authorized` until captured or canceled.
//!
//! Statuses are Yuno's upper case (`PENDING`, `SUCCEEDED`, ...); compliance
//! `pending|approved|failed`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitOnboardingBody {
    pub onboarding_id: String,
    #[serde(rename = "type")]
    pub onboarding_type: String,
    pub recipient_type: String,
    pub name: String,
    pub country: String,
    pub id_document_number: String,
    pub bank_account: BankAccountWire,
    pub documents: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BankAccountWire {
    pub account_number: String,
    pub bank_code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnboardingAnswer {
    pub id: String,
    pub status: String,
    pub provider_recipient_id: Option<String>,
    pub compliance: Option<String>,
    pub reason: Option<String>,
}

/// A signed callback (`X-Gateway-Signature`, like the gateway's other
/// callbacks) to `{callback_url}/marketplace` when the gateway decides or
/// reviews an onboarding on its own. Pelago acts on it only through a query
/// of the onboarding (`GET /onboardings/{id}`), never on the body alone.
#[derive(Debug, Serialize, Deserialize)]
pub struct OnboardingCallback {
    pub event_id: String,
    /// The gateway account the onboarding was submitted under.
    pub merchant_id: String,
    pub onboarding_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SignAgreementBody {
    pub agreement_id: String,
    pub provider_recipient_id: String,
    #[serde(rename = "type")]
    pub agreement_type: String,
    pub max_commission_bps: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgreementAnswer {
    pub id: String,
    /// `signed`.
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreatePaymentBody {
    pub payment_id: String,
    pub amount: pelago_storage::Money,
    pub capture: bool,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentAnswer {
    pub id: String,
    pub payment_id: String,
    pub checkout_url: String,
    pub status: super::gateway_wire::OrderStatusWire,
    pub amount: pelago_storage::Money,
}

/// `POST /payments/{id}/refunds` (a partial refund to the buyer).
#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentRefundBody {
    pub amount: pelago_storage::Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentRefundAnswer {
    pub id: String,
    /// The payment's checkout at the gateway.
    pub payment: String,
    pub amount: pelago_storage::Money,
    /// Σ refunded of the payment, this one included.
    pub refunded_total: pelago_storage::Money,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SplitBody {
    pub batch_id: String,
    pub items: Vec<SplitItemWire>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SplitItemWire {
    /// The payment's checkout at the gateway.
    pub id: String,
    pub payment_id: String,
    pub amount: pelago_storage::Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitAnswer {
    pub id: String,
    pub items: Vec<SplitItemAnswer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitItemAnswer {
    pub payment_id: String,
    /// `executed` or `failed`.
    pub status: String,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SupplementBody {
    pub documents: Vec<String>,
}

/// Sandbox control: `POST /gateway/control/onboardings/{id}/decide`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DecideBody {
    pub status: String,
    pub reason: Option<String>,
}

/// Sandbox control: `POST /gateway/control/onboardings/{id}/compliance`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ComplianceBody {
    pub result: String,
    pub reason: Option<String>,
}

/// Sandbox control: `POST /gateway/control/marketplace/faults` (`DELETE` clears):
/// the next `count` marketplace calls of `operation` (`onboarding`: submit,
/// cancel, supplement; `agreement`: signing; `callbacks`: only `duplicate`,
/// each callback sent three times) misbehave as `behavior`: `decline` (refused, nothing
/// applied), `error` (500, nothing applied), `timeout` (applied, answered after
/// Pelago's upstream timeout + 1 s), `delay` (applied, answered after `delay_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketplaceFault {
    pub operation: MarketplaceOperation,
    pub behavior: MarketplaceFaultBehavior,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MarketplaceOperation {
    Onboarding,
    Agreement,
    /// A payment's checkout creation.
    CreatePayment,
    Capture,
    Cancel,
    /// A batch split (the whole request).
    Split,
    /// A payment's (partial) refund.
    Refund,
    /// The marketplace callbacks (only `duplicate`: each sent three times).
    Callbacks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MarketplaceFaultBehavior {
    Decline,
    Error,
    Timeout,
    Delay,
    Duplicate,
}

/// `POST /recipient-payouts` (Idempotency-Key: the request id): a recipient
/// withdrawal paid to the recipient's bank account.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecipientPayoutBody {
    pub amount: pelago_storage::Money,
    pub holder_name: String,
    pub bank_code: String,
    pub account_number: String,
}

/// The answer to a recipient payout, and to `GET /recipient-payouts/by-request/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientPayoutAnswer {
    pub id: String,
    /// `succeeded` or `failed`.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}
