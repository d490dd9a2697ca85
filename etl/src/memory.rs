//! Handing freed memory back to the OS between the steps of a job.
//!
//! The binaries allocate with mimalloc (see `main.rs`), where each thread
//! owns the pages it allocated. Ingest reads files on rayon's workers and
//! then consolidates on one thread: the records it frees go back to pages
//! owned by idle workers, which only look at them when they next allocate.
//! Until then that memory stays resident, and the next step's allocations
//! stack on top of it (hundreds of MiB on a 10M-record drop). Collecting
//! on every thread at the boundaries, and every so often within a long
//! freeing loop, keeps mimalloc's fast paths inside the steps and the peak
//! resident size close to the live data.

/// Returns the memory freed so far, on the calling thread and on every
/// rayon worker, to the OS. It walks every heap: call it between steps,
/// not in hot loops. Without mimalloc as the global allocator it only tidies
/// mimalloc's own (empty) heaps.
pub fn release_freed() {
    rayon::broadcast(|_| collect());
    collect();
}

/// Resident and peak resident memory of this process (Linux), for debug logs.
pub fn resident() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_e` in
/// mimalloc.h, v2 and v3; libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets how many milliseconds freed memory waits before mimalloc returns it
/// to the OS (0: at once; v3's default is 1,000). The `MIMALLOC_PURGE_DELAY`
/// environment variable, when set, wins.
pub fn set_purge_delay(ms: i64) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_option(MI_OPTION_PURGE_DELAY, ms);
    }
}

/// Freed memory goes back to the OS at once until this is dropped, then
/// waits as before (a process-wide setting: one job at a time). For a
/// first load's writes and purchase totals, which free large buffers while
/// every consolidated row is still held: there, freed memory waiting out
/// v3's 1 s delay set a 12.3M-row drop's peak (1,994 against 1,916 MiB,
/// and up to 2,081 MiB in the totals step before they were grouped by
/// position), and `release_freed` after the step comes too late. It costs
/// such a load ~3.5 s of system time (pages returned, then faulted in again).
pub struct PurgeAtOnce {
    before: Option<i64>,
}

impl PurgeAtOnce {
    /// Purges at once from now on (unless `MIMALLOC_PURGE_DELAY` is set).
    pub fn start() -> PurgeAtOnce {
        let before = std::env::var_os("MIMALLOC_PURGE_DELAY")
            .is_none()
            .then(|| get_option(MI_OPTION_PURGE_DELAY));
        if before.is_some() {
            set_option(MI_OPTION_PURGE_DELAY, 0);
        }
        PurgeAtOnce { before }
    }
}

impl Drop for PurgeAtOnce {
    fn drop(&mut self) {
        if let Some(ms) = self.before {
            set_option(MI_OPTION_PURGE_DELAY, ms);
        }
    }
}

#[allow(unsafe_code)]
fn set_option(option: libmimalloc_sys::mi_option_t, value: i64) {
    // SAFETY: mi_option_set stores a value in mimalloc's option table, which
    // the allocator reads atomically; it takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(option, value as _) }
}

#[allow(unsafe_code)]
fn get_option(option: libmimalloc_sys::mi_option_t) -> i64 {
    // SAFETY: mi_option_get reads mimalloc's option table; it takes no pointers.
    unsafe { libmimalloc_sys::mi_option_get(option) as i64 }
}

#[allow(unsafe_code)]
fn collect() {
    // SAFETY: mi_collect takes no pointers and only walks mimalloc's own
    // structures for the calling thread (and the process-wide arenas); it
    // may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
