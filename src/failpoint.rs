//! Failpoints for crash and fault tests. `PELAGO_FAILPOINTS` holds a
//! comma-separated list of `name` (the process aborts there, like a SIGKILL:
//! no drain, no flush) or `name=error` (the step fails once there, as if its
//! upstream had failed), so a test can crash or fail the service between two
//! exact commits of a saga. Read once at start and honoured only in sandbox
//! mode (a live start with it set refuses to start: `server/mod.rs`); with nothing
//! armed, a point costs one atomic load.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

/// The environment variable that arms failpoints.
pub const ENV: &str = "PELAGO_FAILPOINTS";

struct Armed {
    name: String,
    abort: bool,
    fired: AtomicBool,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

/// Arms the failpoints named in [`ENV`] (called once at start, sandbox only).
pub fn arm_from_env() {
    let raw = std::env::var(ENV).unwrap_or_default();
    let armed = raw
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|spec| {
            let (name, abort) = match spec.strip_suffix("=error") {
                Some(name) => (name, false),
                None => (spec, true),
            };
            Armed { name: name.to_owned(), abort, fired: AtomicBool::new(false) }
        })
        .collect();
    let _ = ARMED.set(armed);
}

fn armed(name: &str, abort: bool) -> Option<&'static Armed> {
    ARMED.get()?.iter().find(|a| a.name == name && a.abort == abort)
}

/// Aborts the process here if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if armed(name, true).is_some() {
        tracing::warn!(failpoint = name, "failpoint reached: aborting the process");
        std::process::abort();
    }
}

/// True the first time `name=error` is reached: the caller fails that step.
pub fn fails_once(name: &str) -> bool {
    armed(name, false).is_some_and(|a| !a.fired.swap(true, Ordering::SeqCst))
}
