//! The shared store: the shop's state in one PostgreSQL database that
//! several `stampede serve` replicas use at once.
//!
//! **Design decision: one totally ordered log of core commands; every
//! replica runs the core over it.** The database holds the log
//! (`stampede_log`: position, time, command) and a checkpoint of the whole
//! state (`stampede_checkpoint`). Each replica keeps the core's `ShopState`
//! in memory, caught up to some log position. To execute commands, a
//! replica's writer task takes one transaction-scoped advisory lock (the
//! log's tail), reads and re-applies whatever other replicas logged since
//! its position, applies its own batch through `ShopState::apply`, appends
//! the commands that changed the state, and commits. A reply is released
//! only after that commit. So the log is one serial history that every
//! replica agrees on, every decision (stock, idempotency, transitions,
//! leases) is the core's, taken on the state as of the log's tail, and no
//! SQL statement re-derives one. Reads catch up without the lock (the log
//! is written only under it, so the committed rows always form a prefix)
//! and answer from the replica's state, which is never older than the
//! last reply any replica has given.
//!
//! The price of that design is that writes from all replicas serialize on
//! the lock: what replicas add is HTTP, JSON and validation work spread over
//! processes, and group commit (a replica commits whatever is queued as one
//! transaction). Row-level designs (conditional updates, `SKIP LOCKED`) are
//! not modelled by this store; ARCHITECTURE.md lists them as not built.
//!
//! **Jobs across replicas.** A lease is a logged command, so one job is
//! leased by one replica's worker at a time; a replica that dies holding
//! leases (`kill -9`) loses nothing: its uncommitted transaction rolls back,
//! and its leases are leased again by another replica. A replica that logs a command which may make a job
//! runnable sends `NOTIFY stampede_log`; every replica `LISTEN`s and wakes
//! its waiting workers, which lease through the log as usual.
//!
//! **Replicas that die.** Each replica takes a number (a [`Holder`], a row
//! of `stampede_holders`) and holds the session advisory lock
//! ([`HOLDER_LOCK_CLASS`], number) on its writer's connection; every
//! command it logs carries its number, so every replica's state knows whose
//! idempotency key is in flight and whose worker holds a lease. PostgreSQL
//! ends a dead process's session, and its lock with it; every replica's
//! reaper ([`reap`], once a second) finds registered holders whose lock is
//! gone and logs `ReleaseHolder` for each: their keys in flight and leases
//! are free at once. Without it a buyer retrying `/pay` on a survivor would
//! be refused 409 until the key's in-flight timeout (30 s, three carts'
//! holds of 10 s), and an order would wait out its lease's visibility
//! timeout. A replica whose connection merely dropped takes a new number
//! when it reconnects (what it held under the old one may have been freed:
//! a request of it still running is then as one whose lock lapsed).
//!
//! **Failures.** If a transaction fails after the replica applied its batch
//! (the connection dropped, the commit failed), its state is ahead of the
//! database: every reply of that batch is [`StoreError::Unavailable`] (the
//! commands may or may not have been committed) and the replica reloads
//! its state from the database (checkpoint + log) before the next batch,
//! reconnecting as needed. Opening upgrades an older Stampede schema in
//! place ([`MIGRATIONS`]), and refuses a database that holds another
//! program's tables, a schema version newer than this build, or a state it
//! cannot read ([`PgOpenError`], exit 2), and names an unreachable server.
//!
//! **Time.** The database records the Unix time it was created; `now` is
//! milliseconds since then on each replica's clock, and a command is
//! stamped no earlier than the last logged one, so the log's times never go
//! back whatever the replicas' clocks say.

use super::{Command, LEASE_WAIT_MS_MAX, Reply, Store, StoreError, StoreFuture};
use crate::clock::Clock;
use stampede_core::{Holder, Lease, Millis, ShopState};
use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, GenericClient, NoTls, Statement};

/// What `stampede_meta.application` says in a Stampede database.
pub const APPLICATION: &str = "stampede";

/// The schema version this build reads and writes; an older Stampede
/// database is upgraded when a replica opens it (see [`MIGRATIONS`]).
pub const SCHEMA_VERSION: i32 = 2;

/// The first key of each replica's advisory lock (the second is its
/// [`Holder`] number): held for as long as its writer's connection lives.
pub const HOLDER_LOCK_CLASS: i32 = 0x5354_4d50;

/// How often a replica looks for replicas whose connection is gone, ms.
pub const REAP_EVERY_MS: u64 = 1_000;

/// The advisory lock a writer holds for its transaction: the log's tail.
pub const LOG_LOCK: i64 = 0x5354_4d50_4c4f_4721;

/// How long a writer batch may take before its callers are answered
/// `Unavailable` and its connection dropped: a stalled PostgreSQL, or a log
/// lock held by a replica that stopped mid-transaction, cannot hold every
/// request of every replica for longer.
const BATCH_TIMEOUT_MS: u64 = 20_000;

/// How long reloading a replica's state (checkpoint + log) may take before
/// the batch waiting on it is answered `Unavailable` (tried again on the
/// next): longer than a batch, as a long log takes a while to read.
const RELOAD_TIMEOUT_MS: u64 = 120_000;

/// `what` done within `ms`, or a [`LoadError`] naming it: no stage of a
/// batch waits on PostgreSQL without end.
async fn within<T>(
    ms: u64,
    what: &str,
    work: impl std::future::Future<Output = Result<T, LoadError>>,
) -> Result<T, LoadError> {
    tokio::time::timeout(Duration::from_millis(ms), work)
        .await
        .unwrap_or_else(|_| {
            Err(LoadError::Bad(format!(
                "no answer within {} s {what} (PostgreSQL stalled?)",
                ms / 1000
            )))
        })
}

/// Opens a write transaction. A replica that stops inside one (paused,
/// partitioned) holds the log's lock: PostgreSQL ends its session after
/// 10 s idle in it, which lets the lock go. A batch waits at most 15 s for
/// the lock (less than [`BATCH_TIMEOUT_MS`], so PostgreSQL gives up the wait
/// itself).
const WRITE_BEGIN: &str = "BEGIN; SET LOCAL idle_in_transaction_session_timeout = '10s'; \
                           SET LOCAL lock_timeout = '15s'";

/// The advisory lock held while creating the schema (replicas starting at once).
const SCHEMA_LOCK: i64 = 0x5354_4d50_5343_484d;

/// The channel replicas notify when they logged a command that may make a job runnable.
pub const NOTIFY_CHANNEL: &str = "stampede_log";

/// Most commands one transaction carries (group commit).
pub const BATCH_MAX: usize = 4_096;

/// Most calls queued for the writer; beyond it a call is refused as unavailable.
pub const QUEUE_BOUND: usize = 65_536;

/// Longest a connection attempt waits, ms.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Pause between attempts of the listening connection to reconnect, ms.
pub const LISTEN_RETRY_MS: u64 = 1_000;

/// A checkpoint is written once at least this many commands were logged
/// since the last one (or [`CHECKPOINT_COMMANDS_PER_ORDER`] per order, if more).
pub const CHECKPOINT_MIN_COMMANDS: u64 = 100_000;

/// Commands logged per order held before the next checkpoint, so a
/// checkpoint's cost stays a small share of the commands it saves replaying.
pub const CHECKPOINT_COMMANDS_PER_ORDER: u64 = 8;

const SCHEMA_V1: &str = "
CREATE TABLE stampede_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE stampede_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE stampede_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    op TEXT NOT NULL,
    command TEXT NOT NULL
);
";

/// Version 2: who logged each command (the replica's [`Holder`]), and the
/// replicas that have opened the database and not yet been found gone.
const SCHEMA_V2: &str = "
ALTER TABLE stampede_log ADD COLUMN holder BIGINT;
CREATE TABLE stampede_holders (
    holder BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// The schema, step by step: a database of version `n` has had the first
/// `n` steps applied; creating one applies them all, opening an older one
/// the rest (in one transaction).
pub const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [SCHEMA_V1, SCHEMA_V2];

/// Where the shared store lives and how it commits.
#[derive(Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database` (or `postgresql://`).
    pub url: String,
    /// Most commands per transaction, 1..=[`BATCH_MAX`].
    pub max_batch: usize,
    /// Commands logged since the last checkpoint before the next (at least).
    pub checkpoint_min_commands: u64,
    /// Take a [`Holder`] number and free, every [`REAP_EVERY_MS`], the
    /// idempotency keys and job leases of replicas whose connection to the
    /// database is gone (on by default; off, they lapse after their timeouts).
    pub free_dead_replicas: bool,
}

impl PgOptions {
    /// Options for the database at `url`, with the default batch and checkpoint cadence.
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            max_batch: BATCH_MAX,
            checkpoint_min_commands: CHECKPOINT_MIN_COMMANDS,
            free_dead_replicas: true,
        }
    }

    /// Whether `text` names a PostgreSQL database (`postgres://` or `postgresql://`).
    pub fn is_url(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The URL with its password replaced by `***`, for messages and logs.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    fn config(&self) -> Result<Config, PgOpenError> {
        let mut config: Config = self.url.parse().map_err(|e| PgOpenError::BadUrl {
            url: self.redacted(),
            detail: format!("{e}"),
        })?;
        config.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
        config.application_name("stampede");
        Ok(config)
    }
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.redacted())
            .field("max_batch", &self.max_batch)
            .field("checkpoint_min_commands", &self.checkpoint_min_commands)
            .field("free_dead_replicas", &self.free_dead_replicas)
            .finish()
    }
}

/// `scheme://user:password@rest` → `scheme://user:***@rest`, and a
/// `password=` query parameter's value → `***`. When in doubt it hides more
/// (an `@` in the query hides everything from the user's `:` to it).
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}:***{}", &rest[..colon], &rest[at..]),
            None => rest.to_string(),
        },
        None => rest.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// Why the shared store could not be opened. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    /// The URL does not parse.
    #[error(
        "{url}: not a PostgreSQL URL ({detail}); write postgres://user:password@host:port/database"
    )]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// What the parser said.
        detail: String,
    },
    /// No server answered, or it refused the login.
    #[error("{url}: cannot reach PostgreSQL: {detail}")]
    Unreachable {
        /// The URL, password hidden.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The database holds another program's tables.
    #[error(
        "{url}: not a Stampede database ({what}); refusing to use it — give Stampede a database of its own"
    )]
    Foreign {
        /// The URL, password hidden.
        url: String,
        /// What was found.
        what: String,
    },
    /// A Stampede database of a schema version this build cannot read.
    #[error(
        "{url}: Stampede database schema version {found}, this build reads version {SCHEMA_VERSION}; refusing to use it"
    )]
    Version {
        /// The URL, password hidden.
        url: String,
        /// Its version.
        found: String,
    },
    /// The stored state cannot be read or re-applied.
    #[error("{url}: unreadable Stampede state: {detail}")]
    Corrupt {
        /// The URL, password hidden.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// A fresh database could not be set up.
    #[error("{url}: cannot create the Stampede schema: {detail}")]
    Create {
        /// The URL, password hidden.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// Replicas are serving the database: it cannot be reset under them.
    #[error(
        "{url}: {replicas} replica(s) are serving this database now; stop them before resetting it (their shop would go on with state the database no longer holds)"
    )]
    InUse {
        /// The URL, password hidden.
        url: String,
        /// How many live replicas were found.
        replicas: i64,
    },
    /// An older Stampede database could not be upgraded (nothing changed).
    #[error(
        "{url}: cannot upgrade the Stampede schema from version {from} to {SCHEMA_VERSION}: {detail}"
    )]
    Migrate {
        /// The URL, password hidden.
        url: String,
        /// The version found.
        from: i32,
        /// What went wrong.
        detail: String,
    },
}

/// A replica's copy of the state: the core's `ShopState` as of log position `seq`.
#[derive(Clone, Debug)]
struct Replica {
    state: ShopState,
    /// The last log position applied.
    seq: u64,
    /// The time of the last command applied: the next is stamped no earlier.
    at: Millis,
    /// The log position of the newest checkpoint this replica knows of.
    checkpoint_seq: u64,
}

/// A database opened and its state loaded, ready to serve.
pub struct Opened {
    options: PgOptions,
    config: Config,
    client: Client,
    /// `client`'s backend pid: the payload of its notifications.
    pid: i32,
    /// This replica's number, locked on `client`'s session (with `free_dead_replicas`).
    holder: Option<Holder>,
    replica: Replica,
    epoch_unix_ms: u64,
    created: bool,
    replayed: u64,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("url", &self.options.redacted())
            .field("seq", &self.replica.seq)
            .field("epoch_unix_ms", &self.epoch_unix_ms)
            .field("created", &self.created)
            .field("replayed", &self.replayed)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// The Unix time (ms) the database was created: its `Millis(0)`.
    pub fn epoch_unix_ms(&self) -> u64 {
        self.epoch_unix_ms
    }

    /// Where this replica's clock should start, given the Unix time now:
    /// the time since the database's epoch, and never before the last
    /// logged command.
    pub fn start_at(&self, unix_now_ms: u64) -> Millis {
        Millis(unix_now_ms.saturating_sub(self.epoch_unix_ms)).max(self.replica.at)
    }

    /// The state as loaded.
    pub fn state(&self) -> &ShopState {
        &self.replica.state
    }

    /// Commands re-applied from the log on top of the checkpoint.
    pub fn replayed(&self) -> u64 {
        self.replayed
    }

    /// Whether this open created the schema.
    pub fn created(&self) -> bool {
        self.created
    }
}

fn unreachable_error(options: &PgOptions, e: &tokio_postgres::Error) -> PgOpenError {
    PgOpenError::Unreachable {
        url: options.redacted(),
        detail: describe(e),
    }
}

/// A driver error with its database cause, if any (the driver's own
/// `Display` says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Connects, driving the connection on a task of its own.
async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(error = %describe(&error), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Opens the Stampede database at `options.url`: creates the schema (with
/// the state `fresh` makes) if the database is empty, else checks it is a
/// Stampede database of this version and loads its state.
pub async fn open(
    options: &PgOptions,
    unix_now_ms: u64,
    fresh: impl FnOnce() -> Result<ShopState, String>,
) -> Result<Opened, PgOpenError> {
    let config = options.config()?;
    let mut client = connect(&config)
        .await
        .map_err(|e| unreachable_error(options, &e))?;
    let corrupt = |detail: String| PgOpenError::Corrupt {
        url: options.redacted(),
        detail,
    };
    let created = match inspect(&client).await.map_err(|e| corrupt(describe(&e)))? {
        Found::Ours => {
            if check_meta(options, &client).await? < SCHEMA_VERSION {
                migrate(options, &mut client).await?;
            }
            false
        }
        Found::Empty => create(options, &mut client, unix_now_ms, fresh).await?,
        Found::Foreign(what) => {
            return Err(PgOpenError::Foreign {
                url: options.redacted(),
                what,
            });
        }
    };
    let version = check_meta(options, &client).await?;
    if version != SCHEMA_VERSION {
        return Err(PgOpenError::Version {
            url: options.redacted(),
            found: version.to_string(),
        });
    }
    let epoch: String = client
        .query_one(
            "SELECT value FROM stampede_meta WHERE key = 'epoch_unix_ms'",
            &[],
        )
        .await
        .map_err(|e| corrupt(format!("reading the epoch: {}", describe(&e))))?
        .get(0);
    let epoch_unix_ms: u64 = epoch
        .parse()
        .map_err(|e| corrupt(format!("epoch {epoch:?}: {e}")))?;
    let (replica, replayed) = load(&mut client)
        .await
        .map_err(|e| corrupt(e.to_string()))?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| corrupt(describe(&e)))?
        .get(0);
    let holder = match options.free_dead_replicas {
        true => Some(
            register(&mut client)
                .await
                .map_err(|e| corrupt(format!("registering this replica: {e}")))?,
        ),
        false => None,
    };
    Ok(Opened {
        options: options.clone(),
        config,
        client,
        pid,
        holder,
        replica,
        epoch_unix_ms,
        created,
        replayed,
    })
}

enum Found {
    Empty,
    Ours,
    Foreign(String),
}

/// What the database's current schema holds.
async fn inspect(client: &Client) -> Result<Found, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT to_regclass('stampede_meta') IS NOT NULL,
                    (SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema())",
            &[],
        )
        .await?;
    let ours: bool = row.get(0);
    let tables: i64 = row.get(1);
    Ok(match (ours, tables) {
        (true, _) => Found::Ours,
        (false, 0) => Found::Empty,
        (false, n) => Found::Foreign(format!("{n} tables of another program")),
    })
}

/// Creates the schema in one transaction under [`SCHEMA_LOCK`]; a replica
/// that finds it created meanwhile by another leaves it be. Answers whether
/// this call created it.
async fn create(
    options: &PgOptions,
    client: &mut Client,
    unix_now_ms: u64,
    fresh: impl FnOnce() -> Result<ShopState, String>,
) -> Result<bool, PgOpenError> {
    let failed = |detail: String| PgOpenError::Create {
        url: options.redacted(),
        detail,
    };
    let state = fresh().map_err(&failed)?;
    let json = serde_json::to_string(&state).map_err(|e| failed(e.to_string()))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| failed(describe(&e)))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(|e| failed(describe(&e)))?;
    // A catalog scan, not `to_regclass`: name lookups go through a cache this
    // session refreshes only at its next transaction or table lock, so after
    // waiting out another replica's creation they would still miss its tables.
    let created_meanwhile: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables \
             WHERE schemaname = current_schema() AND tablename = 'stampede_meta')",
            &[],
        )
        .await
        .map_err(|e| failed(describe(&e)))?
        .get(0);
    if created_meanwhile {
        return Ok(false);
    }
    for step in MIGRATIONS {
        tx.batch_execute(step)
            .await
            .map_err(|e| failed(describe(&e)))?;
    }
    let created_by = concat!("stampede ", env!("CARGO_PKG_VERSION"));
    tx.execute(
        "INSERT INTO stampede_meta (key, value) VALUES
         ('application', $1), ('schema_version', $2), ('epoch_unix_ms', $3), ('created_by', $4)",
        &[
            &APPLICATION,
            &SCHEMA_VERSION.to_string(),
            &unix_now_ms.to_string(),
            &created_by,
        ],
    )
    .await
    .map_err(|e| failed(describe(&e)))?;
    tx.execute(
        "INSERT INTO stampede_checkpoint (id, seq, at_ms, state) VALUES (1, 0, 0, $1)",
        &[&json],
    )
    .await
    .map_err(|e| failed(describe(&e)))?;
    tx.commit().await.map_err(|e| failed(describe(&e)))?;
    Ok(true)
}

/// Upgrades an older Stampede database to [`SCHEMA_VERSION`]: the
/// [`MIGRATIONS`] it lacks, in one transaction under [`SCHEMA_LOCK`] (so
/// replicas starting at once upgrade it once; the others find it done).
async fn migrate(options: &PgOptions, client: &mut Client) -> Result<(), PgOpenError> {
    let failed = |from: i32, e: &tokio_postgres::Error| PgOpenError::Migrate {
        url: options.redacted(),
        from,
        detail: describe(e),
    };
    let tx = client.transaction().await.map_err(|e| failed(0, &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(|e| failed(0, &e))?;
    let found: Option<String> = tx
        .query_opt(
            "SELECT value FROM stampede_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(|e| failed(0, &e))?
        .map(|row| row.get(0));
    let Some(from) = found
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| (1..SCHEMA_VERSION).contains(v))
    else {
        // Upgraded meanwhile by another replica (`check_meta` judges what it is now).
        return Ok(());
    };
    for step in &MIGRATIONS[from as usize..] {
        tx.batch_execute(step).await.map_err(|e| failed(from, &e))?;
    }
    tx.execute(
        "UPDATE stampede_meta SET value = $1 WHERE key = 'schema_version'",
        &[&SCHEMA_VERSION.to_string()],
    )
    .await
    .map_err(|e| failed(from, &e))?;
    tx.commit().await.map_err(|e| failed(from, &e))?;
    tracing::info!(from, to = SCHEMA_VERSION, "PostgreSQL schema upgraded");
    Ok(())
}

/// Takes this connection's [`Holder`] number: a row in `stampede_holders`
/// and, on this session, the advisory lock (`HOLDER_LOCK_CLASS`, number),
/// which PostgreSQL releases when the connection ends. The row becomes
/// visible only with the lock already held, so no replica can find a
/// registered holder unlocked while it lives.
async fn register(client: &mut Client) -> Result<Holder, LoadError> {
    let tx = client.transaction().await?;
    let number: i64 = tx
        .query_one(
            "INSERT INTO stampede_holders DEFAULT VALUES RETURNING holder",
            &[],
        )
        .await?
        .get(0);
    let key = i32::try_from(number).map_err(|_| {
        LoadError::Bad(format!(
            "holder number {number} is past the advisory lock's range; \
             restart the stampede_holders identity"
        ))
    })?;
    tx.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&HOLDER_LOCK_CLASS, &key],
    )
    .await?;
    tx.commit().await?;
    Ok(Holder(number.unsigned_abs()))
}

/// Refuses a `stampede_meta` that is not ours or of a version this build
/// does not know; answers the version (older ones are upgraded by [`migrate`]).
async fn check_meta(options: &PgOptions, client: &Client) -> Result<i32, PgOpenError> {
    let rows = client
        .query(
            "SELECT key, value FROM stampede_meta WHERE key IN ('application', 'schema_version')",
            &[],
        )
        .await
        .map_err(|e| PgOpenError::Corrupt {
            url: options.redacted(),
            detail: format!("reading stampede_meta: {}", describe(&e)),
        })?;
    let value = |name: &str| {
        rows.iter()
            .find(|row| row.get::<_, &str>(0) == name)
            .map(|row| row.get::<_, String>(1))
    };
    if value("application").as_deref() != Some(APPLICATION) {
        return Err(PgOpenError::Foreign {
            url: options.redacted(),
            what: match value("application") {
                Some(other) => format!("a stampede_meta table whose application is {other:?}"),
                None => "a stampede_meta table naming no application".to_string(),
            },
        });
    }
    let version = value("schema_version");
    match version.as_deref().and_then(|v| v.parse::<i32>().ok()) {
        Some(v) if (1..=SCHEMA_VERSION).contains(&v) => Ok(v),
        _ => Err(PgOpenError::Version {
            url: options.redacted(),
            found: version.unwrap_or_else(|| "none".into()),
        }),
    }
}

/// Why a replica could not load or follow the log.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Bad(String),
}

fn to_u64(value: i64, what: &str) -> Result<u64, LoadError> {
    u64::try_from(value).map_err(|_| LoadError::Bad(format!("{what} {value} is negative")))
}

fn to_i64(value: u64) -> i64 {
    // Positions and times stay far below i64::MAX; saturate rather than wrap.
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Loads the state: the checkpoint, then the log after it, in one
/// repeatable-read snapshot. Answers the replica and the commands replayed.
async fn load(client: &mut Client) -> Result<(Replica, u64), LoadError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let loaded = load_in(&tx).await?;
    tx.commit().await?;
    Ok(loaded)
}

/// [`load`] inside a transaction that already sees a consistent log (a
/// snapshot, or one holding [`LOG_LOCK`]).
async fn load_in(tx: &impl GenericClient) -> Result<(Replica, u64), LoadError> {
    let row = tx
        .query_opt("SELECT seq, at_ms, state FROM stampede_checkpoint", &[])
        .await?
        .ok_or_else(|| LoadError::Bad("the checkpoint is missing".into()))?;
    let seq = to_u64(row.get(0), "checkpoint seq")?;
    let at = Millis(to_u64(row.get(1), "checkpoint time")?);
    let state: ShopState = serde_json::from_str(row.get(2))
        .map_err(|e| LoadError::Bad(format!("the checkpoint's state: {e}")))?;
    let mut replica = Replica {
        state,
        seq,
        at,
        checkpoint_seq: seq,
    };
    let rows = tx.query(CATCH_UP, &[&to_i64(seq)]).await?;
    let replayed = rows.len() as u64;
    if let Gap::Found = apply_log(&mut replica, &rows)? {
        return Err(LoadError::Bad(format!(
            "the log does not follow its checkpoint at command {seq}"
        )));
    }
    Ok((replica, replayed))
}

/// The log after a position, in order.
const CATCH_UP: &str =
    "SELECT seq, at_ms, command, holder FROM stampede_log WHERE seq > $1 ORDER BY seq";

/// Whether the log still held what a replica needed to catch up.
#[must_use]
enum Gap {
    /// Every row followed on: applied.
    None,
    /// The first row does not follow the replica's position (a checkpoint
    /// truncated the log past it): nothing applied; reload.
    Found,
}

/// Re-applies logged rows `(seq, at_ms, command, holder)` in order, each
/// as its holder ran it (a key or lease it took stays its own), or reports a
/// [`Gap`] before applying any.
fn apply_log(replica: &mut Replica, rows: &[tokio_postgres::Row]) -> Result<Gap, LoadError> {
    if let Some(first) = rows.first()
        && to_u64(first.get(0), "log seq")? != replica.seq + 1
    {
        return Ok(Gap::Found);
    }
    for row in rows {
        let seq = to_u64(row.get(0), "log seq")?;
        if seq != replica.seq + 1 {
            return Err(LoadError::Bad(format!(
                "the log jumps from command {} to {seq}",
                replica.seq
            )));
        }
        let at = Millis(to_u64(row.get(1), "log time")?);
        let command: Command = serde_json::from_str(row.get(2))
            .map_err(|e| LoadError::Bad(format!("command {seq}: {e}")))?;
        let holder = match row.get::<_, Option<i64>>(3) {
            Some(n) => Some(Holder(to_u64(n, "log holder")?)),
            None => None,
        };
        // Only commands the state accepted were logged, so re-applying one
        // cannot be refused unless the log was changed by hand.
        replica
            .state
            .apply_as(command, at, holder)
            .map_err(|e| LoadError::Bad(format!("command {seq} no longer applies: {e}")))?;
        replica.seq = seq;
        replica.at = replica.at.max(at);
    }
    Ok(Gap::None)
}

/// A call waiting for the writer.
struct Call {
    command: Command,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

struct Shared {
    replica: Mutex<Replica>,
    clock: Clock,
    /// Signalled after commands that may make a job runnable, here or on another replica.
    changed: Notify,
    /// The writer connection's backend pid: our own notifications carry it.
    writer_pid: AtomicI32,
    /// Notifications from other replicas received so far.
    remote_notes: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Replica> {
        // A panic under the lock is a bug in the core; keep serving what it left.
        self.replica
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The PostgreSQL store of one replica.
pub struct PgStore {
    shared: Arc<Shared>,
    calls: mpsc::Sender<Call>,
    listener: tokio::task::JoinHandle<()>,
    /// The task freeing what replicas whose connection is gone held, if on.
    reaper: Option<tokio::task::JoinHandle<()>>,
    url: String,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Starts serving `opened` with `clock` (which should start at
    /// [`Opened::start_at`]): spawns the writer task, which runs until the
    /// store is dropped, the listener of other replicas' notifications and,
    /// with `free_dead_replicas`, the reaper ([`reap`]).
    pub fn start(opened: Opened, clock: Clock) -> Arc<PgStore> {
        let Opened {
            options,
            config,
            client,
            pid,
            holder,
            replica,
            epoch_unix_ms,
            ..
        } = opened;
        let shared = Arc::new(Shared {
            replica: Mutex::new(replica),
            clock,
            changed: Notify::new(),
            writer_pid: AtomicI32::new(pid),
            remote_notes: AtomicU64::new(0),
        });
        let (calls, queue) = mpsc::channel(QUEUE_BOUND);
        let writer = Writer {
            shared: shared.clone(),
            config: config.clone(),
            client: Some(client),
            statements: None,
            holder,
            stale: false,
            epoch_unix_ms,
            max_batch: options.max_batch.clamp(1, BATCH_MAX),
            checkpoint_min: options.checkpoint_min_commands.max(1),
        };
        let reaper = options
            .free_dead_replicas
            .then(|| tokio::spawn(reap(calls.downgrade(), config.clone())));
        tokio::spawn(writer.run(queue));
        let listener = tokio::spawn(listen(Arc::downgrade(&shared), config));
        Arc::new(PgStore {
            shared,
            calls,
            listener,
            reaper,
            url: options.redacted(),
        })
    }

    /// Reads this replica's state under its lock (as of its last batch).
    pub fn read<T>(&self, f: impl FnOnce(&ShopState) -> T) -> T {
        f(&self.shared.lock().state)
    }

    /// The log position this replica has applied.
    pub fn position(&self) -> u64 {
        self.shared.lock().seq
    }

    async fn execute(&self, command: Command) -> Result<Reply, StoreError> {
        execute(&self.calls, command).await
    }

    /// Leases the next runnable job, waiting up to `wait_ms` (at most
    /// [`LEASE_WAIT_MS_MAX`]). Each turn registers for the signal, then
    /// leases through the log if this replica's state has a runnable job;
    /// if it has none and another replica has notified since this wait last
    /// caught up (or it never has), it catches up with the log first (a
    /// read: no lock, no commit) and looks again. Otherwise it sleeps until
    /// the signal (a command here or on another replica that may make a job
    /// runnable), the next job's time or the end of the wait. So idle
    /// workers on many replicas wake each other with reads, never with
    /// empty leases written to the log, and a job enqueued on this replica
    /// costs its worker no extra round trip.
    async fn lease_job_wait(&self, wait_ms: u64) -> Result<Option<Lease>, StoreError> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(LEASE_WAIT_MS_MAX));
        let mut caught_up_with = None;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut runnable = self.has_runnable_job();
            let remote = self.shared.remote_notes.load(Ordering::Acquire);
            if !runnable && caught_up_with != Some(remote) {
                // The cheapest read there is: it only makes the writer catch up.
                self.execute(Command::ReadFeed {
                    since: None,
                    max: 0,
                })
                .await?;
                caught_up_with = Some(remote);
                runnable = self.has_runnable_job();
            }
            if runnable {
                match self.execute(Command::LeaseJob).await? {
                    Reply::Lease(Some(lease)) => return Ok(Some(lease)),
                    Reply::Lease(None) => {}
                    other => return Err(super::unexpected(other)),
                }
            }
            let started = Instant::now();
            if started >= deadline {
                return Ok(None);
            }
            let (now, next) = self.next_job();
            super::sleep_until_job(changed.as_mut(), started, now, next, deadline).await;
        }
    }

    /// Whether this replica's state, as far as it has caught up, has a job runnable now.
    fn has_runnable_job(&self) -> bool {
        let (now, next) = self.next_job();
        next.is_some_and(|at| at <= now)
    }

    /// This replica's `now` and when its next job is runnable.
    fn next_job(&self) -> (Millis, Option<Millis>) {
        let replica = self.shared.lock();
        (
            self.shared.clock.now().max(replica.at),
            replica.state.next_job_at(),
        )
    }
}

/// Queues `command` for the writer behind `calls` and waits for its answer.
async fn execute(calls: &mpsc::Sender<Call>, command: Command) -> Result<Reply, StoreError> {
    let (reply, answer) = oneshot::channel();
    calls
        .try_send(Call { command, reply })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                StoreError::Unavailable("the PostgreSQL store's queue is full".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Unavailable("the PostgreSQL store has stopped".into())
            }
        })?;
    answer.await.map_err(|_| {
        StoreError::Unavailable("the PostgreSQL store stopped before answering".into())
    })?
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The writer ends when its queue closes (with this store), after
        // finishing the batch in hand; the listener would wait forever, and
        // the reaper would keep the queue open while it answers a call.
        self.listener.abort();
        if let Some(reaper) = &self.reaper {
            reaper.abort();
        }
    }
}

impl Store for PgStore {
    fn call(&self, command: Command) -> StoreFuture<'_> {
        if let Command::LeaseJobWait { wait_ms } = command {
            return Box::pin(async move { Ok(Reply::Lease(self.lease_job_wait(wait_ms).await?)) });
        }
        Box::pin(self.execute(command))
    }
}

/// The replica's writer: one connection, one batch at a time.
struct Writer {
    shared: Arc<Shared>,
    config: Config,
    client: Option<Client>,
    /// `client`'s prepared statements (prepared on its first batch).
    statements: Option<Statements>,
    /// This replica's number, locked on `client`'s session: every command
    /// it logs is logged as this holder's. Taken anew on each connection
    /// (the old one's lock ended with it, and other replicas may have freed
    /// what it held); `None` without `free_dead_replicas`.
    holder: Option<Holder>,
    /// The replica's state may hold commands the database does not: reload before the next batch.
    stale: bool,
    /// The shop's epoch as the database held it at open: a database that
    /// says another was reset (and maybe made anew) under this replica.
    epoch_unix_ms: u64,
    max_batch: usize,
    checkpoint_min: u64,
}

/// What one batch did.
struct Done {
    replies: Vec<Result<Reply, StoreError>>,
    wake: bool,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Call>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while queue.recv_many(&mut batch, self.max_batch).await > 0 {
            let (commands, waiting): (Vec<Command>, Vec<_>) =
                batch.drain(..).map(|c| (c.command, c.reply)).unzip();
            let replies = match self.batch(commands).await {
                Ok(done) => {
                    if done.wake {
                        self.shared.changed.notify_waiters();
                    }
                    done.replies
                }
                Err(error) => {
                    tracing::warn!(%error, "PostgreSQL batch failed; reloading before the next");
                    self.client = None;
                    let why = format!("PostgreSQL: {error}");
                    waiting
                        .iter()
                        .map(|_| Err(StoreError::Unavailable(why.clone())))
                        .collect()
                }
            };
            for (reply, answer) in waiting.into_iter().zip(replies) {
                let _ = reply.send(answer);
            }
        }
    }

    async fn connect(&mut self) -> Result<Client, LoadError> {
        let mut client = connect(&self.config).await?;
        let epoch: Option<String> = client
            .query_opt(
                "SELECT value FROM stampede_meta WHERE key = 'epoch_unix_ms'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|row| row.get(0));
        if epoch != Some(self.epoch_unix_ms.to_string()) {
            return Err(LoadError::Bad(
                "the database was reset under this replica (its shop is gone, or another was made there); restart the replica".into(),
            ));
        }
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        self.shared.writer_pid.store(pid, Ordering::Relaxed);
        if self.holder.is_some() {
            self.holder = Some(register(&mut client).await?);
        }
        Ok(client)
    }

    /// Runs one batch on the writer's connection (connecting first if it
    /// has none); a failed batch drops the connection.
    async fn batch(&mut self, commands: Vec<Command>) -> Result<Done, LoadError> {
        let mut client = match self.client.take() {
            Some(client) => client,
            None => {
                self.statements = None;
                within(BATCH_TIMEOUT_MS, "connecting", self.connect()).await?
            }
        };
        let statements = match self.statements.take() {
            Some(statements) => statements,
            None => {
                within(BATCH_TIMEOUT_MS, "preparing", async {
                    Ok(Statements::prepare(&client).await?)
                })
                .await?
            }
        };
        if self.stale {
            let (replica, replayed) =
                within(RELOAD_TIMEOUT_MS, "reloading the state", load(&mut client)).await?;
            tracing::info!(seq = replica.seq, replayed, "replica reloaded");
            *self.shared.lock() = replica;
            self.stale = false;
        }
        let ran = within(
            BATCH_TIMEOUT_MS,
            "running a batch (or the log's lock held that long)",
            self.run_batch(&mut client, &statements, commands),
        )
        .await;
        if ran.is_err() {
            // A write batch cut off may still commit: the replica may hold what the database
            // does not (and the connection is dropped with whatever it waited for).
            self.stale = true;
        }
        let done = ran?;
        self.client = Some(client);
        self.statements = Some(statements);
        Ok(done)
    }

    /// Read-only batches catch up and answer; others lock the log, catch
    /// up, apply, append and commit.
    ///
    /// A write batch is two round trips: `BEGIN`, the lock and the catch-up
    /// sent together; then the append, the notification, the checkpoint and
    /// `COMMIT` together (PostgreSQL runs pipelined statements in order,
    /// each catch-up reading a snapshot taken after the lock was granted; if
    /// any fails the transaction is aborted and its `COMMIT` rolls back).
    async fn run_batch(
        &mut self,
        client: &mut Client,
        st: &Statements,
        commands: Vec<Command>,
    ) -> Result<Done, LoadError> {
        if commands.iter().all(Command::is_read) {
            return self.run_reads(client, st, commands).await;
        }
        self.run_writes(client, st, commands).await
    }

    /// A read-only batch: catch up without the lock, then answer.
    async fn run_reads(
        &mut self,
        client: &mut Client,
        st: &Statements,
        commands: Vec<Command>,
    ) -> Result<Done, LoadError> {
        let shared = self.shared.clone();
        let seq = to_i64(shared.lock().seq);
        let rows = client.query(&st.catch_up, &[&seq]).await?;
        let gap = {
            let mut replica = shared.lock();
            apply_log(&mut replica, &rows).inspect_err(|_| self.stale = true)?
        };
        if let Gap::Found = gap {
            let (replica, _) = load(client).await?;
            *shared.lock() = replica;
        }
        let mut replica = shared.lock();
        let replies = answer(&mut replica, &shared.clock, commands, None, None);
        Ok(Done {
            replies,
            wake: false,
        })
    }

    /// A batch with a write: lock the log, catch up, apply, then append,
    /// notify, checkpoint and commit (see [`Writer::run_batch`]).
    async fn run_writes(
        &mut self,
        client: &mut Client,
        st: &Statements,
        commands: Vec<Command>,
    ) -> Result<Done, LoadError> {
        let shared = self.shared.clone();
        let seq = to_i64(shared.lock().seq);
        let (lock, after): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
            ([&LOG_LOCK], [&seq]);
        let (_, _, rows) = tokio::try_join!(
            client.batch_execute(WRITE_BEGIN),
            client.execute(&st.lock, &lock),
            client.query(&st.catch_up, &after),
        )?;
        // From here until the commit, the replica may hold what the database does not.
        self.stale = true;
        let gap = apply_log(&mut shared.lock(), &rows)?;
        if let Gap::Found = gap {
            // Under the lock, the checkpoint and the log after it are consistent.
            let (replica, _) = load_in(&*client).await?;
            *shared.lock() = replica;
        }
        let mut log = Log::default();
        let (replies, checkpoint) = self.apply_logged(commands, &mut log)?;
        let pid = shared.writer_pid.load(Ordering::Relaxed).to_string();
        commit(client, st, &log, checkpoint.as_ref(), &pid).await?;
        self.stale = false;
        if let Some((seq, ..)) = checkpoint {
            shared.lock().checkpoint_seq = seq;
        }
        Ok(Done {
            replies,
            wake: log.wake,
        })
    }

    /// Applies a write batch to the replica, logging what changed it, and
    /// takes a checkpoint (position, time, state) when one is due.
    fn apply_logged(
        &self,
        commands: Vec<Command>,
        log: &mut Log,
    ) -> Result<(Replies, Option<Checkpoint>), LoadError> {
        let mut replica = self.shared.lock();
        let replies = answer(
            &mut replica,
            &self.shared.clock,
            commands,
            Some(log),
            self.holder,
        );
        let due = replica.seq.saturating_sub(replica.checkpoint_seq)
            >= self.checkpoint_min.max(
                CHECKPOINT_COMMANDS_PER_ORDER.saturating_mul(replica.state.order_count() as u64),
            );
        if !due {
            return Ok((replies, None));
        }
        let state = serde_json::to_string(&replica.state)
            .map_err(|e| LoadError::Bad(format!("writing a checkpoint: {e}")))?;
        Ok((replies, Some((replica.seq, replica.at, state))))
    }
}

/// A batch's answers, one per command.
type Replies = Vec<Result<Reply, StoreError>>;

/// A checkpoint to write: the log position, its time and the state as JSON.
type Checkpoint = (u64, Millis, String);

/// The second round trip of a write batch: the append, the notification,
/// the trim and the checkpoint, then `COMMIT`, pipelined.
async fn commit(
    client: &Client,
    st: &Statements,
    log: &Log,
    checkpoint: Option<&Checkpoint>,
    pid: &str,
) -> Result<(), tokio_postgres::Error> {
    let append = async {
        match log.seqs.is_empty() {
            true => Ok(0),
            false => {
                client
                    .execute(
                        &st.append,
                        &[&log.seqs, &log.ats, &log.ops, &log.commands, &log.holders],
                    )
                    .await
            }
        }
    };
    let notify = async {
        match log.wake {
            true => client.execute(&st.notify, &[&NOTIFY_CHANNEL, &pid]).await,
            false => Ok(0),
        }
    };
    // Keep the log since the previous checkpoint (trimmed before the new
    // one replaces it), so a replica a little behind still catches up
    // from the log; one further behind reloads from the checkpoint.
    let trim = async {
        match checkpoint.is_some() {
            true => client.execute(&st.trim, &[]).await,
            false => Ok(0),
        }
    };
    let write_checkpoint = async {
        match checkpoint {
            Some((seq, at, state)) => {
                client
                    .execute(&st.checkpoint, &[&to_i64(*seq), &to_i64(at.0), state])
                    .await
            }
            None => Ok(0),
        }
    };
    tokio::try_join!(
        append,
        notify,
        trim,
        write_checkpoint,
        client.batch_execute("COMMIT")
    )?;
    Ok(())
}

/// The writer's statements, prepared once per connection (an unprepared
/// query costs a round trip of its own to be parsed).
struct Statements {
    lock: Statement,
    catch_up: Statement,
    append: Statement,
    notify: Statement,
    trim: Statement,
    checkpoint: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        // A generic plan for `seq > $1` guesses a third of the log and may scan it all; each
        // catch-up reads a few rows at its tail, which only a plan for the value sees.
        client
            .batch_execute("SET plan_cache_mode = force_custom_plan")
            .await?;
        let (lock, catch_up, append, notify, trim, checkpoint) = tokio::try_join!(
            client.prepare("SELECT pg_advisory_xact_lock($1)"),
            client.prepare(CATCH_UP),
            client.prepare(
                "INSERT INTO stampede_log (seq, at_ms, op, command, holder)
                 SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[])"
            ),
            client.prepare("SELECT pg_notify($1, $2)"),
            client.prepare(
                "DELETE FROM stampede_log WHERE seq <= (SELECT seq FROM stampede_checkpoint WHERE id = 1)"
            ),
            client.prepare(
                "UPDATE stampede_checkpoint SET seq = $1, at_ms = $2, state = $3 WHERE id = 1"
            ),
        )?;
        Ok(Statements {
            lock,
            catch_up,
            append,
            notify,
            trim,
            checkpoint,
        })
    }
}

/// The rows a batch appends, column by column.
#[derive(Default)]
struct Log {
    seqs: Vec<i64>,
    ats: Vec<i64>,
    ops: Vec<String>,
    commands: Vec<String>,
    holders: Vec<Option<i64>>,
    /// A logged command may make a job runnable.
    wake: bool,
}

/// Applies `commands` to the replica in order as `holder`'s, each stamped
/// no earlier than the last; with `log`, records every command that was not
/// refused and may have changed the state (`ShopState::changes_nothing`).
fn answer(
    replica: &mut Replica,
    clock: &Clock,
    commands: Vec<Command>,
    mut log: Option<&mut Log>,
    holder: Option<Holder>,
) -> Vec<Result<Reply, StoreError>> {
    let mut replies = Vec::with_capacity(commands.len());
    for command in commands {
        let now = clock.now().max(replica.at);
        // Serialized before it is applied (which consumes it); a refusal drops the text.
        let record = match (&log, replica.state.changes_nothing(&command, now)) {
            (Some(_), false) => Some((
                serde_json::to_string(&command).expect("commands serialize"),
                command.may_wake_jobs(),
            )),
            _ => None,
        };
        let reply = replica
            .state
            .apply_as(command, now, holder)
            .map_err(StoreError::from);
        if let (Some(log), Some((json, wakes)), Ok(_)) = (log.as_deref_mut(), record, &reply) {
            replica.seq += 1;
            replica.at = now;
            log.wake |= wakes;
            log.seqs.push(to_i64(replica.seq));
            log.ats.push(to_i64(now.0));
            log.ops.push(op_name(&json).to_string());
            log.commands.push(json);
            log.holders.push(holder.map(|h| to_i64(h.0)));
        }
        replies.push(reply);
    }
    replies
}

/// The `op` tag of a serialized command (`place_order`, `lease_job`, …), for
/// people reading the log: serde writes an internally tagged enum's tag first.
fn op_name(json: &str) -> &str {
    json.strip_prefix(r#"{"op":""#)
        .and_then(|rest| rest.split_once('"'))
        .map_or("", |(op, _)| op)
}

/// Listens for other replicas' notifications and wakes this replica's
/// waiting leases; reconnects after [`LISTEN_RETRY_MS`] if the connection
/// ends. Ends when the store is gone.
async fn listen(shared: std::sync::Weak<Shared>, config: Config) {
    /// Notifications held for the listener; more are dropped (one wakes as well as many).
    const PENDING_MAX: usize = 1_024;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (found, mut notes) = mpsc::channel(PENDING_MAX);
                let driver = tokio::spawn(async move {
                    while let Some(Ok(message)) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        if let AsyncMessage::Notification(note) = message {
                            let _ = found.try_send(note.payload().to_string());
                        }
                    }
                });
                if let Err(error) = client
                    .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                    .await
                {
                    tracing::warn!(error = %describe(&error), "PostgreSQL LISTEN failed");
                } else {
                    while let Some(payload) = notes.recv().await {
                        let Some(shared) = shared.upgrade() else {
                            driver.abort();
                            return;
                        };
                        let ours = shared.writer_pid.load(Ordering::Relaxed).to_string();
                        if payload != ours {
                            shared.remote_notes.fetch_add(1, Ordering::Release);
                            shared.changed.notify_waiters();
                        }
                    }
                }
                driver.abort();
            }
            Err(error) => {
                tracing::warn!(error = %describe(&error), "PostgreSQL listener cannot connect");
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(LISTEN_RETRY_MS)).await;
    }
}

/// The replicas whose connection is gone: registered in `stampede_holders`
/// and no longer holding their advisory lock (see [`register`]); at most 64
/// a round (the rest on the next).
const DEAD_HOLDERS: &str = "
SELECT h.holder FROM stampede_holders h
WHERE NOT EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::BIGINT = $1 AND l.objid::BIGINT = h.holder)
ORDER BY h.holder
LIMIT 64";

/// Every [`REAP_EVERY_MS`], on a connection of its own: finds the replicas
/// whose connection to the database is gone (`kill -9`, a crash, a lost
/// network: PostgreSQL ends the session and its advisory lock) and, for
/// each, logs `ReleaseHolder` through this replica's writer — its
/// idempotency keys in flight and its job leases are free at once, so a
/// buyer retrying `/pay` on another replica is not refused 409 for the
/// key's 30 s in-flight timeout, nor an order left waiting out a lease —
/// then forgets it. Every replica does this; a holder freed twice frees
/// nothing the second time. Ends when the store's queue is gone.
async fn reap(calls: mpsc::WeakSender<Call>, config: Config) {
    let class = i64::from(HOLDER_LOCK_CLASS);
    loop {
        match connect(&config).await {
            Ok(client) => loop {
                let dead = match client.query(DEAD_HOLDERS, &[&class]).await {
                    Ok(rows) => rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
                    Err(error) => {
                        tracing::warn!(error = %describe(&error), "looking for gone replicas failed");
                        break;
                    }
                };
                for number in dead {
                    let Some(calls) = calls.upgrade() else {
                        return;
                    };
                    let holder = Holder(number.unsigned_abs());
                    let freed = execute(&calls, Command::ReleaseHolder { holder }).await;
                    drop(calls);
                    match freed {
                        Ok(Reply::Count(n)) => {
                            if n > 0 {
                                tracing::warn!(%holder, freed = n, "a replica's connection to PostgreSQL is gone: freed the idempotency keys it had in flight and its job leases");
                            }
                            if let Err(error) = client
                                .execute(
                                    "DELETE FROM stampede_holders WHERE holder = $1",
                                    &[&number],
                                )
                                .await
                            {
                                tracing::warn!(error = %describe(&error), "forgetting a gone replica failed");
                            }
                        }
                        Ok(other) => tracing::warn!(?other, "ReleaseHolder answered"),
                        // Tried again on the next round.
                        Err(error) => {
                            tracing::warn!(%error, %holder, "freeing a gone replica failed")
                        }
                    }
                }
                if calls.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(REAP_EVERY_MS)).await;
            },
            Err(error) => {
                tracing::warn!(error = %describe(&error), "PostgreSQL reaper cannot connect");
            }
        }
        if calls.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(LISTEN_RETRY_MS)).await;
    }
}

/// How many times, [`RESET_LOOK_MS`] apart, `reset` looks for live replicas
/// before refusing.
const RESET_LOOKS: u32 = 10;
const RESET_LOOK_MS: u64 = 200;

/// Registered replicas whose session still holds its advisory lock: live
/// ones (see [`register`]). A database without `stampede_holders` has none.
async fn live_replicas(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    let registered: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables \
             WHERE schemaname = current_schema() AND tablename = 'stampede_holders')",
            &[],
        )
        .await?
        .get(0);
    if !registered {
        return Ok(0);
    }
    let class = i64::from(HOLDER_LOCK_CLASS);
    Ok(client
        .query_one(
            "SELECT count(*) FROM stampede_holders h
             WHERE EXISTS (
                 SELECT 1 FROM pg_locks l
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid::BIGINT = $1 AND l.objid::BIGINT = h.holder)",
            &[&class],
        )
        .await?
        .get(0))
}

/// Drops Stampede's tables from the database at `options.url`, if it is a
/// Stampede database (a fresh start for `stampede load`); refuses a foreign
/// one, and one that live replicas are serving ([`PgOpenError::InUse`]).
pub async fn reset(options: &PgOptions) -> Result<(), PgOpenError> {
    let config = options.config()?;
    let mut client = connect(&config)
        .await
        .map_err(|e| unreachable_error(options, &e))?;
    match inspect(&client).await.map_err(|e| PgOpenError::Corrupt {
        url: options.redacted(),
        detail: describe(&e),
    })? {
        Found::Empty => Ok(()),
        Found::Foreign(what) => Err(PgOpenError::Foreign {
            url: options.redacted(),
            what,
        }),
        Found::Ours => {
            check_meta(options, &client).await?;
            drop_ours(options, &mut client).await
        }
    }
}

/// [`reset`] of a Stampede database: refused while a replica is live (a
/// replica stopped a moment ago may still be closing its session, its lock
/// going with it: looked at for up to 2 s); then, in one transaction under
/// the schema's and the log's locks (no replica writing or creating
/// meanwhile), looked at once more and dropped. `IF EXISTS` throughout: a
/// reset cut short is finished by the next.
async fn drop_ours(options: &PgOptions, client: &mut Client) -> Result<(), PgOpenError> {
    let failed = |what: &str, e: &tokio_postgres::Error| PgOpenError::Corrupt {
        url: options.redacted(),
        detail: format!("{what}: {}", describe(e)),
    };
    let in_use = |replicas: i64| PgOpenError::InUse {
        url: options.redacted(),
        replicas,
    };
    let mut replicas = 0;
    for look in 0..RESET_LOOKS {
        if look > 0 {
            tokio::time::sleep(Duration::from_millis(RESET_LOOK_MS)).await;
        }
        replicas = live_replicas(&*client)
            .await
            .map_err(|e| failed("looking for live replicas", &e))?;
        if replicas == 0 {
            break;
        }
    }
    if replicas > 0 {
        return Err(in_use(replicas));
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| failed("beginning the reset", &e))?;
    for lock in [SCHEMA_LOCK, LOG_LOCK] {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
            .await
            .map_err(|e| failed("locking the database", &e))?;
    }
    let replicas = live_replicas(&tx)
        .await
        .map_err(|e| failed("looking for live replicas", &e))?;
    if replicas > 0 {
        return Err(in_use(replicas));
    }
    tx.batch_execute(
        "DROP TABLE IF EXISTS stampede_log; DROP TABLE IF EXISTS stampede_checkpoint; \
         DROP TABLE IF EXISTS stampede_holders; DROP TABLE IF EXISTS stampede_meta;",
    )
    .await
    .map_err(|e| PgOpenError::Create {
        url: options.redacted(),
        detail: format!("dropping the old tables: {}", describe(&e)),
    })?;
    tx.commit().await.map_err(|e| PgOpenError::Create {
        url: options.redacted(),
        detail: format!("dropping the old tables: {}", describe(&e)),
    })
}

/// For test suites: the PostgreSQL server to test against, as
/// `postgres://user:password@host:port` (no database): `STAMPEDE_TEST_PG`
/// (its database part dropped), else the `PG*` variables `pg_virtualenv`
/// sets. With neither, a test must not pass silently: this prints a loud
/// "NOT RUN" line and answers `None` — or panics when `STAMPEDE_REQUIRE_PG`
/// is set (CI sets it, so there the PostgreSQL tests run or fail).
pub fn test_server() -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let found = match env("STAMPEDE_TEST_PG") {
        Some(url) => Some(match url.rsplit_once('/') {
            Some((base, _)) if base.contains("://") && !base.ends_with('/') => base.to_string(),
            _ => url,
        }),
        None => match (env("PGHOST"), env("PGUSER")) {
            (Some(host), Some(user)) => Some(format!(
                "postgres://{user}:{}@{host}:{}",
                env("PGPASSWORD").unwrap_or_default(),
                env("PGPORT").unwrap_or_else(|| "5432".into())
            )),
            _ => None,
        },
    };
    if found.is_none() {
        assert!(
            std::env::var_os("STAMPEDE_REQUIRE_PG").is_none(),
            "STAMPEDE_REQUIRE_PG is set but no PostgreSQL is configured \
             (set STAMPEDE_TEST_PG=postgres://user:password@host:port/db or run under pg_virtualenv)"
        );
        eprintln!(
            "\n*** NOT RUN: no PostgreSQL for this test (set STAMPEDE_TEST_PG or run under \
             pg_virtualenv); it proves nothing here ***\n"
        );
    }
    found
}

/// For test suites: a fresh, empty database `stampede_t_<name>` on
/// [`test_server`] (dropped first if it exists); its URL, or `None` where
/// no server is configured.
pub async fn test_database(name: &str) -> Option<String> {
    let base = test_server()?;
    let db = format!("stampede_t_{name}");
    let (admin, connection) = tokio_postgres::connect(&format!("{base}/postgres"), NoTls)
        .await
        .unwrap_or_else(|e| panic!("the test server {} answers: {e}", redact(&base)));
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap_or_else(|e| panic!("dropping {db}: {}", describe(&e)));
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap_or_else(|e| panic!("creating {db}: {}", describe(&e)));
    Some(format!("{base}/{db}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            redact("postgres://shop:s3cret@db.internal:5432/stampede"),
            "postgres://shop:***@db.internal:5432/stampede"
        );
        assert_eq!(
            redact("postgres://shop@db/stampede"),
            "postgres://shop@db/stampede"
        );
        // Given as a query parameter, with other parameters around it.
        assert_eq!(
            redact("postgres://shop@db:5432/s?sslmode=disable&password=hunter2&x=1"),
            "postgres://shop@db:5432/s?sslmode=disable&password=***&x=1"
        );
        assert_eq!(
            redact("postgres://shop@db/s?PASSWORD=hunter2"),
            "postgres://shop@db/s?PASSWORD=***"
        );
        // An `@` in the query: more is hidden, the password never shown.
        let odd = redact("postgres://shop:s3cret@db/s?password=a@b");
        assert!(!odd.contains("s3cret") && !odd.contains("a@b"), "{odd}");
        let options = PgOptions::new("postgresql://a:b@h/d");
        assert_eq!(options.redacted(), "postgresql://a:***@h/d");
        assert!(!format!("{options:?}").contains(":b@"));
    }

    #[test]
    fn the_op_column_is_the_commands_tag() {
        let json = serde_json::to_string(&Command::LeaseJob).unwrap();
        assert_eq!(op_name(&json), "lease_job");
        let json = serde_json::to_string(&Command::Housekeep { max: 3 }).unwrap();
        assert_eq!(op_name(&json), "housekeep");
        assert_eq!(op_name("not json"), "");
    }

    #[test]
    fn only_postgres_urls_are_urls() {
        assert!(PgOptions::is_url("postgres://h/d"));
        assert!(PgOptions::is_url("postgresql://h/d"));
        assert!(!PgOptions::is_url("sqlite:shop.db"));
        assert!(!PgOptions::is_url("postgres:/h"));
    }
}
