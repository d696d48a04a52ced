//! The HTTP client's connections: one per request by default; with
//! `keeping_alive`, one kept connection reused for the next request to the
//! same address, never after the server said it closes it or has closed it,
//! and requests counted apart from connections.

use bytes::Bytes;
use hyper::Method;
use stampede_server::{Connector, HttpClient};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(5);

/// An axum server answering `POST /echo` with the body and `GET /close`
/// with `Connection: close`; its address.
async fn server() -> String {
    let router = axum::Router::new()
        .route(
            "/echo",
            axum::routing::post(|body: Bytes| async move { body }),
        )
        .route(
            "/close",
            axum::routing::get(|| async { ([(hyper::header::CONNECTION, "close")], "bye") }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A client over real TCP counting the connections it opens.
fn client(connections: &Arc<AtomicU64>) -> HttpClient {
    let count = Arc::clone(connections);
    let connector = Connector::new(move |addr: String| {
        count.fetch_add(1, Ordering::SeqCst);
        async move { tokio::net::TcpStream::connect(addr).await }
    });
    HttpClient::new(connector, TIMEOUT)
}

async fn echo(client: &HttpClient, addr: &str, body: &'static str) {
    let response = client
        .send(addr, Method::POST, "/echo", &[], Some(Bytes::from(body)))
        .await
        .expect("answered");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, body.as_bytes());
}

#[tokio::test]
async fn without_keep_alive_every_request_opens_a_connection() {
    // Proves: the default client opens one connection per request.
    let addr = server().await;
    let connections = Arc::new(AtomicU64::new(0));
    let plain = client(&connections);
    for body in ["a", "b", "c"] {
        echo(&plain, &addr, body).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_kept_connection_serves_the_next_requests_to_its_address() {
    // Proves: with keep-alive, requests one after the other to one address share one
    // connection, also from the client's clones; a request to another address opens its own
    // (and becomes the kept one); another keep-alive client keeps its own connection.
    let (a, b) = (server().await, server().await);
    let connections = Arc::new(AtomicU64::new(0));
    let base = client(&connections);
    let tab = base.keeping_alive();
    echo(&tab, &a, "1").await;
    echo(&tab, &a, "2").await;
    echo(&tab.clone(), &a, "3").await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one connection for three"
    );
    echo(&tab, &b, "4").await;
    assert_eq!(connections.load(Ordering::SeqCst), 2, "another address");
    echo(&tab, &b, "5").await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "b's connection is kept now"
    );
    echo(&base.keeping_alive(), &b, "6").await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "another tab, its own"
    );
}

#[tokio::test]
async fn a_connection_the_server_closes_is_not_reused() {
    // Proves: after an answer saying `Connection: close` the next request opens a new
    // connection, and it is answered.
    let addr = server().await;
    let connections = Arc::new(AtomicU64::new(0));
    let tab = client(&connections).keeping_alive();
    let bye = tab.get(&addr, "/close").await.expect("answered");
    assert_eq!(bye.status, 200);
    echo(&tab, &addr, "after").await;
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// A server that answers one request per connection and drops the connection `linger`
/// later, without `Connection: close`; its address.
async fn one_answer_then_drop(linger: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // At once means without yielding first: the close goes out with the answer.
                if !linger.is_zero() {
                    tokio::time::sleep(linger).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_kept_connection_the_server_has_dropped_gives_way_to_a_new_one() {
    // Proves: when the server drops a connection after answering (no `Connection: close`),
    // once the client has kept it, the next request still gets its answer, over a new
    // connection.
    let addr = one_answer_then_drop(Duration::from_millis(20)).await;
    let connections = Arc::new(AtomicU64::new(0));
    let tab = client(&connections).keeping_alive();
    for _ in 0..2 {
        let answer = tab.get(&addr, "/").await.expect("answered");
        assert_eq!(answer.body, "ok".as_bytes());
        // The server drops the connection meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn back_to_back_requests_survive_a_server_that_drops_each_connection() {
    // Proves: requests sent back to back, each right after the last answer, while the server
    // drops every connection once it has answered: each is answered over a new connection (the
    // kept one is found dead), one connection per request. (The resend of a request a dead
    // connection handed back is a race this single-threaded test does not reach.)
    let addr = one_answer_then_drop(Duration::ZERO).await;
    let connections = Arc::new(AtomicU64::new(0));
    let tab = client(&connections).keeping_alive();
    for _ in 0..20 {
        let answer = tab.get(&addr, "/").await.expect("answered");
        assert_eq!(answer.body, "ok".as_bytes());
    }
    assert_eq!(connections.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn requests_are_counted_apart_from_connections() {
    // Proves: a counting client counts every request it sends, with keep-alive too, where
    // connections would undercount them.
    let addr = server().await;
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let tab = client(&connections)
        .counting_requests(Arc::clone(&requests))
        .keeping_alive();
    for body in ["a", "b", "c", "d"] {
        echo(&tab, &addr, body).await;
    }
    assert_eq!(requests.load(Ordering::SeqCst), 4);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
