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
//! The simulator does not use this: its servers run on turmoil's listener
//! through `axum::serve`, HTTP/1.1 only.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Most HTTP/2 streams one connection may have open at once (each a request
/// in flight or an events stream being followed).
pub const HTTP2_STREAMS_PER_CONNECTION_MAX: u32 = 65_536;

/// Pause after a failed accept (for instance out of descriptors) before the
/// next, ms: a tight loop would only burn the CPU the open connections need.
const ACCEPT_RETRY_MS: u64 = 50;

/// Serves `router` on `listener` (HTTP/1.1 and cleartext HTTP/2) until
/// `shutdown` resolves, then stops accepting, asks every connection to
/// finish gracefully and returns once all have closed.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Dropping `stop_rx` asks the connections to finish; each holds a clone
    // of `closed_rx` until it has.
    let (stop_tx, stop_rx) = watch::channel(());
    let (closed_tx, closed_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx);
    });
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop_tx.closed() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                spawn_connection(stream, router.clone(), &stop_tx, closed_rx.clone());
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
    drop(listener);
    drop(closed_rx);
    closed_tx.closed().await;
    Ok(())
}

fn spawn_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    stop_tx: &watch::Sender<()>,
    closed_rx: watch::Receiver<()>,
) {
    let stop_tx = stop_tx.clone();
    tokio::spawn(async move {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http2()
            .max_concurrent_streams(HTTP2_STREAMS_PER_CONNECTION_MAX);
        let service = TowerToHyperService::new(router);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
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
                () = stop_tx.closed(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
        drop(closed_rx);
    });
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

    #[tokio::test]
    async fn one_http2_connection_carries_more_streams_at_once_than_hypers_default() {
        // Proves: a cleartext HTTP/2 client (prior knowledge) is served, and
        // one connection holds 1,000 requests waiting at once — hyper's
        // default would hold 200 and leave the rest queued forever here.
        let together = 1_000;
        let (addr, stop, served) = server(together).await;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
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
}
