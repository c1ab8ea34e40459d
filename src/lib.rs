//! `pelago-card`: the front door and the wiring. `http/` (warp, one file per
//! resource, request authentication, and the webhooks it sends) and `jobs/`
//! (schedules) call `flows/` (the sagas across actors, with their own error),
//! which run on `app::Core`; below them `upstream/` (reqwest adapters for
//! channels and the gateway), `sandbox/` (the simulated channel and gateway,
//! served with `--sandbox`), `security/` (signing, secrets, tokens),
//! `config`, `telemetry`, `metrics`; `server` (start-up and shutdown) wires
//! them. The stateful core is `pelago-actors`; the store is `pelago-storage`.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod failpoint;
pub mod flows;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod receipts;
pub mod sandbox;
pub mod security;
pub mod server;
pub mod telemetry;
pub mod upstream;
pub mod upstreams;
