//! The shells' clock. The server never reads `std::time`: its clock is
//! tokio's (which turmoil simulates) or whatever the embedder supplies, so a
//! simulated run has simulated time everywhere.

use stampede_core::Millis;
use std::fmt;
use std::sync::Arc;

/// A source of `now`, shared by every component of one process or host.
#[derive(Clone)]
pub struct Clock {
    now: Arc<dyn Fn() -> Millis + Send + Sync>,
    epoch_unix_ms: u64,
}

impl Clock {
    /// Milliseconds since this clock was made, on tokio's clock. `epoch_unix_ms`
    /// is the Unix time of that moment (used only for webhook signature
    /// timestamps; the embedder reads it once, e.g. from the system clock in
    /// the CLI or a fixed value in the simulator).
    pub fn tokio(epoch_unix_ms: u64) -> Clock {
        let origin = tokio::time::Instant::now();
        Clock::from_fn(epoch_unix_ms, move || {
            Millis(u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX))
        })
    }

    /// Like [`Clock::tokio`], but reading `start` at this moment: a durable
    /// store's clock resumes where the stored state's time left off.
    pub fn tokio_from(epoch_unix_ms: u64, start: Millis) -> Clock {
        let origin = tokio::time::Instant::now();
        Clock::from_fn(epoch_unix_ms, move || {
            let elapsed = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
            Millis(start.0.saturating_add(elapsed))
        })
    }

    /// A clock read from `now` (the simulator passes turmoil's shared sim time).
    pub fn from_fn(epoch_unix_ms: u64, now: impl Fn() -> Millis + Send + Sync + 'static) -> Clock {
        Clock {
            now: Arc::new(now),
            epoch_unix_ms,
        }
    }

    /// The current time.
    pub fn now(&self) -> Millis {
        (self.now)()
    }

    /// The current Unix time in seconds (for `Psp-Signature: t=`).
    pub fn unix_secs(&self) -> u64 {
        self.unix_ms() / 1000
    }

    /// The current Unix time in milliseconds, as this clock tells it (a
    /// resumed store's clock goes on from the stored state's time).
    pub fn unix_ms(&self) -> u64 {
        self.epoch_unix_ms.saturating_add(self.now().0)
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(now={}, epoch={})", self.now(), self.epoch_unix_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_is_the_epoch_plus_the_clocks_now() {
        // Proves: Unix ms = epoch + now (a resumed clock's `now` included), and Unix seconds
        // are those ms divided down, not rounded up.
        let clock = Clock::from_fn(1_700_000_000_000, || Millis(2_999));
        assert_eq!(clock.unix_ms(), 1_700_000_002_999);
        assert_eq!(clock.unix_secs(), 1_700_000_002);
    }
}
