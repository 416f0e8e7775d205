//! The blob log: every version this store holds (written here or replicated), in the order
//! it learned them, for replication cursors. Its rows hold the versions' hashes and records
//! ([`crate::store::blob_store::BlobStore`] appends them).

use crate::error::Result;
use crate::hash::Hash;
use crate::store::blob_store::{row_hash, BlobStore};
use crate::store::sequence::seq_of;
use crate::store::RoTxn;

/// The `blob_log` database: sequence number (u64 BE) -> hash ‖ encoded Blob.
pub struct BlobLog(pub(crate) BlobStore);

impl BlobLog {
    /// Hashes of the versions logged after `after`, at most `limit`, and the sequence to
    /// resume from: the last one read, or once the log is read to its end the last number
    /// given out (versions gc dropped leave gaps, and a cursor must still get past them).
    /// A row too short to hold a hash is skipped, so damage never stalls a peer.
    pub fn since(&self, txn: &RoTxn, after: u64, limit: usize) -> Result<(Vec<(u64, Hash)>, u64)> {
        // A
        let start = after.to_be_bytes();
        let mut out = Vec::new();
        let mut read = after;
        for item in crate::store::iter_after(&self.0.log, txn, Some(&start))? {
            let (k, v) = item?;
            read = seq_of("blob log", k)?;
            match row_hash(v) {
                Ok(h) => out.push((read, h)),
                Err(e) => tracing::warn!(seq = read, error = %e, "a blob log row is damaged"),
            }
            if out.len() >= limit {
                return Ok((out, read));
            }
        }
        Ok((out, read.max(self.last(txn)?)))
    }

    /// The last sequence number given out (0 when none was).
    pub fn last(&self, txn: &RoTxn) -> Result<u64> {
        // A
        Ok(self.0.sequence().peek(txn)?.saturating_sub(1))
    }
}
