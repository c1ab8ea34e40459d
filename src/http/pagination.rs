//! Lists (API.md §1): `?limit=` 1..100 (default 20), `?starting_after=<id>`,
//! newest first, `{"data": [...], "has_more": bool}`.
//!
//! A *filtered* list ([`filtered`]) reads at most [`FILTER_SCAN_BUDGET`]
//! records per request, however few match. A page is then either complete
//! (`has_more: false` means nothing further matches) or says `has_more: true`
//! with `next_starting_after` (present only then), the id to pass as
//! `starting_after` to go on —
//! the last record *read*, which may be past the last one shown, so a page
//! cut short by the budget (even an empty one) continues where it stopped.

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

/// Records a filtered list request decodes at most.
pub const FILTER_SCAN_BUDGET: usize = 1_000;

/// One page of a filtered list of the records under `prefix` (keys
/// `{prefix}{id}`), newest first after `page.starting_after`: `keep` turns a
/// record into its wire form or skips it. Reads at most `budget` records
/// (see the module docs for the page it answers).
pub fn filtered<R: Record>(
    store: &Store,
    prefix: &str,
    page: &Page,
    budget: usize,
    mut keep: impl FnMut(&R) -> Option<serde_json::Value>,
) -> Result<serde_json::Value, ApiError> {
    let mut cursor = page.starting_after.as_ref().map(|id| format!("{prefix}{id}").into_bytes());
    let mut items: Vec<(String, serde_json::Value)> = Vec::new();
    let mut read = 0;
    let mut exhausted = false;
    let mut last_read: Option<String> = None;
    'scan: while read < budget {
        // A page's worth per scan: an unfiltered page reads no more than before.
        let want = (page.limit + 1).min(budget - read);
        let found = store.scan::<R>(prefix.as_bytes(), cursor.as_deref(), true, want)?;
        exhausted = found.len() < want;
        for (key, record) in found {
            read += 1;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(item) = keep(&record) {
                items.push((id.clone(), item));
            }
            last_read = Some(id);
            cursor = Some(key);
            if items.len() > page.limit {
                break 'scan;
            }
        }
        if exhausted {
            break;
        }
    }
    let (has_more, next) = if items.len() > page.limit {
        items.truncate(page.limit);
        (true, items.last().map(|(id, _)| id.clone()))
    } else if exhausted {
        (false, None)
    } else {
        // The budget ran out first: go on after the last record read.
        (true, last_read)
    };
    let mut body = serde_json::json!({
        "data": items.into_iter().map(|(_, item)| item).collect::<Vec<_>>(),
        "has_more": has_more,
    });
    if let Some(next) = next {
        body["next_starting_after"] = next.into();
    }
    Ok(body)
}

/// A filtered list's 200 reply: [`filtered`] within [`FILTER_SCAN_BUDGET`].
pub fn reply<R: Record>(
    store: &Store,
    prefix: &str,
    page: &Page,
    keep: impl FnMut(&R) -> Option<serde_json::Value>,
) -> super::router::HandlerResult {
    Ok(super::router::ApiReply::json(200, &filtered(store, prefix, page, FILTER_SCAN_BUDGET, keep)?))
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

#[cfg(test)]
mod tests {
    use pelago_storage::{StoreConfig, WriteBatch};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Row {
        n: u32,
    }

    impl Record for Row {
        const TREE: Tree = Tree::BalanceTxns;
        const SCHEMA_VERSION: u8 = 1;
    }

    /// Pages through `m/` with `keep` and a small budget until `has_more` is false.
    fn walk(store: &Store, limit: usize, budget: usize, keep: fn(&Row) -> bool) -> (Vec<u64>, usize, bool) {
        let (mut seen, mut pages, mut empty_with_more) = (Vec::new(), 0, false);
        let mut after: Option<String> = None;
        loop {
            pages += 1;
            assert!(pages < 1_000, "the walk ends");
            let page = Page { limit, starting_after: after.clone(), filters: HashMap::new() };
            let body =
                filtered::<Row>(store, "m/", &page, budget, |r| keep(r).then(|| serde_json::json!(r.n)))
                    .unwrap();
            let data = body["data"].as_array().unwrap();
            assert!(data.len() <= limit);
            seen.extend(data.iter().map(|v| v.as_u64().unwrap()));
            if body["has_more"] == false {
                assert_eq!(body["next_starting_after"], serde_json::Value::Null);
                return (seen, pages, empty_with_more);
            }
            empty_with_more |= data.is_empty();
            after = Some(body["next_starting_after"].as_str().expect("a cursor with has_more").to_owned());
        }
    }

    #[test]
    fn a_budget_cut_page_says_has_more_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &StoreConfig::default()).unwrap();
        let mut batch = WriteBatch::new();
        for n in 0..200u32 {
            batch.put(format!("m/{n:04}"), &Row { n }).unwrap();
            batch.put(format!("other/{n:04}"), &Row { n }).unwrap();
        }
        let _ticket = store.commit(batch).unwrap();
        // Sparse matches (every 37th), a budget far below the table: every match
        // is seen once, newest first, and empty pages still continue.
        let (seen, pages, empty_with_more) = walk(&store, 3, 10, |r| r.n % 37 == 0);
        assert_eq!(seen, vec![185, 148, 111, 74, 37, 0]);
        assert!(empty_with_more, "some pages were cut by the budget before a match");
        assert!(pages >= 20, "200 rows at 10 per request: {pages}");
        // Dense matches: full pages, the cursor is the last one shown.
        let (seen, _, _) = walk(&store, 50, 1_000, |_| true);
        assert_eq!(seen, (0..200u32).rev().map(u64::from).collect::<Vec<_>>());
        // Nothing matches: the walk still ends with has_more false.
        let (seen, _, _) = walk(&store, 5, 64, |_| false);
        assert!(seen.is_empty());
    }
}
