//! cvm-etl: the nightly batch jobs: ingest a multi-channel drop into a Parquet
//! warehouse, resolve identities, and compute customer value scores.

pub mod record;
pub mod sources;
pub mod warehouse;
