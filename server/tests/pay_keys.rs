//! A `/pay` whose key the store could not release (the store did not answer
//! the `AbandonKey`) is released again in the background, so the customer's
//! retry gets through once the store answers instead of being refused 409
//! until the key's lock lapses; and the background tries stop at half the
//! lock's timeout, so they never free a lock another request took over.

use stampede_core::{Command, Millis, ShopConfig, ShopState};
use stampede_server::key_settle_deadline;
use stampede_server::psp::PspClient;
use stampede_server::store::{MemoryStore, Store, StoreError, StoreFuture};
use stampede_server::{App, Clock, Connector, HttpClient, HttpResponse, ServerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// The memory store, refusing the first `fail` key releases as unreachable
/// and counting every release asked for.
struct FlakyRelease {
    inner: MemoryStore,
    fail: u64,
    releases: AtomicU64,
}

impl Store for FlakyRelease {
    fn call(&self, request: Command) -> StoreFuture<'_> {
        Box::pin(async move {
            if matches!(request, Command::AbandonKey { .. })
                && self.releases.fetch_add(1, Ordering::SeqCst) < self.fail
            {
                return Err(StoreError::Unavailable("the store did not answer".into()));
            }
            self.inner.call(request).await
        })
    }
}

struct Shop {
    store: Arc<FlakyRelease>,
    addr: String,
    http: HttpClient,
}

async fn shop(fail: u64, key_lock_ms: u64) -> Shop {
    let clock = Clock::tokio(1_700_000_000_000);
    let state = ShopState::new(stampede_core::Catalog::new([]), ShopConfig::default());
    let store = Arc::new(FlakyRelease {
        inner: MemoryStore::new(state, clock.clone()),
        fail,
        releases: AtomicU64::new(0),
    });
    let http = HttpClient::new(Connector::tokio(), Duration::from_secs(5));
    let psp = PspClient::new(http.clone(), "127.0.0.1:9".into());
    let config = ServerConfig {
        key_lock_ms,
        ..ServerConfig::default()
    };
    let app = App::new(Arc::clone(&store) as Arc<dyn Store>, psp, clock, config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = stampede_server::router(app);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Shop { store, addr, http }
}

impl Shop {
    /// `POST /v1/orders/ord_1/pay` with key `pay-1`: no such order, so the
    /// request has no effect and its key is released.
    async fn pay(&self) -> HttpResponse {
        let headers = [("idempotency-key", "pay-1".to_string())];
        self.http
            .send(
                &self.addr,
                hyper::Method::POST,
                "/v1/orders/ord_1/pay",
                &headers,
                None,
            )
            .await
            .unwrap()
    }

    fn releases(&self) -> u64 {
        self.store.releases.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_key_the_store_did_not_release_is_released_in_the_background() {
    // Proves: the first release is refused (and the first background try too), so a retry
    // at once is refused 409 (the key still in flight); the next background try frees it,
    // and the retry after that runs (404: no such order), long before the 30 s lock lapses.
    let shop = shop(2, 30_000).await;
    assert_eq!(shop.pay().await.status, 404);
    assert_eq!(shop.releases(), 1);
    let again = shop.pay().await;
    assert_eq!(
        again.status,
        409,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    for _ in 0..100 {
        if shop.releases() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(shop.releases(), 3, "released on the second background try");
    assert_eq!(shop.pay().await.status, 404, "the key was free again");
}

#[tokio::test]
async fn background_releases_stop_at_half_the_lock_timeout() {
    // Proves: with a 400 ms lock the store never answers, and the background tries stop
    // by 200 ms after the request (waits of 50 and 100 ms fit, the next 200 would not):
    // at most three releases in all, and no more later.
    let shop = shop(u64::MAX, 400).await;
    assert_eq!(shop.pay().await.status, 404);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tried = shop.releases();
    // At most the request's own release and two background tries (fewer on a slow machine).
    assert!((1..=3).contains(&tried), "{tried} releases");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(shop.releases(), tried, "no try after the deadline");
}

#[test]
fn the_background_deadline_is_half_the_lock_after_the_request_began() {
    // Proves: the deadline is half the lock after the request began, on both sides of an
    // odd lock (the half rounds down).
    assert_eq!(key_settle_deadline(Millis(1_000), 2_001), Millis(2_000));
    assert_eq!(key_settle_deadline(Millis(1_000), 2_000), Millis(2_000));
    assert_eq!(key_settle_deadline(Millis(1_000), 1_999), Millis(1_999));
}
