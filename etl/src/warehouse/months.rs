//! Month partitions (`month=YYYY-MM/part-NNNNN.parquet`) of the datasets
//! ordered by time (transactions, events), and how a version shares the
//! months a run did not change with the version before it.
//!
//! A night's drop changes a few months (the current one, the months of the
//! orders it refunds, of the guests a CRM record claims); writing only those
//! and hard-linking the others makes a night's write follow its drop, not the
//! history. Published files are never modified in place, so sharing is safe,
//! and pruning a version removes only its links.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::file::properties::WriterProperties;
use rustc_hash::FxHashSet as HashSet;

use super::WarehouseError;
use super::parquet_io::{self, MAX_PART_ROWS, WriteStats, io_err, part_jobs_from, write_parts};

/// A month partition: calendar year and month.
pub type Month = (i64, u32);

/// Calendar (proleptic Gregorian) year and month of a UTC microsecond instant;
/// total over all of `i64`, unlike a calendar library's bounded range.
pub fn month_of(micros: i64) -> Month {
    let (y, m, _) = crate::calendar::civil_from_days(micros.div_euclid(86_400_000_000));
    (y, m)
}

/// The month numbered `n` (`year * 12 + month - 1`, as
/// [`crate::consolidate::versions::month_number`] numbers them).
pub fn of_number(n: i32) -> Month {
    (i64::from(n).div_euclid(12), n.rem_euclid(12) as u32 + 1)
}

/// The Parquet files of each month folder directly below `dir` (none for a
/// missing folder), by month.
pub fn files_by_month(
    dir: &Path,
) -> Result<std::collections::BTreeMap<Month, Vec<std::path::PathBuf>>, WarehouseError> {
    let mut out = std::collections::BTreeMap::new();
    for file in parquet_io::list_parquet_files(dir)? {
        let parent = file.strip_prefix(dir).ok().and_then(Path::parent);
        if let Some(month) = parent.and_then(Path::to_str).and_then(of_folder) {
            out.entry(month).or_insert_with(Vec::new).push(file);
        }
    }
    Ok(out)
}

/// The path of a month's file within its dataset:
/// `month=YYYY-MM/part-NNNNN.parquet` (see [`Unchanged::rewritten`]).
pub fn in_dataset(file: &Path) -> PathBuf {
    let mut parts: Vec<_> = file.components().rev().take(2).collect();
    parts.reverse();
    parts.iter().collect()
}

/// The Hive partition folder of a month: `month=YYYY-MM`.
pub fn folder((y, m): Month) -> String {
    format!("month={y:04}-{m:02}")
}

/// The month of a partition folder's name, exactly as [`folder`] writes it.
pub fn of_folder(name: &str) -> Option<Month> {
    let (y, m) = name.strip_prefix("month=")?.rsplit_once('-')?;
    let month = (y.parse().ok()?, m.parse().ok()?);
    (folder(month) == name).then_some(month)
}

/// The months a run leaves as they were: shared with the version it started
/// from instead of written again.
#[derive(Debug, Clone, Copy)]
pub struct Unchanged<'a> {
    /// The dataset's folder in the version the run started from.
    pub previous: &'a Path,
    /// The months holding a row the run added, removed or changed; every
    /// other month of `previous` is shared.
    pub changed: &'a HashSet<Month>,
    /// Changed months whose files are shared too (but for `rewritten`
    /// ones), the run's rows of them written as new parts beside them.
    pub appended: Option<&'a HashSet<Month>>,
    /// Files of the appended months that are not shared, by path within
    /// the dataset (`month=YYYY-MM/part-NNNNN.parquet`): the run read them
    /// whole and writes their rows again among its new parts, or writes
    /// them anew itself under the same name.
    pub rewritten: Option<&'a HashSet<PathBuf>>,
}

/// Parts a month may hold and still be appended to: a month holding more is
/// written again whole (one part) the next time it changes, so a month
/// that every night adds to keeps a few parts, and each night writes its
/// own rows, not the month's.
pub const APPEND_PARTS: usize = 16;

/// Whether the month folder `dir` of a stored version can take another
/// part: it holds fewer than [`APPEND_PARTS`] files, each named as cvm names
/// parts (a missing folder cannot: it is written whole).
pub fn appendable(dir: &Path) -> Result<bool, WarehouseError> {
    let files = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut parts = 0;
    for entry in files {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        if name.to_str().and_then(parquet_io::part_number).is_none() {
            return Ok(false);
        }
        parts += 1;
    }
    Ok(parts > 0 && parts < APPEND_PARTS)
}

impl<'a> Unchanged<'a> {
    /// Sharing from `previous`, when its files all lie in month folders; when
    /// some do not (a layout of an earlier cvm), `None`: every month is
    /// written.
    pub fn of(
        previous: &'a Path,
        changed: &'a HashSet<Month>,
    ) -> Result<Option<Unchanged<'a>>, WarehouseError> {
        Ok(partitioned(previous)?.then_some(Unchanged {
            previous,
            changed,
            appended: None,
            rewritten: None,
        }))
    }

    /// The same, with the changed months that are only `appended` to.
    pub fn appending(self, appended: &'a HashSet<Month>) -> Unchanged<'a> {
        Unchanged {
            appended: Some(appended),
            ..self
        }
    }

    /// The same, not sharing the `rewritten` files of appended months.
    pub fn rewriting(self, rewritten: &'a HashSet<PathBuf>) -> Unchanged<'a> {
        Unchanged {
            rewritten: Some(rewritten),
            ..self
        }
    }

    /// Whether rows at `micros` must be written.
    pub fn writes(&self, micros: i64) -> bool {
        self.changed.contains(&month_of(micros))
    }

    /// Whether `month` keeps its files and gains the run's rows as new parts.
    pub fn appends(&self, month: Month) -> bool {
        self.appended.is_some_and(|a| a.contains(&month))
    }
}

/// Whether every Parquet file under `dir` lies in a month folder directly
/// below it (true for a missing or empty folder).
pub fn partitioned(dir: &Path) -> Result<bool, WarehouseError> {
    for file in parquet_io::list_parquet_files(dir)? {
        let parent = file.strip_prefix(dir).ok().and_then(Path::parent);
        if parent.and_then(Path::to_str).and_then(of_folder).is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// The files written.
    pub stats: WriteStats,
    /// Month folders written.
    pub months: usize,
    /// Of those, the folders whose files were linked and given new parts.
    pub appended_months: usize,
    /// Month folders linked from the previous version.
    pub shared_months: usize,
}

/// How a dataset's month folders are written.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// The files' schema.
    pub schema: &'a SchemaRef,
    /// Their writer properties.
    pub props: &'a WriterProperties,
    /// How many parts a month's rows are split into at most (each of at
    /// least [`MIN_PART_ROWS`] rows, at most [`parquet_io::MAX_PART_ROWS`]):
    /// more, smaller parts let a night that changes a few rows of a month
    /// write again only the parts holding them.
    pub parts_per_month: usize,
}

/// The fewest rows a month's part is split down to (see [`Layout`]).
pub const MIN_PART_ROWS: usize = 1 << 14;

/// The rows of each part when `rows` rows are split into `parts` parts at most.
fn part_rows(rows: usize, parts: usize) -> usize {
    rows.div_ceil(parts.max(1))
        .clamp(MIN_PART_ROWS, MAX_PART_ROWS)
}

/// Writes `sorted` (ordered by `at`, microseconds UTC) under `dir` as
/// `month=YYYY-MM/part-NNNNN.parquet`, each month in parts as `layout`
/// says, parts in parallel; then, with `unchanged`, links every other month
/// of the previous version. With `unchanged`, `sorted` holds only rows of
/// changed months; of an appended month, only the rows written again,
/// as parts numbered after the files it had (those it shares linked, an
/// appended month without rows included).
pub(crate) fn write<T: Sync>(
    dir: &Path,
    sorted: &[&T],
    at: impl Fn(&T) -> i64,
    unchanged: Option<Unchanged<'_>>,
    layout: Layout<'_>,
    build: impl Fn(&[&T]) -> RecordBatch + Sync,
) -> Result<Written, WarehouseError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    // Sorted by time, so each month is one run of rows.
    let mut jobs = Vec::new();
    let (mut months, mut appended_months) = (0, 0);
    let mut linked: HashSet<Month> = HashSet::default();
    let mut start = 0;
    while start < sorted.len() {
        let month = month_of(at(sorted[start]));
        let len = sorted[start..].partition_point(|t| month_of(at(t)) == month);
        let to = dir.join(folder(month));
        let first = match unchanged.filter(|u| u.appends(month)) {
            Some(u) => {
                appended_months += 1;
                linked.insert(month);
                link_parts(&u.previous.join(folder(month)), &to, u.rewritten)?.0
            }
            None => 0,
        };
        jobs.extend(part_jobs_from(
            &to,
            &sorted[start..start + len],
            part_rows(len, layout.parts_per_month),
            first,
        ));
        months += 1;
        start += len;
    }
    // Appended months the run writes no row of still keep their shared
    // files (a month left with none is gone).
    if let Some(u) = unchanged
        && let Some(appended) = u.appended
    {
        for &month in appended.iter().filter(|m| !linked.contains(*m)) {
            let to = dir.join(folder(month));
            if link_parts(&u.previous.join(folder(month)), &to, u.rewritten)?.1 > 0 {
                appended_months += 1;
                months += 1;
            } else {
                std::fs::remove_dir(&to).map_err(|e| io_err(&to, e))?;
            }
        }
    }
    let stats = write_parts(&jobs, layout.schema, layout.props, build)?;
    let shared_months = match unchanged {
        Some(u) => share(dir, u)?,
        None => 0,
    };
    Ok(Written {
        stats,
        months,
        appended_months,
        shared_months,
    })
}

/// Links the parts of the month folder `from` into `to`, but for those
/// `skip` names (by path within the dataset); returns the number the next
/// part takes (after every part of `from`, so a part written anew under its
/// own name keeps it) and how many it linked.
fn link_parts(
    from: &Path,
    to: &Path,
    skip: Option<&HashSet<PathBuf>>,
) -> Result<(usize, usize), WarehouseError> {
    std::fs::create_dir_all(to).map_err(|e| io_err(to, e))?;
    let folder = Path::new(from.file_name().unwrap_or_default());
    let (mut next, mut linked) = (0, 0);
    for file in parquet_io::list_parquet_files(from)? {
        let Some(name) = file.file_name() else {
            continue;
        };
        if let Some(k) = name.to_str().and_then(parquet_io::part_number) {
            next = next.max(k + 1);
        }
        if skip.is_some_and(|s| s.contains(&folder.join(name))) {
            continue;
        }
        let link = to.join(name);
        parquet_io::link_or_copy(&file, &link).map_err(|e| io_err(&link, e))?;
        linked += 1;
    }
    Ok((next, linked))
}

/// Links the files of every month folder of `u.previous` not in `u.changed`
/// into `dir`; returns how many folders.
fn share(dir: &Path, u: Unchanged<'_>) -> Result<usize, WarehouseError> {
    let mut shared = 0;
    let entries = match std::fs::read_dir(u.previous) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(shared),
        Err(e) => return Err(io_err(u.previous, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(u.previous, e))?;
        let name = entry.file_name();
        let Some(month) = name.to_str().and_then(of_folder) else {
            continue;
        };
        if u.changed.contains(&month) {
            continue;
        }
        link_parts(&entry.path(), &dir.join(&name), None)?;
        shared += 1;
    }
    Ok(shared)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn month_numbers_name_the_month_of_their_instant() {
        use crate::consolidate::versions::month_number;
        for at in [
            0,
            -1,
            i64::MIN,
            i64::MAX,
            1_700_000_000_000_000,
            -86_400_000_000 * 40,
        ] {
            assert_eq!(of_number(month_number(at)), month_of(at), "{at}");
        }
        assert_eq!(of_number(2025 * 12 + 11), (2025, 12));
        assert_eq!(of_number(-1), (-1, 12));
    }

    #[test]
    fn month_folders_name_their_month_and_nothing_else() {
        for at in [0, -1, i64::MIN, i64::MAX, 1_700_000_000_000_000] {
            let name = folder(month_of(at));
            assert_eq!(of_folder(&name), Some(month_of(at)), "{name}");
        }
        for name in [
            "month=2024-1",
            "month=2024-13x",
            "month=2024",
            "2024-01",
            "month=2024-01.tmp",
        ] {
            assert_eq!(of_folder(name), None, "{name}");
        }
    }

    #[test]
    fn a_previous_version_with_files_outside_month_folders_shares_nothing() {
        let d = tempfile::tempdir().unwrap();
        let changed = HashSet::default();
        let month = d.path().join("month=2024-01");
        std::fs::create_dir_all(&month).unwrap();
        std::fs::write(month.join("part-00000.parquet"), b"x").unwrap();
        assert!(Unchanged::of(d.path(), &changed).unwrap().is_some());
        std::fs::write(d.path().join("part-00000.parquet"), b"x").unwrap();
        assert!(Unchanged::of(d.path(), &changed).unwrap().is_none());
    }

    /// Writes rows of `at` (microseconds) as a one-column dataset.
    fn write_at(dir: &Path, at: &[i64], unchanged: Option<Unchanged<'_>>) -> Written {
        use arrow_array::{ArrayRef, Int64Array};
        use arrow_schema::{DataType, Field, Schema};
        let schema: SchemaRef =
            std::sync::Arc::new(Schema::new(vec![Field::new("at", DataType::Int64, false)]));
        let props = parquet_io::writer_properties_with(&[], &[]);
        let layout = Layout {
            schema: &schema,
            props: &props,
            parts_per_month: 1,
        };
        let rows: Vec<&i64> = at.iter().collect();
        write(
            dir,
            &rows,
            |t| *t,
            unchanged,
            layout,
            |rows| {
                let col: ArrayRef =
                    std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|t| **t)));
                RecordBatch::try_new(schema.clone(), vec![col]).unwrap()
            },
        )
        .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        out
    }

    #[test]
    fn an_appended_month_shares_its_files_but_the_rewritten_and_numbers_new_parts_after_all() {
        let d = tempfile::tempdir().unwrap();
        let (jan, feb, mar) = (
            1_704_067_200_000_000,
            1_706_745_600_000_000,
            1_709_251_200_000_000,
        );
        let previous = d.path().join("v1");
        // January in three parts, February and March in one each.
        let template = d.path().join("template");
        write_at(&template, &[jan, feb, mar], None);
        for (month, parts) in [(jan, 3), (feb, 1), (mar, 1)] {
            let folder = folder(month_of(month));
            std::fs::create_dir_all(previous.join(&folder)).unwrap();
            for k in 0..parts {
                let to = previous.join(&folder).join(parquet_io::part_name(k));
                std::fs::copy(template.join(&folder).join("part-00000.parquet"), to).unwrap();
            }
        }
        let (m_jan, m_feb, m_mar) = (month_of(jan), month_of(feb), month_of(mar));
        let changed: HashSet<Month> = [m_jan, m_feb, m_mar].into_iter().collect();
        let appended = changed.clone();
        // January's part 1 and February's only part are read whole; March's
        // only part is renamed elsewhere (written under its own name).
        let rewritten: HashSet<PathBuf> = [
            Path::new(&folder(m_jan)).join("part-00001.parquet"),
            Path::new(&folder(m_feb)).join("part-00000.parquet"),
            Path::new(&folder(m_mar)).join("part-00000.parquet"),
        ]
        .into_iter()
        .collect();
        let u = Unchanged::of(&previous, &changed)
            .unwrap()
            .unwrap()
            .appending(&appended)
            .rewriting(&rewritten);
        let next = d.path().join("v2");
        // New rows in January only: February is left with no file at all.
        let w = write_at(&next, &[jan + 1, jan + 2], Some(u));
        assert_eq!(
            names(&next.join(folder(m_jan))),
            [
                "part-00000.parquet",
                "part-00002.parquet",
                "part-00003.parquet"
            ]
        );
        assert!(!next.join(folder(m_feb)).exists());
        assert!(
            !next.join(folder(m_mar)).exists(),
            "renamed by the caller, not linked"
        );
        assert_eq!((w.months, w.appended_months, w.shared_months), (1, 1, 0));
        // The shared parts are the same files, the new one holds the new rows.
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let part0 = Path::new(&folder(m_jan)).join("part-00000.parquet");
        assert_eq!(inode(&previous.join(&part0)), inode(&next.join(&part0)));
        assert_eq!(w.stats.rows, 2);
        assert_eq!(in_dataset(&next.join(&part0)), part0);
    }
}
