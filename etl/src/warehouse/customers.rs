//! The `customers/` dataset: one row per resolved customer, in
//! `part-NNNNN.parquet` files sorted by `customer_id`.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::types::Date32Type;
use arrow_array::{Array, ArrayRef, BooleanArray, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use cvm_shared::Channel;
use rayon::prelude::*;

use super::parquet_io::{
    self, Columns, UTC, WriteStats, opt_str, opt_str_ref, opt_timestamp_array, opt_utf8_array,
    opt_value, part_jobs, utf8_array, write_parts, writer_properties_with,
};
use super::{CustomerRow, WarehouseError};
use crate::record::{CrmIdentities, CrmIdentity};
use rustc_hash::FxHashSet as HashSet;

/// Dataset name used in errors.
pub const DATASET: &str = "customers";
/// Columns with few distinct values, dictionary-encoded.
const DICTIONARY_COLUMNS: &[&str] = &["country"];
/// Columns with page-level statistics (rows are sorted by id).
const PAGE_INDEX_COLUMNS: &[&str] = &["customer_id"];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let ts = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        text("customer_id", false),
        Field::new("is_guest", DataType::Boolean, false),
        text("email", true),
        text("phone", true),
        text("first_name", true),
        text("last_name", true),
        text("country", true),
        Field::new("signup_date", DataType::Date32, true),
        Field::new("birth_date", DataType::Date32, true),
        Field::new("email_opt_in", DataType::Boolean, false),
        ts("updated_at"),
        ts("first_seen"),
        Field::new(
            "channels",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
    ]))
});

/// The Arrow schema of a customers file.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

fn date_array<'a, I: Iterator<Item = &'a CustomerRow>>(
    rows: I,
    get: fn(&CustomerRow) -> Option<NaiveDate>,
) -> ArrayRef {
    Arc::new(PrimitiveArray::<Date32Type>::from_iter(
        rows.map(|c| get(c).map(|d| d.to_epoch_days())),
    ))
}

fn build<'a, I>(rows: I) -> RecordBatch
where
    I: Iterator<Item = &'a CustomerRow> + Clone,
{
    let r = rows;
    let (n, n_channels) = r
        .clone()
        .fold((0, 0), |(n, k), c| (n + 1, k + c.channels.len()));
    let mut channels =
        ListBuilder::with_capacity(StringBuilder::with_capacity(n_channels, n_channels * 5), n);
    for c in r.clone() {
        for ch in &c.channels {
            channels.values().append_value(ch.as_str());
        }
        channels.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        utf8_array(r.clone().map(|c| &*c.customer_id)),
        Arc::new(BooleanArray::from(
            r.clone().map(|c| c.is_guest).collect::<Vec<_>>(),
        )),
        opt_utf8_array(r.clone().map(|c| c.email.as_deref())),
        opt_utf8_array(r.clone().map(|c| c.phone.as_deref())),
        opt_utf8_array(r.clone().map(|c| c.first_name.as_deref())),
        opt_utf8_array(r.clone().map(|c| c.last_name.as_deref())),
        opt_utf8_array(r.clone().map(|c| c.country.as_deref())),
        date_array(r.clone(), |c| c.signup_date),
        date_array(r.clone(), |c| c.birth_date),
        Arc::new(BooleanArray::from(
            r.clone().map(|c| c.email_opt_in).collect::<Vec<_>>(),
        )),
        opt_timestamp_array(r.clone().map(|c| c.updated_at)),
        opt_timestamp_array(r.map(|c| c.first_seen)),
        Arc::new(channels.finish()),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Converts rows to one Arrow batch (channels kept in the order given).
pub fn to_batch(rows: &[CustomerRow]) -> RecordBatch {
    build(rows.iter())
}

/// Converts a batch back to rows, checking column types and values.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<CustomerRow>, WarehouseError> {
    decode(batch, Path::new("<batch>"))
}

fn decode(batch: &RecordBatch, path: &Path) -> Result<Vec<CustomerRow>, WarehouseError> {
    let c = Columns::new(batch, path, DATASET);
    let customer_id = c.utf8("customer_id", true)?;
    let is_guest = c.boolean("is_guest", true)?;
    let email = c.utf8("email", false)?;
    let phone = c.utf8("phone", false)?;
    let first_name = c.utf8("first_name", false)?;
    let last_name = c.utf8("last_name", false)?;
    let country = c.utf8("country", false)?;
    let signup_date = c.date32("signup_date", false)?;
    let birth_date = c.date32("birth_date", false)?;
    let email_opt_in = c.boolean("email_opt_in", true)?;
    let updated_at = c.timestamp_us("updated_at", false)?;
    let first_seen = c.timestamp_us("first_seen", false)?;
    let (channels, channel_values) = c.list_utf8("channels", true)?;
    let offsets = channels.value_offsets();
    let date = |col: &str, days: Option<i32>| match days {
        None => Ok(None),
        Some(d) => NaiveDate::from_epoch_days(d)
            .map(Some)
            .ok_or_else(|| c.error(format!("column {col:?} has out-of-range date {d}"))),
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
        let chans = (from..to)
            .map(|j| {
                let s = channel_values.value(j);
                Channel::parse(s)
                    .ok_or_else(|| c.error(format!("column \"channels\" has invalid value {s:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(CustomerRow {
            customer_id: customer_id.value(i).into(),
            is_guest: is_guest.value(i),
            email: opt_str(email, i),
            phone: opt_str(phone, i),
            first_name: opt_str(first_name, i),
            last_name: opt_str(last_name, i),
            country: opt_str(country, i),
            signup_date: date("signup_date", opt_value(signup_date, i))?,
            birth_date: date("birth_date", opt_value(birth_date, i))?,
            email_opt_in: email_opt_in.value(i),
            updated_at: opt_value(updated_at, i),
            first_seen: opt_value(first_seen, i),
            channels: chans,
        });
    }
    Ok(out)
}

/// Writes `rows` to `dir/part-00000.parquet` (more parts past
/// [`parquet_io::MAX_PART_ROWS`]), sorted by `customer_id`; always at least one file.
pub fn write(dir: &Path, rows: &[CustomerRow]) -> Result<WriteStats, WarehouseError> {
    let mut sorted: Vec<&CustomerRow> = rows.iter().collect();
    sorted.par_sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let jobs = part_jobs(dir, &sorted);
    write_parts(
        &jobs,
        &schema(),
        &writer_properties_with(DICTIONARY_COLUMNS, PAGE_INDEX_COLUMNS),
        |rows| build(rows.iter().copied()),
    )
}

/// What becomes of a stored customer's row in the version being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Left out (a guest: guests are formed anew every run).
    Drop,
    /// Copied as it is stored.
    Keep,
    /// Decoded and made this version's (its transactions changed).
    Update,
}

/// Writes `rows` (sorted by id) with the stored customers of `from` into
/// `to`: each stored row meets its [`Fate`] (`fate` of its id and whether
/// it is a guest; `update` makes an updated row this version's), and is
/// replaced by a row of `rows` with its id. The stored files are read a
/// batch at a time and merged by id, so the stored rows are never held;
/// kept rows are copied column by column, never decoded. A folder out of id
/// order (as `privacy erase` leaves it) is read whole instead.
pub fn write_over(
    from: &Path,
    to: &Path,
    rows: &[CustomerRow],
    fate: impl Fn(&str, bool) -> Fate,
    update: impl Fn(&mut CustomerRow),
) -> Result<WriteStats, WarehouseError> {
    debug_assert!(rows.is_sorted_by(|a, b| a.customer_id < b.customer_id));
    match stream_over(from, to, rows, &fate, &update) {
        Err(WarehouseError::Unsorted { path, .. }) => {
            tracing::debug!(file = %path.display(), "stored customers out of id order: read whole");
            // Parts written before the disorder was found go.
            match std::fs::remove_dir_all(to) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(WarehouseError::Io {
                        path: to.to_path_buf(),
                        source: e,
                    });
                }
                _ => {}
            }
            let mut all = read(from)?;
            let new: HashSet<&str> = rows.iter().map(|r| &*r.customer_id).collect();
            all.retain_mut(|r| {
                let fate = fate(&r.customer_id, r.is_guest);
                if fate == Fate::Update {
                    update(r);
                }
                fate != Fate::Drop && !new.contains(&*r.customer_id)
            });
            all.extend_from_slice(rows);
            write(to, &all)
        }
        written => written,
    }
}

/// [`write_over`] reading the stored rows a batch at a time; stops with
/// [`WarehouseError::Unsorted`] at the first one out of id order.
fn stream_over(
    from: &Path,
    to: &Path,
    rows: &[CustomerRow],
    fate: &impl Fn(&str, bool) -> Fate,
    update: &impl Fn(&mut CustomerRow),
) -> Result<WriteStats, WarehouseError> {
    let next = std::cell::Cell::new(0usize);
    let mut order = parquet_io::KeyOrder::of("customer_id");
    // Decoding the stored batches on a thread of their own, a batch ahead.
    parquet_io::read_batches(from)?.read_ahead(|stored| {
        let stored = stored.map(|item| {
            let (file, batch) = item?;
            let c = Columns::new(&batch, &file, DATASET);
            let ids = c.utf8("customer_id", true)?;
            let guests = c.boolean("is_guest", true)?;
            // A batch of another schema (an earlier cvm's) is decoded whole.
            let as_stored = batch.schema().fields() == schema().fields();
            let mut fates = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                order.check(ids.value(i), &file)?;
                fates.push(match fate(ids.value(i), guests.value(i)) {
                    Fate::Keep if !as_stored => Fate::Update,
                    f => f,
                });
            }
            let picked: Vec<u32> = (0..fates.len() as u32)
                .filter(|&i| fates[i as usize] == Fate::Update)
                .collect();
            let mut updated = match picked.is_empty() {
                true => Vec::new(),
                false => {
                    let picked = arrow_array::UInt32Array::from(picked);
                    let few = arrow_select::take::take_record_batch(&batch, &picked)
                        .map_err(|e| c.error(e.to_string()))?;
                    decode(&few, &file)?
                }
            };
            updated.iter_mut().for_each(update);
            // The new batch: stored rows by index (source 0), the night's and
            // the updated ones from a batch of their own (source 1), by id.
            let mut extra: Vec<&CustomerRow> = Vec::new();
            let mut plan: Vec<(usize, usize)> = Vec::with_capacity(batch.num_rows());
            let (mut at, mut u) = (next.get(), 0);
            for (i, fate) in fates.iter().enumerate() {
                let id = ids.value(i);
                while let Some(new) = rows.get(at).filter(|n| &*n.customer_id <= id) {
                    plan.push((1, extra.len()));
                    extra.push(new);
                    at += 1;
                }
                let replaced = at > 0 && &*rows[at - 1].customer_id == id;
                match fate {
                    Fate::Drop => {}
                    Fate::Keep if !replaced => plan.push((0, i)),
                    Fate::Keep => {}
                    Fate::Update => {
                        if !replaced {
                            plan.push((1, extra.len()));
                            extra.push(&updated[u]);
                        }
                        u += 1;
                    }
                }
            }
            next.set(at);
            let extra = build(extra.into_iter());
            match as_stored {
                true => arrow_select::interleave::interleave_record_batch(&[&batch, &extra], &plan)
                    .map_err(|e| c.error(e.to_string())),
                false => Ok(extra),
            }
        });
        let rest = std::iter::once(()).flat_map(|()| {
            let rest = &rows[next.get()..];
            parquet_io::chunks(rest.len()).map(|r| Ok(build(rest[r].iter())))
        });
        parquet_io::write_parts_streaming(
            to,
            &schema(),
            &writer_properties_with(DICTIONARY_COLUMNS, PAGE_INDEX_COLUMNS),
            stored.chain(rest),
            parquet_io::MAX_PART_ROWS,
        )
    })
}

/// The CRM customers under `dir` (guests left out), as much of each as
/// identity resolution needs, in file order; reads five columns only. A
/// missing folder has none.
pub fn read_crm_identities(dir: &Path) -> Result<CrmIdentities, WarehouseError> {
    const COLUMNS: [&str; 5] = ["customer_id", "is_guest", "email", "phone", "updated_at"];
    let mut out = CrmIdentities::default();
    parquet_io::for_each_projected(dir, &COLUMNS, DATASET, |c, rows| {
        let customer_id = c.utf8("customer_id", true)?;
        let is_guest = c.boolean("is_guest", true)?;
        let email = c.utf8("email", false)?;
        let phone = c.utf8("phone", false)?;
        let updated_at = c.timestamp_us("updated_at", false)?;
        for i in (0..rows).filter(|&i| !is_guest.value(i)) {
            out.push(CrmIdentity {
                customer_id: customer_id.value(i),
                email: opt_str_ref(email, i),
                phone: opt_str_ref(phone, i),
                updated_at: opt_value(updated_at, i),
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// Reads every customer under `dir`; a missing folder has none.
pub fn read(dir: &Path) -> Result<Vec<CustomerRow>, WarehouseError> {
    parquet_io::read_rows(dir, decode)
}

/// The ids of the customers under `dir` first seen before `end`
/// (microseconds; or never seen), in file order. Reads two columns only.
pub fn read_known(dir: &Path, end: i64) -> Result<Vec<Box<str>>, WarehouseError> {
    let mut ids = Vec::new();
    let columns = ["customer_id", "first_seen"];
    parquet_io::for_each_projected(dir, &columns, DATASET, |c, rows| {
        let customer_id = c.utf8("customer_id", true)?;
        let first_seen = c.timestamp_us("first_seen", false)?;
        ids.extend(
            (0..rows)
                .filter(|&i| first_seen.is_null(i) || first_seen.value(i) < end)
                .map(|i| Box::from(customer_id.value(i))),
        );
        Ok(())
    })?;
    Ok(ids)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn full() -> CustomerRow {
        CustomerRow {
            customer_id: "CRM-0002".into(),
            is_guest: false,
            email: Some("zoë@exämple.com".into()),
            phone: Some("+33612345678".into()),
            first_name: Some("Zoë".into()),
            last_name: Some("Ñúñez 山田".into()),
            country: Some("FR".into()),
            signup_date: NaiveDate::from_ymd_opt(2019, 2, 28),
            birth_date: NaiveDate::from_ymd_opt(1950, 12, 31),
            email_opt_in: true,
            updated_at: Some(1_700_000_000_123_456),
            first_seen: Some(-86_400_000_001),
            channels: vec![Channel::Pos, Channel::Web, Channel::App],
        }
    }

    fn guest() -> CustomerRow {
        CustomerRow {
            customer_id: "guest:0001".into(),
            is_guest: true,
            email: None,
            phone: None,
            first_name: None,
            last_name: None,
            country: None,
            signup_date: None,
            birth_date: None,
            email_opt_in: false,
            updated_at: None,
            first_seen: None,
            channels: vec![],
        }
    }

    #[test]
    fn round_trips_sorted_by_customer_id() {
        let d = tempfile::tempdir().unwrap();
        let rows = vec![guest(), full()];
        let st = write(d.path(), &rows).unwrap();
        assert_eq!((st.files, st.rows), (1, 2));
        assert!(d.path().join("part-00000.parquet").is_file());
        assert_eq!(read(d.path()).unwrap(), vec![full(), guest()]);
        assert_eq!(from_batch(&to_batch(&rows)).unwrap(), rows);
    }

    #[test]
    fn no_customers_still_writes_a_readable_file() {
        let d = tempfile::tempdir().unwrap();
        let st = write(d.path(), &[]).unwrap();
        assert_eq!((st.files, st.rows), (1, 0));
        assert!(read(d.path()).unwrap().is_empty());
    }

    #[test]
    fn unknown_channel_is_named() {
        let d = tempfile::tempdir().unwrap();
        let mut b = ListBuilder::new(StringBuilder::new());
        b.values().append_value("fax");
        b.append(true);
        let batch = to_batch(&[full()]);
        let mut cols = batch.columns().to_vec();
        cols[12] = Arc::new(b.finish());
        let bad = RecordBatch::try_new(schema(), cols).unwrap();
        let err = decode(&bad, d.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"channels\" has invalid value \"fax\""),
            "{err}"
        );
    }

    fn crm(id: &str, email: &str) -> CustomerRow {
        CustomerRow {
            customer_id: id.into(),
            email: Some(email.into()),
            ..full()
        }
    }

    #[test]
    fn writing_over_keeps_updates_and_drops_stored_rows_merged_with_the_new_ones() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let stored = [
            crm("C1", "a@x"),
            crm("C3", "c@x"),
            crm("C5", "e@x"),
            guest(),
        ];
        write(from.path(), &stored).unwrap();
        // C1 is updated, C5 kept as stored; C3's record is replaced; C2 is
        // new; a guest is formed again.
        let new = [crm("C2", "b@x"), crm("C3", "c2@x"), guest()];
        let fate = |id: &str, is_guest: bool| match (id, is_guest) {
            (_, true) => Fate::Drop,
            ("C1" | "C3", _) => Fate::Update,
            _ => Fate::Keep,
        };
        let update = |r: &mut CustomerRow| r.channels = vec![Channel::Web];
        let st = write_over(from.path(), to.path(), &new, fate, update).unwrap();
        assert_eq!((st.files, st.rows), (1, 5));
        let want = vec![
            CustomerRow {
                channels: vec![Channel::Web],
                ..crm("C1", "a@x")
            },
            new[0].clone(),
            new[1].clone(),
            crm("C5", "e@x"),
            guest(),
        ];
        assert_ne!(crm("C5", "e@x").channels, [Channel::Web]);
        assert_eq!(read(to.path()).unwrap(), want);
        // The keys a run holds of the stored ones: CRM only, in id order.
        let mut held = read_crm_identities(from.path()).unwrap();
        let ids: Vec<&str> = held.iter().map(|c| c.customer_id).collect();
        assert_eq!(ids, ["C1", "C3", "C5"]);
        let c3 = held.iter().nth(1).unwrap();
        let full = full();
        let want = CrmIdentity {
            customer_id: "C3",
            email: Some("c@x"),
            phone: full.phone.as_deref(),
            updated_at: full.updated_at,
        };
        assert_eq!(c3, want);
        let removed = held.remove_where(|id| id == "C3");
        assert_eq!(removed.iter().collect::<Vec<_>>(), [want]);
        let ids: Vec<&str> = held.iter().map(|c| c.customer_id).collect();
        assert_eq!((ids, held.len()), (vec!["C1", "C5"], 2));
    }

    #[test]
    fn stored_customers_out_of_id_order_are_read_whole() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // As `erase` leaves them: an id rewritten in place.
        let batch = to_batch(&[crm("C2", "b@x"), crm("C1", "a@x"), crm("C3", "c@x")]);
        parquet_io::write_batches(
            &from.path().join("part-00000.parquet"),
            &schema(),
            &writer_properties_with(&[], &[]),
            [batch],
        )
        .unwrap();
        let stored = read_crm_identities(from.path()).unwrap();
        let ids: Vec<&str> = stored.iter().map(|c| c.customer_id).collect();
        assert_eq!(ids, ["C2", "C1", "C3"]);
        let new = [crm("C1", "a2@x"), crm("C4", "d@x")];
        let st = write_over(from.path(), to.path(), &new, |_, _| Fate::Keep, |_| {}).unwrap();
        assert_eq!(st.rows, 4);
        let want = vec![
            new[0].clone(),
            crm("C2", "b@x"),
            crm("C3", "c@x"),
            new[1].clone(),
        ];
        assert_eq!(read(to.path()).unwrap(), want);
    }
}
