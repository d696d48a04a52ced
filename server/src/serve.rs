//! Running the shop for real: tokio listeners, the embedded fake PSP, the
//! workers, and graceful shutdown. `stampede serve`, the integration tests
//! and the load generator all start the stack through [`start`].

use crate::api;
use crate::app::{App, ServerConfig};
use crate::clock::Clock;
use crate::http::{Connector, HttpClient};
use crate::listen::serve_router;
use crate::psp::{self, Psp, PspClient, PspConfig, WebhookTarget};
use crate::store::postgres::{self, PgOptions, PgStore};
use crate::store::sqlite::{self, SqliteOptions, SqliteStore};
use crate::store::{MemoryStore, Store};
use crate::workers::{self, WorkerConfig};
use stampede_core::{Catalog, Cents, OrderId, Product, ShopConfig, ShopState, Sku};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Where the PSP is.
#[derive(Clone, Debug)]
pub enum PspMode {
    /// Start the fake PSP in this process on an ephemeral loopback port.
    Embedded(PspConfig),
    /// Use a PSP already listening at `host:port`.
    Remote(String),
}

/// Where the shop keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// In process memory only: fastest, lost when the process ends.
    Memory,
    /// In an SQLite file: every acknowledged change survives a crash.
    Sqlite(SqliteOptions),
    /// In a PostgreSQL database, shared with other replicas: every
    /// acknowledged change is committed there.
    Postgres(PgOptions),
}

impl StoreChoice {
    /// Parses `memory`, `sqlite` (the default path), `sqlite:PATH` or a
    /// `postgres://` (`postgresql://`) URL.
    pub fn parse(text: &str) -> Result<StoreChoice, String> {
        if PgOptions::is_url(text) {
            return Ok(StoreChoice::Postgres(PgOptions::new(text)));
        }
        match text {
            "memory" => Ok(StoreChoice::Memory),
            "sqlite" => Ok(StoreChoice::Sqlite(SqliteOptions::new(DEFAULT_SQLITE_PATH))),
            _ => match text.strip_prefix("sqlite:") {
                Some("") | None => Err(format!(
                    "{text:?}: write memory, sqlite (= sqlite:{DEFAULT_SQLITE_PATH}), sqlite:PATH \
                     or postgres://user:password@host:port/database"
                )),
                Some(path) => Ok(StoreChoice::Sqlite(SqliteOptions::new(path))),
            },
        }
    }
}

/// Where `stampede serve` keeps its state unless told otherwise.
pub const DEFAULT_SQLITE_PATH: &str = "stampede-data/shop.db";

/// Everything needed to start the stack.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Where the shop listens (`127.0.0.1:0` for an ephemeral port).
    pub addr: SocketAddr,
    /// The PSP.
    pub psp: PspMode,
    /// The shop.
    pub server: ServerConfig,
    /// The store's limits (reservation TTL etc.).
    pub shop: ShopConfig,
    /// What is for sale: products and initial stock.
    pub catalog: Vec<(Product, u64)>,
    /// Job worker tasks.
    pub workers: u32,
    /// Worker timings.
    pub worker: WorkerConfig,
    /// Seed for every RNG in the stack.
    pub seed: u64,
    /// Unix time (ms) of the clock's origin, for webhook signature timestamps.
    pub epoch_unix_ms: u64,
    /// Timeout of shop→PSP requests.
    pub psp_timeout: Duration,
    /// Where the state is kept.
    pub store: StoreChoice,
}

impl StackConfig {
    /// A small demo shop on `addr` with an embedded PSP.
    pub fn demo(addr: SocketAddr, epoch_unix_ms: u64) -> StackConfig {
        let server = ServerConfig::default();
        let psp = PspConfig {
            secret: server.webhook_secret.clone(),
            ..PspConfig::default()
        };
        StackConfig {
            addr,
            psp: PspMode::Embedded(psp),
            server,
            shop: ShopConfig::default(),
            catalog: demo_catalog(),
            workers: 4,
            worker: WorkerConfig::default(),
            seed: 1,
            epoch_unix_ms,
            psp_timeout: Duration::from_secs(5),
            store: StoreChoice::Memory,
        }
    }
}

/// The demo catalog: a hot flash-sale SKU and a few ordinary ones.
pub fn demo_catalog() -> Vec<(Product, u64)> {
    let product = |sku: &str, name: &str, price: u64, max: u32, limit: Option<u32>| Product {
        sku: Sku::new(sku).expect("valid demo sku"),
        name: name.to_string(),
        price: Cents(price),
        max_qty_per_order: max,
        per_customer_limit: limit,
    };
    vec![
        (
            product(
                "sneaker-limited",
                "Limited sneaker drop",
                19_900,
                2,
                Some(2),
            ),
            100,
        ),
        (
            product("tshirt-black", "Black T-shirt", 2_500, 10, None),
            10_000,
        ),
        (product("mug", "Coffee mug", 1_200, 10, None), 5_000),
        (product("poster", "Concert poster", 900, 5, None), 2_000),
    ]
}

/// A running stack.
pub struct Stack {
    /// Where the shop listens.
    pub shop_addr: SocketAddr,
    /// Where the PSP listens.
    pub psp_addr: String,
    /// The shop application.
    pub app: Arc<App>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// What opening a durable store found (`None`: in memory).
    pub opened: Option<Opened>,
    /// The embedded PSP, if any.
    pub psp: Option<Arc<Psp>>,
    /// Settings the configuration asked for that a store which already
    /// existed keeps its own values of ([`kept_settings`]).
    pub kept_settings: Vec<String>,
    /// The shop's and the embedded PSP's servers: they end once their
    /// clients have (see [`serve_router`]).
    servers: Vec<JoinHandle<()>>,
    /// Background loops: the sweeper, the reconciler, the PSP's deliveries.
    tasks: Vec<JoinHandle<()>>,
    worker_tasks: Vec<JoinHandle<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Resolves once the store has closed its file (a SQLite store).
    store_closed: Option<StoreClosed>,
}

impl Stack {
    /// Stops one job worker abruptly (as a crash would), returning how many remain.
    pub fn kill_worker(&mut self) -> usize {
        if let Some(task) = self.worker_tasks.pop() {
            task.abort();
        }
        self.worker_tasks.len()
    }

    /// Starts `n` more job workers.
    pub fn start_workers(&mut self, n: u32, seed: u64, config: WorkerConfig) {
        let base = self.worker_tasks.len() as u32;
        for i in 0..n {
            let app = Arc::clone(&self.app);
            self.worker_tasks.push(tokio::spawn(workers::run_job_worker(
                app,
                base + i,
                seed,
                config,
            )));
        }
    }

    /// Stops accepting connections, lets in-flight requests finish (cutting
    /// off after [`ConnectionLimits::shutdown_grace`](crate::ConnectionLimits)
    /// those still open), stops the workers and the background loops where
    /// they are (as a crash would: every step is safe to cut), and returns
    /// once the store is closed — a SQLite file is then free for the next
    /// shop to open.
    pub async fn shutdown(self) {
        let _ = self.shutdown_checked().await;
    }

    /// [`Stack::shutdown`], saying why if the store did not close cleanly: a
    /// commit failed, before or while closing (the closing checkpoint
    /// included). A store still open [`STORE_CLOSE_WAIT`] after the shutdown
    /// is logged, not an error.
    pub async fn shutdown_checked(self) -> Result<(), String> {
        let _ = self.shutdown.send(true);
        self.app.stop();
        for server in self.servers {
            let _ = server.await;
        }
        for task in self.worker_tasks.into_iter().chain(self.tasks) {
            task.abort();
            let _ = task.await;
        }
        drop(self.store);
        drop(self.app);
        drop(self.psp);
        // What may still hold the store is work an aborted task or a
        // finished request handed off (a `finalize=in-memory` finalization):
        // it lets go within moments, and the store then closes its file.
        let Some(closed) = self.store_closed else {
            return Ok(());
        };
        match tokio::time::timeout(STORE_CLOSE_WAIT, closed).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // What holds it is a step an aborted task handed off; what
                // it acknowledged was committed before it answered.
                tracing::warn!(
                    ?STORE_CLOSE_WAIT,
                    "the store is still open after the shutdown"
                );
                Ok(())
            }
        }
    }
}

/// Longest [`Stack::shutdown`] waits for the store to close its file.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The shop's state as the configuration describes it: the catalog, stocked.
pub fn initial_state(config: &StackConfig) -> Result<ShopState, String> {
    let shop = shop_config(config);
    let catalog = Catalog::new(config.catalog.iter().map(|(p, _)| p.clone()));
    let mut state = ShopState::new(catalog, shop);
    for (product, qty) in &config.catalog {
        state
            .stock(&product.sku, *qty, 1)
            .map_err(|e| format!("stocking {}: {e}", product.sku))?;
    }
    Ok(state)
}

/// The shop's settings as the configuration (and its design) asks for them.
fn shop_config(config: &StackConfig) -> ShopConfig {
    let mut shop = config.shop;
    shop.reservation_ttl_ms = config
        .server
        .design
        .reservation_ttl
        .ttl_ms(shop.reservation_ttl_ms);
    shop.admission = config.server.design.admission.limits(shop.admission);
    shop
}

/// The settings a store that already exists keeps although the
/// configuration asks for others (`asked`): a shop's settings are part of
/// its state, set when it was created. One line each, saying both values.
pub fn kept_settings(stored: &ShopConfig, asked: &ShopConfig) -> Vec<String> {
    fn shown<T: std::fmt::Display>(value: Option<T>, unit: &str) -> String {
        value.map_or_else(|| "none".to_string(), |v| format!("{v}{unit}"))
    }
    let (has, wants) = (&stored.admission, &asked.admission);
    let settings = [
        (
            "reservation hold",
            shown(stored.reservation_ttl_ms, " ms"),
            shown(asked.reservation_ttl_ms, " ms"),
        ),
        (
            "most undecided orders",
            shown(has.max_undecided_orders, ""),
            shown(wants.max_undecided_orders, ""),
        ),
        (
            "shed Retry-After",
            shown(Some(has.shed_retry_after_ms), " ms"),
            shown(Some(wants.shed_retry_after_ms), " ms"),
        ),
        (
            "orders per customer per window",
            shown(has.customer_orders_max, ""),
            shown(wants.customer_orders_max, ""),
        ),
        (
            "customer window",
            shown(Some(has.customer_window_ms), " ms"),
            shown(Some(wants.customer_window_ms), " ms"),
        ),
        (
            "sold-out fast path",
            shown(Some(has.sold_out_fast_path), ""),
            shown(Some(wants.sold_out_fast_path), ""),
        ),
        (
            "sold-out wait",
            shown(stored.sold_out_wait_ms, " ms"),
            shown(asked.sold_out_wait_ms, " ms"),
        ),
    ];
    settings
        .into_iter()
        .filter(|(_, has, wants)| has != wants)
        .map(|(name, has, wants)| format!("{name}: kept the store's {has} (asked for {wants})"))
        .collect()
}

/// What opening a durable store found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The file was new.
    pub created: bool,
    /// Orders it held.
    pub orders: usize,
    /// Commands re-applied from its log.
    pub replayed: u64,
    /// Idempotency keys found held in flight and freed (see
    /// [`Command::ReleaseKeysInFlight`](stampede_core::Command::ReleaseKeysInFlight)).
    pub keys_released: u64,
    /// Job leases found held and ended (see
    /// [`Command::ReleaseLeases`](stampede_core::Command::ReleaseLeases)).
    pub leases_released: u64,
}

impl Opened {
    /// What opening the durable store at `place` found, logged.
    fn logged(
        place: &dyn std::fmt::Display,
        created: bool,
        state: &ShopState,
        replayed: u64,
    ) -> Opened {
        let orders = state.order_count();
        tracing::info!(store = %place, created, orders, replayed, "store opened");
        Opened {
            created,
            orders,
            replayed,
            keys_released: 0,
            leases_released: 0,
        }
    }
}

/// A store, the clock the stack reads, and what opening it found.
struct Built {
    store: Arc<dyn Store>,
    clock: Clock,
    opened: Option<Opened>,
    /// For a store that holds a file: resolves once it is closed.
    closed: Option<StoreClosed>,
    /// [`kept_settings`] of a store that already existed.
    kept: Vec<String>,
}

/// Resolves once a store that holds a file has closed it.
type StoreClosed = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Why the stack did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store's file was refused (foreign, another version, corrupt).
    #[error(transparent)]
    Store(#[from] sqlite::OpenError),
    /// The PostgreSQL database was unreachable or refused (foreign, another version, corrupt).
    #[error(transparent)]
    Postgres(#[from] postgres::PgOpenError),
    /// The PSP already holds intents, and this store has no order yet.
    #[error(
        "the PSP at {psp} already holds payment intents (for {order}, among others), and this shop's store has placed no order: it served another shop, or this one before its store was reset. The shop's payment keys (pay_<order>) and its lookups by order would mix this shop's payments with those: one buyer's order paid with another's money, or another's payment refunded. Start a fresh PSP, or serve the store that placed those orders"
    )]
    ForeignPsp {
        /// The PSP's address.
        psp: String,
        /// The order both know of.
        order: OrderId,
    },
    /// Anything else: a port in use, a bad configuration.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The shop's client of its PSP at `addr`; one run apart (not `embedded`) is
/// checked first ([`check_psp_is_ours`]).
async fn shop_psp_client(
    config: &StackConfig,
    store: &dyn Store,
    addr: &str,
    embedded: bool,
) -> Result<PspClient, StartError> {
    let client = PspClient::new(
        HttpClient::new(Connector::tokio(), config.psp_timeout),
        addr.to_string(),
    );
    if !embedded {
        check_psp_is_ours(store, &client).await?;
    }
    Ok(client)
}

/// How many of a PSP's intents [`check_psp_is_ours`] looks at for a store
/// with no order yet (any one is another store's).
const PSP_CHECK_PAGE: usize = 10;

/// How many times [`check_psp_is_ours`] looks again when the store placed
/// the order it asked the PSP about in the meantime (another replica).
const PSP_CHECK_TRIES: u32 = 8;

/// Refuses, for a store with no order yet, a PSP that already holds intents
/// (any: the other store's `ord_1` may never have reached payment). Order ids start at `ord_1` in every fresh store, and the shop
/// finds an order's payments at the PSP by its id (the intent's key
/// `pay_<order>`, the reconciler's and refunds' lookups), so a PSP that served
/// another store would hand this shop's orders that store's payments. A store
/// with orders whose next id the PSP knows lost acknowledged orders: that is
/// logged as an error and served. A PSP that cannot be asked is let be (a
/// shop may start before its PSP): the first order's payment waits for it as
/// ever.
pub async fn check_psp_is_ours(store: &dyn Store, psp: &PspClient) -> Result<(), StartError> {
    let failed = |e: crate::store::StoreError| io::Error::other(e.to_string());
    for _ in 0..PSP_CHECK_TRIES {
        let placed: u64 = store
            .stats()
            .await
            .map_err(failed)?
            .orders_by_status
            .values()
            .sum();
        let next = OrderId(placed.saturating_add(1));
        // With no order yet, any intent at all is another store's (its `ord_1` may never have
        // been paid for, an abandoned cart, while its `ord_2` was); else those of the next order.
        let held = match placed {
            0 => psp.list_intents(None, PSP_CHECK_PAGE).await,
            _ => psp.intents_for_order(next).await,
        };
        let held = match held {
            Ok(intents) => intents,
            Err(error) => {
                tracing::warn!(psp = psp.addr(), %error, "could not ask the PSP whether it served another shop");
                return Ok(());
            }
        };
        let mut foreign = None;
        for intent in &held {
            if store
                .get_order(intent.order)
                .await
                .map_err(failed)?
                .is_none()
            {
                foreign = Some(intent.order);
                break;
            }
        }
        let Some(order) = foreign else {
            if held.is_empty() {
                return Ok(());
            }
            continue; // Another replica placed them meanwhile: their intents are this store's.
        };
        if placed == 0 {
            return Err(StartError::ForeignPsp {
                psp: psp.addr().to_string(),
                order,
            });
        }
        // A store with orders that is behind its PSP lost orders it had acknowledged (the
        // `commit=ack-first` mistake, or a file restored from a backup): said, and served, so
        // what that loss does is there to be judged.
        tracing::error!(
            psp = psp.addr(),
            %order,
            "the PSP already holds payment intents for {order}, an order this store has not placed: the store lost orders it had acknowledged, and orders placed now under those ids will be mixed with their payments"
        );
        return Ok(());
    }
    Ok(())
}

/// Frees what the last process on a SQLite file left held. The file is this
/// process's alone (its lock) and nothing has been served yet, so every key
/// in flight was taken by a request that died with that process (a `/pay`
/// a crash cut off: its buyer can retry at once instead of waiting out the
/// in-flight timeout, longer than the hold on their cart), and every job
/// lease was a dead worker's (its job runs now, not after the visibility
/// timeout).
async fn release_orphans(store: &dyn Store, opened: &mut Opened) -> Result<(), StartError> {
    let failed = |e: crate::store::StoreError| io::Error::other(e.to_string());
    opened.keys_released = store.release_keys_in_flight().await.map_err(failed)?;
    opened.leases_released = store.release_leases().await.map_err(failed)?;
    Ok(())
}

/// [`build_store`] for a SQLite file: opened (created, or its log replayed), and
/// what the last process on it left held freed.
async fn build_sqlite(config: &StackConfig, options: &SqliteOptions) -> Result<Built, StartError> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    }
    // The design decides when replies go (`commit`); the rest is the caller's choice.
    let options = &SqliteOptions {
        commit: config.server.design.commit,
        ..options.clone()
    };
    let recovered = sqlite::open(options, config.epoch_unix_ms, || initial_state(config))?;
    let start = recovered.start_at(config.epoch_unix_ms);
    let mut opened = Opened::logged(
        &options.path.display(),
        recovered.created(),
        recovered.state(),
        recovered.replayed(),
    );
    let kept = if recovered.created() {
        Vec::new()
    } else {
        kept_settings(recovered.state().config(), &shop_config(config))
    };
    let clock = Clock::tokio_from(recovered.epoch_unix_ms(), start);
    let sqlite = SqliteStore::start(recovered, clock.clone()).map_err(invalid)?;
    let closed: StoreClosed = Box::pin(sqlite.closed());
    let store: Arc<dyn Store> = sqlite;
    if !opened.created {
        release_orphans(&*store, &mut opened).await?;
    }
    Ok(Built {
        store,
        clock,
        opened: Some(opened),
        closed: Some(closed),
        kept,
    })
}

/// Builds the store and the clock the whole stack reads: for a durable
/// store, its time resumes where the stored state left off.
async fn build_store(config: &StackConfig) -> Result<Built, StartError> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    match &config.store {
        StoreChoice::Memory => {
            let clock = Clock::tokio(config.epoch_unix_ms);
            let state = initial_state(config).map_err(invalid)?;
            Ok(Built {
                store: Arc::new(MemoryStore::new(state, clock.clone())),
                clock,
                opened: None,
                closed: None,
                kept: Vec::new(),
            })
        }
        StoreChoice::Sqlite(options) => build_sqlite(config, options).await,
        StoreChoice::Postgres(options) => {
            if !config.server.design.commit.waits() {
                // The mistake is modelled on the SQLite store; here every other switch of the
                // design still applies, and replies wait for their commit.
                tracing::warn!(
                    "commit=ack-first is modelled on the SQLite store only: on PostgreSQL \
                     replies still wait for their commit"
                );
            }
            let opened =
                postgres::open(options, config.epoch_unix_ms, || initial_state(config)).await?;
            let start = opened.start_at(config.epoch_unix_ms);
            let found = Opened::logged(
                &options.redacted(),
                opened.created(),
                opened.state(),
                opened.replayed(),
            );
            let kept = if opened.created() {
                Vec::new()
            } else {
                kept_settings(opened.state().config(), &shop_config(config))
            };
            let clock = Clock::tokio_from(opened.epoch_unix_ms(), start);
            let store = PgStore::start(opened, clock.clone());
            Ok(Built {
                store,
                clock,
                opened: Some(found),
                closed: None,
                kept,
            })
        }
    }
}

async fn serve_with_shutdown(
    listener: TcpListener,
    router: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let signal = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(error) = serve_router(listener, router, signal).await {
        tracing::error!(%error, "server stopped");
    }
}

/// The embedded PSP of `config`, delivering its webhooks to the shop at `shop_addr`.
fn embedded_psp(
    config: &StackConfig,
    psp_config: &PspConfig,
    shop_addr: SocketAddr,
    clock: &Clock,
    connector: &Connector,
) -> io::Result<Arc<Psp>> {
    let psp_config = PspConfig {
        seed: config.seed,
        webhook: Some(WebhookTarget {
            addr: shop_addr.to_string(),
            path: crate::api::WEBHOOK_PATH.into(),
        }),
        secret: config.server.webhook_secret.clone(),
        // A shop restarted on its store gets a fresh embedded PSP: its ids must not repeat
        // the ones the store holds (the clock resumes from the store's time).
        id_base: crate::psp::id_base_at(clock.unix_ms()),
        ..psp_config.clone()
    };
    Psp::new(psp_config, clock.clone(), connector.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

/// Starts the shop (and the embedded PSP) and returns once both listen.
pub async fn start(config: StackConfig) -> Result<Stack, StartError> {
    let Built {
        store,
        clock,
        opened,
        closed,
        kept,
    } = build_store(&config).await?;
    for setting in &kept {
        tracing::warn!("{setting}");
    }
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let shop_listener = crate::listen::bind(config.addr)?;
    let shop_addr = shop_listener.local_addr()?;
    let mut servers = Vec::new();
    let mut tasks = Vec::new();
    let connector = Connector::tokio();

    let (psp_addr, embedded) = match &config.psp {
        PspMode::Remote(addr) => (addr.clone(), None),
        PspMode::Embedded(psp_config) => {
            let listener = crate::listen::bind(SocketAddr::new(shop_addr.ip(), 0))?;
            let addr = listener.local_addr()?.to_string();
            let psp = embedded_psp(&config, psp_config, shop_addr, &clock, &connector)?;
            servers.push(tokio::spawn(serve_with_shutdown(
                listener,
                psp::router(Arc::clone(&psp)),
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(Arc::clone(&psp).run_delivery()));
            (addr, Some(psp))
        }
    };

    let psp_client =
        shop_psp_client(&config, store.as_ref(), &psp_addr, embedded.is_some()).await?;
    let app = App::new(Arc::clone(&store), psp_client, clock, config.server.clone());
    servers.push(tokio::spawn(serve_with_shutdown(
        shop_listener,
        api::router(Arc::clone(&app)),
        shutdown_rx,
    )));
    tasks.push(tokio::spawn(workers::run_sweeper(
        Arc::clone(&app),
        config.worker,
    )));
    tasks.push(tokio::spawn(workers::run_reconciler(
        Arc::clone(&app),
        config.worker,
    )));
    let mut stack = Stack {
        shop_addr,
        psp_addr,
        app,
        store,
        opened,
        psp: embedded,
        servers,
        tasks,
        worker_tasks: Vec::new(),
        shutdown,
        store_closed: closed,
        kept_settings: kept,
    };
    stack.start_workers(config.workers, config.seed, config.worker);
    tracing::info!(shop = %stack.shop_addr, psp = %stack.psp_addr, design = %config.server.design, "stack started");
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_a_store_keeps_is_named_once_with_both_values() {
        // Proves: the same settings keep nothing; each setting changed alone is one line
        // naming it with the store's value and the one asked for.
        let stored = ShopConfig::default();
        assert!(kept_settings(&stored, &stored).is_empty());
        type Change = fn(&mut ShopConfig);
        let changes: [(&str, Change); 7] = [
            ("reservation hold", |c| c.reservation_ttl_ms = None),
            ("most undecided orders", |c| {
                c.admission.max_undecided_orders = Some(7);
            }),
            ("shed Retry-After", |c| c.admission.shed_retry_after_ms += 1),
            ("orders per customer per window", |c| {
                c.admission.customer_orders_max = Some(3);
            }),
            ("customer window", |c| c.admission.customer_window_ms += 1),
            ("sold-out fast path", |c| {
                c.admission.sold_out_fast_path = !c.admission.sold_out_fast_path;
            }),
            ("sold-out wait", |c| c.sold_out_wait_ms = Some(1)),
        ];
        for (name, change) in changes {
            let mut asked = stored;
            change(&mut asked);
            let kept = kept_settings(&stored, &asked);
            assert_eq!(kept.len(), 1, "{name}: {kept:?}");
            assert!(
                kept[0].starts_with(&format!("{name}: kept the store's ")),
                "{kept:?}"
            );
            assert!(kept[0].contains("(asked for "), "{kept:?}");
        }
    }

    #[test]
    fn store_choices_parse_and_bad_ones_say_what_to_write() {
        // Proves: memory, sqlite (the default path) and sqlite:PATH are understood; an empty
        // path or another word is refused with the accepted forms named.
        assert_eq!(StoreChoice::parse("memory"), Ok(StoreChoice::Memory));
        assert_eq!(
            StoreChoice::parse("sqlite"),
            Ok(StoreChoice::Sqlite(SqliteOptions::new(DEFAULT_SQLITE_PATH)))
        );
        assert_eq!(
            StoreChoice::parse("sqlite:/tmp/x.db"),
            Ok(StoreChoice::Sqlite(SqliteOptions::new("/tmp/x.db")))
        );
        assert_eq!(
            StoreChoice::parse("postgres://u:p@db:5432/shop"),
            Ok(StoreChoice::Postgres(PgOptions::new(
                "postgres://u:p@db:5432/shop"
            )))
        );
        assert_eq!(
            StoreChoice::parse("postgresql://db/shop"),
            Ok(StoreChoice::Postgres(PgOptions::new(
                "postgresql://db/shop"
            )))
        );
        for bad in ["sqlite:", "postgres:db", "Memory", ""] {
            let error = StoreChoice::parse(bad).unwrap_err();
            assert!(error.contains("sqlite:PATH"), "{bad:?}: {error}");
        }
    }
}
