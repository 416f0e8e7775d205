//! File metadata in the key tree. A key version's `FileMeta` holds its mode, owner and mtime:
//! chmod, chown and touch store a new version with the same chunks (`Cas::set_meta`), a
//! symbolic link is a version with the `S_IFLNK` type whose content is its target. A
//! directory keeps its own in a marker key `DIR/.ouro` (a version with the `S_IFDIR` type and
//! no content), which also keeps an empty directory across mounts; the mount hides it.

use std::time::{SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileHandle, TimeOrNow};
use ouroboros_db::model::meta::{TYPE_BITS, TYPE_FILE, TYPE_SYMLINK};
use ouroboros_db::model::{FileMeta, VersionMeta};
use ouroboros_db::{Blob, Hash, PutOptions, TreeEntry};

use crate::fs::{errno, Handle, OuroFs};
use crate::node::Node;

/// The name of a directory's marker key, hidden in listings (and refused as a new name).
pub(crate) const MARKER: &str = ".ouro";
/// The type bits of a directory (`S_IFDIR`): a marker's mode.
pub(crate) const TYPE_DIR: u32 = 0o040_000;
/// Longest symbolic link target read back (the kernel's PATH_MAX is 4 KiB).
const MAX_TARGET: u64 = 64 << 10;

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_nanos() -> i64 {
    // A
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A time setattr was given, in nanoseconds.
fn nanos_of(t: TimeOrNow) -> i64 {
    // A
    match t {
        TimeOrNow::Now => now_nanos(),
        TimeOrNow::SpecificTime(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i64,
            Err(e) => -(e.duration().as_nanos() as i64),
        },
    }
}

/// The marker key of directory `dir`.
pub(crate) fn marker_key(dir: &str) -> String {
    // A
    format!("{dir}/{MARKER}")
}

/// True when a version is a directory marker.
pub(crate) fn is_marker(blob: &Blob) -> bool {
    // A
    blob.meta
        .file()
        .is_some_and(|m| m.mode & TYPE_BITS == TYPE_DIR)
}

/// What a setattr changes of mode, owner and time (atime is not kept).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MetaChange {
    /// New permission bits (the type bits stay).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<TimeOrNow>,
}

impl MetaChange {
    /// True when nothing that is kept changes.
    pub(crate) fn is_empty(&self) -> bool {
        // A
        self.mode.is_none() && self.uid.is_none() && self.gid.is_none() && self.mtime.is_none()
    }

    /// `m` with the changes applied.
    fn apply(&self, m: FileMeta) -> FileMeta {
        // A
        FileMeta {
            mode: match self.mode {
                Some(mode) => (m.mode & TYPE_BITS) | (mode & 0o7777),
                None => m.mode,
            },
            uid: self.uid.unwrap_or(m.uid),
            gid: self.gid.unwrap_or(m.gid),
            mtime: self.mtime.map(nanos_of).unwrap_or(m.mtime),
        }
    }
}

impl OuroFs {
    /// What a version without file metadata shows: a regular file of mode 0644 owned by the
    /// mount's user, modified when the version was made.
    pub(crate) fn default_meta(&self, created: i64) -> FileMeta {
        // A
        FileMeta {
            mode: TYPE_FILE | 0o644,
            uid: self.uid,
            gid: self.gid,
            mtime: created,
        }
    }

    /// The metadata of a version, or the defaults.
    pub(crate) fn meta_of(&self, blob: &Blob) -> FileMeta {
        // A
        blob.meta
            .file()
            .copied()
            .unwrap_or_else(|| self.default_meta(blob.created))
    }

    /// Directory `dir`'s marker: its head and metadata, when it has one.
    pub(crate) fn dir_marker(&self, dir: &str) -> Result<Option<(Hash, Blob)>, Errno> {
        // A
        if dir.is_empty() {
            return Ok(None);
        }
        Ok(self
            .head_blob(&marker_key(dir))?
            .filter(|(_, b)| is_marker(b)))
    }

    /// Applies setattr's mode, owner and mtime to a key or a directory of the key tree.
    pub(crate) fn change_meta(
        &self,
        node: &Node,
        change: MetaChange,
        caller: u32,
        fh: Option<FileHandle>,
    ) -> Result<(), Errno> {
        // A
        if change.is_empty() {
            return Ok(());
        }
        if self.opts.read_only || node.is_frozen() {
            return Err(Errno::EROFS);
        }
        match node {
            Node::File(key) => self.change_key_meta(key, change, caller, fh),
            Node::Dir(dir) => self.change_dir_meta(dir, change, caller),
            // The mountpoint's own metadata has no key to live in: accepted, not kept.
            _ => Ok(()),
        }
    }

    /// Only root gives a file away.
    fn may_chown(change: &MetaChange, current: &FileMeta, caller: u32) -> Result<(), Errno> {
        // A
        match change.uid {
            Some(uid) if uid != current.uid && caller != 0 => Err(Errno::EPERM),
            _ => Ok(()),
        }
    }

    fn change_key_meta(
        &self,
        key: &str,
        change: MetaChange,
        caller: u32,
        fh: Option<FileHandle>,
    ) -> Result<(), Errno> {
        // A
        let open = fh
            .and_then(|fh| self.handle(fh).ok())
            .or_else(|| self.pending_handle(key));
        let open =
            open.filter(|h| matches!(h.lock().as_deref(), Ok(Handle::Write(w)) if w.key == key));
        if let Some(h) = &open {
            let mut guard = h.lock().map_err(|_| Errno::EIO)?;
            if let Handle::Write(w) = &mut *guard {
                if w.unstored() {
                    // Stored with the content at the next flush or close.
                    Self::may_chown(&change, &w.meta(), caller)?;
                    w.set_meta(change.apply(w.meta()));
                    return Ok(());
                }
            }
        }
        let (_, blob) = self.head_blob(key)?.ok_or(Errno::ENOENT)?;
        let current = self.meta_of(&blob);
        Self::may_chown(&change, &current, caller)?;
        let new = change.apply(current);
        if new == current && blob.meta.file().is_some() {
            return Ok(());
        }
        let hash = self.cas.set_meta(key, new).map_err(|e| errno(&e))?;
        if let Some(h) = open {
            if let Ok(Handle::Write(w)) = h.lock().as_deref_mut() {
                w.rebase(hash, new);
            }
        }
        Ok(())
    }

    fn change_dir_meta(&self, dir: &str, change: MetaChange, caller: u32) -> Result<(), Errno> {
        // A
        let marker = marker_key(dir);
        let (current, exists) = match self.head_blob(&marker)? {
            Some((_, b)) if is_marker(&b) => (self.meta_of(&b), true),
            // A file of the user's named `.ouro` is never overwritten.
            Some(_) => return Err(Errno::EPERM),
            None => (self.default_dir_meta(), false),
        };
        Self::may_chown(&change, &current, caller)?;
        let new = change.apply(current);
        if new == current && exists {
            return Ok(());
        }
        if exists {
            self.cas.set_meta(&marker, new).map_err(|e| errno(&e))?;
            Ok(())
        } else {
            self.put_marker(dir, new)
        }
    }

    /// What a directory without a marker shows.
    pub(crate) fn default_dir_meta(&self) -> FileMeta {
        // A
        FileMeta {
            mode: TYPE_DIR | 0o755,
            uid: self.uid,
            gid: self.gid,
            mtime: self.cas.config().created,
        }
    }

    /// Stores directory `dir`'s marker with metadata `meta`.
    pub(crate) fn put_marker(&self, dir: &str, meta: FileMeta) -> Result<(), Errno> {
        // A
        let opts = PutOptions {
            meta: VersionMeta::File(meta),
            ..PutOptions::default()
        };
        self.cas
            .put(&marker_key(dir), std::io::empty(), &opts)
            .map(|_| ())
            .map_err(|e| errno(&e))
    }

    /// mkdir: a directory with a marker, so that it exists (and keeps its mode, owner and
    /// time) while empty and across mounts.
    pub(crate) fn make_dir(&self, dir: &str, mode: u32, uid: u32, gid: u32) -> Result<(), Errno> {
        // A
        ouroboros_db::model::validate_key(&marker_key(dir)).map_err(|e| errno(&e))?;
        let meta = FileMeta {
            mode: TYPE_DIR | (mode & 0o7777),
            uid,
            gid,
            mtime: now_nanos(),
        };
        self.put_marker(dir, meta)
    }

    /// rmdir: only a directory holding nothing but its marker.
    pub(crate) fn remove_dir(&self, dir: &str) -> Result<(), Errno> {
        // A
        if !self.dir_is_empty(dir)? {
            return Err(Errno::ENOTEMPTY);
        }
        match self.dir_marker(dir)? {
            Some(_) => self
                .cas
                .remove(&marker_key(dir))
                .map(|_| ())
                .map_err(|e| errno(&e)),
            None => Err(Errno::ENOENT),
        }
    }

    /// True when `dir` holds no key but its marker, and no file being written.
    pub(crate) fn dir_is_empty(&self, dir: &str) -> Result<bool, Errno> {
        // A
        // Files being written first: one leaves `pending` only after it was stored, so
        // looking at the store second cannot miss it.
        let prefix = format!("{dir}/");
        if self
            .pending
            .lock()
            .map_err(|_| Errno::EIO)?
            .keys()
            .any(|k| k.starts_with(&prefix))
        {
            return Ok(false);
        }
        let entries = self.cas.children(dir, 3).map_err(|e| errno(&e))?;
        for e in entries {
            match e {
                TreeEntry::Key { name, .. } if name == MARKER => {
                    if self.dir_marker(dir)?.is_none() {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// ln -s: a version whose content is the target and whose type is `S_IFLNK`.
    pub(crate) fn make_symlink(
        &self,
        key: &str,
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<(), Errno> {
        // A
        ouroboros_db::model::validate_key(key).map_err(|e| errno(&e))?;
        let opts = PutOptions {
            meta: VersionMeta::File(FileMeta {
                mode: TYPE_SYMLINK | 0o777,
                uid,
                gid,
                mtime: now_nanos(),
            }),
            ..PutOptions::default()
        };
        self.cas
            .put(key, target, &opts)
            .map(|_| ())
            .map_err(|e| errno(&e))
    }

    /// The target of a symbolic link node: a key's or version's content, a snapshot
    /// entry's recorded target, or `latest`'s snapshot.
    pub(crate) fn read_link(&self, node: &Node) -> Result<Vec<u8>, Errno> {
        // A
        let blob = match node {
            Node::File(key) => self.head_blob(key)?.ok_or(Errno::ENOENT)?.1,
            Node::Frozen { hash, .. } => self.cas.blob(hash).map_err(|e| errno(&e))?,
            Node::SnapLatest(p) => {
                let name = self.newest_snapshot_name(p)?.ok_or(Errno::ENOENT)?;
                return Ok(name.into_bytes());
            }
            Node::Snapshot { .. } | Node::SnapEntry { .. } => {
                let found = self.snap_found(node)?;
                let e = found.entry().ok_or(Errno::ENOENT)?;
                return match e.kind {
                    ouroboros_db::model::EntryKind::Symlink => Ok(e.target.clone()),
                    _ => Err(Errno::EINVAL),
                };
            }
            _ => return Err(Errno::EINVAL),
        };
        if !blob.meta.file().is_some_and(|m| m.is_symlink()) {
            return Err(Errno::EINVAL);
        }
        if blob.size > MAX_TARGET {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut out = Vec::with_capacity(blob.size as usize);
        for c in &blob.chunks {
            let data = self.cache.chunk(&c.id).map_err(|e| errno(&e))?;
            out.extend_from_slice(&data);
        }
        Ok(out)
    }
}
