//! rm: a whole key (tombstone) or one version. Removal only marks; gc reclaims space later.
//! Every removal is logged in the DeletionWAL in the same transaction.

use std::collections::HashSet;

use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{Ref, Selector, ToRef};
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
    /// True when some descendant of `v` (through removed versions too) is not removed.
    pub(crate) fn has_live_descendant(&self, txn: &crate::store::RoTxn, v: Hash) -> Result<bool> {
        // A
        let mut stack = vec![v];
        let mut seen = HashSet::new();
        while let Some(x) = stack.pop() {
            for c in self.lmdb.parent_child.children(txn, &x)? {
                if !seen.insert(c) {
                    continue;
                }
                if self.lmdb.removed.get(txn, &c)?.is_none() {
                    return Ok(true);
                }
                stack.push(c);
            }
        }
        Ok(false)
    }

    /// The nearest live versions of `key` at or above `start` that no live version
    /// descends from, walking up through removed versions and through versions with no
    /// record, whose parents `lost_parents` gives (what `rm KEY@V` leaves as heads, and
    /// what `verify --repair` gives a key whose head is lost). A damaged record ends the
    /// walk there when `skip_damaged`, else fails it.
    pub(crate) fn nearest_live(
        &self,
        txn: &crate::store::RoTxn,
        key: &str,
        mut stack: Vec<Hash>,
        skip_damaged: bool,
        lost_parents: &dyn Fn(&Hash) -> Vec<Hash>,
    ) -> Result<Vec<Hash>> {
        // A
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        while let Some(p) = stack.pop() {
            if !seen.insert(p) {
                continue;
            }
            let blob = match self.lmdb.blobs.get(txn, &p) {
                Ok(b) => b,
                Err(_) if skip_damaged => continue,
                Err(e) => return Err(e),
            };
            match blob {
                None => stack.extend(lost_parents(&p)),
                Some(b) if b.key != key => {}
                Some(b) if self.lmdb.removed.get(txn, &p)?.is_some() => stack.extend(b.parents),
                Some(_) => {
                    if !out.contains(&p) && !self.has_live_descendant(txn, p)? {
                        out.push(p);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Marks one version removed and, when it was a head, makes its nearest live ancestors
    /// heads again (the key is deleted when none is left).
    pub(crate) fn remove_version_in(
        &self,
        txn: &mut crate::store::RwTxn,
        key: &str,
        hash: Hash,
        blob: &crate::model::Blob,
        state: &mut KeyState,
        now: i64,
    ) -> Result<()> {
        // PA
        self.lmdb.removed.put(
            txn,
            &hash,
            &Removal {
                time: now,
                whole_key: false,
                released: false,
            },
        )?;
        if state.heads.contains(&hash) {
            state.heads.retain(|h| *h != hash);
            // The new heads are the nearest live ancestors with no live descendant: walk up
            // through versions that are themselves removed.
            for p in self.nearest_live(txn, key, blob.parents.clone(), false, &|_| Vec::new())? {
                if !state.heads.contains(&p) {
                    state.heads.push(p);
                }
            }
            if state.heads.is_empty() {
                state.deleted = Some(now);
            }
            self.lmdb.versions.put(txn, key, state)?;
        }
        Ok(())
    }

    /// Removes a key (`KEY`: every version, `get` then reports it deleted) or one version
    /// (`KEY@...`: its parents become heads again if nothing else descends from them).
    pub fn remove(&self, reference: &(impl ToRef + ?Sized)) -> Result<RemoveOutcome> {
        // PA
        let r = reference.to_ref()?;
        match self.remove_once(r.clone()) {
            // Another program filled the disk: the reserve makes room for this commit.
            Err(Error::NoSpace(_)) if crate::store::reserve::release(self.path()) => {
                self.remove_once(r)
            }
            r => r,
        }
    }

    fn remove_once(&self, r: Ref) -> Result<RemoveOutcome> {
        // PA
        let now = now_nanos();
        let mut txn = self.lmdb.write()?;
        let state = self.lmdb.versions.get(&txn, &r.key)?;
        let Some(mut state) = state else {
            return Err(Error::NotFound(format!("no key {:?}", r.key)));
        };
        if r.selector == Selector::Head {
            let versions = self.lmdb.key_to_hash.versions(&txn, &r.key)?;
            let mut any_live = false;
            for v in &versions {
                any_live |= self.lmdb.removed.get(&txn, &v.hash)?.is_none();
            }
            if !any_live {
                return Err(match state.deleted {
                    Some(_) => Error::KeyDeleted { key: r.key },
                    None => Error::NotFound(format!("key {:?} has no versions left", r.key)),
                });
            }
            let mut removed = Vec::new();
            for v in versions {
                let prior = self.lmdb.removed.get(&txn, &v.hash)?;
                if prior.is_none() {
                    removed.push(v.hash);
                }
                // A version removed earlier keeps its removal time, so `KEY@time` between
                // the two removals still sees it gone.
                let mark = Removal {
                    time: prior.map_or(now, |p| p.time),
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
        let hash = self.resolve_in(&txn, &r)?;
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
        self.remove_version_in(&mut txn, &r.key, hash, &blob, &mut state, now)?;
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
