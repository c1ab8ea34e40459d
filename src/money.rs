//! Money flows driven by the gateway and the ledger views: deposit
//! addresses, deposits credited once, and the notifications for orders,
//! payouts and refunds (created by the flows of API.md §3–4; a notification
//! for an id this service never issued is recorded and has no effect).

use pelago_actors::{
    ledger,
    merchant::{MerchantRecord, PostEntry, Posted},
    ports::{GatewayCallback, GatewayEvent, Outcome},
};
use pelago_storage::{Currency, MerchantId, Tree, WriteBatch};

use crate::{app::App, bootstrap, http::errors::ApiError};

/// `depaddr/{gateway account}/{address}` → `{merchant_id} {currency}`.
fn address_key(account: &str, address: &str) -> String {
    format!("depaddr/{account}/{address}")
}

/// The merchant's deposit address for a currency and network (stable: the
/// gateway derives it; Pelago remembers which merchant it belongs to).
pub async fn deposit_address(
    app: &App,
    merchant: &MerchantRecord,
    currency: Currency,
    network: &str,
) -> Result<pelago_actors::ports::DepositAddress, ApiError> {
    let account = bootstrap::funding_account(app, merchant).await?;
    let address =
        match app.upstreams.gateway.deposit_address(account.clone(), currency, network.to_owned()).await {
            Outcome::Done(a) => a,
            Outcome::Declined { reason } => {
                return Err(ApiError::upstream(format!("the gateway refused: {reason}")));
            }
            Outcome::Unknown { detail } => {
                return Err(ApiError::upstream(format!("the gateway did not answer: {detail}")));
            }
        };
    let key = address_key(&account.merchant_id, &address.address);
    if !app.store.contains(Tree::Index, &key)? {
        let mut batch = WriteBatch::new();
        batch.put_raw(Tree::Index, &key, format!("{} {}", merchant.id, currency));
        app.store.commit_durable(batch).await?;
    }
    Ok(address)
}

pub async fn on_gateway_event(
    app: &App,
    _merchant: Option<&MerchantId>,
    callback: &GatewayCallback,
) -> Result<&'static str, ApiError> {
    match &callback.event {
        GatewayEvent::DepositCredited { gateway_deposit_id, address, amount, .. } => {
            let Some(owner) =
                app.store.get_raw(Tree::Index, address_key(&callback.account_merchant_id, address))?
            else {
                return Ok("unknown_object");
            };
            let owner = String::from_utf8_lossy(&owner).into_owned();
            let Some(Ok(merchant)) = owner.split(' ').next().map(MerchantId::parse) else {
                return Ok("unknown_object");
            };
            let posted = credit_deposit(app, &merchant, gateway_deposit_id, *amount).await?;
            Ok(if posted.replayed { "unchanged" } else { "applied" })
        }
        GatewayEvent::OrderUpdated { order_id, status, at, .. } => {
            crate::orders::on_order_update(app, order_id, *status, *at).await
        }
        // Refunds are confirmed synchronously when requested (`orders::settle_markers`);
        // this notice repeats what is already booked.
        GatewayEvent::RefundCompleted { .. } => Ok("unchanged"),
        GatewayEvent::PayoutUpdated { request_id, status, reason, .. } => {
            crate::withdrawals::on_payout(app, request_id, *status, reason.clone()).await
        }
    }
}

/// Credits a deposit to `available`, once per gateway deposit id.
pub async fn credit_deposit(
    app: &App,
    merchant: &MerchantId,
    gateway_deposit_id: &str,
    amount: pelago_storage::Money,
) -> Result<Posted, ApiError> {
    if amount.value <= 0 {
        return Err(ApiError::bad_request("a deposit must be positive"));
    }
    let postings = ledger::deposit(merchant, amount)?;
    let entry = PostEntry {
        source_id: format!("gwdep/{gateway_deposit_id}"),
        kind: ledger::EntryKind::Deposit,
        postings,
        event: Some("deposit.succeeded"),
        index: vec![],
    };
    Ok(app.actors.ask_merchant(merchant, entry).await??)
}
