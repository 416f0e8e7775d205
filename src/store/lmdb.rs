//! Opening the LMDB environment and its named databases.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use heed::{CommitOrAbort, EnvOpenOptions, WithoutTls};

use crate::error::{Error, Result};
use crate::store::map_watch::MapWatch;
use crate::store::mapped_pages::MappedPages;
use crate::store::open_lock::OpenLock;
use crate::store::{
    blob_log::BlobLog, blob_store::BlobStore, chunk_index::ChunkIndex, cluster_state::ClusterState,
    condemned::Condemned, deletion_wal::DeletionWal, key_index::KeyIndex, key_to_hash::KeyToHash,
    local_sealed_slice_store::LocalSealedSliceStore, meta::Meta, parent_child::ParentChild,
    removed::Removed, version_index::VersionIndex, Db,
};

/// Read transaction (sendable across threads: opened without thread-local storage).
pub type RoTxn<'e> = heed::RoTxn<'e, WithoutTls>;
/// Write transaction; LMDB allows one at a time across all processes.
pub type RwTxn<'e> = heed::RwTxn<'e>;

/// Virtual size of the memory map. The file is sparse and grows with the data; this only
/// bounds how large a store can get (1 TiB) without reopening.
const MAP_SIZE: usize = 1 << 40;

const NAMES: [&str; 14] = [
    "meta",
    "key_index",
    "slices",
    "slice_locs",
    "chunks",
    "chunk_refs",
    "blobs",
    "version_index",
    "key_to_hash",
    "parent_child",
    "removed",
    "deletion_wal",
    "blob_log",
    "cluster",
];

/// The environment and every component view over it.
pub struct Lmdb {
    /// The thread bounding this process's mapped pages of the store (`None` if it could
    /// not start). It holds the environment open, so it comes first: fields drop in order,
    /// and the environment must be closed before the open lock is let go.
    pub(crate) watch: Option<MapWatch>,
    env: heed::Env<WithoutTls>,
    /// The open lock, held shared (or exclusive, by compaction) as long as `env` is open.
    open_lock: Option<OpenLock>,
    /// Every named database, in [`NAMES`] order.
    all: [Db; 14],
    /// Opened with `MDB_RDONLY` because this user cannot write the store's files.
    read_only: bool,
    path: PathBuf,
    /// Store configuration.
    pub meta: Meta,
    /// Wrapped key bundles per recipient and epoch.
    pub key_index: KeyIndex,
    /// Sealed slices, bundled per chunk.
    pub slices: LocalSealedSliceStore,
    /// Chunk records and reference counts.
    pub chunks: ChunkIndex,
    /// Blob records, in log order, by hash.
    pub blobs: BlobStore,
    /// Key -> heads and tombstone.
    pub versions: VersionIndex,
    /// Key -> every version, in time order.
    pub key_to_hash: KeyToHash,
    /// Parent -> children.
    pub parent_child: ParentChild,
    /// Versions removed and waiting for gc.
    pub removed: Removed,
    /// Log of deletions for the cluster.
    pub deletion_wal: DeletionWal,
    /// Log of versions (the blob records themselves), for replication.
    pub blob_log: BlobLog,
    /// Cluster membership and cursors.
    pub cluster: ClusterState,
    /// Condemned chunk sealings (in the `cluster` database).
    pub condemned: Condemned,
}

impl Lmdb {
    /// True when an LMDB store exists in `dir`.
    pub fn exists(dir: &Path) -> bool {
        // A
        dir.join("data.mdb").is_file()
    }

    /// Opens (and with `create`, creates) the environment and its databases, holding the
    /// store's open lock shared (waiting while a compaction swaps the data file).
    pub fn open(dir: &Path, create: bool) -> Result<Self> {
        // A
        if !create && !Self::exists(dir) {
            return Err(Error::NotInitialised(dir.display().to_string()));
        }
        if create {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating store directory {}", dir.display()), e))?;
        }
        let waiting = || {
            tracing::warn!(
                "waiting for the compaction of store {} to finish",
                dir.display()
            )
        };
        let lock = OpenLock::shared(dir, &waiting)?;
        Self::open_holding(dir, create, lock)
    }

    /// Opens the environment with the open lock already held (`lock`, kept until
    /// [`Lmdb::close`]): how compaction opens the store it holds exclusive.
    pub(crate) fn open_holding(dir: &Path, create: bool, lock: Option<OpenLock>) -> Result<Self> {
        // A
        // A compaction may have replaced the file while this process waited for the lock.
        if !create && !Self::exists(dir) {
            return Err(Error::NotInitialised(dir.display().to_string()));
        }
        // LMDB maps the file and follows page numbers without checking its size: one cut
        // short would kill this process with SIGBUS on the first page past its end.
        if !create {
            crate::store::data_file::check(dir)?;
        }
        let (env, read_only) = open_env(dir, create)?;
        let dbs: [Db; 14] = if create {
            let wtxn = env.write_txn()?;
            env.create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_> {
                let mut out = Vec::with_capacity(NAMES.len());
                for name in NAMES {
                    out.push(opener.create_database(wtxn, Some(name))?);
                }
                let arr: [_; 14] = out
                    .try_into()
                    .map_err(|_| Error::Lmdb("database count".into()))?;
                Ok(CommitOrAbort::<_, ()>::Commit(arr))
            })?
            .unwrap_commit()
        } else {
            let rtxn = env.read_txn()?;
            env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
                let mut out = Vec::with_capacity(NAMES.len());
                for name in NAMES {
                    match opener.open_database(rtxn, Some(name))? {
                        Some(db) => out.push(db),
                        None => return Ok(CommitOrAbort::Abort(name)),
                    }
                }
                let arr: [_; 14] = out
                    .try_into()
                    .map_err(|_| Error::Lmdb("database count".into()))?;
                Ok(CommitOrAbort::Commit(arr))
            })?
            .into_result()
            .map_err(|name| {
                Error::NotInitialised(format!(
                    "{} (database '{name}' is missing: not an ouro store, or created by an older build)",
                    dir.display()
                ))
            })?
        };
        let all = dbs;
        let [meta, key_index, slices, slice_locs, chunks, chunk_refs, blobs, versions, key_to_hash, parent_child, removed, deletion_wal, blob_log, cluster] =
            dbs;
        let blob_store = BlobStore {
            by_hash: blobs,
            log: blob_log,
            meta,
        };
        let version_index = VersionIndex {
            rows: versions,
            blobs: blob_store,
            numbered: key_to_hash,
            meta,
        };
        let mapped = Arc::new(MappedPages::new(dir));
        let watch = MapWatch::start(Arc::clone(&mapped), env.clone());
        Ok(Lmdb {
            env,
            open_lock: lock,
            all,
            read_only,
            path: dir.to_path_buf(),
            meta: Meta(meta),
            key_index: KeyIndex(key_index),
            slices: LocalSealedSliceStore {
                bundles: slices,
                locs: slice_locs,
                meta,
                mapped,
            },
            chunks: ChunkIndex {
                records: chunks,
                refs: chunk_refs,
                meta,
            },
            blobs: blob_store,
            versions: version_index,
            key_to_hash: KeyToHash {
                rows: key_to_hash,
                keys: version_index,
                blobs: blob_store,
            },
            parent_child: ParentChild {
                rows: parent_child,
                blobs: blob_store,
            },
            removed: Removed(removed),
            deletion_wal: DeletionWal(deletion_wal),
            blob_log: BlobLog(blob_store),
            cluster: ClusterState(cluster),
            condemned: Condemned(cluster),
            watch,
        })
    }

    /// Closes the environment (unmapping the data file), waiting up to `patience` for the
    /// transactions still open to end, and hands back the open lock it held. An error when
    /// they do not end: the file is then still mapped.
    pub(crate) fn close(self, patience: std::time::Duration) -> Result<Option<OpenLock>> {
        // PA
        let Lmdb {
            env,
            open_lock,
            watch,
            ..
        } = self;
        // The watch holds the environment open: stop it first.
        drop(watch);
        if !env.prepare_for_closing().wait_timeout(patience) {
            return Err(Error::Internal(
                "the store's database stayed in use: it could not be closed".into(),
            ));
        }
        Ok(open_lock)
    }

    /// Notes a lookup through the map, one per record a scan reads beside the one it pages
    /// through: the map is released once it grew enough ([`MappedPages::note_lookup`]).
    ///
    /// [`MappedPages::note_lookup`]: crate::store::mapped_pages::MappedPages::note_lookup
    pub fn note_lookup(&self) {
        // A
        self.slices.mapped.note_lookup();
    }

    /// Starts a read transaction on a consistent snapshot; never blocks writers.
    pub fn read(&self) -> Result<RoTxn<'_>> {
        // A
        self.poke_watch();
        self.slices.mapped.note_lookup();
        Ok(self.env.read_txn()?)
    }

    /// Wakes the watch of the mapped pages (`src/store/map_watch.rs`) if it sleeps: the
    /// store is in use again.
    fn poke_watch(&self) {
        // A
        if let Some(w) = &self.watch {
            w.poke();
        }
    }

    /// Starts the write transaction, waiting for any other writer (in any process).
    pub fn write(&self) -> Result<RwTxn<'_>> {
        // A
        self.poke_watch();
        if self.read_only {
            return Err(Error::denied(format!(
                    "store {} is open read-only (this user cannot write its files), and this command changes it",
                    self.path.display()
                )));
        }
        Ok(self.env.write_txn()?)
    }

    /// True when the store was opened read-only (its files are not writable here).
    pub fn is_read_only(&self) -> bool {
        // A
        self.read_only
    }

    /// Commits a write transaction. LMDB reports a short write on a full disk as EIO, so an
    /// I/O error while the store's filesystem is nearly full is reported as [`Error::NoSpace`].
    pub fn commit(&self, txn: RwTxn) -> Result<()> {
        // PA
        let committed = txn.commit().map_err(|e| {
            let io = matches!(
                e,
                heed::Error::Io(_) | heed::Error::Mdb(heed::MdbError::Other(5 | 28))
            );
            if io && self.nearly_full() {
                Error::NoSpace(format!("the disk holding {} is full", self.path.display()))
            } else {
                Error::from(e)
            }
        });
        // The pages this transaction read stay in the page cache; unmapping them keeps a
        // long command's RssFile to what one transaction touches.
        self.slices.mapped.release();
        committed
    }

    /// True when less than 64 MiB is free for unprivileged writers on the store's filesystem.
    fn nearly_full(&self) -> bool {
        // A
        self.free_bytes().is_some_and(|f| f < 64 << 20)
    }

    /// Bytes unprivileged writers may still use on the store's filesystem (None when the
    /// filesystem cannot say).
    pub fn free_bytes(&self) -> Option<u64> {
        // A
        rustix::fs::statvfs(&self.path)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .ok()
    }

    /// Writes a copy of the store, every record from one read snapshot, as a new
    /// environment in directory `dir` (which must exist and hold none), closed when this
    /// returns; returns the size of its data file. Records go in key order and appending
    /// (`MDB_APPEND`), so that the copy's pages are full and none is free; commits every
    /// [`COPY_BATCH`] bytes and releases the pages read as it goes, so memory stays bounded
    /// (LMDB's own copy maps the whole store). Writers go on meanwhile.
    pub(crate) fn copy_into(&self, dir: &Path) -> Result<u64> {
        // PA
        let dest = Lmdb::open_holding(dir, true, None)?;
        self.copy_records_to(&dest)?;
        let size = dest.disk_size()?;
        dest.close(CLOSING)?;
        Ok(size)
    }

    /// The records of [`Lmdb::copy_into`], into `dest`.
    fn copy_records_to(&self, dest: &Lmdb) -> Result<()> {
        // PA
        let src = self.read()?;
        let mut txn = dest.write()?;
        let mut pending = 0usize;
        for (from, to) in self.all.iter().zip(dest.all.iter()) {
            for item in from.iter(&src)? {
                let (k, v) = item?;
                to.put_with_flags(&mut txn, heed::PutFlags::APPEND, k, v)?;
                let n = k.len() + v.len();
                // The source pages read stay mapped until released: big values by their
                // bytes, small ones by what their pages' faults mapped.
                self.slices.mapped.note_read(n);
                self.slices.mapped.note_lookup();
                pending += n;
                if pending >= COPY_BATCH {
                    dest.commit(txn)?;
                    (txn, pending) = (dest.write()?, 0);
                }
            }
        }
        dest.commit(txn)
    }

    /// Checks again that the data file holds every page LMDB uses ([`Error::Damaged`] when
    /// not), for verify: the file may have been cut since the store was opened.
    pub fn check_file(&self) -> Result<()> {
        // A
        crate::store::data_file::check(&self.path)
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        // A
        &self.path
    }

    /// Bytes of the data file's pages that hold records, and of those that are free (freed
    /// by earlier transactions, reused by later ones; a file never shrinks by itself).
    pub fn page_use(&self) -> Result<PageUse> {
        // A
        let txn = self.read()?;
        let mut used = META_PAGES + MAIN_PAGES;
        let mut page_size = 4096;
        for db in &self.all {
            let st = db.stat(&txn)?;
            page_size = st.page_size as u64;
            used += (st.branch_pages + st.leaf_pages + st.overflow_pages) as u64;
        }
        let pages = self.env.info().last_page_number as u64 + 1;
        Ok(PageUse {
            used_bytes: used * page_size,
            reusable_bytes: pages.saturating_sub(used) * page_size,
        })
    }

    /// Bytes the data file occupies on disk.
    pub fn disk_size(&self) -> Result<u64> {
        // A
        Ok(self.env.real_disk_size()?)
    }
}

/// Bytes of records per write transaction of [`Lmdb::copy_into`].
const COPY_BATCH: usize = 16 << 20;
/// How long closing a store may wait for this process's own transactions on it to end.
pub(crate) const CLOSING: std::time::Duration = std::time::Duration::from_secs(30);

/// LMDB's two meta pages.
const META_PAGES: u64 = 2;
/// The main database's pages: one leaf holds the 14 names. The free list's own few pages
/// are counted as free.
const MAIN_PAGES: u64 = 1;

/// How the data file's pages are used: see [`Lmdb::page_use`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageUse {
    /// Bytes of pages holding records (what a compacted copy needs).
    pub used_bytes: u64,
    /// Bytes of free pages up to the file's last page in use: reused by later writes,
    /// returned to the filesystem only by compaction.
    pub reusable_bytes: u64,
}

/// Opens the environment; when this user may not write the store's files (or they are on a
/// read-only filesystem), opens it read-only instead (`MDB_RDONLY`), so that reading
/// commands still work. Returns the environment and whether it is read-only.
/// Bytes of `lock.mdb` allocated before LMDB maps it: its header and 512 reader slots take
/// 32,896.
const LOCK_FILE_BYTES: u64 = 40 << 10;

/// Gives `lock.mdb` real disk blocks before LMDB sizes it (with `ftruncate`, leaving a hole)
/// and writes it through a shared map: on a full filesystem the first such write would kill
/// the process with SIGBUS. Allocated first, a full disk is an error (exit 9). A lock file
/// this user cannot open (a read-only store), or a filesystem that cannot allocate ahead,
/// is left to LMDB as before.
fn allocate_lock_file(dir: &Path) -> Result<()> {
    // PA
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("lock.mdb");
    let Ok(file) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
    else {
        return Ok(());
    };
    let len = file.metadata().map_or(0, |m| m.len()).max(LOCK_FILE_BYTES);
    match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Err(e) if e == rustix::io::Errno::NOSPC || e == rustix::io::Errno::DQUOT => Err(Error::io(
            format!("allocating {}", path.display()),
            e.into(),
        )),
        _ => Ok(()),
    }
}

fn open_env(dir: &Path, create: bool) -> Result<(heed::Env<WithoutTls>, bool)> {
    // A
    let mut opts = EnvOpenOptions::new().read_txn_without_tls();
    opts.map_size(MAP_SIZE)
        .max_dbs(NAMES.len() as u32)
        .max_readers(512);
    let shown = dir.display();
    let fail = |e: heed::Error| match e {
        heed::Error::Io(io) => Error::io(format!("opening store {shown}"), io),
        heed::Error::EnvAlreadyOpened => Error::InvalidArgument(format!(
            "store {shown} is already open in this process: share that handle (Cas is Sync)"
        )),
        other => Error::from(other),
    };
    allocate_lock_file(dir)?;
    // SAFETY: heed requires that the environment's files are not modified other than
    // through LMDB and that it is not opened with conflicting options in this process;
    // ouro only ever opens a store through this function, with these options.
    let denied = match unsafe { opts.open(dir) } {
        Ok(env) => return Ok((env, false)),
        Err(heed::Error::Io(io)) if !create && not_writable(&io) => io,
        Err(e) => return Err(fail(e)),
    };
    // SAFETY: as above; MDB_RDONLY only makes LMDB open the files for reading. LMDB still
    // needs lock.mdb writable, except on a read-only filesystem, where no writer can exist.
    let read_only = unsafe {
        opts.flags(heed::EnvFlags::READ_ONLY);
        opts.open(dir)
    };
    match read_only {
        Ok(env) => Ok((env, true)),
        Err(heed::Error::Io(io)) if not_writable(&io) => Err(Error::io(
            format!(
                "opening store {shown}: this user cannot write its files, and even reading needs write access to {}/lock.mdb (LMDB records its readers there) unless the store is on a read-only filesystem",
                shown
            ),
            denied,
        )),
        Err(e) => Err(fail(e)),
    }
}

/// Permission denied, or a read-only filesystem.
pub(crate) fn not_writable(io: &std::io::Error) -> bool {
    // A
    io.kind() == std::io::ErrorKind::PermissionDenied
        || io.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error())
}

/// Helper for the CommitOrAbort results above.
trait IntoResult<T, A> {
    fn into_result(self) -> std::result::Result<T, A>;
}

impl<T, A> IntoResult<T, A> for CommitOrAbort<T, A> {
    fn into_result(self) -> std::result::Result<T, A> {
        // A
        match self {
            CommitOrAbort::Commit(t) => Ok(t),
            CommitOrAbort::Abort(a) => Err(a),
        }
    }
}
