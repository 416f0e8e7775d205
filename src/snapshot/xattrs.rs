//! Extended attributes of an entry: read from an open file or directory, from a name in an
//! open directory, or from a path; written back onto a path on restore.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

/// An entry's extended attributes, `(name, value)` sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Bytes of attribute names or of one value read in a single call, before asking the size
/// (most entries have no attributes or a short ACL: one system call instead of two).
const STACK: usize = 256;

/// Where attributes are read from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A path, its last component not followed.
    Path(&'a Path),
    /// An open file or directory: the very one whose status was taken from it.
    Fd(BorrowedFd<'a>),
    /// A path whose last component is followed: `/proc/self/fd/N` of an `O_PATH`
    /// descriptor, which leads to the file it holds (a symlink itself, when it holds one).
    Follow(&'a Path),
}

impl Source<'_> {
    fn list(self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        // A
        match self {
            Source::Path(p) => rustix::fs::llistxattr(p, buf),
            Source::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            Source::Follow(p) => rustix::fs::listxattr(p, buf),
        }
    }

    fn list_query(self) -> rustix::io::Result<usize> {
        // A
        match self {
            Source::Path(p) => rustix::fs::llistxattr_query(p),
            Source::Fd(fd) => rustix::fs::flistxattr_query(fd),
            Source::Follow(p) => rustix::fs::listxattr_query(p),
        }
    }

    fn get(self, name: &CStr, buf: &mut [u8]) -> rustix::io::Result<usize> {
        // A
        match self {
            Source::Path(p) => rustix::fs::lgetxattr(p, name, buf),
            Source::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            Source::Follow(p) => rustix::fs::getxattr(p, name, buf),
        }
    }

    fn get_query(self, name: &CStr) -> rustix::io::Result<usize> {
        // A
        match self {
            Source::Path(p) => rustix::fs::lgetxattr_query(p, name),
            Source::Fd(fd) => rustix::fs::fgetxattr_query(fd, name),
            Source::Follow(p) => rustix::fs::getxattr_query(p, name),
        }
    }
}

/// Extended attributes of `path` (not followed). A file system without xattr support has
/// none.
pub fn of_path(path: &Path) -> std::io::Result<Xattrs> {
    // A
    read(Source::Path(path))
}

/// Extended attributes of an open file or directory: those of the file whose status was
/// taken through the same descriptor, whatever has since been renamed over its path.
pub fn of_fd(fd: BorrowedFd<'_>) -> std::io::Result<Xattrs> {
    // PA
    read(Source::Fd(fd))
}

/// Extended attributes of the file an `O_PATH` descriptor holds (which `flistxattr`
/// refuses), through `/proc/self/fd`: those of that very file, whatever has since been
/// renamed over its path. Without /proc (a bare chroot), through `full`, its whole path.
pub fn of_opath(fd: BorrowedFd<'_>, full: &Path) -> std::io::Result<Xattrs> {
    // PA
    if !proc_fd() {
        return of_path(full);
    }
    let at = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    read(Source::Follow(&at))
}

/// True when `/proc/self/fd` can name open descriptors.
fn proc_fd() -> bool {
    // A
    static PROC: OnceLock<bool> = OnceLock::new();
    *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

fn read(src: Source) -> std::io::Result<Xattrs> {
    // A
    let mut stack = [0u8; STACK];
    let names = match src.list(&mut stack[..]) {
        Ok(0) => return Ok(Vec::new()),
        Ok(n) => stack[..n].to_vec(),
        Err(e) if unsupported(e) => return Ok(Vec::new()),
        Err(Errno::RANGE) => list_large(src)?,
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        if let Some(v) = value(src, &cname)? {
            out.push((name.to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// The attribute names, NUL-separated, when they do not fit [`STACK`].
fn list_large(src: Source) -> std::io::Result<Vec<u8>> {
    // A
    let mut names = Vec::new();
    for _ in 0..4 {
        let want = match src.list_query() {
            Ok(0) => return Ok(Vec::new()),
            Ok(n) => n,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        names = vec![0u8; want];
        match src.list(&mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            // The list grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(names)
}

/// One attribute's value; `None` when it was removed since it was listed.
fn value(src: Source, name: &CStr) -> std::io::Result<Option<Vec<u8>>> {
    // A
    let mut stack = [0u8; STACK];
    match src.get(name, &mut stack[..]) {
        Ok(n) => return Ok(Some(stack[..n].to_vec())),
        Err(Errno::NODATA) => return Ok(None),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e.into()),
    }
    for _ in 0..4 {
        let want = match src.get_query(name) {
            Ok(n) => n,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut v = vec![0u8; want];
        match src.get(name, &mut v[..]) {
            Ok(n) => {
                v.truncate(n);
                return Ok(Some(v));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

fn unsupported(e: Errno) -> bool {
    // A
    e == Errno::NOTSUP || e == Errno::OPNOTSUPP
}

/// Makes `path`'s extended attributes exactly `want`: sets each, removes the others.
pub(super) fn write(path: &Path, want: &[(Vec<u8>, Vec<u8>)]) -> std::io::Result<()> {
    // PA
    let have = of_path(path)?;
    for (name, _) in &have {
        if want.iter().all(|(n, _)| n != name) {
            let cname = cstring(name)?;
            match rustix::fs::lremovexattr(path, &cname) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    for (name, value) in want {
        if have.iter().any(|(n, v)| n == name && v == value) {
            continue;
        }
        let cname = cstring(name)?;
        rustix::fs::lsetxattr(path, &cname, value, XattrFlags::empty())?;
    }
    Ok(())
}

fn cstring(name: &[u8]) -> std::io::Result<std::ffi::CString> {
    // A
    std::ffi::CString::new(name).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "attribute name holds NUL")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Sets `user.k` on `p`, or says why the file system refuses.
    fn set(p: &Path, v: &[u8]) -> bool {
        rustix::fs::lsetxattr(p, c"user.k", v, XattrFlags::empty()).is_ok()
    }

    #[test]
    fn a_descriptor_an_o_path_descriptor_and_a_path_read_the_same_attributes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        if !set(&f, &[7u8; 300]) {
            eprintln!("skipped: this file system has no user xattrs");
            return;
        }
        let want = vec![(b"user.k".to_vec(), vec![7u8; 300])];
        assert_eq!(of_path(&f).unwrap(), want);
        let file = std::fs::File::open(&f).unwrap();
        assert_eq!(of_fd(file.as_fd()).unwrap(), want);
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW;
        let pinned =
            rustix::fs::openat(rustix::fs::CWD, &f, flags, rustix::fs::Mode::empty()).unwrap();
        assert_eq!(
            of_opath(pinned.as_fd(), Path::new("/nowhere")).unwrap(),
            want
        );
    }

    #[test]
    fn write_makes_the_attributes_exactly_those_asked() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        if !set(&f, b"old") {
            eprintln!("skipped: this file system has no user xattrs");
            return;
        }
        let want = vec![(b"user.new".to_vec(), b"v".to_vec())];
        write(&f, &want).unwrap();
        assert_eq!(of_path(&f).unwrap(), want);
    }
}
