//! Inside a snapshot: each entry with its recorded mode, owners, times, size, link target,
//! device number and extended attributes, read-only. Entries live in tree records (see
//! `snapshots.rs`); a node names its containing record and its raw path, so names need not
//! be UTF-8 and inode numbers derive from (snapshot, path).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType, INodeNo};
use ouroboros_db::model::{Blob, BlobKind, Entry, EntryKind, TreeRecord, VersionMeta};
use ouroboros_db::Hash;

use crate::fs::{errno, time_of, OuroFs};
use crate::node::{snap_ino, Node};
use crate::snapshots::SnapStream;

/// An open directory of a snapshot: its record, kept while it is listed.
pub(crate) struct SnapListing {
    snap: Hash,
    /// Raw path of the directory below the snapshot's root (empty for the root).
    path: Vec<u8>,
    /// The directory's own tree hash: the record its entries' nodes name.
    tree: Hash,
    record: Arc<TreeRecord>,
    /// The directory's own attributes, for `.` and `..`.
    attr: FileAttr,
}

/// An entry found: in a record, or a snapshot's root (which no record holds).
pub(crate) enum Found {
    /// Entry `.1` of record `.0`.
    In(Arc<TreeRecord>, usize),
    /// The root directory of a snapshot.
    Root(Arc<SnapStream>),
}

/// Extended attributes: (name, value) pairs.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

impl Found {
    /// The entry.
    pub(crate) fn entry(&self) -> Option<&Entry> {
        // A
        match self {
            Found::In(rec, i) => rec.entries.get(*i),
            Found::Root(s) => Some(&s.root),
        }
    }
}

/// `path/name`, raw bytes.
fn join_raw(path: &[u8], name: &[u8]) -> Vec<u8> {
    // A
    if path.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(path.len() + 1 + name.len());
    p.extend_from_slice(path);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// The file type of an entry kind.
fn kind_of(kind: EntryKind) -> FileType {
    // A
    match kind {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
    }
}

/// The kernel's 32-bit device number (`new_encode_dev`) of a recorded `st_rdev`.
fn encode_dev(rdev: u64) -> u32 {
    // A
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The inode number of entry `e` at `path` of snapshot `snap`: one per hard-link group.
fn entry_ino(snap: &Hash, path: &[u8], e: &Entry) -> u64 {
    // A
    snap_ino(snap, path, e.hardlink.filter(|_| e.kind != EntryKind::Dir))
}

impl OuroFs {
    /// The entry a snapshot node stands for.
    pub(crate) fn snap_found(&self, node: &Node) -> Result<Found, Errno> {
        // A
        match node {
            Node::Snapshot { hash, .. } => Ok(Found::Root(self.snap_stream(hash)?)),
            Node::SnapEntry {
                snap, dir, path, ..
            } => {
                let stream = self.snap_stream(snap)?;
                let rec = self.snap_record(&stream, dir)?;
                let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
                let i = rec
                    .entries
                    .binary_search_by(|e| e.name.as_slice().cmp(name))
                    .map_err(|_| Errno::ENOENT)?;
                Ok(Found::In(rec, i))
            }
            _ => Err(Errno::ENOENT),
        }
    }

    /// A snapshot directory node's snapshot, raw path and tree hash (ENOTDIR for others).
    fn snap_dir(&self, node: &Node) -> Result<(Hash, Vec<u8>, Hash), Errno> {
        // A
        let found = self.snap_found(node)?;
        let e = found.entry().ok_or(Errno::ENOENT)?;
        if e.kind != EntryKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        let tree = e.content.ok_or(Errno::EIO)?;
        match node {
            Node::Snapshot { hash, .. } => Ok((*hash, Vec::new(), tree)),
            Node::SnapEntry { snap, path, .. } => Ok((*snap, path.clone(), tree)),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Entry `name` (raw bytes) of a snapshot directory, with its attributes.
    pub(crate) fn snap_child(&self, parent: &Node, name: &[u8]) -> Result<(Node, FileAttr), Errno> {
        // A
        let (snap, path, tree) = self.snap_dir(parent)?;
        let rec = self.snap_record(&*self.snap_stream(&snap)?, &tree)?;
        let e = rec.get(name).ok_or(Errno::ENOENT)?;
        let path = join_raw(&path, name);
        let ino = entry_ino(&snap, &path, e);
        let attr = self.entry_attr(ino, e);
        Ok((
            Node::SnapEntry {
                snap,
                dir: tree,
                path,
                ino,
            },
            attr,
        ))
    }

    /// The attributes a recorded entry shows.
    pub(crate) fn entry_attr(&self, ino: u64, e: &Entry) -> FileAttr {
        // A
        let kind = kind_of(e.kind);
        let size = match e.kind {
            // readlink callers size their buffer by it.
            EntryKind::Symlink => e.target.len() as u64,
            _ => e.size,
        };
        let rdev = match e.kind {
            EntryKind::CharDevice | EntryKind::BlockDevice => encode_dev(e.rdev),
            _ => 0,
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time_of(e.atime),
            mtime: time_of(e.mtime),
            ctime: time_of(e.ctime),
            crtime: time_of(e.mtime),
            kind,
            perm: (e.mode & 0o7777) as u16,
            // Every name of a hard-link group has one inode; the group's size was not
            // recorded, 2 says "linked" to tar and cp -a, which then match inodes.
            nlink: if e.kind == EntryKind::Dir || e.hardlink.is_some() {
                2
            } else {
                1
            },
            uid: e.uid,
            gid: e.gid,
            rdev,
            blksize: 1 << 20,
            flags: 0,
        }
    }

    /// Attributes of any snapshot node.
    pub(crate) fn snap_attr(&self, node: &Node) -> Result<FileAttr, Errno> {
        // A
        match node {
            Node::SnapLatest(p) => {
                let all = self.cas.snapshots(p).map_err(|e| errno(&e))?;
                let newest = all.last().ok_or(Errno::ENOENT)?;
                Ok(self.latest_attr(node, newest.time, &newest.hash))
            }
            Node::SnapDir(_) => Ok(self.make_attr(node, FileType::Directory, 0, self.store_time())),
            _ => {
                let found = self.snap_found(node)?;
                let e = found.entry().ok_or(Errno::ENOENT)?;
                Ok(self.entry_attr(node.ino(), e))
            }
        }
    }

    /// Opens a snapshot directory for listing.
    pub(crate) fn snap_open_dir(&self, node: &Node) -> Result<SnapListing, Errno> {
        // A
        let (snap, path, tree) = self.snap_dir(node)?;
        let record = self.snap_record(&*self.snap_stream(&snap)?, &tree)?;
        Ok(SnapListing {
            attr: self.snap_attr(node)?,
            snap,
            path,
            tree,
            record,
        })
    }

    /// The record of a regular file of a snapshot, to open for reading (an empty file that
    /// names no version gets an empty record).
    pub(crate) fn snap_file_blob(&self, node: &Node) -> Result<Blob, Errno> {
        // A
        let found = self.snap_found(node)?;
        let e = found.entry().ok_or(Errno::ENOENT)?;
        match (e.kind, e.content) {
            (EntryKind::Dir, _) => Err(Errno::EISDIR),
            (EntryKind::File, Some(h)) => self.cas.blob(&h).map_err(|e| errno(&e)),
            (EntryKind::File, None) if e.size == 0 => Ok(Blob {
                key: String::new(),
                parents: Vec::new(),
                created: e.mtime,
                kind: BlobKind::VersionVector,
                size: 0,
                chunks: Vec::new(),
                meta: VersionMeta::None,
            }),
            (EntryKind::File, None) => Err(Errno::EIO),
            // FIFOs and devices are opened by the kernel, never here (nodev).
            _ => Err(Errno::EACCES),
        }
    }

    /// Extended attributes of a node: those recorded for snapshot entries, none elsewhere.
    pub(crate) fn xattrs(&self, node: &Node) -> Result<Xattrs, Errno> {
        // A
        match node {
            Node::Snapshot { .. } | Node::SnapEntry { .. } => Ok(self
                .snap_found(node)?
                .entry()
                .map(|e| e.xattrs.clone())
                .unwrap_or_default()),
            _ => Ok(Vec::new()),
        }
    }

    /// The value of extended attribute `name` of a node (ENODATA when it has none).
    pub(crate) fn xattr(&self, node: &Node, name: &[u8]) -> Result<Vec<u8>, Errno> {
        // A
        self.xattrs(node)?
            .into_iter()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, v)| v)
            .ok_or(Errno::NO_XATTR)
    }

    /// The names of a node's extended attributes, each followed by a NUL (listxattr's form).
    pub(crate) fn xattr_names(&self, node: &Node) -> Result<Vec<u8>, Errno> {
        // A
        let mut names = Vec::new();
        for (n, _) in self.xattrs(node)? {
            names.extend_from_slice(&n);
            names.push(0);
        }
        Ok(names)
    }

    /// Forgets `n` lookups of a snapshot entry: once the kernel holds none, its node goes
    /// (so walking a large snapshot does not grow the mount's memory without end).
    pub(crate) fn forget_snap(&self, ino: u64, n: u64) {
        // A
        let Ok(mut nodes) = self.snap_nodes.lock() else {
            return;
        };
        if let Some((_, count)) = nodes.get_mut(&ino) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                nodes.remove(&ino);
            }
        }
    }
}

impl SnapListing {
    /// Entries after `offset` for readdir: `(ino, next offset, kind, name)` until `add` says
    /// the kernel's buffer is full. Offsets 0 and 1 are `.` and `..`.
    pub(crate) fn each(
        &self,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileType, &OsStr) -> bool,
    ) {
        // A
        let mut at = offset as usize;
        while at < 2 {
            let name: &[u8] = if at == 0 { b"." } else { b".." };
            let ino = if at == 0 { self.attr.ino.0 } else { 1 };
            if add(
                ino,
                at as u64 + 1,
                FileType::Directory,
                OsStr::from_bytes(name),
            ) {
                return;
            }
            at += 1;
        }
        for (i, e) in self.record.entries.iter().enumerate().skip(at - 2) {
            let path = join_raw(&self.path, &e.name);
            let ino = entry_ino(&self.snap, &path, e);
            if add(
                ino,
                (i + 3) as u64,
                kind_of(e.kind),
                OsStr::from_bytes(&e.name),
            ) {
                return;
            }
        }
    }

    /// The node and attributes of entry `offset` (as numbered by [`SnapListing::each`]):
    /// `.` and `..` have no node.
    pub(crate) fn plus(&self, fs: &OuroFs, offset: u64) -> Option<(Option<Node>, FileAttr)> {
        // A
        match offset {
            0 | 1 => Some((None, self.attr)),
            n => {
                let e = self.record.entries.get(n as usize - 2)?;
                let path = join_raw(&self.path, &e.name);
                let ino = entry_ino(&self.snap, &path, e);
                let attr = fs.entry_attr(ino, e);
                let node = Node::SnapEntry {
                    snap: self.snap,
                    dir: self.tree,
                    path,
                    ino,
                };
                Some((Some(node), attr))
            }
        }
    }

    /// The raw name of entry `offset`.
    pub(crate) fn name(&self, offset: u64) -> &[u8] {
        // A
        match offset {
            0 => b".",
            1 => b"..",
            n => self
                .record
                .entries
                .get(n as usize - 2)
                .map(|e| e.name.as_slice())
                .unwrap_or_default(),
        }
    }

    /// Entries in the listing, `.` and `..` included.
    pub(crate) fn len(&self) -> usize {
        // A
        self.record.entries.len() + 2
    }
}
