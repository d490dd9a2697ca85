//! cvm-etl: the nightly batch jobs: ingest a multi-channel drop into a Parquet
//! warehouse, resolve identities, and compute customer value scores.

pub mod models;
pub mod generate;
pub mod record;
pub mod sources;
pub mod warehouse;
pub mod consolidate;
pub mod jobs;
pub mod manifest;
pub mod report;
