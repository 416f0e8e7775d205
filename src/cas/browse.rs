//! Browsing the key space as a tree of directories (the mount's view): direct children of a
//! key prefix, every version of a key, a version's record by hash, and copying a version to
//! another key without reading its content.

use crate::cas::put::Body;
use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{validate_key, Blob};
use crate::store::lock::GcLock;

/// Keys read per step of a listing.
pub(super) const PAGE: usize = 512;

/// One entry of a directory in the key tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeEntry {
    /// A live key whose name has no further `/`, with its heads (see [`Cas::newest_heads`]
    /// for their sizes and times, read only when a listing needs them).
    Key {
        /// Name within the directory.
        name: String,
        /// The key's current heads.
        heads: Vec<Hash>,
    },
    /// A name under which live keys exist (`a` for keys `a/b`, `a/c/d`).
    Dir(String),
}

impl TreeEntry {
    /// The entry's name within its directory.
    pub fn name(&self) -> &str {
        // A
        match self {
            TreeEntry::Key { name, .. } | TreeEntry::Dir(name) => name,
        }
    }
}

impl Cas {
    /// The parents a new version of `key` takes by default: its single live head, none for
    /// a new or deleted key, [`Error::MultipleHeads`] when it has several.
    pub(crate) fn live_parents_in(
        &self,
        txn: &crate::store::RoTxn,
        key: &str,
    ) -> Result<Vec<Hash>> {
        // A
        match self.lmdb.versions.get(txn, key)? {
            Some(s) if s.deleted.is_none() && s.heads.len() > 1 => Err(Error::MultipleHeads {
                key: key.to_string(),
                heads: s.heads,
            }),
            Some(s) if s.deleted.is_none() => Ok(s.heads),
            _ => Ok(Vec::new()),
        }
    }

    /// Direct children of directory `dir` (`""` for the root, else a prefix without its
    /// trailing `/`), in key order, at most `limit`. Whole subtrees are skipped with one seek
    /// each, so a directory lists in time proportional to its entries, not to the keys below
    /// it. A key and a directory of the same name are both listed.
    pub fn children(&self, dir: &str, limit: usize) -> Result<Vec<TreeEntry>> {
        // A
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let txn = self.lmdb.read()?;
        let mut out: Vec<TreeEntry> = Vec::new();
        let mut cursor: Option<String> = None;
        while out.len() < limit {
            let page = self
                .lmdb
                .versions
                .list_from(&txn, &prefix, cursor.as_deref(), PAGE)?;
            let full = page.len() == PAGE;
            let mut subtree: Option<String> = None;
            let last = page.last().map(|(k, _)| k.clone());
            for (key, state) in page {
                if subtree
                    .as_ref()
                    .is_some_and(|s| key.starts_with(s.as_str()))
                {
                    continue;
                }
                let rest = &key[prefix.len()..];
                match rest.split_once('/') {
                    Some((name, _)) => {
                        out.push(TreeEntry::Dir(name.to_string()));
                        subtree = Some(format!("{prefix}{name}/"));
                    }
                    None => out.push(TreeEntry::Key {
                        name: rest.to_string(),
                        heads: state.heads,
                    }),
                }
            }
            let Some(last) = last else { break };
            if !full {
                break;
            }
            cursor = Some(match subtree.filter(|s| last.starts_with(s.as_str())) {
                // Inside a subtree: one seek past all of it ('0' is the byte after '/').
                Some(s) => format!("{}0", &s[..s.len() - 1]),
                // Right after the last key: keys never contain NUL.
                None => format!("{last}\u{0}"),
            });
        }
        out.truncate(limit);
        Ok(out)
    }

    /// For each set of heads, the newest one's `(hash, size, creation time)`, all read in one
    /// transaction.
    pub fn newest_heads(&self, sets: &[&[Hash]]) -> Result<Vec<Option<(Hash, u64, i64)>>> {
        // A
        let txn = self.lmdb.read()?;
        sets.iter()
            .map(|heads| {
                Ok(self
                    .newest_head(&txn, heads)?
                    .map(|(h, b)| (h, b.size, b.created)))
            })
            .collect()
    }

    /// The newest head of a live key and its record; `None` when the key is missing or
    /// deleted.
    pub fn newest_head_of(&self, key: &str) -> Result<Option<(Hash, Blob)>> {
        // A
        let txn = self.lmdb.read()?;
        match self.lmdb.versions.get(&txn, key)? {
            Some(s) if s.deleted.is_none() => self.newest_head(&txn, &s.heads),
            _ => Ok(None),
        }
    }

    /// True when `key` is live (has a head and no tombstone): reads no version record.
    pub fn is_key(&self, key: &str) -> Result<bool> {
        // A
        let txn = self.lmdb.read()?;
        Ok(matches!(
            self.lmdb.versions.get(&txn, key)?,
            Some(s) if s.deleted.is_none() && !s.heads.is_empty()
        ))
    }

    /// True when live keys exist under `dir/`.
    pub fn is_dir(&self, dir: &str) -> Result<bool> {
        // A
        let txn = self.lmdb.read()?;
        let prefix = format!("{dir}/");
        Ok(!self
            .lmdb
            .versions
            .list_from(&txn, &prefix, None, 1)?
            .is_empty())
    }

    /// The record of a version by its full hash.
    pub fn blob(&self, hash: &Hash) -> Result<Blob> {
        // A
        let txn = self.lmdb.read()?;
        self.lmdb
            .blobs
            .get(&txn, hash)?
            .ok_or_else(|| Error::NotFound(format!("version {hash}")))
    }

    /// Every version of `key` ever written and still recorded (removed ones included), oldest
    /// first: `(hash, creation time)`.
    pub fn versions_of(&self, key: &str) -> Result<Vec<(Hash, i64)>> {
        // A
        let txn = self.lmdb.read()?;
        Ok(self
            .lmdb
            .key_to_hash
            .versions(&txn, key)?
            .into_iter()
            .map(|v| (v.hash, v.created))
            .collect())
    }

    /// Stores the content of version `from` as a new version of `key` (a child of its
    /// single head, if any), sharing every chunk: a rename costs no content I/O.
    pub fn copy_version(&self, from: &Hash, key: &str) -> Result<Hash> {
        // PA
        validate_key(key)?;
        let _lock = GcLock::acquire(self.path(), false, &|| {})?;
        let mut txn = self.lmdb.write()?;
        let blob = self
            .lmdb
            .blobs
            .get(&txn, from)?
            .ok_or_else(|| Error::NotFound(format!("version {from}")))?;
        if self.lmdb.removed.get(&txn, from)?.is_some() {
            return Err(Error::NotFound(format!("version {from} was removed")));
        }
        let parents = self.live_parents_in(&txn, key)?;
        if self.uses_condemned(&txn, &blob.chunks)? {
            // A chunk of it was condemned by gc on a cluster node: copy the content instead.
            drop(txn);
            drop(_lock);
            return self.put_copy(&blob.key, *from, key, parents);
        }
        let hash = self.commit_version_in(
            &mut txn,
            key,
            parents,
            Body {
                chunks: &blob.chunks,
                size: blob.size,
                created: now_nanos(),
                meta: blob.meta.clone(),
            },
        )?;
        self.lmdb.commit(txn)?;
        Ok(hash)
    }
}

// The mount's file metadata (chmod, chown, touch): kept apart from the functions above.
impl Cas {
    /// For each set of heads, the newest one's hash and record, all read in one transaction:
    /// a listing of the mount needs each key's file metadata, not only its size.
    pub fn newest_head_records(&self, sets: &[&[Hash]]) -> Result<Vec<Option<(Hash, Blob)>>> {
        // A
        let txn = self.lmdb.read()?;
        sets.iter()
            .map(|heads| self.newest_head(&txn, heads))
            .collect()
    }

    /// Stores a child of `key`'s single head with the same chunks and file metadata `meta`:
    /// chmod, chown and touch in the mount cost no content I/O.
    pub fn set_meta(&self, key: &str, meta: crate::model::FileMeta) -> Result<Hash> {
        // PA
        validate_key(key)?;
        let lock = GcLock::acquire(self.path(), false, &|| {})?;
        let mut txn = self.lmdb.write()?;
        let head = match self.lmdb.versions.get(&txn, key)? {
            Some(s) if s.deleted.is_none() && s.heads.len() == 1 => s.heads[0],
            Some(s) if s.deleted.is_none() && s.heads.len() > 1 => {
                return Err(Error::MultipleHeads {
                    key: key.to_string(),
                    heads: s.heads,
                })
            }
            _ => return Err(Error::NotFound(format!("key {key:?}"))),
        };
        let blob = self
            .lmdb
            .blobs
            .get(&txn, &head)?
            .ok_or_else(|| Error::NotFound(format!("version {head}")))?;
        if self.uses_condemned(&txn, &blob.chunks)? {
            // As in copy_version: the content goes through the put pipeline once (sealed
            // anew), then the metadata is set on that copy.
            drop(txn);
            drop(lock);
            self.put_copy(key, head, key, vec![head])?;
            return self.set_meta(key, meta);
        }
        let hash = self.commit_version_in(
            &mut txn,
            key,
            vec![head],
            Body {
                chunks: &blob.chunks,
                size: blob.size,
                created: now_nanos(),
                meta: crate::model::VersionMeta::File(meta),
            },
        )?;
        self.lmdb.commit(txn)?;
        Ok(hash)
    }
}
