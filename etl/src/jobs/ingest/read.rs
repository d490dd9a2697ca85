//! The read step: every file of the drop parsed into versioned records,
//! rejects and counts. `fx` files are read first (their rates feed every
//! conversion), then every other file in parallel, each in batches parsed in
//! parallel. Framing errors and parse rejects are counted here; versioned
//! records are counted once their versions are resolved.

use std::collections::BTreeMap;

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use cvm_shared::identity::stable_hash;
use cvm_shared::{Currency, Rate, Settings};

use super::IngestError;
use super::stored::SmallState;
use crate::consolidate::events::{EventLog, FileEvents};
use crate::manifest::Counts;
use crate::memory::release_freed;
use crate::record::{
    CrmRecord, EventFields, Outcome, Parsed, Pos, TxnIds, TxnRecord, TxnRow, Versioned,
};
use crate::sources::reader::{self, RawBody};
use crate::sources::{self, CsvRow, Header, InputFile, ParseContext, RawRecord, SourceKind};
use crate::warehouse::RejectRow;

/// What the drop holds, per file in the drop's order.
pub(super) struct DropRead {
    /// Outcomes counted so far (rejects, ignored, fx), per file.
    pub per_file: Vec<Counts>,
    /// Rejected records, in file and line order.
    pub rejects: Vec<RejectRow>,
    /// Versioned transactions per file, in read order (freed file by file later).
    pub txns: Vec<Vec<Versioned<TxnRecord>>>,
    /// Versioned CRM records per file, in read order.
    pub crm: Vec<Vec<Versioned<CrmRecord>>>,
    /// The stored events followed by the drop's.
    pub events: EventLog,
    /// How many of `events` were stored.
    pub stored_events: usize,
    /// Rates in force after this drop: base, earlier runs', this drop's.
    pub small: SmallState,
}

/// Reads every file of the drop; `stored_events` is the warehouse's event log
/// (its file indices are the run's), which the drop's events are appended to.
pub(super) fn read_drop(
    files: &[InputFile],
    settings: &Settings,
    stored: &SmallState,
    stored_events: EventLog,
    progress: bool,
) -> Result<DropRead, IngestError> {
    // Rates: base, then those of earlier runs, then this drop's fx file.
    let mut ctx = ParseContext::new(settings);
    for (c, r) in &stored.rates {
        if let (Ok(c), Ok(r)) = (Currency::parse(c), Rate::parse_positive(r)) {
            ctx.rates.entry(c).or_insert(r);
        }
    }
    let pb = super::super::progress::records_spinner(progress, "reading");
    let (fx_files, other_files): (Vec<_>, Vec<_>) = files
        .iter()
        .enumerate()
        .partition(|(_, f)| f.kind == SourceKind::Fx);
    let mut results: Vec<(usize, FileResult)> = Vec::with_capacity(files.len());
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

    // Counts per file, and the versioned records per file in read order
    // (kept apart so they can be freed file by file).
    let mut out = DropRead {
        per_file: Vec::with_capacity(results.len()),
        rejects: Vec::new(),
        txns: Vec::with_capacity(results.len()),
        crm: Vec::with_capacity(results.len()),
        stored_events: stored_events.len(),
        events: stored_events,
        small: SmallState {
            rates: ctx
                .rates
                .iter()
                .map(|(c, r)| (c.to_string(), r.to_string()))
                .collect::<BTreeMap<_, _>>(),
        },
    };
    for (_, r) in results {
        out.per_file.push(r.counts);
        out.rejects.extend(r.rejects);
        out.txns.push(r.txns);
        out.crm.push(r.crm);
        out.events.append(r.events);
    }
    release_freed();
    Ok(out)
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
