//! Entries the walk of `put -r` pins: a symlink's, FIFO's, device's or unchanged file's
//! status, link target and attributes all from one file, held by an `O_PATH` descriptor
//! opened by its name in the directory listed; or, when that fails, the parent snapshot's
//! entry, kept whole as for a file that cannot be read.

use std::os::fd::BorrowedFd;
use std::path::Path;

use crate::model::{Entry, EntryKind};
use crate::snapshot::fsmeta::Status;
use crate::snapshot::pinned::Pinned;
use crate::snapshot::walk::{WalkContext, Walked};

/// What pinning an entry gave ([`Walked::pin_or_keep`]).
pub(super) enum Pinning {
    /// Its status and entry, from the file pinned.
    Now(Status, Entry),
    /// The parent snapshot's entry, kept whole.
    Kept(Entry),
    /// Left out (noted or recorded).
    Skip,
}

impl Walked {
    /// `name` (at `path`, relative path `rel`) of the open directory `dir`, stat'ed as
    /// `kind`, pinned: its status, link target and attributes all from one file. When it
    /// cannot be (out of descriptors, attributes unreadable), the parent snapshot's entry
    /// `previous` of the same kind, whole, with an error, as for a file that cannot be read;
    /// gone or replaced by another kind, nothing, with a note.
    pub(super) fn pin_or_keep(
        &mut self,
        at: (BorrowedFd<'_>, &Path, &[u8], &[u8]),
        kind: EntryKind,
        previous: Option<&Entry>,
        cx: &WalkContext,
    ) -> Pinning {
        // PA
        let (dir, path, name, rel) = at;
        match self.try_pin(dir, path, name, cx) {
            Ok(Some((st, e))) if e.kind == kind => Pinning::Now(st, e),
            Ok(_) => {
                self.unread::<()>(rel, replaced());
                Pinning::Skip
            }
            Err(e) if is_gone_or_replaced(&e) => {
                self.unread::<()>(rel, e);
                Pinning::Skip
            }
            Err(e) => match previous.filter(|p| p.kind == kind) {
                Some(p) => {
                    let why = format!("{e} (the previous version is kept)");
                    self.errors.push((rel.to_vec(), why));
                    Pinning::Kept(p.clone())
                }
                None => {
                    self.errors.push((rel.to_vec(), e.to_string()));
                    Pinning::Skip
                }
            },
        }
    }

    /// The status and entry of `name` in the open directory `dir` (at `path`), with its link
    /// target and attributes, all from the file an `O_PATH` descriptor pins; `None` for a
    /// socket.
    fn try_pin(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: &[u8],
        cx: &WalkContext,
    ) -> std::io::Result<Option<(Status, Entry)>> {
        // PA
        let p = Pinned::at(dir, name)?;
        Ok(p.entry(name, path, cx.owners)?.map(|e| (p.status, e)))
    }
}

/// True when `e` says an entry is gone or replaced by another kind since it was listed (a
/// note, as for a vanished file, rather than an error).
fn is_gone_or_replaced(e: &std::io::Error) -> bool {
    // A
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
    ) || e.raw_os_error() == Some(libc::ELOOP)
}

/// The note for an entry replaced by another kind while the walk read it.
fn replaced() -> std::io::Error {
    // A
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "replaced during the walk (another kind of entry): left out, read next run",
    )
}
