//! The story of a violation: the orders and keys behind it, told as a
//! swim-lane timeline (`stampede explain`).
//!
//! A [`Story`] is picked out of a run's history: starting from a subject (an
//! order, an Idempotency-Key, or a SKU with the events that showed its
//! violation), it follows keys to the orders acknowledged under them and
//! orders to the keys they were placed with, then keeps every event that
//! touches one of them — what each shopper asked, was told and was shown,
//! each transition (in the lane of whoever made it: API, worker, webhook,
//! sweeper, reconciler), job, and PSP ledger line — with every fault of the
//! run in its own lane. Key decision: the story is plain data, chosen once;
//! the terminal text and the SVG only draw it, so they never disagree.
//! Bounded: at most [`STORY_THREADS_MAX`] orders and keys and
//! [`STORY_BEATS_MAX`] events (the story says how many it left out).

use crate::plot::{self, PlotResult};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use stampede_core::{
    Cause, ClientOp, ClientReply, EventKind, History, IdempotencyKey, JobEvent, OrderId, Subject,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Most orders and keys one story follows.
pub const STORY_THREADS_MAX: usize = 12;
/// Most events one story tells.
pub const STORY_BEATS_MAX: usize = 400;

/// The first violation of one invariant, as a run's `summary.json` keeps it
/// so that `stampede explain` can start from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    /// The invariant's name.
    pub invariant: String,
    /// What the violation is about.
    pub subject: Subject,
    /// What is wrong.
    pub detail: String,
    /// History indices of the events that show it.
    pub evidence: Vec<usize>,
}

/// One event of a story.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Beat {
    /// Its index in the history.
    pub index: usize,
    /// When, ms of simulated (or real) time.
    pub at_ms: u64,
    /// Its lane, an index into [`Story::lanes`].
    pub lane: usize,
    /// What happened, in words.
    pub text: String,
    /// Whether the violation cites it as evidence.
    pub evidence: bool,
}

/// A story: lanes, beats in time order, and what was left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Story {
    /// What it is the story of, e.g. `key order-100`.
    pub subject: String,
    /// The violation told, when it started from one: `invariant: detail`.
    pub violation: Option<String>,
    /// The orders and keys followed.
    pub threads: Vec<String>,
    /// Lane names, in order of first appearance (shoppers first).
    pub lanes: Vec<String>,
    /// The events told.
    pub beats: Vec<Beat>,
    /// Events that touched the story but were left out by the bound.
    pub omitted: usize,
}

/// What a story starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// A violation: its subject and evidence.
    Lead(Lead),
    /// One order.
    Order(OrderId),
    /// One Idempotency-Key.
    Key(IdempotencyKey),
}

/// The orders and keys an event touches.
fn touches(kind: &EventKind, answered: &BTreeMap<u64, usize>, history: &History) -> Touch {
    let mut t = Touch::default();
    match kind {
        EventKind::Request { op, .. } => op_touch(op, &mut t),
        EventKind::Response { req, reply } => {
            if let Some(&i) = answered.get(req)
                && let EventKind::Request { op, .. } = &history.events()[i].kind
            {
                op_touch(op, &mut t);
            }
            match reply {
                ClientReply::OrderAccepted { order, .. }
                | ClientReply::PaymentStarted { order, .. }
                | ClientReply::Status { order, .. } => t.orders.push(*order),
                _ => {}
            }
        }
        EventKind::Observed { order, .. } | EventKind::Job { order, .. } => t.orders.push(*order),
        EventKind::Transition(tr) => t.orders.push(tr.order),
        EventKind::Ledger(l) => t.orders.push(l.order),
        EventKind::Wants { key, .. } => t.keys.push(key.clone()),
        _ => {}
    }
    t
}

#[derive(Default)]
struct Touch {
    orders: Vec<OrderId>,
    keys: Vec<IdempotencyKey>,
}

fn op_touch(op: &ClientOp, t: &mut Touch) {
    match op {
        ClientOp::PlaceOrder(p) => t.keys.extend(p.key.clone()),
        ClientOp::Pay { order, key } => {
            t.orders.push(*order);
            t.keys.extend(key.clone());
        }
        ClientOp::Cancel { order } | ClientOp::GetOrder { order } => t.orders.push(*order),
        ClientOp::ConfirmPayment { .. } => {}
    }
}

/// The story `start` tells in `history`: pick the threads, follow them,
/// gather the beats that touch them.
pub fn story(history: &History, start: &Start) -> Story {
    let answered = requests_by_id(history);
    let (subject, violation, evidence) = heading(start);
    let mut threads = Threads::starting(start, history, &answered);
    threads.follow(history, &answered);
    let evidence: BTreeSet<usize> = evidence.into_iter().collect();
    let (lanes, mut beats, omitted) = gather_beats(history, &answered, &threads, &evidence);
    // In time order: a history may append some lines late (the PSP's ledger).
    beats.sort_by_key(|b| (b.at_ms, b.index));
    Story {
        subject,
        violation,
        threads: threads.names(),
        lanes,
        beats,
        omitted,
    }
}

/// The history index of each client request, by request number (the first
/// request of a number, should one repeat): what a response answers.
fn requests_by_id(history: &History) -> BTreeMap<u64, usize> {
    let mut answered: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, e) in history.events().iter().enumerate() {
        if let EventKind::Request { req, .. } = &e.kind {
            answered.entry(*req).or_insert(i);
        }
    }
    answered
}

/// What the story is of, the violation it tells (if any), and its evidence.
fn heading(start: &Start) -> (String, Option<String>, Vec<usize>) {
    match start {
        Start::Order(o) => (format!("order {o}"), None, Vec::new()),
        Start::Key(k) => (format!("key {k}"), None, Vec::new()),
        Start::Lead(lead) => (
            lead.subject.to_string(),
            Some(format!("{}: {}", lead.invariant, lead.detail)),
            lead.evidence.clone(),
        ),
    }
}

/// The orders and keys a story follows.
struct Threads {
    orders: BTreeSet<OrderId>,
    keys: BTreeSet<IdempotencyKey>,
}

impl Threads {
    /// The start's own order or key and, from a lead, whatever its evidence
    /// touches (all of it: the bound applies to what following adds).
    fn starting(start: &Start, history: &History, answered: &BTreeMap<u64, usize>) -> Threads {
        let mut threads = Threads {
            orders: BTreeSet::new(),
            keys: BTreeSet::new(),
        };
        match start {
            Start::Order(o) => {
                threads.orders.insert(*o);
            }
            Start::Key(k) => {
                threads.keys.insert(k.clone());
            }
            Start::Lead(lead) => {
                match &lead.subject {
                    Subject::Order(o) => {
                        threads.orders.insert(*o);
                    }
                    Subject::Key(k) => {
                        threads.keys.insert(k.clone());
                    }
                    Subject::Sku(_) => {}
                }
                for &i in &lead.evidence {
                    if let Some(e) = history.events().get(i) {
                        let t = touches(&e.kind, answered, history);
                        threads.orders.extend(t.orders);
                        threads.keys.extend(t.keys);
                    }
                }
            }
        }
        threads
    }

    fn len(&self) -> usize {
        self.orders.len() + self.keys.len()
    }

    /// Whether `t` touches an order or key followed.
    fn touched_by(&self, t: &Touch) -> bool {
        t.orders.iter().any(|o| self.orders.contains(o))
            || t.keys.iter().any(|k| self.keys.contains(k))
    }

    /// Follows keys to their orders and orders to their keys through the
    /// client's requests and responses, until nothing new: each round adds a
    /// thread or ends, so there are at most [`STORY_THREADS_MAX`] rounds.
    fn follow(&mut self, history: &History, answered: &BTreeMap<u64, usize>) {
        for _ in 0..STORY_THREADS_MAX {
            let before = self.len();
            for e in history.events() {
                if !matches!(
                    &e.kind,
                    EventKind::Response { .. } | EventKind::Request { .. }
                ) {
                    continue;
                }
                let t = touches(&e.kind, answered, history);
                if self.touched_by(&t) {
                    self.add_bounded(t);
                }
            }
            if self.len() == before {
                break;
            }
        }
    }

    /// Adds `t`'s keys, then its orders, while fewer than
    /// [`STORY_THREADS_MAX`] are followed.
    fn add_bounded(&mut self, t: Touch) {
        for k in t.keys {
            if self.len() >= STORY_THREADS_MAX {
                return;
            }
            self.keys.insert(k);
        }
        for o in t.orders {
            if self.len() >= STORY_THREADS_MAX {
                return;
            }
            self.orders.insert(o);
        }
    }

    /// Keys first, then orders, each in order.
    fn names(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("key {k}"))
            .chain(self.orders.iter().map(|o| format!("order {o}")))
            .collect()
    }
}

/// The lanes, in order of first appearance, and the first
/// [`STORY_BEATS_MAX`] events (in history order) that touch a thread, are
/// evidence or are faults; and how many more there were.
fn gather_beats(
    history: &History,
    answered: &BTreeMap<u64, usize>,
    threads: &Threads,
    evidence: &BTreeSet<usize>,
) -> (Vec<String>, Vec<Beat>, usize) {
    let events = history.events();
    let client_of_key: BTreeMap<&IdempotencyKey, u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Wants { client, key, .. } => Some((key, *client)),
            _ => None,
        })
        .collect();
    // Which shopper an order is: learnt as events pass (a placement by its key, what a
    // shopper was shown), so a later request naming only the order (a pay, a cancel, a
    // poll) sits in that shopper's lane.
    let mut client_of_order: BTreeMap<OrderId, u64> = BTreeMap::new();
    let mut lanes: Vec<String> = Vec::new();
    let mut beats = Vec::new();
    let mut omitted = 0;
    for (i, e) in events.iter().enumerate() {
        let t = touches(&e.kind, answered, history);
        let client = match &e.kind {
            EventKind::Observed { client, .. } => Some(*client),
            EventKind::Request { .. } | EventKind::Response { .. } => t
                .keys
                .iter()
                .find_map(|k| client_of_key.get(k).copied())
                .or_else(|| {
                    t.orders
                        .iter()
                        .find_map(|o| client_of_order.get(o).copied())
                }),
            _ => None,
        };
        if let Some(client) = client {
            for order in &t.orders {
                client_of_order.entry(*order).or_insert(client);
            }
        }
        let fault = matches!(e.kind, EventKind::Fault { .. });
        if !(fault || evidence.contains(&i) || threads.touched_by(&t)) {
            continue;
        }
        if beats.len() >= STORY_BEATS_MAX {
            omitted += 1;
            continue;
        }
        let lane = lane_name(&e.kind, client);
        beats.push(Beat {
            index: i,
            at_ms: e.at.0,
            lane: lane_index(&mut lanes, lane),
            text: say(&e.kind),
            evidence: evidence.contains(&i),
        });
    }
    (lanes, beats, omitted)
}

/// Whose lane an event is in: the shopper's (`client`: by the key they
/// planned with or the order they placed; `shoppers` when unknown), or
/// whoever made a transition, ran a job, moved money or broke something.
fn lane_name(kind: &EventKind, client: Option<u64>) -> String {
    match kind {
        EventKind::Observed { client, .. } | EventKind::Wants { client, .. } => {
            format!("shopper {client}")
        }
        EventKind::Request { .. } | EventKind::Response { .. } => {
            client.map_or("shoppers".to_string(), |c| format!("shopper {c}"))
        }
        EventKind::Transition(tr) => match tr.cause {
            Cause::Worker { .. } => "worker".into(),
            Cause::Webhook { .. } => "webhook".into(),
            Cause::Reconciler => "reconciler".into(),
            Cause::Sweeper => "sweeper".into(),
            Cause::Customer => "api".into(),
        },
        EventKind::Job { .. } => "worker".into(),
        EventKind::Ledger(_) => "psp".into(),
        EventKind::Fault { .. } => "faults".into(),
        _ => "shop".into(),
    }
}

/// The index of lane `name`, added at the end when new.
fn lane_index(lanes: &mut Vec<String>, name: String) -> usize {
    match lanes.iter().position(|l| *l == name) {
        Some(i) => i,
        None => {
            lanes.push(name);
            lanes.len() - 1
        }
    }
}

/// One event in words.
pub(crate) fn say(kind: &EventKind) -> String {
    match kind {
        EventKind::Request { req, op, .. } => match op {
            ClientOp::PlaceOrder(p) => {
                let items: Vec<String> = p
                    .items
                    .iter()
                    .map(|i| format!("{}x{}", i.qty, i.sku))
                    .collect();
                let key = p
                    .key
                    .as_ref()
                    .map_or("no key".into(), |k| format!("key {k}"));
                format!("asks #{req}: place order, {key}, {}", items.join(" "))
            }
            ClientOp::Pay { order, key } => {
                let key = key.as_ref().map_or("no key".into(), |k| format!("key {k}"));
                format!("asks #{req}: pay {order}, {key}")
            }
            ClientOp::Cancel { order } => format!("asks #{req}: cancel {order}"),
            other => format!("asks #{req}: {}", json(other)),
        },
        EventKind::Response { req, reply } => match reply {
            ClientReply::OrderAccepted { order, replayed } => {
                let again = if *replayed { " (replayed)" } else { "" };
                format!("told #{req}: accepted {order}{again}")
            }
            ClientReply::Refused { status, problem } => {
                format!("told #{req}: {status} {problem}")
            }
            other => format!("told #{req}: {}", json(other)),
        },
        EventKind::Observed { order, status, .. } => format!("sees {order} {status}"),
        EventKind::Transition(t) => format!("{} {} → {}", t.order, t.from, t.to),
        EventKind::Ledger(l) => {
            format!("{:?} {} on {} for {}", l.kind, l.amount, l.intent, l.order)
        }
        EventKind::Job { kind, order, what } => {
            let what = match what {
                JobEvent::Leased { attempt } => format!("leased (attempt {attempt})"),
                JobEvent::Acked => "done".to_string(),
                JobEvent::Failed { error } => format!("failed: {error}"),
                JobEvent::DeadLettered => "given up (dead-lettered)".to_string(),
            };
            format!("{kind:?} job for {order} {what}")
        }
        EventKind::Fault { what } => what.clone(),
        EventKind::Wants { key, wish, .. } => format!(
            "means to {} (key {key}, thinks {} ms)",
            if wish.willing() {
                "buy"
            } else {
                "look, not pay"
            },
            wish.think_ms
        ),
        other => json(other),
    }
}

/// Compact JSON, for events without words of their own.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `1.105s`.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// The story as terminal text: a header, then one line per beat (time,
/// lane, what; `*` marks the violation's evidence).
pub fn render_story_text(s: &Story) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "The story of {}", s.subject);
    if let Some(v) = &s.violation {
        let _ = writeln!(out, "  {v}");
    }
    let _ = writeln!(out, "  following: {}", s.threads.join(", "));
    let width = s.lanes.iter().map(|l| l.chars().count()).max().unwrap_or(4);
    let _ = writeln!(out);
    for b in &s.beats {
        let mark = if b.evidence { '*' } else { ' ' };
        let _ = writeln!(
            out,
            "{mark} {:>9}  {:<width$}  {}",
            seconds(b.at_ms),
            s.lanes[b.lane],
            b.text
        );
    }
    if s.omitted > 0 {
        let _ = writeln!(
            out,
            "  … and {} more events (at most {STORY_BEATS_MAX} are told)",
            s.omitted
        );
    }
    if s.beats.iter().any(|b| b.evidence) {
        let _ = writeln!(out, "\n  * cited as evidence of the violation");
    }
    out
}

/// Pixels per lane, per step of the timeline (at least), of the timeline
/// (at least), and of the lane names.
const LANE_PX: u32 = 44;
const STEP_PX_MIN: u32 = 22;
const TIMELINE_PX: u32 = 1100;
const LABEL_PX: u32 = 130;
/// Where the lanes start, px from the top: below the title and the violation.
const LANES_TOP_PX: i32 = 56;
/// Height of one row of the beat list beneath the lanes, px.
const LIST_ROW_PX: u32 = 18;
/// A pause between two beats longer than this is marked on the timeline, ms.
const GAP_MARKED_MS: u64 = 500;

/// The SVG area a story is drawn on.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The story as a standalone SVG: one lane per actor and one step per beat,
/// left to right in history order (pauses over half a second marked with
/// their length), each beat a numbered dot — red when it is the violation's
/// evidence, with a band across every lane when it is a fault — and the
/// numbered beats listed beneath with their times.
pub fn render_story_svg(s: &Story) -> Result<String, String> {
    let at = Layout::of(s);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (at.width, at.height)).into_drawing_area();
        draw_story(&root, s, &at).map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Where the parts of a story's SVG go, px.
struct Layout {
    /// Width of one step; one beat per step.
    step: u32,
    /// Steps drawn (at least one).
    steps: u32,
    /// Lanes drawn (at least one).
    lanes: u32,
    width: u32,
    height: u32,
}

impl Layout {
    fn of(s: &Story) -> Layout {
        let lanes = s.lanes.len().max(1) as u32;
        let steps = s.beats.len().max(1) as u32;
        let step = (TIMELINE_PX / steps).max(STEP_PX_MIN);
        let list_px = LIST_ROW_PX * (s.beats.len() as u32 + 3);
        Layout {
            step,
            steps,
            lanes,
            width: (LABEL_PX + step * steps + 30).max(900),
            height: LANES_TOP_PX as u32 + LANE_PX * lanes + 30 + list_px,
        }
    }

    /// The middle of step `n`.
    fn x(&self, n: usize) -> i32 {
        LABEL_PX as i32 + (n as u32 * self.step + self.step / 2) as i32
    }

    /// The top of lane `lane`.
    fn lane_y(lane: usize) -> i32 {
        LANES_TOP_PX + (lane as u32 * LANE_PX) as i32
    }

    /// The bottom of the last lane.
    fn bottom(&self) -> i32 {
        LANES_TOP_PX + (self.lanes * LANE_PX) as i32
    }

    /// The right end of the last step.
    fn right(&self) -> i32 {
        LABEL_PX as i32 + (self.steps * self.step) as i32
    }
}

/// Lanes first, beats over them (each pause marked before its beat), then the list beneath.
fn draw_story(root: &Area<'_>, s: &Story, at: &Layout) -> PlotResult {
    root.fill(&WHITE)?;
    draw_heading(root, s)?;
    draw_lanes(root, s, at)?;
    for (n, b) in s.beats.iter().enumerate() {
        let pause = n
            .checked_sub(1)
            .map_or(0, |p| b.at_ms.saturating_sub(s.beats[p].at_ms));
        if pause > GAP_MARKED_MS {
            draw_pause(root, at, n, pause)?;
        }
        draw_beat(root, s, at, n)?;
    }
    draw_list(root, s, at)?;
    root.present()
}

/// Lane names and the violation's words.
fn label_font() -> TextStyle<'static> {
    ("sans-serif", 13).into_font().color(&BLACK)
}

/// The beat list's columns.
fn mono(c: &RGBColor) -> TextStyle<'static> {
    ("monospace", 12).into_font().color(c)
}

/// Small centred text just above a point: a pause's length, a beat's number.
fn small_above(c: &RGBColor) -> TextStyle<'static> {
    ("sans-serif", 10)
        .into_font()
        .color(c)
        .pos(Pos::new(HPos::Center, VPos::Bottom))
}

/// The title and the violation told (its first 160 characters).
fn draw_heading(root: &Area<'_>, s: &Story) -> PlotResult {
    let title = format!("The story of {}", s.subject);
    root.draw(&Text::new(
        title,
        (10, 8),
        ("sans-serif", 15).into_font().style(FontStyle::Bold),
    ))?;
    if let Some(v) = &s.violation {
        let v: String = v.chars().take(160).collect();
        root.draw(&Text::new(v, (10, 30), label_font()))?;
    }
    Ok(())
}

/// Each lane as a band, shaded every other one, with its name on the left.
fn draw_lanes(root: &Area<'_>, s: &Story, at: &Layout) -> PlotResult {
    for (i, lane) in s.lanes.iter().enumerate() {
        let y = Layout::lane_y(i);
        let shade = if i % 2 == 0 {
            RGBColor(0xf4, 0xf6, 0xf8)
        } else {
            WHITE
        };
        root.draw(&Rectangle::new(
            [(LABEL_PX as i32, y), (at.right(), y + LANE_PX as i32)],
            shade.filled(),
        ))?;
        root.draw(&Text::new(
            lane.clone(),
            (8, y + LANE_PX as i32 / 2),
            label_font().pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// A grey line before step `n`, across every lane, labelled with the pause's length.
fn draw_pause(root: &Area<'_>, at: &Layout, n: usize, pause_ms: u64) -> PlotResult {
    let grey = RGBColor(0x99, 0x99, 0x99);
    let gx = at.x(n) - (at.step / 2) as i32;
    root.draw(&PathElement::new(
        vec![(gx, LANES_TOP_PX - 4), (gx, at.bottom())],
        grey,
    ))?;
    let gap = format!("+{}", seconds(pause_ms));
    root.draw(&Text::new(gap, (gx, LANES_TOP_PX - 6), small_above(&grey)))
}

/// Beat `n` as a numbered dot in its lane (red when it is evidence), a
/// fault with a band across every lane.
fn draw_beat(root: &Area<'_>, s: &Story, at: &Layout, n: usize) -> PlotResult {
    let b = &s.beats[n];
    let cx = at.x(n);
    let cy = Layout::lane_y(b.lane) + LANE_PX as i32 / 2;
    if s.lanes[b.lane] == "faults" {
        root.draw(&Rectangle::new(
            [(cx - 3, LANES_TOP_PX), (cx + 3, at.bottom())],
            plot::colour(1).mix(0.35).filled(),
        ))?;
    }
    let colour = if b.evidence {
        plot::colour(3)
    } else {
        plot::colour(0)
    };
    root.draw(&Circle::new((cx, cy), 5, colour.filled()))?;
    root.draw(&Text::new(
        (n + 1).to_string(),
        (cx, cy - 8),
        small_above(&BLACK),
    ))
}

/// The beats listed beneath the lanes, one row each (mark, number, time,
/// lane, words; evidence in red), then how many were left out.
fn draw_list(root: &Area<'_>, s: &Story, at: &Layout) -> PlotResult {
    let row_y = |n: usize| at.bottom() + 24 + LIST_ROW_PX as i32 * n as i32;
    for (n, b) in s.beats.iter().enumerate() {
        let colour = if b.evidence { plot::colour(3) } else { BLACK };
        let mark = if b.evidence { "*" } else { "" };
        let columns = [
            (10, mark.to_string()),
            (24, (n + 1).to_string()),
            (64, seconds(b.at_ms)),
            (144, s.lanes[b.lane].clone()),
            (264, b.text.clone()),
        ];
        for (cx, text) in columns {
            root.draw(&Text::new(text, (cx, row_y(n)), mono(&colour)))?;
        }
    }
    if s.omitted > 0 {
        let more = format!(
            "… and {} more events (at most {STORY_BEATS_MAX} are told)",
            s.omitted
        );
        root.draw(&Text::new(more, (24, row_y(s.beats.len())), mono(&BLACK)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_core::{
        CancelReason, ItemRequest, JobId, Millis, OrderStatus, PlaceOrder, Sku, Transition, Wish,
    };

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey::new(k).unwrap()
    }

    /// A double click (two requests, one key, two orders), another shopper's unrelated order,
    /// a fault, and both of the double-clicker's orders cancelled by a worker. Returns the
    /// history and the indices of the two acknowledgements.
    fn double_click() -> (History, [usize; 2]) {
        let mut h = History::new();
        let wish = Wish {
            buys: true,
            card_accepted: true,
            express: false,
            think_ms: 100,
            sends_prices: false,
        };
        let place = |k: &str| {
            ClientOp::PlaceOrder(PlaceOrder {
                key: Some(key(k)),
                customer: stampede_core::CustomerId::new(format!("c-{k}")).unwrap(),
                items: vec![ItemRequest {
                    sku: Sku::new("hat").unwrap(),
                    qty: 1,
                }],
                express: false,
            })
        };
        let request = |req, op| EventKind::Request {
            req,
            op,
            fingerprint: None,
        };
        let accepted = |req, order| EventKind::Response {
            req,
            reply: ClientReply::OrderAccepted {
                order: OrderId(order),
                replayed: false,
            },
        };
        h.push(
            Millis(0),
            EventKind::Wants {
                client: 1,
                key: key("k1"),
                wish,
            },
        );
        h.push(
            Millis(0),
            EventKind::Wants {
                client: 2,
                key: key("k2"),
                wish,
            },
        );
        h.push(Millis(1), request(1, place("k1")));
        h.push(Millis(1), request(2, place("k1")));
        h.push(Millis(2), request(3, place("k2")));
        let first = h.push(Millis(5), accepted(1, 10));
        let second = h.push(Millis(6), accepted(2, 11));
        h.push(Millis(7), accepted(3, 12));
        h.push(
            Millis(8),
            EventKind::Fault {
                what: "crash api for 1 s".into(),
            },
        );
        for order in [10, 11, 12] {
            let t = Transition {
                order: OrderId(order),
                from: OrderStatus::Created,
                to: OrderStatus::Cancelled(CancelReason::OutOfStock),
                at: Millis(900),
                cause: Cause::Worker { job: JobId(order) },
            };
            h.push(Millis(900), EventKind::Transition(t));
        }
        (h, [first, second])
    }

    /// The double click's violation: one key, two orders, shown by the two acknowledgements.
    fn double_click_lead(evidence: [usize; 2]) -> Lead {
        Lead {
            invariant: "one_order_per_key".into(),
            subject: Subject::Key(key("k1")),
            detail: "one key, 2 orders".into(),
            evidence: evidence.to_vec(),
        }
    }

    #[test]
    fn a_key_s_story_follows_its_orders_and_leaves_other_shoppers_out() {
        // Proves: from a key violation (evidence: the two acknowledgements) the story follows
        // the key to both orders it got, tells the plan, both requests, both answers (marked as
        // evidence), the fault and both cancellations in the lanes of who made them, and leaves
        // out the other shopper's key, request, answer and cancellation.
        let (h, [first, second]) = double_click();
        let s = story(&h, &Start::Lead(double_click_lead([first, second])));
        assert_eq!(s.subject, "key k1");
        assert_eq!(s.threads, ["key k1", "order ord_10", "order ord_11"]);
        assert_eq!(s.lanes, ["shopper 1", "faults", "worker"]);
        let told: Vec<&str> = s.beats.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            told,
            [
                "means to buy (key k1, thinks 100 ms)",
                "asks #1: place order, key k1, 1xhat",
                "asks #2: place order, key k1, 1xhat",
                "told #1: accepted ord_10",
                "told #2: accepted ord_11",
                "crash api for 1 s",
                "ord_10 created → cancelled_out_of_stock",
                "ord_11 created → cancelled_out_of_stock",
            ]
        );
        let evidence: Vec<usize> = s
            .beats
            .iter()
            .filter(|b| b.evidence)
            .map(|b| b.index)
            .collect();
        assert_eq!(evidence, [first, second]);
        let text = render_story_text(&s);
        assert!(
            text.starts_with("The story of key k1\n  one_order_per_key: one key, 2 orders\n"),
            "{text}"
        );
        assert!(
            text.contains("*    0.005s  shopper 1  told #1: accepted ord_10"),
            "{text}"
        );
        assert!(!text.contains("ord_12") && !text.contains("k2"), "{text}");
        assert!(!text.contains("more events"), "nothing left out: {text}");
    }

    #[test]
    fn a_request_naming_only_an_order_sits_in_its_shoppers_lane() {
        // Proves (found from outside: a pay request sat in the lane `shoppers` while the
        // same shopper's order request sat in `shopper 1`): a request made with a key no
        // shopper planned, for an order a shopper placed, is told in that shopper's lane; an
        // order no shopper is known to have placed stays in `shoppers`.
        let (mut h, _) = double_click();
        for (req, order) in [(20, 10), (21, 99)] {
            h.push(
                Millis(50),
                EventKind::Request {
                    req,
                    op: ClientOp::Pay {
                        order: OrderId(order),
                        key: Some(key(&format!("pay-{order}"))),
                    },
                    fingerprint: None,
                },
            );
        }
        let lane_of = |s: &Story, text: &str| {
            let beat = s.beats.iter().find(|b| b.text.contains(text)).expect(text);
            s.lanes[beat.lane].clone()
        };
        let paid = story(&h, &Start::Order(OrderId(10)));
        assert_eq!(
            lane_of(&paid, "pay ord_10"),
            "shopper 1",
            "{:?}",
            paid.beats
        );
        let unknown = story(&h, &Start::Order(OrderId(99)));
        assert_eq!(lane_of(&unknown, "pay ord_99"), "shoppers");
    }

    #[test]
    fn an_order_s_story_finds_its_key_and_its_twin() {
        // Proves: starting from one order, the story finds the key it was acknowledged under
        // and through it the other order the same key got.
        let (h, _) = double_click();
        let s = story(&h, &Start::Order(OrderId(11)));
        assert_eq!(s.subject, "order ord_11");
        assert_eq!(s.threads, ["key k1", "order ord_10", "order ord_11"]);
        assert_eq!(s.omitted, 0);
    }

    #[test]
    fn a_story_tells_at_most_its_bound_and_counts_the_rest() {
        // Proves: a key with more events than STORY_BEATS_MAX tells exactly that many and
        // counts the others as omitted (one more event, one more omitted).
        let mut h = History::new();
        let order = OrderId(1);
        let total = STORY_BEATS_MAX + 1;
        for i in 0..total {
            let status = OrderStatus::PaymentPending;
            h.push(
                Millis(i as u64),
                EventKind::Observed {
                    order,
                    status,
                    client: 1,
                },
            );
        }
        let s = story(&h, &Start::Order(order));
        assert_eq!((s.beats.len(), s.omitted), (STORY_BEATS_MAX, 1));
        assert!(render_story_text(&s).contains("… and 1 more events"));
    }

    #[test]
    fn a_story_follows_at_most_its_bound_of_orders_and_keys() {
        // Proves: a key answered with more orders than STORY_THREADS_MAX allows is followed to
        // exactly that many threads (the key and the first orders), not one more.
        let mut h = History::new();
        let op = ClientOp::PlaceOrder(PlaceOrder {
            key: Some(key("k")),
            customer: stampede_core::CustomerId::new("c").unwrap(),
            items: Vec::new(),
            express: false,
        });
        h.push(
            Millis(0),
            EventKind::Request {
                req: 1,
                op,
                fingerprint: None,
            },
        );
        for order in 0..(STORY_THREADS_MAX as u64 + 5) {
            let reply = ClientReply::OrderAccepted {
                order: OrderId(order),
                replayed: false,
            };
            h.push(Millis(1), EventKind::Response { req: 1, reply });
        }
        let s = story(&h, &Start::Key(key("k")));
        assert_eq!(s.threads.len(), STORY_THREADS_MAX);
        assert_eq!(s.threads[0], "key k");
        assert_eq!(
            s.threads[STORY_THREADS_MAX - 1],
            format!("order ord_{}", STORY_THREADS_MAX - 2)
        );
    }

    #[test]
    fn beats_are_told_in_time_order_whatever_the_history_order() {
        // Proves: an event recorded late with an earlier time (as the PSP's ledger is appended
        // at the end of a simulated history) is told at its time, and the SVG draws it.
        let mut h = History::new();
        let order = OrderId(1);
        let seen = |status| EventKind::Observed {
            order,
            status,
            client: 1,
        };
        h.push(Millis(10), seen(OrderStatus::Confirmed));
        h.push(Millis(5), seen(OrderStatus::PaymentPending));
        let s = story(&h, &Start::Order(order));
        let times: Vec<u64> = s.beats.iter().map(|b| b.at_ms).collect();
        assert_eq!(times, [5, 10]);
        assert!(render_story_svg(&s).is_ok());
    }

    #[test]
    fn money_and_jobs_are_told_in_the_psp_and_worker_lanes() {
        // Proves: a ledger line and a job event of the order are part of its story, in the
        // `psp` and `worker` lanes, told in words; events of no lane of their own (a restock)
        // are left out of an order's story.
        let mut h = History::new();
        let order = OrderId(7);
        let entry = stampede_core::LedgerEntry {
            seq: 1,
            at: Millis(3),
            intent: stampede_core::IntentId::new("pi_1").unwrap(),
            order,
            kind: stampede_core::LedgerKind::Charge,
            amount: stampede_core::Cents(1_500),
        };
        let job = EventKind::Job {
            kind: stampede_core::JobKind::Reserve,
            order,
            what: JobEvent::Failed {
                error: "db down".into(),
            },
        };
        h.push(Millis(1), job);
        h.push(
            Millis(2),
            EventKind::Stocked {
                sku: Sku::new("hat").unwrap(),
                qty: 1,
            },
        );
        h.push(Millis(3), EventKind::Ledger(entry));
        let status = ClientReply::Status {
            order,
            status: OrderStatus::Paid,
        };
        h.push(
            Millis(4),
            EventKind::Response {
                req: 9,
                reply: status,
            },
        );
        let s = story(&h, &Start::Order(order));
        assert_eq!(s.lanes, ["worker", "psp", "shoppers"]);
        let told: Vec<&str> = s.beats.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            told,
            [
                "Reserve job for ord_7 failed: db down",
                "Charge 15.00 on pi_1 for ord_7",
                "told #9: {\"reply\":\"status\",\"order\":7,\"status\":\"paid\"}",
            ]
        );
    }

    /// The (cx, cy) of every dot in an SVG, in document order.
    fn dots(svg: &str) -> Vec<(i64, i64)> {
        let attr = |tag: &str, name: &str| -> i64 {
            let at = tag.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
            tag[at..].split('"').next().unwrap().parse().unwrap()
        };
        svg.split("<circle")
            .skip(1)
            .map(|tag| (attr(tag, "cx"), attr(tag, "cy")))
            .collect()
    }

    #[test]
    fn the_timeline_gives_each_beat_its_own_step_and_each_actor_its_lane() {
        // Proves the drawing: dots go left to right one step per beat whatever their times,
        // beats of one lane share a height and lanes stack in order; a pause longer than
        // GAP_MARKED_MS is marked with its length, one exactly that long is not.
        let (h, _) = double_click();
        let s = story(&h, &Start::Key(key("k1")));
        let svg = render_story_svg(&s).unwrap();
        let at = dots(&svg);
        assert_eq!(at.len(), s.beats.len());
        assert!(
            at.windows(2).all(|w| w[1].0 - w[0].0 == at[1].0 - at[0].0),
            "{at:?}"
        );
        for (b, (_, cy)) in s.beats.iter().zip(&at) {
            assert_eq!(
                *cy,
                56 + LANE_PX as i64 * b.lane as i64 + LANE_PX as i64 / 2
            );
        }
        // 8 ms → 900 ms: a pause of 892 ms, marked; 0.005 s → 0.006 s is not.
        assert!(svg.contains("\n+0.892s\n"), "{svg}");
        let mut edge = History::new();
        let order = OrderId(1);
        let seen = |status| EventKind::Observed {
            order,
            status,
            client: 1,
        };
        edge.push(Millis(0), seen(OrderStatus::Created));
        edge.push(Millis(GAP_MARKED_MS), seen(OrderStatus::PaymentPending));
        edge.push(Millis(2 * GAP_MARKED_MS + 1), seen(OrderStatus::Confirmed));
        let svg = render_story_svg(&story(&edge, &Start::Order(order))).unwrap();
        assert!(
            !svg.contains("\n+0.500s\n") && svg.contains("\n+0.501s\n"),
            "{svg}"
        );
    }

    #[test]
    fn the_svg_stands_alone_and_marks_the_evidence() {
        // Proves: the SVG is one self-contained document (no script, no external reference),
        // names the subject, draws a numbered dot per beat and lists the evidence in red.
        let (h, [first, second]) = double_click();
        let s = story(&h, &Start::Lead(double_click_lead([first, second])));
        let svg = render_story_svg(&s).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(
            !svg.contains("<script") && !svg.contains("href"),
            "self-contained"
        );
        assert!(svg.contains("The story of key k1"));
        assert_eq!(svg.matches("<circle").count(), s.beats.len());
        let red = format!("#{:02X}{:02X}{:02X}", 0xc6, 0x28, 0x28);
        assert!(
            svg.matches(red.as_str()).count() >= 2 * 5,
            "evidence dots and rows in red"
        );
    }
}
