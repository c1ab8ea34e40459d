//! The guard against date time bombs (issue 13): a test file whose tests move
//! the service clock re-runs its own tests under a real time far from today,
//! through libfaketime, so a test that writes a literal date fails the day it
//! is written, not the day the calendar passes it. Everything the child run
//! starts (the service, the Python receiver) inherits the fake time; monotonic
//! clocks stay real, so timeouts keep their length.
//!
//! The date is `PELAGO_FAR_DATE` (`YYYY-MM-DD HH:MM:SS`, UTC) when set, else a
//! random instant 1 to 6 years from today, printed so a failure can be re-run.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

/// Set in the child run: the far instant it was started at.
pub const CHILD_ENV: &str = "PELAGO_FAR_DATE_CHILD";

/// In the child run, the instant it started at (real time there moves on from it).
pub fn child_start() -> Option<DateTime<Utc>> {
    let raw = std::env::var(CHILD_ENV).ok()?;
    Some(super::clock::parse(&raw))
}

/// Asserts that `seen` (a time the service or the test read) is the far time
/// of the child run, when this is one: the fake time really moved it.
pub fn assert_moved(seen: DateTime<Utc>) {
    if let Some(start) = child_start() {
        let ahead = seen - start;
        assert!(
            ahead >= chrono::Duration::zero() && ahead < chrono::Duration::days(400),
            "the far-date run started at {start} but the service clock reads {seen}: the fake time did not reach it"
        );
    }
}

/// Re-runs every other test of this test binary with the real time at a far
/// date; passes when they all pass. `guard` is the calling test's own name,
/// skipped in the child.
pub fn rerun_this_binary_far_from_today(guard: &str) {
    if child_start().is_some() {
        return; // the child's copy of the guard
    }
    ensure_faketime();
    let far = match std::env::var("PELAGO_FAR_DATE") {
        Ok(date) => date,
        Err(_) => {
            let days = 365 + rand::random_range(0..5 * 365);
            let at = Utc::now()
                + chrono::Duration::days(days)
                + chrono::Duration::seconds(rand::random_range(0..86_400));
            at.format("%Y-%m-%d %H:%M:%S").to_string()
        }
    };
    let start = format!("{}Z", far.replace(' ', "T"));
    eprintln!(
        "far-date guard: re-running this binary's tests at {far} UTC (PELAGO_FAR_DATE={far:?} repeats it)"
    );
    let exe = std::env::current_exe().expect("the test binary's path");
    let started = Instant::now();
    let status = Command::new("faketime")
        .arg(&far)
        .arg(&exe)
        .args(["--skip", guard, "--test-threads", "2"])
        .env("TZ", "UTC")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env(CHILD_ENV, &start)
        .status()
        .expect("run faketime");
    assert!(status.success(), "the tests failed with the real time at {far} UTC ({:?})", started.elapsed());
}

/// Installs Debian's `faketime` when it is missing (the tests install what
/// they need, like the browser tests); a failure to install fails the test.
fn ensure_faketime() {
    let found = || Command::new("faketime").arg("--version").output().is_ok_and(|o| o.status.success());
    if found() {
        return;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(root, "faketime is missing and installing it needs root: apt-get install faketime");
    let deadline = Instant::now() + Duration::from_secs(600);
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "--no-install-recommends", "faketime"][..]]
    {
        let out = Command::new("timeout")
            .arg(deadline.saturating_duration_since(Instant::now()).as_secs().max(1).to_string())
            .arg("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("run apt-get");
        assert!(out.status.success(), "apt-get {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(found(), "apt-get installed faketime but it does not run");
}
