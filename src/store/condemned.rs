//! Condemned sealings of chunks (cluster stores only). gc on a cluster node condemns the
//! sealing of a chunk no live version here uses; every node that learns of it marks it too.
//! No put deduplicates against a condemned sealing (it seals the chunk again), a live
//! sealing wins over a condemned one, and each node frees its slices of a condemned sealing
//! once every member has applied the condemnation (`cluster/src/deletion_wal.rs`).
//! Marks live in the `cluster` database under `dying/` + chunk id.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// Type tag of a list of condemnations.
pub const CONDEMNED_TAG: u8 = b'X';
const PREFIX: &[u8] = b"dying/";
/// Key of the count of marks not yet freed (outside `PREFIX`).
const PENDING: &[u8] = b"dying#";

/// One condemned sealing of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condemnation {
    /// BLAKE3 of the condemned chunk record's canonical encoding (`sealing_id`).
    pub sealing: Hash,
    /// Sequence of this node's DeletionWAL entry that announced it: freeing waits until
    /// every member's cursor covers it. 0 once freed here (the mark is then remembered
    /// until the tombstone horizon).
    pub seq: u64,
    /// When this node marked it (ns).
    pub time: i64,
}

/// The condemnation marks, a view over the `cluster` database.
pub struct Condemned(pub(crate) Db);

fn key(id: &Hash) -> Vec<u8> {
    // A
    [PREFIX, &id.0[..]].concat()
}

impl Condemned {
    /// The condemned sealings of chunk `id` (usually none; more than one only when a chunk
    /// was sealed again and that sealing condemned too).
    pub fn get(&self, txn: &RoTxn, id: &Hash) -> Result<Vec<Condemnation>> {
        // A
        match self.0.get(txn, &key(id))? {
            None => Ok(Vec::new()),
            Some(b) => codec::decode("condemnation", CONDEMNED_TAG, b),
        }
    }

    /// True when no chunk can be condemned here: the `cluster` database is empty (a store
    /// that never joined a cluster). O(1), so that the put pipeline's dedup checks skip the
    /// marks.
    pub fn none_possible(&self, txn: &RoTxn) -> Result<bool> {
        // A
        Ok(self.0.len(txn)? == 0)
    }

    /// Number of marks not yet freed, kept as a counter so that nodes need not scan the
    /// marks (freed ones stay until the horizon) to know whether there is work.
    pub fn pending(&self, txn: &RoTxn) -> Result<u64> {
        // A
        Ok(match self.0.get(txn, PENDING)? {
            Some(b) => u64::from_le_bytes(
                b.try_into()
                    .map_err(|_| Error::malformed("condemnation count", "not 8 bytes"))?,
            ),
            None => 0,
        })
    }

    /// Replaces the marks of chunk `id` (none deletes them).
    pub fn put(&self, txn: &mut RwTxn, id: &Hash, marks: &[Condemnation]) -> Result<()> {
        // PA
        let open = |m: &[Condemnation]| m.iter().filter(|c| c.seq != 0).count() as u64;
        let was = open(&self.get(txn, id)?);
        let now = (self.pending(txn)? + open(marks)).saturating_sub(was);
        self.0.put(txn, PENDING, &now.to_le_bytes())?;
        if marks.is_empty() {
            self.0.delete(txn, &key(id))?;
            return Ok(());
        }
        Ok(self.0.put(
            txn,
            &key(id),
            &codec::encode(CONDEMNED_TAG, &marks.to_vec())?,
        )?)
    }

    /// Up to `limit` chunks with marks after `after`, in id order.
    pub fn page(
        &self,
        txn: &RoTxn,
        after: Option<Hash>,
        limit: usize,
    ) -> Result<Vec<(Hash, Vec<Condemnation>)>> {
        // A
        let from = match after {
            Some(a) => key(&a),
            None => PREFIX.to_vec(),
        };
        let start = match after {
            Some(_) => std::ops::Bound::Excluded(&from[..]),
            None => std::ops::Bound::Included(&from[..]),
        };
        let range = (start, std::ops::Bound::Unbounded);
        let mut out = Vec::new();
        for item in self.0.range(txn, &range)? {
            let (k, v) = item?;
            let Some(rest) = k.strip_prefix(PREFIX) else {
                break;
            };
            let id = Hash(
                rest.try_into()
                    .map_err(|_| Error::malformed("condemnation", "key is not 32 bytes"))?,
            );
            out.push((id, codec::decode("condemnation", CONDEMNED_TAG, v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
