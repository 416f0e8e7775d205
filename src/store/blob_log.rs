//! The blob log: every version this store learned of (written here or replicated), in
//! commit order, for replication cursors. Its rows hold the records themselves
//! ([`crate::store::blob_store::BlobStore`] appends them).

use crate::error::Result;
use crate::hash::Hash;
use crate::store::blob_store::seq_of;
use crate::store::{Db, RoTxn};

/// The `blob_log` database: sequence number (u64 BE) -> encoded Blob.
pub struct BlobLog(pub(crate) Db);

impl BlobLog {
    /// Hashes of the versions logged after `after`, at most `limit`, and the last sequence
    /// read (deleted versions are skipped but still move it forwards).
    pub fn since(&self, txn: &RoTxn, after: u64, limit: usize) -> Result<(Vec<(u64, Hash)>, u64)> {
        // A
        let start = after.to_be_bytes();
        let mut out = Vec::new();
        let mut read = after;
        for item in crate::store::iter_after(&self.0, txn, Some(&start))? {
            let (k, v) = item?;
            read = seq_of("blob log", k)?;
            if !v.is_empty() {
                out.push((read, Hash::of(v)));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok((out, read))
    }

    /// The last sequence number (0 when empty).
    pub fn last(&self, txn: &RoTxn) -> Result<u64> {
        // A
        match self.0.last(txn)? {
            Some((k, _)) => seq_of("blob log", k),
            None => Ok(0),
        }
    }
}
