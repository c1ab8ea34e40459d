//! Receipts for points (API.md §4 Receipts, §5 Polyflow). Format, key and
//! storage rules are in `crate::receipts`.

use std::sync::Arc;

use http::Method;
use pelago_actors::{
    card::{CardRecord, TransactionRecord},
    merchant::MerchantRecord,
    ports::ChannelTxnStatus,
};
use pelago_storage::{CardId, MerchantId, ReceiptId, TransactionId, Tree};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    http::state::App,
    receipts::{self, PayloadAmount, ReceiptPayload, ReceiptRecord, Redeemed},
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/receipts", create).answers(201).accepts::<CreateReceiptIn>(),
        Route::new(Method::GET, "/v1/receipts/public-key", public_key),
        Route::new(Method::POST, "/polyflow/v1/receipts/verify", verify).accepts::<VerifyIn>(),
        Route::new(Method::POST, "/polyflow/v1/receipts/{id}/redeem", redeem),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateReceiptIn {
    transaction_id: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyIn {
    receipt: String,
}

fn receipt_json(r: &ReceiptRecord) -> Result<Value, ApiError> {
    let qr_svg = receipts::qr_svg(&r.receipt).map_err(|_| ApiError::internal())?;
    Ok(json!({
        "id": r.id,
        "object": "receipt",
        "transaction_id": r.transaction_id,
        "receipt": r.receipt,
        "qr_svg": qr_svg,
        "created_at": r.created_at.to_rfc3339(),
    }))
}

/// POST /v1/receipts — the receipt of a `posted` purchase of the caller's
/// own card: 201, and a repeat (any later request for the same transaction)
/// answers 201 with the very same receipt (API.md: one receipt per transaction).
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let body: CreateReceiptIn = ctx.json()?;
    let (card, txn) = own_transaction(&app, &merchant_id, &body.transaction_id)?;
    if let Some(existing) = receipts::for_transaction(&app.store, &txn.id)?
        && receipts::is_posted_purchase(&txn)
    {
        return Ok(ApiReply::json(201, &receipt_json(&existing)?));
    }
    check_receiptable(&txn)?;
    let record = new_receipt(&app, merchant_id, card, &txn)?;
    if receipts::store_new(&app.store, &record).await? {
        return Ok(ApiReply::json(201, &receipt_json(&record)?));
    }
    // A concurrent request issued it first: answer with that one.
    let existing = receipts::for_transaction(&app.store, &txn.id)?.ok_or_else(ApiError::internal)?;
    Ok(ApiReply::json(201, &receipt_json(&existing)?))
}

/// The transaction `raw` of one of the merchant's cards, with its card; 404
/// for anything else.
fn own_transaction(
    app: &App,
    merchant_id: &MerchantId,
    raw: &str,
) -> Result<(CardRecord, TransactionRecord), ApiError> {
    let not_found = || ApiError::not_found("transaction");
    let txn_id = TransactionId::parse(raw).map_err(|_| not_found())?;
    let index = pelago_actors::keys::Index::Transaction { transaction: txn_id.clone() };
    let card_id = app.store.get_raw(Tree::Index, index.encode())?.ok_or_else(not_found)?;
    let card_id = CardId::parse(std::str::from_utf8(&card_id).map_err(|_| ApiError::internal())?)
        .map_err(|_| ApiError::internal())?;
    let card = app.store.get::<CardRecord>(card_id.as_bytes())?.ok_or_else(not_found)?;
    if &card.merchant_id != merchant_id {
        return Err(not_found());
    }
    let txn = app.store.get::<TransactionRecord>(format!("{card_id}/{txn_id}"))?.ok_or_else(not_found)?;
    if &txn.merchant_id != merchant_id {
        return Err(not_found());
    }
    Ok((card, txn))
}

/// Receipts are for posted purchases only (409 otherwise).
fn check_receiptable(txn: &TransactionRecord) -> Result<(), ApiError> {
    if txn.status != ChannelTxnStatus::Posted {
        return Err(ApiError::invalid_state(format!(
            "the transaction is {}; receipts are for posted transactions",
            txn.status.as_str()
        )));
    }
    if !receipts::is_posted_purchase(txn) {
        return Err(ApiError::invalid_state(format!(
            "the transaction is a {}; receipts are for purchases",
            txn.kind.as_str()
        )));
    }
    Ok(())
}

/// A new signed receipt for `txn` (not stored yet).
fn new_receipt(
    app: &App,
    merchant_id: MerchantId,
    card: CardRecord,
    txn: &TransactionRecord,
) -> Result<ReceiptRecord, ApiError> {
    let merchant = app.store.get::<MerchantRecord>(merchant_id.as_bytes())?.ok_or_else(ApiError::internal)?;
    let now = app.clock.now();
    let id = ReceiptId::generate();
    let payload = ReceiptPayload {
        receipt_id: id.to_string(),
        key_id: app.receipts.key_id().to_owned(),
        merchant_id: merchant_id.to_string(),
        merchant_name: merchant.name,
        card_last4: card.last4,
        transaction_id: txn.id.to_string(),
        amount: PayloadAmount { value: txn.amount.value, currency: txn.amount.currency.code().to_owned() },
        mcc: txn.mcc.clone(),
        transaction_time: txn.occurred_at.to_rfc3339(),
        issued_at: now.to_rfc3339(),
    };
    Ok(ReceiptRecord {
        id,
        merchant_id,
        transaction_id: txn.id.clone(),
        receipt: app.receipts.sign(&payload),
        created_at: now,
        redeemed_at: None,
    })
}

/// GET /v1/receipts/public-key — public, no authentication.
async fn public_key(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    Ok(ApiReply::json(
        200,
        &json!({"alg": "Ed25519", "key_id": app.receipts.key_id(), "public_key": app.receipts.public_key()}),
    ))
}

/// POST /polyflow/v1/receipts/verify — 200 `{valid: true, receipt, redeemed}`
/// or 200 `{valid: false, reason}` (also when its transaction is no longer a
/// posted purchase).
async fn verify(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let body: VerifyIn = ctx.json()?;
    let invalid = |reason: receipts::Invalid| {
        ApiReply::json(200, &json!({"valid": false, "reason": reason.to_string()}))
    };
    let payload = match app.receipts.verify(&body.receipt) {
        Ok(p) => p,
        Err(reason) => return Ok(invalid(reason)),
    };
    let stored = match ReceiptId::parse(&payload.receipt_id) {
        Ok(id) => app.store.get::<ReceiptRecord>(id.as_bytes())?,
        Err(_) => None,
    };
    let Some(stored) = stored.filter(|r| r.receipt == body.receipt) else {
        return Ok(invalid(receipts::Invalid::UnknownReceipt));
    };
    // Valid only while its transaction is still a posted purchase.
    if !receipts::transaction(&app.store, &stored.transaction_id)?
        .is_some_and(|(txn, _)| receipts::is_posted_purchase(&txn))
    {
        return Ok(invalid(receipts::Invalid::NotAPostedPurchase));
    }
    Ok(ApiReply::json(
        200,
        &json!({"valid": true, "receipt": payload, "redeemed": stored.redeemed_at.is_some()}),
    ))
}

/// POST /polyflow/v1/receipts/{id}/redeem — once; again → 409 `already_redeemed`;
/// its transaction no longer a posted purchase → 409 `invalid_state`.
async fn redeem(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = ReceiptId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("receipt"))?;
    match receipts::redeem(&app.store, &id, app.clock.now()).await? {
        Redeemed::Now(r) => Ok(ApiReply::json(
            200,
            &json!({"id": r.id, "redeemed": true, "redeemed_at": r.redeemed_at.map(|t| t.to_rfc3339())}),
        )),
        Redeemed::Already => Err(ApiError::already_redeemed()),
        Redeemed::Unknown => Err(ApiError::not_found("receipt")),
        Redeemed::NotAPostedPurchase => Err(ApiError::invalid_state(
            "the receipt's transaction is no longer a posted purchase; it cannot be redeemed",
        )),
    }
}
