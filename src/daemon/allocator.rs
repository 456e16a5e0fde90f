//! How the daemon asks glibc's allocator to behave, so that memory freed after a large,
//! short-lived buffer goes back to the operating system instead of staying resident.
//!
//! Why (measured with the soak, issue 16): a full `history` reply of a 20,000-entry log is
//! about 16 MiB of JSON plus its rows, built on a short-lived thread and serialized on a
//! socket task. glibc's *dynamic* mmap threshold rises to the size of the first large block
//! freed, so from the second reply on such buffers come from a thread's arena instead of
//! their own mapping, and freed memory at the top of a thread arena is never returned
//! (`malloc_trim` trims only the main arena's top). Each thread arena kept its peak: a
//! daemon idling at 20 MiB grew to 54 MiB after five `history` calls, of which 1 MiB was in
//! use (`malloc_stats`). A fixed threshold keeps every large buffer in a mapping of its own,
//! unmapped when freed; two arenas keep the short-lived threads' small leftovers from
//! spreading over one arena per thread.

use crate::control::server::Dispatch;
use crate::control::{Outcome, Request};
use tokio::sync::oneshot;

/// Blocks at least this large get a mapping of their own, returned to the system when freed
/// (twice glibc's initial value, and fixed: setting it switches the dynamic threshold off).
pub const MMAP_THRESHOLD_BYTES: i32 = 256 * 1024;
/// Most malloc arenas (glibc's default is eight per CPU).
pub const ARENA_MAX: i32 = 2;

/// Sets the allocator up for a long-running daemon; call it first thing in `main`'s daemon
/// path, before any thread starts. Returns whether every setting was taken (always true
/// where the allocator is not glibc's, which has nothing to set).
pub fn tune_for_daemon() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // libc, not nix: mallopt is a glibc extension nix does not wrap.
        // SAFETY: mallopt only changes the allocator's parameters; both values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
    }
}

/// History replies at least this long are followed by a trim of the allocator's free lists.
pub const TRIM_AFTER_ROWS: usize = 1000;

/// A control dispatcher that hands the memory a long history reply used back to the system
/// once it is written. Why: its rows are many small blocks (each entry's strings) that the
/// mmap threshold does not cover; freed, they lie between live ones and stay resident. On a
/// debug daemon with 20,000 entries, eight full histories left 24.6 MiB resident from 19.6;
/// `malloc_trim` brought it back to 19.9 (the hour's soak showed such steps of 5-8 MiB
/// staying on every long-lived daemon).
pub struct ReleaseAfterHistory<D>(pub D);

impl<D: Dispatch> Dispatch for ReleaseAfterHistory<D> {
    fn dispatch(&self, request: Request, reply: oneshot::Sender<Outcome>) {
        self.0.dispatch(request, reply);
    }

    fn history_written(&self, rows: usize) {
        if rows >= TRIM_AFTER_ROWS {
            crate::node::release_freed_memory();
        }
    }
}
