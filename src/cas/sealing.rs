//! One sealing per chunk across a cluster. Two nodes that put the same content at once
//! each seal it, with their own nonce: two records for one chunk id, whose slices do not
//! mix. Left alone, placement nodes would keep whichever record reached them first and a
//! chunk could end with fewer than k slices of any one sealing. Every node therefore keeps
//! the record that sorts first by the BLAKE3 hash of its canonical encoding, drops the
//! slices of the one it replaces, and the repair sweep fetches or rebuilds the winner's.
//! A sealing condemned by gc (`src/cas/condemn.rs`) loses to any live one, whatever the
//! hashes: a chunk sealed again after its condemnation must not be pulled back to it.

use crate::cas::condemn::sealing_id;
use crate::cas::{now_nanos, Cas};
use crate::error::Result;
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::store::cluster_state::CLUSTER_INFO_KEY;
use crate::store::deletion_wal::{Deletion, WalEntry};
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

/// True when sealing `a` wins over sealing `b` of the same chunk, neither condemned (a
/// total order that every node computes alike, so that all of them settle on one record).
pub fn wins_over(a: &ChunkRecord, b: &ChunkRecord) -> Result<bool> {
    // PA
    Ok(sealing_id(a)?.0 < sealing_id(b)?.0)
}

impl Cas {
    /// True when sealing `a` of chunk `id` wins over sealing `b` here: a live sealing over
    /// a condemned one, else by [`wins_over`].
    pub(crate) fn wins_here(
        &self,
        txn: &RwTxn,
        id: &Hash,
        a: &ChunkRecord,
        b: &ChunkRecord,
    ) -> Result<bool> {
        // PA
        let (ca, cb) = (
            self.sealing_dead(txn, id, a)?,
            self.sealing_dead(txn, id, b)?,
        );
        match (ca, cb) {
            (false, true) => Ok(true),
            (true, false) => Ok(false),
            _ => wins_over(a, b),
        }
    }

    /// True when sealing `record` of chunk `id` is condemned here, or is a member of a pack
    /// condemned here (a pack is condemned once no member names it: a member must not be
    /// pulled back into it).
    fn sealing_dead(&self, txn: &RwTxn, id: &Hash, record: &ChunkRecord) -> Result<bool> {
        // PA
        if self.is_condemned_in(txn, id, record)? {
            return Ok(true);
        }
        let Some((pack, _)) = record.pack() else {
            return Ok(false);
        };
        Ok(match self.lmdb.chunks.get(txn, &pack)? {
            Some(p) => self.is_condemned_in(txn, &pack, &p)?,
            None => false,
        })
    }

    /// On a cluster node, logs that chunk `id` now has `record`, a pack member's sealing
    /// winning or losing here, with the record of the winner's pack (FORMAT.md, WalEntry).
    fn log_resealed(&self, txn: &mut RwTxn, id: &Hash, record: &ChunkRecord) -> Result<()> {
        // PA
        if self.lmdb.cluster.get(txn, CLUSTER_INFO_KEY)?.is_none() {
            return Ok(());
        }
        let pack = match record.pack() {
            Some((p, _)) => self.lmdb.chunks.get(txn, &p)?,
            None => None,
        };
        let entry = WalEntry {
            time: now_nanos(),
            deletion: Deletion::Resealed {
                id: *id,
                record: record.clone(),
                pack,
            },
        };
        self.lmdb.deletion_wal.log_deletion(txn, &entry)?;
        Ok(())
    }

    /// [`Cas::adopt_record`] inside a write transaction.
    pub(crate) fn adopt_record_in(
        &self,
        txn: &mut RwTxn,
        id: &Hash,
        record: &ChunkRecord,
        condemned: bool,
    ) -> Result<Adopted> {
        // PA
        if condemned {
            self.condemn_in(txn, id, sealing_id(record)?, now_nanos())?;
        }
        let adopted = match self.lmdb.chunks.get(txn, id)? {
            None => Adopted::New,
            Some(stored) if stored == *record => return Ok(Adopted::Same),
            // A pack has one record everywhere (its id is its payload's hash, k and m come
            // from the store), and a pack and a chunk never share an id: a record that says
            // otherwise is forged or damaged and must not cost a pack's members.
            Some(stored) if stored.is_pack() || record.is_pack() => {
                return Ok(Adopted::Kept(stored))
            }
            Some(stored) if self.wins_here(txn, id, record, &stored)? => {
                // The old sealing's slices cannot rebuild the new one: they go, and the
                // repair sweep brings this node's share of the winner.
                self.lmdb.slices.delete_chunk(txn, id)?;
                if stored.pack().is_some() || record.pack().is_some() {
                    self.log_resealed(txn, id, record)?;
                }
                tracing::info!(chunk = %id.short(), "another sealing of this chunk wins: adopted");
                Adopted::Replaced
            }
            Some(stored) => return Ok(Adopted::Kept(stored)),
        };
        self.lmdb.chunks.put(txn, id, record)?;
        Ok(adopted)
    }
}

/// The cluster's side of this part of the store (see [`crate::cas::Replica`]).
impl crate::cas::Replica<'_> {
    /// Applies the one-sealing rule to a record of chunk `id` learned from a peer;
    /// `condemned` says the peer marks that sealing condemned, and then it is marked here
    /// too (marks travel with records, so a node that joins later learns them).
    pub fn adopt_record(
        &self,
        id: &Hash,
        record: &ChunkRecord,
        condemned: bool,
    ) -> Result<Adopted> {
        // PA
        let mut txn = self.lmdb.write()?;
        let adopted = self.adopt_record_in(&mut txn, id, record, condemned)?;
        self.lmdb.commit(txn)?;
        Ok(adopted)
    }
}
