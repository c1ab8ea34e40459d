//! The recipient actor's onboarding commands (MARKETPLACE.md §4). The actor
//! of an onboarding's current owner is its single writer: each change is one
//! commit, fenced on the onboarding's stored bytes, with its index rows (the
//! owner's list, the owner's open marker `recopen/{recipient}` — at most one
//! open onboarding per recipient, enforced by the store — and the merchant's
//! `provider_recipient_id` in use) and its `recipient.onboarding.updated`
//! event. A gateway call is two commands: `BeginAction` stores the request id
//! as `pending_action` before the call; `FinishAction` applies the answer.

use actix::Message;
use pelago_storage::{
    FlushTicket, MerchantId, OnboardingId, RecipientId, Store, StoreError, Tree, WriteBatch,
};

use super::{
    actor::{RecipientActor, cell},
    gateway::GatewayOnboarding,
    onboarding::{
        ActionType, ComplianceStatus, Decision, Document, NewOnboarding, Onboarding, OnboardingEvent,
        OnboardingStatus, OnboardingType, PendingAction, Review,
    },
    state::{OnboardingSummary, RecipientRecord},
};
use crate::{
    error::{ActorResult, Reject},
    keys::{self, Index, Marker},
    outbox::{self, EventObject},
    ports::Outcome,
    runtime::durable_handler,
};

fn open_key(recipient: &RecipientId) -> Vec<u8> {
    Index::RecipientOpen { recipient: recipient.clone() }.encode()
}

/// The scan prefix of the onboardings a recipient owns.
pub fn owned_prefix(recipient: &RecipientId) -> String {
    keys::scan_prefix(keys::RECONB, &[recipient])
}

fn provider_key(merchant: &MerchantId, provider_recipient_id: &str) -> Vec<u8> {
    Index::ProviderRecipient {
        merchant: merchant.clone(),
        provider_recipient: provider_recipient_id.to_owned(),
    }
    .encode()
}

/// The merchant's open onboarding that holds `provider_recipient_id`, if any
/// (a payment line names a recipient by it, MARKETPLACE.md §6).
pub fn holding(
    store: &Store,
    merchant: &MerchantId,
    provider_recipient_id: &str,
) -> Result<Option<Onboarding>, StoreError> {
    match store.get_raw(Tree::Index, provider_key(merchant, provider_recipient_id))? {
        Some(key) => store.get::<Onboarding>(&key),
        None => Ok(None),
    }
}

/// The recipient's current onboarding (§3): the open one, else the latest.
pub fn current(store: &Store, recipient: &RecipientId) -> Result<Option<Onboarding>, StoreError> {
    if let Some(id) = store.get_raw(Tree::Index, open_key(recipient))? {
        return store.get::<Onboarding>(&id);
    }
    let latest = store.scan_keys(Tree::Index, owned_prefix(recipient).as_bytes(), None, true, 1)?;
    match latest.first().and_then(|key| Index::parse(key)) {
        Some(Index::RecipientOnboarding { onboarding, .. }) => store.get::<Onboarding>(onboarding.as_bytes()),
        _ => Ok(None),
    }
}

pub fn summary(o: &Onboarding) -> OnboardingSummary {
    OnboardingSummary {
        id: o.id.clone(),
        kind: o.kind,
        status: o.status,
        compliance_status: o.compliance.status,
    }
}

/// The recipient with its current onboarding filled in.
pub fn with_current(store: &Store, mut record: RecipientRecord) -> Result<RecipientRecord, StoreError> {
    record.onboarding = current(store, &record.id)?.as_ref().map(summary);
    record.split_agreement_signed =
        super::agreement::signed(store, &record.id, super::agreement::AgreementType::Split)?.is_some();
    Ok(record)
}

/// The gateway call a begun action needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayCall {
    Submit { request_id: String },
    Cancel { request_id: String, gateway_onboarding_id: String },
    Supplement { request_id: String, gateway_onboarding_id: String, documents: Vec<Document> },
}

impl GatewayCall {
    pub fn request_id(&self) -> &str {
        match self {
            GatewayCall::Submit { request_id }
            | GatewayCall::Cancel { request_id, .. }
            | GatewayCall::Supplement { request_id, .. } => request_id,
        }
    }
}

/// A merchant action that may need the gateway.
#[derive(Debug, Clone)]
pub enum Action {
    Continue { documents: Vec<Document> },
    Cancel,
    Supplement { documents: Vec<Document>, note: Option<String> },
}

/// The onboarding after a command, and the gateway call to make, if any.
#[derive(Debug, Clone)]
pub struct Begun {
    pub onboarding: Onboarding,
    pub call: Option<GatewayCall>,
}

fn decision_of(answer: &GatewayOnboarding) -> Option<Decision> {
    Some(match answer.status {
        OnboardingStatus::Succeeded => Decision::Succeeded {
            provider_recipient_id: answer.provider_recipient_id.clone().unwrap_or_default(),
        },
        OnboardingStatus::Declined => Decision::Declined,
        OnboardingStatus::Rejected => Decision::Rejected,
        OnboardingStatus::Blocked => Decision::Blocked,
        OnboardingStatus::Error => Decision::Error,
        _ => return None,
    })
}

/// Brings `o` up to what the gateway says, by the table's events only; what
/// it already shows is no change (duplicates and repeats have one effect).
fn reconcile(
    o: &mut Onboarding,
    answer: &GatewayOnboarding,
    at: pelago_storage::Timestamp,
) -> Result<(), Reject> {
    if o.gateway_onboarding_id.is_none() {
        o.gateway_onboarding_id = Some(answer.gateway_onboarding_id.clone());
    }
    if o.status == OnboardingStatus::Pending
        && let Some(decision) = decision_of(answer)
    {
        o.apply(OnboardingEvent::Decide { decision, reason: answer.reason.clone() }, at)?;
    }
    if o.status == OnboardingStatus::Succeeded && o.compliance.status == ComplianceStatus::Pending {
        let result = match answer.compliance {
            Some(ComplianceStatus::Approved) => Some(Review::Approved),
            Some(ComplianceStatus::Failed | ComplianceStatus::Frozen) => Some(Review::Failed),
            _ => None,
        };
        if let Some(result) = result {
            o.apply(OnboardingEvent::Review { result, reason: answer.reason.clone() }, at)?;
        }
    }
    Ok(())
}

impl RecipientActor {
    fn load_onboarding(&self, id: &OnboardingId) -> ActorResult<(Onboarding, Vec<u8>)> {
        let (o, bytes) = self
            .cell
            .store()
            .get_with_bytes::<Onboarding>(id.as_bytes())?
            .ok_or(Reject::NotFound { what: "onboarding" })?;
        if o.recipient_id != self.id {
            return Err(Reject::NotFound { what: "onboarding" }.into());
        }
        Ok((o, bytes))
    }

    /// One commit: the onboarding (fenced on `before`), its index rows, its event.
    fn commit_onboarding(
        &mut self,
        before: Option<(&Onboarding, Vec<u8>)>,
        after: &Onboarding,
        mut batch: WriteBatch,
    ) -> ActorResult<FlushTicket> {
        let key = after.id.as_bytes();
        let (before, bytes) = before.unzip();
        batch.expect_raw(Tree::Onboardings, key, bytes);
        batch.put(key, after)?;
        stage_owner_rows(&mut batch, before, after);
        stage_lookup_rows(&mut batch, after);
        if before.is_none_or(|b| b.version != after.version) {
            outbox::stage(
                &mut batch,
                &after.merchant_id,
                "recipient.onboarding.updated",
                EventObject::Onboarding(Box::new(after.clone())),
                self.deps.clock.now(),
            )?;
        }
        match self.cell.store().commit(batch) {
            Ok(ticket) => Ok(ticket),
            Err(StoreError::Conflict { .. }) => {
                Err(Reject::state("the recipient has another open onboarding, or this one changed; retry")
                    .into())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn next_request(o: &mut Onboarding) -> String {
        o.gateway_calls += 1;
        format!("{}-{}", o.id, o.gateway_calls)
    }

    fn create_onboarding(&mut self, new: NewOnboarding) -> ActorResult<(Begun, Option<FlushTicket>)> {
        let recipient = self.cell.existing("recipient")?.clone();
        if new.recipient_id != self.id || new.merchant_id != recipient.merchant_id {
            return Err(Reject::NotFound { what: "recipient" }.into());
        }
        let store = self.cell.store();
        if let Some(existing) = store.get::<Onboarding>(new.id.as_bytes())? {
            // A repeat of the same creation (its Idempotency-Key binding).
            return Ok((Begun { onboarding: existing, call: None }, None));
        }
        if store.contains(Tree::Index, open_key(&self.id))? {
            return Err(Reject::state("the recipient has an open onboarding").into());
        }
        if let Some(prid) = &new.provider_recipient_id
            && store.contains(Tree::Index, provider_key(&new.merchant_id, prid))?
        {
            return Err(Reject::InvalidStateOn {
                param: "provider_recipient_id".into(),
                message: "provider_recipient_id is on another open onboarding of the merchant".into(),
            }
            .into());
        }
        let now = self.deps.clock.now();
        let mut onboarding = Onboarding::create(new, now)?;
        let call = if onboarding.kind == OnboardingType::OneStep {
            let request_id = Self::next_request(&mut onboarding);
            onboarding.pending_action = Some(PendingAction {
                kind: ActionType::Submit,
                documents: vec![],
                note: None,
                request_id: request_id.clone(),
                since: now,
            });
            Some(GatewayCall::Submit { request_id })
        } else {
            None
        };
        let ticket = self.commit_onboarding(None, &onboarding, WriteBatch::new())?;
        Ok((Begun { onboarding, call }, Some(ticket)))
    }

    fn begin(&mut self, id: OnboardingId, action: Action) -> ActorResult<(Begun, Option<FlushTicket>)> {
        let (before, bytes) = self.load_onboarding(&id)?;
        if let Some(p) = &before.pending_action {
            return Err(Reject::state(format!(
                "the onboarding's earlier {} is still being resolved with the gateway",
                p.kind.as_str()
            ))
            .into());
        }
        let now = self.deps.clock.now();
        let mut after = before.clone();
        let (kind, event, documents, note) = match &action {
            Action::Continue { documents } => (
                ActionType::Submit,
                OnboardingEvent::Continue { documents: documents.clone() },
                documents.clone(),
                None,
            ),
            Action::Cancel => (ActionType::Cancel, OnboardingEvent::Cancel, vec![], None),
            Action::Supplement { documents, note } => (
                ActionType::Supplement,
                OnboardingEvent::Supplement { documents: documents.clone(), note: note.clone() },
                documents.clone(),
                note.clone(),
            ),
        };
        before.check(&event)?;
        let gateway_id = before.gateway_onboarding_id.clone();
        let needs_gateway = match kind {
            ActionType::Cancel => before.submitted && gateway_id.is_some(),
            _ => true,
        };
        if !needs_gateway {
            after.apply(event, now)?;
            let ticket = self.commit_onboarding(Some((&before, bytes)), &after, WriteBatch::new())?;
            return Ok((Begun { onboarding: after, call: None }, Some(ticket)));
        }
        let request_id = Self::next_request(&mut after);
        let call = match kind {
            ActionType::Submit => GatewayCall::Submit { request_id: request_id.clone() },
            ActionType::Cancel => GatewayCall::Cancel {
                request_id: request_id.clone(),
                gateway_onboarding_id: gateway_id.unwrap_or_default(),
            },
            ActionType::Supplement => GatewayCall::Supplement {
                request_id: request_id.clone(),
                gateway_onboarding_id: gateway_id.unwrap_or_default(),
                documents: documents.clone(),
            },
        };
        after.pending_action = Some(PendingAction { kind, documents, note, request_id, since: now });
        let ticket = self.commit_onboarding(Some((&before, bytes)), &after, WriteBatch::new())?;
        Ok((Begun { onboarding: after, call: Some(call) }, Some(ticket)))
    }

    /// Applies the gateway's answer to the pending action `request_id`. A
    /// refusal of a creation's submission makes it REJECTED; of any other
    /// action, 502 with the onboarding unchanged; an unknown outcome keeps
    /// the pending action for the resolver.
    fn finish(
        &mut self,
        id: OnboardingId,
        request_id: String,
        outcome: Outcome<GatewayOnboarding>,
    ) -> ActorResult<(Finished, Option<FlushTicket>)> {
        let (before, bytes) = self.load_onboarding(&id)?;
        let Some(pending) = before.pending_action.clone().filter(|p| p.request_id == request_id) else {
            return Ok((Finished { onboarding: before, refused: None }, None)); // already resolved: one effect
        };
        let now = self.deps.clock.now();
        let mut after = before.clone();
        after.pending_action = None;
        let creating = before.status == OnboardingStatus::Created && before.kind == OnboardingType::OneStep;
        match outcome {
            Outcome::Unknown { .. } => return Ok((Finished { onboarding: before, refused: None }, None)),
            Outcome::Declined { reason } => {
                if pending.kind == ActionType::Submit && creating {
                    after.apply(OnboardingEvent::Submit, now)?;
                    after.apply(
                        OnboardingEvent::Decide { decision: Decision::Rejected, reason: Some(reason) },
                        now,
                    )?;
                } else {
                    let ticket = self.commit_onboarding(Some((&before, bytes)), &after, WriteBatch::new())?;
                    let refused = Some(format!("the gateway refused the {}", pending.kind.as_str()));
                    return Ok((Finished { onboarding: after, refused }, Some(ticket)));
                }
            }
            Outcome::Done(answer) => {
                match pending.kind {
                    ActionType::Submit => {
                        let event = if creating {
                            OnboardingEvent::Submit
                        } else {
                            OnboardingEvent::Continue { documents: pending.documents.clone() }
                        };
                        after.apply(event, now)?;
                        after.gateway_onboarding_id = Some(answer.gateway_onboarding_id.clone());
                    }
                    ActionType::Cancel => after.apply(OnboardingEvent::Cancel, now)?,
                    ActionType::Supplement => after.apply(
                        OnboardingEvent::Supplement {
                            documents: pending.documents.clone(),
                            note: pending.note.clone(),
                        },
                        now,
                    )?,
                }
                if pending.kind != ActionType::Cancel {
                    reconcile(&mut after, &answer, now)?;
                }
            }
        }
        let ticket = self.commit_onboarding(Some((&before, bytes)), &after, WriteBatch::new())?;
        Ok((Finished { onboarding: after, refused: None }, Some(ticket)))
    }

    /// What the gateway reported on its own (a decision, a review).
    fn report(
        &mut self,
        id: OnboardingId,
        answer: GatewayOnboarding,
    ) -> ActorResult<(Onboarding, Option<FlushTicket>)> {
        let (before, bytes) = self.load_onboarding(&id)?;
        if before.gateway_onboarding_id.as_deref() != Some(answer.gateway_onboarding_id.as_str()) {
            return Ok((before, None)); // about an earlier submission
        }
        let mut after = before.clone();
        reconcile(&mut after, &answer, self.deps.clock.now())?;
        if after == before {
            return Ok((before, None));
        }
        let ticket = self.commit_onboarding(Some((&before, bytes)), &after, WriteBatch::new())?;
        Ok((after, Some(ticket)))
    }

    fn transfer(
        &mut self,
        id: OnboardingId,
        to: Option<RecipientId>,
    ) -> ActorResult<(Onboarding, Option<FlushTicket>)> {
        let (before, bytes) = self.load_onboarding(&id)?;
        if before.pending_action.is_some() {
            return Err(Reject::state("the onboarding has an action being resolved with the gateway").into());
        }
        let target = match &to {
            Some(t) => t.clone(),
            None => before.transferred_from.clone().ok_or_else(|| {
                Reject::state("the onboarding's latest transfer is not a `transferred` one")
            })?,
        };
        let store = self.cell.store();
        if to.is_some() {
            let theirs = store
                .get::<RecipientRecord>(target.as_bytes())?
                .filter(|r| r.merchant_id == before.merchant_id)
                .is_some();
            if !theirs || target == self.id {
                return Err(Reject::invalid(
                    "recipient_id",
                    "recipient_id must be another recipient of the merchant",
                )
                .into());
            }
        }
        let event = match to {
            Some(to) => OnboardingEvent::Transfer { to },
            None => OnboardingEvent::ReverseTransfer,
        };
        before.check(&event)?;
        if store.contains(Tree::Index, open_key(&target))? {
            let message = "the target recipient has an open onboarding".to_owned();
            return Err(match event {
                OnboardingEvent::Transfer { .. } => {
                    Reject::InvalidStateOn { param: "recipient_id".into(), message }
                }
                _ => Reject::state(message),
            }
            .into());
        }
        let mut after = before.clone();
        after.apply(event, self.deps.clock.now())?;
        let ticket = self.commit_onboarding(Some((&before, bytes)), &after, WriteBatch::new())?;
        Ok((after, Some(ticket)))
    }
}

/// Creates an onboarding of this recipient (a one-step one with its
/// submission begun).
#[derive(Message)]
#[rtype(result = "ActorResult<Begun>")]
pub struct CreateOnboarding(pub NewOnboarding);

durable_handler!(RecipientActor, cell, CreateOnboarding => Begun, |act, msg| act.create_onboarding(msg.0));

#[derive(Message)]
#[rtype(result = "ActorResult<Begun>")]
pub struct BeginAction {
    pub onboarding_id: OnboardingId,
    pub action: Action,
}

durable_handler!(RecipientActor, cell, BeginAction => Begun, |act, msg| act.begin(msg.onboarding_id, msg.action));

/// The onboarding after the gateway's answer; `refused`: the gateway refused
/// an action on an existing onboarding (502, the onboarding unchanged).
#[derive(Debug, Clone)]
pub struct Finished {
    pub onboarding: Onboarding,
    pub refused: Option<String>,
}

#[derive(Message)]
#[rtype(result = "ActorResult<Finished>")]
pub struct FinishAction {
    pub onboarding_id: OnboardingId,
    pub request_id: String,
    pub outcome: Outcome<GatewayOnboarding>,
}

durable_handler!(RecipientActor, cell, FinishAction => Finished, |act, msg| {
    act.finish(msg.onboarding_id, msg.request_id, msg.outcome)
});

#[derive(Message)]
#[rtype(result = "ActorResult<Onboarding>")]
pub struct ReportOnboarding {
    pub onboarding_id: OnboardingId,
    pub answer: GatewayOnboarding,
}

durable_handler!(RecipientActor, cell, ReportOnboarding => Onboarding, |act, msg| {
    act.report(msg.onboarding_id, msg.answer)
});

/// `transfer` (`to` set) or `reverse-transfer` (`to` none).
#[derive(Message)]
#[rtype(result = "ActorResult<Onboarding>")]
pub struct TransferOnboarding {
    pub onboarding_id: OnboardingId,
    pub to: Option<RecipientId>,
}

durable_handler!(RecipientActor, cell, TransferOnboarding => Onboarding, |act, msg| {
    act.transfer(msg.onboarding_id, msg.to)
});

/// The owner's rows: its open marker `recopen/` (unique: taken with
/// `expect_absent`, so a second open onboarding cannot slip in) and its
/// `RecipientOnboarding` row, moved with a transfer.
fn stage_owner_rows(batch: &mut WriteBatch, before: Option<&Onboarding>, after: &Onboarding) {
    let key = after.id.as_bytes();
    let was_open = before.is_some_and(|b| b.status.is_open());
    let owner_moved = before.is_some_and(|b| b.recipient_id != after.recipient_id);
    if let Some(b) = before
        && was_open
        && (!after.status.is_open() || owner_moved)
    {
        batch.delete(Tree::Index, open_key(&b.recipient_id));
    }
    if after.status.is_open() && (!was_open || owner_moved) {
        batch.expect_absent(Tree::Index, open_key(&after.recipient_id));
        batch.put_raw(Tree::Index, open_key(&after.recipient_id), key);
    }
    if let Some(b) = before
        && owner_moved
    {
        batch.delete(
            Tree::Index,
            Index::RecipientOnboarding { recipient: b.recipient_id.clone(), onboarding: b.id.clone() }
                .encode(),
        );
    }
    let owned =
        Index::RecipientOnboarding { recipient: after.recipient_id.clone(), onboarding: after.id.clone() };
    batch.put_raw(Tree::Index, owned.encode(), []);
}

/// The rows the onboarding is found by: its gateway id, the resolver's
/// marker, the provider recipient id while it is open.
fn stage_lookup_rows(batch: &mut WriteBatch, after: &Onboarding) {
    let key = after.id.as_bytes();
    if let Some(gateway_id) = &after.gateway_onboarding_id {
        batch.put_raw(
            Tree::Index,
            Index::GatewayOnboarding { gateway_onboarding: gateway_id.clone() }.encode(),
            key,
        );
    }
    // The resolver's marker: present exactly while a gateway outcome is unknown.
    let pending = Marker::OnboardingPending { onboarding: after.id.clone() }.encode();
    match &after.pending_action {
        Some(_) => batch.put_raw(Tree::Operations, pending, after.recipient_id.as_bytes()),
        None => batch.delete(Tree::Operations, pending),
    };
    if let Some(prid) = &after.provider_recipient_id {
        let pkey = provider_key(&after.merchant_id, prid);
        if after.status.is_open() {
            batch.put_raw(Tree::Index, pkey, key);
        } else {
            batch.delete(Tree::Index, pkey);
        }
    }
}
