//! The sealing workers' and the writer's halves of storing new chunks: small chunks are
//! sealed together into a pack (`src/seal/pack.rs`), larger ones alone, and the writer
//! stores each unless the transaction already holds a sealing puts may deduplicate against.

use crate::cas::Cas;
use crate::crypto::StoreKeys;
use crate::error::Result;
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::route::DataRouter;
use crate::seal::sealer::seal_owned_chunk;
use crate::seal::{seal_pack, SealParams, SealedChunk};
use crate::store::RwTxn;

/// Chunks to seal, with the item index each belongs to: each alone, or all in one pack.
#[derive(Default)]
pub(super) struct Job {
    pub chunks: Vec<(usize, Hash, Vec<u8>)>,
    pub pack: bool,
}

/// A sealed chunk or pack, with the index of the item that first needed each chunk in it
/// (one for a chunk, one per member for a pack).
pub(crate) struct Sealed {
    pub items: Vec<usize>,
    pub unit: SealedChunk,
}

/// Seals a job on a worker thread.
pub(super) fn seal_job(keys: &StoreKeys, params: SealParams, job: Job) -> Result<Vec<Sealed>> {
    // PA
    if job.pack {
        let chunks: Vec<(Hash, &[u8])> = job
            .chunks
            .iter()
            .map(|(_, id, data)| (*id, data.as_slice()))
            .collect();
        let unit = seal_pack(keys, params, &chunks)?;
        let items = job.chunks.iter().map(|(item, _, _)| *item).collect();
        return Ok(vec![Sealed { items, unit }]);
    }
    job.chunks
        .into_iter()
        .map(|(item, id, data)| {
            seal_owned_chunk(keys, params, id, data).map(|unit| Sealed {
                items: vec![item],
                unit,
            })
        })
        .collect()
}

impl Cas {
    /// Stores a sealed chunk or pack in the writer's transaction and returns the slice bytes
    /// written on behalf of each of its items.
    pub(crate) fn store_sealed(
        &self,
        txn: &mut RwTxn,
        router: &DataRouter,
        sealed: &Sealed,
    ) -> Result<Vec<u64>> {
        // PA
        let unit = &sealed.unit;
        let total: u64 = unit.slices.iter().map(|(_, b)| b.len() as u64).sum();
        let (written, keep) = self.admit(txn, &unit.id, &unit.record, &unit.members, total)?;
        if keep {
            router.store_chunk(txn, unit)?;
        }
        Ok(written)
    }

    /// Records the members of a sealed pack that are new here and decides whether the
    /// chunk or pack `id` is to be stored (its own record and slices are the caller's to
    /// write); returns that and the slice bytes (of `total`) stored on behalf of each item.
    /// A chunk stored meanwhile (another process, the same content twice in a batch) is
    /// kept: its record references its slices, and new ones would leak. A condemned
    /// sealing is replaced: this one is live and wins on every node (`src/cas/sealing.rs`),
    /// and versions using the chunk read it. A pack is stored only when some member of it
    /// is; members already here leave dead bytes in it, which gc's repacking reclaims (a
    /// frame whose members all died).
    pub(crate) fn admit(
        &self,
        txn: &mut RwTxn,
        id: &Hash,
        record: &ChunkRecord,
        members: &[(Hash, ChunkRecord)],
        total: u64,
    ) -> Result<(Vec<u64>, bool)> {
        // PA
        if members.is_empty() {
            let keep = self.take_place(txn, id)?;
            return Ok((vec![if keep { total } else { 0 }], keep));
        }
        let payload = u64::from(record.sealed_len).max(1);
        let mut written = vec![0; members.len()];
        let mut any = false;
        for (n, (id, record)) in members.iter().enumerate() {
            if !self.take_place(txn, id)? {
                continue;
            }
            self.lmdb.chunks.put(txn, id, record)?;
            written[n] = share(record, total, payload);
            any = true;
        }
        Ok((written, any))
    }

    /// False when chunk `id` is already held in a sealing puts may deduplicate against;
    /// else true, after dropping the slices of a condemned sealing it replaces.
    fn take_place(&self, txn: &mut RwTxn, id: &Hash) -> Result<bool> {
        // PA
        // A random page of `chunks` each: a second's members mapped 60 MB between releases.
        self.lmdb.note_lookup();
        if self.lmdb.chunks.contains(txn, id)? {
            if self.dedupable(txn, id)? {
                return Ok(false);
            }
            self.lmdb.slices.delete_chunk(txn, id)?;
        }
        Ok(true)
    }
}

/// The slice bytes of a pack written on behalf of one member: its share of its frame (by
/// plaintext size), of the pack's payload, of the pack's slices.
fn share(member: &ChunkRecord, total: u64, payload: u64) -> u64 {
    // A
    let frame_size = match member.kind {
        crate::model::ChunkKind::Member { frame_size, .. } => u128::from(frame_size.max(1)),
        _ => 1,
    };
    let bytes = u128::from(member.sealed_len) * u128::from(member.size) / frame_size;
    u64::try_from(bytes * u128::from(total) / u128::from(payload.max(1))).unwrap_or(u64::MAX)
}
