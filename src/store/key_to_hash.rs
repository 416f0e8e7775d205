//! KeyToHashIndex: every version of a key, in creation-time order, for `log`, hash prefixes,
//! `KEY@time` and `rm KEY`. Rows name the key by its number (`VersionIndex`) and the version
//! by its blob log sequence: 24 bytes a version instead of its path and hash, so the index,
//! and what each put rewrites of it, stays small.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::blob_store::BlobStore;
use crate::store::version_index::VersionIndex;
use crate::store::{Db, RoTxn, RwTxn};

/// The `key_to_hash` database: `[key number u64 BE][created, sign-flipped u64 BE]
/// [sequence u64 BE]` -> empty, over the blob records it names.
pub struct KeyToHash {
    /// The rows.
    pub(crate) rows: Db,
    /// The keys' numbers.
    pub(crate) keys: VersionIndex,
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

/// Bytes of a row.
pub(crate) const ROW_LEN: usize = 24;

/// The row of version `seq` of the key numbered `id`, created at `created`.
pub(crate) fn row(id: u64, created: i64, seq: u64) -> [u8; ROW_LEN] {
    // A
    let mut r = [0u8; ROW_LEN];
    r[..8].copy_from_slice(&id.to_be_bytes());
    r[8..16].copy_from_slice(&((created as u64) ^ (1 << 63)).to_be_bytes());
    r[16..].copy_from_slice(&seq.to_be_bytes());
    r
}

/// The key number, creation time and sequence of a row.
pub(crate) fn parse(row: &[u8]) -> Result<(u64, i64, u64)> {
    // A
    let r: &[u8; ROW_LEN] = row
        .try_into()
        .map_err(|_| Error::malformed("key_to_hash", "bad row length"))?;
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&r[i..i + 8]);
        u64::from_be_bytes(w)
    };
    Ok((word(0), (word(8) ^ (1 << 63)) as i64, word(16)))
}

impl KeyToHash {
    /// Records version `seq` of a key (numbering the key if it is new).
    pub fn put(&self, txn: &mut RwTxn, key: &str, created: i64, seq: u64) -> Result<()> {
        // PA
        let id = self.keys.id_or_new(txn, key)?;
        self.put_numbered(txn, id, created, seq)
    }

    /// Records version `seq` of the key numbered `id`.
    pub(crate) fn put_numbered(
        &self,
        txn: &mut RwTxn,
        id: u64,
        created: i64,
        seq: u64,
    ) -> Result<()> {
        // PA
        Ok(self.rows.put(txn, &row(id, created, seq), &[])?)
    }

    /// Whether version `seq` of a key, created at `created`, has its row.
    pub(crate) fn has(&self, txn: &RoTxn, key: &str, created: i64, seq: u64) -> Result<bool> {
        // A
        // A key whose number is damaged has no row anyone can find: verify reports it.
        Ok(match self.keys.id(txn, key) {
            Ok(Some(id)) => self.rows.get(txn, &row(id, created, seq))?.is_some(),
            Ok(None) | Err(Error::Malformed { .. }) => false,
            Err(e) => return Err(e),
        })
    }

    /// Forgets version `seq` of a key.
    pub fn delete(&self, txn: &mut RwTxn, key: &str, created: i64, seq: u64) -> Result<()> {
        // PA
        if let Some(id) = self.keys.id(txn, key)? {
            self.rows.delete(txn, &row(id, created, seq))?;
        }
        Ok(())
    }

    /// Every version of a key, oldest first. A row naming no log row is damage (gc deletes
    /// both in one transaction) that `verify` reports and `verify --repair` removes: it is
    /// left out here, so the key's other versions can still be listed and removed.
    pub fn versions(&self, txn: &RoTxn, key: &str) -> Result<Vec<VersionEntry>> {
        // A
        let Some(id) = self.keys.id(txn, key)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.rows.prefix_iter(txn, &id.to_be_bytes())? {
            let (k, _) = item?;
            let (_, created, seq) = parse(k)?;
            match self.blobs.hash_at(txn, seq) {
                Ok(Some(hash)) => out.push(VersionEntry { created, hash }),
                Ok(None) => tracing::warn!(key, seq, "a listed version has no record"),
                Err(e) => tracing::warn!(key, seq, error = %e, "a listed version is damaged"),
            }
        }
        Ok(out)
    }

    /// Whether the key numbered `id` has any row.
    fn has_rows(&self, txn: &RoTxn, id: u64) -> Result<bool> {
        // A
        Ok(self
            .rows
            .prefix_iter(txn, &id.to_be_bytes())?
            .next()
            .is_some())
    }

    /// Distinct keys ever written (deleted ones included) that still have a version,
    /// starting with `prefix`, after `after`, at most `limit`: lets `get -r --at` find keys
    /// that were live at a time.
    pub fn keys(
        &self,
        txn: &RoTxn,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        // A
        let range = crate::store::version_index::keys_after(prefix, after);
        let mut out = Vec::new();
        for item in self.keys.rows.range(txn, &range)? {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) || out.len() >= limit {
                break;
            }
            let (id, _) = crate::store::version_index::split(v)?;
            if self.has_rows(txn, id)? {
                out.push(String::from_utf8_lossy(k).into_owned());
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
            id in any::<u64>(),
            a in any::<i64>(),
            b in any::<i64>(),
            sa in any::<u64>(),
            sb in any::<u64>(),
        ) {
            let r = row(id, a, sa);
            prop_assert_eq!(parse(&r).unwrap(), (id, a, sa));
            if a < b {
                prop_assert!(r < row(id, b, sb));
            }
            if id < u64::MAX {
                prop_assert!(r < row(id + 1, i64::MIN, 0));
            }
            prop_assert!(parse(&r[..ROW_LEN - 1]).is_err());
        }
    }

    #[test]
    fn a_row_is_pinned() {
        assert_eq!(
            row(3, -1, 0x0102).to_vec(),
            b"\0\0\0\0\0\0\0\x03\x7f\xff\xff\xff\xff\xff\xff\xff\0\0\0\0\0\0\x01\x02".to_vec()
        );
    }
}
