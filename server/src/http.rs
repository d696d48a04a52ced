//! A small HTTP/1.1 client over any byte stream. The shop calls the PSP and
//! the PSP calls the shop's webhook with it, over tokio sockets for real or
//! turmoil's simulated ones, chosen by the [`Connector`].
//!
//! Simplification: one connection per request (no pool). It keeps request
//! interleavings easy to reason about and costs a handshake the simulator
//! does not charge for; the load generator uses its own client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest response body the client reads.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

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
}

impl HttpClient {
    /// A client connecting with `connector`, giving up on a request after `timeout`.
    pub fn new(connector: Connector, timeout: Duration) -> HttpClient {
        HttpClient {
            connector,
            timeout,
            max_response_bytes: MAX_RESPONSE_BYTES,
        }
    }

    /// The same client accepting response bodies up to `limit` bytes
    /// (default [`MAX_RESPONSE_BYTES`]), e.g. for a whole-shop audit.
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
        let protocol = |detail: String| HttpError::Protocol {
            addr: addr.to_string(),
            detail,
        };
        let stream = self
            .connector
            .connect(addr)
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        // The connection future drives the socket; it ends when the exchange does.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, addr);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| protocol(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.max_response_bytes)
            .collect()
            .await
            .map_err(|e| protocol(e.to_string()))?
            .to_bytes();
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
