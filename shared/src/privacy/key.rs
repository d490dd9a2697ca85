//! The privacy key (`CVM_PRIVACY_KEY`) and what it derives: keyed hashes of
//! a person's normalised keys (the erasure ledger, hashed suppressions,
//! the pseudonymised warehouse) and the pseudonym that replaces an erased
//! customer's id. Keyed (HMAC-SHA-256), so nobody without the key can test
//! whether an address they know was ever a customer's.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The environment variable holding the key.
pub const ENV: &str = "CVM_PRIVACY_KEY";
/// Shortest key accepted, in bytes.
pub const MIN_BYTES: usize = 32;
/// Prefix of an erased customer's pseudonym.
pub const PSEUDONYM_PREFIX: &str = "erased-";
/// Prefix of a keyed hash stored where a clear value used to be.
pub const HASH_PREFIX: &str = "h:";

/// Why the key is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not set.
    #[error(
        "{ENV} is not set: erasures and a pseudonymised warehouse need a secret of at least {MIN_BYTES} bytes (e.g. `openssl rand -hex 32`), the same for every cvm process and kept for good"
    )]
    Missing,
    /// Too short.
    #[error(
        "{ENV} is {0} bytes long; it must be at least {MIN_BYTES} (e.g. `openssl rand -hex 32`)"
    )]
    TooShort(usize),
}

/// What a keyed hash is of (so equal strings of different kinds differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// A customer id (CRM id, guest id, or the id a source gave).
    CustomerId,
    /// A normalised email.
    Email,
    /// A phone in E.164.
    Phone,
    /// A name (first or last), as stored.
    Name,
}

impl KeyKind {
    /// Its name, as stored beside a hash (`customer_id`, `email`, `phone`, `name`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::CustomerId => "customer_id",
            KeyKind::Email => "email",
            KeyKind::Phone => "phone",
            KeyKind::Name => "name",
        }
    }

    /// The kind named `text` ([`KeyKind::as_str`]).
    pub fn parse(text: &str) -> Option<KeyKind> {
        [
            KeyKind::CustomerId,
            KeyKind::Email,
            KeyKind::Phone,
            KeyKind::Name,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// The privacy key.
#[derive(Clone)]
pub struct PrivacyKey {
    mac: Hmac<Sha256>,
}

// Never print the key.
impl std::fmt::Debug for PrivacyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivacyKey(..)")
    }
}

impl PrivacyKey {
    /// A key from its secret bytes (at least [`MIN_BYTES`]).
    pub fn new(secret: &[u8]) -> Result<PrivacyKey, KeyError> {
        if secret.len() < MIN_BYTES {
            return Err(KeyError::TooShort(secret.len()));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .map_err(|_| KeyError::TooShort(secret.len()))?;
        Ok(PrivacyKey { mac })
    }

    /// The key of `CVM_PRIVACY_KEY`.
    pub fn from_env() -> Result<PrivacyKey, KeyError> {
        match std::env::var_os(ENV) {
            None => Err(KeyError::Missing),
            Some(v) if v.is_empty() => Err(KeyError::Missing),
            Some(v) => PrivacyKey::new(v.as_encoded_bytes()),
        }
    }

    /// The key of `CVM_PRIVACY_KEY` if it is set (a set but unusable key is an error).
    pub fn from_env_if_set() -> Result<Option<PrivacyKey>, KeyError> {
        match PrivacyKey::from_env() {
            Ok(k) => Ok(Some(k)),
            Err(KeyError::Missing) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The keyed hash of a `kind` value: 32 lowercase hex digits (128 bits).
    pub fn hash(&self, kind: KeyKind, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(kind.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        hex(&digest[..16])
    }

    /// The keyed hash as stored in place of a clear value (`h:<hex>`).
    pub fn hashed_value(&self, kind: KeyKind, value: &str) -> String {
        format!("{HASH_PREFIX}{}", self.hash(kind, value))
    }

    /// The hash of a value as a warehouse stores it: a pseudonymised
    /// warehouse's emails, phones and names are already hashes (`h:<hash>`).
    pub fn hash_of_stored(&self, kind: KeyKind, stored: &str) -> String {
        match stored.strip_prefix(HASH_PREFIX) {
            Some(hash) if kind != KeyKind::CustomerId => hash.to_owned(),
            _ => self.hash(kind, stored),
        }
    }

    /// The pseudonym that replaces an erased customer's id everywhere:
    /// stable (erasing again finds the same one) and unlinkable without the key.
    pub fn pseudonym(&self, customer_id: &str) -> String {
        let h = self.hash(KeyKind::CustomerId, customer_id);
        format!("{PSEUDONYM_PREFIX}{}", &h[..24])
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn a_short_key_is_refused_with_its_length() {
        let e = PrivacyKey::new(&[7; 31]).unwrap_err();
        assert_eq!(e, KeyError::TooShort(31));
        assert!(e.to_string().contains("CVM_PRIVACY_KEY is 31 bytes"), "{e}");
    }

    #[test]
    fn hashes_depend_on_key_kind_and_value() {
        let a = PrivacyKey::new(&[1; 32]).unwrap();
        let b = PrivacyKey::new(&[2; 32]).unwrap();
        let h = a.hash(KeyKind::Email, "ann@example.com");
        assert_eq!(h.len(), 32);
        assert_eq!(h, a.hash(KeyKind::Email, "ann@example.com"));
        assert_ne!(h, b.hash(KeyKind::Email, "ann@example.com"));
        assert_ne!(h, a.hash(KeyKind::Phone, "ann@example.com"));
        assert_ne!(h, a.hash(KeyKind::Email, "bob@example.com"));
        let p = a.pseudonym("C1");
        assert!(p.starts_with("erased-") && p.len() == 31, "{p}");
        assert_eq!(p, a.pseudonym("C1"));
        assert_ne!(p, a.pseudonym("C2"));
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let k = PrivacyKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format!("{k:?}"), "PrivacyKey(..)");
    }
}
