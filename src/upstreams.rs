//! The live upstream adapters: one per registered channel (rebuilt when the
//! channel changes), the gateway, and — in sandbox mode — the sandbox control
//! client. Credentials are opened from their sealed records only here.

use std::{collections::HashMap, sync::Arc};

use parking_lot::RwLock;
use pelago_actors::{
    merchant::Sealed,
    ports::{CardChannel, PaymentGateway, SecretString},
    routing::{BinRecord, ChannelRecord},
};
use pelago_storage::{ChannelId, Store, StoreError};

use crate::{
    security::secrets::{Sealer, SecretError},
    upstream::{UpstreamClient, UpstreamConfig, UpstreamError, sandbox::SandboxControl},
};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

pub struct Upstreams {
    client: UpstreamClient,
    channels: RwLock<HashMap<ChannelId, Arc<dyn CardChannel>>>,
    pub gateway: Arc<dyn PaymentGateway>,
    /// The gateway's marketplace calls (recipients' onboardings).
    pub marketplace: Arc<dyn pelago_actors::recipient::gateway::MarketplaceGateway>,
    /// The gateway's agreement signing (recipients' split and commission agreements).
    pub agreements: Arc<dyn pelago_actors::recipient::gateway::AgreementGateway>,
    /// The gateway's marketplace payments (checkout, capture, cancel).
    pub payments: Arc<dyn pelago_actors::payment::gateway::PaymentsGateway>,
    /// The gateway's bank payouts of recipient withdrawals.
    pub recipient_payouts: Arc<dyn pelago_actors::recipient::gateway::RecipientPayoutGateway>,
    /// Where the built-in simulators answer (sandbox mode only).
    pub sandbox: Option<SandboxControl>,
}

/// The sealing context of a channel credential.
pub fn channel_secret_context(id: &ChannelId, what: &str) -> String {
    crate::keys::Context::ChannelSecret { channel: id.clone(), what: what.to_owned() }.text()
}

pub fn open(sealer: &Sealer, sealed: &Sealed, context: &str) -> Result<SecretString, SecretError> {
    Ok(SecretString::new(sealer.open_string(&sealed.0, context)?))
}

impl Upstreams {
    /// `gateway_base_url`: the gateway's root; `sandbox`: the simulators'
    /// root URL and the control token they were started with.
    pub fn new(
        timeout_ms: u64,
        gateway_base_url: &str,
        sandbox: Option<(&str, SecretString)>,
        calls: Arc<crate::metrics::UpstreamCalls>,
    ) -> Result<Upstreams, UpstreamError> {
        let client = UpstreamClient::new(UpstreamConfig { timeout_ms })?.observed_by(calls);
        let gateway = client.gateway(gateway_base_url);
        let marketplace = Arc::new(crate::upstream::gateway_marketplace::HttpMarketplaceGateway::new(
            client.labelled("gateway"),
            gateway_base_url,
        ));
        let agreements =
            Arc::clone(&marketplace) as Arc<dyn pelago_actors::recipient::gateway::AgreementGateway>;
        let payments = Arc::clone(&marketplace) as Arc<dyn pelago_actors::payment::gateway::PaymentsGateway>;
        let recipient_payouts =
            Arc::clone(&marketplace) as Arc<dyn pelago_actors::recipient::gateway::RecipientPayoutGateway>;
        let sandbox = sandbox.map(|(root, token)| client.sandbox_control(root, token));
        Ok(Upstreams {
            client,
            channels: RwLock::new(HashMap::new()),
            gateway,
            marketplace,
            agreements,
            payments,
            recipient_payouts,
            sandbox,
        })
    }

    /// The adapter of a channel record (sandbox channels use the live simulator address).
    pub fn build(
        &self,
        sealer: &Sealer,
        record: &ChannelRecord,
    ) -> Result<Arc<dyn CardChannel>, UpstreamsError> {
        let api_key = open(sealer, &record.api_key, &channel_secret_context(&record.id, "api_key"))?;
        let base_url = match (&self.sandbox, record.kind.as_str()) {
            (Some(control), "sandbox") => control.channel_base_url(),
            _ => record.base_url.clone(),
        };
        Ok(self.client.labelled(record.id.as_str()).channel_adapter(&record.kind, &base_url, api_key)?)
    }

    /// Installs (or replaces) the adapter for `record`.
    pub fn install(&self, sealer: &Sealer, record: &ChannelRecord) -> Result<(), UpstreamsError> {
        let adapter = self.build(sealer, record)?;
        self.channels.write().insert(record.id.clone(), adapter);
        Ok(())
    }

    pub fn channel(&self, id: &ChannelId) -> Option<Arc<dyn CardChannel>> {
        self.channels.read().get(id).cloned()
    }

    /// Loads every channel of the store.
    pub fn load_all(&self, store: &Store, sealer: &Sealer) -> Result<usize, UpstreamsError> {
        let mut n = 0;
        for item in store.iter::<ChannelRecord>() {
            let (_, record) = item?;
            self.install(sealer, &record)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Every BIN and channel, for routing (a handful of records: read per request).
pub fn routing_tables(
    store: &Store,
) -> Result<(Vec<BinRecord>, HashMap<ChannelId, ChannelRecord>), StoreError> {
    let bins = store.iter::<BinRecord>().map(|r| r.map(|(_, b)| b)).collect::<Result<Vec<_>, _>>()?;
    let channels = store
        .iter::<ChannelRecord>()
        .map(|r| r.map(|(_, c)| (c.id.clone(), c)))
        .collect::<Result<HashMap<_, _>, _>>()?;
    Ok((bins, channels))
}

impl pelago_actors::ports::ChannelDirectory for Upstreams {
    fn channel(&self, id: &ChannelId) -> Option<Arc<dyn CardChannel>> {
        Upstreams::channel(self, id)
    }
}
