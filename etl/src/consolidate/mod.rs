//! Consolidation: versions across files and runs, then identity resolution.

pub mod events;
pub mod identity;
pub mod versions;
