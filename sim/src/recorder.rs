//! Recording the history of a simulated run. Every host pushes into one
//! shared [`Recorder`]; turmoil runs hosts one at a time, so the order of
//! pushes is the order things happened, and is the same on every run.
//!
//! The store's own events (transitions, job events) are recorded by the
//! `db` host's journal as each write is applied ([`written_events`]), tagged
//! with the write's position while a crash may still take it back; a crash
//! that loses the unsynced tail forgets them ([`Recorder::forget_after`]).

use stampede_core::{ClientOp, ClientReply, EventKind, Fingerprint, History, JobEvent, Millis};
use stampede_core::{Command, Reply};
use std::sync::{Arc, Mutex, MutexGuard};

/// The current simulated time (0 outside a simulation).
pub fn sim_now() -> Millis {
    Millis(turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// One recorded event; `position` is the store journal position of the
/// write it came from, while that write may still be lost (see
/// [`Recorder::forget_after`]).
struct Recorded {
    at: Millis,
    kind: EventKind,
    position: Option<u64>,
}

#[derive(Default)]
struct Inner {
    events: Vec<Recorded>,
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
        self.push_written(at, kind, None);
    }

    /// Appends an event a store write made, tagged with the write's journal
    /// position when a crash may still take the write back (`None`: it cannot).
    pub fn push_written(&self, at: Millis, kind: EventKind, position: Option<u64>) {
        self.lock().events.push(Recorded { at, kind, position });
    }

    /// Forgets the events of writes past journal position `synced`: the store
    /// lost them, so they never happened. The rest keep their order.
    pub fn forget_after(&self, synced: u64) {
        self.lock()
            .events
            .retain(|e| e.position.is_none_or(|p| p <= synced));
    }

    /// Records a client request; returns its id for the response.
    pub fn request(&self, op: ClientOp, fingerprint: Option<Fingerprint>) -> u64 {
        let mut inner = self.lock();
        inner.next_req += 1;
        let req = inner.next_req;
        inner.events.push(Recorded {
            at: sim_now(),
            kind: EventKind::Request {
                req,
                op,
                fingerprint,
            },
            position: None,
        });
        req
    }

    /// Records what the client was told.
    pub fn response(&self, req: u64, reply: ClientReply) {
        self.push(EventKind::Response { req, reply });
    }

    /// The history so far.
    pub fn history(&self) -> History {
        let mut history = History::new();
        for e in &self.lock().events {
            history.push(e.at, e.kind.clone());
        }
        history
    }

    /// Events so far.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// No events yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a store write shows in the history: the transitions it made and
/// its job event (a lease, an ack, a failure or a dead letter), in that order.
pub fn written_events(command: &Command, reply: &Reply) -> Vec<EventKind> {
    use stampede_core::Step;
    let transitions: &[stampede_core::Transition] = match reply {
        Reply::Step(Step::Moved(t)) | Reply::Swept(t, _) => t,
        Reply::Webhook(stampede_core::WebhookOutcome::Applied(Step::Moved(t))) => t,
        _ => &[],
    };
    let mut events: Vec<EventKind> = transitions
        .iter()
        .map(|t| EventKind::Transition(t.clone()))
        .collect();
    let job = match (command, reply) {
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
    events.extend(job.map(|(kind, order, what)| EventKind::Job { kind, order, what }));
    events
}
