//! cvm-etl: the nightly batch jobs.
