//! Recording the history of a simulated run. Every host pushes into one
//! shared [`Recorder`]; turmoil runs hosts one at a time, so the order of
//! pushes is the order things happened, and is the same on every run.

use stampede_core::{ClientOp, ClientReply, EventKind, Fingerprint, History, JobEvent, Millis};
use stampede_server::store::{Command, Reply, Store, StoreFuture};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The current simulated time (0 outside a simulation).
pub fn sim_now() -> Millis {
    Millis(turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

#[derive(Default)]
struct Inner {
    history: History,
    next_req: u64,
}

/// The shared history of one run.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Inner>>);

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event at the current sim time.
    pub fn push(&self, kind: EventKind) {
        self.push_at(sim_now(), kind);
    }

    /// Appends an event at `at`.
    pub fn push_at(&self, at: Millis, kind: EventKind) {
        self.lock().history.push(at, kind);
    }

    /// Records a client request; returns its id for the response.
    pub fn request(&self, op: ClientOp, fingerprint: Option<Fingerprint>) -> u64 {
        let mut inner = self.lock();
        inner.next_req += 1;
        let req = inner.next_req;
        inner.history.push(
            sim_now(),
            EventKind::Request {
                req,
                op,
                fingerprint,
            },
        );
        req
    }

    /// Records what the client was told.
    pub fn response(&self, req: u64, reply: ClientReply) {
        self.push(EventKind::Response { req, reply });
    }

    /// The history so far.
    pub fn history(&self) -> History {
        self.lock().history.clone()
    }

    /// Events so far.
    pub fn len(&self) -> usize {
        self.lock().history.len()
    }

    /// No events yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A store that records every transition and job event it performs, in the
/// order the store performed them.
pub struct RecordingStore {
    inner: Arc<dyn Store>,
    recorder: Recorder,
    calls: AtomicU64,
}

impl RecordingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, recorder: Recorder) -> RecordingStore {
        RecordingStore {
            inner,
            recorder,
            calls: AtomicU64::new(0),
        }
    }

    /// Store calls made through this store so far (answered or not).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn record(&self, request: &Command, response: &Reply) {
        use stampede_core::Step;
        let transitions: &[stampede_core::Transition] = match response {
            Reply::Step(Step::Moved(t)) | Reply::Swept(t, _) => t,
            Reply::Webhook(stampede_core::WebhookOutcome::Applied(Step::Moved(t))) => t,
            _ => &[],
        };
        for t in transitions {
            self.recorder.push(EventKind::Transition(t.clone()));
        }
        let job = match (request, response) {
            (Command::LeaseJob | Command::LeaseJobWait { .. }, Reply::Lease(Some(l))) => {
                Some((l.kind, l.order, JobEvent::Leased { attempt: l.attempt }))
            }
            (Command::AckJob { lease }, Reply::Done) => {
                Some((lease.kind, lease.order, JobEvent::Acked))
            }
            (Command::FailJob { lease, error, .. }, Reply::Failed(f)) => Some((
                lease.kind,
                lease.order,
                match f {
                    stampede_core::Failed::DeadLettered => JobEvent::DeadLettered,
                    stampede_core::Failed::Retry { .. } => JobEvent::Failed {
                        error: error.clone(),
                    },
                },
            )),
            _ => None,
        };
        if let Some((kind, order, what)) = job {
            self.recorder.push(EventKind::Job { kind, order, what });
        }
    }
}

impl Store for RecordingStore {
    fn call(&self, request: Command) -> StoreFuture<'_> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let response = self.inner.call(request.clone()).await?;
            self.record(&request, &response);
            Ok(response)
        })
    }
}
