//! Sandbox and live data never mix (SANDBOX.md). A data dir records, in its
//! store, the mode it was created in; a start in the other mode is refused
//! with one line naming both. In sandbox mode no channel of kind `http` may be
//! active (the gateway URL rule is a setting: `config.rs`).
//!
//! Data dirs from before the mode was recorded are classified once by what
//! they hold: the simulators' directory, a service-clock offset or a channel
//! of kind `sandbox` mean sandbox; any other merchant or channel means live;
//! an empty store takes the mode it is started in.

use std::path::Path;

use pelago_actors::routing::{ChannelRecord, ChannelStatus};
use pelago_storage::{Store, Tree, WriteBatch};

use super::StartRefused;

const MODE_KEY: &str = "data_mode";
/// Where `crate::clock` keeps a sandbox clock offset (evidence of a sandbox dir).
const CLOCK_OFFSET_KEY: &str = "clock_offset_ms";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMode {
    Sandbox,
    Live,
}

impl DataMode {
    pub fn of(sandbox: bool) -> DataMode {
        if sandbox { DataMode::Sandbox } else { DataMode::Live }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataMode::Sandbox => "sandbox",
            DataMode::Live => "live",
        }
    }

    fn parse(bytes: &[u8]) -> Option<DataMode> {
        match bytes {
            b"sandbox" => Some(DataMode::Sandbox),
            b"live" => Some(DataMode::Live),
            _ => None,
        }
    }
}

/// Checks the data dir against the mode of this start and records the mode
/// on first use. Nothing is written unless every rule holds.
pub async fn check_and_record(store: &Store, data_dir: &Path, sandbox: bool) -> anyhow::Result<()> {
    let starting = DataMode::of(sandbox);
    let recorded = match store.get_raw(Tree::Meta, MODE_KEY)? {
        Some(bytes) => Some(DataMode::parse(&bytes).ok_or_else(|| {
            StartRefused(format!(
                "the data dir {} records an unknown mode; it cannot be started",
                data_dir.display()
            ))
        })?),
        None => None,
    };
    let created_in = match recorded {
        Some(mode) => mode,
        None => classify_unrecorded(store, data_dir)?.unwrap_or(starting),
    };
    if created_in != starting {
        return Err(StartRefused(format!(
            "the data dir {} was created in {} mode and cannot be started in {} mode (sandbox and live data never mix)",
            data_dir.display(),
            created_in.as_str(),
            starting.as_str(),
        ))
        .into());
    }
    if starting == DataMode::Sandbox {
        for item in store.iter::<ChannelRecord>() {
            let (_, channel) = item?;
            if channel.kind == "http" && channel.status == ChannelStatus::Active {
                return Err(StartRefused(format!(
                    "sandbox mode: channel {} of kind http is active in the data dir {}; disable it in live mode or use another data dir",
                    channel.id,
                    data_dir.display(),
                ))
                .into());
            }
        }
    }
    if recorded.is_none() {
        let mut batch = WriteBatch::new();
        batch.put_raw(Tree::Meta, MODE_KEY, starting.as_str().as_bytes().to_vec());
        store.commit_durable(batch).await?;
        tracing::info!(mode = starting.as_str(), "recorded the data dir's mode");
    }
    Ok(())
}

/// The mode a data dir from before the mode was recorded was used in, if it shows.
fn classify_unrecorded(store: &Store, data_dir: &Path) -> anyhow::Result<Option<DataMode>> {
    if data_dir.join("sandbox").exists() || store.contains(Tree::Meta, CLOCK_OFFSET_KEY)? {
        return Ok(Some(DataMode::Sandbox));
    }
    let mut channels = 0;
    for item in store.iter::<ChannelRecord>() {
        let (_, channel) = item?;
        if channel.kind == "sandbox" {
            return Ok(Some(DataMode::Sandbox));
        }
        channels += 1;
    }
    if channels > 0 || store.len(Tree::Merchants) > 0 {
        return Ok(Some(DataMode::Live));
    }
    Ok(None)
}
