//! Framing of input files: gzip, BOM, CSV quoting and headers, JSONL lines,
//! physical line numbers. Yields raw records in batches so large files stream
//! with bounded memory and each batch can be parsed in parallel.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{Format, Header};
use crate::record::{Reject, RejectReason};

/// Records per batch handed to the parser.
pub const BATCH: usize = 8192;

/// A file could not be read at all (not a bad record: the run stops).
#[derive(Debug, thiserror::Error)]
#[error("cannot read input file {path}: {message}")]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The body of one raw record.
#[derive(Debug, Clone)]
pub enum RawBody {
    /// A CSV row with the header's field count.
    Csv(csv::StringRecord),
    /// A non-blank JSONL line.
    Json(String),
    /// A record rejected by framing (field count, encoding), with its raw text.
    Bad(Reject, String),
}

/// One raw record and the 1-based physical line it starts on.
#[derive(Debug, Clone)]
pub struct RawItem {
    /// Line where the record starts.
    pub line: u64,
    /// The record.
    pub body: RawBody,
}

fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, ReadError> {
    let err = |e: std::io::Error| ReadError { path: path.to_path_buf(), message: e.to_string() };
    let file = File::open(path).map_err(err)?;
    let inner: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)))
    } else {
        Box::new(file)
    };
    let mut r = BufReader::with_capacity(1 << 18, inner);
    // Skip a UTF-8 byte order mark; it changes no line number.
    let buf = r.fill_buf().map_err(err)?;
    if buf.starts_with(b"\xEF\xBB\xBF") {
        r.consume(3);
    }
    Ok(Box::new(r))
}

/// Re-serialises CSV fields as one CSV line (the raw text of a rejected row).
pub fn csv_text(fields: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let _ = w.write_record(fields);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end_matches('\n').to_string()
}

/// Reads a file of `format`, calling `on_header` once for CSV and `on_batch`
/// for each batch of up to [`BATCH`] records, in file order.
pub fn read_file(
    path: &Path,
    format: Format,
    mut on_header: impl FnMut(Header),
    mut on_batch: impl FnMut(Vec<RawItem>),
) -> Result<(), ReadError> {
    let input = open(path)?;
    let err = |m: String| ReadError { path: path.to_path_buf(), message: m };
    match format {
        Format::Csv => {
            let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input);
            let mut rec = csv::ByteRecord::new();
            let header_len = match rdr.read_byte_record(&mut rec) {
                Ok(false) => {
                    on_header(Header::default());
                    return Ok(());
                }
                Ok(true) => {
                    let names: Vec<String> = rec.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
                    on_header(Header::new(names.iter().map(String::as_str)));
                    rec.len()
                }
                Err(e) => return Err(err(format!("bad CSV header: {e}"))),
            };
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                match rdr.read_byte_record(&mut rec) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => return Err(err(format!("CSV error: {e}"))),
                }
                let line = rec.position().map_or(0, |p| p.line());
                // A fully blank line between rows is not a record.
                if rec.len() == 1 && rec.get(0).is_some_and(|f| f.is_empty()) {
                    continue;
                }
                let body = if rec.len() != header_len {
                    RawBody::Bad(
                        Reject::new(
                            RejectReason::BadRow,
                            format!("row has {} fields, the header has {header_len}", rec.len()),
                        ),
                        csv_text(rec.iter()),
                    )
                } else {
                    match csv::StringRecord::from_byte_record(rec.clone()) {
                        Ok(r) => RawBody::Csv(r),
                        Err(_) => RawBody::Bad(
                            Reject::new(RejectReason::BadEncoding, "row is not valid UTF-8"),
                            csv_text(rec.iter()),
                        ),
                    }
                };
                batch.push(RawItem { line, body });
                if batch.len() == BATCH {
                    on_batch(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            }
            if !batch.is_empty() {
                on_batch(batch);
            }
        }
        Format::Jsonl => {
            let mut input = input;
            let mut buf = Vec::with_capacity(1024);
            let mut line = 0u64;
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                buf.clear();
                let n = input.read_until(b'\n', &mut buf).map_err(|e| err(e.to_string()))?;
                if n == 0 {
                    break;
                }
                line += 1;
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let body = match std::str::from_utf8(&buf) {
                    Ok(s) => RawBody::Json(s.to_string()),
                    Err(_) => RawBody::Bad(
                        Reject::new(RejectReason::BadEncoding, "line is not valid UTF-8"),
                        String::from_utf8_lossy(&buf).into_owned(),
                    ),
                };
                batch.push(RawItem { line, body });
                if batch.len() == BATCH {
                    on_batch(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            }
            if !batch.is_empty() {
                on_batch(batch);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read(path: &Path, format: Format) -> (Header, Vec<RawItem>) {
        let mut header = Header::default();
        let mut items = Vec::new();
        read_file(path, format, |h| header = h, |b| items.extend(b)).unwrap();
        (header, items)
    }

    #[test]
    fn csv_lines_count_physical_lines_through_bom_crlf_and_quoted_newlines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        std::fs::write(&p, "\u{feff}id,note\r\n1,plain\r\n2,\"two\r\nlines, and \"\"quotes\"\"\"\r\n3,x\r\n4\r\n").unwrap();
        let (h, items) = read(&p, Format::Csv);
        assert!(h.has("id"));
        let lines: Vec<u64> = items.iter().map(|i| i.line).collect();
        assert_eq!(lines, [2, 3, 5, 6]);
        match &items[1].body {
            RawBody::Csv(r) => assert_eq!(&r[1], "two\r\nlines, and \"quotes\""),
            other => panic!("{other:?}"),
        }
        match &items[3].body {
            RawBody::Bad(r, raw) => {
                assert_eq!(r.reason, RejectReason::BadRow);
                assert_eq!(raw, "4");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gzip_jsonl_counts_blank_lines_and_skips_them() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}\n\n  \n{\"a\":2}\r\n").unwrap();
        gz.finish().unwrap();
        let (_, items) = read(&p, Format::Jsonl);
        let got: Vec<(u64, String)> = items
            .into_iter()
            .map(|i| match i.body {
                RawBody::Json(s) => (i.line, s),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, [(1, "{\"a\":1}".to_string()), (4, "{\"a\":2}".to_string())]);
    }

    #[test]
    fn header_only_csv_has_no_records() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        std::fs::write(&p, "id,total\n").unwrap();
        assert!(read(&p, Format::Csv).1.is_empty());
        std::fs::write(&p, "").unwrap();
        assert!(read(&p, Format::Csv).1.is_empty());
    }

    #[test]
    fn a_truncated_gzip_is_a_file_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b"{\"a\":1}\n".repeat(1000)).unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_file(&p, Format::Jsonl, |_| {}, |_| {}).unwrap_err();
        assert!(err.to_string().contains("a.jsonl.gz"));
    }
}
