//! Onboardings and compliance (MARKETPLACE.md §4, §11): under the recipient
//! that owns them now (else 404). Actions whose gateway outcome is unknown
//! answer 202 with `pending_action`.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::Method;
use pelago_actors::recipient::{
    Onboarding, OnboardingStatus, OnboardingType,
    onboarding::{Document, DocumentType, MAX_DOCUMENTS, SUPPLEMENTS_MAX},
    onboardings::Action,
};
use pelago_storage::FileId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    flows::marketplace::onboardings::{self, Answer, OnboardingAt},
    http::state::App,
    upstream::{gateway_marketplace::sandbox_control, marketplace_wire},
};

const BASE: &str = "/v1/recipients/{id}/onboardings";

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, BASE, create).creates::<CreateIn>(),
        Route::new(Method::GET, BASE, list),
        Route::new(Method::GET, "/v1/recipients/{id}/onboardings/{oid}", get),
        Route::new(Method::POST, "/v1/recipients/{id}/onboardings/{oid}/continue", continue_)
            .also_answers(&[202])
            .accepts::<ContinueIn>(),
        Route::new(Method::POST, "/v1/recipients/{id}/onboardings/{oid}/cancel", cancel).also_answers(&[202]),
        Route::new(Method::POST, "/v1/recipients/{id}/onboardings/{oid}/supplements", supplements)
            .also_answers(&[202])
            .accepts::<SupplementIn>(),
        Route::new(Method::POST, "/v1/recipients/{id}/onboardings/{oid}/transfer", transfer)
            .accepts::<TransferIn>(),
        Route::new(Method::POST, "/v1/recipients/{id}/onboardings/{oid}/reverse-transfer", reverse_transfer),
        Route::new(Method::POST, "/v1/test_helpers/recipients/{id}/onboardings/{oid}/decide", decide)
            .accepts::<DecideIn>(),
        Route::new(Method::POST, "/v1/test_helpers/recipients/{id}/onboardings/{oid}/compliance", compliance)
            .accepts::<ComplianceIn>(),
        // MARKETPLACE.md §11's operator faults for the marketplace operations
        // (`onboarding`); the other operations' faults live with their flows.
        Route::new(Method::POST, "/callbacks/gateway/marketplace", gateway_callback),
    ]
}

/// POST /callbacks/gateway/marketplace — the gateway decided or reviewed an
/// onboarding. Signed like `/callbacks/gateway`; acted on only through a
/// query of the onboarding under the account that signed (duplicates and any
/// order: one effect).
async fn gateway_callback(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    use crate::upstream::callbacks as wire;
    let header = ctx.header(wire::GATEWAY_SIGNATURE_HEADER).ok_or_else(|| {
        ApiError::unauthenticated(format!("missing header {}", wire::GATEWAY_SIGNATURE_HEADER))
    })?;
    let callback = wire::parse_onboarding_callback(&ctx.body)
        .map_err(|_| ApiError::unauthenticated("unreadable or unsigned callback"))?;
    let (merchant, key) = super::callbacks::gateway_key(&app, &callback.merchant_id)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("unknown gateway account"))?;
    wire::verify(header, key.as_bytes(), &ctx.body, pelago_storage::Timestamp::now_real().unix_seconds())
        .map_err(|_| ApiError::unauthenticated("bad callback signature"))?;
    let outcome =
        onboardings::on_gateway_callback(&app.core, merchant.as_ref(), &callback.onboarding_id).await?;
    tracing::info!(event_id = %callback.event_id, outcome, "gateway onboarding callback");
    Ok(ApiReply::json(200, &json!({"received": true, "outcome": outcome})))
}

/// The marketplace half of `POST /admin/v1/test_helpers/gateway/faults`
/// (`http/test_helpers.rs` routes `onboarding`, `agreement` and `callbacks`
/// here): the simulator's marketplace calls.
pub(super) async fn set_marketplace_fault(app: &App, ctx: &Ctx) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    let fault: marketplace_wire::MarketplaceFault = ctx.json()?;
    let callbacks = fault.operation == marketplace_wire::MarketplaceOperation::Callbacks;
    if callbacks != (fault.behavior == marketplace_wire::MarketplaceFaultBehavior::Duplicate) {
        return Err(ApiError::invalid("behavior", "duplicate applies to callbacks, and only duplicate does"));
    }
    crate::upstream::gateway_marketplace::sandbox_fault(control, Some(&fault))
        .await
        .map_err(|e| ApiError::invalid("behavior", format!("the sandbox gateway refused the fault: {e}")))?;
    Ok(ApiReply::json(200, &json!({"fault": fault})))
}

/// The marketplace half of `DELETE /admin/v1/test_helpers/gateway/faults`.
pub(super) async fn clear_marketplace_faults(app: &App) -> Result<(), ApiError> {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    crate::upstream::gateway_marketplace::sandbox_fault(control, None)
        .await
        .map_err(|e| ApiError::upstream(format!("the sandbox gateway refused: {e}")))?;
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DocumentIn {
    file_id: String,
    /// `identity_document`, `business_license`, `bank_proof` or `other`.
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateIn {
    /// `PREVIOUSLY_ONBOARDED`, `ONE_STEP_ONBOARDING` or `TWO_STEP_ONBOARDING`.
    #[serde(rename = "type")]
    kind: String,
    provider_recipient_id: Option<String>,
    documents: Option<Vec<DocumentIn>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ContinueIn {
    documents: Option<Vec<DocumentIn>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SupplementIn {
    documents: Vec<DocumentIn>,
    note: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferIn {
    recipient_id: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DecideIn {
    /// `SUCCEEDED`, `DECLINED`, `REJECTED`, `BLOCKED` or `ERROR`.
    status: String,
    reason: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ComplianceIn {
    /// `approved` or `failed`.
    result: String,
    reason: Option<String>,
}

/// `documents` (1..10 when given; `required`: it must be given).
fn documents(raw: Option<Vec<DocumentIn>>, required: bool) -> Result<Vec<Document>, ApiError> {
    let Some(raw) = raw else {
        return if required {
            Err(ApiError::invalid("documents", "documents is required"))
        } else {
            Ok(vec![])
        };
    };
    if raw.is_empty() || raw.len() > MAX_DOCUMENTS {
        return Err(ApiError::invalid("documents", "documents holds 1 to 10 entries"));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, d)| {
            let file_id = FileId::parse(&d.file_id).map_err(|_| {
                ApiError::invalid(format!("documents[{i}].file_id"), "no such file of this merchant")
            })?;
            let kind = DocumentType::parse(&d.kind).ok_or_else(|| {
                ApiError::invalid(
                    format!("documents[{i}].type"),
                    "type must be identity_document, business_license, bank_proof or other",
                )
            })?;
            Ok(Document { file_id, kind })
        })
        .collect()
}

fn optional_text(raw: Option<String>, param: &str, max: usize) -> Result<Option<String>, ApiError> {
    match raw {
        Some(v) if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) => {
            Err(ApiError::invalid(param, format!("{param} must be 1 to {max} printable characters")))
        }
        other => Ok(other),
    }
}

pub fn onboarding_json(o: &Onboarding) -> Value {
    json!({
        "id": o.id,
        "object": "onboarding",
        "recipient_id": o.recipient_id,
        "type": o.kind.as_str(),
        "status": o.status.as_str(),
        "provider_recipient_id": o.provider_recipient_id,
        "documents": o.documents.iter().map(|d| json!({"file_id": d.file_id, "type": d.kind.as_str()})).collect::<Vec<_>>(),
        "compliance": {
            "status": o.compliance.status.as_str(),
            "supplements_used": o.compliance.supplements_used,
            "supplements_max": SUPPLEMENTS_MAX,
            "reason": o.compliance.reason,
        },
        "failure_reason": o.failure_reason,
        "pending_action": o.pending_action.as_ref().map(|p| json!({"type": p.kind.as_str(), "since": p.since.to_rfc3339()})),
        "history": o.history.iter().map(|h| json!({
            "type": h.kind.as_str(),
            "from": h.from,
            "to": h.to,
            "from_recipient_id": h.from_recipient_id,
            "to_recipient_id": h.to_recipient_id,
            "reason": h.reason,
            "source": h.source.as_str(),
            "at": h.at.to_rfc3339(),
        })).collect::<Vec<_>>(),
        "version": o.version,
        "created_at": o.created_at.to_rfc3339(),
    })
}

fn answered(answer: Answer, settled_status: u16) -> ApiReply {
    ApiReply::json(if answer.unknown { 202 } else { settled_status }, &onboarding_json(&answer.onboarding))
}

/// The body, or `{}` when the request has none (actions without fields).
fn json_or_empty<T: serde::de::DeserializeOwned>(ctx: &Ctx) -> Result<T, ApiError> {
    if ctx.body.is_empty() { super::json::parse_body(b"{}") } else { ctx.json() }
}

/// POST /v1/recipients/{id}/onboardings
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let req: CreateIn = ctx.json()?;
    let kind = OnboardingType::parse(&req.kind).ok_or_else(|| {
        ApiError::invalid(
            "type",
            "type must be PREVIOUSLY_ONBOARDED, ONE_STEP_ONBOARDING or TWO_STEP_ONBOARDING",
        )
    })?;
    let documents = documents(req.documents, false)?;
    let answer = onboardings::create(
        &app.core,
        &merchant_id,
        ctx.param(0),
        kind,
        req.provider_recipient_id,
        documents,
        ctx.binding(),
    )
    .await?;
    Ok(answered(answer, 201))
}

/// GET /v1/recipients/{id}/onboardings — newest first, paginated.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let page = super::pagination::parse(&ctx.query, &[])?;
    let recipient =
        crate::flows::marketplace::recipients::load_owned(&app.core, ctx.merchant_id()?, ctx.param(0))
            .await?;
    let prefix = pelago_actors::recipient::onboardings::owned_prefix(&recipient.id);
    let found = super::pagination::indexed::<Onboarding>(&app.store, &prefix, &page)?;
    let data = found.iter().map(onboarding_json).collect();
    Ok(ApiReply::json(200, &super::pagination::body(data, page.limit)))
}

/// GET /v1/recipients/{id}/onboardings/{oid}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let (_, o) = onboardings::load_owned(&app.core, &at(&ctx)?).await?;
    Ok(ApiReply::json(200, &onboarding_json(&o)))
}

/// The onboarding the path names, for the asking merchant.
fn at(ctx: &Ctx) -> Result<OnboardingAt<'_>, ApiError> {
    Ok(OnboardingAt { merchant_id: ctx.merchant_id()?, recipient: ctx.param(0), onboarding: ctx.param(1) })
}

async fn act(app: &Arc<App>, ctx: &Ctx, action: Action) -> HandlerResult {
    let answer = onboardings::act(&app.core, &at(ctx)?, action).await?;
    Ok(answered(answer, 200))
}

/// POST /v1/recipients/{id}/onboardings/{oid}/continue
async fn continue_(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: ContinueIn = json_or_empty(&ctx)?;
    let documents = documents(req.documents, false)?;
    act(&app, &ctx, Action::Continue { documents }).await
}

/// POST /v1/recipients/{id}/onboardings/{oid}/cancel
fn cancel(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(async move { act(&app, &ctx, Action::Cancel).await })
}

/// POST /v1/recipients/{id}/onboardings/{oid}/supplements
async fn supplements(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: SupplementIn = ctx.json()?;
    let documents = documents(Some(req.documents), true)?;
    let note = optional_text(req.note, "note", 500)?;
    act(&app, &ctx, Action::Supplement { documents, note }).await
}

/// POST /v1/recipients/{id}/onboardings/{oid}/transfer
async fn transfer(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: TransferIn = ctx.json()?;
    let o = onboardings::transfer(&app.core, &at(&ctx)?, Some(&req.recipient_id)).await?;
    Ok(ApiReply::json(200, &onboarding_json(&o)))
}

/// POST /v1/recipients/{id}/onboardings/{oid}/reverse-transfer
async fn reverse_transfer(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let o = onboardings::transfer(&app.core, &at(&ctx)?, None).await?;
    Ok(ApiReply::json(200, &onboarding_json(&o)))
}

/// Runs a sandbox gateway control helper on the onboarding and answers once
/// Pelago applied what the gateway then says.
async fn helper<B: serde::Serialize>(
    app: &Arc<App>,
    ctx: &Ctx,
    what: &str,
    body: &B,
    allowed: fn(&Onboarding) -> bool,
) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    let (_, o) = onboardings::load_owned(&app.core, &at(ctx)?).await?;
    if !allowed(&o) || o.pending_action.is_some() {
        return Err(ApiError::invalid_state(format!(
            "the onboarding is {} (compliance {}); the {what} helper does not apply",
            o.status.as_str(),
            o.compliance.status.as_str()
        )));
    }
    let gateway_id = o
        .gateway_onboarding_id
        .clone()
        .ok_or_else(|| ApiError::invalid_state("the gateway has not seen this onboarding"))?;
    let outcome = sandbox_control(control, &gateway_id, what, body)
        .await
        .map_err(|e| ApiError::upstream(format!("the sandbox gateway refused: {e}")))?;
    let pelago_actors::ports::Outcome::Done(answer) = outcome else {
        return Err(ApiError::upstream("the sandbox gateway's answer could not be read"));
    };
    let o = onboardings::report(&app.core, &o, answer).await?;
    Ok(ApiReply::json(200, &onboarding_json(&o)))
}

/// POST /v1/test_helpers/recipients/{id}/onboardings/{oid}/decide — sandbox only; PENDING only.
async fn decide(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: DecideIn = ctx.json()?;
    if !matches!(req.status.as_str(), "SUCCEEDED" | "DECLINED" | "REJECTED" | "BLOCKED" | "ERROR") {
        return Err(ApiError::invalid(
            "status",
            "status must be SUCCEEDED, DECLINED, REJECTED, BLOCKED or ERROR",
        ));
    }
    let reason = optional_text(req.reason, "reason", 255)?;
    let body = marketplace_wire::DecideBody { status: req.status, reason };
    helper(&app, &ctx, "decide", &body, |o| o.status == OnboardingStatus::Pending).await
}

/// POST /v1/test_helpers/recipients/{id}/onboardings/{oid}/compliance — sandbox only; compliance `pending` only.
async fn compliance(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: ComplianceIn = ctx.json()?;
    if !matches!(req.result.as_str(), "approved" | "failed") {
        return Err(ApiError::invalid("result", "result must be approved or failed"));
    }
    let reason = optional_text(req.reason, "reason", 255)?;
    let body = marketplace_wire::ComplianceBody { result: req.result, reason };
    helper(&app, &ctx, "compliance", &body, |o| {
        o.status == OnboardingStatus::Succeeded
            && o.compliance.status == pelago_actors::recipient::ComplianceStatus::Pending
    })
    .await
}
