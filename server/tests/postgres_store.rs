//! The PostgreSQL store against its oracle, the in-memory store, with two
//! replicas on one database; and at its edges: the databases it refuses, a
//! connection killed under it, replicas writing at once.
//!
//! These tests need a PostgreSQL server: `STAMPEDE_TEST_PG` (a URL whose
//! user may create databases), or the `PG*` variables `pg_virtualenv`
//! sets. Without one they say loudly that they did not run — and with
//! `STAMPEDE_REQUIRE_PG` set (CI sets it) they fail instead.

mod common;

use common::{Action, Differential, Subject, action, manual_clock, runtime, state};
use proptest::prelude::*;
use stampede_core::{
    Begin, Cause, Command, CustomerId, Fingerprint, IdempotencyKey, ItemRequest, JobKind,
    OrderStatus, PlaceOrder, Placed, ShopState, Sku,
};
use stampede_server::Clock;
use stampede_server::store::Store;
use stampede_server::store::StoreFuture;
use stampede_server::store::postgres::{self, PgOpenError, PgOptions, PgStore};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Ends every Stampede session on the database at `url` (as a failover or
/// an operator would): its replicas' connections are gone.
async fn cut_off_replicas(url: &str) {
    client(url)
        .await
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'stampede' AND datname = current_database() \
             AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
}

fn options(url: &str, checkpoint_every: u64) -> PgOptions {
    PgOptions {
        checkpoint_min_commands: checkpoint_every,
        ..PgOptions::new(url)
    }
}

async fn open(options: &PgOptions, clock: &Clock) -> Arc<PgStore> {
    let opened = postgres::open(options, 0, || Ok(state()))
        .await
        .expect("opens");
    PgStore::start(opened, clock.clone())
}

/// Two replicas of the PostgreSQL store on one database; commands alternate between them.
struct Replicas {
    stores: Vec<Arc<PgStore>>,
    options: PgOptions,
    clock: Clock,
}

impl Subject for Replicas {
    fn replicas(&self) -> usize {
        self.stores.len()
    }

    fn call(&self, replica: usize, command: Command) -> StoreFuture<'_> {
        self.stores[replica].call(command)
    }

    fn restart(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> {
        Box::pin(async move {
            let n = self.stores.len();
            // Every reply was released after its commit: dropping loses nothing revealed.
            self.stores.clear();
            for _ in 0..n {
                self.stores.push(open(&self.options, &self.clock).await);
            }
        })
    }

    fn state(&self, replica: usize) -> ShopState {
        self.stores[replica].read(ShopState::clone)
    }
}

async fn pair(name: &str, checkpoint_every: u64) -> Option<Differential<Replicas>> {
    let url = postgres::test_database(name).await?;
    let (clock, now) = manual_clock();
    // The oracle knows no holders: here a restarted replica's keys and leases stay held, as
    // memory's do, until the workload's own `ReleaseOrphans` (the reaper is tested apart).
    let options = PgOptions {
        free_dead_replicas: false,
        ..options(&url, checkpoint_every)
    };
    let stores = vec![open(&options, &clock).await, open(&options, &clock).await];
    let subject = Replicas {
        stores,
        options,
        clock: clock.clone(),
    };
    Some(Differential::new(subject, &clock, now))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Proves: for random workloads sent alternately to two replicas on one database, with
    /// restarts of both anywhere and checkpoints every few commands (so a replica often finds
    /// the log truncated past its position and reloads), every answer is the in-memory
    /// store's, and both replicas' whole states equal memory's at the end and after a restart.
    #[test]
    fn two_postgres_replicas_answer_as_the_memory_store_across_restarts(
        actions in proptest::collection::vec(action(), 1..60),
        checkpoint_every in 1u64..30,
    ) {
        runtime().block_on(async {
            let Some(mut pair) = pair("differential", checkpoint_every).await else {
                return;
            };
            for action in actions {
                pair.step(action).await;
            }
            pair.assert_same().await;
            pair.restart().await;
            pair.assert_same().await;
        });
    }
}

fn place(customer: u8, qty: u32) -> Action {
    Action::Place {
        customer,
        sku: 0,
        qty,
        key: None,
        express: false,
    }
}

#[test]
fn a_waitlist_closed_by_a_payment_is_the_same_on_both_replicas() {
    // Proves: the rarely reached path (an order waiting for units unpaid holds could give back,
    // a restart while it waits, payments that pin the units and cancel the waiter with its
    // parked job withdrawn) answers and ends on two PostgreSQL replicas as in memory.
    runtime().block_on(async {
        let Some(mut pair) = pair("waitlist", 3).await else {
            return;
        };
        let work = || Action::Work {
            fail: false,
            jitter: 0,
        };
        pair.step(place(0, 3)).await;
        pair.step(place(1, 3)).await;
        for _ in 0..4 {
            pair.step(work()).await;
        }
        pair.step(place(2, 1)).await;
        pair.step(work()).await;
        assert_eq!(pair.status(2), OrderStatus::Created, "waiting");
        pair.restart().await;
        pair.assert_same().await;
        pair.step(Action::Pay {
            order: 0,
            copy: 0,
            stray: 0,
        })
        .await;
        pair.step(Action::Pay {
            order: 1,
            copy: 0,
            stray: 0,
        })
        .await;
        assert_eq!(
            pair.status(2),
            OrderStatus::Cancelled(stampede_core::CancelReason::OutOfStock)
        );
        pair.assert_same().await;
    });
}

fn request(n: u32) -> PlaceOrder {
    PlaceOrder {
        key: Some(IdempotencyKey::new(format!("k{n}")).unwrap()),
        customer: CustomerId::new(format!("c{n}")).unwrap(),
        items: vec![ItemRequest {
            sku: Sku::new("hat").unwrap(),
            qty: 1,
        }],
        express: false,
    }
}

#[test]
fn replicas_writing_at_once_agree_on_one_history_and_never_oversell() {
    // Proves: two replicas placing and reserving concurrently on one hot SKU (6 units, 24
    // orders, every order placed twice with its key, once on each replica) serialize through
    // the shared log: each key makes one order, no more than 6 units are reserved, and a third
    // replica opened afterwards replays the log into exactly the state both replicas hold.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("concurrent").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let options = options(&url, 1_000_000);
        let a = open(&options, &clock).await;
        let b = open(&options, &clock).await;
        let mut placing = Vec::new();
        for n in 0..24 {
            for store in [&a, &b] {
                let store = Arc::clone(store);
                placing.push(tokio::spawn(async move {
                    let store: &dyn Store = &*store;
                    store.place_order(request(n)).await.unwrap()
                }));
            }
        }
        for placed in placing {
            let placed = placed.await.unwrap();
            assert!(
                matches!(placed, Placed::Created { .. } | Placed::Replay(_)),
                "{placed:?}"
            );
        }
        assert_eq!(a.read(|s| s.order_count()), 24, "one order per key");
        // Both replicas work the jobs at once until none is runnable.
        let mut working = Vec::new();
        for store in [&a, &b] {
            let store = Arc::clone(store);
            working.push(tokio::spawn(async move {
                let store: &dyn Store = &*store;
                while let Some(lease) = store.lease_job().await.unwrap() {
                    if lease.kind == JobKind::Reserve {
                        let cause = Cause::Worker { job: lease.job };
                        store.reserve(lease.order, cause).await.unwrap();
                    }
                    store.ack_job(lease).await.unwrap();
                }
            }));
        }
        for worker in working {
            worker.await.unwrap();
        }
        let (sa, sb): (&dyn Store, &dyn Store) = (&*a, &*b);
        let audit = sa.audit().await.unwrap();
        assert_eq!(audit, sb.audit().await.unwrap(), "the replicas agree");
        let hat = Sku::new("hat").unwrap();
        let level = a.read(|s| s.inventory().level(&hat).unwrap());
        assert!(level.reserved + level.sold <= 6, "oversold: {level:?}");
        assert_eq!(level.reserved, 6, "every unit went to some order");
        let c = open(&options, &clock).await;
        let sc: &dyn Store = &*c;
        sc.stats().await.unwrap();
        assert!(c.read(ShopState::clone) == a.read(ShopState::clone));
        assert!(b.read(ShopState::clone) == a.read(ShopState::clone));
    });
}

#[test]
fn a_replica_whose_connection_is_killed_answers_unavailable_then_recovers_losing_nothing() {
    // Proves: when the database ends a replica's connection (as a failover or an operator
    // would), the call in flight is answered `Unavailable` or succeeds — never a wrong answer —
    // the replica reconnects and reloads on its next call, and every order acknowledged
    // before or after is there, as a fresh replica reading the database confirms.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("killed").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let options = options(&url, 1_000_000);
        let a = open(&options, &clock).await;
        let store: &dyn Store = &*a;
        let mut acknowledged = Vec::new();
        for n in 0..3 {
            acknowledged.push(store.place_order(request(n)).await.unwrap());
        }
        cut_off_replicas(&url).await;
        // The next call may find the connection gone; the one after reconnects.
        let mut answered = None;
        for _ in 0..3 {
            match store.place_order(request(3)).await {
                Ok(placed) => {
                    answered = Some(placed);
                    break;
                }
                Err(stampede_server::store::StoreError::Unavailable(_)) => {}
                Err(other) => panic!("not a wrong answer: {other:?}"),
            }
        }
        acknowledged.push(answered.expect("the replica reconnected"));
        let fresh = open(&options, &clock).await;
        for placed in acknowledged {
            if let Placed::Created { order, .. } = placed {
                assert!(fresh.read(|s| s.order(order).is_some()), "{order} lost");
            }
        }
        assert_eq!(fresh.read(|s| s.order_count()), 4);
    });
}

#[test]
fn a_waiting_worker_on_one_replica_is_woken_by_a_job_enqueued_on_another() {
    // Proves: LISTEN/NOTIFY carries "a job may be runnable" between replicas: a lease waiting
    // up to 30 s on replica B returns the job an order placed on replica A enqueued, long
    // before its wait is over (without the notification it would return only at the end).
    runtime().block_on(async {
        let Some(url) = postgres::test_database("wake").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let options = options(&url, 1_000_000);
        let a = open(&options, &clock).await;
        let b = open(&options, &clock).await;
        let waiting = {
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let store: &dyn Store = &*b;
                let lease = store.lease_job_wait(30_000).await.unwrap();
                (lease, started.elapsed())
            })
        };
        // Let B's worker settle into its wait first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sa: &dyn Store = &*a;
        sa.place_order(request(1)).await.unwrap();
        let (lease, waited) = waiting.await.unwrap();
        let lease = lease.expect("B leased A's job");
        assert_eq!(lease.kind, JobKind::Reserve);
        assert!(
            waited < Duration::from_secs(15),
            "woken by the notification, not the end of the wait ({waited:?})"
        );
    });
}

async fn open_error(url: &str) -> PgOpenError {
    postgres::open(&PgOptions::new(url), 0, || Ok(state()))
        .await
        .expect_err("refused")
}

#[test]
fn a_database_of_another_program_is_refused_and_left_alone() {
    // Proves: a database holding someone else's tables is refused as foreign (exit-2 error
    // naming it), and nothing is created in it; `reset` refuses it too.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("foreign").await else {
            return;
        };
        let admin = client(&url).await;
        admin
            .batch_execute("CREATE TABLE invoices (id INT PRIMARY KEY)")
            .await
            .unwrap();
        let error = open_error(&url).await;
        assert!(matches!(error, PgOpenError::Foreign { .. }), "{error}");
        assert!(error.to_string().contains("not a Stampede database"));
        let reset = postgres::reset(&PgOptions::new(url.clone())).await;
        assert!(matches!(reset, Err(PgOpenError::Foreign { .. })));
        let tables: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(tables, 1, "only the other program's table");
    });
}

#[test]
fn a_database_of_another_schema_version_is_refused_and_reset_only_drops_ours() {
    // Proves: a Stampede database whose schema version this build does not know is refused
    // with the version named; one of this version opens; `reset` drops Stampede's tables (a
    // fresh start for `stampede load`) and the next open creates a new shop.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("version").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let first = open(&PgOptions::new(url.clone()), &clock).await;
        let s: &dyn Store = &*first;
        s.place_order(request(1)).await.unwrap();
        drop(first);
        let admin = client(&url).await;
        admin
            .batch_execute("UPDATE stampede_meta SET value = '3' WHERE key = 'schema_version'")
            .await
            .unwrap();
        let error = open_error(&url).await;
        assert!(
            matches!(&error, PgOpenError::Version { found, .. } if found == "3"),
            "{error}"
        );
        // Nor does `reset` drop the tables of a newer build's database.
        let refused = postgres::reset(&PgOptions::new(url.clone())).await;
        assert!(
            matches!(&refused, Err(PgOpenError::Version { found, .. }) if found == "3"),
            "{refused:?}"
        );
        admin
            .batch_execute("UPDATE stampede_meta SET value = '2' WHERE key = 'schema_version'")
            .await
            .unwrap();
        let opened = postgres::open(&PgOptions::new(url.clone()), 0, || Ok(state()))
            .await
            .unwrap();
        assert!(!opened.created());
        assert_eq!(opened.state().order_count(), 1);
        drop(opened);
        postgres::reset(&PgOptions::new(url.clone())).await.unwrap();
        let opened = postgres::open(&PgOptions::new(url.clone()), 0, || Ok(state()))
            .await
            .unwrap();
        assert!(opened.created());
        assert_eq!(opened.state().order_count(), 0);
    });
}

#[test]
fn replicas_opening_an_empty_database_at_once_all_open_one_creates_it() {
    // Proves (found from outside: every replica but one exited "relation stampede_meta already
    // exists", every time): replicas started together on an empty database all open the one
    // shop — exactly one of them created it — and they see the same state.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("at_once").await else {
            return;
        };
        let options = PgOptions::new(url.clone());
        let open = || postgres::open(&options, 0, || Ok(state()));
        let (a, b, c, d) = tokio::join!(open(), open(), open(), open());
        let mut created = 0;
        for o in [&a, &b, &c, &d] {
            let o = o
                .as_ref()
                .unwrap_or_else(|e| panic!("a replica did not open: {e}"));
            created += usize::from(o.created());
        }
        assert_eq!(created, 1);
    });
}

#[test]
fn a_write_behind_a_log_lock_held_too_long_is_answered_unavailable_not_held_forever() {
    // Proves (found from outside: a replica paused inside its write transaction froze every
    // request of every replica with no end): a write that cannot get the log's lock is answered
    // `Unavailable` in bounded time (PostgreSQL's lock wait gives up first), and once the lock
    // is let go the replica writes again, losing nothing.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("lock_held").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let store = open(&PgOptions::new(url.clone()), &clock).await;
        let s: &dyn Store = &*store;
        s.place_order(request(1)).await.unwrap();
        let mut holder = client(&url).await;
        let tx = holder.transaction().await.unwrap();
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&postgres::LOG_LOCK])
            .await
            .unwrap();
        let held = tokio::time::timeout(Duration::from_secs(40), s.place_order(request(2)))
            .await
            .expect("answered while the lock is held");
        assert!(
            matches!(
                held,
                Err(stampede_server::store::StoreError::Unavailable(_))
            ),
            "{held:?}"
        );
        tx.rollback().await.unwrap();
        s.place_order(request(3)).await.unwrap();
        let fresh = open(&PgOptions::new(url.clone()), &clock).await;
        assert_eq!(fresh.read(|s| s.order_count()), 2);
    });
}

#[test]
fn a_replica_whose_database_was_reset_under_it_refuses_to_write_into_the_new_one() {
    // Proves (found from outside: replicas cut off while `load --store` reset their database
    // went on appending to the new shop's log at their old positions, until no replica could
    // open it): a replica that reconnects to a database whose shop is not the one it opened
    // answers `Unavailable` saying so, and writes nothing there.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("reset_under").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let options = PgOptions::new(url.clone());
        let a = open(&options, &clock).await;
        let s: &dyn Store = &*a;
        s.place_order(request(1)).await.unwrap();
        cut_off_replicas(&url).await;
        postgres::reset(&options).await.unwrap();
        let made = postgres::open(&options, 1, || Ok(state())).await.unwrap();
        assert!(made.created());
        drop(made);
        for _ in 0..3 {
            let refused = s.place_order(request(2)).await;
            let Err(stampede_server::store::StoreError::Unavailable(why)) = &refused else {
                panic!("not refused: {refused:?}");
            };
            if why.contains("reset under this replica") {
                let fresh = open(&options, &clock).await;
                assert_eq!(fresh.read(|s| s.order_count()), 0, "nothing written there");
                return;
            }
        }
        panic!("the replica never said its database was reset");
    });
}

#[test]
fn reset_refuses_a_database_live_replicas_serve() {
    // Proves (found from outside: `load --store` dropped the tables under running replicas,
    // which went on appending to the new log until no replica could open it): `reset` refuses
    // while a replica is serving, leaving its orders; once that replica is gone it resets.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("reset_live").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let options = PgOptions::new(url.clone());
        let live = open(&options, &clock).await;
        let s: &dyn Store = &*live;
        s.place_order(request(1)).await.unwrap();
        let refused = postgres::reset(&options).await;
        assert!(
            matches!(&refused, Err(PgOpenError::InUse { replicas: 1, .. })),
            "{refused:?}"
        );
        let still = open(&options, &clock).await;
        assert_eq!(still.read(|s| s.order_count()), 1);
        drop(still);
        drop(live);
        postgres::reset(&options).await.unwrap();
        let opened = postgres::open(&options, 0, || Ok(state())).await.unwrap();
        assert!(opened.created());
    });
}

#[test]
fn a_version_1_database_is_upgraded_at_open_and_its_log_still_replays() {
    // Proves: a database laid out as version 1 wrote it (no holder column, no holders table),
    // holding a checkpoint and one logged order, opens: it is upgraded to this version in
    // place (schema_version 2, the holders table there), the logged order is replayed, and
    // the upgraded database takes new orders — logged with this replica's holder.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("upgrade").await else {
            return;
        };
        let admin = client(&url).await;
        admin.batch_execute(postgres::MIGRATIONS[0]).await.unwrap();
        let checkpoint = serde_json::to_string(&state()).unwrap();
        let placed = Command::PlaceOrder {
            request: request(1),
        };
        let logged = serde_json::to_string(&placed).unwrap();
        admin
            .execute(
                "INSERT INTO stampede_meta (key, value) VALUES ('application', 'stampede'),
                 ('schema_version', '1'), ('epoch_unix_ms', '0'), ('created_by', 'test')",
                &[],
            )
            .await
            .unwrap();
        admin
            .execute(
                "INSERT INTO stampede_checkpoint (id, seq, at_ms, state) VALUES (1, 0, 0, $1)",
                &[&checkpoint],
            )
            .await
            .unwrap();
        admin
            .execute(
                "INSERT INTO stampede_log (seq, at_ms, op, command)
                 VALUES (1, 5, 'place_order', $1)",
                &[&logged],
            )
            .await
            .unwrap();
        let (clock, _now) = manual_clock();
        let store = open(&options(&url, 1_000), &clock).await;
        assert_eq!(store.read(|s| s.order_count()), 1, "the v1 log replayed");
        let version: String = admin
            .query_one(
                "SELECT value FROM stampede_meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, postgres::SCHEMA_VERSION.to_string());
        let s: &dyn Store = &*store;
        s.place_order(request(2)).await.unwrap();
        assert_eq!(store.read(|s| s.order_count()), 2);
        let holders: Vec<Option<i64>> = admin
            .query("SELECT holder FROM stampede_log ORDER BY seq", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(holders.len(), 2, "{holders:?}");
        assert_eq!(holders[0], None, "the v1 row");
        assert!(holders[1].is_some(), "the new row is this replica's");
    });
}

#[test]
fn a_gone_replicas_keys_in_flight_and_leases_are_freed_by_the_others_at_once() {
    // Proves: when replica A's connection to the database ends (its store dropped, as a
    // process killed mid-request leaves things), replica B's reaper frees what A held —
    // A's `/pay` key begins anew on B and A's leased job is leased again on B — within a few
    // reaper rounds, while the clock stands still (so neither the key's 30 s in-flight
    // timeout nor the lease's visibility timeout can be why); B's own key stays in flight.
    // B's reaper has lost its own connection first: it reconnects and goes on.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("reaper").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let options = options(&url, 1_000_000);
        let (a, b) = (open(&options, &clock).await, open(&options, &clock).await);
        let (sa, sb): (&dyn Store, &dyn Store) = (&*a, &*b);
        sa.place_order(request(1)).await.unwrap();
        let key = |k: &str| IdempotencyKey::new(k).unwrap();
        let fp = Fingerprint::of(b"pay");
        assert_eq!(sa.begin_key(key("pay-a"), fp).await.unwrap(), Begin::New);
        assert_eq!(sb.begin_key(key("pay-b"), fp).await.unwrap(), Begin::New);
        let held = sa.lease_job().await.unwrap().expect("the reserve job");
        assert_eq!(
            sb.begin_key(key("pay-a"), fp).await.unwrap(),
            Begin::InFlight
        );
        assert!(sb.lease_job().await.unwrap().is_none(), "A holds it");
        let admin = client(&url).await;
        let reapers = "FROM pg_stat_activity WHERE datname = current_database() \
                       AND query LIKE '%FROM stampede_holders h%' AND pid <> pg_backend_pid()";
        // Both reapers have looked once (each looks as soon as it has connected).
        let mut looked = 0;
        for _ in 0..100 {
            let count = format!("SELECT count(*) {reapers}");
            looked = admin.query_one(&count, &[]).await.unwrap().get::<_, i64>(0);
            if looked == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(looked, 2, "A's and B's reaper connections");
        let end = format!("SELECT count(pg_terminate_backend(pid)) {reapers}");
        let ended: i64 = admin.query_one(&end, &[]).await.unwrap().get(0);
        assert_eq!(ended, 2, "both reaper connections ended");
        drop(a);
        let mut freed = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if sb.begin_key(key("pay-a"), fp).await.unwrap() == Begin::New {
                freed = true;
                break;
            }
        }
        assert!(freed, "A's key still in flight 10 s after A was gone");
        let again = sb.lease_job().await.unwrap().expect("A's job, free again");
        assert_eq!((again.job, again.attempt), (held.job, 2));
        assert_eq!(
            sb.begin_key(key("pay-b"), fp).await.unwrap(),
            Begin::InFlight
        );
        let registered: i64 = admin
            .query_one("SELECT count(*) FROM stampede_holders", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(registered, 1, "A forgotten once freed; B still registered");
    });
}

#[test]
fn an_unreachable_server_and_a_bad_url_are_named_with_the_password_hidden() {
    // Proves: nothing listening → Unreachable, naming the URL without its password; a URL
    // that does not parse → BadUrl. Needs no PostgreSQL.
    runtime().block_on(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = open_error(&format!("postgres://shop:s3cret@127.0.0.1:{port}/x")).await;
        assert!(matches!(error, PgOpenError::Unreachable { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("cannot reach PostgreSQL"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let error = open_error("postgres://shop:s3cret@127.0.0.1:notaport/x").await;
        assert!(matches!(error, PgOpenError::BadUrl { .. }), "{error}");
        assert!(!error.to_string().contains("s3cret"));
    });
}

#[test]
fn every_acknowledged_command_is_in_the_log_with_its_op() {
    // Proves: a reply is released after its command is committed to the shared log: once
    // `place_order` answers, another connection reads its row (op `place_order`), and reads
    // are not logged.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("logged").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let a = open(&options(&url, 1_000_000), &clock).await;
        let s: &dyn Store = &*a;
        s.place_order(request(7)).await.unwrap();
        s.catalog().await.unwrap();
        let admin = client(&url).await;
        let ops: Vec<String> = admin
            .query("SELECT op FROM stampede_log ORDER BY seq", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ops, ["place_order"]);
        assert!(
            s.get_order(stampede_core::OrderId(1))
                .await
                .unwrap()
                .is_some()
        );
    });
}

#[test]
fn a_replica_starts_its_clock_at_the_databases_time_and_never_before_its_log() {
    // Proves: a replica's clock reads milliseconds since the database's creation (its epoch,
    // kept across opens), and never starts before the last logged command's time, so deadlines
    // stored as times keep their meaning whatever the new replica's own clock says.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("clock").await else {
            return;
        };
        let epoch = 1_700_000_000_000;
        let options = PgOptions::new(url.clone());
        let opened = postgres::open(&options, epoch, || Ok(state()))
            .await
            .unwrap();
        assert_eq!(opened.epoch_unix_ms(), epoch);
        assert_eq!(opened.start_at(epoch + 2_000), stampede_core::Millis(2_000));
        let (clock, now) = manual_clock();
        now.store(7_000, std::sync::atomic::Ordering::SeqCst);
        let store = PgStore::start(opened, clock);
        let s: &dyn Store = &*store;
        s.place_order(request(1)).await.unwrap();
        drop(store);
        // Opened later with another "now": the epoch is the database's, not this call's.
        let again = postgres::open(&options, epoch + 99_000, || Ok(state()))
            .await
            .unwrap();
        assert_eq!(again.epoch_unix_ms(), epoch);
        assert_eq!(
            again.start_at(epoch + 2_000),
            stampede_core::Millis(7_000),
            "not before the logged order"
        );
        assert_eq!(
            again.start_at(epoch + 10_000),
            stampede_core::Millis(10_000)
        );
    });
}

#[test]
fn an_idle_worker_waits_with_reads_and_writes_no_empty_lease_to_the_log() {
    // Proves: a lease wait that finds no job catches up with reads only: after waiting on an
    // empty queue (woken meanwhile by another replica's notification) it answers no lease and
    // the shared log holds no `lease_job` row — only the command that woke it.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("idle").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let options = options(&url, 1_000_000);
        let a = open(&options, &clock).await;
        let b = open(&options, &clock).await;
        let waiting = {
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                let store: &dyn Store = &*b;
                store.lease_job_wait(1_500).await.unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A command that may make a job runnable (and makes none): B is woken, finds nothing.
        let sa: &dyn Store = &*a;
        sa.restock(Sku::new("hat").unwrap(), 1).await.unwrap();
        assert_eq!(waiting.await.unwrap(), None);
        let ops: Vec<String> = client(&url)
            .await
            .query("SELECT op FROM stampede_log ORDER BY seq", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ops, ["restock"]);
    });
}

async fn checkpoint_seq(url: &str) -> i64 {
    client(url)
        .await
        .query_one("SELECT seq FROM stampede_checkpoint", &[])
        .await
        .unwrap()
        .get(0)
}

#[test]
fn a_checkpoint_comes_every_n_logged_commands_not_before() {
    // Proves: the checkpoint cadence on both sides of its bound: with a checkpoint due every 5
    // logged commands (few orders held), 4 leave the checkpoint at the start and the 5th writes
    // it at position 5; the log then still holds every command since the previous checkpoint.
    runtime().block_on(async {
        let Some(url) = postgres::test_database("cadence").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let store = open(&options(&url, 5), &clock).await;
        let s: &dyn Store = &*store;
        for _ in 0..4 {
            s.restock(Sku::new("hat").unwrap(), 1).await.unwrap();
        }
        assert_eq!(checkpoint_seq(&url).await, 0, "4 < 5: no checkpoint yet");
        s.restock(Sku::new("hat").unwrap(), 1).await.unwrap();
        assert_eq!(
            checkpoint_seq(&url).await,
            5,
            "the 5th logged command checkpoints"
        );
    });
}

#[test]
fn a_dropped_store_lets_go_of_its_connections() {
    // Proves: dropping a replica's store ends its writer and its listener: within a few
    // seconds no Stampede connection to the database is left (a writer that kept looping on a
    // closed queue would keep its connection, and query, forever).
    runtime().block_on(async {
        let Some(url) = postgres::test_database("dropped").await else {
            return;
        };
        let (clock, _now) = manual_clock();
        let store = open(&options(&url, 1_000), &clock).await;
        let s: &dyn Store = &*store;
        s.restock(Sku::new("hat").unwrap(), 1).await.unwrap();
        drop(store);
        let admin = client(&url).await;
        let mut left = i64::MAX;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE application_name = 'stampede' AND datname = current_database()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                break;
            }
        }
        assert_eq!(left, 0, "connections left after the store was dropped");
    });
}
