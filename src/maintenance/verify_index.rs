//! verify, second half: the indexes that name versions (KeyToHash rows and each key's
//! heads) must agree with the version records they point at. Blob records are hash-checked,
//! index rows are not: a damaged LMDB page could rename a key or drop a version from `log`
//! without any hash noticing, so each row is checked against the record it names.
//! Last, with the keys, every file version a live snapshot lists must still be stored.

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::maintenance::verify::{Damage, VerifyReport};
use crate::maintenance::PAGE;
use crate::store::key_to_hash::parse;
use crate::store::version_index::{decode, KeyState, StoredHead};
use crate::store::{iter_after, Db, RoTxn, RwTxn};
use std::collections::HashMap;

impl Cas {
    /// Checks every KeyToHash and parentChild row and every key's heads against the
    /// version records. With `repair`, deletes the rows that name a version with no log row
    /// (its number is never given out again, so such a row can only ever mislead) and the
    /// parentChild rows whose child does not name that parent.
    pub(crate) fn verify_index(
        &self,
        report: &mut VerifyReport,
        repair: bool,
        gone: &HashMap<Hash, u64>,
    ) -> Result<()> {
        // PA
        let mut dangling: Vec<(Db, Vec<u8>, usize)> = Vec::new();
        let mut unnamed: Vec<(usize, u64)> = Vec::new();
        let k2h = self.lmdb.key_to_hash.rows;
        self.each_row(&k2h, |txn, k, _| {
            if let Some((damage, removable, id)) = self.check_key_row(txn, k)? {
                if removable {
                    dangling.push((k2h, k.to_vec(), report.damage.len()));
                }
                if let Some(id) = id {
                    unnamed.push((report.damage.len(), id));
                }
                report.damage.push(damage);
            }
            Ok(())
        })?;
        self.name_keys(report, &unnamed)?;
        let edges = self.lmdb.parent_child.rows;
        // The parents of versions whose log row is gone, for the repair of lost heads.
        let mut parents_of: HashMap<u64, Vec<Hash>> = HashMap::new();
        self.each_row(&edges, |txn, k, _| {
            let child = k.get(32..).and_then(|c| <[u8; 8]>::try_from(c).ok());
            let problem = match child.map(u64::from_be_bytes) {
                None => "a parent index row is malformed".to_string(),
                Some(seq) => match self.lmdb.blobs.hash_at(txn, seq) {
                    // A row must be one of the child's own parents: a forged or misplaced
                    // one would make `rm KEY@V` see a child that does not descend from V.
                    Ok(Some(child)) => match (parent(k), self.lmdb.blobs.get(txn, &child)) {
                        (Some(p), Ok(Some(b))) if !b.parents.contains(&p) => {
                            let (c, p) = (child.short(), p.short());
                            let problem =
                                format!("{c} is indexed as a child of {p}, not its parent");
                            dangling.push((edges, k.to_vec(), report.damage.len()));
                            report.damage.push(index_damage(Some(b.key), problem));
                            return Ok(());
                        }
                        _ => return Ok(()),
                    },
                    Ok(None) => {
                        parents_of.entry(seq).or_default().extend(parent(k));
                        dangling.push((edges, k.to_vec(), report.damage.len()));
                        format!("a child ({seq}) of a version is not stored")
                    }
                    Err(e) => {
                        parents_of.entry(seq).or_default().extend(parent(k));
                        format!("a child ({seq}) of a version: {e}")
                    }
                },
            };
            report.damage.push(index_damage(None, problem));
            Ok(())
        })?;
        // Keys whose heads name no record of theirs, with the report's indexes of that damage.
        let mut headless: Vec<(Vec<u8>, std::ops::Range<usize>)> = Vec::new();
        self.each_row(&self.lmdb.versions.rows, |txn, k, v| {
            let damage = self.check_heads(txn, k, v)?;
            let start = report.damage.len();
            if damage.iter().any(|(_, lost)| *lost) {
                headless.push((k.to_vec(), start..start + damage.len()));
            }
            report.damage.extend(damage.into_iter().map(|(d, _)| d));
            Ok(())
        })?;
        if !repair || (dangling.is_empty() && headless.is_empty()) {
            return Ok(());
        }
        let lost = Lost {
            parents_of,
            seq_of: gone,
        };
        let mut w = self.lmdb.write()?;
        for (db, row, i) in &dangling {
            db.delete(&mut w, row)?;
            mark_repaired(report, *i, "row removed");
        }
        for (key, at) in headless {
            let key = String::from_utf8_lossy(&key).into_owned();
            let done = self.mend_heads(&mut w, &key, &lost)?;
            for i in at {
                mark_repaired(report, i, &done);
            }
        }
        self.lmdb.commit(w)
    }

    /// Repair of a key whose heads lost their records (or name another key's version): it
    /// keeps its other heads and takes the nearest live versions of it above the lost heads
    /// that nothing live descends from, walking up through removed and lost versions as
    /// `rm KEY@V` does (a lost merge gives its branches back); with none, its newest live
    /// version. A removed version never becomes a head; a removed key stays removed.
    /// Returns what was done, for the report.
    fn mend_heads(&self, w: &mut RwTxn, key: &str, lost: &Lost) -> Result<String> {
        // PA
        let Some((_, stored)) = self
            .lmdb
            .versions
            .rows
            .get(w, key.as_bytes())?
            .map(decode)
            .transpose()?
        else {
            return Ok("the key is gone".into());
        };
        let mut heads = Vec::new();
        let mut above = Vec::new();
        for head in &stored.heads {
            let (hash, seq) = match *head {
                StoredHead::Seq(seq) => match self.lmdb.blobs.hash_at(w, seq) {
                    Ok(Some(h)) => (h, Some(seq)),
                    // Gone, or too damaged to name its version: lost.
                    _ => {
                        above.extend(lost.parents(seq));
                        continue;
                    }
                },
                StoredHead::Hash(h) => (h, lost.seq_of.get(&h).copied()),
            };
            match self.lmdb.blobs.get(w, &hash) {
                Ok(Some(b)) if b.key != key => {}
                Ok(None) => above.extend(seq.map(|s| lost.parents(s)).unwrap_or_default()),
                // A head whose record is damaged stays: it is still the key's; reads say so.
                _ => heads.push(hash),
            }
        }
        let done = if stored.deleted.is_some() {
            "the key stays removed".to_string()
        } else {
            for h in self.nearest_live(w, key, above, true, &|p| lost.parents_of_version(p))? {
                if !heads.contains(&h) {
                    heads.push(h);
                }
            }
            if heads.is_empty() {
                if let Some(h) = self.newest_live(w, key)? {
                    heads.push(h);
                }
            }
            match heads.as_slice() {
                [] => "no live version of the key is left".to_string(),
                h => {
                    let named: Vec<String> = h.iter().map(|h| h.short()).collect();
                    format!("the key's heads are now {}", named.join(" and "))
                }
            }
        };
        let state = KeyState {
            heads,
            deleted: stored.deleted,
        };
        self.lmdb.versions.put(w, key, &state)?;
        Ok(done)
    }

    /// The key's newest version that is readable and not removed.
    fn newest_live(&self, w: &RwTxn, key: &str) -> Result<Option<Hash>> {
        // A
        for v in self.lmdb.key_to_hash.versions(w, key)?.into_iter().rev() {
            let readable = matches!(self.lmdb.blobs.get(w, &v.hash), Ok(Some(b)) if b.key == key);
            if readable && self.lmdb.removed.get(w, &v.hash)?.is_none() {
                return Ok(Some(v.hash));
            }
        }
        Ok(None)
    }

    /// Calls `f` with every row of `db`, in pages of short read transactions.
    pub(super) fn each_row(
        &self,
        db: &Db,
        mut f: impl FnMut(&RoTxn, &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        // A
        let mut after: Option<Vec<u8>> = None;
        loop {
            let txn = self.lmdb.read()?;
            let mut n = 0;
            for item in iter_after(db, &txn, after.as_deref())?.take(PAGE) {
                let (k, v) = item?;
                n += 1;
                after = Some(k.to_vec());
                f(&txn, k, v)?;
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// Names the keys of the damage at `unnamed` (index in the report, key number): one pass
    /// over the keys, however many rows lost their version.
    fn name_keys(&self, report: &mut VerifyReport, unnamed: &[(usize, u64)]) -> Result<()> {
        // A
        if unnamed.is_empty() {
            return Ok(());
        }
        let ids = unnamed.iter().map(|(_, id)| *id).collect();
        let names = self.lmdb.versions.keys_of(&self.lmdb.read()?, &ids)?;
        for (i, id) in unnamed {
            if let Some(Damage::Index { key, .. }) = report.damage.get_mut(*i) {
                *key = names.get(id).cloned();
            }
        }
        Ok(())
    }

    /// A `number‖time‖sequence` row must name a version record of the key with that
    /// number and of that creation time; the damage found, whether repair removes the row
    /// (it names no log row at all, or the version also has its own row), and the key's
    /// number when the damage does not name the key yet.
    fn check_key_row(&self, txn: &RoTxn, k: &[u8]) -> Result<Option<(Damage, bool, Option<u64>)>> {
        // A
        let Ok((id, created, seq)) = parse(k) else {
            let problem = "a key index row is malformed".into();
            return Ok(Some((index_damage(None, problem), false, None)));
        };
        // The key is named later, for all such rows at once (`name_keys`).
        let unnamed =
            |problem: String, gone: bool| Ok(Some((index_damage(None, problem), gone, Some(id))));
        let hash = match self.lmdb.blobs.hash_at(txn, seq) {
            Ok(Some(h)) => h,
            Ok(None) => return unnamed(format!("listed version {seq} has no record"), true),
            Err(e) => return unnamed(format!("listed version {seq}: {e}"), false),
        };
        let short = hash.short();
        let blob = match self.lmdb.blobs.get(txn, &hash) {
            Ok(Some(b)) => b,
            Ok(None) => return unnamed(format!("listed version {short} has no record"), false),
            Err(e) => return unnamed(format!("listed version {short}: {e}"), false),
        };
        let (problem, misfiled) = match self.lmdb.versions.id(txn, &blob.key) {
            Ok(Some(n)) if n == id && blob.created == created => return Ok(None),
            Ok(Some(n)) if n == id => (
                format!("version {short} is listed with the wrong time"),
                true,
            ),
            Ok(_) => (
                format!("version {short} is listed under key number {id}, not its key's"),
                true,
            ),
            Err(e) => (format!("version {short}: its key's number: {e}"), false),
        };
        // A misfiled row can go when the version's own row is there too: kept, it would list
        // the version twice or under another key. Alone, it is the only trace of the version
        // in any history, and stays.
        let removable = misfiled
            && self
                .lmdb
                .key_to_hash
                .has(txn, &blob.key, blob.created, seq)?;
        Ok(Some((
            index_damage(Some(blob.key), problem),
            removable,
            None,
        )))
    }

    /// A key's heads must be versions of that key, listed in its KeyToHash rows. Each
    /// damage comes with whether the head is lost to the key (no record of it), which
    /// repair mends.
    fn check_heads(&self, txn: &RoTxn, k: &[u8], v: &[u8]) -> Result<Vec<(Damage, bool)>> {
        // A
        let key = String::from_utf8_lossy(k).into_owned();
        let stored = match decode(v) {
            Ok((_, s)) => s,
            Err(e) => return Ok(vec![(index_damage(Some(key), e.to_string()), false)]),
        };
        let (state, lost) = self.lmdb.versions.resolve(txn, stored);
        let mut out: Vec<(Damage, bool)> = lost
            .into_iter()
            .map(|(seq, damage)| {
                let problem = match damage {
                    None => format!("a head (blob log sequence {seq}) has no record"),
                    Some(e) => format!("a head (blob log sequence {seq}): {e}"),
                };
                (index_damage(Some(key.clone()), problem), true)
            })
            .collect();
        for head in &state.heads {
            let short = head.short();
            let (problem, lost) = match self.lmdb.blobs.get(txn, head) {
                Ok(Some(b)) if b.key != key => {
                    (format!("head {short} is a version of {:?}", b.key), true)
                }
                Ok(Some(b)) => {
                    let seq = self.lmdb.blobs.seq(txn, head)?.unwrap_or(0);
                    if self.lmdb.key_to_hash.has(txn, &key, b.created, seq)? {
                        continue;
                    }
                    (
                        format!("head {short} is missing from the key's history"),
                        false,
                    )
                }
                Ok(None) => (format!("head {short} has no record"), true),
                // A damaged record is still the key's version: reads report the damage.
                Err(e) => (format!("head {short}: {e}"), false),
            };
            out.push((index_damage(Some(key.clone()), problem), lost));
        }
        Ok(out)
    }
}

/// The parent a `parent_child` row names (its first 32 bytes).
fn parent(row: &[u8]) -> Option<Hash> {
    // A
    row.get(..32)
        .and_then(|p| <[u8; 32]>::try_from(p).ok())
        .map(Hash)
}

/// What repair knows of versions whose log row is gone: their parents (from the
/// `parent_child` rows that name them) and, by hash, their sequences.
struct Lost<'a> {
    parents_of: HashMap<u64, Vec<Hash>>,
    seq_of: &'a HashMap<Hash, u64>,
}

impl Lost<'_> {
    /// The parents of the version logged at `seq`, as far as known.
    fn parents(&self, seq: u64) -> Vec<Hash> {
        // A
        self.parents_of.get(&seq).cloned().unwrap_or_default()
    }

    /// The parents of version `hash` when its log row is gone, as far as known.
    fn parents_of_version(&self, hash: &Hash) -> Vec<Hash> {
        // A
        self.seq_of
            .get(hash)
            .map(|seq| self.parents(*seq))
            .unwrap_or_default()
    }
}

fn index_damage(key: Option<String>, reason: String) -> Damage {
    // A
    Damage::Index {
        key,
        reason,
        repaired: false,
    }
}

/// Marks the index damage at `i` in the report repaired, saying how.
fn mark_repaired(report: &mut VerifyReport, i: usize, how: &str) {
    // A
    if let Some(Damage::Index {
        repaired, reason, ..
    }) = report.damage.get_mut(i)
    {
        *repaired = true;
        reason.push_str(": ");
        reason.push_str(how);
    }
}

impl Cas {
    /// Checks that every file version a live snapshot lists is still stored (its record
    /// there, its data not freed by gc): a snapshot committed over a version gc freed would
    /// restore with a missing chunk, although every chunk left is intact. Needs the keys
    /// (the snapshots' trees are encrypted like any content).
    pub(crate) fn verify_snapshots(&self, report: &mut VerifyReport) -> Result<()> {
        // A
        let versions = match self.versions_in_live_snapshots() {
            Ok(v) => v,
            Err(e @ (Error::Corrupt(_) | Error::Malformed { .. })) => {
                report.damage.push(index_damage(
                    None,
                    format!("reading the live snapshots' trees: {e}"),
                ));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let txn = self.lmdb.read()?;
        let mut listed: Vec<Hash> = versions.into_iter().collect();
        listed.sort_unstable();
        for hash in listed {
            let blob = self.lmdb.blobs.get(&txn, &hash)?;
            let freed = self
                .lmdb
                .removed
                .get(&txn, &hash)?
                .is_some_and(|r| r.released);
            let why = match (&blob, freed) {
                (None, _) => "is listed by a live snapshot but not stored",
                (Some(_), true) => "is listed by a live snapshot but gc freed it",
                (Some(_), false) => continue,
            };
            let key = blob.map(|b| b.key);
            let name = key.as_deref().unwrap_or("version");
            report.damage.push(Damage::Blob {
                hash,
                reason: format!("{name}@{} {why}", hash.short()),
                key,
            });
        }
        Ok(())
    }
}

// Damage to the index layout of format 9 (records under sequence numbers, found through
// small indexes): lost rows are left out, reported and, where they only mislead, removed by
// repair; a lost number is never handed out again, so one index row never names two records.
#[cfg(test)]
#[path = "verify_index_tests.rs"]
mod damage_tests;
