//! A plan file is what a seed can draw: every plan a valid scenario
//! generates (at the edges of its bounds too) is one `replay` takes, and a
//! plan `replay` takes is one the shop can be judged on — no order the shop
//! must refuse, no time past what a scenario allows, no more faults of a
//! kind than a scenario draws. (Within those bounds a plan may still hold
//! what one scenario would not draw, e.g. more units than its `max_qty`.)

use stampede_core::LINES_PER_ORDER_MAX;
use stampede_sim::{
    ARRIVALS_MS_MAX, Arrival, FORGED_WEBHOOKS_MAX, Fault, FaultEvent, Intent, PLAN_THINK_MS_MAX,
    PartitionSpec, Plan, ProductSpec, Scenario,
};

fn scenario(text: &str) -> Scenario {
    Scenario::from_toml("test.toml", text).unwrap()
}

/// A hat and a cap, ten shoppers in a burst.
fn base() -> Scenario {
    scenario(
        r#"
name = "plan-files"
[topology]
api_hosts = 2
worker_hosts = 2
workers_per_host = 1
shopper_hosts = 1
[[catalog]]
sku = "hat"
price_cents = 1500
stock = 5
max_qty_per_order = 5
[[catalog]]
sku = "cap"
price_cents = 900
stock = 5
[shoppers]
count = 10
max_lines = 1
[shoppers.arrival]
shape = "burst"
at_ms = 100
window_ms = 500
"#,
    )
}

fn plan() -> Plan {
    Plan::generate(&base(), Default::default(), 1)
}

fn refused(plan: &Plan, field: &str) {
    let e = plan.validate().expect_err("refused");
    assert!(e.field.contains(field), "{field}: {e}");
}

#[test]
fn the_last_arrival_of_a_burst_is_within_the_hour_on_both_sides_of_the_bound() {
    // Proves: a burst whose last arrival (at_ms + window_ms - 1) falls at the hour is taken,
    // and its plan validates; one ms later is refused on window_ms, not drawn into a plan
    // file `replay` would refuse.
    let mut s = base();
    s.shoppers.arrival = Arrival::Burst {
        at_ms: 3_000_000,
        window_ms: ARRIVALS_MS_MAX - 3_000_000 + 1,
    };
    assert_eq!(s.validate(), Ok(()));
    let p = Plan::generate(&s, Default::default(), 3);
    assert!(p.shoppers.iter().all(|s| s.arrive_ms <= ARRIVALS_MS_MAX));
    assert_eq!(p.validate(), Ok(()));
    s.shoppers.arrival = Arrival::Burst {
        at_ms: 3_000_000,
        window_ms: ARRIVALS_MS_MAX - 3_000_000 + 2,
    };
    let e = s.validate().unwrap_err();
    assert_eq!(e.field, "shoppers.arrival.window_ms", "{e}");
}

#[test]
fn the_latest_late_payer_a_scenario_can_draw_replays() {
    // Proves: with the longest hold and the longest pay delay, a late payer's think time can
    // reach PLAN_THINK_MS_MAX, and such a plan validates; one ms more is refused.
    let mut s = base();
    s.shoppers.late_pay = 1.0;
    s.shoppers.pay_delay_ms_max = 600_000;
    s.timing.reservation_ttl_ms = 3_600_000;
    assert_eq!(s.validate(), Ok(()));
    let mut p = Plan::generate(&s, Default::default(), 1);
    assert_eq!(p.validate(), Ok(()));
    let Intent::PayLate { decline, .. } = p.shoppers[0].intent else {
        panic!("every shopper pays late");
    };
    p.shoppers[0].intent = Intent::PayLate {
        think_ms: PLAN_THINK_MS_MAX,
        decline,
    };
    assert_eq!(p.validate(), Ok(()));
    p.shoppers[0].intent = Intent::PayLate {
        think_ms: PLAN_THINK_MS_MAX + 1,
        decline,
    };
    refused(&p, "shoppers[0].intent.think_ms");
}

#[test]
fn a_plan_file_holds_only_orders_the_shop_takes() {
    // Proves: a shopper naming a SKU on two lines, no line at all, or more than one order may total,
    // is refused with its field — a plan that would judge the reference on buyers the shop
    // must turn away (422) never runs. The same lines under the limit are taken.
    let mut p = plan();
    p.shoppers[0].items = vec![("hat".into(), 1), ("cap".into(), 1)];
    assert_eq!(p.validate(), Ok(()));
    p.shoppers[0].items = vec![("hat".into(), 1), ("hat".into(), 1)];
    refused(&p, "shoppers[0].items");
    p.shoppers[0].items = vec![];
    refused(&p, "shoppers[0].items");
    // The most lines an order may have, and one more.
    let mut p = plan();
    let template = p.scenario.catalog[0].clone();
    p.scenario.catalog = (0..=LINES_PER_ORDER_MAX)
        .map(|n| ProductSpec {
            sku: format!("sku-{n}"),
            ..template.clone()
        })
        .collect();
    let lines: Vec<(String, u32)> = p
        .scenario
        .catalog
        .iter()
        .map(|c| (c.sku.clone(), 1))
        .collect();
    p.shoppers = vec![p.shoppers[0].clone()];
    p.shoppers[0].items = lines[..LINES_PER_ORDER_MAX].to_vec();
    assert_eq!(p.validate(), Ok(()), "{LINES_PER_ORDER_MAX} lines");
    p.shoppers[0].items = lines;
    refused(&p, "shoppers[0].items");

    let mut p = plan();
    p.scenario.catalog[0].price_cents = 99_999_999 / 2;
    p.shoppers[0].items = vec![("hat".into(), 2)];
    assert_eq!(p.validate(), Ok(()), "99,999,998 cents");
    p.scenario.catalog[0].price_cents = 99_999_999;
    p.shoppers[0].items = vec![("hat".into(), 1)];
    assert_eq!(p.validate(), Ok(()), "exactly the most");
    p.shoppers[0].items = vec![("hat".into(), 1), ("cap".into(), 1)];
    refused(&p, "shoppers[0].items");
}

#[test]
fn shopper_numbers_are_unique_and_start_at_one() {
    // Proves: a shopper number names a customer and its keys, so two shoppers with one
    // number (or number 0, which no draw gives) are refused.
    let mut p = plan();
    p.shoppers[1].id = p.shoppers[0].id;
    refused(&p, "shoppers[1].id");
    let mut p = plan();
    p.shoppers[0].id = 0;
    refused(&p, "shoppers[0].id");
}

#[test]
fn a_plan_file_names_no_key_it_does_not_know() {
    // Proves: as a scenario file does, a plan file refuses a key it does not know (at the top
    // and in a shopper), rather than running as if it were not there.
    let text = serde_json::to_string(&plan()).unwrap();
    assert!(serde_json::from_str::<Plan>(&text).is_ok());
    let top = text.replacen('{', r#"{"sabotage":true,"#, 1);
    assert!(serde_json::from_str::<Plan>(&top).is_err());
    let shopper = text.replacen(r#""double_click""#, r#""vip":true,"double_click""#, 1);
    assert_ne!(shopper, text);
    assert!(serde_json::from_str::<Plan>(&shopper).is_err());
}

#[test]
fn faults_are_bounded_by_what_a_scenario_draws_and_partition_two_hosts() {
    // Proves: a plan holds no more faults of a kind than a scenario draws — 10,000 forgeries
    // taken, one more refused before any run (each is a connection of the attacker's), and a
    // hundred db crashes taken, one more refused; a
    // partition of a host from itself is refused in a plan file; in a scenario, a
    // group partitioned from itself needs two hosts, and with two every drawn partition
    // cuts two different hosts, as many as the table asks for.
    let mut p = plan();
    let forged = FaultEvent {
        at_ms: 200,
        fault: Fault::ForgedWebhook { order: 1 },
    };
    p.faults = vec![forged.clone(); FORGED_WEBHOOKS_MAX as usize];
    assert_eq!(p.validate(), Ok(()));
    p.faults.push(forged);
    refused(&p, "faults");
    let crash = FaultEvent {
        at_ms: 200,
        fault: Fault::Crash {
            host: "db".into(),
            down_ms: 10,
        },
    };
    let mut p = plan();
    p.faults = vec![crash.clone(); 100];
    assert_eq!(p.validate(), Ok(()));
    p.faults.push(crash);
    refused(&p, "faults");

    let mut p = plan();
    p.faults = vec![FaultEvent {
        at_ms: 200,
        fault: Fault::Partition {
            a: "api-1".into(),
            b: "api-1".into(),
            duration_ms: 100,
        },
    }];
    refused(&p, "faults[0].b");

    let mut s = base();
    s.faults.window_end_ms = 1_000;
    s.faults.partitions = vec![PartitionSpec {
        a: "api".into(),
        b: "api".into(),
        count: 20,
        duration_ms: 100,
    }];
    assert_eq!(s.validate(), Ok(()));
    let p = Plan::generate(&s, Default::default(), 5);
    let cuts: Vec<_> = p
        .faults
        .iter()
        .filter_map(|f| match &f.fault {
            Fault::Partition { a, b, .. } => Some((a.clone(), b.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(cuts.len(), 20, "as many as asked for");
    assert!(cuts.iter().all(|(a, b)| a != b));
    assert_eq!(p.validate(), Ok(()));
    s.faults.partitions[0].a = "db".into();
    s.faults.partitions[0].b = "db".into();
    let e = s.validate().unwrap_err();
    assert_eq!(e.field, "faults.partitions[0].b", "{e}");
}

#[test]
fn forgeries_on_a_slow_network_are_each_sent_at_their_time_and_the_run_is_judged() {
    // Proves: a hundred forged webhooks inside 100 ms on a network of up to 10 s latency (the
    // longest a scenario allows) run to a verdict: each forgery is its own request at its
    // planned time, so a slow answer does not hold back the next and push the last past the
    // run's time limit (sent one after another, they took ~200 s of simulated time and the
    // run failed without a verdict).
    let mut s = base();
    s.faults.window_start_ms = 100;
    s.faults.window_end_ms = 200;
    s.faults.forged_webhooks = 100;
    s.timing.latency_ms_max = 10_000;
    s.timing.client_timeout_ms = 2_000;
    assert_eq!(s.validate(), Ok(()));
    let plan = Plan::generate(&s, Default::default(), 1);
    let result = stampede_sim::run(&plan).expect("a verdict");
    assert_eq!(result.stats.faults, 100);
    assert!(!result.verdicts.is_empty());
}
