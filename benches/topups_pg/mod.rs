//! The fair PostgreSQL peer of the top-up saga (issue 17): the same saga as
//! Pelago's, with the same rows, in two transactions around the same
//! in-process channel call.
//!
//! 1. One transaction: the card is checked active and its version moved (the
//!    card actor writes the card in `BeginTopup` too); the top-up is inserted
//!    `processing` with its recovery marker (`operation_marker`, Pelago's
//!    `topup/{id}`); the journal entry of `ledger::master_topup` (all four legs,
//!    once per `(source, kind)`: Pelago's `jop/` row is the unique constraint
//!    here); the merchant's guarded debit (`available >= amount + fee`) with
//!    its two balance transactions (`topup`, `topup_fee`, running balances).
//! 2. The channel call: `CardChannel::fund_card` of the very fake Pelago's
//!    bench calls, with the top-up's request id.
//! 3. One transaction: the top-up `succeeded` (status history, version), the
//!    card's balance, the marker removed, the `topup.succeeded` event and its
//!    outbox row.
//!
//! Each transaction's statements are pipelined (sent together, one round trip
//! before the `COMMIT`), the debit last, so the hot merchant's row is locked
//! from the debit to the commit's fsync and no longer. The server runs with
//! `synchronous_commit = on` and `fsync = on` (benches/pg_topup.sh).

use anyhow::{Context as _, bail, ensure};
use futures::future::BoxFuture;
use pelago_actors::{
    card::topup::TopupStatus,
    history::{self, History, Source},
    ledger::{self, EntryKind},
    ports::{CardChannel, FundCard, OpenCard, Outcome},
};
use pelago_storage::{
    BalanceTxnId, CardId, ChannelId, Currency, EventId, JournalEntryId, MerchantId, Money, Timestamp, TopupId,
};
use tokio_postgres::{Client, NoTls, Statement};

/// What every merchant starts with, in minor units (as Pelago's bench deposits).
pub const OPENING_BALANCE_MINOR: i64 = 1_000_000_000_000;

/// The tables, as a PostgreSQL schema would hold what Pelago's trees hold for
/// a top-up. Made once per run, emptied for every case.
const SCHEMA: &str = "
DROP TABLE IF EXISTS outbox, event, balance_txn, journal_entry, operation_marker, topup, card, merchant;
CREATE TABLE merchant (
    id text PRIMARY KEY, currency text NOT NULL, available_minor bigint NOT NULL,
    pending_minor bigint NOT NULL, version bigint NOT NULL);
CREATE TABLE card (
    id text PRIMARY KEY, merchant_id text NOT NULL, status text NOT NULL, currency text NOT NULL,
    channel_id text NOT NULL, channel_card_id text NOT NULL, balance_minor bigint NOT NULL,
    version bigint NOT NULL);
CREATE TABLE topup (
    id text PRIMARY KEY, card_id text NOT NULL, merchant_id text NOT NULL,
    amount_minor bigint NOT NULL, fee_minor bigint NOT NULL, total_minor bigint NOT NULL,
    currency text NOT NULL, status text NOT NULL, phase text NOT NULL,
    request_id text NOT NULL UNIQUE, failure_reason text, created_at_ms bigint NOT NULL,
    completed_at_ms bigint, version bigint NOT NULL, status_history jsonb NOT NULL);
CREATE INDEX topup_by_card ON topup (card_id, id);
CREATE TABLE operation_marker (topup_id text PRIMARY KEY, card_id text NOT NULL, started_at_ms bigint NOT NULL);
CREATE TABLE journal_entry (
    id text PRIMARY KEY, merchant_id text NOT NULL, source_id text NOT NULL, kind text NOT NULL,
    postings jsonb NOT NULL, created_at_ms bigint NOT NULL, UNIQUE (source_id, kind));
CREATE TABLE balance_txn (
    id text PRIMARY KEY, merchant_id text NOT NULL, kind text NOT NULL, amount_minor bigint NOT NULL,
    currency text NOT NULL, available_after_minor bigint NOT NULL, pending_after_minor bigint NOT NULL,
    source_id text NOT NULL, created_at_ms bigint NOT NULL);
CREATE INDEX balance_txn_by_merchant ON balance_txn (merchant_id, id);
CREATE TABLE event (
    id text PRIMARY KEY, merchant_id text NOT NULL, event_type text NOT NULL, object jsonb NOT NULL,
    created_at_ms bigint NOT NULL);
CREATE INDEX event_by_merchant ON event (merchant_id, id);
CREATE TABLE outbox (
    event_id text PRIMARY KEY, merchant_id text NOT NULL, attempts int NOT NULL, next_attempt_at_ms bigint NOT NULL);
";

/// One connection and its prepared statements.
pub struct PgClient {
    client: Client,
    card_guard: Statement,
    insert_topup: Statement,
    insert_marker: Statement,
    insert_entry: Statement,
    debit: Statement,
    finish_topup: Statement,
    credit_card: Statement,
    drop_marker: Statement,
    stage_event: Statement,
}

/// Opens `count` connections to `url` (their I/O runs as tokio tasks), makes
/// the tables anew and prepares every connection's statements.
pub async fn connect(url: &str, count: usize) -> anyhow::Result<Vec<PgClient>> {
    let mut clients = Vec::with_capacity(count);
    for n in 0..count {
        let (client, connection) =
            tokio_postgres::connect(url, NoTls).await.context("connecting to PostgreSQL")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("postgresql connection closed: {e}");
            }
        });
        if n == 0 {
            client.batch_execute(SCHEMA).await.context("making the tables")?;
        }
        clients.push(PgClient::prepare(client).await?);
    }
    Ok(clients)
}

impl PgClient {
    async fn prepare(client: Client) -> anyhow::Result<Self> {
        let card_guard = client
            .prepare(
                "UPDATE card SET version = version + 1
                 WHERE id = $1 AND status = 'active' AND currency = $2 RETURNING channel_card_id",
            )
            .await?;
        let insert_topup = client
            .prepare(
                "INSERT INTO topup (id, card_id, merchant_id, amount_minor, fee_minor, total_minor, currency,
                     status, phase, request_id, created_at_ms, version, status_history)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb)",
            )
            .await?;
        let insert_marker = client
            .prepare("INSERT INTO operation_marker (topup_id, card_id, started_at_ms) VALUES ($1, $2, $3)")
            .await?;
        let insert_entry = client
            .prepare(
                "INSERT INTO journal_entry (id, merchant_id, source_id, kind, postings, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)",
            )
            .await?;
        // The guarded debit and the two balance transactions with their running
        // balances (after the amount leg: what is left + the fee; after the fee leg:
        // what is left). No row inserted when the merchant cannot pay.
        let debit = client
            .prepare(
                "WITH debited AS (
                     UPDATE merchant SET available_minor = available_minor - ($3::bigint + $4::bigint),
                                         version = version + 1
                     WHERE id = $1 AND currency = $2 AND available_minor >= $3::bigint + $4::bigint
                     RETURNING available_minor, pending_minor)
                 INSERT INTO balance_txn (id, merchant_id, kind, amount_minor, currency,
                     available_after_minor, pending_after_minor, source_id, created_at_ms)
                 SELECT leg.id, $1, leg.kind, leg.amount_minor, $2, d.available_minor + leg.after_offset,
                        d.pending_minor, $7, $8
                 FROM debited d,
                      (VALUES ($5::text, 'topup', -($3::bigint), $4::bigint),
                              ($6::text, 'topup_fee', -($4::bigint), 0::bigint))
                          AS leg (id, kind, amount_minor, after_offset)",
            )
            .await?;
        let finish_topup = client
            .prepare(
                "UPDATE topup SET status = $2, phase = $3, completed_at_ms = $4, version = $5,
                                  status_history = $6::text::jsonb
                 WHERE id = $1 AND status = 'processing'",
            )
            .await?;
        let credit_card = client
            .prepare(
                "UPDATE card SET balance_minor = balance_minor + $2, version = version + 1 WHERE id = $1",
            )
            .await?;
        let drop_marker = client.prepare("DELETE FROM operation_marker WHERE topup_id = $1").await?;
        let stage_event = client
            .prepare(
                // The event holds the top-up as it now is (Pelago's snapshot of the record).
                "WITH staged AS (
                     INSERT INTO event (id, merchant_id, event_type, object, created_at_ms)
                     SELECT $1, t.merchant_id, $2, to_jsonb(t), $3 FROM topup t WHERE t.id = $4
                     RETURNING id, merchant_id)
                 INSERT INTO outbox (event_id, merchant_id, attempts, next_attempt_at_ms)
                 SELECT id, merchant_id, 0, 0 FROM staged",
            )
            .await?;
        Ok(Self {
            client,
            card_guard,
            insert_topup,
            insert_marker,
            insert_entry,
            debit,
            finish_topup,
            credit_card,
            drop_marker,
            stage_event,
        })
    }
}

/// Empties the tables and seeds the merchants and cards of one case (the
/// cards opened at `channel`, as Pelago's setup opens them), then checkpoints
/// so every case starts from clean pages.
pub async fn reset(
    clients: &[PgClient],
    channel: &dyn CardChannel,
    channel_id: &ChannelId,
    pairs: &[(MerchantId, CardId)],
) -> anyhow::Result<()> {
    let first = clients.first().context("no PostgreSQL connection")?;
    first
        .client
        .batch_execute(
            "TRUNCATE outbox, event, balance_txn, journal_entry, operation_marker, topup, card, merchant",
        )
        .await
        .context("emptying the tables")?;
    let merchant = first
        .client
        .prepare(
            "INSERT INTO merchant (id, currency, available_minor, pending_minor, version)
             VALUES ($1, $2, $3, 0, 1) ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    let card = first
        .client
        .prepare(
            "INSERT INTO card (id, merchant_id, status, currency, channel_id, channel_card_id, balance_minor, version)
             VALUES ($1, $2, 'active', $3, $4, $5, 0, 1)",
        )
        .await?;
    first.client.batch_execute("BEGIN").await?;
    for (merchant_id, card_id) in pairs {
        let currency = Currency::USD.code();
        first.client.execute(&merchant, &[&merchant_id.as_str(), &currency, &OPENING_BALANCE_MINOR]).await?;
        let opened = channel
            .open_card(OpenCard {
                request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
                card_id: card_id.to_string(),
                channel_cardholder_id: "fake".into(),
                bin: "424242".into(),
                currency: Currency::USD,
            })
            .await;
        let Outcome::Done(opened) = opened else { bail!("the fake channel did not open card {card_id}") };
        first
            .client
            .execute(
                &card,
                &[
                    &card_id.as_str(),
                    &merchant_id.as_str(),
                    &currency,
                    &channel_id.as_str(),
                    &opened.channel_card_id,
                ],
            )
            .await?;
    }
    first.client.batch_execute("COMMIT; CHECKPOINT").await?;
    Ok(())
}

/// Every statement of one transaction sent together (`BEGIN` first), then
/// `COMMIT` if each answered what `accept` asks of its row counts, `ROLLBACK`
/// and the reason otherwise.
async fn in_transaction<const N: usize>(
    client: &Client,
    statements: [BoxFuture<'_, Result<u64, tokio_postgres::Error>>; N],
    accept: impl FnOnce([u64; N]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (begun, counts) =
        futures::join!(client.batch_execute("BEGIN"), futures::future::join_all(statements));
    let checked = begun.map_err(anyhow::Error::from).and_then(|()| {
        let counts: Vec<u64> = counts.into_iter().collect::<Result<_, _>>()?;
        let counts: [u64; N] = counts.try_into().map_err(|_| anyhow::anyhow!("a statement went missing"))?;
        accept(counts)
    });
    match checked {
        Ok(()) => Ok(client.batch_execute("COMMIT").await?),
        Err(e) => {
            client.batch_execute("ROLLBACK").await?;
            Err(e)
        }
    }
}

/// One top-up to make: through which channel, on whose card, how much.
pub struct Ask<'a> {
    pub channel: &'a dyn CardChannel,
    pub channel_id: &'a ChannelId,
    pub merchant: &'a MerchantId,
    pub card: &'a CardId,
    pub amount: Money,
    pub fee: Money,
}

/// One top-up: the saga the module's doc describes. An error leaves nothing
/// of it written.
pub async fn topup(pg: &PgClient, ask: &Ask<'_>) -> anyhow::Result<()> {
    let Ask { channel, channel_id, merchant, card, amount, fee } = *ask;
    let total = amount.checked_add(fee).map_err(|_| anyhow::anyhow!("amount + fee overflows"))?;
    let now = Timestamp::now_real();
    let (topup, request_id) = (TopupId::generate(), format!("req_{}", pelago_storage::ids::new_ulid()));
    let mut history = History::created(TopupStatus::Processing, Source::Merchant, now);
    let postings = ledger::master_topup(merchant, channel_id, amount, fee)?;
    ledger::check_balanced(&postings)?;
    let (topup_id, merchant_id, card_id, currency) =
        (topup.as_str(), merchant.as_str(), card.as_str(), amount.currency.code());
    let (history_json, postings) = (serde_json::to_string(&history)?, serde_json::to_string(&postings)?);
    let (entry_id, amount_txn, fee_txn) =
        (JournalEntryId::generate(), BalanceTxnId::generate(), BalanceTxnId::generate());
    let (entry_id, amount_txn, fee_txn) = (entry_id.as_str(), amount_txn.as_str(), fee_txn.as_str());
    let (amount_minor, fee_minor, total_minor, now_ms) =
        (amount.value, fee.value, total.value, now.unix_ms());
    let c = &pg.client;
    let mut channel_card = None;
    in_transaction(
        c,
        [
            Box::pin(async {
                let row = c.query_opt(&pg.card_guard, &[&card_id, &currency]).await?;
                channel_card = row.map(|r| r.get::<_, String>(0));
                Ok(u64::from(channel_card.is_some()))
            }),
            Box::pin(c.execute(
                &pg.insert_topup,
                &[
                    &topup_id,
                    &card_id,
                    &merchant_id,
                    &amount_minor,
                    &fee_minor,
                    &total_minor,
                    &currency,
                    &TopupStatus::Processing.as_str(),
                    &"debiting",
                    &request_id,
                    &now_ms,
                    &1i64,
                    &history_json,
                ],
            )),
            Box::pin(c.execute(&pg.insert_marker, &[&topup_id, &card_id, &now_ms])),
            Box::pin(c.execute(
                &pg.insert_entry,
                &[&entry_id, &merchant_id, &topup_id, &EntryKind::Topup.as_str(), &postings, &now_ms],
            )),
            // Last: the hot row is locked from here to the commit.
            Box::pin(c.execute(
                &pg.debit,
                &[
                    &merchant_id,
                    &currency,
                    &amount_minor,
                    &fee_minor,
                    &amount_txn,
                    &fee_txn,
                    &topup_id,
                    &now_ms,
                ],
            )),
        ],
        |[card, topup, marker, entry, debit]| {
            ensure!(card == 1, "the card is not active in {currency}");
            ensure!(topup == 1 && marker == 1 && entry == 1, "the top-up was not recorded whole");
            ensure!(debit == 2, "insufficient_funds: the merchant cannot pay amount + fee");
            Ok(())
        },
    )
    .await?;
    let channel_card_id = channel_card.context("the card's channel id")?;

    let funded = channel.fund_card(FundCard { request_id, channel_card_id, amount }).await;
    // The fake funds every card at once, as in Pelago's bench; a refusal or an
    // unknown outcome would leave the marker for a resolver, which this bench has not.
    let Outcome::Done(_) = funded else { bail!("the fake channel did not fund top-up {topup}") };

    let done = Timestamp::now_real();
    history::record(
        &mut history,
        TopupStatus::Processing,
        TopupStatus::Succeeded,
        None,
        Source::Channel,
        done,
    )?;
    let history_json = serde_json::to_string(&history)?;
    let (event_id, done_ms) = (EventId::generate(), done.unix_ms());
    let succeeded = TopupStatus::Succeeded.as_str();
    in_transaction(
        c,
        [
            Box::pin(c.execute(
                &pg.finish_topup,
                &[&topup_id, &succeeded, &"done", &done_ms, &2i64, &history_json],
            )),
            Box::pin(c.execute(&pg.credit_card, &[&card_id, &amount_minor])),
            Box::pin(c.execute(&pg.drop_marker, &[&topup_id])),
            Box::pin(
                c.execute(&pg.stage_event, &[&event_id.as_str(), &"topup.succeeded", &done_ms, &topup_id]),
            ),
        ],
        |[topup, card, marker, event]| {
            ensure!(
                topup == 1 && card == 1 && marker == 1 && event == 1,
                "the top-up was not finished whole"
            );
            Ok(())
        },
    )
    .await
}

/// The rows a top-up writes, counted: succeeded, top-ups, markers, journal
/// entries, balance transactions, events, outbox rows; then the cards' credit
/// and the merchants' debit.
async fn tally(pg: &PgClient) -> anyhow::Result<([i64; 7], i64, i64)> {
    let row = pg
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM topup WHERE status = 'succeeded' AND phase = 'done'),
                    (SELECT count(*) FROM topup),
                    (SELECT count(*) FROM operation_marker),
                    (SELECT count(*) FROM journal_entry),
                    (SELECT count(*) FROM balance_txn),
                    (SELECT count(*) FROM event),
                    (SELECT count(*) FROM outbox),
                    (SELECT coalesce(sum(balance_minor), 0)::bigint FROM card),
                    (SELECT coalesce(sum($1::bigint - available_minor), 0)::bigint FROM merchant)",
            &[&OPENING_BALANCE_MINOR],
        )
        .await?;
    Ok((std::array::from_fn(|i| row.get(i)), row.get(7), row.get(8)))
}

/// After a case: `count` top-ups of `amount` + `fee`, each written whole and
/// once — succeeded, no marker left, one journal entry, two balance
/// transactions, one event and one outbox row each, the cards credited and
/// the merchants debited by exactly that much.
pub async fn check(pg: &PgClient, count: usize, amount: Money, fee: Money) -> anyhow::Result<()> {
    let (counts, credited, debited) = tally(pg).await?;
    let n = count as i64;
    ensure!(
        counts == [n, n, 0, n, 2 * n, n, n],
        "PostgreSQL holds {counts:?} (succeeded, top-ups, markers, entries, balance transactions, events, outbox) for {n} top-ups"
    );
    ensure!(credited == n * amount.value, "cards credited {credited}, expected {}", n * amount.value);
    ensure!(debited == n * (amount.value + fee.value), "merchants debited {debited}");
    Ok(())
}

/// The debit's guard holds: `ask`'s merchant left with one minor unit less
/// than its amount + fee is refused `insufficient_funds`, and nothing of that
/// top-up is written (the merchant keeps what it had).
pub async fn check_refusal(pg: &PgClient, ask: &Ask<'_>) -> anyhow::Result<()> {
    let (merchant, amount, fee) = (ask.merchant, ask.amount, ask.fee);
    let short = amount.value + fee.value - 1;
    pg.client
        .execute("UPDATE merchant SET available_minor = $2 WHERE id = $1", &[&merchant.as_str(), &short])
        .await?;
    let before = tally(pg).await?;
    let refused = topup(pg, ask).await;
    let reason = match refused {
        Ok(()) => bail!("a merchant holding {short} paid a top-up of {}", amount.value + fee.value),
        Err(e) => format!("{e:#}"),
    };
    ensure!(reason.contains("insufficient_funds"), "refused for another reason: {reason}");
    ensure!(tally(pg).await? == before, "a refused top-up wrote rows");
    let available: i64 = pg
        .client
        .query_one("SELECT available_minor FROM merchant WHERE id = $1", &[&merchant.as_str()])
        .await?
        .get(0);
    ensure!(available == short, "the refused merchant holds {available}, not {short}");
    Ok(())
}
