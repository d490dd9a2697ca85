//! Probability models and per-customer scoring math of `docs/scoring.md`, as pure
//! functions of plain numbers (no I/O types): summary statistics, BG/NBD,
//! Gamma-Gamma, CLV and the RFM-derived labels, and one customer's score row
//! from them (`customer`).

pub mod bgnbd;
pub mod clv;
pub mod customer;
pub mod gammagamma;
pub mod optimize;
pub mod rfm;
pub mod special;
pub mod summary;

#[cfg(test)]
mod tests;
