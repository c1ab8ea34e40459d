//! `pelago-actors`: the stateful core. Each merchant and each card is an actix
//! actor that is the single writer of its own state in the store.
pub mod ports;
