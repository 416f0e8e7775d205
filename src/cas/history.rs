//! History: log (newest first over the DAG), heads, and merges that resolve several heads.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::Read;

use crate::cas::put::Body;
use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{validate_key, Blob, BlobKind, Selector, ToRef};
use crate::store::lock::GcLock;

/// A version as `log` and `heads` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version hash.
    pub hash: Hash,
    /// Its key.
    pub key: String,
    /// Parent versions.
    pub parents: Vec<Hash>,
    /// Creation time (ns).
    pub created: i64,
    /// Content size.
    pub size: u64,
    /// First version, child or merge.
    pub kind: BlobKind,
    /// True when removed with `rm KEY@VERSION` (its content is gone or going).
    pub removed: bool,
}

impl VersionInfo {
    /// [`VersionInfo::created`] as a [`std::time::SystemTime`].
    pub fn created_at(&self) -> std::time::SystemTime {
        // A
        crate::model::nanos::to_system_time(self.created)
    }
}

/// Where a merge takes its content from.
pub enum MergeSource<'r> {
    /// The content of one existing version of the key (usually one of the heads).
    Pick(Hash),
    /// New content.
    Content(Box<dyn Read + Send + 'r>),
}

impl Cas {
    fn info(&self, txn: &crate::store::RoTxn, hash: Hash, blob: Blob) -> Result<VersionInfo> {
        // A
        Ok(VersionInfo {
            hash,
            removed: self.lmdb.removed.get(txn, &hash)?.is_some(),
            key: blob.key,
            parents: blob.parents,
            created: blob.created,
            size: blob.size,
            kind: blob.kind,
        })
    }

    /// History of a ref, newest first, at most `limit` versions. For a bare key with
    /// several heads, the history of all heads interleaved by time.
    pub fn log(&self, reference: &(impl ToRef + ?Sized), limit: usize) -> Result<Vec<VersionInfo>> {
        // A
        let r = reference.to_ref()?;
        let txn = self.lmdb.read()?;
        let starts = match (&r.selector, self.lmdb.versions.get(&txn, &r.key)?) {
            (Selector::Head, Some(s)) if s.heads.len() > 1 => s.heads,
            _ => vec![self.resolve_in(&txn, &r)?],
        };
        let mut heap = BinaryHeap::new();
        let mut frontier = HashMap::new();
        for h in starts {
            if let Some(b) = self.lmdb.blobs.get(&txn, &h)? {
                heap.push((b.created, h));
                frontier.insert(h, b);
            }
        }
        let mut seen: HashSet<Hash> = frontier.keys().copied().collect();
        let mut out = Vec::new();
        while let Some((_, h)) = heap.pop() {
            if out.len() >= limit {
                break;
            }
            let Some(b) = frontier.remove(&h) else {
                continue;
            };
            for p in &b.parents {
                if seen.insert(*p) {
                    if let Some(pb) = self.lmdb.blobs.get(&txn, p)? {
                        heap.push((pb.created, *p));
                        frontier.insert(*p, pb);
                    }
                }
            }
            out.push(self.info(&txn, h, b)?);
        }
        Ok(out)
    }

    /// The current heads of a key (several after concurrent writes; none once deleted).
    pub fn heads(&self, key: &str) -> Result<Vec<VersionInfo>> {
        // A
        validate_key(key)?;
        let txn = self.lmdb.read()?;
        let state = self
            .lmdb
            .versions
            .get(&txn, key)?
            .ok_or_else(|| Error::NotFound(format!("no key {key:?}")))?;
        let mut out = Vec::new();
        for h in state.heads {
            let b = self.lmdb.blobs.get(&txn, &h)?.ok_or_else(|| {
                Error::Corrupt(format!("head {} of {key:?} has no record", h.short()))
            })?;
            out.push(self.info(&txn, h, b)?);
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.created));
        Ok(out)
    }

    /// Information on one version by hash.
    pub fn version(&self, hash: &Hash) -> Result<VersionInfo> {
        // A
        let txn = self.lmdb.read()?;
        let b = self
            .lmdb
            .blobs
            .get(&txn, hash)?
            .ok_or_else(|| Error::NotFound(format!("version {hash}")))?;
        self.info(&txn, *hash, b)
    }

    /// Resolves several heads into one: a Merger version whose parents are all current
    /// heads and whose content comes from `source`.
    pub fn merge(&self, key: &str, source: MergeSource) -> Result<Hash> {
        // PA
        validate_key(key)?;
        self.current_keys()?;
        let nothing_to_merge =
            |n: usize| Error::InvalidArgument(format!("nothing to merge: {key:?} has {n} head(s)"));
        let _lock = GcLock::acquire(self.path(), false, &|| {})?;
        let h = match source {
            MergeSource::Pick(h) => h,
            MergeSource::Content(r) => {
                // A merge with new content is a put whose parents are all the heads.
                let parents: Vec<Hash> = self.heads(key)?.iter().map(|h| h.hash).collect();
                if parents.len() < 2 {
                    return Err(nothing_to_merge(parents.len()));
                }
                drop(_lock);
                let opts = crate::cas::PutOptions {
                    parents: Some(parents),
                    ..Default::default()
                };
                return Ok(self.put(key, r, &opts)?.hash);
            }
        };
        // Read the heads again inside the write transaction, so a put or rm that raced
        // with this merge is either merged too or refused, never silently left behind.
        let mut txn = self.lmdb.write()?;
        let state = self
            .lmdb
            .versions
            .get(&txn, key)?
            .ok_or_else(|| Error::NotFound(format!("no key {key:?}")))?;
        if state.heads.len() < 2 {
            return Err(nothing_to_merge(state.heads.len()));
        }
        let b = self
            .lmdb
            .blobs
            .get(&txn, &h)?
            .filter(|b| b.key == key)
            .ok_or_else(|| Error::NotFound(format!("version {} of {key:?}", h.short())))?;
        if self.lmdb.removed.get(&txn, &h)?.is_some() {
            return Err(Error::NotFound(format!(
                "version {} of {key:?} was removed",
                h.short()
            )));
        }
        if self.uses_condemned(&txn, &b.chunks)? {
            // gc on a cluster node condemned a chunk of it: its content goes through the
            // put pipeline, which seals that chunk again.
            drop(txn);
            drop(_lock);
            return self.put_copy(key, h, key, state.heads);
        }
        debug_assert_eq!(BlobKind::for_parents(state.heads.len()), BlobKind::Merger);
        let hash = self.commit_version_in(
            &mut txn,
            key,
            state.heads,
            Body {
                chunks: &b.chunks,
                size: b.size,
                created: now_nanos(),
                meta: b.meta.clone(),
            },
        )?;
        self.lmdb.commit(txn)?;
        Ok(hash)
    }
}

/// A live key as `ls` lists it: the newest head's size and time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// The key.
    pub key: String,
    /// Its heads (several when writes conflicted).
    pub heads: Vec<Hash>,
    /// Size of the newest head.
    pub size: u64,
    /// Creation time of the newest head (ns).
    pub created: i64,
}

impl KeyEntry {
    /// [`KeyEntry::created`] as a [`std::time::SystemTime`].
    pub fn created_at(&self) -> std::time::SystemTime {
        // A
        crate::model::nanos::to_system_time(self.created)
    }
}

impl Cas {
    /// Live keys starting with `prefix`, in key order, after `after`, at most `limit`:
    /// callers page through large stores instead of loading every key.
    pub fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<KeyEntry>> {
        // A
        let txn = self.lmdb.read()?;
        let mut out = Vec::new();
        for (key, state) in self.lmdb.versions.list(&txn, prefix, after, limit)? {
            let (size, created) = self
                .newest_head(&txn, &state.heads)?
                .map(|(_, b)| (b.size, b.created))
                .unwrap_or((0, 0));
            out.push(KeyEntry {
                key,
                heads: state.heads,
                size,
                created,
            });
        }
        Ok(out)
    }
}

impl Cas {
    /// The names of the live keys starting with `prefix`, in key order, after `after`, at
    /// most `limit`. Unlike [`Cas::list`] it reads no version record (one random lookup per
    /// key), so listing a large store's names is several times faster.
    pub fn list_names(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        // A
        let txn = self.lmdb.read()?;
        let listed = self.lmdb.versions.list(&txn, prefix, after, limit)?;
        Ok(listed.into_iter().map(|(key, _)| key).collect())
    }
}

impl Cas {
    /// The newest (by creation time) of `heads` that has a record.
    pub(crate) fn newest_head(
        &self,
        txn: &crate::store::RoTxn,
        heads: &[Hash],
    ) -> Result<Option<(Hash, Blob)>> {
        // A
        let mut newest: Option<(Hash, Blob)> = None;
        for h in heads {
            if let Some(b) = self.lmdb.blobs.get(txn, h)? {
                if newest.as_ref().is_none_or(|(_, n)| b.created > n.created) {
                    newest = Some((*h, b));
                }
            }
        }
        Ok(newest)
    }

    /// The single head of each key (`None` for a missing or deleted key, or one with several
    /// heads), in one read transaction: `put -r` checks thousands of keys this way.
    pub fn single_heads<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<Vec<Option<Hash>>> {
        // A
        let txn = self.lmdb.read()?;
        let mut out = Vec::new();
        for k in keys {
            out.push(match self.lmdb.versions.get(&txn, k)? {
                Some(s) if s.heads.len() == 1 => Some(s.heads[0]),
                _ => None,
            });
        }
        Ok(out)
    }

    /// Every key ever written under `prefix`, deleted ones included, in order, after `after`,
    /// at most `limit`.
    pub fn keys_ever(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        // A
        let txn = self.lmdb.read()?;
        self.lmdb.key_to_hash.keys(&txn, prefix, after, limit)
    }
}
