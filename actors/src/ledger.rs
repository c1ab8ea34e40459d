//! The double-entry ledger (DOMAIN.md §Money and the ledger), pure.
//!
//! Every balance change is one journal entry whose postings sum to zero per
//! currency. Only merchant accounts must stay ≥ 0 (checked by the merchant
//! actor before it writes); platform, gateway and channel accounts may go
//! negative. An entry is applied at most once per `(source_id, kind)`: the
//! external effect it books (a deposit, a top-up, a fee) has exactly one entry.

use std::collections::BTreeMap;

use pelago_storage::{
    BalanceTxnId, ChannelId, Currency, JournalEntryId, MerchantId, Money, RecipientId, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::error::Reject;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    MerchantAvailable(MerchantId),
    MerchantPending(MerchantId),
    PlatformFees,
    GatewayClearing,
    ChannelFunding(ChannelId),
    /// MARKETPLACE.md §8: captured for the recipient, not split yet (在途).
    RecipientInTransit(RecipientId),
    /// Split to the recipient, withdrawable (可用).
    RecipientAvailable(RecipientId),
    /// Held for a recipient withdrawal until its payout is final.
    RecipientWithdrawing(RecipientId),
}

impl Account {
    pub fn name(&self) -> String {
        match self {
            Account::MerchantAvailable(m) => format!("merchant:{m}:available"),
            Account::MerchantPending(m) => format!("merchant:{m}:pending"),
            Account::PlatformFees => "platform:fees".into(),
            Account::GatewayClearing => "gateway:clearing".into(),
            Account::ChannelFunding(c) => format!("channel:{c}:funding"),
            Account::RecipientInTransit(r) => format!("recipient:{r}:in_transit"),
            Account::RecipientAvailable(r) => format!("recipient:{r}:available"),
            Account::RecipientWithdrawing(r) => format!("recipient:{r}:withdrawing"),
        }
    }

    /// The recipient whose account this is, if it is one.
    pub fn recipient(&self) -> Option<&RecipientId> {
        match self {
            Account::RecipientInTransit(r)
            | Account::RecipientAvailable(r)
            | Account::RecipientWithdrawing(r) => Some(r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    pub amount: Money,
}

/// What an entry books; also the balance-transaction type of its merchant postings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntryKind {
    Deposit,
    ApplicationFee,
    ApplicationFeeReturn,
    MonthlyFee,
    Topup,
    TopupReversal,
    CardRefund,
    GatewayCollection,
    Settlement,
    Withdrawal,
    WithdrawalReversal,
    /// A paid gateway order given back whole (its collection mirrored).
    OrderRefund,
    // MARKETPLACE.md §8 (appended: the codec stores the variant's index).
    MarketplaceCollection,
    Split,
    MarketplaceRefund,
    MarketplaceRefundReversal,
    RecipientWithdrawal,
    RecipientWithdrawalPaid,
    RecipientWithdrawalReversal,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Deposit => "deposit",
            EntryKind::ApplicationFee => "application_fee",
            EntryKind::ApplicationFeeReturn => "application_fee_return",
            EntryKind::MonthlyFee => "monthly_fee",
            EntryKind::Topup => "topup",
            EntryKind::TopupReversal => "topup_reversal",
            EntryKind::CardRefund => "card_refund",
            EntryKind::GatewayCollection => "gateway_collection",
            EntryKind::Settlement => "settlement",
            EntryKind::Withdrawal => "withdrawal",
            EntryKind::WithdrawalReversal => "withdrawal_reversal",
            EntryKind::OrderRefund => "order_refund",
            EntryKind::MarketplaceCollection => "marketplace_collection",
            EntryKind::Split => "split",
            EntryKind::MarketplaceRefund => "marketplace_refund",
            EntryKind::MarketplaceRefundReversal => "marketplace_refund_reversal",
            EntryKind::RecipientWithdrawal => "recipient_withdrawal",
            EntryKind::RecipientWithdrawalPaid => "recipient_withdrawal_paid",
            EntryKind::RecipientWithdrawalReversal => "recipient_withdrawal_reversal",
        }
    }

    /// The entries of MARKETPLACE.md §8: the rows of the reconciliation files.
    pub fn is_marketplace(self) -> bool {
        matches!(
            self,
            EntryKind::MarketplaceCollection
                | EntryKind::Split
                | EntryKind::MarketplaceRefund
                | EntryKind::MarketplaceRefundReversal
                | EntryKind::RecipientWithdrawal
                | EntryKind::RecipientWithdrawalPaid
                | EntryKind::RecipientWithdrawalReversal
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: JournalEntryId,
    pub merchant_id: MerchantId,
    /// The object or external effect this books (`card_...`, `tup_...`, `gwdep/...`).
    pub source_id: String,
    pub kind: EntryKind,
    pub postings: Vec<Posting>,
    pub created_at: Timestamp,
}

pelago_storage::record!(JournalEntry, Journal, 1);

/// A line of `GET /v1/balance/transactions`: one merchant posting, with the
/// balances right after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceTxnRecord {
    pub id: BalanceTxnId,
    pub merchant_id: MerchantId,
    /// `deposit`, `topup`, `topup_fee`, `application_fee`, ...
    pub kind: String,
    pub amount: Money,
    pub available_after: i64,
    pub pending_after: i64,
    pub source_id: String,
    pub created_at: Timestamp,
}

pelago_storage::record!(BalanceTxnRecord, BalanceTxns, 1);

/// A merchant's cached balances in one currency (derived from its postings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyBalance {
    pub currency: Currency,
    pub available: i64,
    pub pending: i64,
}

/// Checks that `postings` sum to zero in every currency and are not empty.
pub fn check_balanced(postings: &[Posting]) -> Result<(), Reject> {
    if postings.is_empty() {
        return Err(Reject::invalid("postings", "an entry needs postings"));
    }
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    for p in postings {
        *sums.entry(p.amount.currency).or_default() += i128::from(p.amount.value);
    }
    if sums.values().any(|s| *s != 0) {
        return Err(Reject::invalid("postings", "journal entry does not balance"));
    }
    Ok(())
}

/// The merchant's balances after `postings`; refuses (whole) if `available`
/// would go below zero in any currency, or on overflow.
pub fn apply_to_balances(
    merchant: &MerchantId,
    balances: &[CurrencyBalance],
    postings: &[Posting],
) -> Result<Vec<CurrencyBalance>, Reject> {
    let out = add_postings(merchant, balances, postings)?;
    if let Some(short) = out.iter().find(|b| b.available < 0) {
        let before = balances.iter().find(|b| b.currency == short.currency).map_or(0, |b| b.available);
        return Err(Reject::InsufficientFunds {
            needed: before - short.available,
            currency: short.currency.to_string(),
        });
    }
    Ok(out)
}

/// The merchant's balances after `postings`, without the non-negative check
/// (for running balances inside an entry that was checked as a whole).
pub fn add_postings(
    merchant: &MerchantId,
    balances: &[CurrencyBalance],
    postings: &[Posting],
) -> Result<Vec<CurrencyBalance>, Reject> {
    let mut out = balances.to_vec();
    for p in postings {
        let (is_available, is_pending) = match &p.account {
            Account::MerchantAvailable(m) if m == merchant => (true, false),
            Account::MerchantPending(m) if m == merchant => (false, true),
            _ => (false, false),
        };
        if !is_available && !is_pending {
            continue;
        }
        let slot = match out.iter().position(|b| b.currency == p.amount.currency) {
            Some(i) => i,
            None => {
                out.push(CurrencyBalance { currency: p.amount.currency, available: 0, pending: 0 });
                out.len() - 1
            }
        };
        let b = &mut out[slot];
        let target = if is_available { &mut b.available } else { &mut b.pending };
        *target = target
            .checked_add(p.amount.value)
            .ok_or_else(|| Reject::invalid("amount", "balance overflow"))?;
    }
    out.sort_by_key(|b| b.currency);
    Ok(out)
}

/// The balance-transaction type of the `index`-th merchant posting of an entry.
pub fn balance_txn_kind(kind: EntryKind, index: usize) -> &'static str {
    match (kind, index) {
        (EntryKind::Topup, 1) => "topup_fee",
        (EntryKind::TopupReversal, _) => "topup_reversal",
        (EntryKind::ApplicationFeeReturn, _) => "application_fee",
        (EntryKind::OrderRefund, _) => "topup_reversal",
        (k, _) => k.as_str(),
    }
}

/// `merchant:available −(A+F)` (as a top-up leg and a fee leg),
/// `channel:funding +A`, `platform:fees +F`.
pub fn master_topup(
    merchant: &MerchantId,
    channel: &ChannelId,
    amount: Money,
    fee: Money,
) -> Result<Vec<Posting>, Reject> {
    amount.checked_add(fee).map_err(|_| Reject::invalid("amount", "amount + fee overflows"))?;
    Ok(vec![
        Posting { account: Account::MerchantAvailable(merchant.clone()), amount: neg(amount)? },
        Posting { account: Account::MerchantAvailable(merchant.clone()), amount: neg(fee)? },
        Posting { account: Account::ChannelFunding(channel.clone()), amount },
        Posting { account: Account::PlatformFees, amount: fee },
    ])
}

/// `merchant:available −F`, `platform:fees +F` (application or monthly fee).
pub fn master_fee(merchant: &MerchantId, fee: Money) -> Result<Vec<Posting>, Reject> {
    Ok(vec![
        Posting { account: Account::MerchantAvailable(merchant.clone()), amount: neg(fee)? },
        Posting { account: Account::PlatformFees, amount: fee },
    ])
}

/// `gateway:clearing −A`, `merchant:available +A`.
pub fn deposit(merchant: &MerchantId, amount: Money) -> Result<Vec<Posting>, Reject> {
    Ok(vec![
        Posting { account: Account::GatewayClearing, amount: neg(amount)? },
        Posting { account: Account::MerchantAvailable(merchant.clone()), amount },
    ])
}

/// `channel:funding −R`, `merchant:available +R` (master) or `merchant:pending +R` (gateway).
pub fn card_refund(
    merchant: &MerchantId,
    channel: &ChannelId,
    remaining: Money,
    to_pending: bool,
) -> Result<Vec<Posting>, Reject> {
    let account = if to_pending {
        Account::MerchantPending(merchant.clone())
    } else {
        Account::MerchantAvailable(merchant.clone())
    };
    Ok(vec![
        Posting { account: Account::ChannelFunding(channel.clone()), amount: neg(remaining)? },
        Posting { account, amount: remaining },
    ])
}

/// A paid gateway order: `gateway:clearing −(P+F)`, `merchant:pending +P`
/// (top-ups only: the principal funds the card and settles to the merchant),
/// `platform:fees +F`. An application or monthly fee has no principal.
pub fn gateway_collection(
    merchant: &MerchantId,
    principal: Option<Money>,
    fee: Money,
) -> Result<Vec<Posting>, Reject> {
    let total = match principal {
        Some(p) => p.checked_add(fee).map_err(|_| Reject::invalid("amount", "amount + fee overflows"))?,
        None => fee,
    };
    let mut postings = vec![Posting { account: Account::GatewayClearing, amount: neg(total)? }];
    if let Some(p) = principal {
        postings.push(Posting { account: Account::MerchantPending(merchant.clone()), amount: p });
    }
    postings.push(Posting { account: Account::PlatformFees, amount: fee });
    Ok(postings)
}

/// Withdrawal hold: `merchant:available −W`, `gateway:clearing +W`.
pub fn withdrawal(merchant: &MerchantId, amount: Money) -> Result<Vec<Posting>, Reject> {
    Ok(vec![
        Posting { account: Account::MerchantAvailable(merchant.clone()), amount: neg(amount)? },
        Posting { account: Account::GatewayClearing, amount },
    ])
}

/// Settlement of a collection: `merchant:pending −X`, `merchant:available +X`.
pub fn settlement(merchant: &MerchantId, amount: Money) -> Result<Vec<Posting>, Reject> {
    Ok(vec![
        Posting { account: Account::MerchantPending(merchant.clone()), amount: neg(amount)? },
        Posting { account: Account::MerchantAvailable(merchant.clone()), amount },
    ])
}

/// The mirror of `postings` (a reversal).
pub fn mirror(postings: &[Posting]) -> Result<Vec<Posting>, Reject> {
    postings.iter().map(|p| Ok(Posting { account: p.account.clone(), amount: neg(p.amount)? })).collect()
}

fn neg(m: Money) -> Result<Money, Reject> {
    m.checked_neg().map_err(|_| Reject::invalid("amount", "amount overflows"))
}

pub mod marketplace;

#[cfg(test)]
mod tests;
