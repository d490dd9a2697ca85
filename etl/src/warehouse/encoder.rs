//! How a file's batches become Parquet bytes: one column after another
//! ([`ArrowWriter`]), or each column of a batch on its own rayon task
//! ([`ParallelWriter`]): the same bytes, made on every core. Parallel is for
//! the one big file a step writes while little else runs: the customers a
//! night writes over the stored ones took 1.5 s of one core, alone for most
//! of it. Not for files written side by side by a parallel loop: a task
//! waiting for its columns may start another file, and hold both.
//!
//! [`ParallelWriter`]'s row groups end where [`ArrowWriter`]'s do (its row
//! limit); the writer settings must not ask for a byte limit or
//! content-defined chunking, which only [`ArrowWriter`] applies.

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

/// How a file's columns are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// One after another, on the calling thread.
    Serial,
    /// Each column of a batch on its own rayon task.
    Parallel,
}

/// A Parquet file writer of either [`Encoding`].
pub(crate) enum Encoder<W: Write + Send> {
    Serial(ArrowWriter<W>),
    Parallel(ParallelWriter<W>),
}

impl<W: Write + Send> Encoder<W> {
    /// A writer of `schema` files with `props` into `out`.
    pub(crate) fn try_new(
        out: W,
        schema: SchemaRef,
        props: WriterProperties,
        encoding: Encoding,
    ) -> Result<Self> {
        Ok(match encoding {
            Encoding::Serial => Encoder::Serial(ArrowWriter::try_new(out, schema, Some(props))?),
            Encoding::Parallel => Encoder::Parallel(ParallelWriter::try_new(out, schema, props)?),
        })
    }

    /// Appends `batch`.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Encoder::Serial(w) => w.write(batch),
            Encoder::Parallel(w) => w.write(batch),
        }
    }

    /// Closes the file and returns `out`.
    pub(crate) fn into_inner(self) -> Result<W> {
        match self {
            Encoder::Serial(w) => w.into_inner(),
            Encoder::Parallel(w) => w.into_inner(),
        }
    }
}

/// Writes batches into one Parquet file, each column of a batch encoded on
/// its own rayon task.
pub(crate) struct ParallelWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The column writers of the row group being filled (none between groups).
    group: Vec<ArrowColumnWriter>,
    buffered: usize,
    max_rows: usize,
}

impl<W: Write + Send> ParallelWriter<W> {
    /// A writer of `schema` files with `props` into `out`.
    pub(crate) fn try_new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        if props.max_row_group_bytes().is_some() || props.content_defined_chunking().is_some() {
            return Err(ParquetError::General(
                "a byte limit per row group and content-defined chunking are ArrowWriter's alone"
                    .into(),
            ));
        }
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        // ArrowWriter sets the file up (the Arrow schema in its metadata).
        let (file, factory) =
            ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(ParallelWriter {
            file,
            factory,
            schema,
            group: Vec::new(),
            buffered: 0,
            max_rows,
        })
    }

    /// Appends `batch`, closing row groups as they fill.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            if self.group.is_empty() {
                let index = self.file.flushed_row_groups().len();
                self.group = self.factory.create_column_writers(index)?;
            }
            let take = (self.max_rows - self.buffered).min(rest.num_rows());
            let now = rest.slice(0, take);
            rest = rest.slice(take, rest.num_rows() - take);
            let fields = self.schema.fields();
            let leaves: Vec<Vec<ArrowLeafColumn>> = (0..fields.len())
                .into_par_iter()
                .map(|i| compute_leaves(&fields[i], now.column(i)))
                .collect::<Result<_>>()?;
            let leaves: Vec<ArrowLeafColumn> = leaves.into_iter().flatten().collect();
            if leaves.len() != self.group.len() {
                return Err(ParquetError::General(format!(
                    "{} leaf columns for {} column writers",
                    leaves.len(),
                    self.group.len()
                )));
            }
            self.group
                .par_iter_mut()
                .zip(leaves.par_iter())
                .try_for_each(|(w, leaf)| w.write(leaf))?;
            self.buffered += take;
            if self.buffered >= self.max_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the row group being filled, if any.
    fn flush(&mut self) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.group)
            .into_par_iter()
            .map(ArrowColumnWriter::close)
            .collect::<Result<Vec<_>>>()?;
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.buffered = 0;
        Ok(())
    }

    /// Closes the last row group, writes the footer and returns `out`.
    pub(crate) fn into_inner(mut self) -> Result<W> {
        self.flush()?;
        self.file.into_inner()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let mut lists = ListBuilder::new(StringBuilder::new());
        for i in from..from + rows {
            for j in 0..i % 3 {
                lists.values().append_value(format!("c{j}"));
            }
            lists.append(i % 7 != 0);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(from..from + rows)),
            Arc::new(StringArray::from_iter(
                (from..from + rows).map(|i| (i % 5 != 0).then(|| format!("name {i}"))),
            )),
            Arc::new(lists.finish()),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            ),
        ]));
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn writes_the_bytes_arrow_writer_writes_across_row_groups() {
        let props = || {
            crate::warehouse::parquet_io::writer_properties_with(&["name"], &["id"])
                .into_builder()
                .set_max_row_group_row_count(Some(1000))
                .build()
        };
        // Batches that end inside, at and past row group ends, and an empty one.
        let batches = [
            batch(0, 700),
            batch(700, 300),
            batch(1000, 0),
            batch(1000, 2345),
        ];
        let schema = batches[0].schema();
        let mut serial = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props())).unwrap();
        let mut parallel = ParallelWriter::try_new(Vec::new(), schema, props()).unwrap();
        for b in &batches {
            serial.write(b).unwrap();
            parallel.write(b).unwrap();
        }
        let serial = serial.into_inner().unwrap();
        let parallel = parallel.into_inner().unwrap();
        assert_eq!(parallel, serial);
        let file = tempfile::tempfile().unwrap();
        (&file).write_all(&parallel).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        use parquet::file::reader::FileReader;
        assert_eq!(reader.metadata().num_row_groups(), 4);
    }

    #[test]
    fn refuses_settings_only_arrow_writer_applies() {
        let props = WriterProperties::builder()
            .set_max_row_group_bytes(Some(1 << 20))
            .build();
        let schema = batch(0, 1).schema();
        assert!(ParallelWriter::try_new(Vec::new(), schema, props).is_err());
    }
}
