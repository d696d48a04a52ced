//! What a simulated run is about: topology, catalog, shoppers, arrivals,
//! faults and timings. Scenarios are data (TOML files in `scenarios/` map
//! onto [`Scenario`]); [`Scenario::validate`] names the field and what is
//! allowed for anything out of range.

use serde::{Deserialize, Serialize};
use stampede_core::ORDER_TOTAL_MAX;

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (used in reports and repro lines).
    pub name: String,
    /// Host counts.
    #[serde(default)]
    pub topology: Topology,
    /// Products and their stock.
    pub catalog: Vec<ProductSpec>,
    /// Who shops, and how.
    pub shoppers: Shoppers,
    /// Faults injected during the fault window.
    #[serde(default)]
    pub faults: Faults,
    /// Timings.
    #[serde(default)]
    pub timing: Timing,
    /// Admission control limits of the reference design (`design` switch
    /// `admission=off` ignores them).
    #[serde(default)]
    pub admission: AdmissionSpec,
    /// Invariants to judge (names; empty = all).
    #[serde(default)]
    pub invariants: Vec<String>,
    /// Design preset when none is given on the command line.
    #[serde(default = "default_design")]
    pub design: String,
}

fn default_design() -> String {
    "reference".into()
}

/// `[admission]`: the shop's admission limits (see `stampede_core::Admission`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionSpec {
    /// Most orders accepted and not yet decided; one more is shed (429).
    pub max_undecided_orders: u64,
    /// The `Retry-After` a shed buyer is given, ms.
    pub shed_retry_after_ms: u64,
    /// Most orders per customer per `customer_window_ms` (0: no limit).
    pub customer_orders_max: u32,
    /// The rate limit's window, ms.
    pub customer_window_ms: u64,
    /// Refuse orders for a sold-out SKU at once (409 sold-out).
    pub sold_out_fast_path: bool,
}

impl Default for AdmissionSpec {
    fn default() -> AdmissionSpec {
        let a = stampede_core::Admission::default();
        AdmissionSpec {
            max_undecided_orders: a.max_undecided_orders.map_or(0, |n| n as u64),
            shed_retry_after_ms: a.shed_retry_after_ms,
            customer_orders_max: a.customer_orders_max.unwrap_or(0),
            customer_window_ms: a.customer_window_ms,
            sold_out_fast_path: a.sold_out_fast_path,
        }
    }
}

impl AdmissionSpec {
    /// The core's limits.
    pub fn limits(&self) -> stampede_core::Admission {
        stampede_core::Admission {
            max_undecided_orders: usize::try_from(self.max_undecided_orders).ok(),
            shed_retry_after_ms: self.shed_retry_after_ms,
            customer_orders_max: (self.customer_orders_max > 0).then_some(self.customer_orders_max),
            customer_window_ms: self.customer_window_ms,
            sold_out_fast_path: self.sold_out_fast_path,
        }
    }
}

/// Host counts; a field a file leaves out takes its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topology {
    /// API hosts (`api-1..k`).
    pub api_hosts: u32,
    /// Worker hosts (`worker-1..m`).
    pub worker_hosts: u32,
    /// Job worker tasks per worker host.
    pub workers_per_host: u32,
    /// Client hosts the shoppers run on.
    pub shopper_hosts: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            api_hosts: 2,
            worker_hosts: 2,
            workers_per_host: 2,
            shopper_hosts: 4,
        }
    }
}

/// A product and its stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    /// SKU.
    pub sku: String,
    /// Unit price in cents.
    pub price_cents: u64,
    /// Initial stock.
    pub stock: u64,
    /// Most units per order line.
    #[serde(default = "default_max_qty")]
    pub max_qty_per_order: u32,
    /// Per-customer limit across live orders.
    #[serde(default)]
    pub per_customer_limit: Option<u32>,
    /// Weight when shoppers pick what to buy.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_max_qty() -> u32 {
    5
}

fn default_weight() -> u32 {
    1
}

/// The shopper population.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shoppers {
    /// How many shoppers.
    pub count: u32,
    /// When they arrive.
    pub arrival: Arrival,
    /// Most units a shopper asks for per line.
    #[serde(default = "one", rename = "max_qty")]
    pub qty_max: u32,
    /// Most lines per order (at most [`LINES_PER_ORDER_MAX`]).
    #[serde(default = "one", rename = "max_lines")]
    pub lines_max: u32,
    /// Probability a shopper double-clicks "place order" (two concurrent identical requests).
    #[serde(default)]
    pub double_click: f64,
    /// Probability a shopper retries with the same key after a timeout or 5xx.
    #[serde(default = "default_retry")]
    pub retry_on_timeout: f64,
    /// Probability a shopper abandons before paying.
    #[serde(default)]
    pub abandon: f64,
    /// Probability a shopper cancels instead of paying.
    #[serde(default)]
    pub cancel: f64,
    /// Probability the card is declined.
    #[serde(default)]
    pub decline: f64,
    /// Probability a shopper double-clicks "pay".
    #[serde(default)]
    pub double_pay: f64,
    /// Probability a shopper's app sends its own unit price (1 cent) with each line.
    #[serde(default)]
    pub tamper_price: f64,
    /// Probability a shopper, unsure the payment went through, pays again
    /// from scratch with a new Idempotency-Key (an app that lost its state).
    #[serde(default)]
    pub impatient: f64,
    /// Probability a shopper checks out with a saved card (express checkout:
    /// the PSP charges when the shop creates the intent; no `/pay`).
    #[serde(default)]
    pub express: f64,
    /// Think time before paying, ms (drawn uniformly from 0..=this).
    #[serde(default = "default_pay_delay")]
    pub pay_delay_ms_max: u64,
    /// Probability a paying shopper pays late: it starts payment (`/pay`) at
    /// once but confirms at the PSP only after thinking longer than the hold
    /// (`timing.reservation_ttl_ms`, plus [`stampede_core::PAY_FLOW_ALLOWANCE_MS`],
    /// plus up to `pay_delay_ms_max`), so the shop may have expired the order
    /// by then. Late by its own plan: the progress invariants do not judge it.
    #[serde(default)]
    pub late_pay: f64,
    /// How shoppers follow their order: `"sse"` (the events stream, the
    /// default) or `"poll"` (`GET /v1/orders/{id}` every
    /// [`crate::shopper::POLL_MS`]).
    #[serde(default)]
    pub follow: Follow,
}

/// How a shopper follows its order's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Follow {
    /// Reads `GET /v1/orders/{id}/events` (server-sent events), reconnecting
    /// with a bounded backoff when the stream ends early.
    #[default]
    Sse,
    /// Polls `GET /v1/orders/{id}`.
    Poll,
}

impl Follow {
    /// The default (kept out of serialized plans, so their hashes stay as they were).
    pub fn is_sse(&self) -> bool {
        *self == Follow::Sse
    }
}

fn one() -> u32 {
    1
}

fn default_retry() -> f64 {
    1.0
}

fn default_pay_delay() -> u64 {
    500
}

/// Arrival shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "shape", deny_unknown_fields)]
pub enum Arrival {
    /// Evenly spaced over `over_ms`.
    Constant {
        /// Span, ms.
        over_ms: u64,
    },
    /// Poisson process with `per_sec` mean rate.
    Poisson {
        /// Mean arrivals per second.
        per_sec: f64,
    },
    /// Rate rising linearly over `over_ms` (density grows with time).
    Ramp {
        /// Span, ms.
        over_ms: u64,
    },
    /// Everyone within `window_ms` starting at `at_ms` (a flash sale).
    Burst {
        /// Start, ms.
        at_ms: u64,
        /// Window, ms.
        window_ms: u64,
    },
}

/// Faults injected between `window_start_ms` and `window_end_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Fault window start, ms.
    #[serde(default)]
    pub window_start_ms: u64,
    /// Fault window end, ms (after it, faults stop and the world settles).
    #[serde(default)]
    pub window_end_ms: u64,
    /// Crashes of API hosts.
    #[serde(default)]
    pub api_crashes: CrashSpec,
    /// Crashes of worker hosts.
    #[serde(default)]
    pub worker_crashes: CrashSpec,
    /// Crashes of the store host.
    #[serde(default)]
    pub db_crashes: CrashSpec,
    /// Network partitions between host groups.
    #[serde(default)]
    pub partitions: Vec<PartitionSpec>,
    /// Webhook delivery faults at the PSP.
    #[serde(default)]
    pub webhooks: WebhookFaults,
    /// PSP brownouts: the PSP keeps charging but holds its answers back.
    #[serde(default)]
    pub psp_stalls: StallSpec,
    /// Unsigned `payment_intent.succeeded` webhooks an attacker posts for guessed order ids.
    #[serde(default)]
    pub forged_webhooks: u32,
    /// Whether a store crash loses the writes its log had not synced yet
    /// (see `db.rs`: a reference store answers only synced writes, so what
    /// it loses no one was told; `commit=ack-first` answers at once). Off:
    /// every write is synced as it is applied and a crash loses nothing.
    #[serde(default)]
    pub lose_unsynced_tail: bool,
    /// How often the store syncs its log when `lose_unsynced_tail` is set,
    /// ms (group commit: everything written since the last sync at once).
    #[serde(default = "default_sync")]
    pub sync_interval_ms: u64,
    /// The scenario accepts that its crashes, partitions and PSP stalls cost
    /// sales: each is recorded as a `SalesAtRisk` window from its start to its
    /// heal plus [`Timing::recovery_margin_ms`], and a willing buyer whose
    /// journey overlaps one and is not served counts as lost to the fault,
    /// not as a violation.
    #[serde(default)]
    pub may_cost_sales: bool,
}

/// A couple of milliseconds, like a database's group commit on a fast disk:
/// replies of the reference store wait at most this long for their sync
/// (5 ms tripled the median answer time of the 400-shopper `db-crash`
/// burst; 2 ms adds about half).
fn default_sync() -> u64 {
    2
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            window_start_ms: 0,
            window_end_ms: 0,
            api_crashes: CrashSpec::default(),
            worker_crashes: CrashSpec::default(),
            db_crashes: CrashSpec::default(),
            partitions: Vec::new(),
            webhooks: WebhookFaults::default(),
            psp_stalls: StallSpec::default(),
            forged_webhooks: 0,
            lose_unsynced_tail: false,
            sync_interval_ms: default_sync(),
            may_cost_sales: false,
        }
    }
}

/// How many crashes and how long hosts stay down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashSpec {
    /// Number of crashes.
    pub count: u32,
    /// Down time before restart, ms.
    #[serde(default)]
    pub down_ms: u64,
}

/// How many PSP stalls and how long each holds answers back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StallSpec {
    /// Number of stalls.
    pub count: u32,
    /// How long each lasts, ms.
    #[serde(default)]
    pub duration_ms: u64,
}

/// Partitions between two groups of hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// One side: `api`, `worker`, `db`, `psp` or `shopper` (a random host of that group).
    pub a: String,
    /// The other side.
    pub b: String,
    /// How many partitions.
    #[serde(default = "one")]
    pub count: u32,
    /// How long each lasts, ms.
    pub duration_ms: u64,
}

/// Webhook delivery faults; a field a file leaves out takes its default.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookFaults {
    /// Probability an event is delivered more than once.
    pub duplicate_probability: f64,
    /// Most extra copies (`max_extra_copies` in files).
    #[serde(rename = "max_extra_copies")]
    pub extra_copies_max: u32,
    /// Fewest extra copies when an event is duplicated (`min_extra_copies` in files).
    #[serde(default = "one", rename = "min_extra_copies")]
    pub extra_copies_min: u32,
    /// Largest delivery delay, ms (delays reorder events).
    pub delay_ms_max: u64,
}

impl Default for WebhookFaults {
    fn default() -> Self {
        WebhookFaults {
            duplicate_probability: 0.0,
            extra_copies_max: 1,
            extra_copies_min: 1,
            delay_ms_max: 50,
        }
    }
}

/// Timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Time after the fault window (and the last arrival) for the world to settle, ms.
    pub settle_ms: u64,
    /// Reservation TTL, ms.
    pub reservation_ttl_ms: u64,
    /// Client request timeout, ms.
    pub client_timeout_ms: u64,
    /// Shop → PSP and shop → store request timeout, ms.
    pub backend_timeout_ms: u64,
    /// Job lease visibility timeout, ms.
    pub job_visibility_ms: u64,
    /// Largest one-way network latency, ms (`max_latency_ms` in files).
    #[serde(rename = "max_latency_ms")]
    pub latency_ms_max: u64,
    /// The promise that a willing buyer is offered payment (its order shown
    /// payment-pending, or `/pay` answered) within this long of the order's
    /// acknowledgement, ms (`timely_decisions`).
    #[serde(default = "default_offer_payment_within")]
    pub offer_payment_within_ms: u64,
    /// The promise that every charge is decided (the order confirmed, or the
    /// money refunded) within this long of the charge, ms (`timely_decisions`).
    #[serde(default = "default_decide_within")]
    pub decide_within_ms: u64,
}

fn default_offer_payment_within() -> u64 {
    10_000
}

fn default_decide_within() -> u64 {
    30_000
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            settle_ms: 20_000,
            reservation_ttl_ms: 5_000,
            client_timeout_ms: 2_000,
            backend_timeout_ms: 1_000,
            job_visibility_ms: 2_000,
            latency_ms_max: 5,
            offer_payment_within_ms: default_offer_payment_within(),
            decide_within_ms: default_decide_within(),
        }
    }
}

impl Timing {
    /// How long after a fault heals the world may still be recovering from
    /// it, ms: a request sent into the fault gives up only after the client
    /// timeout, and a job leased by a host that died (or whose answer was
    /// lost) is handed out again only after its lease (job visibility)
    /// lapses. A `SalesAtRisk` window ends this long after its fault heals.
    pub fn recovery_margin_ms(&self) -> u64 {
        self.client_timeout_ms + self.job_visibility_ms
    }
}

/// A scenario value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ScenarioError {
    /// Dotted path of the field, e.g. `shoppers.double_click`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

fn err(field: &str, problem: impl Into<String>) -> ScenarioError {
    ScenarioError {
        field: field.to_string(),
        problem: problem.into(),
    }
}

fn probability(field: &str, p: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(err(
            field,
            format!("{p} is not a probability; use a number from 0.0 to 1.0"),
        ))
    }
}

fn range(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), ScenarioError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(err(
            field,
            format!("{v} is out of range; allowed {lo}..={hi}"),
        ))
    }
}

/// Most lines one order may have (`shoppers.max_lines`, and each shopper of a
/// plan file): the shop's own bound, so no plan asks for an order it must refuse.
pub use stampede_core::LINES_PER_ORDER_MAX;

/// Host groups a partition may name.
pub const HOST_GROUPS: [&str; 5] = ["api", "worker", "db", "psp", "shopper"];

impl Scenario {
    /// Checks every value; the first problem found is returned with its field path.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        validate_name(&self.name)?;
        validate_topology(&self.topology)?;
        validate_catalog(&self.catalog)?;
        validate_shoppers(&self.shoppers)?;
        validate_order_total(&self.catalog, &self.shoppers)?;
        let per_host = self
            .shoppers
            .count
            .div_ceil(self.topology.shopper_hosts.max(1));
        if per_host > SHOPPERS_PER_HOST_MAX {
            return Err(err(
                "shoppers.count",
                format!(
                    "{} shoppers on {} shopper host(s) is {per_host} a host; at most {SHOPPERS_PER_HOST_MAX} (each keeps a connection, and a host has 16,384 ports): raise topology.shopper_hosts",
                    self.shoppers.count, self.topology.shopper_hosts
                ),
            ));
        }
        validate_faults(&self.faults)?;
        self.validate_partition_hosts()?;
        validate_timing(&self.timing)?;
        validate_admission(&self.admission)?;
        validate_invariants(&self.invariants)?;
        stampede_server::Design::preset(&self.design).map_err(|e| err("design", e.to_string()))?;
        Ok(())
    }
}

impl Scenario {
    /// A partition between a group and itself cuts two of its hosts apart,
    /// so the group needs two (a partition of a host from itself is none).
    fn validate_partition_hosts(&self) -> Result<(), ScenarioError> {
        let hosts = crate::plan::Hosts::of(self);
        for (i, p) in self.faults.partitions.iter().enumerate() {
            if p.count > 0 && p.a == p.b && hosts.group(&p.a).len() < 2 {
                return Err(err(
                    &format!("faults.partitions[{i}].b"),
                    format!(
                        "{:?} partitioned from itself needs two {0} hosts; the topology has one",
                        p.b
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Most shoppers one client host runs: each keeps a connection to the shop
/// open, and turmoil gives a host 16,384 ephemeral ports.
pub const SHOPPERS_PER_HOST_MAX: u32 = 8_000;

/// Most shoppers a scenario has (about 50 KiB of simulated connections each
/// at once, so some 5 GiB at most).
pub const SHOPPERS_MAX: u64 = 100_000;

/// Longest the arrivals of a scenario may take, ms (an hour).
pub const ARRIVALS_MS_MAX: u64 = 3_600_000;

/// The scenario's name names its output folders: 1 to 64 letters, digits,
/// `_`, `-` and `.`, not starting with `.` (so never `..`, a path, or a
/// hidden folder).
fn validate_name(name: &str) -> Result<(), ScenarioError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) || name.starts_with('.') {
        return Err(err(
            "name",
            format!(
                "{name:?}: must be 1 to 64 letters, digits, '_', '-' or '.', not starting with '.' (it names the output folders)"
            ),
        ));
    }
    Ok(())
}

fn validate_topology(t: &Topology) -> Result<(), ScenarioError> {
    range("topology.api_hosts", t.api_hosts.into(), 1, 16)?;
    range("topology.worker_hosts", t.worker_hosts.into(), 1, 16)?;
    range(
        "topology.workers_per_host",
        t.workers_per_host.into(),
        1,
        64,
    )?;
    range("topology.shopper_hosts", t.shopper_hosts.into(), 1, 64)
}

/// Most products a scenario's catalog holds.
pub const CATALOG_MAX: usize = 1_000;

/// Most `[[faults.partitions]]` tables a scenario has.
pub const PARTITION_TABLES_MAX: usize = 100;
/// Most faults of one kind a scenario draws: crashes of each group, PSP
/// stalls, and the partitions of each `[[faults.partitions]]` table.
pub const FAULT_COUNT_MAX: u32 = 100;
/// Most forged webhooks a scenario asks for.
pub const FORGED_WEBHOOKS_MAX: u32 = 10_000;
/// Longest a crash, stall or partition lasts, ms.
pub const FAULT_LENGTH_MS_MAX: u64 = 600_000;
/// Longest think time before paying, ms.
pub const PAY_DELAY_MS_MAX: u64 = 600_000;
/// Longest hold a scenario promises, ms.
pub const RESERVATION_TTL_MS_MAX: u64 = 3_600_000;

fn validate_catalog(catalog: &[ProductSpec]) -> Result<(), ScenarioError> {
    if catalog.is_empty() {
        return Err(err("catalog", "needs at least one product"));
    }
    if catalog.len() > CATALOG_MAX {
        return Err(err(
            "catalog",
            format!("{} products; at most {CATALOG_MAX}", catalog.len()),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in catalog.iter().enumerate() {
        let f = |name: &str| format!("catalog[{i}].{name}");
        stampede_core::Sku::new(p.sku.clone()).map_err(|e| err(&f("sku"), e.to_string()))?;
        range(&f("price_cents"), p.price_cents, 1, ORDER_TOTAL_MAX.0)?;
        range(&f("stock"), p.stock, 0, 1_000_000_000)?;
        range(&f("max_qty_per_order"), p.max_qty_per_order.into(), 1, 100)?;
        range(&f("weight"), p.weight.into(), 1, 1_000_000)?;
        if !seen.insert(&p.sku) {
            return Err(err(&f("sku"), format!("{} appears twice", p.sku)));
        }
    }
    Ok(())
}

/// A shopper's dearest possible order — the dearest lines a shopper may draw,
/// each at the most units it may ask for — must be one the shop takes: an
/// order above [`ORDER_TOTAL_MAX`] is refused (no payment could cover it), so a
/// scenario that can draw one would judge the shop on buyers it must turn away.
fn validate_order_total(catalog: &[ProductSpec], s: &Shoppers) -> Result<(), ScenarioError> {
    let mut lines: Vec<(u64, usize)> = catalog
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let units = s.qty_max.min(p.max_qty_per_order).max(1);
            (p.price_cents.saturating_mul(u64::from(units)), i)
        })
        .collect();
    lines.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let drawn = lines
        .iter()
        .take(s.lines_max as usize)
        .fold(0u64, |sum, (line, _)| sum.saturating_add(*line));
    if drawn <= ORDER_TOTAL_MAX.0 {
        return Ok(());
    }
    let dearest = lines.first().map_or(0, |(_, i)| *i);
    Err(err(
        &format!("catalog[{dearest}].price_cents"),
        format!(
            "a shopper may order up to {} cents (its {} dearest line(s) at the most units it may ask for); one order may total at most {} cents: lower the prices, max_qty_per_order, shoppers.max_qty or shoppers.max_lines",
            drawn,
            s.lines_max.min(catalog.len() as u32),
            ORDER_TOTAL_MAX.0
        ),
    ))
}

fn validate_shoppers(s: &Shoppers) -> Result<(), ScenarioError> {
    range("shoppers.count", s.count.into(), 1, SHOPPERS_MAX)?;
    range("shoppers.max_qty", s.qty_max.into(), 1, 100)?;
    range(
        "shoppers.max_lines",
        s.lines_max.into(),
        1,
        LINES_PER_ORDER_MAX as u64,
    )?;
    for (name, p) in [
        ("shoppers.double_click", s.double_click),
        ("shoppers.retry_on_timeout", s.retry_on_timeout),
        ("shoppers.abandon", s.abandon),
        ("shoppers.cancel", s.cancel),
        ("shoppers.decline", s.decline),
        ("shoppers.double_pay", s.double_pay),
        ("shoppers.tamper_price", s.tamper_price),
        ("shoppers.impatient", s.impatient),
        ("shoppers.express", s.express),
        ("shoppers.late_pay", s.late_pay),
    ] {
        probability(name, p)?;
    }
    range(
        "shoppers.pay_delay_ms_max",
        s.pay_delay_ms_max,
        0,
        PAY_DELAY_MS_MAX,
    )?;
    validate_arrival(&s.arrival)?;
    if let Arrival::Poisson { per_sec } = s.arrival {
        // The last of n arrivals comes after n gaps of mean 1/rate, spread
        // sqrt(n)/rate: the span allowed is the mean plus six of those, so
        // the hour a plan holds arrivals to (`Plan::generate` keeps a later
        // one at the hour) is all but never reached.
        let gaps = f64::from(s.count) + 6.0 * f64::from(s.count).sqrt();
        let span_ms = gaps / per_sec * 1_000.0;
        if span_ms > ARRIVALS_MS_MAX as f64 {
            return Err(err(
                "shoppers.arrival.per_sec",
                format!(
                    "{per_sec}/s brings {} shoppers in about {:.0} s (with the tail of the draw); at most {} s (a rate of at least {:.4}/s)",
                    s.count,
                    span_ms / 1_000.0,
                    ARRIVALS_MS_MAX / 1_000,
                    gaps * 1_000.0 / ARRIVALS_MS_MAX as f64
                ),
            ));
        }
    }
    Ok(())
}

fn validate_arrival(arrival: &Arrival) -> Result<(), ScenarioError> {
    match *arrival {
        Arrival::Constant { over_ms } | Arrival::Ramp { over_ms } => {
            range("shoppers.arrival.over_ms", over_ms, 1, ARRIVALS_MS_MAX)?
        }
        Arrival::Poisson { per_sec } => {
            if !(per_sec > 0.0 && per_sec <= 1_000_000.0) {
                return Err(err(
                    "shoppers.arrival.per_sec",
                    format!("{per_sec} must be in (0, 1000000]"),
                ));
            }
        }
        Arrival::Burst { at_ms, window_ms } => {
            range("shoppers.arrival.at_ms", at_ms, 0, ARRIVALS_MS_MAX)?;
            range("shoppers.arrival.window_ms", window_ms, 1, ARRIVALS_MS_MAX)?;
            // The last arrival is at `at_ms + window_ms - 1`.
            if at_ms + window_ms > ARRIVALS_MS_MAX + 1 {
                return Err(err(
                    "shoppers.arrival.window_ms",
                    format!(
                        "{window_ms} after at_ms {at_ms} brings the last shopper at {} ms; every arrival must be within the first hour (at most {ARRIVALS_MS_MAX} ms)",
                        at_ms + window_ms - 1
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The fault window, crashes and stalls, then partitions, webhooks, the log and forgeries.
fn validate_faults(fl: &Faults) -> Result<(), ScenarioError> {
    if fl.window_end_ms < fl.window_start_ms {
        return Err(err(
            "faults.window_end_ms",
            "must not be before faults.window_start_ms",
        ));
    }
    range("faults.window_end_ms", fl.window_end_ms, 0, 3_600_000)?;
    for (name, c) in [
        ("faults.api_crashes", fl.api_crashes),
        ("faults.worker_crashes", fl.worker_crashes),
        ("faults.db_crashes", fl.db_crashes),
    ] {
        range(
            &format!("{name}.count"),
            c.count.into(),
            0,
            FAULT_COUNT_MAX.into(),
        )?;
        range(
            &format!("{name}.down_ms"),
            c.down_ms,
            0,
            FAULT_LENGTH_MS_MAX,
        )?;
    }
    range(
        "faults.psp_stalls.count",
        fl.psp_stalls.count.into(),
        0,
        FAULT_COUNT_MAX.into(),
    )?;
    range(
        "faults.psp_stalls.duration_ms",
        fl.psp_stalls.duration_ms,
        0,
        FAULT_LENGTH_MS_MAX,
    )?;
    validate_partitions(&fl.partitions)?;
    validate_webhook_faults(&fl.webhooks)?;
    range("faults.sync_interval_ms", fl.sync_interval_ms, 1, 600_000)?;
    range(
        "faults.forged_webhooks",
        fl.forged_webhooks.into(),
        0,
        FORGED_WEBHOOKS_MAX.into(),
    )
}

fn validate_partitions(partitions: &[PartitionSpec]) -> Result<(), ScenarioError> {
    if partitions.len() > PARTITION_TABLES_MAX {
        return Err(err(
            "faults.partitions",
            format!(
                "{} tables; at most {PARTITION_TABLES_MAX}",
                partitions.len()
            ),
        ));
    }
    for (i, p) in partitions.iter().enumerate() {
        for (side, group) in [("a", &p.a), ("b", &p.b)] {
            if !HOST_GROUPS.contains(&group.as_str()) {
                return Err(err(
                    &format!("faults.partitions[{i}].{side}"),
                    format!("{group:?} is not one of {HOST_GROUPS:?}"),
                ));
            }
        }
        range(
            &format!("faults.partitions[{i}].count"),
            p.count.into(),
            0,
            FAULT_COUNT_MAX.into(),
        )?;
        range(
            &format!("faults.partitions[{i}].duration_ms"),
            p.duration_ms,
            1,
            FAULT_LENGTH_MS_MAX,
        )?;
    }
    Ok(())
}

fn validate_webhook_faults(w: &WebhookFaults) -> Result<(), ScenarioError> {
    probability(
        "faults.webhooks.duplicate_probability",
        w.duplicate_probability,
    )?;
    range(
        "faults.webhooks.max_extra_copies",
        w.extra_copies_max.into(),
        0,
        10,
    )?;
    if w.extra_copies_min > w.extra_copies_max.max(1) {
        return Err(err(
            "faults.webhooks.min_extra_copies",
            "must not exceed max_extra_copies",
        ));
    }
    range("faults.webhooks.delay_ms_max", w.delay_ms_max, 0, 600_000)
}

fn validate_timing(tm: &Timing) -> Result<(), ScenarioError> {
    range("timing.settle_ms", tm.settle_ms, 0, 3_600_000)?;
    range(
        "timing.reservation_ttl_ms",
        tm.reservation_ttl_ms,
        1,
        RESERVATION_TTL_MS_MAX,
    )?;
    range("timing.client_timeout_ms", tm.client_timeout_ms, 1, 600_000)?;
    range(
        "timing.backend_timeout_ms",
        tm.backend_timeout_ms,
        1,
        600_000,
    )?;
    range("timing.job_visibility_ms", tm.job_visibility_ms, 1, 600_000)?;
    range("timing.max_latency_ms", tm.latency_ms_max, 0, 10_000)?;
    range(
        "timing.offer_payment_within_ms",
        tm.offer_payment_within_ms,
        1,
        3_600_000,
    )?;
    range("timing.decide_within_ms", tm.decide_within_ms, 1, 3_600_000)
}

fn validate_admission(ad: &AdmissionSpec) -> Result<(), ScenarioError> {
    range(
        "admission.max_undecided_orders",
        ad.max_undecided_orders,
        1,
        10_000_000,
    )?;
    range(
        "admission.shed_retry_after_ms",
        ad.shed_retry_after_ms,
        1,
        600_000,
    )?;
    range(
        "admission.customer_orders_max",
        ad.customer_orders_max.into(),
        0,
        1_000_000,
    )?;
    range(
        "admission.customer_window_ms",
        ad.customer_window_ms,
        1,
        86_400_000,
    )
}

/// Every name in the scenario's `invariants` list must be an invariant's.
fn validate_invariants(names: &[String]) -> Result<(), ScenarioError> {
    for (i, name) in names.iter().enumerate() {
        if stampede_core::Invariant::parse(name).is_none() {
            let all: Vec<_> = stampede_core::Invariant::ALL
                .iter()
                .map(|i| i.name())
                .collect();
            return Err(err(
                &format!("invariants[{i}]"),
                format!("{name:?} is not one of {}", all.join(", ")),
            ));
        }
    }
    Ok(())
}

/// A scenario file that could not be used: where, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {field}: {message}", at_line(*.line))]
pub struct ScenarioFileError {
    /// The file.
    pub file: String,
    /// 1-based line (the best match for the field when the parser gave no position).
    pub line: usize,
    /// Dotted field path (`(file)` for problems with the file as a whole).
    pub field: String,
    /// What is wrong and what is allowed, on one line.
    pub message: String,
}

/// `:N` for line N; nothing for the file as a whole (line 0).
fn at_line(line: usize) -> String {
    match line {
        0 => String::new(),
        n => format!(":{n}"),
    }
}

/// Largest scenario file read, bytes: the biggest shipped one is a few KiB.
pub const SCENARIO_BYTES_MAX: u64 = 1 << 20;

pub use stampede_server::files::read_text_bounded;

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The line where a dotted field path is set, or the best enclosing table header.
fn line_of_field(text: &str, field: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0usize;
    let mut table = String::new();
    let parts: Vec<&str> = field.split('.').collect();
    for (depth, part) in parts.iter().enumerate() {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let last = depth + 1 == parts.len();
        table = if table.is_empty() {
            name.to_string()
        } else {
            format!("{table}.{name}")
        };
        let header = |l: &&str| {
            let t = l.trim();
            t == format!("[{table}]") || t == format!("[[{table}]]")
        };
        let key = |l: &&str| {
            let t = l.trim_start();
            t.strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        };
        let found = match index {
            // An array of tables (`[[name]]`): the n-th header; an inline array: its key's line.
            Some(n) => lines
                .iter()
                .enumerate()
                .skip(start)
                .filter(|(_, l)| header(l))
                .nth(n)
                .or_else(|| lines.iter().enumerate().skip(start).find(|(_, l)| key(l)))
                .map(|(i, _)| i),
            None if last => lines
                .iter()
                .enumerate()
                .skip(start)
                .find(|(_, l)| key(l) || header(l))
                .map(|(i, _)| i),
            None => lines
                .iter()
                .enumerate()
                .skip(start)
                .find(|(_, l)| header(l) || key(l))
                .map(|(i, _)| i),
        };
        // A table only named through a deeper header (`[[faults.partitions]]` with no
        // `[faults]`) is not found on its own: keep descending from where we are.
        if let Some(i) = found {
            start = i;
        }
    }
    start + 1
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Scenario {
    /// Parses and validates a scenario from TOML text; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Scenario, ScenarioFileError> {
        let fail = |line: usize, field: String, message: String| ScenarioFileError {
            file: file.to_string(),
            line,
            field,
            message: one_line(&message),
        };
        let deserializer = toml::de::Deserializer::parse(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of_offset(text, s.start));
            fail(
                line,
                "(file)".into(),
                format!("not valid TOML: {}", e.message()),
            )
        })?;
        let scenario: Scenario = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "(top level)".to_string()
            } else {
                path
            };
            let inner = e.into_inner();
            let line = inner.span().map_or_else(
                || line_of_field(text, &field),
                |s| line_of_offset(text, s.start),
            );
            fail(line, field, inner.message().to_string())
        })?;
        scenario
            .validate()
            .map_err(|e| fail(line_of_field(text, &e.field), e.field.clone(), e.problem))?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioFileError> {
        let file = path.display().to_string();
        let text =
            read_text_bounded(path, SCENARIO_BYTES_MAX).map_err(|message| ScenarioFileError {
                file: file.clone(),
                line: 0,
                field: "(file)".into(),
                message,
            })?;
        Scenario::from_toml(&file, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "tiny"

[[catalog]]
sku = "hat"
price_cents = 1500
stock = 5

[[catalog]]
sku = "mug"
price_cents = 800
stock = 50

[shoppers]
count = 10
double_click = 0.2

[shoppers.arrival]
shape = "burst"
at_ms = 100
window_ms = 500
"#;

    fn error(text: &str) -> ScenarioFileError {
        Scenario::from_toml("t.toml", text).unwrap_err()
    }

    #[test]
    fn a_partial_topology_or_webhook_table_takes_the_defaults_of_what_it_leaves_out() {
        // Proves: `[topology]` and `[faults.webhooks]` may name only some of their fields (the
        // README calls them optional); the others take their documented defaults.
        let text = format!(
            "{GOOD}\n[topology]\nshopper_hosts = 2\n\n[faults.webhooks]\nduplicate_probability = 0.5\n"
        );
        let s = Scenario::from_toml("t.toml", &text).unwrap();
        assert_eq!(
            s.topology,
            Topology {
                shopper_hosts: 2,
                ..Topology::default()
            }
        );
        assert_eq!(
            s.faults.webhooks,
            WebhookFaults {
                duplicate_probability: 0.5,
                ..WebhookFaults::default()
            }
        );
    }

    #[test]
    fn a_shoppers_dearest_order_must_be_one_the_shop_can_take_payment_for() {
        // Proves (found from outside: a catalog price the schema took but the PSP refused made
        // the reference fail three invariants): the dearest order a shopper may draw — its
        // dearest lines at the most units it may ask for — may total ORDER_TOTAL_MAX and not
        // a cent more, counted over every line it may draw; the error names the dearest
        // product's price and its line.
        let with = |hat: u64, mug: u64, lines: u32| {
            format!(
                "name = \"dear\"\n\n[[catalog]]\nsku = \"hat\"\nprice_cents = {hat}\nmax_qty_per_order = 3\nstock = 5\n\n[[catalog]]\nsku = \"mug\"\nprice_cents = {mug}\nmax_qty_per_order = 1\nstock = 5\n\n[shoppers]\ncount = 10\nmax_qty = 3\nmax_lines = {lines}\n\n[shoppers.arrival]\nshape = \"burst\"\nat_ms = 100\nwindow_ms = 500\n"
            )
        };
        let at = ORDER_TOTAL_MAX.0;
        // 3 hats at 33,333,332 and a mug at 3: exactly the most.
        assert!(Scenario::from_toml("t.toml", &with(at / 3 - 1, 3, 2)).is_ok());
        let e = error(&with(at / 3 - 1, 4, 2));
        assert_eq!(e.field, "catalog[0].price_cents", "{e}");
        assert_eq!(e.line, 5, "{e}");
        assert!(
            e.message.contains(&format!("up to {} cents", at + 1)),
            "{e}"
        );
        // One line at a time: the mug never joins the hat, so the same prices are fine.
        assert!(Scenario::from_toml("t.toml", &with(at / 3 - 1, 4, 1)).is_ok());
        assert_eq!(error(&with(at + 1, 1, 1)).field, "catalog[0].price_cents");
    }

    #[test]
    fn a_name_is_a_plain_folder_name() {
        // Proves: the name, which names output folders, cannot climb out of them, name a
        // path or a hidden folder, or hold a control character; plain names pass.
        for bad in [
            "../evil", "/tmp/abs", "a/b", ".hidden", "..", "a\\nb", "sp ace", "",
        ] {
            let text = GOOD.replace("name = \"tiny\"", &format!("name = {bad:?}"));
            let e = error(&text);
            assert_eq!(e.field, "name", "{bad:?}: {e}");
        }
        for good in ["flash-sale", "a.b_c-1", "x"] {
            let text = GOOD.replace("name = \"tiny\"", &format!("name = {good:?}"));
            assert!(Scenario::from_toml("t.toml", &text).is_ok(), "{good:?}");
        }
        let long = "n".repeat(64);
        let text = GOOD.replace("name = \"tiny\"", &format!("name = {long:?}"));
        assert!(Scenario::from_toml("t.toml", &text).is_ok());
        let text = GOOD.replace("name = \"tiny\"", &format!("name = \"{long}n\""));
        assert_eq!(error(&text).field, "name");
    }

    #[test]
    fn shoppers_per_host_and_the_arrival_span_are_bounded() {
        // Proves: a host runs at most SHOPPERS_PER_HOST_MAX shoppers (more would exhaust its
        // ports mid-run), counted over the topology's shopper hosts, on both sides of the bound;
        // and Poisson arrivals may take at most an hour (a tiny rate never ends), on both sides.
        let with = |count: u32, hosts: u32| {
            let topology = format!(
                "\n[topology]\napi_hosts = 1\nworker_hosts = 1\nworkers_per_host = 1\nshopper_hosts = {hosts}\n"
            );
            format!(
                "{}{topology}",
                GOOD.replace("count = 10", &format!("count = {count}"))
            )
        };
        assert!(Scenario::from_toml("t.toml", &with(8_000, 1)).is_ok());
        assert!(Scenario::from_toml("t.toml", &with(16_000, 2)).is_ok());
        for (count, hosts) in [(8_001, 1), (16_001, 2)] {
            let e = error(&with(count, hosts));
            assert_eq!(e.field, "shoppers.count", "{e}");
            assert!(e.message.contains("shopper_hosts"), "{e}");
        }
        assert_eq!(error(&with(100_001, 64)).field, "shoppers.count");
        let poisson = |rate: &str| {
            GOOD.replace(
                "shape = \"burst\"\nat_ms = 100\nwindow_ms = 500",
                &format!("shape = \"poisson\"\nper_sec = {rate}"),
            )
            .replace("count = 10", "count = 36")
        };
        // 36 shoppers, and six spreads of the draw's tail (6·√36 = 36 more gaps), in an hour
        // is 0.02 a second.
        assert!(Scenario::from_toml("t.toml", &poisson("0.02")).is_ok());
        for rate in ["0.0199", "0.01", "1e-300"] {
            let e = error(&poisson(rate));
            assert_eq!(e.field, "shoppers.arrival.per_sec", "{rate}: {e}");
        }
    }

    #[test]
    fn a_good_file_parses_with_defaults() {
        let s = Scenario::from_toml("t.toml", GOOD).unwrap();
        assert_eq!(s.catalog.len(), 2);
        assert_eq!(
            s.shoppers.arrival,
            Arrival::Burst {
                at_ms: 100,
                window_ms: 500
            }
        );
        assert_eq!(s.topology, Topology::default());
        assert_eq!(s.design, "reference");
        // The promises and the late-payer knob default so that older files keep their meaning.
        assert_eq!(
            (s.timing.offer_payment_within_ms, s.timing.decide_within_ms),
            (10_000, 30_000)
        );
        assert!(!s.faults.may_cost_sales);
        assert_eq!(s.shoppers.late_pay, 0.0);
        assert_eq!(s.shoppers.follow, Follow::Sse);
        let poll = Scenario::from_toml(
            "t.toml",
            &GOOD.replace("double_click = 0.2", "follow = \"poll\""),
        )
        .unwrap();
        assert_eq!(poll.shoppers.follow, Follow::Poll);
    }

    #[test]
    fn catalogs_partition_lists_and_files_are_bounded_on_both_sides() {
        // Proves (found from outside: 5,000 partition tables made a million faults and took a
        // gigabyte; a 100,000-product catalog took 17 s to refuse): at most CATALOG_MAX
        // products and PARTITION_TABLES_MAX partition tables, each refused one past its bound
        // and accepted at it; a file over SCENARIO_BYTES_MAX is refused unread, one at it is
        // read; an unreadable file's error names no line.
        let products = |n: usize| {
            (0..n)
                .map(|i| format!("[[catalog]]\nsku = \"p{i}\"\nprice_cents = 100\nstock = 1\n"))
                .collect::<String>()
        };
        let start = GOOD.find("[[catalog]]").unwrap();
        let end = GOOD.find("[shoppers]").unwrap();
        let with_catalog = |n: usize| format!("{}{}{}", &GOOD[..start], products(n), &GOOD[end..]);
        assert!(Scenario::from_toml("t.toml", &with_catalog(CATALOG_MAX)).is_ok());
        let e = error(&with_catalog(CATALOG_MAX + 1));
        assert_eq!(e.field, "catalog", "{e}");
        assert!(e.message.contains("at most 1000"), "{e}");

        let partition =
            "[[faults.partitions]]\na = \"api\"\nb = \"db\"\ncount = 1\nduration_ms = 100\n";
        let with_partitions = |n: usize| format!("{GOOD}\n{}", partition.repeat(n));
        assert!(Scenario::from_toml("t.toml", &with_partitions(PARTITION_TABLES_MAX)).is_ok());
        let e = error(&with_partitions(PARTITION_TABLES_MAX + 1));
        assert_eq!(e.field, "faults.partitions", "{e}");

        let dir =
            std::env::temp_dir().join(format!("stampede-scenario-bound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = dir.join("at.toml");
        let mut text = GOOD.to_string();
        text.push_str(&"#".repeat(SCENARIO_BYTES_MAX as usize - text.len()));
        std::fs::write(&at, &text).unwrap();
        assert!(Scenario::load(&at).is_ok());
        let over = dir.join("over.toml");
        text.push('#');
        std::fs::write(&over, &text).unwrap();
        let e = Scenario::load(&over).unwrap_err();
        assert!(e.message.contains("larger than"), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: (file): ", over.display())),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_name_the_file_line_field_and_what_is_allowed() {
        let e = error(&GOOD.replace("double_click = 0.2", "double_click = 1.5"));
        assert_eq!(
            (e.line, e.field.as_str()),
            (16, "shoppers.double_click"),
            "{e}"
        );
        assert!(e.message.contains("0.0 to 1.0"), "{e}");

        let e = error(&GOOD.replace("stock = 50", "stock = -3"));
        assert_eq!((e.line, e.field.as_str()), (12, "catalog[1].stock"), "{e}");

        let e = error(&GOOD.replace("count = 10", "count = 10\ncolour = \"red\""));
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("unknown field"), "{e}");

        let e = error(&GOOD.replace("count = 10", "count = \"ten\""));
        assert_eq!((e.line, e.field.as_str()), (15, "shoppers.count"), "{e}");

        let e = error(&GOOD.replace("name = \"tiny\"", ""));
        assert!(e.message.contains("missing field `name`"), "{e}");

        // The new fields' errors name their line too (found by key, counted here).
        let line_of =
            |text: &str, key: &str| text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        let timing = "\n[timing]\nsettle_ms = 1000\nreservation_ttl_ms = 1000\nclient_timeout_ms = 100\nbackend_timeout_ms = 100\njob_visibility_ms = 100\nmax_latency_ms = 1\n";
        let text = format!("{GOOD}{timing}decide_within_ms = 0\n");
        let e = error(&text);
        assert_eq!(
            (e.line, e.field.as_str()),
            (
                line_of(&text, "decide_within_ms"),
                "timing.decide_within_ms"
            ),
            "{e}"
        );
        assert!(e.message.contains("1..=3600000"), "{e}");
        let text = format!("{GOOD}{timing}offer_payment_within_ms = 3600001\n");
        let e = error(&text);
        assert_eq!(
            (e.line, e.field.as_str()),
            (
                line_of(&text, "offer_payment_within_ms"),
                "timing.offer_payment_within_ms"
            ),
            "{e}"
        );
        let e = error(&GOOD.replace("double_click = 0.2", "late_pay = 2.0"));
        assert_eq!((e.line, e.field.as_str()), (16, "shoppers.late_pay"), "{e}");
        let text = format!("{GOOD}\n[faults]\nmay_cost_sales = \"yes\"\n");
        let e = error(&text);
        assert_eq!(
            (e.line, e.field.as_str()),
            (line_of(&text, "may_cost_sales"), "faults.may_cost_sales"),
            "{e}"
        );

        let e = error(&GOOD.replace("double_click = 0.2", "follow = \"carrier-pigeon\""));
        assert_eq!((e.line, e.field.as_str()), (16, "shoppers.follow"), "{e}");
        assert!(
            e.message.contains("`sse`") && e.message.contains("`poll`"),
            "{e}"
        );

        let e = error("name = [");
        assert_eq!(e.field, "(file)", "{e}");
        assert!(
            e.to_string()
                .starts_with("t.toml:1: (file): not valid TOML"),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));
    }
}
