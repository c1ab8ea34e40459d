//! `pelago-card`: the front door and the wiring. `http/` (warp, one file per
//! resource), `upstream/` (reqwest adapters for channels and the gateway),
//! `sandbox/` (the simulated channel and gateway, served with `--sandbox`),
//! `security/` (signing, secrets, tokens), `merchants/` (request
//! authentication), `jobs/` (schedules), `config`, `telemetry`, `metrics`,
//! `server` (start-up and shutdown). The stateful core is `pelago-actors`;
//! the store is `pelago-storage`.

pub mod app;
pub mod billing;
pub mod bootstrap;
pub mod cardholders;
pub mod cards;
pub mod cli;
pub mod clock;
pub mod config;
pub mod data_mode;
pub mod failpoint;
pub mod flows;
pub mod http;
pub mod jobs;
pub mod merchants;
pub mod metrics;
pub mod money;
pub mod orders;
pub mod receipts;
pub mod sandbox;
pub mod security;
pub mod server;
pub mod settlement;
pub mod telemetry;
pub mod topups;
pub mod upstream;
pub mod upstreams;
pub mod webhooks;
pub mod withdrawals;
