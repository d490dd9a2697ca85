//! cvm-etl: the nightly batch jobs: ingest a multi-channel drop into a Parquet
//! warehouse, resolve identities, and compute customer value scores.

pub mod calendar;
pub mod consolidate;
pub mod exit;
pub mod generate;
pub mod jobs;
pub mod manifest;
pub mod memory;
pub mod models;
pub mod privacy;
pub mod record;
pub mod report;
pub(crate) mod scoring;
pub mod sources;
pub mod text_rows;
pub mod warehouse;
