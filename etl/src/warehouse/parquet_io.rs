//! Shared Parquet plumbing for the warehouse datasets: writer settings, atomic
//! file writes, streaming reads of a file or a folder, and typed access to the
//! columns of a batch with errors that name the file and the column.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::builder::StringBuilder;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, ListArray, PrimitiveArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::WarehouseError;
use super::encoder::{Encoder, Encoding};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;
/// Rows converted to Arrow at a time when writing, which bounds the memory a
/// write holds in Arrow arrays: a transaction row takes some 280 bytes
/// there, so 64k rows are ~18 MB per writer (256k made the write of a
/// 12.3M-row drop its peak, 170 MB above the rest). Row groups do not
/// depend on it; a page ends where a batch does, so files written with
/// another size hold the same rows in other bytes.
pub const CHUNK_ROWS: usize = 64 * 1024;
/// Rows per batch when reading.
pub const READ_BATCH_ROWS: usize = 64 * 1024;
/// The time zone of every warehouse timestamp column.
pub const UTC: &str = "UTC";
/// Level 1: zstd's fastest regular level. Level 3 (its default) took ~9% of
/// ingest's CPU time and made the bench warehouse no smaller (394 vs 386 MB).
const ZSTD_LEVEL: i32 = 1;

/// What a write produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Files written.
    pub files: usize,
    /// Rows written.
    pub rows: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

impl WriteStats {
    /// One file of `rows` rows in `bytes` bytes.
    pub fn file(rows: u64, bytes: u64) -> WriteStats {
        WriteStats {
            files: 1,
            rows,
            bytes,
        }
    }
}

impl std::ops::Add for WriteStats {
    type Output = WriteStats;
    fn add(self, o: WriteStats) -> WriteStats {
        WriteStats {
            files: self.files + o.files,
            rows: self.rows + o.rows,
            bytes: self.bytes + o.bytes,
        }
    }
}

impl std::iter::Sum for WriteStats {
    fn sum<I: Iterator<Item = WriteStats>>(iter: I) -> WriteStats {
        iter.fold(WriteStats::default(), |a, b| a + b)
    }
}

/// Writer settings for every warehouse file: ZSTD, dictionary encoding only on
/// the named low-cardinality columns, row-group statistics on every column.
pub fn writer_properties(dictionary_columns: &[&str]) -> WriterProperties {
    writer_properties_with(dictionary_columns, &[])
}

/// [`writer_properties`] plus page-level statistics (the page index) on the
/// named sorted columns.
pub fn writer_properties_with(
    dictionary_columns: &[&str],
    page_index_columns: &[&str],
) -> WriterProperties {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default();
    // Dictionary off by default: on unique ids it costs CPU until the page
    // limit forces the fallback to plain anyway. Page statistics on unsorted
    // text cost a third of the write time and let no reader skip anything.
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("cvm {}", env!("CARGO_PKG_VERSION")));
    for c in dictionary_columns {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), true);
    }
    for c in page_index_columns {
        b = b.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::Page);
    }
    b.build()
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> WarehouseError {
    WarehouseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn format_err(path: &Path, e: impl std::fmt::Display) -> WarehouseError {
    WarehouseError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Removes the temporary file unless the write got as far as renaming it.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `path` through a temporary file in the same folder, fsynced and
/// renamed over `path`, so that `path` is either absent, the old file or the
/// complete new one. Creates missing parent folders. Returns the bytes written.
pub fn write_atomically<F>(path: &Path, write: F) -> Result<u64, WarehouseError>
where
    F: FnOnce(BufWriter<File>) -> Result<BufWriter<File>, WarehouseError>,
{
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format_err(path, "not a file path"))?
        .to_string_lossy();
    fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    // Hidden and `.tmp`-suffixed, so folder readers never pick it up.
    let temp = TempFile {
        path: parent.join(format!(".{name}.{}.{seq}.tmp", std::process::id())),
        armed: true,
    };
    let file = File::create(&temp.path).map_err(|e| io_err(path, e))?;
    let out = write(BufWriter::with_capacity(1 << 20, file))?;
    let file = out.into_inner().map_err(|e| io_err(path, e.into_error()))?;
    file.sync_all().map_err(|e| io_err(path, e))?;
    let bytes = file.metadata().map_err(|e| io_err(path, e))?.len();
    drop(file);
    fs::rename(&temp.path, path).map_err(|e| io_err(path, e))?;
    let mut temp = temp;
    temp.armed = false;
    // The rename is durable only once the folder entry is on disk.
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(parent, e))?;
    Ok(bytes)
}

/// Writes `batches` (all of `schema`) to one Parquet file at `path`, atomically.
/// Batches are consumed one at a time; an empty input writes a schema-only
/// file. Batches made from something that can fail (another file read as
/// this one is written) come as `Result`s: the first error stops the write,
/// and nothing is left at `path`.
pub fn write_batches<I>(
    path: &Path,
    schema: &SchemaRef,
    props: &WriterProperties,
    batches: I,
) -> Result<WriteStats, WarehouseError>
where
    I: IntoIterator,
    I::Item: BatchItem,
{
    write_encoded(path, schema, props, batches, Encoding::Serial)
}

/// [`write_batches`] with the columns encoded as `encoding` says.
fn write_encoded<I>(
    path: &Path,
    schema: &SchemaRef,
    props: &WriterProperties,
    batches: I,
    encoding: Encoding,
) -> Result<WriteStats, WarehouseError>
where
    I: IntoIterator,
    I::Item: BatchItem,
{
    let mut rows = 0u64;
    let bytes = write_atomically(path, |out| {
        let mut w = Encoder::try_new(out, schema.clone(), props.clone(), encoding)
            .map_err(|e| format_err(path, e))?;
        for batch in batches {
            let batch = batch.into_batch()?;
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(|e| format_err(path, e))?;
        }
        let mut out = w.into_inner().map_err(|e| format_err(path, e))?;
        out.flush().map_err(|e| io_err(path, e))?;
        Ok(out)
    })?;
    Ok(WriteStats::file(rows, bytes))
}

/// A batch [`write_batches`] writes, or why it could not be made.
pub trait BatchItem {
    /// The batch, or the error.
    fn into_batch(self) -> Result<RecordBatch, WarehouseError>;
}

impl BatchItem for RecordBatch {
    fn into_batch(self) -> Result<RecordBatch, WarehouseError> {
        Ok(self)
    }
}

impl BatchItem for Result<RecordBatch, WarehouseError> {
    fn into_batch(self) -> Result<RecordBatch, WarehouseError> {
        self
    }
}

/// Makes `link` name the published file `file` (a hard link: published files
/// are never modified in place, so versions can share them), or a copy of it
/// on a file system without hard links.
pub(crate) fn link_or_copy(file: &Path, link: &Path) -> std::io::Result<()> {
    match fs::hard_link(file, link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(e) => {
            tracing::debug!(file = %file.display(), error = %e, "cannot hard-link: copying");
            fs::copy(file, link).map(drop)
        }
    }
}

/// The Parquet files at `path`: the file itself, or every `*.parquet` below the
/// folder (recursively, following symlinks, in sorted path order). Names
/// starting with `.` or `_` are skipped as Hive-style readers do. A missing
/// path has no files.
pub fn list_parquet_files(path: &Path) -> Result<Vec<PathBuf>, WarehouseError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    let mut files = Vec::new();
    if meta.is_dir() {
        collect(path, &mut files)?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    Ok(files)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), WarehouseError> {
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let p = entry.path();
        let meta = fs::metadata(&p).map_err(|e| io_err(&p, e))?;
        if meta.is_dir() {
            collect(&p, files)?;
        } else if name.ends_with(".parquet") {
            files.push(p);
        }
    }
    Ok(())
}

/// How many rows the Parquet file at `path` holds, by its footer; None when
/// there is no such file.
pub(crate) fn row_count(path: &Path) -> Result<Option<usize>, WarehouseError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format_err(path, e))?;
    Ok(Some(b.metadata().file_metadata().num_rows().max(0) as usize))
}

/// Whether `path` is a Parquet file whose columns are `schema`'s, by name
/// and type, in order (read from its footer alone).
pub fn has_schema(path: &Path, schema: &SchemaRef) -> bool {
    use arrow_array::RecordBatchReader;
    path.exists()
        && open_file(path).is_ok_and(|r| {
            let got = r.schema();
            got.fields().len() == schema.fields().len()
                && got
                    .fields()
                    .iter()
                    .zip(schema.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
        })
}

/// Opens one Parquet file for streaming reads.
pub fn open_file(path: &Path) -> Result<ParquetRecordBatchReader, WarehouseError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(READ_BATCH_ROWS).build())
        .map_err(|e| format_err(path, e))
}

/// Opens one Parquet file reading only `columns` of the rows numbered
/// `rows` (ascending, 0-based over the file): the others are skipped, not
/// decoded into values.
pub(crate) fn open_rows(
    path: &Path,
    columns: &[&str],
    rows: &[u32],
) -> Result<ParquetRecordBatchReader, WarehouseError> {
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
    use parquet::file::metadata::PageIndexPolicy;
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    // The page index lets the reader skip the pages holding no picked row
    // without decompressing them.
    let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
    let b = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| format_err(path, e))?;
    let total = b.metadata().file_metadata().num_rows().max(0) as usize;
    let mut selectors = Vec::new();
    let mut at = 0usize;
    let mut i = 0;
    while i < rows.len() {
        let start = rows[i] as usize;
        let mut end = start + 1;
        i += 1;
        while i < rows.len() && rows[i] as usize == end {
            end += 1;
            i += 1;
        }
        if start < at || end > total {
            return Err(format_err(
                path,
                format!("row {start} is out of order or past the file's {total} rows"),
            ));
        }
        if start > at {
            selectors.push(RowSelector::skip(start - at));
        }
        selectors.push(RowSelector::select(end - start));
        at = end;
    }
    if total > at {
        selectors.push(RowSelector::skip(total - at));
    }
    let mask = ProjectionMask::columns(b.parquet_schema(), columns.iter().copied());
    b.with_projection(mask)
        .with_row_selection(RowSelection::from(selectors))
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| format_err(path, e))
}

/// Calls `each` with every batch of the Parquet files under `dir` (see
/// [`list_parquet_files`]; none for a missing folder), reading only
/// `columns` (a file without them is skipped), and its row count.
pub(crate) fn for_each_projected(
    dir: &Path,
    columns: &[&str],
    dataset: &'static str,
    mut each: impl FnMut(&Columns<'_>, usize) -> Result<(), WarehouseError>,
) -> Result<(), WarehouseError> {
    for path in list_parquet_files(dir)? {
        let Some(reader) = open_projected(&path, columns, None)? else {
            continue;
        };
        for batch in reader {
            let batch = batch.map_err(|e| format_err(&path, e))?;
            each(&Columns::new(&batch, &path, dataset), batch.num_rows())?;
        }
    }
    Ok(())
}

/// Opens one Parquet file reading only `columns` and, given a `window`, only
/// the row groups whose Int64 (or timestamp) column `window.0` may hold a
/// value in `[window.1, window.2)` by its statistics; None when no row group
/// can. (Statistics ignore nulls: a window's rows must have a value.)
pub(crate) fn open_projected(
    path: &Path,
    columns: &[&str],
    window: Option<(&str, i64, i64)>,
) -> Result<Option<ParquetRecordBatchReader>, WarehouseError> {
    use parquet::file::statistics::Statistics;
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format_err(path, e))?;
    let (name, from, to) = window.unwrap_or(("", i64::MIN, i64::MAX));
    let col = b
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| window.is_some() && c.name() == name);
    let groups: Vec<usize> = b
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| {
            // Without statistics a row group may hold anything: it is read.
            match col.and_then(|i| rg.column(i).statistics()) {
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(&min), Some(&max)) => max >= from && min < to,
                    _ => true,
                },
                _ => true,
            }
        })
        .map(|(i, _)| i)
        .collect();
    if groups.is_empty() {
        return Ok(None);
    }
    let mask = ProjectionMask::columns(b.parquet_schema(), columns.iter().copied());
    b.with_projection(mask)
        .with_row_groups(groups)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map(Some)
        .map_err(|e| format_err(path, e))
}

/// Streams the batches of every file [`list_parquet_files`] finds, each with the
/// file it came from.
pub struct BatchReader {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(Arc<Path>, ParquetRecordBatchReader)>,
}

impl BatchReader {
    /// Runs `consume` over the batches, decoded on a thread of their own a
    /// batch ahead of it: a write that turns each stored batch into a new
    /// one then decodes on one core as it encodes on the other.
    pub(crate) fn read_ahead<R>(
        self,
        consume: impl FnOnce(std::sync::mpsc::IntoIter<<Self as Iterator>::Item>) -> R,
    ) -> R {
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || {
                for item in self {
                    // The consumer stopped (an error): so does the reading.
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            });
            consume(rx.into_iter())
        })
    }
}

impl Iterator for BatchReader {
    type Item = Result<(Arc<Path>, RecordBatch), WarehouseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((path, reader)) = &mut self.current {
                match reader.next() {
                    Some(Ok(b)) => return Some(Ok((path.clone(), b))),
                    Some(Err(e)) => {
                        let err = format_err(path, e);
                        self.current = None;
                        self.files = Vec::new().into_iter();
                        return Some(Err(err));
                    }
                    None => self.current = None,
                }
            }
            let next = self.files.next()?;
            match open_file(&next) {
                Ok(r) => self.current = Some((Arc::from(next.as_path()), r)),
                Err(e) => {
                    self.files = Vec::new().into_iter();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Streams the batches of a Parquet file, or of all `*.parquet` files under a
/// folder (see [`list_parquet_files`]).
pub fn read_batches(path: &Path) -> Result<BatchReader, WarehouseError> {
    Ok(BatchReader {
        files: list_parquet_files(path)?.into_iter(),
        current: None,
    })
}

/// Reads every row under `path` with a dataset's batch decoder.
pub(crate) fn read_rows<T>(
    path: &Path,
    decode: impl Fn(&RecordBatch, &Path) -> Result<Vec<T>, WarehouseError>,
) -> Result<Vec<T>, WarehouseError> {
    let mut rows = Vec::new();
    for item in read_batches(path)? {
        let (file, batch) = item?;
        let mut part = decode(&batch, &file)?;
        if rows.is_empty() {
            rows = part;
        } else {
            rows.append(&mut part);
        }
    }
    Ok(rows)
}

/// Most rows in one part file; a bigger folder is split into several parts.
pub const MAX_PART_ROWS: usize = 1 << 20;

/// One part file to write: its path and its (already sorted) rows.
pub(crate) type PartJob<'a, T> = (PathBuf, &'a [&'a T]);

/// Splits sorted rows into `folder/part-NNNNN.parquet` files of at most
/// [`MAX_PART_ROWS`]; no rows still make one (schema-only) part so the folder
/// always has a readable file.
pub(crate) fn part_jobs<'a, T>(folder: &Path, rows: &'a [&'a T]) -> Vec<PartJob<'a, T>> {
    part_jobs_from(folder, rows, MAX_PART_ROWS, 0)
}

/// [`part_jobs`] with parts of at most `max_rows`.
pub(crate) fn part_jobs_of<'a, T>(
    folder: &Path,
    rows: &'a [&'a T],
    max_rows: usize,
) -> Vec<PartJob<'a, T>> {
    part_jobs_from(folder, rows, max_rows, 0)
}

/// [`part_jobs_of`] numbering the parts from `first` (a folder that keeps
/// the parts it holds and gains new ones).
pub(crate) fn part_jobs_from<'a, T>(
    folder: &Path,
    rows: &'a [&'a T],
    max_rows: usize,
    first: usize,
) -> Vec<PartJob<'a, T>> {
    if rows.is_empty() {
        return vec![(folder.join(part_name(first)), rows)];
    }
    rows.chunks(max_rows.max(1))
        .enumerate()
        .map(|(k, part)| (folder.join(part_name(first + k)), part))
        .collect()
}

/// The number of a part file's name (`part-NNNNN.parquet`), as [`part_name`] writes it.
pub fn part_number(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let k = digits.parse().ok()?;
    (part_name(k) == name).then_some(k)
}

/// The file name of the `k`-th part of a folder.
pub fn part_name(k: usize) -> String {
    format!("part-{k:05}.parquet")
}

/// Writes part files in parallel, converting each in [`CHUNK_ROWS`] chunks.
pub(crate) fn write_parts<T, B>(
    jobs: &[PartJob<'_, T>],
    schema: &SchemaRef,
    props: &WriterProperties,
    build: B,
) -> Result<WriteStats, WarehouseError>
where
    T: Sync,
    B: Fn(&[&T]) -> RecordBatch + Sync,
{
    use rayon::prelude::*;
    let stats = jobs
        .par_iter()
        .map(|(path, rows)| {
            write_batches(
                path,
                schema,
                props,
                chunks(rows.len()).map(|r| build(&rows[r])),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(stats.into_iter().sum())
}

/// Writes `batches` (made as they are asked for) into `folder/part-NNNNN.parquet`
/// files of at most `max_rows` rows, in order, one after the other, each
/// atomically, like [`write_parts`] writes rows held whole; nothing at all
/// still makes one (schema-only) part. The first error stops the write.
/// Columns are encoded in parallel: its one user, the customers written
/// over the stored ones, is a night's longest write.
pub(crate) fn write_parts_streaming<I>(
    folder: &Path,
    schema: &SchemaRef,
    props: &WriterProperties,
    batches: I,
    max_rows: usize,
) -> Result<WriteStats, WarehouseError>
where
    I: Iterator<Item = Result<RecordBatch, WarehouseError>>,
{
    let max_rows = max_rows.max(1);
    // Empty batches dropped, so a part is begun only for rows.
    let mut batches = batches
        .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0))
        .peekable();
    let mut left: Option<RecordBatch> = None;
    let mut stats = WriteStats::default();
    for k in 0.. {
        let mut room = max_rows;
        let part = std::iter::from_fn(|| {
            if room == 0 {
                return None;
            }
            let batch = match left.take() {
                Some(b) => b,
                None => match batches.next()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                },
            };
            let take = batch.num_rows().min(room);
            if take < batch.num_rows() {
                left = Some(batch.slice(take, batch.num_rows() - take));
            }
            room -= take;
            Some(Ok(batch.slice(0, take)))
        });
        stats = stats
            + write_encoded(
                &folder.join(part_name(k)),
                schema,
                props,
                part,
                Encoding::Parallel,
            )?;
        if left.is_none() && batches.peek().is_none() {
            break;
        }
    }
    Ok(stats)
}

/// Checks that a column's values come in strictly increasing order (files
/// merged with a run's rows as they are read rely on it).
pub(crate) struct KeyOrder {
    column: &'static str,
    last: Option<String>,
}

impl KeyOrder {
    /// Checks `column`.
    pub(crate) fn of(column: &'static str) -> KeyOrder {
        KeyOrder { column, last: None }
    }

    /// [`WarehouseError::Unsorted`] when `value`, read from `path`, is not
    /// past the one before.
    pub(crate) fn check(&mut self, value: &str, path: &Path) -> Result<(), WarehouseError> {
        match &mut self.last {
            Some(last) if value <= last.as_str() => Err(WarehouseError::Unsorted {
                path: path.to_path_buf(),
                column: self.column,
                value: value.to_owned(),
                previous: last.clone(),
            }),
            Some(last) => {
                last.clear();
                last.push_str(value);
                Ok(())
            }
            None => {
                self.last = Some(value.to_owned());
                Ok(())
            }
        }
    }
}

/// The batches of `rows`, [`CHUNK_ROWS`] at a time, made by `build` as they
/// are asked for (so rows made on the fly are never all held); no rows are
/// still one (empty) batch, so a file written from them has its schema.
pub(crate) fn batched<T>(
    rows: impl Iterator<Item = T>,
    build: impl Fn(&[T]) -> RecordBatch,
) -> impl Iterator<Item = RecordBatch> {
    let mut rows = rows.fuse();
    let mut first = true;
    std::iter::from_fn(move || {
        let batch: Vec<T> = rows.by_ref().take(CHUNK_ROWS).collect();
        let more = !batch.is_empty() || std::mem::take(&mut first);
        more.then(|| build(&batch))
    })
}

/// Splits `n` rows into consecutive ranges of at most [`CHUNK_ROWS`].
pub(crate) fn chunks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n)
        .step_by(CHUNK_ROWS)
        .map(move |s| s..(s + CHUNK_ROWS).min(n))
}

/// A non-null Utf8 array, sized in one pass before filling so the value
/// buffer is allocated once.
pub(crate) fn utf8_array<'a, I>(values: I) -> ArrayRef
where
    I: Iterator<Item = &'a str> + Clone,
{
    let (n, bytes) = values
        .clone()
        .fold((0, 0), |(n, b), s| (n + 1, b + s.len()));
    let mut b = StringBuilder::with_capacity(n, bytes);
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

/// A nullable Utf8 array (see [`utf8_array`]).
pub(crate) fn opt_utf8_array<'a, I>(values: I) -> ArrayRef
where
    I: Iterator<Item = Option<&'a str>> + Clone,
{
    let (n, bytes) = values
        .clone()
        .fold((0, 0), |(n, b), s| (n + 1, b + s.map_or(0, str::len)));
    let mut b = StringBuilder::with_capacity(n, bytes);
    for v in values {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

/// A non-null UTC microsecond timestamp array.
pub(crate) fn timestamp_array(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(
        PrimitiveArray::<TimestampMicrosecondType>::from_iter_values(values).with_timezone(UTC),
    )
}

/// A nullable UTC microsecond timestamp array.
pub(crate) fn opt_timestamp_array(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(PrimitiveArray::<TimestampMicrosecondType>::from_iter(values).with_timezone(UTC))
}

/// A Decimal128(38, `scale`) array.
pub(crate) fn decimal_array(values: impl Iterator<Item = i128>, scale: i8) -> ArrayRef {
    Arc::new(
        PrimitiveArray::<Decimal128Type>::from_iter_values(values)
            .with_data_type(DataType::Decimal128(DECIMAL_PRECISION, scale)),
    )
}

/// Precision of every decimal column: the widest Decimal128.
pub const DECIMAL_PRECISION: u8 = 38;
/// Largest magnitude (in raw units) a Decimal128(38, _) column holds.
pub const DECIMAL_MAX_UNITS: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

/// Typed, validated access to the columns of one batch of a dataset.
pub(crate) struct Columns<'a> {
    batch: &'a RecordBatch,
    path: &'a Path,
    dataset: &'static str,
}

impl<'a> Columns<'a> {
    /// Column access for `batch` read from `path`.
    pub(crate) fn new(batch: &'a RecordBatch, path: &'a Path, dataset: &'static str) -> Self {
        Columns {
            batch,
            path,
            dataset,
        }
    }

    /// Whether the batch has a column `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.batch.column_by_name(name).is_some()
    }

    /// A schema error on this batch's file.
    pub(crate) fn error(&self, message: impl Into<String>) -> WarehouseError {
        WarehouseError::Schema {
            path: self.path.to_path_buf(),
            dataset: self.dataset,
            message: message.into(),
        }
    }

    fn typed<T: Array + 'static>(
        &self,
        name: &str,
        expected: &str,
        ok: impl Fn(&DataType) -> bool,
        required: bool,
    ) -> Result<&'a T, WarehouseError> {
        let col = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| self.error(format!("no column {name:?}")))?;
        let dt = col.data_type();
        let arr = if ok(dt) {
            col.as_any().downcast_ref::<T>()
        } else {
            None
        };
        let arr =
            arr.ok_or_else(|| self.error(format!("column {name:?} is {dt}, expected {expected}")))?;
        if required && arr.null_count() > 0 {
            return Err(self.error(format!(
                "column {name:?} has {} null values",
                arr.null_count()
            )));
        }
        Ok(arr)
    }

    /// A Utf8 column; `required` rejects nulls.
    pub(crate) fn utf8(
        &self,
        name: &str,
        required: bool,
    ) -> Result<&'a StringArray, WarehouseError> {
        self.typed(name, "Utf8", |d| *d == DataType::Utf8, required)
    }

    /// A Boolean column.
    pub(crate) fn boolean(
        &self,
        name: &str,
        required: bool,
    ) -> Result<&'a BooleanArray, WarehouseError> {
        self.typed(name, "Boolean", |d| *d == DataType::Boolean, required)
    }

    /// A Date32 column.
    pub(crate) fn date32(
        &self,
        name: &str,
        required: bool,
    ) -> Result<&'a PrimitiveArray<Date32Type>, WarehouseError> {
        self.typed(name, "Date32", |d| *d == DataType::Date32, required)
    }

    /// A Float64 column.
    pub(crate) fn float64(
        &self,
        name: &str,
        required: bool,
    ) -> Result<&'a PrimitiveArray<Float64Type>, WarehouseError> {
        self.typed(name, "Float64", |d| *d == DataType::Float64, required)
    }

    /// An Int32 column.
    pub(crate) fn int32(
        &self,
        name: &str,
        required: bool,
    ) -> Result<&'a PrimitiveArray<Int32Type>, WarehouseError> {
        self.typed(name, "Int32", |d| *d == DataType::Int32, required)
    }

    /// An Int64 column.
    pub(crate) fn int64(
        &self,
        name: &str,
        required: bool,
    ) -> Result<&'a PrimitiveArray<Int64Type>, WarehouseError> {
        self.typed(name, "Int64", |d| *d == DataType::Int64, required)
    }

    /// A UInt64 column.
    pub(crate) fn uint64(
        &self,
        name: &str,
        required: bool,
    ) -> Result<&'a PrimitiveArray<UInt64Type>, WarehouseError> {
        self.typed(name, "UInt64", |d| *d == DataType::UInt64, required)
    }

    /// A microsecond timestamp column (any zone: the values are UTC instants either way).
    pub(crate) fn timestamp_us(
        &self,
        name: &str,
        required: bool,
    ) -> Result<&'a PrimitiveArray<TimestampMicrosecondType>, WarehouseError> {
        self.typed(
            name,
            "Timestamp(Microsecond, \"UTC\")",
            |d| matches!(d, DataType::Timestamp(TimeUnit::Microsecond, _)),
            required,
        )
    }

    /// A Decimal128 column of exactly `scale` decimal places.
    pub(crate) fn decimal128(
        &self,
        name: &str,
        scale: i8,
        required: bool,
    ) -> Result<&'a PrimitiveArray<Decimal128Type>, WarehouseError> {
        self.typed(
            name,
            &format!("Decimal128({DECIMAL_PRECISION}, {scale})"),
            |d| matches!(d, DataType::Decimal128(_, s) if *s == scale),
            required,
        )
    }

    /// A List<Utf8> column: the list array and its values.
    pub(crate) fn list_utf8(
        &self,
        name: &str,
        required: bool,
    ) -> Result<(&'a ListArray, &'a StringArray), WarehouseError> {
        let list: &ListArray = self.typed(
            name,
            "List<Utf8>",
            |d| matches!(d, DataType::List(f) if *f.data_type() == DataType::Utf8),
            required,
        )?;
        let values = list
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| self.error(format!("column {name:?} is not a list of Utf8")))?;
        Ok((list, values))
    }
}

/// The value at `i` of a nullable string column.
pub(crate) fn opt_str(a: &StringArray, i: usize) -> Option<Box<str>> {
    opt_str_ref(a, i).map(Box::from)
}

/// The value at `i` of a nullable string column, borrowed.
pub(crate) fn opt_str_ref(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// The value at `i` of a nullable primitive column.
pub(crate) fn opt_value<T: arrow_array::ArrowPrimitiveType>(
    a: &PrimitiveArray<T>,
    i: usize,
) -> Option<T::Native> {
    if a.is_null(i) { None } else { Some(a.value(i)) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn numbers(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::UInt64, false)]));
        let values = arrow_array::UInt64Array::from_iter_values(0..n as u64);
        RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap()
    }

    fn part_rows(dir: &Path) -> Vec<usize> {
        list_parquet_files(dir)
            .unwrap()
            .iter()
            .map(|p| row_count(p).unwrap().unwrap())
            .collect()
    }

    #[test]
    fn streamed_parts_fill_up_to_their_size_in_order() {
        let d = tempfile::tempdir().unwrap();
        let schema = numbers(0).schema();
        let props = writer_properties(&[]);
        let batches = [3, 0, 4, 2].map(|n| Ok(numbers(n)));
        let st = write_parts_streaming(d.path(), &schema, &props, batches.into_iter(), 4).unwrap();
        assert_eq!((st.files, st.rows), (3, 9));
        assert_eq!(part_rows(d.path()), [4, 4, 1]);
        // Exactly full parts make no empty one; nothing still makes one.
        let d = tempfile::tempdir().unwrap();
        let batches = [4, 4].map(|n| Ok(numbers(n)));
        write_parts_streaming(d.path(), &schema, &props, batches.into_iter(), 4).unwrap();
        assert_eq!(part_rows(d.path()), [4, 4]);
        let d = tempfile::tempdir().unwrap();
        write_parts_streaming(d.path(), &schema, &props, std::iter::empty(), 4).unwrap();
        assert_eq!(part_rows(d.path()), [0]);
    }

    #[test]
    fn a_failing_batch_stops_a_streamed_part_and_leaves_it_unwritten() {
        let d = tempfile::tempdir().unwrap();
        let schema = numbers(0).schema();
        let failed = WarehouseError::Format {
            path: d.path().join("input"),
            message: "damaged".into(),
        };
        let batches = [Ok(numbers(4)), Ok(numbers(1)), Err(failed)];
        let props = writer_properties(&[]);
        let err = write_parts_streaming(d.path(), &schema, &props, batches.into_iter(), 4);
        assert!(err.unwrap_err().to_string().contains("damaged"));
        assert_eq!(
            part_rows(d.path()),
            [4],
            "the part that failed is not there"
        );
    }
    use arrow_schema::{Field, Schema};
    use parquet::arrow::ArrowWriter;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]))
    }

    #[test]
    fn a_window_reads_only_the_row_groups_its_statistics_allow_and_the_columns_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), Some(props))
            .unwrap();
        let t: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3, 4, 5, 6]));
        w.write(
            &RecordBatch::try_new(
                schema,
                vec![t, utf8_array(["a", "b", "c", "d", "e", "f"].into_iter())],
            )
            .unwrap(),
        )
        .unwrap();
        w.close().unwrap();
        let read = |window| -> Vec<(usize, usize)> {
            open_projected(&path, &["t"], window)
                .unwrap()
                .map(|r| {
                    r.map(|b| b.map(|b| (b.num_rows(), b.num_columns())))
                        .collect::<Result<_, _>>()
                        .unwrap()
                })
                .unwrap_or_default()
        };
        // Row groups [1,2] [3,4] [5,6]: the window [4, 5) touches the second only.
        assert_eq!(read(Some(("t", 4, 5))), [(2, 1)]);
        assert_eq!(
            read(Some(("t", 2, 6))).iter().map(|r| r.0).sum::<usize>(),
            6
        );
        assert!(read(Some(("t", 7, 9))).is_empty());
        assert_eq!(read(None).iter().map(|r| r.0).sum::<usize>(), 6);
    }

    fn batch(values: &[&str]) -> RecordBatch {
        RecordBatch::try_new(schema(), vec![utf8_array(values.iter().copied())]).unwrap()
    }

    fn no_temp_files(dir: &Path) -> bool {
        fs::read_dir(dir)
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
    }

    #[test]
    fn writes_atomically_and_reads_back_in_path_order() {
        let d = tempfile::tempdir().unwrap();
        let props = writer_properties_with(&["s"], &["s"]);
        write_batches(
            &d.path().join("b/part-00000.parquet"),
            &schema(),
            &props,
            [batch(&["b"])],
        )
        .unwrap();
        let st = write_batches(
            &d.path().join("a/part-00000.parquet"),
            &schema(),
            &props,
            [batch(&["a1"]), batch(&["a2"])],
        )
        .unwrap();
        assert_eq!((st.files, st.rows), (1, 2));
        assert!(st.bytes > 0);
        fs::write(d.path().join("a/_ignored.parquet"), b"junk").unwrap();
        fs::write(d.path().join("a/notes.txt"), b"junk").unwrap();
        let got: Vec<String> = read_batches(d.path())
            .unwrap()
            .flat_map(|r| {
                let (_, b) = r.unwrap();
                let a = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone();
                a.iter().map(|s| s.unwrap().to_string()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(got, ["a1", "a2", "b"]);
        assert!(no_temp_files(&d.path().join("a")) && no_temp_files(&d.path().join("b")));
    }

    #[test]
    fn missing_folder_reads_as_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_batches(&d.path().join("nope")).unwrap().count(), 0);
    }

    #[test]
    fn failing_write_names_the_path_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let blocker = d.path().join("blocker");
        fs::write(&blocker, b"a file, not a folder").unwrap();
        let err = write_batches(
            &blocker.join("x.parquet"),
            &schema(),
            &writer_properties(&[]),
            [batch(&["a"])],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );

        // A failure inside the write removes the temporary file.
        let target = d.path().join("t.parquet");
        let err = write_atomically(&target, |_| Err(format_err(&target, "boom"))).unwrap_err();
        assert!(err.to_string().contains("t.parquet"), "{err}");
        assert!(!target.exists());
        assert!(no_temp_files(d.path()));
    }

    #[test]
    fn corrupt_file_is_a_format_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.parquet");
        fs::write(&p, b"not parquet at all").unwrap();
        let err = read_batches(d.path()).unwrap().next().unwrap().unwrap_err();
        assert!(matches!(err, WarehouseError::Format { .. }));
        assert!(err.to_string().contains("bad.parquet"), "{err}");
    }
}
