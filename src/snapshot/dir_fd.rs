//! Directories the walk keeps open for the reading: a file is then opened by its name in its
//! directory instead of by its whole path, which the kernel would walk again component by
//! component (half of each open's cost in `put -r` of /usr/share). Bounded across the
//! process: a walk far ahead of the reading, over many small directories, must not run out
//! of descriptors; past the bound, files are opened by path as before.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// At most this many directories are kept open at once: a quarter of the usual soft limit of
/// 1,024 descriptors, which the walk's queue of 1,024 files could otherwise exhaust alone.
pub const MAX_OPEN: usize = 256;

/// Directories kept open now, by every walk of the process.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// An open directory, shared by the files found in it until the last of them is read.
#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
}

impl DirFd {
    /// Keeps `fd` open when fewer than [`MAX_OPEN`] directories are; `None` (closing it)
    /// otherwise.
    pub fn keep(fd: OwnedFd) -> Option<Arc<DirFd>> {
        // A
        if OPEN.fetch_add(1, Ordering::Relaxed) < MAX_OPEN {
            Some(Arc::new(DirFd { fd }))
        } else {
            OPEN.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // A
        self.fd.as_fd()
    }
}

impl Drop for DirFd {
    fn drop(&mut self) {
        // A
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_than_the_bound_are_kept_and_a_closed_one_frees_its_place() {
        let open = || std::fs::File::open("/").unwrap().into();
        let mut kept = Vec::new();
        // Other tests of this process may hold some: keep until refused.
        while let Some(d) = DirFd::keep(open()) {
            kept.push(d);
            assert!(kept.len() <= MAX_OPEN);
        }
        kept.pop();
        let again = DirFd::keep(open());
        assert!(again.is_some() || OPEN.load(Ordering::Relaxed) >= MAX_OPEN);
    }
}
