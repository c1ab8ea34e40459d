use pelago_storage::{ChannelId, Currency, MerchantId, Money};
use proptest::prelude::*;

use super::*;

fn usd(v: i64) -> Money {
    Money::new(v, Currency::USD)
}

#[test]
fn entries_balance_and_overdrafts_are_refused_whole() {
    let m = MerchantId::generate();
    let c = ChannelId::generate();
    let dep = deposit(&m, usd(10_000)).unwrap();
    check_balanced(&dep).unwrap();
    let after = apply_to_balances(&m, &[], &dep).unwrap();
    assert_eq!(after, vec![CurrencyBalance { currency: Currency::USD, available: 10_000, pending: 0 }]);
    let topup = master_topup(&m, &c, usd(9_000), usd(1_000)).unwrap();
    check_balanced(&topup).unwrap();
    let zero = apply_to_balances(&m, &after, &topup).unwrap();
    assert_eq!(zero[0].available, 0);
    let err = apply_to_balances(&m, &zero, &master_fee(&m, usd(1)).unwrap()).unwrap_err();
    assert_eq!(err, Reject::InsufficientFunds { needed: 1, currency: "USD".into() });
    let back = apply_to_balances(&m, &zero, &mirror(&topup).unwrap()).unwrap();
    assert_eq!(back[0].available, 10_000);
    assert!(check_balanced(&[Posting { account: Account::PlatformFees, amount: usd(1) }]).is_err());
}

proptest! {
    /// Random sequences of deposits, fees and top-ups: the cached balance
    /// always equals the sum of the merchant's postings and never goes negative.
    #[test]
    fn cached_balances_equal_postings(ops in proptest::collection::vec((0u8..4, 1i64..5_000), 1..60)) {
        let m = MerchantId::generate();
        let c = ChannelId::generate();
        let mut balances = Vec::new();
        let mut applied: Vec<Posting> = Vec::new();
        for (op, v) in ops {
            let postings = match op {
                0 => deposit(&m, usd(v)).unwrap(),
                1 => master_fee(&m, usd(v)).unwrap(),
                2 => master_topup(&m, &c, usd(v), usd(v / 10)).unwrap(),
                _ => card_refund(&m, &c, usd(v), false).unwrap(),
            };
            check_balanced(&postings).unwrap();
            if let Ok(next) = apply_to_balances(&m, &balances, &postings) {
                balances = next;
                applied.extend(postings);
            }
            let sum: i64 = applied.iter().filter(|p| p.account == Account::MerchantAvailable(m.clone())).map(|p| p.amount.value).sum();
            let cached = balances.iter().find(|b| b.currency == Currency::USD).map_or(0, |b| b.available);
            prop_assert_eq!(sum, cached);
            prop_assert!(cached >= 0);
        }
    }
}
