//! DataRouter: stores a sealed chunk's slices and fetches any k of them back, preferring
//! data slices (no erasure decode needed) and noting damage on the way.

use crate::error::Result;
use crate::hash::Hash;
use crate::model::{ChunkRecord, SealedSlice};
use crate::seal::SealedChunk;
use crate::store::local_sealed_slice_store::{LocalSealedSliceStore, SliceRead};
use crate::store::{Lmdb, RoTxn, RwTxn};

/// Routes slices between the pipeline and the stores that hold them.
pub struct DataRouter<'a> {
    lmdb: &'a Lmdb,
}

/// The shard payloads found for one chunk, and which slices were missing or corrupt.
pub struct ShardSet<'t> {
    /// Per slice index: its payload when intact (and fetched), else None.
    pub shards: Vec<Option<&'t [u8]>>,
    /// Indexes of slices found missing.
    pub missing: Vec<usize>,
    /// Indexes of slices found damaged.
    pub corrupt: Vec<usize>,
}

impl<'a> DataRouter<'a> {
    /// A router over the local store.
    pub fn new(lmdb: &'a Lmdb) -> Self {
        // A
        DataRouter { lmdb }
    }

    /// Stores a sealed chunk: every slice and the chunk record, in the caller's transaction.
    pub fn store_chunk(&self, txn: &mut RwTxn, chunk: &SealedChunk) -> Result<()> {
        // PA
        let slices: Vec<&[u8]> = chunk.slices.iter().map(|(_, b)| b.as_slice()).collect();
        self.lmdb.slices.put_chunk(txn, &chunk.id, &slices)?;
        self.lmdb.chunks.put(txn, &chunk.id, &chunk.record)
    }

    /// Fetches shards: data slices first, parity only as needed to reach k intact ones;
    /// with `all`, every slice is read and checked (verify).
    pub fn fetch_shards<'t>(
        &self,
        txn: &'t RoTxn,
        id: &Hash,
        record: &ChunkRecord,
        all: bool,
    ) -> Result<ShardSet<'t>> {
        // A
        let bundle = self.lmdb.slices.bundle(txn, id)?;
        let n = record.slices.len();
        let k = record.k as usize;
        let mut set = ShardSet {
            shards: vec![None; n],
            missing: Vec::new(),
            corrupt: Vec::new(),
        };
        let mut intact = 0;
        for (i, hash) in record.slices.iter().enumerate() {
            if intact >= k && !all {
                break;
            }
            match LocalSealedSliceStore::check(bundle.get(i as u8), hash) {
                SliceRead::Ok(bytes) => match SealedSlice::split(bytes) {
                    Ok((h, payload)) if h.index as usize == i => {
                        set.shards[i] = Some(payload);
                        intact += 1;
                    }
                    _ => set.corrupt.push(i),
                },
                SliceRead::Missing => set.missing.push(i),
                SliceRead::Corrupt => set.corrupt.push(i),
            }
        }
        Ok(set)
    }

    /// Adds slices other nodes sent to `shards`, each checked against the chunk record
    /// (hash and index) as local ones are; damaged, misplaced or already present ones are
    /// ignored, so a reader rebuilds from what is left.
    pub fn add_fetched<'s>(
        record: &ChunkRecord,
        shards: &mut [Option<&'s [u8]>],
        fetched: impl IntoIterator<Item = (u8, &'s [u8])>,
    ) {
        // PA
        for (i, bytes) in fetched {
            let i = i as usize;
            let (Some(hash), Some(None)) = (record.slices.get(i), shards.get(i)) else {
                continue;
            };
            if let SliceRead::Ok(b) = LocalSealedSliceStore::check(Some(bytes), hash) {
                if let Ok((h, payload)) = SealedSlice::split(b) {
                    if h.index as usize == i {
                        shards[i] = Some(payload);
                    }
                }
            }
        }
    }

    /// Writes back rebuilt slices (repair); their hashes are checked by the caller.
    pub fn restore_slice(
        &self,
        txn: &mut RwTxn,
        chunk: &Hash,
        index: u8,
        bytes: &[u8],
    ) -> Result<()> {
        // PA
        self.lmdb.slices.put_slice(txn, chunk, index, bytes)
    }
}
