//! Scheduled jobs (monthly billing, daily settlement) driven by cron
//! expressions on the service clock.

pub mod scheduler;

/// Parses a cron expression (5 or 6 fields; seconds optional), UTC.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    expr.parse::<croner::Cron>().map_err(|e| format!("not a cron expression: {e}"))
}
