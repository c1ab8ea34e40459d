//! The simulated card-issuing channel (`/channel/...`): the channel protocol of
//! [`crate::upstream`] plus its control endpoints (registration, approvals,
//! card spending, faults). Behaviour as SANDBOX.md describes it.

use std::time::Duration;

use chrono::Datelike;
use http::{Method, StatusCode};
use pelago_storage::{Currency, Money, StoreError, Timestamp, WriteBatch};
use serde::Serialize;

use super::{
    Request, Response, State, error, error_envelope, internal, json, key_digest, new_id, raw_json,
    records::{ApiKeyIndex, CardRec, CardStatus, CardholderRec, ChannelReg, Counter, OpRecord, TxnRec},
    same_secret,
};
use crate::keys::Sandbox;
use crate::upstream::{
    callbacks::{CHANNEL_SIGNATURE_HEADER, ChannelCallbackWire, ChannelEventWire},
    channel_wire::{
        BalanceAnswer, CardAnswer, CardholderAnswer, CardholderStateAnswer, CardholderStatusWire,
        CreateCardholderBody, DeletedAnswer, DetailsAnswer, MasterBalancesAnswer, OpenCardBody,
        OperationAnswer, StatusAnswer, TopupBody, TransactionWire, TransactionsAnswer, TxnStatusWire,
        TxnTypeWire,
    },
    sandbox::{
        Acknowledged, CardTransactionBody, FaultBehavior, FaultOperation, FaultSpec, RegisterChannelBody,
        TestTxnStatus,
    },
};

/// Every channel's master account starts with 1,000,000.00 per currency.
const MASTER_START_MINOR: i64 = 100_000_000;
/// Most transactions one pull returns; the caller pages with `after`.
const MAX_TRANSACTIONS_PER_PAGE: usize = 100;

pub(super) async fn handle(state: &State, req: Request) -> Response {
    let segments: Vec<String> = req.segments.clone();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&req.method, segments.as_slice()) {
        (&Method::POST, ["control", "channels"]) => return register(state, &req).await,
        (&Method::POST, ["control", "channels", id, "faults"]) => return set_fault(state, id, &req),
        (&Method::DELETE, ["control", "channels", id, "faults"]) => {
            state.faults.lock().clear(id);
            return json(StatusCode::OK, &Acknowledged { ok: true });
        }
        (&Method::POST, ["control", "cardholders", id, "approve"]) => return approve(state, id).await,
        (&Method::POST, ["control", "cards", id, "transactions"]) => {
            return create_transaction(state, id, &req).await;
        }
        _ => {}
    }
    let channel = or_reply!(authenticate(state, &req));
    match (&req.method, segments.as_slice()) {
        (&Method::POST, ["cardholders"]) => mutate(state, &channel, &req, Mutation::CreateCardholder).await,
        (&Method::POST, ["cards"]) => mutate(state, &channel, &req, Mutation::OpenCard).await,
        (&Method::POST, ["cards", id, "topups"]) => mutate(state, &channel, &req, Mutation::Topup(id)).await,
        (&Method::POST, ["cards", id, "freeze"]) => mutate(state, &channel, &req, Mutation::Freeze(id)).await,
        (&Method::POST, ["cards", id, "unfreeze"]) => {
            mutate(state, &channel, &req, Mutation::Unfreeze(id)).await
        }
        (&Method::DELETE, ["cards", id]) => mutate(state, &channel, &req, Mutation::Delete(id)).await,
        (&Method::GET, ["cards", id, "details"]) => {
            read(state, &channel, FaultOperation::Details, || details(state, &channel, id)).await
        }
        (&Method::GET, ["cards", id, "transactions"]) => {
            let after = req.query.get("after").map(String::as_str);
            read(state, &channel, FaultOperation::Transactions, || transactions(state, &channel, id, after))
                .await
        }
        (&Method::GET, ["cards", id, "transactions", txn_id]) => {
            read(state, &channel, FaultOperation::Transactions, || transaction(state, &channel, id, txn_id))
                .await
        }
        (&Method::GET, ["cardholders", id]) => {
            read(state, &channel, FaultOperation::Cardholder, || cardholder(state, &channel, id)).await
        }
        (&Method::GET, ["balance"]) => {
            read(state, &channel, FaultOperation::Balance, || balance(state, &channel)).await
        }
        (&Method::GET, ["operations", request_id]) => operation(state, &channel, request_id),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

fn authenticate(state: &State, req: &Request) -> Result<ChannelReg, Response> {
    let unauthorized = || error(StatusCode::UNAUTHORIZED, "unauthorized", "unknown or missing API key");
    let api_key = req.bearer().ok_or_else(unauthorized)?;
    let index = state
        .store
        .get::<ApiKeyIndex>(Sandbox::ChannelKey { digest: key_digest(api_key).to_string() }.text())
        .map_err(internal)?
        .ok_or_else(unauthorized)?;
    let channel = state
        .store
        .get::<ChannelReg>(Sandbox::Channel { channel: index.owner_id.to_string() }.text())
        .map_err(internal)?
        .ok_or_else(unauthorized)?;
    if !same_secret(api_key, &state.open(&channel.api_key, &ChannelReg::api_key_context(&channel.channel_id)))
    {
        return Err(unauthorized());
    }
    Ok(channel)
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("wire types always serialise")
}

// --------------------------------------------------------------- mutations ----

#[derive(Clone, Copy)]
enum Mutation<'a> {
    CreateCardholder,
    OpenCard,
    Topup(&'a str),
    Freeze(&'a str),
    Unfreeze(&'a str),
    Delete(&'a str),
}

impl Mutation<'_> {
    fn fault_operation(self) -> FaultOperation {
        match self {
            Mutation::CreateCardholder => FaultOperation::CreateCardholder,
            Mutation::OpenCard => FaultOperation::OpenCard,
            Mutation::Topup(_) => FaultOperation::Topup,
            Mutation::Freeze(_) => FaultOperation::Freeze,
            Mutation::Unfreeze(_) => FaultOperation::Unfreeze,
            Mutation::Delete(_) => FaultOperation::Delete,
        }
    }

    /// The operation and its target: a request id is bound to both.
    fn name(self) -> String {
        match self {
            Mutation::CreateCardholder => "create_cardholder".to_owned(),
            Mutation::OpenCard => "open_card".to_owned(),
            Mutation::Topup(id) => format!("topup {id}"),
            Mutation::Freeze(id) => format!("freeze {id}"),
            Mutation::Unfreeze(id) => format!("unfreeze {id}"),
            Mutation::Delete(id) => format!("delete {id}"),
        }
    }
}

/// What applying a mutation decided, before it is committed.
enum Applied {
    Done { status: StatusCode, answer: String, operation: OperationAnswer, batch: WriteBatch },
    Declined { status: StatusCode, code: &'static str, reason: String },
}

fn declined(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Result<Applied, Response> {
    Ok(Applied::Declined { status, code, reason: reason.into() })
}

/// Applies a mutating call once per request id: a repeat answers the stored
/// result. Faults: `error` answers 500 without applying; `decline` refuses
/// (recorded, so a repeat refuses too); `timeout`/`delay` apply, then answer late.
async fn mutate(state: &State, channel: &ChannelReg, req: &Request, mutation: Mutation<'_>) -> Response {
    let Some(request_id) = req.idempotency_key() else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "the Idempotency-Key header is required");
    };
    let fault = state.faults.lock().take(&channel.channel_id, mutation.fault_operation());
    if fault.is_some_and(|f| f.behavior == FaultBehavior::Error) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated_error",
            "injected fault: nothing applied",
        );
    }
    let op_key = Sandbox::ChannelOperation {
        channel: channel.channel_id.to_string(),
        request: request_id.to_string(),
    }
    .text();
    let decided = {
        // The lock orders decisions; it is released before the flush, so
        // concurrent calls share fsyncs. Every answer (a repeat's too) waits
        // for a flush that covers everything decided before it.
        let _guard = state.write_lock.lock().await;
        let decline = fault.is_some_and(|f| f.behavior == FaultBehavior::Decline);
        decide_once(state, channel, req, mutation, &op_key, decline)
    };
    let (status, answer, ticket) = or_reply!(decided);
    if let Err(e) = state.store.wait_durable(ticket).await {
        return internal(e);
    }
    answer_late(state, fault.map(|f| (f.behavior, f.delay_ms))).await;
    raw_json(status, answer)
}

/// Under the write lock: a repeat's stored answer, or the mutation applied
/// (or declined, `decline`) and recorded with its answer in one commit.
fn decide_once(
    state: &State,
    channel: &ChannelReg,
    req: &Request,
    mutation: Mutation<'_>,
    op_key: &str,
    decline: bool,
) -> Result<(u16, String, pelago_storage::FlushTicket), Response> {
    match state.store.get::<OpRecord>(op_key).map_err(internal)? {
        Some(stored) if stored.op != mutation.name() => {
            Err(error(StatusCode::CONFLICT, "idempotency_conflict", "request id was used for another call"))
        }
        Some(stored) => Ok((stored.status, stored.answer_json, state.store.ticket())),
        None => {
            let applied = if decline {
                Applied::Declined {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    code: "declined",
                    reason: "declined by an injected fault".to_owned(),
                }
            } else {
                apply(state, channel, req, mutation)?
            };
            let (mut batch, record) = applied.recorded(mutation.name());
            batch.put(op_key, &record).map_err(internal)?;
            let ticket = state.store.commit(batch).map_err(internal)?;
            Ok((record.status, record.answer_json, ticket))
        }
    }
}

impl Applied {
    /// The rows to commit and the stored answer (a decline's as its error envelope).
    fn recorded(self, op: String) -> (WriteBatch, OpRecord) {
        match self {
            Applied::Done { status, answer, operation, batch } => (
                batch,
                OpRecord {
                    op,
                    status: status.as_u16(),
                    answer_json: answer,
                    operation_json: to_json(&operation),
                },
            ),
            Applied::Declined { status, code, reason } => (
                WriteBatch::new(),
                OpRecord {
                    op,
                    status: status.as_u16(),
                    answer_json: to_json(&error_envelope(code, &reason)),
                    operation_json: to_json(&OperationAnswer::Declined {
                        reason: format!("{code}: {reason}"),
                    }),
                },
            ),
        }
    }
}

/// Holds the answer back as a `timeout` or `delay` fault asks.
async fn answer_late(state: &State, fault: Option<(FaultBehavior, u64)>) {
    let wait_ms = match fault {
        Some((FaultBehavior::Timeout, _)) => state.upstream_timeout_ms + 1_000,
        Some((FaultBehavior::Delay, delay_ms)) => delay_ms,
        _ => return,
    };
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
}

fn apply(
    state: &State,
    channel: &ChannelReg,
    req: &Request,
    mutation: Mutation<'_>,
) -> Result<Applied, Response> {
    match mutation {
        Mutation::CreateCardholder => create_cardholder(channel, req.json()?),
        Mutation::OpenCard => open_card(state, channel, req.json()?),
        Mutation::Topup(id) => topup(state, channel, id, req.json()?),
        Mutation::Freeze(id) => set_frozen(state, channel, id, true),
        Mutation::Unfreeze(id) => set_frozen(state, channel, id, false),
        Mutation::Delete(id) => delete(state, channel, id),
    }
    .map_err(internal)?
}

fn is_bin(bin: &str) -> bool {
    bin.len() == 6 && bin.bytes().all(|b| b.is_ascii_digit())
}

type ApplyResult = Result<Result<Applied, Response>, StoreError>;

fn create_cardholder(channel: &ChannelReg, body: CreateCardholderBody) -> ApplyResult {
    if !is_bin(&body.bin) {
        return Ok(declined(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bin", "bin must be 6 digits"));
    }
    let (status, reason) = match body.identity.last_name.as_str() {
        "Reject" => (CardholderStatusWire::Rejected, Some("identity verification failed".to_owned())),
        "Pending" => (CardholderStatusWire::Pending, None),
        _ => (CardholderStatusWire::Active, None),
    };
    let id = new_id("cch");
    let record = CardholderRec {
        channel_id: channel.channel_id.clone(),
        id: id.clone(),
        cardholder_id: body.cardholder_id,
        status,
        reason: reason.clone(),
    };
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Cardholder { cardholder: id.to_string() }.text(), &record)?;
    let answer = CardholderAnswer { id, status, reason };
    Ok(Ok(Applied::Done {
        status: StatusCode::CREATED,
        answer: to_json(&answer),
        operation: OperationAnswer::CardholderCreated { cardholder: answer },
        batch,
    }))
}

fn open_card(state: &State, channel: &ChannelReg, body: OpenCardBody) -> ApplyResult {
    if !is_bin(&body.bin) {
        return Ok(declined(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bin", "bin must be 6 digits"));
    }
    let cardholder = state
        .store
        .get::<CardholderRec>(Sandbox::Cardholder { cardholder: body.cardholder_id.to_string() }.text())?;
    let Some(cardholder) = cardholder.filter(|c| c.channel_id == channel.channel_id) else {
        return Ok(declined(StatusCode::NOT_FOUND, "cardholder_not_found", "no such cardholder"));
    };
    if cardholder.status != CardholderStatusWire::Active {
        return Ok(declined(StatusCode::CONFLICT, "cardholder_not_active", "the cardholder is not approved"));
    }
    let id = new_id("cc");
    let today = chrono::Utc::now();
    let record = CardRec {
        channel_id: channel.channel_id.clone(),
        id: id.clone(),
        card_id: body.card_id,
        cardholder_id: cardholder.id,
        bin: body.bin,
        currency: body.currency,
        balance_minor: 0,
        status: CardStatus::Active,
        expiry_month: today.month() as u8,
        expiry_year: (today.year() + 3) as u16,
    };
    let pan = state.card_key.pan(&record.bin, &id);
    let answer =
        CardAnswer { id: id.clone(), last4: pan[pan.len() - 4..].to_owned(), balance: record.balance() };
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Card { card: id.to_string() }.text(), &record)?;
    Ok(Ok(Applied::Done {
        status: StatusCode::CREATED,
        answer: to_json(&answer),
        operation: OperationAnswer::CardOpened { card: answer },
        batch,
    }))
}

/// The card, when it exists and belongs to `channel`.
fn load_card(state: &State, channel: &ChannelReg, card_id: &str) -> Result<Option<CardRec>, StoreError> {
    Ok(state
        .store
        .get::<CardRec>(Sandbox::Card { card: card_id.to_string() }.text())?
        .filter(|c| c.channel_id == channel.channel_id))
}

/// The channel's card `card_id`, or the reply that says why not (404, 500).
fn card_of(state: &State, channel: &ChannelReg, card_id: &str) -> Result<CardRec, Response> {
    match load_card(state, channel, card_id) {
        Ok(Some(card)) => Ok(card),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, "card_not_found", "no such card")),
        Err(e) => Err(internal(e)),
    }
}

fn master_key(channel_id: &str, currency: Currency) -> String {
    Sandbox::Master { channel: channel_id.to_string(), currency: currency.code().to_string() }.text()
}

fn master_balance(state: &State, channel_id: &str, currency: Currency) -> Result<Money, StoreError> {
    let value =
        state.store.get::<Counter>(master_key(channel_id, currency))?.map_or(MASTER_START_MINOR, |c| c.value);
    Ok(Money::new(value, currency))
}

fn card_missing() -> Result<Applied, Response> {
    declined(StatusCode::NOT_FOUND, "card_not_found", "no such card")
}

fn topup(state: &State, channel: &ChannelReg, card_id: &str, body: TopupBody) -> ApplyResult {
    let Some(mut card) = load_card(state, channel, card_id)? else { return Ok(card_missing()) };
    if card.status == CardStatus::Deleted {
        return Ok(declined(StatusCode::CONFLICT, "card_deleted", "the card is deleted"));
    }
    if body.amount.value <= 0 || body.amount.currency != card.currency {
        return Ok(declined(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
            "amount must be positive, in the card's currency",
        ));
    }
    let master = master_balance(state, &channel.channel_id, card.currency)?;
    let (Ok(new_master), Ok(new_card)) =
        (master.checked_sub(body.amount), card.balance().checked_add(body.amount))
    else {
        return Ok(declined(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount out of range"));
    };
    if new_master.value < 0 {
        return Ok(declined(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_funds",
            "the channel's master account is short",
        ));
    }
    card.balance_minor = new_card.value;
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Card { card: card_id.to_string() }.text(), &card)?;
    batch.put(master_key(&channel.channel_id, card.currency), &Counter { value: new_master.value })?;
    Ok(Ok(Applied::Done {
        status: StatusCode::OK,
        answer: to_json(&BalanceAnswer { balance: new_card }),
        operation: OperationAnswer::CardFunded { balance: new_card },
        batch,
    }))
}

fn set_frozen(state: &State, channel: &ChannelReg, card_id: &str, frozen: bool) -> ApplyResult {
    let Some(mut card) = load_card(state, channel, card_id)? else { return Ok(card_missing()) };
    if card.status == CardStatus::Deleted {
        return Ok(declined(StatusCode::CONFLICT, "card_deleted", "the card is deleted"));
    }
    card.status = if frozen { CardStatus::Frozen } else { CardStatus::Active };
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Card { card: card_id.to_string() }.text(), &card)?;
    Ok(Ok(Applied::Done {
        status: StatusCode::OK,
        answer: to_json(&StatusAnswer { status: card.status.as_str().to_owned() }),
        operation: OperationAnswer::ActionApplied,
        batch,
    }))
}

fn delete(state: &State, channel: &ChannelReg, card_id: &str) -> ApplyResult {
    let Some(mut card) = load_card(state, channel, card_id)? else { return Ok(card_missing()) };
    if card.status == CardStatus::Deleted {
        return Ok(declined(StatusCode::CONFLICT, "card_deleted", "the card is already deleted"));
    }
    let remaining = card.balance();
    let master = master_balance(state, &channel.channel_id, card.currency)?;
    let Ok(new_master) = master.checked_add(remaining) else {
        return Ok(declined(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
            "master balance out of range",
        ));
    };
    card.balance_minor = 0;
    card.status = CardStatus::Deleted;
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Card { card: card_id.to_string() }.text(), &card)?;
    batch.put(master_key(&channel.channel_id, card.currency), &Counter { value: new_master.value })?;
    Ok(Ok(Applied::Done {
        status: StatusCode::OK,
        answer: to_json(&DeletedAnswer { remaining_balance: remaining }),
        operation: OperationAnswer::CardDeleted { remaining_balance: remaining },
        batch,
    }))
}

// ------------------------------------------------------------------- reads ----

/// A read under the faults of its operation (`decline`, `error`, `timeout`, `delay`).
async fn read(
    state: &State,
    channel: &ChannelReg,
    op: FaultOperation,
    produce: impl FnOnce() -> Response,
) -> Response {
    let fault = state.faults.lock().take(&channel.channel_id, op);
    match fault.map(|f| f.behavior) {
        Some(FaultBehavior::Decline) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "declined", "declined by an injected fault")
        }
        Some(FaultBehavior::Error) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "simulated_error", "injected fault")
        }
        _ => {
            let response = produce();
            answer_late(state, fault.map(|f| (f.behavior, f.delay_ms))).await;
            response
        }
    }
}

fn details(state: &State, channel: &ChannelReg, card_id: &str) -> Response {
    let card = or_reply!(card_of(state, channel, card_id));
    let answer = DetailsAnswer {
        pan: state.card_key.pan(&card.bin, &card.id),
        cvv: state.card_key.cvv(&card.id),
        expiry_month: card.expiry_month,
        expiry_year: card.expiry_year,
        balance: card.balance(),
        status: card.status.as_str().to_owned(),
    };
    json(StatusCode::OK, &answer)
}

fn transactions(state: &State, channel: &ChannelReg, card_id: &str, after: Option<&str>) -> Response {
    or_reply!(card_of(state, channel, card_id));
    let prefix = pelago_actors::keys::scan_prefix(pelago_actors::keys::TXN, &[&card_id]);
    let after_key = after.map(|a| format!("{prefix}{a}"));
    match state.store.scan::<TxnRec>(
        prefix.as_bytes(),
        after_key.as_deref().map(str::as_bytes),
        false,
        MAX_TRANSACTIONS_PER_PAGE,
    ) {
        Ok(rows) => {
            json(StatusCode::OK, &TransactionsAnswer { data: rows.into_iter().map(|(_, t)| t.0).collect() })
        }
        Err(e) => internal(e),
    }
}

/// `GET /cards/{id}/transactions/{transaction_id}`: one transaction as recorded.
fn transaction(state: &State, channel: &ChannelReg, card_id: &str, txn_id: &str) -> Response {
    or_reply!(card_of(state, channel, card_id));
    match state.store.get::<TxnRec>(
        Sandbox::Transaction { card: card_id.to_string(), transaction: txn_id.to_string() }.text(),
    ) {
        Ok(Some(TxnRec(t))) => json(StatusCode::OK, &t),
        Ok(None) => error(StatusCode::NOT_FOUND, "transaction_not_found", "no such transaction"),
        Err(e) => internal(e),
    }
}

/// `GET /cardholders/{id}`: a cardholder of this channel as it is now.
fn cardholder(state: &State, channel: &ChannelReg, id: &str) -> Response {
    match state.store.get::<CardholderRec>(Sandbox::Cardholder { cardholder: id.to_string() }.text()) {
        Ok(Some(c)) if c.channel_id == channel.channel_id => json(
            StatusCode::OK,
            &CardholderStateAnswer {
                id: c.id,
                cardholder_id: c.cardholder_id,
                status: c.status,
                reason: c.reason,
            },
        ),
        Ok(_) => error(StatusCode::NOT_FOUND, "cardholder_not_found", "no such cardholder"),
        Err(e) => internal(e),
    }
}

fn balance(state: &State, channel: &ChannelReg) -> Response {
    let mut currencies = vec![Currency::USD, Currency::EUR];
    let prefix = pelago_actors::keys::scan_prefix(crate::keys::MASTER, &[&channel.channel_id]);
    match state.store.scan_keys(pelago_storage::Tree::Meta, prefix.as_bytes(), None, false, 200) {
        Ok(keys) => currencies.extend(keys.iter().filter_map(|k| match Sandbox::parse(k) {
            Some(Sandbox::Master { currency, .. }) => Currency::parse(&currency).ok(),
            _ => None,
        })),
        Err(e) => return internal(e),
    }
    currencies.sort();
    currencies.dedup();
    let mut balances = Vec::with_capacity(currencies.len());
    for currency in currencies {
        match master_balance(state, &channel.channel_id, currency) {
            Ok(m) => balances.push(m),
            Err(e) => return internal(e),
        }
    }
    json(StatusCode::OK, &MasterBalancesAnswer { balances })
}

fn operation(state: &State, channel: &ChannelReg, request_id: &str) -> Response {
    match state.store.get::<OpRecord>(
        Sandbox::ChannelOperation {
            channel: channel.channel_id.to_string(),
            request: request_id.to_string(),
        }
        .text(),
    ) {
        Ok(Some(stored)) => raw_json(200, stored.operation_json),
        Ok(None) => json(StatusCode::OK, &OperationAnswer::NotFound),
        Err(e) => internal(e),
    }
}

// ----------------------------------------------------------------- control ----

async fn register(state: &State, req: &Request) -> Response {
    let body: RegisterChannelBody = or_reply!(req.json());
    if body.channel_id.is_empty()
        || body.api_key.expose().is_empty()
        || !body.callback_url.starts_with("http")
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "channel_id, api_key and an http(s) callback_url are required",
        );
    }
    let _guard = state.write_lock.lock().await;
    let index_key = Sandbox::ChannelKey { digest: key_digest(body.api_key.expose()).to_string() }.text();
    let reg_key = Sandbox::Channel { channel: body.channel_id.to_string() }.text();
    let result: Result<Response, StoreError> = async {
        if let Some(owner) = state.store.get::<ApiKeyIndex>(&index_key)?
            && owner.owner_id != body.channel_id
        {
            return Ok(error(StatusCode::CONFLICT, "api_key_taken", "another channel uses this api_key"));
        }
        let mut batch = WriteBatch::new();
        if let Some(old) = state.store.get::<ChannelReg>(&reg_key)? {
            let old_key = state.open(&old.api_key, &ChannelReg::api_key_context(&old.channel_id));
            if old_key != body.api_key.expose() {
                batch.delete(
                    pelago_storage::Tree::Index,
                    Sandbox::ChannelKey { digest: key_digest(&old_key).to_string() }.text(),
                );
            }
        }
        let reg = ChannelReg {
            channel_id: body.channel_id.clone(),
            api_key: state.seal(body.api_key.expose(), &ChannelReg::api_key_context(&body.channel_id)),
            webhook_secret: state
                .seal(body.webhook_secret.expose(), &ChannelReg::webhook_secret_context(&body.channel_id)),
            callback_url: body.callback_url.clone(),
        };
        batch.put(&reg_key, &reg)?;
        batch.put(&index_key, &ApiKeyIndex { owner_id: body.channel_id.clone() })?;
        state.store.commit_durable(batch).await?;
        Ok(json(StatusCode::OK, &Acknowledged { ok: true }))
    }
    .await;
    result.unwrap_or_else(internal)
}

fn set_fault(state: &State, channel_id: &str, req: &Request) -> Response {
    let spec: FaultSpec = or_reply!(req.json());
    match state.faults.lock().set(channel_id, spec) {
        Ok(()) => json(StatusCode::OK, &Acknowledged { ok: true }),
        Err(reason) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_fault", &reason),
    }
}

/// Approves a `Pending` cardholder and calls back before answering.
async fn approve(state: &State, cardholder_id: &str) -> Response {
    let (record, channel, changed) = {
        let _guard = state.write_lock.lock().await;
        let loaded: Result<_, StoreError> = (|| {
            let Some(record) = state
                .store
                .get::<CardholderRec>(Sandbox::Cardholder { cardholder: cardholder_id.to_string() }.text())?
            else {
                return Ok(None);
            };
            let channel = state
                .store
                .get::<ChannelReg>(Sandbox::Channel { channel: record.channel_id.to_string() }.text())?;
            Ok(channel.map(|c| (record, c)))
        })();
        let (mut record, channel) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => return error(StatusCode::NOT_FOUND, "cardholder_not_found", "no such cardholder"),
            Err(e) => return internal(e),
        };
        let changed = record.status == CardholderStatusWire::Pending;
        if changed {
            record.status = CardholderStatusWire::Active;
            let mut batch = WriteBatch::new();
            if let Err(e) =
                batch.put(Sandbox::Cardholder { cardholder: cardholder_id.to_string() }.text(), &record)
            {
                return internal(e);
            }
            if let Err(e) = state.store.commit_durable(batch).await {
                return internal(e);
            }
        }
        (record, channel, changed)
    };
    if changed {
        let event = ChannelEventWire::CardholderUpdated {
            cardholder_id: record.cardholder_id.clone(),
            channel_cardholder_id: record.id.clone(),
            status: record.status,
            reason: record.reason.clone(),
        };
        send_callback(state, &channel, event).await;
    }
    json(StatusCode::OK, &CardholderAnswer { id: record.id, status: record.status, reason: record.reason })
}

/// Card spending from the test helper: declined beyond the card's balance (or on
/// a frozen or deleted card), recorded either way, called back before answering.
/// A `refund` or `reversal` credits the card; a `reversal` naming an
/// authorization (`related_transaction_id`) turns that authorization `reversed`.
async fn create_transaction(state: &State, channel_card_id: &str, req: &Request) -> Response {
    let body: CardTransactionBody = or_reply!(req.json());
    let result = {
        let _guard = state.write_lock.lock().await;
        apply_transaction(state, channel_card_id, &body).await
    };
    let (transaction, card, channel) = match result {
        Ok(Ok(done)) => done,
        Ok(Err(response)) => return response,
        Err(e) => return internal(e),
    };
    let event =
        ChannelEventWire::Transaction { card_id: card.card_id.clone(), transaction: transaction.clone() };
    send_callback(state, &channel, event).await;
    json(StatusCode::CREATED, &transaction)
}

/// A test transaction's effect (under the write lock), or the refusal to answer.
type TxnApplied = Result<Result<(TransactionWire, CardRec, ChannelReg), Response>, StoreError>;

async fn apply_transaction(state: &State, channel_card_id: &str, body: &CardTransactionBody) -> TxnApplied {
    let card_key = Sandbox::Card { card: channel_card_id.to_string() }.text();
    let Some(mut card) = state.store.get::<CardRec>(&card_key)? else {
        return Ok(Err(error(StatusCode::NOT_FOUND, "card_not_found", "no such card")));
    };
    let channel_key = Sandbox::Channel { channel: card.channel_id.to_string() }.text();
    let Some(channel) = state.store.get::<ChannelReg>(channel_key)? else {
        return Ok(Err(error(StatusCode::NOT_FOUND, "channel_not_found", "the card's channel is gone")));
    };
    if body.amount.value <= 0 || body.amount.currency != card.currency {
        return Ok(Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
            "amount must be positive, in the card's currency",
        )));
    }
    let kind = body.kind.unwrap_or(TxnTypeWire::Authorization);
    if let (TxnTypeWire::Reversal, Some(related)) = (kind, &body.related_transaction_id) {
        return reverse_authorization(state, card, channel, related, body.amount).await;
    }
    let (status, balance_minor) = or_reply!(test_outcome(&card, kind, body), Ok(Err));
    card.balance_minor = balance_minor;
    let seq = state.store.get::<Counter>("seq")?.map_or(0, |c| c.value) + 1;
    let transaction = TransactionWire {
        id: format!("ctx_{seq:012}"),
        card_id: card.id.clone(),
        kind,
        status,
        amount: body.amount,
        merchant_name: body.merchant_name.chars().take(100).collect(),
        mcc: body.mcc.chars().take(4).collect(),
        occurred_at: Timestamp::now_real(),
        balance_after: card.balance(),
        related_transaction_id: body.related_transaction_id.clone(),
    };
    let txn_key =
        Sandbox::Transaction { card: channel_card_id.to_string(), transaction: transaction.id.clone() };
    let mut batch = WriteBatch::new();
    batch.put("seq", &Counter { value: seq })?;
    batch.put(card_key, &card)?;
    batch.put(txn_key.text(), &TxnRec(transaction.clone()))?;
    state.store.commit_durable(batch).await?;
    Ok(Ok((transaction, card, channel)))
}

/// A reversal naming an authorization: the authorization itself turns
/// `reversed` and its amount returns to the card.
async fn reverse_authorization(
    state: &State,
    mut card: CardRec,
    channel: ChannelReg,
    related: &str,
    amount: Money,
) -> TxnApplied {
    let key = Sandbox::Transaction { card: card.id.to_string(), transaction: related.to_string() }.text();
    let Some(TxnRec(mut auth)) = state.store.get::<TxnRec>(&key)? else {
        return Ok(Err(error(StatusCode::NOT_FOUND, "transaction_not_found", "no such transaction")));
    };
    let reversible = auth.kind == TxnTypeWire::Authorization
        && matches!(auth.status, TxnStatusWire::Pending | TxnStatusWire::Posted)
        && auth.amount == amount;
    if !reversible {
        return Ok(Err(error(
            StatusCode::CONFLICT,
            "not_reversible",
            "only a pending or posted authorization of that amount can be reversed",
        )));
    }
    card.balance_minor = card.balance_minor.saturating_add(auth.amount.value);
    auth.status = TxnStatusWire::Reversed;
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Card { card: card.id.to_string() }.text(), &card)?;
    batch.put(&key, &TxnRec(auth.clone()))?;
    state.store.commit_durable(batch).await?;
    Ok(Ok((auth, card, channel)))
}

/// The status of a test transaction and the card's balance after it: spending
/// beyond the balance or on a card not active is declined; credits to a
/// deleted card are declined.
fn test_outcome(
    card: &CardRec,
    kind: TxnTypeWire,
    body: &CardTransactionBody,
) -> Result<(TxnStatusWire, i64), Response> {
    let posted_or_pending = match body.status {
        TestTxnStatus::Posted => TxnStatusWire::Posted,
        TestTxnStatus::Pending => TxnStatusWire::Pending,
    };
    Ok(match kind {
        TxnTypeWire::Authorization => {
            if card.status == CardStatus::Active && body.amount.value <= card.balance_minor {
                (posted_or_pending, card.balance_minor - body.amount.value)
            } else {
                (TxnStatusWire::Declined, card.balance_minor)
            }
        }
        TxnTypeWire::Refund | TxnTypeWire::Reversal if card.status != CardStatus::Deleted => {
            (posted_or_pending, card.balance_minor.saturating_add(body.amount.value))
        }
        TxnTypeWire::Refund | TxnTypeWire::Reversal => (TxnStatusWire::Declined, card.balance_minor),
        TxnTypeWire::Clearing => {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_type",
                "type is authorization, refund or reversal",
            ));
        }
    })
}

/// Signs and delivers one channel callback (three times under a `duplicate` fault).
async fn send_callback(state: &State, channel: &ChannelReg, event: ChannelEventWire) -> bool {
    let event_id = new_id("evt");
    let body = to_json(&ChannelCallbackWire { event_id: event_id.clone(), event });
    let fault = state.faults.lock().take(&channel.channel_id, FaultOperation::Callbacks);
    let copies = match fault {
        Some(f) if f.behavior == FaultBehavior::Duplicate => 3,
        Some(f) if f.behavior == FaultBehavior::Delay => {
            tokio::time::sleep(Duration::from_millis(f.delay_ms)).await;
            1
        }
        _ => 1,
    };
    let callback = super::notify::Callback {
        url: channel.callback_url.clone(),
        signature_header: CHANNEL_SIGNATURE_HEADER,
        key: state.open(&channel.webhook_secret, &ChannelReg::webhook_secret_context(&channel.channel_id)),
        body,
        event_id,
    };
    let delivered = state.notifier.deliver(&callback, copies).await;
    if !delivered {
        tracing::warn!(channel_id = %channel.channel_id, event_id = %callback.event_id, "channel callback undelivered");
    }
    delivered
}
