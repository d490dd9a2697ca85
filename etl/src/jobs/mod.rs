//! The jobs `cvm-etl` runs; each is a library function the binary calls.

pub mod evaluate;
pub mod ingest;
pub mod load;
pub mod nightly;
pub mod progress;
pub mod score;
