//! Money flows driven by the gateway: orders, deposits, payouts, refunds.
//! The records these notifications act on are created by the money flows of
//! API.md §4 (orders, deposit addresses) and §3 (withdrawals); a notification
//! for an id this service never issued is recorded and has no effect.

use pelago_actors::ports::{GatewayCallback, GatewayEvent};
use pelago_storage::{MerchantId, Tree};

use crate::{app::App, http::errors::ApiError};

pub async fn on_gateway_event(
    app: &App,
    _merchant: Option<&MerchantId>,
    callback: &GatewayCallback,
) -> Result<&'static str, ApiError> {
    let known = match &callback.event {
        GatewayEvent::OrderUpdated { order_id, .. } => {
            app.store.contains(Tree::Orders, order_id.as_bytes())?
        }
        GatewayEvent::DepositCredited { address, .. } => {
            app.store.contains(Tree::Index, format!("depaddr/{}/{address}", callback.account_merchant_id))?
        }
        GatewayEvent::PayoutUpdated { request_id, .. } | GatewayEvent::RefundCompleted { request_id, .. } => {
            app.store.contains(Tree::Operations, request_id.as_bytes())?
        }
    };
    if !known {
        return Ok("unknown_object");
    }
    // Every id above is written only by the money flows, which also apply these
    // notifications; none of them issues ids yet (issue 6), so this is unreachable.
    Err(ApiError::internal())
}
