//! Merchant records and their pure commands.
//!
//! Secrets are held sealed (AES-256-GCM, by the binary's `security::secrets`);
//! this crate only stores and moves the sealed bytes and never sees plaintext.

use pelago_storage::{ApiKeyId, Currency, MerchantId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::Reject;

crate::wire_enum! {
    pub enum MerchantStatus {
        Active = "active",
        Suspended = "suspended",
    }
}

crate::wire_enum! {
    pub enum FundingMode {
        Gateway = "gateway",
        MasterAccount = "master_account",
    }
}

/// Bytes sealed by the master key; opaque here. Debug never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed(pub Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[sealed]")
    }
}

/// API.md §3 FeeSchedule. Missing components are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    pub currency: Currency,
    pub application_fixed: i64,
    pub topup_fixed: i64,
    pub topup_rate_bps: i64,
    pub monthly_fixed: i64,
}

impl FeeSchedule {
    /// `fixed + (a * rate_bps + 5000) / 10000` (half up), checked.
    pub fn topup_fee(&self, amount_minor: i64) -> Option<i64> {
        let variable = pelago_storage::money::half_up_bps(amount_minor, self.topup_rate_bps);
        let fee = self.topup_fixed as i128 + variable;
        i64::try_from(fee).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalAddress {
    pub address: String,
    pub network: String,
    pub label: Option<String>,
}

/// At most this many whitelisted withdrawal addresses (API.md §3).
pub const MAX_WITHDRAWAL_ADDRESSES: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayAccountRecord {
    pub merchant_id: String,
    pub api_key: Sealed,
}

/// A webhook signing secret; after rotation the old one signs beside the new
/// one until `retires_at` (SECURITY.md: 24 h).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecret {
    pub secret: Sealed,
    pub created_at: Timestamp,
    pub retires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRecord {
    pub id: MerchantId,
    pub name: String,
    pub status: MerchantStatus,
    pub funding_mode: FundingMode,
    pub webhook_url: Option<String>,
    pub allowed_card_names: Vec<String>,
    pub gateway: Option<GatewayAccountRecord>,
    pub fees: Vec<FeeSchedule>,
    pub withdrawal_addresses: Vec<WithdrawalAddress>,
    pub webhook_secrets: Vec<WebhookSecret>,
    /// Cached balances per currency, derived from the merchant's journal postings.
    pub balances: Vec<crate::ledger::CurrencyBalance>,
    pub created_at: Timestamp,
    pub version: u64,
}

pelago_storage::record!(MerchantRecord, Merchants, 1);

/// An API key. The key id is public; the secret is sealed under the key id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: ApiKeyId,
    pub merchant_id: MerchantId,
    pub secret: Sealed,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

pelago_storage::record!(ApiKeyRecord, ApiKeys, 1);

/// A change to a merchant's configuration (the pure part of each command).
#[derive(Debug, Clone)]
pub enum ConfigChange {
    Patch {
        status: Option<MerchantStatus>,
        webhook_url: Option<Option<String>>,
        allowed_card_names: Option<Vec<String>>,
    },
    PutFees(FeeSchedule),
    PutWithdrawalAddresses(Vec<WithdrawalAddress>),
    /// Adds a new webhook secret; the current ones retire at `old_retire_at`.
    RotateWebhookSecret {
        secret: Sealed,
        old_retire_at: Timestamp,
    },
}

impl MerchantRecord {
    /// A new active merchant with nothing configured yet (version 1).
    pub fn new(id: MerchantId, name: String, funding_mode: FundingMode, created_at: Timestamp) -> Self {
        MerchantRecord {
            id,
            name,
            status: MerchantStatus::Active,
            funding_mode,
            webhook_url: None,
            allowed_card_names: vec![],
            gateway: None,
            fees: vec![],
            withdrawal_addresses: vec![],
            webhook_secrets: vec![],
            balances: vec![],
            created_at,
            version: 1,
        }
    }

    pub fn fee_schedule(&self, currency: Currency) -> Option<&FeeSchedule> {
        self.fees.iter().find(|f| f.currency == currency)
    }

    /// Applies a configuration change, bumping the version.
    pub fn apply(&mut self, change: ConfigChange, now: Timestamp) -> Result<(), Reject> {
        match change {
            ConfigChange::Patch { status, webhook_url, allowed_card_names } => {
                if let Some(s) = status {
                    self.status = s;
                }
                if let Some(url) = webhook_url {
                    self.webhook_url = url;
                }
                if let Some(names) = allowed_card_names {
                    self.allowed_card_names = names;
                }
            }
            ConfigChange::PutFees(schedule) => {
                self.fees.retain(|f| f.currency != schedule.currency);
                self.fees.push(schedule);
                self.fees.sort_by_key(|f| f.currency);
            }
            ConfigChange::PutWithdrawalAddresses(addresses) => {
                if addresses.len() > MAX_WITHDRAWAL_ADDRESSES {
                    return Err(Reject::invalid("addresses", "at most 3 withdrawal addresses"));
                }
                self.withdrawal_addresses = addresses;
            }
            ConfigChange::RotateWebhookSecret { secret, old_retire_at } => {
                // Secrets already past their retirement are dropped; the rest retire at the latest in 24 h.
                self.webhook_secrets.retain(|s| s.retires_at.is_none_or(|t| t > now));
                for s in &mut self.webhook_secrets {
                    s.retires_at = Some(s.retires_at.map_or(old_retire_at, |t| t.min(old_retire_at)));
                }
                self.webhook_secrets.push(WebhookSecret { secret, created_at: now, retires_at: None });
            }
        }
        self.version += 1;
        Ok(())
    }

    /// The secrets that sign a webhook sent at `now` (newest first).
    pub fn signing_secrets(&self, now: Timestamp) -> impl Iterator<Item = &Sealed> {
        self.webhook_secrets
            .iter()
            .rev()
            .filter(move |s| s.retires_at.is_none_or(|t| t > now))
            .map(|s| &s.secret)
    }
}

#[cfg(test)]
mod tests;
