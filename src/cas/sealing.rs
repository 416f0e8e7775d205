//! One sealing per chunk across a cluster. Two nodes that put the same content at once
//! each seal it, with their own nonce: two records for one chunk id, whose slices do not
//! mix. Left alone, placement nodes would keep whichever record reached them first and a
//! chunk could end with fewer than k slices of any one sealing. Every node therefore keeps
//! the record that sorts first by the BLAKE3 hash of its canonical encoding, drops the
//! slices of the one it replaces, and the repair sweep fetches or rebuilds the winner's.

use crate::cas::Cas;
use crate::error::Result;
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::store::RwTxn;

/// What [`Cas::adopt_record`] did with a record learned from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adopted {
    /// The chunk was unknown here: the record is stored.
    New,
    /// The same record was already here.
    Same,
    /// It wins over the record that was here, whose slices were dropped.
    Replaced,
    /// The record here wins: it is returned, and the incoming one is ignored.
    Kept(ChunkRecord),
}

/// True when sealing `a` wins over sealing `b` of the same chunk (a total order that every
/// node computes alike, so that all of them settle on the same record).
pub fn wins_over(a: &ChunkRecord, b: &ChunkRecord) -> bool {
    // PA
    Hash::of(&a.encode()).0 < Hash::of(&b.encode()).0
}

impl Cas {
    /// Applies the one-sealing rule to a record of chunk `id` learned from a peer.
    pub fn adopt_record(&self, id: &Hash, record: &ChunkRecord) -> Result<Adopted> {
        // PA
        let mut txn = self.lmdb.write()?;
        let adopted = self.adopt_record_in(&mut txn, id, record)?;
        self.lmdb.commit(txn)?;
        Ok(adopted)
    }

    /// [`Cas::adopt_record`] inside a write transaction.
    pub(crate) fn adopt_record_in(
        &self,
        txn: &mut RwTxn,
        id: &Hash,
        record: &ChunkRecord,
    ) -> Result<Adopted> {
        // PA
        let adopted = match self.lmdb.chunks.get(txn, id)? {
            None => Adopted::New,
            Some(stored) if stored == *record => return Ok(Adopted::Same),
            Some(stored) if wins_over(record, &stored) => {
                // The old sealing's slices cannot rebuild the new one: they go, and the
                // repair sweep brings this node's share of the winner.
                self.lmdb.slices.delete_chunk(txn, id)?;
                tracing::info!(chunk = %id.short(), "another sealing of this chunk wins: adopted");
                Adopted::Replaced
            }
            Some(stored) => return Ok(Adopted::Kept(stored)),
        };
        self.lmdb.chunks.put(txn, id, record)?;
        Ok(adopted)
    }
}
