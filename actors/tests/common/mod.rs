//! Shared by the actor tests: an actix System on a multi-thread tokio runtime,
//! as in production, a fresh card, a merchant created through its actor and
//! a deposit.
#![allow(dead_code)]

use std::{future::Future, sync::Arc};

use pelago_actors::{
    card::{CardStatus, CreateCard, NewCard},
    ledger::{self, EntryKind},
    merchant::{ApiKeyRecord, MerchantCommand, MerchantRecord, PostEntry, Sealed},
    ports::{ChannelTransaction, ChannelTxnStatus, ChannelTxnType, SystemClock},
    runtime::RegistryConfig,
    system::{Actors, SystemConfig},
};
use pelago_storage::{
    ApiKeyId, CardId, ChannelId, Currency, MerchantId, Money, Store, StoreConfig, Timestamp,
};

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

/// Runs `test` on a fresh actor system over a fresh store in a temporary directory.
pub fn with_actors<F: Future>(registry: RegistryConfig, test: impl FnOnce(Arc<Actors>) -> F) -> F::Output {
    let dir = tempfile::tempdir().expect("a temporary directory");
    run(|| async { test(start(dir.path(), registry)).await })
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

/// A new card in `status`, created through its actor: its id.
pub async fn created_card(actors: &Actors, status: CardStatus) -> CardId {
    let id = CardId::generate();
    let mut new = new_card(&id, &ChannelId::generate());
    new.status = status;
    actors.ask_card(&id, CreateCard(new)).await.unwrap().unwrap();
    id
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

/// Creates `record` through its merchant actor, with a first API key.
pub async fn create_merchant(actors: &Actors, record: MerchantRecord) {
    let (id, key_id, secret) = (record.id.clone(), ApiKeyId::generate(), Sealed(vec![]));
    let first_key =
        ApiKeyRecord { key_id, merchant_id: id.clone(), secret, created_at: Timestamp(0), revoked_at: None };
    let create = MerchantCommand::Create { record: Box::new(record), first_key, binding: None };
    actors.ask_merchant(&id, create).await.unwrap().unwrap();
}

/// A deposit of `value` USD to `id`, booked once per `source_id`, emitting `event`.
pub fn deposit(id: &MerchantId, source_id: &str, value: i64, event: Option<&'static str>) -> PostEntry {
    let postings = ledger::deposit(id, Money::new(value, Currency::USD)).unwrap();
    PostEntry { source_id: source_id.into(), kind: EntryKind::Deposit, postings, event, index: vec![] }
}
