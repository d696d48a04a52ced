//! A bare axum hello-world served exactly as `stampede serve` serves the shop
//! (same router type, same `serve_router`), as the ceiling the shop's
//! throughput is compared with and the trivial endpoint that measures the
//! load generator itself. See benches/README.md, "Knowing the instrument".
//!
//! `cargo run --release -p stampede-benches --example hello -- 127.0.0.1:8090`

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hello on http://{}", listener.local_addr()?);
    let router = Router::new().route("/", get(|| async { "hello" }));
    stampede_server::serve_router(listener, router, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
