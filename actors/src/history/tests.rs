//! The typed history keeps the stored layout (statuses as strings), and every
//! state machine refuses exactly the edges its table does not list.

use pelago_storage::{Timestamp, decode, encode};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;
use crate::{
    card::{CardStatus, order::OrderStatus, topup::TopupStatus},
    cardholder::CardholderStatus,
    recipient::{ComplianceStatus, OnboardingStatus, agreement::AgreementStatus},
    withdrawal::WithdrawalStatus,
};

/// The layout histories were written with before they were typed.
#[derive(Serialize, Deserialize)]
struct LegacyChange {
    from: Option<String>,
    to: String,
    reason: Option<String>,
    source: Source,
    at: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct Legacy(Vec<LegacyChange>);
pelago_storage::record!(Legacy, Topups, 1);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Typed(History<TopupStatus>);
pelago_storage::record!(Typed, Topups, 1);

#[test]
fn a_typed_history_is_stored_exactly_as_the_string_history_was() {
    let at = Timestamp(1_764_000_000_000);
    let legacy = Legacy(vec![
        LegacyChange { from: None, to: "pending_payment".into(), reason: None, source: Source::Merchant, at },
        LegacyChange {
            from: Some("pending_payment".into()),
            to: "processing".into(),
            reason: Some("order paid".into()),
            source: Source::Gateway,
            at,
        },
    ]);
    let old_bytes = encode(&legacy).unwrap();
    let typed: Typed = decode(&old_bytes).expect("an old record reads as it is");
    let mut expected = History::created(TopupStatus::PendingPayment, Source::Merchant, at);
    record(
        &mut expected,
        TopupStatus::PendingPayment,
        TopupStatus::Processing,
        Some("order paid".into()),
        Source::Gateway,
        at,
    )
    .unwrap();
    assert_eq!(typed, Typed(expected));
    assert_eq!(encode(&typed).unwrap(), old_bytes, "and is written back byte for byte");
    // Golden bytes: version 1, two changes, "pending_payment" as a length-prefixed string.
    assert_eq!(&old_bytes[..4], &[1, 2, 0, 15]);
    assert_eq!(&old_bytes[4..19], b"pending_payment");
}

#[test]
fn an_unknown_status_in_a_stored_history_is_an_error_not_a_guess() {
    let at = Timestamp(0);
    let legacy = Legacy(vec![LegacyChange {
        from: None,
        to: "teleported".into(),
        reason: None,
        source: Source::System,
        at,
    }]);
    let err = decode::<Typed>(&encode(&legacy).unwrap()).unwrap_err();
    assert!(err.to_string().contains("teleported"), "{err}");
}

#[test]
fn the_history_is_bounded() {
    let mut h = History::created(CardStatus::Active, Source::Merchant, Timestamp(0));
    for i in 0..200 {
        let (from, to) = if i % 2 == 0 {
            (CardStatus::Active, CardStatus::Frozen)
        } else {
            (CardStatus::Frozen, CardStatus::Active)
        };
        record(&mut h, from, to, None, Source::Merchant, Timestamp(i)).unwrap();
    }
    assert_eq!(h.changes().len(), MAX_HISTORY);
    assert_eq!(h.changes().last().unwrap().at, Timestamp(199));
}

/// The tables of DOMAIN.md, written out once more as the pairs they allow.
fn documented<S: Status>() -> Vec<(&'static str, &'static str)> {
    let all: &[(&str, &str)] = match S::OBJECT {
        "top-up" => &[
            ("pending_payment", "processing"),
            ("pending_payment", "canceled"),
            ("processing", "succeeded"),
            ("processing", "failed"),
        ],
        "order" => {
            &[("pending", "paid"), ("pending", "failed"), ("pending", "expired"), ("paid", "refunded")]
        }
        "withdrawal" => &[("processing", "succeeded"), ("processing", "failed")],
        "cardholder" => &[("pending", "active"), ("pending", "rejected")],
        "card" => &[
            ("pending_payment", "processing"),
            ("pending_payment", "canceled"),
            ("processing", "active"),
            ("processing", "failed"),
            ("active", "frozen"),
            ("frozen", "active"),
            ("active", "deleted"),
            ("frozen", "deleted"),
        ],
        "onboarding" => &[
            ("CREATED", "PENDING"),
            ("REJECTED", "PENDING"),
            ("ERROR", "PENDING"),
            ("PENDING", "SUCCEEDED"),
            ("PENDING", "DECLINED"),
            ("PENDING", "REJECTED"),
            ("PENDING", "BLOCKED"),
            ("PENDING", "ERROR"),
            ("CREATED", "CANCELED"),
            ("PENDING", "CANCELED"),
            ("REJECTED", "CANCELED"),
            ("ERROR", "CANCELED"),
            ("SUCCEEDED", "BLOCKED"),
        ],
        "agreement" => &[("pending", "signed"), ("pending", "failed"), ("signed", "superseded")],
        "compliance review" => &[
            ("not_started", "pending"),
            ("pending", "approved"),
            ("pending", "failed"),
            ("pending", "frozen"),
            ("failed", "pending"),
        ],
        other => panic!("no documented table for {other}"),
    };
    all.to_vec()
}

fn exactly_the_documented_edges<S: Status>() {
    let allowed = documented::<S>();
    for &from in S::ALL {
        for &to in S::ALL {
            let documented = allowed.contains(&(from.as_str(), to.as_str()));
            assert_eq!(from.can_become(to), documented, "{} {} -> {}", S::OBJECT, from.as_str(), to.as_str());
            let mut h = History::created(from, Source::System, Timestamp(0));
            let result = record(&mut h, from, to, None, Source::System, Timestamp(1));
            match result {
                Ok(()) => assert_eq!(h.changes().len(), 2),
                Err(Reject::InvalidState { message }) => {
                    assert!(
                        message.contains(from.as_str()),
                        "the refusal names the current state: {message}"
                    );
                    assert_eq!(h.changes().len(), 1, "nothing recorded");
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(S::parse(from.as_str()), Some(from));
    }
}

#[test]
fn every_machine_allows_exactly_its_documented_edges() {
    exactly_the_documented_edges::<TopupStatus>();
    exactly_the_documented_edges::<OrderStatus>();
    exactly_the_documented_edges::<WithdrawalStatus>();
    exactly_the_documented_edges::<CardholderStatus>();
    exactly_the_documented_edges::<CardStatus>();
    exactly_the_documented_edges::<OnboardingStatus>();
    exactly_the_documented_edges::<ComplianceStatus>();
    exactly_the_documented_edges::<AgreementStatus>();
}

/// Walks random commands over one machine: the status only ever moves along
/// a documented edge, the history records exactly the moves made, and the
/// version counts them.
fn random_walk<S: Status>(steps: &[usize]) -> Result<(), TestCaseError> {
    struct Object<S: Status> {
        status: S,
        history: History<S>,
        version: u64,
    }
    impl<S: Status> Stateful for Object<S> {
        type Status = S;
        fn state_mut(&mut self) -> (&mut S, &mut History<S>, &mut u64) {
            (&mut self.status, &mut self.history, &mut self.version)
        }
    }
    let first = S::ALL[0];
    let mut o =
        Object { status: first, history: History::created(first, Source::System, Timestamp(0)), version: 1 };
    let mut moves = 0;
    for (i, pick) in steps.iter().enumerate() {
        let to = S::ALL[pick % S::ALL.len()];
        let before = o.status;
        match o.transition(to, None, Source::System, Timestamp(i as i64)) {
            Ok(()) => {
                prop_assert!(before.can_become(to));
                prop_assert_eq!(o.status, to);
                moves += 1;
            }
            Err(_) => {
                prop_assert!(!before.can_become(to));
                prop_assert_eq!(o.status, before);
            }
        }
    }
    prop_assert_eq!(o.version, 1 + moves as u64);
    let kept = o.history.changes();
    prop_assert_eq!(kept.len(), (1 + moves).min(MAX_HISTORY));
    for pair in kept.windows(2) {
        prop_assert_eq!(pair[1].from, Some(pair[0].to));
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_commands_only_walk_documented_edges(steps in proptest::collection::vec(0usize..16, 0..80)) {
        random_walk::<TopupStatus>(&steps)?;
        random_walk::<OrderStatus>(&steps)?;
        random_walk::<WithdrawalStatus>(&steps)?;
        random_walk::<CardholderStatus>(&steps)?;
    }
}
