//! Waiting instead of polling, on tokio's paused clock (so every time below is
//! exact, not measured): a waiting lease is answered the moment a job becomes
//! runnable and not before its wait ends otherwise; the wait is capped in the
//! store and clamped below the request timeout by a remote client; an idle
//! worker makes one store call per wait, a failing store is retried with a
//! bounded backoff, and the sweeper wakes when the next hold lapses.

use stampede_core::{
    Catalog, Cause, Cents, CustomerId, Failed, IdempotencyKey, ItemRequest, JobKind, OrderId,
    PlaceOrder, Placed, Product, ShopConfig, ShopState, Sku,
};
use stampede_core::{Command, Reply};
use stampede_server::psp::PspClient;
use stampede_server::store::remote::{RemoteConfig, RemoteStore, serve_connection};
use stampede_server::store::{LEASE_WAIT_MS_MAX, StoreFuture};
use stampede_server::store::{MemoryStore, Store, StoreError};
use stampede_server::{App, ServerConfig};
use stampede_server::{Clock, Connector, HttpClient};
use stampede_server::{
    LEASE_ERROR_BACKOFF_MIN_MS, LEASE_ERROR_BACKOFF_MS_MAX, SWEEP_GAP_MIN_MS, WorkerConfig,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

fn hat() -> Sku {
    Sku::new("hat").unwrap()
}

fn shop(ttl_ms: u64) -> ShopState {
    let catalog = Catalog::new([Product {
        sku: hat(),
        name: "Hat".into(),
        price: Cents(1_500),
        max_qty_per_order: 5,
        per_customer_limit: None,
    }]);
    let config = ShopConfig {
        reservation_ttl_ms: Some(ttl_ms),
        ..ShopConfig::default()
    };
    let mut state = ShopState::new(catalog, config);
    state.stock(&hat(), 10, 1).unwrap();
    state
}

fn memory() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(shop(60_000), Clock::tokio(0)))
}

fn order(key: &str) -> PlaceOrder {
    PlaceOrder {
        key: Some(IdempotencyKey::new(key).unwrap()),
        customer: CustomerId::new("c1").unwrap(),
        items: vec![ItemRequest { sku: hat(), qty: 1 }],
        express: false,
    }
}

/// Places an order (key `k1`).
async fn placed(store: &dyn Store) -> OrderId {
    match store.place_order(order("k1")).await.unwrap() {
        Placed::Created { order, .. } => order,
        other => panic!("not created: {other:?}"),
    }
}

/// Places an order and takes its reserve job off the queue: an order
/// exists, and no job is live.
async fn quiet_order(store: &dyn Store) -> OrderId {
    let id = placed(store).await;
    let lease = store.lease_job().await.unwrap().expect("the reserve job");
    store.ack_job(lease).await.unwrap();
    id
}

/// One call as the store saw it (`answered` is `None` while it runs).
#[derive(Clone, Debug)]
struct Call {
    op: String,
    asked: Instant,
    answered: Option<Instant>,
    leased: bool,
}

/// Passes every call on, noting what it was and when it was asked and answered.
struct Counting {
    inner: Arc<dyn Store>,
    calls: Mutex<Vec<Call>>,
}

impl Counting {
    fn new(inner: Arc<dyn Store>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn ops(&self, op: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op == op).collect()
    }
}

impl Store for Counting {
    fn call(&self, request: Command) -> StoreFuture<'_> {
        Box::pin(async move {
            let op = serde_json::to_value(&request).unwrap()["op"]
                .as_str()
                .unwrap()
                .to_string();
            let index = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(Call {
                    op,
                    asked: Instant::now(),
                    answered: None,
                    leased: false,
                });
                calls.len() - 1
            };
            let result = self.inner.call(request).await;
            let mut calls = self.calls.lock().unwrap();
            calls[index].answered = Some(Instant::now());
            calls[index].leased = matches!(result, Ok(Reply::Lease(Some(_))));
            result
        })
    }
}

/// A store host that is down: every call fails at once.
struct Down(AtomicUsize);

impl Store for Down {
    fn call(&self, _request: Command) -> StoreFuture<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
}

fn app(store: Arc<dyn Store>) -> Arc<App> {
    // No test here reaches the PSP: nothing listens at this address.
    let psp = PspClient::new(
        HttpClient::new(Connector::tokio(), Duration::from_secs(1)),
        "127.0.0.1:9".into(),
    );
    App::new(store, psp, Clock::tokio(0), ServerConfig::default())
}

fn config(lease_wait_ms: u64, sweep_interval_ms: u64) -> WorkerConfig {
    WorkerConfig {
        lease_wait_ms,
        sweep_interval_ms,
        // The reconciler is not started in these tests.
        ..WorkerConfig::default()
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(start_paused = true)]
async fn a_waiting_lease_is_answered_when_a_job_is_enqueued_not_when_the_wait_ends() {
    // Proves: a lease waiting 10 s is answered at the very instant another
    // request enqueues a job (1 s in), with that job; with nothing enqueued it
    // answers `None` exactly when its wait ends.
    let store = memory();
    let id = quiet_order(&*store).await;
    let waiting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let lease = store.lease_job_wait(10_000).await;
            (lease, Instant::now())
        })
    };
    let start = Instant::now();
    sleep(Duration::from_secs(1)).await;
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    dyn_store.enqueue_job(JobKind::Finalize, id).await.unwrap();
    let (lease, at) = waiting.await.unwrap();
    assert_eq!(
        lease.map(|l| (l.kind, l.order)),
        Some((JobKind::Finalize, id))
    );
    assert_eq!(ms(at - start), 1_000, "answered when the job was enqueued");

    let start = Instant::now();
    assert_eq!(store.lease_job_wait(700).await, None);
    assert_eq!(
        ms(start.elapsed()),
        700,
        "an empty wait lasts exactly its length"
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_scheduled_for_later_is_leased_at_its_time_on_both_sides_of_the_wait() {
    // Proves: a job retried at `at` is leased by a wait ending exactly at
    // `at` (at `at`, not before), and not by a wait ending 1 ms sooner.
    let store = memory();
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    quiet_order(&*dyn_store).await;
    dyn_store
        .enqueue_job(JobKind::Finalize, OrderId(1))
        .await
        .unwrap();
    let lease = dyn_store.lease_job().await.unwrap().unwrap();
    let Failed::Retry { at } = dyn_store
        .fail_job(lease, "boom".into(), 1_000)
        .await
        .unwrap()
    else {
        panic!("the first failure is retried");
    };
    let clock = Clock::tokio(0);
    let due_in = at.0 - clock.now().0;
    assert!(due_in > 1, "the retry is in the future ({due_in} ms)");

    let start = Instant::now();
    assert_eq!(store.lease_job_wait(due_in - 1).await, None, "1 ms short");
    assert_eq!(ms(start.elapsed()), u128::from(due_in - 1));

    let start = Instant::now();
    let lease = store
        .lease_job_wait(1)
        .await
        .expect("due at the end of the wait");
    assert_eq!(lease.kind, JobKind::Finalize);
    assert_eq!(ms(start.elapsed()), 1);
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_capped_by_the_store_on_both_sides_of_the_bound() {
    // Proves: a wait of exactly LEASE_WAIT_MS_MAX lasts that long; any longer
    // wait, even u64::MAX ms, lasts no more than LEASE_WAIT_MS_MAX.
    let store = memory();
    for asked in [LEASE_WAIT_MS_MAX, LEASE_WAIT_MS_MAX + 1, u64::MAX] {
        let start = Instant::now();
        assert_eq!(store.lease_job_wait(asked).await, None);
        assert_eq!(
            ms(start.elapsed()),
            u128::from(LEASE_WAIT_MS_MAX),
            "asked {asked}"
        );
    }
}

/// A remote store whose connections are in-memory pipes to `store`, each
/// served by `serve_connection` in its own task (no sockets: the paused
/// clock only moves when every task waits on a timer or on another task).
fn piped(store: Arc<dyn Store>, request_timeout: Duration, max_connections: usize) -> RemoteStore {
    let connector = Connector::new(move |_addr: String| {
        let store = Arc::clone(&store);
        async move {
            let (client, server) = tokio::io::duplex(64 * 1024);
            tokio::spawn(serve_connection(server, store));
            Ok::<_, std::io::Error>(client)
        }
    });
    RemoteStore::new(
        connector,
        "db:5432".into(),
        RemoteConfig {
            request_timeout,
            max_connections,
        },
    )
}

#[tokio::test(start_paused = true)]
async fn a_remote_wait_is_clamped_to_half_the_request_timeout_on_both_sides() {
    // Proves: through a remote store with a 1 s request timeout, a wait of
    // 499 ms and one of exactly 500 ms last as asked, and a 10 s wait lasts
    // 500 ms: it comes back empty, not as a timeout.
    let store = memory();
    let remote = piped(store, Duration::from_secs(1), 4);
    assert_eq!(ms(remote.max_lease_wait()), 500);
    let remote: Arc<dyn Store> = Arc::new(remote);
    for (asked, lasted) in [(499, 499), (500, 500), (10_000, 500)] {
        let start = Instant::now();
        assert_eq!(
            remote.lease_job_wait(asked).await,
            Ok(None),
            "asked {asked}"
        );
        assert_eq!(ms(start.elapsed()), lasted, "asked {asked}");
    }
}

#[tokio::test(start_paused = true)]
async fn remote_waits_hold_at_most_half_the_connections_and_a_job_wakes_one() {
    // Proves: with 4 connections, 3 workers waiting at once hold 2 waits at
    // the store (the third waits in the client, holding no connection), so
    // another call still goes through at once; a job enqueued meanwhile is
    // leased by a waiting lease the moment it is enqueued.
    let counting = Counting::new(memory());
    let remote: Arc<dyn Store> = Arc::new(piped(
        Arc::clone(&counting) as Arc<dyn Store>,
        Duration::from_secs(1),
        4,
    ));
    let id = quiet_order(&*remote).await;
    let start = Instant::now();
    let waits: Vec<_> = (0..3)
        .map(|_| {
            let remote = Arc::clone(&remote);
            tokio::spawn(async move { remote.lease_job_wait(400).await.unwrap() })
        })
        .collect();
    sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    remote.stats().await.unwrap();
    assert_eq!(ms(asked.elapsed()), 0, "a free connection answers at once");
    remote.enqueue_job(JobKind::Finalize, id).await.unwrap();
    let mut leased = 0;
    for wait in waits {
        leased += usize::from(wait.await.unwrap().is_some());
    }
    assert_eq!(leased, 1);
    assert_eq!(
        ms(start.elapsed()),
        400,
        "the others waited out their 400 ms"
    );
    let at_store: Vec<(u128, Option<u128>)> = counting
        .ops("lease_job_wait")
        .iter()
        .map(|c| (ms(c.asked - start), c.answered.map(|a| ms(a - start))))
        .collect();
    // Two waits from the start; the lease at 100 ms frees a slot, and only
    // then does the third wait reach the store, for what is left of its wait.
    assert_eq!(
        at_store,
        vec![(0, Some(100)), (0, Some(400)), (100, Some(400))],
        "waits at the store (asked, answered), ms"
    );
}

#[tokio::test(start_paused = true)]
async fn with_one_connection_no_wait_holds_it_and_a_lease_asks_once_per_wait() {
    // Proves: with max_connections = 1 there is no wait slot (0 of 1), so a
    // 300 ms waiting lease waits in the client and then asks once without
    // waiting; the connection stays free for other calls meanwhile.
    let counting = Counting::new(memory());
    let remote: Arc<dyn Store> = Arc::new(piped(
        Arc::clone(&counting) as Arc<dyn Store>,
        Duration::from_secs(1),
        1,
    ));
    let start = Instant::now();
    let wait = {
        let remote = Arc::clone(&remote);
        tokio::spawn(async move { remote.lease_job_wait(300).await })
    };
    sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    remote.stats().await.unwrap();
    assert_eq!(ms(asked.elapsed()), 0, "the only connection is free");
    assert_eq!(wait.await.unwrap(), Ok(None));
    assert_eq!(ms(start.elapsed()), 300);
    let ops: Vec<String> = counting.calls().into_iter().map(|c| c.op).collect();
    assert_eq!(ops, vec!["stats", "lease_job"]);
}

#[tokio::test(start_paused = true)]
async fn a_worker_leases_a_job_enqueued_while_it_waits_at_once() {
    // Proves: a job worker waiting with a 5 s lease wait leases a job the
    // instant it is enqueued (2 s into the wait), runs it and acks it.
    let counting = Counting::new(memory());
    let store = Arc::clone(&counting) as Arc<dyn Store>;
    let id = quiet_order(&*store).await;
    let worker = tokio::spawn(stampede_server::run_job_worker(
        app(Arc::clone(&store)),
        0,
        1,
        config(5_000, 250),
    ));
    sleep(Duration::from_secs(2)).await;
    let enqueued = Instant::now();
    store.enqueue_job(JobKind::Finalize, id).await.unwrap();
    sleep(Duration::from_millis(10)).await;
    worker.abort();
    let hit = counting
        .ops("lease_job_wait")
        .into_iter()
        .find(|c| c.leased)
        .expect("the worker leased the job");
    let answered = hit.answered.unwrap();
    assert_eq!(answered, enqueued, "leased the instant it was enqueued");
    assert_eq!(
        ms(answered - hit.asked),
        2_000,
        "well before the 5 s wait ended"
    );
    let acks = counting.ops("ack_job");
    assert_eq!(
        acks.iter().filter(|c| c.asked >= enqueued).count(),
        1,
        "the job ran and was acked"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_makes_one_store_call_per_wait() {
    // Proves: over 60 s with nothing to do, a worker with a 1 s lease wait
    // makes 60 store calls (one per wait; polling every 20 ms would be 3,000),
    // all of them waiting leases.
    let counting = Counting::new(memory());
    let store = Arc::clone(&counting) as Arc<dyn Store>;
    let worker = tokio::spawn(stampede_server::run_job_worker(
        app(store),
        0,
        1,
        config(1_000, 250),
    ));
    sleep(Duration::from_millis(60_000 - 1)).await;
    worker.abort();
    let calls = counting.calls();
    assert_eq!(calls.len(), 60, "one call per wait");
    assert!(calls.iter().all(|c| c.op == "lease_job_wait"));
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_cannot_reach_the_store_backs_off_to_a_bounded_pause() {
    // Proves: against a store that always fails, the pause between lease calls
    // doubles from LEASE_ERROR_BACKOFF_MIN_MS and stops growing at
    // LEASE_ERROR_BACKOFF_MS_MAX: 20+40+...+640 = 1,260 ms for the first 7
    // retries, then one call a second, so 16 calls in the first 10 s.
    assert_eq!(
        (LEASE_ERROR_BACKOFF_MIN_MS, LEASE_ERROR_BACKOFF_MS_MAX),
        (20, 1_000)
    );
    let down = Arc::new(Down(AtomicUsize::new(0)));
    let worker = tokio::spawn(stampede_server::run_job_worker(
        app(Arc::clone(&down) as Arc<dyn Store>),
        0,
        1,
        config(1_000, 250),
    ));
    // Calls at 0, 20, 60, 140, 300, 620, 1260 (7), then every 1000 ms: 2260 .. 9260 (8 more).
    sleep(Duration::from_millis(9_261)).await;
    assert_eq!(down.0.load(Ordering::SeqCst), 15);
    sleep(Duration::from_millis(998)).await;
    assert_eq!(down.0.load(Ordering::SeqCst), 15, "no call at 10,259 ms");
    sleep(Duration::from_millis(2)).await;
    assert_eq!(down.0.load(Ordering::SeqCst), 16, "the call at 10,260 ms");
    worker.abort();
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_wakes_when_the_next_hold_lapses_at_most_an_interval_apart() {
    // Proves: with a 2 s sweep interval and a hold lapsing at 5 s, the sweeper
    // sweeps at 2 s and 4 s (the interval bounds its sleep) and then at 5 s
    // exactly, expiring the hold then — not at 6 s, the next interval.
    let store = Arc::new(MemoryStore::new(shop(5_000), Clock::tokio(0)));
    let counting = Counting::new(Arc::clone(&store) as Arc<dyn Store>);
    let dyn_store = Arc::clone(&counting) as Arc<dyn Store>;
    let start = Instant::now();
    let id = placed(&*dyn_store).await;
    let lease = dyn_store.lease_job().await.unwrap().unwrap();
    dyn_store
        .reserve(id, Cause::Worker { job: lease.job })
        .await
        .unwrap();
    dyn_store.ack_job(lease).await.unwrap();
    let sweeper = tokio::spawn(stampede_server::run_sweeper(
        app(dyn_store),
        config(1_000, 2_000),
    ));
    sleep(Duration::from_millis(6_500)).await;
    sweeper.abort();
    let sweeps: Vec<u128> = counting
        .ops("expire_reservations")
        .iter()
        .map(|c| ms(c.asked - start))
        .collect();
    assert_eq!(sweeps, vec![2_000, 4_000, 5_000]);
    let order = store.read(|s| s.order(id).cloned()).unwrap();
    assert_eq!(order.status().as_str(), "cancelled_expired");
    assert_eq!(ms(Duration::from_millis(order.status_since().0)), 5_000);
}

/// Places order `key` and reserves it (its hold lapses a TTL from now).
async fn reserved(store: &dyn Store, key: &str) -> OrderId {
    let Placed::Created { order: id, .. } = store.place_order(order(key)).await.unwrap() else {
        panic!("not created");
    };
    let lease = store.lease_job().await.unwrap().unwrap();
    store
        .reserve(id, Cause::Worker { job: lease.job })
        .await
        .unwrap();
    store.ack_job(lease).await.unwrap();
    id
}

#[tokio::test(start_paused = true)]
async fn sweeps_never_come_closer_than_the_minimum_gap() {
    // Proves: with a batch of 1, two holds lapsing at 5,000 ms are swept at
    // 5,000 and (the batch cut short, the next already due) SWEEP_GAP_MIN_MS
    // later, not at once; a hold lapsing 10 ms after that sweep (under the
    // gap) is swept a full gap later, at 5,040 ms.
    assert_eq!(SWEEP_GAP_MIN_MS, 20);
    let store = Arc::new(MemoryStore::new(shop(5_000), Clock::tokio(0)));
    let counting = Counting::new(Arc::clone(&store) as Arc<dyn Store>);
    let dyn_store = Arc::clone(&counting) as Arc<dyn Store>;
    let start = Instant::now();
    reserved(&*dyn_store, "a").await;
    reserved(&*dyn_store, "b").await;
    let sweeper = tokio::spawn(stampede_server::run_sweeper(
        app(Arc::clone(&dyn_store)),
        WorkerConfig {
            sweep_batch: 1,
            ..config(1_000, 2_000)
        },
    ));
    sleep(Duration::from_millis(30)).await;
    reserved(&*dyn_store, "c").await;
    sleep(Duration::from_millis(5_100)).await;
    sweeper.abort();
    let sweeps: Vec<u128> = counting
        .ops("expire_reservations")
        .iter()
        .map(|c| ms(c.asked - start))
        .collect();
    assert_eq!(sweeps, vec![2_000, 4_000, 5_000, 5_020, 5_040]);
    assert_eq!(store.read(|s| s.inventory().reservations().count()), 0);
}
