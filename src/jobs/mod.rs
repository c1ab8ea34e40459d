//! Scheduled jobs (monthly billing, daily settlement) driven by cron
//! expressions on the service clock.

pub mod scheduler;
