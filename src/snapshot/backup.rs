//! `put -r`: one snapshot per run. Walk the tree, store the files that changed as versions
//! of their keys (one pipeline for all), write every directory's record into the tree
//! stream, and store the stream as a new version of the prefix's snapshot key.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cas::{now_nanos, Cas, PutItem, PutOutcome};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::meta::TYPE_FILE;
use crate::model::snapshot::{snapshot_key, MAX_LISTED_ERRORS};
use crate::model::{
    validate_key, Entry, EntryKind, FileMeta, SnapshotInfo, SnapshotSummary, TreeRecord,
    VersionMeta,
};
use crate::progress::Progress;
use crate::snapshot::dir_fd::DirFd;
use crate::snapshot::fsmeta::path_bytes;
use crate::snapshot::handoff::{Handoff, Receiver};
use crate::snapshot::lazy_file::{is_replaced, LazyFile, Reading};
use crate::snapshot::names::display;
use crate::snapshot::owners::Owners;
use crate::snapshot::pinned::Pinned;
use crate::snapshot::stream::{StreamReader, StreamWriter};
use crate::snapshot::walk::{file_key, FileJob, FoundFile, Settled, WalkContext, Walked};
use crate::snapshot::xattrs::Xattrs;
use crate::store::lock::GcLock;

/// Files the walk may find before the put reads them ([`Handoff`]): enough that the reading
/// never waits for the walk.
const WALK_AHEAD: usize = 1024;

/// What a backup needs: the directory, the key prefix, what to leave out.
pub struct BackupOptions<'a> {
    /// The directory to back up.
    pub source: PathBuf,
    /// Key prefix: files become keys `PREFIX/REL/PATH`, snapshots versions of
    /// `.ouro/snapshots/PREFIX`.
    pub prefix: String,
    /// Leaves out relative paths (raw bytes; `true` for directories) for which it is true.
    pub exclude: &'a dyn Fn(&[u8], bool) -> bool,
    /// Host name to record; `None` = this machine's.
    pub host: Option<String>,
    /// Progress in bytes read.
    pub progress: &'a dyn Progress,
}

/// What a backup did.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The snapshot version.
    pub snapshot: Hash,
    /// Its description.
    pub info: SnapshotInfo,
    /// Paths kept with a warning (changed while read), or skipped (sockets), and why.
    pub warnings: Vec<(String, String)>,
    /// Paths that failed and why (their previous version is kept when there is one).
    pub errors: Vec<(String, String)>,
}

/// What the reading side needs of a file the walk found.
struct ToRead {
    key: String,
    path: PathBuf,
    /// Its directory, kept open by the walk.
    dir: Option<Arc<DirFd>>,
    /// Device and inode as the walk stat'ed it.
    id: (u64, u64),
    owner: u32,
    /// Size, mtime and ctime as the walk recorded them.
    stamp: (u64, i64, i64),
    meta: FileMeta,
}

impl ToRead {
    /// The file the walk found, to be read only while it is the file the walk stat'ed.
    fn of(f: FoundFile) -> Self {
        // A
        ToRead {
            dir: f.dir,
            ..ToRead::again(f.key, f.path, f.entry, f.id)
        }
    }

    /// A file read again by path after the walk (its key had several heads), as the walk
    /// stat'ed it (device and inode `id`): a user who forks their key must not get another
    /// file's content read under its metadata.
    fn again(key: String, path: PathBuf, e: &Entry, id: (u64, u64)) -> Self {
        // A
        ToRead {
            key,
            path,
            dir: None,
            id,
            owner: e.uid,
            stamp: (e.size, e.mtime, e.ctime),
            meta: FileMeta {
                mode: TYPE_FILE | e.mode,
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
            },
        }
    }

    /// The put of job `n`, whose reader notes in `reading` whether the file moved.
    fn item(self, n: usize, parents: Option<Vec<Hash>>, reading: &Reading) -> PutItem<'_> {
        // A
        PutItem {
            key: self.key,
            size_hint: Some(self.stamp.0),
            reader: Box::new(LazyFile {
                n,
                path: self.path,
                dir: self.dir,
                id: self.id,
                owner: self.owner,
                stamp: self.stamp,
                file: None,
                reading,
            }),
            parents,
            created: None,
            skip_if_unchanged: true,
            meta: VersionMeta::File(self.meta),
        }
    }
}

impl Cas {
    /// Backs up a directory as a new snapshot of `opts.prefix`, with every entry's
    /// metadata; returns the snapshot's hash and summary. Files unchanged since the
    /// parent snapshot (the newest of this host and path) are not read again.
    ///
    /// ```
    /// # use ouroboros_db::{Cas, CreateOptions, Identity, NoProgress};
    /// # use ouroboros_db::snapshot::BackupOptions;
    /// # fn main() -> Result<(), ouroboros_db::Error> {
    /// # let store = tempfile::tempdir().unwrap();
    /// # let src = tempfile::tempdir().unwrap();
    /// std::fs::write(src.path().join("a.txt"), b"hello").unwrap();
    /// let cas = Cas::create(store.path(), &CreateOptions::default(), &Identity::generate())?;
    /// let report = cas.put_tree(&BackupOptions {
    ///     source: src.path().to_path_buf(),
    ///     prefix: "docs".into(),
    ///     exclude: &|_, _| false,
    ///     host: None,
    ///     progress: &NoProgress,
    /// })?;
    /// assert_eq!(report.info.summary.files_new, 1);
    /// assert_eq!(cas.snapshots("docs")?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn put_tree(&self, opts: &BackupOptions) -> Result<BackupReport> {
        // PA
        let started = now_nanos();
        let prefix = opts.prefix.trim_end_matches('/');
        validate_key(prefix)?;
        let skey = snapshot_key(prefix);
        let root = std::fs::canonicalize(&opts.source).map_err(|e| {
            Error::io(
                format!("cannot open directory {}", opts.source.display()),
                e,
            )
        })?;
        let root_meta = std::fs::metadata(&root)
            .map_err(|e| Error::io(format!("cannot open directory {}", root.display()), e))?;
        if !root_meta.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let store =
            std::fs::canonicalize(self.path()).unwrap_or_else(|_| self.path().to_path_buf());
        if root.starts_with(&store) {
            return Err(Error::InvalidArgument(format!(
                "{} is inside the store ({}): back up another directory",
                root.display(),
                store.display()
            )));
        }
        // A store inside the tree (a home directory holding ~/.local/share/ouro) is left out:
        // its files change while they are read.
        let store_rel = store.strip_prefix(&root).ok().map(path_bytes);
        let exclude = |rel: &[u8], is_dir: bool| {
            store_rel.as_deref() == Some(rel) || (opts.exclude)(rel, is_dir)
        };
        let host = opts.host.clone().unwrap_or_else(host_name);
        let path = path_bytes(&root);
        let owners = Owners::system();
        // Held shared from choosing the parent snapshot until the new one is committed, not
        // only during each put: the walk reuses the parent's file versions unread, and a
        // `forget` of that parent (a newer run of this host and path having finished
        // meanwhile) followed by a gc between the files' put and the snapshot's would free
        // versions the new snapshot then lists (committed, and unrestorable).
        let _gc = GcLock::acquire(self.path(), false, &|| {
            opts.progress.waiting("a gc is running")
        })?;
        let parent = self.parent_snapshot(&skey, &host, &path)?;
        let reader = match &parent {
            Some((_, blob)) => Some(StreamReader::open(self, blob.clone())?),
            None => None,
        };
        let parent_started = parent
            .as_ref()
            .and_then(|(_, b)| b.meta.snapshot())
            .map(|s| s.started);
        let parent_root = match (
            &reader,
            parent.as_ref().and_then(|(_, b)| b.meta.snapshot()),
        ) {
            (Some(r), Some(info)) => info.root_tree().map(|h| r.tree(&h)).transpose()?,
            _ => None,
        };
        let deleted = {
            let txn = self.lmdb.read()?;
            self.lmdb
                .versions
                .deleted_under(&txn, &format!("{prefix}/"))?
        };
        let reading = Reading::default();
        let cx = WalkContext {
            prefix,
            exclude: &exclude,
            parent: reader.as_ref().zip(parent_started),
            owners: &owners,
            noatime: &reading.noatime,
            deleted: &deleted,
            found: &|_| {},
        };
        let (mut walked, results) =
            self.walk_and_store(&root, root_meta.uid(), parent_root, &cx, opts, &reading)?;
        let mut warnings: Vec<(String, String)> = walked
            .notes
            .iter()
            .map(|(p, n)| (display(p), n.clone()))
            .collect();
        let mut summary = SnapshotSummary {
            files_unchanged: walked.unchanged,
            removed: walked.removed,
            ..Default::default()
        };
        let stored = Stored {
            results,
            reading: &reading,
            progress: opts.progress,
            root: &root,
            prefix,
        };
        self.settle_files(&mut walked, stored, &mut summary, &mut warnings)?;
        let mut stream = StreamWriter::default();
        let root_tree = assemble(&mut walked, &mut stream, &mut summary)?;
        let mut errors: Vec<(Vec<u8>, String)> = std::mem::take(&mut walked.errors);
        summary.errors = errors.len() as u64;
        let name = root
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let name = path_bytes(Path::new(&name));
        let mut root_entry = match walked.root.take() {
            Some(e) => e,
            // Not opened by the walk (unreadable): pinned as it stands, following no link.
            None => Pinned::by_path(&root)
                .and_then(|p| p.entry(&name, &root, &owners))
                .map_err(|e| Error::io(format!("reading {}", root.display()), e))?
                .filter(|e| e.kind == EntryKind::Dir)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("{} is not a directory", root.display()))
                })?,
        };
        root_entry.name = name;
        root_entry.content = Some(root_tree);
        let report_errors = errors
            .iter()
            .map(|(p, e)| (display(p), e.clone()))
            .collect();
        errors.truncate(MAX_LISTED_ERRORS);
        let info = SnapshotInfo {
            root: root_entry,
            host,
            path,
            started,
            finished: now_nanos(),
            summary,
            errors,
        };
        let parents = parent.map(|(h, _)| vec![h]).unwrap_or_default();
        let bytes = stream.finish()?;
        let item = PutItem {
            key: skey.clone(),
            size_hint: Some(bytes.len() as u64),
            reader: Box::new(std::io::Cursor::new(bytes)),
            parents: Some(parents),
            created: Some(started),
            skip_if_unchanged: false,
            meta: VersionMeta::Snapshot(Box::new(info.clone())),
        };
        let outcome = self
            .put_many(std::iter::once(item), &crate::progress::NoProgress)?
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("the snapshot was not stored".into())))?;
        Ok(BackupReport {
            snapshot: outcome.hash,
            info,
            warnings,
            errors: report_errors,
        })
    }

    /// The snapshot a new run of (`host`, `path`) follows: the newest live snapshot of
    /// the same host and path (so two machines backing up to one prefix make two heads,
    /// and each compares its files with its own last run), else the newest head (a new
    /// machine's first run joins the history).
    fn parent_snapshot(
        &self,
        skey: &str,
        host: &str,
        path: &[u8],
    ) -> Result<Option<(Hash, crate::model::Blob)>> {
        // A
        let txn = self.lmdb.read()?;
        let Some(state) = self
            .lmdb
            .versions
            .get(&txn, skey)?
            .filter(|s| s.deleted.is_none())
        else {
            return Ok(None);
        };
        let mut own: Option<(Hash, crate::model::Blob)> = None;
        for v in self.lmdb.key_to_hash.versions(&txn, skey)? {
            if self.lmdb.removed.get(&txn, &v.hash)?.is_some() {
                continue;
            }
            let Some(b) = self.lmdb.blobs.get(&txn, &v.hash)? else {
                continue;
            };
            let same = b
                .meta
                .snapshot()
                .is_some_and(|s| s.host == host && s.path == path);
            if same && own.as_ref().is_none_or(|(_, o)| b.created >= o.created) {
                own = Some((v.hash, b));
            }
        }
        match own {
            Some(o) => Ok(Some(o)),
            None => self.newest_head(&txn, &state.heads),
        }
    }

    /// Walks the tree and meanwhile, on another thread, stores each file the walk finds
    /// changed or new, through one put pipeline: the reading and sealing start with the
    /// first file found instead of after the last directory is listed (on 2 cores the walk
    /// of /usr/share alone took 0.4 s of 4.5). Returns the walk and one result per job.
    fn walk_and_store(
        &self,
        root: &Path,
        root_owner: u32,
        parent_root: Option<TreeRecord>,
        cx: &WalkContext,
        opts: &BackupOptions,
        reading: &Reading,
    ) -> Result<(Walked, Vec<Result<PutOutcome>>)> {
        // PA
        let progress = opts.progress;
        let queue = Handoff::<ToRead>::new(WALK_AHEAD);
        let queue = &queue;
        std::thread::scope(|s| {
            let put = crate::threads::spawn_scoped(s, "ouro-put", move || {
                let items = Receiver(queue)
                    .enumerate()
                    .map(|(n, r)| r.item(n, None, reading));
                self.put_many(items, progress)
            })?;
            let total = std::cell::Cell::new(0u64);
            let found = |f: FoundFile| {
                total.set(total.get() + f.entry.size);
                progress.set_total(total.get());
                // Dropped once the put has stopped on an error of the store, which its join
                // below returns.
                queue.send(ToRead::of(f));
            };
            let cx = WalkContext {
                found: &found,
                ..*cx
            };
            let walked = Walked::walk(root, root_owner, parent_root, &cx);
            queue.close();
            let results = put
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the put thread failed".into())))?;
            Ok((walked?, results))
        })
    }

    /// Puts each stored file's version into its entry, keeps the previous version of
    /// files that failed (or drops them), and counts them in the summary. A key with
    /// several heads is stored again, merging them.
    fn settle_files(
        &self,
        walked: &mut Walked,
        stored: Stored,
        summary: &mut SnapshotSummary,
        warnings: &mut Vec<(String, String)>,
    ) -> Result<()> {
        // PA
        let jobs = std::mem::take(&mut walked.jobs);
        let Stored {
            mut results,
            reading,
            progress,
            root,
            prefix,
        } = stored;
        // A key with several heads (edited elsewhere meanwhile: the mount, another node)
        // gets a version that merges them: a backup from cron must not fail on it.
        let forks: Vec<(usize, Vec<Hash>)> = results
            .iter()
            .enumerate()
            .filter_map(|(n, r)| match r {
                Err(Error::MultipleHeads { heads, .. }) => Some((n, heads.clone())),
                _ => None,
            })
            .collect();
        if !forks.is_empty() {
            let mut again = Vec::with_capacity(forks.len());
            for (n, heads) in &forks {
                let j = &jobs[*n];
                let entry = walked
                    .dirs
                    .get(j.at.0)
                    .map(|d| d.entries())
                    .transpose()?
                    .and_then(|es| es.into_iter().nth(j.at.1))
                    .ok_or_else(|| Error::Internal("a file job lost its entry".into()))?;
                let rel = walked.rel(j);
                let path = root.join(std::ffi::OsStr::from_bytes(&rel));
                let read = ToRead::again(file_key(prefix, &rel).0, path, &entry, j.id);
                again.push(read.item(*n, Some(heads.clone()), reading));
            }
            let again = self.put_many(again.into_iter(), progress)?;
            for ((n, _), r) in forks.iter().zip(again) {
                results[*n] = r;
            }
        }
        let moved = take_state(&reading.moved)?;
        let mut xattrs = take_state(&reading.xattrs)?;
        for (n, (j, r)) in jobs.iter().zip(results).enumerate() {
            let read = ReadFacts {
                moved: moved.contains(&n),
                xattrs: xattrs.remove(&n).unwrap_or_default(),
            };
            settle_file(walked, j, r, read, summary, warnings);
        }
        Ok(())
    }
}

/// Takes what the readers left in `state`, leaving it empty.
fn take_state<T: Default>(state: &std::sync::Mutex<T>) -> Result<T> {
    // A
    let mut held = state
        .lock()
        .map_err(|_| Error::Internal("the reading state was lost".into()))?;
    Ok(std::mem::take(&mut *held))
}

/// What the reading of a job's file found besides its content.
struct ReadFacts {
    /// The file changed while read.
    moved: bool,
    /// Its extended attributes.
    xattrs: Xattrs,
}

/// Puts job `j`'s outcome into its entry and the summary.
fn settle_file(
    walked: &mut Walked,
    j: &FileJob,
    r: Result<PutOutcome>,
    read: ReadFacts,
    summary: &mut SnapshotSummary,
    warnings: &mut Vec<(String, String)>,
) {
    // A
    let (d, i) = j.at;
    match r {
        Ok(o) => {
            let previous = j.previous.as_ref().filter(|p| p.kind == EntryKind::File);
            // A touched file keeps its version (`skip_if_unchanged`) but is changed all the
            // same: the snapshot records its new time.
            match previous.and_then(|p| p.content) {
                None => summary.files_new += 1,
                Some(h) if h == o.hash && !j.touched => summary.files_unchanged += 1,
                Some(_) => summary.files_changed += 1,
            }
            summary.bytes_added += o.stored_bytes;
            if read.moved {
                warnings.push((
                    display(&walked.rel(j)),
                    "changed while it was read: stored as read, read again next run".into(),
                ));
            }
            walked.dirs[d]
                .settled
                .push((i, Settled::Stored(o.hash, read.xattrs)));
        }
        // Deleted between the walk and its reading: gone, as if the walk had not
        // seen it (not an error of the backup).
        Err(Error::Input(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            warnings.push((display(&walked.rel(j)), "vanished during the walk".into()));
            walked.dirs[d].settled.push((i, Settled::Dropped));
        }
        // Another file than the walk stat'ed stands at its path: a user's rename, or a
        // directory swapped for a symlink and back (the entry would pair that file's content
        // with another's owner and mode). A warning: the next run reads the new file.
        Err(Error::Input(e)) if is_replaced(&e) => {
            let (settled, kept) = previous_or_none(j);
            let why = format!("{e} ({})", if kept { KEPT } else { "left out" });
            warnings.push((display(&walked.rel(j)), why));
            walked.dirs[d].settled.push((i, settled));
        }
        Err(e) => {
            let (settled, kept) = previous_or_none(j);
            let why = if kept {
                format!("{e} ({KEPT})")
            } else {
                e.to_string()
            };
            walked.errors.push((walked.rel(j), why));
            walked.dirs[d].settled.push((i, settled));
        }
    }
}

/// What a file that could not be stored and keeps its previous version is reported with.
const KEPT: &str = "the previous version is kept";

/// What a file that could not be stored settles as: the parent snapshot's entry when that
/// had a version of it (and true), else nothing.
fn previous_or_none(j: &FileJob) -> (Settled, bool) {
    // A
    match j.previous.as_ref() {
        Some(p) if p.kind == EntryKind::File && p.content.is_some() => {
            (Settled::Kept(p.clone()), true)
        }
        _ => (Settled::Dropped, false),
    }
}

/// The first put's results, with what its readers found, for [`Cas::settle_files`].
struct Stored<'r> {
    results: Vec<Result<PutOutcome>>,
    reading: &'r Reading,
    progress: &'r dyn Progress,
    /// The directory backed up and the key prefix: where a job's file is and its key.
    root: &'r Path,
    prefix: &'r str,
}

/// Writes every directory's record into the stream, children first, and returns the root's
/// hash.
fn assemble(
    walked: &mut Walked,
    stream: &mut StreamWriter,
    summary: &mut SnapshotSummary,
) -> Result<Hash> {
    // A
    let mut hashes: Vec<Hash> = Vec::with_capacity(walked.dirs.len());
    for d in 0..walked.dirs.len() {
        let dir = &mut walked.dirs[d];
        let subdirs = dir
            .subdirs
            .iter()
            .map(|&(entry, child)| {
                hashes.get(child).map(|h| (entry, *h)).ok_or_else(|| {
                    Error::Internal("a directory came before its subdirectory".into())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let entries = dir.finish(&subdirs)?;
        summary.dirs += 1;
        summary.entries += entries.len() as u64;
        summary.total_bytes += entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.size)
            .sum::<u64>();
        hashes.push(stream.add(&TreeRecord { entries })?);
    }
    hashes
        .last()
        .copied()
        .ok_or_else(|| Error::Internal("the walk found no root".into()))
}

/// This machine's host name.
pub fn host_name() -> String {
    // A
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
