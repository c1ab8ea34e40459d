//! Top-ups per second through the two-step saga (the merchant and card
//! actors and the store), the channel adapter replaced by an in-process fake
//! that funds at once: admission (card, no write) → step 1, the debit of
//! amount and fee with the top-up's intent and marker (merchant, one commit)
//! → steps 2 and 3, the channel call and the result (card, one commit) —
//! each step durable before the next.
//!
//! `cargo bench --bench topups`: 1 merchant × 1,000 cards and 100 merchants
//! × 10 cards, 64 top-ups in flight, with p50/p99 latency. With
//! `-- --with-pg postgres://...` (or `PELAGO_PG_URL`) the same run then drives
//! the fair PostgreSQL peer (`topups_pg`: the same saga and rows, the same fake
//! channel called between its two transactions) through the same two cases and
//! the same driver, and prints one table with the ratio Pelago / PostgreSQL.
//! `benches/pg_topup.sh` starts a throw-away PostgreSQL and runs exactly that.
//! `-- --seconds N` sets each case's length (8 s under `cargo bench`, 1 s with
//! fewer cards when run as a test by `cargo test --all-targets`).

/// The in-process channel that funds every card at once (shared with the actor tests).
#[path = "../actors/tests/common/channel.rs"]
mod channel;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc; // the binary's allocator

mod topups_pg;

use std::{
    cell::Cell,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use pelago_actors::{
    card::{
        CardStatus, NewCard,
        ops::Open,
        topup::{AdmitTopup, FundTopup, TopupStatus},
    },
    ledger::{self, EntryKind},
    merchant::{ApiKeyRecord, FundingMode, MerchantCommand, MerchantRecord, PostEntry, Sealed},
    ports::{CardChannel, ChannelDirectory, SystemClock},
    system::{Actors, SystemConfig},
};
use pelago_storage::{
    ApiKeyId, CardId, ChannelId, Currency, MerchantId, Money, Store, StoreConfig, Timestamp, TopupId,
};

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
            let open = Open {
                new,
                channel_cardholder_id: "fake".into(),
                application_fee: None,
                binding: None,
                intent: None,
            };
            let opened = actors.ask_card(&card, open).await.unwrap().unwrap();
            assert_eq!(opened.card.status, CardStatus::Active);
            pairs.push((id.clone(), card));
        }
    }
    pairs
}

async fn topup(actors: &Actors, merchant: &MerchantId, card: &CardId) {
    let id = TopupId::generate();
    let admit = AdmitTopup { id: id.clone(), amount: AMOUNT, fee: FEE, reference: None, binding: None };
    let intent = actors.ask_card(card, admit).await.unwrap().unwrap();
    actors.ask_merchant(merchant, intent.debit().unwrap()).await.unwrap().unwrap();
    let done = actors.ask_card(card, FundTopup(id)).await.unwrap().unwrap();
    assert_eq!(done.status, TopupStatus::Succeeded);
}

/// Every top-up of both sides: 10.00 USD and a 0.25 USD fee.
const AMOUNT: Money = Money { value: 1_000, currency: Currency::USD };
const FEE: Money = Money { value: 25, currency: Currency::USD };

/// Top-ups always in flight, on both sides.
const IN_FLIGHT: usize = 64;

/// One side's run of one case.
struct Run {
    /// Each top-up's time from its first step to its last, sorted.
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        self.latencies[((self.latencies.len() - 1) as f64 * p) as usize]
    }

    fn line(&self) -> String {
        format!(
            "{:.0} top-ups/s  p50 {:.1} ms  p99 {:.1} ms  ({} in {:.1} s, {IN_FLIGHT} in flight)",
            self.per_second(),
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.latencies.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// The one driver of both sides: `IN_FLIGHT` workers, each starting its next
/// top-up when its last one returned, until `length` has passed; the `i`-th
/// top-up of the run is `op(worker, i)`, timed from its call to its return.
async fn closed_loop<F, Fut>(length: Duration, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let next = Cell::new(0usize);
    let started = Instant::now();
    let deadline = started + length;
    let workers = (0..IN_FLIGHT).map(|worker| {
        let (op, next) = (&op, &next);
        async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let i = next.replace(next.get() + 1);
                let began = Instant::now();
                op(worker, i).await;
                latencies.push(began.elapsed());
            }
            latencies
        }
    });
    let mut latencies = futures::future::join_all(workers).await.concat();
    let elapsed = started.elapsed();
    latencies.sort();
    Run { latencies, elapsed }
}

/// What the command line asks for.
struct Options {
    /// `cargo bench` passes `--bench`: full-size cases; a test run is quick.
    full: bool,
    length: Duration,
    pg_url: Option<String>,
}

impl Options {
    fn parse() -> Self {
        let mut args = std::env::args().skip(1);
        let (mut full, mut seconds, mut pg_url) = (false, None, std::env::var("PELAGO_PG_URL").ok());
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => full = true,
                "--with-pg" => pg_url = Some(args.next().expect("--with-pg needs a postgres:// URL")),
                "--seconds" => {
                    seconds = Some(
                        args.next()
                            .and_then(|s| s.parse::<u64>().ok())
                            .expect("--seconds needs a whole number"),
                    )
                }
                _ => {}
            }
        }
        let length = Duration::from_secs(seconds.unwrap_or(if full { 8 } else { 1 }));
        Options { full, length, pg_url }
    }
}

fn main() {
    let options = Options::parse();
    let runner = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    });
    let cases =
        [(1usize, if options.full { 1_000 } else { 50 }), (if options.full { 100 } else { 5 }, 10usize)];
    let fake: Arc<dyn CardChannel> = Arc::new(channel::InstantChannel::default());
    let mut pelago = Vec::new();
    let mut case_pairs = Vec::new();
    for (merchants, cards_each) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let channels: Arc<dyn ChannelDirectory> = Arc::new(channel::OneChannel(Arc::clone(&fake)));
        let actors = runner.block_on(async {
            Actors::start(store, Arc::new(SystemClock), SystemConfig { channels, ..SystemConfig::default() })
        });
        let channel = ChannelId::generate();
        let pairs = runner.block_on(setup(&actors, &channel, merchants, cards_each));
        let run = runner.block_on(closed_loop(options.length, |_, i| {
            let (m, c) = &pairs[i % pairs.len()];
            topup(&actors, m, c)
        }));
        println!("top-up saga, {merchants} merchant(s) x {cards_each} cards: {}", run.line());
        pelago.push(run);
        case_pairs.push((channel, pairs));
    }
    let Some(url) = options.pg_url else { return };
    let postgres = runner.block_on(async {
        let clients = topups_pg::connect(&url, IN_FLIGHT).await.expect("the PostgreSQL peer");
        let mut runs = Vec::new();
        for ((merchants, cards_each), (channel, pairs)) in cases.iter().zip(&case_pairs) {
            topups_pg::reset(&clients, fake.as_ref(), channel, pairs).await.expect("seeding PostgreSQL");
            let ask = |merchant, card| topups_pg::Ask {
                channel: fake.as_ref(),
                channel_id: channel,
                merchant,
                card,
                amount: AMOUNT,
                fee: FEE,
            };
            let failed = Cell::new(None);
            let run = closed_loop(options.length, |worker, i| {
                let (merchant, card) = &pairs[i % pairs.len()];
                let (client, ask, failed) = (&clients[worker], ask(merchant, card), &failed);
                async move {
                    if let Err(e) = topups_pg::topup(client, &ask).await {
                        failed.set(Some(format!("{e:#}")));
                    }
                }
            })
            .await;
            if let Some(e) = failed.take() {
                panic!("a PostgreSQL top-up failed: {e}");
            }
            topups_pg::check(&clients[0], run.latencies.len(), AMOUNT, FEE).await.expect("PostgreSQL's rows");
            let (merchant, card) = &pairs[0];
            topups_pg::check_refusal(&clients[0], &ask(merchant, card))
                .await
                .expect("PostgreSQL's guarded debit");
            println!("postgresql saga, {merchants} merchant(s) x {cards_each} cards: {}", run.line());
            runs.push(run);
        }
        runs
    });
    println!();
    println!(
        "| case | Pelago top-ups/s | p50 | p99 | PostgreSQL top-ups/s | p50 | p99 | Pelago / PostgreSQL |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    for (((merchants, cards_each), p), g) in cases.iter().zip(&pelago).zip(&postgres) {
        println!(
            "| {merchants} merchant(s) × {cards_each} cards | {:.0} | {} | {} | {:.0} | {} | {} | {:.2} × |",
            p.per_second(),
            ms(p.percentile(0.5)),
            ms(p.percentile(0.99)),
            g.per_second(),
            ms(g.percentile(0.5)),
            ms(g.percentile(0.99)),
            p.per_second() / g.per_second()
        );
    }
}
