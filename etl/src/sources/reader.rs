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

/// A file that cannot be read as an input file: the run stops (these are
/// not bad records, which are rejected one by one).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening, decompressing or reading failed (the OS or gzip error is the source).
    #[error("cannot read input file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The CSV header is not valid UTF-8.
    #[error("input file {path}: the CSV header is not valid UTF-8: save the file as UTF-8")]
    HeaderEncoding {
        /// The file.
        path: PathBuf,
    },
    /// The CSV header names a column twice, so which one holds the value is unknown.
    #[error(
        "input file {path}: the CSV header names column {column:?} twice (columns {first} and {second}): remove or rename one"
    )]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The column name, trimmed and lower-cased.
        column: String,
        /// Its first position (1-based).
        first: usize,
        /// Its second position (1-based).
        second: usize,
    },
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
    let err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
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
    skip_bom(BufReader::with_capacity(1 << 18, inner))
        .map(|r| Box::new(r) as Box<dyn BufRead + Send>)
        .map_err(err)
}

/// Skips a UTF-8 byte order mark; it changes no line number.
fn skip_bom<R: BufRead>(mut r: R) -> std::io::Result<R> {
    if r.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        r.consume(3);
    }
    Ok(r)
}

/// Where a CSV reader is within a record. RFC 4180 as the `csv` crate (and
/// DuckDB) read it: a quote opens a quoted field only at the start of a
/// field; anywhere else it is a literal character (inch marks, nicknames such
/// as `Dwayne "The Rock"`), and after a closing quote the rest of the field
/// is literal too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// At the start of a field.
    FieldStart,
    /// In a field that did not start with a quote.
    Unquoted,
    /// Inside quotes (commas and line ends are content).
    Quoted,
    /// Just after a quote inside quotes: it closed the field, unless the
    /// next byte is a quote too (a doubled quote is one literal quote).
    QuoteInQuoted,
}

/// What one byte of a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Byte {
    /// Part of the field's value.
    Content,
    /// A quote that is not part of the value.
    Quote,
    /// The comma ending a field.
    Comma,
}

impl Quoting {
    /// The state after `b`, and what `b` is.
    fn step(self, b: u8) -> (Quoting, Byte) {
        use Quoting::*;
        match (self, b) {
            (FieldStart, b'"') => (Quoted, Byte::Quote),
            (FieldStart | Unquoted | QuoteInQuoted, b',') => (FieldStart, Byte::Comma),
            (FieldStart | Unquoted, _) => (Unquoted, Byte::Content),
            (Quoted, b'"') => (QuoteInQuoted, Byte::Quote),
            (Quoted, _) => (Quoted, Byte::Content),
            (QuoteInQuoted, b'"') => (Quoted, Byte::Content),
            (QuoteInQuoted, _) => (Unquoted, Byte::Content),
        }
    }
}

/// Physical lines joined into CSV records: a record ends at the first line
/// end that is not inside a quoted field.
struct CsvFramer<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
}

/// One framed CSV record.
struct Framed<'a> {
    /// The physical line it starts on.
    line: u64,
    /// Its text without the final line end.
    text: &'a [u8],
    /// Whether it holds a quote at all (else its fields are the text between commas).
    quoted: bool,
}

impl<R: BufRead> CsvFramer<R> {
    fn new(input: R) -> Self {
        CsvFramer {
            input,
            line: 0,
            buf: Vec::with_capacity(1024),
        }
    }

    /// The next non-blank record; `None` at the end of the input.
    fn next_record(&mut self) -> std::io::Result<Option<Framed<'_>>> {
        loop {
            self.buf.clear();
            let start = self.line + 1;
            let mut state = Quoting::FieldStart;
            let mut quoted = false;
            loop {
                let from = self.buf.len();
                let n = self.input.read_until(b'\n', &mut self.buf)?;
                if n == 0 {
                    break;
                }
                self.line += 1;
                let new = &self.buf[from..];
                // Most lines hold no quote and start outside quotes: they are
                // a whole record, without stepping through their bytes.
                if state != Quoting::Quoted && !new.contains(&b'"') {
                    break;
                }
                quoted = true;
                // A line end inside quotes is content, anywhere else it ends the record.
                state = new.iter().fold(state, |s, &b| s.step(b).0);
                if state != Quoting::Quoted {
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
                return Ok(Some(Framed {
                    line: start,
                    text: &self.buf,
                    quoted,
                }));
            }
        }
    }
}

/// Splits one CSV record into `out`, using `field` as scratch space. Returns
/// false when a quoted field is left open (the record is malformed).
fn split_fields(text: &str, quoted: bool, out: &mut csv::StringRecord, field: &mut String) -> bool {
    out.clear();
    if !quoted {
        for f in text.split(',') {
            out.push_field(f);
        }
        return true;
    }
    field.clear();
    let mut state = Quoting::FieldStart;
    // Start of the current run of content bytes. Runs end only at ASCII
    // quotes and commas, so every slice below is on character boundaries.
    let mut run = 0;
    for (i, b) in text.bytes().enumerate() {
        let (next, kind) = state.step(b);
        if kind != Byte::Content {
            field.push_str(&text[run..i]);
            run = i + 1;
            if kind == Byte::Comma {
                out.push_field(field);
                field.clear();
            }
        }
        state = next;
    }
    field.push_str(&text[run..]);
    out.push_field(field);
    state != Quoting::Quoted
}

/// Reads a file of `format`, calling `on_batch` with the CSV header (empty for
/// JSONL) and each batch of up to [`BATCH`] records, in file order. The
/// batch's vector is cleared and refilled for the next batch (`on_batch`
/// may drain it): one allocation a file, not one a batch.
pub fn read_file(
    path: &Path,
    format: Format,
    mut on_batch: impl FnMut(&Header, &mut Vec<RawItem>),
) -> Result<(), ReadError> {
    let input = open(path)?;
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    match format {
        Format::Csv => {
            let mut lines = CsvFramer::new(input);
            let mut header: Option<usize> = None;
            let mut names = Header::default();
            let mut batch = Vec::with_capacity(BATCH);
            let mut fields = csv::StringRecord::new();
            let mut scratch = String::new();
            while let Some(Framed { line, text, quoted }) = lines.next_record().map_err(io)? {
                let Ok(text) = std::str::from_utf8(text) else {
                    if header.is_none() {
                        return Err(ReadError::HeaderEncoding {
                            path: path.to_path_buf(),
                        });
                    }
                    batch.push(RawItem {
                        line,
                        body: RawBody::Bad(
                            Reject::new(RejectReason::BadEncoding, "row is not valid UTF-8"),
                            String::from_utf8_lossy(text).into_owned(),
                        ),
                    });
                    continue;
                };
                let balanced = split_fields(text, quoted, &mut fields, &mut scratch);
                let Some(header_len) = header else {
                    header = Some(fields.len());
                    names = Header::new(fields.iter()).map_err(|d| ReadError::DuplicateColumn {
                        path: path.to_path_buf(),
                        column: d.column,
                        first: d.first,
                        second: d.second,
                    })?;
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
                    on_batch(&names, &mut batch);
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                on_batch(&names, &mut batch);
            }
        }
        Format::Jsonl => {
            let mut input = input;
            let mut line = 0u64;
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                // A fresh buffer per line becomes the line's String without a copy.
                let mut buf = Vec::with_capacity(256);
                let n = input.read_until(b'\n', &mut buf).map_err(io)?;
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
                    on_batch(&Header::default(), &mut batch);
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                on_batch(&Header::default(), &mut batch);
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
            items.append(b)
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
    fn a_lone_quote_in_an_unquoted_field_swallows_no_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("crm.csv");
        std::fs::write(
            &p,
            "customer_id,first_name,last_name\n\
             C1,Dwayne \"The Rock\",Johnson\n\
             C2,Ann,Lee\n\
             C3,Pat,O\"Neil\n\
             C4,Bo,\"Chen, Jr.\"\n\
             C5,Cy,Smith\n",
        )
        .unwrap();
        let (_, items) = read(&p, Format::Csv);
        let got: Vec<(u64, String, String)> = items
            .into_iter()
            .map(|i| match i.body {
                RawBody::Csv(r) => (i.line, r[0].to_string(), r[2].to_string()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (2, "C1".into(), "Johnson".into()),
                (3, "C2".into(), "Lee".into()),
                (4, "C3".into(), "O\"Neil".into()),
                (5, "C4".into(), "Chen, Jr.".into()),
                (6, "C5".into(), "Smith".into()),
            ]
        );
    }

    #[test]
    fn a_quote_never_closed_is_one_bad_row_with_its_raw_text() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        std::fs::write(&p, "id,note\n1,ok\n2,\"open\n3,x\n").unwrap();
        let (_, items) = read(&p, Format::Csv);
        assert_eq!(items.len(), 2);
        match &items[1].body {
            RawBody::Bad(r, raw) => {
                assert_eq!((items[1].line, r.reason), (3, RejectReason::BadRow));
                assert_eq!(raw, "2,\"open\n3,x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_header_naming_a_column_twice_is_a_file_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("crm.csv");
        std::fs::write(&p, "customer_id,email,Email\nC1,a@b.c,x@y.z\n").unwrap();
        let err = read_file(&p, Format::Csv, |_, _| {}).unwrap_err();
        assert!(matches!(err, ReadError::DuplicateColumn { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("crm.csv") && msg.contains("\"email\""),
            "{msg}"
        );
    }

    #[test]
    fn read_errors_keep_the_os_error_as_their_source() {
        let err = read_file(Path::new("/nonexistent/a.csv"), Format::Csv, |_, _| {}).unwrap_err();
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        // The message names the file; the OS error is printed once, from the source.
        assert!(!err.to_string().contains("os error"), "{err}");
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

    fn split(text: &str) -> (bool, Vec<String>) {
        let mut r = csv::StringRecord::new();
        let closed = split_fields(text, text.contains('"'), &mut r, &mut String::new());
        (closed, r.iter().map(str::to_string).collect())
    }

    #[test]
    fn fields_follow_rfc_4180() {
        assert_eq!(
            split(r#"a,"b,c","d ""q""",,"#),
            (
                true,
                ["a", "b,c", "d \"q\"", "", ""].map(String::from).to_vec()
            )
        );
        assert!(!split(r#"a,"open"#).0);
        assert_eq!(split("x,,y z,").1, ["x", "", "y z", ""]);
        assert_eq!(split("").1, [""]);
    }

    #[test]
    fn a_quote_inside_a_field_is_a_literal_character() {
        assert_eq!(
            split(r#"C1,Dwayne "The Rock",12" pizza,O"Neil"#),
            (
                true,
                ["C1", "Dwayne \"The Rock\"", "12\" pizza", "O\"Neil"]
                    .map(String::from)
                    .to_vec()
            )
        );
        // After a closing quote the rest of the field is literal.
        assert_eq!(split(r#""ab"c"d,e"#).1, ["abc\"d", "e"]);
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        std::fs::write(&p, "id,n\n1,a\n\n3,c\n").unwrap();
        let mut items = Vec::new();
        read_file(&p, Format::Csv, |_, b| items.append(b)).unwrap();
        assert_eq!(items.iter().map(|i| i.line).collect::<Vec<_>>(), [2, 4]);
    }
}

#[cfg(test)]
mod framing_props {
    use super::*;
    use proptest::prelude::*;

    /// Our framing of `bytes`: (start line, fields, quotes closed) per record.
    fn ours(bytes: &[u8]) -> Vec<(u64, Vec<String>, bool)> {
        let mut f = CsvFramer::new(skip_bom(bytes).unwrap());
        let (mut rec, mut scratch) = (csv::StringRecord::new(), String::new());
        let mut out = Vec::new();
        while let Some(r) = f.next_record().unwrap() {
            let text = std::str::from_utf8(r.text).unwrap();
            let closed = split_fields(text, r.quoted, &mut rec, &mut scratch);
            out.push((r.line, rec.iter().map(String::from).collect(), closed));
        }
        out
    }

    /// The `csv` crate's reading of `bytes`, with the physical start line of
    /// each record (the crate reports where it started reading, before the
    /// blank lines it skips).
    fn theirs(bytes: &[u8]) -> Vec<(u64, Vec<String>)> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let mut out = Vec::new();
        for rec in r.records() {
            let rec = rec.unwrap();
            let pos = rec.position().unwrap();
            let blank = bytes[pos.byte() as usize..]
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n' | 0xEF | 0xBB | 0xBF))
                .filter(|&&b| b == b'\n')
                .count() as u64;
            out.push((pos.line() + blank, rec.iter().map(String::from).collect()));
        }
        out
    }

    /// CSV-ish text: quotes anywhere, commas, LF and CRLF line ends (inside
    /// quotes too), blank lines, non-ASCII text, and an optional BOM.
    fn csv_text() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            4 => Just("a"),
            1 => Just("é"),
            1 => Just(" "),
            3 => Just(","),
            3 => Just("\""),
            2 => Just("\n"),
            2 => Just("\r\n"),
        ];
        (any::<bool>(), prop::collection::vec(token, 0..60)).prop_map(|(bom, tokens)| {
            let mut text = if bom {
                "\u{feff}".to_string()
            } else {
                String::new()
            };
            text.extend(tokens);
            text.into_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn csv_framing_matches_the_csv_crate(bytes in csv_text()) {
            let ours = ours(&bytes);
            let theirs = theirs(&bytes);
            prop_assert_eq!(ours.len(), theirs.len());
            for (i, ((line, fields, closed), (their_line, their_fields))) in
                ours.iter().zip(&theirs).enumerate()
            {
                prop_assert_eq!(line, their_line);
                if *closed {
                    prop_assert_eq!(fields, their_fields);
                } else {
                    // A quote never closed runs to the end of the file: the
                    // csv crate takes what it holds, we reject the record.
                    prop_assert_eq!(i, ours.len() - 1);
                }
            }
        }
    }
}
