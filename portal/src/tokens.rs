//! Tokens: signed survey (and, later, unsubscribe) link tokens, and staff API
//! tokens. Both are random, both are stored only as their SHA-256
//! ([`hash_token`]), so a copy of the database gives no working link or key.
//!
//! A link token is `base64url(nonce ‖ tag)`: a 16-byte nonce (random, or
//! derived by HMAC from what the link is for: [`LinkSigner::derive`]) and the first
//! 16 bytes of HMAC-SHA256 over a purpose label and the nonce, keyed by
//! `CVM_PORTAL_SECRET`. A forged, altered or malformed token fails the
//! (constant-time) tag check before any query; the purpose label keeps a
//! token of one kind from being accepted as another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Bytes of randomness in a link token.
const NONCE_BYTES: usize = 16;
/// Bytes of the truncated HMAC tag in a link token.
const TAG_BYTES: usize = 16;
/// Characters of an encoded link token.
const LINK_TOKEN_CHARS: usize = ((NONCE_BYTES + TAG_BYTES) * 4).div_ceil(3);
/// What a derived nonce's HMAC starts with: no purpose label starts so, so a
/// nonce's MAC input never equals a tag's.
const NONCE_LABEL: &[u8] = b"cvm derived link nonce v1\0";
/// Prefix of staff API tokens, so leaked ones are recognisable (secret scanners).
pub const STAFF_TOKEN_PREFIX: &str = "cvm_";
/// Random bytes in a staff API token.
const STAFF_TOKEN_BYTES: usize = 32;

/// A token problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token this portal issued (forged, altered, malformed or of another kind).
    #[error("invalid token")]
    Invalid,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
    /// The signing key is shorter than the minimum.
    #[error("the portal secret must be at least {min} bytes, got {got}")]
    ShortKey {
        /// Required length.
        min: usize,
        /// Given length.
        got: usize,
    },
}

/// What a link token is for; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// `/s/{token}`: a survey invitation.
    Survey,
    /// `/u/{token}`: an unsubscribe link.
    Unsubscribe,
    /// `/exports/{token}`: a customer's data export.
    Export,
}

impl LinkPurpose {
    fn label(self) -> &'static [u8] {
        match self {
            LinkPurpose::Survey => b"cvm survey invitation v1\0",
            LinkPurpose::Unsubscribe => b"cvm unsubscribe v1\0",
            LinkPurpose::Export => b"cvm data export v1\0",
        }
    }
}

/// A freshly issued token: the token itself (shown or sent once) and the
/// hash that is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The token.
    pub token: String,
    /// Its SHA-256, lowercase hex (what the database holds).
    pub hash: String,
}

/// Signs and verifies link tokens with the portal secret.
#[derive(Clone)]
pub struct LinkSigner {
    /// HMAC state with the key already absorbed, cloned per token.
    keyed: Hmac<Sha256>,
}

// The key must never reach a log.
impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

impl LinkSigner {
    /// A signer keyed by `secret` (at least [`cvm_shared::config::MIN_SECRET_BYTES`]).
    pub fn new(secret: &[u8]) -> Result<LinkSigner, TokenError> {
        let min = cvm_shared::config::MIN_SECRET_BYTES;
        if secret.len() < min {
            return Err(TokenError::ShortKey {
                min,
                got: secret.len(),
            });
        }
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| {
            TokenError::ShortKey {
                min,
                got: secret.len(),
            }
        })?;
        Ok(LinkSigner { keyed })
    }

    fn mac(&self, purpose: LinkPurpose, nonce: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(purpose.label());
        mac.update(nonce);
        mac
    }

    /// A new random token for `purpose`.
    pub fn issue(&self, purpose: LinkPurpose) -> Result<Issued, TokenError> {
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce)?;
        Ok(self.signed(purpose, nonce))
    }

    /// The token of `subject` for `purpose`: the same subject always gets the
    /// same token. Its nonce is an HMAC of the subject (domain-separated from
    /// the tag's), so it is as unguessable as a random one without the key,
    /// verifies like any other, and can be made again whenever it must be
    /// shown, without ever being stored.
    pub fn derive(&self, purpose: LinkPurpose, subject: &[u8]) -> Issued {
        let mut mac = self.keyed.clone();
        mac.update(NONCE_LABEL);
        mac.update(purpose.label());
        mac.update(subject);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&mac.finalize().into_bytes()[..NONCE_BYTES]);
        self.signed(purpose, nonce)
    }

    /// The token of `nonce`: the nonce and its tag, encoded.
    fn signed(&self, purpose: LinkPurpose, nonce: [u8; NONCE_BYTES]) -> Issued {
        let mut raw = [0u8; NONCE_BYTES + TAG_BYTES];
        raw[..NONCE_BYTES].copy_from_slice(&nonce);
        let tag = self.mac(purpose, &nonce).finalize().into_bytes();
        raw[NONCE_BYTES..].copy_from_slice(&tag[..TAG_BYTES]);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let hash = hash_token(&token);
        Issued { token, hash }
    }

    /// Checks that `token` was issued by this signer for `purpose`; returns the
    /// hash to look it up by. Nothing but arithmetic happens before the answer.
    pub fn verify(&self, purpose: LinkPurpose, token: &str) -> Result<String, TokenError> {
        if token.len() != LINK_TOKEN_CHARS {
            return Err(TokenError::Invalid);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Invalid)?;
        // Only the canonical encoding is accepted: one token, one hash.
        if raw.len() != NONCE_BYTES + TAG_BYTES || URL_SAFE_NO_PAD.encode(&raw) != token {
            return Err(TokenError::Invalid);
        }
        self.mac(purpose, &raw[..NONCE_BYTES])
            .verify_truncated_left(&raw[NONCE_BYTES..])
            .map_err(|_| TokenError::Invalid)?;
        Ok(hash_token(token))
    }
}

/// A new staff API token (`cvm_` and 43 characters from the OS RNG).
pub fn new_staff_token() -> Result<Issued, TokenError> {
    let mut raw = [0u8; STAFF_TOKEN_BYTES];
    fill_random(&mut raw)?;
    let token = format!("{STAFF_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    let hash = hash_token(&token);
    Ok(Issued { token, hash })
}

/// A random key for `--dev` runs: 32 bytes from the OS RNG, as 64 hex digits.
pub fn random_secret() -> Result<String, TokenError> {
    let mut raw = [0u8; 32];
    fill_random(&mut raw)?;
    Ok(hex(&raw))
}

/// Whether `token` has the shape of a staff token (checked before any query).
pub fn looks_like_staff_token(token: &str) -> bool {
    token.strip_prefix(STAFF_TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == (STAFF_TOKEN_BYTES * 4).div_ceil(3)
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// SHA-256 of a token, lowercase hex: what the database stores and is
/// searched by. The tokens carry 128+ bits of randomness, so an unsalted
/// fast hash is enough (nothing to brute-force), and a lookup by hash leaks
/// nothing usable through its timing.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn fill_random(buf: &mut [u8]) -> Result<(), TokenError> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| TokenError::Rng(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signer() -> LinkSigner {
        LinkSigner::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn an_issued_link_token_verifies_to_its_hash() {
        let s = signer();
        let issued = s.issue(LinkPurpose::Survey).unwrap();
        assert_eq!(issued.token.len(), LINK_TOKEN_CHARS);
        assert_eq!(
            s.verify(LinkPurpose::Survey, &issued.token),
            Ok(issued.hash.clone())
        );
        assert_eq!(issued.hash, hash_token(&issued.token));
        assert_eq!(issued.hash.len(), 64);
    }

    #[test]
    fn tokens_are_random() {
        let s = signer();
        let a = s.issue(LinkPurpose::Survey).unwrap();
        let b = s.issue(LinkPurpose::Survey).unwrap();
        assert_ne!(a.token, b.token);
    }

    #[test]
    fn a_derived_token_is_stable_per_subject_and_verifies() {
        let s = signer();
        let a = s.derive(LinkPurpose::Survey, b"survey 1, customer c1");
        assert_eq!(a, s.derive(LinkPurpose::Survey, b"survey 1, customer c1"));
        assert_ne!(a, s.derive(LinkPurpose::Survey, b"survey 1, customer c2"));
        assert_ne!(
            a,
            s.derive(LinkPurpose::Unsubscribe, b"survey 1, customer c1")
        );
        assert_ne!(
            a,
            LinkSigner::new(&[8u8; 32])
                .unwrap()
                .derive(LinkPurpose::Survey, b"survey 1, customer c1")
        );
        assert_eq!(s.verify(LinkPurpose::Survey, &a.token), Ok(a.hash.clone()));
        assert_eq!(
            s.verify(LinkPurpose::Unsubscribe, &a.token),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_of_another_purpose_or_key_is_refused() {
        let s = signer();
        let issued = s.issue(LinkPurpose::Unsubscribe).unwrap();
        assert_eq!(
            s.verify(LinkPurpose::Survey, &issued.token),
            Err(TokenError::Invalid)
        );
        let other = LinkSigner::new(&[8u8; 32]).unwrap();
        assert_eq!(
            other.verify(LinkPurpose::Unsubscribe, &issued.token),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let s = signer();
        for t in [
            "",
            "abc",
            &"A".repeat(LINK_TOKEN_CHARS),
            &"é".repeat(22),
            "../../etc/passwd",
        ] {
            assert_eq!(
                s.verify(LinkPurpose::Survey, t),
                Err(TokenError::Invalid),
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert_eq!(
            LinkSigner::new(b"short").err(),
            Some(TokenError::ShortKey { min: 32, got: 5 })
        );
    }

    #[test]
    fn staff_tokens_have_their_documented_shape() {
        let t = new_staff_token().unwrap();
        assert!(looks_like_staff_token(&t.token), "{}", t.token);
        assert_eq!(t.hash, hash_token(&t.token));
        assert!(!looks_like_staff_token("cvm_short"));
        assert!(!looks_like_staff_token(&t.token.replace("cvm_", "xyz_")));
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    proptest! {
        /// Any change to a valid token (one character replaced, or characters
        /// cut or added) is refused.
        #[test]
        fn any_modified_token_is_refused(
            pos in 0usize..LINK_TOKEN_CHARS,
            replacement in proptest::char::any(),
            cut in 0usize..LINK_TOKEN_CHARS,
            extra in "[A-Za-z0-9_-]{1,4}",
        ) {
            let s = signer();
            let issued = s.issue(LinkPurpose::Survey).unwrap();
            let token = issued.token;
            let mut chars: Vec<char> = token.chars().collect();
            if chars[pos] != replacement {
                chars[pos] = replacement;
                let changed: String = chars.into_iter().collect();
                prop_assert_eq!(s.verify(LinkPurpose::Survey, &changed), Err(TokenError::Invalid));
            }
            prop_assert_eq!(s.verify(LinkPurpose::Survey, &token[..cut]), Err(TokenError::Invalid));
            let longer = format!("{token}{extra}");
            prop_assert_eq!(s.verify(LinkPurpose::Survey, &longer), Err(TokenError::Invalid));
        }
    }
}
