//! Reading the files `put -r` stores: each opened only when first read, without changing
//! its access time, and checked again once read for changes made meanwhile.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::snapshot::dir_fd::DirFd;
use crate::snapshot::fsmeta::{nanos, NoAtime};
use crate::snapshot::xattrs::{self, Xattrs};

/// What the readers of one backup share.
#[derive(Default)]
pub(super) struct Reading {
    pub(super) noatime: NoAtime,
    /// Jobs whose file's size or times moved while it was read.
    pub(super) moved: Mutex<HashSet<usize>>,
    /// The extended attributes of jobs' files that have any, read through the descriptor
    /// their content is read from (the walk leaves a regular file's to its reading).
    pub(super) xattrs: Mutex<HashMap<usize, Xattrs>>,
}

/// Opens its file on the first read, so a tree of 50k files never holds 50k descriptors.
pub(super) struct LazyFile<'r> {
    /// Its job's number.
    pub(super) n: usize,
    pub(super) path: PathBuf,
    /// Its directory, when the walk kept it open: the file is opened by its name in it.
    pub(super) dir: Option<Arc<DirFd>>,
    /// Device and inode as the walk stat'ed it: only that file is read, whose metadata the
    /// entry records.
    pub(super) id: (u64, u64),
    pub(super) owner: u32,
    pub(super) stamp: (u64, i64, i64),
    pub(super) file: Option<std::fs::File>,
    pub(super) reading: &'r Reading,
}

impl Read for LazyFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A
        if self.file.is_none() {
            let f = self.open()?;
            self.note_xattrs(&f)?;
            self.file = Some(f);
        }
        match self.file.as_mut() {
            Some(f) => f.read(buf),
            None => Ok(0),
        }
    }
}

impl LazyFile<'_> {
    /// Opens the file the walk stat'ed: by its name in the directory the walk listed, else
    /// by its path as the walk found it, following no symlink. By then the name may hold
    /// another file (renamed over it), or the path lead to another directory (swapped for
    /// a symlink and back): content is read only from the very file (device, inode) whose
    /// owner and mode the entry records; any other is [`Replaced`], and its entry keeps its
    /// previous version.
    fn open(&self) -> std::io::Result<std::fs::File> {
        // PA
        // O_NOATIME (allowed to the owner and root): reading a file must not change its
        // access time, or the next run would record new metadata for every file.
        // O_NONBLOCK and the check below: a file replaced by a FIFO since the walk must
        // fail, not block the backup forever.
        use rustix::fs::OFlags;
        // O_NOCTTY: a terminal renamed over the file must not become root's controlling one.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let noatime = &self.reading.noatime;
        let walked = |m: &std::fs::Metadata| (m.dev(), m.ino()) == self.id;
        if let (Some(dir), Some(name)) = (&self.dir, self.path.file_name()) {
            if let Ok(fd) = noatime.open_at(dir.as_fd(), Path::new(name), flags, self.owner) {
                let f = std::fs::File::from(fd);
                if f.metadata().is_ok_and(|m| m.is_file() && walked(&m)) {
                    return Ok(f);
                }
            }
        }
        let f =
            noatime
                .open(&self.path, flags, self.owner)
                .map_err(|e| match e.raw_os_error() {
                    // What opening a socket says.
                    Some(libc::ENXIO) => not_a_file(),
                    _ => e,
                })?;
        let f = std::fs::File::from(f);
        let m = f.metadata()?;
        if !m.is_file() {
            return Err(not_a_file());
        }
        if !walked(&m) {
            return Err(std::io::Error::other(Replaced));
        }
        Ok(f)
    }
}

impl LazyFile<'_> {
    /// Notes the extended attributes of `f`, the file the walk stat'ed, for its entry.
    fn note_xattrs(&self, f: &std::fs::File) -> std::io::Result<()> {
        // PA
        let x = xattrs::of_fd(f.as_fd())?;
        if !x.is_empty() {
            let mut all = self
                .reading
                .xattrs
                .lock()
                .map_err(|_| std::io::Error::other("the reading state was lost"))?;
            all.insert(self.n, x);
        }
        Ok(())
    }
}

/// The file at a walked path is another one than the walk stat'ed (replaced by a rename, or
/// reached through a directory swapped since): not read, its previous version is kept.
#[derive(Debug)]
pub(super) struct Replaced;

impl std::fmt::Display for Replaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A
        f.write_str("replaced since the walk (another file at its path): read next run")
    }
}

impl std::error::Error for Replaced {}

/// True when `e` says the file was [`Replaced`].
pub(super) fn is_replaced(e: &std::io::Error) -> bool {
    // A
    e.get_ref().is_some_and(|r| r.is::<Replaced>())
}

impl Drop for LazyFile<'_> {
    /// Once read (the pipeline drops the reader at the end of the file), the open file is
    /// stat'ed again and closed: a size or time unlike the walk's means it changed while
    /// read, or that the walk saw another file at its path. Done here, on the reading
    /// thread, rather than for every file once the whole put is over; through the open
    /// file rather than its path, which the kernel would walk again (a file replaced at
    /// its path after its open was read whole, and the next run reads the new one).
    fn drop(&mut self) {
        // A
        let Some(f) = self.file.take() else { return };
        if moved(&f, self.stamp) {
            if let Ok(mut m) = self.reading.moved.lock() {
                m.insert(self.n);
            }
        }
    }
}

/// The error for a walked file that is something else now (a FIFO, a socket, a directory).
fn not_a_file() -> std::io::Error {
    // A
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "no longer a regular file")
}

/// True when the open file no longer has the size, mtime and ctime the walk recorded.
fn moved(file: &std::fs::File, (size, mtime, ctime): (u64, i64, i64)) -> bool {
    // A
    match file.metadata() {
        Ok(m) => {
            m.len() != size
                || nanos(m.mtime(), m.mtime_nsec()) != mtime
                || nanos(m.ctime(), m.ctime_nsec()) != ctime
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file the walk saw, replaced since by a symlink (or reached through a directory
    /// replaced by one) is not read through the link: a user turning `~/x` into a link to
    /// `/etc/shadow` while root's backup runs must not get the shadow file stored as `x`.
    #[test]
    fn symlinks_replacing_the_file_or_a_directory_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let secret = base.join("secret");
        std::fs::write(&secret, b"not yours").unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let dir_link = base.join("dir");
        std::os::unix::fs::symlink(&base, &dir_link).unwrap();
        let plain = base.join("plain");
        std::fs::write(&plain, b"mine").unwrap();
        let reading = Reading::default();
        let meta = std::fs::metadata(&secret).unwrap();
        // As the walk would have stat'ed them: the secret through the links, `plain` itself.
        let open = |path: PathBuf| LazyFile {
            n: 0,
            id: if path == plain {
                let m = std::fs::metadata(&plain).unwrap();
                (m.dev(), m.ino())
            } else {
                (meta.dev(), meta.ino())
            },
            path,
            dir: None,
            owner: 0,
            stamp: (4, 0, 0),
            file: None,
            reading: &reading,
        };
        for path in [link, dir_link.join("secret")] {
            let mut buf = Vec::new();
            let e = open(path.clone()).read_to_end(&mut buf).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{path:?}: {e}");
            assert!(e.to_string().contains("symbolic link"), "{e}");
            assert!(buf.is_empty());
        }
        let mut buf = Vec::new();
        open(plain.clone()).read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"mine");
    }

    /// Opened by name in the directory the walk listed (and kept open), a file replaced by
    /// a symlink is refused as by path; a directory moved away and replaced by a symlink
    /// since the walk is not followed: the file the walk stat'ed is read from the directory
    /// it listed. A file whose metadata the walk took through the swapped directory (the
    /// link target's: another file) is not read from the listed directory either, but by
    /// path, which refuses the link: its content is never recorded with another file's
    /// owner and mode.
    #[test]
    fn a_file_opened_in_its_walked_directory_follows_no_link() {
        use crate::snapshot::dir_fd::DirFd;
        use rustix::fs::OFlags;
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(base.join("elsewhere")).unwrap();
        std::fs::write(base.join("elsewhere/plain"), b"not yours").unwrap();
        let walked = base.join("walked");
        std::fs::create_dir(&walked).unwrap();
        std::fs::write(walked.join("plain"), b"mine").unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere/plain"), walked.join("link")).unwrap();
        let id = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.dev(), m.ino())
        };
        let mine = id(&walked.join("plain"));
        let theirs = id(&base.join("elsewhere/plain"));
        let reading = Reading::default();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = DirFd::for_test(reading.noatime.open(&walked, flags, 0).unwrap());
        let open = |name: &str, id: (u64, u64)| LazyFile {
            n: 0,
            path: walked.join(name),
            dir: Some(Arc::clone(&dir)),
            id,
            owner: 0,
            stamp: (4, 0, 0),
            file: None,
            reading: &reading,
        };
        let mut buf = Vec::new();
        let e = open("link", theirs).read_to_end(&mut buf).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(buf.is_empty());
        // The walked directory moves away and a link to another stands in its place.
        std::fs::rename(&walked, base.join("moved")).unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere"), &walked).unwrap();
        open("plain", mine).read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"mine");
        // The walk stat'ed `walked/plain` through the link: the file it described is not
        // the one in the listed directory, and by path the link is refused.
        buf.clear();
        let e = open("plain", theirs).read_to_end(&mut buf).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(buf.is_empty());
        // ... and the directory swapped back before the read: by path the user's file is
        // there again, not the one the walk stat'ed.
        std::fs::remove_file(&walked).unwrap();
        std::fs::rename(base.join("moved"), &walked).unwrap();
        let e = open("plain", theirs).read_to_end(&mut buf).unwrap_err();
        assert!(is_replaced(&e), "{e}");
        assert!(buf.is_empty());
        open("plain", mine).read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"mine");
    }
}
