//! Webhook delivery, badly on purpose: each event goes out as one or more
//! copies, each after its own random delay, so copies and events arrive
//! reordered; failed attempts are retried with backoff until a bound.
//!
//! [`Schedule`] decides (pure: the caller passes `now`, the seeded generator
//! draws every random number); [`run`] acts: one loop sleeps until the
//! earliest due copy and spawns one task per attempt, so a slow receiver
//! holds up only its own copy.

use super::config::PspConfig;
use super::{Psp, WebhookTarget};
use bytes::Bytes;
use hyper::Method;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use stampede_core::{EventId, Millis, RetryPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Header naming which copy of an event a request is (0 is the original).
pub const COPY_HEADER: &str = "psp-delivery-copy";
/// Header naming the attempt number of this copy (from 1).
pub const ATTEMPT_HEADER: &str = "psp-delivery-attempt";
/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "psp-signature";

/// Most attempts started per wake-up of the loop (the rest start right after).
const BATCH_MAX: usize = 256;

/// Delivery counters, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStats {
    /// Attempts answered 2xx.
    pub delivered: u64,
    /// Failed attempts that were scheduled again.
    pub retried: u64,
    /// Copies abandoned after `max_attempts` failed attempts.
    pub given_up: u64,
    /// Copies never scheduled because `max_pending` were already pending.
    pub dropped: u64,
    /// Extra copies (beyond the first of each event) whose first attempt started.
    pub duplicates_sent: u64,
    /// Copies waiting for their due time.
    pub scheduled: u64,
    /// Attempts under way.
    pub in_flight: u64,
}

/// One copy of one event.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub event: EventId,
    /// 0 for the original, 1.. for duplicates.
    pub copy: u32,
    /// Attempts made so far, counting this one once it starts.
    pub attempt: u32,
    /// The JSON body (shared by every copy of the event).
    pub body: Bytes,
}

/// Copies due in the future, ordered by (due time, scheduling order).
#[derive(Debug)]
pub(crate) struct Schedule {
    queue: BTreeMap<(Millis, u64), Delivery>,
    next_seq: u64,
    rng: ChaCha8Rng,
    stats: DeliveryStats,
    policy: RetryPolicy,
    duplicate_probability: f64,
    max_extra_copies: u32,
    min_extra_copies: u32,
    delay_ms: (u64, u64),
    max_pending: usize,
}

impl Schedule {
    /// An empty schedule. Its generator is the seed's second stream, so
    /// delivery decisions do not shift when client secrets are drawn.
    pub fn new(config: &PspConfig) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(1);
        Schedule {
            queue: BTreeMap::new(),
            next_seq: 0,
            rng,
            stats: DeliveryStats::default(),
            policy: RetryPolicy {
                base_delay_ms: config.retry_base_ms,
                max_delay_ms: config.retry_max_ms,
                max_attempts: config.max_attempts,
            },
            duplicate_probability: config.duplicate_probability,
            max_extra_copies: config.max_extra_copies,
            min_extra_copies: config
                .min_extra_copies
                .clamp(1, config.max_extra_copies.max(1)),
            delay_ms: (config.delay_ms_min, config.delay_ms_max),
            max_pending: config.max_pending,
        }
    }

    /// Schedules the copies of one event, each after its own delay.
    pub fn add_event(&mut self, now: Millis, event: EventId, body: Bytes) {
        let extra = if self.rng.random_bool(self.duplicate_probability) && self.max_extra_copies > 0
        {
            self.rng
                .random_range(self.min_extra_copies..=self.max_extra_copies)
        } else {
            0
        };
        for copy in 0..=extra {
            let delay_ms = self.rng.random_range(self.delay_ms.0..=self.delay_ms.1);
            if self.pending() >= self.max_pending {
                self.stats.dropped += 1;
                continue;
            }
            let delivery = Delivery {
                event: event.clone(),
                copy,
                attempt: 0,
                body: body.clone(),
            };
            self.insert(now.plus_ms(delay_ms), delivery);
        }
    }

    /// When the earliest copy is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.queue.keys().next().map(|(due, _)| *due)
    }

    /// Takes up to `max` copies due at or before `now`, in due order, and
    /// counts them in flight.
    pub fn take_due(&mut self, now: Millis, max: usize) -> Vec<Delivery> {
        let mut due = Vec::new();
        while due.len() < max {
            let Some(entry) = self.queue.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let mut delivery = entry.remove();
            delivery.attempt += 1;
            if delivery.attempt == 1 && delivery.copy > 0 {
                self.stats.duplicates_sent += 1;
            }
            self.stats.in_flight += 1;
            due.push(delivery);
        }
        due
    }

    /// Records how an attempt ended: delivered, or scheduled again after a
    /// backoff, or given up after the last attempt.
    pub fn finish(&mut self, now: Millis, delivery: Delivery, delivered: bool) {
        assert!(self.stats.in_flight > 0, "finish without take_due");
        self.stats.in_flight -= 1;
        if delivered {
            self.stats.delivered += 1;
        } else if delivery.attempt >= self.policy.max_attempts {
            self.stats.given_up += 1;
        } else {
            let jitter_permille = self.rng.random_range(0..=1000);
            let backoff_ms = self
                .policy
                .backoff_ms(delivery.attempt, jitter_permille)
                .max(1);
            self.stats.retried += 1;
            self.insert(now.plus_ms(backoff_ms), delivery);
        }
    }

    /// The counters.
    pub fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            scheduled: self.queue.len() as u64,
            ..self.stats
        }
    }

    fn pending(&self) -> usize {
        self.queue.len() + self.stats.in_flight as usize
    }

    fn insert(&mut self, due: Millis, delivery: Delivery) {
        self.next_seq += 1;
        self.queue.insert((due, self.next_seq), delivery);
    }
}

/// The delivery loop (see [`Psp::run_delivery`]).
pub(crate) async fn run(psp: Arc<Psp>) {
    let Some(target) = psp.config.webhook.clone() else {
        return std::future::pending().await;
    };
    let target = Arc::new(target);
    // Owning the attempts means dropping the loop cancels them too.
    let mut attempts = JoinSet::new();
    loop {
        let now = psp.clock.now();
        let (due, next) = {
            let mut inner = psp.lock();
            let due = inner.schedule.take_due(now, BATCH_MAX);
            (due, inner.schedule.next_due())
        };
        let batch_full = due.len() == BATCH_MAX;
        for delivery in due {
            let guard = InFlight {
                psp: psp.clone(),
                delivery: Some(delivery),
            };
            attempts.spawn(attempt(guard, target.clone()));
        }
        if batch_full {
            // More are due: let the attempts just spawned (and the API) run first.
            tokio::task::yield_now().await;
            continue;
        }
        let sleep_until = next.map(|due| {
            tokio::time::Instant::now() + Duration::from_millis(due.since(psp.clock.now()))
        });
        tokio::select! {
            biased;
            () = psp.wake.notified() => {}
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            () = sleep_or_never(sleep_until) => {}
        }
    }
}

async fn sleep_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A copy being attempted. If the attempt's task is dropped before it ends
/// (the loop was aborted), the copy goes back to the schedule as a failed
/// attempt, so a restarted loop still delivers it.
struct InFlight {
    psp: Arc<Psp>,
    delivery: Option<Delivery>,
}

impl InFlight {
    fn finish(mut self, delivered: bool) {
        let delivery = self.delivery.take().expect("finished once");
        finish(&self.psp, delivery, delivered);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(delivery) = self.delivery.take() {
            finish(&self.psp, delivery, false);
        }
    }
}

fn finish(psp: &Psp, delivery: Delivery, delivered: bool) {
    let now = psp.clock.now();
    let mut inner = psp.lock();
    inner.schedule.finish(now, delivery, delivered);
    drop(inner);
    psp.wake.notify_one();
}

async fn attempt(guard: InFlight, target: Arc<WebhookTarget>) {
    let psp = guard.psp.clone();
    let delivery = guard.delivery.as_ref().expect("in flight");
    let body = delivery.body.clone();
    let signature = crate::signature::sign(&psp.config.secret, psp.clock.unix_secs(), &body);
    let headers = [
        ("content-type", "application/json".to_string()),
        (SIGNATURE_HEADER, signature),
        (COPY_HEADER, delivery.copy.to_string()),
        (ATTEMPT_HEADER, delivery.attempt.to_string()),
    ];
    let result = psp
        .http
        .send(
            &target.addr,
            Method::POST,
            &target.path,
            &headers,
            Some(body),
        )
        .await;
    let delivered = match &result {
        Ok(response) => response.status.is_success(),
        Err(error) => {
            tracing::debug!(%error, event = %delivery.event, "webhook attempt failed");
            false
        }
    };
    guard.finish(delivered);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PspConfig {
        PspConfig {
            seed: 42,
            duplicate_probability: 0.5,
            max_extra_copies: 3,
            delay_ms_min: 10,
            delay_ms_max: 1_000,
            retry_base_ms: 100,
            retry_max_ms: 400,
            max_attempts: 3,
            ..PspConfig::default()
        }
    }

    fn plan(config: &PspConfig) -> Vec<(Millis, String, u32)> {
        let mut schedule = Schedule::new(config);
        for n in 1..=20 {
            let id = EventId::new(format!("evt_{n}")).unwrap();
            schedule.add_event(Millis(0), id, Bytes::new());
        }
        let mut out = Vec::new();
        while let Some(due) = schedule.next_due() {
            for d in schedule.take_due(due, usize::MAX) {
                out.push((due, d.event.to_string(), d.copy));
            }
        }
        out
    }

    #[test]
    fn the_plan_depends_only_on_the_seed_and_reorders_and_duplicates() {
        let a = plan(&config());
        assert_eq!(a, plan(&config()));
        assert_ne!(
            a,
            plan(&PspConfig {
                seed: 43,
                ..config()
            })
        );
        assert!(a.len() > 20, "some events were duplicated");
        assert!(a.iter().all(|(due, _, _)| (10..=1_000).contains(&due.0)));
        let firsts: Vec<_> = a.iter().filter(|d| d.2 == 0).map(|d| &d.1).collect();
        let mut sorted = firsts.clone();
        sorted.sort_by_key(|id| id[4..].parse::<u32>().unwrap());
        assert_ne!(firsts, sorted, "events arrive out of creation order");
    }

    #[test]
    fn failures_back_off_then_give_up_and_full_queues_drop() {
        let mut schedule = Schedule::new(&config());
        let id = EventId::new("evt_1").unwrap();
        schedule.add_event(Millis(0), id, Bytes::new());
        let mut now = Millis(0);
        let mut attempts = 0;
        while let Some(due) = schedule.next_due() {
            assert!(due > now || attempts == 0);
            now = due;
            for d in schedule.take_due(now, usize::MAX) {
                attempts += 1;
                schedule.finish(now, d, false);
            }
        }
        let stats = schedule.stats();
        let copies = stats.given_up;
        assert_eq!(attempts, copies * 3);
        assert_eq!(stats.retried, copies * 2);
        assert_eq!((stats.in_flight, stats.scheduled), (0, 0));

        let mut tiny = Schedule::new(&PspConfig {
            max_pending: 1,
            duplicate_probability: 0.0,
            ..config()
        });
        tiny.add_event(Millis(0), EventId::new("evt_1").unwrap(), Bytes::new());
        tiny.add_event(Millis(0), EventId::new("evt_2").unwrap(), Bytes::new());
        assert_eq!((tiny.stats().scheduled, tiny.stats().dropped), (1, 1));
    }
}
