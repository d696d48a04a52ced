//! Time as plain data. The core never reads a clock: every operation that
//! depends on time takes `now: Millis` from the shell (tokio's clock, which
//! turmoil simulates).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time: milliseconds on the shell's clock (simulated or real).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The instant `delta_ms` after `self`, saturating at `u64::MAX` so a
    /// huge TTL means "never" rather than an overflow.
    pub fn plus_ms(self, delta_ms: u64) -> Millis {
        Millis(self.0.saturating_add(delta_ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_saturates_instead_of_wrapping_and_prints_seconds() {
        // Proves: a huge TTL lands at the end of time, an earlier "later" instant is zero ms
        // away, and instants print as seconds with three decimals.
        assert_eq!(Millis(5).plus_ms(7), Millis(12));
        assert_eq!(Millis(5).plus_ms(u64::MAX), Millis(u64::MAX));
        assert_eq!(Millis(12).since(Millis(5)), 7);
        assert_eq!(Millis(5).since(Millis(12)), 0);
        assert_eq!(Millis(61_042).to_string(), "61.042s");
        assert_eq!(Millis(7).to_string(), "0.007s");
    }
}
