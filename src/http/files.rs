//! Files (MARKETPLACE.md §2): `POST /v1/files` takes the raw file (up to
//! 5 MiB, the only route above 64 KiB) and `GET /v1/files/{id}` shows its
//! metadata. The content is never served.

use std::sync::Arc;

use http::Method;
use pelago_actors::file::{FileRecord, FileType, MAX_FILE_BYTES};
use serde_json::{Value, json};

use super::router::{ApiReply, Ctx, HandlerResult, Route};
use crate::{flows::marketplace::files, http::state::App};

const MEDIA_TYPES: &[&str] = &["application/pdf", "image/png", "image/jpeg"];

pub fn routes() -> Vec<Route> {
    debug_assert!(FileType::ALL.iter().all(|t| MEDIA_TYPES.contains(&t.as_str())));
    vec![
        Route::new(Method::POST, "/v1/files", create).answers(201).takes_raw(MEDIA_TYPES, MAX_FILE_BYTES),
        Route::new(Method::GET, "/v1/files/{id}", get),
    ]
}

pub fn file_json(f: &FileRecord) -> Value {
    json!({
        "id": f.id,
        "object": "file",
        "content_type": f.content_type.as_str(),
        "size": f.size,
        "sha256": f.sha256,
        "created_at": f.created_at.to_rfc3339(),
    })
}

/// POST /v1/files — the body is the file; `Content-Type` is its type.
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let declared = ctx.header("content-type").map(str::to_owned);
    let file =
        files::create(&app.core, &merchant_id, declared.as_deref(), ctx.body.clone(), ctx.binding()).await?;
    Ok(ApiReply::json(201, &file_json(&file)))
}

/// GET /v1/files/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let file = files::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &file_json(&file)))
}
