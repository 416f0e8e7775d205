//! Directories the walk of `put -r` could not list: gone or replaced since their parent's
//! listing (left out, as a vanished file), or unreadable (kept as the parent snapshot had
//! them, since what they held is not known to be gone).

use std::os::unix::ffi::OsStrExt;

use crate::error::Result;
use crate::model::{Entry, EntryKind, TreeRecord};
use crate::snapshot::fsmeta::is_replaced_by_symlink;
use crate::snapshot::pinned::Pinned;
use crate::snapshot::walk::{join, Dir, Settled, WalkContext, Walked, WalkedDir, MAX_DEPTH};

impl Walked {
    /// What becomes of a directory that could not be opened (`e`): gone or replaced since
    /// its parent's listing, it is left out with a note (as a vanished file); unreadable, it
    /// keeps its previous contents (what it held is not known to be gone: recorded empty, a
    /// restore with --delete would wipe it), with its entry as it stands. The root itself is
    /// recorded empty.
    pub(super) fn unlisted(
        &mut self,
        at: &Dir,
        e: std::io::Error,
        rel: &mut Vec<Vec<u8>>,
        parent: Option<TreeRecord>,
        cx: &WalkContext,
    ) -> Result<Option<(usize, Option<Entry>)>> {
        // PA
        let replaced = e.raw_os_error() == Some(libc::ENOTDIR) || is_replaced_by_symlink(&e);
        if e.kind() == std::io::ErrorKind::NotFound || replaced {
            let why = if replaced {
                "replaced during the walk (no longer a directory): left out, read next run"
            } else {
                "vanished during the walk"
            };
            self.notes.push((join(rel), why.into()));
            if !rel.is_empty() {
                return Ok(None);
            }
            return self.empty(rel).map(|i| Some((i, None)));
        }
        let entry = self.pinned_entry(at, rel, cx);
        let index = match parent {
            Some(p) => {
                let why = format!("{e} (its previous contents are kept)");
                self.errors.push((join(rel), why));
                self.keep(p, rel, cx)?
            }
            None => {
                self.errors.push((join(rel), e.to_string()));
                self.empty(rel)?
            }
        };
        Ok(Some((index, entry)))
    }

    /// The entry of the directory `at` that could not be listed, pinned by an `O_PATH`
    /// descriptor (which needs no permission on it); `None` when even that fails.
    fn pinned_entry(&mut self, at: &Dir, rel: &[Vec<u8>], cx: &WalkContext) -> Option<Entry> {
        // PA
        let name = rel.last().map_or(&[][..], |n| &n[..]);
        let pinned = match (at.within, at.path.file_name()) {
            (Some(parent), Some(n)) => Pinned::at(parent, n.as_bytes()),
            _ => Pinned::by_path(at.path),
        };
        let entry = pinned.and_then(|p| p.entry(name, at.path, cx.owners));
        match entry {
            Ok(Some(e)) if e.kind == EntryKind::Dir => Some(e),
            _ => None,
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
}
