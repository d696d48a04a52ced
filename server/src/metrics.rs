//! `/metrics` in the Prometheus text format: counters the shell increments,
//! plus gauges and time-in-state histograms computed from the store at
//! scrape time.

use crate::store::StoreError;
use stampede_core::{AuditSnapshot, ShopStats, Step, Transition};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the API and workers increment.
#[derive(Debug, Default)]
pub struct Counters {
    /// Order transitions made through this process.
    pub transitions: AtomicU64,
    /// Store operations refused with an illegal transition.
    pub transition_failures: AtomicU64,
    /// Webhook events recognised as duplicates and skipped.
    pub webhook_duplicates: AtomicU64,
    /// Webhooks refused (bad signature, stale, malformed).
    pub webhook_rejected: AtomicU64,
    /// Webhooks parked for orders not ready yet.
    pub webhook_parked: AtomicU64,
    /// Webhooks whose claim the PSP's view of the intent did not bear out
    /// (stale, or forged for a real intent): acknowledged, nothing applied.
    pub webhook_unconfirmed: AtomicU64,
    /// Jobs enqueued by this process (outside the core's own enqueues).
    pub enqueues: AtomicU64,
    /// Job attempts that failed and will be retried.
    pub job_retries: AtomicU64,
    /// Jobs moved to the dead-letter list.
    pub jobs_dead_lettered: AtomicU64,
    /// Jobs completed.
    pub jobs_done: AtomicU64,
    /// Repairs made by the reconciler.
    pub reconciler_repairs: AtomicU64,
    /// Reserve steps that left an order waiting for units held by unpaid orders.
    pub stock_waits: AtomicU64,
    /// Requests answered with 5xx because the store was unavailable.
    pub store_unavailable: AtomicU64,
    /// Orders accepted (`POST /v1/orders` answered 202 with a new order).
    pub orders_admitted: AtomicU64,
    /// Orders shed: refused 429 because too many orders awaited a decision.
    pub orders_shed: AtomicU64,
    /// Orders refused 429 by the per-customer rate limit.
    pub orders_rate_limited: AtomicU64,
    /// Orders refused at once because a SKU was sold out.
    pub orders_sold_out: AtomicU64,
    /// Catalog reads served from the cached copy under pressure.
    pub degraded_reads: AtomicU64,
}

impl Counters {
    /// Adds one.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a step's transitions and logs each with its order id.
    pub fn step(&self, step: &Step) {
        match step {
            Step::Moved(transitions) => self.transitions_made(transitions),
            Step::Wait { until } => {
                Counters::bump(&self.stock_waits);
                tracing::info!(until = %until, "waiting for held stock");
            }
            Step::Skipped(_) | Step::NothingToDo | Step::RefundScheduled => {}
        }
    }

    /// Records transitions and logs each with its order id.
    pub fn transitions_made(&self, transitions: &[Transition]) {
        for t in transitions {
            Counters::bump(&self.transitions);
            tracing::info!(order_id = %t.order, from = %t.from, to = %t.to, cause = %t.cause, "transition");
        }
    }

    /// Records a store error.
    pub fn store_error(&self, error: &StoreError) {
        match error {
            StoreError::Shop(stampede_core::ShopError::Illegal(_)) => {
                Counters::bump(&self.transition_failures)
            }
            StoreError::Unavailable(_) => Counters::bump(&self.store_unavailable),
            StoreError::Shop(stampede_core::ShopError::Shed { .. }) => {
                Counters::bump(&self.orders_shed)
            }
            StoreError::Shop(stampede_core::ShopError::RateLimited { .. }) => {
                Counters::bump(&self.orders_rate_limited)
            }
            StoreError::Shop(stampede_core::ShopError::SoldOut { .. }) => {
                Counters::bump(&self.orders_sold_out)
            }
            _ => {}
        }
    }
}

/// Upper bounds (ms) of the time-in-state histogram buckets.
pub const TIME_IN_STATE_BUCKETS_MS: [u64; 12] = [
    1, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 60_000, 300_000, 900_000,
];

/// Every counter: its name (after `stampede_`), its help text, and where it is kept.
type CounterRow = (&'static str, &'static str, fn(&Counters) -> &AtomicU64);

/// The counters, in the order `/metrics` lists them.
const COUNTERS: &[CounterRow] = &[
    (
        "transitions_total",
        "Order transitions made by this process.",
        |c| &c.transitions,
    ),
    (
        "transition_failures_total",
        "Operations refused as illegal transitions.",
        |c| &c.transition_failures,
    ),
    (
        "webhook_duplicates_skipped_total",
        "Webhook events skipped as duplicates.",
        |c| &c.webhook_duplicates,
    ),
    (
        "webhook_rejected_total",
        "Webhooks refused (signature, staleness, shape).",
        |c| &c.webhook_rejected,
    ),
    (
        "webhook_parked_total",
        "Webhooks parked until their order could take them.",
        |c| &c.webhook_parked,
    ),
    (
        "webhook_unconfirmed_total",
        "Webhooks the PSP's view of their intent did not bear out; nothing applied.",
        |c| &c.webhook_unconfirmed,
    ),
    ("enqueues_total", "Jobs enqueued by the shell.", |c| {
        &c.enqueues
    }),
    (
        "job_retries_total",
        "Job attempts that failed and were scheduled again.",
        |c| &c.job_retries,
    ),
    ("jobs_dead_lettered_total", "Jobs given up on.", |c| {
        &c.jobs_dead_lettered
    }),
    ("jobs_done_total", "Jobs completed.", |c| &c.jobs_done),
    (
        "reconciler_repairs_total",
        "Repairs made by the reconciler.",
        |c| &c.reconciler_repairs,
    ),
    (
        "stock_waits_total",
        "Reserve steps that left an order waiting for units held by unpaid orders.",
        |c| &c.stock_waits,
    ),
    (
        "store_unavailable_total",
        "Requests that found the store unavailable.",
        |c| &c.store_unavailable,
    ),
    (
        "orders_admitted_total",
        "Orders accepted by this process.",
        |c| &c.orders_admitted,
    ),
    (
        "orders_shed_total",
        "Orders refused 429 because too many orders awaited a decision.",
        |c| &c.orders_shed,
    ),
    (
        "orders_rate_limited_total",
        "Orders refused 429 by the per-customer rate limit.",
        |c| &c.orders_rate_limited,
    ),
    (
        "orders_sold_out_total",
        "Orders refused at once because a SKU they asked for was sold out.",
        |c| &c.orders_sold_out,
    ),
    (
        "degraded_reads_total",
        "Catalog reads served from a cached copy while the shop was shedding orders.",
        |c| &c.degraded_reads,
    ),
];

/// Every gauge read from the store's stats: its name, help text and reader.
type GaugeRow = (&'static str, &'static str, fn(&ShopStats) -> u64);

/// The gauges read from the store's stats, in the order `/metrics` lists them.
const GAUGES: &[GaugeRow] = &[
    ("queue_depth", "Live jobs (ready or leased).", |s| {
        s.jobs_live
    }),
    ("dead_letters", "Jobs in the dead-letter list.", |s| {
        s.dead_letters
    }),
    (
        "webhooks_parked",
        "Webhook events waiting for their order.",
        |s| s.webhooks_parked,
    ),
    ("idempotency_records", "Idempotency records held.", |s| {
        s.idempotency_records
    }),
];

/// The name of the gauge whose `design` label names the shop's design
/// ([`crate::Design::label`]); `stampede load --host` reads it for its report.
pub const DESIGN_INFO: &str = "stampede_design_info";

/// Renders the metrics text; `design` is the shop's design label.
pub fn render(
    counters: &Counters,
    stats: &ShopStats,
    audit: Option<&AuditSnapshot>,
    design: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {DESIGN_INFO} The design variant this shop runs, in its label.\n# TYPE {DESIGN_INFO} gauge\n{DESIGN_INFO}{{design=\"{}\"}} 1",
        label_value(design)
    );
    for (name, help, value) in COUNTERS {
        let _ = writeln!(
            out,
            "# HELP stampede_{name} {help}\n# TYPE stampede_{name} counter"
        );
        let _ = writeln!(
            out,
            "stampede_{name} {}",
            value(counters).load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP stampede_orders Orders by status.\n# TYPE stampede_orders gauge"
    );
    for (status, n) in &stats.orders_by_status {
        let _ = writeln!(out, "stampede_orders{{status=\"{status}\"}} {n}");
    }
    for (name, help, value) in GAUGES {
        let value = value(stats);
        let _ = writeln!(
            out,
            "# HELP stampede_{name} {help}\n# TYPE stampede_{name} gauge\nstampede_{name} {value}"
        );
    }
    render_stock(&mut out, stats);
    if let Some(audit) = audit {
        render_time_in_state(&mut out, audit);
    }
    out
}

/// `text` as a Prometheus label value: backslash, quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The design a shop's metrics text names, if it names one.
pub fn design_of(metrics: &str) -> Option<String> {
    let rest = metrics
        .lines()
        .find_map(|line| line.strip_prefix(DESIGN_INFO)?.strip_prefix("{design=\""))?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn render_stock(out: &mut String, stats: &ShopStats) {
    let _ = writeln!(
        out,
        "# HELP stampede_stock Stock counters by SKU.\n# TYPE stampede_stock gauge"
    );
    for (sku, level) in &stats.stock {
        for (kind, v) in [
            ("available", level.available),
            ("reserved", level.reserved),
            ("sold", level.sold),
            ("received", level.received),
        ] {
            let _ = writeln!(out, "stampede_stock{{sku=\"{sku}\",kind=\"{kind}\"}} {v}");
        }
    }
}

fn render_time_in_state(out: &mut String, audit: &AuditSnapshot) {
    use std::collections::BTreeMap;
    // status -> (bucket counts, sum, count)
    let mut hist: BTreeMap<&'static str, ([u64; TIME_IN_STATE_BUCKETS_MS.len()], u64, u64)> =
        BTreeMap::new();
    for order in &audit.orders {
        let mut since = order.created_at;
        for t in order.transitions() {
            let ms = t.at.since(since);
            let entry = hist.entry(t.from.as_str()).or_default();
            for (i, bound) in TIME_IN_STATE_BUCKETS_MS.iter().enumerate() {
                if ms <= *bound {
                    entry.0[i] += 1;
                }
            }
            entry.1 += ms;
            entry.2 += 1;
            since = t.at;
        }
    }
    let _ = writeln!(
        out,
        "# HELP stampede_time_in_state_ms Time orders spent in a status before leaving it.\n# TYPE stampede_time_in_state_ms histogram"
    );
    for (status, (buckets, sum, count)) in hist {
        for (i, bound) in TIME_IN_STATE_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "stampede_time_in_state_ms_bucket{{status=\"{status}\",le=\"{bound}\"}} {}",
                buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "stampede_time_in_state_ms_bucket{{status=\"{status}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "stampede_time_in_state_ms_sum{{status=\"{status}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "stampede_time_in_state_ms_count{{status=\"{status}\"}} {count}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_and_gauge_is_rendered_once_with_help_type_and_its_own_value() {
        // Proves: each table row reads its own field (distinct values come back where they were
        // put), names are unique, and each metric has HELP and TYPE lines.
        let counters = Counters::default();
        for (n, (_, _, field)) in COUNTERS.iter().enumerate() {
            field(&counters).store(n as u64 + 100, Ordering::Relaxed);
        }
        let stats = ShopStats {
            jobs_live: 1,
            dead_letters: 2,
            webhooks_parked: 3,
            idempotency_records: 4,
            ..ShopStats::default()
        };
        let text = render(&counters, &stats, None, "reference");
        let names: Vec<&str> = COUNTERS
            .iter()
            .map(|row| row.0)
            .chain(GAUGES.iter().map(|row| row.0))
            .collect();
        let unique: std::collections::BTreeSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let rows = COUNTERS
            .iter()
            .enumerate()
            .map(|(n, r)| (r.0, "counter", n as u64 + 100));
        let gauges = GAUGES.iter().zip(1..).map(|(r, v)| (r.0, "gauge", v));
        for (name, kind, value) in rows.chain(gauges) {
            assert!(text.contains(&format!("# HELP stampede_{name} ")), "{name}");
            assert!(
                text.contains(&format!("# TYPE stampede_{name} {kind}\n")),
                "{name}"
            );
            assert!(
                text.contains(&format!("\nstampede_{name} {value}\n")),
                "{name}"
            );
        }
    }

    #[test]
    fn the_design_label_is_rendered_and_read_back_whatever_it_holds() {
        // Proves: the design gauge is there with HELP and TYPE, and what render writes
        // design_of reads back exactly, quotes, backslashes and newlines included; text
        // without the gauge (an older shop) names no design.
        for design in ["reference", "reference+webhook_dedup=off", "a\"b\\c\nd"] {
            let text = render(&Counters::default(), &ShopStats::default(), None, design);
            assert!(text.contains(&format!("# TYPE {DESIGN_INFO} gauge\n")));
            assert_eq!(design_of(&text).as_deref(), Some(design), "{text}");
        }
        assert_eq!(design_of("stampede_jobs_live 0\n"), None);
        assert_eq!(design_of("stampede_design_info{design=\"cut"), None);
    }
}
