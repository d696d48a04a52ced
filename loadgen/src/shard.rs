//! One share of a load spread over several load generators (`stampede load
//! --shard I/N --start-at T`): what a share leaves beside its report for
//! `stampede report merge`, and how the shares' client evidence becomes one
//! history.
//!
//! A share cannot judge the audit: the shop's `/admin/audit` holds every
//! share's orders, and a share knows only what its own shoppers asked, were
//! told and were shown. So a share writes that evidence (`clients.jsonl`)
//! and what it was asked to judge (`shard.json`), and the merge judges once,
//! on every share's evidence together ([`merge_histories`]).

use crate::schedule::{Shape, Share};
use serde::{Deserialize, Serialize};
use stampede_core::{EventKind, Millis, Terms};
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::Path;

/// The share's description, beside its report.
pub const SHARD_FILE: &str = "shard.json";
/// Its shoppers' evidence for the audit: one `[at_ms, event]` per line.
pub const CLIENTS_FILE: &str = "clients.jsonl";
/// Version of [`SHARD_FILE`]'s schema.
pub const SHARD_VERSION: u32 = 1;
/// Longest line of [`CLIENTS_FILE`] read back, bytes (an event is a few
/// hundred).
pub const CLIENT_LINE_BYTES_MAX: usize = 64 * 1024;
/// Largest `shard.json` read back, bytes.
pub const SHARD_FILE_BYTES_MAX: u64 = 1 << 20;

/// What one share was asked to do: what the merge checks the shares agree
/// on, and what it judges with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// [`SHARD_VERSION`].
    pub version: u32,
    /// Which part of the whole schedule it ran.
    pub share: Share,
    /// When load began, unix ms: the `--start-at` every share was given.
    pub start_unix_ms: u64,
    /// Prefix of its keys and customer ids.
    pub run_id: String,
    /// The whole schedule: journeys per second, shape and length.
    pub rate_per_sec: f64,
    /// How the rate varies.
    pub shape: Shape,
    /// The load phase, ms.
    pub duration_ms: u64,
    /// Timeline interval, ms.
    pub interval_ms: u64,
    /// Seed of the shoppers' choices.
    pub seed: u64,
    /// The `--threshold` rules it was given, as written (judged by the merge).
    pub thresholds: Vec<String>,
    /// The invariants it was told not to judge (`--skip`), by name.
    pub skip: Vec<String>,
    /// The promises the audit holds the shop to.
    pub terms: Terms,
    /// How many events its [`CLIENTS_FILE`] holds, one a line, so a file
    /// cut short (even at a line's end) is refused, not judged as if its
    /// missing evidence had never been.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<u64>,
    /// What its shoppers did (`--mix`): shares of one run do the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<crate::Mix>,
}

impl ShardRecord {
    /// Reads `dir/shard.json`.
    pub fn read(dir: &Path) -> Result<ShardRecord, String> {
        let path = dir.join(SHARD_FILE);
        let text = stampede_server::files::read_text_bounded(&path, SHARD_FILE_BYTES_MAX).map_err(
            |e| {
                format!(
                    "{}: {e} (is it a shard of `stampede load --shard`?)",
                    path.display()
                )
            },
        )?;
        let record: ShardRecord =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if record.version != SHARD_VERSION {
            return Err(format!(
                "{}: version {} (this Stampede reads {SHARD_VERSION})",
                path.display(),
                record.version
            ));
        }
        Ok(record)
    }

    /// Writes `dir/shard.json`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let path = dir.join(SHARD_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Writes the client events to `dir/clients.jsonl`.
pub fn write_clients(dir: &Path, events: &[(Millis, EventKind)]) -> Result<(), String> {
    let path = dir.join(CLIENTS_FILE);
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut out = BufWriter::new(std::fs::File::create(&path).map_err(fail)?);
    for (at, event) in events {
        serde_json::to_writer(&mut out, &(at.0, event)).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(fail)?;
    }
    out.flush().map_err(fail)
}

/// The events `dir/clients.jsonl` holds: its lines, counted without
/// reading it whole.
pub fn count_clients(dir: &Path) -> Result<u64, String> {
    use std::io::Read;
    let path = dir.join(CLIENTS_FILE);
    let mut file = stampede_server::files::open_regular(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut lines = 0u64;
    loop {
        let n = file
            .read(&mut chunk)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += chunk[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// Reads `dir/clients.jsonl`: at most `events_max` events, each line at
/// most [`CLIENT_LINE_BYTES_MAX`]; errors name the file and line. With
/// `expected`, the file must hold exactly that many events.
pub fn read_clients_checked(
    dir: &Path,
    events_max: usize,
    expected: Option<u64>,
) -> Result<Vec<(Millis, EventKind)>, String> {
    let events = read_clients(dir, events_max)?;
    match expected {
        Some(n) if n != events.len() as u64 => Err(format!(
            "{}: {} events, but its shard.json says {n} were written: cut short or edited",
            dir.join(CLIENTS_FILE).display(),
            events.len()
        )),
        _ => Ok(events),
    }
}

/// Reads `dir/clients.jsonl`: at most `events_max` events, each line at
/// most [`CLIENT_LINE_BYTES_MAX`]; errors name the file and line.
pub fn read_clients(dir: &Path, events_max: usize) -> Result<Vec<(Millis, EventKind)>, String> {
    let path = dir.join(CLIENTS_FILE);
    let file = stampede_server::files::open_regular(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut events = Vec::new();
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(CLIENT_LINE_BYTES_MAX as u64 + 1)
            .read_line(&mut line)
            .map_err(|e| format!("{} line {number}: {e}", path.display()))?;
        if read == 0 {
            break;
        }
        if read > CLIENT_LINE_BYTES_MAX || events.len() >= events_max {
            return Err(format!(
                "{} line {number}: more than {CLIENT_LINE_BYTES_MAX} bytes, or more than {events_max} events",
                path.display()
            ));
        }
        let (at, event): (u64, EventKind) = serde_json::from_str(&line)
            .map_err(|e| format!("{} line {number}: {e}", path.display()))?;
        events.push((Millis(at), event));
    }
    Ok(events)
}

/// The promises `t` holds the shop to, as the flags that set them.
fn promised(t: &Terms) -> String {
    let hold = t
        .hold_ms
        .map_or("no hold".to_string(), |ms| format!("--hold {ms} ms"));
    let waitlist = t
        .waitlist_offer_ms
        .map_or(String::new(), |ms| format!(", waitlisted within {ms} ms"));
    format!(
        "({hold}, payment offered within {} ms{waitlist}, decided within {} ms)",
        t.offer_payment_ms, t.decide_ms
    )
}

/// One history from every share's client events, each share's own order
/// kept (a share's requests precede their responses), interleaved by time.
/// Request numbers are per share, so each share's are moved past the
/// previous shares' (a response keeps its request); the terms each share
/// opened with must agree and are kept once. Journeys are numbered in the
/// whole schedule, so their client numbers are already distinct.
pub fn merge_histories(
    shares: Vec<Vec<(Millis, EventKind)>>,
) -> Result<Vec<(Millis, EventKind)>, String> {
    let mut terms: Option<Terms> = None;
    let mut queues = Vec::with_capacity(shares.len());
    let mut offset = 0u64;
    for (i, events) in shares.into_iter().enumerate() {
        let mut top = 0u64;
        let mut kept = Vec::with_capacity(events.len());
        for (at, mut event) in events {
            match &mut event {
                EventKind::Terms(t) => match terms {
                    None => terms = Some(*t),
                    Some(first) if first == *t => continue,
                    Some(first) => {
                        return Err(format!(
                            "share {} promised {}, the first {}: give every shard the same promise flags",
                            i + 1,
                            promised(t),
                            promised(&first)
                        ));
                    }
                },
                EventKind::Request { req, .. } | EventKind::Response { req, .. } => {
                    top = top.max(*req + 1);
                    *req += offset;
                }
                _ => {}
            }
            kept.push((at, event));
        }
        offset += top;
        queues.push(kept.into_iter().peekable());
    }
    let total = queues.iter().map(|q| q.len()).sum();
    let mut merged = Vec::with_capacity(total);
    // Each step takes the earliest head (the lowest share on ties): `total` steps.
    for _ in 0..total {
        let next = queues
            .iter_mut()
            .enumerate()
            .filter_map(|(i, q)| q.peek().map(|(at, _)| (*at, i)))
            .min()
            .map(|(_, i)| i);
        if let Some(event) = next.and_then(|i| queues[i].next()) {
            merged.push(event);
        }
    }
    debug_assert_eq!(merged.len(), total);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_core::{ClientOp, ClientReply};

    fn request(at: u64, req: u64) -> (Millis, EventKind) {
        (
            Millis(at),
            EventKind::Request {
                req,
                op: ClientOp::GetOrder {
                    order: stampede_core::OrderId(req),
                },
                fingerprint: None,
            },
        )
    }

    fn response(at: u64, req: u64) -> (Millis, EventKind) {
        (
            Millis(at),
            EventKind::Response {
                req,
                reply: ClientReply::NoResponse {
                    reason: "test".into(),
                },
            },
        )
    }

    #[test]
    fn shares_histories_interleave_by_time_with_distinct_requests_and_one_terms() {
        // Proves: two shares' events come out ordered by time, each share's
        // own order kept even where its clock went back; the second share's
        // requests are numbered past the first's and its responses follow;
        // the terms appear once; differing terms are refused.
        let terms = (Millis(0), EventKind::Terms(Terms::default()));
        let a = vec![terms.clone(), request(5, 0), response(4, 0), request(9, 1)];
        let b = vec![terms.clone(), request(1, 0), response(7, 0)];
        let merged = merge_histories(vec![a, b]).unwrap();
        let seen: Vec<(u64, String)> = merged
            .iter()
            .map(|(at, e)| {
                let what = match e {
                    EventKind::Terms(_) => "terms".to_string(),
                    EventKind::Request { req, .. } => format!("req {req}"),
                    EventKind::Response { req, .. } => format!("resp {req}"),
                    other => format!("{other:?}"),
                };
                (at.0, what)
            })
            .collect();
        let want: Vec<(u64, String)> = [
            (0, "terms"),
            (1, "req 2"),
            (5, "req 0"),
            (4, "resp 0"),
            (7, "resp 2"),
            (9, "req 1"),
        ]
        .iter()
        .map(|(at, w)| (*at, w.to_string()))
        .collect();
        assert_eq!(seen, want);
        let other = Terms {
            decide_ms: 1,
            ..Terms::default()
        };
        let c = vec![(Millis(0), EventKind::Terms(other))];
        let error = merge_histories(vec![vec![terms], c]).unwrap_err();
        assert!(error.contains("share 2 promised"), "{error}");
        assert!(
            error.contains("decided within 1 ms") && !error.contains("Terms {"),
            "{error}"
        );
    }

    #[test]
    fn client_evidence_round_trips_and_bad_lines_are_named() {
        // Proves: events written are read back equal; a file holding fewer
        // events than its shard.json counts (cut at a line's end) is refused;
        // a malformed line and one past the event bound are refused naming
        // the file and line.
        let dir = std::env::temp_dir().join(format!("stampede-clients-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let events = vec![request(1, 0), response(2, 0)];
        write_clients(&dir, &events).unwrap();
        assert_eq!(read_clients(&dir, 2).unwrap(), events);
        // The count shard.json keeps: the file as written passes; cut at a line's end, not.
        assert_eq!(count_clients(&dir).unwrap(), 2);
        assert_eq!(read_clients_checked(&dir, 10, Some(2)).unwrap(), events);
        let whole = std::fs::read_to_string(dir.join(CLIENTS_FILE)).unwrap();
        let first_line = whole.split_inclusive('\n').next().unwrap();
        std::fs::write(dir.join(CLIENTS_FILE), first_line).unwrap();
        let error = read_clients_checked(&dir, 10, Some(2)).unwrap_err();
        assert!(
            error.contains("1 events") && error.contains("cut short"),
            "{error}"
        );
        assert_eq!(
            read_clients_checked(&dir, 10, None).unwrap().len(),
            1,
            "an older shard"
        );
        write_clients(&dir, &events).unwrap();
        let error = read_clients(&dir, 1).unwrap_err();
        assert!(error.contains("clients.jsonl line 2"), "{error}");
        std::fs::write(dir.join(CLIENTS_FILE), "[1, {\"event\": \"nope\"}]\n").unwrap();
        let error = read_clients(&dir, 10).unwrap_err();
        assert!(error.contains("clients.jsonl line 1"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
