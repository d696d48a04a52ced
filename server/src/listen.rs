//! Serving a router on a TCP listener over HTTP/1.1 and cleartext HTTP/2.
//!
//! **Design decision: both protocols on one port, HTTP/2 by prior
//! knowledge.** Each connection's first bytes say which it speaks (hyper's
//! automatic builder reads the HTTP/2 preface), so every HTTP/1.1 client
//! keeps working and a client that knows the server speaks HTTP/2 — the
//! load generator against the shop it starts — carries thousands of
//! requests in flight, events streams included, over a few connections
//! instead of a descriptor each. Each connection carries at most
//! [`HTTP2_STREAMS_PER_CONNECTION_MAX`] streams at once.
//!
//! **Clients cannot hold the server by opening connections**
//! ([`ConnectionLimits`]): at most so many connections are served at once;
//! one that sends no request head in time (nothing after connecting, a head
//! dripped byte by byte, an idle keep-alive, an HTTP/2 connection with no
//! stream open) is closed; a body that does not arrive in time fails its
//! request; one that does not take its answer (its writes make no progress
//! for [`ConnectionLimits::write_timeout`]: a client that never reads) is
//! closed. The listen backlog is [`LISTEN_BACKLOG`], so a burst of
//! connections waits in the kernel rather than being dropped to a retry.
//!
//! The simulator does not use this: its servers run on turmoil's listener
//! through `axum::serve`, HTTP/1.1 only.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most HTTP/2 streams one connection may have open at once (each a request
/// in flight or an events stream being followed).
pub const HTTP2_STREAMS_PER_CONNECTION_MAX: u32 = 65_536;

/// The kernel's queue of connections not yet accepted (the system's
/// `somaxconn` caps it): a burst of this many connects waits its turn instead
/// of overflowing into the client's SYN retry (1 s, then 3 s).
pub const LISTEN_BACKLOG: u32 = 4_096;

/// A listener on `addr` with [`LISTEN_BACKLOG`] (tokio's own `bind` listens
/// with 128), reusing the address as `bind` does.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Pause after a failed accept (for instance out of descriptors) before the
/// next, ms: a tight loop would only burn the CPU the open connections need.
const ACCEPT_RETRY_MS: u64 = 50;

/// What one server lets its clients hold, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections served at once. Past it the server stops accepting
    /// (new clients wait in the kernel's backlog) until one closes, so
    /// clients that only open connections cannot take the descriptors the
    /// server needs for its own (store, PSP) and for everyone else.
    pub max_connections: usize,
    /// Longest a connection may take to send the head of a request: its
    /// first bytes after connecting, each request's head, and the wait of an
    /// idle keep-alive connection for its next request. Past it the
    /// connection is closed. An HTTP/2 connection with no stream open for
    /// as long is closed too (gracefully: GOAWAY, then its end).
    pub header_read_timeout: Duration,
    /// Longest a request's body may take to arrive once its head has; past
    /// it the request is refused (400 `unreadable-body`).
    pub body_read_timeout: Duration,
    /// Longest the connection's writes may make no progress (the client does
    /// not read what it is sent); past it the connection is closed, and its
    /// requests and streams with it.
    pub write_timeout: Duration,
    /// Longest a stopping server waits for its connections to finish what
    /// they are doing (a request in flight, an events stream) before it
    /// cuts them off.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    /// 10,000 connections (under the 20,000 descriptors a usual hard limit
    /// allows, with room for the server's own); 30 s for a head, as hyper's
    /// own default; 30 s for a body; 30 s for a write; 10 s for a stopping
    /// server's clients.
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` (HTTP/1.1 and cleartext HTTP/2) with the
/// default [`ConnectionLimits`] until `shutdown` resolves, then stops
/// accepting, asks every connection to finish gracefully and returns once
/// all have closed — and every task it ran for them has ended, so the
/// router's state is no longer held by any — cutting off those still open
/// after [`ConnectionLimits::shutdown_grace`].
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_router_with(listener, router, shutdown, ConnectionLimits::default()).await
}

/// [`serve_router`] with `limits`.
pub async fn serve_router_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ConnectionLimits,
) -> io::Result<()> {
    let body_timeout = limits.body_read_timeout;
    let router = router.layer(axum::middleware::from_fn(move |request, next| {
        body_deadline(request, next, body_timeout)
    }));
    // Dropping `stop_rx` asks the connections to finish.
    let (stop_tx, stop_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx);
    });
    let clients = ClientTasks::default();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            biased;
            () = stop_tx.closed() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            () = stop_tx.closed() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let connection = Connection {
                    router: router.clone(),
                    stop_tx: stop_tx.clone(),
                    slot,
                    limits,
                    clients: clients.clone(),
                };
                clients.spawn(connection.serve(stream));
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
    drop(listener);
    drop(router);
    clients.finish(limits.shutdown_grace).await;
    Ok(())
}

/// Every task a server runs for its clients: one per connection, and one
/// per HTTP/2 stream (hyper spawns those through this, as its executor).
/// Each holds a clone of the router — of the application — until it ends,
/// so a server has let go of its application only once all have ended.
#[derive(Clone, Default)]
struct ClientTasks {
    tracker: TaskTracker,
    /// Cancelled when the shutdown grace has passed: the tasks still running
    /// (a client that keeps an events stream open, or will not read its
    /// answer) are stopped where they are.
    cut: CancellationToken,
}

impl ClientTasks {
    fn spawn<F>(&self, task: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let cut = self.cut.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                biased;
                () = cut.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Waits for every task to end, cutting off those still running after
    /// `grace`. Call once no more will be spawned but by the running ones.
    async fn finish(self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.tracker.len(),
                ?grace,
                "clients still connected after the shutdown grace; cut off"
            );
            self.cut.cancel();
            self.tracker.wait().await;
        }
    }
}

impl<F> hyper::rt::Executor<F> for ClientTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        self.spawn(task);
    }
}

/// The first bytes of an HTTP/2 connection (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Pause between looks at a connection that has sent part of the HTTP/2
/// preface and not the rest, ms.
const PREFACE_LOOK_MS: u64 = 5;

/// Which protocol a connection speaks, from its first bytes (not consumed):
/// HTTP/2 by prior knowledge if they are the preface, HTTP/1.1 otherwise.
/// `None` if it closed first.
async fn protocol(
    stream: &TcpStream,
    clients: &ClientTasks,
) -> io::Result<Option<(Builder<ClientTasks>, Protocol)>> {
    let mut first = [0u8; HTTP2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 {
            return Ok(None);
        }
        let builder = Builder::new(clients.clone());
        if first[..n] != HTTP2_PREFACE[..n] {
            return Ok(Some((builder.http1_only(), Protocol::Http1)));
        }
        if n == HTTP2_PREFACE.len() {
            return Ok(Some((builder.http2_only(), Protocol::Http2)));
        }
        tokio::time::sleep(Duration::from_millis(PREFACE_LOOK_MS)).await;
    }
}

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// The streams an HTTP/2 connection has open: each from its request's
/// arrival until its response body has been sent or dropped (an events
/// stream stays open while it is followed).
#[derive(Debug, Default)]
struct OpenStreams {
    count: AtomicUsize,
    changed: Notify,
}

/// One open stream of [`OpenStreams`]; closes it when dropped.
struct StreamGuard(Arc<OpenStreams>);

impl OpenStreams {
    fn open(self: &Arc<Self>) -> StreamGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        StreamGuard(Arc::clone(self))
    }

    /// Resolves once no stream has been open for `idle` in a row.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.count.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            tokio::select! {
                biased;
                () = changed => {}
                () = tokio::time::sleep(idle) => return,
            }
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// The router as an HTTP/2 connection's service: each request holds a
/// [`StreamGuard`] until its response body is done.
#[derive(Clone)]
struct Counted {
    router: Router,
    streams: Arc<OpenStreams>,
}

impl tower_service::Service<hyper::Request<hyper::body::Incoming>> for Counted {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let guard = self.streams.open();
        let answer = tower_service::Service::call(&mut self.router, request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                Body::new(Guarded {
                    body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// A response body that keeps its stream counted as open until it is dropped.
struct Guarded {
    body: Body,
    _guard: StreamGuard,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// One accepted connection and what it holds of the server.
struct Connection {
    router: Router,
    stop_tx: watch::Sender<()>,
    /// Its place among [`ConnectionLimits::max_connections`], given back when it ends.
    slot: OwnedSemaphorePermit,
    limits: ConnectionLimits,
    /// Where hyper spawns the connection's HTTP/2 streams.
    clients: ClientTasks,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let first = tokio::select! {
            biased;
            () = self.stop_tx.closed() => return,
            first = tokio::time::timeout(self.limits.header_read_timeout, protocol(&stream, &self.clients)) => first,
        };
        let (mut builder, protocol) = match first {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None) | Err(_)) => return,
            Err(_) => {
                tracing::debug!("a connection sent no request in time; closed");
                return;
            }
        };
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(HTTP2_STREAMS_PER_CONNECTION_MAX);
        let streams = Arc::new(OpenStreams::default());
        let service = TowerToHyperService::new(Counted {
            router: self.router,
            streams: Arc::clone(&streams),
        });
        let stream = WriteDeadline::new(stream, self.limits.write_timeout);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let idle_after = self.limits.header_read_timeout;
        let mut stopping = false;
        loop {
            tokio::select! {
                biased;
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    break;
                }
                () = self.stop_tx.closed(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                // HTTP/1.1's idle wait is hyper's head timeout; HTTP/2 has none.
                () = streams.idle_for(idle_after), if !stopping && protocol == Protocol::Http2 => {
                    tracing::debug!("an HTTP/2 connection had no stream open in time; closing");
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
        drop(self.slot);
    }
}

/// A connection whose writes fail once they have made no progress for
/// `timeout`: a client that stops reading fills the kernel's buffers, every
/// write then waits, and after `timeout` of that the connection ends instead
/// of holding its descriptor, its slot and its streams for ever. Any write
/// that moves bytes starts the wait again.
struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, timeout: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// `polled` of a write: progress resets the wait; waiting past the
    /// timeout is an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took nothing of its answer for {} ms",
                    timeout.as_millis()
                ),
            )));
        }
        Poll::Pending
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

/// Gives the request's body `timeout` to arrive in full.
async fn body_deadline(request: Request, next: Next, timeout: Duration) -> Response {
    next.run(request.map(|body| Body::new(Deadline::new(body, timeout))))
        .await
}

/// A request body that fails if it has not ended `timeout` after it was
/// first found waiting (a body that is there at once never starts a timer).
struct Deadline {
    body: Body,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    fn new(body: Body, timeout: Duration) -> Deadline {
        Deadline {
            body,
            timeout,
            sleep: None,
        }
    }
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use std::sync::Arc;
    use tokio::sync::{Barrier, oneshot};

    /// A server whose `/wait` answers only once `together` requests are
    /// waiting at once, and whose `/hello` answers at once.
    async fn server(
        together: usize,
    ) -> (
        std::net::SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let barrier = Arc::new(Barrier::new(together));
        let router = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/wait",
                get(move || {
                    let barrier = Arc::clone(&barrier);
                    async move {
                        barrier.wait().await;
                        "together"
                    }
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve_router(listener, router, async move {
            let _ = stopped.await;
        }));
        (addr, stop, served)
    }

    async fn body(response: hyper::Response<hyper::body::Incoming>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn get_request(addr: std::net::SocketAddr, path: &str) -> hyper::Request<Empty<Bytes>> {
        hyper::Request::get(format!("http://{addr}{path}"))
            .body(Empty::new())
            .unwrap()
    }

    /// A server with `limits` whose `/hello` answers at once, whose `/echo`
    /// answers the body it read and whose `/slow` answers after a second.
    async fn limited(
        limits: ConnectionLimits,
    ) -> (
        std::net::SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let router = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/echo",
                axum::routing::post(|body: Bytes| async move { body }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    "slow"
                }),
            )
            .route("/big", get(|| async { vec![b'x'; 1 << 20] }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve_router_with(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            limits,
        ));
        (addr, stop, served)
    }

    /// Reads what `stream` sends until it closes (or `within` passes: a panic).
    async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut got))
            .await
            .expect("the server closed the connection in time")
            .expect("a clean read");
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn a_client_that_never_reads_its_answers_is_closed_after_the_write_timeout() {
        // Proves (found from outside: 50 connections that pipelined requests and never read
        // were all still open 75 s later, and enough of them locked every client out): a
        // connection whose writes make no progress for the write timeout is closed, giving back
        // its slot — here the only one, so the next client is served only once it is closed.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, stop, served) = limited(ConnectionLimits {
            max_connections: 1,
            write_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        })
        .await;
        let mut hog = TcpStream::connect(addr).await.unwrap();
        // 64 answers of 1 MiB, far more than the kernel's buffers hold unread.
        let pipelined = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
        hog.write_all(pipelined.as_bytes()).await.unwrap();
        let mut next = TcpStream::connect(addr).await.unwrap();
        next.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), next.read_to_end(&mut answer))
            .await
            .expect("the next client is served once the hog is closed")
            .unwrap();
        assert!(String::from_utf8_lossy(&answer).ends_with("hello"));
        drop(hog);
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_request_head_in_time_is_closed() {
        // Proves: a connection that sends nothing, one that drips part of a head, and an idle
        // keep-alive connection after its answer are each closed once the head timeout passes
        // — and not before it.
        use tokio::io::AsyncWriteExt;
        let timeout = Duration::from_millis(400);
        let (addr, stop, served) = limited(ConnectionLimits {
            header_read_timeout: timeout,
            ..ConnectionLimits::default()
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut partial = TcpStream::connect(addr).await.unwrap();
        partial
            .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            read_to_close(&mut silent, Duration::from_secs(10)).await,
            ""
        );
        assert_eq!(
            read_to_close(&mut partial, Duration::from_secs(10)).await,
            ""
        );
        let answered = read_to_close(&mut idle, Duration::from_secs(10)).await;
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        assert!(answered.ends_with("hello"), "{answered}");
        assert!(
            started.elapsed() >= timeout * 3 / 4,
            "closed early: {:?}",
            started.elapsed()
        );
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }

    /// An HTTP/2 connection to `addr` (prior knowledge) and the task driving it.
    async fn http2(
        addr: std::net::SocketAddr,
    ) -> (
        hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
        tokio::task::JoinHandle<()>,
    ) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
        let driven = tokio::spawn(async move {
            let _ = connection.await;
        });
        (sender, driven)
    }

    #[tokio::test]
    async fn an_http2_connection_with_no_stream_open_is_closed_after_the_head_timeout() {
        // Proves: an HTTP/2 connection that opens no stream is closed once the head timeout
        // passes and not before it (so clients cannot hold the connection limit with silent
        // HTTP/2 connections); one whose stream stays open past the timeout (an answer that
        // takes 1 s against 400 ms) is kept until the answer is sent, then closed once idle.
        let timeout = Duration::from_millis(400);
        let (addr, stop, served) = limited(ConnectionLimits {
            header_read_timeout: timeout,
            ..ConnectionLimits::default()
        })
        .await;
        let started = tokio::time::Instant::now();
        let (_silent, driven) = http2(addr).await;
        tokio::time::timeout(Duration::from_secs(10), driven)
            .await
            .expect("the silent connection was closed")
            .unwrap();
        assert!(
            started.elapsed() >= timeout * 3 / 4,
            "closed early: {:?}",
            started.elapsed()
        );

        let (mut sender, driven) = http2(addr).await;
        let response = sender
            .send_request(get_request(addr, "/slow"))
            .await
            .expect("the slow stream kept its connection open");
        assert_eq!(body(response).await, "slow");
        assert!(!driven.is_finished(), "closed as soon as its stream ended");
        tokio::time::timeout(Duration::from_secs(10), driven)
            .await
            .expect("closed once idle")
            .unwrap();
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn past_the_connection_limit_a_new_client_waits_until_a_connection_closes() {
        // Proves: with two connections held open, a third client's request is not served (the
        // server does not accept past its limit) until one of the two closes; then it is.
        use tokio::io::AsyncWriteExt;
        let (addr, stop, served) = limited(ConnectionLimits {
            max_connections: 2,
            ..ConnectionLimits::default()
        })
        .await;
        let held = TcpStream::connect(addr).await.unwrap();
        let mut also_held = TcpStream::connect(addr).await.unwrap();
        also_held
            .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        waiting
            .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(500), async {
            use tokio::io::AsyncReadExt;
            waiting.read(&mut first).await
        })
        .await;
        assert!(early.is_err(), "answered past the limit: {early:?}");
        drop(held);
        let answered = read_to_close(&mut waiting, Duration::from_secs(10)).await;
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        drop(also_held);
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_fails_its_request() {
        // Proves: a request whose body stops short is refused once the body timeout passes
        // (not held open by its sender), and a body that arrives whole is read as ever.
        use tokio::io::AsyncWriteExt;
        let (addr, stop, served) = limited(ConnectionLimits {
            body_read_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        })
        .await;
        let mut short = TcpStream::connect(addr).await.unwrap();
        short
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nab")
            .await
            .unwrap();
        let refused = read_to_close(&mut short, Duration::from_secs(10)).await;
        assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
        let mut whole = TcpStream::connect(addr).await.unwrap();
        whole
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789")
            .await
            .unwrap();
        let echoed = read_to_close(&mut whole, Duration::from_secs(10)).await;
        assert!(echoed.starts_with("HTTP/1.1 200"), "{echoed}");
        assert!(echoed.ends_with("0123456789"), "{echoed}");
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn one_http2_connection_carries_more_streams_at_once_than_hypers_default() {
        // Proves: a cleartext HTTP/2 client (prior knowledge) is served, and
        // one connection holds 1,000 requests waiting at once — hyper's
        // default would hold 200 and leave the rest queued forever here.
        let together = 1_000;
        let (addr, stop, served) = server(together).await;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let mut waiting = Vec::new();
        for _ in 0..together {
            let mut sender = sender.clone();
            let request = get_request(addr, "/wait");
            waiting.push(tokio::spawn(async move {
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.version(), hyper::Version::HTTP_2);
                body(response).await
            }));
        }
        let all = async {
            for answer in waiting {
                assert_eq!(answer.await.unwrap(), "together");
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every stream of the one connection answered");
        drop(sender);
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn http1_clients_are_served_on_the_same_port_and_shutdown_waits_for_them() {
        // Proves: an HTTP/1.1 client is answered on the port that speaks
        // HTTP/2, and after the shutdown signal the server stops accepting
        // and returns once its open connection has closed.
        let (addr, stop, served) = server(1).await;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        let response = sender
            .send_request(get_request(addr, "/hello"))
            .await
            .unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_11);
        assert_eq!(body(response).await, "hello");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the server returned once its connection closed")
            .unwrap()
            .unwrap();
        connection.await.unwrap().unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "nothing listens after shutdown"
        );
    }

    /// Serves `/slow` (answers after 300 ms) and `/never` (never answers)
    /// with `grace`, over a router whose state only it holds: the returned
    /// `Weak` dies once the server has let go of every clone of it.
    async fn stopping(
        grace: Duration,
    ) -> (
        std::net::SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
        std::sync::Weak<()>,
    ) {
        let state = Arc::new(());
        let held = Arc::downgrade(&state);
        let router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow"
                }),
            )
            .route("/never", get(std::future::pending::<&'static str>))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = ConnectionLimits {
            shutdown_grace: grace,
            ..ConnectionLimits::default()
        };
        let served = tokio::spawn(serve_router_with(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            limits,
        ));
        (addr, stop, served, held)
    }

    /// Sends GET `path` on a new connection (HTTP/2 if `h2`), returning its answer's body.
    fn fetch(
        addr: std::net::SocketAddr,
        path: &'static str,
        h2: bool,
    ) -> tokio::task::JoinHandle<Result<String, String>> {
        tokio::spawn(async move {
            let stream = TokioIo::new(TcpStream::connect(addr).await.unwrap());
            let response = if h2 {
                let (mut sender, connection) = hyper::client::conn::http2::handshake(
                    hyper_util::rt::TokioExecutor::new(),
                    stream,
                )
                .await
                .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                sender.send_request(get_request(addr, path)).await
            } else {
                let (mut sender, connection) = hyper::client::conn::http1::handshake(stream)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                sender.send_request(get_request(addr, path)).await
            };
            let response = response.map_err(|e| e.to_string())?;
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&bytes.to_bytes()).into_owned())
        })
    }

    #[tokio::test]
    async fn a_stopping_server_finishes_requests_in_flight_and_then_lets_go_of_its_state() {
        // Proves: requests in flight when the shutdown signal comes (HTTP/1.1, and HTTP/2
        // whose streams hyper runs as tasks of their own) are answered in full; the server
        // returns once they are — well inside its grace — and by then no task it ran still
        // holds the router's state (what lets a shop's store close and its file be reopened).
        let grace = Duration::from_secs(20);
        let (addr, stop, served, held) = stopping(grace).await;
        let h1 = fetch(addr, "/slow", false);
        let h2 = fetch(addr, "/slow", true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = tokio::time::Instant::now();
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
        assert!(started.elapsed() < grace / 2, "{:?}", started.elapsed());
        assert_eq!(held.strong_count(), 0, "the state is still held");
        assert_eq!(h1.await.unwrap(), Ok("slow".to_string()));
        assert_eq!(h2.await.unwrap(), Ok("slow".to_string()));
    }

    #[tokio::test]
    async fn a_request_that_outlasts_the_shutdown_grace_is_cut_off_when_it_passes() {
        // Proves: a request that never finishes (over HTTP/1.1 or an HTTP/2 stream) holds a
        // stopping server for its grace and not longer: then it is cut off, the server
        // returns, and nothing holds the router's state.
        let grace = Duration::from_millis(600);
        let (addr, stop, served, held) = stopping(grace).await;
        let h1 = fetch(addr, "/never", false);
        let h2 = fetch(addr, "/never", true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = tokio::time::Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the server returned after its grace")
            .unwrap()
            .unwrap();
        let took = started.elapsed();
        assert!(took >= grace, "returned before its grace: {took:?}");
        assert_eq!(held.strong_count(), 0, "the state is still held");
        assert!(h1.await.unwrap().is_err(), "cut off");
        assert!(h2.await.unwrap().is_err(), "cut off");
    }
}
