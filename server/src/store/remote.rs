//! The remote store: the store port spoken over a framed byte stream, so the
//! store can run as a host of its own that crashes and restarts.
//!
//! **Wire format.** Each frame is a 4-byte big-endian body length followed by
//! a JSON body of at most [`FRAME_BYTES_MAX`]. A client sends
//! `{"id": u64, "request": Command}` and the server answers
//! `{"id": u64, "result": {"Ok": Reply} | {"Err": StoreError}}`.
//! A longer announced length is a protocol error: the reader refuses it from
//! the header alone, and even a legal body is read into a buffer that grows
//! with the bytes that actually arrive, never pre-sized to what was announced.
//!
//! **Server.** [`serve_connection`] answers the requests of one connection in
//! order. The embedder owns the listener (tokio's or turmoil's), spawns one
//! task per accepted connection, and bounds how many it keeps.
//!
//! **Client.** [`RemoteStore`] implements [`Store`]: each call borrows an idle
//! connection or opens one, sends one request and reads one response, all
//! within [`RemoteConfig::request_timeout`]. A call that times out, hits an IO
//! error or sees the connection close returns [`StoreError::Unavailable`]:
//! the operation may or may not have happened, and the caller decides what to
//! do (the client never retries). Only a connection whose exchange completed
//! goes back to the pool, so no pooled connection has a stray response in it.
//!
//! **Waiting leases.** A [`Command::LeaseJobWait`] is clamped to half
//! the request timeout ([`RemoteStore::max_lease_wait`]), leaving the other
//! half for getting a connection and the round trip, so a wait never reads
//! as a timeout. The server answers a connection's requests in order, so a
//! waiting lease holds its connection for the wait; at most
//! `max_connections / 2` do at once, leaving the rest for other calls. A
//! caller that finds every wait slot taken waits here for one, for no longer
//! than its own wait, then asks without waiting: one call per wait either way.
//!
//! Simplifications, stated openly: one request in flight per connection (no
//! pipelining); the server has no idle timeout (a peer that stalls mid-frame
//! holds its task until the stream closes), so the embedder's connection
//! bound is what limits that; an idle pooled connection is checked for a
//! close that already arrived before reuse, but a close still in flight is
//! only found by the next call on it, which then fails as `Unavailable`.

use super::{Command, Reply, Store, StoreError, StoreFuture};
use crate::http::{BoxIo, Connector};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

/// Largest frame body either side sends or accepts, in bytes.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Bytes of the big-endian length that precedes each frame body.
const HEADER_BYTES: usize = 4;

/// Read buffer per connection. A body buffer starts at most this large and
/// grows only as bytes arrive.
const READ_BUFFER_BYTES: usize = 8 * 1024;

#[derive(Serialize, Deserialize)]
struct RequestFrame {
    id: u64,
    request: Command,
}

#[derive(Serialize, Deserialize)]
struct ResponseFrame {
    id: u64,
    result: Result<Reply, StoreError>,
}

/// Serialises `value` as one frame: header and body in one buffer, so one
/// write carries it. Refuses (`InvalidData`) a body over [`FRAME_BYTES_MAX`].
fn encode_frame<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut frame = vec![0; HEADER_BYTES];
    serde_json::to_writer(&mut frame, value).map_err(io::Error::other)?;
    let body_bytes = frame.len() - HEADER_BYTES;
    if body_bytes > FRAME_BYTES_MAX {
        return Err(too_large(body_bytes));
    }
    let length = u32::try_from(body_bytes).expect("FRAME_BYTES_MAX fits in u32");
    frame[..HEADER_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

fn too_large(bytes: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("frame of {bytes} bytes exceeds the limit of {FRAME_BYTES_MAX} bytes"),
    )
}

/// Reads one frame body. `Ok(None)` is a clean end of stream (the peer closed
/// between frames); a close inside a frame is `UnexpectedEof`; an announced
/// length over [`FRAME_BYTES_MAX`] is `InvalidData`, refused before any of
/// the body is read or any room for it is allocated.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER_BYTES];
    let mut filled = 0;
    while filled < HEADER_BYTES {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    let announced = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if announced > FRAME_BYTES_MAX {
        return Err(too_large(announced));
    }
    let mut body = Vec::with_capacity(announced.min(READ_BUFFER_BYTES));
    let limit = u64::try_from(announced).expect("usize fits in u64");
    reader.take(limit).read_to_end(&mut body).await?;
    if body.len() != announced {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(body))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    serde_json::from_slice(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serves one connection: reads request frames in order, runs each on
/// `store`, writes each response frame before reading the next request.
///
/// A [`Command::LeaseJobWait`] is dropped, leasing nothing, when the peer
/// closes the connection during the wait (its client crashed or gave up).
///
/// Returns `Ok(())` when the peer closes the stream between frames or during
/// a waiting lease, and an
/// error on an IO error, a close inside a frame, an oversized frame or a body
/// that is not a request (the stream is then out of step and is dropped). A
/// response too large for one frame is answered with
/// [`StoreError::Protocol`] instead; the operation itself did run.
pub async fn serve_connection<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    store: Arc<dyn Store>,
) -> io::Result<()> {
    let mut stream = BufReader::with_capacity(READ_BUFFER_BYTES, io);
    while let Some(body) = read_frame(&mut stream).await? {
        let RequestFrame { id, request } = decode(&body)?;
        drop(body);
        let result = if matches!(request, Command::LeaseJobWait { .. }) {
            // A waiting lease ends with its client: a lease handed to a
            // client that has gone would keep the job from every live worker
            // for a whole visibility timeout.
            tokio::select! {
                biased;
                result = store.call(request) => result,
                () = peer_gone(&mut stream) => return Ok(()),
            }
        } else {
            store.call(request).await
        };
        let frame = match encode_frame(&ResponseFrame { id, result }) {
            Ok(frame) => frame,
            Err(too_big) => encode_frame(&ResponseFrame {
                id,
                result: Err(StoreError::Protocol(format!("response refused: {too_big}"))),
            })?,
        };
        stream.write_all(&frame).await?;
        stream.flush().await?;
    }
    Ok(())
}

/// Resolves once the peer has closed or reset the connection. Bytes that
/// arrive instead (a request sent while another is in flight, which a
/// [`RemoteStore`] never does) stay buffered for the next read, and this
/// never resolves: the request in flight is answered first.
async fn peer_gone<R: AsyncBufRead + Unpin>(reader: &mut R) {
    match reader.fill_buf().await {
        Ok(buffered) if !buffered.is_empty() => std::future::pending().await,
        Ok(_) | Err(_) => {}
    }
}

/// How a [`RemoteStore`] talks to its store host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The longest one call may take, all included: waiting for a free
    /// connection, connecting, sending and reading the response.
    pub request_timeout: Duration,
    /// Most connections open at once (idle or in use); also the most calls
    /// in flight at once.
    pub max_connections: usize,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            request_timeout: Duration::from_secs(1),
            max_connections: 8,
        }
    }
}

/// One open connection to the store host.
struct Connection {
    stream: BufReader<BoxIo>,
}

impl Connection {
    /// True unless the peer already closed, reset or sent something unasked:
    /// a poll that would block is the only healthy answer for an idle stream.
    fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            Pin::new(&mut self.stream).poll_fill_buf(&mut cx),
            Poll::Pending
        )
    }
}

/// Why one exchange on a connection failed, before it becomes a [`StoreError`].
enum Failure {
    Unavailable(String),
    Protocol(String),
}

/// A [`Store`] on another host, reached over streams from a [`Connector`].
///
/// Bounds: at most `max_connections` calls run at once (a call holds a
/// semaphore permit from start to end), and a call opens a connection only
/// when none is idle, so at most `max_connections` connections are ever open
/// and the idle pool never holds more.
pub struct RemoteStore {
    connector: Connector,
    addr: String,
    config: RemoteConfig,
    calls: Semaphore,
    waits: Semaphore,
    idle: Mutex<Vec<Connection>>,
    next_id: AtomicU64,
}

impl RemoteStore {
    /// A client of the store host at `addr` (`host:port`). Opens nothing
    /// until the first call.
    ///
    /// # Panics
    ///
    /// If `config.max_connections` is 0 or above [`Semaphore::MAX_PERMITS`],
    /// or `config.request_timeout` is zero: no call could ever succeed.
    pub fn new(connector: Connector, addr: String, config: RemoteConfig) -> RemoteStore {
        assert!(
            (1..=Semaphore::MAX_PERMITS).contains(&config.max_connections),
            "max_connections must be in 1..={}, got {}",
            Semaphore::MAX_PERMITS,
            config.max_connections
        );
        assert!(
            !config.request_timeout.is_zero(),
            "request_timeout must be positive"
        );
        RemoteStore {
            connector,
            addr,
            calls: Semaphore::new(config.max_connections),
            waits: Semaphore::new(config.max_connections / 2),
            idle: Mutex::new(Vec::with_capacity(config.max_connections)),
            config,
            next_id: AtomicU64::new(1),
        }
    }

    /// The store host's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The configuration.
    pub fn config(&self) -> RemoteConfig {
        self.config
    }

    /// Connections open and idle in the pool right now.
    pub fn idle_connections(&self) -> usize {
        self.lock_idle().len()
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The pool is a plain list; a panic elsewhere cannot leave it torn.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection that is still open, if any.
    /// Closed ones met on the way are dropped.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.lock_idle();
        while let Some(mut connection) = idle.pop() {
            if connection.is_reusable() {
                return Some(connection);
            }
        }
        None
    }

    fn put_idle(&self, connection: Connection) {
        let mut idle = self.lock_idle();
        // The permit argument keeps the pool within bounds; this check keeps
        // that true even if the argument is ever broken.
        if idle.len() < self.config.max_connections {
            idle.push(connection);
        }
    }

    fn timeout_ms(&self) -> u128 {
        self.config.request_timeout.as_millis()
    }

    async fn call_remote(&self, request: Command) -> Result<Reply, StoreError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(&RequestFrame { id, request })
            .map_err(|e| StoreError::Protocol(format!("request not sent: {e}")))?;
        let Ok(permit) = timeout_at(deadline, self.calls.acquire()).await else {
            return Err(self.unavailable(format!(
                "no connection free within {} ms ({} in use)",
                self.timeout_ms(),
                self.config.max_connections
            )));
        };
        let _permit = permit.expect("the semaphore is never closed");
        let mut connection = match self.take_idle() {
            Some(connection) => connection,
            None => self.connect(deadline).await?,
        };
        match timeout_at(deadline, exchange(&mut connection, id, &frame)).await {
            Ok(Ok(result)) => {
                self.put_idle(connection);
                result
            }
            // The connection is dropped here: its stream is out of step or dead.
            Ok(Err(Failure::Unavailable(what))) => Err(self.unavailable(what)),
            Ok(Err(Failure::Protocol(what))) => Err(StoreError::Protocol(what)),
            Err(_elapsed) => {
                Err(self.unavailable(format!("timeout after {} ms", self.timeout_ms())))
            }
        }
    }

    async fn connect(&self, deadline: Instant) -> Result<Connection, StoreError> {
        match timeout_at(deadline, self.connector.connect(&self.addr)).await {
            Ok(Ok(io)) => Ok(Connection {
                stream: BufReader::with_capacity(READ_BUFFER_BYTES, io),
            }),
            Ok(Err(e)) => Err(self.unavailable(format!("connect: {e}"))),
            Err(_elapsed) => {
                Err(self.unavailable(format!("connect: timeout after {} ms", self.timeout_ms())))
            }
        }
    }

    fn unavailable(&self, what: String) -> StoreError {
        StoreError::Unavailable(format!("{}: {what}", self.addr))
    }

    /// The longest a waiting lease waits on this client: half the request timeout.
    pub fn max_lease_wait(&self) -> Duration {
        self.config.request_timeout / 2
    }

    /// A waiting lease, clamped and holding a wait slot (see the module docs).
    async fn lease_job_wait(&self, wait_ms: u64) -> Result<Reply, StoreError> {
        let wait = Duration::from_millis(wait_ms).min(self.max_lease_wait());
        let deadline = Instant::now() + wait;
        let Ok(Ok(_slot)) = timeout_at(deadline, self.waits.acquire()).await else {
            return self.call_remote(Command::LeaseJob).await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let wait_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        self.call_remote(Command::LeaseJobWait { wait_ms }).await
    }
}

/// Sends one request frame and reads its response.
async fn exchange(
    connection: &mut Connection,
    id: u64,
    frame: &[u8],
) -> Result<Result<Reply, StoreError>, Failure> {
    let stream = &mut connection.stream;
    let sent = async {
        stream.write_all(frame).await?;
        stream.flush().await
    };
    sent.await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let body = match read_frame(stream).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            return Err(Failure::Unavailable(
                "connection closed by the store".into(),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(Failure::Protocol(e.to_string()));
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(Failure::Unavailable(
                "connection closed by the store mid-response".into(),
            ));
        }
        Err(e) => return Err(Failure::Unavailable(e.to_string())),
    };
    let response: ResponseFrame = decode(&body).map_err(|e| Failure::Protocol(e.to_string()))?;
    if response.id != id {
        return Err(Failure::Protocol(format!(
            "response id {} answers no request (expected {id})",
            response.id
        )));
    }
    Ok(response.result)
}

impl Store for RemoteStore {
    fn call(&self, request: Command) -> StoreFuture<'_> {
        match request {
            Command::LeaseJobWait { wait_ms } => Box::pin(self.lease_job_wait(wait_ms)),
            request => Box::pin(self.call_remote(request)),
        }
    }
}

impl fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStore")
            .field("addr", &self.addr)
            .field("config", &self.config)
            .field("idle_connections", &self.idle_connections())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_eof_is_clean_only_between_frames() {
        // Proves: a frame reads back as written; EOF before a header is a
        // clean end, EOF inside a header or body is an error.
        let frame = encode_frame(&RequestFrame {
            id: 7,
            request: Command::LeaseJob,
        })
        .unwrap();
        let mut whole = &frame[..];
        let body = read_frame(&mut whole).await.unwrap().unwrap();
        let back: RequestFrame = decode(&body).unwrap();
        assert_eq!((back.id, back.request), (7, Command::LeaseJob));
        assert!(read_frame(&mut whole).await.unwrap().is_none());

        for cut in [2, HEADER_BYTES + 1] {
            let mut short = &frame[..cut];
            let err = read_frame(&mut short).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn the_limit_is_inclusive_on_read() {
        // Proves: a length of exactly FRAME_BYTES_MAX is legal (then fails
        // only for want of bytes); one more is refused from the header.
        let at_limit = u32::try_from(FRAME_BYTES_MAX).unwrap().to_be_bytes();
        let mut legal = &at_limit[..];
        let err = read_frame(&mut legal).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let over = (u32::try_from(FRAME_BYTES_MAX).unwrap() + 1).to_be_bytes();
        let mut refused = &over[..];
        let err = read_frame(&mut refused).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
