//! Lists (API.md §1): `?limit=` 1..100 (default 20), `?starting_after=<id>`,
//! newest first, `{"data": [...], "has_more": bool}`.

use std::collections::HashMap;

use pelago_storage::{Record, Store, Tree};

use super::errors::ApiError;

pub struct Page {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub filters: HashMap<String, String>,
}

/// Parses the query string; unknown parameters are refused (`param` names them)
/// unless listed in `filters`.
pub fn parse(query: &str, filters: &[&str]) -> Result<Page, ApiError> {
    let mut page = Page { limit: 20, starting_after: None, filters: HashMap::new() };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => {
                page.limit =
                    value.parse::<usize>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
                        ApiError::invalid("limit", "limit must be a whole number from 1 to 100")
                    })?;
            }
            "starting_after" => {
                if value.is_empty() || value.len() > 64 {
                    return Err(ApiError::invalid("starting_after", "starting_after must be an id"));
                }
                page.starting_after = Some(value.into_owned());
            }
            other if filters.contains(&other) => {
                page.filters.insert(other.to_owned(), value.into_owned());
            }
            other => return Err(ApiError::invalid(other, format!("unknown query parameter `{other}`"))),
        }
    }
    Ok(page)
}

/// Takes at most `limit` of `items` (fetched with one extra) and says whether more exist.
pub fn body<T: serde::Serialize>(mut items: Vec<T>, limit: usize) -> serde_json::Value {
    let has_more = items.len() > limit;
    items.truncate(limit);
    serde_json::json!({"data": items, "has_more": has_more})
}

/// One page of records listed through `Tree::Index` rows `{prefix}{id}` (the
/// record's key is the id): newest first, after `starting_after`, one extra to
/// tell `has_more` (see [`body`]). A row whose record is gone is skipped.
pub fn indexed<R: Record>(store: &Store, prefix: &str, page: &Page) -> Result<Vec<R>, ApiError> {
    let after = page.starting_after.as_ref().map(|id| format!("{prefix}{id}"));
    let keys = store.scan_keys(
        Tree::Index,
        prefix.as_bytes(),
        after.as_deref().map(str::as_bytes),
        true,
        page.limit + 1,
    )?;
    let mut records = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(record) = store.get::<R>(&key[prefix.len()..])? {
            records.push(record);
        }
    }
    Ok(records)
}
