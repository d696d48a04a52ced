//! Shoppers follow their orders over the events stream (the default) or by
//! polling (`[shoppers] follow = "poll"`): both hold every invariant, the
//! stream costs far fewer HTTP requests, a lossy store crash (the store
//! back at its last sync: the feed's epoch moves) is followed through. The
//! streams send keep-alives often only where a fault can silence them.

use stampede_core::EventKind;
use stampede_server::Design;
use stampede_sim::CrashSpec;
use stampede_sim::{Fault, FaultEvent, Follow, Plan, RunResult, Scenario, run, scenarios};
use stampede_sim::{SSE_KEEP_ALIVE_FAULTS_MS, sse_keep_alive_ms, stream_idle_ms};

fn smoke(follow: Follow) -> Scenario {
    let mut s = scenarios::smoke();
    s.shoppers.follow = follow;
    s
}

fn go(scenario: &Scenario, seed: u64) -> RunResult {
    let result = run(&Plan::generate(scenario, Design::reference(), seed)).unwrap();
    assert!(
        result.passed(),
        "{} seed {seed}: {:?}",
        scenario.name,
        result.violated()
    );
    result
}

fn observed(result: &RunResult) -> usize {
    result
        .history
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Observed { .. }))
        .count()
}

#[test]
fn shoppers_on_the_events_stream_hold_and_make_fewer_requests_than_pollers() {
    // Proves: the same plan followed over SSE and by polling both pass every invariant, the
    // SSE shoppers record what they were shown (Observed), and SSE makes fewer HTTP requests.
    let sse = go(&smoke(Follow::Sse), 1);
    let poll = go(&smoke(Follow::Poll), 1);
    assert!(observed(&sse) > 0, "SSE shoppers observe statuses");
    assert!(observed(&poll) > 0);
    assert!(
        sse.stats.http_requests < poll.stats.http_requests,
        "sse {} vs poll {}",
        sse.stats.http_requests,
        poll.stats.http_requests
    );
}

fn db_crash(lossy: bool) -> Scenario {
    let mut s = smoke(Follow::Sse);
    s.name = "smoke-db-crash".into();
    s.faults.db_crashes = CrashSpec {
        count: 1,
        down_ms: 300,
    };
    s.faults.lose_unsynced_tail = lossy;
    // A `/pay` the crash cuts between taking its key and completing it holds
    // the key until the store is back (the shop releases it in the background)
    // or its lock lapses (the client timeout): a shopper whose retries all fall
    // inside is a sale lost to the crash (with the lossy store, whose replies
    // wait for their sync, one can be).
    s.faults.may_cost_sales = lossy;
    s.faults.window_start_ms = 200;
    s.faults.window_end_ms = 800;
    s
}

#[test]
fn the_events_stream_survives_a_store_crash() {
    // Proves: a db crash (every store connection lost, the hub's feed reads fail, streams end
    // and shoppers reconnect) still leaves every invariant holding with SSE shoppers.
    go(&db_crash(false), 3);
}

#[test]
fn the_events_stream_follows_a_restored_store() {
    // Proves: after a db crash that loses the unsynced tail (the store goes back to its synced
    // state and moves the feed's epoch) shoppers are still shown statuses over their streams
    // after the store is back, and every invariant holds (the reference store answered only
    // synced writes, so no client was told of what was lost; a sale the crash cost counts as
    // lost to it). That such a run is the same
    // bytes every time, in a fresh process or after other runs, is proved by
    // tests/determinism.rs (its all-faults case loses the unsynced tail).
    let s = db_crash(true);
    let plan = Plan::generate(&s, Design::reference(), 3);
    let back = plan
        .faults
        .iter()
        .find_map(|f| match &f.fault {
            Fault::Crash { host, down_ms } if host == "db" => Some(f.at_ms + down_ms),
            _ => None,
        })
        .expect("a db crash is planned");
    let a = run(&plan).unwrap();
    assert!(a.passed(), "{:?}", a.violated());
    let after = a
        .history
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Observed { .. }) && e.at.0 > back)
        .count();
    assert!(after > 0, "statuses shown after the store came back");
}

#[test]
fn keep_alives_come_often_only_where_a_fault_can_silence_a_stream() {
    // Proves: an API host crash, or a partition between an API host and a client host (either
    // way round), makes the world's streams send a keep-alive every second and shoppers give
    // a stream up after 2.5 s of silence; a worker or db crash, an api-psp or api-db
    // partition, a PSP stall, a forged webhook or no fault at all keep the shop's default.
    let plan = |faults: Vec<Fault>| {
        let mut plan = Plan::generate(&scenarios::smoke(), Design::reference(), 1);
        plan.faults = faults
            .into_iter()
            .map(|fault| FaultEvent { at_ms: 500, fault })
            .collect();
        plan
    };
    let crash = |host: &str| Fault::Crash {
        host: host.into(),
        down_ms: 100,
    };
    let cut = |a: &str, b: &str| Fault::Partition {
        a: a.into(),
        b: b.into(),
        duration_ms: 100,
    };
    let quiet = stampede_server::SSE_KEEP_ALIVE_MS;
    assert!(quiet > SSE_KEEP_ALIVE_FAULTS_MS);
    for (faults, keep_alive) in [
        (vec![], quiet),
        (vec![crash("api-1")], SSE_KEEP_ALIVE_FAULTS_MS),
        (vec![crash("worker-1"), crash("db")], quiet),
        (vec![cut("api-1", "shoppers-2")], SSE_KEEP_ALIVE_FAULTS_MS),
        (vec![cut("shoppers-1", "api-1")], SSE_KEEP_ALIVE_FAULTS_MS),
        (vec![cut("api-1", "psp"), cut("db", "api-1")], quiet),
        (vec![cut("shoppers-1", "psp")], quiet),
        (
            vec![
                Fault::PspStall { duration_ms: 100 },
                Fault::ForgedWebhook { order: 1 },
            ],
            quiet,
        ),
        (
            vec![crash("worker-1"), crash("api-1")],
            SSE_KEEP_ALIVE_FAULTS_MS,
        ),
    ] {
        let plan = plan(faults.clone());
        assert_eq!(sse_keep_alive_ms(&plan), keep_alive, "{faults:?}");
        assert_eq!(stream_idle_ms(&plan), keep_alive * 5 / 2, "{faults:?}");
    }
}
