//! Webhook signatures: `Psp-Signature: t=<unix>,v1=<hex HMAC-SHA256 over "t.body">`,
//! the PSP signs and the shop verifies with a 300 s tolerance (Stripe's scheme).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Largest accepted distance between the signature's timestamp and now.
pub const TOLERANCE_SECS: u64 = 300;

/// Why a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is missing or not `t=...,v1=...`.
    #[error("malformed Psp-Signature header: {0}")]
    Malformed(String),
    /// The timestamp is more than the tolerance away from now.
    #[error("signature timestamp {t} is {skew} s from now (tolerance {TOLERANCE_SECS} s)")]
    Stale {
        /// The header's timestamp.
        t: u64,
        /// Seconds away from now.
        skew: u64,
    },
    /// No `v1` matches the body.
    #[error("signature does not match the body")]
    Mismatch,
}

/// Whether `given` is `expected`, compared without stopping at the first
/// difference, so the time taken does not tell how much of a secret was
/// guessed right (the length is not secret).
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len()
        && expected
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn mac(secret: &[u8], t: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The header value signing `body` at Unix time `t`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex(&mac(secret, t, body).finalize().into_bytes())
    )
}

/// Verifies `header` for `body` at Unix time `now` (constant-time comparison).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64) -> Result<(), SignatureError> {
    if header.len() > 512 {
        return Err(SignatureError::Malformed("header too long".into()));
    }
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                t = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| SignatureError::Malformed(format!("bad t={value}")))?,
                )
            }
            Some(("v1", value)) => candidates.push(value),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| SignatureError::Malformed("no t=".into()))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("no v1=".into()));
    }
    let skew = now.abs_diff(t);
    if skew > TOLERANCE_SECS {
        return Err(SignatureError::Stale { t, skew });
    }
    let ok = candidates
        .iter()
        .filter_map(|c| unhex(c))
        .any(|sig| mac(secret, t, body).verify_slice(&sig).is_ok());
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_byte_for_byte_and_length_for_length() {
        // Proves: equal secrets match; one differing byte (first, last) or one byte more or less
        // does not; the empty secret matches only itself.
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"x3cret"));
        assert!(!same_secret(b"s3cret", b"s3crex"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"s3cret", b"s3crett"));
        assert!(same_secret(b"", b""));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time_window() {
        let header = sign(b"whsec", 1_000, b"{\"id\":\"evt_1\"}");
        assert_eq!(
            verify(b"whsec", &header, b"{\"id\":\"evt_1\"}", 1_100),
            Ok(())
        );
        assert_eq!(
            verify(b"whsec", &header, b"{\"id\":\"evt_2\"}", 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, b"{\"id\":\"evt_1\"}", 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"whsec", &header, b"{\"id\":\"evt_1\"}", 1_301),
            Err(SignatureError::Stale {
                t: 1_000,
                skew: 301
            })
        );
        assert!(matches!(
            verify(b"whsec", "v1=00", b"", 0),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(b"whsec", "t=1", b"", 0),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(b"whsec", "t=x,v1=00", b"", 0),
            Err(SignatureError::Malformed(_))
        ));
    }
}
