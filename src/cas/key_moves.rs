//! The mount's renames of directories and keys and its RENAME_EXCHANGE: whole operations
//! in one write transaction, each version a copy of its head's record under the new name.

use crate::cas::browse::PAGE;
use crate::cas::put::Body;
use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{validate_key, Blob};
use crate::store::lock::GcLock;

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
mod tests {
    use crate::cas::test_store::{get, store};
    use crate::cas::PutOptions;

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
}
