//! Reconciliation files and runs (MARKETPLACE.md §10).

use std::sync::Arc;

use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    flows::reconciliation::{self, ReconciliationRun, keys::parse_date},
    http::state::App,
};

pub const TXT: &str = "text/plain; charset=utf-8";
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/v1/reconciliation/{date}", download).produces(&[TXT, XLSX]),
        Route::new(Method::POST, "/admin/v1/reconciliation/runs", trigger).answers(202).accepts::<RunIn>(),
        Route::new(Method::GET, "/admin/v1/reconciliation/runs/{date}", get_run),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunIn {
    /// `YYYY-MM-DD`, a local day at `PELAGO_MARKETPLACE_UTC_OFFSET` that is over.
    date: String,
}

fn run_json(run: &ReconciliationRun) -> Value {
    json!({
        "id": run.id,
        "object": "reconciliation_run",
        "date": run.date,
        "status": if run.completed { "completed" } else { "running" },
        "merchants": run.merchants,
        "rows": run.rows,
        "started_at": run.started_at.to_rfc3339(),
        "completed_at": run.completed_at.map(|t| t.to_rfc3339()),
    })
}

/// GET /v1/reconciliation/{date}?format=txt|xlsx — the merchant's file of a local day.
async fn download(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let date = parse_date(ctx.param(0))
        .ok_or_else(|| ApiError::invalid("date", "date must be a day, YYYY-MM-DD"))?;
    let mut xlsx = false;
    for (key, value) in url::form_urlencoded::parse(ctx.query.as_bytes()) {
        match (key.as_ref(), value.as_ref()) {
            ("format", "txt") => xlsx = false,
            ("format", "xlsx") => xlsx = true,
            ("format", _) => return Err(ApiError::invalid("format", "format must be txt or xlsx")),
            (other, _) => {
                return Err(ApiError::invalid(other, format!("unknown query parameter `{other}`")));
            }
        }
    }
    let Some(paths) = reconciliation::files(&app.core, &merchant, date)? else {
        return Err(ApiError::not_found_saying(format!(
            "the reconciliation file of {date} is not generated yet: it is built at {}",
            reconciliation::ready_at(&app.core, date)
        )));
    };
    let (path, content_type, extension) =
        if xlsx { (paths.xlsx, XLSX, "xlsx") } else { (paths.txt, TXT, "txt") };
    Ok(ApiReply::file(200, content_type, path).with_header("cache-control", "no-store").with_header(
        "content-disposition",
        format!("attachment; filename=\"reconciliation-{date}.{extension}\""),
    ))
}

/// POST /admin/v1/reconciliation/runs — once per date (the same date again is the same run).
async fn trigger(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: RunIn = ctx.json()?;
    let date = parse_date(&req.date).ok_or_else(|| ApiError::invalid("date", "date must be YYYY-MM-DD"))?;
    let run = reconciliation::trigger(&app.core, date).await?;
    Ok(ApiReply::json(202, &run_json(&run)))
}

/// GET /admin/v1/reconciliation/runs/{date}
async fn get_run(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let date = parse_date(ctx.param(0)).ok_or_else(|| ApiError::not_found("reconciliation run"))?;
    let run =
        reconciliation::get(&app.core, date)?.ok_or_else(|| ApiError::not_found("reconciliation run"))?;
    Ok(ApiReply::json(200, &run_json(&run)))
}
