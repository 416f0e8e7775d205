//! The walk of `put -r`: every entry of a directory tree with its metadata, compared with
//! the parent snapshot so that unchanged files are not read again.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{Entry, EntryKind, TreeRecord};
use crate::snapshot::dir_fd::DirFd;
use crate::snapshot::fsmeta::{read_entry, NoAtime};
use crate::snapshot::names::key_for;
use crate::snapshot::owners::Owners;
use crate::snapshot::stream::StreamReader;

/// Deepest directory nesting walked; deeper directories are reported, not followed.
const MAX_DEPTH: usize = 2048;
/// A file's times this close to the parent snapshot's start are not trusted to mean
/// "unchanged" (coarse timestamps: git's "racily clean" problem), so it is read again.
const RACY_NS: i64 = 2_000_000_000;

/// One directory as walked: its entries (contents filled in later) and, for each
/// subdirectory entry, the index of that directory in [`Walked::dirs`].
pub struct WalkedDir {
    /// Entries sorted by name, postcard-encoded: the walk of a large tree is over long
    /// before its files are stored, and encoded entries take about a fifth of the memory
    /// of [`Entry`] values (names, owners and times as short varints, no pointers).
    packed: Box<[u8]>,
    /// Its relative path (raw bytes; empty for the root).
    rel: Box<[u8]>,
    /// `(entry index, dir index)` of subdirectories.
    pub subdirs: Vec<(usize, usize)>,
    /// What became of entries once their files were stored, by entry index.
    pub settled: Vec<(usize, Settled)>,
}

/// What became of an entry after the walk.
pub enum Settled {
    /// Its file was stored as this version.
    Stored(Hash),
    /// Replaced by the parent snapshot's entry (its file could not be stored).
    Kept(Box<Entry>),
    /// Left out (its file could not be stored and had no earlier version, or the parent
    /// snapshot's record of a directory kept unlisted could not be read).
    Dropped,
}

impl WalkedDir {
    /// The walked directory at relative path `rel`, holding `entries`.
    fn new(
        rel: Vec<u8>,
        entries: &[Entry],
        subdirs: Vec<(usize, usize)>,
        settled: Vec<(usize, Settled)>,
    ) -> Result<Self> {
        // A
        let packed = postcard::to_allocvec(entries)
            .map_err(|e| Error::Internal(format!("encoding walked entries: {e}")))?;
        Ok(WalkedDir {
            packed: packed.into_boxed_slice(),
            rel: rel.into_boxed_slice(),
            subdirs,
            settled,
        })
    }

    /// The entries as the walk found them.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        // A
        postcard::from_bytes(&self.packed)
            .map_err(|e| Error::Internal(format!("decoding walked entries: {e}")))
    }

    /// The entries with their settled contents, subdirectory `(entry index, record hash)`s
    /// from `subdirs` filled in and dropped entries left out; empties the directory.
    pub fn finish(&mut self, subdirs: &[(usize, Hash)]) -> Result<Vec<Entry>> {
        // A
        let mut entries: Vec<Option<Entry>> = self.entries()?.into_iter().map(Some).collect();
        self.packed = Box::default();
        for &(i, h) in subdirs {
            if let Some(Some(e)) = entries.get_mut(i) {
                e.content = Some(h);
            }
        }
        for (i, s) in std::mem::take(&mut self.settled) {
            let Some(slot) = entries.get_mut(i) else {
                continue;
            };
            match (s, slot.as_mut()) {
                (Settled::Stored(h), Some(e)) => e.content = Some(h),
                (Settled::Kept(p), _) => *slot = Some(*p),
                (Settled::Dropped, _) => *slot = None,
                (Settled::Stored(_), None) => {}
            }
        }
        Ok(entries.into_iter().flatten().collect())
    }
}

/// A regular file whose content must be read.
pub struct FileJob {
    /// Where its entry is: (dir index, entry index).
    pub at: (usize, usize),
    /// Its name: with its directory's, the relative path ([`Walked::rel`]), from which the
    /// key and the path on disk derive ([`file_key`]) rather than being held for every file
    /// of the tree.
    pub name: Box<[u8]>,
    /// The entry in the parent snapshot, when there was one.
    pub previous: Option<Box<Entry>>,
    /// Its mtime differs from the parent snapshot's entry: with the same content it keeps its
    /// key version, yet counts as changed.
    pub touched: bool,
    /// Its device and inode number as the walk stat'ed it: any later read of it (also one
    /// made again after the walk) reads only that file, whose metadata its entry records.
    pub id: (u64, u64),
}

/// A file to read, handed to [`WalkContext::found`] when the walk finds it.
pub struct FoundFile<'e> {
    /// Its entry (content not filled in).
    pub entry: &'e Entry,
    /// Path on disk.
    pub path: PathBuf,
    /// Key of its versions.
    pub key: String,
    /// Its directory, when the walk kept it open ([`DirFd::keep`]): the reading opens the
    /// file by its name in it.
    pub dir: Option<Arc<DirFd>>,
    /// Its device and inode number as the walk stat'ed it: the reading reads only that file,
    /// whose metadata the entry records.
    pub id: (u64, u64),
}

/// Everything the walk found.
#[derive(Default)]
pub struct Walked {
    /// Directories in post-order: children before parents, the root last.
    pub dirs: Vec<WalkedDir>,
    /// Files to read.
    pub jobs: Vec<FileJob>,
    /// Files reused from the parent snapshot unread.
    pub unchanged: u64,
    /// Entries of the parent snapshot that are gone (counted where they disappear).
    pub removed: u64,
    /// Notes about what was skipped (sockets), by relative path.
    pub notes: Vec<(Vec<u8>, String)>,
    /// What failed, by relative path.
    pub errors: Vec<(Vec<u8>, String)>,
}

/// What the walk needs besides the tree.
pub struct WalkContext<'a, 'c> {
    /// Key prefix of the files.
    pub prefix: &'a str,
    /// Leaves out paths (relative, raw bytes; `true` for directories) that match.
    pub exclude: &'a dyn Fn(&[u8], bool) -> bool,
    /// The parent snapshot, to skip unchanged files.
    pub parent: Option<(&'a StreamReader<'c>, i64)>,
    /// User and group names.
    pub owners: &'a Owners,
    /// Opens directories without changing their access time where allowed.
    pub noatime: &'a NoAtime,
    /// Called with each file to read as soon as the walk finds it, in the order of
    /// [`Walked::jobs`]: the reading can start while the walk goes on. (The job's directory
    /// index, `at.0`, is known only once that directory is walked.)
    pub found: &'a dyn Fn(FoundFile),
}

impl Walked {
    /// Walks `root` (owned by user `root_owner`), whose own tree in the parent snapshot is
    /// `parent_tree`. Fails only on an internal error; what cannot be read is recorded in
    /// [`Walked::errors`].
    pub fn walk(
        root: &Path,
        root_owner: u32,
        parent_tree: Option<TreeRecord>,
        cx: &WalkContext,
    ) -> Result<Walked> {
        // A
        let mut w = Walked::default();
        let mut ancestors = Vec::new();
        let at = Dir {
            path: root,
            owner: root_owner,
        };
        w.dir(at, &mut Vec::new(), parent_tree, cx, &mut ancestors)?;
        Ok(w)
    }

    /// Walks one directory (its subdirectories first) and returns its index, or None when
    /// it vanished since its parent was listed (then it has no entry, as a vanished file).
    fn dir(
        &mut self,
        at: Dir,
        rel: &mut Vec<Vec<u8>>,
        parent: Option<TreeRecord>,
        cx: &WalkContext,
        ancestors: &mut Vec<(u64, u64)>,
    ) -> Result<Option<usize>> {
        // A
        let (open, mut names) = match list_dir(at.path, at.owner, cx.noatime) {
            Ok(listed) => listed,
            // Removed (or moved away) since its parent was listed: recorded empty, a
            // restore with --delete would empty a directory that still exists elsewhere.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !rel.is_empty() => {
                self.notes
                    .push((join(rel), "vanished during the walk".into()));
                return Ok(None);
            }
            // The root itself: an empty snapshot, with the note.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.notes
                    .push((join(rel), "vanished during the walk".into()));
                (None, Vec::new())
            }
            // Unreadable (permissions, I/O): what it held is not known to be gone, so it
            // keeps its previous contents, as an unreadable file keeps its previous version
            // (recorded empty, a restore with --delete would wipe it).
            Err(e) => match parent {
                Some(p) => {
                    let why = format!("{e} (its previous contents are kept)");
                    self.errors.push((join(rel), why));
                    return self.keep(p, rel, cx).map(Some);
                }
                None => {
                    self.errors.push((join(rel), e.to_string()));
                    (None, Vec::new())
                }
            },
        };
        names.sort_unstable();
        let mut dir = Open {
            entries: Vec::with_capacity(names.len()),
            subdirs: Vec::new(),
            jobs: Vec::new(),
        };
        let within = In {
            path: at.path,
            open: open.as_ref(),
        };
        for name in names {
            rel.push(name);
            self.entry(within, rel, &parent, cx, ancestors, &mut dir)?;
            rel.pop();
        }
        // This directory's index is known only now, after its subdirectories.
        let index = self.dirs.len();
        for j in dir.jobs {
            self.jobs[j].at.0 = index;
        }
        if let Some(p) = &parent {
            self.removed += p
                .entries
                .iter()
                .filter(|e| !has(&dir.entries, &e.name))
                .count() as u64;
        }
        self.dirs.push(WalkedDir::new(
            join(rel),
            &dir.entries,
            dir.subdirs,
            Vec::new(),
        )?);
        Ok(Some(index))
    }

    /// Adds the entry `rel` (its last component the name) of directory `dir_at` to `dir`,
    /// walking it first when it is a directory.
    fn entry(
        &mut self,
        dir_at: In,
        rel: &mut Vec<Vec<u8>>,
        parent: &Option<TreeRecord>,
        cx: &WalkContext,
        ancestors: &mut Vec<(u64, u64)>,
        dir: &mut Open,
    ) -> Result<()> {
        // A
        let Some(name) = rel.last().cloned() else {
            return Ok(());
        };
        let rel_path = join(rel);
        let path = dir_at.path.join(std::ffi::OsStr::from_bytes(&name));
        let Some((meta, mut entry)) = self.read(&path, &name, &rel_path, cx) else {
            return Ok(());
        };
        let previous = parent.as_ref().and_then(|p| p.get(&name));
        let index = dir.entries.len();
        match entry.kind {
            EntryKind::Dir => {
                let id = (meta.dev(), meta.ino());
                if ancestors.contains(&id) || rel.len() > MAX_DEPTH {
                    self.errors.push((
                        rel_path,
                        "file system loop or nesting too deep: not followed".into(),
                    ));
                    return Ok(());
                }
                let sub = previous
                    .filter(|p| p.kind == EntryKind::Dir)
                    .and_then(|p| p.content)
                    .and_then(|h| cx.parent.and_then(|(r, _)| r.tree(&h).ok()));
                ancestors.push(id);
                let at = Dir {
                    path: &path,
                    owner: meta.uid(),
                };
                let child = self.dir(at, rel, sub, cx, ancestors);
                ancestors.pop();
                match child? {
                    Some(child) => dir.subdirs.push((index, child)),
                    None => return Ok(()),
                }
            }
            EntryKind::File => {
                match previous.filter(|p| unchanged(p, &entry, cx.parent.map(|(_, t)| t))) {
                    Some(p) => {
                        entry.content = p.content;
                        self.unchanged += 1;
                    }
                    None => {
                        let key = self.file_key(cx.prefix, &rel_path);
                        let job = FileJob {
                            at: (usize::MAX, index),
                            name: name.into_boxed_slice(),
                            previous: previous.map(|p| Box::new(p.clone())),
                            touched: previous.is_some_and(|p| p.mtime != entry.mtime),
                            id: (meta.dev(), meta.ino()),
                        };
                        (cx.found)(FoundFile {
                            entry: &entry,
                            path,
                            key,
                            dir: dir_at.open.cloned(),
                            id: job.id,
                        });
                        dir.jobs.push(self.jobs.len());
                        self.jobs.push(job);
                    }
                }
            }
            _ => {}
        }
        dir.entries.push(entry);
        Ok(())
    }

    /// The metadata and entry of `path` (relative path `rel`), `None` (with a note or an
    /// error) when it is excluded, gone, a socket or unreadable.
    fn read(
        &mut self,
        path: &Path,
        name: &[u8],
        rel: &[u8],
        cx: &WalkContext,
    ) -> Option<(std::fs::Metadata, Entry)> {
        // A
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            // Gone since the directory was listed: not an error of the backup.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.notes
                    .push((rel.to_vec(), "vanished during the walk".into()));
                return None;
            }
            Err(e) => {
                self.errors.push((rel.to_vec(), e.to_string()));
                return None;
            }
        };
        if (cx.exclude)(rel, meta.is_dir()) {
            return None;
        }
        match read_entry(path, name, &meta, cx.owners) {
            Ok(Some(e)) => Some((meta, e)),
            Ok(None) => {
                self.notes.push((rel.to_vec(), "socket, not kept".into()));
                None
            }
            // Gone between its stat and reading its link target or attributes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.notes
                    .push((rel.to_vec(), "vanished during the walk".into()));
                None
            }
            Err(e) => {
                self.errors.push((rel.to_vec(), e.to_string()));
                None
            }
        }
    }

    /// Records a directory that could not be listed as the parent snapshot had it: its
    /// record and every record below it, whole (their files keep their versions), and
    /// returns its index. A record that cannot be read drops its entry, with an error.
    fn keep(
        &mut self,
        tree: TreeRecord,
        rel: &mut Vec<Vec<u8>>,
        cx: &WalkContext,
    ) -> Result<usize> {
        // A
        let mut subdirs = Vec::new();
        let mut settled = Vec::new();
        for (i, e) in tree.entries.iter().enumerate() {
            let Some(h) = e.content.filter(|_| e.kind == EntryKind::Dir) else {
                continue;
            };
            rel.push(e.name.clone());
            let sub = match cx.parent.map(|(r, _)| r.tree(&h)) {
                Some(Ok(t)) if rel.len() <= MAX_DEPTH => Ok(t),
                Some(Ok(_)) => Err("nesting too deep".to_string()),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("no parent snapshot".to_string()),
            };
            match sub {
                Ok(t) => {
                    let child = self.keep(t, rel, cx)?;
                    subdirs.push((i, child));
                }
                Err(why) => {
                    self.errors
                        .push((join(rel), format!("its previous contents: {why}")));
                    settled.push((i, Settled::Dropped));
                }
            }
            rel.pop();
        }
        self.dirs
            .push(WalkedDir::new(join(rel), &tree.entries, subdirs, settled)?);
        Ok(self.dirs.len() - 1)
    }

    /// The relative path of job `j`'s file.
    pub fn rel(&self, j: &FileJob) -> Vec<u8> {
        // A
        let dir = self.dirs.get(j.at.0).map_or(&[][..], |d| &d.rel[..]);
        let mut rel = Vec::with_capacity(dir.len() + 1 + j.name.len());
        if !dir.is_empty() {
            rel.extend_from_slice(dir);
            rel.push(b'/');
        }
        rel.extend_from_slice(&j.name);
        rel
    }

    /// The key of a file's versions ([`file_key`]), with a warning naming the key when the
    /// path cannot be one (too long, or a name with characters keys refuse), since `ouro ls`
    /// and `ouro get KEY` see it only under that name.
    fn file_key(&mut self, prefix: &str, rel_path: &[u8]) -> String {
        // A
        let (key, refused) = file_key(prefix, rel_path);
        if let Some(refused) = refused {
            let why = match refused {
                Error::InvalidKey { key: plain, .. }
                    if plain.len() > crate::model::key::MAX_KEY_BYTES =>
                {
                    "path too long for a key".to_string()
                }
                Error::InvalidKey { rule, .. } => format!("name not usable in a key ({rule})"),
                _ => "name not usable in a key".to_string(),
            };
            self.notes.push((
                rel_path.to_vec(),
                format!("{why}: its versions are stored under {key}"),
            ));
        }
        key
    }
}

/// The key of the versions of the file at relative path `rel` (raw bytes, components
/// joined by `/`): `PREFIX/path`, or, for a path too long to be a key,
/// `PREFIX/.ouro-long/<BLAKE3 of the raw path>` (the tree record keeps the real name, so
/// the restore is exact; only the key view shows the hashed name). With the hashed key,
/// why the plain one was refused.
pub fn file_key(prefix: &str, rel: &[u8]) -> (String, Option<Error>) {
    // A
    // Names never hold `/`, so splitting gives back the components.
    let components: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
    let key = key_for(prefix, &components);
    match crate::model::validate_key(&key) {
        Ok(()) => (key, None),
        Err(refused) => {
            let hashed = format!(
                "{prefix}/.ouro-long/{}",
                crate::hash::Hash::of(rel).to_hex()
            );
            (hashed, Some(refused))
        }
    }
}

/// A directory being walked: its entries so far, its subdirectories and its files' jobs.
struct Open {
    entries: Vec<Entry>,
    subdirs: Vec<(usize, usize)>,
    /// Indexes in [`Walked::jobs`].
    jobs: Vec<usize>,
}

/// A directory to walk: its path and its owner (who may list it without changing its
/// access time).
struct Dir<'p> {
    path: &'p Path,
    owner: u32,
}

/// A directory's names, and the directory itself when it is kept open for its files.
type Listed = (Option<Arc<DirFd>>, Vec<Vec<u8>>);

/// A listed directory whose entries are being added: its path, and the directory itself
/// when it was kept open for its files' reading.
#[derive(Clone, Copy)]
struct In<'p> {
    path: &'p Path,
    open: Option<&'p Arc<DirFd>>,
}

/// True when the parent snapshot's entry can stand for the file unread: same kind, size,
/// times, mode and owner, and times old enough to be trusted.
fn unchanged(prev: &Entry, now: &Entry, parent_started: Option<i64>) -> bool {
    // A
    let settled = parent_started.unwrap_or(i64::MIN).saturating_sub(RACY_NS);
    prev.kind == EntryKind::File
        && prev.content.is_some()
        && prev.size == now.size
        && prev.mtime == now.mtime
        && prev.ctime == now.ctime
        && prev.mode == now.mode
        && prev.uid == now.uid
        && prev.gid == now.gid
        && now.mtime < settled
        && now.ctime < settled
}

fn has(entries: &[Entry], name: &[u8]) -> bool {
    // A
    entries
        .binary_search_by(|e| e.name.as_slice().cmp(name))
        .is_ok()
}

/// The names in a directory owned by `owner`, listed with O_NOATIME when allowed (owner or
/// root): the walk must not change the directory's access time, or the next run would
/// record new metadata for every directory of an unchanged tree. The directory stays open
/// for its files' reading when [`DirFd::keep`] allows.
fn list_dir(path: &Path, owner: u32, noatime: &NoAtime) -> std::io::Result<Listed> {
    // A
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = noatime.open(path, flags, owner)?;
    let mut names = Vec::new();
    // As std's read_dir was used: an entry that fails to list is left out.
    for e in rustix::fs::Dir::read_from(&fd)?.map_while(|e| e.ok()) {
        let name = e.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok((DirFd::keep(fd), names))
}

/// A relative path from its components.
fn join(rel: &[Vec<u8>]) -> Vec<u8> {
    // A
    rel.join(&b'/')
}
