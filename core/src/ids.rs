//! Identifiers. Numeric ids are allocated by counters the shop owns (so a run
//! is reproducible); string ids come from outside (clients, the PSP) and are
//! validated once, at construction, so the rest of the core can trust them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an external identifier was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {reason}")]
pub struct InvalidId {
    /// Which kind of id ("sku", "idempotency key", ...).
    pub what: &'static str,
    /// What is wrong with it, in words a client can act on.
    pub reason: String,
}

fn validate(
    what: &'static str,
    value: &str,
    max_len: usize,
    allowed: fn(char) -> bool,
    allowed_desc: &str,
) -> Result<(), InvalidId> {
    let refuse = |reason: String| Err(InvalidId { what, reason });
    if value.is_empty() {
        return refuse("must not be empty".into());
    }
    if value.len() > max_len {
        return refuse(format!(
            "is {} bytes long; the limit is {max_len}",
            value.len()
        ));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return refuse(format!("contains {bad:?}; allowed are {allowed_desc}"));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

fn is_visible_ascii(c: char) -> bool {
    c.is_ascii_graphic()
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr, $desc:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in bytes.
            pub const LEN_MAX: usize = $max;

            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                validate($what, &value, $max, $allowed, $desc)?;
                Ok(Self(value))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A stock-keeping unit: the catalog's product id.
    Sku, "sku", 64, is_name_char, "ASCII letters, digits and _-.:"
);
string_id!(
    /// The customer placing an order (used for per-customer purchase limits).
    CustomerId, "customer_id", 64, is_name_char, "ASCII letters, digits and _-.:"
);
string_id!(
    /// A client-chosen `Idempotency-Key` (Stripe rules: at most 255 characters).
    IdempotencyKey, "idempotency key", 255, is_visible_ascii, "visible ASCII characters"
);
string_id!(
    /// A payment intent id assigned by the PSP (`pi_...`).
    IntentId, "intent id", 128, is_name_char, "ASCII letters, digits and _-.:"
);
string_id!(
    /// A webhook event id assigned by the PSP (`evt_...`); the dedup key.
    EventId, "event id", 128, is_name_char, "ASCII letters, digits and _-.:"
);

macro_rules! counter_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The textual prefix used when the id is shown to clients.
            pub const PREFIX: &'static str = $prefix;

            /// Parses the textual form (`<prefix><number>`).
            pub fn parse(text: &str) -> Option<Self> {
                let digits = text.strip_prefix($prefix)?;
                if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // One spelling per id: `ord_01` is not `ord_1`.
                if digits.len() > 1 && digits.starts_with('0') {
                    return None;
                }
                digits.parse().ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }
    };
}

counter_id!(
    /// An order, numbered by the shop in creation order.
    OrderId, "ord_"
);
counter_id!(
    /// A durable job.
    JobId, "job_"
);
counter_id!(
    /// An inventory reservation.
    ReservationId, "res_"
);
counter_id!(
    /// Who holds an idempotency key in flight or a job lease, where one
    /// store serves several processes (a PostgreSQL replica, numbered by
    /// the database): when a holder is gone, what it held can be freed at
    /// once instead of waiting out the lock's or the lease's timeout.
    Holder, "holder_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_follow_stripe_length_rules() {
        assert!(IdempotencyKey::new("a".repeat(255)).is_ok());
        let err = IdempotencyKey::new("a".repeat(256)).unwrap_err();
        assert!(err.to_string().contains("limit is 255"), "{err}");
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("has space").is_err());
    }

    #[test]
    fn skus_refuse_characters_outside_the_allowed_set() {
        assert!(Sku::new("TSHIRT-RED.L").is_ok());
        let err = Sku::new("drop table;").unwrap_err();
        assert!(err.to_string().contains("allowed are"), "{err}");
    }

    #[test]
    fn counter_ids_round_trip_through_text_and_refuse_garbage() {
        let id = OrderId(42);
        assert_eq!(id.to_string(), "ord_42");
        assert_eq!(OrderId::parse("ord_42"), Some(id));
        assert_eq!(OrderId::parse("ord_"), None);
        assert_eq!(OrderId::parse("ord_4x"), None);
        assert_eq!(OrderId::parse("job_4"), None);
        assert_eq!(OrderId::parse("ord_99999999999999999999999"), None);
        // One spelling per id: leading zeros name nothing, a lone zero is zero.
        assert_eq!(OrderId::parse("ord_042"), None);
        assert_eq!(OrderId::parse("ord_00"), None);
        assert_eq!(OrderId::parse("ord_0"), Some(OrderId(0)));
        assert_eq!(OrderId::parse("ord_10"), Some(OrderId(10)));
    }

    #[test]
    fn string_ids_validate_when_deserialized() {
        let err = serde_json_like_from_str::<Sku>("");
        assert!(err.is_err());
    }

    // Deserialization goes through `TryFrom<String>`; exercise it without a
    // JSON dependency in the core.
    fn serde_json_like_from_str<T: TryFrom<String>>(s: &str) -> Result<T, T::Error> {
        T::try_from(s.to_string())
    }
}
