//! Money: integer minor units of an ISO 4217 currency, checked arithmetic only.
//! There is no floating point anywhere near an amount.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency `{0}`")]
    UnknownCurrency(String),
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("amount must be greater than 0 and at most 10^13 minor units")]
    OutOfRange,
}

/// ISO 4217 alphabetic code and its minor-unit exponent.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("RON", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// The largest amount a request may carry (API.md §1).
pub const MAX_REQUEST_MINOR: i64 = 10_000_000_000_000;

/// `(amount · bps + 5000) / 10000` in i128: basis points of an amount,
/// rounded half up (the top-up fee's rate, a marketplace commission cap).
pub fn half_up_bps(amount_minor: i64, bps: i64) -> i128 {
    (amount_minor as i128 * bps as i128 + 5_000) / 10_000
}

/// An ISO 4217 currency this service knows the exponent of.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");

    /// Only upper-case codes of known currencies; nothing is coerced.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, _)| {
                let b = c.as_bytes();
                Currency([b[0], b[1], b[2]])
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
    }

    pub fn code(&self) -> &str {
        // Only ever built from the ASCII table above.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    pub fn exponent(&self) -> u8 {
        CURRENCIES.iter().find(|(c, _)| c.as_bytes() == self.0).map_or(2, |(_, e)| *e)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, MoneyError> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount: integer minor units and a currency. May be negative (a posting);
/// request amounts are checked with [`Money::request_amount`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Debug)]
pub struct Money {
    pub value: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(value: i64, currency: Currency) -> Self {
        Self { value, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self { value: 0, currency }
    }

    /// A request amount: `0 < value <= 10^13`.
    pub fn request_amount(value: i64, currency: Currency) -> Result<Self, MoneyError> {
        if value <= 0 || value > MAX_REQUEST_MINOR {
            return Err(MoneyError::OutOfRange);
        }
        Ok(Self { value, currency })
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let value = self.value.checked_add(other.value).ok_or(MoneyError::Overflow)?;
        Ok(Money { value, currency: self.currency })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let value = self.value.checked_sub(other.value).ok_or(MoneyError::Overflow)?;
        Ok(Money { value, currency: self.currency })
    }

    pub fn checked_neg(self) -> Result<Money, MoneyError> {
        let value = self.value.checked_neg().ok_or(MoneyError::Overflow)?;
        Ok(Money { value, currency: self.currency })
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Ok(())
    }

    /// `12.34 USD`, `1234 JPY`, `1.234 BHD`: major units, for people (checkout pages).
    pub fn to_major_string(&self) -> String {
        let exp = u32::from(self.currency.exponent());
        let sign = if self.value < 0 { "-" } else { "" };
        let abs = self.value.unsigned_abs();
        if exp == 0 {
            return format!("{sign}{abs} {}", self.currency);
        }
        let scale = 10u64.pow(exp);
        format!("{sign}{}.{:0width$} {}", abs / scale, abs % scale, self.currency, width = exp as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_strict() {
        assert_eq!(Currency::parse("USD").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("BHD").unwrap().exponent(), 3);
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XXX").is_err());
    }

    #[test]
    fn request_amount_bounds() {
        assert!(Money::request_amount(0, Currency::USD).is_err());
        assert!(Money::request_amount(-1, Currency::USD).is_err());
        assert!(Money::request_amount(MAX_REQUEST_MINOR, Currency::USD).is_ok());
        assert!(Money::request_amount(MAX_REQUEST_MINOR + 1, Currency::USD).is_err());
    }

    #[test]
    fn arithmetic_is_checked() {
        let max = Money::new(i64::MAX, Currency::USD);
        assert_eq!(max.checked_add(Money::new(1, Currency::USD)), Err(MoneyError::Overflow));
        assert!(Money::new(1, Currency::USD).checked_add(Money::new(1, Currency::EUR)).is_err());
        assert_eq!(Money::new(i64::MIN, Currency::USD).checked_neg(), Err(MoneyError::Overflow));
    }

    proptest::proptest! {
        /// Request amounts: accepted exactly when 0 < value <= 10^13, whatever the currency.
        #[test]
        fn request_amount_accepts_exactly_the_documented_range(value in proptest::num::i64::ANY, code in "[A-Z]{3}") {
            if let Ok(currency) = Currency::parse(&code) {
                let ok = Money::request_amount(value, currency).is_ok();
                proptest::prop_assert_eq!(ok, value > 0 && value <= MAX_REQUEST_MINOR);
            }
        }

        /// Currency parsing never panics, accepts only known upper-case codes,
        /// and round-trips through its code.
        #[test]
        fn currency_parsing_is_strict_and_round_trips(raw in ".{0,6}") {
            if let Ok(c) = Currency::parse(&raw) {
                proptest::prop_assert_eq!(c.code(), raw.as_str());
                proptest::prop_assert!(raw.bytes().all(|b| b.is_ascii_uppercase()));
            }
        }

        /// Checked arithmetic never wraps: it is exact or an error.
        #[test]
        fn arithmetic_is_exact_or_an_error(a in proptest::num::i64::ANY, b in proptest::num::i64::ANY) {
            let (x, y) = (Money::new(a, Currency::USD), Money::new(b, Currency::USD));
            match x.checked_add(y) {
                Ok(sum) => proptest::prop_assert_eq!(i128::from(sum.value), i128::from(a) + i128::from(b)),
                Err(_) => proptest::prop_assert!(i128::from(a) + i128::from(b) > i128::from(i64::MAX) || i128::from(a) + i128::from(b) < i128::from(i64::MIN)),
            }
        }
    }

    #[test]
    fn major_units() {
        assert_eq!(Money::new(300, Currency::USD).to_major_string(), "3.00 USD");
        assert_eq!(Money::new(5, Currency::parse("BHD").unwrap()).to_major_string(), "0.005 BHD");
        assert_eq!(Money::new(1200, Currency::parse("JPY").unwrap()).to_major_string(), "1200 JPY");
    }
}
