//! `(scenario, design, seed) → Plan`: the whole workload and fault schedule
//! as explicit, serialisable data, drawn from a ChaCha RNG seeded with the
//! run's seed. Executing a plan is deterministic, so a plan file replays a
//! run exactly, and shrinking is editing the plan.
//!
//! Generation is integer arithmetic on the ChaCha stream (see `sample`):
//! no library float function, so a seed draws the same plan on every
//! platform and shards of a sweep run on different machines agree.
//! `rand`'s integer ranges, `usize` ones included, are portable (rand 0.9
//! samples a `usize` range that fits 32 bits as a `u32`). `tests/golden_plans.rs`
//! pins the hashes of a few plans, so a change here is a reviewed one.

use crate::sample::{self, Chance};
use crate::scenario::{
    ARRIVALS_MS_MAX, Arrival, FAULT_COUNT_MAX, FAULT_LENGTH_MS_MAX, FORGED_WEBHOOKS_MAX, Faults,
    Follow, LINES_PER_ORDER_MAX, PARTITION_TABLES_MAX, PAY_DELAY_MS_MAX, RESERVATION_TTL_MS_MAX,
    Scenario, ScenarioError,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stampede_core::ORDER_TOTAL_MAX;
use stampede_server::Design;
use std::collections::BTreeSet;

/// Plan file format version.
pub const PLAN_VERSION: u32 = 1;

/// What a shopper means to do once the order is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "then", deny_unknown_fields)]
pub enum Intent {
    /// Pay after `delay_ms`; the card is declined if `decline`; `double_pay` clicks "pay" twice.
    Pay {
        /// Think time, ms.
        delay_ms: u64,
        /// The card is declined.
        decline: bool,
        /// Two concurrent `/pay` requests with the same key.
        double_pay: bool,
    },
    /// Start payment (`/pay`) at once, then confirm at the PSP only after
    /// `think_ms`, longer than the hold the scenario promises: the shop may
    /// have expired the order by then, and a payment it takes must be refunded.
    PayLate {
        /// Think time between `/pay` and confirming at the PSP, ms.
        think_ms: u64,
        /// The card is declined.
        decline: bool,
    },
    /// Walk away (the reservation should lapse).
    Abandon,
    /// Cancel the order.
    Cancel,
}

/// One shopper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopperPlan {
    /// Shopper number (also names the customer and keys).
    pub id: u32,
    /// Which shopper host runs it (0-based).
    pub host: u32,
    /// Which API host it talks to (0-based).
    pub api: u32,
    /// When it starts, ms.
    pub arrive_ms: u64,
    /// What it orders: (sku, qty).
    pub items: Vec<(String, u32)>,
    /// Sends "place order" twice at once.
    pub double_click: bool,
    /// Retries a timed-out request with the same key.
    pub retry: bool,
    /// Sends a (1 cent) unit price with each line.
    #[serde(default)]
    pub tamper_price: bool,
    /// Pays a second time with a fresh key after paying.
    #[serde(default)]
    pub impatient: bool,
    /// Checks out with a saved card: charged when the intent is created, no `/pay`.
    #[serde(default)]
    pub express: bool,
    /// What it does next.
    pub intent: Intent,
    /// How it follows its order (the scenario's `shoppers.follow`; left out
    /// of the JSON when it is the default, so draw hashes stay as they were).
    #[serde(default, skip_serializing_if = "Follow::is_sse")]
    pub follow: Follow,
}

/// A planned fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fault", deny_unknown_fields)]
pub enum Fault {
    /// The host crashes and restarts after `down_ms`.
    Crash {
        /// Host name, e.g. `db` or `worker-2`.
        host: String,
        /// Down time, ms.
        down_ms: u64,
    },
    /// An attacker posts an unsigned "payment succeeded" webhook for order `ord_{order}`.
    ForgedWebhook {
        /// The guessed order number.
        order: u64,
    },
    /// The PSP keeps working but holds every answer back for `duration_ms`
    /// (charge made, response lost for callers that time out sooner).
    PspStall {
        /// How long, ms.
        duration_ms: u64,
    },
    /// Messages between `a` and `b` are dropped for `duration_ms`.
    Partition {
        /// One host.
        a: String,
        /// The other.
        b: String,
        /// How long, ms.
        duration_ms: u64,
    },
}

impl Fault {
    /// How long the fault lasts, ms (an instant for a forged webhook).
    pub fn length_ms(&self) -> u64 {
        match self {
            Fault::Crash { down_ms, .. } => *down_ms,
            Fault::Partition { duration_ms, .. } | Fault::PspStall { duration_ms } => *duration_ms,
            Fault::ForgedWebhook { .. } => 0,
        }
    }

    /// The fault's length, to edit (none for an instant fault).
    pub fn length_mut(&mut self) -> Option<&mut u64> {
        match self {
            Fault::Crash { down_ms, .. } => Some(down_ms),
            Fault::Partition { duration_ms, .. } | Fault::PspStall { duration_ms } => {
                Some(duration_ms)
            }
            Fault::ForgedWebhook { .. } => None,
        }
    }
}

/// A fault at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultEvent {
    /// When, ms.
    pub at_ms: u64,
    /// What.
    pub fault: Fault,
}

/// Everything a run does, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Format version ([`PLAN_VERSION`]).
    pub version: u32,
    /// The scenario (topology, catalog, timings, webhook faults).
    pub scenario: Scenario,
    /// The design variant.
    pub design: Design,
    /// The seed the plan was drawn from (also seeds turmoil and the PSP).
    pub seed: u64,
    /// Shoppers, by arrival.
    pub shoppers: Vec<ShopperPlan>,
    /// Faults, by time.
    pub faults: Vec<FaultEvent>,
}

impl Plan {
    /// Draws the plan for `(scenario, design, seed)`. The scenario must be valid.
    pub fn generate(scenario: &Scenario, design: Design, seed: u64) -> Plan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shoppers = draw_shoppers(scenario, &mut rng);
        let faults = draw_faults(scenario, &mut rng);
        Plan {
            version: PLAN_VERSION,
            scenario: scenario.clone(),
            design,
            seed,
            shoppers,
            faults,
        }
    }

    /// The SHA-256 (hex) of what the seed drew — version, seed, shoppers
    /// and faults as JSON, in plan order. The scenario and design are the
    /// generator's inputs, not its output, so they are left out: this hash
    /// changes exactly when generation (or the plan format) does.
    pub fn draw_hash(&self) -> String {
        #[derive(Serialize)]
        struct Draws<'a> {
            version: u32,
            seed: u64,
            shoppers: &'a [ShopperPlan],
            faults: &'a [FaultEvent],
        }
        let draws = Draws {
            version: self.version,
            seed: self.seed,
            shoppers: &self.shoppers,
            faults: &self.faults,
        };
        let json = serde_json::to_vec(&draws).expect("plans serialize");
        Sha256::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The kinds of fault this plan injects, named as in [`FAULT_KINDS`]:
    /// from the drawn faults, the scenario's store and webhook settings,
    /// and the shoppers (express checkout changes who reaches the PSP first).
    pub fn fault_kinds(&self) -> BTreeSet<&'static str> {
        // No `..`: a new fault setting does not compile until it is named here.
        let Faults {
            window_start_ms: _,
            window_end_ms: _,
            api_crashes: _,
            worker_crashes: _,
            db_crashes: _,
            partitions: _,
            psp_stalls: _,
            forged_webhooks: _,
            webhooks,
            lose_unsynced_tail,
            sync_interval_ms: _,
            may_cost_sales: _,
        } = &self.scenario.faults;
        let mut kinds: BTreeSet<&'static str> = self
            .faults
            .iter()
            .map(|f| match &f.fault {
                Fault::Crash { host, .. } if host == "db" && *lose_unsynced_tail => {
                    "db-crash-lossy"
                }
                Fault::Crash { host, .. } if host == "db" => "db-crash",
                Fault::Crash { host, .. } if host.starts_with("api-") => "api-crash",
                Fault::Crash { .. } => "worker-crash",
                Fault::Partition { .. } => "partition",
                Fault::PspStall { .. } => "psp-stall",
                Fault::ForgedWebhook { .. } => "forged-webhook",
            })
            .collect();
        if webhooks.duplicate_probability > 0.0 && webhooks.extra_copies_max > 0 {
            kinds.insert("webhook-duplicates");
        }
        if self.shoppers.iter().any(|s| s.express) {
            kinds.insert("express-checkout");
        }
        kinds
    }

    /// When the last shopper arrives, ms.
    pub fn last_arrival_ms(&self) -> u64 {
        self.shoppers.iter().map(|s| s.arrive_ms).max().unwrap_or(0)
    }

    /// When the last shopper means to act at the latest: its arrival plus its
    /// think time before paying (or, paying late, before confirming).
    pub fn last_planned_act_ms(&self) -> u64 {
        self.shoppers
            .iter()
            .map(|s| {
                let think = match s.intent {
                    Intent::Pay { delay_ms, .. } => delay_ms,
                    Intent::PayLate { think_ms, .. } => think_ms,
                    Intent::Abandon | Intent::Cancel => 0,
                };
                s.arrive_ms.saturating_add(think)
            })
            .max()
            .unwrap_or(0)
    }

    /// When faults stop: the later of the fault window's end and the end of the last fault.
    pub fn faults_end_ms(&self) -> u64 {
        let last = self
            .faults
            .iter()
            .map(|f| f.at_ms + f.fault.length_ms())
            .max()
            .unwrap_or(0);
        last.max(self.scenario.faults.window_end_ms)
    }

    /// Whether a planned fault can leave an open events stream silent: an API
    /// host crashes, or is cut off from a client host. Only a silent stream
    /// needs the shop's keep-alives to come often, so its shopper notices.
    pub fn streams_may_fall_silent(&self) -> bool {
        let api = |h: &str| h.starts_with("api-");
        let client = |h: &str| h.starts_with("shoppers-");
        self.faults.iter().any(|f| match &f.fault {
            Fault::Crash { host, .. } => api(host),
            Fault::Partition { a, b, .. } => (api(a) && client(b)) || (client(a) && api(b)),
            Fault::PspStall { .. } | Fault::ForgedWebhook { .. } => false,
        })
    }

    /// When the run ends: faults over, shoppers arrived, and the settle time passed.
    pub fn end_ms(&self) -> u64 {
        self.faults_end_ms().max(self.last_arrival_ms()) + self.scenario.timing.settle_ms
    }

    /// Host names in registration order.
    pub fn hosts(&self) -> Hosts {
        Hosts::of(&self.scenario)
    }

    /// Checks a plan that did not come from [`Plan::generate`] (a plan file,
    /// a shrunk plan): its scenario, and that every shopper and fault refers
    /// to hosts, products and times the scenario has.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.version != PLAN_VERSION {
            return Err(bad(
                "version".into(),
                format!(
                    "{} is not the supported plan version {PLAN_VERSION}",
                    self.version
                ),
            ));
        }
        self.scenario.validate()?;
        if self.shoppers.len() > PLAN_SHOPPERS_MAX {
            return Err(bad(
                "shoppers".into(),
                format!(
                    "{} shoppers; at most {PLAN_SHOPPERS_MAX}",
                    self.shoppers.len()
                ),
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, s) in self.shoppers.iter().enumerate() {
            self.validate_shopper(i, s)?;
            if s.id == 0 || !ids.insert(s.id) {
                return Err(bad(
                    format!("shoppers[{i}].id"),
                    format!("{} is 0 or another shopper's number", s.id),
                ));
            }
        }
        let mut per_host = vec![0u32; self.scenario.topology.shopper_hosts as usize];
        for s in &self.shoppers {
            per_host[s.host as usize] += 1;
        }
        if let Some((host, n)) = per_host
            .iter()
            .enumerate()
            .find(|&(_, &n)| n > crate::scenario::SHOPPERS_PER_HOST_MAX)
        {
            return Err(bad(
                "shoppers".into(),
                format!(
                    "{n} shoppers on shopper host {host}; at most {} a host",
                    crate::scenario::SHOPPERS_PER_HOST_MAX
                ),
            ));
        }
        self.validate_fault_counts()?;
        let hosts = self.hosts();
        for (i, f) in self.faults.iter().enumerate() {
            validate_fault(&hosts, i, f)?;
        }
        Ok(())
    }

    /// Shopper `i` arrives in time, on hosts the topology has, asking for
    /// products of the catalog in quantities an order may hold.
    fn validate_shopper(&self, i: usize, s: &ShopperPlan) -> Result<(), ScenarioError> {
        let t = self.scenario.topology;
        let field = |name: &str| format!("shoppers[{i}].{name}");
        if s.host >= t.shopper_hosts {
            return Err(bad(
                field("host"),
                format!(
                    "{} but there are {} shopper hosts (0-based)",
                    s.host, t.shopper_hosts
                ),
            ));
        }
        if s.api >= t.api_hosts {
            return Err(bad(
                field("api"),
                format!(
                    "{} but there are {} api hosts (0-based)",
                    s.api, t.api_hosts
                ),
            ));
        }
        let at_most = |name: &str, ms: u64, max: u64| at_most(field(name), ms, max);
        at_most("arrive_ms", s.arrive_ms, PLAN_MS_MAX)?;
        match s.intent {
            Intent::PayLate { think_ms, .. } => {
                at_most("intent.think_ms", think_ms, PLAN_THINK_MS_MAX)?;
            }
            Intent::Pay { delay_ms, .. } => {
                at_most("intent.delay_ms", delay_ms, PAY_DELAY_MS_MAX)?;
            }
            Intent::Abandon | Intent::Cancel => {}
        }
        self.validate_items(i, &s.items)
    }

    /// Shopper `i`'s lines: products of the catalog, each once, in quantities an order may
    /// hold, at a total one order may reach.
    fn validate_items(&self, i: usize, items: &[(String, u32)]) -> Result<(), ScenarioError> {
        let field = |name: &str| format!("shoppers[{i}].{name}");
        if items.is_empty() || items.len() > LINES_PER_ORDER_MAX {
            return Err(bad(
                field("items"),
                format!("must have 1 to {LINES_PER_ORDER_MAX} lines"),
            ));
        }
        let mut total = 0u64;
        for (n, (sku, qty)) in items.iter().enumerate() {
            let Some(p) = self.scenario.catalog.iter().find(|p| &p.sku == sku) else {
                return Err(bad(
                    field("items"),
                    format!("{sku:?} is not in the catalog"),
                ));
            };
            if *qty == 0 || *qty > p.max_qty_per_order {
                return Err(bad(
                    field("items"),
                    format!("{qty} x {sku} is outside 1..={}", p.max_qty_per_order),
                ));
            }
            if items[..n].iter().any(|(earlier, _)| earlier == sku) {
                return Err(bad(
                    field("items"),
                    format!("{sku} is on two lines (an order names a SKU once)"),
                ));
            }
            total = total.saturating_add(p.price_cents.saturating_mul(u64::from(*qty)));
        }
        if total > ORDER_TOTAL_MAX.0 {
            return Err(bad(
                field("items"),
                format!(
                    "total {total} cents; one order may total at most {} cents",
                    ORDER_TOTAL_MAX.0
                ),
            ));
        }
        Ok(())
    }
}

impl Plan {
    /// No more faults of each kind than a scenario can draw: crashes of each
    /// group and PSP stalls up to [`FAULT_COUNT_MAX`], partitions up to every
    /// table's worth, forgeries up to [`FORGED_WEBHOOKS_MAX`] (each is a
    /// connection of the attacker's, and a host has 16,384 ports) — so at most
    /// 20,400 in all.
    fn validate_fault_counts(&self) -> Result<(), ScenarioError> {
        let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for f in &self.faults {
            let kind = match &f.fault {
                Fault::Crash { host, .. } if host == "db" => "db crashes",
                Fault::Crash { host, .. } if host.starts_with("api-") => "api crashes",
                Fault::Crash { .. } => "worker crashes",
                Fault::PspStall { .. } => "PSP stalls",
                Fault::Partition { .. } => "partitions",
                Fault::ForgedWebhook { .. } => "forged webhooks",
            };
            *counts.entry(kind).or_default() += 1;
        }
        for (kind, n) in counts {
            let max = match kind {
                "partitions" => PARTITION_TABLES_MAX * FAULT_COUNT_MAX as usize,
                "forged webhooks" => FORGED_WEBHOOKS_MAX as usize,
                _ => FAULT_COUNT_MAX as usize,
            };
            if n > max {
                return Err(bad(
                    "faults".into(),
                    format!("{n} {kind}; at most {max} (what a scenario can draw)"),
                ));
            }
        }
        Ok(())
    }
}

fn bad(field: String, problem: String) -> ScenarioError {
    ScenarioError { field, problem }
}

/// A time or length of `field`, `ms`, no more than `max`.
fn at_most(field: String, ms: u64, max: u64) -> Result<(), ScenarioError> {
    if ms > max {
        Err(bad(field, format!("{ms}: at most {max}")))
    } else {
        Ok(())
    }
}

/// Fault `i` happens in time, lasts no longer than a plan may, and names
/// hosts of the world (a crash: an api, worker or db host).
fn validate_fault(hosts: &Hosts, i: usize, f: &FaultEvent) -> Result<(), ScenarioError> {
    let known = |h: &str| {
        h == "db"
            || h == "psp"
            || hosts
                .api
                .iter()
                .chain(&hosts.worker)
                .chain(&hosts.shopper)
                .any(|x| x == h)
    };
    let field = |name: &str| format!("faults[{i}].{name}");
    let at_most = |name: &str, ms: u64, max: u64| at_most(field(name), ms, max);
    at_most("at_ms", f.at_ms, PLAN_MS_MAX)?;
    match &f.fault {
        Fault::Crash { host, down_ms } => {
            if host == "psp" || !known(host) || host.starts_with("shoppers-") {
                return Err(bad(
                    field("host"),
                    format!("{host:?} is not an api, worker or db host"),
                ));
            }
            at_most("down_ms", *down_ms, FAULT_LENGTH_MS_MAX)
        }
        Fault::Partition { a, b, duration_ms } => {
            for (side, h) in [("a", a), ("b", b)] {
                if !known(h) {
                    return Err(bad(
                        field(side),
                        format!("{h:?} is not a host of this topology"),
                    ));
                }
            }
            if a == b {
                return Err(bad(field("b"), format!("{b:?} is also a")));
            }
            at_most("duration_ms", *duration_ms, FAULT_LENGTH_MS_MAX)
        }
        Fault::PspStall { duration_ms } => {
            at_most("duration_ms", *duration_ms, FAULT_LENGTH_MS_MAX)
        }
        Fault::ForgedWebhook { order } => {
            if *order == 0 {
                return Err(bad(field("order"), "order numbers start at 1".into()));
            }
            Ok(())
        }
    }
}

/// Every name [`Plan::fault_kinds`] can give. `db-crash-lossy` is a store
/// crash with `faults.lose_unsynced_tail` (writes since the last sync lost).
pub const FAULT_KINDS: [&str; 9] = [
    "api-crash",
    "worker-crash",
    "db-crash",
    "db-crash-lossy",
    "partition",
    "psp-stall",
    "forged-webhook",
    "webhook-duplicates",
    "express-checkout",
];

/// Most shoppers a plan file may hold.
pub const PLAN_SHOPPERS_MAX: usize = crate::scenario::SHOPPERS_MAX as usize;
/// Latest time a plan file may name, ms (one hour): the last arrival and the
/// fault window's end a scenario allows.
pub const PLAN_MS_MAX: u64 = ARRIVALS_MS_MAX;
/// Longest think time a late payer's plan may hold, ms: what
/// [`late_think_ms`] can draw (the longest hold, the payment flow's
/// allowance and the longest pay delay).
pub const PLAN_THINK_MS_MAX: u64 =
    RESERVATION_TTL_MS_MAX + stampede_core::PAY_FLOW_ALLOWANCE_MS + PAY_DELAY_MS_MAX;

/// The names of the world's hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hosts {
    /// `api-1..k`.
    pub api: Vec<String>,
    /// `worker-1..m`.
    pub worker: Vec<String>,
    /// Shopper client hosts.
    pub shopper: Vec<String>,
}

impl Hosts {
    /// The hosts of a scenario's topology.
    pub fn of(scenario: &Scenario) -> Hosts {
        let t = scenario.topology;
        Hosts {
            api: (1..=t.api_hosts).map(|i| format!("api-{i}")).collect(),
            worker: (1..=t.worker_hosts)
                .map(|i| format!("worker-{i}"))
                .collect(),
            shopper: (1..=t.shopper_hosts)
                .map(|i| format!("shoppers-{i}"))
                .collect(),
        }
    }

    /// The hosts of a group named in a scenario.
    pub fn group(&self, group: &str) -> Vec<String> {
        match group {
            "api" => self.api.clone(),
            "worker" => self.worker.clone(),
            "shopper" => self.shopper.clone(),
            "db" => vec!["db".to_string()],
            "psp" => vec!["psp".to_string()],
            _ => Vec::new(),
        }
    }
}

fn arrivals(scenario: &Scenario, rng: &mut ChaCha8Rng) -> Vec<u64> {
    let n = scenario.shoppers.count as usize;
    let mut times: Vec<u64> = match scenario.shoppers.arrival {
        Arrival::Constant { over_ms } => (0..n)
            .map(|i| i as u64 * over_ms / n.max(1) as u64)
            .collect(),
        // The scenario bounds the expected span to the hour; a late draw is
        // held to it, so a plan file always names times within it.
        Arrival::Poisson { per_sec } => sample::poisson_arrivals_ms(rng, per_sec, n)
            .into_iter()
            .map(|t| t.min(ARRIVALS_MS_MAX))
            .collect(),
        Arrival::Ramp { over_ms } => (0..n).map(|_| sample::ramp_ms(rng, over_ms)).collect(),
        Arrival::Burst { at_ms, window_ms } => (0..n)
            .map(|_| at_ms + rng.random_range(0..window_ms.max(1)))
            .collect(),
    };
    times.sort_unstable();
    times
}

fn draw_items(scenario: &Scenario, rng: &mut ChaCha8Rng) -> Vec<(String, u32)> {
    let total_weight: u64 = scenario.catalog.iter().map(|p| u64::from(p.weight)).sum();
    let lines = rng.random_range(
        1..=scenario
            .shoppers
            .lines_max
            .min(scenario.catalog.len() as u32),
    );
    let mut items: Vec<(String, u32)> = Vec::new();
    // Bounded: at most 8 draws per line to find a SKU not already chosen.
    for _ in 0..lines * 8 {
        if items.len() as u32 == lines {
            break;
        }
        let mut pick = rng.random_range(0..total_weight.max(1));
        let product = scenario
            .catalog
            .iter()
            .find(|p| {
                let w = u64::from(p.weight);
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(&scenario.catalog[0]);
        if items.iter().any(|(sku, _)| *sku == product.sku) {
            continue;
        }
        let max = scenario
            .shoppers
            .qty_max
            .min(product.max_qty_per_order)
            .max(1);
        items.push((product.sku.clone(), rng.random_range(1..=max)));
    }
    items
}

fn draw_shoppers(scenario: &Scenario, rng: &mut ChaCha8Rng) -> Vec<ShopperPlan> {
    let s = &scenario.shoppers;
    let t = scenario.topology;
    let chance = |p: f64, rng: &mut ChaCha8Rng| Chance::new(p).draw(rng);
    arrivals(scenario, rng)
        .into_iter()
        .enumerate()
        .map(|(i, arrive_ms)| {
            let items = draw_items(scenario, rng);
            let double_click = chance(s.double_click, rng);
            let retry = chance(s.retry_on_timeout, rng);
            let tamper_price = chance(s.tamper_price, rng);
            let impatient = chance(s.impatient, rng);
            // Drawn only when asked for, so older scenarios keep their plans.
            let express = chance(s.express, rng);
            let intent = if chance(s.abandon, rng) {
                Intent::Abandon
            } else if chance(s.cancel, rng) {
                Intent::Cancel
            } else {
                let (delay_ms, decline, double_pay) = (
                    rng.random_range(0..=s.pay_delay_ms_max),
                    chance(s.decline, rng),
                    chance(s.double_pay, rng),
                );
                // Drawn only when asked for, so older scenarios keep their plans.
                match chance(s.late_pay, rng) {
                    true => Intent::PayLate {
                        think_ms: late_think_ms(scenario, rng),
                        decline,
                    },
                    false => Intent::Pay {
                        delay_ms,
                        decline,
                        double_pay,
                    },
                }
            };
            ShopperPlan {
                id: i as u32 + 1,
                host: rng.random_range(0..t.shopper_hosts),
                api: rng.random_range(0..t.api_hosts),
                arrive_ms,
                items,
                double_click,
                retry,
                tamper_price,
                impatient,
                express,
                intent,
                follow: s.follow,
            }
        })
        .collect()
}

/// A late payer's think time: longer than the hold by the payment flow's own
/// allowance, plus up to `pay_delay_ms_max` — late by its own plan, whatever
/// the network does.
fn late_think_ms(scenario: &Scenario, rng: &mut ChaCha8Rng) -> u64 {
    scenario.timing.reservation_ttl_ms
        + stampede_core::PAY_FLOW_ALLOWANCE_MS
        + rng.random_range(0..=scenario.shoppers.pay_delay_ms_max)
}

fn draw_faults(scenario: &Scenario, rng: &mut ChaCha8Rng) -> Vec<FaultEvent> {
    let f = &scenario.faults;
    let hosts = Hosts::of(scenario);
    let at = |rng: &mut ChaCha8Rng| rng.random_range(f.window_start_ms..=f.window_end_ms);
    let mut faults = Vec::new();
    for (group, spec) in [
        ("api", f.api_crashes),
        ("worker", f.worker_crashes),
        ("db", f.db_crashes),
    ] {
        let candidates = hosts.group(group);
        for _ in 0..spec.count {
            let host = candidates[rng.random_range(0..candidates.len())].clone();
            faults.push(FaultEvent {
                at_ms: at(rng),
                fault: Fault::Crash {
                    host,
                    down_ms: spec.down_ms,
                },
            });
        }
    }
    for p in &f.partitions {
        let (a_side, b_side) = (hosts.group(&p.a), hosts.group(&p.b));
        for _ in 0..p.count {
            let a = a_side[rng.random_range(0..a_side.len())].clone();
            // A group partitioned from itself: `b` is another of its hosts
            // (`Scenario::validate` refuses a group of one).
            let others: Vec<&String> = b_side.iter().filter(|h| **h != a).collect();
            let b = others[rng.random_range(0..others.len())].clone();
            faults.push(FaultEvent {
                at_ms: at(rng),
                fault: Fault::Partition {
                    a,
                    b,
                    duration_ms: p.duration_ms,
                },
            });
        }
    }
    let orders_guessable = u64::from(scenario.shoppers.count).max(1);
    for _ in 0..f.forged_webhooks {
        let order = rng.random_range(1..=orders_guessable);
        faults.push(FaultEvent {
            at_ms: at(rng),
            fault: Fault::ForgedWebhook { order },
        });
    }
    for _ in 0..f.psp_stalls.count {
        faults.push(FaultEvent {
            at_ms: at(rng),
            fault: Fault::PspStall {
                duration_ms: f.psp_stalls.duration_ms,
            },
        });
    }
    faults.sort_by_key(|f| f.at_ms);
    faults
}
