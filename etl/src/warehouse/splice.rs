//! A Parquet file copied with one column made again: every other column's
//! pages are copied as they are, neither decompressed nor encoded, with
//! their statistics and page index. A claim renames the customers of a few
//! rows of a month's file; decoding and encoding the whole file for it took
//! a third of a night's CPU when a CRM delivery claimed many guests.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use arrow_array::ArrayRef;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, PageIndexPolicy};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;

use super::WarehouseError;
use super::parquet_io::{
    Columns, READ_BATCH_ROWS, WriteStats, format_err, io_err, write_atomically,
};

/// Writes `to`: the Parquet file `from` (of `schema`, flat: one leaf per
/// field) with column `column` replaced, row group by row group, by what
/// `make` returns for each batch of the `inputs` columns read from it (as
/// many rows as the batch). `dataset` names the file in errors.
pub(crate) fn replace_column<F>(
    from: &Path,
    to: &Path,
    schema: &SchemaRef,
    props: &WriterProperties,
    column: usize,
    (inputs, dataset): (&[&str], &'static str),
    mut make: F,
) -> Result<WriteStats, WarehouseError>
where
    F: FnMut(&Columns<'_>) -> Result<ArrayRef, WarehouseError>,
{
    let file = File::open(from).map_err(|e| io_err(from, e))?;
    // The page index and the pages' encodings are copied with the pages.
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .with_encoding_stats_as_mask(false);
    let meta = ArrowReaderMetadata::load(&file, options).map_err(|e| format_err(from, e))?;
    let parquet = meta.metadata().clone();
    let leaves = parquet.file_metadata().schema_descr().num_columns();
    let field = schema
        .fields()
        .get(column)
        .filter(|_| leaves == schema.fields().len())
        .ok_or_else(|| {
            format_err(
                from,
                format!("column {column} of a flat {leaves}-column file cannot be replaced"),
            )
        })?;
    let inputs = ProjectionMask::columns(
        parquet.file_metadata().schema_descr(),
        inputs.iter().copied(),
    );
    let mut rows = 0u64;
    let bytes = write_atomically(to, |out| {
        let err = |e| format_err(to, e);
        let (mut writer, columns) = ArrowWriter::try_new(out, schema.clone(), Some(props.clone()))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(err)?;
        for (g, group) in parquet.row_groups().iter().enumerate() {
            let mut made = columns
                .create_column_writers(g)
                .map_err(err)?
                .swap_remove(column);
            let source = file.try_clone().map_err(|e| io_err(from, e))?;
            let read = ParquetRecordBatchReaderBuilder::new_with_metadata(source, meta.clone())
                .with_projection(inputs.clone())
                .with_row_groups(vec![g])
                .with_batch_size(READ_BATCH_ROWS)
                .build()
                .map_err(|e| format_err(from, e))?;
            for batch in read {
                let batch = batch.map_err(|e| format_err(from, e))?;
                let array = make(&Columns::new(&batch, from, dataset))?;
                if array.len() != batch.num_rows() {
                    return Err(format_err(
                        from,
                        format!("{} values made for {} rows", array.len(), batch.num_rows()),
                    ));
                }
                for leaf in compute_leaves(field, &array).map_err(err)? {
                    made.write(&leaf).map_err(err)?;
                }
            }
            let mut made = Some(made.close().map_err(err)?);
            let index = parquet.page_index_for_row_group(g);
            let mut out = writer.next_row_group().map_err(err)?;
            for (c, chunk) in group.columns().iter().enumerate() {
                if c == column {
                    if let Some(made) = made.take() {
                        made.append_to_row_group(&mut out).map_err(err)?;
                    }
                    continue;
                }
                let copied = ColumnCloseResult {
                    bytes_written: chunk.compressed_size().max(0) as u64,
                    rows_written: group.num_rows().max(0) as u64,
                    metadata: as_written(chunk).map_err(err)?,
                    bloom_filter: None,
                    column_index: index.column_index(c).cloned(),
                    offset_index: index.offset_index(c).cloned(),
                };
                out.append_column(&file, copied).map_err(err)?;
            }
            out.close().map_err(err)?;
            rows += group.num_rows().max(0) as u64;
        }
        let mut out = writer.into_inner().map_err(err)?;
        out.flush().map_err(|e| io_err(to, e))?;
        Ok(out)
    })?;
    Ok(WriteStats::file(rows, bytes))
}

/// A column chunk's metadata as its writer made it. Read back, statistics
/// do not say that a signed column's writer also filled the deprecated
/// `min`/`max` fields (for older readers); copied as read, they would lose them.
fn as_written(chunk: &ColumnChunkMetaData) -> Result<ColumnChunkMetaData, ParquetError> {
    let signed = chunk.column_descr().sort_order().is_signed();
    let Some(stats) = chunk
        .statistics()
        .filter(|s| signed && !s.is_min_max_deprecated() && !s.is_min_max_backwards_compatible())
    else {
        return Ok(chunk.clone());
    };
    let stats = match stats.clone() {
        Statistics::Boolean(s) => Statistics::Boolean(s.with_backwards_compatible_min_max(true)),
        Statistics::Int32(s) => Statistics::Int32(s.with_backwards_compatible_min_max(true)),
        Statistics::Int64(s) => Statistics::Int64(s.with_backwards_compatible_min_max(true)),
        Statistics::Int96(s) => Statistics::Int96(s.with_backwards_compatible_min_max(true)),
        Statistics::Float(s) => Statistics::Float(s.with_backwards_compatible_min_max(true)),
        Statistics::Double(s) => Statistics::Double(s.with_backwards_compatible_min_max(true)),
        Statistics::ByteArray(s) => {
            Statistics::ByteArray(s.with_backwards_compatible_min_max(true))
        }
        Statistics::FixedLenByteArray(s) => {
            Statistics::FixedLenByteArray(s.with_backwards_compatible_min_max(true))
        }
    };
    chunk.clone().into_builder().set_statistics(stats).build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::EnabledStatistics;
    use parquet::schema::types::ColumnPath;

    use super::*;
    use crate::warehouse::parquet_io::{read_batches, write_batches};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("owner", DataType::Utf8, true),
            Field::new("note", DataType::Utf8, true),
        ]))
    }

    fn props() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from("note"), true)
            .set_column_statistics_enabled(ColumnPath::from("id"), EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(700))
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(50)
            .build()
    }

    /// Rows `0..n`; owners named by `owner`.
    fn batch(n: i64, owner: impl Fn(i64) -> Option<String>) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter((0..n).map(owner))),
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 7 != 0).then(|| format!("note {}", i % 13))),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_replaced_column_gives_the_file_written_with_it_and_copies_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to, expected) = (
            dir.path().join("from.parquet"),
            dir.path().join("to.parquet"),
            dir.path().join("expected.parquet"),
        );
        let old = |i: i64| (i % 3 != 0).then(|| format!("C{}", i / 10));
        let new = |i: i64| (i % 5 != 0).then(|| format!("G{}", i % 17));
        write_batches(&from, &schema(), &props(), [batch(1_500, old)]).unwrap();
        let stats = replace_column(&from, &to, &schema(), &props(), 1, (&["id"], "test"), |c| {
            let ids = c.int64("id", true)?;
            let owners = (0..ids.len()).map(|i| new(ids.value(i)));
            Ok(Arc::new(StringArray::from_iter(owners)) as ArrayRef)
        })
        .unwrap();
        assert_eq!(stats.rows, 1_500);
        // Three row groups, each read as one batch: pages end where a
        // direct write's do, so the bytes are the same.
        write_batches(&expected, &schema(), &props(), [batch(1_500, new)]).unwrap();
        assert_eq!(
            std::fs::read(&to).unwrap(),
            std::fs::read(&expected).unwrap()
        );
        let rows: Vec<RecordBatch> = read_batches(&to).unwrap().map(|b| b.unwrap().1).collect();
        let got = arrow_select::concat::concat_batches(&schema(), &rows).unwrap();
        assert_eq!(got, batch(1_500, new));
    }

    #[test]
    fn a_wrong_number_of_values_is_an_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (
            dir.path().join("from.parquet"),
            dir.path().join("to.parquet"),
        );
        write_batches(&from, &schema(), &props(), [batch(10, |_| None)]).unwrap();
        let e = replace_column(
            &from,
            &to,
            &schema(),
            &props(),
            1,
            (&["id"], "test"),
            |_| Ok(Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        )
        .unwrap_err();
        assert!(e.to_string().contains("1 values made for 10 rows"), "{e}");
        assert!(!to.exists());
    }
}
