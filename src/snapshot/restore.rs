//! `get -r`: writes a snapshot's tree into a directory, every entry with its metadata.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{Entry, EntryKind, ToRef};
use crate::progress::Progress;
use crate::snapshot::fsmeta::{apply_meta, nanos, OwnerPolicy};
use crate::snapshot::names::display;
use crate::snapshot::owners::Owners;
use crate::snapshot::restore_files::{is_loss, remove_any, FileJob, Writer};
use crate::snapshot::stream::StreamReader;

/// How a restore runs.
pub struct RestoreOptions<'a> {
    /// Remove what the snapshot lacks from the target, so it ends up identical.
    pub delete: bool,
    /// Only report what would change.
    pub dry_run: bool,
    /// Restores only relative paths (raw bytes; `true` for directories) for which it is
    /// true; a directory left out is left out whole.
    pub filter: &'a dyn Fn(&[u8], bool) -> bool,
    /// Owners: `None` = by name when running as root, else not restored (as tar does).
    pub owners: Option<OwnerPolicy>,
    /// Progress in bytes written.
    pub progress: &'a dyn Progress,
}

/// What a restore changes in the target, path by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Created (it was missing).
    Create,
    /// Replaced: content or type differed.
    Replace,
    /// Only metadata differed.
    Metadata,
    /// Removed (`--delete`: not in the snapshot).
    Delete,
}

impl Change {
    /// Lowercase name for listings and `--json`.
    pub fn as_str(&self) -> &'static str {
        // A
        match self {
            Change::Create => "create",
            Change::Replace => "replace",
            Change::Metadata => "metadata",
            Change::Delete => "delete",
        }
    }
}

/// What a restore did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot: Hash,
    /// Entries restored (or checked and left as they were).
    pub entries: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Paths that changed and how.
    pub changes: Vec<(String, Change)>,
    /// Paths that failed or whose metadata could not all be set, and why.
    pub errors: Vec<(String, String)>,
    /// Files not restored because the store lost their content (damage beyond repair, a
    /// version gone); each is also in `errors`. The others are restored all the same.
    pub lost: u64,
}

/// Files queued before they are written: bounds the restore's memory by the size of a
/// batch, not of the tree (each job holds its entry and two paths; a home directory of a
/// million files queued them all). Large, so that the workers rarely wait for a batch's
/// last file.
const FILES_AT_ONCE: usize = 4096;

struct Run<'a, 'c> {
    cas: &'c Cas,
    reader: StreamReader<'c>,
    opts: &'a RestoreOptions<'a>,
    owners: Owners,
    policy: OwnerPolicy,
    /// First restored path of each hard-link group.
    links: HashMap<(u64, u64), PathBuf>,
    /// Never deleted: the store itself when it lies inside the target.
    protect: Option<PathBuf>,
    report: RestoreReport,
    /// Regular files to write (by [`Writer`], in parallel), at most [`FILES_AT_ONCE`]: their
    /// directories exist, and their metadata is set last.
    files: Vec<FileJob>,
    /// Later names of hard-link groups whose first name is among `files`.
    links_later: Vec<FileJob>,
    /// Hard-link groups whose first name could not be written.
    unwritten: HashSet<(u64, u64)>,
    /// Files that were not written or linked: no change of theirs is reported.
    not_written: HashSet<String>,
    /// Directories whose metadata is set last, deepest first (writing into a directory
    /// moves its times).
    dirs_later: Vec<(PathBuf, Entry, Vec<u8>)>,
}

impl Cas {
    /// Restores the snapshot `reference` (`PREFIX[@REF]`) into `target`, exactly as it was
    /// backed up: types, modes, owners (as root), times, symlinks, hard links, extended
    /// attributes and holes of sparse files. Directory times are set after their contents.
    pub fn restore_snapshot(
        &self,
        reference: &(impl ToRef + ?Sized),
        target: &Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        // PA
        let (hash, blob) = self.resolve_snapshot(reference)?;
        let info = blob
            .meta
            .snapshot()
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("snapshot {}", hash.short())))?;
        let store =
            std::fs::canonicalize(self.path()).unwrap_or_else(|_| self.path().to_path_buf());
        let resolved = resolve_target(target)?;
        if resolved.starts_with(&store) {
            return Err(Error::InvalidArgument(format!(
                "{} is inside the store ({}): restore somewhere else",
                target.display(),
                store.display()
            )));
        }
        let policy = opts
            .owners
            .unwrap_or(if rustix::process::geteuid().is_root() {
                OwnerPolicy::ByName
            } else {
                OwnerPolicy::Skip
            });
        let mut run = Run {
            cas: self,
            reader: StreamReader::open(self, blob)?,
            opts,
            owners: Owners::system(),
            policy,
            links: HashMap::new(),
            protect: store.starts_with(&resolved).then_some(store),
            report: RestoreReport {
                snapshot: hash,
                ..Default::default()
            },
            files: Vec::new(),
            links_later: Vec::new(),
            unwritten: HashSet::new(),
            not_written: HashSet::new(),
            dirs_later: Vec::new(),
        };
        let root_tree = info
            .root_tree()
            .ok_or_else(|| Error::malformed("snapshot", "no root tree"))?;
        if !opts.dry_run {
            std::fs::create_dir_all(target)
                .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
        }
        run.dir(&root_tree, target, &mut Vec::new())?;
        if !opts.dry_run {
            run.finish()?;
            run.meta(target, &info.root, b".");
        }
        Ok(run.report)
    }
}

/// The canonical form of a target that may not exist yet (its nearest existing ancestor).
fn resolve_target(target: &Path) -> Result<PathBuf> {
    // A
    let mut missing = Vec::new();
    let mut p = target.to_path_buf();
    loop {
        match std::fs::canonicalize(&p) {
            Ok(c) => {
                return Ok(missing
                    .into_iter()
                    .rev()
                    .fold(c, |acc: PathBuf, n: std::ffi::OsString| acc.join(n)))
            }
            Err(_) => {
                let name = p.file_name().map(|n| n.to_os_string());
                match (name, p.parent()) {
                    (Some(n), Some(parent)) => {
                        missing.push(n);
                        p = if parent.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            parent.to_path_buf()
                        };
                    }
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "cannot restore into {}",
                            target.display()
                        )))
                    }
                }
            }
        }
    }
}

impl Run<'_, '_> {
    /// Restores the directory record `tree` into `dest` (which exists, or would).
    fn dir(&mut self, tree: &Hash, dest: &Path, rel: &mut Vec<Vec<u8>>) -> Result<()> {
        // PA
        let record = self.reader.tree(tree)?;
        for entry in &record.entries {
            rel.push(entry.name.clone());
            let rel_path = rel.join(&b'/');
            if (self.opts.filter)(&rel_path, entry.kind == EntryKind::Dir) {
                let path = dest.join(OsStr::from_bytes(&entry.name));
                if let Err(e) = self.entry(entry, &path, rel) {
                    // The store's errors (damage, a lock) stop the restore; the target's
                    // (permissions, full disk) are listed and the rest goes on.
                    match e {
                        Error::Io { .. } | Error::Input(_) => {
                            self.report.errors.push((display(&rel_path), e.to_string()))
                        }
                        e => return Err(e),
                    }
                }
            }
            rel.pop();
        }
        if self.opts.delete {
            self.delete_extra(dest, &record.entries, rel)?;
        }
        Ok(())
    }

    fn entry(&mut self, entry: &Entry, path: &Path, rel: &mut Vec<Vec<u8>>) -> Result<()> {
        // PA
        self.report.entries += 1;
        let rel_path = rel.join(&b'/');
        let existing = std::fs::symlink_metadata(path).ok();
        let change = compare(path, existing.as_ref(), entry);
        if let Some(c) = change {
            self.report.changes.push((display(&rel_path), c));
        }
        let replace = matches!(change, Some(Change::Replace));
        if entry.kind == EntryKind::Dir {
            if !self.opts.dry_run {
                if replace {
                    remove_any(path)?;
                }
                if replace || existing.is_none() {
                    std::fs::create_dir(path)
                        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                }
            }
            let tree = entry
                .content
                .ok_or_else(|| Error::malformed("tree record", "directory without tree"))?;
            self.dir(&tree, path, rel)?;
            if !self.opts.dry_run {
                self.dirs_later
                    .push((path.to_path_buf(), entry.clone(), rel_path));
            }
            return Ok(());
        } else if !self.opts.dry_run && (replace || existing.is_none()) {
            // A file's new content is renamed over what is there, atomically; anything else
            // (a directory in its way, a symlink, fifo, device or hard link to create) needs
            // the old entry gone first.
            let renamed_over = entry.kind == EntryKind::File
                && existing.as_ref().is_some_and(|m| !m.is_dir())
                && !entry
                    .hardlink
                    .is_some_and(|id| self.links.contains_key(&id));
            if entry.kind == EntryKind::File {
                // Written later, with its metadata, once every directory exists. What stands
                // in its way goes only once its content is written (or its link is made): a
                // file whose content the store lost leaves the directory there as it was.
                let job = FileJob {
                    entry: entry.clone(),
                    path: path.to_path_buf(),
                    rel: rel_path,
                    clear: replace && !renamed_over,
                };
                match entry.hardlink.filter(|id| self.links.contains_key(id)) {
                    Some(_) => self.links_later.push(job),
                    None => {
                        self.note_link(entry, path);
                        self.files.push(job);
                        if self.files.len() >= FILES_AT_ONCE {
                            self.write_files()?;
                        }
                    }
                }
                return Ok(());
            }
            if replace {
                remove_any(path)?;
            }
            self.create(entry, path)?;
        } else if !self.opts.dry_run && entry.kind == EntryKind::File {
            self.note_link(entry, path);
        } else if entry.kind == EntryKind::File && (replace || existing.is_none()) {
            self.check_version(entry, &rel_path)?;
        }
        if !self.opts.dry_run {
            self.meta(path, entry, &rel_path);
        }
        Ok(())
    }

    /// `--dry-run`: a file the restore would write whose version record the store lost is
    /// named and counted lost, as the restore would (its chunks are not read).
    fn check_version(&mut self, entry: &Entry, rel_path: &[u8]) -> Result<()> {
        // A
        let Some(version) = entry.content else {
            return Ok(());
        };
        match self.cas.blob(&version) {
            Ok(_) => Ok(()),
            Err(e) if is_loss(&e) => {
                self.report.lost += 1;
                self.report.errors.push((display(rel_path), e.to_string()));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the files the walk queued, links the later names of hard-link groups, then
    /// sets the directories' metadata, deepest first.
    fn finish(&mut self) -> Result<()> {
        // PA
        self.write_files()?;
        // A group whose first name could not be written takes its next name, written from
        // its own version, as its first; the rest link to that once it is written.
        let mut later = std::mem::take(&mut self.links_later);
        while !later.is_empty() {
            let mut waiting = Vec::new();
            let mut firsts = HashSet::new();
            for job in later {
                let id = job.entry.hardlink;
                match id.filter(|id| self.unwritten.contains(id) || firsts.contains(id)) {
                    Some(id) if self.unwritten.remove(&id) => {
                        firsts.insert(id);
                        self.links.insert(id, job.path.clone());
                        self.files.push(job);
                    }
                    Some(_) => waiting.push(job),
                    None => self.link(&job),
                }
            }
            if firsts.is_empty() {
                break;
            }
            self.write_files()?;
            later = waiting;
        }
        // Pushed as each directory's walk ended: children before parents already.
        for (path, entry, rel) in std::mem::take(&mut self.dirs_later) {
            self.meta(&path, &entry, &rel);
        }
        let not_written = std::mem::take(&mut self.not_written);
        self.report
            .changes
            .retain(|(p, _)| !not_written.contains(p));
        Ok(())
    }

    /// Writes the queued files (their directories exist), in parallel, and empties the queue.
    fn write_files(&mut self) -> Result<()> {
        // PA
        let writer = Writer {
            cas: self.cas,
            owners: &self.owners,
            policy: self.policy,
            progress: self.opts.progress,
        };
        let written = writer.write_all(&self.files)?;
        // A hard-link group whose first name was not written links no other name to it.
        for &i in &written.failed {
            let Some(job) = self.files.get(i) else {
                continue;
            };
            self.not_written.insert(display(&job.rel));
            if let Some(id) = job.entry.hardlink {
                if self.links.get(&id) == Some(&job.path) {
                    self.links.remove(&id);
                    self.unwritten.insert(id);
                }
            }
        }
        self.files.clear();
        self.report.bytes += written.bytes;
        self.report.errors.extend(written.errors);
        self.report.lost += written.lost;
        Ok(())
    }

    /// Creates a non-directory entry at `path` (nothing is there).
    fn create(&mut self, entry: &Entry, path: &Path) -> Result<()> {
        // PA
        let io = |what: &str| {
            let p = path.display().to_string();
            let what = what.to_string();
            move |e: std::io::Error| Error::io(format!("{what} {p}"), e)
        };
        match entry.kind {
            // Regular files are queued by `entry` and written by `finish`.
            EntryKind::File => {}
            EntryKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&entry.target), path)
                    .map_err(io("creating symlink"))?
            }
            EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
                let ft = match entry.kind {
                    EntryKind::Fifo => rustix::fs::FileType::Fifo,
                    EntryKind::CharDevice => rustix::fs::FileType::CharacterDevice,
                    _ => rustix::fs::FileType::BlockDevice,
                };
                let mode = rustix::fs::Mode::from_raw_mode(entry.mode & 0o777);
                rustix::fs::mknodat(rustix::fs::CWD, path, ft, mode, entry.rdev)
                    .map_err(|e| io("creating")(e.into()))?
            }
            EntryKind::Dir => {}
        }
        Ok(())
    }

    /// Links a later name of a hard-link group to the group's first name.
    fn link(&mut self, job: &FileJob) {
        // PA
        let first = job
            .entry
            .hardlink
            .and_then(|id| self.links.get(&id))
            .cloned();
        let linked = match first {
            Some(first) => match job.clear.then(|| remove_any(&job.path)) {
                Some(Err(e)) => Err(std::io::Error::other(e.to_string())),
                _ => std::fs::hard_link(&first, &job.path),
            },
            None => Err(std::io::Error::other("its first name was not restored")),
        };
        match linked {
            Ok(()) => self.meta(&job.path, &job.entry, &job.rel),
            Err(e) => {
                self.not_written.insert(display(&job.rel));
                self.report
                    .errors
                    .push((display(&job.rel), format!("linking: {e}")))
            }
        }
    }

    fn note_link(&mut self, entry: &Entry, path: &Path) {
        // A
        if let Some(id) = entry.hardlink {
            if !self.links.contains_key(&id) {
                // A group whose first name failed in an earlier batch has a new first name.
                self.unwritten.remove(&id);
                self.links.insert(id, path.to_path_buf());
            }
        }
    }

    /// Sets an entry's metadata, listing what could not be set.
    fn meta(&mut self, path: &Path, entry: &Entry, rel: &[u8]) {
        // PA
        for p in apply_meta(path, entry, &self.owners, self.policy) {
            self.report.errors.push((display(rel), p));
        }
    }

    /// `--delete`: removes what `dest` holds beyond `entries` (within the filter).
    fn delete_extra(
        &mut self,
        dest: &Path,
        entries: &[Entry],
        rel: &mut Vec<Vec<u8>>,
    ) -> Result<()> {
        // PA
        let Ok(listing) = std::fs::read_dir(dest) else {
            return Ok(());
        };
        let mut extra: Vec<Vec<u8>> = listing
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().as_bytes().to_vec())
            .filter(|n| {
                entries
                    .binary_search_by(|e| e.name.as_slice().cmp(n))
                    .is_err()
            })
            .collect();
        extra.sort();
        for name in extra {
            let path = dest.join(OsStr::from_bytes(&name));
            rel.push(name);
            let rel_path = rel.join(&b'/');
            rel.pop();
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if self.protect.as_deref().is_some_and(|p| p == path)
                || !(self.opts.filter)(&rel_path, is_dir)
            {
                continue;
            }
            self.report
                .changes
                .push((display(&rel_path), Change::Delete));
            if !self.opts.dry_run {
                if let Err(e) = remove_any(&path) {
                    self.report.errors.push((display(&rel_path), e.to_string()));
                }
            }
        }
        Ok(())
    }
}

/// How what is at a path differs from the entry: `None` when it looks the same (type,
/// size and mtime for content, then mode, owner and times).
fn compare(path: &Path, existing: Option<&std::fs::Metadata>, entry: &Entry) -> Option<Change> {
    // A
    let Some(m) = existing else {
        return Some(Change::Create);
    };
    let ft = m.mode() & 0o170_000;
    if ft != entry.kind.type_bits() {
        return Some(Change::Replace);
    }
    let mtime = nanos(m.mtime(), m.mtime_nsec());
    let content_differs = match entry.kind {
        EntryKind::File => m.len() != entry.size || mtime != entry.mtime,
        EntryKind::Symlink => {
            std::fs::read_link(path).map_or(true, |t| t.as_os_str().as_bytes() != entry.target)
        }
        EntryKind::CharDevice | EntryKind::BlockDevice => m.rdev() != entry.rdev,
        _ => false,
    };
    if content_differs {
        return Some(Change::Replace);
    }
    let meta_differs = (entry.kind != EntryKind::Symlink && m.mode() & 0o7777 != entry.mode)
        || m.uid() != entry.uid
        || m.gid() != entry.gid
        || (entry.kind != EntryKind::Dir && mtime != entry.mtime);
    meta_differs.then_some(Change::Metadata)
}
