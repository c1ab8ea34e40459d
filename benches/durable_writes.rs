//! Durable state changes per second through card actors (each acknowledged only
//! after the flush that covers it), beside sled's raw insert + flush per
//! operation and sled's batched ceiling (`apply_batch` of 1,000 + one flush),
//! measured in the same run on the same disk.
//!
//! Run: `cargo bench --bench durable_writes`. After criterion's figures it
//! prints the acknowledgement latency percentiles at 1,024 concurrent cards.
//!
//! A third group, `sled_card_change_shape`, is the store alone doing exactly
//! what a card change writes — the same keys of the same kinds with the same
//! value bytes, copied from the changes the actors just made — with no actors,
//! no encoding and no flush waits: one fenced change per commit (on one thread,
//! and on two, where the commit pipeline merges what arrives together), and
//! 256 changes merged into one commit (one sled batch), with and without a
//! flush. The merged rate is the ceiling of this workload on this machine.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc; // the binary's allocator

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pelago_actors::{
    card::{ApplyTransaction, CardStatus, CreateCard, NewCard},
    ports::{ChannelTransaction, ChannelTxnStatus, ChannelTxnType, SystemClock},
    system::{Actors, SystemConfig},
};
use pelago_storage::{
    CardId, ChannelId, Currency, MerchantId, Money, Store, StoreConfig, Timestamp, Tree, WriteBatch,
};

fn refund(id: String) -> ChannelTransaction {
    ChannelTransaction {
        channel_transaction_id: id,
        channel_card_id: "cc".into(),
        kind: ChannelTxnType::Refund,
        status: ChannelTxnStatus::Posted,
        amount: Money::new(1, Currency::USD),
        merchant_name: "Shop".into(),
        mcc: "5411".into(),
        occurred_at: Timestamp(0),
        balance_after: Money::new(0, Currency::USD),
        related_transaction_id: None,
    }
}

fn new_card(id: &CardId, channel: &ChannelId) -> NewCard {
    NewCard::sandbox_usd(id.clone(), MerchantId::generate(), channel.clone(), CardStatus::Processing)
}

fn raw_sled(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let mut group = c.benchmark_group("sled_raw");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("insert_plus_flush_per_op", |b| {
        b.iter(|| {
            n += 1;
            let mut batch = WriteBatch::new();
            batch.put_raw(Tree::Meta, n.to_be_bytes(), vec![0u8; 200]);
            let _ticket = store.commit(batch).unwrap();
            store.flush_blocking().unwrap();
        })
    });
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("apply_batch_1000_plus_one_flush", |b| {
        b.iter(|| {
            let mut batch = WriteBatch::new();
            for _ in 0..1_000 {
                n += 1;
                batch.put_raw(Tree::Meta, n.to_be_bytes(), vec![0u8; 200]);
            }
            let _ticket = store.commit(batch).unwrap();
            store.flush_blocking().unwrap();
        })
    });
    group.finish();
}

struct Bench {
    runner: actix::SystemRunner,
    actors: Arc<Actors>,
    store: Store,
    channel: ChannelId,
    _dir: tempfile::TempDir,
}

/// The arbiter threads the actors run on: the server's choice, or
/// `PELAGO_BENCH_ARBITERS` to compare.
fn arbiters() -> usize {
    let n = std::env::var("PELAGO_BENCH_ARBITERS").ok().and_then(|v| v.parse().ok());
    let n = n.unwrap_or_else(SystemConfig::default_arbiters);
    eprintln!("actors on {n} arbiter threads");
    n
}

/// The store's flush policy: the default, or `PELAGO_BENCH_FLUSH_DELAY_US`
/// (0: never wait) to compare.
fn store_config() -> StoreConfig {
    let mut config = StoreConfig::default();
    if let Some(us) = std::env::var("PELAGO_BENCH_FLUSH_DELAY_US").ok().and_then(|v| v.parse().ok()) {
        config.flush.delay = Duration::from_micros(us);
    }
    eprintln!("flush policy {:?}", config.flush);
    config
}

fn setup() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let runner = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    });
    let store = Store::open(dir.path(), &store_config()).unwrap();
    let actors = runner.block_on(async {
        Actors::start(
            store.clone(),
            Arc::new(SystemClock),
            SystemConfig { arbiters: arbiters(), ..SystemConfig::default() },
        )
    });
    Bench { runner, actors, store, channel: ChannelId::generate(), _dir: dir }
}

/// One round: every card gets one durable change at once; returns each ack's latency.
async fn round(actors: &Actors, ids: &[CardId], seq: u64) -> Vec<Duration> {
    let calls = ids.iter().map(|id| async move {
        let started = Instant::now();
        actors.ask_card(id, ApplyTransaction(refund(format!("{id}-{seq}")))).await.unwrap().unwrap();
        started.elapsed()
    });
    futures::future::join_all(calls).await
}

/// What one card change wrote: every (tree, key, value) of the only
/// transaction the actors applied to `card` (its record, the transaction, its
/// two index rows, the event and its outbox row), found in the store.
fn one_change(store: &Store, card: &CardId, channel_txn: &str) -> Vec<(Tree, Vec<u8>, Vec<u8>)> {
    let rows_of = |tree: Tree, mine: &dyn Fn(&[u8], &[u8]) -> bool| -> Vec<(Tree, Vec<u8>, Vec<u8>)> {
        store
            .iter_raw(tree, b"")
            .map(Result::unwrap)
            .filter(|(k, v)| mine(k, v))
            .map(|(k, v)| (tree, k, v))
            .collect()
    };
    let has = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    let (card_id, txn) = (card.as_bytes(), channel_txn.as_bytes());
    let mut rows =
        vec![(Tree::Cards, card_id.to_vec(), store.get_raw(Tree::Cards, card_id).unwrap().unwrap())];
    rows.extend(rows_of(Tree::Transactions, &|k, _| k.starts_with(card_id)));
    rows.extend(rows_of(Tree::Index, &|k, v| has(k, txn) || (k.starts_with(b"txn/") && v == card_id)));
    let events = rows_of(Tree::Events, &|_, v| has(v, txn));
    for (_, key, _) in &events {
        let event_id = key.rsplit(|b| *b == b'/').next().unwrap().to_vec();
        rows.extend(rows_of(Tree::Outbox, &|k, _| k == event_id.as_slice()));
    }
    rows.extend(events);
    assert_eq!(rows.len(), 6, "a transaction change is 6 rows");
    rows
}

fn card_actors(c: &mut Criterion) {
    let bench = setup();
    let mut group = c.benchmark_group("card_actor_durable_changes");
    let mut seq = 0u64;
    let mut last_ids = Vec::new();
    for cards in [1usize, 64, 1_024] {
        let ids: Vec<CardId> = (0..cards).map(|_| CardId::generate()).collect();
        bench.runner.block_on(async {
            for id in &ids {
                bench.actors.ask_card(id, CreateCard(new_card(id, &bench.channel))).await.unwrap().unwrap();
            }
        });
        group.throughput(Throughput::Elements(cards as u64));
        group.bench_with_input(BenchmarkId::from_parameter(cards), &ids, |b, ids| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    seq += 1;
                    bench.runner.block_on(round(&bench.actors, ids, seq));
                }
                started.elapsed()
            })
        });
        if cards == 1_024 {
            let mut latencies = Vec::new();
            let flushes_before =
                bench.store.flusher().stats().flushes.load(std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            for _ in 0..30 {
                seq += 1;
                latencies.extend(bench.runner.block_on(round(&bench.actors, &ids, seq)));
            }
            let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
            let flushes = bench.store.flusher().stats().flushes.load(std::sync::atomic::Ordering::Relaxed)
                - flushes_before;
            latencies.sort();
            let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
            let commits = bench.store.commit_stats();
            eprintln!(
                "card actors x1024: {} acks, {:.0}/s, ack latency p50 {:?} p99 {:?} max {:?}; \
                 commits so far merged {:.1} per sled batch (largest {}); {:.1} acks per flush",
                latencies.len(),
                rate,
                pct(0.50),
                pct(0.99),
                latencies.last().unwrap(),
                commits.commits as f64 / commits.groups.max(1) as f64,
                commits.largest_group,
                latencies.len() as f64 / flushes.max(1) as f64
            );
        }
        last_ids = ids;
    }
    group.finish();
    sled_card_change_shape(c, &bench, &last_ids);
}

/// sled alone writing card changes of the shape the actors write. `cards`:
/// the 1,024 cards of the actors' case, for the case whose keys spread over
/// the cards as the actors' do.
fn sled_card_change_shape(c: &mut Criterion, bench: &Bench, cards: &[CardId]) {
    // A fresh card and one change through the actors, to copy its rows.
    let id = CardId::generate();
    let txn = format!("shape-{}", id.as_str());
    bench.runner.block_on(async {
        bench.actors.ask_card(&id, CreateCard(new_card(&id, &bench.channel))).await.unwrap().unwrap();
        bench.actors.ask_card(&id, ApplyTransaction(refund(txn.clone()))).await.unwrap().unwrap();
    });
    let template = one_change(&bench.store, &id, &txn);
    let trees: std::collections::BTreeSet<&str> = template.iter().map(|(t, ..)| t.name()).collect();
    let bytes: usize = template.iter().map(|(_, k, v)| k.len() + v.len()).sum();
    eprintln!(
        "a card change writes {} keys over {} trees ({trees:?}), {bytes} bytes",
        template.len(),
        trees.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    // Change n: the template's rows under keys made unique by n.
    let change = |n: u64| {
        template.iter().map(move |(tree, key, value)| {
            let mut key = key.clone();
            key.extend_from_slice(format!("/{n:012}").as_bytes());
            (*tree, key, value.clone())
        })
    };
    let mut group = c.benchmark_group("sled_card_change_shape");
    let mut n = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_commit_per_change_no_flush", |b| {
        b.iter(|| {
            n += 1;
            let mut batch = WriteBatch::new();
            // A fence like the actors' (the card key must be absent here).
            batch.expect_absent(Tree::Cards, format!("fence/{n}"));
            for (tree, key, value) in change(n) {
                batch.put_raw(tree, key, value);
            }
            let _ticket = store.commit(batch).unwrap();
        })
    });
    // The same on both cores: two threads, each committing its own changes.
    group.throughput(Throughput::Elements(2));
    let next = std::sync::atomic::AtomicU64::new(1 << 40);
    group.bench_function("two_threads_one_commit_per_change_no_flush", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        for _ in 0..iters {
                            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let mut batch = WriteBatch::new();
                            batch.expect_absent(Tree::Cards, format!("fence/{n}"));
                            for (tree, key, value) in change(n) {
                                batch.put_raw(tree, key, value);
                            }
                            let _ticket = store.commit(batch).unwrap();
                        }
                    });
                }
            });
            started.elapsed()
        })
    });
    // The merged-batch rate: 256 changes as one commit (one sled `apply_batch`
    // on the records tree), the shape the commit pipeline writes when 256
    // changes arrive together; with and without one flush per batch.
    for flush in [false, true] {
        group.throughput(Throughput::Elements(256));
        let name = if flush { "256_changes_merged_plus_one_flush" } else { "256_changes_merged_no_flush" };
        group.bench_function(name, |b| {
            b.iter(|| {
                commit_merged(&store, &mut n, &change);
                if flush {
                    store.flush_blocking().unwrap();
                }
            })
        });
    }
    merged_over_the_cards(&mut group, bench, &template, cards);
    group.finish();
}

/// The merged-batch rate again, with the keys spread as the actors write
/// them: change n rewrites the record of card n mod 1,024 (all 1,024 stored
/// first, copied from the actors' store) and adds its transaction under that
/// card's key; the index, event and outbox rows are made unique by n as above.
fn merged_over_the_cards(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bench: &Bench,
    template: &[(Tree, Vec<u8>, Vec<u8>)],
    cards: &[CardId],
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let mut seed = WriteBatch::new();
    for card in cards {
        seed.put_raw(
            Tree::Cards,
            card.as_bytes(),
            bench.store.get_raw(Tree::Cards, card.as_bytes()).unwrap().unwrap(),
        );
    }
    let _ticket = store.commit(seed).unwrap();
    let template_card: &[u8] = &template[0].1;
    let change = |n: u64| {
        let card = cards[n as usize % cards.len()].as_bytes();
        template.iter().map(move |(tree, key, value)| {
            let key = match key.strip_prefix(template_card) {
                Some(rest) if *tree == Tree::Cards => [card, rest].concat(),
                Some(rest) => [card, rest, format!("/{n:012}").as_bytes()].concat(),
                None => [key.as_slice(), format!("/{n:012}").as_bytes()].concat(),
            };
            (*tree, key, value.clone())
        })
    };
    let mut n = 0u64;
    group.throughput(Throughput::Elements(256));
    group.bench_function("256_changes_merged_keys_over_1024_cards_no_flush", |b| {
        b.iter(|| commit_merged(&store, &mut n, &change))
    });
}

/// The next 256 changes (numbered after `n`) as one commit: one sled `apply_batch`.
fn commit_merged<I: Iterator<Item = (Tree, Vec<u8>, Vec<u8>)>>(
    store: &Store,
    n: &mut u64,
    change: &impl Fn(u64) -> I,
) {
    let mut batch = WriteBatch::new();
    for _ in 0..256 {
        *n += 1;
        for (tree, key, value) in change(*n) {
            batch.put_raw(tree, key, value);
        }
    }
    let _ticket = store.commit(batch).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4)).sample_size(20);
    targets = raw_sled, card_actors
}
criterion_main!(benches);
