//! The tree the mount shows: what a name is inside a directory, a directory's entries and
//! each node's attributes, all read from the store at request time.

use std::collections::HashSet;
use std::time::SystemTime;

use fuser::{FileAttr, FileHandle, FileType, INodeNo};
use ouroboros_db::{parse_time, Blob, Error, Hash, TreeEntry};

use crate::fs::{errno, time_of, DirEntry, Handle, OuroFs, MAX_DIR_ENTRIES};
use crate::node::{base_name, join, parse_version_dir_name, version_dir_name, Node, META_DIR};
use fuser::Errno;

impl OuroFs {
    pub(crate) fn head(&self, key: &str) -> Result<Option<(Hash, u64, i64)>, Errno> {
        // A
        Ok(self.head_blob(key)?.map(|(h, b)| (h, b.size, b.created)))
    }

    /// The newest head of a live key with its record (what a read opens).
    pub(crate) fn head_blob(&self, key: &str) -> Result<Option<(Hash, Blob)>, Errno> {
        // A
        self.cas.newest_head_of(key).map_err(|e| errno(&e))
    }

    pub(crate) fn attr(&self, node: &Node) -> Result<FileAttr, Errno> {
        // A
        let (kind, size, mtime) = match node {
            Node::File(key) => {
                let pending = self.pending_size(key);
                match (self.head(key)?, pending) {
                    (_, Some(size)) => (FileType::RegularFile, size, SystemTime::now()),
                    (Some((_, size, created)), None) => {
                        (FileType::RegularFile, size, time_of(created))
                    }
                    (None, None) => return Err(Errno::ENOENT),
                }
            }
            Node::Frozen { hash, .. } => {
                let b = self.cas.blob(hash).map_err(|e| errno(&e))?;
                (FileType::RegularFile, b.size, time_of(b.created))
            }
            Node::Version { hash, .. } => {
                let b = self.cas.blob(hash).map_err(|e| errno(&e))?;
                (FileType::Directory, 0, time_of(b.created))
            }
            _ => (FileType::Directory, 0, time_of(self.cas.config().created)),
        };
        Ok(self.make_attr(node, kind, size, mtime))
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
            ino: INodeNo(node.ino()),
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

    pub(crate) fn pending_size(&self, key: &str) -> Option<u64> {
        // A
        let fh = *self.pending.lock().ok()?.get(key)?;
        let h = self.handle(FileHandle(fh)).ok()?;
        let guard = h.lock().ok()?;
        match &*guard {
            Handle::Write(w) => w.size().ok(),
            _ => None,
        }
    }

    /// What `name` is inside directory node `parent`.
    pub(crate) fn child(&self, parent: &Node, name: &str) -> Result<Node, Errno> {
        // A
        let err = |e: Error| errno(&e);
        match parent {
            Node::Root | Node::Dir(_) => {
                let dir = match parent {
                    Node::Dir(d) => d.as_str(),
                    _ => "",
                };
                if dir.is_empty() && name == META_DIR {
                    return Ok(Node::Meta);
                }
                let p = join(dir, name);
                let pending = self
                    .pending
                    .lock()
                    .map(|m| m.contains_key(&p))
                    .unwrap_or(false);
                if pending || self.cas.is_key(&p).map_err(err)? {
                    Ok(Node::File(p))
                } else if self.cas.is_dir(&p).map_err(err)?
                    || self
                        .empty_dirs
                        .lock()
                        .map(|d| d.contains(&p))
                        .unwrap_or(false)
                {
                    Ok(Node::Dir(p))
                } else {
                    Err(Errno::ENOENT)
                }
            }
            Node::Meta => match name {
                "versions" => Ok(Node::VersionsDir(String::new())),
                "heads" => Ok(Node::HeadsDir(String::new())),
                "at" => Ok(Node::AtRoot),
                "blobs" => Ok(Node::BlobsDir),
                _ => Err(Errno::ENOENT),
            },
            Node::VersionsDir(p) => {
                if let Some(short) = parse_version_dir_name(name) {
                    if let Some((hash, _)) = self
                        .cas
                        .versions_of(p)
                        .map_err(err)?
                        .into_iter()
                        .find(|(h, _)| h.has_hex_prefix(short))
                    {
                        return Ok(Node::Version {
                            key: p.clone(),
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
            Node::Version { key, hash } if name == base_name(key) => Ok(Node::Frozen {
                path: format!("{}/{name}", parent.path()),
                hash: *hash,
            }),
            Node::HeadsDir(p) => {
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
            Node::AtRoot => {
                let time = parse_time(name).ok_or(Errno::ENOENT)?;
                Ok(Node::AtDir {
                    time,
                    label: name.to_string(),
                    dir: String::new(),
                })
            }
            Node::AtDir { time, label, dir } => {
                let q = join(dir, name);
                if let Ok(hash) = self.cas.resolve(&format!("{q}@{label}")) {
                    return Ok(Node::Frozen {
                        path: format!("{}/{name}", parent.path()),
                        hash,
                    });
                }
                if self
                    .cas
                    .keys_ever(&format!("{q}/"), None, 1)
                    .map_err(err)?
                    .is_empty()
                {
                    Err(Errno::ENOENT)
                } else {
                    Ok(Node::AtDir {
                        time: *time,
                        label: label.clone(),
                        dir: q,
                    })
                }
            }
            Node::BlobsDir => {
                let hash = Hash::from_hex(name).ok_or(Errno::ENOENT)?;
                self.cas.blob(&hash).map_err(err)?;
                Ok(Node::Frozen {
                    path: format!("{}/{name}", parent.path()),
                    hash,
                })
            }
            _ => Err(Errno::ENOTDIR),
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

    /// Every entry of a directory node, `.` and `..` first.
    pub(crate) fn list(&self, ino: u64, node: &Node) -> Result<Vec<DirEntry>, Errno> {
        // A
        let err = |e: Error| errno(&e);
        let here = self.attr(node)?;
        let mut out = vec![
            DirEntry {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
                node: node.clone(),
                attr: Some(here),
                heads: Vec::new(),
            },
            DirEntry {
                ino: 1,
                kind: FileType::Directory,
                name: "..".into(),
                node: Node::Root,
                attr: Some(here),
                heads: Vec::new(),
            },
        ];
        let dir_time = time_of(self.cas.config().created);
        // Files of the key tree come with their size and time, directories need none: a
        // listing answers `ls -l` without a lookup per entry (readdirplus).
        let mut push = |node: Node, name: String, meta: Option<(u64, i64)>, heads: Vec<Hash>| {
            let (kind, attr) = match (meta, node.is_dir()) {
                (Some((size, created)), _) => {
                    let a = self.make_attr(&node, FileType::RegularFile, size, time_of(created));
                    (FileType::RegularFile, Some(a))
                }
                (None, true) if !matches!(node, Node::Version { .. }) => {
                    let a = self.make_attr(&node, FileType::Directory, 0, dir_time);
                    (FileType::Directory, Some(a))
                }
                (None, true) => (FileType::Directory, None),
                (None, false) => (FileType::RegularFile, None),
            };
            let ino = self.remember(node.clone());
            out.push(DirEntry {
                ino,
                kind,
                name,
                node,
                attr,
                heads,
            });
        };
        let tree = |dir: &str| -> Result<Vec<TreeEntry>, Errno> {
            let mut entries = self.cas.children(dir, MAX_DIR_ENTRIES).map_err(err)?;
            // A key and a directory of one name: the file shadows the directory.
            entries.dedup_by(|b, a| a.name() == b.name());
            Ok(entries)
        };
        match node {
            Node::Root | Node::Dir(_) => {
                let dir = match node {
                    Node::Dir(d) => d.as_str(),
                    _ => "",
                };
                if dir.is_empty() {
                    push(Node::Meta, META_DIR.to_string(), None, Vec::new());
                }
                let mut names = HashSet::new();
                for e in tree(dir)? {
                    let p = join(dir, e.name());
                    names.insert(e.name().to_string());
                    match e {
                        TreeEntry::Key { name, heads } => push(Node::File(p), name, None, heads),
                        TreeEntry::Dir(n) => push(Node::Dir(p), n, None, Vec::new()),
                    }
                }
                let prefix = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                let extra: Vec<String> = {
                    let pending = self.pending.lock().map_err(|_| Errno::EIO)?;
                    let empty = self.empty_dirs.lock().map_err(|_| Errno::EIO)?;
                    pending
                        .keys()
                        .chain(empty.iter())
                        .filter_map(|k| k.strip_prefix(&prefix))
                        .filter(|r| !r.contains('/'))
                        .map(str::to_string)
                        .collect()
                };
                for n in extra {
                    if names.insert(n.clone()) {
                        let p = join(dir, &n);
                        let is_file = self
                            .pending
                            .lock()
                            .map(|m| m.contains_key(&p))
                            .unwrap_or(false);
                        let node = if is_file { Node::File(p) } else { Node::Dir(p) };
                        push(node, n, None, Vec::new());
                    }
                }
            }
            Node::Meta => {
                push(
                    Node::VersionsDir(String::new()),
                    "versions".into(),
                    None,
                    Vec::new(),
                );
                push(
                    Node::HeadsDir(String::new()),
                    "heads".into(),
                    None,
                    Vec::new(),
                );
                push(Node::AtRoot, "at".into(), None, Vec::new());
                push(Node::BlobsDir, "blobs".into(), None, Vec::new());
            }
            Node::VersionsDir(p) => {
                if !p.is_empty() {
                    for (hash, created) in self.cas.versions_of(p).map_err(err)? {
                        push(
                            Node::Version {
                                key: p.clone(),
                                hash,
                            },
                            version_dir_name(created, &hash, true),
                            None,
                            Vec::new(),
                        );
                    }
                }
                for e in tree(p)? {
                    push(
                        Node::VersionsDir(join(p, e.name())),
                        e.name().to_string(),
                        None,
                        Vec::new(),
                    );
                }
            }
            Node::Version { key, hash } => {
                let name = base_name(key).to_string();
                push(
                    Node::Frozen {
                        path: format!("{}/{name}", node.path()),
                        hash: *hash,
                    },
                    name,
                    None,
                    Vec::new(),
                );
            }
            Node::HeadsDir(p) => {
                if !p.is_empty() {
                    if let Ok(heads) = self.cas.heads(p) {
                        for v in heads {
                            let name = v.hash.to_hex()[..crate::node::SHORT].to_string();
                            push(
                                Node::Frozen {
                                    path: format!("{}/{name}", node.path()),
                                    hash: v.hash,
                                },
                                name,
                                Some((v.size, v.created)),
                                Vec::new(),
                            );
                        }
                    }
                }
                for e in tree(p)? {
                    push(
                        Node::HeadsDir(join(p, e.name())),
                        e.name().to_string(),
                        None,
                        Vec::new(),
                    );
                }
            }
            // Any time or hash can be looked up; listing them all is not offered.
            Node::AtRoot | Node::AtDir { .. } | Node::BlobsDir => {}
            Node::File(_) | Node::Frozen { .. } => return Err(Errno::ENOTDIR),
        }
        Ok(out)
    }
}
