//! The remote store over real loopback TCP: a `MemoryStore` served by
//! `serve_connection` behind a tokio accept loop, called through
//! `RemoteStore`. Every wait is bounded by a timeout; nothing sleeps.

use stampede_core::Command;
use stampede_core::{
    AuditSnapshot, Catalog, Cause, Cents, CustomerId, IdempotencyKey, IntentId, IntentStatus,
    ItemRequest, JobId, Lease, Millis, Order, OrderId, OrderStatus, PaymentIntent, PlaceOrder,
    Placed, Product, SavedResponse, ShopConfig, ShopError, ShopState, Sku, Step, StockLevel,
};
use stampede_server::store::remote::{
    FRAME_BYTES_MAX, RemoteConfig, RemoteStore, serve_connection,
};
use stampede_server::store::{MemoryStore, Store, StoreError};
use stampede_server::{Clock, Connector};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout};

/// Upper bound on any single wait in these tests.
const PATIENCE: Duration = Duration::from_secs(10);

/// Most connections one test server keeps; more are refused by dropping them.
const SERVER_CONNECTIONS_MAX: usize = 64;

fn hat() -> Sku {
    Sku::new("hat").unwrap()
}

fn shop(stock: u64) -> ShopState {
    let catalog = Catalog::new([Product {
        sku: hat(),
        name: "Hat".into(),
        price: Cents(1_500),
        max_qty_per_order: 5,
        per_customer_limit: None,
    }]);
    let mut state = ShopState::new(catalog, ShopConfig::default());
    state.stock(&hat(), stock, 1).unwrap();
    state
}

fn memory_store(stock: u64, clock: Clock) -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(shop(stock), clock))
}

fn order_request(key: &str, customer: &str, qty: u32) -> PlaceOrder {
    PlaceOrder {
        key: Some(IdempotencyKey::new(key).unwrap()),
        customer: CustomerId::new(customer).unwrap(),
        items: vec![ItemRequest { sku: hat(), qty }],
        express: false,
    }
}

fn remote(addr: SocketAddr, request_timeout: Duration, max_connections: usize) -> Arc<dyn Store> {
    Arc::new(remote_store(addr, request_timeout, max_connections))
}

fn remote_store(
    addr: SocketAddr,
    request_timeout: Duration,
    max_connections: usize,
) -> RemoteStore {
    RemoteStore::new(
        Connector::tokio(),
        addr.to_string(),
        RemoteConfig {
            request_timeout,
            max_connections,
        },
    )
}

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    open: AtomicUsize,
    open_max: AtomicUsize,
}

/// Counts one served connection as open until its task ends or is aborted.
struct OpenConnection(Arc<Counts>);

impl OpenConnection {
    fn count(counts: Arc<Counts>) -> OpenConnection {
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        let open = counts.open.fetch_add(1, Ordering::SeqCst) + 1;
        counts.open_max.fetch_max(open, Ordering::SeqCst);
        OpenConnection(counts)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A store host: an accept loop that serves each connection in a task of a
/// `JoinSet` it owns, so aborting the loop aborts every connection too.
struct Server {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    counts: Arc<Counts>,
    /// What each `serve_connection` returned (bounded; extra ones are dropped).
    outcomes: mpsc::Receiver<io::Result<()>>,
}

async fn start(bind: SocketAddr, store: Arc<dyn Store>) -> Server {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let (outcome_tx, outcomes) = mpsc::channel(SERVER_CONNECTIONS_MAX);
    let loop_counts = Arc::clone(&counts);
    let accept = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            while connections.try_join_next().is_some() {}
            if connections.len() >= SERVER_CONNECTIONS_MAX {
                continue; // refuse by dropping the stream
            }
            let counts = Arc::clone(&loop_counts);
            let store = Arc::clone(&store);
            let outcome_tx = outcome_tx.clone();
            connections.spawn(async move {
                let _open = OpenConnection::count(counts);
                let outcome = serve_connection(stream, store).await;
                let _ = outcome_tx.try_send(outcome);
            });
        }
    });
    Server {
        addr,
        accept,
        counts,
        outcomes,
    }
}

impl Server {
    fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Crashes the host: the accept loop and every connection task are
    /// aborted; returns once every connection's socket is closed.
    async fn stop(self) {
        self.accept.abort();
        let _ = timeout(PATIENCE, self.accept)
            .await
            .expect("abort completes");
        let closed = async {
            while self.counts.open.load(Ordering::SeqCst) > 0 {
                // A timer, not a yield: parks the runtime so aborted tasks
                // are dropped and the IO driver sees the closes.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        timeout(PATIENCE, closed)
            .await
            .expect("aborted connections close");
    }

    async fn next_outcome(&mut self) -> io::Result<()> {
        timeout(PATIENCE, self.outcomes.recv())
            .await
            .expect("a connection ends")
            .expect("the accept loop is alive")
    }
}

/// Everything a lifecycle step answered, to compare two stores step by step.
#[derive(Debug, PartialEq)]
enum Seen {
    Placed(Placed),
    Lease(Option<Lease>),
    Step(Step),
    Order(Option<Box<Order>>),
}

fn worker(lease: &Option<Lease>) -> Cause {
    Cause::Worker {
        job: lease.as_ref().expect("a job is due").job,
    }
}

/// Place → reserve → record intent → pay → finalize, through `store`, with a
/// worker leasing and acking each job; returns every answer and the audit.
async fn lifecycle(store: Arc<dyn Store>) -> (Vec<Seen>, Box<AuditSnapshot>) {
    let mut seen = Vec::new();
    let request = order_request("k-1", "alice", 2);
    let placed = store.place_order(request.clone()).await.unwrap();
    let Placed::Created { order, .. } = placed else {
        panic!("not created: {placed:?}")
    };
    seen.push(Seen::Placed(placed));
    seen.push(Seen::Placed(store.place_order(request).await.unwrap()));

    let lease = store.lease_job().await.unwrap();
    seen.push(Seen::Step(
        store.reserve(order, worker(&lease)).await.unwrap(),
    ));
    store.ack_job(lease.clone().unwrap()).await.unwrap();
    seen.push(Seen::Lease(lease));

    let total = store.get_order(order).await.unwrap().unwrap().total;
    let mut intent = PaymentIntent {
        id: IntentId::new("pi_test_1").unwrap(),
        order,
        amount: total,
        status: IntentStatus::RequiresPayment,
        refunded: Cents::ZERO,
    };
    let lease = store.lease_job().await.unwrap();
    let step = store.record_intent(intent.clone(), worker(&lease)).await;
    seen.push(Seen::Step(step.unwrap()));
    store.ack_job(lease.clone().unwrap()).await.unwrap();
    seen.push(Seen::Lease(lease));

    intent.status = IntentStatus::Succeeded;
    let step = store.apply_payment(intent, Cause::Reconciler).await;
    seen.push(Seen::Step(step.unwrap()));

    let lease = store.lease_job().await.unwrap();
    seen.push(Seen::Step(
        store.finalize(order, worker(&lease)).await.unwrap(),
    ));
    store.ack_job(lease.clone().unwrap()).await.unwrap();
    seen.push(Seen::Lease(lease));
    seen.push(Seen::Order(store.get_order(order).await.unwrap()));
    (seen, store.audit().await.unwrap())
}

#[tokio::test]
async fn a_full_lifecycle_through_the_remote_store_matches_the_in_process_store() {
    // Proves: every request and answer survives the wire unchanged — the same
    // lifecycle gives step-for-step equal answers and an equal audit whether
    // it runs on a MemoryStore in process or through RemoteStore over TCP.
    // Both stores read one frozen clock so even timestamps must match.
    let frozen = || Clock::from_fn(0, || Millis(1_000));
    let (local_seen, local_audit) = lifecycle(memory_store(10, frozen())).await;

    let server = start("127.0.0.1:0".parse().unwrap(), memory_store(10, frozen())).await;
    let (remote_seen, remote_audit) = lifecycle(remote(server.addr, PATIENCE, 2)).await;

    assert_eq!(remote_seen, local_seen);
    assert_eq!(remote_audit, local_audit);
    let Some(Seen::Order(Some(order))) = remote_seen.last() else {
        panic!("the lifecycle ends with the order")
    };
    let statuses: Vec<OrderStatus> = order.transitions().iter().map(|t| t.to).collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::InventoryReserved,
            OrderStatus::PaymentPending,
            OrderStatus::Paid,
            OrderStatus::Confirmed
        ]
    );
    assert!(matches!(
        remote_seen[1],
        Seen::Placed(Placed::Replay(SavedResponse::OrderAccepted { .. }))
    ));
    let level = remote_audit.stock[&hat()];
    assert_eq!((level.available, level.reserved, level.sold), (8, 0, 2));
    assert_eq!(server.accepted(), 1, "one pooled connection carried it all");
    server.stop().await;
}

/// Places one order and runs its reserve step; true if it got the stock. An
/// order that did not get it waits (every unit is held by an unpaid order).
async fn place_and_reserve(store: Arc<dyn Store>, i: usize) -> bool {
    let request = order_request(&format!("k-{i}"), &format!("c-{i}"), 1);
    let Placed::Created { order, job } = store.place_order(request).await.unwrap() else {
        panic!("a fresh key creates an order")
    };
    match store.reserve(order, Cause::Worker { job }).await.unwrap() {
        Step::Moved(moved) => {
            moved.last().expect("at least one transition").to == OrderStatus::InventoryReserved
        }
        Step::Wait { .. } => false,
        other => panic!("a created order moves or waits: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_do_not_oversell_and_connections_stay_bounded() {
    // Proves: 64 concurrent shoppers through one RemoteStore capped at 8
    // connections get exactly the 10 units in stock (the other 54 wait, still
    // created, for the unpaid holds), the audit's stock is conserved, and the
    // server never saw more than 8 connections.
    let server = start(
        "127.0.0.1:0".parse().unwrap(),
        memory_store(10, Clock::tokio(0)),
    )
    .await;
    let store = remote(server.addr, PATIENCE, 8);

    let mut shoppers = JoinSet::new();
    for i in 0..64 {
        shoppers.spawn(place_and_reserve(Arc::clone(&store), i));
    }
    let mut reserved = 0;
    while let Some(got_stock) = timeout(PATIENCE, shoppers.join_next()).await.unwrap() {
        reserved += usize::from(got_stock.unwrap());
    }
    assert_eq!(reserved, 10);

    let audit = store.audit().await.unwrap();
    let level = audit.stock[&hat()];
    assert_eq!(
        level,
        StockLevel {
            received: 10,
            available: 0,
            reserved: 10,
            sold: 0
        }
    );
    assert!(level.is_conserved());
    assert_eq!(audit.reservations.len(), 10);
    assert_eq!(audit.orders.len(), 64);
    let waiting = audit
        .orders
        .iter()
        .filter(|o| o.status() == OrderStatus::Created)
        .count();
    assert_eq!(waiting, 54);
    let held: u64 = audit.reservations.iter().map(|r| r.qty_of(&hat())).sum();
    assert_eq!(held, level.reserved);

    let accepted = server.accepted();
    let open_max = server.counts.open_max.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&accepted),
        "{accepted} connections accepted"
    );
    assert!(open_max <= 8, "{open_max} connections open at once");
    server.stop().await;
}

#[tokio::test]
async fn shop_refusals_come_back_as_the_same_shop_errors() {
    // Proves: a refusal by the shop crosses the wire as StoreError::Shop with
    // the very value the in-process store returns, and is a normal answer:
    // the connection stays pooled and is reused.
    let local = memory_store(10, Clock::tokio(0));
    let server = start(
        "127.0.0.1:0".parse().unwrap(),
        memory_store(10, Clock::tokio(0)),
    )
    .await;
    let client = Arc::new(remote_store(server.addr, PATIENCE, 4));
    let store: Arc<dyn Store> = client.clone();

    let mut unknown_sku = order_request("k-sku", "alice", 1);
    unknown_sku.items[0].sku = Sku::new("no-such-sku").unwrap();
    let refusals = [
        Command::Reserve {
            order: OrderId(404),
            cause: Cause::Customer,
        },
        Command::Cancel {
            order: OrderId(404),
        },
        Command::PlaceOrder {
            request: unknown_sku,
        },
        Command::PlaceOrder {
            request: order_request("k-zero", "alice", 0),
        },
        Command::AckJob {
            lease: Lease {
                job: JobId(77),
                kind: stampede_core::JobKind::Reserve,
                order: OrderId(1),
                attempt: 1,
                token: 9,
            },
        },
    ];
    for request in refusals {
        let expected = local.call(request.clone()).await.unwrap_err();
        let got = store.call(request.clone()).await.unwrap_err();
        assert!(matches!(got, StoreError::Shop(_)), "{request:?}: {got:?}");
        assert_eq!(got, expected, "{request:?}");
    }
    assert_eq!(
        store.reserve(OrderId(404), Cause::Customer).await,
        Err(StoreError::Shop(ShopError::UnknownOrder(OrderId(404))))
    );
    assert_eq!(server.accepted(), 1);
    assert_eq!(client.idle_connections(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_crashed_store_is_unavailable_within_the_timeout_and_a_restart_is_picked_up() {
    // Proves: once the store host dies (accept loop and connections aborted)
    // a call fails as Unavailable within the request timeout, and after the
    // host restarts on the same port the same client reconnects and succeeds
    // (state kept, as a durable store's would be).
    let request_timeout = Duration::from_millis(500);
    let durable = memory_store(10, Clock::tokio(0));
    let server = start("127.0.0.1:0".parse().unwrap(), Arc::clone(&durable)).await;
    let addr = server.addr;
    let client = Arc::new(remote_store(addr, request_timeout, 2));
    let store: Arc<dyn Store> = client.clone();
    let Placed::Created { order, .. } = store
        .place_order(order_request("k-1", "alice", 1))
        .await
        .unwrap()
    else {
        panic!("created")
    };
    assert_eq!(client.idle_connections(), 1);

    server.stop().await;
    for _ in 0..2 {
        // The outer bound is loose so a slow machine does not fail it; the
        // client's own deadline is what ends the call.
        let outcome = timeout(request_timeout * 2, store.get_order(order))
            .await
            .expect("the client gives up by itself");
        let Err(StoreError::Unavailable(what)) = outcome else {
            panic!("expected Unavailable, got {outcome:?}")
        };
        assert!(what.starts_with(&addr.to_string()), "{what}");
    }
    assert_eq!(
        client.idle_connections(),
        0,
        "dead connections are not pooled"
    );

    let server = start(addr, durable).await;
    let again = store.get_order(order).await.unwrap().expect("state kept");
    assert_eq!(again.id, order);
    assert_eq!(server.accepted(), 1);
    server.stop().await;
}

#[tokio::test]
async fn connections_pooled_before_a_restart_are_discarded_not_used() {
    // Proves: idle connections the crashed host closed are noticed when a
    // call checks one out and are dropped unused, so the first call after a
    // restart succeeds on a fresh connection instead of failing on a dead one.
    let durable = memory_store(10, Clock::tokio(0));
    let server = start("127.0.0.1:0".parse().unwrap(), Arc::clone(&durable)).await;
    let addr = server.addr;
    let client = Arc::new(remote_store(addr, PATIENCE, 4));
    let store: Arc<dyn Store> = client.clone();
    // Four calls polled together each find the pool empty and connect.
    let (a, b, c, d) = tokio::join!(
        store.lease_job(),
        store.lease_job(),
        store.lease_job(),
        store.lease_job()
    );
    for leased in [a, b, c, d] {
        assert_eq!(leased, Ok(None));
    }
    assert_eq!(client.idle_connections(), 4);

    server.stop().await;
    let server = start(addr, durable).await;
    assert_eq!(store.lease_job().await, Ok(None));
    assert_eq!(client.idle_connections(), 1, "the dead ones were dropped");
    assert_eq!(server.accepted(), 1);
    server.stop().await;
}

/// A host that accepts connections and never answers.
async fn black_hole() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            if held.len() < SERVER_CONNECTIONS_MAX {
                held.push(stream);
            }
        }
    });
    (addr, accepted, task)
}

#[tokio::test]
async fn a_silent_store_times_out_and_its_connection_is_not_reused() {
    // Proves: a store that never answers yields Unavailable("… timeout after
    // N ms") no sooner than the timeout and no later than twice it, and the
    // connection that may still carry a late answer is dropped, not pooled.
    let request_timeout = Duration::from_millis(200);
    let (addr, accepted, task) = black_hole().await;
    let client = Arc::new(remote_store(addr, request_timeout, 4));
    let store: Arc<dyn Store> = client.clone();
    for call in 1..=2 {
        let started = Instant::now();
        let outcome = timeout(request_timeout * 2, store.lease_job())
            .await
            .expect("the client gives up by itself");
        let elapsed = started.elapsed();
        assert_eq!(
            outcome,
            Err(StoreError::Unavailable(format!(
                "{addr}: timeout after 200 ms"
            )))
        );
        assert!(elapsed >= request_timeout, "gave up after {elapsed:?}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            call,
            "a fresh connection per call"
        );
        assert_eq!(client.idle_connections(), 0);
    }
    task.abort();
}

#[tokio::test]
async fn a_response_answering_another_request_is_a_protocol_error() {
    // Proves: the client checks the response id; a mismatch is a protocol
    // error and the out-of-step connection is dropped.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let liar = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await.unwrap();
        let mut body = vec![0; usize::try_from(u32::from_be_bytes(header)).unwrap()];
        stream.read_exact(&mut body).await.unwrap();
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let wrong_id = request["id"].as_u64().unwrap() + 1_000;
        let reply = serde_json::to_vec(&serde_json::json!({
            "id": wrong_id,
            "result": { "Ok": { "kind": "done" } }
        }))
        .unwrap();
        let length = u32::try_from(reply.len()).unwrap().to_be_bytes();
        stream.write_all(&length).await.unwrap();
        stream.write_all(&reply).await.unwrap();
        // Keep the stream open until the client has judged the answer.
        let _ = stream.read(&mut [0u8; 1]).await;
    });
    let client = Arc::new(remote_store(addr, PATIENCE, 1));
    let store: Arc<dyn Store> = client.clone();
    let outcome = store.call(Command::LeaseJob).await;
    let Err(StoreError::Protocol(what)) = outcome else {
        panic!("expected a protocol error, got {outcome:?}")
    };
    assert!(what.contains("response id"), "{what}");
    assert_eq!(client.idle_connections(), 0);
    timeout(PATIENCE, liar).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_request_over_the_frame_limit_is_refused_before_sending() {
    // Proves: the client bounds what it sends: a request whose frame would
    // exceed FRAME_BYTES_MAX is a protocol error and no connection is opened.
    let server = start(
        "127.0.0.1:0".parse().unwrap(),
        memory_store(1, Clock::tokio(0)),
    )
    .await;
    let store = remote(server.addr, PATIENCE, 1);
    let huge = Command::RawPutKey {
        key: IdempotencyKey::new("k-huge").unwrap(),
        fingerprint: order_request("k-huge", "alice", 1).fingerprint(),
        response: SavedResponse::PaymentStarted {
            order: OrderId(1),
            intent: IntentId::new("pi_1").unwrap(),
            amount: Cents(1),
            client_secret: "x".repeat(FRAME_BYTES_MAX),
        },
    };
    let outcome = store.call(huge).await;
    assert!(
        matches!(outcome, Err(StoreError::Protocol(_))),
        "{outcome:?}"
    );
    assert_eq!(server.accepted(), 0);
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_length_header_closes_the_connection_with_an_error() {
    // Proves: a peer announcing a frame over FRAME_BYTES_MAX has its
    // connection closed by the server, whose task returns InvalidData.
    let mut server = start(
        "127.0.0.1:0".parse().unwrap(),
        memory_store(1, Clock::tokio(0)),
    )
    .await;
    let mut peer = TcpStream::connect(server.addr).await.unwrap();
    peer.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    peer.write_all(b"{\"id\":1").await.unwrap();

    let error = server.next_outcome().await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    assert!(error.to_string().contains(&u32::MAX.to_string()), "{error}");
    // Closed: the peer reads end-of-stream (or a reset, as the server may
    // close with the peer's unread bytes still in its buffer).
    let read = timeout(PATIENCE, peer.read(&mut [0u8; 16])).await.unwrap();
    assert!(
        matches!(&read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
        "{read:?}"
    );
    server.stop().await;
}

/// A stream that records the largest read buffer anyone offered it: a reader
/// that pre-allocated a frame's announced size would offer that buffer here.
struct ReadRecorder<S> {
    inner: S,
    largest_offer_bytes: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadRecorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.largest_offer_bytes
            .fetch_max(buf.remaining(), Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadRecorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `announced` as a length header followed by `body`, then the
/// peer's end of stream; returns the outcome and the largest read offer.
async fn serve_announcement(announced: u32, body: &[u8]) -> (io::Result<()>, usize) {
    let (mut peer, server_end) = tokio::io::duplex(64 * 1024);
    let largest = Arc::new(AtomicUsize::new(0));
    let recorded = ReadRecorder {
        inner: server_end,
        largest_offer_bytes: Arc::clone(&largest),
    };
    peer.write_all(&announced.to_be_bytes()).await.unwrap();
    peer.write_all(body).await.unwrap();
    peer.shutdown().await.unwrap();
    let outcome = timeout(
        PATIENCE,
        serve_connection(recorded, memory_store(1, Clock::tokio(0))),
    )
    .await
    .expect("the server gives up by itself");
    // The server's end is gone: the peer reads end-of-stream.
    assert_eq!(peer.read(&mut [0u8; 16]).await.unwrap(), 0);
    (outcome, largest.load(Ordering::SeqCst))
}

#[tokio::test]
async fn no_read_buffer_is_sized_by_an_announced_length() {
    // Proves: the server never sizes a read buffer from a length header —
    // neither an oversized one (refused from the header alone) nor a legal
    // one of exactly FRAME_BYTES_MAX whose body never comes: every buffer
    // offered to the stream stays small (≤ 64 KiB).
    let (outcome, largest) = serve_announcement(u32::MAX, b"{\"id\":1}").await;
    assert_eq!(outcome.unwrap_err().kind(), io::ErrorKind::InvalidData);
    assert!(largest <= 64 * 1024, "offered a {largest}-byte buffer");

    let at_limit = u32::try_from(FRAME_BYTES_MAX).unwrap();
    let (outcome, largest) = serve_announcement(at_limit, b"{\"id\":1").await;
    assert_eq!(outcome.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert!(largest <= 64 * 1024, "offered a {largest}-byte buffer");
}

#[tokio::test]
async fn a_clean_close_between_frames_ends_the_connection_without_error() {
    // Proves: serve_connection returns Ok when the client closes between
    // frames, e.g. when a RemoteStore with pooled connections is dropped.
    let mut server = start(
        "127.0.0.1:0".parse().unwrap(),
        memory_store(1, Clock::tokio(0)),
    )
    .await;
    let store = remote(server.addr, PATIENCE, 1);
    store.lease_job().await.unwrap();
    drop(store);
    server.next_outcome().await.unwrap();
    server.stop().await;
}

/// Writes one request frame (`{"id", "request"}` after a big-endian length).
async fn send_request(peer: &mut tokio::io::DuplexStream, id: u64, request: &Command) {
    let body = serde_json::to_vec(&serde_json::json!({ "id": id, "request": request })).unwrap();
    let length = u32::try_from(body.len()).unwrap();
    peer.write_all(&length.to_be_bytes()).await.unwrap();
    peer.write_all(&body).await.unwrap();
}

/// Reads one response frame's JSON.
async fn read_response(peer: &mut tokio::io::DuplexStream) -> serde_json::Value {
    let mut header = [0u8; 4];
    peer.read_exact(&mut header).await.unwrap();
    let mut body = vec![0u8; usize::try_from(u32::from_be_bytes(header)).unwrap()];
    peer.read_exact(&mut body).await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_waiting_lease_ends_with_its_client_and_leases_nothing() {
    // Proves: when the client of a waiting lease closes its connection (its
    // host crashed) the wait ends at once, and a job enqueued afterwards is
    // still there for a live worker — not handed to the dead client and kept
    // from everyone for a visibility timeout.
    let memory = memory_store(3, Clock::tokio(0));
    let (mut peer, server_end) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(serve_connection(server_end, Arc::clone(&memory)));
    send_request(&mut peer, 1, &Command::LeaseJobWait { wait_ms: 20_000 }).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let started = Instant::now();
    drop(peer);
    timeout(Duration::from_millis(1), serving)
        .await
        .expect("the wait ends with its client, not after 20 s")
        .unwrap()
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);

    memory
        .place_order(order_request("k1", "alice", 1))
        .await
        .unwrap();
    let lease = memory
        .lease_job()
        .await
        .unwrap()
        .expect("the job is runnable");
    assert_eq!(lease.attempt, 1, "no one leased it before");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_lease_whose_client_stays_gets_the_job_enqueued_during_the_wait() {
    // Proves the other side: a connected client's wait is not cut short; a
    // job enqueued 100 ms into it is leased to that client.
    let memory = memory_store(3, Clock::tokio(0));
    let (mut peer, server_end) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(serve_connection(server_end, Arc::clone(&memory)));
    send_request(&mut peer, 1, &Command::LeaseJobWait { wait_ms: 20_000 }).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    memory
        .place_order(order_request("k1", "alice", 1))
        .await
        .unwrap();
    let response = read_response(&mut peer).await;
    assert_eq!(response["id"], 1);
    assert_eq!(
        response["result"]["Ok"]["value"]["attempt"], 1,
        "{response}"
    );
    drop(peer);
    serving.await.unwrap().unwrap();
}
