//! Durable jobs: leased with a visibility timeout, redelivered when a lease
//! lapses (the worker crashed), retried with exponential backoff and
//! caller-supplied jitter, and dead-lettered after a bound.
//!
//! Each lease carries a fresh token; an `ack` or `fail` with a stale token
//! (the job was redelivered meanwhile) is refused, so only the current holder
//! settles a job. Redelivery means a step can run twice: every worker step
//! checks the order's state first, which makes the second run a no-op.

use crate::ids::{Holder, JobId, OrderId};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a job does to its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Reserve the order's stock.
    Reserve,
    /// Create the PSP intent (key `pay_{order}`) and record it.
    CreateIntent,
    /// Ask the PSP for the intent's state and apply it.
    SyncPayment,
    /// Commit the reservation of a paid order.
    Finalize,
    /// Refund a payment for an order that cannot be fulfilled.
    Refund,
    /// Cancel an unpaid intent of a cancelled order.
    CancelIntent,
    /// Refund money captured for the order that is not its payment: an
    /// intent other than the one the order adopted, or one not for its
    /// total ([`ShopState::is_stray`](crate::ShopState::is_stray)). The
    /// order's own payment is left alone.
    RefundStray,
}

/// Lanes of the queue ([`JobKind::lane`]).
const LANES: usize = 2;

impl JobKind {
    /// The lane a job waits in; a lower lane's visible jobs are leased first.
    /// Steps of orders that already hold stock or money (create the intent,
    /// finalize, sync, refund, cancel the intent) go before `Reserve` jobs of
    /// new orders, so a flood of new orders cannot keep a reserved cart from
    /// being offered payment until its hold lapses.
    pub fn lane(self) -> usize {
        usize::from(self == JobKind::Reserve)
    }

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Reserve => "reserve",
            JobKind::CreateIntent => "create_intent",
            JobKind::SyncPayment => "sync_payment",
            JobKind::Finalize => "finalize",
            JobKind::Refund => "refund",
            JobKind::CancelIntent => "cancel_intent",
            JobKind::RefundStray => "refund_stray",
        }
    }
}

/// Backoff and attempt bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub base_delay_ms: u64,
    /// Cap on any single delay.
    pub max_delay_ms: u64,
    /// Attempts (deliveries) before the job is dead-lettered.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 10_000,
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// Delay after failed attempt number `attempt` (1-based): exponential,
    /// capped, with "equal jitter": half fixed, half scaled by
    /// `jitter_permille` (0..=1000), which the shell draws from its seeded RNG.
    pub fn backoff_ms(&self, attempt: u32, jitter_permille: u32) -> u64 {
        let exp = self
            .base_delay_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(40))
            .min(self.max_delay_ms);
        let half = exp / 2;
        half + (exp - half) * u64::from(jitter_permille.min(1000)) / 1000
    }
}

/// Where a job is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting to be leased at or after `at`.
    Ready {
        /// Earliest time to run.
        at: Millis,
    },
    /// Held by a worker until `until`; after that it is redelivered.
    Leased {
        /// The current lease's token.
        token: u64,
        /// When the lease lapses.
        until: Millis,
        /// The process whose worker holds it, where the store says (see [`Holder`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<Holder>,
    },
}

/// A durable job record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job id.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// The order it concerns.
    pub order: OrderId,
    /// Deliveries so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: Millis,
    /// Ready or leased.
    pub state: JobState,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

impl Job {
    fn visible_at(&self) -> Millis {
        match self.state {
            JobState::Ready { at } => at,
            JobState::Leased { until, .. } => until,
        }
    }
}

/// A worker's hold on a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub job: JobId,
    /// What to do.
    pub kind: JobKind,
    /// To which order.
    pub order: OrderId,
    /// Which delivery this is (1 = first).
    pub attempt: u32,
    /// Proof of holding the current lease.
    pub token: u64,
}

/// A job that ran out of attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadJob {
    /// The job as it was last.
    pub job: Job,
    /// When it was given up on.
    pub at: Millis,
}

/// Why a job operation did nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum JobError {
    /// The queue holds its maximum number of jobs.
    #[error("job queue is full ({0} jobs)")]
    QueueFull(usize),
    /// The lease lapsed and the job was redelivered (or already settled).
    #[error("lease on {0} is no longer held")]
    StaleLease(JobId),
}

/// What happened to a failed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failed {
    /// It will be redelivered at `at`.
    Retry {
        /// When.
        at: Millis,
    },
    /// It ran out of attempts.
    DeadLettered,
}

/// Limits of a [`JobQueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLimits {
    /// Most live jobs.
    pub max_jobs: usize,
    /// Most dead jobs kept; older ones are dropped (and counted).
    pub max_dead: usize,
    /// How long a lease lasts before redelivery.
    pub visibility_ms: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_jobs: 1_000_000,
            max_dead: 10_000,
            visibility_ms: 5_000,
        }
    }
}

/// Live jobs, in two lanes ([`JobKind::lane`]) each ordered by when its jobs
/// become visible, and the dead letters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobQueue {
    jobs: BTreeMap<JobId, Job>,
    visible: [BTreeSet<(Millis, JobId)>; LANES],
    dead: VecDeque<DeadJob>,
    dead_dropped: u64,
    next_job: u64,
    next_token: u64,
    limits: QueueLimits,
    policy: RetryPolicy,
}

impl JobQueue {
    /// An empty queue.
    pub fn new(limits: QueueLimits, policy: RetryPolicy) -> JobQueue {
        JobQueue {
            limits,
            policy,
            ..JobQueue::default()
        }
    }

    /// Live jobs in `kind`'s lane (ready, parked or leased).
    pub fn lane_depth(&self, kind: JobKind) -> usize {
        self.visible[kind.lane()].len()
    }

    /// Has room for `n` more jobs?
    pub fn has_room(&self, n: usize) -> bool {
        self.jobs.len() + n <= self.limits.max_jobs
    }

    /// Adds a job runnable from `now`.
    pub fn enqueue(
        &mut self,
        kind: JobKind,
        order: OrderId,
        now: Millis,
    ) -> Result<JobId, JobError> {
        self.enqueue_at(kind, order, now, now)
    }

    /// Adds a job, created at `now`, that is not runnable before `at` (a
    /// step that decided to wait schedules its follow-up this way; the new
    /// job starts with no attempts used).
    pub fn enqueue_at(
        &mut self,
        kind: JobKind,
        order: OrderId,
        now: Millis,
        at: Millis,
    ) -> Result<JobId, JobError> {
        if !self.has_room(1) {
            return Err(JobError::QueueFull(self.jobs.len()));
        }
        self.next_job += 1;
        let id = JobId(self.next_job);
        self.jobs.insert(
            id,
            Job {
                id,
                kind,
                order,
                attempts: 0,
                created_at: now,
                state: JobState::Ready { at },
                last_error: None,
            },
        );
        self.visible[kind.lane()].insert((at, id));
        Ok(id)
    }

    /// Leases the job that has been visible longest at `now` in the first
    /// lane that has one, if any. A job whose lease lapsed is redelivered
    /// here; one that has used up its attempts is dead-lettered instead.
    pub fn lease(&mut self, now: Millis) -> Option<Lease> {
        self.lease_as(now, None)
    }

    /// [`JobQueue::lease`] for a worker of `holder`, whose leases
    /// [`JobQueue::release_leases_of`] ends.
    pub fn lease_as(&mut self, now: Millis, holder: Option<Holder>) -> Option<Lease> {
        loop {
            let lane = self
                .visible
                .iter()
                .position(|lane| lane.first().is_some_and(|(at, _)| *at <= now))?;
            let (_, id) = self.visible[lane].pop_first().expect("a visible job");
            let job = self
                .jobs
                .get_mut(&id)
                .expect("visible index names live jobs");
            if job.attempts >= self.policy.max_attempts {
                if job.last_error.is_none() {
                    job.last_error = Some("lease lapsed on the final attempt".into());
                }
                self.bury(id, now);
                continue;
            }
            self.next_token += 1;
            job.attempts += 1;
            let until = now.plus_ms(self.limits.visibility_ms);
            job.state = JobState::Leased {
                token: self.next_token,
                until,
                holder,
            };
            self.visible[lane].insert((until, id));
            return Some(Lease {
                job: id,
                kind: job.kind,
                order: job.order,
                attempt: job.attempts,
                token: self.next_token,
            });
        }
    }

    fn held(&self, lease: &Lease) -> Result<&Job, JobError> {
        match self.jobs.get(&lease.job) {
            Some(job) if matches!(job.state, JobState::Leased { token, .. } if token == lease.token) => {
                Ok(job)
            }
            _ => Err(JobError::StaleLease(lease.job)),
        }
    }

    /// Raises the job and lease-token counters to at least `other`'s, so a
    /// queue restored from an older copy of `other` never hands out a job id
    /// or a lease token `other` already handed out.
    pub fn keep_ids_past(&mut self, other: &JobQueue) {
        self.next_job = self.next_job.max(other.next_job);
        self.next_token = self.next_token.max(other.next_token);
    }

    /// The job is done: remove it.
    pub fn ack(&mut self, lease: &Lease) -> Result<Job, JobError> {
        let held = self.held(lease)?;
        let (lane, visible_at) = (held.kind.lane(), held.visible_at());
        self.visible[lane].remove(&(visible_at, lease.job));
        Ok(self.jobs.remove(&lease.job).expect("held"))
    }

    /// The attempt failed: schedule a retry after backoff, or dead-letter the
    /// job when its attempts are used up.
    pub fn fail(
        &mut self,
        lease: &Lease,
        now: Millis,
        error: &str,
        jitter_permille: u32,
    ) -> Result<Failed, JobError> {
        let held = self.held(lease)?;
        let (lane, visible_at) = (held.kind.lane(), held.visible_at());
        self.visible[lane].remove(&(visible_at, lease.job));
        let policy = self.policy;
        let job = self.jobs.get_mut(&lease.job).expect("held");
        job.last_error = Some(error.chars().take(200).collect());
        if job.attempts >= policy.max_attempts {
            self.bury(lease.job, now);
            return Ok(Failed::DeadLettered);
        }
        let at = now.plus_ms(policy.backoff_ms(job.attempts, jitter_permille));
        job.state = JobState::Ready { at };
        self.visible[lane].insert((at, lease.job));
        Ok(Failed::Retry { at })
    }

    fn bury(&mut self, id: JobId, now: Millis) {
        let job = self.jobs.remove(&id).expect("bury a live job");
        self.visible[job.kind.lane()].remove(&(job.visible_at(), id));
        if self.dead.len() >= self.limits.max_dead {
            self.dead.pop_front();
            self.dead_dropped += 1;
        }
        self.dead.push_back(DeadJob { job, at: now });
    }

    /// When the next job becomes visible (for a shell's timer).
    pub fn next_visible_at(&self) -> Option<Millis> {
        self.visible
            .iter()
            .filter_map(|lane| lane.first().map(|(at, _)| *at))
            .min()
    }

    /// Brings a ready job forward to `at` (an order waiting for stock, woken
    /// because units came back). A job already runnable by then, a leased
    /// job and an unknown id are left alone. Returns whether the job moved.
    pub fn wake(&mut self, id: JobId, at: Millis) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        let JobState::Ready { at: was } = job.state else {
            return false;
        };
        if was <= at {
            return false;
        }
        let lane = &mut self.visible[job.kind.lane()];
        lane.remove(&(was, id));
        lane.insert((at, id));
        job.state = JobState::Ready { at };
        true
    }

    /// Ends every lease at `now`, as if each had lapsed: the job is ready to be
    /// leased again at once (the attempt it used stays counted) and the lease's
    /// token is stale. For a queue whose every worker died with its process.
    /// Returns how many leases ended.
    pub fn release_leases(&mut self, now: Millis) -> usize {
        self.release_leases_where(now, |_| true)
    }

    /// Ends, as [`JobQueue::release_leases`] does, the leases `holder`'s
    /// workers hold (its process is gone); others' stay. Returns how many.
    pub fn release_leases_of(&mut self, holder: Holder, now: Millis) -> usize {
        self.release_leases_where(now, |h| h == Some(holder))
    }

    fn release_leases_where(
        &mut self,
        now: Millis,
        whose: impl Fn(Option<Holder>) -> bool,
    ) -> usize {
        let mut released = 0;
        for (id, job) in &mut self.jobs {
            if let JobState::Leased { until, holder, .. } = job.state
                && whose(holder)
            {
                let lane = &mut self.visible[job.kind.lane()];
                lane.remove(&(until, *id));
                lane.insert((now, *id));
                job.state = JobState::Ready { at: now };
                released += 1;
            }
        }
        released
    }

    /// Removes a job that is waiting to run (not leased): its order no longer
    /// needs it (a waiting order cancelled by another operation). A leased
    /// job and an unknown id are left alone. Returns whether it was removed.
    pub fn withdraw(&mut self, id: JobId) -> bool {
        let Some(job) = self.jobs.get(&id) else {
            return false;
        };
        let JobState::Ready { at } = job.state else {
            return false;
        };
        self.visible[job.kind.lane()].remove(&(at, id));
        self.jobs.remove(&id);
        true
    }

    /// Is the job runnable at `now` or being run (leased)? `false` for a job
    /// scheduled later and for one no longer live.
    pub fn is_due(&self, id: JobId, now: Millis) -> bool {
        self.jobs.get(&id).is_some_and(|job| match job.state {
            JobState::Ready { at } => at <= now,
            JobState::Leased { .. } => true,
        })
    }

    /// A live job.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Live jobs (ready or leased).
    pub fn depth(&self) -> usize {
        self.jobs.len()
    }

    /// Live jobs, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// The dead-letter list, oldest first.
    pub fn dead_letters(&self) -> impl Iterator<Item = &DeadJob> {
        self.dead.iter()
    }

    /// Dead letters dropped because the list was full.
    pub fn dead_dropped(&self) -> u64 {
        self.dead_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_kinds_have_the_names_traces_and_metrics_use() {
        // Proves: each kind's stable name is its snake_case serde name (what traces and
        // `/metrics` labels show), and only `reserve` runs in the new-orders lane.
        for (kind, name) in [
            (JobKind::Reserve, "reserve"),
            (JobKind::CreateIntent, "create_intent"),
            (JobKind::SyncPayment, "sync_payment"),
            (JobKind::Finalize, "finalize"),
            (JobKind::Refund, "refund"),
            (JobKind::CancelIntent, "cancel_intent"),
            (JobKind::RefundStray, "refund_stray"),
        ] {
            assert_eq!(kind.as_str(), name);
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(kind.lane(), usize::from(kind == JobKind::Reserve));
        }
    }

    fn queue(max_attempts: u32) -> JobQueue {
        JobQueue::new(
            QueueLimits {
                max_jobs: 3,
                max_dead: 2,
                visibility_ms: 1_000,
            },
            RetryPolicy {
                base_delay_ms: 100,
                max_delay_ms: 1_000,
                max_attempts,
            },
        )
    }

    #[test]
    fn backoff_grows_exponentially_is_capped_and_jitter_stays_in_the_upper_half() {
        let p = RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 1_000,
            max_attempts: 5,
        };
        assert_eq!(p.backoff_ms(1, 0), 50);
        assert_eq!(p.backoff_ms(1, 1000), 100);
        assert_eq!(p.backoff_ms(2, 1000), 200);
        assert_eq!(p.backoff_ms(3, 500), 300);
        assert_eq!(p.backoff_ms(30, 1000), 1_000);
        assert_eq!(p.backoff_ms(u32::MAX, 9999), 1_000);
    }

    #[test]
    fn a_lapsed_lease_is_redelivered_and_the_old_holder_cannot_settle_it() {
        let mut q = queue(5);
        let id = q.enqueue(JobKind::Reserve, OrderId(1), Millis(0)).unwrap();
        let first = q.lease(Millis(0)).unwrap();
        assert_eq!((first.job, first.attempt), (id, 1));
        assert!(q.lease(Millis(999)).is_none(), "invisible while leased");
        let second = q.lease(Millis(1_000)).unwrap();
        assert_eq!(second.attempt, 2);
        assert_eq!(q.ack(&first), Err(JobError::StaleLease(id)));
        q.ack(&second).unwrap();
        assert_eq!(q.depth(), 0);
        assert_eq!(q.ack(&second), Err(JobError::StaleLease(id)));
    }

    #[test]
    fn released_leases_are_leased_again_at_once_and_their_old_holders_are_stale() {
        // Proves: ending the leases at 10 ms (their visibility runs to 1,000 ms) makes both leased
        // jobs leasable at 10 ms, with their attempt counted, the old tokens stale; a job ready
        // only later stays later; a second release finds none.
        let mut q = queue(5);
        let a = q.enqueue(JobKind::Reserve, OrderId(1), Millis(0)).unwrap();
        let b = q.enqueue(JobKind::Finalize, OrderId(2), Millis(0)).unwrap();
        let later = q
            .enqueue_at(JobKind::Refund, OrderId(3), Millis(0), Millis(500))
            .unwrap();
        let (la, lb) = (q.lease(Millis(0)).unwrap(), q.lease(Millis(0)).unwrap());
        assert!(
            q.lease(Millis(10)).is_none(),
            "both held, the third not due"
        );
        assert_eq!(q.release_leases(Millis(10)), 2);
        let again: Vec<Lease> = (0..2).filter_map(|_| q.lease(Millis(10))).collect();
        let mut ids: Vec<JobId> = again.iter().map(|l| l.job).collect();
        ids.sort();
        assert_eq!(ids, [a, b]);
        assert!(again.iter().all(|l| l.attempt == 2));
        assert!(q.lease(Millis(10)).is_none(), "{later:?} waits for 500 ms");
        for old in [&la, &lb] {
            assert_eq!(q.ack(old), Err(JobError::StaleLease(old.job)));
        }
        assert_eq!(q.release_leases(Millis(20)), 2, "the new leases");
        assert_eq!(q.release_leases(Millis(20)), 0);
        let due: Vec<Lease> = (0..4).filter_map(|_| q.lease(Millis(500))).collect();
        assert_eq!(due.len(), 3, "a, b and, now due, {later:?}");
    }

    #[test]
    fn releasing_a_holder_ends_only_its_leases() {
        // Proves: of three leased jobs (holder 1, holder 2, no holder), releasing holder 1 at
        // 10 ms makes only its job leasable at 10 ms (visibility runs to 1,000 ms), its old
        // token stale; the others' leases still hold and ack; a second release finds none.
        let mut q = queue(5);
        let mine = q.enqueue(JobKind::Reserve, OrderId(1), Millis(0)).unwrap();
        q.enqueue(JobKind::Reserve, OrderId(2), Millis(0)).unwrap();
        q.enqueue(JobKind::Reserve, OrderId(3), Millis(0)).unwrap();
        let one = q.lease_as(Millis(0), Some(Holder(1))).unwrap();
        let two = q.lease_as(Millis(0), Some(Holder(2))).unwrap();
        let nobody = q.lease(Millis(0)).unwrap();
        assert_eq!(one.job, mine);
        assert_eq!(q.release_leases_of(Holder(1), Millis(10)), 1);
        let again = q.lease(Millis(10)).expect("holder 1's job, at once");
        assert_eq!((again.job, again.attempt), (mine, 2));
        assert!(q.lease(Millis(10)).is_none(), "the other two still held");
        assert_eq!(q.ack(&one), Err(JobError::StaleLease(mine)));
        assert_eq!(q.release_leases_of(Holder(1), Millis(20)), 0);
        q.ack(&two).unwrap();
        q.ack(&nobody).unwrap();
    }

    #[test]
    fn failures_back_off_then_dead_letter_after_the_bound() {
        let mut q = queue(2);
        q.enqueue(JobKind::CreateIntent, OrderId(7), Millis(0))
            .unwrap();
        let l1 = q.lease(Millis(0)).unwrap();
        assert_eq!(
            q.fail(&l1, Millis(10), "psp 503", 1000),
            Ok(Failed::Retry { at: Millis(110) })
        );
        assert!(q.lease(Millis(109)).is_none());
        let l2 = q.lease(Millis(110)).unwrap();
        assert_eq!(
            q.fail(&l2, Millis(120), "psp 503", 0),
            Ok(Failed::DeadLettered)
        );
        assert_eq!(q.depth(), 0);
        let dead: Vec<_> = q.dead_letters().collect();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].job.last_error.as_deref(), Some("psp 503"));
    }

    #[test]
    fn a_job_that_keeps_crashing_its_worker_is_dead_lettered_on_redelivery() {
        let mut q = queue(2);
        q.enqueue(JobKind::Finalize, OrderId(1), Millis(0)).unwrap();
        q.lease(Millis(0)).unwrap();
        q.lease(Millis(1_000)).unwrap();
        assert!(q.lease(Millis(2_000)).is_none());
        assert_eq!(q.dead_letters().count(), 1);
    }

    #[test]
    fn the_queue_and_the_dead_letter_list_are_bounded() {
        let mut q = queue(1);
        for i in 0..3 {
            q.enqueue(JobKind::Reserve, OrderId(i), Millis(0)).unwrap();
        }
        assert_eq!(
            q.enqueue(JobKind::Reserve, OrderId(9), Millis(0)),
            Err(JobError::QueueFull(3))
        );
        for _ in 0..3 {
            let l = q.lease(Millis(0)).unwrap();
            q.fail(&l, Millis(0), "boom", 0).unwrap();
        }
        assert_eq!(q.dead_letters().count(), 2);
        assert_eq!(q.dead_dropped(), 1);
    }

    #[test]
    fn a_job_enqueued_for_later_is_invisible_until_then_and_starts_with_no_attempts() {
        // Proves: `enqueue_at` hides the job until exactly `at` (not one ms earlier), records
        // when it was created, and its first delivery is attempt 1.
        let mut q = queue(3);
        let id = q
            .enqueue_at(JobKind::Reserve, OrderId(1), Millis(10), Millis(500))
            .unwrap();
        assert_eq!(q.next_visible_at(), Some(Millis(500)));
        assert_eq!(q.job(id).unwrap().created_at, Millis(10));
        assert_eq!(
            q.job(id).unwrap().state,
            JobState::Ready { at: Millis(500) }
        );
        assert!(q.lease(Millis(499)).is_none());
        let lease = q.lease(Millis(500)).unwrap();
        assert_eq!((lease.job, lease.attempt), (id, 1));
        q.ack(&lease).unwrap();
        assert!(q.job(id).is_none());
    }

    #[test]
    fn a_woken_job_runs_at_the_new_time_and_only_sooner_ready_jobs_move() {
        // Proves: `wake` brings a later job forward (leasable at exactly the new time, not
        // before), never pushes one back or moves one to its own time, leaves a leased job
        // and an unknown id alone; `is_due` says runnable-or-leased on both sides of `at`.
        let mut q = queue(3);
        let id = q
            .enqueue_at(JobKind::Reserve, OrderId(1), Millis(0), Millis(500))
            .unwrap();
        assert!(!q.is_due(id, Millis(499)));
        assert!(q.is_due(id, Millis(500)));
        assert!(!q.wake(id, Millis(600)), "later is not a wake");
        assert!(!q.wake(id, Millis(500)), "the same time is not a wake");
        assert!(q.wake(id, Millis(100)));
        assert_eq!(q.next_visible_at(), Some(Millis(100)));
        assert!(!q.is_due(id, Millis(99)));
        assert!(q.is_due(id, Millis(100)));
        assert!(q.lease(Millis(99)).is_none());
        let lease = q.lease(Millis(100)).unwrap();
        assert_eq!(lease.job, id);
        assert!(q.is_due(id, Millis(100)), "a leased job is being run");
        assert!(!q.wake(id, Millis(0)), "a leased job stays leased");
        q.ack(&lease).unwrap();
        assert!(!q.is_due(id, Millis(100)), "a settled job is not due");
        assert!(!q.wake(id, Millis(0)), "an unknown job is left alone");
    }

    #[test]
    fn jobs_are_leased_in_visibility_order() {
        let mut q = queue(3);
        let a = q.enqueue(JobKind::Reserve, OrderId(1), Millis(5)).unwrap();
        let b = q.enqueue(JobKind::Reserve, OrderId(2), Millis(1)).unwrap();
        assert_eq!(q.next_visible_at(), Some(Millis(1)));
        assert_eq!(q.lease(Millis(10)).unwrap().job, b);
        assert_eq!(q.lease(Millis(10)).unwrap().job, a);
    }

    #[test]
    fn an_order_s_next_step_goes_before_reserves_of_new_orders_once_visible() {
        // Proves: a visible CreateIntent (or any non-Reserve step) is leased before Reserve jobs
        // that have been visible longer; one not yet visible does not hold them back (at 9 ms
        // the reserve runs, at 10 ms the step goes first); `next_visible_at` is the soonest over
        // both lanes; a lapsed step lease is redelivered in its own lane, ahead of reserves.
        let mut q = queue(3);
        let reserve_a = q.enqueue(JobKind::Reserve, OrderId(1), Millis(1)).unwrap();
        let step = q
            .enqueue_at(JobKind::CreateIntent, OrderId(2), Millis(2), Millis(10))
            .unwrap();
        let reserve_b = q.enqueue(JobKind::Reserve, OrderId(3), Millis(3)).unwrap();
        assert_eq!(q.next_visible_at(), Some(Millis(1)));
        assert_eq!(q.lease(Millis(9)).unwrap().job, reserve_a);
        assert_eq!(q.next_visible_at(), Some(Millis(3)));
        let first = q.lease(Millis(10)).unwrap();
        assert_eq!((first.job, first.kind), (step, JobKind::CreateIntent));
        let lapsed = Millis(10 + q.limits.visibility_ms);
        assert_eq!(q.lease(lapsed).unwrap().job, step, "redelivered first");
        assert_eq!(q.lease(lapsed).unwrap().job, reserve_b);
        assert_eq!(JobKind::Reserve.lane(), 1);
        for kind in [
            JobKind::CreateIntent,
            JobKind::SyncPayment,
            JobKind::Finalize,
            JobKind::Refund,
            JobKind::CancelIntent,
            JobKind::RefundStray,
        ] {
            assert_eq!(kind.lane(), 0, "{kind:?}");
        }
    }

    #[test]
    fn withdraw_removes_a_waiting_job_and_leaves_a_leased_or_unknown_one() {
        // Proves: a ready job (runnable later) is removed and never leased; a leased job is
        // not withdrawn (its lease still acks); an unknown id answers false.
        let mut q = JobQueue::new(QueueLimits::default(), RetryPolicy::default());
        let parked = q
            .enqueue_at(JobKind::Reserve, OrderId(1), Millis(0), Millis(500))
            .unwrap();
        let running = q.enqueue(JobKind::Reserve, OrderId(2), Millis(0)).unwrap();
        let lease = q.lease(Millis(0)).unwrap();
        assert_eq!(lease.job, running);
        assert!(q.withdraw(parked));
        assert!(!q.withdraw(parked), "already gone");
        assert!(!q.withdraw(running), "leased jobs stay");
        assert_eq!(q.depth(), 1);
        assert!(
            q.lease(Millis(1_000)).is_none(),
            "the parked job never runs"
        );
        q.ack(&lease).unwrap();
        assert!(!q.withdraw(JobId(99)));
    }
}
