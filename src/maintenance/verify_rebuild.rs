//! verify --repair, rows rebuilt from intact records: a version's hash index row (`blobs`)
//! from its `blob_log` row, and its history row (`key_to_hash`) from its record. Only for a
//! version known to stand: a head of its key or an ancestor of one, or one its removal mark
//! still covers. A row lost beside a removal would otherwise bring back content the user
//! removed (`rm KEY` and gc find a key's versions through these very rows), so a version
//! with no such proof stays reported.

use std::collections::HashSet;

use crate::cas::Cas;
use crate::error::Result;
use crate::hash::Hash;
use crate::maintenance::verify::{Damage, VerifyReport};
use crate::model::Blob;
use crate::store::removed::Removal;
use crate::store::{RoTxn, RwTxn};

/// Whether a version whose index row is lost may get it back.
enum Standing {
    /// A head of its key or an ancestor of one, or removed and not yet released: its row
    /// comes back as it was.
    Stands,
    /// Written before its key was removed (at this time) and not marked: its row comes back
    /// with the whole-key removal mark `rm KEY` would have given it, so gc frees it.
    Removed(i64),
    /// Nothing shows it stands: left as reported.
    Unknown,
}

impl Cas {
    /// Before the versions are checked, with `repair`: every intact `blob_log` record whose
    /// `blobs` row is lost gets it back when it stands, so this run checks its chunks and
    /// heads; each is reported, repaired.
    pub(super) fn reindex_log(&self, report: &mut VerifyReport) -> Result<()> {
        // PA
        let mut unindexed: Vec<u64> = Vec::new();
        self.each_row(&self.lmdb.blobs.log, |txn, k, _| {
            let seq = k.try_into().map(u64::from_be_bytes).ok();
            if let Some(seq) = seq {
                let hash = self.lmdb.blobs.hash_at(txn, seq).ok().flatten();
                if hash.is_some_and(|h| matches!(self.lmdb.blobs.seq(txn, &h), Ok(None))) {
                    unindexed.push(seq);
                }
            }
            Ok(())
        })?;
        if unindexed.is_empty() {
            return Ok(());
        }
        let mut w = self.lmdb.write()?;
        // A version's standing is found through its descendants' records, which may have
        // lost their rows too: newest first, and again while a pass brings one back.
        unindexed.reverse();
        loop {
            let before = unindexed.len();
            let mut left = Vec::new();
            for seq in unindexed {
                if !self.reindex_one(&mut w, report, seq)? {
                    left.push(seq);
                }
            }
            unindexed = left;
            if unindexed.is_empty() || unindexed.len() == before {
                break;
            }
        }
        self.lmdb.commit(w)
    }

    /// Gives the version logged at `seq` its hash index row back if it stands, reporting it;
    /// false when it does not (yet).
    fn reindex_one(&self, w: &mut RwTxn, report: &mut VerifyReport, seq: u64) -> Result<bool> {
        // PA
        let Some((hash, blob)) = self.lmdb.blobs.logged(w, seq) else {
            return Ok(false);
        };
        let standing = self.standing(w, &hash, &blob);
        let how = match standing {
            Standing::Unknown => return Ok(false),
            Standing::Stands => "its hash index row is rebuilt from the log",
            Standing::Removed(_) => {
                "its hash index row is rebuilt from the log, removed with its key"
            }
        };
        if !self.lmdb.blobs.reindex(w, seq)? {
            return Ok(false);
        }
        self.mark_removed(w, &hash, standing)?;
        report.damage.push(Damage::Index {
            key: Some(blob.key.clone()),
            reason: format!("{}@{}: {how}", blob.key, hash.short()),
            repaired: true,
        });
        Ok(true)
    }

    /// Repair of readable versions missing from their key's history (a lost `key_to_hash`
    /// row): each row that stands is rebuilt from the version's record, which names its key,
    /// creation time and log sequence, and the damage at the report's index is marked
    /// repaired. A version whose key lost its number too stays reported: a new number would
    /// split the key's history in two.
    pub(crate) fn relist(
        &self,
        report: &mut VerifyReport,
        unlisted: &[(Hash, usize)],
    ) -> Result<()> {
        // PA
        if unlisted.is_empty() {
            return Ok(());
        }
        let mut w = self.lmdb.write()?;
        for (hash, i) in unlisted {
            let (Some(seq), Ok(Some(blob))) = (
                self.lmdb.blobs.seq(&w, hash)?,
                self.lmdb.blobs.get(&w, hash),
            ) else {
                continue;
            };
            let Ok(Some(id)) = self.lmdb.versions.id(&w, &blob.key) else {
                continue;
            };
            let standing = self.standing(&w, hash, &blob);
            let how = match standing {
                Standing::Unknown => continue,
                Standing::Stands => "its row is rebuilt from the record",
                Standing::Removed(_) => "its row is rebuilt from the record, removed with its key",
            };
            if !self
                .lmdb
                .key_to_hash
                .has(&w, &blob.key, blob.created, seq)?
            {
                self.lmdb
                    .key_to_hash
                    .put_numbered(&mut w, id, blob.created, seq)?;
            }
            self.mark_removed(&mut w, hash, standing)?;
            super::verify_index::mark_repaired(report, *i, how);
        }
        self.lmdb.commit(w)
    }

    /// Whether version `hash` (its record `blob`) may get a lost index row back.
    fn standing(&self, txn: &RoTxn, hash: &Hash, blob: &Blob) -> Standing {
        // A
        match self.lmdb.removed.get(txn, hash) {
            Ok(Some(r)) if !r.released => return Standing::Stands,
            Ok(None) => {}
            // Released (gc dropped its references) or unreadable: not brought back.
            _ => return Standing::Unknown,
        }
        let Ok(Some(state)) = self.lmdb.versions.get(txn, &blob.key) else {
            return Standing::Unknown;
        };
        if let Some(t) = state.deleted.filter(|t| blob.created <= *t) {
            return Standing::Removed(t);
        }
        if self.under_a_head(txn, hash, &blob.key, &state.heads) {
            Standing::Stands
        } else {
            Standing::Unknown
        }
    }

    /// Gives a version written before its key was removed the mark `rm KEY` gave the rest.
    fn mark_removed(&self, w: &mut RwTxn, hash: &Hash, standing: Standing) -> Result<()> {
        // PA
        if let Standing::Removed(time) = standing {
            let mark = Removal {
                time,
                whole_key: true,
                released: false,
            };
            self.lmdb.removed.put(w, hash, &mark)?;
        }
        Ok(())
    }

    /// True when `target` is one of `heads` or an ancestor of one among `key`'s versions.
    fn under_a_head(&self, txn: &RoTxn, target: &Hash, key: &str, heads: &[Hash]) -> bool {
        // A
        let mut seen = HashSet::new();
        let mut todo = heads.to_vec();
        while let Some(h) = todo.pop() {
            if h == *target {
                return true;
            }
            if !seen.insert(h) {
                continue;
            }
            if let Ok(Some(b)) = self.lmdb.blobs.get(txn, &h) {
                if b.key == key {
                    todo.extend(b.parents);
                }
            }
        }
        false
    }
}
