//! `X-Hub-Signature-256` verification: HMAC-SHA256 over the raw body, compared in constant time.
//! Only `sha256=` is accepted; there is deliberately no SHA-1 fallback.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The text is short and safe to send back in a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 must be sha256=<64 hex digits>")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

/// Verifies `header` (the value of `X-Hub-Signature-256`) for `body` under `secret`.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    // verify_slice compares in constant time (subtle), so timing reveals nothing of the digest.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The header value GitHub would send for `body` under `secret` (for tests, benches and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented test vector ("Validating webhook deliveries").
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const PAYLOAD: &[u8] = b"Hello, World!";
    const HEADER: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_test_vector_verifies() {
        assert_eq!(verify(SECRET, PAYLOAD, Some(HEADER)), Ok(()));
        assert_eq!(sign(SECRET, PAYLOAD), HEADER);
    }

    #[test]
    fn tampered_body_wrong_secret_and_sha1_are_refused() {
        assert_eq!(
            verify(SECRET, b"Hello, World?", Some(HEADER)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", PAYLOAD, Some(HEADER)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET,
                PAYLOAD,
                Some("sha1=0123456789abcdef0123456789abcdef01234567")
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify(SECRET, PAYLOAD, None), Err(SignatureError::Missing));
        let upper = HEADER.to_uppercase();
        assert_eq!(
            verify(SECRET, PAYLOAD, Some(&upper)),
            Err(SignatureError::Malformed)
        );
    }
}
