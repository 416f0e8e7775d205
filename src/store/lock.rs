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
        let path = store.join("gc.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
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
}
