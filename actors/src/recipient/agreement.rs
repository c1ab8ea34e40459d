//! Agreements (MARKETPLACE.md §5): split and commission agreements of a
//! recipient, signed at the gateway; the newest signed one of a type
//! supersedes the previous. Written by the recipient's actor: `pending` with
//! the request id (and the resolver's marker) before the gateway call, then
//! `signed` (superseding) or `failed` with the answer, each change with its
//! `recipient.agreement.updated` event.

use actix::Message;
use pelago_storage::{
    AgreementId, FlushTicket, MerchantId, RecipientId, Store, StoreError, Timestamp, Tree, WriteBatch,
};
use serde::{Deserialize, Serialize};

use super::{
    actor::{RecipientActor, cell},
    gateway::SignedAgreement,
    onboarding::OnboardingStatus,
    onboardings::current,
};
use crate::{
    error::{ActorResult, Reject},
    keys::{self, Index, Marker},
    outbox::{self, EventObject},
    ports::Outcome,
    runtime::durable_handler,
};

crate::wire_enum! {
    pub enum AgreementType {
        Split = "split",
        Commission = "commission",
    }
}

crate::state_machine! {
    /// §5: `pending → signed | failed`; a signed one is superseded by the next.
    pub enum AgreementStatus ("agreement") {
        Pending = "pending" -> Signed | Failed,
        Signed = "signed" -> Superseded,
        Failed = "failed",
        Superseded = "superseded",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementRecord {
    pub id: AgreementId,
    pub merchant_id: MerchantId,
    pub recipient_id: RecipientId,
    pub kind: AgreementType,
    pub max_commission_bps: Option<u32>,
    pub status: AgreementStatus,
    pub provider_recipient_id: String,
    /// The gateway request id, stored before the call (§9).
    pub request_id: String,
    pub gateway_agreement_id: Option<String>,
    pub failure_reason: Option<String>,
    pub signed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub version: u64,
}

pelago_storage::record!(AgreementRecord, Agreements, 1);

impl AgreementRecord {
    fn move_to(&mut self, to: AgreementStatus) -> Result<(), Reject> {
        if !self.status.can_become(to) {
            return Err(Reject::state(format!(
                "the agreement is {}; it cannot become {}",
                self.status.as_str(),
                to.as_str()
            )));
        }
        self.status = to;
        self.version += 1;
        Ok(())
    }
}

/// The recipient's agreements (`None`) or those of one type, in id order.
pub fn owned_prefix(recipient: &RecipientId, kind: Option<AgreementType>) -> String {
    match kind {
        None => keys::scan_prefix(keys::RECAGR, &[recipient]),
        Some(k) => keys::scan_prefix(keys::RECAGRTYPE, &[recipient, &k.as_str()]),
    }
}

fn signed_key(recipient: &RecipientId, kind: AgreementType) -> Vec<u8> {
    Index::SignedAgreement { recipient: recipient.clone(), kind: kind.as_str().to_owned() }.encode()
}

fn pending_marker(id: &AgreementId) -> Vec<u8> {
    Marker::AgreementPending { agreement: id.clone() }.encode()
}

/// The recipient's signed agreement of `kind`, if any.
pub fn signed(
    store: &Store,
    recipient: &RecipientId,
    kind: AgreementType,
) -> Result<Option<AgreementRecord>, StoreError> {
    match store.get_raw(Tree::Index, signed_key(recipient, kind))? {
        Some(id) => store.get::<AgreementRecord>(&id),
        None => Ok(None),
    }
}

/// What a new agreement asks for (checked by HTTP: type, bps range and presence).
#[derive(Debug, Clone)]
pub struct NewAgreement {
    pub id: AgreementId,
    pub merchant_id: MerchantId,
    pub recipient_id: RecipientId,
    pub kind: AgreementType,
    pub max_commission_bps: Option<u32>,
}

impl RecipientActor {
    fn stage_agreement(&self, batch: &mut WriteBatch, a: &AgreementRecord) -> ActorResult<()> {
        batch.put(a.id.as_bytes(), a)?;
        outbox::stage(
            batch,
            &a.merchant_id,
            "recipient.agreement.updated",
            EventObject::Agreement(Box::new(a.clone())),
            self.deps.clock.now(),
        )?;
        Ok(())
    }

    fn create_agreement(&mut self, new: NewAgreement) -> ActorResult<(AgreementRecord, Option<FlushTicket>)> {
        let recipient = self.cell.existing("recipient")?;
        if new.recipient_id != self.id || new.merchant_id != recipient.merchant_id {
            return Err(Reject::NotFound { what: "recipient" }.into());
        }
        let store = self.cell.store();
        if let Some(existing) = store.get::<AgreementRecord>(new.id.as_bytes())? {
            return Ok((existing, None));
        }
        let onboarding = current(store, &self.id)?;
        let Some(onboarding) = onboarding.filter(|o| o.status == OnboardingStatus::Succeeded) else {
            return Err(Reject::state("the recipient's current onboarding is not SUCCEEDED").into());
        };
        let now = self.deps.clock.now();
        let record = AgreementRecord {
            request_id: format!("{}-1", new.id),
            id: new.id,
            merchant_id: new.merchant_id,
            recipient_id: new.recipient_id,
            kind: new.kind,
            max_commission_bps: new.max_commission_bps,
            status: AgreementStatus::Pending,
            provider_recipient_id: onboarding.provider_recipient_id.unwrap_or_default(),
            gateway_agreement_id: None,
            failure_reason: None,
            signed_at: None,
            created_at: now,
            version: 1,
        };
        let mut batch = WriteBatch::new();
        batch.expect_absent(Tree::Agreements, record.id.as_bytes());
        self.stage_agreement(&mut batch, &record)?;
        let (recipient, agreement) = (self.id.clone(), record.id.clone());
        batch.put_raw(Tree::Index, Index::RecipientAgreement { recipient, agreement }.encode(), []);
        let (recipient, agreement, kind) =
            (self.id.clone(), record.id.clone(), record.kind.as_str().to_owned());
        batch.put_raw(
            Tree::Index,
            Index::RecipientAgreementOfType { recipient, kind, agreement }.encode(),
            [],
        );
        batch.put_raw(Tree::Operations, pending_marker(&record.id), self.id.as_bytes());
        let ticket = store.commit(batch)?;
        Ok((record, Some(ticket)))
    }

    /// The gateway's answer: signed (superseding the previous signed one of
    /// the type), failed, or still unknown (unchanged).
    fn finish_agreement(
        &mut self,
        id: AgreementId,
        outcome: Outcome<SignedAgreement>,
    ) -> ActorResult<(AgreementRecord, Option<FlushTicket>)> {
        let store = self.cell.store();
        let (before, bytes) = store
            .get_with_bytes::<AgreementRecord>(id.as_bytes())?
            .filter(|(a, _)| a.recipient_id == self.id)
            .ok_or(Reject::NotFound { what: "agreement" })?;
        if before.status != AgreementStatus::Pending {
            return Ok((before, None)); // already settled: one effect
        }
        let mut after = before.clone();
        let mut batch = WriteBatch::new();
        batch.expect_raw(Tree::Agreements, id.as_bytes(), Some(bytes));
        match outcome {
            Outcome::Unknown { .. } => return Ok((before, None)),
            Outcome::Declined { reason } => {
                after.move_to(AgreementStatus::Failed)?;
                after.failure_reason = Some(reason);
            }
            Outcome::Done(signed_answer) => {
                after.move_to(AgreementStatus::Signed)?;
                after.gateway_agreement_id = Some(signed_answer.gateway_agreement_id);
                after.signed_at = Some(self.deps.clock.now());
                if let Some(mut previous) = signed(store, &self.id, after.kind)? {
                    previous.move_to(AgreementStatus::Superseded)?;
                    self.stage_agreement(&mut batch, &previous)?;
                }
                batch.put_raw(Tree::Index, signed_key(&self.id, after.kind), after.id.as_bytes());
            }
        }
        batch.delete(Tree::Operations, pending_marker(&after.id));
        self.stage_agreement(&mut batch, &after)?;
        let ticket = store.commit(batch)?;
        Ok((after, Some(ticket)))
    }
}

#[derive(Message)]
#[rtype(result = "ActorResult<AgreementRecord>")]
pub struct CreateAgreement(pub NewAgreement);

durable_handler!(RecipientActor, cell, CreateAgreement => AgreementRecord, |act, msg| act.create_agreement(msg.0));

#[derive(Message)]
#[rtype(result = "ActorResult<AgreementRecord>")]
pub struct FinishAgreement {
    pub agreement_id: AgreementId,
    pub outcome: Outcome<SignedAgreement>,
}

durable_handler!(RecipientActor, cell, FinishAgreement => AgreementRecord, |act, msg| {
    act.finish_agreement(msg.agreement_id, msg.outcome)
});
