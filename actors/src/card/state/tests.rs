use pelago_storage::{CardId, ChannelId, Currency, MerchantId, Money, Timestamp, TransactionId};
use proptest::prelude::*;

use super::*;
use crate::ports::{ChannelTransaction, ChannelTxnStatus as S, ChannelTxnType as T};

fn card(status: CardStatus) -> CardRecord {
    CardRecord::create(
        NewCard::sandbox_usd(CardId::generate(), MerchantId::generate(), ChannelId::generate(), status),
        Timestamp(0),
        Source::Merchant,
    )
}

fn txn(id: &str, kind: T, status: S, value: i64) -> ChannelTransaction {
    ChannelTransaction {
        channel_transaction_id: id.into(),
        channel_card_id: "cc_1".into(),
        kind,
        status,
        amount: Money::new(value, Currency::USD),
        merchant_name: "Cafe".into(),
        mcc: "5812".into(),
        occurred_at: Timestamp(1),
        balance_after: Money::new(0, Currency::USD),
        related_transaction_id: None,
    }
}

#[test]
fn the_documented_lifecycle_is_allowed_and_recorded() {
    let mut c = card(CardStatus::PendingPayment);
    c.transition(CardStatus::Processing, "open", Some("order paid".into()), Source::Gateway, Timestamp(1))
        .unwrap();
    c.mark_opened("cc_1".into(), "4242".into(), Money::new(0, Currency::USD), Timestamp(2)).unwrap();
    c.transition(CardStatus::Frozen, "freeze", None, Source::Merchant, Timestamp(3)).unwrap();
    c.transition(CardStatus::Active, "unfreeze", None, Source::Merchant, Timestamp(4)).unwrap();
    c.transition(CardStatus::Deleted, "delete", None, Source::Merchant, Timestamp(5)).unwrap();
    let path: Vec<_> = c.status_history.changes().iter().map(|h| h.to.as_str()).collect();
    assert_eq!(path, ["pending_payment", "processing", "active", "frozen", "active", "deleted"]);
    assert_eq!(c.version, 6);
    assert_eq!(c.status_history.changes()[1].source, Source::Gateway);
    assert_eq!(c.status_history.changes()[1].from, Some(CardStatus::PendingPayment));
}

#[test]
fn other_transitions_are_invalid_state_naming_the_current_one() {
    let mut c = card(CardStatus::Active);
    c.transition(CardStatus::Deleted, "delete", None, Source::Merchant, Timestamp(1)).unwrap();
    let err = c.transition(CardStatus::Frozen, "freeze", None, Source::Merchant, Timestamp(2)).unwrap_err();
    assert_eq!(err, Reject::state("cannot freeze a card that is deleted"));
    assert_eq!(c.version, 2, "a refused command changes nothing");
}

#[test]
fn mirrored_balance_follows_the_channel() {
    let mut c = card(CardStatus::Active);
    c.balance_minor = 10_000;
    let auth = txn("t1", T::Authorization, S::Pending, 2_500);
    let TransactionChange::Created(stored) =
        apply_transaction(&mut c, None, &auth, false, TransactionId::generate(), Timestamp(1)).unwrap()
    else {
        panic!("first sight creates");
    };
    assert_eq!(c.balance_minor, 7_500);
    // The same notification again: nothing.
    assert_eq!(
        apply_transaction(&mut c, Some(&stored), &auth, false, TransactionId::generate(), Timestamp(2))
            .unwrap(),
        TransactionChange::Unchanged
    );
    assert_eq!(c.balance_minor, 7_500);
    // Posted: same effect, no second debit.
    let posted = txn("t1", T::Authorization, S::Posted, 2_500);
    let TransactionChange::Updated(stored) =
        apply_transaction(&mut c, Some(&stored), &posted, false, TransactionId::generate(), Timestamp(3))
            .unwrap()
    else {
        panic!("status change updates");
    };
    assert_eq!(c.balance_minor, 7_500);
    // Reversed: the money comes back.
    let reversed = txn("t1", T::Authorization, S::Reversed, 2_500);
    apply_transaction(&mut c, Some(&stored), &reversed, false, TransactionId::generate(), Timestamp(4))
        .unwrap();
    assert_eq!(c.balance_minor, 10_000);
    // A clearing of a known authorization does not reduce twice; a declined one changes nothing.
    apply_transaction(
        &mut c,
        None,
        &txn("t2", T::Clearing, S::Posted, 100),
        true,
        TransactionId::generate(),
        Timestamp(5),
    )
    .unwrap();
    apply_transaction(
        &mut c,
        None,
        &txn("t3", T::Authorization, S::Declined, 99_999),
        false,
        TransactionId::generate(),
        Timestamp(6),
    )
    .unwrap();
    assert_eq!(c.balance_minor, 10_000);
    apply_transaction(
        &mut c,
        None,
        &txn("t4", T::Refund, S::Posted, 50),
        false,
        TransactionId::generate(),
        Timestamp(7),
    )
    .unwrap();
    assert_eq!(c.balance_minor, 10_050);
}

#[test]
fn a_transaction_in_another_currency_is_refused() {
    let mut c = card(CardStatus::Active);
    let mut t = txn("t1", T::Authorization, S::Posted, 1);
    t.amount.currency = Currency::EUR;
    assert!(apply_transaction(&mut c, None, &t, false, TransactionId::generate(), Timestamp(1)).is_err());
    assert_eq!(c.version, 1);
}

const ALL: &[CardStatus] = <CardStatus as crate::history::Status>::ALL;

proptest! {
    /// Whatever is asked, the history only ever walks DOMAIN.md's edges, the
    /// version counts the changes, and terminal states stay terminal.
    #[test]
    fn random_commands_only_walk_documented_edges(start in 0usize..7, asks in proptest::collection::vec(0usize..7, 0..40)) {
        let mut c = card(ALL[start]);
        for (i, ask) in asks.into_iter().enumerate() {
            let before = c.clone();
            let to = ALL[ask];
            match c.transition(to, "act", None, Source::Operator, Timestamp(i as i64)) {
                Ok(()) => {
                    prop_assert!(before.status.can_become(to));
                    prop_assert_eq!(c.version, before.version + 1);
                }
                Err(_) => prop_assert_eq!(&c, &before),
            }
        }
        for pair in c.status_history.changes().windows(2) {
            prop_assert_eq!(pair[1].from, Some(pair[0].to));
            prop_assert!(pair[0].to.can_become(pair[1].to));
        }
        if matches!(c.status, CardStatus::Deleted | CardStatus::Failed | CardStatus::Canceled) {
            for &to in ALL {
                prop_assert!(!c.status.can_become(to));
            }
        }
    }
}
