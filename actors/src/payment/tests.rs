//! The payment state machine against §6's table, by random event sequences.

use pelago_storage::{Currency, MerchantId, Money, PaymentId, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::history::Status;

fn payment(capture: bool) -> PaymentRecord {
    let at = Timestamp::from_unix_ms(1_000);
    PaymentRecord {
        capture,
        gateway_account: "gw".into(),
        request_id: "req_1".into(),
        ..PaymentRecord::pending(
            PaymentId::generate(),
            MerchantId::generate(),
            Money::new(1_000, Currency::USD),
            "order-1".into(),
            Vec::new(),
            at,
        )
    }
}

/// §6's table, written out again as (from, event, capture) → to.
fn table(from: PaymentStatus, event: PaymentEvent, capture: bool) -> Option<PaymentStatus> {
    use PaymentEvent as E;
    use PaymentStatus as S;
    match (from, event) {
        (S::Pending, E::BuyerPaid) if capture => Some(S::Succeeded),
        (S::Pending, E::BuyerAuthorized) if !capture => Some(S::Authorized),
        (S::Pending, E::BuyerFailed) => Some(S::Declined),
        (S::Pending, E::CheckoutExpired) => Some(S::Expired),
        (S::Authorized, E::Captured) => Some(S::Succeeded),
        (S::Pending | S::Authorized, E::Canceled) => Some(S::Canceled),
        _ => None,
    }
}

fn event() -> impl Strategy<Value = PaymentEvent> {
    (0..PaymentEvent::ALL.len()).prop_map(|i| PaymentEvent::ALL[i])
}

proptest! {
    #[test]
    fn every_sequence_follows_the_table(capture in any::<bool>(), events in prop::collection::vec(event(), 0..12)) {
        let mut p = payment(capture);
        let mut collections = 0;
        for (n, e) in events.into_iter().enumerate() {
            let before = p.clone();
            let at = Timestamp::from_unix_ms(2_000 + n as i64);
            match p.apply(e, Source::Gateway, at) {
                Ok(applied) => {
                    match table(before.status, e, capture) {
                        Some(to) => {
                            prop_assert!(applied.changed);
                            prop_assert_eq!(p.status, to);
                            prop_assert_eq!(p.version, before.version + 1);
                        }
                        None => {
                            // Only a repeat of the status it is in is accepted off the table.
                            prop_assert_eq!(before.status, e.target());
                            prop_assert!(!applied.changed);
                            prop_assert_eq!(&p, &before);
                        }
                    }
                    if applied.collect {
                        collections += 1;
                        prop_assert_eq!(p.captured_at, Some(at));
                    }
                }
                Err(_) => {
                    prop_assert_eq!(table(before.status, e, capture), None);
                    prop_assert_ne!(before.status, e.target());
                    prop_assert_eq!(&p, &before, "a refused event changes nothing");
                }
            }
        }
        // The collection is asked for exactly when the payment became SUCCEEDED, once.
        let reached = p.status_history.changes().iter().filter(|c| c.to == PaymentStatus::Succeeded).count();
        prop_assert_eq!(collections, reached);
        prop_assert!(collections <= 1);
        // Every recorded change is an edge of the declared machine.
        for c in p.status_history.changes().iter().skip(1) {
            prop_assert!(c.from.unwrap().can_become(c.to));
        }
        prop_assert_eq!(p.version as usize, p.status_history.changes().len());
    }
}

#[test]
fn statuses_and_line_types_read_back() {
    for s in PaymentStatus::ALL {
        assert_eq!(PaymentStatus::parse(s.as_str()), Some(*s));
    }
    for t in LineType::ALL {
        assert_eq!(LineType::parse(t.as_str()), Some(t));
    }
    assert_eq!(PaymentStatus::Succeeded.event_type(), "payment.succeeded");
}

#[test]
fn a_declined_checkout_names_its_reason_once() {
    let mut p = payment(true);
    assert!(p.decline("refused".into(), Timestamp::from_unix_ms(5)).unwrap());
    assert!(!p.decline("refused".into(), Timestamp::from_unix_ms(6)).unwrap());
    assert_eq!((p.status, p.failure_reason.as_deref()), (PaymentStatus::Declined, Some("refused")));
}

mod refunds {
    use pelago_storage::{RecipientId, RefundId};

    use super::*;
    use crate::{
        ledger::check_balanced,
        payment::refund::{PortionAsk, RefundAsk, RefundRecord, RefundStatus, plan},
    };

    fn usd(v: i64) -> Money {
        Money::new(v, Currency::USD)
    }

    /// §8's example payment: 1000 = PURCHASE 900 + COMMISSION 100, captured at 1 s.
    fn captured() -> PaymentRecord {
        let mut p = payment(true);
        p.apply(PaymentEvent::BuyerPaid, Source::Gateway, Timestamp::from_unix_ms(1_000)).unwrap();
        let line = |kind, recipient_id, amount| PaymentLine {
            kind,
            recipient_id,
            provider_recipient_id: None,
            merchant_reference: "order-1".into(),
            amount: usd(amount),
            liability: None,
            refunded: 0,
            split_amount: None,
        };
        p.lines = vec![
            line(LineType::Purchase, Some(RecipientId::generate()), 900),
            line(LineType::Commission, None, 100),
        ];
        p
    }

    fn ask(amount: Option<i64>, splits: &[(i64, i64)]) -> RefundAsk {
        RefundAsk {
            amount: amount.map(|v| Ok(usd(v))),
            splits: Some(splits.iter().map(|&(line, v)| PortionAsk { line, amount: Ok(usd(v)) }).collect()),
            reason: None,
        }
    }

    fn record(p: &PaymentRecord, a: &RefundAsk) -> RefundRecord {
        let at = Timestamp::from_unix_ms(2_000);
        let plan = plan(p, a, at).unwrap();
        RefundRecord {
            id: RefundId::generate(),
            payment_id: p.id.clone(),
            merchant_id: p.merchant_id.clone(),
            amount: plan.channel,
            splits: plan.portions,
            reason: None,
            status: RefundStatus::Processing,
            failure_reason: None,
            request_id: "req_r".into(),
            gateway_account: "gw".into(),
            gateway_order_id: "go".into(),
            gateway_refund_id: None,
            after_split: plan.after_split,
            created_at: at,
            completed_at: None,
            version: 1,
            status_history: History::created(RefundStatus::Processing, Source::Merchant, at),
        }
    }

    #[test]
    fn a_refund_moves_the_payment_and_its_failure_moves_it_back() {
        let mut p = captured();
        let at = Timestamp::from_unix_ms(2_000);
        let r = record(&p, &ask(Some(200), &[(0, 180), (1, 20)]));
        check_balanced(&r.postings().unwrap()).unwrap();
        assert!(p.take_refund(&r, 1, at).unwrap());
        assert_eq!(
            (p.status, p.refunded_amount, p.lines[0].refunded),
            (PaymentStatus::PartiallyRefunded, 200, 180)
        );
        assert!(p.take_refund(&r, -1, at).unwrap(), "a failed refund moves the payment back");
        assert_eq!((p.status, p.refunded_amount, p.lines[0].refunded), (PaymentStatus::Succeeded, 0, 0));
        let all = record(&p, &RefundAsk::rest_of(&p));
        assert!(p.take_refund(&all, 1, at).unwrap());
        assert_eq!(p.status, PaymentStatus::Refunded);
        let err = plan(&p, &ask(Some(1), &[(0, 1)]), at).unwrap_err();
        assert!(matches!(err, Reject::InvalidState { .. }), "REFUNDED takes no channel amount: {err:?}");
    }

    #[test]
    fn after_the_split_a_channel_only_refund_is_the_marketplace_s() {
        let mut p = captured();
        p.split.status = SplitStatus::Executed;
        let r = record(&p, &ask(Some(50), &[]));
        let postings = r.postings().unwrap();
        check_balanced(&postings).unwrap();
        assert_eq!(postings.len(), 2, "clearing +C, merchant available −C: {postings:?}");
        let err =
            plan(&p, &RefundAsk { amount: None, splits: None, reason: None }, Timestamp::from_unix_ms(2_000))
                .unwrap_err();
        assert_eq!(
            err,
            Reject::invalid("amount", "give amount (to the buyer), splits (from the parties), or both")
        );
        let late = Timestamp::from_unix_ms(1_000 + crate::payment::refund::REFUND_WINDOW_MS + 1);
        assert!(matches!(plan(&p, &ask(Some(1), &[]), late), Err(Reject::InvalidState { .. })));
    }
}
