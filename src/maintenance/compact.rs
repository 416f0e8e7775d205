//! Compaction: rewrites the store's data file without its free pages, returning them to the
//! filesystem. LMDB never shrinks its file: pages that gc frees, and the older copies of
//! every index page a write transaction rewrote, stay in it for later writes to reuse (after
//! one first backup of many small files, about a third of the file). Compaction copies every
//! record, in key order, into a new data file, appending, so the copy's B-tree pages are
//! full (random inserts leave them about two thirds full) and it has no free page; then
//! a rename replaces `data.mdb`, so a crash at any moment leaves either the old file or the
//! whole new one. The next writes into full pages split them, so the index grows back
//! towards two thirds full as it changes.
//!
//! The store must be open nowhere else: a process that kept the old file mapped would read
//! stale data and commit into a file no one opens again. Every process holds the open lock
//! ([`OpenLock`]) shared while its store is open; compaction takes it exclusive, and refuses
//! (with [`Error::Retry`]) while anyone has the store open. Processes that open the store
//! meanwhile wait for it.

use std::path::Path;

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::store::lmdb::CLOSING;
use crate::store::open_lock::OpenLock;
use crate::store::Lmdb;

/// The directory the new file is written in, inside the store directory; left behind only
/// by a compaction that was killed, and removed by the next one or by gc.
pub const PARTIAL: &str = "compact.partial";
/// Room left free on the filesystem beyond the copy itself.
const MARGIN: u64 = 16 << 20;

/// What a compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    /// Bytes of the data file before.
    pub before: u64,
    /// Bytes of the data file after.
    pub after: u64,
}

impl Cas {
    /// Rewrites the data file of the store in `dir` without its free pages (see the module
    /// documentation). Refused with [`Error::Retry`] while another process has the store
    /// open, and with [`Error::NoSpace`] when its filesystem cannot hold the copy.
    ///
    /// ```no_run
    /// # fn main() -> ouroboros_db::Result<()> {
    /// let done = ouroboros_db::Cas::compact(std::path::Path::new("/var/lib/ouro"))?;
    /// println!("{} -> {} bytes", done.before, done.after);
    /// # Ok(()) }
    /// ```
    pub fn compact(dir: &Path) -> Result<Compacted> {
        // PA
        if !Lmdb::exists(dir) {
            return Err(Error::NotInitialised(dir.display().to_string()));
        }
        let Some(lock) = OpenLock::try_exclusive(dir)? else {
            return Err(Error::Retry(
                "another process has the store open (a running node or mount, a put, get or gc); compaction needs it to itself, so once they have stopped".into(),
            ));
        };
        let data = dir.join("data.mdb");
        if std::fs::symlink_metadata(&data).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::InvalidArgument(format!(
                "{} is a symbolic link: compaction would replace the link by a file and leave its target; compact the store where its data file is",
                data.display()
            )));
        }
        let partial = dir.join(PARTIAL);
        remove_partial(&partial)?;
        let lmdb = Lmdb::open_holding(dir, false, Some(lock))?;
        if lmdb.is_read_only() {
            return Err(Error::denied(format!(
                "compacting store {}: this user cannot write its files",
                dir.display()
            )));
        }
        let before = lmdb.disk_size()?;
        let needed = lmdb.page_use()?.used_bytes;
        if let Some(free) = lmdb.free_bytes() {
            if free < needed.saturating_add(MARGIN) {
                return Err(Error::NoSpace(format!(
                    "its copy needs about {} MiB free on the filesystem of {}, and {} MiB are",
                    (needed + MARGIN) >> 20,
                    dir.display(),
                    free >> 20
                )));
            }
        }
        let copy = partial.join("data.mdb");
        let after = match write_copy(&lmdb, &partial, &copy) {
            Ok(n) => n,
            Err(e) => {
                let full = lmdb.free_bytes().is_some_and(|f| f < MARGIN);
                let _ = std::fs::remove_dir_all(&partial);
                return Err(match full {
                    true => Error::NoSpace(format!(
                        "the disk holding {} filled up while compacting; the store is unchanged",
                        dir.display()
                    )),
                    false => e,
                });
            }
        };
        let lock = lmdb.close(CLOSING)?;
        swap_in(dir, &partial, &copy)?;
        drop(lock);
        Ok(Compacted { before, after })
    }
}

/// Writes the compacted copy: a new store in the new directory `partial`, every record
/// copied into it, its data file given the old one's permissions. Returns its size.
fn write_copy(lmdb: &Lmdb, partial: &Path, copy: &Path) -> Result<u64> {
    // PA
    std::fs::create_dir(partial)
        .map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
    let size = lmdb.copy_into(partial)?;
    let old = lmdb.path().join("data.mdb");
    let meta =
        std::fs::metadata(&old).map_err(|e| Error::io(format!("reading {}", old.display()), e))?;
    take_mode_and_owner(copy, &meta)?;
    // LMDB's commits synced the data; this syncs the file's size and mode too.
    std::fs::File::open(copy)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", copy.display()), e))?;
    Ok(size)
}

/// Gives `file` the mode and owner in `like` (compaction by root of another user's store
/// must leave it that user's).
fn take_mode_and_owner(file: &Path, like: &std::fs::Metadata) -> Result<()> {
    // PA
    use std::os::unix::fs::MetadataExt;
    std::fs::set_permissions(file, like.permissions())
        .map_err(|e| Error::io(format!("setting the mode of {}", file.display()), e))?;
    let now =
        std::fs::metadata(file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    if (now.uid(), now.gid()) != (like.uid(), like.gid()) {
        std::os::unix::fs::chown(file, Some(like.uid()), Some(like.gid()))
            .map_err(|e| Error::io(format!("setting the owner of {}", file.display()), e))?;
    }
    Ok(())
}

/// Replaces the data file by the synced `copy`, then LMDB's lock file by an empty one with
/// its mode and owner (so the next process to open the store starts it anew from the new
/// file: the old one records the old file's transaction ids), removes the `partial`
/// directory, and syncs the store directory so the rename survives a crash.
fn swap_in(dir: &Path, partial: &Path, copy: &Path) -> Result<()> {
    // PA
    let data = dir.join("data.mdb");
    std::fs::rename(copy, &data).map_err(|e| {
        Error::io(
            format!("moving the compacted copy to {}", data.display()),
            e,
        )
    })?;
    let lock = dir.join("lock.mdb");
    let fresh = partial.join("lock.mdb");
    match std::fs::symlink_metadata(&lock) {
        Ok(meta) => {
            // The copy's own lock file, emptied, stands in (a new inode: a process that
            // kept the old one open is not disturbed).
            std::fs::File::create(&fresh)
                .map_err(|e| Error::io(format!("creating {}", fresh.display()), e))?;
            take_mode_and_owner(&fresh, &meta)?;
            std::fs::rename(&fresh, &lock)
                .map_err(|e| Error::io(format!("replacing {}", lock.display()), e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", lock.display()), e)),
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    remove_partial(partial)
}

/// Bytes of the files a killed compaction left in store directory `dir` (0 when none).
pub(crate) fn leftover_bytes(dir: &Path) -> u64 {
    // A
    let partial = dir.join(PARTIAL);
    let Ok(entries) = std::fs::read_dir(&partial) else {
        return std::fs::symlink_metadata(&partial).map_or(0, |m| m.len());
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Removes what a killed compaction left in `partial` (nothing when it is not there). Only
/// while holding the open lock, shared or exclusive: no compaction runs then.
pub(crate) fn remove_partial(partial: &Path) -> Result<()> {
    // PA
    let removed = match std::fs::symlink_metadata(partial) {
        // A symbolic link goes, never what it points to; so does anything not a directory.
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(partial),
        Ok(_) => std::fs::remove_file(partial),
        Err(e) => Err(e),
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", partial.display()), e)),
    }
}
