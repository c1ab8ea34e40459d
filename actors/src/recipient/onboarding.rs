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

use pelago_storage::{FileId, MerchantId, OnboardingId, RecipientId, Record, Timestamp, Tree};
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
        Created = "CREATED",
        Pending = "PENDING",
        Succeeded = "SUCCEEDED",
        Declined = "DECLINED",
        Rejected = "REJECTED",
        Blocked = "BLOCKED",
        Error = "ERROR",
        Canceled = "CANCELED",
    }
    edges {
        Created -> Pending,
        Rejected -> Pending,
        Error -> Pending,
        Pending -> Succeeded,
        Pending -> Declined,
        Pending -> Rejected,
        Pending -> Blocked,
        Pending -> Error,
        Created -> Canceled,
        Pending -> Canceled,
        Rejected -> Canceled,
        Error -> Canceled,
        Succeeded -> Blocked,
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
        NotStarted = "not_started",
        Pending = "pending",
        Approved = "approved",
        Failed = "failed",
        Frozen = "frozen",
    }
    edges {
        NotStarted -> Pending,
        Pending -> Approved,
        Pending -> Failed,
        Pending -> Frozen,
        Failed -> Pending,
    }
}

/// At most this many supplements per onboarding; a failed review after the
/// last one freezes the compliance.
pub const SUPPLEMENTS_MAX: u8 = 5;

/// At most this many history entries are kept per onboarding (oldest dropped
/// first); the reverse-transfer target is kept apart, so it never depends on them.
pub const MAX_ONBOARDING_HISTORY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnboardingType {
    PreviouslyOnboarded,
    OneStep,
    TwoStep,
}

impl OnboardingType {
    pub const ALL: [OnboardingType; 3] =
        [OnboardingType::PreviouslyOnboarded, OnboardingType::OneStep, OnboardingType::TwoStep];

    pub fn as_str(self) -> &'static str {
        match self {
            OnboardingType::PreviouslyOnboarded => "PREVIOUSLY_ONBOARDED",
            OnboardingType::OneStep => "ONE_STEP_ONBOARDING",
            OnboardingType::TwoStep => "TWO_STEP_ONBOARDING",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocumentType {
    IdentityDocument,
    BusinessLicense,
    BankProof,
    Other,
}

impl DocumentType {
    pub const ALL: [DocumentType; 4] = [
        DocumentType::IdentityDocument,
        DocumentType::BusinessLicense,
        DocumentType::BankProof,
        DocumentType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DocumentType::IdentityDocument => "identity_document",
            DocumentType::BusinessLicense => "business_license",
            DocumentType::BankProof => "bank_proof",
            DocumentType::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
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

/// The kind of one onboarding history entry (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryType {
    StatusChanged,
    ComplianceChanged,
    SupplementSubmitted,
    Transferred,
    TransferReversed,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::StatusChanged => "status_changed",
            EntryType::ComplianceChanged => "compliance_changed",
            EntryType::SupplementSubmitted => "supplement_submitted",
            EntryType::Transferred => "transferred",
            EntryType::TransferReversed => "transfer_reversed",
        }
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

/// A gateway action whose outcome is not known yet (§9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    Submit,
    Cancel,
    Supplement,
}

impl ActionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Submit => "submit",
            ActionType::Cancel => "cancel",
            ActionType::Supplement => "supplement",
        }
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

impl Record for Onboarding {
    const TREE: Tree = Tree::Onboardings;
    const SCHEMA_VERSION: u8 = 1;
}

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
        let created = OnboardingEntry {
            kind: EntryType::StatusChanged,
            from: None,
            to: Some(status.as_str().to_owned()),
            from_recipient_id: None,
            to_recipient_id: None,
            reason: None,
            source: Source::Merchant,
            at,
        };
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
        let source = event.source();
        let mut next = self.clone();
        let mut entries = Vec::new();
        let refuse = |this: &Onboarding, event: &OnboardingEvent| {
            Reject::state(format!(
                "the onboarding is {} (compliance {}); {} is not allowed",
                this.status.as_str(),
                this.compliance.status.as_str(),
                event.name()
            ))
        };
        match &event {
            OnboardingEvent::Submit => {
                if self.kind != OnboardingType::OneStep || self.status != OnboardingStatus::Created {
                    return Err(refuse(self, &event));
                }
                next.move_status(OnboardingStatus::Pending, None, source, at, &mut entries)?;
                next.submitted = true;
            }
            OnboardingEvent::Continue { documents } => {
                let allowed = match self.status {
                    OnboardingStatus::Created => self.kind == OnboardingType::TwoStep,
                    OnboardingStatus::Rejected | OnboardingStatus::Error => true,
                    _ => false,
                };
                if !allowed {
                    return Err(refuse(self, &event));
                }
                check_documents(documents, self.documents.len())?;
                next.documents.extend(documents.iter().cloned());
                if self.status == OnboardingStatus::Created && next.documents.is_empty() {
                    return Err(Reject::invalid("documents", "continue needs at least one document"));
                }
                next.failure_reason = None;
                next.move_status(OnboardingStatus::Pending, None, source, at, &mut entries)?;
                next.submitted = true;
            }
            OnboardingEvent::Decide { decision, reason } => {
                if self.status != OnboardingStatus::Pending {
                    return Err(refuse(self, &event));
                }
                next.move_status(decision.status(), reason.clone(), source, at, &mut entries)?;
                match decision {
                    Decision::Succeeded { provider_recipient_id } => {
                        next.provider_recipient_id = Some(provider_recipient_id.clone());
                        next.failure_reason = None;
                        next.move_compliance(ComplianceStatus::Pending, None, source, at, &mut entries)?;
                    }
                    _ => next.failure_reason = reason.clone(),
                }
            }
            OnboardingEvent::Cancel => {
                if !self.status.can_become(OnboardingStatus::Canceled) {
                    return Err(refuse(self, &event));
                }
                next.move_status(OnboardingStatus::Canceled, None, source, at, &mut entries)?;
            }
            OnboardingEvent::Review { result, reason } => {
                if self.status != OnboardingStatus::Succeeded
                    || self.compliance.status != ComplianceStatus::Pending
                {
                    return Err(refuse(self, &event));
                }
                match result {
                    Review::Approved => {
                        next.move_compliance(ComplianceStatus::Approved, None, source, at, &mut entries)?;
                        next.compliance.reason = None;
                    }
                    Review::Failed if self.compliance.supplements_used < SUPPLEMENTS_MAX => {
                        next.move_compliance(
                            ComplianceStatus::Failed,
                            reason.clone(),
                            source,
                            at,
                            &mut entries,
                        )?;
                        next.compliance.reason = reason.clone();
                    }
                    Review::Failed => {
                        next.move_compliance(
                            ComplianceStatus::Frozen,
                            reason.clone(),
                            source,
                            at,
                            &mut entries,
                        )?;
                        next.compliance.reason = reason.clone();
                        next.move_status(
                            OnboardingStatus::Blocked,
                            Some("compliance frozen".to_owned()),
                            Source::System,
                            at,
                            &mut entries,
                        )?;
                        next.failure_reason = Some("compliance frozen".to_owned());
                    }
                }
            }
            OnboardingEvent::Supplement { documents, note } => {
                if self.status != OnboardingStatus::Succeeded
                    || self.compliance.status != ComplianceStatus::Failed
                {
                    return Err(refuse(self, &event));
                }
                if documents.is_empty() {
                    return Err(Reject::invalid("documents", "a supplement needs at least one document"));
                }
                check_documents(documents, self.documents.len())?;
                if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
                    return Err(Reject::invalid("note", "note is at most 500 characters"));
                }
                next.documents.extend(documents.iter().cloned());
                next.compliance.supplements_used += 1;
                next.compliance.reason = None;
                let from = self.compliance.status;
                next.compliance.status = ComplianceStatus::Pending;
                entries.push(OnboardingEntry {
                    kind: EntryType::SupplementSubmitted,
                    from: Some(from.as_str().to_owned()),
                    to: Some(ComplianceStatus::Pending.as_str().to_owned()),
                    from_recipient_id: None,
                    to_recipient_id: None,
                    reason: note.clone(),
                    source,
                    at,
                });
            }
            OnboardingEvent::Transfer { to } => {
                if self.status != OnboardingStatus::Succeeded {
                    return Err(refuse(self, &event));
                }
                if *to == self.recipient_id {
                    return Err(Reject::invalid("recipient_id", "recipient_id is already the owner"));
                }
                next.transferred_from = Some(self.recipient_id.clone());
                next.recipient_id = to.clone();
                entries.push(self.transfer_entry(EntryType::Transferred, to.clone(), source, at));
            }
            OnboardingEvent::ReverseTransfer => {
                let Some(back_to) = self.transferred_from.clone() else {
                    return Err(Reject::state("the onboarding's latest transfer is not a `transferred` one"));
                };
                if self.status != OnboardingStatus::Succeeded {
                    return Err(refuse(self, &event));
                }
                next.transferred_from = None;
                next.recipient_id = back_to.clone();
                entries.push(self.transfer_entry(EntryType::TransferReversed, back_to, source, at));
            }
        }
        for entry in entries {
            if next.history.len() >= MAX_ONBOARDING_HISTORY {
                next.history.remove(0);
            }
            next.history.push(entry);
        }
        next.version += 1;
        *self = next;
        Ok(())
    }

    fn transfer_entry(
        &self,
        kind: EntryType,
        to: RecipientId,
        source: Source,
        at: Timestamp,
    ) -> OnboardingEntry {
        OnboardingEntry {
            kind,
            from: None,
            to: None,
            from_recipient_id: Some(self.recipient_id.clone()),
            to_recipient_id: Some(to),
            reason: None,
            source,
            at,
        }
    }

    fn move_status(
        &mut self,
        to: OnboardingStatus,
        reason: Option<String>,
        source: Source,
        at: Timestamp,
        entries: &mut Vec<OnboardingEntry>,
    ) -> Result<(), Reject> {
        let from = self.status;
        checked_edge(from, to)?;
        self.status = to;
        entries.push(OnboardingEntry {
            kind: EntryType::StatusChanged,
            from: Some(from.as_str().to_owned()),
            to: Some(to.as_str().to_owned()),
            from_recipient_id: None,
            to_recipient_id: None,
            reason,
            source,
            at,
        });
        Ok(())
    }

    fn move_compliance(
        &mut self,
        to: ComplianceStatus,
        reason: Option<String>,
        source: Source,
        at: Timestamp,
        entries: &mut Vec<OnboardingEntry>,
    ) -> Result<(), Reject> {
        let from = self.compliance.status;
        checked_edge(from, to)?;
        self.compliance.status = to;
        entries.push(OnboardingEntry {
            kind: EntryType::ComplianceChanged,
            from: Some(from.as_str().to_owned()),
            to: Some(to.as_str().to_owned()),
            from_recipient_id: None,
            to_recipient_id: None,
            reason,
            source,
            at,
        });
        Ok(())
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
