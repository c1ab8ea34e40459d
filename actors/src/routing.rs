//! Channels, BINs and routing (DOMAIN.md §Routing): `card_name` → the active
//! BINs serving it, lowest `priority` first → the BIN's channel, which must be
//! active. Operator configuration: written by the admin API with
//! compare-and-set, read by everyone.

use std::collections::HashMap;

use pelago_storage::{ChannelId, Currency, Timestamp};
use serde::{Deserialize, Serialize};

use crate::merchant::Sealed;

crate::wire_enum! {
    pub enum ChannelStatus {
        Active = "active",
        Disabled = "disabled",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub id: ChannelId,
    pub name: String,
    /// `sandbox` (the built-in simulator) or `http`.
    pub kind: String,
    pub base_url: String,
    /// Sealed under the master key, bound to the channel id.
    pub api_key: Sealed,
    pub webhook_secret: Sealed,
    pub status: ChannelStatus,
    pub created_at: Timestamp,
    pub version: u64,
}

pelago_storage::record!(ChannelRecord, Channels, 1);

crate::wire_enum! {
    pub enum BinStatus {
        Active = "active",
        Inactive = "inactive",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinRecord {
    /// Exactly six digits.
    pub bin: String,
    pub channel_id: ChannelId,
    pub card_name: String,
    pub currency: Currency,
    pub status: BinStatus,
    pub priority: i32,
    pub created_at: Timestamp,
    pub version: u64,
}

pelago_storage::record!(BinRecord, Bins, 1);

/// A BIN is six ASCII digits.
pub fn is_bin(raw: &str) -> bool {
    raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit())
}

/// The BIN a new cardholder of `card_name` is bound to, if any: active BINs of
/// that card name whose channel is active, lowest priority first (then the BIN).
pub fn route<'a>(
    bins: &'a [BinRecord],
    channels: &HashMap<ChannelId, ChannelRecord>,
    card_name: &str,
) -> Option<&'a BinRecord> {
    bins.iter()
        .filter(|b| b.card_name == card_name && b.status == BinStatus::Active)
        .filter(|b| channels.get(&b.channel_id).is_some_and(|c| c.status == ChannelStatus::Active))
        .min_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.bin.cmp(&b.bin)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(status: ChannelStatus) -> ChannelRecord {
        ChannelRecord {
            id: ChannelId::generate(),
            name: "c".into(),
            kind: "http".into(),
            base_url: "https://x".into(),
            api_key: Sealed(vec![]),
            webhook_secret: Sealed(vec![]),
            status,
            created_at: Timestamp(0),
            version: 1,
        }
    }

    fn bin(bin: &str, channel: &ChannelId, status: BinStatus, priority: i32) -> BinRecord {
        BinRecord {
            bin: bin.into(),
            channel_id: channel.clone(),
            card_name: "PELAGO_VIRTUAL_USD".into(),
            currency: Currency::USD,
            status,
            priority,
            created_at: Timestamp(0),
            version: 1,
        }
    }

    #[test]
    fn routing_skips_inactive_bins_and_disabled_channels_and_takes_the_lowest_priority() {
        let up = channel(ChannelStatus::Active);
        let down = channel(ChannelStatus::Disabled);
        let channels: HashMap<_, _> = [(up.id.clone(), up.clone()), (down.id.clone(), down.clone())].into();
        let bins = vec![
            bin("111111", &up.id, BinStatus::Inactive, 0),
            bin("222222", &down.id, BinStatus::Active, 1),
            bin("333333", &up.id, BinStatus::Active, 5),
            bin("444444", &up.id, BinStatus::Active, 2),
        ];
        assert_eq!(route(&bins, &channels, "PELAGO_VIRTUAL_USD").unwrap().bin, "444444");
        assert!(route(&bins, &channels, "OTHER").is_none());
        assert!(route(&bins[..2], &channels, "PELAGO_VIRTUAL_USD").is_none());
        assert!(is_bin("424242") && !is_bin("42424") && !is_bin("42424a"));
    }
}
