//! Marketplace I (MARKETPLACE.md §1–§5): files, recipients, onboardings,
//! compliance, agreements.

pub mod agreements;
pub mod files;
pub mod onboardings;
pub mod recipients;
