//! The pseudonymised warehouse (`warehouse.pseudonymise`): emails, phones
//! and names are replaced by keyed hashes (`h:` and 32 hex digits) as each
//! record is parsed, right after normalisation, so everything downstream
//! (versions, identity resolution, guests, datasets, `_state`) sees only
//! hashes. Equal keys still hash equal, so identity resolution and scores
//! do not change; only guest ids, derived from a guest's smallest key, do.
//!
//! The clear values go to the vault (`cvm_shared::privacy::vault`), written
//! before the version that needs them is published; a rejected record's raw
//! text and detail go to `_privacy/runs/<run_id>/rejects.parquet`, and the
//! run's public rejects keep its file, line and reason.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use cvm_shared::Settings;
use cvm_shared::privacy::key::HASH_PREFIX;
use cvm_shared::privacy::vault::{self, Vault};
use cvm_shared::privacy::{KeyError, KeyKind, PrivacyKey};
use rayon::prelude::*;

use crate::warehouse::parquet_io::{
    chunks, read_batches, utf8_array, write_batches, writer_properties,
};
use crate::warehouse::{RejectRow, WarehouseError};

/// Replaces personal values by keyed hashes, noting the clear ones.
#[derive(Debug, Clone)]
pub struct Pseudonymiser {
    key: PrivacyKey,
}

/// One clear value behind a hash, for the vault.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VaultEntry {
    /// The keyed hash (hex, without `h:`).
    pub hash: String,
    /// `email`, `phone` or `name`.
    pub kind: KeyKind,
    /// The clear value.
    pub value: String,
}

impl Pseudonymiser {
    /// The pseudonymiser the settings ask for (None when off); on, it needs
    /// `CVM_PRIVACY_KEY`.
    pub fn from_settings(settings: &Settings) -> Result<Option<Pseudonymiser>, KeyError> {
        if !settings.warehouse.pseudonymise {
            return Ok(None);
        }
        Ok(Some(Pseudonymiser {
            key: PrivacyKey::from_env()?,
        }))
    }

    /// A pseudonymiser with `key`.
    pub fn new(key: PrivacyKey) -> Pseudonymiser {
        Pseudonymiser { key }
    }

    /// `value`'s stored form (`h:<hash>`), its clear value noted in `vault`.
    pub fn hide(&self, kind: KeyKind, value: &str, vault: &mut Vec<VaultEntry>) -> Box<str> {
        let hash = self.key.hash(kind, value);
        let stored = format!("{HASH_PREFIX}{hash}").into();
        vault.push(VaultEntry {
            hash,
            kind,
            value: value.to_owned(),
        });
        stored
    }

    /// [`Pseudonymiser::hide`] in place, on an optional value.
    pub fn hide_opt(&self, kind: KeyKind, v: &mut Option<Box<str>>, vault: &mut Vec<VaultEntry>) {
        if let Some(s) = v.as_deref() {
            *v = Some(self.hide(kind, s, vault));
        }
    }

    /// What a version records of the key that pseudonymised it (a keyed
    /// hash of a fixed text), so a run with another key is refused.
    pub fn fingerprint(&self) -> String {
        self.key
            .hash(KeyKind::Name, "cvm warehouse pseudonymisation key check")
    }

    /// The public copy of a reject (file, line, reason); the clear one goes
    /// to [`write_private_rejects`].
    pub fn public_reject(row: &RejectRow) -> RejectRow {
        RejectRow {
            detail: String::new(),
            raw: String::new(),
            ..row.clone()
        }
    }
}

/// Why a run's mode differs from its warehouse's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModeError {
    /// Pseudonymisation switched on or off over an existing warehouse.
    #[error(
        "the warehouse {warehouse} was built with warehouse.pseudonymise = {stored}, and this run has it {asked}: a warehouse keeps the mode of its first load, so ingest the drops into a new warehouse folder to change it"
    )]
    Switched {
        /// The warehouse folder.
        warehouse: PathBuf,
        /// Its mode.
        stored: bool,
        /// This run's.
        asked: bool,
    },
    /// Another key than the one the warehouse was pseudonymised with.
    #[error(
        "CVM_PRIVACY_KEY is not the key the warehouse {0} was pseudonymised with: set the original key (a new key would split every customer in two)"
    )]
    OtherKey(PathBuf),
}

/// Checks this run's pseudonymisation against the stored version's
/// fingerprint (None: not pseudonymised; no stored version: anything goes).
pub fn check_mode(
    warehouse: &Path,
    stored_version: bool,
    stored: Option<&str>,
    run: Option<&Pseudonymiser>,
) -> Result<(), ModeError> {
    if !stored_version {
        return Ok(());
    }
    match (stored, run) {
        (None, None) => Ok(()),
        (Some(f), Some(p)) if p.fingerprint() == f => Ok(()),
        (Some(_), Some(_)) => Err(ModeError::OtherKey(warehouse.to_path_buf())),
        (s, r) => Err(ModeError::Switched {
            warehouse: warehouse.to_path_buf(),
            stored: s.is_some(),
            asked: r.is_some(),
        }),
    }
}

static VAULT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![text("kind"), text("hash"), text("value")]))
});

/// Parts beyond which adding one merges them all into one.
const MAX_PARTS: usize = 64;

/// Adds `entries` to the vault of `warehouse` as the part of run `run_id`
/// (sorted by hash, written atomically); merges the parts when there are
/// more than [`MAX_PARTS`]. Returns the entries written.
pub fn add_to_vault(
    warehouse: &Path,
    run_id: &str,
    entries: impl IntoIterator<Item = VaultEntry>,
) -> Result<usize, WarehouseError> {
    let mut rows: Vec<VaultEntry> = entries.into_iter().collect();
    if rows.is_empty() {
        return Ok(0);
    }
    rows.par_sort_unstable_by(|a, b| a.hash.cmp(&b.hash));
    rows.dedup_by(|a, b| a.hash == b.hash);
    write_part(&part_path(warehouse, run_id), &rows)?;
    let parts = part_files(warehouse)?;
    if parts.len() > MAX_PARTS {
        // The merged part first: a kill in between leaves values twice, never none.
        let mut all = read_entries(warehouse)?;
        all.par_sort_unstable_by(|a, b| a.hash.cmp(&b.hash));
        all.dedup_by(|a, b| a.hash == b.hash);
        let merged = part_path(warehouse, &format!("{run_id}-merged"));
        write_part(&merged, &all)?;
        for p in parts.iter().filter(|p| **p != merged) {
            std::fs::remove_file(p).map_err(|source| WarehouseError::Io {
                path: p.clone(),
                source,
            })?;
        }
    }
    Ok(rows.len())
}

/// Removes the entries of `hashes` from the vault, rewriting only the
/// parts that hold one; returns how many rows went.
pub fn remove_from_vault(
    warehouse: &Path,
    hashes: &HashSet<String>,
) -> Result<usize, WarehouseError> {
    let mut removed = 0;
    for part in part_files(warehouse)? {
        let mut rows = read_part(&part)?;
        let before = rows.len();
        rows.retain(|e| !hashes.contains(&e.hash));
        if rows.len() != before {
            removed += before - rows.len();
            write_part(&part, &rows)?;
        }
    }
    Ok(removed)
}

/// Removes from the vault every value that no file of `version` holds any
/// more (an erased person's names, once their rows are rewritten), and the
/// `erased` ones (their keys: rewritten rows keep them hashed, so that key
/// sets stay apart); returns how many went. Generic over the files: every
/// `h:` text cell counts.
pub fn keep_in_vault_only_what(
    warehouse: &Path,
    version: &Path,
    erased: &HashSet<String>,
) -> Result<usize, WarehouseError> {
    if !vault::path(warehouse).exists() {
        return Ok(0);
    }
    let mut held: HashSet<String> = HashSet::new();
    // Every file, `_state/` included (which folder readers skip).
    let files =
        cvm_shared::privacy::scan::parquet_files(version).map_err(|e| WarehouseError::Format {
            path: version.to_path_buf(),
            message: e.to_string(),
        })?;
    for item in files
        .iter()
        .map(|f| read_batches(f))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
    {
        let (_, batch) = item?;
        for column in batch.columns() {
            let Some(a) = column.as_any().downcast_ref::<StringArray>() else {
                continue;
            };
            for v in a.iter().flatten() {
                if let Some(hash) = v.strip_prefix(HASH_PREFIX)
                    && !held.contains(hash)
                {
                    held.insert(hash.to_owned());
                }
            }
        }
    }
    let gone: HashSet<String> = read_entries(warehouse)?
        .into_iter()
        .map(|e| e.hash)
        .filter(|h| !held.contains(h) || erased.contains(h))
        .collect();
    remove_from_vault(warehouse, &gone)
}

/// The clear values of `vault` behind `stored` values, for text searches.
pub fn clear_values<'a>(
    vault: &'a Vault,
    stored: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    stored
        .into_iter()
        .filter(|s| s.starts_with(HASH_PREFIX))
        .filter_map(|s| vault.reveal(s).map(str::to_owned))
        .collect()
}

/// The vault part of run `run_id`.
pub fn part_path(warehouse: &Path, run_id: &str) -> PathBuf {
    vault::path(warehouse).join(format!("part-{run_id}.parquet"))
}

fn part_files(warehouse: &Path) -> Result<Vec<PathBuf>, WarehouseError> {
    cvm_shared::privacy::scan::parquet_files(&vault::path(warehouse)).map_err(|e| {
        WarehouseError::Format {
            path: vault::path(warehouse),
            message: e.to_string(),
        }
    })
}

fn read_part(part: &Path) -> Result<Vec<VaultEntry>, WarehouseError> {
    let table =
        cvm_shared::privacy::scan::rows_where(std::slice::from_ref(&part.to_path_buf()), |_, _| {
            true
        })
        .map_err(|e| WarehouseError::Format {
            path: part.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(entries_of(table))
}

fn read_entries(warehouse: &Path) -> Result<Vec<VaultEntry>, WarehouseError> {
    let mut all = Vec::new();
    for part in part_files(warehouse)? {
        all.extend(read_part(&part)?);
    }
    Ok(all)
}

fn entries_of(table: cvm_shared::privacy::scan::Table) -> Vec<VaultEntry> {
    let col = |name: &str| table.columns.iter().position(|c| c == name);
    let (Some(k), Some(h), Some(v)) = (col("kind"), col("hash"), col("value")) else {
        return Vec::new();
    };
    table
        .rows
        .into_iter()
        .filter_map(|mut r| {
            Some(VaultEntry {
                kind: KeyKind::parse(&r[k])?,
                hash: std::mem::take(&mut r[h]),
                value: std::mem::take(&mut r[v]),
            })
        })
        .collect()
}

fn write_part(path: &Path, rows: &[VaultEntry]) -> Result<(), WarehouseError> {
    private_dir(path)?;
    let batches = chunks(rows.len()).map(|r| {
        let part = &rows[r];
        let columns: Vec<ArrayRef> = vec![
            utf8_array(part.iter().map(|e| e.kind.as_str())),
            utf8_array(part.iter().map(|e| e.hash.as_str())),
            utf8_array(part.iter().map(|e| e.value.as_str())),
        ];
        RecordBatch::try_new(VAULT_SCHEMA.clone(), columns)
            .expect("columns are built to match the schema")
    });
    write_batches(path, &VAULT_SCHEMA, &writer_properties(&["kind"]), batches).map(drop)
}

/// Where a run's clear rejects go in a pseudonymised warehouse.
pub fn private_rejects_path(warehouse: &Path, run_id: &str) -> PathBuf {
    warehouse
        .join(vault::DIR)
        .join(crate::warehouse::runs::RUNS)
        .join(run_id)
        .join("rejects.parquet")
}

/// Writes a run's clear rejects into the private folder.
pub fn write_private_rejects(
    warehouse: &Path,
    run_id: &str,
    rows: &[RejectRow],
) -> Result<(), WarehouseError> {
    let path = private_rejects_path(warehouse, run_id);
    private_dir(&path)?;
    crate::warehouse::rejects::write(&path, rows).map(drop)
}

/// Creates the `_privacy/` folder (and the parents of `file` in it) readable
/// by the owner only.
fn private_dir(file: &Path) -> Result<(), WarehouseError> {
    let Some(parent) = file.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(parent).map_err(|source| WarehouseError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut dir = parent;
        // Up to and including `_privacy/` itself.
        loop {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| WarehouseError::Io {
                    path: dir.to_path_buf(),
                    source,
                },
            )?;
            if dir.file_name().is_some_and(|n| n == vault::DIR) {
                break;
            }
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn p() -> Pseudonymiser {
        Pseudonymiser::new(PrivacyKey::new(&[7; 32]).unwrap())
    }

    #[test]
    fn equal_values_hide_equal_and_the_vault_gives_them_back() {
        let d = tempfile::tempdir().unwrap();
        let mut noted = Vec::new();
        let a = p().hide(KeyKind::Email, "ann@example.com", &mut noted);
        let b = p().hide(KeyKind::Email, "ann@example.com", &mut noted);
        let c = p().hide(KeyKind::Phone, "ann@example.com", &mut noted);
        assert_eq!(a, b);
        assert_ne!(a, c, "kinds hash apart");
        assert!(a.starts_with("h:") && !a.contains("ann"));
        assert_eq!(add_to_vault(d.path(), "r1", noted).unwrap(), 2);
        let v = Vault::read(d.path()).unwrap();
        assert_eq!(v.reveal(&a), Some("ann@example.com"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("_privacy"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let gone: HashSet<String> = [a.trim_start_matches("h:").to_owned()].into();
        assert_eq!(remove_from_vault(d.path(), &gone).unwrap(), 1);
        assert_eq!(Vault::read(d.path()).unwrap().reveal(&a), None);
    }

    #[test]
    fn each_run_adds_a_part_and_too_many_parts_are_merged() {
        let d = tempfile::tempdir().unwrap();
        let mut first = None;
        for run in 0..=MAX_PARTS + 1 {
            let mut noted = Vec::new();
            // Every run notes the same value and one of its own.
            let same = p().hide(KeyKind::Email, "same@example.com", &mut noted);
            p().hide(KeyKind::Email, &format!("run{run}@example.com"), &mut noted);
            first.get_or_insert(same);
            add_to_vault(d.path(), &format!("r{run:03}"), noted).unwrap();
        }
        let parts = part_files(d.path()).unwrap();
        assert!(parts.len() < MAX_PARTS, "{} parts", parts.len());
        let v = Vault::read(d.path()).unwrap();
        assert_eq!(
            v.reveal(first.as_deref().unwrap()),
            Some("same@example.com")
        );
        let mut noted = Vec::new();
        let last = p().hide(
            KeyKind::Email,
            &format!("run{}@example.com", MAX_PARTS + 1),
            &mut noted,
        );
        assert_eq!(v.reveal(&last), Some(noted[0].value.as_str()));
        let hashes: Vec<String> = read_entries(d.path())
            .unwrap()
            .into_iter()
            .map(|e| e.hash)
            .collect();
        let distinct: HashSet<&String> = hashes.iter().collect();
        assert_eq!(distinct.len(), MAX_PARTS + 3);
    }

    #[test]
    fn a_warehouse_keeps_its_mode_and_key() {
        let w = Path::new("/w");
        let f = p().fingerprint();
        assert!(check_mode(w, false, None, Some(&p())).is_ok(), "first load");
        assert!(check_mode(w, true, Some(&f), Some(&p())).is_ok());
        assert!(check_mode(w, true, None, None).is_ok());
        let other = Pseudonymiser::new(PrivacyKey::new(&[8; 32]).unwrap());
        assert_eq!(
            check_mode(w, true, Some(&f), Some(&other)),
            Err(ModeError::OtherKey(w.into()))
        );
        let e = check_mode(w, true, None, Some(&p())).unwrap_err();
        assert!(e.to_string().contains("pseudonymise = false"), "{e}");
        assert!(check_mode(w, true, Some(&f), None).is_err());
    }
}
