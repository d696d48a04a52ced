//! The SQLite store against its oracle, the in-memory store, and at its
//! edges: the file it refuses, the restarts it survives, the commit that
//! fails.

mod common;

use common::{Action, Differential, SKUS, Subject, action, manual_clock, runtime, state};
use proptest::prelude::*;
use rusqlite::Connection;
use stampede_core::{
    CancelReason, Cause, Cents, Command, CustomerId, IdempotencyKey, IntentId, IntentStatus,
    ItemRequest, JobKind, Millis, OrderStatus, PaymentIntent, PlaceOrder, Placed, Reply,
    SavedResponse, ShopState, Sku,
};
use stampede_server::Clock;
use stampede_server::store::StoreFuture;
use stampede_server::store::sqlite::SqliteStore;
use stampede_server::store::sqlite::{self, OpenError, SqliteOptions, SyncLevel};
use stampede_server::store::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A fresh path in the temp directory (removed with its WAL and lock files on drop).
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> TempDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("stampede-{name}-{}-{n}.db", std::process::id()));
        let db = TempDb(path);
        db.remove();
        db
    }

    /// What a crash would leave of this database now: a copy of its file
    /// and its WAL (every acknowledged command is committed in them), taken
    /// while the store is still open — so without the checkpoint a store
    /// writes when it is closed.
    fn crash_image(&self, name: &str) -> TempDb {
        let image = TempDb::new(name);
        for suffix in ["", "-wal"] {
            let (mut from, mut to) = (
                self.0.clone().into_os_string(),
                image.0.clone().into_os_string(),
            );
            from.push(suffix);
            to.push(suffix);
            if std::path::Path::new(&from).exists() {
                std::fs::copy(&from, &to).unwrap();
            }
        }
        image
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm", "-lock"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }

    fn options(&self) -> SqliteOptions {
        SqliteOptions {
            sync: SyncLevel::Normal,
            ..SqliteOptions::new(&self.0)
        }
    }

    /// Options that checkpoint every `n` commands (with few orders held).
    fn checkpointing(&self, n: u64) -> SqliteOptions {
        SqliteOptions {
            checkpoint_min_commands: n,
            ..self.options()
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

fn open_store(db: &TempDb, clock: &Clock) -> Arc<SqliteStore> {
    open_with(&db.options(), clock)
}

fn open_with(options: &SqliteOptions, clock: &Clock) -> Arc<SqliteStore> {
    let recovered = sqlite::open(options, 0, || Ok(state())).expect("opens");
    SqliteStore::start(recovered, clock.clone()).expect("starts")
}

/// The SQLite store as the store under test: one replica, reopened on restart.
struct Sqlite {
    store: Option<Arc<SqliteStore>>,
    db: TempDb,
    options: SqliteOptions,
    clock: Clock,
}

impl Subject for Sqlite {
    fn replicas(&self) -> usize {
        1
    }

    fn call(&self, _replica: usize, command: Command) -> StoreFuture<'_> {
        self.store
            .as_ref()
            .expect("open outside restart")
            .call(command)
    }

    fn restart(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> {
        // Replies were released only after their commits, so dropping the
        // store here loses nothing any reply revealed.
        // The old store goes first (its writer commits what is queued and lets go of the
        // file), as a restarted process would find it.
        self.store = None;
        self.store = Some(open_with(&self.options, &self.clock));
        assert!(self.db.0.exists());
        Box::pin(async {})
    }

    fn state(&self, _replica: usize) -> ShopState {
        self.store.as_ref().expect("open").read(ShopState::clone)
    }
}

type Pair = Differential<Sqlite>;

/// The SQLite store (checkpointing every `checkpoint_every` commands) against memory.
fn sqlite_pair(checkpoint_every: u64) -> Pair {
    let (clock, now) = manual_clock();
    let db = TempDb::new("differential");
    let options = db.checkpointing(checkpoint_every);
    let subject = Sqlite {
        store: Some(open_with(&options, &clock)),
        db,
        options,
        clock: clock.clone(),
    };
    Differential::new(subject, &clock, now)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Proves: for random workloads with restarts anywhere and checkpoints every few commands
    /// (so restarts land before, between and after checkpoints), the SQLite store answers every
    /// command exactly as the in-memory store does, and after a final restart its whole state
    /// (orders, stock, keys, jobs, inbox, feed) equals the memory store's.
    #[test]
    fn sqlite_store_answers_as_the_memory_store_across_restarts(
        actions in proptest::collection::vec(action(), 1..80),
        checkpoint_every in 1u64..40,
    ) {
        runtime().block_on(async {
            let mut pair = sqlite_pair(checkpoint_every);
            for action in actions {
                pair.step(action).await;
            }
            pair.assert_same().await;
            pair.restart().await;
            pair.assert_same().await;
        });
    }
}

#[test]
fn a_waitlist_a_payment_sells_out_is_closed_the_same_way_across_a_restart() {
    // Proves: the path the random workloads rarely reach — an order waiting for units that
    // unpaid holds could give back, a restart while it waits, then payments that pin those
    // units and cancel the waiter in the same operation (its parked job withdrawn) — answers
    // and ends the same in the SQLite store as in memory, before and after a final restart.
    runtime().block_on(async {
        let mut pair = sqlite_pair(3);
        let place = |customer, qty| Action::Place {
            customer,
            sku: 0,
            qty,
            key: None,
            express: false,
        };
        let work = || Action::Work {
            fail: false,
            jitter: 0,
        };
        // Two carts take all 6 units and reach payment_pending (reserve, then intent, each).
        pair.step(place(0, 3)).await;
        pair.step(place(1, 3)).await;
        for _ in 0..4 {
            pair.step(work()).await;
        }
        // A third order finds the shelf empty while both holds could still lapse: it waits.
        pair.step(place(2, 1)).await;
        pair.step(work()).await;
        let status = |pair: &Pair, n: usize| pair.status(n);
        assert_eq!(status(&pair, 0), OrderStatus::PaymentPending);
        assert_eq!(status(&pair, 1), OrderStatus::PaymentPending);
        assert_eq!(status(&pair, 2), OrderStatus::Created, "waiting");
        pair.restart().await;
        pair.assert_same().await;
        pair.step(Action::Pay {
            order: 0,
            copy: 0,
            stray: 0,
        })
        .await;
        assert_eq!(status(&pair, 2), OrderStatus::Created, "hope is left");
        pair.step(Action::Pay {
            order: 1,
            copy: 0,
            stray: 0,
        })
        .await;
        assert_eq!(
            status(&pair, 2),
            OrderStatus::Cancelled(CancelReason::OutOfStock),
            "cancelled by the payment itself, no job run"
        );
        pair.assert_same().await;
        pair.restart().await;
        pair.assert_same().await;
    });
}

#[test]
fn a_reopened_store_has_every_acknowledged_order_and_resumes_its_clock() {
    // Proves: orders acknowledged before the store is dropped are all there after reopening,
    // replaying a key answers the same order, the log was replayed (then folded into a
    // checkpoint), and the reopened clock may not start before the last logged command.
    let db = TempDb::new("reopen");
    let (clock, now) = manual_clock();
    let rt = runtime();
    let store = open_store(&db, &clock);
    let mut placed = Vec::new();
    rt.block_on(async {
        for n in 0..5 {
            now.store(1_000 * n, Ordering::SeqCst);
            let request = PlaceOrder {
                key: Some(IdempotencyKey::new(format!("k{n}")).unwrap()),
                customer: CustomerId::new("alice").unwrap(),
                items: vec![ItemRequest {
                    sku: Sku::new("hat").unwrap(),
                    qty: 1,
                }],
                express: false,
            };
            let reply = store
                .call(Command::PlaceOrder {
                    request: request.clone(),
                })
                .await
                .unwrap();
            placed.push((request, reply));
        }
    });
    let image = db.crash_image("reopen-crashed");
    drop(store);
    let closed = sqlite::open(&db.options(), 0, || panic!("not fresh")).unwrap();
    assert_eq!(
        closed.replayed(),
        0,
        "a closed store checkpointed on closing"
    );
    assert_eq!(closed.state().orders().count(), 5);
    assert_eq!(closed.resume_at(), Millis(4_000));
    drop(closed);
    let db = image;
    let recovered = sqlite::open(&db.options(), 0, || panic!("not fresh")).unwrap();
    assert!(!recovered.created());
    assert_eq!(
        recovered.replayed(),
        5,
        "five commands logged since the checkpoint"
    );
    assert_eq!(recovered.resume_at(), Millis(4_000));
    assert_eq!(
        recovered.start_at(1_000),
        Millis(4_000),
        "never before the log"
    );
    assert_eq!(
        recovered.start_at(9_000),
        Millis(9_000),
        "wall time since the epoch"
    );
    assert_eq!(recovered.state().orders().count(), 5);
    let store = SqliteStore::start(recovered, clock.clone()).unwrap();
    rt.block_on(async {
        for (request, reply) in placed {
            let again = store.call(Command::PlaceOrder { request }).await.unwrap();
            let (Reply::Placed(Placed::Created { order: first, .. }), Reply::Placed(replayed)) =
                (reply, again)
            else {
                panic!("placed");
            };
            assert!(
                matches!(replayed, Placed::Replay(SavedResponse::OrderAccepted { order, .. }) if order == first),
                "{replayed:?}"
            );
        }
    });
    // The first reopen folded the log into a checkpoint; replays of keys changed nothing
    // but were logged (they are commands), so a crash now leaves only those to replay.
    let crashed = db.crash_image("reopen-crashed-again");
    drop(store);
    let again = sqlite::open(&crashed.options(), 0, || panic!("not fresh")).unwrap();
    assert_eq!(again.replayed(), 5);
    assert_eq!(again.state().orders().count(), 5);
}

#[test]
fn the_query_tables_show_the_checkpointed_state() {
    // Proves: after a reopen (which checkpoints), the plain tables hold the orders, their
    // lines and transitions, the stock and the keys, readable with plain SQL.
    let db = TempDb::new("tables");
    let (clock, _now) = manual_clock();
    let store = open_store(&db, &clock);
    runtime().block_on(async {
        let request = PlaceOrder {
            key: Some(IdempotencyKey::new("k-1").unwrap()),
            customer: CustomerId::new("bob").unwrap(),
            items: vec![ItemRequest {
                sku: Sku::new("scarf").unwrap(),
                qty: 2,
            }],
            express: false,
        };
        store.call(Command::PlaceOrder { request }).await.unwrap();
        let Reply::Lease(Some(lease)) = store.call(Command::LeaseJob).await.unwrap() else {
            panic!("a reserve job");
        };
        store
            .call(Command::Reserve {
                order: lease.order,
                cause: Cause::Worker { job: lease.job },
            })
            .await
            .unwrap();
    });
    drop(store);
    drop(sqlite::open(&db.options(), 0, || panic!("not fresh")).unwrap());
    let conn = Connection::open(&db.0).unwrap();
    let order: (String, String, String, i64) = conn
        .query_row(
            "SELECT id, customer, status, total_cents FROM orders",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        order,
        (
            "ord_1".into(),
            "bob".into(),
            "inventory_reserved".into(),
            2_000
        )
    );
    let line: (String, i64) = conn
        .query_row("SELECT sku, qty FROM order_lines", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(line, ("scarf".into(), 2));
    let moved: (String, String) = conn
        .query_row(
            "SELECT from_status, to_status FROM transitions WHERE order_id = 'ord_1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(moved, ("created".into(), "inventory_reserved".into()));
    let stock: (i64, i64) = conn
        .query_row(
            "SELECT available, reserved FROM stock WHERE sku = 'scarf'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(stock, (4, 2));
    let held: i64 = conn
        .query_row(
            "SELECT qty FROM reservations WHERE order_id = 'ord_1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(held, 2);
    let key: String = conn
        .query_row(
            "SELECT state FROM idempotency_keys WHERE key = 'k-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(key, "completed");
}

fn bytes(db: &TempDb) -> Vec<u8> {
    std::fs::read(&db.0).unwrap()
}

#[test]
fn a_file_that_cannot_be_opened_is_named_as_such_not_as_a_failed_creation() {
    // Proves: a store path in a folder that does not exist is refused as a
    // file the shop cannot use (what the user must fix is the path), not as a
    // database it failed to set up, and nothing is made on the way.
    let folder = TempDb::new("no-such-folder");
    let path = folder.0.join("shop.db");
    let options = SqliteOptions::new(&path);
    let error = sqlite::open(&options, 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::Inaccessible { .. }), "{error}");
    assert!(error.to_string().contains("cannot use the file"), "{error}");
    assert!(!folder.0.exists());
}

#[test]
fn a_file_of_another_program_is_refused_and_left_alone() {
    // Proves: an SQLite file with another program's tables, or with another application id,
    // is refused as foreign, and its bytes are unchanged.
    let db = TempDb::new("foreign");
    {
        let conn = Connection::open(&db.0).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    let before = bytes(&db);
    let error = sqlite::open(&db.options(), 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::Foreign { .. }), "{error}");
    assert!(
        error.to_string().contains("not a Stampede database"),
        "{error}"
    );
    assert_eq!(bytes(&db), before);

    let other = TempDb::new("other-app");
    {
        let conn = Connection::open(&other.0).unwrap();
        conn.pragma_update(None, "application_id", 42).unwrap();
    }
    let before = bytes(&other);
    let error = sqlite::open(&other.options(), 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::Foreign { .. }), "{error}");
    assert_eq!(bytes(&other), before);
}

#[test]
fn a_corrupt_file_is_refused_and_left_alone() {
    // Proves: bytes that are not an SQLite database are refused as corrupt and not rewritten.
    let db = TempDb::new("corrupt");
    std::fs::write(
        &db.0,
        b"this is not a database, it is a shopping list: eggs, milk".repeat(100),
    )
    .unwrap();
    let before = bytes(&db);
    let error = sqlite::open(&db.options(), 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error}");
    assert_eq!(bytes(&db), before);
}

#[test]
fn a_file_damaged_where_recovery_does_not_read_is_refused_and_left_alone() {
    // Proves: a store whose plain `orders` table is damaged (its root page overwritten) while
    // the checkpoint and the log are whole is refused as corrupt at open, unchanged — not
    // opened to take orders it would fail to commit later. The same file before the damage
    // opens.
    let db = TempDb::new("damaged");
    let (clock, _now) = manual_clock();
    let store = open_store(&db, &clock);
    runtime().block_on(async {
        store
            .call(Command::Restock {
                sku: Sku::new("hat").unwrap(),
                qty: 1,
            })
            .await
            .unwrap()
    });
    drop(store);
    let (root, page_size): (i64, i64) = {
        let conn = Connection::open(&db.0).unwrap();
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'orders'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let page_size = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        (root, page_size)
    };
    drop(sqlite::open(&db.options(), 0, || panic!("not fresh")).expect("whole, it opens"));
    let mut file = bytes(&db);
    let start = usize::try_from((root - 1) * page_size).unwrap();
    let end = start + usize::try_from(page_size).unwrap();
    file[start..end].fill(b'X');
    std::fs::write(&db.0, &file).unwrap();
    let error = sqlite::open(&db.options(), 0, || panic!("not fresh")).unwrap_err();
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error}");
    assert_eq!(bytes(&db), file, "left as it was");
}

#[test]
fn a_path_that_is_not_a_regular_file_is_refused_with_no_lock_file_beside_it() {
    // Proves: a folder or a device given as the store is refused as not a database, before
    // anything is made beside it (no `-lock` file); a regular file at the same place is taken.
    // (A named pipe meets the same check; making one here would mean forking a process while
    // other tests hold their stores' locks, which a child shares until it execs.)
    let db = TempDb::new("not-a-file");
    let dir = db.0.with_extension("dir");
    std::fs::create_dir_all(&dir).unwrap();
    for path in [dir.clone(), std::path::PathBuf::from("/dev/null")] {
        let options = SqliteOptions::new(path.clone());
        let error = sqlite::open(&options, 0, || Ok(state())).unwrap_err();
        assert!(
            matches!(error, OpenError::Foreign { .. }),
            "{}: {error}",
            path.display()
        );
        let mut lock = path.into_os_string();
        lock.push("-lock");
        assert!(!std::path::Path::new(&lock).exists(), "{lock:?} made");
    }
    let _ = std::fs::remove_dir(&dir);
    assert!(sqlite::open(&db.options(), 0, || Ok(state())).is_ok());
}

#[test]
fn a_database_of_another_schema_version_is_refused() {
    // Proves: a Stampede database whose schema version this build does not know is refused
    // (named as a version problem), before anything is written; the current version opens.
    let db = TempDb::new("version");
    let (clock, _now) = manual_clock();
    drop(open_store(&db, &clock));
    {
        let conn = Connection::open(&db.0).unwrap();
        conn.pragma_update(None, "user_version", sqlite::SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = bytes(&db);
    let error = sqlite::open(&db.options(), 0, || Ok(state())).unwrap_err();
    assert!(
        matches!(error, OpenError::Version { found, .. } if found == sqlite::SCHEMA_VERSION + 1),
        "{error}"
    );
    assert_eq!(bytes(&db), before);
    {
        let conn = Connection::open(&db.0).unwrap();
        conn.pragma_update(None, "user_version", sqlite::SCHEMA_VERSION)
            .unwrap();
    }
    assert!(sqlite::open(&db.options(), 0, || Ok(state())).is_ok());
}

#[test]
fn a_failed_commit_stops_the_store_instead_of_answering() {
    // Proves: when a commit fails, the command's reply is Unavailable (never a success the
    // disk does not hold), and every later call is refused too.
    let db = TempDb::new("fail");
    let (clock, _now) = manual_clock();
    let store = open_store(&db, &clock);
    let rt = runtime();
    let restock = || Command::Restock {
        sku: Sku::new("hat").unwrap(),
        qty: 1,
    };
    rt.block_on(async { store.call(restock()).await.unwrap() });
    assert_eq!(store.failed(), None);
    {
        let conn = Connection::open(&db.0).unwrap();
        conn.execute_batch("DROP TABLE commands").unwrap();
    }
    let failed = rt.block_on(async { store.call(restock()).await });
    assert!(
        matches!(&failed, Err(StoreError::Unavailable(why)) if why.contains("commit failed")),
        "{failed:?}"
    );
    let later = rt.block_on(async { store.call(Command::Stats).await });
    assert!(
        matches!(later, Err(StoreError::Unavailable(_))),
        "{later:?}"
    );
    let why = store.failed().expect("the store says it has stopped");
    assert!(why.contains("commit failed"), "{why}");
}

#[test]
fn a_closing_checkpoint_that_fails_is_reported_by_closed() {
    // Proves: when the checkpoint a store writes as it closes cannot be committed (here its
    // table is gone), `closed` says so — `serve` exits 1 on it instead of 0 — while what was
    // acknowledged before is in the log; a store whose commits all succeeded closes `Ok`.
    let db = TempDb::new("closing");
    let (clock, _now) = manual_clock();
    let store = open_store(&db, &clock);
    let closed = store.closed();
    let rt = runtime();
    rt.block_on(async {
        store
            .call(Command::Restock {
                sku: Sku::new("hat").unwrap(),
                qty: 1,
            })
            .await
            .unwrap()
    });
    {
        let conn = Connection::open(&db.0).unwrap();
        conn.execute_batch("DROP TABLE checkpoint").unwrap();
    }
    assert_eq!(store.failed(), None, "nothing failed yet");
    drop(store);
    let outcome =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), closed).await });
    let why = outcome
        .expect("closed")
        .expect_err("the closing checkpoint failed");
    assert!(why.contains("commit failed"), "{why}");
    let logged: i64 = Connection::open(&db.0)
        .unwrap()
        .query_row("SELECT count(*) FROM commands", [], |r| r.get(0))
        .unwrap();
    assert!(logged >= 1, "the acknowledged restock is in the log");
}

#[test]
fn a_reply_waits_for_its_commit() {
    // Proves: a write's reply is released only once the durable position has reached it: a
    // fresh store answers the first write with everything up to it committed, which a second
    // connection sees in the log.
    let db = TempDb::new("durable");
    let (clock, _now) = manual_clock();
    let store = open_store(&db, &clock);
    runtime().block_on(async {
        store
            .call(Command::Restock {
                sku: Sku::new("hat").unwrap(),
                qty: 3,
            })
            .await
            .unwrap();
    });
    let conn = Connection::open(&db.0).unwrap();
    let logged: i64 = conn
        .query_row("SELECT count(*) FROM commands", [], |r| r.get(0))
        .unwrap();
    assert_eq!(logged, 1);
}

#[test]
fn a_database_in_use_is_refused_until_its_store_is_dropped() {
    // Proves: while one store has the file open, opening it again (here or in another process)
    // is refused as in use and changes nothing; once the store is dropped (its writer has
    // committed everything queued), the file opens and holds what the first store acknowledged.
    let db = TempDb::new("in-use");
    let (clock, _now) = manual_clock();
    let store = open_store(&db, &clock);
    runtime().block_on(async {
        store
            .call(Command::Restock {
                sku: Sku::new("glove").unwrap(),
                qty: 4,
            })
            .await
            .unwrap();
    });
    let error = sqlite::open(&db.options(), 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::InUse { .. }), "{error}");
    assert!(error.to_string().contains("in use"), "{error}");
    assert!(matches!(
        sqlite::remove(&db.0),
        Err(OpenError::InUse { .. })
    ));
    drop(store);
    let reopened = sqlite::open(&db.options(), 0, || panic!("not fresh")).unwrap();
    let glove = Sku::new("glove").unwrap();
    assert_eq!(
        reopened.state().inventory().level(&glove).unwrap().received,
        10
    );
}

#[test]
fn a_database_in_use_is_refused_under_any_name_that_reaches_it() {
    // Proves: while one store has the file open, a symbolic link to it and a hard link to it
    // are refused as in use too (two shops writing one file under two names would each keep
    // their own log and lose the other's orders); once the store is dropped, both open.
    let db = TempDb::new("aliases");
    let (clock, _now) = manual_clock();
    let store = open_store(&db, &clock);
    let mut names = Vec::new();
    for (suffix, hard) in [("-symlink", false), ("-hardlink", true)] {
        let link = |from: &Path, to: &Path| {
            if hard {
                std::fs::hard_link(from, to)
            } else {
                std::os::unix::fs::symlink(from, to)
            }
        };
        let mut name = db.0.clone().into_os_string();
        name.push(suffix);
        let alias = PathBuf::from(name);
        let _ = std::fs::remove_file(&alias);
        link(&db.0, &alias).unwrap();
        let options = SqliteOptions::new(&alias);
        let error = sqlite::open(&options, 0, || Ok(state())).unwrap_err();
        assert!(
            matches!(error, OpenError::InUse { .. }),
            "{suffix}: {error}"
        );
        names.push(alias);
    }
    drop(store);
    for alias in &names {
        let reopened = sqlite::open(&SqliteOptions::new(alias), 0, || panic!("not fresh"));
        assert!(
            reopened.is_ok(),
            "{}: {:?}",
            alias.display(),
            reopened.err()
        );
        drop(reopened);
        for suffix in ["", "-lock"] {
            let mut name = alias.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
}

#[test]
fn closed_resolves_only_once_the_file_is_free_wherever_the_last_holder_drops_it() {
    // Proves: `SqliteStore::closed` stays pending while any holder keeps the store, and once
    // it resolves the file opens again at once — even when the last holder drops the store
    // on another thread, whose drop (commit, checkpoint, writer stopped) runs after the last
    // reference is gone: the moment the reference count says nothing about.
    let db = TempDb::new("closed");
    let (clock, _now) = manual_clock();
    for round in 0..5 {
        let store = open_store(&db, &clock);
        let closed = store.closed();
        runtime().block_on(async {
            store
                .call(Command::Restock {
                    sku: Sku::new("glove").unwrap(),
                    qty: 1,
                })
                .await
                .unwrap();
            let mut closed = Box::pin(closed);
            let early = tokio::time::timeout(Duration::from_millis(50), closed.as_mut()).await;
            assert!(early.is_err(), "round {round}: closed while held");
            let holder = Arc::clone(&store);
            drop(store);
            let dropped = std::thread::spawn(move || drop(holder));
            let outcome = tokio::time::timeout(Duration::from_secs(10), closed)
                .await
                .expect("closed once dropped");
            assert_eq!(outcome, Ok(()), "round {round}: closed cleanly");
            let reopened = sqlite::open(&db.options(), 0, || panic!("not fresh"));
            assert!(reopened.is_ok(), "round {round}: {:?}", reopened.err());
            dropped.join().unwrap();
        });
    }
}

#[test]
fn a_fresh_database_says_so_keeps_its_epoch_and_runs_in_wal_mode() {
    // Proves: the open that creates the file reports it (and `fresh` makes its state), the
    // epoch is the creation time and survives a reopen at a later time, and the file is in
    // WAL mode (a setting SQLite keeps in the file).
    let db = TempDb::new("fresh");
    let created = sqlite::open(&db.options(), 1_700_000_000_000, || Ok(state())).unwrap();
    assert!(created.created());
    assert_eq!(created.epoch_unix_ms(), 1_700_000_000_000);
    drop(created);
    let reopened = sqlite::open(&db.options(), 1_800_000_000_000, || panic!("not fresh")).unwrap();
    assert!(!reopened.created());
    assert_eq!(
        reopened.epoch_unix_ms(),
        1_700_000_000_000,
        "the creation time"
    );
    assert_eq!(reopened.start_at(1_700_000_005_000), Millis(5_000));
    drop(reopened);
    let mode: String = Connection::open(&db.0)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
}

/// Applies `n` restocks (changes that add no order) to a store that
/// checkpoints every 3 commands, then reopens what a crash would have left
/// of it: how many commands the log held past the last checkpoint. (The
/// store closed as asked replays none: it checkpoints on closing.)
fn replayed_after_restocks(n: u64) -> u64 {
    let db = TempDb::new("cadence");
    let (clock, _now) = manual_clock();
    let store = open_with(&db.checkpointing(3), &clock);
    runtime().block_on(async {
        for _ in 0..n {
            let sku = Sku::new(SKUS[0]).unwrap();
            store.call(Command::Restock { sku, qty: 1 }).await.unwrap();
        }
    });
    // A checkpoint is queued right behind its command; let the writer commit it before the
    // image is taken (a crash could come before, and then the log holds those commands).
    let checkpointed = n / 3 * 3;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seq: u64 = Connection::open(&db.0)
            .unwrap()
            .query_row("SELECT seq FROM checkpoint", [], |r| r.get(0))
            .unwrap();
        if seq >= checkpointed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoint {checkpointed} never written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let image = db.crash_image("cadence-crashed");
    drop(store);
    let closed = sqlite::open(&db.checkpointing(3), 0, || panic!("not fresh")).unwrap();
    assert_eq!(closed.replayed(), 0, "closed: checkpointed on closing");
    sqlite::open(&image.checkpointing(3), 0, || panic!("not fresh"))
        .unwrap()
        .replayed()
}

#[test]
fn a_checkpoint_comes_every_n_changes_and_the_log_holds_the_rest() {
    // Proves both sides of the checkpoint bound (3 commands here, no orders held): fewer
    // changes than the bound stay in the log; at the bound a checkpoint takes them, and
    // only the changes after the last checkpoint are replayed.
    assert_eq!(
        replayed_after_restocks(2),
        2,
        "below the bound: all in the log"
    );
    assert_eq!(replayed_after_restocks(3), 0, "at the bound: checkpointed");
    assert_eq!(replayed_after_restocks(7), 1, "checkpoints at 3 and 6");
}

#[test]
fn the_intents_table_shows_each_intents_status_by_name() {
    // Proves: an order's payment intent is in the plain `intents` table with its status as
    // its serde name, once a reopen has checkpointed it.
    let db = TempDb::new("intents");
    let (clock, _now) = manual_clock();
    let store = open_store(&db, &clock);
    runtime().block_on(async {
        let request = PlaceOrder {
            key: None,
            customer: CustomerId::new("cy").unwrap(),
            items: vec![ItemRequest {
                sku: Sku::new(SKUS[1]).unwrap(),
                qty: 1,
            }],
            express: false,
        };
        store.call(Command::PlaceOrder { request }).await.unwrap();
        for _ in 0..2 {
            let Reply::Lease(Some(lease)) = store.call(Command::LeaseJob).await.unwrap() else {
                panic!("a job");
            };
            let cause = Cause::Worker { job: lease.job };
            let step = match lease.kind {
                JobKind::Reserve => Command::Reserve {
                    order: lease.order,
                    cause,
                },
                JobKind::CreateIntent => Command::RecordIntent {
                    intent: PaymentIntent {
                        id: IntentId::new("pi_1").unwrap(),
                        order: lease.order,
                        amount: Cents(1_000),
                        status: IntentStatus::RequiresPayment,
                        refunded: Cents(0),
                    },
                    cause,
                },
                other => panic!("unexpected {other:?}"),
            };
            store.call(step).await.unwrap();
            store.call(Command::AckJob { lease }).await.unwrap();
        }
    });
    drop(store);
    drop(sqlite::open(&db.options(), 0, || panic!("not fresh")).unwrap());
    let row: (String, String, i64) = Connection::open(&db.0)
        .unwrap()
        .query_row(
            "SELECT intent_id, status, amount_cents FROM intents WHERE order_id = 'ord_1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(row, ("pi_1".into(), "requires_payment".into(), 1_000));
}

#[test]
fn an_idle_shop_writes_nothing_to_its_log() {
    // Proves: leases, reservation sweeps and housekeeping passes that find nothing due add
    // nothing to the log (an idle served shop used to commit about forty of them a second),
    // while a placement and a lease that hands out its job are each recorded.
    let db = TempDb::new("idle");
    let (clock, now) = manual_clock();
    let store = open_store(&db, &clock);
    let logged = || -> u64 {
        Connection::open(&db.0)
            .unwrap()
            .query_row("SELECT count(*) FROM commands", [], |r| r.get(0))
            .unwrap()
    };
    let idle = || {
        [
            Command::LeaseJob,
            Command::LeaseJobWait { wait_ms: 0 },
            Command::ExpireReservations { max: 100 },
            Command::Housekeep { max: 100 },
        ]
    };
    runtime().block_on(async {
        for tick in 0..50 {
            now.store(tick * 100, Ordering::SeqCst);
            for command in idle() {
                store.call(command).await.unwrap();
            }
        }
        assert_eq!(logged(), 0, "an idle shop");
        let request = PlaceOrder {
            key: None,
            customer: CustomerId::new("alice").unwrap(),
            items: vec![ItemRequest {
                sku: Sku::new("hat").unwrap(),
                qty: 1,
            }],
            express: false,
        };
        store.call(Command::PlaceOrder { request }).await.unwrap();
        assert_eq!(logged(), 1, "a placement");
        let leased = store.call(Command::LeaseJob).await.unwrap();
        assert!(matches!(leased, Reply::Lease(Some(_))), "{leased:?}");
        assert_eq!(logged(), 2, "a lease that hands out a job");
        for command in idle() {
            store.call(command).await.unwrap();
        }
        assert_eq!(logged(), 2, "nothing else was due");
    });
}

/// Units of `SKUS[0]` on the shelf, as `store` answers.
fn shelf(rt: &tokio::runtime::Runtime, store: &SqliteStore) -> u64 {
    let sku = Sku::new(SKUS[0]).unwrap();
    match rt.block_on(async { store.call(Command::RawAvailable { sku }).await }) {
        Ok(Reply::Count(n)) => n,
        other => panic!("{other:?}"),
    }
}

fn restock(rt: &tokio::runtime::Runtime, store: &SqliteStore) -> Result<Reply, StoreError> {
    let sku = Sku::new(SKUS[0]).unwrap();
    rt.block_on(async { store.call(Command::Restock { sku, qty: 1 }).await })
}

#[test]
fn an_sqlite_uri_is_refused_before_anything_is_made() {
    // Proves: `file:…` is refused as a URI (SQLite would open the file it names while the
    // locks went on the text as a path, so two spellings of one file could both serve), and
    // nothing is created, neither the file nor a `file:` folder.
    let db = TempDb::new("uri");
    let given = format!("file:{}", db.0.display());
    let error = sqlite::open(&SqliteOptions::new(&given), 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::Uri { .. }), "{error}");
    assert!(error.to_string().contains("not a path"), "{error}");
    assert!(!db.0.exists());
    assert!(!Path::new(&format!("{given}-lock")).exists());
    // The same name as a path (not a URI: it does not start with `file:`) opens.
    let plain = SqliteOptions::new(&db.0);
    assert!(sqlite::open(&plain, 0, || Ok(state())).is_ok());
}

#[test]
fn a_wal_without_its_database_is_refused_and_kept() {
    // Proves: a WAL with data beside a missing or empty database file is refused (a new shop
    // would overwrite what it may hold), the WAL is left as it was, and no database is made;
    // an empty WAL is no obstacle.
    let db = TempDb::new("orphan-wal");
    let wal = PathBuf::from(format!("{}-wal", db.0.display()));
    std::fs::write(&wal, b"frames of acknowledged changes").unwrap();
    let error = sqlite::open(&db.options(), 0, || Ok(state())).unwrap_err();
    assert!(
        matches!(error, OpenError::OrphanWal { bytes: 30, .. }),
        "{error}"
    );
    assert!(!db.0.exists(), "no database was made");
    std::fs::write(&db.0, b"").unwrap();
    let error = sqlite::open(&db.options(), 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::OrphanWal { .. }), "{error}");
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        b"frames of acknowledged changes"
    );
    std::fs::write(&wal, b"").unwrap();
    assert!(sqlite::open(&db.options(), 0, || Ok(state())).is_ok());
}

#[test]
fn a_refused_file_keeps_its_wal() {
    // Proves: a file refused at start is judged without writing to it: another program's
    // database whose last commits are still in its WAL (as a crash leaves it) keeps both its
    // file and its WAL byte for byte, where closing a read-write connection would have copied
    // the WAL into the file and deleted it.
    let live = TempDb::new("foreign-live");
    let conn = Connection::open(&live.0).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');",
    )
    .unwrap();
    let image = live.crash_image("foreign-image");
    drop(conn);
    let wal = PathBuf::from(format!("{}-wal", image.0.display()));
    let (file_before, wal_before) = (bytes(&image), std::fs::read(&wal).unwrap());
    assert!(!wal_before.is_empty(), "the crash left commits in the WAL");
    let error = sqlite::open(&image.options(), 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::Foreign { .. }), "{error}");
    assert_eq!(bytes(&image), file_before);
    assert_eq!(std::fs::read(&wal).unwrap(), wal_before);
}

#[test]
fn a_removed_wal_is_copied_into_the_database_and_the_store_stops() {
    // Proves: when the WAL is removed while the store serves, the next commit notices it,
    // copies what was committed into the database file (the write that noticed included, so
    // its reply stands), and stops the store; a restart on the file finds every acknowledged
    // change. Without the check, those commits lived only in the removed file.
    let db = TempDb::new("wal-removed");
    let (clock, _now) = manual_clock();
    let rt = runtime();
    let store = open_store(&db, &clock);
    let start = shelf(&rt, &store);
    restock(&rt, &store).unwrap();
    std::fs::remove_file(format!("{}-wal", db.0.display())).unwrap();
    restock(&rt, &store).expect("committed and copied into the database file");
    let why = store.failed().expect("the store stopped");
    assert!(why.contains("was removed or replaced"), "{why}");
    assert!(why.contains("everything committed was copied"), "{why}");
    let later = restock(&rt, &store);
    assert!(
        matches!(later, Err(StoreError::Unavailable(_))),
        "{later:?}"
    );
    drop(store);
    let store = open_store(&db, &clock);
    assert_eq!(shelf(&rt, &store), start + 2);
}

#[test]
fn a_removed_database_is_saved_beside_its_path_and_the_store_stops() {
    // Proves: when the database file is removed while the store serves, the next commit is
    // not acknowledged, the store stops, and what it had committed is saved as
    // `<path>.rescued-<position>`, a Stampede database a shop opens with every change in it.
    let db = TempDb::new("db-removed");
    let (clock, _now) = manual_clock();
    let rt = runtime();
    let store = open_store(&db, &clock);
    let start = shelf(&rt, &store);
    restock(&rt, &store).unwrap();
    std::fs::remove_file(&db.0).unwrap();
    let refused = restock(&rt, &store);
    let Err(StoreError::Unavailable(why)) = refused else {
        panic!("{refused:?}")
    };
    assert!(why.contains("was removed or replaced"), "{why}");
    let rescued = std::fs::read_dir(db.0.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.display()
                .to_string()
                .starts_with(&format!("{}.rescued-", db.0.display()))
        })
        .expect("a rescued copy beside the path");
    assert!(why.contains(&rescued.display().to_string()), "{why}");
    drop(store);
    let saved = TempDb(rescued);
    let store = open_store(&saved, &clock);
    assert_eq!(
        shelf(&rt, &store),
        start + 2,
        "both restocks are in the copy"
    );
}

#[test]
fn a_checkpoint_never_replaces_a_later_one() {
    // Proves: a store whose closing checkpoint would replace a later one in the file (only
    // another writer could have put it there) fails it instead, and `closed` says so.
    let db = TempDb::new("later-checkpoint");
    let (clock, _now) = manual_clock();
    let rt = runtime();
    let store = open_store(&db, &clock);
    let closed = store.closed();
    restock(&rt, &store).unwrap();
    Connection::open(&db.0)
        .unwrap()
        .execute_batch("UPDATE checkpoint SET seq = 1000000")
        .unwrap();
    drop(store);
    let outcome =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), closed).await });
    let why = outcome
        .expect("closed")
        .expect_err("the checkpoint was refused");
    assert!(why.contains("later than this store's"), "{why}");
    let seq: i64 = Connection::open(&db.0)
        .unwrap()
        .query_row("SELECT seq FROM checkpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seq, 1_000_000, "the later checkpoint is kept");
}

#[test]
fn a_checkpoint_whose_stock_does_not_add_up_is_refused() {
    // Proves: a saved state changed outside the shop so that its stock is not conserved (more
    // units available than were ever received) is refused at start, instead of being sold
    // from; the same file, unchanged, opens.
    let db = TempDb::new("tampered");
    let (clock, _now) = manual_clock();
    let rt = runtime();
    let store = open_store(&db, &clock);
    restock(&rt, &store).unwrap();
    drop(store);
    let conn = Connection::open(&db.0).unwrap();
    let saved: String = conn
        .query_row("SELECT state FROM checkpoint", [], |r| r.get(0))
        .unwrap();
    let at = saved.find("\"available\":").expect("a stock level") + "\"available\":".len();
    let digits = saved[at..].chars().take_while(char::is_ascii_digit).count();
    let more = saved[at..at + digits].parse::<u64>().unwrap() + 400;
    let tampered = format!("{}{more}{}", &saved[..at], &saved[at + digits..]);
    conn.execute("UPDATE checkpoint SET state = ?1", [&tampered])
        .unwrap();
    let error = sqlite::open(&db.options(), 0, || Ok(state())).unwrap_err();
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error}");
    assert!(
        error.to_string().contains("does not hold together"),
        "{error}"
    );
    conn.execute("UPDATE checkpoint SET state = ?1", [&saved])
        .unwrap();
    drop(conn);
    assert!(sqlite::open(&db.options(), 0, || Ok(state())).is_ok());
}

#[test]
fn a_removed_folder_is_made_again_for_the_rescued_copy() {
    // Proves: when the database's whole folder is removed while the store serves, the rescued
    // copy is still saved: the folder is made again and the copy opens with every change.
    let folder = TempDb::new("folder-removed");
    std::fs::create_dir_all(&folder.0).unwrap();
    let path = folder.0.join("shop.db");
    let options = SqliteOptions {
        sync: SyncLevel::Normal,
        ..SqliteOptions::new(&path)
    };
    let (clock, _now) = manual_clock();
    let rt = runtime();
    let store = open_with(&options, &clock);
    let start = shelf(&rt, &store);
    restock(&rt, &store).unwrap();
    std::fs::remove_dir_all(&folder.0).unwrap();
    let refused = restock(&rt, &store);
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    drop(store);
    let saved: Vec<PathBuf> = std::fs::read_dir(&folder.0)
        .expect("the folder is back")
        .map(|e| e.unwrap().path())
        .filter(|p| p.display().to_string().contains("shop.db.rescued-"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let copy = SqliteOptions {
        sync: SyncLevel::Normal,
        ..SqliteOptions::new(&saved[0])
    };
    let store = open_with(&copy, &clock);
    assert_eq!(
        shelf(&rt, &store),
        start + 2,
        "both restocks are in the copy"
    );
    drop(store);
    std::fs::remove_dir_all(&folder.0).unwrap();
}
