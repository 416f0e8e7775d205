//! Finding snapshots: listing them, and resolving `PREFIX[@REF]` to one.

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::snapshot::{prefix_of_snapshot_key, snapshot_key, SNAPSHOT_KEY_PREFIX};
use crate::model::{Blob, Ref, Selector, SnapshotInfo};

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
    pub fn resolve_snapshot(&self, reference: &str) -> Result<(Hash, Blob)> {
        // A
        let r = Ref::parse(reference)?;
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
            _ => self.resolve_in(
                &txn,
                reference,
                &Ref {
                    key: key.clone(),
                    selector: r.selector,
                },
            )?,
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
