//! Marketplace recipients (MARKETPLACE.md §3–§5). `state.rs` is the pure
//! recipient record, `onboarding.rs` the pure onboarding and compliance state
//! machine; `actor.rs` is the recipient actor, the single writer of a
//! recipient (and, as Marketplace I grows, its onboardings, compliance and
//! agreements), supervised and passivated by the same registry as the
//! merchant and card actors.

pub mod actor;
pub mod agreement;
pub mod gateway;
pub mod onboarding;
pub mod onboardings;
pub mod state;
pub mod withdrawal;

pub use actor::{CreateRecipient, GetRecipient, RecipientActor, RecipientDeps, UpdateRecipient};
pub use onboarding::{
    ComplianceStatus, Decision, Document, DocumentType, NewOnboarding, Onboarding, OnboardingEvent,
    OnboardingStatus, OnboardingType, Review,
};
pub use state::{RecipientData, RecipientRecord, RecipientType, SealedNumber};
