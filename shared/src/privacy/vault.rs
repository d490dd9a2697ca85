//! The vault of a pseudonymised warehouse (`warehouse.pseudonymise`): the
//! clear value behind every keyed hash its datasets hold, kept apart from
//! them in `_privacy/vault/part-<run_id>.parquet` files (columns `kind`,
//! `hash`, `value`), so that analysts read the datasets without personal
//! data while `load`, the data export and erasure still reach the clear
//! values. Readable only by the warehouse's owner (the `_privacy/` folder
//! is mode 0700). Each ingest adds one part with its drop's values, so a
//! night writes what it read, not the whole vault; a value may be in
//! several parts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::key::HASH_PREFIX;
use super::scan::{self, ScanError};

/// The folder beside the versions holding the erasure ledger and the vault.
pub const DIR: &str = "_privacy";
/// The vault's folder name inside [`DIR`].
pub const VAULT: &str = "vault";

/// The vault's folder inside a warehouse folder.
pub fn path(warehouse: &Path) -> PathBuf {
    warehouse.join(DIR).join(VAULT)
}

/// One row of the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What the value is (`email`, `phone`, `name`).
    pub kind: String,
    /// The keyed hash, hex (stored values are `h:` and this).
    pub hash: String,
    /// The clear value.
    pub value: String,
}

/// Every row of the vault of `warehouse`, part by part (none if it has no vault).
pub fn entries(warehouse: &Path) -> Result<Vec<Entry>, ScanError> {
    let table = scan::rows_where(&scan::parquet_files(&path(warehouse))?, |_, _| true)?;
    let col = |name: &str| table.columns.iter().position(|c| c == name);
    let (Some(k), Some(h), Some(v)) = (col("kind"), col("hash"), col("value")) else {
        return Ok(Vec::new());
    };
    Ok(table
        .rows
        .into_iter()
        .map(|mut r| Entry {
            kind: std::mem::take(&mut r[k]),
            hash: std::mem::take(&mut r[h]),
            value: std::mem::take(&mut r[v]),
        })
        .collect())
}

/// Clear values by keyed hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vault {
    by_hash: HashMap<String, String>,
}

impl Vault {
    /// The vault of `warehouse`; empty when it has none (not pseudonymised).
    pub fn read(warehouse: &Path) -> Result<Vault, ScanError> {
        let by_hash = entries(warehouse)?
            .into_iter()
            .map(|e| (e.hash, e.value))
            .collect();
        Ok(Vault { by_hash })
    }

    /// A vault of `(hash, value)` pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Vault {
        Vault {
            by_hash: pairs.into_iter().collect(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The clear value of a stored one: `h:<hash>` looked up (None when the
    /// vault no longer has it: an erased person's), anything else as it is.
    pub fn reveal<'a>(&'a self, stored: &'a str) -> Option<&'a str> {
        match stored.strip_prefix(HASH_PREFIX) {
            Some(hash) => self.by_hash.get(hash).map(String::as_str),
            None => Some(stored),
        }
    }

    /// [`Vault::reveal`] of an optional value.
    pub fn reveal_opt(&self, stored: Option<&str>) -> Option<String> {
        stored.and_then(|s| self.reveal(s)).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_values_are_looked_up_and_clear_ones_pass_through() {
        let v = Vault::from_pairs([("ab12".to_owned(), "ann@example.com".to_owned())]);
        assert_eq!(v.reveal("h:ab12"), Some("ann@example.com"));
        assert_eq!(v.reveal("h:ffff"), None, "an erased person's hash");
        assert_eq!(v.reveal("bo@example.com"), Some("bo@example.com"));
    }
}
