//! Shared by the actor tests: an actix System on a multi-thread tokio runtime,
//! as in production, and a fresh card.
#![allow(dead_code)]

use std::{future::Future, sync::Arc};

use pelago_actors::{
    card::{CardStatus, NewCard},
    ports::{ChannelTransaction, ChannelTxnStatus, ChannelTxnType, SystemClock},
    runtime::RegistryConfig,
    system::{Actors, SystemConfig},
};
use pelago_storage::{CardId, ChannelId, Currency, MerchantId, Money, Store, StoreConfig, Timestamp};

pub fn run<F: Future>(f: impl FnOnce() -> F) -> F::Output {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
    .block_on(f())
}

pub fn start(dir: &std::path::Path, registry: RegistryConfig) -> Arc<Actors> {
    let store = Store::open(dir, &StoreConfig::default()).expect("open store");
    Actors::start(
        store,
        Arc::new(SystemClock),
        SystemConfig { registry, arbiters: 2, ..SystemConfig::default() },
    )
}

pub fn new_card(id: &CardId, channel: &ChannelId) -> NewCard {
    let merchant = MerchantId::parse("mch_01JDEMO0000000000000000000").unwrap();
    NewCard::sandbox_usd(id.clone(), merchant, channel.clone(), CardStatus::Processing)
}

/// A posted refund of `value`: raises the mirrored balance by `value`.
pub fn refund(channel_txn_id: &str, value: i64) -> ChannelTransaction {
    ChannelTransaction {
        channel_transaction_id: channel_txn_id.into(),
        channel_card_id: "cc".into(),
        kind: ChannelTxnType::Refund,
        status: ChannelTxnStatus::Posted,
        amount: Money::new(value, Currency::USD),
        merchant_name: "Shop".into(),
        mcc: "5411".into(),
        occurred_at: Timestamp(0),
        balance_after: Money::new(0, Currency::USD),
        related_transaction_id: None,
    }
}
