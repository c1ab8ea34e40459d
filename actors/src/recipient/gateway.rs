//! The marketplace half of the gateway port (MARKETPLACE.md §4, §9): what the
//! recipient flows need from the gateway, with refusals as data
//! (`Outcome::Declined`) and unknown outcomes as `Outcome::Unknown`. The live
//! adapter is `src/upstream/gateway_marketplace.rs`; the sandbox gateway
//! answers the same protocol.

use pelago_storage::{AgreementId, FileId, OnboardingId};

use super::onboarding::{ComplianceStatus, OnboardingStatus};
use crate::ports::{GatewayAccount, Reply, SecretString};

/// One submission of an onboarding (a first one or a resubmission), under
/// the merchant's gateway account, idempotent on `request_id`.
pub struct OnboardingSubmission {
    pub account: GatewayAccount,
    pub request_id: String,
    pub onboarding_id: OnboardingId,
    pub onboarding_type: &'static str,
    pub name: String,
    pub recipient_type: &'static str,
    pub country: String,
    pub bank_code: String,
    /// Opened only to be sent; never stored, logged or printed.
    pub id_document_number: SecretString,
    pub account_number: SecretString,
    pub documents: Vec<FileId>,
}

/// What the gateway says about an onboarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayOnboarding {
    pub gateway_onboarding_id: String,
    /// PENDING, SUCCEEDED, DECLINED, REJECTED, BLOCKED, ERROR or CANCELED.
    pub status: OnboardingStatus,
    pub provider_recipient_id: Option<String>,
    /// The compliance review, once the onboarding succeeded.
    pub compliance: Option<ComplianceStatus>,
    pub reason: Option<String>,
}

/// A change to one gateway onboarding, idempotent on `request_id`.
pub struct OnboardingCall {
    pub account: GatewayAccount,
    pub gateway_onboarding_id: String,
    pub request_id: String,
}

pub trait MarketplaceGateway: Send + Sync {
    fn submit_onboarding(&self, req: OnboardingSubmission) -> Reply<'_, GatewayOnboarding>;
    /// The gateway's view of the submission made with `request_id` (§9: the
    /// resolver asks, never guesses); `Declined` when it never saw it.
    fn query_onboarding(&self, account: GatewayAccount, request_id: String) -> Reply<'_, GatewayOnboarding>;
    /// The gateway onboarding `gateway_onboarding_id` as the gateway sees it now.
    fn get_onboarding(
        &self,
        account: GatewayAccount,
        gateway_onboarding_id: String,
    ) -> Reply<'_, GatewayOnboarding>;
    fn cancel_onboarding(&self, call: OnboardingCall) -> Reply<'_, GatewayOnboarding>;
    /// Documents for a failed compliance review (MARKETPLACE.md §4).
    fn submit_supplement(&self, call: OnboardingCall, documents: Vec<FileId>)
    -> Reply<'_, GatewayOnboarding>;
}

/// An agreement to sign at the gateway for a recipient onboarded there.
pub struct AgreementSigning {
    pub account: GatewayAccount,
    pub request_id: String,
    pub agreement_id: AgreementId,
    pub provider_recipient_id: String,
    /// `split` or `commission`.
    pub agreement_type: &'static str,
    pub max_commission_bps: Option<u32>,
}

/// The gateway signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAgreement {
    pub gateway_agreement_id: String,
}

pub trait AgreementGateway: Send + Sync {
    fn sign_agreement(&self, req: AgreementSigning) -> Reply<'_, SignedAgreement>;
    /// The signing made with `request_id`; `Declined` when the gateway never saw it.
    fn query_agreement(&self, account: GatewayAccount, request_id: String) -> Reply<'_, SignedAgreement>;
}

/// A payout of a recipient withdrawal to the recipient's bank account
/// (MARKETPLACE.md §7), idempotent on `request_id` (the withdrawal's id).
pub struct RecipientPayout {
    pub account: GatewayAccount,
    pub request_id: String,
    /// W − K.
    pub amount: pelago_storage::Money,
    pub holder_name: String,
    pub bank_code: String,
    /// Opened only to be sent; never stored, logged or printed.
    pub account_number: SecretString,
}

/// The gateway's decision on a payout it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutDecision {
    pub gateway_payout_id: String,
    /// Paid (true), or refused by the bank (false, with `reason`).
    pub paid: bool,
    pub reason: Option<String>,
}

pub trait RecipientPayoutGateway: Send + Sync {
    /// `Declined`: the gateway refused the request itself, nothing was paid.
    fn recipient_payout(&self, req: RecipientPayout) -> Reply<'_, PayoutDecision>;
    /// The payout made with `request_id`; `Declined` when the gateway never saw it.
    fn query_recipient_payout(
        &self,
        account: GatewayAccount,
        request_id: String,
    ) -> Reply<'_, PayoutDecision>;
}
