//! Built-in scenarios used by the tests and the catch matrix (the CLI's
//! scenario files in `scenarios/` cover the same ground as TOML).

use crate::scenario::{
    Arrival, CrashSpec, Faults, PartitionSpec, ProductSpec, Scenario, Shoppers, Timing, Topology,
    WebhookFaults,
};

fn product(sku: &str, price_cents: u64, stock: u64) -> ProductSpec {
    ProductSpec {
        sku: sku.into(),
        price_cents,
        stock,
        max_qty_per_order: 3,
        per_customer_limit: None,
        weight: 1,
    }
}

fn shoppers(count: u32, arrival: Arrival) -> Shoppers {
    Shoppers {
        count,
        arrival,
        max_qty: 1,
        max_lines: 1,
        double_click: 0.0,
        retry_on_timeout: 1.0,
        abandon: 0.0,
        cancel: 0.0,
        decline: 0.0,
        double_pay: 0.0,
        pay_delay_ms_max: 300,
    }
}

/// A small, fast run: a handful of shoppers, no faults.
pub fn smoke() -> Scenario {
    Scenario {
        name: "smoke".into(),
        topology: Topology {
            api_hosts: 1,
            worker_hosts: 1,
            workers_per_host: 2,
            shopper_hosts: 2,
        },
        catalog: vec![product("hat", 1_500, 5), product("mug", 800, 50)],
        shoppers: shoppers(12, Arrival::Constant { over_ms: 1_000 }),
        faults: Faults::default(),
        timing: Timing {
            settle_ms: 8_000,
            reservation_ttl_ms: 3_000,
            ..Timing::default()
        },
        invariants: Vec::new(),
        design: "reference".into(),
    }
}

/// A small flash sale with every kind of shopper behaviour and webhook
/// chaos: the base of the fault mixes.
pub fn flash(count: u32, stock: u64) -> Scenario {
    let mut s = smoke();
    s.name = "flash".into();
    s.topology = Topology {
        api_hosts: 2,
        worker_hosts: 2,
        workers_per_host: 2,
        shopper_hosts: 4,
    };
    s.catalog = vec![product("hot", 9_900, stock), product("tee", 2_500, 200)];
    s.catalog[0].weight = 4;
    s.shoppers = Shoppers {
        double_click: 0.3,
        abandon: 0.1,
        cancel: 0.05,
        decline: 0.1,
        double_pay: 0.2,
        max_lines: 2,
        max_qty: 2,
        ..shoppers(
            count,
            Arrival::Burst {
                at_ms: 100,
                window_ms: 500,
            },
        )
    };
    s.faults.webhooks = WebhookFaults {
        duplicate_probability: 0.3,
        max_extra_copies: 2,
        delay_ms_max: 300,
    };
    s.faults.window_start_ms = 100;
    s.faults.window_end_ms = 3_000;
    s.timing = Timing {
        settle_ms: 15_000,
        reservation_ttl_ms: 4_000,
        ..Timing::default()
    };
    s
}

/// Fault mixes: a name and the scenario.
pub fn fault_mixes() -> Vec<(&'static str, Scenario)> {
    let base = flash(40, 10);
    let mut db = base.clone();
    db.name = "db-crash".into();
    db.faults.db_crashes = CrashSpec {
        count: 1,
        down_ms: 1_000,
    };
    let mut worker = base.clone();
    worker.name = "worker-crash".into();
    worker.faults.worker_crashes = CrashSpec {
        count: 2,
        down_ms: 1_500,
    };
    let mut api = base.clone();
    api.name = "api-crash".into();
    api.faults.api_crashes = CrashSpec {
        count: 1,
        down_ms: 800,
    };
    let mut partition = base.clone();
    partition.name = "api-psp-partition".into();
    partition.faults.partitions = vec![PartitionSpec {
        a: "api".into(),
        b: "psp".into(),
        count: 1,
        duration_ms: 5_000,
    }];
    partition.faults.window_end_ms = 1_500;
    let mut storm = base.clone();
    storm.name = "webhook-storm".into();
    storm.faults.webhooks = WebhookFaults {
        duplicate_probability: 1.0,
        max_extra_copies: 2,
        delay_ms_max: 30_000,
    };
    storm.timing.settle_ms = 45_000;
    vec![
        ("calm", base),
        ("db-crash", db),
        ("worker-crash", worker),
        ("api-crash", api),
        ("api-psp-partition", partition),
        ("webhook-storm", storm),
    ]
}
