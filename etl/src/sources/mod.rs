//! Input sources: one module per folder of the drop (see the data contract).
//!
//! Each module turns one raw record (a CSV row or a JSONL line) into a
//! [`Parsed`] record; framing (gzip, BOM, line numbers, CSV quoting) lives in
//! [`reader`], and the pipeline never special-cases a source.

pub mod app;
pub mod crm;
pub mod events;
pub mod fields;
pub mod fx;
pub mod pos;
pub mod reader;
pub mod transactions;
pub mod web;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cvm_shared::config::DateWindow;
use cvm_shared::{Currency, Rate, Settings};

use crate::record::Parsed;

/// The kinds of input folder in a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// `fx/rates.csv`: currency rates (read first).
    Fx,
    /// `crm/*.csv`: golden customer records.
    Crm,
    /// `pos/*.csv`: store receipts.
    Pos,
    /// `web/*.jsonl`: web-shop orders.
    Web,
    /// `app/*.jsonl`: app purchases and refunds.
    App,
    /// `transactions/*.csv`: generic transactions.
    Transactions,
    /// `events/*.jsonl`: engagement events.
    Events,
}

/// How a source's files are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl SourceKind {
    /// All kinds, in the order they are processed.
    pub const ALL: [SourceKind; 7] = [
        SourceKind::Fx,
        SourceKind::Crm,
        SourceKind::Pos,
        SourceKind::Web,
        SourceKind::App,
        SourceKind::Transactions,
        SourceKind::Events,
    ];

    /// The folder name in the drop.
    pub fn folder(self) -> &'static str {
        match self {
            SourceKind::Fx => "fx",
            SourceKind::Crm => "crm",
            SourceKind::Pos => "pos",
            SourceKind::Web => "web",
            SourceKind::App => "app",
            SourceKind::Transactions => "transactions",
            SourceKind::Events => "events",
        }
    }

    /// The framing of its files.
    pub fn format(self) -> Format {
        match self {
            SourceKind::Web | SourceKind::App | SourceKind::Events => Format::Jsonl,
            _ => Format::Csv,
        }
    }

    /// Whether `file_name` is an input file of this kind (`.gz` allowed).
    pub fn accepts(self, file_name: &str) -> bool {
        let name = file_name.strip_suffix(".gz").unwrap_or(file_name);
        match self {
            SourceKind::Fx => name == "rates.csv",
            _ => match self.format() {
                Format::Csv => name.ends_with(".csv"),
                Format::Jsonl => name.ends_with(".jsonl"),
            },
        }
    }
}

/// One input file of a drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Its kind.
    pub kind: SourceKind,
    /// Path on disk.
    pub path: PathBuf,
    /// Path relative to the drop, with `/` separators (`pos/2026-03-01.csv.gz`).
    pub name: String,
}

/// The files of a drop, sorted by kind then name, plus the ones ignored.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Input files in processing order.
    pub files: Vec<InputFile>,
    /// Files (or folders) in the drop that are not inputs, relative names.
    pub ignored: Vec<String>,
}

/// Why a drop could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The input folder does not exist or is not a folder.
    #[error("input folder {0} does not exist or is not a folder: pass --input with a drop folder")]
    NotAFolder(PathBuf),
    /// Listing failed.
    #[error("cannot read input folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// More files than a drop can hold.
    #[error(
        "input folder {path} holds {files} input files, more than the {max} a drop can hold: deliver them as several drops"
    )]
    TooManyFiles {
        path: PathBuf,
        files: usize,
        max: usize,
    },
}

/// Lists the input files of a drop folder.
pub fn discover(dir: &Path) -> Result<Discovery, DiscoverError> {
    if !dir.is_dir() {
        return Err(DiscoverError::NotAFolder(dir.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DiscoverError::Io { path, source }
    };
    let mut out = Discovery::default();
    let mut top: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    top.sort_by_key(|e| e.file_name());
    for entry in top {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(kind) = SourceKind::ALL.into_iter().find(|k| k.folder() == name) else {
            if !name.starts_with('.') {
                out.ignored.push(name);
            }
            continue;
        };
        let sub = entry.path();
        if !sub.is_dir() {
            out.ignored.push(name);
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(&sub)
            .map_err(io(&sub))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io(&sub))?;
        files.sort_by_key(|e| e.file_name());
        for f in files {
            let fname = f.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') {
                continue;
            }
            let rel = format!("{name}/{fname}");
            if f.path().is_file() && kind.accepts(&fname) {
                out.files.push(InputFile {
                    kind,
                    path: f.path(),
                    name: rel,
                });
            } else {
                out.ignored.push(rel);
            }
        }
    }
    out.files
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let max = 1 << crate::record::Pos::FILE_BITS;
    if out.files.len() > max {
        return Err(DiscoverError::TooManyFiles {
            path: dir.to_path_buf(),
            files: out.files.len(),
            max,
        });
    }
    Ok(out)
}

/// What every parser may consult: settings and the currency rates of the run.
#[derive(Debug, Clone)]
pub struct ParseContext {
    /// The base currency (rate 1).
    pub base: Currency,
    /// Rates to the base currency, including the base itself.
    pub rates: HashMap<Currency, Rate>,
    /// Time zone of POS local times.
    pub pos_tz: chrono_tz::Tz,
    /// Default country calling code for phones, digits.
    pub default_cc: String,
    /// The plausible dates of this run.
    pub window: DateWindow,
    /// The same window in microseconds (checked for every record time).
    pub window_micros: std::ops::Range<i64>,
    /// Recognises records of erased people (None: nobody was ever erased).
    pub erased: Option<std::sync::Arc<crate::privacy::ledger::Matcher>>,
    /// Hashes emails, phones and names as they are parsed (pseudonymised warehouse).
    pub pseudonymiser: Option<std::sync::Arc<crate::privacy::pseudonymise::Pseudonymiser>>,
}

impl ParseContext {
    /// A context from settings, with only the base currency's rate.
    pub fn new(settings: &Settings) -> ParseContext {
        let base = settings.base_currency();
        let window = settings.date_window();
        ParseContext {
            base,
            rates: HashMap::from([(base, Rate::ONE)]),
            pos_tz: settings.pos_time_zone(),
            default_cc: settings.ingest.default_country_code.clone(),
            window,
            window_micros: window.micros(),
            erased: None,
            pseudonymiser: None,
        }
    }
}

/// A CSV header: column name (trimmed, lower-cased) to index.
#[derive(Debug, Clone, Default)]
pub struct Header {
    // Looked up for every field of every row: a fast hash, not SipHash.
    index: rustc_hash::FxHashMap<String, usize>,
    /// Number of columns.
    pub len: usize,
}

/// A CSV header that names a column twice (positions 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateColumn {
    /// The column name, trimmed and lower-cased.
    pub column: String,
    /// Its first position.
    pub first: usize,
    /// Its second position.
    pub second: usize,
}

impl Header {
    /// Builds the index from header fields. A name given twice is an error:
    /// which of the two columns holds the value cannot be known.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Header, DuplicateColumn> {
        let mut index = rustc_hash::FxHashMap::default();
        let mut len = 0;
        for (i, n) in names.into_iter().enumerate() {
            match index.entry(n.trim().to_ascii_lowercase()) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    return Err(DuplicateColumn {
                        column: e.key().clone(),
                        first: e.get() + 1,
                        second: i + 1,
                    });
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                }
            }
            len = i + 1;
        }
        Ok(Header { index, len })
    }

    /// Whether the header has a column.
    pub fn has(&self, column: &str) -> bool {
        self.index.contains_key(column)
    }
}

/// One CSV data row with access by column name.
#[derive(Debug, Clone, Copy)]
pub struct CsvRow<'a> {
    /// The file's header.
    pub header: &'a Header,
    /// The row's fields.
    pub record: &'a csv::StringRecord,
}

impl<'a> CsvRow<'a> {
    /// The trimmed field of `column`; `None` when the column is absent or the
    /// field is empty.
    pub fn get(&self, column: &str) -> Option<&'a str> {
        let i = *self.header.index.get(column)?;
        let v = self.record.get(i)?.trim();
        (!v.is_empty()).then_some(v)
    }
}

/// One raw record handed to a parser.
#[derive(Debug, Clone, Copy)]
pub enum RawRecord<'a> {
    /// A CSV data row.
    Csv(CsvRow<'a>),
    /// A non-blank JSONL line (without its line end).
    Json(&'a str),
}

/// Parses one raw record of `kind`, read at `pos`.
pub fn parse(
    kind: SourceKind,
    raw: RawRecord<'_>,
    pos: crate::record::Pos,
    ctx: &ParseContext,
) -> Parsed {
    use crate::record::{Reject, RejectReason};
    match (kind, raw) {
        (SourceKind::Fx, RawRecord::Csv(r)) => fx::parse(r),
        (SourceKind::Crm, RawRecord::Csv(r)) => crm::parse(r, pos, ctx),
        (SourceKind::Pos, RawRecord::Csv(r)) => pos::parse(r, pos, ctx),
        (SourceKind::Transactions, RawRecord::Csv(r)) => transactions::parse(r, pos, ctx),
        (SourceKind::Web, RawRecord::Json(l)) => web::parse(l, pos, ctx),
        (SourceKind::App, RawRecord::Json(l)) => app::parse(l, pos, ctx),
        (SourceKind::Events, RawRecord::Json(l)) => events::parse(l, pos, ctx),
        _ => Parsed::Rejected(Reject::new(
            RejectReason::BadRow,
            "record framing does not match its folder",
        )),
    }
}

/// One record as CSV text: RFC 4180 quoting (a field holding a comma, a
/// quote or a line break is quoted), no line end. The generator writes its
/// rows with it and the ingest keeps a rejected row's raw text with it.
pub fn csv_line<I, T>(fields: I) -> String
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut out = Vec::with_capacity(128);
    {
        // CRLF as the terminator makes a lone `\r` quoted too; it is cut off below.
        let mut w = csv::WriterBuilder::new()
            .buffer_capacity(256)
            .flexible(true)
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        // Writing into a Vec cannot fail.
        let _ = w.write_record(fields);
        let _ = w.flush();
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_line_quotes_only_what_needs_it() {
        let line = csv_line(["a,b", "say \"hi\"", "x\ny", "cr\rhere", "plain", ""]);
        assert_eq!(
            line,
            "\"a,b\",\"say \"\"hi\"\"\",\"x\ny\",\"cr\rhere\",plain,"
        );
        assert_eq!(csv_line(["one"]), "one");
    }

    #[test]
    fn discovery_sorts_by_kind_and_warns_about_the_rest() {
        let d = tempfile::tempdir().unwrap();
        for (p, body) in [
            ("pos/b.csv", ""),
            ("pos/a.csv.gz", ""),
            ("pos/notes.txt", ""),
            ("crm/c.csv", ""),
            ("fx/rates.csv", ""),
            ("fx/other.csv", ""),
            ("web/w.jsonl", ""),
            ("misc/x.csv", ""),
            ("README", ""),
        ] {
            let path = d.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        let got = discover(d.path()).unwrap();
        let names: Vec<_> = got.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "fx/rates.csv",
                "crm/c.csv",
                "pos/a.csv.gz",
                "pos/b.csv",
                "web/w.jsonl"
            ]
        );
        assert_eq!(
            got.ignored,
            ["README", "fx/other.csv", "misc", "pos/notes.txt"]
        );
    }

    #[test]
    fn a_missing_folder_is_a_clear_error() {
        let err = discover(Path::new("/nonexistent/drop"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/drop") && err.contains("--input"),
            "{err}"
        );
    }

    #[test]
    fn csv_rows_are_read_by_trimmed_lower_case_column() {
        let header = Header::new([" Customer_ID", "total"]).unwrap();
        let rec = csv::StringRecord::from(vec![" C1 ", "  "]);
        let row = CsvRow {
            header: &header,
            record: &rec,
        };
        assert_eq!(row.get("customer_id"), Some("C1"));
        assert_eq!(row.get("total"), None);
        assert_eq!(row.get("absent"), None);
    }

    #[test]
    fn a_header_naming_a_column_twice_is_refused() {
        assert_eq!(
            Header::new(["id", "Email", "x", " email"]).unwrap_err(),
            DuplicateColumn {
                column: "email".into(),
                first: 2,
                second: 4
            }
        );
    }
}
