//! Channels and BINs (API.md §3), operator token required. Credentials are
//! sealed at rest and never returned. Writes are compare-and-set on the
//! record, so concurrent edits cannot lose one another.

use std::sync::Arc;

use http::Method;
use pelago_actors::{
    ports::Outcome,
    routing::{BinRecord, BinStatus, ChannelRecord, ChannelStatus, is_bin},
};
use pelago_storage::{ChannelId, Currency, Timestamp, Tree, WriteBatch, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire,
};
use crate::{flows, http::state::App};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/admin/v1/channels", create_channel)
            .answers(201)
            .accepts::<CreateChannel>(),
        Route::new(Method::GET, "/admin/v1/channels", list_channels),
        Route::new(Method::GET, "/admin/v1/channels/{id}", get_channel),
        Route::new(Method::PATCH, "/admin/v1/channels/{id}", patch_channel).accepts::<PatchChannel>(),
        Route::new(Method::GET, "/admin/v1/channels/{id}/balance", channel_balance),
        Route::new(Method::POST, "/admin/v1/bins", create_bin).answers(201).accepts::<CreateBin>(),
        Route::new(Method::GET, "/admin/v1/bins", list_bins),
        Route::new(Method::PATCH, "/admin/v1/bins/{bin}", patch_bin).accepts::<PatchBin>(),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateChannel {
    name: String,
    /// `sandbox` or `http`.
    kind: String,
    base_url: String,
    api_key: String,
    webhook_secret: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchChannel {
    status: Option<String>,
    base_url: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBin {
    bin: String,
    channel_id: String,
    card_name: String,
    currency: String,
    status: String,
    priority: Option<i32>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchBin {
    status: Option<String>,
    priority: Option<i32>,
}

pub fn channel_json(c: &ChannelRecord) -> Value {
    json!({
        "id": c.id, "object": "channel", "name": c.name, "kind": c.kind, "base_url": c.base_url,
        "status": c.status.as_str(), "version": c.version, "created_at": c.created_at.to_rfc3339(),
    })
}

pub fn bin_json(b: &BinRecord) -> Value {
    json!({
        "bin": b.bin, "object": "bin", "channel_id": b.channel_id, "card_name": b.card_name,
        "currency": b.currency.code(), "status": b.status.as_str(), "priority": b.priority,
        "version": b.version, "created_at": b.created_at.to_rfc3339(),
    })
}

fn validate_base_url(raw: &str) -> Result<String, ApiError> {
    let url = url::Url::parse(raw).map_err(|_| ApiError::invalid("base_url", "base_url is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::invalid("base_url", "base_url must be an http(s) URL"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

fn credential(raw: &str, param: &str) -> Result<(), ApiError> {
    if raw.len() < 8 || raw.len() > 256 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(param, format!("{param} must be 8 to 256 printable characters")));
    }
    Ok(())
}

fn channel_status(raw: &str) -> Result<ChannelStatus, ApiError> {
    match raw {
        "active" => Ok(ChannelStatus::Active),
        "disabled" => Ok(ChannelStatus::Disabled),
        _ => Err(ApiError::invalid("status", "status must be active or disabled")),
    }
}

fn bin_status(raw: &str) -> Result<BinStatus, ApiError> {
    match raw {
        "active" => Ok(BinStatus::Active),
        "inactive" => Ok(BinStatus::Inactive),
        _ => Err(ApiError::invalid("status", "status must be active or inactive")),
    }
}

/// POST /admin/v1/channels
async fn create_channel(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: CreateChannel = ctx.json()?;
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "name must be 1 to 200 characters"));
    }
    if !matches!(req.kind.as_str(), "sandbox" | "http") {
        return Err(ApiError::invalid("kind", "kind must be sandbox or http"));
    }
    if req.kind == "sandbox" && !app.sandbox() {
        return Err(ApiError::invalid("kind", "sandbox channels exist only when sandbox mode is on"));
    }
    if req.kind == "http" && app.sandbox() {
        return Err(ApiError::invalid(
            "kind",
            "http channels cannot be created in sandbox mode (sandbox and live data never mix)",
        ));
    }
    let base_url = validate_base_url(&req.base_url)?;
    credential(&req.api_key, "api_key")?;
    credential(&req.webhook_secret, "webhook_secret")?;
    let record =
        flows::channels::register_channel(&app, name, &req.kind, base_url, &req.api_key, &req.webhook_secret)
            .await?;
    Ok(ApiReply::json(201, &channel_json(&record)))
}

/// GET /admin/v1/channels
async fn list_channels(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let page = pagination::parse(&ctx.query, &[])?;
    let after = page.starting_after.as_deref().map(str::as_bytes);
    let found = app.store.scan::<ChannelRecord>(b"chl_", after, true, page.limit + 1)?;
    Ok(ApiReply::json(
        200,
        &pagination::body(found.iter().map(|(_, c)| channel_json(c)).collect(), page.limit),
    ))
}

fn load_channel(app: &App, raw: &str) -> Result<(ChannelRecord, Vec<u8>), ApiError> {
    let id = ChannelId::parse(raw).map_err(|_| ApiError::not_found("channel"))?;
    app.store.get_with_bytes::<ChannelRecord>(id.as_bytes())?.ok_or_else(|| ApiError::not_found("channel"))
}

/// GET /admin/v1/channels/{id}
async fn get_channel(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let (c, _) = load_channel(&app, ctx.param(0))?;
    Ok(ApiReply::json(200, &channel_json(&c)))
}

/// PATCH /admin/v1/channels/{id}
async fn patch_channel(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: PatchChannel = ctx.json()?;
    let (mut c, bytes) = load_channel(&app, ctx.param(0))?;
    if let Some(s) = &req.status {
        c.status = channel_status(s)?;
        if c.kind == "http" && c.status == ChannelStatus::Active && app.sandbox() {
            return Err(ApiError::invalid_state(
                "an http channel cannot be active in sandbox mode (sandbox and live data never mix)",
            ));
        }
    }
    if let Some(u) = &req.base_url {
        c.base_url = validate_base_url(u)?;
    }
    c.version += 1;
    let mut batch = WriteBatch::new();
    batch.expect_raw(Tree::Channels, c.id.as_bytes(), Some(bytes));
    batch.put_raw(Tree::Channels, c.id.as_bytes(), encode(&c)?);
    app.store.commit_durable(batch).await.map_err(conflict)?;
    app.upstreams.install(&app.sealer, &c).map_err(|_| ApiError::internal())?;
    Ok(ApiReply::json(200, &channel_json(&c)))
}

fn conflict(e: pelago_storage::StoreError) -> ApiError {
    match e {
        pelago_storage::StoreError::Conflict { .. } => {
            ApiError::invalid_state("changed concurrently; read it again and retry")
        }
        other => other.into(),
    }
}

/// GET /admin/v1/channels/{id}/balance — live from the channel.
async fn channel_balance(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let (c, _) = load_channel(&app, ctx.param(0))?;
    let adapter =
        app.upstreams.channel(&c.id).ok_or_else(|| ApiError::upstream("channel adapter unavailable"))?;
    match adapter.master_balance().await {
        Outcome::Done(balances) => Ok(ApiReply::json(
            200,
            &json!({
                "channel_id": c.id,
                "balances": balances.into_iter().map(wire::money).collect::<Vec<_>>(),
                "as_of": Timestamp::now_real().to_rfc3339(),
            }),
        )),
        Outcome::Declined { reason } => Err(ApiError::upstream(format!("the channel refused: {reason}"))),
        Outcome::Unknown { detail } => {
            Err(ApiError::upstream(format!("the channel did not answer: {detail}")))
        }
    }
}

/// POST /admin/v1/bins
async fn create_bin(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: CreateBin = ctx.json()?;
    if !is_bin(&req.bin) {
        return Err(ApiError::invalid("bin", "bin must be exactly 6 digits"));
    }
    let channel = ChannelId::parse(&req.channel_id)
        .ok()
        .filter(|id| app.store.contains(Tree::Channels, id.as_bytes()).unwrap_or(false))
        .ok_or_else(|| ApiError::invalid("channel_id", "no such channel"))?;
    let card_name_ok = !req.card_name.is_empty()
        && req.card_name.len() <= 64
        && req.card_name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !card_name_ok {
        return Err(ApiError::invalid("card_name", "a card name is 1 to 64 of A-Z, 0-9 and _"));
    }
    let currency =
        Currency::parse(&req.currency).map_err(|_| ApiError::invalid("currency", "unknown currency"))?;
    let record = BinRecord {
        bin: req.bin.clone(),
        channel_id: channel,
        card_name: req.card_name,
        currency,
        status: bin_status(&req.status)?,
        priority: req.priority.unwrap_or(0),
        created_at: app.clock.now(),
        version: 1,
    };
    flows::channels::create_bin_record(&app, &record).await?;
    Ok(ApiReply::json(201, &bin_json(&record)))
}

/// GET /admin/v1/bins
async fn list_bins(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let page = pagination::parse(&ctx.query, &["card_name"])?;
    let after = page.starting_after.as_deref().map(str::as_bytes);
    let filter = page.filters.get("card_name").cloned();
    let found = app.store.scan::<BinRecord>(b"", after, false, usize::MAX)?;
    let items: Vec<Value> = found
        .iter()
        .filter(|(_, b)| filter.as_ref().is_none_or(|f| &b.card_name == f))
        .take(page.limit + 1)
        .map(|(_, b)| bin_json(b))
        .collect();
    Ok(ApiReply::json(200, &pagination::body(items, page.limit)))
}

/// PATCH /admin/v1/bins/{bin}
async fn patch_bin(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: PatchBin = ctx.json()?;
    let raw = ctx.param(0);
    if !is_bin(raw) {
        return Err(ApiError::not_found("BIN"));
    }
    let (mut b, bytes) =
        app.store.get_with_bytes::<BinRecord>(raw.as_bytes())?.ok_or_else(|| ApiError::not_found("BIN"))?;
    if let Some(s) = &req.status {
        b.status = bin_status(s)?;
    }
    if let Some(p) = req.priority {
        b.priority = p;
    }
    b.version += 1;
    let mut batch = WriteBatch::new();
    batch.expect_raw(Tree::Bins, raw.as_bytes(), Some(bytes));
    batch.put_raw(Tree::Bins, raw.as_bytes(), encode(&b)?);
    app.store.commit_durable(batch).await.map_err(conflict)?;
    Ok(ApiReply::json(200, &bin_json(&b)))
}
