//! Integer samplers for plan generation, so a seed draws the same plan on
//! every platform. Library float functions (`ln`, `exp`, `sqrt`, `powf`)
//! are not specified bit for bit across platforms and libms; here every
//! draw is integer arithmetic on the ChaCha stream. The only floats left
//! are the scenario's probabilities and rate, each turned into an integer
//! by IEEE-754 basic operations (exact or correctly rounded) before use.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Bits of a uniform draw: the 53 high bits of one `u64` (what
/// `rng.random::<f64>()` uses, so [`Chance`] draws what it did).
const UNIFORM_BITS: u32 = 53;
/// ln 2 in Q0.64 fixed point, rounded to nearest.
const LN2_Q64: u64 = 0xb172_17f7_d1cf_79ac;
/// Fraction bits of the fixed-point logarithms below.
const FRAC_BITS: u32 = 32;

/// A probability as a count of the `2^53` equally likely uniform draws that
/// say "yes": `draw` is `u < count` for a 53-bit `u`, bit for bit the old
/// `rng.random::<f64>() < p` (that float is `u * 2^-53`), so plans drawn
/// before this type existed are unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chance(u64);

impl Chance {
    /// The integers `u >= 0` with `u < p * 2^53` (scaling by a power of two
    /// is exact). Zero, negative or NaN `p` never says yes.
    pub(crate) fn new(p: f64) -> Chance {
        let scaled = p * (1u64 << UNIFORM_BITS) as f64;
        // `as` truncates toward zero and saturates (NaN becomes 0).
        let whole = scaled as u64;
        let count = if (whole as f64) < scaled {
            whole + 1
        } else {
            whole
        };
        Chance(count)
    }

    /// Draws one uniform unless the chance is nil (so a zero probability
    /// consumes nothing from the stream, as before).
    pub(crate) fn draw(self, rng: &mut ChaCha8Rng) -> bool {
        self.0 > 0 && (rng.random::<u64>() >> (64 - UNIFORM_BITS)) < self.0
    }
}

/// `-ln(u / 2^53)` in Q32.32 for `u` in `1..=2^53`: at most `53 ln 2 ≈ 36.74`.
/// Computed as `ln 2 · (53 − log2 u)`, the binary logarithm bit by bit
/// (square the mantissa, a bit per doubling past 2): 32 rounds, integers only.
fn neg_ln_q32(u: u64) -> u64 {
    debug_assert!((1..=1u64 << UNIFORM_BITS).contains(&u));
    let whole = 63 - u64::from(u.leading_zeros());
    // The mantissa u / 2^whole in [1, 2) as Q2.62.
    let mut mantissa = u << (62 - whole);
    let mut frac = 0u64;
    for bit in (0..FRAC_BITS).rev() {
        // In [1, 4) after squaring, so it fits a u64 in Q2.62.
        mantissa = ((u128::from(mantissa) * u128::from(mantissa)) >> 62) as u64;
        if mantissa >= 1 << 63 {
            mantissa >>= 1;
            frac |= 1 << bit;
        }
    }
    let log2_q32 = (whole << FRAC_BITS) | frac;
    let neg_log2_q32 = (u64::from(UNIFORM_BITS) << FRAC_BITS) - log2_q32;
    ((u128::from(neg_log2_q32) * u128::from(LN2_Q64)) >> 64) as u64
}

/// An exponentially distributed gap of mean `mean` (any unit), in that
/// unit × 2^32: the inverse transform of a uniform in `(0, 1]`, at most
/// `36.74 × mean`. Kept in fixed point so a sum of gaps does not drift.
fn exponential_q32(rng: &mut ChaCha8Rng, mean: u64) -> u128 {
    let u = (rng.random::<u64>() >> (64 - UNIFORM_BITS)) + 1;
    u128::from(mean) * u128::from(neg_ln_q32(u))
}

/// The mean gap between Poisson arrivals at `per_sec`, ps, rounded: one
/// IEEE division (correctly rounded everywhere), then `as`, which
/// saturates (infinity becomes `u64::MAX`, NaN 0). Picoseconds keep the
/// rounding under 1e-6 of the mean up to a million arrivals a second.
fn mean_gap_ps(per_sec: f64) -> u64 {
    (1e12 / per_sec + 0.5) as u64
}

/// `n` arrival times of a Poisson process at `per_sec`, ms, ascending: the
/// running sum of exponential gaps (in ps × 2^32, truncated to ms only
/// when read, so no rounding accumulates).
pub(crate) fn poisson_arrivals_ms(rng: &mut ChaCha8Rng, per_sec: f64, n: usize) -> Vec<u64> {
    const PS_PER_MS_Q32: u128 = 1_000_000_000 << FRAC_BITS;
    let mean_ps = mean_gap_ps(per_sec);
    let mut t = 0u128;
    (0..n)
        .map(|_| {
            t = t.saturating_add(exponential_q32(rng, mean_ps));
            u64::try_from(t / PS_PER_MS_Q32).unwrap_or(u64::MAX)
        })
        .collect()
}

/// A time in `0..span_ms` whose density rises linearly (a ramp): the
/// integer square root of a uniform in `0..span_ms²`, so
/// `P(t) = (2t + 1) / span_ms²`.
pub(crate) fn ramp_ms(rng: &mut ChaCha8Rng, span_ms: u64) -> u64 {
    let span_ms = span_ms.max(1);
    rng.random_range(0..span_ms.saturating_mul(span_ms)).isqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn the_fixed_point_logarithm_matches_ln_to_nine_digits() {
        // Proves: -ln(u / 2^53) in Q32.32 is within 1e-9 of the true value
        // (the platform's ln serves only as the test's reference) over the
        // whole input range, and exact at its ends (u = 2^53 gives 0).
        assert_eq!(neg_ln_q32(1 << 53), 0);
        // -ln(0.75) · 2^32 = 1235585092.83 (computed to 50 digits offline).
        assert!((1_235_585_091..=1_235_585_093).contains(&neg_ln_q32(3 << 51)));
        let mut u = 1u64;
        let mut worst = 0.0f64;
        while u <= 1 << 53 {
            let ours = neg_ln_q32(u) as f64 / (1u64 << 32) as f64;
            let truth = -(u as f64 / (1u64 << 53) as f64).ln();
            worst = worst.max((ours - truth).abs());
            u = u + u / 7 + 1;
        }
        assert!(worst < 1e-9, "worst error {worst}");
    }

    #[test]
    fn exponential_gaps_have_the_right_mean_spread_and_bound() {
        // Proves: over 200,000 gaps of mean 1 ms, the sample mean and the
        // standard deviation are both within 1% of 1 ms (an exponential's
        // spread equals its mean; the standard error is 0.22%), e^-1 of the
        // gaps exceed the mean (±0.5 points), and none passes 53 ln 2 means.
        let mean_ns = 1_000_000u64;
        let n = 200_000u32;
        let mut rng = rng();
        let gaps: Vec<f64> = (0..n)
            .map(|_| exponential_q32(&mut rng, mean_ns) as f64 / 2f64.powi(32))
            .collect();
        let mean = gaps.iter().sum::<f64>() / f64::from(n);
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / f64::from(n);
        let above = gaps.iter().filter(|&&g| g > 1e6).count() as f64 / f64::from(n);
        assert!((mean / 1e6 - 1.0).abs() < 0.01, "mean {mean} ns");
        assert!(
            (var.sqrt() / 1e6 - 1.0).abs() < 0.01,
            "spread {} ns",
            var.sqrt()
        );
        let e_inv = std::f64::consts::E.recip();
        assert!((above - e_inv).abs() < 0.005, "{above} above the mean");
        assert!(
            gaps.iter().all(|&g| g <= 36.737e6),
            "a gap passed 36.74 means"
        );
    }

    #[test]
    fn poisson_arrivals_have_the_rate_and_the_counts_of_a_poisson_process() {
        // Proves: 20,000 arrivals at 100/s are ascending and end at 200 s
        // (within 2.5%; the sum's standard error is 0.7%), and the counts per
        // 1 s bucket have mean 100 and variance 100 (within 15%): a Poisson
        // count's variance equals its mean, which even spacing would not give.
        let times = poisson_arrivals_ms(&mut rng(), 100.0, 20_000);
        assert!(times.is_sorted());
        let last_ms = *times.last().unwrap() as f64;
        assert!(
            (last_ms / 200_000.0 - 1.0).abs() < 0.025,
            "last at {last_ms} ms"
        );
        let seconds = (last_ms / 1000.0) as usize;
        let mut counts = vec![0u32; seconds];
        for &t in times.iter().filter(|&&t| (t / 1000) < seconds as u64) {
            counts[(t / 1000) as usize] += 1;
        }
        let mean = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / seconds as f64;
        let var = counts
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / seconds as f64;
        assert!((mean / 100.0 - 1.0).abs() < 0.03, "mean count {mean}");
        assert!(
            (var / mean - 1.0).abs() < 0.15,
            "variance {var} for mean {mean}"
        );
        assert_eq!(mean_gap_ps(100.0), 10_000_000_000);
        assert_eq!(mean_gap_ps(3.0), 333_333_333_333);
        assert_eq!(mean_gap_ps(1e-300), u64::MAX);
    }

    #[test]
    fn a_chance_draws_exactly_what_the_float_comparison_drew() {
        // Proves: for probabilities used by shipped scenarios and edge values,
        // `Chance` says yes exactly when `random::<f64>() < p` did on the same
        // stream, consumes the same draws (none for p = 0), and says yes 30%
        // of the time for p = 0.3 (within 0.5 points over 100,000 draws).
        for p in [0.0, 1e-12, 0.05, 0.1, 0.2, 0.3, 0.35, 0.8, 0.9, 1.0, 2.0] {
            let (mut ours, mut old) = (rng(), rng());
            let chance = Chance::new(p);
            for _ in 0..10_000 {
                let expected = p > 0.0 && old.random::<f64>() < p;
                assert_eq!(chance.draw(&mut ours), expected, "p = {p}");
            }
            assert_eq!(ours.random::<u64>(), old.random::<u64>(), "p = {p}");
        }
        assert_eq!(Chance::new(f64::NAN), Chance(0));
        assert_eq!(Chance::new(-1.0), Chance(0));
        let mut rng = rng();
        let yes = (0..100_000)
            .filter(|_| Chance::new(0.3).draw(&mut rng))
            .count();
        assert!((29_500..=30_500).contains(&yes), "{yes} of 100000");
    }

    #[test]
    fn ramp_times_stay_in_the_span_with_a_linear_density() {
        // Proves: ramp times fall in 0..span, their mean is 2/3 of the span
        // (within 1%), and the first half of the span holds a quarter of them
        // (within 1 point), as a density rising linearly from zero implies.
        let span_ms = 6_000u64;
        let n = 100_000u64;
        let mut rng = rng();
        let times: Vec<u64> = (0..n).map(|_| ramp_ms(&mut rng, span_ms)).collect();
        assert!(times.iter().all(|&t| t < span_ms));
        let mean = times.iter().sum::<u64>() as f64 / n as f64;
        assert!(
            (mean / (span_ms as f64 * 2.0 / 3.0) - 1.0).abs() < 0.01,
            "mean {mean}"
        );
        let early = times.iter().filter(|&&t| t < span_ms / 2).count() as f64 / n as f64;
        assert!((early - 0.25).abs() < 0.01, "{early} in the first half");
        assert_eq!(ramp_ms(&mut rng, 0), 0);
    }
}
