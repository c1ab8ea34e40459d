//! Top-ups per second through the saga (merchant actor + card actor + store),
//! the channel adapter replaced by an in-process fake that funds at once:
//! begin (card) → debit amount + fee (merchant, once per top-up) → fund
//! (card, channel) — each step durable before the next.
//!
//! `cargo bench --bench topups`: 1 merchant × 1,000 cards and 100 merchants
//! × 10 cards, 64 top-ups in flight, with p50/p99 latency. Compare with
//! `benches/pg_topup.sh` (the same debit in PostgreSQL) and the HTTP figures
//! of `benches/load.rs`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, future::BoxFuture};
use pelago_actors::{
    card::{
        CardStatus, NewCard,
        ops::Open,
        topup::{BeginTopup, FundTopup, TopupStatus},
    },
    ledger::{self, EntryKind},
    merchant::{ApiKeyRecord, FundingMode, MerchantCommand, MerchantRecord, PostEntry, Sealed},
    ports::{
        CardAction, CardChannel, CardDeleted, CardDetails, CardFunded, CardOpened, CardholderCreated,
        ChannelCardholder, ChannelDirectory, ChannelOperation, ChannelTransaction, CreateCardholder,
        FundCard, OpenCard, Outcome, SystemClock,
    },
    system::{Actors, SystemConfig},
};
use pelago_storage::{
    ApiKeyId, CardId, ChannelId, Currency, MerchantId, Money, Store, StoreConfig, Timestamp, TopupId,
};

/// A channel that funds every card at once, in process.
struct FakeChannel;

impl CardChannel for FakeChannel {
    fn create_cardholder(&self, _: CreateCardholder) -> BoxFuture<'_, Outcome<CardholderCreated>> {
        Box::pin(async { Outcome::Declined { reason: "not in this bench".into() } })
    }
    fn open_card(&self, req: OpenCard) -> BoxFuture<'_, Outcome<CardOpened>> {
        Box::pin(async move {
            Outcome::Done(CardOpened {
                channel_card_id: format!("fake_{}", req.card_id),
                last4: "0000".into(),
                balance: Money::zero(req.currency),
            })
        })
    }
    fn fund_card(&self, req: FundCard) -> BoxFuture<'_, Outcome<CardFunded>> {
        Box::pin(async move { Outcome::Done(CardFunded { balance: req.amount }) })
    }
    fn freeze(&self, _: CardAction) -> BoxFuture<'_, Outcome<()>> {
        Box::pin(async { Outcome::Done(()) })
    }
    fn unfreeze(&self, _: CardAction) -> BoxFuture<'_, Outcome<()>> {
        Box::pin(async { Outcome::Done(()) })
    }
    fn delete_card(&self, _: CardAction) -> BoxFuture<'_, Outcome<CardDeleted>> {
        Box::pin(async { Outcome::Declined { reason: "not in this bench".into() } })
    }
    fn card_details(&self, _: String) -> BoxFuture<'_, Outcome<CardDetails>> {
        Box::pin(async { Outcome::Declined { reason: "not in this bench".into() } })
    }
    fn list_transactions(
        &self,
        _: String,
        _: Option<String>,
    ) -> BoxFuture<'_, Outcome<Vec<ChannelTransaction>>> {
        Box::pin(async { Outcome::Done(vec![]) })
    }
    fn transaction(&self, _: String, _: String) -> BoxFuture<'_, Outcome<ChannelTransaction>> {
        Box::pin(async { Outcome::Declined { reason: "not in this bench".into() } })
    }
    fn cardholder(&self, _: String) -> BoxFuture<'_, Outcome<ChannelCardholder>> {
        Box::pin(async { Outcome::Declined { reason: "not in this bench".into() } })
    }
    fn master_balance(&self) -> BoxFuture<'_, Outcome<Vec<Money>>> {
        Box::pin(async { Outcome::Done(vec![]) })
    }
    fn operation(&self, _: String) -> BoxFuture<'_, Outcome<ChannelOperation>> {
        Box::pin(async { Outcome::Done(ChannelOperation::NotFound) })
    }
}

struct Fakes(Arc<dyn CardChannel>);

impl ChannelDirectory for Fakes {
    fn channel(&self, _: &ChannelId) -> Option<Arc<dyn CardChannel>> {
        Some(Arc::clone(&self.0))
    }
}

async fn setup(
    actors: &Actors,
    channel: &ChannelId,
    merchants: usize,
    cards_each: usize,
) -> Vec<(MerchantId, CardId)> {
    let mut pairs = Vec::new();
    for _ in 0..merchants {
        let id = MerchantId::generate();
        let record =
            MerchantRecord::new(id.clone(), "Bench".into(), FundingMode::MasterAccount, Timestamp(0));
        let key = ApiKeyRecord {
            key_id: ApiKeyId::generate(),
            merchant_id: id.clone(),
            secret: Sealed(vec![]),
            created_at: Timestamp(0),
            revoked_at: None,
        };
        actors
            .ask_merchant(
                &id,
                MerchantCommand::Create { record: Box::new(record), first_key: key, binding: None },
            )
            .await
            .unwrap()
            .unwrap();
        let deposit = PostEntry {
            source_id: format!("gwdep/{id}"),
            kind: EntryKind::Deposit,
            postings: ledger::deposit(&id, Money::new(1_000_000_000_000, Currency::USD)).unwrap(),
            event: None,
            index: vec![],
        };
        actors.ask_merchant(&id, deposit).await.unwrap().unwrap();
        for _ in 0..cards_each {
            let card = CardId::generate();
            let new = NewCard::sandbox_usd(card.clone(), id.clone(), channel.clone(), CardStatus::Processing);
            let open =
                Open { new, channel_cardholder_id: "fake".into(), application_fee: None, binding: None };
            let opened = actors.ask_card(&card, open).await.unwrap().unwrap();
            assert_eq!(opened.card.status, CardStatus::Active);
            pairs.push((id.clone(), card));
        }
    }
    pairs
}

async fn topup(actors: &Actors, channel: &ChannelId, merchant: &MerchantId, card: &CardId) -> Duration {
    let started = Instant::now();
    let id = TopupId::generate();
    let (amount, fee) = (Money::new(1_000, Currency::USD), Money::new(25, Currency::USD));
    actors
        .ask_card(card, BeginTopup { id: id.clone(), amount, fee, reference: None, binding: None })
        .await
        .unwrap()
        .unwrap();
    let debit = PostEntry {
        source_id: id.to_string(),
        kind: EntryKind::Topup,
        postings: ledger::master_topup(merchant, channel, amount, fee).unwrap(),
        event: None,
        index: vec![],
    };
    actors.ask_merchant(merchant, debit).await.unwrap().unwrap();
    let done = actors.ask_card(card, FundTopup(id)).await.unwrap().unwrap();
    assert_eq!(done.status, TopupStatus::Succeeded);
    started.elapsed()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seconds = if full { 8 } else { 1 };
    let runner = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    });
    for (merchants, cards_each) in
        [(1usize, if full { 1_000 } else { 50 }), (if full { 100 } else { 5 }, 10usize)]
    {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let channels: Arc<dyn ChannelDirectory> = Arc::new(Fakes(Arc::new(FakeChannel)));
        let actors = runner.block_on(async {
            Actors::start(store, Arc::new(SystemClock), SystemConfig { channels, ..SystemConfig::default() })
        });
        let channel = ChannelId::generate();
        let pairs = runner.block_on(setup(&actors, &channel, merchants, cards_each));
        let pairs = Arc::new(pairs);
        let mut latencies = runner.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let calls = (0..).take_while(|_| Instant::now() < deadline).map(|i| {
                let (actors, pairs, channel) = (Arc::clone(&actors), Arc::clone(&pairs), channel.clone());
                async move {
                    let (m, c) = &pairs[i % pairs.len()];
                    topup(&actors, &channel, m, c).await
                }
            });
            futures::stream::iter(calls).buffer_unordered(64).collect::<Vec<_>>().await
        });
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
        println!(
            "top-up saga, {merchants} merchant(s) x {cards_each} cards: {:.0} top-ups/s  p50 {:?}  p99 {:?}  ({} in {seconds} s, 64 in flight)",
            latencies.len() as f64 / seconds as f64,
            pct(0.5),
            pct(0.99),
            latencies.len()
        );
    }
}
