//! Cards (API.md §4): open, get, list, live details, freeze, unfreeze,
//! delete, transactions (pulled from the channel, then listed), and the
//! sandbox spending helper. Card data (PAN, CVV, expiry) passes through
//! `details` only: read once from `CardDetails` into the response body, never
//! stored, logged or cached (`Cache-Control: no-store`).

use std::sync::Arc;

use futures::future::BoxFuture;
use http::Method;
use pelago_actors::{
    card::{ApplyTransaction, CardRecord, CardStatus, TransactionRecord, ops::ActionKind, ops::CardOutcome},
    keys::Index,
    merchant::MerchantRecord,
    ports::Outcome,
};
use pelago_storage::{Timestamp, Tree, WriteBatch};
use serde::Deserialize;
use serde_json::Value;

use super::{
    errors::ApiError,
    idempotency, pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire::{self, MoneyIn, parse_amount},
};
use crate::{
    flows::cards,
    http::state::App,
    upstream::{
        channel_wire::TxnTypeWire,
        sandbox::{CardTransactionBody, TestTxnStatus},
    },
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/cards", open).creates::<OpenCardIn>(),
        Route::new(Method::GET, "/v1/cards", list),
        Route::new(Method::GET, "/v1/cards/{id}", get),
        Route::new(Method::DELETE, "/v1/cards/{id}", delete).also_answers(&[202]),
        Route::new(Method::GET, "/v1/cards/{id}/details", details),
        Route::new(Method::POST, "/v1/cards/{id}/freeze", freeze).also_answers(&[202]),
        Route::new(Method::POST, "/v1/cards/{id}/unfreeze", unfreeze).also_answers(&[202]),
        Route::new(Method::GET, "/v1/cards/{id}/transactions", transactions),
        Route::new(Method::POST, "/v1/cards/{id}/topups", create_topup).creates::<TopupIn>(),
        Route::new(Method::GET, "/v1/cards/{id}/topups", list_topups),
        Route::new(Method::GET, "/v1/topups/{id}", get_topup),
        Route::new(Method::POST, "/v1/test_helpers/cards/{id}/transactions", test_transaction)
            .answers(201)
            .accepts::<TestTransactionIn>(),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OpenCardIn {
    cardholder_id: String,
    reference: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TopupIn {
    amount: MoneyIn,
    reference: Option<String>,
}

/// POST /v1/cards/{id}/topups — master-account mode: debited at once, then the
/// channel funds the card (201 succeeded/failed, 202 processing).
async fn create_topup(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let card = cards::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    let req: TopupIn = ctx.json()?;
    let amount = parse_amount(&req.amount, "amount")?;
    if req.reference.as_ref().is_some_and(|r| r.is_empty() || r.len() > 255) {
        return Err(ApiError::invalid("reference", "reference is 1 to 255 characters"));
    }
    let merchant =
        app.store.get::<MerchantRecord>(card.merchant_id.as_bytes())?.ok_or_else(ApiError::internal)?;
    // With an Idempotency-Key, the answer is stored in the top-up's final commit.
    let settled = ctx.answer.clone().map(|slot| {
        let app = Arc::clone(&app);
        Box::new(move |t: &pelago_actors::card::topup::TopupRecord| {
            let unstored = |_| pelago_actors::ActorError::unavailable("the answer could not be stored");
            let reply = ApiReply::json(201, &super::orders::topup_json(&app, t).map_err(unstored)?);
            slot.stage(reply).map_err(unstored)
        }) as pelago_actors::card::topup::SettledWrites
    });
    let topup =
        crate::flows::topups::create(&app, &merchant, &card, amount, req.reference, ctx.binding(), settled)
            .await?;
    if let Some(reply) = ctx.answer.as_ref().and_then(idempotency::AnswerSlot::committed) {
        return Ok(reply);
    }
    let status = match topup.status {
        pelago_actors::card::topup::TopupStatus::Processing => 202,
        _ => 201,
    };
    Ok(ApiReply::json(status, &super::orders::topup_json(&app, &topup)?))
}

/// GET /v1/topups/{id}
async fn get_topup(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let t = crate::flows::topups::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &super::orders::topup_json(&app, &t)?))
}

/// GET /v1/cards/{id}/topups — newest first.
async fn list_topups(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let card = cards::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    let page = pagination::parse(&ctx.query, &[])?;
    let prefix = format!("{}/", card.id);
    let after = page.starting_after.as_ref().map(|id| format!("{prefix}{id}"));
    let found = app.store.scan::<pelago_actors::card::topup::TopupRecord>(
        prefix.as_bytes(),
        after.as_deref().map(str::as_bytes),
        true,
        page.limit + 1,
    )?;
    Ok(ApiReply::json(
        200,
        &pagination::body(
            found.iter().map(|(_, t)| super::orders::topup_json(&app, t)).collect::<Result<Vec<_>, _>>()?,
            page.limit,
        ),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TestTransactionIn {
    amount: MoneyIn,
    merchant_name: String,
    mcc: String,
    /// `posted` or `pending`.
    status: String,
    /// `authorization` (spending, the default), `refund` or `reversal` (credits to the card).
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// For a `reversal`: the card's authorization (`txn_...`) it reverses,
    /// which turns `reversed`; the answer is that authorization.
    #[serde(default)]
    related_transaction_id: Option<String>,
}

fn outcome_reply(app: &App, outcome: CardOutcome, created: bool) -> HandlerResult {
    if let Some(reason) = outcome.refused {
        return Err(ApiError::upstream(format!("the channel refused: {reason}")));
    }
    let status = match (outcome.settled, created) {
        (false, _) => 202,
        (true, true) => 201,
        (true, false) => 200,
    };
    Ok(ApiReply::json(status, &super::orders::card_json(app, &outcome.card)?))
}

/// POST /v1/cards
async fn open(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: OpenCardIn = ctx.json()?;
    if req.reference.as_ref().is_some_and(|r| r.is_empty() || r.len() > 255) {
        return Err(ApiError::invalid("reference", "reference is 1 to 255 characters"));
    }
    let merchant =
        app.store.get::<MerchantRecord>(ctx.merchant_id()?.as_bytes())?.ok_or_else(ApiError::internal)?;
    let outcome = cards::open(
        &app,
        &merchant,
        cards::OpenRequest { cardholder_id: req.cardholder_id, reference: req.reference },
        ctx.binding(),
    )
    .await?;
    outcome_reply(&app, outcome, true)
}

/// GET /v1/cards/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let card = cards::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &super::orders::card_json(&app, &card)?))
}

/// GET /v1/cards — newest first; `?cardholder_id=`, `?status=` filter.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let page = pagination::parse(&ctx.query, &["cardholder_id", "status"])?;
    let status = match page.filters.get("status") {
        Some(s) => {
            Some(CardStatus::parse(s).ok_or_else(|| ApiError::invalid("status", "unknown card status"))?)
        }
        None => None,
    };
    let holder = page.filters.get("cardholder_id").cloned();
    let prefix = pelago_actors::keys::scan_prefix(pelago_actors::keys::MCARD, &[&merchant]);
    let mut cursor = page.starting_after.as_ref().map(|id| format!("{prefix}{id}"));
    let mut items = Vec::new();
    // Filters may skip records: scan in bounded pages.
    for _ in 0..50 {
        let keys = app.store.scan_keys(
            Tree::Index,
            prefix.as_bytes(),
            cursor.as_deref().map(str::as_bytes),
            true,
            200,
        )?;
        let exhausted = keys.len() < 200;
        cursor = keys.last().map(|k| String::from_utf8_lossy(k).into_owned());
        for key in keys {
            let Some(card) = app.store.get::<CardRecord>(&key[prefix.len()..])? else { continue };
            if status.is_some_and(|s| s != card.status)
                || holder.as_ref().is_some_and(|h| h != card.cardholder_id.as_str())
            {
                continue;
            }
            items.push(super::orders::card_json(&app, &card)?);
            if items.len() > page.limit {
                break;
            }
        }
        if items.len() > page.limit || exhausted {
            break;
        }
    }
    Ok(ApiReply::json(200, &pagination::body(items, page.limit)))
}

fn act(kind: ActionKind) -> impl Fn(Arc<App>, Ctx) -> BoxFuture<'static, HandlerResult> {
    move |app, ctx| {
        Box::pin(async move {
            let card = cards::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
            let outcome = cards::act(&app, &card, kind).await?;
            outcome_reply(&app, outcome, false)
        })
    }
}

/// POST /v1/cards/{id}/freeze — active → frozen.
fn freeze(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    act(ActionKind::Freeze)(app, ctx)
}

/// POST /v1/cards/{id}/unfreeze — frozen → active.
fn unfreeze(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    act(ActionKind::Unfreeze)(app, ctx)
}

/// DELETE /v1/cards/{id} — active|frozen → deleted; the remaining balance is credited back.
fn delete(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    act(ActionKind::Delete)(app, ctx)
}

/// GET /v1/cards/{id}/details — live from the channel on every call.
async fn details(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let card = cards::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    if !matches!(card.status, CardStatus::Active | CardStatus::Frozen) {
        return Err(ApiError::invalid_state(format!(
            "a card that is {} has no details",
            card.status.as_str()
        )));
    }
    let channel_card_id =
        card.channel_card_id.clone().ok_or_else(|| ApiError::invalid_state("the card is not open"))?;
    let channel =
        app.upstreams.channel(&card.channel_id).ok_or_else(|| ApiError::upstream("channel unavailable"))?;
    let d = match channel.card_details(channel_card_id).await {
        Outcome::Done(d) => d,
        Outcome::Declined { .. } => {
            return Err(ApiError::upstream("the channel refused to show the card"));
        }
        Outcome::Unknown { .. } => return Err(ApiError::upstream("the channel did not answer")),
    };
    // Serialized straight from the `SensitiveString`s (no intermediate JSON
    // value holding copies); the body is wiped when the response is dropped
    // (`no-store` replies, see `http::to_response`).
    let body = DetailsOut {
        card_id: card.id.as_str(),
        pan: d.pan.expose(),
        cvv: d.cvv.expose(),
        expiry_month: d.expiry_month,
        expiry_year: d.expiry_year,
        balance: wire::money(d.balance),
        status: &d.status,
    };
    // Sized once so that no reallocation leaves an unwiped copy behind.
    let mut bytes = Vec::with_capacity(DETAILS_BODY_CAPACITY);
    serde_json::to_writer(&mut bytes, &body).map_err(|_| ApiError::internal())?;
    let reply = ApiReply {
        status: 200,
        body: bytes,
        content_type: "application/json",
        headers: Vec::new(),
        file: None,
    };
    Ok(reply.with_header("cache-control", "no-store"))
}

/// Room for a `/details` body (about 250 bytes with a 19-digit PAN).
const DETAILS_BODY_CAPACITY: usize = 1024;

/// The `/details` answer, borrowing the card data it shows.
#[derive(serde::Serialize)]
struct DetailsOut<'a> {
    card_id: &'a str,
    pan: &'a str,
    cvv: &'a str,
    expiry_month: u8,
    expiry_year: u16,
    balance: Value,
    status: &'a str,
}

/// Channel pages one transaction list request pulls at most. A card further
/// behind catches up over the next requests (the cursor is durable), and
/// channels push transactions by callback anyway.
const MAX_PULLS_PER_REQUEST: usize = 4;

/// Pulls new transactions from the channel (after the last one seen) and stores them.
async fn pull(app: &App, card: &CardRecord) -> Result<(), ApiError> {
    let Some(channel_card_id) = card.channel_card_id.clone() else { return Ok(()) };
    let channel =
        app.upstreams.channel(&card.channel_id).ok_or_else(|| ApiError::upstream("channel unavailable"))?;
    let cursor_key = crate::keys::Index::TransactionSync { card: card.id.clone() }.encode();
    let mut after =
        app.store.get_raw(Tree::Index, &cursor_key)?.map(|b| String::from_utf8_lossy(&b).into_owned());
    for _ in 0..MAX_PULLS_PER_REQUEST {
        let page = match channel.list_transactions(channel_card_id.clone(), after.clone()).await {
            Outcome::Done(p) => p,
            Outcome::Declined { reason } => {
                return Err(ApiError::upstream(format!("the channel refused: {reason}")));
            }
            Outcome::Unknown { .. } => return Err(ApiError::upstream("the channel did not answer")),
        };
        let Some(last) = page.last().map(|t| t.channel_transaction_id.clone()) else { break };
        for txn in page {
            app.actors.ask_card(&card.id, ApplyTransaction(txn)).await??;
        }
        let mut batch = WriteBatch::new();
        batch.put_raw(Tree::Index, &cursor_key, last.as_bytes());
        app.store.commit_durable(batch).await?;
        after = Some(last);
    }
    Ok(())
}

/// GET /v1/cards/{id}/transactions — pulls first, then lists, newest first; `?since=`.
async fn transactions(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let card = cards::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    let page = pagination::parse(&ctx.query, &["since"])?;
    let since = match page.filters.get("since") {
        Some(s) => Some(
            Timestamp::parse_rfc3339(s)
                .ok_or_else(|| ApiError::invalid("since", "since must be an RFC 3339 time"))?,
        ),
        None => None,
    };
    pull(&app, &card).await?;
    let prefix = format!("{}/", card.id);
    pagination::reply::<TransactionRecord>(&app.store, &prefix, &page, |t| {
        since.is_none_or(|s| t.occurred_at >= s).then(|| wire::transaction(t))
    })
}

/// POST /v1/test_helpers/cards/{id}/transactions — sandbox only: the channel
/// records spending (declined if over the balance) and calls back; answers
/// the transaction as Pelago stored it.
async fn test_transaction(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    let card = cards::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    let req: TestTransactionIn = ctx.json()?;
    let (channel_card_id, body) = test_transaction_body(&app, &card, &req)?;
    let txn = control
        .card_transaction(&channel_card_id, &body)
        .await
        .map_err(|e| ApiError::upstream(format!("the sandbox channel refused: {e}")))?;
    // The callback was processed before the channel answered; applying again is a no-op.
    let channel_transaction = txn.channel_transaction_id.clone();
    app.actors.ask_card(&card.id, ApplyTransaction(txn)).await??;
    let index = Index::ChannelTransaction { channel: card.channel_id.clone(), channel_transaction };
    let key = app.store.get_raw(Tree::Index, index.encode())?.ok_or_else(ApiError::internal)?;
    let stored = app.store.get::<TransactionRecord>(&key)?.ok_or_else(ApiError::internal)?;
    Ok(ApiReply::json(201, &wire::transaction(&stored)))
}

/// The sandbox channel's request for `req` on the open card's channel id,
/// each field checked (400 naming it).
fn test_transaction_body(
    app: &App,
    card: &CardRecord,
    req: &TestTransactionIn,
) -> Result<(String, CardTransactionBody), ApiError> {
    let amount = parse_amount(&req.amount, "amount")?;
    if amount.currency != card.currency {
        return Err(ApiError::invalid("amount.currency", "the card's currency is different"));
    }
    let status = match req.status.as_str() {
        "posted" => TestTxnStatus::Posted,
        "pending" => TestTxnStatus::Pending,
        _ => return Err(ApiError::invalid("status", "status must be posted or pending")),
    };
    if !(1..=64).contains(&req.merchant_name.len()) {
        return Err(ApiError::invalid("merchant_name", "merchant_name is 1 to 64 characters"));
    }
    if req.mcc.len() != 4 || !req.mcc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("mcc", "mcc is 4 digits"));
    }
    let channel_card_id =
        card.channel_card_id.clone().ok_or_else(|| ApiError::invalid_state("the card is not open"))?;
    let kind = match req.kind.as_deref() {
        None | Some("authorization") => None,
        Some("refund") => Some(TxnTypeWire::Refund),
        Some("reversal") => Some(TxnTypeWire::Reversal),
        Some(_) => return Err(ApiError::invalid("type", "type is authorization, refund or reversal")),
    };
    let related_transaction_id = match &req.related_transaction_id {
        None => None,
        Some(_) if kind != Some(TxnTypeWire::Reversal) => {
            return Err(ApiError::invalid("related_transaction_id", "only a reversal names a transaction"));
        }
        Some(txn_id) => Some(
            app.store
                .get::<TransactionRecord>(format!("{}/{txn_id}", card.id))?
                .ok_or_else(|| {
                    ApiError::invalid("related_transaction_id", "no such transaction on this card")
                })?
                .channel_transaction_id,
        ),
    };
    let body = CardTransactionBody {
        amount,
        merchant_name: req.merchant_name.clone(),
        mcc: req.mcc.clone(),
        status,
        kind,
        related_transaction_id,
    };
    Ok((channel_card_id, body))
}
