//! Golden plans: the draw hashes (`Plan::draw_hash`, SHA-256 of the drawn
//! shoppers and faults as JSON) of a few (scenario, seed) pairs are
//! committed in `golden_plans.txt`, so any change to what a seed draws —
//! in `plan.rs`, its samplers, `rand`, or a shipped scenario's workload —
//! fails here and becomes a deliberate, reviewed change.

mod common;

use stampede_server::Design;
use stampede_sim::{Intent, Plan, Scenario, ShopperPlan};
use std::path::{Path, PathBuf};

/// Regenerates the golden file instead of comparing when set to `1`.
const UPDATE_VAR: &str = "STAMPEDE_UPDATE_GOLDENS";

/// Every knob a scenario has that the generator draws from, with Poisson
/// arrivals (the shipped files cover the other shapes): pinned here so the
/// goldens do not depend on the built-in mixes other tests tune.
const EVERY_KNOB: &str = r#"
name = "every-knob"

[topology]
api_hosts = 3
worker_hosts = 2
workers_per_host = 2
shopper_hosts = 5

[[catalog]]
sku = "hot"
price_cents = 9900
stock = 10
max_qty_per_order = 2
weight = 5

[[catalog]]
sku = "tee"
price_cents = 2500
stock = 300
weight = 2

[[catalog]]
sku = "mug"
price_cents = 1200
stock = 300

[shoppers]
count = 400
max_qty = 3
max_lines = 3
double_click = 0.2
retry_on_timeout = 0.7
abandon = 0.1
cancel = 0.05
decline = 0.1
double_pay = 0.2
tamper_price = 0.05
impatient = 0.1
express = 0.3
pay_delay_ms_max = 700

[shoppers.arrival]
shape = "poisson"
per_sec = 333.3

[faults]
window_start_ms = 100
window_end_ms = 2500
api_crashes = { count = 2, down_ms = 300 }
worker_crashes = { count = 2, down_ms = 900 }
db_crashes = { count = 1, down_ms = 700 }
forged_webhooks = 5
psp_stalls = { count = 2, duration_ms = 1500 }

[[faults.partitions]]
a = "api"
b = "db"
count = 2
duration_ms = 400

[[faults.partitions]]
a = "worker"
b = "psp"
duration_ms = 800
"#;

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden_plans.txt")
}

/// The pinned pairs: each shipped scenario at seed 1, and the every-knob
/// scenario at a small and the largest seed.
fn pairs() -> Vec<(String, Scenario, u64)> {
    let files = common::shipped_scenario_files();
    let mut pairs: Vec<(String, Scenario, u64)> = files
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let scenario = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
            (name, scenario, 1)
        })
        .collect();
    let knobs = Scenario::from_toml("every-knob", EVERY_KNOB).unwrap_or_else(|e| panic!("{e}"));
    pairs.push(("every-knob".into(), knobs.clone(), 7));
    pairs.push(("every-knob".into(), knobs, u64::MAX));
    pairs.push(("every-knob+late-pay".into(), late_payers(), 7));
    pairs
}

/// The every-knob scenario with late payers too: a knob added after the
/// others, pinned on its own so that the every-knob lines above show it drew
/// nothing new while it was off.
fn late_payers() -> Scenario {
    let text = EVERY_KNOB.replace(
        "pay_delay_ms_max = 700",
        "pay_delay_ms_max = 700\nlate_pay = 0.2",
    );
    Scenario::from_toml("every-knob+late-pay", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn render(lines: &[(String, u64, String)]) -> String {
    let mut text = String::from(
        "# Golden plan draw hashes: <scenario> <seed> <Plan::draw_hash>. Written by\n\
         # STAMPEDE_UPDATE_GOLDENS=1 cargo test -p stampede-sim --test golden_plans\n",
    );
    for (name, seed, hash) in lines {
        text.push_str(&format!("{name} {seed} {hash}\n"));
    }
    text
}

#[test]
fn plans_drawn_from_pinned_seeds_match_their_golden_hashes() {
    // Proves: each pinned (scenario, seed) draws exactly the plan whose hash
    // is committed, and the golden file pins exactly these pairs (none
    // missing, none stale); a mismatch names the pairs and the way to update.
    let actual: Vec<(String, u64, String)> = pairs()
        .into_iter()
        .map(|(name, scenario, seed)| {
            let hash = Plan::generate(&scenario, Design::reference(), seed).draw_hash();
            (name, seed, hash)
        })
        .collect();
    let rendered = render(&actual);
    if std::env::var(UPDATE_VAR).as_deref() == Ok("1") {
        std::fs::write(golden_path(), &rendered).unwrap();
        eprintln!("wrote {}", golden_path().display());
        return;
    }
    let golden = std::fs::read_to_string(golden_path()).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; write it with {UPDATE_VAR}=1 cargo test -p stampede-sim --test golden_plans",
            golden_path().display()
        )
    });
    let changed: Vec<String> = rendered
        .lines()
        .filter(|line| !golden.lines().any(|g| g == *line))
        .map(|line| format!("  now   {line}"))
        .chain(
            golden
                .lines()
                .filter(|g| !g.starts_with('#') && !rendered.lines().any(|line| line == *g))
                .map(|g| format!("  was   {g}")),
        )
        .collect();
    assert!(
        changed.is_empty(),
        "plan generation changed: these seeds now draw different plans, so a \
         failure reported by its seed before this change no longer replays:\n{}\n\
         If the change is intended (a new draw, a sampler fix, a scenario's new \
         workload), regenerate the goldens with\n  \
         {UPDATE_VAR}=1 cargo test -p stampede-sim --test golden_plans\n\
         and commit sim/tests/golden_plans.txt saying why plans changed. If it is \
         not intended, the bug is in what changed plan.rs, sample.rs, rand or \
         the scenario.",
        changed.join("\n")
    );
}

#[test]
fn the_every_knob_scenario_draws_every_kind_of_shopper_and_fault() {
    // Proves: the golden every-knob plan exercises each draw, so a change to
    // any of them moves its hash: every planned fault variant, express,
    // impatient and tampering shoppers, both non-pay intents, 3-line orders.
    let (_, scenario, seed) = pairs()
        .into_iter()
        .rfind(|(name, ..)| name == "every-knob")
        .unwrap();
    let plan = Plan::generate(&scenario, Design::reference(), seed);
    let has = |pred: &dyn Fn(&ShopperPlan) -> bool| plan.shoppers.iter().any(pred);
    assert!(has(&|s| s.express) && has(&|s| s.impatient) && has(&|s| s.tamper_price));
    assert!(has(&|s| s.double_click) && has(&|s| !s.retry) && has(&|s| s.items.len() == 3));
    assert!(has(&|s| s.intent == Intent::Abandon) && has(&|s| s.intent == Intent::Cancel));
    let kinds = plan.fault_kinds();
    for kind in [
        "api-crash",
        "worker-crash",
        "db-crash",
        "partition",
        "psp-stall",
        "forged-webhook",
        "express-checkout",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn late_payers_are_drawn_only_when_asked_for() {
    // Proves: with `late_pay` set, some paying shoppers become late payers
    // whose think time exceeds the hold by the payment flow's allowance (up
    // to `pay_delay_ms_max` more), and what is drawn before the first late
    // draw — every arrival, the first shopper's items — is what the scenario
    // draws without the knob (the knob adds draws, it does not move earlier ones).
    let late = Plan::generate(&late_payers(), Design::reference(), 7);
    let plain = Plan::generate(
        &Scenario::from_toml("every-knob", EVERY_KNOB).unwrap(),
        Design::reference(),
        7,
    );
    let hold = late.scenario.timing.reservation_ttl_ms;
    let thinks: Vec<u64> = late
        .shoppers
        .iter()
        .filter_map(|s| match s.intent {
            Intent::PayLate { think_ms, .. } => Some(think_ms),
            _ => None,
        })
        .collect();
    assert!(!thinks.is_empty(), "no late payer drawn");
    let allowance = stampede_core::PAY_FLOW_ALLOWANCE_MS;
    assert!(
        thinks
            .iter()
            .all(|t| *t >= hold + allowance && *t <= hold + allowance + 700),
        "{thinks:?}"
    );
    assert!(
        plain
            .shoppers
            .iter()
            .all(|s| !matches!(s.intent, Intent::PayLate { .. }))
    );
    let arrivals = |p: &Plan| p.shoppers.iter().map(|s| s.arrive_ms).collect::<Vec<_>>();
    assert_eq!(arrivals(&late), arrivals(&plain));
    assert_eq!(late.shoppers[0].items, plain.shoppers[0].items);
}
