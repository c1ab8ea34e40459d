//! The marketplace's accounts and entries (MARKETPLACE.md §8), pure.
//!
//! A payment's line belongs to a [`Party`]: a recipient, whose money sits in
//! `recipient:{id}:in_transit|available|withdrawing`, or the merchant itself,
//! whose `merchant:{id}:pending|available` serve as in-transit and available.
//! Every builder here returns postings that sum to zero; the merchant actor
//! books them (single writer) and refuses an entry whole if a recipient
//! account or the merchant's available balance would go below zero.

use pelago_storage::{Currency, MerchantId, Money, RecipientId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Account, Posting, neg};
use crate::error::Reject;

/// Whose money a payment line is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Party {
    Merchant(MerchantId),
    Recipient(RecipientId),
}

impl Party {
    /// Captured, not split yet.
    pub fn in_transit(&self) -> Account {
        match self {
            Party::Merchant(m) => Account::MerchantPending(m.clone()),
            Party::Recipient(r) => Account::RecipientInTransit(r.clone()),
        }
    }

    /// Split, withdrawable (the merchant's: its available balance).
    pub fn available(&self) -> Account {
        match self {
            Party::Merchant(m) => Account::MerchantAvailable(m.clone()),
            Party::Recipient(r) => Account::RecipientAvailable(r.clone()),
        }
    }
}

/// `marketplace_collection`: `gateway:clearing −A`, each line's party in-transit `+a_i`.
pub fn collection(lines: &[(Party, Money)]) -> Result<Vec<Posting>, Reject> {
    let total = sum(lines.iter().map(|(_, m)| *m))?;
    let mut postings = vec![Posting { account: Account::GatewayClearing, amount: neg(total)? }];
    postings
        .extend(lines.iter().map(|(party, amount)| Posting { account: party.in_transit(), amount: *amount }));
    Ok(postings)
}

/// `split`: each party in-transit `−m_i`, available `+m_i` (zero lines skipped).
pub fn split(lines: &[(Party, Money)]) -> Result<Vec<Posting>, Reject> {
    let mut postings = Vec::with_capacity(lines.len() * 2);
    for (party, amount) in lines.iter().filter(|(_, m)| m.value != 0) {
        postings.push(Posting { account: party.in_transit(), amount: neg(*amount)? });
        postings.push(Posting { account: party.available(), amount: *amount });
    }
    Ok(postings)
}

/// `marketplace_refund` (MARKETPLACE.md §7): the line parties give back `r_j`
/// (from in-transit before the split, from available after it), the buyer
/// gets the channel portion `C` through `gateway:clearing`; after the split
/// the merchant's available takes the difference `D = Σr_j − C` (negative: the
/// marketplace funds a channel-only refund). Before the split `Σr_j = C`.
pub fn refund(
    merchant: &MerchantId,
    portions: &[(Party, Money)],
    channel: Money,
    split_done: bool,
) -> Result<Vec<Posting>, Reject> {
    let returned = sum(portions.iter().map(|(_, m)| *m).chain([Money::zero(channel.currency)]))?;
    if !split_done && returned != channel {
        return Err(Reject::invalid(
            "splits",
            "before the split the portions must add up to the channel amount",
        ));
    }
    let mut postings = Vec::with_capacity(portions.len() + 2);
    for (party, amount) in portions.iter().filter(|(_, m)| m.value != 0) {
        let account = if split_done { party.available() } else { party.in_transit() };
        postings.push(Posting { account, amount: neg(*amount)? });
    }
    if channel.value != 0 {
        postings.push(Posting { account: Account::GatewayClearing, amount: channel });
    }
    let difference =
        returned.checked_sub(channel).map_err(|_| Reject::invalid("amount", "amount overflows"))?;
    if split_done && difference.value != 0 {
        postings.push(Posting { account: Account::MerchantAvailable(merchant.clone()), amount: difference });
    }
    Ok(postings)
}

/// `recipient_withdrawal`: available `−W`, withdrawing `+W` (the hold).
pub fn withdrawal_hold(recipient: &RecipientId, amount: Money) -> Result<Vec<Posting>, Reject> {
    Ok(vec![
        Posting { account: Account::RecipientAvailable(recipient.clone()), amount: neg(amount)? },
        Posting { account: Account::RecipientWithdrawing(recipient.clone()), amount },
    ])
}

/// `recipient_withdrawal_paid`: withdrawing `−W`, `gateway:clearing +(W−K)`
/// (paid to the recipient's bank), `merchant:{id}:available +K` (commission).
pub fn withdrawal_paid(
    merchant: &MerchantId,
    recipient: &RecipientId,
    amount: Money,
    commission: Money,
) -> Result<Vec<Posting>, Reject> {
    let payout =
        amount.checked_sub(commission).map_err(|_| Reject::invalid("commission", "commission overflows"))?;
    if payout.value <= 0 || commission.value < 0 {
        return Err(Reject::invalid("commission", "commission must be at least 0 and below the amount"));
    }
    let mut postings = vec![
        Posting { account: Account::RecipientWithdrawing(recipient.clone()), amount: neg(amount)? },
        Posting { account: Account::GatewayClearing, amount: payout },
    ];
    if commission.value != 0 {
        postings.push(Posting { account: Account::MerchantAvailable(merchant.clone()), amount: commission });
    }
    Ok(postings)
}

/// `recipient_withdrawal_reversal`: withdrawing `−W`, available `+W`.
pub fn withdrawal_reversal(recipient: &RecipientId, amount: Money) -> Result<Vec<Posting>, Reject> {
    super::mirror(&withdrawal_hold(recipient, amount)?)
}

fn sum(amounts: impl Iterator<Item = Money>) -> Result<Money, Reject> {
    let mut total: Option<Money> = None;
    for m in amounts {
        total = Some(match total {
            None => m,
            Some(t) => t
                .checked_add(m)
                .map_err(|_| Reject::invalid("amount", "amounts overflow or mix currencies"))?,
        });
    }
    total.ok_or_else(|| Reject::invalid("split_marketplace", "an entry needs at least one line"))
}

/// One recipient's balances in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientBalance {
    pub currency: Currency,
    pub in_transit: i64,
    pub available: i64,
    pub withdrawing: i64,
}

/// A recipient's cached balances, derived from its postings; written only by
/// its merchant's actor, in the commit of the entry that changes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientBalances {
    pub recipient_id: RecipientId,
    pub merchant_id: MerchantId,
    pub balances: Vec<RecipientBalance>,
    pub updated_at: Timestamp,
}

pelago_storage::record!(RecipientBalances, RecipientBalances, 1);

impl RecipientBalances {
    pub fn empty(recipient_id: RecipientId, merchant_id: MerchantId, at: Timestamp) -> Self {
        RecipientBalances { recipient_id, merchant_id, balances: Vec::new(), updated_at: at }
    }

    /// Adds this recipient's `postings`; refuses (whole) if any of its
    /// accounts would go below zero, or on overflow.
    pub fn apply(&mut self, postings: &[Posting], at: Timestamp) -> Result<(), Reject> {
        let mut out = self.balances.clone();
        for p in postings {
            let Some(r) = p.account.recipient() else { continue };
            if *r != self.recipient_id {
                continue;
            }
            let slot = match out.iter().position(|b| b.currency == p.amount.currency) {
                Some(i) => i,
                None => {
                    out.push(RecipientBalance {
                        currency: p.amount.currency,
                        in_transit: 0,
                        available: 0,
                        withdrawing: 0,
                    });
                    out.len() - 1
                }
            };
            let b = &mut out[slot];
            let target = match p.account {
                Account::RecipientInTransit(_) => &mut b.in_transit,
                Account::RecipientAvailable(_) => &mut b.available,
                _ => &mut b.withdrawing,
            };
            *target = target
                .checked_add(p.amount.value)
                .ok_or_else(|| Reject::invalid("amount", "balance overflow"))?;
        }
        if let Some(short) = out.iter().find(|b| b.in_transit < 0 || b.available < 0 || b.withdrawing < 0) {
            let before = self.balances.iter().find(|b| b.currency == short.currency);
            let needed = [
                (short.in_transit, before.map_or(0, |b| b.in_transit)),
                (short.available, before.map_or(0, |b| b.available)),
                (short.withdrawing, before.map_or(0, |b| b.withdrawing)),
            ]
            .into_iter()
            .filter(|(after, _)| *after < 0)
            .map(|(after, before)| before - after)
            .max()
            .unwrap_or(0);
            return Err(Reject::InsufficientFunds { needed, currency: short.currency.to_string() });
        }
        out.sort_by_key(|b| b.currency);
        self.balances = out;
        self.updated_at = at;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use pelago_storage::Currency;

    use super::*;
    use crate::ledger::{add_postings, check_balanced};

    fn usd(v: i64) -> Money {
        Money::new(v, Currency::USD)
    }

    /// MARKETPLACE.md §8's example, step by step.
    #[test]
    fn the_example_of_section_8() {
        let m = MerchantId::generate();
        let a = RecipientId::generate();
        let seller = Party::Recipient(a.clone());
        let market = Party::Merchant(m.clone());
        let mut rb = RecipientBalances::empty(a.clone(), m.clone(), Timestamp::from_unix_ms(0));
        let mut mb = Vec::new();
        let mut clearing = 0i64;
        let mut book = |postings: Vec<Posting>, rb: &mut RecipientBalances| {
            check_balanced(&postings).unwrap();
            rb.apply(&postings, Timestamp::from_unix_ms(1)).unwrap();
            mb = add_postings(&m, &mb, &postings).unwrap();
            clearing += postings
                .iter()
                .filter(|p| p.account == Account::GatewayClearing)
                .map(|p| p.amount.value)
                .sum::<i64>();
            (rb.balances[0], mb.first().copied(), clearing)
        };
        let lines = [(seller.clone(), usd(900)), (market.clone(), usd(100))];
        let (r, mine, c) = book(collection(&lines).unwrap(), &mut rb);
        assert_eq!((r.in_transit, mine.unwrap().pending, c), (900, 100, -1000));
        let (r, mine, _) = book(split(&lines).unwrap(), &mut rb);
        assert_eq!(
            (r.in_transit, r.available, mine.unwrap().pending, mine.unwrap().available),
            (0, 900, 0, 100)
        );
        book(withdrawal_hold(&a, usd(500)).unwrap(), &mut rb);
        let (r, mine, c) = book(withdrawal_paid(&m, &a, usd(500), usd(25)).unwrap(), &mut rb);
        assert_eq!((r.available, r.withdrawing, mine.unwrap().available, c), (400, 0, 125, -525));
        let (r, mine, c) = book(refund(&m, &[(seller, usd(180))], usd(200), true).unwrap(), &mut rb);
        assert_eq!((r.available, mine.unwrap().available, c), (220, 105, -325));
    }

    #[test]
    fn a_recipient_account_never_goes_below_zero() {
        let m = MerchantId::generate();
        let a = RecipientId::generate();
        let mut rb = RecipientBalances::empty(a.clone(), m, Timestamp::from_unix_ms(0));
        let err = rb.apply(&withdrawal_hold(&a, usd(1)).unwrap(), Timestamp::from_unix_ms(1)).unwrap_err();
        assert_eq!(err, Reject::InsufficientFunds { needed: 1, currency: "USD".into() });
        assert!(rb.balances.is_empty(), "a refused entry changes nothing");
        let before = refund(&MerchantId::generate(), &[(Party::Recipient(a), usd(5))], usd(6), false);
        assert!(before.is_err(), "before the split the portions equal the channel amount");
    }
}
