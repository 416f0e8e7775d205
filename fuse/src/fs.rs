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
use crate::node::{join, Node, META_DIR};
use crate::write_handle::WriteHandle;

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
    /// Directories made with mkdir that hold no key yet (they live until unmount).
    pub(crate) empty_dirs: Mutex<HashSet<String>>,
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
            empty_dirs: Mutex::new(HashSet::new()),
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
        self.nodes
            .lock()
            .map_err(|_| Errno::EIO)?
            .get(&ino.0)
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    pub(crate) fn remember(&self, node: Node) -> u64 {
        // A
        let ino = node.ino();
        if let Ok(mut n) = self.nodes.lock() {
            n.insert(ino, node);
        }
        ino
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

    pub(crate) fn open_write(&self, key: &str, truncate: bool, append: bool) -> Result<u64, Errno> {
        // A
        let parent = self.head(key)?.map(|(h, _, _)| h);
        let w = WriteHandle::open(&self.cas, &self.tmp_dir, key, parent, truncate, append)
            .map_err(|e| errno(&e))?;
        let fh = self.add_handle(Handle::Write(Box::new(w)));
        if let Ok(mut p) = self.pending.lock() {
            p.insert(key.to_string(), fh);
        }
        Ok(fh)
    }
}

impl OuroFs {
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
