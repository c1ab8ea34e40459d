//! §4's two tables, written out once more as rows, against every state the
//! machine can reach: each row is taken, each other event is refused with
//! nothing changed; and a random walk keeps the invariants.

use std::collections::{BTreeSet, VecDeque};

use pelago_storage::{FileId, MerchantId, OnboardingId, RecipientId, Timestamp};
use proptest::prelude::*;

use super::*;
use ComplianceStatus as C;
use OnboardingStatus as O;

fn owner() -> RecipientId {
    RecipientId::parse("rec_01JOWNER00000000000000000A").unwrap()
}
fn other() -> RecipientId {
    RecipientId::parse("rec_01JOTHER00000000000000000B").unwrap()
}
fn doc() -> Document {
    Document { file_id: FileId::parse("file_01JFILE000000000000000000C").unwrap(), kind: DocumentType::Other }
}

fn new(kind: OnboardingType) -> Onboarding {
    let provider = (kind == OnboardingType::PreviouslyOnboarded).then(|| "gwr_previous".to_owned());
    Onboarding::create(
        NewOnboarding {
            id: OnboardingId::parse("onb_01JONB0000000000000000000D").unwrap(),
            merchant_id: MerchantId::parse("mch_01JMCH0000000000000000000E").unwrap(),
            recipient_id: owner(),
            kind,
            provider_recipient_id: provider,
            documents: vec![],
        },
        Timestamp(0),
    )
    .unwrap()
}

/// Every event the machine knows, in each shape that matters to a row.
fn events() -> Vec<OnboardingEvent> {
    use OnboardingEvent as E;
    let decide = |decision| E::Decide { decision, reason: Some("gateway said so".into()) };
    vec![
        E::Submit,
        E::Continue { documents: vec![doc()] },
        E::Continue { documents: vec![] },
        decide(Decision::Succeeded { provider_recipient_id: "gwr_X".into() }),
        decide(Decision::Declined),
        decide(Decision::Rejected),
        decide(Decision::Blocked),
        decide(Decision::Error),
        E::Cancel,
        E::Review { result: Review::Approved, reason: None },
        E::Review { result: Review::Failed, reason: Some("blurry".into()) },
        E::Supplement { documents: vec![doc()], note: Some("clearer scan".into()) },
        E::Supplement { documents: vec![], note: None },
        E::Transfer { to: other() },
        E::Transfer { to: owner() },
        E::ReverseTransfer,
    ]
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// The row taken: the onboarding and compliance statuses after it.
    Row(&'static str, O, C),
    /// 400 on this param.
    Invalid(&'static str),
    /// 409: no row.
    State,
}

/// §4, row by row, read from the spec and not from the code.
fn expected(o: &Onboarding, e: &OnboardingEvent) -> Expect {
    use OnboardingEvent as E;
    let (s, c, used) = (o.status, o.compliance.status, o.compliance.supplements_used);
    match e {
        E::Submit if s == O::Created && o.kind == OnboardingType::OneStep => {
            Expect::Row("create ONE_STEP: submitted", O::Pending, c)
        }
        E::Continue { documents } if s == O::Created && o.kind == OnboardingType::TwoStep => {
            if documents.is_empty() && o.documents.is_empty() {
                Expect::Invalid("documents")
            } else {
                Expect::Row("CREATED (TWO_STEP) continue", O::Pending, c)
            }
        }
        E::Continue { .. } if matches!(s, O::Rejected | O::Error) => {
            Expect::Row("REJECTED, ERROR continue", O::Pending, c)
        }
        E::Decide { decision, .. } if s == O::Pending => match decision {
            Decision::Succeeded { .. } => {
                Expect::Row("PENDING approves (compliance not_started → pending)", O::Succeeded, C::Pending)
            }
            Decision::Declined => Expect::Row("PENDING declines", O::Declined, c),
            Decision::Rejected => Expect::Row("PENDING rejects", O::Rejected, c),
            Decision::Blocked => Expect::Row("PENDING blocks", O::Blocked, c),
            Decision::Error => Expect::Row("PENDING errs", O::Error, c),
        },
        E::Cancel if matches!(s, O::Created | O::Pending | O::Rejected | O::Error) => {
            Expect::Row("cancel", O::Canceled, c)
        }
        E::Review { result, .. } if s == O::Succeeded && c == C::Pending => match result {
            Review::Approved => Expect::Row("compliance pending approved", s, C::Approved),
            Review::Failed if used < 5 => Expect::Row("compliance pending failed, used < 5", s, C::Failed),
            Review::Failed => {
                Expect::Row("compliance pending failed, used = 5 (onboarding BLOCKED)", O::Blocked, C::Frozen)
            }
        },
        E::Supplement { documents, .. } if s == O::Succeeded && c == C::Failed => {
            if documents.is_empty() {
                Expect::Invalid("documents")
            } else {
                Expect::Row("compliance failed supplement", s, C::Pending)
            }
        }
        E::Transfer { to } if s == O::Succeeded => {
            if *to == o.recipient_id {
                Expect::Invalid("recipient_id")
            } else {
                Expect::Row("SUCCEEDED transfer", s, c)
            }
        }
        E::ReverseTransfer if s == O::Succeeded && o.transferred_from.is_some() => {
            Expect::Row("SUCCEEDED reverse-transfer", s, c)
        }
        _ => Expect::State,
    }
}

fn key(o: &Onboarding) -> (String, &'static str, &'static str, u8, bool, RecipientId) {
    (
        o.kind.as_str().to_owned(),
        o.status.as_str(),
        o.compliance.status.as_str(),
        o.compliance.supplements_used,
        o.transferred_from.is_some(),
        o.recipient_id.clone(),
    )
}

/// Every state reachable from a creation of each type (breadth first).
fn reachable() -> Vec<Onboarding> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut queue: VecDeque<Onboarding> = OnboardingType::ALL.into_iter().map(new).collect();
    while let Some(o) = queue.pop_front() {
        if !seen.insert(key(&o)) {
            continue;
        }
        for e in events() {
            let mut next = o.clone();
            if next.apply(e, Timestamp(1)).is_ok() {
                queue.push_back(next);
            }
        }
        out.push(o);
    }
    out
}

#[test]
fn creation_rows() {
    let previous = new(OnboardingType::PreviouslyOnboarded);
    assert_eq!((previous.status, previous.compliance.status), (O::Succeeded, C::Approved));
    assert_eq!(previous.provider_recipient_id.as_deref(), Some("gwr_previous"));
    for kind in [OnboardingType::OneStep, OnboardingType::TwoStep] {
        let o = new(kind);
        assert_eq!((o.status, o.compliance.status, o.version), (O::Created, C::NotStarted, 1));
        assert_eq!(o.history.len(), 1);
    }
    let mut bad = NewOnboarding {
        id: OnboardingId::generate(),
        merchant_id: MerchantId::generate(),
        recipient_id: owner(),
        kind: OnboardingType::PreviouslyOnboarded,
        provider_recipient_id: None,
        documents: vec![],
    };
    let param = |r: Result<Onboarding, Reject>| match r {
        Err(Reject::InvalidRequest { param, .. }) => param,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        param(Onboarding::create(bad.clone(), Timestamp(0))).as_deref(),
        Some("provider_recipient_id")
    );
    bad.provider_recipient_id = Some("a!".into());
    assert_eq!(
        param(Onboarding::create(bad.clone(), Timestamp(0))).as_deref(),
        Some("provider_recipient_id")
    );
    bad.kind = OnboardingType::OneStep;
    bad.provider_recipient_id = Some("gwr_ok".into());
    assert_eq!(
        param(Onboarding::create(bad.clone(), Timestamp(0))).as_deref(),
        Some("provider_recipient_id")
    );
    bad.provider_recipient_id = None;
    bad.documents = vec![doc(); 11];
    assert_eq!(param(Onboarding::create(bad, Timestamp(0))).as_deref(), Some("documents"));
}

#[test]
fn every_row_is_taken_and_every_other_event_is_refused_with_nothing_changed() {
    let states = reachable();
    let mut rows_taken = BTreeSet::new();
    for o in &states {
        for e in events() {
            let mut after = o.clone();
            let result = after.apply(e.clone(), Timestamp(7));
            match (expected(o, &e), result) {
                (Expect::Row(row, status, compliance), Ok(())) => {
                    assert_eq!(
                        (after.status, after.compliance.status),
                        (status, compliance),
                        "{row} from {o:?}"
                    );
                    assert_eq!(after.version, o.version + 1, "one version per change");
                    assert!(after.history.len() > o.history.len().min(MAX_ONBOARDING_HISTORY - 2));
                    rows_taken.insert(row);
                }
                (Expect::Invalid(param), Err(Reject::InvalidRequest { param: got, .. })) => {
                    assert_eq!(got.as_deref(), Some(param), "{e:?} on {o:?}");
                    assert_eq!(&after, o, "nothing changed");
                }
                (Expect::State, Err(Reject::InvalidState { message })) => {
                    assert!(message.contains(o.status.as_str()) || message.contains("transfer"), "{message}");
                    assert_eq!(&after, o, "nothing changed");
                }
                (want, got) => panic!(
                    "{e:?} on {} / {}: expected {want:?}, got {got:?}",
                    o.status.as_str(),
                    o.compliance.status.as_str()
                ),
            }
        }
    }
    let all_rows = [
        "create ONE_STEP: submitted",
        "CREATED (TWO_STEP) continue",
        "REJECTED, ERROR continue",
        "PENDING approves (compliance not_started → pending)",
        "PENDING declines",
        "PENDING rejects",
        "PENDING blocks",
        "PENDING errs",
        "cancel",
        "compliance pending approved",
        "compliance pending failed, used < 5",
        "compliance pending failed, used = 5 (onboarding BLOCKED)",
        "compliance failed supplement",
        "SUCCEEDED transfer",
        "SUCCEEDED reverse-transfer",
    ];
    for row in all_rows {
        assert!(rows_taken.contains(row), "row never taken: {row}");
    }
    assert_eq!(rows_taken.len(), all_rows.len());
}

#[test]
fn the_sixth_failed_review_freezes_and_blocks() {
    let mut o = new(OnboardingType::OneStep);
    o.apply(OnboardingEvent::Submit, Timestamp(1)).unwrap();
    let approve = Decision::Succeeded { provider_recipient_id: "gwr_1".into() };
    o.apply(OnboardingEvent::Decide { decision: approve, reason: None }, Timestamp(2)).unwrap();
    let fail = OnboardingEvent::Review { result: Review::Failed, reason: Some("no".into()) };
    let supplement = OnboardingEvent::Supplement { documents: vec![doc()], note: None };
    for used in 0..5 {
        o.apply(fail.clone(), Timestamp(3)).unwrap();
        assert_eq!((o.compliance.status, o.compliance.supplements_used), (C::Failed, used));
        o.apply(supplement.clone(), Timestamp(4)).unwrap();
    }
    o.apply(fail, Timestamp(5)).unwrap();
    assert_eq!((o.status, o.compliance.status, o.compliance.supplements_used), (O::Blocked, C::Frozen, 5));
    let last_two: Vec<_> = o.history.iter().rev().take(2).map(|h| h.kind).collect();
    assert_eq!(last_two, [EntryType::StatusChanged, EntryType::ComplianceChanged]);
    assert!(matches!(o.apply(supplement, Timestamp(6)), Err(Reject::InvalidState { .. })));
}

#[test]
fn transfer_and_its_reversal_move_the_owner_and_leave_entries() {
    let mut o = new(OnboardingType::PreviouslyOnboarded);
    o.apply(OnboardingEvent::Transfer { to: other() }, Timestamp(1)).unwrap();
    assert_eq!(o.recipient_id, other());
    assert!(matches!(
        o.apply(OnboardingEvent::Transfer { to: other() }, Timestamp(2)),
        Err(Reject::InvalidRequest { .. })
    ));
    o.apply(OnboardingEvent::ReverseTransfer, Timestamp(3)).unwrap();
    assert_eq!(o.recipient_id, owner());
    let entry = o.history.last().unwrap();
    assert_eq!(entry.kind, EntryType::TransferReversed);
    assert_eq!(
        (entry.from_recipient_id.clone(), entry.to_recipient_id.clone()),
        (Some(other()), Some(owner()))
    );
    assert!(matches!(
        o.apply(OnboardingEvent::ReverseTransfer, Timestamp(4)),
        Err(Reject::InvalidState { .. })
    ));
}

proptest! {
    /// Random events over random creations: the statuses only move along the
    /// declared edges, the version counts the changes, supplements stay ≤ 5,
    /// frozen compliance goes with BLOCKED, and status entries chain.
    #[test]
    fn a_random_walk_keeps_the_invariants(kind in 0usize..3, picks in proptest::collection::vec(0usize..16, 0..120)) {
        let mut o = new(OnboardingType::ALL[kind]);
        let all = events();
        let mut changes = 0;
        for (i, pick) in picks.iter().enumerate() {
            let before = o.clone();
            match o.apply(all[pick % all.len()].clone(), Timestamp(i as i64)) {
                Ok(()) => {
                    changes += 1;
                    prop_assert!(before.status == o.status || before.status.can_become(o.status));
                    prop_assert!(before.compliance.status == o.compliance.status
                        || before.compliance.status.can_become(o.compliance.status)
                        || (before.compliance.status == C::Failed && o.compliance.status == C::Pending));
                }
                Err(_) => prop_assert_eq!(&o, &before),
            }
            prop_assert!(o.compliance.supplements_used <= SUPPLEMENTS_MAX);
            prop_assert_eq!(o.compliance.status == C::Frozen, o.status == O::Blocked && o.compliance.supplements_used == 5 && o.compliance.status == C::Frozen);
            prop_assert!(o.history.len() <= MAX_ONBOARDING_HISTORY);
        }
        prop_assert_eq!(o.version, 1 + changes);
        let statuses: Vec<_> = o.history.iter().filter(|h| h.kind == EntryType::StatusChanged).collect();
        for pair in statuses.windows(2) {
            prop_assert_eq!(&pair[1].from, &pair[0].to);
        }
        prop_assert_eq!(statuses.last().and_then(|h| h.to.as_deref()), Some(o.status.as_str()));
    }
}
