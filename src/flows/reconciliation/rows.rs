//! The rows of a reconciliation file (MARKETPLACE.md §10): one per posting of
//! each of the merchant's §8 entries booked on the local day D, counterparts
//! (`gateway:clearing`) included, by `created_at`, entry id, posting order —
//! the order of the merchant actor's `mkt/` index rows, read a page at a time
//! so a day of many entries is never held whole.

use chrono::{FixedOffset, NaiveDate};
use pelago_actors::keys::{Index, RecordKey};
use pelago_actors::{
    ledger::{Account, EntryKind, JournalEntry},
    payment::{PaymentRecord, refund::RefundRecord},
};
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

/// The payment line whose party a posting is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LineOf {
    line: u32,
    split_type: &'static str,
    merchant_reference: String,
}

/// An entry read with its records: the object, and per posting (in posting
/// order) the line whose party it is; `None` for a counterpart
/// (`gateway:clearing`), a merchant-level posting or a withdrawal's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Described {
    object: Object,
    lines: Vec<Option<LineOf>>,
}

fn missing(merchant: &MerchantId, what: &'static str) -> Error {
    tracing::error!(merchant_id = %merchant, what, "a marketplace entry's record is missing");
    Error::internal()
}

fn load_payment(store: &Store, merchant: &MerchantId, id: &PaymentId) -> Result<PaymentRecord, Error> {
    let key = RecordKey::Payment { merchant: merchant.clone(), payment: id.clone() }.encode();
    store.get::<PaymentRecord>(key)?.ok_or_else(|| missing(merchant, "payment"))
}

/// The refund booked under `id` and its payment (`rfdowner/` names it).
fn load_refund(
    store: &Store,
    merchant: &MerchantId,
    id: &RefundId,
) -> Result<(RefundRecord, PaymentRecord), Error> {
    let owner = Index::RefundOwner { refund: id.clone() };
    let payment = store
        .get_raw(owner.tree(), owner.encode())?
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|raw| PaymentId::parse(&raw).ok())
        .ok_or_else(|| missing(merchant, "refund owner"))?;
    let key = RecordKey::Refund { merchant: merchant.clone(), payment: payment.clone(), refund: id.clone() };
    let refund = store.get::<RefundRecord>(key.encode())?.ok_or_else(|| missing(merchant, "refund"))?;
    Ok((refund, load_payment(store, merchant, &payment)?))
}

/// The line's description and the two accounts its party's postings use.
fn line_of(payment: &PaymentRecord, line: u32) -> Option<(LineOf, [Account; 2])> {
    let l = payment.lines.get(line as usize)?;
    let party = l.party(&payment.merchant_id);
    let of = LineOf { line, split_type: l.kind.as_str(), merchant_reference: l.merchant_reference.clone() };
    Some((of, [party.in_transit(), party.available()]))
}

/// The object and lines of an entry, from the records the payment, split,
/// refund and withdrawal flows book under its source id (MARKETPLACE.md §8):
/// a collection or a split names its payment, a refund (and its reversal) the
/// refund, whose payment `rfdowner/` keeps, a withdrawal's entries the
/// withdrawal. The line postings come in the order the ledger's builders
/// write them (`ledger::marketplace`): a collection's clearing then one per
/// line; a split two per line with a non-zero `split_amount`; a refund one per
/// non-zero portion, then the counterparts. Each is checked against its line's
/// party, so a posting is never credited to the wrong line.
fn describe(store: &Store, merchant: &MerchantId, entry: &JournalEntry) -> Result<Described, Error> {
    let source = entry.source_id.as_str();
    let (object, payment, lines): (Object, Option<PaymentRecord>, Vec<u32>) = match entry.kind {
        EntryKind::MarketplaceCollection | EntryKind::Split => {
            let id = PaymentId::parse(source).map_err(|_| missing(merchant, "payment id"))?;
            let payment = load_payment(store, merchant, &id)?;
            let lines: Vec<u32> = if entry.kind == EntryKind::Split {
                (0..payment.lines.len() as u32)
                    .filter(|i| payment.lines[*i as usize].split_amount.is_some_and(|v| v != 0))
                    .flat_map(|i| [i, i])
                    .collect()
            } else {
                (0..payment.lines.len() as u32).collect()
            };
            let object = Object {
                object_id: Some(id.to_string()),
                payment_id: Some(id.to_string()),
                merchant_reference: Some(payment.merchant_reference.clone()),
            };
            (object, Some(payment), lines)
        }
        EntryKind::MarketplaceRefund | EntryKind::MarketplaceRefundReversal => {
            let id = RefundId::parse(source).map_err(|_| missing(merchant, "refund id"))?;
            let (refund, payment) = load_refund(store, merchant, &id)?;
            let lines = refund.splits.iter().filter(|p| p.amount.value != 0).map(|p| p.line).collect();
            let object = Object {
                object_id: Some(id.to_string()),
                payment_id: Some(payment.id.to_string()),
                merchant_reference: Some(payment.merchant_reference.clone()),
            };
            (object, Some(payment), lines)
        }
        EntryKind::RecipientWithdrawal
        | EntryKind::RecipientWithdrawalPaid
        | EntryKind::RecipientWithdrawalReversal => {
            let id = RecipientWithdrawalId::parse(source).map_err(|_| missing(merchant, "withdrawal id"))?;
            let object = Object { object_id: Some(id.to_string()), ..Object::default() };
            (object, None, vec![])
        }
        _ => return Err(missing(merchant, "a marketplace entry kind")),
    };
    // A collection's first posting is the clearing; the others start with the lines.
    let skip = usize::from(entry.kind == EntryKind::MarketplaceCollection);
    let mut described = vec![None; entry.postings.len()];
    if skip + lines.len() > entry.postings.len() {
        return Err(missing(merchant, "the postings of a payment's lines"));
    }
    if let Some(payment) = &payment {
        for (slot, line) in lines.into_iter().enumerate() {
            let (of, accounts) = line_of(payment, line).ok_or_else(|| missing(merchant, "a payment line"))?;
            if !accounts.contains(&entry.postings[skip + slot].account) {
                return Err(missing(merchant, "the line of a posting"));
            }
            described[skip + slot] = Some(of);
        }
    }
    Ok(Described { object, lines: described })
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
fn rows_of(entry: &JournalEntry, described: Described) -> impl Iterator<Item = Row> + '_ {
    let Described { object, lines } = described;
    let posted_at = entry.created_at.to_rfc3339();
    entry.postings.iter().zip(lines).map(move |(p, line)| {
        let (party_type, party_id) = party_of(&p.account);
        let (line, split_type, merchant_reference) = match line {
            Some(l) => (Some(l.line), Some(l.split_type.to_owned()), Some(l.merchant_reference)),
            None => (None, None, object.merchant_reference.clone()),
        };
        Row {
            entry_id: entry.id.to_string(),
            posted_at: posted_at.clone(),
            kind: entry.kind.as_str(),
            object_id: object.object_id.clone(),
            payment_id: object.payment_id.clone(),
            merchant_reference,
            account: p.account.name(),
            party_type,
            party_id,
            line,
            split_type,
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
            let described = describe(store, merchant, &entry)?;
            for row in rows_of(&entry, described) {
                each(&row)?;
                rows += 1;
            }
        }
    }
}
