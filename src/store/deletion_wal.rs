//! DeletionWAL: an append-only log of every deletion, in commit order, that the cluster
//! propagates as tombstones so that no replica resurrects deleted data.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// Type tag of a WAL entry.
pub const WAL_TAG: u8 = b'D';

/// What was deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Deletion {
    /// `rm KEY`: the key and all its versions.
    Key {
        /// The key.
        key: String,
    },
    /// `rm KEY@VERSION`: one version.
    Version {
        /// The key.
        key: String,
        /// The version.
        hash: Hash,
    },
    /// gc freed a chunk and its slices.
    Chunk {
        /// The chunk id.
        id: Hash,
    },
}

/// One WAL entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalEntry {
    /// When (ns).
    pub time: i64,
    /// What.
    pub deletion: Deletion,
}

/// The `deletion_wal` database: sequence number (u64 BE) -> WalEntry.
pub struct DeletionWal(pub(crate) Db);

impl DeletionWal {
    /// Appends an entry inside the transaction doing the deletion; returns its sequence.
    pub fn log_deletion(&self, txn: &mut RwTxn, entry: &WalEntry) -> Result<u64> {
        // PA
        let next = match self.0.last(txn)? {
            Some((k, _)) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(k.get(..8).unwrap_or(&[0; 8]));
                u64::from_be_bytes(b) + 1
            }
            None => 1,
        };
        self.0
            .put(txn, &next.to_be_bytes(), &codec::encode(WAL_TAG, entry))?;
        Ok(next)
    }

    /// Entries with sequence > `after`, at most `limit`.
    pub fn since(&self, txn: &RoTxn, after: u64, limit: usize) -> Result<Vec<(u64, WalEntry)>> {
        // A
        let start = (after + 1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.0.range(
            txn,
            &(
                std::ops::Bound::Included(&start[..]),
                std::ops::Bound::Unbounded,
            ),
        )? {
            let (k, v) = item?;
            let mut b = [0u8; 8];
            b.copy_from_slice(k.get(..8).unwrap_or(&[0; 8]));
            out.push((
                u64::from_be_bytes(b),
                codec::decode("deletion wal", WAL_TAG, v)?,
            ));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
