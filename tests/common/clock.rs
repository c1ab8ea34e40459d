//! The service clock from a test: instants are derived from the service
//! clock's current value, never written as literal dates, so every test
//! passes on any day it runs.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::Service;

/// The service clock's now (`GET /admin/v1/test_helpers/clock`).
pub async fn now(svc: &Service) -> DateTime<Utc> {
    let clock = svc.admin_get("/admin/v1/test_helpers/clock").await;
    let now = parse(clock["now"].as_str().unwrap_or_else(|| panic!("no clock: {clock}")));
    super::far_dates::assert_moved(now);
    now
}

/// Sets the service clock to `at`; returns the helper's answer.
pub async fn set(svc: &Service, at: DateTime<Utc>) -> Value {
    let (status, answer) = svc
        .admin_json(reqwest::Method::POST, "/admin/v1/test_helpers/clock", Some(json!({"now": rfc3339(at)})))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    answer
}

pub fn parse(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("an RFC 3339 time").with_timezone(&Utc)
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// 00:00:00 UTC on the first day of the month `months` after the month of `at`.
pub fn month_start_after(at: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    let index = at.year() * 12 + at.month0() as i32 + months as i32;
    Utc.with_ymd_and_hms(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1, 0, 0, 0).unwrap()
}

/// `hh:mm:ss` UTC on the day `days` after the day of `at`.
pub fn day_after(at: DateTime<Utc>, days: i64, hh: u32, mm: u32, ss: u32) -> DateTime<Utc> {
    let day = at.date_naive() + Duration::days(days);
    day.and_time(NaiveTime::from_hms_opt(hh, mm, ss).unwrap()).and_utc()
}

/// The billing period (`YYYY-MM`) of `at`.
pub fn period(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// The date (`YYYY-MM-DD`) of `at`.
pub fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}
