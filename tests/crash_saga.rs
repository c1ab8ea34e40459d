//! SIGKILL in the middle of a money saga (issue 6): a top-up whose channel
//! call is in flight when the process dies ends, after a restart and with no
//! further request, in exactly one of (funded + debited) or (not funded + not
//! debited).

mod common;

use std::time::Duration;

use common::{Json, Key, Merchant, Service, eventually, ledger_balanced, secs, when};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_topup_ends_funded_and_debited_or_neither() {
    let (_dir, data) = common::temp_data();
    let env = [("PELAGO_UPSTREAM_TIMEOUT_MS", "1500")];
    let svc = Service::start(&data, &env);
    let (id, key, holder) =
        funded_merchant(&svc, json!({"currency": "USD", "topup_fee": {"fixed": 100}})).await;
    let m = Merchant::of(&svc, &id, key.clone());
    let card = m.open_card(&holder).await.1.str("id").to_owned();
    // The channel applies the top-up and holds its answer past Pelago's timeout.
    svc.channel_fault(&svc.first_channel().await, "topup", "timeout").await;

    // Fire the top-up and do not wait for it.
    let request = svc
        .signed(
            &key,
            Method::POST,
            &format!("/v1/cards/{card}/topups"),
            br#"{"amount":{"value":1000,"currency":"USD"}}"#,
        )
        .header("content-type", "application/json")
        .send();
    let in_flight = tokio::spawn(request);
    // Kill once the debit is booked (the saga is then at the channel call).
    m.poll("/v1/balance", secs(10), |b| b["balances"][0]["available"].as_i64() == Some(10_000 - 1_100)).await;
    drop(m);
    svc.kill(); // SIGKILL: no drain, no flush beyond what was acknowledged
    let _ = in_flight.await;

    // Restart: the resolver finishes the saga by itself.
    let svc = Service::start(&data, &env);
    let m = Merchant::of(&svc, &id, key);
    let list = m
        .poll(&format!("/v1/cards/{card}/topups"), secs(30), |l| {
            l["data"][0]["status"] == "succeeded" || l["data"][0]["status"] == "failed"
        })
        .await;
    let topup = &list["data"][0];
    let funded = m.get(&format!("/v1/cards/{card}/details")).await.i64("balance.value");
    let available = m.available().await;
    // The channel had applied it, so the resolver must find it applied: funded
    // and debited, once (not half a saga, and not the refusal a guess would give).
    assert_eq!(
        (funded, available, topup["status"].as_str()),
        (1_000, 8_900, Some("succeeded")),
        "funded {funded}, available {available}, {topup}"
    );
    ledger_balanced(&svc).await;
}

/// Issue 14: a master-account card opening that dies right after its
/// application fee was booked (a failpoint aborts the process between the two
/// commits) charges the fee once: after a restart the resolver opens that
/// card, and a retry with the same Idempotency-Key answers it, with no second
/// fee and no second card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_application_fee_and_the_card_charges_once_and_opens_that_card() {
    an_opening_that_died_at("cards.open.after_fee").await;
}

/// Issue 17: an opening with a fee writes its card once, with the channel's
/// answer. The channel opened the card and the process died before that
/// commit: after a restart the resolver asks again with the request id
/// derived from the card id, gets the same card, and charges nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_channel_opened_the_card_charges_once_and_opens_that_card() {
    an_opening_that_died_at("cards.open.after_channel").await;
}

async fn an_opening_that_died_at(failpoint: &'static str) {
    let (_dir, data) = common::temp_data();
    let svc = Service::armed(&data, failpoint);
    let (id, key, holder) =
        funded_merchant(&svc, json!({"currency": "USD", "application_fee": {"fixed": 500}})).await;
    let body = json!({"cardholder_id": holder});
    svc.aborts(&key, "/v1/cards", &body, "open-after-crash").await;

    let svc = Service::start(&data, &[common::FAST_UPSTREAMS]);
    let m = Merchant::of(&svc, &id, key.clone());
    // The resolver finishes the opening: one card, active, the fee charged once.
    let cards = m
        .poll("/v1/cards", secs(30), |cards| {
            cards["data"].as_array().is_some_and(|c| c.len() == 1 && c[0]["status"] == "active")
        })
        .await;
    assert_eq!(m.available().await, 10_000 - 500, "the fee once");
    // The retry with the same key answers that card; nothing more is charged or created.
    let (status, retried) = m.post_once("/v1/cards", &body, "open-after-crash").await;
    assert!(status.is_success(), "{status}: {retried}");
    assert_eq!(retried["id"], cards["data"][0]["id"]);
    assert_eq!(m.get("/v1/cards").await.count("data"), 1);
    assert_eq!(m.available().await, 10_000 - 500);
    ledger_balanced(&svc).await;
}

/// A master-account merchant with `fees` (a FeeSchedule in USD), 10,000
/// deposited and an active cardholder: (merchant id, key, cardholder id).
async fn funded_merchant(svc: &Service, fees: Value) -> (String, Key, String) {
    let m = svc.merchant("Recovered").await;
    m.fees(fees).await;
    m.deposit(10_000).await;
    let holder = m.active_cardholder().await;
    (m.id, m.key, holder)
}

/// A master-account merchant with 10,000 available and one active card.
async fn funded_card(svc: &Service) -> (String, Key, String) {
    let (merchant, key, holder) = funded_merchant(svc, json!({"currency": "USD"})).await;
    let (_, card) = Merchant::of(svc, &merchant, key.clone()).open_card(&holder).await;
    (merchant, key, card.str("id").to_owned())
}

/// A top-up that dies at a step boundary `failpoint` of the two-step saga,
/// with an Idempotency-Key, ends once the service is back and nobody asks
/// again: debited once, funded once, `succeeded`; the retry with that key
/// answers that top-up (charged and funded nothing more); a new request tops
/// the card up once more.
async fn a_topup_that_died_at(failpoint: &'static str) {
    let (_dir, data) = common::temp_data();
    let svc = Service::armed(&data, failpoint);
    let (id, key, card) = funded_card(&svc).await;
    let body = json!({"amount": {"value": 1_000, "currency": "USD"}});
    let path = format!("/v1/cards/{card}/topups");
    svc.aborts(&key, &path, &body, "topup-after-crash").await;

    let svc = Service::start(&data, &[common::FAST_UPSTREAMS]);
    let m = Merchant::of(&svc, &id, key.clone());
    let list = m
        .poll(&format!("/v1/cards/{card}/topups"), secs(30), |l| l["data"][0]["status"] == "succeeded")
        .await;
    assert_eq!(list.count("data"), 1, "{list}");
    let funded = || async { m.get(&format!("/v1/cards/{card}/details")).await.i64("balance.value") };
    assert_eq!((funded().await, m.available().await), (1_000, 10_000 - 1_000), "charged once, funded once");
    let (status, retried) = m.post_once(&path, &body, "topup-after-crash").await;
    assert_eq!(status.as_u16(), 201, "the top-up the crashed request made, settled: {retried}");
    assert_eq!((retried.str("id"), retried.str("status")), (list["data"][0].str("id"), "succeeded"));
    assert_eq!((funded().await, m.available().await), (1_000, 10_000 - 1_000), "the retry did nothing more");
    let (status, fresh) = m.post_once(&path, &body, "topup-fresh").await;
    assert_eq!(status.as_u16(), 201, "{fresh}");
    assert_eq!((funded().await, m.available().await), (2_000, 10_000 - 2_000), "a new request, once");
    ledger_balanced(&svc).await;
}

/// Step 1 (the debit with the top-up's intent and marker) is durable, the
/// channel was never called: the resolver calls it with the stored request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topup_that_died_between_its_debit_and_the_channel_charges_once_and_funds_once() {
    a_topup_that_died_at("topups.after_intent").await;
}

/// The channel applied the funding, the process died before step 3: the
/// resolver finds it applied by its request id and does not fund again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topup_that_died_after_the_channel_call_charges_once_and_funds_once() {
    a_topup_that_died_at("topups.after_channel").await;
}

/// Top-ups the three-step saga of earlier versions left in a data dir (phase
/// `Debiting`: begun by the card, its debit booked or not) are resolved after
/// the upgrade: the one never debited fails and charges nothing, the debited
/// one is funded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_step_topups_left_in_a_data_dir_are_resolved_after_the_upgrade() {
    let (_dir, data) = common::temp_data();
    let env = [("PELAGO_UPSTREAM_TIMEOUT_MS", "1000")];
    let svc = Service::start(&data, &env);
    let (id, key, card) = funded_card(&svc).await;
    assert!(svc.terminate().success());
    let db = data.join("db");
    let (undebited, debited) = {
        let (db, card) = (db.clone(), card.clone());
        std::thread::spawn(move || three_step::leave_two_topups(&db, &card)).join().unwrap()
    };
    eventually("the store released by the actors that booked", secs(20), async || {
        pelago_storage::Store::open(&db, &pelago_storage::StoreConfig::default())
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;

    let svc = Service::start(&data, &env);
    let m = Merchant::of(&svc, &id, key);
    let failed = m.poll(&format!("/v1/topups/{undebited}"), secs(30), |t| t["status"] == "failed").await;
    assert_eq!(failed.count("status_history"), 2, "{failed}");
    m.poll(&format!("/v1/topups/{debited}"), secs(30), |t| t["status"] == "succeeded").await;
    let funded = m.get(&format!("/v1/cards/{card}/details")).await.i64("balance.value");
    assert_eq!((funded, m.available().await), (1_000, 10_000 - 1_000), "the debited one, once");
    ledger_balanced(&svc).await;
}

/// What the three-step saga wrote, written here as it did.
mod three_step {
    use std::{path::Path, sync::Arc};

    use pelago_actors::{
        card::{
            CardRecord,
            topup::{TopupPhase, TopupRecord, TopupStatus, marker_value, topup_key},
        },
        history::{History, Source},
        keys::{Index, Marker},
        ledger::{self, EntryKind},
        merchant::PostEntry,
        ports::SystemClock,
        system::{Actors, SystemConfig},
    };
    use pelago_storage::{CardId, Money, Store, StoreConfig, Timestamp, TopupId, Tree, WriteBatch};

    /// Two top-ups of 1,000 begun an hour ago (`Debiting`, marker, index row);
    /// the merchant actor books the second one's debit. Returns their ids.
    pub fn leave_two_topups(db: &Path, card: &str) -> (String, String) {
        let store = Store::open(db, &StoreConfig::default()).unwrap();
        let card: CardRecord = store.get(CardId::parse(card).unwrap().as_bytes()).unwrap().unwrap();
        let began = Timestamp(Timestamp::now_real().unix_ms() - 3_600_000);
        let amount = Money::new(1_000, card.currency);
        let (undebited, debited) = (TopupId::generate(), TopupId::generate());
        let mut batch = WriteBatch::new();
        for id in [&undebited, &debited] {
            let topup = TopupRecord {
                id: id.clone(),
                card_id: card.id.clone(),
                merchant_id: card.merchant_id.clone(),
                amount,
                fee: Money::zero(card.currency),
                total: amount,
                reference: None,
                order: None,
                status: TopupStatus::Processing,
                phase: TopupPhase::Debiting,
                request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
                failure_reason: None,
                created_at: began,
                completed_at: None,
                version: 1,
                status_history: History::created(TopupStatus::Processing, Source::Merchant, began),
            };
            batch.put(topup_key(&card.id, id), &topup).unwrap();
            batch.put_raw(Tree::Index, Index::Topup { topup: id.clone() }.encode(), card.id.as_bytes());
            batch.put_raw(
                Tree::Operations,
                Marker::Topup { topup: id.clone() }.encode(),
                marker_value(&card.id, began),
            );
        }
        store.wait_durable_blocking(store.commit(batch).unwrap()).unwrap();
        let runner = actix::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
        });
        runner.block_on(async {
            let actors = Actors::start(store, Arc::new(SystemClock), SystemConfig::default());
            let entry = PostEntry {
                source_id: debited.to_string(),
                kind: EntryKind::Topup,
                postings: ledger::master_topup(
                    &card.merchant_id,
                    &card.channel_id,
                    amount,
                    Money::zero(card.currency),
                )
                .unwrap(),
                event: None,
                index: vec![],
            };
            actors.ask_merchant(&card.merchant_id, entry).await.unwrap().unwrap();
            actors.stop_all();
            actix::System::current().stop();
        });
        (undebited.to_string(), debited.to_string())
    }
}

/// A withdrawal that dies after its hold and before its record: the resolver
/// releases the hold and frees its Idempotency-Key (kept in the hold row), so
/// the retry with that key holds and pays out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_that_died_after_its_hold_is_released_and_its_key_freed() {
    let (_dir, data) = common::temp_data();
    let svc = Service::armed(&data, "withdrawals.after_hold");
    let (merchant, key, _) = funded_card(&svc).await;
    let addresses = json!({"addresses": [{"address": "TXYZ0001", "network": "TRON", "label": "channel A"}]});
    let path = format!("/admin/v1/merchants/{merchant}/withdrawal-addresses");
    svc.admin_put(&path, addresses).await;
    let withdraw = |svc: &Service| {
        svc.admin(Method::POST, &format!("/admin/v1/merchants/{merchant}/withdrawals"))
            .header("idempotency-key", "withdraw-after-crash")
            .json(&json!({"amount": {"value": 2_000, "currency": "USD"}, "address": "TXYZ0001"}))
            .send()
    };
    assert!(withdraw(&svc).await.is_err(), "aborted at the failpoint");
    assert!(!svc.wait_exit(Duration::from_secs(20)).success());
    let svc = Service::start(&data, &[common::FAST_UPSTREAMS]);
    let answer = eventually("the key freed", secs(30), async || {
        let r = withdraw(&svc).await.unwrap();
        let status = r.status();
        when(status.as_u16() == 201, r.json::<Value>().await.unwrap_or(Value::Null)).map_err(|_| status)
    })
    .await;
    assert_eq!(answer["status"], "succeeded", "{answer}");
    assert_eq!(Merchant::of(&svc, &merchant, key).available().await, 10_000 - 2_000, "held and paid once");
    ledger_balanced(&svc).await;
}
