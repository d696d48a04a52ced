//! How the fake PSP behaves: its seed, webhook target and secret, and how
//! badly it delivers webhooks (duplicates, delays, retries), with limits.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where webhooks go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// `host:port`, resolved by the embedder's connector.
    pub addr: String,
    /// Request path, e.g. `/v1/webhooks/psp`.
    pub path: String,
}

/// The PSP's configuration. Every queue and retry it implies is bounded here.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PspConfig {
    /// Seeds client secrets and every delivery decision (copies, delays, jitter).
    pub seed: u64,
    /// Where to send webhooks; `None` records events without sending them.
    pub webhook: Option<WebhookTarget>,
    /// HMAC key for `Psp-Signature`.
    pub secret: Vec<u8>,
    /// Chance, per event, that extra copies are sent (`0.0..=1.0`).
    pub duplicate_probability: f64,
    /// When duplicating, send `min_extra_copies..=max_extra_copies` extra copies.
    pub max_extra_copies: u32,
    /// Fewest extra copies when duplicating (at least 1).
    pub min_extra_copies: u32,
    /// Shortest delay before a copy's first attempt.
    pub delay_ms_min: u64,
    /// Longest delay before a copy's first attempt.
    pub delay_ms_max: u64,
    /// Backoff before the second attempt (doubling, capped, with jitter).
    pub retry_base_ms: u64,
    /// Cap on one backoff.
    pub retry_max_ms: u64,
    /// Attempts per copy before it is given up.
    pub max_attempts: u32,
    /// Most copies waiting or in flight; more are dropped (and counted).
    pub max_pending: usize,
    /// How long one delivery attempt may take.
    pub request_timeout_ms: u64,
    /// Intents are numbered `pi_<id_base + 1>`, `pi_<id_base + 2>`…, and
    /// events `evt_<id_base + 1>`…: a PSP started again beside a shop that
    /// kept its state starts from a later base (`serve` and `psp` use the
    /// clock's Unix milliseconds × 1,000), so its ids never repeat ones the shop
    /// has seen — a repeated event id would be dropped as a duplicate. At most
    /// [`ID_BASE_MAX`]; the simulator keeps 0.
    pub id_base: u64,
    /// Most intents; creating more answers 503.
    pub max_intents: usize,
}

/// Upper bound on [`PspConfig::id_base`]: room for every intent and event
/// after it within the contract's 19-digit `pi_<n>`.
pub const ID_BASE_MAX: u64 = 1_000_000_000_000_000_000;

/// An id base for a PSP started at `unix_ms` (see [`PspConfig::id_base`]):
/// one started a millisecond later begins 1,000 ids further on, more than one
/// PSP creates in a millisecond.
pub fn id_base_at(unix_ms: u64) -> u64 {
    unix_ms.saturating_mul(1_000).min(ID_BASE_MAX)
}

impl Default for PspConfig {
    fn default() -> Self {
        PspConfig {
            seed: 0,
            webhook: None,
            secret: b"whsec_stampede".to_vec(),
            duplicate_probability: 0.0,
            max_extra_copies: 1,
            min_extra_copies: 1,
            delay_ms_min: 0,
            delay_ms_max: 50,
            retry_base_ms: 100,
            retry_max_ms: 10_000,
            max_attempts: 8,
            max_pending: 100_000,
            request_timeout_ms: 5_000,
            id_base: 0,
            max_intents: 1_000_000,
        }
    }
}

impl fmt::Debug for PspConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PspConfig")
            .field("seed", &self.seed)
            .field("webhook", &self.webhook)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("duplicate_probability", &self.duplicate_probability)
            .field("max_extra_copies", &self.max_extra_copies)
            .field("min_extra_copies", &self.min_extra_copies)
            .field("delay_ms", &(self.delay_ms_min..=self.delay_ms_max))
            .field("retry_ms", &(self.retry_base_ms..=self.retry_max_ms))
            .field("max_attempts", &self.max_attempts)
            .field("max_pending", &self.max_pending)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("id_base", &self.id_base)
            .field("max_intents", &self.max_intents)
            .finish()
    }
}

/// A [`PspConfig`] field out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("psp config: `{field}` {reason}")]
pub struct PspConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

/// Upper bound on `max_extra_copies`.
pub const EXTRA_COPIES_MAX: u32 = 100;
/// Upper bound on `max_attempts`.
pub const DELIVERY_ATTEMPTS_MAX: u32 = 100;
/// Upper bound on any configured delay (one day).
pub const DELAY_MS_MAX: u64 = 24 * 60 * 60 * 1000;

impl PspConfig {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), PspConfigError> {
        self.validate_copies()?;
        self.validate_timing()?;
        if self.id_base > ID_BASE_MAX {
            return Err(PspConfigError {
                field: "id_base",
                reason: format!("is {}; at most {ID_BASE_MAX}", self.id_base),
            });
        }
        self.validate_webhook()
    }

    /// The duplication of deliveries: a probability and ordered copy counts.
    fn validate_copies(&self) -> Result<(), PspConfigError> {
        let err = |field, reason: String| Err(PspConfigError { field, reason });
        let p = self.duplicate_probability;
        if !(0.0..=1.0).contains(&p) {
            return err(
                "duplicate_probability",
                format!("is {p}; it must be a probability in 0.0..=1.0"),
            );
        }
        if self.max_extra_copies > EXTRA_COPIES_MAX {
            return err(
                "max_extra_copies",
                format!("is {}; at most {EXTRA_COPIES_MAX}", self.max_extra_copies),
            );
        }
        if self.min_extra_copies > self.max_extra_copies.max(1) {
            return err(
                "min_extra_copies",
                format!(
                    "is {}; it must not exceed max_extra_copies",
                    self.min_extra_copies
                ),
            );
        }
        Ok(())
    }

    /// Delays, retries and bounds: ordered, at most a day, none zero.
    fn validate_timing(&self) -> Result<(), PspConfigError> {
        let err = |field, reason: String| Err(PspConfigError { field, reason });
        ordered(
            "delay_ms_min",
            self.delay_ms_min,
            "delay_ms_max",
            self.delay_ms_max,
        )?;
        ordered(
            "retry_base_ms",
            self.retry_base_ms,
            "retry_max_ms",
            self.retry_max_ms,
        )?;
        for (field, value) in [
            ("delay_ms_max", self.delay_ms_max),
            ("retry_max_ms", self.retry_max_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if value > DELAY_MS_MAX {
                return err(field, format!("is {value}; at most {DELAY_MS_MAX} (a day)"));
            }
        }
        for (field, value) in [
            ("retry_base_ms", self.retry_base_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("max_attempts", u64::from(self.max_attempts)),
            ("max_pending", self.max_pending as u64),
            ("max_intents", self.max_intents as u64),
        ] {
            if value == 0 {
                return err(field, "is 0; it must be at least 1".into());
            }
        }
        if self.max_attempts > DELIVERY_ATTEMPTS_MAX {
            return err(
                "max_attempts",
                format!("is {}; at most {DELIVERY_ATTEMPTS_MAX}", self.max_attempts),
            );
        }
        Ok(())
    }

    fn validate_webhook(&self) -> Result<(), PspConfigError> {
        let err = |field, reason: String| Err(PspConfigError { field, reason });
        if let Some(target) = &self.webhook {
            if target.addr.is_empty() {
                return err("webhook.addr", "is empty; expected host:port".into());
            }
            if !target.path.starts_with('/') {
                return err(
                    "webhook.path",
                    format!("is {:?}; it must start with '/'", target.path),
                );
            }
        }
        Ok(())
    }
}

fn ordered(
    min_field: &'static str,
    min: u64,
    max_field: &'static str,
    max: u64,
) -> Result<(), PspConfigError> {
    if min > max {
        return Err(PspConfigError {
            field: min_field,
            reason: format!("is {min}, above {max_field} = {max}; it must be at most that"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_debug_form_names_the_id_base_and_hides_the_secret() {
        // Proves: a logged config says where its ids start and never prints the HMAC key.
        let config = PspConfig {
            id_base: 5_000,
            secret: b"top-secret-key".to_vec(),
            ..PspConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("id_base: 5000"), "{shown}");
        assert!(shown.contains("<14 bytes>"), "{shown}");
        assert!(!shown.contains("top-secret"), "{shown}");
    }

    #[test]
    fn an_id_base_goes_up_to_its_bound_and_moves_on_a_thousand_ids_a_millisecond() {
        // Proves: ID_BASE_MAX is taken and one more refused; a PSP started a millisecond later
        // starts 1,000 ids further on; no clock reading goes past the bound.
        let at = |id_base| PspConfig {
            id_base,
            ..PspConfig::default()
        };
        assert_eq!(at(ID_BASE_MAX).validate(), Ok(()));
        assert_eq!(at(ID_BASE_MAX + 1).validate().unwrap_err().field, "id_base");
        assert_eq!(
            id_base_at(1_700_000_000_001) - id_base_at(1_700_000_000_000),
            1_000
        );
        assert_eq!(id_base_at(u64::MAX), ID_BASE_MAX);
    }

    #[test]
    fn validation_names_the_field_and_the_accepted_range() {
        assert_eq!(PspConfig::default().validate(), Ok(()));
        let bad = PspConfig {
            duplicate_probability: 1.5,
            ..PspConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "duplicate_probability");
        let nan = PspConfig {
            duplicate_probability: f64::NAN,
            ..PspConfig::default()
        };
        assert_eq!(nan.validate().unwrap_err().field, "duplicate_probability");
        let bad = PspConfig {
            delay_ms_min: 60,
            delay_ms_max: 50,
            ..PspConfig::default()
        };
        let error = bad.validate().unwrap_err();
        assert_eq!(error.field, "delay_ms_min");
        assert!(error.to_string().contains("delay_ms_max = 50"), "{error}");
        let bad = PspConfig {
            max_attempts: 0,
            ..PspConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "max_attempts");
        let bad = PspConfig {
            webhook: Some(WebhookTarget {
                addr: "shop:80".into(),
                path: "hooks".into(),
            }),
            ..PspConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "webhook.path");
    }
}
