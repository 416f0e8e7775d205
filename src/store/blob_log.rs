//! The blob log: every version this store learned of (written here or replicated from a
//! peer), in commit order. Cluster nodes pull each other's log from a cursor, so metadata
//! reaches every node without a consensus log.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// The `blob_log` database: sequence number (u64 BE) -> blob hash (32 bytes).
pub struct BlobLog(pub(crate) Db);

impl BlobLog {
    /// Appends a version inside the transaction that stores it; returns its sequence.
    pub fn append(&self, txn: &mut RwTxn, hash: &Hash) -> Result<u64> {
        // A
        let next = match self.0.last(txn)? {
            Some((k, _)) => seq(k)? + 1,
            None => 1,
        };
        self.0
            .put_with_flags(txn, heed::PutFlags::APPEND, &next.to_be_bytes(), &hash.0)?;
        Ok(next)
    }

    /// Entries with sequence > `after`, at most `limit`.
    pub fn since(&self, txn: &RoTxn, after: u64, limit: usize) -> Result<Vec<(u64, Hash)>> {
        // A
        let start = after.to_be_bytes();
        let mut out = Vec::new();
        for item in crate::store::iter_after(&self.0, txn, Some(&start))? {
            let (k, v) = item?;
            let h: [u8; 32] = v
                .try_into()
                .map_err(|_| Error::malformed("blob log", "entry is not 32 bytes"))?;
            out.push((seq(k)?, Hash(h)));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The last sequence number (0 when empty).
    pub fn last(&self, txn: &RoTxn) -> Result<u64> {
        // A
        match self.0.last(txn)? {
            Some((k, _)) => seq(k),
            None => Ok(0),
        }
    }
}

fn seq(key: &[u8]) -> Result<u64> {
    // A
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::malformed("blob log", "key is not 8 bytes"))
}
