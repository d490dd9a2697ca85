//! `cvm-etl ingest`: read a drop, consolidate it with the warehouse's history,
//! and publish a new warehouse version atomically.
//!
//! One module per step, in the order [`run_locked`] runs them: `stored`
//! (the current version), `read` (the drop), `versions` (each record meets
//! the stored state), `identities` (CRM directory and guests, over the whole
//! history, so a new CRM record claims a guest's past purchases),
//! `transactions`, `events`, `customers`, `purchases` (per-customer totals
//! for scoring); then the datasets are written and the version published.

mod customers;
mod events;
mod history;
mod identities;
mod purchases;
mod read;
mod stored;
mod touched;
mod transactions;
mod versions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cvm_shared::Settings;
use rustc_hash::FxHashSet as HashSet;

use self::versions::Versions;
pub use crate::manifest::ingest::{IngestManifest, WarehouseTotals};
use crate::manifest::{self, Counts, FileCounts, RunClock, now_rfc3339};
use crate::memory::release_freed;
use crate::privacy::pseudonymise::{self, Pseudonymiser, VaultEntry};
use crate::record::{RecordKey, RejectReason};
use crate::sources::{self, InputFile, reader};
use crate::warehouse::publish::{PublishError, Warehouse};
use crate::warehouse::runs::RunFolder;
use crate::warehouse::{self, RejectRow, WarehouseError};

/// What to ingest, and how.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The drop folder.
    pub input: PathBuf,
    /// The warehouse folder.
    pub warehouse: PathBuf,
    /// Validated settings.
    pub settings: Settings,
    /// Show a progress bar when attached to a terminal.
    pub progress: bool,
    /// Consolidate and write the whole history again (every partition, every
    /// customer's totals) instead of what the drop changes: the oracle the
    /// nightly path is checked against, and the repair tool.
    pub full_rebuild: bool,
}

impl IngestOptions {
    /// Ingest `input` into `warehouse` with the default settings, no progress bar.
    pub fn new(input: impl Into<PathBuf>, warehouse: impl Into<PathBuf>) -> IngestOptions {
        IngestOptions {
            input: input.into(),
            warehouse: warehouse.into(),
            settings: Settings::default(),
            progress: false,
            full_rebuild: false,
        }
    }
}

/// Why an ingest run failed. Nothing is published in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The drop folder is unusable.
    #[error(transparent)]
    Discover(#[from] sources::DiscoverError),
    /// The drop has no input files.
    #[error(
        "input folder {0} holds no input files: expected crm/*.csv, pos/*.csv, web/*.jsonl, app/*.jsonl, transactions/*.csv, events/*.jsonl or fx/rates.csv"
    )]
    EmptyDrop(PathBuf),
    /// A file could not be read at all.
    #[error(transparent)]
    Read(#[from] reader::ReadError),
    /// The fx files give one currency two different rates.
    #[error(transparent)]
    FxConflict(#[from] sources::fx::RateConflict),
    /// The warehouse could not be read or written.
    #[error("warehouse: {0}")]
    Warehouse(#[from] WarehouseError),
    /// Locking or publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Writing the run's records failed.
    #[error("cannot write run files in {path}: {source}")]
    RunFiles {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The warehouse has erased people, and `CVM_PRIVACY_KEY` (needed to
    /// recognise their records) is missing or unusable.
    #[error("the warehouse's erasure ledger needs the privacy key: {0}")]
    Privacy(#[from] cvm_shared::privacy::KeyError),
    /// `warehouse.pseudonymise` or the privacy key differs from the warehouse's.
    #[error(transparent)]
    Pseudonymise(#[from] pseudonymise::ModeError),
    /// Too many records were rejected.
    #[error(
        "{rejected} of {records} records rejected ({share:.2}%), over the limit of {limit:.2}%: nothing was published; see {rejects} and fix the input or raise CVM_REJECT_LIMIT"
    )]
    RejectLimit {
        rejected: u64,
        records: u64,
        share: f64,
        limit: f64,
        rejects: PathBuf,
    },
}

/// The result of a successful ingest.
#[derive(Debug)]
pub struct IngestReport {
    /// The manifest, as written.
    pub manifest: IngestManifest,
    /// `runs/<run_id>/` folder.
    pub run_dir: PathBuf,
}

/// The drop's files, or why it has none; checked before the warehouse is
/// touched, so a missing or empty drop leaves nothing behind.
pub fn discover(input: &Path) -> Result<sources::Discovery, IngestError> {
    if !input.is_dir() {
        return Err(sources::DiscoverError::NotAFolder(input.to_path_buf()).into());
    }
    let found = sources::discover(input)?;
    if found.files.is_empty() {
        return Err(IngestError::EmptyDrop(input.to_path_buf()));
    }
    Ok(found)
}

/// Runs an ingest, holding the warehouse lock.
pub fn run(opts: &IngestOptions) -> Result<IngestReport, IngestError> {
    let found = discover(&opts.input)?;
    let wh = Warehouse::open(&opts.warehouse)?;
    run_locked(&wh, opts, found)
}

/// Runs an ingest of a discovered drop with an already opened (locked)
/// warehouse: load the stored state → read the drop → resolve versions →
/// (reject limit) → latest CRM records → identities → transactions →
/// events → customers → write → publish. Every record read ends in exactly
/// one outcome, counted per file.
pub fn run_locked(
    wh: &Warehouse,
    opts: &IngestOptions,
    found: sources::Discovery,
) -> Result<IngestReport, IngestError> {
    let mut clock = RunClock::start("ingest");
    let run_id = clock.run_id().to_string();
    for f in &found.ignored {
        tracing::warn!(file = %f, "not an input file of the data contract: ignored");
    }

    let stored_version = wh.current_id()?;
    // Freed memory goes back at once (`memory::PurgeAtOnce`) while the
    // stored state is loaded, and for the whole run of a large drop over a
    // stored history (a long history delivered in parts): both free large
    // buffers among what they keep, which waiting out mimalloc's delay set
    // the peak. A night's small drop keeps the delay for the rest.
    let _purge_all = (stored_version.is_some() && large_drop(&found.files))
        .then(crate::memory::PurgeAtOnce::start);
    let mut stored = {
        let _purge = crate::memory::PurgeAtOnce::start();
        stored::load(wh, &found.files, opts.full_rebuild)?
    };
    let stored_dir = wh.current()?;
    let over_stored = stored_version.is_some();
    clock.lap("load_warehouse");

    let pseudonymiser = Pseudonymiser::from_settings(&opts.settings)?;
    pseudonymise::check_mode(
        wh.root(),
        over_stored,
        stored.small.pseudonymised.as_deref(),
        pseudonymiser.as_ref(),
    )?;
    let stored_events = std::mem::take(&mut stored.events);
    let erased = crate::privacy::ledger::Ledger::read(wh.root())?.matcher()?;
    let mut input = read::read_drop(
        &found.files,
        &opts.settings,
        &stored.small,
        stored_events,
        erased,
        pseudonymiser.as_ref(),
        opts.progress,
    )?;
    input.small.pseudonymised = pseudonymiser.as_ref().map(Pseudonymiser::fingerprint);
    // What the drop's events need of the stored events, and what its other
    // records need of the stored state and transactions: side by side.
    let mut event_history = stored.event_history.take();
    let (months_read, state_read) = rayon::join(
        || match &mut event_history {
            Some(history) => {
                let events = events::DropEvents {
                    events: &mut input.events,
                    stored_events: &mut input.stored_events,
                    known_events: &mut input.known_events,
                };
                events::load_drop_months(events, history)
            }
            None => Ok(()),
        },
        || {
            let records = history::DropRecords {
                crm: &input.crm,
                txns: &input.txns,
            };
            history::read_for_drop(&mut stored, stored_dir.as_deref(), &records)
        },
    );
    stored.event_history = event_history;
    months_read?;
    state_read?;
    clock.lap("read");

    let versions = versions::resolve(&mut input, &stored);
    history::read_replaced(&mut stored, &versions.txns.replaced)?;
    clock.lap("versions");

    let tally = Tally::of(&found.files, &input.per_file);
    let mut mf = IngestManifest {
        run_id: run_id.clone(),
        command: "ingest".into(),
        status: String::new(),
        error: None,
        started_at: clock.started_at().to_string(),
        finished_at: String::new(),
        timings_ms: BTreeMap::new(),
        input: opts.input.display().to_string(),
        version: stored_version,
        settings: opts.settings.ingest.clone(),
        files: tally.files,
        ignored_files: found.ignored.clone(),
        totals: tally.totals.clone(),
        reject_share: tally.reject_share,
        warehouse: WarehouseTotals::default(),
        full_rebuild: opts.full_rebuild,
        transaction_months: Default::default(),
        event_months: Default::default(),
        transactions_read: None,
        versions: manifest::program_versions(),
    };
    let run_dir = opts.warehouse.join(warehouse::runs::RUNS).join(&run_id);
    let write_run = |mf: &IngestManifest, rejects: &[RejectRow]| -> Result<(), IngestError> {
        let run = RunFolder::stage(&opts.warehouse, &run_id)?;
        let public = run.staging().join("rejects.parquet");
        if pseudonymiser.is_some() {
            // Raw text and details may hold anything: kept in the clear
            // only in the private folder.
            pseudonymise::write_private_rejects(wh.root(), &run_id, rejects)?;
            let rows: Vec<RejectRow> = rejects.iter().map(Pseudonymiser::public_reject).collect();
            warehouse::rejects::write(&public, &rows)?;
        } else {
            warehouse::rejects::write(&public, rejects)?;
        }
        run.write_json("manifest.json", mf)?;
        run.finish().map(drop).map_err(Into::into)
    };
    if tally.reject_share > opts.settings.ingest.reject_limit {
        let e = IngestError::RejectLimit {
            rejected: tally.totals.rejected,
            records: tally.totals.records,
            share: tally.reject_share * 100.0,
            limit: opts.settings.ingest.reject_limit * 100.0,
            rejects: run_dir.join("rejects.parquet"),
        };
        mf.status = "failed".into();
        mf.error = Some(e.to_string());
        mf.finished_at = now_rfc3339();
        mf.timings_ms = clock.timings();
        write_run(&mf, &input.rejects)?;
        return Err(e);
    }

    // The drop's clear values, written beside the consolidation (on a
    // thread of their own) and joined before anything is published: a
    // published hash always has its value.
    let vault_written = pseudonymiser.is_some().then(|| {
        let entries: Vec<VaultEntry> = std::mem::take(&mut input.vault)
            .into_iter()
            .map(|(hash, (kind, value))| VaultEntry { hash, kind, value })
            .collect();
        let (root, run) = (wh.root().to_path_buf(), run_id.clone());
        std::thread::spawn(move || pseudonymise::add_to_vault(&root, &run, entries))
    });

    // Consolidate the whole history.
    // A full rebuild publishes even when the drop brings nothing new: it is
    // how a damaged or foreign version is written again.
    let changed =
        opts.full_rebuild || versions.any_winner() || input.small.rates != stored.small.rates;
    let Versions {
        crm: crm_winners,
        txns: txn_winners,
        superseded_crm,
        ..
    } = versions;
    // A night's state is its own entries, written over the stored table
    // and delta (see `warehouse::state`) less the keys it replaces; else
    // the whole table's entries it keeps, and its own.
    let delta_state = stored.records_looked_up;
    let (mut state, replaced_keys): (Vec<_>, HashSet<RecordKey>) = match delta_state {
        true => (
            Vec::with_capacity(crm_winners.winner_count() + txn_winners.winner_count()),
            crm_winners
                .replaced
                .iter()
                .chain(&txn_winners.replaced)
                .cloned()
                .collect(),
        ),
        false => (
            versions::kept_state(
                std::mem::take(&mut stored.records),
                &crm_winners,
                &txn_winners,
            ),
            HashSet::default(),
        ),
    };
    let crm = identities::latest_crm(std::mem::take(&mut stored.crm), crm_winners, &mut state);
    let directory = identities::directory(&crm, &stored.key_history, &superseded_crm);
    let dirty = identities::dirty_keys(&crm, &superseded_crm);
    // What building it held only for a while is handed back (`memory`).
    release_freed();
    let key_history = directory.history();
    let changed = changed || directory.history_changed;
    // Which customers' purchase totals to sum again and which transaction
    // months to write: tracked over a stored version (whose totals and
    // months the others keep), not on a first load or a full rebuild, nor
    // over a version whose transactions could not be read by key set.
    let mut touched =
        touched::Touched::tracking(over_stored && !opts.full_rebuild && stored.txns_by_number);
    let mut txns = transactions::consolidate(
        stored.unread.is_none(),
        std::mem::take(&mut stored.txns),
        std::mem::take(&mut stored.txn_keysets),
        txn_winners,
        std::mem::take(&mut input.txn_keys),
        &found.files,
        &mut state,
        &mut touched,
    );
    // The datasets are written as soon as they are complete, and freed: the
    // record state now, beside identity resolution; then events, so their
    // rows and the CRM directory are gone before the customers are built.
    let staging = if changed {
        Some(wh.begin(&run_id)?)
    } else {
        None
    };
    let version = staging.as_ref().map(|s| s.dir.clone());
    if stored.unread.is_none() {
        // Every stored row is held: the months of entries read from an
        // earlier cvm's table are found again.
        txns.fill_months(&mut state);
    }
    let (state_written, guests) = rayon::join(
        || match &version {
            Some(dir) => {
                let dir = dir.join(warehouse::state::DIR);
                match (delta_state, &stored_dir) {
                    (true, Some(from)) => {
                        let from = from.join(warehouse::state::DIR);
                        let replaced = |k: &str| replaced_keys.contains(k);
                        let written = warehouse::state::write_over(&dir, &from, &state, replaced)?;
                        tracing::debug!(?written, entries = state.len(), "record state");
                    }
                    _ => drop(warehouse::state::write(&dir, &state)?),
                }
                warehouse::key_history::write(&dir, &key_history).map(drop)
            }
            None => Ok(()),
        },
        || identities::assign(&mut txns, &directory, &dirty, over_stored),
    );
    let (guests, reassigned, moved) = guests;
    let mut touched = touched.merge(reassigned);
    state_written?;
    drop(state);
    drop(key_history);
    release_freed();
    clock.lap("consolidate");

    // The events step needs the resolved identities alone, the rest of the
    // stored transactions (a night's read of the touched customers' rows)
    // the transactions alone: the two run side by side. The event log was
    // held through the read before anyway; only the events' write buffers
    // come on top of the read's peak.
    let target = version.as_deref().map(|version| events::Target {
        version,
        stored: input.stored_events,
    });
    let history = stored.event_history.take();
    let unread = stored.unread.take();
    let (night, events_written) = rayon::join(
        || {
            let state = stored_dir
                .as_deref()
                .map(|d| d.join(warehouse::state::DIR))
                .unwrap_or_default();
            unread
                .map(|unread| history::read_rest(unread, &mut txns, &mut touched, &moved, &state))
                .transpose()
        },
        || events::write(target, input.events, history, &directory, &dirty, &guests),
    );
    let night = night?;
    let events_written = events_written?;
    mf.transactions_read = night.as_ref().map(|n| n.read);
    let event_count = events_written.total;
    mf.event_months = manifest::ingest::MonthCounts::of(&events_written.months);
    let crm_key_conflicts = directory.conflicts;
    drop(directory);
    drop(superseded_crm);
    release_freed();
    // The events step and the night's read of the rest, side by side.
    clock.lap("events");

    let crm_customers = crm.len() as u64;
    let customers = customers::build(crm, &guests, &txns, touched.customers());
    let (transactions, anonymous_transactions) = txns.counts();
    mf.warehouse = WarehouseTotals {
        customers: customers.len() as u64,
        crm_customers,
        guests: guests.list.len() as u64,
        transactions,
        anonymous_transactions,
        events: event_count,
        crm_key_conflicts,
    };
    drop(guests);
    release_freed();
    clock.lap("customers");

    if let Some(handle) = vault_written {
        handle.join().map_err(|_| WarehouseError::Io {
            path: crate::privacy::pseudonymise::part_path(wh.root(), &run_id),
            source: std::io::Error::other("the vault writer stopped"),
        })??;
    }
    match staging {
        Some(staging) => {
            let datasets = Datasets {
                txns: &txns,
                touched: &touched,
                customers: &customers,
                small: &input.small,
                partial: mf.transactions_read.is_some(),
                night: night.as_ref(),
            };
            publish_version(wh, staging, &datasets, &mut mf, &mut clock)?;
        }
        None => mf.status = "unchanged".into(),
    }
    let times = clock.finish();
    mf.timings_ms = times.timings_ms;
    mf.finished_at = times.finished_at;
    write_run(&mf, &input.rejects)?;
    Ok(IngestReport {
        manifest: mf,
        run_dir,
    })
}

/// A drop of this many bytes on disk or more is large (see [`large_drop`]).
const LARGE_DROP_BYTES: u64 = 256 << 20;

/// Whether the drop's `files` take [`LARGE_DROP_BYTES`] or more: a part of a
/// long history, not a night (a day of a 10M-record history is ~30 MB).
fn large_drop(files: &[InputFile]) -> bool {
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(&f.path).ok())
        .map(|m| m.len())
        .sum();
    bytes >= LARGE_DROP_BYTES
}

/// The datasets written last, once every other one is written and freed.
struct Datasets<'a> {
    txns: &'a transactions::Txns,
    /// Customers whose transactions changed.
    touched: &'a touched::Touched,
    customers: &'a customers::Customers<'a>,
    small: &'a stored::SmallState,
    /// Whether the run holds only part of the stored transactions.
    partial: bool,
    /// What a night read of the stored transactions, and how it writes
    /// their months (see `history`).
    night: Option<&'a history::NightRead>,
}

/// Writes the last datasets and a copy of the manifest into the staged
/// version, then publishes it (the write and publish steps).
fn publish_version(
    wh: &Warehouse,
    staging: warehouse::publish::Staging,
    datasets: &Datasets<'_>,
    mf: &mut IngestManifest,
    clock: &mut RunClock,
) -> Result<(), IngestError> {
    let d = staging.dir.clone();
    // The version this run started from (still current: this run's is not
    // published yet): its unchanged months are shared.
    let previous = wh.current()?;
    let previous_txns = previous.as_ref().map(|p| p.join("transactions"));
    let unchanged = match (previous_txns.as_deref(), datasets.touched.months()) {
        (Some(previous), Some(changed)) => warehouse::months::Unchanged::of(previous, changed)?,
        _ => None,
    };
    let unchanged = match datasets.night {
        Some(n) => unchanged.map(|u| u.appending(&n.partial).rewriting(&n.rewritten)),
        None => unchanged,
    };
    let no_reread = warehouse::transactions::Reread::new();
    let reread = datasets.night.map_or(&no_reread, |n| &n.reread);
    let txns = datasets.txns;
    let state = d.join(warehouse::state::DIR);
    let purchases = || {
        let extended = datasets.night.map(|n| &n.extended);
        let (previous, partial) = (previous.as_deref(), datasets.partial);
        purchases::write(txns, datasets.touched, extended, previous, partial, &state)
    };
    let writes = || {
        rayon::join(
            || {
                let dir = d.join("transactions");
                warehouse::transactions::write(
                    &dir,
                    txns.written(),
                    &txns.keysets,
                    unchanged,
                    reread,
                )
            },
            || {
                rayon::join(
                    || {
                        let to = d.join("customers");
                        let customers = datasets.customers;
                        match &previous {
                            // The stored CRM customers are carried over from their files.
                            Some(from) => warehouse::customers::write_over(
                                &from.join("customers"),
                                &to,
                                &customers.rows,
                                |id, is_guest| customers.fate(id, is_guest),
                                |row| customers.update(row),
                            ),
                            None => warehouse::customers::write(&to, &customers.rows),
                        }
                    },
                    || {
                        let from = previous.as_ref().map(|p| p.join(warehouse::state::DIR));
                        warehouse::txn_keysets::write_over(
                            &state,
                            from.as_deref(),
                            &txns.keysets,
                            &txns.used,
                        )
                    },
                )
            },
        )
    };
    // A night's totals are few, and written beside the datasets. Over a
    // first load or a full rebuild they come after the big writes, whose
    // buffers are freed by then: their grouping adds little to the peak.
    let ((a, (c, k)), summed) = match datasets.partial {
        true => {
            let (written, summed) = rayon::join(writes, purchases);
            (written, Some(summed))
        }
        false => {
            // Their buffers freed go back at once (see `memory::PurgeAtOnce`).
            let _purge = crate::memory::PurgeAtOnce::start();
            (writes(), None)
        }
    };
    let written = a?;
    c?;
    k?;
    mf.transaction_months = manifest::ingest::MonthCounts::of(&written);
    warehouse::state::write_json(&state.join("small.json"), datasets.small)?;
    release_freed();
    clock.lap("write");
    let summed = match summed {
        Some(summed) => summed?,
        None => {
            // Summed from every row: freed grouping buffers go back at once.
            let _purge = crate::memory::PurgeAtOnce::start();
            purchases()?
        }
    };
    tracing::debug!(
        summed,
        touched = datasets.touched.customers().map(|c| c.len()),
        extended = datasets.night.map(|n| n.extended.len()),
        "purchase totals"
    );
    release_freed();
    clock.lap("purchases");
    mf.status = "published".into();
    mf.version = Some(clock.run_id().to_string());
    mf.finished_at = now_rfc3339();
    mf.timings_ms = clock.timings();
    // A copy inside the version is published atomically with the data.
    manifest::write_json(&d.join("manifest.json"), mf)
        .map_err(|source| IngestError::RunFiles { path: d, source })?;
    wh.publish(staging)?;
    clock.lap("publish");
    Ok(())
}

/// The outcomes of a run, per file and in total.
struct Tally {
    files: Vec<FileCounts>,
    totals: Counts,
    /// `rejected / records`.
    reject_share: f64,
}

impl Tally {
    fn of(files: &[InputFile], per_file: &[Counts]) -> Tally {
        let mut totals = Counts::default();
        let files: Vec<FileCounts> = files
            .iter()
            .zip(per_file)
            .map(|(f, c)| {
                totals.merge(c);
                FileCounts {
                    file: f.name.clone(),
                    kind: f.kind.folder().to_string(),
                    counts: c.clone(),
                }
            })
            .collect();
        debug_assert!(totals.balanced());
        let reject_share = if totals.records == 0 {
            0.0
        } else {
            totals.rejected as f64 / totals.records as f64
        };
        Tally {
            files,
            totals,
            reject_share,
        }
    }
}

/// A one-screen summary of a run, for the terminal.
pub fn summary_table(m: &IngestManifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<40} {:>10} {:>10} {:>9} {:>8} {:>9} {:>8}",
        "file", "records", "accepted", "duplicate", "ignored", "anonymous", "rejected"
    );
    let mut row = |name: &str, c: &Counts| {
        let _ = writeln!(
            s,
            "{:<40} {:>10} {:>10} {:>9} {:>8} {:>9} {:>8}",
            name, c.records, c.accepted, c.duplicate, c.ignored, c.anonymous, c.rejected
        );
    };
    for f in &m.files {
        row(&f.file, &f.counts);
    }
    row("TOTAL", &m.totals);
    let w = &m.warehouse;
    let _ = writeln!(
        s,
        "run {} {}: {} customers ({} CRM, {} guests), {} transactions ({} anonymous), {} events; {} CRM key conflicts; rejects {:.3}%",
        m.run_id,
        m.status,
        w.customers,
        w.crm_customers,
        w.guests,
        w.transactions,
        w.anonymous_transactions,
        w.events,
        w.crm_key_conflicts,
        m.reject_share * 100.0
    );
    if m.totals.erased > 0 {
        let _ = writeln!(
            s,
            "erased: {} records of people erased on request were dropped on arrival (erasure ledger)",
            m.totals.erased
        );
    }
    if !m.totals.rejected_by_reason.is_empty() {
        let reasons: Vec<String> = m
            .totals
            .rejected_by_reason
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "rejects by reason: {}", reasons.join(", "));
    }
    s
}

/// Whether `reason` codes in the manifest are known (used by tests and checks).
pub fn known_reason(code: &str) -> bool {
    RejectReason::ALL.iter().any(|r| r.as_str() == code)
}

/// The folder of the current version, for readers of the warehouse.
pub fn current_version(warehouse: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(warehouse.join("current")).ok()?;
    Some(warehouse.join(target))
}
