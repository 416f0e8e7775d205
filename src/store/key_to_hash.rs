//! KeyToHashIndex: every version of a key, in creation-time order, for `log`, hash prefixes,
//! `KEY@time` and `rm KEY`. Rows name a version by its blob log sequence (8 bytes) rather
//! than its hash (32): the index is a third smaller, and so is what each put rewrites.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::blob_store::BlobStore;
use crate::store::{Db, RoTxn, RwTxn};

/// The `key_to_hash` database: `[key][0x00][created, sign-flipped u64 BE][sequence u64 BE]`
/// -> empty, over the blob records it names.
pub struct KeyToHash {
    /// The rows.
    pub(crate) rows: Db,
    /// The blob records, which give each row's hash.
    pub(crate) blobs: BlobStore,
}

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

/// The row of version `seq` of `key`, created at `created`.
pub(crate) fn row(key: &str, created: i64, seq: u64) -> Vec<u8> {
    // A
    let mut r = prefix(key);
    r.extend_from_slice(&((created as u64) ^ (1 << 63)).to_be_bytes());
    r.extend_from_slice(&seq.to_be_bytes());
    r
}

/// Bytes of a row after the key and its NUL.
pub(crate) const ROW_TAIL: usize = 16;

/// The creation time and sequence of a row whose key is `key_len` bytes long.
pub(crate) fn parse(key_len: usize, row: &[u8]) -> Result<(i64, u64)> {
    // A
    let tail = row
        .get(key_len + 1..)
        .filter(|t| t.len() == ROW_TAIL)
        .ok_or_else(|| Error::malformed("key_to_hash", "bad row length"))?;
    let mut t = [0u8; 8];
    t.copy_from_slice(&tail[..8]);
    let mut q = [0u8; 8];
    q.copy_from_slice(&tail[8..]);
    Ok((
        (u64::from_be_bytes(t) ^ (1 << 63)) as i64,
        u64::from_be_bytes(q),
    ))
}

impl KeyToHash {
    /// Records version `seq` of a key.
    pub fn put(&self, txn: &mut RwTxn, key: &str, created: i64, seq: u64) -> Result<()> {
        // PA
        Ok(self.rows.put(txn, &row(key, created, seq), &[])?)
    }

    /// Forgets version `seq` of a key.
    pub fn delete(&self, txn: &mut RwTxn, key: &str, created: i64, seq: u64) -> Result<()> {
        // PA
        self.rows.delete(txn, &row(key, created, seq))?;
        Ok(())
    }

    /// Every version of a key, oldest first. A row naming no log row is damage (gc deletes
    /// both in one transaction) that `verify` reports and `verify --repair` removes: it is
    /// left out here, so the key's other versions can still be listed and removed.
    pub fn versions(&self, txn: &RoTxn, key: &str) -> Result<Vec<VersionEntry>> {
        // A
        let p = prefix(key);
        let mut out = Vec::new();
        for item in self.rows.prefix_iter(txn, &p)? {
            let (k, _) = item?;
            let (created, seq) = parse(key.len(), k)?;
            match self.blobs.hash_at(txn, seq) {
                Ok(Some(hash)) => out.push(VersionEntry { created, hash }),
                Ok(None) => tracing::warn!(key, seq, "a listed version has no record"),
                Err(e) => tracing::warn!(key, seq, error = %e, "a listed version is damaged"),
            }
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
        for item in self.rows.range(txn, &range)? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rows_round_trip_and_keep_a_keys_versions_in_time_order(
            key in "[a-z/.]{1,40}",
            a in any::<i64>(),
            b in any::<i64>(),
            sa in any::<u64>(),
            sb in any::<u64>(),
        ) {
            let r = row(&key, a, sa);
            prop_assert_eq!(parse(key.len(), &r).unwrap(), (a, sa));
            prop_assert_eq!(r.len(), key.len() + 1 + ROW_TAIL);
            if a < b {
                prop_assert!(r < row(&key, b, sb));
            }
            prop_assert!(parse(key.len(), &r[..r.len() - 1]).is_err());
        }
    }

    #[test]
    fn a_row_is_pinned() {
        assert_eq!(
            row("a/b", -1, 0x0102),
            b"a/b\0\x7f\xff\xff\xff\xff\xff\xff\xff\0\0\0\0\0\0\x01\x02".to_vec()
        );
    }
}
