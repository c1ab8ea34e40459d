use pelago_storage::{Currency, MerchantId, Timestamp};

use super::*;

fn merchant() -> MerchantRecord {
    MerchantRecord {
        id: MerchantId::generate(),
        name: "Acme".into(),
        status: MerchantStatus::Active,
        funding_mode: FundingMode::MasterAccount,
        webhook_url: None,
        allowed_card_names: vec!["PELAGO_VIRTUAL_USD".into()],
        gateway: None,
        fees: vec![],
        withdrawal_addresses: vec![],
        webhook_secrets: vec![WebhookSecret {
            secret: Sealed(vec![1]),
            created_at: Timestamp(0),
            retires_at: None,
        }],
        balances: vec![],
        created_at: Timestamp(0),
        version: 1,
    }
}

#[test]
fn topup_fee_is_half_up() {
    let f = FeeSchedule {
        currency: Currency::USD,
        application_fixed: 0,
        topup_fixed: 100,
        topup_rate_bps: 150,
        monthly_fixed: 0,
    };
    assert_eq!(f.topup_fee(10_000), Some(250)); // 100 + 150
    assert_eq!(f.topup_fee(100), Some(102)); // 1.5 → 2
    assert_eq!(f.topup_fee(99), Some(101)); // 1.485 → 1
    assert_eq!(f.topup_fee(0), Some(100));
    let max = FeeSchedule { topup_fixed: 10_000_000_000_000, topup_rate_bps: 10_000, ..f };
    assert_eq!(max.topup_fee(10_000_000_000_000), Some(20_000_000_000_000));
}

#[test]
fn fee_schedules_are_one_per_currency() {
    let mut m = merchant();
    let usd = FeeSchedule {
        currency: Currency::USD,
        application_fixed: 5,
        topup_fixed: 0,
        topup_rate_bps: 0,
        monthly_fixed: 0,
    };
    m.apply(ConfigChange::PutFees(usd), Timestamp(1)).unwrap();
    m.apply(ConfigChange::PutFees(FeeSchedule { application_fixed: 7, ..usd }), Timestamp(2)).unwrap();
    assert_eq!(m.fees.len(), 1);
    assert_eq!(m.fee_schedule(Currency::USD).unwrap().application_fixed, 7);
    assert!(m.fee_schedule(Currency::EUR).is_none());
    assert_eq!(m.version, 3);
}

#[test]
fn at_most_three_withdrawal_addresses() {
    let mut m = merchant();
    let a = |n: &str| WithdrawalAddress { address: n.into(), network: "TRON".into(), label: None };
    m.apply(ConfigChange::PutWithdrawalAddresses(vec![a("1"), a("2"), a("3")]), Timestamp(1)).unwrap();
    let err =
        m.apply(ConfigChange::PutWithdrawalAddresses(vec![a("1"), a("2"), a("3"), a("4")]), Timestamp(2));
    assert_eq!(err, Err(Reject::invalid("addresses", "at most 3 withdrawal addresses")));
    assert_eq!(m.withdrawal_addresses.len(), 3);
}

#[test]
fn a_rotated_webhook_secret_signs_beside_the_new_one_for_a_day() {
    let mut m = merchant();
    let day = 86_400_000;
    m.apply(
        ConfigChange::RotateWebhookSecret { secret: Sealed(vec![2]), old_retire_at: Timestamp(day) },
        Timestamp(0),
    )
    .unwrap();
    let now: Vec<_> = m.signing_secrets(Timestamp(10)).cloned().collect();
    assert_eq!(now, vec![Sealed(vec![2]), Sealed(vec![1])]);
    let later: Vec<_> = m.signing_secrets(Timestamp(day + 1)).cloned().collect();
    assert_eq!(later, vec![Sealed(vec![2])]);
}

proptest::proptest! {
    /// The top-up fee is `fixed + round_half_up(a * bps / 10000)`: never below
    /// the exact value minus a half, never above it plus a half, for every
    /// amount and rate the API accepts.
    #[test]
    fn topup_fee_is_the_half_up_rounding(a in 1i64..=10_000_000_000_000, bps in 0i64..=10_000, fixed in 0i64..=10_000_000_000_000) {
        let f = FeeSchedule { currency: Currency::USD, application_fixed: 0, topup_fixed: fixed, topup_rate_bps: bps, monthly_fixed: 0 };
        let fee = i128::from(f.topup_fee(a).unwrap());
        let exact_times_2 = 2 * i128::from(a) * i128::from(bps); // 2 * 10000 * (fee - fixed), exactly
        let variable = fee - i128::from(fixed);
        proptest::prop_assert!(variable * 20_000 >= exact_times_2 - 10_000, "rounded down too far");
        proptest::prop_assert!(variable * 20_000 <= exact_times_2 + 10_000, "rounded up too far");
        // Exactly half rounds up.
        if (i128::from(a) * i128::from(bps)) % 10_000 == 5_000 {
            proptest::prop_assert_eq!(variable * 10_000, i128::from(a) * i128::from(bps) + 5_000);
        }
    }
}
