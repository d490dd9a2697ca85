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
    let err = |e: std::io::Error| ReadError {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(err)?;
    let inner: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            file,
        )))
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

/// Physical lines joined into CSV records: a record ends at a line end outside
/// quotes (RFC 4180 doubles quotes inside quoted fields, so parity decides).
struct LineReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    /// The next non-blank record: the line it starts on and its text without
    /// the final line end. `None` at the end of the input.
    fn next_record(&mut self) -> std::io::Result<Option<(u64, &[u8])>> {
        loop {
            self.buf.clear();
            let start = self.line + 1;
            let mut quotes = 0usize;
            loop {
                let from = self.buf.len();
                let n = self.input.read_until(b'\n', &mut self.buf)?;
                if n == 0 {
                    break;
                }
                self.line += 1;
                quotes += self.buf[from..].iter().filter(|&&b| b == b'"').count();
                if quotes.is_multiple_of(2) {
                    break;
                }
            }
            if self.buf.is_empty() {
                return Ok(None);
            }
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if !self.buf.is_empty() {
                return Ok(Some((start, &self.buf)));
            }
        }
    }
}

/// Splits one CSV record into `out`. Returns false when a quoted field is
/// left open (the record is malformed).
fn split_fields(text: &str, out: &mut csv::StringRecord) -> bool {
    out.clear();
    // Most rows quote nothing: their fields are the text between commas.
    if !text.contains('"') {
        for f in text.split(',') {
            out.push_field(f);
        }
        return true;
    }
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else if c == ',' {
            out.push_field(&field);
            field.clear();
            at_start = true;
            continue;
        } else if c == '"' && at_start {
            in_quotes = true;
        } else {
            field.push(c);
        }
        at_start = false;
    }
    out.push_field(&field);
    !in_quotes
}

/// Reads a file of `format`, calling `on_batch` with the CSV header (empty for
/// JSONL) and each batch of up to [`BATCH`] records, in file order.
pub fn read_file(
    path: &Path,
    format: Format,
    mut on_batch: impl FnMut(&Header, Vec<RawItem>),
) -> Result<(), ReadError> {
    let input = open(path)?;
    let err = |m: String| ReadError {
        path: path.to_path_buf(),
        message: m,
    };
    match format {
        Format::Csv => {
            let mut lines = LineReader {
                input,
                line: 0,
                buf: Vec::with_capacity(1024),
            };
            let mut header: Option<usize> = None;
            let mut names = Header::default();
            let mut batch = Vec::with_capacity(BATCH);
            let mut fields = csv::StringRecord::new();
            while let Some((line, text)) = lines.next_record().map_err(|e| err(e.to_string()))? {
                let Ok(text) = std::str::from_utf8(text) else {
                    let raw = String::from_utf8_lossy(text).into_owned();
                    if header.is_none() {
                        return Err(err("the CSV header is not valid UTF-8".into()));
                    }
                    batch.push(RawItem {
                        line,
                        body: RawBody::Bad(
                            Reject::new(RejectReason::BadEncoding, "row is not valid UTF-8"),
                            raw,
                        ),
                    });
                    continue;
                };
                let balanced = split_fields(text, &mut fields);
                let Some(header_len) = header else {
                    header = Some(fields.len());
                    names = Header::new(fields.iter());
                    continue;
                };
                let body = if !balanced {
                    RawBody::Bad(
                        Reject::new(RejectReason::BadRow, "a quoted field is never closed"),
                        text.to_string(),
                    )
                } else if fields.len() != header_len {
                    RawBody::Bad(
                        Reject::new(
                            RejectReason::BadRow,
                            format!(
                                "row has {} fields, the header has {header_len}",
                                fields.len()
                            ),
                        ),
                        text.to_string(),
                    )
                } else {
                    RawBody::Csv(fields.clone())
                };
                batch.push(RawItem { line, body });
                if batch.len() == BATCH {
                    on_batch(
                        &names,
                        std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
                    );
                }
            }
            if !batch.is_empty() {
                on_batch(&names, batch);
            }
        }
        Format::Jsonl => {
            let mut input = input;
            let mut line = 0u64;
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                // A fresh buffer per line becomes the line's String without a copy.
                let mut buf = Vec::with_capacity(256);
                let n = input
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| err(e.to_string()))?;
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
                let body = match String::from_utf8(buf) {
                    Ok(s) => RawBody::Json(s),
                    Err(e) => RawBody::Bad(
                        Reject::new(RejectReason::BadEncoding, "line is not valid UTF-8"),
                        String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    ),
                };
                batch.push(RawItem { line, body });
                if batch.len() == BATCH {
                    on_batch(
                        &Header::default(),
                        std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
                    );
                }
            }
            if !batch.is_empty() {
                on_batch(&Header::default(), batch);
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
        read_file(path, format, |h, b| {
            header = h.clone();
            items.extend(b)
        })
        .unwrap();
        (header, items)
    }

    #[test]
    fn csv_lines_count_physical_lines_through_bom_crlf_and_quoted_newlines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        std::fs::write(
            &p,
            "\u{feff}id,note\r\n1,plain\r\n2,\"two\r\nlines, and \"\"quotes\"\"\"\r\n3,x\r\n4\r\n",
        )
        .unwrap();
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
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::fast(),
        );
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
        assert_eq!(
            got,
            [(1, "{\"a\":1}".to_string()), (4, "{\"a\":2}".to_string())]
        );
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
        let err = read_file(&p, Format::Jsonl, |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("a.jsonl.gz"));
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn fields_follow_rfc_4180() {
        let mut r = csv::StringRecord::new();
        assert!(split_fields(r#"a,"b,c","d ""q""",,"#, &mut r));
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            ["a", "b,c", "d \"q\"", "", ""]
        );
        assert!(!split_fields(r#"a,"open"#, &mut r));
        assert!(split_fields("x,,y z,", &mut r));
        assert_eq!(r.iter().collect::<Vec<_>>(), ["x", "", "y z", ""]);
        assert!(split_fields("", &mut r));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        std::fs::write(&p, "id,n\n1,a\n\n3,c\n").unwrap();
        let mut items = Vec::new();
        read_file(&p, Format::Csv, |_, b| items.extend(b)).unwrap();
        assert_eq!(items.iter().map(|i| i.line).collect::<Vec<_>>(), [2, 4]);
    }
}
