//! SECURITY.md "Callbacks from upstreams": a callback is a notification, not
//! proof. The flows that apply one first bind it (the object it names was
//! created under the gateway account that signed it, or belongs to the
//! channel that signed it), then compare it with the record, then act on a
//! server-to-server query of the upstream. These are the two refusals.

use crate::{app::Core, flows::Error, metrics::CallbackSource};

/// Longest piece of an upstream's text that goes into a log line.
const MAX_LOGGED_CHARS: usize = 80;

fn bounded(text: &str) -> String {
    text.chars().take(MAX_LOGGED_CHARS).collect()
}

/// The callback names an object its sender is not bound to: 401, nothing
/// changes; the attempt is logged (never the body) and counted in `/metrics`.
pub fn unbound(app: &Core, source: CallbackSource, sender: &str, event_id: &str, object: &str) -> Error {
    app.metrics.count_unbound_callback(source);
    tracing::warn!(
        ?source,
        sender = %bounded(sender),
        event_id = %bounded(event_id),
        object = %bounded(object),
        "signed callback names an object its sender is not bound to; refused"
    );
    Error::unbound("the callback names an object that was not created under its sender")
}

/// A payout callback (`payout.updated`, `recipient_payout.updated`) naming
/// `request_id` that was not made under its signer: [`unbound`], from the gateway.
pub fn unbound_payout(app: &Core, signer: &str, event_id: &str, request_id: &str) -> Error {
    unbound(app, CallbackSource::Gateway, signer, event_id, request_id)
}

/// The callback's `what` (amount, currency, upstream id) differs from the record's: 400, nothing changes.
pub fn mismatch(what: &str) -> Error {
    Error::bad_request(format!("the callback's {what} does not match the record's"))
}
