//! Directories the walk keeps open for the reading: a file is then opened by its name in its
//! directory instead of by its whole path, which the kernel would walk again component by
//! component (half of each open's cost in `put -r` of /usr/share). Bounded across the
//! process by its descriptor limit: a walk far ahead of the reading, over many small
//! directories, must not take the descriptors the rest of the put needs; past the bound,
//! files are opened by path as before.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// At most this many directories are kept open at once, whatever the descriptor limit.
pub const MAX_OPEN: usize = 256;

/// Descriptors left to all else a put opens (the store's files, the file being read, the
/// walk's listing, the standard streams: 15 at most seen at once).
const RESERVE: u64 = 32;

/// Directories kept open now, by every walk of the process.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// An open directory, shared by the files found in it until the last of them is read.
#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
    counted: &'static AtomicUsize,
}

impl DirFd {
    /// Keeps `fd` open while fewer directories are than the bound: half of the descriptors
    /// the process may open beyond a reserve, at most [`MAX_OPEN`]; gives it back otherwise,
    /// for the caller to close once done with it.
    pub fn keep(fd: OwnedFd) -> std::result::Result<Arc<DirFd>, OwnedFd> {
        // A
        keep_within(fd, &OPEN, bound())
    }
}

/// The bound of [`DirFd::keep`], from the soft limit on descriptors when first asked.
fn bound() -> usize {
    // A
    static BOUND: OnceLock<usize> = OnceLock::new();
    *BOUND.get_or_init(|| {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let soft = limit.current.unwrap_or(u64::MAX);
        let half = soft.saturating_sub(RESERVE) / 2;
        usize::try_from(half).map_or(MAX_OPEN, |h| h.min(MAX_OPEN))
    })
}

/// [`DirFd::keep`] counting in `open`, below `max`.
fn keep_within(
    fd: OwnedFd,
    open: &'static AtomicUsize,
    max: usize,
) -> std::result::Result<Arc<DirFd>, OwnedFd> {
    // A
    if open.fetch_add(1, Ordering::Relaxed) < max {
        Ok(Arc::new(DirFd { fd, counted: open }))
    } else {
        open.fetch_sub(1, Ordering::Relaxed);
        Err(fd)
    }
}

#[cfg(test)]
impl DirFd {
    /// A directory kept open outside the process-wide count, for tests that must have one.
    pub(crate) fn for_test(fd: OwnedFd) -> Arc<DirFd> {
        static TESTS: AtomicUsize = AtomicUsize::new(0);
        TESTS.fetch_add(1, Ordering::Relaxed);
        Arc::new(DirFd {
            fd,
            counted: &TESTS,
        })
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
        self.counted.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_than_the_bound_are_kept_and_a_closed_one_frees_its_place() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let open = || std::fs::File::open("/").unwrap().into();
        let kept: Vec<_> = (0..5).map(|_| keep_within(open(), &COUNT, 3)).collect();
        assert_eq!(kept.iter().filter(|k| k.is_ok()).count(), 3);
        assert_eq!(COUNT.load(Ordering::Relaxed), 3);
        drop(kept);
        assert_eq!(COUNT.load(Ordering::Relaxed), 0);
        assert!(keep_within(open(), &COUNT, 3).is_ok());
    }

    #[test]
    fn the_bound_leaves_the_reserve_and_keeps_under_the_most() {
        let b = bound();
        assert!(b <= MAX_OPEN);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(soft) = limit.current {
            assert!(b as u64 <= soft.saturating_sub(RESERVE) / 2);
        }
    }
}
