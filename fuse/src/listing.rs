//! Directory listings: opened once (`opendir` takes the entries, or a snapshot directory's
//! record), then sent a page at a time by readdir and readdirplus.

use std::os::unix::ffi::OsStrExt;

use fuser::{Errno, FileHandle, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus};

use crate::fs::{Handle, OuroFs, TTL};
use crate::node::Node;

/// Entries whose attributes are read at once: about what the kernel's buffer takes.
const PAGE: usize = 64;

impl OuroFs {
    /// Opens directory `ino` for listing: a handle holding its entries.
    pub(crate) fn open_dir(&self, ino: INodeNo) -> Result<u64, Errno> {
        // A
        let node = self.node(ino)?;
        let handle = match node {
            Node::Snapshot { .. } | Node::SnapEntry { .. } => {
                Handle::SnapDir(Box::new(self.snap_open_dir(&node)?))
            }
            _ => Handle::Dir(self.list(ino.0, &node)?),
        };
        Ok(self.add_handle(handle))
    }

    /// readdir: names, inode numbers and kinds from `offset` until the kernel's buffer is
    /// full. A key's kind (file or symbolic link) is read a page at a time.
    pub(crate) fn read_dir(&self, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        // A
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let Ok(mut guard) = h.lock() else {
            return reply.error(Errno::EIO);
        };
        match &mut *guard {
            Handle::Dir(entries) => {
                let mut at = offset as usize;
                while at < entries.len() {
                    let end = entries.len().min(at + PAGE);
                    let page = &mut entries[at..end];
                    if let Err(e) = self.fill_attrs(page, false) {
                        return reply.error(e);
                    }
                    for (j, e) in page.iter().enumerate() {
                        let next = (at + j + 1) as u64;
                        if reply.add(INodeNo(e.ino), next, e.kind, &e.name) {
                            return reply.ok();
                        }
                    }
                    at = end;
                }
                reply.ok();
            }
            Handle::SnapDir(listing) => {
                listing.each(offset, |ino, next, kind, name| {
                    reply.add(INodeNo(ino), next, kind, name)
                });
                reply.ok();
            }
            _ => reply.error(Errno::ENOTDIR),
        }
    }

    /// readdirplus: entries with their attributes, each counted as a lookup by the kernel.
    pub(crate) fn read_dir_plus(&self, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        // A
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let Ok(mut guard) = h.lock() else {
            return reply.error(Errno::EIO);
        };
        match &mut *guard {
            Handle::Dir(entries) => {
                let mut at = offset as usize;
                while at < entries.len() {
                    let end = entries.len().min(at + PAGE);
                    let page = &mut entries[at..end];
                    if let Err(e) = self.fill_attrs(page, true) {
                        return reply.error(e);
                    }
                    for (j, e) in page.iter().enumerate() {
                        // An entry that vanished since the listing is left out.
                        let Some(attr) = e.attr else { continue };
                        let next = (at + j + 1) as u64;
                        if reply.add(INodeNo(e.ino), next, &e.name, &TTL, &attr, Generation(0)) {
                            return reply.ok();
                        }
                    }
                    at = end;
                }
                reply.ok();
            }
            Handle::SnapDir(listing) => {
                for at in offset..listing.len() as u64 {
                    let Some((node, attr)) = listing.plus(self, at) else {
                        break;
                    };
                    let name = std::ffi::OsStr::from_bytes(listing.name(at));
                    if reply.add(attr.ino, at + 1, name, &TTL, &attr, Generation(0)) {
                        break;
                    }
                    // Sent: the kernel counts a lookup of it (not of `.` and `..`).
                    if let Some(node) = node {
                        self.remember(node);
                    }
                }
                reply.ok();
            }
            _ => reply.error(Errno::ENOTDIR),
        }
    }
}
