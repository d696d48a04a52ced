//! turmoil's simulated TCP, plugged into the server's abstractions: an axum
//! `Listener` so the very same router serves inside the simulation, and a
//! `Connector` for the HTTP client and the remote store.

use stampede_server::Connector;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A turmoil listener that axum can serve on.
pub struct SimListener(pub turmoil::net::TcpListener);

impl SimListener {
    /// Binds `0.0.0.0:port` on the current host.
    pub async fn bind(port: u16) -> io::Result<SimListener> {
        turmoil::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .map(SimListener)
    }
}

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                // Transient (e.g. a peer that vanished mid-handshake): back off and keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Opens turmoil streams to `host:port`.
pub fn connector() -> Connector {
    Connector::new(|addr: String| async move { turmoil::net::TcpStream::connect(addr).await })
}

/// Like [`connector`], counting every connection opened. An HTTP client
/// without keep-alive opens one connection per request, so for one this
/// counts its HTTP requests.
pub fn counting_connector(count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Connector {
    Connector::new(move |addr: String| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move { turmoil::net::TcpStream::connect(addr).await }
    })
}
