//! Exit codes, for schedulers (documented in the README and the runbook),
//! and the one place that says which error ends a run with which code.

use cvm_shared::db::DbError;

use crate::generate::GenerateError;
use crate::jobs::evaluate::EvaluateError;
use crate::jobs::ingest::IngestError;
use crate::jobs::load::LoadError;
use crate::jobs::nightly::NightlyError;
use crate::jobs::score::ScoreError;
use crate::privacy::PrivacyError;
use crate::sources::reader::ReadError;
use crate::warehouse::WarehouseError;
use crate::warehouse::publish::PublishError;

/// The run failed (input unreadable, warehouse error, ...): a retry may help.
pub const FAILED: u8 = 1;
/// Bad command line, configuration or input folder, or a warehouse whose
/// `current` must be restored: nothing a retry would fix.
pub const USAGE: u8 = 2;
/// More records were rejected than the reject limit allows; nothing published.
pub const REJECT_LIMIT: u8 = 3;
/// Another run holds the warehouse lock.
pub const LOCKED: u8 = 4;

/// An error that knows the exit code it ends `cvm-etl` with.
pub trait ExitStatus {
    /// One of [`FAILED`], [`USAGE`], [`REJECT_LIMIT`], [`LOCKED`].
    fn exit_code(&self) -> u8;
}

impl ExitStatus for PublishError {
    fn exit_code(&self) -> u8 {
        match self {
            PublishError::Locked(_) => LOCKED,
            // Only an operator can repair `current`: no scheduler retry.
            PublishError::CurrentBroken { .. }
            | PublishError::NotAVersion { .. }
            | PublishError::NoSuchVersion { .. } => USAGE,
            PublishError::Io { .. } => FAILED,
        }
    }
}

impl ExitStatus for DbError {
    fn exit_code(&self) -> u8 {
        match self {
            DbError::InvalidUrl { .. } => USAGE,
            _ => FAILED,
        }
    }
}

impl ExitStatus for IngestError {
    fn exit_code(&self) -> u8 {
        match self {
            IngestError::RejectLimit { .. } => REJECT_LIMIT,
            IngestError::Publish(e) => e.exit_code(),
            // The input itself must be fixed.
            IngestError::Discover(_)
            | IngestError::Privacy(_)
            | IngestError::Pseudonymise(_)
            | IngestError::EmptyDrop(_)
            | IngestError::FxConflict(_)
            | IngestError::Read(
                ReadError::DuplicateColumn { .. } | ReadError::HeaderEncoding { .. },
            ) => USAGE,
            // Only the cvm that wrote it can read it: no scheduler retry.
            IngestError::Warehouse(WarehouseError::NewerFormat { .. }) => USAGE,
            IngestError::Read(_) | IngestError::Warehouse(_) | IngestError::RunFiles { .. } => {
                FAILED
            }
        }
    }
}

impl ExitStatus for ScoreError {
    fn exit_code(&self) -> u8 {
        match self {
            ScoreError::Publish(e) => e.exit_code(),
            ScoreError::Empty(_) | ScoreError::Warehouse(WarehouseError::NewerFormat { .. }) => {
                USAGE
            }
            _ => FAILED,
        }
    }
}

impl ExitStatus for EvaluateError {
    fn exit_code(&self) -> u8 {
        match self {
            EvaluateError::Publish(e) => e.exit_code(),
            EvaluateError::Empty(_) | EvaluateError::Dates { .. } => USAGE,
            _ => FAILED,
        }
    }
}

impl ExitStatus for LoadError {
    fn exit_code(&self) -> u8 {
        match self {
            LoadError::NoWarehouse(_) | LoadError::NoScores { .. } | LoadError::Privacy(_) => USAGE,
            LoadError::Db(e) => e.exit_code(),
            _ => FAILED,
        }
    }
}

impl ExitStatus for NightlyError {
    fn exit_code(&self) -> u8 {
        match self {
            NightlyError::Locked(e) => e.exit_code(),
            NightlyError::Ingest(e) => e.exit_code(),
            NightlyError::Score(e) => e.exit_code(),
            NightlyError::Load(e) => e.exit_code(),
            NightlyError::Db(e) => e.exit_code(),
            NightlyError::Privacy(e) => e.exit_code(),
        }
    }
}

impl ExitStatus for PrivacyError {
    fn exit_code(&self) -> u8 {
        use cvm_shared::privacy::erase::EraseError;
        use cvm_shared::privacy::export::ExportError;
        match self {
            // A missing key or an unknown customer: nothing a retry would fix.
            PrivacyError::Key(_)
            | PrivacyError::Erase(EraseError::NotFound(_))
            | PrivacyError::Export(ExportError::NotFound(_)) => USAGE,
            PrivacyError::Db(e) | PrivacyError::Erase(EraseError::Db(e)) => e.exit_code(),
            PrivacyError::Export(ExportError::Db(e)) => e.exit_code(),
            PrivacyError::Publish(e) => e.exit_code(),
            _ => FAILED,
        }
    }
}

impl ExitStatus for GenerateError {
    fn exit_code(&self) -> u8 {
        match self {
            GenerateError::NotEmpty(_) | GenerateError::Options { .. } => USAGE,
            GenerateError::Io { .. } => FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_nightly_failure_ends_with_the_code_of_the_step_that_failed() {
        let locked = || PublishError::Locked(PathBuf::from("wh"));
        assert_eq!(NightlyError::Locked(locked()).exit_code(), LOCKED);
        assert_eq!(
            NightlyError::Ingest(IngestError::Publish(locked())).exit_code(),
            LOCKED
        );
        let limit = IngestError::RejectLimit {
            rejected: 2,
            records: 3,
            share: 66.0,
            limit: 1.0,
            rejects: PathBuf::from("r"),
        };
        assert_eq!(NightlyError::Ingest(limit).exit_code(), REJECT_LIMIT);
        assert_eq!(
            NightlyError::Score(ScoreError::Empty(PathBuf::from("wh"))).exit_code(),
            USAGE
        );
        assert_eq!(
            NightlyError::Load(LoadError::NoWarehouse(PathBuf::from("wh"))).exit_code(),
            USAGE
        );
        assert_eq!(
            IngestError::EmptyDrop(PathBuf::from("in")).exit_code(),
            USAGE
        );
    }
}
