//! One customer's rows out of the warehouse's Parquet files, found by
//! column values and printed as text (for the data export). Generic over
//! the files' schemas: it needs only the names of the columns it matches on,
//! so every column a dataset has, now or later, is exported.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Why a warehouse file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not readable Parquet.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Rows as text: a header and one line per matching row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Column names (the first file's; every file of a dataset has the same).
    pub columns: Vec<String>,
    /// Values, empty for nulls.
    pub rows: Vec<Vec<String>>,
}

/// The `.parquet` files under `dir` (recursively), sorted; none if it does not exist.
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, ScanError> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| ScanError::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ScanError::Io {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `file` as a list of files to scan: itself, or none if it does not exist.
pub fn if_exists(file: PathBuf) -> Vec<PathBuf> {
    if file.exists() {
        vec![file]
    } else {
        Vec::new()
    }
}

/// The text of `column` in row `i`, if it is a string column and not null.
pub fn text<'a>(batch: &'a RecordBatch, column: &str, i: usize) -> Option<&'a str> {
    let array = batch.column_by_name(column)?;
    let strings = array.as_any().downcast_ref::<StringArray>()?;
    (!strings.is_null(i)).then(|| strings.value(i))
}

/// Every row of `files` for which `keep(batch, row)` holds.
pub fn rows_where(
    files: &[PathBuf],
    mut keep: impl FnMut(&RecordBatch, usize) -> bool,
) -> Result<Table, ScanError> {
    let mut table = Table::default();
    let options = FormatOptions::default().with_null("");
    for path in files {
        let format = |e: &dyn std::fmt::Display| ScanError::Format {
            path: path.clone(),
            message: e.to_string(),
        };
        let file = File::open(path).map_err(|source| ScanError::Io {
            path: path.clone(),
            source,
        })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| format(&e))?
            .build()
            .map_err(|e| format(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| format(&e))?;
            if table.columns.is_empty() {
                table.columns = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
            }
            let matching: Vec<usize> = (0..batch.num_rows()).filter(|&i| keep(&batch, i)).collect();
            if matching.is_empty() {
                continue;
            }
            let formatters = batch
                .columns()
                .iter()
                .map(|a| ArrayFormatter::try_new(a.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format(&e))?;
            for i in matching {
                table
                    .rows
                    .push(formatters.iter().map(|f| f.value(i).to_string()).collect());
            }
        }
    }
    Ok(table)
}

/// Every row of `files` whose `column` is one of `wanted`.
pub fn rows_with(
    files: &[PathBuf],
    column: &str,
    wanted: &HashSet<String>,
) -> Result<Table, ScanError> {
    rows_where(files, |b, i| {
        text(b, column, i).is_some_and(|v| wanted.contains(v))
    })
}
