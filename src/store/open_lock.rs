//! The open lock: every process that opens a store holds `open.lock` shared for as long as
//! its LMDB environment is open; compaction holds it exclusive while it swaps the data file.
//! A process that kept the old file mapped would go on reading it, and a writer would
//! commit into it, after the swap: the lock makes compaction wait for no one and refuse
//! when anyone has the store open. Like the gc lock it is an `flock`, which the kernel
//! drops when its process dies, so it is never stale.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{Error, Result};
use crate::store::lmdb::not_writable;

/// The lock file's name in the store directory.
pub const FILE: &str = "open.lock";

/// A held open lock; released on drop.
#[derive(Debug)]
pub struct OpenLock {
    _file: File,
}

impl OpenLock {
    /// Takes the lock shared, waiting while a compaction holds it (`on_wait` is called once
    /// then). `None` when the lock file can be neither created nor opened (a store on a
    /// read-only filesystem, or another user's store opened for reading before its owner
    /// ever created the file): no process can compact such a store meanwhile, or the owner's
    /// compaction cannot see this reader, which then keeps reading the file it mapped.
    pub fn shared(store: &Path, on_wait: &dyn Fn()) -> Result<Option<Self>> {
        // PA
        let Some(file) = open(store)? else {
            return Ok(None);
        };
        if flock(&file, FlockOperation::NonBlockingLockShared).is_err() {
            on_wait();
            flock(&file, FlockOperation::LockShared).map_err(|e| {
                Error::io(format!("locking {}", store.join(FILE).display()), e.into())
            })?;
        }
        Ok(Some(OpenLock { _file: file }))
    }

    /// Takes the lock exclusive if no process has the store open; `None` when one has.
    pub fn try_exclusive(store: &Path) -> Result<Option<Self>> {
        // PA
        let Some(file) = open(store)? else {
            return Err(Error::denied(format!(
                "opening {}",
                store.join(FILE).display()
            )));
        };
        Ok(flock(&file, FlockOperation::NonBlockingLockExclusive)
            .ok()
            .map(|_| OpenLock { _file: file }))
    }
}

/// Opens the lock file, creating it (mode 0600) when it is missing and the directory is
/// writable; read only when this user may not write it (an flock needs no write access).
/// `None` when it cannot be had either way (another user's store, whose lock file only its
/// owner may open).
fn open(store: &Path) -> Result<Option<File>> {
    // PA
    let path = store.join(FILE);
    match create_lock_file(store, &path) {
        Ok(f) => return Ok(Some(f)),
        Err(e) if !not_writable(&e) => {
            return Err(Error::io(format!("opening {}", path.display()), e));
        }
        Err(_) => {}
    }
    match File::open(&path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if not_writable(&e) || e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
    }
}

/// Opens lock file `path` of store directory `store` for reading and writing, creating it
/// when missing: mode 0600 (anyone who can open the file can flock it, and an exclusive
/// lock held by another user would make everyone wait) and, when root creates it in another
/// user's store, owned by the directory's owner, so the store stays that user's.
pub(crate) fn create_lock_file(store: &Path, path: &Path) -> std::io::Result<File> {
    // PA
    let open = |create_new: bool| {
        OpenOptions::new()
            .mode(0o600)
            .create_new(create_new)
            .read(true)
            .write(true)
            .open(path)
    };
    match open(true) {
        Ok(f) => {
            use std::os::unix::fs::MetadataExt;
            let dir = std::fs::metadata(store)?;
            let made = f.metadata()?;
            if (made.uid(), made.gid()) != (dir.uid(), dir.gid()) {
                // Only root can give a file away; anyone else keeps it as it was made.
                let _ = std::os::unix::fs::fchown(&f, Some(dir.uid()), Some(dir.gid()));
            }
            Ok(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_and_compaction_needs_the_store_alone() {
        let dir = tempfile::tempdir().unwrap();
        let never = || panic!("nobody holds it exclusive");
        let a = OpenLock::shared(dir.path(), &never).unwrap().unwrap();
        let b = OpenLock::shared(dir.path(), &never).unwrap().unwrap();
        assert!(OpenLock::try_exclusive(dir.path()).unwrap().is_none());
        drop(a);
        assert!(OpenLock::try_exclusive(dir.path()).unwrap().is_none());
        drop(b);
        let x = OpenLock::try_exclusive(dir.path()).unwrap();
        assert!(x.is_some());
        assert!(OpenLock::try_exclusive(dir.path()).unwrap().is_none());
    }

    #[test]
    fn an_opener_waits_for_the_compaction_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let x = OpenLock::try_exclusive(dir.path()).unwrap().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        let opener = std::thread::spawn(move || {
            let waited = std::cell::Cell::new(false);
            let lock = OpenLock::shared(&path, &|| {
                waited.set(true);
                tx.send(()).unwrap();
            });
            (lock.unwrap().is_some(), waited.get())
        });
        rx.recv().unwrap();
        drop(x);
        assert_eq!(opener.join().unwrap(), (true, true));
    }
}
