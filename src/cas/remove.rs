//! rm: a whole key (tombstone) or one version. Removal only marks; gc reclaims space later.
//! Every removal is logged in the DeletionWAL in the same transaction.

use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{Ref, Selector};
use crate::store::deletion_wal::{Deletion, WalEntry};
use crate::store::removed::Removal;
use crate::store::version_index::KeyState;

/// What an rm removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveOutcome {
    /// The key.
    pub key: String,
    /// Versions newly marked removed.
    pub versions: Vec<Hash>,
    /// True when the whole key was deleted.
    pub whole_key: bool,
}

impl Cas {
    /// Removes a key (`KEY`: every version, `get` then reports it deleted) or one version
    /// (`KEY@...`: its parents become heads again if nothing else descends from them).
    pub fn remove(&self, reference: &str) -> Result<RemoveOutcome> {
        // PA
        let r = Ref::parse(reference)?;
        let now = now_nanos();
        let mut txn = self.lmdb.write()?;
        let state = self.lmdb.versions.get(&txn, &r.key)?;
        let Some(mut state) = state else {
            return Err(Error::NotFound(format!("no key {:?}", r.key)));
        };
        if r.selector == Selector::Head {
            if state.deleted.is_some() && state.heads.is_empty() {
                return Err(Error::KeyDeleted { key: r.key });
            }
            let mut removed = Vec::new();
            for v in self.lmdb.key_to_hash.versions(&txn, &r.key)? {
                let prior = self.lmdb.removed.get(&txn, &v.hash)?;
                if prior.is_none() {
                    removed.push(v.hash);
                }
                let mark = Removal {
                    time: now,
                    whole_key: true,
                    released: prior.is_some_and(|p| p.released),
                };
                self.lmdb.removed.put(&mut txn, &v.hash, &mark)?;
            }
            self.lmdb.versions.put(
                &mut txn,
                &r.key,
                &KeyState {
                    heads: Vec::new(),
                    deleted: Some(now),
                },
            )?;
            self.lmdb.deletion_wal.log_deletion(
                &mut txn,
                &WalEntry {
                    time: now,
                    deletion: Deletion::Key { key: r.key.clone() },
                },
            )?;
            self.lmdb.commit(txn)?;
            return Ok(RemoveOutcome {
                key: r.key,
                versions: removed,
                whole_key: true,
            });
        }
        let hash = self.resolve_in(&txn, reference, &r)?;
        if self.lmdb.removed.get(&txn, &hash)?.is_some() {
            return Err(Error::NotFound(format!(
                "version {} of {:?} is already removed",
                hash.short(),
                r.key
            )));
        }
        let blob = self
            .lmdb
            .blobs
            .get(&txn, &hash)?
            .ok_or_else(|| Error::NotFound(format!("version {}", hash.short())))?;
        self.lmdb.removed.put(
            &mut txn,
            &hash,
            &Removal {
                time: now,
                whole_key: false,
                released: false,
            },
        )?;
        if state.heads.contains(&hash) {
            state.heads.retain(|h| *h != hash);
            for p in &blob.parents {
                let live = self.lmdb.blobs.get(&txn, p)?.is_some()
                    && self.lmdb.removed.get(&txn, p)?.is_none();
                let mut live_children = 0;
                for c in self.lmdb.parent_child.children(&txn, p)? {
                    if self.lmdb.removed.get(&txn, &c)?.is_none() {
                        live_children += 1;
                    }
                }
                if live && live_children == 0 {
                    state.heads.push(*p);
                }
            }
            if state.heads.is_empty() {
                state.deleted = Some(now);
            }
            self.lmdb.versions.put(&mut txn, &r.key, &state)?;
        }
        self.lmdb.deletion_wal.log_deletion(
            &mut txn,
            &WalEntry {
                time: now,
                deletion: Deletion::Version {
                    key: r.key.clone(),
                    hash,
                },
            },
        )?;
        self.lmdb.commit(txn)?;
        Ok(RemoveOutcome {
            key: r.key,
            versions: vec![hash],
            whole_key: false,
        })
    }
}
