//! KeyToHashIndex: every version of a key, in creation-time order, for `log`, hash prefixes,
//! `KEY@time` and `rm KEY`.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// The `key_to_hash` database: `[key][0x00][created, sign-flipped u64 BE][hash]` -> empty.
pub struct KeyToHash(pub(crate) Db);

/// One version of a key as the index lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionEntry {
    /// Creation time (ns).
    pub created: i64,
    /// Blob hash.
    pub hash: Hash,
}

fn prefix(key: &str) -> Vec<u8> {
    // A
    let mut p = Vec::with_capacity(key.len() + 1);
    p.extend_from_slice(key.as_bytes());
    p.push(0);
    p
}

pub(crate) fn row(key: &str, created: i64, hash: &Hash) -> Vec<u8> {
    // A
    let mut r = prefix(key);
    r.extend_from_slice(&((created as u64) ^ (1 << 63)).to_be_bytes());
    r.extend_from_slice(&hash.0);
    r
}

pub(crate) fn parse(key_len: usize, row: &[u8]) -> Result<VersionEntry> {
    // A
    let tail = row
        .get(key_len + 1..)
        .filter(|t| t.len() == 40)
        .ok_or_else(|| Error::malformed("key_to_hash", "bad row length"))?;
    let mut t = [0u8; 8];
    t.copy_from_slice(&tail[..8]);
    let mut h = [0u8; 32];
    h.copy_from_slice(&tail[8..]);
    Ok(VersionEntry {
        created: (u64::from_be_bytes(t) ^ (1 << 63)) as i64,
        hash: Hash(h),
    })
}

impl KeyToHash {
    /// Records a version of a key.
    pub fn put(&self, txn: &mut RwTxn, key: &str, created: i64, hash: &Hash) -> Result<()> {
        // PA
        Ok(self.0.put(txn, &row(key, created, hash), &[])?)
    }

    /// Forgets a version of a key.
    pub fn delete(&self, txn: &mut RwTxn, key: &str, created: i64, hash: &Hash) -> Result<()> {
        // PA
        self.0.delete(txn, &row(key, created, hash))?;
        Ok(())
    }

    /// Every version of a key, oldest first.
    pub fn versions(&self, txn: &RoTxn, key: &str) -> Result<Vec<VersionEntry>> {
        // A
        let p = prefix(key);
        let mut out = Vec::new();
        for item in self.0.prefix_iter(txn, &p)? {
            let (k, _) = item?;
            out.push(parse(key.len(), k)?);
        }
        Ok(out)
    }
}

impl KeyToHash {
    /// Distinct keys ever written (deleted ones included) starting with `prefix`, after
    /// `after`, at most `limit`: lets `get -r --at` find keys that were live at a time.
    pub fn keys(
        &self,
        txn: &RoTxn,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        // A
        let mut out: Vec<String> = Vec::new();
        // Rows of a key sort right after `key\0`, so start past every row of `after`.
        let start = match after {
            Some(a) => {
                let mut s = a.as_bytes().to_vec();
                s.push(1);
                s
            }
            None => prefix.as_bytes().to_vec(),
        };
        let range = if start.is_empty() {
            (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        } else {
            (
                std::ops::Bound::Included(&start[..]),
                std::ops::Bound::Unbounded,
            )
        };
        for item in self.0.range(txn, &range)? {
            let (k, _) = item?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            let Some(end) = k.iter().position(|b| *b == 0) else {
                return Err(Error::malformed("key_to_hash", "row without separator"));
            };
            let key = String::from_utf8_lossy(&k[..end]);
            if out.last().map(String::as_str) != Some(&key) {
                if out.len() >= limit {
                    break;
                }
                out.push(key.into_owned());
            }
        }
        Ok(out)
    }
}
