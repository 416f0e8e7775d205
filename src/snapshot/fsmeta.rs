//! Reading an entry's metadata from the file system, and writing it back on restore.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Timespec, Timestamps, XattrFlags, CWD};

use crate::model::{Entry, EntryKind};
use crate::snapshot::owners::Owners;

/// The entry for `path` (not followed when it is a symlink), without content; `None` for
/// sockets and other kinds a restore could not create.
pub fn read_entry(
    path: &Path,
    name: &[u8],
    meta: &std::fs::Metadata,
    owners: &Owners,
) -> std::io::Result<Option<Entry>> {
    // A
    let ft = meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_char_device() {
        EntryKind::CharDevice
    } else if ft.is_block_device() {
        EntryKind::BlockDevice
    } else {
        return Ok(None);
    };
    let target = match kind {
        EntryKind::Symlink => std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
        _ => Vec::new(),
    };
    let hardlink = (kind != EntryKind::Dir && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
    Ok(Some(Entry {
        name: name.to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: owners.user(meta.uid()),
        group: owners.group(meta.gid()),
        mtime: nanos(meta.mtime(), meta.mtime_nsec()),
        atime: nanos(meta.atime(), meta.atime_nsec()),
        ctime: nanos(meta.ctime(), meta.ctime_nsec()),
        size: if kind == EntryKind::Dir {
            0
        } else {
            meta.len()
        },
        content: None,
        target,
        rdev: if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            meta.rdev()
        } else {
            0
        },
        hardlink,
        xattrs: read_xattrs(path)?,
    }))
}

pub(super) fn nanos(secs: i64, nsec: i64) -> i64 {
    // A
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Bytes of attribute names or of one value read in a single call, before asking the size
/// (most entries have no attributes or a short ACL: one system call instead of two).
const XATTR_STACK: usize = 256;

/// Extended attributes of `path` (not followed), sorted by name. A file system without
/// xattr support has none.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    // A
    let mut stack = [0u8; XATTR_STACK];
    let names = match rustix::fs::llistxattr(path, &mut stack[..]) {
        Ok(0) => return Ok(Vec::new()),
        Ok(n) => stack[..n].to_vec(),
        Err(e) if unsupported(e) => return Ok(Vec::new()),
        Err(rustix::io::Errno::RANGE) => list_xattrs(path)?,
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        match read_xattr(path, &cname) {
            Ok(Some(v)) => out.push((name.to_vec(), v)),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// The attribute names of `path`, NUL-separated, when they do not fit [`XATTR_STACK`].
fn list_xattrs(path: &Path) -> std::io::Result<Vec<u8>> {
    // A
    let mut names = Vec::new();
    for _ in 0..4 {
        let want = match rustix::fs::llistxattr_query(path) {
            Ok(0) => return Ok(Vec::new()),
            Ok(n) => n,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        names = vec![0u8; want];
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            // The list grew between the two calls: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(names)
}

fn read_xattr(path: &Path, name: &std::ffi::CStr) -> std::io::Result<Option<Vec<u8>>> {
    // A
    let mut stack = [0u8; XATTR_STACK];
    match rustix::fs::lgetxattr(path, name, &mut stack[..]) {
        Ok(n) => return Ok(Some(stack[..n].to_vec())),
        Err(rustix::io::Errno::NODATA) => return Ok(None),
        Err(rustix::io::Errno::RANGE) => {}
        Err(e) => return Err(e.into()),
    }
    for _ in 0..4 {
        let want = match rustix::fs::lgetxattr_query(path, name) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut v = vec![0u8; want];
        match rustix::fs::lgetxattr(path, name, &mut v[..]) {
            Ok(n) => {
                v.truncate(n);
                return Ok(Some(v));
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

fn unsupported(e: rustix::io::Errno) -> bool {
    // A
    e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP
}

/// How a restore treats owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerPolicy {
    /// Not restored (not running as root: as tar does).
    Skip,
    /// By recorded name, falling back to the recorded id.
    ByName,
    /// By recorded id only (`--numeric-owner`).
    Numeric,
}

/// Writes `entry`'s owner, extended attributes, mode and times onto `path` (not
/// followed), in the order that keeps each: the owner first (chown clears setuid and
/// setgid), the mode after it, the times last (every other change moves them). Returns
/// what could not be set, as messages; the caller reports them.
pub fn apply_meta(path: &Path, entry: &Entry, owners: &Owners, policy: OwnerPolicy) -> Vec<String> {
    // PA
    let mut problems = Vec::new();
    let mut note = |what: &str, e: std::io::Error| problems.push(format!("{what}: {e}"));
    if policy != OwnerPolicy::Skip {
        let (uid, gid) = match policy {
            OwnerPolicy::ByName => (
                owners.uid_for(&entry.user, entry.uid),
                owners.gid_for(&entry.group, entry.gid),
            ),
            _ => (entry.uid, entry.gid),
        };
        // SAFETY-free: rustix takes raw ids through its own checked constructors.
        let owner = rustix::fs::Uid::from_raw(uid);
        let group = rustix::fs::Gid::from_raw(gid);
        if let Err(e) = rustix::fs::chownat(
            CWD,
            path,
            Some(owner),
            Some(group),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            note("owner", e.into());
        }
    }
    if let Err(e) = write_xattrs(path, &entry.xattrs) {
        note("extended attributes", e);
    }
    if entry.kind != EntryKind::Symlink {
        let mode = rustix::fs::Mode::from_raw_mode(entry.mode & 0o7777);
        if let Err(e) = rustix::fs::chmodat(CWD, path, mode, AtFlags::empty()) {
            note("mode", e.into());
        }
    }
    if let Err(e) = set_times(path, entry.atime, entry.mtime) {
        note("times", e);
    }
    problems
}

/// Sets access and modification times (ns) on `path`, not following a symlink.
pub fn set_times(path: &Path, atime: i64, mtime: i64) -> std::io::Result<()> {
    // PA
    let ts = |ns: i64| Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    };
    let times = Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Makes `path`'s extended attributes exactly `want`: sets each, removes the others.
fn write_xattrs(path: &Path, want: &[(Vec<u8>, Vec<u8>)]) -> std::io::Result<()> {
    // PA
    let have = read_xattrs(path)?;
    for (name, _) in &have {
        if want.iter().all(|(n, _)| n != name) {
            let cname = cstring(name)?;
            match rustix::fs::lremovexattr(path, &cname) {
                Ok(()) | Err(rustix::io::Errno::NODATA) => {}
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

/// Opens files and directories with O_NOATIME where allowed, so that a backup does not
/// change access times (the next run would record new metadata for every entry). The
/// kernel allows it to a file's owner and to a process with CAP_FOWNER (root); once it has
/// refused it for a file of another user, later files of other users are opened without
/// it at once instead of with two tries each (a user backing up /usr: every file).
#[derive(Debug)]
pub struct NoAtime {
    euid: u32,
    refused_for_others: AtomicBool,
}

impl Default for NoAtime {
    fn default() -> Self {
        // A
        NoAtime {
            euid: rustix::process::geteuid().as_raw(),
            refused_for_others: AtomicBool::new(false),
        }
    }
}

impl NoAtime {
    /// Opens `path` (owned by user `owner`) with `flags`, adding O_NOATIME when allowed.
    /// No symbolic link is followed in any component of `path` (the walk's paths have none,
    /// the root being canonical): a file or directory replaced by a symlink since the walk
    /// saw it fails with [`replaced_by_symlink`] instead of reading what the link names (a
    /// user's `~/x` turned into a link to `/etc/shadow` while root's backup runs).
    pub fn open(
        &self,
        path: &Path,
        flags: rustix::fs::OFlags,
        owner: u32,
    ) -> std::io::Result<OwnedFd> {
        // A
        self.open_at(CWD, path, flags, owner)
    }

    /// [`NoAtime::open`] of `path` relative to the open directory `dir`: with a file's name
    /// in the directory the walk listed, the kernel resolves one component instead of the
    /// whole path again.
    pub fn open_at(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        flags: rustix::fs::OFlags,
        owner: u32,
    ) -> std::io::Result<OwnedFd> {
        // A
        use rustix::fs::OFlags;
        let other = owner != self.euid;
        let opened = 'open: {
            if !(other && self.refused_for_others.load(Ordering::Relaxed)) {
                match open_no_symlinks(dir, path, flags | OFlags::NOATIME) {
                    Err(rustix::io::Errno::PERM) if other => {
                        self.refused_for_others.store(true, Ordering::Relaxed)
                    }
                    Err(rustix::io::Errno::PERM) => {}
                    r => break 'open r,
                }
            }
            open_no_symlinks(dir, path, flags)
        };
        opened.map_err(|e| match e {
            rustix::io::Errno::LOOP => replaced_by_symlink(),
            e => e.into(),
        })
    }
}

/// The error for a path that holds a symbolic link where the walk saw none.
pub fn replaced_by_symlink() -> std::io::Error {
    // A
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "replaced by a symbolic link (in its path) since the walk: not followed",
    )
}

/// Opens `path` (relative to `dir`) following no symlink in any component (`openat2` with
/// `RESOLVE_NO_SYMLINKS`; where the kernel lacks it, before Linux 5.6, `O_NOFOLLOW` guards
/// the last component only).
fn open_no_symlinks(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: rustix::fs::OFlags,
) -> rustix::io::Result<OwnedFd> {
    // A
    use rustix::fs::{openat, Mode, OFlags};
    static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match rustix::fs::openat2(
            dir,
            path,
            flags,
            Mode::empty(),
            rustix::fs::ResolveFlags::NO_SYMLINKS,
        ) {
            Err(rustix::io::Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    openat(dir, path, flags | OFlags::NOFOLLOW, Mode::empty())
}

/// The raw bytes of a path, for messages and records.
pub fn path_bytes(p: &Path) -> Vec<u8> {
    // A
    p.as_os_str().as_bytes().to_vec()
}
