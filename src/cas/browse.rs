//! Browsing the key space as a tree of directories (the mount's view): direct children of a
//! key prefix, every version of a key, a version's record by hash, and copying a version to
//! another key without reading its content.

use crate::cas::put::Body;
use crate::cas::{now_nanos, Cas};
use crate::cas::{PutOptions, PutOutcome};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{validate_key, Blob};
use crate::store::lock::GcLock;

/// Keys read per step of a listing.
const PAGE: usize = 512;

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

// The mount's renames of directories, RENAME_EXCHANGE and sparse files: whole operations in
// one write transaction, kept apart from the functions above.
impl Cas {
    /// Moves every live key under `from/` to the same name under `to/` in one transaction:
    /// each gets a version under its new name with the same chunks and metadata (a child of
    /// the target's head, if any), and the old key is removed as `rm KEY` does. Nothing
    /// changes when a key has several heads ([`Error::MultipleHeads`]) or uses a sealing gc
    /// condemned on a cluster node ([`Error::Retry`]); a caller can then copy key by key.
    /// Returns `(old key, new key, new version)` per key moved.
    pub fn rename_prefix(&self, from: &str, to: &str) -> Result<Vec<(String, String, Hash)>> {
        // PA
        let (src, dst) = (format!("{from}/"), format!("{to}/"));
        if from.is_empty() || to.is_empty() || src.starts_with(&dst) || dst.starts_with(&src) {
            return Err(Error::InvalidArgument(format!(
                "cannot move {from:?} to {to:?}: one contains the other"
            )));
        }
        let _lock = GcLock::acquire(self.path(), false, &|| {})?;
        let mut txn = self.lmdb.write()?;
        let mut keys = Vec::new();
        loop {
            let after = keys.last().map(|(k, _): &(String, _)| k.clone());
            let page = self
                .lmdb
                .versions
                .list(&txn, &src, after.as_deref(), PAGE)?;
            let full = page.len() == PAGE;
            keys.extend(page);
            if !full {
                break;
            }
        }
        let now = now_nanos();
        let mut moved = Vec::with_capacity(keys.len());
        for (key, state) in keys {
            let (_, blob) = self.only_head(&txn, &key, &state.heads)?;
            let target = format!("{dst}{}", &key[src.len()..]);
            validate_key(&target)?;
            let hash = self.copy_in(&mut txn, &blob, &target, now)?;
            self.remove_key_in(&mut txn, &key, now)?;
            moved.push((key, target, hash));
        }
        self.lmdb.commit(txn)?;
        Ok(moved)
    }

    /// Swaps keys `a` and `b` in one transaction: each gets a version (a child of its own
    /// head) with the other's chunks and metadata. Returns the new versions of `a` and `b`.
    pub fn exchange_keys(&self, a: &str, b: &str) -> Result<(Hash, Hash)> {
        // PA
        let _lock = GcLock::acquire(self.path(), false, &|| {})?;
        let mut txn = self.lmdb.write()?;
        let blob_of = |key: &str| -> Result<Blob> {
            match self.lmdb.versions.get(&txn, key)? {
                Some(s) if s.deleted.is_none() => Ok(self.only_head(&txn, key, &s.heads)?.1),
                _ => Err(Error::NotFound(format!("key {key:?}"))),
            }
        };
        let (blob_a, blob_b) = (blob_of(a)?, blob_of(b)?);
        let now = now_nanos();
        let new_a = self.copy_in(&mut txn, &blob_b, a, now)?;
        let new_b = self.copy_in(&mut txn, &blob_a, b, now)?;
        self.lmdb.commit(txn)?;
        Ok((new_a, new_b))
    }

    /// The single head of `key` and its record, refused when it is not safe to share its
    /// chunks in a new version.
    fn only_head(
        &self,
        txn: &crate::store::RoTxn,
        key: &str,
        heads: &[Hash],
    ) -> Result<(Hash, Blob)> {
        // A
        if heads.len() > 1 {
            return Err(Error::MultipleHeads {
                key: key.to_string(),
                heads: heads.to_vec(),
            });
        }
        let (hash, blob) = self
            .newest_head(txn, heads)?
            .ok_or_else(|| Error::NotFound(format!("key {key:?}")))?;
        if self.uses_condemned(txn, &blob.chunks)? {
            return Err(Error::Retry(format!(
                "{key:?} uses a chunk gc condemned on a cluster node: copy it instead"
            )));
        }
        Ok((hash, blob))
    }

    /// Commits `blob`'s content and metadata as a new version of `key`, a child of its
    /// live head (if any).
    fn copy_in(
        &self,
        txn: &mut crate::store::RwTxn,
        blob: &Blob,
        key: &str,
        now: i64,
    ) -> Result<Hash> {
        // PA
        let parents = self.live_parents_in(txn, key)?;
        let body = Body {
            chunks: &blob.chunks,
            size: blob.size,
            created: now,
            meta: blob.meta.clone(),
        };
        self.commit_version_in(txn, key, parents, body)
    }

    /// `rm KEY` inside `txn`: every version marked removed, the tombstone set, the deletion
    /// logged (as `Cas::remove` does in a transaction of its own).
    fn remove_key_in(&self, txn: &mut crate::store::RwTxn, key: &str, now: i64) -> Result<()> {
        // PA
        use crate::store::deletion_wal::{Deletion, WalEntry};
        use crate::store::removed::Removal;
        for v in self.lmdb.key_to_hash.versions(txn, key)? {
            let prior = self.lmdb.removed.get(txn, &v.hash)?;
            let mark = Removal {
                time: prior.map_or(now, |p| p.time),
                whole_key: true,
                released: prior.is_some_and(|p| p.released),
            };
            self.lmdb.removed.put(txn, &v.hash, &mark)?;
        }
        let state = crate::store::version_index::KeyState {
            heads: Vec::new(),
            deleted: Some(now),
        };
        self.lmdb.versions.put(txn, key, &state)?;
        let entry = WalEntry {
            time: now,
            deletion: Deletion::Key {
                key: key.to_string(),
            },
        };
        self.lmdb.deletion_wal.log_deletion(txn, &entry)?;
        Ok(())
    }
}

/// Holes smaller than this in all are read as data: the sparse path seals on one thread,
/// the put pipeline on every core.
const SPARSE_MIN_HOLES: u64 = 64 << 20;
/// Sealed bytes the sparse path holds before writing them in a transaction of their own.
const SPARSE_BATCH: usize = 8 << 20;

impl Cas {
    /// Stores `file` as a new version of `key` as [`Cas::put`] does, reading it with `pread`
    /// (its position is left alone), but only its data where it is sparse: every aligned
    /// block of `chunking.max` bytes inside a hole becomes a reference to one chunk of zeros,
    /// so a 1 TiB file holding one byte is stored in about a second instead of hashing 1 TiB
    /// of zeros. Files with under 64 MiB of such blocks go through [`Cas::put`].
    pub fn put_file(
        &self,
        key: &str,
        file: &std::fs::File,
        opts: &PutOptions,
    ) -> Result<PutOutcome> {
        // PA
        let size = file
            .metadata()
            .map_err(|e| Error::io("reading the size of a file to store", e))?
            .len();
        let block = u64::from(self.config.chunking.max);
        let holes = hole_blocks(file, size, block);
        if holes.iter().map(|(_, n)| n * block).sum::<u64>() < SPARSE_MIN_HOLES {
            return self.put(key, Region::new(file, 0, size), opts);
        }
        validate_key(key)?;
        if let Some(p) = &opts.parents {
            self.check_parents(key, p)?;
        }
        let _lock = GcLock::acquire(self.path(), false, &|| {})?;
        let mut s = SparsePut::new(self, file)?;
        let mut pos = 0;
        for (first, n) in holes {
            s.data(pos, first * block)?;
            s.zeros(n)?;
            pos = (first + n) * block;
        }
        s.data(pos, size)?;
        s.commit(key, opts)
    }
}

/// The blocks of `file` (`block` bytes each, aligned) that lie wholly in holes, as runs of
/// `(first block, count)`; none where the filesystem cannot tell (no SEEK_HOLE). The last,
/// partial block is never one.
fn hole_blocks(file: &std::fs::File, size: u64, block: u64) -> Vec<(u64, u64)> {
    // A
    use rustix::fs::{seek, SeekFrom};
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < size {
        let Ok(hole) = seek(file, SeekFrom::Hole(pos)) else {
            break;
        };
        if hole >= size {
            break;
        }
        let data = match seek(file, SeekFrom::Data(hole)) {
            Ok(d) => d.min(size),
            // No data after the hole: it runs to the end.
            Err(rustix::io::Errno::NXIO) => size,
            Err(_) => break,
        };
        let first = hole.div_ceil(block);
        let end = (data / block).min(size / block);
        if end > first {
            out.push((first, end - first));
        }
        pos = data.max(hole + 1);
    }
    out
}

/// Bytes `pos..end` of a file, read with `pread`.
struct Region<'f> {
    file: &'f std::fs::File,
    pos: u64,
    end: u64,
}

impl<'f> Region<'f> {
    fn new(file: &'f std::fs::File, pos: u64, end: u64) -> Self {
        // A
        Region { file, pos, end }
    }
}

impl std::io::Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A
        use std::os::unix::fs::FileExt;
        let want = (self.end.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A sparse file being stored: its chunk list so far and the new chunks sealed but not yet
/// written.
struct SparsePut<'c> {
    cas: &'c Cas,
    file: &'c std::fs::File,
    keys: &'c crate::crypto::StoreKeys,
    chunks: Vec<crate::model::ChunkRef>,
    sealed: Vec<crate::seal::SealedChunk>,
    /// Chunks sealed by this put (written or not): sealed once.
    seen: std::collections::HashSet<Hash>,
    /// The id of a block of zeros, once known.
    zero: Option<Hash>,
    pending_bytes: usize,
    new_chunks: usize,
    stored_bytes: u64,
}

impl<'c> SparsePut<'c> {
    fn new(cas: &'c Cas, file: &'c std::fs::File) -> Result<Self> {
        // A
        Ok(SparsePut {
            cas,
            file,
            keys: cas.current_keys()?,
            chunks: Vec::new(),
            sealed: Vec::new(),
            seen: Default::default(),
            zero: None,
            pending_bytes: 0,
            new_chunks: 0,
            stored_bytes: 0,
        })
    }

    /// Chunks bytes `start..end` of the file as `put` does.
    fn data(&mut self, start: u64, end: u64) -> Result<()> {
        // A
        if end <= start {
            return Ok(());
        }
        let (chunking, seed) = (self.cas.config.chunking, self.keys.cdc_seed);
        let reader = Box::new(Region::new(self.file, start, end));
        crate::chunk::for_each_chunk(reader, Some(end - start), chunking, seed, |data| {
            let id = self.keys.chunk_id(&data);
            self.need(id, &data)?;
            self.chunks.push(crate::model::ChunkRef {
                id,
                size: data.len() as u32,
            });
            Ok(())
        })
    }

    /// `n` blocks of zeros: one chunk, referenced `n` times.
    fn zeros(&mut self, n: u64) -> Result<()> {
        // A
        let size = self.cas.config.chunking.max;
        let id = match self.zero {
            Some(id) => id,
            None => {
                let zero = vec![0u8; size as usize];
                let id = self.keys.chunk_id(&zero);
                self.need(id, &zero)?;
                *self.zero.insert(id)
            }
        };
        let r = crate::model::ChunkRef { id, size };
        self.chunks.extend(std::iter::repeat_n(
            r,
            usize::try_from(n).unwrap_or(usize::MAX),
        ));
        Ok(())
    }

    /// Seals chunk `id` unless the store or this put has it already; writes what is sealed
    /// every [`SPARSE_BATCH`] bytes.
    fn need(&mut self, id: Hash, data: &[u8]) -> Result<()> {
        // A
        if self.seen.contains(&id) || self.cas.dedupable(&self.cas.lmdb.read()?, &id)? {
            return Ok(());
        }
        let sealed = crate::seal::seal_chunk(self.keys, self.cas.seal_params(), id, data)?;
        self.seen.insert(id);
        self.new_chunks += 1;
        self.pending_bytes += sealed.slices.iter().map(|(_, b)| b.len()).sum::<usize>();
        self.sealed.push(sealed);
        if self.pending_bytes >= SPARSE_BATCH {
            let mut txn = self.cas.lmdb.write()?;
            self.write_sealed(&mut txn)?;
            self.cas.lmdb.commit(txn)?;
        }
        Ok(())
    }

    /// Writes the sealed chunks into `txn`, as the put pipeline's writer does.
    fn write_sealed(&mut self, txn: &mut crate::store::RwTxn) -> Result<()> {
        // PA
        let router = crate::route::DataRouter::new(&self.cas.lmdb);
        for unit in self.sealed.drain(..) {
            let sealed = crate::cas::put_sealed::Sealed {
                items: vec![0],
                unit,
            };
            self.stored_bytes += self
                .cas
                .store_sealed(txn, &router, &sealed)?
                .iter()
                .sum::<u64>();
        }
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes the last chunks and commits the version in one transaction.
    fn commit(mut self, key: &str, opts: &PutOptions) -> Result<PutOutcome> {
        // PA
        let mut txn = self.cas.lmdb.write()?;
        self.cas.check_epoch(&txn)?;
        self.write_sealed(&mut txn)?;
        let parents = match &opts.parents {
            Some(p) => p.clone(),
            None => self.cas.live_parents_in(&txn, key)?,
        };
        let size = self.chunks.iter().map(|c| u64::from(c.size)).sum();
        let body = Body {
            chunks: &self.chunks,
            size,
            created: opts.created.unwrap_or_else(now_nanos),
            meta: opts.meta.clone(),
        };
        let hash = self.cas.commit_version_in(&mut txn, key, parents, body)?;
        self.cas.lmdb.commit(txn)?;
        Ok(PutOutcome {
            hash,
            size,
            chunks: self.chunks.len(),
            new_chunks: self.new_chunks,
            stored_bytes: self.stored_bytes,
        })
    }
}

impl Cas {
    /// Moves key `from` to `to` in one transaction: a version of `to` (a child of its head,
    /// if any) with the same chunks and metadata, and `from` removed as `rm KEY` does.
    /// Refused as [`Cas::rename_prefix`] refuses; returns the new version.
    pub fn rename_key(&self, from: &str, to: &str) -> Result<Hash> {
        // PA
        validate_key(to)?;
        let _lock = GcLock::acquire(self.path(), false, &|| {})?;
        let mut txn = self.lmdb.write()?;
        let heads = match self.lmdb.versions.get(&txn, from)? {
            Some(s) if s.deleted.is_none() => s.heads,
            _ => return Err(Error::NotFound(format!("key {from:?}"))),
        };
        let (_, blob) = self.only_head(&txn, from, &heads)?;
        let now = now_nanos();
        let hash = self.copy_in(&mut txn, &blob, to, now)?;
        self.remove_key_in(&mut txn, from, now)?;
        self.lmdb.commit(txn)?;
        Ok(hash)
    }
}

#[cfg(test)]
mod mount_op_tests {
    use super::*;
    use crate::{CreateOptions, Identity};

    fn store() -> (tempfile::TempDir, Cas) {
        let dir = tempfile::tempdir().unwrap();
        let cas =
            Cas::create(dir.path(), &CreateOptions::default(), &Identity::generate()).unwrap();
        (dir, cas)
    }

    fn get(cas: &Cas, r: &str) -> Vec<u8> {
        let mut out = Vec::new();
        cas.get(r, &mut out).unwrap();
        out
    }

    #[test]
    fn a_prefix_a_key_and_an_exchange_move_in_one_step_sharing_chunks() {
        let (_d, cas) = store();
        let o = PutOptions::default();
        cas.put("A/x", &b"one"[..], &o).unwrap();
        cas.put("A/s/y", &b"two"[..], &o).unwrap();
        cas.put("Ab", &b"not below A/"[..], &o).unwrap();
        let moved = cas.rename_prefix("A", "B").unwrap();
        assert_eq!(moved.len(), 2);
        assert_eq!(get(&cas, "B/s/y"), b"two");
        assert!(!cas.is_key("A/x").unwrap() && cas.is_key("Ab").unwrap());
        assert!(cas.rename_prefix("B", "B/in").is_err(), "into itself");
        cas.rename_key("B/x", "z").unwrap();
        assert_eq!(get(&cas, "z"), b"one");
        assert!(!cas.is_key("B/x").unwrap());
        cas.exchange_keys("z", "Ab").unwrap();
        assert_eq!(
            (get(&cas, "z"), get(&cas, "Ab")),
            (b"not below A/".to_vec(), b"one".to_vec())
        );
        // The new versions descend from each key's head.
        assert_eq!(cas.log("z", 10).unwrap().len(), 2);
    }

    #[test]
    fn a_sparse_file_stores_its_holes_as_one_chunk_of_zeros() {
        use std::os::unix::fs::FileExt;
        let (d, cas) = store();
        let f = tempfile::tempfile_in(d.path()).unwrap();
        let size = 200u64 << 20;
        f.set_len(size).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"middle", 100 << 20).unwrap();
        f.write_all_at(b"tail", size - 4).unwrap();
        let out = cas.put_file("sparse", &f, &PutOptions::default()).unwrap();
        assert_eq!(out.size, size);
        assert!(out.stored_bytes < 1 << 20, "{out:?}");
        let back = get(&cas, "sparse");
        let mut want = vec![0u8; size as usize];
        want[..4].copy_from_slice(b"head");
        want[100 << 20..(100 << 20) + 6].copy_from_slice(b"middle");
        want[size as usize - 4..].copy_from_slice(b"tail");
        assert!(back == want);
        // A file without holes goes through `put`, with the same chunks.
        let g = tempfile::tempfile_in(d.path()).unwrap();
        g.write_all_at(&want[..8 << 20], 0).unwrap();
        let a = cas.put_file("dense", &g, &PutOptions::default()).unwrap();
        let b = cas
            .put("dense2", &want[..8 << 20], &PutOptions::default())
            .unwrap();
        assert_eq!(
            cas.blob(&a.hash).unwrap().chunks,
            cas.blob(&b.hash).unwrap().chunks
        );
    }
}
