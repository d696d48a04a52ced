//! Idempotency records with Stripe semantics.
//!
//! A request carries a key and the shell computes a [`Fingerprint`] of its
//! canonical form. [`IdempotencyStore::begin`] decides:
//!
//! - unknown key: the request runs ([`Begin::New`]) and the key is held in flight;
//! - same key, same fingerprint, completed: the saved response is replayed;
//! - same key, different fingerprint: refused ([`Begin::Mismatch`], a 422);
//! - same key while the first is in flight: refused ([`Begin::InFlight`], a 409),
//!   unless the in-flight lock is older than its timeout (the holder crashed),
//!   in which case the new request takes it over;
//! - records older than the retention window are as good as absent.
//!
//! The saved response type `R` is the shell's choice; the core never reads it.

use crate::ids::{Holder, IdempotencyKey};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// SHA-256 of a request's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `canonical`, a byte encoding in which equal requests
    /// are equal bytes.
    pub fn of(canonical: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(canonical).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({}…)", &self.to_hex()[..12])
    }
}

/// Where a keyed request is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordState<R> {
    /// The first request is running.
    InFlight {
        /// When it took the key.
        since: Millis,
        /// The process running it, where the store says (see [`Holder`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<Holder>,
    },
    /// The first request finished with this response.
    Completed {
        /// The saved response, replayed verbatim.
        response: R,
        /// When it finished.
        at: Millis,
    },
}

/// One key's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord<R> {
    /// Fingerprint of the first request.
    pub fingerprint: Fingerprint,
    /// When the key was first seen; retention counts from here.
    pub created_at: Millis,
    /// In flight or completed.
    pub state: RecordState<R>,
}

/// What to do with a keyed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Begin<R> {
    /// First use (or first after expiry or a stale lock): run it, then [`IdempotencyStore::complete`].
    New,
    /// Already done: return this saved response, marked as a replay.
    Replay(R),
    /// The key was used for a different request: refuse (422).
    Mismatch,
    /// The first request with this key is still running: refuse (409).
    InFlight,
    /// The store holds its maximum number of records: refuse (503) and try later.
    AtCapacity,
}

/// A misuse of the two-phase protocol by the shell.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum IdempotencyError {
    /// `complete`/`abandon` for a key that is not in flight.
    #[error("idempotency key {0} is not in flight")]
    NotInFlight(IdempotencyKey),
    /// `complete` with another request's fingerprint.
    #[error("idempotency key {0} is held by a different request")]
    FingerprintMismatch(IdempotencyKey),
}

/// Limits of an [`IdempotencyStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyLimits {
    /// How long a record is kept after the key is first seen (Stripe: 24 h).
    pub retention_ms: u64,
    /// After this long an in-flight lock is presumed abandoned and can be taken over.
    pub in_flight_timeout_ms: u64,
    /// Most records held at once.
    pub max_records: usize,
}

impl Default for IdempotencyLimits {
    fn default() -> Self {
        IdempotencyLimits {
            retention_ms: 24 * 60 * 60 * 1000,
            in_flight_timeout_ms: 30_000,
            max_records: 2_000_000,
        }
    }
}

/// Every live idempotency record, by key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyStore<R> {
    records: BTreeMap<IdempotencyKey, IdempotencyRecord<R>>,
    limits: IdempotencyLimits,
}

impl<R: Clone> IdempotencyStore<R> {
    /// An empty store.
    pub fn new(limits: IdempotencyLimits) -> Self {
        IdempotencyStore {
            records: BTreeMap::new(),
            limits,
        }
    }

    fn is_expired(&self, record: &IdempotencyRecord<R>, now: Millis) -> bool {
        now.since(record.created_at) >= self.limits.retention_ms
    }

    /// Decides what a request with `key` and `fingerprint` does at `now`; on
    /// [`Begin::New`] the key is now held in flight by this request.
    pub fn begin(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        now: Millis,
    ) -> Begin<R> {
        self.begin_as(key, fingerprint, now, None)
    }

    /// [`IdempotencyStore::begin`] for a request run by `holder`, whose
    /// in-flight keys [`IdempotencyStore::release_held_by`] frees.
    pub fn begin_as(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        now: Millis,
        holder: Option<Holder>,
    ) -> Begin<R> {
        if let Some(record) = self.records.get(key)
            && !self.is_expired(record, now)
        {
            if record.fingerprint != fingerprint {
                return Begin::Mismatch;
            }
            match &record.state {
                RecordState::Completed { response, .. } => return Begin::Replay(response.clone()),
                RecordState::InFlight { since, .. }
                    if now.since(*since) < self.limits.in_flight_timeout_ms =>
                {
                    return Begin::InFlight;
                }
                // A stale lock: its holder is presumed dead; take it over below.
                RecordState::InFlight { .. } => {}
            }
        } else if self.records.len() >= self.limits.max_records && !self.records.contains_key(key) {
            return Begin::AtCapacity;
        }
        let created_at = match self.records.get(key) {
            Some(r) if !self.is_expired(r, now) => r.created_at,
            _ => now,
        };
        self.records.insert(
            key.clone(),
            IdempotencyRecord {
                fingerprint,
                created_at,
                state: RecordState::InFlight { since: now, holder },
            },
        );
        Begin::New
    }

    /// Saves the response of the in-flight request holding `key`.
    pub fn complete(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        response: R,
        now: Millis,
    ) -> Result<(), IdempotencyError> {
        let record = self.in_flight(key, fingerprint)?;
        record.state = RecordState::Completed { response, at: now };
        Ok(())
    }

    /// Drops the in-flight record: the request had no effect and may be retried as new.
    pub fn abandon(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<(), IdempotencyError> {
        self.in_flight(key, fingerprint)?;
        self.records.remove(key);
        Ok(())
    }

    /// Drops every in-flight record (each request presumed dead, as a stale
    /// lock is); completed ones stay. Returns how many went.
    pub fn release_in_flight(&mut self) -> usize {
        let before = self.records.len();
        self.records
            .retain(|_, r| !matches!(r.state, RecordState::InFlight { .. }));
        before - self.records.len()
    }

    /// Drops the in-flight records `holder` took (its process is gone);
    /// completed ones, and those of other holders, stay. Returns how many went.
    pub fn release_held_by(&mut self, holder: Holder) -> usize {
        let before = self.records.len();
        self.records.retain(
            |_, r| !matches!(r.state, RecordState::InFlight { holder: Some(h), .. } if h == holder),
        );
        before - self.records.len()
    }

    fn in_flight(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<&mut IdempotencyRecord<R>, IdempotencyError> {
        let record = self
            .records
            .get_mut(key)
            .ok_or_else(|| IdempotencyError::NotInFlight(key.clone()))?;
        if record.fingerprint != fingerprint {
            return Err(IdempotencyError::FingerprintMismatch(key.clone()));
        }
        if !matches!(record.state, RecordState::InFlight { .. }) {
            return Err(IdempotencyError::NotInFlight(key.clone()));
        }
        Ok(record)
    }

    /// Naive primitive: records `response` under `key` as completed,
    /// overwriting whatever was there (check-then-insert's second half).
    pub fn force_complete(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        response: R,
        now: Millis,
    ) {
        self.records.insert(
            key.clone(),
            IdempotencyRecord {
                fingerprint,
                created_at: now,
                state: RecordState::Completed { response, at: now },
            },
        );
    }

    /// The saved response of a completed, unexpired record.
    pub fn completed(&self, key: &IdempotencyKey, now: Millis) -> Option<&R> {
        match self.records.get(key) {
            Some(r) if !self.is_expired(r, now) => match &r.state {
                RecordState::Completed { response, .. } => Some(response),
                RecordState::InFlight { .. } => None,
            },
            _ => None,
        }
    }

    /// Whether some record has expired at `now` (what [`IdempotencyStore::expire`] would forget).
    pub fn any_expired(&self, now: Millis) -> bool {
        self.records.values().any(|r| self.is_expired(r, now))
    }

    /// Removes up to `max` records past retention; returns how many went.
    pub fn expire(&mut self, now: Millis, max: usize) -> usize {
        let doomed: Vec<IdempotencyKey> = self
            .records
            .iter()
            .filter(|(_, r)| self.is_expired(r, now))
            .take(max)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &doomed {
            self.records.remove(key);
        }
        doomed.len()
    }

    /// The record for `key`, if held (expired or not).
    pub fn get(&self, key: &IdempotencyKey) -> Option<&IdempotencyRecord<R>> {
        self.records.get(key)
    }

    /// Every record held, by key.
    pub fn records(&self) -> impl Iterator<Item = (&IdempotencyKey, &IdempotencyRecord<R>)> {
        self.records.iter()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::new(s).unwrap()
    }

    fn store() -> IdempotencyStore<&'static str> {
        IdempotencyStore::new(IdempotencyLimits {
            retention_ms: 1_000,
            in_flight_timeout_ms: 100,
            max_records: 3,
        })
    }

    #[test]
    fn first_runs_replay_returns_saved_response() {
        let mut s = store();
        let fp = Fingerprint::of(b"order:hat*1");
        assert_eq!(s.begin(&key("k"), fp, Millis(0)), Begin::New);
        s.complete(&key("k"), fp, "202 ord_1", Millis(5)).unwrap();
        assert_eq!(
            s.begin(&key("k"), fp, Millis(10)),
            Begin::Replay("202 ord_1")
        );
        assert_eq!(
            s.begin(&key("k"), fp, Millis(999)),
            Begin::Replay("202 ord_1")
        );
    }

    #[test]
    fn releasing_keys_in_flight_frees_them_and_keeps_completed_ones() {
        // Proves: every in-flight record goes (its key then begins anew before its lock would
        // have gone stale) and is counted; a completed one stays and replays; nothing in flight,
        // nothing released.
        let mut s = store();
        let fp = Fingerprint::of(b"pay");
        assert_eq!(s.begin(&key("a"), fp, Millis(0)), Begin::New);
        assert_eq!(s.begin(&key("b"), fp, Millis(0)), Begin::New);
        assert_eq!(s.begin(&key("done"), fp, Millis(0)), Begin::New);
        s.complete(&key("done"), fp, "200", Millis(1)).unwrap();
        assert_eq!(s.begin(&key("a"), fp, Millis(2)), Begin::InFlight);
        assert_eq!(s.release_in_flight(), 2);
        assert_eq!(s.begin(&key("a"), fp, Millis(3)), Begin::New);
        assert_eq!(s.begin(&key("done"), fp, Millis(3)), Begin::Replay("200"));
        assert!(s.get(&key("b")).is_none());
        assert_eq!(s.release_in_flight(), 1, "a, begun again");
        assert_eq!(s.release_in_flight(), 0);
        assert_eq!(s.begin(&key("done"), fp, Millis(4)), Begin::Replay("200"));
    }

    #[test]
    fn releasing_a_holder_frees_only_the_keys_it_holds_in_flight() {
        // Proves: the keys holder 1 took go (begun again at once, long before the 100 ms lock
        // lapses) and are counted; holder 2's key, a key with no holder and a key holder 1
        // completed stay (in flight, in flight, replayed); releasing holder 1 again finds none.
        let mut s = IdempotencyStore::new(IdempotencyLimits {
            max_records: 10,
            ..store().limits
        });
        let fp = Fingerprint::of(b"pay");
        let (one, two) = (Some(Holder(1)), Some(Holder(2)));
        assert_eq!(s.begin_as(&key("a"), fp, Millis(0), one), Begin::New);
        assert_eq!(s.begin_as(&key("b"), fp, Millis(0), one), Begin::New);
        assert_eq!(s.begin_as(&key("other"), fp, Millis(0), two), Begin::New);
        assert_eq!(s.begin(&key("nobody"), fp, Millis(0)), Begin::New);
        assert_eq!(s.begin_as(&key("done"), fp, Millis(0), one), Begin::New);
        s.complete(&key("done"), fp, "200", Millis(1)).unwrap();
        assert_eq!(s.release_held_by(Holder(1)), 2);
        assert_eq!(s.begin(&key("a"), fp, Millis(2)), Begin::New);
        assert!(s.get(&key("b")).is_none());
        assert_eq!(s.begin(&key("other"), fp, Millis(2)), Begin::InFlight);
        assert_eq!(s.begin(&key("nobody"), fp, Millis(2)), Begin::InFlight);
        assert_eq!(s.begin(&key("done"), fp, Millis(2)), Begin::Replay("200"));
        assert_eq!(s.release_held_by(Holder(1)), 0);
        assert_eq!(s.release_held_by(Holder(2)), 1);
    }

    #[test]
    fn a_holder_is_kept_in_the_record_and_left_out_of_json_when_there_is_none() {
        // Proves: a key taken by a holder serializes with it and reads back the same; a key
        // with none writes no `holder` field, so records written before holders existed read.
        let mut s = store();
        let fp = Fingerprint::of(b"pay");
        s.begin_as(&key("a"), fp, Millis(0), Some(Holder(7)));
        s.begin(&key("b"), fp, Millis(0));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json.matches("holder").count(), 1, "{json}");
        let back: IdempotencyStore<&str> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn same_key_different_request_is_a_mismatch_and_changes_nothing() {
        let mut s = store();
        let a = Fingerprint::of(b"a");
        let b = Fingerprint::of(b"b");
        assert_eq!(s.begin(&key("k"), a, Millis(0)), Begin::New);
        assert_eq!(s.begin(&key("k"), b, Millis(1)), Begin::Mismatch);
        s.complete(&key("k"), a, "ok", Millis(2)).unwrap();
        assert_eq!(s.begin(&key("k"), b, Millis(3)), Begin::Mismatch);
        assert_eq!(s.get(&key("k")).unwrap().fingerprint, a);
    }

    #[test]
    fn concurrent_duplicate_is_in_flight_until_the_lock_goes_stale() {
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        assert_eq!(s.begin(&key("k"), fp, Millis(0)), Begin::New);
        assert_eq!(s.begin(&key("k"), fp, Millis(99)), Begin::InFlight);
        // The holder crashed: after the timeout the next request takes over.
        assert_eq!(s.begin(&key("k"), fp, Millis(100)), Begin::New);
        assert_eq!(s.begin(&key("k"), fp, Millis(150)), Begin::InFlight);
    }

    #[test]
    fn records_expire_after_retention() {
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        s.begin(&key("k"), fp, Millis(0));
        s.complete(&key("k"), fp, "old", Millis(1)).unwrap();
        // Past retention the key is new again, even with another request.
        assert_eq!(
            s.begin(&key("k"), Fingerprint::of(b"b"), Millis(1_000)),
            Begin::New
        );
        assert_eq!(s.expire(Millis(1_500), 10), 0, "renewed record is young");
        assert_eq!(s.expire(Millis(2_000), 10), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn abandon_frees_the_key_and_protocol_misuse_is_an_error() {
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        assert_eq!(
            s.complete(&key("k"), fp, "x", Millis(0)),
            Err(IdempotencyError::NotInFlight(key("k")))
        );
        s.begin(&key("k"), fp, Millis(0));
        assert_eq!(
            s.abandon(&key("k"), Fingerprint::of(b"other")),
            Err(IdempotencyError::FingerprintMismatch(key("k")))
        );
        s.abandon(&key("k"), fp).unwrap();
        assert_eq!(s.begin(&key("k"), fp, Millis(1)), Begin::New);
        s.complete(&key("k"), fp, "x", Millis(2)).unwrap();
        assert_eq!(
            s.complete(&key("k"), fp, "y", Millis(3)),
            Err(IdempotencyError::NotInFlight(key("k")))
        );
    }

    #[test]
    fn the_record_count_is_bounded() {
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        for k in ["a", "b", "c"] {
            assert_eq!(s.begin(&key(k), fp, Millis(0)), Begin::New);
        }
        assert_eq!(s.begin(&key("d"), fp, Millis(0)), Begin::AtCapacity);
        // Existing keys still answer.
        assert_eq!(s.begin(&key("a"), fp, Millis(0)), Begin::InFlight);
    }

    #[test]
    fn a_saved_response_is_served_until_retention_and_not_from_then_on() {
        // Proves: `completed` returns the saved response up to created + retention - 1 and
        // nothing from created + retention on; an in-flight key has no response.
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        s.begin(&key("k"), fp, Millis(10));
        assert_eq!(s.completed(&key("k"), Millis(11)), None);
        s.complete(&key("k"), fp, "saved", Millis(12)).unwrap();
        assert_eq!(s.completed(&key("k"), Millis(1_009)), Some(&"saved"));
        assert_eq!(s.completed(&key("k"), Millis(1_010)), None);
        assert_eq!(s.completed(&key("other"), Millis(12)), None);
    }

    #[test]
    fn replays_and_locks_follow_the_retention_and_timeout_bounds() {
        // Proves: a completed key replays at created + retention - 1 and is new at created +
        // retention; a lock is held at since + timeout - 1 and taken over at since + timeout,
        // keeping the record's creation time.
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        s.begin(&key("k"), fp, Millis(0));
        s.complete(&key("k"), fp, "ok", Millis(1)).unwrap();
        assert_eq!(s.begin(&key("k"), fp, Millis(999)), Begin::Replay("ok"));
        assert_eq!(s.begin(&key("k"), fp, Millis(1_000)), Begin::New);
        assert_eq!(s.get(&key("k")).unwrap().created_at, Millis(1_000));
        assert_eq!(s.begin(&key("k"), fp, Millis(1_099)), Begin::InFlight);
        assert_eq!(s.begin(&key("k"), fp, Millis(1_100)), Begin::New);
        assert_eq!(s.get(&key("k")).unwrap().created_at, Millis(1_000));
    }

    #[test]
    fn expire_removes_only_records_past_retention_and_at_most_max() {
        // Proves: nothing goes at created + retention - 1; from created + retention records go,
        // `max` per call, and the count returned is what went; `any_expired` says so on
        // both sides.
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        for k in ["a", "b", "c"] {
            s.begin(&key(k), fp, Millis(0));
        }
        assert!(!s.any_expired(Millis(999)));
        assert_eq!(s.expire(Millis(999), 10), 0);
        assert_eq!(s.len(), 3);
        assert!(s.any_expired(Millis(1_000)));
        assert_eq!(s.expire(Millis(1_000), 2), 2);
        assert_eq!(s.len(), 1);
        assert!(!s.is_empty());
    }

    #[test]
    fn capacity_counts_expired_records_until_they_are_taken_over() {
        // Proves: a full store refuses a new key, but an expired key can be reused without
        // growing the store, and one record fewer than the maximum admits a new key.
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        for k in ["a", "b"] {
            s.begin(&key(k), fp, Millis(0));
        }
        assert_eq!(s.begin(&key("c"), fp, Millis(0)), Begin::New);
        assert_eq!(s.begin(&key("d"), fp, Millis(2_000)), Begin::AtCapacity);
        assert_eq!(s.begin(&key("a"), fp, Millis(2_000)), Begin::New);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn a_force_completed_key_replays_and_overwrites() {
        // Proves: the naive check-then-insert's write lands as a completed record, replacing
        // whatever the key held.
        let mut s = store();
        let fp = Fingerprint::of(b"a");
        s.begin(&key("k"), fp, Millis(0));
        s.force_complete(&key("k"), fp, "forced", Millis(5));
        assert_eq!(s.begin(&key("k"), fp, Millis(6)), Begin::Replay("forced"));
        assert_eq!(s.get(&key("k")).unwrap().created_at, Millis(5));
    }

    #[test]
    fn fingerprints_are_sha256_in_lower_hex() {
        // Proves: the fingerprint is SHA-256 of the canonical bytes (a known vector), shown as
        // 64 lower-case hex digits.
        let fp = Fingerprint::of(b"abc");
        assert_eq!(
            fp.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{fp:?}"), "Fingerprint(ba7816bf8f01…)");
        assert_ne!(Fingerprint::of(b"abd"), fp);
    }
}
