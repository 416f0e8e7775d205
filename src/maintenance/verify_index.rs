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
    /// (its number is never given out again, so such a row can only ever mislead).
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
            if let Some((damage, gone, id)) = self.check_key_row(txn, k)? {
                if gone {
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
                    Ok(Some(_)) => return Ok(()),
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
    fn each_row(
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
    /// number and of that creation time; the damage found, whether the row names no log
    /// row at all, and the key's number when the damage does not name the key yet.
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
        let problem = match self.lmdb.versions.id(txn, &blob.key) {
            Ok(Some(n)) if n == id && blob.created == created => return Ok(None),
            Ok(Some(n)) if n == id => format!("version {short} is listed with the wrong time"),
            Ok(_) => format!("version {short} is listed under key number {id}, not its key's"),
            Err(e) => format!("version {short}: its key's number: {e}"),
        };
        Ok(Some((index_damage(Some(blob.key), problem), false, None)))
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
mod damage_tests {
    use crate::maintenance::verify::Damage;
    use crate::{Cas, CreateOptions, Hash, Identity, NoProgress, PutOptions};

    fn store() -> (tempfile::TempDir, Cas) {
        let dir = tempfile::tempdir().unwrap();
        let cas =
            Cas::create(dir.path(), &CreateOptions::default(), &Identity::generate()).unwrap();
        (dir, cas)
    }

    fn put(cas: &Cas, key: &str, data: &[u8]) -> Hash {
        cas.put(key, data, &PutOptions::default()).unwrap().hash
    }

    fn put_on(cas: &Cas, key: &str, data: &[u8], parents: Vec<Hash>) -> Hash {
        let opts = PutOptions {
            parents: Some(parents),
            ..Default::default()
        };
        cas.put(key, data, &opts).unwrap().hash
    }

    fn get(cas: &Cas, r: &str) -> Vec<u8> {
        let mut out = Vec::new();
        cas.get(r, &mut out).unwrap();
        out
    }

    /// Flips a bit of version `v`'s record in its log row (its stored hash left intact);
    /// returns the row's key.
    fn flip_a_record_byte(cas: &Cas, v: &Hash) -> [u8; 8] {
        let lmdb = &cas.lmdb;
        let mut w = lmdb.write().unwrap();
        let key = lmdb.blobs.seq(&w, v).unwrap().unwrap().to_be_bytes();
        let mut row = lmdb.blobs.log.get(&w, &key).unwrap().unwrap().to_vec();
        let end = row.len() - 1;
        row[end] ^= 0x40;
        lmdb.blobs.log.put(&mut w, &key, &row).unwrap();
        lmdb.commit(w).unwrap();
        key
    }

    fn index_damage(report: &crate::VerifyReport) -> Vec<(bool, String)> {
        report
            .damage
            .iter()
            .filter_map(|d| match d {
                Damage::Index {
                    reason, repaired, ..
                } => Some((*repaired, reason.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_history_row_naming_a_lost_version_is_left_out_reported_and_removed_by_repair() {
        let (_d, cas) = store();
        let lost = put(&cas, "k", b"one");
        let kept = put(&cas, "k", b"two");
        let lmdb = &cas.lmdb;
        let mut w = lmdb.write().unwrap();
        let seq = lmdb.blobs.seq(&w, &lost).unwrap().unwrap();
        lmdb.blobs.log.delete(&mut w, &seq.to_be_bytes()).unwrap();
        lmdb.commit(w).unwrap();
        let listed: Vec<Hash> = {
            let txn = lmdb.read().unwrap();
            let v = lmdb.key_to_hash.versions(&txn, "k").unwrap();
            v.into_iter().map(|e| e.hash).collect()
        };
        assert_eq!(listed, vec![kept]);
        assert_eq!(get(&cas, "k"), b"two");
        let report = cas.verify(false, &NoProgress).unwrap();
        assert!(matches!(&index_damage(&report)[..], [(false, r)] if r.contains("has no record")));
        // The key is named, not only its number.
        let named = |d: &Damage| matches!(d, Damage::Index { key: Some(k), .. } if k == "k");
        assert!(report.damage.iter().any(named), "{:?}", report.damage);
        let report = cas.verify(true, &NoProgress).unwrap();
        assert!(matches!(&index_damage(&report)[..], [(true, _)]));
        let report = cas.verify(false, &NoProgress).unwrap();
        assert!(index_damage(&report).is_empty(), "{:?}", report.damage);
        // The key can still be removed; what is left of the lost version stays reported.
        cas.remove("k").unwrap();
        cas.gc(&NoProgress).unwrap();
        assert!(cas.get("k", &mut Vec::new()).is_err());
    }

    #[test]
    fn a_head_whose_log_row_is_lost_stops_reads_and_writes_of_its_key_and_is_reported() {
        let (_d, cas) = store();
        let head = put(&cas, "k", b"one");
        put(&cas, "other", b"two");
        let lmdb = &cas.lmdb;
        let mut w = lmdb.write().unwrap();
        let seq = lmdb.blobs.seq(&w, &head).unwrap().unwrap();
        lmdb.blobs.log.delete(&mut w, &seq.to_be_bytes()).unwrap();
        lmdb.commit(w).unwrap();
        // Neither its other heads nor a new version may quietly stand in for the lost one.
        let e = cas.get("k", &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("\"k\"") && e.contains("head"), "{e}");
        assert!(cas
            .put("k", &b"three"[..], &crate::PutOptions::default())
            .is_err());
        assert_eq!(get(&cas, "other"), b"two");
        let report = cas.verify(false, &NoProgress).unwrap();
        let reported = |d: &Damage| matches!(d, Damage::Index { key: Some(k), reason, .. } if k == "k" && reason.contains("a head"));
        assert!(report.damage.iter().any(reported), "{:?}", report.damage);
    }

    /// Repair of a key whose head lost its record: the key reads as its newest version
    /// left, takes new versions on top of it, and the store verifies clean again, the loss
    /// reported once, by the repair.
    #[test]
    fn repair_gives_a_key_whose_head_is_lost_the_version_below_it() {
        let (_d, cas) = store();
        let first = put(&cas, "k", b"one");
        let lost = put(&cas, "k", b"two");
        put(&cas, "other", b"three");
        let lmdb = &cas.lmdb;
        let mut w = lmdb.write().unwrap();
        let seq = lmdb.blobs.seq(&w, &lost).unwrap().unwrap();
        lmdb.blobs.log.delete(&mut w, &seq.to_be_bytes()).unwrap();
        lmdb.commit(w).unwrap();
        let report = cas.verify(true, &NoProgress).unwrap();
        assert!(!report.is_healthy());
        let mended = |d: &Damage| matches!(d, Damage::Index { key: Some(k), reason, repaired: true } if k == "k" && reason.contains(&first.short()));
        assert!(report.damage.iter().any(mended), "{:?}", report.damage);
        let lost_reported = |d: &Damage| matches!(d, Damage::Blob { hash, reason, .. } if *hash == lost && reason.contains("index row is removed"));
        assert!(
            report.damage.iter().any(lost_reported),
            "{:?}",
            report.damage
        );
        assert_eq!(get(&cas, "k"), b"one");
        let again = cas.verify(false, &NoProgress).unwrap();
        assert!(again.is_healthy(), "{:?}", again.damage);
        let next = put(&cas, "k", b"four");
        let heads: Vec<Hash> = cas.heads("k").unwrap().iter().map(|v| v.hash).collect();
        assert_eq!(heads, vec![next]);
        assert_eq!(get(&cas, "k"), b"four");
        assert_eq!(get(&cas, "other"), b"three");
    }

    fn lose(cas: &Cas, v: &Hash) {
        let lmdb = &cas.lmdb;
        let mut w = lmdb.write().unwrap();
        let seq = lmdb.blobs.seq(&w, v).unwrap().unwrap();
        lmdb.blobs.log.delete(&mut w, &seq.to_be_bytes()).unwrap();
        lmdb.commit(w).unwrap();
    }

    fn heads(cas: &Cas, key: &str) -> Vec<Hash> {
        let mut h: Vec<Hash> = cas.heads(key).unwrap().iter().map(|v| v.hash).collect();
        h.sort();
        h
    }

    /// A lost merge gives its key both branches back, as heads: a conflict again, not one
    /// branch quietly chosen.
    #[test]
    fn repair_of_a_lost_merge_gives_back_both_branches() {
        let (_d, cas) = store();
        let base = put(&cas, "k", b"base");
        let a = put(&cas, "k", b"a");
        let b = put_on(&cas, "k", b"b", vec![base]);
        let m = cas
            .merge("k", crate::MergeSource::Content(Box::new(&b"m"[..])))
            .unwrap();
        lose(&cas, &m);
        cas.verify(true, &NoProgress).unwrap();
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(heads(&cas, "k"), both);
        assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
    }

    /// A lost merge of a version and its own ancestor gives back only the version: the
    /// ancestor has a live descendant, so it is no head (no conflict made up).
    #[test]
    fn repair_of_a_lost_merge_takes_no_ancestor_as_a_head() {
        let (_d, cas) = store();
        let base = put(&cas, "k", b"base");
        let a = put(&cas, "k", b"a");
        let m = put_on(&cas, "k", b"m", vec![a, base]);
        lose(&cas, &m);
        cas.verify(true, &NoProgress).unwrap();
        assert_eq!(heads(&cas, "k"), vec![a]);
        assert_eq!(get(&cas, "k"), b"a");
    }

    /// A lost head beside another head: the key gets the heads `rm KEY@V` would leave, the
    /// other head and the lost head's parent (nothing live descends from it any more).
    #[test]
    fn repair_of_a_lost_head_beside_another_gives_the_heads_rm_would() {
        let (_d, cas) = store();
        let a = put(&cas, "k", b"a");
        let b1 = put(&cas, "k", b"b1");
        let h1 = put(&cas, "k", b"h1");
        let h2 = put_on(&cas, "k", b"h2", vec![a]);
        lose(&cas, &h1);
        cas.verify(true, &NoProgress).unwrap();
        let mut want = vec![b1, h2];
        want.sort();
        assert_eq!(heads(&cas, "k"), want);
        assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
    }

    /// A version lost in the middle of a history, then the head: the key reads as the version
    /// below the lost head, and the oldest one (whose child was lost first) stays no head.
    #[test]
    fn repair_after_a_middle_version_was_lost_takes_no_old_version_as_a_head() {
        let (_d, cas) = store();
        put(&cas, "k", b"one");
        let two = put(&cas, "k", b"two");
        let three = put(&cas, "k", b"three");
        let four = put(&cas, "k", b"four");
        lose(&cas, &two);
        cas.verify(true, &NoProgress).unwrap();
        lose(&cas, &four);
        cas.verify(true, &NoProgress).unwrap();
        assert_eq!(heads(&cas, "k"), vec![three]);
        assert_eq!(get(&cas, "k"), b"three");
        assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
    }

    /// Repair never makes a removed version a head: a key written again after `rm` whose
    /// only new version is lost has no live version left, and takes new ones.
    #[test]
    fn repair_never_brings_back_a_removed_version() {
        let (_d, cas) = store();
        put(&cas, "k", b"secret");
        cas.remove("k").unwrap();
        let again = put(&cas, "k", b"again");
        lose(&cas, &again);
        let report = cas.verify(true, &NoProgress).unwrap();
        assert!(report.damage.iter().any(|d| matches!(d, Damage::Index { reason, repaired: true, .. } if reason.contains("no live version"))), "{:?}", report.damage);
        assert!(heads(&cas, "k").is_empty());
        assert!(cas.get("k", &mut Vec::new()).is_err());
        cas.gc(&NoProgress).unwrap();
        assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
        put(&cas, "k", b"new");
        assert_eq!(get(&cas, "k"), b"new");
    }

    #[test]
    fn a_damaged_version_record_is_still_listed_and_removable() {
        let (_d, cas) = store();
        let bad = put(&cas, "k", b"one");
        put(&cas, "k", b"two");
        let lmdb = &cas.lmdb;
        flip_a_record_byte(&cas, &bad);
        let txn = lmdb.read().unwrap();
        assert_eq!(lmdb.key_to_hash.versions(&txn, "k").unwrap()[0].hash, bad);
        drop(txn);
        let report = cas.verify(false, &NoProgress).unwrap();
        assert!(report
            .damage
            .iter()
            .any(|d| matches!(d, Damage::Blob { hash, .. } if *hash == bad)));
        cas.remove("k").unwrap();
    }

    #[test]
    fn a_lost_last_record_never_lends_its_number_to_a_new_one() {
        let (_d, cas) = store();
        put(&cas, "a", b"first content");
        let lmdb = &cas.lmdb;
        let mut w = lmdb.write().unwrap();
        let (chunk_key, blob_key) = {
            let c = lmdb.chunks.records.last(&w).unwrap().unwrap().0.to_vec();
            let b = lmdb.blobs.log.last(&w).unwrap().unwrap().0.to_vec();
            (c, b)
        };
        lmdb.chunks.records.delete(&mut w, &chunk_key).unwrap();
        lmdb.blobs.log.delete(&mut w, &blob_key).unwrap();
        lmdb.commit(w).unwrap();
        let b = put(&cas, "b", b"second, other content");
        let txn = lmdb.read().unwrap();
        let seq = lmdb.blobs.seq(&txn, &b).unwrap().unwrap();
        assert!(
            seq.to_be_bytes()[..] > blob_key[..],
            "blob log number reused"
        );
        let last = lmdb.chunks.records.last(&txn).unwrap().unwrap().0.to_vec();
        assert!(last > chunk_key, "chunk record number reused");
        drop(txn);
        // gc and repair around the lost rows never take the new records with them ("a" has
        // no version left to remove: its only record is the one lost).
        assert!(cas.remove("a").is_err());
        cas.gc(&NoProgress).unwrap();
        cas.verify(true, &NoProgress).unwrap();
        assert_eq!(get(&cas, "b"), b"second, other content");
    }

    #[test]
    fn a_lost_pack_record_is_reported_not_fatal() {
        let (_d, cas) = store();
        put(&cas, "m", b"a small file in a pack");
        let lmdb = &cas.lmdb;
        let mut w = lmdb.write().unwrap();
        let pack = {
            let mut pack = None;
            lmdb.chunks
                .walk(&w, None, None, |id, r| {
                    if crate::model::ChunkRecord::decode(r?)?.is_pack() {
                        pack = Some(id);
                    }
                    Ok(true)
                })
                .unwrap();
            pack.unwrap()
        };
        let entry = lmdb.chunks.refs.get(&w, &pack.0).unwrap().unwrap().to_vec();
        lmdb.chunks.records.delete(&mut w, &entry[..8]).unwrap();
        lmdb.commit(w).unwrap();
        let report = cas.verify(false, &NoProgress).unwrap();
        assert!(!report.is_healthy());
        assert!(cas.get("m", &mut Vec::new()).is_err());
    }

    #[test]
    fn a_damaged_version_is_left_out_of_what_peers_pull_and_a_short_row_is_reported() {
        let (_d, cas) = store();
        put(&cas, "a", b"one");
        let bad = put(&cas, "k", b"two");
        put(&cas, "k", b"three");
        let lmdb = &cas.lmdb;
        let key = flip_a_record_byte(&cas, &bad);
        let (pulled, _) = cas.versions_since(0, 100).unwrap();
        assert_eq!(pulled.len(), 2, "the damaged version alone is left out");
        // A row too short to hold a hash: reported, never fatal to verify.
        let mut w = lmdb.write().unwrap();
        lmdb.blobs.log.put(&mut w, &key, &[1, 2, 3, 4, 5]).unwrap();
        lmdb.commit(w).unwrap();
        let report = cas.verify(false, &NoProgress).unwrap();
        assert!(!report.is_healthy());
        assert!(!index_damage(&report).is_empty(), "{:?}", report.damage);
    }
}
