//! The marketplace ports of [`HttpGateway`] ([`MarketplaceGateway`] and the others; protocol in
//! [`super::marketplace_wire`]). Numbers leave Pelago only in the submission
//! body, over the gateway connection; they are never logged.

use pelago_actors::{
    payment::gateway::{
        GatewayPayment, GatewayPaymentStatus, GatewayRefund, PaymentCall, PaymentCheckout, PaymentsGateway,
        SplitRequest, SplitResult,
    },
    ports::{GatewayAccount, Outcome, Refund, Reply},
    recipient::{
        ComplianceStatus, OnboardingStatus,
        gateway::{
            AgreementGateway, AgreementSigning, GatewayOnboarding, MarketplaceGateway, OnboardingCall,
            OnboardingSubmission, PayoutDecision, RecipientPayout, RecipientPayoutGateway, SignedAgreement,
        },
    },
};
use pelago_storage::FileId;
use reqwest::Method;

use super::{channel_http::encode, gateway::HttpGateway, marketplace_wire as wire};

/// The marketplace ports (onboardings, agreements, payments) are served by
/// the one gateway adapter: same base URL, same per-account authentication.
pub type HttpMarketplaceGateway = HttpGateway;

/// The answer as the port's type; an answer it cannot read is unknown.
fn convert(outcome: Outcome<wire::OnboardingAnswer>) -> Outcome<GatewayOnboarding> {
    outcome.and_then(|a| {
        let Some(status) = OnboardingStatus::parse(&a.status) else {
            return Outcome::Unknown { detail: "unreadable onboarding status".into() };
        };
        let compliance = match a.compliance.as_deref() {
            None => None,
            Some(raw) => match ComplianceStatus::parse(raw) {
                Some(c) => Some(c),
                None => return Outcome::Unknown { detail: "unreadable compliance status".into() },
            },
        };
        Outcome::Done(GatewayOnboarding {
            gateway_onboarding_id: a.id,
            status,
            provider_recipient_id: a.provider_recipient_id,
            compliance,
            reason: a.reason,
        })
    })
}

impl MarketplaceGateway for HttpMarketplaceGateway {
    fn submit_onboarding(&self, req: OnboardingSubmission) -> Reply<'_, GatewayOnboarding> {
        let body = wire::SubmitOnboardingBody {
            onboarding_id: req.onboarding_id.to_string(),
            onboarding_type: req.onboarding_type.to_owned(),
            recipient_type: req.recipient_type.to_owned(),
            name: req.name,
            country: req.country,
            id_document_number: req.id_document_number.expose().to_owned(),
            bank_account: wire::BankAccountWire {
                account_number: req.account_number.expose().to_owned(),
                bank_code: req.bank_code,
            },
            documents: req.documents.iter().map(ToString::to_string).collect(),
        };
        self.post((req.account, req.request_id), "/onboardings".into(), Some(body), convert)
    }

    fn query_onboarding(&self, account: GatewayAccount, request_id: String) -> Reply<'_, GatewayOnboarding> {
        self.get(account, format!("/onboardings/by-request/{}", encode(&request_id)), convert)
    }

    fn get_onboarding(
        &self,
        account: GatewayAccount,
        gateway_onboarding_id: String,
    ) -> Reply<'_, GatewayOnboarding> {
        self.get(account, format!("/onboardings/{}", encode(&gateway_onboarding_id)), convert)
    }

    fn cancel_onboarding(&self, call: OnboardingCall) -> Reply<'_, GatewayOnboarding> {
        let path = format!("/onboardings/{}/cancel", encode(&call.gateway_onboarding_id));
        self.post((call.account, call.request_id), path, None::<()>, convert)
    }

    fn submit_supplement(
        &self,
        call: OnboardingCall,
        documents: Vec<FileId>,
    ) -> Reply<'_, GatewayOnboarding> {
        let path = format!("/onboardings/{}/supplements", encode(&call.gateway_onboarding_id));
        let body = wire::SupplementBody { documents: documents.iter().map(ToString::to_string).collect() };
        self.post((call.account, call.request_id), path, Some(body), convert)
    }
}

fn signed(outcome: Outcome<wire::AgreementAnswer>) -> Outcome<SignedAgreement> {
    outcome.and_then(|a| match a.status.as_str() {
        "signed" => Outcome::Done(SignedAgreement { gateway_agreement_id: a.id }),
        other => Outcome::Unknown { detail: format!("agreement status {other}") },
    })
}

impl AgreementGateway for HttpMarketplaceGateway {
    fn sign_agreement(&self, req: AgreementSigning) -> Reply<'_, SignedAgreement> {
        let body = wire::SignAgreementBody {
            agreement_id: req.agreement_id.to_string(),
            provider_recipient_id: req.provider_recipient_id,
            agreement_type: req.agreement_type.to_owned(),
            max_commission_bps: req.max_commission_bps,
        };
        self.post((req.account, req.request_id), "/agreements".into(), Some(body), signed)
    }

    fn query_agreement(&self, account: GatewayAccount, request_id: String) -> Reply<'_, SignedAgreement> {
        self.get(account, format!("/agreements/by-request/{}", encode(&request_id)), signed)
    }
}

fn decided(outcome: Outcome<wire::RecipientPayoutAnswer>) -> Outcome<PayoutDecision> {
    outcome.and_then(|a| match a.status.as_str() {
        "succeeded" | "failed" => Outcome::Done(PayoutDecision {
            paid: a.status == "succeeded",
            gateway_payout_id: a.id,
            reason: a.reason,
        }),
        other => Outcome::Unknown { detail: format!("payout status {other}") },
    })
}

impl RecipientPayoutGateway for HttpMarketplaceGateway {
    fn recipient_payout(&self, req: RecipientPayout) -> Reply<'_, PayoutDecision> {
        let body = wire::RecipientPayoutBody {
            amount: req.amount,
            holder_name: req.holder_name,
            bank_code: req.bank_code,
            account_number: req.account_number.expose().to_owned(),
        };
        self.post((req.account, req.request_id), "/recipient-payouts".into(), Some(body), decided)
    }

    fn query_recipient_payout(
        &self,
        account: GatewayAccount,
        request_id: String,
    ) -> Reply<'_, PayoutDecision> {
        self.get(account, format!("/recipient-payouts/by-request/{}", encode(&request_id)), decided)
    }
}

/// The sandbox gateway's decide and compliance helpers (control endpoints):
/// `what` is `decide` ([`wire::DecideBody`]) or `compliance` ([`wire::ComplianceBody`]).
pub async fn sandbox_control<B: serde::Serialize>(
    control: &super::sandbox::SandboxControl,
    gateway_onboarding_id: &str,
    what: &str,
    body: &B,
) -> Result<Outcome<GatewayOnboarding>, super::UpstreamError> {
    let path = format!("/gateway/control/onboardings/{}/{what}", encode(gateway_onboarding_id));
    let answer = super::http_util::send_control::<wire::OnboardingAnswer>(
        control.request(Method::POST, &path).json(body),
    )
    .await?;
    Ok(convert(Outcome::Done(answer)))
}

/// Arms (or, with `None`, clears) the sandbox gateway's marketplace faults.
pub async fn sandbox_fault(
    control: &super::sandbox::SandboxControl,
    fault: Option<&wire::MarketplaceFault>,
) -> Result<(), super::UpstreamError> {
    let path = "/gateway/control/marketplace/faults";
    match fault {
        Some(f) => {
            super::http_util::send_control::<serde_json::Value>(control.request(Method::POST, path).json(f))
                .await?
        }
        None => {
            super::http_util::send_control::<serde_json::Value>(control.request(Method::DELETE, path)).await?
        }
    };
    Ok(())
}

/// Each item's outcome; a status other than executed or failed makes the whole answer unknown.
fn split_results(outcome: Outcome<wire::SplitAnswer>) -> Outcome<Vec<SplitResult>> {
    outcome.and_then(|a| {
        if !a.items.iter().all(|i| matches!(i.status.as_str(), "executed" | "failed")) {
            return Outcome::Unknown { detail: "unreadable split item status".into() };
        }
        let result = |i: wire::SplitItemAnswer| SplitResult {
            outcome: if i.status == "executed" {
                Ok(())
            } else {
                Err(i.reason.unwrap_or_else(|| "refused by the gateway".into()))
            },
            payment_id: i.payment_id,
        };
        Outcome::Done(a.items.into_iter().map(result).collect())
    })
}

/// The answer as the port's type.
fn payment(outcome: Outcome<wire::PaymentAnswer>) -> Outcome<GatewayPayment> {
    use super::gateway_wire::OrderStatusWire as W;
    outcome.map(|a| GatewayPayment {
        gateway_order_id: a.id,
        payment_id: a.payment_id,
        checkout_url: a.checkout_url,
        status: match a.status {
            W::Pending => GatewayPaymentStatus::Pending,
            W::Authorized => GatewayPaymentStatus::Authorized,
            W::Paid => GatewayPaymentStatus::Captured,
            W::Failed => GatewayPaymentStatus::Failed,
            W::Expired => GatewayPaymentStatus::Expired,
            W::Canceled => GatewayPaymentStatus::Canceled,
            W::Refunded => GatewayPaymentStatus::Refunded,
        },
        amount: a.amount,
    })
}

impl PaymentsGateway for HttpMarketplaceGateway {
    fn refund_payment(&self, req: Refund) -> Reply<'_, GatewayRefund> {
        let Refund { request_id, account, gateway_order_id, amount } = req;
        let path = format!("/payments/{}/refunds", encode(&gateway_order_id));
        // The answer must name this payment and amount, or the outcome is not known.
        let read = move |answer: Outcome<wire::PaymentRefundAnswer>| {
            answer.and_then(|a| {
                if a.payment != gateway_order_id || a.amount != amount {
                    let detail = "the refund answer names another payment or amount".into();
                    return Outcome::Unknown { detail };
                }
                Outcome::Done(GatewayRefund { id: a.id, amount: a.amount })
            })
        };
        self.post((account, request_id), path, Some(wire::PaymentRefundBody { amount }), read)
    }

    fn split(&self, req: SplitRequest) -> Reply<'_, Vec<SplitResult>> {
        let body = wire::SplitBody {
            batch_id: req.batch_id,
            items: req
                .items
                .into_iter()
                .map(|i| wire::SplitItemWire {
                    id: i.gateway_order_id,
                    payment_id: i.payment_id.to_string(),
                    amount: i.amount,
                })
                .collect(),
        };
        self.post((req.account, req.request_id), "/splits".into(), Some(body), split_results)
    }

    fn create_payment(&self, req: PaymentCheckout) -> Reply<'_, GatewayPayment> {
        let body = wire::CreatePaymentBody {
            payment_id: req.payment_id.to_string(),
            amount: req.amount,
            capture: req.capture,
            description: req.description,
        };
        self.post((req.account, req.request_id), "/payments".into(), Some(body), payment)
    }

    fn query_payment(&self, account: GatewayAccount, gateway_order_id: String) -> Reply<'_, GatewayPayment> {
        self.get(account, format!("/payments/{}", encode(&gateway_order_id)), payment)
    }

    fn capture_payment(&self, call: PaymentCall) -> Reply<'_, GatewayPayment> {
        self.payment_action(call, "capture")
    }

    fn cancel_payment(&self, call: PaymentCall) -> Reply<'_, GatewayPayment> {
        self.payment_action(call, "cancel")
    }
}

impl HttpMarketplaceGateway {
    /// `POST /payments/{id}/{action}` (`capture` or `cancel`) with its request id.
    fn payment_action(&self, call: PaymentCall, action: &'static str) -> Reply<'_, GatewayPayment> {
        let path = format!("/payments/{}/{action}", encode(&call.gateway_order_id));
        self.post((call.account, call.request_id), path, None::<()>, payment)
    }
}
