//! The design a load's report names: before the first order the preflight
//! reads the design each replica names in `/metrics`; a run against a shop it
//! did not start (`UNKNOWN_DESIGN`) takes that name, a run told the design
//! keeps it, and replicas naming different designs are refused.

use stampede_loadgen::audit::Backoffice;
use stampede_loadgen::{LoadConfig, Mix, UNKNOWN_DESIGN, run};
use stampede_server::{Design, Stack, StackConfig};
use std::path::Path;
use std::time::Duration;

async fn shop(design: &str) -> Stack {
    let mut config = StackConfig::demo("127.0.0.1:0".parse().unwrap(), 1_700_000_000_000);
    config.server.design = Design::preset(design).unwrap();
    stampede_server::start(config).await.unwrap()
}

#[tokio::test]
async fn the_preflight_names_the_replicas_design_and_refuses_two() {
    // Proves: one shop's design is read as it names it; two replicas of one design
    // are one design; replicas of two designs are an error naming both hosts' designs.
    let (a, a2, b) = (
        shop("reference").await,
        shop("reference").await,
        shop("seed-repo").await,
    );
    let office = |s: &Stack| Backoffice::new(&s.shop_addr.to_string(), &s.psp_addr, "token");
    assert_eq!(
        office(&a).preflight(&[]).await.unwrap().as_deref(),
        Some("reference")
    );
    assert_eq!(
        office(&b).preflight(&[]).await.unwrap().as_deref(),
        Some("seed-repo")
    );
    let same = [a2.shop_addr.to_string()];
    assert_eq!(
        office(&a).preflight(&same).await.unwrap().as_deref(),
        Some("reference")
    );
    let mixed = [b.shop_addr.to_string()];
    let refused = office(&a).preflight(&mixed).await.unwrap_err().to_string();
    assert!(
        refused.contains("runs design reference but") && refused.contains("runs seed-repo"),
        "{refused}"
    );
    for s in [a, a2, b] {
        s.shutdown().await;
    }
}

/// A one-second load of the shop at `shop` (its PSP `psp`) writing to `dir`:
/// every journey browses, or with `pays`, places an order and declines it.
fn one_second(shop: &Stack, psp: &str, dir: &str, pays: bool) -> LoadConfig {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let mut config = LoadConfig::new(&shop.shop_addr.to_string(), psp, out);
    config.duration = Duration::from_secs(1);
    config.drain = Duration::from_millis(500);
    config.settle = Duration::from_millis(500);
    let (browse, decline) = if pays { (0.0, 1.0) } else { (1.0, 0.0) };
    config.mix = Mix {
        browse,
        double_click: 0.0,
        abandon: 0.0,
        hot: 0.0,
        decline,
    };
    config
}

/// A one-second load against `stack` with `design` as the report's label.
async fn label_after_a_load(stack: &Stack, design: &str, dir: &str) -> String {
    let mut config = one_second(stack, &stack.psp_addr, dir, false);
    config.design = design.to_string();
    run(config, |_| {}).await.unwrap().design
}

#[tokio::test]
async fn a_report_names_the_shops_design_unless_it_was_told_one() {
    // Proves: a load not told the design reports the one the shop names; a load told
    // a design keeps it (the shop's name does not overwrite the caller's).
    let stack = shop("seed-repo").await;
    assert_eq!(
        label_after_a_load(&stack, UNKNOWN_DESIGN, "label-unknown").await,
        "seed-repo"
    );
    assert_eq!(
        label_after_a_load(&stack, "my-label", "label-given").await,
        "my-label"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_load_judged_against_another_shops_psp_is_no_verdict() {
    // Proves (found from outside: `--psp` naming another shop's PSP passed, its empty ledger
    // "proving" the money reconciled): once the shop recorded intents the PSP given does not
    // know, the run ends in an error naming the intent and `--psp`, not in a verdict.
    let (a, b) = (shop("reference").await, shop("reference").await);
    let config = one_second(&a, &b.psp_addr, "wrong-psp", true);
    let refused = run(config, |_| {}).await.unwrap_err().to_string();
    assert!(
        refused.contains("the PSP does not know intent") && refused.contains("--psp"),
        "{refused}"
    );
    for s in [a, b] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn scheduled_journeys_that_never_started_are_counted_in_the_report() {
    // Proves (found from outside: an open loop capped at one journey in flight ran 119 of 150
    // scheduled journeys and said nothing of the 31 others): the report's notes count the
    // scheduled journeys that never started, so the load offered is not taken for the load asked.
    let stack = shop("reference").await;
    let mut config = one_second(&stack, &stack.psp_addr, "never-started", true);
    config.model = stampede_loadgen::Model::Open {
        rate_per_sec: 50.0,
        max_in_flight: 1,
    };
    config.drain = Duration::from_millis(200);
    let report = run(config, |_| {}).await.unwrap();
    let note = report
        .notes
        .iter()
        .find(|n| n.contains("scheduled journeys never started"))
        .unwrap_or_else(|| panic!("{:?}", report.notes));
    assert!(note.contains("of the 50 scheduled"), "{note}");
    // A schedule the journeys in flight could keep: no such note.
    let mut config = one_second(&stack, &stack.psp_addr, "all-started", false);
    config.model = stampede_loadgen::Model::Open {
        rate_per_sec: 5.0,
        max_in_flight: 64,
    };
    let report = run(config, |_| {}).await.unwrap();
    assert!(
        !report.notes.iter().any(|n| n.contains("never started")),
        "{:?}",
        report.notes
    );
    stack.shutdown().await;
}
