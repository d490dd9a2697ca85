//! The erasure ledger: keyed hashes of every erased person's normalised
//! keys (ids, emails, phones; never the keys themselves), kept beside the
//! versions at `_privacy/erasure_ledger.json` so that every later ingest
//! drops a re-delivered record of that person on arrival (outcome
//! `erased`): a CRM export that still lists them does not bring them back.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use cvm_shared::privacy::{KeyError, KeyKind, PrivacyKey};
use serde::{Deserialize, Serialize};

use crate::record::Keys;
use crate::warehouse::WarehouseError;
use crate::warehouse::parquet_io::write_atomically;

/// The ledger's path inside a warehouse folder.
pub fn path(warehouse: &Path) -> PathBuf {
    warehouse.join("_privacy").join("erasure_ledger.json")
}

/// A hashed key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LedgerKey {
    /// `customer_id`, `email` or `phone`.
    pub kind: String,
    /// The keyed hash (`CVM_PRIVACY_KEY`).
    pub hash: String,
}

impl LedgerKey {
    /// The ledger entry of a `kind` hash.
    pub fn new(kind: KeyKind, hash: String) -> LedgerKey {
        LedgerKey {
            kind: kind.as_str().into(),
            hash,
        }
    }
}

/// The ledger: per pseudonym, the hashed keys of the person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Format version (1).
    pub version: u32,
    /// Pseudonym → hashed keys.
    pub erasures: BTreeMap<String, BTreeSet<LedgerKey>>,
}

impl Ledger {
    /// The ledger of `warehouse` (empty if there is none yet).
    pub fn read(warehouse: &Path) -> Result<Ledger, WarehouseError> {
        let p = path(warehouse);
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| WarehouseError::Format {
                path: p.clone(),
                message: format!("not an erasure ledger: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(source) => Err(WarehouseError::Io { path: p, source }),
        }
    }

    /// Adds `keys` to `pseudonym`'s entry; returns whether anything was new.
    pub fn add(&mut self, pseudonym: &str, keys: impl IntoIterator<Item = LedgerKey>) -> bool {
        let entry = self.erasures.entry(pseudonym.to_owned()).or_default();
        let before = entry.len();
        entry.extend(keys);
        entry.len() > before || before == 0
    }

    /// Writes the ledger into `warehouse`, atomically.
    pub fn write(&self, warehouse: &Path) -> Result<(), WarehouseError> {
        let p = path(warehouse);
        let ledger = Ledger {
            version: 1,
            erasures: self.erasures.clone(),
        };
        let json = serde_json::to_vec_pretty(&ledger).unwrap_or_default();
        write_atomically(&p, |mut out| {
            out.write_all(&json).map_err(|source| WarehouseError::Io {
                path: p.clone(),
                source,
            })?;
            Ok(out)
        })
        .map(drop)
    }

    /// Whether no one was ever erased.
    pub fn is_empty(&self) -> bool {
        self.erasures.is_empty()
    }

    /// What ingest checks records against; None when the ledger is empty.
    /// A non-empty ledger needs the key that made it.
    pub fn matcher(&self) -> Result<Option<Matcher>, KeyError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = PrivacyKey::from_env()?;
        let hashes = self.erasures.values().flatten().cloned().collect();
        Ok(Some(Matcher { key, hashes }))
    }
}

/// Recognises a record of an erased person by its keys.
#[derive(Debug, Clone)]
pub struct Matcher {
    key: PrivacyKey,
    hashes: HashSet<LedgerKey>,
}

impl Matcher {
    /// Whether one of the keys (already normalised) is an erased person's.
    pub fn erased(
        &self,
        customer_id: Option<&str>,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> bool {
        let hit = |kind: KeyKind, value: &str| {
            self.hashes
                .contains(&LedgerKey::new(kind, self.key.hash_of_stored(kind, value)))
        };
        customer_id.is_some_and(|v| hit(KeyKind::CustomerId, v))
            || email.is_some_and(|v| hit(KeyKind::Email, v))
            || phone.is_some_and(|v| hit(KeyKind::Phone, v))
    }

    /// [`Matcher::erased`] of a record's keys.
    pub fn erased_keys(&self, keys: &Keys) -> bool {
        self.erased(
            keys.customer_id.as_deref(),
            keys.email.as_deref(),
            keys.phone.as_deref(),
        )
    }
}
