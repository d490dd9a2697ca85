//! `cvm-etl privacy export|erase`: a customer's data rights, answered
//! everywhere the product keeps data.
//!
//! - **export**: one zip archive of everything held about the customer, from
//!   the database and the warehouse (`cvm_shared::privacy::export`).
//! - **erase**: the database part (`cvm_shared::privacy::erase`, one
//!   transaction), then the warehouse ([`apply_pending`]), which also
//!   completes erasures staff made through the portal (whose processes do
//!   not touch Parquet). `cvm-etl nightly` applies pending ones first.
//!
//! The warehouse part, under the warehouse lock, in an order that a kill at
//! any moment and a re-run complete (each step is idempotent, and the person
//! stays findable in `current` until the last rewrite needs them):
//! 1. find the people in `current` by the keyed hashes of their ids, and
//!    every key they used (transactions, events' key sets, CRM key history);
//! 2. rewrite in place (atomically, file by file) the files outside
//!    versions: every scoring date's scores, runs' rejects and CSV files;
//!    delete the file outbox's messages to them;
//! 3. add their hashed keys to the erasure ledger (future drops are
//!    dropped on arrival);
//! 4. publish a new version: `current`'s files, rewritten where they hold
//!    the people (see [`rewrite`]), linked where they do not;
//! 5. delete every older version (they hold what was erased); in a
//!    pseudonymised warehouse, remove their clear values from the vault;
//! 6. mark the erasures done in the database.

pub mod ledger;
pub mod outbox;
pub mod pseudonymise;
pub mod rewrite;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{SubsecRound, Utc};
use cvm_shared::db::{DbConnection, DbError, DbUrl};
use cvm_shared::privacy::erase::{self, EraseError, ErasureOutcome, ErasureRequest, HashedKey};
use cvm_shared::privacy::export::{self, ExportError, ExportRequest, ExportSummary};
use cvm_shared::privacy::scan::{self, ScanError};
use cvm_shared::privacy::vault::{self, Vault};
use cvm_shared::privacy::{KeyError, KeyKind, PrivacyKey};

use crate::warehouse::WarehouseError;
use crate::warehouse::parquet_io::link_or_copy;
use crate::warehouse::publish::{PublishError, Warehouse};
use ledger::{Ledger, LedgerKey};
use rewrite::People;

/// Why a privacy command failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// `CVM_PRIVACY_KEY` is missing or unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The database erasure failed (nothing was changed).
    #[error(transparent)]
    Erase(#[from] EraseError),
    /// The warehouse lock or publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A warehouse file could not be read or written.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// A warehouse file could not be scanned.
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// Who runs a command from the command line (`cli:<user>`), for the audit log.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// `cvm-etl privacy export`.
pub fn export(
    warehouse: &Path,
    db_url: &str,
    customer_id: &str,
    out: &Path,
) -> Result<ExportSummary, PrivacyError> {
    let key = PrivacyKey::from_env_if_set()?;
    let mut conn = DbConnection::open_for_write(&DbUrl::parse(db_url)?)?;
    let actor = cli_actor();
    let summary = export::export_customer(
        &mut conn,
        &ExportRequest {
            customer_id,
            actor: &actor,
            warehouse: Some(warehouse),
            key: key.as_ref(),
            out,
            at: Utc::now().naive_utc().trunc_subsecs(6),
        },
    )?;
    Ok(summary)
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraseReport {
    /// The pseudonym.
    pub pseudonym: String,
    /// False when the customer had been erased before.
    pub newly_erased: bool,
    /// What the warehouse part did (this erasure and any pending ones).
    pub warehouse: Applied,
}

/// `cvm-etl privacy erase`; `outbox` is the portal's file outbox folder, if any.
pub fn erase(
    warehouse: &Path,
    db_url: &str,
    customer_id: &str,
    reason: &str,
    outbox: Option<&Path>,
) -> Result<EraseReport, PrivacyError> {
    let key = PrivacyKey::from_env()?;
    let mut conn = DbConnection::open_for_write(&DbUrl::parse(db_url)?)?;
    let actor = cli_actor();
    let outcome = erase::erase_in_database(
        &mut conn,
        &key,
        &ErasureRequest {
            customer_id,
            actor: &actor,
            reason,
            at: Utc::now().naive_utc().trunc_subsecs(6),
        },
    )?;
    let wh = Warehouse::open(warehouse)?;
    let applied = apply_pending(&mut conn, &wh, outbox, &key)?;
    Ok(EraseReport {
        pseudonym: outcome.erasure().pseudonym.clone(),
        newly_erased: matches!(outcome, ErasureOutcome::Erased(_)),
        warehouse: applied,
    })
}

/// What [`apply_pending`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Erasures completed.
    pub erasures: usize,
    /// Of their people, those found in the warehouse.
    pub found: usize,
    /// Files rewritten (each once, however many versions linked it).
    pub files_rewritten: usize,
    /// Older versions deleted.
    pub versions_deleted: usize,
    /// Messages deleted from the file outbox.
    pub messages_deleted: usize,
    /// Clear values removed from the vault (pseudonymised warehouse).
    pub vault_removed: usize,
    /// The new version, if one was published.
    pub version: Option<String>,
}

/// [`apply_pending`] when erasures are pending (made through the portal);
/// only then is `CVM_PRIVACY_KEY` needed. What the nightly job runs first.
pub fn apply_pending_if_any(
    conn: &mut DbConnection,
    wh: &Warehouse,
    outbox: Option<&Path>,
) -> Result<Applied, PrivacyError> {
    if erase::pending_in_warehouse(conn)?.is_empty() {
        return Ok(Applied::default());
    }
    let key = PrivacyKey::from_env()?;
    apply_pending(conn, wh, outbox, &key)
}

/// Completes every erasure whose warehouse part is pending (see the module
/// doc), under the lock `wh` holds.
pub fn apply_pending(
    conn: &mut DbConnection,
    wh: &Warehouse,
    outbox: Option<&Path>,
    key: &PrivacyKey,
) -> Result<Applied, PrivacyError> {
    let pending = erase::pending_in_warehouse(conn)?;
    if pending.is_empty() {
        return Ok(Applied::default());
    }
    let root = wh.root();
    let mut applied = Applied {
        erasures: pending.len(),
        ..Applied::default()
    };
    let current = wh.current()?;
    let (people, found_keys) = match &current {
        Some(version) => find(root, version, &pending, key)?,
        None => (People::default(), HashMap::new()),
    };
    applied.found = people.ids.len();

    // 2. Files outside versions, and messages in the file outbox.
    if !people.is_empty() {
        applied.files_rewritten += rewrite_outside_versions(root, &people, key)?;
        if let Some(dir) = outbox {
            applied.messages_deleted = outbox::scrub(dir, &people)?;
        }
    }

    // 3. The ledger, before the version that drops them is visible. An
    // address or phone another customer still has stays out of it: records
    // carrying it are that customer's too, and resolve to them.
    let shared = match &current {
        Some(version) => keys_others_have(version, &people, key)?,
        None => HashSet::new(),
    };
    let mut ledger = Ledger::read(root)?;
    for (e, keys) in &pending {
        let mut all: Vec<LedgerKey> = keys
            .iter()
            .map(|k| LedgerKey::new(k.kind, k.hash.clone()))
            .collect();
        all.extend(found_keys.get(&e.pseudonym).into_iter().flatten().cloned());
        all.retain(|k| !shared.contains(k));
        ledger.add(&e.pseudonym, all);
    }
    ledger.write(root)?;

    // 4. A new version without them.
    if let (Some(version), false) = (&current, people.is_empty()) {
        let id = crate::manifest::new_run_id("erase");
        let staging = wh.begin(&id)?;
        applied.files_rewritten += stage_rewritten(version, &staging.dir, &people, key)?;
        wh.publish(staging)?;
        applied.version = Some(id);
    }

    // 5. Older versions hold what was erased.
    let before = wh.published()?.len();
    wh.prune_all_but_current()?;
    applied.versions_deleted = before.saturating_sub(wh.published()?.len());

    // 5b. The vault loses the people's clear values: their keys (the
    // ledger's, so not those another customer still has) and whatever the
    // remaining version no longer holds (their names).
    if let (Some(current), false) = (wh.current()?, people.is_empty()) {
        let erased: HashSet<String> = ledger
            .erasures
            .values()
            .flatten()
            .map(|k| k.hash.clone())
            .collect();
        applied.vault_removed = pseudonymise::keep_in_vault_only_what(root, &current, &erased)?;
    }

    // 6. Done, with the keys found.
    let now = Utc::now().naive_utc().trunc_subsecs(6);
    for (e, _) in &pending {
        let extra: Vec<HashedKey> = found_keys
            .get(&e.pseudonym)
            .into_iter()
            .flatten()
            .filter_map(|k| {
                KeyKind::parse(&k.kind).map(|kind| HashedKey {
                    kind,
                    hash: k.hash.clone(),
                })
            })
            .collect();
        erase::add_keys(conn, &e.pseudonym, &extra)?;
        erase::mark_warehouse_done(conn, &e.pseudonym, now)?;
    }
    tracing::info!(
        erasures = applied.erasures,
        found = applied.found,
        files_rewritten = applied.files_rewritten,
        versions_deleted = applied.versions_deleted,
        "erasures applied to the warehouse"
    );
    Ok(applied)
}

type Pending = [(erase::Erasure, Vec<HashedKey>)];

/// Step 1: the people of `pending` in `version`, and the hashed keys found for each.
fn find(
    root: &Path,
    version: &Path,
    pending: &Pending,
    key: &PrivacyKey,
) -> Result<(People, HashMap<String, Vec<LedgerKey>>), PrivacyError> {
    let by_id_hash: HashMap<&str, &str> = pending
        .iter()
        .flat_map(|(e, keys)| {
            keys.iter()
                .filter(|k| k.kind == KeyKind::CustomerId)
                .map(|k| (k.hash.as_str(), e.pseudonym.as_str()))
        })
        .collect();
    let mut people = People::default();
    let customers = scan::parquet_files(&version.join("customers"))?;
    let rows = scan::rows_where(&customers, |b, i| {
        scan::text(b, "customer_id", i)
            .is_some_and(|id| by_id_hash.contains_key(key.hash(KeyKind::CustomerId, id).as_str()))
    })?;
    let col = |t: &scan::Table, name: &str| t.columns.iter().position(|c| c == name);
    let (id_col, email_col, phone_col) = (
        col(&rows, "customer_id"),
        col(&rows, "email"),
        col(&rows, "phone"),
    );
    for r in &rows.rows {
        let Some(id) = id_col.map(|i| r[i].clone()) else {
            continue;
        };
        let h = key.hash(KeyKind::CustomerId, &id);
        if let Some(p) = by_id_hash.get(h.as_str()) {
            people.ids.insert(id, (*p).to_owned());
        }
        for (c, set) in [
            (email_col, &mut people.emails),
            (phone_col, &mut people.phones),
        ] {
            if let Some(v) = c.map(|i| r[i].clone()).filter(|v| !v.is_empty()) {
                set.insert(v);
            }
        }
    }
    if people.ids.is_empty() {
        return Ok((people, HashMap::new()));
    }
    let ids: HashSet<String> = people.ids.keys().cloned().collect();
    let mut found: HashMap<String, Vec<LedgerKey>> = HashMap::new();
    let mut note = |p: &str, kind: KeyKind, v: &str| {
        found
            .entry(p.to_owned())
            .or_default()
            .push(LedgerKey::new(kind, key.hash_of_stored(kind, v)));
    };
    for (id, p) in &people.ids {
        note(p, KeyKind::CustomerId, id);
    }
    for r in &rows.rows {
        let Some(p) = id_col.and_then(|i| people.ids.get(&r[i])).cloned() else {
            continue;
        };
        if let Some(v) = email_col.map(|i| &r[i]).filter(|v| !v.is_empty()) {
            note(&p, KeyKind::Email, v);
        }
        if let Some(v) = phone_col.map(|i| &r[i]).filter(|v| !v.is_empty()) {
            note(&p, KeyKind::Phone, v);
        }
    }

    // Every key their transactions and events gave, and their CRM key history.
    // The event key set table and its delta: a key set that was theirs
    // before a night moved it still carried their keys.
    let state = version.join("_state");
    let mut keysets = scan::if_exists(state.join(crate::warehouse::event_keysets::FILE));
    keysets.extend(scan::if_exists(
        state.join(crate::warehouse::event_keysets::DELTA_FILE),
    ));
    let sources = [scan::parquet_files(&version.join("transactions"))?, keysets];
    for (n, files) in sources.iter().enumerate() {
        let t = scan::rows_with(files, "customer_id", &ids)?;
        let c = |name| col(&t, name);
        let (cid, kc, ke, kp) = (
            c("customer_id"),
            c("key_customer_id"),
            c("key_email"),
            c("key_phone"),
        );
        for r in &t.rows {
            let Some(p) = cid.and_then(|i| people.ids.get(&r[i])).cloned() else {
                continue;
            };
            let get = |i: Option<usize>| i.map(|i| r[i].clone()).unwrap_or_default();
            let (given, email, phone) = (get(kc), get(ke), get(kp));
            if n == 1 {
                people
                    .keysets
                    .insert([given.clone(), email.clone(), phone.clone()], p.clone());
            }
            if !given.is_empty() {
                note(&p, KeyKind::CustomerId, &given);
                people.given_ids.insert(given);
            }
            if !email.is_empty() {
                note(&p, KeyKind::Email, &email);
                people.emails.insert(email);
            }
            if !phone.is_empty() {
                note(&p, KeyKind::Phone, &phone);
                people.phones.insert(phone);
            }
        }
    }
    let history_file = scan::if_exists(version.join("_state").join("crm_keys.parquet"));
    let t = scan::rows_with(&history_file, "customer_id", &ids)?;
    let (cid, kind, k) = (col(&t, "customer_id"), col(&t, "kind"), col(&t, "key"));
    for r in &t.rows {
        let (Some(p), Some(k)) = (cid.and_then(|i| people.ids.get(&r[i])).cloned(), k) else {
            continue;
        };
        if kind.is_some_and(|i| r[i] == "phone") {
            note(&p, KeyKind::Phone, &r[k]);
            people.phones.insert(r[k].clone());
        } else {
            note(&p, KeyKind::Email, &r[k]);
            people.emails.insert(r[k].clone());
        }
    }
    for keys in found.values_mut() {
        keys.sort();
        keys.dedup();
    }
    // A pseudonymised warehouse stores hashes: their clear values, from the
    // vault, are what raw text and the outbox hold.
    let vault = Vault::read(root)?;
    let clear_emails = pseudonymise::clear_values(&vault, &people.emails);
    let clear_phones = pseudonymise::clear_values(&vault, &people.phones);
    people.emails.extend(clear_emails);
    people.phones.extend(clear_phones);
    Ok((people, found))
}

/// The emails and phones of `people` that a customer not being erased also
/// has in `version`'s customers, hashed as the ledger holds them.
fn keys_others_have(
    version: &Path,
    people: &People,
    key: &PrivacyKey,
) -> Result<HashSet<LedgerKey>, PrivacyError> {
    let mut shared = HashSet::new();
    if people.is_empty() {
        return Ok(shared);
    }
    let files = scan::parquet_files(&version.join("customers"))?;
    let others = scan::rows_where(&files, |b, i| {
        let mine = scan::text(b, "customer_id", i).is_some_and(|id| people.ids.contains_key(id));
        !mine
            && (scan::text(b, "email", i).is_some_and(|e| people.emails.contains(e))
                || scan::text(b, "phone", i).is_some_and(|p| people.phones.contains(p)))
    })?;
    for (column, kind) in [("email", KeyKind::Email), ("phone", KeyKind::Phone)] {
        let Some(c) = others.columns.iter().position(|n| n == column) else {
            continue;
        };
        for r in &others.rows {
            let v = &r[c];
            let theirs = match kind {
                KeyKind::Email => people.emails.contains(v),
                _ => people.phones.contains(v),
            };
            if theirs {
                shared.insert(LedgerKey::new(kind, key.hash_of_stored(kind, v)));
            }
        }
    }
    Ok(shared)
}

/// Step 2: scores of every date, runs' rejects and CSV files, the nightly's
/// feedback export; returns the files rewritten.
fn rewrite_outside_versions(
    root: &Path,
    people: &People,
    key: &PrivacyKey,
) -> Result<usize, PrivacyError> {
    let mut n = 0;
    let mut parquet = scan::parquet_files(&root.join("scores"))?;
    parquet.extend(scan::parquet_files(&root.join("runs"))?);
    // A pseudonymised warehouse's clear rejects.
    parquet.extend(scan::parquet_files(
        &root.join(vault::DIR).join(crate::warehouse::runs::RUNS),
    )?);
    for f in parquet {
        if rewrite::parquet_file(&f, &f, people, key)? {
            n += 1;
        }
    }
    for dir in [root.join("runs"), root.join("feedback")] {
        for f in files_with_extension(&dir, "csv")? {
            if rewrite::csv_file(&f, people)? {
                n += 1;
            }
        }
    }
    Ok(n)
}

pub(crate) fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, PrivacyError> {
    let mut out = Vec::new();
    walk(dir, &mut |p| {
        if p.extension().is_some_and(|e| e == ext) {
            out.push(p.to_path_buf());
        }
    })?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<(), PrivacyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WarehouseError::Io { path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e).into()),
    };
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk(&path, f)?;
        } else if meta.is_file() {
            f(&path);
        }
    }
    Ok(())
}

/// Step 4: `version`'s files into `staging`, rewritten where they hold the
/// people, hard-linked where they do not; returns the files rewritten.
fn stage_rewritten(
    version: &Path,
    staging: &Path,
    people: &People,
    key: &PrivacyKey,
) -> Result<usize, PrivacyError> {
    let mut files = Vec::new();
    walk(version, &mut |p| files.push(p.to_path_buf()))?;
    let mut n = 0;
    for src in files {
        let Ok(rel) = src.strip_prefix(version) else {
            continue;
        };
        let dest = staging.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|source| WarehouseError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let is_parquet = src.extension().is_some_and(|e| e == "parquet");
        if is_parquet && rewrite::parquet_file(&src, &dest, people, key)? {
            n += 1;
            continue;
        }
        link_or_copy(&src, &dest).map_err(|source| WarehouseError::Io {
            path: dest.clone(),
            source,
        })?;
    }
    Ok(n)
}
