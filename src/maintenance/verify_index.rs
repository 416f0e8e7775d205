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
use crate::store::key_to_hash::{parse, row, ROW_TAIL};
use crate::store::version_index::{KeyState, KEY_STATE_TAG};
use crate::store::{iter_after, Db, RoTxn};

impl Cas {
    /// Checks every KeyToHash row and every key's heads against the version records.
    pub(crate) fn verify_index(&self, report: &mut VerifyReport) -> Result<()> {
        // A
        self.each_row(&self.lmdb.key_to_hash.rows, |txn, k, _| {
            report.damage.extend(self.check_key_row(txn, k)?);
            Ok(())
        })?;
        self.each_row(&self.lmdb.versions.0, |txn, k, v| {
            report.damage.extend(self.check_heads(txn, k, v)?);
            Ok(())
        })
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

    /// A `key\0time‖sequence` row must name a version record of that key and creation time.
    fn check_key_row(&self, txn: &RoTxn, k: &[u8]) -> Result<Option<Damage>> {
        // A
        // A row is `key`, a NUL, then 8 bytes of time and 8 of sequence.
        let Some(i) = k.len().checked_sub(ROW_TAIL + 1).filter(|&i| k[i] == 0) else {
            return Ok(Some(index_damage(
                None,
                "a key index row is malformed".into(),
            )));
        };
        let key = String::from_utf8_lossy(&k[..i]).into_owned();
        let (created, seq) = parse(i, k)?;
        let hash = match self.lmdb.blobs.hash_at(txn, seq) {
            Ok(Some(h)) => h,
            Ok(None) => {
                let problem = format!("listed version {seq} has no record");
                return Ok(Some(index_damage(Some(key), problem)));
            }
            Err(e) => {
                let problem = format!("listed version {seq}: {e}");
                return Ok(Some(index_damage(Some(key), problem)));
            }
        };
        let short = hash.short();
        let problem = match self.lmdb.blobs.get(txn, &hash) {
            Ok(Some(b)) if b.key == key && b.created == created => return Ok(None),
            Ok(Some(b)) if b.key != key => {
                format!("version {short} is listed under the wrong key {key:?}")
            }
            Ok(Some(_)) => format!("version {short} is listed with the wrong time"),
            Ok(None) => format!("listed version {short} has no record"),
            Err(e) => format!("listed version {short}: {e}"),
        };
        Ok(Some(index_damage(Some(key), problem)))
    }

    /// A key's heads must be versions of that key, listed in its KeyToHash rows.
    fn check_heads(&self, txn: &RoTxn, k: &[u8], v: &[u8]) -> Result<Vec<Damage>> {
        // A
        let key = String::from_utf8_lossy(k).into_owned();
        let state: KeyState = match crate::codec::decode("key state", KEY_STATE_TAG, v) {
            Ok(s) => s,
            Err(e) => return Ok(vec![index_damage(Some(key), e.to_string())]),
        };
        let mut out = Vec::new();
        for head in &state.heads {
            let short = head.short();
            let problem = match self.lmdb.blobs.get(txn, head) {
                Ok(Some(b)) if b.key != key => format!("head {short} is a version of {:?}", b.key),
                Ok(Some(b)) => match self.lmdb.key_to_hash.rows.get(
                    txn,
                    &row(
                        &key,
                        b.created,
                        self.lmdb.blobs.seq(txn, head)?.unwrap_or(0),
                    ),
                )? {
                    Some(_) => continue,
                    None => format!("head {short} is missing from the key's history"),
                },
                Ok(None) => format!("head {short} has no record"),
                Err(e) => format!("head {short}: {e}"),
            };
            out.push(index_damage(Some(key.clone()), problem));
        }
        Ok(out)
    }
}

fn index_damage(key: Option<String>, reason: String) -> Damage {
    // A
    Damage::Index { key, reason }
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
