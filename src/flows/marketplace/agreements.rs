//! Agreements (MARKETPLACE.md §5, §9): created `pending` by the recipient
//! actor (request id and resolver marker durable first), signed at the
//! gateway, finished with its answer; unknown outcomes stay `pending` (202)
//! until [`resolve_pending`] asks the gateway by request id.

use std::sync::Arc;

use pelago_actors::{
    keys::{AGRPENDING, Marker},
    ports::Outcome,
    recipient::{
        agreement::{
            AgreementRecord, AgreementStatus, AgreementType, CreateAgreement, FinishAgreement, NewAgreement,
        },
        gateway::AgreementSigning,
    },
};
use pelago_storage::{AgreementId, MerchantId};

use super::recipients::load_owned as load_recipient;
use crate::{app::Core, flows::Error};

pub struct Answer {
    pub agreement: AgreementRecord,
    pub unknown: bool,
}

async fn sign(app: &Arc<Core>, agreement: AgreementRecord, retry: bool) -> Result<Answer, Error> {
    let account = super::gateway_account(app, &agreement.merchant_id).await?;
    let outcome = if retry {
        // Asked by request id first: a signing the gateway applied is not repeated.
        match app.upstreams.agreements.query_agreement(account.clone(), agreement.request_id.clone()).await {
            Outcome::Declined { .. } => None,
            known => Some(known),
        }
    } else {
        None
    };
    let outcome = match outcome {
        Some(o) => o,
        None => {
            app.upstreams
                .agreements
                .sign_agreement(AgreementSigning {
                    account,
                    request_id: agreement.request_id.clone(),
                    agreement_id: agreement.id.clone(),
                    provider_recipient_id: agreement.provider_recipient_id.clone(),
                    agreement_type: agreement.kind.as_str(),
                    max_commission_bps: agreement.max_commission_bps,
                })
                .await
        }
    };
    let unknown = matches!(outcome, Outcome::Unknown { .. });
    let agreement = app
        .actors
        .ask_recipient(
            &agreement.recipient_id,
            FinishAgreement { agreement_id: agreement.id.clone(), outcome },
        )
        .await??;
    Ok(Answer { unknown: unknown && agreement.status == AgreementStatus::Pending, agreement })
}

pub async fn create(
    app: &Arc<Core>,
    merchant_id: &MerchantId,
    raw_recipient: &str,
    kind: AgreementType,
    max_commission_bps: Option<u32>,
    binding: Option<String>,
) -> Result<Answer, Error> {
    let recipient = load_recipient(app, merchant_id, raw_recipient).await?;
    let id = super::bound_id(app, binding.as_ref(), AgreementId::generate()).await?;
    let new = NewAgreement {
        id,
        merchant_id: merchant_id.clone(),
        recipient_id: recipient.id.clone(),
        kind,
        max_commission_bps,
    };
    let agreement = app.actors.ask_recipient(&recipient.id, CreateAgreement(new)).await??;
    if agreement.status != AgreementStatus::Pending {
        return Ok(Answer { agreement, unknown: false });
    }
    sign(app, agreement, false).await
}

/// The resolver's pass over agreements whose signing is unknown.
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let grace_ms = crate::flows::grace_ms(app);
    let now = app.clock.now();
    let mut resolved = 0;
    // Due at once: the grace runs from the record's own time, below.
    for marker in crate::flows::marker_keys(app, AGRPENDING)? {
        let Marker::AgreementPending { agreement: id } = marker else { continue };
        let Some(agreement) = app.store.get::<AgreementRecord>(id.as_bytes())? else { continue };
        if agreement.status != AgreementStatus::Pending
            || now.unix_ms() - agreement.created_at.unix_ms() < grace_ms
        {
            continue;
        }
        match sign(app, agreement, true).await {
            Ok(answer) if !answer.unknown => resolved += 1,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "resolving an agreement failed; retrying later"),
        }
    }
    Ok(resolved)
}
