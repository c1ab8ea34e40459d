//! The recipient record (MARKETPLACE.md §3), pure: no IO, no actix. The
//! identity and bank numbers arrive already sealed by the binary (this crate
//! never holds them in clear); only their last 4 characters are kept beside
//! them, for the masked `****1234` every answer, event and error shows.

use pelago_storage::{MerchantId, OnboardingId, RecipientId, Timestamp};
use serde::{Deserialize, Serialize};

use super::onboarding::{ComplianceStatus, OnboardingStatus, OnboardingType};
use crate::{error::Reject, merchant::Sealed};

crate::wire_enum! {
    pub enum RecipientType {
        Individual = "individual",
        Business = "business",
    }
}

/// A number kept sealed, with its last 4 characters for the mask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedNumber {
    pub sealed: Sealed,
    pub last4: String,
}

impl SealedNumber {
    /// `****` + the last 4: the only way a number is ever shown.
    pub fn masked(&self) -> String {
        format!("****{}", self.last4)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdDocument {
    /// `national_id` or `passport`.
    pub kind: String,
    pub number: SealedNumber,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Individual {
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: String,
    pub id_document: IdDocument,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Representative {
    pub name: String,
    pub id_document: IdDocument,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Business {
    pub legal_name: String,
    /// `enterprise`, `sole_proprietor` or `institution`.
    pub kind: String,
    pub registration_number: String,
    pub representative: Representative,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankAccount {
    pub holder_name: String,
    pub account_number: SealedNumber,
    pub bank_code: String,
    /// `personal` or `corporate`.
    pub kind: String,
}

/// The recipient's current onboarding as the recipient shows it (§3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingSummary {
    pub id: OnboardingId,
    pub kind: OnboardingType,
    pub status: OnboardingStatus,
    pub compliance_status: ComplianceStatus,
}

/// Everything a merchant may set on a recipient (all but `type` may change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientData {
    pub reference: Option<String>,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub country: String,
    pub individual: Option<Individual>,
    pub business: Option<Business>,
    pub bank_account: BankAccount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientRecord {
    pub id: RecipientId,
    pub merchant_id: MerchantId,
    pub kind: RecipientType,
    pub data: RecipientData,
    /// Set by the recipient's onboardings (Marketplace I slice 4).
    pub onboarding: Option<OnboardingSummary>,
    /// Whether a `signed` split agreement exists (§5).
    pub split_agreement_signed: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

pelago_storage::record!(RecipientRecord, Recipients, 1);

/// §3's cross-field rules: the sub-object of the type and only it; the bank
/// account kind that fits the recipient.
pub fn check(kind: RecipientType, data: &RecipientData) -> Result<(), Reject> {
    match kind {
        RecipientType::Individual => {
            if data.business.is_some() {
                return Err(Reject::invalid("business", "business is only for a business recipient"));
            }
            if data.individual.is_none() {
                return Err(Reject::invalid(
                    "individual",
                    "individual is required for an individual recipient",
                ));
            }
            if data.bank_account.kind != "personal" {
                return Err(Reject::invalid(
                    "bank_account.kind",
                    "an individual recipient needs a personal bank account",
                ));
            }
        }
        RecipientType::Business => {
            if data.individual.is_some() {
                return Err(Reject::invalid("individual", "individual is only for an individual recipient"));
            }
            let Some(business) = &data.business else {
                return Err(Reject::invalid("business", "business is required for a business recipient"));
            };
            if matches!(business.kind.as_str(), "enterprise" | "institution")
                && data.bank_account.kind != "corporate"
            {
                return Err(Reject::invalid(
                    "bank_account.kind",
                    "an enterprise or institution needs a corporate bank account",
                ));
            }
        }
    }
    Ok(())
}

impl RecipientRecord {
    pub fn create(
        id: RecipientId,
        merchant_id: MerchantId,
        kind: RecipientType,
        data: RecipientData,
        at: Timestamp,
    ) -> Result<RecipientRecord, Reject> {
        check(kind, &data)?;
        Ok(RecipientRecord {
            id,
            merchant_id,
            kind,
            data,
            onboarding: None,
            split_agreement_signed: false,
            created_at: at,
            updated_at: at,
            version: 1,
        })
    }

    /// `PATCH`: the new data, checked by the same rules; refused while the
    /// current onboarding is PENDING or SUCCEEDED (the gateway holds the data).
    pub fn update(&mut self, data: RecipientData, at: Timestamp) -> Result<(), Reject> {
        if let Some(current) = &self.onboarding
            && matches!(current.status, OnboardingStatus::Pending | OnboardingStatus::Succeeded)
        {
            return Err(Reject::state(format!(
                "the recipient's current onboarding is {}; it cannot be changed now",
                current.status.as_str()
            )));
        }
        check(self.kind, &data)?;
        self.data = data;
        self.updated_at = at;
        self.version += 1;
        Ok(())
    }

    /// `receive_splits` = current SUCCEEDED ∧ a signed split agreement.
    pub fn can_receive_splits(&self) -> bool {
        self.onboarding.as_ref().is_some_and(|o| o.status == OnboardingStatus::Succeeded)
            && self.split_agreement_signed
    }

    /// `withdraw` = current SUCCEEDED ∧ compliance approved.
    pub fn can_withdraw(&self) -> bool {
        self.onboarding.as_ref().is_some_and(|o| {
            o.status == OnboardingStatus::Succeeded && o.compliance_status == ComplianceStatus::Approved
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(last4: &str) -> SealedNumber {
        SealedNumber { sealed: Sealed(vec![1, 2, 3]), last4: last4.into() }
    }

    fn data(bank_kind: &str) -> RecipientData {
        RecipientData {
            reference: None,
            name: "Ada Shop".into(),
            email: "ada@example.com".into(),
            phone: "+6591234567".into(),
            country: "SG".into(),
            individual: Some(Individual {
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                date_of_birth: "1990-12-10".into(),
                id_document: IdDocument { kind: "passport".into(), number: number("4567") },
            }),
            business: None,
            bank_account: BankAccount {
                holder_name: "Ada".into(),
                account_number: number("9876"),
                bank_code: "DBS".into(),
                kind: bank_kind.into(),
            },
        }
    }

    #[test]
    fn the_type_decides_the_sub_object_and_the_bank_account_kind() {
        let make = |kind, data| {
            RecipientRecord::create(RecipientId::generate(), MerchantId::generate(), kind, data, Timestamp(0))
        };
        assert!(make(RecipientType::Individual, data("personal")).is_ok());
        let param = |r: Result<RecipientRecord, Reject>| match r {
            Err(Reject::InvalidRequest { param, .. }) => param.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(param(make(RecipientType::Individual, data("corporate"))), "bank_account.kind");
        assert_eq!(param(make(RecipientType::Business, data("corporate"))), "individual");
        let r = make(RecipientType::Individual, data("personal")).unwrap();
        assert_eq!(r.data.bank_account.account_number.masked(), "****9876");
        assert!(!format!("{r:?}").contains("[1, 2, 3]"), "sealed bytes are not even debug-printed");
    }

    #[test]
    fn a_patch_is_refused_while_the_gateway_holds_the_data() {
        let mut r = RecipientRecord::create(
            RecipientId::generate(),
            MerchantId::generate(),
            RecipientType::Individual,
            data("personal"),
            Timestamp(0),
        )
        .unwrap();
        for (status, allowed) in [
            (OnboardingStatus::Created, true),
            (OnboardingStatus::Pending, false),
            (OnboardingStatus::Succeeded, false),
            (OnboardingStatus::Rejected, true),
        ] {
            r.onboarding = Some(OnboardingSummary {
                id: OnboardingId::generate(),
                kind: OnboardingType::OneStep,
                status,
                compliance_status: ComplianceStatus::NotStarted,
            });
            let v = r.version;
            let result = r.update(data("personal"), Timestamp(1));
            assert_eq!(result.is_ok(), allowed, "{status:?}");
            assert_eq!(r.version, v + u64::from(allowed));
        }
    }
}
