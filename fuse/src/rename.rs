//! Names that change: rename (a file, a whole directory, RENAME_EXCHANGE of two files) and
//! unlink, each one transaction in the store, and the inodes the kernel still holds for
//! names that went away or moved.
//!
//! Inode numbers come from paths (node.rs). After a rename the kernel keeps the moved
//! inode's number for the new name, so the number is remapped to the new path here, and
//! every path involved gets a new number for its next file (`renamed`), which therefore
//! never meets an inode the kernel still holds for something else.

use std::ffi::OsStr;

use fuser::{Errno, FileAttr, FileHandle, INodeNo};
use ouroboros_db::Error;

use crate::fs::{errno, Handle, Orphan, OuroFs};
use crate::node::Node;

impl OuroFs {
    /// rename(2) and renameat2: RENAME_NOREPLACE is honoured, RENAME_EXCHANGE swaps two
    /// files (EINVAL for directories), RENAME_WHITEOUT is EINVAL.
    pub(crate) fn rename_node(
        &self,
        (parent, name): (INodeNo, &OsStr),
        (newparent, newname): (INodeNo, &OsStr),
        flags: u32,
    ) -> Result<(), Errno> {
        // PA
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
        if flags & !known != 0 {
            return Err(Errno::EINVAL);
        }
        let from = self.writable_key(parent, name)?;
        let to = self.writable_key(newparent, newname)?;
        let node = self.child(&self.node(parent)?, name.to_str().ok_or(Errno::EINVAL)?)?;
        let target = match self.child(
            &self.node(newparent)?,
            newname.to_str().ok_or(Errno::EINVAL)?,
        ) {
            Ok(n) => Some(n),
            Err(e) if e == Errno::ENOENT => None,
            Err(e) => return Err(e),
        };
        if flags & libc::RENAME_EXCHANGE != 0 {
            return match (&node, &target) {
                (Node::File(_), Some(Node::File(_))) => self.exchange(&from, &to),
                (_, None) => Err(Errno::ENOENT),
                _ => Err(Errno::EINVAL),
            };
        }
        if flags & libc::RENAME_NOREPLACE != 0 && target.is_some() {
            return Err(Errno::EEXIST);
        }
        if from == to {
            return Ok(());
        }
        match (&node, &target) {
            (Node::File(_), Some(Node::Dir(_))) => Err(Errno::EISDIR),
            (Node::File(_), _) => self.rename_file(&from, &to, target.is_some()),
            (Node::Dir(_), Some(Node::File(_))) => Err(Errno::ENOTDIR),
            (Node::Dir(_), _) => self.rename_dir(&from, &to),
            _ => Err(Errno::EROFS),
        }
    }

    /// A file: one transaction stores it under `to` (same chunks) and removes `from`; an
    /// open handle is stored first and follows it.
    fn rename_file(&self, from: &str, to: &str, replacing: bool) -> Result<(), Errno> {
        // PA
        self.settle_pending(from)?;
        // The file replaced is unlinked: descriptors open on it keep what it was.
        let replaced = match replacing {
            true => self.orphan_of(to, self.pending_handle(to))?,
            false => None,
        };
        let head = match self.cas.rename_key(from, to) {
            Ok(h) => h,
            // A chunk gc condemned on a cluster node: copy the content (put pipeline).
            Err(Error::Retry(_)) => {
                let (hash, _, _) = self.head(from)?.ok_or(Errno::ENOENT)?;
                let moved = self.cas.copy_version(&hash, to).map_err(|e| errno(&e))?;
                self.cas.remove(from).map_err(|e| errno(&e))?;
                moved
            }
            Err(e) => return Err(errno(&e)),
        };
        // Discards the handle of the file replaced, if open.
        self.retarget_pending(from, to, head)?;
        if let Some(o) = replaced {
            self.keep_orphan(o);
        }
        self.renamed(from, to);
        Ok(())
    }

    /// A directory: every key below it moves in one transaction (same chunks), open files
    /// below it follow. Onto a directory holding anything but its marker: ENOTEMPTY. When
    /// the store cannot move it whole (a key with several heads, a chunk gc condemned on
    /// a cluster node): EXDEV, and `mv` copies file by file.
    fn rename_dir(&self, from: &str, to: &str) -> Result<(), Errno> {
        // PA
        if self.cas.is_dir(to).map_err(|e| errno(&e))? && !self.dir_is_empty(to)? {
            return Err(Errno::ENOTEMPTY);
        }
        // An implicit directory (keys, no marker) moving onto a marked one gets a marker of
        // its own, so the target's old metadata does not stay behind.
        if self.dir_marker(from)?.is_none() && self.dir_marker(to)?.is_some() {
            self.put_marker(from, self.default_dir_meta())?;
        }
        let below = format!("{from}/");
        let open: Vec<String> = {
            let p = self.pending.lock().map_err(|_| Errno::EIO)?;
            p.keys()
                .filter(|k| k.starts_with(&below))
                .cloned()
                .collect()
        };
        for k in &open {
            self.settle_pending(k)?;
        }
        let moved = match self.cas.rename_prefix(from, to) {
            Ok(m) => m,
            Err(Error::Retry(_) | Error::MultipleHeads { .. }) => return Err(Errno::EXDEV),
            Err(e) => return Err(errno(&e)),
        };
        for (old, new, head) in &moved {
            self.retarget_pending(old, new, *head)?;
        }
        self.renamed_dir(from, to);
        Ok(())
    }

    /// RENAME_EXCHANGE of two files: each key gets a version with the other's content, in
    /// one transaction; open handles and inodes swap names with them.
    fn exchange(&self, a: &str, b: &str) -> Result<(), Errno> {
        // PA
        if a == b {
            return Ok(());
        }
        self.settle_pending(a)?;
        self.settle_pending(b)?;
        let (new_a, new_b) = self.cas.exchange_keys(a, b).map_err(|e| errno(&e))?;
        let (ha, hb) = {
            let mut p = self.pending.lock().map_err(|_| Errno::EIO)?;
            (p.remove(a), p.remove(b))
        };
        for (o, key, head) in [(ha, b, new_b), (hb, a, new_a)] {
            if let Some(o) = o {
                if let Ok(Handle::Write(w)) = o.handle.lock().as_deref_mut() {
                    w.retarget(key, head);
                }
                if let Ok(mut p) = self.pending.lock() {
                    p.insert(key.to_string(), o);
                }
            }
        }
        let (ia, ib) = (self.kernel_inos(a), self.kernel_inos(b));
        self.point(&ia, b);
        self.point(&ib, a);
        self.bump(a, Some(ib));
        self.bump(b, Some(ia));
        Ok(())
    }

    /// unlink: the key is removed; an open handle stores nothing more, and descriptors
    /// still open keep their attributes (with no links).
    pub(crate) fn unlink_key(&self, parent: INodeNo, name: &OsStr) -> Result<(), Errno> {
        // PA
        let key = self.writable_key(parent, name)?;
        match self.child(&self.node(parent)?, name.to_str().ok_or(Errno::EINVAL)?)? {
            Node::File(_) => {}
            _ => return Err(Errno::EISDIR),
        }
        // Discarded first: a release storing it meanwhile finishes before this returns,
        // so the store is looked at afterwards.
        let open = self.discard_pending(&key);
        if let Some(o) = self.orphan_of(&key, open.clone())? {
            // Its inode lives on in the kernel: kept for fstat, and not given out again.
            self.keep_orphan(o);
            self.bump(&key, None);
        }
        if !self.cas.is_key(&key).map_err(|e| errno(&e))? {
            return match open {
                Some(_) => Ok(()),
                None => Err(Errno::ENOENT),
            };
        }
        self.cas.remove(&key).map(|_| ()).map_err(|e| errno(&e))
    }

    /// True when a descriptor reads key `key` (a handle busy elsewhere, a write handle
    /// storing, is passed over: those are in `pending`).
    fn open_for_reading(&self, key: &str) -> bool {
        // A
        let Ok(handles) = self.handles.lock() else {
            return false;
        };
        handles
            .values()
            .any(|h| matches!(h.try_lock().as_deref(), Ok(Handle::Read(b)) if b.blob.key == key))
    }

    /// When a descriptor is open on `key`: the kernel's inodes of it and what they are to
    /// show once the name is gone (the write handle `open`, else the attributes they have
    /// now).
    fn orphan_of(
        &self,
        key: &str,
        open: Option<std::sync::Arc<std::sync::Mutex<Handle>>>,
    ) -> Result<Option<(Vec<u64>, Orphan)>, Errno> {
        // A
        if open.is_none() && !self.open_for_reading(key) {
            return Ok(None);
        }
        let known: Vec<u64> = {
            let nodes = self.nodes.lock().map_err(|_| Errno::EIO)?;
            let file = Node::File(key.to_string());
            self.kernel_inos(key)
                .into_iter()
                .filter(|i| nodes.get(i) == Some(&file))
                .collect()
        };
        let orphan = match open {
            Some(h) => Orphan::Write(std::sync::Arc::downgrade(&h)),
            None => match self.attr(&Node::File(key.to_string())) {
                Ok(a) => Orphan::Fixed(a),
                Err(_) => return Ok(None),
            },
        };
        Ok((!known.is_empty()).then_some((known, orphan)))
    }

    /// Inodes `inos` show `orphan` from now on (until the kernel forgets them).
    fn keep_orphan(&self, (inos, orphan): (Vec<u64>, Orphan)) {
        // A
        if let Ok(mut o) = self.orphans.lock() {
            for ino in inos {
                o.insert(ino, orphan.clone());
            }
        }
    }

    /// The attributes of inode `ino` (open as `fh`, if given): an unlinked file's are kept
    /// for its descriptors (with no links); a file open for writing shows its handle's.
    pub(crate) fn attr_of(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        // A
        let orphan = match self.orphans.lock().map_err(|_| Errno::EIO)?.get(&ino.0) {
            Some(Orphan::Fixed(a)) => Some(Ok(*a)),
            Some(Orphan::Write(h)) => Some(Err(h.upgrade().ok_or(Errno::ENOENT)?)),
            None => None,
        };
        let mut attr = match orphan {
            None => {
                let node = self.node(ino)?;
                return match (self.attr(&node), fh) {
                    (Err(e), Some(fh)) if e == Errno::ENOENT => self.handle_attr(&node, fh),
                    (r, _) => r,
                };
            }
            Some(Ok(a)) => a,
            Some(Err(h)) => match &*h.lock().map_err(|_| Errno::EIO)? {
                Handle::Write(w) => {
                    let (size, meta) = (w.size().map_err(|_| Errno::EIO)?, w.meta());
                    self.meta_attr(&Node::File(w.key.clone()), size, &meta, meta.mtime)
                }
                _ => return Err(Errno::ENOENT),
            },
        };
        attr.ino = ino;
        attr.nlink = 0;
        Ok(attr)
    }

    /// A node's attributes from descriptor `fh` on it: a read handle's version.
    fn handle_attr(&self, node: &Node, fh: FileHandle) -> Result<FileAttr, Errno> {
        // A
        match &*self.handle(fh)?.lock().map_err(|_| Errno::EIO)? {
            Handle::Read(b) => Ok(self.blob_attr(node, &b.blob)),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The kernel forgot inode `ino`: what an unlinked one showed is dropped.
    pub(crate) fn forget_orphan(&self, ino: u64) {
        // A
        if let Ok(mut o) = self.orphans.lock() {
            o.remove(&ino);
        }
    }

    /// The inode numbers the kernel may hold for key-tree path `p`: the one derived from
    /// it, and those a rename moved there.
    pub(crate) fn kernel_inos(&self, p: &str) -> Vec<u64> {
        // A
        let mut inos = vec![self.ino_of(&Node::File(p.to_string()))];
        if let Ok(m) = self.moved_inos.lock() {
            inos.extend(m.get(p).into_iter().flatten().copied());
        }
        inos.dedup();
        inos
    }

    /// Inodes `inos` now stand for file `p`.
    fn point(&self, inos: &[u64], p: &str) {
        // A
        if let Ok(mut nodes) = self.nodes.lock() {
            for i in inos {
                nodes.insert(*i, Node::File(p.to_string()));
            }
        }
    }

    /// Path `p` gets a new inode number for its next file; `moved` are the inodes the
    /// kernel now holds for it (None: none).
    fn bump(&self, p: &str, moved: Option<Vec<u64>>) {
        // A
        if let Ok(mut r) = self.renamed.lock() {
            *r.entry(p.to_string()).or_insert(0) += 1;
        }
        if let Ok(mut m) = self.moved_inos.lock() {
            match moved {
                Some(inos) => m.insert(p.to_string(), inos),
                None => m.remove(p),
            };
        }
    }

    /// After file `from` was renamed to `to`: the kernel's inodes of `from` now stand for
    /// `to`, and both paths get new numbers for their next files.
    fn renamed(&self, from: &str, to: &str) {
        // A
        let inos = self.kernel_inos(from);
        self.point(&inos, to);
        self.bump(from, None);
        self.bump(to, Some(inos));
    }

    /// After directory `from` was renamed to `to`: every inode the kernel knows below it
    /// stands for the same name below `to`, and every path involved gets new numbers.
    fn renamed_dir(&self, from: &str, to: &str) {
        // A
        let below = format!("{from}/");
        let moved = |p: &str| -> Option<String> {
            if p == from {
                Some(to.to_string())
            } else {
                p.strip_prefix(&below).map(|rest| format!("{to}/{rest}"))
            }
        };
        // (inode, old path, new path) of every node below `from`.
        let mut remapped = Vec::new();
        if let Ok(mut nodes) = self.nodes.lock() {
            for (ino, node) in nodes.iter_mut() {
                let new = match &*node {
                    Node::File(p) => moved(p).map(|n| (p.clone(), Node::File(n))),
                    Node::Dir(p) => moved(p).map(|n| (p.clone(), Node::Dir(n))),
                    _ => None,
                };
                if let Some((old, n)) = new {
                    remapped.push((*ino, old, n.path()[1..].to_string()));
                    *node = n;
                }
            }
        }
        if let Ok(mut r) = self.renamed.lock() {
            for (_, old, new) in &remapped {
                *r.entry(old.clone()).or_insert(0) += 1;
                *r.entry(new.clone()).or_insert(0) += 1;
            }
        }
        if let Ok(mut m) = self.moved_inos.lock() {
            let stale: Vec<String> = m.keys().filter(|k| moved(k).is_some()).cloned().collect();
            for k in stale {
                m.remove(&k);
            }
            for (ino, _, new) in remapped {
                m.entry(new).or_default().push(ino);
            }
        }
    }
}
