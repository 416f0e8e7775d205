//! Reading an entry's metadata from the file system, and writing it back on restore.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

use crate::model::{Entry, EntryKind};
use crate::snapshot::owners::Owners;
use crate::snapshot::xattrs;

/// What the walk records of an entry, from stat(2): taken relative to the directory the
/// walk listed ([`Status::at`]) or through the entry's own descriptor ([`Status::of_fd`]),
/// never by a path the kernel would resolve again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Device of the file system holding it (with `ino`: which file this is).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// Hard links.
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device file.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Access time, ns since the epoch.
    pub atime: i64,
    /// Modification time, ns.
    pub mtime: i64,
    /// Status change time, ns.
    pub ctime: i64,
}

impl Status {
    /// The status of entry `name` of the open directory `dir`, not followed.
    pub fn at(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<Status> {
        // A
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(Status::of(&st))
    }

    /// The status of an open file or directory.
    pub fn of_fd(fd: BorrowedFd<'_>) -> std::io::Result<Status> {
        // A
        Ok(Status::of(&rustix::fs::fstat(fd)?))
    }

    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Status {
        // A
        Status {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            size: st.st_size as u64,
            atime: nanos(st.st_atime as i64, st.st_atime_nsec as i64),
            mtime: nanos(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: nanos(st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }

    /// Device and inode: which file this is.
    pub fn id(&self) -> (u64, u64) {
        // A
        (self.dev, self.ino)
    }

    /// The kind of entry; `None` for sockets and other kinds a restore could not create.
    pub fn kind(&self) -> Option<EntryKind> {
        // A
        use rustix::fs::FileType;
        match FileType::from_raw_mode(self.mode as _) {
            FileType::RegularFile => Some(EntryKind::File),
            FileType::Directory => Some(EntryKind::Dir),
            FileType::Symlink => Some(EntryKind::Symlink),
            FileType::Fifo => Some(EntryKind::Fifo),
            FileType::CharacterDevice => Some(EntryKind::CharDevice),
            FileType::BlockDevice => Some(EntryKind::BlockDevice),
            _ => None,
        }
    }
}

/// The entry named `name` with status `st`, without content, link target or extended
/// attributes (each read where it is safe to: see the walk); `None` for sockets and other
/// kinds a restore could not create.
pub fn entry_of(name: &[u8], st: &Status, owners: &Owners) -> Option<Entry> {
    // A
    let kind = st.kind()?;
    let hardlink = (kind != EntryKind::Dir && st.nlink > 1).then(|| st.id());
    Some(Entry {
        name: name.to_vec(),
        kind,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        user: owners.user(st.uid),
        group: owners.group(st.gid),
        mtime: st.mtime,
        atime: st.atime,
        ctime: st.ctime,
        size: if kind == EntryKind::Dir { 0 } else { st.size },
        content: None,
        target: Vec::new(),
        rdev: if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            st.rdev
        } else {
            0
        },
        hardlink,
        xattrs: Vec::new(),
    })
}

pub(super) fn nanos(secs: i64, nsec: i64) -> i64 {
    // A
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
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
    if let Err(e) = xattrs::write(path, &entry.xattrs) {
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
    std::io::Error::new(std::io::ErrorKind::InvalidInput, ReplacedBySymlink)
}

/// True when `e` is [`replaced_by_symlink`]'s.
pub fn is_replaced_by_symlink(e: &std::io::Error) -> bool {
    // A
    e.get_ref().is_some_and(|r| r.is::<ReplacedBySymlink>())
}

/// What [`replaced_by_symlink`] says.
#[derive(Debug)]
struct ReplacedBySymlink;

impl std::fmt::Display for ReplacedBySymlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A
        f.write_str("replaced by a symbolic link (in its path) since the walk: not followed")
    }
}

impl std::error::Error for ReplacedBySymlink {}

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
