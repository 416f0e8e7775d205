//! An entry pinned by an `O_PATH` descriptor: its status, link target and extended
//! attributes all read from that one file, so that a rename over its name between two of
//! those reads cannot pair one file's owner and mode with another's link target or
//! attributes. `O_PATH` needs no permission on the file itself and has no effect on it
//! (a device is not opened, a FIFO not waited on).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::model::Entry;
use crate::snapshot::fsmeta::{entry_of, Status};
use crate::snapshot::owners::Owners;
use crate::snapshot::xattrs;

/// A file held by an `O_PATH` descriptor, with its status.
pub struct Pinned {
    fd: OwnedFd,
    /// Its status, from the descriptor.
    pub status: Status,
}

impl Pinned {
    /// Entry `name` of the open directory `dir`, not followed.
    pub fn at(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<Pinned> {
        // PA
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
        Pinned::of(fd)
    }

    /// The file at `path`, following no symlink in any component (`openat2` with
    /// `RESOLVE_NO_SYMLINKS`; before Linux 5.6, `O_NOFOLLOW` on the last one only).
    pub fn by_path(path: &Path) -> std::io::Result<Pinned> {
        // PA
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let cwd = rustix::fs::CWD;
        let fd =
            match rustix::fs::openat2(cwd, path, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS) {
                Err(rustix::io::Errno::NOSYS) => {
                    rustix::fs::openat(cwd, path, flags, Mode::empty())
                }
                r => r,
            }?;
        Pinned::of(fd)
    }

    fn of(fd: OwnedFd) -> std::io::Result<Pinned> {
        // A
        let status = Status::of_fd(fd.as_fd())?;
        Ok(Pinned { fd, status })
    }

    /// Its entry named `name`, with its link target (a symlink) and extended attributes;
    /// `None` for a socket. `full` (its whole path) serves only where /proc is missing.
    pub fn entry(
        &self,
        name: &[u8],
        full: &Path,
        owners: &Owners,
    ) -> std::io::Result<Option<Entry>> {
        // PA
        let Some(mut entry) = entry_of(name, &self.status, owners) else {
            return Ok(None);
        };
        if entry.kind == crate::model::EntryKind::Symlink {
            entry.target = rustix::fs::readlinkat(self.fd.as_fd(), "", Vec::new())?.into_bytes();
        }
        // Not opened for reading, which would break a lease on it (an oplock of Samba, a
        // delegation of NFS) and fire the open events a scanner waits on, every run.
        entry.xattrs = xattrs::of_opath(self.fd.as_fd(), full)?;
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntryKind;

    fn set(p: &Path, v: &[u8]) -> bool {
        rustix::fs::lsetxattr(p, c"user.k", v, rustix::fs::XattrFlags::empty()).is_ok()
    }

    /// Every kind gets its status, link target and attributes from the pinned file, which a
    /// rename over its name after the pinning does not change.
    #[test]
    fn a_pinned_entry_is_the_file_pinned_not_what_was_renamed_over_it() {
        let tmp = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(tmp.path()).unwrap();
        std::os::unix::fs::symlink("first", d.join("l")).unwrap();
        std::os::unix::fs::symlink("second", d.join("l2")).unwrap();
        std::fs::write(d.join("f"), b"x").unwrap();
        std::fs::write(d.join("f2"), b"other").unwrap();
        let xattrs = set(&d.join("f"), b"mine") && set(&d.join("f2"), b"theirs");
        let dir = std::fs::File::open(&d).unwrap();
        let owners = Owners::system();
        let link = Pinned::at(dir.as_fd(), b"l").unwrap();
        let file = Pinned::at(dir.as_fd(), b"f").unwrap();
        std::fs::rename(d.join("l2"), d.join("l")).unwrap();
        std::fs::rename(d.join("f2"), d.join("f")).unwrap();
        let l = link.entry(b"l", &d.join("l"), &owners).unwrap().unwrap();
        assert_eq!(
            (l.kind, l.target.as_slice()),
            (EntryKind::Symlink, &b"first"[..])
        );
        let f = file.entry(b"f", &d.join("f"), &owners).unwrap().unwrap();
        assert_eq!((f.kind, f.size), (EntryKind::File, 1));
        if xattrs {
            assert_eq!(f.xattrs, vec![(b"user.k".to_vec(), b"mine".to_vec())]);
        }
        let by_path = Pinned::by_path(&d.join("f")).unwrap();
        assert_eq!(by_path.status.size, 5);
        std::os::unix::fs::symlink(&d, d.join("up")).unwrap();
        assert!(Pinned::by_path(&d.join("up/f")).is_err());
    }
}
