//! The admission limits of a shop Stampede serves (`serve`, `load`), as
//! command-line options: each a named limit with its unit.

use stampede_core::Admission;
use stampede_core::{DEFAULT_SHED_RETRY_AFTER_MS, DEFAULT_UNDECIDED_ORDERS_MAX};
use stampede_server::DEFAULT_DEGRADED_READ_AGE_MS_MAX;
use stampede_server::StackConfig;

/// The window of `--customer-orders-per-minute`, ms.
const MINUTE_MS: u64 = 60_000;

/// Admission control and peak shaping (ignored with `--set admission=off`).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct AdmissionArgs {
    /// Most orders accepted but not yet decided (queued or running their reserve step); one
    /// more is shed: 429 problem+json with Retry-After, nothing created [default: 5000; 2000 for
    /// the shop `stampede load` starts, which shares the machine with the load generator].
    #[arg(long, value_name = "ORDERS",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_undecided_orders: Option<u64>,
    /// The Retry-After a shed buyer is given, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_SHED_RETRY_AFTER_MS / 1_000,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub shed_retry_after_secs: u64,
    /// Most orders one customer may place per minute (anti-scalping, e.g. 20); one more is
    /// refused 429 rate-limited with Retry-After. 0 (the default): no limit.
    #[arg(long, value_name = "ORDERS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub customer_orders_per_minute: u32,
    /// Accept orders for a sold-out SKU (to be cancelled out of stock later) instead of
    /// refusing them at once with 409 sold-out.
    #[arg(long)]
    pub no_sold_out_fast_path: bool,
    /// Degrade mode: for 5 s after it sheds an order, the shop serves catalog reads (live stock
    /// counts) from a copy at most this old, ms. 0: always read the store.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_DEGRADED_READ_AGE_MS_MAX,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub degraded_read_max_age_ms: u64,
}

impl AdmissionArgs {
    /// Whether every option is left at its default (none was given, or each
    /// was given its default): what `load --host` requires, as the shop it
    /// targets is not one Stampede starts.
    pub fn is_default(&self) -> bool {
        self.max_undecided_orders.is_none()
            && self.shed_retry_after_secs == DEFAULT_SHED_RETRY_AFTER_MS / 1_000
            && self.customer_orders_per_minute == 0
            && !self.no_sold_out_fast_path
            && self.degraded_read_max_age_ms == DEFAULT_DEGRADED_READ_AGE_MS_MAX
    }

    /// These options with `orders` as the bound on undecided orders unless
    /// one was given.
    pub fn with_undecided_default(&self, orders: usize) -> AdmissionArgs {
        AdmissionArgs {
            max_undecided_orders: self.max_undecided_orders.or(Some(orders as u64)),
            ..self.clone()
        }
    }

    /// The core's limits.
    pub fn limits(&self) -> Admission {
        let undecided = self
            .max_undecided_orders
            .unwrap_or(DEFAULT_UNDECIDED_ORDERS_MAX as u64);
        Admission {
            max_undecided_orders: usize::try_from(undecided).ok(),
            shed_retry_after_ms: self.shed_retry_after_secs * 1_000,
            customer_orders_max: (self.customer_orders_per_minute > 0)
                .then_some(self.customer_orders_per_minute),
            customer_window_ms: MINUTE_MS,
            sold_out_fast_path: !self.no_sold_out_fast_path,
        }
    }

    /// Configures a shop's admission limits and degrade mode.
    pub fn configure(&self, config: &mut StackConfig) {
        config.shop.admission = self.limits();
        config.server.degraded_read_max_age_ms = self.degraded_read_max_age_ms;
    }

    /// The same options, for a `stampede serve` child process.
    pub fn to_argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(orders) = self.max_undecided_orders {
            argv.extend(["--max-undecided-orders".to_string(), orders.to_string()]);
        }
        argv.extend([
            "--shed-retry-after-secs".to_string(),
            self.shed_retry_after_secs.to_string(),
            "--customer-orders-per-minute".to_string(),
            self.customer_orders_per_minute.to_string(),
            "--degraded-read-max-age-ms".to_string(),
            self.degraded_read_max_age_ms.to_string(),
        ]);
        if self.no_sold_out_fast_path {
            argv.push("--no-sold-out-fast-path".to_string());
        }
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        admission: AdmissionArgs,
    }

    fn parse(args: &[&str]) -> Result<AdmissionArgs, String> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map(|c| c.admission)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_the_reference_limits() {
        // Proves: with no option the shop gets exactly the core's reference limits.
        assert_eq!(parse(&[]).unwrap().limits(), Admission::default());
    }

    #[test]
    fn each_limit_is_read_in_its_unit_and_round_trips_to_a_child() {
        // Proves: seconds become ms, per minute becomes a 60 s window, 0 turns the rate limit
        // off, the fast-path flag turns it off, and to_argv parses back to the same options.
        let a = parse(&[
            "--max-undecided-orders",
            "7",
            "--shed-retry-after-secs",
            "3",
            "--customer-orders-per-minute",
            "0",
            "--no-sold-out-fast-path",
            "--degraded-read-max-age-ms",
            "0",
        ])
        .unwrap();
        assert_eq!(
            a.limits(),
            Admission {
                max_undecided_orders: Some(7),
                shed_retry_after_ms: 3_000,
                customer_orders_max: None,
                customer_window_ms: 60_000,
                sold_out_fast_path: false,
            }
        );
        assert_eq!(a.degraded_read_max_age_ms, 0);
        let argv: Vec<String> = a.to_argv();
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        assert_eq!(parse(&refs).unwrap(), a);
    }

    #[test]
    fn a_default_bound_on_undecided_orders_applies_only_when_none_was_given() {
        // Proves: `stampede load`'s own default (2,000) replaces the unset bound, and only the
        // unset one: a given bound is kept, and the result round-trips to a child.
        let unset = parse(&[]).unwrap().with_undecided_default(2_000);
        assert_eq!(unset.limits().max_undecided_orders, Some(2_000));
        let given = parse(&["--max-undecided-orders", "7"]).unwrap();
        assert_eq!(
            given
                .with_undecided_default(2_000)
                .limits()
                .max_undecided_orders,
            Some(7)
        );
        let argv = unset.to_argv();
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        assert_eq!(parse(&refs).unwrap(), unset);
    }

    #[test]
    fn out_of_range_limits_are_refused_naming_the_option() {
        // Proves: each bound is enforced on both sides: 1 and 10,000,000 undecided orders are
        // accepted, 0 and 10,000,001 refused; a Retry-After of 0 s or 601 s is refused.
        assert!(parse(&["--max-undecided-orders", "1"]).is_ok());
        assert!(parse(&["--max-undecided-orders", "10000000"]).is_ok());
        for bad in ["0", "10000001"] {
            let err = parse(&["--max-undecided-orders", bad]).unwrap_err();
            assert!(err.contains("--max-undecided-orders"), "{err}");
        }
        assert!(parse(&["--shed-retry-after-secs", "600"]).is_ok());
        for bad in ["0", "601"] {
            let err = parse(&["--shed-retry-after-secs", bad]).unwrap_err();
            assert!(err.contains("--shed-retry-after-secs"), "{err}");
        }
    }
}
