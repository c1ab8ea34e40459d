//! The onboarding and compliance state machines (MARKETPLACE.md §4), pure:
//! no IO, no actix. An onboarding moves only through [`Onboarding::apply`],
//! which checks the event against the tables of §4, then moves the status,
//! the compliance, the owner, the history and the version together; any event
//! that is not in a row is `Reject::InvalidState` naming the current state,
//! and nothing changes.
//!
//! Who decides what lies outside: whether a target recipient is the
//! merchant's and has no open onboarding (the transfer rows), and what the
//! gateway answered, are facts the caller brings in the event.

use pelago_storage::{FileId, MerchantId, OnboardingId, RecipientId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{
    error::Reject,
    history::{Source, Status},
};

crate::state_machine! {
    /// MARKETPLACE.md §4: the 8 onboarding statuses (Yuno's upper case) and
    /// the edges of its table. Which *event* may take an edge (a `continue`
    /// only from CREATED of a two-step onboarding, a block by compliance only
    /// from SUCCEEDED) is [`Onboarding::apply`]'s business.
    pub enum OnboardingStatus ("onboarding") {
        Created = "CREATED" -> Pending | Canceled,
        Pending = "PENDING" -> Succeeded | Declined | Rejected | Blocked | Error | Canceled,
        Succeeded = "SUCCEEDED" -> Blocked,
        Declined = "DECLINED",
        Rejected = "REJECTED" -> Pending | Canceled,
        Blocked = "BLOCKED",
        Error = "ERROR" -> Pending | Canceled,
        Canceled = "CANCELED",
    }
}

impl OnboardingStatus {
    /// CREATED, PENDING, SUCCEEDED, REJECTED, ERROR: a recipient has at most
    /// one open onboarding, and it is its current one (§3).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OnboardingStatus::Created
                | OnboardingStatus::Pending
                | OnboardingStatus::Succeeded
                | OnboardingStatus::Rejected
                | OnboardingStatus::Error
        )
    }
}

crate::state_machine! {
    /// MARKETPLACE.md §4 (Compliance): at most 5 supplements; the 6th failed
    /// review freezes.
    pub enum ComplianceStatus ("compliance review") {
        NotStarted = "not_started" -> Pending,
        Pending = "pending" -> Approved | Failed | Frozen,
        Approved = "approved",
        Failed = "failed" -> Pending,
        Frozen = "frozen",
    }
}

/// At most this many supplements per onboarding; a failed review after the
/// last one freezes the compliance.
pub const SUPPLEMENTS_MAX: u8 = 5;

/// At most this many history entries are kept per onboarding (oldest dropped
/// first); the reverse-transfer target is kept apart, so it never depends on them.
pub const MAX_ONBOARDING_HISTORY: usize = 64;

crate::wire_enum! {
    pub enum OnboardingType {
        PreviouslyOnboarded = "PREVIOUSLY_ONBOARDED",
        OneStep = "ONE_STEP_ONBOARDING",
        TwoStep = "TWO_STEP_ONBOARDING",
    }
}

crate::wire_enum! {
    pub enum DocumentType {
        IdentityDocument = "identity_document",
        BusinessLicense = "business_license",
        BankProof = "bank_proof",
        Other = "other",
    }
}

/// A file given as a document (§2); the caller checked the file is the merchant's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub file_id: FileId,
    pub kind: DocumentType,
}

/// At most this many documents per request (§2: `documents` 1..10).
pub const MAX_DOCUMENTS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compliance {
    pub status: ComplianceStatus,
    pub supplements_used: u8,
    pub reason: Option<String>,
}

crate::wire_enum! {
    /// The kind of one onboarding history entry (§4).
    pub enum EntryType {
        StatusChanged = "status_changed",
        ComplianceChanged = "compliance_changed",
        SupplementSubmitted = "supplement_submitted",
        Transferred = "transferred",
        TransferReversed = "transfer_reversed",
    }
}

/// One entry of an onboarding's history: `from`/`to` are the API strings of
/// the onboarding status (`status_changed`) or the compliance status
/// (`compliance_changed`, `supplement_submitted`); the recipient ids are set
/// on the transfer entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingEntry {
    pub kind: EntryType,
    pub from: Option<String>,
    pub to: Option<String>,
    pub from_recipient_id: Option<RecipientId>,
    pub to_recipient_id: Option<RecipientId>,
    pub reason: Option<String>,
    pub source: Source,
    pub at: Timestamp,
}

crate::wire_enum! {
    /// A gateway action whose outcome is not known yet (§9).
    pub enum ActionType {
        Submit = "submit",
        Cancel = "cancel",
        Supplement = "supplement",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAction {
    pub kind: ActionType,
    /// The documents the action brings (a continue's, a supplement's),
    /// applied with its outcome.
    pub documents: Vec<Document>,
    pub note: Option<String>,
    /// The gateway request id, stored before the call (§9).
    pub request_id: String,
    pub since: Timestamp,
}

/// The gateway's decision on a submitted onboarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Succeeded { provider_recipient_id: String },
    Declined,
    Rejected,
    Blocked,
    Error,
}

impl Decision {
    fn status(&self) -> OnboardingStatus {
        match self {
            Decision::Succeeded { .. } => OnboardingStatus::Succeeded,
            Decision::Declined => OnboardingStatus::Declined,
            Decision::Rejected => OnboardingStatus::Rejected,
            Decision::Blocked => OnboardingStatus::Blocked,
            Decision::Error => OnboardingStatus::Error,
        }
    }
}

/// The outcome of one compliance review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Review {
    Approved,
    Failed,
}

/// Everything that can happen to an onboarding after its creation: the rows
/// of §4's two tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnboardingEvent {
    /// The submission of a one-step onboarding in its creating request.
    Submit,
    /// `POST …/continue`: a two-step onboarding's submission, or a resubmission.
    Continue { documents: Vec<Document> },
    /// The gateway decided a submitted onboarding.
    Decide { decision: Decision, reason: Option<String> },
    /// `POST …/cancel`.
    Cancel,
    /// The gateway's compliance review.
    Review { result: Review, reason: Option<String> },
    /// `POST …/supplements`.
    Supplement { documents: Vec<Document>, note: Option<String> },
    /// `POST …/transfer`; the caller checked the target is the merchant's and
    /// has no open onboarding.
    Transfer { to: RecipientId },
    /// `POST …/reverse-transfer`; the caller checked the previous owner has no
    /// open onboarding.
    ReverseTransfer,
}

impl OnboardingEvent {
    /// What the event is called in a refusal.
    pub fn name(&self) -> &'static str {
        match self {
            OnboardingEvent::Submit => "submit",
            OnboardingEvent::Continue { .. } => "continue",
            OnboardingEvent::Decide { .. } => "a gateway decision",
            OnboardingEvent::Cancel => "cancel",
            OnboardingEvent::Review { .. } => "a compliance review",
            OnboardingEvent::Supplement { .. } => "a supplement",
            OnboardingEvent::Transfer { .. } => "transfer",
            OnboardingEvent::ReverseTransfer => "reverse-transfer",
        }
    }

    fn source(&self) -> Source {
        match self {
            OnboardingEvent::Decide { .. } | OnboardingEvent::Review { .. } => Source::Gateway,
            OnboardingEvent::Submit => Source::System,
            _ => Source::Merchant,
        }
    }
}

/// What the merchant asked for when creating an onboarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOnboarding {
    pub id: OnboardingId,
    pub merchant_id: MerchantId,
    pub recipient_id: RecipientId,
    pub kind: OnboardingType,
    /// Required for PREVIOUSLY_ONBOARDED, forbidden otherwise (checked here).
    pub provider_recipient_id: Option<String>,
    pub documents: Vec<Document>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Onboarding {
    pub id: OnboardingId,
    pub merchant_id: MerchantId,
    /// The current owner (transfers move it).
    pub recipient_id: RecipientId,
    pub kind: OnboardingType,
    pub status: OnboardingStatus,
    pub provider_recipient_id: Option<String>,
    pub documents: Vec<Document>,
    pub compliance: Compliance,
    pub failure_reason: Option<String>,
    pub pending_action: Option<PendingAction>,
    /// Whether it was ever submitted to the gateway (a cancel then tells it).
    pub submitted: bool,
    /// The gateway's id of the latest submission, once it answered.
    pub gateway_onboarding_id: Option<String>,
    /// Gateway calls made so far: the next request id is `{id}-{calls + 1}`.
    pub gateway_calls: u32,
    /// The owner a reverse-transfer returns it to: set by a transfer, cleared
    /// by its reversal.
    pub transferred_from: Option<RecipientId>,
    pub history: Vec<OnboardingEntry>,
    pub version: u64,
    pub created_at: Timestamp,
}

pelago_storage::record!(Onboarding, Onboardings, 1);

fn valid_provider_recipient_id(raw: &str) -> bool {
    (3..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Onboarding {
    /// `create` (§4's first two rows): PREVIOUSLY_ONBOARDED is SUCCEEDED with
    /// compliance `approved` at once; the others start CREATED (a one-step
    /// onboarding is then submitted with [`OnboardingEvent::Submit`]).
    pub fn create(new: NewOnboarding, at: Timestamp) -> Result<Onboarding, Reject> {
        let (status, compliance_status) = match (new.kind, &new.provider_recipient_id) {
            (OnboardingType::PreviouslyOnboarded, None) => {
                return Err(Reject::invalid(
                    "provider_recipient_id",
                    "provider_recipient_id is required for PREVIOUSLY_ONBOARDED",
                ));
            }
            (OnboardingType::PreviouslyOnboarded, Some(raw)) => {
                if !valid_provider_recipient_id(raw) {
                    return Err(Reject::invalid(
                        "provider_recipient_id",
                        "provider_recipient_id must be 3..64 of A-Z, a-z, 0-9, _ and -",
                    ));
                }
                (OnboardingStatus::Succeeded, ComplianceStatus::Approved)
            }
            (_, Some(_)) => {
                return Err(Reject::invalid(
                    "provider_recipient_id",
                    "provider_recipient_id is only allowed for PREVIOUSLY_ONBOARDED",
                ));
            }
            (_, None) => (OnboardingStatus::Created, ComplianceStatus::NotStarted),
        };
        check_documents(&new.documents, 0)?;
        let created = OnboardingEntry::change(
            EntryType::StatusChanged,
            None,
            status.as_str(),
            None,
            Source::Merchant,
            at,
        );
        Ok(Onboarding {
            id: new.id,
            merchant_id: new.merchant_id,
            recipient_id: new.recipient_id,
            kind: new.kind,
            status,
            provider_recipient_id: new.provider_recipient_id,
            documents: new.documents,
            compliance: Compliance { status: compliance_status, supplements_used: 0, reason: None },
            failure_reason: None,
            pending_action: None,
            submitted: false,
            gateway_onboarding_id: None,
            gateway_calls: 0,
            transferred_from: None,
            history: vec![created],
            version: 1,
            created_at: at,
        })
    }

    /// Checks `event` against the tables without changing anything: what
    /// `apply` would refuse, this refuses with the same error.
    pub fn check(&self, event: &OnboardingEvent) -> Result<(), Reject> {
        self.clone().apply(event.clone(), Timestamp(0))
    }

    /// Applies one event (a row of §4), or refuses it with nothing changed.
    /// A change adds its history entries and bumps `version` once.
    pub fn apply(&mut self, event: OnboardingEvent, at: Timestamp) -> Result<(), Reject> {
        self.row_allows(&event)?;
        let mut step = Step { next: self.clone(), entries: Vec::new(), source: event.source(), at };
        match event {
            OnboardingEvent::Submit => step.submit()?,
            OnboardingEvent::Continue { documents } => step.resubmit(documents)?,
            OnboardingEvent::Decide { decision, reason } => step.decide(decision, reason)?,
            OnboardingEvent::Cancel => step.status(OnboardingStatus::Canceled, None)?,
            OnboardingEvent::Review { result, reason } => step.review(result, reason)?,
            OnboardingEvent::Supplement { documents, note } => step.supplement(documents, note)?,
            OnboardingEvent::Transfer { to } => step.transfer(to)?,
            OnboardingEvent::ReverseTransfer => step.reverse_transfer(),
        }
        *self = step.finish();
        Ok(())
    }

    /// The state half of §4's rows: whether `event` may happen to the
    /// onboarding as it is (the event's own fields are checked by its step).
    fn row_allows(&self, event: &OnboardingEvent) -> Result<(), Reject> {
        let (status, compliance) = (self.status, self.compliance.status);
        let allowed = match event {
            OnboardingEvent::Submit => {
                self.kind == OnboardingType::OneStep && status == OnboardingStatus::Created
            }
            OnboardingEvent::Continue { .. } => match status {
                OnboardingStatus::Created => self.kind == OnboardingType::TwoStep,
                OnboardingStatus::Rejected | OnboardingStatus::Error => true,
                _ => false,
            },
            OnboardingEvent::Decide { .. } => status == OnboardingStatus::Pending,
            OnboardingEvent::Cancel => status.can_become(OnboardingStatus::Canceled),
            OnboardingEvent::Review { .. } => {
                status == OnboardingStatus::Succeeded && compliance == ComplianceStatus::Pending
            }
            OnboardingEvent::Supplement { .. } => {
                status == OnboardingStatus::Succeeded && compliance == ComplianceStatus::Failed
            }
            OnboardingEvent::Transfer { .. } => status == OnboardingStatus::Succeeded,
            OnboardingEvent::ReverseTransfer => {
                if self.transferred_from.is_none() {
                    return Err(Reject::state("the onboarding's latest transfer is not a `transferred` one"));
                }
                status == OnboardingStatus::Succeeded
            }
        };
        if allowed {
            return Ok(());
        }
        Err(Reject::state(format!(
            "the onboarding is {} (compliance {}); {} is not allowed",
            status.as_str(),
            compliance.as_str(),
            event.name()
        )))
    }
}

impl OnboardingEntry {
    fn change(
        kind: EntryType,
        from: Option<&str>,
        to: &str,
        reason: Option<String>,
        source: Source,
        at: Timestamp,
    ) -> OnboardingEntry {
        OnboardingEntry {
            kind,
            from: from.map(str::to_owned),
            to: Some(to.to_owned()),
            from_recipient_id: None,
            to_recipient_id: None,
            reason,
            source,
            at,
        }
    }
}

/// One allowed event being applied: the next record and the history entries
/// it adds, committed together by [`Step::finish`] or dropped with a refusal.
struct Step {
    next: Onboarding,
    entries: Vec<OnboardingEntry>,
    source: Source,
    at: Timestamp,
}

impl Step {
    fn submit(&mut self) -> Result<(), Reject> {
        self.status(OnboardingStatus::Pending, None)?;
        self.next.submitted = true;
        Ok(())
    }

    /// A two-step onboarding's submission, or a resubmission.
    fn resubmit(&mut self, documents: Vec<Document>) -> Result<(), Reject> {
        check_documents(&documents, self.next.documents.len())?;
        self.next.documents.extend(documents);
        if self.next.status == OnboardingStatus::Created && self.next.documents.is_empty() {
            return Err(Reject::invalid("documents", "continue needs at least one document"));
        }
        self.next.failure_reason = None;
        self.submit()
    }

    fn decide(&mut self, decision: Decision, reason: Option<String>) -> Result<(), Reject> {
        self.status(decision.status(), reason.clone())?;
        match decision {
            Decision::Succeeded { provider_recipient_id } => {
                self.next.provider_recipient_id = Some(provider_recipient_id);
                self.next.failure_reason = None;
                self.compliance(ComplianceStatus::Pending, None)
            }
            _ => {
                self.next.failure_reason = reason;
                Ok(())
            }
        }
    }

    /// A failed review after the last supplement freezes the compliance and
    /// blocks the onboarding.
    fn review(&mut self, result: Review, reason: Option<String>) -> Result<(), Reject> {
        let to = match result {
            Review::Approved => ComplianceStatus::Approved,
            Review::Failed if self.next.compliance.supplements_used < SUPPLEMENTS_MAX => {
                ComplianceStatus::Failed
            }
            Review::Failed => ComplianceStatus::Frozen,
        };
        let kept = if to == ComplianceStatus::Approved { None } else { reason };
        self.compliance(to, kept.clone())?;
        self.next.compliance.reason = kept;
        if to == ComplianceStatus::Frozen {
            let frozen = Some("compliance frozen".to_owned());
            self.status_by(OnboardingStatus::Blocked, frozen.clone(), Source::System)?;
            self.next.failure_reason = frozen;
        }
        Ok(())
    }

    fn supplement(&mut self, documents: Vec<Document>, note: Option<String>) -> Result<(), Reject> {
        if documents.is_empty() {
            return Err(Reject::invalid("documents", "a supplement needs at least one document"));
        }
        check_documents(&documents, self.next.documents.len())?;
        if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
            return Err(Reject::invalid("note", "note is at most 500 characters"));
        }
        let compliance = &mut self.next.compliance;
        let from = compliance.status;
        compliance.supplements_used += 1;
        compliance.reason = None;
        compliance.status = ComplianceStatus::Pending;
        self.next.documents.extend(documents);
        let to = ComplianceStatus::Pending.as_str();
        self.entries.push(OnboardingEntry::change(
            EntryType::SupplementSubmitted,
            Some(from.as_str()),
            to,
            note,
            self.source,
            self.at,
        ));
        Ok(())
    }

    fn transfer(&mut self, to: RecipientId) -> Result<(), Reject> {
        if to == self.next.recipient_id {
            return Err(Reject::invalid("recipient_id", "recipient_id is already the owner"));
        }
        self.next.transferred_from = Some(self.next.recipient_id.clone());
        self.owner(EntryType::Transferred, to);
        Ok(())
    }

    fn reverse_transfer(&mut self) {
        if let Some(back_to) = self.next.transferred_from.take() {
            self.owner(EntryType::TransferReversed, back_to);
        }
    }

    fn owner(&mut self, kind: EntryType, to: RecipientId) {
        let from = std::mem::replace(&mut self.next.recipient_id, to.clone());
        self.entries.push(OnboardingEntry {
            kind,
            from: None,
            to: None,
            from_recipient_id: Some(from),
            to_recipient_id: Some(to),
            reason: None,
            source: self.source,
            at: self.at,
        });
    }

    fn status(&mut self, to: OnboardingStatus, reason: Option<String>) -> Result<(), Reject> {
        self.status_by(to, reason, self.source)
    }

    fn status_by(
        &mut self,
        to: OnboardingStatus,
        reason: Option<String>,
        source: Source,
    ) -> Result<(), Reject> {
        let from = self.next.status;
        checked_edge(from, to)?;
        self.next.status = to;
        let entry = OnboardingEntry::change(
            EntryType::StatusChanged,
            Some(from.as_str()),
            to.as_str(),
            reason,
            source,
            self.at,
        );
        self.entries.push(entry);
        Ok(())
    }

    fn compliance(&mut self, to: ComplianceStatus, reason: Option<String>) -> Result<(), Reject> {
        let from = self.next.compliance.status;
        checked_edge(from, to)?;
        self.next.compliance.status = to;
        let entry = OnboardingEntry::change(
            EntryType::ComplianceChanged,
            Some(from.as_str()),
            to.as_str(),
            reason,
            self.source,
            self.at,
        );
        self.entries.push(entry);
        Ok(())
    }

    /// The history keeps its newest [`MAX_ONBOARDING_HISTORY`] entries; the
    /// version moves once per event.
    fn finish(self) -> Onboarding {
        let mut next = self.next;
        for entry in self.entries {
            if next.history.len() >= MAX_ONBOARDING_HISTORY {
                next.history.remove(0);
            }
            next.history.push(entry);
        }
        next.version += 1;
        next
    }
}

/// The declared edges are the last word: an event row that would take an
/// edge the table does not list is refused, not taken.
fn checked_edge<S: Status>(from: S, to: S) -> Result<(), Reject> {
    if from.can_become(to) {
        Ok(())
    } else {
        Err(Reject::state(format!(
            "the {} is {}; it cannot become {}",
            S::OBJECT,
            from.as_str(),
            to.as_str()
        )))
    }
}

/// `documents` holds 1..10 entries when given, and an onboarding keeps at most
/// a bounded number overall (the 5 supplements included).
fn check_documents(documents: &[Document], already: usize) -> Result<(), Reject> {
    if documents.len() > MAX_DOCUMENTS {
        return Err(Reject::invalid("documents", "documents holds at most 10 entries"));
    }
    if already + documents.len() > MAX_DOCUMENTS * (1 + SUPPLEMENTS_MAX as usize + 2) {
        return Err(Reject::invalid("documents", "the onboarding holds too many documents"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
