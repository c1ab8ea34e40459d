//! The flows: sagas across actors and the store, each step durable before the
//! next. They speak the actors' errors (`ActorError`, `Reject`), never HTTP.

pub mod marketplace;
