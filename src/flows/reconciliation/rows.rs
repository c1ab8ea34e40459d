//! The rows of a reconciliation file (MARKETPLACE.md §10): one per posting of
//! each of the merchant's §8 entries booked on the local day D, counterparts
//! (`gateway:clearing`) included, by `created_at`, entry id, posting order —
//! the order of the merchant actor's `mkt/` index rows, read a page at a time
//! so a day of many entries is never held whole.

use chrono::{FixedOffset, NaiveDate};
use pelago_actors::ledger::{Account, JournalEntry};
use pelago_storage::{Currency, MerchantId, PaymentId, RecipientWithdrawalId, RefundId, Store, Tree};

use super::keys::Key;
use crate::{config::marketplace::day_bounds, flows::Error};

/// The columns, in order; they are only ever appended to.
pub const COLUMNS: [&str; 13] = [
    "entry_id",
    "posted_at",
    "type",
    "object_id",
    "payment_id",
    "merchant_reference",
    "account",
    "party_type",
    "party_id",
    "line",
    "split_type",
    "amount",
    "currency",
];

/// One posting as a row. `None` is an empty field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub entry_id: String,
    /// RFC 3339, UTC.
    pub posted_at: String,
    pub kind: &'static str,
    pub object_id: Option<String>,
    pub payment_id: Option<String>,
    pub merchant_reference: Option<String>,
    pub account: String,
    pub party_type: &'static str,
    pub party_id: Option<String>,
    pub line: Option<u32>,
    pub split_type: Option<String>,
    /// Signed minor units.
    pub amount: i64,
    pub currency: Currency,
}

/// A cell of a row: text or a number; `None` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Text(&'a str),
    Number(i64),
}

impl Row {
    /// The row's cells in [`COLUMNS`] order (`amount` and `line` are numbers).
    pub fn cells(&self) -> [Option<Cell<'_>>; 13] {
        fn text(v: &Option<String>) -> Option<Cell<'_>> {
            v.as_deref().map(Cell::Text)
        }
        [
            Some(Cell::Text(&self.entry_id)),
            Some(Cell::Text(&self.posted_at)),
            Some(Cell::Text(self.kind)),
            text(&self.object_id),
            text(&self.payment_id),
            text(&self.merchant_reference),
            Some(Cell::Text(&self.account)),
            Some(Cell::Text(self.party_type)),
            text(&self.party_id),
            self.line.map(|l| Cell::Number(i64::from(l))),
            text(&self.split_type),
            Some(Cell::Number(self.amount)),
            Some(Cell::Text(self.currency.code())),
        ]
    }
}

/// What an entry's rows say about the object it books.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Object {
    object_id: Option<String>,
    payment_id: Option<String>,
    merchant_reference: Option<String>,
}

/// The object an entry books, read from its source id: a payment (`pay_`,
/// its own `payment_id`), a refund (`rfd_`) or a recipient withdrawal
/// (`rwd_`), named by the source or its last `/` segment.
///
/// Not yet known here (issue 16, payments branch): a refund's payment, the
/// payment's `merchant_reference`, and `line` / `split_type` of a payment's
/// postings; those columns stay empty until the payment records exist.
fn object_of(entry: &JournalEntry) -> Object {
    let id = entry.source_id.rsplit('/').next().unwrap_or_default();
    if PaymentId::parse(id).is_ok() {
        return Object {
            object_id: Some(id.to_owned()),
            payment_id: Some(id.to_owned()),
            ..Object::default()
        };
    }
    if RefundId::parse(id).is_ok() || RecipientWithdrawalId::parse(id).is_ok() {
        return Object { object_id: Some(id.to_owned()), ..Object::default() };
    }
    Object::default()
}

/// `party_type` and `party_id` of an account.
fn party_of(account: &Account) -> (&'static str, Option<String>) {
    match account {
        Account::MerchantAvailable(m) | Account::MerchantPending(m) => ("merchant", Some(m.to_string())),
        Account::RecipientInTransit(r)
        | Account::RecipientAvailable(r)
        | Account::RecipientWithdrawing(r) => ("recipient", Some(r.to_string())),
        Account::GatewayClearing => ("gateway", None),
        // Never in a §8 entry; kept visible rather than dropped.
        Account::PlatformFees | Account::ChannelFunding(_) => ("", None),
    }
}

/// The rows of one entry, in posting order.
pub fn rows_of(entry: &JournalEntry) -> impl Iterator<Item = Row> + '_ {
    let object = object_of(entry);
    let posted_at = entry.created_at.to_rfc3339();
    entry.postings.iter().map(move |p| {
        let (party_type, party_id) = party_of(&p.account);
        Row {
            entry_id: entry.id.to_string(),
            posted_at: posted_at.clone(),
            kind: entry.kind.as_str(),
            object_id: object.object_id.clone(),
            payment_id: object.payment_id.clone(),
            merchant_reference: object.merchant_reference.clone(),
            account: p.account.name(),
            party_type,
            party_id,
            line: None,
            split_type: None,
            amount: p.amount.value,
            currency: p.amount.currency,
        }
    })
}

/// Entries read per page.
const PAGE: usize = 256;

/// Calls `each` with every row of `merchant`'s §8 entries booked on the local
/// day `date` at `offset`, in file order; returns how many rows there were.
pub fn for_each_row(
    store: &Store,
    merchant: &MerchantId,
    date: NaiveDate,
    offset: FixedOffset,
    mut each: impl FnMut(&Row) -> Result<(), Error>,
) -> Result<u64, Error> {
    let (start, end) = day_bounds(date, offset);
    let prefix = pelago_actors::merchant::actor::marketplace_entry_prefix(merchant);
    let end_key = Key::EntriesFrom { merchant: merchant.clone(), at: end }.encode();
    // Exclusive: every entry row is longer than its time prefix.
    let mut after = Key::EntriesFrom { merchant: merchant.clone(), at: start }.encode().into_bytes();
    let mut rows = 0u64;
    loop {
        let keys = store.scan_keys(Tree::Index, prefix.as_bytes(), Some(&after), false, PAGE)?;
        let Some(last) = keys.last() else { return Ok(rows) };
        after = last.clone();
        for key in keys {
            if key.as_slice() >= end_key.as_bytes() {
                return Ok(rows);
            }
            let entry_id = key.rsplit(|b| *b == b'/').next().unwrap_or_default();
            let entry = store.get::<JournalEntry>(entry_id)?.ok_or_else(|| {
                tracing::error!(merchant_id = %merchant, "a marketplace index row names no journal entry");
                Error::internal()
            })?;
            for row in rows_of(&entry) {
                each(&row)?;
                rows += 1;
            }
        }
    }
}
