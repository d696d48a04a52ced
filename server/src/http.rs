//! A small HTTP/1.1 client over any byte stream. The shop calls the PSP and
//! the PSP calls the shop's webhook with it, over tokio sockets for real or
//! turmoil's simulated ones, chosen by the [`Connector`].
//!
//! By default one connection per request (no pool): it keeps request
//! interleavings easy to reason about. A client made with
//! [`HttpClient::keeping_alive`] keeps one idle connection, as one browser
//! tab does, and sends its next request to the same address over it (the
//! simulator's shoppers: an order, then its events stream). The load
//! generator uses its own client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest response body the client reads.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Bytes the client reserves for each read from a connection. hyper's
/// default starts every connection at 8 KiB; the shop's responses and events
/// are a few hundred bytes, and a simulated flash sale holds ten thousand
/// connections open at once (every shopper's events stream), so the default
/// was 80 MB of mostly untouched buffers. A longer response is read in more
/// reads, not refused.
const READ_BUF_BYTES: usize = 2048;

/// A bidirectional byte stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed stream.
pub type BoxIo = Box<dyn Io>;

type ConnectFn =
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>> + Send + Sync;

/// Opens streams to `host:port` addresses: tokio's TCP, or the simulator's.
#[derive(Clone)]
pub struct Connector(Arc<ConnectFn>);

impl Connector {
    /// Connects with `f`.
    pub fn new<F, Fut, S>(f: F) -> Connector
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<S>> + Send + 'static,
        S: Io + 'static,
    {
        Connector(Arc::new(move |addr| {
            let fut = f(addr);
            Box::pin(async move { fut.await.map(|s| Box::new(s) as BoxIo) })
        }))
    }

    /// Real TCP via tokio.
    pub fn tokio() -> Connector {
        Connector::new(|addr: String| async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }

    /// Opens a stream to `addr` (`host:port`).
    pub async fn connect(&self, addr: &str) -> io::Result<BoxIo> {
        (self.0)(addr.to_string()).await
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

/// Why a request got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Could not connect.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// No response within the timeout.
    #[error("no response from {addr} within {timeout_ms} ms")]
    Timeout {
        /// Where.
        addr: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// The HTTP exchange failed (connection reset, malformed response, body too big).
    #[error("http exchange with {addr} failed: {detail}")]
    Protocol {
        /// Where.
        addr: String,
        /// What.
        detail: String,
    },
}

/// A response with its body read.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl HttpResponse {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// An HTTP/1.1 client with a per-request timeout.
#[derive(Clone, Debug)]
pub struct HttpClient {
    connector: Connector,
    timeout: Duration,
    max_response_bytes: usize,
    /// With keep-alive: the one idle connection, shared by this client's clones.
    idle: Option<Arc<Mutex<Option<Idle>>>>,
    /// Counts every request sent, if set.
    requests: Option<Arc<AtomicU64>>,
}

/// A connection whose last exchange is over, ready for the next request to `addr`.
struct Idle {
    addr: String,
    sender: SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle").field("addr", &self.addr).finish()
    }
}

/// A connection in use: sends requests, and goes back idle when asked.
struct InUse {
    sender: SendRequest<Full<Bytes>>,
}

impl HttpClient {
    /// A client connecting with `connector`, giving up on a request after `timeout`.
    pub fn new(connector: Connector, timeout: Duration) -> HttpClient {
        HttpClient {
            connector,
            timeout,
            max_response_bytes: RESPONSE_BYTES_MAX,
            idle: None,
            requests: None,
        }
    }

    /// The same client adding one to `count` for every request it sends
    /// (with keep-alive, connections no longer count requests).
    pub fn counting_requests(mut self, count: Arc<AtomicU64>) -> HttpClient {
        self.requests = Some(count);
        self
    }

    /// The same client keeping its connection open between requests: after
    /// a response has been read whole, its connection stays idle, and the
    /// next request to the same address goes over it if the server has not
    /// closed it (else over a new one). One idle connection, shared by the
    /// returned client's clones and not by this client's; a request made
    /// while it is in use opens another; an events stream keeps its
    /// connection to the end.
    pub fn keeping_alive(&self) -> HttpClient {
        HttpClient {
            idle: Some(Arc::new(Mutex::new(None))),
            ..self.clone()
        }
    }

    /// The idle connection to `addr`, if there is one the server still keeps.
    fn take_idle(&self, addr: &str) -> Option<SendRequest<Full<Bytes>>> {
        let slot = self.idle.as_ref()?;
        let idle = slot.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        (idle.addr == addr && idle.sender.is_ready()).then_some(idle.sender)
    }

    /// Keeps `in_use` as the idle connection to `addr` (with keep-alive, and
    /// unless it is closed: hyper closes a connection whose answer said
    /// `Connection: close`, and [`HttpClient::take_idle`] checks again).
    fn release(&self, addr: &str, in_use: InUse) {
        let Some(slot) = self.idle.as_ref() else {
            return;
        };
        if in_use.sender.is_closed() {
            return;
        }
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Idle {
            addr: addr.to_string(),
            sender: in_use.sender,
        });
    }

    /// The same client accepting response bodies up to `limit` bytes
    /// (default [`RESPONSE_BYTES_MAX`]), e.g. for a whole-shop audit.
    pub fn with_max_response_bytes(mut self, limit: usize) -> HttpClient {
        self.max_response_bytes = limit;
        self
    }

    /// Sends one request to `addr` (`host:port`) and reads the whole response.
    pub async fn send(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<HttpResponse, HttpError> {
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        match tokio::time::timeout(
            self.timeout,
            self.exchange(addr, method, path, headers, body),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout {
                addr: addr.to_string(),
                timeout_ms,
            }),
        }
    }

    /// POSTs `value` as JSON.
    pub async fn post_json<T: serde::Serialize>(
        &self,
        addr: &str,
        path: &str,
        headers: &[(&str, String)],
        value: &T,
    ) -> Result<HttpResponse, HttpError> {
        let body = serde_json::to_vec(value).expect("request types serialize");
        let mut all = vec![("content-type", "application/json".to_string())];
        all.extend(headers.iter().cloned());
        self.send(addr, Method::POST, path, &all, Some(Bytes::from(body)))
            .await
    }

    /// GETs `path`.
    pub async fn get(&self, addr: &str, path: &str) -> Result<HttpResponse, HttpError> {
        self.send(addr, Method::GET, path, &[], None).await
    }

    async fn exchange(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<HttpResponse, HttpError> {
        let (parts, body, in_use) = self.start(addr, method, path, headers, body).await?;
        let body = Limited::new(body, self.max_response_bytes)
            .collect()
            .await
            .map_err(|e| protocol(addr, e.to_string()))?
            .to_bytes();
        self.release(addr, in_use);
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Opens a connection to `addr`, its driver spawned on the current runtime.
    async fn connect(&self, addr: &str) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let stream = self
            .connector
            .connect(addr)
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .read_buf_exact_size(Some(READ_BUF_BYTES))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(addr, e.to_string()))?;
        // The connection future drives the socket; it ends when the last sender is gone.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends the request over the idle connection to `addr` or a new one,
    /// and waits for the response head.
    async fn start(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<(hyper::http::response::Parts, Incoming, InUse), HttpError> {
        if let Some(count) = &self.requests {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let reused = self.take_idle(addr);
        let fresh = reused.is_none();
        let mut sender = match reused {
            Some(sender) => sender,
            None => self.connect(addr).await?,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, addr);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| protocol(addr, e.to_string()))?;
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut unsent) => match unsent.take_message() {
                // A kept connection the server closed before taking the request (it never
                // saw it): the request goes again, once, over a new connection.
                Some(request) if !fresh => {
                    sender = self.connect(addr).await?;
                    sender
                        .send_request(request)
                        .await
                        .map_err(|e| protocol(addr, e.to_string()))?
                }
                _ => return Err(protocol(addr, unsent.into_error().to_string())),
            },
        };
        let (parts, body) = response.into_parts();
        Ok((parts, body, InUse { sender }))
    }

    /// Sends `GET path` and returns as soon as the response head is in, with
    /// the body to read as it arrives (e.g. server-sent events). The client
    /// timeout bounds connecting and the head, not the body; each read of
    /// the body has its own idle bound, and the body as a whole is bounded by
    /// the client's response size limit.
    pub async fn open(
        &self,
        addr: &str,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<HttpStream, HttpError> {
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let started = tokio::time::timeout(
            self.timeout,
            self.start(addr, Method::GET, path, headers, None),
        )
        .await;
        // The stream keeps its connection: it is not handed back.
        let (parts, body, _in_use) = match started {
            Ok(result) => result?,
            Err(_) => {
                return Err(HttpError::Timeout {
                    addr: addr.to_string(),
                    timeout_ms,
                });
            }
        };
        Ok(HttpStream {
            status: parts.status,
            headers: parts.headers,
            addr: addr.to_string(),
            body,
            pending: Vec::new(),
            read: 0,
            max_total: self.max_response_bytes,
            ended: false,
        })
    }
}

fn protocol(addr: &str, detail: String) -> HttpError {
    HttpError::Protocol {
        addr: addr.to_string(),
        detail,
    }
}

/// Largest server-sent event [`HttpStream::next_event`] accepts, bytes.
pub const EVENT_BYTES_MAX: usize = 64 * 1024;

/// One server-sent event (`event:` and the `data:` lines joined by `\n`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when the server sent none).
    pub event: String,
    /// The data.
    pub data: String,
}

/// A response whose body is read as it arrives ([`HttpClient::open`]).
pub struct HttpStream {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: hyper::HeaderMap,
    addr: String,
    body: Incoming,
    /// Bytes received and not yet handed out as an event.
    pending: Vec<u8>,
    /// Body bytes received so far.
    read: usize,
    max_total: usize,
    ended: bool,
}

impl std::fmt::Debug for HttpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStream")
            .field("addr", &self.addr)
            .field("status", &self.status)
            .field("read", &self.read)
            .finish()
    }
}

impl HttpStream {
    /// The next piece of the body, waiting at most `idle` for it; `None` at
    /// its end. An error when the body goes over the client's size limit.
    pub async fn chunk(&mut self, idle: Duration) -> Result<Option<Bytes>, HttpError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let frame = match tokio::time::timeout(idle, self.body.frame()).await {
                Err(_) => {
                    return Err(HttpError::Timeout {
                        addr: self.addr.clone(),
                        timeout_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                Ok(None) => {
                    self.ended = true;
                    return Ok(None);
                }
                Ok(Some(frame)) => frame.map_err(|e| protocol(&self.addr, e.to_string()))?,
            };
            // Trailers and other non-data frames carry no body bytes.
            if let Ok(data) = frame.into_data() {
                self.read = self.read.saturating_add(data.len());
                if self.read > self.max_total {
                    return Err(protocol(
                        &self.addr,
                        format!("body over {} bytes", self.max_total),
                    ));
                }
                return Ok(Some(data));
            }
        }
    }

    /// The rest of the body, each read waiting at most `idle` (for an
    /// answer that is not a stream, e.g. a problem document).
    pub async fn rest(mut self, idle: Duration) -> Result<Bytes, HttpError> {
        let mut all = std::mem::take(&mut self.pending);
        while let Some(data) = self.chunk(idle).await? {
            all.extend_from_slice(&data);
        }
        Ok(Bytes::from(all))
    }

    /// The next server-sent event, skipping comments (keep-alives) and
    /// events without data; `None` when the body ended. Each read waits at
    /// most `idle`; an event over [`EVENT_BYTES_MAX`] is an error. Carriage
    /// returns are dropped, so CRLF line ends read as LF.
    pub async fn next_event(&mut self, idle: Duration) -> Result<Option<SseEvent>, HttpError> {
        let too_big = |addr: &str| protocol(addr, format!("event over {EVENT_BYTES_MAX} bytes"));
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                if end + 2 > EVENT_BYTES_MAX {
                    return Err(too_big(&self.addr));
                }
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                match parse_event(&block) {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            if self.pending.len() > EVENT_BYTES_MAX {
                return Err(too_big(&self.addr));
            }
            match self.chunk(idle).await? {
                Some(data) => self
                    .pending
                    .extend(data.iter().copied().filter(|b| *b != b'\r')),
                None => return Ok(None),
            }
        }
    }
}

/// One event block (lines up to a blank line) as an event, if it has data.
fn parse_event(block: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(block);
    let mut event = SseEvent::default();
    let mut has_data = false;
    for line in text.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_string(),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    if event.event.is_empty() {
        event.event = "message".to_string();
    }
    has_data.then_some(event)
}
