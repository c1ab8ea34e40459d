//! Marketplace recipients (MARKETPLACE.md §3–§5). `onboarding.rs` is the pure
//! onboarding and compliance state machine; the recipient actor, the single
//! writer of a recipient, its onboardings, compliance and agreements, is built
//! on it.

pub mod onboarding;

pub use onboarding::{
    ComplianceStatus, Decision, Document, DocumentType, NewOnboarding, Onboarding, OnboardingEvent,
    OnboardingStatus, OnboardingType, Review,
};
