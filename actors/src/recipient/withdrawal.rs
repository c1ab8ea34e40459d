//! A recipient withdrawal (MARKETPLACE.md §7): `W` leaves the recipient's
//! available balance (held in `withdrawing`), `K` goes to the merchant, and
//! `W − K` is paid out to the recipient's bank account. Pure record and
//! status: `processing → succeeded | failed`, once.

use pelago_storage::{MerchantId, Money, RecipientId, RecipientWithdrawalId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::Reject;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientWithdrawalStatus {
    Processing,
    Succeeded,
    Failed,
}

impl RecipientWithdrawalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientWithdrawalStatus::Processing => "processing",
            RecipientWithdrawalStatus::Succeeded => "succeeded",
            RecipientWithdrawalStatus::Failed => "failed",
        }
    }
}

/// Where the payout goes: the recipient's bank account, masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutDestination {
    pub bank_code: String,
    /// `****` + the last 4.
    pub account_number_masked: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientWithdrawalRecord {
    pub id: RecipientWithdrawalId,
    pub merchant_id: MerchantId,
    pub recipient_id: RecipientId,
    /// W.
    pub amount: Money,
    /// K (0 when none was asked).
    pub commission: Money,
    pub reference: Option<String>,
    pub destination: PayoutDestination,
    pub status: RecipientWithdrawalStatus,
    pub failure_reason: Option<String>,
    pub gateway_payout_id: Option<String>,
    pub status_history: Vec<(RecipientWithdrawalStatus, Timestamp)>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub version: u64,
}

pelago_storage::record!(RecipientWithdrawalRecord, RecipientWithdrawals, 1);

impl RecipientWithdrawalRecord {
    /// W − K: what reaches the bank account.
    pub fn payout_amount(&self) -> Money {
        Money::new(self.amount.value - self.commission.value, self.amount.currency)
    }

    /// `processing → succeeded | failed`; anything else is refused.
    pub fn finish(
        &mut self,
        status: RecipientWithdrawalStatus,
        reason: Option<String>,
        at: Timestamp,
    ) -> Result<(), Reject> {
        if self.status != RecipientWithdrawalStatus::Processing
            || status == RecipientWithdrawalStatus::Processing
        {
            return Err(Reject::state(format!("the withdrawal is {}", self.status.as_str())));
        }
        self.status = status;
        self.failure_reason = reason;
        self.status_history.push((status, at));
        self.completed_at = Some(at);
        self.version += 1;
        Ok(())
    }
}

/// `half_up(x, bps) = (x·bps + 5000) / 10000` in i128 (MARKETPLACE.md §1).
pub fn half_up(x: i64, bps: u32) -> i64 {
    ((i128::from(x) * i128::from(bps) + 5000) / 10000) as i64
}

#[cfg(test)]
mod tests {
    use pelago_storage::Currency;

    use super::*;

    #[test]
    fn half_up_rounds_half_away_and_780_at_500_caps_39() {
        assert_eq!(half_up(780, 500), 39);
        assert_eq!(half_up(10, 500), 1); // 0.5 → 1
        assert_eq!(half_up(9, 500), 0); // 0.45 → 0
        assert_eq!(half_up(10_000_000_000_000, 10_000), 10_000_000_000_000);
    }

    #[test]
    fn a_withdrawal_finishes_once() {
        let usd = |v| Money::new(v, Currency::USD);
        let mut w = RecipientWithdrawalRecord {
            id: RecipientWithdrawalId::generate(),
            merchant_id: MerchantId::generate(),
            recipient_id: RecipientId::generate(),
            amount: usd(500),
            commission: usd(25),
            reference: None,
            destination: PayoutDestination {
                bank_code: "B".into(),
                account_number_masked: "****1234".into(),
            },
            status: RecipientWithdrawalStatus::Processing,
            failure_reason: None,
            gateway_payout_id: None,
            status_history: vec![(RecipientWithdrawalStatus::Processing, Timestamp(0))],
            created_at: Timestamp(0),
            completed_at: None,
            version: 1,
        };
        assert_eq!(w.payout_amount(), usd(475));
        w.finish(RecipientWithdrawalStatus::Succeeded, None, Timestamp(1)).unwrap();
        assert!(w.finish(RecipientWithdrawalStatus::Failed, None, Timestamp(2)).is_err());
        assert_eq!((w.version, w.status_history.len()), (2, 2));
    }
}
