//! The walk of `put -r`: every entry of a directory tree with its metadata, compared with
//! the parent snapshot so that unchanged files are not read again.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{Entry, EntryKind, TreeRecord};
use crate::snapshot::dir_fd::DirFd;
use crate::snapshot::fsmeta::{entry_of, NoAtime, Status};
use crate::snapshot::names::key_for;
use crate::snapshot::owners::Owners;
use crate::snapshot::stream::StreamReader;
use crate::snapshot::walk_pin::Pinning;
use crate::snapshot::xattrs;

pub use crate::snapshot::walked_dir::{Settled, WalkedDir};

/// Deepest directory nesting walked; deeper directories are reported, not followed.
pub(super) const MAX_DEPTH: usize = 2048;
/// A file's times this close to the parent snapshot's start are not trusted to mean
/// "unchanged" (coarse timestamps: git's "racily clean" problem), so it is read again.
const RACY_NS: i64 = 2_000_000_000;

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
    /// The root's own entry (its name left empty), taken through the descriptor its listing
    /// was read from; `None` when it could not be opened.
    pub root: Option<Entry>,
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
    /// Keys of files removed by `rm` since: their files are stored again even when
    /// unchanged, so that the key holds its file again, as the snapshot does.
    pub deleted: &'a HashSet<String>,
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
            within: None,
        };
        w.root = w
            .dir(at, &mut Vec::new(), parent_tree, cx, &mut ancestors)?
            .and_then(|(_, entry)| entry);
        Ok(w)
    }

    /// Walks one directory: the status of each of its entries first, taken relative to the
    /// open directory (never through a path that a directory swapped for a symlink would
    /// lead elsewhere), then its subdirectories. Returns its index and its entry as opened
    /// (status and attributes through the descriptor its names were listed from), or None
    /// when it is gone since its parent was listed (then it has no entry, as a vanished
    /// file).
    fn dir(
        &mut self,
        at: Dir,
        rel: &mut Vec<Vec<u8>>,
        parent: Option<TreeRecord>,
        cx: &WalkContext,
        ancestors: &mut Vec<(u64, u64)>,
    ) -> Result<Option<(usize, Option<Entry>)>> {
        // PA
        let (fd, status, mut names) = match open_dir(&at, cx.noatime) {
            Ok(opened) => opened,
            Err(e) => return self.unlisted(&at, e, rel, parent, cx),
        };
        let entry = self.opened_entry(rel, &status, &fd, cx)?;
        if ancestors.contains(&status.id()) || rel.len() > MAX_DEPTH {
            self.errors.push((
                join(rel),
                "file system loop or nesting too deep: not followed".into(),
            ));
            return self.empty(rel).map(|i| Some((i, Some(entry))));
        }
        names.sort_unstable();
        let mut dir = Open::default();
        let held = DirFd::keep(fd);
        let within = In {
            path: at.path,
            fd: match &held {
                Ok(kept) => kept.as_fd(),
                Err(fd) => fd.as_fd(),
            },
            kept: held.as_ref().ok(),
        };
        for name in names {
            rel.push(name);
            self.entry(within, rel, &parent, cx, &mut dir)?;
            rel.pop();
        }
        // A directory not kept open is closed before its subdirectories are walked: the
        // descriptors held stay bounded however deep the tree.
        let kept = held.ok();
        ancestors.push(status.id());
        let subdirs = self.subdirs(
            at.path,
            kept.as_ref(),
            rel,
            &parent,
            cx,
            ancestors,
            &mut dir,
        );
        ancestors.pop();
        subdirs?;
        // This directory's index is known only now, after its subdirectories.
        let index = self.dirs.len();
        for j in dir.jobs {
            self.jobs[j].at.0 = index;
        }
        if let Some(p) = &parent {
            // A subdirectory gone before its own listing counts as removed, as when the
            // listing missed it.
            let gone = |e: &Entry| {
                dir.entries
                    .binary_search_by(|x| x.name.as_slice().cmp(&e.name))
                    .map_or(true, |i| {
                        dir.settled
                            .iter()
                            .any(|(j, s)| *j == i && matches!(s, Settled::Dropped))
                    })
            };
            self.removed += p.entries.iter().filter(|e| gone(e)).count() as u64;
        }
        self.dirs.push(WalkedDir::new(
            join(rel),
            &dir.entries,
            dir.subdirs,
            dir.settled,
        )?);
        Ok(Some((index, Some(entry))))
    }

    /// Walks the subdirectories `dir` found in the directory at `path` (open as `kept`
    /// when it was kept open: each is then opened by its name in it).
    #[allow(clippy::too_many_arguments)]
    fn subdirs(
        &mut self,
        path: &Path,
        kept: Option<&Arc<DirFd>>,
        rel: &mut Vec<Vec<u8>>,
        parent: &Option<TreeRecord>,
        cx: &WalkContext,
        ancestors: &mut Vec<(u64, u64)>,
        dir: &mut Open,
    ) -> Result<()> {
        // PA
        for (index, walked) in std::mem::take(&mut dir.pending) {
            let Some(e) = dir.entries.get(index) else {
                continue;
            };
            let name = e.name.clone();
            let previous = parent
                .as_ref()
                .and_then(|p| p.get(&name))
                .filter(|p| p.kind == EntryKind::Dir);
            let sub = previous
                .and_then(|p| p.content)
                .and_then(|h| cx.parent.and_then(|(r, _)| r.tree(&h).ok()));
            let sub_path = path.join(std::ffi::OsStr::from_bytes(&name));
            let at = Dir {
                path: &sub_path,
                owner: walked.uid,
                within: kept.map(|k| k.as_fd()),
            };
            rel.push(name);
            let child = self.dir(at, rel, sub, cx, ancestors);
            rel.pop();
            match child? {
                Some((child, now)) => {
                    dir.subdirs.push((index, child));
                    match (now, dir.entries.get_mut(index)) {
                        (Some(now), Some(slot)) => *slot = now,
                        // Not even pinned (its attributes unreadable): those it had, as it
                        // keeps its previous contents.
                        (None, Some(slot)) => {
                            slot.xattrs = previous.map(|p| p.xattrs.clone()).unwrap_or_default()
                        }
                        _ => {}
                    }
                }
                None => dir.settled.push((index, Settled::Dropped)),
            }
        }
        Ok(())
    }

    /// The entry of the directory `rel` as opened (`fd`, with status `st`): what its
    /// listing was read from.
    fn opened_entry(
        &mut self,
        rel: &[Vec<u8>],
        st: &Status,
        fd: &OwnedFd,
        cx: &WalkContext,
    ) -> Result<Entry> {
        // A
        let name = rel.last().map_or(&[][..], |n| &n[..]);
        let mut entry = entry_of(name, st, cx.owners)
            .ok_or_else(|| Error::Internal("an open directory is not a directory".into()))?;
        match xattrs::of_fd(fd.as_fd()) {
            Ok(x) => entry.xattrs = x,
            Err(e) => self.errors.push((join(rel), e.to_string())),
        }
        Ok(entry)
    }

    /// Records the directory `rel` empty and returns its index.
    pub(super) fn empty(&mut self, rel: &[Vec<u8>]) -> Result<usize> {
        // A
        self.dirs
            .push(WalkedDir::new(join(rel), &[], Vec::new(), Vec::new())?);
        Ok(self.dirs.len() - 1)
    }

    /// Adds the entry `rel` (its last component the name) of directory `dir_at` to `dir`;
    /// a subdirectory is walked later ([`Walked::subdirs`]).
    fn entry(
        &mut self,
        dir_at: In,
        rel: &mut [Vec<u8>],
        parent: &Option<TreeRecord>,
        cx: &WalkContext,
        dir: &mut Open,
    ) -> Result<()> {
        // A
        let Some(name) = rel.last().cloned() else {
            return Ok(());
        };
        let rel_path = join(rel);
        let path = dir_at.path.join(std::ffi::OsStr::from_bytes(&name));
        let Some((mut st, mut entry)) = self.read(dir_at.fd, &name, &rel_path, cx) else {
            return Ok(());
        };
        let previous = parent.as_ref().and_then(|p| p.get(&name));
        let index = dir.entries.len();
        match entry.kind {
            EntryKind::Dir => dir.pending.push((index, st)),
            EntryKind::File => {
                let settled = cx.parent.map(|(_, t)| t);
                let removed_key = !cx.deleted.is_empty()
                    && cx.deleted.contains(&file_key(cx.prefix, &rel_path).0);
                let reusable = previous.filter(|_| !removed_key);
                if reusable.is_some_and(|p| unchanged(p, &entry, settled)) {
                    // Unread, its attributes are read here, from the very file pinned, and
                    // its status taken again from that file.
                    let at = (dir_at.fd, path.as_path(), &name[..], &rel_path[..]);
                    match self.pin_or_keep(at, EntryKind::File, previous, cx) {
                        Pinning::Now(now, e) => (st, entry) = (now, e),
                        Pinning::Kept(p) => {
                            self.unchanged += 1;
                            dir.entries.push(p);
                            return Ok(());
                        }
                        Pinning::Skip => return Ok(()),
                    }
                }
                match reusable.filter(|p| unchanged(p, &entry, settled)) {
                    Some(p) => {
                        entry.content = p.content;
                        self.unchanged += 1;
                    }
                    None => {
                        // Read with its content, through the descriptor it is read from.
                        entry.xattrs = Vec::new();
                        let key = self.file_key(cx.prefix, &rel_path);
                        let job = FileJob {
                            at: (usize::MAX, index),
                            name: name.into_boxed_slice(),
                            previous: previous.map(|p| Box::new(p.clone())),
                            touched: previous.is_some_and(|p| p.mtime != entry.mtime),
                            id: st.id(),
                        };
                        (cx.found)(FoundFile {
                            entry: &entry,
                            path,
                            key,
                            dir: dir_at.kept.cloned(),
                            id: job.id,
                        });
                        dir.jobs.push(self.jobs.len());
                        self.jobs.push(job);
                    }
                }
            }
            // Links, FIFOs and devices: status, target and attributes from one file.
            kind => {
                let at = (dir_at.fd, path.as_path(), &name[..], &rel_path[..]);
                match self.pin_or_keep(at, kind, previous, cx) {
                    Pinning::Now(_, e) => entry = e,
                    Pinning::Kept(p) => entry = p,
                    Pinning::Skip => return Ok(()),
                }
            }
        }
        dir.entries.push(entry);
        Ok(())
    }

    /// The status and entry of `name` in the open directory `dir` (relative path `rel`),
    /// `None` (with a note or an error) when it is excluded, gone, a socket or unreadable.
    /// The entry is completed from one file later: a directory's when it is opened, a
    /// regular file's attributes with its content (or, unchanged, when it is pinned), a
    /// link's, FIFO's or device's when it is pinned ([`Walked::pin_or_keep`]).
    fn read(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        cx: &WalkContext,
    ) -> Option<(Status, Entry)> {
        // PA
        let st = match Status::at(dir, name) {
            Ok(m) => m,
            Err(e) => return self.unread(rel, e),
        };
        if (cx.exclude)(rel, st.kind() == Some(EntryKind::Dir)) {
            return None;
        }
        match entry_of(name, &st, cx.owners) {
            Some(e) => Some((st, e)),
            None => {
                self.notes.push((rel.to_vec(), "socket, not kept".into()));
                None
            }
        }
    }

    /// Notes or records why `rel` could not be read (`e`); always `None`.
    pub(super) fn unread<T>(&mut self, rel: &[u8], e: std::io::Error) -> Option<T> {
        // A
        match e.kind() {
            // Gone since the directory was listed: not an error of the backup.
            std::io::ErrorKind::NotFound => self
                .notes
                .push((rel.to_vec(), "vanished during the walk".into())),
            // Replaced by another kind of entry meanwhile: as if the walk had not seen it.
            std::io::ErrorKind::InvalidInput => self.notes.push((rel.to_vec(), e.to_string())),
            _ => self.errors.push((rel.to_vec(), e.to_string())),
        }
        None
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

/// A directory being walked: its entries so far, its subdirectories (walked, and yet to
/// walk), its files' jobs and what became of entries after they were listed.
#[derive(Default)]
struct Open {
    entries: Vec<Entry>,
    subdirs: Vec<(usize, usize)>,
    /// Subdirectories to walk once every entry is stat'ed: entry index and status.
    pending: Vec<(usize, Status)>,
    /// Indexes in [`Walked::jobs`].
    jobs: Vec<usize>,
    settled: Vec<(usize, Settled)>,
}

/// A directory to walk: its path, its owner (who may list it without changing its access
/// time) and its parent when that is open.
pub(super) struct Dir<'p> {
    pub(super) path: &'p Path,
    pub(super) owner: u32,
    pub(super) within: Option<BorrowedFd<'p>>,
}

/// A listed directory whose entries are being added: its path, the directory itself, and
/// whether it is kept open for its files' reading.
#[derive(Clone, Copy)]
struct In<'p> {
    path: &'p Path,
    fd: BorrowedFd<'p>,
    kept: Option<&'p Arc<DirFd>>,
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

/// Opens the directory `at`, owned by `owner`: by its name in its parent when that is open,
/// else by its path, following no symlink either way. Returns it, its status and its names,
/// listed with O_NOATIME when allowed (owner or root): the walk must not change the
/// directory's access time, or the next run would record new metadata for every directory
/// of an unchanged tree.
fn open_dir(at: &Dir, noatime: &NoAtime) -> std::io::Result<(OwnedFd, Status, Vec<Vec<u8>>)> {
    // PA
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = match (at.within, at.path.file_name()) {
        (Some(parent), Some(name)) => noatime.open_at(parent, Path::new(name), flags, at.owner)?,
        _ => noatime.open(at.path, flags, at.owner)?,
    };
    let status = Status::of_fd(fd.as_fd())?;
    let mut names = Vec::new();
    // As std's read_dir was used: an entry that fails to list is left out.
    for e in rustix::fs::Dir::read_from(&fd)?.map_while(|e| e.ok()) {
        let name = e.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok((fd, status, names))
}

/// A relative path from its components.
pub(super) fn join(rel: &[Vec<u8>]) -> Vec<u8> {
    // A
    rel.join(&b'/')
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;
