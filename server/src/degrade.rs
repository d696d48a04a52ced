//! Degrade mode: while the shop is shedding orders, non-essential reads —
//! the catalog with its live stock counts — are served from a copy at most
//! [`ServerConfig::degraded_read_max_age_ms`] old instead of costing a
//! store call each, so browsing buyers do not take store time from the
//! orders being decided. Under pressure means: this process shed an order
//! (429 `overloaded`) within the last [`ServerConfig::degrade_window_ms`].
//! A read served from the copy says so (`Stampede-Degraded: cached`, and
//! `Age` in seconds); stock counts are advisory anyway — the reserve step
//! decides.
//!
//! [`ServerConfig::degraded_read_max_age_ms`]: crate::app::ServerConfig::degraded_read_max_age_ms
//! [`ServerConfig::degrade_window_ms`]: crate::app::ServerConfig::degrade_window_ms

use stampede_core::{Millis, Product, StockLevel};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The catalog as read from the store, with stock levels.
pub type CatalogRead = Arc<Vec<(Product, StockLevel)>>;

/// Pressure and the cached catalog.
#[derive(Debug, Default)]
pub struct Degrade {
    /// When this process last shed an order, ms + 1 (0: never).
    last_shed: AtomicU64,
    /// The last catalog read and when it was taken.
    cached: Mutex<Option<(Millis, CatalogRead)>>,
}

impl Degrade {
    /// An order was shed at `now`.
    pub fn shed(&self, now: Millis) {
        self.last_shed
            .fetch_max(now.0.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether an order was shed within `window_ms` before `now`.
    pub fn under_pressure(&self, now: Millis, window_ms: u64) -> bool {
        match self.last_shed.load(Ordering::Relaxed) {
            0 => false,
            shed => now.0.saturating_add(1).saturating_sub(shed) <= window_ms,
        }
    }

    /// The cached catalog and its age, if it is at most `max_age_ms` old.
    pub fn cached(&self, now: Millis, max_age_ms: u64) -> Option<(CatalogRead, u64)> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let (at, read) = cached.as_ref()?;
        let age = now.0.saturating_sub(at.0);
        (age <= max_age_ms).then(|| (Arc::clone(read), age))
    }

    /// Keeps a fresh read taken at `at`.
    pub fn keep(&self, at: Millis, read: CatalogRead) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_none_or(|(old, _)| *old <= at) {
            *cached = Some((at, read));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_lasts_the_window_after_the_last_shed_on_both_sides() {
        // Proves: no shed, no pressure; a shed at 1,000 ms puts the shop under pressure through
        // 1,000 + window and not 1 ms later; a later shed extends it, an earlier one does not.
        let d = Degrade::default();
        assert!(!d.under_pressure(Millis(0), 500));
        d.shed(Millis(1_000));
        assert!(d.under_pressure(Millis(1_000), 500));
        assert!(d.under_pressure(Millis(1_500), 500));
        assert!(!d.under_pressure(Millis(1_501), 500));
        d.shed(Millis(1_400));
        d.shed(Millis(200));
        assert!(d.under_pressure(Millis(1_900), 500));
        assert!(!d.under_pressure(Millis(1_901), 500));
    }

    #[test]
    fn a_cached_read_serves_up_to_its_max_age_and_never_goes_back_in_time() {
        // Proves: nothing cached serves nothing; a read kept at 100 ms serves at 100 + max age
        // (with its age) and not 1 ms later; an older read does not replace a newer one.
        let d = Degrade::default();
        assert!(d.cached(Millis(0), 1_000).is_none());
        let read: CatalogRead = Arc::new(Vec::new());
        d.keep(Millis(100), Arc::clone(&read));
        assert_eq!(
            d.cached(Millis(1_100), 1_000).map(|(_, age)| age),
            Some(1_000)
        );
        assert!(d.cached(Millis(1_101), 1_000).is_none());
        d.keep(Millis(50), read);
        assert_eq!(d.cached(Millis(600), 1_000).map(|(_, age)| age), Some(500));
    }
}
