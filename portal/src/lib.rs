//! The cvm portal: survey pages, the GraphQL API for marketing staff and the
//! campaign sender. Built out by the portal issues; for now it only exposes the
//! version so the workspace layout is complete.

/// The portal's version, as printed by `cvm-portal --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
