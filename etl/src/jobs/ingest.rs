//! `cvm-etl ingest`: read a drop, consolidate it with the warehouse's history,
//! and publish a new warehouse version atomically.
//!
//! Steps: list the drop; read `fx` first (rates feed every conversion), then
//! every other file in parallel, each in batches parsed in parallel; resolve
//! versions against the stored state; resolve identities over the whole
//! history (so a new CRM record claims a guest's past purchases); write and
//! publish. Every record read ends in exactly one outcome, counted per file.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cvm_shared::identity::stable_hash;
use cvm_shared::{Channel, Currency, Rate, Settings};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::consolidate::events::{self, EventLog, FileEvents};
use crate::consolidate::identity::{self, Directory, Guests, KeyClaim};
use crate::consolidate::versions::{self, RecordState, Resolution};
use crate::manifest::{self, Counts, FileCounts};
use crate::memory::release_freed;
use crate::record::{
    CrmRecord, EventFields, Outcome, Parsed, Pos, RejectReason, TxnIds, TxnRecord, TxnRow,
    Versioned,
};
use crate::sources::reader::{self, RawBody};
use crate::sources::{self, CsvRow, Header, InputFile, ParseContext, RawRecord, SourceKind};
use crate::warehouse::publish::{PublishError, Warehouse};
use crate::warehouse::runs::RunFolder;
use crate::warehouse::{self, CustomerRow, RejectRow, StoredTxn, WarehouseError};

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

impl IngestError {
    /// Whether the input itself must be fixed, so no retry can help (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        use reader::ReadError as R;
        matches!(
            self,
            IngestError::Discover(_)
                | IngestError::EmptyDrop(_)
                | IngestError::FxConflict(_)
                | IngestError::Read(R::DuplicateColumn { .. } | R::HeaderEncoding { .. })
        )
    }
}

/// Totals of the published warehouse.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WarehouseTotals {
    /// Resolved customers (CRM + guests).
    pub customers: u64,
    /// CRM customers.
    pub crm_customers: u64,
    /// Guest customers.
    pub guests: u64,
    /// Consolidated transactions.
    pub transactions: u64,
    /// Transactions with no customer.
    pub anonymous_transactions: u64,
    /// Engagement events.
    pub events: u64,
    /// Emails or phones shared by several CRM records.
    pub crm_key_conflicts: u64,
}

/// The manifest of an ingest run.
#[derive(Debug, Clone, Serialize)]
pub struct IngestManifest {
    /// Run id.
    pub run_id: String,
    /// Always `ingest`.
    pub command: String,
    /// `published`, `unchanged` (nothing new: no version written) or `failed`.
    pub status: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Start (RFC 3339 UTC).
    pub started_at: String,
    /// End (RFC 3339 UTC).
    pub finished_at: String,
    /// Milliseconds per step.
    pub timings_ms: BTreeMap<String, u64>,
    /// The drop folder.
    pub input: String,
    /// The warehouse version this run published (or that stayed current).
    pub version: Option<String>,
    /// Ingest settings in force.
    pub settings: cvm_shared::config::IngestSettings,
    /// Per input file.
    pub files: Vec<FileCounts>,
    /// Files in the drop that are not inputs.
    pub ignored_files: Vec<String>,
    /// Over all files.
    pub totals: Counts,
    /// `rejected / records`.
    pub reject_share: f64,
    /// The warehouse after this run.
    pub warehouse: WarehouseTotals,
    /// Program versions.
    pub versions: BTreeMap<String, String>,
}

/// The result of a successful ingest.
#[derive(Debug)]
pub struct IngestReport {
    /// The manifest, as written.
    pub manifest: IngestManifest,
    /// `runs/<run_id>/` folder.
    pub run_dir: PathBuf,
}

/// Everything read from one file.
#[derive(Default)]
struct FileResult {
    counts: Counts,
    rejects: Vec<RejectRow>,
    txns: Vec<Versioned<TxnRecord>>,
    crm: Vec<Versioned<CrmRecord>>,
    events: EventLog,
    /// Valid rates and their lines (counted once checked against the run's other rates).
    fx: Vec<(Currency, Rate, u64)>,
}

/// One parsed record of a batch.
enum Item<'a> {
    /// Any record, owning its values.
    Parsed(Parsed),
    /// An event, borrowing from its line.
    Event(EventFields<'a>),
}

/// Reads and parses one file; framing errors and parse rejects are counted here,
/// versioned records are counted after consolidation.
fn read_one(
    idx: usize,
    file: &InputFile,
    ctx: &ParseContext,
    pb: &indicatif::ProgressBar,
) -> Result<FileResult, reader::ReadError> {
    let mut out = FileResult::default();
    let mut events = FileEvents::new(idx as u32);
    let mut warned_columns = false;
    let kind = file.kind;
    reader::read_file(&file.path, kind.format(), |header: &Header, batch| {
        if !warned_columns && kind.format() == sources::Format::Csv {
            warned_columns = true;
            warn_missing_columns(file, header);
        }
        let parsed: Vec<(u64, Item<'_>, Option<String>)> = batch
            .par_iter()
            .map(|item| {
                let pos = Pos {
                    file: idx as u32,
                    line: item.line,
                };
                match &item.body {
                    RawBody::Bad(r, raw) => (
                        item.line,
                        Item::Parsed(Parsed::Rejected(r.clone())),
                        Some(raw.clone()),
                    ),
                    // Events skip `Parsed`: their fields stay borrowed from the line.
                    RawBody::Json(line) if kind == SourceKind::Events => {
                        match sources::events::parse_fields(line, ctx) {
                            Ok(f) => (item.line, Item::Event(f), None),
                            Err(r) => (
                                item.line,
                                Item::Parsed(Parsed::Rejected(r)),
                                Some(line.clone()),
                            ),
                        }
                    }
                    RawBody::Csv(rec) => {
                        let p = sources::parse(
                            kind,
                            RawRecord::Csv(CsvRow {
                                header,
                                record: rec,
                            }),
                            pos,
                            ctx,
                        );
                        let raw = matches!(p, Parsed::Rejected(_)).then(|| sources::csv_line(rec));
                        (item.line, Item::Parsed(p), raw)
                    }
                    RawBody::Json(line) => {
                        let p = sources::parse(kind, RawRecord::Json(line), pos, ctx);
                        let raw = matches!(p, Parsed::Rejected(_)).then(|| line.clone());
                        (item.line, Item::Parsed(p), raw)
                    }
                }
            })
            .collect();
        pb.inc(parsed.len() as u64);
        for (line, p, raw) in parsed {
            let p = match p {
                Item::Event(f) => {
                    events.push(&f);
                    continue;
                }
                Item::Parsed(p) => p,
            };
            match p {
                Parsed::Txn(v) => out.txns.push(v),
                Parsed::Crm(v) => out.crm.push(v),
                Parsed::Event(v) => events.push(&EventFields::from(&v)),
                Parsed::Fx(c, r) => out.fx.push((c, r, line)),
                Parsed::Ignored => out.counts.add(Outcome::Ignored, None),
                Parsed::Rejected(r) => {
                    out.counts.add(Outcome::Rejected, Some(r.reason));
                    out.rejects.push(RejectRow {
                        source_file: file.name.as_str().into(),
                        line,
                        reason: r.reason,
                        detail: r.detail,
                        raw: raw.unwrap_or_default(),
                    });
                }
            }
        }
    })?;
    number_keys(&mut out);
    out.events = events.log;
    // These live until consolidation: no spare capacity.
    out.txns.shrink_to_fit();
    out.crm.shrink_to_fit();
    Ok(out)
}

fn warn_missing_columns(file: &InputFile, header: &Header) {
    let required: &[&str] = match file.kind {
        SourceKind::Crm => &["customer_id"],
        SourceKind::Pos => &["receipt_id", "purchased_at", "total"],
        SourceKind::Transactions => &["customer_id", "occurred_at", "amount"],
        SourceKind::Fx => &["currency", "rate_to_base"],
        _ => &[],
    };
    for c in required {
        if !header.has(c) {
            tracing::warn!(file = %file.name, column = c, "required column is missing: every row will be rejected");
        }
    }
}

/// Records with no id of their own get `#n` (n-th identical record in the
/// file), so identical rows stay distinct yet a re-delivered file matches
/// (events are numbered as they are read, by [`FileEvents`]).
fn number_keys(out: &mut FileResult) {
    let mut seen: HashMap<Box<str>, u32> = HashMap::default();
    for v in out.txns.iter_mut().filter(|v| v.numbered) {
        let n = seen.entry(v.key.clone()).or_default();
        *n += 1;
        v.key = format!("{}#{n}", v.key).into();
        if let Some(TxnRow {
            ids: TxnIds::Generic { hash, .. },
            ..
        }) = &mut v.body.row
        {
            *hash = stable_hash(v.key.as_bytes());
        }
    }
}

/// Rates and anything else small that must survive between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SmallState {
    rates: BTreeMap<String, String>,
}

/// The published state this run starts from.
#[derive(Default)]
struct Stored {
    records: HashMap<Box<str>, RecordState>,
    txns: Vec<StoredTxn>,
    customers: Vec<CustomerRow>,
    /// Keys of superseded CRM versions.
    key_history: Vec<KeyClaim>,
    /// Stored events, in a log whose file indices are the run's.
    events: EventLog,
    small: SmallState,
}

fn load_stored(w: &Warehouse, files: &[InputFile]) -> Result<Stored, IngestError> {
    let mut events = EventLog::with_files(files.iter().map(|f| f.name.as_str()));
    let Some(dir) = w.current()? else {
        return Ok(Stored {
            events,
            ..Stored::default()
        });
    };
    let ((records, key_history), (txns, (customers, ev))) = rayon::join(
        || {
            let state = dir.join("_state");
            (
                warehouse::state::read(&state),
                warehouse::key_history::read(&state),
            )
        },
        || {
            rayon::join(
                || warehouse::transactions::read(&dir.join("transactions")),
                || {
                    rayon::join(
                        || warehouse::customers::read(&dir.join("customers")),
                        || warehouse::events::read_log(&dir.join("events"), &mut events),
                    )
                },
            )
        },
    );
    let small_path = dir.join("_state").join("small.json");
    let small: SmallState = if small_path.exists() {
        warehouse::state::read_json(&small_path)?
    } else {
        SmallState::default()
    };
    Ok(Stored {
        records: records?.into_iter().map(|r| (r.key.clone(), r)).collect(),
        txns: txns?,
        customers: customers?,
        key_history: key_history?,
        events: {
            ev?;
            events
        },
        small,
    })
}

fn crm_of(c: &CustomerRow) -> CrmRecord {
    CrmRecord {
        customer_id: c.customer_id.clone(),
        email: c.email.clone(),
        phone: c.phone.clone(),
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        country: c.country.clone(),
        signup_date: c.signup_date,
        birth_date: c.birth_date,
        email_opt_in: c.email_opt_in,
        updated_at: c.updated_at,
    }
}

fn state_of<T>(w: &Versioned<T>) -> RecordState {
    RecordState {
        key: w.key.clone(),
        version: w.version,
        digest: w.digest,
    }
}

/// `v` itself when `last` (leaving its default behind), else a copy.
fn take_or_clone<T: Clone + Default>(v: &mut T, last: bool) -> T {
    if last { std::mem::take(v) } else { v.clone() }
}

fn fate<T>(
    res: &Resolution<T>,
    per_file: &mut [Counts],
    winner_outcome: impl Fn(&Versioned<T>) -> Outcome,
) {
    for p in &res.duplicates {
        per_file[p.file as usize].add(Outcome::Duplicate, None);
    }
    for w in res.winners() {
        per_file[w.pos.file as usize].add(winner_outcome(w), None);
    }
}

/// Resident and peak resident memory of this process (Linux), for the debug log.
fn memory_kib() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn versions_map() -> BTreeMap<String, String> {
    BTreeMap::from([("cvm-etl".to_string(), env!("CARGO_PKG_VERSION").to_string())])
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

/// Runs an ingest of a discovered drop with an already opened (locked) warehouse.
pub fn run_locked(
    wh: &Warehouse,
    opts: &IngestOptions,
    found: sources::Discovery,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let run_id = manifest::new_run_id("ingest");
    let mut timings = BTreeMap::new();
    let mut lap = Instant::now();
    let tick = |timings: &mut BTreeMap<String, u64>, name: &str, lap: &mut Instant| {
        let ms = lap.elapsed().as_millis() as u64;
        timings.insert(name.to_string(), ms);
        tracing::debug!(step = name, ms, memory = %memory_kib(), "ingest step done");
        *lap = Instant::now();
    };

    for f in &found.ignored {
        tracing::warn!(file = %f, "not an input file of the data contract: ignored");
    }
    let stored = load_stored(wh, &found.files)?;
    let stored_version = wh.current_id()?;
    tick(&mut timings, "load_warehouse", &mut lap);

    // Rates: base, then those of earlier runs, then this drop's fx file.
    let mut ctx = ParseContext::new(&opts.settings);
    for (c, r) in &stored.small.rates {
        if let (Ok(c), Ok(r)) = (Currency::parse(c), Rate::parse_positive(r)) {
            ctx.rates.entry(c).or_insert(r);
        }
    }
    let pb = super::progress::records_spinner(opts.progress, "reading");
    let (fx_files, other_files): (Vec<_>, Vec<_>) = found
        .files
        .iter()
        .enumerate()
        .partition(|(_, f)| f.kind == SourceKind::Fx);
    let mut results: Vec<(usize, FileResult)> = Vec::with_capacity(found.files.len());
    let mut book = sources::fx::RateBook::default();
    for (i, f) in fx_files {
        let mut r = read_one(i, f, &ctx, &pb)?;
        for &(c, rate, line) in &r.fx {
            if book.add(c, rate, &f.name, line)? {
                r.counts.add(Outcome::Accepted, None);
                if c != ctx.base {
                    ctx.rates.insert(c, rate);
                }
            } else {
                r.counts.add(Outcome::Duplicate, None);
            }
        }
        results.push((i, r));
    }
    let rest: Vec<(usize, FileResult)> = other_files
        .par_iter()
        .map(|(i, f)| read_one(*i, f, &ctx, &pb).map(|r| (*i, r)))
        .collect::<Result<_, _>>()?;
    results.extend(rest);
    results.sort_by_key(|(i, _)| *i);
    pb.finish_and_clear();
    tick(&mut timings, "read", &mut lap);

    // Split what was read: counts per file, and the versioned records per
    // file in read order (kept apart so they can be freed file by file).
    let mut per_file: Vec<Counts> = Vec::with_capacity(results.len());
    let mut rejects = Vec::new();
    let mut new_txns = Vec::with_capacity(results.len());
    let mut new_crm = Vec::with_capacity(results.len());
    let mut events = stored.events;
    let stored_events = events.len();
    for (_, r) in results {
        per_file.push(r.counts);
        rejects.extend(r.rejects);
        new_txns.push(r.txns);
        new_crm.push(r.crm);
        events.append(r.events);
    }

    release_freed();

    // Versions. Records with an id of their own meet the stored state;
    // numbered ones (content + occurrence) only need to know if they are stored.
    // Events resolve beside the CRM and transactions (one after the other:
    // their tables of keys would otherwise be in memory at once).
    let records = &stored.records;
    // Superseded CRM versions keep their keys (data contract, section 5).
    let mut superseded_crm: Vec<CrmRecord> = Vec::new();
    let stored_txns = &stored.txns;
    let ((crm_res, txn_res), ev_res) = rayon::join(
        || {
            let crm_res = versions::resolve_keeping_superseded(new_crm, records, |v| {
                superseded_crm.push(v.body)
            });
            let stored_keys: HashSet<&str> = stored_txns.iter().map(|t| &*t.record_key).collect();
            let txn_res = versions::resolve_mixed(new_txns, records, |k| stored_keys.contains(k));
            (crm_res, txn_res)
        },
        || events::resolve(&mut events, stored_events),
    );
    fate(&crm_res, &mut per_file, |_| Outcome::Accepted);
    fate(&txn_res, &mut per_file, |w| {
        if w.body.ignored() {
            Outcome::Ignored
        } else if w.body.keys.is_empty() {
            Outcome::Anonymous
        } else {
            Outcome::Accepted
        }
    });
    for (files, outcome) in [
        (&ev_res.duplicate_files, Outcome::Duplicate),
        (&ev_res.winner_files, Outcome::Accepted),
    ] {
        for &f in files {
            per_file[f as usize].add(outcome, None);
        }
    }
    release_freed();
    tick(&mut timings, "versions", &mut lap);

    let mut totals = Counts::default();
    let files: Vec<FileCounts> = found
        .files
        .iter()
        .zip(&per_file)
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

    let mut small = SmallState::default();
    for (c, r) in &ctx.rates {
        small.rates.insert(c.to_string(), r.to_string());
    }
    let changed = crm_res.winner_count() > 0
        || txn_res.winner_count() > 0
        || ev_res.winners > 0
        || small.rates != stored.small.rates;

    let mut mf = IngestManifest {
        run_id: run_id.clone(),
        command: "ingest".into(),
        status: String::new(),
        error: None,
        started_at,
        finished_at: String::new(),
        timings_ms: BTreeMap::new(),
        input: opts.input.display().to_string(),
        version: stored_version,
        settings: opts.settings.ingest.clone(),
        files,
        ignored_files: found.ignored.clone(),
        totals: totals.clone(),
        reject_share,
        warehouse: WarehouseTotals::default(),
        versions: versions_map(),
    };
    let run_dir = opts.warehouse.join(warehouse::runs::RUNS).join(&run_id);
    let write_run = |mf: &IngestManifest, rejects: &[RejectRow]| -> Result<(), IngestError> {
        let run = RunFolder::stage(&opts.warehouse, &run_id)?;
        warehouse::rejects::write(&run.staging().join("rejects.parquet"), rejects)?;
        run.write_json("manifest.json", mf)?;
        run.finish().map(drop).map_err(Into::into)
    };

    if reject_share > opts.settings.ingest.reject_limit {
        let e = IngestError::RejectLimit {
            rejected: totals.rejected,
            records: totals.records,
            share: reject_share * 100.0,
            limit: opts.settings.ingest.reject_limit * 100.0,
            rejects: run_dir.join("rejects.parquet"),
        };
        mf.status = "failed".into();
        mf.error = Some(e.to_string());
        mf.finished_at = now_rfc3339();
        mf.timings_ms = timings;
        write_run(&mf, &rejects)?;
        return Err(e);
    }

    // The per-record state of keyed records (numbered ones live in their
    // datasets): the stored one unless a winner replaces it. Unordered: the
    // writer sorts it. A vector, not a map: it is millions of rows. The
    // winners' entries are added as the winners are consumed below.
    let replaced: HashSet<&str> = crm_res
        .replaced
        .iter()
        .chain(&txn_res.replaced)
        .map(|k| &**k)
        .collect();
    let mut state: Vec<RecordState> =
        Vec::with_capacity(stored.records.len() + crm_res.winner_count() + txn_res.winner_count());
    state.extend(
        stored
            .records
            .into_values()
            .filter(|r| !replaced.contains(&*r.key)),
    );
    drop(replaced);

    // Consolidate the whole history.
    let crm_replaced: HashSet<&str> = crm_res.replaced.iter().map(|k| &**k).collect();
    let (replaced_crm, kept_crm): (Vec<&CustomerRow>, Vec<&CustomerRow>) = stored
        .customers
        .iter()
        .filter(|c| !c.is_guest)
        .partition(|c| crm_replaced.contains(format!("crm:{}", c.customer_id).as_str()));
    let mut crm: Vec<CrmRecord> = kept_crm.into_iter().map(crm_of).collect();
    crm.reserve_exact(crm_res.winner_count());
    for w in crm_res.winners.into_iter().flatten() {
        // A CRM record's key is needed only here: moved, not cloned.
        state.push(RecordState {
            key: w.key,
            version: w.version,
            digest: w.digest,
        });
        crm.push(w.body);
    }
    release_freed();
    // The stored latest records replaced in this run are superseded versions too.
    let superseded_claims = replaced_crm
        .iter()
        .flat_map(|c| {
            identity::claims_of(
                &c.customer_id,
                c.email.as_deref(),
                c.phone.as_deref(),
                c.updated_at,
            )
        })
        .chain(superseded_crm.iter().flat_map(identity::crm_claims));
    let directory = Directory::with_history(&crm, &stored.key_history, superseded_claims);
    let key_history = directory.history();
    let changed = changed || directory.history_changed;

    let txn_replaced: HashSet<&str> = txn_res.replaced.iter().map(|k| &**k).collect();
    let mut txns: Vec<StoredTxn> = stored
        .txns
        .into_iter()
        .filter(|t| !txn_replaced.contains(&*t.record_key))
        .collect();
    txns.reserve_exact(txn_res.winners().map(|w| w.body.row_count()).sum());
    let file_names: Vec<Arc<str>> = found.files.iter().map(|f| f.name.as_str().into()).collect();
    // File by file, so each file's records are freed as soon as they are
    // converted (and handed back every so many files, see `memory`).
    for (file_index, file_winners) in txn_res.winners.into_iter().enumerate() {
        if file_index % 16 == 15 {
            release_freed();
        }
        for w in file_winners {
            if !w.numbered {
                state.push(state_of(&w));
            }
            if w.body.ignored() {
                continue;
            }
            let source_file = &file_names[w.pos.file as usize];
            let n = w.body.row_count();
            let mut record_key = w.key;
            let (mut keys, rows) = w.body.into_rows();
            for (i, row) in rows.enumerate() {
                // The last row takes the record's keys; a refunded order's first row copies them.
                let last = i + 1 == n;
                txns.push(StoredTxn {
                    row,
                    customer_id: None,
                    keys: take_or_clone(&mut keys, last),
                    record_key: take_or_clone(&mut record_key, last),
                    source_file: Arc::clone(source_file),
                });
            }
        }
    }
    release_freed();
    // The datasets are written as soon as they are complete, and freed: the
    // record state now, beside identity resolution; then events, so their
    // rows and the CRM directory are gone before the customers are built.
    let staging = if changed {
        Some(wh.begin(&run_id)?)
    } else {
        None
    };
    let (state_written, guests) = rayon::join(
        || match &staging {
            Some(s) => {
                let dir = s.dir.join("_state");
                warehouse::state::write(&dir, &state)?;
                warehouse::key_history::write(&dir, &key_history).map(drop)
            }
            None => Ok(()),
        },
        || {
            let guests = Guests::build(
                txns.iter()
                    .filter(|t| !t.keys.is_empty() && directory.resolve(&t.keys).is_none())
                    .map(|t| &t.keys),
            );
            txns.par_iter_mut().for_each(|t| {
                t.customer_id = directory
                    .resolve(&t.keys)
                    .map(Into::into)
                    .or_else(|| guests.resolve(&t.keys).map(|g| g.id.clone()));
            });
            guests
        },
    );
    state_written?;
    drop(state);
    drop(key_history);
    release_freed();
    tick(&mut timings, "consolidate", &mut lap);

    events.sort_parts();
    // The order to write in (a merge on one thread) beside each key set's
    // customer: events name theirs like transactions do, else by the id they give.
    let (ordered, event_customers): (_, Vec<Option<&str>>) = rayon::join(
        || events.ordered(),
        || {
            (0..events.keysets.len() as u32)
                .into_par_iter()
                .map(|k| {
                    let keys = events.keys(k);
                    directory
                        .resolve(&keys)
                        .or_else(|| guests.resolve(&keys).map(|g| &*g.id))
                        .or_else(|| events.text.get(events.keysets[k as usize][0]))
                })
                .collect()
        },
    );
    if let Some(staging) = &staging {
        warehouse::events::write_log(
            &staging.dir.join("events"),
            &events,
            &ordered,
            &event_customers,
        )?;
    }
    let event_count = events.len() as u64;
    // The customer names borrow from the log and the directory: freed first.
    drop(event_customers);
    drop(ordered);
    drop(events);
    let crm_key_conflicts = directory.conflicts;
    drop(directory);
    drop(superseded_crm);
    drop(replaced_crm);
    release_freed();
    tick(&mut timings, "events", &mut lap);

    let crm_customers = crm.len() as u64;
    let customers = build_customers(crm, &guests, &txns);
    mf.warehouse = WarehouseTotals {
        customers: customers.len() as u64,
        crm_customers,
        guests: guests.list.len() as u64,
        transactions: txns.len() as u64,
        anonymous_transactions: txns.iter().filter(|t| t.customer_id.is_none()).count() as u64,
        events: event_count,
        crm_key_conflicts,
    };
    drop(guests);
    release_freed();
    tick(&mut timings, "customers", &mut lap);

    if let Some(staging) = staging {
        let d = staging.dir.clone();
        let (a, c) = rayon::join(
            || warehouse::transactions::write(&d.join("transactions"), &txns),
            || warehouse::customers::write(&d.join("customers"), &customers),
        );
        a?;
        c?;
        warehouse::state::write_json(&d.join("_state").join("small.json"), &small)?;
        tick(&mut timings, "write", &mut lap);
        mf.status = "published".into();
        mf.version = Some(run_id.clone());
        mf.finished_at = now_rfc3339();
        mf.timings_ms = timings.clone();
        // A copy inside the version is published atomically with the data.
        manifest::write_json(&d.join("manifest.json"), &mf).map_err(|source| {
            IngestError::RunFiles {
                path: d.clone(),
                source,
            }
        })?;
        wh.publish(staging)?;
        tick(&mut timings, "publish", &mut lap);
    } else {
        mf.status = "unchanged".into();
    }
    timings.insert("total".into(), started.elapsed().as_millis() as u64);
    mf.timings_ms = timings;
    mf.finished_at = now_rfc3339();
    write_run(&mf, &rejects)?;
    Ok(IngestReport {
        manifest: mf,
        run_dir,
    })
}

/// CRM customers (taking their strings) plus guests, with `first_seen` and
/// `channels` from the history.
fn build_customers(crm: Vec<CrmRecord>, guests: &Guests, txns: &[StoredTxn]) -> Vec<CustomerRow> {
    let mut seen: HashMap<&str, (i64, u8)> =
        HashMap::with_capacity_and_hasher(crm.len() + guests.list.len(), Default::default());
    for t in txns {
        if let Some(id) = &t.customer_id {
            let e = seen.entry(id).or_insert((i64::MAX, 0));
            e.0 = e.0.min(t.row.occurred_at);
            e.1 |= 1
                << Channel::ALL
                    .iter()
                    .position(|c| *c == t.row.channel)
                    .unwrap_or(0);
        }
    }
    let channels = |mask: u8| {
        Channel::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect()
    };
    let mut out: Vec<CustomerRow> = Vec::with_capacity(crm.len() + guests.list.len());
    out.extend(crm.into_iter().map(|c| {
        let (first_txn, mask) = seen.get(&*c.customer_id).copied().unwrap_or((i64::MAX, 0));
        let signup = c
            .signup_date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros());
        let first_seen = [Some(first_txn).filter(|t| *t != i64::MAX), signup]
            .into_iter()
            .flatten()
            .min();
        CustomerRow {
            customer_id: c.customer_id,
            is_guest: false,
            email: c.email,
            phone: c.phone,
            first_name: c.first_name,
            last_name: c.last_name,
            country: c.country,
            signup_date: c.signup_date,
            birth_date: c.birth_date,
            email_opt_in: c.email_opt_in,
            updated_at: c.updated_at,
            first_seen,
            channels: channels(mask),
        }
    }));
    out.extend(guests.list.iter().map(|g| {
        let (first_txn, mask) = seen.get(&*g.id).copied().unwrap_or((i64::MAX, 0));
        CustomerRow {
            customer_id: g.id.clone(),
            is_guest: true,
            email: g.email.clone(),
            phone: g.phone.clone(),
            first_name: None,
            last_name: None,
            country: None,
            signup_date: None,
            birth_date: None,
            email_opt_in: false,
            updated_at: None,
            first_seen: Some(first_txn).filter(|t| *t != i64::MAX),
            channels: channels(mask),
        }
    }));
    out.par_sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    out
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
