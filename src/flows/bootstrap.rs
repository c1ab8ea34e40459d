//! Start-up wiring of the upstreams: channel adapters for every channel; in
//! sandbox mode, the Sandbox Issuer with its two BINs on first start, and the
//! (re-)registration of sandbox channels and gateway accounts with the
//! simulators, whose addresses and Pelago's callback URL may change between
//! runs.

use pelago_actors::{
    keys::Index,
    merchant::{MerchantRecord, Sealed},
    ports::GatewayAccount,
    routing::{BinRecord, BinStatus, ChannelRecord},
};
use pelago_storage::{Currency, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{
    app::Core,
    flows::{Error, channels},
    security,
    upstreams::{channel_secret_context, open},
};

/// The platform's own gateway account (master-account merchants without one use it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformGatewayAccount {
    pub merchant_id: String,
    pub api_key: Sealed,
}

pelago_storage::record!(PlatformGatewayAccount, Meta, 1);

const PLATFORM_ACCOUNT_KEY: &str = "platform_gateway_account";
fn platform_account_context() -> String {
    crate::keys::Context::Gateway { merchant: "platform".into() }.text()
}

/// The platform gateway account, created (sealed) at first start.
pub async fn platform_account(app: &Core) -> Result<GatewayAccount, Error> {
    let account = match app.store.get::<PlatformGatewayAccount>(PLATFORM_ACCOUNT_KEY)? {
        Some(a) => a,
        None => {
            let key = format!("gwk_{}", security::random_token::<24>());
            let account = PlatformGatewayAccount {
                merchant_id: "pelago_platform".into(),
                api_key: Sealed(app.sealer.seal(key.as_bytes(), &platform_account_context())),
            };
            let mut batch = WriteBatch::new();
            batch.put(PLATFORM_ACCOUNT_KEY, &account)?;
            app.store.commit_durable(batch).await?;
            account
        }
    };
    let api_key =
        open(&app.sealer, &account.api_key, &platform_account_context()).map_err(|_| Error::internal())?;
    Ok(GatewayAccount { merchant_id: account.merchant_id, api_key })
}

/// The gateway account a merchant's money moves through: its own, or a
/// platform sub-account `pelago_{merchant_id}` whose key is derived from the
/// platform key (so deposits to its addresses name exactly one merchant).
pub async fn funding_account(app: &Core, merchant: &MerchantRecord) -> Result<GatewayAccount, Error> {
    if let Some(own) = merchant_account(app, merchant)? {
        return Ok(own);
    }
    platform_sub_account(app, &merchant.id).await
}

pub const SUB_ACCOUNT_PREFIX: &str = "pelago_";

pub async fn platform_sub_account(
    app: &Core,
    merchant: &pelago_storage::MerchantId,
) -> Result<GatewayAccount, Error> {
    use hmac::{Hmac, KeyInit, Mac};
    let platform = platform_account(app).await?;
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(platform.api_key.expose().as_bytes()).expect("any key length");
    mac.update(merchant.as_bytes());
    let key = format!("gwk_{}", hex::encode(mac.finalize().into_bytes()));
    Ok(GatewayAccount {
        merchant_id: format!("{SUB_ACCOUNT_PREFIX}{merchant}"),
        api_key: pelago_actors::ports::SecretString::new(key),
    })
}

/// The gateway account whose `merchant_id` at the gateway is `account_id`,
/// opened, with the merchant it belongs to (`None`: the platform's own). This
/// is how a callback's signing key is found and how an object is queried under
/// the account it was created under.
pub async fn account_by_id(
    app: &Core,
    account_id: &str,
) -> Result<Option<(Option<pelago_storage::MerchantId>, GatewayAccount)>, Error> {
    let platform = platform_account(app).await?;
    if platform.merchant_id == account_id {
        return Ok(Some((None, platform)));
    }
    if let Some(raw) = account_id.strip_prefix(SUB_ACCOUNT_PREFIX)
        && let Ok(merchant) = pelago_storage::MerchantId::parse(raw)
        && app.store.contains(Tree::Merchants, merchant.as_bytes())?
    {
        let sub = platform_sub_account(app, &merchant).await?;
        return Ok(Some((Some(merchant), sub)));
    }
    let Some(owner) = app
        .store
        .get_raw(Tree::Index, Index::GatewayAccount { gateway_merchant: account_id.to_owned() }.encode())?
    else {
        return Ok(None);
    };
    let Ok(merchant_id) = pelago_storage::MerchantId::parse(&String::from_utf8_lossy(&owner)) else {
        return Ok(None);
    };
    let Some(merchant) = app.store.get::<MerchantRecord>(merchant_id.as_bytes())? else { return Ok(None) };
    // The index may name an account the merchant has since replaced: only its current one signs.
    Ok(merchant_account(app, &merchant)?
        .filter(|a| a.merchant_id == account_id)
        .map(|a| (Some(merchant_id), a)))
}

/// A merchant's own gateway account, opened.
pub fn merchant_account(app: &Core, merchant: &MerchantRecord) -> Result<Option<GatewayAccount>, Error> {
    let Some(gw) = &merchant.gateway else { return Ok(None) };
    let api_key = open(
        &app.sealer,
        &gw.api_key,
        &crate::keys::Context::Gateway { merchant: merchant.id.to_string() }.text(),
    )
    .map_err(|_| Error::internal())?;
    Ok(Some(GatewayAccount { merchant_id: gw.merchant_id.clone(), api_key }))
}

pub fn callback_url_channel(app: &Core, record: &ChannelRecord) -> String {
    format!("{}/callbacks/channels/{}", app.public_base_url, record.id)
}

pub fn callback_url_gateway(app: &Core) -> String {
    format!("{}/callbacks/gateway", app.public_base_url)
}

/// Hands a sandbox channel's credentials and callback URL to the simulator.
pub async fn register_sandbox_channel(app: &Core, record: &ChannelRecord) -> Result<(), Error> {
    let control =
        app.upstreams.sandbox.as_ref().ok_or_else(|| Error::invalid("kind", "sandbox mode is off"))?;
    let api_key = open(&app.sealer, &record.api_key, &channel_secret_context(&record.id, "api_key"))
        .map_err(|_| Error::internal())?;
    let webhook_secret =
        open(&app.sealer, &record.webhook_secret, &channel_secret_context(&record.id, "webhook_secret"))
            .map_err(|_| Error::internal())?;
    control
        .register_channel(record.id.as_str(), &api_key, &webhook_secret, &callback_url_channel(app, record))
        .await
        .map_err(|e| Error::upstream(format!("the sandbox channel refused the registration: {e}")))
}

/// Hands a gateway account to the simulated gateway.
pub async fn register_sandbox_account(app: &Core, account: &GatewayAccount) -> Result<(), Error> {
    let Some(control) = &app.upstreams.sandbox else { return Ok(()) };
    control
        .register_gateway_account(&account.merchant_id, &account.api_key, &callback_url_gateway(app))
        .await
        .map_err(|e| Error::upstream(format!("the sandbox gateway refused the registration: {e}")))
}

/// Runs once at start, before the service reports ready.
pub async fn run(app: &Core) -> Result<(), Error> {
    if app.sandbox() {
        if app.store.len(Tree::Channels) == 0 {
            create_sandbox_issuer(app).await?;
        }
        for item in app.store.iter::<ChannelRecord>() {
            let (_, record) = item?;
            if record.kind == "sandbox" {
                register_sandbox_channel(app, &record).await?;
            }
        }
        register_sandbox_account(app, &platform_account(app).await?).await?;
        for item in app.store.iter::<MerchantRecord>() {
            let (_, merchant) = item?;
            register_sandbox_account(app, &funding_account(app, &merchant).await?).await?;
        }
    }
    let n = app.upstreams.load_all(&app.store, &app.sealer).map_err(|e| {
        tracing::error!(error = %e, "channel adapters could not be built");
        Error::internal()
    })?;
    tracing::info!(channels = n, "channel adapters ready");
    Ok(())
}

async fn create_sandbox_issuer(app: &Core) -> Result<(), Error> {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(Error::internal)?;
    let api_key = format!("chk_{}", security::random_token::<24>());
    let webhook_secret = format!("chw_{}", security::random_token::<24>());
    let record = channels::register_channel(
        app,
        "Sandbox Issuer".into(),
        "sandbox",
        control.channel_base_url(),
        &api_key,
        &webhook_secret,
    )
    .await?;
    for (bin, card_name, currency) in
        [("424242", "PELAGO_VIRTUAL_USD", Currency::USD), ("535353", "PELAGO_VIRTUAL_EUR", Currency::EUR)]
    {
        let bin = BinRecord {
            bin: bin.into(),
            channel_id: record.id.clone(),
            card_name: card_name.into(),
            currency,
            status: BinStatus::Active,
            priority: 0,
            created_at: app.clock.now(),
            version: 1,
        };
        channels::create_bin_record(app, &bin).await?;
    }
    tracing::warn!(channel_id = %record.id, "registered the Sandbox Issuer with BINs 424242 (USD) and 535353 (EUR)");
    Ok(())
}
