//! The tree the mount shows: what a name is inside a directory, a directory's entries and
//! each node's attributes, all read from the store at request time.

use std::collections::HashSet;
use std::time::SystemTime;

use fuser::{FileAttr, FileType, INodeNo};
use ouroboros_db::{parse_time, Blob, Error, Hash, TreeEntry};

use ouroboros_db::model::meta::{TYPE_BITS, TYPE_SYMLINK};
use ouroboros_db::model::FileMeta;

use crate::fs::{errno, time_of, DirEntry, Handle, OuroFs, MAX_DIR_ENTRIES};
use crate::meta::MARKER;
use crate::node::{base_name, join, parse_version_dir_name, version_dir_name, Node, META_DIR};
use fuser::Errno;

impl OuroFs {
    pub(crate) fn head(&self, key: &str) -> Result<Option<(Hash, u64, i64)>, Errno> {
        // A
        Ok(self.head_blob(key)?.map(|(h, b)| (h, b.size, b.created)))
    }

    pub(crate) fn attr(&self, node: &Node) -> Result<FileAttr, Errno> {
        // A
        let (kind, size, mtime) = match node {
            Node::File(key) => {
                if let Some((size, meta)) = self.pending_state(key) {
                    return Ok(self.meta_attr(node, size, &meta, meta.mtime));
                }
                let (_, blob) = self.head_blob(key)?.ok_or(Errno::ENOENT)?;
                return Ok(self.blob_attr(node, &blob));
            }
            Node::Frozen { hash, .. } => {
                let b = self.blob_record(hash)?;
                return Ok(self.blob_attr(node, &b));
            }
            Node::Dir(d) => {
                let mut a = match self.dir_marker(d)? {
                    Some((_, b)) => self.meta_attr(node, 0, &self.meta_of(&b), b.created),
                    None => self.make_attr(node, FileType::Directory, 0, self.store_time()),
                };
                a.nlink = self.dir_links(d)?;
                return Ok(a);
            }
            Node::Root => {
                let mut a = self.make_attr(node, FileType::Directory, 0, self.store_time());
                // `.ouro` is one more subdirectory.
                a.nlink = self.dir_links("")?.saturating_add(1).max(2);
                return Ok(a);
            }
            Node::Version { hash, .. } => {
                let b = self.blob_record(hash)?;
                (FileType::Directory, 0, time_of(b.created))
            }
            Node::SnapDir(_)
            | Node::SnapLatest(_)
            | Node::Snapshot { .. }
            | Node::SnapEntry { .. } => return self.snap_attr(node),
            _ => (FileType::Directory, 0, self.store_time()),
        };
        Ok(self.make_attr(node, kind, size, mtime))
    }

    /// A directory's link count: 2 + its subdirectories, as `find` expects; 1 ("not
    /// counted", which tools accept) when it holds more entries than are cheap to look at.
    fn dir_links(&self, dir: &str) -> Result<u32, Errno> {
        // A
        // One page of the store's listing (`Cas::children` reads 512 keys a step).
        const CHEAP: usize = 512;
        let entries = self.cas.children(dir, CHEAP).map_err(|e| errno(&e))?;
        if entries.len() >= CHEAP {
            return Ok(1);
        }
        let dirs = entries
            .iter()
            .filter(|e| matches!(e, TreeEntry::Dir(_)))
            .count();
        Ok(2 + dirs as u32)
    }

    /// The attributes of a key version: its recorded file metadata, or the defaults.
    pub(crate) fn blob_attr(&self, node: &Node, blob: &Blob) -> FileAttr {
        // A
        match blob.meta.file() {
            Some(m) => self.meta_attr(node, blob.size, m, blob.created),
            None => self.make_attr(
                node,
                FileType::RegularFile,
                blob.size,
                time_of(blob.created),
            ),
        }
    }

    /// The attributes of a node with file metadata `m`, changed (ctime) at `changed`.
    pub(crate) fn meta_attr(&self, node: &Node, size: u64, m: &FileMeta, changed: i64) -> FileAttr {
        // A
        let kind = match m.mode & TYPE_BITS {
            TYPE_SYMLINK => FileType::Symlink,
            _ if node.is_dir() => FileType::Directory,
            _ => FileType::RegularFile,
        };
        let mut a = self.make_attr(node, kind, size, time_of(m.mtime));
        a.perm = (m.mode & 0o7777) as u16;
        a.uid = m.uid;
        a.gid = m.gid;
        a.ctime = time_of(changed);
        a
    }

    /// The attributes of `node` given its kind, size and time.
    pub(crate) fn make_attr(
        &self,
        node: &Node,
        kind: FileType,
        size: u64,
        mtime: SystemTime,
    ) -> FileAttr {
        // A
        let writable = !self.opts.read_only && !node.is_frozen();
        let perm = match (kind, writable) {
            (FileType::Directory, true) => 0o755,
            (FileType::Directory, false) => 0o555,
            (_, true) => 0o644,
            (_, false) => 0o444,
        };
        FileAttr {
            ino: INodeNo(self.ino_of(node)),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            // Tools size their buffers by it (cat, cp): one FUSE request of the largest size
            // the kernel sends (1 MiB) per read call, instead of eight.
            blksize: 1 << 20,
            flags: 0,
        }
    }

    /// Size and metadata of a key being written (its open handle's).
    pub(crate) fn pending_state(&self, key: &str) -> Option<(u64, FileMeta)> {
        // A
        let h = self.pending_handle(key)?;
        let guard = h.lock().ok()?;
        match &*guard {
            Handle::Write(w) => Some((w.size().ok()?, w.meta())),
            _ => None,
        }
    }

    /// What `name` is inside directory node `parent`.
    pub(crate) fn child(&self, parent: &Node, name: &str) -> Result<Node, Errno> {
        // A
        match parent {
            Node::Root => self.tree_child("", name),
            Node::Dir(d) => self.tree_child(d, name),
            Node::Meta => meta_entries()
                .into_iter()
                .find(|(_, n)| *n == name)
                .map(|(node, _)| node)
                .ok_or(Errno::ENOENT),
            Node::SnapDir(p) => self.snap_dir_child(p, name),
            Node::Snapshot { .. } | Node::SnapEntry { .. } => {
                self.snap_child(parent, name.as_bytes()).map(|(n, _)| n)
            }
            Node::VersionsDir(p) => self.versions_child(p, name),
            Node::Version { key, hash } if name == base_name(key) => Ok(Node::Frozen {
                path: format!("{}/{name}", parent.path()),
                hash: *hash,
            }),
            Node::HeadsDir(p) => self.heads_child(parent, p, name),
            Node::AtRoot => {
                let time = parse_time(name).ok_or(Errno::ENOENT)?;
                Ok(Node::AtDir {
                    time,
                    label: name.to_string(),
                    dir: String::new(),
                })
            }
            Node::AtDir { time, label, dir } => self.at_child(parent, *time, label, dir, name),
            Node::BlobsDir => self.blobs_child(parent, name),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// What `name` is in `.ouro/heads/<p>`: a head of key `p` (by its short hash) or a
    /// longer key path.
    fn heads_child(&self, parent: &Node, p: &str, name: &str) -> Result<Node, Errno> {
        // A
        let err = |e: Error| errno(&e);
        if let Some((h, _, _)) = self.head_named(p, name)? {
            return Ok(Node::Frozen {
                path: format!("{}/{name}", parent.path()),
                hash: h,
            });
        }
        let q = join(p, name);
        if self.cas.is_key(&q).map_err(err)? || self.cas.is_dir(&q).map_err(err)? {
            Ok(Node::HeadsDir(q))
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// What `name` is in `.ouro/blobs`: the version whose full hash it is, if stored.
    fn blobs_child(&self, parent: &Node, name: &str) -> Result<Node, Errno> {
        // A
        let hash = Hash::from_hex(name).ok_or(Errno::ENOENT)?;
        self.cas.blob(&hash).map_err(|e| errno(&e))?;
        Ok(Node::Frozen {
            path: format!("{}/{name}", parent.path()),
            hash,
        })
    }

    /// What `name` is in `.ouro/versions/<p>`: a version of key `p` (by the short hash of
    /// its `<time>_<short>` name) or a longer key path.
    fn versions_child(&self, p: &str, name: &str) -> Result<Node, Errno> {
        // A
        let err = |e: Error| errno(&e);
        if let Some(short) = parse_version_dir_name(name) {
            if let Some((hash, _)) = self
                .cas
                .versions_of(p)
                .map_err(err)?
                .into_iter()
                .find(|(h, _)| h.has_hex_prefix(short))
            {
                return Ok(Node::Version {
                    key: p.to_string(),
                    hash,
                });
            }
        }
        let q = join(p, name);
        let known = !self.cas.versions_of(&q).map_err(err)?.is_empty()
            || !self
                .cas
                .keys_ever(&format!("{q}/"), None, 1)
                .map_err(err)?
                .is_empty();
        if known {
            Ok(Node::VersionsDir(q))
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// What `name` is in `.ouro/at/<label>/<dir>`: the version of a key then, or a
    /// directory that held keys.
    fn at_child(
        &self,
        parent: &Node,
        time: i64,
        label: &str,
        dir: &str,
        name: &str,
    ) -> Result<Node, Errno> {
        // A
        let q = join(dir, name);
        if let Ok(hash) = self.cas.resolve(&format!("{q}@{label}")) {
            return Ok(Node::Frozen {
                path: format!("{}/{name}", parent.path()),
                hash,
            });
        }
        let ever = self
            .cas
            .keys_ever(&format!("{q}/"), None, 1)
            .map_err(|e| errno(&e))?;
        if ever.is_empty() {
            Err(Errno::ENOENT)
        } else {
            Ok(Node::AtDir {
                time,
                label: label.to_string(),
                dir: q,
            })
        }
    }

    /// What `name` is in directory `dir` of the key tree: a key (being written or stored), a
    /// directory, or nothing (a directory's marker is not shown).
    fn tree_child(&self, dir: &str, name: &str) -> Result<Node, Errno> {
        // A
        let err = |e: Error| errno(&e);
        if dir.is_empty() && name == META_DIR {
            return Ok(Node::Meta);
        }
        let p = join(dir, name);
        let pending = self
            .pending
            .lock()
            .map(|m| m.contains_key(&p))
            .unwrap_or(false);
        let marker = name == MARKER && self.dir_marker(dir)?.is_some();
        if pending || !marker && self.cas.is_key(&p).map_err(err)? {
            Ok(Node::File(p))
        } else if self.cas.is_dir(&p).map_err(err)? {
            Ok(Node::Dir(p))
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// The head of key `key` whose short hash is `name`.
    pub(crate) fn head_named(
        &self,
        key: &str,
        name: &str,
    ) -> Result<Option<(Hash, u64, i64)>, Errno> {
        // A
        if name.len() != crate::node::SHORT || key.is_empty() {
            return Ok(None);
        }
        match self.cas.heads(key) {
            Ok(heads) => Ok(heads
                .into_iter()
                .find(|v| v.hash.has_hex_prefix(name))
                .map(|v| (v.hash, v.size, v.created))),
            Err(_) => Ok(None),
        }
    }

    /// Every entry of a directory node, `.` and `..` first. Entries whose attributes need a
    /// version record (keys, heads) get them a page at a time (`fill_attrs`).
    pub(crate) fn list(&self, ino: u64, node: &Node) -> Result<Vec<DirEntry>, Errno> {
        // A
        let here = self.attr(node)?;
        let dot = |name: &str, ino: u64, node: Node| DirEntry {
            ino,
            kind: FileType::Directory,
            name: name.into(),
            node,
            attr: Some(here),
            heads: Vec::new(),
        };
        let mut out = vec![dot(".", ino, node.clone()), dot("..", 1, Node::Root)];
        match node {
            Node::Root => self.list_tree("", &mut out)?,
            Node::Dir(d) => self.list_tree(d, &mut out)?,
            Node::Meta => {
                for (n, name) in meta_entries() {
                    self.push(&mut out, n, name.into(), FileType::Directory, Vec::new());
                }
            }
            Node::VersionsDir(p) => self.list_versions(p, &mut out)?,
            Node::Version { key, hash } => self.list_version(node, key, hash, &mut out),
            Node::HeadsDir(p) => self.list_heads(p, node, &mut out)?,
            Node::SnapDir(p) => self.list_snap_dir(p, &mut out)?,
            // Any time or hash can be looked up; listing them all is not offered.
            Node::AtRoot | Node::AtDir { .. } | Node::BlobsDir => {}
            _ => return Err(Errno::ENOTDIR),
        }
        Ok(out)
    }

    /// Adds an entry; the fixed directories of `.ouro` get their attributes now, the others
    /// when a page of the listing is sent.
    fn push(
        &self,
        out: &mut Vec<DirEntry>,
        node: Node,
        name: String,
        kind: FileType,
        heads: Vec<Hash>,
    ) {
        // A
        let fixed = kind == FileType::Directory
            && node.is_frozen()
            && !matches!(node, Node::Version { .. });
        let attr = fixed.then(|| self.make_attr(&node, kind, 0, self.store_time()));
        let ino = self.remember(node.clone());
        out.push(DirEntry {
            ino,
            kind,
            name,
            node,
            attr,
            heads,
        });
    }

    /// The keys and directories of `dir`, `.ouro` at the root, keys being written; the
    /// directory's marker is left out.
    fn list_tree(&self, dir: &str, out: &mut Vec<DirEntry>) -> Result<(), Errno> {
        // A
        if dir.is_empty() {
            self.push(
                out,
                Node::Meta,
                META_DIR.into(),
                FileType::Directory,
                Vec::new(),
            );
        }
        // Files being written first: one leaves `pending` only once stored, so the store
        // read next has it.
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let pending: Vec<String> = {
            let pending = self.pending.lock().map_err(|_| Errno::EIO)?;
            pending
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|r| !r.contains('/'))
                .map(str::to_string)
                .collect()
        };
        let mut entries = self.tree(dir)?;
        let has_marker = entries
            .iter()
            .any(|e| matches!(e, TreeEntry::Key { name, .. } if name == MARKER));
        if has_marker && self.dir_marker(dir)?.is_some() {
            entries.retain(|e| !matches!(e, TreeEntry::Key { name, .. } if name == MARKER));
        }
        // A key and a directory of one name: the file shadows the directory.
        entries.dedup_by(|b, a| a.name() == b.name());
        let mut names = HashSet::new();
        for e in entries {
            let p = join(dir, e.name());
            names.insert(e.name().to_string());
            match e {
                TreeEntry::Key { name, heads } => {
                    self.push(out, Node::File(p), name, FileType::RegularFile, heads)
                }
                TreeEntry::Dir(n) => {
                    self.push(out, Node::Dir(p), n, FileType::Directory, Vec::new())
                }
            }
        }
        for n in pending {
            if names.insert(n.clone()) {
                let node = Node::File(join(dir, &n));
                self.push(out, node, n, FileType::RegularFile, Vec::new());
            }
        }
        Ok(())
    }

    /// Direct children of `dir` in the key tree.
    fn tree(&self, dir: &str) -> Result<Vec<TreeEntry>, Errno> {
        // A
        let mut entries = self
            .cas
            .children(dir, MAX_DIR_ENTRIES)
            .map_err(|e| errno(&e))?;
        entries.dedup_by(|b, a| a.name() == b.name());
        Ok(entries)
    }

    /// `.ouro/versions/<p>`: a directory per version of key `p`, and the names below `p`.
    fn list_versions(&self, p: &str, out: &mut Vec<DirEntry>) -> Result<(), Errno> {
        // A
        if !p.is_empty() {
            for (hash, created) in self.cas.versions_of(p).map_err(|e| errno(&e))? {
                let node = Node::Version {
                    key: p.to_string(),
                    hash,
                };
                let name = version_dir_name(created, &hash, true);
                self.push(out, node, name, FileType::Directory, Vec::new());
            }
        }
        for e in self.tree(p)? {
            let node = Node::VersionsDir(join(p, e.name()));
            self.push(out, node, e.name().into(), FileType::Directory, Vec::new());
        }
        Ok(())
    }

    /// `.ouro/versions/<key>/<time>_<short>`: the one file, the key's content then.
    fn list_version(&self, node: &Node, key: &str, hash: &Hash, out: &mut Vec<DirEntry>) {
        // A
        let name = base_name(key).to_string();
        let file = Node::Frozen {
            path: format!("{}/{name}", node.path()),
            hash: *hash,
        };
        self.push(out, file, name, FileType::RegularFile, Vec::new());
    }

    /// `.ouro/heads/<p>`: a file per head of key `p`, and the names below `p`.
    fn list_heads(&self, p: &str, node: &Node, out: &mut Vec<DirEntry>) -> Result<(), Errno> {
        // A
        if !p.is_empty() {
            if let Ok(heads) = self.cas.heads(p) {
                for v in heads {
                    let name = v.hash.to_hex()[..crate::node::SHORT].to_string();
                    let file = Node::Frozen {
                        path: format!("{}/{name}", node.path()),
                        hash: v.hash,
                    };
                    self.push(out, file, name, FileType::RegularFile, Vec::new());
                }
            }
        }
        for e in self.tree(p)? {
            let node = Node::HeadsDir(join(p, e.name()));
            self.push(out, node, e.name().into(), FileType::Directory, Vec::new());
        }
        Ok(())
    }

    /// Fills the attributes of the entries of `page` that lack them (the newest heads of its
    /// keys read in one transaction) and sets their kinds from them (a key may be a symbolic
    /// link). `all` false (readdir): only entries whose kind is not known yet.
    pub(crate) fn fill_attrs(&self, page: &mut [DirEntry], all: bool) -> Result<(), Errno> {
        // A
        let newest = {
            let sets: Vec<&[Hash]> = page
                .iter()
                .filter(|e| e.attr.is_none() && !e.heads.is_empty())
                .map(|e| e.heads.as_slice())
                .collect();
            self.cas.newest_head_records(&sets).map_err(|e| errno(&e))?
        };
        let mut newest = newest.into_iter();
        for e in page.iter_mut().filter(|e| e.attr.is_none()) {
            if !e.heads.is_empty() {
                e.attr = newest
                    .next()
                    .flatten()
                    .map(|(_, b)| self.blob_attr(&e.node, &b));
            } else if all || e.kind != FileType::Directory {
                // An entry that vanished since the listing keeps no attributes.
                e.attr = self.attr(&e.node).ok();
            }
            if let Some(a) = e.attr {
                e.kind = a.kind;
            }
        }
        Ok(())
    }
}

/// The fixed directories of `.ouro`, in listing order: what each name looks up and lists.
fn meta_entries() -> [(Node, &'static str); 5] {
    // A
    [
        (Node::VersionsDir(String::new()), "versions"),
        (Node::HeadsDir(String::new()), "heads"),
        (Node::AtRoot, "at"),
        (Node::BlobsDir, "blobs"),
        (Node::SnapDir(String::new()), "snapshots"),
    ]
}
