//! Merchant administration (API.md §3 Merchants), operator token required.
//! The merchant actor owns the record; this file validates, seals secrets,
//! and renders the wire JSON. Secrets appear only in the create and rotate
//! responses.

use std::sync::Arc;

use http::Method;
use pelago_actors::merchant::{
    ApiKeyRecord, ConfigChange, FeeSchedule, FundingMode, GatewayAccountRecord, MerchantCommand,
    MerchantRecord, MerchantStatus, Sealed, WebhookSecret, WithdrawalAddress,
};
use pelago_storage::{ApiKeyId, Currency, MerchantId, Timestamp, Tree};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    http::state::App,
    security::{self, egress::EgressPolicy},
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/admin/v1/merchants", create).answers(201).accepts::<CreateMerchant>(),
        Route::new(Method::GET, "/admin/v1/merchants", list),
        Route::new(Method::GET, "/admin/v1/merchants/{id}", get),
        Route::new(Method::PATCH, "/admin/v1/merchants/{id}", patch).accepts::<PatchMerchant>(),
        Route::new(Method::POST, "/admin/v1/merchants/{id}/api-keys", issue_key).answers(201),
        Route::new(Method::DELETE, "/admin/v1/merchants/{id}/api-keys/{key_id}", revoke_key).answers(204),
        Route::new(Method::POST, "/admin/v1/merchants/{id}/webhook-secret", rotate_webhook_secret)
            .answers(201),
        Route::new(Method::PUT, "/admin/v1/merchants/{id}/fees", put_fees).accepts::<FeeScheduleIn>(),
        Route::new(Method::PUT, "/admin/v1/merchants/{id}/withdrawal-addresses", put_withdrawal_addresses)
            .accepts::<WithdrawalAddressesIn>(),
    ]
}

// ----------------------------------------------------------------- wire ----

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateMerchant {
    name: String,
    funding_mode: String,
    webhook_url: Option<String>,
    allowed_card_names: Vec<String>,
    gateway: Option<GatewayIn>,
    fees: Option<Vec<FeeScheduleIn>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GatewayIn {
    merchant_id: String,
    api_key: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeScheduleIn {
    currency: String,
    application_fee: Option<FixedIn>,
    topup_fee: Option<RateIn>,
    monthly_fee: Option<FixedIn>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FixedIn {
    fixed: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RateIn {
    fixed: Option<i64>,
    rate_bps: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchMerchant {
    status: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    webhook_url: Option<Option<String>>,
    allowed_card_names: Option<Vec<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawalAddressesIn {
    addresses: Vec<WithdrawalAddressIn>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawalAddressIn {
    address: String,
    network: String,
    label: Option<String>,
}

pub fn fee_schedule_json(f: &FeeSchedule) -> Value {
    json!({
        "currency": f.currency.code(),
        "application_fee": {"fixed": f.application_fixed},
        "topup_fee": {"fixed": f.topup_fixed, "rate_bps": f.topup_rate_bps},
        "monthly_fee": {"fixed": f.monthly_fixed},
    })
}

pub fn merchant_json(m: &MerchantRecord) -> Value {
    json!({
        "id": m.id,
        "object": "merchant",
        "name": m.name,
        "status": m.status.as_str(),
        "funding_mode": m.funding_mode.as_str(),
        "webhook_url": m.webhook_url,
        "allowed_card_names": m.allowed_card_names,
        "gateway": m.gateway.as_ref().map(|g| json!({"merchant_id": g.merchant_id})),
        "fees": m.fees.iter().map(fee_schedule_json).collect::<Vec<_>>(),
        "withdrawal_addresses": m.withdrawal_addresses.iter().map(|a| json!({
            "address": a.address, "network": a.network, "label": a.label,
        })).collect::<Vec<_>>(),
        "version": m.version,
        "created_at": m.created_at.to_rfc3339(),
    })
}

// ----------------------------------------------------------- validation ----

const MAX_FIXED_FEE: i64 = 10_000_000_000_000;

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "name must be 1 to 200 printable characters"));
    }
    Ok(name.to_owned())
}

fn validate_card_names(names: Vec<String>) -> Result<Vec<String>, ApiError> {
    if names.len() > 50 {
        return Err(ApiError::invalid("allowed_card_names", "at most 50 card names"));
    }
    for (i, n) in names.iter().enumerate() {
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(ApiError::invalid(
                format!("allowed_card_names.{i}"),
                "a card name is 1 to 64 of A-Z, 0-9 and _",
            ));
        }
    }
    let mut names = names;
    names.sort();
    names.dedup();
    Ok(names)
}

/// `https`, and not resolving to a loopback, private or link-local address,
/// except in sandbox mode (API.md §3).
async fn validate_webhook_url(app: &App, raw: &str) -> Result<String, ApiError> {
    let bad = |m: &str| ApiError::invalid("webhook_url", m);
    if raw.len() > 2048 {
        return Err(bad("webhook_url is too long"));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("webhook_url is not a URL"))?;
    let host = url.host_str().ok_or_else(|| bad("webhook_url has no host"))?.to_owned();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("webhook_url must not carry credentials"));
    }
    if app.sandbox() {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("webhook_url must be http or https"));
        }
        return Ok(url.to_string());
    }
    if url.scheme() != "https" {
        return Err(bad("webhook_url must be https"));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::lookup_host((host.trim_matches(['[', ']']), port)),
    )
    .await
    .map_err(|_| bad("webhook_url host did not resolve in time"))?
    .map_err(|_| bad("webhook_url host does not resolve"))?;
    let mut any = false;
    for addr in lookup {
        any = true;
        if EgressPolicy::for_mode(false).refuses(addr.ip()) {
            return Err(bad("webhook_url must not resolve to a loopback, private or link-local address"));
        }
    }
    if !any {
        return Err(bad("webhook_url host does not resolve"));
    }
    Ok(url.to_string())
}

pub fn validate_fee_schedule(f: FeeScheduleIn, param: &str) -> Result<FeeSchedule, ApiError> {
    let currency = Currency::parse(&f.currency).map_err(|_| {
        ApiError::invalid(format!("{param}currency"), "unknown currency (ISO 4217, upper case)")
    })?;
    let fixed = |v: Option<i64>, field: &str| -> Result<i64, ApiError> {
        let v = v.unwrap_or(0);
        if !(0..=MAX_FIXED_FEE).contains(&v) {
            return Err(ApiError::invalid(format!("{param}{field}"), "fixed must be 0 to 10^13"));
        }
        Ok(v)
    };
    let (topup_fixed, rate) = match f.topup_fee {
        Some(t) => (t.fixed, t.rate_bps),
        None => (None, None),
    };
    let rate_bps = rate.unwrap_or(0);
    if !(0..=10_000).contains(&rate_bps) {
        return Err(ApiError::invalid(format!("{param}topup_fee.rate_bps"), "rate_bps must be 0 to 10000"));
    }
    Ok(FeeSchedule {
        currency,
        application_fixed: fixed(f.application_fee.and_then(|x| x.fixed), "application_fee.fixed")?,
        topup_fixed: fixed(topup_fixed, "topup_fee.fixed")?,
        topup_rate_bps: rate_bps,
        monthly_fixed: fixed(f.monthly_fee.and_then(|x| x.fixed), "monthly_fee.fixed")?,
    })
}

fn new_api_key(app: &App, merchant_id: &MerchantId, now: Timestamp) -> (ApiKeyRecord, String) {
    let key_id = ApiKeyId::generate();
    let secret = format!("sk_{}", security::random_token::<32>());
    let sealed = Sealed(app.sealer.seal(secret.as_bytes(), key_id.as_str()));
    (
        ApiKeyRecord {
            key_id,
            merchant_id: merchant_id.clone(),
            secret: sealed,
            created_at: now,
            revoked_at: None,
        },
        secret,
    )
}

/// `whsec_` + base64 of 32 random bytes (the Standard Webhooks form).
fn new_webhook_secret(app: &App, merchant_id: &MerchantId) -> (Sealed, String) {
    use base64::Engine;
    let secret =
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(security::random_bytes::<32>()));
    (
        Sealed(app.sealer.seal(
            secret.as_bytes(),
            &crate::keys::Context::WebhookSecret { merchant: merchant_id.clone() }.text(),
        )),
        secret,
    )
}

fn merchant_id(ctx: &Ctx) -> Result<MerchantId, ApiError> {
    MerchantId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("merchant"))
}

async fn existing(app: &App, id: &MerchantId) -> Result<(), ApiError> {
    if app.store.contains(Tree::Merchants, id.as_bytes())? {
        Ok(())
    } else {
        Err(ApiError::not_found("merchant"))
    }
}

async fn change(app: &App, id: &MerchantId, change: ConfigChange) -> Result<MerchantRecord, ApiError> {
    existing(app, id).await?;
    Ok(app.actors.ask_merchant(id, MerchantCommand::Change { change, binding: None }).await??)
}

/// For answers that reveal a secret: the Idempotency-Key's binding and the
/// sealed answer, to be written in the same commit as the effect. A retry
/// after a crash finds it and gets the same answer, not a second effect.
fn sealed_binding(app: &App, ctx: &Ctx, answer: &Value) -> Option<(String, Vec<u8>)> {
    let key = ctx.binding()?;
    let sealed = app.sealer.seal(answer.to_string().as_bytes(), &key);
    Some((key, sealed))
}

/// The answer an earlier attempt with this Idempotency-Key bound, if any.
fn bound_answer(app: &App, ctx: &Ctx) -> Result<Option<ApiReply>, ApiError> {
    let Some(key) = ctx.binding() else {
        return Ok(None);
    };
    let Some(sealed) = app.store.get_raw(Tree::Index, &key)? else { return Ok(None) };
    let body = app.sealer.open(&sealed, &key).map_err(|_| ApiError::internal())?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| ApiError::internal())?;
    Ok(Some(ApiReply::json(201, &value).with_header("cache-control", "no-store")))
}

// ------------------------------------------------------------- handlers ----

/// The create response: the merchant and its first secrets, opened from their
/// sealed copies (also used to answer a retry whose first answer was lost).
fn created_reply(app: &App, merchant: &MerchantRecord, key: &ApiKeyRecord) -> HandlerResult {
    let api_secret =
        app.sealer.open_string(&key.secret.0, key.key_id.as_str()).map_err(|_| ApiError::internal())?;
    let first_whsec = merchant.webhook_secrets.first().ok_or_else(ApiError::internal)?;
    let webhook_secret = app
        .sealer
        .open_string(
            &first_whsec.secret.0,
            &crate::keys::Context::WebhookSecret { merchant: merchant.id.clone() }.text(),
        )
        .map_err(|_| ApiError::internal())?;
    Ok(ApiReply::json(
        201,
        &json!({
            "merchant": merchant_json(merchant),
            "api_key": {"key_id": key.key_id, "secret": api_secret},
            "webhook_secret": webhook_secret,
        }),
    )
    .with_header("cache-control", "no-store"))
}

/// POST /admin/v1/merchants
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let binding = ctx.binding();
    if let Some(binding) = &binding
        && let Some(bound) = app.store.get_raw(Tree::Index, binding)?
    {
        // Created by an earlier attempt whose answer was lost: answer the same.
        let bound = String::from_utf8_lossy(&bound).into_owned();
        let (mid, kid) = bound.split_once(' ').ok_or_else(ApiError::internal)?;
        let merchant = app.store.get::<MerchantRecord>(mid.as_bytes())?.ok_or_else(ApiError::internal)?;
        let key = app.store.get::<ApiKeyRecord>(kid.as_bytes())?.ok_or_else(ApiError::internal)?;
        // The earlier attempt may have failed after the save: finish what it began.
        register_with_sandbox(&app, &merchant).await?;
        return created_reply(&app, &merchant, &key);
    }
    let req: CreateMerchant = ctx.json()?;
    let name = validate_name(&req.name)?;
    let funding_mode = match req.funding_mode.as_str() {
        "gateway" => FundingMode::Gateway,
        "master_account" => FundingMode::MasterAccount,
        _ => {
            return Err(ApiError::invalid("funding_mode", "funding_mode must be gateway or master_account"));
        }
    };
    let webhook_url = match &req.webhook_url {
        Some(u) => Some(validate_webhook_url(&app, u).await?),
        None => None,
    };
    let allowed_card_names = validate_card_names(req.allowed_card_names)?;
    let id = MerchantId::generate();
    let gateway = validate_gateway(&app, &id, req.gateway, funding_mode)?;
    let fees = validate_fees(req.fees.unwrap_or_default())?;
    let now = app.clock.now();
    let (first_key, api_secret) = new_api_key(&app, &id, now);
    let (sealed_whsec, webhook_secret) = new_webhook_secret(&app, &id);
    let record = MerchantRecord {
        id: id.clone(),
        name,
        status: MerchantStatus::Active,
        funding_mode,
        webhook_url,
        allowed_card_names,
        gateway,
        fees,
        withdrawal_addresses: Vec::new(),
        webhook_secrets: vec![WebhookSecret { secret: sealed_whsec, created_at: now, retires_at: None }],
        balances: Vec::new(),
        created_at: now,
        version: 1,
    };
    drop((api_secret, webhook_secret)); // re-opened from the sealed copies below
    let key = first_key.clone();
    let command = MerchantCommand::Create { record: Box::new(record), first_key, binding };
    let merchant = app.actors.ask_merchant(&id, command).await??;
    register_with_sandbox(&app, &merchant).await?;
    tracing::info!(merchant_id = %merchant.id, "merchant created");
    created_reply(&app, &merchant, &key)
}

/// The merchant's own gateway account, its API key sealed to the merchant;
/// required in gateway mode.
fn validate_gateway(
    app: &App,
    id: &MerchantId,
    gateway: Option<GatewayIn>,
    funding_mode: FundingMode,
) -> Result<Option<GatewayAccountRecord>, ApiError> {
    let Some(g) = gateway else {
        if funding_mode == FundingMode::Gateway {
            return Err(ApiError::invalid("gateway", "gateway is required when funding_mode is gateway"));
        }
        return Ok(None);
    };
    let ok = |s: &str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    if !ok(&g.merchant_id) {
        return Err(ApiError::invalid("gateway.merchant_id", "1 to 128 printable characters"));
    }
    if !ok(&g.api_key) {
        return Err(ApiError::invalid("gateway.api_key", "1 to 128 printable characters"));
    }
    let context = crate::keys::Context::Gateway { merchant: id.to_string() }.text();
    let sealed = Sealed(app.sealer.seal(g.api_key.as_bytes(), &context));
    Ok(Some(GatewayAccountRecord { merchant_id: g.merchant_id, api_key: sealed }))
}

/// The fee schedules, at most one per currency.
fn validate_fees(raw: Vec<FeeScheduleIn>) -> Result<Vec<FeeSchedule>, ApiError> {
    let mut fees = Vec::new();
    for (i, f) in raw.into_iter().enumerate() {
        let schedule = validate_fee_schedule(f, &format!("fees.{i}."))?;
        if fees.iter().any(|x: &FeeSchedule| x.currency == schedule.currency) {
            return Err(ApiError::invalid(format!("fees.{i}.currency"), "one fee schedule per currency"));
        }
        fees.push(schedule);
    }
    Ok(fees)
}

/// In sandbox mode, registers the merchant's gateway account (or the platform's)
/// with the simulated gateway; idempotent. If it fails after the merchant was
/// saved, the 5xx is not stored, so a retry with the same Idempotency-Key
/// finds the bound merchant and finishes here, never creating a second one.
async fn register_with_sandbox(app: &App, merchant: &MerchantRecord) -> Result<(), ApiError> {
    if !app.sandbox() {
        return Ok(());
    }
    if crate::failpoint::fails_once("merchant.sandbox_registration") {
        return Err(ApiError::upstream("the sandbox gateway registration failed (failpoint)"));
    }
    let account = crate::flows::bootstrap::funding_account(app, merchant).await?;
    crate::flows::bootstrap::register_sandbox_account(app, &account).await?;
    Ok(())
}

/// GET /admin/v1/merchants
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let page = pagination::parse(&ctx.query, &[])?;
    let after = page.starting_after.as_deref().map(str::as_bytes);
    let found = app.store.scan::<MerchantRecord>(b"mch_", after, true, page.limit + 1)?;
    let items: Vec<Value> = found.iter().map(|(_, m)| merchant_json(m)).collect();
    Ok(ApiReply::json(200, &pagination::body(items, page.limit)))
}

/// GET /admin/v1/merchants/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = merchant_id(&ctx)?;
    let m = app.store.get::<MerchantRecord>(id.as_bytes())?.ok_or_else(|| ApiError::not_found("merchant"))?;
    Ok(ApiReply::json(200, &merchant_json(&m)))
}

/// PATCH /admin/v1/merchants/{id}
async fn patch(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = merchant_id(&ctx)?;
    let req: PatchMerchant = ctx.json()?;
    let status = match req.status.as_deref() {
        None => None,
        Some("active") => Some(MerchantStatus::Active),
        Some("suspended") => Some(MerchantStatus::Suspended),
        Some(_) => return Err(ApiError::invalid("status", "status must be active or suspended")),
    };
    let webhook_url = match req.webhook_url {
        Some(Some(u)) => Some(Some(validate_webhook_url(&app, &u).await?)),
        other => other,
    };
    let allowed_card_names = req.allowed_card_names.map(validate_card_names).transpose()?;
    let m = change(&app, &id, ConfigChange::Patch { status, webhook_url, allowed_card_names }).await?;
    Ok(ApiReply::json(200, &merchant_json(&m)))
}

/// POST /admin/v1/merchants/{id}/api-keys — a new key; old keys keep working.
async fn issue_key(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = merchant_id(&ctx)?;
    existing(&app, &id).await?;
    if let Some(answer) = bound_answer(&app, &ctx)? {
        return Ok(answer);
    }
    let (key, secret) = new_api_key(&app, &id, app.clock.now());
    let answer = json!({"key_id": key.key_id, "secret": secret});
    let binding = sealed_binding(&app, &ctx, &answer);
    app.actors.ask_merchant(&id, MerchantCommand::IssueKey { key, binding }).await??;
    Ok(ApiReply::json(201, &answer).with_header("cache-control", "no-store"))
}

/// DELETE /admin/v1/merchants/{id}/api-keys/{key_id} — revoked at once.
async fn revoke_key(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = merchant_id(&ctx)?;
    let key_id = ApiKeyId::parse(ctx.param(1)).map_err(|_| ApiError::not_found("API key"))?;
    existing(&app, &id).await?;
    app.actors.ask_merchant(&id, MerchantCommand::RevokeKey(key_id)).await??;
    Ok(ApiReply::no_content())
}

/// POST /admin/v1/merchants/{id}/webhook-secret — rotation; the old secret
/// keeps signing beside the new one for 24 h.
async fn rotate_webhook_secret(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = merchant_id(&ctx)?;
    existing(&app, &id).await?;
    if let Some(answer) = bound_answer(&app, &ctx)? {
        return Ok(answer);
    }
    let (sealed, secret) = new_webhook_secret(&app, &id);
    let now = app.clock.now();
    let old_retire_at = now.plus_ms(24 * 3600 * 1000);
    let answer = json!({"webhook_secret": secret});
    let binding = sealed_binding(&app, &ctx, &answer);
    let change = ConfigChange::RotateWebhookSecret { secret: sealed, old_retire_at };
    app.actors.ask_merchant(&id, MerchantCommand::Change { change, binding }).await??;
    Ok(ApiReply::json(201, &answer).with_header("cache-control", "no-store"))
}

/// PUT /admin/v1/merchants/{id}/fees — replaces the schedule of its currency.
async fn put_fees(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = merchant_id(&ctx)?;
    let schedule = validate_fee_schedule(ctx.json()?, "")?;
    let m = change(&app, &id, ConfigChange::PutFees(schedule)).await?;
    Ok(ApiReply::json(200, &merchant_json(&m)))
}

/// PUT /admin/v1/merchants/{id}/withdrawal-addresses — at most 3.
async fn put_withdrawal_addresses(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = merchant_id(&ctx)?;
    let req: WithdrawalAddressesIn = ctx.json()?;
    if req.addresses.len() > pelago_actors::merchant::MAX_WITHDRAWAL_ADDRESSES {
        return Err(ApiError::invalid("addresses", "at most 3 withdrawal addresses"));
    }
    let mut addresses = Vec::new();
    for (i, a) in req.addresses.into_iter().enumerate() {
        let ok = !a.address.is_empty()
            && a.address.len() <= 128
            && a.address.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(ApiError::invalid(format!("addresses.{i}.address"), "1 to 128 letters and digits"));
        }
        let net_ok = !a.network.is_empty()
            && a.network.len() <= 32
            && a.network.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !net_ok {
            return Err(ApiError::invalid(format!("addresses.{i}.network"), "1 to 32 letters, digits or _"));
        }
        if a.label.as_ref().is_some_and(|l| l.chars().count() > 100) {
            return Err(ApiError::invalid(format!("addresses.{i}.label"), "at most 100 characters"));
        }
        addresses.push(WithdrawalAddress { address: a.address, network: a.network, label: a.label });
    }
    let m = change(&app, &id, ConfigChange::PutWithdrawalAddresses(addresses)).await?;
    Ok(ApiReply::json(200, &merchant_json(&m)))
}
