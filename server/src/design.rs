//! Design variants: the reference shop with known real-world mistakes
//! switched on, so architects can compare them and CI can prove the harness
//! catches each one. A naive switch really behaves naively (read, await the
//! store, then write), so races happen whenever concurrency allows them.

use serde::{Deserialize, Deserializer, Serialize};
use stampede_core::Admission;
pub use stampede_core::SoldOut;
use std::fmt;

/// One switch per mistake; `Design::reference()` has none switched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Design {
    /// Idempotency-Key handling on `POST /v1/orders`.
    pub idempotency: Idempotency,
    /// How stock is reserved.
    pub inventory: InventoryMode,
    /// Whether and how soon reservations expire.
    pub reservation_ttl: ReservationTtl,
    /// How the reserve step decides an order is sold out (absent in plans
    /// written before the switch existed: the reference).
    #[serde(default = "sold_out_reference")]
    pub sold_out: SoldOut,
    /// How the order and its first job are written.
    pub enqueue: Enqueue,
    /// Whether the reserve step checks the order's state before acting (off:
    /// a redelivered job reserves again; stock is still checked).
    pub worker_state_check: bool,
    /// Whether the PSP intent is created with the key `pay_{order}`.
    pub intent_key: bool,
    /// Whether the intent's amount is the order total (or a fixed amount).
    pub intent_amount: IntentAmount,
    /// What the `CreateIntent` step does when the PSP replays an intent that
    /// already existed for its key (absent in plans written before the
    /// switch existed: the reference).
    #[serde(default = "intent_replay_reference")]
    pub intent_replay: IntentReplay,
    /// Whether webhook signatures are verified.
    pub webhook_signature: bool,
    /// Whether webhooks are deduplicated by event id.
    pub webhook_dedup: bool,
    /// What happens to a webhook that arrives before its order can take it.
    pub early_webhooks: EarlyWebhooks,
    /// Whether finalization runs as a durable job.
    pub finalize: Finalize,
    /// Whether the reconciler runs.
    pub reconciliation: bool,
    /// Whether a reply waits until its write is durable (absent in plans
    /// written before the switch existed: the reference).
    #[serde(default = "commit_reference")]
    pub commit: Commit,
    /// Whether a price sent by the client is used.
    pub client_price: ClientPrice,
    /// Whether the shop controls admission (absent in plans written before
    /// the switch existed: the reference).
    #[serde(default = "admission_reference")]
    pub admission: AdmissionMode,
    /// A test hook that breaks the reference on purpose (not a mistake, not
    /// in [`SWITCHES`], never set by a preset); omitted when `none`, so
    /// designs and plans written without it read and write as before.
    #[serde(default, skip_serializing_if = "Sabotage::is_none")]
    pub sabotage: Sabotage,
}

/// Idempotency handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Idempotency {
    /// Atomic with order creation (one store operation).
    Reference,
    /// Keys ignored.
    None,
    /// Look the key up, await, create the order, then save the key.
    CheckThenInsert,
}

/// Stock reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InventoryMode {
    /// Atomic conditional reserve.
    Reference,
    /// Read availability, await, then reserve unconditionally.
    ReadThenWrite,
}

/// Admission control ([`stampede_core::Admission`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdmissionMode {
    /// The configured limits: shed beyond the undecided-order bound,
    /// per-customer rate limit, sold-out fast path.
    On,
    /// Every valid order accepted and queued, however deep the queue.
    Off,
}

impl AdmissionMode {
    /// The admission limits to configure the store with, given the configured ones.
    pub fn limits(self, configured: Admission) -> Admission {
        match self {
            AdmissionMode::On => configured,
            AdmissionMode::Off => Admission::OFF,
        }
    }
}

/// Reservation lifetime, relative to the TTL the shop is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReservationTtl {
    /// The configured TTL.
    On,
    /// A quarter of the configured TTL (at least 1 ms): shorter than the
    /// payment flow, so customers time out before they can pay.
    Short,
    /// Reservations never expire.
    Off,
}

/// How much shorter `reservation_ttl=short` makes the configured TTL.
pub const SHORT_TTL_DIVISOR: u64 = 4;

impl ReservationTtl {
    /// The reservation lifetime to configure the store with, given the
    /// configured one (`None`: the shop has no TTL to start from).
    pub fn ttl_ms(self, configured_ms: Option<u64>) -> Option<u64> {
        match self {
            ReservationTtl::On => configured_ms,
            ReservationTtl::Short => configured_ms.map(|ttl| (ttl / SHORT_TTL_DIVISOR).max(1)),
            ReservationTtl::Off => None,
        }
    }
}

/// Reads `"on" | "short" | "off"`, and the booleans designs were written
/// with before `short` existed (`true` = on, `false` = off), so old plan
/// files still replay.
impl<'de> Deserialize<'de> for ReservationTtl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Named {
            On,
            Short,
            Off,
        }
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "\"on\", \"short\" or \"off\"")]
        enum Written {
            Named(Named),
            Legacy(bool),
        }
        Ok(match Written::deserialize(deserializer)? {
            Written::Named(Named::On) | Written::Legacy(true) => ReservationTtl::On,
            Written::Named(Named::Short) => ReservationTtl::Short,
            Written::Named(Named::Off) | Written::Legacy(false) => ReservationTtl::Off,
        })
    }
}

/// Order + first job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enqueue {
    /// One atomic store operation.
    Outbox,
    /// Write the order, await, then enqueue the job (a crash in between loses it).
    DualWrite,
}

/// The intent's amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntentAmount {
    /// The order's total.
    OrderTotal,
    /// A fixed amount, whatever the order costs.
    Fixed,
}

/// A redelivered `CreateIntent` job whose intent the PSP already created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntentReplay {
    /// Record the replayed intent like a new one: the customer is offered payment.
    Record,
    /// Acknowledge the job without recording it: the order sits reserved
    /// until its reservation expires.
    AckOnly,
}

/// Early webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EarlyWebhooks {
    /// Kept until the order can take them.
    Park,
    /// Acknowledged and dropped.
    Drop,
}

/// Finalization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finalize {
    /// A durable job, redelivered after a crash.
    Durable,
    /// A task in the webhook handler's process; lost if it crashes.
    InMemory,
}

/// When the store answers a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Commit {
    /// Only once the write is durable (committed and synced): a crash never
    /// takes back what a client was told.
    Durable,
    /// At once, committing in the background a little later: a crash takes
    /// back the writes acknowledged since the last commit.
    AckFirst,
}

impl Commit {
    /// Whether replies wait for durability.
    pub fn waits(self) -> bool {
        self == Commit::Durable
    }
}

/// Client-sent prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientPrice {
    /// Ignored: the catalog price is captured.
    Ignore,
    /// Used as the unit price.
    Trust,
}

/// Test hooks that break the reference shop on purpose, so a test can show
/// that a check fails when it should (a shop that sells nothing must fail
/// the progress invariants). They are not mistakes real shops make, so the
/// catch matrix, which walks [`SWITCHES`], never sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sabotage {
    /// The reference, unbroken.
    #[default]
    None,
    /// The `CreateIntent` step's state check inverted: reserved orders are
    /// skipped, so no customer is ever offered payment.
    NoPaymentOffer,
    /// The refund step's filter inverted: only intents with nothing
    /// captured are refunded, so no money is ever given back.
    NoRefunds,
}

impl Sabotage {
    /// Every value, in the order `stampede designs` lists them.
    pub const ALL: [Sabotage; 3] = [
        Sabotage::None,
        Sabotage::NoPaymentOffer,
        Sabotage::NoRefunds,
    ];

    /// The name used with `--set sabotage=...`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sabotage::None => "none",
            Sabotage::NoPaymentOffer => "no-payment-offer",
            Sabotage::NoRefunds => "no-refunds",
        }
    }

    /// What it breaks, for `stampede designs`.
    pub fn breaks(self) -> &'static str {
        match self {
            Sabotage::None => "nothing: the shop as designed",
            Sabotage::NoPaymentOffer => {
                "the CreateIntent step skips reserved orders: no customer is ever offered payment (a shop that sells nothing)"
            }
            Sabotage::NoRefunds => {
                "the refund step skips every captured payment: nothing is ever refunded"
            }
        }
    }

    fn is_none(&self) -> bool {
        *self == Sabotage::None
    }
}

/// The name of the sabotage setting (`--set sabotage=...`).
pub const SABOTAGE: &str = "sabotage";

/// A switch as `stampede designs` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchInfo {
    /// The name used with `--set name=value`.
    pub name: &'static str,
    /// Accepted values; the first is the reference.
    pub values: &'static [&'static str],
    /// The mistake the non-reference values make.
    pub mistake: &'static str,
}

/// Every switch.
pub const SWITCHES: &[SwitchInfo] = &[
    SwitchInfo {
        name: "idempotency",
        values: &["reference", "none", "check-then-insert"],
        mistake: "keys ignored, or looked up then saved in two steps (duplicates race through)",
    },
    SwitchInfo {
        name: "inventory",
        values: &["reference", "read-then-write"],
        mistake: "availability read, then stock taken unconditionally (concurrent buyers oversell)",
    },
    SwitchInfo {
        name: "reservation_ttl",
        values: &["on", "short", "off"],
        mistake: "reservations never expire (abandoned carts hold stock forever), or (short) a reservation TTL shorter than the payment flow: customers time out before they can pay",
    },
    SwitchInfo {
        name: "sold_out",
        values: &["from-sales", "from-reservations"],
        mistake: "sold-out decided from reservations, not sales: units held by carts that are later abandoned are never resold",
    },
    SwitchInfo {
        name: "enqueue",
        values: &["outbox", "dual-write"],
        mistake: "order and job written separately (a crash between leaves the order stuck)",
    },
    SwitchInfo {
        name: "worker_state_check",
        values: &["on", "off"],
        mistake: "the reserve step does not check the order's status: a redelivered job reserves the stock again (it leaks)",
    },
    SwitchInfo {
        name: "intent_key",
        values: &["on", "off"],
        mistake: "PSP intent created without an idempotency key (retries make second intents, double charges)",
    },
    SwitchInfo {
        name: "intent_amount",
        values: &["order-total", "fixed"],
        mistake: "the intent charges a fixed amount, not the order total",
    },
    SwitchInfo {
        name: "intent_replay",
        values: &["record", "ack-only"],
        mistake: "a redelivered CreateIntent job that finds its intent already created at the PSP acks without recording it: the customer is never offered payment",
    },
    SwitchInfo {
        name: "webhook_signature",
        values: &["verify", "trust"],
        mistake: "webhooks trusted on their word: no signature checked, no PSP asked (anyone can mark an order paid)",
    },
    SwitchInfo {
        name: "webhook_dedup",
        values: &["on", "off"],
        mistake: "webhooks applied without dedup or state check: each delivery of a payment sells the order's units again",
    },
    SwitchInfo {
        name: "early_webhooks",
        values: &["park", "drop"],
        mistake: "a webhook for an order whose intent is not recorded yet is acknowledged and dropped",
    },
    SwitchInfo {
        name: "finalize",
        values: &["durable", "in-memory"],
        mistake: "finalization is an in-process task, lost on crash",
    },
    SwitchInfo {
        name: "reconciliation",
        values: &["on", "off"],
        mistake: "no reconciler: what webhooks miss is never repaired",
    },
    SwitchInfo {
        name: "commit",
        values: &["durable", "ack-first"],
        mistake: "the store answers before the write is durable: a crash takes back orders customers were told were accepted",
    },
    SwitchInfo {
        name: "client_price",
        values: &["ignore", "trust"],
        mistake: "a price sent by the client is charged",
    },
    SwitchInfo {
        name: "admission",
        values: &["on", "off"],
        mistake: "every valid order is accepted and queued however deep the queue (no shedding, no rate limit, no sold-out fast path): under a spike decisions come later and later",
    },
];

/// Named presets.
pub const PRESETS: &[(&str, &str)] = &[
    ("reference", "every switch at its reference value"),
    (
        "seed-repo",
        "the open-source order system that inspired Stampede: check-then-insert keys, dual write, early webhooks dropped, intents without a key, no TTL, fixed amount",
    ),
    ("textbook-naive", "every mistake at once"),
];

/// A bad `--design` or `--set`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DesignError {
    /// Unknown preset.
    #[error("unknown design {0:?}; presets are: reference, seed-repo, textbook-naive")]
    UnknownPreset(String),
    /// Unknown switch.
    #[error("unknown switch {0:?}; run `stampede designs` for the list")]
    UnknownSwitch(String),
    /// A value the switch does not take.
    #[error("switch {name} takes one of {allowed}, not {value:?}")]
    BadValue {
        /// The switch.
        name: String,
        /// The value given.
        value: String,
        /// What it takes.
        allowed: String,
    },
    /// Not `name=value`.
    #[error("expected switch=value, got {0:?}")]
    Malformed(String),
}

fn sold_out_reference() -> SoldOut {
    SoldOut::FromSales
}

fn intent_replay_reference() -> IntentReplay {
    IntentReplay::Record
}

fn commit_reference() -> Commit {
    Commit::Durable
}

fn admission_reference() -> AdmissionMode {
    AdmissionMode::On
}

impl Default for Design {
    fn default() -> Self {
        Design::reference()
    }
}

impl Design {
    /// Every switch at its reference value.
    pub fn reference() -> Design {
        Design {
            idempotency: Idempotency::Reference,
            inventory: InventoryMode::Reference,
            reservation_ttl: ReservationTtl::On,
            sold_out: SoldOut::FromSales,
            enqueue: Enqueue::Outbox,
            worker_state_check: true,
            intent_key: true,
            intent_amount: IntentAmount::OrderTotal,
            intent_replay: IntentReplay::Record,
            webhook_signature: true,
            webhook_dedup: true,
            early_webhooks: EarlyWebhooks::Park,
            finalize: Finalize::Durable,
            reconciliation: true,
            commit: Commit::Durable,
            client_price: ClientPrice::Ignore,
            admission: AdmissionMode::On,
            sabotage: Sabotage::None,
        }
    }

    /// A named preset.
    pub fn preset(name: &str) -> Result<Design, DesignError> {
        let mut d = Design::reference();
        match name {
            "reference" => {}
            "seed-repo" => {
                d.idempotency = Idempotency::CheckThenInsert;
                d.enqueue = Enqueue::DualWrite;
                d.early_webhooks = EarlyWebhooks::Drop;
                d.intent_key = false;
                d.reservation_ttl = ReservationTtl::Off;
                d.intent_amount = IntentAmount::Fixed;
            }
            "textbook-naive" => {
                for switch in SWITCHES {
                    d.set(switch.name, switch.values[switch.values.len() - 1])?;
                }
            }
            other => return Err(DesignError::UnknownPreset(other.to_string())),
        }
        Ok(d)
    }

    /// Sets one switch, or the sabotage hook, by name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), DesignError> {
        if name == SABOTAGE {
            self.sabotage = Sabotage::ALL
                .into_iter()
                .find(|s| s.as_str() == value)
                .ok_or_else(|| DesignError::BadValue {
                    name: name.to_string(),
                    value: value.to_string(),
                    allowed: Sabotage::ALL.map(Sabotage::as_str).join(" | "),
                })?;
            return Ok(());
        }
        let info = SWITCHES
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DesignError::UnknownSwitch(name.to_string()))?;
        let index = info
            .values
            .iter()
            .position(|v| *v == value)
            .ok_or_else(|| DesignError::BadValue {
                name: name.to_string(),
                value: value.to_string(),
                allowed: info.values.join(" | "),
            })?;
        if !self.set_stock_switch(name, index) && !self.set_payment_switch(name, index) {
            unreachable!("every SWITCHES entry is handled");
        }
        Ok(())
    }

    /// Sets a switch of the order and stock path to its `index`th value;
    /// false if `name` is not one.
    fn set_stock_switch(&mut self, name: &str, index: usize) -> bool {
        let reference = index == 0;
        match name {
            "idempotency" => {
                self.idempotency = [
                    Idempotency::Reference,
                    Idempotency::None,
                    Idempotency::CheckThenInsert,
                ][index]
            }
            "inventory" => {
                self.inventory = if reference {
                    InventoryMode::Reference
                } else {
                    InventoryMode::ReadThenWrite
                }
            }
            "reservation_ttl" => {
                self.reservation_ttl = [
                    ReservationTtl::On,
                    ReservationTtl::Short,
                    ReservationTtl::Off,
                ][index]
            }
            "sold_out" => {
                self.sold_out = if reference {
                    SoldOut::FromSales
                } else {
                    SoldOut::FromReservations
                }
            }
            "enqueue" => {
                self.enqueue = if reference {
                    Enqueue::Outbox
                } else {
                    Enqueue::DualWrite
                }
            }
            "worker_state_check" => self.worker_state_check = reference,
            "commit" => {
                self.commit = if reference {
                    Commit::Durable
                } else {
                    Commit::AckFirst
                }
            }
            "client_price" => {
                self.client_price = if reference {
                    ClientPrice::Ignore
                } else {
                    ClientPrice::Trust
                }
            }
            "admission" => {
                self.admission = if reference {
                    AdmissionMode::On
                } else {
                    AdmissionMode::Off
                }
            }
            _ => return false,
        }
        true
    }

    /// Sets a switch of the payment and webhook path to its `index`th value;
    /// false if `name` is not one.
    fn set_payment_switch(&mut self, name: &str, index: usize) -> bool {
        let reference = index == 0;
        match name {
            "intent_key" => self.intent_key = reference,
            "intent_amount" => {
                self.intent_amount = if reference {
                    IntentAmount::OrderTotal
                } else {
                    IntentAmount::Fixed
                }
            }
            "intent_replay" => {
                self.intent_replay = if reference {
                    IntentReplay::Record
                } else {
                    IntentReplay::AckOnly
                }
            }
            "webhook_signature" => self.webhook_signature = reference,
            "webhook_dedup" => self.webhook_dedup = reference,
            "early_webhooks" => {
                self.early_webhooks = if reference {
                    EarlyWebhooks::Park
                } else {
                    EarlyWebhooks::Drop
                }
            }
            "finalize" => {
                self.finalize = if reference {
                    Finalize::Durable
                } else {
                    Finalize::InMemory
                }
            }
            "reconciliation" => self.reconciliation = reference,
            _ => return false,
        }
        true
    }

    /// Applies `name=value`.
    pub fn apply(&mut self, assignment: &str) -> Result<(), DesignError> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| DesignError::Malformed(assignment.to_string()))?;
        self.set(name.trim(), value.trim())
    }

    /// The current value of a switch, or of the sabotage hook, as text.
    pub fn get(&self, name: &str) -> Option<&'static str> {
        if name == SABOTAGE {
            return Some(self.sabotage.as_str());
        }
        let info = SWITCHES.iter().find(|s| s.name == name)?;
        let index = match name {
            "idempotency" => self.idempotency as usize,
            "inventory" => self.inventory as usize,
            "reservation_ttl" => self.reservation_ttl as usize,
            "sold_out" => self.sold_out as usize,
            "enqueue" => self.enqueue as usize,
            "worker_state_check" => usize::from(!self.worker_state_check),
            "intent_key" => usize::from(!self.intent_key),
            "intent_amount" => self.intent_amount as usize,
            "intent_replay" => self.intent_replay as usize,
            "webhook_signature" => usize::from(!self.webhook_signature),
            "webhook_dedup" => usize::from(!self.webhook_dedup),
            "early_webhooks" => self.early_webhooks as usize,
            "finalize" => self.finalize as usize,
            "reconciliation" => usize::from(!self.reconciliation),
            "commit" => self.commit as usize,
            "client_price" => self.client_price as usize,
            "admission" => self.admission as usize,
            _ => return None,
        };
        Some(info.values[index])
    }

    /// Switches not at their reference value, as `name=value`, then the
    /// sabotage hook if one is set (so every report says so).
    pub fn deviations(&self) -> Vec<String> {
        let mut deviations: Vec<String> = SWITCHES
            .iter()
            .filter_map(|s| {
                let value = self.get(s.name)?;
                (value != s.values[0]).then(|| format!("{}={value}", s.name))
            })
            .collect();
        if !self.sabotage.is_none() {
            deviations.push(format!("{SABOTAGE}={}", self.sabotage.as_str()));
        }
        deviations
    }

    /// The name a report shows: a preset's name when the design is exactly
    /// that preset, else `reference+switch=value+...` (as `--design` spells it).
    pub fn label(&self) -> String {
        let preset = PRESETS
            .iter()
            .find(|(name, _)| Design::preset(name).is_ok_and(|d| d == *self));
        match preset {
            Some((name, _)) => (*name).to_string(),
            None => std::iter::once("reference".to_string())
                .chain(self.deviations())
                .collect::<Vec<_>>()
                .join("+"),
        }
    }
}

impl fmt::Display for Design {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deviations = self.deviations();
        if deviations.is_empty() {
            f.write_str("reference")
        } else {
            f.write_str(&deviations.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_label_names_a_preset_exactly_and_spells_anything_else_from_the_reference() {
        // Proves: each preset is named as such; one switch off a preset is not that
        // preset; the spelled label parses back to the same design.
        for (name, _) in PRESETS {
            assert_eq!(Design::preset(name).unwrap().label(), *name);
        }
        let mut d = Design::preset("seed-repo").unwrap();
        d.set("webhook_dedup", "off").unwrap();
        let label = d.label();
        assert!(label.starts_with("reference+"), "{label}");
        let mut back = Design::reference();
        for set in label.split('+').skip(1) {
            let (name, value) = set.split_once('=').unwrap();
            back.set(name, value).unwrap();
        }
        assert_eq!(back, d);
        let mut one = Design::reference();
        one.set("webhook_dedup", "off").unwrap();
        assert_eq!(one.label(), "reference+webhook_dedup=off");
    }

    #[test]
    fn every_switch_round_trips_through_set_and_get() {
        for switch in SWITCHES {
            for value in switch.values {
                let mut d = Design::reference();
                d.set(switch.name, value).unwrap();
                assert_eq!(d.get(switch.name), Some(*value), "{}", switch.name);
            }
        }
    }

    #[test]
    fn presets_differ_from_reference_as_documented() {
        assert!(Design::preset("reference").unwrap().deviations().is_empty());
        let seed = Design::preset("seed-repo").unwrap().deviations();
        assert_eq!(
            seed,
            [
                "idempotency=check-then-insert",
                "reservation_ttl=off",
                "enqueue=dual-write",
                "intent_key=off",
                "intent_amount=fixed",
                "early_webhooks=drop"
            ]
        );
        assert_eq!(
            Design::preset("textbook-naive").unwrap().deviations().len(),
            SWITCHES.len()
        );
    }

    #[test]
    fn sold_out_is_a_switch_and_designs_written_before_it_still_parse() {
        // Proves: `sold_out` takes from-sales (the reference) and from-reservations, shows up in
        // the deviations and the display, refuses other values naming both, and a design
        // serialized before it, `intent_replay` and `admission` existed (no such field) parses as
        // the reference.
        let mut d = Design::reference();
        assert_eq!(d.get("sold_out"), Some("from-sales"));
        d.apply("sold_out=from-reservations").unwrap();
        assert_eq!(d.sold_out, SoldOut::FromReservations);
        assert_eq!(d.deviations(), ["sold_out=from-reservations"]);
        assert_eq!(d.to_string(), "sold_out=from-reservations");
        assert_eq!(
            d.apply("sold_out=never"),
            Err(DesignError::BadValue {
                name: "sold_out".into(),
                value: "never".into(),
                allowed: "from-sales | from-reservations".into(),
            })
        );
        let mut old = serde_json::to_value(Design::reference()).unwrap();
        old.as_object_mut().unwrap().remove("sold_out");
        old.as_object_mut().unwrap().remove("intent_replay");
        old.as_object_mut().unwrap().remove("admission");
        let parsed: Design = serde_json::from_value(old).unwrap();
        assert_eq!(parsed, Design::reference());
    }

    #[test]
    fn reservation_ttl_short_is_a_quarter_of_the_configured_ttl_and_off_stays_last() {
        // Proves: on keeps the configured TTL, short divides it by 4 (never below 1 ms), off has
        // none, and a shop without a TTL gets none from any value; `off` is the last value, so
        // textbook-naive (every switch at its last value) still means no TTL and seed-repo keeps it.
        assert_eq!(ReservationTtl::On.ttl_ms(Some(5_000)), Some(5_000));
        assert_eq!(ReservationTtl::Short.ttl_ms(Some(5_000)), Some(1_250));
        assert_eq!(ReservationTtl::Short.ttl_ms(Some(7)), Some(1));
        assert_eq!(
            ReservationTtl::Short.ttl_ms(Some(3)),
            Some(1),
            "at least 1 ms"
        );
        assert_eq!(ReservationTtl::Off.ttl_ms(Some(5_000)), None);
        assert_eq!(ReservationTtl::Short.ttl_ms(None), None);
        let mut d = Design::reference();
        d.apply("reservation_ttl=short").unwrap();
        assert_eq!(d.reservation_ttl, ReservationTtl::Short);
        assert_eq!(d.to_string(), "reservation_ttl=short");
        let naive = Design::preset("textbook-naive").unwrap();
        assert_eq!(naive.reservation_ttl, ReservationTtl::Off);
        let seed = Design::preset("seed-repo").unwrap();
        assert_eq!(seed.reservation_ttl, ReservationTtl::Off);
    }

    #[test]
    fn reservation_ttl_reads_its_names_and_the_booleans_of_old_designs() {
        // Proves: the field serializes as its name, reads every name back, reads the booleans
        // designs were written with before `short` (true = on, false = off), and refuses other text.
        let mut d = Design::reference();
        for (written, ttl) in [
            (json!("on"), ReservationTtl::On),
            (json!("short"), ReservationTtl::Short),
            (json!("off"), ReservationTtl::Off),
            (json!(true), ReservationTtl::On),
            (json!(false), ReservationTtl::Off),
        ] {
            let mut value = serde_json::to_value(Design::reference()).unwrap();
            value["reservation_ttl"] = written.clone();
            d.reservation_ttl = ttl;
            assert_eq!(
                serde_json::from_value::<Design>(value).unwrap(),
                d,
                "{written}"
            );
        }
        assert_eq!(
            serde_json::to_value(d).unwrap()["reservation_ttl"],
            json!("off")
        );
        let mut bad = serde_json::to_value(Design::reference()).unwrap();
        bad["reservation_ttl"] = json!("sometimes");
        let err = serde_json::from_value::<Design>(bad).unwrap_err();
        assert!(
            err.to_string().contains("\"on\", \"short\" or \"off\""),
            "{err}"
        );
    }

    #[test]
    fn intent_replay_is_a_switch_with_record_as_the_reference() {
        // Proves: `intent_replay` takes record (the reference) and ack-only, shows up in the
        // deviations, and refuses other values naming both.
        let mut d = Design::reference();
        assert_eq!(d.get("intent_replay"), Some("record"));
        d.apply("intent_replay = ack-only").unwrap();
        assert_eq!(d.intent_replay, IntentReplay::AckOnly);
        assert_eq!(d.deviations(), ["intent_replay=ack-only"]);
        assert!(matches!(
            d.apply("intent_replay=ignore"),
            Err(DesignError::BadValue { allowed, .. }) if allowed == "record | ack-only"
        ));
    }

    #[test]
    fn sabotage_is_set_read_and_reported_but_is_no_switch_and_no_preset_sets_it() {
        // Proves: sabotage takes none, no-payment-offer and no-refunds through set, apply and get;
        // a set sabotage shows in the deviations and the display (alone, or after the switches);
        // it is not in SWITCHES, so the catch matrix and textbook-naive never see it; a preset
        // leaves it at none; and a design without the field (every plan written before) parses,
        // while one with it round-trips.
        assert!(SWITCHES.iter().all(|s| s.name != SABOTAGE));
        for preset in ["reference", "seed-repo", "textbook-naive"] {
            assert_eq!(Design::preset(preset).unwrap().sabotage, Sabotage::None);
        }
        let mut d = Design::reference();
        assert_eq!(d.get("sabotage"), Some("none"));
        for value in Sabotage::ALL {
            d.set("sabotage", value.as_str()).unwrap();
            assert_eq!(
                (d.sabotage, d.get("sabotage")),
                (value, Some(value.as_str()))
            );
        }
        d.apply("sabotage=no-payment-offer").unwrap();
        assert_eq!(d.sabotage, Sabotage::NoPaymentOffer);
        assert_eq!(d.to_string(), "sabotage=no-payment-offer");
        d.apply("inventory=read-then-write").unwrap();
        assert_eq!(
            d.deviations(),
            ["inventory=read-then-write", "sabotage=no-payment-offer"]
        );
        let json = serde_json::to_value(d).unwrap();
        assert_eq!(json["sabotage"], json!("no-payment-offer"));
        assert_eq!(serde_json::from_value::<Design>(json).unwrap(), d);
        let plain = serde_json::to_value(Design::reference()).unwrap();
        assert!(plain.get("sabotage").is_none(), "none is not written");
        assert_eq!(
            serde_json::from_value::<Design>(plain).unwrap(),
            Design::reference()
        );
        d.apply("sabotage=none").unwrap();
        assert_eq!(d.deviations(), ["inventory=read-then-write"]);
    }

    #[test]
    fn a_bad_sabotage_value_is_a_clear_error_that_changes_nothing() {
        // Proves: an unknown sabotage value is refused naming every allowed value, a missing `=`
        // is malformed, and neither changes the design.
        let mut d = Design::reference();
        d.apply("sabotage=no-refunds").unwrap();
        let before = d;
        assert_eq!(
            d.apply("sabotage=everything"),
            Err(DesignError::BadValue {
                name: "sabotage".into(),
                value: "everything".into(),
                allowed: "none | no-payment-offer | no-refunds".into(),
            })
        );
        assert_eq!(
            d.apply("sabotage"),
            Err(DesignError::Malformed("sabotage".into()))
        );
        assert_eq!(d, before);
        let mut bad = serde_json::to_value(Design::reference()).unwrap();
        bad["sabotage"] = json!("everything");
        assert!(serde_json::from_value::<Design>(bad).is_err());
    }

    #[test]
    fn bad_names_and_values_are_clear_errors() {
        let mut d = Design::reference();
        assert_eq!(
            d.apply("nope=1"),
            Err(DesignError::UnknownSwitch("nope".into()))
        );
        assert!(matches!(
            d.apply("inventory=yolo"),
            Err(DesignError::BadValue { .. })
        ));
        assert_eq!(
            d.apply("inventory"),
            Err(DesignError::Malformed("inventory".into()))
        );
        assert!(Design::preset("bogus").is_err());
        assert_eq!(d, Design::reference(), "failed sets change nothing");
    }
}
