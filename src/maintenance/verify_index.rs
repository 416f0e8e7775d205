//! verify, second half: the indexes that name versions (KeyToHash rows and each key's
//! heads) must agree with the version records they point at. Blob records are hash-checked,
//! index rows are not: a damaged LMDB page could rename a key or drop a version from `log`
//! without any hash noticing, so each row is checked against the record it names.

use crate::cas::Cas;
use crate::error::Result;
use crate::maintenance::verify::{Damage, VerifyReport};
use crate::maintenance::PAGE;
use crate::store::key_to_hash::row;
use crate::store::{iter_after, version_index::KEY_STATE_TAG};

impl Cas {
    /// Checks every KeyToHash row and every key's heads against the version records.
    pub(crate) fn verify_index(&self, report: &mut VerifyReport) -> Result<()> {
        // A
        self.verify_key_rows(report)?;
        self.verify_heads(report)
    }

    /// Each `key\0time\hash` row names a version record of that key and creation time.
    fn verify_key_rows(&self, report: &mut VerifyReport) -> Result<()> {
        // A
        let mut after: Option<Vec<u8>> = None;
        loop {
            let txn = self.lmdb.read()?;
            let mut n = 0;
            for item in iter_after(&self.lmdb.key_to_hash.0, &txn, after.as_deref())?.take(PAGE) {
                let (k, _) = item?;
                n += 1;
                after = Some(k.to_vec());
                // A row is `key`, a NUL, then 8 bytes of time and 32 of hash.
                let split = k.len().checked_sub(41).filter(|&i| k[i] == 0);
                let Some(i) = split else {
                    report
                        .damage
                        .push(index_damage(None, "a key index row is malformed"));
                    continue;
                };
                let key = String::from_utf8_lossy(&k[..i]).into_owned();
                let entry = crate::store::key_to_hash::parse(i, k)?;
                let problem = match self.lmdb.blobs.get(&txn, &entry.hash) {
                    Ok(Some(b)) if b.key == key && b.created == entry.created => continue,
                    Ok(Some(b)) if b.key != key => {
                        format!(
                            "version {} is listed under the wrong key {key:?}",
                            entry.hash.short()
                        )
                    }
                    Ok(Some(_)) => format!(
                        "version {} is listed with the wrong time",
                        entry.hash.short()
                    ),
                    Ok(None) => format!("listed version {} has no record", entry.hash.short()),
                    Err(e) => format!("listed version {}: {e}", entry.hash.short()),
                };
                report.damage.push(index_damage(Some(key), &problem));
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// Each key's heads are versions of that key, listed in its KeyToHash rows.
    fn verify_heads(&self, report: &mut VerifyReport) -> Result<()> {
        // A
        let mut after: Option<Vec<u8>> = None;
        loop {
            let txn = self.lmdb.read()?;
            let mut n = 0;
            for item in iter_after(&self.lmdb.versions.0, &txn, after.as_deref())?.take(PAGE) {
                let (k, v) = item?;
                n += 1;
                after = Some(k.to_vec());
                let key = String::from_utf8_lossy(k).into_owned();
                let state: crate::store::version_index::KeyState =
                    match crate::codec::decode("key state", KEY_STATE_TAG, v) {
                        Ok(s) => s,
                        Err(e) => {
                            report.damage.push(index_damage(Some(key), &e.to_string()));
                            continue;
                        }
                    };
                for head in &state.heads {
                    let problem = match self.lmdb.blobs.get(&txn, head) {
                        Ok(Some(b)) if b.key != key => {
                            format!("head {} is a version of {:?}", head.short(), b.key)
                        }
                        Ok(Some(b)) => {
                            match self
                                .lmdb
                                .key_to_hash
                                .0
                                .get(&txn, &row(&key, b.created, head))?
                            {
                                Some(_) => continue,
                                None => format!(
                                    "head {} is missing from the key's history",
                                    head.short()
                                ),
                            }
                        }
                        Ok(None) => format!("head {} has no record", head.short()),
                        Err(e) => format!("head {}: {e}", head.short()),
                    };
                    report
                        .damage
                        .push(index_damage(Some(key.clone()), &problem));
                }
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }
}

fn index_damage(key: Option<String>, reason: &str) -> Damage {
    // A
    Damage::Index {
        key,
        reason: reason.to_string(),
    }
}
