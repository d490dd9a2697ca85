//! The read step: every file of the drop parsed into versioned records,
//! rejects and counts. `fx` files are read first (their rates feed every
//! conversion), then every other file in parallel, each in batches parsed in
//! parallel. Framing errors and parse rejects are counted here; versioned
//! records are counted once their versions are resolved.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use cvm_shared::identity::stable_hash;
use cvm_shared::privacy::KeyKind;
use cvm_shared::{Currency, Rate, Settings};

use super::IngestError;
use super::stored::SmallState;
use crate::consolidate::events::{EventLog, FileEvents, KnownEvents};
use crate::consolidate::versions::{KeyOrder, Numbers};
use crate::manifest::Counts;
use crate::memory::release_freed;
use crate::privacy::ledger::Matcher;
use crate::privacy::pseudonymise::{Pseudonymiser, VaultEntry};
use crate::record::{
    CrmRecord, EventFields, Keys, Outcome, Parsed, Pos, TxnIds, TxnRecord, TxnRow, Versioned,
};
use crate::sources::reader::{self, RawBody};
use crate::sources::{self, CsvRow, Header, InputFile, ParseContext, RawRecord, SourceKind};
use crate::warehouse::RejectRow;
use crate::warehouse::txn_keysets::{TxnKeysets, keyset_hash};

/// What the drop holds, per file in the drop's order.
pub(super) struct DropRead {
    /// Outcomes counted so far (rejects, ignored, fx), per file.
    pub per_file: Vec<Counts>,
    /// Rejected records, in file and line order.
    pub rejects: Vec<RejectRow>,
    /// Versioned transactions in chunks (a file's read batches, files in
    /// order), in read order; freed chunk by chunk later. Each names its key
    /// set by index into `txn_keys`.
    pub txns: Vec<Vec<Versioned<TxnRecord<u32>>>>,
    /// The distinct key sets of `txns`, each held once however many records
    /// name it (a drop of millions of a million customers' purchases).
    pub txn_keys: TxnKeysets,
    /// Versioned CRM records per file, in read order.
    pub crm: Vec<Vec<Versioned<CrmRecord>>>,
    /// The stored events followed by the drop's.
    pub events: EventLog,
    /// How many of `events` were stored.
    pub stored_events: usize,
    /// Record keys of stored events not in `events` (of the months the
    /// drop's events are appended to): enough to find a duplicate.
    pub known_events: KnownEvents,
    /// Rates in force after this drop: base, earlier runs', this drop's.
    pub small: SmallState,
    /// Clear values behind the drop's hashes (pseudonymised warehouse only).
    pub vault: Vault,
}

/// Clear values by hash, each once.
pub(super) type Vault = HashMap<String, (KeyKind, String)>;

fn note(vault: &mut Vault, noted: Vec<VaultEntry>) {
    for e in noted {
        vault.entry(e.hash).or_insert((e.kind, e.value));
    }
}

/// Reads every file of the drop; `stored_events` is the warehouse's event log
/// (its file indices are the run's), which the drop's events are appended to.
pub(super) fn read_drop(
    files: &[InputFile],
    settings: &Settings,
    stored: &SmallState,
    stored_events: EventLog,
    erased: Option<Matcher>,
    pseudonymiser: Option<&Pseudonymiser>,
    progress: bool,
) -> Result<DropRead, IngestError> {
    // Rates: base, then those of earlier runs, then this drop's fx file.
    let mut ctx = ParseContext::new(settings);
    ctx.erased = erased.map(std::sync::Arc::new);
    ctx.pseudonymiser = pseudonymiser.cloned().map(std::sync::Arc::new);
    for (c, r) in &stored.rates {
        if let (Ok(c), Ok(r)) = (Currency::parse(c), Rate::parse_positive(r)) {
            ctx.rates.entry(c).or_insert(r);
        }
    }
    let pb = super::super::progress::records_spinner(progress, "reading");
    let txn_keys = Mutex::new(TxnKeysets::default());
    let (fx_files, other_files): (Vec<_>, Vec<_>) = files
        .iter()
        .enumerate()
        .partition(|(_, f)| f.kind == SourceKind::Fx);
    let mut results: Vec<(usize, FileResult)> = Vec::with_capacity(files.len());
    let mut book = sources::fx::RateBook::default();
    for (i, f) in fx_files {
        let mut r = read_one(i, f, &ctx, &txn_keys, &pb)?;
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
        .map(|(i, f)| read_one(*i, f, &ctx, &txn_keys, &pb).map(|r| (*i, r)))
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
        txn_keys: txn_keys
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
        crm: Vec::with_capacity(results.len()),
        stored_events: stored_events.len(),
        events: stored_events,
        known_events: KnownEvents::default(),
        small: SmallState {
            format: crate::warehouse::state::FORMAT,
            rates: ctx
                .rates
                .iter()
                .map(|(c, r)| (c.to_string(), r.to_string()))
                .collect::<BTreeMap<_, _>>(),
            pseudonymised: None,
        },
        vault: Vault::default(),
    };
    for (_, r) in results {
        out.per_file.push(r.counts);
        out.rejects.extend(r.rejects);
        out.txns.extend(r.txns);
        out.crm.push(r.crm);
        out.events.append(r.events);
        if out.vault.is_empty() {
            out.vault = r.vault;
        } else {
            out.vault.extend(r.vault);
        }
    }
    release_freed();
    Ok(out)
}

/// Everything read from one file.
#[derive(Default)]
struct FileResult {
    counts: Counts,
    rejects: Vec<RejectRow>,
    /// One chunk per read batch holding transactions: each sized once, so
    /// millions of records are never copied into a larger vector as it grows.
    txns: Vec<Vec<Versioned<TxnRecord<u32>>>>,
    crm: Vec<Versioned<CrmRecord>>,
    events: EventLog,
    /// Valid rates and their lines (counted once checked against the run's other rates).
    fx: Vec<(Currency, Rate, u64)>,
    /// Clear values behind the hashes (pseudonymised warehouse only).
    vault: Vault,
}

/// One parsed record of a batch.
enum Item<'a> {
    /// Any record, owning its values.
    Parsed(Parsed),
    /// An event, borrowing from its line.
    Event(EventFields<'a>),
}

/// Replaces `p`'s emails, phones and names by keyed hashes (the
/// pseudonymised warehouse), noting the clear values in `vault`.
fn pseudonymise(ps: &Pseudonymiser, p: &mut Item<'_>, vault: &mut Vec<VaultEntry>) {
    let mut keys = |k: &mut Keys| {
        ps.hide_opt(KeyKind::Email, &mut k.email, vault);
        ps.hide_opt(KeyKind::Phone, &mut k.phone, vault);
    };
    match p {
        Item::Event(f) => {
            if let Some(e) = f.email.as_deref() {
                f.email = Some(Cow::Owned(ps.hide(KeyKind::Email, e, vault).into()));
            }
        }
        Item::Parsed(Parsed::Txn(v)) => keys(&mut v.body.keys),
        Item::Parsed(Parsed::Event(v)) => keys(&mut v.body.keys),
        Item::Parsed(Parsed::Crm(v)) => {
            let c = &mut v.body;
            ps.hide_opt(KeyKind::Email, &mut c.email, vault);
            ps.hide_opt(KeyKind::Phone, &mut c.phone, vault);
            ps.hide_opt(KeyKind::Name, &mut c.first_name, vault);
            ps.hide_opt(KeyKind::Name, &mut c.last_name, vault);
        }
        Item::Parsed(_) => {}
    }
}

/// Whether `p` carries a key of a person in the erasure ledger.
fn erased_record(m: &Matcher, p: &Item<'_>) -> bool {
    match p {
        Item::Event(f) => m.erased(f.customer_id.as_deref(), f.email.as_deref(), None),
        Item::Parsed(Parsed::Txn(v)) => m.erased_keys(&v.body.keys),
        Item::Parsed(Parsed::Crm(v)) => m.erased(
            Some(&v.body.customer_id),
            v.body.email.as_deref(),
            v.body.phone.as_deref(),
        ),
        Item::Parsed(Parsed::Event(v)) => {
            let f = EventFields::from(v);
            m.erased(f.customer_id.as_deref(), f.email.as_deref(), None)
        }
        Item::Parsed(_) => false,
    }
}

/// Reads and parses one file; framing errors and parse rejects are counted here,
/// versioned records are counted after consolidation. Transactions' keys go
/// into `txn_keys`, shared by every file read.
fn read_one(
    idx: usize,
    file: &InputFile,
    ctx: &ParseContext,
    txn_keys: &Mutex<TxnKeysets>,
    pb: &indicatif::ProgressBar,
) -> Result<FileResult, reader::ReadError> {
    let mut out = FileResult::default();
    let mut events = FileEvents::new(idx as u32);
    let mut warned_columns = false;
    let kind = file.kind;
    // A batch's parsed records and transactions go through buffers kept
    // from batch to batch: only the chunks kept are allocated a batch, so
    // no short-lived buffer leaves holes between them (freed, not purged,
    // they held ~180 MiB of a 12.3M-row drop's peak).
    let mut spare: Vec<Slot<'static>> = Vec::new();
    let mut txns: Vec<Versioned<TxnRecord>> = Vec::new();
    let mut numbers: Vec<u64> = Vec::new();
    reader::read_file(&file.path, kind.format(), |header: &Header, batch| {
        if !warned_columns && kind.format() == sources::Format::Csv {
            warned_columns = true;
            warn_missing_columns(file, header);
        }
        let mut parsed: Vec<Slot<'_>> = recycle(std::mem::take(&mut spare));
        batch
            .par_iter()
            .map(|item| {
                let pos = Pos::new(idx as u32, item.line);
                let (line, mut p, raw) = match &item.body {
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
                };
                let mut noted = Vec::new();
                if let Some(ps) = ctx.pseudonymiser.as_deref() {
                    pseudonymise(ps, &mut p, &mut noted);
                }
                (line, p, raw, noted)
            })
            .collect_into_vec(&mut parsed);
        pb.inc(parsed.len() as u64);
        for (line, p, raw, noted) in parsed.drain(..) {
            // A record of an erased person goes no further (erasure ledger),
            // not even into the vault; nothing is checked when nobody was
            // ever erased.
            let erased = ctx.erased.as_deref().is_some_and(|m| erased_record(m, &p));
            if erased {
                out.counts.add(Outcome::Erased, None);
                continue;
            }
            note(&mut out.vault, noted);
            let p = match p {
                Item::Event(f) => {
                    events.push(&f);
                    continue;
                }
                Item::Parsed(p) => p,
            };
            match p {
                Parsed::Txn(v) => txns.push(v),
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
        spare = recycle(parsed);
        if !txns.is_empty() {
            out.txns
                .push(intern_keys(&mut txns, &mut numbers, txn_keys));
        }
    })?;
    number_keys(&mut out);
    out.events = events.log;
    // These live until consolidation: no spare capacity.
    out.txns.shrink_to_fit();
    out.crm.shrink_to_fit();
    Ok(out)
}

/// One parsed record of a batch: its line, the record, its raw text when
/// rejected, and the clear values its hashes hide.
type Slot<'a> = (u64, Item<'a>, Option<String>, Vec<VaultEntry>);

/// An emptied vector's allocation, for slots borrowing from another batch
/// (collected in place: the two types have one layout).
#[allow(clippy::unnecessary_filter_map)] // the lifetime changes, no slot is kept
fn recycle<'b>(mut v: Vec<Slot<'_>>) -> Vec<Slot<'b>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// A batch's transactions, drained from `txns`, with their keys interned
/// into `table`: numbered first into `numbers` (outside the lock), then
/// looked up under one lock for the batch. The chunk returned is sized
/// exactly: it lives until consolidation.
fn intern_keys(
    txns: &mut Vec<Versioned<TxnRecord>>,
    numbers: &mut Vec<u64>,
    table: &Mutex<TxnKeysets>,
) -> Vec<Versioned<TxnRecord<u32>>> {
    let mut buf = String::new();
    numbers.clear();
    numbers.extend(
        txns.iter()
            .map(|v| keyset_hash(v.body.keys.refs(), &mut buf)),
    );
    let mut out = Vec::with_capacity(txns.len());
    let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
    out.extend(txns.drain(..).zip(numbers.iter()).map(|(v, &h)| Versioned {
        body: v.body.map_keys(|keys| table.intern_hashed(keys.refs(), h)),
        key: v.key,
        version: v.version,
        digest: v.digest,
        pos: v.pos,
    }));
    out
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
    // First each record's occurrence, counted on borrowed keys (no copies),
    // then the keys rewritten. Grouped by sorting ([`KeyOrder`]), not in a
    // table of every key: a file of 770,000 rows would need a 25 MB table,
    // grown by doubling, on each reading thread; the keys are looked up
    // where they lie, not gathered.
    let occurrences: Vec<u32> = {
        let numbers = Numbers::of(&out.txns);
        let key = |n: usize| {
            let (c, i) = numbers.at(n);
            &*out.txns[c][i].key
        };
        let order = KeyOrder::new(
            numbers.total(),
            out.txns
                .iter()
                .flatten()
                .enumerate()
                .filter(|(_, v)| v.numbered())
                .map(|(n, v)| (n, &*v.key)),
        );
        // By record; keyed records keep their 1, unused.
        let mut occurrences = vec![1u32; numbers.total()];
        let mut seen: Vec<(&str, u32)> = Vec::new();
        for run in order.shared_runs() {
            // In position order: the n-th of a key in the file is `#n`.
            seen.clear();
            for n in run {
                occurrences[n] = match seen.iter_mut().find(|(k, _)| *k == key(n)) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        seen.push((key(n), 1));
                        1
                    }
                };
            }
        }
        occurrences
    };
    let numbered = out.txns.iter_mut().flatten().zip(occurrences);
    for (v, n) in numbered.filter(|(v, _)| v.numbered()) {
        // In place: a key of up to 24 bytes stays inline.
        let _ = write!(v.key, "#{n}");
        if let Some(TxnRow {
            ids: TxnIds::Generic { hash, .. },
            ..
        }) = &mut v.body.row
        {
            *hash = stable_hash(v.key.as_bytes());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn recycled_slots_keep_their_allocation() {
        let v: Vec<Slot<'static>> = Vec::with_capacity(reader::BATCH);
        let ptr = v.as_ptr() as usize;
        let mut r: Vec<Slot<'_>> = recycle(v);
        r.push((1, Item::Parsed(Parsed::Ignored), None, Vec::new()));
        assert_eq!(r.as_ptr() as usize, ptr);
        let back: Vec<Slot<'static>> = recycle(r);
        assert!(back.is_empty());
        assert_eq!(
            (back.as_ptr() as usize, back.capacity() >= reader::BATCH),
            (ptr, true)
        );
    }

    #[test]
    fn identical_rows_are_numbered_across_read_batches_in_line_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("transactions")).unwrap();
        // The same row first, in the middle of the second batch and last.
        let rows = reader::BATCH + 100;
        let mut csv = String::from("customer_id,occurred_at,amount\n");
        for i in 0..rows {
            let same = i == 0 || i == reader::BATCH + 50 || i + 1 == rows;
            let amount = if same { 7 } else { 1000 + i };
            csv.push_str(&format!("C1,2024-01-01,{amount}.00\n"));
        }
        std::fs::write(d.path().join("transactions/a.csv"), csv).unwrap();
        let found = sources::discover(d.path()).unwrap();
        let ctx = ParseContext::new(&Settings::default());
        let pb = indicatif::ProgressBar::hidden();
        let keys = Mutex::new(TxnKeysets::default());
        let read = read_one(0, &found.files[0], &ctx, &keys, &pb).unwrap();
        assert!(read.txns.len() >= 2, "one chunk per read batch");
        let all: Vec<&Versioned<TxnRecord<u32>>> = read.txns.iter().flatten().collect();
        assert_eq!(all.len(), rows);
        let same: Vec<(u64, &str)> = all
            .iter()
            .filter(|v| v.body.row.as_ref().unwrap().amount_original.0 == 7_000_000)
            .map(|v| (v.pos.line(), v.key.rsplit_once('#').unwrap().1))
            .collect();
        let lines = [2, reader::BATCH as u64 + 52, rows as u64 + 1];
        assert_eq!(
            same,
            lines
                .iter()
                .copied()
                .zip(["1", "2", "3"])
                .collect::<Vec<_>>()
        );
        let keys: std::collections::HashSet<&str> = all.iter().map(|v| &*v.key).collect();
        assert_eq!(keys.len(), rows, "every record has a key of its own");
    }
}
