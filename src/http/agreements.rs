//! Agreements (MARKETPLACE.md §5): create (signed at the gateway; 202 while
//! its answer is unknown) and list (`?type=`).

use std::sync::Arc;

use http::Method;
use pelago_actors::recipient::agreement::{AgreementRecord, AgreementType};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{flows::marketplace::agreements, http::state::App};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/recipients/{id}/agreements", create).creates::<AgreementIn>(),
        Route::new(Method::GET, "/v1/recipients/{id}/agreements", list),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AgreementIn {
    /// `split` or `commission`.
    #[serde(rename = "type")]
    kind: String,
    /// 0..10000; required for `commission`, forbidden for `split`.
    max_commission_bps: Option<i64>,
}

pub fn agreement_json(a: &AgreementRecord) -> Value {
    json!({
        "id": a.id,
        "object": "agreement",
        "recipient_id": a.recipient_id,
        "type": a.kind.as_str(),
        "max_commission_bps": a.max_commission_bps,
        "status": a.status.as_str(),
        "failure_reason": a.failure_reason,
        "signed_at": a.signed_at.map(|t| t.to_rfc3339()),
        "created_at": a.created_at.to_rfc3339(),
        "version": a.version,
    })
}

/// POST /v1/recipients/{id}/agreements
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let req: AgreementIn = ctx.json()?;
    let kind = AgreementType::parse(&req.kind)
        .ok_or_else(|| ApiError::invalid("type", "type must be split or commission"))?;
    let bps = match (kind, req.max_commission_bps) {
        (AgreementType::Split, Some(_)) => {
            return Err(ApiError::invalid(
                "max_commission_bps",
                "max_commission_bps is not for a split agreement",
            ));
        }
        (AgreementType::Split, None) => None,
        (AgreementType::Commission, None) => {
            return Err(ApiError::invalid("max_commission_bps", "max_commission_bps is required"));
        }
        (AgreementType::Commission, Some(b)) if !(0..=10_000).contains(&b) => {
            return Err(ApiError::invalid("max_commission_bps", "max_commission_bps must be 0 to 10000"));
        }
        (AgreementType::Commission, Some(b)) => Some(b as u32),
    };
    let answer = agreements::create(&app.core, &merchant_id, ctx.param(0), kind, bps, ctx.binding()).await?;
    Ok(ApiReply::created(answer.unknown, &agreement_json(&answer.agreement)))
}

/// GET /v1/recipients/{id}/agreements — newest first, paginated; `?type=` filters.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let page = pagination::parse(&ctx.query, &["type"])?;
    let kind = match page.filters.get("type") {
        Some(raw) => Some(
            AgreementType::parse(raw)
                .ok_or_else(|| ApiError::invalid("type", "type must be split or commission"))?,
        ),
        None => None,
    };
    let recipient =
        crate::flows::marketplace::recipients::load_owned(&app.core, ctx.merchant_id()?, ctx.param(0))
            .await?;
    let prefix = pelago_actors::recipient::agreement::owned_prefix(&recipient.id, kind);
    let found = pagination::indexed::<AgreementRecord>(&app.store, &prefix, &page)?;
    let data: Vec<Value> = found.iter().map(agreement_json).collect();
    Ok(ApiReply::json(200, &pagination::body(data, page.limit)))
}
