//! The `events/` dataset: engagement events with the keys they came with,
//! Hive-partitioned by month of `ts` (UTC) as `month=YYYY-MM/part-NNNNN.parquet`,
//! sorted by (`ts`, `event_id`) (see `months`). Their customer is their key
//! set's, in `_state/event_keysets.parquet`: a claim never rewrites events.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rayon::prelude::*;

use super::months::{self, Unchanged, Written};
use super::parquet_io::{
    self, Columns, UTC, WriteStats, opt_str, opt_str_ref, opt_utf8_array, part_jobs,
    timestamp_array, utf8_array, write_parts, writer_properties_with,
};
use super::{StoredEvent, WarehouseError};
use crate::consolidate::events::{
    Event, EventLog, KeySet, KnownEvents, Strings, id_bytes, parse_hex_id, parse_record_key,
};
use crate::record::Keys;
use rustc_hash::FxHashMap;

/// Dataset name used in errors.
pub const DATASET: &str = "events";
/// Columns with few distinct values, dictionary-encoded.
const DICTIONARY_COLUMNS: &[&str] = &["type", "source_file"];
/// Columns with page-level statistics (rows are sorted by time).
const PAGE_INDEX_COLUMNS: &[&str] = &["ts"];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("event_id", false),
        text("key_customer_id", true),
        text("key_email", true),
        text("key_phone", true),
        text("type", false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
            false,
        ),
        text("record_key", false),
        text("source_file", false),
    ]))
});

/// The Arrow schema of an events file.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

fn build<'a, I>(rows: I) -> RecordBatch
where
    I: Iterator<Item = &'a StoredEvent> + Clone,
{
    let r = rows;
    let columns: Vec<ArrayRef> = vec![
        utf8_array(r.clone().map(|e| &*e.event_id)),
        opt_utf8_array(r.clone().map(|e| e.keys.customer_id.as_deref())),
        opt_utf8_array(r.clone().map(|e| e.keys.email.as_deref())),
        opt_utf8_array(r.clone().map(|e| e.keys.phone.as_deref())),
        utf8_array(r.clone().map(|e| &*e.event_type)),
        timestamp_array(r.clone().map(|e| e.ts)),
        utf8_array(r.clone().map(|e| &*e.record_key)),
        utf8_array(r.map(|e| &*e.source_file)),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Converts rows to one Arrow batch.
pub fn to_batch(rows: &[StoredEvent]) -> RecordBatch {
    build(rows.iter())
}

/// Converts a batch back to rows, checking column types.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<StoredEvent>, WarehouseError> {
    decode(batch, Path::new("<batch>"))
}

fn decode(batch: &RecordBatch, path: &Path) -> Result<Vec<StoredEvent>, WarehouseError> {
    let c = Columns::new(batch, path, DATASET);
    let event_id = c.utf8("event_id", true)?;
    let key_customer_id = c.utf8("key_customer_id", false)?;
    let key_email = c.utf8("key_email", false)?;
    let key_phone = c.utf8("key_phone", false)?;
    let event_type = c.utf8("type", true)?;
    let ts = c.timestamp_us("ts", true)?;
    let record_key = c.utf8("record_key", true)?;
    let source_file = c.utf8("source_file", true)?;
    Ok((0..batch.num_rows())
        .map(|i| StoredEvent {
            event_id: event_id.value(i).into(),
            keys: Keys {
                customer_id: opt_str(key_customer_id, i),
                email: opt_str(key_email, i),
                phone: opt_str(key_phone, i),
            },
            event_type: event_type.value(i).into(),
            ts: ts.value(i),
            record_key: record_key.value(i).into(),
            source_file: source_file.value(i).into(),
        })
        .collect())
}

/// Writes `rows` under `dir` as `month=YYYY-MM/part-NNNNN.parquet` (more
/// parts past [`parquet_io::MAX_PART_ROWS`]), sorted by (`ts`, `event_id`).
pub fn write(dir: &Path, rows: &[StoredEvent]) -> Result<WriteStats, WarehouseError> {
    let mut sorted: Vec<&StoredEvent> = rows.iter().collect();
    sorted.par_sort_unstable_by(|a, b| (a.ts, &a.event_id).cmp(&(b.ts, &b.event_id)));
    write_months(
        dir,
        &sorted,
        |e| e.ts,
        None,
        |rows| build(rows.iter().copied()),
    )
    .map(|w| w.stats)
}

/// Writes rows sorted by time by month (see [`months::write`]); no events at
/// all still make one schema-only part, so the folder reads as a dataset.
fn write_months<T: Sync>(
    dir: &Path,
    sorted: &[&T],
    at: impl Fn(&T) -> i64,
    unchanged: Option<Unchanged<'_>>,
    build: impl Fn(&[&T]) -> RecordBatch + Sync,
) -> Result<Written, WarehouseError> {
    let props = writer_properties_with(DICTIONARY_COLUMNS, PAGE_INDEX_COLUMNS);
    if sorted.is_empty() && unchanged.is_none() {
        let stats = write_parts(&part_jobs(dir, sorted), &schema(), &props, build)?;
        return Ok(Written {
            stats,
            ..Written::default()
        });
    }
    let layout = months::Layout {
        schema: &schema(),
        props: &props,
        // Events are written a night at a time and never rewritten in part.
        parts_per_month: 1,
    };
    months::write(dir, sorted, at, unchanged, layout, build)
}

/// Reads every event under `dir`; a missing folder has none.
pub fn read(dir: &Path) -> Result<Vec<StoredEvent>, WarehouseError> {
    parquet_io::read_rows(dir, decode)
}

/// Calls `f(customer_id, n)` with the number of events of the warehouse
/// version `version` in `from <= ts < to` (microseconds) that belong to each
/// customer (possibly several calls per customer, one per key set); the
/// customer is its key set's (`_state/event_keysets`). Reads only the keys
/// and `ts` of the row groups whose `ts` statistics overlap the window
/// (files are sorted by `ts`, so a recent window reads the newest few), the
/// files in parallel, then looks up only the key sets it met.
pub fn count_in_window(
    version: &Path,
    from: i64,
    to: i64,
    mut f: impl FnMut(&str, u64),
) -> Result<(), WarehouseError> {
    let state = version.join(super::state::DIR);
    let events = version.join("events");
    if !state.join(super::event_keysets::FILE).exists() {
        // An earlier cvm's version: its events name their customer.
        let columns = ["customer_id", "ts"];
        let counts = in_window(&events, &columns, from, to, |c, rows, counts| {
            let customer = c.utf8("customer_id", false)?;
            let ts = c.timestamp_us("ts", true)?;
            for i in rows.filter(|&i| customer.is_valid(i) && (from..to).contains(&ts.value(i))) {
                add(counts, customer.value(i));
            }
            Ok(())
        })?;
        counts.iter().for_each(|(c, &n)| f(c, n));
        return Ok(());
    }
    let columns = ["key_customer_id", "key_email", "key_phone", "ts"];
    let counts = in_window(&events, &columns, from, to, |c, rows, counts| {
        let keys = [
            c.utf8("key_customer_id", false)?,
            c.utf8("key_email", false)?,
            c.utf8("key_phone", false)?,
        ];
        let ts = c.timestamp_us("ts", true)?;
        let mut text = String::new();
        for i in rows.filter(|&i| (from..to).contains(&ts.value(i))) {
            super::event_keysets::key_text(keys.map(|a| opt_str_ref(a, i)), &mut text);
            add(counts, &text);
        }
        Ok(())
    })?;
    let mut text = String::new();
    super::event_keysets::for_each(&state, |keys, customer, _, _| {
        super::event_keysets::key_text(keys, &mut text);
        if let (Some(customer), Some(&n)) = (customer, counts.get(text.as_str())) {
            f(customer, n);
        }
        Ok(())
    })?;
    Ok(())
}

/// Counts one more event of `key`.
fn add(counts: &mut FxHashMap<Box<str>, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.into(), 1);
        }
    }
}

/// Counts, with `each`, the events of every batch of `columns` of the files
/// under `dir` whose row groups' `ts` statistics overlap `from..to`, files
/// in parallel, each into a table of its own; returns them summed.
fn in_window(
    dir: &Path,
    columns: &[&str],
    from: i64,
    to: i64,
    each: impl Fn(
        &Columns<'_>,
        std::ops::Range<usize>,
        &mut FxHashMap<Box<str>, u64>,
    ) -> Result<(), WarehouseError>
    + Sync,
) -> Result<FxHashMap<Box<str>, u64>, WarehouseError> {
    let tables = parquet_io::list_parquet_files(dir)?
        .par_iter()
        .map(|path| {
            let mut counts = FxHashMap::default();
            let window = Some(("ts", from, to));
            let Some(reader) = parquet_io::open_projected(path, columns, window)? else {
                return Ok(counts);
            };
            for batch in reader {
                let batch = batch.map_err(|e| WarehouseError::Format {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                each(
                    &Columns::new(&batch, path, DATASET),
                    0..batch.num_rows(),
                    &mut counts,
                )?;
            }
            Ok(counts)
        })
        .collect::<Result<Vec<_>, WarehouseError>>()?;
    let mut all = FxHashMap::default();
    for table in tables {
        if all.is_empty() {
            all = table;
            continue;
        }
        for (k, n) in table {
            *all.entry(k).or_insert(0) += n;
        }
    }
    Ok(all)
}

/// Reads every event under `dir` into `log` (after the events it holds).
/// Record keys and event ids must have the form cvm writes (`ev:<16 hex>`).
pub fn read_log(dir: &Path, log: &mut EventLog) -> Result<(), WarehouseError> {
    // Files are decoded in parallel, each into a log of its own (the lookups
    // of millions of keys in the text table are most of the work), a few at a
    // time so that only as many private tables as threads exist at once;
    // appended in file order, which re-indexes each distinct text once.
    let files = parquet_io::list_parquet_files(dir)?;
    for group in files.chunks(rayon::current_num_threads().max(1)) {
        let logs = group
            .par_iter()
            .map(|f| {
                let mut own = EventLog::default();
                read_file_log(f, &mut own).map(|()| own)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for own in logs {
            log.append_stored(own);
        }
    }
    Ok(())
}

/// Adds to `known` the record keys of the events under `dir` that are among
/// `wanted` (the drop's), reading nothing else: what finding a re-delivered
/// event needs of a month that is not written again. Only those: over a
/// long history a month holds millions, a drop's rarely any.
pub fn read_known(
    dir: &Path,
    wanted: &KnownEvents,
    known: &mut KnownEvents,
) -> Result<(), WarehouseError> {
    parquet_io::for_each_projected(dir, &["record_key"], DATASET, |c, rows| {
        let record_key = c.utf8("record_key", true)?;
        for i in 0..rows {
            let rk = record_key.value(i);
            let key = parse_record_key(rk).ok_or_else(|| {
                c.error(format!("column \"record_key\" has invalid value {rk:?}"))
            })?;
            if wanted.contains(&key) {
                known.insert(key);
            }
        }
        Ok(())
    })
}

/// Reads the events of one file (or folder) into `log`.
fn read_file_log(path: &Path, log: &mut EventLog) -> Result<(), WarehouseError> {
    let mut few = FewStrings::default();
    for item in parquet_io::read_batches(path)? {
        let (path, batch) = item?;
        let c = Columns::new(&batch, &path, DATASET);
        let event_id = c.utf8("event_id", true)?;
        let keys = [
            c.utf8("key_customer_id", false)?,
            c.utf8("key_email", false)?,
            c.utf8("key_phone", false)?,
        ];
        let event_type = c.utf8("type", true)?;
        let ts = c.timestamp_us("ts", true)?;
        let record_key = c.utf8("record_key", true)?;
        let source_file = c.utf8("source_file", true)?;
        let bad = |col: &str, v: &str| c.error(format!("column {col:?} has invalid value {v:?}"));
        log.start_part(batch.num_rows());
        for i in 0..batch.num_rows() {
            let id = event_id.value(i);
            let id = parse_hex_id(id).ok_or_else(|| bad("event_id", id))?;
            let rk = record_key.value(i);
            let (digest, n) = parse_record_key(rk).ok_or_else(|| bad("record_key", rk))?;
            let [kc, ke, kp] = keys.map(|a| opt_str_ref(a, i));
            let keys = log.keyset(kc, ke, kp);
            let kind = few.intern(&mut log.text, event_type.value(i));
            let file = few.intern(&mut log.text, source_file.value(i));
            log.push(Event {
                ts: ts.value(i),
                id,
                digest,
                n,
                keys,
                kind,
                file,
            });
        }
    }
    Ok(())
}

/// The few distinct values of a column (types, source files) mapped to their
/// index in a text table of millions of keys: a lookup in a table that stays
/// in cache instead of one that does not.
#[derive(Default)]
struct FewStrings(rustc_hash::FxHashMap<Box<str>, u32>);

impl FewStrings {
    fn intern(&mut self, text: &mut Strings, v: &str) -> u32 {
        if let Some(&i) = self.0.get(v) {
            return i;
        }
        let i = text.intern(v);
        self.0.insert(v.into(), i);
        i
    }
}

/// Writes the events of `log` like [`write`], given in the order they are
/// written (see [`EventLog::ordered`]). With `unchanged`, only the changed
/// months are written, the others linked from the previous version.
pub fn write_log(
    dir: &Path,
    log: &EventLog,
    ordered: &[&Event],
    unchanged: Option<Unchanged<'_>>,
) -> Result<Written, WarehouseError> {
    let changed: Vec<&Event>;
    let ordered = match unchanged {
        Some(u) => {
            changed = ordered.iter().copied().filter(|e| u.writes(e.ts)).collect();
            &changed[..]
        }
        None => ordered,
    };
    let text = |i: u32| log.text.get(i);
    write_months(
        dir,
        ordered,
        |e| e.ts,
        unchanged,
        |rows| {
            // Gathered once into a contiguous chunk: the rows are spread over
            // the log's parts, and each column below reads every row again.
            let local: Vec<(Event, KeySet)> = rows
                .iter()
                .map(|e| (**e, log.keysets[e.keys as usize]))
                .collect();
            let r = local.iter().copied();
            let columns: Vec<ArrayRef> = vec![
                hex_array(r.clone().map(|(e, _)| (e.id, None))),
                opt_utf8_array(r.clone().map(|(_, ks)| text(ks[0]))),
                opt_utf8_array(r.clone().map(|(_, ks)| text(ks[1]))),
                opt_utf8_array(r.clone().map(|(_, ks)| text(ks[2]))),
                utf8_array(r.clone().map(|(e, _)| text(e.kind).unwrap_or_default())),
                timestamp_array(r.clone().map(|(e, _)| e.ts)),
                hex_array(r.clone().map(|(e, _)| (e.digest, Some(e.n)))),
                utf8_array(r.map(|(e, _)| text(e.file).unwrap_or_default())),
            ];
            RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
        },
    )
}

/// Event ids (`ev:<hex>`) or, with an occurrence, record keys (`ev:<hex>#n`).
fn hex_array(values: impl ExactSizeIterator<Item = (u64, Option<u32>)>) -> ArrayRef {
    let n = values.len();
    let mut b = StringBuilder::with_capacity(n, n * 24);
    let mut buf = [0u8; 32];
    for (h, occurrence) in values {
        let len = id_bytes(h, occurrence, &mut buf);
        // ASCII by construction.
        b.append_value(std::str::from_utf8(&buf[..len]).unwrap_or_default());
    }
    Arc::new(b.finish())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use crate::consolidate::events::{hex_id, record_key};
    use crate::warehouse::event_keysets::KeysetRow;
    use cvm_shared::identity::stable_hash;

    fn ev(id: &str, ts: i64, customer: Option<&str>) -> StoredEvent {
        StoredEvent {
            event_id: id.into(),
            keys: Keys {
                customer_id: customer.map(Into::into),
                email: Some("émile@exämple.org".into()),
                phone: None,
            },
            event_type: "email_open".into(),
            ts,
            record_key: format!("events/x.csv#{id}").into(),
            source_file: "events/x.csv".into(),
        }
    }

    /// The first occurrence of a line with `digest`, in the run's file 0.
    fn event(ts: i64, digest: u64, keys: u32, kind: u32) -> Event {
        Event {
            ts,
            id: stable_hash(record_key(digest, 1).as_bytes()),
            digest,
            n: 1,
            keys,
            kind,
            file: 0,
        }
    }

    #[test]
    fn round_trips_sorted_by_time_then_id() {
        let d = tempfile::tempdir().unwrap();
        let mut odd = ev("ev:00ff", -5, None);
        odd.event_type = "web_visit 🌐".into();
        odd.keys = Keys {
            customer_id: Some("C-9".into()),
            email: None,
            phone: Some("+4915112345678".into()),
        };
        let rows = vec![
            ev("ev:0b", 1_700_000_000_000_000, Some("C-1")),
            ev("ev:0a", 1_700_000_000_000_000, None),
            odd,
        ];
        let st = write(d.path(), &rows).unwrap();
        // Two months (1969-12, 2023-11), a part each.
        assert_eq!((st.files, st.rows), (2, 3));
        assert!(d.path().join("month=1969-12").is_dir());
        let got = read(d.path()).unwrap();
        let ids: Vec<&str> = got.iter().map(|e| &*e.event_id).collect();
        assert_eq!(ids, ["ev:00ff", "ev:0a", "ev:0b"]);
        assert_eq!(got, vec![rows[2].clone(), rows[1].clone(), rows[0].clone()]);
        assert_eq!(from_batch(&to_batch(&rows)).unwrap(), rows);
    }

    #[test]
    fn a_compact_log_writes_the_same_rows_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let mut log = EventLog::with_files(["events/a.jsonl"]);
        let ks = [
            log.keyset(Some("C-1"), None, None),
            log.keyset(None, Some("x@y.z"), Some("+861")),
        ];
        let kind = log.text.intern("email_open");
        let e = |ts, digest, keys| event(ts, digest, keys, kind);
        let rows = [e(2, 0xa, ks[0]), e(1, 0xb, ks[1])];
        rows.iter().for_each(|r| log.push(*r));
        let st = write_log(d.path(), &log, &log.ordered(), None).unwrap();
        assert_eq!((st.stats.files, st.stats.rows, st.months), (1, 2, 1));
        let got = read(d.path()).unwrap();
        assert_eq!(&*got[0].event_id, hex_id(rows[1].id));
        assert_eq!(&*got[0].record_key, "ev:000000000000000b#1");
        assert_eq!(got[0].keys.phone.as_deref(), Some("+861"));
        assert_eq!(got[0].keys.customer_id, None);
        assert_eq!(got[1].keys.customer_id.as_deref(), Some("C-1"));
        assert_eq!(&*got[1].source_file, "events/a.jsonl");
        let mut back = EventLog::with_files(["events/a.jsonl"]);
        read_log(d.path(), &mut back).unwrap();
        // Indices differ between logs; what they stand for must not.
        let view = |l: &EventLog, e: &Event| {
            let text = |i| l.text.get(i).map(str::to_string);
            (
                e.ts,
                e.id,
                e.digest,
                e.n,
                l.keys(e.keys),
                text(e.kind),
                text(e.file),
            )
        };
        // Read back in time order.
        let want: Vec<_> = [rows[1], rows[0]].iter().map(|e| view(&log, e)).collect();
        let have: Vec<_> = back.iter().map(|e| view(&back, e)).collect();
        assert_eq!(have, want);
        write(d.path(), &got).unwrap();
        let mut bad = got[0].clone();
        bad.record_key = "events/x.csv#1".into();
        write(d.path(), &[bad]).unwrap();
        let err = read_log(d.path(), &mut back).unwrap_err();
        assert!(err.to_string().contains("record_key"), "{err}");
    }

    #[test]
    fn events_of_several_files_read_into_one_log_with_shared_tables() {
        let d = tempfile::tempdir().unwrap();
        // Two part files whose events share a key set and a type but not a source file.
        let mut want = Vec::new();
        for (part, (file, ts)) in [("events/a.jsonl", 5), ("events/b.jsonl", 3)]
            .into_iter()
            .enumerate()
        {
            let mut log = EventLog::with_files([file]);
            let shared = log.keyset(Some("C-1"), Some("x@y.z"), None);
            let own = log.keyset(None, Some(file), None);
            let kind = log.text.intern("email_open");
            for (digest, keys) in [(ts as u64, shared), (ts as u64 + 100, own)] {
                log.push(event(ts, digest, keys, kind));
            }
            let ordered = log.ordered();
            write_log(&d.path().join(format!("p{part}")), &log, &ordered, None).unwrap();
            want.extend(ordered.iter().map(|e| (e.ts, e.id, log.keys(e.keys), file)));
        }
        let mut back = EventLog::with_files(["events/seeded.jsonl"]);
        read_log(d.path(), &mut back).unwrap();
        let have: Vec<_> = back
            .iter()
            .map(|e| {
                let file = back.text.get(e.file).unwrap_or_default().to_string();
                (e.ts, e.id, back.keys(e.keys), file)
            })
            .collect();
        let want: Vec<_> = want
            .into_iter()
            .map(|(ts, id, keys, file)| (ts, id, keys, file.to_string()))
            .collect();
        assert_eq!(
            have, want,
            "every event, in file order, keeps what its indices stand for"
        );
        assert_eq!(back.keysets.len(), 3, "the shared key set is one entry");
        assert_eq!(back.text.get(0), Some("events/seeded.jsonl"));
        let kinds: std::collections::BTreeSet<u32> = back.iter().map(|e| e.kind).collect();
        assert_eq!(kinds.len(), 1);
    }

    #[test]
    fn a_window_counts_events_by_key_set_or_by_the_customer_an_earlier_cvm_wrote() {
        let d = tempfile::tempdir().unwrap();
        let day = 86_400_000_000;
        let rows = [
            ev("ev:1", 10 * day, Some("C-1")),
            ev("ev:2", 20 * day, None),
        ];
        write(&d.path().join("events"), &rows).unwrap();
        let counted = |version: &Path, from: i64, to: i64| {
            let mut seen = Vec::new();
            count_in_window(version, from, to, |c, n| seen.push((c.to_string(), n))).unwrap();
            seen.sort();
            seen
        };
        // This cvm: the customer is the key set's.
        let state = d.path().join(super::super::state::DIR);
        std::fs::create_dir_all(&state).unwrap();
        let keysets = [
            KeysetRow {
                keys: [Some("C-1"), Some("émile@exämple.org"), None],
                customer: Some("C-1"),
                events: 1,
                crm: true,
            },
            KeysetRow {
                keys: [None, Some("émile@exämple.org"), None],
                customer: Some("G-9"),
                events: 1,
                crm: false,
            },
        ];
        super::super::event_keysets::write(&state, &keysets).unwrap();
        let both = vec![("C-1".to_string(), 1), ("G-9".to_string(), 1)];
        assert_eq!(counted(d.path(), 0, 30 * day), both);
        assert_eq!(counted(d.path(), 15 * day, 30 * day), both[1..]);
        assert_eq!(counted(d.path(), 11 * day, 20 * day), []);
        // An earlier cvm's version: no key set table, a customer_id column.
        let old = d.path().join("old");
        let mut fields: Vec<Field> = schema().fields().iter().map(|f| (**f).clone()).collect();
        fields.insert(1, Field::new("customer_id", DataType::Utf8, true));
        let batch = to_batch(&rows);
        let mut columns = batch.columns().to_vec();
        columns.insert(1, opt_utf8_array([Some("C-1"), None].into_iter()));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let file = old
            .join("events")
            .join("month=1970-01")
            .join(parquet_io::part_name(0));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        parquet_io::write_batches(
            &file,
            &batch.schema(),
            &writer_properties_with(&[], &[]),
            [batch],
        )
        .unwrap();
        assert_eq!(counted(&old, 0, 30 * day), [("C-1".to_string(), 1)]);
        assert_eq!(counted(&old, 11 * day, 30 * day), []);
    }

    #[test]
    fn missing_column_is_named() {
        let b = to_batch(&[ev("ev:1", 0, None)]);
        let mut b = b.clone();
        b.remove_column(4);
        let err = from_batch(&b).unwrap_err();
        assert!(err.to_string().contains("no column \"type\""), "{err}");
    }
}
