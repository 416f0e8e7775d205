//! Finding snapshots: listing them, and resolving `PREFIX[@REF]` to one.

use std::collections::HashSet;

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::snapshot::{prefix_of_snapshot_key, snapshot_key, SNAPSHOT_KEY_PREFIX};
use crate::model::{Blob, Ref, Selector, SnapshotInfo, ToRef};

/// One snapshot as `ouro snapshots` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotListing {
    /// The snapshot version.
    pub hash: Hash,
    /// The key prefix it was backed up under.
    pub prefix: String,
    /// When the run started (ns since the epoch).
    pub time: i64,
    /// Its parent snapshots.
    pub parents: Vec<Hash>,
    /// What it holds.
    pub info: SnapshotInfo,
}

impl SnapshotListing {
    /// [`SnapshotListing::time`] as a [`std::time::SystemTime`].
    pub fn time_at(&self) -> std::time::SystemTime {
        // A
        crate::model::nanos::to_system_time(self.time)
    }
}

impl Cas {
    /// The live snapshots of `prefix` (of every prefix when empty), oldest first.
    pub fn snapshots(&self, prefix: &str) -> Result<Vec<SnapshotListing>> {
        // A
        let prefix = prefix.trim_end_matches('/');
        let keys = match prefix {
            "" => self.snapshot_keys()?,
            p => vec![snapshot_key(p)],
        };
        let txn = self.lmdb.read()?;
        let mut out = Vec::new();
        for key in keys {
            let Some(p) = prefix_of_snapshot_key(&key) else {
                continue;
            };
            for v in self.lmdb.key_to_hash.versions(&txn, &key)? {
                if self.lmdb.removed.get(&txn, &v.hash)?.is_some() {
                    continue;
                }
                let Some(blob) = self.lmdb.blobs.get(&txn, &v.hash)? else {
                    continue;
                };
                let Some(info) = blob.meta.snapshot() else {
                    continue;
                };
                out.push(SnapshotListing {
                    hash: v.hash,
                    prefix: p.to_string(),
                    time: blob.created,
                    parents: blob.parents.clone(),
                    info: info.clone(),
                });
            }
        }
        out.sort_by(|a, b| (a.time, &a.prefix, a.hash).cmp(&(b.time, &b.prefix, b.hash)));
        Ok(out)
    }

    /// Every snapshot key in the store.
    fn snapshot_keys(&self) -> Result<Vec<String>> {
        // A
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.keys_ever(SNAPSHOT_KEY_PREFIX, after.as_deref(), 1000)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            keys.extend(page);
            after = Some(last);
        }
        Ok(keys)
    }

    /// Resolves `PREFIX[@REF]` to a snapshot: `@~N`, `@HASH-PREFIX`, `@TIME` as for keys;
    /// no REF = the newest snapshot of the prefix.
    pub fn resolve_snapshot(&self, reference: &(impl ToRef + ?Sized)) -> Result<(Hash, Blob)> {
        // A
        let r = reference.to_ref()?;
        let key = snapshot_key(r.key.trim_end_matches('/'));
        let txn = self.lmdb.read()?;
        let hash = match r.selector {
            Selector::Head => {
                let state = self
                    .lmdb
                    .versions
                    .get(&txn, &key)?
                    .filter(|s| s.deleted.is_none());
                let heads = state.map(|s| s.heads).unwrap_or_default();
                self.newest_head(&txn, &heads)?
                    .map(|(h, _)| h)
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "no snapshot of {:?} (back it up with put -r)",
                            r.key
                        ))
                    })?
            }
            _ => self
                .resolve_in(
                    &txn,
                    &Ref {
                        key: key.clone(),
                        selector: r.selector,
                    },
                )
                .map_err(|e| match e {
                    // The reserved key is ours, not the user's: name the prefix instead.
                    Error::NotFound(m) => Error::NotFound(m.replace(
                        &format!("{key:?}"),
                        &format!("the snapshots of {:?}", r.key),
                    )),
                    e => e,
                })?,
        };
        if self.lmdb.removed.get(&txn, &hash)?.is_some() {
            return Err(Error::NotFound(format!(
                "snapshot {} of {:?} was forgotten",
                hash.short(),
                r.key
            )));
        }
        let blob = self
            .lmdb
            .blobs
            .get(&txn, &hash)?
            .filter(|b| b.meta.snapshot().is_some())
            .ok_or_else(|| Error::NotFound(format!("snapshot {} of {:?}", hash.short(), r.key)))?;
        Ok((hash, blob))
    }
}

impl Cas {
    /// Every file version that a live snapshot (of any prefix) lists, each distinct
    /// directory read once: what gc must keep readable whatever happened to the keys.
    pub fn versions_in_live_snapshots(&self) -> Result<HashSet<Hash>> {
        // PA
        let mut versions = HashSet::new();
        let mut trees = HashSet::new();
        for s in self.snapshots("")? {
            if s.info.root_tree().is_some() {
                self.file_versions(&self.blob(&s.hash)?, &[], &mut trees, &mut versions)?;
            }
        }
        Ok(versions)
    }
}

/// What gc must not release because a live snapshot may list it.
pub(crate) enum SnapshotGuard {
    /// Exactly these versions (read from the snapshots' trees: the store was unlocked).
    Versions(HashSet<Hash>),
    /// Without the keys the trees cannot be read: every version of a key under a prefix
    /// that has snapshots is kept (a leak until a gc with the identity, never a loss).
    Under(Vec<String>),
}

impl SnapshotGuard {
    /// True when the removed version `hash` of `key` must stay readable.
    pub(crate) fn keeps(&self, hash: &Hash, key: Option<&str>) -> bool {
        // PA
        match self {
            SnapshotGuard::Versions(v) => v.contains(hash),
            SnapshotGuard::Under(prefixes) => key.is_none_or(|k| {
                prefixes.iter().any(|p| {
                    k.strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                })
            }),
        }
    }
}

impl Cas {
    /// The guard gc's release step uses (see [`SnapshotGuard`]).
    pub(crate) fn snapshot_guard(&self) -> Result<SnapshotGuard> {
        // PA
        if self.is_unlocked() {
            return Ok(SnapshotGuard::Versions(self.versions_in_live_snapshots()?));
        }
        let txn = self.lmdb.read()?;
        let mut prefixes = Vec::new();
        for key in self.snapshot_keys()? {
            let live = self
                .lmdb
                .versions
                .get(&txn, &key)?
                .is_some_and(|s| s.deleted.is_none() && !s.heads.is_empty());
            if let (true, Some(p)) = (live, prefix_of_snapshot_key(&key)) {
                prefixes.push(p.to_string());
            }
        }
        Ok(SnapshotGuard::Under(prefixes))
    }
}
