//! Timestamps are stored as Unix milliseconds and shown as RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_unix_ms(ms: i64) -> Self {
        Self(ms)
    }

    pub fn now_real() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn unix_ms(self) -> i64 {
        self.0
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0).single().unwrap_or_default()
    }

    /// `2026-11-22T08:00:00Z` (milliseconds only when not zero).
    pub fn to_rfc3339(self) -> String {
        let dt = self.to_datetime();
        let format = if self.0 % 1000 == 0 { SecondsFormat::Secs } else { SecondsFormat::Millis };
        dt.to_rfc3339_opts(format, true)
    }

    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(raw).ok().map(|dt| Self(dt.with_timezone(&Utc).timestamp_millis()))
    }

    pub fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-22T08:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T08:00:00Z");
        assert_eq!(Timestamp(t.0 + 5).to_rfc3339(), "2026-11-22T08:00:00.005Z");
        assert_eq!(Timestamp::parse_rfc3339("2026-11-22T09:00:00+01:00"), Some(t));
    }
}
