//! The differential workload shared by the durable stores' tests: random
//! sequences of shop commands, run on the in-memory store (the oracle) and
//! on a store under test, whose every answer must be the oracle's.

#![allow(dead_code)] // Each test file uses its own share of these.

use proptest::prelude::*;
use stampede_core::{
    Catalog, Cause, Cents, Command, CustomerId, EventId, Fingerprint, IdempotencyKey, IntentId,
    IntentStatus, ItemRequest, JobKind, Millis, OrderId, OrderStatus, PaymentIntent, PlaceOrder,
    Placed, Product, Reply, ShopConfig, ShopState, Sku, WebhookEvent, WebhookKind,
};
use stampede_server::Clock;
use stampede_server::store::StoreFuture;
use stampede_server::store::{MemoryStore, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub const SKUS: [&str; 3] = ["hat", "scarf", "glove"];

pub fn state() -> ShopState {
    let catalog = Catalog::new(SKUS.iter().map(|sku| Product {
        sku: Sku::new(*sku).unwrap(),
        name: sku.to_string(),
        price: Cents(1_000),
        max_qty_per_order: 5,
        per_customer_limit: None,
    }));
    let mut shop = ShopState::new(catalog, ShopConfig::default());
    for sku in SKUS {
        shop.stock(&Sku::new(sku).unwrap(), 6, 1).unwrap();
    }
    shop
}

/// A clock the test moves by hand.
pub fn manual_clock() -> (Clock, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(0));
    let read = Arc::clone(&now);
    (
        Clock::from_fn(0, move || Millis(read.load(Ordering::SeqCst))),
        now,
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One step of a random workload. Commands that need an order or a lease
/// take them from the replies so far (the same in both stores, or the test
/// has already failed).
#[derive(Clone, Debug)]
pub enum Action {
    Place {
        customer: u8,
        sku: usize,
        qty: u32,
        key: Option<u8>,
        express: bool,
    },
    /// Lease a job and do its step (`fail`: fail the attempt instead).
    Work {
        fail: bool,
        jitter: u32,
    },
    /// A `payment_intent.succeeded` webhook for an order (`copy` tells
    /// duplicates apart from new events; `stray` 0 is the order's own
    /// intent for its total, 1 another intent for the total, 2 another
    /// intent for 1 cent: money the shop must refund, never keep).
    Pay {
        order: u8,
        copy: u8,
        stray: u8,
    },
    Cancel {
        order: u8,
    },
    Restock {
        sku: usize,
        qty: u64,
    },
    Expire,
    Housekeep,
    Advance {
        ms: u64,
    },
    /// Restart the store under test (drop it and open it again).
    Restart,
    /// Take a `/pay` key for an order and never settle it (a request a crash cut off).
    HoldKey {
        order: u8,
    },
    /// Lease a job and never settle it (a worker that died).
    Abandon,
    /// What a shop reopening its file runs: free the keys in flight, end the leases.
    ReleaseOrphans,
    Read {
        order: u8,
    },
}

pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0u8..4, 0usize..3, 1u32..4, proptest::option::of(0u8..6), any::<bool>()).prop_map(
            |(customer, sku, qty, key, express)| Action::Place { customer, sku, qty, key, express }
        ),
        6 => (any::<bool>(), 0u32..=1000).prop_map(|(f, jitter)| Action::Work { fail: f && jitter % 4 == 0, jitter }),
        2 => (0u8..8, 0u8..2, prop_oneof![3 => Just(0u8), 1 => 1u8..3])
            .prop_map(|(order, copy, stray)| Action::Pay { order, copy, stray }),
        1 => (0u8..8).prop_map(|order| Action::Cancel { order }),
        1 => (0usize..3, 1u64..4).prop_map(|(sku, qty)| Action::Restock { sku, qty }),
        1 => Just(Action::Expire),
        1 => Just(Action::Housekeep),
        3 => (0u64..20_000).prop_map(|ms| Action::Advance { ms }),
        1 => Just(Action::Restart),
        1 => (0u8..8).prop_map(|order| Action::Read { order }),
        1 => (0u8..8).prop_map(|order| Action::HoldKey { order }),
        1 => Just(Action::Abandon),
        1 => Just(Action::ReleaseOrphans),
    ]
}

/// A store under test: one or more replicas of one state.
pub trait Subject {
    /// How many replicas answer commands (each command goes to the next).
    fn replicas(&self) -> usize;
    /// Runs `command` on replica `replica`.
    fn call(&self, replica: usize, command: Command) -> StoreFuture<'_>;
    /// Drops every replica and opens the store again, as restarted processes would.
    fn restart(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>;
    /// Replica `replica`'s whole state (after a read has brought it up to date).
    fn state(&self, replica: usize) -> ShopState;
}

/// The oracle and the store under test, fed the same commands.
pub struct Differential<S> {
    pub memory: MemoryStore,
    pub subject: S,
    pub now: Arc<AtomicU64>,
    pub totals: Vec<(OrderId, Cents)>,
    turn: std::sync::atomic::AtomicUsize,
}

impl<S: Subject> Differential<S> {
    /// `subject` must read `clock`, as the oracle will.
    pub fn new(subject: S, clock: &Clock, now: Arc<AtomicU64>) -> Differential<S> {
        Differential {
            memory: MemoryStore::new(state(), clock.clone()),
            subject,
            now,
            totals: Vec::new(),
            turn: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Runs `command` on the oracle and on the next replica; their answers must be equal.
    pub async fn both(&self, command: Command) -> Result<Reply, StoreError> {
        let expected = self.memory.execute(command.clone());
        let turn = self.turn.fetch_add(1, Ordering::SeqCst) % self.subject.replicas();
        let actual = self.subject.call(turn, command.clone()).await;
        assert_eq!(
            actual, expected,
            "the store (replica {turn}) and memory disagree on {command:?}"
        );
        actual
    }

    pub fn order(&self, n: u8) -> Option<(OrderId, Cents)> {
        self.totals
            .get(usize::from(n) % self.totals.len().max(1))
            .copied()
    }

    /// The oracle's status of the `n`th order placed.
    pub fn status(&self, n: usize) -> OrderStatus {
        let (id, _) = self.totals[n];
        self.memory.snapshot().order(id).unwrap().status()
    }

    pub async fn restart(&mut self) {
        self.subject.restart().await;
    }

    /// Every replica's whole state equals the oracle's, and so do their audits.
    pub async fn assert_same(&self) {
        let memory = self.memory.snapshot();
        for replica in 0..self.subject.replicas() {
            // A read brings the replica up to date with the others.
            self.subject
                .call(
                    replica,
                    Command::ReadFeed {
                        since: None,
                        max: 0,
                    },
                )
                .await
                .unwrap();
            let state = self.subject.state(replica);
            assert!(
                state == memory,
                "replica {replica}'s state drifted from memory's"
            );
        }
        self.both(Command::Audit).await.unwrap();
        self.both(Command::Stats).await.unwrap();
        self.both(Command::Catalog).await.unwrap();
    }

    pub async fn step(&mut self, action: Action) {
        match action {
            Action::Place {
                customer,
                sku,
                qty,
                key,
                express,
            } => {
                let request = PlaceOrder {
                    key: key.map(|k| IdempotencyKey::new(format!("key-{k}")).unwrap()),
                    customer: CustomerId::new(format!("c{customer}")).unwrap(),
                    items: vec![ItemRequest {
                        sku: Sku::new(SKUS[sku]).unwrap(),
                        qty,
                    }],
                    express,
                };
                if let Ok(Reply::Placed(Placed::Created { order, .. })) =
                    self.both(Command::PlaceOrder { request }).await
                {
                    let total = Cents(1_000 * u64::from(qty));
                    self.totals.push((order, total));
                }
            }
            Action::Work { fail, jitter } => {
                let Ok(Reply::Lease(Some(lease))) = self.both(Command::LeaseJob).await else {
                    return;
                };
                if fail {
                    self.both(Command::FailJob {
                        lease,
                        error: "test failure".into(),
                        jitter_permille: jitter,
                    })
                    .await
                    .ok();
                    return;
                }
                let cause = Cause::Worker { job: lease.job };
                let order = lease.order;
                let step = match lease.kind {
                    JobKind::Reserve => Some(Command::Reserve { order, cause }),
                    JobKind::CreateIntent => {
                        let amount = self
                            .totals
                            .iter()
                            .find(|(id, _)| *id == order)
                            .map_or(Cents(0), |(_, total)| *total);
                        Some(Command::RecordIntent {
                            intent: PaymentIntent {
                                id: IntentId::new(format!("pi_{}", order.0)).unwrap(),
                                order,
                                amount,
                                status: IntentStatus::RequiresPayment,
                                refunded: Cents(0),
                            },
                            cause,
                        })
                    }
                    JobKind::Finalize => Some(Command::Finalize { order, cause }),
                    _ => None,
                };
                if let Some(step) = step {
                    self.both(step).await.ok();
                }
                self.both(Command::AckJob { lease }).await.ok();
            }
            Action::Pay { order, copy, stray } => {
                let Some((order, total)) = self.order(order) else {
                    return;
                };
                let (intent, amount) = match stray {
                    0 => (format!("pi_{}", order.0), total),
                    1 => (format!("pi_{}_b", order.0), total),
                    _ => (format!("pi_{}_c", order.0), Cents(1)),
                };
                let event = WebhookEvent {
                    id: EventId::new(format!("evt_{}_{stray}_{copy}", order.0)).unwrap(),
                    kind: WebhookKind::PaymentSucceeded,
                    intent: IntentId::new(intent).unwrap(),
                    order,
                    amount,
                    created: Millis(self.now.load(Ordering::SeqCst)),
                };
                self.both(Command::ReceiveWebhook { event }).await.ok();
            }
            Action::Cancel { order } => {
                if let Some((order, _)) = self.order(order) {
                    self.both(Command::Cancel { order }).await.ok();
                }
            }
            Action::Restock { sku, qty } => {
                let sku = Sku::new(SKUS[sku]).unwrap();
                self.both(Command::Restock { sku, qty }).await.ok();
            }
            Action::Expire => {
                self.both(Command::ExpireReservations { max: 5 }).await.ok();
            }
            Action::Housekeep => {
                self.both(Command::Housekeep { max: 5 }).await.ok();
            }
            Action::Advance { ms } => {
                self.now.fetch_add(ms, Ordering::SeqCst);
            }
            Action::Restart => self.restart().await,
            Action::HoldKey { order } => {
                let key = IdempotencyKey::new(format!("pay-{order}")).unwrap();
                let fingerprint = Fingerprint::of(format!("pay {order}").as_bytes());
                self.both(Command::BeginKey { key, fingerprint }).await.ok();
            }
            Action::Abandon => {
                self.both(Command::LeaseJob).await.ok();
            }
            Action::ReleaseOrphans => {
                self.both(Command::ReleaseKeysInFlight).await.ok();
                self.both(Command::ReleaseLeases).await.ok();
            }
            Action::Read { order } => {
                if let Some((order, _)) = self.order(order) {
                    self.both(Command::GetOrder { order }).await.ok();
                    // The watcher hub's batched read: this order, an unknown one, and the
                    // first order placed.
                    let first = self.order(0).map_or(order, |(o, _)| o);
                    let orders = vec![order, OrderId(u64::MAX), first];
                    self.both(Command::GetOrders { orders }).await.ok();
                }
                self.both(Command::ReadFeed {
                    since: None,
                    max: 10,
                })
                .await
                .ok();
            }
        }
    }
}
