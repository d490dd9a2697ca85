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

#[allow(unsafe_code)]
fn collect() {
    // SAFETY: mi_collect takes no pointers and only walks mimalloc's own
    // structures for the calling thread (and the process-wide arenas); it
    // may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
