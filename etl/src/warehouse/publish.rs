//! Atomic, crash-safe publishing of warehouse versions.
//!
//! A run stages a complete new version under `_versions/<run_id>.tmp/`,
//! syncs it, renames it to `_versions/<run_id>/`, and then swaps the
//! `current` symlink with one `rename(2)`, which is atomic on POSIX file
//! systems. Readers that go through `current` (or the dataset links
//! `customers`, `transactions`, `events`, which point into it) see either the
//! old version or the new one, never a mix. A crash at any moment leaves the
//! last published version intact; the next run sweeps the leftovers.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// The datasets that live inside a version and are linked at the top level.
pub const DATASETS: [&str; 3] = ["customers", "transactions", "events"];

/// Published versions kept (the current one and the one before it).
const KEEP_VERSIONS: usize = 2;

/// Why a warehouse could not be opened or published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Another process holds the warehouse lock.
    #[error(
        "warehouse {0} is locked by another cvm-etl run; wait for it to finish (or remove nothing: the lock is released when that process exits)"
    )]
    Locked(PathBuf),
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open warehouse folder, locked for this process while the value lives.
#[derive(Debug)]
pub struct Warehouse {
    root: PathBuf,
    _lock: File,
}

/// A version being written; publish it with [`Warehouse::publish`].
#[derive(Debug)]
pub struct Staging {
    /// Folder to write the version's datasets into.
    pub dir: PathBuf,
    id: String,
}

/// Test hook: `CVM_TEST_CRASH_AT=<point>` aborts the process at that point of
/// publishing, to prove crash safety end to end.
fn crash_point(point: &str) {
    if std::env::var("CVM_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("CVM_TEST_CRASH_AT={point}: aborting as asked");
        std::process::abort();
    }
}

/// Fsyncs a folder so renames inside it are durable.
fn sync_dir(dir: &Path) -> Result<(), PublishError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

fn sync_tree(dir: &Path) -> Result<(), PublishError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let p = entry.path();
        if entry.file_type().map_err(io(&p))?.is_dir() {
            sync_tree(&p)?;
        } else {
            File::open(&p).and_then(|f| f.sync_all()).map_err(io(&p))?;
        }
    }
    sync_dir(dir)
}

/// Points `link` at `target` atomically (a new link renamed over the old).
fn swap_symlink(target: &Path, link: &Path) -> Result<(), PublishError> {
    let tmp = link.with_extension("tmp-link");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io(&tmp))?;
    fs::rename(&tmp, link).map_err(io(link))
}

/// How long [`Warehouse::open`] retries a lock that is held.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl Warehouse {
    /// Opens (creating if needed) a warehouse folder and takes its lock.
    pub fn open(root: &Path) -> Result<Warehouse, PublishError> {
        fs::create_dir_all(root.join("_versions")).map_err(io(root))?;
        let lock_path = root.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        // A lock held for longer than LOCK_GRACE is another run. Shorter holds
        // happen without one: a child process forked by any thread of this
        // process holds a copy of the lock's descriptor until it execs.
        let started = std::time::Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_GRACE => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(PublishError::Locked(root.to_path_buf()));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(PublishError::Io {
                        path: lock_path,
                        source: e,
                    });
                }
            }
        }
        Ok(Warehouse {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The warehouse folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The published version folder, if anything was ever published.
    pub fn current(&self) -> Option<PathBuf> {
        let link = self.root.join("current");
        let target = fs::read_link(&link).ok()?;
        let dir = self.root.join(target);
        dir.is_dir().then_some(dir)
    }

    /// The id of the published version.
    pub fn current_id(&self) -> Option<String> {
        self.current()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// Starts a new version for run `id`, sweeping leftovers of crashed runs.
    pub fn begin(&self, id: &str) -> Result<Staging, PublishError> {
        self.sweep_staging()?;
        let dir = self.root.join("_versions").join(format!("{id}.tmp"));
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Staging {
            dir,
            id: id.to_string(),
        })
    }

    fn sweep_staging(&self) -> Result<(), PublishError> {
        let versions = self.root.join("_versions");
        for entry in fs::read_dir(&versions).map_err(io(&versions))? {
            let p = entry.map_err(io(&versions))?.path();
            if p.extension().is_some_and(|e| e == "tmp") {
                fs::remove_dir_all(&p).map_err(io(&p))?;
            }
        }
        Ok(())
    }

    /// Makes a staged version the current one, atomically. Returns its folder.
    pub fn publish(&self, staging: Staging) -> Result<PathBuf, PublishError> {
        for d in DATASETS {
            fs::create_dir_all(staging.dir.join(d)).map_err(io(&staging.dir))?;
        }
        sync_tree(&staging.dir)?;
        crash_point("before_publish");
        let versions = self.root.join("_versions");
        let final_dir = versions.join(&staging.id);
        fs::rename(&staging.dir, &final_dir).map_err(io(&final_dir))?;
        sync_dir(&versions)?;
        crash_point("before_switch");
        swap_symlink(
            &Path::new("_versions").join(&staging.id),
            &self.root.join("current"),
        )?;
        for d in DATASETS {
            let link = self.root.join(d);
            if fs::symlink_metadata(&link).is_err() {
                swap_symlink(&Path::new("current").join(d), &link)?;
            }
        }
        sync_dir(&self.root)?;
        crash_point("after_switch");
        self.prune()?;
        Ok(final_dir)
    }

    /// Deletes published versions older than the last [`KEEP_VERSIONS`].
    fn prune(&self) -> Result<(), PublishError> {
        let versions = self.root.join("_versions");
        let current = self.current_id();
        let mut dirs: Vec<PathBuf> = fs::read_dir(&versions)
            .map_err(io(&versions))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.extension().is_none_or(|e| e != "tmp"))
            .collect();
        // Run ids start with a UTC timestamp, so names sort by age.
        dirs.sort();
        let excess = dirs.len().saturating_sub(KEEP_VERSIONS);
        for d in dirs.into_iter().take(excess) {
            if d.file_name().map(|n| n.to_string_lossy().into_owned()) != current {
                fs::remove_dir_all(&d).map_err(io(&d))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(w: &Warehouse, id: &str, content: &str) -> PathBuf {
        let s = w.begin(id).unwrap();
        fs::create_dir_all(s.dir.join("customers")).unwrap();
        fs::write(s.dir.join("customers/part-00000.parquet"), content).unwrap();
        w.publish(s).unwrap()
    }

    #[test]
    fn publishing_switches_current_and_links_datasets() {
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        assert_eq!(w.current(), None);
        stage(&w, "20260101T000000Z-a", "one");
        assert_eq!(
            fs::read_to_string(d.path().join("customers/part-00000.parquet")).unwrap(),
            "one"
        );
        stage(&w, "20260102T000000Z-b", "two");
        assert_eq!(
            fs::read_to_string(d.path().join("customers/part-00000.parquet")).unwrap(),
            "two"
        );
        assert_eq!(w.current_id().as_deref(), Some("20260102T000000Z-b"));
        assert!(d.path().join("transactions").is_dir());
    }

    #[test]
    fn only_the_last_two_versions_are_kept_and_leftovers_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        fs::create_dir_all(d.path().join("_versions/crashed.tmp")).unwrap();
        for (i, id) in [
            "20260101T000000Z-a",
            "20260102T000000Z-b",
            "20260103T000000Z-c",
        ]
        .iter()
        .enumerate()
        {
            stage(&w, id, &i.to_string());
        }
        let mut left: Vec<_> = fs::read_dir(d.path().join("_versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["20260102T000000Z-b", "20260103T000000Z-c"]);
    }

    #[test]
    fn a_second_process_is_refused_while_the_lock_is_held() {
        let d = tempfile::tempdir().unwrap();
        let _w = Warehouse::open(d.path()).unwrap();
        let err = Warehouse::open(d.path()).unwrap_err();
        assert!(matches!(err, PublishError::Locked(_)), "{err}");
    }
}
