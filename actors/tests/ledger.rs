//! The merchant actor's ledger against a real store: one booking per effect,
//! overdrafts refused whole, balances equal postings under concurrency.

mod common;

use std::sync::Arc;

use common::run;
use pelago_actors::{
    ActorError, Reject,
    ledger::{self, EntryKind, JournalEntry},
    merchant::{FundingMode, MerchantCommand, MerchantRecord, PostEntry},
    ports::SystemClock,
    system::{Actors, SystemConfig},
};
use pelago_storage::{ChannelId, Currency, MerchantId, Money, Store, StoreConfig, Timestamp};

fn usd(v: i64) -> Money {
    Money::new(v, Currency::USD)
}

#[test]
fn one_booking_per_effect_and_no_overdraft_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    run(|| async {
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let actors = Actors::start(store.clone(), Arc::new(SystemClock), SystemConfig::default());
        let id = MerchantId::generate();
        let record =
            MerchantRecord::new(id.clone(), "Ledger".into(), FundingMode::MasterAccount, Timestamp(0));
        common::create_merchant(&actors, record).await;
        let deposit = || common::deposit(&id, "gwdep/1", 15_000, Some("deposit.succeeded"));
        let first = actors.ask_merchant(&id, deposit()).await.unwrap().unwrap();
        let again = actors.ask_merchant(&id, deposit()).await.unwrap().unwrap();
        assert!(!first.replayed && again.replayed, "the same deposit is booked once");
        assert_eq!(again.entry.id, first.entry.id);

        // 200 concurrent debits of 100 against 15,000: exactly 150 succeed.
        let channel = ChannelId::generate();
        let calls = (0..200).map(|n| {
            let actors = &actors;
            let id = &id;
            let channel = &channel;
            async move {
                let entry = PostEntry {
                    source_id: format!("tup_{n}"),
                    kind: EntryKind::Topup,
                    postings: ledger::master_topup(id, channel, usd(90), usd(10)).unwrap(),
                    event: None,
                    index: vec![],
                };
                actors.ask_merchant(id, entry).await.unwrap()
            }
        });
        let results = futures::future::join_all(calls).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let short = results
            .iter()
            .filter(|r| matches!(r, Err(ActorError::Rejected(Reject::InsufficientFunds { .. }))))
            .count();
        assert_eq!((ok, short), (150, 50));
        let m = actors.ask_merchant(&id, MerchantCommand::Get).await.unwrap().unwrap();
        assert_eq!(m.balances[0].available, 0);
        let entries = store.iter::<JournalEntry>().count();
        assert_eq!(entries, 151, "one deposit + 150 top-ups");
        // Replayed behind 150 newer bookings, the deposit still answers its own balance transaction.
        let ids = |p: &pelago_actors::merchant::Posted| {
            p.balance_txns.iter().map(|t| t.id.clone()).collect::<Vec<_>>()
        };
        let late = actors.ask_merchant(&id, deposit()).await.unwrap().unwrap();
        assert!(late.replayed);
        assert_eq!(ids(&first).len(), 1);
        assert_eq!((ids(&again), ids(&late)), (ids(&first), ids(&first)));

        // A void settles in the merchant's order whether a booking happened: a
        // booked one stays booked; a voided one can never be booked after.
        use pelago_actors::merchant::{VoidEntry, Voided};
        let void = |source: &str| VoidEntry { source_id: source.into(), kind: EntryKind::Deposit };
        assert_eq!(actors.ask_merchant(&id, void("gwdep/1")).await.unwrap().unwrap(), Voided::AlreadyBooked);
        assert_eq!(actors.ask_merchant(&id, void("gwdep/2")).await.unwrap().unwrap(), Voided::Void);
        let late_deposit = PostEntry { source_id: "gwdep/2".into(), ..deposit() };
        let refused = actors.ask_merchant(&id, late_deposit).await.unwrap();
        assert!(matches!(refused, Err(ActorError::Rejected(Reject::InvalidState { .. }))), "{refused:?}");
        assert_eq!(actors.ask_merchant(&id, void("gwdep/2")).await.unwrap().unwrap(), Voided::Void);
        assert_eq!(store.iter::<JournalEntry>().count(), 151, "nothing booked for the voided source");
    });
}
