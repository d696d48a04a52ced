//! Events streams on the watcher hub: `GET /v1/orders/{id}/events` sends the
//! current status and then each change without polling the order (store
//! requests counted), ends at a final status, refuses one stream over the
//! watcher bound with a 503 problem, re-reads after a restored snapshot (the
//! feed's epoch), never lets a watcher read before the hub holds a cursor,
//! hands new streams their first status in one batched read, and stops
//! reading the feed when nobody watches. Also the HTTP client's
//! stream bounds (event size, total bytes).

use serde_json::Value;
use stampede_core::{
    Catalog, Cause, Cents, CustomerId, IdempotencyKey, ItemRequest, OrderId, PlaceOrder, Placed,
    Product, ShopConfig, ShopState, Sku,
};
use stampede_core::{Command, Reply};
use stampede_server::Clock;
use stampede_server::Watch;
use stampede_server::psp::PspClient;
use stampede_server::store::{MemoryStore, Store, StoreError, StoreFuture};
use stampede_server::{App, ServerConfig};
use stampede_server::{Connector, EVENT_BYTES_MAX, HttpClient, HttpStream, SseEvent};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

const IDLE: Duration = Duration::from_secs(5);

/// The memory store, counting order reads, batched order reads and feed
/// reads, with an optional gate every feed read must pass, and batched
/// reads failing while `fail_batches` is set.
struct Counting {
    inner: Arc<MemoryStore>,
    gets: AtomicU64,
    batches: AtomicU64,
    feeds: AtomicU64,
    gate: Option<Arc<Semaphore>>,
    fail_batches: std::sync::atomic::AtomicBool,
}

impl Store for Counting {
    fn call(&self, request: Command) -> StoreFuture<'_> {
        Box::pin(async move {
            match request {
                Command::GetOrder { .. } => {
                    self.gets.fetch_add(1, Ordering::SeqCst);
                }
                Command::GetOrders { .. } => {
                    self.batches.fetch_add(1, Ordering::SeqCst);
                    if self.fail_batches.load(Ordering::SeqCst) {
                        return Err(StoreError::Unavailable("batch read refused".into()));
                    }
                }
                Command::ReadFeed { .. } => {
                    self.feeds.fetch_add(1, Ordering::SeqCst);
                    if let Some(gate) = &self.gate {
                        gate.acquire().await.expect("open gate").forget();
                    }
                }
                _ => {}
            }
            self.inner.call(request).await
        })
    }
}

struct Shop {
    memory: Arc<MemoryStore>,
    store: Arc<Counting>,
    app: Arc<App>,
    addr: String,
    http: HttpClient,
}

fn hat() -> Sku {
    Sku::new("hat").unwrap()
}

async fn shop_with(config: ServerConfig, gate: Option<Arc<Semaphore>>) -> Shop {
    let catalog = Catalog::new([Product {
        sku: hat(),
        name: "Hat".into(),
        price: Cents(1_000),
        max_qty_per_order: 5,
        per_customer_limit: None,
    }]);
    let mut state = ShopState::new(catalog, ShopConfig::default());
    state.stock(&hat(), 100, 1).unwrap();
    let clock = Clock::tokio(1_700_000_000_000);
    let memory = Arc::new(MemoryStore::new(state, clock.clone()));
    let store = Arc::new(Counting {
        inner: Arc::clone(&memory),
        gets: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        feeds: AtomicU64::new(0),
        gate,
        fail_batches: Default::default(),
    });
    let http = HttpClient::new(Connector::tokio(), Duration::from_secs(5));
    let psp = PspClient::new(http.clone(), "127.0.0.1:9".into());
    let app = App::new(Arc::clone(&store) as Arc<dyn Store>, psp, clock, config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = stampede_server::router(Arc::clone(&app));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Shop {
        memory,
        store,
        app,
        addr,
        http,
    }
}

async fn shop() -> Shop {
    shop_with(ServerConfig::default(), None).await
}

impl Shop {
    fn place(&self, key: &str) -> OrderId {
        let request = PlaceOrder {
            key: Some(IdempotencyKey::new(key).unwrap()),
            customer: CustomerId::new(format!("cust-{key}")).unwrap(),
            items: vec![ItemRequest { sku: hat(), qty: 1 }],
            express: false,
        };
        match self.memory.execute(Command::PlaceOrder { request }) {
            Ok(Reply::Placed(Placed::Created { order, .. })) => order,
            other => panic!("{other:?}"),
        }
    }

    fn run(&self, request: Command) {
        self.memory.execute(request).expect("store step");
    }

    async fn events(&self, order: OrderId) -> HttpStream {
        self.http
            .open(&self.addr, &format!("/v1/orders/{order}/events"), &[])
            .await
            .expect("shop answers")
    }

    fn gets(&self) -> u64 {
        self.store.gets.load(Ordering::SeqCst)
    }
}

fn status_of(event: &SseEvent) -> String {
    assert_eq!(event.event, "status");
    let view: Value = serde_json::from_str(&event.data).unwrap();
    view["status"].as_str().unwrap().to_string()
}

async fn next_status(stream: &mut HttpStream) -> String {
    let event = stream
        .next_event(IDLE)
        .await
        .expect("stream readable")
        .expect("an event");
    status_of(&event)
}

/// Waits (bounded: 5 s) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn a_change_is_delivered_without_polling_the_order() {
    // Proves: the stream opens with the current status (one read), then sends each change as
    // the hub read it in its one batched read after the feed: no order read of the stream's
    // own while nothing changes over ~10 hub polls, nor for a change.
    let shop = shop().await;
    let order = shop.place("k-1");
    let mut stream = shop.events(order).await;
    assert_eq!(stream.status, 200);
    assert_eq!(next_status(&mut stream).await, "created");
    let after_first = shop.gets();
    assert_eq!(after_first, 1, "one read for the current status");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        shop.gets(),
        after_first,
        "no order read while nothing changed"
    );
    assert!(shop.app.watch.feed_reads() >= 2, "the hub reads the feed");
    shop.run(Command::Reserve {
        order,
        cause: Cause::Customer,
    });
    assert_eq!(shop.store.batches.load(Ordering::SeqCst), 0, "none yet");
    assert_eq!(next_status(&mut stream).await, "inventory_reserved");
    assert_eq!(
        shop.gets(),
        after_first,
        "handed over, not read by the stream"
    );
    assert_eq!(shop.store.batches.load(Ordering::SeqCst), 1, "one batch");
}

#[tokio::test]
async fn one_batched_read_serves_every_stream_that_changed() {
    // Proves: changes to several watched orders found in one feed read are read in one
    // store call, however many streams wait on them (two on the same order among them).
    let shop = shop_with(ServerConfig::default(), Some(Arc::new(Semaphore::new(2)))).await;
    let orders = [shop.place("k-1"), shop.place("k-2"), shop.place("k-3")];
    let mut streams = Vec::new();
    for order in orders.iter().chain([&orders[0]]) {
        let mut stream = shop.events(*order).await;
        assert_eq!(next_status(&mut stream).await, "created");
        streams.push(stream);
    }
    let gets = shop.gets();
    let batches = shop.store.batches.load(Ordering::SeqCst);
    // Two feed reads pass the gate; all three orders change while the third waits at it.
    eventually("a third feed read waits", || {
        shop.store.feeds.load(Ordering::SeqCst) >= 3
    })
    .await;
    for order in orders {
        shop.run(Command::Reserve {
            order,
            cause: Cause::Customer,
        });
    }
    shop.store.gate.as_ref().unwrap().add_permits(1_000);
    for stream in &mut streams {
        assert_eq!(next_status(stream).await, "inventory_reserved");
    }
    assert_eq!(shop.gets(), gets, "no stream read its order");
    assert_eq!(
        shop.store.batches.load(Ordering::SeqCst),
        batches + 1,
        "one batch"
    );
}

#[tokio::test]
async fn new_streams_are_handed_their_first_status_in_one_read() {
    // Proves: a stream opened before the hub has a cursor reads its order itself; streams
    // opened while the hub holds one are handed their first status by the hub, and all who
    // registered while a feed read was on its way share one batched read: no read of their own.
    let gate = Arc::new(Semaphore::new(2));
    let shop = shop_with(ServerConfig::default(), Some(Arc::clone(&gate))).await;
    let orders = [shop.place("k-1"), shop.place("k-2"), shop.place("k-3")];
    let mut early = shop.events(orders[0]).await;
    assert_eq!(next_status(&mut early).await, "created");
    assert_eq!(
        shop.gets(),
        1,
        "the stream before the first cursor read its own"
    );
    eventually("a third feed read waits", || {
        shop.store.feeds.load(Ordering::SeqCst) >= 3
    })
    .await;
    let batches = shop.store.batches.load(Ordering::SeqCst);
    let opening = async {
        tokio::join!(
            shop.events(orders[0]),
            shop.events(orders[1]),
            shop.events(orders[2])
        )
    };
    let open_gate = async {
        eventually("three more watchers", || shop.app.watch.watching() == 4).await;
        gate.add_permits(1_000);
    };
    let ((mut a, mut b, mut c), ()) = tokio::join!(opening, open_gate);
    for stream in [&mut a, &mut b, &mut c] {
        assert_eq!(stream.status, 200);
        assert_eq!(next_status(stream).await, "created");
    }
    assert_eq!(shop.gets(), 1, "no new stream read its order");
    assert_eq!(
        shop.store.batches.load(Ordering::SeqCst),
        batches + 1,
        "one read for the three"
    );
}

#[tokio::test]
async fn a_new_stream_is_read_at_once_not_at_the_next_feed_read() {
    // Proves: between feed reads (here a minute apart) the hub is kicked for a new stream's
    // first read, so the stream opens with its status long before the next feed read.
    let config = ServerConfig {
        watch_poll_ms: 60_000,
        ..ServerConfig::default()
    };
    let shop = shop_with(config, None).await;
    let order = shop.place("k-1");
    let mut early = shop.events(order).await;
    assert_eq!(next_status(&mut early).await, "created");
    let feeds = shop.store.feeds.load(Ordering::SeqCst);
    let mut late = tokio::time::timeout(IDLE, shop.events(order))
        .await
        .expect("opened before the next feed read");
    assert_eq!(next_status(&mut late).await, "created");
    assert_eq!(
        shop.store.feeds.load(Ordering::SeqCst),
        feeds,
        "no feed read"
    );
    assert_eq!(shop.gets(), 1, "the late stream read nothing itself");
    assert_eq!(
        shop.store.batches.load(Ordering::SeqCst),
        1,
        "the hub read it"
    );
}

#[tokio::test]
async fn a_failed_batched_read_makes_the_streams_read_their_own() {
    // Proves: when the hub cannot read the changed orders, their streams are woken with
    // nothing and read the order themselves (one read each), missing no change.
    let shop = shop().await;
    let order = shop.place("k-1");
    let mut stream = shop.events(order).await;
    assert_eq!(next_status(&mut stream).await, "created");
    let gets = shop.gets();
    shop.store.fail_batches.store(true, Ordering::SeqCst);
    shop.run(Command::Reserve {
        order,
        cause: Cause::Customer,
    });
    assert_eq!(next_status(&mut stream).await, "inventory_reserved");
    assert_eq!(shop.store.batches.load(Ordering::SeqCst), 1, "tried once");
    assert_eq!(shop.gets(), gets + 1, "then read by the stream");
}

#[tokio::test]
async fn the_stream_ends_at_a_final_status_and_the_idle_hub_stops_reading() {
    // Proves: after a final status the stream ends; with no watcher left the hub task exits
    // and the feed is not read any more (no background traffic while idle); a new watcher
    // starts it again.
    let shop = shop().await;
    let order = shop.place("k-1");
    let mut stream = shop.events(order).await;
    assert_eq!(next_status(&mut stream).await, "created");
    shop.run(Command::Cancel { order });
    assert_eq!(next_status(&mut stream).await, "cancelled_by_customer");
    assert_eq!(stream.next_event(IDLE).await.expect("clean end"), None);
    eventually("the hub stops", || {
        shop.app.watch.watching() == 0 && !shop.app.watch.running()
    })
    .await;
    let feeds = shop.store.feeds.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        shop.store.feeds.load(Ordering::SeqCst),
        feeds,
        "idle: no feed reads"
    );

    let mut again = shop.events(order).await;
    assert_eq!(next_status(&mut again).await, "cancelled_by_customer");
    assert!(shop.store.feeds.load(Ordering::SeqCst) > feeds, "restarted");
}

#[tokio::test]
async fn a_stopping_shop_ends_its_open_streams() {
    // Proves: an open events stream stays open while the shop runs, and ends cleanly once the
    // shop is told it is stopping (so a shutdown does not wait out its grace for followers,
    // who reconnect); a stream opened after that ends after its first status.
    let shop = shop().await;
    let order = shop.place("k-1");
    let mut stream = shop.events(order).await;
    assert_eq!(next_status(&mut stream).await, "created");
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.next_event(IDLE)).await;
    assert!(quiet.is_err(), "ended while the shop runs: {quiet:?}");
    shop.app.stop();
    assert_eq!(stream.next_event(IDLE).await.expect("clean end"), None);
    let mut late = shop.events(order).await;
    assert_eq!(next_status(&mut late).await, "created");
    assert_eq!(late.next_event(IDLE).await.expect("clean end"), None);
}

#[tokio::test]
async fn the_watcher_bound_accepts_at_the_bound_and_answers_503_past_it() {
    // Proves: with max_watchers = 2, two streams open; a third is a 503 problem+json; when
    // one closes, a stream opens again.
    let config = ServerConfig {
        max_watchers: 2,
        ..ServerConfig::default()
    };
    let shop = shop_with(config, None).await;
    let order = shop.place("k-1");
    let mut first = shop.events(order).await;
    let mut second = shop.events(order).await;
    assert_eq!(next_status(&mut first).await, "created");
    assert_eq!(next_status(&mut second).await, "created");
    assert_eq!(shop.app.watch.watching(), 2);

    let third = shop.events(order).await;
    assert_eq!(third.status, 503);
    assert_eq!(
        third.headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    let problem: Value = serde_json::from_slice(&third.rest(IDLE).await.unwrap()).unwrap();
    assert!(
        problem["type"].as_str().unwrap().ends_with("/unavailable"),
        "{problem}"
    );
    assert_eq!(
        shop.app.watch.watching(),
        2,
        "the refused one is not counted"
    );

    drop(second);
    eventually("the closed stream is unregistered", || {
        shop.app.watch.watching() == 1
    })
    .await;
    let mut fourth = shop.events(order).await;
    assert_eq!(next_status(&mut fourth).await, "created");
}

#[tokio::test]
async fn an_unknown_order_is_a_404_and_leaves_no_watcher() {
    // Proves: the stream answers 404 for an order that does not exist, and its watcher goes.
    let shop = shop().await;
    let stream = shop.events(OrderId(99)).await;
    assert_eq!(stream.status, 404);
    eventually("no watcher left", || shop.app.watch.watching() == 0).await;
}

#[tokio::test]
async fn a_restored_snapshot_makes_every_stream_re_read() {
    // Proves: MemoryStore::restore moves the feed to a new epoch, so an old cursor reads
    // incomplete, the hub wakes every watcher, and the stream shows the restored status even
    // though the restored feed's sequence numbers went back.
    let shop = shop().await;
    let order = shop.place("k-1");
    let snapshot = shop.memory.snapshot();
    let mut stream = shop.events(order).await;
    assert_eq!(next_status(&mut stream).await, "created");
    shop.run(Command::Reserve {
        order,
        cause: Cause::Customer,
    });
    assert_eq!(next_status(&mut stream).await, "inventory_reserved");

    let cursor = shop.memory.read(|s| s.feed().head());
    shop.memory.restore(snapshot);
    let read = shop.memory.read(|s| s.changes_since(Some(cursor), 10));
    assert!(
        !read.complete,
        "an old cursor is incomplete after a restore"
    );
    assert_eq!(next_status(&mut stream).await, "created");
}

#[tokio::test]
async fn a_watcher_may_read_only_after_the_hub_holds_a_cursor() {
    // Proves the no-lost-wake-up order: a first watcher's wake waits for the hub's first feed
    // read to answer (held back here), and a change made right after that wake is delivered.
    let gate = Arc::new(Semaphore::new(0));
    let shop = shop_with(ServerConfig::default(), Some(Arc::clone(&gate))).await;
    let order = shop.place("k-1");
    let watch: Watch = shop.app.watch.watch(order).unwrap();
    let early = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
    assert!(early.is_err(), "no wake before the hub has a cursor");
    gate.add_permits(1_000_000);
    tokio::time::timeout(IDLE, watch.changed())
        .await
        .expect("woken once the hub holds a cursor");
    shop.run(Command::Reserve {
        order,
        cause: Cause::Customer,
    });
    tokio::time::timeout(IDLE, watch.changed())
        .await
        .expect("the change after the read wakes the watcher");
    // A watcher registering while the hub runs may read at once.
    let late = shop.app.watch.watch(order).unwrap();
    tokio::time::timeout(Duration::from_millis(1), late.changed())
        .await
        .expect("ready at once");
}

/// Serves one raw HTTP response, head then `chunks`, on an ephemeral port.
async fn raw_server(chunks: Vec<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut head).await;
        let _ = socket
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            )
            .await;
        for chunk in chunks {
            let _ = socket.write_all(&chunk).await;
            let _ = socket.flush().await;
        }
    });
    addr
}

fn event_of_size(n: usize) -> Vec<u8> {
    // "data:" + payload + "\n\n" is exactly n bytes.
    let mut e = b"data:".to_vec();
    e.extend(std::iter::repeat_n(b'x', n - 7));
    e.extend_from_slice(b"\n\n");
    e
}

#[tokio::test]
async fn the_client_reads_events_as_they_come_within_its_bounds() {
    // Proves: events split across reads, comments and CRLF line ends parse; an event of
    // EVENT_BYTES_MAX is accepted and one byte more is refused; the total body bound holds on
    // both sides.
    let http = HttpClient::new(Connector::tokio(), Duration::from_secs(5));
    let addr = raw_server(vec![
        b": keep-alive\n\nevent: status\nda".to_vec(),
        b"ta: {\"a\":1}\r\ndata: 2\r\n\r\n".to_vec(),
        event_of_size(EVENT_BYTES_MAX),
    ])
    .await;
    let mut s = http.open(&addr, "/", &[]).await.unwrap();
    let e = s.next_event(IDLE).await.unwrap().unwrap();
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("status", "{\"a\":1}\n2")
    );
    let big = s.next_event(IDLE).await.unwrap().unwrap();
    assert_eq!(big.data.len(), EVENT_BYTES_MAX - 7);
    assert_eq!(s.next_event(IDLE).await.unwrap(), None);

    let addr = raw_server(vec![event_of_size(EVENT_BYTES_MAX + 2)]).await;
    let mut s = http.open(&addr, "/", &[]).await.unwrap();
    assert!(s.next_event(IDLE).await.is_err(), "event over the bound");

    let body = event_of_size(100);
    let addr = raw_server(vec![body.clone()]).await;
    let mut s = http
        .clone()
        .with_max_response_bytes(100)
        .open(&addr, "/", &[])
        .await
        .unwrap();
    assert_eq!(s.next_event(IDLE).await.unwrap().unwrap().data.len(), 93);
    let addr = raw_server(vec![body]).await;
    let mut s = http
        .with_max_response_bytes(99)
        .open(&addr, "/", &[])
        .await
        .unwrap();
    assert!(s.next_event(IDLE).await.is_err(), "body over the bound");
}
