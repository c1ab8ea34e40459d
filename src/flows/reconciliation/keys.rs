//! Every key the reconciliation flow reads or writes, typed: one place
//! encodes and parses them (no `format!` spelled where a key is used).

use chrono::NaiveDate;
use pelago_storage::{MerchantId, Timestamp};

/// A key of the reconciliation flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `Tree::ReconciliationRuns`: the run of a local day, `YYYY-MM-DD`.
    Run { date: NaiveDate },
    /// `Tree::Index` `rcnfile/{date}/{merchant}` → the row count: the
    /// merchant's files of that day are built, renamed into place and will
    /// never change. Written once, with `reconciliation.ready`.
    File { date: NaiveDate, merchant: MerchantId },
    /// The prefix of every [`Key::File`] of a day.
    FilesOf { date: NaiveDate },
    /// `Tree::Index`: the first possible key of the merchant's marketplace
    /// entries booked at or after `at` (the actor's
    /// `merchant::actor::marketplace_entry_index` rows sort by time).
    EntriesFrom { merchant: MerchantId, at: Timestamp },
}

impl Key {
    pub fn encode(&self) -> String {
        match self {
            Key::Run { date } => date.format("%Y-%m-%d").to_string(),
            Key::File { date, merchant } => format!("rcnfile/{}/{merchant}", date.format("%Y-%m-%d")),
            Key::FilesOf { date } => format!("rcnfile/{}/", date.format("%Y-%m-%d")),
            Key::EntriesFrom { merchant, at } => format!(
                "{}{:020}/",
                pelago_actors::merchant::actor::marketplace_entry_prefix(merchant),
                at.unix_ms().max(0)
            ),
        }
    }

    /// A [`Key::File`] row's key back into its date and merchant.
    pub fn parse_file(raw: &[u8]) -> Option<Key> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut parts = text.strip_prefix("rcnfile/")?.split('/');
        let date = parse_date(parts.next()?)?;
        let merchant = MerchantId::parse(parts.next()?).ok()?;
        parts.next().is_none().then_some(Key::File { date, merchant })
    }
}

/// `YYYY-MM-DD` exactly.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    (raw.len() == 10).then_some(())?;
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_round_trip_and_sort_by_time() {
        let date = parse_date("2026-11-23").unwrap();
        let merchant = MerchantId::generate();
        let key = Key::File { date, merchant: merchant.clone() };
        assert_eq!(Key::parse_file(key.encode().as_bytes()), Some(key.clone()));
        assert!(key.encode().starts_with(&Key::FilesOf { date }.encode()));
        assert_eq!(Key::parse_file(b"rcnfile/2026-11-23/x/y"), None);
        let early = Key::EntriesFrom { merchant: merchant.clone(), at: Timestamp::from_unix_ms(999) };
        let late = Key::EntriesFrom { merchant, at: Timestamp::from_unix_ms(1000) };
        assert!(early.encode() < late.encode());
        for bad in ["2026-1-23", "2026-11-31", "20261123", "2026-11-23x"] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
