//! Money flows driven by the gateway and the ledger views: deposit
//! addresses, deposits credited once, and the notifications for orders,
//! payouts and refunds (created by the flows of API.md §3–4). A notification
//! is bound to the account that signed it, compared, and confirmed by asking
//! the gateway (SECURITY.md "Callbacks from upstreams"); one naming an object
//! not issued under its signer is refused (401) and changes nothing.

use pelago_actors::{
    ledger,
    merchant::{MerchantRecord, PostEntry, Posted},
    ports::{GatewayCallback, GatewayEvent, Outcome},
};
use pelago_storage::{Currency, MerchantId, Money, Tree, WriteBatch};

use crate::{
    app::Core,
    flows::{Error, bootstrap},
    keys::{DEPCONFIRM, Index, Marker, Source},
    metrics::CallbackSource,
};

/// `depaddr/{gateway account}/{address}` → `{merchant_id} {currency}`.
fn address_key(account: &str, address: &str) -> Vec<u8> {
    Index::DepositAddress { account: account.to_owned(), address: address.to_owned() }.encode()
}

/// The merchant's deposit address for a currency and network (stable: the
/// gateway derives it; Pelago remembers which merchant it belongs to).
pub async fn deposit_address(
    app: &Core,
    merchant: &MerchantRecord,
    currency: Currency,
    network: &str,
) -> Result<pelago_actors::ports::DepositAddress, Error> {
    let account = bootstrap::funding_account(app, merchant).await?;
    let address =
        match app.upstreams.gateway.deposit_address(account.clone(), currency, network.to_owned()).await {
            Outcome::Done(a) => a,
            Outcome::Declined { reason } => {
                return Err(Error::upstream(format!("the gateway refused: {reason}")));
            }
            Outcome::Unknown { detail } => {
                return Err(Error::upstream(format!("the gateway did not answer: {detail}")));
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

/// A verified gateway callback: `callback.account_merchant_id` is the account
/// whose key signed it. Each kind is bound, compared and confirmed by its flow.
pub async fn on_gateway_event(app: &Core, callback: &GatewayCallback) -> Result<&'static str, Error> {
    let signer = callback.account_merchant_id.as_str();
    match &callback.event {
        GatewayEvent::DepositCredited { gateway_deposit_id, address, amount, .. } => {
            let notice = DepositNotice {
                signer,
                event_id: &callback.event_id,
                gateway_deposit_id,
                address,
                amount: *amount,
            };
            on_deposit(app, notice).await
        }
        GatewayEvent::OrderUpdated { gateway_order_id, order_id, amount, .. } => {
            let notice = crate::flows::orders::OrderNotice {
                signer,
                event_id: &callback.event_id,
                gateway_order_id,
                order_id,
                amount: *amount,
            };
            if order_id.starts_with(pelago_storage::PaymentId::PREFIX) {
                crate::flows::marketplace::payments::on_gateway_update(app, notice).await
            } else {
                crate::flows::orders::on_order_update(app, notice).await
            }
        }
        // Refunds are confirmed synchronously when requested (`orders::settle_markers`);
        // this notice repeats what is already booked and changes nothing.
        GatewayEvent::RefundCompleted { .. } => Ok("unchanged"),
        GatewayEvent::PayoutUpdated { payout_id, request_id, amount, .. } => {
            let notice = crate::flows::withdrawals::PayoutNotice {
                signer,
                event_id: &callback.event_id,
                payout_id,
                request_id,
                amount: *amount,
            };
            crate::flows::withdrawals::on_payout(app, notice).await
        }
        GatewayEvent::RecipientPayoutUpdated { request_id, amount } => {
            let notice = crate::flows::marketplace::withdrawals::PayoutNotice {
                signer,
                event_id: &callback.event_id,
                request_id,
                amount: *amount,
            };
            crate::flows::marketplace::withdrawals::on_payout(app, notice).await
        }
    }
}

/// What a `deposit.credited` callback named.
struct DepositNotice<'a> {
    signer: &'a str,
    event_id: &'a str,
    gateway_deposit_id: &'a str,
    address: &'a str,
    amount: Money,
}

/// `depconfirm/{gateway deposit id}\0{account}` → `{account} {address} {amount
/// minor}`: a deposit callback whose confirming query had no answer yet (the
/// resolver asks again). Keyed by the account too, so a callback signed by
/// one account can never replace another account's pending confirmation.
fn confirm_marker(gateway_deposit_id: &str, account: &str) -> Vec<u8> {
    Marker::DepositConfirm { deposit: gateway_deposit_id.to_owned(), account: account.to_owned() }.encode()
}

/// Deposit callbacks waiting for the gateway's answer at most; beyond, 503 (redelivered later).
const MAX_UNCONFIRMED: usize = 4096;
/// Longest gateway deposit id kept in a marker.
const MAX_UPSTREAM_ID_LEN: usize = 128;

/// A deposit callback: bound (the address was issued under the signing
/// account), compared (its currency), then credited with what the gateway
/// answers when asked for that deposit under that account, never the body's amount.
async fn on_deposit(app: &Core, notice: DepositNotice<'_>) -> Result<&'static str, Error> {
    let Some((merchant, currency)) = address_owner(app, notice.signer, notice.address)? else {
        return Err(crate::flows::callback_rules::unbound(
            app,
            CallbackSource::Gateway,
            notice.signer,
            notice.event_id,
            notice.address,
        ));
    };
    if notice.amount.currency != currency {
        return Err(crate::flows::callback_rules::mismatch("currency"));
    }
    let named =
        NamedDeposit { account: notice.signer, id: notice.gateway_deposit_id, address: notice.address };
    match confirm_deposit(app, &named, notice.amount, &merchant).await? {
        DepositConfirmed::Credited(posted) => Ok(if posted.replayed { "unchanged" } else { "applied" }),
        DepositConfirmed::Unknown => {
            let waiting =
                app.store.iter_raw(Tree::Operations, DEPCONFIRM.as_bytes()).take(MAX_UNCONFIRMED).count();
            if waiting >= MAX_UNCONFIRMED || notice.gateway_deposit_id.len() > MAX_UPSTREAM_ID_LEN {
                // Nothing recorded: the gateway delivers again later.
                return Err(Error::unavailable("the gateway cannot be asked now; deliver again later"));
            }
            let mut batch = WriteBatch::new();
            batch.put_raw(
                Tree::Operations,
                confirm_marker(notice.gateway_deposit_id, notice.signer),
                format!("{} {} {}", notice.signer, notice.address, notice.amount.value),
            );
            app.store.commit_durable(batch).await?;
            Ok("unconfirmed")
        }
        DepositConfirmed::Differs(what) => Err(crate::flows::callback_rules::mismatch(what)),
    }
}

/// The merchant and currency of an address issued under `account`.
fn address_owner(app: &Core, account: &str, address: &str) -> Result<Option<(MerchantId, Currency)>, Error> {
    let Some(owner) = app.store.get_raw(Tree::Index, address_key(account, address))? else { return Ok(None) };
    let owner = String::from_utf8_lossy(&owner).into_owned();
    let mut parts = owner.split(' ');
    let merchant = parts.next().and_then(|m| MerchantId::parse(m).ok());
    let currency = parts.next().and_then(|c| Currency::parse(c).ok());
    Ok(merchant.zip(currency))
}

enum DepositConfirmed {
    Credited(Posted),
    Unknown,
    Differs(&'static str),
}

/// The deposit a callback named: its id at the gateway, under which account, to which address.
struct NamedDeposit<'a> {
    account: &'a str,
    id: &'a str,
    address: &'a str,
}

/// Asks the gateway for the deposit under its account and credits what it
/// answers (once per id), if that is what the callback said.
async fn confirm_deposit(
    app: &Core,
    named: &NamedDeposit<'_>,
    amount: Money,
    merchant: &MerchantId,
) -> Result<DepositConfirmed, Error> {
    let (_, account) = bootstrap::account_by_id(app, named.account).await?.ok_or_else(Error::internal)?;
    let deposit = match app.upstreams.gateway.query_deposit(account, named.id.to_owned()).await {
        Outcome::Done(deposit) => deposit,
        Outcome::Unknown { detail } => {
            tracing::warn!(detail, "gateway deposit query outcome unknown; retrying later");
            return Ok(DepositConfirmed::Unknown);
        }
        Outcome::Declined { reason } => {
            tracing::warn!(reason, "the gateway does not know the deposit a callback named");
            return Ok(DepositConfirmed::Differs("deposit id"));
        }
    };
    if deposit.deposit_id != named.id || deposit.address != named.address {
        return Ok(DepositConfirmed::Differs("deposit id or address"));
    }
    if deposit.amount != amount {
        tracing::warn!(deposit_id = %deposit.deposit_id, "a deposit callback's amount differs from the gateway's");
        return Ok(DepositConfirmed::Differs("amount"));
    }
    Ok(DepositConfirmed::Credited(credit_deposit(app, merchant, &deposit.deposit_id, deposit.amount).await?))
}

/// One resolver pass over deposit callbacks whose confirming query had no answer.
pub async fn resolve_pending(app: &Core) -> Result<usize, Error> {
    let mut done = 0;
    for (marker, value) in super::markers::<Marker>(app, DEPCONFIRM)? {
        let (Marker::DepositConfirm { deposit: deposit_id, .. }
        | Marker::LegacyDepositConfirm { deposit: deposit_id }) = &marker
        else {
            continue;
        };
        let value = String::from_utf8_lossy(&value).into_owned();
        let mut parts = value.split(' ');
        let (account, address, value) =
            (parts.next(), parts.next(), parts.next().and_then(|v| v.parse().ok()));
        let keep = match (account, address, value) {
            (Some(account), Some(address), Some(value)) => match address_owner(app, account, address)? {
                Some((merchant, currency)) => {
                    let named = NamedDeposit { account, id: deposit_id, address };
                    let amount = Money::new(value, currency);
                    matches!(
                        confirm_deposit(app, &named, amount, &merchant).await?,
                        DepositConfirmed::Unknown
                    )
                }
                None => false,
            },
            _ => false,
        };
        if !keep {
            let mut batch = WriteBatch::new();
            batch.delete(Tree::Operations, marker.encode());
            app.store.commit_durable(batch).await?;
            done += 1;
        }
    }
    Ok(done)
}

/// Credits a deposit to `available`, once per gateway deposit id.
pub async fn credit_deposit(
    app: &Core,
    merchant: &MerchantId,
    gateway_deposit_id: &str,
    amount: pelago_storage::Money,
) -> Result<Posted, Error> {
    if amount.value <= 0 {
        return Err(Error::bad_request("a deposit must be positive"));
    }
    let postings = ledger::deposit(merchant, amount)?;
    let entry = PostEntry {
        source_id: Source::GatewayDeposit { deposit: gateway_deposit_id.to_owned() }.text(),
        kind: ledger::EntryKind::Deposit,
        postings,
        event: Some("deposit.succeeded"),
        index: vec![],
    };
    Ok(app.actors.ask_merchant(merchant, entry).await??)
}
