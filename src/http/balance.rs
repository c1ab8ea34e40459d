//! Master accounts and the ledger (API.md §3–4): balances, balance
//! transactions, deposit addresses, the deposit test helper, and the ledger
//! check. Balances are the merchant actor's cache of its journal postings;
//! the check recomputes everything from the journal.

use std::{collections::BTreeMap, sync::Arc};

use futures::future::BoxFuture;
use http::Method;
use pelago_actors::ledger::marketplace::RecipientBalances;
use pelago_actors::{
    ledger::{Account, BalanceTxnRecord, JournalEntry},
    merchant::MerchantRecord,
};
use pelago_storage::{Currency, MerchantId, RecipientId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire::{self, MoneyIn, parse_amount},
};
use crate::{flows::money, http::state::App};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/v1/balance", balance),
        Route::new(Method::GET, "/v1/balance/transactions", balance_transactions),
        Route::new(Method::POST, "/v1/deposit-addresses", deposit_address)
            .answers(201)
            .accepts::<DepositAddressIn>(),
        Route::new(Method::POST, "/v1/test_helpers/deposits", test_deposit).accepts::<TestDepositIn>(),
        Route::new(Method::GET, "/admin/v1/merchants/{id}/balance", admin_balance),
        Route::new(Method::GET, "/admin/v1/ledger/check", ledger_check),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DepositAddressIn {
    currency: String,
    network: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TestDepositIn {
    amount: MoneyIn,
    network: String,
}

fn network(raw: &str) -> Result<String, ApiError> {
    let ok =
        !raw.is_empty() && raw.len() <= 32 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::invalid("network", "network is 1 to 32 letters, digits or _"))
    }
}

fn balances_json(m: &MerchantRecord) -> Value {
    json!({"balances": m.balances.iter().map(|b| json!({
        "currency": b.currency.code(), "available": b.available, "pending": b.pending,
    })).collect::<Vec<_>>()})
}

fn merchant(app: &App, id: &MerchantId) -> Result<MerchantRecord, ApiError> {
    app.store.get::<MerchantRecord>(id.as_bytes())?.ok_or_else(|| ApiError::not_found("merchant"))
}

/// GET /v1/balance
fn balance(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(async move { Ok(ApiReply::json(200, &balances_json(&merchant(&app, ctx.merchant_id()?)?))) })
}

/// GET /admin/v1/merchants/{id}/balance
async fn admin_balance(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = MerchantId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("merchant"))?;
    Ok(ApiReply::json(200, &balances_json(&merchant(&app, &id)?)))
}

/// GET /v1/balance/transactions — newest first.
async fn balance_transactions(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let page = pagination::parse(&ctx.query, &["type"])?;
    let prefix = format!("{merchant}/");
    let filter = page.filters.get("type").cloned();
    pagination::reply::<BalanceTxnRecord>(&app.store, &prefix, &page, |t| {
        filter.as_ref().is_none_or(|f| &t.kind == f).then(|| wire::balance_txn(t))
    })
}

/// POST /v1/deposit-addresses — from the gateway; stable per merchant, currency, network.
async fn deposit_address(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let m = merchant(&app, ctx.merchant_id()?)?;
    let req: DepositAddressIn = ctx.json()?;
    let currency =
        Currency::parse(&req.currency).map_err(|_| ApiError::invalid("currency", "unknown currency"))?;
    let address = money::deposit_address(&app, &m, currency, &network(&req.network)?).await?;
    Ok(ApiReply::json(
        201,
        &json!({"address": address.address, "network": address.network, "currency": address.currency.code()}),
    ))
}

/// POST /v1/test_helpers/deposits — sandbox only: the gateway reports a
/// deposit to the merchant's address; answers once it is credited.
async fn test_deposit(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    let m = merchant(&app, ctx.merchant_id()?)?;
    let req: TestDepositIn = ctx.json()?;
    let amount = parse_amount(&req.amount, "amount")?;
    let network = network(&req.network)?;
    money::deposit_address(&app, &m, amount.currency, &network).await?;
    let account = crate::flows::bootstrap::funding_account(&app, &m).await?;
    let reported = control
        .report_deposit(&account.merchant_id, amount, &network)
        .await
        .map_err(|e| ApiError::upstream(format!("the sandbox gateway refused: {e}")))?;
    // The callback was processed before the gateway answered; show the credit.
    let Some((_, txns)) = pelago_actors::merchant::booked(
        &app.store,
        &crate::keys::Source::GatewayDeposit { deposit: reported.id.clone() }.text(),
        pelago_actors::ledger::EntryKind::Deposit,
    )?
    else {
        return Err(ApiError::upstream("the deposit callback was not processed"));
    };
    let booked = txns.first().map(wire::balance_txn);
    let m = merchant(&app, &m.id)?;
    Ok(ApiReply::json(
        200,
        &json!({"object": "deposit", "gateway_deposit_id": reported.id, "amount": wire::money(amount),
                "address": reported.address, "network": reported.network, "status": "succeeded",
                "balance_transaction": booked, "balances": balances_json(&m)["balances"]}),
    ))
}

/// GET /admin/v1/ledger/check — recomputes every invariant of DOMAIN.md from the journal.
async fn ledger_check(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    let store = app.store.clone();
    let report =
        tokio::task::spawn_blocking(move || check(&store)).await.map_err(|_| ApiError::internal())??;
    Ok(ApiReply::json(200, &report))
}

fn check(store: &pelago_storage::Store) -> Result<Value, ApiError> {
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    let mut derived: BTreeMap<(MerchantId, Currency), (i128, i128)> = BTreeMap::new();
    let mut recipients: BTreeMap<(RecipientId, Currency), [i128; 3]> = BTreeMap::new();
    let mut unbalanced_entries = Vec::new();
    let mut entries = 0u64;
    for item in store.iter::<JournalEntry>() {
        let (_, entry) = item?;
        entries += 1;
        if pelago_actors::ledger::check_balanced(&entry.postings).is_err() {
            unbalanced_entries.push(entry.id.to_string());
        }
        for p in &entry.postings {
            *sums.entry(p.amount.currency).or_default() += i128::from(p.amount.value);
            match &p.account {
                Account::MerchantAvailable(m) => {
                    derived.entry((m.clone(), p.amount.currency)).or_default().0 += i128::from(p.amount.value)
                }
                Account::MerchantPending(m) => {
                    derived.entry((m.clone(), p.amount.currency)).or_default().1 += i128::from(p.amount.value)
                }
                account @ (Account::RecipientInTransit(r)
                | Account::RecipientAvailable(r)
                | Account::RecipientWithdrawing(r)) => {
                    let slot = recipients.entry((r.clone(), p.amount.currency)).or_default();
                    let value = i128::from(p.amount.value);
                    match account {
                        Account::RecipientInTransit(_) => slot[0] += value,
                        Account::RecipientAvailable(_) => slot[1] += value,
                        _ => slot[2] += value,
                    }
                }
                _ => {}
            }
        }
    }
    let mut negative_available = Vec::new();
    let mut mismatched = Vec::new();
    for item in store.iter::<MerchantRecord>() {
        let (_, m) = item?;
        for b in &m.balances {
            let (available, pending) = derived.remove(&(m.id.clone(), b.currency)).unwrap_or((0, 0));
            if available != i128::from(b.available) || pending != i128::from(b.pending) {
                mismatched.push(json!({"merchant_id": m.id, "currency": b.currency.code()}));
            }
            if b.available < 0 || available < 0 {
                negative_available.push(
                    json!({"merchant_id": m.id, "currency": b.currency.code(), "available": b.available}),
                );
            }
        }
    }
    check_recipients(store, recipients, &mut negative_available, &mut mismatched)?;
    // Postings on merchant accounts with no cached balance at all are mismatches too.
    for ((m, c), (a, p)) in derived {
        if a != 0 || p != 0 {
            mismatched.push(json!({"merchant_id": m, "currency": c.code()}));
        }
    }
    let balanced = sums.values().all(|s| *s == 0) && unbalanced_entries.is_empty() && mismatched.is_empty();
    Ok(json!({
        "balanced": balanced,
        "currencies": sums.iter().map(|(c, s)| json!({"currency": c.code(), "sum": *s as i64})).collect::<Vec<_>>(),
        "negative_available": negative_available,
        "entries": entries,
        "unbalanced_entries": unbalanced_entries,
        "balances_disagreeing_with_postings": mismatched,
    }))
}

/// MARKETPLACE.md §8: every recipient's cached balances equal its postings,
/// and none of its accounts is below zero.
fn check_recipients(
    store: &pelago_storage::Store,
    mut derived: BTreeMap<(RecipientId, Currency), [i128; 3]>,
    negative: &mut Vec<Value>,
    mismatched: &mut Vec<Value>,
) -> Result<(), ApiError> {
    for item in store.iter::<RecipientBalances>() {
        let (_, r) = item?;
        for b in &r.balances {
            let sums = derived.remove(&(r.recipient_id.clone(), b.currency)).unwrap_or_default();
            let cached = [b.in_transit, b.available, b.withdrawing].map(i128::from);
            if sums != cached {
                mismatched.push(json!({"recipient_id": r.recipient_id, "currency": b.currency.code()}));
            }
            for (name, value) in ["in_transit", "available", "withdrawing"].into_iter().zip(cached) {
                if value < 0 {
                    negative.push(json!({"recipient_id": r.recipient_id, "account": name,
                                         "currency": b.currency.code(), "amount": value as i64}));
                }
            }
        }
    }
    for ((r, c), sums) in derived {
        if sums != [0; 3] {
            mismatched.push(json!({"recipient_id": r, "currency": c.code()}));
        }
    }
    Ok(())
}
