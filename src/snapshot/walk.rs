//! The walk of `put -r`: every entry of a directory tree with its metadata, compared with
//! the parent snapshot so that unchanged files are not read again.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::model::{Entry, EntryKind, TreeRecord};
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
    /// Entries sorted by name.
    pub entries: Vec<Entry>,
    /// `(entry index, dir index)` of subdirectories.
    pub subdirs: Vec<(usize, usize)>,
    /// Entries to leave out (their file could not be stored and had no earlier version).
    pub dropped: HashSet<usize>,
}

/// A regular file whose content must be read.
pub struct FileJob {
    /// Where its entry is: (dir index, entry index).
    pub at: (usize, usize),
    /// Path on disk.
    pub path: PathBuf,
    /// Relative path (raw bytes), for messages.
    pub rel: Vec<u8>,
    /// Key of its versions.
    pub key: String,
    /// The entry in the parent snapshot, when there was one.
    pub previous: Option<Entry>,
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
    /// Called with each file to read and its entry as soon as the walk finds it, in the
    /// order of [`Walked::jobs`]: the reading can start while the walk goes on. (The job's
    /// directory index, `at.0`, is known only once that directory is walked.)
    pub found: &'a dyn Fn(&FileJob, &Entry),
}

impl Walked {
    /// Walks `root` (owned by user `root_owner`), whose own tree in the parent snapshot is
    /// `parent_tree`.
    pub fn walk(
        root: &Path,
        root_owner: u32,
        parent_tree: Option<TreeRecord>,
        cx: &WalkContext,
    ) -> Walked {
        // A
        let mut w = Walked::default();
        let mut ancestors = Vec::new();
        let at = Dir {
            path: root,
            owner: root_owner,
        };
        w.dir(at, &mut Vec::new(), parent_tree, cx, &mut ancestors);
        w
    }

    /// Walks one directory (its subdirectories first) and returns its index.
    fn dir(
        &mut self,
        at: Dir,
        rel: &mut Vec<Vec<u8>>,
        parent: Option<TreeRecord>,
        cx: &WalkContext,
        ancestors: &mut Vec<(u64, u64)>,
    ) -> usize {
        // A
        let mut names: Vec<Vec<u8>> = match list_dir(at.path, at.owner, cx.noatime) {
            Ok(names) => names,
            // Removed since its parent was listed: its entry stays, empty.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.notes
                    .push((join(rel), "vanished during the walk".into()));
                Vec::new()
            }
            // Unreadable (permissions, I/O): what it held is not known to be gone, so it
            // keeps its previous contents, as an unreadable file keeps its previous version
            // (recorded empty, a restore with --delete would wipe it).
            Err(e) => match parent {
                Some(p) => {
                    let why = format!("{e} (its previous contents are kept)");
                    self.errors.push((join(rel), why));
                    return self.keep(p, rel, cx);
                }
                None => {
                    self.errors.push((join(rel), e.to_string()));
                    Vec::new()
                }
            },
        };
        names.sort_unstable();
        let mut dir = WalkedDir {
            entries: Vec::with_capacity(names.len()),
            subdirs: Vec::new(),
            dropped: HashSet::new(),
        };
        let mut jobs = Vec::new();
        for name in names {
            rel.push(name);
            self.entry(at.path, rel, &parent, cx, ancestors, &mut dir, &mut jobs);
            rel.pop();
        }
        // This directory's index is known only now, after its subdirectories.
        let index = self.dirs.len();
        for j in jobs {
            self.jobs[j].at.0 = index;
        }
        if let Some(p) = &parent {
            self.removed += p
                .entries
                .iter()
                .filter(|e| !has(&dir.entries, &e.name))
                .count() as u64;
        }
        self.dirs.push(dir);
        index
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        dir_path: &Path,
        rel: &mut Vec<Vec<u8>>,
        parent: &Option<TreeRecord>,
        cx: &WalkContext,
        ancestors: &mut Vec<(u64, u64)>,
        dir: &mut WalkedDir,
        jobs: &mut Vec<usize>,
    ) {
        // A
        let Some(name) = rel.last().cloned() else {
            return;
        };
        let rel_path = join(rel);
        let path = dir_path.join(std::ffi::OsStr::from_bytes(&name));
        let Some((meta, mut entry)) = self.read(&path, &name, &rel_path, cx) else {
            return;
        };
        let previous = parent.as_ref().and_then(|p| p.get(&name)).cloned();
        let index = dir.entries.len();
        match entry.kind {
            EntryKind::Dir => {
                let id = (meta.dev(), meta.ino());
                if ancestors.contains(&id) || rel.len() > MAX_DEPTH {
                    self.errors.push((
                        rel_path,
                        "file system loop or nesting too deep: not followed".into(),
                    ));
                    return;
                }
                let sub = previous
                    .as_ref()
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
                dir.subdirs.push((index, child));
            }
            EntryKind::File => {
                match previous
                    .as_ref()
                    .filter(|p| unchanged(p, &entry, cx.parent.map(|(_, t)| t)))
                {
                    Some(p) => {
                        entry.content = p.content;
                        self.unchanged += 1;
                    }
                    None => {
                        let key = self.file_key(cx.prefix, rel, &rel_path);
                        let job = FileJob {
                            at: (usize::MAX, index),
                            path,
                            rel: rel_path,
                            key,
                            previous,
                        };
                        (cx.found)(&job, &entry);
                        jobs.push(self.jobs.len());
                        self.jobs.push(job);
                    }
                }
            }
            _ => {}
        }
        dir.entries.push(entry);
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
    fn keep(&mut self, tree: TreeRecord, rel: &mut Vec<Vec<u8>>, cx: &WalkContext) -> usize {
        // A
        let mut dir = WalkedDir {
            entries: tree.entries,
            subdirs: Vec::new(),
            dropped: HashSet::new(),
        };
        for i in 0..dir.entries.len() {
            let e = &dir.entries[i];
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
                    let child = self.keep(t, rel, cx);
                    dir.subdirs.push((i, child));
                }
                Err(why) => {
                    self.errors
                        .push((join(rel), format!("its previous contents: {why}")));
                    dir.dropped.insert(i);
                }
            }
            rel.pop();
        }
        self.dirs.push(dir);
        self.dirs.len() - 1
    }

    /// The key of a file's versions: `PREFIX/path`, or, for a path too long to be a key,
    /// `PREFIX/.ouro-long/<BLAKE3 of the raw path>` (the tree record keeps the real name,
    /// so the restore is exact; only the key view shows the hashed name), with a warning
    /// naming the key, since `ouro ls` and `ouro get KEY` see it only under that name.
    fn file_key(&mut self, prefix: &str, rel: &[Vec<u8>], rel_path: &[u8]) -> String {
        // A
        let key = key_for(prefix, &rel.iter().map(Vec::as_slice).collect::<Vec<_>>());
        if crate::model::validate_key(&key).is_ok() {
            return key;
        }
        let key = format!(
            "{prefix}/.ouro-long/{}",
            crate::hash::Hash::of(rel_path).to_hex()
        );
        self.notes.push((
            rel_path.to_vec(),
            format!("path too long for a key: its versions are stored under {key}"),
        ));
        key
    }
}

/// A directory to walk: its path and its owner (who may list it without changing its
/// access time).
struct Dir<'p> {
    path: &'p Path,
    owner: u32,
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
/// record new metadata for every directory of an unchanged tree.
fn list_dir(path: &Path, owner: u32, noatime: &NoAtime) -> std::io::Result<Vec<Vec<u8>>> {
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
    Ok(names)
}

/// A relative path from its components.
fn join(rel: &[Vec<u8>]) -> Vec<u8> {
    // A
    rel.join(&b'/')
}
