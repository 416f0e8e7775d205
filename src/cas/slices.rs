//! Slices between cluster nodes: what a node serves to a peer's read, accepts when a peer
//! places slices on it, releases once their node has them, and rebuilds for a lost node;
//! plus the walks over chunks and bundles that placement and repairs use.

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::store::cluster_state::CLUSTER_INFO_KEY;
use crate::store::local_sealed_slice_store::{LocalSealedSliceStore, SliceRead};
use crate::store::RwTxn;

/// Slices a peer places on this node, with the record of their chunk
/// ([`Cas::accept_slices_many`]).
#[derive(Clone, Debug)]
pub struct SliceDelivery {
    /// The chunk.
    pub id: Hash,
    /// Its record, as the sender holds it.
    pub record: ChunkRecord,
    /// The sender marks that sealing condemned.
    pub condemned: bool,
    /// `(index, encoded SealedSlice)` pairs.
    pub slices: Vec<(u8, Vec<u8>)>,
}

/// What accepting a delivery gives: `None` when its slices are stored, or the record that
/// wins here and whether that sealing is condemned (nothing stored; the sender adopts it).
pub type Acceptance = Option<(ChunkRecord, bool)>;

/// Checks every slice of a delivery against the record's hashes.
fn check_delivery(id: &Hash, record: &ChunkRecord, slices: &[(u8, Vec<u8>)]) -> Result<()> {
    // PA
    // A member's bytes travel in its pack's slices: a delivery under a member record is
    // forged or damaged, and adopting it could replace a pack's record.
    if record.pack().is_some() {
        return Err(Error::Corrupt(format!(
            "slices delivered under chunk {}'s pack member record",
            id.short()
        )));
    }
    for (i, bytes) in slices {
        let ok = record
            .slices
            .get(*i as usize)
            .is_some_and(|h| Hash::of(bytes) == *h);
        if !ok {
            return Err(Error::Corrupt(format!(
                "slice {i} of chunk {} does not match its record",
                id.short()
            )));
        }
    }
    Ok(())
}

impl Cas {
    /// Applies one checked delivery in `txn`.
    fn accept_in(
        &self,
        txn: &mut RwTxn,
        id: &Hash,
        record: &ChunkRecord,
        condemned: bool,
        slices: &[(u8, Vec<u8>)],
    ) -> Result<Acceptance> {
        // PA
        if condemned {
            self.condemn_in(txn, id, super::sealing_id(record)?, super::now_nanos())?;
        }
        if let Some(stored) = self.lmdb.chunks.get(txn, id)? {
            if stored != *record && !self.wins_here(txn, id, record, &stored)? {
                // The mark just made lasts even though nothing is stored.
                let dead = self.is_condemned_in(txn, id, &stored)?;
                return Ok(Some((stored, dead)));
            }
        }
        if let super::Adopted::Kept(stored) = self.adopt_record_in(txn, id, record, false)? {
            let dead = self.is_condemned_in(txn, id, &stored)?;
            return Ok(Some((stored, dead)));
        }
        let held = self.lmdb.slices.bundle(txn, id)?;
        let fresh: Vec<&(u8, Vec<u8>)> = slices
            .iter()
            .filter(|(i, _)| held.get(*i).is_none())
            .collect();
        drop(held);
        for (i, bytes) in fresh {
            self.lmdb.slices.put_slice(txn, id, *i, bytes)?;
        }
        Ok(None)
    }

    /// Drops slices of a chunk that their placed nodes acknowledged; returns how many.
    pub fn release_slices(&self, id: &Hash, indexes: &[u8]) -> Result<usize> {
        // PA
        Ok(self
            .replica()
            .release_slices_many(&[(*id, indexes.to_vec())], |_, _| true)?
            .first()
            .copied()
            .flatten()
            .unwrap_or(0))
    }
}

impl Cas {
    /// Ids of the known chunks and packs that have slices, after `after` in id order,
    /// among the next `limit` records (pack members, which have none, are left out).
    pub fn chunk_ids_after(&self, after: Option<Hash>, limit: usize) -> Result<Vec<Hash>> {
        // A
        Ok(self
            .replica()
            .chunk_widths_after(after, limit)?
            .into_iter()
            .filter(|(_, width)| *width > 0)
            .map(|(id, _)| id)
            .collect())
    }
}

impl Cas {
    /// True when the store belongs to a cluster (then it holds only the slices placement
    /// gives it, and verify does not count the others as missing).
    pub fn in_cluster(&self) -> Result<bool> {
        // A
        let txn = self.lmdb.read()?;
        Ok(self.lmdb.cluster.get(&txn, CLUSTER_INFO_KEY)?.is_some())
    }
}

impl Cas {}

/// The cluster's side of this part of the store (see [`crate::cas::Replica`]).
impl crate::cas::Replica<'_> {
    /// Intact encoded slices of chunk `id` held here, among `wanted` (what a node serves to
    /// a peer's read). Damaged ones are left out: the reader rebuilds from others.
    pub fn local_slices(&self, id: &Hash, wanted: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
        // A
        let txn = self.lmdb.read()?;
        let Some(record) = self.lmdb.chunks.get(&txn, id)? else {
            return Ok(Vec::new());
        };
        let bundle = self.lmdb.slices.bundle(&txn, id)?;
        let mut out = Vec::new();
        for i in wanted {
            let Some(hash) = record.slices.get(*i as usize) else {
                continue;
            };
            if let SliceRead::Ok(b) = LocalSealedSliceStore::check(bundle.get(*i), hash) {
                out.push((*i, b.to_vec()));
            }
        }
        Ok(out)
    }

    /// Stores slices a peer placed on this node, after checking each against the chunk's
    /// record (`condemned`: the peer marks that sealing condemned); the record is stored too
    /// when this node did not have it yet, or replaces the one here when it wins
    /// (`src/cas/sealing.rs`). When the record here wins, nothing is stored and it is
    /// returned with its own mark, for the sender to adopt. A slice that does not match
    /// the record fails the whole delivery, which changes nothing.
    pub fn accept_slices(
        &self,
        id: &Hash,
        record: &ChunkRecord,
        condemned: bool,
        slices: &[(u8, Vec<u8>)],
    ) -> Result<Acceptance> {
        // PA
        check_delivery(id, record, slices)?;
        let mut txn = self.lmdb.write()?;
        let out = self.accept_in(&mut txn, id, record, condemned, slices)?;
        self.lmdb.commit(txn)?;
        Ok(out)
    }

    /// [`Cas::accept_slices`] for several deliveries in one transaction (one disk sync
    /// for all: what a node receiving many chunks at once needs). Each delivery gets its
    /// own answer, in order; a bad one fails alone. The outer error (the store failing)
    /// means nothing was stored.
    pub fn accept_slices_many(&self, batch: &[SliceDelivery]) -> Result<Vec<Result<Acceptance>>> {
        // PA
        let mut txn = self.lmdb.write()?;
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            out.push(match check_delivery(&d.id, &d.record, &d.slices) {
                Ok(()) => Ok(self.accept_in(&mut txn, &d.id, &d.record, d.condemned, &d.slices)?),
                Err(e) => Err(e),
            });
        }
        self.lmdb.commit(txn)?;
        Ok(out)
    }

    /// [`Cas::release_slices`] for several chunks in one transaction; returns how many
    /// slices each lost, in order, or None for one that `may_drop` kept. `may_drop` is asked,
    /// inside the transaction, with the item's position in `batch` and the chunk's record
    /// as stored now: a node keeps slices when one of the chunk arrived since it began
    /// handing them over (a peer may rely on this copy), or when the chunk was sealed
    /// anew meanwhile (the slices here are no longer the ones it sent).
    pub fn release_slices_many(
        &self,
        batch: &[(Hash, Vec<u8>)],
        may_drop: impl Fn(usize, Option<&ChunkRecord>) -> bool,
    ) -> Result<Vec<Option<usize>>> {
        // PA
        let mut txn = self.lmdb.write()?;
        let mut out = Vec::with_capacity(batch.len());
        for (pos, (id, indexes)) in batch.iter().enumerate() {
            let record = self.lmdb.chunks.get(&txn, id)?;
            out.push(match may_drop(pos, record.as_ref()) {
                true => Some(self.lmdb.slices.drop_slices(&mut txn, id, indexes)?),
                false => None,
            });
        }
        self.lmdb.commit(txn)?;
        Ok(out)
    }

    /// The chunk record of `id`, if known here.
    pub fn chunk_record(&self, id: &Hash) -> Result<Option<ChunkRecord>> {
        // A
        self.lmdb.chunks.get(&self.lmdb.read()?, id)
    }

    /// The chunk record of `id` and whether that sealing is condemned here: what a node
    /// sends with slices it hands over, so that the mark travels with the record.
    pub fn chunk_record_marked(&self, id: &Hash) -> Result<Option<(ChunkRecord, bool)>> {
        // A
        let txn = self.lmdb.read()?;
        match self.lmdb.chunks.get(&txn, id)? {
            Some(r) => {
                let dead = self.is_condemned_in(&txn, id, &r)?;
                Ok(Some((r, dead)))
            }
            None => Ok(None),
        }
    }

    /// Slice bundles after sequence `after`: `(sequence, chunk, indexes held)`, for the
    /// node's walk that hands slices to the nodes placement names.
    pub fn held_slices_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Hash, Vec<u8>)>> {
        // A
        self.lmdb
            .slices
            .page_after(&self.lmdb.read()?, after, limit)
    }

    /// Known chunks after `after`, in id order, at most `limit`, each with its number of
    /// slices (k+m, or fewer for a chunk too small to split k ways): what placement covers.
    /// A record that does not decode counts 0 slices.
    pub fn chunk_widths_after(
        &self,
        after: Option<Hash>,
        limit: usize,
    ) -> Result<Vec<(Hash, usize)>> {
        // A
        let txn = self.lmdb.read()?;
        Ok(self
            .lmdb
            .chunks
            .page(&txn, after, limit)?
            .into_iter()
            .map(|(id, r)| (id, r.map_or(0, |r| r.slices.len())))
            .collect())
    }

    /// The random id of this store's logs, which peers keep with their cursors into them;
    /// a restore from backup makes a new one (the logs then repeat sequence numbers).
    pub fn log_id(&self) -> Result<Hash> {
        // A
        if let Some(id) = self.lmdb.meta.log_id(&self.lmdb.read()?)? {
            return Ok(id);
        }
        let mut txn = self.lmdb.write()?;
        let id = match self.lmdb.meta.log_id(&txn)? {
            Some(id) => id,
            None => {
                let id = Hash(rand::random());
                self.lmdb.meta.put_log_id(&mut txn, &id)?;
                id
            }
        };
        self.lmdb.commit(txn)?;
        Ok(id)
    }

    /// Number of chunks with at least one slice in this store.
    pub fn chunks_held(&self) -> Result<u64> {
        // A
        self.lmdb.slices.chunks_held(&self.lmdb.read()?)
    }

    /// Indexes of the slices of `id` this store holds.
    pub fn local_slices_held(&self, id: &Hash) -> Result<Vec<u8>> {
        // A
        let txn = self.lmdb.read()?;
        let b = self.lmdb.slices.bundle(&txn, id)?;
        Ok(b.slices.iter().map(|(i, _)| *i).collect())
    }

    /// Rebuilds slices `want` of chunk `id` from any k intact slices among those held here
    /// and `given` (from other nodes); every slice is checked against the chunk record, and
    /// so is every rebuilt one. How a node recreates the slices of a lost node.
    pub fn rebuild_slices(
        &self,
        id: &Hash,
        given: &[(u8, Vec<u8>)],
        want: &[u8],
    ) -> Result<Vec<(u8, Vec<u8>)>> {
        // PA
        let txn = self.lmdb.read()?;
        let record = self
            .lmdb
            .chunks
            .get(&txn, id)?
            .ok_or_else(|| Error::NotFound(format!("chunk {}", id.short())))?;
        let set =
            crate::route::DataRouter::new(&self.lmdb).fetch_shards(&txn, id, &record, true)?;
        let mut shards = set.shards;
        crate::route::DataRouter::add_fetched(
            &record,
            &mut shards,
            given.iter().map(|(i, b)| (*i, b.as_slice())),
        );
        let rebuilt = crate::maintenance::verify::rebuild_slices(id, &record, &shards)?;
        Ok(want
            .iter()
            .filter_map(|i| rebuilt.get(*i as usize).map(|(_, b)| (*i, b.clone())))
            .collect())
    }
}
