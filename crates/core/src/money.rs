//! Money: integer tiyn (1 tenge = 100 tiyn), checked arithmetic only, never floating point.

use crate::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};

/// An amount of money in tiyn. Always `<= Amount::MAX`, so that every amount is exactly
/// representable as a JSON number in every client (2^53 - 1 tiyn ≈ 90 trillion tenge, far above
/// the money supply). Arithmetic is checked: overflow is an error, never a wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Amount(u64);

impl Amount {
    /// The largest representable amount: 2^53 - 1 tiyn.
    pub const MAX: Amount = Amount((1u64 << 53) - 1);
    pub const ZERO: Amount = Amount(0);
    pub const TIYN_PER_TENGE: u64 = 100;

    /// An amount of tiyn; fails above [`Amount::MAX`].
    pub fn from_tiyn(tiyn: u64) -> Result<Amount> {
        if tiyn > Self::MAX.0 {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("amount {tiyn} tiyn exceeds the maximum {}", Self::MAX.0),
            ));
        }
        Ok(Amount(tiyn))
    }

    /// Whole tenge, for tests and seeding; fails on overflow.
    pub fn from_tenge(tenge: u64) -> Result<Amount> {
        let tiyn = tenge
            .checked_mul(Self::TIYN_PER_TENGE)
            .ok_or_else(|| Error::new(ErrorCode::LimitExceeded, "amount overflows"))?;
        Amount::from_tiyn(tiyn)
    }

    pub const fn tiyn(self) -> u64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Amount) -> Result<Amount> {
        match self.0.checked_add(other.0) {
            Some(sum) => Amount::from_tiyn(sum),
            None => Err(Error::new(ErrorCode::LimitExceeded, "amount overflows")),
        }
    }

    pub fn checked_sub(self, other: Amount) -> Result<Amount> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or_else(|| Error::new(ErrorCode::InsufficientFunds, format!("{} is less than {}", self, other)))
    }

    /// Sum of many amounts, checked.
    pub fn sum<I: IntoIterator<Item = Amount>>(amounts: I) -> Result<Amount> {
        amounts.into_iter().try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let tiyn = u64::deserialize(d)?;
        Amount::from_tiyn(tiyn).map_err(serde::de::Error::custom)
    }
}

/// Renders as tenge with two decimals and thousand separators: `1,234,567.89 KZT`.
impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenge = self.0 / Self::TIYN_PER_TENGE;
        let tiyn = self.0 % Self::TIYN_PER_TENGE;
        let digits = tenge.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        write!(f, "{grouped}.{tiyn:02} KZT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_groups_thousands_and_keeps_two_decimals() {
        assert_eq!(Amount(0).to_string(), "0.00 KZT");
        assert_eq!(Amount(15_000).to_string(), "150.00 KZT");
        assert_eq!(Amount(123_456_789).to_string(), "1,234,567.89 KZT");
        assert_eq!(Amount(100_000).to_string(), "1,000.00 KZT");
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount::MAX.checked_add(Amount(1)).unwrap_err().code, ErrorCode::LimitExceeded);
        assert_eq!(Amount(1).checked_sub(Amount(2)).unwrap_err().code, ErrorCode::InsufficientFunds);
        assert!(Amount::from_tiyn(u64::MAX).is_err());
        assert_eq!(Amount::from_tenge(5_000).unwrap().tiyn(), 500_000);
    }

    #[test]
    fn json_rejects_amounts_above_max() {
        assert!(serde_json::from_str::<Amount>("9007199254740992").is_err());
        assert!(serde_json::from_str::<Amount>("-1").is_err());
        assert!(serde_json::from_str::<Amount>("1.5").is_err());
        assert_eq!(serde_json::from_str::<Amount>("150").unwrap(), Amount(150));
    }
}
