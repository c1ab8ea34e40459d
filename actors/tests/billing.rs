//! Monthly fees charged a chunk of cards per merchant commit
//! (`merchant::billing`): the same decisions as card by card, once per
//! (card, period), and nothing written when a card changed since it was read.

mod common;

use common::{created_card, refund, with_actors};
use pelago_actors::{
    ActorError,
    card::{
        ApplyTransaction, CardRecord, CardStatus,
        billing::{BeginCharge, ChargeStatus, MonthlyCharge, charge_key},
    },
    ledger::{self, EntryKind},
    merchant::{
        FeeSchedule, FundingMode, MerchantRecord,
        billing::{ChargeMonthlyFees, FeeCard},
    },
    runtime::RegistryConfig,
    system::Actors,
};
use pelago_storage::{CardId, Currency, MerchantId, StoreError, Timestamp};

const PERIOD: &str = "2026-12";
const FEE: i64 = 200;

async fn merchant(actors: &Actors) -> MerchantId {
    let id = MerchantId::parse("mch_01JDEMO0000000000000000000").unwrap();
    let mut record =
        MerchantRecord::new(id.clone(), "Billed".into(), FundingMode::MasterAccount, Timestamp(0));
    record.fees.push(FeeSchedule {
        currency: Currency::USD,
        application_fixed: 0,
        topup_fixed: 0,
        topup_rate_bps: 0,
        monthly_fixed: FEE,
    });
    common::create_merchant(actors, record).await;
    actors.ask_merchant(&id, common::deposit(&id, "gwdep/billing", 500, None)).await.unwrap().unwrap();
    id
}

fn as_read(actors: &Actors, id: &CardId) -> FeeCard {
    let (card, stored) = actors.store.get_with_bytes::<CardRecord>(id.as_bytes()).unwrap().unwrap();
    FeeCard { card, stored, source_id: format!("mfee/{id}/{PERIOD}") }
}

fn chunk(cards: Vec<FeeCard>) -> ChargeMonthlyFees {
    ChargeMonthlyFees {
        period: PERIOD.into(),
        instant: Timestamp(Timestamp::now_real().unix_ms() + 60_000),
        cards,
    }
}

fn available(actors: &Actors, id: &MerchantId) -> i64 {
    let record = actors.store.get::<MerchantRecord>(id.as_bytes()).unwrap().unwrap();
    record.balances.iter().find(|b| b.currency == Currency::USD).map_or(0, |b| b.available)
}

fn charge(actors: &Actors, card: &CardId) -> Option<MonthlyCharge> {
    actors.store.get::<MonthlyCharge>(charge_key(PERIOD, card)).unwrap()
}

#[test]
fn a_chunk_charges_each_card_once_as_the_card_by_card_path_would() {
    with_actors(RegistryConfig::default(), |actors| async move {
        let m = merchant(&actors).await;
        let mut ids = Vec::new();
        for status in [CardStatus::Active, CardStatus::Frozen, CardStatus::Processing, CardStatus::Active] {
            ids.push(created_card(&actors, status).await);
        }
        let (processing, d) = (&ids[2], &ids[3]);
        let read = || ids.iter().map(|id| as_read(&actors, id)).collect();

        let statuses = actors.ask_merchant(&m, chunk(read())).await.unwrap().unwrap();
        use ChargeStatus::*;
        assert_eq!(statuses, vec![Some(Charged), Some(Charged), Some(Skipped), Some(Unpaid)]);
        assert_eq!(available(&actors, &m), 100, "two fees of 200 from 500; the third refused whole");
        assert_eq!(charge(&actors, d).unwrap().status, Unpaid);
        assert_eq!(charge(&actors, processing).unwrap().status, Skipped);

        // The same chunk again: the charges as they stand, nothing booked twice.
        let again = actors.ask_merchant(&m, chunk(read())).await.unwrap().unwrap();
        assert_eq!(again, statuses);
        assert_eq!(available(&actors, &m), 100);
        let fees = actors
            .store
            .iter::<ledger::JournalEntry>()
            .filter(|e| e.as_ref().unwrap().1.kind == EntryKind::MonthlyFee)
            .count();
        assert_eq!(fees, 2);
    });
}

#[test]
fn a_card_changed_since_it_was_read_refuses_the_chunk_whole() {
    with_actors(RegistryConfig::default(), |actors| async move {
        let m = merchant(&actors).await;
        let (a, b) = (
            created_card(&actors, CardStatus::Active).await,
            created_card(&actors, CardStatus::Active).await,
        );
        let stale = vec![as_read(&actors, &a), as_read(&actors, &b)];
        // `b` changes after it was read (a refund lands on it).
        actors.ask_card(&b, ApplyTransaction(refund("r1", 5))).await.unwrap().unwrap();

        let refused = actors.ask_merchant(&m, chunk(stale)).await.unwrap();
        assert!(
            matches!(refused, Err(ActorError::Store(StoreError::Conflict { tree: "cards" }))),
            "{refused:?}"
        );
        assert!(charge(&actors, &a).is_none() && charge(&actors, &b).is_none(), "nothing written");
        assert_eq!(available(&actors, &m), 500);

        // A charge begun card by card is left to the card: `None`.
        let begun = BeginCharge { period: PERIOD.into(), fee_minor: FEE, instant: chunk(vec![]).instant };
        actors.ask_card(&a, begun).await.unwrap().unwrap();
        let statuses = actors
            .ask_merchant(&m, chunk(vec![as_read(&actors, &a), as_read(&actors, &b)]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(statuses, vec![None, Some(ChargeStatus::Charged)]);
        assert_eq!(available(&actors, &m), 300, "the merchant actor kept its own record through the refusal");
    });
}
