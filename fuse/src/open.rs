//! How files are opened: for writing through a temp file, for reading with direct I/O, or
//! through the kernel's page cache once a file was read at random, and when the pages the
//! kernel cached for a file stay valid across opens.

use std::sync::Arc;

use fuser::{Errno, FopenFlags, INodeNo};
use ouroboros_db::Blob;

use crate::chunk_cache::OpenBlob;
use crate::fs::{Handle, OuroFs};
use crate::node::Node;

impl OuroFs {
    /// Opens inode `ino` with the open(2) flags `raw`: a handle and the FUSE open flags.
    pub(crate) fn open_file(&self, ino: INodeNo, raw: i32) -> Result<(u64, FopenFlags), Errno> {
        // A
        let node = self.node(ino)?;
        let writing = raw & libc::O_ACCMODE != libc::O_RDONLY;
        match (&node, writing) {
            (Node::File(key), true) => {
                if self.opts.read_only {
                    return Err(Errno::EROFS);
                }
                // Writes go through the page cache: the next reader must not keep it.
                self.forget_cached_version(ino);
                let (truncate, append) = (raw & libc::O_TRUNC != 0, raw & libc::O_APPEND != 0);
                self.open_write(key, truncate, append, None)
                    .map(|fh| (fh, FopenFlags::empty()))
            }
            (_, true) => Err(Errno::EROFS),
            (Node::File(key), false) => {
                // A file just written may wait for its release to be stored (the kernel sends
                // it after close returns): store it now, so the reader finds it.
                self.settle_pending(key)?;
                let (hash, blob) = self.head_blob(key)?.ok_or(Errno::ENOENT)?;
                // A key's content changes with new versions: the kernel keeps its cached
                // pages only when the version is the one opened last time.
                let same = self
                    .opened_versions
                    .lock()
                    .map_err(|_| Errno::EIO)?
                    .insert(ino.0, hash)
                    == Some(hash);
                let (fh, mode) = self.open_read(ino, blob);
                let keep = if same {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                Ok((fh, mode | keep))
            }
            (Node::SnapEntry { .. }, false) => {
                let blob = self.snap_file_blob(&node)?;
                // A snapshot never changes either.
                let (fh, mode) = self.open_read(ino, blob);
                Ok((fh, mode | FopenFlags::FOPEN_KEEP_CACHE))
            }
            (Node::Frozen { hash, .. }, false) => {
                let blob = Blob::clone(&*self.blob_record(hash)?);
                // A version never changes: its cached pages stay valid across opens.
                let (fh, mode) = self.open_read(ino, blob);
                Ok((fh, mode | FopenFlags::FOPEN_KEEP_CACHE))
            }
            _ => Err(Errno::EISDIR),
        }
    }

    /// The kernel's cached pages of `ino` (about to be written) must not be kept by the next
    /// reader.
    pub(crate) fn forget_cached_version(&self, ino: INodeNo) {
        // A
        if let Ok(mut v) = self.opened_versions.lock() {
            v.remove(&ino.0);
        }
    }

    /// Opens a version for reading: through the kernel's page cache when the file was read
    /// at random before (the cache then keeps what random reads decoded), else with direct
    /// I/O, which streams without filling the page cache (a third of the CPU time of a
    /// sequential read went into it).
    pub(crate) fn open_read(&self, ino: INodeNo, blob: Blob) -> (u64, FopenFlags) {
        // A
        let cached = self
            .read_at_random
            .lock()
            .map(|r| r.contains(&ino.0))
            .unwrap_or(false);
        let fh = self.add_handle(Handle::Read(Arc::new(OpenBlob::new(blob, cached))));
        let mode = if cached {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_DIRECT_IO
        };
        (fh, mode)
    }

    /// Remembers that `ino` was read at random, for its later opens.
    pub(crate) fn mark_read_at_random(&self, ino: u64) {
        // A
        if let Ok(mut r) = self.read_at_random.lock() {
            r.insert(ino);
        }
    }
}
