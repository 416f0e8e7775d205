//! `ouro diff`: what changed between two snapshots. Both trees are walked together and a
//! subtree whose hash is the same on both sides is never read: tree records are
//! content-addressed, so the cost follows the directories that changed, not the tree's size.

use std::cmp::Ordering;

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{validate_key, Blob, Entry, EntryKind, Ref, ToRef};
use crate::snapshot::stream::StreamReader;

/// How one path differs between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiffChange {
    /// Only in the newer snapshot (a new directory is listed once, not its contents).
    Added,
    /// Only in the older snapshot (a removed directory is listed once).
    Removed,
    /// Same kind, other content: a file's chunks, a symlink's target or a device number.
    Content,
    /// Same kind and content; mode, owner, group, modification time or extended
    /// attributes differ.
    Metadata,
    /// The kind changed (a file became a symlink, a directory a file, ...).
    Type,
}

impl DiffChange {
    /// Lowercase name used in `--json` output.
    pub fn as_str(&self) -> &'static str {
        // A
        match self {
            DiffChange::Added => "added",
            DiffChange::Removed => "removed",
            DiffChange::Content => "content",
            DiffChange::Metadata => "metadata",
            DiffChange::Type => "type",
        }
    }

    /// The one-character mark of listings: `+`, `-`, `M` (content), `m` (metadata), `T`.
    pub fn mark(&self) -> char {
        // A
        match self {
            DiffChange::Added => '+',
            DiffChange::Removed => '-',
            DiffChange::Content => 'M',
            DiffChange::Metadata => 'm',
            DiffChange::Type => 'T',
        }
    }
}

/// One changed path of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffEntry {
    /// Path relative to the snapshots' roots, raw bytes, components joined by `/`.
    pub path: Vec<u8>,
    /// How it changed.
    pub change: DiffChange,
    /// Its kind: in the newer snapshot, or in the older one for [`DiffChange::Removed`].
    pub kind: EntryKind,
}

/// A diff with the snapshots it compared, as `ouro diff` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// The older snapshot's version hash.
    pub from: Hash,
    /// The newer snapshot's version hash.
    pub to: Hash,
    /// Every changed path, in tree order (a directory before its contents).
    pub changes: Vec<DiffEntry>,
    /// Directory records read: how much of the trees the diff had to look at.
    pub trees_read: u64,
}

impl Cas {
    /// What changed from snapshot `from` to snapshot `to` (each `PREFIX[@REF]`, as
    /// [`Cas::resolve_snapshot`] takes; the prefixes may differ), sorted by path with a
    /// directory before its contents.
    ///
    /// ```
    /// # use ouroboros_db::{Cas, CreateOptions, Identity, NoProgress};
    /// # use ouroboros_db::snapshot::{BackupOptions, DiffChange};
    /// # fn main() -> Result<(), ouroboros_db::Error> {
    /// # let store = tempfile::tempdir().unwrap();
    /// # let src = tempfile::tempdir().unwrap();
    /// let cas = Cas::create(store.path(), &CreateOptions::default(), &Identity::generate())?;
    /// let backup = BackupOptions {
    ///     source: src.path().to_path_buf(),
    ///     prefix: "docs".into(),
    ///     exclude: &|_, _| false,
    ///     host: None,
    ///     progress: &NoProgress,
    /// };
    /// std::fs::write(src.path().join("a.txt"), b"hello").unwrap();
    /// cas.put_tree(&backup)?;
    /// std::fs::write(src.path().join("b.txt"), b"world").unwrap();
    /// cas.put_tree(&backup)?;
    /// let (older, newer) = cas.last_two_snapshots("docs")?;
    /// let changes = cas.diff_snapshots(&older, &newer)?;
    /// assert_eq!(changes.len(), 1);
    /// assert_eq!(changes[0].path, b"b.txt");
    /// assert_eq!(changes[0].change, DiffChange::Added);
    /// # Ok(()) }
    /// ```
    pub fn diff_snapshots(
        &self,
        from: &(impl ToRef + ?Sized),
        to: &(impl ToRef + ?Sized),
    ) -> Result<Vec<DiffEntry>> {
        // A
        Ok(self.snapshot_diff(from, to)?.changes)
    }

    /// [`Cas::diff_snapshots`] with the hashes of the two snapshots and the number of
    /// directory records read.
    pub fn snapshot_diff(
        &self,
        from: &(impl ToRef + ?Sized),
        to: &(impl ToRef + ?Sized),
    ) -> Result<SnapshotDiff> {
        // A
        let (from_hash, from_blob) = self.resolve_snapshot(from)?;
        let (to_hash, to_blob) = self.resolve_snapshot(to)?;
        let old_root = root_of(&from_blob, &from_hash)?;
        let new_root = root_of(&to_blob, &to_hash)?;
        let mut walk = Walk {
            cas: self,
            old: StreamReader::open(self, from_blob)?,
            new: StreamReader::open(self, to_blob)?,
            changes: Vec::new(),
            trees_read: 0,
        };
        walk.run(old_root, new_root)?;
        let mut changes = walk.changes;
        changes.sort_by(|a, b| tree_order(&a.path, &b.path));
        Ok(SnapshotDiff {
            from: from_hash,
            to: to_hash,
            changes,
            trees_read: walk.trees_read,
        })
    }

    /// The two newest snapshots of `prefix` as refs (`PREFIX@HASH` when printed), older
    /// first: what `ouro diff PREFIX` compares. Fails with [`Error::NotFound`] when it has
    /// fewer than two.
    pub fn last_two_snapshots(&self, prefix: &str) -> Result<(Ref, Ref)> {
        // A
        let prefix = prefix.trim_end_matches('/');
        validate_key(prefix)?;
        let list = self.snapshots(prefix)?;
        match list.as_slice() {
            [.., older, newer] => Ok((
                Ref::version(prefix, older.hash)?,
                Ref::version(prefix, newer.hash)?,
            )),
            [_] => Err(Error::NotFound(format!(
                "{prefix:?} has only one snapshot: nothing to compare it with"
            ))),
            [] => Err(Error::NotFound(format!(
                "no snapshot of {prefix:?} (back it up with put -r)"
            ))),
        }
    }
}

/// The root tree of a snapshot version.
fn root_of(blob: &Blob, hash: &Hash) -> Result<Hash> {
    // A
    blob.meta
        .snapshot()
        .and_then(|s| s.root_tree())
        .ok_or_else(|| Error::malformed("snapshot", format!("{} has no root tree", hash.short())))
}

/// Orders paths component by component, so a directory's contents follow it directly
/// (plain byte order would put `a.txt` between `a` and `a/b`).
fn tree_order(a: &[u8], b: &[u8]) -> Ordering {
    // A
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

/// Both trees, walked together.
struct Walk<'c> {
    cas: &'c Cas,
    old: StreamReader<'c>,
    new: StreamReader<'c>,
    changes: Vec<DiffEntry>,
    trees_read: u64,
}

impl Walk<'_> {
    /// Compares two directories and, through a work list rather than recursion (nesting
    /// depth is whatever the stored trees say), every pair of subdirectories that differ.
    fn run(&mut self, old_root: Hash, new_root: Hash) -> Result<()> {
        // A
        let mut work = vec![(Vec::new(), old_root, new_root)];
        while let Some((dir, a, b)) = work.pop() {
            if a == b {
                continue;
            }
            let old = self.old.tree(&a)?;
            let new = self.new.tree(&b)?;
            self.trees_read += 2;
            let (mut i, mut j) = (0, 0);
            while i < old.entries.len() || j < new.entries.len() {
                let (x, y) = (old.entries.get(i), new.entries.get(j));
                let order = match (x, y) {
                    (Some(x), Some(y)) => x.name.cmp(&y.name),
                    (Some(_), None) => Ordering::Less,
                    _ => Ordering::Greater,
                };
                match (order, x, y) {
                    (Ordering::Less, Some(x), _) => {
                        self.push(&dir, x, DiffChange::Removed);
                        i += 1;
                    }
                    (Ordering::Greater, _, Some(y)) => {
                        self.push(&dir, y, DiffChange::Added);
                        j += 1;
                    }
                    (_, Some(x), Some(y)) => {
                        if let Some(sub) = self.pair(&dir, x, y)? {
                            work.push(sub);
                        }
                        i += 1;
                        j += 1;
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Compares two entries of the same name; returns the subdirectories to compare next.
    fn pair(&mut self, dir: &[u8], x: &Entry, y: &Entry) -> Result<Option<(Vec<u8>, Hash, Hash)>> {
        // A
        if x.kind != y.kind {
            self.push(dir, y, DiffChange::Type);
            return Ok(None);
        }
        if x.kind == EntryKind::Dir {
            let (a, b) = match (x.content, y.content) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(Error::malformed("tree record", "a directory with no tree")),
            };
            // Adding or removing an entry moves the directory's mtime, and the entry is
            // listed already: only a directory whose contents stayed shows its new mtime.
            if meta_differs(x, y, a == b) {
                self.push(dir, y, DiffChange::Metadata);
            }
            return Ok((a != b).then(|| (join(dir, &y.name), a, b)));
        }
        if self.content_differs(x, y)? {
            self.push(dir, y, DiffChange::Content);
        } else if meta_differs(x, y, true) {
            self.push(dir, y, DiffChange::Metadata);
        }
        Ok(None)
    }

    /// True when two entries of the same kind hold different content.
    fn content_differs(&self, x: &Entry, y: &Entry) -> Result<bool> {
        // A
        match x.kind {
            EntryKind::File => {
                if x.content == y.content {
                    return Ok(false);
                }
                if x.size != y.size {
                    return Ok(true);
                }
                // A version's hash covers its metadata and key too: compare what it holds.
                match (x.content, y.content) {
                    (Some(a), Some(b)) => {
                        Ok(self.cas.blob(&a)?.chunks != self.cas.blob(&b)?.chunks)
                    }
                    _ => Ok(true),
                }
            }
            EntryKind::Symlink => Ok(x.target != y.target),
            EntryKind::CharDevice | EntryKind::BlockDevice => Ok(x.rdev != y.rdev),
            EntryKind::Dir | EntryKind::Fifo => Ok(false),
        }
    }

    fn push(&mut self, dir: &[u8], e: &Entry, change: DiffChange) {
        // A
        self.changes.push(DiffEntry {
            path: join(dir, &e.name),
            change,
            kind: e.kind,
        });
    }
}

/// True when what `chmod`, `chown`, `touch` and `setfattr` change differs; the mtime only
/// when `with_mtime`.
fn meta_differs(x: &Entry, y: &Entry, with_mtime: bool) -> bool {
    // A
    x.mode != y.mode
        || x.uid != y.uid
        || x.gid != y.gid
        || x.xattrs != y.xattrs
        || (with_mtime && x.mtime != y.mtime)
}

/// `dir/name`, or `name` at the root.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    // A
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        p.extend_from_slice(dir);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_order_puts_contents_after_their_directory() {
        let mut paths: Vec<&[u8]> = vec![b"a.txt", b"a/b", b"a", b"b", b"a/b/c", b"a0"];
        paths.sort_by(|a, b| tree_order(a, b));
        let expected: Vec<&[u8]> = vec![b"a", b"a/b", b"a/b/c", b"a.txt", b"a0", b"b"];
        assert_eq!(paths, expected);
    }

    #[test]
    fn join_paths() {
        assert_eq!(join(b"", b"x"), b"x");
        assert_eq!(join(b"d/e", b"x"), b"d/e/x");
    }

    #[test]
    fn marks_and_names() {
        let all = [
            DiffChange::Added,
            DiffChange::Removed,
            DiffChange::Content,
            DiffChange::Metadata,
            DiffChange::Type,
        ];
        let marks: String = all.iter().map(DiffChange::mark).collect();
        assert_eq!(marks, "+-MmT");
        assert_eq!(DiffChange::Metadata.as_str(), "metadata");
    }
}
