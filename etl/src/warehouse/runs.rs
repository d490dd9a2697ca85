//! Run folders: `runs/<run_id>/` holds what one command did (its manifest,
//! rejects, report). A run writes them into a hidden staging folder and
//! renames it into place whole, so a reader never sees half a run, and a run
//! killed mid-write leaves only a hidden folder that the next run sweeps.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::publish::{PublishError, entries};

/// The folder under a warehouse that holds the run folders.
pub const RUNS: &str = "runs";

/// A run folder being written; [`RunFolder::finish`] moves it into place.
/// Dropped unfinished (a failed write), it removes its staging folder.
#[derive(Debug)]
pub struct RunFolder {
    staging: PathBuf,
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RunFolder {
    /// Starts `runs/<run_id>/` of `warehouse`, staged as `runs/.<run_id>.tmp/`.
    pub fn stage(warehouse: &Path, run_id: &str) -> Result<RunFolder, PublishError> {
        let runs = warehouse.join(RUNS);
        let staging = runs.join(format!(".{run_id}.tmp"));
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        Ok(RunFolder {
            staging,
            dir: runs.join(run_id),
        })
    }

    /// Where the run's files go until [`RunFolder::finish`].
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The run folder once finished.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `name` as pretty JSON.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), PublishError> {
        let path = self.staging.join(name);
        crate::manifest::write_json(&path, value).map_err(io(&path))
    }

    /// Writes `name` with `bytes`.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<(), PublishError> {
        let path = self.staging.join(name);
        fs::write(&path, bytes).map_err(io(&path))
    }

    /// Moves the finished run folder into place; returns it.
    pub fn finish(self) -> Result<PathBuf, PublishError> {
        fs::rename(&self.staging, &self.dir).map_err(io(&self.dir))?;
        Ok(self.dir.clone())
    }
}

impl Drop for RunFolder {
    fn drop(&mut self) {
        // After `finish` the staging folder was renamed away: nothing to remove.
        if let Err(e) = fs::remove_dir_all(&self.staging)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.staging.display(), error = %e, "could not remove the staging folder of an unfinished run; the next run removes it");
        }
    }
}

/// Removes the staging folders of runs that were killed (the warehouse lock
/// is held, so none is being written).
pub(super) fn sweep(warehouse: &Path) -> Result<(), PublishError> {
    for p in entries(&warehouse.join(RUNS))? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp")) {
            fs::remove_dir_all(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_run_folder_appears_whole_only_when_finished() {
        let wh = tempfile::tempdir().unwrap();
        let run = RunFolder::stage(wh.path(), "r1").unwrap();
        run.write_json("manifest.json", &serde_json::json!({"a": 1}))
            .unwrap();
        run.write_bytes("report.html", b"<p>").unwrap();
        assert!(!wh.path().join("runs/r1").exists());
        let dir = run.finish().unwrap();
        assert_eq!(dir, wh.path().join("runs/r1"));
        assert!(dir.join("manifest.json").is_file());
        assert!(dir.join("report.html").is_file());
        assert!(!wh.path().join("runs/.r1.tmp").exists());
    }

    #[test]
    fn an_unfinished_run_folder_leaves_nothing_and_stale_ones_are_swept() {
        let wh = tempfile::tempdir().unwrap();
        {
            let run = RunFolder::stage(wh.path(), "r2").unwrap();
            run.write_bytes("x", b"1").unwrap();
        }
        assert!(!wh.path().join("runs/.r2.tmp").exists());
        assert!(!wh.path().join("runs/r2").exists());
        // A killed run leaves its staging folder; the sweep removes only that.
        let run = RunFolder::stage(wh.path(), "r3").unwrap();
        std::mem::forget(run);
        RunFolder::stage(wh.path(), "r4").unwrap().finish().unwrap();
        sweep(wh.path()).unwrap();
        assert!(!wh.path().join("runs/.r3.tmp").exists());
        assert!(wh.path().join("runs/r4").is_dir());
    }
}
