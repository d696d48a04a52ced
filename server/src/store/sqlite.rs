//! The durable store: the shop's state in one SQLite file.
//!
//! **Design decision: SQLite keeps a log of core commands; the core decides.**
//! The working state is the core's `ShopState` in memory (a [`MemoryStore`]);
//! every command that changed it is appended, in apply order, to the
//! `commands` table, and the whole state is written now and then as a
//! checkpoint (the `checkpoint` row, plus plain tables — `orders`,
//! `order_lines`, `transitions`, `stock`, `reservations`, `idempotency_keys`,
//! `jobs`, `dead_letters`, `intents`, `webhook_events` — for people to query
//! with `sqlite3`), after which the log up to it is deleted. Opening the file
//! loads the checkpoint and re-applies the log through `ShopState::apply`,
//! which is pure: the same commands at the same times give the same state.
//! No decision (transition legality, fingerprints, pricing, stock) is
//! re-derived in SQL; the SQL layer only stores.
//!
//! **A reply is released only once what it reveals is durable.** A command's
//! reply waits until the transaction holding its log row has committed; a
//! read or a refusal waits for the last command applied before it, so no
//! client ever sees a change that a crash could take back. One writer thread
//! commits whatever is queued as one transaction (group commit, at most
//! [`BATCH_MAX`] commands), so throughput holds under load while each
//! transaction costs one sync. If a commit fails the store stops: every
//! reply still waiting, and every later call, gets
//! [`StoreError::Unavailable`], and a restart recovers from the file.
//!
//! **Durability level.** The database runs in WAL mode. With
//! [`SyncLevel::Full`] (the default) a commit is synced to the disk before
//! its replies go: acknowledged orders survive a power loss. With
//! [`SyncLevel::Normal`] the WAL is synced only at checkpoints: acknowledged
//! orders survive a crash of the process (`kill -9`) but a power loss may
//! take back the last commits.
//!
//! **The file is ours or it is refused.** A Stampede database carries
//! [`APPLICATION_ID`] and its schema version in the SQLite header. A file
//! with another application id, another program's tables, a version this
//! build does not know, or bytes SQLite cannot read is refused with an
//! [`OpenError`] and left exactly as it was.
//!
//! **Time survives restarts.** The database records the Unix time it was
//! created; its `now` is milliseconds since then, and a reopened store
//! resumes no earlier than the last command it logged
//! ([`Recovered::resume_at`]), so deadlines stored as `Millis` (reservation
//! expiry, job visibility, key retention) keep their meaning.
//!
//! The tables are refreshed at each checkpoint (every
//! [`CHECKPOINT_MIN_COMMANDS`] logged commands, or more as the state grows,
//! when the file is opened, and when the store is closed — so a shop stopped
//! as asked reopens without replaying anything; only a crash leaves a log to
//! replay); between checkpoints they lag the log, which
//! holds every change since.

use super::memory::{Journal, MemoryStore};
use super::{Command, Reply, Store, StoreError, StoreFuture};
use crate::clock::Clock;
use crate::design::Commit;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use serde::Serialize;
use stampede_core::{Millis, ShopState};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use tokio::sync::watch;

/// The SQLite `application_id` of a Stampede database ("STMP").
pub const APPLICATION_ID: i32 = 0x5354_4d50;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Most commands committed in one transaction.
pub const BATCH_MAX: usize = 4_096;

/// Most commands queued for the writer; a full queue makes the next command
/// wait (under the state lock) for room: back-pressure, not unbounded memory.
pub const QUEUE_BOUND: usize = 65_536;

/// Fewest logged commands between two checkpoints. The interval also grows
/// with the state ([`CHECKPOINT_COMMANDS_PER_ORDER`] per order held), so
/// writing checkpoints costs a bounded share of the work however large the
/// shop gets, while reopening re-applies at most that many commands (about
/// a microsecond each).
pub const CHECKPOINT_MIN_COMMANDS: u64 = 100_000;

/// How often the `commit=ack-first` store commits, ms: its replies have long
/// gone by then.
pub const ACK_FIRST_COMMIT_EVERY_MS: u64 = 200;

/// Logged commands per order held between two checkpoints (see
/// [`CHECKPOINT_MIN_COMMANDS`]).
pub const CHECKPOINT_COMMANDS_PER_ORDER: u64 = 8;

/// How long a statement waits for a lock another process holds, ms.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// How many more times the writer tries a batch whose commit found the
/// database locked by another process (each try's statements having waited up
/// to [`BUSY_TIMEOUT_MS`], with a pause of 100 ms doubling up to 1 s between
/// tries: about a minute in all) before the store stops: a lock someone holds
/// for a while (a `sqlite3` shell in a transaction, a backup) is waited out;
/// one held for longer stops the store as any failed commit does.
pub const BUSY_RETRIES_MAX: u32 = 10;

/// How commits reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncLevel {
    /// Each commit is synced before its replies are released: survives power loss.
    #[default]
    Full,
    /// Commits reach the OS at once and the disk at checkpoints: survives a
    /// crash of the process, not of the machine.
    Normal,
}

impl SyncLevel {
    fn pragma(self) -> &'static str {
        match self {
            SyncLevel::Full => "FULL",
            SyncLevel::Normal => "NORMAL",
        }
    }

    /// Parses `full` or `normal`.
    pub fn parse(text: &str) -> Option<SyncLevel> {
        match text {
            "full" => Some(SyncLevel::Full),
            "normal" => Some(SyncLevel::Normal),
            _ => None,
        }
    }
}

impl fmt::Display for SyncLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncLevel::Full => "full",
            SyncLevel::Normal => "normal",
        })
    }
}

/// How to open a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The file (created when missing).
    pub path: PathBuf,
    /// How commits reach the disk.
    pub sync: SyncLevel,
    /// Most commands per transaction: [`BATCH_MAX`] for group commit, 1 for
    /// one transaction (and one sync) per command.
    pub max_batch: usize,
    /// When replies go: after their commit (the reference), or at once with
    /// commits every [`ACK_FIRST_COMMIT_EVERY_MS`] (the `commit=ack-first`
    /// mistake: a crash takes back what was acknowledged since the last one).
    pub commit: Commit,
    /// Fewest logged commands between two checkpoints
    /// ([`CHECKPOINT_MIN_COMMANDS`]; tests use a small number to checkpoint
    /// often).
    pub checkpoint_min_commands: u64,
}

impl SqliteOptions {
    /// Group commit, fully synced, at `path`.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            sync: SyncLevel::Full,
            max_batch: BATCH_MAX,
            commit: Commit::Durable,
            checkpoint_min_commands: CHECKPOINT_MIN_COMMANDS,
        }
    }
}

/// Why a database could not be opened. Nothing was written to the file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An SQLite URI (`file:…`): SQLite would open the file the URI names,
    /// while the shop's locks would be taken on the text as a path, so two
    /// spellings of one file could both be opened.
    #[error(
        "{path}: an SQLite URI, not a path; write the file's path (sqlite:/var/lib/shop.db, not sqlite:file:/var/lib/shop.db)"
    )]
    Uri {
        /// What was given.
        path: String,
    },
    /// The database file is missing or empty, but its WAL holds data: what
    /// the WAL holds (acknowledged changes, perhaps) cannot be read without
    /// the file it belongs to, and a new shop would overwrite it.
    #[error(
        "{path}: the database file is missing or empty but {path}-wal holds {bytes} bytes, which may be acknowledged changes; put the database file back, or move {path}-wal away to start a new shop"
    )]
    OrphanWal {
        /// The database file.
        path: String,
        /// Size of the WAL.
        bytes: u64,
    },
    /// The file belongs to another program.
    #[error(
        "{path}: not a Stampede database ({what}); refusing to use it — pass another --store path"
    )]
    Foreign {
        /// The file.
        path: String,
        /// What was found.
        what: String,
    },
    /// A Stampede database of a schema version this build cannot read.
    #[error(
        "{path}: Stampede database schema version {found}, this build reads version {SCHEMA_VERSION}; refusing to use it"
    )]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: i32,
    },
    /// The file cannot be read as a Stampede database.
    #[error("{path}: unreadable or corrupt database: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// Another store (in this process or another) has the file open.
    #[error(
        "{path}: in use by another running shop (its lock file {path}-lock, or the database file under another name, is locked); stop it or pass another --store path"
    )]
    InUse {
        /// The file.
        path: String,
    },
    /// The file (or its lock file beside it) could not be opened, locked or
    /// removed: a permission, a read-only file system, a missing folder.
    #[error("{path}: cannot use the file: {detail}")]
    Inaccessible {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// A fresh database could not be set up.
    #[error("{path}: cannot create the database: {detail}")]
    Create {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// A database opened and its state recovered, ready to serve.
pub struct Recovered {
    /// Declared before `lock`, so dropped first (see [`FileLock`]).
    conn: Connection,
    lock: FileLock,
    options: SqliteOptions,
    state: ShopState,
    epoch_unix_ms: u64,
    resume_at: Millis,
    seq: u64,
    replayed: u64,
    created: bool,
}

impl fmt::Debug for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovered")
            .field("path", &self.options.path)
            .field("epoch_unix_ms", &self.epoch_unix_ms)
            .field("resume_at", &self.resume_at)
            .field("seq", &self.seq)
            .field("replayed", &self.replayed)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Recovered {
    /// The Unix time (ms) the database was created: its clock's origin.
    pub fn epoch_unix_ms(&self) -> u64 {
        self.epoch_unix_ms
    }

    /// The time of the last command logged: the store's clock must not
    /// start before it.
    pub fn resume_at(&self) -> Millis {
        self.resume_at
    }

    /// Where the clock of a process started at Unix time `unix_now_ms`
    /// starts: time since the database was created, never before
    /// [`Recovered::resume_at`] (a wall clock set back does not move the
    /// shop's time back).
    pub fn start_at(&self, unix_now_ms: u64) -> Millis {
        Millis(unix_now_ms.saturating_sub(self.epoch_unix_ms)).max(self.resume_at)
    }

    /// The recovered state.
    pub fn state(&self) -> &ShopState {
        &self.state
    }

    /// Commands re-applied from the log on opening.
    pub fn replayed(&self) -> u64 {
        self.replayed
    }

    /// Whether the file was created by this open.
    pub fn created(&self) -> bool {
        self.created
    }
}

/// Opens (or creates) the database at `options.path`. A missing or empty
/// file is created with the state `fresh` makes and `unix_now_ms` as its
/// epoch; an existing Stampede database is recovered (checkpoint + log), and
/// `fresh` is not called. Anything else is an [`OpenError`], with the file
/// untouched.
pub fn open(
    options: &SqliteOptions,
    unix_now_ms: u64,
    fresh: impl FnOnce() -> Result<ShopState, String>,
) -> Result<Recovered, OpenError> {
    let path = options.path.display().to_string();
    let corrupt = |e: &rusqlite::Error| refused(&path, e);
    let database_bytes = refuse_before_opening(&options.path, &path)?;
    let lock = take_lock(&options.path)?;
    if database_bytes > 0 {
        judge_read_only(&options.path, &path)?;
    }
    let conn = Connection::open_with_flags(
        &options.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| corrupt(&e))?;
    let created = identify(&conn, &path)?;
    configure(&conn, options.sync).map_err(|e| corrupt(&e))?;
    if created {
        let state = fresh().map_err(|detail| OpenError::Create {
            path: path.clone(),
            detail,
        })?;
        create_schema(&conn, &state, unix_now_ms).map_err(|e| creation_refused(&path, &e))?;
        return Ok(Recovered {
            conn,
            lock,
            options: options.clone(),
            state,
            epoch_unix_ms: unix_now_ms,
            resume_at: Millis(0),
            seq: 0,
            replayed: 0,
            created: true,
        });
    }
    let mut recovered = recover(conn, lock, options).map_err(|detail| OpenError::Corrupt {
        path: path.clone(),
        detail,
    })?;
    // Fold the replayed log into a fresh checkpoint so the next open is quick.
    if recovered.replayed > 0 {
        let tx = recovered.conn.transaction().map_err(|e| corrupt(&e))?;
        write_checkpoint(&tx, recovered.seq, recovered.resume_at, &recovered.state)
            .and_then(|()| tx.commit())
            .map_err(|e| corrupt(&e))?;
    }
    Ok(recovered)
}

/// What is refused before SQLite opens anything: an SQLite URI, and a WAL
/// holding data beside a missing or empty database file. Answers the
/// database file's size (0 when missing).
fn refuse_before_opening(file: &Path, path: &str) -> Result<u64, OpenError> {
    if path.starts_with("file:") {
        return Err(OpenError::Uri {
            path: path.to_string(),
        });
    }
    let database_bytes = std::fs::metadata(file).map_or(0, |m| m.len());
    let wal_bytes = std::fs::metadata(file_beside(file, "-wal")).map_or(0, |m| m.len());
    if database_bytes == 0 && wal_bytes > 0 {
        return Err(OpenError::OrphanWal {
            path: path.to_string(),
            bytes: wal_bytes,
        });
    }
    Ok(database_bytes)
}

/// Judges an existing file on a read-only connection: ours, of our version,
/// and well formed. Closing a read-write connection on a refused file would
/// copy its WAL into it and delete the WAL, which may be the only other copy
/// of what it held.
fn judge_read_only(file: &Path, path: &str) -> Result<(), OpenError> {
    let reader = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| refused(path, &e))?;
    identify(&reader, path)?;
    check_integrity(&reader).map_err(|detail| OpenError::Corrupt {
        path: path.to_string(),
        detail,
    })
}

/// What an SQLite error at start means for the user: a full disk is named
/// as such (the file is not known to be damaged: free space and start
/// again), anything else as a file that cannot be read.
fn refused(path: &str, error: &rusqlite::Error) -> OpenError {
    if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        OpenError::Inaccessible {
            path: path.to_string(),
            detail: format!(
                "the disk is full ({error}); the file is not known to be damaged: free space on its file system and start again"
            ),
        }
    } else {
        OpenError::Corrupt {
            path: path.to_string(),
            detail: error.to_string(),
        }
    }
}

/// [`refused`] for an error while setting up a new database: a full disk as
/// such, anything else as a failed creation.
fn creation_refused(path: &str, error: &rusqlite::Error) -> OpenError {
    match refused(path, error) {
        full @ OpenError::Inaccessible { .. } => full,
        _ => OpenError::Create {
            path: path.to_string(),
            detail: error.to_string(),
        },
    }
}

/// The file SQLite keeps beside the database: `-wal`, `-shm`, or our `-lock`.
fn file_beside(path: &Path, suffix: &str) -> PathBuf {
    let mut beside = path.as_os_str().to_owned();
    beside.push(suffix);
    PathBuf::from(beside)
}

/// `PRAGMA quick_check`, before anything is written: every page of the file
/// well formed, the plain query tables included — recovery itself reads only
/// the checkpoint and the log, so damage elsewhere would otherwise surface
/// only when a later commit touches it, after the shop had acknowledged
/// orders. Reads the whole file once (about a second per few hundred MB).
fn check_integrity(conn: &Connection) -> Result<(), String> {
    let first: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if first == "ok" {
        Ok(())
    } else {
        Err(format!("integrity check: {first}"))
    }
}

/// Whether the file is a new, empty database (`true`) or one of ours at
/// our schema version (`false`); anything else is refused. Reading the
/// header is the first access: a file that is not SQLite at all fails here,
/// before anything is written.
fn identify(conn: &Connection, path: &str) -> Result<bool, OpenError> {
    let corrupt = |e: &dyn fmt::Display| OpenError::Corrupt {
        path: path.to_string(),
        detail: e.to_string(),
    };
    let application_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| corrupt(&e))?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| corrupt(&e))?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| corrupt(&e))?;
    let created = match (application_id, objects) {
        (0, 0) => true,
        (APPLICATION_ID, _) => false,
        (0, n) => {
            return Err(OpenError::Foreign {
                path: path.to_string(),
                what: format!("an SQLite database with {n} objects of another program"),
            });
        }
        (other, _) => {
            return Err(OpenError::Foreign {
                path: path.to_string(),
                what: format!("SQLite application id {other:#x}"),
            });
        }
    };
    if !created && version != SCHEMA_VERSION {
        return Err(OpenError::Version {
            path: path.to_string(),
            found: version,
        });
    }
    Ok(created)
}

/// The lock file beside the database: held (an OS file lock, released when
/// the process ends however it ends) for as long as one store has the
/// database open, so two shops never write one file.
fn lock_path(path: &Path) -> PathBuf {
    file_beside(path, "-lock")
}

/// What keeps other stores off a database while one has it open: an OS lock
/// on the lock file beside the path, and one on the database file itself —
/// whatever path reaches that file (a symbolic link, another hard link) meets
/// the second. Dropped only after the store's connection has closed: closing
/// any descriptor of the database file drops the process's POSIX locks on
/// it, SQLite's included.
#[derive(Debug)]
struct FileLock {
    _beside: std::fs::File,
    _database: std::fs::File,
}

fn take_lock(path: &Path) -> Result<FileLock, OpenError> {
    let shown = path.display().to_string();
    // A device, a pipe or a folder is no database: refused before a lock file
    // is made beside it (`/dev/null-lock`).
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
    {
        return Err(OpenError::Foreign {
            path: shown,
            what: "not a regular file".into(),
        });
    }
    let open = |file: &Path, what: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(file)
            .map_err(|e| OpenError::Inaccessible {
                path: shown.clone(),
                detail: format!("opening {what}: {e}"),
            })
    };
    let lock = |file: &std::fs::File, what: &str| match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse {
            path: shown.clone(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(OpenError::Inaccessible {
            path: shown.clone(),
            detail: format!("locking {what}: {e}"),
        }),
    };
    let beside = open(&lock_path(path), "its lock file")?;
    lock(&beside, "its lock file")?;
    // An empty new file is what SQLite makes of a missing one: a new database.
    let database = open(path, "the database file")?;
    lock(&database, "the database file")?;
    Ok(FileLock {
        _beside: beside,
        _database: database,
    })
}

/// Deletes the Stampede database at `path` (and its WAL files) so a run can
/// start from a fresh one. A missing file is fine; a file that is not a
/// Stampede database is refused ([`OpenError`]) and left alone.
pub fn remove(path: &Path) -> Result<(), OpenError> {
    if !path.exists() {
        return Ok(());
    }
    let shown = path.display().to_string();
    let application_id: i32 = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|conn| conn.query_row("PRAGMA application_id", [], |r| r.get(0)))
        .map_err(|e| OpenError::Corrupt {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
    if application_id != APPLICATION_ID {
        return Err(OpenError::Foreign {
            path: shown,
            what: format!("SQLite application id {application_id:#x}"),
        });
    }
    let _lock = take_lock(path)?;
    for suffix in ["-wal", "-shm", ""] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(OpenError::Inaccessible {
                    path: shown,
                    detail: format!("removing {}: {e}", Path::new(&file).display()),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn configure(conn: &Connection, sync: SyncLevel) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    Ok(())
}

/// Version 1 of the schema. The `checkpoint` and `commands` tables are the
/// record; the others are written from the checkpointed state for queries.
const SCHEMA_V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    state TEXT NOT NULL
) STRICT;
CREATE TABLE commands (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    command TEXT NOT NULL
) STRICT;
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    status TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    idempotency_key TEXT,
    reservation_id TEXT,
    intent_id TEXT,
    express INTEGER NOT NULL
) STRICT;
CREATE TABLE order_lines (
    order_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    unit_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line)
) STRICT;
CREATE TABLE transitions (
    order_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    cause TEXT NOT NULL,
    PRIMARY KEY (order_id, n)
) STRICT;
CREATE TABLE stock (
    sku TEXT PRIMARY KEY,
    received INTEGER NOT NULL,
    available INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    sold INTEGER NOT NULL
) STRICT;
CREATE TABLE reservations (
    id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    segment INTEGER NOT NULL,
    qty INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    pinned INTEGER NOT NULL,
    PRIMARY KEY (id, sku, segment)
) STRICT;
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    response TEXT
) STRICT;
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    order_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    visible_ms INTEGER NOT NULL,
    last_error TEXT
) STRICT;
CREATE TABLE dead_letters (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    order_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    last_error TEXT
) STRICT;
CREATE TABLE intents (
    order_id TEXT PRIMARY KEY,
    intent_id TEXT NOT NULL,
    status TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    refunded_cents INTEGER NOT NULL
) STRICT;
CREATE TABLE webhook_events (
    event_id TEXT PRIMARY KEY,
    seen_ms INTEGER NOT NULL
) STRICT;
";

fn create_schema(conn: &Connection, state: &ShopState, unix_now_ms: u64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(SCHEMA_V1)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch_unix_ms', ?1), ('created_by', ?2)",
        params![
            unix_now_ms.to_string(),
            concat!("stampede ", env!("CARGO_PKG_VERSION"))
        ],
    )?;
    write_checkpoint(&tx, 0, Millis(0), state)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

fn recover(conn: Connection, lock: FileLock, options: &SqliteOptions) -> Result<Recovered, String> {
    let epoch: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'epoch_unix_ms'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| format!("reading the epoch: {e}"))?;
    let epoch_unix_ms: u64 = epoch.parse().map_err(|e| format!("epoch {epoch:?}: {e}"))?;
    let (seq, at, state): (i64, i64, String) = conn
        .query_row("SELECT seq, at_ms, state FROM checkpoint", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .map_err(|e| format!("reading the checkpoint: {e}"))?
        .ok_or("the checkpoint is missing")?;
    let mut state: ShopState =
        serde_json::from_str(&state).map_err(|e| format!("the checkpoint's state: {e}"))?;
    // The checkpoint is read as written; a state whose parts disagree (stock
    // not conserved, an order holding what it should not) was changed or
    // damaged outside the shop, which would then sell from it.
    state.check_consistency().map_err(|e| {
        format!("the checkpoint's state does not hold together ({e}): changed or damaged outside the shop")
    })?;
    let mut seq = to_u64(seq, "checkpoint seq")?;
    let mut resume_at = Millis(to_u64(at, "checkpoint time")?);
    let mut replayed = 0;
    {
        let mut rows = conn
            .prepare("SELECT seq, at_ms, command FROM commands WHERE seq > ?1 ORDER BY seq")
            .map_err(|e| format!("reading the log: {e}"))?;
        let mut rows = rows
            .query(params![to_i64(seq)])
            .map_err(|e| format!("reading the log: {e}"))?;
        while let Some(row) = rows.next().map_err(|e| format!("reading the log: {e}"))? {
            let (next, at, text): (i64, i64, String) = (
                row.get(0).map_err(|e| e.to_string())?,
                row.get(1).map_err(|e| e.to_string())?,
                row.get(2).map_err(|e| e.to_string())?,
            );
            let next = to_u64(next, "command seq")?;
            if next != seq + 1 {
                return Err(format!("the log jumps from command {seq} to {next}"));
            }
            let command: Command =
                serde_json::from_str(&text).map_err(|e| format!("command {next}: {e}"))?;
            let at = Millis(to_u64(at, "command time")?);
            // Only commands the state accepted were logged, so re-applying
            // one cannot be refused unless the file was changed.
            state
                .apply(command, at)
                .map_err(|e| format!("command {next} no longer applies: {e}"))?;
            seq = next;
            resume_at = resume_at.max(at);
            replayed += 1;
        }
    }
    state.check_consistency().map_err(|e| {
        format!("the state after re-applying the log does not hold together ({e}): changed or damaged outside the shop")
    })?;
    Ok(Recovered {
        conn,
        lock,
        options: options.clone(),
        state,
        epoch_unix_ms,
        resume_at,
        seq,
        replayed,
        created: false,
    })
}

fn to_u64(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("{what} {value} is negative"))
}

fn to_i64(value: u64) -> i64 {
    // Sequence numbers and times stay far below i64::MAX; saturate rather
    // than wrap if one ever did not.
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A value's serde name (`"payment_pending"` → `payment_pending`), or its JSON.
fn tag(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

/// Writes `state` as the checkpoint at log position `seq`, rewrites the
/// query tables from it and deletes the log up to `seq`.
fn write_checkpoint(
    tx: &Transaction<'_>,
    seq: u64,
    at: Millis,
    state: &ShopState,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(state)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    // A checkpoint never replaces a later one: only another writer on the
    // same file could have written that, and its state would be lost.
    let written = tx.execute(
        "INSERT INTO checkpoint (id, seq, at_ms, state) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, at_ms = excluded.at_ms, state = excluded.state
         WHERE checkpoint.seq <= excluded.seq",
        params![to_i64(seq), to_i64(at.0), json],
    )?;
    if written != 1 {
        return Err(rusqlite::Error::ToSqlConversionFailure(
            format!(
                "the file holds a checkpoint later than this store's (log position {seq}): \
                 another shop has written to it"
            )
            .into(),
        ));
    }
    tx.execute("DELETE FROM commands WHERE seq <= ?1", params![to_i64(seq)])?;
    write_tables(tx, state)
}

fn write_tables(tx: &Transaction<'_>, state: &ShopState) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DELETE FROM orders; DELETE FROM order_lines; DELETE FROM transitions;
         DELETE FROM stock; DELETE FROM reservations; DELETE FROM idempotency_keys;
         DELETE FROM jobs; DELETE FROM dead_letters; DELETE FROM intents;
         DELETE FROM webhook_events;",
    )?;
    write_orders(tx, state)?;
    write_stock(tx, state)?;
    write_keys(tx, state)?;
    write_jobs_and_inbox(tx, state)
}

/// `orders`, `order_lines`, `transitions` and `intents`.
fn write_orders(tx: &Transaction<'_>, state: &ShopState) -> rusqlite::Result<()> {
    let mut order = tx.prepare("INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?;
    let mut line = tx.prepare("INSERT INTO order_lines VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let mut moved = tx.prepare("INSERT INTO transitions VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    let mut intent = tx.prepare("INSERT INTO intents VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for o in state.orders() {
        let id = o.id.to_string();
        order.execute(params![
            id,
            o.customer.as_str(),
            o.status().as_str(),
            to_i64(o.total.0),
            to_i64(o.created_at.0),
            o.idempotency_key.as_ref().map(|k| k.as_str().to_string()),
            o.reservation.map(|r| r.to_string()),
            o.intent.as_ref().map(|i| i.as_str().to_string()),
            o.express,
        ])?;
        for (n, l) in o.lines.iter().enumerate() {
            line.execute(params![
                id,
                to_i64(n as u64),
                l.sku.as_str(),
                l.qty,
                to_i64(l.unit_price.0)
            ])?;
        }
        for (n, t) in o.transitions().iter().enumerate() {
            moved.execute(params![
                id,
                to_i64(n as u64),
                t.from.as_str(),
                t.to.as_str(),
                to_i64(t.at.0),
                t.cause.to_string()
            ])?;
        }
        if let Some(i) = state.intent(o.id) {
            intent.execute(params![
                id,
                i.id.as_str(),
                tag(&i.status),
                to_i64(i.amount.0),
                to_i64(i.refunded.0)
            ])?;
        }
    }
    Ok(())
}

/// `stock` and `reservations`.
fn write_stock(tx: &Transaction<'_>, state: &ShopState) -> rusqlite::Result<()> {
    let mut stock = tx.prepare("INSERT INTO stock VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (sku, l) in state.inventory().levels() {
        stock.execute(params![
            sku.as_str(),
            to_i64(l.received),
            to_i64(l.available),
            to_i64(l.reserved),
            to_i64(l.sold)
        ])?;
    }
    let mut held = tx.prepare(
        "INSERT INTO reservations VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT DO UPDATE SET qty = qty + excluded.qty",
    )?;
    for r in state.inventory().reservations() {
        for a in &r.allocations {
            held.execute(params![
                r.id.to_string(),
                r.order.to_string(),
                a.sku.as_str(),
                to_i64(a.segment as u64),
                to_i64(a.qty),
                to_i64(r.created_at.0),
                r.expires_at.map(|at| to_i64(at.0)),
                r.pinned
            ])?;
        }
    }
    Ok(())
}

/// `idempotency_keys`.
fn write_keys(tx: &Transaction<'_>, state: &ShopState) -> rusqlite::Result<()> {
    let mut key = tx.prepare("INSERT INTO idempotency_keys VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (k, record) in state.keys().records() {
        let (status, response) = match &record.state {
            stampede_core::RecordState::InFlight { .. } => ("in_flight", None),
            stampede_core::RecordState::Completed { response, .. } => {
                ("completed", serde_json::to_string(response).ok())
            }
        };
        key.execute(params![
            k.as_str(),
            record.fingerprint.to_hex(),
            to_i64(record.created_at.0),
            status,
            response
        ])?;
    }
    Ok(())
}

/// `jobs`, `dead_letters` and `webhook_events`.
fn write_jobs_and_inbox(tx: &Transaction<'_>, state: &ShopState) -> rusqlite::Result<()> {
    let mut job = tx.prepare("INSERT INTO jobs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
    for j in state.jobs().jobs() {
        let (status, visible) = match j.state {
            stampede_core::JobState::Ready { at } => ("ready", at),
            stampede_core::JobState::Leased { until, .. } => ("leased", until),
        };
        job.execute(params![
            j.id.to_string(),
            j.kind.as_str(),
            j.order.to_string(),
            j.attempts,
            to_i64(j.created_at.0),
            status,
            to_i64(visible.0),
            j.last_error
        ])?;
    }
    let mut dead = tx.prepare(
        "INSERT INTO dead_letters VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO NOTHING",
    )?;
    for d in state.jobs().dead_letters() {
        dead.execute(params![
            d.job.id.to_string(),
            d.job.kind.as_str(),
            d.job.order.to_string(),
            d.job.attempts,
            to_i64(d.at.0),
            d.job.last_error
        ])?;
    }
    let mut seen = tx.prepare("INSERT INTO webhook_events VALUES (?1, ?2)")?;
    for (id, at) in state.inbox().seen() {
        seen.execute(params![id.as_str(), to_i64(at.0)])?;
    }
    Ok(())
}

/// What the writer thread is asked to do, in order.
enum Entry {
    /// Log a command.
    Command {
        seq: u64,
        at: Millis,
        command: Command,
    },
    /// Checkpoint a copy of the state taken right after command `seq`.
    Checkpoint {
        seq: u64,
        at: Millis,
        state: Box<ShopState>,
    },
    /// Commit what is queued and stop (the store is being dropped).
    Stop,
}

/// How far the log is durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Durable {
    /// Every command up to this position is committed.
    seq: u64,
    /// Set, with the whole message, when a commit failed or the files were
    /// moved: nothing more becomes durable.
    failed: Option<String>,
}

/// Where the log stands (every field written only under the state lock):
/// shared by the journal and the store, which checkpoints it on close.
#[derive(Debug)]
struct Position {
    /// The last position handed out.
    head: AtomicU64,
    /// The time of the last command logged, ms.
    last_at: AtomicU64,
    /// Commands logged since the last checkpoint.
    since_checkpoint: AtomicU64,
}

/// The journal the working state appends to (under its lock).
struct Log {
    queue: SyncSender<Entry>,
    position: Arc<Position>,
    /// Fewest commands between checkpoints.
    checkpoint_min: u64,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Journal for Log {
    fn append(&self, command: Command, _reply: &Reply, now: Millis, state: &ShopState) -> u64 {
        let Position {
            head,
            last_at,
            since_checkpoint,
        } = &*self.position;
        let seq = head.load(Ordering::Relaxed) + 1;
        head.store(seq, Ordering::Relaxed);
        last_at.store(now.0, Ordering::Relaxed);
        // A closed queue means the writer stopped after a failed commit; the
        // reply then waits on `Durable::failed` and reports it.
        let _ = self.queue.send(Entry::Command {
            seq,
            at: now,
            command,
        });
        let since = since_checkpoint.fetch_add(1, Ordering::Relaxed) + 1;
        if since >= self.checkpoint_min
            && since >= CHECKPOINT_COMMANDS_PER_ORDER.saturating_mul(state.order_count() as u64)
        {
            since_checkpoint.store(0, Ordering::Relaxed);
            let _ = self.queue.send(Entry::Checkpoint {
                seq,
                at: now,
                state: Box::new(state.clone()),
            });
        }
        seq
    }

    fn head(&self) -> u64 {
        self.position.head.load(Ordering::Relaxed)
    }
}

/// The durable store: a [`MemoryStore`] whose every change is committed to
/// SQLite before its reply is released.
#[derive(Debug)]
pub struct SqliteStore {
    memory: MemoryStore,
    commit: Commit,
    /// For the closing checkpoint and [`Entry::Stop`] on drop.
    queue: SyncSender<Entry>,
    /// Where the log stands, for the closing checkpoint.
    position: Arc<Position>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Held until the writer has stopped (and its connection closed): then
    /// another store may open the file.
    lock: Option<FileLock>,
    /// Set once the store is dropped, its writer stopped and its lock let go
    /// (see [`SqliteStore::closed`]): `Err` if a commit had failed by then.
    closed: watch::Sender<Option<Result<(), String>>>,
    durable: watch::Receiver<Durable>,
    path: PathBuf,
}

impl SqliteStore {
    /// Starts serving `recovered` with `clock` (which should start at
    /// [`Recovered::start_at`]). Spawns the writer thread, which runs until
    /// the store is dropped.
    pub fn start(recovered: Recovered, clock: Clock) -> Result<Arc<SqliteStore>, String> {
        let Recovered {
            conn,
            lock,
            options,
            state,
            seq,
            resume_at,
            ..
        } = recovered;
        let (queue, entries) = sync_channel(QUEUE_BOUND);
        let (durable_tx, durable) = watch::channel(Durable { seq, failed: None });
        let max_batch = options.max_batch.clamp(1, BATCH_MAX);
        let pause = match options.commit {
            Commit::Durable => None,
            Commit::AckFirst => Some(std::time::Duration::from_millis(ACK_FIRST_COMMIT_EVERY_MS)),
        };
        let in_place = InPlace::new(&options.path);
        let writer = std::thread::Builder::new()
            .name("stampede-sqlite".into())
            .spawn(move || write_loop(conn, entries, &durable_tx, max_batch, pause, in_place))
            .map_err(|e| format!("starting the SQLite writer: {e}"))?;
        let position = Arc::new(Position {
            head: AtomicU64::new(seq),
            last_at: AtomicU64::new(resume_at.0),
            since_checkpoint: AtomicU64::new(0),
        });
        let log = Log {
            queue: queue.clone(),
            position: Arc::clone(&position),
            checkpoint_min: options.checkpoint_min_commands.max(1),
        };
        Ok(Arc::new(SqliteStore {
            memory: MemoryStore::journaled(state, clock, Box::new(log)),
            commit: options.commit,
            queue,
            position,
            writer: Some(writer),
            lock: Some(lock),
            closed: watch::Sender::new(None),
            durable,
            path: options.path,
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves once this store has been dropped and has finished closing:
    /// its queue committed, its writer stopped and its lock let go, so
    /// another store may open the file. (The last `Arc` going away is not
    /// enough to know that: the drop runs after it, on that holder's thread.)
    /// `Err` says why a commit failed, before or while closing (the closing
    /// checkpoint included): the file holds what was acknowledged, but
    /// the store did not close cleanly.
    pub fn closed(&self) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let mut closed = self.closed.subscribe();
        async move {
            match closed.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
                // The sender gone without a word: the store was dropped.
                Err(_) => Ok(()),
            }
        }
    }

    /// Reads the working state under its lock (every change in it either
    /// durable or about to be; see the module docs).
    pub fn read<T>(&self, f: impl FnOnce(&ShopState) -> T) -> T {
        self.memory.read(f)
    }

    /// Waits until every command up to `position` is durable (with
    /// `commit=ack-first`, only reports a failure already known).
    async fn durable(&self, position: u64) -> Result<(), StoreError> {
        if !self.commit.waits() {
            return match &self.durable.borrow().failed {
                Some(why) => Err(StoreError::Unavailable(why.clone())),
                None => Ok(()),
            };
        }
        let mut durable = self.durable.clone();
        let reached = durable
            .wait_for(|d| d.seq >= position || d.failed.is_some())
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite writer stopped".into()))?;
        match &reached.failed {
            Some(why) if reached.seq < position => Err(StoreError::Unavailable(why.clone())),
            _ => Ok(()),
        }
    }
}

impl Drop for SqliteStore {
    /// Lets the writer commit what is queued (a checkpoint included) and
    /// stop, so the file is whole and free for the next store.
    fn drop(&mut self) {
        // A closing checkpoint of what was logged since the last one, so the
        // next open (after a stop that was asked for) replays nothing.
        let closing = self.memory.read(|state| {
            let Position {
                head,
                last_at,
                since_checkpoint,
            } = &*self.position;
            (since_checkpoint.load(Ordering::Relaxed) > 0).then(|| Entry::Checkpoint {
                seq: head.load(Ordering::Relaxed),
                at: Millis(last_at.load(Ordering::Relaxed)),
                state: Box::new(state.clone()),
            })
        });
        if let Some(checkpoint) = closing {
            let _ = self.queue.send(checkpoint);
        }
        let _ = self.queue.send(Entry::Stop);
        let writer_panicked = self
            .writer
            .take()
            .is_some_and(|writer| writer.join().is_err());
        drop(self.lock.take());
        let outcome = match &self.durable.borrow().failed {
            Some(why) => Err(why.clone()),
            None if writer_panicked => Err("the SQLite writer thread panicked".into()),
            None => Ok(()),
        };
        self.closed.send_replace(Some(outcome));
    }
}

impl Store for SqliteStore {
    fn failed(&self) -> Option<String> {
        self.durable.borrow().failed.as_ref().cloned()
    }

    fn call(&self, command: Command) -> StoreFuture<'_> {
        if let Some(why) = &self.durable.borrow().failed {
            let error = StoreError::Unavailable(format!("the store stopped earlier: {why}"));
            return Box::pin(async move { Err(error) });
        }
        if let Command::LeaseJobWait { wait_ms } = command {
            return Box::pin(async move {
                let (lease, position) = self.memory.lease_job_wait_journaled(wait_ms).await;
                self.durable(position).await?;
                Ok(Reply::Lease(lease))
            });
        }
        let (reply, position) = self.memory.execute_journaled(command);
        Box::pin(async move {
            self.durable(position).await?;
            reply
        })
    }
}

/// The writer thread: commits queued entries in batches until the queue
/// closes or a commit fails; with `pause`, waits that long after the first
/// entry of each batch (the ack-first mistake's background commits).
fn write_loop(
    mut conn: Connection,
    entries: Receiver<Entry>,
    durable: &watch::Sender<Durable>,
    max_batch: usize,
    pause: Option<std::time::Duration>,
    mut in_place: InPlace,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut stopping = false;
    while !stopping {
        let Ok(first) = entries.recv() else {
            return;
        };
        if let Some(pause) = pause {
            std::thread::sleep(pause);
        }
        let mut next = Some(first);
        while let Some(entry) = next.take() {
            match entry {
                Entry::Stop => stopping = true,
                entry => batch.push(entry),
            }
            if stopping || batch.len() >= max_batch {
                break;
            }
            // Empty or closed: commit what is in hand.
            next = entries.try_recv().ok();
        }
        if batch.is_empty() {
            continue;
        }
        match commit_waiting_out_locks(&mut conn, &batch, BUSY_RETRIES_MAX).0 {
            Ok(seq) => match in_place.moved() {
                None => {
                    batch.clear();
                    durable.send_modify(|d| d.seq = d.seq.max(seq));
                }
                Some(moved) => {
                    let (rescued, why) = in_place.rescue(&conn, moved, seq);
                    tracing::error!(why, "the store's files were moved; the store stops");
                    durable.send_modify(|d| {
                        if rescued {
                            d.seq = d.seq.max(seq);
                        }
                        d.failed = Some(why);
                    });
                    return;
                }
            },
            Err(error) => {
                tracing::error!(%error, "SQLite commit failed; the store stops");
                durable.send_modify(|d| {
                    d.failed = Some(format!(
                        "SQLite commit failed: {error} (everything acknowledged before it was \
                         committed: start the shop again on its file)"
                    ));
                });
                return;
            }
        }
    }
}

/// Which of the store's files is no longer the one at its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Moved {
    /// The database file was removed, renamed or replaced.
    Database,
    /// The WAL was removed, renamed or replaced; the database file is there.
    Wal,
}

/// Where the database and its WAL were (device and inode) when the writer
/// started: a commit counts as durable only while both are still the files
/// at their paths. A file removed while the shop serves is not noticed by
/// SQLite, which goes on committing into it through its open descriptor,
/// where a restart would never find it.
struct InPlace {
    database: PathBuf,
    wal: PathBuf,
    database_id: Option<(u64, u64)>,
    /// Learnt the first time the WAL is seen (SQLite makes it at the first write).
    wal_id: Option<(u64, u64)>,
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl InPlace {
    fn new(database: &Path) -> InPlace {
        let wal = file_beside(database, "-wal");
        InPlace {
            database_id: file_id(database),
            wal_id: file_id(&wal),
            database: database.to_path_buf(),
            wal,
        }
    }

    /// Which file is no longer where it was, if one is not.
    fn moved(&mut self) -> Option<Moved> {
        if file_id(&self.database) != self.database_id {
            return Some(Moved::Database);
        }
        let now = file_id(&self.wal);
        match self.wal_id {
            None => {
                self.wal_id = now;
                None
            }
            Some(id) if now == Some(id) => None,
            Some(_) => Some(Moved::Wal),
        }
    }

    /// Saves what the connection has committed where a restart finds it, as
    /// far as it can: a removed WAL is copied into the database file (still
    /// in place) by a checkpoint — nothing acknowledged is lost (`true`); a
    /// removed database is copied beside its path (`<path>.rescued-<seq>`),
    /// for the operator to put back (`false`: the replies of the last batch
    /// were not committed where the shop will look). Answers the message
    /// that stops the store.
    fn rescue(&self, conn: &Connection, moved: Moved, seq: u64) -> (bool, String) {
        let db = self.database.display();
        match moved {
            Moved::Wal => {
                let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                });
                match done {
                    Ok(0) => (
                        true,
                        format!(
                            "{} was removed or replaced while the shop served; everything \
                             committed was copied into {db}, and the store stops (SQLite would \
                             go on writing to the removed file): start the shop again on its file",
                            self.wal.display()
                        ),
                    ),
                    other => (
                        false,
                        format!(
                            "{} was removed or replaced while the shop served, and copying what \
                             it held into {db} failed ({other:?}): changes since the last \
                             checkpoint are lost when this process ends",
                            self.wal.display()
                        ),
                    ),
                }
            }
            Moved::Database => {
                let rescue = file_beside(&self.database, &format!(".rescued-{seq}"));
                if let Some(folder) = self.database.parent().filter(|f| !f.as_os_str().is_empty()) {
                    let _ = std::fs::create_dir_all(folder);
                }
                let saved = conn.execute("VACUUM INTO ?1", params![rescue.display().to_string()]);
                let outcome = match saved {
                    Ok(_) => format!(
                        "what the shop had committed is saved in {}: stop the shop, put that \
                         file back as {db}, and start it again",
                        rescue.display()
                    ),
                    Err(e) => format!(
                        "saving what the shop had committed to {} failed ({e}): it is lost \
                         when this process ends",
                        rescue.display()
                    ),
                };
                (
                    false,
                    format!("{db} was removed or replaced while the shop served; {outcome}"),
                )
            }
        }
    }
}

/// Whether `error` says another connection holds a lock the commit needs.
fn is_locked(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// [`commit`], tried again while the database is locked by someone else, at
/// most `retries_max` more times (pausing [`busy_pause`] before each); any
/// other error at once. Also answers how many times it tried again.
fn commit_waiting_out_locks(
    conn: &mut Connection,
    batch: &[Entry],
    retries_max: u32,
) -> (rusqlite::Result<u64>, u32) {
    let mut retries = 0;
    loop {
        match commit(conn, batch) {
            Err(error) if is_locked(&error) && retries < retries_max => {
                tracing::warn!(%error, retries, "the SQLite file is locked by another connection; trying the commit again");
                std::thread::sleep(busy_pause(retries));
                retries += 1;
            }
            done => return (done, retries),
        }
    }
}

/// The pause before the commit's `retry`-th try again (from 0): 100 ms,
/// doubling, at most 1 s.
fn busy_pause(retry: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100u64.saturating_mul(1 << retry.min(4)).min(1_000))
}

/// Commits `batch` as one transaction; answers the last command position in
/// it. On an error nothing of it is committed.
fn commit(conn: &mut Connection, batch: &[Entry]) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut last = 0;
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO commands (seq, at_ms, command) VALUES (?1, ?2, ?3)")?;
        for entry in batch {
            match entry {
                Entry::Command { seq, at, command } => {
                    let text = serde_json::to_string(command)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    insert.execute(params![to_i64(*seq), to_i64(at.0), text])?;
                    last = *seq;
                }
                Entry::Checkpoint { seq, at, state } => {
                    write_checkpoint(&tx, *seq, *at, state)?;
                    tracing::debug!(seq, orders = state.order_count(), "checkpoint written");
                    last = last.max(*seq);
                }
                Entry::Stop => {}
            }
        }
    }
    tx.commit()?;
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_commit_pauses_100_ms_doubling_to_at_most_a_second() {
        // Proves the pause schedule between tries of a locked commit, at and past its cap.
        let ms: Vec<u128> = (0..7).map(|r| busy_pause(r).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(busy_pause(u32::MAX).as_millis(), 1_000);
    }

    #[test]
    fn a_locked_commit_is_tried_again_up_to_its_bound_and_other_errors_are_not() {
        // Proves: while another connection holds the write lock, a commit is tried exactly
        // `retries_max` more times and then fails as busy; once the lock goes within the
        // retries, it commits; an error that is not a lock (a missing table) is not retried.
        let dir = std::env::temp_dir().join(format!("stampede-busy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("busy.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE commands (seq INTEGER PRIMARY KEY, at_ms INTEGER, command TEXT)",
        )
        .unwrap();
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        let entry = |seq| Entry::Command {
            seq,
            at: Millis(seq),
            command: Command::ReleaseLeases,
        };
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (result, retries) = commit_waiting_out_locks(&mut conn, &[entry(1)], 2);
        assert!(result.as_ref().is_err_and(is_locked), "{result:?}");
        assert_eq!(retries, 2);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            other.execute_batch("ROLLBACK").unwrap();
        });
        let (result, retries) = commit_waiting_out_locks(&mut conn, &[entry(2)], 5);
        releaser.join().unwrap();
        assert_eq!(result.unwrap(), 2);
        assert!((1..=2).contains(&retries), "{retries}");
        conn.execute_batch("DROP TABLE commands").unwrap();
        let (result, retries) = commit_waiting_out_locks(&mut conn, &[entry(3)], 5);
        let error = result.unwrap_err();
        assert!(!is_locked(&error), "{error}");
        assert_eq!(retries, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_disk_at_start_is_named_as_such_and_other_errors_as_before() {
        // Proves: SQLITE_FULL reads as a full disk (the file is not called corrupt), at open
        // and while creating; any other SQLite error stays a corrupt file or a failed creation.
        let error = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        let full = error(rusqlite::ffi::SQLITE_FULL);
        let damaged = error(rusqlite::ffi::SQLITE_CORRUPT);
        for refusal in [refused("x.db", &full), creation_refused("x.db", &full)] {
            assert!(
                matches!(refusal, OpenError::Inaccessible { .. }),
                "{refusal}"
            );
            assert!(
                refusal.to_string().contains("the disk is full"),
                "{refusal}"
            );
        }
        assert!(matches!(
            refused("x.db", &damaged),
            OpenError::Corrupt { .. }
        ));
        assert!(matches!(
            creation_refused("x.db", &damaged),
            OpenError::Create { .. }
        ));
    }

    #[test]
    fn sync_levels_parse_and_print_the_same_words() {
        // Proves: `full` and `normal` round-trip through parse and display; nothing else parses.
        for level in [SyncLevel::Full, SyncLevel::Normal] {
            assert_eq!(SyncLevel::parse(&level.to_string()), Some(level));
        }
        assert_eq!(SyncLevel::Full.pragma(), "FULL");
        assert_eq!(SyncLevel::Normal.pragma(), "NORMAL");
        assert_eq!(SyncLevel::parse("FULL"), None);
        assert_eq!(SyncLevel::parse("off"), None);
    }

    #[test]
    fn remove_deletes_only_a_stampede_database() {
        // Proves: a missing file is fine; a Stampede database and its WAL files are deleted;
        // any other file is refused and kept.
        let dir = std::env::temp_dir().join(format!("stampede-remove-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("shop.db");
        assert!(remove(&db).is_ok(), "nothing to remove");
        {
            let conn = Connection::open(&db).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        }
        remove(&db).unwrap();
        assert!(!db.exists());
        std::fs::write(&db, b"my own notes").unwrap();
        assert!(remove(&db).is_err());
        assert_eq!(std::fs::read(&db).unwrap(), b"my own notes");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
