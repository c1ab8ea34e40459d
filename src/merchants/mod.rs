//! Merchants at the edge: request authentication (signature, window, nonce,
//! key status, merchant status). Merchant state itself is owned by the
//! merchant actor (`pelago_actors::merchant`).

pub mod auth;
