//! turmoil's simulated TCP, plugged into the server's abstractions: an axum
//! `Listener` so the very same router serves inside the simulation, and a
//! `Connector` for the HTTP client and the remote store.
//!
//! Every stream a host opens or accepts is a [`SimStream`] numbered by the
//! host's [`HostStreams`], so that a crash closes the host's streams in the
//! order they were opened (see [`HostStreams`]).

use stampede_server::Connector;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::net::TcpStream;

/// The simulated streams one host has open, numbered in the order it opened
/// or accepted them.
///
/// turmoil crashes a host by dropping its tokio runtime, which drops the
/// host's tasks in an order that follows tokio's task numbers — and tokio
/// numbers tasks with one counter for the whole process. Each stream dropped
/// sends its peer a FIN or a RST whose latency is drawn from the world's one
/// random generator, so without care a crash's outcome would depend on what
/// else the process ran before (a sweep's earlier runs, the other thread's
/// runs). Instead, a stream that ends while its host crashes is parked, and
/// the last of the host's streams to end closes them all in the order they
/// were opened: a crash is a function of the plan alone.
#[derive(Debug, Default)]
pub struct HostStreams(Mutex<Streams>);

#[derive(Debug, Default)]
struct Streams {
    /// The number the next stream gets.
    next: u64,
    /// Streams opened and not yet closed (parked ones included).
    open: usize,
    /// The host is crashing: streams that end are parked, not closed.
    crashing: bool,
    /// Streams that ended during the crash, by number.
    parked: BTreeMap<u64, TcpStream>,
}

impl HostStreams {
    /// A host's streams, none open yet.
    pub fn new() -> Arc<HostStreams> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, Streams> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers `stream`, the host's newest.
    pub fn track(self: &Arc<Self>, stream: TcpStream) -> SimStream {
        let mut streams = self.lock();
        let number = streams.next;
        streams.next += 1;
        streams.open += 1;
        SimStream {
            number,
            stream: Some(stream),
            host: Arc::clone(self),
        }
    }

    /// Call right before turmoil crashes the host: from now until the last
    /// stream ends, ending streams are parked.
    pub fn crash_begins(&self) {
        let mut streams = self.lock();
        streams.crashing = streams.open > 0;
    }

    /// Call right after turmoil crashed the host: closes, in order, any
    /// parked stream whose last sibling outlived the host's runtime (so was
    /// not closed as the crash went) and ends the crash. Returns how many
    /// there were; turmoil drops every task of a crashed host, so none is
    /// expected.
    pub fn crash_ends(&self) -> usize {
        let parked = {
            let mut streams = self.lock();
            streams.crashing = false;
            std::mem::take(&mut streams.parked)
        };
        let late = parked.len();
        close_in_order(parked);
        late
    }
}

/// Drops `streams` lowest number first (each sends its peer a FIN or a RST).
fn close_in_order(streams: BTreeMap<u64, TcpStream>) {
    for (_, stream) in streams {
        drop(stream);
    }
}

/// A turmoil stream numbered by its host's [`HostStreams`].
#[derive(Debug)]
pub struct SimStream {
    number: u64,
    /// `None` only once dropped.
    stream: Option<TcpStream>,
    host: Arc<HostStreams>,
}

impl SimStream {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("a stream is open until dropped"),
        )
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let mut streams = self.host.lock();
        streams.open -= 1;
        if !streams.crashing {
            drop(streams);
            drop(stream);
            return;
        }
        streams.parked.insert(self.number, stream);
        if streams.open > 0 {
            return;
        }
        streams.crashing = false;
        let parked = std::mem::take(&mut streams.parked);
        drop(streams);
        close_in_order(parked);
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_shutdown(cx)
    }
}

/// A turmoil listener that axum can serve on; its streams are numbered by
/// the host's [`HostStreams`].
pub struct SimListener {
    listener: turmoil::net::TcpListener,
    streams: Arc<HostStreams>,
}

impl SimListener {
    /// Binds `0.0.0.0:port` on the current host, numbering what it accepts
    /// in `streams`.
    pub async fn bind_on(port: u16, streams: &Arc<HostStreams>) -> io::Result<SimListener> {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
        Ok(SimListener {
            listener,
            streams: Arc::clone(streams),
        })
    }

    /// Binds `0.0.0.0:port` on the current host, for a host that never crashes.
    pub async fn bind(port: u16) -> io::Result<SimListener> {
        SimListener::bind_on(port, &HostStreams::new()).await
    }

    /// The next connection, numbered; a transient failure (a peer that
    /// vanished mid-handshake) is retried after a millisecond.
    pub async fn accept(&mut self) -> (SimStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => return (self.streams.track(stream), peer),
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
}

impl axum::serve::Listener for SimListener {
    type Io = SimStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        SimListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Opens turmoil streams to `host:port`, numbered in `streams`.
pub fn connector_on(streams: &Arc<HostStreams>) -> Connector {
    tracking_connector(None, streams)
}

/// Opens turmoil streams to `host:port`, for a host that never crashes.
pub fn connector() -> Connector {
    connector_on(&HostStreams::new())
}

/// Like [`connector_on`], counting every connection opened. An HTTP client
/// without keep-alive opens one connection per request, so for one this
/// counts its HTTP requests.
pub fn counting_connector_on(count: Arc<AtomicU64>, streams: &Arc<HostStreams>) -> Connector {
    tracking_connector(Some(count), streams)
}

/// [`counting_connector_on`] for a host that never crashes.
pub fn counting_connector(count: Arc<AtomicU64>) -> Connector {
    counting_connector_on(count, &HostStreams::new())
}

fn tracking_connector(count: Option<Arc<AtomicU64>>, streams: &Arc<HostStreams>) -> Connector {
    let streams = Arc::clone(streams);
    Connector::new(move |addr: String| {
        if let Some(count) = &count {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let streams = Arc::clone(&streams);
        async move { Ok(streams.track(TcpStream::connect(addr).await?)) }
    })
}
