//! `cvm-etl generate`: a realistic, deterministic synthetic input drop in
//! exactly the data contract's format, optionally with a known share of
//! deliberately bad records.
//!
//! Customers are generated in fixed-size chunks, in parallel; each chunk has
//! its own random streams (seed + chunk number) and its own output files, so
//! the bytes never depend on thread scheduling. CRM rows of all chunks go to
//! the single `crm/customers.csv`, appended in chunk order.
//!
//! Files: `fx/rates.csv` (EUR, CNY, GBP, JPY to USD), `crm/customers.csv`, and
//! per chunk `pos/part-NNNNN.csv`, `web/part-NNNNN.jsonl` plus
//! `web/updates-NNNNN.jsonl` (later versions of some orders),
//! `app/part-NNNNN.jsonl`, `transactions/part-NNNNN.csv`,
//! `events/part-NNNNN.jsonl`; `.gz` appended when compressing. Feed quirks sit
//! in fixed files: a BOM in `pos/part-00000`, CRLF in `pos/part-00001`,
//! reordered columns in `pos/part-00002`, an extra `cashier` column in
//! `pos/part-00003`, no `channel` column in `transactions/part-00001`, blank
//! lines in `events/part-00000`, an extra `loyalty_tier` CRM column, a quoted
//! line break in one name per chunk.
//!
//! Assumptions about the ingest settings: base currency `USD`, POS time zone
//! `UTC` (local POS times are between 08:00 and 21:59, so they also exist in
//! any zone whose DST switch is at night), default country code `1` (only US
//! phones are written without a `+`).

mod channels;
mod dirty;
mod population;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use self::channels::ChunkWriter;
use self::population::{GuestKey, Model};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Number of CRM customers (guests come on top, about a tenth of that).
    pub customers: u64,
    /// Random seed: the same options give byte-identical files.
    pub seed: u64,
    /// Share of records (0 to 0.5) made deliberately bad.
    pub dirty_ratio: f64,
    /// First day of the period customers are acquired in.
    pub start: NaiveDate,
    /// Last day of the period purchases fall in.
    pub end: NaiveDate,
    /// Write `.csv.gz` / `.jsonl.gz` instead of plain files.
    pub gzip: bool,
    /// 0: one drop. N: the period as a history drop (`history/`) followed by
    /// one drop per day for its last N days (`YYYY-MM-DD/`), each record in
    /// the drop of the day it was made or changed: new purchases, web order
    /// updates (refunds of earlier orders), CRM records and their updates
    /// (some claiming a guest's earlier purchases), events.
    pub days: u32,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            customers: 1000,
            seed: 42,
            dirty_ratio: 0.0,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default(),
            end: NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default(),
            gzip: false,
            days: 0,
        }
    }
}

/// The outcomes the ingest should give one source kind's records (the
/// generator's truth, for a first run into an empty warehouse).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeCounts {
    /// Taken into the warehouse.
    pub accepted: u64,
    /// Superseded versions (CRM rows, web order versions).
    pub duplicate: u64,
    /// Dropped by rule (POS void; web cancelled or pending winners).
    pub ignored: u64,
    /// POS receipts with no customer key.
    pub anonymous: u64,
    /// Deliberately bad records.
    pub rejected: u64,
}

impl OutcomeCounts {
    fn add(&mut self, o: &OutcomeCounts) {
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        self.ignored += o.ignored;
        self.anonymous += o.anonymous;
        self.rejected += o.rejected;
    }

    /// All records of the kind.
    pub fn total(&self) -> u64 {
        self.accepted + self.duplicate + self.ignored + self.anonymous + self.rejected
    }
}

/// What was written, and the truth tests compare the ingest against.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GenerateSummary {
    /// Every file written (path relative to the drop, `/`-separated) and its record count, sorted by path.
    pub files: Vec<(String, u64)>,
    /// Records in all files (CSV data rows and non-blank JSONL lines).
    pub records: u64,
    /// Deliberately bad records per reject reason code; reasons never injected are absent.
    pub bad_by_reason: BTreeMap<String, u64>,
    /// Distinct CRM customer ids (prospects included).
    pub customers: u64,
    /// CRM customers generated without any purchase.
    pub prospects: u64,
    /// Guest buyers generated (not in CRM; each known by one key only: email,
    /// phone or legacy id). The ingest can resolve more guests: a CRM customer
    /// whose CRM rows were all made bad becomes guests under the keys it bought with.
    pub guests: u64,
    /// Expected outcomes per source folder (`crm`, `pos`, `web`, `app`, `transactions`, `events`, `fx`).
    pub outcomes: BTreeMap<String, OutcomeCounts>,
    /// Expected consolidated transactions (accepted and anonymous; a refunded web order counts twice).
    pub consolidated_transactions: u64,
    /// Emails or phones shared by two or more accepted CRM customers.
    pub crm_key_conflicts: u64,
    /// The drops written, in the order to ingest them (`.` for a single drop).
    pub drops: Vec<String>,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A file or folder could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The output folder already holds files that would mix with the new drop.
    #[error("output folder {0} is not empty: generate into a new or empty folder")]
    NotEmpty(PathBuf),
    /// Options out of range.
    #[error("invalid generate options for {path}: {message}")]
    Options {
        /// The output folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// CRM customers per chunk, at most; a chunk is the unit of parallelism and has its own files.
const MAX_CHUNK: u64 = 10_000;

/// Customers per chunk: small drops still get several chunks (and so every
/// per-file quirk), big ones chunks of [`MAX_CHUNK`]. Depends on the options only.
fn chunk_size(customers: u64) -> u64 {
    customers.div_ceil(8).clamp(25, MAX_CHUNK)
}

/// Writes a synthetic drop into `out` (created if missing; must be empty).
pub fn generate(out: &Path, opts: &GenerateOptions) -> Result<GenerateSummary, GenerateError> {
    let invalid = |message: String| GenerateError::Options {
        path: out.to_path_buf(),
        message,
    };
    if !(0.0..=0.5).contains(&opts.dirty_ratio) {
        return Err(invalid(format!(
            "dirty ratio {} is not between 0 and 0.5",
            opts.dirty_ratio
        )));
    }
    if opts.end < opts.start {
        return Err(invalid(format!(
            "end {} is before start {}",
            opts.end, opts.start
        )));
    }
    let period_days = (opts.end - opts.start).num_days() + 1;
    if i64::from(opts.days) >= period_days {
        return Err(invalid(format!(
            "{} daily drops leave no history in a period of {period_days} days",
            opts.days
        )));
    }
    if opts.customers >= population::GUEST_OFFSET {
        return Err(invalid(format!(
            "at most {} customers",
            population::GUEST_OFFSET - 1
        )));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GenerateError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    if std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(GenerateError::NotEmpty(out.to_path_buf()));
    }
    let span = Span::of(opts);
    let drops = Drops::new(opts, &span);
    let mut summary = GenerateSummary {
        customers: opts.customers,
        drops: (0..drops.count())
            .map(|d| drops.prefix(d).trim_end_matches('/').to_string())
            .map(|p| if p.is_empty() { ".".to_string() } else { p })
            .collect(),
        ..GenerateSummary::default()
    };
    summary.outcomes.insert(
        "fx".into(),
        OutcomeCounts {
            accepted: 4 * drops.count() as u64,
            ..OutcomeCounts::default()
        },
    );
    // Every drop gets the rates and one CRM file for all chunks. Compressed,
    // a CRM file is a series of gzip members (one per chunk, made in the
    // chunk's thread), which any gzip reader reads as one text: compression
    // stays parallel.
    let mut crm_files = Vec::with_capacity(drops.count());
    for d in 0..drops.count() {
        let pre = drops.prefix(d);
        for dir in ["crm", "pos", "web", "app", "transactions", "events", "fx"] {
            let dir = out.join(format!("{pre}{dir}"));
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let mut fx = Sink::create(out, &format!("{pre}fx/rates.csv"), opts.gzip, false)?;
        fx.raw(b"currency,rate_to_base\n")?;
        for (code, text, _) in population::RATES {
            fx.record(&format!("{code},{text}"))?;
        }
        summary.files.push(fx.finish()?);
        let crm_rel = if opts.gzip {
            format!("{pre}crm/customers.csv.gz")
        } else {
            format!("{pre}crm/customers.csv")
        };
        let mut crm = Sink::create(out, &crm_rel, false, false)?;
        let header = format!("{}\n", channels::CRM_HEADER);
        crm.raw(&maybe_gzip(header.into_bytes(), opts.gzip, &crm.path)?)?;
        crm_files.push(crm);
    }

    let size = chunk_size(opts.customers);
    let chunks = opts.customers.div_ceil(size);
    // Chunks are processed in waves so only a few chunks' CRM rows are held at once.
    let wave = (rayon::current_num_threads() as u64 * 2).max(2);
    let mut totals: BTreeMap<&'static str, OutcomeCounts> = BTreeMap::new();
    let mut bad = [0u64; 6];
    let mut lo = 0;
    while lo < chunks {
        let hi = (lo + wave).min(chunks);
        let results: Vec<ChunkResult> = (lo..hi)
            .into_par_iter()
            .map(|c| run_chunk(out, opts, &span, c, size))
            .collect::<Result<_, _>>()?;
        for r in results {
            for (crm, (rows, n)) in crm_files.iter_mut().zip(&r.crm) {
                crm.raw_records(rows, *n)?;
            }
            summary.files.extend(r.files);
            summary.prospects += r.prospects;
            summary.guests += r.guests;
            summary.consolidated_transactions += r.consolidated;
            summary.crm_key_conflicts += r.conflicts;
            for (k, o) in r.outcomes {
                totals.entry(k).or_default().add(&o);
            }
            for (t, b) in bad.iter_mut().zip(r.bad) {
                *t += b;
            }
        }
        lo = hi;
    }
    for crm in crm_files {
        summary.files.push(crm.finish()?);
    }
    for (k, o) in totals {
        summary.outcomes.insert(k.to_string(), o);
    }
    for (reason, n) in dirty::INJECTED.iter().zip(bad) {
        if n > 0 {
            summary.bad_by_reason.insert(reason.as_str().to_string(), n);
        }
    }
    summary.files.sort();
    summary.records = summary.files.iter().map(|f| f.1).sum();
    Ok(summary)
}

/// The period in Unix seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    /// First second of `start`.
    pub start: i64,
    /// Last second of `end`.
    pub end: i64,
}

impl Span {
    fn of(opts: &GenerateOptions) -> Span {
        let secs = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .map_or(0, |t| t.and_utc().timestamp())
        };
        Span {
            start: secs(opts.start),
            end: secs(opts.end) + population::DAY - 1,
        }
    }
}

/// Where records go: one drop, or a history drop followed by one drop per
/// day for the period's last `days` days.
#[derive(Debug, Clone)]
pub(crate) struct Drops {
    /// First second of the first daily drop (after the period: one drop).
    cut: i64,
    /// Each drop's folder with a trailing `/` (empty for a single drop).
    prefixes: Vec<String>,
}

impl Drops {
    fn new(opts: &GenerateOptions, span: &Span) -> Drops {
        if opts.days == 0 {
            return Drops {
                cut: i64::MAX,
                prefixes: vec![String::new()],
            };
        }
        let first = opts.end - chrono::Days::new(u64::from(opts.days - 1));
        let mut prefixes = vec!["history/".to_string()];
        prefixes.extend(
            first
                .iter_days()
                .take(opts.days as usize)
                .map(|d| format!("{d}/")),
        );
        Drops {
            cut: span.end + 1 - i64::from(opts.days) * population::DAY,
            prefixes,
        }
    }

    /// How many drops.
    pub fn count(&self) -> usize {
        self.prefixes.len()
    }

    /// Drop `d`'s folder, with a trailing `/` (empty for a single drop).
    pub fn prefix(&self, d: usize) -> &str {
        &self.prefixes[d]
    }

    /// The drop a record made or changed at `t` (Unix seconds) arrives in:
    /// the history before the cut, else its day (the last day for later ones).
    pub fn of(&self, t: i64) -> usize {
        if t < self.cut {
            0
        } else {
            (1 + (t - self.cut) / population::DAY).min(self.prefixes.len() as i64 - 1) as usize
        }
    }
}

/// What one chunk produced.
struct ChunkResult {
    /// CRM rows and their count, per drop.
    crm: Vec<(Vec<u8>, u64)>,
    files: Vec<(String, u64)>,
    outcomes: Vec<(&'static str, OutcomeCounts)>,
    bad: [u64; 6],
    prospects: u64,
    guests: u64,
    consolidated: u64,
    conflicts: u64,
}

fn run_chunk(
    out: &Path,
    opts: &GenerateOptions,
    span: &Span,
    chunk: u64,
    size: u64,
) -> Result<ChunkResult, GenerateError> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(chunk);
    let mut dirty_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xD1B5_4A32_D192_ED03);
    dirty_rng.set_stream(chunk);
    let model = Model::new();
    let lo = chunk * size;
    let hi = ((chunk + 1) * size).min(opts.customers);
    let mut w = ChunkWriter::new(out, opts, *span, chunk, dirty_rng)?;
    let mut prev: Option<(Option<String>, Option<population::Phone>)> = None;
    let mut prospects = 0;
    for (k, i) in (lo..hi).enumerate() {
        let mut p = population::person(&mut rng, &model, i + 1, None, span.start, span.end);
        // A few households share an email or a phone with the previous customer:
        // CRM key conflicts the ingest must count.
        if let Some((email, phone)) = &prev {
            let u: f64 = rand::Rng::random(&mut rng);
            if u < 0.004 && email.is_some() {
                p.email = email.clone();
            } else if u < 0.008 && phone.is_some() {
                p.phone = phone.clone();
            }
        }
        prev = Some((p.email.clone(), p.phone.clone()));
        if p.purchases.is_empty() {
            prospects += 1;
        }
        w.person(&p, k == 3)?;
    }
    let guests = (hi - lo) / 10;
    for g in 0..guests {
        let u: f64 = rand::Rng::random(&mut rng);
        let key = if u < 0.45 {
            GuestKey::Email
        } else if u < 0.85 {
            GuestKey::Phone
        } else {
            GuestKey::LegacyId
        };
        let p = population::person(
            &mut rng,
            &model,
            lo + g + 1,
            Some(key),
            span.start,
            span.end,
        );
        w.person(&p, false)?;
    }
    let mut r = w.finish()?;
    for (rows, _) in &mut r.crm {
        *rows = maybe_gzip(std::mem::take(rows), opts.gzip, &out.join("crm"))?;
    }
    r.prospects = prospects;
    r.guests = guests;
    Ok(r)
}

/// `bytes` as one gzip member when `gzip`, else as they are.
fn maybe_gzip(bytes: Vec<u8>, gzip: bool, path: &Path) -> Result<Vec<u8>, GenerateError> {
    if !gzip {
        return Ok(bytes);
    }
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::fast(),
    );
    enc.write_all(&bytes)
        .and_then(|_| enc.finish())
        .map_err(|source| GenerateError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The compressed or plain file behind a [`Sink`].
enum Writer {
    Plain(BufWriter<File>),
    // Boxed: the encoder's state is a few hundred bytes.
    Gz(Box<flate2::write::GzEncoder<BufWriter<File>>>),
}

/// One output file: counts records and writes the file's line ends.
pub(crate) struct Sink {
    rel: String,
    path: PathBuf,
    w: Writer,
    records: u64,
    crlf: bool,
}

impl Sink {
    /// Creates `out/rel` (plus `.gz` when compressing).
    pub fn create(out: &Path, rel: &str, gzip: bool, crlf: bool) -> Result<Sink, GenerateError> {
        let rel = if gzip {
            format!("{rel}.gz")
        } else {
            rel.to_string()
        };
        let path = out.join(&rel);
        let file = File::create(&path).map_err(|source| GenerateError::Io {
            path: path.clone(),
            source,
        })?;
        let buf = BufWriter::with_capacity(1 << 17, file);
        let w = if gzip {
            // GzEncoder writes mtime 0, so compressed bytes are deterministic too.
            Writer::Gz(Box::new(flate2::write::GzEncoder::new(
                buf,
                flate2::Compression::fast(),
            )))
        } else {
            Writer::Plain(buf)
        };
        Ok(Sink {
            rel,
            path,
            w,
            records: 0,
            crlf,
        })
    }

    fn err(&self) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
        |source| GenerateError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes bytes that are not records (header, BOM, blank lines).
    pub fn raw(&mut self, bytes: &[u8]) -> Result<(), GenerateError> {
        let r = match &mut self.w {
            Writer::Plain(w) => w.write_all(bytes),
            Writer::Gz(w) => w.write_all(bytes),
        };
        r.map_err(self.err())
    }

    /// Writes pre-formatted records (with their line ends) and counts them.
    pub fn raw_records(&mut self, bytes: &[u8], records: u64) -> Result<(), GenerateError> {
        self.raw(bytes)?;
        self.records += records;
        Ok(())
    }

    /// Writes a line end in this file's style.
    pub fn end_line(&mut self) -> Result<(), GenerateError> {
        let end: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        self.raw(end)
    }

    /// Writes one record and its line end.
    pub fn record(&mut self, text: &str) -> Result<(), GenerateError> {
        self.raw(text.as_bytes())?;
        self.end_line()?;
        self.records += 1;
        Ok(())
    }

    /// Flushes and closes the file; returns its relative path and record count.
    pub fn finish(self) -> Result<(String, u64), GenerateError> {
        let path = self.path;
        let err = |source| GenerateError::Io {
            path: path.clone(),
            source,
        };
        match self.w {
            Writer::Plain(mut w) => w.flush().map_err(err)?,
            Writer::Gz(w) => w.finish().and_then(|mut b| b.flush()).map_err(err)?,
        }
        Ok((self.rel, self.records))
    }
}

#[cfg(test)]
mod tests;
