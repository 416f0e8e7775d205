//! The gc lock: puts hold it shared, gc holds it exclusive. It closes the one race that
//! refcounts alone cannot: a put reusing (deduplicating against) a chunk that gc is about to
//! free. The kernel drops an flock when its process dies, so a killed process never leaves
//! the store locked.

use std::fs::File;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{Error, Result};

/// A held lock; released on drop.
pub struct GcLock {
    _file: File,
}

impl GcLock {
    /// Takes the lock shared (puts, merges) or exclusive (gc), waiting as long as needed.
    /// `on_wait` is called once if the lock is busy, so callers can say why they wait.
    pub fn acquire(store: &Path, exclusive: bool, on_wait: &dyn Fn()) -> Result<Self> {
        // PA
        let (path, file) = open(store)?;
        let (try_op, op) = if exclusive {
            (
                FlockOperation::NonBlockingLockExclusive,
                FlockOperation::LockExclusive,
            )
        } else {
            (
                FlockOperation::NonBlockingLockShared,
                FlockOperation::LockShared,
            )
        };
        if flock(&file, try_op).is_err() {
            on_wait();
            flock(&file, op)
                .map_err(|e| Error::io(format!("locking {}", path.display()), e.into()))?;
        }
        Ok(GcLock { _file: file })
    }

    /// Takes the lock exclusive if no one holds it; `None` when busy. How a cluster node
    /// frees condemned chunks without waiting on a long put.
    pub fn try_exclusive(store: &Path) -> Result<Option<Self>> {
        // PA
        let (_, file) = open(store)?;
        Ok(flock(&file, FlockOperation::NonBlockingLockExclusive)
            .ok()
            .map(|_| GcLock { _file: file }))
    }
}

/// Opens (creating it if needed) the store's lock file.
fn open(store: &Path) -> Result<(std::path::PathBuf, File)> {
    // A
    let path = store.join("gc.lock");
    let file = crate::store::open_lock::create_lock_file(store, &path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    Ok((path, file))
}
