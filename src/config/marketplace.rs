//! The marketplace's local calendar (MARKETPLACE.md §1): a fixed UTC offset
//! (`PELAGO_MARKETPLACE_UTC_OFFSET`, default `+08:00`) in which the
//! withdrawal window (`PELAGO_WITHDRAWAL_WINDOW`, default `07:00-20:00`,
//! start inclusive, end exclusive) and the reconciliation days are read on the
//! service clock. Pure: the callers pass the service clock's now.

use chrono::{FixedOffset, NaiveDate, NaiveTime, TimeZone, Timelike};
use pelago_storage::Timestamp;

/// A fixed offset from UTC, `+HH:MM` or `-HH:MM` (−12:00 to +14:00).
pub fn parse_utc_offset(raw: &str) -> Result<FixedOffset, String> {
    let expected = || format!("expected an offset like +08:00 or -05:30, got `{raw}`");
    let bytes = raw.as_bytes();
    if bytes.len() != 6 || bytes[3] != b':' || !matches!(bytes[0], b'+' | b'-') {
        return Err(expected());
    }
    let hours: i32 = raw[1..3].parse().map_err(|_| expected())?;
    let minutes: i32 = raw[4..6].parse().map_err(|_| expected())?;
    if !raw[1..3].bytes().all(|b| b.is_ascii_digit()) || !raw[4..6].bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    if minutes > 59 {
        return Err(expected());
    }
    let seconds = (hours * 60 + minutes) * 60;
    let signed = if bytes[0] == b'-' { -seconds } else { seconds };
    if !(-12 * 3600..=14 * 3600).contains(&signed) {
        return Err(format!("must be between -12:00 and +14:00, got `{raw}`"));
    }
    FixedOffset::east_opt(signed).ok_or_else(expected)
}

/// The daily withdrawal window, local time at the marketplace offset:
/// open from `start` (inclusive) to `end` (exclusive); a window whose end is
/// before its start runs over midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithdrawalWindow {
    start: NaiveTime,
    end: NaiveTime,
}

impl WithdrawalWindow {
    /// `HH:MM-HH:MM`; start and end differ.
    pub fn parse(raw: &str) -> Result<WithdrawalWindow, String> {
        let expected = || format!("expected `HH:MM-HH:MM` like 07:00-20:00, got `{raw}`");
        let (start, end) = raw.split_once('-').ok_or_else(expected)?;
        let time =
            |t: &str| (t.len() == 5).then_some(()).and_then(|()| NaiveTime::parse_from_str(t, "%H:%M").ok());
        let (Some(start), Some(end)) = (time(start), time(end)) else { return Err(expected()) };
        if start == end {
            return Err(format!("the window must not be empty, got `{raw}`"));
        }
        Ok(WithdrawalWindow { start, end })
    }

    /// Whether a withdrawal may be asked for at `now` (service clock).
    pub fn is_open(&self, now: Timestamp, offset: FixedOffset) -> bool {
        let local = now.to_datetime().with_timezone(&offset).time();
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// `07:00-20:00`, as configured.
    pub fn describe(&self) -> String {
        format!(
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )
    }
}

impl Default for WithdrawalWindow {
    fn default() -> Self {
        WithdrawalWindow::parse("07:00-20:00").expect("literal window")
    }
}

/// The local date of `at` at `offset`.
pub fn local_date(at: Timestamp, offset: FixedOffset) -> NaiveDate {
    at.to_datetime().with_timezone(&offset).date_naive()
}

/// The instants `[start, end)` of the local day `date` at `offset`.
pub fn day_bounds(date: NaiveDate, offset: FixedOffset) -> (Timestamp, Timestamp) {
    let start = |d: NaiveDate| {
        let local = d.and_time(NaiveTime::MIN);
        let at = offset.from_local_datetime(&local).single().expect("a fixed offset has no gaps");
        Timestamp::from_unix_ms(at.timestamp_millis())
    };
    let next = date.succ_opt().unwrap_or(date);
    (start(date), start(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::parse_rfc3339(rfc3339).unwrap()
    }

    /// MARKETPLACE.md §7's four boundary instants at +08:00, default window.
    #[test]
    fn the_four_boundaries_of_section_7() {
        let offset = parse_utc_offset("+08:00").unwrap();
        let window = WithdrawalWindow::default();
        assert!(!window.is_open(at("2026-11-23T22:59:59Z"), offset));
        assert!(window.is_open(at("2026-11-23T23:00:00Z"), offset));
        assert!(window.is_open(at("2026-11-24T11:59:59Z"), offset));
        assert!(!window.is_open(at("2026-11-24T12:00:00Z"), offset));
    }

    #[test]
    fn a_window_over_midnight_wraps() {
        let offset = parse_utc_offset("+00:00").unwrap();
        let window = WithdrawalWindow::parse("22:00-06:00").unwrap();
        assert!(window.is_open(at("2026-11-23T23:30:00Z"), offset));
        assert!(window.is_open(at("2026-11-24T05:59:59Z"), offset));
        assert!(!window.is_open(at("2026-11-24T06:00:00Z"), offset));
        assert!(!window.is_open(at("2026-11-24T21:59:59Z"), offset));
        assert_eq!(window.describe(), "22:00-06:00");
    }

    #[test]
    fn offsets_and_windows_are_checked() {
        for bad in ["08:00", "+8:00", "+08:60", "+15:00", "-13:00", "+08-00", "+0a:00", ""] {
            assert!(parse_utc_offset(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_utc_offset("-05:30").unwrap().local_minus_utc(), -(5 * 3600 + 1800));
        for bad in ["07:00", "7:00-20:00", "07:00-24:00", "07:00-07:00", "07:00 - 20:00"] {
            assert!(WithdrawalWindow::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_local_day_is_24_hours_starting_at_local_midnight() {
        let offset = parse_utc_offset("+08:00").unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let (start, end) = day_bounds(d, offset);
        assert_eq!(start, at("2026-11-22T16:00:00Z"));
        assert_eq!(end, at("2026-11-23T16:00:00Z"));
        assert_eq!(local_date(start, offset), d);
        assert_eq!(local_date(end.plus_ms(-1), offset), d);
        assert_eq!(local_date(end, offset), d.succ_opt().unwrap());
    }
}
