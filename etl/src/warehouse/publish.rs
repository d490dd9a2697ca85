//! Atomic, crash-safe publishing of warehouse versions.
//!
//! A run stages a complete new version under `_versions/<run_id>.tmp/`,
//! syncs it, renames it to `_versions/<run_id>/`, and then swaps the
//! `current` symlink with one `rename(2)`, which is atomic on POSIX file
//! systems. Readers that go through `current` (or the dataset links
//! `customers`, `transactions`, `events`, which point into it) see either the
//! old version or the new one, never a mix. A crash at any moment leaves the
//! last published version intact; the next run sweeps the leftovers, and a
//! run that fails removes its own staging folder at once.
//!
//! A warehouse whose `_versions/` holds published versions but whose
//! `current` is missing, dangling or not a version is an error, never a fresh
//! start (that would publish tonight's drop alone and prune the history);
//! [`Warehouse::restore`] repairs it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// The datasets that live inside a version and are linked at the top level.
pub const DATASETS: [&str; 3] = ["customers", "transactions", "events"];

/// Published versions kept (the current one and the one before it).
const KEEP_VERSIONS: usize = 2;

/// A file in a version that `current` has not pointed at yet. A run killed
/// between moving its version into `_versions/` and switching `current`
/// leaves one: not a published version (it must not pass for the restore
/// point of a lost `current`, nor take a kept slot from the previous one).
const UNPUBLISHED: &str = ".unpublished";

/// Why a warehouse could not be opened or published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Another process holds the warehouse lock.
    #[error(
        "warehouse {0} is locked by another cvm-etl run; wait for it to finish (or remove nothing: the lock is released when that process exits)"
    )]
    Locked(PathBuf),
    /// `current` is missing or dangling while published versions exist.
    #[error(
        "warehouse {root}: `current` {problem}, but _versions/ holds published versions (latest {latest}): nothing was done; restore one with `cvm-etl restore --warehouse {root} --version {latest}`"
    )]
    CurrentBroken {
        /// The warehouse folder.
        root: PathBuf,
        /// What is wrong with the link.
        problem: String,
        /// The newest published version, the one to restore.
        latest: String,
    },
    /// `current` points at a folder that is not a version (or there is nothing to restore).
    #[error(
        "warehouse {root}: `current` points at {target}, which is not a cvm warehouse version ({problem}): nothing was done; {fix}"
    )]
    NotAVersion {
        /// The warehouse folder.
        root: PathBuf,
        /// Where `current` points.
        target: PathBuf,
        /// What is missing there.
        problem: String,
        /// The command that repairs it.
        fix: String,
    },
    /// `restore` was given an id that is not a published version.
    #[error("warehouse {root} has no published version {id}: {problem}; published: {published}")]
    NoSuchVersion {
        /// The warehouse folder.
        root: PathBuf,
        /// The id asked for.
        id: String,
        /// Why it cannot be restored.
        problem: String,
        /// The published ids, oldest first (or `none`).
        published: String,
    },
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Maps an I/O error on `path` to [`PublishError::Io`].
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
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

/// A version being written; publish it with [`Warehouse::publish`]. Dropped
/// unpublished (a failed run), it removes its folder: a failure such as a
/// full disk must not keep the disk full until the next successful run.
#[derive(Debug)]
pub struct Staging {
    /// Folder to write the version's datasets into.
    pub dir: PathBuf,
    id: String,
}

impl Drop for Staging {
    fn drop(&mut self) {
        // After a publish the folder was renamed away: nothing to remove.
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove the staging folder of a failed run; the next run removes it");
        }
    }
}

/// Test hooks at the points of publishing: `CVM_TEST_CRASH_AT=<point>` aborts
/// the process there, to prove crash safety end to end;
/// `CVM_TEST_FAIL_AT=<point>` fails there as a full disk would.
fn test_point(point: &str) -> Result<(), PublishError> {
    if std::env::var("CVM_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("CVM_TEST_CRASH_AT={point}: aborting as asked");
        std::process::abort();
    }
    if std::env::var("CVM_TEST_FAIL_AT").is_ok_and(|p| p == point) {
        return Err(PublishError::Io {
            path: PathBuf::from(format!("CVM_TEST_FAIL_AT={point}")),
            // ENOSPC: No space left on device.
            source: std::io::Error::from_raw_os_error(28),
        });
    }
    Ok(())
}

/// Whether `dir` has every dataset folder of a version.
fn missing_dataset(dir: &Path) -> Option<&'static str> {
    DATASETS.into_iter().find(|d| !dir.join(d).is_dir())
}

/// The entries of `dir`; none when it does not exist (yet).
pub(super) fn entries(dir: &Path) -> Result<Vec<PathBuf>, PublishError> {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    read.map(|e| e.map(|e| e.path()).map_err(io(dir))).collect()
}

/// Fsyncs a folder so renames inside it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), PublishError> {
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

/// Replaces each Parquet file under `dir` (a staged version, `root` its top)
/// whose bytes equal the same path's in `current` with a hard link to that
/// file, so the versions kept share what a night did not change (a month of
/// transactions, the older parts of the events) instead of holding two
/// copies. Published files are never modified in place, so sharing is safe;
/// pruning a version removes only its links.
fn share_unchanged(dir: &Path, current: &Path, root: &Path) -> Result<(), PublishError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let p = entry.path();
        if entry.file_type().map_err(io(&p))?.is_dir() {
            share_unchanged(&p, current, root)?;
            continue;
        }
        if p.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let Ok(rel) = p.strip_prefix(root) else {
            continue;
        };
        let old = current.join(rel);
        if same_file(&p, &old) {
            // Already shared by the writer.
            continue;
        }
        if same_bytes(&p, &old).map_err(io(&old))? {
            // Linked beside, then renamed over the copy: on a file system
            // without hard links the copy simply stays.
            let link = p.with_extension("parquet.link");
            match fs::hard_link(&old, &link) {
                Ok(()) => fs::rename(&link, &p).map_err(io(&p))?,
                Err(e) => {
                    tracing::debug!(file = %p.display(), error = %e, "cannot hard-link an unchanged file: keeping the copy");
                }
            }
        }
    }
    Ok(())
}

/// Whether `a` and `b` are links to one file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Whether `a` and `b` hold the same bytes (false when `b` does not exist).
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (fa, fb) = match (File::open(a), File::open(b)) {
        (Ok(fa), Ok(fb)) => (fa, fb),
        (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (
        std::io::BufReader::with_capacity(1 << 20, fa),
        std::io::BufReader::with_capacity(1 << 20, fb),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = ra.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        rb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
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
    /// Opens (creating if needed) a warehouse folder and takes its lock, then
    /// removes the staging folders of runs that crashed.
    pub fn open(root: &Path) -> Result<Warehouse, PublishError> {
        fs::create_dir_all(root).map_err(io(root))?;
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
        let w = Warehouse {
            root: root.to_path_buf(),
            _lock: lock,
        };
        // Runs are serialised by the lock: any staging folder now is stale.
        w.sweep()?;
        Ok(w)
    }

    /// The warehouse folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The published version folder; `None` for a warehouse that never
    /// published. A `current` that is missing while versions exist, dangling,
    /// or pointing at anything but a version is an error naming the repair.
    pub fn current(&self) -> Result<Option<PathBuf>, PublishError> {
        let link = self.root.join("current");
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match self.published()?.pop() {
                    None => Ok(None),
                    Some(latest) => Err(self.broken("is missing".into(), latest)),
                };
            }
            Err(e) => {
                return match self.published()?.pop() {
                    None => Err(PublishError::Io {
                        path: link,
                        source: e,
                    }),
                    Some(latest) => Err(self.broken(format!("is not a symlink ({e})"), latest)),
                };
            }
        };
        let dir = self.root.join(&target);
        if !dir.is_dir() {
            return match self.published()?.pop() {
                Some(latest) => Err(self.broken(
                    format!("points at {}, which does not exist", target.display()),
                    latest,
                )),
                None => Err(self.not_a_version(target, "it does not exist".into())),
            };
        }
        if let Some(d) = missing_dataset(&dir) {
            return Err(self.not_a_version(target, format!("no {d}/ folder")));
        }
        Ok(Some(dir))
    }

    /// The id of the published version.
    pub fn current_id(&self) -> Result<Option<String>, PublishError> {
        Ok(self
            .current()?
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())))
    }

    fn broken(&self, problem: String, latest: String) -> PublishError {
        PublishError::CurrentBroken {
            root: self.root.clone(),
            problem,
            latest,
        }
    }

    fn not_a_version(&self, target: PathBuf, problem: String) -> PublishError {
        let published = self.published().unwrap_or_default();
        let root = self.root.display();
        let fix = match published.last() {
            Some(latest) => {
                format!("restore one with `cvm-etl restore --warehouse {root} --version {latest}`")
            }
            None => format!("nothing to restore: remove {root}/current to start a new warehouse"),
        };
        PublishError::NotAVersion {
            root: self.root.clone(),
            target,
            problem,
            fix,
        }
    }

    /// The ids of the published versions under `_versions/`, oldest first.
    pub fn published(&self) -> Result<Vec<String>, PublishError> {
        let versions = self.root.join("_versions");
        let entries = match fs::read_dir(&versions) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&versions)(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.ends_with(".tmp") && !n.starts_with('.'))
            .filter(|n| {
                let dir = versions.join(n);
                missing_dataset(&dir).is_none() && !dir.join(UNPUBLISHED).exists()
            })
            .collect();
        // Run ids start with a UTC timestamp, so names sort by age.
        ids.sort();
        Ok(ids)
    }

    /// Starts a new version for run `id`.
    pub fn begin(&self, id: &str) -> Result<Staging, PublishError> {
        let dir = self.root.join("_versions").join(format!("{id}.tmp"));
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let marker = dir.join(UNPUBLISHED);
        File::create(&marker).map_err(io(&marker))?;
        Ok(Staging {
            dir,
            id: id.to_string(),
        })
    }

    /// Removes what killed runs left: staging folders, and versions moved
    /// into place but never switched to (one `current` did switch to, in the
    /// instant before its marker went, just loses the marker); puts back
    /// scores a killed publish left aside.
    fn sweep(&self) -> Result<(), PublishError> {
        super::runs::sweep(&self.root)?;
        super::scores::sweep(&self.root)?;
        let current = fs::read_link(self.root.join("current"))
            .ok()
            .and_then(|t| t.file_name().map(ToOwned::to_owned));
        for p in entries(&self.root.join("_versions"))? {
            if p.extension().is_some_and(|e| e == "tmp") {
                fs::remove_dir_all(&p).map_err(io(&p))?;
            } else if p.join(UNPUBLISHED).exists() {
                if p.file_name() == current.as_deref() {
                    let marker = p.join(UNPUBLISHED);
                    fs::remove_file(&marker).map_err(io(&marker))?;
                } else {
                    fs::remove_dir_all(&p).map_err(io(&p))?;
                }
            }
        }
        Ok(())
    }

    /// Makes a staged version the current one, atomically. Returns its folder.
    pub fn publish(&self, staging: Staging) -> Result<PathBuf, PublishError> {
        for d in DATASETS {
            fs::create_dir_all(staging.dir.join(d)).map_err(io(&staging.dir))?;
        }
        if let Some(current) = self.current()? {
            share_unchanged(&staging.dir, &current, &staging.dir)?;
        }
        sync_tree(&staging.dir)?;
        test_point("before_publish")?;
        let versions = self.root.join("_versions");
        let final_dir = versions.join(&staging.id);
        fs::rename(&staging.dir, &final_dir).map_err(io(&final_dir))?;
        // Until `current` points at it, a failure removes it like a staging folder.
        let switched = sync_dir(&versions)
            .and_then(|()| test_point("before_switch"))
            .and_then(|()| self.switch(&staging.id));
        if let Err(e) = switched {
            let _ = fs::remove_dir_all(&final_dir);
            return Err(e);
        }
        // Not synced: should it come back after a crash, the next run removes
        // it again (the version is current).
        let marker = final_dir.join(UNPUBLISHED);
        fs::remove_file(&marker).map_err(io(&marker))?;
        sync_dir(&self.root)?;
        test_point("after_switch")?;
        self.prune()?;
        Ok(final_dir)
    }

    /// Points `current` at the published version `id` again (a bad drop was
    /// published, or `current` was lost), atomically. Returns its folder.
    pub fn restore(&self, id: &str) -> Result<PathBuf, PublishError> {
        let published = self.published()?;
        if !published.iter().any(|p| p == id) {
            let dir = self.root.join("_versions").join(id);
            let problem = if id.is_empty() || id.contains('/') || id.ends_with(".tmp") {
                "expected a folder name under _versions/".to_string()
            } else if let Some(d) = dir.is_dir().then(|| missing_dataset(&dir)).flatten() {
                format!("_versions/{id} has no {d}/ folder")
            } else {
                format!("_versions/{id} does not exist")
            };
            return Err(PublishError::NoSuchVersion {
                root: self.root.clone(),
                id: id.to_string(),
                problem,
                published: if published.is_empty() {
                    "none".into()
                } else {
                    published.join(", ")
                },
            });
        }
        self.switch(id)?;
        sync_dir(&self.root)?;
        Ok(self.root.join("_versions").join(id))
    }

    /// Swaps `current` to `_versions/<id>` and makes sure the dataset links exist.
    fn switch(&self, id: &str) -> Result<(), PublishError> {
        swap_symlink(&Path::new("_versions").join(id), &self.root.join("current"))?;
        for d in DATASETS {
            let link = self.root.join(d);
            if fs::symlink_metadata(&link).is_err() {
                swap_symlink(&Path::new("current").join(d), &link)?;
            }
        }
        Ok(())
    }

    /// Deletes published versions older than the last [`KEEP_VERSIONS`].
    fn prune(&self) -> Result<(), PublishError> {
        let versions = self.root.join("_versions");
        let current = self.current_id()?;
        let ids = self.published()?;
        let excess = ids.len().saturating_sub(KEEP_VERSIONS);
        for id in ids.into_iter().take(excess) {
            if Some(&id) != current.as_ref() {
                let d = versions.join(id);
                fs::remove_dir_all(&d).map_err(io(&d))?;
            }
        }
        Ok(())
    }

    /// Deletes every published version but the current one (an erasure:
    /// older versions hold what was erased; `restore` has nothing to go back to).
    pub fn prune_all_but_current(&self) -> Result<(), PublishError> {
        let versions = self.root.join("_versions");
        let current = self.current_id()?;
        for id in self.published()? {
            if Some(&id) != current.as_ref() {
                let d = versions.join(id);
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
        assert_eq!(w.current().unwrap(), None);
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
        assert_eq!(
            w.current_id().unwrap().as_deref(),
            Some("20260102T000000Z-b")
        );
        assert!(d.path().join("transactions").is_dir());
    }

    #[test]
    fn unchanged_files_are_shared_with_the_previous_version_and_survive_its_pruning() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        let publish = |id: &str, month: &str, customers: &str| {
            let s = w.begin(id).unwrap();
            fs::create_dir_all(s.dir.join("transactions/month=2025-01")).unwrap();
            fs::create_dir_all(s.dir.join("customers")).unwrap();
            fs::write(
                s.dir.join("transactions/month=2025-01/part-00000.parquet"),
                month,
            )
            .unwrap();
            fs::write(s.dir.join("customers/part-00000.parquet"), customers).unwrap();
            w.publish(s).unwrap()
        };
        let ino = |v: &Path, f: &str| fs::metadata(v.join(f)).unwrap().ino();
        let (month, customers) = (
            "transactions/month=2025-01/part-00000.parquet",
            "customers/part-00000.parquet",
        );
        let a = publish("20260101T000000Z-a", "january", "ann");
        let b = publish("20260102T000000Z-b", "january", "ann, bob");
        assert_eq!(
            ino(&a, month),
            ino(&b, month),
            "an unchanged month is one file"
        );
        assert_ne!(ino(&a, customers), ino(&b, customers));
        // Same length, other bytes: not shared.
        let c = publish("20260103T000000Z-c", "janvier", "ann, bob");
        assert_ne!(ino(&b, month), ino(&c, month));
        assert_eq!(ino(&b, customers), ino(&c, customers));
        // `a` is pruned; what `b` and `c` share stays readable.
        assert!(!a.exists());
        assert_eq!(fs::read_to_string(c.join(customers)).unwrap(), "ann, bob");
        assert_eq!(fs::read_to_string(b.join(month)).unwrap(), "january");
    }

    #[test]
    fn only_the_last_two_versions_are_kept_and_leftovers_are_swept() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("_versions/crashed.tmp")).unwrap();
        let w = Warehouse::open(d.path()).unwrap();
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
    fn staging_folders_left_by_crashed_runs_are_swept_when_the_warehouse_is_opened() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("_versions/crashed.tmp/customers")).unwrap();
        let _w = Warehouse::open(d.path()).unwrap();
        assert!(!d.path().join("_versions/crashed.tmp").exists());
    }

    #[test]
    fn a_version_never_switched_to_is_swept_and_is_no_restore_point() {
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        stage(&w, "20260101T000000Z-a", "one");
        // Killed between moving its version into place and switching `current`.
        let s = w.begin("20260102T000000Z-b").unwrap();
        for ds in DATASETS {
            fs::create_dir_all(s.dir.join(ds)).unwrap();
        }
        fs::rename(&s.dir, d.path().join("_versions/20260102T000000Z-b")).unwrap();
        assert_eq!(w.published().unwrap(), ["20260101T000000Z-a"]);
        drop(w);
        let w = Warehouse::open(d.path()).unwrap();
        assert!(!d.path().join("_versions/20260102T000000Z-b").exists());
        assert_eq!(
            w.current_id().unwrap().as_deref(),
            Some("20260101T000000Z-a")
        );
    }

    #[test]
    fn a_staging_folder_dropped_unpublished_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        let s = w.begin("20260101T000000Z-a").unwrap();
        fs::create_dir_all(s.dir.join("customers")).unwrap();
        fs::write(s.dir.join("customers/part-00000.parquet"), "x").unwrap();
        let dir = s.dir.clone();
        drop(s);
        assert!(!dir.exists());
        assert_eq!(w.published().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_missing_or_dangling_current_beside_published_versions_is_an_error_naming_the_restore() {
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        stage(&w, "20260101T000000Z-a", "one");
        stage(&w, "20260102T000000Z-b", "two");
        fs::remove_file(d.path().join("current")).unwrap();
        let err = w.current().unwrap_err();
        assert!(matches!(err, PublishError::CurrentBroken { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("is missing"), "{text}");
        assert!(
            text.contains("cvm-etl restore --warehouse")
                && text.contains("--version 20260102T000000Z-b"),
            "{text}"
        );
        std::os::unix::fs::symlink("_versions/gone", d.path().join("current")).unwrap();
        let text = w.current().unwrap_err().to_string();
        assert!(
            text.contains("_versions/gone, which does not exist"),
            "{text}"
        );
        // Nothing is published over a broken warehouse, nothing is pruned.
        assert_eq!(w.published().unwrap().len(), 2);
    }

    #[test]
    fn a_current_pointing_at_a_folder_without_datasets_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        stage(&w, "20260101T000000Z-a", "one");
        fs::create_dir_all(d.path().join("elsewhere")).unwrap();
        fs::remove_file(d.path().join("current")).unwrap();
        std::os::unix::fs::symlink("elsewhere", d.path().join("current")).unwrap();
        let err = w.current().unwrap_err();
        assert!(matches!(err, PublishError::NotAVersion { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("no customers/ folder"), "{text}");
        assert!(text.contains("--version 20260101T000000Z-a"), "{text}");
    }

    #[test]
    fn restore_points_current_at_a_published_version() {
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        stage(&w, "20260101T000000Z-a", "one");
        stage(&w, "20260102T000000Z-b", "two");
        fs::remove_file(d.path().join("current")).unwrap();
        fs::remove_file(d.path().join("customers")).unwrap();
        w.restore("20260101T000000Z-a").unwrap();
        assert_eq!(
            w.current_id().unwrap().as_deref(),
            Some("20260101T000000Z-a")
        );
        assert_eq!(
            fs::read_to_string(d.path().join("customers/part-00000.parquet")).unwrap(),
            "one"
        );
    }

    #[test]
    fn restore_refuses_what_is_not_a_published_version_and_lists_those_that_are() {
        let d = tempfile::tempdir().unwrap();
        let w = Warehouse::open(d.path()).unwrap();
        stage(&w, "20260101T000000Z-a", "one");
        fs::create_dir_all(d.path().join("_versions/half")).unwrap();
        for (id, problem) in [
            ("20990101T000000Z-x", "does not exist"),
            ("half", "has no customers/ folder"),
            ("../_versions", "expected a folder name"),
        ] {
            let err = w.restore(id).unwrap_err();
            assert!(matches!(err, PublishError::NoSuchVersion { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(problem), "{text}");
            assert!(text.contains("published: 20260101T000000Z-a"), "{text}");
        }
        assert_eq!(
            w.current_id().unwrap().as_deref(),
            Some("20260101T000000Z-a")
        );
    }

    #[test]
    fn a_second_process_is_refused_while_the_lock_is_held() {
        let d = tempfile::tempdir().unwrap();
        let _w = Warehouse::open(d.path()).unwrap();
        let err = Warehouse::open(d.path()).unwrap_err();
        assert!(matches!(err, PublishError::Locked(_)), "{err}");
    }
}
