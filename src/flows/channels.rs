//! Channel and BIN registration (API.md §3): the writes behind the operator
//! routes and the sandbox bootstrap. Credentials are sealed at rest; a new
//! channel's adapter is installed at once.

use pelago_actors::{
    merchant::Sealed,
    routing::{BinRecord, ChannelRecord, ChannelStatus},
};
use pelago_storage::{ChannelId, Tree, WriteBatch};

use super::Error;
use crate::{app::Core, upstreams::channel_secret_context};

/// Creates a channel record (sealing its credentials) and installs its adapter;
/// registers it with the simulator when it is a sandbox channel.
pub async fn register_channel(
    app: &Core,
    name: String,
    kind: &str,
    base_url: String,
    api_key: &str,
    webhook_secret: &str,
) -> Result<ChannelRecord, Error> {
    let id = ChannelId::generate();
    let record = ChannelRecord {
        id: id.clone(),
        name,
        kind: kind.to_owned(),
        base_url,
        api_key: Sealed(app.sealer.seal(api_key.as_bytes(), &channel_secret_context(&id, "api_key"))),
        webhook_secret: Sealed(
            app.sealer.seal(webhook_secret.as_bytes(), &channel_secret_context(&id, "webhook_secret")),
        ),
        status: ChannelStatus::Active,
        created_at: app.clock.now(),
        version: 1,
    };
    if kind == "sandbox" {
        super::bootstrap::register_sandbox_channel(app, &record).await?;
    }
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::Channels, id.as_bytes());
    batch.put(id.as_bytes(), &record)?;
    app.store.commit_durable(batch).await?;
    app.upstreams.install(&app.sealer, &record).map_err(|e| {
        tracing::error!(channel_id = %id, error = %e, "channel adapter could not be built");
        Error::internal()
    })?;
    Ok(record)
}

/// Stores a new BIN; a duplicate is 409.
pub async fn create_bin_record(app: &Core, record: &BinRecord) -> Result<(), Error> {
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::Bins, record.bin.as_bytes());
    batch.put(record.bin.as_bytes(), record)?;
    app.store.commit_durable(batch).await.map_err(|e| match e {
        pelago_storage::StoreError::Conflict { .. } => {
            Error::invalid_state(format!("BIN {} already exists", record.bin))
        }
        other => other.into(),
    })
}
