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
use ouroboros_db::{Cas, Error, Hash};

use crate::chunk_cache::{ChunkCache, OpenBlob};
use crate::disk_cache::{DiskCache, DEFAULT_LIMIT};
use crate::meta::MARKER;
use crate::node::{join, Node, META_DIR};
use crate::snap_tree::SnapListing;
use crate::snapshots::SnapCache;
use crate::write_handle::WriteHandle;
use ouroboros_db::model::FileMeta;

/// How long the kernel may cache names and attributes: short, so that versions stored by
/// other commands appear quickly.
pub(crate) const TTL: Duration = Duration::from_secs(1);
/// Entries in one directory listing at most (a listing is held per open directory).
/// Chunks waiting to be stored into the page cache; more are dropped, not queued.
const PUSH_QUEUE: usize = 16;
pub(crate) const MAX_DIR_ENTRIES: usize = 10_000_000;

pub(crate) enum Handle {
    Read(Arc<OpenBlob>),
    Write(Box<WriteHandle>),
    Dir(Vec<DirEntry>),
    /// A directory of a snapshot: its entries come from its tree record.
    SnapDir(Box<SnapListing>),
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
    /// Keys being written and not yet stored: visible as files meanwhile.
    pub(crate) pending: Mutex<HashMap<String, u64>>,
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

    /// After `from` was renamed to `to`: the kernel's inode of `from` now stands for `to`,
    /// and a new file at `from` gets another number.
    pub(crate) fn renamed(&self, from: &Node, to: Node) {
        // A
        let old = self.ino_of(from);
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.insert(old, to);
        }
        if let (Node::File(p) | Node::Dir(p), Ok(mut r)) = (from, self.renamed.lock()) {
            *r.entry(p.clone()).or_insert(0) += 1;
        }
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
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut hs) = self.handles.lock() {
            hs.insert(fh, Arc::new(Mutex::new(h)));
        }
        fh
    }

    /// The newest head of a live key.
    pub(crate) fn writable_key(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        // A
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        match self.node(parent)? {
            Node::Root if name == META_DIR => Err(Errno::EROFS),
            // Every directory's `.ouro` is its marker (meta.rs).
            Node::Dir(_) if name == MARKER => Err(Errno::EPERM),
            Node::Root => Ok(name.to_string()),
            Node::Dir(d) => Ok(join(&d, name)),
            _ => Err(Errno::EROFS),
        }
    }

    pub(crate) fn commit(&self, fh: FileHandle, closing: bool) -> Result<(), Errno> {
        // PA
        let h = self.handle(fh)?;
        let mut guard = h.lock().map_err(|_| Errno::EIO)?;
        if let Handle::Write(w) = &mut *guard {
            w.commit(&self.cas, closing).map_err(|e| {
                tracing::warn!(key = %w.key, error = %e, "storing a version failed");
                errno(&e)
            })?;
        }
        Ok(())
    }

    /// Opens key `key` for writing; a new key's versions record `new_meta` (create's mode
    /// and caller), an existing key's keep the head's mode and owner.
    pub(crate) fn open_write(
        &self,
        key: &str,
        truncate: bool,
        append: bool,
        new_meta: Option<FileMeta>,
    ) -> Result<u64, Errno> {
        // A
        // An earlier handle whose release is still coming is stored first: its version is
        // the parent of this one's (else each would start a head of its own).
        self.settle_pending(key)?;
        let head = self.head_blob(key)?;
        let meta = match (&head, new_meta) {
            (Some((_, b)), _) if b.meta.file().is_some_and(|m| m.is_symlink()) => {
                return Err(Errno::ELOOP)
            }
            (Some((_, b)), _) => self.meta_of(b),
            (None, Some(m)) => m,
            (None, None) => self.default_meta(crate::meta::now_nanos()),
        };
        let parent = head.map(|(h, _)| h);
        let w = WriteHandle::open(
            &self.cas,
            &self.tmp_dir,
            key,
            parent,
            (truncate, append),
            meta,
        )
        .map_err(|e| errno(&e))?;
        let fh = self.add_handle(Handle::Write(Box::new(w)));
        if let Ok(mut p) = self.pending.lock() {
            p.insert(key.to_string(), fh);
        }
        Ok(fh)
    }
}

impl OuroFs {
    /// Stops a key's open write handle from storing anything (the key was unlinked); true
    /// when there was one.
    pub(crate) fn discard_pending(&self, key: &str) -> bool {
        // A
        let fh = match self.pending.lock() {
            Ok(mut p) => p.remove(key),
            Err(_) => None,
        };
        let Some(h) = fh.and_then(|fh| self.handle(FileHandle(fh)).ok()) else {
            return false;
        };
        if let Ok(Handle::Write(w)) = h.lock().as_deref_mut() {
            w.discard();
        }
        true
    }

    /// Stores what a key's open write handle holds now (as its release would); returns the
    /// handle.
    pub(crate) fn settle_pending(&self, key: &str) -> Result<Option<u64>, Errno> {
        // A
        let fh = self
            .pending
            .lock()
            .map_err(|_| Errno::EIO)?
            .get(key)
            .copied();
        if let Some(fh) = fh {
            self.commit(FileHandle(fh), true)?;
        }
        Ok(fh)
    }

    /// Points open write handle `fh` of key `from` at `to`, whose head is now `head`.
    pub(crate) fn retarget_pending(
        &self,
        fh: u64,
        from: &str,
        to: &str,
        head: Hash,
    ) -> Result<(), Errno> {
        // A
        if let Handle::Write(w) = &mut *self
            .handle(FileHandle(fh))?
            .lock()
            .map_err(|_| Errno::EIO)?
        {
            w.retarget(to, head);
        }
        let mut p = self.pending.lock().map_err(|_| Errno::EIO)?;
        if p.get(from) == Some(&fh) {
            p.remove(from);
        }
        p.insert(to.to_string(), fh);
        Ok(())
    }

    pub(crate) fn close(&self, fh: u64) {
        // A
        let removed = self.handles.lock().ok().and_then(|mut h| h.remove(&fh));
        if let Some(h) = removed {
            if let Ok(guard) = h.lock() {
                if let Handle::Write(w) = &*guard {
                    if let Ok(mut p) = self.pending.lock() {
                        if p.get(&w.key) == Some(&fh) {
                            p.remove(&w.key);
                        }
                    }
                }
            }
        }
    }
}
