//! The open-loop arrival schedule: when each journey should start, fixed
//! before the run and independent of how fast the shop answers (wrk2's
//! model). Goose has no open-loop mode; the loadgen's goose users take the
//! next slot from this schedule, wait for its time, and measure from it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most slots one schedule may hold.
pub const SLOTS_MAX: usize = 10_000_000;

/// How the rate varies over the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "shape")]
pub enum Shape {
    /// The same rate throughout.
    Steady,
    /// From zero to the rate over `over`, then steady.
    Ramp {
        /// Ramp length.
        over: Duration,
    },
    /// Steady, with `factor` × the rate for `length` starting at `at` (a flash sale).
    Spike {
        /// When the spike starts.
        at: Duration,
        /// How long it lasts.
        length: Duration,
        /// Rate multiplier during the spike.
        factor: f64,
    },
}

impl Shape {
    /// The rate at `t` as a multiple of the base rate.
    pub fn factor_at(&self, t: Duration) -> f64 {
        match *self {
            Shape::Steady => 1.0,
            Shape::Ramp { over } => {
                if over.is_zero() || t >= over {
                    1.0
                } else {
                    t.as_secs_f64() / over.as_secs_f64()
                }
            }
            Shape::Spike { at, length, factor } => {
                if t >= at && t < at + length {
                    factor
                } else {
                    1.0
                }
            }
        }
    }
}

/// Part `index` of `count` (1-based, as `--shard I/N`) of one run spread
/// over several load generators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// 1-based.
    pub index: u32,
    /// Parts in all, at most [`SHARES_MAX`].
    pub count: u32,
}

/// Most parts one run may be split into.
pub const SHARES_MAX: u32 = 1024;

impl Share {
    /// Part `index` of `count`, if `1 <= index <= count <= SHARES_MAX`.
    pub fn new(index: u32, count: u32) -> Result<Share, String> {
        if index == 0 || index > count || count > SHARES_MAX {
            return Err(format!(
                "part {index} of {count}: write I/N with 1 <= I <= N <= {SHARES_MAX}"
            ));
        }
        Ok(Share { index, count })
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Intended start times of every journey, since load began, in order: a
/// whole schedule, or one [`Share`] of one (every `count`-th slot from
/// `index − 1`), which keeps each slot's number in the whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    slots: Vec<Duration>,
    /// The whole schedule's number of this schedule's slot 0.
    first: usize,
    /// Slots of the whole between two of this schedule's.
    stride: usize,
}

impl Schedule {
    /// Slots for `rate_per_sec` (scaled by `shape`) over `duration`: the k-th
    /// journey starts when the expected count of arrivals reaches k, so the
    /// spacing is exact (no randomness) and the run is repeatable.
    pub fn new(rate_per_sec: f64, shape: Shape, duration: Duration) -> Result<Schedule, String> {
        if !(rate_per_sec > 0.0 && rate_per_sec.is_finite()) {
            return Err(format!("rate {rate_per_sec}/s must be above 0"));
        }
        let mut slots = Vec::new();
        let step = Duration::from_micros(100);
        let mut expected = 0.0f64;
        let mut t = Duration::ZERO;
        while t < duration {
            expected += rate_per_sec * shape.factor_at(t) * step.as_secs_f64();
            // The epsilon keeps float drift from losing the last slot of a whole count.
            while (slots.len() as f64) < (expected + 1e-6).floor() {
                if slots.len() >= SLOTS_MAX {
                    return Err(format!(
                        "{rate_per_sec}/s for {duration:?} is more than {SLOTS_MAX} journeys"
                    ));
                }
                slots.push(t);
            }
            t += step;
        }
        Ok(Schedule {
            slots,
            first: 0,
            stride: 1,
        })
    }

    /// This load generator's share of the whole schedule: slots `index − 1`,
    /// `index − 1 + count`, … So the shares' slots interleave into exactly
    /// the whole, each slot in one share, at the same time and with the same
    /// number (journeys take their number, hence their choices, from it).
    pub fn share(&self, share: Share) -> Schedule {
        debug_assert!(self.first == 0 && self.stride == 1, "share of a share");
        let first = share.index as usize - 1;
        let stride = share.count as usize;
        let slots = self.slots.iter().skip(first).step_by(stride).copied();
        Schedule {
            slots: slots.collect(),
            first,
            stride,
        }
    }

    /// The k-th journey's intended start, if the schedule has one.
    pub fn slot(&self, k: usize) -> Option<Duration> {
        self.slots.get(k).copied()
    }

    /// The number in the whole schedule of this schedule's `k`-th slot.
    pub fn number(&self, k: usize) -> usize {
        self.first + k * self.stride
    }

    /// Journeys in the schedule.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_is_evenly_spaced() {
        let s = Schedule::new(100.0, Shape::Steady, Duration::from_secs(2)).unwrap();
        assert_eq!(s.len(), 200);
        let gap = s.slot(101).unwrap() - s.slot(100).unwrap();
        assert!(
            gap >= Duration::from_micros(9_900) && gap <= Duration::from_micros(10_100),
            "{gap:?}"
        );
    }

    #[test]
    fn a_ramp_starts_slow_and_a_spike_crowds_its_window() {
        let ramp = Schedule::new(
            100.0,
            Shape::Ramp {
                over: Duration::from_secs(2),
            },
            Duration::from_secs(2),
        )
        .unwrap();
        // Half the rate on average over the ramp: about 100 journeys, 25 in the first second.
        assert!((95..=101).contains(&ramp.len()), "{}", ramp.len());
        let first_second = (0..ramp.len())
            .filter(|&k| ramp.slot(k).unwrap() < Duration::from_secs(1))
            .count();
        assert!((20..=30).contains(&first_second), "{first_second}");

        let spike = Schedule::new(
            10.0,
            Shape::Spike {
                at: Duration::from_secs(1),
                length: Duration::from_millis(500),
                factor: 20.0,
            },
            Duration::from_secs(3),
        )
        .unwrap();
        let inside = (0..spike.len())
            .filter(|&k| {
                let t = spike.slot(k).unwrap();
                t >= Duration::from_secs(1) && t < Duration::from_millis(1500)
            })
            .count();
        assert!(
            (99..=101).contains(&inside),
            "{inside} journeys in the spike"
        );
    }

    #[test]
    fn shares_partition_the_whole_schedule_slot_for_slot() {
        // Proves: for 1, 2, 3 and 7 shares of a spiky schedule, every slot of
        // the whole is in exactly one share, at its own time and under its
        // own number; share I starts at slot I − 1; share sizes differ by at
        // most one and add up to the whole.
        let whole = Schedule::new(
            37.0,
            Shape::Spike {
                at: Duration::from_millis(300),
                length: Duration::from_millis(200),
                factor: 5.0,
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(whole.len() > 40, "{}", whole.len());
        for count in [1, 2, 3, 7] {
            let mut seen = vec![0u32; whole.len()];
            let mut sizes = Vec::new();
            for index in 1..=count {
                let part = whole.share(Share::new(index, count).unwrap());
                sizes.push(part.len());
                for k in 0..part.len() {
                    let n = part.number(k);
                    assert_eq!(part.slot(k), whole.slot(n), "{index}/{count} slot {k}");
                    seen[n] += 1;
                }
                assert_eq!(part.number(0), index as usize - 1);
                assert_eq!(part.slot(part.len()), None);
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shares: {seen:?}");
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{count} shares: {sizes:?}");
            assert_eq!(sizes.iter().sum::<usize>(), whole.len());
        }
        // Bounds of a share: 1..=count, count 1..=SHARES_MAX, each side.
        assert!(Share::new(1, 1).is_ok());
        assert!(Share::new(0, 1).is_err());
        assert!(Share::new(3, 3).is_ok());
        assert!(Share::new(4, 3).is_err());
        assert!(Share::new(SHARES_MAX, SHARES_MAX).is_ok());
        assert!(Share::new(1, SHARES_MAX + 1).is_err());
    }

    #[test]
    fn nonsense_rates_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Schedule::new(rate, Shape::Steady, Duration::from_secs(1)).is_err());
        }
        assert!(Schedule::new(1e9, Shape::Steady, Duration::from_secs(60)).is_err());
    }
}
