//! The FUSE filesystem: answers the kernel's requests from the store, one read transaction
//! per request, so changes made by other ouro commands show up within the attribute TTL.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileHandle, FileType, INodeNo};
use ouroboros_db::model::key::MAX_KEY_BYTES;
use ouroboros_db::{Cas, Error, Hash};

use crate::chunk_cache::{ChunkCache, OpenBlob};
use crate::disk_cache::{DiskCache, DEFAULT_LIMIT};
use crate::meta::MARKER;
use crate::node::{join, Node, META_DIR};
use crate::snap_tree::SnapListing;
use crate::snapshots::SnapCache;
use crate::write_handle::WriteHandle;

/// How long the kernel may cache names and attributes: short, so that versions stored by
/// other commands appear quickly.
pub(crate) const TTL: Duration = Duration::from_secs(1);
/// Entries in one directory listing at most (a listing is held per open directory).
/// Chunks waiting to be stored into the page cache; more are dropped, not queued.
const PUSH_QUEUE: usize = 16;
pub(crate) const MAX_DIR_ENTRIES: usize = 10_000_000;
/// Longest name in a directory (what statfs reports, as most filesystems): longer ones are
/// ENAMETOOLONG.
pub(crate) const NAME_MAX: usize = 255;

pub(crate) enum Handle {
    Read(Arc<OpenBlob>),
    Write(Box<WriteHandle>),
    Dir(Vec<DirEntry>),
    /// A directory of a snapshot: its entries come from its tree record.
    SnapDir(Box<SnapListing>),
}

/// The write state of a key open for writing, shared by every descriptor open on it.
pub(crate) struct OpenWrite {
    pub(crate) handle: Arc<Mutex<Handle>>,
    /// Descriptors on it whose release has not come yet.
    pub(crate) fds: usize,
}

/// What an unlinked inode still shows to the descriptors open on it.
#[derive(Clone)]
pub(crate) enum Orphan {
    /// Its write handle: size and metadata as written. Weak: the descriptors hold it, and
    /// its temp file goes with the last of them even if the kernel never forgets this number.
    Write(std::sync::Weak<Mutex<Handle>>),
    /// The attributes it had.
    Fixed(fuser::FileAttr),
}

/// One entry of an open directory's listing.
pub(crate) struct DirEntry {
    pub(crate) ino: u64,
    pub(crate) kind: FileType,
    pub(crate) name: String,
    pub(crate) node: Node,
    /// Known from the listing itself; else looked up when readdirplus needs it.
    pub(crate) attr: Option<fuser::FileAttr>,
    /// A key's heads: readdirplus reads the newest one's size and time for a page of
    /// entries in one transaction.
    pub(crate) heads: Vec<ouroboros_db::Hash>,
}

/// Settings of a mount.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Let other users in (FUSE `allow_other`; the kernel then checks each file's mode
    /// against the caller, `default_permissions`). A normal user needs `user_allow_other`
    /// in `/etc/fuse.conf`.
    pub allow_other: bool,
    /// Bytes of decoded chunks kept in memory.
    pub cache_bytes: usize,
    /// Most bytes of decoded chunks kept on disk for reads at scattered offsets (None: 1 GiB;
    /// never more than a quarter of the free space; below 16 MiB none).
    pub disk_cache_bytes: Option<u64>,
}

/// The store as a filesystem.
pub struct OuroFs {
    pub(crate) cas: Arc<Cas>,
    pub(crate) opts: MountOptions,
    pub(crate) cache: Arc<ChunkCache>,
    pub(crate) nodes: Mutex<HashMap<u64, Node>>,
    pub(crate) handles: Mutex<HashMap<u64, Arc<Mutex<Handle>>>>,
    /// Keys open for writing: the handle every descriptor on the key shares. Visible as
    /// files meanwhile, and kept until the last descriptor's release.
    pub(crate) pending: Mutex<HashMap<String, OpenWrite>>,
    /// Descriptors opened with O_APPEND: their writes go to the end.
    pub(crate) append_fhs: Mutex<HashSet<u64>>,
    /// Inodes whose file was unlinked (or renamed over) while the kernel still knew them:
    /// an open descriptor's fstat still answers, from this, until the kernel forgets them.
    pub(crate) orphans: Mutex<HashMap<u64, Orphan>>,
    /// Key-tree paths a rename moved an inode to: the kernel's inode of that name, which
    /// is not the number derived from the path (see `renamed`).
    pub(crate) moved_inos: Mutex<HashMap<String, Vec<u64>>>,
    /// Large version records, decoded once.
    pub(crate) blobs: Mutex<crate::blob_cache::BlobCache>,
    /// Entries of snapshots the kernel knows, with its lookup count: dropped when it forgets
    /// them (there can be millions; the other nodes are few per key).
    pub(crate) snap_nodes: Mutex<HashMap<u64, (Node, u64)>>,
    /// Key-tree paths renamed away from in this mount, and how often (see `ino_of`).
    pub(crate) renamed: Mutex<HashMap<String, u32>>,
    /// Open snapshot streams and decoded directory records.
    pub(crate) snaps: SnapCache,
    /// The version of each key file last opened for reading: the kernel may still cache its
    /// pages, which stay valid while the key's head is that version.
    pub(crate) opened_versions: Mutex<HashMap<u64, Hash>>,
    /// Files (inodes) that were read at random: later opens of them go through the kernel's
    /// page cache. Others are opened with direct I/O.
    pub(crate) read_at_random: Mutex<HashSet<u64>>,
    pub(crate) next_fh: AtomicU64,
    pub(crate) tmp_dir: PathBuf,
    pub(crate) uid: u32,
    /// Set once the session exists; the pusher waits for it.
    pub(crate) notifier: Arc<OnceLock<fuser::Notifier>>,
    pub(crate) gid: u32,
}

/// The errno a library error becomes.
pub(crate) fn errno(e: &Error) -> Errno {
    // A
    match e {
        Error::NotFound(_) | Error::KeyDeleted { .. } => Errno::ENOENT,
        Error::InvalidKey { key, .. } if key.len() > MAX_KEY_BYTES => Errno::ENAMETOOLONG,
        Error::InvalidKey { .. } | Error::InvalidRef { .. } | Error::InvalidArgument(_) => {
            Errno::EINVAL
        }
        Error::NoSpace(_) => Errno::ENOSPC,
        Error::Identity(_) => Errno::EACCES,
        _ => Errno::EIO,
    }
}

pub(crate) fn time_of(nanos: i64) -> SystemTime {
    // A
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH
    }
}

impl OuroFs {
    /// A filesystem over `cas`; temp files of writes go to the store's `cache/` directory.
    pub fn new(cas: Arc<Cas>, opts: MountOptions) -> Self {
        // A
        let cache_bytes = if opts.cache_bytes == 0 {
            32 << 20
        } else {
            opts.cache_bytes
        };
        let tmp_dir = cas.path().join("cache");
        // Missing only in a store that never ran `put -r`; a failure shows on the first write.
        let _ = std::fs::create_dir_all(&tmp_dir);
        let mut nodes = HashMap::new();
        nodes.insert(1, Node::Root);
        let notifier: Arc<OnceLock<fuser::Notifier>> = Arc::new(OnceLock::new());
        let (pusher, pushes) = sync_channel::<(u64, u64, Arc<Vec<u8>>)>(PUSH_QUEUE);
        let n = Arc::clone(&notifier);
        // Its own thread: storing into the page cache waits for page locks that requests
        // still being answered may hold, which a request thread must never do.
        std::thread::spawn(move || {
            for (ino, offset, data) in pushes {
                if let Some(n) = n.get() {
                    let _ = n.store(INodeNo(ino), offset, &data);
                }
            }
        });
        OuroFs {
            cache: ChunkCache::new(
                Arc::clone(&cas),
                cache_bytes,
                pusher,
                DiskCache::new(&tmp_dir, opts.disk_cache_bytes.unwrap_or(DEFAULT_LIMIT)),
            ),
            cas,
            opts,
            nodes: Mutex::new(nodes),
            handles: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            append_fhs: Mutex::new(HashSet::new()),
            orphans: Mutex::new(HashMap::new()),
            moved_inos: Mutex::new(HashMap::new()),
            blobs: Mutex::default(),
            snap_nodes: Mutex::new(HashMap::new()),
            snaps: SnapCache::default(),
            renamed: Mutex::new(HashMap::new()),
            opened_versions: Mutex::new(HashMap::new()),
            read_at_random: Mutex::new(HashSet::new()),
            next_fh: AtomicU64::new(1),
            tmp_dir,
            notifier,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        }
    }

    pub(crate) fn node(&self, ino: INodeNo) -> Result<Node, Errno> {
        // A
        if let Some(n) = self.nodes.lock().map_err(|_| Errno::EIO)?.get(&ino.0) {
            return Ok(n.clone());
        }
        self.snap_nodes
            .lock()
            .map_err(|_| Errno::EIO)?
            .get(&ino.0)
            .map(|(n, _)| n.clone())
            .ok_or(Errno::ENOENT)
    }

    /// Keeps `node` for requests naming its inode; called once per lookup the kernel
    /// counts (lookup, create, mkdir, an entry of readdirplus), which `forget` takes back
    /// for snapshot entries.
    pub(crate) fn remember(&self, node: Node) -> u64 {
        // A
        let ino = self.ino_of(&node);
        if matches!(node, Node::SnapEntry { .. }) {
            if let Ok(mut n) = self.snap_nodes.lock() {
                let slot = n.entry(ino).or_insert((node, 0));
                slot.1 += 1;
            }
        } else if let Ok(mut n) = self.nodes.lock() {
            n.insert(ino, node);
        }
        // Handed out for a live name: whatever an unlinked file of this number showed is
        // no longer the kernel's view of it.
        if let Ok(mut o) = self.orphans.lock() {
            o.remove(&ino);
        }
        ino
    }

    /// The inode number of `node`: derived from its path, and changed for a key-tree path
    /// each time a file was renamed away from it (the kernel's inode of the old number now
    /// names the new path).
    pub(crate) fn ino_of(&self, node: &Node) -> u64 {
        // A
        let path = match node {
            Node::File(p) | Node::Dir(p) => p,
            _ => return node.ino(),
        };
        let renames = self
            .renamed
            .lock()
            .ok()
            .and_then(|r| r.get(path).copied())
            .unwrap_or(0);
        node.ino_after_renames(renames)
    }

    pub(crate) fn handle(&self, fh: FileHandle) -> Result<Arc<Mutex<Handle>>, Errno> {
        // A
        self.handles
            .lock()
            .map_err(|_| Errno::EIO)?
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    pub(crate) fn add_handle(&self, h: Handle) -> u64 {
        // A
        self.add_shared(Arc::new(Mutex::new(h)))
    }

    /// A new descriptor on handle `h` (which other descriptors may share).
    pub(crate) fn add_shared(&self, h: Arc<Mutex<Handle>>) -> u64 {
        // A
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut hs) = self.handles.lock() {
            hs.insert(fh, h);
        }
        fh
    }

    /// The key that `name` in directory `parent` stands for, when it may be changed: names
    /// over 255 bytes and keys over 400 (the key limit) are ENAMETOOLONG.
    pub(crate) fn writable_key(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        // A
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        let key = match self.node(parent)? {
            Node::Root if name == META_DIR => return Err(Errno::EROFS),
            // Every directory's `.ouro` is its marker (meta.rs).
            Node::Dir(_) if name == MARKER => return Err(Errno::EPERM),
            Node::Root => name.to_string(),
            Node::Dir(d) => join(&d, name),
            _ => return Err(Errno::EROFS),
        };
        if key.len() > MAX_KEY_BYTES {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(key)
    }
}
