//! Money as integer minor units with checked arithmetic. There is no float
//! anywhere on a money path.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount in minor currency units (cents). Arithmetic is checked: an
/// overflow is an error value, never a wrap.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub u64);

/// An arithmetic overflow or underflow on money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("money arithmetic overflowed")]
pub struct MoneyOverflow;

impl Cents {
    /// Zero cents.
    pub const ZERO: Cents = Cents(0);

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Cents) -> Result<Cents, MoneyOverflow> {
        self.0.checked_add(other.0).map(Cents).ok_or(MoneyOverflow)
    }

    /// `self - other`, or an error if `other > self`.
    pub fn checked_sub(self, other: Cents) -> Result<Cents, MoneyOverflow> {
        self.0.checked_sub(other.0).map(Cents).ok_or(MoneyOverflow)
    }

    /// `self * qty`, or an error on overflow.
    pub fn checked_mul(self, qty: u32) -> Result<Cents, MoneyOverflow> {
        self.0
            .checked_mul(u64::from(qty))
            .map(Cents)
            .ok_or(MoneyOverflow)
    }

    /// Sum of amounts, or an error on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Cents>>(amounts: I) -> Result<Cents, MoneyOverflow> {
        amounts
            .into_iter()
            .try_fold(Cents::ZERO, |acc, amount| acc.checked_add(amount))
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_reports_overflow_instead_of_wrapping() {
        assert_eq!(Cents(5).checked_add(Cents(7)), Ok(Cents(12)));
        assert_eq!(Cents(u64::MAX).checked_add(Cents(1)), Err(MoneyOverflow));
        assert_eq!(Cents(3).checked_sub(Cents(4)), Err(MoneyOverflow));
        assert_eq!(Cents(250).checked_mul(4), Ok(Cents(1000)));
        assert_eq!(Cents(u64::MAX / 2 + 1).checked_mul(2), Err(MoneyOverflow));
        assert_eq!(
            Cents::checked_sum([Cents(1), Cents(2), Cents(3)]),
            Ok(Cents(6))
        );
        assert_eq!(
            Cents::checked_sum([Cents(u64::MAX), Cents(1)]),
            Err(MoneyOverflow)
        );
    }

    #[test]
    fn displays_as_major_and_minor_units() {
        assert_eq!(Cents(12345).to_string(), "123.45");
        assert_eq!(Cents(7).to_string(), "0.07");
    }
}
